"""Hart's condensed nearest neighbour (CNN), all classes condensed together."""

from __future__ import annotations

import numba
import numpy as np
from sklearn.utils import check_random_state

from nnkd._core.nearest import scan_nearest
from nnkd._core.threads import kernel_threads
from nnkd.condense._result import CondenseResult

# Rows per parallel catch-up. Large blocks mean few thread barriers (each costs a
# scheduler slice when a core is busy); the price is more sequential work inside a
# block, small because each row there only meets the block's own new prototypes.
_BLOCK = 4096


@numba.njit(cache=True, nogil=True)
def _catch_up(X, i, S, lo, hi, metric, best_d, best_pos):
    """Compare row i with prototypes ``S[lo:hi]`` (a contiguous copy: no gather)."""
    best_d[i], best_pos[i] = scan_nearest(X[i], S, lo, hi, metric, best_d[i], best_pos[i])


@numba.njit(parallel=True, cache=True, nogil=True)
def _hart(X, y, visit, metric, max_store, store, best_d, best_pos, n_seed):
    """Hart (1968) passes over ``visit`` until one pass adds nothing (or the store is full).

    The store starts with ``visit[:n_seed]`` (at least the first visited point). A point is
    checked against every prototype once: ``checked[i]`` remembers how much of the store it
    has seen. Each block first catches its points up with the current store in parallel,
    then walks them in order, adding the misclassified ones.
    """
    n = visit.shape[0]
    S = np.empty((max_store, X.shape[1]), dtype=X.dtype)
    checked = np.zeros(X.shape[0], dtype=np.int64)
    in_store = np.zeros(X.shape[0], dtype=np.uint8)
    size = max(1, n_seed)
    for t in range(size):
        i = visit[t]
        store[t] = i
        S[t] = X[i]
        in_store[i] = 1
        best_d[i] = 0.0
        best_pos[i] = t
        checked[i] = size
    changed = True
    while changed and size < max_store:
        changed = False
        for b0 in range(0, n, _BLOCK):
            b1 = min(b0 + _BLOCK, n)
            now = size
            for t in numba.prange(b0, b1):
                i = visit[t]
                if in_store[i] == 0:
                    _catch_up(X, i, S, checked[i], now, metric, best_d, best_pos)
                    checked[i] = now
            for t in range(b0, b1):
                i = visit[t]
                if in_store[i] != 0 or size >= max_store:
                    continue
                _catch_up(X, i, S, checked[i], size, metric, best_d, best_pos)
                checked[i] = size
                if y[store[best_pos[i]]] != y[i]:
                    store[size] = i
                    S[size] = X[i]
                    in_store[i] = 1
                    best_d[i] = 0.0
                    best_pos[i] = size
                    size += 1
                    changed = True
    # Final catch-up: after a cap, earlier points have not seen the last prototypes.
    for t in numba.prange(n):
        i = visit[t]
        if in_store[i] == 0:
            _catch_up(X, i, S, checked[i], size, metric, best_d, best_pos)
    return size


def hart_condense(X, y, code, *, max_prototypes=None, random_state=None, n_jobs=None,
                  initial: int = 0) -> CondenseResult:
    """Hart's CNN: keep adding misclassified points until 1-NN over the store labels
    every training point correctly (consistency).

    Points are visited in a random order (``random_state``); the store starts with the
    first visited point, or with the first ``initial`` rows of ``X`` (a store being grown:
    they stay, and only rows after them are visited, in random order). Exact duplicates
    with conflicting labels cannot both be classified correctly; such a pair is kept once
    each and the pass still terminates. ``max_prototypes`` stops early (the store is then
    not consistent).

    References
    ----------
    .. [1] P. E. Hart, "The condensed nearest neighbor rule", IEEE Trans. Inf. Theory
       14(3):515-516, 1968.
    """
    n = X.shape[0]
    if not 0 <= initial <= n:
        raise ValueError(f"initial={initial} must lie in [0, {n}].")
    rest = check_random_state(random_state).permutation(n - initial).astype(np.int64) + initial
    visit = np.concatenate([np.arange(initial, dtype=np.int64), rest])
    cap = n if max_prototypes is None else max(max_prototypes, initial)
    store = np.empty(cap, dtype=np.int64)
    best_d = np.full(n, np.inf)
    best_pos = np.zeros(n, dtype=np.int64)
    with kernel_threads(n_jobs):
        size = _hart(X, y, visit, code, cap, store, best_d, best_pos, initial)
    scale = float(np.sqrt(best_d.max()) if code == 0 else best_d.max())
    return CondenseResult(store[:size].copy(), best_pos, scale)
