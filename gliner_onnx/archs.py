"""The architectures: one typed record each (`Arch`), with the graphs the runtime runs.

This module is pure data shared by both stages: the export side traces one torch
wrapper per graph listed here and the runtime checks each loaded session against
the same names (via the manifest). Dynamic axes carry names, never `unk__N`.
What an arch is (uni- or bi-encoder, span or token head, relex or decoder extension,
the runtime layout that runs it) is a field of its record, never parsed out of its
name; `ARCH_NAMES`, `GRAPHS` and the runtime's layout table derive from `ARCHS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnsupportedArchError


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

LABEL_ENCODER = GraphSpec("label_encoder", inputs=_LABEL_INPUTS, outputs=(_LABEL_EMBEDDINGS,))
_UNI_SPAN = (
    GraphSpec("text_encoder", inputs=_SPAN_TEXT_INPUTS, outputs=(_SPAN_REP, _SPAN_PROMPTS)),
    SPAN_SCORER,
)
_BI_SPAN = (
    GraphSpec("text_encoder", inputs=_SPAN_TEXT_INPUTS, outputs=(_SPAN_REP,)),
    LABEL_ENCODER,
    SPAN_SCORER,
)
_UNI_TOKEN = (
    GraphSpec("text_encoder", inputs=_TOKEN_TEXT_INPUTS, outputs=(_TOKEN_REP, _TOKEN_PROMPTS)),
    TOKEN_SCORER,
)
_BI_TOKEN = (
    GraphSpec("text_encoder", inputs=_TOKEN_TEXT_INPUTS, outputs=(_TOKEN_REP,)),
    LABEL_ENCODER,
    TOKEN_SCORER,
)

# Relation extraction (UniEncoder{Span|Token}Relex): the entity graphs of the family, the
# raw encoder states at the `<<REL>>` tokens from the text encoder, and two relation
# graphs. Which entities and which pairs go on is decided on the host between graphs,
# so the entity, adjacency and relation thresholds are run-time arguments.
_REL_PROMPTS = TensorSpec("rel_prompts", _F32, ("batch", "num_relations", "hidden"))
_WORD_REP = TensorSpec("word_rep", _F32, ("batch", "num_words", "hidden"))
_ENTITY_REP = TensorSpec("entity_rep", _F32, ("batch", "num_entities", "hidden"))
ENTITY_ENCODER = GraphSpec(  # token relex: gliner's TokenMarker over the selected spans
    "entity_encoder",
    inputs=(_WORD_REP, TensorSpec("entity_spans", _I64, ("batch", "num_entities", 2))),
    outputs=(_ENTITY_REP,),
)
RELATION_ADJACENCY = GraphSpec(  # RelationsRepLayer: absent when relations_layer == "none"
    "relation_adjacency",
    inputs=(_ENTITY_REP, TensorSpec("entity_mask", _I64, ("batch", "num_entities"))),
    outputs=(TensorSpec("adjacency", _F32, ("batch", "num_entities", "num_entities")),),
)
RELATION_SCORER = GraphSpec(  # pair_rep_layer + einsum (or the triples layer), sigmoid
    "relation_scorer",
    inputs=(
        TensorSpec("head_rep", _F32, ("batch", "num_pairs", "hidden")),
        TensorSpec("tail_rep", _F32, ("batch", "num_pairs", "hidden")),
        _REL_PROMPTS,
    ),
    outputs=(TensorSpec("relation_scores", _F32, ("batch", "num_pairs", "num_relations")),),
)
_UNI_SPAN_RELEX = (
    GraphSpec("text_encoder", inputs=_SPAN_TEXT_INPUTS, outputs=(_SPAN_REP, _SPAN_PROMPTS, _REL_PROMPTS)),
    SPAN_SCORER,
    RELATION_ADJACENCY,
    RELATION_SCORER,
)
_UNI_TOKEN_RELEX = (
    GraphSpec(
        "text_encoder",
        inputs=_TOKEN_TEXT_INPUTS,
        outputs=(_TOKEN_REP, _TOKEN_PROMPTS, _REL_PROMPTS, _WORD_REP),
    ),
    TOKEN_SCORER,
    ENTITY_ENCODER,
    RELATION_ADJACENCY,
    RELATION_SCORER,
)
# Generative label decoder (`uniencoder_span_decoder`): the generic span graphs, plus a
# GPT-2-like decoder in two graphs. `decoder_prefix` embeds each sequence's prefix (kind
# 0: a zero vector, 1: the projected span or label representation, 2: the decoder token
# `prefix_ids`) and runs it; `decoder_step` runs one token on the key/value cache. The
# cache of every layer is one tensor: (num_layers, 2 = key/value, num_seqs, num_heads,
# length, head_dim).
_KV_AXES = ("num_layers", 2, "num_seqs", "num_heads")
DECODER_PREFIX = GraphSpec(
    "decoder_prefix",
    inputs=(
        TensorSpec("span_rep", _F32, ("num_seqs", "label_dim")),
        TensorSpec("prefix_ids", _I64, ("num_seqs", "prefix_len")),
        TensorSpec("prefix_kind", _I64, ("num_seqs", "prefix_len")),
    ),
    outputs=(
        TensorSpec("logits", _F32, ("num_seqs", "vocab")),
        TensorSpec("present", _F32, (*_KV_AXES, "prefix_len", "head_dim")),
    ),
)
DECODER_STEP = GraphSpec(
    "decoder_step",
    inputs=(
        TensorSpec("input_ids", _I64, ("num_seqs", 1)),
        TensorSpec("past", _F32, (*_KV_AXES, "past_len", "head_dim")),
    ),
    outputs=(
        TensorSpec("logits", _F32, ("num_seqs", "vocab")),
        TensorSpec("present", _F32, (*_KV_AXES, "total_len", "head_dim")),
    ),
)
DECODER_GRAPHS: tuple[str, ...] = ("decoder_prefix", "decoder_step")
_UNI_SPAN_DECODER = (*_UNI_SPAN, DECODER_PREFIX, DECODER_STEP)
# The token-level decoder (`uniencoder_token_decoder`): the token graphs find candidate
# spans (start, end and inside above the threshold, as `extract_spans_from_tokens`); the
# `span_encoder` represents them (gliner's TokenMarker) and scores them against the raw
# label representations (sigmoid of `einsum BND,BCD->BNC`). Entities are decided on the
# span scores; the span representations feed the decoder graphs.
_LABEL_REP = TensorSpec("label_rep", _F32, ("batch", "num_labels", "hidden"))
SPAN_ENCODER = GraphSpec(
    "span_encoder",
    inputs=(_WORD_REP, TensorSpec("span_idx", _I64, ("batch", "num_spans", 2)), _LABEL_REP),
    outputs=(
        TensorSpec("span_rep", _F32, ("batch", "num_spans", "hidden")),
        TensorSpec("span_scores", _F32, ("batch", "num_spans", "num_labels")),
    ),
)
_UNI_TOKEN_DECODER = (
    GraphSpec(
        "text_encoder",
        inputs=_TOKEN_TEXT_INPUTS,
        outputs=(_TOKEN_REP, _TOKEN_PROMPTS, _WORD_REP, _LABEL_REP),
    ),
    TOKEN_SCORER,
    SPAN_ENCODER,
    DECODER_PREFIX,
    DECODER_STEP,
)

# The factorized span head (gliner's default `markerV0` span layer only): its output MLP's
# first layer is split into a start half and an end half applied once per word in the
# text encoder, and its last layer is folded into the labels in the scorer. The span
# indices go to the scorer, and the per-span work is a gather, an add, a ReLU and one
# (4 x hidden) dot product per label instead of two (4 x hidden)-wide matrix products
# per span. Same function, other graphs (about 1/3 less time end to end on MiniLM).
_SPAN_START = TensorSpec("span_start", _F32, ("batch", "num_words", "span_hidden"))
_SPAN_END = TensorSpec("span_end", _F32, ("batch", "num_words", "span_hidden"))
_SPAN_IDX = TensorSpec("span_idx", _I64, ("batch", "num_spans", 2))
FACTORIZED_SPAN_SCORER = GraphSpec(
    "scorer",
    inputs=(_SPAN_START, _SPAN_END, _SPAN_IDX, _SPAN_PROMPTS),
    outputs=SPAN_SCORER.outputs,
)
# Bi-encoders: the labels' side of the folded last layer is label-only, so it is a graph of
# its own (`label_projector`) whose outputs the runtime caches with the label embeddings;
# with cached labels the scorer does only the per-span work, whatever the label count.
_LABEL_KEYS = TensorSpec("label_keys", _F32, ("batch", "num_labels", "span_hidden"))
_LABEL_BIAS = TensorSpec("label_bias", _F32, ("batch", "num_labels"))
LABEL_PROJECTOR = GraphSpec(
    "label_projector",
    inputs=(_LABEL_EMBEDDINGS,),
    outputs=(
        TensorSpec("label_keys", _F32, ("num_labels", "span_hidden")),
        TensorSpec("label_bias", _F32, ("num_labels",)),
    ),
)
KEYED_SPAN_SCORER = GraphSpec(
    "scorer",
    inputs=(_SPAN_START, _SPAN_END, _SPAN_IDX, _LABEL_KEYS, _LABEL_BIAS),
    outputs=SPAN_SCORER.outputs,
)
_UNI_SPAN_FACTORIZED = (
    GraphSpec("text_encoder", inputs=_TOKEN_TEXT_INPUTS, outputs=(_SPAN_START, _SPAN_END, _SPAN_PROMPTS)),
    FACTORIZED_SPAN_SCORER,
)
_BI_SPAN_FACTORIZED = (
    GraphSpec("text_encoder", inputs=_TOKEN_TEXT_INPUTS, outputs=(_SPAN_START, _SPAN_END)),
    LABEL_ENCODER,
    LABEL_PROJECTOR,
    KEYED_SPAN_SCORER,
)

SPAN_HEADS: tuple[str, ...] = ("generic", "factorized")
ENCODERS: tuple[str, ...] = ("uni", "bi")
FAMILIES: tuple[str, ...] = ("span", "token")
EXTENSIONS: tuple[str, ...] = ("none", "relex", "decoder")
# The runtime's pipelines by graph layout (runtime/pipelines.py `PIPELINES` holds one per name).
LAYOUTS: tuple[str, ...] = ("entities", "relex", "decoder")


@dataclass(frozen=True)
class Arch:
    """One architecture: what it is, its graphs, and the runtime layout that runs them.

    name: the `--arch` name (and the manifest's `arch`); encoder: "uni" (labels go into the
    text encoder's prompt) or "bi" (a label encoder of their own); family: "span" or "token",
    the head and so how the scorer's output is decoded; extension: "none", "relex" (relation
    extraction graphs) or "decoder" (a generative label decoder); layout: the runtime pipeline
    (`runtime/pipelines.py`); graphs: the generic export's graphs; factorized: the graphs of the
    factorized span head, where the arch has one.
    """

    name: str
    encoder: str
    family: str
    extension: str
    layout: str
    graphs: tuple[GraphSpec, ...]
    factorized: tuple[GraphSpec, ...] = ()

    def __post_init__(self) -> None:
        for field_name, allowed in (
            ("encoder", ENCODERS),
            ("family", FAMILIES),
            ("extension", EXTENSIONS),
            ("layout", LAYOUTS),
        ):
            if getattr(self, field_name) not in allowed:
                raise ValueError(f"Arch {self.name}: {field_name} must be one of {allowed}")

    @property
    def bi(self) -> bool:
        return self.encoder == "bi"

    @property
    def relex(self) -> bool:
        return self.extension == "relex"

    @property
    def decoder(self) -> bool:
        return self.extension == "decoder"


_RECORDS = (
    Arch("uniencoder_span", "uni", "span", "none", "entities", _UNI_SPAN, _UNI_SPAN_FACTORIZED),
    Arch("uniencoder_token", "uni", "token", "none", "entities", _UNI_TOKEN),
    Arch("biencoder_span", "bi", "span", "none", "entities", _BI_SPAN, _BI_SPAN_FACTORIZED),
    Arch("biencoder_token", "bi", "token", "none", "entities", _BI_TOKEN),
    Arch("uniencoder_span_decoder", "uni", "span", "decoder", "decoder", _UNI_SPAN_DECODER),
    Arch("uniencoder_token_decoder", "uni", "token", "decoder", "decoder", _UNI_TOKEN_DECODER),
    Arch("uniencoder_span_relex", "uni", "span", "relex", "relex", _UNI_SPAN_RELEX),
    Arch("uniencoder_token_relex", "uni", "token", "relex", "relex", _UNI_TOKEN_RELEX),
)
ARCHS: dict[str, Arch] = {a.name: a for a in _RECORDS}
# Derived tables: the names (CLI choices, in this order) and each arch's generic graphs.
ARCH_NAMES: tuple[str, ...] = tuple(ARCHS)
GRAPHS: dict[str, tuple[GraphSpec, ...]] = {a.name: a.graphs for a in _RECORDS}


def graph_specs(arch: str, span_head: str = "generic", *, adjacency: bool = True) -> tuple[GraphSpec, ...]:
    """The graphs of `arch` in the given span-head layout ("factorized": span models only).

    adjacency=False (relex checkpoints with relations_layer "none"): no adjacency graph,
    every ordered pair of entities is scored.
    """
    record = get_arch(arch)
    if span_head == "generic":
        specs = record.graphs
    elif span_head == "factorized" and record.factorized:
        specs = record.factorized
    else:
        raise UnsupportedArchError(f"span head {span_head!r} is not available for arch {arch!r}")
    if not adjacency:
        specs = tuple(s for s in specs if s.name != RELATION_ADJACENCY.name)
    return specs


def get_arch(name: str) -> Arch:
    """The record of `name`, else raise naming the valid ones."""
    if not isinstance(name, str):
        raise TypeError(f"arch must be a string, got {type(name).__name__}")
    record = ARCHS.get(name)
    if record is None:
        raise UnsupportedArchError(f"unknown arch {name!r}; valid names: {', '.join(ARCH_NAMES)}")
    return record


def check_arch(name: str) -> str:
    """Return `name` if it is a known architecture, else raise naming the valid ones."""
    return get_arch(name).name


def find_arch(encoder: str, family: str, extension: str) -> Arch:
    """The record with these properties (how a checkpoint's config is mapped to its arch)."""
    for record in _RECORDS:
        if (record.encoder, record.family, record.extension) == (encoder, family, extension):
            return record
    raise UnsupportedArchError(
        f"no arch is a {encoder}-encoder with a {family} head and extension {extension!r}"
    )
