"""The ASGI application (Starlette): routes, body limits, JSON errors, metrics, lifecycle.

Endpoints: ``POST /v1/predict``, ``POST /v1/neighbors``, ``GET /v1/model``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics``. A bad request is answered with a 4xx status and
``{"error": "..."}`` naming the problem; it never reaches the batching queue, so other
requests are unaffected. The two inference POST routes, which carry the traffic, are
answered by :class:`_FrontDoor` before Starlette's middleware; Starlette serves the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from nnkd._core.artifacts import import_optional
from nnkd.serve._batcher import AIMDController, BatchStats, MicroBatcher, NotRunningError, QueueFullError
from nnkd.serve._metrics import ServerMetrics
from nnkd.serve._net import is_loopback
from nnkd.serve._openapi import OPENAPI
from nnkd.serve._planner import BatchPlan, LatencyProfile
from nnkd.serve._predictor import PredictionError, StudentPredictor
from nnkd.serve._requests import RequestError, check_content_type, decode_json, parse_instances, parse_options
from nnkd.student import Student

_HINT = "or pip install 'nnkd[serve]'"
import_optional("starlette", "starlette", "nnkd serve", _HINT)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

logger = logging.getLogger("nnkd.serve")

#: Metric label of each route; anything else is counted as "other" (raw paths never become labels).
ENDPOINTS = ("/v1/predict", "/v1/neighbors", "/v1/model", "/healthz", "/readyz", "/metrics", "/openapi.json",
             "/admin/reload")
DEFAULT_MAX_BODY_BYTES = 4 << 20
DEFAULT_MAX_INSTANCES = 1024
DEFAULT_MAX_QUEUE_ROWS = 100_000
#: Seconds a client may take to send a request body (slow or stalled uploads get 408).
DEFAULT_BODY_TIMEOUT_S = 10.0


@dataclass
class ServeConfig:
    """Limits and context of one server.

    Attributes
    ----------
    slo_s : float
        Latency objective (seconds): the planner's target, and the threshold of
        ``nnkd_slo_misses_total``.
    max_body_bytes : int, default=4 MiB
        Larger bodies are refused with 413 before being read.
    max_instances : int, default=1024
        More rows in one request: 413.
    max_queue_rows : int, default=100_000
        Rows waiting for a batch beyond which requests get 503.
    student_dir : str
        Shown at ``/v1/model``.
    checksums : dict
        SHA-256 of the student's files (shown at ``/v1/model``).
    body_timeout_s : float or None, default=10
        Seconds a request body may take to arrive; slower clients get 408.
    """

    slo_s: float
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_instances: int = DEFAULT_MAX_INSTANCES
    max_queue_rows: int = DEFAULT_MAX_QUEUE_ROWS
    student_dir: str = ""
    checksums: dict = field(default_factory=dict)
    body_timeout_s: float | None = DEFAULT_BODY_TIMEOUT_S

    def __post_init__(self):
        if not self.slo_s > 0 or self.max_body_bytes < 1 or self.max_instances < 1 or self.max_queue_rows < 1:
            raise ValueError("slo_s must be > 0 and max_body_bytes, max_instances, max_queue_rows >= 1.")
        if self.body_timeout_s is not None and not self.body_timeout_s > 0:
            raise ValueError(f"body_timeout_s={self.body_timeout_s!r} must be > 0 or None.")


# One encoder for every response: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _json_bytes(content) -> bytes:
    return _ENCODER.encode(content).encode()


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def _read_body(receive, declared: bytes | None, limit: int, timeout_s: float | None = None) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes,
    and with 408 when it has not all arrived within ``timeout_s`` seconds (a stalled client)."""
    if timeout_s is None:
        return await _receive_body(receive, declared, limit)
    try:
        return await asyncio.wait_for(_receive_body(receive, declared, limit), timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(408, f"the request body did not arrive within {timeout_s:g} s.") from None


async def _receive_body(receive, declared: bytes | None, limit: int) -> bytes:
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise RequestError(400, f"Content-Length {declared.decode(errors='replace')!r} is not an integer.") from None
        if length > limit:
            raise RequestError(413, f"the body has {length} bytes; the limit is {limit} bytes.")
    chunks, total = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:                            # chunked uploads declare no length
            raise RequestError(413, f"the body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Meter:
    """Record answered requests: count by endpoint and status, latency, SLO misses.

    Series are looked up once and cached: this runs on every request.
    """

    def __init__(self, metrics: ServerMetrics, slo_s: float):
        self.metrics = metrics
        self.slo_s = slo_s
        self.in_flight = metrics.in_flight
        self._latency = {e: metrics.latency.labels(e) for e in (*ENDPOINTS, "other")}
        self._slo_misses = {e: metrics.slo_misses.labels(e) for e in ("/v1/predict", "/v1/neighbors")}
        self._counts: dict[tuple[str, int], tuple] = {}

    def endpoint(self, path: str) -> str:
        """The metric label of a request path (a route, or ``"other"``)."""
        return path if path in self._latency else "other"

    def record(self, endpoint: str, status: int, elapsed_s: float) -> None:
        series = self._counts.get((endpoint, status))
        if series is None:
            code = str(status)
            series = self._counts[endpoint, status] = (
                self.metrics.requests.labels(endpoint, code),
                self.metrics.errors.labels(endpoint, code) if status >= 400 else None)
        series[0].inc()
        if series[1] is not None:
            series[1].inc()
        self._latency[endpoint].observe(elapsed_s)
        slo = self._slo_misses.get(endpoint)
        if slo is not None and elapsed_s > self.slo_s:
            slo.inc()


class _InferenceEndpoint:
    """``POST /v1/predict`` and ``POST /v1/neighbors`` as a plain ASGI app.

    It reads the body and writes the response itself, records its own metrics (with the
    status actually sent) and turns any unexpected error into a JSON 500, so
    :class:`_FrontDoor` can call it without Starlette's ``Request``/``Response`` objects and
    middleware. The student and batcher are read from ``serving`` once per request, after the
    body has arrived, so a hot reload never mixes them.
    """

    def __init__(self, endpoint: str, serving: _Serving, config: ServeConfig, meter: _Meter):
        self.endpoint = endpoint
        self.label = f"/v1/{endpoint}"
        self.serving = serving
        self.config = config
        self.meter = meter

    async def __call__(self, scope, receive, send):
        start = time.perf_counter()
        self.meter.in_flight.inc()
        status = 500
        try:
            status, content, extra = await self._answer(scope, receive)
            if status is None:
                return                                   # the client left before its body arrived
            try:
                body = _json_bytes(content)
            except (TypeError, ValueError, OverflowError):
                logger.exception("the answer to POST %s could not be encoded as JSON", self.label)
                status, extra = 500, []
                body = _json_bytes({"error": "internal server error: the answer holds a value JSON cannot carry "
                                             "(NaN or infinity); see the server log."})
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), *extra]})
            await send({"type": "http.response.body", "body": body})
        finally:
            self.meter.in_flight.dec()
            if status is not None:
                self.meter.record(self.label, status, time.perf_counter() - start)

    async def _answer(self, scope, receive) -> tuple[int | None, dict, list]:
        content_type = declared = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value
        try:
            check_content_type(content_type.decode("latin-1") if content_type is not None else None)
            payload = decode_json(await _read_body(receive, declared, self.config.max_body_bytes,
                                                   self.config.body_timeout_s))
            student, batcher = self.serving.current
            options = parse_options(payload, student=student, endpoint=self.endpoint)
            X = parse_instances(payload["instances"], student.n_features_in, self.config.max_instances,
                                what=student.expects())
            result = await batcher.submit(X, options)
            if isinstance(result, PredictionError):
                return 500, {"error": str(result)}, []
            return 200, result, []
        except RequestError as exc:
            return exc.status, {"error": exc.message}, []
        except QueueFullError as exc:
            return 503, {"error": str(exc)}, [(b"retry-after", b"1")]
        except NotRunningError as exc:
            return 503, {"error": str(exc)}, []
        except _ClientGone:
            return None, {}, []
        except Exception:
            logger.exception("unhandled error on POST %s", self.label)
            return 500, {"error": "internal server error (see the server log)."}, []


