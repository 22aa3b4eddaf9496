"""gliner's own one-graph ONNX layout (`GLiNER.export_to_onnx`), run through our stages.

A directory (or Hub repo) with `gliner_config.json`, the text tokenizer
(`tokenizer.json`) and one graph (`model.onnx`, `onnx/model.onnx`, or `onnx_file=`),
as gliner 0.2.x writes it and as the onnx-community / knowledgator `*-onnx` repos hold
it. The graph takes gliner's collated batch and returns its logits:

- span uni-encoders: input_ids, attention_mask, words_mask, text_lengths, span_idx,
  span_mask (bool) -> logits (B, W, max_width, C);
- token uni-encoders: the first four -> logits (B, W, C, 3);
- bi-encoders: also labels_input_ids, labels_attention_mask: the graph re-encodes the
  labels on every call (no label cache; `label_embeddings=` is refused);
- relex: -> logits, rel_idx, rel_logits, rel_mask (entities and pairs selected inside
  the graph at gliner's default thresholds, 0.5, baked in at export): refused, because
  gliner 0.2.29's graphs fail on any text but the tracing one, in its own ONNX path too
  (tests/test_onegraph.py pins it).

The names and element types are read from the graph. Everything around it is ours:
word splitting, tokenization, span indices (the same arrays gliner builds, tested at
every export of ours), windows for long texts, sigmoid, greedy decoding, offsets.
gliner's `labels_embeddings` variant (`from_labels_embeddings=True`) needs the labels
encoder, which is not in the graph: refused with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from gliner_onnx.archs import find_arch, get_arch
from gliner_onnx.errors import ManifestError
from gliner_onnx.manifest import GraphEntry, Manifest, TokenizerEntry

from .entities import EntityPipeline
from .features import TextContext
from .hub import GLINER_CONFIG, fetch_tokenizer, onnx_candidates
from .loaded import LoadedModel, encoder_feeds
from .options import ProviderSpec, SessionOptions
from .planning import Found
from .request import Accepts
from .runner import GraphRunner, binding_device
from .session import GraphSession, resolve_providers
from .spans import span_grid
from .tokenize import SubwordTokenizer
from .words import check_splitter

GRAPH = "model"  # the one graph's name in the in-memory manifest
TEXT_INPUTS = ("input_ids", "attention_mask", "words_mask", "text_lengths")
SPAN_INPUTS = ("span_idx", "span_mask")
LABEL_INPUTS = ("labels_input_ids", "labels_attention_mask")
RELEX_OUTPUTS = ("logits", "rel_idx", "rel_logits", "rel_mask")
_NO_LIMIT = 1_000_000
# gliner 0.2.29's GLiNERConfig defaults, for keys a saved config leaves out
_DEFAULTS: dict[str, Any] = {
    "max_width": 12,
    "max_len": 384,
    "words_splitter_type": "whitespace",
    "subtoken_pooling": "first",
    "ent_token": "<<ENT>>",
    "sep_token": "<<SEP>>",
    "rel_token": "<<REL>>",
    "embed_ent_token": True,
}


def read_gliner_config(directory: Path) -> dict[str, Any]:
    path = directory / GLINER_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} cannot be read as JSON: {e}") from e
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object")
    return {**_DEFAULTS, **{k: v for k, v in data.items() if v is not None or k not in _DEFAULTS}}


def arch_of(config: dict[str, Any], where: str) -> str:
    """gliner 0.2.29's class choice (`_get_gliner_class`), as export/detect.py makes it."""
    if config.get("model_type") == "gliner_streaming_span":
        raise ManifestError(f"{where}: streaming span models are not supported")
    if config.get("labels_decoder") is not None:
        raise ManifestError(f"{where}: decoder models have no gliner ONNX export (gliner refuses them)")
    family = "token" if config.get("span_mode") == "token_level" else "span"
    if config.get("relations_layer") is not None:
        return find_arch("uni", family, "relex").name
    encoder = "bi" if config.get("labels_encoder") is not None else "uni"
    return find_arch(encoder, family, "none").name


def find_graph(directory: Path, onnx_file: str | None) -> Path:
    candidates = onnx_candidates(onnx_file)
    for name in candidates:
        if (directory / name).is_file():
            return directory / name
    raise ManifestError(
        f"{directory} has {GLINER_CONFIG} but no ONNX graph at {' or '.join(candidates)}"
        + ("" if onnx_file else " (pass onnx_file= to name another, e.g. 'model_quantized.onnx')")
    )


