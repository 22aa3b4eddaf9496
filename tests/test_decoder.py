"""The generative label decoders (`uniencoder_span_decoder`, `uniencoder_token_decoder`).

Both archs, span mode (parametrized by arch, `tests/decoders.py`): entities and their
`generated_labels` equal the reference exactly (greedy and beams, thresholds 0.3-0.7, with
and without gen_constraints, nested, per-text labels, without decoder context) on random
heads over MiniLM with a tiny GPT-2 decoder (byte-level BPE trained locally). The span
arch's reference is gliner's own inference; the token arch's is gliner corrected
(test_token_decoder.py). Then the span arch's own behaviour: sampling, chunks, the CLI,
and prompt mode, where gliner's own inference fails (it feeds a 3-D tensor to a 4-D
unpacking), so the labels are checked against gliner's decoder run by hand on the label
representations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gliner_onnx import GLiNER
from gliner_onnx.runtime.generation_loop import (
    KIND_REP,
    KIND_TOKEN,
    GenerationParams,
    Prefixes,
    generate,
    process_logits,
)
from gliner_onnx.runtime.label_generation import span_prefixes
from gliner_onnx.runtime.trie import LabelsTrie, build_trie

from .conftest import LABELS, TEXTS, Checkpoint
from .decoders import (
    CONSTRAINTS,
    PARITY_TEXTS,
    SCORE_TOL,
    THRESHOLDS,
    DecoderArch,
    assert_same,
    decoder_arch,
)


# ------------------------------------------------------------- both archs (span mode)
@pytest.fixture(params=["span", "token"])
def arch(request: pytest.FixtureRequest) -> DecoderArch:
    return decoder_arch(request, request.param)


@pytest.mark.parametrize("constrained", [False, True])
def test_entities_and_generated_labels_equal_the_reference(arch: DecoderArch, constrained: bool) -> None:
    assert arch.ours.arch == f"uniencoder_{arch.name}_decoder"
    constraints = CONSTRAINTS if constrained else None
    counts = {}
    generated: set[str] = set()
    for threshold in THRESHOLDS:
        kw: dict[str, Any] = dict(threshold=threshold, do_sample=False, gen_constraints=constraints)
        ref = arch.reference(PARITY_TEXTS, LABELS, batch_size=arch.batch_size, **kw)
        got = arch.ours.inference(PARITY_TEXTS, LABELS, batch_size=arch.batch_size, **kw)
        counts[threshold] = assert_same(ref, got, f"threshold {threshold}, constraints {constrained}")
        # every detected span is decoded: each entity has one generated label
        assert all(len(e["generated_labels"]) == 1 for entities in got for e in entities)
        generated |= {label for entities in got for e in entities for label in e["generated_labels"]}
    assert all(n > 0 for n in counts.values()), counts
    assert counts[0.3] > counts[0.7]
    if constrained:  # every label is one of the constraints, as the decoder tokenizer decodes it
        assert generated <= {f" {c}" for c in CONSTRAINTS} and len(generated) > 1
    else:  # free generation of a random decoder: many different strings
        assert len(generated) > arch.free_labels


def test_nested_multi_label_and_per_text_labels_equal_the_reference(arch: DecoderArch) -> None:
    """The prefixes' padding depends on the batch: batches of 2 (the span arch)."""
    kw: dict[str, Any] = dict(
        threshold=0.4, do_sample=False, flat_ner=False, multi_label=True, batch_size=min(2, arch.batch_size)
    )
    ref = arch.reference(PARITY_TEXTS, LABELS, **kw)
    got = arch.ours.inference(PARITY_TEXTS, LABELS, **kw)
    assert assert_same(ref, got, "nested, multi-label") > 0
    per_text = [["person", "date"], ["location"], ["organization", "person", "award"]]
    kw = dict(threshold=0.3, do_sample=False, batch_size=arch.batch_size)
    ref = arch.reference(TEXTS[:3], per_text, **kw)
    got = arch.ours.inference(TEXTS[:3], per_text, **kw)
    assert assert_same(ref, got, "per text") > 0


