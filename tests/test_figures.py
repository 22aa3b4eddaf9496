"""The docs' benchmark figures agree with their results files, and benchmarks/results/INDEX.md is
the one benchmarks/figures.py writes (the convention: benchmarks/figures.py's docstring)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("bench_figures", ROOT / "benchmarks" / "figures.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_figures"] = module
    spec.loader.exec_module(module)
    return module


fig = _load()


def test_every_marked_figure_agrees_with_its_results_file() -> None:
    assert fig.check(ROOT) == []


def test_the_front_page_and_the_docs_mark_their_figures() -> None:
    pages = {f.page for f in fig.all_figures(ROOT)}
    assert {"README.md", "docs/benchmarks.md"} <= pages, pages


def test_the_index_is_current() -> None:
    written = (ROOT / "benchmarks" / "results" / "INDEX.md").read_text(encoding="utf-8")
    assert written == fig.make_index(ROOT), "run: python benchmarks/figures.py index"


def test_every_results_file_carries_a_header() -> None:
    index = fig.make_index(ROOT)
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        row = next(line for line in index.splitlines() if line.startswith(f"| `{path.name}`"))
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1] != "`?`" and not cells[3].startswith("?"), row  # script, commit
        assert "?" not in cells[5], row  # machine


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("README.md", "CONTRIBUTING.md"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, root / name)
    shutil.copytree(ROOT / "docs", root / "docs", ignore=shutil.ignore_patterns("*.png"))
    shutil.copytree(ROOT / "benchmarks" / "results", root / "benchmarks" / "results")
    shutil.copy2(ROOT / "benchmarks" / "README.md", root / "benchmarks" / "README.md")
    for name in {f.file for f in fig.all_figures(ROOT) if f.file.startswith("/")}:  # from the root
        (root / name.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name.lstrip("/"), root / name.lstrip("/"))
    return root


@pytest.mark.parametrize("page", ["README.md", "docs/benchmarks.md"])
def test_a_changed_number_fails_the_check(tmp_path: Path, page: str) -> None:
    root = _copy(tmp_path)
    path = root / page
    text = path.read_text(encoding="utf-8")
    m = fig.MARKER.search(text)
    assert m, f"no marked figure in {page}"
    num = m["num"]
    changed = num[:-1] + str((int(num[-1]) + 3) % 10)  # the last digit moved by 3
    path.write_text(text[: m.start("num")] + changed + text[m.end("num") :], encoding="utf-8")
    problems = fig.check(root)
    assert len(problems) == 1 and f"the text says {changed}" in problems[0], problems


def test_a_wrong_field_or_file_fails_the_check(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    spec = fig.ANY_MARKER.search(text)["spec"]
    readme.write_text(text.replace(spec, spec + "x", 1), encoding="utf-8")
    assert any("no field" in p for p in fig.check(root))
    readme.write_text(text.replace(spec, "nosuch.json: a.b", 1), encoding="utf-8")
    assert any("nosuch.json" in p for p in fig.check(root))


def test_markers_read_as_documented() -> None:
    line = "a **12.2**<!-- fig s.json: a.b c --> b | 1,044<!-- fig s.json: x --> | 79%"
    line += "<!-- fig s.json: y * 100 -->"
    figs = fig.figures(line, "p")
    assert [(f.written, f.spec) for f in figs] == [
        ("12.2", "s.json: a.b c"),
        ("1,044", "s.json: x"),
        ("79", "s.json: y * 100"),
    ]
    assert fig.figures("| <!-- fig s.json: x --> |", "p")[0].written == ""
    assert fig.agrees("12.2", 12.156) and not fig.agrees("12.2", 12.26) and fig.agrees("1,044", 1043.6)
    assert fig._keys("results.batch1.ours fp32.[a.b].0") == ["results", "batch1", "ours fp32", "a.b", "0"]
