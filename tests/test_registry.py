"""Every registered arch has a runtime pipeline (and, where the arch has them, the
pipeline takes relations or generation arguments): optimum's `test_all_models_tested`."""

from __future__ import annotations

import pytest

from gliner_onnx.archs import ARCH_NAMES, ARCHS
from gliner_onnx.runtime.pipelines import ARCH_LAYOUTS, PIPELINES


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_every_arch_has_a_runtime_pipeline(arch: str) -> None:
    assert arch in ARCH_LAYOUTS, f"{arch} has no graph layout in runtime/pipelines.py"
    pipeline = PIPELINES[ARCH_LAYOUTS[arch]]
    accepts = pipeline.accepts  # type: ignore[attr-defined]
    assert accepts.relations == ARCHS[arch].relex
    assert accepts.generation == ARCHS[arch].decoder
    assert accepts.windows != ARCHS[arch].decoder  # decoders truncate at max_len, as gliner


def test_no_layout_for_an_unknown_arch() -> None:
    assert set(ARCH_LAYOUTS) == set(ARCH_NAMES)
    # no pipeline without an arch, but gliner's own one-graph layout (chosen by the directory's layout)
    assert set(ARCH_LAYOUTS.values()) | {"onegraph"} == set(PIPELINES)
