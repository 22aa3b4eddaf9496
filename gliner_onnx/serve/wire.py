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

Each field is declared once (`TEXT`, `TEXTS`, `SHARED`): a `Field` of a kind (`Number`, `Flag`,
`Text`, `Labels`, ...) whose one set of attributes (bounds, default, the `Limits` field that caps
it) both checks a value and writes its JSON Schema. `request_schemas` is what `openapi` publishes,
so the document and the checks cannot drift; what a schema cannot say (a lone surrogate, label
descriptions that repeat) is in its description.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gliner_onnx.errors import GlinerOnnxError
from gliner_onnx.runtime.labels import normalize_label_set, normalize_relations

from .limits import Limits

DEFAULT_THRESHOLD = 0.5
Schema = dict[str, Any]


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


@dataclass(frozen=True)
class Context:
    """What a check and a schema depend on besides the value: the server's limits and export."""

    limits: Limits
    relex: bool


class Kind(Protocol):
    def check(self, name: str, value: Any, ctx: Context) -> Any:
        """The checked value of a present field (None: given as null); `RequestError` if bad."""

    def schema(self, ctx: Context) -> Schema:
        """The JSON Schema (OpenAPI 3.1) of the values `check` accepts."""


# A label or relation label: a string with something besides whitespace (str.strip's and the
# regex's \s are the same Unicode whitespace).
LABEL: Schema = {"type": "string", "pattern": r"\S"}


@dataclass(frozen=True)
class Number:
    """A number in [minimum, maximum]; null or absent: `default`."""

    minimum: float
    maximum: float
    default: float | None

    def check(self, name: str, value: Any, ctx: Context) -> float | None:
        if value is None:
            return self.default
        bounds = f"[{self.minimum:g}, {self.maximum:g}]"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RequestError(name, f"must be a number in {bounds}, got {type(value).__name__}: {value!r}")
        if math.isnan(value) or not self.minimum <= value <= self.maximum:
            raise RequestError(name, f"must be in {bounds}, got {value!r}")
        return float(value)

    def schema(self, ctx: Context) -> Schema:
        s: Schema = {"type": ["number", "null"], "minimum": self.minimum, "maximum": self.maximum}
        return s if self.default is None else {**s, "default": self.default}


@dataclass(frozen=True)
class Flag:
    """true or false; null or absent: `default`."""

    default: bool

    def check(self, name: str, value: Any, ctx: Context) -> bool:
        if value is None:
            return self.default
        if not isinstance(value, bool):
            raise RequestError(name, f"must be true or false, got {type(value).__name__}: {value!r}")
        return value

    def schema(self, ctx: Context) -> Schema:
        return {"type": ["boolean", "null"], "default": self.default}


@dataclass(frozen=True)
class Text:
    """A string of at most `Limits.<limit>` characters (Unicode code points)."""

    limit: str = "max_text_chars"

    def check(self, name: str, value: Any, ctx: Context) -> str:
        if not isinstance(value, str):
            raise RequestError(name, f"must be a string, got {type(value).__name__}: {value!r}"[:200])
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise RequestError(name, f"is not valid Unicode (a lone surrogate at index {e.start})") from None
        most = getattr(ctx.limits, self.limit)
        if len(value) > most:
            raise RequestError(name, f"{len(value)} characters is over this server's {self.limit} ({most})")
        return value

    def schema(self, ctx: Context) -> Schema:
        return {"type": "string", "maxLength": getattr(ctx.limits, self.limit)}


@dataclass(frozen=True)
class Texts:
    """A non-empty list of at most `Limits.<limit>` texts, each an `item`."""

    item: Text = Text()
    limit: str = "max_texts"

    def check(self, name: str, value: Any, ctx: Context) -> list[str]:
        if not isinstance(value, list) or not value:
            raise RequestError(name, f"must be a non-empty list of strings, got {type(value).__name__}")
        most = getattr(ctx.limits, self.limit)
        if len(value) > most:
            raise RequestError(name, f"{len(value)} texts is over this server's {self.limit} ({most})")
        return [self.item.check(f"{name}[{i}]", t, ctx) for i, t in enumerate(value)]

    def schema(self, ctx: Context) -> Schema:
        most = getattr(ctx.limits, self.limit)
        return {"type": "array", "items": self.item.schema(ctx), "minItems": 1, "maxItems": most}


@dataclass(frozen=True)
class Labels:
    """One label set: a list of labels (repeats dropped) or a {name: description} mapping, at
    most `Limits.<limit>` entries. Required: null is refused."""

    limit: str = "max_labels"

    def check(self, name: str, value: Any, ctx: Context) -> tuple[str, ...] | tuple[tuple[str, str], ...]:
        if value is None:
            raise RequestError(name, "is required: a non-empty list of strings")
        if isinstance(value, str) or not isinstance(value, (list, Mapping)):
            raise RequestError(
                name, f"must be a non-empty list of strings or a mapping, got {type(value).__name__}"
            )
        if isinstance(value, list) and any(isinstance(v, (list, Mapping)) for v in value):
            raise RequestError(name, "must be one label set (a list of strings), not one per text")
        most = getattr(ctx.limits, self.limit)
        if len(value) > most:
            raise RequestError(name, f"{len(value)} labels is over this server's {self.limit} ({most})")
        try:
            label_set = normalize_label_set(value)
        except (TypeError, ValueError) as e:
            raise RequestError(name, str(e)) from None
        if isinstance(value, Mapping):
            return tuple(zip(label_set.names, label_set.prompts))
        return label_set.names

    def schema(self, ctx: Context) -> Schema:
        most = getattr(ctx.limits, self.limit)
        names = {"type": "array", "items": LABEL, "minItems": 1, "maxItems": most}
        described = {
            "type": "object",
            "propertyNames": {"pattern": r"\S"},
            "additionalProperties": LABEL,
            "minProperties": 1,
            "maxProperties": most,
            "description": "name -> description (the description is the prompt; each must be unique)",
        }
        return {"oneOf": [names, described]}


