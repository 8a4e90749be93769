"""Adaptive micro-batching: concurrent requests merged into one prediction call.

:class:`MicroBatcher` queues requests on the event loop and hands batches to a single
worker thread, so the loop keeps accepting requests while NumPy, BLAS and Numba compute
(they release the GIL). A batch is dispatched when it holds ``max_batch`` rows or when its
first request has waited ``max_delay_s``; while the worker is busy the next batch gathers,
so batches grow with the load. ``max_batch=1`` is the no-batching baseline through the very
same code path.

:class:`AIMDController` moves ``max_batch`` under load as Clipper does (Crankshaw et al.,
NSDI 2017): additive increase while full batches finish within the per-batch time target,
multiplicative decrease when one does not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger("nnkd.serve")


class AIMDController:
    """Additive-increase / multiplicative-decrease control of the batch-size limit.

    Parameters
    ----------
    max_batch : int
        Starting limit, in ``[1, cap]``.
    cap : int
        Largest limit.
    target_s : float
        Per-batch service-time target (the plan's ``batch_budget_s``).
    step : int, default=1
        Rows added after a full batch that met the target.
    backoff : float, default=0.9
        Factor applied after a batch that missed the target (Clipper backs off by 10%); the
        limit always drops by at least one row, and never below 1.

    Notes
    -----
    The controller reacts to the batch's *service* time, not to the requests' end-to-end
    latency: in overload the queue time exceeds any SLO whatever the batch size, and
    shrinking batches then would only lower throughput further.
    """

    def __init__(self, max_batch: int, cap: int, target_s: float, *, step: int = 1, backoff: float = 0.9):
        if not 1 <= max_batch <= cap:
            raise ValueError(f"max_batch={max_batch} must lie in [1, cap={cap}].")
        if not target_s > 0:
            raise ValueError(f"target_s={target_s!r} must be > 0.")
        if step < 1 or not 0 < backoff < 1:
            raise ValueError(f"step={step!r} must be >= 1 and backoff={backoff!r} in (0, 1).")
        self.max_batch = int(max_batch)
        self.cap = int(cap)
        self.target_s = float(target_s)
        self.step = int(step)
        self.backoff = float(backoff)
        self.increases = 0
        self.decreases = 0

    def observe(self, rows: int, service_s: float) -> int:
        """Update the limit after one batch of ``rows`` rows took ``service_s`` seconds.

        Returns
        -------
        max_batch : int
            The new limit.
        """
        if service_s > self.target_s:
            if self.max_batch > 1:
                self.max_batch = max(1, min(self.max_batch - 1, math.floor(self.max_batch * self.backoff)))
                self.decreases += 1
        elif rows >= self.max_batch and self.max_batch < self.cap:
            # Only a full batch shows that the limit binds; growing it otherwise changes nothing.
            self.max_batch = min(self.cap, self.max_batch + self.step)
            self.increases += 1
        return self.max_batch

    def state(self) -> dict:
        """Current limit and counts of changes, for ``/v1/model``."""
        return {"max_batch": self.max_batch, "cap": self.cap, "target_ms": 1e3 * self.target_s,
                "increases": self.increases, "decreases": self.decreases}


def _one_numba_thread() -> None:
    import numba

    numba.set_num_threads(1)


class QueueFullError(RuntimeError):
    """The batching queue holds too many rows; the request is refused (HTTP 503)."""


class NotRunningError(RuntimeError):
    """The batcher is not running (not started yet, or stopped)."""


@dataclass
class _Item:
    X: np.ndarray
    options: object
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What one batch took; passed to the ``on_batch`` callback on the event loop."""

    rows: int
    requests: int
    service_s: float
    queue_waits_s: list[float]


class MicroBatcher:
    """Merge concurrent requests into batched calls of ``run_batch`` on one worker thread.

    Parameters
    ----------
    run_batch : callable
        ``run_batch(X, sizes, options)`` with ``X`` the concatenated rows (float32, shape
        ``(n_rows, n_features)``), ``sizes`` the rows of each request and ``options`` each
        request's options, in order; returns a list with one result per request. Runs in
        the worker thread. If it raises, every request of the batch gets that exception.
    max_batch : int
        Initial rows per batch (a single request larger than this is served alone, never split).
    max_delay_s : float
        Longest wait of a batch's first request for more rows while the worker is idle.
    controller : AIMDController, optional
        Adjusts ``max_batch`` after every batch.
    max_queue_rows : int, default=100_000
        Requests that would make the queue longer are refused with :class:`QueueFullError`.
    on_batch : callable, optional
        Called on the event loop with a :class:`BatchStats` after each batch.
    """

    def __init__(self, run_batch: Callable[[np.ndarray, list[int], list], list], *, max_batch: int,
                 max_delay_s: float, controller: AIMDController | None = None, max_queue_rows: int = 100_000,
                 on_batch: Callable[[BatchStats], None] | None = None):
        if max_batch < 1 or not max_delay_s >= 0 or max_queue_rows < 1:
            raise ValueError("max_batch and max_queue_rows must be >= 1 and max_delay_s >= 0.")
        self._run_batch = run_batch
        self.max_batch = int(max_batch)
        self.max_delay_s = float(max_delay_s)
        self.controller = controller
        self.max_queue_rows = int(max_queue_rows)
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._wakeup: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._accepting = False
        self.batches = 0
        self.rows = 0

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._accepting

    async def start(self) -> None:
        """Start the worker thread and the dispatch loop (on the running event loop)."""
        if self._task is not None:
            raise RuntimeError("the batcher is already started.")
        # One worker thread computes every batch: its thread limits are set once, here, not per
        # batch (Numba's count is per thread; BLAS is pinned by the server process).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nnkd-batch",
                                            initializer=_one_numba_thread)
        self._accepting = True
        self._task = asyncio.get_running_loop().create_task(self._dispatch_loop(), name="nnkd-batcher")

    async def stop(self) -> None:
        """Refuse new requests, finish every queued one, then stop the worker."""
        self._accepting = False
        self._wake()
        if self._task is not None:
            await self._task
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- request path -----------------------------------------------------------------------
    async def submit(self, X: np.ndarray, options: object = None):
        """Queue the rows of one request and wait for its result.

        Raises
        ------
        NotRunningError
            Before :meth:`start` or after :meth:`stop` began.
        QueueFullError
            The queue already holds ``max_queue_rows`` rows.
        """
        if not self._accepting:
            raise NotRunningError("the server is not accepting requests (starting or shutting down).")
        if self._queued_rows + X.shape[0] > self.max_queue_rows and self._queue:
            raise QueueFullError(f"the batching queue is full ({self._queued_rows} rows waiting); retry later.")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(X, options, future))
        self._queued_rows += X.shape[0]
        # Wake the dispatcher when the first request arrives (it starts the delay clock) or
        # when the batch is full (no reason to wait any longer).
        if len(self._queue) == 1 or self._queued_rows >= self.max_batch:
            self._wake()
        return await future

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._wakeup = loop.create_future()
        handle = loop.call_later(timeout, self._wake) if timeout is not None else None
        try:
            await self._wakeup
        finally:
            self._wakeup = None
            if handle is not None:
                handle.cancel()

    def _take_batch(self) -> list[_Item]:
        items = [self._queue.popleft()]
        rows = items[0].X.shape[0]
        while self._queue and rows + self._queue[0].X.shape[0] <= self.max_batch:
            item = self._queue.popleft()
            rows += item.X.shape[0]
            items.append(item)
        self._queued_rows -= rows
        return items

    def _timed_run(self, X: np.ndarray, sizes: list[int], options: list) -> tuple[list, float]:
        # Timed in the worker thread: the loop may pick the result up late when it is busy,
        # and that delay is queueing, not the model's service time.
        start = time.perf_counter()
        results = self._run_batch(X, sizes, options)
        return results, time.perf_counter() - start

    async def _dispatch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if not self._accepting:
                    return
                await self._wait(None)
                continue
            deadline = self._queue[0].enqueued + self.max_delay_s
            # Wait for more rows only while accepting: on shutdown the queue drains at once.
            while self._accepting and self._queued_rows < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                await self._wait(remaining)
            items = self._take_batch()
            started = time.perf_counter()
            X = items[0].X if len(items) == 1 else np.concatenate([it.X for it in items])
            try:
                results, service = await loop.run_in_executor(
                    self._executor, self._timed_run, X, [it.X.shape[0] for it in items], [it.options for it in items])
                if len(results) != len(items):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} requests.")
            except Exception as exc:                          # delivered to each request of the batch
                logger.exception("batch of %d rows failed", X.shape[0])
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(exc)
                results, service = None, time.perf_counter() - started
            if results is not None:
                for it, result in zip(items, results, strict=True):
                    if not it.future.done():                   # the client may have gone away
                        it.future.set_result(result)
            self.batches += 1
            self.rows += X.shape[0]
            if self.controller is not None and results is not None:
                self.max_batch = self.controller.observe(X.shape[0], service)
            if self._on_batch is not None:
                try:
                    self._on_batch(BatchStats(rows=X.shape[0], requests=len(items), service_s=service,
                                              queue_waits_s=[started - it.enqueued for it in items]))
                except Exception:                             # bookkeeping must never stop serving
                    logger.exception("on_batch callback failed")