class _Serving:
    """The served student and its batcher. :meth:`swap` replaces both at once: the new
    batcher starts first, requests from then on go to it, and the old one drains what it had
    queued with the old student, so a reload loses or fails no request."""

    def __init__(self, student: Student, make_batcher):
        self.make_batcher = make_batcher
        self.current: tuple[Student, MicroBatcher] = (student, make_batcher(student))

    @property
    def student(self) -> Student:
        return self.current[0]

    @property
    def batcher(self) -> MicroBatcher:
        return self.current[1]

    async def swap(self, student: Student) -> None:
        batcher = self.make_batcher(student)
        await batcher.start()
        old = self.batcher
        self.current = (student, batcher)
        await old.stop()


class _MetricsMiddleware:
    """Pure ASGI middleware metering the requests Starlette answers (all but the inference
    POSTs, which meter themselves).

    It sits inside Starlette's ``ServerErrorMiddleware``, so a crash is recorded as 500 (the
    status it will be answered with) in ``finally``.
    """

    def __init__(self, app, meter: _Meter):
        self.app = app
        self.meter = meter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = self.meter.endpoint(scope["path"])
        status = 500
        start = time.perf_counter()

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.meter.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.meter.in_flight.dec()
            self.meter.record(endpoint, status, time.perf_counter() - start)


