"""The typed result of one text, and the one adapter to gliner's return conventions.

A pipeline answers one `TextResult` per text. `GLiNER.inference` gives gliner's shape
(`inference_output`: a list of entity lists, or `(entities, relations)` for relex
exports); the CLI and Ray answer one JSON record per text (`as_record`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .output import Entity, RelationDict


@dataclass(frozen=True)
class TextResult:
    """The entities of one text and, where the export has relations (and they were asked
    for), its relations; None where it has none."""

    entities: list[Entity]
    relations: list[RelationDict] | None = None


def inference_output(results: Sequence[TextResult], *, relations: bool) -> Any:
    """gliner's return value: `[entities, ...]`, or `([entities, ...], [relations, ...])`
    when `relations` (a relex export asked for its relations)."""
    entities = [r.entities for r in results]
    if not relations:
        return entities
    return entities, [r.relations if r.relations is not None else [] for r in results]


def as_record(result: TextResult) -> dict[str, Any]:
    """{"entities": [...]} plus "relations" where the export has them (gliner's dicts)."""
    if result.relations is None:
        return {"entities": result.entities}
    return {"entities": result.entities, "relations": result.relations}
