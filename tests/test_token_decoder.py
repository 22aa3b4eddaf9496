"""The token-level generative decoder (`uniencoder_token_decoder`).

gliner 0.2.29 cannot run this variant's inference (pinned below): span mode crashes in
generation when no span is selected and compares 0-based word spans with 1-based decoder
word indices; prompt mode feeds a 3-D tensor to a 4-D unpacking; batches crash on spans
that the token scores find in a shorter text's padding (IndexError). Its selection of
spans for the decoder is also fixed at 0.5 whatever the threshold.

The runtime does what the seed describes: every detected span (score above the call's
threshold) is decoded from [projected span representation, decoder tokens of the span's
own words]. The reference here is gliner's own model with exactly those two corrections
fed into its `select_token_decoder_embedding` (logits shifted by logit(threshold), word
indices shifted by one; prompt mode: its output made 4-D), everything else -- candidate
spans, TokenMarker, span scores, greedy, generation, decoding -- is gliner's code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gliner_onnx import GLiNER
from gliner_onnx.export.decoder_export import corrected_token_decoder
from gliner_onnx.runtime.generation_loop import KIND_REP, KIND_TOKEN
from gliner_onnx.runtime.label_generation import (
    selected_token_spans,
    token_span_candidates,
    token_span_prefixes,
)

from .conftest import LABELS, LOGIT_STD, TEXTS, Checkpoint, _checkpoint, _minilm
from .test_decoder import _assert_same

THRESHOLDS = (0.3, 0.5, 0.7)
PARITY_TEXTS = [*TEXTS[:4], TEXTS[-1]]
CONSTRAINTS = ["person", "city", "organization name", "date of birth", "award"]
TOKEN_LOGIT_SHIFT = 1.5


@pytest.fixture(scope="session")
def token_decoder(ckpt_root: Path) -> Checkpoint:
    from gliner_onnx.export.demo.backbones import build_gliner, make_tiny_gpt2

    gpt2 = make_tiny_gpt2(ckpt_root / "tiny-gpt2-token")

    def build() -> Any:
        model = build_gliner(
            _minilm(),
            span_mode="token_level",
            seed=8,
            logit_scale=LOGIT_STD,
            labels_decoder=str(gpt2),
            decoder_mode="span",
        )
        return _lean_positive(model)

    return _checkpoint(ckpt_root, "token-decoder", build)


def _lean_positive(model: Any) -> Any:
    """A candidate span needs start, end and every inside score above the threshold on
    one label; with centred random token logits few survive at 0.7. Shift them up."""
    import torch

    with torch.no_grad():
        model.model.scorer.out_mlp[-1].bias.add_(TOKEN_LOGIT_SHIFT)
    return model


@pytest.fixture(scope="session")
def token_prompt_decoder(ckpt_root: Path) -> Checkpoint:
    """Prompt mode on a tiny DeBERTa as wide as the decoder (no projection)."""
    from gliner_onnx.export.demo.backbones import build_gliner, make_tiny_gpt2

    from .backbones import make_tiny_deberta_v3

    gpt2 = make_tiny_gpt2(ckpt_root / "tiny-gpt2-48-token", hidden_size=48, seed=2)
    backbone = make_tiny_deberta_v3(ckpt_root / "tiny-deberta-v3-token-dec")
    return _checkpoint(
        ckpt_root,
        "token-prompt-decoder",
        lambda: _lean_positive(
            build_gliner(
                backbone,
                span_mode="token_level",
                seed=9,
                max_width=8,
                hidden_size=48,
                logit_scale=LOGIT_STD,
                labels_decoder=str(gpt2),
                decoder_mode="prompt",
            )
        ),
    )


@pytest.fixture(scope="session")
def token_ours(token_decoder: Checkpoint) -> GLiNER:
    return GLiNER.from_pretrained(token_decoder.export_dir)


EMPTY_GENERATION = "cannot reshape tensor of 0 elements"


Entities = list[dict[str, Any]]


def reference(ckpt: Checkpoint, texts: list[str], labels: Any, **kw: Any) -> list[Entities | None]:
    """The corrected reference, one text per batch (gliner's batches crash on spans in
    padding). None for a text where no span is selected: gliner's generation crashes on
    an empty batch, and no entity can pass the threshold there."""
    out: list[Entities | None] = []
    with corrected_token_decoder(ckpt.torch_model, kw["threshold"]):
        for i, text in enumerate(texts):
            text_labels = labels[i] if labels and isinstance(labels[0], list) else labels
            try:
                out.append(ckpt.torch_model.inference([text], text_labels, batch_size=1, **kw)[0])
            except RuntimeError as e:
                assert EMPTY_GENERATION in str(e)
                out.append(None)
    return out


# --------------------------------------------------------------------------- span mode
@pytest.mark.parametrize("constrained", [False, True])
def test_span_mode_equals_corrected_gliner(
    token_decoder: Checkpoint, token_ours: GLiNER, constrained: bool
) -> None:
    assert token_ours.arch == "uniencoder_token_decoder"
    constraints = CONSTRAINTS if constrained else None
    counts = {}
    generated: set[str] = set()
    for threshold in THRESHOLDS:
        kw: dict[str, Any] = dict(threshold=threshold, do_sample=False, gen_constraints=constraints)
        ref = reference(token_decoder, PARITY_TEXTS, LABELS, **kw)
        got = token_ours.inference(PARITY_TEXTS, LABELS, batch_size=1, **kw)
        counts[threshold] = _assert_same(ref, got, f"threshold {threshold}, constraints {constrained}")
        # every detected span is decoded: each entity has one generated label
        assert all(len(e["generated_labels"]) == 1 for entities in got for e in entities)
        generated |= {label for entities in got for e in entities for label in e["generated_labels"]}
    assert all(n > 0 for n in counts.values()), counts
    assert counts[0.3] > counts[0.7]
    if constrained:
        assert generated <= {f" {c}" for c in CONSTRAINTS} and len(generated) > 1
    else:
        assert len(generated) > 5


def test_batches_give_the_answers_of_single_texts(token_decoder: Checkpoint, token_ours: GLiNER) -> None:
    """Batched, the reference crashes (IndexError) on spans its padding yields; ours drops
    spans past a text's words. The prefix padding depends on the batch (attended zero
    vectors, as gliner generates): entities are equal, labels compared to the reference
    run on each batch's own prefix length are checked by the export's validation."""
    kw: dict[str, Any] = dict(threshold=0.5, do_sample=False)
    single = token_ours.inference(PARITY_TEXTS, LABELS, batch_size=1, **kw)
    batched = token_ours.inference(PARITY_TEXTS, LABELS, batch_size=8, **kw)
    strip = [[{k: v for k, v in e.items() if k != "generated_labels"} for e in es] for es in single]
    assert strip == [[{k: v for k, v in e.items() if k != "generated_labels"} for e in es] for es in batched]
    assert all("generated_labels" in e for es in batched for e in es)


def test_nested_multi_label_and_beams_equal_corrected_gliner(
    token_decoder: Checkpoint, token_ours: GLiNER
) -> None:
    kw: dict[str, Any] = dict(threshold=0.4, do_sample=False, flat_ner=False, multi_label=True)
    ref = reference(token_decoder, PARITY_TEXTS, LABELS, **kw)
    assert _assert_same(ref, token_ours.inference(PARITY_TEXTS, LABELS, batch_size=1, **kw), "nested") > 0
    kw = dict(threshold=0.5, do_sample=False, num_gen_sequences=3, gen_constraints=CONSTRAINTS)
    ref = reference(token_decoder, PARITY_TEXTS[:2], LABELS, **kw)
    got = token_ours.inference(PARITY_TEXTS[:2], LABELS, batch_size=1, **kw)
    assert _assert_same(ref, got, "beams") > 0
    assert all(len(e["generated_labels"]) == 3 for es in got for e in es)


def test_per_text_labels_equal_corrected_gliner(token_decoder: Checkpoint, token_ours: GLiNER) -> None:
    per_text = [["person", "date"], ["location"], ["organization", "person", "award"]]
    kw: dict[str, Any] = dict(threshold=0.3, do_sample=False)
    ref = reference(token_decoder, TEXTS[:3], per_text, **kw)
    assert _assert_same(ref, token_ours.inference(TEXTS[:3], per_text, batch_size=1, **kw), "per text") > 0


def test_without_full_decoder_context_equals_corrected_gliner(token_decoder: Checkpoint) -> None:
    ours = GLiNER.from_pretrained(token_decoder.export_dir)
    assert ours.pipeline.decoder is not None
    ours.pipeline.graphs.full_context = False
    model = token_decoder.torch_model
    model.config.full_decoder_context = False
    try:
        kw: dict[str, Any] = dict(threshold=0.5, do_sample=False)
        ref = reference(token_decoder, PARITY_TEXTS, LABELS, **kw)
        assert _assert_same(ref, ours.inference(PARITY_TEXTS, LABELS, batch_size=1, **kw), "no context") > 0
    finally:
        model.config.full_decoder_context = True


def test_spans_below_half_get_labels_at_a_lower_threshold(token_ours: GLiNER) -> None:
    """gliner fixes the decoder's selection at 0.5: an entity scored in (0.3, 0.5] would
    have no generated label at threshold 0.3. Every detected span is decoded here."""
    out = token_ours.inference(PARITY_TEXTS, LABELS, threshold=0.3, do_sample=False)
    low = [e for es in out for e in es if e["score"] <= 0.5]
    assert low and all(len(e["generated_labels"]) == 1 for e in low)


def test_no_candidate_span_gives_no_entity_without_generating(token_ours: GLiNER) -> None:
    """gliner's generation crashes on an empty selection; a text with no span above the
    threshold here gives [] (and blank texts too), beside texts that have entities."""
    out = token_ours.inference(["", *PARITY_TEXTS], LABELS, threshold=0.7, do_sample=False)
    assert out[0] == [] and [] in out[1:] and any(out[1:])
    assert token_ours.inference(["x"], LABELS, threshold=0.99, do_sample=False) == [[]]


# --------------------------------------------------------------------------- prompt mode
def test_prompt_mode_equals_corrected_gliner(token_prompt_decoder: Checkpoint) -> None:
    ours = GLiNER.from_pretrained(token_prompt_decoder.export_dir)
    total = 0
    for threshold in (0.3, 0.6):
        for constraints in (None, CONSTRAINTS):
            kw: dict[str, Any] = dict(threshold=threshold, do_sample=False, gen_constraints=constraints)
            ref = reference(token_prompt_decoder, PARITY_TEXTS, LABELS, **kw)
            got = ours.inference(PARITY_TEXTS, LABELS, batch_size=1, **kw)
            total += _assert_same(ref, got, f"prompt, threshold {threshold}")
            if constraints:  # the generated strings replace the label names
                assert {e["label"] for es in got for e in es} <= {f" {c}" for c in CONSTRAINTS}
    assert total > 0


# --------------------------------------------------------------------------- the reference
def test_gliner_itself_fails_on_the_token_decoder(
    token_decoder: Checkpoint, token_prompt_decoder: Checkpoint
) -> None:
    """Pinned: what gliner 0.2.29 does with this variant, as the README says."""
    with pytest.raises(ValueError, match="not enough values to unpack"):
        token_prompt_decoder.torch_model.inference(PARITY_TEXTS[:1], LABELS, do_sample=False)
    with pytest.raises(RuntimeError, match=EMPTY_GENERATION):  # no candidate span at all
        token_decoder.torch_model.inference(["x"], LABELS, threshold=0.99, do_sample=False)


def test_gliner_selects_the_previous_words_tokens(token_decoder: Checkpoint) -> None:
    """The off-by-one the runtime corrects: gliner's span (s, e) takes the decoder tokens
    of 1-based words s..e, i.e. the previous word (or the prompt, for s = 0)."""
    core = token_decoder.torch_model.model
    import torch

    words_mask = torch.tensor([[0, 0, 1, 1, 2, 3]])  # prompt, prompt, word 0 (2 tokens), 1, 2
    width = core.decoder.decoder_layer.model.config.n_embd
    text = torch.arange(6, dtype=torch.float32).view(1, 6, 1).expand(1, 6, width)
    span_rep = torch.zeros(1, 1, core.config.hidden_size)
    kw: dict[str, Any] = dict(
        span_logits=torch.full((1, 1, 1), 5.0),
        span_rep=span_rep,
        span_idx=torch.tensor([[[1, 1]]]),  # the second word: decoder token 4
        span_mask=torch.ones(1, 1, dtype=torch.bool),
        decoder_text_embeds=text,
    )
    prompts, pmask = torch.zeros(1, 1, core.config.hidden_size), torch.ones(1, 1)
    emb, _, _ = core.select_token_decoder_embedding(prompts, pmask, decoder_words_mask=words_mask, **kw)
    assert emb[0, 0, 1:, 0].tolist() == [2.0, 3.0]  # gliner: word 0's tokens
    emb, _, _ = core.select_token_decoder_embedding(prompts, pmask, decoder_words_mask=words_mask - 1, **kw)
    assert emb[0, 0, 1:, 0].tolist() == [4.0]  # corrected: word 1's token


# --------------------------------------------------------------------------- host stages
def test_token_span_prefixes_layout() -> None:
    """Hand-checked: [zeros, rep, tokens of words start..end], left-padded to the batch's
    longest selected or padding-slot span; padding slots read the text's last slot."""
    dec_ids = np.array([[50, 51, 10, 11, 12, 13, 14], [50, 51, 20, 21, 22, 0, 0]])
    dec_words = np.array([[0, 0, 1, 1, 2, 3, 3], [0, 0, 1, 2, 3, 0, 0]])  # 1-based words
    spans = np.array([[[0, 0], [1, 2], [2, 2]], [[0, 1], [2, 2], [0, 0]]])
    span_rep = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    selected = [np.array([0, 2]), np.array([1])]
    p = token_span_prefixes(span_rep, spans, selected, dec_ids, dec_words)
    # text 0: slot 0 = word 0 -> [10, 11]; slot 2 = word 2 -> [13, 14]; padding slot reads
    # slot 2 (2 tokens). text 1: slot 1 = word 2 -> [22]; padding reads slot 2 = (0, 0) -> [20].
    assert p.prefix_ids.tolist() == [[0, 10, 11], [0, 13, 14], [0, 0, 22]]
    assert p.prefix_kind.tolist() == [
        [KIND_REP, KIND_TOKEN, KIND_TOKEN],
        [KIND_REP, KIND_TOKEN, KIND_TOKEN],
        [0, KIND_REP, KIND_TOKEN],
    ]
    assert np.array_equal(p.span_rep, span_rep[[0, 0, 1], [0, 2, 1]])
    # a long span in a padding slot lengthens every prefix of the batch
    wide = spans.copy()
    wide[1, 2] = (0, 2)  # 3 tokens
    assert token_span_prefixes(span_rep, wide, selected, dec_ids, dec_words).prefix_ids.shape == (3, 4)
    # keep: generate only for a subset, the length still counts every selected slot
    keep = [np.array([2]), np.array([], dtype=np.int64)]
    kept = token_span_prefixes(span_rep, spans, selected, dec_ids, dec_words, keep=keep)
    assert kept.prefix_ids.tolist() == [[0, 13, 14]]
    alone = token_span_prefixes(span_rep, spans, selected, None, None)
    assert alone.prefix_kind.tolist() == [[KIND_REP]] * 3


