"""The export runs its graphs through the runtime's own pipelines.

An export config names the pipeline stage that runs its arch's graphs on a batch
(`configs.ExportConfig.run_graphs`: `EntityPipeline.scores`, `RelexPipeline`'s entity and
relation graphs, the decoder's `EntityGraphs`); the stage gets a loaded-model context
(`ExportContext.loaded`) whose runner is one of these:

* `TorchGraphs` runs the torch wrappers and keeps each graph's first feeds and outputs:
  tracing reads every graph's example inputs from it;
* `OnnxGraphs` runs the exported graphs under ONNX Runtime and, on the same feeds, the torch
  wrapper, recording their difference: validation.

So the feeds between graphs are built in one place, the runtime's, and the export proves the
code users run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from gliner_onnx.errors import ExportError
from gliner_onnx.runtime.runner import GraphRunner

from .context import Feeds, Outputs, inputs_of, torch_run
from .parity import ParityRecorder, relative_tolerance

if TYPE_CHECKING:
    import onnxruntime as ort

    from .context import ExportContext


class TorchGraphs(GraphRunner):
    """A graph runner over an export's torch wrappers; `feeds` and `outs` hold what each graph
    was given (every array the pipeline passed) and returned, at its first call."""

    def __init__(self, ctx: ExportContext):
        super().__init__({}, None)
        self.ctx = ctx
        self.feeds: Feeds = {}
        self.outs: Outputs = {}

    def has(self, name: str) -> bool:
        return name in self.ctx.specs

    def run(self, name: str, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        if name not in self.ctx.specs:
            raise ExportError(f"the pipeline ran graph {name!r}, which {self.ctx.arch} does not export")
        given = {k: v for k, v in feeds.items() if isinstance(v, np.ndarray)}
        outs = self.execute(name, inputs_of(self.ctx.specs[name], given))
        self.feeds.setdefault(name, given)
        self.outs.setdefault(name, outs)
        return outs

    def run_kept(self, name: str, feeds: Mapping[str, Any]) -> list[Any]:
        return self.run(name, feeds)

    def execute(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return torch_run(self.ctx.modules[name], self.ctx.specs[name], feeds)

    def check_ran_all(self, where: str) -> None:
        """Every graph of the export ran (tracing needs an example input of each)."""
        missing = [name for name in self.ctx.specs if name not in self.feeds]
        if missing:
            raise ExportError(f"the pipeline did not run {', '.join(missing)} on {where}")


class OnnxGraphs(TorchGraphs):
    """The exported graphs under ONNX Runtime; each call also runs the torch wrapper on the
    same feeds and records the difference in `parity` (probabilities: absolute tolerance,
    representations: relative to their magnitude)."""

    def __init__(
        self,
        ctx: ExportContext,
        sessions: Mapping[str, ort.InferenceSession],
        parity: ParityRecorder,
        where: str,
    ):
        super().__init__(ctx)
        self.sessions = sessions
        self.parity = parity
        self.where = where

    def execute(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        spec = self.ctx.specs[name]
        got: list[np.ndarray] = self.sessions[name].run(spec.output_names, feeds)
        ref = super().execute(name, feeds)
        for out_name, r, g in zip(spec.output_names, ref, got):
            tol = self.ctx.atol if name == "scorer" else relative_tolerance(self.ctx.atol, r)
            self.parity.record(name, out_name, r, g, self.where, tol)
        return got
