"""Exact nearest-prototype search (Numba), the reference 1-NN used by condensing."""

from __future__ import annotations

import numba
import numpy as np

from nnkd._core.metrics import CHEBYSHEV, EUCLIDEAN, MANHATTAN
from nnkd._core.threads import kernel_threads


# reassoc/contract only (no nnan/ninf): lets LLVM vectorise the reduction over
# features while inf sentinels keep working. Rows come in as 1-D contiguous views,
# which is what makes the loop vectorise (2-D indexing does not, 4x slower). Not
# inline="always": Numba-IR inlining would compile the body with the caller's
# (strict) flags; LLVM still inlines it and keeps these flags.
@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def rank_distance(x, p, metric):
    """Rank-preserving distance between rows ``x`` and ``p``: squared euclidean,
    manhattan or chebyshev, accumulated in float64."""
    s = 0.0
    if metric == EUCLIDEAN:
        for f in range(x.shape[0]):
            t = np.float64(x[f]) - np.float64(p[f])
            s += t * t
    elif metric == MANHATTAN:
        for f in range(x.shape[0]):
            s += abs(np.float64(x[f]) - np.float64(p[f]))
    else:
        for f in range(x.shape[0]):
            t = abs(np.float64(x[f]) - np.float64(p[f]))
            s = max(s, t)
    return s


@numba.njit(cache=True, nogil=True)
def _scan(x, S, lo, hi, metric, best, arg):
    for s in range(lo, hi):
        d = rank_distance(x, S[s], metric)
        if d < best:                                  # strict: ties keep the earlier row
            best = d
            arg = s
    return best, arg


@numba.njit(cache=True, nogil=True)
def scan_nearest(x, S, lo, hi, metric, best, arg):
    """Improve ``(best, arg)`` with rows ``S[lo:hi]``; returns the new pair.

    Strict comparison: ties keep the earlier row. Each call below passes the metric as
    a constant, so once LLVM inlines ``_scan`` the loop body is branch-free and
    vectorises (a runtime metric inside the loop is 5x slower).
    """
    if metric == EUCLIDEAN:
        return _scan(x, S, lo, hi, EUCLIDEAN, best, arg)
    if metric == MANHATTAN:
        return _scan(x, S, lo, hi, MANHATTAN, best, arg)
    return _scan(x, S, lo, hi, CHEBYSHEV, best, arg)


@numba.njit(parallel=True, cache=True, nogil=True)
def _nearest(Q, P, metric, out_dist, out_ind):
    for i in numba.prange(Q.shape[0]):               # one query per thread: no races
        best, arg = scan_nearest(Q[i], P, 0, P.shape[0], metric, np.inf, -1)
        out_dist[i] = np.sqrt(best) if metric == EUCLIDEAN else best
        out_ind[i] = arg


def nearest_prototype(Q, P, metric_code: int, n_jobs=None):
    """Nearest row of ``P`` for every row of ``Q`` (both coerced float32, same space).

    Returns
    -------
    dist : ndarray of shape (n_queries,), dtype=float64
    ind : ndarray of shape (n_queries,), dtype=int64
        Ties go to the smallest index of ``P``.
    """
    dist = np.empty(Q.shape[0], dtype=np.float64)
    ind = np.empty(Q.shape[0], dtype=np.int64)
    with kernel_threads(n_jobs):
        _nearest(Q, P, metric_code, dist, ind)
    return dist, ind
