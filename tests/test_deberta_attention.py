"""The DeBERTa attention rewrite (export/backbone/deberta.py) computes transformers' scores.

Each case traces a small random DeBERTa-v2 encoder with the rewrite, runs the graph in ONNX
Runtime at lengths other than the traced one (1 token, within the buckets, past the buckets and
past `max_relative_positions`, with padding), and compares every real token's state with
transformers' own forward. The configurations cover what DeBERTa-v2/v3 checkpoints set: shared
or separate position projections, c2p and p2c alone or together, log buckets or none.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from gliner_onnx.export.backbone import deberta

from .conftest import Checkpoint

VOCAB = 100


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _model(**fields: Any) -> nn.Module:
    from transformers import DebertaV2Config, DebertaV2Model

    config = {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "type_vocab_size": 0,
        "initializer_range": 0.2,
        "layer_norm_eps": 1e-7,
        "relative_attention": True,
        "max_relative_positions": -1,
        "position_buckets": 8,
        "pos_att_type": ["p2c", "c2p"],
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "position_biased_input": False,
        **fields,
    }
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return _Encoder(DebertaV2Model(DebertaV2Config(**config))).eval()


def _trace(model: nn.Module, rewritten: bool) -> onnx.ModelProto:
    ids = torch.randint(1, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    buffer = io.BytesIO()
    context = deberta.rewrite(model) if rewritten else contextlib.nullcontext()
    with torch.no_grad(), context:
        torch.onnx.export(
            model,
            (ids, mask),
            buffer,
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask", "hidden")},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def _max_diff(model: nn.Module, proto: onnx.ModelProto, length: int, padding: int) -> float:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = torch.randint(1, VOCAB, (3, length), generator=torch.Generator().manual_seed(length))
    mask = torch.ones_like(ids)
    if padding:
        mask[1, length - padding :] = 0
    with torch.no_grad():
        expected = model(ids, mask).numpy()
    (got,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    real = mask.numpy().astype(bool)
    return float(np.abs(got - expected)[real].max())


CONFIGS = {
    "deberta-v3": {},
    "separate position projections": {"share_att_key": False},
    "c2p only": {"pos_att_type": ["c2p"]},
    "p2c only": {"pos_att_type": ["p2c"]},
    "no buckets": {"position_buckets": -1, "max_relative_positions": 16},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_rewritten_graph_matches_transformers(name: str) -> None:
    model = _model(**CONFIGS[name])
    proto = _trace(model, rewritten=True)
    ops = Counter(n.op_type for n in proto.graph.node)
    assert ops["MultiHeadAttention"] == 2 and ops["GatherElements"] == 0 and ops["Tile"] == 0, ops
    # 1 token; within the 8 buckets; past them (log buckets, clamped indices); past
    # max_position_embeddings; each with a padded row.
    for length, padding in [(1, 0), (6, 2), (12, 0), (40, 7), (130, 30)]:
        assert _max_diff(model, proto, length, padding) < 1e-5, (name, length)


def test_shape_arithmetic_is_computed_once_for_all_layers(tmp_path: Path) -> None:
    """Every layer reads the batch size and length the first layer took (`_Offsets.get`):
    after ONNX Runtime's common subexpression elimination, the graph's shape operators do not
    grow with the number of layers (each layer had its own: about 30 small operators, a tenth
    of an int8 layer's time at DeBERTa-v3-small's shape)."""

    def shape_ops(layers: int) -> Counter[str]:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(tmp_path / f"{layers}.onnx")
        proto = _trace(_model(num_hidden_layers=layers), rewritten=True)
        ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
        ops = Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
        return Counter({op: ops[op] for op in ("Shape", "Unsqueeze", "Concat")})

    assert shape_ops(2) == shape_ops(4) and shape_ops(2)["Shape"] == 1


def test_int8_leaves_the_relative_tables_to_constant_folding() -> None:
    """The relative tables share the projections' weights with quantized MatMuls: ONNX Runtime's
    quantizer dequantizes them with DequantizeLinear, which its constant folding never folds
    (the int8 graph recomputed every table on every call, 1.8x slower than fp32 at the small
    shape). The int8 graph dequantizes with Cast and Mul instead, and still matches."""
    from gliner_onnx.export.precision.int8 import DEFAULT_RECIPE, quantize_graph

    model = _model()
    proto, info = quantize_graph(_trace(model, rewritten=True), DEFAULT_RECIPE)
    ops = Counter(n.op_type for n in proto.graph.node)
    # one per layer: the query and key weights are one packed weight (`pack_shared_inputs`)
    assert info["foldable_dequantize"] == 2 and ops["DequantizeLinear"] == 0, (info, ops)
    assert _max_diff(model, proto, 20, 3) < 0.1  # int8 error, not a wrong graph


def test_plain_trace_is_what_the_rewrite_replaces() -> None:
    model = _model()
    ops = Counter(n.op_type for n in _trace(model, rewritten=False).graph.node)
    assert ops["GatherElements"] == 4 and ops["MultiHeadAttention"] == 0, ops


def test_one_rewrite_traces_two_encoders() -> None:
    """Two DeBERTa encoders traced under one rewrite (a bi-encoder's two sides, or two graphs):
    each gets its own positions."""
    first, second = _model(), _model(position_buckets=4, share_att_key=False)
    pair = _Pair(first, second).eval()
    with deberta.rewrite(pair) as count:
        assert count == 4
    proto = _trace(pair, rewritten=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = torch.randint(1, VOCAB, (2, 30), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = pair(ids, mask).numpy()
    (got,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert float(np.abs(got - expected).max()) < 1e-5


class _Pair(nn.Module):
    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.first(input_ids, attention_mask) + self.second(
            input_ids[:, :20], attention_mask[:, :20]
        ).mean(1, keepdim=True)


def test_rewrite_restores_the_modules() -> None:
    model = _model()
    ids = torch.randint(1, VOCAB, (1, 10))
    with torch.no_grad():
        before = model(ids, torch.ones_like(ids))
        with deberta.rewrite(model) as count:
            assert count == 2
            assert all("forward" in vars(m) for m in model.modules() if deberta.eligible(m))
        after = model(ids, torch.ones_like(ids))
    assert not any("forward" in vars(m) for m in model.modules())
    assert torch.equal(before, after)


def test_without_relative_attention_nothing_is_rewritten() -> None:
    model = _model(relative_attention=False, position_biased_input=True)
    with deberta.rewrite(model) as count:
        assert count == 0


def test_export_records_and_uses_the_rewrite(
    uni_deberta: Checkpoint, uni_deberta_generic: Checkpoint
) -> None:
    def graph_ops(export_dir: Path) -> Counter[str]:
        """The text encoder's attention operators."""
        nodes = onnx.load(str(export_dir / "text_encoder.onnx")).graph.node
        return Counter(n.op_type for n in nodes if "/attention/" in n.name)

    graphs = json.loads((uni_deberta.export_dir / "gliner_onnx.json").read_text())["graphs"]
    assert "deberta attention" in graphs["text_encoder"]["optimization"]["rewrites"]
    assert "deberta attention" not in graphs["scorer"].get("optimization", {}).get("rewrites", [])
    assert graph_ops(uni_deberta.export_dir)["MultiHeadAttention"] == 2
    plain = graph_ops(uni_deberta_generic.export_dir)
    assert plain["MultiHeadAttention"] == 0 and plain["GatherElements"] == 4
