"""Run the requests that arrived together as few runtime calls as possible.

Requests are grouped by their decoding parameters (threshold, flat_ner, multi_label,
relation threshold); each group is one `GLiNER.inference` call, with one label set per
text when the label sets differ. When a group's call fails, its requests are run one by
one, so that a request the model cannot run fails alone and the others still get answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gliner_onnx.runtime import GLiNER
from gliner_onnx.runtime.result import as_record

from .wire import Params, Request

Answer = dict[str, Any]


def _call(model: GLiNER, requests: Sequence[Request], params: Params, batch_size: int) -> list[Answer]:
    label_sets = [r.label_argument() for r in requests]
    same = all(r.labels == requests[0].labels for r in requests)
    labels: Any = label_sets[0] if same else label_sets
    kwargs: dict[str, Any] = {
        "threshold": params.threshold,
        "flat_ner": params.flat_ner,
        "multi_label": params.multi_label,
        "batch_size": batch_size,
    }
    texts = [r.text for r in requests]
    relations = [list(r.relations) for r in requests]
    found = model.extract(
        texts,
        labels,
        relations=relations if any(relations) else None,  # entity-only exports take none
        relation_threshold=params.relation_threshold,
        **kwargs,
    )
    return [as_record(r) for r in found]


def run_requests(
    model: GLiNER, requests: Sequence[Request], batch_size: int = 32
) -> list[Answer | Exception]:
    """One answer per request, in order: its result dict, or the exception it raised."""
    groups: dict[Params, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(r.params, []).append(i)
    out: list[Answer | Exception] = [{} for _ in requests]
    for params, members in groups.items():
        try:
            answers: Sequence[Answer | Exception] = _call(
                model, [requests[i] for i in members], params, batch_size
            )
        except Exception:  # find the request(s) at fault: the others must still be answered
            answers = [_alone(model, requests[i], batch_size) for i in members]
        for i, a in zip(members, answers):
            out[i] = a
    return out


def _alone(model: GLiNER, request: Request, batch_size: int) -> Answer | Exception:
    try:
        return _call(model, [request], request.params, batch_size)[0]
    except Exception as e:
        return e
