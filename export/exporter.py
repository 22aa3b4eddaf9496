"""`export_model`: trace a GLiNER checkpoint into separate ONNX graphs, validate, write atomically."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from gliner_onnx import __version__
from gliner_onnx.archs import (
    DECODER_GRAPHS,
    GraphSpec,
    check_arch,
    family,
    graph_specs,
    is_biencoder,
    is_decoder,
    is_relex,
)
from gliner_onnx.errors import ExportError, ParityError, UnsupportedArchError
from gliner_onnx.manifest import MANIFEST_NAME, GraphEntry, Manifest, TokenizerEntry
from gliner_onnx.runtime import relations as rel
from gliner_onnx.runtime.features import TextContext, make_context, text_feeds
from gliner_onnx.runtime.labels import LabelSet, build_prompt, normalize_label_set
from gliner_onnx.runtime.spans import span_grid
from gliner_onnx.runtime.words import check_splitter

from . import samples
from .detect import detect_arch, read_config
from .fusion import ENCODER_GRAPHS, backbone_shape, fuse_graph
from .graph_io import write_graph
from .model_card import write_model_card
from .precision import LOWER_PRECISIONS, lower_precision
from .tokenizer_io import (
    check_text_tokenization,
    check_words_tokenization,
    load_runtime_tokenizer,
    write_tokenizer,
)
from .wrappers import (
    BiFactorizedSpanTextEncoder,
    BiLabelEncoder,
    BiSpanTextEncoder,
    BiTokenLabelEncoder,
    BiTokenTextEncoder,
    EntityEncoder,
    FactorizedSpanScorer,
    FactorizedTokenScorer,
    KeyedSpanScorer,
    LabelProjector,
    RelationAdjacency,
    RelationScorer,
    SpanEncoder,
    SpanRelexTextEncoder,
    SpanScorer,
    TokenDecoderTextEncoder,
    TokenRelexTextEncoder,
    TokenScorer,
    UniFactorizedSpanTextEncoder,
    UniSpanTextEncoder,
    UniTokenTextEncoder,
    marker_v0,
    relation_layers_removed,
)

Runner = Callable[[str, dict[str, np.ndarray]], list[np.ndarray]]

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4


@dataclass
class ExportReport:
    output: Path
    arch: str
    max_abs_diff: dict[str, dict[str, float]] = field(default_factory=dict)
    span_head: str = "generic"
    optimized: bool = False
    precision: str = "fp32"
    agreement: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        how = ("optimized" if self.optimized else "plain") + f" {self.precision}"
        if family(self.arch) == "span":
            how += f", {self.span_head} span head"
        out = [f"exported {self.arch} ({how} graphs) to {self.output}"]
        for graph, diffs in self.max_abs_diff.items():
            shown = ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
            out.append(f"  fp32 {graph}: max abs diff vs torch: {shown}")
        if self.agreement:
            a = self.agreement
            out.append(
                f"  {self.precision} vs fp32: entity F1 {a['f1']:.3f} (precision {a['precision']:.3f}, "
                f"recall {a['recall']:.3f}) on {a['texts']} texts"
            )
        return out


def load_gliner(model: str | Path) -> Any:
    """Load a checkpoint (a local directory or a hub id) with gliner itself."""
    from gliner import GLiNER

    local = Path(model).is_dir()
    if not local and (str(model).startswith((".", "/", "~")) or Path(model).exists()):
        raise ExportError(f"model {model}: no such directory")
    try:
        loaded = GLiNER.from_pretrained(str(model), local_files_only=local)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"cannot load GLiNER model {model!r}: {type(e).__name__}: {e}") from e
    loaded.eval()
    return loaded


def _check_supported(model: Any, arch: str) -> None:
    cfg = model.config
    try:
        check_splitter(getattr(cfg, "words_splitter_type", "whitespace"))
    except ValueError as e:
        raise ExportError(str(e)) from None
    fusion = getattr(cfg, "post_fusion_schema", None)
    if arch.startswith("biencoder") and fusion:
        raise ExportError(
            f"post_fusion_schema {cfg.post_fusion_schema!r} fuses text and labels, so label embeddings "
            "cannot be cached in a separate graph: not supported"
        )
    if getattr(cfg, "precomputed_prompts_mode", False):
        raise ExportError("precomputed_prompts_mode checkpoints are not supported")
    if family(arch) == "token" and not is_decoder(arch) and getattr(cfg, "represent_spans", False):
        raise ExportError("token-level checkpoints with represent_spans=True are not supported yet")


def span_head_for(model: Any, arch: str, optimize: bool) -> str:
    """ "factorized" for span models whose span layer is gliner's markerV0 when optimizing."""
    if optimize and arch in ("uniencoder_span", "biencoder_span") and marker_v0(model.model) is not None:
        return "factorized"
    return "generic"


