"""HTTP serving on one machine: the embedded server (`gliner-onnx serve`) against our Ray Serve
deployment (`--ray`) and gliner 0.2.29's own (`gliner.serve`), same checkpoint and machine.

    pip install -e ".[export,demo,serve,ray]"
    python benchmarks/bench_http.py                    # builds the demo MiniLM span checkpoint
    python benchmarks/bench_http.py --checkpoint CKPT --export EXPORT --rounds 2 --soak-seconds 600

Each round starts every engine in turn (shuffled), loads it with 1, 8, 32 and 128 closed-loop
aiohttp clients (one-sentence texts, 5 labels, `--seconds` each; a client told 503/429 waits
Retry-After, as a well-behaved client does), and stops it; the in-process ceiling (texts/s of
`GLiNER.inference` on batches, the embedded server's thread budget) runs in the same rotation.
Then, on the embedded server alone: an open-loop overload at `--overload`x the requests/s it
served at 8 clients (statuses, p99 of the accepted requests, the server's RSS; with
`--overload-rounds N`, N pairs of a 1-client run and an overload run in turn, and the median
of their p99 ratios), and a soak at
`--soak-load`x that for `--soak-seconds` (RSS, errors and p99 per window; a plot when
matplotlib is there). Start-up = from launching the engine to its first answer. The machine's
load (other processes' CPU share) is recorded beside every run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import LoadMeter, header, warn_if_dirty
from bench_serve import LABELS, Noise, percentile, sentences

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "http.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _summary(latencies: list[float], statuses: dict[int, int], wall: float) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in latencies)
    out: dict[str, Any] = {
        "ok": len(ms),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "seconds": wall,
        "requests_per_s": len(ms) / wall if wall else 0.0,
    }
    if ms:
        out.update(p50_ms=statistics.median(ms), p90_ms=percentile(ms, 90), p99_ms=percentile(ms, 99))
    return out


Log = list[tuple[float, float, int]]  # (sent, answered, status), perf_counter seconds


async def clients(url: str, texts: list[str], n: int, seconds: float, log: Log, retry: str) -> None:
    """`n` closed-loop clients for `seconds`. `retry`: "after" waits Retry-After on a 503/429
    (a well-behaved client), "at-once" retries at once (many real clients: a retry storm)."""
    import aiohttp

    deadline = time.perf_counter() + seconds

    async def client(k: int, session: aiohttp.ClientSession) -> None:
        i = k
        while time.perf_counter() < deadline:
            body = {"text": texts[i % len(texts)], "labels": LABELS}
            i += n
            t0 = time.perf_counter()
            try:
                async with session.post(url, json=body) as resp:
                    await resp.read()
                    status, wait = resp.status, resp.headers.get("Retry-After")
            except aiohttp.ClientError:
                status, wait = -1, None
            log.append((t0, time.perf_counter(), status))
            if status != 200 and retry == "after" and wait is not None:
                await asyncio.sleep(min(float(wait), max(0.0, deadline - time.perf_counter())))

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=n), timeout=timeout) as session:
        await asyncio.gather(*(client(k, session) for k in range(n)))


async def closed_loop(url: str, texts: list[str], clients_: int, seconds: float) -> dict[str, Any]:
    """`clients_` clients posting back to back for `seconds`; 503/429 wait Retry-After."""
    log: Log = []
    t0 = time.perf_counter()
    await clients(url, texts, clients_, seconds, log, "after")
    wall = time.perf_counter() - t0
    statuses: dict[int, int] = {}
    for *_t, status in log:
        statuses[status] = statuses.get(status, 0) + 1
    latencies = [t1 - t0 for t0, t1, status in log if status == 200]
    return {"clients": clients_, **_summary(latencies, statuses, wall)}


async def open_loop(
    url: str, texts: list[str], rate: float, seconds: float, window_s: float = 0.0, sample: Any = None
) -> dict[str, Any]:
    """Requests sent at `rate` per second (Poisson arrivals) whatever the answers; with
    `window_s`, per-window statistics (and `sample()`'s value, e.g. the server's RSS)."""
    import aiohttp

    rng = random.Random(0)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    windows: list[dict[str, Any]] = []
    current: list[float] = []
    current_errors = [0]

    async def one(i: int, session: aiohttp.ClientSession) -> None:
        t0 = time.perf_counter()
        try:
            async with session.post(url, json={"text": texts[i % len(texts)], "labels": LABELS}) as resp:
                await resp.read()
                status = resp.status
        except aiohttp.ClientError:
            status = -1
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            latencies.append(time.perf_counter() - t0)
            current.append(time.perf_counter() - t0)
        elif status not in (503, 429):
            current_errors[0] += 1

    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as s:
        tasks = []
        t0 = time.perf_counter()
        next_at, next_window, i = t0, t0 + window_s, 0
        while (now := time.perf_counter()) < t0 + seconds:
            if window_s and now >= next_window:
                ms = sorted(x * 1000 for x in current)
                windows.append(
                    {
                        "t_s": round(now - t0, 1),
                        "ok": len(ms),
                        "errors": current_errors[0],
                        "p99_ms": percentile(ms, 99) if ms else None,
                        "sample": sample() if sample else None,
                    }
                )
                current.clear()
                current_errors[0] = 0
                next_window += window_s
            if now >= next_at:
                tasks.append(asyncio.ensure_future(one(i, s)))
                i += 1
                next_at += rng.expovariate(rate)
                continue
            await asyncio.sleep(min(next_at, next_window if window_s else next_at) - now)
            tasks = [t for t in tasks if not t.done()]
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    out = {"rate_per_s": rate, "sent": i, **_summary(latencies, statuses, wall)}
    if window_s:
        out["windows"] = windows
    return out


def rss_mb(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def _post_ok(url: str, body: dict[str, Any]) -> bool:
    import urllib.request

    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status == 200
    except Exception:
        return False


def wait_first_answer(
    url: str, t0: float, proc: subprocess.Popen[bytes] | None = None, limit: float = 600
) -> float:
    body = {"text": "Angela Merkel visited Paris.", "labels": LABELS}
    while not _post_ok(url, body):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        if time.perf_counter() - t0 > limit:
            raise RuntimeError(f"no answer from {url} in {limit} s")
        time.sleep(0.05)
    return time.perf_counter() - t0


# The embedded server's variants, for the choice of its defaults (the same app each time).
VARIANTS = {
    "embedded": [],
    "embedded-2x1": ["--workers", "2", "--threads", "1"],  # 2 workers x 1 ORT thread (default: 1 x 2)
    "embedded-batch1": ["--max-batch-size", "1"],  # no micro-batching (default: up to 8)
    "embedded-tight": ["--max-batch-size", "2", "--max-queue", "2"],  # latency first under overload
    "embedded-shed2": ["--shed-batch-size", "2"],  # while shedding: batches of 2, 4 texts in at most
}


class Embedded:
    """`gliner-onnx serve EXPORT` in a subprocess (uvicorn) or the same app under granian."""

    def __init__(self, args: argparse.Namespace, server: str = "uvicorn", extra: list[str] | None = None):
        self.args, self.server, self.port, self.extra = args, server, free_port(), extra or []
        self.url = f"http://127.0.0.1:{self.port}/gliner"

    def start(self) -> float:
        t0 = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if self.server == "uvicorn":
            cmd = [
                sys.executable,
                "-m",
                "gliner_onnx.cli",
                "serve",
                self.args.export,
                "--port",
                str(self.port),
                *self.args.serve_args,
                *self.extra,
            ]
        else:  # the same app, under granian's one worker process (for the choice of server)
            env["GLINER_BENCH_EXPORT"] = self.args.export
            cmd = [
                sys.executable,
                "-m",
                "granian",
                "--interface",
                "asgi",
                "--factory",
                "--workers",
                "1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-ws",
                "bench_http:granian_app",
            ]
        self.proc = subprocess.Popen(cmd, env=env, cwd=str(Path(__file__).parent), stdout=subprocess.DEVNULL)
        return wait_first_answer(self.url, t0, self.proc)

    @property
    def pid(self) -> int:
        import psutil

        children = psutil.Process(self.proc.pid).children(recursive=True)
        return children[-1].pid if self.server == "granian" and children else self.proc.pid

    def stop(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(60)
        return {"exit_status": rc, "stop_s": time.perf_counter() - t0}


def granian_app() -> Any:
    from gliner_onnx.serve import AppSettings, build_app

    return build_app(AppSettings(os.environ["GLINER_BENCH_EXPORT"]))


class RayEngine:
    """Our Ray Serve deployment or gliner's own, 2 replicas x 1 CPU, on this process's Ray."""

    def __init__(self, args: argparse.Namespace, name: str):
        self.args, self.name, self.port = args, name, args.ray_port
        self.prefix = "/ours" if name == "ours-ray" else "/gliner"  # both apps on one Serve proxy
        self.url = f"http://127.0.0.1:{self.port}{self.prefix}"

    def start(self) -> float:
        t0 = time.perf_counter()
        if self.name == "ours-ray":
            from gliner_onnx.ray import ServeConfig, start

            start(
                ServeConfig(
                    self.args.export,
                    port=self.port,
                    route_prefix=self.prefix,
                    replicas=2,
                    cpus_per_replica=1.0,
                    max_batch_size=32,
                    batch_wait_timeout_ms=5,
                )
            )
        else:
            from gliner.serve import GLiNERServeConfig
            from gliner.serve import serve as gliner_serve

            gliner_serve(
                GLiNERServeConfig(
                    model=self.args.checkpoint,
                    device="cpu",
                    dtype="float32",
                    enable_compilation=False,
                    num_gpus_per_replica=0,
                    num_replicas=2,
                    num_cpus_per_replica=1.0,
                    tokenizer_threads=1,
                    max_model_len=384,
                    max_span_width=12,
                    max_batch_size=32,
                    batch_wait_timeout_ms=5.0,
                    http_port=self.port,
                    route_prefix="/gliner",
                )
            )
        return wait_first_answer(self.url, t0)

    def stop(self) -> dict[str, Any]:
        from ray import serve

        serve.shutdown()
        return {}


def in_process(args: argparse.Namespace, texts: list[str], seconds: float) -> dict[str, Any]:
    """texts/s of GLiNER.inference on batches of `max_batch`, the embedded server's threads."""
    from gliner_onnx import GLiNER, SessionOptions

    if not hasattr(in_process, "model"):
        in_process.model = GLiNER.from_pretrained(  # type: ignore[attr-defined]
            args.export,
            session_options=SessionOptions(intra_op_num_threads=args.threads, inter_op_num_threads=1),
        )
    model = in_process.model  # type: ignore[attr-defined]
    model.inference(texts[:8], LABELS, batch_size=args.batch)
    n, i, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.inference(
            [texts[(i + j) % len(texts)] for j in range(args.batch)], LABELS, batch_size=args.batch
        )
        n, i = n + args.batch, i + args.batch
    return {"texts_per_s": n / (time.perf_counter() - t0), "threads": args.threads, "batch": args.batch}


