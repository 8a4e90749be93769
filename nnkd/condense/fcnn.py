"""Angiulli's fast condensed nearest neighbour rule (FCNN1)."""

from __future__ import annotations

import numba
import numpy as np

from nnkd._core.nearest import scan_nearest
from nnkd._core.threads import kernel_threads
from nnkd.condense._result import CondenseResult


@numba.njit(parallel=True, cache=True, nogil=True)
def _update_nearest(X, S, lo, hi, metric, best_d, best_pos):
    """Fold prototypes ``S[lo:hi]`` (contiguous copies) into every row's nearest."""
    for i in numba.prange(X.shape[0]):
        best_d[i], best_pos[i] = scan_nearest(X[i], S, lo, hi, metric, best_d[i], best_pos[i])


@numba.njit(cache=True, nogil=True)
def _representatives(y, store, size, in_store, best_d, best_pos, rep, rep_d):
    """rep[p]: the misclassified point of cell p nearest to prototype p (-1: none).

    Prototypes are never candidates: a duplicate of an earlier prototype with another
    label stays misclassified forever and would otherwise be re-added every round."""
    rep[:size] = -1
    rep_d[:size] = np.inf
    for i in range(y.shape[0]):
        p = best_pos[i]
        if in_store[i] == 0 and y[i] != y[store[p]] and best_d[i] < rep_d[p]:
            rep_d[p] = best_d[i]
            rep[p] = i


def _seeds(X, y):
    """For each class, the member nearest (euclidean) to the class centroid."""
    seeds = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        sub = X[idx].astype(np.float64)
        seeds.append(idx[np.argmin(((sub - sub.mean(axis=0)) ** 2).sum(axis=1))])
    return np.asarray(seeds, dtype=np.int64)


def fcnn_condense(X, y, code, *, max_prototypes=None, n_jobs=None) -> CondenseResult:
    """FCNN1: start from the points nearest to the class centroids; in each round add,
    for every prototype, the misclassified point of its Voronoi cell nearest to it;
    stop when no cell holds a misclassified point (the store is then consistent).

    Deterministic (no random order). ``max_prototypes`` stops early.

    References
    ----------
    .. [1] F. Angiulli, "Fast nearest neighbor condensation for large data sets
       classification", IEEE Trans. Knowl. Data Eng. 19(11):1450-1464, 2007.
    """
    n = X.shape[0]
    cap = n if max_prototypes is None else max_prototypes
    store = np.empty(n, dtype=np.int64)
    S = np.empty_like(X)
    best_d = np.full(n, np.inf)
    best_pos = np.zeros(n, dtype=np.int64)
    rep = np.empty(n, dtype=np.int64)
    rep_d = np.empty(n, dtype=np.float64)
    in_store = np.zeros(n, dtype=np.uint8)
    new = _seeds(X, y)[:cap]
    size = 0
    with kernel_threads(n_jobs):
        while new.size:
            store[size:size + new.size] = new
            S[size:size + new.size] = X[new]
            in_store[new] = 1
            _update_nearest(X, S, size, size + new.size, code, best_d, best_pos)
            size += new.size
            if size >= cap:
                break
            _representatives(y, store, size, in_store, best_d, best_pos, rep, rep_d)
            new = rep[:size][rep[:size] >= 0][: cap - size]
    scale = float(np.sqrt(best_d.max()) if code == 0 else best_d.max())
    return CondenseResult(store[:size].copy(), best_pos, scale)
