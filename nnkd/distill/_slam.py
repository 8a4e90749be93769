"""Estimating SLaM's per-example teacher accuracy ``alpha(x)`` and top-k width ``k(x)`` on a
small labelled validation set (Kontonis et al., NeurIPS 2023)."""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression


def _margin(prob: np.ndarray) -> np.ndarray:
    top2 = -np.sort(-prob, axis=1)[:, :2]
    return top2[:, 0] - top2[:, 1]


def slam_estimates(teacher_prob_val: np.ndarray, y_val: np.ndarray, teacher_prob: np.ndarray,
                   coverage: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """``alpha(x)`` and ``k(x)`` for the rows of ``teacher_prob``.

    ``alpha`` is the teacher's accuracy as a function of its margin (top-1 minus top-2
    probability), fitted by isotonic regression on the validation rows; ``k`` is the smallest
    number of top teacher classes that holds the true label on a ``coverage`` share of the
    validation rows (one value for all rows).

    Parameters
    ----------
    teacher_prob_val : ndarray of shape (n_val, n_classes)
    y_val : ndarray of shape (n_val,)
        Class codes ``0 .. n_classes - 1``.
    teacher_prob : ndarray of shape (n, n_classes)
    coverage : float, default=0.95

    Returns
    -------
    alpha : ndarray of shape (n,), float32, in [1 / n_classes, 1]
    k : ndarray of shape (n,), int64, in [1, n_classes]
    """
    teacher_prob_val, teacher_prob = np.asarray(teacher_prob_val), np.asarray(teacher_prob)
    y_val = np.asarray(y_val)
    if teacher_prob_val.shape[0] != y_val.shape[0] or y_val.shape[0] < 2:
        raise ValueError("SLaM needs at least 2 labelled validation rows, one label per teacher row.")
    L = teacher_prob.shape[1]
    correct = (teacher_prob_val.argmax(axis=1) == y_val).astype(float)
    iso = IsotonicRegression(y_min=1.0 / L, y_max=1.0, out_of_bounds="clip").fit(_margin(teacher_prob_val), correct)
    alpha = iso.predict(_margin(teacher_prob)).astype(np.float32)
    rank_of_true = (teacher_prob_val > teacher_prob_val[np.arange(len(y_val)), y_val][:, None]).sum(axis=1)
    topk_acc = np.array([(rank_of_true < k).mean() for k in range(1, L + 1)])
    k = int(np.argmax(topk_acc >= coverage) + 1) if (topk_acc >= coverage).any() else L
    return alpha, np.full(teacher_prob.shape[0], k, dtype=np.int64)
