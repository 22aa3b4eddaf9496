"""GET /openapi.json: the OpenAPI 3.1 document of the routes this app serves.

The paths are the app's own routes, each described by its endpoint's name (`OPERATIONS`): a route
without a description fails `document` (and every test that asks for the document), so the
document cannot miss one. The request schemas are `wire.request_schemas` at the server's limits
and export (relations on relex exports only): the checks that answer 400 are written from the
same field declarations. The answer schemas here are checked against real answers by the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .limits import Limits
from .wire import request_schemas

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _offset(what: str) -> Schema:
    return {"type": "integer", "minimum": 0, "description": f"{what} (Unicode code points, not bytes)"}


_SCORE: Schema = {"type": "number", "minimum": 0, "maximum": 1}
_END = {
    "type": "object",
    "required": ["start", "end", "text", "type", "entity_idx"],
    "properties": {
        "start": _offset("first character"),
        "end": _offset("one past the last character"),
        "text": {"type": "string"},
        "type": {"type": "string", "description": "the entity's label"},
        "entity_idx": {"type": "integer", "minimum": 0, "description": "its index in entities"},
    },
}
ANSWER_SCHEMAS: dict[str, Schema] = {
    "Entity": {
        "type": "object",
        "required": ["start", "end", "text", "label", "score"],
        "properties": {
            "start": _offset("first character"),
            "end": _offset("one past the last character"),
            "text": {"type": "string", "description": "text[start:end]"},
            "label": {"type": "string"},
            "score": _SCORE,
            "generated_labels": {
                "type": "array",
                "items": {"type": "string"},
                "description": "decoder exports: the labels the decoder generated for the span",
            },
        },
    },
    "Relation": {
        "type": "object",
        "required": ["head", "tail", "relation", "score"],
        "properties": {"head": _END, "tail": _END, "relation": {"type": "string"}, "score": _SCORE},
    },
    "Answer": {
        "type": "object",
        "required": ["entities"],
        "properties": {
            "entities": {"type": "array", "items": _ref("Entity")},
            "relations": {
                "type": "array",
                "items": _ref("Relation"),
                "description": "relex exports, when relations were asked for",
            },
        },
    },
    "BatchAnswer": {
        "type": "object",
        "required": ["results"],
        "properties": {"results": {"type": "array", "items": _ref("Answer"), "description": "one per text"}},
    },
    "Error": {
        "type": "object",
        "required": ["error", "field"],
        "properties": {
            "error": {"type": "string", "description": "what is wrong, naming the limit where one was met"},
            "field": {"type": ["string", "null"], "description": "the request field at fault"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "arch", "relex", "providers", "workers", "threads", "spinning", "max_batch"],
        "properties": {
            "status": {"const": "ok"},
            "arch": {"type": ["string", "null"]},
            "relex": {"type": "boolean"},
            "providers": {"type": "array", "items": {"type": "string"}},
            "workers": {"type": "integer"},
            "threads": {"type": "integer"},
            "spinning": {"type": "boolean", "description": "ONNX Runtime threads spin between operators"},
            "max_batch": {"type": "integer"},
        },
    },
    "Ready": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
}


@dataclass(frozen=True)
class Spec:
    """What the document depends on: the server's settings and its export."""

    limits: Limits
    api_key: bool
    relex: bool
    arch: str | None
    version: str
    root_path: str = ""  # where the app is mounted (Ray Serve's route prefix)


def _json(schema: Schema, description: str, headers: Schema | None = None) -> Schema:
    out: Schema = {"description": description, "content": {"application/json": {"schema": schema}}}
    return {**out, "headers": headers} if headers else out


def _error(description: str, headers: Schema | None = None) -> Schema:
    return _json(_ref("Error"), description, headers)


_RETRY = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
_KEY_SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]


def _predict(spec: Spec) -> Schema:
    answers = {"oneOf": [_ref("Answer"), _ref("BatchAnswer")]}
    responses = {
        "200": _json(answers, "Answer (text) or BatchAnswer (texts)"),
        "400": _error("a bad request: `field` names the field, the message the limit"),
        "413": _error(f"the body is over this server's max_body_bytes ({spec.limits.max_body_bytes})"),
        "503": _error("overloaded or shutting down; retry after Retry-After seconds", _RETRY),
        "504": _error(f"no answer within request_timeout_s ({spec.limits.request_timeout_s:g})"),
        "500": _error("the model failed on this request"),
    }
    if spec.api_key:
        responses["401"] = _error("a missing or wrong API key")
    op: Schema = {
        "operationId": "predict",
        "summary": "Find entities" + (" and relations" if spec.relex else ""),
        "description": "gliner 0.2.29's request (`text`), or the batch form (`texts`)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Request")}}},
        "responses": dict(sorted(responses.items())),
    }
    return {**op, "security": _KEY_SECURITY} if spec.api_key else op


def _health(spec: Spec) -> Schema:
    return {
        "summary": "Live: 200 while the process serves",
        "responses": {"200": _json(_ref("Health"), "ok")},
    }


def _ready(spec: Spec) -> Schema:
    return {
        "summary": "Ready: 200 once the model answers, 503 while shutting down",
        "responses": {
            "200": _json(_ref("Ready"), "ready"),
            "503": _json(_ref("Ready"), "not ready", _RETRY),
        },
    }


def _metrics(spec: Spec) -> Schema:
    text = {"text/plain": {"schema": {"type": "string"}}}
    op: Schema = {
        "summary": "Prometheus metrics (text format)",
        "responses": {"200": {"description": "the metrics", "content": text}},
    }
    if spec.api_key:
        op["responses"]["401"] = _error("a missing or wrong API key")
        op["security"] = _KEY_SECURITY
    return op


def _page(spec: Spec) -> Schema:
    html = {"text/html": {"schema": {"type": "string"}}}
    return {
        "summary": "The playground: a page to try the model (off with --no-ui)",
        "responses": {"200": {"description": "the page", "content": html}},
    }


def _openapi(spec: Spec) -> Schema:
    return {
        "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
    }


# Endpoint name (the handler function's name in `app`) -> its operation.
OPERATIONS: dict[str, Callable[[Spec], Schema]] = {
    "predict": _predict,
    "health": _health,
    "ready": _ready,
    "metrics": _metrics,
    "page": _page,
    "openapi": _openapi,
}


def document(spec: Spec, routes: Iterable[tuple[str, str, str]]) -> Schema:
    """The OpenAPI 3.1 document of `routes`: (path, method, endpoint name) each."""
    paths: dict[str, Schema] = {}
    for path, method, name in routes:
        if method == "HEAD":
            continue
        if name not in OPERATIONS:
            raise KeyError(f"route {method} {path} ({name}) has no OpenAPI description in OPERATIONS")
        paths.setdefault(path, {})[method.lower()] = OPERATIONS[name](spec)
    components: Schema = {"schemas": {**request_schemas(spec.limits, relex=spec.relex), **ANSWER_SCHEMAS}}
    if spec.api_key:
        components["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "Bearer": {"type": "http", "scheme": "bearer"},
        }
    what = f"the {spec.arch} export" if spec.arch else "an export"
    doc: Schema = {
        "openapi": "3.1.0",
        "info": {
            "title": "gliner-onnx serve",
            "version": spec.version,
            "description": f"GLiNER named entity recognition with {what} (ONNX Runtime, no torch).",
        },
        "paths": dict(sorted(paths.items())),
        "components": components,
    }
    if spec.root_path:
        doc["servers"] = [{"url": spec.root_path}]
    return doc
