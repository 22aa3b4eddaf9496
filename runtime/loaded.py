"""The loaded-model context every pipeline receives: manifest, graph runner, tokenizers,
label store; and the text encoder's input arrays of a batch, built from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gliner_onnx.archs import Arch, get_arch
from gliner_onnx.manifest import Manifest, load_manifest

from .features import TextContext, text_feeds
from .labelstore import LabelStore
from .options import ProviderSpec, SessionOptions
from .runner import GraphRunner
from .tokenize import SubwordTokenizer


@dataclass(frozen=True)
class LoadedModel:
    """One export, loaded: what a pipeline may use (it never sees the facade)."""

    directory: Path
    manifest: Manifest
    runner: GraphRunner
    tokenizers: Mapping[str, SubwordTokenizer]  # "text", and "labels" / "decoder" where exported
    label_store: LabelStore | None  # bi-encoders: the label encoder's caches

    @property
    def arch(self) -> Arch:
        """The arch's record (`gliner_onnx.archs`): encoder kind, head family, extension."""
        return get_arch(self.manifest.arch)

    @property
    def family(self) -> str:
        return self.arch.family

    @property
    def is_biencoder(self) -> bool:
        return self.arch.bi


def load_model(
    path: str | Path,
    *,
    providers: str | Sequence[ProviderSpec] = "cpu",
    session_options: SessionOptions | None = None,
    verify: bool = True,
) -> LoadedModel:
    """Read and check the manifest (and every sha256 with `verify`), open every graph."""
    directory = Path(path)
    manifest = load_manifest(directory, verify=verify)
    options = replace(session_options or SessionOptions(), providers=providers)
    runner = GraphRunner.load(directory, manifest, options)
    tokenizers = {
        name: SubwordTokenizer(
            directory / t.file,
            pad_token_id=t.pad_token_id,
            pad_token=t.pad_token,
            model_max_length=t.model_max_length,
        )
        for name, t in manifest.tokenizers.items()
    }
    labels = LabelStore(runner, tokenizers["labels"]) if runner.has("label_encoder") else None
    return LoadedModel(directory, manifest, runner, tokenizers, labels)


def encoder_feeds(model: LoadedModel, contexts: Sequence[TextContext]) -> dict[str, np.ndarray]:
    """The text encoder's inputs of a batch (uni-encoders: the labels' prompt before the words)."""
    m = model.manifest
    feeds = text_feeds(
        contexts,
        model.tokenizers["text"],
        max_width=m.max_width,
        pooling=m.subtoken_pooling,
        prompt_tokens=None if model.is_biencoder else (m.ent_token, m.sep_token),
        with_spans=model.family == "span",
        rel_token=m.rel_token,
    )
    if not model.is_biencoder:
        _check_prompt_tokens(model, feeds["input_ids"], feeds["attention_mask"], contexts)
    return feeds


def _check_prompt_tokens(
    model: LoadedModel, input_ids: np.ndarray, attention_mask: np.ndarray, contexts: Sequence[TextContext]
) -> None:
    """Every label must give exactly one class token, else prompts would misalign."""
    m = model.manifest
    counts = ((input_ids == m.ent_token_id) & (attention_mask > 0)).sum(axis=1)
    for c, n in zip(contexts, counts.tolist()):
        if n != len(c.labels):
            raise ValueError(
                f"the prompt of {len(c.labels)} labels holds {n} {m.ent_token!r} tokens: "
                "a label contains that special token, or labels and text exceed the encoder's "
                f"{model.tokenizers['text'].model_max_length} subword tokens"
            )
