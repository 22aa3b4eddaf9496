"""gliner-export: architecture checks, clear failures, atomic output, the demo path."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gliner_onnx import GLiNER
from gliner_onnx.archs import check_arch
from gliner_onnx.errors import ExportError, ParityError, UnsupportedArchError
from gliner_onnx.export import detect_arch, export_model
from gliner_onnx.export.cli import main as export_main
from gliner_onnx.manifest import MANIFEST_NAME

from .conftest import Checkpoint


@pytest.mark.parametrize(
    ("config", "arch"),
    [
        ({"span_mode": "markerV0"}, "uniencoder_span"),
        ({"span_mode": "token_level"}, "uniencoder_token"),
        ({"span_mode": "markerV0", "labels_encoder": "bge"}, "biencoder_span"),
        ({"span_mode": "token_level", "labels_encoder": "bge"}, "biencoder_token"),
        ({"labels_decoder": "gpt2", "labels_encoder": "bge"}, "uniencoder_span_decoder"),
        ({"span_mode": "token_level", "labels_decoder": "gpt2"}, "uniencoder_token_decoder"),
        ({"relations_layer": "dot", "labels_decoder": "gpt2"}, "uniencoder_span_relex"),
        ({"span_mode": "token_level", "relations_layer": "dot"}, "uniencoder_token_relex"),
        # model_type is never trusted: saved configs often carry null or a wrong value
        ({"model_type": "gliner_uni_encoder_token", "span_mode": "markerV0"}, "uniencoder_span"),
    ],
)
def test_detect_arch_follows_gliner_precedence(config: dict, arch: str) -> None:
    assert detect_arch(config) == arch


def test_unknown_arch_names_the_valid_ones() -> None:
    with pytest.raises(UnsupportedArchError, match="valid names: uniencoder_span"):
        check_arch("span")


def test_cli_missing_model_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-checkpoint"
    assert export_main(["--model", str(missing), "--output", str(tmp_path / "o")]) == 1
    assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_arch_mismatch_names_both(uni_deberta: Checkpoint, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"--arch biencoder_span .* architecture is uniencoder_span"):
        export_model(uni_deberta.torch_model, tmp_path / "o", arch="biencoder_span", log=lambda _m: None)
    assert not (tmp_path / "o").exists()


def test_missing_model_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = export_main(["--model", str(tmp_path / "missing"), "--output", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gliner-export: error:") and "missing" in err[-1]
    assert not (tmp_path / "o").exists()


def test_parity_failure_leaves_nothing_loadable(uni_deberta: Checkpoint, tmp_path: Path) -> None:
    out = tmp_path / "o"
    with pytest.raises(ParityError, match="max abs diff"):
        export_model(uni_deberta.model_dir, out, atol=1e-12, log=lambda _m: None)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary directory left behind


def test_refuses_non_empty_output_without_overwrite(uni_deberta: Checkpoint, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(ExportError, match="not empty"):
        export_model(uni_deberta.model_dir, out, log=lambda _m: None)
    assert (out / "keep.txt").read_text() == "user data"


def test_overwrite_replaces_an_export(uni_deberta: Checkpoint, tmp_path: Path) -> None:
    out = tmp_path / "o"
    export_model(uni_deberta.model_dir, out, log=lambda _m: None)
    (out / "stale.txt").write_text("old")
    export_model(uni_deberta.model_dir, out, overwrite=True, log=lambda _m: None)
    assert (out / MANIFEST_NAME).is_file() and not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_unsupported_splitter_fails_at_export(uni_deberta: Checkpoint, tmp_path: Path) -> None:
    model = uni_deberta.torch_model
    old = model.config.words_splitter_type
    model.config.words_splitter_type = "stanza"  # torch (tests/test_splitters.py: the others)
    try:
        with pytest.raises(ExportError, match="words splitter 'stanza' is not supported"):
            export_model(model, tmp_path / "o", log=lambda _m: None)
    finally:
        model.config.words_splitter_type = old


def test_export_writes_separate_graphs_and_reports_diffs(bi_minilm_bert: Checkpoint) -> None:
    files = sorted(
        p.relative_to(bi_minilm_bert.export_dir).as_posix() for p in bi_minilm_bert.export_dir.rglob("*")
    )
    assert files == [
        "README.md",  # the model card (export/model_card.py)
        MANIFEST_NAME,
        "label_encoder.onnx",
        "label_encoder.onnx.data",
        "label_projector.onnx",  # the factorized span head's last layer, on the labels' side
        "label_projector.onnx.data",
        "labels",
        "labels/tokenizer.json",
        "scorer.onnx",  # no weights: gathers, a ReLU and the span x label product
        "text_encoder.onnx",
        "text_encoder.onnx.data",
        "tokenizer.json",
    ]
    manifest = json.loads((bi_minilm_bert.export_dir / MANIFEST_NAME).read_text())
    for graph in manifest["graphs"].values():
        assert graph["max_abs_diff"] and max(graph["max_abs_diff"].values()) < 1e-3


def test_demo_export_and_predict_cli(tmp_path: Path) -> None:
    """The README's main example, as a user runs it."""
    out = tmp_path / "demo"
    bindir = Path(sys.executable).parent
    proc = subprocess.run(
        [str(bindir / "gliner-export"), "--arch", "biencoder_token", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "TRAINED ON SYNTHETIC SENTENCES" in proc.stderr and "not a released GLiNER" in proc.stderr
    assert "max abs diff" in proc.stdout
    # the known-harmless tracing warnings are silenced (export/quiet.py), parity is stated
    for alarming in ("TracerWarning", "incorrect results", "batch_size other than 1", "prim::PackPadded"):
        assert alarming not in proc.stderr, alarming
    assert "parity checked against gliner torch: end-to-end max |diff|" in proc.stdout
    assert "on 3 cases" in proc.stdout
    pred = subprocess.run(
        [
            str(bindir / "gliner-onnx"),
            "predict",
            str(out),
            "--labels",
            "person,location",
            "Angela Merkel visited Paris.",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pred.returncode == 0, pred.stderr
    record = json.loads(pred.stdout)
    text = "Angela Merkel visited Paris."
    assert record["text"] == text
    found = {(e["text"], e["label"]) for e in record["entities"]}
    assert found == {("Angela Merkel", "person"), ("Paris", "location")}  # the trained demo heads
    for e in record["entities"]:
        assert text[e["start"] : e["end"]] == e["text"] and 0.5 < e["score"] <= 1.0
    # predict and info say on stderr that this is the demo, not a released model
    assert "is the offline DEMO export (demo:biencoder_token" in pred.stderr
    info = subprocess.run([str(bindir / "gliner-onnx"), "info", str(out)], capture_output=True, text=True)
    assert info.returncode == 0 and "DEMO export" in info.stderr
    assert "source: demo:biencoder_token" in info.stdout
    assert GLiNER.from_pretrained(out).arch == "biencoder_token"


def test_trained_export_is_not_called_a_demo(bi_minilm_bert: Checkpoint) -> None:
    info = subprocess.run(
        [sys.executable, "-m", "gliner_onnx.cli", "info", str(bi_minilm_bert.export_dir)],
        capture_output=True,
        text=True,
    )
    assert info.returncode == 0 and "arch: biencoder_span" in info.stdout
    assert "DEMO" not in info.stderr


def test_checkpoint_dir_is_checked_before_loading_weights(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    config = {"span_mode": "token_level", "labels_decoder": "gpt2", "model_type": None}
    (ckpt / "gliner_config.json").write_text(json.dumps(config))
    with pytest.raises(
        ExportError, match=r"--arch uniencoder_span does not match .* uniencoder_token_decoder"
    ):
        export_model(ckpt, tmp_path / "o", arch="uniencoder_span", log=lambda _m: None)
    (ckpt / "gliner_config.json").unlink()
    with pytest.raises(ExportError, match=r"gliner_config\.json is missing"):
        export_model(ckpt, tmp_path / "o", log=lambda _m: None)
    assert not (tmp_path / "o").exists()


def test_untraceable_backbone_fails_with_the_reason(
    uni_deberta: Checkpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("Exporting the operator 'aten::fancy_attention' to ONNX is not supported")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    code = export_main(["--model", str(uni_deberta.model_dir), "--output", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err.startswith("gliner-export: error: tracing graph 'text_encoder' failed") and "aten::fancy" in err
    )
    assert list(tmp_path.iterdir()) == []


def test_traces_with_eager_attention_then_restores_the_model(uni_minilm: Checkpoint, tmp_path: Path) -> None:
    def attention(model) -> set[str]:  # type: ignore[no-untyped-def]
        from transformers import PreTrainedModel

        return {m.config._attn_implementation for m in model.modules() if isinstance(m, PreTrainedModel)}

    model = uni_minilm.torch_model
    assert attention(model.model) == {"sdpa"}
    logs: list[str] = []
    export_model(model, tmp_path / "o", log=logs.append)
    assert "tracing with eager attention (BertModel)" in logs
    assert attention(model.model) == {"sdpa"}  # the caller's model is left as it was


def test_export_files_follow_the_umask(bi_minilm_bert: Checkpoint, tmp_path: Path) -> None:
    """Not the 0700 / 0600 of a temporary directory: serving as another user must work."""
    old = os.umask(0o022)
    try:  # a bi-encoder: its label tokenizer is in a subdirectory
        export_model(bi_minilm_bert.model_dir, tmp_path / "o", log=lambda _m: None)
    finally:
        os.umask(old)
    out = tmp_path / "o"
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    paths = list(out.rglob("*"))
    assert any(p.name.endswith(".onnx.data") for p in paths) and any(p.is_dir() for p in paths)
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == (0o755 if p.is_dir() else 0o644), p


def test_follow_umask_takes_the_process_umask(tmp_path: Path) -> None:
    import tempfile

    from gliner_onnx.export.exporter import _follow_umask

    old = os.umask(0o027)
    try:
        tmp = Path(tempfile.mkdtemp(dir=tmp_path))  # 0700
        (tmp / "sub").mkdir(mode=0o700)
        (tmp / "sub" / "w.onnx.data").write_bytes(b"x")
        (tmp / "sub" / "w.onnx.data").chmod(0o600)
        _follow_umask(tmp)
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in (tmp, tmp / "sub", tmp / "sub" / "w.onnx.data")] == [
        0o750,
        0o750,
        0o640,
    ]
    assert sorted(p.name for p in tmp.iterdir()) == ["sub"]  # the probe is gone


def test_quiet_tracing_drops_only_the_known_warnings(capfd: pytest.CaptureFixture[str]) -> None:
    import warnings

    from torch.jit import TracerWarning

    from gliner_onnx.export.quiet import quiet_tracing

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_tracing():
            warnings.warn("Exporting aten::index operator of advanced indexing", UserWarning, stacklevel=1)
            # the message of a harmless one, but from another module: kept
            warnings.warn(
                "Converting a tensor to a Python boolean might cause the trace to be incorrect",
                TracerWarning,
                stacklevel=1,
            )
            os.write(2, b"[W] The shape inference of prim::PackPadded type is missing, so ...\n")
            os.write(2, b"[W] something else from C++\n")
    assert [type(w.message) for w in seen] == [TracerWarning]
    err = capfd.readouterr().err
    assert "something else from C++" in err and "PackPadded" not in err
