"""``nnkd serve``: validate a student directory, profile it, plan batching, run uvicorn."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from nnkd._core.artifacts import import_optional
from nnkd._core.threads import pin_blas_threads
from nnkd.serve._metrics import MULTIPROC_ENV
from nnkd.serve._net import is_loopback
from nnkd.serve._planner import DEFAULT_MAX_BATCH_CAP, BatchPlan, LatencyProfile, plan_batching, profile_latency
from nnkd.serve._predictor import StudentPredictor
from nnkd.serve._requests import Options, request_overhead
from nnkd.student import Student, load_student, read_student_metadata

logger = logging.getLogger("nnkd.serve")

#: Environment variable that hands the prepared configuration to uvicorn's worker processes.
_ENV_CONFIG = "NNKD_SERVE_CONFIG"
#: Seconds a connection may take to send a request's headers before it is closed.
DEFAULT_HEADER_TIMEOUT_S = 10.0


@dataclass
class PreparedServer:
    """Everything a server process needs, JSON-serialisable (sent to worker processes).

    Attributes
    ----------
    student_dir : str
    plan : dict
        :meth:`BatchPlan.to_dict`.
    profile : dict or None
        ``LatencyProfile`` fields.
    slo_s : float
    max_body_bytes, max_instances, max_queue_rows : int
    checksums : dict
    key_file : str or None
        Key file the student was verified with (the key itself is never passed on; workers
        read it, or ``NNKD_ARTIFACT_KEY``, themselves).
    body_timeout_s : float
    trust_native : bool or None
    header_timeout_s : float
        Seconds a connection may take to send a request's headers (each worker applies it).
    """

    student_dir: str
    plan: dict
    profile: dict | None
    slo_s: float
    max_body_bytes: int
    max_instances: int
    max_queue_rows: int
    checksums: dict
    key_file: str | None = None
    body_timeout_s: float = 10.0
    trust_native: bool | None = None
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S


def limit_threads() -> None:
    """One BLAS thread for the whole server process.

    The student's Numba kernels and exact search already run on one thread per call (its
    index has ``n_jobs=None``, see :func:`nnkd._core.threads.kernel_threads`); BLAS outside
    them (the ``rbf`` kind's GEMM) would otherwise spread over every core and compete with
    the event loop, which needs one core for itself.

    Python's GIL switch interval is left at its default (5 ms): a 0.5 ms interval was
    measured to make the unbatched server collapse at 900 req/s on 2 cores (p99 > 300 ms,
    where 5 ms gives 55 ms) and to change nothing with batching.
    """
    pin_blas_threads(1)


def prepare_server(student_dir, *, slo_ms: float = 50.0, max_batch: int | None = None,
                   max_delay_ms: float | None = None, max_body_bytes: int | None = None,
                   max_instances: int | None = None, max_queue_rows: int | None = None,
                   profile_budget_s: float = 2.0, seed: int = 0, key_file=None,
                   body_timeout_s: float = 10.0, trust_native: bool | None = None) -> tuple[Student, PreparedServer]:
    """Load and validate the student, profile its latency per batch size and plan batching.

    Parameters
    ----------
    student_dir : path
        A directory written by :meth:`Student.save`; checksums are verified, nothing is
        unpickled or executed.
    slo_ms : float, default=50
    max_batch : int, default=None
        Cap on rows per batch (``1``: no batching); ``None``: up to 1024, as the plan allows.
    max_delay_ms : float, default=None
        Override the planned queue delay.
    max_body_bytes, max_instances, max_queue_rows : int, default=None
        Request limits (``None``: the defaults of :class:`nnkd.serve.ServeConfig`).
    profile_budget_s : float, default=2.0
        Time allowed for profiling.
    seed : int, default=0
        Seed of the profiling rows.
    key_file : path, default=None
        Key the student's signature is checked with (else ``NNKD_ARTIFACT_KEY``, if set);
        with a key, unsigned or wrongly signed students are refused.
    body_timeout_s : float, default=10
        Seconds a client may take to send a request body.
    trust_native : bool, default=None
        Load an unsigned FAISS/NMSLIB index saved with the student (see
        :func:`nnkd.index.load_index`).

    Returns
    -------
    student : Student
    prepared : PreparedServer
    """
    from nnkd.serve._app import ServeConfig

    if not (slo_ms > 0 and np.isfinite(slo_ms)):
        raise ValueError(f"--slo-ms {slo_ms} must be a positive number of milliseconds.")
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"--max-batch {max_batch} must be >= 1 (1 disables batching).")
    if max_delay_ms is not None and not max_delay_ms >= 0:
        raise ValueError(f"--max-delay-ms {max_delay_ms} must be >= 0.")
    directory = Path(student_dir)
    student, checksums = _load_checked(directory, key_file, trust_native)
    defaults = ServeConfig(slo_s=slo_ms / 1e3)
    config = ServeConfig(slo_s=slo_ms / 1e3, max_body_bytes=max_body_bytes or defaults.max_body_bytes,
                         max_instances=max_instances or defaults.max_instances,
                         max_queue_rows=max_queue_rows or defaults.max_queue_rows)
    predictor = StudentPredictor(student)
    rng = np.random.default_rng(seed)
    option = Options()

    def run(X):
        return predictor(X, [X.shape[0]], [option])

    cap = max_batch if max_batch is not None else DEFAULT_MAX_BATCH_CAP
    profile = profile_latency(run, lambda b: predictor.sample_rows(b, rng), max_batch=cap, budget_s=profile_budget_s)
    overhead = request_overhead(student)
    plan = plan_batching(profile, config.slo_s, request_overhead_s=overhead, max_batch=max_batch,
                         max_delay_s=None if max_delay_ms is None else max_delay_ms / 1e3)
    prepared = PreparedServer(student_dir=str(directory.resolve()), plan=plan.to_dict(),
                              profile=asdict(profile), slo_s=config.slo_s, max_body_bytes=config.max_body_bytes,
                              max_instances=config.max_instances, max_queue_rows=config.max_queue_rows,
                              checksums=checksums, key_file=None if key_file is None else str(Path(key_file).resolve()),
                              body_timeout_s=body_timeout_s, trust_native=trust_native)
    return student, prepared


def build_app(student: Student, prepared: PreparedServer):
    """The Starlette app for a prepared server."""
    from nnkd.serve._app import ServeConfig, create_app

    config = ServeConfig(slo_s=prepared.slo_s, max_body_bytes=prepared.max_body_bytes,
                         max_instances=prepared.max_instances, max_queue_rows=prepared.max_queue_rows,
                         student_dir=prepared.student_dir, checksums=prepared.checksums,
                         body_timeout_s=prepared.body_timeout_s)
    profile = LatencyProfile(**{k: tuple(v) for k, v in prepared.profile.items()}) if prepared.profile else None

    def reload(path: str | None):
        directory = Path(path if path is not None else config.student_dir).resolve()
        new, checksums = _load_checked(directory, prepared.key_file, prepared.trust_native)
        return new, str(directory), checksums

    return create_app(student, BatchPlan.from_dict(prepared.plan), config, profile=profile, reload=reload)


def _load_checked(directory: Path, key_file, trust_native=None) -> tuple[Student, dict]:
    """The student in ``directory`` and its verified checksums (signature, format, schema)."""
    student = load_student(directory, key_file=key_file, trust_native=trust_native)
    return student, read_student_metadata(directory, key_file=key_file)["files"]


def log_to_stderr() -> None:
    """Send the ``nnkd.serve`` log (plan, start, stop) to stderr; for the processes that
    ``nnkd serve`` starts, never called on import."""
    logger = logging.getLogger("nnkd.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("nnkd serve: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@contextmanager
def _multiprocess_metrics():
    """A fresh ``PROMETHEUS_MULTIPROC_DIR`` for the workers (spawned processes read it when they
    import ``prometheus_client``), removed afterwards; a directory the caller set is used as
    it is (``prometheus_client`` expects it emptied between runs: that is the caller's)."""
    if os.environ.get(MULTIPROC_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="nnkd-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(directory, ignore_errors=True)


def worker_app():
    """App factory of a uvicorn worker process (``--workers > 1``): re-validates the
    student and uses the plan the parent process made."""
    log_to_stderr()
    limit_threads()
    prepared = PreparedServer(**json.loads(os.environ[_ENV_CONFIG]))
    _guarded_protocol(prepared.header_timeout_s)     # this worker imports the protocol by name
    return build_app(load_student(prepared.student_dir, key_file=prepared.key_file,
                                  trust_native=prepared.trust_native), prepared)


def _guarded_protocol(header_timeout_s: float) -> str | None:
    """The import path of :class:`nnkd.serve._protocol.GuardedHttpTools` (uvicorn's httptools
    protocol with a deadline of ``header_timeout_s`` on request headers), set for this process;
    ``None`` when httptools is not installed (uvicorn's h11 fallback then runs without it)."""
    try:
        from nnkd.serve import _protocol
    except ImportError:
        return None
    _protocol.GuardedHttpTools.header_timeout_s = float(header_timeout_s)
    return _protocol.IMPORT_PATH


def _graceful_server(uvicorn, config, app):
    """A uvicorn ``Server`` that exits with status 0 after a SIGTERM drain (uvicorn re-raises
    the signal, which ends the process with -15) and hot-reloads the student on SIGHUP."""
    import asyncio
    import signal

    class GracefulServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM and self._captured_signals and self._captured_signals[-1] == sig:
                self._captured_signals.pop()      # a requested, graceful stop: not an error

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            loop = asyncio.get_running_loop()

            async def reload() -> None:
                try:
                    await app.reload_student()
                except (ValueError, TypeError, OSError) as exc:
                    logger.error("SIGHUP reload refused, the previous student keeps serving: %s", exc)

            try:
                loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload()))
            except (NotImplementedError, RuntimeError, AttributeError):   # no SIGHUP (Windows), not main thread
                logger.warning("SIGHUP reload is not available here; use POST /admin/reload")

    return GracefulServer(config)


def run_server(student_dir, *, host: str = "127.0.0.1", port: int = 8000, slo_ms: float = 50.0, workers: int = 1,
               max_batch: int | None = None, max_delay_ms: float | None = None, max_body_bytes: int | None = None,
               max_instances: int | None = None, max_queue_rows: int | None = None,
               log_level: str = "info", key_file=None, header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
               body_timeout_s: float = 10.0, trust_native: bool | None = None) -> None:
    """Serve a student over HTTP until stopped: SIGTERM or SIGINT finish queued requests (exit
    status 0 after SIGTERM); SIGHUP or ``POST /admin/reload`` swap in the student re-saved at
    the same directory (or another, with ``{"path": ...}``) without failing a request, and
    keep the current one if the new one fails validation.

    Parameters
    ----------
    student_dir : path
    host : str, default="127.0.0.1"
        Loopback by default; any other address is served as asked, with a warning.
    port : int, default=8000
    slo_ms : float, default=50
    workers : int, default=1
        uvicorn worker processes (each with its own batcher, same plan). With more than one,
        SIGHUP makes uvicorn restart the workers (each re-validates the student).
    max_batch, max_delay_ms, max_body_bytes, max_instances, max_queue_rows, key_file, body_timeout_s, trust_native
        See :func:`prepare_server`.
    log_level : str, default="info"
    header_timeout_s : float, default=10
        Seconds a connection may take to send a request's headers.
    """
    uvicorn = import_optional("uvicorn", "uvicorn", "nnkd serve", "or pip install 'nnkd[serve]'")
    import_optional("starlette", "starlette", "nnkd serve", "or pip install 'nnkd[serve]'")
    if workers < 1:
        raise ValueError(f"--workers {workers} must be >= 1.")
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port} must be in [0, 65535].")
    if not (header_timeout_s > 0 and body_timeout_s > 0):
        raise ValueError("--header-timeout and --body-timeout must be > 0 seconds.")
    limit_threads()
    student, prepared = prepare_server(student_dir, slo_ms=slo_ms, max_batch=max_batch, max_delay_ms=max_delay_ms,
                                       max_body_bytes=max_body_bytes, max_instances=max_instances,
                                       max_queue_rows=max_queue_rows, key_file=key_file,
                                       body_timeout_s=body_timeout_s, trust_native=trust_native)
    prepared = replace(prepared, header_timeout_s=float(header_timeout_s))
    plan = BatchPlan.from_dict(prepared.plan)
    logger.info("student %s: kind=%s, %s, %d bytes", prepared.student_dir, student.kind, student.expects(),
                student.size_bytes)
    for row in LatencyProfile(**{k: tuple(v) for k, v in prepared.profile.items()}).to_dict()["rows"]:
        logger.info("profile: batch %5d  p50 %7.3f ms  p99 %7.3f ms  %9.0f rows/s", row["batch_size"],
                    row["p50_ms"], row["p99_ms"], row["rows_per_s"])
    logger.info("%s", plan.describe())
    if not plan.feasible:
        logger.warning("the SLO of %.0f ms cannot be met by this student on this machine", slo_ms)
    if not is_loopback(host):
        logger.warning("binding to %s: the server is reachable from other machines", host)
    # No access log, proxy-header rewriting, Server or Date header: per-request work nobody
    # asked for on a loopback inference server.
    common = {"host": host, "port": port, "log_level": log_level, "access_log": False, "lifespan": "on",
              "timeout_graceful_shutdown": None, "proxy_headers": False, "server_header": False, "date_header": False}
    protocol = _guarded_protocol(header_timeout_s)
    if protocol is not None:
        common["http"] = protocol
    else:
        logger.warning("httptools is not installed: uvicorn's h11 protocol serves without the --header-timeout "
                       "deadline (pip install httptools)")
    if workers == 1:
        app = build_app(student, prepared)
        _graceful_server(uvicorn, uvicorn.Config(app, **common), app).run()
    else:
        os.environ[_ENV_CONFIG] = json.dumps(asdict(prepared))
        with _multiprocess_metrics():
            uvicorn.run("nnkd.serve._server:worker_app", factory=True, workers=workers, **common)
