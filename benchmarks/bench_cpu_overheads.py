"""Where a batch-1 call's time goes besides the matrix products, and what the CPU session
settings and int8 rewrites change: an fp32 export's text encoder and scorer, and their int8
copy, on the runtime's own inputs.

    pip install -e ".[export,bench]"
    python benchmarks/bench_real_size.py --shapes small --skip-timing     # its exports, in its workspace
    python benchmarks/bench_cpu_overheads.py --fp32 /tmp/gliner-onnx-real-size/small-ours-fp32
    python benchmarks/bench_cpu_overheads.py --fp32 DIR --rounds 20 --contended

The inputs are what the runtime feeds each graph for bench_common's batch-1 case (the ~60-word
text, 5 labels), recorded from `GLiNER.predict_entities`. The int8 graphs are quantized here from
the fp32 export's text encoder (`export/precision/int8.py`), so every variant is built from the
same graph. Sections:

* `profile`: ONNX Runtime's profiler on the text encoder and the scorer as the runtime creates
  their sessions (`--threads` intra-op threads, no spinning, the CPU's fusions but
  `runtime/options.CPU_DISABLED_OPTIMIZERS`), fp32 and int8 (`--quantize int8`'s recipe): kernel
  time per operator type and per group of nodes (the layers' products, the attention's relative
  terms, the span heads, the LSTM, ...), and the slowest nodes;
* `sessions`: text encoder then scorer, as one call, with the runtime's settings against
  SkipLayerNormFusion left on (the settings before it was left out) and against spinning intra-op
  threads that stop when a run returns (`session.intra_op.allow_spinning` with
  `session.force_spinning_stop`); with `--contended`, again while one other process keeps a core
  busy;
* `int8`: the text encoder quantized with `--quantize int8`'s recipe against the same recipe
  without packing (`Int8Recipe.pack`) and against `fast` (no first token apart).

Each A/B (after waiting, with `--wait-idle S`, up to S seconds for other processes to leave the
CPUs, and again, `--retries N` times at most, while they used more than 10% of them during it;
the quietest attempt is kept, every attempt's share recorded; the profiles likewise): warm-up,
then `--rounds` rounds, the variants in a new random order each round,
`--runs` calls each; medians of all calls and each variant's ratio to the first; outputs of each
int8 variant compared with the first. Writes JSON (`--output`) and prints the tables.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
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
    header,
    quiet,
    shuffled_rounds,
    summarize,
    warn_if_dirty,
)

GRAPHS = ("text_encoder", "scorer")
FORCE_STOP = {"session.force_spinning_stop": "1"}
# Node groups of the profile, by name (torch.onnx names nodes after the module path).
GROUPS = (
    ("attention: query / key / value", re.compile(r"attention/self/MatMul(_1|_2)?(_packed)?(_quant)?$")),
    ("attention: MultiHeadAttention", re.compile(r"MultiHeadAttention")),
    ("attention: relative terms, reshapes", re.compile(r"attention/self/")),
    (
        "layers: first token apart",
        re.compile(r"_first_token|_other_tokens|_Slice_(first|rest)$|_first(_quant)?$|_Concat$"),
    ),
    ("layers: dense products", re.compile(r"(attention/output|intermediate|/output)/dense/MatMul")),
    ("layers: other", re.compile(r"/encoder/layer\.|LayerNorm|BiasGelu")),
    ("LSTM", re.compile(r"lstm", re.IGNORECASE)),
    ("span heads: products", re.compile(r"^/(project_start|project_end)/.*MatMul|^/MatMul(_1)?(_quant)?$")),
    ("embeddings", re.compile(r"embeddings")),
)


def record_feeds(export_dir: Path, threads: int) -> dict[str, dict[str, Any]]:
    """What the runtime feeds each graph for the batch-1 case."""
    import numpy as np

    from gliner_onnx import GLiNER, SessionOptions

    model = GLiNER.from_pretrained(export_dir, session_options=SessionOptions(intra_op_num_threads=threads))
    feeds: dict[str, dict[str, Any]] = {}
    for name in GRAPHS:
        session = model.context.runner.session(name)
        run = session.run

        def recording(inputs: Mapping[str, Any], *, _name: str = name, _run: Any = run) -> Any:
            feeds[_name] = {k: np.array(v) for k, v in inputs.items()}
            return _run(inputs)

        session.run = recording  # type: ignore[method-assign]
    model.predict_entities(TEXT, LABELS, threshold=0.5)
    return feeds


def session(
    graph: Any, threads: int, *, skip_layer_norm: bool = False, spin: bool = False, profile: str | None = None
) -> Any:
    """A CPU session as runtime/session.py creates it, or with one setting changed."""
    import onnxruntime as ort

    from gliner_onnx.runtime.options import CPU_DISABLED_OPTIMIZERS

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:
        for k, v in FORCE_STOP.items():
            so.add_session_config_entry(k, v)
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = profile
    source = str(graph) if isinstance(graph, Path) else graph.SerializeToString()
    disabled = [] if skip_layer_norm else list(CPU_DISABLED_OPTIMIZERS)
    return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)


def inputs_of(sess: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
    return {i.name: feeds[i.name] for i in sess.get_inputs()}


def pipeline(encoder: Any, scorer: Any, feeds: dict[str, dict[str, Any]]) -> Callable[[], Any]:
    """Text encoder, then the scorer on its outputs: the graphs of one call."""
    encoder_in = inputs_of(encoder, feeds["text_encoder"])
    names = [o.name for o in encoder.get_outputs()]
    wanted = [i.name for i in scorer.get_inputs()]

    def call() -> Any:
        given = dict(feeds["scorer"], **dict(zip(names, encoder.run(None, encoder_in), strict=True)))
        return scorer.run(None, {k: given[k] for k in wanted})

    return call


def quietest(measure: Callable[[], dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """`measure()` after waiting (`--wait-idle`) for other processes to leave the CPUs, again
    (`--retries`) while they used more than NOISY_SHARE of them during it; the quietest
    attempt, with every attempt's share."""
    from suite.data import NOISY_SHARE
    from suite.timing import wait_for_idle

    attempts = []
    for _ in range(1 + args.retries):
        waited = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else 0.0
        load = LoadMeter()
        result = measure()
        attempts.append({**result, "load": load.summary(), "waited_s": waited})
        if attempts[-1]["load"]["others_cpu_share_during"] <= NOISY_SHARE:
            break
        print("  (others used the CPUs: again)", file=sys.stderr)
    best = min(attempts, key=lambda a: a["load"]["others_cpu_share_during"])
    return {**best, "attempts_others_cpu_share": [a["load"]["others_cpu_share_during"] for a in attempts]}


