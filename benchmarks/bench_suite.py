"""Performance benchmark suite (issue #6): gliner torch, gliner's own ONNX export, its raw session, ours.

    python benchmarks/bench_suite.py                                   # builds and exports everything
    python benchmarks/bench_suite.py --ours fp32=/tmp/x --ours int8=/tmp/y
    python benchmarks/bench_suite.py --quick --workdir /tmp/suite      # smoke check, ~2-3 minutes
    python benchmarks/bench_suite.py --wait-idle 60 --retries 2         # on a shared machine

One process, one checkpoint: the offline demo `uniencoder_span` (all-MiniLM-L6-v2, untrained heads,
fixed seed), saved with `save_pretrained` and loaded back the way a user loads one. Engines:

  gliner torch            GLiNER.from_pretrained(checkpoint), torch.set_num_threads(--threads)
  gliner onnx fp32/int8   gliner's export_to_onnx(quantize=True) loaded with load_onnx_model=True;
                          session options = gliner's own defaults (ORT_ENABLE_ALL) plus
                          intra_op_num_threads=--threads, passed through `session_options=`
  gliner session fp32/int8  only `session.run(None, feeds)` of that export, on the exact feeds its
                          wrapper passes (captured once): the floor for its single unoptimized graph
  ours NAME               gliner_onnx.GLiNER.from_pretrained(DIR, session_options=
                          SessionOptions(intra_op_num_threads=--threads)) for each --ours NAME=DIR
                          (default: our export of the checkpoint, as `fp32`)

The label-scaling bi-encoder part uses the demo `biencoder_span` (--bi-ours NAME=DIR, default our
export as `fp32`): gliner torch (labels encoded per call, and cached with encode_labels +
predict_with_embeds), gliner's ONNX export (its graph re-encodes the labels every call), ours
cached (encode_labels + predict_with_embeds) and uncached (label cache cleared before each call).

Timing: warm-up, then every engine of a case runs in blocks that alternate between engines (the
order reversed every other block), so that noise on a shared machine hits all engines alike;
medians (p50) and p90 are reported. The share of the CPUs that other processes used during each
case is measured (/proc/stat minus this process) and recorded; --wait-idle and --retries wait for
and re-time noisy cases (torch's OpenMP threads slow down 20x or more when another process
takes the cores, ONNX Runtime's far less). Peak memory comes from a fresh subprocess per engine
(VmHWM). Agreement is entity-level F1, (start, end, label) exact, against ours `fp32` at
threshold 0.5, on ~40 varied texts.

Writes a JSON results file (machine, versions, command, all figures), a PNG plot (matplotlib,
imported only when plotting) and prints markdown tables. The code is split by concern under
`suite/`: data (inputs), timing, engines, sections, report, plot; `bench_common.py` holds what
every benchmark shares (percentiles, machine and git state, F1, peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # gliner's encode_labels progress bar
warnings.filterwarnings("ignore")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    PERCENTILE_METHOD,
    RESULTS,
    git_state,
    idle_check,
    machine_info,
    versions,
    warn_if_dirty,
)
from suite.data import LONG_WORDS, NOISY_SHARE, THRESHOLD, THROUGHPUT_BATCH, THROUGHPUT_TEXTS  # noqa: E402
from suite.engines import build_assets, load_models, parse_named_dirs  # noqa: E402
from suite.report import markdown, ratios  # noqa: E402
from suite.sections import (  # noqa: E402
    bench_agreement,
    bench_batch1,
    bench_labels,
    bench_long,
    bench_rss,
    bench_throughput,
    rss_child,
)
from suite.timing import Plan, Suite, noise_summary  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_suite.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--ours",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="one of our uniencoder_span exports of the demo checkpoint (repeatable); "
        "default: our export as fp32",
    )
    p.add_argument(
        "--bi-ours",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="one of our biencoder_span exports of the demo checkpoint (repeatable); "
        "default: our export as fp32",
    )
    p.add_argument(
        "--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads (default 2)"
    )
    p.add_argument(
        "--runs",
        type=int,
        default=None,
        help="timed runs at batch 1 (default 30, 3 with --quick); other cases scale from it",
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed runs per engine per case (default 3)")
    p.add_argument(
        "--blocks",
        type=int,
        default=4,
        help="alternating blocks the runs of each case are split into (default 4)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny run counts and label counts 5 and 200: a smoke check of every section (about 2-3 "
        "minutes with a reused --workdir, plus the builds the first time)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON; the PNG goes beside it (default benchmarks/results/suite.json, "
        "suite_quick.json with --quick)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the built checkpoints and exports here and reuse them on the next run "
        "(default: a temporary directory, removed)",
    )
    p.add_argument(
        "--gliner-spin",
        choices=["on", "off"],
        default="on",
        help="intra-op thread spinning of gliner's ONNX sessions (default on: gliner's and ONNX "
        "Runtime's default; ours always runs with it off)",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each timed case, wait up to SECONDS for other processes to leave the CPUs idle "
        "(for shared machines; default 0: do not wait)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=0,
        help=f"re-time a case up to this many times while other processes used more than "
        f"{NOISY_SHARE * 100:.0f}%% of the CPUs during it, keeping the quietest attempt (default 0)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="a uniencoder_span gliner checkpoint to use instead of the demo's (e.g. the trained demo "
        "saved with build_demo(...).save_pretrained); --ours must then be exports of it",
    )
    p.add_argument("--skip-rss", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--no-plot", action="store_true", help="do not draw the PNG (matplotlib not needed)")
    p.add_argument(
        "--replot",
        type=Path,
        default=None,
        metavar="JSON",
        help="measure nothing: print the tables of an earlier results JSON and redraw its PNG",
    )
    p.add_argument("--_rss-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_rss-path", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_rss-onnx-file", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be at least 1")
    if args.runs is None:
        args.runs = 3 if args.quick else 30
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    if args.runs < 1 or args.warmup < 0 or args.blocks < 1 or args.retries < 0 or args.wait_idle < 0:
        p.error("--runs and --blocks must be at least 1; --warmup, --retries and --wait-idle at least 0")
    if args.quick:
        args.blocks = min(args.blocks, 2)
    if args.out is None:
        args.out = RESULTS / ("suite_quick.json" if args.quick else "suite.json")
    return args


def short_commit(git: dict[str, Any]) -> str:
    """`git describe --always --dirty`'s form, as earlier results files have it."""
    return (git["commit"] or "")[:7] + ("-dirty" if git["dirty"] else "")


