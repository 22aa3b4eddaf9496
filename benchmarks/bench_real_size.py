"""The README's speed table: GLiNER at the shapes of its releases (random weights, real sizes).

Per shape (`realsize/shapes.py`: deberta-v3 small / base / large, mdeberta-v3 base, a
bi-encoder, ModernBERT base, and deberta-v3-large with a 251k vocabulary past 2 GB), built
offline with gliner itself on a real-size tokenizer (`realsize/tokenizer.py`):

* `gliner-export` fp32, `--quantize int8` and `--dtype fp16`, each in a fresh process: wall
  time, peak RSS (and per export stage), against the checkpoint's size; the files' sizes;
  `--format ort` where the fp32 graphs pass 2 GB (it must refuse, saying why);
* gliner's own `export_to_onnx(quantize=True)` likewise;
* load: each engine in a fresh process (load time, RSS loaded, peak over 3 predictions);
* latency of gliner torch, gliner's ONNX path (fp32, its int8) and ours (fp32, int8), all loaded
  in one process, `--threads` intra-op threads: batch 1 (bench_common.TEXT, 5 labels), batch 8,
  250 and 1,000 words; warm-up, then `--rounds` rounds with the engines in a new random order
  each, p50 over all calls;
* entity agreement of each engine with gliner torch on a few texts.

    python benchmarks/bench_real_size.py                       # every default shape
    python benchmarks/bench_real_size.py --shapes small --quick
    python benchmarks/bench_real_size.py --shapes large-250k --skip-timing
    python benchmarks/bench_real_size.py --shapes multi --merge   # keep the file's other shapes
    python benchmarks/bench_real_size.py --skip-exports --merge    # re-time; keep the exports' figures
    python benchmarks/bench_real_size.py --skip-timing --merge     # re-export; keep the timings

Writes benchmarks/results/real_size.json (each shape's section as soon as it is done) and
real_size.png (batch-1 latency against parameters, one line per engine). Checkpoints and exports
go to --workspace (several GB at the large shapes), reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import LABELS, RESULTS, TEXT, WORD_RE, LoadMeter, header, warn_if_dirty
from realsize.shapes import DEFAULT_SHAPES, SHAPES, Shape, build_checkpoint, parameters

HERE = Path(__file__).resolve().parent
CHILD = HERE / "realsize" / "child.py"
DEFAULT_WORKSPACE = Path(tempfile.gettempdir()) / "gliner-onnx-real-size"
PRECISIONS = {"fp32": [], "int8": ["--quantize", "int8"], "fp16": ["--dtype", "fp16"]}
PROTOBUF_LIMIT = 2**31


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def dir_mb(path: Path, pattern: str = "*") -> float:
    return round(sum(f.stat().st_size for f in path.rglob(pattern) if f.is_file()) / 2**20, 1)


def child(workspace: Path, *args: str, timeout: float = 7200) -> dict[str, Any]:
    """Run realsize/child.py in a fresh process; its JSON result (or the error it died of)."""
    result = workspace / "child-result.json"
    result.unlink(missing_ok=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(CHILD), str(result), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if proc.returncode == 0 and result.is_file():
        out: dict[str, Any] = json.loads(result.read_text())
        if out.get("rc"):
            out["error"] = proc.stderr.strip().splitlines()[-1][:500] if proc.stderr.strip() else "failed"
        return out
    tail = proc.stderr.strip().splitlines()[-3:]
    return {"rc": proc.returncode, "error": " | ".join(tail)[:800]}


def token_counts(checkpoint: Path) -> dict[str, Any]:
    """Subword tokens of the test text with its 5-label prompt, as gliner's tokenizer gives them."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    words = WORD_RE.findall(TEXT)
    prompt = [w for label in LABELS for w in ("<<ENT>>", label)] + ["<<SEP>>"]
    return {
        "words": len(words),
        "text_tokens": len(tok(words, is_split_into_words=True)["input_ids"]),
        "prompt_and_text_tokens": len(tok(prompt + words, is_split_into_words=True)["input_ids"]),
        "tokenizer_pieces": len(tok),
    }


