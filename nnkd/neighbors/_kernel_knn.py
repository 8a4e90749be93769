"""Kernel-weighted k-NN classification and regression over any nnkd Index."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from nnkd._core.kernels import KERNELS, kernel_weights, weighted_mean, weighted_votes
from nnkd._sklearn_compat import Interval, StrOptions, _fit_context, validate_data
from nnkd.neighbors._base import (
    INDEX_CONSTRAINTS,
    N_NEIGHBORS_CONSTRAINT,
    StudentMixin,
    build_index,
    check_n_neighbors,
)
from nnkd.student import PrototypeRegressor, PrototypeStudent

_PARAMS_DOC = """
    Parameters
    ----------
    n_neighbors : int, default=5
        Neighbours per query.
    kernel : str or callable, default="uniform"
        Weight profile applied to scaled distances ``u >= 0``: ``"uniform"``,
        ``"triangular"``, ``"epanechnikov"``, ``"biweight"``, ``"triweight"``,
        ``"tricube"``, ``"cosine"`` (zero for ``u > 1``), ``"gaussian"``, ``"logistic"``,
        ``"silverman"``, ``"inverse"``, ``"exponential"``, or a callable mapping an
        ``(n_queries, n_neighbors)`` array of ``u`` to non-negative weights.
    bandwidth : float, default=None
        ``None`` scales each query's neighbour distances to ``[0, 1]`` as the R package
        KernelKnn does, ``u = |(d - d_min) / (d_max - d_min) - 1e-6|``; a float ``h``
        gives ``u = d / h`` (compact kernels then ignore neighbours beyond ``h``; a query
        with none within ``h`` raises ``ValueError``).
    metric : {"euclidean", "sqeuclidean", "manhattan", "chebyshev", "cosine", "inner_product"}, default="euclidean"
    index : str, default="exact"
        Search backend spec for :func:`nnkd.index.make_index`: ``"exact"``,
        ``"faiss:HNSW32"``, ``"faiss:IVF256,Flat"``, ``"nmslib:hnsw"``, ...
    index_params : dict, default=None
        Build and query parameters of the backend (``{"efSearch": 256}``, ...).
    exclude_self : bool, default=False
        Treat query row ``i`` as training row ``i`` and leave it out of its own
        neighbours (leave-one-out predictions on the training set). Queries must then
        have as many rows as the training set. Otherwise queries are never special-cased:
        a training row queried against itself is its own nearest neighbour.
    n_jobs : int, default=None
        Threads for building and querying the index (``None``: 1, ``-1``: all cores).
"""


class _KernelKNN(StudentMixin, BaseEstimator):
    _parameter_constraints: dict = {
        "n_neighbors": N_NEIGHBORS_CONSTRAINT,
        "kernel": [StrOptions(set(KERNELS)), callable],
        "bandwidth": [Interval(Real, 0, None, closed="neither"), None],
        "exclude_self": ["boolean"],
        **INDEX_CONSTRAINTS,
    }

    def __init__(self, n_neighbors=5, *, kernel="uniform", bandwidth=None, metric="euclidean", index="exact",
                 index_params=None, exclude_self=False, n_jobs=None):
        self.n_neighbors = n_neighbors
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.metric = metric
        self.index = index
        self.index_params = index_params
        self.exclude_self = exclude_self
        self.n_jobs = n_jobs

    def _fit_index(self, X):
        check_n_neighbors(self.n_neighbors, X.shape[0], int(self.exclude_self))
        self.index_ = build_index(self, X)
        self.n_samples_fit_ = X.shape[0]
        self._fit_X = X

    def kneighbors(self, X, n_neighbors=None, return_distance=True):
        """Neighbours of each query row among the training rows.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        n_neighbors : int, default=None
            Defaults to ``self.n_neighbors``.
        return_distance : bool, default=True

        Returns
        -------
        dist : ndarray of shape (n_queries, n_neighbors), dtype=float32
            True distances of ``metric``, ascending (only if ``return_distance``).
        ind : ndarray of shape (n_queries, n_neighbors), dtype=int64
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        if not self.exclude_self:
            check_n_neighbors(k, self.n_samples_fit_)
            dist, ind = self.index_.query(X, k)
        else:
            if X.shape[0] != self.n_samples_fit_:
                raise ValueError(f"exclude_self=True treats query row i as training row i, so X must have "
                                 f"n_samples_fit={self.n_samples_fit_} rows; got {X.shape[0]}.")
            check_n_neighbors(k, self.n_samples_fit_, 1)
            dist, ind = self.index_.query(X, k + 1)
            is_self = ind == np.arange(X.shape[0])[:, None]
            # Drop the row itself where it was found, else the farthest (a duplicate of the
            # row can outrank it when distances tie).
            drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
            keep = np.ones(ind.shape, dtype=bool)
            keep[np.arange(X.shape[0]), drop] = False
            dist, ind = dist[keep].reshape(-1, k), ind[keep].reshape(-1, k)
        return (dist, ind) if return_distance else ind

    def _weights(self, X):
        dist, ind = self.kneighbors(X)
        return kernel_weights(dist, self.kernel, self.bandwidth), ind

    def _student_params(self) -> dict:
        if not isinstance(self.kernel, str):
            raise ValueError("a callable kernel cannot be saved in a student; use one of the named kernels "
                             f"{sorted(KERNELS)}.")
        return {"prototypes": self._fit_X, "metric": self.metric, "n_neighbors": self.n_neighbors,
                "kernel": self.kernel, "bandwidth": self.bandwidth, "index": self.index,
                "index_params": self.index_params or {},
                "meta": {"estimator": type(self).__name__, "n_samples": self.n_samples_fit_}}

    def _with_index(self, student):
        student.attach_index(self.index_)
        return student


