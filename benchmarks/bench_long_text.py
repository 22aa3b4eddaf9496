"""Time and memory against text length: windows make both linear in the number of words.

    python benchmarks/bench_long_text.py --threads 2

Exports the offline demo `uniencoder_span` checkpoint (MiniLM), then for each length runs
one prediction in a fresh process (so peak RSS is that length's alone) and records wall
time, windows, peak resident memory and the growth over the loaded model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_common import LoadMeter, header, warn_if_dirty  # noqa: E402

CHILD = r"""
import json, sys, time
from gliner_onnx import GLiNER, SessionOptions

export, words, threads, here = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, here)
from bench_common import WORD_RE, peak_rss_mb as peak_mb


def word_windows(n, window=384, overlap=24):
    # The runtime's windows when the word limit binds (not the subword one: short English words).
    count, start = 0, 0
    while True:
        count += 1
        end = min(start + window, n)
        if end >= n:
            return count
        start = end - overlap


base = ("On 3 March 2021 Angela Merkel met Emmanuel Macron in Paris to discuss the vaccine strategy "
        "of the European Union with executives from Pfizer and BioNTech .").split()
text = " ".join((base * (words // len(base) + 1))[:words])
labels = ["person", "organization", "location", "date", "event"]
m = GLiNER.from_pretrained(export, session_options=SessionOptions(intra_op_num_threads=threads))
m.predict_entities("warm up the sessions", labels)
loaded = peak_mb()
windows = word_windows(len(WORD_RE.findall(text)))
t0 = time.perf_counter()
entities = m.predict_entities(text, labels)
seconds = time.perf_counter() - t0
peak = peak_mb()
print(json.dumps({"words": words, "windows": windows, "seconds": seconds, "entities": len(entities),
                  "peak_rss_mb": peak, "growth_mb": peak - loaded}))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lengths", default="400,1000,2500,5000,10000,20000")
    p.add_argument("--out", default=str(HERE / "results" / "long_text.json"))
    args = p.parse_args()

    from gliner_onnx.export import export_model
    from gliner_onnx.export.demo import build_demo

    head = header()
    warn_if_dirty(head["git"])
    export = Path(tempfile.mkdtemp()) / "export"
    export_model(build_demo("uniencoder_span"), export, log=lambda _m: None)
    load = LoadMeter()
    rows = []
    for n in (int(x) for x in args.lengths.split(",")):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(export), str(n), str(args.threads), str(HERE)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"{r['words']:6d} words {r['windows']:4d} windows {r['seconds']:8.2f} s "
            f"{1000 * r['seconds'] / r['windows']:7.1f} ms/window  peak {r['peak_rss_mb']:6.0f} MB "
            f"(+{r['growth_mb']:.0f} MB over the loaded model)"
        )
    record = {**head, "load": load.summary(), "threads": args.threads, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
