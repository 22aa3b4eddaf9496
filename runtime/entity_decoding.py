"""Stages 6-7: decode span or token scores into candidates, then greedy selection.

A port of gliner 0.2.29's span and token decoders (``gliner/decoding/decoder.py``:
``BaseSpanDecoder._decode_batch_item`` / ``_decode_batch``, ``TokenDecoder`` and
``BaseDecoder.greedy_search``; ``gliner/decoding/utils.py``: ``has_overlapping``,
``has_overlapping_nested``), over numpy arrays and plain tuples. Word indices are
0-based and span ends are *inclusive*; class indices are 0-based positions in the
score array's last axis (gliner's label id is ``class_index + 1``).

Reference semantics kept exactly:

* ``probs > threshold`` is strict and computed in the score array's dtype, the
  threshold cast to that dtype first (torch does this for a Python scalar), so a
  score equal to ``float32(0.3)`` does not pass a 0.3 threshold.
* Candidates come in ``torch.where`` (C) order: start, then width, then class;
  a span is kept only if ``start + width + 1 <= num_words``.
* Greedy selection: a stable sort by ``-score`` (ties keep candidate order); a
  candidate is kept unless it conflicts with a span kept before it; the kept spans
  are stable-sorted by start only. Labels and scores never enter the conflict test.
  Flat: any intersection of inclusive intervals conflicts. Nested: only a partial
  (crossing) overlap conflicts. In both modes the identical (start, end) conflicts
  unless ``multi_label``.

Token-level models (gliner's ``TokenDecoder._calculate_span_score`` / ``decode``,
used by ``UniEncoderTokenGLiNER`` and ``BiEncoderTokenGLiNER`` with
``represent_spans=False``) score each word per class as (start, end, inside);
``token_candidates`` pairs them into spans and the same ``greedy_search`` selects:

* A start (word, class) and an end (word, class) are boundaries when their score is
  strictly above the threshold in the array's dtype (as for spans).
* Every start pairs with every end of the *same class* at or after it: no width limit.
* The pair is dropped if any inside score on [start..end] is ``< threshold`` compared
  as Python floats (float64), so an inside score equal to the threshold passes,
  ``float32(0.3)`` passes a 0.3 threshold (it is above 0.3 in float64) and
  ``float32(0.7)`` fails a 0.7 one; a NaN inside score passes.
* Score: ``min(inside[start..end], start score, end score)``, not a mean.
* Order: start word, then class, then end word (the reference's nested loops over
  ``torch.where`` results).

Per-text label sets: the reference masks class slots a text did not ask for to
``-inf``; pass ``probs[..., :num_labels]`` (span) or ``probs[:, :num_labels]``
(token) for such a text instead.

Only numpy and the standard library are imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import NamedTuple

import numpy as np

SpanCandidate = tuple[int, int, int, float]
"""(start_word, end_word_inclusive, class_index_0_based, score)."""

__all__ = [
    "Candidates",
    "SpanCandidate",
    "decode_spans",
    "decode_tokens",
    "greedy_search",
    "sigmoid",
    "span_candidate_arrays",
    "span_candidates",
    "token_candidates",
]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function in float32, computed as torch's CPU kernel does.

    ``1 / (1 + exp(-x))`` entirely in float32: very negative logits give exactly 0
    (as torch does), +inf gives 1, NaN stays NaN. numpy's float32 ``exp`` is not
    torch's, so single values may differ from ``torch.sigmoid`` by a few ulp (so may
    an in-graph ONNX ``Sigmoid``); only a score within those ulp of the threshold
    can then be decided differently from the reference.
    """
    x = np.asarray(logits, dtype=np.float32)
    one = np.float32(1.0)
    with np.errstate(over="ignore"):
        return one / (one + np.exp(-x))


class Candidates(NamedTuple):
    """Candidate spans as parallel arrays (the hot path; `to_list` gives the tuples)."""

    starts: np.ndarray
    ends: np.ndarray  # inclusive
    classes: np.ndarray
    scores: np.ndarray

    @property
    def size(self) -> int:
        return int(self.starts.shape[0])

    def to_list(self) -> list[SpanCandidate]:
        return list(
            zip(
                self.starts.tolist(),
                self.ends.tolist(),
                self.classes.tolist(),
                self.scores.tolist(),
                strict=True,
            )
        )

    @classmethod
    def from_list(cls, candidates: Sequence[SpanCandidate]) -> Candidates:
        n = len(candidates)
        return cls(
            np.fromiter(map(itemgetter(0), candidates), dtype=np.int64, count=n),
            np.fromiter(map(itemgetter(1), candidates), dtype=np.int64, count=n),
            np.fromiter(map(itemgetter(2), candidates), dtype=np.int64, count=n),
            np.fromiter(map(itemgetter(3), candidates), dtype=np.float64, count=n),
        )


