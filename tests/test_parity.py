"""The runtime returns gliner's entities, offsets and labels, scores within 1e-4.

Checkpoints: random heads on MiniLM, on a tiny DeBERTa-v3 with its own sentencepiece
tokenizer, on a tiny ModernBERT, and bi-encoders with a tiny BERT label encoder (see conftest.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gliner_onnx import GLiNER
from gliner_onnx.archs import ARCH_NAMES
from gliner_onnx.runtime.labels import normalize_label_set
from gliner_onnx.runtime.planning import plan_text

from .conftest import LABELS, TEXTS, Checkpoint

CHECKPOINTS = {
    "uni_minilm": "uniencoder_span",
    "uni_deberta": "uniencoder_span",
    "uni_deberta_generic": "uniencoder_span",  # exported with optimize=False
    "bi_minilm_bert": "biencoder_span",
    "uni_token_minilm": "uniencoder_token",
    "bi_token_deberta_bert": "biencoder_token",
    "uni_modernbert": "uniencoder_span",  # ModernBERT: rotary positions, sliding-window layers
    "bi_modernbert_bert": "biencoder_span",
}
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MODES = ((True, False), (False, False), (True, True), (False, True))  # (flat_ner, multi_label)
SCORE_TOL = 1e-4


def test_every_supported_arch_has_a_parity_checkpoint() -> None:
    from .test_relex import RELEX_CHECKPOINTS  # relex parity: entities and relations

    # tests/test_decoder.py and tests/test_token_decoder.py (generated labels too)
    decoder_tested = {"uniencoder_span_decoder", "uniencoder_token_decoder"}
    assert set(CHECKPOINTS.values()) | set(RELEX_CHECKPOINTS.values()) | decoder_tested == set(ARCH_NAMES)


def _key(entities: list[dict[str, Any]]) -> list[tuple[int, int, str, str]]:
    return [(e["start"], e["end"], e["text"], e["label"]) for e in entities]


def assert_same(ref: list[list[dict[str, Any]]], got: list[list[dict[str, Any]]], where: str) -> int:
    assert len(ref) == len(got), where
    n = 0
    for i, (r, g) in enumerate(zip(ref, got)):
        assert _key(g) == _key(r), f"{where}, text {i}"
        for er, eg in zip(r, g):
            assert set(eg) == {"start", "end", "text", "label", "score"}
            assert isinstance(eg["score"], float)
            assert abs(er["score"] - eg["score"]) <= SCORE_TOL, f"{where}, text {i}: {er} vs {eg}"
        n += len(r)
    return n


@pytest.fixture
def checkpoint(request: pytest.FixtureRequest) -> Checkpoint:
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS), indirect=True)
def test_entities_equal_gliner_across_thresholds_and_modes(checkpoint: Checkpoint) -> None:
    ours = GLiNER.from_pretrained(checkpoint.export_dir)
    assert ours.arch == CHECKPOINTS[checkpoint.name.replace("-", "_")]
    counts = {}
    for threshold in THRESHOLDS:
        for flat_ner, multi_label in MODES:
            kw = dict(threshold=threshold, flat_ner=flat_ner, multi_label=multi_label)
            ref = checkpoint.torch_model.inference(TEXTS, LABELS, **kw)
            got = ours.inference(TEXTS, LABELS, **kw)
            counts[(threshold, flat_ner, multi_label)] = assert_same(ref, got, f"{checkpoint.name} {kw}")
    # The comparison is only meaningful if scores spread over (0, 1): entities at
    # every threshold, fewer at higher ones, and the modes must differ somewhere.
    assert all(n > 0 for n in counts.values()), counts
    assert counts[(0.3, True, False)] > counts[(0.7, True, False)]
    assert counts[(0.5, False, True)] > counts[(0.5, True, False)]


@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS), indirect=True)
def test_label_descriptions_and_per_text_labels_equal_gliner(checkpoint: Checkpoint) -> None:
    ours = GLiNER.from_pretrained(checkpoint.export_dir)
    described = {"person": "human being", "place": "city or country", "org": "company"}
    ref = checkpoint.torch_model.inference(TEXTS[:3], described, threshold=0.4)
    assert assert_same(ref, ours.inference(TEXTS[:3], described, threshold=0.4), "descriptions") > 0
    per_text = [["person", "date"], ["location"], ["organization", "person", "award", "date"]]
    ref = checkpoint.torch_model.inference(TEXTS[:3], per_text, threshold=0.4)
    got = ours.inference(TEXTS[:3], per_text, threshold=0.4)
    assert assert_same(ref, got, "per-text labels") > 0
    for labels, entities in zip(per_text, got):
        assert {e["label"] for e in entities} <= set(labels)


def test_duplicate_labels_are_merged_like_gliner(uni_minilm: Checkpoint) -> None:
    ours = GLiNER.from_pretrained(uni_minilm.export_dir)
    labels = ["person", "location", "person", "date", "location"]
    ref = uni_minilm.torch_model.inference(TEXTS, labels, threshold=0.4)
    assert assert_same(ref, ours.inference(TEXTS, labels, threshold=0.4), "duplicates") > 0


@pytest.mark.parametrize(
    "checkpoint", ["uni_minilm", "bi_minilm_bert", "bi_token_deberta_bert"], indirect=True
)
def test_batch_size_and_single_text_paths_agree(checkpoint: Checkpoint) -> None:
    ours = GLiNER.from_pretrained(checkpoint.export_dir)
    batched = ours.inference(TEXTS, LABELS, threshold=0.4, batch_size=4)
    one_by_one = [ours.predict_entities(t, LABELS, threshold=0.4) for t in TEXTS]
    assert [_key(b) for b in batched] == [_key(o) for o in one_by_one]
    for b, o in zip(batched, one_by_one):
        assert np.allclose([e["score"] for e in b], [e["score"] for e in o], atol=1e-5)
    assert ours.batch_predict_entities(TEXTS, LABELS, threshold=0.4) == ours.inference(
        TEXTS, LABELS, threshold=0.4
    )


@pytest.mark.parametrize("checkpoint", ["uni_deberta", "uni_token_minilm"], indirect=True)
def test_offsets_index_the_original_text(checkpoint: Checkpoint) -> None:
    ours = GLiNER.from_pretrained(checkpoint.export_dir)
    for text, entities in zip(TEXTS, ours.inference(TEXTS, LABELS, threshold=0.3, flat_ner=False)):
        for e in entities:
            assert text[e["start"] : e["end"]] == e["text"]
            assert 0.3 < e["score"] <= 1.0


def test_long_text_first_window_agrees_with_gliner(uni_minilm: Checkpoint) -> None:
    """gliner truncates at max_len words; our first window is those same words, so entities
    well inside it are gliner's, and ours go on past the cut where gliner finds nothing."""
    ours = GLiNER.from_pretrained(uni_minilm.export_dir)
    long_text = " ".join(TEXTS[:5] * 12)  # ~ 450 words > max_len 384
    starts = plan_text(ours.context, long_text, normalize_label_set(LABELS), 384, 24).context.words.starts
    assert len(starts) > 400
    cut, truncated = starts[300], starts[384]
    ref = uni_minilm.torch_model.inference([long_text], LABELS, threshold=0.5)[0]
    got = ours.inference([long_text], LABELS, threshold=0.5)[0]
    assert max(e["end"] for e in ref) <= truncated  # gliner dropped the words past max_len
    assert max(e["start"] for e in got) >= truncated  # we did not
    early = assert_same(
        [[e for e in ref if e["end"] < cut]], [[e for e in got if e["end"] < cut]], "window 0"
    )
    assert early > 10
