"""The int8 rewrites of `export/precision/int8.py` on small hand-built graphs, run by ONNX Runtime."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import quantize_dynamic

from gliner_onnx.export.precision.int8 import (
    Int8Recipe,
    embedding_gathers,
    quantize_embedding_rows,
    quantize_graph,
    split_first_token,
    weight_matmuls,
)
from gliner_onnx.export.precision.int8_activations import (
    GELU_SHIFT,
    _input_kind,
    activation_maxima,
    normalized_inputs,
    smooth,
    split_outlier_channels,
)

K, N = 64, 48
FFN = "/encoder/layer.0/intermediate/dense/MatMul"
ATTN = "/encoder/layer.0/attention/self/query/MatMul"


def _run(proto: onnx.ModelProto, **feeds: np.ndarray) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _matmul_graph(name: str = FFN, *, relu: bool = False, seed: int = 0) -> onnx.ModelProto:
    """x [B, T, K] -> (ReLU) -> MatMul(W [K, N]) -> y, W random normal."""
    w = np.random.default_rng(seed).normal(0, 0.1, (K, N)).astype(np.float32)
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="/act/Relu")] if relu else []
    nodes.append(helper.make_node("MatMul", ["h" if relu else "x", "w"], ["y"], name=name))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", N])],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _tokens(b: int, t: int, outlier: float = 1.0, seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).normal(0, 1, (b, t, K)).astype(np.float32)
    x[:, 0] *= outlier  # the first token: the attention sink's range
    return x


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_first_token_split_is_exact_in_fp32_and_scales_the_first_token_apart() -> None:
    proto = _matmul_graph()
    x = _tokens(2, 9, outlier=30.0)
    (ref,) = _run(proto, x=x)
    split = onnx.ModelProto()
    split.CopyFrom(proto)
    assert split_first_token(split, weight_matmuls(split), "ffn") == 1
    (got,) = _run(split, x=x)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)

    plain, _ = quantize_graph(proto, Int8Recipe("t", scope="all"))
    apart, info = quantize_graph(proto, Int8Recipe("t", scope="all", first_token="ffn"))
    assert info["first_token_split"] == 1 and info["quantized_matmuls"] == 1
    (q_plain,), (q_apart,) = _run(plain, x=x), _run(apart, x=x)
    # the other tokens lose the coarse scale the outlier token set
    assert _rel(q_apart[:, 1:], ref[:, 1:]) < 0.25 * _rel(q_plain[:, 1:], ref[:, 1:])
    # an attention MatMul is left whole by "ffn", split by "layers"
    attn = _matmul_graph(ATTN)
    assert split_first_token(attn, weight_matmuls(attn), "ffn") == 0
    assert split_first_token(attn, weight_matmuls(attn), "layers") == 1


def test_per_token_int8_answers_do_not_depend_on_the_batch() -> None:
    proto = _matmul_graph()
    x = _tokens(3, 7, outlier=1.0)
    x[2] *= 20.0  # one text with a much wider range in the same batch
    (ref,) = _run(proto, x=x)
    token, info = quantize_graph(proto, Int8Recipe("t", scope="all", activations="token"))
    assert info["per_token_matmuls"] == 1
    assert {n.op_type for n in token.graph.node} >= {"MatMulInteger", "QuantizeLinear"}
    (batched,) = _run(token, x=x)
    for i in range(3):
        (alone,) = _run(token, x=x[i : i + 1])
        np.testing.assert_array_equal(batched[i], alone[0])
        assert _rel(batched[i], ref[i]) < 0.02
    # per-tensor dynamic quantization: the wide text coarsens the others' answers
    tensor, _ = quantize_graph(proto, Int8Recipe("t", scope="all"))
    (batched_t,) = _run(tensor, x=x)
    (alone_t,) = _run(tensor, x=x[:1])
    assert _rel(batched_t[0], ref[0]) > 3 * _rel(alone_t[0], ref[0])


def test_per_token_uses_the_whole_uint8_range_for_nonnegative_inputs() -> None:
    relu = _matmul_graph(relu=True)
    assert _input_kind(relu, "h") == "relu" and _input_kind(relu, "x") == "signed"
    x = _tokens(2, 5)
    (ref,) = _run(relu, x=x)
    q, _ = quantize_graph(relu, Int8Recipe("t", scope="all", activations="token"))
    zero_points = {
        int(numpy_helper.to_array(t)) for t in q.graph.initializer if t.name in ("pt_zp0", "pt_zp128")
    }
    assert zero_points == {0}  # unsigned: [0, 255]; a signed input would take 128
    (got,) = _run(q, x=x)
    assert _rel(got, ref) < 0.01


def test_gelu_output_is_shifted_then_unshifted_exactly() -> None:
    w = np.random.default_rng(0).normal(0, 0.1, (K, N)).astype(np.float32)
    consts = {
        "sqrt2": np.array(np.sqrt(2.0), np.float32),
        "one": np.array(1.0, np.float32),
        "half": np.array(0.5, np.float32),
    }
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["x", "a"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["g"]),
        helper.make_node("MatMul", ["g", "w"], ["y"], name="/encoder/layer.0/output/dense/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "gelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", N])],
        [numpy_helper.from_array(w, "w"), *(numpy_helper.from_array(v, k) for k, v in consts.items())],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert _input_kind(proto, "g") == "gelu"
    x = _tokens(2, 6) * 3
    (ref,) = _run(proto, x=x)
    q, _ = quantize_graph(proto, Int8Recipe("t", scope="all", activations="token"))
    shift = [t for t in q.graph.initializer if t.name == "w_shift"]
    np.testing.assert_allclose(numpy_helper.to_array(shift[0]), GELU_SHIFT * w.sum(axis=0), rtol=1e-6)
    (got,) = _run(q, x=x)
    assert _rel(got, ref) < 0.01


def _embedding_graph(table: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["e"], name="/embeddings/word_embeddings/Gather")],
        "emb",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "t"])],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["b", "t", table.shape[1]])],
        [numpy_helper.from_array(table, "table")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_embedding_rows_are_int8_with_one_scale_per_row(monkeypatch: pytest.MonkeyPatch) -> None:
    from gliner_onnx.export.precision import int8

    monkeypatch.setattr(int8, "_ROW_BLOCK", 512)  # blocks of rows, the last one partial
    rng = np.random.default_rng(0)
    table = rng.normal(0, 1, (1200, 16)).astype(np.float32)
    table *= np.geomspace(0.01, 10, 1200, dtype=np.float32)[:, None]  # rows of very different size
    table[7] = 0.0  # an all-zero row (padding) stays zero
    proto = _embedding_graph(table)
    assert len(embedding_gathers(proto)) == 1
    ids = np.array([[0, 7, 600, 1199]], np.int64)
    assert quantize_embedding_rows(proto, embedding_gathers(proto)) == 1
    stored = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert stored["table_int8"].dtype == np.int8 and stored["table_scale"].shape == (1200, 1)
    scale = np.abs(table).max(axis=1, keepdims=True) / 127.0  # the whole table at once
    whole = np.clip(np.round(table / np.where(scale > 0, scale, 1.0)), -127, 127).astype(np.int8)
    assert np.array_equal(stored["table_int8"], whole) and np.array_equal(stored["table_scale"], scale)
    (got,) = _run(proto, ids=ids)
    want = table[ids[0]]
    bound = np.abs(want).max(axis=1, keepdims=True) / 127 / 2 + 1e-9
    assert np.all(np.abs(got[0] - want) <= bound)  # within half a step of each row's own scale
    assert np.all(got[0, 1] == 0.0)
    # ONNX Runtime's own Gather quantization (one scale for the table) loses the small rows
    with tempfile.TemporaryDirectory() as tmp:
        quantize_dynamic(_embedding_graph(table), Path(tmp) / "q.onnx", op_types_to_quantize=["Gather"])
        (theirs,) = _run(onnx.load(str(Path(tmp) / "q.onnx")), ids=ids)
    assert _rel(got[0, 0], want[0]) < 0.01 < _rel(theirs[0, 0], want[0])


def test_smoothing_is_an_exact_rewrite_in_fp32() -> None:
    proto = _matmul_graph()
    x = _tokens(2, 8)
    x[..., 3] *= 40.0  # an outlier channel
    (ref,) = _run(proto, x=x)
    maxima = activation_maxima(proto, ["x"], [{"x": x}])
    np.testing.assert_allclose(maxima["x"], np.abs(x).reshape(-1, K).max(axis=0), rtol=1e-6)
    assert smooth(proto, weight_matmuls(proto), maxima, 0.5) == 1
    (got,) = _run(proto, x=x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_recipes_refuse_what_does_not_exist() -> None:
    with pytest.raises(ValueError, match="scope"):
        Int8Recipe("x", scope="heads")
    with pytest.raises(ValueError, match="weight_type"):
        Int8Recipe("x", weight_type="QInt4")
    with pytest.raises(ValueError, match="alpha"):
        Int8Recipe("x", smooth=1.5)
    with pytest.raises(ValueError, match="first_token"):
        Int8Recipe("x", first_token="all")
    with pytest.raises(ValueError, match="per-token"):
        Int8Recipe("x", activations="token", weight_type="QUInt8")
    with pytest.raises(ValueError, match="calibration feeds"):
        quantize_graph(_matmul_graph(), Int8Recipe("x", smooth=0.5))


def test_outlier_channels_are_kept_apart_exactly_and_only_after_a_normalization() -> None:
    w = np.random.default_rng(0).normal(0, 0.1, (K, N)).astype(np.float32)
    gamma = np.ones(K, np.float32)
    gamma[[5, 17]] = 12.0  # two outlier dimensions, in every token
    beta = np.zeros(K, np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["h"], name="/ln", axis=-1),
            helper.make_node("MatMul", ["h", "w"], ["y"], name=FFN),
        ],
        "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", N])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (gamma, "gamma"), (beta, "beta"))],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = _tokens(2, 9)
    (ref,) = _run(proto, x=x)
    assert normalized_inputs(proto, weight_matmuls(proto)) == ["h"]
    maxima = activation_maxima(proto, ["h"], [{"x": x}])
    split = onnx.ModelProto()
    split.CopyFrom(proto)
    assert split_outlier_channels(split, weight_matmuls(split), maxima, 3.0) == {"h": 2}
    (got,) = _run(split, x=x)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    recipe = Int8Recipe("t", scope="all", outliers=3.0)
    apart, info = quantize_graph(proto, recipe, [{"x": x}])
    plain, _ = quantize_graph(proto, Int8Recipe("t", scope="all"))
    assert info["outlier_channels"] == 2
    (q_apart,), (q_plain,) = _run(apart, x=x), _run(plain, x=x)
    assert _rel(q_apart, ref) < 0.5 * _rel(q_plain, ref)
    with pytest.raises(ValueError, match="calibration feeds"):
        quantize_graph(proto, recipe)
    with pytest.raises(ValueError, match="outliers"):
        Int8Recipe("t", outliers=0.5)


def _shared_input_graph() -> onnx.ModelProto:
    """x -> query / key / value MatMuls (one input, three weights) and a MatMul of a constant by
    the query weight (what DeBERTa's relative tables do)."""
    rng = np.random.default_rng(0)
    names = ("query", "key", "value")
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.1, (K, N)).astype(np.float32), f"w_{n}") for n in names
    ]
    rows = numpy_helper.from_array(rng.normal(0, 1, (5, K)).astype(np.float32), "rows")
    nodes = [
        helper.make_node("MatMul", ["x", f"w_{n}"], [n], name=f"/encoder/layer.0/attention/self/{n}/MatMul")
        for n in names
    ]
    nodes.append(helper.make_node("MatMul", ["rows", "w_query"], ["table"], name="/table/MatMul"))
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in (*names, "table")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", K])],
        outputs,
        [*weights, rows],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_matmuls_of_one_input_are_packed_exactly() -> None:
    from gliner_onnx.export.precision.int8 import pack_shared_inputs

    proto = _shared_input_graph()
    x = _tokens(2, 7)
    expected = _run(proto, x=x)
    nodes = [n for n in weight_matmuls(proto) if "/attention/" in n.name]
    packed = pack_shared_inputs(proto, nodes)
    assert len(packed) == 1 and [n.op_type for n in proto.graph.node].count("MatMul") == 2
    # one copy of the weights: the table reads the query's columns of the packed weight
    assert sorted(t.name for t in proto.graph.initializer if t.dims == [K, 3 * N]) == [packed[0].input[1]]
    assert not {"w_query", "w_key", "w_value"} & {t.name for t in proto.graph.initializer}
    for got, want in zip(_run(proto, x=x), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("first_token", ["none", "layers"])
def test_packed_int8_answers_as_unpacked(first_token: str) -> None:
    # Per-channel weights: packing changes no quantized value; the split halves of
    # `first_token="layers"` share one packed weight.
    recipe = Int8Recipe("t", scope="all", first_token=first_token)
    x = _tokens(2, 7, outlier=3.0)
    packed, info = quantize_graph(_shared_input_graph(), recipe)
    unpacked, _ = quantize_graph(
        _shared_input_graph(), Int8Recipe("t", scope="all", first_token=first_token, pack=False)
    )
    assert info["packed_matmuls"] == (2 if first_token == "none" else 4)
    sizes = sorted(int(np.prod(t.dims)) for t in packed.graph.initializer)
    assert sizes.count(K * 3 * N) == 1  # one packed int8 weight, whatever the halves
    for got, want in zip(_run(packed, x=x), _run(unpacked, x=x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
