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

What both decoder archs do (span mode against the reference: thresholds, constraints,
beams, nested, per-text labels, no decoder context; the manifest; IO binding) is tested in
test_decoder.py, parametrized by arch; this file holds the token arch's own behaviour.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gliner_onnx import GLiNER
from gliner_onnx.runtime.generation_loop import KIND_REP, KIND_TOKEN
from gliner_onnx.runtime.label_generation import (
    selected_token_spans,
    token_span_candidates,
    token_span_prefixes,
)

from .conftest import LABELS, Checkpoint
from .decoders import (
    CONSTRAINTS,
    EMPTY_GENERATION,
    PARITY_TEXTS,
    assert_same,
    corrected_reference,
)


# --------------------------------------------------------------------------- span mode
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
            ref = corrected_reference(token_prompt_decoder, PARITY_TEXTS, LABELS, **kw)
            got = ours.inference(PARITY_TEXTS, LABELS, batch_size=1, **kw)
            total += assert_same(ref, got, f"prompt, threshold {threshold}")
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
