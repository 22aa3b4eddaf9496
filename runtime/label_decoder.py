"""The generative decoder pipeline (span and token decoder archs, span and prompt modes).

words (truncated at max_len, no windows, as gliner) -> batches in input order ->
tokenize -> text encoder -> scorer (token models: -> candidate spans -> `span_encoder`)
-> greedy selection -> decoder prefixes (`label_generation`: the selected spans' or the labels'
representations, with the spans' decoder tokens) -> `decoder_prefix` / `decoder_step`
(greedy, sampling or beam search; `gen_constraints` as a trie) -> entity dicts with
`generated_labels` (span mode) or the generated label names (prompt mode).

Batching: input order, as the reference's DataLoader: a prefix's padding depends on its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .entity_decoding import SpanCandidate, greedy_search, span_candidate_arrays
from .features import TextContext, make_context
from .generation_loop import GenerationParams, Prefixes
from .label_generation import (
    LabelDecoder,
    decoder_tokens,
    prompt_prefixes,
    selected_spans,
    selected_token_spans,
    span_prefixes,
    token_span_candidates,
    token_span_prefixes,
)
from .labels import LabelSet, build_prompt
from .loaded import LoadedModel, encoder_feeds
from .options import InferenceParams
from .output import Entity, entity_dicts
from .relations import select_token_entities
from .request import Accepts, Request
from .result import TextResult
from .tokenize import SubwordTokenizer
from .trie import LabelsTrie


class DecoderInputs(NamedTuple):
    """What a decoder export's entity graphs give one batch before generation."""

    found: list[Any]  # per text: candidate arrays for greedy selection
    prefixes: Prefixes  # the decoder's prefixes, text after text
    spans: list[np.ndarray] | None  # span mode: each text's decoded (start, end) spans, prefix order


def encoder_contexts(contexts: Sequence[TextContext], mode: str) -> list[TextContext]:
    """The contexts as the text encoder sees them; prompt mode: class tokens only (the
    decoder names the classes)."""
    if mode == "prompt":
        return [replace(c, labels=LabelSet(("",) * len(c.labels), c.labels.names)) for c in contexts]
    return list(contexts)


