"""Windows of whole texts for the entity and relex pipelines: a text that fits the word
and subword limits (with the labels' prompt) is one window, exactly gliner's input; a
longer one is cut into overlapping windows (`windows.py`) and their candidates merged."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .entity_decoding import Candidates, SpanCandidate, span_candidate_arrays, token_candidates
from .features import TextContext
from .labels import LabelSet, build_prompt
from .loaded import LoadedModel
from .windows import Window, merge_candidates, plan_windows
from .words import Words, split_words

MIN_TEXT_TOKENS = 16  # subword room a text needs beside the labels' prompt
Found = Candidates | list[SpanCandidate]  # span candidates come as arrays, token ones as lists


@dataclass(frozen=True)
class Plan:
    """A whole text (its words untruncated) and the windows it is run in."""

    context: TextContext
    windows: list[Window]

    def window_context(self, window: Window) -> TextContext:
        ws, we = window
        c = self.context
        words = Words(c.words.words[ws:we], c.words.starts[ws:we], c.words.ends[ws:we])
        return TextContext(c.text, words, we - ws, c.labels, c.relations)


def plan_text(
    model: LoadedModel,
    text: str,
    labels: LabelSet,
    window: int,
    overlap: int,
    relations: tuple[str, ...] = (),
) -> Plan:
    """Split the words; one window if they fit the word and subword limits, else several."""
    m = model.manifest
    words = split_words(text, m.words_splitter)
    context = TextContext(text, words, len(words), labels, relations)
    tok = model.tokenizers["text"]
    prompt = (
        []
        if model.is_biencoder
        else build_prompt(labels.prompts, m.ent_token, m.sep_token, relations, m.rel_token)
    )
    costs = tok.word_costs(prompt + list(words.words))
    prompt_cost = int(costs[: len(prompt)].sum())
    text_costs = costs[len(prompt) :]
    limit = tok.model_max_length
    budget = math.inf if limit is None else limit - tok.num_special_tokens - prompt_cost
    if budget < MIN_TEXT_TOKENS:
        raise ValueError(_too_many_labels(model, labels, limit))
    if len(words) <= window and text_costs.sum() <= budget:
        return Plan(context, [(0, len(words))])
    # -1: a window's first word may cost one more subword than inside the whole text.
    return Plan(context, plan_windows(text_costs, max_words=window, max_cost=budget - 1, overlap=overlap))


def _too_many_labels(model: LoadedModel, labels: LabelSet, limit: int | None) -> str:
    m = model.manifest
    tok = model.tokenizers["text"]
    fit = 0
    for k in range(1, len(labels) + 1):
        cost = int(tok.word_costs(build_prompt(labels.prompts[:k], m.ent_token, m.sep_token)).sum())
        if limit is not None and cost + tok.num_special_tokens + MIN_TEXT_TOKENS > limit:
            break
        fit = k
    return (
        f"{len(labels)} labels do not fit the encoder's {limit} subword tokens together with a text; "
        f"at most {fit} of these labels fit: pass fewer labels per call"
    )


def window_candidates(
    family: str, scores: np.ndarray, contexts: Sequence[TextContext], threshold: float, best_label_only: bool
) -> list[Found]:
    """Window-local candidates of each context from the batch's probabilities (span:
    (B, W, max_width, C), token: (B, W, C, 3)), the padded label columns cut.
    best_label_only (span models, greedy without multi_label): a span's best label only."""
    out: list[Found] = []
    for b, c in enumerate(contexts):
        if family == "span":
            probs = scores[b, :, :, : len(c.labels)]
            out.append(span_candidate_arrays(probs, c.num_words, threshold, best_label_only=best_label_only))
        else:
            out.append(token_candidates(scores[b, :, : len(c.labels)], c.num_words, threshold))
    return out


def text_candidates(family: str, plan: Plan, parts: Sequence[Found]) -> Found:
    """The candidates of a whole text from those of its windows (each span from its owner)."""
    if len(parts) == 1:
        return parts[0]
    arrays = [p if isinstance(p, Candidates) else Candidates.from_list(p) for p in parts]
    return merge_candidates(arrays, plan.windows, plan.context.num_words, family)
