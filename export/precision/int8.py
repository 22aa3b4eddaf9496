"""int8 graphs: which weights, how, and the rewrites that keep int8 close to fp32.

An int8 recipe (`Int8Recipe`) says, for every graph of an export:
- which weight MatMuls become ONNX Runtime's dynamic int8 MatMuls (`scope`): the attention
  blocks of the backbone's transformer layers, every weight MatMul of those layers, or every
  weight MatMul of the graph (heads, projections, scorer too); `keep_fp32` names (exactly) the
  nodes left fp32, `skip` node-name fragments (e.g. the attention's "/attention/self/") left fp32;
- the weights' type and layout (signed or unsigned, per output channel or per tensor,
  `reduce_range`), and whether the LSTM of token models is quantized too;
- whether the word-embedding tables are stored int8 with one scale per row (`embeddings`):
  `Gather` of the int8 rows, `Cast`, times the gathered row scales. ONNX Runtime's own Gather
  quantization treats the table as one activation (one scale and zero point for every row);
- whether the first token ([CLS], the encoder's attention sink) is quantized apart
  (`first_token`): dynamic quantization gives each MatMul input one scale per tensor, and that
  token's range, 3x the others' at the feed-forward input, would set it for all;
- the activation rewrites of `int8_activations.py`: SmoothQuant (`smooth`), outlier channels
  apart (`outliers`), per-token scales (`activations`).

The recipe `gliner-export --quantize int8` uses (`DEFAULT_RECIPE`) was chosen by measuring
every recipe's speed, size and agreement with fp32 on the trained demo checkpoints
(`benchmarks/bench_int8_recipes.py`, `benchmarks/README.md`).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..graph_io import value_bytes
from ..patching import replaced
from .int8_activations import (
    activation_maxima,
    const,
    normalized_inputs,
    quantize_per_token,
    smooth,
    split_outlier_channels,
)

# Node-name fragments of the transformer layers of Hugging Face encoders (BERT, DeBERTa,
# RoBERTa, ...), as torch.onnx names them from the module path, and of their attention blocks.
BACKBONE_LAYER = "/encoder/layer."
ATTENTION = "/attention/"
SCOPES = ("attention", "layers", "all")
# How a quantized MatMul's float input is scaled: one dynamic scale for the whole tensor
# (ONNX Runtime's DynamicQuantizeMatMul), or one per token (row of the last axis).
ACTIVATIONS = ("tensor", "token")
# Which backbone-layer MatMuls quantize the first token apart (`split_first_token`).
FIRST_TOKEN = ("none", "ffn", "layers")
# A Gather whose table has at least this many rows is a word-embedding table.
EMBEDDING_MIN_ROWS = 1000


@dataclass(frozen=True)
class Int8Recipe:
    """How an fp32 graph becomes int8 (see the module's docstring)."""

    name: str
    scope: str = "layers"
    keep_fp32: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    embeddings: bool = False
    smooth: float | None = None
    weight_type: str = "QInt8"
    per_channel: bool = True
    reduce_range: bool = False
    lstm: bool = False
    first_token: str = "none"
    activations: str = "tensor"
    outliers: float | None = None
    # MatMuls that read the same input quantized as one (`pack_shared_inputs`).
    pack: bool = True

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.weight_type not in ("QInt8", "QUInt8"):
            raise ValueError(f"weight_type must be QInt8 or QUInt8, got {self.weight_type!r}")
        if self.first_token not in FIRST_TOKEN:
            raise ValueError(f"first_token must be one of {FIRST_TOKEN}, got {self.first_token!r}")
        if self.activations not in ACTIVATIONS:
            raise ValueError(f"activations must be one of {ACTIVATIONS}, got {self.activations!r}")
        if self.activations == "token" and (
            self.weight_type != "QInt8" or not self.per_channel or self.reduce_range
        ):
            raise ValueError("per-token activations take signed per-channel weights without reduce_range")
        if self.outliers is not None and self.outliers <= 1.0:
            raise ValueError(
                f"outliers (a multiple of the median channel range) must be > 1, got {self.outliers}"
            )
        if self.smooth is not None and not 0.0 <= self.smooth <= 1.0:
            raise ValueError(f"smooth (SmoothQuant's alpha) must be in [0, 1], got {self.smooth}")

    def record(self) -> dict[str, Any]:
        return asdict(self)


# The recipe before this module (attention MatMuls only, uint8 weights): the baseline.
ATTENTION_ONLY = Int8Recipe("attention only", scope="attention", weight_type="QUInt8")
# What `--quantize int8` does (benchmarks/README.md has every recipe's figures).
DEFAULT_RECIPE = Int8Recipe(
    "every MatMul, int8 embedding rows, first token apart in the feed-forwards",
    scope="all",
    embeddings=True,
    lstm=True,
    first_token="ffn",
)
# Without the first token apart: faster (its Slice / Concat and small MatMuls cost ~0.5 ms of
# ~7 at batch 1 here), further from fp32.
FAST_RECIPE = Int8Recipe("every MatMul, int8 embedding rows", scope="all", embeddings=True, lstm=True)
# `gliner-export --int8-recipe NAME`.
NAMED_RECIPES = {"default": DEFAULT_RECIPE, "fast": FAST_RECIPE, "attention": ATTENTION_ONLY}


def constant_values(proto: onnx.ModelProto) -> set[str]:
    """Names of the values that depend on initializers only (what ONNX Runtime's constant
    folding computes once, when the session loads). The graph's nodes must be sorted."""
    known = {t.name for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" or (node.input and all(not i or i in known for i in node.input)):
            known.update(node.output)
    return known


def weight_matmuls(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The MatMul nodes whose second operand is a 2-D weight (what dynamic quantization with
    `MatMulConstBOnly` converts), but not those whose first operand is a constant too (e.g.
    DeBERTa's relative-position tables, export/backbone/deberta.py): they are folded when the
    session loads, and quantizing them would only lose precision."""
    weights = {t.name: t for t in proto.graph.initializer}
    constants = constant_values(proto)
    return [
        n
        for n in proto.graph.node
        if n.op_type == "MatMul"
        and len(n.input) == 2
        and n.input[1] in weights
        and len(weights[n.input[1]].dims) == 2
        and n.input[0] not in constants
    ]


def foldable_dequantize(proto: onnx.ModelProto) -> int:
    """Rewrite each `DequantizeLinear` of an int8 weight as Cast and Mul (and Sub for a nonzero
    zero point); returns how many. ONNX Runtime's quantizer dequantizes a weight that a quantized
    MatMul shares with one left fp32 (DeBERTa's relative tables are computed from the attention
    projections' weights, export/backbone/deberta.py), and its constant folding never folds
    `DequantizeLinear` (kept for its QDQ fusions): the tables were recomputed on every call. Cast
    and Mul of constants are folded when the session loads, to the same values."""
    weights = {t.name: t for t in proto.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    count = 0
    for node in proto.graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type != "DequantizeLinear" or not all(i in weights for i in inputs):
            nodes.append(node)
            continue
        x, scale = inputs[0], inputs[1]
        rank = len(weights[x].dims)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % max(rank, 1)
        shape = [1] * rank
        scales = numpy_helper.to_array(weights[scale]).astype(np.float32)
        if scales.ndim == 1 and rank > 1:
            shape[axis] = scales.size
        else:
            shape = list(scales.shape)
        floats = f"{node.name}_float"
        cast = helper.make_node("Cast", [x], [floats], name=f"{node.name}_cast", to=onnx.TensorProto.FLOAT)
        nodes.append(cast)
        zero = numpy_helper.to_array(weights[inputs[2]]) if len(inputs) > 2 else None
        if zero is not None and zero.any():
            zp = const(proto, f"{node.name}_zero", zero.astype(np.float32).reshape(shape))
            centred = f"{floats}_centred"
            nodes.append(helper.make_node("Sub", [floats, zp], [centred], name=f"{node.name}_sub"))
            floats = centred
        scaled = const(proto, f"{node.name}_scale", scales.reshape(shape))
        nodes.append(helper.make_node("Mul", [floats, scaled], list(node.output), name=f"{node.name}_mul"))
        count += 1
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return count


def chosen_matmuls(proto: onnx.ModelProto, recipe: Int8Recipe) -> list[onnx.NodeProto]:
    """The weight MatMuls `recipe` quantizes in `proto`."""
    nodes = weight_matmuls(proto)
    if recipe.scope != "all":
        nodes = [n for n in nodes if BACKBONE_LAYER in n.name]
    if recipe.scope == "attention":
        nodes = [n for n in nodes if ATTENTION in n.name]
    keep = set(recipe.keep_fp32)
    return [n for n in nodes if n.name not in keep and not any(f in n.name for f in recipe.skip)]


def embedding_gathers(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Gather nodes reading a 2-D float table of at least `EMBEDDING_MIN_ROWS` rows (by rows)."""
    weights = {t.name: t for t in proto.graph.initializer}
    out = []
    for n in proto.graph.node:
        t = weights.get(n.input[0]) if n.op_type == "Gather" else None
        if (
            t is not None
            and len(t.dims) == 2
            and t.dims[0] >= EMBEDDING_MIN_ROWS
            and t.data_type == onnx.TensorProto.FLOAT
        ):
            if not any(a.name == "axis" and a.i != 0 for a in n.attribute):
                out.append(n)
    return out


def split_first_token(proto: onnx.ModelProto, nodes: Sequence[onnx.NodeProto], where: str = "layers") -> int:
    """Each MatMul of the backbone's layers in `nodes` (`where`: "layers" all, "ffn" the
    feed-forward ones) as two MatMuls on the same weight, in place: one on
    the first token (position 0 of axis 1: [CLS] / BOS), one on the rest, concatenated back.
    Exact in fp32; dynamic quantization then scales the first token on its own. That token is
    the encoder's attention sink: its activations are 3x the rest's (measured on MiniLM:
    28 against 10 at the feed-forward input) and would set the one scale of the whole tensor.
    Returns the number of MatMuls split."""
    split = [n for n in nodes if BACKBONE_LAYER in n.name and (where == "layers" or ATTENTION not in n.name)]
    if not split:
        return 0
    for name, value in {"ft_0": 0, "ft_1": 1, "ft_end": np.iinfo(np.int64).max}.items():
        const(proto, name, np.array([value], np.int64))
    sliced: dict[str, tuple[str, str]] = {}
    new_nodes = []
    for n in split:
        x = n.input[0]
        if x not in sliced:
            first, rest = f"{x}_first_token", f"{x}_other_tokens"
            new_nodes += [
                helper.make_node("Slice", [x, "ft_0", "ft_1", "ft_1"], [first], name=f"{x}_Slice_first"),
                helper.make_node("Slice", [x, "ft_1", "ft_end", "ft_1"], [rest], name=f"{x}_Slice_rest"),
            ]
            sliced[x] = (first, rest)
        first, rest = sliced[x]
        y = n.output[0]
        new_nodes += [
            helper.make_node("MatMul", [first, n.input[1]], [f"{y}_first"], name=f"{n.name}_first"),
            helper.make_node("Concat", [f"{y}_first", f"{y}_rest"], [y], name=f"{n.name}_Concat", axis=1),
        ]
        n.input[0] = rest
        n.output[0] = f"{y}_rest"
    proto.graph.node.extend(new_nodes)
    return len(split)


def pack_shared_inputs(proto: onnx.ModelProto, nodes: Sequence[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Each group of `nodes` (weight MatMuls) that reads the same input as one MatMul on their
    weights side by side, split back into the group's outputs, in place; returns `nodes` with
    each group replaced by its packed MatMul. Exact in fp32. Dynamic quantization then quantizes
    the shared input once (ONNX Runtime's quantizer already shares it) and runs one int8 GEMM
    where there were several (the attention's query, key and value projections; the span
    heads' first layers): each int8 GEMM has a fixed cost besides its arithmetic (its threads'
    dispatch, the activations' row sums, the output's scaling), which small products pay in
    full. Groups with the same weights (`split_first_token`'s two halves) share one packed
    weight. A weight that something else reads too (DeBERTa's relative tables read the query and
    key weights, export/backbone/deberta.py) reads its columns of the packed one instead: a
    Slice of a constant, which ONNX Runtime folds when the session loads."""
    weights = {t.name: t for t in proto.graph.initializer}
    groups: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        groups.setdefault(n.input[0], []).append(n)
    packs: dict[tuple[str, ...], str] = {}  # weight names -> their packed weight
    columns: dict[str, tuple[str, int, int]] = {}  # weight -> (packed weight, first, end column)
    packed: list[onnx.NodeProto] = []
    for group in groups.values():
        group = sorted(group, key=lambda n: n.input[1])
        names = tuple(n.input[1] for n in group)
        shapes = [tuple(weights[w].dims) for w in names]
        if len(group) < 2 or len({shape[0] for shape in shapes}) != 1:
            packed += group
            continue
        name = f"{group[0].name}_packed"
        if names not in packs:
            packs[names] = const(
                proto,
                f"{name}_weight",
                np.concatenate([numpy_helper.to_array(weights[w]) for w in names], axis=1),
            )
            start = 0
            for w, shape in zip(names, shapes, strict=True):
                columns.setdefault(w, (packs[names], start, start + shape[1]))
                start += shape[1]
        widths = const(proto, f"{name}_widths", np.array([shape[1] for shape in shapes], np.int64))
        matmul = helper.make_node("MatMul", [group[0].input[0], packs[names]], [f"{name}_out"], name=name)
        outputs = [n.output[0] for n in group]
        proto.graph.node.extend(
            [
                matmul,
                helper.make_node("Split", [f"{name}_out", widths], outputs, name=f"{name}_split", axis=-1),
            ]
        )
        for n in group:
            proto.graph.node.remove(n)
        packed.append(matmul)
    readers = {i for n in proto.graph.node for i in n.input}
    for w, (pack, first, end) in columns.items():
        if w in readers:
            sliced = f"{w}_columns"
            bounds = [
                const(proto, f"{sliced}_{k}", np.array([v], np.int64))
                for k, v in (("first", first), ("end", end), ("axis", 1))
            ]
            for n in proto.graph.node:
                n.input[:] = [sliced if i == w else i for i in n.input]
            proto.graph.node.append(helper.make_node("Slice", [pack, *bounds], [sliced], name=sliced))
        proto.graph.initializer.remove(weights[w])
    return packed


def quantize_embedding_rows(proto: onnx.ModelProto, gathers: Sequence[onnx.NodeProto]) -> int:
    """Store each Gather's table as int8 with one symmetric scale per row, in place: the Gather
    reads the int8 rows and their scales, `Cast` and `Mul` restore float32. Returns the tables done."""
    weights = {t.name: t for t in proto.graph.initializer}
    done: dict[str, tuple[str, str]] = {}
    new_nodes = []
    for n in gathers:
        table = n.input[0]
        if table not in done:
            q, scale = _int8_rows(numpy_helper.to_array(weights[table]))
            proto.graph.initializer.remove(weights[table])
            proto.graph.initializer.extend(
                [
                    numpy_helper.from_array(q, f"{table}_int8"),
                    numpy_helper.from_array(scale.astype(np.float32), f"{table}_scale"),
                ]
            )
            done[table] = (f"{table}_int8", f"{table}_scale")
        q_name, s_name = done[table]
        out = n.output[0]
        n.input[0] = q_name
        n.output[0] = f"{out}_int8"
        new_nodes += [
            helper.make_node("Gather", [s_name, n.input[1]], [f"{out}_scale"], name=f"{n.name}_scale"),
            helper.make_node(
                "Cast", [f"{out}_int8"], [f"{out}_float"], name=f"{n.name}_cast", to=onnx.TensorProto.FLOAT
            ),
            helper.make_node("Mul", [f"{out}_float", f"{out}_scale"], [out], name=f"{n.name}_dequant"),
        ]
    proto.graph.node.extend(new_nodes)
    return len(done)


# Rows of an embedding table quantized at a time: the float temporaries are this block's size.
_ROW_BLOCK = 4096


def _int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`w` (rows, width) as int8 with one symmetric scale per row (rows, 1), a block of rows at
    a time (the table's own size in float temporaries otherwise: 1 GB at a 250k-row, 1024-wide
    table)."""
    q = np.empty(w.shape, np.int8)
    scale = np.empty((w.shape[0], 1), w.dtype)
    for start in range(0, w.shape[0], _ROW_BLOCK):
        block = w[start : start + _ROW_BLOCK]
        s = np.abs(block).max(axis=1, keepdims=True) / 127.0
        rows = block / np.where(s > 0, s, 1.0)
        q[start : start + _ROW_BLOCK] = np.clip(np.round(rows, out=rows), -127, 127, out=rows)
        scale[start : start + _ROW_BLOCK] = s
    return q, scale


def drain_to_file(work: onnx.ModelProto, path: Path) -> Path:
    """Save `work` at `path` with its weights in a data file beside it, as `quantize_dynamic`
    saves a ModelProto it is given (after copying it: a copy of every weight, on top of the
    caller's). The save moves the weights out of `work` (their fields are cleared)."""
    onnx.save_model(work, str(path), save_as_external_data=True)
    return path


@contextlib.contextmanager
def _reload_without_copy() -> Iterator[None]:
    """Within: `quantize_dynamic`'s quantizer, which saves a deep copy of the graph it loaded and
    loads it back to infer its value infos again (a third copy of every weight, beside the
    loaded graph and the reloaded one), infers them on the graph with its large weights as typed
    stubs (`_inferred_graph`) and keeps the graph it has. The same value infos and metadata."""
    from onnxruntime.quantization import onnx_quantizer
    from onnxruntime.quantization.quant_utils import add_infer_metadata

    def infer_in_place(model: onnx.ModelProto) -> onnx.ModelProto:
        inferred = _inferred_graph(model)
        for field in ("value_info", "output"):  # what inference writes
            del getattr(model.graph, field)[:]
            getattr(model.graph, field).extend(getattr(inferred, field))
        add_infer_metadata(model)
        return model

    with replaced(onnx_quantizer, "save_and_reload_model_with_shape_infer", infer_in_place):
        yield


# Weights of at least this many bytes are stubs (dims and type, no values) in `_inferred_graph`.
_STUB_BYTES = 1024


def _inferred_graph(model: onnx.ModelProto) -> onnx.GraphProto:
    """ONNX shape inference of `model`'s graph, on a copy whose weights of at least `_STUB_BYTES`
    have no values (inference reads the values of shapes and indices, which are small), so that
    no weight is copied: its value infos and outputs are `model`'s inferred."""
    from onnx.external_data_helper import uses_external_data

    shell = onnx.ModelProto()
    _copy_fields(model, shell, skip="graph")
    graph = model.graph
    _copy_fields(graph, shell.graph, skip="initializer")
    for t in graph.initializer:
        if value_bytes(t) < _STUB_BYTES and not uses_external_data(t):
            shell.graph.initializer.append(t)
        else:
            stub = shell.graph.initializer.add(name=t.name, data_type=t.data_type)
            stub.dims.extend(t.dims)
    return onnx.shape_inference.infer_shapes(shell).graph


def _copy_fields(source: Any, target: Any, skip: str) -> None:
    """Copy every set field of the message `source` but `skip` into `target`."""
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if hasattr(value, "extend"):  # a repeated field
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def quantize_graph(
    proto: onnx.ModelProto, recipe: Int8Recipe, feeds: Sequence[dict[str, np.ndarray]] | None = None
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """An int8 copy of the fp32 graph `proto` by `recipe`; `feeds` (the graph's inputs on
    calibration texts) are needed for `smooth`. The graph's nodes are not sorted."""

    def copy() -> onnx.ModelProto:
        work = onnx.ModelProto()
        work.CopyFrom(proto)
        return work

    return _quantize(copy, recipe, feeds)


def quantize_file(
    path: Path, recipe: Int8Recipe, feeds: Sequence[dict[str, np.ndarray]] | None = None
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """`quantize_graph` of the graph saved at `path`, holding one copy of its weights (the
    graph loaded, then moved to the quantizer's scratch file) where `quantize_graph` holds two."""
    return _quantize(lambda: onnx.load(str(path)), recipe, feeds)


def _quantize(
    load: Callable[[], onnx.ModelProto], recipe: Int8Recipe, feeds: Sequence[dict[str, np.ndarray]] | None
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """`quantize_graph` on the graph `load()` gives, which nothing else holds: its weights move
    to a scratch file for `quantize_dynamic` and the graph is freed before the quantizer loads
    them (protobuf frees a message's memory only with the whole message)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    work = load()
    matmuls = chosen_matmuls(work, recipe)
    lstms = [n for n in work.graph.node if n.op_type == "LSTM"] if recipe.lstm else []
    gathers = embedding_gathers(work) if recipe.embeddings else []
    info: dict[str, Any] = {
        "matmuls": len(weight_matmuls(work)),
        "quantized_matmuls": len(matmuls),
        "quantized_lstms": len(lstms),
    }
    if recipe.smooth is not None and matmuls:
        if not feeds:
            raise ValueError(f"recipe {recipe.name!r} smooths activations: it needs calibration feeds")
        maxima = activation_maxima(work, sorted({n.input[0] for n in matmuls}), feeds)
        info["smoothed_inputs"] = smooth(work, matmuls, maxima, recipe.smooth)
    if recipe.outliers is not None and matmuls:
        if not feeds:
            raise ValueError(
                f"recipe {recipe.name!r} keeps outlier channels apart: it needs calibration feeds"
            )
        maxima = activation_maxima(work, normalized_inputs(work, matmuls), feeds)
        kept = split_outlier_channels(work, matmuls, maxima, recipe.outliers)
        info["outlier_channels"] = sum(kept.values())
    if recipe.first_token != "none" and matmuls:
        info["first_token_split"] = split_first_token(work, matmuls, recipe.first_token)
        names = {n.name for n in matmuls}
        matmuls = [
            n for n in weight_matmuls(work) if n.name in names or n.name.removesuffix("_first") in names
        ]
    if recipe.activations == "token" and matmuls:
        info["per_token_matmuls"] = quantize_per_token(work, matmuls)
        matmuls = []
    if recipe.pack and matmuls:
        count = len(matmuls)
        matmuls = pack_shared_inputs(work, matmuls)
        info["packed_matmuls"] = count - len(matmuls)
    has_lstms, has_gathers = bool(lstms), bool(gathers)
    if matmuls or lstms:
        from ..quiet import quiet_quantization

        quantized_nodes = [n.name for n in [*matmuls, *lstms]]
        with tempfile.TemporaryDirectory() as tmp, quiet_quantization(), _reload_without_copy():
            source = drain_to_file(work, Path(tmp) / "model.onnx")
            del work, matmuls, lstms, gathers  # the nodes hold the whole graph's memory
            out = Path(tmp) / "q.onnx"
            quantize_dynamic(
                source,
                out,
                op_types_to_quantize=["MatMul", *(["LSTM"] if has_lstms else [])],
                nodes_to_quantize=quantized_nodes,
                per_channel=recipe.per_channel,
                reduce_range=recipe.reduce_range,
                weight_type=getattr(QuantType, recipe.weight_type),
                use_external_data_format=True,
                # DefaultTensorType: graph values whose type shape inference leaves open are float.
                extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
            )
            work = onnx.load(str(out))
        info["foldable_dequantize"] = foldable_dequantize(work)
    if has_gathers:
        info["int8_embedding_tables"] = quantize_embedding_rows(work, embedding_gathers(work))
    quantized = bool(info["quantized_matmuls"] or has_lstms or has_gathers)
    return work, {"precision": "int8" if quantized else "fp32", **info}
