"""Prometheus metrics of the server: counters, gauges and histograms in the text format.

A small registry written here rather than ``prometheus_client``: the server needs four
metric types and one exposition format, and keeping the dependency out keeps ``nnkd[serve]``
to Starlette and uvicorn. Every update happens on the event loop thread (the batcher reports
batch timings back to the loop), so no locks are taken on the request path.

Exposition follows the Prometheus text format 0.0.4: ``# HELP`` / ``# TYPE`` lines, counters
named ``*_total``, histograms as cumulative ``_bucket{le="..."}`` series with ``+Inf``,
``_sum`` and ``_count``; label values are escaped (backslash, double quote, newline).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")

#: Seconds: 0.5 ms to 10 s, dense around typical SLOs (10-100 ms).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075,
                   0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Rows per batch: powers of two up to 4096.
BATCH_BUCKETS = tuple(float(2 ** i) for i in range(13))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()):
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r} is not a valid Prometheus name.")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], object] = {}

    def labels(self, *values: str):
        """The series with these label values (created on first use; cache it on hot paths)."""
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            if len(key) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}; got {len(key)} value(s).")
            child = self._children[key] = self._new_child()
        return child

    def _new_child(self):
        raise NotImplementedError

    def header(self, name: str | None = None) -> list[str]:
        doc = self.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        name = name or self.name
        return [f"# HELP {name} {doc}", f"# TYPE {name} {self.kind}"]


class _Value:
    """One counter or gauge series."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)


class _CounterValue(_Value):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up; amount must be >= 0.")
        self.value += amount


class Counter(_Metric):
    """A monotonically increasing count; exposed as ``<name>_total``."""

    kind = "counter"

    def _new_child(self):
        return _CounterValue()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0) to the series with these label values."""
        self.labels(*labels).inc(amount)

    def value(self, *labels: str) -> float:
        """Current value of one series (0 if never incremented)."""
        child = self._children.get(tuple(labels))
        return 0.0 if child is None else child.value

    def expose(self) -> list[str]:
        # The 0.0.4 text format names a counter family by its sample name, ``_total`` included
        # (as prometheus_client writes it); OpenMetrics would drop the suffix.
        lines = self.header(f"{self.name}_total")
        for key, child in sorted(self._children.items()):
            lines.append(f"{self.name}_total{_labels_text(self.labelnames, key)} {_format_value(child.value)}")
        return lines


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()):
        super().__init__(name, documentation, labelnames)
        if not self.labelnames:
            self.labels()                            # an unlabelled gauge is always exposed

    def _new_child(self):
        return _Value()

    def set(self, value: float, *labels: str) -> None:
        """Set the series with these label values to ``value``."""
        self.labels(*labels).set(value)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` (may be negative)."""
        self.labels(*labels).inc(amount)

    def dec(self, *labels: str, amount: float = 1.0) -> None:
        """Subtract ``amount``."""
        self.labels(*labels).dec(amount)

    def value(self, *labels: str) -> float:
        """Current value of one series (0 if never set)."""
        child = self._children.get(tuple(labels))
        return 0.0 if child is None else child.value

    def expose(self) -> list[str]:
        lines = self.header()
        for key, child in sorted(self._children.items()):
            lines.append(f"{self.name}{_labels_text(self.labelnames, key)} {_format_value(child.value)}")
        return lines


