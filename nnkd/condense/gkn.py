"""GKN: margin-regularized condensing by vertex cover of the conflict graph.

For a scale gamma, two training points *conflict* when their labels differ and they
are closer than gamma. Removing a vertex cover of this conflict graph leaves a sample
whose classes are gamma-separated; a net of the remaining points with covering
radius below gamma labels every remaining point correctly (its nearest net point is
closer than gamma, and no point of another class is). The scale is chosen by the
same compression bound as KSU.
"""

from __future__ import annotations

import logging

import numba
import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import maximum_bipartite_matching
from sklearn.neighbors import NearestNeighbors
from tqdm.auto import tqdm

from nnkd._core.metrics import CHEBYSHEV, MANHATTAN
from nnkd._core.nearest import nearest_prototype
from nnkd.condense._result import CondenseResult
from nnkd.condense.bounds import compression_bound
from nnkd.condense.ksu import start_row
from nnkd.condense.nets import run_greedy

logger = logging.getLogger(__name__)

_SKLEARN_METRIC = {0: "euclidean", MANHATTAN: "manhattan", CHEBYSHEV: "chebyshev"}


def opposite_margins(X, y, code, n_jobs=None):
    """Distance from each row to the nearest row of another class (``inf`` if none)."""
    margins = np.full(X.shape[0], np.inf)
    for c in np.unique(y):
        mine = y == c
        if mine.all():
            break
        margins[mine] = nearest_prototype(X[mine], np.ascontiguousarray(X[~mine]), code, n_jobs)[0]
    return margins


class TooManyEdges(Exception):
    """The conflict graph at this scale exceeds the edge budget."""


def class_indexes(X, y, code):
    """One fitted ``NearestNeighbors`` per class: ``{c: (member rows, index)}``."""
    return {c: (np.flatnonzero(y == c), NearestNeighbors(metric=_SKLEARN_METRIC[code]).fit(X[y == c]))
            for c in np.unique(y)}


def conflict_graph(X, y, code, gamma, indexes=None, margins=None, max_edges=None, chunk=1024):
    """Edges ``(i, j)``, ``i < j``, between differently labelled points closer than ``gamma``.

    Each edge is found once, by querying the rows of a class against the index of
    every smaller class, so only opposite-label pairs are ever materialised (data
    with large same-label duplicate clusters would otherwise return billions of
    useless pairs). Only rows with an opposite-class point closer than ``gamma``
    (``margins``) are queried, ``chunk`` at a time; with ``max_edges``,
    :class:`TooManyEdges` is raised as soon as the budget is passed.

    Returns
    -------
    rows, cols : ndarray of int64
    """
    if indexes is None:
        indexes = class_indexes(X, y, code)
    if margins is None:
        margins = opposite_margins(X, y, code)
    rows, cols, total = [], [], 0
    for c, (members, nn) in indexes.items():
        query = np.flatnonzero((y > c) & (margins < gamma))
        for lo in range(0, query.size, chunk):
            src_rows = query[lo:lo + chunk]
            dist, ind = nn.radius_neighbors(X[src_rows], radius=gamma)
            lengths = np.fromiter((len(i) for i in ind), dtype=np.int64, count=len(ind))
            if lengths.sum() == 0:
                continue
            src = np.repeat(src_rows, lengths)
            dst = members[np.concatenate(ind)]
            keep = np.concatenate(dist) < gamma          # radius_neighbors includes d == gamma
            rows.append(np.minimum(src, dst)[keep])
            cols.append(np.maximum(src, dst)[keep])
            total += int(keep.sum())
            if max_edges is not None and total > max_edges:
                raise TooManyEdges(total)
    if not rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)


def min_vertex_cover_bipartite(rows, cols, left):
    """Exact minimum vertex cover of a bipartite graph (König's theorem).

    ``left[v]`` says on which side vertex ``v`` is; every edge joins both sides.
    Returns a boolean mask over all vertices.
    """
    n = left.shape[0]
    u = np.where(left[rows], rows, cols)             # left endpoint of each edge
    v = np.where(left[rows], cols, rows)
    lefts, u_loc = np.unique(u, return_inverse=True)
    rights, v_loc = np.unique(v, return_inverse=True)
    bi = sparse.csr_matrix((np.ones(u.size, dtype=np.int8), (u_loc, v_loc)), shape=(lefts.size, rights.size))
    match_of_left = maximum_bipartite_matching(bi, perm_type="column")   # right index or -1
    match_of_right = np.full(rights.size, -1, dtype=np.int64)
    matched = match_of_left >= 0
    match_of_right[match_of_left[matched]] = np.flatnonzero(matched)
    z_left, z_right = _alternating_reach(bi.indptr, bi.indices, match_of_right, ~matched)
    cover = np.zeros(n, dtype=bool)
    cover[lefts[~z_left]] = True                     # König: (L \ Z) ∪ (R ∩ Z)
    cover[rights[z_right]] = True
    return cover