def _special(config_dir: Path, key: str) -> str | None:
    """A special token (e.g. pad_token) from tokenizer_config.json or special_tokens_map.json."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = config_dir / name
        if not path.is_file():
            continue
        value = json.loads(path.read_text(encoding="utf-8")).get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return value
    return None


def load_tokenizer(tok_dir: Path, what: str) -> tuple[SubwordTokenizer, TokenizerEntry]:
    """A HF `save_pretrained` tokenizer directory read with `tokenizers` (pad token, length limit)."""
    path = tok_dir / "tokenizer.json"
    if not path.is_file():
        raise ManifestError(
            f"{what}: {path} is missing (only fast tokenizers, tokenizer.json, are supported)"
        )
    pad = _special(tok_dir, "pad_token")
    config_path = tok_dir / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    mml = tok_config.get("model_max_length")
    limit = int(mml) if isinstance(mml, (int, float)) and 0 < mml < _NO_LIMIT else None
    probe = SubwordTokenizer(path, pad_token_id=0, pad_token="", model_max_length=None)
    pad_id = probe.token_to_id(pad) if pad is not None else None
    if pad is None or pad_id is None:
        raise ManifestError(f"{what}: the tokenizer in {tok_dir} has no pad token")
    entry = TokenizerEntry(str(path), "", pad_id, pad, limit)
    return SubwordTokenizer(path, pad_token_id=pad_id, pad_token=pad, model_max_length=limit), entry


def _labels_tokenizer_dir(directory: Path, config: dict[str, Any]) -> Path:
    """Where gliner takes a bi-encoder's labels tokenizer from: `labels_tokenizer/` saved
    with the model, else the labels encoder named in the config (a directory or a Hub id)."""
    saved = directory / "labels_tokenizer"
    if (saved / "tokenizer.json").is_file():
        return saved
    name = str(config["labels_encoder"])
    if Path(name).is_dir():
        return Path(name)
    return fetch_tokenizer(name)


def check_layout(arch: str, inputs: Sequence[str], outputs: Sequence[str], where: str) -> None:
    """The graph's names are one of the layouts gliner 0.2.x writes for `arch`, or say why not."""
    record = get_arch(arch)
    expected = list(TEXT_INPUTS) + (list(SPAN_INPUTS) if record.family == "span" else [])
    if record.bi:
        if "labels_embeddings" in inputs:
            raise ManifestError(
                f"{where}: this graph takes precomputed labels_embeddings (gliner's "
                "from_labels_embeddings=True export): the labels encoder is not in it, so it cannot "
                "encode labels; export it without from_labels_embeddings"
            )
        expected += list(LABEL_INPUTS)
    want_out = list(RELEX_OUTPUTS) if record.relex else ["logits"]
    if sorted(inputs) != sorted(expected) or list(outputs) != want_out:
        raise ManifestError(
            f"{where}: the graph's inputs {list(inputs)} and outputs {list(outputs)} are not gliner's "
            f"layout for {arch} ({expected} -> {want_out})"
        )


