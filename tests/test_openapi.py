"""GET /openapi.json: the document validates (openapi-spec-validator), lists every route the app
answers, its request schemas accept exactly what `wire`'s checks accept (both come from the same
field declarations), and a request built from it is answered with an answer it describes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from gliner_onnx.serve.limits import Limits
from gliner_onnx.serve.openapi import ANSWER_SCHEMAS, Spec, document
from gliner_onnx.serve.wire import RequestError, parse_requests, request_schemas

from .test_ray_wire import BAD_BODIES as WIRE_BAD_BODIES
from .test_serve import BAD_BODIES as SERVE_BAD_BODIES
from .test_serve import Server, get, post, start_server

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

SMALL = Limits(max_text_chars=12, max_labels=3, max_texts=2)


def validator(schemas: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator of components/schemas/`name`, its $refs resolved in `schemas`."""
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}})


def checks_accept(payload: Any, limits: Limits, relex: bool) -> bool:
    try:
        parse_requests(payload, relex=relex, limits=limits)
    except RequestError:
        return False
    return True


def _agree(payload: Any, limits: Limits, relex: bool) -> bool:
    schema_ok = validator(request_schemas(limits, relex=relex), "Request").is_valid(payload)
    assert schema_ok == checks_accept(payload, limits, relex), (payload, relex)
    return schema_ok


GOOD = [
    {"text": "Paris", "labels": ["city"]},
    {"text": "", "labels": {"city": "a city", "person": "a person"}, "threshold": 0, "flat_ner": False},
    {"texts": ["a", "b"], "labels": ["x", "x", "y"], "multi_label": True, "threshold": None},
    {"text": "Paris", "labels": ["city"], "relations": [], "adapter_id": None, "unknown": [1, 2]},
    {"text": "Paris", "labels": ["city"], "relation_threshold": 1},
]
WRONG = [
    {"text": "x" * 13, "labels": ["city"]},
    {"texts": ["a", "b", "c"], "labels": ["city"]},
    {"texts": ["a", "x" * 13], "labels": ["city"]},
    {"text": "a", "labels": ["a", "b", "c", "d"]},
    {"text": "a", "labels": {"a": "1", "b": "2", "c": "3", "d": "4"}},
    {"text": "a", "labels": {" ": "space"}},
    {"text": "a", "labels": [["a"], ["b"]]},
    {"text": "a", "texts": ["a"], "labels": ["a"]},
    {"text": 5, "texts": ["a"], "labels": ["a"]},
    {"texts": None, "labels": ["a"]},
    {"text": "a", "labels": ["a"], "adapter_id": "lora-1"},
    {"text": "a", "labels": None},
    [],
    "text",
]


@pytest.mark.parametrize("relex", [False, True])
def test_request_schemas_accept_what_the_checks_accept(relex: bool) -> None:
    cases = [json.loads(b) for b, _f in WIRE_BAD_BODIES + SERVE_BAD_BODIES if _decodable(b)]
    for payload in GOOD + WRONG + cases:
        _agree(payload, SMALL, relex)
    relations = {"text": "a", "labels": ["a"], "relations": ["born in", "born in"]}
    assert checks_accept(relations, SMALL, relex) == relex
    _agree(relations, SMALL, relex)
    _agree({**relations, "relations": ["born in", "  "]}, SMALL, relex)


def _decodable(body: bytes) -> bool:
    """JSON that both sides can see: not broken, no NaN (JSON has none), no lone surrogate."""
    try:
        value = json.loads(body)
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError):
        return False
    return True


def test_request_schemas_agree_with_the_checks_on_generated_payloads() -> None:
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st

    names = st.text(max_size=4)
    values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-2, 3),
        st.floats(-0.5, 1.5, allow_nan=False),
        st.text(max_size=14),
        st.lists(names, max_size=4),
        st.lists(st.lists(names, max_size=2), max_size=2),
        st.dictionaries(names, names, max_size=4),
    )
    keys = st.sampled_from(
        [
            *("text", "texts", "labels", "threshold", "relation_threshold", "flat_ner", "multi_label"),
            *("relations", "adapter_id", "other"),
        ]
    )
    labels = st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=3)
    good = st.one_of(
        st.fixed_dictionaries({"text": st.text(max_size=12), "labels": labels}),
        st.fixed_dictionaries(
            {"texts": st.lists(st.text(max_size=12), min_size=1, max_size=2), "labels": labels}
        ),
    )
    changed = st.builds(
        lambda base, extra: {**base, **extra}, good, st.dictionaries(keys, values, max_size=2)
    )
    payloads = st.one_of(good, changed)
    seen = {True: 0, False: 0}

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(payloads, st.booleans())
    def check(payload: dict[str, Any], relex: bool) -> None:
        labels = payload.get("labels")
        # A schema cannot say that descriptions must be unique (a documented gap).
        assume(not (isinstance(labels, dict) and len(set(labels.values())) < len(labels)))
        seen[_agree(payload, SMALL, relex)] += 1

    check()
    assert min(seen.values()) >= 40, seen  # both verdicts were compared, many times


