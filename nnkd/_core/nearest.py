"""Exact nearest-prototype search (Numba), the reference 1-NN used by condensing."""

from __future__ import annotations

import numba
import numpy as np

from nnkd._core.metrics import EUCLIDEAN, MANHATTAN
from nnkd._core.threads import kernel_threads


@numba.njit(cache=True, nogil=True, inline="always")
def rank_distance(X, i, P, j, metric):
    """Rank-preserving distance between ``X[i]`` and ``P[j]``: squared euclidean,
    manhattan or chebyshev, accumulated in float64."""
    s = 0.0
    if metric == EUCLIDEAN:
        for f in range(X.shape[1]):
            t = np.float64(X[i, f]) - np.float64(P[j, f])
            s += t * t
    elif metric == MANHATTAN:
        for f in range(X.shape[1]):
            s += abs(np.float64(X[i, f]) - np.float64(P[j, f]))
    else:
        for f in range(X.shape[1]):
            t = abs(np.float64(X[i, f]) - np.float64(P[j, f]))
            if t > s:
                s = t
    return s


@numba.njit(parallel=True, cache=True, nogil=True)
def _nearest(Q, P, metric, out_dist, out_ind):
    for i in numba.prange(Q.shape[0]):               # one query per thread: no races
        best = np.inf
        arg = -1
        for j in range(P.shape[0]):
            d = rank_distance(Q, i, P, j, metric)
            if d < best:                              # strict: ties go to the earliest prototype
                best = d
                arg = j
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
