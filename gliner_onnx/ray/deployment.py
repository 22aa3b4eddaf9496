"""The Ray Serve deployment: the embedded server's ASGI app (`gliner_onnx.serve.app`) as the
ingress of each replica, so both hosts parse, limit, batch and answer with the same code.

Each replica loads the export once (ONNX Runtime with intra-op threads = its CPU share) when
Serve runs the app's lifespan, and batches the requests that arrive together in its worker
thread (`gliner_onnx.serve.batching`). A bad request is answered 400 before it reaches a batch.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray import serve

from gliner_onnx.serve.app import AppSettings
from gliner_onnx.serve.app import build_app as build_asgi_app
from gliner_onnx.serve.limits import Capacity

from .config import ServeConfig

logger = logging.getLogger(__name__)


@serve.ingress()
class GlinerIngress:
    """One replica: the shared app, built (and its model loaded) on the replica."""

    def __init__(self, settings: AppSettings):
        self.settings = settings

    def __serve_build_asgi_app__(self) -> Any:
        return build_asgi_app(self.settings)


GlinerDeployment = serve.deployment(GlinerIngress)


def app_settings(config: ServeConfig) -> AppSettings:
    """The app each replica serves: mounted at the route prefix, one worker thread."""
    capacity = Capacity(
        workers=1,
        threads=config.threads,
        max_batch=config.max_batch_size,
        batch_wait_ms=config.batch_wait_timeout_ms,
        max_queue=max(4 * config.max_batch_size, 64),  # Ray Serve queues in front of it too
        max_queue_wait_ms=config.max_queue_wait_ms,
        # No shedding inside a replica: Ray Serve's router spreads and queues requests in front of
        # it (max_ongoing_requests); a replica that shed would refuse a burst Ray had routed to it.
        shed_batch=0,
    )
    return AppSettings(
        str(Path(config.export_dir).resolve()),
        route_prefix="",
        capacity=capacity,
        api_key=config.api_key,
        ui=config.ui,
    )


def build_app(config: ServeConfig) -> Any:
    """The Serve application of `config` (not yet running)."""
    return GlinerDeployment.options(  # type: ignore[attr-defined]
        num_replicas=config.replicas,
        ray_actor_options={"num_cpus": config.cpus_per_replica},
        max_ongoing_requests=max(4 * config.max_batch_size, 64),
    ).bind(app_settings(config))


def start(config: ServeConfig) -> Any:
    """Deploy on the connected Ray (a local one is started when none is) and return the handle."""
    if not ray.is_initialized():
        if config.address is None:
            ray.init(include_dashboard=False)
        else:
            ray.init(address=config.address)
    # Access logs are off unless asked for: one log line per request in the proxy and in the
    # replica costs CPU that the model needs.
    logging_config = {"enable_access_log": config.access_log}
    serve.start(http_options={"host": config.host, "port": config.port}, logging_config=logging_config)
    return serve.run(
        build_app(config),
        name=config.app_name,
        route_prefix=config.route_prefix,
        blocking=False,
        logging_config=logging_config,
    )


def stop(config: ServeConfig) -> None:
    """Undo `start`: a local Ray goes down entirely; on a cluster only our app is deleted."""
    if config.address is None:
        serve.shutdown()
    else:
        serve.delete(config.app_name)
    ray.shutdown()


def serve_forever(config: ServeConfig, log: Callable[[str], None] = print) -> None:
    """`gliner-onnx serve`: deploy, then wait for Ctrl-C (or SIGTERM) and stop cleanly."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    # Both set here: a process started in the background by a non-interactive shell (or by a
    # parent that ignores SIGINT) inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: the "Ctrl-C stops" below would not hold.
    previous = signal.signal(signal.SIGTERM, interrupt)
    previous_int = signal.signal(signal.SIGINT, interrupt)
    try:
        start(config)
        log(
            f"serving {config.export_dir} at http://{config.host}:{config.port}{config.route_prefix} "
            f"({config.replicas} replica(s), {config.cpus_per_replica} CPU each); "
            f"health: GET {config.route_prefix.rstrip('/')}/health; Ctrl-C stops"
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log("stopping")
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        if ray.is_initialized():
            stop(config)
            log("stopped")
