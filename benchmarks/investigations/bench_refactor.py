"""Runtime speed before and after a change: two checkouts on the same export, alternating.

    python benchmarks/investigations/bench_refactor.py --before OLD_CHECKOUT --export DIR [--rounds 6]

Each round runs one fresh process per checkout (shuffled order), each loading the export with
its own runtime (PYTHONPATH = the checkout), warming up, then timing `inference` on the suite's
texts one at a time and in batches of 8; the medians of the rounds are compared. The after side
is this checkout. Writes JSON with the machine and load (bench_common).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_common import LoadMeter, header, warn_if_dirty

ROOT = Path(__file__).resolve().parents[2]  # the checkout (this file is benchmarks/investigations/)
CHILD = r"""
import json, sys, time
from gliner_onnx import GLiNER, SessionOptions
sys.path.insert(0, sys.argv[3])
from bench_common import TEXT
m = GLiNER.from_pretrained(sys.argv[1], session_options=SessionOptions(intra_op_num_threads=int(sys.argv[2])))
labels = ["person", "organization", "location", "date", "award"]
texts = [TEXT] * 8
for _ in range(3):
    m.inference(texts[:1], labels)
one, batch = [], []
for _ in range(15):
    t = time.perf_counter(); m.inference(texts[:1], labels); one.append(time.perf_counter() - t)
for _ in range(5):
    t = time.perf_counter(); m.inference(texts, labels, batch_size=8); batch.append(time.perf_counter() - t)
one.sort(); batch.sort()
print(json.dumps({"one_ms": 1e3 * one[len(one) // 2], "batch8_ms": 1e3 * batch[len(batch) // 2]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="checkout of the earlier commit")
    ap.add_argument("--export", required=True, help="export directory both runtimes load")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/refactor.json"))
    args = ap.parse_args()
    load = LoadMeter()
    sides = {"before": Path(args.before).resolve(), "after": ROOT}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
    rng = random.Random(0)
    bench_dir = str(ROOT / "benchmarks")
    for r in range(args.rounds):
        order = list(sides)
        rng.shuffle(order)
        for side in order:
            env = dict(os.environ, PYTHONPATH=str(sides[side]))
            out = subprocess.run(
                [sys.executable, "-c", CHILD, args.export, str(args.threads), bench_dir],
                env=env, capture_output=True, text=True, check=True, cwd=sides[side],
            )  # fmt: skip
            runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(r, side, runs[side][-1], file=sys.stderr)
    med = {
        s: {k: statistics.median(x[k] for x in v) for k in ("one_ms", "batch8_ms")} for s, v in runs.items()
    }
    ratio = {k: med["after"][k] / med["before"][k] for k in ("one_ms", "batch8_ms")}
    result = {**header(load), "before": str(sides["before"]), "runs": runs, "median": med}
    result["after_over_before"] = ratio
    warn_if_dirty(result["git"])
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"median": med, "after_over_before": ratio}, indent=2))


if __name__ == "__main__":
    main()
