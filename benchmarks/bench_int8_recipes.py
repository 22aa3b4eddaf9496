"""int8 recipes side by side: speed, size and agreement with fp32 on a trained demo checkpoint.

    python benchmarks/bench_int8_recipes.py --arch uniencoder_span            # every recipe
    python benchmarks/bench_int8_recipes.py --arch biencoder_token --recipes default,attention

Exports the trained demo of `--arch` (export/demo/weights/) in fp32, then one int8 copy per
recipe (`export/precision/int8.py`, through the export's own `lower_precision`), and reports for each:
- entity F1 against fp32 on the export's agreement corpus (115 varied texts, 6 labels, the
  figure the manifest records) and on `--heldout` held-out synthetic sentences (the demo's
  labels), threshold 0.5;
- the export directory's size against fp32's;
- batch-1 latency (bench_common.TEXT: ~60 words, 5 labels) against fp32: every engine loaded in
  this process, `--rounds` rounds in a shuffled order per round, `--runs` timed calls each after
  a warm-up; the median of the per-round medians, and the speed-up of each round's median
  against fp32's median in the same round (median over rounds).
Writes results/int8_recipes_<arch>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
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
from bench_common import LABELS, RESULTS, TEXT, LoadMeter, entity_f1, header, quiet, warn_if_dirty  # noqa: E402

from gliner_onnx.export.precision.int8 import ATTENTION_ONLY, DEFAULT_RECIPE, FAST_RECIPE, Int8Recipe  # noqa: E402

RECIPES: dict[str, Int8Recipe] = {
    "attention": ATTENTION_ONLY,
    "layers": Int8Recipe("every layer MatMul", scope="layers"),
    "layers-u8": Int8Recipe("every layer MatMul, uint8 weights", scope="layers", weight_type="QUInt8"),
    "all": Int8Recipe("every MatMul", scope="all", lstm=True),
    "all-emb": FAST_RECIPE,  # --int8-recipe fast
    "all-emb-sq50": Int8Recipe(
        "every MatMul, int8 embedding rows, SmoothQuant 0.5",
        scope="all",
        embeddings=True,
        lstm=True,
        smooth=0.5,
    ),
    "all-emb-sq75": Int8Recipe(
        "every MatMul, int8 embedding rows, SmoothQuant 0.75",
        scope="all",
        embeddings=True,
        lstm=True,
        smooth=0.75,
    ),
    "all-emb-ft": Int8Recipe(
        "every MatMul, int8 embedding rows, first token apart in the layers",
        scope="all",
        embeddings=True,
        lstm=True,
        first_token="layers",
    ),
    "all-emb-tok": Int8Recipe(
        "every MatMul per token, int8 embedding rows",
        scope="all",
        embeddings=True,
        lstm=True,
        activations="token",
    ),
    "noqkv-ft": Int8Recipe(
        "every MatMul but the attention's Q/K/V, int8 embedding rows, first token apart in the feed-forwards",
        scope="all",
        embeddings=True,
        lstm=True,
        first_token="ffn",
        skip=("/attention/self/",),
    ),
    "ft-oc3": Int8Recipe(
        "every MatMul, int8 embedding rows, first token apart in the feed-forwards, "
        "outlier channels apart (3x)",
        scope="all",
        embeddings=True,
        lstm=True,
        first_token="ffn",
        outliers=3.0,
    ),
    "ft-oc2": Int8Recipe(
        "every MatMul, int8 embedding rows, first token apart in the feed-forwards, "
        "outlier channels apart (2x)",
        scope="all",
        embeddings=True,
        lstm=True,
        first_token="ffn",
        outliers=2.0,
    ),
    "default": DEFAULT_RECIPE,  # every MatMul, int8 embedding rows, first token apart in the feed-forwards
}
# `default` with a few of its MatMuls (or its embedding rows) left fp32: where agreement is lost.
_LAYER0 = "/encoder/layer.0/"
for _name, _skip in {
    "l0": (_LAYER0,),
    "l0-attn": (_LAYER0 + "attention/",),
    "l0-qkv": (_LAYER0 + "attention/self/",),
    "l0-attn-out": (_LAYER0 + "attention/output/",),
    "l0-ffn": (_LAYER0 + "intermediate/", _LAYER0 + "output/"),
    "l0-ffn-in": (_LAYER0 + "intermediate/",),
    "l0-ffn-out": (_LAYER0 + "output/",),
    "l-last": ("/encoder/layer.5/",),
}.items():
    RECIPES[_name] = replace(DEFAULT_RECIPE, name=f"default, {' '.join(_skip)} fp32", skip=_skip)
RECIPES["heads-fp32"] = replace(
    DEFAULT_RECIPE, name="default, heads and LSTM fp32", scope="layers", lstm=False
)
RECIPES["emb-fp32"] = replace(DEFAULT_RECIPE, name="default, embedding rows fp32", embeddings=False)


def heldout_agreement(fp32: Any, other: Any, n: int) -> dict[str, float]:
    from gliner_onnx.export.demo.sentences import LABELS as DEMO_LABELS
    from gliner_onnx.export.demo.sentences import heldout

    texts = [" ".join(ex["tokenized_text"]) for ex in heldout(n)]
    kw = {"threshold": 0.5, "batch_size": 8}
    ref = [r.entities for r in fp32.extract(texts, list(DEMO_LABELS), **kw)]
    got = [r.entities for r in other.extract(texts, list(DEMO_LABELS), **kw)]
    return entity_f1(ref, got)


def time_engines(engines: dict[str, Any], rounds: int, runs: int, seed: int) -> dict[str, Any]:
    per_round: dict[str, list[float]] = {name: [] for name in engines}
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(engines)
        rng.shuffle(order)
        for name in order:
            model = engines[name]
            for _ in range(3):
                model.extract([TEXT], LABELS)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                model.extract([TEXT], LABELS)
                times.append(time.perf_counter() - t0)
            per_round[name].append(statistics.median(times) * 1000)
    out: dict[str, Any] = {}
    for name, medians in per_round.items():
        speedups = [f / m for f, m in zip(per_round["fp32"], medians)]
        out[name] = {
            "p50_ms": statistics.median(medians),
            "round_p50_ms": medians,
            "speedup_vs_fp32": statistics.median(speedups),
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="uniencoder_span")
    p.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of {', '.join(RECIPES)}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--heldout", type=int, default=200)
    p.add_argument("--fp32", type=Path, help="reuse this fp32 export of the trained demo")
    p.add_argument("--keep", type=Path, help="keep the exports under this directory")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    names = [r for r in args.recipes.split(",") if r]
    unknown = [r for r in names if r not in RECIPES]
    if unknown:
        p.error(f"unknown recipes {unknown}; known: {', '.join(RECIPES)}")

    from gliner_onnx import GLiNER, SessionOptions
    from gliner_onnx.export import export_model
    from gliner_onnx.export.demo import build_demo, demo_source
    from gliner_onnx.export.precision import dir_bytes, lower_precision

    head = header()
    warn_if_dirty(head["git"])
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-int8-recipes-"))
    work.mkdir(parents=True, exist_ok=True)
    fp32_dir = args.fp32 or work / "fp32"
    if args.fp32 is None and not (fp32_dir / "gliner_onnx.json").is_file():
        with quiet():
            export_model(build_demo(args.arch), fp32_dir, source=demo_source(args.arch), log=lambda _m: None)
    options = SessionOptions(intra_op_num_threads=args.threads)
    engines = {"fp32": GLiNER.from_pretrained(fp32_dir, session_options=options)}
    rows: dict[str, Any] = {"fp32": {"bytes": dir_bytes(fp32_dir)}}
    for name in names:
        target = work / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()
        t0 = time.perf_counter()
        with quiet():
            m = lower_precision(fp32_dir, target, "int8", log=lambda _m: None, recipe=RECIPES[name])
        engines[name] = GLiNER.from_pretrained(target, session_options=options, verify=False)
        rows[name] = {
            "recipe": RECIPES[name].record(),
            "export_seconds": round(time.perf_counter() - t0, 1),
            "bytes": dir_bytes(target),
            "size_vs_fp32": dir_bytes(target) / rows["fp32"]["bytes"],
            "corpus_f1": m.agreement["f1"],
            "corpus_entities": [m.agreement["fp32_entities"], m.agreement["entities"]],
            "heldout_f1": heldout_agreement(engines["fp32"], engines[name], args.heldout)["f1"],
            "graphs": {g: e.optimization for g, e in m.graphs.items()},
        }
        r = rows[name]
        print(
            f"{name:14} size {r['size_vs_fp32']:.3f}  corpus F1 {r['corpus_f1']:.3f}  "
            f"heldout F1 {r['heldout_f1']:.3f}",
            flush=True,
        )
    meter = LoadMeter()  # other processes' share of the CPUs while the engines are timed
    timing = time_engines(engines, args.rounds, args.runs, seed=0)
    head["load"] = meter.summary()
    for name, t in timing.items():
        rows[name].update(t)
        print(f"{name:14} {t['p50_ms']:.2f} ms  speed-up {t['speedup_vs_fp32']:.2f}x", flush=True)
    record = {
        **head,
        "arch": args.arch,
        "threads": args.threads,
        "text_words": len(TEXT.split()),
        "labels": LABELS,
        "rounds": args.rounds,
        "runs": args.runs,
        "rows": rows,
    }
    out = args.out or RESULTS / f"int8_recipes_{args.arch}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
