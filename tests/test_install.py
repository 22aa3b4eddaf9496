"""The package as a user installs it: a wheel built from the checkout, installed non-editable into
an environment of its own, used from the checkout's root (whose `gliner_onnx/` folder shadows the
installed package) and from anywhere else, through the Python API and the console script; and the
package's modules as a package walker (pydoc, Sphinx, plugin discovery) lists them, from the
checkout, a wheel and an editable install.

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


# Lists the package as pkgutil walks it (importing each subpackage): a walk that does not end
# raises RecursionError.
WALK = """
import json, pkgutil, gliner_onnx
failed = []
walked = [m.name for m in pkgutil.walk_packages(gliner_onnx.__path__, "gliner_onnx.", onerror=failed.append)]
print(json.dumps({"package": gliner_onnx.__file__, "modules": walked, "failed": failed}))
"""


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _venv(path: Path) -> Path:
    """A venv that sees the test environment's packages through a `.pth` (so not its editable
    install of this project) and holds nothing of gliner-onnx until something is installed."""
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(path)], path.parent)
    assert made.returncode == 0, made.stderr
    (venv_site,) = path.glob("lib/python*/site-packages")
    (venv_site / "_test_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return path


def _pip_install(venv: Path, *args: str) -> None:
    # The test environment's pip run by the venv's interpreter installs into the venv;
    # --ignore-installed: the test environment's own gliner-onnx is visible through the .pth.
    inst = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                 "--no-build-isolation", "--ignore-installed", *args], venv.parent)  # fmt: skip
    assert inst.returncode == 0, inst.stderr


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout (builds write `build/` and `*.egg-info` there, not in the checkout),
    with a `tests` package at its root as the real one has: the package must not take it in."""
    checkout = tmp_path_factory.mktemp("install") / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("gliner_onnx", "runtime", "export"):
        shutil.copytree(REPO / name, checkout / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "tests/__init__.py"):
        (checkout / name).parent.mkdir(exist_ok=True)
        shutil.copy2(REPO / name, checkout / name)
    return checkout


@pytest.fixture(scope="module")
def installed(checkout: Path) -> tuple[Path, Path]:
    """(checkout copy, venv): the wheel built from the checkout copy, installed into the venv."""
    root = checkout.parent
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    wheel = _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                  "-w", str(root / "dist"), str(checkout)], root)  # fmt: skip
    assert wheel.returncode == 0, wheel.stderr
    (whl,) = (root / "dist").glob("gliner_onnx-*.whl")
    venv = _venv(root / "venv")
    _pip_install(venv, str(whl))
    return checkout, venv


def _probe(venv: Path, cwd: Path, export_dir: Path) -> dict:
    proc = _run([str(venv / "bin" / "python"), "-c", PROBE, str(export_dir), TEXT], cwd)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["editable_finders"] == []  # nothing but the wheel and the checkout in play
    assert result["entities"] and all(TEXT[e["start"] : e["end"]] == e["text"] for e in result["entities"])
    return result


def test_wheel_holds_the_runtime_and_export_subpackages(installed: tuple[Path, Path]) -> None:
    checkout, venv = installed
    (pkg,) = venv.glob("lib/python*/site-packages/gliner_onnx")
    modules = (
        "__init__.py", "cli.py", "manifest.py", "runtime/model.py", "export/exporter.py",
        "export/precision/int8.py", "export/ort/model_format.py", "export/demo/training.py",
        "serve/static/playground.html",  # package data too
    )  # fmt: skip
    for module in modules:
        assert (pkg / module).is_file(), module
    # package data: the corpus, and the trained demos' weights with their records
    assert (pkg / "export" / "data" / "corpus.txt").is_file()
    shipped = {p.name for p in (pkg / "export" / "demo" / "weights").iterdir()}
    assert {"biencoder_token.safetensors", "biencoder_token.json"} <= shipped
    assert shipped == {p.name for p in (checkout / "export" / "demo" / "weights").iterdir()}
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


def _own_modules(checkout: Path) -> set[str]:
    """The package's modules as the source tree lays them out: `gliner_onnx/` and the two stages."""
    names = set()
    for folder, package in (("gliner_onnx", "gliner_onnx"), ("runtime", "gliner_onnx.runtime"),
                            ("export", "gliner_onnx.export")):  # fmt: skip
        for path in (checkout / folder).rglob("*.py"):
            parts = path.relative_to(checkout / folder).with_suffix("").parts
            names.add(".".join((package, *parts[: -1 if parts[-1] == "__init__" else None])))
    return names - {"gliner_onnx"}


@pytest.fixture(scope="module")
def venvs(installed: tuple[Path, Path]) -> dict[str, Path]:
    """Per way of having the package: a venv without it, the wheel's, an editable install's."""
    checkout, wheel_venv = installed
    editable = _venv(checkout.parent / "editable")
    _pip_install(editable, "-e", str(checkout))
    return {"none": _venv(checkout.parent / "bare"), "wheel": wheel_venv, "editable": editable}


@pytest.mark.parametrize(
    ("install", "cwd"),
    [("none", "checkout"), ("wheel", "checkout"), ("wheel", "elsewhere"), ("editable", "checkout"),
     ("editable", "elsewhere")],
)  # fmt: skip
def test_walking_the_package_finds_exactly_its_modules(
    installed: tuple[Path, Path], venvs: dict[str, Path], install: str, cwd: str, tmp_path: Path
) -> None:
    """Regression: the checkout root was on `gliner_onnx.__path__`, so a walk listed
    `gliner_onnx.tests` and, through `gliner_onnx.gliner_onnx`, recursed until RecursionError."""
    checkout, _ = installed
    python = venvs[install] / "bin" / "python"
    proc = _run([str(python), "-c", WALK], checkout if cwd == "checkout" else tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["failed"] == []
    assert len(result["modules"]) == len(set(result["modules"]))
    assert set(result["modules"]) == _own_modules(checkout)
    from_checkout = cwd == "checkout" or install == "editable"
    assert Path(result["package"]).is_relative_to(checkout) == from_checkout
