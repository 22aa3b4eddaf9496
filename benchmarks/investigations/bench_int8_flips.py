"""What int8 changes in the answers on the agreement corpus, and how close fp32 was to changing
them itself.

    python benchmarks/investigations/bench_int8_flips.py --arch uniencoder_span
    python benchmarks/investigations/bench_int8_flips.py --arch biencoder_span --recipe fast

The export records int8's agreement with fp32 as entity F1 on its corpus (115 varied texts, 6
labels, threshold 0.5: `export/precision/__init__.py`). This takes the trained demo of `--arch`,
exports it fp32 and `--quantize int8` (`--recipe`), and for every entity that one precision
finds and the other does not, reads fp32's own margin for that decision from fp32's scores of
every span and label above `--floor` (the runtime's candidates before greedy decoding):

- `threshold`: the entity's fp32 score against the threshold (0.5);
- `rival`: the fp32 score gap to the best-scoring overlapping candidate of the other side
  (greedy flat decoding keeps the higher of two overlapping spans, or a span's best label);

an entity's margin is the smaller of the two: how far fp32 was from giving the other answer
(0 for exact ties: two overlapping candidates with the same fp32 score, e.g. both 1.0).
Also counted: the changed entities on lines of ASCII characters only (English, numbers, code)
against those in other scripts and emoji.
Reports the changed entities by margin, the largest score change int8 makes on any candidate
(p50, p99, max), and the entity F1 counting only fp32 decisions whose margin is at least m
(m = 0.01, 0.02, 0.05, 0.1). Accuracy only: the machine's load does not change these figures.
Writes results/int8_flips_<arch>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_common import RESULTS, header, quiet, warn_if_dirty  # noqa: E402

MARGINS = (0.01, 0.02, 0.05, 0.1)
Key = tuple[int, int, int, str]  # (text, start, end, label)


def keyed(results: Sequence[Sequence[dict[str, Any]]]) -> dict[Key, float]:
    return {
        (i, e["start"], e["end"], e["label"]): float(e["score"])
        for i, ents in enumerate(results)
        for e in ents
    }


def overlaps(a: Key, b: Key) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def margin(
    entity: Key, fp32_all: dict[Key, float], others: Sequence[Key], threshold: float
) -> dict[str, Any]:
    """fp32's margins for `entity` (see the module docstring); `others`: the other side's
    entities of the same text."""
    score = fp32_all.get(entity)
    to_threshold = abs(score - threshold) if score is not None else None
    rivals = [fp32_all[o] for o in others if o != entity and overlaps(o, entity) and o in fp32_all]
    to_rival = abs(score - max(rivals)) if score is not None and rivals else None
    known = [m for m in (to_threshold, to_rival) if m is not None]
    return {
        "fp32_score": score,
        "to_threshold": to_threshold,
        "to_rival": to_rival,
        "margin": min(known) if known else None,
    }


def all_candidates(engine: Any, texts: list[str], labels: list[str], floor: float) -> dict[Key, float]:
    """Every (span, label) scoring above `floor`, none dropped by greedy decoding: the runtime's
    `greedy_search` is bypassed for the call (its candidates go to the output as they are)."""
    from gliner_onnx.runtime import entities
    from gliner_onnx.runtime.entity_decoding import Candidates

    def keep_all(candidates: Any, flat_ner: bool = True, multi_label: bool = False) -> list[Any]:
        return candidates.to_list() if isinstance(candidates, Candidates) else list(candidates)

    original = entities.greedy_search
    entities.greedy_search = keep_all  # type: ignore[assignment]
    try:
        kw = {"threshold": floor, "batch_size": 8, "return_relations": False, "multi_label": True}
        return keyed([r.entities for r in engine.extract(texts, labels, **kw)])
    finally:
        entities.greedy_search = original


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="uniencoder_span")
    p.add_argument("--recipe", default="default", help="--int8-recipe (default: default)")
    p.add_argument("--floor", type=float, default=0.05, help="threshold of the all-candidates runs")
    p.add_argument("--keep", type=Path, help="keep (and reuse) the two exports under this directory")
    p.add_argument("--output", type=Path)
    args = p.parse_args()

    from gliner_onnx import GLiNER
    from gliner_onnx.export import export_model
    from gliner_onnx.export.demo import build_demo, demo_source
    from gliner_onnx.export.precision import (
        AGREEMENT_LABELS,
        AGREEMENT_THRESHOLD,
        agreement_corpus,
        entity_f1,
        lower_precision,
    )
    from gliner_onnx.export.precision.int8 import NAMED_RECIPES

    head = header()
    warn_if_dirty(head["git"])
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-int8-flips-"))
    fp32_dir, int8_dir = work / f"{args.arch}-fp32", work / f"{args.arch}-int8-{args.recipe}"
    with quiet():
        if not (fp32_dir / "gliner_onnx.json").is_file():
            export_model(build_demo(args.arch), fp32_dir, source=demo_source(args.arch), log=lambda _m: None)
        if not (int8_dir / "gliner_onnx.json").is_file():
            int8_dir.mkdir(parents=True, exist_ok=True)
            lower_precision(
                fp32_dir, int8_dir, "int8", log=lambda _m: None, recipe=NAMED_RECIPES[args.recipe]
            )
    texts, labels, threshold = agreement_corpus(), list(AGREEMENT_LABELS), AGREEMENT_THRESHOLD
    engines = {
        "fp32": GLiNER.from_pretrained(fp32_dir),
        "int8": GLiNER.from_pretrained(int8_dir, verify=False),
    }
    flat = {"threshold": threshold, "batch_size": 8, "return_relations": False}
    answers = {k: [r.entities for r in e.extract(texts, labels, **flat)] for k, e in engines.items()}
    candidates = {k: all_candidates(e, texts, labels, args.floor) for k, e in engines.items()}
    ref, got = keyed(answers["fp32"]), keyed(answers["int8"])
    changed = []
    for side, mine, theirs in (("fp32 only", ref, got), ("int8 only", got, ref)):
        for key in sorted(set(mine) - set(theirs)):
            others = [o for o in theirs if o[0] == key[0]]
            found = margin(key, candidates["fp32"], others, threshold)
            changed.append({"side": side, "text": key[0], "start": key[1], "end": key[2], "label": key[3],
                            "int8_score": candidates["int8"].get(key), **found})  # fmt: skip
    shared = sorted(set(candidates["fp32"]) & set(candidates["int8"]))
    deltas = np.array([abs(candidates["fp32"][k] - candidates["int8"][k]) for k in shared])
    # F1 over fp32's decisions with at least margin m: an entity of either side whose fp32 margin
    # is below m is left out of both sides.
    fragile = {m: {(c["text"], c["start"], c["end"], c["label"]) for c in changed
                   if c["margin"] is None or c["margin"] < m} for m in MARGINS}  # fmt: skip
    by_margin = {}
    for m in MARGINS:
        keep_ref = [[e for e in ents if (i, e["start"], e["end"], e["label"]) not in fragile[m]]
                    for i, ents in enumerate(answers["fp32"])]  # fmt: skip
        keep_got = [[e for e in ents if (i, e["start"], e["end"], e["label"]) not in fragile[m]]
                    for i, ents in enumerate(answers["int8"])]  # fmt: skip
        by_margin[str(m)] = {
            "changed_entities_below": len(fragile[m]),
            "f1_without_them": entity_f1(keep_ref, keep_got)["f1"],
        }
    margins = sorted(c["margin"] for c in changed if c["margin"] is not None)
    record = {
        **head,
        "arch": args.arch,
        "recipe": NAMED_RECIPES[args.recipe].record(),
        "texts": len(texts),
        "labels": labels,
        "threshold": threshold,
        "floor": args.floor,
        "f1": entity_f1(answers["fp32"], answers["int8"])["f1"],
        "fp32_entities": len(ref),
        "int8_entities": len(got),
        "changed_entities": len(changed),
        "changed_exact_ties": sum(1 for m in margins if m == 0.0),
        "changed_on_ascii_lines": sum(1 for c in changed if texts[c["text"]].isascii()),
        "ascii_lines": sum(1 for t in texts if t.isascii()),
        "changed_margin_max": max(margins) if margins else None,
        "changed_margin_p50": float(np.median(margins)) if margins else None,
        "candidate_score_change": {
            "candidates": len(shared),
            "p50": float(np.percentile(deltas, 50)),
            "p99": float(np.percentile(deltas, 99)),
            "max": float(deltas.max()),
        },
        "by_margin": by_margin,
        "changed": changed,
    }
    out = args.output or RESULTS / f"int8_flips_{args.arch}.json"
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"F1 {record['f1']:.3f}: {len(changed)} entities changed of {len(ref)} (fp32) / {len(got)} (int8)")
    print(f"their fp32 margins: {', '.join(f'{m:.3f}' for m in margins)}")
    sc = record["candidate_score_change"]
    print(
        f"score change on {sc['candidates']} candidates: p50 {sc['p50']:.4f}, p99 {sc['p99']:.4f}, ", end=""
    )
    print(f"max {sc['max']:.4f}")
    for level, r in by_margin.items():
        below, f1 = r["changed_entities_below"], r["f1_without_them"]
        print(f"margin >= {level}: {below} changed entities below it, F1 without them {f1:.3f}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
