"""Dynamic batching: requests to one model merged into one model call, results split back in order.

Two parts, as in a sans-I/O design: ``BatchFormer`` decides *when* to run *which* requests (a plain class driven by
events and an explicit ``now``, unit-tested without a loop), and ``Batcher`` is the small asyncio shell that queues
requests, runs batches in worker threads (or, for a model faster than the hand-over, on the loop) and resolves futures.

The batching rule is adaptive rather than timer-driven, because a timer costs latency exactly when nobody
benefits from it:

* an idle model never waits: a lone request runs at once (``maxDelayMs`` is not a floor on latency);
* while a model instance is busy, arrivals queue; when it frees, everything queued (up to ``maxBatchSize`` rows)
  runs as one batch, so batches grow with load by themselves;
* except right after a batch: a freed instance with fewer rows queued than the batch that just finished waits at
  most ``maxDelayMs`` for that batch's callers to send again (closed-loop clients answer within a millisecond or
  two); without it the load splits into a big and a small batch turn after turn (64 MiniLM clients on two server
  processes: half the batches had 3-4 rows, which cost 1.4x a row of a 32-row batch; 833 -> 878 sentences/s);
* with several instances (``workers``), a free instance waits at most ``maxDelayMs`` for a partly filled batch while
  another batch is in flight — that wait is what lets the batch fill instead of splitting load into small calls.

Requests whose deadline passed while queued are failed without running. A batch that raises is retried request by
request so that one bad request fails alone and never takes its batch neighbours with it.

A batch runs in a worker thread, except where handing it over costs more than running it: a single-instance model
whose last ``INLINE_AFTER`` batches each took under ``INLINE_MAX_SECONDS`` of the worker's CPU (and under
``INLINE_WALL_SECONDS`` of time: a model that waits, on I/O or a lock, is not fast) runs its batches on the event
loop itself. Handing a batch to a thread and its result back is two thread wake-ups and two transfers of
the GIL, and while the loop is busy parsing and encoding the worker waits for the GIL: a 15-row logistic regression
took 1.5-2.3 ms from dispatch to result that way under load, against 0.18 ms run on the loop
(``bench/router/RESULTS.md``). A batch run on the loop that takes more than ``INLINE_BACK_SECONDS`` of the loop
thread's CPU, or more than ``INLINE_BACK_WALL_SECONDS`` of time, sends the model's next batches back to the thread,
and each such return doubles the run of fast batches needed to come back, so a model that is only sometimes slow
stalls the loop a bounded number of times (``InlinePolicy``). CPU time rather than time for the first test: on a
busy machine the loop thread is preempted now and then in the middle of a batch, which says nothing about the
model. A model that hangs on the loop stops the server's liveness endpoint with it, so the replica is restarted
(and its requests retried elsewhere by the router).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubeinfer.runtimes.base import Model, ModelInfo
from kubeinfer.server import tracing
from kubeinfer.server.errors import DeadlineExceeded, ModelFailed, OutOfMemory, ServerError, Unavailable
from kubeinfer.server.tensors import InferRequest, wire_outputs

__all__ = ["BatchFormer", "Batcher", "Dispatch", "InlinePolicy", "Wait"]

log = logging.getLogger("kubeinfer.server")

SWEEP_SECONDS = 0.05
INLINE_MAX_SECONDS = 0.0005  # a batch under this much worker CPU costs less than its hand-over to a thread
INLINE_WALL_SECONDS = 0.01  # ... and under this much time in the worker (more: it waits on something)
INLINE_AFTER = 8  # consecutive batches that fast before batches run on the event loop
INLINE_BACK_SECONDS = 0.002  # a batch on the loop that took more CPU sends the next ones back to the thread
INLINE_BACK_WALL_SECONDS = 0.05  # ... or that took longer (it waited on something)


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Run these queued items (in order) as one batch."""

    items: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to run before ``until`` unless something arrives or a batch finishes."""

    until: float


class BatchFormer:
    """When to run which queued requests. Items are ``(key, rows, enqueued_at)``; time is a parameter."""

    __slots__ = ("_last_rows", "_queue", "_queued_rows", "_refill_until", "busy", "max_delay", "max_rows", "workers")

    def __init__(self, max_rows: int, max_delay: float, workers: int) -> None:
        self.max_rows = max_rows
        self.max_delay = max_delay
        self.workers = workers
        self.busy = 0
        self._queue: deque[tuple[int, int, float]] = deque()
        self._queued_rows = 0
        self._last_rows = 0  # rows of the last batch dispatched
        self._refill_until = 0.0  # a freed model waits for the last batch's clients until then (``done``)

    def __len__(self) -> int:
        return len(self._queue)

    def arrive(self, key: int, rows: int, now: float) -> None:
        self._queue.append((key, rows, now))
        self._queued_rows += rows

    def remove(self, key: int) -> bool:
        for i, item in enumerate(self._queue):
            if item[0] == key:
                del self._queue[i]
                self._queued_rows -= item[1]
                return True
        return False

    def done(self, now: float | None = None) -> None:
        """A batch finished. With ``now``, the freed instance may wait until ``now + max_delay`` for the rows of
        the batch that just finished to come back before it runs a smaller one (``next``)."""
        self.busy -= 1
        if now is not None and self.max_delay > 0:
            self._refill_until = now + self.max_delay

    def next(self, now: float) -> Dispatch | Wait | None:
        """The next action: a batch to start, a time to wait until, or None (nothing queued / no free worker)."""
        if not self._queue or self.busy >= self.workers:
            return None
        if self.busy > 0 and self._queued_rows < self.max_rows and self.max_delay > 0:
            until = self._queue[0][2] + self.max_delay
            if now < until:
                return Wait(until)
        if self.busy == 0 and self._queued_rows < min(self._last_rows, self.max_rows) and now < self._refill_until:
            # Just freed, with fewer rows queued than the batch that finished: its callers are being answered and
            # most send again at once (closed loops). Running the few queued now splits the load into a big and a
            # small batch, turn after turn (64 MiniLM clients on two processes: half the batches had 3-4 rows).
            return Wait(self._refill_until)
        # With several free instances, share what is queued between them instead of giving it all to one: a
        # closed loop that delivers its whole population in one burst would otherwise settle into one big batch
        # at a time, the other instances idle (measured: half the machine unused). The rest waits at most
        # max_delay, as any partial batch while another is in flight.
        free = self.workers - self.busy
        limit = self.max_rows if free <= 1 else min(self.max_rows, -(-self._queued_rows // free))
        keys: list[int] = []
        rows = 0
        while self._queue:
            key, n, _ = self._queue[0]
            if keys and rows + n > limit:
                break
            self._queue.popleft()
            self._queued_rows -= n
            keys.append(key)
            rows += n
        self.busy += 1
        self._last_rows = rows
        self._refill_until = 0.0
        return Dispatch(tuple(keys))


class InlinePolicy:
    """Whether batches run on the event loop or in a worker thread (module docstring), from what the last batches
    cost. Plain state driven by measured seconds, like ``BatchFormer``; the shell measures and logs."""

    __slots__ = ("allowed", "fast", "inline", "needed")

    def __init__(self, workers: int) -> None:
        self.allowed = workers == 1  # several instances need threads to run at once
        self.fast = 0  # consecutive fast batches in a thread
        self.needed = INLINE_AFTER  # fast batches needed to go to the loop; doubles at each return to threads
        self.inline = False

    def ran_in_thread(self, cpu: float | None, wall: float) -> bool:
        """A batch ran in a thread (``cpu`` None: it could not run); True when batches now go to the loop."""
        fast = cpu is not None and cpu < INLINE_MAX_SECONDS and wall < INLINE_WALL_SECONDS
        self.fast = self.fast + 1 if fast else 0
        if self.allowed and not self.inline and self.fast >= self.needed:
            self.inline = True
            return True
        return False

    def ran_on_loop(self, cpu: float, wall: float) -> bool:
        """A batch ran on the loop; True when batches now go back to threads."""
        if cpu <= INLINE_BACK_SECONDS and wall <= INLINE_BACK_WALL_SECONDS:
            return False
        self.inline = False
        self.fast = 0
        self.needed = min(self.needed * 2, INLINE_AFTER << 10)
        return True


BatchStats = Callable[[int, int, float, list[float]], None]
"""Called on the loop after each batch: (items, rows, compute seconds, queue seconds per item)."""


class _Item:
    # ``span``: the request's span, set only while tracing is on (tracing.batch reads it with getattr)
    __slots__ = ("deadline", "enqueued", "future", "key", "req", "span")
    span: Any

    def __init__(
        self,
        key: int,
        req: InferRequest,
        future: asyncio.Future[dict[str, np.ndarray[Any, Any]]],
        enqueued: float,
        deadline: float | None,
    ):
        self.key = key
        self.req = req
        self.future = future
        self.enqueued = enqueued
        self.deadline = deadline


class Batcher:
    """The asyncio shell around ``BatchFormer`` for one model."""

    def __init__(
        self,
        model: Model,
        info: ModelInfo,
        executor: Executor,
        *,
        max_batch_size: int,
        max_delay: float,
        workers: int,
        max_queue: int,
        enabled: bool = True,
        on_batch: BatchStats | None = None,
    ) -> None:
        self.model = model
        self.info = info
        self.executor = executor
        self.max_queue = max_queue
        # Unbatchable models (or batching switched off) still queue, one request per call.
        rows = max_batch_size if (enabled and info.batchable) else 1
        self.former = BatchFormer(rows, max_delay, workers)
        self.on_batch = on_batch
        self._items: dict[int, _Item] = {}
        self._next_key = 0
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._deadlines: dict[int, _Item] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.placement = InlinePolicy(workers)
        self._last = (0.0, 0.0, 0.0)  # worker CPU and wall seconds of the last batch run in a thread, and its start

    @property
    def inline(self) -> bool:
        """Whether the next batch runs on the event loop (see the module docstring)."""
        return self.placement.inline

    @property
    def queue_depth(self) -> int:
        return len(self.former)

    @property
    def busy(self) -> int:
        return self.former.busy

    def submit(
        self, req: InferRequest, deadline: float | None = None
    ) -> asyncio.Future[dict[str, np.ndarray[Any, Any]]]:
        """Queue a validated request; the future resolves to its outputs or fails with a ``ServerError``."""
        if len(self.former) >= self.max_queue:
            raise Unavailable(f"model {self.model.name!r} queue is full ({self.max_queue} requests); retry later")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = time.monotonic()
        fut: asyncio.Future[dict[str, np.ndarray[Any, Any]]] = loop.create_future()
        key = self._next_key
        self._next_key += 1
        item = _Item(key, req, fut, now, deadline)
        if tracing.tracer is not None:
            item.span = tracing.current()
        self._items[key] = item
        self.former.arrive(key, max(req.rows, 1), now)
        if deadline is not None:
            self._deadlines[key] = item
            if self._sweeper is None:
                # One periodic sweep per batcher instead of a timer per request: deadlines are coarse (seconds)
                # and a timer per request is measurable on the request path.
                self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)
        if not self._scheduled:
            # Yield one loop turn before forming the batch, so requests that arrived together run together.
            self._scheduled = True
            loop.call_soon(self._pump)
        return fut

    def _sweep(self) -> None:
        """Fail requests whose deadline passed, queued or running (a running batch goes on; its callers stop
        waiting, so a hung model cannot hold requests past their deadline)."""
        self._sweeper = None
        now = time.monotonic()
        expired = [k for k, it in self._deadlines.items() if it.deadline is not None and it.deadline <= now]
        for key in expired:
            item = self._deadlines.pop(key)
            if self.former.remove(key):
                self._items.pop(key, None)
            if not item.future.done():
                item.future.set_exception(
                    DeadlineExceeded(
                        f"request timed out after {now - item.enqueued:.3g} s (spec.server.limits.requestTimeoutMs)"
                    )
                )
        if self._deadlines and self._loop is not None:
            self._sweeper = self._loop.call_later(SWEEP_SECONDS, self._sweep)

    def _pump(self) -> None:
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = self._loop
        assert loop is not None
        while True:
            action = self.former.next(time.monotonic())
            if action is None:
                return
            if isinstance(action, Wait):
                self._timer = loop.call_at(loop.time() + (action.until - time.monotonic()), self._pump)
                return
            items = [self._items.pop(k) for k in action.items]
            started = time.monotonic()
            if self.placement.inline:
                cpu0 = time.thread_time()
                results = self._run(items)
                took = time.monotonic() - started
                cpu = time.thread_time() - cpu0
                if self.placement.ran_on_loop(cpu, took):
                    log.info(
                        "model %r: a batch on the event loop took %.1f ms (%.1f ms of CPU); batches run in worker "
                        "threads again until %d in a row are fast",
                        self.model.name,
                        took * 1e3,
                        cpu * 1e3,
                        self.placement.needed,
                    )
                self.former.done()
                self._complete(items, results, started, took, started, took)
                continue
            cf = loop.run_in_executor(self.executor, self._run_timed, items)
            cf.add_done_callback(functools.partial(self._finished, items=items, started=started))

    def _run_timed(self, items: list[_Item]) -> list[dict[str, np.ndarray[Any, Any]] | BaseException]:
        """In a worker thread: ``_run``, and the thread's CPU time for it (the cost of running it on the loop)."""
        t0, w0 = time.thread_time(), time.monotonic()
        try:
            return self._run(items)
        finally:
            self._last = (time.thread_time() - t0, time.monotonic() - w0, w0)

    def _run(self, items: list[_Item]) -> list[dict[str, np.ndarray[Any, Any]] | BaseException]:
        """One model call for the batch, split back per request."""
        reqs = [it.req for it in items]
        try:
            return _split(self.model, reqs, _run_batch(self.model, self.info, reqs))
        except Exception as e:
            if len(reqs) == 1:
                return [_as_error(self.model, e)]
        # Isolate the failure: rerun each request alone so only the bad one fails.
        out: list[dict[str, np.ndarray[Any, Any]] | BaseException] = []
        for r in reqs:
            try:
                out.append(_split(self.model, [r], _run_batch(self.model, self.info, [r]))[0])
            except Exception as e:
                out.append(_as_error(self.model, e))
        return out

    def _finished(self, f: asyncio.Future[Any], *, items: list[_Item], started: float) -> None:
        now = time.monotonic()
        self.former.done(now)
        cpu: float | None
        try:
            results = f.result()
            cpu, wall, ran = self._last
        except BaseException as e:  # the executor itself failed (e.g. shut down)
            results = [ModelFailed(f"model {self.model.name!r} could not run: {e}")] * len(items)
            cpu, wall, ran = None, 0.0, started
        if self.placement.ran_in_thread(cpu, wall):
            log.info(
                "model %r: %d batches in a row took under %.1f ms of CPU; batches now run on the event loop",
                self.model.name,
                self.placement.fast,
                INLINE_MAX_SECONDS * 1e3,
            )
        self._complete(items, results, started, now - started, ran, wall)
        self._pump()

    def _complete(
        self,
        items: list[_Item],
        results: list[dict[str, np.ndarray[Any, Any]] | BaseException],
        started: float,
        compute: float,
        ran: float,
        ran_for: float,
    ) -> None:
        """Resolve the batch's futures (those still waiting) and report the batch (``ran``, ``ran_for``: when the model
        call began and how long it took, for the trace)."""
        deadlines = self._deadlines
        for it, res in zip(items, results, strict=True):
            if deadlines:
                deadlines.pop(it.key, None)
            if it.future.done():
                continue
            if isinstance(res, BaseException):
                it.future.set_exception(res)
            else:
                it.future.set_result(res)
        if self.on_batch is not None:
            self.on_batch(
                len(items), sum(it.req.rows for it in items), compute, [started - it.enqueued for it in items]
            )
        if tracing.tracer is not None:
            tracing.batch(self.model.name, items, results, started, compute, (ran, ran_for), self.placement.inline)


