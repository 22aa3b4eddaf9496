"""Stage 4: enumerate the candidate spans of a batch.

`data_processing/utils.py::prepare_span_idx`: span (i, i+w) for every start i and
width w < max_width, start-major then width, inclusive ends. A span whose end is past
the text's last word, and every span of batch padding, is masked; the reference
multiplies `span_idx` by the mask before gathering, so masked spans become (0, 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def span_idx(num_words: Sequence[int], max_width: int) -> np.ndarray:
    """(B, W*max_width, 2) int64 span indices, masked spans set to (0, 0); W = max(num_words)."""
    grid, valid = span_grid(num_words, max_width)
    return grid[None, :, :] * valid[:, :, None]


def span_grid(num_words: Sequence[int], max_width: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch's (W*max_width, 2) spans in flat order and which are valid per text, (B, W*max_width)."""
    if max_width < 1:
        raise ValueError(f"max_width must be positive, got {max_width}")
    lengths = np.asarray(num_words, dtype=np.int64)
    width = int(lengths.max()) if lengths.size else 0
    starts = np.repeat(np.arange(width, dtype=np.int64), max_width)
    ends = starts + np.tile(np.arange(max_width, dtype=np.int64), width)
    valid = ends[None, :] <= (lengths[:, None] - 1)
    return np.stack([starts, ends], axis=-1), valid
