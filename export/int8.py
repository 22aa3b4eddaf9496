"""int8 graphs: which weights, how, and the rewrites that keep int8 close to fp32.

An int8 recipe (`Int8Recipe`) says, for every graph of an export:
- which weight MatMuls become ONNX Runtime's dynamic int8 MatMuls (`scope`): the attention
  blocks of the backbone's transformer layers, every weight MatMul of those layers, or every
  weight MatMul of the graph (heads, projections, scorer too); `keep_fp32` names (exactly) the
  nodes left fp32, `skip` node-name fragments (e.g. the attention's "/attention/self/") left fp32;
- whether the word-embedding tables are stored int8 with one scale per row
  (`embeddings`): `Gather` of the int8 rows, `Cast`, times the gathered row scales. ONNX
  Runtime's own Gather quantization treats the table as one activation (one scale and zero
  point for every row), which is what cost agreement before;
- SmoothQuant (`smooth`, its alpha): per input channel k of each quantized MatMul,
  s_k = max|x_k|^alpha / max_n|W_kn|^(1 - alpha) from the activations of calibration texts;
  the MatMul then reads x / s (one `Mul`, shared by the MatMuls that read the same x) and
  its weight rows are multiplied by s: x W = (x / s)(diag(s) W), exact in real arithmetic,
  but the activation that dynamic quantization scales per tensor loses its outlier
  channels;
- the weights' type and layout (signed or unsigned, per output channel or per tensor,
  `reduce_range`), and whether the LSTM of token models is quantized too.

The recipe `gliner-export --quantize int8` uses (`DEFAULT_RECIPE`) was chosen by measuring
every recipe's speed, size and agreement with fp32 on the trained demo checkpoints
(`benchmarks/bench_int8_recipes.py`, `benchmarks/README.md`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph_io import topological_sort

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


def weight_matmuls(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The MatMul nodes whose second operand is a 2-D weight (what dynamic quantization with
    `MatMulConstBOnly` converts)."""
    weights = {t.name: t for t in proto.graph.initializer}
    return [
        n
        for n in proto.graph.node
        if n.op_type == "MatMul"
        and len(n.input) == 2
        and n.input[1] in weights
        and len(weights[n.input[1]].dims) == 2
    ]


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


