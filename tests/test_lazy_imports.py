"""The runtime never loads torch, transformers or gliner (onnxruntime-genai's test_lazy_imports)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import Checkpoint

HEAVY = ("torch", "transformers", "gliner", "gliner_onnx.export", "ray")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m in HEAVY or m.startswith(tuple(h + "." for h in HEAVY))}


def test_import_runtime_loads_no_torch() -> None:
    modules = _loaded_after("import gliner_onnx.runtime\nfrom gliner_onnx import GLiNER")
    assert "onnxruntime" in modules  # the probe really imported the runtime
    assert _heavy(modules) == set()


def test_cli_and_ray_facade_load_no_ray() -> None:
    """`gliner_onnx.ray` and the CLI import Ray only when serving or annotating."""
    modules = _loaded_after(
        "import gliner_onnx.cli, gliner_onnx.ray\nfrom gliner_onnx.ray import ServeConfig"
    )
    assert "gliner_onnx.ray" in modules
    assert _heavy(modules) == set()


def test_predicting_loads_no_torch(uni_deberta: Checkpoint) -> None:
    export = Path(uni_deberta.export_dir)
    code = (
        "from gliner_onnx import GLiNER\n"
        f"m = GLiNER.from_pretrained({str(export)!r})\n"
        "assert m.predict_entities('Angela Merkel visited Paris.', ['person'], threshold=0.0)"
    )
    modules = _loaded_after(code)
    assert _heavy(modules) == set()
    assert "huggingface_hub" not in modules  # imported only for a Hub repo id (tests/test_hub.py)


def test_benchmarking_loads_no_torch(uni_deberta: Checkpoint) -> None:
    code = (
        "from gliner_onnx import GLiNER\n"
        "from gliner_onnx.bench import run_bench\n"
        f"m = GLiNER.from_pretrained({str(Path(uni_deberta.export_dir))!r})\n"
        "run_bench(m, words=(5,), label_counts=(2,), batch_sizes=(2,), runs=1, warmup=0)"
    )
    assert _heavy(_loaded_after(code)) == set()
