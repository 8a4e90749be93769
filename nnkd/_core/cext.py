"""Thin wrapper around the C extension ``nnkd._cext``: allocation and argument checks."""

from __future__ import annotations

import numpy as np

try:
    from nnkd import _cext
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    _cext = None
    IMPORT_ERROR: ImportError | None = exc
else:
    IMPORT_ERROR = None

CEXT_AVAILABLE = _cext is not None


def require_cext():
    """Return the compiled module or raise an ``ImportError`` that says how to build it."""
    if _cext is None:
        raise ImportError(
            "nnkd's C extension (nnkd._cext) is not built; reinstall with `pip install .` "
            f"from the source tree (a C99 compiler is needed). Original error: {IMPORT_ERROR}"
        )
    return _cext


def greedy_permutation_c(X, code, start, max_centres, stop_radius, labels, n_classes, active, n_threads=1,
                         min_parallel=None):
    """Run the C farthest-first traversal. Inputs must already be validated and coerced
    (see :func:`nnkd.condense.nets.greedy_permutation`); returns the raw output arrays.
    ``min_parallel``: fewest rows a step scans to be split among ``n_threads`` (default:
    the core's ``NNKD_PAR_MIN``; tests pass 1)."""
    cext = require_cext()
    n = X.shape[0]
    order = np.empty(max_centres, dtype=np.int64)
    radius = np.empty(max_centres, dtype=np.float64)
    owner = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64)
    train_err = np.zeros(max_centres, dtype=np.int64) if labels is not None else None
    valid_err = np.zeros(max_centres, dtype=np.int64) if labels is not None else None
    m = cext.greedy_permutation(X, int(code), int(start), int(max_centres), float(stop_radius),
                                labels, int(n_classes), active, order, radius, owner, dist,
                                train_err, valid_err, int(n_threads),
                                *(() if min_parallel is None else (int(min_parallel),)))
    return order, radius, owner, dist, train_err, valid_err, m


def pairs_to_arrays(rows: list, k: int):
    """``[(int32 ids, float32 dists), ...]`` (NMSLIB's batch result) -> ``(dist, ind)`` arrays
    of shape ``(len(rows), k)``, float32 and int64; short rows are padded with ``inf``/``-1``."""
    ind = np.empty((len(rows), k), dtype=np.int64)
    dist = np.empty((len(rows), k), dtype=np.float32)
    require_cext().pairs_to_arrays(rows, ind, dist)
    return dist, ind
