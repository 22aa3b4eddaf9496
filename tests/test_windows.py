"""Long documents: overlapping windows instead of truncation, merged before greedy selection."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from gliner_onnx import GLiNER
from gliner_onnx.runtime.entity_decoding import Candidates, SpanCandidate, greedy_search
from gliner_onnx.runtime.labels import normalize_label_set
from gliner_onnx.runtime.output import entity_dicts
from gliner_onnx.runtime.planning import plan_text
from gliner_onnx.runtime.windows import merge_candidates, owner_window, plan_windows

from .conftest import LABELS, TEXTS, Checkpoint


def test_plan_windows_by_words_and_subwords() -> None:
    assert plan_windows([1] * 10, max_words=4, max_cost=math.inf, overlap=1) == [(0, 4), (3, 7), (6, 10)]
    assert plan_windows([1] * 4, max_words=4, max_cost=math.inf, overlap=1) == [(0, 4)]
    # the subword budget cuts earlier than the word budget
    assert plan_windows([2, 2, 2, 2, 2], max_words=10, max_cost=5, overlap=0) == [(0, 2), (2, 4), (4, 5)]
    # a single word over budget still gets a window, and progress is always made
    assert plan_windows([9, 1], max_words=5, max_cost=3, overlap=2) == [(0, 1), (1, 2)]
    assert plan_windows([], max_words=3, max_cost=3, overlap=1) == []
    with pytest.raises(ValueError, match="max_words"):
        plan_windows([1], max_words=0, max_cost=1, overlap=0)


def test_owner_is_the_window_farthest_from_a_cut() -> None:
    windows = [(0, 10), (6, 16), (12, 20)]
    assert owner_window(0, 1, windows, 20) == 0  # the text's own edge is no cut
    assert owner_window(7, 8, windows, 20) == 0  # margins: w0 right 1, w1 left 1: a tie, the first wins
    assert owner_window(8, 9, windows, 20) == 1  # w0 right margin 0, w1 left 2
    assert owner_window(13, 14, windows, 20) == 1  # w1: left 7 right 1 -> 1; w2: left 1 -> 1; tie -> first
    assert owner_window(18, 19, windows, 20) == 2
    assert owner_window(5, 12, windows, 20) == -1  # in no window


def test_merge_keeps_each_span_once_in_reference_order() -> None:
    windows = [(0, 6), (4, 10)]
    w0 = [(0, 1, 0, 0.9), (4, 5, 1, 0.6), (5, 5, 0, 0.7)]  # local indices
    w1 = [(0, 1, 1, 0.8), (1, 1, 0, 0.75), (3, 4, 0, 0.5)]  # global (4,5), (5,5), (7,8)
    merged = merge_candidates([Candidates.from_list(w) for w in (w0, w1)], windows, 10, "span").to_list()
    # (4, 5): margins w0 right 0, w1 left 0 -> first window; (5, 5): w0 right 0, w1 left 1 -> w1
    assert merged == [(0, 1, 0, 0.9), (4, 5, 1, 0.6), (5, 5, 0, 0.75), (7, 8, 0, 0.5)]


@pytest.fixture(scope="module")
def model(uni_minilm: Checkpoint) -> GLiNER:
    return GLiNER.from_pretrained(uni_minilm.export_dir)


def test_long_document_finds_entities_past_the_first_window_with_offsets(model: GLiNER) -> None:
    text = "\n\n".join(TEXTS[:5] * 30)  # ~1,100 words
    plan = plan_text(model.context, text, normalize_label_set(LABELS), 384, 24)
    assert len(plan.windows) >= 3
    entities = model.predict_entities(text, LABELS, threshold=0.5)
    last_window_start = plan.context.words.starts[plan.windows[-1][0]]
    assert any(e["start"] > last_window_start for e in entities)
    ends = -1
    for e in entities:
        assert text[e["start"] : e["end"]] == e["text"]
        assert e["start"] > ends  # flat: sorted, no overlaps
        ends = e["end"] - 1

    # The same answer composed by hand from each window run on its own substring.
    per_window = []
    for ws, we in plan.windows:
        words = plan.context.words
        sub = text[words.starts[ws] : words.ends[we - 1]]
        sub_plan = plan_text(model.context, sub, normalize_label_set(LABELS), 384, 24)
        assert sub_plan.windows == [(0, we - ws)]
        (found,) = model.pipeline.candidates([sub_plan.window_context((0, we - ws))], 0.5, None)
        assert isinstance(found, Candidates)  # span models keep candidates as arrays
        per_window.append(found)
    merged = merge_candidates(per_window, plan.windows, plan.context.num_words, "span")
    by_hand = entity_dicts(plan.context, greedy_search(merged))
    assert [(e["start"], e["end"], e["label"]) for e in by_hand] == [
        (e["start"], e["end"], e["label"]) for e in entities
    ]


def test_window_and_overlap_are_configurable_and_checked(model: GLiNER) -> None:
    text = " ".join(TEXTS[:3])
    small = model.inference([text], LABELS, threshold=0.5, window=12, overlap=4)[0]
    assert small and all(text[e["start"] : e["end"]] == e["text"] for e in small)
    with pytest.raises(ValueError, match="overlap < window"):
        model.inference([text], LABELS, window=10, overlap=10)
    with pytest.raises(ValueError, match="window"):
        model.inference([text], LABELS, window=0)


def test_twenty_thousand_words_in_bounded_memory(uni_deberta: Checkpoint) -> None:
    model = GLiNER.from_pretrained(uni_deberta.export_dir)
    text = " ".join(TEXTS[:5] * 600)  # ~ 20,000 words
    tracemalloc.start()
    entities = model.inference([text], LABELS, threshold=0.7, batch_size=4)[0]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert entities and entities[-1]["start"] > len(text) * 0.95
    assert peak < 200 * 2**20  # Python-side peak; the encoder sees one batch of windows at a time


def test_too_many_labels_for_the_prompt_budget_is_a_clear_error(model: GLiNER) -> None:
    assert model.context.tokenizers["text"].model_max_length == 512
    labels = [f"very long label number {i} with many words" for i in range(120)]
    with pytest.raises(ValueError, match=r"120 labels do not fit .* at most \d+ of these labels fit"):
        model.predict_entities("Angela Merkel visited Paris.", labels)


def test_token_models_run_in_windows_too(bi_token_deberta_bert: Checkpoint) -> None:
    model = GLiNER.from_pretrained(bi_token_deberta_bert.export_dir)
    text = " ".join(TEXTS[:5] * 3)
    plan = plan_text(model.context, text, normalize_label_set(LABELS), 40, 10)
    assert len(plan.windows) > 3
    entities = model.inference([text], LABELS, threshold=0.5, window=40, overlap=10)[0]
    beyond = plan.context.words.starts[plan.windows[1][1]]
    assert any(e["start"] > beyond for e in entities)
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)


def _merge_one_by_one(
    per_window: list[list[SpanCandidate]], windows: list[tuple[int, int]], num_words: int, family: str
) -> list[SpanCandidate]:
    """The merge rule spelled out one candidate at a time with `owner_window`."""
    merged = []
    for i, (candidates, (ws, _)) in enumerate(zip(per_window, windows)):
        for s, e, c, score in candidates:
            if owner_window(s + ws, e + ws, windows, num_words) == i:
                merged.append((s + ws, e + ws, c, score))
    if family == "span":  # start, then width, then class
        merged.sort(key=lambda x: (x[0], x[1], x[2]))
    else:  # token pairing order: start, then class, then end
        merged.sort(key=lambda x: (x[0], x[2], x[1]))
    return merged


@pytest.mark.parametrize("family", ["span", "token"])
def test_array_merge_equals_the_rule_one_candidate_at_a_time(family: str) -> None:
    rng = np.random.default_rng(3)
    for trial in range(100):
        num_words = int(rng.integers(5, 200))
        windows = plan_windows(
            [1] * num_words, max_words=int(rng.integers(3, 40)), max_cost=1e9, overlap=int(rng.integers(0, 3))
        )
        per_window = []
        for ws, we in windows:
            n = int(rng.integers(0, 40))
            starts = rng.integers(0, we - ws, size=n)
            ends = np.minimum(starts + rng.integers(0, 5, size=n), we - ws - 1)
            classes = rng.integers(0, 4, size=n)
            scores = rng.random(n).astype(np.float32)
            per_window.append(Candidates(starts, ends, classes, scores))
        by_rule = _merge_one_by_one([c.to_list() for c in per_window], windows, num_words, family)
        merged = merge_candidates(per_window, windows, num_words, family)
        assert merged.to_list() == by_rule, f"trial {trial}"  # both sorts are stable
