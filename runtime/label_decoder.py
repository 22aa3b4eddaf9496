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
from typing import Any, ClassVar

import numpy as np

from .entity_decoding import SpanCandidate, greedy_search, span_candidate_arrays
from .features import TextContext, make_context
from .generation_loop import GenerationParams
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
from .trie import LabelsTrie


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

    def run(self, request: Request) -> list[TextResult]:
        gen = request.generation or GenerationParams()
        if self.decoder.mode == "prompt" and gen.num_gen_sequences != 1:
            raise ValueError("decoder_mode 'prompt' names each label once: num_gen_sequences must be 1")
        trie = self.decoder.trie(request.gen_constraints)
        run_batch = self._token_batch if self.model.family == "token" else self._span_batch
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
            for i, entities in zip(rows, run_batch(contexts, request.params, gen, trie)):
                results[i] = TextResult(entities)
        return results

    def _span_batch(
        self,
        contexts: list[TextContext],
        params: InferenceParams,
        gen: GenerationParams,
        trie: LabelsTrie | None,
    ) -> list[list[Entity]]:
        runner, max_width = self.model.runner, self.model.manifest.max_width
        span_rep, prompts = runner.run(
            "text_encoder", encoder_feeds(self.model, self._encoder_contexts(contexts))
        )
        (probs,) = runner.run("scorer", {"span_rep": span_rep, "prompts": prompts})
        found = [
            span_candidate_arrays(p, c.num_words, params.threshold) for c, p in _own_labels(probs, contexts)
        ]
        kept = _greedy(found, params)
        if self.decoder.mode == "prompt":
            generated = self.decoder.generate(
                prompt_prefixes(prompts, [len(c.labels) for c in contexts]), trie, gen
            )
            return _prompt_entities(contexts, kept, generated)
        selected = selected_spans(probs, [c.num_words for c in contexts], params.threshold)
        dec_ids, dec_words = self._decoder_text(contexts)
        prefixes = span_prefixes(span_rep, selected, dec_ids, dec_words, max_width)
        generated = self.decoder.generate(prefixes, trie, gen)
        starts = [sel // max_width for sel in selected]
        spans = [np.stack([s, s + sel % max_width], axis=-1) for s, sel in zip(starts, selected)]
        return _span_mode_entities(contexts, kept, spans, generated)

    def _token_batch(
        self,
        contexts: list[TextContext],
        params: InferenceParams,
        gen: GenerationParams,
        trie: LabelsTrie | None,
    ) -> list[list[Entity]]:
        """Token decoder: token scores -> candidate spans (`extract_spans_from_tokens`) -> the
        span encoder's probabilities decide the entities; the span representations (span mode)
        or the raw label representations (prompt mode) are decoded."""
        runner = self.model.runner
        feeds = encoder_feeds(self.model, self._encoder_contexts(contexts))
        token_rep, prompts, word_rep, label_rep = runner.run("text_encoder", feeds)
        (probs,) = runner.run("scorer", {"token_rep": token_rep, "prompts": prompts})
        cands = select_token_entities(probs, params.threshold)
        span_feeds = {"word_rep": word_rep, "span_idx": cands.spans, "label_rep": label_rep}
        span_rep, span_scores = runner.run("span_encoder", span_feeds)
        found = [
            token_span_candidates(cands.spans[b], cands.mask[b], scores, c.num_words, params.threshold)
            for b, (c, scores) in enumerate(_own_labels(span_scores, contexts))
        ]
        kept = _greedy(found, params)
        if self.decoder.mode == "prompt":
            generated = self.decoder.generate(
                prompt_prefixes(label_rep, [len(c.labels) for c in contexts]), trie, gen
            )
            return _prompt_entities(contexts, kept, generated)
        selected = selected_token_spans(
            span_scores, cands.mask, [len(c.labels) for c in contexts], params.threshold
        )
        in_text = [
            sel[cands.spans[b, sel, 1] < c.num_words] for b, (sel, c) in enumerate(zip(selected, contexts))
        ]
        dec_ids, dec_words = self._decoder_text(contexts)
        prefixes = token_span_prefixes(span_rep, cands.spans, selected, dec_ids, dec_words, keep=in_text)
        generated = self.decoder.generate(prefixes, trie, gen)
        spans = [cands.spans[b, sel] for b, sel in enumerate(in_text)]
        return _span_mode_entities(contexts, kept, spans, generated)

    def _encoder_contexts(self, contexts: list[TextContext]) -> list[TextContext]:
        if self.decoder.mode == "prompt":  # class tokens only: the decoder names the classes
            return [replace(c, labels=LabelSet(("",) * len(c.labels), c.labels.names)) for c in contexts]
        return contexts

    def _decoder_text(self, contexts: list[TextContext]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(decoder token ids, 1-based word index per token) of a batch; None without context."""
        if not self.decoder.full_context:
            return None, None
        m = self.model.manifest
        return decoder_tokens(
            self.decoder.tokenizer,
            [build_prompt(c.labels.prompts, m.ent_token, m.sep_token) for c in contexts],
            [c.words.words[: c.num_words] for c in contexts],
        )


def _own_labels(scores: np.ndarray, contexts: Sequence[TextContext]) -> list[tuple[TextContext, np.ndarray]]:
    """(B, ..., C_max) scores -> each text's (..., C_b): the padded label columns cut."""
    return [(c, scores[b, ..., : len(c.labels)]) for b, c in enumerate(contexts)]


def _greedy(found: Sequence[Any], params: InferenceParams) -> list[list[SpanCandidate]]:
    return [greedy_search(f, flat_ner=params.flat_ner, multi_label=params.multi_label) for f in found]


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
