"""One prediction call's arguments, checked and normalized once (`make_request`), and
what a pipeline accepts (`Accepts`): the facade checks a call against its pipeline's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .generation_loop import GenerationParams
from .labels import LabelSet, normalize_labels, normalize_relations
from .labelstore import check_label_embeddings
from .loaded import LoadedModel
from .options import CallOptions, InferenceParams


@dataclass(frozen=True)
class Accepts:
    """What a pipeline takes beyond texts and labels (its name is the layout's)."""

    name: str
    relations: bool = False  # relation labels and thresholds; answers relations
    generation: bool = False  # gliner's generation arguments
    windows: bool = True  # window / overlap (long texts) and bi-encoders' label_embeddings
    # bi-encoders: caller-given label embeddings (not where the graph encodes the labels itself)
    label_embeddings: bool = True


@dataclass(frozen=True)
class Request:
    """A checked call: texts, one label set (and relation set) per text, parameters."""

    texts: list[str]
    label_sets: list[LabelSet]
    relation_sets: list[tuple[str, ...]]
    params: InferenceParams
    batch_size: int
    window: int = 0
    overlap: int = 0
    given: np.ndarray | None = None  # caller-given label embeddings (bi-encoders)
    generation: GenerationParams | None = None
    gen_constraints: Sequence[str] | None = None
    with_relations: bool = False  # relex: decode relations (not with return_relations=False)


def make_request(
    model: LoadedModel,
    accepts: Accepts,
    texts: Any,
    labels: Any,
    call: CallOptions,
) -> Request:
    """Check and normalize a call: its texts, labels and options."""
    params = InferenceParams(
        threshold=call.threshold,
        flat_ner=call.flat_ner,
        multi_label=call.multi_label,
        adjacency_threshold=call.adjacency_threshold,
        relation_threshold=call.relation_threshold,
    )
    relex_args = (call.relations, call.adjacency_threshold, call.relation_threshold)
    if not accepts.relations and any(v is not None for v in relex_args):
        raise ValueError(f"relations need a relex export; this one is {model.manifest.arch!r}")
    texts = _texts(texts)
    batch_size = call.batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    label_sets = normalize_labels(labels, len(texts))
    relations: list[tuple[str, ...]] = (
        normalize_relations(call.relations, len(texts)) if accepts.relations else [()] * len(texts)
    )
    base = Request(
        texts,
        label_sets,
        relations,
        params,
        batch_size,
        with_relations=accepts.relations and call.return_relations,
    )
    if not accepts.windows:
        if any(v is not None for v in (call.window, call.overlap, call.label_embeddings)):
            raise ValueError(f"window, overlap and label_embeddings do not apply to {accepts.name} exports")
    if accepts.generation:
        return _with_generation(base, call.gen_constraints, call.gen_kwargs)
    if call.gen_kwargs or call.gen_constraints is not None:
        names = sorted([*call.gen_kwargs, *(["gen_constraints"] if call.gen_constraints is not None else [])])
        raise TypeError(
            f"generation arguments {names} need a decoder export; this one is {model.manifest.arch!r}"
        )
    if not accepts.windows:
        return base
    if not accepts.label_embeddings and call.label_embeddings is not None:
        raise ValueError(
            f"label_embeddings do not apply to {accepts.name} exports: the graph encodes the labels itself"
        )
    given = check_label_embeddings(
        call.label_embeddings, labels, label_sets, model.label_store, model.manifest.arch
    )
    window, overlap = window_settings(model, call.window, call.overlap)
    return replace(base, given=given, window=window, overlap=overlap)


def _texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} must be a string, got {type(t).__name__}: {t!r}")
        check_encodable(t, f"text {i}")
    return list(texts)


def check_encodable(value: str, what: str) -> None:
    """Lone surrogates cannot reach the (Rust) tokenizer: say so instead of crashing there."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} is not valid Unicode (a lone surrogate at index {e.start})") from None


def _with_generation(base: Request, gen_constraints: Any, gen_kwargs: Mapping[str, Any]) -> Request:
    unknown = sorted(set(gen_kwargs) - set(GenerationParams.__dataclass_fields__))
    if unknown:
        raise TypeError(
            f"unknown generation arguments {unknown}; "
            f"valid: gen_constraints, {', '.join(GenerationParams.__dataclass_fields__)}"
        )
    gen = GenerationParams(**gen_kwargs)
    return replace(base, generation=gen, gen_constraints=gen_constraints)


def window_settings(model: LoadedModel, window: int | None, overlap: int | None) -> tuple[int, int]:
    """window (default: max_len words) and overlap (default: 2 x max_width words), checked."""
    m = model.manifest
    window = m.max_len if window is None else window
    overlap = 2 * m.max_width if overlap is None else overlap
    for name, v in (("window", window), ("overlap", overlap)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if window < 1 or overlap >= window:
        raise ValueError(f"need 0 <= overlap < window, got window={window}, overlap={overlap}")
    return window, min(overlap, window - 1)
