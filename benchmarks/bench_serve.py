"""Ray Serve: our deployment against gliner 0.2.29's own (`gliner.serve`), same checkpoint and
machine; and a Ray Data corpus job against in-process `batch_predict_entities`.

    pip install -e ".[export,demo,ray]"
    python benchmarks/bench_serve.py                       # builds the demo MiniLM span checkpoint
    python benchmarks/bench_serve.py --checkpoint CKPT --export EXPORT   # reuse them

Serving: the same replicas for each engine (default 2 replicas x 1 CPU; ours: ONNX Runtime with
that many intra-op threads; gliner's: `GLiNERServeConfig(device="cpu", dtype="float32",
enable_compilation=False, num_gpus_per_replica=0, ...)` with as many torch threads), both with
`max_batch_size` 32 and a 5 ms batch wait. 8 and 32 concurrent HTTP clients (aiohttp, in this
process) each post one-sentence texts with 5 labels, one request after the other, for
`--seconds`; requests/s is completed requests over the wall time, latency percentiles over all of
them; the CPU time each kind of process (replicas, Serve's HTTP proxy, its controller, the
clients in this process, the rest of Ray) spent per completed request is recorded beside them.
Peak memory is the replica process's VmHWM. The engines run one after the other, in
`--rounds` alternating rounds.

Corpus: `--rows` one-sentence rows in a JSONL file; `gliner_onnx.ray.annotate_files` end to end
(start of the actor pool, reading, writing Parquet included) against one in-process
`batch_predict_entities` over the same texts already in memory, same threads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import header, percentile, warn_if_dirty  # noqa: E402

LABELS = ["person", "organization", "location", "date", "event"]
_PEOPLE = ["Angela Merkel", "Tim Cook", "Marie Curie", "Emmanuel Macron", "Serena Williams", "Satya Nadella"]
_ORGS = ["Siemens", "the United Nations", "Apple", "Le Monde", "the Red Cross", "BioNTech"]
_PLACES = ["Paris", "Berlin", "São Paulo", "Tokyo", "Nairobi", "Toronto"]
_DATES = ["on Monday", "in March 2021", "last week", "on 3 May", "in 1998", "yesterday"]
_EVENTS = ["the climate summit", "the annual meeting", "the World Cup final", "a press conference"]


def sentences(n: int, seed: int = 0) -> list[str]:
    """`n` one-sentence news-like texts (12-20 words)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        out.append(
            f"{rng.choice(_PEOPLE)} met executives from {rng.choice(_ORGS)} in {rng.choice(_PLACES)} "
            f"{rng.choice(_DATES)} ahead of {rng.choice(_EVENTS)}, officials said."
        )
    return out


def _machine_busy() -> float:
    """CPU seconds the whole machine has used (all but idle and iowait)."""
    vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")


_ROLES = (("ServeReplica", "replicas"), ("ProxyActor", "proxy"), ("ServeController", "controller"))


def _role(p: Any) -> str:
    """What a process of this benchmark's tree does: its Serve role, the clients, or other Ray."""
    if p.pid == os.getpid():
        return "clients"
    cmd = " ".join(p.cmdline())
    return next((role for key, role in _ROLES if key in cmd), "other ray")


def _tree_cpu(roles: dict[int, str] | None = None) -> dict[int, float]:
    """CPU seconds used so far by this process and each of its descendants (its Ray); with
    `roles`, each new pid's role is recorded there."""
    import psutil

    me = psutil.Process(os.getpid())
    out = {}
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
            if roles is not None and p.pid not in roles:
                roles[p.pid] = _role(p)
        except psutil.Error:
            pass
    return out


class Noise:
    """Share of all CPUs that other processes (not this one, not its Ray) used meanwhile.

    Our processes are sampled every 0.5 s, so that the CPU of a worker that exits before
    the end (an actor of a finished job) still counts as ours."""

    def __enter__(self) -> Noise:
        import threading

        self.roles: dict[int, str] = {}
        self.first = _tree_cpu(self.roles)
        self.last = dict(self.first)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.t0, self.busy0 = time.perf_counter(), _machine_busy()
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.5):
            self.last.update(_tree_cpu(self.roles))

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.last.update(_tree_cpu(self.roles))
        self.by_role: dict[str, float] = {}
        for pid, v in self.last.items():
            role = self.roles.get(pid, "other ray")
            self.by_role[role] = self.by_role.get(role, 0.0) + v - self.first.get(pid, 0.0)
        busy, wall = _machine_busy() - self.busy0, time.perf_counter() - self.t0
        ours = sum(v - self.first.get(pid, 0.0) for pid, v in self.last.items())
        self.share = max(0.0, (busy - ours) / (wall * (os.cpu_count() or 1))) if wall > 0 else 0.0


