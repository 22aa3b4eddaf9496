"""Stage 3: subword tokenization of pre-split words, once per batch.

Mirrors `tokenizer(words, is_split_into_words=True, truncation=True,
padding="longest")` of gliner 0.2.29 with the `tokenizers` library, and builds
`words_mask` from the word ids exactly as `data_processing/utils.py::prepare_word_mask`
does (it counts word-id *transitions*, so a word that yields no subtoken shifts the
following indices in the reference too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

# transformers uses int(1e30) for "no limit"; anything this large means no truncation.
_NO_LIMIT = 1_000_000


@dataclass(frozen=True)
class TokenBatch:
    input_ids: np.ndarray  # (B, T) int64
    attention_mask: np.ndarray  # (B, T) int64
    word_ids: np.ndarray  # (B, T) int64, -1 for special and padding tokens


class SubwordTokenizer:
    """A `tokenizers.Tokenizer` set up like the reference's HF fast tokenizer call."""

    def __init__(self, path: str | Path, *, pad_token_id: int, pad_token: str, model_max_length: int | None):
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.no_truncation()
        self._raw = Tokenizer.from_str(self._tok.to_str())  # no padding, no truncation
        self.num_special_tokens = self._raw.num_special_tokens_to_add(is_pair=False)
        if model_max_length is not None and 0 < model_max_length < _NO_LIMIT:
            self._tok.enable_truncation(max_length=model_max_length)
        self._tok.enable_padding(pad_id=pad_token_id, pad_token=pad_token)
        self.model_max_length = model_max_length

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def encode_words(self, batch: Sequence[Sequence[str]]) -> TokenBatch:
        """Encode pre-split words (one list per text), padded to the longest."""
        encodings = self._tok.encode_batch([list(words) for words in batch], is_pretokenized=True)
        return _to_arrays(encodings)

    def word_costs(self, words: Sequence[str]) -> np.ndarray:
        """Subword tokens of each pre-split word (no special tokens, no truncation)."""
        if not words:
            return np.zeros(0, dtype=np.int64)
        enc = self._raw.encode(list(words), is_pretokenized=True, add_special_tokens=False)
        ids = np.array([w for w in enc.word_ids if w is not None], dtype=np.int64)
        return np.bincount(ids, minlength=len(words)).astype(np.int64)

    def encode_texts(self, texts: Sequence[str]) -> TokenBatch:
        """Encode plain strings (the bi-encoder's labels), padded to the longest."""
        return _to_arrays(self._tok.encode_batch(list(texts)))


def _to_arrays(encodings: list) -> TokenBatch:
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    word_ids = np.array([[-1 if w is None else w for w in e.word_ids] for e in encodings], dtype=np.int64)
    return TokenBatch(ids, mask, word_ids)


def words_mask(word_ids: np.ndarray, skip_first_words: np.ndarray, pooling: str = "first") -> np.ndarray:
    """1-based text-word index on the selected subtokens, 0 elsewhere.

    `skip_first_words[b]` prompt words of row b are masked (their count is the
    prompt length); `pooling` selects the first, last or every subtoken of a word.
    """
    if word_ids.ndim != 2:
        raise ValueError(f"word_ids must be 2-D, got shape {word_ids.shape}")
    batch = word_ids.shape[0]
    sentinel = np.full((batch, 1), -1, dtype=word_ids.dtype)
    prev = np.concatenate([sentinel, word_ids[:, :-1]], axis=1)
    is_word = word_ids >= 0
    first = is_word & (word_ids != prev)
    seen = np.cumsum(first, axis=1)
    if pooling == "first":
        select = first
    elif pooling == "last":
        nxt = np.concatenate([word_ids[:, 1:], sentinel], axis=1)
        select = is_word & (nxt != word_ids)
    elif pooling in ("mean", "max"):
        select = is_word
    else:
        raise ValueError(f"unknown subtoken pooling {pooling!r}")
    skip = np.asarray(skip_first_words, dtype=np.int64).reshape(batch, 1)
    keep = select & (seen > skip)
    return np.where(keep, seen - skip, 0).astype(np.int64)
