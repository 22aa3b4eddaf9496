"""`gliner-onnx bench`: latency and throughput of one export on this machine.

Torch-free, like the runtime. Texts are synthetic (a fixed vocabulary of names,
places, dates and filler words, cut to the requested number of words) so that runs
are comparable across machines and exports. Every figure is measured after warm-up
calls; latencies are per call at batch 1, throughput is texts per second through
`inference` at each batch size.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from .archs import get_arch
from .manifest import Manifest
from .runtime import GLiNER

_WORDS = (
    "On 3 March 2021 Angela Merkel met Emmanuel Macron in Paris to discuss the budget of the "
    "European Union , while Apple announced record revenue in Cupertino and Dr. Maria Silva "
    "of the University of São Paulo presented new results on malaria vaccines at a conference "
    "in Geneva organised by the World Health Organization ; later that week Tesla opened a "
    "factory near Berlin and the Bank of Japan kept its rates unchanged ."
).split()
_LABELS = (
    "person", "organization", "location", "date", "product", "event", "disease", "drug", "city",
    "country", "company", "university", "money", "percent", "law", "language", "religion",
    "vehicle", "food", "award", "book", "film", "song", "sport", "team", "building", "airport",
    "river", "mountain", "planet", "chemical", "gene", "protein", "species", "symptom", "job title",
)  # fmt: skip


def synthetic_text(num_words: int) -> str:
    """`num_words` words cycling through a fixed news-like sentence."""
    if num_words < 1:
        raise ValueError(f"num_words must be at least 1, got {num_words}")
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(num_words))


def synthetic_labels(count: int) -> list[str]:
    """`count` distinct entity type names (numbered once the list runs out)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return [
        _LABELS[i] if i < len(_LABELS) else f"{_LABELS[i % len(_LABELS)]} {i // len(_LABELS)}"
        for i in range(count)
    ]


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ms = sorted(s * 1e3 for s in seconds)

    def pct(q: float) -> float:
        return ms[min(len(ms) - 1, round(q * (len(ms) - 1)))]

    return {"p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "mean_ms": statistics.fmean(ms)}


def _time(call: Callable[[], object], runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def _caller(fn: Callable[..., object], *args: Any, **kwargs: Any) -> Callable[[], object]:
    return lambda: fn(*args, **kwargs)


def machine_info() -> dict[str, Any]:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
    }


def head_description(manifest: Manifest) -> str:
    """The scoring head as `gliner-onnx info` shows it: a span model's span head, or a token
    model's scorer (factorized when the export rewrote it)."""
    if get_arch(manifest.arch).family == "span":
        return f"{manifest.span_head} span head"
    scorer = manifest.graphs.get("scorer")
    rewrites = scorer.optimization.get("rewrites", []) if scorer is not None else []
    return "factorized token scorer" if "factorized token scorer" in rewrites else "generic token scorer"


def run_bench(
    model: GLiNER,
    *,
    words: Sequence[int] = (20, 60, 200),
    label_counts: Sequence[int] = (5, 20, 50),
    batch_sizes: Sequence[int] = (1, 8, 32),
    runs: int = 20,
    warmup: int = 3,
    base_words: int = 60,
    base_labels: int = 5,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Batch-1 latency by text length and by label count, and throughput by batch size."""
    for name, values in (("words", words), ("label_counts", label_counts), ("batch_sizes", batch_sizes)):
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{name} must be a non-empty list of positive ints, got {list(values)!r}")
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got {runs}, {warmup}")
    labels = synthetic_labels(base_labels)
    text = synthetic_text(base_words)
    result: dict[str, Any] = {
        "export": str(model.directory),
        "arch": model.arch,
        "precision": model.manifest.precision,
        "span_head": model.manifest.span_head,
        "head": head_description(model.manifest),
        "providers": model.providers,
        "spinning": model.context.runner.spinning,
        "machine": machine_info(),
        "settings": {"runs": runs, "warmup": warmup, "base_words": base_words, "base_labels": base_labels},
        "latency_by_words": [],
        "latency_by_labels": [],
        "throughput": [],
    }
    measured: dict[tuple[int, int], dict[str, float]] = {}

    def latency(n_words: int, n_labels: int) -> dict[str, Any]:
        # A point in both sweeps (base_words words, base_labels labels) is measured once.
        if (n_words, n_labels) not in measured:
            log(f"latency, {n_words} words, {n_labels} labels ...")
            call = _caller(model.predict_entities, synthetic_text(n_words), synthetic_labels(n_labels))
            measured[n_words, n_labels] = _percentiles(_time(call, runs, warmup))
        return {"words": n_words, "labels": n_labels, **measured[n_words, n_labels]}

    result["latency_by_words"] = [latency(n, base_labels) for n in words]
    result["latency_by_labels"] = [latency(base_words, c) for c in label_counts]
    for b in batch_sizes:
        log(f"throughput, batch {b} ...")
        texts = [text] * max(b, 8)
        times = _time(_caller(model.inference, texts, labels, batch_size=b), max(3, runs // 4), 1)
        best = statistics.median(times)
        result["throughput"].append(
            {"batch_size": b, "texts": len(texts), "words": base_words, "labels": base_labels,
             "texts_per_s": len(texts) / best, "median_call_ms": best * 1e3}
        )  # fmt: skip
    if model.is_biencoder:
        result["note"] = "bi-encoder: label embeddings are cached after the first call, as in normal use"
    return result


def format_table(result: dict[str, Any]) -> str:
    """A readable summary of `run_bench`'s result."""
    m = result["machine"]
    lines = [
        f"{result['arch']} ({result['precision']}, {result['head']}) on {', '.join(result['providers'])}"
        + (", spinning threads" if result.get("spinning") else ""),
        f"{m['cpu']}, {m['usable_cores']} usable cores, onnxruntime {m['onnxruntime']}",
        "",
        "batch-1 latency           p50 ms   p90 ms   p99 ms",
    ]
    shown = set()
    for r in result["latency_by_words"] + result["latency_by_labels"]:
        if (r["words"], r["labels"]) in shown:  # the point both sweeps share: one row
            continue
        shown.add((r["words"], r["labels"]))
        what = f"{r['words']} words, {r['labels']} labels"
        lines.append(f"  {what:<22}{r['p50_ms']:8.1f} {r['p90_ms']:8.1f} {r['p99_ms']:8.1f}")
    lines += ["", "throughput                texts/s"]
    for r in result["throughput"]:
        lines.append(f"  batch {r['batch_size']:<17}{r['texts_per_s']:8.1f}")
    if "note" in result:
        lines += ["", result["note"]]
    return "\n".join(lines)
