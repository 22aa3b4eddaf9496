"""Throughput against batch size on texts of mixed length, and what batching by length buys.

    python benchmarks/bench_batching.py --arch biencoder_span --threads 2

64 texts of 5 to 60 words (a fixed draw), 5 labels, the demo export. For each batch size, two
ways of running the same texts, alternating round by round in one process:

  by length      `inference(texts, labels, batch_size=B)`: the runtime groups texts of similar
                 length into each encoder call (its default), results in input order;
  arrival order  `inference(chunk, labels, batch_size=B)` on consecutive chunks of B texts: each
                 encoder call pads to the longest text of B texts taken as they come (what the
                 runtime did before it sorted by length).

Medians per batch size and mode, and the ratio by length / arrival order. Writes JSON.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (  # noqa: E402
    LABELS,
    RESULTS,
    TEXT,
    LoadMeter,
    entity_keys,
    header,
    percentile,
    warn_if_dirty,
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="biencoder_span")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--texts", type=int, default=64)
    p.add_argument("--runs", type=int, default=5, help="timed rounds per batch size (default 5)")
    p.add_argument("--batch-sizes", default="1,4,8,16")
    p.add_argument("--out", type=Path, default=None, help="default results/batching_<arch>.json")
    args = p.parse_args()

    from gliner_onnx import GLiNER, SessionOptions
    from gliner_onnx.export import export_model
    from gliner_onnx.export.demo import build_demo

    head = header()
    warn_if_dirty(head["git"])
    export = Path(tempfile.mkdtemp()) / "export"
    export_model(build_demo(args.arch), export, log=lambda _m: None)
    model = GLiNER.from_pretrained(export, session_options=SessionOptions(intra_op_num_threads=args.threads))
    words, rng = TEXT.split(), random.Random(0)
    texts = [" ".join(words[: rng.choice([5, 10, 20, 60])]) for _ in range(args.texts)]
    load = LoadMeter()
    rows = []
    for bs in (int(x) for x in args.batch_sizes.split(",")):

        def by_length(bs: int = bs) -> Any:
            return model.inference(texts, LABELS, batch_size=bs)

        def arrival(bs: int = bs) -> Any:
            return [e for i in range(0, len(texts), bs) for e in model.inference(texts[i : i + bs], LABELS)]

        if [entity_keys(e) for e in by_length()] != [entity_keys(e) for e in arrival()]:
            raise RuntimeError(f"batch {bs}: the two modes gave different entities")
        times: dict[str, list[float]] = {"by_length": [], "arrival_order": []}
        calls = {"by_length": by_length, "arrival_order": arrival}
        for k in range(args.runs):  # alternating rounds, the order reversed every other round
            for name in list(calls) if k % 2 == 0 else reversed(list(calls)):
                t0 = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - t0)
        med = {k: percentile(v, 50) for k, v in times.items()}
        rows.append(
            {
                "batch_size": bs,
                "median_s": med["by_length"],
                "texts_per_s": args.texts / med["by_length"],
                "arrival_order_median_s": med["arrival_order"],
                "by_length_over_arrival": med["by_length"] / med["arrival_order"],
                "runs": args.runs,
            }
        )
        r = rows[-1]
        print(
            f"batch {bs:3d}: by length {r['median_s']:6.2f} s ({r['texts_per_s']:6.1f} texts/s), "
            f"arrival order {r['arrival_order_median_s']:6.2f} s: {r['by_length_over_arrival']:.2f}x"
        )
    out = args.out or RESULTS / f"batching_{args.arch}.json"
    record = {**head, "load": load.summary(), "arch": args.arch, "threads": args.threads, "rows": rows}
    out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
