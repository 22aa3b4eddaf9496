"""The HTTP wire format of gliner 0.2.29's Ray Serve deployment, parsed and checked.

A request is a JSON object: `text` (string), `labels` (a non-empty list of strings or a
{name: description} mapping), and optionally `threshold` (in [0, 1], default 0.5),
`flat_ner` (default true), `multi_label` (default false), `relations` (relation labels,
relex exports) and `relation_threshold` (in [0, 1], default: threshold). The answer is
{"entities": [...]}, plus "relations" for relex exports. A bad request raises
`RequestError` naming the field; the server answers it with HTTP 400.

The batch form (ours, not gliner's) has `texts`, a list of strings, instead of `text`, the
other fields shared by every text; its answer is {"results": [answer, ...]}, one single-form
answer per text in order. Both hosts (the embedded server and Ray Serve) parse with this module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gliner_onnx.errors import GlinerOnnxError
from gliner_onnx.runtime.labels import normalize_label_set, normalize_relations

from .limits import Limits

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


def _labels(value: Any, limits: Limits) -> tuple[str, ...] | tuple[tuple[str, str], ...]:
    if value is None:
        raise RequestError("labels", "is required: a non-empty list of strings")
    if isinstance(value, str) or not isinstance(value, (list, Mapping)):
        raise RequestError(
            "labels", f"must be a non-empty list of strings or a mapping, got {type(value).__name__}"
        )
    if isinstance(value, list) and any(isinstance(v, (list, Mapping)) for v in value):
        raise RequestError("labels", "must be one label set (a list of strings), not one per text")
    if len(value) > limits.max_labels:
        raise RequestError(
            "labels", f"{len(value)} labels is over this server's max_labels ({limits.max_labels})"
        )
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


def _text(value: Any, name: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise RequestError(name, f"must be a string, got {type(value).__name__}: {value!r}"[:200])
    _unicode(value, name)
    if len(value) > limits.max_text_chars:
        raise RequestError(
            name, f"{len(value)} characters is over this server's max_text_chars ({limits.max_text_chars})"
        )
    return value


def _texts(payload: Mapping[str, Any], limits: Limits) -> list[str]:
    if "text" in payload:
        raise RequestError("texts", "give either text (one) or texts (a list), not both")
    value = payload["texts"]
    if not isinstance(value, list) or not value:
        raise RequestError("texts", f"must be a non-empty list of strings, got {type(value).__name__}")
    if len(value) > limits.max_texts:
        raise RequestError(
            "texts", f"{len(value)} texts is over this server's max_texts ({limits.max_texts})"
        )
    return [_text(t, f"texts[{i}]", limits) for i, t in enumerate(value)]


def _shared(payload: Mapping[str, Any], relex: bool, limits: Limits) -> tuple[Any, Params, tuple[str, ...]]:
    """What every text of a request shares: labels, decoding parameters, relation labels."""
    labels = _labels(payload.get("labels"), limits)
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
    return labels, params, _relations(payload.get("relations"), relex)


def parse_requests(
    payload: Any, *, relex: bool = False, limits: Limits | None = None
) -> tuple[bool, list[Request]]:
    """Check a decoded JSON body of either form: (batch form?, one request per text)."""
    limits = limits or Limits()
    if not isinstance(payload, Mapping):
        raise RequestError("body", f"must be a JSON object, got {type(payload).__name__}")
    if "texts" in payload:
        texts, batch = _texts(payload, limits), True
    elif "text" in payload:
        texts, batch = [_text(payload["text"], "text", limits)], False
    else:
        raise RequestError("text", "is required: a string (or texts: a list of strings)")
    labels, params, relations = _shared(payload, relex, limits)
    return batch, [Request(t, labels, params, relations) for t in texts]


def parse_request(payload: Any, *, relex: bool = False, limits: Limits | None = None) -> Request:
    """Check a decoded single-form JSON body; raise `RequestError` naming the first bad field."""
    batch, requests = parse_requests(payload, relex=relex, limits=limits)
    if batch:
        raise RequestError("texts", "one text expected here (the batch form is for HTTP)")
    return requests[0]


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:  # bad UTF-8, bad JSON, over-long ints, deep nesting
        raise RequestError("body", f"is not valid JSON: {e}"[:300]) from None


def parse_body(body: bytes, *, relex: bool = False, limits: Limits | None = None) -> Request:
    """Decode and check a single-form HTTP body."""
    return parse_request(decode_json(body), relex=relex, limits=limits)
