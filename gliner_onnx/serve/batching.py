"""Run the requests that arrived together as few runtime calls as possible.

`Batcher` holds the bounded queue and the worker threads: each worker takes what is waiting (up to
`max_batch` requests) and runs it with `run_requests`; ONNX Runtime releases the GIL, so the event
loop keeps accepting while the workers compute. Requests are grouped by their decoding parameters
(threshold, flat_ner, multi_label, relation threshold); each group is one `GLiNER.extract` call
(typed results, made records by `result.as_record`), with one label set per text when the label
sets differ. When a group's call fails, its requests are run one by one, so that a request the
model cannot run fails alone and the others still get answers.

Admission is decided from the queue alone, never from how often the server is asked, so
that it cannot lock itself into refusing (a retry storm that outlives its cause: refused
requests leave no trace). Normally up to `max_queue` texts wait (a burst is absorbed) and are
run up to `max_batch` at a time. Shedding follows CoDel's rule on the queueing delay of each
batch's oldest text: when it has stayed above one batch's compute time plus
`queue_target_ms` for `queue_interval_ms` (a standing queue, not a burst draining), a text is
admitted only while at most `shed_limit` texts (two `shed_batch` batches per worker: enough
to keep every worker on full batches) are ahead of it; the first batch whose oldest text
waited less, or an empty queue, ends it. An accepted request then waits about two batches
whatever the load, and the workers stay busy on full batches (goodput). The app asks
`refuses` before it reads a body, and holds a refusal `refusal_delay_ms`, so a refusal costs
little even to clients that retry at once. A client that leaves while its texts wait has
them dropped (`cancel`): they cost no model call.
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


EWMA_WEIGHT = 0.2  # of the newest batch's compute time in `Batcher.batch_s`


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
    enqueued: float = field(default_factory=time.perf_counter)


def _settle(future: asyncio.Future[Any], answer: Any) -> None:
    if not future.done():
        future.set_result(answer)


class Batcher:
    """A bounded queue of requests and `capacity.workers` threads that run them in batches."""

    def __init__(
        self,
        run: Callable[[Sequence[Request]], list[Answer | Exception]],
        capacity: Capacity,
        on_batch: Callable[[int, float], None] = lambda _n, _delay: None,
        on_batch_done: Callable[[float], None] = lambda _seconds: None,
    ):
        self.run = run
        self.capacity = capacity
        self.on_batch = on_batch  # (texts, queueing delay of the oldest) per batch taken
        self.on_batch_done = on_batch_done  # (compute seconds) per batch run
        self.queue: deque[_Item] = deque()
        self.cond = threading.Condition()
        self.closing = False
        self.running = 0  # texts being computed now
        self.shedding = False
        self.above_since: float | None = None  # since when every batch's oldest text waited too long
        self.batch_s = 0.0  # compute time of one batch (moving average)
        self.threads = [
            threading.Thread(target=self._work, name=f"gliner-worker-{i}", daemon=True)
            for i in range(capacity.workers)
        ]
        for t in self.threads:
            t.start()

    @property
    def queued(self) -> int:
        return len(self.queue)

    @property
    def target_s(self) -> float:
        """The queueing delay that is not a standing queue: one batch's compute (a text that
        arrives while a batch runs waits that long at an otherwise idle server) plus the target."""
        return self.batch_s + self.capacity.queue_target_ms / 1000

    def submit(self, requests: Sequence[Request]) -> list[asyncio.Future[Any]]:
        """Queue requests (all or none) from the running event loop; futures of their answers.

        Raises `Overloaded` when they may not wait now, `Closed` after `close`."""
        loop = asyncio.get_running_loop()
        items = [_Item(r, loop.create_future(), loop) for r in requests]
        with self.cond:
            if self.closing:
                raise Closed("the server is shutting down")
            self._admit(len(items))
            self.queue.extend(items)
            self.cond.notify(len(items))
        return [i.future for i in items]

    def refuses(self, n: int = 1) -> Overloaded | None:
        """What `submit` of `n` texts would raise now, without queueing anything: the app asks
        before it reads a body, so that a refusal costs no parsing."""
        with self.cond:
            try:
                self._admit(n)
            except Overloaded as e:
                return e
        return None

    def _admit(self, n: int) -> None:
        """Raise `Overloaded` unless `n` more texts may wait now (see the module's docstring).
        Decided from the queue alone: refused requests leave no trace."""
        cap = self.capacity
        if not self.queue:  # nothing waits: any request may (one larger than the queue too)
            return
        if len(self.queue) + n > cap.max_queue:
            raise Overloaded(f"the queue is full ({cap.max_queue} texts waiting)")
        if self.shedding and self.running + len(self.queue) + n > cap.shed_limit:
            raise Overloaded(f"shedding load, {cap.shed_limit} texts ahead at most", "shed")

    def _observe(self, delay: float, now: float) -> None:
        """CoDel's rule on the queueing delay of each batch's oldest text: shed once it has
        stayed above `target_s` for `queue_interval_ms` (two batches at least), stop at the
        first batch below it."""
        if delay < self.target_s:
            self.above_since, self.shedding = None, False
        elif self.above_since is None:
            self.above_since = now
        elif now - self.above_since >= self.capacity.queue_interval_ms / 1000:
            self.shedding = bool(self.capacity.shed_batch)

    def cancel(self, futures: Sequence[asyncio.Future[Any]]) -> int:
        """Drop the texts of these futures that no worker has taken yet (their client left or
        timed out): they cost no model call. The number dropped."""
        wanted = set(map(id, futures))
        with self.cond:
            kept = deque(i for i in self.queue if id(i.future) not in wanted)
            dropped, self.queue = len(self.queue) - len(kept), kept
        for f in futures:
            f.cancel()
        return dropped

    def _take(self) -> list[_Item] | None:
        """The next batch (None: closed and drained); sheds requests that waited too long."""
        cap = self.capacity
        with self.cond:
            while not self.queue:
                if self.closing:
                    return None
                self.above_since, self.shedding = None, False  # no queue stands
                self.cond.wait()
            if cap.batch_wait_ms > 0 and len(self.queue) < cap.max_batch and not self.closing:
                self.cond.wait_for(
                    lambda: len(self.queue) >= cap.max_batch or self.closing, cap.batch_wait_ms / 1000
                )
            if not self.queue:
                return []
            now = time.perf_counter()
            delay = now - self.queue[0].enqueued
            self._observe(delay, now)
            batch: list[_Item] = []
            oldest = now - cap.max_queue_wait_ms / 1000
            size = cap.shed_batch_size if self.shedding else cap.max_batch
            while self.queue and len(batch) < size:
                item = self.queue.popleft()
                if item.enqueued < oldest:
                    item.loop.call_soon_threadsafe(
                        _settle,
                        item.future,
                        Overloaded(f"waited over {cap.max_queue_wait_ms:g} ms in the queue", "queue_wait"),
                    )
                    continue
                batch.append(item)
            self.running += len(batch)
        if batch:
            self.on_batch(len(batch), delay)
        return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            if not batch:
                continue
            t0 = time.perf_counter()
            try:
                answers: Sequence[Answer | Exception] = self.run([i.request for i in batch])
            except Exception as e:  # run_requests answers per request; this is a last resort
                answers = [e] * len(batch)
            took = time.perf_counter() - t0
            self.on_batch_done(took)
            for item, answer in zip(batch, answers):
                try:
                    item.loop.call_soon_threadsafe(_settle, item.future, answer)
                except RuntimeError:  # that event loop is closed: nobody waits for the answer
                    pass
            with self.cond:
                self.running -= len(batch)
                self.batch_s += (took - self.batch_s) * (EWMA_WEIGHT if self.batch_s else 1.0)
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
