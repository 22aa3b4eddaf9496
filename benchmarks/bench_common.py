"""What every benchmark shares: the test text, percentiles, timing, machine and git state, load,
entity F1, peak RSS and gliner's word regex. One definition of each, used by every script here.

Percentiles: linear interpolation between the order statistics (numpy's default `linear`,
Hyndman and Fan's type 7, `statistics.quantiles(method="inclusive")`): p50 is the median, and
p0 / p100 are the minimum and maximum. Every results file names the definition
(`PERCENTILE_METHOD`).

Results files carry `header(...)`: the command, the UTC time, the machine (CPU model, cores, the
AVX2 / AVX-512 / VNNI / BF16 flags: int8 and bf16 speed depend on them), the git commit and
whether the tree was dirty when the run started (a published figure needs a clean one), the
package versions and the machine's load.
"""

from __future__ import annotations

import math
import os
import platform
import random
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPO = HERE.parent

# One ~60-word text and 5 labels: the batch-1 case of every benchmark.
TEXT = (
    "On 3 March 2021 Angela Merkel met Emmanuel Macron and Ursula von der Leyen in Paris to discuss "
    "the European Union's vaccine strategy with executives from Pfizer, BioNTech and Moderna, while "
    "protesters gathered near the Élysée Palace and journalists from Le Monde, the BBC and Reuters "
    "waited outside for a statement that finally came shortly after nine in the evening."
)
LABELS = ["person", "organization", "location", "date", "event"]

# gliner 0.2.29's default word splitter (`WhitespaceTokenSplitter`).
WORD_RE = re.compile(r"\w+(?:[-_]\w+)*|\S")

PERCENTILE_METHOD = "linear interpolation between order statistics (numpy 'linear', type 7)"
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


