"""How much each group of the text encoder's MatMuls moves its outputs when quantized to int8,
by weight type (how the int8 recipe's node set and uint8 weights were chosen).

    python benchmarks/investigations/bench_int8_error.py --threads 2

Exports the offline demo `uniencoder_span` (MiniLM, factorized span head), records the text
encoder's feeds on the first `--texts` texts of the export's agreement corpus (6 labels), then
quantizes one node group at a time with ONNX Runtime's dynamic quantization (`MatMulConstBOnly`,
per channel; uint8 weights, int8 weights, int8 with reduce_range) and reports, per output, the
relative error ||q - f|| / ||f|| over all feeds against the fp32 graph. The embedding Gather is
measured alone (what `quantize_dynamic` converts by default besides MatMuls). Accuracy only:
the machine's load does not change these figures. Writes results/int8_error.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_common import RESULTS, header, quiet, warn_if_dirty  # noqa: E402

LABELS = ["person", "organization", "location", "date", "event", "product"]  # the export corpus's
# Node groups of the backbone layers' weight MatMuls, by the names torch.onnx gives a BERT-family
# backbone (".../attention/self/query/MatMul", ".../intermediate/dense/MatMul", ...).
GROUPS: dict[str, Callable[[str], bool]] = {
    "attention Q/K/V": lambda n: "/attention/self/" in n,
    "attention output": lambda n: "/attention/output/" in n,
    "feed-forward in": lambda n: "/intermediate/" in n,
    "feed-forward out": lambda n: "/output/" in n and "/attention/" not in n,
}
WEIGHTS = {
    "uint8 per channel": {"weight_type": "QUInt8", "reduce_range": False},
    "int8 per channel": {"weight_type": "QInt8", "reduce_range": False},
    "int8 per channel, reduce_range": {"weight_type": "QInt8", "reduce_range": True},
}


def record_feeds(export: Path, texts: list[str], threads: int) -> list[dict[str, Any]]:
    """The feeds our runtime gives the text encoder for each text (ONNX Runtime's run, wrapped)."""
    import onnxruntime as ort

    from gliner_onnx import GLiNER, SessionOptions

    model = GLiNER.from_pretrained(export, session_options=SessionOptions(intra_op_num_threads=threads))
    encoder_inputs = {i.name for i in ort.InferenceSession(str(export / "text_encoder.onnx")).get_inputs()}
    feeds: list[dict[str, Any]] = []
    original = ort.InferenceSession.run

    def run(self: Any, output_names: Any, input_feed: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if set(input_feed) == encoder_inputs:
            feeds.append({k: v.copy() for k, v in input_feed.items()})
        return original(self, output_names, input_feed, *args, **kwargs)

    ort.InferenceSession.run = run  # type: ignore[method-assign]
    try:
        for text in texts:
            model.predict_entities(text, LABELS)
    finally:
        ort.InferenceSession.run = original  # type: ignore[method-assign]
    if len(feeds) != len(texts):
        raise RuntimeError(f"recorded {len(feeds)} text-encoder calls for {len(texts)} texts")
    return feeds


def outputs(path: Path, feeds: list[dict[str, Any]], threads: int) -> dict[str, list[Any]]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    out: dict[str, list[Any]] = {n: [] for n in names}
    for f in feeds:
        for n, v in zip(names, sess.run(None, f)):
            out[n].append(v)
    return out


def rel_error(ref: list[Any], got: list[Any]) -> float:
    import numpy as np

    num = sum(float(np.sum((g.astype(np.float64) - r) ** 2)) for r, g in zip(ref, got))
    den = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in ref)
    return (num / den) ** 0.5 if den else 0.0


def quantize(
    src: Path, dst: Path, nodes: list[str] | None, op_types: list[str], weights: dict[str, Any]
) -> int:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(
            onnx.load(str(src)),
            dst,
            op_types_to_quantize=op_types,
            nodes_to_quantize=nodes,
            per_channel=True,
            reduce_range=weights["reduce_range"],
            weight_type=getattr(QuantType, weights["weight_type"]),
            use_external_data_format=True,
            extra_options={"MatMulConstBOnly": True},
        )
    return sum(1 for n in onnx.load(str(dst), load_external_data=False).graph.node if "Integer" in n.op_type)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--texts", type=int, default=40, help="texts of the export's agreement corpus")
    p.add_argument("--out", type=Path, default=RESULTS / "int8_error.json")
    args = p.parse_args()

    import onnx

    from gliner_onnx.export import export_model
    from gliner_onnx.export.demo import build_demo
    from gliner_onnx.export.precision import agreement_corpus
    from gliner_onnx.export.precision.int8 import BACKBONE_LAYER, weight_matmuls

    head = header()
    warn_if_dirty(head["git"])
    work = Path(tempfile.mkdtemp(prefix="bench-int8-error-"))
    export = work / "fp32"
    with quiet():
        export_model(build_demo("uniencoder_span"), export, log=lambda _m: None)
    encoder = export / "text_encoder.onnx"
    feeds = record_feeds(export, agreement_corpus()[: args.texts], args.threads)
    ref = outputs(encoder, feeds, args.threads)
    encoder_proto = onnx.load(str(encoder), load_external_data=False)
    layer_matmuls = [n.name for n in weight_matmuls(encoder_proto) if BACKBONE_LAYER in n.name]
    rows: list[dict[str, Any]] = []
    jobs: list[tuple[str, list[str] | None, list[str]]] = [
        (g, [n for n in layer_matmuls if keep(n)], ["MatMul"]) for g, keep in GROUPS.items()
    ]
    jobs.append(("word-embedding Gather", None, ["Gather"]))
    for group, nodes, op_types in jobs:
        for wname, weights in WEIGHTS.items():
            if op_types == ["Gather"] and wname != "uint8 per channel":
                continue
            dst = work / f"q-{len(rows)}.onnx"
            converted = quantize(encoder, dst, nodes, op_types, weights)
            got = outputs(dst, feeds, args.threads)
            errors = {n: rel_error(ref[n], got[n]) for n in ref}
            row = {"group": group, "weights": wname, "nodes": len(nodes or []), "integer_ops": converted}
            rows.append({**row, **errors})
            cells = "  ".join(f"{n} {e:.3f}" for n, e in errors.items())
            print(f"{group:22} {wname:32} {cells}", flush=True)
    record = {**head, "texts": len(feeds), "labels": LABELS, "outputs": list(ref), "rows": rows}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
