"""Providers are explicit: unavailable ones are an error naming the available ones."""

from __future__ import annotations

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


def test_thread_settings_apply(uni_deberta: Checkpoint) -> None:
    model = GLiNER.from_pretrained(
        uni_deberta.export_dir, session_options=SessionOptions(intra_op_num_threads=1)
    )
    assert model.predict_entities("Angela Merkel", ["person"], threshold=0.0)
