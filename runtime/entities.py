"""The entity pipeline (span and token models, uni- and bi-encoders).

words -> windows (`planning`) -> batches of windows sorted by length -> tokenize and
spans (`loaded.encoder_feeds`) -> text encoder (-> cached labels, bi-encoders) -> scorer
-> candidates per window -> merged per text -> greedy selection -> entity dicts.

Batching: windows of similar length run together (less padding), results come back in
input order; a window's answer does not depend on its batch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .entity_decoding import greedy_search
from .features import TextContext
from .loaded import LoadedModel, encoder_feeds
from .output import entity_dicts
from .planning import Found, Plan, plan_text, text_candidates, window_candidates
from .request import Accepts, Request
from .result import TextResult


class EntityPipeline:
    """Entities of span and token exports, in length-sorted batches of windows."""

    accepts: ClassVar[Accepts] = Accepts("entities")

    def __init__(self, model: LoadedModel):
        self.model = model

    def run(self, request: Request) -> list[TextResult]:
        params = request.params
        results = [TextResult([]) for _ in request.texts]
        plans = {i: self.plan(request, i) for i, t in enumerate(request.texts) if t.strip()}
        jobs = [(i, w) for i, plan in plans.items() for w in plan.windows]
        order = sorted(range(len(jobs)), key=lambda j: jobs[j][1][1] - jobs[j][1][0])
        per_job: list[Found] = [[] for _ in jobs]
        for lo in range(0, len(order), request.batch_size):
            batch = order[lo : lo + request.batch_size]
            contexts = [plans[jobs[j][0]].window_context(jobs[j][1]) for j in batch]
            found = self.candidates(contexts, params.threshold, request.given, not params.multi_label)
            for j, f in zip(batch, found):
                per_job[j] = f
        k = 0
        for i, plan in plans.items():
            first, k = k, k + len(plan.windows)
            candidates = text_candidates(self.model.family, plan, per_job[first:k])
            kept = greedy_search(candidates, flat_ner=params.flat_ner, multi_label=params.multi_label)
            results[i] = TextResult(entity_dicts(plan.context, kept))
        return results

    def plan(self, request: Request, i: int) -> Plan:
        return plan_text(self.model, request.texts[i], request.label_sets[i], request.window, request.overlap)

    def candidates(
        self,
        contexts: list[TextContext],
        threshold: float,
        given: np.ndarray | None,
        best_label_only: bool = False,
    ) -> list[Found]:
        """Window-local candidate spans of each context of a batch."""
        scores = self.scores(contexts, given)
        return window_candidates(self.model.family, scores, contexts, threshold, best_label_only)

    def scores(self, contexts: list[TextContext], given: np.ndarray | None = None) -> np.ndarray:
        """Probabilities of a batch: (B, W, max_width, C_max) for spans, (B, W, C_max, 3) for tokens.
        The text encoder's outputs stay where the scorer reads them (IO binding)."""
        runner = self.model.runner
        feeds: dict[str, Any] = dict(encoder_feeds(self.model, contexts))
        outputs = self.model.manifest.graphs["text_encoder"].outputs
        feeds.update(zip(outputs, runner.run_kept("text_encoder", feeds)))
        if self.model.label_store is not None:
            feeds.update(self.model.label_store.feeds(contexts, given))
        (scores,) = runner.run("scorer", feeds)
        return scores