@pytest.mark.parametrize("constrained", [False, True])
def test_beam_search_labels_equal_the_reference(arch: DecoderArch, constrained: bool) -> None:
    """num_gen_sequences > 1: gliner runs HF beam search with that many beams."""
    kw: dict[str, Any] = dict(
        threshold=0.5,
        do_sample=False,
        num_gen_sequences=3,
        gen_constraints=CONSTRAINTS if constrained else None,
    )
    ref = arch.reference(PARITY_TEXTS[:2], LABELS, batch_size=arch.batch_size, **kw)
    got = arch.ours.inference(PARITY_TEXTS[:2], LABELS, batch_size=arch.batch_size, **kw)
    assert assert_same(ref, got, f"beams, constraints {constrained}") > 0
    labels = [e["generated_labels"] for entities in got for e in entities]
    assert all(len(g) == 3 for g in labels) and any(len(set(g)) == 3 for g in labels)


def test_without_full_decoder_context_equals_the_reference(arch: DecoderArch) -> None:
    """full_decoder_context=False: the prefix is the projected span representation alone
    (the export records the flag; here the same graphs run with it switched off)."""
    ours = GLiNER.from_pretrained(arch.ckpt.export_dir)
    assert ours.pipeline.graphs.full_context
    ours.pipeline.graphs.full_context = False
    model = arch.ckpt.torch_model
    model.config.full_decoder_context = False
    try:
        for constraints in (None, CONSTRAINTS):
            kw: dict[str, Any] = dict(threshold=0.5, do_sample=False, gen_constraints=constraints)
            ref = arch.reference(PARITY_TEXTS, LABELS, batch_size=arch.batch_size, **kw)
            got = ours.inference(PARITY_TEXTS, LABELS, batch_size=arch.batch_size, **kw)
            assert assert_same(ref, got, "no decoder context") > 0
    finally:
        model.config.full_decoder_context = True


def test_manifest_records_the_decoder(arch: DecoderArch) -> None:
    m = arch.ours.manifest
    tok = arch.ckpt.torch_model.data_processor.decoder_tokenizer
    assert m.decoder["mode"] == "span" and m.decoder["full_context"] is True
    assert m.decoder["eos_token_id"] == tok.eos_token_id and m.decoder["projection"] is True
    assert m.tokenizers["decoder"].file == "decoder/tokenizer.json"
    assert (arch.ckpt.export_dir / "decoder" / "tokenizer.json").is_file()
    assert tuple(m.graphs) == arch.graphs
    if "span_encoder" in m.graphs:
        assert list(m.graphs["span_encoder"].outputs) == ["span_rep", "span_scores"]
    assert m.span_head == "generic"


def test_pipeline_runs_every_graph_bound(arch: DecoderArch, monkeypatch: pytest.MonkeyPatch) -> None:
    """IO binding forced on CPU: every graph runs through the runner, bound; same answers."""
    from .test_graph_runner import assert_bound_answers_are_identical

    def call(m: GLiNER) -> Any:
        return m.inference(TEXTS[:3], LABELS, threshold=0.5, do_sample=False, batch_size=2)

    ref = assert_bound_answers_are_identical(arch.ckpt.export_dir, call, monkeypatch)
    assert any("generated_labels" in e for entities in ref for e in entities)


# ------------------------------------------------------------------ the span arch
def test_beam_sampling_is_seeded(span_ours: GLiNER) -> None:
    def labels(seed: int) -> list[list[str]]:
        kw: dict[str, Any] = dict(threshold=0.5, num_gen_sequences=2, temperature=2.0, top_k=0, seed=seed)
        return [
            e["generated_labels"]
            for entities in span_ours.inference(TEXTS[:1], LABELS, **kw)
            for e in entities
        ]

    assert labels(1) == labels(1) and labels(1) != labels(2)


def test_kv_cache_off_gives_the_same_labels(span_ours: GLiNER) -> None:
    kw: dict[str, Any] = dict(threshold=0.6, do_sample=False)
    cached = span_ours.inference(TEXTS[:3], LABELS, **kw)
    assert cached == span_ours.inference(TEXTS[:3], LABELS, use_cache=False, **kw)


