"""The chain of graphs: each graph fed from pre-processing and the earlier graphs' outputs, as
the runtime chains them. An export config lists its steps (`configs.py`); tracing runs the
chain with the torch wrappers, validation once more with the ONNX graphs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gliner_onnx.runtime import relations as rel
from gliner_onnx.runtime.spans import span_grid

from .context import ExportContext, Feeds, Outputs, Runner

# Token decoder: the threshold at which candidate spans are chosen to trace and validate
# the span encoder (the runtime takes the threshold of each call).
SPAN_THRESHOLD = 0.5


@dataclass
class Chain:
    """One case going through the graphs: what each graph was fed and returned, and every
    tensor available to the next graphs (pre-processing's feeds and earlier outputs)."""

    ctx: ExportContext
    feeds: Feeds
    outs: Outputs
    available: dict[str, np.ndarray]
    batch: int
    run: Runner

    def graph(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.feeds[name] = feeds
        self.outs[name] = self.run(name, feeds)
        return self.outs[name]


Step = Callable[[Chain], None]


def _batched(label_embeddings: np.ndarray, batch: int) -> np.ndarray:
    """(C, D) shared label embeddings as the scorer's (B, C, D) input."""
    return np.ascontiguousarray(np.broadcast_to(label_embeddings, (batch, *label_embeddings.shape)))


def text_encoder_step(c: Chain) -> None:
    outs = c.graph("text_encoder", c.feeds["text_encoder"])
    c.available.update(zip(c.ctx.specs["text_encoder"].output_names, outs))


def label_encoder_step(c: Chain) -> None:
    """Bi-encoders: the label encoder (and the factorized head's label projector), shared by
    every text of the batch."""
    (embeddings,) = c.graph("label_encoder", c.feeds["label_encoder"])
    c.available["prompts"] = _batched(embeddings, c.batch)
    if "label_projector" in c.ctx.specs:
        keys, bias = c.graph("label_projector", {"label_embeddings": embeddings})
        c.available["label_keys"] = _batched(keys, c.batch)
        c.available["label_bias"] = _batched(bias, c.batch)


def scorer_step(c: Chain) -> None:
    c.graph("scorer", {n: c.available[n] for n in c.ctx.specs["scorer"].input_names})


def span_encoder_step(c: Chain) -> None:
    """Token decoder: the span encoder on the candidate spans at SPAN_THRESHOLD."""
    spans = rel.select_token_entities(c.outs["scorer"][0], SPAN_THRESHOLD).spans
    a = c.available
    c.graph("span_encoder", {"word_rep": a["word_rep"], "span_idx": spans, "label_rep": a["label_rep"]})


def relations_step(c: Chain) -> None:
    """The relation graphs on a fixed choice of entities (up to 5 per text, text i gets
    fewer as i grows, so entity and pair padding are exercised) and all their pairs."""
    a = c.available
    lengths = a["text_lengths"].reshape(-1)
    if c.ctx.config.family == "span":
        (probs,) = c.outs["scorer"]
        best = probs.max(axis=-1).reshape(len(lengths), -1)
        grid, valid = span_grid(lengths, c.ctx.gliner_config.max_width)
        flat = []
        for b in range(len(lengths)):
            idx = np.flatnonzero(valid[b])
            top = idx[np.argsort(-best[b, idx], kind="stable")[: max(1, 5 - b)]]
            flat.append(np.sort(top))
        entities = rel.pack_entities([grid[f] for f in flat])
        entity_rep = rel.span_entity_reps(a["span_rep"], flat, entities.spans.shape[1])
        mask = entities.mask
    else:
        spans = [
            np.array([(i, min(i + i % 3, n - 1)) for i in range(min(n, max(1, 5 - b)))], dtype=np.int64)
            for b, n in enumerate(lengths.tolist())
        ]
        batch = rel.pack_entities(spans)
        (entity_rep,) = c.graph("entity_encoder", {"word_rep": a["word_rep"], "entity_spans": batch.spans})
        mask = batch.mask
    if "relation_adjacency" in c.ctx.specs:
        c.graph("relation_adjacency", {"entity_rep": entity_rep, "entity_mask": mask})
    if a["rel_prompts"].shape[1] == 0:
        return  # the runtime never scores pairs without relation labels
    pairs = rel.pad_pairs(rel.all_pairs([int(m) for m in mask.sum(axis=1)]))
    if pairs.shape[1] == 0:
        pairs = np.full((len(lengths), 1, 2), -1, dtype=np.int64)
    safe = np.maximum(pairs, 0)
    c.graph(
        "relation_scorer",
        {
            "head_rep": rel.gather_rows(entity_rep, safe[..., 0]),
            "tail_rep": rel.gather_rows(entity_rep, safe[..., 1]),
            "rel_prompts": a["rel_prompts"],
        },
    )