@dataclass(frozen=True)
class Relations:
    """Relation labels (repeats dropped), on a relex export; elsewhere only null or []."""

    def check(self, name: str, value: Any, ctx: Context) -> tuple[str, ...]:
        if value is None or value == []:
            return ()
        if not ctx.relex:
            raise RequestError(name, "need a relex export; this server's export finds entities only")
        if not isinstance(value, list) or any(not isinstance(r, str) for r in value):
            raise RequestError(name, f"must be a list of strings, got {value!r}")
        try:
            (found,) = normalize_relations(value, 1)
        except (TypeError, ValueError) as e:
            raise RequestError(name, str(e)) from None
        return found

    def schema(self, ctx: Context) -> Schema:
        if not ctx.relex:
            return {"type": ["array", "null"], "maxItems": 0}
        return {"type": ["array", "null"], "items": LABEL}


@dataclass(frozen=True)
class Unsupported:
    """A field of gliner's format that this server does not serve: only null (or absent)."""

    why: str

    def check(self, name: str, value: Any, ctx: Context) -> None:
        if value is not None:
            raise RequestError(name, self.why)

    def schema(self, ctx: Context) -> Schema:
        return {"type": "null"}


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    description: str
    required: bool = False  # the key must be present (a required field may still refuse null)

    def check(self, payload: Mapping[str, Any], ctx: Context) -> Any:
        return self.kind.check(self.name, payload.get(self.name), ctx)

    def schema(self, ctx: Context) -> Schema:
        return {**self.kind.schema(ctx), "description": self.description}


_UNICODE = "lengths in Unicode code points; a lone surrogate is refused"
TEXT = Field("text", Text(), f"the text to search ({_UNICODE})", required=True)
TEXTS = Field("texts", Texts(), f"the texts to search, one answer each in order ({_UNICODE})", required=True)
# Checked in this order: the first bad one is named.
SHARED = (
    Field(
        "labels",
        Labels(),
        "entity types to find (the model refuses a label holding one of its special tokens)",
        required=True,
    ),
    Field("adapter_id", Unsupported("LoRA adapters are not supported by this server"), "not supported"),
    Field("threshold", Number(0.0, 1.0, DEFAULT_THRESHOLD), "keep entities scoring at least this"),
    Field(
        "relation_threshold",
        Number(0.0, 1.0, None),
        "keep relations scoring at least this (default: threshold); relex exports",
    ),
    Field("flat_ner", Flag(True), "true: no overlapping entities; false: nested ones too"),
    Field("multi_label", Flag(False), "true: a span may carry several labels"),
    Field("relations", Relations(), "relation types to find between the entities (relex exports)"),
)
EXAMPLE = {"labels": ["person", "location"], "threshold": DEFAULT_THRESHOLD}


def request_schemas(limits: Limits | None = None, *, relex: bool = False) -> dict[str, Schema]:
    """The JSON Schemas of both request forms at these limits, as OpenAPI components:
    EntityRequest (`text`), BatchRequest (`texts`) and Request (either)."""
    ctx = Context(limits or Limits(), relex)

    def form(one: Field, other: Field, example: dict[str, Any]) -> Schema:
        fields = (one, *SHARED)
        return {
            "type": "object",
            "properties": {f.name: f.schema(ctx) for f in fields},
            "required": [f.name for f in fields if f.required],
            "not": {"required": [other.name]},
            "examples": [{**example, **EXAMPLE}],
        }

    return {
        "EntityRequest": form(TEXT, TEXTS, {"text": "Angela Merkel visited Paris."}),
        "BatchRequest": form(TEXTS, TEXT, {"texts": ["Angela Merkel visited Paris.", "Marie Curie"]}),
        "Request": {
            "oneOf": [
                {"$ref": "#/components/schemas/EntityRequest"},
                {"$ref": "#/components/schemas/BatchRequest"},
            ]
        },
    }


def parse_requests(
    payload: Any, *, relex: bool = False, limits: Limits | None = None
) -> tuple[bool, list[Request]]:
    """Check a decoded JSON body of either form: (batch form?, one request per text)."""
    ctx = Context(limits or Limits(), relex)
    if not isinstance(payload, Mapping):
        raise RequestError("body", f"must be a JSON object, got {type(payload).__name__}")
    if TEXTS.name in payload:
        if TEXT.name in payload:
            raise RequestError("texts", "give either text (one) or texts (a list), not both")
        texts, batch = TEXTS.check(payload, ctx), True
    elif TEXT.name in payload:
        texts, batch = [TEXT.check(payload, ctx)], False
    else:
        raise RequestError("text", "is required: a string (or texts: a list of strings)")
    v = {f.name: f.check(payload, ctx) for f in SHARED}
    params = Params(
        threshold=v["threshold"],
        flat_ner=v["flat_ner"],
        multi_label=v["multi_label"],
        relation_threshold=v["relation_threshold"] if relex else None,
    )
    return batch, [Request(t, v["labels"], params, v["relations"]) for t in texts]


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
