"""Thread control for Numba kernels: honour ``n_jobs`` and never oversubscribe BLAS."""

from __future__ import annotations

from contextlib import contextmanager

import numba
from joblib import effective_n_jobs
from threadpoolctl import threadpool_limits


@contextmanager
def kernel_threads(n_jobs=None):
    """Run the body with ``effective_n_jobs(n_jobs)`` Numba threads and one BLAS thread.

    Restores the previous Numba thread count on exit, even on error.
    """
    n = max(1, min(effective_n_jobs(n_jobs), numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield n
    finally:
        numba.set_num_threads(previous)
