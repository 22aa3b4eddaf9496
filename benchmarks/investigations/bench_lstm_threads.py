"""Why the span head's BiLSTM costs what it does at batch 1: its arithmetic against the intra-op
threads waking up at every step.

    python benchmarks/investigations/bench_lstm_threads.py
    python benchmarks/investigations/bench_lstm_threads.py --steps 66 --input 768 --hidden 384

GLiNER runs a bidirectional LSTM over the words' embeddings (`rnn.lstm`: input = the encoder's
hidden size, hidden = half of it). ONNX Runtime's CPU kernel computes the input projection of
all steps as one matrix product, then, one direction after the other, each step's recurrent
product `h @ R^T` (`[batch, hidden] x [hidden, 4 * hidden]`) on the session's intra-op threads,
then the gates. At batch 1 that is `2 * steps` small parallel products in a row: with threads
that sleep between operators (the runtime's default, `SessionOptions.spinning=False`) each one
wakes the other threads, and with spinning threads (`session.intra_op.allow_spinning`) it does
not.

The LSTM alone, as torch.onnx exports gliner's (`sequence_lens`, zero initial states; random
weights of DeBERTa-v3-small's head: 66 words, 768 -> 2 x 384), one session per variant, each
session its own graph: 1 thread; `--threads` threads sleeping between operators; the same
spinning (and stopped after each run, as `SessionOptions(spinning=True)` does). `--rounds`
rounds, the variants in a new random order each round, `--runs` calls each after a warm-up,
p50 of all calls. `per_step_wake_us` is (sleeping - spinning) / (2 * steps): what each step's
wake-up costs. Writes results/lstm_threads.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_common import RESULTS, LoadMeter, header, shuffled_rounds, summarize, warn_if_dirty


def lstm_graph(steps: int, input_size: int, hidden: int, seed: int = 0) -> bytes:
    """A bidirectional ONNX LSTM of the given shape, fed as torch.onnx feeds gliner's."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> Any:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.05).astype(np.float32), name)

    node = helper.make_node(
        "LSTM",
        ["x", "W", "R", "B", "lengths", "h0", "c0"],
        ["y"],
        hidden_size=hidden,
        direction="bidirectional",
    )
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, 1, input_size]),
        helper.make_tensor_value_info("lengths", TensorProto.INT32, [1]),
        helper.make_tensor_value_info("h0", TensorProto.FLOAT, [2, 1, hidden]),
        helper.make_tensor_value_info("c0", TensorProto.FLOAT, [2, 1, hidden]),
    ]
    weights = [
        weight("W", 2, 4 * hidden, input_size),
        weight("R", 2, 4 * hidden, hidden),
        weight("B", 2, 8 * hidden),
    ]
    graph = helper.make_graph(
        [node],
        "lstm",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [steps, 2, 1, hidden])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def session(graph: bytes, threads: int, spinning: bool) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if spinning:
        so.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=66, help="words (default 66: bench_common's text)")
    p.add_argument("--input", type=int, default=768, help="the encoder's hidden size (default 768)")
    p.add_argument("--hidden", type=int, default=384, help="LSTM hidden size per direction (default 384)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--output", type=Path, default=RESULTS / "lstm_threads.json")
    args = p.parse_args()
    head = header()
    warn_if_dirty(head["git"])
    graph = lstm_graph(args.steps, args.input, args.hidden)
    rng = np.random.default_rng(1)
    feeds = {
        "x": rng.standard_normal((args.steps, 1, args.input)).astype(np.float32),
        "lengths": np.array([args.steps], dtype=np.int32),
        "h0": np.zeros((2, 1, args.hidden), np.float32),
        "c0": np.zeros((2, 1, args.hidden), np.float32),
    }
    variants = {
        "1 thread": session(graph, 1, False),
        f"{args.threads} threads, sleeping": session(graph, args.threads, False),
        f"{args.threads} threads, spinning": session(graph, args.threads, True),
    }
    reference = variants["1 thread"].run(None, feeds)[0]
    for name, sess in variants.items():
        if not np.allclose(sess.run(None, feeds)[0], reference, atol=1e-5):
            raise SystemExit(f"{name}: outputs differ from one thread's")
        for _ in range(5):
            sess.run(None, feeds)
    meter = LoadMeter()
    calls = {name: functools.partial(sess.run, None, feeds) for name, sess in variants.items()}
    times = shuffled_rounds(calls, args.rounds, args.runs, random.Random(0))
    latency = {name: summarize([t for r in rounds for t in r]) for name, rounds in times.items()}
    sleeping = latency[f"{args.threads} threads, sleeping"]["p50_ms"]
    spinning = latency[f"{args.threads} threads, spinning"]["p50_ms"]
    record = {
        **head,
        "load": meter.summary(),
        "shape": {"steps": args.steps, "input": args.input, "hidden": args.hidden, "batch": 1},
        "threads": args.threads,
        "rounds": args.rounds,
        "runs": args.runs,
        "latency": latency,
        "recurrent_products_per_call": 2 * args.steps,
        "per_step_wake_us": round((sleeping - spinning) * 1000 / (2 * args.steps), 2),
    }
    args.output.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for name, r in latency.items():
        print(f"{name:28} p50 {r['p50_ms']:.2f} ms")
    print(f"wake-up per recurrent step: {record['per_step_wake_us']} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
