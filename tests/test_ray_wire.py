"""The Ray Serve deployment's request checks (`wire`) and batching (`batching`): they run without
Ray, so these tests run whether or not the `ray` extra is installed (tests/test_ray.py needs Ray)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from gliner_onnx.serve.batching import run_requests
from gliner_onnx.serve.wire import RequestError, parse_body, parse_request

from .conftest import LABELS, TEXTS, Checkpoint

THRESHOLD = 0.3


def same_entities(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    """Equal spans, texts and labels; scores equal up to batch padding's float noise."""
    key = [(e["start"], e["end"], e["text"], e["label"]) for e in got]
    if key != [(e["start"], e["end"], e["text"], e["label"]) for e in want]:
        return False
    return all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(got, want))


@pytest.fixture(scope="module")
def model(uni_deberta: Checkpoint) -> Any:
    from gliner_onnx import GLiNER

    return GLiNER.from_pretrained(uni_deberta.export_dir)


def test_wire_and_batching_load_no_ray() -> None:
    code = "import sys, gliner_onnx.serve.wire, gliner_onnx.serve.batching; print('ray' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


BAD_BODIES = [
    (b"{not json", "body"),
    (b"[1, 2]", "body"),
    (b'{"labels": ["person"]}', "text"),
    (b'{"text": 42, "labels": ["person"]}', "text"),
    (b'{"text": null, "labels": ["person"]}', "text"),
    (b'{"text": "Paris"}', "labels"),
    (b'{"text": "Paris", "labels": []}', "labels"),
    (b'{"text": "Paris", "labels": "person"}', "labels"),
    (b'{"text": "Paris", "labels": ["person", 3]}', "labels"),
    (b'{"text": "Paris", "labels": ["  "]}', "labels"),
    (b'{"text": "Paris", "labels": {}}', "labels"),
    (b'{"text": "Paris", "labels": ["person"], "threshold": 1.5}', "threshold"),
    (b'{"text": "Paris", "labels": ["person"], "threshold": -0.1}', "threshold"),
    (b'{"text": "Paris", "labels": ["person"], "threshold": NaN}', "threshold"),
    (b'{"text": "Paris", "labels": ["person"], "threshold": "high"}', "threshold"),
    (b'{"text": "Paris", "labels": ["person"], "threshold": true}', "threshold"),
    (b'{"text": "Paris", "labels": ["person"], "flat_ner": "yes"}', "flat_ner"),
    (b'{"text": "Paris", "labels": ["person"], "multi_label": 1}', "multi_label"),
    (b'{"text": "Paris", "labels": ["person"], "relations": ["born in"]}', "relations"),
    (b'{"text": "Paris", "labels": ["person"], "relation_threshold": 2}', "relation_threshold"),
    (b'{"text": "\\ud800", "labels": ["person"]}', "text"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_request_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_body(body)
    assert info.value.field == field
    assert info.value.payload() == {"error": str(info.value), "field": field}
    assert isinstance(info.value, ValueError)


def test_request_defaults_and_label_forms() -> None:
    r = parse_request({"text": "Paris", "labels": ["city", "city", "person"]})
    assert (r.params.threshold, r.params.flat_ner, r.params.multi_label) == (0.5, True, False)
    assert r.label_argument() == ["city", "person"]
    r = parse_request({"text": "", "labels": {"city": "a city"}, "threshold": 0, "flat_ner": False})
    assert r.label_argument() == {"city": "a city"} and r.params.threshold == 0.0
    assert not r.params.flat_ner


def test_batched_requests_equal_in_process_and_one_call_per_params(model: Any) -> None:
    requests = [
        parse_request({"text": t, "labels": LABELS[: 2 + i % 3], "threshold": THRESHOLD})
        for i, t in enumerate(TEXTS)
    ]
    requests.append(parse_request({"text": TEXTS[0], "labels": LABELS, "flat_ner": False, "threshold": 0.2}))
    calls = []
    extract = model.extract  # what batching calls: typed results, one per text

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[0]))
        return extract(*args, **kwargs)

    model.extract = counting
    try:
        answers = run_requests(model, requests)
    finally:
        del model.extract
    assert sorted(calls) == [1, len(TEXTS)]  # one call per parameter set, label sets mixed
    for r, a in zip(requests, answers):
        assert isinstance(a, dict)
        want = model.inference(
            [r.text], r.label_argument(), threshold=r.params.threshold, flat_ner=r.params.flat_ner
        )[0]
        assert same_entities(a["entities"], want)


def test_a_failing_request_fails_alone(model: Any) -> None:
    # Passes the request checks, but the runtime refuses it: a label holding the class token.
    poisoned = parse_request({"text": TEXTS[0], "labels": ["person", model.manifest.ent_token]})
    good = [parse_request({"text": t, "labels": LABELS, "threshold": THRESHOLD}) for t in TEXTS[:3]]
    answers = run_requests(model, [good[0], poisoned, *good[1:]])
    assert isinstance(answers[1], ValueError)
    for r, a in zip(good, [answers[0], *answers[2:]]):
        assert isinstance(a, dict)
        assert same_entities(a["entities"], model.inference([r.text], LABELS, threshold=THRESHOLD)[0])


def test_relex_answers_carry_relations(span_relex_minilm: Checkpoint) -> None:
    from gliner_onnx import GLiNER

    from .conftest import RELATIONS, RELEX_LABELS, RELEX_TEXTS

    relex = GLiNER.from_pretrained(span_relex_minilm.export_dir)
    requests = [
        parse_request(
            {"text": t, "labels": RELEX_LABELS, "relations": RELATIONS, "threshold": 0.3}, relex=True
        )
        for t in RELEX_TEXTS
    ]
    requests.append(parse_request({"text": RELEX_TEXTS[0], "labels": RELEX_LABELS}, relex=True))
    answers = run_requests(relex, requests)
    for r, a in zip(requests, answers):
        assert isinstance(a, dict)
        ents, rels = relex.inference(
            [r.text], RELEX_LABELS, relations=list(r.relations), threshold=r.params.threshold
        )
        assert same_entities(a["entities"], ents[0])
        assert [
            (x["head"]["entity_idx"], x["tail"]["entity_idx"], x["relation"]) for x in a["relations"]
        ] == [(x["head"]["entity_idx"], x["tail"]["entity_idx"], x["relation"]) for x in rels[0]]
    assert answers[-1]["relations"] == []  # type: ignore[index]
