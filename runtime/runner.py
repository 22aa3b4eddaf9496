"""Stage 5: the one graph runner: every pipeline runs every graph through it.

It owns the export's sessions (one per graph, see `session.py`), the providers they
run on and where outputs are placed, so that an option means the same for every
arch. IO binding (`SessionOptions.io_binding`; None: on with CUDA) applies to every
graph: inputs are bound (numpy arrays copied in, OrtValues bound where they are) and
outputs are bound on the device. `run` hands back numpy arrays (outputs a pipeline
reads), `run_kept` leaves the outputs where the next graph reads them (OrtValues on the
device with IO binding), and `graph(name)` is a graph's `.run` for the generation loops.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gliner_onnx.manifest import Manifest

from .options import ProviderSpec, SessionOptions
from .session import GraphSession, resolve_providers

Device = tuple[str, int]  # ("cuda" | "cpu", device id)


def binding_device(options: SessionOptions, resolved: list[ProviderSpec]) -> Device | None:
    """Where IO binding keeps outputs on the resolved providers; None: no IO binding."""
    first = resolved[0][0] if isinstance(resolved[0], tuple) else resolved[0]
    on_cuda = first == "CUDAExecutionProvider"
    if options.io_binding or (options.io_binding is None and on_cuda):
        return ("cuda", options.device_id) if on_cuda else ("cpu", 0)
    return None


class GraphRunner:
    """The sessions of one export and how they run."""

    def __init__(self, sessions: Mapping[str, GraphSession], device: Device | None = None):
        self._sessions = dict(sessions)
        # Where bound outputs stay for the next graph; None: no IO binding, plain numpy runs.
        self.device = device

    @classmethod
    def load(cls, directory: Path, manifest: Manifest, options: SessionOptions) -> GraphRunner:
        """One checked session per graph of the manifest, on the resolved providers."""
        resolved = resolve_providers(options)
        sessions = {
            name: GraphSession(
                directory / g.file, name, g.inputs, g.outputs, options, resolved, model_format=g.model_format
            )
            for name, g in manifest.graphs.items()
        }
        return cls(sessions, binding_device(options, resolved))

    @property
    def io_binding(self) -> bool:
        return self.device is not None

    @property
    def _main(self) -> GraphSession:
        """The text encoder's session, or the one graph's: what the settings below are read from."""
        return self._sessions.get("text_encoder") or next(iter(self._sessions.values()))

    @property
    def providers(self) -> list[str]:
        """The providers ONNX Runtime actually uses."""
        return list(self._main.providers)

    @property
    def spinning(self) -> bool:
        """Whether the intra-op threads spin between operators (`SessionOptions.spinning`), as
        ONNX Runtime holds it."""
        return self._main.spinning

    def has(self, name: str) -> bool:
        return name in self._sessions

    def session(self, name: str) -> GraphSession:
        return self._sessions[name]

    def run(self, name: str, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        """Run graph `name` on its declared inputs (taken by name from `feeds`): numpy outputs."""
        session = self._sessions[name]
        if self.device is None:
            return session.run(feeds)
        return [np.asarray(v.numpy()) for v in session.run_on_device(feeds, "cpu", 0)]

    def run_kept(self, name: str, feeds: Mapping[str, Any]) -> list[Any]:
        """Run graph `name`, its outputs left where the next graph reads them: OrtValues on the
        device with IO binding (pass them on in that graph's feeds), numpy arrays otherwise."""
        session = self._sessions[name]
        if self.device is None:
            return session.run(feeds)
        return list(session.run_on_device(feeds, *self.device))

    def graph(self, name: str) -> Graph:
        if name not in self._sessions:
            raise KeyError(f"this export has no graph {name!r}; it has {sorted(self._sessions)}")
        return Graph(self, name)


class Graph:
    """One graph of a runner, as `graph.run(feeds) -> [outputs]` (the generation loops' view)."""

    def __init__(self, runner: GraphRunner, name: str):
        self.runner = runner
        self.name = name

    def run(self, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        return self.runner.run(self.name, feeds)
