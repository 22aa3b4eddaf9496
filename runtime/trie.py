"""The label trie of `gen_constraints`: which decoder tokens may come next.

A port of gliner 0.2.29's `decoding/trie/python_labels_trie.py::LabelsTrie` (children
kept in insertion order) and of `UniEncoderSpanDecoderGLiNER.set_labels_trie`: each
label is encoded with the decoder tokenizer (special tokens as it adds them, a leading
bos dropped) and ends with eos. A prefix that leaves the trie allows nothing, and the
generation loop then allows eos only, as the reference does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class LabelsTrie:
    def __init__(self, sequences: Sequence[Sequence[int]]):
        self._root: dict[int, Any] = {}
        for seq in sequences:
            node = self._root
            for token in seq:
                node = node.setdefault(int(token), {})

    def get(self, prefix: Sequence[int]) -> list[int]:
        """The tokens that may follow `prefix` (in the order they were first added)."""
        node = self._root
        for token in prefix:
            child = node.get(int(token))
            if child is None:
                return []
            node = child
        return list(node)


def constraint_sequences(
    labels: Sequence[str], encode: Any, *, bos_token_id: int | None, eos_token_id: int
) -> list[list[int]]:
    """Token ids of each constraint label as the reference's trie holds them."""
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise TypeError(f"gen_constraints must be a list of strings, got {type(labels).__name__}")
    out = []
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise TypeError(f"gen_constraints[{i}] must be a string, got {type(label).__name__}: {label!r}")
        tokens = list(encode(label))
        if not tokens:
            raise ValueError(f"gen_constraints[{i}] = {label!r} encodes to no decoder token")
        if tokens[0] == bos_token_id:
            tokens = tokens[1:]
        out.append([*tokens, eos_token_id])
    return out


def build_trie(
    labels: Sequence[str] | None, encode: Any, *, bos_token_id: int | None, eos_token_id: int
) -> LabelsTrie | None:
    """The trie of `gen_constraints`, or None when there are none (the reference: falsy)."""
    if labels is None:
        return None
    if not isinstance(labels, str) and isinstance(labels, Sequence) and len(labels) == 0:
        return None
    return LabelsTrie(
        constraint_sequences(labels, encode, bos_token_id=bos_token_id, eos_token_id=eos_token_id)
    )