@numba.njit(cache=True)
def _alternating_reach(indptr, indices, match_of_right, free_left):
    """Vertices reachable from free left vertices by alternating paths."""
    z_left = free_left.copy()
    z_right = np.zeros(match_of_right.shape[0], dtype=np.bool_)
    stack = list(np.flatnonzero(free_left))
    while len(stack) > 0:
        a = stack.pop()
        for e in range(indptr[a], indptr[a + 1]):
            b = indices[e]
            if not z_right[b]:
                z_right[b] = True
                nxt = match_of_right[b]
                if nxt >= 0 and not z_left[nxt]:
                    z_left[nxt] = True
                    stack.append(nxt)
    return z_left, z_right


@numba.njit(cache=True)
def _greedy_cover(n, indptr, indices):
    """Repeatedly remove a vertex of largest remaining degree (ties: smallest index)."""
    degree = (indptr[1:] - indptr[:-1]).astype(np.int64)
    cover = np.zeros(n, dtype=np.bool_)
    while True:
        v = np.argmax(degree)
        if degree[v] == 0:
            return cover
        cover[v] = True
        degree[v] = 0
        for e in range(indptr[v], indptr[v + 1]):
            w = indices[e]
            if not cover[w]:
                degree[w] -= 1


def vertex_cover(rows, cols, y, n):
    """Minimum vertex cover for two classes (exact), greedy max-degree cover for more.

    The greedy cover is within a factor ``H(max degree) <= 1 + ln(max degree)`` of the
    minimum (Johnson 1974); minimum vertex cover on general graphs is NP-hard.
    """
    if rows.size == 0:
        return np.zeros(n, dtype=bool)
    classes = np.unique(y[np.concatenate([rows, cols])])
    if classes.size == 2:
        return min_vertex_cover_bipartite(rows, cols, y == classes[0])
    adj = sparse.csr_matrix((np.ones(2 * rows.size, dtype=np.int8),
                             (np.concatenate([rows, cols]), np.concatenate([cols, rows]))), shape=(n, n))
    return _greedy_cover(n, adj.indptr.astype(np.int64), adj.indices.astype(np.int64))


def _size_cap(n: int, best_bound: float, delta: float, limit: int) -> int:
    """Largest net size that could still beat ``best_bound``: ``Q(n, 0, 2k, delta)`` grows
    with ``k`` and with the error, so a net of more prototypes cannot have a smaller bound."""
    if not np.isfinite(best_bound):
        return limit
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if compression_bound(n, 0.0, 2 * mid, delta) <= best_bound:
            lo = mid
        else:
            hi = mid - 1
    return lo


