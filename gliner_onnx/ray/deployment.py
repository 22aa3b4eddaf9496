"""The Ray Serve deployment: gliner 0.2.29's HTTP API on the torch-free runtime.

Each replica loads the export once (ONNX Runtime with intra-op threads = its CPU share).
Requests go through `@serve.batch`: those that arrive together run as one batched runtime
call (`batching.run_requests`), in a worker thread so the replica keeps accepting the next
batch while one runs. A bad request is answered 400 before it reaches the batch.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray import serve
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse

from gliner_onnx.runtime import GLiNER, SessionOptions

from .batching import Answer, run_requests
from .config import ServeConfig
from .wire import Request, RequestError, parse_body

logger = logging.getLogger(__name__)
_WARMUP_TEXT = "Angela Merkel visited Paris in March."


@serve.deployment
class GlinerDeployment:
    """One replica: a loaded export behind gliner's wire format."""

    def __init__(self, export_dir: str, threads: int, max_batch_size: int, batch_wait_timeout_s: float):
        self.model = GLiNER.from_pretrained(
            export_dir, session_options=SessionOptions(intra_op_num_threads=threads, inter_op_num_threads=1)
        )
        self.relex = self.model.manifest.relations_layer is not None
        self.batch_size = max_batch_size
        self.export_dir = export_dir
        self._batched.set_max_batch_size(max_batch_size)  # type: ignore[attr-defined]
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)  # type: ignore[attr-defined]
        self.model.inference([_WARMUP_TEXT], ["person", "location"])  # first request pays no warm-up

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _batched(self, requests: list[Request]) -> list[Answer | Exception]:
        return await asyncio.to_thread(run_requests, self.model, requests, self.batch_size)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "arch": self.model.arch,
            "relex": self.relex,
            "export_dir": self.export_dir,
            "providers": self.model.providers,
            "max_batch_size": self.batch_size,
        }

    async def __call__(self, http: HttpRequest) -> JSONResponse:
        if http.method == "GET" or http.url.path.rstrip("/").endswith("/health"):
            return JSONResponse(self.health())
        if http.method != "POST":
            return JSONResponse({"error": f"method {http.method} not allowed: POST a request"}, 405)
        try:
            request = parse_body(await http.body(), relex=self.relex)
        except RequestError as e:
            return JSONResponse(e.payload(), status_code=400)
        answer = await self._batched(request)
        if isinstance(answer, Exception):
            status = 400 if isinstance(answer, (ValueError, TypeError)) else 500
            if status == 500:
                logger.error("request failed: %r", answer)
            return JSONResponse({"error": str(answer), "field": None}, status_code=status)
        return JSONResponse(answer)


def build_app(config: ServeConfig) -> Any:
    """The Serve application of `config` (not yet running)."""
    return GlinerDeployment.options(  # type: ignore[attr-defined]
        num_replicas=config.replicas,
        ray_actor_options={"num_cpus": config.cpus_per_replica},
        max_ongoing_requests=max(4 * config.max_batch_size, 64),
    ).bind(
        str(Path(config.export_dir).resolve()),
        config.threads,
        config.max_batch_size,
        config.batch_wait_timeout_ms / 1000.0,
    )


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

    previous = signal.signal(signal.SIGTERM, interrupt)
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
        if ray.is_initialized():
            stop(config)