class _HistogramSeries:
    """Per-bucket (not cumulative) counts, the +Inf bucket last, and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le = "less or equal").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (), *,
                 buckets: Sequence[float] = LATENCY_BUCKETS):
        super().__init__(name, documentation, labelnames)
        bounds = [float(b) for b in buckets]
        if not bounds or sorted(set(bounds)) != bounds or math.isinf(bounds[-1]):
            raise ValueError("buckets must be finite, strictly increasing and non-empty (+Inf is added).")
        self.buckets = tuple(bounds)

    def _new_child(self):
        return _HistogramSeries(self.buckets)

    def observe(self, value: float, *labels: str) -> None:
        """Count ``value`` into its bucket of the series with these label values."""
        self.labels(*labels).observe(value)

    def count(self, *labels: str) -> int:
        """Number of observations of one series."""
        child = self._children.get(tuple(labels))
        return 0 if child is None else sum(child.counts)

    def expose(self) -> list[str]:
        lines = self.header()
        for key, child in sorted(self._children.items()):
            cumulative = 0
            for bound, n in zip((*self.buckets, math.inf), child.counts, strict=True):
                cumulative += n
                le = f'le="{_format_value(bound)}"'
                lines.append(f"{self.name}_bucket{_labels_text(self.labelnames, key, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_labels_text(self.labelnames, key)} {_format_value(child.sum)}")
            lines.append(f"{self.name}_count{_labels_text(self.labelnames, key)} {cumulative}")
        return lines


class Registry:
    """A set of metrics exposed together; names must be unique."""

    def __init__(self):
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric):
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name!r} is already registered.")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        """Register and return a :class:`Counter` (exposed as ``name + "_total"``)."""
        return self._add(Counter(name, documentation, labelnames))

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        """Register and return a :class:`Gauge`."""
        return self._add(Gauge(name, documentation, labelnames))

    def histogram(self, name: str, documentation: str, labelnames: Sequence[str] = (), *,
                  buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        """Register and return a :class:`Histogram`."""
        return self._add(Histogram(name, documentation, labelnames, buckets=buckets))

    def expose(self) -> str:
        """All metrics in the Prometheus text format 0.0.4."""
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.expose())
        return "\n".join(lines) + "\n"


class ServerMetrics:
    """The metrics ``nnkd serve`` exposes at ``/metrics`` (names follow ``nnkd_<thing>_<unit>``).

    Attributes
    ----------
    requests : Counter
        ``nnkd_requests_total{endpoint, code}``: every answered request.
    errors : Counter
        ``nnkd_request_errors_total{endpoint, code}``: the 4xx/5xx subset.
    latency : Histogram
        ``nnkd_request_duration_seconds{endpoint}``: request received to response ready.
    queue_time : Histogram
        ``nnkd_queue_wait_seconds``: enqueue to the start of the batch that served the request.
    batch_size : Histogram
        ``nnkd_batch_size_rows``: rows per batched index query.
    batch_time : Histogram
        ``nnkd_batch_duration_seconds``: one batched prediction (the worker thread's time).
    in_flight : Gauge
        ``nnkd_requests_in_flight``: requests received and not yet answered.
    max_batch : Gauge
        ``nnkd_batch_max_rows``: the controller's current batch-size limit.
    slo_misses : Counter
        ``nnkd_slo_misses_total{endpoint}``: requests slower than the server's SLO.
    """

    def __init__(self):
        self.registry = r = Registry()
        self.requests = r.counter("nnkd_requests", "HTTP requests answered, by endpoint and status code.",
                                  ("endpoint", "code"))
        self.errors = r.counter("nnkd_request_errors", "HTTP requests answered with a 4xx or 5xx status.",
                                ("endpoint", "code"))
        self.latency = r.histogram("nnkd_request_duration_seconds",
                                   "Server-side request latency: request received to response ready.",
                                   ("endpoint",))
        self.queue_time = r.histogram("nnkd_queue_wait_seconds",
                                      "Time a request waited in the batching queue before its batch started.")
        self.batch_size = r.histogram("nnkd_batch_size_rows", "Rows per batched prediction.",
                                      buckets=BATCH_BUCKETS)
        self.batch_time = r.histogram("nnkd_batch_duration_seconds", "Duration of one batched prediction.")
        self.in_flight = r.gauge("nnkd_requests_in_flight", "Requests received and not yet answered.")
        self.max_batch = r.gauge("nnkd_batch_max_rows", "Current batch-size limit set by the AIMD controller.")
        self.slo_misses = r.counter("nnkd_slo_misses", "Requests whose server-side latency exceeded the SLO.",
                                    ("endpoint",))

    def expose(self) -> str:
        """The Prometheus text of every metric."""
        return self.registry.expose()
