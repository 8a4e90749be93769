"""Prometheus metrics of the server, kept and exposed by ``prometheus_client``.

Each app gets its own ``CollectorRegistry`` (never the global one), so several apps in one
process (tests, an embedding application) do not collide. Besides nnkd's own metrics, the
registry carries the client's ``process_*`` (CPU seconds, resident memory, open file
descriptors), ``python_info`` and ``python_gc_*`` collectors that dashboards expect.

With ``--workers N`` each uvicorn worker is a process with its own counters, and a scrape
reaches one of them. The server then runs ``prometheus_client``'s multiprocess mode:
``run_server`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers
start, every worker writes its values there, and any worker's ``/metrics`` reads all of
them (counters and histograms summed; the in-flight gauge summed over live workers; the
batch limit per worker, labelled ``pid``) plus its own ``process_*`` metrics.
"""

from __future__ import annotations

import os

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Seconds: 0.5 ms to 10 s, dense around typical SLOs (10-100 ms).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075,
                   0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Rows per batch: powers of two up to 4096.
BATCH_BUCKETS = tuple(float(2 ** i) for i in range(13))


class ServerMetrics:
    """The metrics ``nnkd serve`` exposes at ``/metrics`` (names follow ``nnkd_<thing>_<unit>``).

    Attributes
    ----------
    requests : prometheus_client.Counter
        ``nnkd_requests_total{endpoint, code}``: every answered request.
    errors : prometheus_client.Counter
        ``nnkd_request_errors_total{endpoint, code}``: the 4xx/5xx subset.
    latency : prometheus_client.Histogram
        ``nnkd_request_duration_seconds{endpoint}``: request received to response ready.
    queue_time : prometheus_client.Histogram
        ``nnkd_queue_wait_seconds``: enqueue to the start of the batch that served the request.
    batch_size : prometheus_client.Histogram
        ``nnkd_batch_size_rows``: rows per batched prediction.
    batch_time : prometheus_client.Histogram
        ``nnkd_batch_duration_seconds``: one batched prediction (the worker thread's time).
    in_flight : prometheus_client.Gauge
        ``nnkd_requests_in_flight``: requests received and not yet answered.
    max_batch : prometheus_client.Gauge
        ``nnkd_batch_max_rows``: the controller's current batch-size limit.
    slo_misses : prometheus_client.Counter
        ``nnkd_slo_misses_total{endpoint}``: requests slower than the server's SLO.
    multiprocess_dir : str or None
        The shared directory of multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), if set.
    """

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self.registry = r = CollectorRegistry()
        self.requests = Counter("nnkd_requests", "HTTP requests answered, by endpoint and status code.",
                                ("endpoint", "code"), registry=r)
        self.errors = Counter("nnkd_request_errors", "HTTP requests answered with a 4xx or 5xx status.",
                              ("endpoint", "code"), registry=r)
        self.latency = Histogram("nnkd_request_duration_seconds",
                                 "Server-side request latency: request received to response ready.",
                                 ("endpoint",), registry=r, buckets=LATENCY_BUCKETS)
        self.queue_time = Histogram("nnkd_queue_wait_seconds",
                                    "Time a request waited in the batching queue before its batch started.",
                                    registry=r, buckets=LATENCY_BUCKETS)
        self.batch_size = Histogram("nnkd_batch_size_rows", "Rows per batched prediction.", registry=r,
                                    buckets=BATCH_BUCKETS)
        self.batch_time = Histogram("nnkd_batch_duration_seconds", "Duration of one batched prediction.",
                                    registry=r, buckets=LATENCY_BUCKETS)
        self.in_flight = Gauge("nnkd_requests_in_flight", "Requests received and not yet answered.", registry=r,
                               multiprocess_mode="livesum")
        self.max_batch = Gauge("nnkd_batch_max_rows", "Current batch-size limit set by the AIMD controller.",
                               registry=r, multiprocess_mode="liveall")
        self.slo_misses = Counter("nnkd_slo_misses", "Requests whose server-side latency exceeded the SLO.",
                                  ("endpoint",), registry=r)
        self._exposed = self._exposition_registry()

    def _exposition_registry(self):
        from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, multiprocess

        if self.multiprocess_dir is None:
            exposed = self.registry
            GCCollector(registry=exposed)
        else:
            # The workers' files hold every nnkd value (this process's included), so the
            # metrics' own registry is not exposed: it would count this worker twice.
            exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(exposed, path=self.multiprocess_dir)
        ProcessCollector(registry=exposed)
        PlatformCollector(registry=exposed)
        return exposed

    def expose(self, accept: str | None = None) -> tuple[bytes, str]:
        """Every metric in the format the ``Accept`` header asks for (Prometheus text 0.0.4
        by default, OpenMetrics on request): ``(body, content type)``."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        return encoder(self._exposed), content_type

    def close(self) -> None:
        """In multiprocess mode, retire this process's live gauges (on worker shutdown)."""
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)
