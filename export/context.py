"""What every export step shares: the model, its export config, the directory being written,
the tokenizers as the runtime will load them, the traced modules; and `save_graph`.

The entity export (`exporter.py`, `validation.py`) and the decoder export
(`decoder_export.py`) both work on one `ExportContext`; neither imports the other.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import onnx
import torch
from torch import nn

from gliner_onnx import __version__
from gliner_onnx.archs import DECODER_GRAPHS, GraphSpec, graph_specs
from gliner_onnx.errors import ExportError
from gliner_onnx.manifest import GraphEntry, Manifest, TokenizerEntry
from gliner_onnx.runtime.features import TextContext, make_context
from gliner_onnx.runtime.labels import build_prompt, normalize_label_set
from gliner_onnx.runtime.labelstore import LabelStore
from gliner_onnx.runtime.loaded import LoadedModel
from gliner_onnx.runtime.runner import GraphRunner
from gliner_onnx.runtime.tokenize import SubwordTokenizer

from . import samples
from .graph_io import write_graph
from .memory import no_onnxscript_reparse, weights_beside, weights_out_of_shape_inference
from .parity import ParityRecorder
from .quiet import quiet_tracing
from .tokenizer_io import (
    check_text_tokenization,
    check_words_tokenization,
    load_runtime_tokenizer,
    write_tokenizer,
)

R = TypeVar("R", bound=GraphRunner)
Feeds = dict[str, dict[str, np.ndarray]]
Outputs = dict[str, list[np.ndarray]]
# What an export adds besides the chained graphs (the label decoder's): its graphs, their max
# abs diffs, the manifest's `decoder`.
Extra = tuple[dict[str, GraphEntry], dict[str, dict[str, float]], dict[str, Any]]


@dataclass(frozen=True)
class CaseRun:
    """One validation case run through the exported graphs by the runtime's pipeline stage:
    what the end-to-end checks compare with gliner."""

    contexts: list[TextContext]
    batch: dict[str, Any]  # gliner's collated batch of the case
    runner: GraphRunner  # the graphs, to run more of them (`graph_runs.OnnxGraphs`)
    feeds: Feeds  # what each graph was given (every array the pipeline passed), first call
    outs: Outputs  # what each graph returned, first call
    where: str


class ArchExport(Protocol):
    """What an export attempt uses of its arch's export config (`configs.ExportConfig`, which
    builds on this module: a protocol here keeps the import one way)."""

    arch: str

    @property
    def family(self) -> str: ...
    @property
    def bi(self) -> bool: ...
    @property
    def relex(self) -> bool: ...
    def span_head(self, model: Any, optimize: bool) -> str: ...
    def has_adjacency(self, model: Any) -> bool: ...
    def wrappers(self, model: Any, span_head: str, optimize: bool) -> dict[str, nn.Module]: ...
    def rewrites(self, ctx: ExportContext, graph: str) -> list[str]: ...
    def manifest_fields(self, ctx: ExportContext) -> dict[str, Any]: ...
    def export_more(self, ctx: ExportContext) -> Extra: ...
    def encoder_contexts(self, ctx: ExportContext, contexts: list[TextContext]) -> list[TextContext]: ...
    def run_graphs(self, ctx: ExportContext, model: LoadedModel, contexts: list[TextContext]) -> None: ...
    def reference_batch(self, model: Any, texts: Sequence[str], labels: Sequence[str]) -> dict[str, Any]: ...
    def reference(self, model: Any, batch: dict[str, Any]) -> Any: ...
    def check_end_to_end(self, ctx: ExportContext, case: CaseRun, parity: ParityRecorder) -> None: ...


def to_torch(feeds: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in feeds.items()}


def inputs_of(spec: GraphSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feeds a graph declares (the text feeds also carry the scorer's span indices)."""
    return {n: feeds[n] for n in spec.input_names}


@torch.inference_mode()
def torch_run(module: nn.Module, spec: GraphSpec, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a wrapper on numpy feeds, in the graph's input order; float32 numpy outputs."""
    tensors = to_torch(inputs_of(spec, feeds))
    out = module(*[tensors[n] for n in spec.input_names])
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().float().numpy() for o in outs]


