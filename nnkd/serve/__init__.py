"""Serve students over HTTP with SLO-aware adaptive batching, and load-test a server.

``nnkd serve STUDENT_DIR`` / :func:`run_server` validates a saved :class:`nnkd.student.Student`,
profiles its latency per batch size, plans batching for a latency SLO
(:func:`plan_batching`) and serves it with Starlette under uvicorn; ``nnkd loadtest URL`` /
:func:`run_loadtest` sends open-loop Poisson traffic and reports client-side latency.

This package depends on :mod:`nnkd.student` (and the index layer) only, never on torch.
Starlette and uvicorn are imported only when an app is built or a server runs
(``pip install 'nnkd[serve]'``); the planner, batcher and load generator need neither.
"""

from __future__ import annotations

import importlib

from nnkd.serve._batcher import AIMDController, BatchStats, MicroBatcher, NotRunningError, QueueFullError
from nnkd.serve._loadtest import LoadTestReport, arrival_times, run_loadtest, run_loadtest_async
from nnkd.serve._metrics import ServerMetrics
from nnkd.serve._planner import BatchPlan, LatencyProfile, plan_batching, profile_latency
from nnkd.serve._predictor import StudentPredictor
from nnkd.serve._requests import Options, RequestError

# These need Starlette (and uvicorn); resolved on first use.
_LAZY = {"create_app": "nnkd.serve._app", "ServeConfig": "nnkd.serve._app",
         "prepare_server": "nnkd.serve._server", "run_server": "nnkd.serve._server"}

__all__ = ["AIMDController", "BatchPlan", "BatchStats", "LatencyProfile", "LoadTestReport", "MicroBatcher",
           "NotRunningError", "Options", "QueueFullError", "RequestError", "ServeConfig", "ServerMetrics",
           "StudentPredictor", "arrival_times", "create_app", "plan_batching", "prepare_server", "profile_latency",
           "run_loadtest", "run_loadtest_async", "run_server"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnkd.serve' has no attribute {name!r}")


def __dir__():
    return __all__
