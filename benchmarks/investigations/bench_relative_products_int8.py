"""Would int8 speed up DeBERTa's relative-position products? One layer's content-to-position
product, fp32 against int8, alone, as the runtime's sessions run it.

    python benchmarks/investigations/bench_relative_products_int8.py
    python benchmarks/investigations/bench_relative_products_int8.py --tokens 92 --heads 16

In the exported encoder (`export/backbone/deberta.py`) each layer multiplies the queries
`[heads, L, head_size]` by the relative keys gathered for the sequence's `2L` offsets
`[heads, 2L, head_size]` (and the keys by the relative queries, the same shape). Both operands
change with every call (the gather depends on L), so int8 cannot use prepacked weights as it does
for the layers' weight products: both are quantized when the call runs (`DynamicQuantizeLinear`),
multiplied (`MatMulInteger`) and scaled back (`Cast`, `Mul`). Per `--tokens`: p50 of each over
alternating rounds (`--rounds` x `--runs`), `--threads` intra-op threads sleeping between
operators (the runtime's session settings, `bench_cpu_overheads.session`), and int8's largest
error relative to fp32's largest output.
Writes results/relative_products_int8.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))
from bench_common import RESULTS, LoadMeter, header, shuffled_rounds, warn_if_dirty  # noqa: E402
from bench_cpu_overheads import session  # noqa: E402


def model(nodes: list[Any], heads: int, tokens: int, head_size: int) -> Any:
    """The product's graph on `nodes`: q (heads, tokens, head_size), k (heads, 2 tokens, head_size)."""
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info("q", TensorProto.FLOAT, [heads, tokens, head_size]),
        helper.make_tensor_value_info("k", TensorProto.FLOAT, [heads, 2 * tokens, head_size]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    proto = helper.make_model(
        helper.make_graph(nodes, "relative_product", inputs, outputs),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    proto.ir_version = 9
    return proto


def graphs() -> dict[str, list[Any]]:
    from onnx import TensorProto, helper

    node = helper.make_node
    transpose = node("Transpose", ["k"], ["kt"], perm=[0, 2, 1])
    return {
        "fp32": [transpose, node("MatMul", ["q", "kt"], ["y"])],
        "int8": [
            transpose,
            node("DynamicQuantizeLinear", ["q"], ["qq", "qs", "qz"]),
            node("DynamicQuantizeLinear", ["kt"], ["kq", "ks", "kz"]),
            node("MatMulInteger", ["qq", "kq", "qz", "kz"], ["yi"]),
            node("Cast", ["yi"], ["yf"], to=TensorProto.FLOAT),
            node("Mul", ["qs", "ks"], ["scale"]),
            node("Mul", ["yf", "scale"], ["y"]),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, nargs="+", default=[92, 400])
    parser.add_argument("--heads", type=int, default=12, help="12: DeBERTa-v3 small and base; 16: large")
    parser.add_argument("--head-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    load = LoadMeter()
    doc: dict[str, Any] = {
        **header(),
        "heads": args.heads,
        "head_size": args.head_size,
        "threads": args.threads,
    }
    warn_if_dirty(doc["git"])
    rng = np.random.default_rng(0)
    rows = []
    for tokens in args.tokens:
        feeds = {
            "q": rng.standard_normal((args.heads, tokens, args.head_size), dtype=np.float32),
            "k": rng.standard_normal((args.heads, 2 * tokens, args.head_size), dtype=np.float32),
        }
        sessions = {
            name: session(model(nodes, args.heads, tokens, args.head_size), args.threads)
            for name, nodes in graphs().items()
        }
        calls = {name: functools.partial(s.run, None, feeds) for name, s in sessions.items()}
        outputs = {name: call()[0] for name, call in calls.items()}
        for call in calls.values():
            for _ in range(20):
                call()
        times = shuffled_rounds(calls, args.rounds, args.runs)
        p50 = {name: 1e6 * statistics.median(t for r in rounds for t in r) for name, rounds in times.items()}
        error = float(np.abs(outputs["int8"] - outputs["fp32"]).max() / np.abs(outputs["fp32"]).max())
        rows.append(
            {"tokens": tokens, "p50_us": p50, "int8_over_fp32": p50["int8"] / p50["fp32"], "error": error}
        )
        print(
            f"L={tokens}: fp32 {p50['fp32']:.0f} us, int8 {p50['int8']:.0f} us "
            f"({p50['int8'] / p50['fp32']:.2f}x), relative error {error:.4f}",
            file=sys.stderr,
        )
    doc["rows"] = rows
    doc["load"] = load.summary()
    out = RESULTS / "relative_products_int8.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
