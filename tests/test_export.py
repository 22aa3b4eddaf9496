"""gliner-export: architecture checks, clear failures, atomic output, the demo path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gliner_onnx import GLiNER
from gliner_onnx.archs import ARCH_NAMES, SUPPORTED_ARCHS, check_arch
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


def test_unknown_and_unsupported_arch_names() -> None:
    with pytest.raises(UnsupportedArchError, match="valid names: uniencoder_span"):
        check_arch("span")
    assert sorted(SUPPORTED_ARCHS) == sorted(ARCH_NAMES)  # every variant of gliner 0.2.29's detection


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
        [str(bindir / "gliner-export"), "--arch", "uniencoder_span", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "MEANINGLESS" in proc.stderr and "--model" in proc.stderr
    assert "max abs diff" in proc.stdout
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
    assert record["text"] == "Angela Merkel visited Paris."
    assert isinstance(record["entities"], list)
    assert GLiNER.from_pretrained(out).arch == "uniencoder_span"


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
