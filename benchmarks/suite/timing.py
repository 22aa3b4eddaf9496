"""Timing for bench_suite.py: engines, the run plan, alternating blocks, noisy-case retries.

Every engine of a case is warmed up, then timed in blocks that alternate between engines (the
order reversed every other block), so that noise on a shared machine hits all engines alike.
The share of the CPUs that other processes used during each attempt is recorded; --wait-idle and
--retries wait for and re-time noisy cases, keeping the quietest attempt.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench_common import Mark, idle_check, mark, others_share, summarize

from .data import LABEL_COUNTS, NOISY_SHARE, QUICK_LABEL_COUNTS

Call = Callable[[], Any]
# (texts, labels, batch_size) -> a zero-argument callable to time; it returns one entity list per text
# (or the raw session outputs for a session engine).
Maker = Callable[[Sequence[str], Sequence[str], int], Call]


@dataclass(frozen=True)
class Engine:
    name: str
    make: Maker
    predicts: bool = True  # False: the callable returns raw session outputs, not entities
    family: str = ""  # "torch" | "gliner_onnx" | "session" | "ours"


@dataclass
class Plan:
    """How many timed runs each section gets, and which label counts."""

    runs: int
    warmup: int
    blocks: int
    quick: bool = False
    batch1: int = 0
    throughput: int = 0
    labels: int = 0
    long: int = 0
    label_counts: tuple[int, ...] = LABEL_COUNTS

    def __post_init__(self) -> None:
        self.batch1 = self.runs
        self.throughput = max(1, self.runs // 5)
        self.labels = max(1, self.runs // 3)
        self.long = max(1, self.runs // 10)
        if self.quick:
            self.label_counts = QUICK_LABEL_COUNTS


@dataclass
class Suite:
    args: argparse.Namespace
    plan: Plan
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Per step: the share of all CPUs that *other* processes used while it ran (noise indicator).
    steps: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)  # the same, per timed case
    _mark: Mark | None = None

    def log(self, msg: str) -> None:
        """Print a progress line and start a step; closes the previous step's CPU accounting."""
        now = mark()
        if self._mark is not None and self.steps:
            self.steps[-1]["others_cpu_share"] = others_share(self._mark, now)
            self.steps[-1]["seconds"] = now[0] - self._mark[0]
        self._mark = now
        if msg:
            self.steps.append({"step": msg})
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def noise_summary(attempts: list[dict[str, Any]], before: float) -> dict[str, Any]:
    """Time-weighted mean and max share of the CPUs other processes used during the kept attempts."""
    kept: dict[str, dict[str, Any]] = {}
    for a in attempts:  # the quietest attempt of each case is the one reported
        if a["case"] not in kept or a["others_cpu_share"] < kept[a["case"]]["others_cpu_share"]:
            kept[a["case"]] = a
    cases = list(kept.values())
    total = sum(c["seconds"] for c in cases)
    worst = max(cases, key=lambda c: c["others_cpu_share"], default=None)
    return {
        "before_start": before,
        "mean": sum(c["others_cpu_share"] * c["seconds"] for c in cases) / total if total else 0.0,
        "max": worst["others_cpu_share"] if worst else 0.0,
        "worst_case": worst["case"] if worst else "",
        "waited_s": sum(a["waited_s"] for a in attempts),
        "attempts": len(attempts),
    }


def wait_for_idle(max_s: float, threshold: float = NOISY_SHARE) -> float:
    """Wait (up to max_s seconds) until other processes use less than `threshold` of the CPUs
    for two seconds in a row; returns the seconds waited."""
    t0 = time.perf_counter()
    quiet_samples = 0
    while quiet_samples < 2 and time.perf_counter() - t0 < max_s:
        quiet_samples = quiet_samples + 1 if idle_check(1.0) < threshold else 0
    return time.perf_counter() - t0


def measure(calls: dict[str, Call], runs: int, warmup: int, blocks: int) -> dict[str, list[float]]:
    """Warm up every callable, then time them in alternating blocks (order reversed every other block)."""
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    blocks = max(1, min(blocks, runs))
    sizes = [runs // blocks + (1 if b < runs % blocks else 0) for b in range(blocks)]
    times: dict[str, list[float]] = {n: [] for n in names}
    for b, size in enumerate(sizes):
        for name in names if b % 2 == 0 else reversed(names):
            fn = calls[name]
            for _ in range(size):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return times


def time_case(
    suite: Suite,
    case: str,
    engines: Sequence[Engine],
    texts: Sequence[str],
    labels: Sequence[str],
    batch: int,
    runs: int,
) -> dict[str, Any]:
    """p50/p90 of each engine on one case; an engine that cannot run it gets {"error": ...}.

    The first call, which checks that the engine runs the case, counts as one warm-up run. Each
    attempt first waits (--wait-idle) for other processes to leave the CPUs; an attempt during
    which they used more than NOISY_SHARE of the CPUs is repeated (--retries) and the quietest
    attempt is kept. Every attempt's share is recorded in `suite.cases`.
    """
    calls: dict[str, Call] = {}
    out: dict[str, Any] = {}
    for e in engines:
        try:
            fn = e.make(texts, labels, batch)
            fn()
            calls[e.name] = fn
        except Exception as exc:  # recorded, e.g. too many labels for a uni-encoder
            out[e.name] = {"error": f"{type(exc).__name__}: {exc}"}
    plan, args = suite.plan, suite.args
    best: tuple[float, dict[str, list[float]]] | None = None
    for attempt in range(1 + args.retries):
        waited = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else 0.0
        start = mark()
        times = measure(calls, runs, max(0, plan.warmup - 1), plan.blocks)
        end = mark()
        share = others_share(start, end)
        suite.cases.append(
            {
                "case": case,
                "attempt": attempt + 1,
                "seconds": end[0] - start[0],
                "others_cpu_share": share,
                "waited_s": waited,
            }
        )
        if best is None or share < best[0]:
            best = (share, times)
        if share <= NOISY_SHARE:
            break
        suite.log(f"{case}: other processes used {share:.0%} of the CPUs")
    assert best is not None
    for name, kept in best[1].items():
        out[name] = summarize(kept)
        out[name]["others_cpu_share"] = best[0]
        setup_ms = getattr(calls[name], "setup_ms", None)
        if setup_ms is not None:
            out[name]["encode_labels_ms"] = setup_ms  # one call, untimed otherwise
    return {e.name: out[e.name] for e in engines}
