"""ONNX Runtime's offline transformer optimizer on the encoder graphs.

`onnxruntime.transformers.optimizer` (model type "bert", which covers BERT-like
encoders: BERT, MiniLM, RoBERTa, ELECTRA) fuses attention, embedding + LayerNorm,
skip + LayerNorm and bias + GELU into ONNX Runtime's contrib operators, which both
its CPU and CUDA providers implement. It needs the eager-attention trace (the SDPA
trace leaves nothing to fuse). The fused graph is validated against torch like any
other; what was fused is recorded per graph in the manifest.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import onnx

from gliner_onnx.manifest import GraphEntry

from ..graph_io import topological_sort, write_graph

# Graphs holding a transformer encoder.
ENCODER_GRAPHS = ("text_encoder", "label_encoder")


def backbone_shape(core: Any, graph: str) -> tuple[int, int]:
    """(num_heads, hidden_size) of the transformer in `graph` (0, 0 when unknown)."""
    rep = getattr(core, "token_rep_layer", None)
    layer = getattr(rep, "labels_encoder" if graph == "label_encoder" else "bert_layer", None)
    cfg = getattr(getattr(layer, "model", None), "config", None)
    heads, hidden = getattr(cfg, "num_attention_heads", 0), getattr(cfg, "hidden_size", 0)
    return (heads, hidden) if isinstance(heads, int) and isinstance(hidden, int) else (0, 0)


def fuse_graph(
    directory: Path, entry: GraphEntry, name: str, shape: tuple[int, int] = (0, 0)
) -> tuple[GraphEntry, dict[str, Any]]:
    """Fuse `name`'s graph in place; returns its new entry and the fused operator counts.
    `shape`: the encoder's (num_heads, hidden_size), needed to fuse attention."""
    from onnxruntime.transformers.optimizer import optimize_model

    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = optimize_model(
                str(directory / entry.file),
                model_type="bert",
                num_heads=shape[0],
                hidden_size=shape[1],
                opt_level=0,
            )
    finally:
        quiet.setLevel(level)
    fused = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
    if not fused:
        return entry, {}
    proto = model.model
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    topological_sort(proto.graph)
    for f in (entry.file, entry.data_file):
        if f:
            (directory / f).unlink()
    return write_graph(proto, directory, name, entry.inputs, entry.outputs), {"fused": fused}
