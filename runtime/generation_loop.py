"""The generation loop of the label decoder, in numpy over the two decoder graphs.

It reproduces what gliner 0.2.29 gets from Hugging Face `generate`
(`modeling/decoder.py::Decoder.generate_from_embeds`) for one sequence per input:

* each step's logits go through, in order: the label trie's mask (`-inf` outside the
  allowed tokens; eos only when the trie allows nothing), the reference's
  `NumericalStabilityProcessor` (`-inf` -> float32 min, clip to +-1e9, + 1e-6), and when
  sampling, temperature then top-k 50 (transformers' default generation config);
* greedy takes the first maximum (torch's `argmax`); sampling draws from the softmax
  with a numpy `Generator` (seeded: reproducible; it cannot reproduce torch's draws);
* a sequence ends at eos; finished sequences are dropped from the batch and the cache.

`use_cache=False` re-runs the prefix graph on the whole sequence at every step instead
of one step on the key/value cache: the same tokens, for the benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .trie import LabelsTrie

KIND_ZERO, KIND_REP, KIND_TOKEN = 0, 1, 2
_F32_MIN = float(np.finfo(np.float32).min)


@dataclass(frozen=True)
class GenerationParams:
    """Generation settings with gliner's defaults (`model.py::generate_labels`).

    num_gen_sequences > 1 is beam search with that many beams, as gliner does it
    (`runtime/beam_search.py`); beam sampling when do_sample.
    """

    max_new_tokens: int = 15
    do_sample: bool = True
    temperature: float = 0.01
    top_k: int = 50
    num_gen_sequences: int = 1
    seed: int | None = None
    use_cache: bool = True

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "num_gen_sequences"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be a non-negative int (0: off), got {self.top_k!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (t > 0 and math.isfinite(t)):
            raise ValueError(f"temperature must be a positive number, got {t!r}")
        for name in ("do_sample", "use_cache"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise TypeError(f"seed must be an int or None, got {self.seed!r}")


@dataclass(frozen=True)
class Prefixes:
    """The decoder's input sequences: one per selected span (or label, prompt mode)."""

    span_rep: np.ndarray  # (M, label_dim) float32, before the decoder projection
    prefix_ids: np.ndarray  # (M, L) int64, decoder token ids where kind == KIND_TOKEN
    prefix_kind: np.ndarray  # (M, L) int64: KIND_ZERO / KIND_REP / KIND_TOKEN

    def __len__(self) -> int:
        return int(self.prefix_ids.shape[0])

    def __getitem__(self, rows: slice) -> Prefixes:
        return Prefixes(self.span_rep[rows], self.prefix_ids[rows], self.prefix_kind[rows])


def process_logits(
    logits: np.ndarray,
    generated: list[list[int]],
    trie: LabelsTrie | None,
    eos_token_id: int,
    params: GenerationParams,
) -> np.ndarray:
    """Each active row's scores after the reference's logits processors (and warpers)."""
    scores = logits.astype(np.float32, copy=True)
    if trie is not None:
        mask = np.full(scores.shape, -np.inf, dtype=np.float32)
        for row, seq in enumerate(generated):
            allowed = trie.get(seq) or [eos_token_id]
            mask[row, allowed] = 0.0
        scores = scores + mask
    scores = np.where(np.isneginf(scores), np.float32(_F32_MIN), scores)
    scores = np.clip(scores, -1e9, 1e9).astype(np.float32) + np.float32(1e-6)
    if params.do_sample:
        if params.temperature != 1.0:
            scores = scores / np.float32(params.temperature)
        k = min(params.top_k, scores.shape[-1])
        if k > 0:
            kth = np.partition(scores, -k, axis=-1)[:, -k][:, None]
            scores = np.where(scores < kth, -np.inf, scores)
    return scores


def choose(scores: np.ndarray, params: GenerationParams, rng: np.random.Generator) -> np.ndarray:
    """Greedy (first maximum) or one draw from softmax(scores) per row."""
    if not params.do_sample:
        return np.argmax(scores, axis=-1).astype(np.int64)
    z = scores.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    cdf = np.cumsum(z / z.sum(axis=-1, keepdims=True), axis=-1)
    draws = rng.random((scores.shape[0], 1))
    picked = (cdf < draws).sum(axis=-1)
    return np.minimum(picked, scores.shape[-1] - 1).astype(np.int64)


def generate(
    prefix_graph: Any,
    step_graph: Any,
    prefixes: Prefixes,
    *,
    eos_token_id: int,
    trie: LabelsTrie | None,
    params: GenerationParams,
) -> list[list[int]]:
    """Token ids generated for each prefix (eos excluded). The graphs are run as
    `graph.run(feeds) -> [logits, present]` (runtime `GraphSession`s)."""
    total = len(prefixes)
    out: list[list[int]] = [[] for _ in range(total)]
    if total == 0:
        return out
    rng = np.random.default_rng(params.seed)
    feeds: dict[str, np.ndarray] = {
        "span_rep": np.ascontiguousarray(prefixes.span_rep, dtype=np.float32),
        "prefix_ids": prefixes.prefix_ids.astype(np.int64),
        "prefix_kind": prefixes.prefix_kind.astype(np.int64),
    }
    first = prefix_graph.run(feeds)
    logits, cache = np.asarray(first[0]), np.asarray(first[1])
    active = np.arange(total)
    for step in range(params.max_new_tokens):
        scores = process_logits(logits, [out[i] for i in active], trie, eos_token_id, params)
        tokens = choose(scores, params, rng)
        done = tokens == eos_token_id
        for i, t in zip(active[~done].tolist(), tokens[~done].tolist()):
            out[i].append(t)
        keep = ~done
        if not keep.any() or step == params.max_new_tokens - 1:
            break
        active, tokens = active[keep], tokens[keep]
        if params.use_cache:
            past = cache if keep.all() else cache[:, :, keep]
            out_step = step_graph.run({"input_ids": tokens[:, None], "past": past})
            logits, cache = np.asarray(out_step[0]), np.asarray(out_step[1])
        else:
            feeds = {k: v[keep] for k, v in feeds.items()}
            feeds["prefix_ids"] = np.concatenate([feeds["prefix_ids"], tokens[:, None]], axis=1)
            kind = np.full((len(tokens), 1), KIND_TOKEN, dtype=np.int64)
            feeds["prefix_kind"] = np.concatenate([feeds["prefix_kind"], kind], axis=1)
            logits = np.asarray(prefix_graph.run(feeds)[0])
    return out