def _routes(app: Any) -> set[tuple[str, str]]:
    return {(r.path, m) for r in app.routes for m in r.methods if m != "HEAD"}


@pytest.mark.parametrize(
    ("prefix", "ui", "key", "relex"),
    [("/gliner", True, False, False), ("/gliner", False, True, True), ("", True, True, False)],
)
def test_document_validates_and_describes_every_route(prefix: str, ui: bool, key: bool, relex: bool) -> None:
    from gliner_onnx.serve.app import AppSettings, build_app

    settings = AppSettings("unused", route_prefix=prefix, ui=ui, api_key="k" if key else None)
    app = build_app(settings)  # routes only: the model loads in the lifespan, not run here
    routes = [(r.path, m, r.name) for r in app.routes for m in r.methods]
    doc = document(Spec(settings.limits, key, relex, "uniencoder_span", "0.1.0"), routes)
    validate(doc)
    described = {(path, m.upper()) for path, ops in doc["paths"].items() for m in ops}
    assert described == _routes(app)
    assert (("/", "GET") in described) == ui
    predict = doc["paths"][prefix or "/"]["post"]
    assert ("401" in predict["responses"]) == key and ("security" in predict) == key
    props = doc["components"]["schemas"]["EntityRequest"]["properties"]
    assert props["text"]["maxLength"] == settings.limits.max_text_chars
    assert ("items" in props["relations"]) == relex
    with pytest.raises(KeyError, match="no OpenAPI description"):
        document(Spec(settings.limits, key, relex, None, "0"), [*routes, ("/new", "GET", "new_route")])


@pytest.fixture(scope="module")
def server(demo_span_export: Path) -> Iterator[Server]:
    s = start_server(
        demo_span_export, "--max-text-chars", "3000", "--max-labels", "6", "--max-body-bytes", "65536"
    )
    yield s
    assert s.stop() == 0, "".join(s.lines)


def test_served_document_is_answered_as_it_says(server: Server) -> None:
    status, raw, headers = get(f"{server.url}/openapi.json")
    assert status == 200 and headers["content-type"] == "application/json"
    doc = json.loads(raw)
    validate(doc)
    schemas = doc["components"]["schemas"]
    assert schemas["EntityRequest"]["properties"]["text"]["maxLength"] == 3000
    assert schemas["EntityRequest"]["properties"]["labels"]["oneOf"][0]["maxItems"] == 6
    assert set(ANSWER_SCHEMAS) <= set(schemas)
    (predict_path,) = [
        p for p, ops in doc["paths"].items() if ops.get("post", {}).get("operationId") == "predict"
    ]
    assert predict_path == "/gliner"
    for path, ops in doc["paths"].items():  # every GET it lists is answered with a status it lists
        if "get" in ops:
            status, body, headers = get(server.url + path)
            assert str(status) in ops["get"]["responses"], (path, status)
            media = next(iter(ops["get"]["responses"][str(status)]["content"]))
            assert headers["content-type"].startswith(media), (path, headers["content-type"])
            if media == "application/json":
                schema = ops["get"]["responses"][str(status)]["content"][media]["schema"]
                if "$ref" in schema:
                    validator(schemas, schema["$ref"].rsplit("/", 1)[1]).validate(json.loads(body))
    responses = doc["paths"][predict_path]["post"]["responses"]
    for form, answer in (("EntityRequest", "Answer"), ("BatchRequest", "BatchAnswer")):
        (example,) = schemas[form]["examples"]  # a request built from the document
        validator(schemas, "Request").validate(example)
        status, body, _h = post(server.url + predict_path, example)
        assert status == 200
        validator(schemas, answer).validate(body)
        assert body.get("entities") or all(r["entities"] for r in body["results"])
    status, body, _h = post(server.url + predict_path, {"text": "x" * 3001, "labels": ["a"]})
    assert status == 400 and "400" in responses and body["field"] == "text"
    validator(schemas, "Error").validate(body)
    status, body, _h = post(server.url + predict_path, b"{" * 70_000)
    assert status == 413 and "413" in responses
    validator(schemas, "Error").validate(body)


def test_no_ui_serves_no_page_and_documents_none(demo_span_export: Path) -> None:
    s = start_server(demo_span_export, "--no-ui")
    try:
        assert get(f"{s.url}/")[0] == 404
        assert get(f"{s.url}/gliner")[0] == 405  # health is at /health and /gliner/health only
        assert all(get(f"{s.url}{p}")[0] == 200 for p in ("/health", "/gliner/health", "/openapi.json"))
        doc = json.loads(get(f"{s.url}/openapi.json")[1])
        assert "/" not in doc["paths"] and "/gliner" in doc["paths"]
    finally:
        assert s.stop() == 0, "".join(s.lines)
