"""DeBERTa's attention as traced by transformers against the export's rewrite
(export/backbone/deberta.py), on the encoder alone, fp32 and int8.

    pip install -e ".[export]"
    python benchmarks/bench_deberta_attention.py                       # small base large, 116 tokens
    python benchmarks/bench_deberta_attention.py --shapes small --tokens 116 512 --rounds 5

Per shape (random weights at the releases' configs: DeBERTa-v3 small 6 x 768, base 12 x 768,
large 24 x 1024; relative attention, 256 buckets, c2p|p2c, shared keys; a 1,000-row vocabulary,
which changes no compute), the `DebertaV2Model` is traced twice the way `gliner-export` traces
it (legacy exporter, eager attention, constant folding), as transformers writes the attention
and with the rewrite; each graph is also quantized with the export's default int8 recipe
(`export/precision/int8.py`). Each graph is checked against torch on real tokens (max |diff| of
the last hidden state), then timed at batch 1 for each `--tokens` length (`--threads` intra-op
threads, ONNX Runtime's full optimizations, no spinning): warm-up, then `--rounds` rounds, the four graphs in
shuffled order each round, `--runs` calls each, medians of all calls. The operator counts of
each graph are recorded. Writes JSON (`--output`) and prints a table.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import RESULTS, LoadMeter, header, quiet, shuffled_rounds, summarize, warn_if_dirty  # noqa: E402

SHAPES = {
    "small": {"num_hidden_layers": 6, "hidden_size": 768, "num_attention_heads": 12},
    "base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12},
    "large": {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16},
}
VOCAB = 1000
GRAPHS = ("transformers fp32", "rewrite fp32", "transformers int8", "rewrite int8")


def build(shape: str) -> Any:
    import torch
    from transformers import DebertaV2Config, DebertaV2Model

    dims = SHAPES[shape]
    config = DebertaV2Config(
        vocab_size=VOCAB,
        intermediate_size=4 * dims["hidden_size"],
        max_position_embeddings=512,
        type_vocab_size=0,
        layer_norm_eps=1e-7,
        relative_attention=True,
        max_relative_positions=-1,
        position_buckets=256,
        pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
        **dims,
    )
    torch.manual_seed(0)

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = DebertaV2Model(config)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return Encoder().eval()


def trace(encoder: Any, rewritten: bool) -> Any:
    import contextlib

    import onnx
    import torch

    from gliner_onnx.export.backbone import deberta
    from gliner_onnx.export.tracing import eager_attention

    ids = torch.randint(1, VOCAB, (2, 24), generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    context = deberta.rewrite(encoder) if rewritten else contextlib.nullcontext()
    with torch.no_grad(), eager_attention(encoder), context, quiet():
        torch.onnx.export(
            encoder,
            (ids, torch.ones_like(ids)),
            buffer,
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask", "hidden")},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def session(proto: Any, threads: int) -> Any:
    import onnxruntime as ort
    from suite.engines import gliner_session_options

    # Four sessions take turns: a session's threads spinning after its call would take the
    # cores from the next one.
    so = gliner_session_options(threads, spin=False)
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_shape(shape: str, tokens: list[int], args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from gliner_onnx.export.precision.int8 import DEFAULT_RECIPE, quantize_graph

    encoder = build(shape)
    protos = {}
    for rewritten, name in ((False, "transformers"), (True, "rewrite")):
        protos[f"{name} fp32"] = trace(encoder, rewritten)
        with quiet():
            protos[f"{name} int8"], _ = quantize_graph(protos[f"{name} fp32"], DEFAULT_RECIPE)
    sessions = {name: session(protos[name], args.threads) for name in GRAPHS}
    out: dict[str, Any] = {
        "dims": SHAPES[shape],
        "ops": {
            name: dict(Counter(n.op_type for n in protos[name].graph.node).most_common()) for name in GRAPHS
        },
        "mb": {name: round(protos[name].ByteSize() / 2**20, 1) for name in GRAPHS},
        "lengths": {},
    }
    for length in tokens:
        ids = torch.randint(1, VOCAB, (1, length), generator=torch.Generator().manual_seed(length))
        mask = torch.ones_like(ids)
        with torch.no_grad():
            expected = encoder(ids, mask).numpy()
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        diffs = {n: float(np.abs(s.run(None, feeds)[0] - expected).max()) for n, s in sessions.items()}
        for s in sessions.values():
            for _ in range(args.warmup):
                s.run(None, feeds)
        calls = {n: functools.partial(sessions[n].run, None, feeds) for n in GRAPHS}
        times = shuffled_rounds(calls, args.rounds, args.runs)
        stats = {n: summarize([t for r in times[n] for t in r]) for n in GRAPHS}
        out["lengths"][str(length)] = {
            "max_abs_diff_vs_torch": diffs,
            "latency_ms": stats,
            "rewrite_over_transformers": {
                p: stats[f"rewrite {p}"]["p50_ms"] / stats[f"transformers {p}"]["p50_ms"]
                for p in ("fp32", "int8")
            },
        }
        row = "  ".join(f"{n} {stats[n]['p50_ms']:.1f}" for n in GRAPHS)
        print(f"{shape} {length} tokens: {row} ms", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--tokens", nargs="+", type=int, default=[116])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS / "deberta_attention.json")
    args = parser.parse_args()
    load = LoadMeter()
    results: dict[str, Any] = {}
    for shape in args.shapes:
        results[shape] = run_shape(shape, args.tokens, args)
    doc = {
        **header(load),
        "what": "DeBERTa-v2 encoder alone, transformers' attention vs the export's rewrite, batch 1",
        "threads": args.threads,
        "shapes": results,
    }
    warn_if_dirty(doc["git"])
    args.output.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
