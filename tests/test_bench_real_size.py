"""benchmarks/bench_real_size.py's parts (the tokenizer, the shapes' head settings) and the ORT
format's refusal of graphs past 2 GiB (what the benchmark's large-250k shape exports)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gliner_onnx.errors import ExportError
from gliner_onnx.export import export_model
from gliner_onnx.export.ort import model_format

from .conftest import Checkpoint

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from realsize.shapes import SHAPES  # noqa: E402
from realsize.tokenizer import MASK, SPECIALS, deberta_v3_tokenizer, minilm_dir, unigram_pieces  # noqa: E402


def test_merge_carries_what_a_rerun_skips() -> None:
    """`--skip-exports --merge` keeps the shape's export figures, `--skip-timing --merge` its
    timings, each marked with the run it comes from; what the rerun measured is kept."""
    from bench_real_size import carried_exports, carried_timings

    previous = {
        "export": {"fp32": 1},
        "gliner_export": {"wall_s": 2},
        "agreement": {"texts": 9},
        "latency": {"batch1": 3},
        "load": {"old": 4},
        "measured": {"git": "old"},
    }
    section: dict[str, object] = {"load": {"new": 5}, "measured": {"git": "new"}}
    carried_timings(section, previous)
    assert section["latency"] == {"batch1": 3} and section["agreement"] == {"texts": 9}
    assert section["timing_measured"] == {"git": "old"} and "export" not in section
    assert section["load"] == {"new": 5} and section["measured"] == {"git": "new"}
    rerun: dict[str, object] = {"export": {"fp32": 6}, "latency": {"batch1": 7}}
    carried_exports(rerun, previous)
    carried_timings(rerun, previous)
    assert rerun["export"] == {"fp32": 6} and rerun["latency"] == {"batch1": 7}
    assert rerun["gliner_export"] == {"wall_s": 2} and rerun["agreement"] == {"texts": 9}
    carried_timings(section, None)  # a shape new to the file: nothing to carry


def test_unigram_pieces_pad_minilm_vocabulary_to_the_size() -> None:
    pieces = unigram_pieces(40_000)
    assert len(pieces) == 40_000 == len({p for p, _ in pieces})
    assert [p for p, _ in pieces[:4]] == list(SPECIALS) and pieces[-1][0] == MASK
    assert ("\u2581paris", pytest.approx(pieces[[p for p, _ in pieces].index("\u2581paris")][1])) in pieces
    with pytest.raises(ValueError, match="below the"):
        unigram_pieces(1000)


def test_tokenizer_segments_like_wordpiece() -> None:
    from bench_common import TEXT, WORD_RE  # type: ignore[import-not-found]
    from transformers import AutoTokenizer

    ours = deberta_v3_tokenizer(31_000)
    minilm = AutoTokenizer.from_pretrained(str(minilm_dir()))
    words = WORD_RE.findall(TEXT)
    got = len(ours(words, is_split_into_words=True)["input_ids"])
    want = len(minilm(words, is_split_into_words=True)["input_ids"])
    # WordPiece strips accents ("Élysée" -> 2 pieces); the Unigram model keeps them (6 pieces)
    assert want <= got <= want + 6, (got, want)
    assert ours.tokenize("Emmanuel Macron")[0] == "\u2581emmanuel"


@pytest.mark.parametrize(
    "shape", [s for s in SHAPES.values() if (ROOT / "tests" / "release_configs").is_dir()]
)
def test_shape_heads_are_their_releases(shape) -> None:
    path = ROOT / "tests" / "release_configs" / (shape.head.release.replace("/", "__") + ".json")
    if not path.is_file():
        pytest.skip(f"no release config for {shape.head.release}")
    cfg = json.loads(path.read_text())["gliner_config"]
    head = shape.head
    assert (head.span_mode, head.max_width, head.hidden_size, head.max_len) == (
        cfg["span_mode"], cfg["max_width"], cfg["hidden_size"], cfg["max_len"]
    )  # fmt: skip


def test_ort_format_refuses_backbones_past_its_limit(
    uni_deberta: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before tracing: the backbone's weights alone cannot fit (regression: a 2.2 GB fp32 export
    converted for minutes, then failed inside ONNX Runtime)."""
    model = uni_deberta.torch_model
    params = sum(p.numel() for p in model.model.token_rep_layer.parameters())
    monkeypatch.setattr(model_format, "ORT_FORMAT_LIMIT", params * 3)  # fp32 past it, int8 under
    out = tmp_path / "ort"
    with pytest.raises(ExportError, match=r"--format ort cannot hold .* under 2 GiB.*--quantize int8"):
        export_model(model, out, model_format="ort", log=lambda _m: None)
    assert not out.exists() and not list(tmp_path.iterdir())
    model_format.check_ort_fits(model, "int8", "ort")  # fits
    model_format.check_ort_fits(model, "fp32", "onnx")  # ONNX: no limit


def test_ort_format_checks_every_graph_before_converting(
    uni_deberta: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_format, "ORT_FORMAT_LIMIT", 10_000)
    logged: list[str] = []
    with pytest.raises(ExportError, match=r"cannot hold graph text_encoder.onnx"):
        model_format.to_ort_format(uni_deberta.export_dir, tmp_path, logged.append)
    assert not any("converting" in m for m in logged)
