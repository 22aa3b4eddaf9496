"""Scale-out on Ray (the `ray` extra): a Ray Serve deployment and Ray Data corpus jobs.

    from gliner_onnx.ray import annotate, serve
    ds = annotate("corpus.jsonl", "export/", ["person", "location"], actors=2)
    ds.write_parquet("annotated/")

`import gliner_onnx.ray` loads no Ray; the functions import it when called. The request
parsing (`wire`) and batching (`batching`) modules work without Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import ServeConfig

if TYPE_CHECKING:
    from .corpus import annotate, annotate_files, read_corpus
    from .deployment import build_app, serve_forever, start, stop

_LAZY = {
    "annotate": "corpus",
    "annotate_files": "corpus",
    "read_corpus": "corpus",
    "build_app": "deployment",
    "serve_forever": "deployment",
    "start": "deployment",
    "stop": "deployment",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gliner_onnx.ray' has no attribute {name!r}")
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"gliner_onnx.ray.{name} needs Ray: pip install 'gliner-onnx[ray]' (ray[serve,data])"
        ) from e
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "ServeConfig",
    "annotate",
    "annotate_files",
    "build_app",
    "read_corpus",
    "serve_forever",
    "start",
    "stop",
]
