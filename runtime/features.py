"""Stages 1-4 composed: texts and labels -> the text encoder's input arrays.

One `TextContext` per text carries what post-processing needs (the text, its words
and offsets, the word count after truncation, its labels) from here to decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .labels import LabelSet, build_prompt
from .spans import span_idx
from .tokenize import SubwordTokenizer, words_mask
from .words import Words, split_words


@dataclass(frozen=True)
class TextContext:
    text: str
    words: Words
    num_words: int  # after the reference's max_len word truncation
    labels: LabelSet
    relations: tuple[str, ...] = ()  # relex models: the relation labels of the prompt


def make_context(text: str, labels: LabelSet, *, splitter: str, max_len: int) -> TextContext:
    words = split_words(text, splitter)
    return TextContext(text, words, min(len(words), max_len), labels)


def text_feeds(
    contexts: Sequence[TextContext],
    tokenizer: SubwordTokenizer,
    *,
    max_width: int,
    pooling: str,
    prompt_tokens: tuple[str, str] | None,
    with_spans: bool = True,
    rel_token: str | None = None,
) -> dict[str, np.ndarray]:
    """input_ids, attention_mask, words_mask, text_lengths (and span_idx) of a batch.

    prompt_tokens: (ent_token, sep_token) for uni-encoders, whose labels are
    prepended to the words; None for bi-encoders. with_spans: add span_idx (span family).
    rel_token: relex models, whose prompt also lists each context's relations.
    """
    tokens = [list(c.words.words[: c.num_words]) for c in contexts]
    lengths = [c.num_words for c in contexts]
    if prompt_tokens is None:
        batch = tokenizer.encode_words(tokens)
        skip = np.zeros(len(contexts), dtype=np.int64)
    else:
        ent, sep = prompt_tokens
        prompts = [build_prompt(c.labels.prompts, ent, sep, c.relations, rel_token) for c in contexts]
        batch = tokenizer.encode_words([p + t for p, t in zip(prompts, tokens)])
        skip = np.array([len(p) for p in prompts], dtype=np.int64)
    feeds = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "words_mask": words_mask(batch.word_ids, skip, pooling),
        "text_lengths": np.array(lengths, dtype=np.int64).reshape(-1, 1),
    }
    if with_spans:
        feeds["span_idx"] = span_idx(lengths, max_width)
    return feeds
