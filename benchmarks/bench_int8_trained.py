"""int8 against fp32 on a checkpoint whose heads are trained (issue #6's agreement target).

    pip install -e ".[export,demo]"
    python benchmarks/bench_int8_trained.py                         # trains (~15 min on 2 CPUs)
    python benchmarks/bench_int8_trained.py --checkpoint CKPT        # reuse a trained checkpoint

The demo checkpoints' heads are random: a large share of all (span, label) scores sit near the
threshold, so any encoder noise flips entities, and int8 agreement measured on them says little
about a real model. This trains a MiniLM uni-encoder span GLiNER (all-MiniLM-L6-v2 backbone,
gliner 0.2.29's own model, collator and loss) on synthetic sentences: templates filled from
gazetteers of people, organizations, places, dates, products and events, with entity-free
sentences mixed in; AdamW, backbone lr 5e-5, heads 1e-3, warm-up then linear decay, batch 8.
It checks that the model learned the task (entity F1 against the synthetic gold on held-out
sentences), then exports it fp32 and `--quantize int8` with `gliner-export`'s recipe and reports
the entity F1 of int8 against fp32:

- on the export's own fixed agreement corpus (115 varied texts, 6 labels, threshold 0.5: the
  figure the int8 manifest records);
- on the held-out synthetic sentences;

plus each precision's F1 against the gold, and the same for gliner's own
`export_to_onnx(quantize=True)` int8 graph against gliner torch as the baseline. With
`--node-sets`, the export's agreement for other choices of int8 MatMuls too (every layer MatMul,
all but the feed-forward output, attention only = the recipe, Q/K/V, feed-forward input).
Writes JSON.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import entity_f1, header, warn_if_dirty  # noqa: E402  (the export's agreement: same matches)

# The synthetic sentences (gazetteers, templates, gold F1) are the demo training's generator.
from gliner_onnx.export.demo.sentences import LABELS, example, gold_f1  # noqa: E402


def train(steps: int, batch_size: int, seed: int, heldout: list[dict[str, Any]]) -> tuple[Any, list[str]]:
    """A MiniLM span GLiNER trained on `steps` batches of synthetic sentences."""
    import torch

    from gliner_onnx.export.demo import minilm_dir
    from gliner_onnx.export.demo.backbones import build_gliner

    torch.manual_seed(seed)
    model = build_gliner(minilm_dir(), seed=seed)
    collator = model.data_collator_class(
        model.config, data_processor=model.data_processor, prepare_labels=True
    )
    backbone = [p for n, p in model.model.named_parameters() if "token_rep_layer" in n]
    ids = {id(p) for p in backbone}
    heads = [p for p in model.model.parameters() if id(p) not in ids]
    optimizer = torch.optim.AdamW([{"params": backbone, "lr": 5e-5}, {"params": heads, "lr": 1e-3}])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 50) * max(0.05, 1 - s / steps)
    )
    rng = random.Random(seed)
    log: list[str] = []
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        batch = collator([example(rng) for _ in range(batch_size)])
        loss = (
            model.model(**{k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}).loss / batch_size
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            line = f"step {step}: loss {float(loss):.3f} ({time.perf_counter() - t0:.0f} s)"
            if step % 400 == 0 or step == steps - 1:
                model.eval()
                line += f", held-out F1 {gold_f1(model.predict_entities, heldout[:50]):.3f}"
                model.train()
            log.append(line)
            print(line, file=sys.stderr, flush=True)
    model.eval()
    return model, log


def gliner_int8_agreement(
    checkpoint: Path, workdir: Path, text_sets: dict[str, list[str]], threads: int
) -> dict[str, dict[str, float]]:
    """gliner's own int8 ONNX path against gliner torch, per text set, same labels and threshold."""
    import contextlib
    import io

    import onnxruntime as ort
    from gliner import GLiNER as TorchGLiNER

    model = TorchGLiNER.from_pretrained(str(checkpoint), local_files_only=True)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        model.export_to_onnx(str(workdir / "gliner_onnx"), quantize=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    int8 = TorchGLiNER.from_pretrained(
        str(workdir / "gliner_onnx"),
        load_onnx_model=True,
        onnx_model_file="model_quantized.onnx",
        session_options=so,
        local_files_only=True,
    )
    out = {}
    for name, texts in text_sets.items():
        ref = model.inference(texts, LABELS, threshold=0.5, batch_size=8)
        got = int8.inference(texts, LABELS, threshold=0.5, batch_size=8)
        out[name] = entity_f1(ref, got)
    return out


NODE_SETS: dict[str, Callable[[str], bool]] = {
    "every layer MatMul": lambda name: True,
    "all but the feed-forward output": lambda name: "/intermediate/" in name or "/attention/" in name,
    "attention (the recipe)": lambda name: "/attention/" in name,
    "attention Q/K/V": lambda name: "/attention/self/" in name,
    "feed-forward input": lambda name: "/intermediate/" in name,
}


def node_set_agreement(fp32_dir: Path, workdir: Path) -> dict[str, dict[str, Any]]:
    """The export's int8 agreement when only each of `NODE_SETS` (of the backbone layers'
    weight MatMuls, uint8 weights: the recipe before issue #18) is quantized, as an
    `Int8Recipe` that keeps the others fp32."""
    import onnx

    from gliner_onnx.export import precision
    from gliner_onnx.export.precision.int8 import BACKBONE_LAYER, Int8Recipe, weight_matmuls

    protos = [onnx.load(str(fp32_dir / f), load_external_data=False) for f in ("text_encoder.onnx",)]
    layer_matmuls = [n.name for p in protos for n in weight_matmuls(p) if BACKBONE_LAYER in n.name]
    out: dict[str, dict[str, Any]] = {}
    for name, keep in NODE_SETS.items():
        kept_fp32 = tuple(n for n in layer_matmuls if not keep(n))
        recipe = Int8Recipe(name, scope="layers", weight_type="QUInt8", keep_fp32=kept_fp32)
        target = workdir / f"int8-{len(out)}"
        target.mkdir()
        m = precision.lower_precision(fp32_dir, target, "int8", log=lambda _m: None, recipe=recipe)
        agreement = m.agreement or {}
        out[name] = {
            "quantized_matmuls": m.graphs["text_encoder"].optimization.get("quantized_matmuls", 0),
            "f1": agreement.get("f1"),
            "fp32_entities": agreement.get("fp32_entities"),
            "entities": agreement.get("entities"),
        }
        print(f"{name}: F1 {out[name]['f1']:.3f}", file=sys.stderr, flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint", type=Path, help="a checkpoint this script trained earlier (skips training)"
    )
    p.add_argument(
        "--save-checkpoint", type=Path, help="keep the trained checkpoint here (with its training.json)"
    )
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout", type=int, default=200, help="held-out synthetic sentences")
    p.add_argument("--skip-gliner", action="store_true", help="skip gliner's own int8 baseline")
    p.add_argument(
        "--node-sets",
        action="store_true",
        help="also measure the export's int8 agreement with other sets of int8 MatMuls (how the recipe "
        "was chosen)",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "int8_trained.json")
    args = p.parse_args()

    import onnxruntime  # noqa: F401  (its version goes into the results)
    import torch

    from gliner_onnx import GLiNER, SessionOptions
    from gliner_onnx.export import export_model
    from gliner_onnx.export.precision import agreement_corpus
    from gliner_onnx.manifest import load_manifest

    torch.set_num_threads(args.threads)
    heldout = [example(random.Random(10_000 + i)) for i in range(args.heldout)]
    head = header()
    warn_if_dirty(head["git"])
    result: dict[str, Any] = {
        **head,
        "labels": LABELS,
        "threshold": 0.5,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.checkpoint is None:
            t0 = time.perf_counter()
            model, log = train(args.steps, args.batch_size, args.seed, heldout)
            result["training"] = {
                "steps": args.steps,
                "batch_size": args.batch_size,
                "seconds": round(time.perf_counter() - t0, 1),
                "log": log,
            }
            checkpoint = args.save_checkpoint or work / "ckpt"
            model.save_pretrained(checkpoint)
            result["training"]["torch_f1_vs_gold"] = gold_f1(model.predict_entities, heldout)
            (checkpoint / "training.json").write_text(json.dumps(result["training"], indent=2) + "\n")
            del model
        else:
            checkpoint = args.checkpoint
            if (checkpoint / "training.json").is_file():  # written when this script trained it
                result["training"] = json.loads((checkpoint / "training.json").read_text())
        fp32_dir, int8_dir = work / "fp32", work / "int8"
        export_model(checkpoint, fp32_dir, log=lambda _m: None)
        export_model(checkpoint, int8_dir, log=lambda _m: None, precision="int8")
        result["export_agreement_int8_vs_fp32"] = load_manifest(int8_dir).agreement
        options = SessionOptions(intra_op_num_threads=args.threads)
        fp32 = GLiNER.from_pretrained(fp32_dir, session_options=options)
        int8 = GLiNER.from_pretrained(int8_dir, session_options=options)
        texts = [" ".join(ex["tokenized_text"]) for ex in heldout]
        ref = fp32.inference(texts, LABELS, threshold=0.5)
        got = int8.inference(texts, LABELS, threshold=0.5)
        result["heldout_int8_vs_fp32"] = entity_f1(ref, got)
        result["heldout_fp32_f1_vs_gold"] = gold_f1(fp32.predict_entities, heldout)
        result["heldout_int8_f1_vs_gold"] = gold_f1(int8.predict_entities, heldout)
        if args.node_sets:
            result["node_sets"] = node_set_agreement(fp32_dir, work)
        if not args.skip_gliner:
            sets = {"export_corpus": agreement_corpus(), "heldout": texts}
            result["gliner_int8_vs_gliner_torch"] = gliner_int8_agreement(
                checkpoint, work, sets, args.threads
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "training"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