def load_onegraph(
    directory: Path,
    *,
    onnx_file: str | None,
    providers: str | Sequence[ProviderSpec],
    session_options: SessionOptions | None,
) -> LoadedModel:
    """Load gliner's one-graph layout from a local directory."""
    config = read_gliner_config(directory)
    where = str(directory)
    arch = arch_of(config, where)
    record = get_arch(arch)
    if record.relex:
        raise ManifestError(
            f"{where}: gliner's relex ONNX graphs ({arch}) are not supported: gliner 0.2.29's "
            "export_to_onnx traces the entity and pair selection at the tracing input's shapes (and "
            "bakes its 0.5 thresholds in), so the graph fails on other texts, in gliner's own ONNX "
            "path too (ScatterND: invalid index); export the checkpoint with gliner-export instead"
        )
    splitter = str(config["words_splitter_type"])
    try:
        check_splitter(splitter)
    except ValueError as e:
        raise ManifestError(f"{where}: {e}") from None
    graph_file = find_graph(directory, onnx_file)
    options = replace(session_options or SessionOptions(), providers=providers)
    resolved = resolve_providers(options)
    session = GraphSession(graph_file, GRAPH, None, None, options, resolved)
    check_layout(arch, session.input_names, session.output_names, f"{where} ({graph_file.name})")
    text_tok, text_entry = load_tokenizer(directory, f"{where} text tokenizer")
    tokenizers, entries = {"text": text_tok}, {"text": text_entry}
    if record.bi:
        tokenizers["labels"], entries["labels"] = load_tokenizer(
            _labels_tokenizer_dir(directory, config), f"{where} labels tokenizer"
        )
    bi = record.bi
    ent_id = None if bi else text_tok.token_to_id(str(config["ent_token"]))
    if not bi and ent_id is None:
        raise ManifestError(f"{where}: the tokenizer has no {config['ent_token']!r} token")
    entry = GraphEntry(
        str(graph_file.relative_to(directory)), "", tuple(session.input_names), tuple(session.output_names)
    )
    manifest = Manifest(
        arch=arch,
        graphs={GRAPH: entry},
        tokenizers=entries,
        max_width=int(config["max_width"]),
        max_len=int(config["max_len"]),
        words_splitter=splitter,
        subtoken_pooling=str(config["subtoken_pooling"]),
        ent_token=str(config["ent_token"]),
        sep_token=str(config["sep_token"]),
        ent_token_id=ent_id,
        sep_token_id=None if bi else text_tok.token_to_id(str(config["sep_token"])),
        embed_ent_token=bool(config["embed_ent_token"]),
        source=f"gliner export_to_onnx: {graph_file}",
        format="gliner",
    )
    runner = GraphRunner({GRAPH: session}, binding_device(options, resolved))
    return LoadedModel(directory, manifest, runner, tokenizers, None)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float32)
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float32)


def graph_feeds(
    text: dict[str, np.ndarray],
    contexts: Sequence[TextContext],
    session: GraphSession,
    max_width: int,
    labels: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The one graph's inputs from our text feeds, cast to the graph's element types."""
    feeds = dict(text)
    if "span_mask" in session.input_names:
        feeds["span_mask"] = span_grid([c.num_words for c in contexts], max_width)[1]
    if labels is not None:
        feeds["labels_input_ids"], feeds["labels_attention_mask"] = (
            labels["input_ids"],
            labels["attention_mask"],
        )
    out: dict[str, np.ndarray] = {}
    for name in session.input_names:
        kind = session.input_types.get(name, "tensor(int64)")
        dtype = {"tensor(bool)": np.bool_, "tensor(int32)": np.int32}.get(kind, np.int64)
        out[name] = np.ascontiguousarray(feeds[name], dtype=dtype)
    return out


class OneGraphPipeline(EntityPipeline):
    """The entity pipeline over gliner's one graph, which stands for text encoder + scorer.

    Same stages and batching (length-sorted windows); a batch's scores come from the one graph,
    through the graph runner. Bi-encoders: the graph takes one label list per call, so each
    batch runs once per label set among its windows (no label cache: the graph re-encodes them).
    """

    accepts: ClassVar[Accepts] = Accepts("gliner one-graph", label_embeddings=False)

    def candidates(
        self,
        contexts: list[TextContext],
        threshold: float,
        given: np.ndarray | None,
        best_label_only: bool = False,
    ) -> list[Found]:
        if not self.model.is_biencoder:
            return super().candidates(contexts, threshold, given, best_label_only)
        out: list[Found] = [[] for _ in contexts]
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, c in enumerate(contexts):
            groups.setdefault(c.labels.prompts, []).append(i)
        for rows in groups.values():
            found = super().candidates([contexts[i] for i in rows], threshold, given, best_label_only)
            for i, f in zip(rows, found):
                out[i] = f
        return out

    def scores(self, contexts: list[TextContext], given: np.ndarray | None = None) -> np.ndarray:
        """Probabilities of a batch (bi-encoders: contexts sharing one label set)."""
        model = self.model
        labels = None
        if model.is_biencoder:
            tb = model.tokenizers["labels"].encode_texts(list(contexts[0].labels.prompts))
            labels = {"input_ids": tb.input_ids, "attention_mask": tb.attention_mask}
        session = model.runner.session(GRAPH)
        text = encoder_feeds(model, contexts)
        feeds = graph_feeds(text, contexts, session, model.manifest.max_width, labels)
        (logits,) = model.runner.run(GRAPH, feeds)
        return sigmoid(logits)
