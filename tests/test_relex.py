"""Relation extraction: gliner's entities *and* relations at run-time thresholds.

Each host step is checked against gliner's own function on the same arrays; the whole
pipeline against gliner's torch `inference` on offline relex checkpoints (random heads,
entity and relation scores calibrated to spread over (0, 1)), at entity, adjacency and
relation thresholds from 0.1 to 0.9, in every decoding mode, with inputs that select
no entity or no pair.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gliner_onnx import GLiNER
from gliner_onnx.errors import ManifestError
from gliner_onnx.manifest import MANIFEST_NAME, load_manifest
from gliner_onnx.runtime import relations as rel

from .conftest import RELATIONS, RELEX_LABELS, RELEX_TEXTS, Checkpoint, relex_layer_checkpoint
from .test_parity import assert_same

SCORE_TOL = 1e-4
MODES = ((True, False), (False, False), (False, True))  # (flat_ner, multi_label)
RELEX_CHECKPOINTS = {
    "span_relex_minilm": "uniencoder_span_relex",
    "token_relex_minilm": "uniencoder_token_relex",
}


# --------------------------------------------------------------------- host steps vs gliner
def _probs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.random(shape, dtype=np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_token_entities_equal_extract_spans_from_tokens(seed: int) -> None:
    from gliner.modeling.utils import extract_spans_from_tokens

    rng = np.random.default_rng(seed)
    probs = _probs(rng, (3, 9, 4, 3)) ** 0.4  # many positions above threshold
    probs[2] = 0.0  # a text with no entity
    logits = torch.logit(torch.from_numpy(probs).double()).float()
    for threshold in (0.3, 0.6, 0.9):
        ref_idx, ref_mask = extract_spans_from_tokens(logits, None, threshold)
        got = rel.select_token_entities(torch.sigmoid(logits).numpy(), threshold)
        np.testing.assert_array_equal(got.spans, (ref_idx * ref_mask.unsqueeze(-1)).numpy())
        np.testing.assert_array_equal(got.mask, ref_mask.long().numpy())


@pytest.mark.parametrize("seed", range(5))
def test_span_entities_equal_select_span_target_embedding(seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch, width, max_width, classes, dim = 3, 7, 4, 3, 5
    probs = _probs(rng, (batch, width, max_width, classes))
    lengths = [7, 3, 1]
    span_rep = rng.standard_normal((batch, width, max_width, dim)).astype(np.float32)
    starts = np.repeat(np.arange(width), max_width)
    ends = starts + np.tile(np.arange(max_width), width)
    span_idx = np.broadcast_to(np.stack([starts, ends], -1), (batch, width * max_width, 2)).copy()
    span_mask = (ends[None] <= np.array(lengths)[:, None] - 1).astype(np.int64)
    logits = torch.logit(torch.from_numpy(probs).double()).float()
    for threshold in (0.2, 0.5, 0.95):
        ref_rep, ref_mask, ref_spans = _gliner_select(span_rep, logits, span_mask, span_idx, threshold)
        got, flat = rel.select_span_entities(torch.sigmoid(logits).numpy(), lengths, threshold)
        reps = rel.span_entity_reps(span_rep, flat, got.spans.shape[1])
        np.testing.assert_array_equal(got.mask, ref_mask)
        np.testing.assert_array_equal(got.spans * got.mask[..., None], ref_spans * ref_mask[..., None])
        np.testing.assert_array_equal(reps, ref_rep)


def _gliner_select(span_rep, logits, span_mask, span_idx, threshold):
    """gliner's selection, run through an instance-free call of its two methods."""
    from gliner.modeling.base import UniEncoderSpanRelexModel

    class _Holder:
        select_target_embedding = UniEncoderSpanRelexModel.select_target_embedding

    holder = _Holder()
    rep, mask, spans = UniEncoderSpanRelexModel.select_span_target_embedding(
        holder,  # type: ignore[arg-type]
        torch.from_numpy(span_rep),
        logits,
        torch.from_numpy(span_mask),
        threshold=threshold,
        span_idx=torch.from_numpy(span_idx * span_mask[..., None]),
    )
    return rep.numpy(), mask.numpy(), spans.numpy()


