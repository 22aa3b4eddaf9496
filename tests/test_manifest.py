"""Damaged, missing or foreign exports give a ManifestError naming the file and the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from gliner_onnx import GLiNER, ManifestError
from gliner_onnx.manifest import FORMAT_VERSION, MANIFEST_NAME, load_manifest, sha256_file

from .conftest import Checkpoint


@pytest.fixture
def export(uni_deberta: Checkpoint, tmp_path: Path) -> Path:
    target = tmp_path / "export"
    shutil.copytree(uni_deberta.export_dir, target)
    return target


def _edit(export: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = export / MANIFEST_NAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_manifest_records_the_contract(export: Path) -> None:
    m = load_manifest(export)
    assert m.arch == "uniencoder_span"
    assert set(m.graphs) == {"text_encoder", "scorer"}
    enc = m.graphs["text_encoder"]
    assert m.span_head == "factorized" and m.precision == "fp32"
    assert enc.inputs == ("input_ids", "attention_mask", "words_mask", "text_lengths")
    assert enc.outputs == ("span_start", "span_end", "prompts")
    assert m.graphs["scorer"].inputs == ("span_start", "span_end", "span_idx", "prompts")
    assert enc.data_file == "text_encoder.onnx.data"  # weights beside the graph
    assert enc.sha256 == sha256_file(export / enc.file)
    assert m.graphs["scorer"].max_abs_diff["end_to_end_scores"] <= 1e-4
    assert m.max_width == 8 and m.max_len == 384
    assert m.words_splitter == "whitespace" and m.subtoken_pooling == "first"
    assert m.ent_token == "<<ENT>>" and isinstance(m.ent_token_id, int)
    assert m.tokenizers["text"].file == "tokenizer.json"
    assert {"gliner", "torch", "onnx", "onnxruntime", "gliner_onnx"} <= set(m.versions)
    raw = json.loads((export / MANIFEST_NAME).read_text())
    assert "torch" not in json.dumps(raw["graphs"])  # plain data only


def test_truncated_graph_is_detected_by_sha256(export: Path) -> None:
    data = export / "text_encoder.onnx.data"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(ManifestError, match=r"text_encoder\.onnx\.data is damaged or altered"):
        GLiNER.from_pretrained(export)


def test_altered_graph_is_detected(export: Path) -> None:
    graph = export / "scorer.onnx"
    blob = bytearray(graph.read_bytes())
    blob[-5] ^= 0xFF
    graph.write_bytes(bytes(blob))
    with pytest.raises(ManifestError, match=r"scorer\.onnx is damaged"):
        GLiNER.from_pretrained(export)


def test_damaged_graph_without_verification_is_still_a_clear_error(export: Path) -> None:
    (export / "scorer.onnx").write_bytes(b"not a graph")
    with pytest.raises(ManifestError, match="ONNX Runtime cannot load"):
        GLiNER.from_pretrained(export, verify=False)


def test_missing_file(export: Path) -> None:
    (export / "tokenizer.json").unlink()
    with pytest.raises(ManifestError, match=r"tokenizer\.json is missing"):
        GLiNER.from_pretrained(export)


def test_missing_manifest_and_missing_directory(export: Path, tmp_path: Path) -> None:
    (export / MANIFEST_NAME).unlink()
    with pytest.raises(ManifestError, match="not a gliner-export output directory"):
        GLiNER.from_pretrained(export)
    with pytest.raises(ManifestError, match="not a directory"):
        GLiNER.from_pretrained(tmp_path / "nowhere")


def test_newer_format_version(export: Path) -> None:
    _edit(export, lambda d: d.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ManifestError, match="newer than this gliner-onnx understands"):
        GLiNER.from_pretrained(export)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="something-else"), "not a gliner-onnx manifest"),
        (
            lambda d: d.update(arch="uniencoder_token_decoder"),
            "not available for arch 'uniencoder_token_decoder'",
        ),
        (lambda d: d.update(arch="nonsense"), "unknown arch"),
        (lambda d: d["graphs"].pop("scorer"), "graph 'scorer' required"),
        (lambda d: d.update(words_splitter="hanlp"), "words splitter 'hanlp' is not supported"),
        (lambda d: d.pop("max_width"), "missing field 'max_width'"),
        (lambda d: d["graphs"]["scorer"].update(inputs=["a", "b"]), "do not match"),
        (lambda d: d["graphs"]["scorer"].update(file="../../etc/passwd"), "must be relative"),
    ],
)
def test_foreign_or_broken_manifest(export: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    _edit(export, change)
    with pytest.raises(ManifestError, match=message):
        GLiNER.from_pretrained(export)


def test_manifest_that_is_not_json(export: Path) -> None:
    (export / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        GLiNER.from_pretrained(export)


def test_graph_whose_inputs_differ_from_the_manifest(export: Path) -> None:
    """A valid graph with other input names: the session check names both sets."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "w", "k", "d"])
    p = helper.make_tensor_value_info("prompts", TensorProto.FLOAT, ["b", "c", "d"])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, None)
    node = helper.make_node("Einsum", ["x", "prompts"], ["scores"], equation="BLKD,BCD->BLKC")
    graph = helper.make_graph([node], "g", [x, p], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), export / "scorer.onnx")
    _edit(export, lambda d: d["graphs"]["scorer"].update(sha256=sha256_file(export / "scorer.onnx")))
    with pytest.raises(
        ManifestError, match=r"declares inputs \['x', 'prompts'\].*manifest says \['span_start'"
    ):
        GLiNER.from_pretrained(export)


def test_valid_copy_still_loads_and_predicts(export: Path) -> None:
    model = GLiNER.from_pretrained(export)
    out = model.predict_entities("Angela Merkel visited Paris.", ["person"], threshold=0.0)
    assert out and all(isinstance(e["score"], float) for e in out)
    assert np.isfinite([e["score"] for e in out]).all()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("span_head", "sparse", "span head 'sparse' is not one of"),
        ("precision", "int4", "precision 'int4' is not one of"),
    ],
)
def test_unknown_layout_or_precision_is_refused(export: Path, field: str, value: str, message: str) -> None:
    _edit(export, lambda d: d.update({field: value}))
    with pytest.raises(ManifestError, match=message):
        load_manifest(export)


def test_generic_span_head_listed_with_factorized_graphs_is_refused(export: Path) -> None:
    """The graph names must match the layout the manifest claims."""
    _edit(export, lambda d: d.update(span_head="generic"))
    with pytest.raises(ManifestError, match="do not match arch 'uniencoder_span'"):
        load_manifest(export)