def _burst(url: str, texts: list[str], clients: int, seconds: float) -> dict[str, Any]:
    with Noise() as noise:
        out = asyncio.run(closed_loop(url, texts, clients, seconds))
    out["others_cpu_share"] = round(noise.share, 3)
    return out


def alternate(engines: dict[str, Any], args: argparse.Namespace, texts: list[str]) -> list[dict[str, Any]]:
    """Every engine is up; each round loads each concurrency on every engine in turn
    (shuffled), so that engines compared at one concurrency ran seconds apart."""
    rounds = []
    for r in range(args.rounds):
        result: dict[str, Any] = {}
        for c in args.clients:
            order = random.Random(1000 * r + c).sample(sorted(engines), len(engines))
            for name in order:
                if name == "in-process":
                    with Noise() as noise:
                        res = in_process(args, texts, args.seconds)
                    res["others_cpu_share"] = round(noise.share, 3)
                else:
                    res = _burst(engines[name].url, texts, c, args.seconds)
                    print(
                        f"round {r + 1}, {c:3d} clients, {name:17s} {res['requests_per_s']:6.1f} req/s, "
                        f"p99 {res.get('p99_ms', 0):7.1f} ms, {res['statuses']}, "
                        f"others {res['others_cpu_share']:.2f}",
                        file=sys.stderr,
                    )
                result.setdefault(name, {})[str(c)] = res
        rounds.append(result)
    return rounds


