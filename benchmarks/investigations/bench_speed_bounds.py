"""How far int8 can pull ahead of fp32 at batch 1 with ONNX Runtime's CPU kernels: each call
split into the weight products, the LSTM and the rest, and the products timed alone.

    python benchmarks/bench_real_size.py --shapes small --skip-timing     # its exports, in its workspace
    python benchmarks/investigations/bench_speed_bounds.py \\
        --fp32 /tmp/gliner-onnx-real-size/small-ours-fp32 --int8 /tmp/gliner-onnx-real-size/small-ours-int8
    python benchmarks/investigations/bench_speed_bounds.py --fp32 DIR --int8 DIR --tag large --target 3

For an fp32 export and its `--quantize int8` copy, on bench_common's batch-1 case (the ~60-word
text, 5 labels), in one process, sessions as the runtime creates them (`--threads` intra-op
threads, sleeping between operators):

* `calls`: `GLiNER.predict_entities` of each export, alternating shuffled rounds, p50;
* `profile`: ONNX Runtime's profiler on each export's text encoder and scorer, on the inputs the
  runtime feeds them: kernel time per call of the weight products (fp32: MatMul / Gemm with a
  weight operand; int8: ONNX Runtime's dynamic int8 products), of the LSTM, and of every other
  kernel, with each product's shape;
* `products_alone`: the fp32 export's weight products at those shapes, each on its own input,
  as one graph of random weights (the model's weight bytes, so they stream from memory as in the
  model), fp32 `MatMul` against int8 `DynamicQuantizeMatMul` (signed per-channel weights):
  what the kernels give on these shapes, in GFLOP/s;
* `largest_product_alone`: the largest of those products alone in its own graph, its weights
  staying in the caches between runs: fp32, int8, and ONNX Runtime's 8-bit `MatMulNBits`
  (one scale per 32 weights along K, accuracy level 4: int8 arithmetic on block-quantized
  activations), the other int8 kernel it offers;
* `bounds`: the int8 speed-up now; with int8's products at their time alone and every other
  kernel and the time outside the kernels as fp32's (`int8_products_alone`); with nothing but the
  products and the LSTM (`products_and_lstm_only`); and how many ms the rest may take, in both
  precisions alike, for the speed-up to reach `--target`.

Writes results/speed_bounds_<tag>.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))
from bench_common import LABELS, RESULTS, TEXT, LoadMeter, header, shuffled_rounds, warn_if_dirty  # noqa: E402
from bench_cpu_overheads import GRAPHS, inputs_of, record_feeds, session  # noqa: E402

INT8_PRODUCTS = {"DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "QGemm"}
LSTMS = {"LSTM", "DynamicQuantizeLSTM"}


def weight_products(graph: Path) -> dict[str, tuple[int, int]]:
    """The graph's weight products (fp32 MatMul / Gemm with a weight operand, int8 products):
    node name -> (K, N) of the weight."""
    import onnx

    proto = onnx.load(str(graph), load_external_data=False)
    weights = {t.name: list(t.dims) for t in proto.graph.initializer}
    out = {}
    for n in proto.graph.node:
        dims = weights.get(n.input[1], []) if len(n.input) > 1 else []
        if n.op_type in ("MatMul", "Gemm", *INT8_PRODUCTS) and len(dims) == 2:
            k, m = dims
            transposed = any(a.name == "transB" and a.i for a in n.attribute)
            out[n.name] = (m, k) if transposed else (k, m)
    return out


def kernel_profile(
    graph: Path, feeds: Mapping[str, Any], threads: int, calls: int, tmp: Path
) -> dict[str, Any]:
    """Kernel ms per call: weight products, LSTM, rest; and each product's (M, K, N)."""
    weighted = weight_products(graph)
    sess = session(graph, threads, profile=str(tmp / graph.stem))
    given = inputs_of(sess, feeds)
    for _ in range(5):
        sess.run(None, given)
    for _ in range(calls):
        sess.run(None, given)
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = sum(e.get("name") == "model_run" for e in events)
    parts = {"products": 0.0, "lstm": 0.0, "rest": 0.0}
    shapes: dict[str, tuple[int, int, int]] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name, op = e["name"].removesuffix("_kernel_time"), e["args"]["op_name"]
        if name in weighted:
            parts["products"] += e["dur"]
            a = next(iter(e["args"]["input_type_shape"][0].values()))
            shapes[name] = (int(np.prod(a[:-1])), *weighted[name])
        elif op in LSTMS:
            parts["lstm"] += e["dur"]
        else:
            parts["rest"] += e["dur"]
    return {"ms": {k: v / (1000 * runs) for k, v in parts.items()}, "products": shapes}


