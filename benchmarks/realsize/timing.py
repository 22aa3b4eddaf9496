"""bench_real_size.py's in-process part: every engine loaded together, timed in shuffled rounds,
and their entities compared with gliner torch's."""

from __future__ import annotations

import functools
import gc
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_common import LABELS, TEXT, entity_f1, mark, others_share, shuffled_rounds, summarize
from suite.data import CORPUS, long_text
from suite.engines import load_gliner_onnx, load_gliner_torch, load_ours

THRESHOLD = 0.5
BATCH = 8
LONG_WORDS = (250, 1000)
AGREEMENT_TEXTS = 8


@dataclass
class Engine:
    name: str
    family: str  # "torch" | "gliner_onnx" | "ours"
    model: Any

    def predict(self, texts: Sequence[str], batch: int) -> list[list[dict[str, Any]]]:
        """gliner's calls (ours has the same): predict_entities for one text, else inference."""
        if len(texts) == 1:
            return [self.model.predict_entities(texts[0], list(LABELS), threshold=THRESHOLD)]
        return self.model.inference(list(texts), list(LABELS), threshold=THRESHOLD, batch_size=batch)


def load_engines(dirs: dict[str, tuple[str, Path, str]], threads: int) -> list[Engine]:
    """`dirs`: engine name -> (family, directory, onnx file for gliner's ONNX path)."""
    import torch

    torch.set_num_threads(threads)
    engines = []
    for name, (family, directory, onnx_file) in dirs.items():
        if family == "torch":
            model = load_gliner_torch(directory)
        elif family == "gliner_onnx":
            model = load_gliner_onnx(directory, onnx_file, threads)
        else:
            model = load_ours(directory, threads)
        engines.append(Engine(name, family, model))
    return engines


def cases(quick: bool) -> dict[str, tuple[list[str], int]]:
    """Case name -> (texts, batch size)."""
    out = {"batch1": ([TEXT], 1)}
    if not quick:
        batch = [t for t in CORPUS if len(t.split()) > 8][:BATCH]
        out[f"batch{BATCH}"] = (batch, BATCH)
        for words in LONG_WORDS:
            out[f"words{words}"] = ([long_text(words)], 1)
    return out


def time_cases(
    engines: Sequence[Engine], quick: bool, rounds: int, runs: int, warmup: int, seed: int = 0
) -> dict[str, Any]:
    """Per case, per engine: warm-up, then `rounds` rounds of `runs` calls each, the engines in a
    new random order every round; p50 etc. over all calls, and the median of the rounds' medians."""
    rng = random.Random(seed)
    out: dict[str, Any] = {}
    for case, (texts, batch) in cases(quick).items():
        calls: dict[str, Callable[[], Any]] = {}
        res: dict[str, Any] = {}
        for e in engines:
            try:
                fn = functools.partial(e.predict, texts, batch)
                for _ in range(warmup):
                    fn()
                calls[e.name] = fn
            except Exception as exc:  # recorded: e.g. an engine that cannot run the case
                res[e.name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        start = mark()
        times = shuffled_rounds(calls, rounds, runs, rng)
        share = others_share(start, mark())
        for name, per_round in times.items():
            res[name] = {
                **summarize([t for r in per_round for t in r]),
                "median_of_round_medians_ms": statistics.median(
                    statistics.median(r) * 1000 for r in per_round
                ),
                "others_cpu_share": share,
            }
        out[case] = {
            "texts": len(texts),
            "batch": batch,
            "words": sum(len(t.split()) for t in texts),
            "engines": {e.name: res[e.name] for e in engines},
        }
    return out


def agreement(engines: Sequence[Engine], reference: str = "gliner torch") -> dict[str, Any]:
    """Each engine's entities against gliner torch's on a few texts (same start, end, label)."""
    texts = [TEXT, *[t for t in CORPUS if len(t.split()) > 8][: AGREEMENT_TEXTS - 1], long_text(250)]
    preds = {e.name: [e.predict([t], 1)[0] for t in texts] for e in engines}
    ref = preds[reference]
    return {
        "texts": len(texts),
        "labels": list(LABELS),
        "threshold": THRESHOLD,
        "reference": reference,
        "engines": {name: entity_f1(ref, p) for name, p in preds.items() if name != reference},
    }


def free(engines: list[Engine]) -> None:
    engines.clear()
    gc.collect()
