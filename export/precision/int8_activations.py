"""The activation side of int8 (`int8.py`'s recipes): what dynamic quantization's one scale
per tensor loses, and three rewrites against it, each an option of `Int8Recipe`.

- SmoothQuant (`smooth`, its alpha): per input channel k of each quantized MatMul,
  s_k = max|x_k|^alpha / max_n|W_kn|^(1 - alpha) from the activations of calibration texts;
  the MatMul then reads x / s (one `Mul`, shared by the MatMuls that read the same x) and its
  weight rows are multiplied by s: x W = (x / s)(diag(s) W), exact in real arithmetic.
- Outlier channels apart (`outliers`): LLM.int8()'s decomposition of layer-norm outputs.
- Per-token scales (`activations="token"`): one scale per row of the last axis instead of
  one per tensor, so that a text's answers do not depend on the texts batched with it.

Measured against each other in `benchmarks/bench_int8_recipes.py`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..graph_io import topological_sort


def const(proto: onnx.ModelProto, name: str, value: np.ndarray) -> str:
    if name not in {t.name for t in proto.graph.initializer}:
        proto.graph.initializer.append(numpy_helper.from_array(value, name))
    return name


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
        mask_name = const(proto, f"{p}_mask", mask)
        idx_name = const(proto, f"{p}_idx", outliers.astype(np.int64))
        new_nodes += [
            helper.make_node("Mul", [x, mask_name], [f"{p}_inliers"], name=f"{p}_Mask"),
            helper.make_node("Gather", [x, idx_name], [f"{p}_outliers"], name=f"{p}_Gather", axis=-1),
        ]
        for n in group:
            w_name = n.input[1]
            w = numpy_helper.to_array(weights[w_name]).astype(np.float32)
            rows = const(proto, f"{w_name}_outlier_rows", w[outliers])
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
    one = const(proto, "pt_one", np.array(1.0, np.float32))
    tiny = const(proto, "pt_tiny", np.array(1e-12, np.float32))
    nodes = []
    shift = GELU_SHIFT if kind == "gelu" else 0.0
    source = x
    if shift:
        c = const(proto, "pt_gelu_shift", np.array(shift, np.float32))
        nodes.append(helper.make_node("Add", [x, c], [f"{p}_shifted"], name=f"{p}_Shift"))
        source = f"{p}_shifted"
    if kind == "signed":  # symmetric: [-127, 127] * s + 128
        nodes.append(helper.make_node("Abs", [source], [f"{p}_abs"], name=f"{p}_Abs"))
        reduced, levels, zp = f"{p}_abs", 127.0, const(proto, "pt_zp128", np.array(128, np.uint8))
    else:  # nonnegative: [0, 255] * s
        reduced, levels, zp = source, 255.0, const(proto, "pt_zp0", np.array(0, np.uint8))
    inv = const(proto, f"pt_inv{int(levels)}", np.array(1.0 / levels, np.float32))
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
        wq_name = const(proto, f"{w_name}_int8", w_q)
        ws_name = const(proto, f"{w_name}_scale", w_scale.astype(np.float32))
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
            correction = const(proto, f"{w_name}_shift", (shift * w.sum(axis=0)).astype(np.float32))
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
