"""The spaCy component (`gliner_onnx.spacy_component`) on real spaCy pipelines.

Its entities must be the runtime's own `inference` on the same texts: same character offsets,
labels and scores, every entity either a span or (not aligning with the tokens) on
`doc._.gliner_unaligned`. The tiny DeBERTa export's random heads give many entities at 0.3.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

spacy = pytest.importorskip("spacy")

from spacy.util import filter_spans  # noqa: E402

from gliner_onnx import GLiNER  # noqa: E402
from gliner_onnx.spacy_component import ComponentConfigError, GlinerOnnxComponent  # noqa: E402

from .conftest import LABELS, TEXTS, Checkpoint  # noqa: E402

THRESHOLD = 0.3
# gliner splits "9:45", "3.14" and e-mail addresses into several words, spaCy keeps one token.
MISALIGNED = "Call Dr. Smith at 9:45 on 03.14.2024 or write to jane.doe@example.com (ref A1/B2-C3)."
Row = tuple[int, int, str, float]


def _rows(entities: list[dict[str, Any]]) -> list[Row]:
    return sorted((e["start"], e["end"], e["label"], e["score"]) for e in entities)


def _doc_rows(spans: Any) -> list[Row]:
    return sorted((s.start_char, s.end_char, s.label_, s._.score) for s in spans)


def _assert_same(got: list[Row], want: list[Row]) -> None:
    assert [g[:3] for g in got] == [w[:3] for w in want]
    for g, w in zip(got, want):
        assert g[3] == pytest.approx(w[3], abs=1e-5)


def _unaligned(doc: Any) -> list[Row]:
    return _rows(doc._.gliner_unaligned)


@pytest.fixture(scope="module")
def export(uni_deberta: Checkpoint) -> str:
    return str(uni_deberta.export_dir)


@pytest.fixture(scope="module")
def runtime(export: str) -> GLiNER:
    return GLiNER.from_pretrained(export)


def _nlp(export: str, **config: Any) -> Any:
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_onnx", config={"model": export, "labels": LABELS, "threshold": THRESHOLD, **config})
    return nlp


def test_ents_equal_runtime_inference(export: str, runtime: GLiNER) -> None:
    nlp = _nlp(export)
    texts = [*TEXTS, MISALIGNED]
    want = runtime.inference(texts, LABELS, threshold=THRESHOLD)
    spans = 0
    for doc, entities in zip([nlp(t) for t in texts], want):
        # strict alignment: the spans are the runtime's entities, offsets unchanged
        _assert_same(sorted(_doc_rows(doc.ents) + _unaligned(doc)), _rows(entities))
        spans += len(doc.ents)
    assert spans > 10


def test_pipe_many_docs_batches_through_the_runtime(export: str, runtime: GLiNER) -> None:
    texts = [f"{t} ({i})" for i in range(8) for t in TEXTS]
    nlp = _nlp(export, batch_size=4)
    docs = list(nlp.pipe(texts, batch_size=16))
    want = runtime.inference(texts, LABELS, threshold=THRESHOLD, batch_size=4)
    assert [d.text for d in docs] == texts
    for doc, entities in zip(docs, want):
        _assert_same(sorted(_doc_rows(doc.ents) + _unaligned(doc)), _rows(entities))
    # nlp.pipe and nlp(text) agree
    one = nlp(texts[5])
    assert _doc_rows(one.ents) == _doc_rows(docs[5].ents)


def test_span_style_keeps_nested_entities(export: str, runtime: GLiNER) -> None:
    nlp = _nlp(export, style="span", spans_key="gliner")
    component = nlp.get_pipe("gliner_onnx")
    assert component.flat_ner is False  # gliner-spacy's rule: "span" style is nested
    want = runtime.inference(TEXTS, LABELS, threshold=THRESHOLD, flat_ner=False)
    nested = 0
    for doc, entities in zip(nlp.pipe(TEXTS), want):
        group = doc.spans["gliner"]
        _assert_same(sorted(_doc_rows(group) + _unaligned(doc)), _rows(entities))
        assert group.attrs["scores"] == [s._.score for s in group]
        nested += sum(1 for a in group for b in group if a is not b and a.start <= b.start and b.end <= a.end)
        assert not doc.ents
    assert nested > 0  # the test checks overlapping spans


def test_multi_label_scores_per_label(export: str, runtime: GLiNER) -> None:
    nlp = _nlp(export, style="span", multi_label=True, threshold=0.2)
    want = runtime.inference(TEXTS[:3], LABELS, threshold=0.2, flat_ner=False, multi_label=True)
    shared = 0
    for doc, entities in zip(nlp.pipe(TEXTS[:3]), want):
        group = doc.spans["sc"]
        _assert_same(sorted(_doc_rows(group) + _unaligned(doc)), _rows(entities))
        offsets = [(s.start_char, s.end_char) for s in group]
        shared += len(offsets) - len(set(offsets))
    assert shared > 0  # some span carries several labels, each with its own score


def test_ent_style_applies_spacys_overlap_rule(export: str, runtime: GLiNER) -> None:
    nlp = _nlp(export, flat_ner=False)
    doc = nlp(TEXTS[0])
    entities = runtime.inference([TEXTS[0]], LABELS, threshold=THRESHOLD, flat_ner=False)[0]
    spans = [doc.char_span(e["start"], e["end"], label=e["label"]) for e in entities]
    ranked = sorted((s for s in spans if s is not None), key=lambda s: -s._.score)
    expected = filter_spans(ranked)
    assert len(expected) < len(entities)  # nested entities were removed
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [(s.start, s.end, s.label_) for s in expected]


def test_misaligned_entities_are_counted_logged_once_and_kept(
    export: str, runtime: GLiNER, caplog: pytest.LogCaptureFixture
) -> None:
    nlp = _nlp(export, threshold=0.05)
    component: GlinerOnnxComponent = nlp.get_pipe("gliner_onnx")
    want = runtime.inference([MISALIGNED], LABELS, threshold=0.05)[0]
    with caplog.at_level(logging.WARNING, logger="gliner_onnx.spacy"):
        first, second = nlp(MISALIGNED), nlp(MISALIGNED)
    unaligned = _unaligned(first)
    assert unaligned  # precondition: some entity falls inside a token
    for e in unaligned:
        assert first.char_span(e[0], e[1]) is None
    assert component.unaligned == 2 * len(unaligned)
    assert len([r for r in caplog.records if "did not align" in r.getMessage()]) == 1
    _assert_same(sorted(_doc_rows(first.ents) + unaligned), _rows(want))
    assert _unaligned(second) == unaligned

    # "expand": every entity becomes the tokens around it (overlaps then resolved as doc.ents must)
    expand = _nlp(export, threshold=0.05, alignment_mode="expand")
    doc = expand(MISALIGNED)
    assert doc._.gliner_unaligned == []
    for e in doc.ents:
        assert any(e.start_char <= w["start"] and w["end"] <= e.end_char for w in want)


def test_serialization_round_trip(export: str, tmp_path: Path) -> None:
    labels = {"person": "a human being", "phone number": "a telephone number", "location": "a place"}
    nlp = _nlp(export, labels=labels, style="span", batch_size=3)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.pipe_names == ["gliner_onnx"]
    cfg = loaded.config["components"]["gliner_onnx"]
    assert (cfg["model"], dict(cfg["labels"]), cfg["style"], cfg["batch_size"]) == (export, labels, "span", 3)
    component = loaded.get_pipe("gliner_onnx")
    assert isinstance(component, GlinerOnnxComponent) and component.model_name == export
    for a, b in zip(nlp.pipe(TEXTS), loaded.pipe(TEXTS)):
        assert _doc_rows(a.spans["sc"]) == _doc_rows(b.spans["sc"])


def test_long_document_needs_no_chunk_size(export: str, runtime: GLiNER) -> None:
    text = " ".join(TEXTS[:4]) * 25  # ~1,400 words: several of the runtime's windows
    doc = _nlp(export)(text)
    want = runtime.inference([text], LABELS, threshold=THRESHOLD)[0]
    assert max(e["end"] for e in want) > len(text) * 0.9  # entities up to the end
    _assert_same(sorted(_doc_rows(doc.ents) + _unaligned(doc)), _rows(want))


def test_gliner_spacy_config_names(export: str, runtime: GLiNER) -> None:
    nlp = spacy.blank("en")
    config = {"gliner_model": export, "labels": LABELS, "style": "span", "threshold": THRESHOLD}
    nlp.add_pipe("gliner_onnx", config={**config, "map_location": "cpu", "chunk_size": 250})
    want = runtime.inference(TEXTS[:2], LABELS, threshold=THRESHOLD, flat_ner=False)
    for doc, entities in zip(nlp.pipe(TEXTS[:2]), want):
        _assert_same(sorted(_doc_rows(doc.spans["sc"]) + _unaligned(doc)), _rows(entities))


def test_bad_configs_are_refused(export: str) -> None:
    nlp = spacy.blank("en")
    with pytest.raises(ComponentConfigError, match="needs `model`"):
        nlp.add_pipe("gliner_onnx", config={"labels": LABELS})
    with pytest.raises(ComponentConfigError, match="needs `labels`"):
        nlp.add_pipe("gliner_onnx", config={"model": export})
    with pytest.raises(ComponentConfigError, match="disagree"):
        nlp.add_pipe("gliner_onnx", config={"model": export, "gliner_model": "other", "labels": LABELS})
    with pytest.raises(ValueError):  # spaCy's config validation: style is "ent" or "span"
        nlp.add_pipe("gliner_onnx", config={"model": export, "labels": LABELS, "style": "spans"})
    with pytest.raises(ValueError, match="threshold"):  # the runtime's check, at construction
        nlp.add_pipe("gliner_onnx", config={"model": export, "labels": LABELS, "threshold": 1.5})
    assert nlp.pipe_names == []


def test_entry_point_names_the_factory() -> None:
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    target = pyproject["project"]["entry-points"]["spacy_factories"]["gliner_onnx"]
    module, attr = target.split(":")
    factory = getattr(importlib.import_module(module), attr)
    registered = spacy.registry.factories.get(spacy.language.Language.get_factory_name("gliner_onnx"))
    assert registered is factory
    assert {"spacy", "presidio"} <= set(pyproject["project"]["optional-dependencies"])


def _probe(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_import_gliner_onnx_loads_neither_spacy_nor_presidio() -> None:
    modules = _top(_probe("import gliner_onnx\nfrom gliner_onnx import GLiNER, errors"))
    assert "onnxruntime" in modules
    assert modules.isdisjoint({"spacy", "thinc", "presidio_analyzer", "presidio_anonymizer"})


# A torch-free environment: torch, transformers and gliner cannot be imported, and gliner-spacy
# (installed beside us here, its factories need gliner) is not installed.
_TORCH_FREE = """
import importlib.abc, importlib.metadata, sys
class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "gliner", "gliner_spacy"):
            raise ImportError(f"No module named {name!r} (torch-free probe)")
        return None
sys.meta_path.insert(0, _Missing())
import catalogue
catalogue.AVAILABLE_ENTRY_POINTS = importlib.metadata.EntryPoints(
    ep for d in importlib.metadata.distributions() for ep in d.entry_points
    if not ep.value.startswith("gliner_spacy")
)
"""


def test_component_runs_torch_free(export: str) -> None:
    code = (
        _TORCH_FREE
        + "import spacy, gliner_onnx.spacy_component\n"
        + "nlp = spacy.blank('en')\n"
        + f"config = {{'model': {export!r}, 'labels': ['person'], 'threshold': 0.0}}\n"
        + "nlp.add_pipe('gliner_onnx', config=config)\n"
        + "assert len(nlp('Angela Merkel visited Paris.').ents) > 0\n"
    )
    modules = _top(_probe(code))
    assert "spacy" in modules and "onnxruntime" in modules
    assert modules.isdisjoint({"torch", "transformers", "gliner", "gliner_spacy"})
