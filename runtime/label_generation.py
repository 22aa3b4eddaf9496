"""The generative label decoder's stages: spans (or labels) -> decoder prefixes -> labels (the
pipeline that composes them: `label_decoder.py`).

gliner 0.2.29, `modeling/base.py::UniEncoderSpanDecoderModel`, decoder_mode "span":

* a span is sent to the decoder when its best probability over the batch's label
  columns (padding columns included) is above the threshold (`select_span_decoder_embedding`);
* its prefix is [zeros..., projected span representation, decoder embeddings of the
  span's subword tokens], left-padded with zero vectors to `max_tokens + 1`, where
  `max_tokens` is the batch's largest token count, *counting the padding slots of the
  selection*: a padding slot has index -1, which the reference reads as the span
  (0, max_width - 1) of 1-based word indices, i.e. every token whose word index is
  below max_width, prompt, special and padding tokens included (their index is 0);
* the zero vectors are attended (generation passes no attention mask), so this padding
  changes the result and is reproduced exactly; sequences run b-major, spans in flat
  (start * max_width + width) order, all spans of a batch in one generation.

The decoder's text is the encoder's words (prompt included), every word after the first
prefixed with a space, tokenized by the decoder tokenizer (`processor.py::tokenize_inputs`);
token word indices are 1-based over the text words on every subtoken.

decoder_mode "prompt": each label's representation (after `prompt_rep_layer`) is one
sequence, and the generated strings replace the label names; the encoder's prompt has
no label names, only the class tokens (`prepare_inputs(add_entities=False)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from gliner_onnx.errors import ManifestError

from .beam_search import beam_search
from .entity_decoding import SpanCandidate
from .generation_loop import KIND_REP, KIND_TOKEN, GenerationParams, Prefixes, generate
from .tokenize import SubwordTokenizer, words_mask
from .trie import LabelsTrie, build_trie

DECODER_MODES = ("span", "prompt")
# Decoder sequences (prefixes x beams) generated together; a batch with more runs in chunks.
DECODE_SEQUENCES = 128


def decoder_words(prompt: Sequence[str], words: Sequence[str]) -> list[str]:
    """The decoder tokenizer's words: every word but the first prefixed with a space."""
    return [w if i == 0 else f" {w}" for i, w in enumerate([*prompt, *words])]