def overload_and_soak(
    engine: Embedded, args: argparse.Namespace, texts: list[str], capacity: float
) -> dict[str, Any]:
    pid = engine.pid
    asyncio.run(closed_loop(engine.url, texts, 8, 3.0))  # warm-up
    out: dict[str, Any] = {"capacity_req_per_s": capacity, "pairs": []}
    rss0 = rss_mb(pid)
    for _ in range(args.overload_rounds):  # unloaded and overloaded in turn: the load drifts
        with Noise() as noise:
            out["unloaded"] = asyncio.run(closed_loop(engine.url, texts, 1, args.seconds))
        out["unloaded"]["others_cpu_share"] = round(noise.share, 3)
        with Noise() as noise:
            ov = asyncio.run(open_loop(engine.url, texts, args.overload * capacity, args.seconds * 2))
        ov.update(others_cpu_share=round(noise.share, 3), rss_before_mb=rss0, rss_after_mb=rss_mb(pid))
        ov["rss_growth"] = ov["rss_after_mb"] / rss0 - 1
        ov["p99_x_unloaded"] = ov.get("p99_ms", float("nan")) / out["unloaded"]["p99_ms"]
        out["overload"] = ov
        out["pairs"].append(
            {"unloaded": out["unloaded"], **{k: ov.get(k) for k in ("statuses", "p99_ms", "p99_x_unloaded")}}
        )
        print(
            f"  overload {args.overload}x: {ov['statuses']}, p99 {ov.get('p99_ms')} ms "
            f"({ov['p99_x_unloaded']:.2f}x unloaded), RSS +{100 * ov['rss_growth']:.1f}%",
            file=sys.stderr,
        )
    out["p99_x_unloaded_median"] = statistics.median(x["p99_x_unloaded"] for x in out["pairs"])
    if args.soak_seconds > 0:
        with Noise() as noise:
            soak = asyncio.run(
                open_loop(
                    engine.url,
                    texts,
                    args.soak_load * capacity,
                    args.soak_seconds,
                    window_s=args.soak_window,
                    sample=lambda: rss_mb(pid),
                )
            )
        soak["others_cpu_share"] = round(noise.share, 3)
        rss = [w["sample"] for w in soak["windows"]]
        warm = rss[len(rss) // 5 :] or rss
        soak["rss_after_warmup_range"] = [min(warm), max(warm)]
        soak["rss_drift_after_warmup"] = max(warm) / min(warm) - 1
        soak["errors"] = sum(w["errors"] for w in soak["windows"])
        out["soak"] = soak
        print(f"  soak: {soak['statuses']}, RSS {min(warm):.0f}-{max(warm):.0f} MB", file=sys.stderr)
    return out


def plot_panels(
    path: Path,
    title: str,
    xlabel: str,
    t: list[float],
    panels: dict[str, list[Any]],
    marks: tuple[float, ...] = (),
) -> bool:
    """One panel per series over the same x (dotted lines at `marks`); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels) + 0.6), sharex=True)
    for ax, (ylabel, ys) in zip(axes, panels.items()):
        ax.plot(t, ys)
        ax.set_ylabel(ylabel)
        for x in marks:
            ax.axvline(x, color="grey", linestyle=":")
    axes[-1].set_xlabel(xlabel)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    return True


def plot_soak(soak: dict[str, Any], path: Path) -> bool:
    w = soak["windows"]
    panels = {
        "server RSS (MB)": [x["sample"] for x in w],
        "p99 (ms)": [x["p99_ms"] for x in w],
        "errors": [x["errors"] for x in w],
    }
    title = f"soak at {soak['rate_per_s']:.0f} req/s: embedded server"
    return plot_panels(path, title, "seconds", [x["t_s"] for x in w], panels)


# --- stress: overload, retry storms, recovery, slow and idle connections (--stress) ---------------


def window(log: Log, start: float, end: float) -> dict[str, Any]:
    """Answers that arrived in [start, end): goodput (200s/s), their p99, the statuses."""
    rows = [r for r in log if start <= r[1] < end]
    ms = sorted(1000 * (t1 - t0) for t0, t1, status in rows if status == 200)
    statuses: dict[str, int] = {}
    for *_t, status in rows:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "goodput_per_s": len(ms) / (end - start),
        "ok_share": len(ms) / len(rows) if rows else None,
        "p99_ms": percentile(ms, 99) if ms else None,
        "statuses": statuses,
    }


class CpuShare:
    """CPU (in cores) of the server process and of this one (the load generator) over a run."""

    def __init__(self, pid: int):
        import psutil

        self.procs = {"server": psutil.Process(pid), "load_generator": psutil.Process()}

    def __enter__(self) -> CpuShare:
        self.t0 = time.perf_counter()
        self.c0 = {k: sum(p.cpu_times()[:2]) for k, p in self.procs.items()}
        return self

    def __exit__(self, *_exc: object) -> None:
        wall = time.perf_counter() - self.t0
        self.cores = {k: (sum(p.cpu_times()[:2]) - self.c0[k]) / wall for k, p in self.procs.items()}


def loaded(engine: Embedded, texts: list[str], n: int, seconds: float, retry: str) -> dict[str, Any]:
    """`n` clients for `seconds`: goodput, accepted p99, statuses; the CPU of the server, of the
    load generator and of other processes."""
    log: Log = []
    with Noise() as noise, CpuShare(engine.pid) as cpu:
        t0 = time.perf_counter()
        asyncio.run(clients(engine.url, texts, n, seconds, log, retry))
    out = {"clients": n, "retry": retry, **window(log, t0, time.perf_counter())}
    out.update({f"{k}_cpu_cores": round(v, 2) for k, v in cpu.cores.items()}, others_cpu_share=noise.share)
    return out


def spike(engine: Embedded, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """4 clients (under capacity), then 64 that retry at once for `--spike-seconds`, then the 4
    again, and a burst of 6 requests 1 s after the spike: goodput, p99 and statuses per 100 ms
    window; recovery = from the spike's end to the end of the last window where the 4 clients
    got under 99% 200s."""
    import aiohttp

    before: Log = []
    storm: Log = []
    after: Log = []

    async def burst(n: int) -> list[int]:
        async with aiohttp.ClientSession() as session:

            async def one() -> int:
                async with session.post(engine.url, json={"text": texts[0], "labels": LABELS}) as resp:
                    await resp.read()
                    return resp.status

            return list(await asyncio.gather(*(one() for _ in range(n))))

    async def run() -> tuple[float, float, list[int]]:
        await clients(engine.url, texts, 4, 3.0, before, "at-once")
        start = time.perf_counter()
        await clients(engine.url, texts, 64, args.spike_seconds, storm, "at-once")
        end = time.perf_counter()
        late = asyncio.ensure_future(clients(engine.url, texts, 4, 5.0, after, "at-once"))
        await asyncio.sleep(1.0)
        six = await burst(6)
        await late
        return start, end, six

    with Noise() as noise:
        t0 = time.perf_counter()
        start, end, six = asyncio.run(run())
    step = 0.1
    timeline = []
    for k in range(int((end + 5.0 - t0) / step)):
        a = t0 + k * step
        w = window(before + storm + after, a, a + step)
        timeline.append({"t_s": round(a - end, 2), **w})
    late = [w for w in timeline if w["t_s"] >= 0 and w["t_s"] < 4.9]
    unserved = [w["t_s"] + step for w in late if w["ok_share"] is not None and w["ok_share"] < 0.99]
    return {
        "before": window(before, t0, start),
        "spike": window(storm, start, end),
        "after_1s": window(after, end + 1.0, end + 5.0),
        "spike_s": end - start,
        "recovery_s": round(max(unserved, default=0.0), 2),
        "burst_of_6_at_1s": six,
        "timeline": timeline,
        "others_cpu_share": noise.share,
    }


def slow_clients(engine: Embedded, texts: list[str], seconds: float) -> dict[str, Any]:
    """4 normal clients alone, then beside 200 connections sending their heads a byte a second,
    200 sending their bodies so and 1,000 idle keep-alive ones: their p99 and the server's RSS."""
    port = int(engine.url.split(":")[2].split("/")[0])

    async def dribble(part: str, stop: asyncio.Event) -> None:
        head, body = b"POST /gliner HTTP/1.1\r\nHost: x\r\n", b'{"text": "Paris", "labels": ["city"]}'
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        if part == "body":
            writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode())
        for byte in head * 100 if part == "head" else body * 100:
            if stop.is_set() or reader.at_eof():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(1.0)
        writer.close()

    async def run() -> dict[str, Any]:
        alone: Log = []
        a0 = time.perf_counter()
        await clients(engine.url, texts, 4, seconds, alone, "at-once")
        a1 = time.perf_counter()
        rss0 = rss_mb(engine.pid)
        stop = asyncio.Event()
        idle = []
        for _ in range(1000):
            idle.append(await asyncio.open_connection("127.0.0.1", port))
        slow = [asyncio.ensure_future(dribble(p, stop)) for p in ("head", "body") * 200]
        await asyncio.sleep(1.0)
        beside: Log = []
        t0 = time.perf_counter()
        await clients(engine.url, texts, 4, seconds, beside, "at-once")
        t1 = time.perf_counter()
        rss1 = rss_mb(engine.pid)
        stop.set()
        await asyncio.gather(*slow)
        for _r, w in idle:
            w.close()
        a, b = window(alone, a0, a1 + 1e-3), window(beside, t0, t1 + 1e-3)
        return {
            "alone": a,
            "beside_slow_and_idle": b,
            "p99_ratio": b["p99_ms"] / a["p99_ms"],
            "rss_mb": [rss0, rss1],
            "rss_growth": rss1 / rss0 - 1,
        }

    with Noise() as noise:
        out = asyncio.run(run())
    out["others_cpu_share"] = noise.share
    return out


