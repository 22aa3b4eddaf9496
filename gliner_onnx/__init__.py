"""gliner-onnx: GLiNER models as separate ONNX graphs, run without torch.

`from gliner_onnx import GLiNER` gives the runtime (numpy + onnxruntime + tokenizers);
the export side lives in `gliner_onnx.export` and needs the `export` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    ExportError,
    GlinerOnnxError,
    InferenceError,
    ManifestError,
    ParityError,
    ProviderError,
    UnsupportedArchError,
)

__version__ = "0.1.0"

# In a source checkout `runtime/` and `export/` sit beside this folder (the layout shows the two
# stages); an install copies them in as `gliner_onnx.runtime` / `gliner_onnx.export`. From the
# checkout itself or an editable install this folder holds neither: `_checkout` adds one
# `__path__` entry that finds and lists exactly those two (why that and nothing wider: its
# docstring).
_root = Path(__file__).resolve().parent.parent
if not (Path(__file__).parent / "runtime").is_dir() and (_root / "runtime" / "__init__.py").is_file():
    from ._checkout import add_stages

    add_stages(__path__, __name__, _root)

if TYPE_CHECKING:
    from .runtime import GLiNER, SessionOptions


def __getattr__(name: str) -> Any:
    # Lazy so that `import gliner_onnx` (e.g. by the export CLI) does not load onnxruntime.
    if name in ("GLiNER", "SessionOptions", "InferenceParams"):
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'gliner_onnx' has no attribute {name!r}")


__all__ = [
    "ExportError",
    "GLiNER",
    "GlinerOnnxError",
    "InferenceError",
    "ManifestError",
    "ParityError",
    "ProviderError",
    "SessionOptions",
    "UnsupportedArchError",
    "__version__",
]