def decoder_tokens(
    tokenizer: SubwordTokenizer, prompts: Sequence[Sequence[str]], texts: Sequence[Sequence[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """(decoder input ids (B, T), 1-based text word index of every token, 0 elsewhere)."""
    batch = tokenizer.encode_words([decoder_words(p, t) for p, t in zip(prompts, texts)])
    skip = np.array([len(p) for p in prompts], dtype=np.int64)
    return batch.input_ids, words_mask(batch.word_ids, skip, "mean")


def selected_spans(probs: np.ndarray, num_words: Sequence[int], threshold: float) -> list[np.ndarray]:
    """Flat indices (start * max_width + width) of the spans each text sends to the decoder.

    probs: (B, W, max_width, C) over all the batch's label columns.
    """
    batch, width, max_width, _ = probs.shape
    best = probs.max(axis=-1).reshape(batch, width * max_width)
    starts = np.repeat(np.arange(width), max_width)
    ends = starts + np.tile(np.arange(max_width), width)
    out = []
    for b in range(batch):
        valid = ends < num_words[b]
        out.append(np.flatnonzero((best[b] > probs.dtype.type(threshold)) & valid))
    return out


def span_prefixes(
    span_rep: np.ndarray,
    selected: Sequence[np.ndarray],
    dec_ids: np.ndarray | None,
    dec_words: np.ndarray | None,
    max_width: int,
) -> Prefixes:
    """The prefixes of the selected spans. dec_ids/dec_words None: no decoder context
    (`full_decoder_context=False`): the prefix is the span representation alone."""
    batch, width = span_rep.shape[:2]
    flat_rep = span_rep.reshape(batch, width * max_width, -1)
    rep = _rows(flat_rep, selected)
    if dec_ids is None or dec_words is None:
        return _rep_only(rep)
    token_lists: list[np.ndarray] = []
    longest = 0
    for b, sel in enumerate(selected):
        starts = sel // max_width + 1
        ends = sel % max_width + starts
        for s, e in zip(starts.tolist(), ends.tolist()):
            inside = np.flatnonzero((dec_words[b] >= s) & (dec_words[b] <= e))
            token_lists.append(dec_ids[b, inside])
            longest = max(longest, len(inside))
        if len(sel) < width * max_width:  # padding slots: the span (0, max_width - 1)
            longest = max(longest, int((dec_words[b] <= max_width - 1).sum()))
    return _pack(rep, token_lists, longest + 1)


def selected_token_spans(
    span_scores: np.ndarray, span_mask: np.ndarray, num_labels: Sequence[int], threshold: float
) -> list[np.ndarray]:
    """Token decoder: the candidate slots each text sends to the decoder, those whose best
    probability over the text's own labels is above the threshold (the reference's
    selection, `select_token_decoder_embedding`, fixes 0.5 and counts padded label columns).

    span_scores: (B, S, C) over the batch's candidate slots; span_mask: (B, S).
    """
    th = span_scores.dtype.type(threshold)
    out = []
    for b, n in enumerate(num_labels):
        best = span_scores[b, :, :n].max(axis=-1, initial=-np.inf)
        out.append(np.flatnonzero((best > th) & (span_mask[b] > 0)))
    return out


def token_span_prefixes(
    span_rep: np.ndarray,
    spans: np.ndarray,
    selected: Sequence[np.ndarray],
    dec_ids: np.ndarray | None,
    dec_words: np.ndarray | None,
    keep: Sequence[np.ndarray] | None = None,
) -> Prefixes:
    """Token decoder: the prefixes of the selected candidate slots (`selected`, per text,
    indices into the batch's (B, S) slots); `keep`: the subset of those generated for
    (default all). As `select_token_decoder_embedding` with the span's own words: its
    tokens are those whose 1-based word index is in [start + 1, end + 1]. A text with
    fewer selected slots than S has padding slots (index -1), which read the slot S - 1
    of that text; its token count counts into the batch's prefix length, as the
    reference's `max_tokens` does.
    """
    keep = selected if keep is None else keep
    rep = _rows(span_rep, keep)
    if dec_ids is None or dec_words is None:
        return _rep_only(rep)
    slots = spans.shape[1]
    token_lists: list[np.ndarray] = []
    longest = 0

    def tokens(b: int, s: int, e: int) -> np.ndarray:
        return np.flatnonzero((dec_words[b] >= s + 1) & (dec_words[b] <= e + 1))

    for b, sel in enumerate(selected):
        kept = set(keep[b].tolist())
        for j in sel.tolist():
            inside = tokens(b, *spans[b, j].tolist())
            longest = max(longest, len(inside))
            if j in kept:
                token_lists.append(dec_ids[b, inside])
        if len(sel) < slots:
            longest = max(longest, len(tokens(b, *spans[b, slots - 1].tolist())))
    return _pack(rep, token_lists, longest + 1)


def _rows(rep: np.ndarray, selected: Sequence[np.ndarray]) -> np.ndarray:
    """(B, N, D) rows of each text's selected indices, concatenated (M, D) float32."""
    rows = [rep[b, sel] for b, sel in enumerate(selected)]
    out = np.concatenate(rows) if rows else np.zeros((0, rep.shape[-1]), np.float32)
    return out.astype(np.float32, copy=False)


def _rep_only(rep: np.ndarray) -> Prefixes:
    total = len(rep)
    return Prefixes(rep, np.zeros((total, 1), dtype=np.int64), np.full((total, 1), KIND_REP, dtype=np.int64))


def _pack(rep: np.ndarray, token_lists: Sequence[np.ndarray], length: int) -> Prefixes:
    """[zeros..., representation, tokens] per sequence, left-padded to `length`."""
    total = len(rep)
    ids = np.zeros((total, length), dtype=np.int64)
    kind = np.zeros((total, length), dtype=np.int64)
    for m, toks in enumerate(token_lists):
        n = len(toks)
        kind[m, length - n - 1] = KIND_REP
        if n:
            ids[m, length - n :] = toks
            kind[m, length - n :] = KIND_TOKEN
    return Prefixes(rep, ids, kind)


def prompt_prefixes(prompts: np.ndarray, num_labels: Sequence[int]) -> Prefixes:
    """Prompt mode: one sequence per label of each text, its representation alone."""
    rep = np.concatenate([prompts[b, :n] for b, n in enumerate(num_labels)])
    total = len(rep)
    return Prefixes(
        rep.astype(np.float32),
        np.zeros((total, 1), dtype=np.int64),
        np.full((total, 1), KIND_REP, dtype=np.int64),
    )


# transformers' `clean_up_tokenization` (applied by `decode` when the tokenizer asks for it).
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))  # fmt: skip


def clean_up_tokenization(text: str) -> str:
    for old, new in _CLEAN_UP:
        text = text.replace(old, new)
    return text


class LabelDecoder:
    """The decoder graphs, the decoder tokenizer and the manifest's decoder settings."""

    def __init__(
        self,
        settings: dict[str, Any],
        prefix: Any,
        step: Any,
        tokenizer: SubwordTokenizer,
        tokenizer_file: Path,
    ):
        mode = settings.get("mode")
        if mode not in DECODER_MODES:
            raise ManifestError(f"decoder mode {mode!r} is not one of {DECODER_MODES}")
        eos = settings.get("eos_token_id")
        if not isinstance(eos, int):
            raise ManifestError("the manifest's decoder settings need an integer 'eos_token_id'")
        self.mode: str = mode
        self.eos_token_id = eos
        pad = settings.get("pad_token_id")
        self.pad_token_id = pad if isinstance(pad, int) else eos
        bos = settings.get("bos_token_id")
        self.bos_token_id = bos if isinstance(bos, int) else None
        self.clean_up = bool(settings.get("clean_up_tokenization_spaces", False))
        positions = settings.get("max_positions")
        self.max_positions = positions if isinstance(positions, int) else None
        self.prefix, self.step = prefix, step
        self.tokenizer = tokenizer
        self._plain = Tokenizer.from_file(str(tokenizer_file))
        self._plain.no_padding()
        self._plain.no_truncation()

    def trie(self, gen_constraints: Sequence[str] | None) -> LabelsTrie | None:
        return build_trie(
            gen_constraints,
            lambda s: self._plain.encode(s).ids,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
        )

    def generate(
        self, prefixes: Prefixes, trie: LabelsTrie | None, params: GenerationParams
    ) -> list[list[str]]:
        """Per prefix, `num_gen_sequences` generated labels (best first)."""
        longest = prefixes.prefix_ids.shape[1] + params.max_new_tokens
        if self.max_positions is not None and len(prefixes) and longest > self.max_positions:
            raise ValueError(
                f"the decoder prefixes of this batch are {prefixes.prefix_ids.shape[1]} positions long: with "
                f"max_new_tokens={params.max_new_tokens} they exceed the decoder's {self.max_positions} "
                "positions; pass shorter texts, fewer labels or a smaller batch_size"
            )
        ids: list[list[list[int]]] = []
        # The reference generates every prefix of a batch at once; each sequence's result does
        # not depend on the others (same padded prefix, no attention across sequences), so
        # chunks keep the decoder's activations and key/value cache bounded: a text with
        # thousands of detected spans would otherwise need tens of GB.
        chunk = max(1, DECODE_SEQUENCES // params.num_gen_sequences)
        for lo in range(0, len(prefixes), chunk):
            part = prefixes[lo : lo + chunk]
            if lo and params.seed is not None:  # sampling: each chunk its own seeded stream
                params = replace(params, seed=params.seed + 1)
            if params.num_gen_sequences == 1:
                ids += [[seq] for seq in generate(
                    self.prefix, self.step, part, eos_token_id=self.eos_token_id, trie=trie, params=params
                )]  # fmt: skip
            else:
                ids += beam_search(
                    self.prefix,
                    self.step,
                    part,
                    eos_token_id=self.eos_token_id,
                    pad_token_id=self.pad_token_id,
                    trie=trie,
                    params=params,
                )
        flat = [seq for rows in ids for seq in rows]
        texts = self._plain.decode_batch(flat, skip_special_tokens=True) if flat else []
        if self.clean_up:
            texts = [clean_up_tokenization(t) for t in texts]
        n = params.num_gen_sequences
        return [list(texts[i : i + n]) for i in range(0, len(texts), n)]


def token_span_candidates(
    spans: np.ndarray, span_mask: np.ndarray, span_scores: np.ndarray, num_words: int, threshold: float
) -> list[SpanCandidate]:
    """Token decoder, one text: (start, end, class, score) of every candidate slot and label
    whose probability is above the threshold, in slot then label order (the reference's
    `TokenGenerativeDecoder.decode_generative`); spans past the text's words (from its
    padding in a batch) are dropped."""
    out: list[SpanCandidate] = []
    th = float(threshold)
    for j in np.flatnonzero(span_mask).tolist():
        start, end = spans[j].tolist()
        if end >= num_words:
            continue
        for cls, p in enumerate(span_scores[j].tolist()):
            if p > th:
                out.append((start, end, cls, p))
    return out