def test_generation_in_chunks_gives_the_same_labels(
    span_ours: GLiNER, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past DECODE_SEQUENCES sequences a batch's prefixes are generated in chunks (memory):
    greedy and beam answers do not change."""
    from gliner_onnx.runtime import label_generation as generative

    kw: dict[str, Any] = dict(threshold=0.3, do_sample=False)
    greedy = span_ours.inference(PARITY_TEXTS, LABELS, **kw)
    beams = span_ours.inference(PARITY_TEXTS[:2], LABELS, num_gen_sequences=3, **kw)
    prefix = span_ours.pipeline.decoder.prefix
    calls: list[int] = []
    run = prefix.run
    monkeypatch.setattr(prefix, "run", lambda feeds: calls.append(len(feeds["prefix_ids"])) or run(feeds))
    monkeypatch.setattr(generative, "DECODE_SEQUENCES", 6)
    assert span_ours.inference(PARITY_TEXTS, LABELS, **kw) == greedy
    assert max(calls) == 6 and len(calls) > len(PARITY_TEXTS)  # several chunks per batch
    calls.clear()
    assert span_ours.inference(PARITY_TEXTS[:2], LABELS, num_gen_sequences=3, **kw) == beams
    assert max(calls) == 2 and len(calls) > 1  # 2 prefixes x 3 beams per chunk


def test_sampling_is_seeded_and_respects_constraints(span_ours: GLiNER) -> None:
    def labels(**kw: Any) -> list[str]:
        out = span_ours.inference(TEXTS[:2], LABELS, threshold=0.5, do_sample=True, **kw)
        return [g for entities in out for e in entities for g in e["generated_labels"]]

    hot = dict(temperature=2.0, top_k=0)
    assert labels(seed=1, **hot) == labels(seed=1, **hot)
    assert labels(seed=1, **hot) != labels(seed=2, **hot)
    greedy = span_ours.inference(TEXTS[:2], LABELS, threshold=0.5, do_sample=False)
    cold = span_ours.inference(TEXTS[:2], LABELS, threshold=0.5, do_sample=True, temperature=1e-6, seed=3)
    assert cold == greedy  # at a temperature near 0 sampling is greedy
    constrained = labels(seed=4, gen_constraints=CONSTRAINTS, **hot)
    assert set(constrained) <= {f" {c}" for c in CONSTRAINTS} and len(set(constrained)) > 1


def test_max_new_tokens_bounds_the_generated_labels(span_ours: GLiNER) -> None:
    one = span_ours.inference(TEXTS[:2], LABELS, threshold=0.5, do_sample=False, max_new_tokens=1)
    full = span_ours.inference(TEXTS[:2], LABELS, threshold=0.5, do_sample=False)
    for a, b in zip(one, full):
        for ea, eb in zip(a, b):
            assert eb["generated_labels"][0].startswith(ea["generated_labels"][0])
    assert any(
        e["generated_labels"][0] != f["generated_labels"][0] for a, b in zip(one, full) for e, f in zip(a, b)
    )


def test_bad_generation_arguments_are_clear_errors(span_ours: GLiNER, uni_minilm: Checkpoint) -> None:
    with pytest.raises(ValueError, match="num_gen_sequences"):
        span_ours.inference(TEXTS[:1], LABELS, num_gen_sequences=0)
    with pytest.raises(TypeError, match="unknown generation arguments"):
        span_ours.inference(TEXTS[:1], LABELS, num_beams=2)
    with pytest.raises(TypeError, match="gen_constraints"):
        span_ours.inference(TEXTS[:1], LABELS, gen_constraints="person")
    with pytest.raises(ValueError, match="temperature"):
        span_ours.inference(TEXTS[:1], LABELS, temperature=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        span_ours.inference(TEXTS[:1], LABELS, max_new_tokens=0)
    plain = GLiNER.from_pretrained(uni_minilm.export_dir)
    with pytest.raises(TypeError, match="need a decoder export"):
        plain.inference(TEXTS[:1], LABELS, gen_constraints=["person"])


def test_cli_predict_prints_generated_labels(
    span_decoder: Checkpoint, span_ours: GLiNER, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from gliner_onnx.cli import main

    text = TEXTS[0]
    args = ["predict", str(span_decoder.export_dir), "--labels", "person,location", text]
    assert main([*args, "--greedy", "--gen-constraints", "person,city"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = span_ours.predict_entities(
        text, ["person", "location"], do_sample=False, gen_constraints=["person", "city"]
    )
    assert printed["entities"] == json.loads(json.dumps(expected)) and expected


def test_manifest_without_decoder_settings_is_refused(span_decoder: Checkpoint, tmp_path: Path) -> None:
    import json
    import shutil

    from gliner_onnx.errors import ManifestError
    from gliner_onnx.manifest import MANIFEST_NAME, load_manifest

    copy = tmp_path / "export"
    shutil.copytree(span_decoder.export_dir, copy)
    data = json.loads((copy / MANIFEST_NAME).read_text())
    del data["decoder"]
    (copy / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="decoder"):
        load_manifest(copy)


# ------------------------------------------------------------------------- prompt mode
def test_gliner_itself_fails_in_prompt_mode(prompt_decoder: Checkpoint) -> None:
    with pytest.raises(ValueError, match="not enough values to unpack"):
        prompt_decoder.torch_model.inference(TEXTS[:1], LABELS, do_sample=False)
    ours = GLiNER.from_pretrained(prompt_decoder.export_dir)
    with pytest.raises(ValueError, match="num_gen_sequences must be 1"):
        ours.inference(TEXTS[:1], LABELS, num_gen_sequences=2)


@pytest.mark.parametrize("constraints", [None, ["human", "place", "company"]])
def test_prompt_mode_labels_are_gliners_decoder_on_the_label_representations(
    prompt_decoder: Checkpoint, constraints: list[str] | None
) -> None:
    """Expected by hand: gliner's forward gives the label representations; its own
    `Decoder.generate_from_embeds` (HF generate, greedy) names each one; the entities
    are gliner's span decoding with those names."""
    import torch

    model = prompt_decoder.torch_model
    ours = GLiNER.from_pretrained(prompt_decoder.export_dir)
    labels = ["person", "location", "date"]
    trie = model.set_labels_trie(constraints) if constraints else None
    prepared = model.prepare_batch(TEXTS[:3], labels)
    batch = model.collate_batch(prepared["input_x"], prepared["entity_types"], model.create_collator())
    with torch.inference_mode():
        out = model.model(**batch)
        reps = out.prompts_embedding[out.prompts_embedding_mask.bool()].unsqueeze(1)
        ids = model.model.decoder.generate_from_embeds(
            reps,
            max_new_tokens=15,
            eos_token_id=model.data_processor.decoder_tokenizer.eos_token_id,
            pad_token_id=model.data_processor.decoder_tokenizer.pad_token_id,
            do_sample=False,
            labels_trie=trie,
        )
    names = model.data_processor.decoder_tokenizer.batch_decode(ids, skip_special_tokens=True)
    assert len(names) == 3 * len(labels)
    if constraints:
        assert set(names) <= {f" {c}" for c in constraints}
    got = ours.inference(TEXTS[:3], labels, threshold=0.4, do_sample=False, gen_constraints=constraints)
    # gliner's prompt-mode forward and plain span decoding (no generation), names replaced
    model.config.labels_decoder, decoder = None, model.config.labels_decoder
    try:
        plain = model.inference(TEXTS[:3], labels, threshold=0.4)
    finally:
        model.config.labels_decoder = decoder
    assert sum(len(g) for g in got) > 0
    for i, (r, g) in enumerate(zip(plain, got)):
        rename = {lab: names[i * len(labels) + k] for k, lab in enumerate(labels)}
        assert [(e["start"], e["end"], rename[e["label"]]) for e in r] == [
            (e["start"], e["end"], e["label"]) for e in g
        ]
        assert np.allclose([e["score"] for e in r], [e["score"] for e in g], atol=SCORE_TOL)
        assert all("generated_labels" not in e for e in g)


# ------------------------------------------------------------------------- unit stages
def test_labels_trie_matches_gliners() -> None:
    from gliner.decoding.trie import LabelsTrie as Reference

    rng = np.random.default_rng(0)
    seqs = [[*rng.integers(0, 6, size=int(rng.integers(1, 5))).tolist(), 9] for _ in range(30)]
    ours, ref = LabelsTrie(seqs), Reference([[int(t) for t in s] for s in seqs])
    for prefix in [[], *[s[:k] for s in seqs for k in range(len(s) + 1)], [7], [0, 7, 1]]:
        assert ours.get(prefix) == ref.get([int(t) for t in prefix]), prefix
    assert build_trie(None, str.encode, bos_token_id=None, eos_token_id=9) is None
    assert build_trie([], str.encode, bos_token_id=None, eos_token_id=9) is None
    with pytest.raises(ValueError, match="no decoder token"):
        build_trie([""], lambda s: [], bos_token_id=None, eos_token_id=9)
    trie = build_trie(["ab"], lambda s: [1, 2, 3], bos_token_id=1, eos_token_id=9)
    assert trie is not None and trie.get([]) == [2] and trie.get([2, 3]) == [9]


def test_logits_processing_is_the_references() -> None:
    logits = np.array([[0.5, 2.0, -1.0, 1.0], [3.0, -2.0, 0.0, 0.1]], dtype=np.float32)
    trie = LabelsTrie([[2, 3], [0, 3]])
    greedy = GenerationParams(do_sample=False)
    got = process_logits(logits, [[], [5]], trie, 3, greedy)
    f32min = np.finfo(np.float32).min
    # row 0: tokens 2 and 0 allowed; row 1: the prefix left the trie -> eos (3) only
    expected = np.array([[0.5, -1e9, -1.0, -1e9], [-1e9, -1e9, -1e9, 0.1]], dtype=np.float32) + np.float32(
        1e-6
    )
    np.testing.assert_array_equal(got, expected)
    assert f32min < -1e9
    sampled = process_logits(logits, [[], []], None, 3, GenerationParams(temperature=0.5, top_k=2))
    np.testing.assert_allclose(sampled[0], [-np.inf, 4.000002, -np.inf, 2.000002], rtol=1e-6)


def test_span_prefix_layout_pads_with_the_references_padding_slots() -> None:
    """Two texts, max_width 2, 3 words max: text 0 keeps spans 0 (word 0) and 3 (words 1-2),
    text 1 keeps nothing. Decoder word index per token (0: prompt/special/padding)."""
    span_rep = np.arange(2 * 3 * 2 * 1, dtype=np.float32).reshape(2, 3, 2, 1)
    dec_ids = np.array([[50, 51, 52, 53, 54, 55], [60, 61, 62, 0, 0, 0]])
    dec_words = np.array([[0, 1, 2, 2, 3, 0], [0, 1, 1, 0, 0, 0]])
    selected = [np.array([0, 3]), np.array([], dtype=np.int64)]
    p = span_prefixes(span_rep, selected, dec_ids, dec_words, max_width=2)
    # padding slots read as the span of word indices 0..1: text 0 has 3 such tokens and
    # text 1 has 6, so every prefix is 6 + 1 long although the longest span has 3 tokens.
    assert p.prefix_ids.shape == (2, 7)
    np.testing.assert_array_equal(p.span_rep[:, 0], [0.0, 3.0])
    np.testing.assert_array_equal(p.prefix_kind[0], [0, 0, 0, 0, 0, KIND_REP, KIND_TOKEN])
    np.testing.assert_array_equal(p.prefix_ids[0, -1:], [51])
    np.testing.assert_array_equal(p.prefix_kind[1], [0, 0, 0, KIND_REP, KIND_TOKEN, KIND_TOKEN, KIND_TOKEN])
    np.testing.assert_array_equal(p.prefix_ids[1, -3:], [52, 53, 54])
    alone = span_prefixes(span_rep, selected, None, None, max_width=2)
    assert alone.prefix_kind.tolist() == [[KIND_REP], [KIND_REP]]


class _Fake:
    """A decoder whose next token is (last token + 1) % vocab; eos = 4."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if "past" in feeds:
            self.calls.append("step")
            last, past = feeds["input_ids"][:, 0], feeds["past"]
            cache = np.concatenate([past, np.zeros((*past.shape[:4], 1, 1), np.float32)], axis=4)
        else:
            self.calls.append("prefix")
            last = feeds["prefix_ids"][:, -1]
            cache = np.zeros((1, 2, len(last), 1, feeds["prefix_ids"].shape[1], 1), np.float32)
        logits = np.eye(6, dtype=np.float32)[(last + 1) % 6] * 5
        return [logits, cache]


def test_generation_loop_stops_at_eos_and_drops_finished_rows() -> None:
    fake = _Fake()
    p = Prefixes(
        np.zeros((2, 1), np.float32),
        np.array([[0, 1], [0, 2]]),
        np.array([[KIND_REP, KIND_TOKEN], [KIND_REP, KIND_TOKEN]]),
    )
    out = generate(fake, fake, p, eos_token_id=4, trie=None, params=GenerationParams(do_sample=False))
    assert out == [[2, 3], [3]]
    assert fake.calls == ["prefix", "step", "step"]
    nocache = _Fake()
    params = GenerationParams(do_sample=False, use_cache=False)
    assert generate(nocache, nocache, p, eos_token_id=4, trie=None, params=params) == out
    assert nocache.calls == ["prefix"] * 3