@pytest.mark.parametrize("seed", range(5))
def test_pairs_equal_build_entity_pairs(seed: int) -> None:
    from gliner.modeling.utils import build_all_entity_pairs, build_entity_pairs

    rng = np.random.default_rng(seed)
    adjacency = _probs(rng, (3, 6, 6))
    adjacency[1, 4:] = adjacency[1, :, 4:] = 0  # padding entities, masked as gliner's layers do
    adjacency[2] = 0
    reps = torch.zeros(3, 6, 2)
    for threshold in (0.1, 0.5, 0.9):
        ref_idx, ref_mask, _, _ = build_entity_pairs(torch.from_numpy(adjacency), reps, threshold)
        got = rel.pad_pairs(rel.adjacency_pairs(adjacency, threshold))
        if got.shape[1] == 0:
            assert not ref_mask.any()
        else:
            np.testing.assert_array_equal(got, ref_idx.numpy())
    counts = [6, 4, 0]
    mask = torch.tensor([[1] * n + [0] * (6 - n) for n in counts])
    ref_idx, _, _, _ = build_all_entity_pairs(reps, mask)
    np.testing.assert_array_equal(rel.pad_pairs(rel.all_pairs(counts)), ref_idx.numpy())


def test_decode_relations_maps_to_first_decoded_entity_and_drops_removed_ones() -> None:
    spans = np.array([[0, 1], [3, 3], [5, 6], [3, 3]])  # entity 3 repeats entity 1's span
    decoded = [(0, 1), (3, 3), (3, 3)]  # (5, 6) was removed by greedy; (3, 3) twice (multi-label)
    mapping = rel.entity_map(spans, decoded)
    np.testing.assert_array_equal(mapping, [0, 1, -1, 1])
    pairs = np.array([[0, 1], [0, 2], [3, 0], [-1, -1]])
    np.testing.assert_array_equal(rel.surviving_pairs(pairs, mapping), [0, 2])
    probs = np.array([[0.5, 0.9], [0.2, 0.7]], dtype=np.float32)  # rows of pairs 0 and 2
    got = rel.decode_relations(pairs[[0, 2]], probs, mapping, 0.5)
    assert got == [(0, 1, 1, pytest.approx(0.9)), (1, 0, 1, pytest.approx(0.7))]
    # strictly greater, compared as Python floats (0.5 is exact in float32)
    assert rel.decode_relations(pairs[[0, 2]], probs, mapping, 0.9) == []


# ------------------------------------------------------------------ end to end vs gliner
def _relation_key(relations: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            tuple(r["head"][k] for k in ("start", "end", "text", "type", "entity_idx")),
            tuple(r["tail"][k] for k in ("start", "end", "text", "type", "entity_idx")),
            r["relation"],
        )
        for r in relations
    ]


def assert_same_relex(ref: Any, got: Any, where: str) -> tuple[int, int]:
    ref_entities, ref_relations = ref
    got_entities, got_relations = got
    assert len(got_relations) == len(ref_relations) == len(ref_entities), where
    n_ent = assert_same(ref_entities, got_entities, where)
    n_rel = 0
    for i in range(len(ref_entities)):
        assert _relation_key(got_relations[i]) == _relation_key(ref_relations[i]), f"{where}, text {i}"
        for r, g in zip(ref_relations[i], got_relations[i]):
            assert set(g) == {"head", "tail", "relation", "score"} and isinstance(g["score"], float)
            assert abs(r["score"] - g["score"]) <= SCORE_TOL, f"{where}, text {i}: {r} vs {g}"
        n_rel += len(ref_relations[i])
    return n_ent, n_rel


@pytest.fixture
def relex(request: pytest.FixtureRequest) -> Checkpoint:
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("relex", list(RELEX_CHECKPOINTS), indirect=True)
def test_relex_equals_gliner_across_thresholds_and_modes(relex: Checkpoint) -> None:
    model = GLiNER.from_pretrained(relex.export_dir)
    assert model.arch == RELEX_CHECKPOINTS[relex.name.replace("-", "_")]
    counts = []
    # gliner scores every pair of selected entities, over the batch: at 0.1 one mode keeps the test
    # fast, and the texts go one per call (batches of one on both sides: a whole batch made gliner's
    # token relex allocate 10 GB for its pair scores).
    for threshold, modes in ((0.1, MODES[2:]), (0.3, MODES[1:]), (0.5, MODES), (0.7, MODES), (0.9, MODES)):
        batches = [[t] for t in RELEX_TEXTS] if threshold < 0.3 else [RELEX_TEXTS]
        for flat_ner, multi_label in modes:
            kw = dict(threshold=threshold, flat_ner=flat_ner, multi_label=multi_label)
            for texts in batches:
                ref = relex.torch_model.inference(texts, RELEX_LABELS, relations=RELATIONS, **kw)
                got = model.inference(texts, RELEX_LABELS, relations=RELATIONS, **kw)
                counts.append(assert_same_relex(ref, got, f"{relex.name} {kw}"))
    n_rel = [r for _, r in counts]
    assert max(n_rel) > 20 and min(n_rel) == 0  # relations found, and inputs with none
    # Nothing selected at all: gliner's relation layers see no entity.
    kw = dict(threshold=0.9999, relation_threshold=0.0, adjacency_threshold=0.0)
    ref = relex.torch_model.inference(RELEX_TEXTS, RELEX_LABELS, relations=RELATIONS, **kw)
    assert assert_same_relex(
        ref, model.inference(RELEX_TEXTS, RELEX_LABELS, relations=RELATIONS, **kw), "0.9999"
    ) == (0, 0)


