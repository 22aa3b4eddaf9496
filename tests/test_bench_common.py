"""benchmarks/bench_common.py: the one percentile, F1, peak-RSS, word-regex and git-state
definition every benchmark uses."""

from __future__ import annotations

import importlib.util
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_common():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "benchmarks" / "bench_common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_common"] = module
    spec.loader.exec_module(module)
    return module


bc = _load_common()


@pytest.mark.parametrize("n", [1, 2, 5, 10, 31, 100])
def test_percentile_is_numpys_linear_and_p50_is_the_median(n: int) -> None:
    values = list(np.random.default_rng(n).exponential(30.0, size=n))
    for q in (0, 10, 50, 90, 99, 100):
        assert bc.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
    assert bc.percentile(values, 50) == pytest.approx(statistics.median(values), rel=1e-12)
    assert bc.percentile(values, 0) == min(values) and bc.percentile(values, 100) == max(values)


def test_percentile_on_1_to_100() -> None:
    values = [float(i) for i in range(100, 0, -1)]  # unsorted input
    assert bc.percentile(values, 90) == pytest.approx(90.1)
    assert bc.percentile(values, 50) == pytest.approx(50.5)


def test_percentile_refuses_no_values_and_bad_q() -> None:
    with pytest.raises(ValueError, match="no values"):
        bc.percentile([], 50)
    for q in (-1, 101, float("nan")):
        with pytest.raises(ValueError, match="q must be"):
            bc.percentile([1.0], q)


def test_summarize_reports_milliseconds() -> None:
    s = bc.summarize([0.001 * i for i in range(1, 11)])  # 1..10 ms
    assert s["p50_ms"] == pytest.approx(5.5)
    assert s["p90_ms"] == pytest.approx(9.1)
    assert s["min_ms"] == pytest.approx(1.0)
    assert s["runs"] == 10


def _e(start: int, end: int, label: str) -> dict[str, object]:
    return {"start": start, "end": end, "label": label, "text": "x", "score": 0.9}


def test_entity_f1_counts_exact_matches_per_text() -> None:
    ref = [[_e(0, 5, "person"), _e(10, 15, "location")], [_e(0, 3, "date")], []]
    # text 0: one hit, one wrong label; text 1: the same span but in text 2 does not count
    pred = [[_e(0, 5, "person"), _e(10, 15, "person")], [], [_e(0, 3, "date")]]
    r = bc.entity_f1(ref, pred)
    assert (r["precision"], r["recall"]) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert r["f1"] == pytest.approx(1 / 3)
    assert (r["entities"], r["reference_entities"], r["identical_texts"], r["texts"]) == (3, 3, 0, 3)


def test_entity_f1_edge_cases() -> None:
    assert bc.entity_f1([[], []], [[], []])["f1"] == 1.0  # nothing expected, nothing found
    missed = bc.entity_f1([[_e(0, 1, "a")]], [[]])
    assert (missed["precision"], missed["recall"], missed["f1"]) == (0.0, 0.0, 0.0)
    spurious = bc.entity_f1([[]], [[_e(0, 1, "a")]])
    assert (spurious["precision"], spurious["recall"], spurious["f1"]) == (0.0, 0.0, 0.0)
    same = bc.entity_f1([[_e(0, 1, "a")]], [[_e(0, 1, "a")]])
    assert same["f1"] == 1.0 and same["identical_texts"] == 1
    with pytest.raises(ValueError, match="2 reference texts but 1"):
        bc.entity_f1([[], []], [[]])


def test_word_regex_is_gliners_splitter() -> None:
    from gliner.data_processing.tokenizer import WhitespaceTokenSplitter

    splitter = WhitespaceTokenSplitter()
    for text in (
        "Jean-Luc Picard's co_pilot, e.g. U.S.A. -- 3.14 $5 #tag",
        "東京証券取引所でトヨタ自動車の株価が3%上昇した。",
        "naïve café ​ x\u0301 👍🏽 __init__ a--b",
    ):
        assert [m.group() for m in bc.WORD_RE.finditer(text)] == [t for t, _s, _e in splitter(text)]


def test_peak_rss_grows_with_an_allocation() -> None:
    # A fresh process (this one's peak may sit far above its current RSS).
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import bench_common as bc; "
        "b = bc.peak_rss_mb(); x = bytearray(b'1') * (96 * 2**20); print(b, bc.peak_rss_mb())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "benchmarks")], capture_output=True, text=True, check=True
    )
    before, after = map(float, out.stdout.split())
    assert 0 < before and after - before >= 90


def test_git_state_names_this_checkout() -> None:
    state = bc.git_state()

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)

    assert state["commit"] == git("rev-parse", "HEAD").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", state["commit"])
    tracked_changes = git("diff", "--quiet", "HEAD", "--", ".", ":(exclude)benchmarks/results").returncode
    if tracked_changes:
        assert state["dirty"] and state["changed"]
    if not state["dirty"]:
        assert tracked_changes == 0 and state["changed"] == []


def test_cpu_flags_match_proc_cpuinfo() -> None:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    found = {f for f in bc.CPU_FLAGS if re.search(rf"\b{f}\b", text)}
    assert set(bc.cpu_flags()) == found
    info = bc.machine_info()
    assert info["cpu_flags"] == bc.cpu_flags() and info["cpus"] >= 1


def test_shuffled_rounds_times_every_call_in_each_round_in_a_varying_order() -> None:
    import random

    seen: list[str] = []
    calls = {name: (lambda name=name: seen.append(name)) for name in ("a", "b", "c")}
    times = bc.shuffled_rounds(calls, rounds=6, runs=2, rng=random.Random(3))
    assert set(times) == {"a", "b", "c"}
    assert all(
        len(rounds) == 6 and all(len(r) == 2 and min(r) >= 0 for r in rounds) for rounds in times.values()
    )
    per_round = [seen[i : i + 6] for i in range(0, len(seen), 6)]
    assert all(sorted(r) == ["a", "a", "b", "b", "c", "c"] and r[0] == r[1] for r in per_round)
    assert len({tuple(r[::2]) for r in per_round}) > 1  # the order changes between rounds
