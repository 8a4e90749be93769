"""``nnkd serve``: validate a student directory, profile it, plan batching, run uvicorn."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nnkd._core.artifacts import import_optional
from nnkd.serve._net import is_loopback
from nnkd.serve._planner import DEFAULT_MAX_BATCH_CAP, BatchPlan, LatencyProfile, plan_batching, profile_latency
from nnkd.serve._predictor import StudentPredictor
from nnkd.serve._requests import Options, request_overhead
from nnkd.student import Student, load_student, read_student_metadata

logger = logging.getLogger("nnkd.serve")

#: Environment variable that hands the prepared configuration to uvicorn's worker processes.
_ENV_CONFIG = "NNKD_SERVE_CONFIG"
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
    """

    student_dir: str
    plan: dict
    profile: dict | None
    slo_s: float
    max_body_bytes: int
    max_instances: int
    max_queue_rows: int
    checksums: dict


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
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def prepare_server(student_dir, *, slo_ms: float = 50.0, max_batch: int | None = None,
                   max_delay_ms: float | None = None, max_body_bytes: int | None = None,
                   max_instances: int | None = None, max_queue_rows: int | None = None,
                   profile_budget_s: float = 2.0, seed: int = 0) -> tuple[Student, PreparedServer]:
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
    student = load_student(directory)               # format, shapes and every checksum
    checksums = read_student_metadata(directory)["files"]
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
                              checksums=checksums)
    return student, prepared


def build_app(student: Student, prepared: PreparedServer):
    """The Starlette app for a prepared server."""
    from nnkd.serve._app import ServeConfig, create_app

    config = ServeConfig(slo_s=prepared.slo_s, max_body_bytes=prepared.max_body_bytes,
                         max_instances=prepared.max_instances, max_queue_rows=prepared.max_queue_rows,
                         student_dir=prepared.student_dir, checksums=prepared.checksums)
    profile = LatencyProfile(**{k: tuple(v) for k, v in prepared.profile.items()}) if prepared.profile else None
    return create_app(student, BatchPlan.from_dict(prepared.plan), config, profile=profile)


def log_to_stderr() -> None:
    """Send the ``nnkd.serve`` log (plan, start, stop) to stderr; for the processes that
    ``nnkd serve`` starts, never called on import."""
    logger = logging.getLogger("nnkd.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("nnkd serve: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def worker_app():
    """App factory of a uvicorn worker process (``--workers > 1``): re-validates the
    student and uses the plan the parent process made."""
    log_to_stderr()
    limit_threads()
    prepared = PreparedServer(**json.loads(os.environ[_ENV_CONFIG]))
    return build_app(load_student(prepared.student_dir), prepared)


def run_server(student_dir, *, host: str = "127.0.0.1", port: int = 8000, slo_ms: float = 50.0, workers: int = 1,
               max_batch: int | None = None, max_delay_ms: float | None = None, max_body_bytes: int | None = None,
               max_instances: int | None = None, max_queue_rows: int | None = None,
               log_level: str = "info") -> None:
    """Serve a student over HTTP until interrupted (SIGINT/SIGTERM finish queued requests).

    Parameters
    ----------
    student_dir : path
    host : str, default="127.0.0.1"
        Loopback by default; any other address is served as asked, with a warning.
    port : int, default=8000
    slo_ms : float, default=50
    workers : int, default=1
        uvicorn worker processes (each with its own batcher, same plan).
    max_batch, max_delay_ms, max_body_bytes, max_instances, max_queue_rows
        See :func:`prepare_server`.
    log_level : str, default="info"
    """
    uvicorn = import_optional("uvicorn", "uvicorn", "nnkd serve", "or pip install 'nnkd[serve]'")
    import_optional("starlette", "starlette", "nnkd serve", "or pip install 'nnkd[serve]'")
    if workers < 1:
        raise ValueError(f"--workers {workers} must be >= 1.")
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port} must be in [0, 65535].")
    limit_threads()
    student, prepared = prepare_server(student_dir, slo_ms=slo_ms, max_batch=max_batch, max_delay_ms=max_delay_ms,
                                       max_body_bytes=max_body_bytes, max_instances=max_instances,
                                       max_queue_rows=max_queue_rows)
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
    if workers == 1:
        uvicorn.run(build_app(student, prepared), **common)
    else:
        os.environ[_ENV_CONFIG] = json.dumps(asdict(prepared))
        uvicorn.run("nnkd.serve._server:worker_app", factory=True, workers=workers, **common)