class _FrontDoor:
    """The served ASGI app: ``POST /v1/predict`` and ``POST /v1/neighbors`` go straight to
    their endpoint, everything else (lifespan included) to the Starlette app.

    These two routes carry all the traffic. In-process, with 64 concurrent one-row requests
    and the batched prediction included, the app took 139 us of CPU per request as Starlette
    function endpoints, 95 us as plain ASGI endpoints behind Starlette's middleware, and 81 us
    through this door. Other methods on these paths still reach Starlette (405).

    Attributes
    ----------
    starlette : Starlette
    serving : _Serving
        The current student and batcher (swapped by a hot reload).
    metrics : ServerMetrics
    reload_student : coroutine function
        ``await app.reload_student(path=None)``: load, validate and swap in a student.
    """

    def __init__(self, starlette: Starlette, endpoints: dict[str, _InferenceEndpoint], serving: _Serving,
                 metrics: ServerMetrics, reload_student):
        self.starlette = starlette
        self.endpoints = endpoints
        self.serving = serving
        self.metrics = metrics
        self.reload_student = reload_student

    @property
    def batcher(self) -> MicroBatcher:
        return self.serving.batcher

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.starlette(scope, receive, send)


#: What a reload callback returns: the new student, the directory it came from and its checksums.
ReloadResult = tuple[Student, str, dict]


