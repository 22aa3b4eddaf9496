"""Beam search over the decoder graphs: gliner's `num_gen_sequences > 1`.

gliner 0.2.29 passes `num_beams = num_return_sequences = num_gen_sequences` to Hugging Face
`generate`, so several labels per span come from beam search (beam sampling when
`do_sample`). This is a numpy port of transformers' vectorized `_beam_search`
(`generation/utils.py`, 5.x) with its default settings (length_penalty 1.0,
early_stopping False): per step the log-softmax goes through the same logits processors
as greedy decoding (`generation_loop.process_logits`), is added to the running beam scores, and
the top 2 x num_beams continuations over all beams (or as many drawn without replacement
from their softmax, when sampling) become the candidates; finished candidates (eos or the
last step) enter the finished set with their score divided by their length. All beams of
all inputs run as one batch on the key/value cache, which is reordered by beam each step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .generation_loop import GenerationParams, Prefixes, process_logits
from .trie import LabelsTrie

_NEG = np.float32(-1.0e9)
LENGTH_PENALTY = 1.0


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32)


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest per row, largest first (ties: lower index first)."""
    return np.argsort(-values, axis=-1, kind="stable")[:, :k]


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """a[b, idx[b, j], ...] for every row b."""
    return np.take_along_axis(a, idx.reshape(*idx.shape, *([1] * (a.ndim - 2))), axis=1)


def _draw(acc: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k indices per row drawn without replacement from softmax(acc) (torch.multinomial)."""
    out = np.empty((acc.shape[0], k), dtype=np.int64)
    z = acc.astype(np.float64)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    for row in range(acc.shape[0]):
        out[row] = rng.choice(acc.shape[1], size=k, replace=False, p=p[row])
    return out


def beam_search(
    prefix_graph: Any,
    step_graph: Any,
    prefixes: Prefixes,
    *,
    eos_token_id: int,
    pad_token_id: int,
    trie: LabelsTrie | None,
    params: GenerationParams,
) -> list[list[list[int]]]:
    """Per prefix, `num_gen_sequences` token lists (best first; eos and padding removed)."""
    batch, beams, max_len = len(prefixes), params.num_gen_sequences, params.max_new_tokens
    if batch == 0:
        return []
    keep = 2 * beams
    rng = np.random.default_rng(params.seed)
    first = prefix_graph.run(
        {
            "span_rep": prefixes.span_rep,
            "prefix_ids": prefixes.prefix_ids,
            "prefix_kind": prefixes.prefix_kind,
        }
    )
    logits = np.repeat(np.asarray(first[0]), beams, axis=0)  # inputs are repeated per beam
    cache = np.repeat(np.asarray(first[1]), beams, axis=2)
    vocab = logits.shape[-1]
    running = np.full((batch, beams, max_len), pad_token_id, dtype=np.int64)
    finished_seqs = running.copy()
    running_scores = np.zeros((batch, beams), dtype=np.float32)
    running_scores[:, 1:] = _NEG
    finished_scores = np.full((batch, beams), _NEG, dtype=np.float32)
    is_finished = np.zeros((batch, beams), dtype=bool)
    improvable = np.ones((batch, 1), dtype=bool)
    top_beams = np.arange(keep) < beams
    offsets = (np.arange(batch) * beams)[:, None]
    cur = 0
    while True:
        generated = running.reshape(batch * beams, max_len)[:, :cur].tolist()
        log_probs = process_logits(_log_softmax(logits), generated, trie, eos_token_id, params)
        acc = (log_probs.reshape(batch, beams, vocab) + running_scores[:, :, None]).reshape(batch, -1)
        if params.do_sample:
            idx = _draw(acc, keep, rng)
        else:
            idx = _top(acc, keep)
        cand_scores = np.take_along_axis(acc, idx, axis=1).astype(np.float32)
        source = idx // vocab
        cand_seqs = _take(running, source).copy()
        cand_seqs[:, :, cur] = idx % vocab
        hits = (cand_seqs[:, :, cur] == eos_token_id) | (cur + 1 >= max_len)
        # the best unfinished candidates keep running
        run_scores = cand_scores + hits.astype(np.float32) * _NEG
        nxt = _top(run_scores, beams)
        running = _take(cand_seqs, nxt)
        running_scores = np.take_along_axis(run_scores, nxt, axis=1)
        beam_source = np.take_along_axis(source, nxt, axis=1) + offsets
        # finished candidates among the top num_beams enter the finished set
        just = hits & top_beams[None, :]
        done_scores = cand_scores / np.float32((cur + 1) ** LENGTH_PENALTY)
        done_scores = (
            done_scores + (~improvable).astype(np.float32) * _NEG + (~just).astype(np.float32) * _NEG
        )
        merged_scores = np.concatenate([finished_scores, done_scores], axis=1)
        best = _top(merged_scores, beams)
        finished_seqs = _take(np.concatenate([finished_seqs, cand_seqs], axis=1), best)
        finished_scores = np.take_along_axis(merged_scores, best, axis=1)
        is_finished = np.take_along_axis(np.concatenate([is_finished, just], axis=1), best, axis=1)
        cur += 1
        # transformers' early-stop heuristic (early_stopping=False): can a running beam still win?
        best_possible = running_scores[:, :1] / np.float32(cur**LENGTH_PENALTY)
        worst = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), _NEG)
        improvable = improvable & (best_possible > worst).any(axis=-1, keepdims=True)
        if not improvable.any() or hits.all():
            break
        step = step_graph.run(
            {"input_ids": running[:, :, cur - 1].reshape(-1, 1), "past": cache[:, :, beam_source.reshape(-1)]}
        )
        logits, cache = np.asarray(step[0]), np.asarray(step[1])
    special = {eos_token_id, pad_token_id}
    return [[[t for t in seq if t not in special] for seq in rows] for rows in finished_seqs.tolist()]
