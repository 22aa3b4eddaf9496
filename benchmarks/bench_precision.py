"""What int8 and fp16 cost in agreement with fp32, per architecture (issue #6).

    pip install -e ".[export,demo]"
    python benchmarks/bench_precision.py                                  # the demo checkpoints
    python benchmarks/bench_precision.py --checkpoint uniencoder_span=CKPT   # add a trained one

For each architecture: the offline demo checkpoint (all-MiniLM-L6-v2, random heads, fixed seed;
or the checkpoint given with --checkpoint ARCH=DIR), exported once in fp32, then converted with
the export's own `lower_precision` to int8 (the CPU recipe: the backbone layers' attention
MatMuls) and fp16 (weights and compute, float32 inputs and outputs), each of which measures
entity-level F1 against the fp32 graphs on the export's fixed corpus (115 varied texts, 6
labels, threshold 0.5) and records it in its manifest. fp16 runs here on ONNX Runtime's CPU
provider (its GPU target is not available on this machine). Writes JSON and prints a markdown
table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, warn_if_dirty  # noqa: E402

ARCHS = (
    "uniencoder_span",
    "uniencoder_token",
    "biencoder_span",
    "biencoder_token",
    "uniencoder_span_relex",
    "uniencoder_span_decoder",
)


def _checkpoints(items: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items:
        arch, sep, path = item.partition("=")
        if not sep or not arch or not path:
            raise SystemExit(f"--checkpoint wants ARCH=DIR, got {item!r}")
        out[arch] = Path(path)
    return out


def measure(arch: str, checkpoint: Path | None, work: Path) -> dict[str, Any]:
    from gliner_onnx.export import export_model
    from gliner_onnx.export.demo import build_demo
    from gliner_onnx.export.precision import lower_precision

    if checkpoint is None:
        checkpoint = work / f"{arch}-ckpt"
        build_demo(arch).save_pretrained(checkpoint)
        source = "demo (random heads)"
    else:
        source = str(checkpoint)
    fp32 = work / f"{arch}-fp32"
    export_model(checkpoint, fp32, arch=arch, log=lambda _m: None)
    row: dict[str, Any] = {"arch": arch, "checkpoint": source}
    for precision in ("int8", "fp16"):
        t0 = time.perf_counter()
        m = lower_precision(fp32, work / f"{arch}-{precision}", precision, log=lambda _m: None)
        a = m.agreement or {}
        row[precision] = {
            "f1": a.get("f1"),
            "precision": a.get("precision"),
            "recall": a.get("recall"),
            "fp32_entities": a.get("fp32_entities"),
            "entities": a.get("entities"),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        f1 = a.get("f1", float("nan"))
        print(f"{arch} ({source}) {precision}: F1 {f1:.3f}", file=sys.stderr, flush=True)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(ARCHS), help=f"default: {' '.join(ARCHS)}")
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="ARCH=DIR: also measure this checkpoint of ARCH (e.g. a trained one; repeatable)",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "precision.json")
    args = p.parse_args()

    import onnxruntime  # noqa: F401  (its version goes into the results)

    head = header()
    warn_if_dirty(head["git"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jobs = [(arch, None) for arch in args.archs] + list(_checkpoints(args.checkpoint).items())
        for i, (arch, ckpt) in enumerate(jobs):
            try:
                rows.append(measure(arch, ckpt, work / str(i)))
            except Exception as e:  # recorded, and the other architectures still run
                rows.append({"arch": arch, "checkpoint": str(ckpt or "demo"), "error": repr(e)})
                print(f"{arch}: {e!r}", file=sys.stderr, flush=True)
    record = {
        **head,
        "corpus": "the export's agreement corpus: 115 texts, 6 labels, threshold 0.5",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print("| arch | checkpoint | fp32 entities | int8 F1 | fp16 F1 |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['arch']} | {r['checkpoint']} | failed: {r['error']} | | |")
            continue
        print(
            f"| {r['arch']} | {r['checkpoint']} | {r['int8']['fp32_entities']} | "
            f"{r['int8']['f1']:.3f} | {r['fp16']['f1']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
