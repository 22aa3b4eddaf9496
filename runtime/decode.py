"""Stages 6-7: decode span scores into candidates, then greedy selection.

A port of gliner 0.2.29's span decoder (``gliner/decoding/decoder.py``:
``BaseSpanDecoder._decode_batch_item`` / ``_decode_batch`` and
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

Per-text label sets: the reference masks class slots a text did not ask for to
``-inf``; pass ``probs[..., :num_labels]`` for such a text instead.

Only numpy and the standard library are imported here.
"""

from __future__ import annotations

import numpy as np

SpanCandidate = tuple[int, int, int, float]
"""(start_word, end_word_inclusive, class_index_0_based, score)."""

__all__ = [
    "SpanCandidate",
    "decode_spans",
    "greedy_search",
    "sigmoid",
    "span_candidates",
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


def span_candidates(probs: np.ndarray, num_words: int, threshold: float) -> list[SpanCandidate]:
    """Spans of one text whose score is strictly above ``threshold``.

    Args:
        probs: sigmoid scores of shape (num_words_padded, max_width, num_classes);
            index ``[start, width, class]`` scores the span ``start..start+width``.
        num_words: the text's real number of words; spans ending at or past it
            are dropped (padding rows and over-long spans).
        threshold: compared with ``>`` after casting to ``probs.dtype`` (float32
            for the usual scores), as torch compares a tensor with a Python float.

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
    above = scores > scores.dtype.type(threshold)
    starts = np.arange(scores.shape[0])[:, None]
    widths = np.arange(scores.shape[1])[None, :]
    above &= (starts + widths < num_words)[:, :, None]

    s_idx, w_idx, c_idx = np.nonzero(above)  # C order == torch.where order
    values = scores[s_idx, w_idx, c_idx].tolist()
    return list(zip(s_idx.tolist(), (s_idx + w_idx).tolist(), c_idx.tolist(), values, strict=True))


def greedy_search(
    candidates: list[SpanCandidate], flat_ner: bool = True, multi_label: bool = False
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

    Spans must satisfy ``0 <= start <= end`` (as ``span_candidates`` yields).
    The reference checks each candidate against every kept span; the same result
    is computed here from a per-word occupancy (flat) or a per-start index of kept
    spans (nested), without the quadratic scan.
    """
    if not candidates:
        return []
    ordered = sorted(candidates, key=lambda span: -span[3])
    if flat_ner:
        kept = _select_flat(ordered, multi_label)
    else:
        kept = _select_nested(ordered, multi_label)
    kept.sort(key=lambda span: span[0])
    return kept


def decode_spans(
    probs: np.ndarray,
    num_words: int,
    threshold: float = 0.5,
    flat_ner: bool = True,
    multi_label: bool = False,
) -> list[SpanCandidate]:
    """``greedy_search(span_candidates(probs, num_words, threshold), ...)`` for one text."""
    return greedy_search(span_candidates(probs, num_words, threshold), flat_ner, multi_label)


def _select_flat(ordered: list[SpanCandidate], multi_label: bool) -> list[SpanCandidate]:
    """Flat selection over candidates already in visiting order.

    Invariant: any two kept spans are disjoint or (only with ``multi_label``)
    identical. Hence a candidate whose (start, end) is already kept conflicts with
    nothing when ``multi_label`` holds, and any other candidate conflicts iff one
    of its words is covered by a kept span.
    """
    size = max(span[1] for span in ordered) + 1
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


def _select_nested(ordered: list[SpanCandidate], multi_label: bool) -> list[SpanCandidate]:
    """Nested selection over candidates already in visiting order.

    A kept span (a, b) can intersect the candidate (s, e) only if a <= e and
    b >= s; as b - a <= widest kept width, only starts in [s - widest, e] need
    checking.
    """
    ends_by_start: dict[int, set[int]] = {}
    widest = 0
    kept: list[SpanCandidate] = []
    for span in ordered:
        start, end = span[0], span[1]
        if not _crosses_kept(start, end, ends_by_start, widest, multi_label):
            ends_by_start.setdefault(start, set()).add(end)
            widest = max(widest, end - start)
            kept.append(span)
    return kept


def _crosses_kept(
    start: int, end: int, ends_by_start: dict[int, set[int]], widest: int, multi_label: bool
) -> bool:
    """Whether (start, end) conflicts with a kept span under ``has_overlapping_nested``."""
    for kept_start in range(start - widest, end + 1):
        for kept_end in ends_by_start.get(kept_start, ()):
            if kept_end < start:
                continue  # disjoint: ends before the candidate starts
            if kept_start == start and kept_end == end:
                if not multi_label:
                    return True
                continue
            kept_contains = kept_start <= start and kept_end >= end
            contained = start <= kept_start and end >= kept_end
            if not (kept_contains or contained):
                return True
    return False
