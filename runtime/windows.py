"""Long texts: overlapping windows of words, and merging their candidates.

gliner truncates a text at `max_len` words (and its tokenizer at `model_max_length`
subwords) and silently drops the rest. The runtime instead cuts a text that does not
fit into overlapping windows that do, runs them as one batch, and lets each candidate
span be decided by the one window in which it sits farthest from a cut (its owner),
before the usual greedy selection over the whole text. A text that fits gets one
window: exactly the reference's input and answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .entity_decoding import Candidates

Window = tuple[int, int]  # word range [start, end)


def plan_windows(
    costs: Sequence[int] | np.ndarray, *, max_words: int, max_cost: float, overlap: int
) -> list[Window]:
    """Cut words with the given subword `costs` into windows of at most `max_words` words
    and `max_cost` subwords, each overlapping the previous one by `overlap` words."""
    if max_words < 1:
        raise ValueError(f"max_words must be positive, got {max_words}")
    if overlap < 0:
        raise ValueError(f"overlap must be non-negative, got {overlap}")
    n = len(costs)
    windows: list[Window] = []
    start = 0
    while start < n:
        end, used = start, 0
        while end < n and end - start < max_words and used + costs[end] <= max_cost:
            used += int(costs[end])
            end += 1
        end = max(end, start + 1)  # a single word over budget still gets a window
        windows.append((start, end))
        if end >= n:
            break
        start = max(end - overlap, start + 1)
    return windows


def owner_window(start: int, end: int, windows: Sequence[Window], num_words: int) -> int:
    """The window that decides span [start, end] (inclusive): the one containing it whose
    nearest cut (a window edge that is not the text's edge) is farthest; the first on ties."""
    best, best_margin = -1, -math.inf
    for i, (ws, we) in enumerate(windows):
        if ws > start or end >= we:
            continue
        left = start - ws if ws > 0 else math.inf
        right = we - 1 - end if we < num_words else math.inf
        margin = min(left, right)
        if margin > best_margin:
            best, best_margin = i, margin
    return best


def merge_candidates(
    per_window: Sequence[Candidates], windows: Sequence[Window], num_words: int, family: str
) -> Candidates:
    """Window-local candidates -> text-level candidates in the reference's candidate order.

    Each span is kept only from its owner window (`owner_window`, computed for every
    candidate at once), so overlaps never duplicate it.
    """
    ws = np.array([w[0] for w in windows], dtype=np.int64)
    we = np.array([w[1] for w in windows], dtype=np.int64)
    parts = []
    for i, c in enumerate(per_window):
        gs, ge = c.starts + ws[i], c.ends + ws[i]
        inside = (ws[None, :] <= gs[:, None]) & (ge[:, None] < we[None, :])
        left = np.where(ws[None, :] > 0, gs[:, None] - ws[None, :], np.inf)
        right = np.where(we[None, :] < num_words, we[None, :] - 1 - ge[:, None], np.inf)
        margin = np.where(inside, np.minimum(left, right), -np.inf)
        mine = np.argmax(margin, axis=1) == i  # argmax: the first window on ties, as owner_window
        parts.append(Candidates(gs[mine], ge[mine], c.classes[mine], c.scores[mine]))
    starts = np.concatenate([p.starts for p in parts])
    ends = np.concatenate([p.ends for p in parts])
    classes = np.concatenate([p.classes for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    # span: start, then width (= end for one start), then class; token: start, class, end
    keys = (classes, ends, starts) if family == "span" else (ends, classes, starts)
    order = np.lexsort(keys)
    return Candidates(starts[order], ends[order], classes[order], scores[order])
