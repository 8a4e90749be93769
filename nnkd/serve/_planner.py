"""Batching plan: profile a student's latency per batch size, then pick the batch size and
the queue delay that keep the tail latency under an SLO at the highest sustainable rate.

The rule follows InferLine's planner (Crankshaw et al., SoCC 2020), reduced to one model on
one worker. Under sustained load a request can arrive just after a batch was dispatched:
it waits for that batch, then rides the next one, so its latency is at most twice the batch
service time plus what the HTTP layer adds. With ``s50(b)`` and ``s99(b)`` the measured
median and p99 time of one prediction over ``b`` rows:

- service budget ``B = slo * (1 - headroom) / 2`` (``headroom`` is kept for parsing,
  serialising and scheduling outside the model);
- feasible sizes: ``s99(b) <= B``;
- throughput at size ``b``: ``T(b) = 1 / (o + s50(b) / b)`` requests per second, with ``o``
  the time each request costs outside the model (decoding, validation, encoding: it holds
  the same interpreter lock). The median, not the tail, sets a sustained rate, and it is
  far less disturbed by other processes on a shared machine;
- ``max_batch``: the smallest feasible ``b`` whose ``T(b)`` is within ``tolerance`` of the
  best feasible throughput (past the knee, larger batches add latency for little rate);
- ``max_delay = s50(max_batch)``: waiting longer for a batch to fill cannot raise
  throughput, because a worker busy with the previous batch gathers as many rows in that
  time anyway;
- the AIMD controller (:class:`nnkd.serve.AIMDController`) may then move the batch size
  between 1 and ``cap`` (the largest feasible size) with ``B`` as its per-batch target.

If even one row misses the budget the plan is ``max_batch=1`` with ``feasible=False``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: Fraction of the SLO left for everything outside the model (HTTP, JSON, scheduling).
DEFAULT_HEADROOM = 0.2
#: A batch size within this fraction of the best feasible throughput is good enough.
DEFAULT_TOLERANCE = 0.1
#: Largest batch size profiled unless a cap is given.
DEFAULT_MAX_BATCH_CAP = 1024


@dataclass(frozen=True)
class LatencyProfile:
    """Measured latency of one prediction call per batch size.

    Attributes
    ----------
    batch_sizes : tuple of int
        Increasing.
    p50_s, p99_s : tuple of float
        Median and 99th-percentile seconds per call, one per batch size.
    repeats : tuple of int
        Timed calls per batch size.
    """

    batch_sizes: tuple[int, ...]
    p50_s: tuple[float, ...]
    p99_s: tuple[float, ...]
    repeats: tuple[int, ...] = ()

    def __post_init__(self):
        n = len(self.batch_sizes)
        if n == 0 or len(self.p50_s) != n or len(self.p99_s) != n:
            raise ValueError("a latency profile needs one p50 and one p99 per batch size (at least one).")
        if list(self.batch_sizes) != sorted(set(self.batch_sizes)) or self.batch_sizes[0] < 1:
            raise ValueError(f"batch_sizes {self.batch_sizes} must be positive and strictly increasing.")
        if any(not (p > 0 and np.isfinite(p)) for p in (*self.p50_s, *self.p99_s)):
            raise ValueError("profiled latencies must be finite and > 0.")

    def to_dict(self) -> dict:
        """JSON-ready rows: batch size, p50 and p99 in milliseconds, rows per second at the median."""
        return {"rows": [{"batch_size": b, "p50_ms": 1e3 * p50, "p99_ms": 1e3 * p99, "rows_per_s": b / p50}
                         for b, p50, p99 in zip(self.batch_sizes, self.p50_s, self.p99_s, strict=True)]}


@dataclass(frozen=True)
class BatchPlan:
    """What the planner chose; see the module docstring for the rule.

    Attributes
    ----------
    max_batch : int
        Rows per batch to start with.
    max_delay_s : float
        Longest time the first request of a batch waits for more rows while the worker idles.
    cap : int
        Largest batch size the controller may grow to.
    slo_s : float
    batch_budget_s : float
        Per-batch service-time target, ``slo * (1 - headroom) / 2``.
    batch_p99_s : float
        Profiled p99 of one batch of ``max_batch`` rows.
    batch_p50_s : float
        Profiled median of one batch of ``max_batch`` rows.
    request_overhead_s : float
        Per-request time outside the model used in the throughput model.
    capacity_rps : float
        ``1 / (request_overhead_s + batch_p50_s / max_batch)``: one-row requests per second
        the plan sustains by this model (the HTTP server's own cost is not in it).
    feasible : bool
        False when even one row misses ``batch_budget_s``.
    headroom, tolerance : float
    reason : str
        One line that says why.
    """

    max_batch: int
    max_delay_s: float
    cap: int
    slo_s: float
    batch_budget_s: float
    batch_p99_s: float
    batch_p50_s: float
    request_overhead_s: float
    capacity_rps: float
    feasible: bool
    headroom: float
    tolerance: float
    reason: str

    def to_dict(self) -> dict:
        """JSON-ready plan (times in milliseconds as well as seconds)."""
        d = asdict(self)
        d.update(max_delay_ms=1e3 * self.max_delay_s, slo_ms=1e3 * self.slo_s,
                 batch_budget_ms=1e3 * self.batch_budget_s, batch_p99_ms=1e3 * self.batch_p99_s,
                 batch_p50_ms=1e3 * self.batch_p50_s,
                 request_overhead_ms=1e3 * self.request_overhead_s)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BatchPlan:
        """Inverse of :meth:`to_dict` (extra keys are ignored)."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def describe(self) -> str:
        """The plan in one line, for logs."""
        return (f"batching plan: max_batch={self.max_batch} (controller range 1..{self.cap}), "
                f"max_delay={1e3 * self.max_delay_s:.2f} ms, batch p50/p99={1e3 * self.batch_p50_s:.2f}/"
                f"{1e3 * self.batch_p99_s:.2f} ms "
                f"(budget {1e3 * self.batch_budget_s:.2f} ms of SLO {1e3 * self.slo_s:.0f} ms), "
                f"request overhead {1e3 * self.request_overhead_s:.3f} ms, capacity ~{self.capacity_rps:,.0f} req/s (model + JSON; HTTP not counted); "
                f"{self.reason}")


def plan_batching(profile: LatencyProfile, slo_s: float, *, request_overhead_s: float = 0.0,
                  headroom: float = DEFAULT_HEADROOM, tolerance: float = DEFAULT_TOLERANCE,
                  max_batch: int | None = None, max_delay_s: float | None = None) -> BatchPlan:
    """Choose the batch size and queue delay from a latency profile.

    Parameters
    ----------
    profile : LatencyProfile
    slo_s : float
        End-to-end p99 latency objective, seconds (> 0).
    request_overhead_s : float, default=0.0
        Time each (one-row) request costs outside the model, seconds (>= 0).
    headroom : float, default=0.2
        Fraction of the SLO reserved for work outside the model, in [0, 1).
    tolerance : float, default=0.1
        Accept a batch size whose throughput is within this fraction of the best, in [0, 1).
    max_batch : int, default=None
        Upper bound on batch sizes (``1`` disables batching); ``None``: the profiled sizes.
    max_delay_s : float, default=None
        Override the chosen delay (seconds, >= 0).

    Returns
    -------
    BatchPlan
    """
    if not (slo_s > 0 and np.isfinite(slo_s)):
        raise ValueError(f"slo_s={slo_s!r} must be a positive number of seconds.")
    if not 0 <= headroom < 1 or not 0 <= tolerance < 1:
        raise ValueError(f"headroom={headroom!r} and tolerance={tolerance!r} must be in [0, 1).")
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch={max_batch!r} must be >= 1.")
    if max_delay_s is not None and not max_delay_s >= 0:
        raise ValueError(f"max_delay_s={max_delay_s!r} must be >= 0.")
    if not (request_overhead_s >= 0 and np.isfinite(request_overhead_s)):
        raise ValueError(f"request_overhead_s={request_overhead_s!r} must be >= 0.")
    o = float(request_overhead_s)
    budget = slo_s * (1.0 - headroom) / 2.0
    sizes = np.array(profile.batch_sizes, dtype=np.int64)
    p50 = np.array(profile.p50_s, dtype=np.float64)
    p99 = np.array(profile.p99_s, dtype=np.float64)
    allowed = sizes <= (max_batch if max_batch is not None else sizes[-1])
    if not allowed.any():
        raise ValueError(f"max_batch={max_batch} is below the smallest profiled batch size {sizes[0]}.")
    feasible = allowed & (p99 <= budget)
    if not feasible.any():
        b, s = int(sizes[0]), float(p99[0])
        return BatchPlan(max_batch=b, max_delay_s=0.0 if max_delay_s is None else max_delay_s, cap=b, slo_s=slo_s,
                         batch_budget_s=budget, batch_p99_s=s, batch_p50_s=float(p50[0]), request_overhead_s=o,
                         capacity_rps=1 / (o + float(p50[0]) / b), feasible=False, headroom=headroom,
                         tolerance=tolerance,
                         reason=f"even {b} row(s) take {1e3 * s:.2f} ms > the {1e3 * budget:.2f} ms budget: "
                                f"the SLO cannot be met; not batching")
    throughput = np.where(feasible, 1.0 / (o + p50 / sizes), 0.0)
    best = throughput.max()
    choice = int(np.flatnonzero(feasible & (throughput >= (1.0 - tolerance) * best))[0])
    b, s, s50 = int(sizes[choice]), float(p99[choice]), float(p50[choice])
    cap = int(sizes[np.flatnonzero(feasible)[-1]])
    if b == 1:
        delay = 0.0            # nothing to wait for: a batch of one is full on arrival
        reason = "batch size 1 already gives the best feasible throughput" if cap > 1 else "batching disabled"
    else:
        delay = s50
        reason = (f"{b} rows per batch reach {throughput[choice]:,.0f} req/s, within {100 * tolerance:.0f}% of the "
                  f"best feasible {best:,.0f} req/s")
    if max_delay_s is not None:
        delay = max_delay_s
    return BatchPlan(max_batch=b, max_delay_s=float(delay), cap=cap, slo_s=slo_s, batch_budget_s=budget,
                     batch_p99_s=s, batch_p50_s=s50, request_overhead_s=o, capacity_rps=float(throughput[choice]),
                     feasible=True,
                     headroom=headroom, tolerance=tolerance, reason=reason)


def profile_latency(predict: Callable[[np.ndarray], object], make_rows: Callable[[int], np.ndarray], *,
                    batch_sizes: Sequence[int] | None = None, max_batch: int = DEFAULT_MAX_BATCH_CAP,
                    repeats: int = 100, budget_s: float = 2.0) -> LatencyProfile:
    """Time ``predict`` on batches of increasing size.

    Parameters
    ----------
    predict : callable
        The function the batcher will run, on an array of shape (b, n_features).
    make_rows : callable
        ``make_rows(b)`` returns representative input rows of shape (b, n_features).
    batch_sizes : sequence of int, default=None
        Sizes to time; default: powers of two up to ``max_batch``.
    max_batch : int, default=1024
    repeats : int, default=100
        Timed calls per size (after one untimed warm-up call per size).
    budget_s : float, default=2.0
        Total time allowed; each size gets an equal share, but at least 3 timed calls, and
        sizes beyond the first whose single call exceeds the remaining budget are skipped.

    Returns
    -------
    LatencyProfile
    """
    if batch_sizes is None:
        batch_sizes = [2 ** i for i in range(int(np.log2(max(1, max_batch))) + 1)]
    sizes = sorted({int(b) for b in batch_sizes if 1 <= int(b) <= max_batch})
    if not sizes:
        raise ValueError(f"no batch size in {list(batch_sizes)} lies in [1, max_batch={max_batch}].")
    share = budget_s / len(sizes)
    deadline = time.perf_counter() + budget_s
    out_sizes, p50, p99, counts = [], [], [], []
    for b in sizes:
        rows = make_rows(b)
        start = time.perf_counter()
        predict(rows)                              # warm-up: first call per shape compiles/allocates
        first = time.perf_counter() - start
        if out_sizes and start + first > deadline:
            break
        times = []
        size_end = time.perf_counter() + share
        while len(times) < repeats and (len(times) < 3 or time.perf_counter() < size_end):
            t0 = time.perf_counter()
            predict(rows)
            times.append(time.perf_counter() - t0)
        out_sizes.append(b)
        p50.append(float(np.percentile(times, 50)))
        p99.append(float(np.percentile(times, 99)))
        counts.append(len(times))
    return LatencyProfile(tuple(out_sizes), tuple(p50), tuple(p99), tuple(counts))
