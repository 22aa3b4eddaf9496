"""The torch modules traced into each graph, built around gliner 0.2.29's own layers.

Each wrapper calls the reference's modules in the reference's order (`modeling/base.py`
UniEncoderSpanModel.forward / BiEncoderSpanModel.forward), split where the data
dependencies allow: everything that depends only on the text is in the text encoder,
only on the labels in the label encoder, and the scorer is the einsum plus sigmoid.
"""

from __future__ import annotations

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
