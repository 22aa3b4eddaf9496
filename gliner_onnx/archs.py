"""The architecture names and, per architecture, the graphs the runtime runs.

This module is pure data shared by both stages: the export side traces one torch
wrapper per graph listed here and the runtime checks each loaded session against
the same names (via the manifest). Dynamic axes carry names, never `unk__N`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnsupportedArchError

ARCH_NAMES: tuple[str, ...] = (
    "uniencoder_span",
    "uniencoder_token",
    "biencoder_span",
    "biencoder_token",
    "uniencoder_span_decoder",
    "uniencoder_token_decoder",
    "uniencoder_span_relex",
    "uniencoder_token_relex",
)


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its name, element type and named axes."""

    name: str
    dtype: str  # "int64" | "float32"
    axes: tuple[str | int, ...]


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX graph of an architecture."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """The `torch.onnx.export` dynamic_axes mapping for this graph."""
        out: dict[str, dict[int, str]] = {}
        for t in (*self.inputs, *self.outputs):
            named = {i: a for i, a in enumerate(t.axes) if isinstance(a, str)}
            if named:
                out[t.name] = named
        return out


_I64 = "int64"
_F32 = "float32"

# Text-side inputs shared by every text encoder; span models also take the span indices.
_TOKEN_TEXT_INPUTS = (
    TensorSpec("input_ids", _I64, ("batch", "num_tokens")),
    TensorSpec("attention_mask", _I64, ("batch", "num_tokens")),
    TensorSpec("words_mask", _I64, ("batch", "num_tokens")),
    TensorSpec("text_lengths", _I64, ("batch", 1)),
)
_SPAN_TEXT_INPUTS = (*_TOKEN_TEXT_INPUTS, TensorSpec("span_idx", _I64, ("batch", "num_spans", 2)))
_LABEL_INPUTS = (
    TensorSpec("input_ids", _I64, ("num_labels", "num_label_tokens")),
    TensorSpec("attention_mask", _I64, ("num_labels", "num_label_tokens")),
)
_LABEL_EMBEDDINGS = TensorSpec("label_embeddings", _F32, ("num_labels", "label_dim"))

# Span family: span representations meet label representations in an einsum.
_SPAN_REP = TensorSpec("span_rep", _F32, ("batch", "num_words", "max_width", "label_dim"))
_SPAN_PROMPTS = TensorSpec("prompts", _F32, ("batch", "num_labels", "label_dim"))
SPAN_SCORER = GraphSpec(
    "scorer",
    inputs=(_SPAN_REP, _SPAN_PROMPTS),
    outputs=(TensorSpec("scores", _F32, ("batch", "num_words", "max_width", "num_labels")),),
)

# Token family: the scorer's token and label projections (2 x hidden) are text-only and
# label-only, so they sit in the encoders; the scorer combines them per (word, label).
_TOKEN_REP = TensorSpec("token_rep", _F32, ("batch", "num_words", "label_dim"))
_TOKEN_PROMPTS = TensorSpec("prompts", _F32, ("batch", "num_labels", "label_dim"))
TOKEN_SCORER = GraphSpec(
    "scorer",
    inputs=(_TOKEN_REP, _TOKEN_PROMPTS),
    # last axis: start, end, inside
    outputs=(TensorSpec("scores", _F32, ("batch", "num_words", "num_labels", 3)),),
)

GRAPHS: dict[str, tuple[GraphSpec, ...]] = {
    "uniencoder_span": (
        GraphSpec("text_encoder", inputs=_SPAN_TEXT_INPUTS, outputs=(_SPAN_REP, _SPAN_PROMPTS)),
        SPAN_SCORER,
    ),
    "biencoder_span": (
        GraphSpec("text_encoder", inputs=_SPAN_TEXT_INPUTS, outputs=(_SPAN_REP,)),
        GraphSpec("label_encoder", inputs=_LABEL_INPUTS, outputs=(_LABEL_EMBEDDINGS,)),
        SPAN_SCORER,
    ),
    "uniencoder_token": (
        GraphSpec("text_encoder", inputs=_TOKEN_TEXT_INPUTS, outputs=(_TOKEN_REP, _TOKEN_PROMPTS)),
        TOKEN_SCORER,
    ),
    "biencoder_token": (
        GraphSpec("text_encoder", inputs=_TOKEN_TEXT_INPUTS, outputs=(_TOKEN_REP,)),
        GraphSpec("label_encoder", inputs=_LABEL_INPUTS, outputs=(_LABEL_EMBEDDINGS,)),
        TOKEN_SCORER,
    ),
}

SUPPORTED_ARCHS: tuple[str, ...] = tuple(GRAPHS)


def family(arch: str) -> str:
    """ "span" or "token": how the scorer's output is decoded."""
    return "token" if "_token" in arch else "span"


def is_biencoder(arch: str) -> bool:
    return arch.startswith("biencoder")


def check_arch(name: str) -> str:
    """Return `name` if it is a supported architecture, else raise naming the valid ones."""
    if not isinstance(name, str):
        raise TypeError(f"arch must be a string, got {type(name).__name__}")
    if name not in ARCH_NAMES:
        raise UnsupportedArchError(f"unknown arch {name!r}; valid names: {', '.join(ARCH_NAMES)}")
    if name not in GRAPHS:
        raise UnsupportedArchError(
            f"arch {name!r} is not supported yet (supported: {', '.join(SUPPORTED_ARCHS)})"
        )
    return name