def activation_maxima(
    proto: onnx.ModelProto, tensors: Sequence[str], feeds: Iterable[dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """max |x_k| over the last axis's channels k of each of `tensors` (graph values), over `feeds`."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    have = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in have:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save(probe, str(path), save_as_external_data=True, location="probe.onnx.data")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        inputs = {i.name for i in session.get_inputs()}
        maxima: dict[str, np.ndarray] = {}
        for feed in feeds:
            values = session.run(list(tensors), {k: v for k, v in feed.items() if k in inputs})
            for name, value in zip(tensors, values):
                m = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0) if value.size else None
                if m is not None:
                    maxima[name] = np.maximum(maxima[name], m) if name in maxima else m
    return maxima


def smooth(
    proto: onnx.ModelProto, nodes: Sequence[onnx.NodeProto], maxima: dict[str, np.ndarray], alpha: float
) -> int:
    """SmoothQuant in place: the MatMuls `nodes` read x / s and hold diag(s) W (module docstring).
    MatMuls reading the same x share one s and one `Mul`. Returns the number of `Mul`s added."""
    weights = {t.name: t for t in proto.graph.initializer}
    by_input: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        if n.input[0] in maxima:
            by_input.setdefault(n.input[0], []).append(n)
    added = []
    for x, group in by_input.items():
        mats = {n.input[1]: numpy_helper.to_array(weights[n.input[1]]) for n in group}
        w_max = np.max(np.stack([np.abs(w).max(axis=1) for w in mats.values()]), axis=0)
        s = np.power(np.maximum(maxima[x], 1e-5), alpha) / np.power(np.maximum(w_max, 1e-5), 1.0 - alpha)
        s = s.astype(np.float32)
        inv_name = f"{x}_smooth_inv"
        proto.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inv_name))
        smoothed = f"{x}_smoothed"
        added.append(helper.make_node("Mul", [x, inv_name], [smoothed], name=f"{x}_smooth_Mul"))
        for n in group:
            n.input[0] = smoothed
        for name, w in mats.items():
            weights[name].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), name))
    proto.graph.node.extend(added)
    return len(added)


# At most this share of a MatMul input's channels is kept apart as outliers.
MAX_OUTLIER_SHARE = 1 / 32
NORMALIZATIONS = ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization")


def normalized_inputs(proto: onnx.ModelProto, nodes: Sequence[onnx.NodeProto]) -> list[str]:
    """The inputs of `nodes` that a layer normalization produces (where a few channels carry
    most of the range in every token: BERT-family encoders' outlier dimensions)."""
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    return sorted({n.input[0] for n in nodes if producers.get(n.input[0]) in NORMALIZATIONS})


def split_outlier_channels(
    proto: onnx.ModelProto, nodes: Sequence[onnx.NodeProto], maxima: dict[str, np.ndarray], ratio: float
) -> dict[str, int]:
    """LLM.int8()'s decomposition, in place: for each input x of `nodes` in `maxima` whose
    channels k have max |x_k| > `ratio` x the median channel's (at most `MAX_OUTLIER_SHARE` of
    them, the largest), x W = (x * mask) W' + x[..., O] W[O]: the MatMul (then quantized)
    reads x with the outlier channels O zeroed and W' with those rows zeroed, and a float MatMul
    of the few outlier channels is added. Exact in fp32. Returns {input: channels kept apart}."""
    weights = {t.name: t for t in proto.graph.initializer}
    by_input: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        if n.input[0] in maxima:
            by_input.setdefault(n.input[0], []).append(n)
    done: dict[str, int] = {}
    new_nodes: list[onnx.NodeProto] = []
    for x, group in by_input.items():
        m = maxima[x]
        limit = max(1, int(len(m) * MAX_OUTLIER_SHARE))
        order = np.argsort(m)[::-1][:limit]
        outliers = np.sort(order[m[order] > ratio * np.median(m)])
        if not len(outliers):
            continue
        mask = np.ones(len(m), np.float32)
        mask[outliers] = 0.0
        p = f"{x}_oc"
        mask_name = _const(proto, f"{p}_mask", mask)
        idx_name = _const(proto, f"{p}_idx", outliers.astype(np.int64))
        new_nodes += [
            helper.make_node("Mul", [x, mask_name], [f"{p}_inliers"], name=f"{p}_Mask"),
            helper.make_node("Gather", [x, idx_name], [f"{p}_outliers"], name=f"{p}_Gather", axis=-1),
        ]
        for n in group:
            w_name = n.input[1]
            w = numpy_helper.to_array(weights[w_name]).astype(np.float32)
            rows = _const(proto, f"{w_name}_outlier_rows", w[outliers])
            inliers = w.copy()
            inliers[outliers] = 0.0
            weights[w_name].CopyFrom(numpy_helper.from_array(inliers, w_name))
            y = n.output[0]
            n.input[0] = f"{p}_inliers"
            n.output[0] = f"{y}_inliers"
            new_nodes += [
                helper.make_node(
                    "MatMul", [f"{p}_outliers", rows], [f"{y}_outliers"], name=f"{n.name}_outliers"
                ),
                helper.make_node("Add", [f"{y}_inliers", f"{y}_outliers"], [y], name=f"{n.name}_AddOutliers"),
            ]
        done[x] = len(outliers)
    proto.graph.node.extend(new_nodes)
    return done


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
    consts = {"ft_0": [0], "ft_1": [1], "ft_end": [np.iinfo(np.int64).max]}
    for name, value in consts.items():
        if name not in {t.name for t in proto.graph.initializer}:
            proto.graph.initializer.append(numpy_helper.from_array(np.array(value, np.int64), name))
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


def _const(proto: onnx.ModelProto, name: str, value: np.ndarray) -> str:
    if name not in {t.name for t in proto.graph.initializer}:
        proto.graph.initializer.append(numpy_helper.from_array(value, name))
    return name


# GELU (erf form, what torch exports for BERT-family feed-forwards) is >= -0.17: its output
# shifted by this is nonnegative, and quantizes unsigned over the whole uint8 range.
GELU_SHIFT = 0.17


def _input_kind(proto: onnx.ModelProto, x: str) -> str:
    """ "relu" (x >= 0), "gelu" (x >= -0.17) or "signed", from the op that produces x."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    node = producers.get(x)
    if node is None:
        return "signed"
    if node.op_type == "Relu":
        return "relu"
    if node.op_type == "Gelu":
        return "gelu"
    frontier, seen = [node], 0
    while frontier and seen < 4:  # x * 0.5 * (1 + erf(x / sqrt 2)): Erf within 3 ops above
        nxt = [producers[i] for n in frontier for i in n.input if i in producers]
        if node.op_type == "Mul" and any(n.op_type == "Erf" for n in nxt):
            return "gelu"
        frontier, seen = nxt, seen + 1
    return "signed"


def _quantize_input(
    proto: onnx.ModelProto, x: str, kind: str
) -> tuple[list[onnx.NodeProto], str, str, float]:
    """Nodes quantizing x per token: (nodes, uint8 q, per-token scale, shift c), x + c ~ (q - zp) s."""
    p = f"{x}_pt"
    one = _const(proto, "pt_one", np.array(1.0, np.float32))
    tiny = _const(proto, "pt_tiny", np.array(1e-12, np.float32))
    nodes = []
    shift = GELU_SHIFT if kind == "gelu" else 0.0
    source = x
    if shift:
        c = _const(proto, "pt_gelu_shift", np.array(shift, np.float32))
        nodes.append(helper.make_node("Add", [x, c], [f"{p}_shifted"], name=f"{p}_Shift"))
        source = f"{p}_shifted"
    if kind == "signed":  # symmetric: [-127, 127] * s + 128
        nodes.append(helper.make_node("Abs", [source], [f"{p}_abs"], name=f"{p}_Abs"))
        reduced, levels, zp = f"{p}_abs", 127.0, _const(proto, "pt_zp128", np.array(128, np.uint8))
    else:  # nonnegative: [0, 255] * s
        reduced, levels, zp = source, 255.0, _const(proto, "pt_zp0", np.array(0, np.uint8))
    inv = _const(proto, f"pt_inv{int(levels)}", np.array(1.0 / levels, np.float32))
    nodes += [
        helper.make_node("ReduceMax", [reduced], [f"{p}_max"], name=f"{p}_ReduceMax", axes=[-1], keepdims=1),
        helper.make_node("Mul", [f"{p}_max", inv], [f"{p}_s0"], name=f"{p}_Mul"),
        helper.make_node("Max", [f"{p}_s0", tiny], [f"{p}_scale"], name=f"{p}_Max"),
        helper.make_node("Div", [source, f"{p}_scale"], [f"{p}_div"], name=f"{p}_Div"),
        helper.make_node("QuantizeLinear", [f"{p}_div", one, zp], [f"{p}_q"], name=f"{p}_Quantize"),
    ]
    return nodes, f"{p}_q", f"{p}_scale", shift


def quantize_per_token(proto: onnx.ModelProto, nodes: Sequence[onnx.NodeProto]) -> int:
    """Each MatMul of `nodes` (float input x, weight W) as an integer MatMul with one scale per
    token, in place. W: int8, symmetric, one scale per output channel. x: per row r of its last
    axis, as uint8 (ONNX Runtime's u8s8 kernels): symmetric with zero point 128 and
    s_r = max_k |x_rk| / 127, or, for inputs that cannot be negative (ReLU; GELU shifted by
    0.17, the shift's product with W subtracted as a constant), over [0, 255] with
    s_r = max_k x_rk / 255; y = (q - zp) W_q * s_r * w_scale. Rows are scaled alone, so a
    text's answers do not depend on the texts batched with it, and an outlier token (the
    [CLS] attention sink, up to 3x the other tokens' range) does not coarsen the others.
    The MatMuls reading the same x share its quantization. Returns the MatMuls converted."""
    weights = {t.name: t for t in proto.graph.initializer}
    quantized: dict[str, tuple[str, str, float, str]] = {}
    new_nodes: list[onnx.NodeProto] = []
    drop: set[int] = set()
    for n in nodes:
        x, w_name = n.input[0], n.input[1]
        if x not in quantized:
            kind = _input_kind(proto, x)
            made, q, scale, shift = _quantize_input(proto, x, kind)
            new_nodes += made
            quantized[x] = (q, scale, shift, "pt_zp128" if kind == "signed" else "pt_zp0")
        q, scale, shift, zp = quantized[x]
        w = numpy_helper.to_array(weights[w_name]).astype(np.float32)
        w_scale = np.abs(w).max(axis=0) / 127.0
        w_scale[w_scale == 0] = 1.0
        w_q = np.round(w / w_scale).clip(-127, 127).astype(np.int8)
        wq_name = _const(proto, f"{w_name}_int8", w_q)
        ws_name = _const(proto, f"{w_name}_scale", w_scale.astype(np.float32))
        y = n.output[0]
        out = f"{y}_unshifted" if shift else y
        new_nodes += [
            helper.make_node("MatMulInteger", [q, wq_name, zp], [f"{y}_i32"], name=f"{n.name}_MatMulInteger"),
            helper.make_node(
                "Cast", [f"{y}_i32"], [f"{y}_f"], name=f"{n.name}_Cast", to=onnx.TensorProto.FLOAT
            ),
            helper.make_node("Mul", [f"{y}_f", ws_name], [f"{y}_fw"], name=f"{n.name}_MulWeightScale"),
            helper.make_node("Mul", [f"{y}_fw", scale], [out], name=f"{n.name}_MulTokenScale"),
        ]
        if shift:  # (x + c) W - c 1^T W
            correction = _const(proto, f"{w_name}_shift", (shift * w.sum(axis=0)).astype(np.float32))
            new_nodes.append(helper.make_node("Sub", [out, correction], [y], name=f"{n.name}_Unshift"))
        drop.add(id(n))
    kept = [n for n in proto.graph.node if id(n) not in drop]
    used = {i for n in [*kept, *new_nodes] for i in n.input}
    for name in {n.input[1] for n in nodes} - used:
        proto.graph.initializer.remove(weights[name])
    del proto.graph.node[:]
    proto.graph.node.extend([*kept, *new_nodes])
    topological_sort(proto.graph)
    return len(drop)


def quantize_embedding_rows(proto: onnx.ModelProto, gathers: Sequence[onnx.NodeProto]) -> int:
    """Store each Gather's table as int8 with one symmetric scale per row, in place: the Gather
    reads the int8 rows and their scales, `Cast` and `Mul` restore float32. Returns the tables done."""
    weights = {t.name: t for t in proto.graph.initializer}
    done: dict[str, tuple[str, str]] = {}
    new_nodes = []
    for n in gathers:
        table = n.input[0]
        if table not in done:
            w = numpy_helper.to_array(weights[table])
            scale = np.abs(w).max(axis=1, keepdims=True) / 127.0
            q = np.round(w / np.where(scale > 0, scale, 1.0)).clip(-127, 127).astype(np.int8)
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


def quantize_graph(
    proto: onnx.ModelProto, recipe: Int8Recipe, feeds: Sequence[dict[str, np.ndarray]] | None = None
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """An int8 copy of the fp32 graph `proto` by `recipe`; `feeds` (the graph's inputs on
    calibration texts) are needed for `smooth`. The graph's nodes are not sorted."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    work = onnx.ModelProto()
    work.CopyFrom(proto)
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
    if matmuls or lstms:
        from .quiet import quiet_quantization

        with tempfile.TemporaryDirectory() as tmp, quiet_quantization():
            out = Path(tmp) / "q.onnx"
            quantize_dynamic(
                work,
                out,
                op_types_to_quantize=["MatMul", *(["LSTM"] if lstms else [])],
                nodes_to_quantize=[n.name for n in [*matmuls, *lstms]],
                per_channel=recipe.per_channel,
                reduce_range=recipe.reduce_range,
                weight_type=getattr(QuantType, recipe.weight_type),
                use_external_data_format=True,
                # DefaultTensorType: graph values whose type shape inference leaves open are float.
                extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
            )
            work = onnx.load(str(out))
    if gathers:
        info["int8_embedding_tables"] = quantize_embedding_rows(work, embedding_gathers(work))
    quantized = bool(info["quantized_matmuls"] or lstms or gathers)
    return work, {"precision": "int8" if quantized else "fp32", **info}
