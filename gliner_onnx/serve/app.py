"""The ASGI app (Starlette) that both hosts serve: the embedded server and Ray Serve's ingress.

Routes (`prefix` is the route prefix, default /gliner; under Ray Serve the mount point):

    POST {prefix}          gliner 0.2.29's request, or the batch form (`texts`): see `wire`
    GET  {prefix}/health   and GET /health: live (200 while the process serves)
    GET  /ready            200 once the model is loaded and answering, 503 while shutting down
    GET  /metrics          Prometheus text format (`metrics`)
    GET  /                 the playground page (`page`; not with ui=False, `--no-ui`)
    GET  /openapi.json     the OpenAPI 3.1 document of these routes (`openapi`)

Errors are JSON `{"error": ..., "field": ...}` without tracebacks or file paths: 400 a bad
request (the field and the limit named), 401 a missing or wrong API key, 413 a body over
the limit (refused before it is read), 503 overload or shutdown (with Retry-After), 504 the
per-request time limit.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TextIO

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .batching import Batcher, Closed, Overloaded, run_requests
from .limits import AppSettings
from .metrics import Metrics
from .page import openapi_route, page_route
from .wire import RequestError, decode_json, parse_requests

logger = logging.getLogger("gliner_onnx.serve")
WARMUP_TEXT = "Angela Merkel visited Paris in March."
API_KEY_ENV = "GLINER_ONNX_API_KEY"


class _Error(Exception):
    def __init__(
        self, status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status, self.field, self.headers = status, field, headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": str(self), "field": self.field}, self.status, headers=self.headers)


class State:
    """The loaded model and its batcher, made by the lifespan."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.model: Any = None
        self.relex = False
        self.batcher: Batcher | None = None
        self.draining = False
        self.load_seconds = 0.0
        self.key = settings.api_key.encode() if settings.api_key else None

    def load(self) -> None:
        from gliner_onnx import GLiNER, SessionOptions

        s, cap = self.settings, self.settings.capacity
        t0 = time.perf_counter()
        model = GLiNER.from_pretrained(
            s.export_dir,
            providers=s.providers,
            session_options=SessionOptions(
                intra_op_num_threads=cap.threads, inter_op_num_threads=1, spinning=cap.spinning
            ),
        )
        self.relex = model.manifest.relations_layer is not None
        model.inference([WARMUP_TEXT], ["person", "location"])  # the first request pays no warm-up
        self.model = model
        self.load_seconds = time.perf_counter() - t0
        self.metrics.load_seconds.set(self.load_seconds)
        self.batcher = Batcher(
            lambda reqs: run_requests(model, reqs, batch_size=cap.max_batch),
            cap,
            self.metrics.on_batch,
            self.metrics.on_batch_done,
        )
        self.metrics.queued.set_function(lambda: self.batcher.queued if self.batcher else 0)
        self.metrics.shedding.set_function(lambda: float(self.batcher.shedding) if self.batcher else 0.0)
        self.metrics.ready.set(1)

    def close(self) -> None:
        self.draining = True
        self.metrics.ready.set(0)
        if self.batcher is not None and not self.batcher.close(self.settings.shutdown_timeout_s):
            logger.warning(
                "workers still busy after %.0f s; exiting anyway", self.settings.shutdown_timeout_s
            )

    def check_key(self, http: HttpRequest) -> None:
        if self.key is None:
            return
        given = http.headers.get("x-api-key")
        auth = http.headers.get("authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is None or not hmac.compare_digest(given.encode("utf-8", "replace"), self.key):
            raise _Error(
                401,
                "a valid API key is required (X-API-Key or Authorization: Bearer)",
                None,
                {"WWW-Authenticate": "Bearer"},
            )


class _ClientGone(Exception):
    """The client closed its connection before its answer: nothing is sent."""


async def _read_body(http: HttpRequest, limit: int, timeout_s: float) -> bytes:
    """The body, refused with 413 past `limit` (by Content-Length before reading, or as it
    streams) and with 408 when it has not all arrived within `timeout_s` (a slow client)."""
    too_large = _Error(
        413, f"request body over this server's max_body_bytes ({limit})", "body", {"Connection": "close"}
    )
    declared = http.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _Error(400, "invalid Content-Length", "body")
        if int(declared) > limit:
            raise too_large

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in http.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), max(timeout_s, 0.001))
    except ClientDisconnect:
        raise _ClientGone from None
    except asyncio.TimeoutError:
        raise _Error(
            408,
            "the request body did not arrive within this server's request_timeout_s",
            "body",
            {"Connection": "close"},
        ) from None


async def _disconnected(receive: Receive) -> None:
    """Return once the client has closed its connection (ASGI's http.disconnect); called after
    the body is read, when uvicorn's receive() blocks until then. A host whose receive() does
    not block there is not watched."""
    for _ in range(2):
        if (await receive())["type"] == "http.disconnect":
            return
    await asyncio.Event().wait()


async def _refusal(state: State, refused: Overloaded | Closed) -> _Error:
    """The 503 of a request the batcher refused, counted by reason. An overload refusal is
    held `refusal_delay_ms` first: a client that retries at once without reading Retry-After
    then asks at most that often, instead of spinning the event loop."""
    cap = state.settings.capacity
    state.metrics.rejected.labels(refused.reason if isinstance(refused, Overloaded) else "shutdown").inc()
    if isinstance(refused, Overloaded) and cap.refusal_delay_ms > 0:
        await asyncio.sleep(cap.refusal_delay_ms / 1000)
    return _failure(refused, cap.retry_after_s)


