"""Bi-encoder label embeddings: computed once, cached by label text, reusable."""

from __future__ import annotations

import numpy as np
import pytest

from gliner_onnx import GLiNER

from .conftest import LABELS, TEXTS, Checkpoint


@pytest.fixture(params=["bi_minilm_bert", "bi_token_deberta_bert"])
def checkpoint(request: pytest.FixtureRequest) -> Checkpoint:
    return request.getfixturevalue(request.param)


@pytest.fixture
def model(checkpoint: Checkpoint) -> GLiNER:
    return GLiNER.from_pretrained(checkpoint.export_dir)


def _count_runs(model: GLiNER, graph: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    session = model.context.runner.session(graph)
    calls: list[int] = []
    original = session.run

    def counting(feeds):  # type: ignore[no-untyped-def]
        calls.append(len(next(iter(feeds.values()))))
        return original(feeds)

    monkeypatch.setattr(session, "run", counting)
    return calls


def test_label_encoder_runs_once_per_new_label(model: GLiNER, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_runs(model, "label_encoder", monkeypatch)
    first = model.inference(TEXTS, LABELS, threshold=0.4)
    assert calls == [len(LABELS)]
    again = model.inference(TEXTS, LABELS[::-1], threshold=0.4)
    assert calls == [len(LABELS)]  # all cached
    model.inference(TEXTS[:1], ["person", "vehicle"], threshold=0.4)
    assert calls == [len(LABELS), 1]  # only "vehicle" is new
    # the cached labels give the same answers (the label order changes nothing)
    assert sum(map(len, first)) > 0 and len(again) == len(first)
    for got, want in zip(again, first):
        assert sorted((e["start"], e["end"], e["label"]) for e in got) == sorted(
            (e["start"], e["end"], e["label"]) for e in want
        )
        scores = {(e["start"], e["end"], e["label"]): e["score"] for e in want}
        assert all(abs(e["score"] - scores[e["start"], e["end"], e["label"]]) < 1e-5 for e in got)


def test_encode_labels_round_trip(model: GLiNER, checkpoint: Checkpoint) -> None:
    import torch

    emb = model.encode_labels(LABELS)
    assert emb.dtype == np.float32
    ref = checkpoint.torch_model.encode_labels(LABELS)
    # gliner's encode_labels stops at the pooled encoding; ours is final: after
    # prompt_rep_layer (span models) or the scorer's label projection (token models).
    core = checkpoint.torch_model.model
    head = core.scorer.proj_label if model.family == "token" else core.prompt_rep_layer
    with torch.no_grad():
        final = head(ref).numpy()
    assert emb.shape == final.shape == (len(LABELS), final.shape[1])
    np.testing.assert_allclose(emb, final, atol=1e-5)

    fresh = GLiNER.from_pretrained(checkpoint.export_dir)
    with_embeds = fresh.inference(TEXTS, LABELS, threshold=0.4, label_embeddings=emb)
    store = fresh.context.label_store
    assert store is not None and len(store) == 0  # nothing was encoded
    assert with_embeds == model.inference(TEXTS, LABELS, threshold=0.4)
    assert fresh.predict_with_embeds(TEXTS[0], emb, LABELS, threshold=0.4) == with_embeds[0]
    assert fresh.batch_predict_with_embeds(TEXTS, emb, LABELS, threshold=0.4) == with_embeds


def test_label_embeddings_are_checked(model: GLiNER) -> None:
    emb = model.encode_labels(LABELS)
    with pytest.raises(ValueError, match=r"shape \(5, hidden\)"):
        model.inference(TEXTS, LABELS, label_embeddings=emb[:3])
    with pytest.raises(ValueError, match="per-text"):
        model.inference(TEXTS[:2], [["a"], ["b"]], label_embeddings=emb[:1])


def test_uni_encoder_has_no_label_encoder(uni_minilm: Checkpoint) -> None:
    model = GLiNER.from_pretrained(uni_minilm.export_dir)
    with pytest.raises(ValueError, match="bi-encoder"):
        model.encode_labels(["person"])
    with pytest.raises(ValueError, match="bi-encoder"):
        model.inference(TEXTS, ["person"], label_embeddings=np.zeros((1, 384), np.float32))


def test_label_keys_are_projected_once_per_label(
    bi_minilm_bert: Checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Factorized bi-encoders: the labels' keys (`label_projector`) are cached with their
    embeddings by label text, and for caller-given embeddings by the array's content."""
    model = GLiNER.from_pretrained(bi_minilm_bert.export_dir)
    assert list(model.manifest.graphs["scorer"].inputs)[-2:] == ["label_keys", "label_bias"]
    calls = _count_runs(model, "label_projector", monkeypatch)
    by_text = model.inference(TEXTS, LABELS, threshold=0.4)
    model.inference(TEXTS[:2], LABELS[::-1], threshold=0.4)
    assert calls == [len(LABELS)]

    emb = model.encode_labels(LABELS)
    given = model.inference(TEXTS, LABELS, threshold=0.4, label_embeddings=emb)
    assert given == by_text and calls == [len(LABELS)] * 2  # projected once for the array
    model.predict_with_embeds(TEXTS[0], emb.copy(), LABELS, threshold=0.4)
    assert calls == [len(LABELS)] * 2  # same content, another array: cached
    swapped = emb[[1, 0, 2, 3, 4]]  # the first two labels' embeddings exchanged
    moved = model.inference(TEXTS, LABELS, threshold=0.4, label_embeddings=swapped)
    assert calls == [len(LABELS)] * 3
    swap = {LABELS[0]: LABELS[1], LABELS[1]: LABELS[0]}
    relabelled = [[{**e, "label": swap.get(e["label"], e["label"])} for e in es] for es in by_text]
    assert moved == relabelled and moved != by_text
    model.clear_label_cache()
    model.inference(TEXTS[:1], LABELS, threshold=0.4, label_embeddings=emb)
    assert calls == [len(LABELS)] * 4
