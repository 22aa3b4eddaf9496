"""The embedded host: the app in this one process, served by uvicorn (no Ray).

SIGTERM or Ctrl-C stops it gracefully: the listening socket closes, requests in flight get
their answers (waiting at most `graceful_timeout_s`), the workers finish, and `serve`
returns 0. A second Ctrl-C forces the exit.

Connections (`limits.Connections`): uvicorn closes a keep-alive connection idle for
`keep_alive_s` (its `timeout_keep_alive`) and answers 503 past `max_connections` open ones
(its `limit_concurrency`); uvicorn has no deadline on a request's head, so the httptools
protocol here closes a connection that has not sent a whole head `header_timeout_s` after it
opened or began its request (a client sending its headers a byte at a time holds nothing
for longer). A slow body is the app's: 408 once `request_timeout_s` has passed.
"""

from __future__ import annotations

import asyncio
import math
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from .app import AppSettings, build_app
from .limits import Connections


def _head_deadline_protocol(timeout_s: float) -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol with a deadline on each request's head; "auto" (uvicorn's
    h11 protocol, no deadline) where httptools is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    class HeadDeadline(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(timeout_s, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeadDeadline


def _allow_open_files(n: int) -> None:
    """Raise this process's open-file limit to `n` where the hard limit allows (a default
    soft limit of 1024 would refuse connections well before `max_connections`)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class _Server(uvicorn.Server):
    """uvicorn's server, but a signal ends it with exit status 0 instead of re-raising the
    signal after the graceful shutdown (uvicorn's own behaviour), and /ready turns 503 at once."""

    def __init__(self, config: uvicorn.Config, state: Any, on_started: Callable[[], None]):
        super().__init__(config)
        self.state, self.on_started = state, on_started

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.state.draining = True
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self.on_started()


def serve(
    settings: AppSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    graceful_timeout_s: float = 30.0,
    connections: Connections | None = None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> int:
    """`gliner-onnx serve`: load the export, serve until SIGTERM / Ctrl-C; the exit status."""
    conn = connections or Connections()
    _allow_open_files(conn.max_connections + 256)
    app = build_app(settings)
    state = app.state.gliner
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,  # the app's own JSON-lines log, when asked for
        server_header=False,
        timeout_graceful_shutdown=max(1, math.ceil(graceful_timeout_s)),
        lifespan="on",
        http=_head_deadline_protocol(conn.header_timeout_s),
        limit_concurrency=conn.max_connections,
        timeout_keep_alive=conn.keep_alive_s,
    )
    cap = settings.capacity

    def started() -> None:
        log(
            f"serving {state.model.arch} at http://{host}:{port}{settings.route_prefix} "
            f"(model loaded in {state.load_seconds:.1f} s; "
            f"{cap.workers} worker(s) x {cap.threads} thread(s)"
            + (" spinning" if cap.spinning else "")
            + f", batches up to {cap.max_batch}); "
            + ("the playground at GET /, " if settings.ui else "")
            + "GET /health, /ready, /metrics, /openapi.json; Ctrl-C stops"
        )

    server = _Server(config, state, started)
    server.run()
    if not server.started:
        return 1  # the model did not load or the port was taken (uvicorn logged why)
    log("stopped")
    return 0
