"""Bi-encoder labels: the label encoder's embeddings cached by label text, the factorized
head's folded keys (`label_projector`) cached with them, and the keys of caller-given
embedding arrays cached by content. One lock guards both caches (one model, many threads)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .features import TextContext
from .labels import LabelSet, is_per_text
from .runner import GraphRunner
from .tokenize import SubwordTokenizer

LABEL_CACHE_SIZE = 100_000
GIVEN_CACHE_SIZE = 16  # label embedding arrays (label sets) passed by the caller


class LabelRow(NamedTuple):
    """A cached label: its final embedding and, for factorized bi-encoders, its key and bias."""

    embedding: np.ndarray
    key: np.ndarray | None = None
    bias: np.ndarray | None = None


class LabelStore:
    """The label encoder (and projector) of a bi-encoder export, behind two caches."""

    def __init__(self, runner: GraphRunner, tokenizer: SubwordTokenizer):
        self._runner = runner
        self._tokenizer = tokenizer
        self.keyed = runner.has("label_projector")  # factorized span head: keys and bias
        self._by_text: OrderedDict[str, LabelRow] = OrderedDict()
        self._by_content: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """The number of labels cached by text."""
        with self._lock:
            return len(self._by_text)

    def clear(self) -> None:
        with self._lock:
            self._by_text.clear()
            self._by_content.clear()

    def embeddings(self, prompts: Sequence[str]) -> np.ndarray:
        """(N, hidden) final embeddings of cached `prompts` (see `ensure`), one row each."""
        with self._lock:
            return np.stack([self._by_text[p].embedding for p in prompts])

    def ensure(self, prompts: Sequence[str], batch_size: int = 32) -> None:
        """Encode (and project) the prompts not cached yet, `batch_size` at a time."""
        with self._lock:
            missing = list(dict.fromkeys(p for p in prompts if p not in self._by_text))
        if not missing:
            return
        encoded: dict[str, LabelRow] = {}
        for lo in range(0, len(missing), batch_size):
            part = missing[lo : lo + batch_size]
            tb = self._tokenizer.encode_texts(part)
            (emb,) = self._runner.run(
                "label_encoder", {"input_ids": tb.input_ids, "attention_mask": tb.attention_mask}
            )
            if self.keyed:
                keys, bias = self._runner.run("label_projector", {"label_embeddings": emb})
                encoded.update((p, LabelRow(*row)) for p, row in zip(part, zip(emb, keys, bias)))
            else:
                encoded.update((p, LabelRow(e)) for p, e in zip(part, emb))
        with self._lock:
            for p, row in encoded.items():
                self._by_text[p] = row
                self._by_text.move_to_end(p)
            while len(self._by_text) > LABEL_CACHE_SIZE:
                self._by_text.popitem(last=False)

    def feeds(self, contexts: Sequence[TextContext], given: np.ndarray | None) -> dict[str, np.ndarray]:
        """The scorer's label inputs for a batch, zero-padded per text: `prompts`
        (B, C_max, hidden), or for factorized bi-encoders `label_keys` (B, C_max, 4 x hidden)
        and `label_bias` (B, C_max). given: caller-given embeddings shared by every text."""
        batch = len(contexts)
        if given is not None:
            if not self.keyed:
                return {"prompts": _broadcast(given, batch)}
            keys, bias = self._project_given(given)
            return {"label_keys": _broadcast(keys, batch), "label_bias": _broadcast(bias, batch)}
        self.ensure([p for c in contexts for p in c.labels.prompts])
        with self._lock:
            rows = [[self._by_text[p] for p in c.labels.prompts] for c in contexts]
        c_max = max(len(r) for r in rows)
        if not self.keyed:
            prompts = np.zeros((batch, c_max, rows[0][0].embedding.shape[-1]), dtype=np.float32)
            for b, r in enumerate(rows):
                prompts[b, : len(r)] = np.stack([row.embedding for row in r])
            return {"prompts": prompts}
        width = np.asarray(rows[0][0].key).shape[-1]
        keys = np.zeros((batch, c_max, width), dtype=np.float32)
        bias = np.zeros((batch, c_max), dtype=np.float32)
        for b, r in enumerate(rows):
            keys[b, : len(r)] = np.stack([np.asarray(row.key) for row in r])
            bias[b, : len(r)] = [row.bias for row in r]
        return {"label_keys": keys, "label_bias": bias}

    def _project_given(self, given: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keys and bias of caller-given label embeddings, cached by the array's content."""
        data = np.ascontiguousarray(given, dtype=np.float32)
        digest = hashlib.blake2b(data.tobytes(), digest_size=16)
        digest.update(repr(data.shape).encode())
        key = digest.digest()
        with self._lock:
            hit = self._by_content.get(key)
            if hit is not None:
                self._by_content.move_to_end(key)
                return hit
        keys, bias = self._runner.run("label_projector", {"label_embeddings": data})
        with self._lock:
            self._by_content[key] = (keys, bias)
            while len(self._by_content) > GIVEN_CACHE_SIZE:
                self._by_content.popitem(last=False)
        return keys, bias


def _broadcast(a: np.ndarray, batch: int) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(a, (batch, *a.shape)))


def check_label_embeddings(
    label_embeddings: Any, labels: Any, label_sets: Sequence[LabelSet], store: LabelStore | None, arch: str
) -> np.ndarray | None:
    """The caller's `label_embeddings` as float32 (N, hidden) for the N distinct shared labels."""
    if label_embeddings is None:
        return None
    if store is None:
        raise ValueError(f"label_embeddings need a bi-encoder export; this one is {arch!r}")
    emb = np.asarray(label_embeddings)
    if emb.dtype != np.float32:
        emb = emb.astype(np.float32)
    if is_per_text(labels):
        raise ValueError("label_embeddings work with one shared label list, not per-text labels")
    n = len(label_sets[0]) if label_sets else 0
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(
            f"label_embeddings must have shape ({n}, hidden) for the {n} distinct labels, got {emb.shape}"
        )
    return emb