@pytest.mark.parametrize("relex", list(RELEX_CHECKPOINTS), indirect=True)
def test_adjacency_and_relation_thresholds_are_run_time_arguments(relex: Checkpoint) -> None:
    model = GLiNER.from_pretrained(relex.export_dir)
    seen = set()
    for adjacency_threshold, relation_threshold in (
        (0.1, 0.9),
        (0.5, 0.5),
        (0.9, 0.1),
        (0.999, 0.3),
        (0.3, 0.7),
    ):
        kw = dict(
            threshold=0.4, adjacency_threshold=adjacency_threshold, relation_threshold=relation_threshold
        )
        ref = relex.torch_model.inference(RELEX_TEXTS, RELEX_LABELS, relations=RELATIONS, **kw)
        got = model.inference(RELEX_TEXTS, RELEX_LABELS, relations=RELATIONS, **kw)
        seen.add(assert_same_relex(ref, got, f"{relex.name} {kw}")[1])
    assert len(seen) >= 3  # the thresholds change the answer


def test_no_relations_per_text_relations_and_empty_texts(span_relex_minilm: Checkpoint) -> None:
    model = GLiNER.from_pretrained(span_relex_minilm.export_dir)
    ref_model = span_relex_minilm.torch_model
    texts = [*RELEX_TEXTS, "", "   "]
    for relations in ([], ["met"], [RELATIONS[:2], ["born in"], [], RELATIONS, ["met"], []]):
        ref = ref_model.inference(texts, RELEX_LABELS, relations=relations, threshold=0.5, flat_ner=False)
        got = model.inference(texts, RELEX_LABELS, relations=relations, threshold=0.5, flat_ner=False)
        _, n_rel = assert_same_relex(ref, got, f"relations={relations}")
        assert (n_rel == 0) == (relations == [])
    # entities only, as gliner's predict_entities / return_relations=False
    ents = model.inference(RELEX_TEXTS, RELEX_LABELS, relations=RELATIONS, return_relations=False)
    assert ents == model.inference(RELEX_TEXTS, RELEX_LABELS, relations=RELATIONS)[0]


def test_relations_within_windows_of_a_long_text(span_relex_minilm: Checkpoint) -> None:
    """A text past the window is run in windows: relations found in each, never repeated."""
    model = GLiNER.from_pretrained(span_relex_minilm.export_dir)
    text = RELEX_TEXTS[0]
    _, relations = model.inference([text], RELEX_LABELS, relations=RELATIONS, threshold=0.5)
    w_entities, w_relations = model.inference(
        [text], RELEX_LABELS, relations=RELATIONS, threshold=0.5, window=8, overlap=3
    )
    keys = [(r["head"]["entity_idx"], r["tail"]["entity_idx"], r["relation"]) for r in w_relations[0]]
    assert len(keys) == len(set(keys)) > 0
    for r in w_relations[0]:
        for end in ("head", "tail"):
            e = w_entities[0][r[end]["entity_idx"]]
            assert (r[end]["start"], r[end]["end"], r[end]["type"]) == (e["start"], e["end"], e["label"])
    assert relations[0]  # the whole text has relations too


def test_relex_input_errors(span_relex_minilm: Checkpoint, uni_minilm: Checkpoint) -> None:
    model = GLiNER.from_pretrained(span_relex_minilm.export_dir)
    with pytest.raises(TypeError, match="relation 1 must be a string"):
        model.inference(["a b"], ["person"], relations=["met", 3])
    with pytest.raises(ValueError, match="one list per text"):
        model.inference(["a b", "c"], ["person"], relations=[["met"]])
    with pytest.raises(ValueError, match=r"relation_threshold must be in \[0, 1\]"):
        model.inference(["a b"], ["person"], relations=["met"], relation_threshold=float("nan"))
    with pytest.raises(ValueError, match=r"adjacency_threshold must be in \[0, 1\]"):
        model.inference(["a b"], ["person"], relations=["met"], adjacency_threshold=1.5)
    plain = GLiNER.from_pretrained(uni_minilm.export_dir)
    with pytest.raises(ValueError, match="relations need a relex export"):
        plain.inference(["a b"], ["person"], relations=["met"])


