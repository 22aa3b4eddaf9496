"""`gliner-onnx bench`: its inputs, its figures' structure, its table and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gliner_onnx import GLiNER
from gliner_onnx.bench import _percentiles, format_table, run_bench, synthetic_labels, synthetic_text

from .conftest import Checkpoint


def test_synthetic_inputs_are_fixed_and_sized() -> None:
    assert synthetic_text(3) == "On 3 March"
    assert len(synthetic_text(500).split()) == 500 and synthetic_text(500) == synthetic_text(500)
    labels = synthetic_labels(80)
    assert len(labels) == len(set(labels)) == 80 and labels[:2] == ["person", "organization"]
    with pytest.raises(ValueError, match="num_words must be at least 1"):
        synthetic_text(0)
    with pytest.raises(ValueError, match="count must be at least 1"):
        synthetic_labels(0)


def test_percentiles_pick_order_statistics() -> None:
    p = _percentiles([0.001 * i for i in range(1, 101)])  # 1..100 ms
    assert p["p50_ms"] == pytest.approx(51.0) and p["p90_ms"] == pytest.approx(90.0)
    assert p["p99_ms"] == pytest.approx(99.0) and p["mean_ms"] == pytest.approx(50.5)


def test_run_bench_reports_every_point(bi_minilm_bert: Checkpoint) -> None:
    model = GLiNER.from_pretrained(bi_minilm_bert.export_dir)
    r = run_bench(model, words=(5, 30), label_counts=(2, 7), batch_sizes=(1, 4), runs=2, warmup=1)
    assert [x["words"] for x in r["latency_by_words"]] == [5, 30]
    assert [x["labels"] for x in r["latency_by_labels"]] == [2, 7]
    assert [x["batch_size"] for x in r["throughput"]] == [1, 4]
    for row in r["latency_by_words"] + r["latency_by_labels"]:
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert all(x["texts_per_s"] > 0 for x in r["throughput"])
    assert r["providers"] == ["CPUExecutionProvider"] and r["arch"] == "biencoder_span"
    assert r["spinning"] is False and "spinning" not in format_table(r)
    assert "cached" in r["note"] and r["machine"]["onnxruntime"]
    table = format_table(r)
    assert "biencoder_span (fp32, factorized span head)" in table and "batch 4" in table
    with pytest.raises(ValueError, match="batch_sizes must be a non-empty list of positive ints"):
        run_bench(model, batch_sizes=(0,))
    with pytest.raises(ValueError, match="runs must be >= 1"):
        run_bench(model, runs=0)


def test_bench_cli_writes_json(uni_deberta: Checkpoint, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "gliner_onnx.cli", "bench", str(uni_deberta.export_dir), "--words", "4",
           "--labels", "3", "--batch-sizes", "2", "--runs", "2", "--json", str(out),
           "--spinning"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "4 words, 5 labels" in proc.stdout and "texts/s" in proc.stdout
    data = json.loads(out.read_text())
    assert data["arch"] == "uniencoder_span" and data["throughput"][0]["batch_size"] == 2
    # read back from ONNX Runtime's session options, not from the flag
    assert data["spinning"] is True and proc.stdout.splitlines()[0].endswith(", spinning threads")
    bad = subprocess.run([*cmd[:5], "--words", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "expected positive integers" in bad.stderr


def test_token_model_header_and_shared_point_once(bi_token_deberta_bert: Checkpoint) -> None:
    # Regression: the header said "generic span head" for a token model, and the point both
    # sweeps share (base words, base labels) was measured twice and printed as two rows.
    model = GLiNER.from_pretrained(bi_token_deberta_bert.export_dir)
    r = run_bench(model, words=(5, 8), label_counts=(2, 5), batch_sizes=(1,), runs=2, warmup=0, base_words=5)
    assert r["head"] == "factorized token scorer"
    assert r["latency_by_words"][0] == r["latency_by_labels"][1]  # one measurement, in both sweeps
    table = format_table(r)
    assert table.splitlines()[0].startswith("biencoder_token (fp32, factorized token scorer) on ")
    assert "span head" not in table
    rows = [" ".join(ln.split()[:4]) for ln in table.splitlines() if ln.startswith("  ") and "words," in ln]
    assert rows == ["5 words, 5 labels", "8 words, 5 labels", "5 words, 2 labels"]
