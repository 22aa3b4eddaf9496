"""The frozen parameter objects: one call's options, inference parameters, session settings."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ProviderSpec = str | tuple[str, dict[str, Any]]

# ONNX Runtime's load-time fusions left out of sessions whose first provider is the CPU:
# SkipLayerNormFusion turns a transformer layer's residual Add (and the bias Add before it) and
# LayerNormalization into SkipLayerNormalization, whose CPU kernel is a plain loop 3-6x slower
# than the Add and the vectorized LayerNormalization it replaces (onnxruntime 1.32, 92 x 768,
# 2 threads: 0.16 against 0.05 ms; the whole call: docs/benchmarks.md). Other providers keep it.
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


@dataclass(frozen=True)
class CallOptions:
    """The options of one `GLiNER.inference` / `extract` call, as the caller gave them (gliner's
    keyword arguments and defaults); `request.make_request` checks and normalizes them."""

    flat_ner: bool = True
    threshold: float = 0.5
    multi_label: bool = False
    batch_size: int = 8
    relations: Any = None
    adjacency_threshold: float | None = None
    relation_threshold: float | None = None
    return_relations: bool = True
    label_embeddings: np.ndarray | None = None
    window: int | None = None
    overlap: int | None = None
    gen_constraints: Sequence[str] | None = None
    gen_kwargs: Mapping[str, Any] = field(default_factory=dict)  # gliner's generation arguments


@dataclass(frozen=True)
class InferenceParams:
    """Decoding parameters, with gliner's defaults."""

    threshold: float = 0.5
    flat_ner: bool = True
    multi_label: bool = False
    # Relex: None means `threshold`, as gliner.
    adjacency_threshold: float | None = None
    relation_threshold: float | None = None

    def __post_init__(self) -> None:
        for name in ("threshold", "adjacency_threshold", "relation_threshold"):
            t = getattr(self, name)
            if t is None and name != "threshold":
                continue
            if isinstance(t, bool) or not isinstance(t, (int, float)):
                raise TypeError(f"{name} must be a number in [0, 1], got {type(t).__name__}: {t!r}")
            if math.isnan(t) or not 0.0 <= t <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {t!r}")
        for name in ("flat_ner", "multi_label"):
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise TypeError(f"{name} must be a bool, got {type(v).__name__}: {v!r}")


@dataclass(frozen=True)
class SessionOptions:
    """How ONNX Runtime sessions are created.

    providers: "cpu", "cuda", or an explicit list of provider names or
    (name, options) pairs in priority order.
    """

    providers: str | Sequence[ProviderSpec] = "cpu"
    intra_op_num_threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    inter_op_num_threads: int = 0
    graph_optimization_level: str = "all"  # "disable" | "basic" | "extended" | "all"
    device_id: int = 0  # CUDA device for providers="cuda"
    # Keep the text encoder's outputs on the device for the scorer (ONNX Runtime IO
    # binding). None: on when the first provider is CUDA.
    io_binding: bool | None = None
    # Let the intra-op threads spin between a run's operators instead of sleeping (ONNX
    # Runtime's `session.intra_op.allow_spinning`, with `session.force_spinning_stop` so that
    # they stop when the run returns and leave the cores to the next graph). Each operator that
    # runs on several threads wakes them otherwise: spinning makes a batch-1 call faster on cores
    # nothing else uses and slower when another process keeps one busy (docs/benchmarks.md).
    spinning: bool = False

    def __post_init__(self) -> None:
        for name in ("intra_op_num_threads", "inter_op_num_threads", "device_id"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")
        if not isinstance(self.spinning, bool):
            raise TypeError(f"spinning must be a bool, got {self.spinning!r}")
        if self.io_binding is not None and not isinstance(self.io_binding, bool):
            raise TypeError(f"io_binding must be a bool or None, got {self.io_binding!r}")
        if self.graph_optimization_level not in ("disable", "basic", "extended", "all"):
            raise ValueError(
                "graph_optimization_level must be one of disable, basic, extended, all; "
                f"got {self.graph_optimization_level!r}"
            )