def test_relex_manifest_needs_relation_fields(span_relex_minilm: Checkpoint, tmp_path: Path) -> None:
    import shutil

    manifest = load_manifest(span_relex_minilm.export_dir)
    assert manifest.relations_layer == "dot" and manifest.rel_token == "<<REL>>"
    assert set(manifest.graphs) == {"text_encoder", "scorer", "relation_adjacency", "relation_scorer"}
    broken = tmp_path / "broken"
    shutil.copytree(span_relex_minilm.export_dir, broken)
    data = json.loads((broken / MANIFEST_NAME).read_text())
    del data["rel_token_id"]
    (broken / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="rel_token_id"):
        load_manifest(broken)


# ------------------------------------------------------- every relation layer gliner ships
@pytest.mark.parametrize(
    ("relations_layer", "triples_layer"),
    [
        ("mlp", None),
        ("attention", None),
        ("bilinear", None),
        ("gcn", None),
        ("gat", None),
        ("none", None),
        ("dot", "DistMult"),
        ("none", "ComplEx"),
    ],
)
def test_every_relation_layer_exports_with_parity(
    ckpt_root: Path, relex_backbone: Path, relations_layer: str, triples_layer: str | None
) -> None:
    ckpt = relex_layer_checkpoint(ckpt_root, relex_backbone, relations_layer, triples_layer)
    model = GLiNER.from_pretrained(ckpt.export_dir)
    expected = {"text_encoder", "scorer", "relation_scorer"} | (
        set() if relations_layer == "none" else {"relation_adjacency"}
    )
    assert set(model.manifest.graphs) == expected
    n_rel = []
    for threshold, adjacency_threshold in ((0.3, 0.01), (0.5, None), (0.7, 0.9)):
        kw = dict(threshold=threshold, adjacency_threshold=adjacency_threshold, flat_ner=False)
        got = model.inference(RELEX_TEXTS, RELEX_LABELS, relations=RELATIONS, **kw)
        try:
            ref = ckpt.torch_model.inference(RELEX_TEXTS, RELEX_LABELS, relations=RELATIONS, **kw)
        except AttributeError as e:  # gliner's attention layers on a batch with no entity
            assert relations_layer in ("attention", "gat") and "'NoneType'" in str(e)
            assert got == ([[] for _ in RELEX_TEXTS], [[] for _ in RELEX_TEXTS])
            continue
        n_rel.append(assert_same_relex(ref, got, f"{relations_layer}/{triples_layer} {kw}")[1])
    assert max(n_rel) > 0
    # No entity in the whole batch: no relation, no error (gliner's own "attention" layer
    # crashes there: nn.MultiheadAttention returns no weights for zero entities).
    entities, relations = model.inference(RELEX_TEXTS, RELEX_LABELS, relations=RELATIONS, threshold=0.9999)
    assert entities == relations == [[] for _ in RELEX_TEXTS]


def test_predict_cli_prints_relations(
    span_relex_minilm: Checkpoint, uni_minilm: Checkpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    from gliner_onnx.cli import main

    text = RELEX_TEXTS[0]
    argv = ["predict", str(span_relex_minilm.export_dir), "--labels", ",".join(RELEX_LABELS), text]
    assert main([*argv, "--relations", ",".join(RELATIONS), "--relation-threshold", "0.3"]) == 0
    record = json.loads(capsys.readouterr().out)
    model = GLiNER.from_pretrained(span_relex_minilm.export_dir)
    entities, relations = model.inference([text], RELEX_LABELS, relations=RELATIONS, relation_threshold=0.3)
    assert record == {"text": text, "entities": entities[0], "relations": relations[0]}
    assert relations[0]
    plain = ["predict", str(uni_minilm.export_dir), "--labels", "person", "--relations", "met", text]
    assert main(plain) == 1
    assert "need a relex export" in capsys.readouterr().err


def test_single_text_methods_are_gliners(span_relex_minilm: Checkpoint) -> None:
    model = GLiNER.from_pretrained(span_relex_minilm.export_dir)
    ref_model = span_relex_minilm.torch_model
    text = RELEX_TEXTS[0]
    ref = ref_model.predict_relations(text, RELEX_LABELS, RELATIONS, threshold=0.4, flat_ner=False)
    got = model.predict_relations(text, RELEX_LABELS, RELATIONS, threshold=0.4, flat_ner=False)
    assert assert_same_relex(([ref[0]], [ref[1]]), ([got[0]], [got[1]]), "predict_relations")[1] > 0
    ref_entities = ref_model.predict_entities(text, RELEX_LABELS, relations=RELATIONS, threshold=0.4)
    got_entities = model.predict_entities(text, RELEX_LABELS, relations=RELATIONS, threshold=0.4)
    assert_same([ref_entities], [got_entities], "predict_entities")