def _as_error(model: Model, e: BaseException) -> ServerError:
    if isinstance(e, ServerError):
        return e
    if isinstance(e, MemoryError):
        return OutOfMemory.of(f"running model {model.name!r}")
    # The model's own bug: its traceback belongs in the replica's log (rate-limited by logs.setup's filter, so a
    # request that always fails costs a few tracebacks per window, not one per request).
    log.error("model %r raised on a request: %s: %s", model.name, type(e).__name__, e, exc_info=e)
    return ModelFailed(f"model {model.name!r} failed: {type(e).__name__}: {e}")


def _run_batch(model: Model, info: ModelInfo, reqs: list[InferRequest]) -> dict[str, np.ndarray[Any, Any]]:
    wanted: frozenset[str] | None = frozenset()
    for r in reqs:
        asked = r.output_names
        if asked is None:
            wanted = None
            break
        wanted = (wanted or frozenset()) | asked
    if len(reqs) == 1:
        return wire_outputs(model.predict(reqs[0].inputs, wanted), info.output_order)
    batch = {n: np.concatenate([r.inputs[n] for r in reqs]) for n in reqs[0].inputs}
    return wire_outputs(model.predict(batch, wanted), info.output_order)


def _split(
    model: Model, reqs: list[InferRequest], result: dict[str, np.ndarray[Any, Any]]
) -> list[dict[str, np.ndarray[Any, Any]] | BaseException]:
    if len(reqs) == 1:
        return [result]
    total = sum(r.rows for r in reqs)
    for name, arr in result.items():
        if arr.ndim == 0 or arr.shape[0] != total:
            raise ModelFailed(
                f"model {model.name!r} returned output {name!r} with shape {list(arr.shape)} for a batch of "
                f"{total} rows: outputs of a batchable model must have the batch on the first axis"
            )
    out: list[dict[str, np.ndarray[Any, Any]] | BaseException] = []
    start = 0
    for r in reqs:
        end = start + r.rows
        out.append({n: a[start:end] for n, a in result.items()})
        start = end
    return out
