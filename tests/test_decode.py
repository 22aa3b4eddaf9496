"""Exact-equality tests of ``runtime/entity_decoding.py`` against gliner 0.2.29's span decoder.

The reference is gliner's own ``gliner/decoding/decoder.py`` (``SpanDecoder``:
``_decode_batch_item``, ``_decode_batch``, ``greedy_search``) and ``decoding/utils.py``,
loaded straight from the installed gliner without running ``gliner/__init__.py``
(which imports transformers and costs ~6 s); the source executed is unchanged.

What the reference's code does that is easy to misread:
* The threshold is compared in the score tensor's dtype (float16 scores against
  float16(threshold)); for float32 scores, in float32.
* multi_label never compares labels: ``has_overlapping*`` look at ``idx[:2]`` only, so with
  multi_label any candidate whose (start, end) was already kept passes. From ``torch.where``
  candidates that is the same as "the same span with another label", since each
  (start, end, class) appears once.
* ``SpanDecoder.decode`` defaults to ``flat_ner=False`` while ``greedy_search`` and
  ``GLiNER.inference`` default to ``flat_ner=True`` (every comparison here passes it).
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from gliner_onnx.runtime import entity_decoding as decode

MODES = [(True, False), (True, True), (False, False), (False, True)]
MODE_IDS = ["flat", "flat-multi", "nested", "nested-multi"]


def _load_reference_decoding() -> ModuleType:
    """gliner's ``decoding`` package (decoder.py + utils.py) as a standalone package."""
    gliner_spec = importlib.util.find_spec("gliner")  # locates, does not import
    assert gliner_spec is not None and gliner_spec.origin is not None
    package_dir = Path(gliner_spec.origin).parent / "decoding"
    name = "_gliner_reference_decoding"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[f"{name}.decoder"]


REF_DECODER = _load_reference_decoding()
REF = REF_DECODER.SpanDecoder(config=None)


class _CandidatesOnly(REF_DECODER.SpanDecoder):  # type: ignore[name-defined,misc]
    """The reference decoder with greedy selection switched off: its raw candidates."""

    def greedy_search(self, spans, flat_ner=True, multi_label=False):
        return spans


REF_CANDIDATES = _CandidatesOnly(config=None)


def _as_tuples(spans: list) -> list[decode.SpanCandidate]:
    return [(s.start, s.end, s.class_index, s.score) for s in spans]


def _labels(num_classes: int) -> dict[int, str]:
    return {c + 1: f"label{c}" for c in range(num_classes)}


def ref_decode(
    probs: np.ndarray, num_words: int, threshold: float, flat_ner: bool, multi_label: bool
) -> list[decode.SpanCandidate]:
    """gliner's per-text path (``_decode_batch_item``, used for batch size 1)."""
    spans = REF._decode_batch_item(
        probs_i=torch.from_numpy(probs),
        tokens_i=["w"] * num_words,
        id_to_class_i=_labels(probs.shape[2]),
        K=probs.shape[1],
        threshold=threshold,
        flat_ner=flat_ner,
        multi_label=multi_label,
        span_label_map={},
    )
    return _as_tuples(spans)


def ref_candidates(probs: np.ndarray, num_words: int, threshold: float) -> list[decode.SpanCandidate]:
    spans = REF_CANDIDATES._decode_batch_item(
        probs_i=torch.from_numpy(probs),
        tokens_i=["w"] * num_words,
        id_to_class_i=_labels(probs.shape[2]),
        K=probs.shape[1],
        threshold=threshold,
        flat_ner=True,
        multi_label=False,
        span_label_map={},
    )
    return _as_tuples(spans)


def ref_greedy(
    candidates: list[decode.SpanCandidate], flat_ner: bool, multi_label: bool
) -> list[decode.SpanCandidate]:
    spans = [
        REF_DECODER.Span(start=s, end=e, entity_type=f"label{c}", score=p, class_index=c)
        for s, e, c, p in candidates
    ]
    return _as_tuples(REF.greedy_search(spans, flat_ner=flat_ner, multi_label=multi_label))


