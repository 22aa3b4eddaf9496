"""The torch modules traced into each graph, built around gliner 0.2.29's own layers.

Each wrapper calls the reference's modules in the reference's order (`modeling/base.py`
UniEncoderSpanModel.forward / BiEncoderSpanModel.forward), split where the data
dependencies allow: everything that depends only on the text is in the text encoder,
only on the labels in the label encoder, and the scorer is the einsum plus sigmoid.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from gliner.modeling.utils import extract_word_embeddings
from torch import nn


class _Wrapper(nn.Module):
    """Base of the wrappers around gliner's core model (`GLiNER.model`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model: Any = model


class _BiTextSide(_Wrapper):
    """Base of the bi-encoder text encoders: the text side's word embeddings
    (`BaseBiEncoderModel.get_representations`; the bi-encoder never runs its LSTM)."""

    def __init__(self, model: nn.Module, subtoken_pooling: str):
        super().__init__(model)
        self.subtoken_pooling = subtoken_pooling

    def words(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
    ) -> torch.Tensor:
        token_embeds = self.model.token_rep_layer.encode_text(input_ids, attention_mask)
        batch, _, hidden = token_embeds.shape
        words, _ = extract_word_embeddings(
            token_embeds,
            words_mask,
            attention_mask,
            batch,
            text_lengths.max(),
            hidden,
            text_lengths,
            self.subtoken_pooling,
        )
        return words


class UniSpanTextEncoder(_Wrapper):
    """Uni-encoder: labels and text encoded together -> (span_rep, prompts)."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
        span_idx: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rep = self.model.get_representations(input_ids, attention_mask, text_lengths, words_mask)
        span_rep = self.model.span_rep_layer(rep.words_embedding, span_idx)
        prompts = self.model.prompt_rep_layer(rep.prompts_embedding)
        return span_rep, prompts


class BiSpanTextEncoder(_BiTextSide):
    """Bi-encoder text side -> span_rep."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
        span_idx: torch.Tensor,
    ) -> torch.Tensor:
        words = self.words(input_ids, attention_mask, words_mask, text_lengths)
        return self.model.span_rep_layer(words, span_idx)


class BiLabelEncoder(_Wrapper):
    """Bi-encoder label side -> final label embeddings (after prompt_rep_layer)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.model.token_rep_layer.encode_labels(input_ids, attention_mask)
        return self.model.prompt_rep_layer(pooled)


class SpanScorer(nn.Module):
    """sigmoid(einsum BLKD,BCD->BLKC): the reference's logits, as probabilities."""

    def forward(self, span_rep: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.einsum("BLKD,BCD->BLKC", span_rep, prompts))


# ---------------------------------------------------------------- factorized span head
# gliner's SpanMarkerV0 (`modeling/span_rep.py`):
#   start = project_start(h); end = project_end(h)
#   span_rep = out_project(relu(cat[start[i], end[j]]))     out_project = L2(relu(L1(.)))
#   logits = span_rep . prompt
# L1 on a concatenation is a sum of two half-width products, and ReLU commutes with
# the gather, so L1's halves run once per word here; L2 is linear, so
# span_rep . p = relu(L1(...)) . (L2.weight^T p) + L2.bias . p, folded into the labels.


def marker_v0(model: Any) -> Any:
    """The model's SpanMarkerV0 layer, or None when its span head is another kind."""
    from gliner.modeling.span_rep import SpanMarkerV0

    inner = getattr(getattr(model, "span_rep_layer", None), "span_rep_layer", None)
    return inner if isinstance(inner, SpanMarkerV0) else None


