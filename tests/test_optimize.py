"""Export-time optimization: the factorized span head and its fallback to the generic one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gliner_onnx import GLiNER
from gliner_onnx.archs import graph_specs
from gliner_onnx.errors import UnsupportedArchError
from gliner_onnx.export import export_model
from gliner_onnx.export import wrappers as wrappers_mod
from gliner_onnx.manifest import MANIFEST_NAME

from .conftest import LABELS, TEXTS, Checkpoint


def _manifest(ckpt_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ckpt_dir / MANIFEST_NAME).read_text())
    return data


def test_span_models_export_the_factorized_head_by_default(
    uni_minilm: Checkpoint, bi_minilm_bert: Checkpoint, uni_deberta_generic: Checkpoint
) -> None:
    # uni: the labels come folded from the text encoder's prompts; bi: from the label
    # projector, whose keys the runtime caches per label
    labels_in = {uni_minilm.name: ["prompts"], bi_minilm_bert.name: ["label_keys", "label_bias"]}
    for ckpt in (uni_minilm, bi_minilm_bert):
        m = _manifest(ckpt.export_dir)
        assert m["span_head"] == "factorized"
        assert m["graphs"]["scorer"]["inputs"] == [
            "span_start",
            "span_end",
            "span_idx",
            *labels_in[ckpt.name],
        ]
        assert "span_idx" not in m["graphs"]["text_encoder"]["inputs"]
        rewritten = ("text_encoder", "scorer", *(("label_projector",) if ckpt is bi_minilm_bert else ()))
        for graph in rewritten:
            assert m["graphs"][graph]["optimization"] == {"rewrites": ["factorized span head"]}
    assert "label_projector" not in _manifest(uni_minilm.export_dir)["graphs"]
    m = _manifest(uni_deberta_generic.export_dir)
    assert m["span_head"] == "generic"
    assert m["graphs"]["scorer"]["inputs"] == ["span_rep", "prompts"]
    assert all(g["optimization"] == {} for g in m["graphs"].values())


def test_token_models_have_no_span_head_to_factorize(uni_token_minilm: Checkpoint) -> None:
    m = _manifest(uni_token_minilm.export_dir)
    assert m["span_head"] == "generic"
    assert m["graphs"]["scorer"]["optimization"] == {"rewrites": ["factorized token scorer"]}
    assert m["graphs"]["scorer"]["inputs"] == ["token_rep", "prompts"]
    with pytest.raises(UnsupportedArchError, match="span head 'factorized' is not available"):
        graph_specs("uniencoder_token", "factorized")


def test_factorized_and_generic_heads_give_the_same_scores(
    uni_deberta: Checkpoint, uni_deberta_generic: Checkpoint
) -> None:
    fact = GLiNER.from_pretrained(uni_deberta.export_dir)
    gen = GLiNER.from_pretrained(uni_deberta_generic.export_dir)
    ref = gen.inference(TEXTS, LABELS, threshold=0.1, flat_ner=False, multi_label=True)
    got = fact.inference(TEXTS, LABELS, threshold=0.1, flat_ner=False, multi_label=True)
    assert [[(e["start"], e["end"], e["label"]) for e in r] for r in ref] == [
        [(e["start"], e["end"], e["label"]) for e in g] for g in got
    ]
    diffs = [abs(a["score"] - b["score"]) for r, g in zip(ref, got) for a, b in zip(r, g)]
    assert len(diffs) > 50 and max(diffs) < 1e-5


def test_a_head_that_loses_parity_falls_back_to_the_generic_one(
    uni_deberta: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest = wrappers_mod.FactorizedSpanScorer.forward

    def off_by_a_little(self: Any, *args: Any) -> Any:
        return honest(self, *args) * 0.999

    monkeypatch.setattr(wrappers_mod.FactorizedSpanScorer, "forward", off_by_a_little)
    logs: list[str] = []
    report = export_model(uni_deberta.torch_model, tmp_path / "o", log=logs.append)
    assert report.span_head == "generic" and not report.optimized
    assert any("lost parity" in line and "end-to-end scores" in line for line in logs), logs
    assert _manifest(tmp_path / "o")["span_head"] == "generic"
    assert [p.name for p in tmp_path.iterdir()] == ["o"]  # no temporary directory left behind


def test_other_span_layers_export_the_generic_head(tmp_path: Path, uni_deberta: Checkpoint) -> None:
    from gliner_onnx.export.demo.backbones import build_gliner

    backbone = uni_deberta.model_dir.parent / "tiny-deberta-v3"
    model = build_gliner(backbone, span_mode="marker", seed=7, max_width=4, hidden_size=32, logit_scale=2.0)
    report = export_model(model, tmp_path / "o", log=lambda _m: None)
    assert report.span_head == "generic"
    ours = GLiNER.from_pretrained(tmp_path / "o")
    ref = model.inference(TEXTS, LABELS, threshold=0.4)
    got = ours.inference(TEXTS, LABELS, threshold=0.4)
    assert [[(e["start"], e["end"], e["label"]) for e in r] for r in ref] == [
        [(e["start"], e["end"], e["label"]) for e in g] for g in got
    ]
    scores = np.array([e["score"] for r in got for e in r])
    ref_scores = np.array([e["score"] for r in ref for e in r])
    assert scores.size > 0 and np.abs(scores - ref_scores).max() <= 1e-4


def test_fused_encoders_keep_parity(bi_minilm_bert: Checkpoint, tmp_path: Path) -> None:
    """--fuse: ONNX Runtime's transformer optimizer on both BERT-like encoders."""
    report = export_model(bi_minilm_bert.model_dir, tmp_path / "o", fuse=True, log=lambda _m: None)
    assert report.optimized
    m = _manifest(tmp_path / "o")
    for graph in ("text_encoder", "label_encoder"):
        fused = m["graphs"][graph]["optimization"]["fused"]
        assert fused["Attention"] == 6 if graph == "text_encoder" else fused["Attention"] == 2
        assert fused["SkipLayerNormalization"] > 0
    assert "fused" not in m["graphs"]["scorer"]["optimization"]
    ours = GLiNER.from_pretrained(tmp_path / "o")
    for threshold in (0.3, 0.6):
        ref = bi_minilm_bert.torch_model.inference(TEXTS, LABELS, threshold=threshold)
        got = ours.inference(TEXTS, LABELS, threshold=threshold)
        assert [[(e["start"], e["end"], e["label"]) for e in r] for r in ref] == [
            [(e["start"], e["end"], e["label"]) for e in g] for g in got
        ]
        diffs = [abs(a["score"] - b["score"]) for r, g in zip(ref, got) for a, b in zip(r, g)]
        assert diffs and max(diffs) <= 1e-4
