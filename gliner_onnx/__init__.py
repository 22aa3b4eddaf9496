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
# stages); an install maps them in as `gliner_onnx.runtime` / `gliner_onnx.export`. When this
# package is imported from the checkout itself (its folder shadows an installed copy whenever the
# repository root is the working directory), the subpackages are found in the checkout too.
_checkout = Path(__file__).resolve().parent.parent
if not (Path(__file__).parent / "runtime").is_dir() and (_checkout / "runtime" / "__init__.py").is_file():
    __path__.append(str(_checkout))

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
