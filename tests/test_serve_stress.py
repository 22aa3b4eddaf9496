"""The embedded server under stress: a retry storm it must recover from, clients that leave
while queued, slow and idle connections. Real servers (the CLI, a subprocess) on free local
ports, loaded by aiohttp clients in this process; the MiniLM span export, so that a batch costs
what a small real model costs."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import LABELS, TEXTS, Checkpoint
from .test_serve import Server, get, post, start_server

aiohttp = pytest.importorskip("aiohttp")
pytest.importorskip("uvicorn")

SENTENCES = [t for t in TEXTS if len(t) > 20]


def metric(server: Server, name: str) -> float:
    """One sample of /metrics (the sum over its labels)."""
    text = get(f"{server.url}/metrics")[1].decode()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


async def closed_loop(
    url: str, clients: int, seconds: float, log: list[tuple[float, float, int]], retry_at_once: bool = True
) -> None:
    """`clients` clients posting back to back for `seconds`: (sent, answered, status) in `log`.
    With `retry_at_once`, a 503 is retried at once (no Retry-After: a retry storm)."""
    deadline = time.perf_counter() + seconds

    async def client(k: int, session: Any) -> None:
        i = k
        while time.perf_counter() < deadline:
            body = {"text": SENTENCES[i % len(SENTENCES)], "labels": LABELS}
            i += 1
            t0 = time.perf_counter()
            try:
                async with session.post(url, json=body) as resp:
                    await resp.read()
                    status = resp.status
            except aiohttp.ClientError:
                status = -1
            log.append((t0, time.perf_counter(), status))
            if status != 200 and not retry_at_once:
                await asyncio.sleep(1)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(k, session) for k in range(clients)))


async def burst(url: str, n: int) -> list[int]:
    async with aiohttp.ClientSession() as session:

        async def one() -> int:
            async with session.post(url, json={"text": SENTENCES[0], "labels": LABELS}) as resp:
                await resp.read()
                return resp.status

        return list(await asyncio.gather(*(one() for _ in range(n))))


@pytest.fixture(scope="module")
def minilm_server(uni_minilm: Checkpoint) -> Iterator[Server]:
    s = start_server(uni_minilm.export_dir, "--threads", "2", "--workers", "1")
    yield s
    assert s.stop() == 0, "".join(s.lines)


def test_a_retry_storm_leaves_no_shedding_behind(minilm_server: Server) -> None:
    """4 clients (under capacity), then 64 that retry every 503 at once for 4 s, then the 4
    again: within 1 s of the storm's end they get >= 99% 200s, and a burst of 6 gets 6."""
    url = f"{minilm_server.url}/gliner"

    async def scenario() -> tuple[list[Any], list[Any], list[Any], list[int]]:
        before: list[Any] = []
        await closed_loop(url, 4, 1.5, before)
        storm: list[Any] = []
        await closed_loop(url, 64, 4.0, storm)
        end = time.perf_counter()
        after: list[Any] = []
        clients = asyncio.ensure_future(closed_loop(url, 4, 4.0, after))
        await asyncio.sleep(1.0)
        six = await burst(url, 6)
        await clients
        return before, storm, [r for r in after if r[1] >= end + 1.0], six

    before, storm, after, six = asyncio.run(scenario())
    assert {s for _t0, _t1, s in before} == {200}
    assert {s for _t0, _t1, s in storm} <= {200, 503} and sum(s == 503 for *_t, s in storm) > 100
    ok = sum(s == 200 for *_t, s in after)
    assert len(after) > 0
    assert ok >= 0.99 * len(after), f"{ok}/{len(after)} answered after the storm"
    assert six == [200] * 6, six


def test_admission_decides_from_the_queue_not_from_refusals() -> None:
    """The rule itself (`Batcher`, a run that blocks until released): a burst up to the queue's
    size waits; a queue that stands (each batch's oldest text waited longer than the last)
    sheds; a thousand refusals leave no trace: once the queue drains, shedding is over."""
    from gliner_onnx.serve.batching import Batcher, Overloaded
    from gliner_onnx.serve.limits import Capacity
    from gliner_onnx.serve.wire import Params, Request

    gate, sizes = threading.Semaphore(0), []

    def run(reqs: Any) -> list[Any]:
        gate.acquire(timeout=10)
        sizes.append(len(reqs))
        return [{"entities": []} for _ in reqs]

    async def scenario() -> None:
        cap = Capacity(workers=1, max_batch=4, max_queue=32, queue_target_ms=1, queue_interval_ms=20)
        b = Batcher(run, cap)
        req = Request("Paris", ("city",), Params())

        def submit(n: int = 1) -> Any:
            try:
                return b.submit([req] * n)
            except Overloaded as e:
                return e.reason

        async def next_batch(ended: int) -> None:
            while len(sizes) < ended or b.running == 0:
                await asyncio.sleep(0.002)

        first = submit()
        await next_batch(0)
        burst = [submit() for _ in range(20)]  # a burst within the queue: all admitted
        assert all(isinstance(f, list) for f in burst) and not b.shedding
        for ended in (1, 2, 3):  # a batch every 30 ms: the oldest text of each waited longer
            await asyncio.sleep(0.03)
            gate.release()
            await next_batch(ended)
        assert b.shedding, sizes
        # 4 running and 8 waiting: past two batches of 4 ahead, every text is refused
        assert sum(submit() == "shed" for _ in range(1000)) == 1000
        for _ in range(5):
            gate.release()
        await asyncio.gather(first[0], *[f[0] for f in burst])
        while b.running:
            await asyncio.sleep(0.002)
        assert not b.shedding  # the queue drained: the refusals did not keep it shedding
        again = [submit() for _ in range(20)]
        assert all(isinstance(f, list) for f in again)
        for _ in range(6):
            gate.release()
        await asyncio.gather(*[f[0] for f in again])
        b.close(5)

    asyncio.run(scenario())
    assert sizes[:6] == [1, 4, 4, 4, 4, 4], sizes


