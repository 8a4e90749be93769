"""``nnkd loadtest``: an open-loop HTTP load generator with client-side latency.

Send times come from a Poisson process fixed before the run (optionally modulated into
bursts), independent of the responses: a slow server does not slow the arrivals down, as
it would with closed-loop clients (coordinated omission). Latency is measured per request
from its *scheduled* send time to the last byte of its response, so any lag of the client
itself counts against the result rather than hiding server queueing; the client's own lag
and CPU use are reported beside it.

The client is a minimal HTTP/1.1 implementation on ``asyncio.Protocol`` with keep-alive
connections, one request in flight per connection, at most ``concurrency`` connections. A
request that finds every connection busy is *dropped* and counted as an error, never
delayed. Requests are encoded once before the run; the client was measured at 60-130 us of
CPU per request on a 2-core machine (reported with every run).
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import numpy as np

from nnkd.serve._net import resolves_to_loopback

#: With ``burst=True``: every period, the first ``_BURST_FRACTION`` of the time runs at
#: ``_BURST_FACTOR`` times the mean rate, the rest at the rate that keeps the mean.
_BURST_PERIOD_S = 1.0
_BURST_FRACTION = 0.2
_BURST_FACTOR = 3.0
_N_BODIES = 64


def arrival_times(rate: float, duration_s: float, *, burst: bool = False, seed: int = 0,
                  max_requests: int = 1_000_000) -> np.ndarray:
    """Send times (seconds from the start) of a Poisson process of mean ``rate`` per second.

    Parameters
    ----------
    rate : float
        Mean arrivals per second (> 0).
    duration_s : float
        Length of the schedule (> 0).
    burst : bool, default=False
        Modulate the rate: in each 1 s period, 0.2 s at 3x the mean rate, then 0.8 s at 0.5x
        (same mean).
    seed : int, default=0
    max_requests : int, default=1_000_000
        The schedule never holds more arrivals than this.

    Returns
    -------
    times : ndarray of shape (n,), float64, increasing, in [0, duration_s)
    """
    if not (rate > 0 and math.isfinite(rate)) or not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"rate={rate!r} and duration={duration_s!r} must be positive numbers.")
    if rate * duration_s > max_requests:
        raise ValueError(f"rate x duration = {rate * duration_s:,.0f} requests exceeds the cap of {max_requests:,}; "
                         "lower --rate or --duration (or raise --max-requests).")
    rng = np.random.default_rng(seed)
    # Arrivals of a unit-rate Poisson process in "intensity time" Lambda, mapped back through
    # Lambda(t) = integral of the rate (time rescaling); Lambda is piecewise linear.
    if burst:
        low = rate * (1 - _BURST_FRACTION * _BURST_FACTOR) / (1 - _BURST_FRACTION)
        periods = math.ceil(duration_s / _BURST_PERIOD_S)
        starts = np.arange(periods) * _BURST_PERIOD_S
        knots_t = np.concatenate([np.stack([starts, starts + _BURST_FRACTION * _BURST_PERIOD_S], 1).ravel(),
                                  [periods * _BURST_PERIOD_S]])
        rates = np.tile([_BURST_FACTOR * rate, low], periods)
        knots_l = np.concatenate([[0.0], np.cumsum(rates * np.diff(knots_t))])
    else:
        knots_t = np.array([0.0, duration_s])
        knots_l = np.array([0.0, rate * duration_s])
    total = float(np.interp(duration_s, knots_t, knots_l))
    n_draw = int(total + 10 * math.sqrt(total) + 20)
    cumulative = np.cumsum(rng.exponential(1.0, size=n_draw))
    while cumulative[-1] < total:                                  # astronomically rare
        cumulative = np.concatenate([cumulative, cumulative[-1] + np.cumsum(rng.exponential(1.0, size=n_draw))])
    cumulative = cumulative[cumulative < total][:max_requests]
    return np.interp(cumulative, knots_l, knots_t)


@dataclass
class LoadTestReport:
    """Outcome of one load test (latencies in milliseconds, measured by the client).

    ``planned = sent + dropped`` and ``sent = ok + sum(http_errors.values()) + failed``:
    every scheduled request is accounted for. ``failed`` requests got no response
    (connection error or still unanswered ``timeout_s`` after the last send): they are the
    lost requests.
    """

    url: str
    rate: float
    duration_s: float
    burst: bool
    concurrency: int
    dim: int
    instances_per_request: int
    slo_ms: float
    planned: int = 0
    sent: int = 0
    ok: int = 0
    dropped: int = 0
    failed: int = 0
    http_errors: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    throughput_rps: float = 0.0
    latency_ms: dict = field(default_factory=dict)
    slo_misses: int = 0
    client: dict = field(default_factory=dict)

    @property
    def errors(self) -> int:
        """Dropped + failed + non-2xx responses."""
        return self.dropped + self.failed + sum(self.http_errors.values())

    @property
    def p99_ms(self) -> float:
        """99th-percentile latency of the successful requests (inf if none)."""
        return self.latency_ms.get("p99", math.inf)

    def to_dict(self) -> dict:
        """JSON-ready report (``errors`` included)."""
        d = asdict(self)
        d["errors"] = self.errors
        return d

    def format_text(self) -> str:
        """The report as a few human-readable lines."""
        lat = self.latency_ms
        errs = ", ".join(f"HTTP {k}: {v}" for k, v in sorted(self.http_errors.items())) or "none"
        lines = [(f"nnkd loadtest {self.url}: {self.rate:g} req/s {'(bursts) ' if self.burst else ''}"
                  f"for {self.duration_s:g} s, {self.instances_per_request} instance(s) of {self.dim} values, "
                  f"concurrency cap {self.concurrency}"),
                 (f"  requests   planned {self.planned}, sent {self.sent}, ok {self.ok}, dropped {self.dropped} "
                  f"(concurrency cap), failed {self.failed} (no response), HTTP errors: {errs}"),
                 f"  throughput {self.throughput_rps:,.1f} ok/s over {self.elapsed_s:.2f} s"]
        if lat:
            lines.append(f"  latency    p50 {lat['p50']:.2f} ms  p95 {lat['p95']:.2f} ms  p99 {lat['p99']:.2f} ms  "
                         f"max {lat['max']:.2f} ms  mean {lat['mean']:.2f} ms")
        lines.append(f"  SLO        {self.slo_misses} of {self.ok} ok responses over {self.slo_ms:g} ms; "
                     f"errors {self.errors}")
        c = self.client
        if c:
            lines.append(f"  client     send lag p99 {c['send_lag_p99_ms']:.2f} ms, CPU {100 * c['cpu_fraction']:.0f}% "
                         f"of one core, {c['connections']} connection(s) opened")
        return "\n".join(lines)


def parse_target(url: str, *, allow_remote: bool = False) -> tuple[str, int, str]:
    """``(host, port, path)`` of an ``http://`` URL; the path defaults to ``/v1/predict``.

    Raises
    ------
    ValueError
        Not ``http``, no host, or a non-loopback host without ``allow_remote``.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"URL {url!r} must look like http://127.0.0.1:8000 (https is not supported).")
    host = parts.hostname
    if not allow_remote and not resolves_to_loopback(host):
        raise ValueError(f"refusing to load-test {host}: not a loopback address. Pass --allow-remote "
                         "(allow_remote=True) only for a server you are allowed to load.")
    path = parts.path if parts.path not in ("", "/") else "/v1/predict"
    return host, parts.port or 80, path


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    __slots__ = ("buffer", "client", "closed", "released", "scheduled", "transport")

    def __init__(self, client: _Client):
        self.client = client
        self.transport = None
        self.buffer = bytearray()
        self.scheduled: float | None = None
        self.closed = False
        self.released = False               # no longer counted against the concurrency cap

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, request: bytes, scheduled: float) -> None:
        self.scheduled = scheduled
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        start = head.find(b"\r\ncontent-length:")
        if start < 0:
            self._abort()                               # nnkd always sends a length
            return
        stop = head.find(b"\r\n", start + 2)
        length = int(head[start + 17:stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(buf) < total:
            return
        status = int(buf[9:12])
        del buf[:total]
        if b"\r\nconnection: close" in head:
            self.closed = True
        scheduled, self.scheduled = self.scheduled, None
        self.client.completed(self, status, scheduled)

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.scheduled is not None:
            self.scheduled = None
            self.client.lost(self)
        else:
            self.client.release(self)


class _Client:
    def __init__(self, host: str, port: int, requests: list[bytes], concurrency: int):
        self.host, self.port = host, port
        self.requests = requests
        self.concurrency = concurrency
        self.connections: list[_Connection] = []
        self.idle: list[_Connection] = []
        self.open = 0
        self.opened = 0
        self.outstanding = 0
        self.sent = self.ok = self.dropped = self.failed = 0
        self.http_errors: dict[str, int] = {}
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.last_done = 0.0
        self.loop = asyncio.get_running_loop()
        self.all_done = asyncio.Event()
        self._next = 0

    def _request(self) -> bytes:
        self._next += 1
        return self.requests[self._next % len(self.requests)]

    def send(self, scheduled: float) -> None:
        while self.idle:
            conn = self.idle.pop()                # LIFO: the warmest connection
            if not conn.closed:
                self._start(conn, scheduled)
                return
        if self.open >= self.concurrency:
            self.dropped += 1                     # open loop: never wait for a connection
            return
        self.open += 1
        self.opened += 1
        self.outstanding += 1
        self.loop.create_task(self._connect_and_send(scheduled))

    def _start(self, conn: _Connection, scheduled: float) -> None:
        self.outstanding += 1
        self.sent += 1
        self.lags.append(self.loop.time() - scheduled)
        conn.send(self._request(), scheduled)

    async def _connect_and_send(self, scheduled: float) -> None:
        try:
            _, conn = await self.loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError:
            self.open -= 1
            self.sent += 1
            self.failed += 1
            self._finish()
            return
        self.connections.append(conn)
        self.outstanding -= 1                     # _start counts it again
        self._start(conn, scheduled)

    def completed(self, conn: _Connection, status: int, scheduled: float) -> None:
        now = self.loop.time()
        self.last_done = now
        if 200 <= status < 300:
            self.ok += 1
            self.latencies.append(now - scheduled)
        else:
            key = str(status)
            self.http_errors[key] = self.http_errors.get(key, 0) + 1
        if conn.closed:
            conn.transport.close()
            self.release(conn)
        else:
            self.idle.append(conn)
        self._finish()

    def lost(self, conn: _Connection) -> None:
        self.failed += 1
        self.release(conn)
        self._finish()

    def release(self, conn: _Connection) -> None:
        """Stop counting a closed connection against the cap (once)."""
        if not conn.released:
            conn.released = True
            self.open -= 1
            if conn in self.idle:                 # closed by the server while idle
                self.idle.remove(conn)

    def _finish(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.all_done.set()

    def close(self) -> None:
        """Close every connection, idle or still waiting for an answer."""
        for conn in self.connections:
            if not conn.closed:
                conn.closed = True
                conn.scheduled = None             # already counted as unanswered
                conn.transport.close()
        self.idle.clear()


def _encode_requests(host: str, port: int, path: str, dim: int, instances: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(_N_BODIES):
        rows = rng.standard_normal((instances, dim)).round(4).tolist()
        body = json.dumps({"instances": rows}, separators=(",", ":")).encode()
        out.append(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return out


async def _get_json(host: str, port: int, path: str, timeout_s: float) -> dict:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        status_line = head.split(b"\r\n")[0].decode(errors="replace")
        raise ValueError(f"GET http://{host}:{port}{path} answered {status_line!r}.")
    return json.loads(body)


async def run_loadtest_async(url: str, *, rate: float, duration_s: float, burst: bool = False,
                             concurrency: int = 256, dim: int | None = None, instances: int = 1,
                             slo_ms: float = 50.0, timeout_s: float = 10.0, seed: int = 0,
                             allow_remote: bool = False, max_requests: int = 1_000_000) -> LoadTestReport:
    """Coroutine form of :func:`run_loadtest` (for callers that already run an event loop)."""
    host, port, path = parse_target(url, allow_remote=allow_remote)
    if concurrency < 1 or instances < 1 or not timeout_s > 0:
        raise ValueError("--concurrency and --instances must be >= 1 and the timeout > 0.")
    schedule = arrival_times(rate, duration_s, burst=burst, seed=seed, max_requests=max_requests)
    if dim is None:
        try:
            model = await _get_json(host, port, "/v1/model", timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConnectionError(f"cannot reach http://{host}:{port}/v1/model to read the input dimension "
                                  f"({exc or type(exc).__name__}); is the server running? (or pass --dim)") from None
        dim = int(model["student"]["n_features_in"])
    if dim < 1:
        raise ValueError(f"--dim {dim} must be >= 1.")
    report = LoadTestReport(url=url, rate=rate, duration_s=duration_s, burst=burst, concurrency=concurrency, dim=dim,
                            instances_per_request=instances, slo_ms=slo_ms, planned=int(schedule.size))
    client = _Client(host, port, _encode_requests(host, port, path, dim, instances, seed), concurrency)
    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()
    t0 = loop.time() + 0.05
    due = (t0 + schedule).tolist()
    i, n = 0, len(due)
    while i < n:
        now = loop.time()
        while i < n and due[i] <= now:             # catch up on everything due: the schedule is kept
            client.send(due[i])
            i += 1
        if i < n:
            await asyncio.sleep(due[i] - loop.time())
    last_send = loop.time()
    if client.outstanding:
        client.all_done.clear()
        try:
            await asyncio.wait_for(client.all_done.wait(), max(0.0, last_send + timeout_s - loop.time()))
        except asyncio.TimeoutError:
            pass
    unanswered = client.outstanding
    client.close()
    await asyncio.sleep(0)                         # let the transports run their close callbacks
    end = max(client.last_done, last_send)
    cpu = time.process_time() - cpu0
    lat = 1e3 * np.asarray(client.latencies)
    report.sent = client.sent
    report.ok = client.ok
    report.dropped = client.dropped
    report.failed = client.failed + unanswered
    report.http_errors = dict(sorted(client.http_errors.items()))
    report.elapsed_s = end - t0
    report.throughput_rps = client.ok / report.elapsed_s if report.elapsed_s > 0 else 0.0
    if lat.size:
        report.latency_ms = {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                             "p99": float(np.percentile(lat, 99)), "max": float(lat.max()), "mean": float(lat.mean())}
    report.slo_misses = int(np.sum(lat > slo_ms))
    lags = 1e3 * np.asarray(client.lags) if client.lags else np.zeros(1)
    report.client = {"send_lag_p50_ms": float(np.percentile(lags, 50)), "send_lag_p99_ms": float(np.percentile(lags, 99)),
                     "cpu_s": cpu, "cpu_fraction": cpu / max(end - t0, 1e-9), "connections": client.opened}
    return report


def run_loadtest(url: str, *, rate: float, duration_s: float, burst: bool = False, concurrency: int = 256,
                 dim: int | None = None, instances: int = 1, slo_ms: float = 50.0, timeout_s: float = 10.0,
                 seed: int = 0, allow_remote: bool = False, max_requests: int = 1_000_000) -> LoadTestReport:
    """Send open-loop Poisson traffic to ``POST`` endpoint ``url`` and measure it.

    Parameters
    ----------
    url : str
        ``http://host:port`` (posts to ``/v1/predict``) or a full endpoint URL.
    rate : float
        Mean requests per second.
    duration_s : float
        Length of the arrival schedule, seconds.
    burst : bool, default=False
        On/off-modulated arrivals with the same mean (see :func:`arrival_times`).
    concurrency : int, default=256
        Most requests in flight (connections); a request arriving beyond it is dropped.
    dim : int, default=None
        Values per instance; ``None``: read from ``GET /v1/model``.
    instances : int, default=1
        Rows per request.
    slo_ms : float, default=50
        Latency objective counted in ``slo_misses``.
    timeout_s : float, default=10
        After the last send, how long to wait for the outstanding responses.
    seed : int, default=0
        Seeds the schedule and the request bodies.
    allow_remote : bool, default=False
        Required to target anything but a loopback address.
    max_requests : int, default=1_000_000
        Refuse schedules expected to hold more requests.

    Returns
    -------
    LoadTestReport
    """
    # The standard asyncio loop, even where uvloop is installed: libuv's timers have 1 ms
    # resolution, so the sub-millisecond sleeps between sends spin, and the client was measured
    # using 2-3x more CPU per request with uvloop (160-260 us vs 75 us on 2 cores).
    return asyncio.run(run_loadtest_async(
        url, rate=rate, duration_s=duration_s, burst=burst, concurrency=concurrency, dim=dim, instances=instances,
        slo_ms=slo_ms, timeout_s=timeout_s, seed=seed, allow_remote=allow_remote, max_requests=max_requests))
