"""Exact k nearest neighbours, the reference every index backend is tested against.

Inner-product metrics (squared euclidean, inner product) screen candidates with a blocked
float32 GEMM and a proven bound on its rounding error, then recompute the candidates'
distances exactly in float64 (squared euclidean from coordinate differences, so close pairs
do not suffer the cancellation of ``|x|^2 - 2 x.q + |q|^2``); manhattan and chebyshev, which
have no GEMM form, run as a vectorised Numba scan.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from nnkd._core.metrics import CHEBYSHEV, EUCLIDEAN, MANHATTAN
from nnkd._core.nearest import rank_distance
from nnkd._core.threads import kernel_threads, n_threads

#: Kernel code for the negated inner product (not a metric the C core knows).
NEG_INNER = 3

# 512 x 8192 products per GEMM block (16 MiB in float32): large enough for BLAS to run near
# peak, small enough to stay in memory with many threads.
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


@numba.njit(cache=True, nogil=True, inline="always")
def _push_bounds(lb, ub, j, pool_lb, pool_ub, pool_i):
    """Offer ``(lb, ub, j)`` to a row's pool, a max-heap on the lower bound (root: the largest
    kept): it replaces the root when smaller, in O(log size), so large ``k`` stays cheap."""
    if not lb < pool_lb[0]:
        return
    size = pool_lb.shape[0]
    p = 0
    while True:                                   # sift the new entry down from the root
        c = 2 * p + 1
        if c >= size:
            break
        if c + 1 < size and pool_lb[c + 1] > pool_lb[c]:
            c += 1
        if not pool_lb[c] > lb:
            break
        pool_lb[p] = pool_lb[c]
        pool_ub[p] = pool_ub[c]
        pool_i[p] = pool_i[c]
        p = c
    pool_lb[p] = lb
    pool_ub[p] = ub
    pool_i[p] = j


@numba.njit(cache=True, nogil=True, inline="always")
def _upper32(t):
    """A float32 no smaller than float64 ``t`` (float32 rounding is relative 6e-8)."""
    return np.float32(t + abs(t) * 1e-6 + 1e-30)


# Serial kernels: exact_knn runs them on several Python threads at once (nogil), one query
# chunk each, with single-threaded BLAS, so no thread pool waits on another between the GEMM
# and the selection (numba's parallel kernels may not run concurrently from two threads).
@numba.njit(cache=True, nogil=True)
def _pool_block(G, col_add, col_norm, col_scaled, q_add, q_norm, scale, gamma, slack, offset, pool_lb, pool_ub,
                pool_i):
    """For each query row: keep the pool of candidates with the smallest lower bounds of
    ``col_add[j] + q_add[i] + scale * x_j.q_i``, where ``G`` holds the float32 products and
    ``gamma * |x_j| |q_i|`` bounds their rounding error.

    Most rows cannot enter the pool; a float32 test rejects them first: with ``s = -scale``,
    ``col_scaled[j] = col_add[j] / s`` (float32) and ``E = gamma max|x| |q_i|``, a row's lower
    bound is at least ``s (col_scaled[j] - g_j) + q_add[i] - E`` up to the float32 roundings
    that ``slack`` (per unit of ``|q_i|``) covers, so ``col_scaled[j] - g_j >= T`` proves it out.
    """
    s = -scale
    max_norm = col_norm.max() if col_norm.shape[0] else 0.0
    for i in range(G.shape[0]):
        row, qa, qn = G[i], q_add[i], q_norm[i]
        lb_row, ub_row, i_row = pool_lb[i], pool_ub[i], pool_i[i]
        extra = gamma * max_norm * qn + slack * (1.0 + qn)
        threshold = _upper32((lb_row[0] - qa + extra) / s) if lb_row[0] < np.inf else np.float32(np.inf)
        for j in range(row.shape[0]):
            if col_scaled[j] - row[j] >= threshold:
                continue
            approx = col_add[j] + qa + scale * np.float64(row[j])
            err = gamma * col_norm[j] * qn
            if approx - err < lb_row[0]:
                _push_bounds(approx - err, approx + err, offset + j, lb_row, ub_row, i_row)
                if lb_row[0] < np.inf:
                    threshold = _upper32((lb_row[0] - qa + extra) / s)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _exact_distance(x, p, metric):
    """Squared euclidean distance (``metric == EUCLIDEAN``) or ``-x.p``, in float64; the sum
    may be reassociated (vectorised), which moves it by a few ulps at most."""
    s = 0.0
    if metric == EUCLIDEAN:
        for f in range(x.shape[0]):
            t = np.float64(x[f]) - np.float64(p[f])
            s += t * t
        return s
    for f in range(x.shape[0]):
        s += np.float64(x[f]) * np.float64(p[f])
    return -s


@numba.njit(cache=True, nogil=True)
def _rerank_pool(Q, X, metric, pool_lb, pool_ub, pool_i, top_d, top_i, undecided):
    """Exact float64 distances of each row's pool, the k smallest (ties by row number) into
    ``top_d``/``top_i``. A row whose pool cannot be proved to hold its true k nearest (the
    largest lower bound kept does not exceed the k-th smallest upper bound) is flagged."""
    k = top_d.shape[1]
    size = pool_i.shape[1]
    for i in range(Q.shape[0]):
        if pool_i[i].min() >= 0:                         # full pool: are outsiders provably out?
            ubs = np.sort(pool_ub[i])
            if not pool_lb[i, 0] > ubs[k - 1]:           # the heap's root: the largest lower bound
                undecided[i] = True
                continue
        d = np.empty(size)
        for c in range(size):
            j = pool_i[i, c]
            d[c] = np.inf if j < 0 else _exact_distance(Q[i], X[j], metric)
        td, ti = top_d[i], top_i[i]
        order = np.argsort(pool_i[i])                    # by row number, then stably by distance:
        order = order[np.argsort(d[order], kind="mergesort")]   # ascending (distance, row number)
        for c in range(k):
            if c < size and pool_i[i, order[c]] >= 0:
                td[c] = d[order[c]]
                ti[c] = pool_i[i, order[c]]


def _exact_knn_float64(Q, X, k, metric, X_sqnorm):
    """The float64 GEMM path (rows the float32 screen could not decide)."""
    m, n = Q.shape[0], X.shape[0]
    top_d = np.full((m, k), np.inf)
    top_i = np.full((m, k), -1, dtype=np.int64)
    col_add, scale = (X_sqnorm, -2.0) if metric == EUCLIDEAN else (np.zeros(n), -1.0)
    for b in range(0, n, _BASE_BLOCK):
        Xb = X[b:b + _BASE_BLOCK].astype(np.float64)
        add = np.ascontiguousarray(col_add[b:b + _BASE_BLOCK])
        for a in range(0, m, _QUERY_BLOCK):
            G = Q[a:a + _QUERY_BLOCK].astype(np.float64) @ Xb.T
            _select_block(G, add, scale, b, top_d[a:a + _QUERY_BLOCK], top_i[a:a + _QUERY_BLOCK])
    if metric == EUCLIDEAN:
        _refine_sqeuclidean(Q, X, top_d, top_i)
    return top_d, top_i


def exact_knn(Q: np.ndarray, X: np.ndarray, k: int, metric: int, n_jobs=None,
              X_sqnorm: np.ndarray | None = None, X_norm: np.ndarray | None = None):
    """The ``k`` nearest rows of ``X`` for every row of ``Q``, exactly.

    Squared euclidean and inner-product search screen candidates with a float32 GEMM (BLAS
    SGEMM, the fastest kernel the machine has) and a rigorous bound on its rounding error,
    ``|fl(x.q) - x.q| <= gamma_d |x| |q|`` with ``gamma_d = d u / (1 - d u)``: each query keeps
    the ``2k + 8`` rows of smallest lower bound (a heap per query, behind a float32 prefilter
    with its own rounding margin), and their distances are recomputed exactly in
    float64. When the largest lower bound kept exceeds the k-th smallest upper bound, no row
    left out can be among the k nearest, so the result equals a float64 brute force, ties
    ordered by row number; a query where that does not hold (many near-ties) is answered by
    the float64 GEMM path instead.

    Parameters
    ----------
    Q, X : ndarray, C-contiguous float32, same number of columns
    k : int
        ``1 <= k <= len(X)`` (checked by the caller).
    metric : int
        ``EUCLIDEAN`` (returns squared distances), ``MANHATTAN``, ``CHEBYSHEV`` or
        ``NEG_INNER`` (returns ``-x.q``).
    X_sqnorm : ndarray of shape (len(X),), dtype=float64, optional
        Cached squared norms of ``X``.
    X_norm : ndarray of shape (len(X),), dtype=float64, optional
        Cached norms of ``X`` (for the error bound).

    Returns
    -------
    dist : ndarray of shape (len(Q), k), dtype=float64
        Ascending; ties are ordered by index.
    ind : ndarray of shape (len(Q), k), dtype=int64
    """
    m, n = Q.shape[0], X.shape[0]
    # A few queries cannot feed several threads; waking BLAS and Numba pools for them costs
    # milliseconds (measured: 0.45 ms -> 8.8 ms for one query on 2 threads).
    threads = n_threads(n_jobs) if m >= _MIN_PARALLEL_QUERIES else 1
    if metric in (MANHATTAN, CHEBYSHEV):
        top_d = np.full((m, k), np.inf)
        top_i = np.full((m, k), -1, dtype=np.int64)
        with kernel_threads(threads):
            _knn_scan(Q, X, metric, top_d, top_i)
        return top_d, top_i
    if X_sqnorm is None:
        X_sqnorm = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    if X_norm is None:
        X_norm = np.sqrt(X_sqnorm)
    q_sqnorm = np.einsum("ij,ij->i", Q, Q, dtype=np.float64)
    q_norm = np.sqrt(q_sqnorm)
    d = Q.shape[1]
    u = float(np.finfo(np.float32).eps) / 2
    # x.q in float32 is off by at most gamma_d |x||q|; it enters the squared distance twice.
    gamma = (2.0 if metric == EUCLIDEAN else 1.0) * (d * u / (1 - d * u)) * (1 + 1e-6) + 1e-15
    if metric == EUCLIDEAN:
        col_add, q_add, scale = X_sqnorm, q_sqnorm, -2.0
    else:
        col_add, q_add, scale = np.zeros(n), np.zeros(m), -1.0
    size = min(n, 2 * k + 8)
    s = -scale
    col_scaled = (col_add / s).astype(np.float32)
    # Roundings of the float32 prefilter: col_scaled (relative u), g (within gamma |x||q|,
    # already in E) and the subtraction (relative u of its operands); per unit of (1 + |q|).
    big = float(np.abs(col_add).max() / s) if n else 0.0
    slack = s * 4 * u * (big + float(X_norm.max()) if n else 0.0) + 1e-30
    top_d = np.full((m, k), np.inf)
    top_i = np.full((m, k), -1, dtype=np.int64)
    undecided = np.zeros(m, dtype=np.bool_)

    def screen(a: int) -> None:
        rows = slice(a, a + _QUERY_BLOCK)
        pool_lb = np.full((Q[rows].shape[0], size), np.inf)
        pool_ub = np.full_like(pool_lb, np.inf)
        pool_i = np.full(pool_lb.shape, -1, dtype=np.int64)
        for b in range(0, n, _BASE_BLOCK):
            G = Q[rows] @ X[b:b + _BASE_BLOCK].T                       # float32 SGEMM, one thread
            _pool_block(G, col_add[b:b + _BASE_BLOCK], X_norm[b:b + _BASE_BLOCK], col_scaled[b:b + _BASE_BLOCK],
                        q_add[rows], q_norm[rows], scale, gamma, slack, b, pool_lb, pool_ub, pool_i)
        _rerank_pool(Q[rows], X, metric, pool_lb, pool_ub, pool_i, top_d[rows], top_i[rows], undecided[rows])

    starts = range(0, m, _QUERY_BLOCK)
    with kernel_threads(1):                      # one BLAS thread per query chunk
        if threads == 1 or len(starts) == 1:
            for a in starts:
                screen(a)
        else:
            with ThreadPoolExecutor(min(threads, len(starts))) as pool:
                list(pool.map(screen, starts))
    if undecided.any():
        rows = np.flatnonzero(undecided)
        with kernel_threads(threads, blas=True):
            top_d[rows], top_i[rows] = _exact_knn_float64(np.ascontiguousarray(Q[rows]), X, k, metric, X_sqnorm)
    return top_d, top_i
