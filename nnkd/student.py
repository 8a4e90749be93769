"""``Student``: the inference-time artifact of distillation. NumPy + index only (never torch).

A student maps an input row to class probabilities with a small set of prototypes, or with a
soft decision tree:

- ``kind="knn"``: the ``n_neighbors`` nearest prototypes (through an :mod:`nnkd.index`
  Index) vote with kernel weights; each prototype carries a class distribution (the mean
  teacher distribution of its cell);
- ``kind="rbf"`` (ProtoNN-style): ``logits = sum_j Z_j exp(-gamma^2 |W x - b_j|^2)`` over all
  prototypes ``b_j`` with label vectors ``Z_j``; probabilities are ``softmax(logits)``;
- ``kind="tree"`` (Frosst & Hinton's soft decision tree): inner node ``i`` (breadth-first
  order, children ``2i + 1`` left and ``2i + 2`` right) sends a row right with probability
  ``sigmoid(beta_i (w_i . x + b_i))``; a leaf's path probability is the product along its
  path; ``inference="max_path"`` answers with the distribution of the most probable leaf,
  ``"mixture"`` with the path-weighted average of all leaf distributions.

Inputs are standardised (``input_mean``, ``input_scale``) and projected (``projection``)
first when the student has them. A student saved with :meth:`Student.save` is a directory
with ``student.json`` (format version, classes, parameters, shapes, sha256 of each array
file) and ``arrays.npz``; :func:`load_student` validates all of it and never unpickles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnkd._core.artifacts import package_version, read_metadata, write_metadata
from nnkd._core.kernels import KERNELS, kernel_weights
from nnkd._core.metrics import check_points
from nnkd.index import make_index

FORMAT = "nnkd.student"
FORMAT_VERSION = 1
_ARRAYS = "arrays.npz"
_META = "student.json"
#: Storage types of the float parameters and their bytes per parameter.
DTYPES = {"float32": 4, "float16": 2}
_FLOAT_FIELDS = ("prototypes", "label_vectors", "projection", "input_mean", "input_scale", "gate_weights",
                 "gate_biases", "gate_betas", "leaf_distributions")
_ARRAY_FIELDS = ("prototypes", "label_vectors", "projection", "input_mean", "input_scale", "support",
                 "cell_indptr", "cell_indices", "output_classes", "gate_weights", "gate_biases", "gate_betas",
                 "leaf_distributions")
_TREE_FIELDS = ("gate_weights", "gate_biases", "gate_betas", "leaf_distributions")
TREE_INFERENCE = ("max_path", "mixture")


def _sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large ``|a|``."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


@dataclass
class Student:
    """A distilled nearest-prototype or soft-tree classifier (see the module docstring).

    Attributes
    ----------
    classes : ndarray of shape (n_classes,)
    prototypes : ndarray of shape (n_prototypes, n_dims), float32
        In the student's working space (after standardisation and projection); ``None`` for
        a tree.
    label_vectors : ndarray of shape (n_prototypes, n_classes), float32
        Class distributions (``"knn"``) or label vectors (``"rbf"``); with ``output_classes``,
        one column per output (e.g. LELP pseudo-subclasses); ``None`` for a tree.
    dtype : {"float32", "float16"}
        Storage type of the float parameters. ``"float16"`` halves the artifact: parameters are
        rounded to float16 once (in memory as well, so predictions before and after saving
        agree) and computation stays in float32/float64.
    output_classes : ndarray of int64 or None
        ``"rbf"`` only: the class of each output column; a class's probability is the sum of
        its outputs' softmax probabilities.
    kind : {"knn", "rbf", "tree"}
    space : {"input", "teacher", "projection"}
        ``"teacher"``: inputs are teacher embeddings, not raw rows.
    support, cell_indptr, cell_indices : ndarray of int64 or None
        Transfer-set row each prototype started from, and the rows of each prototype's
        cell (``cell_indices[cell_indptr[j]:cell_indptr[j + 1]]``): what ``explain`` reports.
    gate_weights : ndarray of shape (2**depth - 1, n_features), float32
        ``kind="tree"``: each inner node's filter (standardised inputs), breadth-first order.
    gate_biases, gate_betas : ndarray of shape (2**depth - 1,), float32
        ``kind="tree"``: biases and inverse temperatures of the inner nodes.
    leaf_distributions : ndarray of shape (2**depth, n_classes), float32
        ``kind="tree"``: each leaf's class distribution, leaves left to right.
    depth : int
        ``kind="tree"``: levels of inner nodes.
    inference : {"max_path", "mixture"}
        ``kind="tree"``: the most probable leaf's distribution, or the path-weighted mixture.
    """

    classes: np.ndarray
    prototypes: np.ndarray | None = None
    label_vectors: np.ndarray | None = None
    kind: str = "knn"
    space: str = "input"
    metric: str = "euclidean"
    n_neighbors: int = 1
    kernel: str = "uniform"
    gamma: float | None = None
    projection: np.ndarray | None = None
    input_mean: np.ndarray | None = None
    input_scale: np.ndarray | None = None
    support: np.ndarray | None = None
    cell_indptr: np.ndarray | None = None
    cell_indices: np.ndarray | None = None
    output_classes: np.ndarray | None = None
    dtype: str = "float32"
    bound: float | None = None
    index: str = "exact"
    meta: dict = field(default_factory=dict)
    gate_weights: np.ndarray | None = None
    gate_biases: np.ndarray | None = None
    gate_betas: np.ndarray | None = None
    leaf_distributions: np.ndarray | None = None
    depth: int | None = None
    inference: str = "max_path"

    def __post_init__(self):
        self.classes = np.asarray(self.classes)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} must be one of {sorted(DTYPES)}.")
        if self.kind not in ("knn", "rbf", "tree"):
            raise ValueError(f"kind={self.kind!r} must be 'knn', 'rbf' or 'tree'.")
        if self.kind == "tree":
            self._check_tree()
        else:
            self._check_prototypes()
        self._check_standardisation()
        self._round_to_dtype()
        self._index = None

    def _check_tree(self):
        given = [name for name in ("prototypes", "label_vectors", "projection") if getattr(self, name) is not None]
        if given:
            raise ValueError(f"kind='tree' takes no {', '.join(given)}; pass gate_weights, gate_biases, gate_betas "
                             "and leaf_distributions.")
        if any(getattr(self, name) is None for name in _TREE_FIELDS) or self.depth is None:
            raise ValueError("kind='tree' needs gate_weights, gate_biases, gate_betas, leaf_distributions and depth.")
        if self.space != "input":
            raise ValueError(f"kind='tree' works on input rows: space must be 'input', not {self.space!r}.")
        if self.inference not in TREE_INFERENCE:
            raise ValueError(f"inference={self.inference!r} must be one of {TREE_INFERENCE}.")
        self.depth = int(self.depth)
        if self.depth < 1:
            raise ValueError(f"depth={self.depth} must be >= 1.")
        n_inner, n_leaves = 2 ** self.depth - 1, 2 ** self.depth
        self.gate_weights = check_points(self.gate_weights, "gate_weights")
        expected = {"gate_weights": (n_inner, self.gate_weights.shape[1]), "gate_biases": (n_inner,),
                    "gate_betas": (n_inner,), "leaf_distributions": (n_leaves, len(self.classes))}
        for name, shape in expected.items():
            value = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            if value.shape != shape or not np.isfinite(value).all():
                raise ValueError(f"{name} must be finite with shape {shape} for a depth-{self.depth} tree over "
                                 f"{len(self.classes)} classes; got shape {value.shape}.")
            setattr(self, name, value)
        if (self.leaf_distributions < 0).any() or not np.allclose(self.leaf_distributions.sum(axis=1), 1.0,
                                                                 atol=1e-4):
            raise ValueError("leaf_distributions must be non-negative with rows summing to 1.")

    def _check_prototypes(self):
        if self.prototypes is None or self.label_vectors is None:
            raise ValueError(f"kind={self.kind!r} needs prototypes and label_vectors.")
        given = [name for name in _TREE_FIELDS if getattr(self, name) is not None]
        if given:
            raise ValueError(f"{', '.join(given)} belong to kind='tree', not kind={self.kind!r}.")
        self.prototypes = check_points(self.prototypes, "prototypes")
        self.label_vectors = np.ascontiguousarray(self.label_vectors, dtype=np.float32)
        m, d = self.prototypes.shape
        if self.space not in ("input", "teacher", "projection"):
            raise ValueError(f"space={self.space!r} must be 'input', 'teacher' or 'projection'.")
        n_out = len(self.classes)
        if self.output_classes is not None:
            self.output_classes = np.asarray(self.output_classes)
            oc = self.output_classes
            if (self.kind != "rbf" or oc.ndim != 1 or oc.dtype.kind not in "iu" or oc.size == 0
                    or oc.min() < 0 or oc.max() >= n_out or np.unique(oc).size != n_out):
                raise ValueError(f"output_classes must be a kind='rbf' vector of class codes covering 0..{n_out - 1}.")
            self.output_classes = oc.astype(np.int64)
            n_out = oc.size
        if self.label_vectors.shape != (m, n_out):
            raise ValueError(f"label_vectors has shape {self.label_vectors.shape}; expected ({m}, {n_out}).")
        if self.kind == "knn" and (self.kernel not in KERNELS or not 1 <= self.n_neighbors <= m):
            raise ValueError(f"kind='knn' needs a kernel in {sorted(KERNELS)} and 1 <= n_neighbors <= {m}.")
        if self.kind == "rbf" and not (self.gamma is not None and self.gamma > 0):
            raise ValueError("kind='rbf' needs gamma > 0.")
        if self.projection is not None:
            self.projection = np.ascontiguousarray(self.projection, dtype=np.float32)
            if self.projection.ndim != 2 or self.projection.shape[0] != d:
                raise ValueError(f"projection has shape {self.projection.shape}; expected ({d}, n_features).")

    def _check_standardisation(self):
        n_in = self.n_features_in
        for name in ("input_mean", "input_scale"):
            value = getattr(self, name)
            if value is not None:
                value = np.ascontiguousarray(value, dtype=np.float32)
                if value.shape != (n_in,) or not np.isfinite(value).all():
                    raise ValueError(f"{name} must be a finite vector of length {n_in}.")
                setattr(self, name, value)
        if self.input_scale is not None and (self.input_scale <= 0).any():
            raise ValueError("input_scale must be > 0.")

    def _round_to_dtype(self):
        if self.dtype == "float16":
            for name in _FLOAT_FIELDS:
                value = getattr(self, name)
                if value is not None:
                    half = value.astype(np.float16)
                    if not np.isfinite(half).all():
                        raise ValueError(f"{name} overflows float16; use dtype='float32'.")
                    setattr(self, name, half.astype(np.float32))

    # -- shape and size --------------------------------------------------------------------
    @property
    def n_features_in(self) -> int:
        """Width of the rows ``predict`` takes (raw features, or teacher embedding dims)."""
        if self.kind == "tree":
            return self.gate_weights.shape[1]
        return self.projection.shape[1] if self.projection is not None else self.prototypes.shape[1]

    @property
    def size_bytes(self) -> int:
        """Bytes of every parameter prediction needs (at ``dtype``), explanation data excluded."""
        if self.kind == "tree":
            n = sum(getattr(self, name).size for name in _TREE_FIELDS)
        else:
            n = self.prototypes.size + self.label_vectors.size + (self.kind == "rbf")
        for extra in (self.projection, self.input_mean, self.input_scale, self.output_classes):
            n += 0 if extra is None else extra.size
        return DTYPES[self.dtype] * int(n)

    # -- inference ---------------------------------------------------------------------------
    def transform(self, X) -> np.ndarray:
        """Rows mapped to the prototypes' space (standardised, then projected)."""
        X = check_points(X, "X")
        if X.shape[1] != self.n_features_in:
            raise ValueError(f"X has {X.shape[1]} features but the student takes {self.n_features_in}"
                             + (" (teacher embeddings)" if self.space == "teacher" else "") + ".")
        if self.input_mean is not None:
            X = (X - self.input_mean) / self.input_scale
        if self.projection is not None:
            X = X @ self.projection.T
        return np.ascontiguousarray(X, dtype=np.float32)

    def _get_index(self):
        if self._index is None:
            self._index = make_index(self.index, self.metric).fit(self.prototypes)
        return self._index

    def _rbf_logits(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        P = self.prototypes.astype(np.float64)
        Z = Z.astype(np.float64)
        d2 = np.maximum((Z * Z).sum(1)[:, None] - 2 * Z @ P.T + (P * P).sum(1)[None], 0.0)
        K = np.exp(-(self.gamma ** 2) * d2)
        return K @ self.label_vectors.astype(np.float64), d2

    def route(self, X) -> np.ndarray:
        """``kind="tree"``: path probability of every leaf, ndarray of shape (n_queries, 2**depth),
        float64 (rows sum to 1)."""
        if self.kind != "tree":
            raise ValueError(f"route is defined for kind='tree' students, not kind={self.kind!r}.")
        Z = self.transform(X).astype(np.float64)
        gates = _sigmoid(self.gate_betas * (Z @ self.gate_weights.T.astype(np.float64) + self.gate_biases))
        mu = np.ones((Z.shape[0], 1))
        for level in range(self.depth):
            right = gates[:, 2 ** level - 1:2 ** (level + 1) - 1]
            # children of the j-th node of a level are the (2j)-th and (2j+1)-th of the next
            mu = np.stack((mu * (1.0 - right), mu * right), axis=2).reshape(Z.shape[0], -1)
        return mu

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, ndarray of shape (n_queries, n_classes), float64."""
        if self.kind == "tree":
            mu = self.route(X)
            leaves = self.leaf_distributions.astype(np.float64)
            if self.inference == "max_path":
                return leaves[np.argmax(mu, axis=1)]
            return mu @ leaves
        Z = self.transform(X)
        if self.kind == "rbf":
            logits, _ = self._rbf_logits(Z)
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            if self.output_classes is not None:          # sum each class's outputs (subclasses)
                p = p @ np.eye(len(self.classes))[self.output_classes]
            return p
        dist, ind = self._get_index().query(Z, self.n_neighbors)
        w = kernel_weights(dist, self.kernel)
        p = np.einsum("ij,ijc->ic", w, self.label_vectors[ind].astype(np.float64))
        return p / p.sum(axis=1, keepdims=True)

    def _output_class(self, column: int) -> int:
        return column if self.output_classes is None else int(self.output_classes[column])

    def predict(self, X) -> np.ndarray:
        """Most probable class per row (ties: the first class)."""
        return self.classes[np.argmax(self.predict_proba(X), axis=1)]

    def explain(self, X, k: int = 3) -> list[dict]:
        """Per row: the ``k`` nearest prototypes, their distances, class distributions (or
        label vectors), labels and the transfer-set rows each stands for.

        For ``kind="tree"`` (``k`` is ignored): the most probable root-to-leaf path, each inner
        node on it with its probability of going right and the branch taken, and the leaf
        with its path probability and class distribution.
        """
        if self.kind == "tree":
            return self._explain_tree(X)
        Z = self.transform(X)
        k = min(int(k), self.prototypes.shape[0])
        if k < 1:
            raise ValueError("k must be >= 1.")
        dist, ind = self._get_index().query(Z, k)
        preds = self.predict(X)
        out = []
        for i in range(Z.shape[0]):
            protos = []
            for j, d in zip(ind[i], dist[i], strict=True):
                members = (self.cell_indices[self.cell_indptr[j]:self.cell_indptr[j + 1]]
                           if self.cell_indptr is not None else np.empty(0, dtype=np.int64))
                protos.append({"prototype": int(j), "distance": float(d),
                               "label": self.classes[self._output_class(int(np.argmax(self.label_vectors[j])))].item(),
                               "label_vector": self.label_vectors[j].tolist(),
                               "support_row": None if self.support is None else int(self.support[j]),
                               "training_rows": members.tolist()})
            out.append({"prediction": preds[i].item(), "prototypes": protos})
        return out

    def _explain_tree(self, X) -> list[dict]:
        mu = self.route(X)
        Z = self.transform(X).astype(np.float64)
        preds = self.predict(X)
        out = []
        for i, leaf in enumerate(np.argmax(mu, axis=1)):
            node, path = 0, []
            for level in range(self.depth):
                go_right = (int(leaf) >> (self.depth - 1 - level)) & 1      # leaf index bits, root first
                a = self.gate_betas[node] * (Z[i] @ self.gate_weights[node].astype(np.float64) + self.gate_biases[node])
                path.append({"node": node, "p_right": float(_sigmoid(a)), "branch": "right" if go_right else "left"})
                node = 2 * node + 1 + go_right
            dist = self.leaf_distributions[leaf]
            out.append({"prediction": preds[i].item(), "leaf": int(leaf), "path_probability": float(mu[i, leaf]),
                        "leaf_label": self.classes[int(np.argmax(dist))].item(),
                        "leaf_distribution": dist.tolist(), "path": path})
        return out

    # -- persistence -------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write ``student.json`` + ``arrays.npz`` into directory ``path``; returns it."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in _ARRAY_FIELDS if getattr(self, name) is not None}
        if self.dtype == "float16":
            arrays.update({k: v.astype(np.float16) for k, v in arrays.items() if k in _FLOAT_FIELDS})
        if self.classes.dtype.kind in "US":
            classes = {"dtype": "str", "values": [str(c) for c in self.classes]}
        elif self.classes.dtype.kind in "iub":
            classes = {"dtype": "int", "values": [int(c) for c in self.classes]}
        elif self.classes.dtype.kind == "f":
            classes = {"dtype": "float", "values": [float(c) for c in self.classes]}
        else:
            raise TypeError(f"classes of dtype {self.classes.dtype} cannot be saved; use str, int or float labels.")
        np.savez(directory / _ARRAYS, **arrays)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind, "space": self.space,
                "metric": self.metric, "n_neighbors": self.n_neighbors, "kernel": self.kernel, "gamma": self.gamma,
                "index": self.index, "bound": self.bound, "classes": classes, "dtype": self.dtype,
                "shapes": {k: list(v.shape) for k, v in arrays.items()}, "meta": self.meta,
                "size_bytes": self.size_bytes,
                "versions": {"nnkd": package_version("nnkd"), "numpy": np.__version__}}
        if self.kind == "tree":
            meta.update(depth=self.depth, inference=self.inference)
        write_metadata(directory, _META, meta, [_ARRAYS])
        return directory


def load_student(path) -> Student:
    """Load a student written by :meth:`Student.save`, checking format, checksums and shapes.

    Raises
    ------
    FileNotFoundError, ValueError
    """
    directory = Path(path)
    meta = read_metadata(directory, _META, FORMAT, FORMAT_VERSION, "student")
    meta_path = directory / _META
    if _ARRAYS not in meta["files"]:
        raise ValueError(f"{meta_path} does not list {_ARRAYS}.")
    with np.load(directory / _ARRAYS, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    unknown = set(arrays) - set(_ARRAY_FIELDS)
    if unknown or any(list(arrays[k].shape) != meta["shapes"].get(k) for k in arrays):
        raise ValueError(f"{directory / _ARRAYS} does not match the shapes recorded in {meta_path}.")
    classes = meta["classes"]
    dtype = {"str": str, "int": np.int64, "float": np.float64}.get(classes.get("dtype"))
    if dtype is None:
        raise ValueError(f"{meta_path}: unknown classes dtype {classes.get('dtype')!r}.")
    tree = {"depth": meta.get("depth"), "inference": meta.get("inference", "max_path")} if meta["kind"] == "tree" else {}
    return Student(classes=np.array(classes["values"], dtype=dtype), kind=meta["kind"], space=meta["space"],
                   metric=meta["metric"], n_neighbors=int(meta["n_neighbors"]), kernel=meta["kernel"],
                   gamma=meta["gamma"], index=meta["index"], bound=meta["bound"], meta=meta.get("meta", {}),
                   dtype=meta.get("dtype", "float32"), **tree, **arrays)