class KernelKNNClassifier(ClassifierMixin, _KernelKNN):
    __doc__ = """Kernel-weighted k-nearest-neighbour classifier over any search backend.

    Each of a query's ``n_neighbors`` neighbours votes for its class with weight
    ``K(u)``, where ``u`` is its scaled distance (see ``bandwidth``); ``predict_proba`` is
    the normalised vote and ``predict`` its argmax. Ties between classes go to the class
    that comes first in ``classes_`` (as in scikit-learn); ties between neighbours at equal
    distance are ordered by training row (exact backend). With ``kernel="uniform"`` and
    ``index="exact"`` predictions equal those of scikit-learn's ``KNeighborsClassifier``.
""" + _PARAMS_DOC + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    index_ : nnkd.index.Index
        The fitted search index over the training rows.
    n_features_in_ : int
    n_samples_fit_ : int

    See Also
    --------
    KernelKNNRegressor, ANNTransformer, sklearn.neighbors.KNeighborsClassifier

    Notes
    -----
    The kernels and the per-row scaling follow the R package KernelKnn (Mouselimis),
    with textbook kernel forms (KernelKnn's ``"uniform"`` grows with distance; here it is
    constant).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from nnkd import KernelKNNClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = KernelKNNClassifier(n_neighbors=7, kernel="gaussian").fit(X, y)
    >>> clf.predict(X[:3]).tolist()
    [0, 0, 0]
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Index the training rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : KernelKNNClassifier
        """
        X, y = validate_data(self, X, y, dtype=np.float32, order="C")
        check_classification_targets(y)
        self.classes_, y_codes = np.unique(y, return_inverse=True)
        self._y_codes = y_codes.astype(np.int64)
        self._fit_index(X)
        return self

    def predict_proba(self, X):
        """Normalised kernel-weighted class votes.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        proba : ndarray of shape (n_queries, n_classes), dtype=float64
        """
        check_is_fitted(self)
        w, ind = self._weights(X)
        votes = weighted_votes(w, ind, self._y_codes, self.classes_.shape[0])
        return votes / votes.sum(axis=1, keepdims=True)

    def to_student(self) -> PrototypeStudent:
        """Every training row as a prototype of a NumPy-only student (``.save(dir)``, ``nnkd serve dir``).

        It predicts what :meth:`predict` predicts for new rows (``exclude_self`` only applies to
        the estimator's own training rows). Raises ``ValueError`` for a callable kernel.

        Returns
        -------
        student : nnkd.student.PrototypeStudent
        """
        check_is_fitted(self)
        one_hot = np.eye(len(self.classes_), dtype=np.float32)[self._y_codes]
        return self._with_index(PrototypeStudent(classes=self.classes_, label_vectors=one_hot,
                                                 **self._student_params()))

    def predict(self, X):
        """Class with the largest kernel-weighted vote.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        y : ndarray of shape (n_queries,)
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class KernelKNNRegressor(RegressorMixin, _KernelKNN):
    __doc__ = """Kernel-weighted k-nearest-neighbour regressor over any search backend.

    Predicts ``sum_j K(u_j) y_j / sum_j K(u_j)`` over a query's neighbours (see
    ``bandwidth`` for ``u``). With ``kernel="uniform"`` and ``index="exact"`` this is
    scikit-learn's ``KNeighborsRegressor``.
""" + _PARAMS_DOC + """
    Attributes
    ----------
    index_ : nnkd.index.Index
    n_features_in_ : int
    n_samples_fit_ : int

    See Also
    --------
    KernelKNNClassifier, sklearn.neighbors.KNeighborsRegressor

    Examples
    --------
    >>> import numpy as np
    >>> from nnkd import KernelKNNRegressor
    >>> X = np.arange(6, dtype=float)[:, None]
    >>> KernelKNNRegressor(n_neighbors=2).fit(X, 2 * X.ravel()).predict([[0.4]]).tolist()
    [1.0]
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Index the training rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : KernelKNNRegressor
        """
        X, y = validate_data(self, X, y, dtype=np.float32, order="C", multi_output=True, y_numeric=True)
        self._y = np.asarray(y, dtype=np.float64)
        self._fit_index(X)
        return self

    def predict(self, X):
        """Kernel-weighted mean of the neighbours' targets.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        y : ndarray of shape (n_queries,) or (n_queries, n_outputs), dtype=float64
        """
        check_is_fitted(self)
        w, ind = self._weights(X)
        return weighted_mean(w, ind, self._y)

    def to_student(self) -> PrototypeRegressor:
        """Every training row with its target as a NumPy-only regression student (``.save(dir)``,
        ``nnkd serve dir``): its ``predict`` returns what :meth:`predict` returns for new rows.

        Returns
        -------
        student : nnkd.student.PrototypeRegressor
        """
        check_is_fitted(self)
        return self._with_index(PrototypeRegressor(classes=None, targets=self._y, **self._student_params()))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
