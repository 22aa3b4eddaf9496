"""The pipeline registry: one pipeline per graph layout, chosen once when a model loads.

A pipeline is built from the loaded-model context (`loaded.LoadedModel`), declares what
it accepts (`request.Accepts`) and answers a checked `Request` with one `TextResult` per
text. To add a layout: write its pipeline, register it in `PIPELINES`, and give the
arch records of `gliner_onnx.archs` that it runs its name as their `layout`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol

from gliner_onnx.archs import ARCHS
from gliner_onnx.errors import UnsupportedArchError
from gliner_onnx.manifest import Manifest

from .entities import EntityPipeline
from .label_decoder import DecoderPipeline
from .loaded import LoadedModel
from .onegraph import OneGraphPipeline
from .relex import RelexPipeline
from .request import Accepts, Request
from .result import TextResult


class Pipeline(Protocol):
    accepts: ClassVar[Accepts]

    def run(self, request: Request) -> list[TextResult]: ...


PIPELINES: dict[str, Callable[[LoadedModel], Pipeline]] = {
    "entities": EntityPipeline,  # text encoder (+ label encoder) -> scorer
    "relex": RelexPipeline,  # + entity encoder (tokens), relation adjacency, relation scorer
    "decoder": DecoderPipeline,  # + span encoder (tokens), decoder prefix and step
    "onegraph": OneGraphPipeline,  # gliner's own export_to_onnx graph: encoder and scorer in one
}

# The layout of each arch, from its record in `gliner_onnx.archs` (tests/test_registry.py checks
# that every layout has a pipeline).
ARCH_LAYOUTS: dict[str, str] = {name: arch.layout for name, arch in ARCHS.items()}


def layout_of(manifest: Manifest) -> str:
    """The graph layout of an export: gliner's one graph, or our export of its arch."""
    if manifest.format == "gliner":
        return "onegraph"
    layout = ARCH_LAYOUTS.get(manifest.arch)
    if layout is None:
        raise UnsupportedArchError(
            f"no runtime pipeline for arch {manifest.arch!r}; known: {sorted(ARCH_LAYOUTS)}"
        )
    return layout


def pipeline_for(model: LoadedModel) -> Pipeline:
    return PIPELINES[layout_of(model.manifest)](model)