def export_all(shape: Shape, ckpt: Path, ws: Path, ckpt_mb: float, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for precision, flags in PRECISIONS.items():
        target = ws / f"{shape.name}-ours-{precision}"
        log(f"{shape.name}: gliner-export {precision}")
        r = child(ws, "export", "--", "--model", str(ckpt), "--output", str(target), "--overwrite", *flags)
        if "peak_rss_mb" in r:
            r["peak_rss_vs_checkpoint"] = round(r["peak_rss_mb"] / ckpt_mb, 2)
        if (target / "gliner_onnx.json").is_file() and not r.get("rc"):
            r["size_mb"] = dir_mb(target)
            r["onnx_size_mb"] = dir_mb(target, "*.onnx*")
        out[precision] = r
    fp32 = ws / f"{shape.name}-ours-fp32"
    if fp32.is_dir() and dir_mb(fp32, "*.onnx*") * 2**20 >= PROTOBUF_LIMIT:
        log(f"{shape.name}: gliner-export --format ort (past 2 GB: must refuse)")
        r = child(ws, "export", "--", "--model", str(ckpt), "--output", str(ws / f"{shape.name}-ours-ort"),
                  "--overwrite", "--format", "ort")  # fmt: skip
        out["fp32_ort_format"] = {k: r.get(k) for k in ("rc", "error", "wall_s", "peak_rss_mb")}
    return out


def gliner_export(shape: Shape, ckpt: Path, ws: Path, ckpt_mb: float) -> dict[str, Any]:
    target = ws / f"{shape.name}-gliner-onnx"
    log(f"{shape.name}: gliner's export_to_onnx(quantize=True)")
    shutil.rmtree(target, ignore_errors=True)
    r = child(ws, "gliner-export", str(ckpt), str(target))
    if "peak_rss_mb" in r:
        r["peak_rss_vs_checkpoint"] = round(r["peak_rss_mb"] / ckpt_mb, 2)
    for name in ("model.onnx", "model_quantized.onnx"):
        if (target / name).is_file():
            files = [target / name, *target.glob(f"{name}.data"), *target.glob(f"{name}_data")]
            r[f"{name}_mb"] = round(sum(f.stat().st_size for f in files) / 2**20, 1)
    return r


def engine_dirs(shape: Shape, ckpt: Path, ws: Path) -> dict[str, tuple[str, Path, str]]:
    gl = ws / f"{shape.name}-gliner-onnx"
    dirs: dict[str, tuple[str, Path, str]] = {"gliner torch": ("torch", ckpt, "")}
    for name, file in (("gliner onnx fp32", "model.onnx"), ("gliner onnx int8", "model_quantized.onnx")):
        if (gl / file).is_file():
            dirs[name] = ("gliner_onnx", gl, file)
    for precision in ("fp32", "int8"):
        d = ws / f"{shape.name}-ours-{precision}"
        if (d / "gliner_onnx.json").is_file():
            dirs[f"ours {precision}"] = ("ours", d, "")
    return dirs


def loads(dirs: dict[str, tuple[str, Path, str]], ws: Path, threads: int) -> dict[str, Any]:
    out = {}
    for name, (family, directory, file) in dirs.items():
        log(f"load: {name}")
        out[name] = child(ws, "load", {"torch": "torch", "gliner_onnx": "onnx"}.get(family, "ours"),
                          str(directory), file, str(threads))  # fmt: skip
    return out


def run_shape(shape: Shape, args: argparse.Namespace) -> dict[str, Any]:
    ws: Path = args.workspace
    ckpt = ws / f"{shape.name}-checkpoint"
    section: dict[str, Any] = {"shape": _describe(shape)}
    if not (ckpt / "gliner_config.json").is_file():
        log(f"{shape.name}: building the checkpoint")
        t0 = time.perf_counter()
        build_checkpoint(shape, ckpt, ws / f"{shape.name}-scratch")
        section["build_s"] = round(time.perf_counter() - t0, 1)
    ckpt_mb = dir_mb(ckpt, "*.bin") + dir_mb(ckpt, "*.safetensors")
    section["checkpoint"] = {"dir": str(ckpt), "weights_mb": ckpt_mb, "parameters": parameters(ckpt)}
    section["tokens"] = token_counts(ckpt)
    if not args.skip_exports:
        section["export"] = export_all(shape, ckpt, ws, ckpt_mb, args.quick)
        section["gliner_export"] = gliner_export(shape, ckpt, ws, ckpt_mb)
    dirs = engine_dirs(shape, ckpt, ws)
    section["load"] = loads(dirs, ws, args.threads)
    if not args.skip_timing:
        from realsize.timing import agreement, free, load_engines, time_cases

        log(f"{shape.name}: loading {', '.join(dirs)} in one process")
        engines = load_engines(dirs, args.threads)
        log(f"{shape.name}: agreement with gliner torch")
        section["agreement"] = agreement(engines)
        log(f"{shape.name}: timing ({args.rounds} rounds of {args.runs})")
        section["latency"] = time_cases(engines, args.quick, args.rounds, args.runs, args.warmup)
        free(engines)
    return section


def _describe(shape: Shape) -> dict[str, Any]:
    from dataclasses import asdict

    return {"arch": shape.arch, **asdict(shape)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES), choices=list(SHAPES))
    p.add_argument("--rounds", type=int, default=10, help="timed rounds per case (default 10)")
    p.add_argument("--runs", type=int, default=5, help="calls per engine per round (default 5)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of every engine (default 2)")
    p.add_argument("--quick", action="store_true", help="3 rounds of 3, batch 1 only")
    p.add_argument("--skip-exports", action="store_true", help="reuse the workspace's exports, unmeasured")
    p.add_argument(
        "--skip-timing",
        action="store_true",
        help="exports and loads only (with --merge: the file's timings of the shape are kept)",
    )
    p.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE,
                   help=f"checkpoints and exports (GBs; default {DEFAULT_WORKSPACE})")  # fmt: skip
    p.add_argument("--output", type=Path, default=RESULTS / "real_size.json")
    p.add_argument("--merge", action="store_true",
                   help="keep the output file's sections of the shapes not run now (each section "
                   "records the run it comes from: `measured`)")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.runs, args.warmup = min(args.rounds, 3), min(args.runs, 3), min(args.warmup, 2)
    return args


