"""Greedy permutation (farthest-first traversal): nested nets at every scale.

Each prefix ``order[:m]`` of a greedy permutation is an ``r``-net of the data with
``r = radius[m]`` (the distance of the next point to be added): every point lies
within ``r`` of the prefix (covering) and the prefix points are pairwise at least
``radius[m - 1] >= r`` apart (packing). Gottlieb, Kontorovich and Nisnevitch use
such nets for sample compression; Kontorovich, Sabato and Weiss choose the scale
with a compression bound (see :mod:`nnkd.condense.ksu`).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from nnkd._core.cext import greedy_permutation_c
from nnkd._core.metrics import as_points, metric_code
from nnkd._core.threads import n_threads

#: Most threads the C core's traversal uses (``NNKD_MAX_THREADS``).
MAX_THREADS = 64


@dataclass(frozen=True)
class GreedyPermutation:
    """Result of :func:`greedy_permutation`.

    Attributes
    ----------
    order : ndarray of shape (m,), dtype=int64
        Row indices of the centres, in the order they were added.
    radius : ndarray of shape (m,), dtype=float64
        ``radius[k]`` is the distance from ``order[k]`` to ``order[:k]`` (``radius[0]`` is
        ``inf``); non-increasing.
    owner : ndarray of shape (n_samples,), dtype=int64
        Position in ``order`` of each row's nearest centre (ties go to the earliest centre).
    dist : ndarray of shape (n_samples,), dtype=float64
        Distance of each row to that centre.
    train_errors, valid_errors : ndarray of shape (m,), dtype=int64, or None
        With labels: after ``k + 1`` centres, how many active (resp. passive) rows carry a
        label other than the majority label of their cell (votes come from active rows;
        ties go to the smallest class code).
    """

    order: np.ndarray
    radius: np.ndarray
    owner: np.ndarray
    dist: np.ndarray
    train_errors: np.ndarray | None = None
    valid_errors: np.ndarray | None = None

    @property
    def covering_radius(self) -> float:
        """Largest distance from any row to the full prefix ``order``."""
        return float(self.dist.max())


def resolve_count(value, n: int, name: str) -> int:
    """Turn an int count or a float fraction of ``n`` into a count in ``[1, n]``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or a float fraction, not bool.")
    if isinstance(value, Integral):
        if value < 1:
            raise ValueError(f"{name}={value} must be >= 1.")
        return int(min(value, n))
    if isinstance(value, Real):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name}={value} as a fraction must lie in (0, 1].")
        # Round down: a fractional budget is never exceeded.
        return max(1, int(value * n + 1e-9))
    raise TypeError(f"{name} must be an int or a float fraction; got {type(value).__name__}.")


def run_greedy(X, code, *, start=0, max_centres=None, stop_radius=-1.0, labels=None,
               n_classes=0, active=None, n_jobs=None) -> GreedyPermutation:
    """Greedy permutation on already-coerced inputs (float32 C-contiguous ``X``, int64
    ``labels`` in ``[0, n_classes)``, uint8 ``active``). Internal fast path; ``n_jobs``
    threads scan each centre's cells (the result does not depend on it)."""
    n = X.shape[0]
    n_active = n if active is None else int(np.count_nonzero(active))
    max_centres = n_active if max_centres is None else min(int(max_centres), n_active)
    order, radius, owner, dist, tr, va, m = greedy_permutation_c(
        X, code, start, max_centres, stop_radius, labels, n_classes, active, min(MAX_THREADS, n_threads(n_jobs)))
    return GreedyPermutation(order[:m], radius[:m], owner, dist,
                             None if tr is None else tr[:m], None if va is None else va[:m])


def greedy_permutation(X, *, metric: str = "euclidean", start: int = 0, max_prototypes=None,
                       stop_radius: float | None = None, labels=None, active=None,
                       n_jobs=None) -> GreedyPermutation:
    """Order points farthest-first, giving a net at every scale.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Points; converted to C-contiguous float32 (rows L2-normalised for ``"cosine"``).
    metric : {"euclidean", "manhattan", "chebyshev", "cosine"}, default="euclidean"
    start : int, default=0
        Row of the first centre (must be active).
    max_prototypes : int or float, default=None
        Stop after this many centres (a float is a fraction of the active rows).
        ``None`` orders every active row.
    stop_radius : float, default=None
        Stop before adding a centre whose distance to the net is ``<= stop_radius``;
        the result is then a net whose covering radius is at most ``stop_radius``.
    labels : array-like of shape (n_samples,), dtype=int, default=None
        Class codes in ``[0, n_classes)``; with them the error of the majority-vote net is
        tracked for every prefix in the same pass.
    active : array-like of shape (n_samples,), dtype=bool, default=None
        Rows that may become centres and vote; the others (held-out rows) are only
        assigned to cells and scored. ``None`` means all rows are active.
    n_jobs : int, default=None
        Threads scanning each new centre's cells (``None``: 1, ``-1``: all cores). The
        output is identical for every value.

    Returns
    -------
    GreedyPermutation

    Notes
    -----
    Every row keeps its nearest centre; adding centre ``p`` revisits the cell of centre
    ``c`` only if ``d(c, p) < 2 * radius(c)`` (triangle inequality), so late, small cells
    are rarely touched. Cosine is run as euclidean distance on normalised rows
    (``||u - v|| = sqrt(2 - 2 cos)``): the ordering is the cosine ordering and the
    triangle inequality still holds.

    References
    ----------
    .. [1] T. F. Gonzalez, "Clustering to minimize the maximum intercluster distance",
       Theoretical Computer Science 38, 1985.
    .. [2] L.-A. Gottlieb, A. Kontorovich, P. Nisnevitch, "Near-optimal sample compression
       for nearest neighbors", NeurIPS 2014 / IEEE Trans. Inf. Theory 64(6), 2018.
    """
    code = metric_code(metric)
    X = as_points(X, metric)
    n = X.shape[0]
    if not isinstance(start, Integral) or not 0 <= start < n:
        raise ValueError(f"start={start!r} must be a row index in [0, {n}).")
    act = None
    if active is not None:
        act = np.asarray(active)
        if act.shape != (n,):
            raise ValueError(f"active must have shape ({n},); got {act.shape}.")
        act = np.ascontiguousarray(act.astype(bool), dtype=np.uint8)
        if not act[start]:
            raise ValueError(f"start={start} must be an active row.")
    n_active = n if act is None else int(act.sum())
    cap = n_active if max_prototypes is None else resolve_count(max_prototypes, n_active, "max_prototypes")
    lab, n_classes = None, 0
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer) or (lab < 0).any():
            raise ValueError(f"labels must be non-negative integer codes of shape ({n},).")
        # Dense codes 0..C-1 in the same order (the C core sizes its vote tables by C, and
        # breaks majority ties by the smallest code, which np.unique's order preserves).
        uniques, codes = np.unique(lab, return_inverse=True)
        lab, n_classes = np.ascontiguousarray(codes.reshape(-1), dtype=np.int64), len(uniques)
    if stop_radius is None:
        stop_radius = -1.0
    elif not np.isfinite(stop_radius):
        raise ValueError(f"stop_radius={stop_radius} must be finite.")
    return run_greedy(X, code, start=int(start), max_centres=cap, stop_radius=float(stop_radius),
                      labels=lab, n_classes=n_classes, active=act, n_jobs=n_jobs)
