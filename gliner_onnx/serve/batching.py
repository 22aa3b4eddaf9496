"""Run the requests that arrived together as few runtime calls as possible.

`Batcher` holds the bounded queue and the worker threads: each worker takes what is waiting (up to
`max_batch` requests) and runs it with `run_requests`; ONNX Runtime releases the GIL, so the event
loop keeps accepting while the workers compute. Requests are grouped by their decoding parameters
(threshold, flat_ner, multi_label, relation threshold); each group is one `GLiNER.extract` call
(typed results, made records by `result.as_record`), with one label set per text when the label
sets differ. When a group's call fails, its requests are run one by one, so that a request the
model cannot run fails alone and the others still get answers.

Admission has two regimes (`Capacity` has the numbers). Normally up to `max_batch` texts per
worker wait and are run up to `max_batch` at a time: a closed-loop burst of that many clients
is never refused. A text arriving past that means arrivals outpace the workers: the batcher
sheds (`shedding`) until, over a `SHED_WINDOW_S` window, fewer than `SHED_EXIT_RATIO` x as many
texts arrive (refused ones included) as are run. While shedding, a worker takes at most
`shed_batch` texts at a time and a text is admitted only while the texts ahead of it (running
and queued) fit in two such batches per worker; the queued texts past that when shedding
begins are answered 503 at once (single-text requests; a batch-form request once admitted
keeps its texts). An accepted request then waits about two small batches, not
two full ones (a batch of 8 one-sentence texts takes ~5x one text here). `shed_batch` 1 kept
the p99 of accepted requests under 4x overload within 3x the unloaded p99, 2 did not (3.3x)
but served ~20% more (benchmarks/results/http_shed_pairs.json).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gliner_onnx.runtime.result import as_record

from .limits import Capacity
from .wire import Params, Request

if TYPE_CHECKING:
    from gliner_onnx import GLiNER

Answer = dict[str, Any]


def _call(model: GLiNER, requests: Sequence[Request], params: Params, batch_size: int) -> list[Answer]:
    label_sets = [r.label_argument() for r in requests]
    same = all(r.labels == requests[0].labels for r in requests)
    labels: Any = label_sets[0] if same else label_sets
    kwargs: dict[str, Any] = {
        "threshold": params.threshold,
        "flat_ner": params.flat_ner,
        "multi_label": params.multi_label,
        "batch_size": batch_size,
    }
    texts = [r.text for r in requests]
    relations = [list(r.relations) for r in requests]
    found = model.extract(
        texts,
        labels,
        relations=relations if any(relations) else None,  # entity-only exports take none
        relation_threshold=params.relation_threshold,
        **kwargs,
    )
    return [as_record(r) for r in found]


def run_requests(
    model: GLiNER, requests: Sequence[Request], batch_size: int = 32
) -> list[Answer | Exception]:
    """One answer per request, in order: its result dict, or the exception it raised."""
    groups: dict[Params, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(r.params, []).append(i)
    out: list[Answer | Exception] = [{} for _ in requests]
    for params, members in groups.items():
        try:
            answers: Sequence[Answer | Exception] = _call(
                model, [requests[i] for i in members], params, batch_size
            )
        except Exception:  # find the request(s) at fault: the others must still be answered
            answers = [_alone(model, requests[i], batch_size) for i in members]
        for i, a in zip(members, answers):
            out[i] = a
    return out


def _alone(model: GLiNER, request: Request, batch_size: int) -> Answer | Exception:
    try:
        return _call(model, [request], request.params, batch_size)[0]
    except Exception as e:
        return e


SHED_WINDOW_S = 1.0
SHED_EXIT_RATIO = 1.5


class Overloaded(Exception):
    """The queue is full, the server sheds load, or a request waited longer than the queue
    allows: answer 503. `reason` labels the rejection metric."""

    def __init__(self, message: str, reason: str = "queue_full"):
        super().__init__(message)
        self.reason = reason


class Closed(Exception):
    """The server is shutting down and takes no new requests: answer 503."""


@dataclass(eq=False)
class _Item:
    request: Request
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    alone: bool = True  # the request's only text (not a batch-form request's)
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False


def _settle(future: asyncio.Future[Any], answer: Any) -> None:
    if not future.done():
        future.set_result(answer)


class Batcher:
    """A bounded queue of requests and `capacity.workers` threads that run them in batches."""

    def __init__(
        self,
        run: Callable[[Sequence[Request]], list[Answer | Exception]],
        capacity: Capacity,
        on_batch: Callable[[int], None] = lambda _n: None,
    ):
        self.run = run
        self.capacity = capacity
        self.on_batch = on_batch
        self.queue: deque[_Item] = deque()
        self.cond = threading.Condition()
        self.closing = False
        self.running = 0  # requests being computed now
        self.shedding = False
        self.arrived = self.done = 0  # texts offered and texts run in the current window
        self.window_end = time.perf_counter() + SHED_WINDOW_S
        self.threads = [
            threading.Thread(target=self._work, name=f"gliner-worker-{i}", daemon=True)
            for i in range(capacity.workers)
        ]
        for t in self.threads:
            t.start()

    @property
    def queued(self) -> int:
        return len(self.queue)

    def submit(self, requests: Sequence[Request]) -> list[asyncio.Future[Any]]:
        """Queue requests (all or none) from the running event loop; futures of their answers.

        Raises `Overloaded` when they do not fit the queue, `Closed` after `close`."""
        loop = asyncio.get_running_loop()
        items = [_Item(r, loop.create_future(), loop, len(requests) == 1) for r in requests]
        with self.cond:
            if self.closing:
                raise Closed("the server is shutting down")
            self._admit(len(items))
            self.queue.extend(items)
            self.cond.notify(len(items))
        return [i.future for i in items]

    def _admit(self, n: int) -> None:
        """Raise `Overloaded` unless `n` more texts may wait now (see the module's docstring)."""
        cap, now = self.capacity, time.perf_counter()
        self.arrived += n
        if now >= self.window_end:
            idle = now > self.window_end + SHED_WINDOW_S  # a whole window without arrivals
            if self.shedding and (idle or self.arrived <= SHED_EXIT_RATIO * self.done):
                self.shedding = False
            self.arrived, self.done, self.window_end = n, 0, now + SHED_WINDOW_S
        if cap.shed_batch and not self.shedding and len(self.queue) + n > cap.max_batch * cap.workers:
            self.shedding = True
            self._trim(max(0, cap.shed_limit - self.running))
        if self.queue and len(self.queue) + n > cap.max_queue:
            raise Overloaded(f"the queue is full ({cap.max_queue} texts waiting)")
        if self.shedding and self.queue and self.running + len(self.queue) + n > cap.shed_limit:
            raise Overloaded(f"shedding load, {cap.shed_limit} texts ahead at most", "shed")

    def _trim(self, keep: int) -> None:
        """Shedding begins: 503 to the single-text requests queued past the first `keep` texts
        (they waited milliseconds); batch-form requests already admitted keep their texts."""
        kept: deque[_Item] = deque()
        for item in self.queue:
            if len(kept) < keep or not item.alone:
                kept.append(item)
                continue
            shed = Overloaded("shed from the queue as the server began shedding load", "shed")
            item.loop.call_soon_threadsafe(_settle, item.future, shed)
        self.queue = kept

    def cancel(self, futures: Sequence[asyncio.Future[Any]]) -> None:
        """Drop these requests if no worker has taken them yet (their client gave up)."""
        wanted = set(map(id, futures))
        with self.cond:
            for item in self.queue:
                if id(item.future) in wanted:
                    item.cancelled = True

    def _take(self) -> list[_Item] | None:
        """The next batch (None: closed and drained); sheds requests that waited too long."""
        cap = self.capacity
        with self.cond:
            while not self.queue:
                if self.closing:
                    return None
                self.cond.wait()
            if cap.batch_wait_ms > 0 and len(self.queue) < cap.max_batch and not self.closing:
                self.cond.wait_for(
                    lambda: len(self.queue) >= cap.max_batch or self.closing, cap.batch_wait_ms / 1000
                )
            batch: list[_Item] = []
            oldest = time.perf_counter() - cap.max_queue_wait_ms / 1000
            size = min(cap.shed_batch, cap.max_batch) if self.shedding else cap.max_batch
            while self.queue and len(batch) < size:
                item = self.queue.popleft()
                if item.cancelled:
                    continue
                if item.enqueued < oldest:
                    item.loop.call_soon_threadsafe(
                        _settle,
                        item.future,
                        Overloaded(f"waited over {cap.max_queue_wait_ms:g} ms in the queue", "queue_wait"),
                    )
                    continue
                batch.append(item)
            self.running += len(batch)
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            if not batch:
                continue
            self.on_batch(len(batch))
            try:
                answers: Sequence[Answer | Exception] = self.run([i.request for i in batch])
            except Exception as e:  # run_requests answers per request; this is a last resort
                answers = [e] * len(batch)
            for item, answer in zip(batch, answers):
                try:
                    item.loop.call_soon_threadsafe(_settle, item.future, answer)
                except RuntimeError:  # that event loop is closed: nobody waits for the answer
                    pass
            with self.cond:
                self.running -= len(batch)
                self.done += len(batch)
                self.cond.notify_all()

    def close(self, timeout: float) -> bool:
        """Take no new requests, let the workers finish what is queued; True if they did."""
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)