def ab(
    calls: dict[str, Callable[[], Any]], args: argparse.Namespace, contended: bool = False
) -> dict[str, Any]:
    """Alternating rounds (see the module); p50 per variant and its ratio to the first. Quiet
    A/Bs wait for idle CPUs and are retried when noisy (`quietest`); `contended` ones are not."""

    def measure() -> dict[str, Any]:
        for fn in calls.values():
            for _ in range(args.warmup):
                fn()
        times = shuffled_rounds(calls, args.rounds, args.runs)
        stats = {n: summarize([t for r in rounds for t in r]) for n, rounds in times.items()}
        first = stats[next(iter(stats))]["p50_ms"]
        for s in stats.values():
            s["ratio"] = s["p50_ms"] / first
        return {"latency_ms": stats}

    if contended:
        load = LoadMeter()
        out = {**measure(), "load": load.summary()}
    else:
        out = quietest(measure, args)
    for n, s in out["latency_ms"].items():
        print(f"  {n:44s} {s['p50_ms']:7.2f} ms  x{s['ratio']:.3f}", file=sys.stderr)
    return out


def profile(
    graph: Any, feeds: Mapping[str, Any], args: argparse.Namespace, tmp: Path, tag: str
) -> dict[str, Any]:
    """Kernel time per operator type and per node group, per call (ms), on idle CPUs where it
    can (`quietest`)."""
    return quietest(lambda: _profile(graph, feeds, args, tmp, tag), args)


