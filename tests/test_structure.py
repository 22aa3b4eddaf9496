"""The code's shape, read with `ast`: no function over 80 lines in `gliner_onnx`, `runtime/` and
`export/`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

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
