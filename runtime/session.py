"""ONNX Runtime sessions, one per graph, created once and checked (run through `runner.py`).

Providers are explicit: an unavailable provider is a `ProviderError` naming the
available ones, and a session that silently fell back from the requested first
provider (CUDA -> CPU) is an error too. Each session's declared inputs and outputs
are checked against the manifest when it loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from gliner_onnx.errors import InferenceError, ManifestError, ProviderError

from .options import CPU_DISABLED_OPTIMIZERS, ProviderSpec, SessionOptions

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def disabled_optimizers(providers: list[ProviderSpec]) -> list[str]:
    """The fusions a session on `providers` is created without (`CPU_DISABLED_OPTIMIZERS`
    when the CPU comes first)."""
    first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    return list(CPU_DISABLED_OPTIMIZERS) if first == "CPUExecutionProvider" else []


def resolve_providers(options: SessionOptions) -> list[ProviderSpec]:
    """Turn "cpu" / "cuda" / an explicit list into ONNX Runtime provider specs."""
    available = ort.get_available_providers()
    requested = options.providers
    if isinstance(requested, str):
        key = requested.lower()
        if key == "cpu":
            providers: list[ProviderSpec] = ["CPUExecutionProvider"]
        elif key == "cuda":
            providers = [("CUDAExecutionProvider", {"device_id": options.device_id}), "CPUExecutionProvider"]
        else:
            providers = [requested]
    elif isinstance(requested, (list, tuple)) and requested:
        providers = list(requested)
    else:
        raise ProviderError(f"providers must be 'cpu', 'cuda' or a non-empty list, got {requested!r}")
    for spec in providers:
        name = spec[0] if isinstance(spec, tuple) else spec
        if not isinstance(name, str):
            raise ProviderError(f"provider names must be strings, got {name!r}")
        if name not in available:
            hint = ""
            if name == "CUDAExecutionProvider":
                hint = " (install onnxruntime-gpu instead of onnxruntime for CUDA)"
            raise ProviderError(
                f"execution provider {name!r} is not available{hint}; available: {', '.join(available)}"
            )
    return providers


class GraphSession:
    """One ONNX Runtime session for one graph of an export."""

    def __init__(
        self,
        path: Path,
        name: str,
        inputs: tuple[str, ...] | None,
        outputs: tuple[str, ...] | None,
        options: SessionOptions,
        providers: list[ProviderSpec],
        model_format: str | None = None,
    ):
        self.name = name
        self.path = path
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.intra_op_num_threads
        so.inter_op_num_threads = options.inter_op_num_threads
        so.graph_optimization_level = _LEVELS[options.graph_optimization_level]
        so.log_severity_level = 3
        # Our graphs run one after another: a pool left spinning after the text encoder
        # steals the cores the scorer needs (measured: 2x end-to-end latency on 2 cores), so
        # spinning threads (`SessionOptions.spinning`) stop when a run returns.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
        if options.spinning:
            so.add_session_config_entry("session.force_spinning_stop", "1")
        # ORT format files (`gliner-export --format ort`; None: by the file name) are said to be
        # so, not guessed. Their graph optimizations were applied when they were converted: ONNX
        # Runtime applies none of its ONNX-level ones to them again, whatever the level says.
        self.model_format = model_format or ("ort" if path.suffix == ".ort" else "onnx")
        if self.model_format == "ort":
            so.add_session_config_entry("session.load_model_format", "ORT")
        try:
            self._session = ort.InferenceSession(
                str(path),
                sess_options=so,
                providers=providers,
                disabled_optimizers=disabled_optimizers(providers),
            )
        except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise ManifestError(f"graph {name!r}: ONNX Runtime cannot load {path}: {e}") from e
        first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        active = self._session.get_providers()
        if first not in active:
            raise ProviderError(
                f"graph {name!r}: requested provider {first} but ONNX Runtime fell back to {active}"
            )
        self.providers = active
        # As ONNX Runtime holds it (SessionOptions.spinning set it above).
        held = self._session.get_session_options()
        self.spinning = held.get_session_config_entry("session.intra_op.allow_spinning") == "1"
        got_in = [i.name for i in self._session.get_inputs()]
        got_out = [o.name for o in self._session.get_outputs()]
        # None: take the graph's own names (gliner's one-graph layout, runtime/onegraph.py)
        inputs, outputs = (
            tuple(got_in if inputs is None else inputs),
            tuple(got_out if outputs is None else outputs),
        )
        if got_in != list(inputs) or got_out != list(outputs):
            raise ManifestError(
                f"graph {name!r} ({path.name}): the graph declares inputs {got_in} and outputs {got_out}, "
                f"the manifest says {list(inputs)} -> {list(outputs)}"
            )
        self.input_names = list(inputs)
        self.output_names = list(outputs)
        # ONNX element type of each input, e.g. 'tensor(bool)'
        self.input_types = {i.name: i.type for i in self._session.get_inputs()}

    def _check_given(self, feeds: Mapping[str, Any]) -> None:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InferenceError(f"graph {self.name!r}: inputs {missing} were not given")

    def run_on_device(self, feeds: Mapping[str, Any], device: str, device_id: int = 0) -> list[ort.OrtValue]:
        """Run with IO binding: inputs are numpy arrays (copied in) or OrtValues already on
        the session's device; outputs are OrtValues left on `device` ("cuda" or "cpu")."""
        self._check_given(feeds)
        binding = self._session.io_binding()
        for n in self.input_names:
            value = feeds[n]
            if isinstance(value, ort.OrtValue):
                binding.bind_ortvalue_input(n, value)
            else:
                binding.bind_cpu_input(n, np.ascontiguousarray(value))
        for n in self.output_names:
            binding.bind_output(n, device, device_id)
        try:
            self._session.run_with_iobinding(binding)
        except Exception as e:
            raise InferenceError(f"ONNX Runtime failed running graph {self.name!r} (IO binding): {e}") from e
        outputs: list[ort.OrtValue] = binding.get_outputs()
        return outputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run on the graph's declared inputs, taken by name from `feeds` (extra keys ignored)."""
        self._check_given(feeds)
        try:
            result: list[Any] = self._session.run(self.output_names, {n: feeds[n] for n in self.input_names})
        except Exception as e:
            shapes = {n: tuple(feeds[n].shape) for n in self.input_names}
            raise InferenceError(
                f"ONNX Runtime failed running graph {self.name!r} with inputs {shapes}: {e}"
            ) from e
        return result
