"""Relation extraction on the host, between the relex graphs (gliner 0.2.29).

entity selection -> (entity encoder) -> adjacency graph -> pair selection -> relation
scorer -> relation decoding. Each step is numpy over a batch, replicating the reference:

* span models, `UniEncoderSpanRelexModel.select_span_target_embedding`: spans whose best
  class probability is > threshold (float32) and that are valid, in flat (start, width)
  order, over every class slot of the batch (padding slots included);
* token models, `modeling/utils.py::extract_spans_from_tokens`: every (start, end) with the
  same class among start / end positions > threshold and every word between inside >
  threshold, over the whole padded batch;
* pairs, `build_entity_pairs`: ordered (i, j), i != j, row-major, with adjacency > the
  adjacency threshold (float32); `build_all_entity_pairs` without an adjacency layer;
* decoding, `SpanRelexDecoder._decode_relations`: a model entity maps to the *first*
  decoded entity with the same word boundaries (pairs with an entity greedy removed are
  dropped); a relation is kept when its probability, as a Python float, is >
  relation_threshold; order: pair, then relation class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .spans import span_grid

# A decoded relation: indices into the text's decoded entity list.
Relation = tuple[int, int, int, float]  # (head entity, tail entity, relation class, probability)


class EntityBatch(NamedTuple):
    """The entities a batch takes to relation scoring, padded to the batch's most."""

    spans: np.ndarray  # (B, E, 2) int64 inclusive word boundaries, padding (0, 0)
    mask: np.ndarray  # (B, E) int64
    counts: list[int]  # valid entities per text


def pack_entities(per_text: Sequence[np.ndarray], min_len: int = 0) -> EntityBatch:
    """Per-text (E_b, 2) entity spans padded into one batch (at least `min_len` slots)."""
    e_max = max([len(s) for s in per_text] + [min_len])
    spans = np.zeros((len(per_text), e_max, 2), dtype=np.int64)
    mask = np.zeros((len(per_text), e_max), dtype=np.int64)
    for b, s in enumerate(per_text):
        spans[b, : len(s)] = s
        mask[b, : len(s)] = 1
    return EntityBatch(spans, mask, [len(s) for s in per_text])


def select_span_entities(
    probs: np.ndarray, num_words: Sequence[int], threshold: float
) -> tuple[EntityBatch, list[np.ndarray]]:
    """Span relex: (entities, flat span indices per text) from (B, W, K, C) probabilities
    over the batch's padded class slots."""
    batch, width, max_width, _ = probs.shape
    best = probs.max(axis=-1).reshape(batch, width * max_width)
    grid, valid = span_grid(num_words, max_width)
    keep = (best > np.float32(threshold)) & valid
    flat = [np.flatnonzero(keep[b]) for b in range(batch)]
    return pack_entities([grid[f] for f in flat]), flat


def select_token_entities(probs: np.ndarray, threshold: float) -> EntityBatch:
    """Token relex: `extract_spans_from_tokens` on (B, W, C, 3) probabilities (start, end,
    inside) over the whole padded batch; at least one (padding) entity slot, as gliner."""
    th = np.float32(threshold)
    start_mask, end_mask, inside_mask = probs[..., 0] > th, probs[..., 1] > th, probs[..., 2] > th
    inside_cum = np.pad(np.cumsum(inside_mask, axis=1, dtype=np.int64), ((0, 0), (1, 0), (0, 0)))
    per_text = []
    for b in range(probs.shape[0]):
        s_pos, s_cls = np.nonzero(start_mask[b])
        e_pos, e_cls = np.nonzero(end_mask[b])
        si, ei = np.nonzero((s_cls[:, None] == e_cls[None, :]) & (s_pos[:, None] <= e_pos[None, :]))
        cs, ce, cc = s_pos[si], e_pos[ei], s_cls[si]
        inside = inside_cum[b, ce + 1, cc] - inside_cum[b, cs, cc]
        ok = inside == ce - cs + 1
        per_text.append(np.stack([cs[ok], ce[ok]], axis=-1).astype(np.int64).reshape(-1, 2))
    return pack_entities(per_text, min_len=1)


