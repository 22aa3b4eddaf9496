"""Latency of the torch-free runtime against gliner torch, same checkpoint, same process.

    python benchmarks/bench_latency.py --arch uniencoder_span --threads 2

Builds the offline demo checkpoint (MiniLM backbone, untrained heads; meaningless entities but
real shapes), exports it, then times end to end (text in, entities out) with warm-up and several
alternating runs: batch 1 on a ~60-word text with 5 labels, and 32 texts at batch size 8.
Writes a JSON results file with the machine, the providers actually used and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import LABELS, TEXT, LoadMeter, header, summarize, timed  # noqa: E402


def summary(times: list[float]) -> dict[str, float]:
    """bench_common.summarize, with `median_ms` (this file's key since its first results)."""
    s = summarize(times)
    return {"median_ms": s["p50_ms"], **s}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--arch",
        default="uniencoder_span",
        choices=["uniencoder_span", "biencoder_span", "uniencoder_token", "biencoder_token"],
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument(
        "--out", default=None, help="results JSON (default benchmarks/results/latency_<arch>.json)"
    )
    args = p.parse_args()

    import torch

    from gliner_onnx import GLiNER, SessionOptions
    from gliner_onnx.export import export_model
    from gliner_onnx.export.demo import build_demo

    torch.set_num_threads(args.threads)
    load = LoadMeter()
    ref = build_demo(args.arch)
    tmp = Path(tempfile.mkdtemp()) / "export"
    export_model(ref, tmp, log=lambda _m: None)
    ours = GLiNER.from_pretrained(tmp, session_options=SessionOptions(intra_op_num_threads=args.threads))

    texts32 = [TEXT] * 32
    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "batch1_60words_5labels": (
            lambda: ref.inference([TEXT], LABELS),
            lambda: ours.inference([TEXT], LABELS),
        ),
        "32texts_batch8_5labels": (
            lambda: ref.inference(texts32, LABELS, batch_size=8),
            lambda: ours.inference(texts32, LABELS, batch_size=8),
        ),
    }
    results: dict[str, Any] = {}
    for name, (torch_fn, ours_fn) in cases.items():
        runs = args.runs if name.startswith("batch1") else max(5, args.runs // 6)
        t_torch, t_ours = [], []
        for _ in range(2):  # alternate halves so drift hits both sides
            t_torch += timed(torch_fn, runs // 2, args.warmup)
            t_ours += timed(ours_fn, runs // 2, args.warmup)
        s_torch, s_ours = summary(t_torch), summary(t_ours)
        results[name] = {
            "gliner_torch": s_torch,
            "gliner_onnx": s_ours,
            "ratio_ours_over_torch": s_ours["median_ms"] / s_torch["median_ms"],
        }
    record = {
        **header(load),
        "arch": args.arch,
        "checkpoint": "demo: all-MiniLM-L6-v2 backbone, untrained heads",
        "threads": args.threads,
        "providers": ours.providers,
        "results": results,
    }
    out = Path(args.out or Path(__file__).parent / "results" / f"latency_{args.arch}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{'case':28} {'gliner torch':>14} {'gliner-onnx':>14} {'ratio':>7}")
    for name, r in results.items():
        print(
            f"{name:28} {r['gliner_torch']['median_ms']:11.1f} ms {r['gliner_onnx']['median_ms']:11.1f} ms "
            f"{r['ratio_ours_over_torch']:7.2f}"
        )
    print(f"providers: {ours.providers}; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
