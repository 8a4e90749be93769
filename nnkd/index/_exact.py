"""``"exact"``: brute-force search, the reference the approximate backends are tested against."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnkd._core.artifacts import read_npz
from nnkd._core.distances import NEG_INNER, exact_knn
from nnkd._core.metrics import CHEBYSHEV, EUCLIDEAN, MANHATTAN, check_points
from nnkd.index._base import Index

_KERNEL_METRIC = {"euclidean": EUCLIDEAN, "sqeuclidean": EUCLIDEAN, "manhattan": MANHATTAN,
                  "chebyshev": CHEBYSHEV, "cosine": NEG_INNER, "inner_product": NEG_INNER}
_ARRAYS = "arrays.npz"


class ExactIndex(Index):
    """Exact k-NN: a float32 GEMM screen with a proven error bound and float64 re-ranking
    (euclidean, cosine, inner product; see :func:`nnkd._core.distances.exact_knn`) or a
    vectorised Numba scan (manhattan, chebyshev), parallel over ``n_jobs`` threads.

    Ties in distance are ordered by row number, so results are deterministic.
    """

    backend = "exact"
    # Derived arrays are rebuilt from the saved rows when unpickling.
    _NATIVE_ATTRS = ("_X", "_sqnorm", "_norm")

    def _build(self, X):
        self._X = X
        gemm = self.metric not in ("manhattan", "chebyshev")
        self._sqnorm = np.einsum("ij,ij->i", X, X, dtype=np.float64) if gemm else None
        self._norm = np.sqrt(self._sqnorm) if gemm else None

    def _search(self, Q, k):
        dist, ind = exact_knn(Q, self._X, k, _KERNEL_METRIC[self.metric], self.n_jobs, self._sqnorm, self._norm)
        if self.metric == "euclidean":
            np.sqrt(dist, out=dist)
        elif self.metric == "cosine":
            dist += 1.0                               # 1 - x.q on unit rows
        return dist, ind

    def _save_native(self, directory: Path) -> list[str]:
        np.savez(directory / _ARRAYS, X=self._X)
        return [_ARRAYS]

    def _load_native(self, directory: Path) -> None:
        # load_index set the shape the metadata declares; the archive must hold exactly it.
        X = read_npz(directory / _ARRAYS, {"X": ("float", (self._n, self._dim))})["X"]
        self._build(check_points(X, "X"))
        self._n, self._dim = X.shape
