"""Every pipeline runs every graph through the one graph runner: with IO binding forced
on CPU (`SessionOptions(io_binding=True)`) no graph runs outside it, every graph of the
export runs bound, and the answers are identical (the decoder archs: in their own test
files, which build those checkpoints; they call `assert_bound_answers_are_identical`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gliner_onnx import GLiNER, SessionOptions
from gliner_onnx.runtime.session import GraphSession

from .conftest import LABELS, RELATIONS, RELEX_LABELS, RELEX_TEXTS, TEXTS


def assert_bound_answers_are_identical(
    export_dir: Path, call: Callable[[GLiNER], Any], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """`call` on the export without and with IO binding: the same answer, and with binding
    every graph of the manifest ran bound and none ran a plain `session.run`."""
    plain = GLiNER.from_pretrained(export_dir)
    bound = GLiNER.from_pretrained(export_dir, session_options=SessionOptions(io_binding=True))
    assert plain.context.runner.device is None and bound.context.runner.device == ("cpu", 0)
    ref = call(plain)
    ran: set[str] = set()
    run_bound = GraphSession.run_on_device

    def recording(self: GraphSession, feeds: Any, device: str, device_id: int = 0) -> Any:
        ran.add(self.name)
        return run_bound(self, feeds, device, device_id)

    def refused(self: GraphSession, feeds: Any) -> Any:
        raise AssertionError(f"graph {self.name!r} ran without the runner's IO binding")

    monkeypatch.setattr(GraphSession, "run_on_device", recording)
    monkeypatch.setattr(GraphSession, "run", refused)
    got = call(bound)
    monkeypatch.undo()
    assert ran == set(bound.manifest.graphs)
    assert got == ref
    return ref


@pytest.mark.parametrize(
    "name", ["uni_minilm", "bi_minilm_bert", "uni_token_minilm", "bi_token_deberta_bert"]
)
def test_entity_pipeline_runs_every_graph_bound(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = request.getfixturevalue(name)

    def call(m: GLiNER) -> Any:
        return m.inference(TEXTS, LABELS, threshold=0.3, flat_ner=False, multi_label=True, batch_size=2)

    ref = assert_bound_answers_are_identical(ckpt.export_dir, call, monkeypatch)
    assert sum(map(len, ref)) > 0


@pytest.mark.parametrize("name", ["span_relex_minilm", "token_relex_minilm"])
def test_relex_pipeline_runs_every_graph_bound(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = request.getfixturevalue(name)

    def call(m: GLiNER) -> Any:
        return m.inference(RELEX_TEXTS, RELEX_LABELS, relations=RELATIONS, threshold=0.3)

    entities, relations = assert_bound_answers_are_identical(ckpt.export_dir, call, monkeypatch)
    assert sum(map(len, entities)) > 0 and sum(map(len, relations)) > 0
