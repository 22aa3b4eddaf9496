"""ORT format against ONNX (issue #18): directory size, load time and batch-1 latency.

    pip install -e ".[export,demo]"
    python benchmarks/bench_ort_format.py                      # the uniencoder_span demo
    python benchmarks/bench_ort_format.py --arch biencoder_token --threads 1

The demo checkpoint of `--arch` is exported four ways with `export_model`, as
`gliner-export --arch ARCH [--quantize int8] [--format ort]` does: ONNX fp32, ORT fp32, ONNX
int8, ORT int8 (the int8 recipe is whatever export/precision/__init__.py does at this commit). For
comparison only, the ORT graphs are also converted at the *basic* and *extended* optimization
levels (not what `--format ort` ships, which is "all" without NCHWc: see export/ort/model_format.py),
from the same ONNX graphs.

Measured: each directory's size (every file: graphs, tokenizers, manifest, card, operator
config); the load time (`GLiNER.from_pretrained(dir, verify=False)`: sessions created, no
sha256 pass), in alternating rounds; the latency of one ~60-word text with 5 labels (batch 1,
`--threads` intra-op threads), engines in shuffled order each round, medians. Every engine's
answers are compared with its ONNX export's on the export's check texts (`export/ort/model_format.py`: 8
texts, 6 labels, threshold 0.3): entities that differ, largest score difference of the others.
Writes JSON (`--output`) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import LABELS, RESULTS, TEXT, LoadMeter, header, quiet, summarize, warn_if_dirty  # noqa: E402

VARIANTS = ("onnx fp32", "ort fp32", "onnx int8", "ort int8", "onnx fp16", "ort fp16")
COMPARED_LEVELS = ("basic", "extended")


def export_all(arch: str, work: Path) -> dict[str, Path]:
    from gliner_onnx.export import export_model
    from gliner_onnx.export.demo import build_demo, demo_source

    model = build_demo(arch)
    dirs: dict[str, Path] = {}
    for variant in VARIANTS:
        fmt, precision = variant.split()
        out = work / variant.replace(" ", "-")
        t0 = time.perf_counter()
        with quiet():
            kw: dict[str, Any] = {"precision": precision, "model_format": fmt, "source": demo_source(arch)}
            export_model(model, out, log=lambda _m: None, **kw)
        print(f"exported {variant} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        dirs[variant] = out
    for precision in ("fp32", "int8", "fp16"):
        ort_dir, onnx_dir = dirs[f"ort {precision}"], dirs[f"onnx {precision}"]
        for level in COMPARED_LEVELS:
            dirs[f"ort {precision} {level}"] = level_copy(ort_dir, onnx_dir, work, level)
    return dirs


def level_copy(ort_dir: Path, onnx_dir: Path, work: Path, level: str) -> Path:
    """A copy of the ORT export `ort_dir` whose graphs are converted from `onnx_dir`'s at the
    optimization `level` instead."""
    from gliner_onnx.export.ort.model_format import convert_graph
    from gliner_onnx.manifest import load_manifest, sha256_file

    out = work / f"{ort_dir.name}-{level}"
    shutil.copytree(ort_dir, out)
    m, source = load_manifest(out), load_manifest(onnx_dir)
    graphs = {}
    for name, g in m.graphs.items():
        convert_graph(onnx_dir / source.graphs[name].file, out / g.file, level=level)
        graphs[name] = replace(g, sha256=sha256_file(out / g.file))
    replace(m, graphs=graphs, ort={**m.ort, "optimization_level": f"{level} (comparison only)"}).save(out)
    return out


def check_answers(dirs: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Each export's answers on the check texts against its precision's ONNX export's."""
    from gliner_onnx import GLiNER
    from gliner_onnx.export import samples
    from gliner_onnx.export.ort import model_format

    texts = [samples.SHORT, samples.MEDIUM, samples.LONG, *samples.corpus_lines()][: model_format.CHECK_TEXTS]
    labels, kw = list(model_format.CHECK_LABELS), {"threshold": model_format.CHECK_THRESHOLD}
    answers = {}
    for k, d in dirs.items():
        answers[k] = [r.entities for r in GLiNER.from_pretrained(d).extract(texts, labels, **kw)]
    out: dict[str, dict[str, Any]] = {}
    for name, got in answers.items():
        ref = answers["onnx " + name.split()[1]]
        differing, worst = 0, 0.0
        for r, g in zip(ref, got):
            rs = {(e["start"], e["end"], e["label"]): e["score"] for e in r}
            gs = {(e["start"], e["end"], e["label"]): e["score"] for e in g}
            differing += len(rs.keys() ^ gs.keys())
            worst = max([worst, *(abs(rs[k] - gs[k]) for k in rs.keys() & gs.keys())])
        out[name] = {"entities": sum(map(len, got)), "entities_differing": differing}
        out[name]["max_abs_score_diff"] = worst
    return out


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def graph_bytes(path: Path) -> int:
    from gliner_onnx.manifest import load_manifest

    m = load_manifest(path, verify=False)
    files = [g.file for g in m.graphs.values()] + [g.data_file for g in m.graphs.values() if g.data_file]
    return sum((path / f).stat().st_size for f in files)


