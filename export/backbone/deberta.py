"""DeBERTa-v2/v3's disentangled attention, rewritten for the trace.

transformers' `DisentangledSelfAttention` computes the relative-position terms of every layer
as written for training: it projects all `2 * att_span` relative embeddings (512 rows for
deberta-v3) through the query and key projections, multiplies every token against all of them,
tiles the result over the batch, and picks each (query, key) pair's bucket with `GatherElements`
on an int64 index it expands to `[batch * heads, L, L]`. Traced as is, that is about a third of
a layer's time at 116 tokens, on top of the projections and the feed-forward.

The rewrite computes the same scores with fewer and cheaper operations:

- The relative tables `key_proj(rel_embeddings)` and `query_proj(rel_embeddings)` depend only
  on weights: they stay in the graph as one MatMul each (sharing the projection's weight, so
  the file does not grow) that ONNX Runtime folds into a constant when the session loads, laid
  out `[heads, 2 * att_span, head_size]` and divided by the scale already.
- Both terms index the tables by the same bucket of `i - j` (the bucketing is odd, so the
  position->content index `-bucket(j - i)` is `bucket(i - j)`). Only the `2L` offsets a
  sequence of `L` tokens has are gathered from the tables (rows, not an `[L, L]` index), one
  MatMul per term gives every token against every offset, and the "skew" (Music
  Transformer's reshape trick) moves offset `i - j` to column `j`: a flat slice and two
  reshapes instead of GatherElements.
- Softmax(QK^T / scale + bias) V runs as ONNX Runtime's `MultiHeadAttention` contrib operator
  (CPU and CUDA), which takes the relative terms as its `attention_bias`, the projections'
  biases and the key padding mask, and splits and merges the heads itself.

Rows of padding tokens differ from transformers' (which lets a padding query attend uniformly
to everything, masked): they attend to the real tokens instead. No output reads them: padding
tokens are never pooled into words and are masked as keys in every layer.

`rewrite(model)` swaps the forward of every eligible attention module for the trace and puts
the original back afterwards; the export then validates the graph against the model exactly as
loaded, like every other graph.
"""

from __future__ import annotations

import contextlib
import math
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

# The value ONNX Runtime adds to masked keys' scores (its default); fits fp16.
MASK_FILTER_VALUE = -10000.0


def eligible(module: nn.Module) -> bool:
    """Whether `module` is a transformers DeBERTa-v2 attention this rewrite reproduces."""
    try:
        from transformers.models.deberta_v2.modeling_deberta_v2 import DisentangledSelfAttention
    except ImportError:  # pragma: no cover - transformers always has it
        return False
    return (
        type(module) is DisentangledSelfAttention
        and bool(module.relative_attention)
        and set(module.pos_att_type) <= {"c2p", "p2c"}
        and module.attention_head_size * module.num_attention_heads == module.all_head_size
    )


@contextlib.contextmanager
def rewrite(model: nn.Module) -> Iterator[int]:
    """Trace every eligible DeBERTa attention of `model` with the rewritten forward; yields how
    many modules were rewritten and restores them on exit."""
    swapped = [m for m in model.modules() if eligible(m)]
    offsets = _Offsets()
    for m in swapped:
        m.forward = types.MethodType(_forward, m)
        setattr(m, "_gliner_onnx_offsets", offsets)  # noqa: B010 - a torch Module's attribute
    try:
        yield len(swapped)
    finally:
        for m in swapped:
            del m.forward, m._gliner_onnx_offsets


def _scale(module: Any) -> float:
    return math.sqrt(module.attention_head_size * (1 + len(module.pos_att_type)))


