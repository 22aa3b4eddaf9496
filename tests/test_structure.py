"""The code's shape, read with `ast`: no function over 80 lines, and no import cycle between the
modules of `gliner_onnx`, `runtime/` and `export/` (imports under TYPE_CHECKING and lazy imports
inside functions count: a cycle there is the same tangle, only deferred)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where each package's modules live in the checkout (runtime/ and export/ are installed as
# gliner_onnx.runtime and gliner_onnx.export).
PACKAGES = {
    "gliner_onnx": ROOT / "gliner_onnx",
    "gliner_onnx.runtime": ROOT / "runtime",
    "gliner_onnx.export": ROOT / "export",
}
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    """Every module by its dotted name (a package by its own name, for its __init__.py)."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > limit:
                yield f"{path}:{node.lineno} {node.name} ({lines} lines)"


def test_no_function_over_80_lines() -> None:
    assert len(MODULES) > 80  # the walk finds the three packages' modules
    too_long = [f for path in MODULES.values() for f in long_functions(path)]
    assert not too_long, "split these functions:\n" + "\n".join(too_long)


def test_the_length_check_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(80))
    path = tmp_path / "long.py"
    path.write_text(f"def short():\n    pass\n\n\nclass C:\n    def long(self):\n{body}\n")
    assert [f.split()[1] for f in long_functions(path)] == ["long"]


def imports_of(name: str, path: Path, source: str | None = None) -> set[str]:
    """The modules of ours that module `name` imports, at any depth (functions and TYPE_CHECKING
    blocks included); `from package import submodule` counts as the submodule."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8") if source is None else source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(m: str, path: list[str]) -> list[str] | None:
        if state.get(m) == "done":
            return None
        if state.get(m) == "open":
            return [*path[path.index(m) :], m]
        state[m] = "open"
        for dep in sorted(graph.get(m, set())):
            cycle = visit(dep, [*path, m])
            if cycle:
                return cycle
        state[m] = "done"
        return None

    for m in sorted(graph):
        cycle = visit(m, [])
        if cycle:
            return cycle
    return None


def test_no_import_cycle() -> None:
    graph = {name: imports_of(name, path) for name, path in MODULES.items()}
    assert "gliner_onnx.export.exporter" not in graph["gliner_onnx.export.decoder_export"]
    assert "gliner_onnx.runtime.loaded" in graph["gliner_onnx.runtime.pipelines"]  # the graph is read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("source", "cycle"),
    [
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .configs import ExportConfig\n",
            True,
        ),
        ("def f():\n    from gliner_onnx.export import configs\n", True),
        ("from gliner_onnx.export.configs import ExportConfig\n", True),
        ("from gliner_onnx.archs import ARCHS\n", False),
    ],
)
def test_the_cycle_check_sees_deferred_imports(source: str, cycle: bool) -> None:
    """configs imports context; context importing configs back, in any form, is a cycle."""
    graph = {name: imports_of(name, path) for name, path in MODULES.items()}
    assert "gliner_onnx.export.context" in graph["gliner_onnx.export.configs"]
    graph["gliner_onnx.export.context"] = imports_of(
        "gliner_onnx.export.context", ROOT / "export/context.py", source
    )
    assert (find_cycle(graph) is not None) == cycle