def run_suite(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    suite = Suite(args, Plan(args.runs, args.warmup, args.blocks, args.quick))
    git = git_state()  # the tree the figures come from, taken before anything runs
    warn_if_dirty(git)
    busy = idle_check()
    if busy > 0.1:
        print(f"warning: other processes use {busy:.0%} of the CPUs; figures will be noisy", file=sys.stderr)
    t0 = time.perf_counter()
    uni = build_assets(
        "uniencoder_span", workdir, parse_named_dirs(args.ours, "--ours"), True, suite, args.checkpoint
    )
    bi = build_assets("biencoder_span", workdir, parse_named_dirs(args.bi_ours, "--bi-ours"), False, suite)
    models = load_models(uni, bi, args.threads, args.gliner_spin == "on", suite)
    bench_batch1(suite, models)
    bench_throughput(suite, models)
    bench_labels(suite, models, models.tokenizer)
    bench_long(suite, models, models.info["max_len_words"])
    bench_agreement(suite, models)
    if not args.skip_rss:
        bench_rss(suite, uni)
    suite.log("")  # closes the last step
    noise = noise_summary(suite.cases, busy)
    if noise["mean"] > NOISY_SHARE or noise["max"] > 2 * NOISY_SHARE:
        suite.notes.append(
            f"other processes used {noise['mean']:.0%} of the CPUs during the timed cases (at most "
            f"{noise['max']:.0%}, in '{noise['worst_case']}'): those figures are noisy (torch's "
            "OpenMP threads suffer most from sharing the cores); see `cases`."
        )
    suite.notes.append(
        "gliner onnx = gliner's pre/post-processing (torch) around one session; gliner session = that "
        "session alone on the captured feeds; the difference is gliner's own overhead."
    )
    families = {e.name: e.family for e in (*models.uni, *models.bi)}
    return {
        "suite": "bench_suite",
        "checkpoint": "demo: all-MiniLM-L6-v2 backbone(s), untrained heads (uniencoder_span, biencoder_span)"
        if args.checkpoint is None
        else f"uniencoder_span: {args.checkpoint}; biencoder_span: demo (all-MiniLM-L6-v2, untrained heads)",
        "threads": args.threads,
        "machine": machine_info(),
        "git": git,
        "versions": {**versions(), "gliner_onnx_commit": short_commit(git)},
        "percentiles": PERCENTILE_METHOD,
        "command": "python " + shlex.join(sys.argv),
        "settings": {
            "quick": args.quick,
            "runs": vars(suite.plan),
            "threshold": THRESHOLD,
            "label_counts": list(suite.plan.label_counts),
            "long_words": list(LONG_WORDS),
            "throughput": {"texts": THROUGHPUT_TEXTS, "batch_size": THROUGHPUT_BATCH},
            "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM"),
            "gliner_onnx_session_options": f"ORT_ENABLE_ALL, intra_op_num_threads={args.threads}, "
            f"intra-op spinning {args.gliner_spin} (gliner's default: on)",
            "ours_session_options": f"SessionOptions(intra_op_num_threads={args.threads}) "
            "(graph_optimization_level all, intra-op spinning off)",
        },
        "engines": models.info,
        "engine_families": families,
        "results": suite.results,
        "ratios": ratios(suite.results),
        "notes": suite.notes,
        "noise": noise,
        "cases": suite.cases,
        "steps": suite.steps,
        "elapsed_s": time.perf_counter() - t0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args._rss_child:
        return rss_child(args._rss_child, args._rss_path, args._rss_onnx_file, args.threads)
    if args.replot:
        record = json.loads(args.replot.read_text())
        print(markdown(record))
        if not args.no_plot:
            from suite.plot import plot

            plot(record, args.replot.with_suffix(".png"))
        return 0
    tmp = None
    if args.workdir is None:
        tmp = Path(tempfile.mkdtemp(prefix="gliner-onnx-suite-"))
        workdir = tmp
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        record = run_suite(args, workdir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(record))
    written = [str(args.out)]
    if not args.no_plot:
        png = args.out.with_suffix(".png")
        from suite.plot import plot

        plot(record, png)
        written.append(str(png))
    print(f"\nwritten: {', '.join(written)} ({record['elapsed_s']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
