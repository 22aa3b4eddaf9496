"""Figures that check themselves, and the index of the results files.

    python benchmarks/figures.py check     # every marked figure in README.md, CONTRIBUTING.md, docs/
    python benchmarks/figures.py index     # writes benchmarks/results/INDEX.md from the files

**Marking a figure.** A number in the docs that comes from a benchmark is followed, on the same
line, by an HTML comment naming its results file and field (GitHub and every Markdown renderer
hide the comment):

    12.2<!-- fig suite.json: results.batch1.ours fp32.p50_ms --> ms
    0.62<!-- fig suite.json: results.batch1.ours fp32.p50_ms / results.batch1.gliner onnx fp32.p50_ms -->
    79%<!-- fig optimize_uniencoder_span.json: load.others_cpu_share_during * 100 -->

- the file is relative to `benchmarks/results/` (`/export/...` from the repository root);
- the field is a path of keys joined by `.` (keys may hold spaces; a list index is a number;
  write a key that holds a `.` as `[a.b]`);
- optionally ` / FIELD` (a ratio of two fields of the same file), ` / NUMBER` or ` * NUMBER`
  (units: `* 1000` s -> ms, `* 100` a share -> %);
- the figure is the number right before the comment (`**12.2**`, `1,044`, `1.61x`, `79%`: the
  characters between them may be anything but digits, `|` and `<`); it agrees with the field when
  it is the field rounded to the decimals written (`12.2` for 12.156...).

`check` lists every marker whose figure disagrees with its field, whose field is missing or not
a number, and every results file in `benchmarks/results/` named nowhere (by a marker or by its
name); tests/test_figures.py runs it. `index` reads each results file's header (bench_common's
`header()`: command, time, machine, git commit and clean tree, load) and writes INDEX.md with
the docs that quote each file; the test checks INDEX.md is current.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
INDEX = RESULTS / "INDEX.md"

MARKER = re.compile(r"(?P<num>\d[\d,]*(?:\.\d+)?)(?P<tail>[^\d|<]{0,24}?)<!-- fig (?P<spec>[^>]*?) -->")
ANY_MARKER = re.compile(r"<!-- fig (?P<spec>[^>]*?) -->")
OPERATION = re.compile(r"^(?P<left>.+?) (?P<op>[*/]) (?P<right>[^*/]+)$")


def doc_files(root: Path = REPO) -> list[Path]:
    """The pages whose figures are checked: README.md, CONTRIBUTING.md, docs/*.md,
    benchmarks/README.md."""
    files = [root / "README.md", root / "CONTRIBUTING.md", root / "benchmarks" / "README.md"]
    files += sorted((root / "docs").glob("*.md"))
    return [f for f in files if f.exists()]


@dataclass(frozen=True)
class Figure:
    page: str
    line: int
    written: str
    spec: str

    @property
    def file(self) -> str:
        return self.spec.split(":", 1)[0].strip()


def figures(text: str, page: str) -> list[Figure]:
    """Every marked figure of a page, and a marker with no number before it as written ''."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        found = {m.start("spec"): m for m in MARKER.finditer(line)}
        for bare in ANY_MARKER.finditer(line):
            m = found.get(bare.start("spec"))
            out.append(Figure(page, lineno, m["num"] if m else "", bare["spec"].strip()))
    return out


def _keys(path: str) -> list[str]:
    return [k.strip("[]") for k in re.findall(r"\[[^\]]*\]|[^.]+", path.strip())]


def _lookup(data: Any, path: str) -> float:
    value = data
    for key in _keys(path):
        if isinstance(value, list):
            value = value[int(key)]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            raise KeyError(f"no field {key!r} in {path!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{path!r} is {value!r}, not a number")
    return float(value)


def _resolve(file: str, root: Path) -> Path:
    return root / file.lstrip("/") if file.startswith("/") else root / "benchmarks" / "results" / file


def value_of(spec: str, root: Path = REPO) -> float:
    """The number a marker's spec names (see the module docstring)."""
    file, _, field = spec.partition(":")
    if not field:
        raise ValueError(f"marker {spec!r}: expected 'FILE: FIELD'")
    data = json.loads(_resolve(file.strip(), root).read_text(encoding="utf-8"))
    field = field.strip()
    masked = re.sub(r"\[[^\]]*\]", lambda b: "_" * len(b.group()), field)  # ' / ' inside [...] is a key
    m = OPERATION.match(masked)
    if not m:
        return _lookup(data, field)
    left = _lookup(data, field[: m.end("left")])
    right_text = field[m.start("right") :]
    try:
        right = float(right_text)
    except ValueError:
        right = _lookup(data, right_text)
    return left * right if m["op"] == "*" else left / right


def agrees(written: str, value: float) -> bool:
    """`written` is `value` rounded to the decimals written."""
    number = written.replace(",", "")
    decimals = len(number.split(".", 1)[1]) if "." in number else 0
    return abs(float(number) - value) <= 0.5 * 10**-decimals + 1e-9


def check_figure(fig: Figure, root: Path = REPO) -> str | None:
    where = f"{fig.page}:{fig.line}"
    if not fig.written:
        return f"{where}: no number right before the marker <!-- fig {fig.spec} -->"
    try:
        value = value_of(fig.spec, root)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        return f"{where}: {fig.spec}: {e}"
    if not agrees(fig.written, value):
        return f"{where}: the text says {fig.written}, {fig.spec} is {value:.6g}"
    return None


def all_figures(root: Path = REPO) -> list[Figure]:
    out = []
    for path in doc_files(root):
        out += figures(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
    return out


def check(root: Path = REPO) -> list[str]:
    """Every disagreement between the docs and the results files, and every results file that no
    page names."""
    problems = [p for p in (check_figure(f, root) for f in all_figures(root)) if p]
    text = "\n".join(p.read_text(encoding="utf-8") for p in doc_files(root))
    for path in sorted((root / "benchmarks" / "results").glob("*.json")):
        if path.name not in text:
            problems.append(f"benchmarks/results/{path.name}: named by no page (quote it or retire it)")
    return problems


# ------------------------------------------------------------------------------------- index
def _shares(data: Any) -> Iterable[float]:
    """Every `others_cpu_share*` value in a results file (the run's load, per case or whole)."""
    if isinstance(data, dict):
        for k, v in data.items():
            if k in ("steps", "cases", "noise", "others_cpu_share_before"):
                continue  # set-up steps and every attempt (noisy ones discarded): not the kept cases
            if k.startswith("others_cpu_share") and isinstance(v, (int, float)):
                yield float(v)
            else:
                yield from _shares(v)
    elif isinstance(data, list):
        for v in data:
            yield from _shares(v)


def _script(command: str) -> str:
    """The script of a results file's command, relative to benchmarks/ (run from the repository
    root, `python benchmarks/x.py`, or from benchmarks/, `python x.py`)."""
    m = re.search(r"benchmarks/[\w/]+\.py", command or "") or re.search(
        r"^python (\w[\w/]*\.py)\b", command or ""
    )
    return (m.group(1) if m.groups() else m.group(0).removeprefix("benchmarks/")) if m else "?"


def _machine(m: dict[str, Any]) -> str:
    arch = str(m.get("platform", "")).split("-")[-3:-2]  # Linux-<kernel>-x86_64-with-glibc...
    cpu = m.get("cpu_model") or m.get("cpu") or m.get("lscpu_model") or m.get("processor")
    cpu = cpu or "".join(arch) or "?"
    flags = m.get("cpu_flags") or m.get("vnni_bf16") or []
    flags = [f for f in flags if f in ("avx512_vnni", "avx512_bf16", "amx_int8")]
    return f"{cpu}, {m.get('cpus', '?')} CPUs" + (f" ({', '.join(flags)})" if flags else "")


def _load(data: dict[str, Any]) -> str:
    note = (data.get("load") or {}).get("note")
    if note:
        return note
    shares = list(_shares(data))
    if not shares:
        return "not recorded"
    lo, hi = round(min(shares) * 100), round(max(shares) * 100)
    return f"{lo}%" if lo == hi else f"{lo}-{hi}%"


def index_row(path: Path, quoted: dict[str, list[str]]) -> str:
    data = json.loads(path.read_text(encoding="utf-8"))
    git = data.get("git") or {}
    commit = (git.get("commit") or "?")[:7]
    if git.get("recorded") is False:
        commit += " (not recorded: the commit that added the file)"
    dirty = git.get("dirty")
    clean = "not recorded" if dirty is None else ("no" if dirty else "yes")
    date = str(data.get("date_utc") or "not recorded").split("T")[0]
    plot = path.with_suffix(".png")
    name = f"`{path.name}`" + (f" (plot `{plot.name}`)" if plot.exists() else "")
    pages = ", ".join(quoted.get(path.name, [])) or "named only"
    return (
        f"| {name} | `{_script(data.get('command', ''))}` | {date} | {commit} | {clean} | "
        f"{_machine(data.get('machine') or {})} | {_load(data)} | {pages} |"
    )


def make_index(root: Path = REPO) -> str:
    quoted: dict[str, list[str]] = {}
    for fig in all_figures(root):
        pages = quoted.setdefault(Path(fig.file).name, [])
        if fig.page not in pages:
            pages.append(fig.page)
    lines = [
        "# Results files",
        "",
        "Written by `python benchmarks/figures.py index` from the files' headers; do not edit "
        "(tests/test_figures.py checks it is current). Load: the share of the CPUs other processes "
        "used while the run was timed (the range over its cases). Quoted in: the pages with a "
        "figure marked from the file (`<!-- fig FILE: FIELD -->`, benchmarks/figures.py).",
        "",
        "| file | script | date | commit | clean tree | machine | load | quoted in |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [index_row(p, quoted) for p in sorted((root / "benchmarks" / "results").glob("*.json"))]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv[:1] == ["index"]:
        INDEX.write_text(make_index(), encoding="utf-8")
        print(f"wrote {INDEX.relative_to(REPO)}")
        return 0
    if argv[:1] == ["check"]:
        problems = check()
        print("\n".join(problems) or f"{len(all_figures())} figures agree with their results files")
        return 1 if problems else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
