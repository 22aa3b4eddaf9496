"""Providers are explicit: unavailable ones are an error naming the available ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

from gliner_onnx import GLiNER, ProviderError, SessionOptions

from .conftest import Checkpoint


def test_cpu_provider_is_used(uni_deberta: Checkpoint) -> None:
    model = GLiNER.from_pretrained(uni_deberta.export_dir, providers="cpu")
    assert model.providers == ["CPUExecutionProvider"]
    explicit = GLiNER.from_pretrained(uni_deberta.export_dir, providers=["CPUExecutionProvider"])
    assert explicit.providers == ["CPUExecutionProvider"]


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available here")
def test_cuda_without_onnxruntime_gpu_names_the_available_providers(uni_deberta: Checkpoint) -> None:
    with pytest.raises(
        ProviderError, match=r"CUDAExecutionProvider.*not available.*available:.*CPUExecutionProvider"
    ):
        GLiNER.from_pretrained(uni_deberta.export_dir, providers="cuda")


@pytest.mark.parametrize("providers", [["NoSuchExecutionProvider"], "tpu", [], 3])
def test_unknown_providers(uni_deberta: Checkpoint, providers: object) -> None:
    with pytest.raises(ProviderError):
        GLiNER.from_pretrained(uni_deberta.export_dir, providers=providers)  # type: ignore[arg-type]


def test_session_options_are_checked() -> None:
    with pytest.raises(ValueError, match="intra_op_num_threads"):
        SessionOptions(intra_op_num_threads=-1)
    with pytest.raises(ValueError, match="graph_optimization_level"):
        SessionOptions(graph_optimization_level="max")


# Loads the export with intra_op_num_threads 1 and 3 and prints how many threads each load
# started (in a process of its own: no other test's threads come and go meanwhile).
THREADS = """
import json, sys, psutil
from gliner_onnx import GLiNER, SessionOptions
process, started = psutil.Process(), {}
GLiNER.from_pretrained(sys.argv[1]).predict_entities("Angela", ["person"])  # lazy pools started
for n in (1, 3):
    before = process.num_threads()
    model = GLiNER.from_pretrained(sys.argv[1], session_options=SessionOptions(intra_op_num_threads=n))
    started[n] = process.num_threads() - before
    assert model.predict_entities("Angela Merkel", ["person"], threshold=0.0)
    del model
print(json.dumps({"started": started, "graphs": len(GLiNER.from_pretrained(sys.argv[1]).manifest.graphs)}))
"""


def test_thread_settings_apply(uni_deberta: Checkpoint) -> None:
    """intra_op_num_threads=n gives each graph's session a pool of n - 1 threads besides the
    caller's: none with 1, two each with 3 (ONNX Runtime's default, one per core less one, would
    give the same count for both)."""
    cmd = [sys.executable, "-c", THREADS, str(uni_deberta.export_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["started"] == {"1": 0, "3": 2 * result["graphs"]}


@pytest.mark.parametrize("name", ["uni_minilm", "bi_minilm_bert", "bi_token_deberta_bert"])
def test_io_binding_path_gives_identical_answers(name: str, request: pytest.FixtureRequest) -> None:
    """The CUDA path's IO binding (encoder outputs kept as OrtValues for the scorer), run on CPU."""
    from .conftest import LABELS, TEXTS

    ckpt = request.getfixturevalue(name)
    plain = GLiNER.from_pretrained(ckpt.export_dir)
    bound = GLiNER.from_pretrained(ckpt.export_dir, session_options=SessionOptions(io_binding=True))
    assert plain.context.runner.device is None and bound.context.runner.device == ("cpu", 0)
    kw = dict(threshold=0.3, flat_ner=False, multi_label=True)
    ref = plain.inference(TEXTS, LABELS, **kw)
    got = bound.inference(TEXTS, LABELS, **kw)
    assert got == ref and sum(map(len, ref)) > 0


def test_io_binding_option_is_checked() -> None:
    with pytest.raises(TypeError, match="io_binding must be a bool or None"):
        SessionOptions(io_binding="yes")  # type: ignore[arg-type]


def test_cpu_sessions_leave_skip_layer_norm_unfused(tmp_path: Path) -> None:
    # SkipLayerNormalization's CPU kernel is slower than the Add + LayerNormalization it fuses
    # (runtime/options.py). ONNX Runtime ignores unknown names in disabled_optimizers: check
    # that ours still names the fusion that makes it, on the pattern of a transformer layer.
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from gliner_onnx.runtime.session import GraphSession, disabled_optimizers

    assert disabled_optimizers(["CPUExecutionProvider"]) == ["SkipLayerNormFusion"]
    assert disabled_optimizers([("CUDAExecutionProvider", {}), "CPUExecutionProvider"]) == []
    hidden = 16
    rng = np.random.default_rng(0)
    shapes = {"w": (hidden, hidden), "bias": (hidden,), "gamma": (hidden,), "beta": (hidden,)}
    weights = [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        for name, shape in shapes.items()
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "bias"], ["biased"]),
        helper.make_node("Add", ["biased", "x"], ["residual"]),
        helper.make_node("LayerNormalization", ["residual", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-7),
    ]
    io = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "tokens", hidden]) for n in ("x", "y")
    ]
    graph = helper.make_graph(nodes, "layer", [io[0]], [io[1]], weights)
    path = tmp_path / "layer.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))

    def optimized_ops(disabled: list[str]) -> list[str]:
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, ["CPUExecutionProvider"], disabled_optimizers=disabled)
        return [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]

    assert "SkipLayerNormalization" in optimized_ops([])  # the pattern is one ORT fuses
    assert "SkipLayerNormalization" not in optimized_ops(disabled_optimizers(["CPUExecutionProvider"]))
    session = GraphSession(path, "layer", None, None, SessionOptions(), ["CPUExecutionProvider"])
    x = rng.standard_normal((1, 3, hidden)).astype(np.float32)
    assert session.run({"x": x})[0].shape == (1, 3, hidden)


def test_spinning_threads_stop_when_a_run_returns(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    from gliner_onnx.runtime.session import GraphSession

    path = tmp_path / "relu.onnx"
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n"]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [io[0]], [io[1]])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    for spinning, allow, stop in ((False, "0", ""), (True, "1", "1")):
        options = SessionOptions(spinning=spinning)
        session = GraphSession(path, "relu", None, None, options, ["CPUExecutionProvider"])
        so = session._session.get_session_options()
        assert so.get_session_config_entry("session.intra_op.allow_spinning") == allow
        assert (so.get_session_config_entry("session.force_spinning_stop") if spinning else "") == stop
    with pytest.raises(TypeError, match="spinning"):
        SessionOptions(spinning="yes")  # type: ignore[arg-type]
