"""The Index protocol shared by every backend: validation, true distances, persistence."""

from __future__ import annotations

import tempfile
from numbers import Integral
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nnkd._core.artifacts import package_version, write_artifact, write_json
from nnkd._core.metrics import SEARCH_METRICS, check_points, normalize_rows
from nnkd._core.partitions import is_dask_collection

#: Metric names every backend understands (where it can: see each backend's docs).
INDEX_METRICS = SEARCH_METRICS

FORMAT = "nnkd.index"
FORMAT_VERSION = 2
#: Metadata versions load_index reads (1: checksums inside index.json, no manifest).
READ_VERSIONS = (1, 2)
METADATA_FILE = "index.json"


class Index:
    """Base class of nearest-neighbour indexes; build one with :func:`nnkd.index.make_index`.

    Every backend returns **true distances of the named metric**, ascending, as float32,
    with int64 ids into the fitted rows:

    - ``"euclidean"``: L2; ``"sqeuclidean"``: squared L2;
    - ``"manhattan"``: L1; ``"chebyshev"``: L-infinity;
    - ``"cosine"``: ``1 - cos(x, q)`` (rows are L2-normalised first; all-zero rows are rejected);
    - ``"inner_product"``: ``-x.q`` (the negated similarity, so that smaller is nearer).

    Subclasses set ``backend``, ``BUILD_DEFAULTS``, ``QUERY_DEFAULTS`` and implement
    ``_build``, ``_search``, ``_apply_query_params``, ``_save_native`` and ``_load_native``.
    """

    backend: ClassVar[str] = ""
    #: Build-time parameters and their defaults (``None``: decided at build time).
    BUILD_DEFAULTS: ClassVar[dict[str, Any]] = {}
    #: Query-time parameters and their defaults (``None``: decided at build time).
    QUERY_DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, method: str, metric: str = "euclidean", n_jobs=None, **params):
        if not isinstance(metric, str) or metric not in INDEX_METRICS:
            raise ValueError(f"metric={metric!r} is not supported; use one of {list(INDEX_METRICS)}.")
        self.method = method
        self.metric = metric
        self.n_jobs = n_jobs
        known = {**self.BUILD_DEFAULTS, **self.QUERY_DEFAULTS}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for index {self.spec!r}; "
                             f"known: {sorted(known) or 'none'}.")
        self.build_params = {k: params.get(k, v) for k, v in self.BUILD_DEFAULTS.items()}
        self.query_params = {k: params.get(k, v) for k, v in self.QUERY_DEFAULTS.items()}
        self._check_supported()
        self._dim: int | None = None
        self._n = 0
        self._shards = None

    # -- what subclasses provide ---------------------------------------------------------
    def _check_supported(self) -> None:
        """Raise ``ValueError`` if this backend/method cannot serve ``self.metric``."""

    def _build(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (true distances, ids) of shape (len(Q), k); ids < 0 mark missing results."""
        raise NotImplementedError

    def _apply_query_params(self) -> None:
        """Push ``self.query_params`` into the native index."""

    def _breadth_param(self) -> str:
        """The query parameter that widens the search (named when results come up short)."""
        return "the search breadth"

    def _save_native(self, directory: Path) -> list[str]:
        raise NotImplementedError

    def _load_native(self, directory: Path) -> None:
        raise NotImplementedError

    # -- public API ------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        """The spec string this index was made from (``"exact"``, ``"faiss:HNSW32"``, ...)."""
        return self.backend if self.backend == "exact" else f"{self.backend}:{self.method}"

    @property
    def dim(self) -> int:
        """Number of features of the fitted rows."""
        self._check_fitted()
        return self._dim

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        state = f"n={self._n}, dim={self._dim}" if self._dim is not None else "unfitted"
        return f"<{type(self).__name__} {self.spec!r} metric={self.metric!r} {state}>"

    def _check_fitted(self) -> None:
        if self._dim is None:
            raise RuntimeError(f"{self!r} is not fitted; call fit(X) first.")

    def _prepare(self, X, name: str) -> np.ndarray:
        X = check_points(X, name)
        if self._dim is not None and name != "X" and X.shape[1] != self._dim:
            raise ValueError(f"{name} has {X.shape[1]} features but the index was fitted on {self._dim}.")
        return normalize_rows(X, name) if self.metric == "cosine" else X

    def fit(self, X) -> Index:
        """Index the rows of ``X``.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            Finite values; converted to C-contiguous float32. A dask array (or dataframe)
            is indexed as shards, one per row partition, built on the workers of the active
            ``dask.distributed`` client (in this process without one); :meth:`query` then
            merges the shards' top ``k`` exactly (see :mod:`nnkd.index._sharded`).

        Returns
        -------
        self : Index
        """
        if is_dask_collection(X):
            from nnkd.index._sharded import Shards

            self._shards = Shards(self, X)
            self._dim, self._n = self._shards.dim, self._shards.n
            return self
        self._shards = None
        X = self._prepare(X, "X")
        self._build(X)
        self._dim, self._n = X.shape[1], X.shape[0]
        return self

    def query(self, Q, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest indexed rows of every row of ``Q``.

        Parameters
        ----------
        Q : array-like of shape (n_queries, n_features)
        k : int
            ``1 <= k <= len(self)``.

        Returns
        -------
        dist : ndarray of shape (n_queries, k), dtype=float32
            True distances of ``self.metric``, ascending per row.
        ind : ndarray of shape (n_queries, k), dtype=int64
            Row numbers in the fitted ``X``.

        Raises
        ------
        ValueError
            Bad ``Q`` or ``k``, or an approximate backend returned fewer than ``k``
            neighbours for some row (raise its search-breadth parameter).
        """
        dist, ind = self.query_unrounded(Q, k)
        return np.ascontiguousarray(dist, dtype=np.float32), np.ascontiguousarray(ind, dtype=np.int64)

    def query_unrounded(self, Q, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`query` with the distances in the precision the backend computed them
        (float64 for the exact backend): what merging the results of several indexes
        needs, so that ties are decided as one index would decide them."""
        self._check_fitted()
        if isinstance(k, bool) or not isinstance(k, Integral) or not 1 <= k <= self._n:
            raise ValueError(f"k={k!r} must be an integer in [1, {self._n}] (the number of indexed rows).")
        if self._shards is not None:
            Q = check_points(Q, "Q")          # each shard prepares (normalises) it itself
            if Q.shape[1] != self._dim:
                raise ValueError(f"Q has {Q.shape[1]} features but the index was fitted on {self._dim}.")
            return self._shards.query(Q, int(k), self.query_params)
        Q = self._prepare(Q, "Q")
        dist, ind = self._search(Q, int(k))
        short = np.flatnonzero((ind < 0).any(axis=1))
        if short.size:
            raise ValueError(f"{self.spec} returned fewer than k={k} neighbours for {short.size} query row(s) "
                             f"(first: row {short[0]}); raise {self._breadth_param()}.")
        return dist, np.asarray(ind, dtype=np.int64)

    def set_query_params(self, **params) -> Index:
        """Change query-time parameters (``efSearch``, ``nprobe``, ...) in place; returns self."""
        unknown = sorted(set(params) - set(self.QUERY_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown query parameter(s) {unknown} for {self.spec!r}; "
                             f"known: {sorted(self.QUERY_DEFAULTS) or 'none'}.")
        self.query_params.update(params)
        if self._dim is not None:
            self._apply_query_params()
        return self

    # -- persistence -----------------------------------------------------------------------
    def _metadata(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "backend": self.backend,
                "method": self.method, "metric": self.metric, "build_params": self.build_params,
                "query_params": self.query_params, "dim": self._dim, "n": self._n,
                "versions": {"nnkd": package_version("nnkd"), "numpy": np.__version__,
                             **self._library_versions()}}

    def _library_versions(self) -> dict:
        return {}

    def save(self, path, *, key=None, key_file=None) -> Path:
        """Write the index to directory ``path``, atomically (a previous index there is
        replaced only once the new one is complete).

        The directory holds ``index.json`` (backend, metric, parameters, shape, library
        versions), the backend's native file(s) and ``manifest.json`` (the SHA-256 of every
        file, signed with HMAC-SHA256 when a key is given or ``NNKD_ARTIFACT_KEY`` is set).
        Read it back with :func:`nnkd.index.load_index`.

        Returns
        -------
        path : pathlib.Path
        """
        self._check_fitted()
        if self._shards is not None:
            raise ValueError(f"{self!r} is sharded over {len(self._shards)} dask partitions and cannot be saved "
                             "as one artifact; fit it on an in-memory array to save it.")

        def write(directory: Path) -> None:
            self._save_native(directory)
            write_json(directory / METADATA_FILE, self._metadata())

        return write_artifact(path, write, "index", METADATA_FILE, key=key, key_file=key_file)

    # Native indexes (faiss, nmslib) hold C++ objects: pickle them through their own
    # file format so that joblib and GridSearchCV can copy fitted estimators.
    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in self._NATIVE_ATTRS}
        if self._NATIVE_ATTRS and self._dim is not None:
            with tempfile.TemporaryDirectory() as tmp:
                names = self._save_native(Path(tmp))
                state["_native_bytes"] = {name: (Path(tmp) / name).read_bytes() for name in names}
        return state

    def __setstate__(self, state):
        blobs = state.pop("_native_bytes", None)
        self.__dict__.update(state)
        if blobs is not None:
            with tempfile.TemporaryDirectory() as tmp:
                for name, data in blobs.items():
                    (Path(tmp) / name).write_bytes(data)
                self._load_native(Path(tmp))

    #: Attributes holding native handles, rebuilt from files on unpickling.
    _NATIVE_ATTRS: ClassVar[tuple[str, ...]] = ()