def write(record: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def measured(head: dict[str, Any], load: dict[str, Any] | None = None) -> dict[str, Any]:
    """Which run a shape's section comes from (its commit, time, command and load)."""
    out: dict[str, Any] = {k: head[k] for k in ("command", "date_utc", "git") if k in head}
    if load is not None:
        out["load"] = load
    return out


def kept_sections(old: dict[str, Any], shapes: list[str]) -> dict[str, Any]:
    """`--merge`: the sections of the results file `old` for the shapes not run now, each with
    its `measured`."""
    kept = {}
    for name, section in old.get("shapes", {}).items():
        if name not in shapes:
            section.setdefault("measured", measured(old, old.get("load")))
            kept[name] = section
    return kept


def carried_exports(section: dict[str, Any], previous: dict[str, Any] | None) -> None:
    """`--skip-exports --merge`: the shape's export measurements from the file's section (the
    exports are reused, so what was measured when they were made still holds), with the run
    they come from (`exports_measured`)."""
    _carry(section, previous, ("build_s", "export", "gliner_export"), "exports_measured")


def carried_timings(section: dict[str, Any], previous: dict[str, Any] | None) -> None:
    """`--skip-timing --merge`: the shape's agreement and latency from the file's section, with
    the run they come from (`timing_measured`): for a rerun of the exports where the runtime's
    code has not changed since the timings."""
    _carry(section, previous, ("agreement", "latency"), "timing_measured")


def _carry(
    section: dict[str, Any], previous: dict[str, Any] | None, keys: tuple[str, ...], mark: str
) -> None:
    if not previous:
        return
    carried = [k for k in keys if k in previous and k not in section]
    for key in carried:
        section[key] = previous[key]
    if carried:
        section[mark] = previous.get(mark, previous.get("measured"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.workspace.mkdir(parents=True, exist_ok=True)
    load = LoadMeter()
    head = header()
    warn_if_dirty(head["git"])
    merging = args.merge and args.output.is_file()
    old: dict[str, Any] = json.loads(args.output.read_text(encoding="utf-8")) if merging else {}
    record: dict[str, Any] = {
        **head,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "text": {"words": len(TEXT.split()), "labels": list(LABELS)},
        "notes": [
            "random weights at the releases' shapes; tokenizer: MiniLM's WordPiece pieces as a Unigram model "
            "padded to the real vocabulary (benchmarks/realsize/tokenizer.py)",
            "1,000 words: gliner (torch and onnx) reads the first max_len (384) words and drops the rest; "
            "ours answers the whole text in overlapping windows (about 2.7x the encoder work)",
        ],
        "shapes": kept_sections(old, args.shapes),
    }
    # the shapes run now: untouched above
    previous = old.get("shapes", {}) if args.skip_exports or args.skip_timing else {}
    for name in args.shapes:
        t0 = time.perf_counter()
        shape_load = LoadMeter()
        try:
            section = run_shape(SHAPES[name], args)
        except Exception as e:  # recorded; the next shape still runs
            section = {"error": f"{type(e).__name__}: {e}"[:1000]}
            log(f"{name}: failed: {section['error']}")
        section["seconds"] = round(time.perf_counter() - t0, 1)
        section["measured"] = measured(head, shape_load.summary())
        if args.skip_exports:
            carried_exports(section, previous.get(name))
        if args.skip_timing:
            carried_timings(section, previous.get(name))
        record["shapes"][name] = section
        record.update(header(load), command=head["command"], git=head["git"])
        write(record, args.output)
        log(f"{name}: done in {section['seconds']:.0f} s, written to {args.output}")
    from realsize.plot import plot

    plot(record, args.output.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
