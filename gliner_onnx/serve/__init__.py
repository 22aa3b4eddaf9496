"""Serving over HTTP on one machine (the `serve` extra): `gliner-onnx serve EXPORT_DIR`.

    from gliner_onnx.serve import AppSettings, build_app, serve
    app = build_app(AppSettings("export/"))     # an ASGI app: any ASGI server, or Ray Serve
    serve(AppSettings("export/"), port=8000)    # uvicorn in this process, until SIGTERM

Modules: `wire` (gliner 0.2.29's request format, checked), `limits` (what a request may ask
for, how the model is run), `batching` (the bounded queue and the worker threads), `metrics`
(Prometheus), `app` (the Starlette app both hosts serve), `host` (uvicorn). `import
gliner_onnx.serve` loads none of the server libraries; the names below import them when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .limits import Capacity, Limits

if TYPE_CHECKING:
    from .app import AppSettings, build_app
    from .host import serve

_LAZY = {"AppSettings": "app", "build_app": "app", "serve": "host"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gliner_onnx.serve' has no attribute {name!r}")
    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"gliner_onnx.serve.{name} needs the server libraries: pip install 'gliner-onnx[serve]'"
        ) from e
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = ["AppSettings", "Capacity", "Limits", "build_app", "serve"]
