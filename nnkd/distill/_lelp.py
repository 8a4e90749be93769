"""LELP: pseudo-subclass targets from linear projections of the teacher's embeddings.

With two or three classes a teacher's soft labels say little (one or two numbers per row), so
distillation transfers little of how the teacher generalises. Loo et al. (2024) read more out
of the teacher's final-layer embedding: per class, the principal directions of that class's
embeddings *after removing the span of the classifier's weight rows* (the part of the embedding
that moves the logits) are informative structure the teacher learned but the probabilities
hide. Each class is split into pseudo-subclasses along those directions and the student learns
the finer distribution over subclasses; its class probability is the sum over its subclasses.

Construction used here (our reading of the paper, written out so that it can be checked):

1. ``P = I - W^+ W`` projects embeddings onto the null space of the classifier weights
   ``W`` (``n_classes x n_dims``).
2. For class ``c`` (rows whose label, or the teacher's top class, is ``c``): PCA of
   ``(h - mu_c) P`` gives directions ``v_1, v_2, ...``; ``a_j(x) = (h(x) - mu_c) P v_j / sigma_j``
   is the standardised coordinate along direction ``j``.
3. Each direction splits into two pseudo-subclasses (its positive and negative side): the
   subclass scores of class ``c`` are ``[a_1, -a_1, a_2, -a_2, ...]`` (the first
   ``n_subclasses``), and ``q(j | c, x) = softmax(scores / temperature)``.
4. ``target(x)[c, j] = p_teacher(c | x) * q(j | c, x)``: the class marginals are the teacher's
   distribution exactly; only the split within a class is new.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from nnkd._core.metrics import check_points


def lelp_targets(embeddings, teacher_proba, classifier_weights, *, n_subclasses: int = 4, labels=None,
                 temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-subclass soft targets (LELP, Loo et al. 2024) for few-class distillation.

    Parameters
    ----------
    embeddings : array-like of shape (n_samples, n_dims)
        The teacher's final-layer embeddings (the input of its classifier layer), e.g.
        ``TorchTeacher.embed(X)``.
    teacher_proba : array-like of shape (n_samples, n_classes)
        The teacher's class probabilities on the same rows.
    classifier_weights : array-like of shape (n_classes, n_dims)
        Weight matrix of the teacher's final linear layer (for a binary teacher with one
        logit, pass that single row).
    n_subclasses : int, default=4
        Pseudo-subclasses per class (``ceil(n_subclasses / 2)`` principal directions each).
    labels : array-like of shape (n_samples,), default=None
        Class codes ``0 .. n_classes - 1`` defining each class's rows for the PCA; default: the
        teacher's top class.
    temperature : float, default=1.0
        Softness of the split of a class into its subclasses.

    Returns
    -------
    targets : ndarray of shape (n_samples, n_classes * n_subclasses)
        Column ``c * n_subclasses + j`` is subclass ``j`` of class ``c``; rows sum to 1.
    subclass_class : ndarray of int64, shape (n_classes * n_subclasses,)
        The class of each column (``targets`` summed by it gives ``teacher_proba``).

    References
    ----------
    .. [1] N. Loo, F. Iliopoulos, W. Hu, E. Vee, "Linear projections of teacher embeddings for
       few-class distillation", 2024 (arXiv:2409.20449).
    """
    H = check_points(embeddings, "embeddings").astype(np.float64)
    T = np.asarray(teacher_proba, dtype=np.float64)
    W = np.atleast_2d(np.asarray(classifier_weights, dtype=np.float64))
    n, dim = H.shape
    if T.ndim != 2 or T.shape[0] != n or T.shape[1] < 2:
        raise ValueError(f"teacher_proba has shape {T.shape}; expected ({n}, n_classes >= 2).")
    if not np.isfinite(T).all() or (T < 0).any() or not np.allclose(T.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("teacher_proba must hold finite probabilities whose rows sum to 1.")
    if W.shape[1] != dim or not np.isfinite(W).all():
        raise ValueError(f"classifier_weights has shape {W.shape}; expected (n_classes, {dim}) finite values "
                         "(the rows of the teacher's last linear layer).")
    if not isinstance(n_subclasses, Integral) or n_subclasses < 2:
        raise ValueError(f"n_subclasses={n_subclasses!r} must be an integer >= 2.")
    if not isinstance(temperature, Real) or temperature <= 0:
        raise ValueError(f"temperature={temperature!r} must be > 0.")
    L = T.shape[1]
    if labels is None:
        codes = T.argmax(axis=1)
    else:
        codes = np.asarray(labels)
        if codes.shape != (n,) or codes.dtype.kind not in "iu" or codes.min() < 0 or codes.max() >= L:
            raise ValueError(f"labels must be {n} integer class codes in [0, {L}).")
    split = LELPSplit(W, int(n_subclasses), temperature).fit(H, codes, L)
    return split.targets(H, T), split.subclass_class


class LELPSplit:
    """The fitted per-class directions of :func:`lelp_targets`, reusable on new rows (e.g. the
    perturbed copies labelled on the fly during distillation)."""

    def __init__(self, classifier_weights: np.ndarray, n_subclasses: int, temperature: float = 1.0):
        self.W = np.atleast_2d(np.asarray(classifier_weights, dtype=np.float64))
        self.n_subclasses = n_subclasses
        self.temperature = temperature

    def fit(self, H: np.ndarray, codes: np.ndarray, n_classes: int) -> LELPSplit:
        dim = H.shape[1]
        # Projector onto the null space of W: the embedding directions the logits cannot see.
        self.null_ = np.eye(dim) - np.linalg.pinv(self.W) @ self.W
        n_dirs = (self.n_subclasses + 1) // 2
        self.means_, self.bases_ = [], []
        for c in range(n_classes):
            rows = codes == c
            if rows.sum() < 2:
                raise ValueError(f"class {c} has {int(rows.sum())} rows; LELP needs at least 2 per class.")
            mu = H[rows].mean(axis=0)
            _, sing, Vt = np.linalg.svd((H[rows] - mu) @ self.null_, full_matrices=False)
            sigma = sing[:n_dirs] / np.sqrt(rows.sum() - 1)
            if Vt.shape[0] < n_dirs or sigma[-1] <= 1e-9 * max(sigma[0], 1e-300):
                raise ValueError(f"class {c}'s embeddings span fewer than {n_dirs} directions outside the "
                                 "classifier's weights; lower n_subclasses.")
            V = Vt[:n_dirs]
            # Fix the SVD's arbitrary sign (largest component positive) so subclass j means the
            # same side of the same direction from run to run.
            V *= np.sign(V[np.arange(n_dirs), np.abs(V).argmax(axis=1)])[:, None]
            self.means_.append(mu)
            # One matrix per class: null-space projection, direction and standardisation together.
            self.bases_.append(self.null_ @ V.T / sigma)
        self.subclass_class = np.repeat(np.arange(n_classes), self.n_subclasses)
        return self

    def targets(self, H: np.ndarray, T: np.ndarray) -> np.ndarray:
        """``target[c * S + j] = T[c] * q(j | c, x)`` for embeddings ``H`` and class probabilities ``T``."""
        H = np.asarray(H, dtype=np.float64)
        n, S = H.shape[0], self.n_subclasses
        out = np.empty((n, len(self.means_) * S))
        for c, (mu, basis) in enumerate(zip(self.means_, self.bases_, strict=True)):
            A = (H - mu) @ basis                                     # standardised coordinates
            scores = np.stack([A, -A], axis=2).reshape(n, -1)[:, :S] / self.temperature
            scores -= scores.max(axis=1, keepdims=True)
            q = np.exp(scores)
            out[:, c * S:(c + 1) * S] = T[:, [c]] * (q / q.sum(axis=1, keepdims=True))
        return out
