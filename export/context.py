"""What every export step shares: the model, its export config, the directory being written,
the tokenizers as the runtime will load them, the traced modules; and `save_graph`.

The entity export (`exporter.py`, `validation.py`) and the decoder export
(`decoder_export.py`) both work on one `ExportContext`; neither imports the other.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
import torch
from torch import nn

from gliner_onnx.archs import DECODER_GRAPHS, GraphSpec, graph_specs
from gliner_onnx.errors import ExportError
from gliner_onnx.manifest import GraphEntry, TokenizerEntry
from gliner_onnx.runtime.features import TextContext, make_context, text_feeds
from gliner_onnx.runtime.labels import LabelSet, build_prompt, normalize_label_set
from gliner_onnx.runtime.tokenize import SubwordTokenizer

from . import samples
from .graph_io import write_graph
from .memory import no_onnxscript_reparse, weights_beside
from .parity import ParityRecorder
from .quiet import quiet_tracing
from .tokenizer_io import (
    check_text_tokenization,
    check_words_tokenization,
    load_runtime_tokenizer,
    write_tokenizer,
)

Runner = Callable[[str, dict[str, np.ndarray]], list[np.ndarray]]
Feeds = dict[str, dict[str, np.ndarray]]
Outputs = dict[str, list[np.ndarray]]
# What an export adds besides the chained graphs (the label decoder's): its graphs, their max
# abs diffs, the manifest's `decoder`.
Extra = tuple[dict[str, GraphEntry], dict[str, dict[str, float]], dict[str, Any]]


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
    def label_set(self, cfg: Any, labels: LabelSet) -> LabelSet: ...
    def chain(self, ctx: ExportContext, feeds: Feeds, batch: int, run: Runner) -> Outputs: ...
    def reference_batch(self, model: Any, texts: Sequence[str], labels: Sequence[str]) -> dict[str, Any]: ...
    def reference(self, model: Any, batch: dict[str, Any]) -> Any: ...
    def check_end_to_end(
        self, ctx: ExportContext, ref: Any, chained: Feeds, outs: Outputs, where: str, parity: ParityRecorder
    ) -> None: ...


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
            with torch.no_grad(), quiet_tracing(), no_onnxscript_reparse(), weights_beside(traced):
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
            ctxs = self.contexts(texts, labels)
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
        label_set = self.config.label_set(self.gliner_config, normalize_label_set(list(labels)))
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

    def feeds(self, texts: Sequence[str], labels: Sequence[str]) -> dict[str, np.ndarray]:
        return text_feeds(
            self.contexts(texts, labels),
            self.text_tok,
            max_width=self.gliner_config.max_width,
            pooling=getattr(self.gliner_config, "subtoken_pooling", "first"),
            prompt_tokens=None
            if self.config.bi
            else (self.gliner_config.ent_token, self.gliner_config.sep_token),
            with_spans=self.config.family == "span",
            rel_token=self.rel_token,
        )

    def label_feeds(self, labels: Sequence[str]) -> dict[str, np.ndarray]:
        if self.label_tok is None:
            raise ExportError(f"{self.arch} has no label encoder")
        tb = self.label_tok.encode_texts(list(labels))
        return {"input_ids": tb.input_ids, "attention_mask": tb.attention_mask}

    # -- running the graphs
    def run_torch(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return torch_run(self.modules[name], self.specs[name], feeds)

    def first_feeds(self, texts: Sequence[str], labels: Sequence[str]) -> Feeds:
        """The feeds that come from pre-processing: text encoder (and label encoder)."""
        feeds = {"text_encoder": self.feeds(texts, labels)}
        if self.config.bi:
            feeds["label_encoder"] = self.label_feeds(labels)
        return feeds

    def graph_feeds(
        self, texts: Sequence[str], labels: Sequence[str], run: Runner | None = None
    ) -> tuple[Feeds, Outputs]:
        """The inputs and outputs of every graph for one case, each graph fed by the previous
        ones as the runtime chains them; `run(name, feeds)` runs one graph (default: torch)."""
        feeds = self.first_feeds(texts, labels)
        return feeds, self.config.chain(self, feeds, len(texts), run or self.run_torch)

    def reference_batch(self, texts: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
        """gliner's own collated batch for the case."""
        return self.config.reference_batch(self.model, texts, labels)