class EntityGraphs:
    """The entity graphs of a decoder export (text encoder, scorer, and the token models'
    span encoder) and the decoder prefixes they give: what the pipeline runs before it
    generates, and what the export traces and validates (`export/graph_runs.py`)."""

    def __init__(
        self,
        model: LoadedModel,
        mode: str,
        full_context: bool = False,
        tokenizer: SubwordTokenizer | None = None,
    ):
        self.model = model
        self.mode = mode  # "span" | "prompt"
        self.full_context = full_context
        self.tokenizer = tokenizer  # the decoder's: full-context prefixes hold the text in its tokens

    def encoder_contexts(self, contexts: Sequence[TextContext]) -> list[TextContext]:
        return encoder_contexts(contexts, self.mode)

    def inputs(
        self, contexts: list[TextContext], threshold: float, every_slot: bool = False, prefixes: bool = True
    ) -> DecoderInputs:
        """Run the entity graphs on a batch; `every_slot` (token models) keeps the selected
        slots past a text's words in the prefixes, as gliner's own selection does (the runtime
        generates only for spans inside the text); without `prefixes`, the graphs only."""
        run = self._token if self.model.family == "token" else self._span
        return run(contexts, threshold, every_slot, prefixes)

    def _span(
        self, contexts: list[TextContext], threshold: float, every_slot: bool, prefixes: bool
    ) -> DecoderInputs:
        runner, max_width = self.model.runner, self.model.manifest.max_width
        span_rep, prompts = runner.run(
            "text_encoder", encoder_feeds(self.model, self.encoder_contexts(contexts))
        )
        (probs,) = runner.run("scorer", {"span_rep": span_rep, "prompts": prompts})
        found = [span_candidate_arrays(p, c.num_words, threshold) for c, p in _own_labels(probs, contexts)]
        if not prefixes:
            return DecoderInputs(found, _NO_PREFIXES, None)
        if self.mode == "prompt":
            return DecoderInputs(found, prompt_prefixes(prompts, [len(c.labels) for c in contexts]), None)
        selected = selected_spans(probs, [c.num_words for c in contexts], threshold)
        dec_ids, dec_words = self.decoder_text(contexts)
        starts = [sel // max_width for sel in selected]
        spans = [np.stack([s, s + sel % max_width], axis=-1) for s, sel in zip(starts, selected)]
        return DecoderInputs(found, span_prefixes(span_rep, selected, dec_ids, dec_words, max_width), spans)

    def _token(
        self, contexts: list[TextContext], threshold: float, every_slot: bool, prefixes: bool
    ) -> DecoderInputs:
        """Token scores -> candidate spans (`extract_spans_from_tokens`) -> the span encoder's
        probabilities decide the entities; the span representations (span mode) or the raw
        label representations (prompt mode) are decoded."""
        runner = self.model.runner
        feeds = encoder_feeds(self.model, self.encoder_contexts(contexts))
        token_rep, prompts, word_rep, label_rep = runner.run("text_encoder", feeds)
        (probs,) = runner.run("scorer", {"token_rep": token_rep, "prompts": prompts})
        cands = select_token_entities(probs, threshold)
        span_feeds = {"word_rep": word_rep, "span_idx": cands.spans, "label_rep": label_rep}
        span_rep, span_scores = runner.run("span_encoder", span_feeds)
        found = [
            token_span_candidates(cands.spans[b], cands.mask[b], scores, c.num_words, threshold)
            for b, (c, scores) in enumerate(_own_labels(span_scores, contexts))
        ]
        if not prefixes:
            return DecoderInputs(found, _NO_PREFIXES, None)
        if self.mode == "prompt":
            return DecoderInputs(found, prompt_prefixes(label_rep, [len(c.labels) for c in contexts]), None)
        selected = selected_token_spans(span_scores, cands.mask, [len(c.labels) for c in contexts], threshold)
        in_text = [
            sel[cands.spans[b, sel, 1] < c.num_words] for b, (sel, c) in enumerate(zip(selected, contexts))
        ]
        dec_ids, dec_words = self.decoder_text(contexts)
        keep = None if every_slot else in_text
        decoded = token_span_prefixes(span_rep, cands.spans, selected, dec_ids, dec_words, keep=keep)
        return DecoderInputs(found, decoded, [cands.spans[b, sel] for b, sel in enumerate(in_text)])

    def decoder_text(self, contexts: list[TextContext]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(decoder token ids, 1-based word index per token) of a batch; None without context."""
        if not self.full_context:
            return None, None
        if self.tokenizer is None:
            raise ValueError("full-context decoder prefixes need the decoder's tokenizer")
        m = self.model.manifest
        return decoder_tokens(
            self.tokenizer,
            [build_prompt(c.labels.prompts, m.ent_token, m.sep_token) for c in contexts],
            [c.words.words[: c.num_words] for c in contexts],
        )


_NO_PREFIXES = Prefixes(
    np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0), dtype=np.int64), np.zeros((0, 0), dtype=np.int64)
)


class DecoderPipeline:
    """Entities with generated labels, in input-order batches of whole texts."""

    accepts: ClassVar[Accepts] = Accepts("decoder", generation=True, windows=False)

    def __init__(self, model: LoadedModel):
        self.model = model
        m, runner = model.manifest, model.runner
        self.decoder = LabelDecoder(
            m.decoder,
            runner.graph("decoder_prefix"),
            runner.graph("decoder_step"),
            model.tokenizers["decoder"],
            model.directory / m.tokenizers["decoder"].file,
        )
        full_context = bool(m.decoder.get("full_context", True))
        self.graphs = EntityGraphs(model, self.decoder.mode, full_context, self.decoder.tokenizer)

    def run(self, request: Request) -> list[TextResult]:
        gen = request.generation or GenerationParams()
        if self.decoder.mode == "prompt" and gen.num_gen_sequences != 1:
            raise ValueError("decoder_mode 'prompt' names each label once: num_gen_sequences must be 1")
        trie = self.decoder.trie(request.gen_constraints)
        m = self.model.manifest
        results = [TextResult([]) for _ in request.texts]
        valid = [i for i, t in enumerate(request.texts) if t.strip()]
        for lo in range(0, len(valid), request.batch_size):
            rows = valid[lo : lo + request.batch_size]
            contexts = [
                make_context(
                    request.texts[i], request.label_sets[i], splitter=m.words_splitter, max_len=m.max_len
                )
                for i in rows
            ]
            for i, entities in zip(rows, self._batch(contexts, request.params, gen, trie)):
                results[i] = TextResult(entities)
        return results

    def _batch(
        self,
        contexts: list[TextContext],
        params: InferenceParams,
        gen: GenerationParams,
        trie: LabelsTrie | None,
    ) -> list[list[Entity]]:
        inputs = self.graphs.inputs(contexts, params.threshold)
        kept = [
            greedy_search(f, flat_ner=params.flat_ner, multi_label=params.multi_label) for f in inputs.found
        ]
        generated = self.decoder.generate(inputs.prefixes, trie, gen)
        if inputs.spans is None:
            return _prompt_entities(contexts, kept, generated)
        return _span_mode_entities(contexts, kept, inputs.spans, generated)


def _own_labels(scores: np.ndarray, contexts: Sequence[TextContext]) -> list[tuple[TextContext, np.ndarray]]:
    """(B, ..., C_max) scores -> each text's (..., C_b): the padded label columns cut."""
    return [(c, scores[b, ..., : len(c.labels)]) for b, c in enumerate(contexts)]


def _prompt_entities(
    contexts: list[TextContext], kept: list[list[SpanCandidate]], generated: list[list[str]]
) -> list[list[Entity]]:
    """Prompt mode: each text's generated labels name its classes, in order."""
    out, cursor = [], 0
    for c, k in zip(contexts, kept):
        names = tuple(g[0] for g in generated[cursor : cursor + len(c.labels)])
        cursor += len(c.labels)
        out.append(entity_dicts(replace(c, labels=LabelSet(c.labels.prompts, names)), k))
    return out


def _span_mode_entities(
    contexts: list[TextContext],
    kept: list[list[SpanCandidate]],
    spans: Sequence[np.ndarray],
    generated: list[list[str]],
) -> list[list[Entity]]:
    """Span mode: `generated` holds, text after text, the labels of each text's decoded
    (start, end) `spans`, in order; an entity gets those of its span (the first decoded
    slot of it, when a span was decoded twice)."""
    out, cursor = [], 0
    for c, k, s in zip(contexts, kept, spans):
        by_span: dict[tuple[int, ...], list[str]] = {}
        for span, labels in zip(s.tolist(), generated[cursor : cursor + len(s)]):
            by_span.setdefault(tuple(span), labels)
        cursor += len(s)
        entities = entity_dicts(c, k)
        for entity, (start, end, _cls, _score) in zip(entities, k):
            label = by_span.get((start, end))
            if label is not None:
                entity["generated_labels"] = list(label)
        out.append(entities)
    return out
