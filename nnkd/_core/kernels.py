"""Kernel weights over neighbour distances and weighted vote aggregation.

Distances are first scaled to ``u`` per query row, then mapped to weights by a kernel
profile. See :func:`scale_distances` and :data:`KERNELS`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Shift applied to row-scaled distances (KernelKnn's ``eps``): the nearest neighbour sits
#: at ``|u| = 1e-6`` and the farthest at ``1 - 1e-6``, so compact kernels never give a
#: whole row zero weight and ``"inverse"`` stays finite.
ROW_EPS = 1.0e-6


def _compact(profile):
    def kernel(u):
        return np.where(u <= 1.0, profile(np.minimum(u, 1.0)), 0.0)
    kernel.__doc__ = profile.__doc__
    return kernel


#: name -> profile ``K(u)`` for ``u = |scaled distance| >= 0`` (textbook forms; compact
#: kernels are zero for ``u > 1``).
KERNELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "uniform": _compact(lambda u: np.full_like(u, 0.5)),
    "triangular": _compact(lambda u: 1.0 - u),
    "epanechnikov": _compact(lambda u: 0.75 * (1.0 - u ** 2)),
    "biweight": _compact(lambda u: 15.0 / 16.0 * (1.0 - u ** 2) ** 2),
    "triweight": _compact(lambda u: 35.0 / 32.0 * (1.0 - u ** 2) ** 3),
    "tricube": _compact(lambda u: 70.0 / 81.0 * (1.0 - u ** 3) ** 3),
    "cosine": _compact(lambda u: np.pi / 4.0 * np.cos(np.pi / 2.0 * u)),
    "gaussian": lambda u: np.exp(-0.5 * u ** 2) / np.sqrt(2.0 * np.pi),
    "logistic": lambda u: 1.0 / (np.exp(u) + 2.0 + np.exp(-u)),
    "silverman": lambda u: 0.5 * np.exp(-u / np.sqrt(2.0)) * np.sin(u / np.sqrt(2.0) + np.pi / 4.0),
    "inverse": lambda u: 1.0 / np.maximum(u, ROW_EPS),
    "exponential": lambda u: np.exp(-u),
}


def scale_distances(dist: np.ndarray, bandwidth: float | None) -> np.ndarray:
    """Distances ``(n, k)`` -> non-negative kernel arguments ``u`` (float64).

    With ``bandwidth=None`` each row is min-max scaled to ``[0, 1]`` and shifted by
    ``ROW_EPS``, as the R package KernelKnn does: ``u = |(d - d_min) / (d_max - d_min) - eps|``
    (a row of equal distances gives ``u = eps`` everywhere). With a bandwidth ``h``,
    ``u = d / h``.
    """
    d = np.asarray(dist, dtype=np.float64)
    if bandwidth is not None:
        return d / bandwidth
    lo = d.min(axis=1, keepdims=True)
    span = d.max(axis=1, keepdims=True) - lo
    u = np.divide(d - lo, span, out=np.zeros_like(d), where=span > 0)
    return np.abs(u - ROW_EPS)


def kernel_weights(dist: np.ndarray, kernel: str | Callable, bandwidth: float | None = None) -> np.ndarray:
    """Kernel weights ``(n, k)`` for neighbour distances ``(n, k)``.

    Raises ``ValueError`` when a callable returns a bad shape or negative/non-finite
    values, or when some row gets zero total weight (a compact kernel with a bandwidth
    smaller than every neighbour distance).
    """
    u = scale_distances(dist, bandwidth)
    profile = KERNELS[kernel] if isinstance(kernel, str) else kernel
    w = np.asarray(profile(u), dtype=np.float64)
    if w.shape != u.shape:
        raise ValueError(f"kernel returned shape {w.shape} for distances of shape {u.shape}; "
                         "it must map an array of scaled distances to weights of the same shape.")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("kernel returned negative, NaN or infinite weights; weights must be finite and >= 0.")
    empty = np.flatnonzero(w.sum(axis=1) <= 0)
    if empty.size:
        raise ValueError(f"{empty.size} query row(s) got zero total kernel weight (first: row {empty[0]}); "
                         "raise bandwidth, use bandwidth=None (per-row scaling) or a kernel without "
                         "compact support such as 'gaussian'.")
    return w


def weighted_votes(weights: np.ndarray, ind: np.ndarray, y_codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Sum of kernel weights per class: ``votes[i, c] = sum_j w[i, j] [y[ind[i, j]] == c]``."""
    n = weights.shape[0]
    flat = (np.arange(n)[:, None] * n_classes + y_codes[ind]).ravel()
    return np.bincount(flat, weights=weights.ravel(), minlength=n * n_classes).reshape(n, n_classes)


def weighted_mean(weights: np.ndarray, ind: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Kernel-weighted mean of the neighbours' values: ``sum_j w_ij v[ind_ij] / sum_j w_ij``.

    ``values`` of shape ``(n_rows,)`` gives ``(n_queries,)``; ``(n_rows, n_outputs)`` gives
    ``(n_queries, n_outputs)``; float64.
    """
    w = weights / weights.sum(axis=1, keepdims=True)
    if values.ndim == 1:
        return np.einsum("ij,ij->i", w, values[ind].astype(np.float64, copy=False))
    return np.einsum("ij,ijo->io", w, values[ind].astype(np.float64, copy=False))
