"""bench_real_size.py's measurements that need a fresh process: an export or a load, its wall time
and peak resident memory (VmHWM), per stage where the export says what it is doing.

    python benchmarks/realsize/child.py RESULT.json export -- <gliner-export arguments>
    python benchmarks/realsize/child.py RESULT.json gliner-export CHECKPOINT OUT_DIR
    python benchmarks/realsize/child.py RESULT.json load ENGINE DIR [ONNX_FILE]

Per stage: each line the export logs starts a stage; the peak of the stage before is read from
VmHWM, which is then reset (`/proc/self/clear_refs` 5), so each stage's peak is its own.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import LABELS, TEXT, peak_rss_mb


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Stages:
    """Wraps stderr: every line written starts a stage; records each stage's peak RSS and time."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.stages: list[dict[str, Any]] = []
        self.current = "start"
        self.t0 = time.perf_counter()
        self.partial = ""
        self.resets = reset_peak()

    def close_stage(self) -> None:
        now = time.perf_counter()
        self.stages.append(
            {
                "stage": self.current,
                "seconds": round(now - self.t0, 2),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        )
        self.t0 = now
        self.resets = reset_peak() and self.resets

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.partial += text
        while "\n" in self.partial:
            line, self.partial = self.partial.split("\n", 1)
            if line.strip():
                self.close_stage()
                self.current = line.strip()[:120]
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def run_export(argv: list[str]) -> dict[str, Any]:
    from gliner_onnx.export.cli import main

    base = rss_mb()
    stages = Stages(sys.stderr)
    sys.stderr = stages
    t0 = time.perf_counter()
    try:
        rc = main(argv)
    finally:
        sys.stderr = stages.stream
    wall = time.perf_counter() - t0
    stages.close_stage()
    peak = max(s["peak_rss_mb"] for s in stages.stages)
    return {
        "rc": rc,
        "wall_s": round(wall, 2),
        "peak_rss_mb": peak,
        "rss_after_imports_mb": round(base, 1),
        "stages": stages.stages,
        "per_stage_peaks": stages.resets,
        "error": "".join(s["stage"] for s in stages.stages[-1:]) if rc else "",
    }


def run_gliner_export(checkpoint: str, out: str) -> dict[str, Any]:
    """gliner's own export_to_onnx(quantize=True): model.onnx and model_quantized.onnx."""
    from gliner import GLiNER

    base = rss_mb()
    t0 = time.perf_counter()
    model = GLiNER.from_pretrained(checkpoint, local_files_only=True).eval()
    paths = model.export_to_onnx(out, quantize=True)
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_after_imports_mb": round(base, 1),
        "paths": {k: str(v) for k, v in paths.items()},
    }


def run_load(engine: str, directory: str, onnx_file: str = "", threads_arg: str = "2") -> dict[str, Any]:
    """Import, load (timed), then 3 batch-1 predictions: load time, RSS after load, peak."""
    threads = int(threads_arg)
    import_t0 = time.perf_counter()
    if engine == "ours":
        from gliner_onnx import GLiNER as Ours
        from gliner_onnx import SessionOptions
    else:
        import gliner  # noqa: F401
    imports_s = time.perf_counter() - import_t0
    base = rss_mb()
    t0 = time.perf_counter()
    if engine == "ours":
        model: Any = Ours.from_pretrained(
            directory, session_options=SessionOptions(intra_op_num_threads=threads)
        )
        predict = lambda: model.predict_entities(TEXT, LABELS, threshold=0.5)  # noqa: E731
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from suite.engines import load_gliner_onnx, load_gliner_torch

        if engine == "torch":
            import torch

            torch.set_num_threads(threads)
            model = load_gliner_torch(Path(directory))
        else:
            model = load_gliner_onnx(Path(directory), onnx_file, threads)
        predict = lambda: model.predict_entities(TEXT, LABELS, threshold=0.5)  # noqa: E731
    load_s = time.perf_counter() - t0
    loaded = rss_mb()
    t1 = time.perf_counter()
    predict()
    first_s = time.perf_counter() - t1
    predict()
    predict()
    return {
        "imports_s": round(imports_s, 3),
        "load_s": round(load_s, 3),
        "first_call_s": round(first_s, 3),
        "rss_after_imports_mb": round(base, 1),
        "rss_loaded_mb": round(loaded, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "in_use_mb": round(rss_mb(), 1),
    }


def main() -> int:
    result_path, command, *rest = sys.argv[1:]
    if command == "export":
        out = run_export(rest[1:] if rest[:1] == ["--"] else rest)
    elif command == "gliner-export":
        out = run_gliner_export(*rest)
    elif command == "load":
        out = run_load(*rest)
    else:
        raise SystemExit(f"unknown command {command!r}")
    Path(result_path).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