# MatMulNBits' block along K (8-bit weights, one scale per block) and its accuracy level 4: int8
# arithmetic on block-quantized activations.
NBITS_BLOCK = 32


def products_graph(shapes: list[tuple[int, int, int]], kind: str) -> Any:
    """One graph of independent products at `shapes` (M, K, N), random weights: fp32 `MatMul`,
    int8 `DynamicQuantizeMatMul` (signed per-channel weights) or 8-bit `MatMulNBits`."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inputs, outputs, weights = [], [], [], []
    for i, (m, k, n) in enumerate(shapes):
        x, w, s, y = f"x{i}", f"w{i}", f"s{i}", f"y{i}"
        inputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, [m, k]))
        outputs.append(helper.make_tensor_value_info(y, TensorProto.FLOAT, None))
        if kind == "int8":
            q = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
            weights += [
                numpy_helper.from_array(q, w),
                numpy_helper.from_array(np.full(n, 1e-3, np.float32), s),
            ]
            nodes.append(helper.make_node("DynamicQuantizeMatMul", [x, w, s], [y], domain="com.microsoft"))
        elif kind == "nbits8":
            blocks = k // NBITS_BLOCK
            q = rng.integers(0, 256, size=(n, blocks, NBITS_BLOCK), dtype=np.uint8)
            scale = np.full(n * blocks, 1e-3, np.float32)
            weights += [numpy_helper.from_array(q, w), numpy_helper.from_array(scale, s)]
            attrs: dict[str, Any] = {
                "K": k,
                "N": n,
                "bits": 8,
                "block_size": NBITS_BLOCK,
                "accuracy_level": 4,
            }
            nodes.append(helper.make_node("MatMulNBits", [x, w, s], [y], domain="com.microsoft", **attrs))
        else:
            weights.append(numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), w))
            nodes.append(helper.make_node("MatMul", [x, w], [y]))
    graph = helper.make_graph(nodes, "products", inputs, outputs, weights)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 9
    return model


def p50_ms(rounds: list[list[float]]) -> float:
    return 1000 * statistics.median(t for r in rounds for t in r)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fp32", type=Path, required=True, help="an fp32 gliner-onnx export (span layout)")
    parser.add_argument(
        "--int8", type=Path, required=True, help="the same checkpoint's --quantize int8 export"
    )
    parser.add_argument("--tag", default="small", help="results/speed_bounds_<tag>.json")
    parser.add_argument("--target", type=float, default=2.5, help="the int8 speed-up to solve for")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile-runs", type=int, default=20)
    args = parser.parse_args()

    from gliner_onnx import GLiNER, SessionOptions

    load = LoadMeter()
    doc: dict[str, Any] = {**header(), "exports": {"fp32": str(args.fp32), "int8": str(args.int8)}}
    doc.update(threads=args.threads, rounds=args.rounds, runs=args.runs, target=args.target)
    warn_if_dirty(doc["git"])
    exports = {"fp32": args.fp32, "int8": args.int8}
    feeds = record_feeds(args.fp32, args.threads)
    doc["feeds"] = {g: {k: list(v.shape) for k, v in f.items()} for g, f in feeds.items()}

    profile: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision, export in exports.items():
            graphs = {
                g: kernel_profile(export / f"{g}.onnx", feeds[g], args.threads, args.profile_runs, Path(tmp))
                for g in GRAPHS
            }
            profile[precision] = {
                "ms": {k: sum(g["ms"][k] for g in graphs.values()) for k in ("products", "lstm", "rest")},
                "graphs": graphs,
            }
    doc["profile"] = profile

    shapes = [s for g in profile["fp32"]["graphs"].values() for s in g["products"].values()]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    options = SessionOptions(intra_op_num_threads=args.threads)
    models = {p: GLiNER.from_pretrained(e, session_options=options) for p, e in exports.items()}
    # The call's largest product again on its own: its weights stay in the caches between runs.
    largest = max(shapes, key=lambda s: s[0] * s[1] * s[2])
    rng = np.random.default_rng(1)
    alone = {}
    for name, graph_shapes, kind in (
        *((f"products alone {p}", shapes, p) for p in exports),
        *((f"largest product {k}", [largest], k) for k in ("fp32", "int8", "nbits8")),
    ):
        sess = session(products_graph(graph_shapes, kind), args.threads)
        alone[name] = (
            sess,
            {i.name: rng.standard_normal(i.shape, dtype=np.float32) for i in sess.get_inputs()},
        )
    calls: dict[str, Callable[[], Any]] = {}
    for p, m in models.items():
        calls[f"call {p}"] = functools.partial(m.predict_entities, TEXT, LABELS, threshold=0.5)
    for name, (sess, feed) in alone.items():
        calls[name] = functools.partial(sess.run, None, feed)
    for fn in calls.values():
        for _ in range(5):
            fn()
    times = shuffled_rounds(calls, args.rounds, args.runs)
    e2e = {p: p50_ms(times[f"call {p}"]) for p in exports}
    products_alone = {p: p50_ms(times[f"products alone {p}"]) for p in exports}
    doc["calls_p50_ms"] = e2e
    doc["products_alone"] = {
        "count": len(shapes),
        "gflop": flops / 1e9,
        "p50_ms": products_alone,
        "gflop_per_s": {p: flops / 1e6 / t for p, t in products_alone.items()},
        "in_the_graphs_gflop_per_s": {p: flops / 1e6 / profile[p]["ms"]["products"] for p in exports},
    }
    one = {k: p50_ms(times[f"largest product {k}"]) for k in ("fp32", "int8", "nbits8")}
    doc["largest_product_alone"] = {
        "mkn": list(largest),
        "p50_ms": one,
        "gflop_per_s": {k: 2 * largest[0] * largest[1] * largest[2] / 1e6 / t for k, t in one.items()},
    }

    # Each call: products + LSTM + rest, where rest = every other kernel and the time outside them.
    parts = {}
    for p in exports:
        ms = profile[p]["ms"]
        parts[p] = {
            "products": ms["products"],
            "lstm": ms["lstm"],
            "rest": e2e[p] - ms["products"] - ms["lstm"],
        }
    doc["parts_ms"] = parts
    f32, i8 = parts["fp32"], parts["int8"]
    core32, core8 = f32["products"] + f32["lstm"], products_alone["int8"] + i8["lstm"]
    doc["bounds"] = {
        "speedup_now": e2e["fp32"] / e2e["int8"],
        "int8_products_alone": e2e["fp32"] / (core8 + f32["rest"]),
        "products_and_lstm_only": core32 / core8,
        "rest_now_ms": {"fp32": f32["rest"], "int8": i8["rest"]},
        "rest_allowed_ms_for_target": (core32 - args.target * core8) / (args.target - 1),
    }
    doc["load"] = load.summary()
    print(json.dumps({k: doc[k] for k in ("calls_p50_ms", "parts_ms", "bounds")}, indent=1), file=sys.stderr)
    print(json.dumps(doc["products_alone"], indent=1), file=sys.stderr)
    print(json.dumps(doc["largest_product_alone"], indent=1), file=sys.stderr)
    out = RESULTS / f"speed_bounds_{args.tag}.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
