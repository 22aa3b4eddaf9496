"""Stage 3: subword tokenization of pre-split words, once per batch.

Mirrors `tokenizer(words, is_split_into_words=True, truncation=True,
padding="longest")` of gliner 0.2.29 with the `tokenizers` library, and builds
`words_mask` from the word ids exactly as `data_processing/utils.py::prepare_word_mask`
does (it counts word-id *transitions*, so a word that yields no subtoken shifts the
following indices in the reference too).
"""

from __future__ import annotations

import threading
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
    """A `tokenizers.Tokenizer` set up like the reference's HF fast tokenizer call
    (`truncation=True, padding="longest"`).

    One tokenizer object serves every call: it neither pads nor truncates, and `_to_arrays`
    pads the batch (right, with the pad id, as the tokenizers library's BatchLongest padding).
    A batch with a sequence past `model_max_length` is encoded again by a copy that truncates
    as HF does, made on first need. A tokenizer object can be large (a 128k-piece Unigram
    vocabulary, DeBERTa-v3's: about 210 MB; 250k pieces, mDeBERTa-v3's: about 450 MB), so a
    second one held for padding and truncation would double that.
    """

    def __init__(self, path: str | Path, *, pad_token_id: int, pad_token: str, model_max_length: int | None):
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.no_truncation()
        self.num_special_tokens = self._tok.num_special_tokens_to_add(is_pair=False)
        limited = model_max_length is not None and 0 < model_max_length < _NO_LIMIT
        self._max_length = model_max_length if limited else None
        self._pad_id = pad_token_id
        self.pad_token = pad_token
        self.model_max_length = model_max_length
        self._truncating: Tokenizer | None = None
        self._lock = threading.Lock()

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def encode_words(self, batch: Sequence[Sequence[str]]) -> TokenBatch:
        """Encode pre-split words (one list per text), padded to the longest."""
        words = [list(w) for w in batch]
        encodings = self._tok.encode_batch(words, is_pretokenized=True)
        if self._overflows(encodings):
            encodings = self._truncator().encode_batch(words, is_pretokenized=True)
        return _to_arrays(encodings, self._pad_id)

    def word_costs(self, words: Sequence[str]) -> np.ndarray:
        """Subword tokens of each pre-split word (no special tokens, no truncation)."""
        if not words:
            return np.zeros(0, dtype=np.int64)
        enc = self._tok.encode(list(words), is_pretokenized=True, add_special_tokens=False)
        ids = np.array([w for w in enc.word_ids if w is not None], dtype=np.int64)
        return np.bincount(ids, minlength=len(words)).astype(np.int64)

    def encode_texts(self, texts: Sequence[str]) -> TokenBatch:
        """Encode plain strings (the bi-encoder's labels), padded to the longest."""
        encodings = self._tok.encode_batch(list(texts))
        if self._overflows(encodings):
            encodings = self._truncator().encode_batch(list(texts))
        return _to_arrays(encodings, self._pad_id)

    def _overflows(self, encodings: list) -> bool:
        return self._max_length is not None and any(len(e.ids) > self._max_length for e in encodings)

    def _truncator(self) -> Tokenizer:
        """A copy that truncates at `model_max_length` as HF's call does (made once)."""
        limit = self._max_length
        if limit is None:  # _overflows is False then
            raise RuntimeError("this tokenizer has no model_max_length to truncate at")
        with self._lock:
            if self._truncating is None:
                copy = Tokenizer.from_str(self._tok.to_str())
                copy.enable_truncation(max_length=limit)
                self._truncating = copy
            return self._truncating


def _to_arrays(encodings: list, pad_id: int) -> TokenBatch:
    """ids, attention mask and word ids (-1: special or padding) of a batch, right-padded to the
    longest with `pad_id`."""
    batch, longest = len(encodings), max((len(e.ids) for e in encodings), default=0)
    ids = np.full((batch, longest), pad_id, dtype=np.int64)
    mask = np.zeros((batch, longest), dtype=np.int64)
    word_ids = np.full((batch, longest), -1, dtype=np.int64)
    for row, e in enumerate(encodings):
        n = len(e.ids)
        ids[row, :n] = e.ids
        mask[row, :n] = e.attention_mask
        word_ids[row, :n] = [-1 if w is None else w for w in e.word_ids]
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
