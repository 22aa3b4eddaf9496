"""Settings of the Ray deployment and corpus jobs, checked when made (no Ray import)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


def check_positive(name: str, value: object, *, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0 or math.isinf(value):
        what = "a positive int" if integer else "a positive number"
        raise ValueError(f"{name} must be {what}, got {value!r}")


def threads_for(cpus: float) -> int:
    """ONNX Runtime intra-op threads for a worker granted `cpus` CPUs: ceil(cpus)."""
    return max(1, math.ceil(cpus))


@dataclass(frozen=True)
class ServeConfig:
    """`gliner-onnx serve`'s options (the same names, with underscores)."""

    export_dir: str
    host: str = "127.0.0.1"
    port: int = 8000
    route_prefix: str = "/gliner"
    replicas: int = 1
    cpus_per_replica: float = 1.0
    max_batch_size: int = 32
    batch_wait_timeout_ms: float = 5.0
    address: str | None = None  # None: start a local Ray; else join this cluster
    access_log: bool = False  # Ray Serve's per-request log lines
    api_key: str | None = None  # required of every prediction request when set
    max_queue_wait_ms: float = 1000.0  # a request waiting longer in a replica's queue: 503
    ui: bool = True  # GET / of the app serves the playground page

    def __post_init__(self) -> None:
        check_positive("replicas", self.replicas, integer=True)
        check_positive("cpus_per_replica", self.cpus_per_replica)
        check_positive("max_batch_size", self.max_batch_size, integer=True)
        check_positive("port", self.port, integer=True)
        if self.port > 65535:
            raise ValueError(f"port must be at most 65535, got {self.port}")
        t = self.batch_wait_timeout_ms
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < math.inf:
            raise ValueError(f"batch_wait_timeout_ms must be a non-negative number, got {t!r}")
        if not isinstance(self.route_prefix, str) or not self.route_prefix.startswith("/"):
            raise ValueError(f"route_prefix must start with '/', got {self.route_prefix!r}")

    @property
    def app_name(self) -> str:
        """The Serve application's name: one per route prefix, so several can share a cluster."""
        return "gliner-onnx" + re.sub(r"[^A-Za-z0-9_]+", "-", self.route_prefix).rstrip("-")

    @property
    def threads(self) -> int:
        return threads_for(self.cpus_per_replica)