def random_probs(rng: np.random.Generator, shape: tuple[int, ...], quantize: bool) -> np.ndarray:
    """Uniform scores; quantized to 0.1 steps for many exact ties and threshold hits."""
    probs = rng.random(shape, dtype=np.float32)
    if quantize:
        probs = np.round(probs, 1).astype(np.float32)
    return probs


def random_case(rng: np.random.Generator) -> tuple[np.ndarray, int, float]:
    padded = int(rng.integers(1, 25))
    shape = (padded, int(rng.integers(1, 13)), int(rng.integers(1, 6)))
    num_words = int(rng.integers(0, padded + 1))  # often fewer than the padded length
    threshold = float(rng.choice([0.3, 0.4, 0.5, 0.6, 0.7, rng.uniform(0.3, 0.7)]))
    return random_probs(rng, shape, quantize=bool(rng.random() < 0.5)), num_words, threshold


# --- randomized equality with the reference ------------------------------------------


@pytest.mark.parametrize(("flat_ner", "multi_label"), MODES, ids=MODE_IDS)
def test_random_probs_match_reference(flat_ner: bool, multi_label: bool) -> None:
    rng = np.random.default_rng(1234)
    kept_total = removed_total = 0
    for _ in range(150):
        probs, num_words, threshold = random_case(rng)
        candidates = decode.span_candidates(probs, num_words, threshold)
        assert candidates == ref_candidates(probs, num_words, threshold)
        kept = decode.greedy_search(candidates, flat_ner=flat_ner, multi_label=multi_label)
        assert kept == ref_decode(probs, num_words, threshold, flat_ner, multi_label)
        assert decode.decode_spans(probs, num_words, threshold, flat_ner, multi_label) == kept
        kept_total += len(kept)
        removed_total += len(candidates) - len(kept)
    assert kept_total > 100 and removed_total > 100  # the comparison is not vacuous


@pytest.mark.parametrize("flat_ner", [True, False])
def test_best_label_only_candidates_keep_the_same_entities(flat_ner: bool) -> None:
    """Without multi_label, greedy keeps the same entities from each span's best label
    alone (quantized scores make ties between labels and between spans)."""
    rng = np.random.default_rng(77)
    fewer = 0
    for _ in range(300):
        probs, num_words, threshold = random_case(rng)
        full = decode.span_candidate_arrays(probs, num_words, threshold)
        best = decode.span_candidate_arrays(probs, num_words, threshold, best_label_only=True)
        fewer += full.size - best.size
        assert decode.greedy_search(best, flat_ner=flat_ner) == decode.greedy_search(full, flat_ner=flat_ner)
        assert decode.greedy_search(best, flat_ner=flat_ner) == ref_decode(
            probs, num_words, threshold, flat_ner, False
        )
    assert fewer > 1000  # most candidates are other labels of a span
    ties = np.array([[[0.7, 0.9, 0.9]], [[0.2, 0.8, 0.1]]], dtype=np.float32)
    assert decode.span_candidate_arrays(ties, 2, 0.5, best_label_only=True).to_list() == [
        (0, 0, 1, float(np.float32(0.9))),  # the first of two equal best labels
        (1, 1, 1, float(np.float32(0.8))),
    ]
    nan = np.array([[[np.nan, 0.8, 0.9]]], dtype=np.float32)  # argmax would pick the NaN
    assert decode.span_candidate_arrays(nan, 1, 0.5, best_label_only=True).to_list() == [
        (0, 0, 1, float(np.float32(0.8))),
        (0, 0, 2, float(np.float32(0.9))),
    ]