def _send_then_leave(port: int, body: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST /gliner HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    s.sendall(head.encode() + body)
    return s


def test_a_client_that_leaves_while_queued_costs_no_model_call(uni_minilm: Checkpoint) -> None:
    import json

    s = start_server(uni_minilm.export_dir, "--workers", "1", "--threads", "1", "--max-batch-size", "1")
    try:
        port = int(s.url.rsplit(":", 1)[1])
        long_text = " ".join([TEXTS[0]] * 800)  # ~48,000 characters: seconds of windows on one thread
        results: list[Any] = []
        busy = threading.Thread(
            target=lambda: results.append(post(f"{s.url}/gliner", {"text": long_text, "labels": LABELS}))
        )
        busy.start()
        while metric(s, "gliner_onnx_batch_size_count") < 1:
            time.sleep(0.01)
        body = json.dumps({"text": TEXTS[1], "labels": LABELS}).encode()
        leaving = [_send_then_leave(port, body) for _ in range(5)]
        deadline = time.time() + 30
        while metric(s, "gliner_onnx_queued_texts") < 5 and time.time() < deadline:
            time.sleep(0.01)
        assert metric(s, "gliner_onnx_queued_texts") == 5
        for sock in leaving:
            sock.close()
        while metric(s, "gliner_onnx_abandoned_texts_total") < 5 and time.time() < deadline:
            time.sleep(0.01)
        assert metric(s, "gliner_onnx_queued_texts") == 0  # dropped while the long text runs
        busy.join(60)
        assert results[0][0] == 200
        assert post(f"{s.url}/gliner", {"text": TEXTS[0], "labels": LABELS})[0] == 200
        assert metric(s, "gliner_onnx_texts_total") == 2  # the long text and the last: no others
        assert metric(s, "gliner_onnx_abandoned_texts_total") == 5
    finally:
        assert s.stop() == 0, "".join(s.lines)


def _p99(log: list[tuple[float, float, int]]) -> float:
    ms = sorted(1000 * (t1 - t0) for t0, t1, status in log if status == 200)
    assert len(ms) > 50 and all(status == 200 for *_t, status in log)
    return ms[int(0.99 * (len(ms) - 1))]


def test_slow_and_idle_connections_do_not_delay_others(uni_minilm: Checkpoint) -> None:
    """200 connections sending their heads a byte at a time, 200 sending their bodies so, and
    1,000 idle ones: 4 normal clients keep their p99 and the server its memory; the slow heads
    are closed after --header-timeout-s, the slow bodies get 408."""
    import psutil

    s = start_server(uni_minilm.export_dir, "--header-timeout-s", "3", "--request-timeout-s", "3")
    port, url = int(s.url.rsplit(":", 1)[1]), f"{s.url}/gliner"
    try:

        async def scenario() -> dict[str, Any]:
            alone: list[Any] = []
            await closed_loop(url, 4, 2.0, alone)  # warm-up
            alone.clear()
            await closed_loop(url, 4, 2.0, alone)
            rss0 = psutil.Process(s.proc.pid).memory_info().rss
            head, body_ = b"POST /gliner HTTP/1.1\r\nHost: x\r\n", b'{"text": "Paris", "labels": ["city"]}'

            async def slow(part: str) -> bytes:
                """What the server answers a client that sends its head or body a byte at a time."""
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                answer = asyncio.ensure_future(reader.read(65536))  # the first bytes, or b"" at EOF
                try:
                    if part == "body":
                        writer.write(head + f"Content-Length: {len(body_)}\r\n\r\n".encode())
                    for byte in head * 10 if part == "head" else body_:
                        if answer.done():
                            break
                        writer.write(bytes([byte]))
                        await asyncio.sleep(0.5)
                    return await asyncio.wait_for(answer, 10)
                except ConnectionResetError:
                    # closed with a byte of ours not yet read: the kernel sends a reset, not EOF
                    return b"(reset)"
                except (ConnectionError, asyncio.TimeoutError):
                    return b"(no answer)"
                finally:
                    writer.close()

            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(1000)]
            slow_tasks = [asyncio.ensure_future(slow(p)) for p in ("head", "body") * 200]
            await asyncio.sleep(0.5)
            loaded: list[Any] = []
            await closed_loop(url, 4, 2.0, loaded)
            rss1 = psutil.Process(s.proc.pid).memory_info().rss
            answers = await asyncio.gather(*slow_tasks)
            for _r, w in idle:
                w.close()
            return {"alone": alone, "loaded": loaded, "rss": (rss0, rss1), "answers": answers}

        out = asyncio.run(scenario())
        p99_alone, p99_loaded = _p99(out["alone"]), _p99(out["loaded"])
        assert p99_loaded <= 2 * p99_alone + 5, (p99_alone, p99_loaded)
        rss0, rss1 = out["rss"]  # 1,400 connections: under ~70 KB each (ORT's arenas move too)
        assert rss1 - rss0 <= 96 * 2**20, (rss0, rss1)
        heads, bodies = out["answers"][0::2], out["answers"][1::2]
        assert all(a in (b"", b"(reset)") for a in heads), {a[:40] for a in heads}  # closed, no answer
        assert all(a.startswith(b"HTTP/1.1 408") for a in bodies), {a[:40] for a in bodies}
        assert post(url, {"text": TEXTS[0], "labels": LABELS})[0] == 200
    finally:
        assert s.stop() == 0, "".join(s.lines)
