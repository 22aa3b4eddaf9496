"""Throughput against batch size on texts of mixed length (windows are batched by length).

python benchmarks/bench_batching.py --arch biencoder_span --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).parent))

from bench_latency import LABELS, TEXT  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="biencoder_span")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--texts", type=int, default=64)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batch-sizes", default="1,4,8,16")
    args = p.parse_args()

    from gliner_onnx import GLiNER, SessionOptions
    from gliner_onnx.export import export_model
    from gliner_onnx.export.demo import build_demo

    export = Path(tempfile.mkdtemp()) / "export"
    export_model(build_demo(args.arch), export, log=lambda _m: None)
    model = GLiNER.from_pretrained(export, session_options=SessionOptions(intra_op_num_threads=args.threads))
    words, rng = TEXT.split(), random.Random(0)
    texts = [" ".join(words[: rng.choice([5, 10, 20, 60])]) for _ in range(args.texts)]
    rows = []
    for bs in (int(x) for x in args.batch_sizes.split(",")):
        model.inference(texts, LABELS, batch_size=bs)  # warm-up
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            model.inference(texts, LABELS, batch_size=bs)
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        rows.append({"batch_size": bs, "median_s": median, "texts_per_s": args.texts / median})
        print(f"batch {bs:3d}: {median:6.2f} s  {args.texts / median:6.1f} texts/s")
    out = Path(__file__).parent / "results" / f"batching_{args.arch}.json"
    record = {
        "arch": args.arch,
        "threads": args.threads,
        "command": "python " + " ".join(sys.argv),
        "rows": rows,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