def save_graph(
    module: nn.Module, spec: GraphSpec, feeds: dict[str, np.ndarray], directory: Path, opset: int
) -> GraphEntry:
    """Trace `module` on `feeds` into `<spec.name>.onnx` in `directory` (legacy exporter,
    named dynamic axes) and describe the written graph.

    The tracer writes to a scratch file, not to memory, its weights in a data file beside it
    one at a time (`memory.weights_beside`; past protobuf's 2 GB it does so itself); the graph
    is read without them and `write_graph` copies them file to file: no stage holds a serialized
    or parsed copy of the weights."""
    tensors = to_torch(inputs_of(spec, feeds))
    args = tuple(tensors[n] for n in spec.input_names)
    with tempfile.TemporaryDirectory(prefix=f".trace-{spec.name}-", dir=directory) as scratch:
        traced = Path(scratch) / f"{spec.name}.onnx"
        try:
            with (
                torch.no_grad(),
                quiet_tracing(),
                no_onnxscript_reparse(),
                weights_beside(traced),
                weights_out_of_shape_inference(),
            ):
                torch.onnx.export(
                    module,
                    args,
                    str(traced),
                    input_names=spec.input_names,
                    output_names=spec.output_names,
                    dynamic_axes=spec.dynamic_axes(),
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
        except Exception as e:
            raise ExportError(f"tracing graph {spec.name!r} failed: {type(e).__name__}: {e}") from e
        gc.collect()  # the tracer's graph, before the file is read
        # the weights stay in the tracer's data files: write_graph copies them file to file
        proto = onnx.load(str(traced), load_external_data=False)
        return write_graph(
            proto, directory, spec.name, spec.input_names, spec.output_names, source=traced.parent
        )


class ExportContext:
    """One export attempt of one model into one (temporary) directory."""

    def __init__(
        self,
        model: Any,
        config: ArchExport,
        directory: Path,
        *,
        opset: int,
        atol: float,
        log: Callable[[str], None],
        optimize: bool = False,
        fuse: bool = False,
    ):
        self.model = model
        self.config = config
        self.arch = config.arch
        self.gliner_config = model.config  # gliner's config of the checkpoint (`config`: the export config)
        self.dir = directory
        self.opset = opset
        self.atol = atol
        self.log = log
        self.optimize = optimize
        self.fuse = optimize and fuse
        self.fused: dict[str, dict[str, Any]] = {}
        self.span_head = config.span_head(model, optimize)
        self.specs: dict[str, GraphSpec] = {
            s.name: s
            for s in graph_specs(self.arch, self.span_head, adjacency=config.has_adjacency(model))
            if s.name not in DECODER_GRAPHS
        }
        self.modules = config.wrappers(model, self.span_head, optimize)
        for m in self.modules.values():
            m.eval()
        self.tokenizer_entries: dict[str, TokenizerEntry] = {}
        self.label_tok: SubwordTokenizer | None = None
        self._planned: Manifest | None = None  # the manifest before the graphs are written

    text_tok: SubwordTokenizer  # set by write_tokenizers

    # -- tokenizers
    def write_tokenizers(self) -> dict[str, TokenizerEntry]:
        proc = self.model.data_processor
        entries = {"text": write_tokenizer(proc.transformer_tokenizer, self.dir, "tokenizer.json")}
        if self.config.bi:
            entries["labels"] = write_tokenizer(proc.labels_tokenizer, self.dir, "labels/tokenizer.json")
        self.tokenizer_entries = entries
        self.text_tok = load_runtime_tokenizer(self.dir, entries["text"])
        self.label_tok = load_runtime_tokenizer(self.dir, entries["labels"]) if self.config.bi else None
        return entries

    def check_tokenizers(self) -> None:
        """The written tokenizers reproduce gliner's on every validation and tracing input."""
        proc = self.model.data_processor
        for texts, labels in (*samples.CASES, (samples.TRACE_TEXTS, samples.TRACE_LABELS)):
            ctxs = self.config.encoder_contexts(self, self.contexts(texts, labels))
            words = [list(c.words.words[: c.num_words]) for c in ctxs]
            if not self.config.bi:
                c = ctxs[0]
                prompt = build_prompt(
                    c.labels.prompts,
                    self.gliner_config.ent_token,
                    self.gliner_config.sep_token,
                    c.relations,
                    self.rel_token,
                )
                words = [prompt + w for w in words]
            check_words_tokenization(proc.transformer_tokenizer, self.text_tok, [words])
            if self.label_tok is not None:
                check_text_tokenization(proc.labels_tokenizer, self.label_tok, list(labels))

    # -- the runtime's pre-processing of a case
    def contexts(self, texts: Sequence[str], labels: Sequence[str]) -> list[TextContext]:
        label_set = normalize_label_set(list(labels))
        splitter = getattr(self.gliner_config, "words_splitter_type", "whitespace")
        relations = samples.relations_for(labels) if self.config.relex else ()
        return [
            replace(
                make_context(t, label_set, splitter=splitter, max_len=self.gliner_config.max_len),
                relations=relations,
            )
            for t in texts
        ]

    @property
    def rel_token(self) -> str | None:
        return self.gliner_config.rel_token if self.config.relex else None

    # -- running the graphs through the runtime's pipelines (`graph_runs.py`)
    def manifest(self, graphs: dict[str, GraphEntry], source: str) -> Manifest:
        """The export's manifest with these graphs (the tokenizers must be written)."""
        cfg, bi = self.gliner_config, self.config.bi
        tok = self.model.data_processor.transformer_tokenizer
        ent_id = tok.convert_tokens_to_ids(cfg.ent_token)
        sep_id = tok.convert_tokens_to_ids(cfg.sep_token)
        if not bi and ent_id != cfg.class_token_index:
            raise ExportError(
                f"the tokenizer's id of {cfg.ent_token!r} ({ent_id}) differs from the model's "
                f"class_token_index ({cfg.class_token_index})"
            )
        return Manifest(
            **self.config.manifest_fields(self),
            arch=self.arch,
            graphs=graphs,
            tokenizers=self.tokenizer_entries,
            max_width=int(cfg.max_width),
            max_len=int(cfg.max_len),
            words_splitter=getattr(cfg, "words_splitter_type", "whitespace"),
            subtoken_pooling=getattr(cfg, "subtoken_pooling", "first"),
            ent_token=cfg.ent_token,
            sep_token=cfg.sep_token,
            ent_token_id=None if bi else int(ent_id),
            sep_token_id=None if bi else int(sep_id),
            embed_ent_token=bool(getattr(cfg, "embed_ent_token", True)),
            span_head=self.span_head,
            source=source,
            versions=versions(self.opset),
        )

    def loaded(self, runner: GraphRunner) -> LoadedModel:
        """The loaded-model context a runtime pipeline receives, its graphs run by `runner`:
        the manifest as it will be written (graph files not yet hashed), the written tokenizers."""
        if self._planned is None:
            graphs = {
                name: GraphEntry(f"{name}.onnx", "", tuple(spec.input_names), tuple(spec.output_names))
                for name, spec in self.specs.items()
            }
            self._planned = self.manifest(graphs, source="")
        tokenizers = {"text": self.text_tok}
        store = None
        if self.label_tok is not None:
            tokenizers["labels"] = self.label_tok
            store = LabelStore(runner, self.label_tok)
        return LoadedModel(self.dir, self._planned, runner, tokenizers, store)

    def run_case(self, contexts: list[TextContext], runner: R) -> R:
        """Run the export's graphs on one batch through its arch's pipeline stage, on `runner`
        (`graph_runs.TorchGraphs` or `OnnxGraphs`, which keep what each graph was fed)."""
        self.config.run_graphs(self, self.loaded(runner), contexts)
        return runner

    def reference_batch(self, texts: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
        """gliner's own collated batch for the case."""
        return self.config.reference_batch(self.model, texts, labels)


def versions(opset: int) -> dict[str, str]:
    """The versions of what made the export, for the manifest."""
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