def _wrappers(
    model: Any, arch: str, span_head: str = "generic", optimize: bool = False
) -> dict[str, nn.Module]:
    core = model.model
    pooling = getattr(model.config, "subtoken_pooling", "first")
    token_scorer = FactorizedTokenScorer if optimize else TokenScorer
    if span_head == "factorized":
        scorer = FactorizedSpanScorer(marker_v0(core))
        if arch == "uniencoder_span":
            return {"text_encoder": UniFactorizedSpanTextEncoder(core), "scorer": scorer}
        if arch == "biencoder_span":
            return {
                "text_encoder": BiFactorizedSpanTextEncoder(core, pooling),
                "label_encoder": BiLabelEncoder(core),
                "label_projector": LabelProjector(marker_v0(core)),
                "scorer": KeyedSpanScorer(marker_v0(core)),
            }
        raise UnsupportedArchError(f"the factorized span head does not apply to {arch!r}")
    if arch in ("uniencoder_span", "uniencoder_span_decoder"):  # decoder graphs: decoder_export.py
        return {"text_encoder": UniSpanTextEncoder(core), "scorer": SpanScorer()}
    if arch == "uniencoder_token_decoder":  # decoder graphs: decoder_export.py
        return {
            "text_encoder": TokenDecoderTextEncoder(core),
            "scorer": token_scorer(core.scorer),
            "span_encoder": SpanEncoder(core),
        }
    if is_relex(arch):
        graphs: dict[str, nn.Module] = (
            {"text_encoder": SpanRelexTextEncoder(core), "scorer": SpanScorer()}
            if family(arch) == "span"
            else {
                "text_encoder": TokenRelexTextEncoder(core),
                "scorer": token_scorer(core.scorer),
                "entity_encoder": EntityEncoder(core),
            }
        )
        if hasattr(core, "relations_rep_layer"):
            graphs["relation_adjacency"] = RelationAdjacency(core)
        graphs["relation_scorer"] = RelationScorer(core)
        return graphs
    if arch == "biencoder_span":
        return {
            "text_encoder": BiSpanTextEncoder(core, pooling),
            "label_encoder": BiLabelEncoder(core),
            "scorer": SpanScorer(),
        }
    if arch == "uniencoder_token":
        return {"text_encoder": UniTokenTextEncoder(core), "scorer": token_scorer(core.scorer)}
    if arch == "biencoder_token":
        return {
            "text_encoder": BiTokenTextEncoder(core, pooling),
            "label_encoder": BiTokenLabelEncoder(core),
            "scorer": token_scorer(core.scorer),
        }
    raise UnsupportedArchError(f"arch {arch!r} is not supported yet")


@contextlib.contextmanager
def _eager_attention(model: nn.Module) -> Iterator[list[str]]:
    """Trace the backbones with transformers' eager attention, then restore what they had.

    The eager trace runs 15-20% faster under ONNX Runtime than the SDPA one (measured:
    MiniLM span model, batch 1, 2 threads: 58 -> 49 ms) and is numerically the same
    computation; validation then compares against the model exactly as loaded.
    """
    from transformers import PreTrainedModel

    switched: list[tuple[Any, str]] = []
    for module in model.modules():
        if not isinstance(module, PreTrainedModel):
            continue
        current = getattr(module.config, "_attn_implementation", None)
        if current == "sdpa" and hasattr(module, "set_attn_implementation"):
            try:
                module.set_attn_implementation("eager")
            except (ValueError, NotImplementedError):
                continue
            switched.append((module, current))
    try:
        yield [type(m).__name__ for m, _ in switched]
    finally:
        for module, previous in switched:
            module.set_attn_implementation(previous)


