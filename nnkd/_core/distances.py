"""Exact k nearest neighbours, the reference every index backend is tested against.

Inner-product metrics (squared euclidean, inner product) run as blocked float64 GEMM
followed by a parallel top-k selection; manhattan and chebyshev, which have no GEMM form,
run as a vectorised Numba scan. Squared euclidean distances of the selected neighbours are
recomputed from coordinate differences, so close pairs do not suffer the cancellation of
``|x|^2 - 2 x.q + |q|^2``.
"""

from __future__ import annotations

import numba
import numpy as np

from nnkd._core.metrics import CHEBYSHEV, EUCLIDEAN, MANHATTAN
from nnkd._core.nearest import rank_distance
from nnkd._core.threads import kernel_threads

#: Kernel code for the negated inner product (not a metric the C core knows).
NEG_INNER = 3

# 512 x 8192 float64 = 32 MiB per GEMM block: large enough for BLAS to run near peak,
# small enough to stay out of swap with many threads.
_QUERY_BLOCK = 512
_BASE_BLOCK = 8192
_MIN_PARALLEL_QUERIES = 256


@numba.njit(cache=True, nogil=True, inline="always")
def _push(d, j, top_d, top_i):
    """Insert ``(d, j)`` into the ascending row ``top_d``/``top_i`` if it beats the worst.

    Candidates arrive in increasing ``j``; strict comparisons keep the smaller index first
    among equal distances (and keep it in when a tie falls on the k-th place).
    """
    k = top_d.shape[0]
    if not d < top_d[k - 1]:
        return
    p = k - 1
    while p > 0 and top_d[p - 1] > d:
        top_d[p] = top_d[p - 1]
        top_i[p] = top_i[p - 1]
        p -= 1
    top_d[p] = d
    top_i[p] = j


@numba.njit(parallel=True, cache=True, nogil=True)
def _select_block(G, col_add, scale, offset, top_d, top_i):
    for i in numba.prange(G.shape[0]):
        row, td, ti = G[i], top_d[i], top_i[i]
        for j in range(row.shape[0]):
            _push(col_add[j] + scale * row[j], offset + j, td, ti)


@numba.njit(cache=True, nogil=True)
def _scan_topk(x, X, metric, td, ti):
    for j in range(X.shape[0]):
        _push(rank_distance(x, X[j], metric), j, td, ti)


@numba.njit(parallel=True, cache=True, nogil=True)
def _knn_scan(Q, X, metric, top_d, top_i):
    for i in numba.prange(Q.shape[0]):
        # A constant metric per call site lets LLVM specialise the inlined loop.
        if metric == MANHATTAN:
            _scan_topk(Q[i], X, MANHATTAN, top_d[i], top_i[i])
        elif metric == CHEBYSHEV:
            _scan_topk(Q[i], X, CHEBYSHEV, top_d[i], top_i[i])
        else:
            _scan_topk(Q[i], X, EUCLIDEAN, top_d[i], top_i[i])


@numba.njit(parallel=True, cache=True, nogil=True)
def _refine_sqeuclidean(Q, X, top_d, top_i):
    k = top_d.shape[1]
    for i in numba.prange(Q.shape[0]):
        td, ti = top_d[i], top_i[i]
        for c in range(k):
            td[c] = rank_distance(Q[i], X[ti[c]], EUCLIDEAN)
        for c in range(1, k):                   # insertion sort by (distance, index)
            d, j, p = td[c], ti[c], c
            while p > 0 and (td[p - 1] > d or (td[p - 1] == d and ti[p - 1] > j)):
                td[p] = td[p - 1]
                ti[p] = ti[p - 1]
                p -= 1
            td[p] = d
            ti[p] = j


def exact_knn(Q: np.ndarray, X: np.ndarray, k: int, metric: int, n_jobs=None,
              X_sqnorm: np.ndarray | None = None, X64: np.ndarray | None = None):
    """The ``k`` nearest rows of ``X`` for every row of ``Q``, exactly.

    Parameters
    ----------
    Q, X : ndarray, C-contiguous float32, same number of columns
    k : int
        ``1 <= k <= len(X)`` (checked by the caller).
    metric : int
        ``EUCLIDEAN`` (returns squared distances), ``MANHATTAN``, ``CHEBYSHEV`` or
        ``NEG_INNER`` (returns ``-x.q``).
    X_sqnorm : ndarray of shape (len(X),), dtype=float64, optional
        Cached squared norms of ``X`` for ``EUCLIDEAN``.
    X64 : ndarray, optional
        Cached float64 copy of ``X`` (spares converting it at every call: small query
        batches are otherwise dominated by that conversion).

    Returns
    -------
    dist : ndarray of shape (len(Q), k), dtype=float64
        Ascending; ties are ordered by index.
    ind : ndarray of shape (len(Q), k), dtype=int64
    """
    m, n = Q.shape[0], X.shape[0]
    top_d = np.full((m, k), np.inf)
    top_i = np.full((m, k), -1, dtype=np.int64)
    # A few queries cannot feed several threads; waking BLAS and Numba pools for them costs
    # milliseconds (measured: 0.45 ms -> 8.8 ms for one query on 2 threads).
    with kernel_threads(n_jobs if m >= _MIN_PARALLEL_QUERIES else 1, blas=True):
        if metric in (MANHATTAN, CHEBYSHEV):
            _knn_scan(Q, X, metric, top_d, top_i)
            return top_d, top_i
        if metric == EUCLIDEAN:
            if X_sqnorm is None:
                X_sqnorm = np.einsum("ij,ij->i", X, X, dtype=np.float64)
            col_add, scale = X_sqnorm, -2.0
        else:
            col_add, scale = np.zeros(n), -1.0
        for b in range(0, n, _BASE_BLOCK):
            Xb = X64[b:b + _BASE_BLOCK] if X64 is not None else X[b:b + _BASE_BLOCK].astype(np.float64)
            add = np.ascontiguousarray(col_add[b:b + _BASE_BLOCK])
            for a in range(0, m, _QUERY_BLOCK):
                G = Q[a:a + _QUERY_BLOCK].astype(np.float64) @ Xb.T
                _select_block(G, add, scale, b, top_d[a:a + _QUERY_BLOCK], top_i[a:a + _QUERY_BLOCK])
        if metric == EUCLIDEAN:
            _refine_sqeuclidean(Q, X, top_d, top_i)
    return top_d, top_i
