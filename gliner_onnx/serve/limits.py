"""What one request may ask for, and what the server holds at once; checked when made.

Every limit has a default that a one-sentence-to-a-page workload never meets, and each is
enforced with an error that names it: a body over `max_body_bytes` is refused with 413 before
it is read, a text, label set or batch over its limit with 400 (`field` names the field, the
message the limit), a request that waits or runs past `request_timeout_s` gets 504.
`AppSettings` gathers them with the rest of what the app is built from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def check_positive(name: str, value: object, *, integer: bool = False, zero: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or math.isinf(value) or math.isnan(value):
        raise ValueError(f"{name} must be a finite {'int' if integer else 'number'}, got {value!r}")
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be {'>= 0' if zero else '> 0'}, got {value!r}")


@dataclass(frozen=True)
class Limits:
    """Per-request limits (the CLI's `--max-*` options)."""

    max_body_bytes: int = 1 << 20  # 1 MiB
    max_text_chars: int = 50_000  # ~8,000 words: a long article, run as windows
    max_labels: int = 100
    max_texts: int = 64  # texts in one batch-form request
    request_timeout_s: float = 30.0  # queueing and running, per request

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_text_chars", "max_labels", "max_texts"):
            check_positive(name, getattr(self, name), integer=True)
        check_positive("request_timeout_s", self.request_timeout_s)


@dataclass(frozen=True)
class Connections:
    """What the embedded host (uvicorn) allows each connection (the CLI's connection options)."""

    max_connections: int = 2048  # uvicorn's limit_concurrency: 503 past this many open
    keep_alive_s: int = 5  # uvicorn's timeout_keep_alive (its default)
    header_timeout_s: float = 10.0  # a request's head must arrive within this

    def __post_init__(self) -> None:
        check_positive("max_connections", self.max_connections, integer=True)
        check_positive("keep_alive_s", self.keep_alive_s, integer=True)
        check_positive("header_timeout_s", self.header_timeout_s)


@dataclass(frozen=True)
class Capacity:
    """How the model is run: worker threads, ONNX Runtime threads each, batching, the queue.

    `workers` threads take requests from one bounded queue, up to `max_batch` at a time (all
    that are waiting: batching adds no wait unless `batch_wait_ms` > 0), and run them as one
    runtime call with `threads` intra-op threads. A request that finds `max_queue` texts
    waiting (default: four batches per worker, at least 16: a burst is absorbed) is answered
    503 with Retry-After at once. When the queue stands (each batch's oldest text waited over
    one batch's compute plus `queue_target_ms`, for `queue_interval_ms`: CoDel's rule, see
    `batching`), the server sheds: a text is admitted only while at most `shed_limit` texts (two
    `shed_batch` batches per worker) are ahead of it, and batches hold `shed_batch` texts at
    most; shedding stops at the first batch whose oldest text waited less. A text that still
    waits `max_queue_wait_ms` for a worker (a stalled machine) gets 503 too.
    """

    workers: int = 1
    threads: int = 2
    max_batch: int = 8
    batch_wait_ms: float = 0.0
    max_queue: int = 0  # 0: 4 x max_batch x workers, at least 16
    max_queue_wait_ms: float = 1000.0
    retry_after_s: int = 1
    shed_batch: int | None = None  # None: max_batch; 0: never shed (max_queue alone admits)
    queue_target_ms: float = 5.0
    queue_interval_ms: float = 100.0
    refusal_delay_ms: float = 100.0  # chosen by benchmarks/bench_http.py --stress (docs/serving.md)
    spinning: bool = False  # SessionOptions.spinning

    @property
    def shed_batch_size(self) -> int:
        """Texts per batch while shedding: `shed_batch`, at most `max_batch`."""
        return min(self.shed_batch or self.max_batch, self.max_batch)

    @property
    def shed_limit(self) -> int:
        """Texts running or queued at most while shedding: two such batches per worker."""
        return 2 * self.shed_batch_size * self.workers

    def __post_init__(self) -> None:
        if self.max_queue == 0:
            object.__setattr__(self, "max_queue", max(16, 4 * self.max_batch * self.workers))
        if self.shed_batch is None:
            object.__setattr__(self, "shed_batch", self.max_batch)
        for name in ("workers", "threads", "max_batch", "max_queue", "retry_after_s"):
            check_positive(name, getattr(self, name), integer=True)
        check_positive("batch_wait_ms", self.batch_wait_ms, zero=True)
        check_positive("shed_batch", self.shed_batch, integer=True, zero=True)
        check_positive("max_queue_wait_ms", self.max_queue_wait_ms)
        check_positive("queue_target_ms", self.queue_target_ms, zero=True)
        check_positive("queue_interval_ms", self.queue_interval_ms, zero=True)
        check_positive("refusal_delay_ms", self.refusal_delay_ms, zero=True)
        if not isinstance(self.spinning, bool):
            raise TypeError(f"spinning must be a bool, got {self.spinning!r}")


MAX_THREADS_PER_WORKER = 4


def default_split(cpus: int, workers: int | None = None, threads: int | None = None) -> tuple[int, int]:
    """Workers x ONNX Runtime threads that fit `cpus`: one worker with all the CPUs (up to
    MAX_THREADS_PER_WORKER threads), then more workers. Either may be given; the other fills."""
    cpus = max(1, cpus)
    if workers is None and threads is None:
        threads = min(cpus, MAX_THREADS_PER_WORKER)
    if workers is None:
        workers = max(1, cpus // max(1, threads or 1))
    if threads is None:
        threads = max(1, cpus // workers)
    return workers, threads


@dataclass(frozen=True)
class AppSettings:
    """Everything the app needs; the hosts add where it listens."""

    export_dir: str
    route_prefix: str = "/gliner"
    limits: Limits = field(default_factory=Limits)
    capacity: Capacity = field(default_factory=Capacity)
    providers: str = "cpu"
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    access_log: bool = False
    shutdown_timeout_s: float = 30.0
    ui: bool = True  # GET / serves the playground page

    def __post_init__(self) -> None:
        p = self.route_prefix
        if not isinstance(p, str) or not (p == "" or (p.startswith("/") and p != "/")):
            raise ValueError(f"route_prefix must start with '/' (and not be '/' alone), got {p!r}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty")
