"""int8 agreement with fp32 on a checkpoint whose heads are trained, not random.

    python benchmarks/bench_int8_trained.py --steps 300 --threads 2

The demo checkpoints' untrained heads put a large share of all spans near the threshold, so
any encoder noise flips entities (int8 F1 against fp32 0.39 there, benchmarks/README.md).
This trains a MiniLM uni-encoder span GLiNER briefly with gliner's own model and loss on
synthetic sentences (templates filled from small gazetteers of people, organizations,
places and dates), checks on held-out synthetic sentences that it learned the task, then
exports it fp32 and int8 with gliner-export's recipe and reports the entity F1 of int8
against fp32 that the export measures on its fixed 115-text corpus (real-looking varied
text, not the training templates), and on the held-out synthetic sentences. Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

FIRST = ["Anna", "Peter", "Maria", "John", "Li", "Ahmed", "Sofia", "Carlos", "Yuki", "Olga", "David",
         "Fatima", "Lukas", "Emma", "Ravi", "Chloe", "Mateo", "Aisha", "Ivan", "Mei"]  # fmt: skip
LAST = ["Schmidt", "Garcia", "Smith", "Chen", "Khan", "Rossi", "Tanaka", "Ivanova", "Dubois", "Okafor",
        "Novak", "Silva", "Müller", "Kowalski", "Haddad", "Nguyen"]  # fmt: skip
CITY = ["Paris", "Berlin", "Tokyo", "Lagos", "Lima", "Toronto", "Mumbai", "Cairo", "Oslo", "Madrid",
        "Seoul", "Nairobi", "São Paulo", "New York", "Buenos Aires", "Kraków"]  # fmt: skip
ORG = ["Acme Corp", "Globex", "Initech", "the United Nations", "Siemens", "Toyota", "the World Bank",
       "Nokia", "Oxfam", "Unilever", "Red Cross", "Stanford University", "Deutsche Bahn"]  # fmt: skip
MONTH = ["January", "March", "May", "July", "September", "November", "April", "December"]
TEMPLATES = [
    "{person} works for {org} in {city} .",
    "On {date} , {person} visited {city} .",
    "{org} opened an office in {city} on {date} .",
    "{person} and {person2} met at the {org} headquarters .",
    "The mayor of {city} , {person} , spoke on {date} .",
    "{person} left {org} to join {org2} in {city} .",
    "After the storm on {date} , {org} sent help to {city} .",
    "In {city} , {person} founded {org} .",
    "{person} was born in {city} on {date} .",
    "Shares of {org} fell after {person} resigned .",
]
LABELS = {"person": "person", "org": "organization", "city": "location", "date": "date"}


def example(rng: random.Random) -> dict[str, Any]:
    """One synthetic sentence in gliner's training format: words and word-span entities."""
    values = {
        "person": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "person2": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "org": rng.choice(ORG),
        "org2": rng.choice(ORG),
        "city": rng.choice(CITY),
        "date": f"{rng.randint(1, 28)} {rng.choice(MONTH)} {rng.randint(1950, 2025)}",
    }
    words: list[str] = []
    ner: list[list[Any]] = []
    for token in rng.choice(TEMPLATES).split():
        if token.startswith("{"):
            slot = token[1:-1]
            filled = values[slot].split()
            ner.append([len(words), len(words) + len(filled) - 1, LABELS[slot.rstrip("2")]])
            words += filled
        else:
            words.append(token)
    return {"tokenized_text": words, "ner": ner}


def train(model: Any, steps: int, batch_size: int, lr: float, seed: int) -> list[float]:
    import torch

    rng = random.Random(seed)
    collator = model.data_collator_class(
        model.config, data_processor=model.data_processor, prepare_labels=True
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        batch = collator([example(rng) for _ in range(batch_size)])
        inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        loss = model.model(**inputs).loss / batch_size
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
        if step % 25 == 0 or step == steps - 1:
            print(f"step {step}: loss {losses[-1]:.4f}", file=sys.stderr, flush=True)
    model.eval()
    return losses


def gold_f1(predict: Any, examples: list[dict[str, Any]]) -> float:
    """Entity F1 of `predict(text, labels)` against the synthetic gold (start, end, label)."""
    labels = sorted(set(LABELS.values()))
    tp = n_pred = n_gold = 0
    for ex in examples:
        text = " ".join(ex["tokenized_text"])
        starts, pos = [], 0
        for w in ex["tokenized_text"]:
            starts.append(pos)
            pos += len(w) + 1
        gold = {(starts[s], starts[e] + len(ex["tokenized_text"][e]), lab) for s, e, lab in ex["ner"]}
        pred = {(p["start"], p["end"], p["label"]) for p in predict(text, labels)}
        tp += len(gold & pred)
        n_pred += len(pred)
        n_gold += len(gold)
    precision, recall = tp / max(n_pred, 1), tp / max(n_gold, 1)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout", type=int, default=200, help="held-out synthetic sentences")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "int8_trained.json")
    args = p.parse_args()

    import torch

    from gliner_onnx import GLiNER, SessionOptions
    from gliner_onnx.export import export_model
    from gliner_onnx.export.backbones import build_gliner
    from gliner_onnx.export.demo import minilm_dir
    from gliner_onnx.export.precision import entity_f1
    from gliner_onnx.manifest import load_manifest

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_gliner(minilm_dir(), seed=args.seed)  # heads random, not calibrated
    t0 = time.perf_counter()
    losses = train(model, args.steps, args.batch_size, args.lr, args.seed)
    train_s = time.perf_counter() - t0
    heldout = [example(random.Random(10_000 + i)) for i in range(args.heldout)]
    result: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "train_s": round(train_s, 1),
        "loss_first": losses[0],
        "loss_last_25": sum(losses[-25:]) / len(losses[-25:]),
        "torch_heldout_f1_vs_gold": gold_f1(lambda t, ls: model.predict_entities(t, ls), heldout),
    }
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "ckpt"
        model.save_pretrained(ckpt)
        fp32_dir, int8_dir = Path(tmp) / "fp32", Path(tmp) / "int8"
        export_model(ckpt, fp32_dir, log=lambda m: None)
        export_model(ckpt, int8_dir, log=lambda m: None, precision="int8")
        result["export_agreement_int8_vs_fp32"] = load_manifest(int8_dir).agreement
        options = SessionOptions(intra_op_num_threads=args.threads)
        fp32 = GLiNER.from_pretrained(fp32_dir, session_options=options)
        int8 = GLiNER.from_pretrained(int8_dir, session_options=options)
        texts = [" ".join(ex["tokenized_text"]) for ex in heldout]
        labels = sorted(set(LABELS.values()))
        ref = fp32.inference(texts, labels, threshold=0.5)
        got = int8.inference(texts, labels, threshold=0.5)
        result["heldout_f1_int8_vs_fp32"] = entity_f1(ref, got)["f1"]
        result["heldout_f1_fp32_vs_gold"] = gold_f1(lambda t, ls: fp32.predict_entities(t, ls), heldout)
        result["heldout_f1_int8_vs_gold"] = gold_f1(lambda t, ls: int8.predict_entities(t, ls), heldout)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
