"""GET / (the playground page) and GET /openapi.json: the app's two self-describing routes.

The page is one HTML file with its CSS and script (`static/playground.html`, package data; no
CDN, no build step). The server fills in its settings (where to post, whether a key is asked for,
relex fields, limits) as a JSON block, and sends a Content-Security-Policy that lets the page
talk to its own origin only.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from importlib import metadata, resources
from typing import Any, Protocol

from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .limits import AppSettings
from .openapi import Spec, document


class State(Protocol):
    """What the page and /openapi.json read of the app's state (`app.State`)."""

    settings: AppSettings
    relex: bool
    model: Any


CONFIG_MARK = "{}<!--config-->"


@functools.cache
def _template() -> tuple[str, str]:
    """The page's HTML and its Content-Security-Policy (the inline script allowed by its hash)."""
    html = (resources.files(__package__) / "static" / "playground.html").read_text(encoding="utf-8")
    if html.count(CONFIG_MARK) != 1:
        raise RuntimeError("static/playground.html must hold the config mark once")
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts
    )
    csp = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html, csp


def _version() -> str:
    try:
        return metadata.version("gliner-onnx")
    except metadata.PackageNotFoundError:
        return "0"


def page_config(state: State, root_path: str) -> dict[str, Any]:
    """What the page needs to know of this server."""
    s, lim = state.settings, state.settings.limits
    return {
        "api": (root_path + s.route_prefix) or "/",
        "openapi": f"{root_path}/openapi.json",
        "key": s.api_key is not None,
        "relex": state.relex,
        "arch": state.model.arch if state.model is not None else None,
        "limits": {
            "max_text_chars": lim.max_text_chars,
            "max_labels": lim.max_labels,
            "max_body_bytes": lim.max_body_bytes,
        },
    }


def render_page(config: dict[str, Any]) -> str:
    html, _csp = _template()
    data = json.dumps(config).replace("<", "\\u003c")  # inert inside <script type=application/json>
    return html.replace(CONFIG_MARK, data)


def page_route(state: State) -> Route:
    async def page(http: HttpRequest) -> Response:
        _html, csp = _template()
        headers = {
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }
        return HTMLResponse(render_page(page_config(state, http.scope.get("root_path", ""))), headers=headers)

    return Route("/", page, methods=["GET"], name="page")


def openapi_route(state: State) -> Route:
    """GET /openapi.json: the document of the routes of the app that answers it."""

    async def openapi(http: HttpRequest) -> Response:
        s = state.settings
        spec = Spec(
            limits=s.limits,
            api_key=s.api_key is not None,
            relex=state.relex,
            arch=state.model.arch if state.model is not None else None,
            version=_version(),
            root_path=http.scope.get("root_path", ""),
        )
        routes = [
            (r.path, m, r.name) for r in http.app.routes if isinstance(r, Route) for m in r.methods or ()
        ]
        return JSONResponse(document(spec, routes))

    return Route("/openapi.json", openapi, methods=["GET"], name="openapi")
