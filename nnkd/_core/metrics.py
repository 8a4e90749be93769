"""Metric names shared by every kernel, and the one place inputs are coerced."""

from __future__ import annotations

import numpy as np

# Codes understood by the C core and the Numba kernels (see cext/greedy.h).
EUCLIDEAN, MANHATTAN, CHEBYSHEV = 0, 1, 2

#: metric name -> kernel code; cosine runs as euclidean on L2-normalised rows,
#: which keeps the triangle inequality that net pruning relies on.
METRIC_CODES = {"euclidean": EUCLIDEAN, "manhattan": MANHATTAN, "chebyshev": CHEBYSHEV, "cosine": EUCLIDEAN}
METRICS = tuple(METRIC_CODES)


def metric_code(metric: str) -> int:
    """Return the kernel code of ``metric`` or raise a ``ValueError`` listing the options."""
    if not isinstance(metric, str) or metric not in METRIC_CODES:
        raise ValueError(f"metric={metric!r} is not supported; use one of {sorted(METRIC_CODES)}.")
    return METRIC_CODES[metric]


def as_points(X, metric: str, name: str = "X") -> np.ndarray:
    """C-contiguous float32 copy-if-needed of ``X`` in the space the kernels work in.

    Rejects non-2-D, empty and non-finite input. For ``metric="cosine"`` rows are
    L2-normalised (an all-zero row stays zero, at distance 1 from any unit row).
    """
    metric_code(metric)
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {X.shape}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape}); pass at least one row and one column.")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers; got dtype {X.dtype}.")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinity (after conversion to float32); clean or impute it first.")
    if metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
        X = (X / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)
    return X
