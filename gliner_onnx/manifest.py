"""The manifest: the only contract between an export directory and the runtime.

`gliner_onnx.json` in an export directory names the architecture, each graph file
with its sha256 and input/output names, the tokenizer files, the special tokens
and the pre-processing settings. Loading it needs only the standard library.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .archs import SPAN_HEADS, Arch, GraphSpec, get_arch, graph_specs
from .errors import ManifestError

MANIFEST_NAME = "gliner_onnx.json"
FORMAT = "gliner-onnx"
FORMAT_VERSION = 1
# gliner 0.2.29's words_splitter_type values the torch-free runtime runs (runtime/words.py),
# and those it refuses, with the reason.
WORD_SPLITTERS = ("whitespace", "spacy", "jieba", "janome", "mecab", "hindi", "camel", "universal")
REFUSED_SPLITTERS = {
    "hanlp": "HanLP's tokenizers are torch (or TensorFlow) models",
    "stanza": "Stanza's tokenizers are torch models",
}
SUBTOKEN_POOLINGS = ("first", "last", "mean", "max")
PRECISIONS = ("fp32", "int8", "fp16")
# How graph files are stored: ONNX (`.onnx`, weights in `.onnx.data`) or ONNX Runtime's own
# ORT format (`.ort`, weights inside; `gliner-export --format ort`, docs/edge.md). Absent: onnx.
MODEL_FORMATS = ("onnx", "ort")
# `source` of an export of gliner-export's offline demo checkpoint (no --model): "demo:<arch>".
DEMO_SOURCE_PREFIX = "demo:"


@dataclass(frozen=True)
class GraphEntry:
    """One ONNX graph file (and its external weights file, if any)."""

    file: str
    sha256: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    data_file: str | None = None
    data_sha256: str | None = None
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    # What export-time optimization did to this graph (fused operators, quantized nodes).
    optimization: dict[str, Any] = field(default_factory=dict)
    model_format: str = "onnx"  # "ort": an ORT format file (`.ort`), loaded as such


@dataclass(frozen=True)
class TokenizerEntry:
    """A `tokenizers` JSON file and the settings the reference applies around it."""

    file: str
    sha256: str
    pad_token_id: int
    pad_token: str
    model_max_length: int | None


@dataclass(frozen=True)
class Manifest:
    arch: str
    graphs: dict[str, GraphEntry]
    tokenizers: dict[str, TokenizerEntry]
    max_width: int
    max_len: int
    words_splitter: str
    subtoken_pooling: str
    ent_token: str
    sep_token: str
    ent_token_id: int | None
    sep_token_id: int | None
    embed_ent_token: bool = True
    precision: str = "fp32"
    span_head: str = "generic"
    # Lower precisions: entity-level agreement with the fp32 graphs (export/precision/__init__.py).
    agreement: dict[str, Any] = field(default_factory=dict)
    # int8: the recipe (export/precision/int8.py) and its speed and size against fp32, measured at export.
    quantization: dict[str, Any] = field(default_factory=dict)
    # Relex: the relation-type marker, and the checkpoint's relation layers ("none": no
    # adjacency graph, every ordered pair is scored; triples_layer: informational).
    rel_token: str | None = None
    rel_token_id: int | None = None
    relations_layer: str | None = None
    triples_layer: str | None = None
    # Generative label decoder (decoder archs): mode, full_context, eos/bos/pad ids,
    # clean_up_tokenization_spaces and the decoder's shape (runtime/label_generation.py).
    decoder: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    # The format of every graph file ("onnx" or "ort"); for ORT format exports, `ort` says how
    # they were converted, the reduced-build operator config and their check against the ONNX
    # graphs (export/ort/model_format.py).
    model_format: str = "onnx"
    ort: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def is_demo(self) -> bool:
        """Exported from the offline demo checkpoint, not from a trained GLiNER model."""
        return self.source.startswith(DEMO_SOURCE_PREFIX)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False, ensure_ascii=False) + "\n"

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / MANIFEST_NAME
        path.write_text(self.to_json(), encoding="utf-8")
        return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise ManifestError(f"{where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ManifestError(f"{where}: field {key!r} has type {type(value).__name__}")
    return value


def _check_file(directory: Path, name: str, digest: str | None, verify: bool, what: str) -> None:
    path = directory / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise ManifestError(f"{what}: file name {name!r} must be relative to the export directory")
    if not path.is_file():
        raise ManifestError(f"{what}: file {path} is missing")
    if verify and digest is not None and sha256_file(path) != digest:
        raise ManifestError(
            f"{what}: {path} is damaged or altered (sha256 differs from the manifest); re-export it"
        )


def _decoder_settings(data: dict[str, Any], needed: bool, where: str) -> dict[str, Any]:
    raw = data.get("decoder") or {}
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: field 'decoder' must be an object")
    if needed and (raw.get("mode") not in ("span", "prompt") or not isinstance(raw.get("eos_token_id"), int)):
        raise ManifestError(f"{where}: decoder archs need 'decoder' with a mode and an integer eos_token_id")
    return dict(raw)


def _model_format(data: dict[str, Any], where: str) -> str:
    fmt = data.get("model_format", "onnx")  # manifests written before ORT format exports: onnx
    if fmt not in MODEL_FORMATS:
        raise ManifestError(f"{where}: model_format {fmt!r} is not one of {MODEL_FORMATS}")
    return str(fmt)


def _graph_format(g: dict[str, Any], export_format: str, where: str) -> str:
    """A graph's file format: the export's, and what its file name says (`.ort`: ORT format)."""
    fmt = g.get("model_format", "onnx")
    if fmt != export_format:
        raise ManifestError(f"{where}: model_format {fmt!r} differs from the export's {export_format!r}")
    if str(g.get("file", "")).endswith(".ort") != (fmt == "ort"):
        raise ManifestError(f"{where}: file {g.get('file')!r} does not match model_format {fmt!r}")
    return str(fmt)


def load_manifest(directory: str | Path, *, verify: bool = True) -> Manifest:
    """Read and check `gliner_onnx.json` in `directory`.

    Checks the format and version, the architecture, that every graph the
    architecture needs is listed with the expected inputs/outputs, and (when
    `verify`) that every file exists with the recorded sha256.
    """
    directory = Path(directory)
    data, where = _read(directory)
    version = _format_version(data, where)
    record, span_head, relex = _arch(data, where)
    try:
        specs = graph_specs(record.name, span_head, adjacency=relex["relations_layer"] != "none")
    except ValueError as e:
        raise ManifestError(f"{where}: {e}") from e
    precision = data.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ManifestError(f"{where}: precision {precision!r} is not one of {PRECISIONS}")
    model_format = _model_format(data, where)
    graphs = _graphs(data, specs, record.name, model_format, directory, verify, where)
    tokenizers = _tokenizers(data, graphs, directory, verify, where)
    return Manifest(
        arch=record.name,
        graphs=graphs,
        tokenizers=tokenizers,
        **_preprocessing(data, record, graphs, where),
        precision=precision,
        span_head=span_head,
        agreement=dict(data.get("agreement") or {}),
        quantization=dict(data.get("quantization") or {}),
        **(relex if record.relex else {}),
        decoder=_decoder_settings(data, "decoder_step" in graphs, where),
        source=str(data.get("source", "")),
        versions={str(k): str(v) for k, v in dict(data.get("versions", {})).items()},
        model_format=model_format,
        ort=dict(data.get("ort") or {}),
        format_version=version,
    )


def _read(directory: Path) -> tuple[dict[str, Any], str]:
    """The manifest's JSON object and where it is (for messages)."""
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise ManifestError(f"{directory} is not a directory (expected a gliner-export output directory)")
    if not path.is_file():
        raise ManifestError(f"{path} is missing: {directory} is not a gliner-export output directory")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object")
    return data, str(path)


