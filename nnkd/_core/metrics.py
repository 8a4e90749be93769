"""Metric names shared by every kernel, and the one place inputs are coerced."""

from __future__ import annotations

import numpy as np

# Codes understood by the C core and the Numba kernels (see cext/greedy.h).
EUCLIDEAN, MANHATTAN, CHEBYSHEV = 0, 1, 2

#: The one vocabulary of metric names (scikit-learn's): name -> code of the C core and the
#: Numba kernels, or ``None`` where only search understands the name. Condensing needs a
#: true metric (nets and pruning rely on the triangle inequality): cosine runs as euclidean
#: on L2-normalised rows, which is one; squared L2 and the inner product are not.
METRIC_TABLE: dict[str, int | None] = {"euclidean": EUCLIDEAN, "sqeuclidean": None, "manhattan": MANHATTAN,
                                       "chebyshev": CHEBYSHEV, "cosine": EUCLIDEAN, "inner_product": None}
#: Every name: what an Index (and the estimators that only search) accept.
SEARCH_METRICS = tuple(METRIC_TABLE)
#: metric name -> kernel code, for the metrics condensing accepts.
METRIC_CODES = {name: code for name, code in METRIC_TABLE.items() if code is not None}
METRICS = tuple(METRIC_CODES)


def metric_code(metric: str) -> int:
    """Return the kernel code of ``metric`` or raise a ``ValueError`` listing the options."""
    if not isinstance(metric, str) or metric not in METRIC_CODES:
        raise ValueError(f"metric={metric!r} is not supported; use one of {sorted(METRIC_CODES)}.")
    return METRIC_CODES[metric]


def check_points(X, name: str = "X") -> np.ndarray:
    """C-contiguous float32 copy-if-needed of ``X``.

    Rejects non-2-D, empty, non-numeric and non-finite input with a message naming ``name``.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {X.shape}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape}); pass at least one row and one column.")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers; got dtype {X.dtype}.")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not X.flags.aligned:
        # Buffers from a byte stream (pickle protocol 5, dask's transfers, a file mapped at an
        # odd offset) can be misaligned; the C core and the kernels need aligned rows.
        X = X.copy()
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinity (after conversion to float32); clean or impute it first.")
    return X


def normalize_rows(X: np.ndarray, name: str = "X") -> np.ndarray:
    """Rows of float32 ``X`` scaled to unit L2 norm (a new array).

    Cosine distance is undefined for an all-zero row, so one raises ``ValueError``
    rather than being silently given some distance.
    """
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(f"{name} has {zero.size} all-zero row(s) (first: row {zero[0]}); cosine distance is "
                         "undefined for them. Drop them or use another metric.")
    return (X / norms[:, None]).astype(np.float32)


def as_points(X, metric: str, name: str = "X") -> np.ndarray:
    """``X`` checked by :func:`check_points` and mapped to the space the kernels work in.

    For ``metric="cosine"`` rows are L2-normalised (all-zero rows are rejected).
    """
    metric_code(metric)
    X = check_points(X, name)
    return normalize_rows(X, name) if metric == "cosine" else X
