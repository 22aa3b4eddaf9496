"""The embedded host: the app in this one process, served by uvicorn (no Ray).

SIGTERM or Ctrl-C stops it gracefully: the listening socket closes, requests in flight get
their answers (waiting at most `graceful_timeout_s`), the workers finish, and `serve`
returns 0. A second Ctrl-C forces the exit.
"""

from __future__ import annotations

import math
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from .app import AppSettings, build_app


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
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> int:
    """`gliner-onnx serve`: load the export, serve until SIGTERM / Ctrl-C; the exit status."""
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
    )
    cap = settings.capacity

    def started() -> None:
        log(
            f"serving {state.model.arch} at http://{host}:{port}{settings.route_prefix} "
            f"(model loaded in {state.load_seconds:.1f} s; "
            f"{cap.workers} worker(s) x {cap.threads} thread(s), "
            f"batches up to {cap.max_batch}); GET /health, /ready, /metrics; Ctrl-C stops"
        )

    server = _Server(config, state, started)
    server.run()
    if not server.started:
        return 1  # the model did not load or the port was taken (uvicorn logged why)
    log("stopped")
    return 0
