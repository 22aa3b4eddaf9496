"""The export stage (torch side): `gliner-export` and `export_model`.

Needs the `export` extra (torch, transformers, onnx, gliner). The runtime never imports it.
"""

from .detect import detect_arch
from .exporter import ExportReport, export_model, load_gliner

__all__ = ["ExportReport", "detect_arch", "export_model", "load_gliner"]