def _profile(
    graph: Any, feeds: Mapping[str, Any], args: argparse.Namespace, tmp: Path, tag: str
) -> dict[str, Any]:
    sess = session(graph, args.threads, profile=str(tmp / tag))
    given = inputs_of(sess, feeds)
    for _ in range(args.warmup):
        sess.run(None, given)
    for _ in range(args.profile_runs):
        sess.run(None, given)
    events = json.loads(Path(sess.end_profiling()).read_text())
    calls = sum(e.get("name") == "model_run" for e in events)
    by_op: collections.Counter[str] = collections.Counter()
    by_group: collections.Counter[str] = collections.Counter()
    by_node: collections.Counter[str] = collections.Counter()
    nodes: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name, op = e["name"].removesuffix("_kernel_time"), e["args"]["op_name"]
        group = next((g for g, pattern in GROUPS if pattern.search(name)), "other")
        by_op[op] += e["dur"]
        by_group[group] += e["dur"]
        by_node[f"{op} {name}"] += e["dur"]
        nodes[group] += 1
    total = sum(by_op.values())
    ms = 1 / (1000 * calls)
    out = {
        "calls": calls,
        "kernel_ms": total * ms,
        "nodes_per_call": sum(nodes.values()) / calls,
        "by_op_ms": {op: d * ms for op, d in by_op.most_common()},
        "by_group": {
            g: {"ms": d * ms, "share": d / total, "nodes": nodes[g] // calls}
            for g, d in by_group.most_common()
        },
        "top_nodes_ms": {n: d * ms for n, d in by_node.most_common(args.top)},
    }
    print(
        f"  {tag}: {out['kernel_ms']:.2f} ms of kernels, {out['nodes_per_call']:.0f} nodes", file=sys.stderr
    )
    for g, v in out["by_group"].items():
        print(
            f"    {g:40s} {v['ms']:6.2f} ms {100 * v['share']:5.1f}%  ({v['nodes']} nodes)", file=sys.stderr
        )
    return out


def int8_variants(encoder: Path) -> dict[str, Any]:
    from gliner_onnx.export.graph_io import topological_sort
    from gliner_onnx.export.precision.int8 import DEFAULT_RECIPE, FAST_RECIPE, quantize_file

    recipes = {
        "default": DEFAULT_RECIPE,
        "default without packing": replace(DEFAULT_RECIPE, pack=False),
        "fast": FAST_RECIPE,
    }
    out = {}
    for name, recipe in recipes.items():
        with quiet():
            proto, _info = quantize_file(encoder, recipe)
        topological_sort(proto.graph)
        out[name] = proto
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fp32", type=Path, required=True, help="an fp32 gliner-onnx export (span layout)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile-runs", type=int, default=30)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument(
        "--contended", action="store_true", help="also time the sessions next to a busy process"
    )
    parser.add_argument(
        "--wait-idle", type=float, default=0.0, help="before each quiet A/B, wait up to S s for idle CPUs"
    )
    parser.add_argument(
        "--retries", type=int, default=0, help="re-time a noisy quiet A/B or profile up to N times"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "cpu_overheads.json")
    args = parser.parse_args()
    load = LoadMeter()
    doc: dict[str, Any] = {
        **header(),
        "what": "batch 1 (bench_common's text, 5 labels): time besides the products, session settings, int8",
        "export": str(args.fp32),
        "threads": args.threads,
    }
    warn_if_dirty(doc["git"])
    feeds = record_feeds(args.fp32, args.threads)
    doc["feeds"] = {g: {k: list(v.shape) for k, v in f.items()} for g, f in feeds.items()}
    encoder, scorer = args.fp32 / "text_encoder.onnx", args.fp32 / "scorer.onnx"
    int8 = int8_variants(encoder)
    with tempfile.TemporaryDirectory() as tmp:
        print("profile", file=sys.stderr)
        doc["profile"] = {
            "fp32 text_encoder": profile(
                encoder, feeds["text_encoder"], args, Path(tmp), "fp32_text_encoder"
            ),
            "fp32 scorer": profile(scorer, feeds["scorer"], args, Path(tmp), "fp32_scorer"),
            "int8 text_encoder": profile(
                int8["default"], feeds["text_encoder"], args, Path(tmp), "int8_text_encoder"
            ),
        }
    doc["sessions"] = {}
    for precision, graph in (("fp32", encoder), ("int8", int8["default"])):
        settings = {
            "runtime": {},
            "SkipLayerNormFusion on": {"skip_layer_norm": True},
            "spinning, stopped after each run": {"spin": True},
        }
        calls = {
            name: pipeline(session(graph, args.threads, **kw), session(scorer, args.threads, **kw), feeds)
            for name, kw in settings.items()
        }
        print(f"sessions {precision}, text encoder + scorer", file=sys.stderr)
        doc["sessions"][precision] = {"quiet": ab(calls, args)}
        if args.contended:
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                print(f"sessions {precision}, one other process busy", file=sys.stderr)
                doc["sessions"][precision]["one busy process"] = ab(calls, args, contended=True)
            finally:
                busy.kill()
                busy.wait()
    import numpy as np

    sessions = {name: session(proto, args.threads) for name, proto in int8.items()}
    given = {name: inputs_of(s, feeds["text_encoder"]) for name, s in sessions.items()}
    outputs = {name: s.run(None, given[name]) for name, s in sessions.items()}
    first = outputs["default"]
    print("int8 text encoder", file=sys.stderr)
    doc["int8"] = {
        **ab({name: (lambda s=s, g=given[name]: s.run(None, g)) for name, s in sessions.items()}, args),
        "max_abs_diff_vs_default": {
            name: max(float(np.abs(a - b).max()) for a, b in zip(out, first, strict=True))
            for name, out in outputs.items()
        },
    }
    doc["load"] = load.summary()  # the whole run's; each A/B records its own too
    args.output.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