@pytest.mark.parametrize(("flat_ner", "multi_label"), MODES, ids=MODE_IDS)
def test_reference_batch_path_matches(flat_ner: bool, multi_label: bool) -> None:
    """gliner's B>1 path (one torch.where over the batch) gives our per-text results."""
    rng = np.random.default_rng(99)
    for _ in range(20):
        batch, padded, width, classes = 3, int(rng.integers(2, 20)), int(rng.integers(1, 13)), 3
        probs = random_probs(rng, (batch, padded, width, classes), quantize=bool(rng.random() < 0.5))
        lengths = [int(n) for n in rng.integers(1, padded + 1, size=batch)]
        threshold = float(rng.uniform(0.3, 0.7))
        expected = REF._decode_batch(
            probs=torch.from_numpy(probs),
            tokens=[["w"] * n for n in lengths],
            id_to_classes=_labels(classes),
            K=width,
            threshold=threshold,
            flat_ner=flat_ner,
            multi_label=multi_label,
            span_label_maps=[{} for _ in range(batch)],
        )
        got = [
            decode.decode_spans(probs[b], lengths[b], threshold, flat_ner, multi_label) for b in range(batch)
        ]
        assert got == [_as_tuples(spans) for spans in expected]


@pytest.mark.parametrize(("flat_ner", "multi_label"), MODES, ids=MODE_IDS)
def test_random_candidate_lists_match_reference_greedy(flat_ner: bool, multi_label: bool) -> None:
    """Dense, tie-heavy candidate lists (any width, shuffled order) straight into greedy."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        count = int(rng.integers(0, 40))
        starts = rng.integers(0, 12, size=count)
        ends = starts + rng.integers(0, 6, size=count)
        classes = rng.integers(0, 3, size=count)
        scores = rng.choice(np.array([0.5, 0.6, 0.7, 0.8, 0.9], dtype=np.float32), size=count)
        candidates = [
            (int(s), int(e), int(c), float(p))
            for s, e, c, p in zip(starts, ends, classes, scores, strict=True)
        ]
        expected = ref_greedy(candidates, flat_ner, multi_label)
        assert decode.greedy_search(candidates, flat_ner, multi_label) == expected


# --- pinned adversarial cases --------------------------------------------------------


def _check(
    candidates: list[decode.SpanCandidate],
    flat_ner: bool,
    multi_label: bool,
    expected: list[decode.SpanCandidate],
) -> None:
    assert ref_greedy(candidates, flat_ner, multi_label) == expected  # pins the reference too
    assert decode.greedy_search(candidates, flat_ner, multi_label) == expected


def test_equal_scores_keep_candidate_order() -> None:
    a, b = (0, 1, 0, 0.8), (1, 2, 1, 0.8)
    _check([a, b], True, False, [a])
    _check([b, a], True, False, [b])


def test_equal_scores_from_probs_keep_start_width_class_order() -> None:
    probs = np.zeros((3, 2, 2), dtype=np.float32)
    probs[1, 1, 0] = probs[0, 1, 1] = 0.75  # spans (1, 2) class 0 and (0, 1) class 1
    expected = [(0, 1, 1, 0.75)]  # (0, 1) comes first in start/width/class order
    assert decode.decode_spans(probs, 3, 0.5) == expected
    assert ref_decode(probs, 3, 0.5, True, False) == expected


def test_nested_keeps_nesting_rejects_partial_overlap() -> None:
    outer, inner, crossing = (0, 3, 0, 0.9), (1, 2, 1, 0.8), (2, 5, 0, 0.7)
    _check([outer, inner, crossing], False, False, [outer, inner])
    _check([outer, inner, crossing], True, False, [outer])


def test_nested_inner_first_then_outer_is_kept() -> None:
    inner, outer, disjoint = (2, 2, 0, 0.9), (0, 4, 1, 0.8), (5, 6, 0, 0.7)
    _check([outer, disjoint, inner], False, False, [outer, inner, disjoint])


def test_nested_crossing_a_wide_kept_span_far_to_the_left() -> None:
    wide, late = (0, 9, 0, 0.9), (8, 10, 0, 0.8)  # late crosses wide at words 8..9
    _check([wide, late], False, False, [wide])


def test_same_span_two_labels_multi_label_flat() -> None:
    first, second, touching = (0, 1, 0, 0.9), (0, 1, 1, 0.8), (1, 2, 0, 0.85)
    _check([first, second, touching], True, True, [first, second])
    _check([first, second, touching], True, False, [first])


def test_same_span_two_labels_multi_label_nested() -> None:
    first, second, outer = (0, 1, 0, 0.9), (0, 1, 1, 0.8), (0, 3, 0, 0.7)
    _check([outer, second, first], False, True, [first, second, outer])
    _check([outer, second, first], False, False, [first, outer])


def test_multi_label_does_not_allow_a_different_overlapping_span() -> None:
    kept, shifted = (0, 2, 0, 0.9), (1, 2, 1, 0.8)  # overlaps but is not the same span
    _check([kept, shifted], True, True, [kept])


def test_boundary_touch_overlaps_with_inclusive_ends() -> None:
    a, b, c = (0, 1, 0, 0.9), (1, 2, 0, 0.8), (2, 3, 0, 0.7)
    _check([a, b, c], True, False, [a, c])
    _check([a, b, c], False, False, [a, c])  # (0,1) and (1,2) cross: partial overlap


def test_final_sort_is_by_start_only_and_stable() -> None:
    long, short = (0, 3, 0, 0.9), (0, 1, 1, 0.7)  # same start: selection order stays
    _check([short, long], False, False, [long, short])
    by_score = [(0, 1, 1, 0.9), (0, 1, 0, 0.8)]  # same span: class order does not matter
    _check(list(reversed(by_score)), True, True, by_score)


def test_threshold_equal_to_score_is_not_kept() -> None:
    probs = np.full((2, 1, 1), 0.5, dtype=np.float32)
    probs[1, 0, 0] = np.nextafter(np.float32(0.5), np.float32(1))
    expected = [(1, 1, 0, float(probs[1, 0, 0]))]
    assert decode.span_candidates(probs, 2, 0.5) == expected
    assert ref_candidates(probs, 2, 0.5) == expected


def test_threshold_0_3_is_rounded_to_float32() -> None:
    """float32(0.3) > 0.3 in float64 but not in float32: the score must not pass."""
    at = np.float32(0.3)
    above = np.nextafter(at, np.float32(1))
    assert float(at) > 0.3  # a float64 comparison would keep it
    probs = np.array([[[at]], [[above]]], dtype=np.float32)
    expected = [(1, 1, 0, float(above))]
    assert decode.span_candidates(probs, 2, 0.3) == expected
    assert ref_candidates(probs, 2, 0.3) == expected


def test_float16_scores_compare_in_float16() -> None:
    probs = np.array([[[0.3]], [[0.2999]], [[0.3003]]], dtype=np.float16)
    expected = ref_candidates(probs, 3, 0.3)
    assert expected == [(2, 2, 0, float(probs[2, 0, 0]))]
    assert decode.span_candidates(probs, 3, 0.3) == expected


def test_nan_scores_never_pass() -> None:
    probs = np.array([[[np.nan, 0.9]]], dtype=np.float32)
    assert decode.span_candidates(probs, 1, 0.5) == [(0, 0, 1, float(np.float32(0.9)))]
    assert ref_candidates(probs, 1, 0.5) == decode.span_candidates(probs, 1, 0.5)


def test_span_candidates_order_is_start_width_class() -> None:
    probs = np.zeros((3, 2, 2), dtype=np.float32)
    for s, w, c, p in [(2, 0, 1, 0.6), (0, 1, 0, 0.7), (0, 0, 1, 0.8), (0, 1, 1, 0.9), (1, 0, 0, 0.95)]:
        probs[s, w, c] = p
    expected = [
        (0, 0, 1, float(np.float32(0.8))),
        (0, 1, 0, float(np.float32(0.7))),
        (0, 1, 1, float(np.float32(0.9))),
        (1, 1, 0, float(np.float32(0.95))),
        (2, 2, 1, float(np.float32(0.6))),
    ]
    assert decode.span_candidates(probs, 3, 0.5) == expected
    assert ref_candidates(probs, 3, 0.5) == expected


def test_span_candidates_drop_spans_past_num_words() -> None:
    probs = np.full((4, 3, 1), 0.9, dtype=np.float32)
    score = float(np.float32(0.9))
    expected = [(0, 0, 0, score), (0, 1, 0, score), (1, 1, 0, score)]
    assert decode.span_candidates(probs, 2, 0.5) == expected
    assert ref_candidates(probs, 2, 0.5) == expected
    assert decode.span_candidates(probs, 0, 0.5) == []


def test_scores_are_python_floats_of_float32_values() -> None:
    probs = np.full((1, 1, 1), 0.7, dtype=np.float32)
    [(_, _, _, score)] = decode.span_candidates(probs, 1, 0.5)
    assert type(score) is float and score == float(np.float32(0.7)) and score != 0.7


def test_empty_candidates_give_empty_selection() -> None:
    for flat_ner, multi_label in MODES:
        assert decode.greedy_search([], flat_ner, multi_label) == []


@pytest.mark.parametrize(
    ("probs", "num_words", "message"),
    [
        (np.zeros((2, 2), dtype=np.float32), 2, "shape"),
        (np.zeros((2, 2, 1), dtype=np.int64), 2, "floating"),
        (np.zeros((2, 2, 1), dtype=np.float32), -1, "num_words"),
    ],
)
def test_span_candidates_reject_bad_input(probs: np.ndarray, num_words: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode.span_candidates(probs, num_words, 0.5)


# --- sigmoid ----------------------------------------------------------------------------


def test_sigmoid_is_float32_and_close_to_torch() -> None:
    rng = np.random.default_rng(0)
    logits = np.concatenate([rng.normal(0, 8, 20000), np.linspace(-110, 110, 4001)]).astype(np.float32)
    got = decode.sigmoid(logits)
    want = torch.sigmoid(torch.from_numpy(logits)).numpy()
    assert got.dtype == np.float32 and got.shape == logits.shape
    ulps = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32).astype(np.int64))
    assert ulps.max() <= 8  # different exp implementations; torch's own form 1/(1+exp(-x))


def test_sigmoid_special_values_match_torch() -> None:
    logits = np.array([0.0, -0.0, np.inf, -np.inf, 200.0, -200.0, np.nan], dtype=np.float32)
    got = decode.sigmoid(logits)
    want = torch.sigmoid(torch.from_numpy(logits)).numpy()
    np.testing.assert_array_equal(got, want)  # NaN == NaN here
    assert got[0] == np.float32(0.5) and got[5] == 0.0


def test_sigmoid_casts_input_to_float32() -> None:
    assert decode.sigmoid(np.array([0.0], dtype=np.float64)).dtype == np.float32


# --- contract -------------------------------------------------------------------------


def test_reference_is_gliner_0_2_29() -> None:
    assert importlib.metadata.version("gliner") == "0.2.29"


def test_decode_imports_only_numpy_and_stdlib() -> None:
    tree = ast.parse(Path(decode.__file__).read_text())
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            roots.add((node.module or "").split(".")[0])
    assert roots, "no imports found"
    foreign = {r for r in roots if r != "numpy" and r not in sys.stdlib_module_names}
    assert not foreign


@pytest.mark.parametrize("multi_label", [False, True])
def test_vectorized_and_loop_flat_selection_agree(multi_label: bool) -> None:
    """Both flat paths (arrays below 256 words, per-candidate loop above) on the same lists."""
    from operator import itemgetter

    rng = np.random.default_rng(7)
    for trial in range(200):
        words = int(rng.integers(1, 400))
        count = int(rng.integers(1, 300))
        starts = rng.integers(0, words, size=count)
        ends = np.minimum(starts + rng.integers(0, 6, size=count), words - 1)
        classes = rng.integers(0, 3, size=count)
        scores = rng.choice(np.array([0.5, 0.6, 0.7, 0.8, 0.9], dtype=np.float32), size=count)
        c = decode.Candidates(starts, ends, classes, scores)
        by_arrays = c.to_list()
        chosen = decode._select_flat_vectorized(starts, ends, scores, multi_label)
        # Copies of a kept span are listed right after it (not at their visit), which the
        # final stable sort by start makes irrelevant: compare after that sort.
        vectorized = sorted((by_arrays[i] for i in chosen.tolist()), key=itemgetter(0))
        loop = sorted(
            decode._select_flat(sorted(by_arrays, key=lambda s: -s[3]), multi_label), key=itemgetter(0)
        )
        assert vectorized == loop, f"trial {trial}"
        assert decode.greedy_search(c, True, multi_label) == loop, f"trial {trial}"
