"""The relex pipeline (span and token relation extraction).

words -> windows (`planning`) -> batches in input order -> tokenize (the prompt lists
the relation labels) -> text encoder -> scorer -> entity candidates per window, and the
model's entities (before greedy, over the batch's padding, as gliner) -> entity reps
(span rows, or the `entity_encoder` for tokens) -> `relation_adjacency` -> pairs ->
merged candidates per text -> greedy selection -> entity dicts -> the pairs whose both
ends survived -> `relation_scorer` in chunks -> relation dicts.

Batching: input order, as gliner's batches: with contextual adjacency layers (attention,
gcn, gat) an entity's pairs depend on the batch's padding entities.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np

from . import relations as rel
from .entity_decoding import SpanCandidate, greedy_search
from .features import TextContext
from .loaded import LoadedModel, encoder_feeds
from .output import Entity, RelationDict, entity_dicts, relation_dicts
from .planning import Found, plan_text, text_candidates, window_candidates
from .request import Accepts, Request
from .result import TextResult
from .windows import Window

PAIR_CHUNK = 4096  # relation scorer pairs per call: memory stays bounded at any threshold


# The model's entities of a batch, and (span models) each one's flat span index per text.
Selected = tuple[rel.EntityBatch, list[np.ndarray] | None]


class RelexJob(NamedTuple):
    """What one window keeps for relation decoding after the entity graphs ran."""

    entity_spans: np.ndarray  # (E, 2) window-local word boundaries of the model's entities
    entity_rep: np.ndarray  # (E, hidden)
    pairs: np.ndarray  # (P, 2) candidate (head, tail) entity pairs, -1 padding removed
    rel_prompts: np.ndarray  # (C_rel, hidden) of this text's relation labels


class RelexPipeline:
    """Entities and relations of relex exports, in input-order batches of windows."""

    accepts: ClassVar[Accepts] = Accepts("relex", relations=True)

    def __init__(self, model: LoadedModel):
        self.model = model

    def run(self, request: Request) -> list[TextResult]:
        params = request.params
        threshold = params.threshold
        adjacency = threshold if params.adjacency_threshold is None else params.adjacency_threshold
        relation = threshold if params.relation_threshold is None else params.relation_threshold
        results = [TextResult([], [] if request.with_relations else None) for _ in request.texts]
        plans = {
            i: plan_text(
                self.model,
                t,
                request.label_sets[i],
                request.window,
                request.overlap,
                request.relation_sets[i],
            )
            for i, t in enumerate(request.texts)
            if t.strip()
        }
        jobs = [(i, w) for i, plan in plans.items() for w in plan.windows]
        per_job: list[Found] = [[] for _ in jobs]
        relex_jobs: list[RelexJob | None] = [None] * len(jobs)
        for lo in range(0, len(jobs), request.batch_size):
            batch = range(lo, min(lo + request.batch_size, len(jobs)))
            contexts = [plans[jobs[j][0]].window_context(jobs[j][1]) for j in batch]
            found, kept_for_relations = self.batch(contexts, threshold, adjacency, not params.multi_label)
            for j, f, r in zip(batch, found, kept_for_relations):
                per_job[j], relex_jobs[j] = f, r
        k = 0
        for i, plan in plans.items():
            first, k = k, k + len(plan.windows)
            candidates = text_candidates(self.model.family, plan, per_job[first:k])
            kept = greedy_search(candidates, flat_ner=params.flat_ner, multi_label=params.multi_label)
            entities = entity_dicts(plan.context, kept)
            found_relations = None
            if request.with_relations:
                windows = list(zip(plan.windows, relex_jobs[first:k]))
                found_relations = self.relations(plan.context, kept, entities, windows, relation)
            results[i] = TextResult(entities, found_relations)
        return results

    def batch(
        self, contexts: list[TextContext], threshold: float, adjacency_threshold: float, best_label_only: bool
    ) -> tuple[list[Found], list[RelexJob]]:
        """Entity candidates of a batch and, per context, the model's entities and pairs."""
        feeds, probs = self.entity_graphs(contexts)
        found = window_candidates(self.model.family, probs, contexts, threshold, best_label_only)
        entities = self.select_entities(contexts, probs, threshold)
        return found, self.relation_jobs(contexts, feeds, entities, adjacency_threshold)

    def entity_graphs(self, contexts: list[TextContext]) -> tuple[dict[str, Any], np.ndarray]:
        """Text encoder and scorer: (every feed and output so far, by name; the probabilities)."""
        runner = self.model.runner
        feeds: dict[str, Any] = dict(encoder_feeds(self.model, contexts))
        feeds.update(
            zip(self.model.manifest.graphs["text_encoder"].outputs, runner.run("text_encoder", feeds))
        )
        (probs,) = runner.run("scorer", feeds)
        return feeds, probs

    def select_entities(self, contexts: list[TextContext], probs: np.ndarray, threshold: float) -> Selected:
        """The model's entities at `threshold`, before greedy decoding, over the batch's padding
        (as gliner); span models: also each entity's flat span index."""
        if self.model.family == "span":
            return rel.select_span_entities(probs, [c.num_words for c in contexts], threshold)
        return rel.select_token_entities(probs, threshold), None

    def relation_jobs(
        self,
        contexts: list[TextContext],
        feeds: dict[str, Any],
        selected: Selected,
        adjacency_threshold: float,
    ) -> list[RelexJob]:
        """The entities' representations (span rows, or the `entity_encoder`) and candidate
        pairs (every ordered pair, or the `relation_adjacency` above its threshold), per context."""
        runner = self.model.runner
        entities, flat = selected
        if flat is not None:
            entity_rep = rel.span_entity_reps(feeds["span_rep"], flat, entities.spans.shape[1])
        else:
            (entity_rep,) = runner.run(
                "entity_encoder", {"word_rep": feeds["word_rep"], "entity_spans": entities.spans}
            )
        if not runner.has("relation_adjacency"):
            pairs = rel.all_pairs(entities.counts)
        elif entities.spans.shape[1] >= 2:
            (adjacency,) = runner.run(
                "relation_adjacency", {"entity_rep": entity_rep, "entity_mask": entities.mask}
            )
            pairs = rel.adjacency_pairs(adjacency, adjacency_threshold)
        else:  # one entity slot has no pair (i != j)
            pairs = [np.zeros((0, 2), dtype=np.int64)] * len(contexts)
        rel_prompts = feeds["rel_prompts"]
        return [
            RelexJob(entities.spans[b], entity_rep[b], pairs[b], rel_prompts[b, : len(c.relations)])
            for b, c in enumerate(contexts)
        ]

    def relations(
        self,
        ctx: TextContext,
        kept: list[SpanCandidate],
        entities: list[Entity],
        windows: list[tuple[Window, RelexJob | None]],
        threshold: float,
    ) -> list[RelationDict]:
        """The relations among a text's decoded entities. Only pairs whose both ends
        survived greedy decoding are scored: gliner drops the others after scoring them.
        A (head, tail, relation) that an earlier window found is not repeated by a later
        one; within a window gliner's duplicates stay (token models can select the same
        span once per class)."""
        decoded = [(s, e) for s, e, _, _ in kept]
        found: list[rel.Relation] = []
        earlier: set[tuple[int, int, int]] = set()
        for (ws, _we), job in windows:
            if job is None or len(job.rel_prompts) == 0 or len(job.pairs) == 0:
                continue
            mapping = rel.entity_map(job.entity_spans + ws, decoded)
            pairs = job.pairs[rel.surviving_pairs(job.pairs, mapping)]
            if len(pairs) == 0:
                continue
            here = rel.decode_relations(pairs, self.relation_scores(job, pairs), mapping, threshold)
            found.extend(r for r in here if r[:3] not in earlier)
            earlier.update(r[:3] for r in here)
        return relation_dicts(ctx, entities, found)

    def relation_scores(self, job: RelexJob, pairs: np.ndarray) -> np.ndarray:
        """(N, C_rel) probabilities of `pairs`, scored in chunks so memory stays bounded."""
        prompts = job.rel_prompts[None]
        chunks = []
        for lo in range(0, len(pairs), PAIR_CHUNK):
            part = pairs[lo : lo + PAIR_CHUNK]
            feeds = {
                "head_rep": job.entity_rep[part[:, 0]][None],
                "tail_rep": job.entity_rep[part[:, 1]][None],
                "rel_prompts": prompts,
            }
            (scores,) = self.model.runner.run("relation_scorer", feeds)
            chunks.append(scores[0])
        return np.concatenate(chunks)
