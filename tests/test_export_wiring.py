"""The export runs its graphs through the runtime's own pipeline stages (export/graph_runs.py),
so the feeds between graphs are built in one place and the export proves them: a pipeline
that wires one graph into the next wrongly makes the export fail against gliner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gliner_onnx.errors import ParityError
from gliner_onnx.export import export_model
from gliner_onnx.runtime.labelstore import LabelStore
from gliner_onnx.runtime.relex import RelexPipeline

from .conftest import Checkpoint


def _quiet(_message: str) -> None:
    pass


@pytest.fixture
def relex(request: pytest.FixtureRequest) -> Checkpoint:
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("relex", ["span_relex_minilm", "token_relex_minilm"], indirect=True)
def test_relations_are_checked_end_to_end_and_a_miswired_pair_fails(
    relex: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = export_model(relex.model_dir, tmp_path / "ok", optimize=False, log=_quiet)
    checked = report.max_abs_diff["end_to_end"]
    assert {"scores", "relation_scores"} <= set(checked), checked  # the relation check ran
    assert checked["relation_scores"] <= 1e-4

    relation_scores = RelexPipeline.relation_scores

    def head_and_tail_swapped(self: RelexPipeline, job: Any, pairs: np.ndarray) -> np.ndarray:
        return relation_scores(self, job, pairs[:, ::-1])

    monkeypatch.setattr(RelexPipeline, "relation_scores", head_and_tail_swapped)
    with pytest.raises(ParityError, match="end-to-end relation scores"):
        export_model(relex.model_dir, tmp_path / "swapped", optimize=False, log=_quiet)
    assert not (tmp_path / "swapped").exists()


def test_a_miswired_label_encoder_fails_the_export(
    bi_minilm_bert: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bi-encoders: the label store feeds the scorer each label's embedding; shifted by one
    label, every graph still matches its torch module, the chain no longer matches gliner."""
    feeds = LabelStore.feeds

    def shifted(self: LabelStore, contexts: Any, given: Any) -> dict[str, np.ndarray]:
        return {k: np.roll(v, 1, axis=1) for k, v in feeds(self, contexts, given).items()}

    monkeypatch.setattr(LabelStore, "feeds", shifted)
    with pytest.raises(ParityError, match="end-to-end scores"):
        export_model(bi_minilm_bert.model_dir, tmp_path / "o", optimize=False, log=_quiet)
