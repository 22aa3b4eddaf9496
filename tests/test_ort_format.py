"""ORT format exports (`gliner-export --format ort`): ONNX Runtime's own format and the
operator config of a reduced build, loaded by the runtime like the ONNX graphs."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnxruntime.tools.reduced_build_config_parser import parse_config

from gliner_onnx import GLiNER, ManifestError
from gliner_onnx.errors import ExportError
from gliner_onnx.export import export_model
from gliner_onnx.export.ort.model_format import OPERATOR_CONFIG, compare_answers
from gliner_onnx.manifest import MANIFEST_NAME, load_manifest
from gliner_onnx.runtime import SessionOptions
from gliner_onnx.runtime.session import GraphSession

from .conftest import LABELS, LOGIT_STD, TEXTS, Checkpoint


@dataclass
class Pair:
    """The ONNX and the ORT format export of one checkpoint at one precision."""

    onnx_dir: Path
    ort_dir: Path
    report: str = ""  # gliner-export's stdout, where the ORT export went through the CLI


def _quiet(_m: str) -> None:
    pass


@pytest.fixture(scope="module")
def span_fp32(uni_deberta: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """Through the CLI: `gliner-export --model DIR --output OUT --format ort`."""
    from gliner_onnx.export.cli import main

    out = tmp_path_factory.mktemp("ort") / "span-fp32"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        assert main(["--model", str(uni_deberta.model_dir), "--output", str(out), "--format", "ort"]) == 0
    return Pair(uni_deberta.export_dir, out, printed.getvalue())


def _pair(ckpt: Checkpoint, root: Path, precision: str) -> Pair:
    onnx_dir = ckpt.export_dir
    if precision != "fp32":
        onnx_dir = root / f"{ckpt.name}-{precision}-onnx"
        export_model(ckpt.model_dir, onnx_dir, precision=precision, log=_quiet)
    ort_dir = root / f"{ckpt.name}-{precision}-ort"
    export_model(ckpt.model_dir, ort_dir, precision=precision, model_format="ort", log=_quiet)
    return Pair(onnx_dir, ort_dir)


@pytest.fixture(scope="module")
def span_int8(uni_deberta: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return _pair(uni_deberta, tmp_path_factory.mktemp("ort"), "int8")


@pytest.fixture(scope="module")
def span_fp16(uni_deberta: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return _pair(uni_deberta, tmp_path_factory.mktemp("ort"), "fp16")


@pytest.fixture(scope="module")
def token_fp32(bi_token_deberta_bert: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return _pair(bi_token_deberta_bert, tmp_path_factory.mktemp("ort"), "fp32")


@pytest.fixture(scope="module")
def token_int8(bi_token_deberta_bert: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return _pair(bi_token_deberta_bert, tmp_path_factory.mktemp("ort"), "int8")


PAIRS = ["span_fp32", "span_int8", "token_fp32", "token_int8"]


def _ops(proto: onnx.GraphProto) -> set[tuple[str, str]]:
    """(domain, op type) of every node of a graph and of its subgraphs."""
    found = set()
    for node in proto.node:
        found.add((node.domain or "ai.onnx", node.op_type))
        for attr in node.attribute:
            for g in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                found |= _ops(g)
    return found


def _optimized_ops(onnx_file: Path, tmp: Path) -> set[tuple[str, str]]:
    """The ops of `onnx_file` optimized as the conversion does (ONNX Runtime's "all" level but
    the NCHWc layout transformer and the runtime's CPU exclusions), saved as ONNX."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp / f"{onnx_file.stem}.optimized.onnx")
    providers = ["CPUExecutionProvider"]
    disabled = ["NchwcTransformer", "SkipLayerNormFusion"]
    ort.InferenceSession(str(onnx_file), so, providers, disabled_optimizers=disabled)
    return _ops(onnx.load(so.optimized_model_filepath, load_external_data=False).graph)


@pytest.mark.parametrize("pair_name", [*PAIRS, "span_fp16"])
def test_ort_export_answers_like_its_onnx_export(pair_name: str, request: pytest.FixtureRequest) -> None:
    pair: Pair = request.getfixturevalue(pair_name)
    m, ref_m = load_manifest(pair.ort_dir), load_manifest(pair.onnx_dir)
    assert m.model_format == "ort" and ref_m.model_format == "onnx"
    assert m.precision == ref_m.precision == pair_name.split("_")[1]
    assert set(m.graphs) == set(ref_m.graphs)
    for name, g in m.graphs.items():
        assert g.file == f"{name}.ort" and g.model_format == "ort" and g.data_file is None
        assert (pair.ort_dir / g.file).read_bytes()[4:8] == b"ORTM"  # the flatbuffer's identifier
        assert g.inputs == ref_m.graphs[name].inputs and g.outputs == ref_m.graphs[name].outputs
    assert not list(pair.ort_dir.glob("*.onnx*"))
    check = m.ort["check"]
    assert m.ort["optimization_level"] == "all" and check["entities"] > 0
    # the same graph as ONNX Runtime optimizes the ONNX one at load, the same kernels: exact
    assert check["max_abs_score_diff"] == 0.0

    ours = GLiNER.from_pretrained(pair.ort_dir)
    assert all(ours.context.runner.session(n).model_format == "ort" for n in m.graphs)
    ref = GLiNER.from_pretrained(pair.onnx_dir).inference(TEXTS, LABELS, threshold=0.3)
    got = ours.inference(TEXTS, LABELS, threshold=0.3)
    bound = GLiNER.from_pretrained(pair.ort_dir, session_options=SessionOptions(io_binding=True))
    assert sum(map(len, ref)) > 0
    for answers in (got, bound.inference(TEXTS, LABELS, threshold=0.3)):
        assert [[(e["start"], e["end"], e["label"]) for e in ents] for ents in answers] == [
            [(e["start"], e["end"], e["label"]) for e in ents] for ents in ref
        ]
        diffs = [abs(a["score"] - b["score"]) for x, y in zip(answers, ref) for a, b in zip(x, y)]
        assert max(diffs) == 0.0


@pytest.mark.parametrize("pair_name", PAIRS)
def test_operator_config_lists_every_operator_of_the_graphs(
    pair_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    pair: Pair = request.getfixturevalue(pair_name)
    required, _ = parse_config(str(pair.ort_dir / OPERATOR_CONFIG))  # ONNX Runtime's own parser
    listed = {(domain, op) for domain, opsets in required.items() for ops in opsets.values() for op in ops}
    source: set[tuple[str, str]] = set()
    optimized: set[tuple[str, str]] = set()
    for g in load_manifest(pair.onnx_dir).graphs.values():
        source |= _ops(onnx.load(str(pair.onnx_dir / g.file), load_external_data=False).graph)
        optimized |= _optimized_ops(pair.onnx_dir / g.file, tmp_path)
    # exactly the operators of the converted graphs, of every graph
    assert listed == optimized
    # standard operators and ONNX Runtime's contrib ones only; what is not in the ONNX graphs
    # is a fusion (contrib) or basic's MatMul + Add = Gemm
    assert {d for d, _ in listed} <= {"ai.onnx", "com.microsoft"}
    assert {op for d, op in listed - source if d == "ai.onnx"} <= {"Gemm"}
    assert ("ai.onnx", "MatMul") in listed and ("ai.onnx", "Gather") in listed
    if "int8" in pair_name:
        assert {op for _d, op in listed} & {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
    assert load_manifest(pair.ort_dir).ort["operators"] == len(listed)


def test_cli_report_and_info_show_the_format(span_fp32: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    from gliner_onnx.cli import main

    assert "ORT format graphs" in span_fp32.report
    line = (
        "ORT format (all optimizations without NchwcTransformer, SkipLayerNormFusion) vs ONNX: "
        "same answers on 8 texts"
    )
    assert line in span_fp32.report
    assert main(["info", str(span_fp32.ort_dir)]) == 0
    out = capsys.readouterr().out
    assert "model format: ort (all optimizations; reduced build: required_operators.config)" in out
    assert "graph text_encoder: text_encoder.ort" in out
    assert main(["info", str(span_fp32.onnx_dir)]) == 0
    assert "model format: onnx\n" in capsys.readouterr().out
    card = (span_fp32.ort_dir / "README.md").read_text()
    assert "(ORT format, fp32)" in card and "required_operators.config" in card


def test_decoder_ort_export_is_checked_on_greedy_generation(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Regression: the label decoder samples by default, so two runs of the same ONNX export
    generated different labels and the check refused every decoder export."""
    from gliner_onnx.export.demo.backbones import build_gliner, make_tiny_gpt2

    from .backbones import make_tiny_deberta_v3

    root = tmp_path_factory.mktemp("ort-decoder")
    model = build_gliner(
        make_tiny_deberta_v3(root / "deberta"),
        seed=7,
        max_width=8,
        hidden_size=48,
        logit_scale=LOGIT_STD,
        labels_decoder=str(make_tiny_gpt2(root / "gpt2", hidden_size=48, seed=1)),
        decoder_mode="prompt",
    )
    export_model(model, root / "onnx", log=_quiet)
    export_model(model, root / "ort", model_format="ort", log=_quiet)
    m = load_manifest(root / "ort")
    assert m.model_format == "ort" and {"decoder_prefix", "decoder_step"} <= set(m.graphs)
    assert m.ort["check"]["max_abs_score_diff"] == 0.0 and m.ort["check"]["entities"] > 0
    kw = {"threshold": 0.3, "do_sample": False}
    ref = GLiNER.from_pretrained(root / "onnx").inference(TEXTS, LABELS, **kw)
    got = GLiNER.from_pretrained(root / "ort").inference(TEXTS, LABELS, **kw)
    # prompt mode: the entities' labels are the decoder's generations
    assert got == ref and {e["label"] for ents in got for e in ents} - set(LABELS)


def test_check_fails_when_the_answers_differ(span_fp32: Pair, span_int8: Pair) -> None:
    with pytest.raises(ExportError, match="answer differently"):
        compare_answers(span_int8.onnx_dir, span_fp32.ort_dir)


def test_manifest_without_the_field_still_loads(uni_deberta: Checkpoint, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(uni_deberta.export_dir, old)
    path = old / MANIFEST_NAME
    data = json.loads(path.read_text())
    # as written before ORT format exports
    del data["model_format"], data["ort"]
    for g in data["graphs"].values():
        del g["model_format"]
    path.write_text(json.dumps(data))
    m = load_manifest(old)
    assert m.model_format == "onnx" and all(g.model_format == "onnx" for g in m.graphs.values())
    expected = GLiNER.from_pretrained(uni_deberta.export_dir).inference(TEXTS, LABELS, threshold=0.3)
    assert GLiNER.from_pretrained(old).inference(TEXTS, LABELS, threshold=0.3) == expected


def _all_onnx(data: dict) -> None:  # type: ignore[type-arg]
    data["model_format"] = "onnx"
    for g in data["graphs"].values():
        g["model_format"] = "onnx"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(model_format="tflite"), "model_format 'tflite' is not one of"),
        (lambda d: d["graphs"]["scorer"].update(model_format="onnx"), "differs from the export's 'ort'"),
        (_all_onnx, r"file 'text_encoder\.ort' does not match model_format 'onnx'"),
    ],
)
def test_inconsistent_model_format_is_refused(span_fp32: Pair, tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "e"
    shutil.copytree(span_fp32.ort_dir, export)
    path = export / MANIFEST_NAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        load_manifest(export)


def test_altered_ort_graph_fails_verification(span_fp32: Pair, tmp_path: Path) -> None:
    export = tmp_path / "e"
    shutil.copytree(span_fp32.ort_dir, export)
    graph = export / "text_encoder.ort"
    raw = bytearray(graph.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    graph.write_bytes(bytes(raw))
    with pytest.raises(ManifestError, match=r"text_encoder\.ort is damaged or altered"):
        GLiNER.from_pretrained(export)


def test_session_loads_ort_format_by_the_manifest_not_the_file_name(span_fp32: Pair, tmp_path: Path) -> None:
    renamed = tmp_path / "scorer.bin"
    shutil.copyfile(span_fp32.ort_dir / "scorer.ort", renamed)
    g = load_manifest(span_fp32.ort_dir).graphs["scorer"]
    options = SessionOptions()
    session = GraphSession(renamed, "scorer", g.inputs, g.outputs, options, ["CPUExecutionProvider"], "ort")
    assert session.model_format == "ort" and session.output_names == ["scores"]
    with pytest.raises(ManifestError, match="cannot load"):  # read as ONNX: a protobuf error
        GraphSession(renamed, "scorer", g.inputs, g.outputs, options, ["CPUExecutionProvider"])
    # no format given (gliner's one-graph layout has no manifest): the file name decides
    named = GraphSession(span_fp32.ort_dir / g.file, "scorer", None, None, options, ["CPUExecutionProvider"])
    assert named.model_format == "ort" and named.output_names == ["scores"]