STRESS_VARIANTS = {  # the defaults, and the alternatives they were chosen over
    "defaults": [],
    **{f"shed-batch-{b}": ["--shed-batch-size", str(b)] for b in (2, 4, 8)},
    **{f"refusal-delay-{d}": ["--refusal-delay-ms", str(d)] for d in (0, 50, 100, 200)},
}


def stress(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    """Every variant's server in turn, per round (shuffled): capacity (8 clients), 4x overload
    (32 clients honouring Retry-After; 64 retrying at once), a spike and its recovery; then
    slow and idle connections on the defaults."""
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        result: dict[str, Any] = {}
        for name in random.Random(r).sample(sorted(args.stress_variants), len(args.stress_variants)):
            engine = Embedded(args, extra=STRESS_VARIANTS[name])
            engine.start()
            try:
                asyncio.run(closed_loop(engine.url, texts, 8, 2.0))  # warm-up
                alone = loaded(engine, texts, 1, args.seconds, "after")
                cap = loaded(engine, texts, 8, args.seconds, "after")
                res: dict[str, Any] = {"unloaded": alone, "capacity": cap}
                for n, retry in ((32, "after"), (64, "at-once")):
                    ov = loaded(engine, texts, n, args.seconds, retry)
                    ov["x_capacity"] = ov["goodput_per_s"] / cap["goodput_per_s"]
                    ov["p99_x_unloaded"] = (ov["p99_ms"] or float("nan")) / alone["p99_ms"]
                    res[f"overload_{n}_{retry}"] = ov
                res["spike"] = spike(engine, texts, args)
                if name == "defaults" and r == 0:
                    res["slow_clients"] = slow_clients(engine, texts, args.seconds)
            finally:
                engine.stop()
            result[name] = res
            print(
                f"round {r + 1} {name:16s} capacity {cap['goodput_per_s']:.0f}/s; 4x overload "
                f"{res['overload_32_after']['x_capacity']:.2f}x (Retry-After), "
                f"{res['overload_64_at-once']['x_capacity']:.2f}x (at once); "
                f"recovery {res['spike']['recovery_s']} s",
                file=sys.stderr,
            )
        rounds.append(result)
    summary: dict[str, Any] = {}
    for name in args.stress_variants:
        runs = [rd[name] for rd in rounds]
        summary[name] = {
            "capacity_per_s": statistics.median(x["capacity"]["goodput_per_s"] for x in runs),
            "unloaded_p99_ms": statistics.median(x["unloaded"]["p99_ms"] for x in runs),
            **{
                f"{key}_{field}": statistics.median(x[key][field] for x in runs)
                for key in ("overload_32_after", "overload_64_at-once")
                for field in ("x_capacity", "p99_ms", "p99_x_unloaded", "server_cpu_cores")
            },
            "recovery_s": max(x["spike"]["recovery_s"] for x in runs),
        }
    return {"rounds": rounds, "summary": summary}


def plot_spike(spike_run: dict[str, Any], path: Path) -> bool:
    tl = spike_run["timeline"]
    panels = {
        "200s per second": [w["goodput_per_s"] for w in tl],
        "p99 of 200s (ms)": [w["p99_ms"] for w in tl],
    }
    title = "4 clients, then 64 retrying at once, then 4: gliner-onnx serve"
    t = [w["t_s"] for w in tl]
    return plot_panels(path, title, "seconds from the spike's end", t, panels, (-spike_run["spike_s"], 0.0))


def _ratios(rounds: list[dict[str, Any]], clients: list[int]) -> dict[str, Any]:
    """Per round and concurrency: the embedded server against each other engine (same round)."""
    out: dict[str, Any] = {}
    for c in map(str, clients):
        rows = []
        for r in rounds:
            e = r.get("embedded", {}).get(c)
            if not e:
                continue
            row = {"embedded_req_per_s": e["requests_per_s"], "embedded_p99_ms": e.get("p99_ms")}
            for other in [k for k in r if k not in ("embedded", "in-process")]:
                o = r[other].get(c)
                if o and o["requests_per_s"]:
                    row[f"x_{other}"] = e["requests_per_s"] / o["requests_per_s"]
                    row[f"p99_over_{other}"] = (e.get("p99_ms") or 0) / (o.get("p99_ms") or float("inf"))
            if "in-process" in r:
                row["x_in_process"] = e["requests_per_s"] / r["in-process"][c]["texts_per_s"]
            rows.append(row)
        out[c] = {
            "rounds": rows,
            "median": {k: statistics.median([x[k] for x in rows if k in x]) for k in rows[0]} if rows else {},
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="gliner checkpoint directory (default: build the demo)")
    p.add_argument("--export", help="our export of --checkpoint (default: export it)")
    p.add_argument(
        "--engines",
        nargs="+",
        default=["embedded", "ours-ray", "gliner-ray", "in-process"],
        help="of embedded (and its variants: embedded-2x1, embedded-batch1, embedded-granian), ours-ray, "
        "gliner-ray, in-process",
    )
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--seconds", type=float, default=10.0, help="load per concurrency level")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="the embedded server's ORT threads (its default)")
    p.add_argument("--batch", type=int, default=8, help="the in-process ceiling's batch (the server's max)")
    p.add_argument("--serve-args", nargs="*", default=[], help="extra options of gliner-onnx serve")
    p.add_argument("--overload", type=float, default=4.0, help="overload: this many x capacity")
    p.add_argument("--overload-rounds", type=int, default=1, help="unloaded + overload pairs, in turn")
    p.add_argument("--soak-load", type=float, default=0.8)
    p.add_argument("--soak-seconds", type=float, default=0.0, help="soak length (the issue: 600)")
    p.add_argument("--soak-window", type=float, default=10.0)
    p.add_argument("--ray-port", type=int, default=free_port())
    p.add_argument(
        "--stress",
        action="store_true",
        help="only the stress runs (overload, retry storm and recovery, slow and idle connections)",
    )
    p.add_argument("--stress-variants", nargs="+", default=["defaults"], choices=list(STRESS_VARIANTS))
    p.add_argument("--spike-seconds", type=float, default=5.0)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args()
    if args.checkpoint is None:
        from gliner_onnx.export.demo import build_demo

        args.checkpoint = tempfile.mkdtemp(prefix="bench-http-ckpt-")
        build_demo("uniencoder_span").save_pretrained(args.checkpoint)
    if args.export is None:
        from gliner_onnx.export import export_model

        args.export = str(Path(tempfile.mkdtemp(prefix="bench-http-onnx-")) / "export")
        export_model(args.checkpoint, args.export, log=lambda _m: None)
    texts = sentences(200)
    load = LoadMeter()
    warn_if_dirty(header()["git"])
    record: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "checkpoint": "demo: all-MiniLM-L6-v2 backbone, untrained span heads (uniencoder_span)",
        "texts": "one sentence, 12-20 words",
        "labels": LABELS,
        "ray_engines": "2 replicas x 1 CPU, max_batch_size 32, 5 ms batch wait",
        "embedded": f"gliner-onnx serve defaults {args.serve_args}",
    }
    if args.stress:
        out = Path(args.out if args.out != DEFAULT_OUT else DEFAULT_OUT.with_name("http_stress.json"))
        record["stress"] = stress(args, texts)
        first = record["stress"]["rounds"][0]
        spike_run = first.get("defaults", next(iter(first.values())))["spike"]
        if plot_spike(spike_run, out.with_suffix(".png")):
            record["spike_plot"] = out.with_suffix(".png").name
        record.update(header(load))
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(record["stress"]["summary"], indent=2))
        print(f"results in {out}")
        return 0
    if any(e.endswith("-ray") for e in args.engines):
        import ray

        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)  # logical: engines idle in turn
    engines: dict[str, Any] = {}
    startup: dict[str, float] = {}
    for name in args.engines:  # started one at a time; start-up = launch to first answer
        if name == "in-process":
            engines[name] = None
            continue
        if name in VARIANTS:
            engines[name] = Embedded(args, extra=VARIANTS[name])
        elif name == "embedded-granian":
            engines[name] = Embedded(args, "granian")
        else:
            engines[name] = RayEngine(args, name)
        startup[name] = engines[name].start()
        print(f"{name}: first answer after {startup[name]:.1f} s", file=sys.stderr)
        asyncio.run(closed_loop(engines[name].url, texts, 8, 2.0))  # warm-up
    record["startup_s"] = startup
    try:
        rounds = alternate(engines, args, texts)
        record["rounds"] = rounds
        record["ratios"] = _ratios(rounds, args.clients)
        for name in [n for n in engines if n in VARIANTS] if args.overload > 0 else []:
            capacity = statistics.median(r[name]["8"]["requests_per_s"] for r in rounds)
            print(f"overload: {name}", file=sys.stderr)
            soak_s, args.soak_seconds = args.soak_seconds, args.soak_seconds if name == "embedded" else 0
            record.setdefault("overload", {})[name] = overload_and_soak(engines[name], args, texts, capacity)
            args.soak_seconds = soak_s
        if "embedded" in record.get("overload", {}):
            record["overload_soak"] = record["overload"]["embedded"]
            soak = record["overload_soak"].get("soak")
            if soak and plot_soak(soak, Path(args.out).with_suffix(".png")):
                record["soak_plot"] = Path(args.out).with_suffix(".png").name
    finally:
        record["stop"] = {n: e.stop() for n, e in engines.items() if isinstance(e, Embedded)}
        if any(e.endswith("-ray") for e in args.engines):
            import ray
            from ray import serve

            serve.shutdown()
            ray.shutdown()
    record.update(header(load))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["ratios"], indent=2))
    print(f"results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