# ------------------------------------------------------------------------------- percentiles
def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0 <= q <= 100) of `values`, linearly interpolated (see the module)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100 or math.isnan(q):
        raise ValueError(f"q must be in [0, 100], got {q}")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / min in milliseconds, and the number of runs, of timings in seconds."""
    ms = [t * 1000.0 for t in seconds]
    return {
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "min_ms": min(ms),
        "runs": len(ms),
    }


def shuffled_rounds(
    calls: Mapping[str, Callable[[], Any]], rounds: int, runs: int, rng: random.Random | None = None
) -> dict[str, list[list[float]]]:
    """`rounds` rounds; in each, every call in a new random order (`rng`, or the `random`
    module's), `runs` timed calls of it in a row. Per call: its timings (seconds), one list
    per round. Warm-up is the caller's."""
    shuffle = rng.shuffle if rng is not None else random.shuffle
    times: dict[str, list[list[float]]] = {name: [] for name in calls}
    for _ in range(rounds):
        order = list(calls)
        shuffle(order)
        for name in order:
            fn, seconds = calls[name], []
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                seconds.append(time.perf_counter() - t0)
            times[name].append(seconds)
    return times


def timed(fn: Callable[[], Any], runs: int, warmup: int) -> list[float]:
    """`warmup` untimed calls, then the wall time of `runs` calls (seconds, perf_counter)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# ------------------------------------------------------------------------------------ entities
def entity_keys(entities: Sequence[dict[str, Any]]) -> set[tuple[int, int, str]]:
    return {(int(e["start"]), int(e["end"]), str(e["label"])) for e in entities}


def entity_f1(
    reference: Sequence[Sequence[dict[str, Any]]], predicted: Sequence[Sequence[dict[str, Any]]]
) -> dict[str, Any]:
    """Entity-level precision, recall and F1 of `predicted` against `reference` (one entity list
    per text; an entity matches on text, start, end and label exactly), and how many texts got
    identical entity sets. Nothing predicted and nothing expected is a perfect score."""
    if len(reference) != len(predicted):
        raise ValueError(f"{len(reference)} reference texts but {len(predicted)} predicted")
    tp = n_pred = n_ref = same = 0
    for r, p in zip(reference, predicted):
        rk, pk = entity_keys(r), entity_keys(p)
        tp += len(rk & pk)
        n_pred += len(pk)
        n_ref += len(rk)
        same += rk == pk
    precision = tp / n_pred if n_pred else float(not n_ref)
    recall = tp / n_ref if n_ref else float(not n_pred)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "entities": n_pred,
        "reference_entities": n_ref,
        "identical_texts": same,
        "texts": len(reference),
    }


# ---------------------------------------------------------------------------------- memory
def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB): VmHWM where /proc has it.

    ru_maxrss also counts the parent's resident memory at fork time (Linux keeps it across exec),
    which would give every child process the benchmark process's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# ------------------------------------------------------------------------- machine and load
def cpu_flags() -> list[str]:
    """Which of CPU_FLAGS this CPU has (from /proc/cpuinfo; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    return [f for f in CPU_FLAGS if f in have]


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "",
        )
    except OSError:
        pass
    return {
        "cpu_model": cpu or platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_flags": cpu_flags(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def git_state() -> dict[str, Any]:
    """The commit this checkout is at and whether its tree differs from it (benchmarks/results/
    ignored: a run writes there). A published figure needs `dirty: false`."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
        return proc.stdout if proc.returncode == 0 else ""

    # porcelain lines: two status letters, a space, the path (relative to the repository root)
    paths = [line[3:] for line in git("status", "--porcelain").splitlines() if len(line) > 3]
    changed = [p for p in paths if not p.startswith("benchmarks/results/")]
    commit = git("rev-parse", "HEAD").strip() or None
    return {"commit": commit, "dirty": bool(changed), "changed": changed[:20]}


def versions() -> dict[str, str]:
    """Versions of the packages the run imported (nothing is imported here)."""
    out = {"python": sys.version.split()[0]}
    for name in ("gliner_onnx", "onnxruntime", "numpy", "tokenizers", "torch", "transformers", "gliner"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = str(getattr(mod, "__version__", "?"))
    return out


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its waited children)."""
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    try:
        vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return own, own
    busy = sum(vals) - vals[3] - vals[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK"), own


Mark = tuple[float, float, float]  # (wall, machine busy CPU s, own CPU s)


def mark() -> Mark:
    return (time.perf_counter(), *cpu_seconds())


def others_share(start: Mark, end: Mark) -> float:
    """Share of all CPUs used by other processes between two marks."""
    wall = end[0] - start[0]
    other = (end[1] - start[1]) - (end[2] - start[2])
    return max(0.0, other / (wall * (os.cpu_count() or 1))) if wall > 0 else 0.0


def idle_check(seconds: float = 2.0) -> float:
    """Share of all CPUs that other processes use right now, sampled over `seconds`."""
    start = mark()
    time.sleep(seconds)
    return others_share(start, mark())


class LoadMeter:
    """Records how much of the CPUs other processes used during a whole run (for the results)."""

    def __init__(self) -> None:
        self.before = idle_check(1.0)
        self.start = mark()
        self.loadavg_start = os.getloadavg()

    def summary(self) -> dict[str, Any]:
        return {
            "others_cpu_share_before": self.before,
            "others_cpu_share_during": others_share(self.start, mark()),
            "loadavg_start": list(self.loadavg_start),
            "loadavg_end": list(os.getloadavg()),
        }


def header(load: LoadMeter | None = None) -> dict[str, Any]:
    """The common part of every results file (see the module docstring)."""
    out: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "git": git_state(),
        "versions": versions(),
        "percentiles": PERCENTILE_METHOD,
    }
    if load is not None:
        out["load"] = load.summary()
    return out


def warn_if_dirty(git: dict[str, Any]) -> None:
    if git.get("dirty"):
        print(
            "warning: the tree differs from its commit; figures from this run cannot be published "
            f"(changed: {', '.join(git['changed'][:5])})",
            file=sys.stderr,
        )


@contextmanager
def quiet() -> Iterator[None]:
    """Silence stdout and stderr at the file-descriptor level (the exporter and quantizer are chatty)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