def gather_rows(rep: np.ndarray, index: np.ndarray) -> np.ndarray:
    """rep (B, N, D) at index (B, M) -> (B, M, D)."""
    return np.take_along_axis(rep, index[:, :, None], axis=1)


def span_entity_reps(span_rep: np.ndarray, flat: Sequence[np.ndarray], num_entities: int) -> np.ndarray:
    """Span relex: the selected rows of (B, W, K, D) span representations, zero-padded."""
    batch = span_rep.shape[0]
    rows = span_rep.reshape(batch, -1, span_rep.shape[-1])
    out = np.zeros((batch, num_entities, rows.shape[-1]), dtype=rows.dtype)
    for b, f in enumerate(flat):
        out[b, : len(f)] = rows[b, f]
    return out


def adjacency_pairs(adjacency: np.ndarray, threshold: float) -> list[np.ndarray]:
    """`build_entity_pairs`: per text the (head, tail) pairs, i != j, row-major, whose
    adjacency is > threshold (float32), over every entity slot of the padded batch."""
    e = adjacency.shape[1]
    rows, cols = np.nonzero(~np.eye(e, dtype=bool))
    sel = adjacency[:, rows, cols] > np.float32(threshold)
    return [np.stack([rows[s], cols[s]], axis=-1).astype(np.int64).reshape(-1, 2) for s in sel]


def all_pairs(counts: Sequence[int]) -> list[np.ndarray]:
    """`build_all_entity_pairs`: every ordered pair of the first `n` entities, row-major."""
    out = []
    for n in counts:
        rows, cols = np.nonzero(~np.eye(n, dtype=bool)) if n >= 2 else (np.zeros(0, int), np.zeros(0, int))
        out.append(np.stack([rows, cols], axis=-1).astype(np.int64).reshape(-1, 2))
    return out


def pad_pairs(pairs: Sequence[np.ndarray]) -> np.ndarray:
    """(B, N, 2) pair indices, padding -1 (gliner's `pair_idx`)."""
    n_max = max(len(p) for p in pairs)
    out = np.full((len(pairs), n_max, 2), -1, dtype=np.int64)
    for b, p in enumerate(pairs):
        out[b, : len(p)] = p
    return out


def entity_map(entity_spans: np.ndarray, decoded: Sequence[tuple[int, int]]) -> np.ndarray:
    """(E,) index of the *first* decoded entity with each model entity's word boundaries,
    -1 where greedy removed it (`_build_entity_span_to_decoded_idx`)."""
    first: dict[tuple[int, int], int] = {}
    for i, key in enumerate(decoded):
        first.setdefault(key, i)
    return np.array([first.get((s, e), -1) for s, e in entity_spans.tolist()], dtype=np.int64)


def surviving_pairs(pairs: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """The row numbers of `pairs` (N, 2; padding -1) whose head and tail both map to
    decoded entities: the only pairs whose relations gliner can report."""
    if len(pairs) == 0:
        return np.zeros(0, dtype=np.int64)
    ok = (pairs >= 0).all(axis=1)
    safe = np.maximum(pairs, 0)
    ok &= (mapping[safe[:, 0]] >= 0) & (mapping[safe[:, 1]] >= 0)
    return np.flatnonzero(ok)


def decode_relations(
    pairs: np.ndarray, probs: np.ndarray, mapping: np.ndarray, threshold: float
) -> list[Relation]:
    """Relations of one text (`_decode_relations`): pairs (N, 2) of model entities whose
    both ends map to decoded entities, probs (N, C_rel) of the text's relation classes.

    Kept when the probability, as a Python float, is > threshold; in pair order, then class.
    """
    if len(pairs) == 0 or probs.shape[-1] == 0:
        return []
    keep = probs.astype(np.float64) > threshold
    rows, classes = np.nonzero(keep)
    heads, tails = mapping[pairs[rows, 0]], mapping[pairs[rows, 1]]
    values = probs[rows, classes].tolist()
    return list(zip(heads.tolist(), tails.tolist(), classes.tolist(), values))
