"""Decoded word spans -> gliner's entity and relation dicts: the one place word indices
become character offsets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .entity_decoding import SpanCandidate
from .features import TextContext

Entity = dict[str, Any]
RelationDict = dict[str, Any]


def entity_dicts(ctx: TextContext, kept: Sequence[SpanCandidate]) -> list[Entity]:
    """{start, end, text, label, score} of each kept (start word, end word, class, score)."""
    entities: list[Entity] = []
    for start_w, end_w, cls, score in kept:
        start = ctx.words.starts[start_w]
        end = ctx.words.ends[end_w]
        entities.append(
            {
                "start": start,
                "end": end,
                "text": ctx.text[start:end],
                "label": ctx.labels.names[cls],
                "score": float(score),
            }
        )
    return entities


def relation_dicts(
    ctx: TextContext, entities: Sequence[Entity], found: Sequence[tuple[int, int, int, float]]
) -> list[RelationDict]:
    """gliner's relation dicts of (head entity, tail entity, relation class, score), the ends
    given by their position in the text's entity list."""

    def end(i: int) -> dict[str, Any]:
        e = entities[i]
        return {"start": e["start"], "end": e["end"], "text": e["text"], "type": e["label"], "entity_idx": i}

    return [
        {"head": end(h), "tail": end(t), "relation": ctx.relations[c], "score": p} for h, t, c, p in found
    ]


def merge_adjacent_entities(text: str, entities: Sequence[Entity]) -> list[Entity]:
    """NuNER Zero's post-processing (its model card's `merge_entities`), for checkpoints that
    find entities one word at a time (`max_width: 1`): in list order, an entity whose label
    is the previous one's and that starts where it ends or one character after is joined to
    it; the joined entity keeps the first one's score. New dicts; `entities` is unchanged."""
    merged: list[Entity] = []
    for entity in entities:
        last = merged[-1] if merged else None
        if last is not None and entity["label"] == last["label"] and entity["start"] - last["end"] in (0, 1):
            last["end"] = entity["end"]
            last["text"] = text[last["start"] : last["end"]].strip()
        else:
            merged.append(dict(entity))
    return merged