def create_app(student: Student, plan: BatchPlan, config: ServeConfig, *,
               profile: LatencyProfile | None = None, metrics: ServerMetrics | None = None,
               reload: Callable[[str | None], ReloadResult] | None = None) -> _FrontDoor:
    """Build the ASGI app serving ``student`` with the batching ``plan``.

    Parameters
    ----------
    student : Student
    plan : BatchPlan
        From :func:`nnkd.serve.plan_batching`; ``plan.max_batch == 1`` disables batching.
    config : ServeConfig
    profile : LatencyProfile, optional
        Shown at ``/v1/model``.
    metrics : ServerMetrics, optional
        A fresh set by default (never a process-global registry, so two apps coexist).
    reload : callable, optional
        ``reload(path_or_None) -> (student, directory, checksums)`` loads and validates a
        student (``None``: the served directory again). It enables hot reload through
        ``POST /admin/reload`` (loopback clients only) and ``app.reload_student``; when it
        raises, the current student keeps serving.

    Returns
    -------
    app : ASGI application
        A Starlette app behind a front door that answers the two inference POST routes
        directly; the batcher starts in the lifespan startup and drains in its shutdown.
    """
    metrics = metrics if metrics is not None else ServerMetrics()
    batch_size, batch_time, queue_time = metrics.batch_size, metrics.batch_time, metrics.queue_time
    controllers: dict[int, AIMDController | None] = {}

    def make_batcher(served: Student) -> MicroBatcher:
        controller = AIMDController(plan.max_batch, plan.cap, plan.batch_budget_s) if plan.cap > 1 else None

        def on_batch(stats: BatchStats) -> None:
            batch_size.observe(stats.rows)
            batch_time.observe(stats.service_s)
            for wait in stats.queue_waits_s:
                queue_time.observe(wait)
            metrics.max_batch.set(batcher.max_batch)

        batcher = MicroBatcher(StudentPredictor(served), max_batch=plan.max_batch, max_delay_s=plan.max_delay_s,
                               controller=controller, max_queue_rows=config.max_queue_rows, on_batch=on_batch)
        controllers[id(batcher)] = controller
        return batcher

    serving = _Serving(student, make_batcher)
    metrics.max_batch.set(plan.max_batch)
    state = {"status": "starting", "reloads": 0}
    lock = asyncio.Lock()

    async def reload_student(path: str | None = None) -> dict:
        """Load, validate and swap in a student; raises ``ValueError``/``OSError`` (and keeps
        the current one) when the new student fails validation."""
        if reload is None:
            raise ValueError("this server was started without hot reload.")
        async with lock:
            new, directory, checksums = await asyncio.get_running_loop().run_in_executor(None, reload, path)
            old = serving.batcher
            await serving.swap(new)
            controllers.pop(id(old), None)
            config.student_dir, config.checksums = directory, checksums
            state["reloads"] += 1
        logger.info("reloaded %s: kind=%s, %s", directory, new.kind, new.expects())
        return describe_student(new, config)

    async def model(request: Request) -> Response:
        batcher = serving.batcher
        controller = controllers.get(id(batcher))
        return JSONResponse({
            "student": describe_student(serving.student, config),
            "batching": {"plan": plan.to_dict(), "current_max_batch": batcher.max_batch,
                         "controller": controller.state() if controller is not None else None,
                         "batches": batcher.batches, "rows": batcher.rows,
                         "profile": profile.to_dict() if profile is not None else None},
            "limits": {"max_body_bytes": config.max_body_bytes, "max_instances": config.max_instances,
                       "max_queue_rows": config.max_queue_rows, "body_timeout_s": config.body_timeout_s},
            "status": state["status"], "reloads": state["reloads"]})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready = state["status"] == "ready" and serving.batcher.running
        return JSONResponse({"status": state["status"]}, status_code=200 if ready else 503)

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.expose(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def admin_reload(request: Request) -> Response:
        client = request.client.host if request.client is not None else None
        if client is None or not is_loopback(client):
            return _error(403, "the admin endpoint answers loopback clients only.")
        try:
            body = await _read_body(request.receive, request.headers.get("content-length", "").encode() or None,
                                    config.max_body_bytes, config.body_timeout_s)
            payload = decode_json(body) if body else {}
            path = payload.get("path")
            if set(payload) - {"path"} or not (path is None or isinstance(path, str)):
                raise RequestError(422, 'the body may only hold {"path": "<student directory>"}.')
        except RequestError as exc:
            return _error(exc.status, exc.message)
        except _ClientGone:
            return _error(400, "the client left before its body arrived.")
        try:
            described = await reload_student(path)
        except (ValueError, TypeError, OSError) as exc:
            return _error(422, f"reload refused, the previous student keeps serving: {exc}")
        return JSONResponse({"status": "reloaded", "student": described})

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}", headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal server error (see the server log).")

    @asynccontextmanager
    async def lifespan(app):
        await serving.batcher.start()
        state["status"] = "ready"
        logger.info("ready: %s", plan.describe())
        try:
            yield
        finally:
            state["status"] = "draining"
            batcher = serving.batcher
            await batcher.stop()                    # answers every queued request first
            metrics.close()
            logger.info("stopped after %d batches (%d rows)", batcher.batches, batcher.rows)

    meter = _Meter(metrics, config.slo_s)
    hot = {f"/v1/{name}": _InferenceEndpoint(name, serving, config, meter) for name in ("predict", "neighbors")}
    routes = [Route("/v1/predict", hot["/v1/predict"], methods=["POST"]),
              Route("/v1/neighbors", hot["/v1/neighbors"], methods=["POST"]),
              Route("/v1/model", model, methods=["GET"]), Route("/healthz", healthz, methods=["GET"]),
              Route("/readyz", readyz, methods=["GET"]), Route("/metrics", metrics_endpoint, methods=["GET"]),
              Route("/openapi.json", openapi, methods=["GET"]),
              Route("/admin/reload", admin_reload, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(_MetricsMiddleware, meter=meter)],
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    return _FrontDoor(app, hot, serving, metrics, reload_student)


def describe_student(student: Student, config: ServeConfig) -> dict:
    """Metadata of the served student, as ``/v1/model`` shows it: :meth:`Student.describe`
    plus where it was loaded from and its files' checksums."""
    return {"path": config.student_dir, **student.describe(), "checksums": config.checksums}
