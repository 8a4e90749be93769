"""What every index-backed estimator shares: its search parameters and building the Index."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from nnkd._sklearn_compat import Interval, StrOptions
from nnkd.index import INDEX_METRICS, Index, make_index

#: ``_parameter_constraints`` entries shared by the index-backed estimators.
INDEX_CONSTRAINTS: dict = {
    "metric": [StrOptions(set(INDEX_METRICS))],
    "index": [str],
    "index_params": [dict, None],
    "n_jobs": [Integral, None],
}
N_NEIGHBORS_CONSTRAINT = [Interval(Integral, 1, None, closed="left")]


def build_index(estimator, X: np.ndarray, metric: str | None = None) -> Index:
    """Fit ``make_index(estimator.index, metric, n_jobs=..., **estimator.index_params)`` on ``X``."""
    index = make_index(estimator.index, metric or estimator.metric, n_jobs=estimator.n_jobs,
                       **(estimator.index_params or {}))
    return index.fit(X)


def check_n_neighbors(k: int, n_samples: int, extra: int = 0, name: str = "n_neighbors") -> None:
    """Raise if ``k + extra`` neighbours cannot be found among ``n_samples`` fitted rows."""
    if k + extra > n_samples:
        more = f" + {extra}" if extra else ""
        raise ValueError(f"Expected {name}{more} <= n_samples_fit, but {name}{more} = {k + extra}, "
                         f"n_samples_fit = {n_samples}, n_samples={n_samples}; lower {name}.")