def _span_halves(marker: Any, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per word: (start half, end half + bias) of the output MLP's first layer."""
    first = marker.out_project[0]
    hidden = marker.project_start[-1].out_features
    start = torch.relu(marker.project_start(words))
    end = torch.relu(marker.project_end(words))
    w_start, w_end = first.weight[:, :hidden], first.weight[:, hidden:]
    return start @ w_start.T, end @ w_end.T + first.bias


class UniFactorizedSpanTextEncoder(_Wrapper):
    """Uni-encoder -> (span_start, span_end, prompts) for the factorized span head."""

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self.marker = marker_v0(model)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rep = self.model.get_representations(input_ids, attention_mask, text_lengths, words_mask)
        start, end = _span_halves(self.marker, rep.words_embedding)
        return start, end, self.model.prompt_rep_layer(rep.prompts_embedding)


class BiFactorizedSpanTextEncoder(_BiTextSide):
    """Bi-encoder text side -> (span_start, span_end) for the factorized span head."""

    def __init__(self, model: nn.Module, subtoken_pooling: str):
        super().__init__(model, subtoken_pooling)
        self.marker = marker_v0(model)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        words = self.words(input_ids, attention_mask, words_mask, text_lengths)
        return _span_halves(self.marker, words)


def _span_hidden(span_start: torch.Tensor, span_end: torch.Tensor, span_idx: torch.Tensor) -> torch.Tensor:
    """ReLU(start half at each span's start word + end half at its end word), (B, S, H).

    Rows are gathered from the flattened (B * W, H) halves by index (ONNX Gather on axis
    0): a `torch.gather` would need (B, S, H) int64 indices, 4 x hidden per span."""
    batch, words, width = span_start.shape
    offset = (torch.arange(batch, device=span_idx.device) * words).unsqueeze(-1)  # (B, 1)
    starts = (span_idx[:, :, 0] + offset).reshape(-1)
    ends = (span_idx[:, :, 1] + offset).reshape(-1)
    gathered = torch.index_select(span_start.reshape(-1, width), 0, starts) + torch.index_select(
        span_end.reshape(-1, width), 0, ends
    )
    return torch.relu(gathered).reshape(batch, -1, width)


class LabelProjector(nn.Module):
    """Bi-encoder, factorized span head: the label side of the folded last layer,
    (N, hidden) label embeddings -> keys (N, 4 x hidden) and bias (N,)."""

    def __init__(self, marker: Any):
        super().__init__()
        self.last = marker.out_project[3]

    def forward(self, label_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return label_embeddings @ self.last.weight, label_embeddings @ self.last.bias


class KeyedSpanScorer(nn.Module):
    """`FactorizedSpanScorer` on the labels' projected keys and bias (`LabelProjector`)."""

    def __init__(self, marker: Any):
        super().__init__()
        self.max_width = int(marker.max_width)

    def forward(
        self,
        span_start: torch.Tensor,
        span_end: torch.Tensor,
        span_idx: torch.Tensor,
        label_keys: torch.Tensor,
        label_bias: torch.Tensor,
    ) -> torch.Tensor:
        hidden = _span_hidden(span_start, span_end, span_idx)
        logits = hidden @ label_keys.transpose(1, 2) + label_bias.unsqueeze(1)  # (B, num_spans, C)
        batch, _, num_classes = logits.shape
        return torch.sigmoid(logits.view(batch, -1, self.max_width, num_classes))


class FactorizedSpanScorer(nn.Module):
    """Gather each span's start and end halves, ReLU, and score against the labels folded
    through the output MLP's last layer -> sigmoid, (B, W, max_width, C): the labels'
    projection and the keyed scorer in one graph (uni-encoders: the labels come per call)."""

    def __init__(self, marker: Any):
        super().__init__()
        self.project = LabelProjector(marker)
        self.score = KeyedSpanScorer(marker)

    def forward(
        self,
        span_start: torch.Tensor,
        span_end: torch.Tensor,
        span_idx: torch.Tensor,
        prompts: torch.Tensor,
    ) -> torch.Tensor:
        keys, bias = self.project(prompts)  # (B, C, 4 x hidden), (B, C)
        return self.score(span_start, span_end, span_idx, keys, bias)


class UniTokenTextEncoder(_Wrapper):
    """Uni-encoder, token level -> (token_rep, prompts): the scorer's two projections.

    `Scorer.proj_token` depends only on the words and `Scorer.proj_label` only on the
    labels (`modeling/scorers.py`), so both run here and the scorer graph keeps the rest.
    """

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rep = self.model.get_representations(input_ids, attention_mask, text_lengths, words_mask)
        scorer = self.model.scorer
        return scorer.proj_token(rep.words_embedding), scorer.proj_label(rep.prompts_embedding)


class BiTokenTextEncoder(_BiTextSide):
    """Bi-encoder text side, token level -> token_rep."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
    ) -> torch.Tensor:
        words = self.words(input_ids, attention_mask, words_mask, text_lengths)
        return self.model.scorer.proj_token(words)


class BiTokenLabelEncoder(_Wrapper):
    """Bi-encoder label side, token level -> proj_label(mean-pooled label encoding)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.model.token_rep_layer.encode_labels(input_ids, attention_mask)
        return self.model.scorer.proj_label(pooled)


class TokenScorer(nn.Module):
    """The rest of gliner's `Scorer.forward` after its two projections, plus sigmoid.

    cat[t0, l0, t1 * l1] -> out_mlp -> (B, W, C, 3) = (start, end, inside).
    """

    def __init__(self, scorer: Any):
        super().__init__()
        self.scorer: Any = scorer
        self.hidden = int(scorer.proj_token.in_features)

    def forward(self, token_rep: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        batch, seq_len, _ = token_rep.shape
        num_classes = prompts.shape[1]
        t = token_rep.view(batch, seq_len, 1, 2, self.hidden)
        lab = prompts.view(batch, 1, num_classes, 2, self.hidden)
        t = t.expand(-1, -1, num_classes, -1, -1).permute(3, 0, 1, 2, 4)
        lab = lab.expand(-1, seq_len, -1, -1, -1).permute(3, 0, 1, 2, 4)
        cat = torch.cat([t[0], lab[0], t[1] * lab[1]], dim=-1)
        return torch.sigmoid(self.scorer.out_mlp(cat))


class FactorizedTokenScorer(nn.Module):
    """`TokenScorer` with out_mlp's first layer split by its input blocks.

    L1(cat[t0, l0, t1 * l1]) = t0 W0^T + l0 W1^T + b + (t1 * l1) W2^T: the first two run
    once per word and once per label instead of once per (word, label) pair, so the
    pair-wise work is a third of the first layer's. Same function, same graph interface.
    """

    def __init__(self, scorer: Any):
        super().__init__()
        self.first = scorer.out_mlp[0]
        self.last = scorer.out_mlp[3]
        self.hidden = int(scorer.proj_token.in_features)

    def forward(self, token_rep: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        h = self.hidden
        w = self.first.weight
        t0, t1 = token_rep[..., :h], token_rep[..., h:]
        l0, l1 = prompts[..., :h], prompts[..., h:]
        per_word = (t0 @ w[:, :h].T).unsqueeze(2)  # (B, W, 1, 4h)
        per_label = (l0 @ w[:, h : 2 * h].T + self.first.bias).unsqueeze(1)  # (B, 1, C, 4h)
        pairs = (t1.unsqueeze(2) * l1.unsqueeze(1)) @ w[:, 2 * h :].T  # (B, W, C, 4h)
        return torch.sigmoid(self.last(torch.relu(pairs + per_word + per_label)))


# ------------------------------------------------------------------- relation extraction
# UniEncoderSpanRelexModel.forward (`modeling/base.py`), inference path: the text encoder
# returns what the entity scorer needs plus the raw encoder states at the `<<REL>>`
# tokens (relation prompts are not passed through prompt_rep_layer); entity and pair
# selection happen on the host; the relation graphs wrap the model's own layers.


RELATION_LAYERS = ("relations_rep_layer", "pair_rep_layer", "triples_score_layer")


@contextlib.contextmanager
def relation_layers_removed(model: nn.Module) -> Iterator[bool]:
    """A relex core model without its relation layers for a while (yields whether it had
    any): its forward then computes the entity logits only, as they do not depend on
    those layers. gliner would otherwise score every pair of selected entities, and its
    attention adjacency layers crash on a batch where no entity is selected."""
    stashed = {n: model._modules.pop(n) for n in RELATION_LAYERS if n in model._modules}
    try:
        yield bool(stashed)
    finally:
        model._modules.update(stashed)


def _relex_representations(model: Any, input_ids, attention_mask, words_mask, text_lengths):
    """(words_embedding, prompts after prompt_rep_layer, relation prompts), in forward's order."""
    from gliner.modeling.utils import extract_prompt_features

    token_embeds = model.token_rep_layer(input_ids, attention_mask)
    prompts, _, words, mask = model._extract_prompt_features_and_word_embeddings(
        token_embeds, input_ids, attention_mask, text_lengths, words_mask
    )
    if hasattr(model, "rnn"):
        words = model.rnn(words, mask)
    prompts = model.prompt_rep_layer(prompts)
    batch, _, hidden = prompts.shape
    rel_prompts, _ = extract_prompt_features(
        model.config.rel_token_index,
        token_embeds,
        input_ids,
        attention_mask,
        batch,
        hidden,
        model.config.embed_rel_token,
    )
    return words, prompts, rel_prompts


class SpanRelexTextEncoder(_Wrapper):
    """Span relex -> (span_rep, prompts, rel_prompts)."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
        span_idx: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        words, prompts, rel_prompts = _relex_representations(
            self.model, input_ids, attention_mask, words_mask, text_lengths
        )
        return self.model.span_rep_layer(words, span_idx), prompts, rel_prompts


class TokenRelexTextEncoder(_Wrapper):
    """Token relex -> (token_rep, prompts, rel_prompts, word_rep): the scorer's two
    projections, the relation prompts, and the words the entity encoder marks spans on."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        words, prompts, rel_prompts = _relex_representations(
            self.model, input_ids, attention_mask, words_mask, text_lengths
        )
        scorer = self.model.scorer
        return scorer.proj_token(words), scorer.proj_label(prompts), rel_prompts, words


class TokenDecoderTextEncoder(_Wrapper):
    """Token decoder -> (token_rep, prompts, word_rep, label_rep): the scorer's two
    projections, and the words and raw label representations the span encoder takes."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        rep = self.model.get_representations(input_ids, attention_mask, text_lengths, words_mask)
        words, prompts = rep.words_embedding, rep.prompts_embedding
        scorer = self.model.scorer
        return scorer.proj_token(words), scorer.proj_label(prompts), words, prompts


class SpanEncoder(_Wrapper):
    """Token decoder: the span layer (TokenMarker) over the host's candidate spans, and
    their probabilities per label (`UniEncoderTokenDecoderModel.forward`'s span_logits)."""

    def forward(
        self, word_rep: torch.Tensor, span_idx: torch.Tensor, label_rep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        span_rep = self.model.span_rep_layer(word_rep, span_idx)
        return span_rep, torch.sigmoid(torch.einsum("BND,BCD->BNC", span_rep, label_rep))


class EntityEncoder(_Wrapper):
    """Token relex: the span layer (TokenMarker) over the host-selected entity spans."""

    def forward(self, word_rep: torch.Tensor, entity_spans: torch.Tensor) -> torch.Tensor:
        return self.model.span_rep_layer(word_rep, entity_spans)


def _diag_embed(v: torch.Tensor) -> torch.Tensor:
    """torch.diag_embed of the last axis, from ops the ONNX exporter has (no aten::diag_embed)."""
    idx = torch.arange(v.shape[-1], device=v.device)
    return v.unsqueeze(-1) * (idx.unsqueeze(-1) == idx).to(v.dtype)


class RelationAdjacency(_Wrapper):
    """RelationsRepLayer(entity_rep, entity_mask) -> (B, E, E) adjacency.

    Two operators the ONNX exporter lacks are avoided while this runs: torch.diag_embed
    (gcn's self-loops) becomes the same product of the mask with an identity, and
    nn.MultiheadAttention (attention, gat) takes its composite path, not the fused
    inference kernel."""

    def forward(self, entity_rep: torch.Tensor, entity_mask: torch.Tensor) -> torch.Tensor:
        layer = self.model.relations_rep_layer
        attentions = [m for m in layer.modules() if isinstance(m, nn.MultiheadAttention)]
        original = torch.diag_embed
        torch.diag_embed = _diag_embed  # type: ignore[assignment]
        for mha in attentions:
            mha.forward = functools.partial(_attention, mha)  # type: ignore[method-assign]
        try:
            return layer(entity_rep, entity_mask)
        finally:
            torch.diag_embed = original
            for mha in attentions:
                del mha.forward


def _attention(
    mha: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    **_: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """nn.MultiheadAttention's self-attention (batch_first, packed projections, weights
    averaged over heads) written with -1 reshapes: torch's own traces the entity count
    of the tracing input into the graph."""
    if not (mha.batch_first and mha._qkv_same_embed_dim and mha.in_proj_bias is not None):
        raise ValueError("only batch-first self-attention with packed, biased projections is exported")
    batch, dim = query.shape[0], query.shape[-1]
    heads = mha.num_heads
    head_dim = dim // heads
    q, k, v = torch.nn.functional.linear(query, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(batch, -1, heads, head_dim).transpose(1, 2) for t in (q, k, v))
    scores = (q * head_dim**-0.5) @ k.transpose(-1, -2)
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(batch, -1, dim)
    return mha.out_proj(out), weights.mean(dim=1) if need_weights else None


class RelationScorer(_Wrapper):
    """Pair scores against the relation prompts, as probabilities: pair_rep_layer on
    cat(head, tail) then einsum BND,BCD->BNC, or the triples layer per (pair, relation)."""

    def forward(
        self, head_rep: torch.Tensor, tail_rep: torch.Tensor, rel_prompts: torch.Tensor
    ) -> torch.Tensor:
        if hasattr(self.model, "pair_rep_layer"):
            pair_rep = self.model.pair_rep_layer(torch.cat((head_rep, tail_rep), dim=-1))
            return torch.sigmoid(torch.einsum("BND,BCD->BNC", pair_rep, rel_prompts))
        batch, pairs, hidden = head_rep.shape
        classes = rel_prompts.shape[1]
        h = head_rep.unsqueeze(2).expand(batch, pairs, classes, hidden).reshape(-1, hidden)
        t = tail_rep.unsqueeze(2).expand(batch, pairs, classes, hidden).reshape(-1, hidden)
        r = rel_prompts.unsqueeze(1).expand(batch, pairs, classes, hidden).reshape(-1, hidden)
        return torch.sigmoid(self.model.triples_score_layer(h, r, t).view(batch, pairs, classes))
