"""One export config per architecture, keyed by the arch records' names (`gliner_onnx/archs.py`).

In the spirit of optimum's `OnnxConfig`: the arch's record says what it is, which graphs it
has and their inputs and outputs; its config says how to export them: the torch wrapper
traced into each graph, the chain that feeds each graph from the previous ones (as the
runtime chains them), gliner's reference outputs that the chained graphs must reproduce,
what goes into the manifest besides the common fields, and the offline demo checkpoint.
Adding an architecture means its record, its wrappers and one config here (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from gliner_onnx.archs import Arch, get_arch
from gliner_onnx.errors import ExportError, UnsupportedArchError
from gliner_onnx.runtime import relations as rel
from gliner_onnx.runtime.entities import EntityPipeline
from gliner_onnx.runtime.features import TextContext
from gliner_onnx.runtime.label_decoder import EntityGraphs, encoder_contexts
from gliner_onnx.runtime.loaded import LoadedModel
from gliner_onnx.runtime.relex import RelexPipeline, Selected
from gliner_onnx.runtime.spans import span_grid

from . import samples
from .backbone import deberta
from .context import CaseRun, ExportContext, Extra
from .parity import ParityRecorder
from .relation_wrappers import (
    EntityEncoder,
    RelationAdjacency,
    RelationScorer,
    SpanEncoder,
    SpanRelexTextEncoder,
    TokenDecoderTextEncoder,
    TokenRelexTextEncoder,
    relation_layers_removed,
)
from .wrappers import (
    BiFactorizedSpanTextEncoder,
    BiLabelEncoder,
    BiSpanTextEncoder,
    BiTokenLabelEncoder,
    BiTokenTextEncoder,
    FactorizedSpanScorer,
    FactorizedTokenScorer,
    KeyedSpanScorer,
    LabelProjector,
    SpanScorer,
    TokenScorer,
    UniFactorizedSpanTextEncoder,
    UniSpanTextEncoder,
    UniTokenTextEncoder,
    marker_v0,
)


@dataclass(frozen=True)
class Demo:
    """The offline demo checkpoint of an architecture (`demo.build_demo`): MiniLM, and
    MiniLM as labels encoder / a tiny GPT-2 label decoder where the arch has one."""

    span_mode: str = "markerV0"
    labels_encoder: bool = False
    relations_layer: str | None = None
    labels_decoder: bool = False
    decoder_mode: str | None = None


# Token decoder: the threshold at which candidate spans are chosen to trace and validate the
# span encoder (the runtime takes the threshold of each call).
SPAN_THRESHOLD = 0.5


# ------------------------------------------------------------------------------ the configs
class ExportConfig:
    """How to export one architecture; subclasses fill in what differs."""

    arch = ""
    span_heads: tuple[str, ...] = ("generic",)
    precisions: tuple[str, ...] = ("fp32", "int8", "fp16")
    demo = Demo()

    @property
    def record(self) -> Arch:
        """The arch's record (`gliner_onnx.archs`): what the arch is."""
        return get_arch(self.arch)

    @property
    def family(self) -> str:
        return self.record.family

    @property
    def bi(self) -> bool:
        return self.record.bi

    @property
    def relex(self) -> bool:
        return self.record.relex

    @property
    def decoder(self) -> bool:
        return self.record.decoder

    # -- what is exported
    def check(self, model: Any) -> None:
        """Refuse checkpoints of this architecture that the runtime cannot serve."""
        cfg = model.config
        if self.bi and getattr(cfg, "post_fusion_schema", None):
            raise ExportError(
                f"post_fusion_schema {cfg.post_fusion_schema!r} fuses text and labels, so label embeddings "
                "cannot be cached in a separate graph: not supported"
            )
        if self.family == "token" and not self.decoder and getattr(cfg, "represent_spans", False):
            raise ExportError("token-level checkpoints with represent_spans=True are not supported yet")

    def span_head(self, model: Any, optimize: bool) -> str:
        """ "factorized" when optimizing a span model whose span layer is gliner's markerV0."""
        if optimize and "factorized" in self.span_heads and marker_v0(model.model) is not None:
            return "factorized"
        return "generic"

    def has_adjacency(self, model: Any) -> bool:
        return True

    def wrappers(self, model: Any, span_head: str, optimize: bool) -> dict[str, nn.Module]:
        raise NotImplementedError

    def rewrites(self, ctx: ExportContext, graph: str) -> list[str]:
        """What the optimized wrappers changed in `graph`, for the manifest."""
        done = []
        if ctx.span_head == "factorized" and graph in ("text_encoder", "scorer", "label_projector"):
            done.append("factorized span head")
        if ctx.optimize and self.family == "token" and graph == "scorer":
            done.append("factorized token scorer")
        traced = ctx.modules.get(graph)  # the decoder's graphs are traced apart, unrewritten
        if ctx.optimize and traced and any(deberta.eligible(m) for m in traced.modules()):
            done.append("deberta attention")
        return done

    def manifest_fields(self, ctx: ExportContext) -> dict[str, Any]:
        return {}

    def export_more(self, ctx: ExportContext) -> Extra:
        """Graphs exported after the entity graphs are validated (the label decoder)."""
        return {}, {}, {}

    # -- running the graphs: the runtime pipeline's stage that runs them (`graph_runs.py`)
    def encoder_contexts(self, ctx: ExportContext, contexts: list[TextContext]) -> list[TextContext]:
        """The contexts as the text encoder sees them (the tokenizer check's input)."""
        return contexts

    def run_graphs(self, ctx: ExportContext, model: LoadedModel, contexts: list[TextContext]) -> None:
        """Run every graph of the arch on one batch, as the runtime does."""
        EntityPipeline(model).scores(contexts)

    # -- gliner's reference
    def reference_batch(self, model: Any, texts: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
        prepared = model.prepare_batch(list(texts), list(labels))
        return model.collate_batch(prepared["input_x"], prepared["entity_types"], model.create_collator())  # type: ignore[no-any-return]

    def reference(self, model: Any, batch: dict[str, Any]) -> Any:
        """gliner's forward on the batch, entity outputs only."""
        with relation_layers_removed(model.model):
            return model.run_batch(batch)

    def check_end_to_end(self, ctx: ExportContext, case: CaseRun, parity: ParityRecorder) -> None:
        """The chained graphs' scores against gliner's (sigmoid of its logits)."""
        self.check_scores(ctx, self.reference(ctx.model, case.batch), case, parity)

    def check_scores(self, ctx: ExportContext, ref: Any, case: CaseRun, parity: ParityRecorder) -> None:
        ref_scores = torch.sigmoid(ref.logits).float().numpy()
        got = case.outs["scorer"][0]
        parity.record("end_to_end", "scores", ref_scores, got, case.where, ctx.atol, "end-to-end scores")


def fixed_entities(
    family: str, probs: np.ndarray, contexts: Sequence[TextContext], max_width: int
) -> Selected:
    """Relex: a fixed choice of entities to run the relation graphs on: up to 5 per text, text
    b gets fewer as b grows (entity and pair padding exercised), at least one each. Span
    models: the best-scored spans; token models: spans of 1 to 3 words."""
    if family == "span":
        best = probs.max(axis=-1).reshape(len(contexts), -1)
        grid, valid = span_grid([c.num_words for c in contexts], max_width)
        flat = []
        for b in range(len(contexts)):
            idx = np.flatnonzero(valid[b])
            flat.append(np.sort(idx[np.argsort(-best[b, idx], kind="stable")[: max(1, 5 - b)]]))
        return rel.pack_entities([grid[f] for f in flat]), flat
    spans = [
        np.array([(i, min(i + i % 3, n - 1)) for i in range(min(n, max(1, 5 - b)))], dtype=np.int64)
        for b, n in enumerate(c.num_words for c in contexts)
    ]
    return rel.pack_entities(spans), None


def clear_threshold(
    family: str, probs: np.ndarray, contexts: Sequence[TextContext], margin: float
) -> float | None:
    """The highest entity threshold at least `margin` from every score that selection compares
    with it (span models: each span's best class; token models: every start, end and inside
    probability) at which some text has two entities or more: gliner and the runtime then
    select the same ones. None when there is none (scores bunched within noise)."""
    num_words = [c.num_words for c in contexts]
    if family == "span":
        _, valid = span_grid(num_words, probs.shape[2])
        values = probs.max(axis=-1).reshape(len(contexts), -1)[valid]
    else:
        values = probs.reshape(-1)
    top = np.unique(values.astype(np.float64))[::-1]
    gaps = np.flatnonzero(top[:-1] - top[1:] >= 2 * margin)
    for k in gaps[:_MAX_THRESHOLDS_TRIED]:
        threshold = float((top[k] + top[k + 1]) / 2)
        if family == "span":
            counts = rel.select_span_entities(probs, num_words, threshold)[0].counts
        else:
            counts = rel.select_token_entities(probs, threshold).counts
        if max(counts) >= 2:
            return threshold if max(counts) <= _MAX_ENTITIES else None
    return None


# clear_threshold: the gaps tried, and the most entities a text may have (pairs grow as E^2).
_MAX_THRESHOLDS_TRIED = 200
_MAX_ENTITIES = 60


def _token_scorer(model: Any, optimize: bool) -> nn.Module:
    return (FactorizedTokenScorer if optimize else TokenScorer)(model.model.scorer)


class UniSpanConfig(ExportConfig):
    arch = "uniencoder_span"
    span_heads = ("generic", "factorized")
    demo = Demo()

    def wrappers(self, model: Any, span_head: str, optimize: bool) -> dict[str, nn.Module]:
        core = model.model
        if span_head == "factorized":
            return {
                "text_encoder": UniFactorizedSpanTextEncoder(core),
                "scorer": FactorizedSpanScorer(marker_v0(core)),
            }
        return {"text_encoder": UniSpanTextEncoder(core), "scorer": SpanScorer()}


class BiSpanConfig(ExportConfig):
    arch = "biencoder_span"
    span_heads = ("generic", "factorized")
    demo = Demo(labels_encoder=True)

    def wrappers(self, model: Any, span_head: str, optimize: bool) -> dict[str, nn.Module]:
        core = model.model
        pooling = getattr(model.config, "subtoken_pooling", "first")
        if span_head == "factorized":
            marker = marker_v0(core)
            return {
                "text_encoder": BiFactorizedSpanTextEncoder(core, pooling),
                "label_encoder": BiLabelEncoder(core),
                "label_projector": LabelProjector(marker),
                "scorer": KeyedSpanScorer(marker),
            }
        return {
            "text_encoder": BiSpanTextEncoder(core, pooling),
            "label_encoder": BiLabelEncoder(core),
            "scorer": SpanScorer(),
        }


class UniTokenConfig(ExportConfig):
    arch = "uniencoder_token"
    demo = Demo(span_mode="token_level")

    def wrappers(self, model: Any, span_head: str, optimize: bool) -> dict[str, nn.Module]:
        return {"text_encoder": UniTokenTextEncoder(model.model), "scorer": _token_scorer(model, optimize)}


class BiTokenConfig(ExportConfig):
    arch = "biencoder_token"
    demo = Demo(span_mode="token_level", labels_encoder=True)

    def wrappers(self, model: Any, span_head: str, optimize: bool) -> dict[str, nn.Module]:
        core = model.model
        return {
            "text_encoder": BiTokenTextEncoder(core, getattr(model.config, "subtoken_pooling", "first")),
            "label_encoder": BiTokenLabelEncoder(core),
            "scorer": _token_scorer(model, optimize),
        }


class _RelexConfig(ExportConfig):
    """Relation extraction: the family's entity graphs, then the relation graphs."""

    def run_graphs(self, ctx: ExportContext, model: LoadedModel, contexts: list[TextContext]) -> None:
        """The entity graphs, then the relation graphs on a fixed choice of entities
        (`fixed_entities`) and every pair of them."""
        pipeline = RelexPipeline(model)
        feeds, probs = pipeline.entity_graphs(contexts)
        entities = fixed_entities(self.family, probs, contexts, model.manifest.max_width)
        for job in pipeline.relation_jobs(contexts, feeds, entities, adjacency_threshold=0.0):
            if len(job.pairs) and len(job.rel_prompts):
                pipeline.relation_scores(job, job.pairs)

    def has_adjacency(self, model: Any) -> bool:
        return getattr(model.config, "relations_layer", None) != "none"

    def relation_wrappers(self, core: Any) -> dict[str, nn.Module]:
        graphs: dict[str, nn.Module] = {}
        if hasattr(core, "relations_rep_layer"):
            graphs["relation_adjacency"] = RelationAdjacency(core)
        graphs["relation_scorer"] = RelationScorer(core)
        return graphs

    def check_end_to_end(self, ctx: ExportContext, case: CaseRun, parity: ParityRecorder) -> None:
        """The entity scores, then the relations: at an entity threshold clear of every score
        (`clear_threshold`), the runtime's entities, pairs and relation scores against those
        of gliner's own forward (adjacency threshold 0: every pair the adjacency keeps)."""
        super().check_end_to_end(ctx, case, parity)
        (probs,) = case.outs["scorer"]
        threshold = clear_threshold(self.family, probs, case.contexts, 10 * ctx.atol)
        if threshold is None:
            return  # every candidate threshold is within noise of some score
        ref = ctx.model.model(**case.batch, threshold=threshold, adjacency_threshold=0.0)
        pipeline = RelexPipeline(ctx.loaded(case.runner))
        selected = pipeline.select_entities(case.contexts, probs, threshold)
        jobs = pipeline.relation_jobs(case.contexts, case.feeds["scorer"], selected, adjacency_threshold=0.0)
        where = f"{case.where} at entity threshold {threshold:.4f}"
        if not np.array_equal(ref.entity_spans.numpy().astype(np.int64), selected[0].spans):
            parity.fail(f"relex entities on {where} differ from gliner's")
            return
        for b, job in enumerate(jobs):
            ref_pairs = ref.rel_idx[b][ref.rel_mask[b].bool()].numpy().astype(np.int64)
            if not np.array_equal(ref_pairs.reshape(-1, 2), job.pairs):
                parity.fail(f"relation pairs of text {b} on {where} differ from gliner's")
            elif len(job.pairs) and len(job.rel_prompts):
                ref_scores = torch.sigmoid(ref.rel_logits[b][ref.rel_mask[b].bool()]).float().numpy()
                got = pipeline.relation_scores(job, job.pairs)
                what = "end-to-end relation scores"
                parity.record(
                    "end_to_end", "relation_scores", ref_scores[:, : got.shape[1]], got, where, ctx.atol, what
                )

    def reference_batch(self, model: Any, texts: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
        relations = list(samples.relations_for(labels))
        prepared = model.prepare_batch(list(texts), list(labels), relations=relations)
        return model.collate_batch(  # type: ignore[no-any-return]
            prepared["input_x"], prepared["entity_types"], model.create_collator(), prepared["relation_types"]
        )

    def manifest_fields(self, ctx: ExportContext) -> dict[str, Any]:
        cfg = ctx.gliner_config
        rel_id = ctx.model.data_processor.transformer_tokenizer.convert_tokens_to_ids(cfg.rel_token)
        if rel_id != cfg.rel_token_index:
            raise ExportError(
                f"the tokenizer's id of {cfg.rel_token!r} ({rel_id}) differs from the model's "
                f"rel_token_index ({cfg.rel_token_index})"
            )
        return {
            "rel_token": cfg.rel_token,
            "rel_token_id": int(rel_id),
            "relations_layer": str(getattr(cfg, "relations_layer", None)),
            "triples_layer": getattr(cfg, "triples_layer", None),
        }


class SpanRelexConfig(_RelexConfig):
    arch = "uniencoder_span_relex"
    demo = Demo(relations_layer="dot")

    def wrappers(self, model: Any, span_head: str, optimize: bool) -> dict[str, nn.Module]:
        core = model.model
        entities = {"text_encoder": SpanRelexTextEncoder(core), "scorer": SpanScorer()}
        return {**entities, **self.relation_wrappers(core)}


class TokenRelexConfig(_RelexConfig):
    arch = "uniencoder_token_relex"
    demo = Demo(span_mode="token_level", relations_layer="dot")

    def wrappers(self, model: Any, span_head: str, optimize: bool) -> dict[str, nn.Module]:
        core = model.model
        entities = {
            "text_encoder": TokenRelexTextEncoder(core),
            "scorer": _token_scorer(model, optimize),
            "entity_encoder": EntityEncoder(core),
        }
        return {**entities, **self.relation_wrappers(core)}


class _DecoderConfig(ExportConfig):
    """Generative label decoder: the entity graphs here, the decoder's in `decoder_export`."""

    precisions = ("fp32",)

    @staticmethod
    def mode(ctx: ExportContext) -> str:
        """The checkpoint's decoder_mode, checked (`decoder_export.check_decoder`)."""
        from .decoder_export import check_decoder

        return check_decoder(ctx.model)

    def encoder_contexts(self, ctx: ExportContext, contexts: list[TextContext]) -> list[TextContext]:
        return encoder_contexts(contexts, self.mode(ctx))

    def run_graphs(self, ctx: ExportContext, model: LoadedModel, contexts: list[TextContext]) -> None:
        """The entity graphs (token models: candidate spans at SPAN_THRESHOLD); the decoder's
        graphs are traced apart (`decoder_export.py`)."""
        EntityGraphs(model, self.mode(ctx)).inputs(contexts, SPAN_THRESHOLD, prefixes=False)

    def export_more(self, ctx: ExportContext) -> Extra:
        from .decoder_export import export_decoder

        return export_decoder(ctx)


class SpanDecoderConfig(_DecoderConfig):
    arch = "uniencoder_span_decoder"
    demo = Demo(labels_decoder=True, decoder_mode="span")

    def wrappers(self, model: Any, span_head: str, optimize: bool) -> dict[str, nn.Module]:
        return {"text_encoder": UniSpanTextEncoder(model.model), "scorer": SpanScorer()}

    def reference(self, model: Any, batch: dict[str, Any]) -> Any:
        """The span forward only: no label generation, no decoder inputs."""
        from gliner.modeling.base import UniEncoderSpanModel

        return UniEncoderSpanModel.forward(model.model, **batch)


class TokenDecoderConfig(_DecoderConfig):
    arch = "uniencoder_token_decoder"
    demo = Demo(span_mode="token_level", labels_decoder=True, decoder_mode="span")

    def wrappers(self, model: Any, span_head: str, optimize: bool) -> dict[str, nn.Module]:
        core = model.model
        return {
            "text_encoder": TokenDecoderTextEncoder(core),
            "scorer": _token_scorer(model, optimize),
            "span_encoder": SpanEncoder(core),
        }

    def reference(self, model: Any, batch: dict[str, Any]) -> Any:
        """gliner's token forward, with its candidate spans at SPAN_THRESHOLD and their logits."""
        from gliner.modeling.base import UniEncoderTokenModel

        return UniEncoderTokenModel.forward(model.model, **batch, threshold=SPAN_THRESHOLD)

    def check_end_to_end(self, ctx: ExportContext, case: CaseRun, parity: ParityRecorder) -> None:
        """Also: the same candidate spans as gliner's extract_spans_from_tokens, same scores."""
        ref = self.reference(ctx.model, case.batch)
        self.check_scores(ctx, ref, case, parity)
        ref_spans = (ref.span_idx * ref.span_mask.unsqueeze(-1)).numpy().astype(np.int64)
        if not np.array_equal(ref_spans, case.feeds["span_encoder"]["span_idx"]):
            parity.fail(f"candidate spans on {case.where} differ from gliner's extract_spans_from_tokens")
            return
        ref_scores = torch.sigmoid(ref.span_logits).float().numpy()
        parity.record(
            "end_to_end",
            "span_scores",
            ref_scores,
            case.outs["span_encoder"][1],
            case.where,
            ctx.atol,
            "end-to-end span scores",
        )


EXPORT_CONFIGS: dict[str, ExportConfig] = {
    c.arch: c
    for c in (
        UniSpanConfig(),
        BiSpanConfig(),
        UniTokenConfig(),
        BiTokenConfig(),
        SpanDecoderConfig(),
        TokenDecoderConfig(),
        SpanRelexConfig(),
        TokenRelexConfig(),
    )
}


def export_config(arch: str) -> ExportConfig:
    """The export config of `arch` (a registry name), or an error naming the valid ones."""
    get_arch(arch)
    if arch not in EXPORT_CONFIGS:
        exportable = ", ".join(sorted(EXPORT_CONFIGS))
        raise UnsupportedArchError(f"arch {arch!r} has no export config (exportable: {exportable})")
    return EXPORT_CONFIGS[arch]
