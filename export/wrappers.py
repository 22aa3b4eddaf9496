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


class UniSpanTextEncoder(nn.Module):
    """Uni-encoder: labels and text encoded together -> (span_rep, prompts)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model: Any = model

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


class BiSpanTextEncoder(nn.Module):
    """Bi-encoder text side -> span_rep (the bi-encoder never runs its LSTM)."""

    def __init__(self, model: nn.Module, subtoken_pooling: str):
        super().__init__()
        self.model: Any = model
        self.subtoken_pooling = subtoken_pooling

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
        span_idx: torch.Tensor,
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
        return self.model.span_rep_layer(words, span_idx)


class BiLabelEncoder(nn.Module):
    """Bi-encoder label side -> final label embeddings (after prompt_rep_layer)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model: Any = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.model.token_rep_layer.encode_labels(input_ids, attention_mask)
        return self.model.prompt_rep_layer(pooled)


class SpanScorer(nn.Module):
    """sigmoid(einsum BLKD,BCD->BLKC): the reference's logits, as probabilities."""

    def forward(self, span_rep: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.einsum("BLKD,BCD->BLKC", span_rep, prompts))
