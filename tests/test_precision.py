"""int8 and fp16 exports: what they convert, that they run, and their recorded agreement."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from gliner_onnx import GLiNER
from gliner_onnx.export import export_model
from gliner_onnx.export.precision import (
    AGREEMENT_LABELS,
    AGREEMENT_THRESHOLD,
    agreement_corpus,
    calibration_feeds,
    entity_f1,
    lower_precision,
)
from gliner_onnx.export.precision.int8 import DEFAULT_RECIPE, NAMED_RECIPES, Int8Recipe
from gliner_onnx.manifest import MANIFEST_NAME, load_manifest

from .conftest import LABELS, RELATIONS, RELEX_LABELS, RELEX_TEXTS, TEXTS, Checkpoint


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


@pytest.fixture(scope="module")
def int8_export(uni_deberta: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "o"
    export_model(uni_deberta.model_dir, out, precision="int8", log=lambda _m: None)
    return out


def test_entity_f1_counts_exact_matches() -> None:
    def e(start: int, end: int, label: str) -> dict[str, object]:
        return {"start": start, "end": end, "label": label, "text": "", "score": 0.9}

    ref = [[e(0, 5, "person"), e(9, 14, "location")], [e(1, 2, "date")]]
    got = [[e(0, 5, "person"), e(9, 14, "person")], [e(1, 2, "date"), e(3, 4, "date")]]
    m = entity_f1(ref, got)
    assert m["precision"] == pytest.approx(2 / 4) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))
    assert entity_f1([[]], [[]]) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert entity_f1(ref, [[], []])["f1"] == 0.0


def test_int8_export_follows_the_default_recipe(int8_export: Path, uni_deberta: Checkpoint) -> None:
    m = load_manifest(int8_export)
    assert m.precision == "int8" and m.span_head == "factorized"
    enc = m.graphs["text_encoder"].optimization
    assert enc["precision"] == "int8" and enc["recipe"] == DEFAULT_RECIPE.name
    assert enc["quantized_matmuls"] == enc["matmuls"] > 0  # every weight MatMul, heads too
    assert "rewrites" in enc  # the fp32 optimization record is kept
    assert enc["int8_embedding_tables"] == 1 and enc["quantized_lstms"] == 1
    ops = _ops(int8_export / "text_encoder.onnx")
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert m.graphs["scorer"].optimization["quantized_matmuls"] == m.graphs["scorer"].optimization["matmuls"]

    nodes = onnx.load(str(int8_export / "text_encoder.onnx"), load_external_data=False).graph.node
    float_matmuls = [n.name for n in nodes if n.op_type == "MatMul"]
    weights = {t.name for t in onnx.load(str(int8_export / "text_encoder.onnx")).graph.initializer}
    assert not [n for n in nodes if n.op_type == "MatMul" and n.input[1] in weights], float_matmuls
    # the feed-forwards quantize the first token ([CLS]) apart: two of each, concatenated
    feed_forward = re.compile(r"layer\.(\d+)/(intermediate|output)/dense/MatMul")
    layers = {mt.group(1) for n in nodes if (mt := feed_forward.search(n.name))}
    assert enc["first_token_split"] == 2 * len(layers) > 0
    assert sum(n.op_type == "Concat" and n.name.endswith("_Concat") for n in nodes) == 2 * len(layers)
    # the word-embedding table is stored int8 with one scale per row
    tables = [
        t
        for t in onnx.load(str(int8_export / "text_encoder.onnx")).graph.initializer
        if t.name.endswith("_int8")
    ]
    assert any(t.data_type == onnx.TensorProto.INT8 and t.dims[0] >= 1000 for t in tables)

    q = m.quantization
    assert q["name"] == DEFAULT_RECIPE.name and q["scope"] == "all" and q["embeddings"] is True
    assert (
        q["speed_vs_fp32"]["fp32_ms"] > 0
        and q["speed_vs_fp32"]["ms"] > 0
        and q["speed_vs_fp32"]["threads"] == 2
    )
    sizes = [
        sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        for d in (int8_export, uni_deberta.export_dir)
    ]
    assert q["size_vs_fp32"] == pytest.approx(sizes[0] / sizes[1], rel=0.02) and q["size_vs_fp32"] < 0.8
    info = subprocess.run(
        [sys.executable, "-m", "gliner_onnx.cli", "info", str(int8_export)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"int8 recipe: {DEFAULT_RECIPE.name}" in info.stdout
    assert re.search(r"measured at export: [\d.]+x the speed of fp32 .* [\d.]+x the size", info.stdout)
    a = m.agreement
    assert a["texts"] == 115 and a["labels"] == [
        "person",
        "organization",
        "location",
        "date",
        "event",
        "product",
    ]
    # the recorded figure is the one measured on the corpus, and int8 stays close to fp32
    fp32 = GLiNER.from_pretrained(uni_deberta.export_dir).inference(
        agreement_corpus(), list(AGREEMENT_LABELS), threshold=AGREEMENT_THRESHOLD
    )
    int8 = GLiNER.from_pretrained(int8_export).inference(
        agreement_corpus(), list(AGREEMENT_LABELS), threshold=AGREEMENT_THRESHOLD
    )
    assert a["fp32_entities"] == sum(map(len, fp32)) > 0 and a["entities"] == sum(map(len, int8))
    assert a["f1"] == pytest.approx(entity_f1(fp32, int8)["f1"], abs=1e-12)
    assert a["f1"] > 0.3  # random heads amplify quantization noise


def test_int8_export_predicts(int8_export: Path) -> None:
    # Random heads put most scores near the threshold, where int8 noise flips them: agreement
    # is measured on the trained demo below.
    int8 = GLiNER.from_pretrained(int8_export).inference(TEXTS, LABELS, threshold=0.5)
    assert sum(map(len, int8)) > 0


def test_int8_of_the_trained_demo_agrees_with_fp32(demo_span_export: Path, tmp_path: Path) -> None:
    m = lower_precision(demo_span_export, tmp_path / "int8", "int8", log=lambda _m: None)
    assert m.precision == "int8"
    assert m.agreement["f1"] >= 0.9 and m.agreement["fp32_entities"] > 100, m.agreement


def test_fp16_export_keeps_float32_inputs_and_outputs(uni_deberta: Checkpoint, tmp_path: Path) -> None:
    out = tmp_path / "fp16"
    out.mkdir()
    m = lower_precision(uni_deberta.export_dir, out, "fp16", log=lambda _m: None)
    assert m.precision == "fp16"
    proto = onnx.load(str(out / "text_encoder.onnx"))
    weights = {onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in proto.graph.initializer}
    assert "float16" in weights
    assert [i.type.tensor_type.elem_type for i in proto.graph.output] == [onnx.TensorProto.FLOAT] * 3
    assert m.agreement["f1"] > 0.9  # fp16 rounding flips only near-ties
    got = GLiNER.from_pretrained(out).inference(TEXTS, LABELS, threshold=0.5)
    assert sum(map(len, got)) > 0
    # Converted with the weights left in their file, block by block: the same graph and weights
    # as onnxruntime's converter gives on the loaded graph.
    from onnxruntime.transformers.float16 import convert_float_to_float16

    for name in m.graphs:
        loaded = onnx.load(str(uni_deberta.export_dir / f"{name}.onnx"))
        ref = convert_float_to_float16(loaded, keep_io_types=True)
        got_proto = onnx.load(str(out / f"{name}.onnx"))
        arrays = {t.name: onnx.numpy_helper.to_array(t) for t in got_proto.graph.initializer}
        assert len(arrays) == len(ref.graph.initializer)
        for t in ref.graph.initializer:
            want = onnx.numpy_helper.to_array(t)
            assert arrays[t.name].dtype == want.dtype and arrays[t.name].tobytes() == want.tobytes(), t.name
        assert sorted(n.SerializeToString() for n in got_proto.graph.node) == sorted(
            n.SerializeToString() for n in ref.graph.node
        )


def test_int8_of_a_relex_export_measures_entities_and_keeps_relations(
    span_relex_minilm: Checkpoint, tmp_path: Path
) -> None:
    m = lower_precision(span_relex_minilm.export_dir, tmp_path / "int8", "int8", log=lambda _m: None)
    assert m.precision == "int8" and m.relations_layer == "dot"
    assert m.agreement["f1"] > 0.3 and m.agreement["fp32_entities"] > 0
    entities, relations = GLiNER.from_pretrained(tmp_path / "int8").inference(
        RELEX_TEXTS, RELEX_LABELS, relations=RELATIONS, threshold=0.5
    )
    assert len(entities) == len(relations) == len(RELEX_TEXTS) and sum(map(len, entities)) > 0


def test_lower_precision_refuses_bad_input(int8_export: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        lower_precision(int8_export, tmp_path, "int4")
    with pytest.raises(ValueError, match="holds int8 graphs, not fp32"):
        lower_precision(int8_export, tmp_path, "fp16")
    with pytest.raises(ValueError, match="precision must be one of fp32, int8, fp16"):
        export_model(object(), tmp_path / "x", precision="bf16")
    raw = json.loads((int8_export / MANIFEST_NAME).read_text())
    assert raw["precision"] == "int8"


def test_int8_recipe_is_checked_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int8_recipe must be one of default, fast, attention"):
        export_model(object(), tmp_path / "x", precision="int8", int8_recipe="tiny")
    assert not (tmp_path / "x").exists()
    proc = _export_cli("--arch", "uniencoder_span", "--output", str(tmp_path / "o"), "--int8-recipe", "fast")
    assert proc.returncode == 2 and "--int8-recipe needs --quantize int8" in proc.stderr
    assert NAMED_RECIPES["default"] is DEFAULT_RECIPE and NAMED_RECIPES["fast"].first_token == "none"


def _export_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gliner_onnx.export.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_refuses_quantize_with_dtype(tmp_path: Path) -> None:
    proc = _export_cli(
        "--arch", "uniencoder_span", "--output", str(tmp_path / "o"), "--quantize", "int8", "--dtype", "fp16"
    )
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


def test_int8_recipes_that_calibrate_record_their_inputs_on_synthetic_sentences(
    uni_deberta: Checkpoint, tmp_path: Path
) -> None:
    feeds = calibration_feeds(uni_deberta.export_dir, texts=4)
    assert set(feeds) == {"text_encoder", "scorer"} and len(feeds["text_encoder"]) == 4
    assert all(f["input_ids"].shape[0] == 1 for f in feeds["text_encoder"])
    recipe = Int8Recipe("outliers apart", scope="all", outliers=3.0)
    m = lower_precision(uni_deberta.export_dir, tmp_path, "int8", log=lambda _m: None, recipe=recipe)
    assert m.quantization["name"] == "outliers apart" and m.quantization["outliers"] == 3.0
    assert "outlier_channels" in m.graphs["text_encoder"].optimization
    assert 0.0 <= m.agreement["f1"] <= 1.0 and m.agreement["fp32_entities"] > 0