def gkn_condense(X, y, code, *, delta=0.05, max_prototypes=None, target_size=None, n_scales=24,
                 max_edges_per_point=64, n_jobs=None, progress=False) -> CondenseResult:
    """Condense with Gottlieb–Kontorovich–Nisnevitch margin regularization.

    Candidate scales are ``n_scales`` geometrically spaced values between the radius of
    a net holding half the sample and the largest greedy radius; scales whose conflict graph
    would exceed ``max_edges_per_point * n_samples`` edges are dropped (larger scales only
    add edges; logged). For each scale: vertex cover, net of the kept points with covering radius < gamma,
    training error ``alpha`` of the majority-vote net over *all* points, and
    ``Q(n, alpha, 2m, delta)``. The scale with the smallest bound wins (with
    ``target_size``: the net whose size is closest to it). The covers are found from the
    finest scale up; the nets are then built from the coarsest down, and a net stops growing
    once its size alone rules out beating the best bound so far, so the expensive fine-scale
    nets are cut short without changing the choice (such a scale shows ``errors = -1`` and an
    infinite bound in ``selection_curve_``). ``progress`` shows progress bars (stderr).

    References
    ----------
    .. [1] L.-A. Gottlieb, A. Kontorovich, P. Nisnevitch, "Near-optimal sample compression
       for nearest neighbors", NeurIPS 2014; IEEE Trans. Inf. Theory 64(6), 2018.
    .. [2] D. S. Johnson, "Approximation algorithms for combinatorial problems",
       J. Comput. Syst. Sci. 9, 1974 (greedy cover, more than two classes).
    """
    n = X.shape[0]
    n_classes = int(y.max()) + 1
    cap = n if max_prototypes is None else max_prototypes
    start = start_row(X)
    coarse = run_greedy(X, code, start=start, max_centres=max(2, min(n, (n + 1) // 2)), n_jobs=n_jobs)
    hi = float(coarse.radius[1]) if coarse.radius.size > 1 else 0.0
    lo = float(coarse.radius[-1])
    if not hi > 0:                                   # all points identical
        scales = np.array([np.inf])
    else:
        lo = lo if lo > 0 else hi * 1e-3
        scales = np.unique(np.geomspace(lo, hi, n_scales))
    # A net with 2m >= n has an infinite bound: without a target size, stop building it
    # there (at small scales such nets are the expensive ones).
    limit = cap if target_size is not None else min(cap, n // 2 + 1)
    indexes = class_indexes(X, y, code)
    margins = opposite_margins(X, y, code, n_jobs)
    # Pass 1, finest scale first: the vertex cover at each scale, until the conflict graph
    # passes the edge budget (larger scales only add edges).
    covers = []
    for gamma in tqdm(scales, desc="GKN covers", disable=not progress, leave=False):
        if np.isfinite(gamma):
            try:
                rows, cols = conflict_graph(X, y, code, gamma, indexes, margins,
                                            max_edges=max_edges_per_point * n)
            except TooManyEdges as exc:
                logger.info("GKN: stopping the scale scan at gamma=%.4g (over %s conflict edges)",
                            gamma, exc.args[0])
                break
        else:
            rows = cols = np.empty(0, dtype=np.int64)
        covers.append((gamma, vertex_cover(rows, cols, y, n)))
    # Pass 2, coarsest scale first: the nets. A net stops growing once its size alone rules
    # out beating the best bound so far (the bound grows with the size and with the error),
    # so the expensive fine-scale nets are cut short and the choice is unchanged.
    best, candidates = None, []
    for gamma, cover in tqdm(covers[::-1], desc="GKN nets", disable=not progress, leave=False):
        kept = ~cover
        prune = target_size is None and best is not None
        size = _size_cap(n, best[0][0], delta, limit) if prune else limit
        # Stop strictly below gamma: kept points of other classes are >= gamma away. One
        # centre past the cap proves the full net too large to win, so it is not finished.
        stop = float(np.nextafter(gamma, 0.0)) if np.isfinite(gamma) else 0.0
        net = run_greedy(X, code, start=start_row(X, kept), max_centres=min(size + prune, int(kept.sum())),
                         stop_radius=stop, labels=y, n_classes=n_classes,
                         active=kept.view(np.uint8), n_jobs=n_jobs)
        m = len(net.order)
        if prune and m > size:
            candidates.append({"gamma": float(gamma), "cover": int(cover.sum()), "m": m, "errors": -1,
                               "bound": float("inf")})
            continue
        errors = int(net.train_errors[-1] + net.valid_errors[-1])
        bound = compression_bound(n, errors / n, 2 * m, delta)
        candidates.append({"gamma": float(gamma), "cover": int(cover.sum()), "m": m,
                           "errors": errors, "bound": float(bound)})
        key = (abs(m - target_size), bound) if target_size is not None else (bound, m)
        if best is None or key < best[0]:
            best = (key, gamma, net, kept)
    if best is None:
        raise ValueError(
            f"GKN: the conflict graph has more than {max_edges_per_point} edges per point even at "
            f"the smallest candidate scale gamma={scales[0]:.4g}; the classes overlap too densely "
            "for vertex-cover condensing. Use method='ksu' instead.")
    _, gamma, net, kept = best
    curve = {name: np.array([c[name] for c in candidates][::-1]) for name in candidates[0]}
    return CondenseResult(net.order, net.owner, float(gamma) if np.isfinite(gamma) else 0.0,
                          voters=kept, curve=curve, selection="bound" if target_size is None else "target_size")