def load_times(dirs: dict[str, Path], rounds: int, threads: int) -> dict[str, dict[str, float]]:
    from gliner_onnx import GLiNER
    from gliner_onnx.runtime import SessionOptions

    options = SessionOptions(intra_op_num_threads=threads)
    times: dict[str, list[float]] = {k: [] for k in dirs}
    for _ in range(rounds):
        for name in random.sample(list(dirs), len(dirs)):
            t0 = time.perf_counter()
            GLiNER.from_pretrained(dirs[name], verify=False, session_options=options)
            times[name].append(time.perf_counter() - t0)
    return {k: summarize(v) for k, v in times.items()}


def latencies(dirs: dict[str, Path], rounds: int, warmup: int, threads: int) -> dict[str, Any]:
    from gliner_onnx import GLiNER
    from gliner_onnx.runtime import SessionOptions

    options = SessionOptions(intra_op_num_threads=threads)
    models = {k: GLiNER.from_pretrained(d, session_options=options) for k, d in dirs.items()}
    answers = {k: m.predict_entities(TEXT, LABELS, threshold=0.3) for k, m in models.items()}
    for _ in range(warmup):
        for m in models.values():
            m.predict_entities(TEXT, LABELS)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for name in random.sample(list(models), len(models)):
            t0 = time.perf_counter()
            models[name].predict_entities(TEXT, LABELS)
            times[name].append(time.perf_counter() - t0)

    def keys(name: str) -> list[tuple[int, int, str]]:
        return [(e["start"], e["end"], e["label"]) for e in answers[name]]

    same = {k: keys(k) == keys("onnx " + k.split()[1]) for k in models}
    return {
        "latency": {k: summarize(v) for k, v in times.items()},
        "same_entities_as_onnx": same,
        "providers": models["onnx fp32"].providers,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="uniencoder_span")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--load-rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=RESULTS / "ort_format.json")
    args = p.parse_args()
    random.seed(args.seed)
    head = header()
    warn_if_dirty(head["git"])
    with tempfile.TemporaryDirectory(prefix="ort-demo-") as tmp:
        dirs = export_all(args.arch, Path(tmp))
        load = LoadMeter()
        sizes = {k: {"directory_bytes": dir_size(d), "graph_bytes": graph_bytes(d)} for k, d in dirs.items()}
        loading = load_times(dirs, args.load_rounds, args.threads)
        timing = latencies(dirs, args.rounds, args.warmup, args.threads)
        checked = check_answers(dirs)
        files = {k: sorted(f.name for f in d.iterdir()) for k, d in dirs.items()}
    result = {
        **header(load),
        "arch": args.arch,
        "checkpoint": f"demo:{args.arch} (offline demo, as gliner-export --arch {args.arch})",
        "threads": args.threads,
        "text_words": len(TEXT.split()),
        "labels": LABELS,
        "batch_size": 1,
        "rounds": args.rounds,
        "load_rounds": args.load_rounds,
        "note": "ort * basic / extended: the same graphs converted at that level, for comparison only; "
        "`--format ort` ships all without NchwcTransformer",
        "sizes": sizes,
        "load_s": loading,
        **timing,
        "check_vs_onnx": checked,
        "files": files,
    }
    result["git"] = head["git"]  # the state when the run started
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("| variant | directory MB | load ms | latency ms | vs ONNX: entities differing, max score diff |")
    print("|---|---|---|---|---|")
    for k in dirs:
        c = checked[k]
        print(
            f"| {k} | {sizes[k]['directory_bytes'] / 1e6:.1f} | {loading[k]['p50_ms']:.0f} | "
            f"{timing['latency'][k]['p50_ms']:.1f} | {c['entities_differing']}, "
            f"{c['max_abs_score_diff']:.1e} |"
        )
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
