"""The torch modules traced into the decoder graphs: gliner's GPT-2 label decoder with a
key/value cache that goes in and out as one tensor.

gliner 0.2.29 generates with Hugging Face `generate` on `inputs_embeds`
(`modeling/decoder.py::Decoder.generate_from_embeds`) with an all-ones attention mask,
so every position attends to every earlier one, padding included, and positions count
from 0. The forward below is GPT-2's (`GPT2Block`: x + attn(ln_1 x), then + mlp(ln_2 x);
`ln_f`, `lm_head`) written with explicit cache concatenation; it calls the model's own
layers and is validated against the Hugging Face model at export.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gliner_onnx.errors import ExportError

KIND_ZERO, KIND_REP, KIND_TOKEN = 0, 1, 2


def check_gpt2(lm: Any) -> None:
    """Refuse decoders whose forward the wrappers do not reproduce."""
    cfg = lm.config
    if type(lm).__name__ != "GPT2LMHeadModel":
        raise ExportError(
            f"the label decoder is a {type(lm).__name__}; only GPT-2 (GPT2LMHeadModel) decoders are supported"
        )
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        if getattr(cfg, flag, False):
            raise ExportError(f"GPT-2 decoders with {flag}=True are not supported")
    if not getattr(cfg, "scale_attn_weights", True):
        raise ExportError("GPT-2 decoders with scale_attn_weights=False are not supported")


class _Gpt2(nn.Module):
    """GPT-2 blocks over new positions, given the cache of the earlier ones."""

    def __init__(self, lm: Any):
        super().__init__()
        check_gpt2(lm)
        self.lm: Any = lm
        self.tr: Any = lm.transformer
        self.heads = int(lm.config.n_head)
        self.hidden = int(lm.config.n_embd)
        self.head_dim = self.hidden // self.heads

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def run(
        self, hidden: torch.Tensor, past: torch.Tensor | None, causal: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (M, N, D) with position embeddings added -> (last logits (M, V), present)."""
        presents = []
        for i, block in enumerate(self.tr.h):
            attn = block.attn
            q, k, v = attn.c_attn(block.ln_1(hidden)).split(self.hidden, dim=2)
            q, k, v = self._split(q), self._split(k), self._split(v)
            if past is not None:
                k = torch.cat([past[i, 0], k], dim=2)
                v = torch.cat([past[i, 1], v], dim=2)
            presents.append(torch.stack([k, v]))
            w = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if causal:
                allowed = torch.tril(torch.ones_like(w[0, 0])).bool()
                w = w.masked_fill(~allowed, torch.finfo(w.dtype).min)
            a = torch.softmax(w, dim=-1) @ v
            b, _, n, _ = a.shape
            a = attn.c_proj(a.transpose(1, 2).reshape(b, n, self.hidden))
            hidden = hidden + a
            hidden = hidden + block.mlp(block.ln_2(hidden))
        last = self.tr.ln_f(hidden[:, -1])
        return self.lm.lm_head(last), torch.stack(presents)


class DecoderPrefix(nn.Module):
    """(span_rep, prefix_ids, prefix_kind) -> (logits of the last position, present).

    The prefix of sequence m at position t is 0 (kind 0), the representation projected
    to the decoder width by gliner's `_enc2dec_proj` when it has one (kind 1), or the
    decoder's token embedding of prefix_ids[m, t] (kind 2).
    """

    def __init__(self, lm: Any, projection: nn.Module | None):
        super().__init__()
        self.gpt2 = _Gpt2(lm)
        self.projection = projection

    def embeds(
        self, span_rep: torch.Tensor, prefix_ids: torch.Tensor, prefix_kind: torch.Tensor
    ) -> torch.Tensor:
        rep = span_rep if self.projection is None else self.projection(span_rep)
        tokens = self.gpt2.tr.wte(prefix_ids)
        kind = prefix_kind.unsqueeze(-1)
        is_token = (kind == KIND_TOKEN).to(tokens.dtype)
        is_rep = (kind == KIND_REP).to(tokens.dtype)
        return tokens * is_token + rep.unsqueeze(1) * is_rep

    def forward(
        self, span_rep: torch.Tensor, prefix_ids: torch.Tensor, prefix_kind: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = self.embeds(span_rep, prefix_ids, prefix_kind)
        positions = torch.cumsum(torch.ones_like(prefix_ids), dim=1) - 1
        hidden = embeds + self.gpt2.tr.wpe(positions)
        return self.gpt2.run(hidden, None, causal=True)


class DecoderStep(nn.Module):
    """(input_ids (M, 1), past) -> (logits, present): one token on the cache."""

    def __init__(self, lm: Any):
        super().__init__()
        self.gpt2 = _Gpt2(lm)

    def forward(self, input_ids: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        past_len = torch.ones_like(past[0, 0, :, 0, :, 0]).to(torch.int64).sum(dim=1, keepdim=True)  # (M, 1)
        hidden = self.gpt2.tr.wte(input_ids) + self.gpt2.tr.wpe(past_len)
        return self.gpt2.run(hidden, past, causal=False)
