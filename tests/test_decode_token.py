"""Exact-equality tests of ``decode.token_candidates`` / ``decode_tokens`` against gliner 0.2.29.

The reference is gliner's own ``TokenDecoder`` (``gliner/decoding/decoder.py``: ``decode``,
``_get_indices_above_threshold``, ``_calculate_span_score`` and ``BaseDecoder.greedy_search``),
loaded straight from the installed files as ``tests/test_decode.py`` does (no ``gliner/__init__``).

The reference takes logits and applies ``torch.sigmoid`` itself, while ``token_candidates`` takes
probabilities. Two reference copies are used:

* ``REF_PROBS``: a private copy of the ``decoding`` package whose module global ``torch`` is a
  stand-in with an identity ``sigmoid`` (everything else is real torch). The reference code runs
  unchanged on exactly the probabilities we pass, so 0.1-quantized scores keep their ties and
  their exact equality with the thresholds.
* ``REF_LOGITS``: an untouched copy fed logits; ours gets ``torch.sigmoid(logits)``.

Candidate order, scores (Python floats of the array values) and the kept lists are compared
with ``==``.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from gliner_onnx.runtime import entity_decoding as decode

MODES = [(True, False), (True, True), (False, False), (False, True)]
MODE_IDS = ["flat", "flat-multi", "nested", "nested-multi"]
START, END, INSIDE = 0, 1, 2


def _load_reference_decoder(name: str) -> ModuleType:
    """gliner's ``decoding`` package (decoder.py + utils.py) as a standalone package ``name``."""
    if name not in sys.modules:
        gliner_spec = importlib.util.find_spec("gliner")  # locates, does not import
        assert gliner_spec is not None and gliner_spec.origin is not None
        package_dir = Path(gliner_spec.origin).parent / "decoding"
        spec = importlib.util.spec_from_file_location(
            name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[f"{name}.decoder"]


class _IdentitySigmoidTorch:
    """``torch`` for the probability copy of the reference: ``sigmoid`` returns its input."""

    def __getattr__(self, attribute: str) -> Any:
        return getattr(torch, attribute)

    @staticmethod
    def sigmoid(tensor: torch.Tensor) -> torch.Tensor:
        return tensor


REF_LOGITS_MODULE = _load_reference_decoder("_gliner_reference_token_decoding_logits")
REF_PROBS_MODULE = _load_reference_decoder("_gliner_reference_token_decoding_probs")
REF_PROBS_MODULE.torch = _IdentitySigmoidTorch()  # type: ignore[attr-defined]


def _candidates_only(module: ModuleType) -> Any:
    class CandidatesOnly(module.TokenDecoder):  # type: ignore[name-defined,misc]
        """The reference token decoder with greedy selection switched off."""

        def greedy_search(self, spans, flat_ner=True, multi_label=False):
            return spans

    return CandidatesOnly(config=None)


REF_PROBS = REF_PROBS_MODULE.TokenDecoder(config=None)
REF_PROBS_CANDIDATES = _candidates_only(REF_PROBS_MODULE)
REF_LOGITS = REF_LOGITS_MODULE.TokenDecoder(config=None)


def _labels(num_classes: int) -> dict[int, str]:
    return {c + 1: f"label{c}" for c in range(num_classes)}


def _as_tuples(spans: list) -> list[decode.SpanCandidate]:
    return [(s.start, s.end, s.class_index, s.score) for s in spans]


def ref_decode(
    probs: np.ndarray, num_words: int, threshold: float, flat_ner: bool = True, multi_label: bool = False
) -> list[decode.SpanCandidate]:
    """The reference's kept spans for one text, fed probabilities (identity sigmoid)."""
    [spans] = REF_PROBS.decode(
        tokens=[["w"] * num_words],
        id_to_classes=_labels(probs.shape[1]),
        model_output=torch.from_numpy(probs[None]),
        flat_ner=flat_ner,
        threshold=threshold,
        multi_label=multi_label,
    )
    return _as_tuples(spans)


def ref_candidates(probs: np.ndarray, num_words: int, threshold: float) -> list[decode.SpanCandidate]:
    """The reference's candidates for one text, before greedy selection."""
    [spans] = REF_PROBS_CANDIDATES.decode(
        tokens=[["w"] * num_words],
        id_to_classes=_labels(probs.shape[1]),
        model_output=torch.from_numpy(probs[None]),
        threshold=threshold,
    )
    return _as_tuples(spans)


def reference_sigmoid(logits: np.ndarray, text: int, num_words: int, label_counts: list[int]) -> np.ndarray:
    """One text's (words, labels, 3) probabilities computed exactly as ``TokenDecoder.decode`` does.

    torch's sigmoid can differ by an ulp between a contiguous tensor and the strided
    ``permute(3, 0, 1, 2)`` slices the reference applies it to, so the reference's ops are
    replayed here: mask absent label slots to -inf, permute, cut the padding, sigmoid.
    """
    tensor = torch.from_numpy(logits)
    classes = tensor.shape[2]
    if any(count < classes for count in label_counts):
        valid = torch.tensor([[c < count for c in range(classes)] for count in label_counts])
        tensor = tensor.masked_fill(~valid[:, None, :, None], float("-inf"))
    channels = tensor.permute(3, 0, 1, 2)
    probs = np.stack([torch.sigmoid(channels[k][text, :num_words]).numpy() for k in range(3)], axis=-1)
    return probs[:, : label_counts[text]]


def _f32(value: float) -> float:
    return float(np.float32(value))


def random_probs(rng: np.random.Generator, shape: tuple[int, int], quantize: bool) -> np.ndarray:
    """(words, classes, 3) scores: uniform boundaries, inside scores biased high (long runs)."""
    probs = rng.random((*shape, 3), dtype=np.float32)
    probs[..., INSIDE] = 1 - probs[..., INSIDE] ** 2
    if quantize:  # 0.1 steps: many exact ties and scores equal to the threshold
        probs = np.round(probs, 1).astype(np.float32)
    return probs


def random_case(rng: np.random.Generator) -> tuple[np.ndarray, int, float]:
    padded = int(rng.integers(1, 30))
    probs = random_probs(rng, (padded, int(rng.integers(1, 6))), quantize=bool(rng.random() < 0.6))
    num_words = int(rng.integers(0, padded + 1))  # often fewer than the padded length
    threshold = float(rng.choice([0.3, 0.4, 0.5, 0.6, 0.7, rng.uniform(0.3, 0.7)]))
    return probs, num_words, threshold


# --- randomized equality with the reference ------------------------------------------


@pytest.mark.parametrize(("flat_ner", "multi_label"), MODES, ids=MODE_IDS)
def test_random_probs_match_reference(flat_ner: bool, multi_label: bool) -> None:
    rng = np.random.default_rng(2024)
    kept_total = removed_total = long_total = 0
    for _ in range(200):
        probs, num_words, threshold = random_case(rng)
        candidates = decode.token_candidates(probs, num_words, threshold)
        assert candidates == ref_candidates(probs, num_words, threshold)
        kept = decode.greedy_search(candidates, flat_ner=flat_ner, multi_label=multi_label)
        assert kept == ref_decode(probs, num_words, threshold, flat_ner, multi_label)
        assert decode.decode_tokens(probs, num_words, threshold, flat_ner, multi_label) == kept
        kept_total += len(kept)
        removed_total += len(candidates) - len(kept)
        long_total += sum(end - start >= 12 for start, end, _, _ in candidates)
    # The comparison is not vacuous, and spans wider than any span-mode max_width occur.
    assert kept_total > 200 and removed_total > 200 and long_total > 10


def test_random_logits_match_reference_with_real_sigmoid() -> None:
    """The untouched reference on logits; ours on the same float32 ``torch.sigmoid`` values."""
    rng = np.random.default_rng(11)
    kept_total = 0
    for case in range(80):
        padded, classes = int(rng.integers(1, 25)), int(rng.integers(1, 5))
        logits = rng.normal(0.5, 2.0, size=(padded, classes, 3)).astype(np.float32)
        if case % 2:  # 0.5 steps: sigmoid(0) == 0.5 hits a 0.5 threshold exactly, many ties
            logits = (np.round(logits * 2) / 2).astype(np.float32)
        num_words = int(rng.integers(0, padded + 1))
        threshold = float(rng.choice([0.3, 0.5, 0.7, rng.uniform(0.3, 0.7)]))
        probs = reference_sigmoid(logits[None], 0, num_words, [classes])
        for flat_ner, multi_label in MODES:
            [expected] = REF_LOGITS.decode(
                tokens=[["w"] * num_words],
                id_to_classes=_labels(classes),
                model_output=torch.from_numpy(logits[None]),
                flat_ner=flat_ner,
                threshold=threshold,
                multi_label=multi_label,
            )
            got = decode.decode_tokens(probs, num_words, threshold, flat_ner, multi_label)
            assert got == _as_tuples(expected)
            kept_total += len(got)
    assert kept_total > 100


@pytest.mark.parametrize(("flat_ner", "multi_label"), MODES, ids=MODE_IDS)
def test_reference_batch_with_per_text_labels_matches(flat_ner: bool, multi_label: bool) -> None:
    """A padded batch where texts ask for fewer labels (the reference masks those slots to -inf):
    ours on each text's rows and label slots gives the same spans."""
    rng = np.random.default_rng(3)
    kept_total = 0
    for _ in range(20):
        batch, padded, classes = 3, int(rng.integers(2, 20)), 4
        logits = rng.normal(0.5, 2.0, size=(batch, padded, classes, 3)).astype(np.float32)
        lengths = [int(n) for n in rng.integers(1, padded + 1, size=batch)]
        label_counts = [int(n) for n in rng.integers(1, classes + 1, size=batch)]
        threshold = float(rng.uniform(0.3, 0.7))
        expected = REF_LOGITS.decode(
            tokens=[["w"] * n for n in lengths],
            id_to_classes=[_labels(n) for n in label_counts],
            model_output=torch.from_numpy(logits),
            flat_ner=flat_ner,
            threshold=threshold,
            multi_label=multi_label,
        )
        got = [
            decode.decode_tokens(
                reference_sigmoid(logits, b, lengths[b], label_counts),
                lengths[b],
                threshold,
                flat_ner,
                multi_label,
            )
            for b in range(batch)
        ]
        assert got == [_as_tuples(spans) for spans in expected]
        kept_total += sum(map(len, got))
    assert kept_total > 20


# --- pinned regression cases ---------------------------------------------------------


def _one_class(num_words: int, starts: dict[int, float], ends: dict[int, float], inside: float) -> np.ndarray:
    probs = np.zeros((num_words, 1, 3), dtype=np.float32)
    probs[:, 0, INSIDE] = inside
    for word, score in starts.items():
        probs[word, 0, START] = score
    for word, score in ends.items():
        probs[word, 0, END] = score
    return probs


def test_long_entity_comes_out_whole() -> None:
    """No max_width in token mode: a 60-word entity is one span."""
    probs = _one_class(80, {5: 0.9}, {64: 0.8}, inside=0.95)
    expected = [(5, 64, 0, _f32(0.8))]
    for flat_ner, multi_label in MODES:
        assert decode.decode_tokens(probs, 80, 0.5, flat_ner, multi_label) == expected
        assert ref_decode(probs, 80, 0.5, flat_ner, multi_label) == expected


def test_span_score_is_the_minimum_not_the_mean() -> None:
    """Same words, two classes: class 0 has the higher mean, class 1 the higher minimum."""
    probs = np.zeros((3, 2, 3), dtype=np.float32)
    probs[0, 0, START] = probs[2, 0, END] = 0.99
    probs[:, 0, INSIDE] = [0.99, 0.99, 0.6]  # min 0.6, mean of all five scores 0.912
    probs[0, 1, START] = probs[2, 1, END] = 0.8
    probs[:, 1, INSIDE] = 0.8  # min 0.8, mean 0.8
    candidates = [(0, 2, 0, _f32(0.6)), (0, 2, 1, _f32(0.8))]
    assert decode.token_candidates(probs, 3, 0.5) == candidates
    assert ref_candidates(probs, 3, 0.5) == candidates
    expected = [(0, 2, 1, _f32(0.8))]  # a mean would keep class 0
    assert decode.decode_tokens(probs, 3, 0.5) == expected
    assert ref_decode(probs, 3, 0.5) == expected


def test_score_minimum_includes_start_and_end_scores() -> None:
    probs = _one_class(3, {0: 0.55}, {2: 0.9}, inside=0.95)
    assert decode.token_candidates(probs, 3, 0.5) == [(0, 2, 0, _f32(0.55))]
    assert ref_candidates(probs, 3, 0.5) == [(0, 2, 0, _f32(0.55))]


def test_inside_equal_to_threshold_passes_but_boundary_equal_does_not() -> None:
    """Inside: Python float ``<`` rejects, so equality passes; start/end need a strict ``>``."""
    probs = _one_class(4, {0: 0.9, 3: 0.5}, {2: 0.9}, inside=0.9)
    probs[1, 0, INSIDE] = 0.5
    expected = [(0, 2, 0, 0.5)]  # the start at word 3 (== threshold) is not a start
    assert decode.token_candidates(probs, 4, 0.5) == expected
    assert ref_candidates(probs, 4, 0.5) == expected
    probs[1, 0, INSIDE] = np.nextafter(np.float32(0.5), np.float32(0))
    assert decode.token_candidates(probs, 4, 0.5) == []
    assert ref_candidates(probs, 4, 0.5) == []


@pytest.mark.parametrize(("value", "passes"), [(0.3, True), (0.4, True), (0.6, True), (0.7, False)])
def test_inside_at_a_float32_rounded_threshold(value: float, passes: bool) -> None:
    """The inside test is float64: float32(0.3) > 0.3 passes, float32(0.7) < 0.7 fails."""
    probs = _one_class(3, {0: 0.95}, {2: 0.95}, inside=0.95)
    probs[1, 0, INSIDE] = value  # stored as float32(value)
    assert (_f32(value) >= value) is passes
    expected = [(0, 2, 0, _f32(value))] if passes else []
    assert decode.token_candidates(probs, 3, value) == expected
    assert ref_candidates(probs, 3, value) == expected


def test_boundary_at_float32_0_3_is_not_above_threshold_0_3() -> None:
    """Start/end compare in float32: float32(0.3) > float32(0.3) is false."""
    at = np.float32(0.3)
    probs = _one_class(2, {0: float(at), 1: float(np.nextafter(at, np.float32(1)))}, {1: 0.9}, inside=0.9)
    expected = [(1, 1, 0, float(np.nextafter(at, np.float32(1))))]
    assert decode.token_candidates(probs, 2, 0.3) == expected
    assert ref_candidates(probs, 2, 0.3) == expected


def test_inside_failure_cuts_the_spans_through_it() -> None:
    probs = _one_class(6, {0: 0.9, 3: 0.9}, {1: 0.9, 4: 0.9}, inside=0.9)
    probs[2, 0, INSIDE] = 0.1  # word 2 is not inside: (0, 4) is impossible
    expected = [(0, 1, 0, _f32(0.9)), (3, 4, 0, _f32(0.9))]
    assert decode.token_candidates(probs, 6, 0.5) == expected
    assert ref_candidates(probs, 6, 0.5) == expected


def test_inside_below_threshold_at_the_start_word_itself() -> None:
    probs = _one_class(3, {0: 0.9, 1: 0.9}, {2: 0.9}, inside=0.9)
    probs[0, 0, INSIDE] = 0.2
    expected = [(1, 2, 0, _f32(0.9))]
    assert decode.token_candidates(probs, 3, 0.5) == expected
    assert ref_candidates(probs, 3, 0.5) == expected


def test_start_with_no_matching_end() -> None:
    """A start after the last end (and a start whose end lies past an inside gap) pairs with nothing."""
    probs = _one_class(8, {0: 0.9, 5: 0.9}, {2: 0.9}, inside=0.9)
    expected = [(0, 2, 0, _f32(0.9))]
    assert decode.token_candidates(probs, 8, 0.5) == expected
    assert ref_candidates(probs, 8, 0.5) == expected
    for flat_ner, multi_label in MODES:
        assert decode.decode_tokens(probs, 8, 0.5, flat_ner, multi_label) == expected
        assert ref_decode(probs, 8, 0.5, flat_ner, multi_label) == expected


def test_start_and_end_of_different_classes_never_pair() -> None:
    probs = np.zeros((4, 2, 3), dtype=np.float32)
    probs[..., INSIDE] = 0.9
    probs[0, 0, START] = 0.9  # class 0 start
    probs[2, 1, END] = 0.9  # class 1 end
    assert decode.token_candidates(probs, 4, 0.5) == []
    assert ref_candidates(probs, 4, 0.5) == []
    probs[2, 0, END] = 0.7  # the control: a class 0 end makes the pair
    expected = [(0, 2, 0, _f32(0.7))]
    assert decode.token_candidates(probs, 4, 0.5) == expected
    assert ref_candidates(probs, 4, 0.5) == expected


def test_padding_words_never_produce_candidates() -> None:
    probs = np.full((10, 2, 3), 0.99, dtype=np.float32)  # padding rows score high everywhere
    probs[:4] = 0.0
    probs[1, 0, START] = probs[1, 0, INSIDE] = probs[2, 0, INSIDE] = 0.9
    probs[3, 0, INSIDE] = probs[3, 0, END] = 0.9
    expected = [(1, 3, 0, _f32(0.9))]
    assert decode.token_candidates(probs, 4, 0.5) == expected
    assert ref_candidates(probs, 4, 0.5) == expected
    assert decode.token_candidates(probs[:, :, :], 0, 0.5) == []
    # Control: counted as words, the padding rows do produce spans.
    with_padding = decode.token_candidates(probs, 10, 0.5)
    assert with_padding == ref_candidates(probs, 10, 0.5)
    assert any(end >= 4 for _, end, _, _ in with_padding)


def test_candidates_are_ordered_by_start_then_class_then_end() -> None:
    probs = np.zeros((4, 2, 3), dtype=np.float32)
    probs[..., INSIDE] = 0.9
    for word, cls in [(0, 1), (0, 0), (2, 0)]:
        probs[word, cls, START] = 0.9
    for word, cls in [(0, 1), (3, 1), (1, 0), (3, 0)]:
        probs[word, cls, END] = 0.8
    score = _f32(0.8)
    expected = [
        (0, 1, 0, score),
        (0, 3, 0, score),
        (0, 0, 1, score),
        (0, 3, 1, score),
        (2, 3, 0, score),
    ]
    assert decode.token_candidates(probs, 4, 0.5) == expected
    assert ref_candidates(probs, 4, 0.5) == expected


def test_equal_scores_keep_candidate_order_in_greedy() -> None:
    """Ties: the earlier candidate (by start, class, end) wins the overlap."""
    probs = np.zeros((4, 2, 3), dtype=np.float32)
    probs[..., INSIDE] = 0.8
    probs[1, 0, START] = probs[3, 0, END] = 0.8  # class 0: (1, 3)
    probs[0, 1, START] = probs[2, 1, END] = 0.8  # class 1: (0, 2), earlier start
    expected = [(0, 2, 1, _f32(0.8))]
    assert decode.decode_tokens(probs, 4, 0.5) == expected
    assert ref_decode(probs, 4, 0.5) == expected


def test_nested_token_spans_keep_nesting_and_drop_crossing() -> None:
    probs = _one_class(6, {0: 0.9, 1: 0.8}, {3: 0.8, 5: 0.95}, inside=0.99)
    candidates = decode.token_candidates(probs, 6, 0.5)
    assert candidates == ref_candidates(probs, 6, 0.5) and len(candidates) == 4
    # (0, 5) 0.9 first; then the 0.8 ties in candidate order: (0, 3) nests, (1, 3) nests,
    # (1, 5) crosses (0, 3). Same-start spans stay in selection order.
    nested = [(0, 5, 0, _f32(0.9)), (0, 3, 0, _f32(0.8)), (1, 3, 0, _f32(0.8))]
    assert decode.decode_tokens(probs, 6, 0.5, flat_ner=False) == nested
    assert ref_decode(probs, 6, 0.5, flat_ner=False) == nested
    assert decode.decode_tokens(probs, 6, 0.5) == [(0, 5, 0, _f32(0.9))]
    assert ref_decode(probs, 6, 0.5) == [(0, 5, 0, _f32(0.9))]


def _nan_safe(spans: list[decode.SpanCandidate]) -> list[tuple[int, int, int, Any]]:
    return [(s, e, c, "nan" if math.isnan(p) else p) for s, e, c, p in spans]


def test_nan_inside_scores_follow_pythons_min() -> None:
    """NaN is never '< threshold'; min() keeps a NaN only as its first argument (the start word)."""
    probs = _one_class(6, {0: 0.9, 3: 0.9}, {1: 0.9, 4: 0.9}, inside=0.8)
    probs[1, 0, INSIDE] = np.nan  # inside (0, 1) but not first: skipped by min
    probs[3, 0, INSIDE] = np.nan  # the first inside score of (3, 4): the score is NaN
    expected = [(0, 1, 0, _f32(0.8)), (0, 4, 0, _f32(0.8)), (3, 4, 0, "nan")]
    assert _nan_safe(decode.token_candidates(probs, 6, 0.5)) == expected
    assert _nan_safe(ref_candidates(probs, 6, 0.5)) == expected
    for flat_ner, multi_label in MODES:
        got = decode.decode_tokens(probs, 6, 0.5, flat_ner, multi_label)
        assert got and _nan_safe(got) == _nan_safe(ref_decode(probs, 6, 0.5, flat_ner, multi_label))


def test_float16_boundaries_compare_in_float16() -> None:
    probs = np.full((3, 1, 3), 0.9, dtype=np.float16)
    probs[:, 0, START] = [0.3, 0.2999, 0.3003]
    expected = ref_candidates(probs, 3, 0.3)
    assert [start for start, _, _, _ in expected] == [2]
    assert decode.token_candidates(probs, 3, 0.3) == expected


def test_wide_all_positive_text_is_fast_and_complete() -> None:
    """384 words where every word starts, ends and is inside: every span is a candidate."""
    probs = np.full((384, 2, 3), 0.9, dtype=np.float32)
    tick = time.perf_counter()
    candidates = decode.token_candidates(probs, 384, 0.5)
    elapsed = time.perf_counter() - tick
    assert len(candidates) == 2 * 384 * 385 // 2
    assert candidates[0] == (0, 0, 0, _f32(0.9)) and candidates[384] == (0, 0, 1, _f32(0.9))
    assert candidates[383] == (0, 383, 0, _f32(0.9))
    assert elapsed < 2.0
    # All scores tie, so candidate order decides: (0, 0) first, then every later single word.
    assert decode.greedy_search(candidates, flat_ner=True) == [(w, w, 0, _f32(0.9)) for w in range(384)]
    # Nested: (0, e) for every e nest; then the single words, which cross nothing.
    tick = time.perf_counter()
    nested = decode.greedy_search(candidates, flat_ner=False)
    elapsed = time.perf_counter() - tick
    assert nested[:384] == [(0, e, 0, _f32(0.9)) for e in range(384)]
    assert nested[384:] == [(w, w, 0, _f32(0.9)) for w in range(1, 384)]
    assert elapsed < 5.0


def test_empty_inputs() -> None:
    assert decode.token_candidates(np.zeros((0, 3, 3), dtype=np.float32), 0, 0.5) == []
    assert decode.token_candidates(np.zeros((5, 0, 3), dtype=np.float32), 5, 0.5) == []
    assert decode.decode_tokens(np.zeros((5, 2, 3), dtype=np.float32), 5, 0.5) == []


@pytest.mark.parametrize(
    ("probs", "num_words", "message"),
    [
        (np.zeros((2, 2), dtype=np.float32), 2, "shape"),
        (np.zeros((2, 2, 2), dtype=np.float32), 2, "shape"),
        (np.zeros((2, 2, 3), dtype=np.int64), 2, "floating"),
        (np.zeros((2, 2, 3), dtype=np.float32), -1, "num_words"),
    ],
)
def test_token_candidates_reject_bad_input(probs: np.ndarray, num_words: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode.token_candidates(probs, num_words, 0.5)
