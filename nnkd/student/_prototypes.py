"""Prototype students: labelled prototypes searched through an :mod:`nnkd.index` Index.

``kind="knn"`` (:class:`PrototypeStudent`): the ``n_neighbors`` nearest prototypes vote with
kernel weights; each prototype carries a class distribution (the mean teacher distribution,
or the label mix, of its Voronoi cell). ``kind="knn_regressor"``
(:class:`PrototypeRegressor`): the kernel-weighted mean of the neighbours' targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from nnkd._core.artifacts import scalars_param
from nnkd._core.kernels import KERNELS, kernel_weights, weighted_mean
from nnkd._core.metrics import check_points
from nnkd.index import INDEX_METRICS, Index, load_index, make_index, parse_spec
from nnkd.student._base import (
    Student,
    choice_param,
    float_array,
    int_param,
    positive_param,
    register_kind,
)
from nnkd.student._storage import stored_bytes

SPACES = ("input", "teacher")
_INDEX_DIR = "index"


def cell_layout(owner: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR layout ``(cell_indptr, cell_indices)`` of the rows of each of ``m`` prototypes'
    cells, from ``owner[i]`` = the prototype of row ``i`` (rows in increasing order per cell)."""
    order = np.argsort(owner, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=m))]).astype(np.int64)
    return indptr, order.astype(np.int64)


def check_cells(support, cell_indptr, cell_indices, m: int) -> tuple:
    """Validated explanation arrays (int64), or ``ValueError``: ``support`` has one row per
    prototype; ``cell_indptr`` (``m + 1`` non-decreasing offsets from 0) delimits each
    prototype's rows in ``cell_indices``."""
    if support is not None:
        support = np.ascontiguousarray(support, dtype=np.int64)
        if support.shape != (m,):
            raise ValueError(f"support has shape {support.shape}; expected ({m},).")
    if (cell_indptr is None) != (cell_indices is None):
        raise ValueError("cell_indptr and cell_indices go together; pass both or neither.")
    if cell_indptr is not None:
        cell_indptr = np.ascontiguousarray(cell_indptr, dtype=np.int64)
        cell_indices = np.ascontiguousarray(cell_indices, dtype=np.int64)
        if (cell_indptr.shape != (m + 1,) or cell_indptr[0] != 0 or (np.diff(cell_indptr) < 0).any()
                or cell_indices.ndim != 1 or cell_indptr[-1] != cell_indices.size):
            raise ValueError(f"cell_indptr must be {m + 1} non-decreasing offsets from 0 to len(cell_indices).")
        if cell_indices.size and cell_indices.min() < 0:
            raise ValueError("cell_indices must be non-negative training-row numbers.")
    if support is not None and support.size and support.min() < 0:
        raise ValueError("support must hold non-negative training-row numbers.")
    return support, cell_indptr, cell_indices


def _index_spec(v) -> bool:
    """an index spec such as 'exact', 'faiss:HNSW32' or 'nmslib:hnsw'"""
    try:
        parse_spec(v)
    except (TypeError, ValueError):
        return False
    return True


def prototype_evidence(student, j: int, d: float) -> dict:
    """What :meth:`explain` reports about prototype ``j`` at distance ``d``: its label data
    (from the kind's ``_prototype_labels``) and the training rows it stands for."""
    members = (student.cell_indices[student.cell_indptr[j]:student.cell_indptr[j + 1]]
               if student.cell_indptr is not None else np.empty(0, dtype=np.int64))
    return {"prototype": int(j), "distance": float(d), **student._prototype_labels(j),
            "support_row": None if student.support is None else int(student.support[j]),
            "training_rows": members.tolist()}


