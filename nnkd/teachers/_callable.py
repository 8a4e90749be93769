"""``CallableTeacher``: any pair of functions (NumPy in, NumPy out) as a teacher."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnkd.teachers._base import Teacher


class CallableTeacher(Teacher):
    """A teacher from plain callables.

    Parameters
    ----------
    embed : callable, default=None
        ``embed(X) -> (n, d)`` embeddings for a float32 batch ``X``.
    logits : callable
        ``logits(X) -> (n, n_classes)`` (unnormalised scores; ``soft_labels`` applies the
        tempered softmax).
    classifier_weights : array-like of shape (n_classes, n_dims), default=None
        Weights of the final linear layer mapping ``embed`` to ``logits`` (needed by LELP).
    temperature : float, default=1.0
    batch_size : int, default=1024
    progress : bool, default=False

    Examples
    --------
    >>> import numpy as np
    >>> from nnkd.teachers import CallableTeacher
    >>> t = CallableTeacher(logits=lambda X: np.c_[X[:, 0], -X[:, 0]])
    >>> t.soft_labels(np.array([[0.0], [10.0]])).round(3).tolist()
    [[0.5, 0.5], [1.0, 0.0]]
    """

    def __init__(self, *, logits: Callable, embed: Callable | None = None, classifier_weights=None,
                 temperature: float = 1.0, batch_size: int = 1024, progress: bool = False):
        if not callable(logits) or (embed is not None and not callable(embed)):
            raise TypeError("logits (and embed, when given) must be callables mapping an array to an array.")
        self._logits_fn, self._embed_fn = logits, embed
        self._weights = None if classifier_weights is None else np.atleast_2d(np.asarray(classifier_weights, np.float32))
        self.temperature, self.batch_size, self.progress = temperature, batch_size, progress

    def _logits_batch(self, X: np.ndarray) -> np.ndarray:
        return self._logits_fn(X)

    def classifier_weights(self) -> np.ndarray:
        if self._weights is None:
            raise TypeError("this CallableTeacher has no classifier_weights; pass classifier_weights=... (the final "
                            "linear layer's weight matrix).")
        return self._weights

    def _embed_batch(self, X: np.ndarray) -> np.ndarray:
        if self._embed_fn is None:
            raise ValueError("this CallableTeacher has no embed function; pass embed=... to use space='teacher'.")
        return self._embed_fn(X)
