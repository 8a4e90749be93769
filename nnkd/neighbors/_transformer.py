"""``ANNTransformer``: scikit-learn's ``KNeighborsTransformer`` contract on any nnkd Index."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from nnkd._sklearn_compat import StrOptions, _fit_context, validate_data
from nnkd.neighbors._base import (
    INDEX_CONSTRAINTS,
    N_NEIGHBORS_CONSTRAINT,
    build_index,
    check_n_neighbors,
)


class ANNTransformer(TransformerMixin, BaseEstimator):
    """Sparse k-nearest-neighbour graph from an approximate (or exact) index.

    A drop-in for ``sklearn.neighbors.KNeighborsTransformer``: ``transform(X)`` returns a
    CSR matrix of shape ``(n_queries, n_samples_fit)`` whose row ``i`` holds the
    neighbours of ``X[i]`` among the fitted rows, sorted by distance. In
    ``mode="distance"`` each row has ``n_neighbors + 1`` entries with true distances (a
    training row queried against itself keeps its explicit zero, as scikit-learn does), so
    estimators with ``metric="precomputed"`` (``KNeighborsClassifier``, ``Isomap``,
    ``TSNE``, ``DBSCAN``, ...) run on approximate neighbours. ``mode="connectivity"``
    gives ``n_neighbors`` entries of 1.0.

    Parameters
    ----------
    n_neighbors : int, default=5
    mode : {"distance", "connectivity"}, default="distance"
    metric : {"euclidean", "sqeuclidean", "manhattan", "chebyshev", "cosine", "inner_product"}, default="euclidean"
        ``inner_product`` gives negative "distances", which precomputed-metric estimators reject.
    index : str, default="exact"
        Search backend spec for :func:`nnkd.index.make_index`: ``"exact"`` needs no optional
        dependency; ``"nmslib:hnsw"`` or ``"faiss:HNSW32"`` pay off on large data.
    index_params : dict, default=None
        Build and query parameters of the backend.
    n_jobs : int, default=None
        Threads for building and querying (``None``: 1, ``-1``: all cores).

    Attributes
    ----------
    index_ : nnkd.index.Index
    n_features_in_ : int
    n_samples_fit_ : int

    See Also
    --------
    sklearn.neighbors.KNeighborsTransformer, KernelKNNClassifier

    Examples
    --------
    >>> import numpy as np
    >>> from nnkd import ANNTransformer
    >>> X = np.array([[0.0], [1.0], [3.0]])
    >>> ANNTransformer(n_neighbors=1, index="exact").fit_transform(X).toarray()
    array([[0., 1., 0.],
           [1., 0., 0.],
           [0., 2., 0.]], dtype=float32)
    """

    _parameter_constraints: dict = {
        "n_neighbors": N_NEIGHBORS_CONSTRAINT,
        "mode": [StrOptions({"distance", "connectivity"})],
        **INDEX_CONSTRAINTS,
    }

    def __init__(self, n_neighbors=5, *, mode="distance", metric="euclidean", index="exact",
                 index_params=None, n_jobs=None):
        self.n_neighbors = n_neighbors
        self.mode = mode
        self.metric = metric
        self.index = index
        self.index_params = index_params
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Index the rows of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : ANNTransformer
        """
        X = validate_data(self, X, dtype=np.float32, order="C")
        check_n_neighbors(self.n_neighbors, X.shape[0], int(self.mode == "distance"))
        self.index_ = build_index(self, X)
        self.n_samples_fit_ = X.shape[0]
        return self

    def transform(self, X):
        """Neighbour graph of ``X`` over the fitted rows.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        graph : scipy.sparse.csr_matrix of shape (n_queries, n_samples_fit), dtype=float32
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        k = self.n_neighbors + (self.mode == "distance")   # explicit self-loop, as sklearn
        dist, ind = self.index_.query(X, k)
        data = dist.ravel() if self.mode == "distance" else np.ones(ind.size, dtype=np.float32)
        indptr = np.arange(0, ind.size + 1, k)
        return csr_matrix((data, ind.ravel(), indptr), shape=(X.shape[0], self.n_samples_fit_))

    def fit_transform(self, X, y=None):
        """``fit(X).transform(X)``: each row's first entry is itself at distance 0.

        Returns
        -------
        graph : scipy.sparse.csr_matrix of shape (n_samples, n_samples), dtype=float32
        """
        return self.fit(X).transform(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