def _format_version(data: dict[str, Any], where: str) -> int:
    if data.get("format") != FORMAT:
        raise ManifestError(f"{where}: not a gliner-onnx manifest (format={data.get('format')!r})")
    version: int = _require(data, "format_version", int, where)
    if version > FORMAT_VERSION:
        raise ManifestError(
            f"{where}: format version {version} is newer than this gliner-onnx understands "
            f"({FORMAT_VERSION}); upgrade gliner-onnx"
        )
    if version < 1:
        raise ManifestError(f"{where}: invalid format version {version}")
    return version


def _arch(data: dict[str, Any], where: str) -> tuple[Arch, str, dict[str, Any]]:
    """The arch's record, its span head and its relation settings (`Manifest`'s relex fields)."""
    arch = _require(data, "arch", str, where)
    try:
        record = get_arch(arch)
    except ValueError as e:
        raise ManifestError(f"{where}: {e}") from e
    span_head = data.get("span_head", "generic")
    if span_head not in SPAN_HEADS:
        raise ManifestError(f"{where}: span head {span_head!r} is not one of {SPAN_HEADS}")
    relex = {
        "rel_token": data.get("rel_token"),
        "rel_token_id": data.get("rel_token_id"),
        "relations_layer": data.get("relations_layer"),
        "triples_layer": data.get("triples_layer"),
    }
    if record.relex:
        if not isinstance(relex["relations_layer"], str) or not relex["relations_layer"]:
            raise ManifestError(f"{where}: relex manifests need a 'relations_layer' name")
        if not isinstance(relex["rel_token_id"], int) or not isinstance(relex["rel_token"], str):
            raise ManifestError(f"{where}: relex manifests need 'rel_token' and an integer 'rel_token_id'")
    return record, span_head, relex


