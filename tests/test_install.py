"""The package as a user installs it: a wheel built from the checkout, installed non-editable into
an environment of its own, used from the checkout's root (whose `gliner_onnx/` folder shadows the
installed package) and from anywhere else, through the Python API and the console script.

The environment is a venv without pip whose only view of the test environment's packages (numpy,
onnxruntime, tokenizers) is a `.pth` file listing its site-packages: paths added that way are not
scanned for `.pth` files, so an editable install of this project there (its import finder) stays
out, and the subprocess checks that it did.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Checkpoint

REPO = Path(__file__).resolve().parent.parent
TEXT = "Angela Merkel visited Paris."

# Imports the package the way the README does, then reports where each part came from.
PROBE = """
import json, sys
from gliner_onnx import GLiNER
import gliner_onnx, gliner_onnx.runtime, importlib.util
model = GLiNER.from_pretrained(sys.argv[1])
print(json.dumps({
    "package": gliner_onnx.__file__,
    "runtime": gliner_onnx.runtime.__file__,
    "export": importlib.util.find_spec("gliner_onnx.export").origin,
    "editable_finders": [repr(f) for f in sys.meta_path if "editable" in repr(f).lower()],
    "entities": model.predict_entities(sys.argv[2], ["person", "location"], threshold=0.0),
}))
"""


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkout copy, venv): the wheel built from a copy of the checkout (the build writes
    `build/` and `*.egg-info` there, not in the checkout) and installed into the venv."""
    root = tmp_path_factory.mktemp("install")
    checkout = root / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("gliner_onnx", "runtime", "export"):
        shutil.copytree(REPO / name, checkout / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, checkout / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    wheel = _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                  "-w", str(root / "dist"), str(checkout)], root)  # fmt: skip
    assert wheel.returncode == 0, wheel.stderr
    (whl,) = (root / "dist").glob("gliner_onnx-*.whl")
    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root)
    assert made.returncode == 0, made.stderr
    (venv_site,) = venv.glob("lib/python*/site-packages")
    (venv_site / "_test_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # The test environment's pip run by the venv's interpreter installs into the venv;
    # --ignore-installed: the test environment's own gliner-onnx is visible through the .pth.
    inst = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                 "--ignore-installed", str(whl)], root)  # fmt: skip
    assert inst.returncode == 0, inst.stderr
    return checkout, venv


def _probe(venv: Path, cwd: Path, export_dir: Path) -> dict:
    proc = _run([str(venv / "bin" / "python"), "-c", PROBE, str(export_dir), TEXT], cwd)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["editable_finders"] == []  # nothing but the wheel and the checkout in play
    assert result["entities"] and all(TEXT[e["start"] : e["end"]] == e["text"] for e in result["entities"])
    return result


def test_wheel_holds_the_runtime_and_export_subpackages(installed: tuple[Path, Path]) -> None:
    _, venv = installed
    (pkg,) = venv.glob("lib/python*/site-packages/gliner_onnx")
    shipped = ("runtime/model.py", "export/exporter.py", "serve/static/playground.html")  # package data too
    for module in ("__init__.py", "cli.py", "manifest.py", *shipped):
        assert (pkg / module).is_file(), module
    (dist_info,) = pkg.parent.glob("gliner_onnx-*.dist-info")
    entry_points = (dist_info / "entry_points.txt").read_text()
    assert "gliner-onnx = gliner_onnx.cli:main" in entry_points
    assert "gliner-export = gliner_onnx.export.cli:main" in entry_points


def test_python_api_from_the_checkout_root(installed: tuple[Path, Path], uni_deberta: Checkpoint) -> None:
    # Regression: the checkout's gliner_onnx/ shadows the installed package there, and it has no
    # runtime/ inside: `from gliner_onnx import GLiNER` raised ImportError for 'runtime'.
    checkout, venv = installed
    result = _probe(venv, checkout, uni_deberta.export_dir)
    assert result["package"] == str(checkout / "gliner_onnx" / "__init__.py")
    assert result["runtime"] == str(checkout / "runtime" / "__init__.py")
    assert result["export"] == str(checkout / "export" / "__init__.py")


def test_python_api_from_elsewhere(
    installed: tuple[Path, Path], uni_deberta: Checkpoint, tmp_path: Path
) -> None:
    _, venv = installed
    result = _probe(venv, tmp_path, uni_deberta.export_dir)
    (pkg,) = venv.glob("lib/python*/site-packages/gliner_onnx")
    assert result["package"] == str(pkg / "__init__.py")
    assert result["runtime"] == str(pkg / "runtime" / "__init__.py")
    assert result["export"] == str(pkg / "export" / "__init__.py")


def test_console_script_predicts(installed: tuple[Path, Path], uni_deberta: Checkpoint) -> None:
    checkout, venv = installed
    cmd = [str(venv / "bin" / "gliner-onnx"), "predict", str(uni_deberta.export_dir),
           "--labels", "person,location", "--threshold", "0", TEXT]  # fmt: skip
    proc = _run(cmd, checkout)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["text"] == TEXT and record["entities"]
