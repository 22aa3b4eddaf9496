"""Stage 2a: normalise the `labels` argument the way gliner 0.2.29 does.

`labels` may be a string, a list of strings, a `{name: description}` mapping, or
one such list/mapping per text. Labels are de-duplicated in first-seen order and
class ids follow that order (`model.py::_normalize_label_set`, `make_mapping`).
For a mapping the description goes into the prompt and the name into the output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast


@dataclass(frozen=True)
class LabelSet:
    """The prompts fed to the model and the names reported for one text."""

    prompts: tuple[str, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.prompts)


def _check_label(label: object, where: str) -> str:
    if not isinstance(label, str):
        raise TypeError(f"{where} must be a string, got {type(label).__name__}: {label!r}")
    if not label.strip():
        raise ValueError(f"{where} must be a non-empty string, got {label!r}")
    try:
        label.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where} is not valid Unicode (it holds a lone surrogate): {label!r}") from None
    return label


def normalize_label_set(labels: object) -> LabelSet:
    """One label set: a string, a sequence of strings, or a name->description mapping."""
    if isinstance(labels, Mapping):
        names: list[str] = []
        prompts: list[str] = []
        for name, prompt in labels.items():
            names.append(_check_label(name, "label name"))
            prompts.append(_check_label(prompt, f"description of label {name!r}"))
        if not names:
            raise ValueError("labels must not be empty")
        if len(set(prompts)) != len(prompts):
            raise ValueError("label descriptions must be unique within each label set")
        return LabelSet(tuple(prompts), tuple(names))
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, Sequence) or isinstance(labels, (bytes, bytearray)):
        raise TypeError(
            f"labels must be a string, a list of strings or a mapping, got {type(labels).__name__}"
        )
    if len(labels) == 0:
        raise ValueError("labels must not be empty")
    checked = [_check_label(label, f"label {i}") for i, label in enumerate(labels)]
    unique = tuple(dict.fromkeys(checked))
    return LabelSet(unique, unique)


def is_per_text(labels: object) -> bool:
    """True when `labels` holds one label set per text (gliner's per-row form)."""
    return (
        isinstance(labels, list)
        and bool(labels)
        and any(isinstance(item, (list, tuple, Mapping)) for item in labels)
    )


def normalize_labels(labels: object, num_texts: int) -> list[LabelSet]:
    """One `LabelSet` per text, shared or per text."""
    if labels is None:
        raise ValueError("labels must not be empty")
    if is_per_text(labels):
        labels = cast(list, labels)
        if len(labels) != num_texts:
            raise ValueError(
                f"per-text labels must have one label set per text ({num_texts}), got {len(labels)}"
            )
        if not all(isinstance(item, (list, tuple, Mapping)) for item in labels):
            raise TypeError("per-text labels must contain only lists or label description mappings")
        return [normalize_label_set(item) for item in labels]
    shared = normalize_label_set(labels)
    return [shared] * num_texts


def build_prompt(
    prompts: Sequence[str],
    ent_token: str,
    sep_token: str,
    relations: Sequence[str] | None = None,
    rel_token: str | None = None,
) -> list[str]:
    """The uni-encoder prompt words: `ENT l1 ENT l2 ... SEP` (`processor.py::prepare_inputs`).

    Relex models (rel_token given): `ENT l1 ... SEP REL r1 REL r2 ... SEP`, both SEPs even
    with no relations (`RelationExtractionSpanProcessor.prepare_inputs`).
    """
    words: list[str] = []
    for prompt in prompts:
        words.append(ent_token)
        if prompt:  # an empty prompt adds no word (decoder prompt mode: class tokens only)
            words.append(prompt)
    words.append(sep_token)
    if rel_token is not None:
        for relation in relations or ():
            words.append(rel_token)
            words.append(relation)
        words.append(sep_token)
    return words


def normalize_relations(relations: object, num_texts: int) -> list[tuple[str, ...]]:
    """Relation labels, shared or one list per text, de-duplicated in first-seen order
    (`UniEncoderSpanRelexGLiNER.prepare_batch`). None or [] means no relations."""
    if relations is None:
        return [()] * num_texts
    if isinstance(relations, str):
        relations = [relations]
    if not isinstance(relations, Sequence) or isinstance(relations, (bytes, bytearray)):
        raise TypeError(f"relations must be a string or a list of strings, got {type(relations).__name__}")
    if relations and all(isinstance(r, (list, tuple)) for r in relations):
        if len(relations) != num_texts:
            raise ValueError(
                f"per-text relations must have one list per text ({num_texts}), got {len(relations)}"
            )
        return [_relation_list(r) for r in relations]
    return [_relation_list(relations)] * num_texts


def _relation_list(relations: Sequence[object]) -> tuple[str, ...]:
    checked = [_check_label(r, f"relation {i}") for i, r in enumerate(relations)]
    return tuple(dict.fromkeys(checked))
