"""``SklearnTeacher``: a scikit-learn classifier as a teacher (distil a forest or a boosted
model into prototypes); an unfitted one is fitted on the labelled transfer rows first."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from nnkd.teachers._base import Teacher

#: Probabilities are clipped here before the log, so a zero probability is a finite logit.
_MIN_PROBA = 1e-12


class SklearnTeacher(Teacher):
    """Soft labels from a scikit-learn classifier's ``predict_proba``.

    Parameters
    ----------
    estimator : classifier
        Fitted, or unfitted: a distiller then fits a clone on its ``fit(X, y)`` rows
        (:meth:`prepare`), so ``NNDistiller(SklearnTeacher(RandomForestClassifier()))`` is
        one scikit-learn estimator that learns from labels and ships a compressed student.
    embedding : "transform" or None, default=None
        ``"transform"``: the embedding of a :class:`~sklearn.pipeline.Pipeline` is the output
        of every step but the last (for ``space="teacher"``); ``None``: no embedding.
    batch_size : int, default=1024
    progress : bool, default=False

    Notes
    -----
    The teacher's logits are ``log(max(predict_proba, 1e-12))``, so its tempered soft labels
    are ``p ** (1 / T)`` renormalised (``T = 1`` gives ``predict_proba`` back). Class ``j`` is
    ``estimator.classes_[j]``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from nnkd.teachers import SklearnTeacher
    >>> X, y = load_iris(return_X_y=True)
    >>> teacher = SklearnTeacher(LogisticRegression(max_iter=500)).prepare(X, y)
    >>> teacher.soft_labels(X[:1]).argmax(axis=1).tolist()
    [0]
    """

    def __init__(self, estimator, *, embedding: str | None = None, batch_size: int = 1024, progress: bool = False):
        if not is_classifier(estimator) or not hasattr(estimator, "predict_proba"):
            raise TypeError(f"SklearnTeacher needs a scikit-learn classifier with predict_proba; got "
                            f"{type(estimator).__name__}.")
        if embedding not in (None, "transform"):
            raise ValueError(f"embedding={embedding!r} must be None or 'transform'.")
        self.estimator, self.embedding = estimator, embedding
        self.batch_size, self.progress = batch_size, progress

    def _fitted(self) -> bool:
        try:
            check_is_fitted(self.estimator)
        except NotFittedError:
            return False
        return True

    def prepare(self, X, y) -> SklearnTeacher:
        """This teacher if its estimator is fitted, else a new one around a clone fitted on ``(X, y)``.

        Raises
        ------
        ValueError
            The estimator is unfitted and ``y`` is ``None``.
        """
        if self._fitted():
            return self
        if y is None:
            raise ValueError(f"the teacher's {type(self.estimator).__name__} is not fitted, so the distiller requires y "
                             "to be passed, but the target y is None: pass the labels to fit it on the transfer rows, "
                             "or pass a fitted estimator.")
        fitted = clone(self.estimator).fit(X, y)
        return SklearnTeacher(fitted, embedding=self.embedding, batch_size=self.batch_size, progress=self.progress)

    @property
    def classes_(self) -> np.ndarray:
        """The fitted estimator's classes (class ``j`` is output ``j``)."""
        check_is_fitted(self.estimator)
        return self.estimator.classes_

    def _logits_batch(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self.estimator)
        return np.log(np.maximum(self.estimator.predict_proba(X), _MIN_PROBA))

    def _embed_batch(self, X: np.ndarray) -> np.ndarray:
        if self.embedding is None or not hasattr(self.estimator, "steps") or len(self.estimator.steps) < 2:
            raise ValueError("this SklearnTeacher has no embedding: use SklearnTeacher(pipeline, "
                             "embedding='transform') with a Pipeline, or space='input'/'projection'.")
        return self.estimator[:-1].transform(X)