def span_candidate_arrays(
    probs: np.ndarray, num_words: int, threshold: float, *, best_label_only: bool = False
) -> Candidates:
    """Spans of one text whose score is strictly above ``threshold``.

    Args:
        probs: sigmoid scores of shape (num_words_padded, max_width, num_classes);
            index ``[start, width, class]`` scores the span ``start..start+width``.
        num_words: the text's real number of words; spans ending at or past it
            are dropped (padding rows and over-long spans).
        threshold: compared with ``>`` after casting to ``probs.dtype`` (float32
            for the usual scores), as torch compares a tensor with a Python float.
        best_label_only: keep only each span's best label (the first on ties). Greedy
            selection without ``multi_label`` keeps the same entities from these: a
            span's labels conflict with each other, its best comes first among them in
            the stable score order, and whether it is kept depends only on the spans
            kept before it, so the others are always rejected and never change what is
            kept. With many labels it is most of the candidates.

    Returns:
        (start, end_inclusive, class_index, score) in the reference's order: start,
        then width, then class. ``score`` is the Python float of the array value.

    Raises:
        ValueError: ``probs`` is not a 3-D floating array, or ``num_words < 0``.
    """
    scores = np.asarray(probs)
    if scores.ndim != 3:
        raise ValueError(
            f"probs must have shape (num_words_padded, max_width, num_classes), got {scores.shape}"
        )
    if not np.issubdtype(scores.dtype, np.floating):
        raise ValueError(f"probs must be a floating array, got dtype {scores.dtype}")
    if num_words < 0:
        raise ValueError(f"num_words must be >= 0, got {num_words}")

    # Starts at or past num_words can never be valid (width >= 0): slice them away.
    scores = scores[:num_words]
    if best_label_only and scores.shape[-1] > 1:
        best = scores.argmax(axis=-1)  # (start, width): the first best label
        top = np.take_along_axis(scores, best[..., None], axis=-1)[..., 0]
        if np.isnan(top).any():  # argmax picks NaN, which never passes: take every label
            return span_candidate_arrays(probs, num_words, threshold)
        keep = top > scores.dtype.type(threshold)
        keep &= np.arange(scores.shape[0])[:, None] + np.arange(scores.shape[1])[None, :] < num_words
        s_idx, w_idx = np.nonzero(keep)
        return Candidates(s_idx, s_idx + w_idx, best[s_idx, w_idx], top[s_idx, w_idx])
    above = scores > scores.dtype.type(threshold)
    starts = np.arange(scores.shape[0])[:, None]
    widths = np.arange(scores.shape[1])[None, :]
    above &= (starts + widths < num_words)[:, :, None]

    s_idx, w_idx, c_idx = np.nonzero(above)  # C order == torch.where order
    return Candidates(s_idx, s_idx + w_idx, c_idx, scores[s_idx, w_idx, c_idx])


def span_candidates(probs: np.ndarray, num_words: int, threshold: float) -> list[SpanCandidate]:
    """``span_candidate_arrays`` as a list of (start, end, class, score) tuples."""
    return span_candidate_arrays(probs, num_words, threshold).to_list()