def _graphs(
    data: dict[str, Any],
    specs: tuple[GraphSpec, ...],
    arch: str,
    model_format: str,
    directory: Path,
    verify: bool,
    where: str,
) -> dict[str, GraphEntry]:
    """Every graph the arch needs, with the arch's inputs and outputs and its files present."""
    graphs: dict[str, GraphEntry] = {}
    raw_graphs = _require(data, "graphs", dict, where)
    for spec in specs:
        if spec.name not in raw_graphs:
            raise ManifestError(f"{where}: graph {spec.name!r} required by arch {arch!r} is not listed")
        gw = f"{where} graph {spec.name!r}"
        entry = _graph(raw_graphs[spec.name], spec, arch, model_format, gw)
        _check_file(directory, entry.file, entry.sha256, verify, gw)
        if entry.data_file is not None:
            _check_file(directory, entry.data_file, entry.data_sha256, verify, gw)
        graphs[spec.name] = entry
    return graphs


def _graph(g: Any, spec: GraphSpec, arch: str, model_format: str, gw: str) -> GraphEntry:
    if not isinstance(g, dict):
        raise ManifestError(f"{gw}: expected an object")
    entry = GraphEntry(
        file=_require(g, "file", str, gw),
        sha256=_require(g, "sha256", str, gw),
        inputs=tuple(_require(g, "inputs", list, gw)),
        outputs=tuple(_require(g, "outputs", list, gw)),
        data_file=g.get("data_file"),
        data_sha256=g.get("data_sha256"),
        max_abs_diff=dict(g.get("max_abs_diff", {})),
        optimization=dict(g.get("optimization", {})),
        model_format=_graph_format(g, model_format, gw),
    )
    if list(entry.inputs) != spec.input_names or list(entry.outputs) != spec.output_names:
        raise ManifestError(
            f"{gw}: inputs/outputs {list(entry.inputs)} -> {list(entry.outputs)} do not match "
            f"arch {arch!r}: {spec.input_names} -> {spec.output_names}"
        )
    return entry


def _tokenizers(
    data: dict[str, Any], graphs: dict[str, GraphEntry], directory: Path, verify: bool, where: str
) -> dict[str, TokenizerEntry]:
    """The text tokenizer, and the labels' / decoder's where their graphs are listed."""
    tokenizers: dict[str, TokenizerEntry] = {}
    raw_tok = _require(data, "tokenizers", dict, where)
    needed = ["text"] + (["labels"] if "label_encoder" in graphs else [])
    needed += ["decoder"] if "decoder_step" in graphs else []
    for name in needed:
        if name not in raw_tok or not isinstance(raw_tok[name], dict):
            raise ManifestError(f"{where}: tokenizer {name!r} is not listed")
        t = raw_tok[name]
        tw = f"{where} tokenizer {name!r}"
        mml = t.get("model_max_length")
        entry = TokenizerEntry(
            file=_require(t, "file", str, tw),
            sha256=_require(t, "sha256", str, tw),
            pad_token_id=_require(t, "pad_token_id", int, tw),
            pad_token=_require(t, "pad_token", str, tw),
            model_max_length=mml if isinstance(mml, int) else None,
        )
        _check_file(directory, entry.file, entry.sha256, verify, tw)
        tokenizers[name] = entry
    return tokenizers


def _preprocessing(
    data: dict[str, Any], record: Arch, graphs: dict[str, GraphEntry], where: str
) -> dict[str, Any]:
    """Word splitting, pooling, widths and the prompt's special tokens (`Manifest`'s fields)."""
    splitter = _require(data, "words_splitter", str, where)
    if splitter not in WORD_SPLITTERS:
        why = f": {REFUSED_SPLITTERS[splitter]}" if splitter in REFUSED_SPLITTERS else ""
        raise ManifestError(
            f"{where}: words splitter {splitter!r} is not supported{why} "
            f"(supported: {', '.join(WORD_SPLITTERS)})"
        )
    pooling = _require(data, "subtoken_pooling", str, where)
    if pooling not in SUBTOKEN_POOLINGS:
        raise ManifestError(f"{where}: subtoken pooling {pooling!r} is not one of {SUBTOKEN_POOLINGS}")
    max_width = _require(data, "max_width", int, where)
    max_len = _require(data, "max_len", int, where)
    if max_width < 1 or max_len < 1:
        raise ManifestError(f"{where}: max_width and max_len must be positive")
    ent_id = data.get("ent_token_id")
    sep_id = data.get("sep_token_id")
    if "text_encoder" in graphs and not record.bi and not isinstance(ent_id, int):
        raise ManifestError(f"{where}: uni-encoder manifests need an integer 'ent_token_id'")
    return {
        "words_splitter": splitter,
        "subtoken_pooling": pooling,
        "max_width": max_width,
        "max_len": max_len,
        "ent_token": _require(data, "ent_token", str, where),
        "sep_token": _require(data, "sep_token", str, where),
        "ent_token_id": ent_id if isinstance(ent_id, int) else None,
        "sep_token_id": sep_id if isinstance(sep_id, int) else None,
        "embed_ent_token": bool(data.get("embed_ent_token", True)),
    }