def check_k(k, m: int | None, what: str = "the number of prototypes") -> int:
    """``k`` as an int in ``[1, m]`` (``m=None``: any ``k >= 1``), or ``ValueError``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or (m is not None and k > m):
        bounds = f"in [1, {m}] ({what})" if m is not None else ">= 1"
        raise ValueError(f"k must be an integer {bounds}; got {k!r}.")
    return int(k)


@dataclass(kw_only=True, eq=False)
class PrototypeEvidence(Student):
    """What every prototype kind shares: the prototypes, the training rows behind each (what
    :meth:`explain` reports) and the nearest-prototype explanation."""

    prototypes: np.ndarray
    support: np.ndarray | None = None
    cell_indptr: np.ndarray | None = None
    cell_indices: np.ndarray | None = None

    def _check_evidence(self) -> None:
        self.prototypes = check_points(self.prototypes, "prototypes")
        self.support, self.cell_indptr, self.cell_indices = check_cells(
            self.support, self.cell_indptr, self.cell_indices, self.n_prototypes)
        self._index: Index | None = None

    @property
    def n_prototypes(self) -> int:
        return self.prototypes.shape[0]

    def check_neighbors(self, k) -> None:
        check_k(k, self.n_prototypes)

    def _explain_nearest(self, X, Z: np.ndarray, k, index: Index) -> list[dict]:
        """Per row of ``X`` (``Z``: the rows in the prototypes' space): the prediction and the
        ``min(k, n_prototypes)`` prototypes nearest to ``Z`` in ``index``."""
        k = min(check_k(k, None), self.n_prototypes)
        dist, ind = index.query(Z, k)
        preds = self.predict(X)
        return [{"prediction": preds[i].item(),
                 "prototypes": [prototype_evidence(self, int(j), d) for j, d in zip(ind[i], dist[i], strict=True)]}
                for i in range(Z.shape[0])]


@dataclass(kw_only=True, eq=False)
class _SearchedPrototypes(PrototypeEvidence):
    """What both searched prototype kinds share: the index over the prototypes and the vote."""

    FLOAT_ARRAYS: ClassVar[tuple[str, ...]] = ("prototypes",)
    PARAMS: ClassVar[dict] = {
        "space": (choice_param(SPACES), False), "metric": (choice_param(INDEX_METRICS), True),
        "n_neighbors": (int_param(1), True), "kernel": (choice_param(KERNELS), True),
        "bandwidth": (positive_param(optional=True), False), "index": (_index_spec, True),
        "index_params": (scalars_param, False), "index_dir": (choice_param([_INDEX_DIR]), False)}

    space: str = "input"
    metric: str = "euclidean"
    n_neighbors: int = 1
    kernel: str = "uniform"
    bandwidth: float | None = None
    index: str = "exact"
    index_params: dict = field(default_factory=dict)

    def _validate(self) -> None:
        self._check_evidence()
        m = self.n_prototypes
        if self.space not in SPACES:
            raise ValueError(f"space={self.space!r} must be one of {SPACES}.")
        if self.metric not in INDEX_METRICS:
            raise ValueError(f"metric={self.metric!r} must be one of {list(INDEX_METRICS)}.")
        if not isinstance(self.kernel, str) or self.kernel not in KERNELS:
            raise ValueError(f"kernel={self.kernel!r} must be one of {sorted(KERNELS)} (a callable kernel "
                             "cannot be saved).")
        self.n_neighbors = check_k(self.n_neighbors, m)
        if self.bandwidth is not None and not (np.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise ValueError(f"bandwidth={self.bandwidth!r} must be None or a finite number > 0.")
        self.index_params = dict(self.index_params or {})

    @property
    def n_features_in(self) -> int:
        return self.prototypes.shape[1]

    @property
    def needs_teacher(self) -> bool:
        return self.space == "teacher"

    def expects(self) -> str:
        if self.space == "teacher":
            return (f"teacher embeddings: {self.n_features_in} values per instance (the teacher's embedding "
                    "layer output, not raw rows)")
        return super().expects()

    # -- the index -----------------------------------------------------------------------------
    def attach_index(self, index: Index) -> None:
        """Search with an already fitted ``index`` over exactly these prototypes (the estimator's)."""
        if len(index) != self.n_prototypes or index.dim != self.n_features_in or index.metric != self.metric:
            raise ValueError(f"the index holds {len(index)} rows of {index.dim} dims ({index.metric}); the student "
                             f"has {self.n_prototypes} prototypes of {self.n_features_in} dims ({self.metric}).")
        self._index = index

    def search_index(self) -> Index:
        """The index over the prototypes (built on first use)."""
        if self._index is None:
            self._index = make_index(self.index, self.metric, **self.index_params).fit(self.prototypes)
        return self._index

    def _weights(self, X) -> tuple[np.ndarray, np.ndarray]:
        dist, ind = self.search_index().query(self.check_input(X), self.n_neighbors)
        return kernel_weights(dist, self.kernel, self.bandwidth), ind

    def explain(self, X, k: int = 3) -> list[dict]:
        """Per row: ``{"prediction", "prototypes": [...]}`` with the ``k`` nearest prototypes
        (``min(k, n_prototypes)``), each with its distance, its label data, the training row it
        started from (``support_row``) and the training rows of its cell (``training_rows``)."""
        Z = self.check_input(X)
        return self._explain_nearest(Z, Z, k, self.search_index())

    def example_inputs(self, n: int, rng: np.random.Generator) -> np.ndarray:
        P = self.prototypes
        noise = rng.standard_normal((n, P.shape[1])) * (0.1 * P.std(axis=0) + 1e-6)
        return np.ascontiguousarray(P[rng.integers(0, P.shape[0], n)] + noise, dtype=np.float32)

    # -- persistence ---------------------------------------------------------------------------
    def _params(self) -> dict:
        return {"space": self.space, "metric": self.metric, "n_neighbors": self.n_neighbors, "kernel": self.kernel,
                "bandwidth": self.bandwidth, "index": self.index, "index_params": self.index_params}

    def _describe(self) -> dict:
        return {**self._params(), "n_prototypes": self.n_prototypes, "prototype_dims": self.n_features_in}

    def _save_extra(self, directory: Path, key, key_file) -> dict:
        # Approximate indexes are saved as built: rebuilding one need not give the same graph.
        if self.index == "exact":
            return {}
        self.search_index().save(directory / _INDEX_DIR, key=key, key_file=key_file)
        return {"index_dir": _INDEX_DIR}

    @classmethod
    def _common_saved(cls, meta: dict, arrays: dict, directory: Path) -> dict:
        fields = {k: meta[k] for k in ("space", "metric", "n_neighbors", "kernel", "index") if k in meta}
        fields["bandwidth"] = meta.get("bandwidth")
        fields["index_params"] = meta.get("index_params") or {}
        fields.update({k: arrays[k] for k in ("prototypes", "support", "cell_indptr", "cell_indices") if k in arrays})
        return fields

    def _attach_saved_index(self, meta: dict, directory: Path, keys: dict) -> None:
        # The student's manifest (and signature) already covers the index's files; loading
        # checks the index's own manifest too before its native parser runs.
        if meta.get("index_dir") is not None:
            if not all(name.startswith(f"{_INDEX_DIR}/") for name in meta["files"] if "/" in name) \
                    or f"{_INDEX_DIR}/manifest.json" not in meta["files"]:
                raise ValueError(f"{directory}: the saved index is not covered by the student's manifest.")
            self.attach_index(load_index(directory / _INDEX_DIR, **keys))


@register_kind
@dataclass(kw_only=True, eq=False)
class PrototypeStudent(_SearchedPrototypes):
    """Nearest-prototype classifier (``kind="knn"``).

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
    prototypes : ndarray of shape (n_prototypes, n_features), float32
        In the space the student's inputs live in (raw rows, or teacher embeddings).
    label_vectors : ndarray of shape (n_prototypes, n_classes), float32
        Each prototype's class distribution.
    space : {"input", "teacher"}, default="input"
        ``"teacher"``: inputs are teacher embeddings, not raw rows.
    metric : str, default="euclidean"
        Any metric of :func:`nnkd.index.make_index`.
    n_neighbors : int, default=1
    kernel : str, default="uniform"
        Vote weights (see :class:`nnkd.KernelKNNClassifier`).
    bandwidth : float or None, default=None
        Kernel bandwidth (``None``: per-row scaling, see :class:`nnkd.KernelKNNClassifier`).
    index : str, default="exact"
        Search backend spec over the prototypes; approximate indexes are saved with the student.
    index_params : dict, default={}
    support, cell_indptr, cell_indices : ndarray of int64, default=None
        Training row each prototype started from, and the rows of each prototype's cell
        (``cell_indices[cell_indptr[j]:cell_indptr[j + 1]]``): what ``explain`` reports.
    dtype, bound, meta
        See :class:`~nnkd.student.Student`.

    Examples
    --------
    >>> import numpy as np
    >>> from nnkd.student import PrototypeStudent
    >>> s = PrototypeStudent(classes=np.array(["a", "b"]), prototypes=[[0.0], [1.0]],
    ...                      label_vectors=[[1.0, 0.0], [0.0, 1.0]])
    >>> s.predict([[0.2], [0.9]]).tolist()
    ['a', 'b']
    """

    kind: ClassVar[str] = "knn"
    FLOAT_ARRAYS: ClassVar[tuple[str, ...]] = ("prototypes", "label_vectors")
    ARRAYS: ClassVar[dict[str, str]] = {"prototypes": "float", "label_vectors": "float", "support": "int",
                                         "cell_indptr": "int", "cell_indices": "int"}

    label_vectors: np.ndarray

    def _validate(self) -> None:
        super()._validate()
        if self.classes is None:
            raise ValueError("a classifier student needs classes.")
        self.label_vectors = float_array(self.label_vectors, "label_vectors", (self.n_prototypes, len(self.classes)))
        if (self.label_vectors < 0).any():
            raise ValueError("label_vectors must be non-negative class distributions.")

    @property
    def size_bytes(self) -> int:
        return stored_bytes((self.prototypes, self.label_vectors), self.dtype)

    def _proba(self, X) -> np.ndarray:
        """Kernel-weighted mean of the neighbours' class distributions, ndarray of shape
        (n_queries, n_classes), float64."""
        w, ind = self._weights(X)
        p = weighted_mean(w, ind, self.label_vectors)
        return p / p.sum(axis=1, keepdims=True)

    def _prototype_labels(self, j: int) -> dict:
        return {"label": self.classes[int(np.argmax(self.label_vectors[j]))].item(),
                "label_vector": self.label_vectors[j].tolist()}

    @classmethod
    def _from_saved(cls, meta, arrays, common, directory, keys) -> PrototypeStudent:
        student = cls(**common, **cls._common_saved(meta, arrays, directory), label_vectors=arrays.get("label_vectors"))
        student._attach_saved_index(meta, directory, keys)
        return student


@register_kind
@dataclass(kw_only=True, eq=False)
class PrototypeRegressor(_SearchedPrototypes):
    """Nearest-prototype regressor (``kind="knn_regressor"``): ``predict`` returns the
    kernel-weighted mean of the neighbours' targets.

    Parameters
    ----------
    targets : ndarray of shape (n_prototypes,) or (n_prototypes, n_outputs)
        Kept in float64 whatever ``dtype`` (counted at 8 bytes each).
    prototypes, space, metric, n_neighbors, kernel, bandwidth, index, index_params, support,
    cell_indptr, cell_indices, dtype, bound, meta
        As :class:`PrototypeStudent`; ``classes`` is ``None``.
    """

    kind: ClassVar[str] = "knn_regressor"
    ARRAYS: ClassVar[dict[str, str]] = {"prototypes": "float", "targets": "float", "support": "int",
                                         "cell_indptr": "int", "cell_indices": "int"}

    targets: np.ndarray
    classes: np.ndarray | None = None

    def _validate(self) -> None:
        super()._validate()
        if self.classes is not None:
            raise ValueError("a regressor student has no classes; pass classes=None.")
        self.targets = np.ascontiguousarray(self.targets, dtype=np.float64)
        if self.targets.ndim not in (1, 2) or self.targets.shape[0] != self.n_prototypes:
            raise ValueError(f"targets has shape {self.targets.shape}; expected ({self.n_prototypes},) or "
                             f"({self.n_prototypes}, n_outputs).")
        if not np.isfinite(self.targets).all():
            raise ValueError("targets contains NaN or infinity.")

    @property
    def size_bytes(self) -> int:
        return stored_bytes((self.prototypes,), self.dtype) + 8 * int(self.targets.size)

    def _outputs(self, X) -> tuple[np.ndarray, None]:
        w, ind = self._weights(X)
        return weighted_mean(w, ind, self.targets), None

    def predict(self, X) -> np.ndarray:
        """Kernel-weighted mean of the neighbours' targets, ndarray of shape (n_queries,) or
        (n_queries, n_outputs), float64."""
        return self.predict_with_proba(X)[0]

    def check_proba(self) -> None:
        raise ValueError("this student is a regressor (kind 'knn_regressor'): it predicts values, not class "
                         "probabilities; ask for the prediction only.")


    def _prototype_labels(self, j: int) -> dict:
        return {"target": self.targets[j].tolist()}

    def _describe(self) -> dict:
        return {**super()._describe(), "n_outputs": 1 if self.targets.ndim == 1 else self.targets.shape[1]}

    @classmethod
    def _from_saved(cls, meta, arrays, common, directory, keys) -> PrototypeRegressor:
        student = cls(**common, **cls._common_saved(meta, arrays, directory), targets=arrays.get("targets"))
        student._attach_saved_index(meta, directory, keys)
        return student
