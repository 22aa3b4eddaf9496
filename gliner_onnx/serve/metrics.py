"""Prometheus metrics of one app (`GET /metrics`, prometheus-client's text format).

Each app has its own registry, so that several apps in one process (tests, Ray replicas) do
not share counters. Names are prefixed `gliner_onnx_`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "gliner_onnx_"
        self.requests = Counter(
            p + "requests", "HTTP requests answered, by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            p + "request_seconds", "Time to answer a prediction request", buckets=LATENCY_BUCKETS, registry=r
        )
        self.in_flight = Gauge(p + "in_flight_requests", "Prediction requests being answered", registry=r)
        self.queued = Gauge(p + "queued_texts", "Texts waiting for a worker", registry=r)
        self.batch = Histogram(p + "batch_size", "Texts per runtime call", buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram(
            p + "batch_seconds", "Compute time of each runtime call", buckets=LATENCY_BUCKETS, registry=r
        )
        self.texts = Counter(p + "texts", "Texts predicted", registry=r)
        self.rejected = Counter(
            p + "rejected", "Requests refused for overload or shutdown, by reason", ["reason"], registry=r
        )
        self.queue_delay = Histogram(
            p + "queue_delay_seconds",
            "How long the oldest text of each batch waited for a worker",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.shedding = Gauge(p + "shedding", "1 while a queue stands and the server sheds", registry=r)
        self.abandoned = Counter(
            p + "abandoned_texts",
            "Texts dropped unrun because their client left or their time ran out while queued",
            registry=r,
        )
        self.load_seconds = Gauge(p + "model_load_seconds", "Time to load and warm up the model", registry=r)
        self.ready = Gauge(p + "ready", "1 once the model is loaded and answering", registry=r)

    def on_batch(self, n: int, queue_delay: float) -> None:
        self.batch.observe(n)
        self.queue_delay.observe(queue_delay)
        self.texts.inc(n)

    def on_batch_done(self, seconds: float) -> None:
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
