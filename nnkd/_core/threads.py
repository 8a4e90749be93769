"""Thread control for Numba kernels: honour ``n_jobs`` and never oversubscribe BLAS."""

from __future__ import annotations

from contextlib import contextmanager

import numba
from joblib import effective_n_jobs
from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None


def _blas_controller() -> ThreadpoolController:
    # Inspecting the loaded libraries costs ~0.3 ms; do it once, not per query batch.
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller


def n_threads(n_jobs=None) -> int:
    """Threads ``n_jobs`` stands for (``None``: 1, ``-1``: all cores), capped at Numba's pool."""
    return max(1, min(effective_n_jobs(n_jobs), numba.config.NUMBA_NUM_THREADS))


#: BLAS thread count pinned for the whole process by :func:`pin_blas_threads` (None: not pinned).
_pinned_blas: int | None = None


def pin_blas_threads(n: int) -> None:
    """Set BLAS to ``n`` threads for the rest of the process (a server does this once), so
    :func:`kernel_threads` need not limit it around every call."""
    global _pinned_blas
    _blas_controller().limit(limits=n, user_api="blas")
    _pinned_blas = n


@contextmanager
def kernel_threads(n_jobs=None, *, blas: bool = False):
    """Run the body with ``effective_n_jobs(n_jobs)`` Numba threads.

    BLAS gets one thread, or the same count when ``blas=True`` (for code that alternates
    GEMM calls and Numba kernels, never running both at once). Restores the previous
    Numba thread count on exit, even on error. What is already in place is left alone:
    Numba's count when the calling thread already has it, BLAS when
    :func:`pin_blas_threads` pinned the wanted count (a serving thread pays nothing per call;
    each threadpoolctl limit costs tens of microseconds).
    """
    n = n_threads(n_jobs)
    previous = numba.get_num_threads()
    if previous != n:
        numba.set_num_threads(n)
    try:
        want = n if blas else 1
        if _pinned_blas == want:
            yield n
        else:
            with _blas_controller().limit(limits=want, user_api="blas"):
                yield n
    finally:
        if previous != n:
            numba.set_num_threads(previous)


@contextmanager
def library_threads(get_threads, set_threads, n_jobs=None):
    """Run the body with ``n_threads(n_jobs)`` threads of a library that has a global thread
    count (PyTorch's intra-op pool, FAISS's OpenMP), restored on exit even on error.

    ``get_threads`` / ``set_threads`` are the library's own functions (``torch.get_num_threads``,
    ``faiss.omp_get_max_threads``, ...), so this layer imports neither library.
    """
    previous = get_threads()
    set_threads(n_threads(n_jobs))
    try:
        yield
    finally:
        set_threads(previous)


def torch_threads(torch, n_jobs=None):
    """:func:`library_threads` for the ``torch`` module passed in."""
    return library_threads(torch.get_num_threads, torch.set_num_threads, n_jobs)