def test_selection_and_candidates_use_the_texts_own_labels() -> None:
    scores = np.array([[[0.2, 0.9], [0.6, 0.1], [0.8, 0.8]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    # one real label: slot 0's 0.9 is a padding column
    assert selected_token_spans(scores, mask, [1], 0.5)[0].tolist() == [1]
    assert selected_token_spans(scores, mask, [2], 0.5)[0].tolist() == [0, 1]
    spans = np.array([[0, 1], [3, 4], [0, 0]])
    found = token_span_candidates(spans, mask[0], scores[0], num_words=4, threshold=0.15)
    assert found == [(0, 1, 0, pytest.approx(0.2)), (0, 1, 1, pytest.approx(0.9))]  # (3, 4) is past the text
    assert token_span_candidates(spans, mask[0], scores[0], num_words=5, threshold=0.5)[-1][:3] == (3, 4, 0)


def test_export_records_the_token_decoder(token_decoder: Checkpoint, token_ours: GLiNER) -> None:
    m = token_ours.manifest
    assert list(m.graphs) == ["text_encoder", "scorer", "span_encoder", "decoder_prefix", "decoder_step"]
    assert list(m.graphs["span_encoder"].outputs) == ["span_rep", "span_scores"]
    assert m.decoder["mode"] == "span" and m.decoder["full_context"] is True
    assert (token_decoder.export_dir / "decoder" / "tokenizer.json").is_file()


def test_token_decoder_pipeline_runs_every_graph_bound(
    token_decoder: Checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IO binding forced on CPU: every graph runs through the runner, bound; same answers."""
    from .test_graph_runner import assert_bound_answers_are_identical

    def call(m: GLiNER) -> Any:
        return m.inference(TEXTS[:3], LABELS, threshold=0.5, do_sample=False, batch_size=2)

    ref = assert_bound_answers_are_identical(token_decoder.export_dir, call, monkeypatch)
    assert any("generated_labels" in e for entities in ref for e in entities)