def _buckets(module: Any, offsets: torch.Tensor) -> torch.Tensor:
    """Indices into the relative tables of the relative positions `offsets` (query - key), as
    transformers computes them for `relative_pos`."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    if module.position_buckets > 0 and module.max_relative_positions > 0:
        offsets = make_log_bucket_position(offsets, module.position_buckets, module.max_relative_positions)
    span = module.pos_ebd_size
    return torch.clamp(offsets.to(torch.long) + span, 0, 2 * span - 1)


def _table(module: Any, proj: nn.Linear, rel_embeddings: torch.Tensor) -> torch.Tensor:
    """`proj(rel_embeddings) / scale` as `[heads, 2 * att_span, head_size]`. It depends on
    weights only: ONNX Runtime folds it into a constant when the session loads, and int8
    quantization leaves it alone (`export/precision/int8.py` skips MatMuls of constants)."""
    rows = rel_embeddings[: 2 * module.pos_ebd_size]
    table = (torch.matmul(rows, proj.weight.transpose(0, 1)) + proj.bias) / _scale(module)
    return table.reshape(-1, module.num_attention_heads, module.attention_head_size).transpose(0, 1)


def _skew(scores: torch.Tensor, lead: tuple[Any, ...], length: Any) -> torch.Tensor:
    """`[*lead, L, 2L]` scores of each row against offsets `L-1-t` -> `[*lead, L, L]` where
    column `j` of row `i` holds offset `i - j`: row `i` is the window starting at `L-1-i`."""
    flat = scores.reshape(*lead, -1)
    flat = flat[..., length - 1 : length - 1 + length * (2 * length - 1)]
    return flat.reshape(*lead, length, 2 * length - 1)[..., :length]


class _Offsets:
    """What every layer of one forward shares, computed once (every layer gets the same
    `relative_pos` object from the encoder) instead of once per layer: the batch size and
    sequence length, and the two index vectors into the relative tables. In the trace, every
    layer's reshapes and slices then read the same shape values, and ONNX Runtime's common
    subexpression elimination keeps one copy of their arithmetic for the whole encoder where
    each layer had its own (about 30 small operators a layer: a tenth of an int8 layer's time at
    DeBERTa-v3-small's shape)."""

    def __init__(self) -> None:
        self._for: tuple[Any, tuple[int, ...]] | None = None
        self._value: tuple[Any, Any, torch.Tensor, torch.Tensor] = (0, 0, torch.empty(0), torch.empty(0))

    def get(
        self, module: Any, hidden_states: torch.Tensor, relative_pos: Any
    ) -> tuple[Any, Any, torch.Tensor, torch.Tensor]:
        """(batch, length, c2p indices, p2c indices) of this forward."""
        settings = (module.position_buckets, module.max_relative_positions, module.pos_ebd_size)
        # Held, not only compared by id: a freed tensor's id can be reused by the next forward's.
        if self._for is None or self._for[0] is not relative_pos or self._for[1] != settings:
            batch, length = hidden_states.shape[0], hidden_states.shape[1]
            steps = torch.arange(2 * length, dtype=torch.long)
            # c2p, column t: offset L-1-t (descending), so that the skew puts offset i - j at
            # column j. p2c, column t: offset t-(L-1) (ascending): the skew puts offset i - j of
            # key j at column i, and the transpose moves it to row i, column j.
            c2p = _buckets(module, (length - 1) - steps)
            p2c = _buckets(module, steps - (length - 1))
            self._value = (batch, length, c2p, p2c)
            self._for = (relative_pos, settings)
        return self._value


def relative_bias(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    rel_embeddings: torch.Tensor,
    shared: tuple[Any, Any, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """The c2p + p2c terms, `[batch, heads, L, L]`, already divided by the scale.
    `query`, `key`: `[batch, heads, L, head_size]`; `shared`: `_Offsets.get`."""
    batch, length, c2p_rows, p2c_rows = shared
    lead = (batch, module.num_attention_heads)
    share = module.share_att_key
    bias = None
    if "c2p" in module.pos_att_type:
        table = _table(module, module.key_proj if share else module.pos_key_proj, rel_embeddings)
        rows = table.index_select(1, c2p_rows)
        bias = _skew(torch.matmul(query, rows.transpose(-1, -2)), lead, length)
    if "p2c" in module.pos_att_type:
        table = _table(module, module.query_proj if share else module.pos_query_proj, rel_embeddings)
        rows = table.index_select(1, p2c_rows)
        p2c = _skew(torch.matmul(key, rows.transpose(-1, -2)), lead, length).transpose(-1, -2)
        bias = p2c if bias is None else bias + p2c
    assert bias is not None
    return bias


class _MultiHeadAttention(torch.autograd.Function):
    """softmax((q + bq)(k + bk)^T * scale + attention_bias, masked) (v + bv), heads merged:
    ONNX Runtime's `com.microsoft::MultiHeadAttention` in the graph, its torch meaning here."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor,
        key_padding_mask: torch.Tensor,
        attention_bias: torch.Tensor,
        num_heads: int,
        scale: float,
    ) -> torch.Tensor:
        batch, length, hidden = q.shape
        q, k, v = (x + b for x, b in zip((q, k, v), bias.split(hidden), strict=True))
        heads = [x.reshape(batch, length, num_heads, -1).transpose(1, 2) for x in (q, k, v)]
        scores = torch.matmul(heads[0], heads[1].transpose(-1, -2)) * scale + attention_bias
        keep = key_padding_mask.bool()[:, None, None, :]
        scores = scores.masked_fill(~keep, MASK_FILTER_VALUE)
        out = torch.matmul(torch.softmax(scores, dim=-1), heads[2])
        return out.transpose(1, 2).reshape(batch, length, hidden)

    @staticmethod
    def symbolic(  # type: ignore[no-untyped-def]
        g, q, k, v, bias, key_padding_mask, attention_bias, num_heads, scale
    ):
        out = g.op(
            "com.microsoft::MultiHeadAttention",
            q,
            k,
            v,
            bias,
            key_padding_mask,
            attention_bias,
            num_heads_i=num_heads,
            scale_f=scale,
            mask_filter_value_f=MASK_FILTER_VALUE,
        )
        out.setType(q.type())  # the output has the query's shape and type
        return out


def _forward(
    self: Any,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor,
    output_attentions: bool = False,
    query_states: torch.Tensor | None = None,
    relative_pos: torch.Tensor | None = None,
    rel_embeddings: torch.Tensor | None = None,
) -> tuple[torch.Tensor, None]:
    """The rewritten `DisentangledSelfAttention.forward` (eval, self-attention, no weights out)."""
    if output_attentions or query_states is not None or rel_embeddings is None:
        raise NotImplementedError("the DeBERTa attention rewrite covers self-attention only")
    shared = self._gliner_onnx_offsets.get(self, hidden_states, relative_pos)
    batch, length = shared[0], shared[1]
    heads, size = self.num_attention_heads, self.attention_head_size
    projections = (self.query_proj, self.key_proj, self.value_proj)
    q, k, v = (torch.matmul(hidden_states, p.weight.transpose(0, 1)) for p in projections)
    bias = torch.cat([p.bias for p in projections])
    split = [
        (x + p.bias).reshape(batch, length, heads, size).transpose(1, 2)
        for x, p in zip((q, k), projections[:2], strict=True)
    ]
    # transformers' mask is [B, 1, L, L], the outer product of the padding mask: any real
    # query's row is the key padding mask.
    key_padding_mask = attention_mask[:, 0].amax(dim=-2) if attention_mask.dim() == 4 else attention_mask
    rel = relative_bias(self, split[0], split[1], rel_embeddings, shared)
    out = _MultiHeadAttention.apply(
        q, k, v, bias, key_padding_mask.to(torch.int32), rel, heads, 1.0 / _scale(self)
    )
    return out, None
