"""Bi-encoder latency against the number of cached labels (5 to 200), batch 1.

    python benchmarks/bench_labels.py --threads 2                 # builds the demo export
    python benchmarks/bench_labels.py --export DIR --threads 2    # an existing biencoder_span export

One ~60-word text (bench_suite's TEXT), labels from bench_suite's ENTITY_TYPES. Two ways to
pass cached labels: `predict_with_embeds` with the array from `encode_labels` (gliner's API;
the label keys are cached by the array's content) and labels by text (the label cache).
Every (mode, count) is called once per round, rounds alternating in order; medians over
`--blocks x --runs` rounds; the ratio of each count to 5 labels. Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import TEXT, LoadMeter, header, percentile, warn_if_dirty  # noqa: E402
from suite.data import ENTITY_TYPES  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--export", type=Path, default=None, help="a biencoder_span export (default: build the demo)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--counts", default="5,20,50,100,200")
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--runs", type=int, default=10, help="rounds = blocks x runs (one call per count each)")
    p.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "labels_biencoder_span.json"
    )
    args = p.parse_args()

    from gliner_onnx import GLiNER, SessionOptions

    head = header()
    warn_if_dirty(head["git"])
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        export = args.export
        if export is None:
            export = Path(tmp) / "bi"
            subprocess.run(
                [
                    str(Path(sys.executable).parent / "gliner-export"),
                    "--arch",
                    "biencoder_span",
                    "--output",
                    str(export),
                ],
                check=True,
                capture_output=True,
            )
        model = GLiNER.from_pretrained(
            export, session_options=SessionOptions(intra_op_num_threads=args.threads)
        )
        sets = {n: ENTITY_TYPES[:n] for n in counts}
        embeddings = {n: model.encode_labels(labels) for n, labels in sets.items()}
        calls = {
            "predict_with_embeds": lambda n: model.predict_with_embeds(TEXT, embeddings[n], sets[n]),
            "labels_by_text": lambda n: model.predict_entities(TEXT, sets[n]),
        }
        times: dict[str, dict[int, list[float]]] = {k: {n: [] for n in counts} for k in calls}
        load = LoadMeter()
        for call in calls.values():
            for n in counts:
                for _ in range(3):
                    call(n)
        # One call of every (mode, count) per round, the order reversed every other round: load
        # changes on a shared machine hit every count alike.
        pairs = [(name, n) for name in calls for n in counts]
        for r in range(args.blocks * args.runs):
            for name, n in pairs if r % 2 == 0 else pairs[::-1]:
                t0 = time.perf_counter()
                calls[name](n)
                times[name][n].append(time.perf_counter() - t0)
        manifest = model.manifest
    result: dict[str, Any] = {
        **head,
        "load": load.summary(),
        "text_words": len(TEXT.split()),
        "threads": args.threads,
        "span_head": manifest.span_head,
        "graphs": list(manifest.graphs),
        "p50_ms": {},
        "ratio_to_first": {},
    }
    for name in calls:
        med = {n: percentile(times[name][n], 50) * 1000 for n in counts}
        result["p50_ms"][name] = med
        result["ratio_to_first"][name] = {n: med[n] / med[counts[0]] for n in counts}
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{'labels':>6} " + " ".join(f"{name:>28}" for name in calls))
    for n in counts:
        cells = [f"{result['p50_ms'][k][n]:>8.1f} ms ({result['ratio_to_first'][k][n]:.2f}x)" for k in calls]
        print(f"{n:>6} " + " ".join(f"{c:>28}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
