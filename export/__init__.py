"""The export stage (torch side): `gliner-export` and `export_model`.

Needs the `export` extra (torch, transformers, onnx, gliner). The runtime never imports it.

The modules here are the fp32 export every arch goes through (`exporter` runs it: `configs`,
`context`, `graph_runs`, the `*wrappers` traced, `tracing`, `validation`, `decoder_export`); the
subpackages are what is done besides: `precision` (int8 / fp16 copies), `ort` (ONNX Runtime's
transformer fusion and ORT format) and `demo` (the offline demo checkpoint and its training).
"""

from .detect import detect_arch
from .exporter import ExportReport, export_model, load_gliner

__all__ = ["ExportReport", "detect_arch", "export_model", "load_gliner"]
