"""The demo checkpoint: trained on synthetic sentences for the four entity archs (the shipped
deltas of export/demo/weights/ merged into gliner's seeded base), random for the others."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gliner_onnx.errors import ExportError

ENTITY_ARCHS = ("uniencoder_span", "biencoder_span", "uniencoder_token", "biencoder_token")
WEIGHTS = Path(__file__).resolve().parents[1] / "export" / "demo" / "weights"
TRAINED = tuple(a for a in ENTITY_ARCHS if (WEIGHTS / f"{a}.safetensors").is_file())


def test_the_main_jobs_demo_is_trained() -> None:
    """The README's main job (biencoder_token) has shipped weights (that the wheel holds them:
    test_install.py::test_wheel_holds_the_runtime_and_export_subpackages)."""
    assert "biencoder_token" in TRAINED


@pytest.mark.parametrize("arch", TRAINED)
def test_trained_demo_finds_the_readme_entities(arch: str) -> None:
    """build_demo merges the shipped weights: the README sentence's person and location, each
    without the full stop, as the training recorded them."""
    from gliner_onnx.export.demo import build_demo

    model = build_demo(arch)
    found = model.predict_entities("Angela Merkel visited Paris.", ["person", "location"], threshold=0.5)
    assert {(e["text"], e["label"]) for e in found} == {("Angela Merkel", "person"), ("Paris", "location")}
    record = json.loads((WEIGHTS / f"{arch}.json").read_text(encoding="utf-8"))
    recorded = {(text, label): score for text, label, score in record["shipped"]["readme"]}
    for e in found:
        assert e["score"] == pytest.approx(recorded[(e["text"], e["label"])], abs=2e-3)


@pytest.mark.parametrize("arch", TRAINED)
def test_shipped_weights_are_small_and_say_what_they_are(arch: str) -> None:
    record = json.loads((WEIGHTS / f"{arch}.json").read_text(encoding="utf-8"))
    assert (WEIGHTS / f"{arch}.safetensors").stat().st_size <= 10.5 * 2**20
    assert "synthetic" in record["what"] and "not a released GLiNER" in record["what"]
    assert record["shipped"]["heldout_f1"] >= 0.9
    assert record["seed"] == 0 and record["steps"] > 0


def test_trained_demo_scores_held_out_synthetic_sentences() -> None:
    """The merged model reproduces the shipped figure on (a slice of) the held-out sentences."""
    from gliner_onnx.export.demo import build_demo, sentences

    model = build_demo("biencoder_token")
    examples = sentences.heldout(40)
    f1 = sentences.gold_f1(lambda t, labels: model.predict_entities(t, labels, threshold=0.5), examples)
    assert f1 >= 0.9


def test_delta_on_another_base_is_an_error() -> None:
    from gliner_onnx.export.demo import WEIGHTS_DIR, build_demo
    from gliner_onnx.export.demo.deltas import load_into

    other = build_demo("biencoder_token", seed=1, logit_scale=1.0, trained=False)
    record = json.loads((WEIGHTS_DIR / "biencoder_token.json").read_text(encoding="utf-8"))
    with pytest.raises(ExportError, match="another base"):
        load_into(other, WEIGHTS_DIR / "biencoder_token.safetensors", record["base_fingerprint"])


def test_relex_and_decoder_demos_stay_random_and_say_so() -> None:
    from gliner_onnx.export.demo import DEMO_WARNING, TRAINED_DEMO_WARNING, demo_warning

    for arch in TRAINED:
        assert demo_warning(arch) == TRAINED_DEMO_WARNING
    untrained = [a for a in ENTITY_ARCHS if a not in TRAINED]
    for arch in ["uniencoder_span_relex", "uniencoder_token_relex", "uniencoder_span_decoder", *untrained]:
        assert demo_warning(arch) == DEMO_WARNING and "MEANINGLESS" in DEMO_WARNING
        assert not (WEIGHTS / f"{arch}.safetensors").exists()


def test_generator_is_seeded_and_consistent() -> None:
    """Same seed, same sentences; every gold span lies inside its sentence and has a known label;
    the negatives are absent labels."""
    from gliner_onnx.export.demo import sentences

    a = [sentences.example(random.Random(3)) for _ in range(3)]
    b = [sentences.example(random.Random(3)) for _ in range(3)]
    assert a == b
    for ex in sentences.heldout(200):
        words, ner = ex["tokenized_text"], ex["ner"]
        assert all(0 <= s <= e < len(words) and label in sentences.LABELS for s, e, label in ner)
        assert not set(ex["ner_negatives"]) & {label for _, _, label in ner}
