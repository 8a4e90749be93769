"""``kind="tree"``: Frosst & Hinton's soft decision tree, evaluated with NumPy.

Inner node ``i`` (breadth-first order, children ``2i + 1`` left and ``2i + 2`` right) sends a
row right with probability ``sigmoid(beta_i (w_i . x + b_i))``; a leaf's path probability is
the product along its path. ``inference="max_path"`` answers with the distribution of the
most probable leaf, ``"mixture"`` with the path-weighted average of all leaf distributions.
Inputs are standardised first (``input_mean``, ``input_scale``) when the tree has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nnkd._core.metrics import check_points
from nnkd.student._base import Student, choice_param, float_array, int_param, register_kind
from nnkd.student._prototypes import check_k
from nnkd.student._storage import stored_bytes

TREE_INFERENCE = ("max_path", "mixture")
#: Deepest tree a student may have (2**16 leaves is far beyond a tree a person can read).
MAX_DEPTH = 16


def _sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large ``|a|``."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


@register_kind
@dataclass(kw_only=True, eq=False)
class TreeStudent(Student):
    """Soft decision tree classifier (``kind="tree"``).

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
    depth : int
        Levels of inner nodes (1 to 16).
    gate_weights : ndarray of shape (2**depth - 1, n_features), float32
        Each inner node's filter (on standardised inputs), breadth-first order.
    gate_biases, gate_betas : ndarray of shape (2**depth - 1,), float32
        Biases and inverse temperatures of the inner nodes.
    leaf_distributions : ndarray of shape (2**depth, n_classes), float32
        Each leaf's class distribution, leaves left to right.
    inference : {"max_path", "mixture"}, default="max_path"
    input_mean, input_scale : ndarray of shape (n_features,), float32, default=None
        Standardisation applied before the gates.
    dtype, bound, meta
        See :class:`~nnkd.student.Student`.
    """

    kind: ClassVar[str] = "tree"
    FLOAT_ARRAYS: ClassVar[tuple[str, ...]] = ("gate_weights", "gate_biases", "gate_betas", "leaf_distributions",
                                               "input_mean", "input_scale")
    ARRAYS: ClassVar[dict[str, str]] = dict.fromkeys(FLOAT_ARRAYS, "float")
    PARAMS: ClassVar[dict] = {"depth": (int_param(1, MAX_DEPTH), True),
                              "inference": (choice_param(TREE_INFERENCE), False)}

    depth: int
    gate_weights: np.ndarray
    gate_biases: np.ndarray
    gate_betas: np.ndarray
    leaf_distributions: np.ndarray
    inference: str = "max_path"
    input_mean: np.ndarray | None = None
    input_scale: np.ndarray | None = None

    def _validate(self) -> None:
        if self.classes is None:
            raise ValueError("a classifier student needs classes.")
        if isinstance(self.depth, bool) or not isinstance(self.depth, (int, np.integer)) \
                or not 1 <= self.depth <= MAX_DEPTH:
            raise ValueError(f"depth={self.depth!r} must be an integer in [1, {MAX_DEPTH}].")
        self.depth = int(self.depth)
        if self.inference not in TREE_INFERENCE:
            raise ValueError(f"inference={self.inference!r} must be one of {TREE_INFERENCE}.")
        n_inner, n_leaves = 2 ** self.depth - 1, 2 ** self.depth
        self.gate_weights = check_points(self.gate_weights, "gate_weights")
        n_features = self.gate_weights.shape[1]
        expected = {"gate_weights": (n_inner, n_features), "gate_biases": (n_inner,), "gate_betas": (n_inner,),
                    "leaf_distributions": (n_leaves, len(self.classes))}
        for name, shape in expected.items():
            setattr(self, name, float_array(getattr(self, name), name, shape))
        if (self.leaf_distributions < 0).any() or not np.allclose(self.leaf_distributions.sum(axis=1), 1.0,
                                                                 atol=1e-3):
            raise ValueError("leaf_distributions must be non-negative with rows summing to 1.")
        for name in ("input_mean", "input_scale"):
            if getattr(self, name) is not None:
                setattr(self, name, float_array(getattr(self, name), name, (n_features,)))
        if self.input_scale is not None and (self.input_scale <= 0).any():
            raise ValueError("input_scale must be > 0.")

    @property
    def n_features_in(self) -> int:
        return self.gate_weights.shape[1]

    @property
    def size_bytes(self) -> int:
        return stored_bytes((getattr(self, n) for n in self.FLOAT_ARRAYS), self.dtype)

    def _standardised(self, X) -> np.ndarray:
        Z = self.check_input(X).astype(np.float64)
        if self.input_mean is not None:
            Z = (Z - self.input_mean) / self.input_scale
        return Z

    def route(self, X) -> np.ndarray:
        """Path probability of every leaf, ndarray of shape (n_queries, 2**depth), float64
        (rows sum to 1)."""
        Z = self._standardised(X)
        gates = _sigmoid(self.gate_betas * (Z @ self.gate_weights.T.astype(np.float64) + self.gate_biases))
        mu = np.ones((Z.shape[0], 1))
        for level in range(self.depth):
            right = gates[:, 2 ** level - 1:2 ** (level + 1) - 1]
            # children of the j-th node of a level are the (2j)-th and (2j+1)-th of the next
            mu = np.stack((mu * (1.0 - right), mu * right), axis=2).reshape(Z.shape[0], -1)
        return mu

    def _proba(self, X) -> np.ndarray:
        mu = self.route(X)
        leaves = self.leaf_distributions.astype(np.float64)
        if self.inference == "max_path":
            return leaves[np.argmax(mu, axis=1)]
        return mu @ leaves

    def check_neighbors(self, k) -> None:
        raise ValueError("this student is a soft decision tree (kind 'tree'): it has no prototypes, so it has no "
                         "nearest neighbours to return; its explanation is the decision path (Student.explain).")

    def explain(self, X, k: int = 3) -> list[dict]:
        """Per row: ``{"prediction", "paths": [...]}`` with the ``k`` most probable root-to-leaf
        paths (``min(k, 2**depth)``), most probable first; each gives the ``leaf``, its
        ``path_probability``, ``leaf_label``, ``leaf_distribution`` and the inner nodes on the
        ``path`` (node, probability of going right, branch taken)."""
        k = min(check_k(k, None), 2 ** self.depth)
        mu = self.route(X)
        Z = self._standardised(X)
        preds = self.predict(X)
        order = np.argsort(-mu, axis=1, kind="stable")[:, :k]
        return [{"prediction": preds[i].item(), "paths": [self._path(Z[i], int(leaf), mu[i, leaf]) for leaf in row]}
                for i, row in enumerate(order)]

    def _path(self, z: np.ndarray, leaf: int, probability: float) -> dict:
        node, path = 0, []
        for level in range(self.depth):
            go_right = (leaf >> (self.depth - 1 - level)) & 1      # leaf index bits, root first
            a = self.gate_betas[node] * (z @ self.gate_weights[node].astype(np.float64) + self.gate_biases[node])
            path.append({"node": node, "p_right": float(_sigmoid(a)), "branch": "right" if go_right else "left"})
            node = 2 * node + 1 + go_right
        dist = self.leaf_distributions[leaf]
        return {"leaf": leaf, "path_probability": float(probability),
                "leaf_label": self.classes[int(np.argmax(dist))].item(), "leaf_distribution": dist.tolist(),
                "path": path}

    def example_inputs(self, n: int, rng: np.random.Generator) -> np.ndarray:
        d = self.n_features_in
        mean = self.input_mean if self.input_mean is not None else np.zeros(d, dtype=np.float32)
        scale = self.input_scale if self.input_scale is not None else np.ones(d, dtype=np.float32)
        return np.ascontiguousarray(mean + scale * rng.standard_normal((n, d)), dtype=np.float32)

    def _params(self) -> dict:
        return {"depth": self.depth, "inference": self.inference}

    def _describe(self) -> dict:
        return {**self._params(), "n_leaves": 2 ** self.depth}

    @classmethod
    def _from_saved(cls, meta, arrays, common, directory, keys) -> TreeStudent:
        return cls(**common, depth=meta.get("depth"), inference=meta.get("inference", "max_path"),
                   **{k: arrays.get(k) for k in cls.ARRAYS})
