"""The suite's sections: batch 1, throughput, label scaling, long texts, agreement, peak memory.
Each fills its part of `suite.results` (the results file's `results`)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_common import HERE, LABELS, TEXT, WORD_RE, entity_f1, peak_rss_mb

from .data import (
    AGREEMENT_LABELS,
    CORPUS,
    ENTITY_TYPES,
    LONG_WORDS,
    THRESHOLD,
    THROUGHPUT_BATCH,
    THROUGHPUT_TEXTS,
    long_text,
)
from .engines import Assets, Models, load_gliner_onnx, load_gliner_torch
from .timing import Engine, Suite, time_case


def bench_batch1(suite: Suite, models: Models) -> None:
    suite.log("batch 1: one ~60-word text, 5 labels")
    suite.results["batch1"] = time_case(suite, "batch 1", models.uni, [TEXT], LABELS, 1, suite.plan.batch1)


def bench_throughput(suite: Suite, models: Models) -> None:
    suite.log(f"throughput: {THROUGHPUT_TEXTS} texts at batch {THROUGHPUT_BATCH}")
    texts = [TEXT] * THROUGHPUT_TEXTS
    res = time_case(suite, "throughput", models.uni, texts, LABELS, THROUGHPUT_BATCH, suite.plan.throughput)
    for r in res.values():
        if "p50_ms" in r:
            r["texts_per_s"] = THROUGHPUT_TEXTS / (r["p50_ms"] / 1000.0)
    suite.results["throughput"] = res


def prompt_subwords(tokenizer: Any, labels: Sequence[str]) -> int:
    """Subwords of the uni-encoder prompt: <<ENT>> label ... <<SEP>>, plus [CLS] and [SEP]."""
    pieces = sum(1 + len(tokenizer.tokenize(label)) for label in labels)
    return pieces + 1 + 2


def bench_labels(suite: Suite, models: Models, tokenizer: Any) -> None:
    text_subwords = len(tokenizer.tokenize(TEXT))
    limit = tokenizer.model_max_length
    uni: dict[str, Any] = {}
    bi: dict[str, Any] = {}
    for n in suite.plan.label_counts:
        labels = ENTITY_TYPES[:n]
        suite.log(f"label scaling: {n} labels (uni-encoder, bi-encoder)")
        prompt = prompt_subwords(tokenizer, labels)
        uni[str(n)] = {
            "prompt_subwords": prompt,
            "text_subwords": text_subwords,
            "fits_subword_limit": prompt + text_subwords <= limit,
            "engines": time_case(suite, f"uni {n} labels", models.uni, [TEXT], labels, 1, suite.plan.labels),
        }
        bi[str(n)] = {
            "engines": time_case(suite, f"bi {n} labels", models.bi, [TEXT], labels, 1, suite.plan.labels)
        }
    over = [n for n, r in uni.items() if not r["fits_subword_limit"]]
    if over:
        suite.notes.append(
            f"uni-encoder with {', '.join(over)} labels: prompt + text exceed the {limit}-subword limit; "
            "gliner silently truncates the text, ours runs it in smaller windows (or refuses when the "
            "labels alone leave no room)."
        )
    suite.results["labels_uni"] = uni
    suite.results["labels_bi"] = bi


def bench_long(suite: Suite, models: Models, max_len: int) -> None:
    res: dict[str, Any] = {}
    for words in LONG_WORDS:
        text = long_text(words)
        suite.log(f"long text: {words} words")
        res[str(words)] = {
            "words": len(text.split()),
            "gliner_words": len(WORD_RE.findall(text)),  # gliner's splitter counts punctuation too
            "engines": time_case(
                suite, f"long {words} words", models.long, [text], LABELS, 1, suite.plan.long
            ),
        }
    suite.notes.append(
        f"long texts: gliner (torch and onnx) reads only the first {max_len} words (and at most 512 "
        "subwords, prompt included) and drops the rest silently; ours runs the whole text in windows."
    )
    suite.results["long_text"] = res


def agreement(engines: Sequence[Engine], reference: str) -> dict[str, Any]:
    preds = {e.name: e.make(CORPUS, AGREEMENT_LABELS, 8)() for e in engines}
    return {name: entity_f1(preds[reference], p) for name, p in preds.items()}


def bench_agreement(suite: Suite, models: Models) -> None:
    suite.log(f"agreement on {len(CORPUS)} texts, threshold {THRESHOLD}")
    ours_uni = [e.name for e in models.agree_uni if e.family == "ours"]
    ours_bi = [e.name for e in models.agree_bi if e.family == "ours"]
    ref_uni = "ours fp32" if "ours fp32" in ours_uni else ours_uni[0]
    ref_bi = "ours fp32" if "ours fp32" in ours_bi else ours_bi[0]
    suite.results["agreement"] = {
        "reference": {"uniencoder_span": ref_uni, "biencoder_span": ref_bi},
        "labels": AGREEMENT_LABELS,
        "threshold": THRESHOLD,
        "uniencoder_span": agreement(models.agree_uni, ref_uni),
        "biencoder_span": agreement(models.agree_bi, ref_bi),
    }


# ------------------------------------------------------------------------------------ memory (RSS)
def rss_child(kind: str, path: str, onnx_file: str, threads: int) -> int:
    """Run in a fresh process: load one engine, predict TEXT once, print peak RSS figures as JSON."""
    base = peak_rss_mb()
    if kind == "ours":
        from gliner_onnx import GLiNER, SessionOptions

        imported = peak_rss_mb()
        model = GLiNER.from_pretrained(path, session_options=SessionOptions(intra_op_num_threads=threads))
    else:
        import gliner  # noqa: F401  (its import cost counted before loading)
        import torch

        torch.set_num_threads(threads)
        imported = peak_rss_mb()
        if kind == "gliner_torch":
            model = load_gliner_torch(Path(path))
        else:
            model = load_gliner_onnx(Path(path), onnx_file, threads)
    loaded = peak_rss_mb()
    model.predict_entities(TEXT, LABELS, threshold=THRESHOLD)
    print(
        json.dumps(
            {
                "start_mb": base,
                "after_import_mb": imported,
                "after_load_mb": loaded,
                "peak_mb": peak_rss_mb(),
                "torch_imported": "torch" in sys.modules,
            }
        )
    )
    return 0


def bench_rss(suite: Suite, uni: Assets) -> None:
    jobs: dict[str, tuple[str, Path, str]] = {
        "gliner torch": ("gliner_torch", uni.checkpoint, ""),
        "gliner onnx fp32": ("gliner_onnx", uni.gliner_onnx, "model.onnx"),
        "gliner onnx int8": ("gliner_onnx", uni.gliner_onnx, "model_quantized.onnx"),
        **{f"ours {n}": ("ours", d, "") for n, d in uni.ours.items()},
    }
    res: dict[str, Any] = {}
    for name, (kind, path, onnx_file) in jobs.items():
        suite.log(f"peak RSS, fresh process: {name}")
        cmd = [sys.executable, str(HERE / "bench_suite.py"), "--_rss-child", kind, "--_rss-path", str(path)]
        cmd += ["--_rss-onnx-file", onnx_file, "--threads", str(suite.args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            res[name] = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        else:
            res[name] = json.loads(lines[-1])
    suite.results["rss"] = res
