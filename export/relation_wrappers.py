"""The torch modules of the relation graphs and of the token-level span marking (gliner's
TokenMarker over spans the host chose): relex text encoders, entity encoder, adjacency and
relation scorer; the token decoder's text encoder and span encoder.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .patching import replaced
from .wrappers import _Wrapper

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
        for mha in attentions:
            mha.forward = functools.partial(_attention, mha)  # type: ignore[method-assign]
        try:
            with replaced(torch, "diag_embed", _diag_embed):
                return layer(entity_rep, entity_mask)
        finally:
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
