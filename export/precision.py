"""Lower precision: int8 or fp16 copies of a validated fp32 export, and their agreement.

Each output directory holds one precision; the manifest records it, what was converted
in each graph, and the entity-level F1 of the copy's predictions against the fp32
graphs' on a fixed corpus of varied text.

The int8 recipe was decided by measurement (`benchmarks/README.md`; relative error of the
text encoder's outputs on the MiniLM span demo, entity agreement with fp32 on a MiniLM span
checkpoint with trained heads, `benchmarks/bench_int8_trained.py`):
- only MatMul nodes with a weight operand: quantizing the word-embedding Gather alone moved
  the label (prompt) embeddings by 40%, the LSTM by 1%;
- only the backbone's transformer layers: the span / label heads and the scorer are
  small and stay fp32;
- and of those, only the attention's (query, key, value and output projections): the
  feed-forward MatMuls cost the most agreement. On two MiniLM span checkpoints with trained
  heads, entity F1 against fp32 on the agreement corpus: every layer MatMul in int8 0.894 /
  0.864, all but the feed-forward output 0.954 / 0.906, attention only 0.977 / 0.973;
- uint8 weights per output channel: int8 weights saturate in ONNX Runtime's u8s8
  kernels on AVX2 CPUs without VNNI (attention output error 32% against 4%).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from gliner_onnx.manifest import GraphEntry, Manifest, load_manifest

from .graph_io import topological_sort, write_graph

LOWER_PRECISIONS = ("int8", "fp16")
# Node-name fragment of the transformer layers of Hugging Face encoders (BERT, DeBERTa,
# RoBERTa, ...), as torch.onnx names them from the module path.
BACKBONE_LAYER = "/encoder/layer."
# The attention block of those layers (query / key / value / output projections); the
# feed-forward `intermediate` and `output` MatMuls stay fp32.
ATTENTION = "/attention/"
AGREEMENT_LABELS = ("person", "organization", "location", "date", "event", "product")
AGREEMENT_THRESHOLD = 0.5


def agreement_corpus() -> list[str]:
    """The fixed corpus: 114 varied lines (names, scripts, numbers, code-ish, noise) and a
    long paragraph."""
    from . import samples

    return [*samples.corpus_lines(), samples.LONG]


def entity_f1(
    reference: Sequence[Sequence[dict[str, Any]]], predicted: Sequence[Sequence[dict[str, Any]]]
) -> dict[str, float]:
    """Entity-level precision, recall and F1: an entity matches on (text index, start, end, label)."""
    ref = {(i, e["start"], e["end"], e["label"]) for i, ents in enumerate(reference) for e in ents}
    got = {(i, e["start"], e["end"], e["label"]) for i, ents in enumerate(predicted) for e in ents}
    tp = len(ref & got)
    p = tp / len(got) if got else float(not ref)
    r = tp / len(ref) if ref else float(not got)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1}


def backbone_weight_matmuls(proto: onnx.ModelProto) -> list[str]:
    """The MatMul nodes of the backbone's transformer layers whose second operand is a weight
    (what dynamic quantization with `MatMulConstBOnly` can convert)."""
    weights = {t.name for t in proto.graph.initializer}
    return [
        n.name
        for n in proto.graph.node
        if n.op_type == "MatMul" and BACKBONE_LAYER in n.name and len(n.input) == 2 and n.input[1] in weights
    ]


def int8_nodes(proto: onnx.ModelProto) -> list[str]:
    """The MatMul nodes the int8 recipe quantizes: the weight MatMuls of the attention blocks of
    the backbone's transformer layers."""
    return [name for name in backbone_weight_matmuls(proto) if ATTENTION in name]


def _int8(path: Path) -> tuple[onnx.ModelProto, dict[str, Any]]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load(str(path))
    chosen = int8_nodes(proto)
    matmuls = [n.name for n in proto.graph.node if n.op_type == "MatMul"]
    if not chosen:
        return proto, {"precision": "fp32", "quantized_matmuls": 0, "matmuls": len(matmuls)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "q.onnx"
        quantize_dynamic(
            proto,
            out,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=chosen,
            per_channel=True,
            weight_type=QuantType.QUInt8,
            use_external_data_format=True,
            extra_options={"MatMulConstBOnly": True},
        )
        quantized = onnx.load(str(out))
    info = {"precision": "int8", "quantized_matmuls": len(chosen), "matmuls": len(matmuls)}
    return quantized, info


def _fp16(path: Path) -> tuple[onnx.ModelProto, dict[str, Any]]:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    return proto, {"precision": "fp16", "io": "float32"}


def lower_precision(
    fp32_dir: Path, out_dir: Path, precision: str, log: Callable[[str], None] = print
) -> Manifest:
    """Write an `precision` copy of the fp32 export `fp32_dir` into the empty `out_dir`."""
    if precision not in LOWER_PRECISIONS:
        raise ValueError(f"precision must be one of {LOWER_PRECISIONS}, got {precision!r}")
    manifest = load_manifest(fp32_dir)
    if manifest.precision != "fp32":
        raise ValueError(f"{fp32_dir} holds {manifest.precision} graphs, not fp32")
    convert = _int8 if precision == "int8" else _fp16
    for tok in manifest.tokenizers.values():
        (out_dir / tok.file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fp32_dir / tok.file, out_dir / tok.file)
    graphs: dict[str, GraphEntry] = {}
    for name, g in manifest.graphs.items():
        log(f"converting {name} to {precision} ...")
        proto, info = convert(fp32_dir / g.file)
        topological_sort(proto.graph)
        entry = write_graph(proto, out_dir, name, g.inputs, g.outputs)
        graphs[name] = replace(entry, optimization={**g.optimization, **info})
    lowered = replace(manifest, graphs=graphs, precision=precision)
    lowered.save(out_dir)
    log(f"measuring {precision} agreement with fp32 ...")
    agreement = measure_agreement(fp32_dir, out_dir)
    log(f"entity F1 of {precision} against fp32: {agreement['f1']:.3f} on {agreement['texts']} texts")
    lowered = replace(lowered, agreement=agreement)
    lowered.save(out_dir)
    return lowered


def measure_agreement(fp32_dir: Path, other_dir: Path) -> dict[str, Any]:
    """Entity-level agreement of `other_dir`'s predictions with `fp32_dir`'s on the corpus."""
    from gliner_onnx import GLiNER

    texts = agreement_corpus()
    labels = list(AGREEMENT_LABELS)
    # Entities only (relex exports: relation scoring skipped).
    kw = {"threshold": AGREEMENT_THRESHOLD, "batch_size": 8, "return_relations": False}
    ref = [r.entities for r in GLiNER.from_pretrained(fp32_dir).extract(texts, labels, **kw)]
    got = [r.entities for r in GLiNER.from_pretrained(other_dir, verify=False).extract(texts, labels, **kw)]
    return {
        "metric": "entity F1 against the fp32 graphs (text, start, end, label)",
        **entity_f1(ref, got),
        "texts": len(texts),
        "labels": labels,
        "threshold": AGREEMENT_THRESHOLD,
        "fp32_entities": sum(map(len, ref)),
        "entities": sum(map(len, got)),
    }
