"""Relation extraction: gliner torch vs gliner's own ONNX export vs ours, same checkpoint.

    python benchmarks/bench_relex.py --arch uniencoder_span_relex --threads 2 --runs 20

Builds the offline demo relex checkpoint (MiniLM, untrained heads calibrated so entity and
relation scores spread over (0, 1), `relations_layer="dot"`), exports it with gliner-onnx,
and tries gliner's `export_to_onnx` on it. Times text in, (entities, relations) out for one
~60-word text with 5 entity labels and 3 relation labels at entity thresholds 0.5 and 0.3
(adjacency and relation thresholds default to it), interleaving the engines so machine noise
hits all alike; medians. Also checks that our relations equal gliner torch's. Writes
results/relex_<arch>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import LABELS, TEXT, LoadMeter, header, percentile, warn_if_dirty  # noqa: E402

RELATIONS = ["works for", "located in", "born in"]


def _key(relations: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["head"]["entity_idx"], r["tail"]["entity_idx"], r["relation"]) for r in relations]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--arch", default="uniencoder_span_relex", choices=["uniencoder_span_relex", "uniencoder_token_relex"]
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--thresholds", default="0.5,0.3")
    args = ap.parse_args()

    import torch

    from gliner_onnx import GLiNER, SessionOptions
    from gliner_onnx.export import export_model
    from gliner_onnx.export.demo import build_demo

    torch.set_num_threads(args.threads)
    head = header()
    warn_if_dirty(head["git"])
    load = LoadMeter()
    work = Path(tempfile.mkdtemp(prefix="bench-relex-"))
    ref = build_demo(args.arch)
    ref.save_pretrained(work / "ckpt")
    export_model(work / "ckpt", work / "ours", log=lambda _m: None)
    ours = GLiNER.from_pretrained(
        work / "ours", session_options=SessionOptions(intra_op_num_threads=args.threads)
    )

    gliner_onnx_status = "ok"
    try:
        ref.export_to_onnx(str(work / "gliner-onnx"))
        from gliner import GLiNER as TorchGLiNER

        g_onnx = TorchGLiNER.from_pretrained(
            str(work / "gliner-onnx"), load_onnx_model=True, local_files_only=True
        )
        g_onnx.inference([TEXT], LABELS, relations=RELATIONS, threshold=0.5)
    except Exception as e:  # reported in the results, not hidden
        gliner_onnx_status = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        traceback.print_exc(limit=1)
        g_onnx = None

    results: dict[str, Any] = {
        **head,
        "arch": args.arch,
        "threads": args.threads,
        "runs": args.runs,
        "text_words": len(TEXT.split()),
        "labels": len(LABELS),
        "relations": len(RELATIONS),
        "gliner_export_to_onnx": gliner_onnx_status,
        "cases": [],
    }
    for threshold in (float(t) for t in args.thresholds.split(",")):
        call = {
            "gliner torch": lambda th=threshold: ref.inference(
                [TEXT], LABELS, relations=RELATIONS, threshold=th
            ),
            "gliner-onnx": lambda th=threshold: ours.inference(
                [TEXT], LABELS, relations=RELATIONS, threshold=th
            ),
        }
        if g_onnx is not None:
            call["gliner ONNX"] = lambda th=threshold: g_onnx.inference(
                [TEXT], LABELS, relations=RELATIONS, threshold=th
            )
        outputs = {name: fn() for name, fn in call.items()}  # warm-up, and the answers
        same = _key(outputs["gliner torch"][1][0]) == _key(outputs["gliner-onnx"][1][0])
        times: dict[str, list[float]] = {name: [] for name in call}
        for _ in range(args.runs):
            for name, fn in call.items():
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1000)
        case = {
            "threshold": threshold,
            "entities": len(outputs["gliner torch"][0][0]),
            "relations": len(outputs["gliner torch"][1][0]),
            "relations_equal_gliner": same,
            "p50_ms": {n: round(percentile(t, 50), 2) for n, t in times.items()},
        }
        case["ours_vs_torch"] = round(case["p50_ms"]["gliner-onnx"] / case["p50_ms"]["gliner torch"], 3)
        results["cases"].append(case)
        print(json.dumps(case))
    results["load"] = load.summary()
    out = Path(__file__).resolve().parent / "results" / f"relex_{args.arch}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"gliner export_to_onnx: {gliner_onnx_status}\nwrote {out}")


if __name__ == "__main__":
    main()