def _inputs_of(spec: GraphSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feeds a graph declares (the text feeds also carry the scorer's span indices)."""
    return {n: feeds[n] for n in spec.input_names}


def _to_torch(feeds: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in feeds.items()}


def _batched(label_embeddings: np.ndarray, batch: int) -> np.ndarray:
    """(C, D) shared label embeddings as the scorer's (B, C, D) input."""
    return np.ascontiguousarray(np.broadcast_to(label_embeddings, (batch, *label_embeddings.shape)))


@torch.inference_mode()
def _torch_run(module: nn.Module, spec: GraphSpec, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    out = module(*[_to_torch(feeds)[n] for n in spec.input_names])
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().float().numpy() for o in outs]


def _save_graph(
    module: nn.Module, spec: GraphSpec, feeds: dict[str, np.ndarray], directory: Path, opset: int
) -> GraphEntry:
    buffer = io.BytesIO()
    args = tuple(_to_torch(feeds)[n] for n in spec.input_names)
    try:
        with torch.no_grad():
            torch.onnx.export(
                module,
                args,
                buffer,  # type: ignore[arg-type]  # the legacy exporter writes to file objects
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_axes=spec.dynamic_axes(),
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as e:
        raise ExportError(f"tracing graph {spec.name!r} failed: {type(e).__name__}: {e}") from e
    proto = onnx.load_from_string(buffer.getvalue())
    return write_graph(proto, directory, spec.name, spec.input_names, spec.output_names)


def _versions(opset: int) -> dict[str, str]:
    import gliner
    import onnxruntime
    import tokenizers
    import transformers

    return {
        "gliner_onnx": __version__,
        "gliner": getattr(gliner, "__version__", "unknown"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tokenizers": tokenizers.__version__,
        "opset": str(opset),
    }


# Token decoder: the threshold at which candidate spans are chosen to trace and validate
# the span encoder (the runtime takes the threshold of each call).
SPAN_THRESHOLD = 0.5


class _Exporter:
    def __init__(
        self,
        model: Any,
        arch: str,
        directory: Path,
        opset: int,
        atol: float,
        log: Callable[[str], None],
        optimize: bool = False,
        fuse: bool = False,
    ):
        self.model = model
        self.arch = arch
        self.dir = directory
        self.opset = opset
        self.atol = atol
        self.log = log
        self.optimize = optimize
        self.fuse = optimize and fuse
        self.fused: dict[str, dict[str, Any]] = {}
        self.span_head = span_head_for(model, arch, optimize)
        self.cfg = model.config
        self.is_bi = is_biencoder(arch)
        self.family = family(arch)
        self.relex = is_relex(arch)
        self.relations_layer = getattr(model.config, "relations_layer", None)
        adjacency = not self.relex or self.relations_layer != "none"
        self.specs = {
            s.name: s
            for s in graph_specs(arch, self.span_head, adjacency=adjacency)
            if s.name not in DECODER_GRAPHS
        }
        self.modules = _wrappers(model, arch, self.span_head, optimize)
        for m in self.modules.values():
            m.eval()

    # -- tokenizers and manifest fields
    def write_tokenizers(self) -> dict[str, TokenizerEntry]:
        proc = self.model.data_processor
        entries = {"text": write_tokenizer(proc.transformer_tokenizer, self.dir, "tokenizer.json")}
        if self.is_bi:
            entries["labels"] = write_tokenizer(proc.labels_tokenizer, self.dir, "labels/tokenizer.json")
        self.tokenizer_entries = entries
        self.text_tok = load_runtime_tokenizer(self.dir, entries["text"])
        self.label_tok = load_runtime_tokenizer(self.dir, entries["labels"]) if self.is_bi else None
        return entries

    def contexts(self, texts: Sequence[str], labels: Sequence[str]) -> list[TextContext]:
        label_set = normalize_label_set(list(labels))
        if is_decoder(self.arch) and getattr(self.cfg, "decoder_mode", None) == "prompt":
            label_set = LabelSet(("",) * len(label_set), label_set.names)  # class tokens only
        splitter = getattr(self.cfg, "words_splitter_type", "whitespace")
        relations = samples.relations_for(labels) if self.relex else ()
        return [
            replace(
                make_context(t, label_set, splitter=splitter, max_len=self.cfg.max_len), relations=relations
            )
            for t in texts
        ]

    @property
    def rel_token(self) -> str | None:
        return self.cfg.rel_token if self.relex else None

    def feeds(self, texts: Sequence[str], labels: Sequence[str]) -> dict[str, np.ndarray]:
        return text_feeds(
            self.contexts(texts, labels),
            self.text_tok,
            max_width=self.cfg.max_width,
            pooling=getattr(self.cfg, "subtoken_pooling", "first"),
            prompt_tokens=None if self.is_bi else (self.cfg.ent_token, self.cfg.sep_token),
            with_spans=self.family == "span",
            rel_token=self.rel_token,
        )

    def label_feeds(self, labels: Sequence[str]) -> dict[str, np.ndarray]:
        assert self.label_tok is not None
        tb = self.label_tok.encode_texts(list(labels))
        return {"input_ids": tb.input_ids, "attention_mask": tb.attention_mask}

    def check_tokenizers(self) -> None:
        proc = self.model.data_processor
        for texts, labels in (*samples.CASES, (samples.TRACE_TEXTS, samples.TRACE_LABELS)):
            ctxs = self.contexts(texts, labels)
            words = [list(c.words.words[: c.num_words]) for c in ctxs]
            if not self.is_bi:
                c = ctxs[0]
                prompt = build_prompt(
                    c.labels.prompts, self.cfg.ent_token, self.cfg.sep_token, c.relations, self.rel_token
                )
                words = [prompt + w for w in words]
            check_words_tokenization(proc.transformer_tokenizer, self.text_tok, [words])
            if self.is_bi:
                assert self.label_tok is not None
                check_text_tokenization(proc.labels_tokenizer, self.label_tok, list(labels))

    def manifest(self, graphs: dict[str, GraphEntry], source: str) -> Manifest:
        tok = self.model.data_processor.transformer_tokenizer
        ent_id = tok.convert_tokens_to_ids(self.cfg.ent_token)
        sep_id = tok.convert_tokens_to_ids(self.cfg.sep_token)
        if not self.is_bi and ent_id != self.cfg.class_token_index:
            raise ExportError(
                f"the tokenizer's id of {self.cfg.ent_token!r} ({ent_id}) differs from the model's "
                f"class_token_index ({self.cfg.class_token_index})"
            )
        relex: dict[str, Any] = {}
        if self.relex:
            rel_id = tok.convert_tokens_to_ids(self.cfg.rel_token)
            if rel_id != self.cfg.rel_token_index:
                raise ExportError(
                    f"the tokenizer's id of {self.cfg.rel_token!r} ({rel_id}) differs from the model's "
                    f"rel_token_index ({self.cfg.rel_token_index})"
                )
            relex = {
                "rel_token": self.cfg.rel_token,
                "rel_token_id": int(rel_id),
                "relations_layer": str(self.relations_layer),
                "triples_layer": getattr(self.cfg, "triples_layer", None),
            }
        return Manifest(
            **relex,
            arch=self.arch,
            graphs=graphs,
            tokenizers=self.tokenizer_entries,
            max_width=int(self.cfg.max_width),
            max_len=int(self.cfg.max_len),
            words_splitter=getattr(self.cfg, "words_splitter_type", "whitespace"),
            subtoken_pooling=getattr(self.cfg, "subtoken_pooling", "first"),
            ent_token=self.cfg.ent_token,
            sep_token=self.cfg.sep_token,
            ent_token_id=None if self.is_bi else int(ent_id),
            sep_token_id=None if self.is_bi else int(sep_id),
            embed_ent_token=bool(getattr(self.cfg, "embed_ent_token", True)),
            span_head=self.span_head,
            source=source,
            versions=_versions(self.opset),
        )

    def rewrites(self, graph: str) -> dict[str, Any]:
        """What the optimized wrappers changed in `graph`, for the manifest."""
        done = []
        if self.span_head == "factorized" and graph in ("text_encoder", "scorer", "label_projector"):
            done.append("factorized span head")
        if self.optimize and self.family == "token" and graph == "scorer":
            done.append("factorized token scorer")
        return {**({"rewrites": done} if done else {}), **self.fused.get(graph, {})}

    # -- graphs
    def graph_feeds(
        self, texts: Sequence[str], labels: Sequence[str], run: Runner | None = None
    ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, list[np.ndarray]]]:
        """The inputs and outputs of every graph for one case, each graph fed by the previous
        ones as the runtime chains them; `run(name, feeds)` runs one graph (default: torch)."""
        if run is None:
            run = self._run_torch
        feeds = {"text_encoder": self.feeds(texts, labels)}
        if self.is_bi:
            feeds["label_encoder"] = self.label_feeds(labels)
        return feeds, self._chain(feeds, len(texts), run)

    def _run_torch(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return _torch_run(self.modules[name], self.specs[name], feeds)

    def _chain(
        self, feeds: dict[str, dict[str, np.ndarray]], batch: int, run: Runner
    ) -> dict[str, list[np.ndarray]]:
        """Run text encoder (and label encoder), then the scorer on their outputs; adds the
        scorer's feeds to `feeds`."""
        text = feeds["text_encoder"]
        outs = {"text_encoder": run("text_encoder", text)}
        available = {**text, **dict(zip(self.specs["text_encoder"].output_names, outs["text_encoder"]))}
        if self.is_bi:
            outs["label_encoder"] = run("label_encoder", feeds["label_encoder"])
            available["prompts"] = _batched(outs["label_encoder"][0], batch)
            if "label_projector" in self.specs:
                feeds["label_projector"] = {"label_embeddings": outs["label_encoder"][0]}
                outs["label_projector"] = run("label_projector", feeds["label_projector"])
                keys, bias = outs["label_projector"]
                available["label_keys"] = _batched(keys, batch)
                available["label_bias"] = _batched(bias, batch)
        feeds["scorer"] = {n: available[n] for n in self.specs["scorer"].input_names}
        outs["scorer"] = run("scorer", feeds["scorer"])
        if self.relex:
            self._chain_relations(feeds, outs, available, run)
        if "span_encoder" in self.specs:
            feeds["span_encoder"] = self.span_encoder_feeds(available, outs["scorer"][0], SPAN_THRESHOLD)
            outs["span_encoder"] = run("span_encoder", feeds["span_encoder"])
        return outs

    @staticmethod
    def span_encoder_feeds(
        available: dict[str, np.ndarray], probs: np.ndarray, threshold: float
    ) -> dict[str, np.ndarray]:
        """Token decoder: the span encoder's feeds for the candidate spans at `threshold`."""
        spans = rel.select_token_entities(probs, threshold).spans
        return {"word_rep": available["word_rep"], "span_idx": spans, "label_rep": available["label_rep"]}

    def _chain_relations(
        self,
        feeds: dict[str, dict[str, np.ndarray]],
        outs: dict[str, list[np.ndarray]],
        available: dict[str, np.ndarray],
        run: Runner,
    ) -> None:
        """The relation graphs on a fixed choice of entities (up to 5 per text, text i gets
        fewer as i grows, so entity and pair padding are exercised) and all their pairs."""
        lengths = available["text_lengths"].reshape(-1)
        if self.family == "span":
            (probs,) = outs["scorer"]
            best = probs.max(axis=-1).reshape(len(lengths), -1)
            grid, valid = span_grid(lengths, self.cfg.max_width)
            flat = []
            for b in range(len(lengths)):
                idx = np.flatnonzero(valid[b])
                top = idx[np.argsort(-best[b, idx], kind="stable")[: max(1, 5 - b)]]
                flat.append(np.sort(top))
            entities = rel.pack_entities([grid[f] for f in flat])
            entity_rep = rel.span_entity_reps(available["span_rep"], flat, entities.spans.shape[1])
            mask = entities.mask
        else:
            spans = [
                np.array([(i, min(i + i % 3, n - 1)) for i in range(min(n, max(1, 5 - b)))], dtype=np.int64)
                for b, n in enumerate(lengths.tolist())
            ]
            batch = rel.pack_entities(spans)
            feeds["entity_encoder"] = {"word_rep": available["word_rep"], "entity_spans": batch.spans}
            outs["entity_encoder"] = run("entity_encoder", feeds["entity_encoder"])
            entity_rep, mask = outs["entity_encoder"][0], batch.mask
        if "relation_adjacency" in self.specs:
            feeds["relation_adjacency"] = {"entity_rep": entity_rep, "entity_mask": mask}
            outs["relation_adjacency"] = run("relation_adjacency", feeds["relation_adjacency"])
        if available["rel_prompts"].shape[1] == 0:
            return  # the runtime never scores pairs without relation labels
        pairs = rel.pad_pairs(rel.all_pairs([int(m) for m in mask.sum(axis=1)]))
        if pairs.shape[1] == 0:
            pairs = np.full((len(lengths), 1, 2), -1, dtype=np.int64)
        safe = np.maximum(pairs, 0)
        feeds["relation_scorer"] = {
            "head_rep": rel.gather_rows(entity_rep, safe[..., 0]),
            "tail_rep": rel.gather_rows(entity_rep, safe[..., 1]),
            "rel_prompts": available["rel_prompts"],
        }
        outs["relation_scorer"] = run("relation_scorer", feeds["relation_scorer"])

    def trace(self) -> dict[str, GraphEntry]:
        feeds, _ = self.graph_feeds(samples.TRACE_TEXTS, samples.TRACE_LABELS)
        entries = {}
        with _eager_attention(self.model.model) as switched:
            if switched:
                self.log(f"tracing with eager attention ({', '.join(switched)})")
            for name, spec in self.specs.items():
                self.log(f"tracing {name} ...")
                entries[name] = _save_graph(self.modules[name], spec, feeds[name], self.dir, self.opset)
        if self.fuse:
            for name in ENCODER_GRAPHS:
                if name in entries:
                    shape = backbone_shape(self.model.model, name)
                    entries[name], self.fused[name] = fuse_graph(self.dir, entries[name], name, shape)
                    if self.fused[name]:
                        shown = ", ".join(f"{k} {v}" for k, v in self.fused[name]["fused"].items())
                        self.log(f"fused {name}: {shown}")
        return entries

    def validate(self, graphs: dict[str, GraphEntry]) -> dict[str, dict[str, float]]:
        """Every graph against its torch module, and the whole pipeline against gliner's forward."""
        import onnxruntime as ort

        sessions = {
            name: ort.InferenceSession(str(self.dir / g.file), providers=["CPUExecutionProvider"])
            for name, g in graphs.items()
        }
        diffs: dict[str, dict[str, float]] = {name: {} for name in graphs}
        diffs["end_to_end"] = {}
        failures: list[str] = []
        for case, (texts, labels) in enumerate(samples.CASES):
            where = f"case {case} (batch {len(texts)}, {len(labels)} labels)"
            feeds, torch_outs = self.graph_feeds(texts, labels)
            batch = self._reference_batch(texts, labels)
            self._check_against_reference_batch(batch, feeds["text_encoder"], where)
            for name, spec in self.specs.items():
                if name not in torch_outs:
                    continue  # a relation graph the runtime skips on this case
                ref = torch_outs[name]
                got = sessions[name].run(spec.output_names, _inputs_of(spec, feeds[name]))
                for out_name, r, g in zip(spec.output_names, ref, got):
                    d = _max_diff(r, g, f"{name}.{out_name}", where, failures)
                    diffs[name][out_name] = max(diffs[name].get(out_name, 0.0), d)
                    tol = (
                        self.atol
                        if name == "scorer"
                        else self.atol * max(1.0, float(np.abs(r).max(initial=0)))
                    )
                    if d > tol:
                        failures.append(f"{name}.{out_name} on {where}: max abs diff {d:.3e} > {tol:.3e}")
            # End to end: ONNX graphs chained vs gliner's own forward (sigmoid of its logits).
            chained = {name: dict(f) for name, f in feeds.items()}
            ort_run: Runner = lambda n, f: sessions[n].run(None, _inputs_of(self.specs[n], f))  # noqa: E731
            chained_outs = self._chain(chained, len(texts), ort_run)
            (scores,) = chained_outs["scorer"]
            ref = self._reference_output(batch)
            ref_scores = torch.sigmoid(ref.logits).float().numpy()
            d = _max_diff(ref_scores, scores, "scores", where, failures)
            diffs["end_to_end"]["scores"] = max(diffs["end_to_end"].get("scores", 0.0), d)
            if d > self.atol:
                failures.append(f"end-to-end scores on {where}: max abs diff {d:.3e} > {self.atol:.3e}")
            if "span_encoder" in self.specs:
                ref_spans = (ref.span_idx * ref.span_mask.unsqueeze(-1)).numpy().astype(np.int64)
                ref_span_scores = torch.sigmoid(ref.span_logits).float().numpy()
                if not np.array_equal(ref_spans, chained["span_encoder"]["span_idx"]):
                    failures.append(
                        f"candidate spans on {where} differ from gliner's extract_spans_from_tokens"
                    )
                else:
                    d = _max_diff(
                        ref_span_scores, chained_outs["span_encoder"][1], "span_scores", where, failures
                    )
                    diffs["end_to_end"]["span_scores"] = max(diffs["end_to_end"].get("span_scores", 0.0), d)
                    if d > self.atol:
                        failures.append(
                            f"end-to-end span scores on {where}: max abs diff {d:.3e} > {self.atol:.3e}"
                        )
        if failures:
            raise ParityError("exported graphs disagree with torch:\n  " + "\n  ".join(failures))
        return diffs

    def _reference_batch(self, texts: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
        m = self.model
        if self.relex:
            relations = list(samples.relations_for(labels))
            prepared = m.prepare_batch(list(texts), list(labels), relations=relations)
            return m.collate_batch(
                prepared["input_x"], prepared["entity_types"], m.create_collator(), prepared["relation_types"]
            )
        prepared = m.prepare_batch(list(texts), list(labels))
        return m.collate_batch(prepared["input_x"], prepared["entity_types"], m.create_collator())

    @torch.inference_mode()
    @torch.inference_mode()
    def _reference_output(self, batch: dict[str, Any]) -> Any:
        """gliner's forward on the batch, entity outputs only. Token decoder: also its
        candidate spans at SPAN_THRESHOLD and their span logits."""
        if self.arch == "uniencoder_token_decoder":
            from gliner.modeling.base import UniEncoderTokenModel

            return UniEncoderTokenModel.forward(self.model.model, **batch, threshold=SPAN_THRESHOLD)
        if is_decoder(self.arch):  # the span forward only: no label generation, no decoder inputs
            from gliner.modeling.base import UniEncoderSpanModel

            return UniEncoderSpanModel.forward(self.model.model, **batch)
        with relation_layers_removed(self.model.model):
            return self.model.run_batch(batch)

    def _check_against_reference_batch(
        self, batch: dict[str, Any], feeds: dict[str, np.ndarray], where: str
    ) -> None:
        ref = {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "words_mask": batch["words_mask"],
            "text_lengths": batch["text_lengths"],
        }
        if self.family == "span":
            ref["span_idx"] = batch["span_idx"] * batch["span_mask"].unsqueeze(-1)
        for name, r in ref.items():
            r_np = r.numpy().astype(np.int64)
            if r_np.shape != feeds[name].shape or not np.array_equal(r_np, feeds[name]):
                raise ExportError(f"pre-processing differs from gliner's for {name!r} on {where}")


def _max_diff(ref: np.ndarray, got: np.ndarray, what: str, where: str, failures: list[str]) -> float:
    if ref.shape != got.shape:
        failures.append(f"{what} on {where}: shape {got.shape} != torch {ref.shape}")
        return float("inf")
    if not np.all(np.isfinite(got)):
        failures.append(f"{what} on {where}: non-finite values")
        return float("inf")
    return float(np.abs(ref.astype(np.float64) - got.astype(np.float64)).max(initial=0.0))


def export_model(
    model: str | Path | Any,
    output: str | Path,
    *,
    arch: str | None = None,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    overwrite: bool = False,
    optimize: bool = True,
    fuse: bool = False,
    precision: str = "fp32",
    source: str | None = None,
    log: Callable[[str], None] = print,
) -> ExportReport:
    """Export a GLiNER model (a loaded `gliner.GLiNER`, a local directory or a hub id).

    `arch`, when given, must match the checkpoint's architecture. The export is
    validated against torch and written atomically: on any failure nothing
    loadable is left at `output`. `optimize` rewrites the graphs for speed where
    parity holds (the factorized span head for markerV0 span models, the factorized
    token scorer), falling back to the plain graphs otherwise. `precision` "int8" or
    "fp16" converts the validated fp32 graphs and records their agreement with fp32.
    `fuse` (with `optimize`) runs ONNX Runtime's transformer optimizer on the encoders.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ExportError(f"output {output} exists and is not a directory")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ExportError(f"output directory {output} is not empty (pass overwrite=True / --overwrite)")
    if arch is not None:
        check_arch(arch)
    if atol <= 0 or not np.isfinite(atol):
        raise ValueError(f"atol must be a positive number, got {atol!r}")
    if precision not in ("fp32", *LOWER_PRECISIONS):
        raise ValueError(f"precision must be one of fp32, {', '.join(LOWER_PRECISIONS)}; got {precision!r}")
    if isinstance(model, (str, Path)):
        source = source or str(model)
        if Path(model).is_dir():  # fail fast, before loading any weights
            _check_detected(detect_arch(read_config(model)), arch)
        log(f"loading {model} ...")
        model = load_gliner(model)
    detected = detect_arch(model.config)
    _check_detected(detected, arch)
    _check_supported(model, detected)
    if is_decoder(detected) and precision != "fp32":
        raise ExportError(f"{detected} exports are fp32 only (got precision {precision!r})")
    model.eval()

    output.parent.mkdir(parents=True, exist_ok=True)
    attempts = [True, False] if optimize else [False]
    for attempt, optimized in enumerate(attempts, start=1):
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
        try:
            exporter = _Exporter(model, detected, tmp, opset, atol, log, optimize=optimized, fuse=fuse)
            diffs = _export_into(exporter, source or "")
            agreement: dict[str, Any] = {}
            if precision != "fp32":
                fp32, tmp = tmp, Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
                try:
                    agreement = lower_precision(fp32, tmp, precision, log).agreement
                finally:
                    shutil.rmtree(fp32, ignore_errors=True)
            write_model_card(tmp)  # README.md: Hub metadata and the manifest's figures
            _replace_dir(tmp, output)
            return ExportReport(
                output,
                detected,
                diffs,
                span_head=exporter.span_head,
                optimized=optimized,
                precision=precision,
                agreement=agreement,
            )
        except ParityError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if attempt == len(attempts):
                raise
            log(f"the optimized graphs lost parity, exporting the plain ones:\n{e}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    raise AssertionError("unreachable")


def _export_into(exporter: _Exporter, source: str) -> dict[str, dict[str, float]]:
    """Write tokenizers, graphs and manifest into the exporter's (temporary) directory."""
    exporter.write_tokenizers()
    exporter.check_tokenizers()
    graphs = exporter.trace()
    exporter.log("validating against torch ...")
    diffs = exporter.validate(graphs)
    decoder: dict[str, Any] = {}
    if is_decoder(exporter.arch):
        from .decoder_export import export_decoder

        decoder_graphs, decoder_diffs, decoder = export_decoder(exporter)
        graphs.update(decoder_graphs)
        diffs.update(decoder_diffs)
    e2e = {"end_to_end_scores": diffs["end_to_end"]["scores"]}
    graphs = {
        name: replace(
            g,
            max_abs_diff={**diffs[name], **(e2e if name == "scorer" else {})},
            optimization=exporter.rewrites(name),
        )
        for name, g in graphs.items()
    }
    replace(exporter.manifest(graphs, source), decoder=decoder).save(exporter.dir)
    return diffs


def _check_detected(detected: str, requested: str | None) -> None:
    if requested is not None and requested != detected:
        raise ExportError(
            f"--arch {requested} does not match the checkpoint, whose architecture is {detected}"
        )
    check_arch(detected)


def _replace_dir(tmp: Path, output: Path) -> None:
    """Move the finished export into place; an old export there is removed only after."""
    if output.exists():
        old = output.with_name(f".{output.name}.old-{tmp.name[-8:]}")
        output.rename(old)
        tmp.rename(output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(output)
    if not (output / MANIFEST_NAME).is_file():
        raise ExportError(f"export to {output} did not complete")