def wait_for_idle(max_s: float, threshold: float = 0.1) -> float:
    """Wait (up to max_s) until other processes use under `threshold` of the CPUs for 2 s."""
    t0 = time.perf_counter()
    quiet = 0
    while quiet < 2 and time.perf_counter() - t0 < max_s:
        with Noise() as n:
            time.sleep(1.0)
        quiet = quiet + 1 if n.share < threshold else 0
    return time.perf_counter() - t0


async def _load(urls: list[str], texts: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` closed-loop clients for `seconds`; client k posts to urls[k % len(urls)]."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(k: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        i = k
        url = urls[k % len(urls)]
        while time.perf_counter() < deadline:
            body = {"text": texts[i % len(texts)], "labels": LABELS, "threshold": 0.5}
            i += clients
            t0 = time.perf_counter()
            async with session.post(url, json=body) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
                    continue
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(k, session) for k in range(clients)))
        wall = time.perf_counter() - t0
    ms = [x * 1000 for x in latencies]
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "seconds": wall,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
    }


def _replica_memory(app: str) -> dict[str, float]:
    """Peak and current RSS (MB) of the replica processes of Serve app `app` (this Ray only)."""
    import psutil

    out: dict[str, float] = {}
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if f"ServeReplica:{app}:" not in " ".join(p.cmdline()):
                continue
            status = Path(f"/proc/{p.pid}/status").read_text()
        except (psutil.Error, OSError):
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        out["peak_rss_mb"] = max(out.get("peak_rss_mb", 0.0), int(fields["VmHWM"].split()[0]) / 1024)
        out["rss_mb"] = max(out.get("rss_mb", 0.0), int(fields["VmRSS"].split()[0]) / 1024)
    return out


def _post(url: str, body: dict[str, Any], timeout: float = 60) -> tuple[int, bytes]:
    """POST `body` as JSON: (HTTP status, response body); raises when there is no answer."""
    import urllib.request

    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read()


def _wait_ready(url: str, body: dict[str, Any], timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            if _post(url, body)[0] == 200:
                return
        except Exception:
            if time.time() > deadline:
                raise
        time.sleep(0.5)


def _direct_urls(args: argparse.Namespace, body: dict[str, Any]) -> list[str]:
    """The replicas' own HTTP endpoints (Ray Serve's direct ingress), found by probing the port
    range this benchmark gave it."""
    deadline = time.time() + 120
    while time.time() < deadline:
        found = []
        for port in range(args.port + 1, args.port + 17):
            url = f"http://127.0.0.1:{port}/gliner"
            try:
                if _post(url, body, timeout=30)[0] == 200:
                    found.append(url)
            except Exception:
                continue
        if len(found) >= args.replicas:
            return found
        time.sleep(1.0)
    raise RuntimeError(f"direct ingress: {args.replicas} replica port(s) expected, found {found}")


def _answers(url: str, texts: list[str]) -> list[list[tuple[int, int, str]]]:
    out = []
    for t in texts:
        ents = json.loads(_post(url, {"text": t, "labels": LABELS})[1])["entities"]
        out.append([(e["start"], e["end"], e["label"]) for e in ents])
    return out


def run_engine(name: str, args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    """Deploy one engine, load it at each concurrency, measure memory, tear it down."""
    from ray import serve

    cpus = args.cpus
    url = f"http://127.0.0.1:{args.port}/gliner"
    t0 = time.perf_counter()
    if name == "gliner-onnx":
        from gliner_onnx.ray import ServeConfig, start

        config = ServeConfig(
            args.export,
            port=args.port,
            replicas=args.replicas,
            cpus_per_replica=cpus,
            max_batch_size=32,
            batch_wait_timeout_ms=5,
        )
        start(config)
        app = config.app_name
    else:
        from gliner.serve import GLiNERServeConfig
        from gliner.serve import serve as gliner_serve

        gconfig = GLiNERServeConfig(
            model=args.checkpoint,
            device="cpu",
            dtype="float32",
            enable_compilation=False,
            num_gpus_per_replica=0,
            num_replicas=args.replicas,
            num_cpus_per_replica=cpus,
            tokenizer_threads=int(cpus),
            max_model_len=384,
            max_span_width=12,
            max_batch_size=32,
            batch_wait_timeout_ms=5.0,
            http_port=args.port,
            route_prefix="/gliner",
        )
        gliner_serve(gconfig)
        app = "gliner"
    _wait_ready(url, {"text": texts[0], "labels": LABELS})
    startup = time.perf_counter() - t0
    urls = [url]
    if args.direct_ingress:  # each replica's own HTTP server, clients spread over them
        urls = _direct_urls(args, {"text": texts[0], "labels": LABELS})
    for _ in range(3):  # warm-up at full concurrency
        asyncio.run(_load(urls, texts, 8, 1.0))
    runs = {}
    for c in args.clients:
        waited = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else 0.0
        with Noise() as noise:
            runs[str(c)] = asyncio.run(_load(urls, texts, c, args.seconds))
        n = max(runs[str(c)]["requests"], 1)
        runs[str(c)].update(
            others_cpu_share=noise.share,
            waited_s=waited,
            cpu_ms_per_request={role: 1000 * v / n for role, v in sorted(noise.by_role.items())},
        )
    answers = _answers(url, texts[: args.agreement_texts])
    memory = _replica_memory(app)
    serve.shutdown()
    return {"startup_s": startup, "load": runs, "memory": memory, "_answers": answers}


def corpus_job(args: argparse.Namespace) -> dict[str, Any]:
    from gliner_onnx import GLiNER, SessionOptions
    from gliner_onnx.ray import annotate_files

    texts = sentences(args.rows, seed=1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    src = tmp / "corpus.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    model = GLiNER.from_pretrained(
        args.export, session_options=SessionOptions(intra_op_num_threads=args.threads)
    )
    model.batch_predict_entities(texts[:64], LABELS, batch_size=args.batch_size)  # warm-up
    if args.wait_idle > 0:
        wait_for_idle(args.wait_idle)
    with Noise() as noise:
        t0 = time.perf_counter()
        model.batch_predict_entities(texts, LABELS, batch_size=args.batch_size)
        in_process = time.perf_counter() - t0
    in_process_noise = noise.share
    del model
    jobs = {}
    for actors, cpus_per_actor, threads in args.pools:
        out = tmp / f"out-{actors}x{cpus_per_actor}"
        if args.wait_idle > 0:
            wait_for_idle(args.wait_idle)
        with Noise() as noise:
            summary = annotate_files(
                args.export,
                src,
                out,
                LABELS,
                actors=actors,
                cpus_per_actor=cpus_per_actor,
                threads=threads,
                batch_size=args.batch_size,
                log=lambda m: print(m, file=sys.stderr),
            )
        jobs[f"{actors} actor(s) x {cpus_per_actor} CPU, {threads} thread(s)"] = {
            "seconds": summary["seconds"],
            "rows_per_s": summary["rows_per_s"],
            "x_in_process": summary["rows_per_s"] / (args.rows / in_process),
            "others_cpu_share": noise.share,
        }
        shutil.rmtree(out)
    shutil.rmtree(tmp)
    return {
        "rows": args.rows,
        "batch_size": args.batch_size,
        "in_process": {
            "seconds": in_process,
            "rows_per_s": args.rows / in_process,
            "threads": args.threads,
            "others_cpu_share": in_process_noise,
        },
        "ray_data": jobs,
    }


def _pool(value: str) -> tuple[int, float, int]:
    a, c, t = value.split(",")
    return int(a), float(c), int(t)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="gliner checkpoint directory (default: build the demo)")
    p.add_argument("--export", help="our export of --checkpoint (default: export it)")
    p.add_argument("--replicas", type=int, default=2, help="replicas of each engine (default 2)")
    p.add_argument("--cpus", type=float, default=1.0, help="CPUs (and threads) per replica (default 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="in-process baseline threads")
    p.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    p.add_argument("--seconds", type=float, default=20.0, help="load per concurrency level")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds of both engines")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--agreement-texts", type=int, default=40)
    p.add_argument("--rows", type=int, default=4000, help="corpus rows")
    p.add_argument("--batch-size", type=int, default=32, help="corpus rows per model call")
    p.add_argument(
        "--pool",
        dest="pools",
        type=_pool,
        action="append",
        help="corpus actor pool as ACTORS,CPUS_PER_ACTOR,THREADS (repeatable; default 1,1.5,2 and 2,0.75,1)",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        help="wait up to this many s for a quiet machine before each run",
    )
    p.add_argument(
        "--direct-ingress",
        action="store_true",
        help="run Ray Serve in its throughput-optimized mode (RAY_SERVE_THROUGHPUT_OPTIMIZED=1, "
        "Ray >= 2.55) and load each replica's own HTTP port (PORT+1 up), bypassing the HTTP proxy, "
        "clients spread over the replicas (what HAProxy ingress does); both engines",
    )
    p.add_argument("--skip-serve", action="store_true")
    p.add_argument("--skip-corpus", action="store_true")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve.json"))
    args = p.parse_args()
    args.pools = args.pools or [(1, 1.5, 2), (2, 0.75, 1)]

    import ray

    if args.checkpoint is None:
        from gliner_onnx.export.demo import build_demo

        args.checkpoint = tempfile.mkdtemp(prefix="bench-serve-ckpt-")
        build_demo("uniencoder_span").save_pretrained(args.checkpoint)
    if args.export is None:
        from gliner_onnx.export import export_model

        args.export = str(Path(tempfile.mkdtemp(prefix="bench-serve-onnx-")) / "export")
        export_model(args.checkpoint, args.export, log=lambda _m: None)

    if args.direct_ingress:  # read by the local Ray's processes when they start
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
        os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(args.port + 1)
        os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(args.port + 16)
    ray.init(include_dashboard=False, log_to_driver=False)
    texts = sentences(200)
    head = header()
    warn_if_dirty(head["git"])
    record: dict[str, Any] = {
        **head,
        "checkpoint": "demo: all-MiniLM-L6-v2 backbone, untrained span heads (uniencoder_span)",
        "labels": LABELS,
        "texts": "one sentence, 12-20 words",
        "replicas": args.replicas,
        "cpus_per_replica": args.cpus,
        "ray": ray.__version__,
        "ingress": "direct (replica ports, Ray Serve throughput-optimized mode)"
        if args.direct_ingress
        else "Ray Serve HTTP proxy",
    }
    if not args.skip_serve:
        rounds: dict[str, list[dict[str, Any]]] = {"gliner-onnx": [], "gliner": []}
        for _ in range(args.rounds):
            for name in rounds:
                print(f"serving: {name}", file=sys.stderr)
                rounds[name].append(run_engine(name, args, texts))
        ours, theirs = rounds["gliner-onnx"][-1].pop("_answers"), rounds["gliner"][-1].pop("_answers")
        for r in rounds.values():
            for x in r:
                x.pop("_answers", None)
        same = sum(a == b for a, b in zip(ours, theirs))
        summary = {}
        for c in map(str, args.clients):
            best = {
                n: max(r, key=lambda x: x["load"][c]["requests_per_s"])["load"][c] for n, r in rounds.items()
            }
            summary[c] = {
                "ours_requests_per_s": best["gliner-onnx"]["requests_per_s"],
                "gliner_requests_per_s": best["gliner"]["requests_per_s"],
                "x_gliner": best["gliner-onnx"]["requests_per_s"] / best["gliner"]["requests_per_s"],
                "ours_p99_ms": best["gliner-onnx"]["p99_ms"],
                "gliner_p99_ms": best["gliner"]["p99_ms"],
                "ours_cpu_ms_per_request": best["gliner-onnx"]["cpu_ms_per_request"],
                "gliner_cpu_ms_per_request": best["gliner"]["cpu_ms_per_request"],
            }
        record["serve"] = {
            "rounds": rounds,
            "summary_best_round": summary,
            "identical_answers": f"{same}/{len(ours)}",
        }
        print(json.dumps(record["serve"]["summary_best_round"], indent=2))
    if not args.skip_corpus:
        record["corpus"] = corpus_job(args)
        print(json.dumps(record["corpus"], indent=2))
    ray.shutdown()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
