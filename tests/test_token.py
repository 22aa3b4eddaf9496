"""Token-level models: entities are not limited by max_width and keep exact offsets."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from gliner_onnx import GLiNER
from gliner_onnx.runtime.planning import plan_text

from .conftest import Checkpoint

SENTENCE = (
    "In the spring of 1903, after years of painstaking work in a converted shed on the rue Lhomond, "
    "Marie and Pierre Curie finally isolated enough radium chloride to determine its atomic weight."
)


def test_whole_sentence_entity_comes_out_whole(
    uni_token_minilm: Checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scorer says: one entity of label 1 from the first word to the last but one."""
    model = GLiNER.from_pretrained(uni_token_minilm.export_dir)
    assert model.manifest.max_width == 12
    text = f"{SENTENCE} Then they rested."
    scorer = model.context.runner.session("scorer")
    words = plan_text(model.context, text, _labels(["event", "quote"]), 384, 24).context.num_words
    last = words - 6  # "weight": the words end with weight . Then they rested .

    def fake_run(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        (real,) = original(feeds)
        probs = np.full(real.shape, 0.1, dtype=np.float32)  # (B, W, C, 3)
        probs[0, :, 1, 2] = 0.9  # inside everywhere for label "quote"
        probs[0, 0, 1, 0] = 0.8  # a start at the first word
        probs[0, last, 1, 1] = 0.7  # an end at "weight"
        return [probs]

    original = scorer.run
    monkeypatch.setattr(scorer, "run", fake_run)
    (entity,) = model.predict_entities(text, ["event", "quote"], threshold=0.5)
    assert last + 1 > 2 * model.manifest.max_width  # far wider than any span model allows
    assert entity["label"] == "quote"
    assert entity["start"] == 0 and entity["end"] == text.index(" weight.") + len(" weight")
    assert entity["text"] == text[entity["start"] : entity["end"]] == SENTENCE[:-1]
    assert entity["score"] == pytest.approx(0.7)  # min(start, end, inside...)


def _labels(labels: list[str]):  # type: ignore[no-untyped-def]
    from gliner_onnx.runtime.labels import normalize_label_set

    return normalize_label_set(labels)
