"""``kind="rbf"``: a learned linear projection and RBF prototypes (ProtoNN's model).

``logits = sum_j Z_j exp(-gamma^2 |W x - b_j|^2)`` over all prototypes ``b_j`` with label
vectors ``Z_j``; probabilities are ``softmax(logits)``, summed per class when outputs are
pseudo-subclasses (``output_classes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nnkd.index import make_index
from nnkd.student._base import choice_param, float_array, positive_param, register_kind
from nnkd.student._prototypes import PrototypeEvidence
from nnkd.student._storage import stored_bytes


def projection_size_bytes(n_prototypes: int, n_dims: int, n_features: int, n_outputs: int, subclasses: bool,
                          dtype: str) -> int:
    """Bytes of a projection student of these shapes at ``dtype``: prototypes, label vectors
    and projection (int8 scales included), gamma (4 bytes) and, with pseudo-subclasses, one
    int32 class code per output."""
    shapes = ((n_prototypes, n_dims), (n_prototypes, n_outputs), (n_dims, n_features))
    return (stored_bytes([np.empty(s, np.float32) for s in shapes], dtype) + 4
            + (4 * n_outputs if subclasses else 0))


@register_kind
@dataclass(kw_only=True, eq=False)
class ProjectionStudent(PrototypeEvidence):
    """Projection + RBF prototypes classifier (``kind="rbf"``).

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
    prototypes : ndarray of shape (n_prototypes, n_dims), float32
        In the projected space.
    label_vectors : ndarray of shape (n_prototypes, n_outputs), float32
    projection : ndarray of shape (n_dims, n_features), float32
        ``W``: raw input rows are mapped to ``x @ W.T``.
    gamma : float
        RBF width (> 0).
    output_classes : ndarray of int64, default=None
        The class of each output column (LELP pseudo-subclasses); ``None``: one output per class.
    support, cell_indptr, cell_indices : ndarray of int64, default=None
        As :class:`~nnkd.student.PrototypeStudent` (cells in the projected space).
    dtype, bound, meta
        See :class:`~nnkd.student.Student`.
    """

    kind: ClassVar[str] = "rbf"
    FLOAT_ARRAYS: ClassVar[tuple[str, ...]] = ("prototypes", "label_vectors", "projection")
    ARRAYS: ClassVar[dict[str, str]] = {"prototypes": "float", "label_vectors": "float", "projection": "float",
                                         "output_classes": "int", "support": "int", "cell_indptr": "int",
                                         "cell_indices": "int"}
    PARAMS: ClassVar[dict] = {"gamma": (positive_param(), True), "space": (choice_param(["projection"]), False)}

    label_vectors: np.ndarray
    projection: np.ndarray
    gamma: float
    output_classes: np.ndarray | None = None

    def _validate(self) -> None:
        if self.classes is None:
            raise ValueError("a classifier student needs classes.")
        self._check_evidence()
        m, d = self.prototypes.shape
        n_out = len(self.classes)
        if self.output_classes is not None:
            oc = np.asarray(self.output_classes)
            if (oc.ndim != 1 or oc.dtype.kind not in "iu" or oc.size == 0 or oc.min() < 0 or oc.max() >= n_out
                    or np.unique(oc).size != n_out):
                raise ValueError(f"output_classes must be a vector of class codes covering 0..{n_out - 1}.")
            self.output_classes = oc.astype(np.int64)
            n_out = oc.size
        self.label_vectors = float_array(self.label_vectors, "label_vectors", (m, n_out))
        self.projection = float_array(self.projection, "projection")
        if self.projection.ndim != 2 or self.projection.shape[0] != d:
            raise ValueError(f"projection has shape {self.projection.shape}; expected ({d}, n_features).")
        if not (isinstance(self.gamma, (int, float, np.floating)) and np.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"gamma={self.gamma!r} must be a finite number > 0.")
        self.gamma = float(self.gamma)

    @property
    def n_features_in(self) -> int:
        return self.projection.shape[1]

    @property
    def size_bytes(self) -> int:
        return projection_size_bytes(self.prototypes.shape[0], self.prototypes.shape[1], self.n_features_in,
                                     self.label_vectors.shape[1], self.output_classes is not None, self.dtype)

    def expects(self) -> str:
        return f"raw input rows: {self.n_features_in} values per instance (projected by the student)"

    def transform(self, X) -> np.ndarray:
        """Rows mapped to the prototypes' space, ndarray of shape (n_queries, n_dims), float32."""
        return np.ascontiguousarray(self.check_input(X) @ self.projection.T, dtype=np.float32)

    def _proba(self, X) -> np.ndarray:
        Z = self.transform(X).astype(np.float64)
        P = self.prototypes.astype(np.float64)
        d2 = np.maximum((Z * Z).sum(1)[:, None] - 2 * Z @ P.T + (P * P).sum(1)[None], 0.0)
        logits = np.exp(-(self.gamma ** 2) * d2) @ self.label_vectors.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        if self.output_classes is not None:          # sum each class's outputs (subclasses)
            p = p @ np.eye(len(self.classes))[self.output_classes]
        return p

    def explain(self, X, k: int = 3) -> list[dict]:
        """Per row: ``{"prediction", "prototypes": [...]}`` with the ``k`` prototypes nearest
        to the projected row (``min(k, n_prototypes)``), as :meth:`PrototypeStudent.explain`;
        ``label_vector`` holds the prototype's RBF label vector."""
        if self._index is None:
            self._index = make_index("exact").fit(self.prototypes)
        return self._explain_nearest(X, self.transform(X), k, self._index)

    def _prototype_labels(self, j: int) -> dict:
        column = int(np.argmax(self.label_vectors[j]))
        code = column if self.output_classes is None else int(self.output_classes[column])
        return {"label": self.classes[code].item(), "label_vector": self.label_vectors[j].tolist()}

    def example_inputs(self, n: int, rng: np.random.Generator) -> np.ndarray:
        # Cost does not depend on the values (a dense GEMM): standard normal rows will do.
        return rng.standard_normal((n, self.n_features_in)).astype(np.float32)

    def _params(self) -> dict:
        return {"space": "projection", "gamma": self.gamma}

    def _describe(self) -> dict:
        return {**self._params(), "n_prototypes": self.n_prototypes, "prototype_dims": self.prototypes.shape[1]}

    @classmethod
    def _from_saved(cls, meta, arrays, common, directory, keys) -> ProjectionStudent:
        return cls(**common, gamma=meta.get("gamma"),
                   **{k: arrays.get(k) for k in cls.ARRAYS})