def token_candidates(probs: np.ndarray, num_words: int, threshold: float) -> list[SpanCandidate]:
    """Spans of one text from token-level (start, end, inside) scores.

    A port of ``TokenDecoder.decode`` (per text) and ``_calculate_span_score``.

    Args:
        probs: sigmoid scores of shape (num_words_padded, num_classes, 3), the last
            axis (start, end, inside) as the token model's logits are laid out.
        num_words: the text's real number of words; rows from ``num_words`` on
            (batch padding) are cut off before anything else, as the reference does.
        threshold: start and end scores must be ``> threshold`` after casting it to
            ``probs.dtype``; a span is dropped if one of its inside scores is
            ``< threshold`` as Python floats (so equality passes).

    Returns:
        (start, end_inclusive, class_index, score) ordered by start, then class,
        then end; ``score`` is the Python float of the smallest inside, start or end
        score of the span. Width is unlimited.

    Raises:
        ValueError: ``probs`` is not a floating array of shape (words, classes, 3),
            or ``num_words < 0``.
    """
    scores = np.asarray(probs)
    if scores.ndim != 3 or scores.shape[2] != 3:
        raise ValueError(f"probs must have shape (num_words_padded, num_classes, 3), got {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        raise ValueError(f"probs must be a floating array, got dtype {scores.dtype}")
    if num_words < 0:
        raise ValueError(f"num_words must be >= 0, got {num_words}")

    scores = scores[:num_words]
    boundary = scores[:, :, :2] > scores.dtype.type(threshold)
    # The reference compares Python floats: NaN is never '< threshold', so it passes.
    inside_ok = ~(scores[:, :, 2].astype(np.float64) < float(threshold))
    positions = np.arange(scores.shape[0])

    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for cls in np.flatnonzero(boundary[:, :, 0].any(axis=0) & boundary[:, :, 1].any(axis=0)).tolist():
        part = _class_spans(scores[:, cls], boundary[:, cls], inside_ok[:, cls], positions)
        if part is not None:
            starts, ends, values = part
            parts.append((starts, np.full(starts.shape, cls), ends, values))
    if not parts:
        return []
    starts, classes, ends, values = (np.concatenate(column) for column in zip(*parts))
    order = np.lexsort((ends, classes, starts))  # start, then class, then end
    return list(
        zip(
            starts[order].tolist(),
            ends[order].tolist(),
            classes[order].tolist(),
            values[order].tolist(),
            strict=True,
        )
    )


def _class_spans(
    scores: np.ndarray, boundary: np.ndarray, inside_ok: np.ndarray, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(starts, ends, scores) of one class's spans, ordered by start then end.

    ``scores`` is (words, 3), ``boundary`` (words, 2): start/end above threshold,
    ``inside_ok`` (words,): inside not below threshold. A start ``s`` pairs with
    every end ``e >= s`` before the first word at or after ``s`` whose inside fails.
    """
    count = scores.shape[0]
    start_words = np.flatnonzero(boundary[:, 0])
    end_words = np.flatnonzero(boundary[:, 1])
    # first_bad[p]: the first word >= p whose inside score is below the threshold.
    first_bad = np.minimum.accumulate(np.where(inside_ok, count, positions)[::-1])[::-1]
    limits = first_bad[start_words]
    pairs = (end_words[None, :] >= start_words[:, None]) & (end_words[None, :] < limits[:, None])
    rows = np.flatnonzero(pairs.any(axis=1))
    if rows.size == 0:
        return None
    start_words, pairs = start_words[rows], pairs[rows]
    row_idx, col_idx = np.nonzero(pairs)  # row-major: start, then end
    starts, ends = start_words[row_idx], end_words[col_idx]

    # Running minimum of the inside scores from each start: words before it are +inf.
    inside = scores[:, 2]
    running = np.where(positions[None, :] >= start_words[:, None], inside[None, :], np.inf)
    running = np.fmin.accumulate(running.astype(inside.dtype), axis=1)
    values = np.minimum(np.minimum(running[row_idx, ends], scores[starts, 0]), scores[ends, 1])
    # Python's min(*ins, start, end) keeps a NaN only when it is the first argument
    # (the inside score at the start word) and skips NaN anywhere else, as fmin does.
    values = np.where(np.isnan(inside[starts]), inside[starts], values)
    return starts, ends, values


def decode_tokens(
    probs: np.ndarray,
    num_words: int,
    threshold: float = 0.5,
    flat_ner: bool = True,
    multi_label: bool = False,
) -> list[SpanCandidate]:
    """``greedy_search(token_candidates(probs, num_words, threshold), ...)`` for one text."""
    return greedy_search(token_candidates(probs, num_words, threshold), flat_ner, multi_label)


def greedy_search(
    candidates: Sequence[SpanCandidate] | Candidates, flat_ner: bool = True, multi_label: bool = False
) -> list[SpanCandidate]:
    """Select spans exactly as gliner's ``BaseDecoder.greedy_search``.

    Candidates are visited by descending score (a stable sort on ``-score``, so
    ties keep their input order); each is kept unless it conflicts with a span
    already kept. The kept spans are returned stable-sorted by start only (so
    spans sharing a start stay in selection order).

    Conflicts (inclusive ends, so (0, 1) and (1, 2) overlap):
        flat_ner=True: the two spans share any word.
        flat_ner=False: the two spans cross (overlap, neither contains the other).
        either mode: the same (start, end) conflicts unless ``multi_label``.

    Spans must satisfy ``0 <= start <= end`` (as ``span_candidates`` and
    ``token_candidates`` yield). The reference checks each candidate against every
    kept span; the same result is computed here from a per-word occupancy (flat) or
    per-word farthest end / earliest start of the kept spans (nested), without the
    quadratic scan.
    """
    if (candidates.size if isinstance(candidates, Candidates) else len(candidates)) == 0:
        return []
    kept: list[SpanCandidate]
    if flat_ner and _max_end(candidates) < _VECTORIZED_FLAT_WORDS:
        c = candidates if isinstance(candidates, Candidates) else Candidates.from_list(candidates)
        if not np.isnan(c.scores).any():
            chosen = _select_flat_vectorized(c.starts, c.ends, c.scores, multi_label)
            kept = Candidates(c.starts[chosen], c.ends[chosen], c.classes[chosen], c.scores[chosen]).to_list()
            kept.sort(key=itemgetter(0))
            return kept
    spans = candidates.to_list() if isinstance(candidates, Candidates) else candidates
    ordered = sorted(spans, key=lambda span: -span[3])
    kept = _select_flat(ordered, multi_label) if flat_ner else _select_nested(ordered, multi_label)
    kept.sort(key=itemgetter(0))
    return kept


def _max_end(candidates: Sequence[SpanCandidate] | Candidates) -> int:
    if isinstance(candidates, Candidates):
        return int(candidates.ends.max())
    return max(map(itemgetter(1), candidates))


def decode_spans(
    probs: np.ndarray,
    num_words: int,
    threshold: float = 0.5,
    flat_ner: bool = True,
    multi_label: bool = False,
) -> list[SpanCandidate]:
    """``greedy_search(span_candidates(probs, num_words, threshold), ...)`` for one text."""
    return greedy_search(span_candidates(probs, num_words, threshold), flat_ner, multi_label)


# Texts up to this many words use the vectorized flat selection: it costs one pass
# over the remaining candidates per kept span, so it wins when candidates are many and
# kept spans few (dense scores, many labels: 107 -> ~40 ms with 200 labels) and would
# lose on long texts with thousands of kept spans, which take the per-candidate loop.
_VECTORIZED_FLAT_WORDS = 256


def _select_flat(ordered: list[SpanCandidate], multi_label: bool) -> list[SpanCandidate]:
    """Flat selection over candidates already in visiting order (per-candidate loop).

    Invariant: any two kept spans are disjoint or (only with ``multi_label``)
    identical. Hence a candidate whose (start, end) is already kept conflicts with
    nothing when ``multi_label`` holds, and any other candidate conflicts iff one
    of its words is covered by a kept span.
    """
    size = max(map(itemgetter(1), ordered)) + 1
    covered = bytearray(size)
    kept_spans: set[tuple[int, int]] = set()
    kept: list[SpanCandidate] = []
    for span in ordered:
        start, end = span[0], span[1]
        if multi_label and (start, end) in kept_spans:
            kept.append(span)
            continue
        if any(covered[start : end + 1]):
            continue
        covered[start : end + 1] = b"\x01" * (end + 1 - start)
        kept_spans.add((start, end))
        kept.append(span)
    return kept


def _select_flat_vectorized(
    starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, multi_label: bool
) -> np.ndarray:
    """`_select_flat` over candidate arrays in input order; returns kept indices in
    visiting order.

    The next span visited that is still alive is always kept: the highest score,
    the earliest candidate among equal scores (`argmax` returns the first maximum,
    as the stable sort on -score visits it first). It removes every alive candidate
    sharing one of its words, except (with ``multi_label``) copies of its exact
    span, which are kept in visiting order. Kept spans with one start are thus
    copies of one span, so the final stable sort by start gives the reference's
    list. One vectorized pass per kept span and no full sort.
    """
    alive = np.arange(starts.shape[0])
    kept: list[int] = []
    while alive.size:
        j = int(np.argmax(scores[alive]))
        first = int(alive[j])
        s, e = starts[first], ends[first]
        rs, re_ = starts[alive], ends[alive]
        kept.append(first)
        if multi_label:
            same = (rs == s) & (re_ == e)
            same[j] = False
            copies = alive[same]
            kept.extend(copies[np.argsort(-scores[copies], kind="stable")].tolist())
        alive = alive[(rs > e) | (re_ < s)]
    return np.asarray(kept, dtype=np.int64)


def _select_nested(ordered: list[SpanCandidate], multi_label: bool) -> list[SpanCandidate]:
    """Nested selection over candidates already in visiting order.

    ``has_overlapping_nested`` flags two different spans exactly when they cross:
    a kept (a, b) with ``s < a <= e < b`` or ``a < s <= b < e`` for the candidate
    (s, e). So the candidate conflicts iff a kept span starting in (s, e] ends after
    e, or a kept span ending in [s, e) starts before s, or (without ``multi_label``)
    it is itself kept. Per word, the farthest end of the kept spans starting there
    and the earliest start of those ending there answer both in C-speed slices,
    which keeps wide (token-mode) spans cheap.
    """
    size = max(span[1] for span in ordered) + 1
    farthest_end = [-1] * size  # by start word
    earliest_start = [size] * size  # by end word
    kept_spans: set[tuple[int, int]] = set()
    kept: list[SpanCandidate] = []
    for span in ordered:
        start, end = span[0], span[1]
        if (start, end) in kept_spans:
            if multi_label:
                kept.append(span)
            continue
        if start < end and (
            max(farthest_end[start + 1 : end + 1]) > end or min(earliest_start[start:end]) < start
        ):
            continue
        farthest_end[start] = max(farthest_end[start], end)
        earliest_start[end] = min(earliest_start[end], start)
        kept_spans.add((start, end))
        kept.append(span)
    return kept
