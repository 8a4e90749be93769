"""What every index-backed estimator shares: its search parameters and building the Index."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from sklearn.utils.validation import check_is_fitted

from nnkd._sklearn_compat import Interval, StrOptions, validate_data
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


class StudentMixin:
    """``explain`` for estimators that export a student: the student's explanation of the
    validated rows (one return type for every estimator, see :meth:`nnkd.student.Student.explain`)."""

    def explain(self, X, k: int = 3) -> list[dict]:
        """Per row: the prediction and the ``k`` nearest prototypes behind it.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        k : int, default=3
            Prototypes per row (at most the number of prototypes).

        Returns
        -------
        explanations : list of dict
            One dict per row (see :meth:`nnkd.student.PrototypeStudent.explain`).
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        return self.to_student().explain(X, k)
