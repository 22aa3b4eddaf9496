"""`GLiNER`: the facade. gliner's method names and return conventions over one pipeline.

It checks a call's arguments (`request.make_request`), runs the pipeline picked once at
load for the export's graph layout (`pipelines.pipeline_for`) and adapts the typed
results to gliner's conventions (`result.inference_output`). Everything else lives in
the pipeline and the stages it composes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliner_onnx.errors import GlinerOnnxError

from .hub import directory_layout, resolve_model
from .labels import normalize_label_set
from .loaded import LoadedModel, load_model
from .options import CallOptions, ProviderSpec, SessionOptions
from .output import Entity, RelationDict, merge_adjacent_entities
from .pipelines import Pipeline, pipeline_for
from .request import make_request
from .result import TextResult, inference_output


class GLiNER:
    """A GLiNER model exported by `gliner-export`, run with ONNX Runtime only.

    Load with `GLiNER.from_pretrained(export_dir, providers="cpu")`. The prediction
    methods take and return what gliner's do. `context` is the loaded export (manifest,
    graph runner, tokenizers, label store) and `pipeline` the one that runs it.
    """

    def __init__(self, context: LoadedModel, pipeline: Pipeline | None = None):
        self.context = context
        self.pipeline = pipeline if pipeline is not None else pipeline_for(context)
        self.directory = context.directory
        self.manifest = context.manifest
        self.family = context.family

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        providers: str | Sequence[ProviderSpec] = "cpu",
        session_options: SessionOptions | None = None,
        verify: bool = True,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        onnx_file: str | None = None,
    ) -> GLiNER:
        """Load an export directory, or a Hugging Face Hub repo id (the `hub` extra).

        providers: "cpu", "cuda" or an explicit ONNX Runtime provider list; it
        overrides `session_options.providers`. verify: check every file's sha256.
        revision, cache_dir, token, local_files_only: huggingface_hub's, for a repo id
        (`HF_HUB_OFFLINE=1` is honoured too); see `runtime/hub.py`. onnx_file: the graph
        of gliner's own one-graph layout (default model.onnx or onnx/model.onnx).
        """
        directory = resolve_model(
            path,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            onnx_file=onnx_file,
        )
        if directory_layout(directory) == "gliner":  # gliner's export_to_onnx: runtime/onegraph.py
            from .onegraph import load_onegraph

            return cls(
                load_onegraph(directory, onnx_file=onnx_file, providers=providers,
                              session_options=session_options)
            )  # fmt: skip
        return cls(load_model(directory, providers=providers, session_options=session_options, verify=verify))

    @property
    def arch(self) -> str:
        return self.manifest.arch

    @property
    def is_biencoder(self) -> bool:
        return self.context.is_biencoder

    @property
    def providers(self) -> list[str]:
        """The providers ONNX Runtime actually uses (of the text encoder's session)."""
        return self.context.runner.providers

    def predict_entities(
        self,
        text: str,
        labels: Any,
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        *,
        label_embeddings: np.ndarray | None = None,
        merge_adjacent: bool = False,
        **gen_kwargs: Any,
    ) -> list[Entity]:
        """Entities of one text: a list of {start, end, text, label, score} (merge_adjacent:
        as `inference`)."""
        _check_text(text)
        return self.inference(
            [text], labels, flat_ner=flat_ner, threshold=threshold, multi_label=multi_label,
            label_embeddings=label_embeddings, return_relations=False, merge_adjacent=merge_adjacent,
            **gen_kwargs,
        )[0]  # fmt: skip

    def predict_relations(
        self,
        text: str,
        labels: Any,
        relations: Any,
        flat_ner: bool = True,
        threshold: float = 0.5,
        adjacency_threshold: float | None = None,
        relation_threshold: float | None = None,
        multi_label: bool = False,
    ) -> tuple[list[Entity], list[RelationDict]]:
        """Relex exports: (entities, relations) of one text (gliner's `predict_relations`)."""
        _check_text(text)
        if not self.pipeline.accepts.relations:
            raise ValueError(f"relations need a relex export; this one is {self.arch!r}")
        (found,) = self.extract(
            [text], labels, flat_ner, threshold, multi_label, relations=relations,
            adjacency_threshold=adjacency_threshold, relation_threshold=relation_threshold,
        )  # fmt: skip
        return found.entities, found.relations or []

    def batch_predict_entities(
        self,
        texts: Sequence[str],
        labels: Any,
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        batch_size: int = 8,
        *,
        label_embeddings: np.ndarray | None = None,
    ) -> list[list[Entity]]:
        """Entities of each text (gliner's deprecated name for `inference`)."""
        return self.inference(
            texts, labels, flat_ner=flat_ner, threshold=threshold, multi_label=multi_label,
            batch_size=batch_size, label_embeddings=label_embeddings,
        )  # fmt: skip

    def inference(
        self,
        texts: str | Sequence[str],
        labels: Any,
        flat_ner: bool = True,
        threshold: float = 0.5,
        multi_label: bool = False,
        batch_size: int = 8,
        *,
        relations: Any = None,
        adjacency_threshold: float | None = None,
        relation_threshold: float | None = None,
        return_relations: bool = True,
        label_embeddings: np.ndarray | None = None,
        window: int | None = None,
        overlap: int | None = None,
        gen_constraints: Sequence[str] | None = None,
        merge_adjacent: bool = False,
        **gen_kwargs: Any,
    ) -> Any:
        """Entities of each text, in gliner's output format.

        labels: a string, a list of strings, a {name: description} mapping, or one
        list/mapping per text. label_embeddings (bi-encoders): the rows returned by
        `encode_labels` for the de-duplicated labels, in order.

        Relex exports return `(entities, relations)` as gliner does (entities only with
        `return_relations=False`): `relations` are the relation labels (shared or one list
        per text); adjacency_threshold and relation_threshold default to `threshold`. Each
        relation is {head, tail, relation, score}, head and tail being {start, end, text,
        type, entity_idx} with entity_idx the position in that text's entity list.

        A text longer than `window` words (default: the checkpoint's max_len, 384) or than
        the encoder's subword limit is run in windows overlapping by `overlap` words
        (default: 2 x max_width) instead of being truncated; a text that fits gets
        exactly gliner's answer. (Relex: relations are found within a window.)

        Decoder exports (generative labels) take gliner's generation arguments:
        gen_constraints (labels the generated ones must be), num_gen_sequences (1; more: beam search),
        max_new_tokens (15), do_sample (True), temperature (0.01), top_k (50), seed
        (None), use_cache (True); each entity gets `generated_labels` (decoder_mode
        "span"), or its label is the generated one (decoder_mode "prompt"). They
        batch texts in order and truncate to max_len words, as gliner does.

        merge_adjacent (not a gliner argument): afterwards, join each entity to the previous
        one of its text when they have the same label and at most one character between them,
        keeping the first one's score: the post-processing that NuNER Zero's model card
        applies (its checkpoint scores single words, `max_width: 1`). Not for relex or decoder
        exports, whose entities other outputs refer to.
        """
        if not isinstance(merge_adjacent, bool):
            raise TypeError(f"merge_adjacent must be a bool, got {type(merge_adjacent).__name__}")
        if merge_adjacent and (self.pipeline.accepts.relations or self.context.arch.decoder):
            raise ValueError(f"merge_adjacent is for entity-only exports; this one is {self.arch!r}")
        options = CallOptions(
            flat_ner=flat_ner, threshold=threshold, multi_label=multi_label, batch_size=batch_size,
            relations=relations, adjacency_threshold=adjacency_threshold,
            relation_threshold=relation_threshold, return_relations=return_relations,
            label_embeddings=label_embeddings, window=window, overlap=overlap,
            gen_constraints=gen_constraints, gen_kwargs=gen_kwargs,
        )  # fmt: skip
        results = self._run(texts, labels, options)
        output = inference_output(results, relations=self.pipeline.accepts.relations and return_relations)
        if merge_adjacent:
            texts = [texts] if isinstance(texts, str) else list(texts)
            output = [merge_adjacent_entities(t, found) for t, found in zip(texts, output)]
        return output

    def extract(
        self,
        texts: str | Sequence[str],
        labels: Any,
        flat_ner: bool = True,
        threshold: float = 0.5,
        multi_label: bool = False,
        batch_size: int = 8,
        *,
        relations: Any = None,
        adjacency_threshold: float | None = None,
        relation_threshold: float | None = None,
        return_relations: bool = True,
        label_embeddings: np.ndarray | None = None,
        window: int | None = None,
        overlap: int | None = None,
        gen_constraints: Sequence[str] | None = None,
        **gen_kwargs: Any,
    ) -> list[TextResult]:
        """`inference`'s arguments, one typed `TextResult` per text (relations where the
        export has them and `return_relations`): what the CLI and Ray answer from."""
        options = CallOptions(
            flat_ner=flat_ner, threshold=threshold, multi_label=multi_label, batch_size=batch_size,
            relations=relations, adjacency_threshold=adjacency_threshold,
            relation_threshold=relation_threshold, return_relations=return_relations,
            label_embeddings=label_embeddings, window=window, overlap=overlap,
            gen_constraints=gen_constraints, gen_kwargs=gen_kwargs,
        )  # fmt: skip
        return self._run(texts, labels, options)

    def _run(self, texts: str | Sequence[str], labels: Any, options: CallOptions) -> list[TextResult]:
        """Check the call against the pipeline (`request.make_request`) and run it."""
        return self.pipeline.run(make_request(self.context, self.pipeline.accepts, texts, labels, options))

    def encode_labels(self, labels: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Final label embeddings (N, hidden) of a bi-encoder, one row per label given.

        They are cached by label text; pass them back with `label_embeddings=`.
        """
        if not self.pipeline.accepts.label_embeddings:
            raise ValueError(
                f"this {self.pipeline.accepts.name} export encodes labels inside the graph: "
                "no label embeddings to compute or pass"
            )
        store = self.context.label_store
        if store is None:
            raise ValueError(f"encode_labels needs a bi-encoder export; this one is {self.arch!r}")
        label_set = normalize_label_set(list(labels) if not isinstance(labels, str) else labels)
        store.ensure(label_set.prompts, batch_size)
        return store.embeddings([labels] if isinstance(labels, str) else list(labels))

    def predict_with_embeds(
        self, text: str, labels_embeddings: np.ndarray, labels: Sequence[str], **kwargs: Any
    ) -> list[Entity]:
        """gliner's `predict_with_embeds`: predict with precomputed label embeddings."""
        return self.predict_entities(text, labels, label_embeddings=labels_embeddings, **kwargs)

    def batch_predict_with_embeds(
        self, texts: Sequence[str], labels_embeddings: np.ndarray, labels: Sequence[str], **kwargs: Any
    ) -> list[list[Entity]]:
        """gliner's `batch_predict_with_embeds`."""
        return self.inference(texts, labels, label_embeddings=labels_embeddings, **kwargs)

    def clear_label_cache(self) -> None:
        if self.context.label_store is not None:
            self.context.label_store.clear()


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")


__all__ = ["GLiNER", "GlinerOnnxError"]
