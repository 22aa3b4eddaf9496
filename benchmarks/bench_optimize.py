"""Export-time levers, side by side: plain vs optimized vs fused graphs, fp32 vs int8 (vs fp16).

    python benchmarks/bench_optimize.py --arch uniencoder_span --threads 2 --runs 40

Builds the offline demo checkpoint (MiniLM backbone(s), untrained heads), exports it once per
variant (`--no-optimize`, default, `--fuse`, `--quantize int8`, optionally `--dtype fp16`), loads
every export in one process and times text in, entities out at batch 1 (~60 words, 5 labels)
and 32 texts at batch 8, runs interleaved (one call of each variant per round) so machine noise
hits all variants alike; medians, and each variant's ratio to the plain graphs.
Lower precisions also report the entity F1 against fp32 the export measured (manifest
`agreement`). Writes results/optimize_<arch>.json.
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
from bench_common import LABELS, TEXT, LoadMeter, header, summarize, warn_if_dirty  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "plain fp32": {"optimize": False},
    "optimized fp32": {},
    "optimized + fused fp32": {"fuse": True},
    "optimized int8": {"precision": "int8"},
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="uniencoder_span")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=40)
    p.add_argument("--fp16", action="store_true", help="also export and time fp16 (slow on CPU)")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    from gliner_onnx import GLiNER, SessionOptions
    from gliner_onnx.export import export_model
    from gliner_onnx.export.demo import build_demo

    head = header()
    warn_if_dirty(head["git"])
    variants = dict(VARIANTS)
    if args.fp16:
        variants["optimized fp16"] = {"precision": "fp16"}
    model = build_demo(args.arch)
    work = Path(tempfile.mkdtemp(prefix="bench-optimize-"))
    models = {}
    for name, kw in variants.items():
        out = work / name.replace(" ", "_").replace("+", "")
        export_model(model, out, source=f"demo:{args.arch}", log=lambda _m: None, **kw)
        models[name] = GLiNER.from_pretrained(
            out, session_options=SessionOptions(intra_op_num_threads=args.threads)
        )
    texts = [TEXT] * 32
    load = LoadMeter()
    cases = {
        "batch1_60words_5labels": lambda m: m.predict_entities(TEXT, LABELS),
        "32texts_batch8_5labels": lambda m: m.inference(texts, LABELS, batch_size=8),
    }
    results: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for case, call in cases.items():
        runs = args.runs if case.startswith("batch1") else max(4, args.runs // 10)
        times: dict[str, list[float]] = {n: [] for n in models}
        for m in models.values():  # warm-up
            call(m)
            call(m)
        for _ in range(runs):
            for n, m in models.items():
                t0 = time.perf_counter()
                call(m)
                times[n].append(time.perf_counter() - t0)
        stats[case] = {n: summarize(t) for n, t in times.items()}
        results[case] = {n: s["p50_ms"] for n, s in stats[case].items()}
    agreement = {
        n: m.manifest.agreement.get("f1") for n, m in models.items() if m.manifest.precision != "fp32"
    }
    fused = {n: m.manifest.graphs["text_encoder"].optimization for n, m in models.items()}
    base = "plain fp32"
    report = {
        **head,
        "load": load.summary(),
        "arch": args.arch,
        "threads": args.threads,
        "runs": {c: next(iter(s.values()))["runs"] for c, s in stats.items()},
        "median_ms": results,
        "ratio_to_plain": {c: {n: v / r[base] for n, v in r.items()} for c, r in results.items()},
        "summary_ms": stats,
        "entity_f1_vs_fp32": agreement,
        "text_encoder_optimization": fused,
    }
    out = Path(args.out or Path(__file__).parent / "results" / f"optimize_{args.arch}.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"| variant | {' | '.join(results)} | entity F1 vs fp32 |")
    print("|---|" + "---|" * (len(results) + 1))
    for n in models:
        cells = [f"{results[c][n]:.1f} ms ({results[c][n] / results[c][base]:.2f}x)" for c in results]
        f1 = agreement.get(n)
        print(f"| {n} | {' | '.join(cells)} | {'' if f1 is None else f'{f1:.3f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
