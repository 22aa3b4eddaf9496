"""The Presidio recognizer (`gliner_onnx.presidio`) in a real AnalyzerEngine and AnonymizerEngine.

The NLP engine is a blank spaCy pipeline saved to disk (no downloaded spaCy model). Results must
be the runtime's own `inference` on the same texts, labels mapped to Presidio entities.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("presidio_analyzer")
pytest.importorskip("presidio_anonymizer")

import spacy
import yaml
from presidio_analyzer import AnalyzerEngine, AnalyzerEngineProvider, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngineProvider
from presidio_anonymizer import AnonymizerEngine

from gliner_onnx import GLiNER
from gliner_onnx.presidio import (
    DEFAULT_ENTITY_MAPPING,
    GlinerOnnxRecognizer,
    RecognizerConfigError,
)

from .conftest import TEXTS, Checkpoint

MAPPING = {
    "person": "PERSON",
    "location": "LOCATION",
    "organization": "ORGANIZATION",
    "email": "EMAIL_ADDRESS",
}
THRESHOLD = 0.3
PII_TEXT = "Angela Merkel wrote to jane.doe@example.com from Paris about the Acme Corp merger."
Row = tuple[int, int, str, float]


@pytest.fixture(scope="module")
def export(uni_deberta: Checkpoint) -> str:
    return str(uni_deberta.export_dir)


@pytest.fixture(scope="module")
def runtime(export: str) -> GLiNER:
    return GLiNER.from_pretrained(export)


@pytest.fixture(scope="module")
def nlp_conf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("blank-en") / "pipeline"
    spacy.blank("en").to_disk(path)
    return {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": str(path)}]}


@pytest.fixture(scope="module")
def recognizer(export: str) -> GlinerOnnxRecognizer:
    return GlinerOnnxRecognizer(model=export, entity_mapping=MAPPING, threshold=THRESHOLD)


@pytest.fixture(scope="module")
def analyzer(nlp_conf: dict[str, Any], recognizer: GlinerOnnxRecognizer) -> AnalyzerEngine:
    nlp_engine = NlpEngineProvider(nlp_configuration=nlp_conf).create_engine()
    return AnalyzerEngine(nlp_engine=nlp_engine, registry=RecognizerRegistry(recognizers=[recognizer]))


def _expected(runtime: GLiNER, texts: list[str], mapping: dict[str, str], **kw: Any) -> list[list[Row]]:
    found = runtime.inference(texts, list(mapping), **{"threshold": THRESHOLD, **kw})
    return [sorted((e["start"], e["end"], mapping[e["label"]], e["score"]) for e in ents) for ents in found]


def _rows(results: list[Any]) -> list[Row]:
    return sorted((r.start, r.end, r.entity_type, r.score) for r in results)


def _assert_same(got: list[Row], want: list[Row]) -> None:
    assert [g[:3] for g in got] == [w[:3] for w in want]
    for g, w in zip(got, want):
        assert g[3] == pytest.approx(w[3], abs=1e-5)


def test_analyzer_results_equal_runtime_inference(analyzer: AnalyzerEngine, runtime: GLiNER) -> None:
    texts = [*TEXTS, PII_TEXT]
    total = 0
    for text, want in zip(texts, _expected(runtime, texts, MAPPING)):
        results = analyzer.analyze(text, language="en", return_decision_process=True)
        _assert_same(_rows(results), want)
        for r in results:
            assert r.analysis_explanation.recognizer == "GlinerOnnxRecognizer"
            assert r.analysis_explanation.original_score == r.score
            assert r.recognition_metadata["recognizer_name"] == "GlinerOnnxRecognizer"
        total += len(results)
    assert total > 10


def test_requested_entities_filter_results_and_become_labels(
    recognizer: GlinerOnnxRecognizer, analyzer: AnalyzerEngine, runtime: GLiNER
) -> None:
    results = analyzer.analyze(PII_TEXT, language="en", entities=["PERSON"])
    want = [r for r in _expected(runtime, [PII_TEXT], MAPPING)[0] if r[2] == "PERSON"]
    _assert_same(_rows(results), want)
    # An entity no label maps to is sent to the model as a label itself (Presidio's convention).
    assert recognizer.input_labels(["PERSON", "IBAN_CODE"]) == [*MAPPING, "IBAN_CODE"]
    direct = recognizer.analyze(PII_TEXT, ["PERSON", "IBAN_CODE"])
    labels = [*MAPPING, "IBAN_CODE"]
    want_direct = [
        (e["start"], e["end"], MAPPING.get(e["label"], e["label"]), e["score"])
        for e in runtime.inference([PII_TEXT], labels, threshold=THRESHOLD)[0]
        if MAPPING.get(e["label"], e["label"]) in ("PERSON", "IBAN_CODE")
    ]
    _assert_same(_rows(direct), sorted(want_direct))


def test_analyze_batch_equals_analyze(recognizer: GlinerOnnxRecognizer) -> None:
    entities = sorted(set(MAPPING.values()))
    batch = recognizer.analyze_batch(TEXTS, entities)
    assert [_rows(b) for b in batch] == [_rows(recognizer.analyze(t, entities)) for t in TEXTS]


def test_anonymize(analyzer: AnalyzerEngine, runtime: GLiNER) -> None:
    results = analyzer.analyze(PII_TEXT, language="en")
    anonymized = AnonymizerEngine().anonymize(text=PII_TEXT, analyzer_results=results)
    rows = _expected(runtime, [PII_TEXT], MAPPING)[0]
    assert len(rows) > 2  # flat entities do not overlap: each is replaced by <ENTITY_TYPE>,
    merged: list[list[Any]] = []  # after the anonymizer's merge of same-type neighbours
    for start, end, entity, _score in rows:  # separated by spaces only
        if merged and merged[-1][2] == entity and re.fullmatch(" +", PII_TEXT[merged[-1][1] : start]):
            merged[-1][1] = end
        else:
            merged.append([start, end, entity])
    expected = PII_TEXT
    for start, end, entity in reversed(merged):
        expected = expected[:start] + f"<{entity}>" + expected[end:]
    assert anonymized.text == expected
    assert [i.entity_type for i in anonymized.items] != []


def test_nested_and_multi_label(export: str, runtime: GLiNER) -> None:
    rec = GlinerOnnxRecognizer(
        model=export, entity_mapping=MAPPING, threshold=THRESHOLD, flat_ner=False, multi_label=True
    )
    got = [_rows(r) for r in rec.analyze_batch(TEXTS[:3], sorted(set(MAPPING.values())))]
    want = _expected(runtime, TEXTS[:3], MAPPING, flat_ner=False, multi_label=True)
    for g, w in zip(got, want):
        _assert_same(g, w)
    assert sum(len(w) for w in want) > sum(len(w) for w in _expected(runtime, TEXTS[:3], MAPPING))


def test_entity_mapping_conventions(export: str) -> None:
    default = GlinerOnnxRecognizer(model=export)
    assert default.model_to_presidio_entity_mapping == DEFAULT_ENTITY_MAPPING
    assert default.model_to_presidio_entity_mapping["email"] == "EMAIL_ADDRESS"
    assert default.supported_entities == sorted(set(DEFAULT_ENTITY_MAPPING.values()))
    same = GlinerOnnxRecognizer(model_name=export, supported_entities=["PERSON", "LOCATION"])
    assert same.model_to_presidio_entity_mapping == {"PERSON": "PERSON", "LOCATION": "LOCATION"}
    with pytest.raises(RecognizerConfigError, match="cannot be used together"):
        GlinerOnnxRecognizer(model=export, supported_entities=["PERSON"], entity_mapping=MAPPING)
    with pytest.raises(RecognizerConfigError, match="needs `model`"):
        GlinerOnnxRecognizer()
    with pytest.raises(ValueError, match="threshold"):
        GlinerOnnxRecognizer(model=export, threshold=2.0)


def test_loads_from_presidio_yaml(
    tmp_path: Path, export: str, nlp_conf: dict[str, Any], runtime: GLiNER
) -> None:
    conf = {
        "supported_languages": ["en"],
        "nlp_configuration": nlp_conf,
        "recognizer_registry": {
            "supported_languages": ["en"],
            "recognizers": [
                {
                    "name": "GlinerOnnxRecognizer",
                    "type": "predefined",
                    "model": export,
                    "threshold": 0.4,
                    "entity_mapping": MAPPING,
                },
                {"name": "CreditCardRecognizer", "type": "predefined"},
            ],
        },
    }
    # sort_keys=False: the label order is the prompt's (a uni-encoder's scores depend on it)
    (tmp_path / "analyzer.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
    engine = AnalyzerEngineProvider(analyzer_engine_conf_file=str(tmp_path / "analyzer.yaml")).create_engine()
    ours = [r for r in engine.registry.recognizers if isinstance(r, GlinerOnnxRecognizer)]
    assert len(ours) == 1
    assert (ours[0].model_name, ours[0].threshold) == (export, 0.4)
    assert list(ours[0].model_to_presidio_entity_mapping.items()) == list(MAPPING.items())
    text = PII_TEXT + " Card 4111 1111 1111 1111."
    results = engine.analyze(text, language="en", entities=sorted(set(MAPPING.values())))
    # The credit card recognizer's entity is not requested; ours answer as the runtime does.
    _assert_same(_rows(results), _expected(runtime, [text], MAPPING, threshold=0.4)[0])
    cards = engine.analyze(text, language="en", entities=["CREDIT_CARD"])
    assert [text[r.start : r.end] for r in cards] == ["4111 1111 1111 1111"]


def test_equals_presidios_own_gliner_recognizer(uni_deberta: Checkpoint, export: str) -> None:
    """Presidio's GLiNERRecognizer runs gliner torch on the checkpoint; ours its export."""
    from presidio_analyzer.predefined_recognizers import GLiNERRecognizer

    theirs = GLiNERRecognizer(
        model_name=str(uni_deberta.model_dir), entity_mapping=MAPPING, threshold=THRESHOLD, map_location="cpu"
    )
    ours = GlinerOnnxRecognizer(model=export, entity_mapping=MAPPING, threshold=THRESHOLD)
    entities = sorted(set(MAPPING.values()))
    for text in [*TEXTS, PII_TEXT]:  # each under Presidio's 250-character chunk
        assert len(text) < 250
        _assert_same(_rows(ours.analyze(text, entities)), _rows(theirs.analyze(text, entities)))


def test_import_gliner_onnx_loads_no_presidio() -> None:
    probe = "import gliner_onnx\nfrom gliner_onnx import GLiNER\nimport sys\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    modules = {m.split(".")[0] for m in out.stdout.split()}
    assert "gliner_onnx" in modules
    assert modules.isdisjoint({"presidio_analyzer", "presidio_anonymizer", "spacy"})