def _failure(exc: Exception, retry_after: int) -> _Error:
    if isinstance(exc, (Overloaded, Closed)):
        return _Error(503, f"overloaded: {exc}; retry later", None, {"Retry-After": str(retry_after)})
    if isinstance(exc, RequestError):
        return _Error(400, str(exc), exc.field)
    if isinstance(exc, (ValueError, TypeError)):
        return _Error(400, str(exc)[:500], None)
    logger.error("request failed: %r", exc)
    return _Error(500, "internal error: the model failed on this request", None)


async def _predict(state: State, http: HttpRequest) -> dict[str, Any]:
    s, metrics = state.settings, state.metrics
    t0 = time.perf_counter()
    state.check_key(http)
    if state.batcher is None or state.draining:
        raise _failure(Closed("the server is shutting down"), s.capacity.retry_after_s)
    refused = state.batcher.refuses(1)  # before the body is read: a refusal costs no parsing
    if refused is not None:
        raise await _refusal(state, refused)
    body = await _read_body(http, s.limits.max_body_bytes, s.limits.request_timeout_s)
    batch, requests = parse_requests(decode_json(body), relex=state.relex, limits=s.limits)
    batcher = state.batcher
    try:
        futures = batcher.submit(requests)
    except (Overloaded, Closed) as e:
        raise await _refusal(state, e) from None
    left = s.limits.request_timeout_s - (time.perf_counter() - t0)
    answered = asyncio.ensure_future(asyncio.gather(*futures))
    gone = asyncio.ensure_future(_disconnected(http.receive))
    try:
        done, _ = await asyncio.wait(
            (answered, gone), timeout=max(left, 0.001), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        gone.cancel()
    if answered not in done:  # the client left, or the time ran out: drop what still waits
        metrics.abandoned.inc(batcher.cancel(futures))
        answered.cancel()
        if gone in done:
            raise _ClientGone
        raise _Error(
            504, f"no answer within this server's request_timeout_s ({s.limits.request_timeout_s:g})"
        )
    answers: Sequence[Any] = answered.result()
    for i, a in enumerate(answers):
        if isinstance(a, Exception):
            if isinstance(a, Overloaded):
                metrics.rejected.labels(a.reason).inc()
            err = _failure(a, s.capacity.retry_after_s)
            if batch and err.status == 400:
                err = _Error(400, f"texts[{i}]: {err}", f"texts[{i}]")
            raise err
    metrics.latency.observe(time.perf_counter() - t0)
    return {"results": list(answers)} if batch else answers[0]


def _handlers(state: State) -> list[Route]:
    s = state.settings

    async def predict(http: HttpRequest) -> Response:
        state.metrics.in_flight.inc()
        try:
            return JSONResponse(await _predict(state, http))
        except _Error as e:
            return e.response()
        except RequestError as e:
            return JSONResponse(e.payload(), 400)
        except _ClientGone:  # nginx's 499 in the metrics and the access log; nobody reads it
            return Response(status_code=499)
        finally:
            state.metrics.in_flight.dec()

    def info() -> dict[str, Any]:
        m, cap = state.model, s.capacity
        return {
            "status": "ok",
            "arch": m.arch if m else None,
            "relex": state.relex,
            "providers": m.providers if m else [],
            "workers": cap.workers,
            "threads": cap.threads,
            "spinning": m.context.runner.spinning if m else cap.spinning,
            "max_batch": cap.max_batch,
        }

    async def health(http: HttpRequest) -> Response:
        return JSONResponse(info())

    async def ready(http: HttpRequest) -> Response:
        if state.batcher is None or state.draining:
            return JSONResponse({"status": "not ready"}, 503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "ready"})

    async def metrics(http: HttpRequest) -> Response:
        try:
            state.check_key(http)
        except _Error as e:
            return e.response()
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    p = s.route_prefix
    routes = [Route(p or "/", predict, methods=["POST"]), Route(f"{p}/health", health, methods=["GET"])]
    if p:
        routes += [Route("/health", health, methods=["GET"])]
    routes += [Route("/ready", ready, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]
    return [*routes, *([page_route(state)] if s.ui else []), openapi_route(state)]


class _Observe:
    """Counts every answer by route and status; writes the JSON-lines access log when on."""

    def __init__(self, app: ASGIApp, state: State, log: TextIO | None):
        self.app, self.state, self.log = app, state, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        root = scope.get("root_path", "")
        if root and scope.get("path") == root:  # mounted (Ray Serve): POST /gliner is this app's "/"
            scope = {**scope, "path": root + "/"}
        t0, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = scope.get("path", "")
            self.state.metrics.requests.labels(path[:64], str(status)).inc()
            if self.log is not None:
                client = scope.get("client") or ("", 0)
                line = {
                    "ts": round(time.time(), 3),
                    "method": scope.get("method"),
                    "path": path[:200],
                    "status": status,
                    "ms": round(1000 * (time.perf_counter() - t0), 2),
                    "client": client[0],
                }
                self.log.write(json.dumps(line) + "\n")
                self.log.flush()


async def _http_error(_http: HttpRequest, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return JSONResponse({"error": str(exc.detail), "field": None}, exc.status_code, headers=exc.headers)
    logger.error("unhandled error: %r", exc)
    return JSONResponse({"error": "internal error", "field": None}, 500)


def build_app(settings: AppSettings, *, log: TextIO | None = None) -> Starlette:
    """The app of `settings`; the model loads when the host starts it (ASGI lifespan)."""
    state = State(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(state.load)
        try:
            yield
        finally:
            await asyncio.to_thread(state.close)

    middleware = [Middleware(_Observe, state=state, log=(log or sys.stderr) if settings.access_log else None)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["*"],
            )
        )
    app = Starlette(
        routes=_handlers(state),
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
    )
    app.state.gliner = state
    return app
