"""Which architecture a GLiNER checkpoint is, decided as gliner 0.2.29 decides it.

`model.py::GLiNER._get_gliner_class`: relations_layer -> relex; labels_decoder ->
decoder (labels_encoder ignored); labels_encoder -> bi-encoder; else uni-encoder;
token variants when span_mode == "token_level". `model_type` in saved configs is
often null or wrong and is never trusted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gliner_onnx.archs import find_arch
from gliner_onnx.errors import ExportError, UnsupportedArchError


def _get(config: Any, key: str) -> Any:
    if isinstance(config, Mapping):
        return config.get(key)
    return getattr(config, key, None)


def detect_arch(config: Any) -> str:
    """The `--arch` name of a gliner config (a dict from gliner_config.json or a config object)."""
    if (
        _get(config, "model_type") == "gliner_streaming_span"
        or type(config).__name__ == "StreamingSpanConfig"
    ):
        raise UnsupportedArchError(
            "streaming span checkpoints (model_type 'gliner_streaming_span') are not supported"
        )
    family = "token" if _get(config, "span_mode") == "token_level" else "span"
    if _get(config, "relations_layer") is not None:
        return find_arch("uni", family, "relex").name
    if _get(config, "labels_decoder") is not None:
        return find_arch("uni", family, "decoder").name
    encoder = "bi" if _get(config, "labels_encoder") is not None else "uni"
    return find_arch(encoder, family, "none").name


def read_config(model_dir: str | Path) -> dict[str, Any]:
    """gliner_config.json of a local checkpoint directory."""
    path = Path(model_dir) / "gliner_config.json"
    if not path.is_file():
        raise ExportError(f"{model_dir} is not a GLiNER checkpoint: {path.name} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return data
