"""The HTTP wire format of gliner 0.2.29's Ray Serve deployment, parsed and checked.

A request is a JSON object: `text` (string), `labels` (a non-empty list of strings or a
{name: description} mapping), and optionally `threshold` (in [0, 1], default 0.5),
`flat_ner` (default true), `multi_label` (default false), `relations` (relation labels,
relex exports) and `relation_threshold` (in [0, 1], default: threshold). The answer is
{"entities": [...]}, plus "relations" for relex exports. A bad request raises
`RequestError` naming the field; the server answers it with HTTP 400.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gliner_onnx.errors import GlinerOnnxError
from gliner_onnx.runtime.labels import normalize_label_set, normalize_relations

DEFAULT_THRESHOLD = 0.5


class RequestError(GlinerOnnxError, ValueError):
    """A request body the server cannot run; `field` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(message if message.startswith(field) else f"{field}: {message}")
        self.field = field

    def payload(self) -> dict[str, str]:
        return {"error": str(self), "field": self.field}


@dataclass(frozen=True)
class Params:
    """What a batched runtime call shares: requests are grouped by it."""

    threshold: float = DEFAULT_THRESHOLD
    flat_ner: bool = True
    multi_label: bool = False
    relation_threshold: float | None = None


@dataclass(frozen=True)
class Request:
    """One checked request."""

    text: str
    labels: tuple[str, ...] | tuple[tuple[str, str], ...]  # names, or (name, description) pairs
    params: Params
    relations: tuple[str, ...] = ()

    def label_argument(self) -> list[str] | dict[str, str]:
        """The labels as the runtime takes them."""
        if self.labels and isinstance(self.labels[0], tuple):
            return dict(self.labels)  # type: ignore[arg-type]
        return list(self.labels)  # type: ignore[arg-type]


def _threshold(payload: Mapping[str, Any], name: str, default: float | None) -> float | None:
    value = payload.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(name, f"must be a number in [0, 1], got {type(value).__name__}: {value!r}")
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise RequestError(name, f"must be in [0, 1], got {value!r}")
    return float(value)


def _flag(payload: Mapping[str, Any], name: str, default: bool) -> bool:
    value = payload.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(name, f"must be true or false, got {type(value).__name__}: {value!r}")
    return value


def _unicode(value: str, name: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RequestError(name, f"is not valid Unicode (a lone surrogate at index {e.start})") from None


def _labels(value: Any) -> tuple[str, ...] | tuple[tuple[str, str], ...]:
    if value is None:
        raise RequestError("labels", "is required: a non-empty list of strings")
    if isinstance(value, str) or not isinstance(value, (list, Mapping)):
        raise RequestError(
            "labels", f"must be a non-empty list of strings or a mapping, got {type(value).__name__}"
        )
    if isinstance(value, list) and any(isinstance(v, (list, Mapping)) for v in value):
        raise RequestError("labels", "must be one label set (a list of strings), not one per text")
    try:
        label_set = normalize_label_set(value)
    except (TypeError, ValueError) as e:
        raise RequestError("labels", str(e)) from None
    if isinstance(value, Mapping):
        return tuple(zip(label_set.names, label_set.prompts))
    return label_set.names


def _relations(value: Any, relex: bool) -> tuple[str, ...]:
    if value is None or value == []:
        return ()
    if not relex:
        raise RequestError("relations", "need a relex export; this server's export finds entities only")
    if not isinstance(value, list) or any(not isinstance(r, str) for r in value):
        raise RequestError("relations", f"must be a list of strings, got {value!r}")
    try:
        (found,) = normalize_relations(value, 1)
    except (TypeError, ValueError) as e:
        raise RequestError("relations", str(e)) from None
    return found


def parse_request(payload: Any, *, relex: bool = False) -> Request:
    """Check a decoded JSON body; raise `RequestError` naming the first bad field."""
    if not isinstance(payload, Mapping):
        raise RequestError("body", f"must be a JSON object, got {type(payload).__name__}")
    if "text" not in payload:
        raise RequestError("text", "is required: a string")
    text = payload["text"]
    if not isinstance(text, str):
        raise RequestError("text", f"must be a string, got {type(text).__name__}: {text!r}"[:200])
    _unicode(text, "text")
    labels = _labels(payload.get("labels"))
    if payload.get("adapter_id") is not None:
        raise RequestError("adapter_id", "LoRA adapters are not supported by this server")
    threshold = _threshold(payload, "threshold", DEFAULT_THRESHOLD)
    relation_threshold = _threshold(payload, "relation_threshold", None)
    params = Params(
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        flat_ner=_flag(payload, "flat_ner", True),
        multi_label=_flag(payload, "multi_label", False),
        relation_threshold=relation_threshold if relex else None,
    )
    return Request(text, labels, params, _relations(payload.get("relations"), relex))


def parse_body(body: bytes, *, relex: bool = False) -> Request:
    """Decode and check an HTTP body."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError("body", f"is not valid JSON: {e}") from None
    return parse_request(payload, relex=relex)
