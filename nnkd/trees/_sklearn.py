"""``SoftDecisionTreeClassifier``: the scikit-learn estimator around :class:`SoftDecisionTree`."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from nnkd._core.artifacts import import_optional
from nnkd._sklearn_compat import Interval, StrOptions, _fit_context, validate_data
from nnkd._core.threads import torch_threads
from nnkd.student import TREE_INFERENCE, TreeStudent
from nnkd.student._tree import MAX_DEPTH
#: Rows of ``soft_targets`` must sum to 1 within this tolerance (float32 softmax outputs do).
SUM_TOLERANCE = 1e-3


def check_soft_targets(soft_targets, n_samples: int) -> np.ndarray:
    """``soft_targets`` as float32 rows that are probability distributions, or a ``ValueError``.

    Rows are renormalised after the check, so float32 rounding never leaks into the loss.
    """
    T = np.asarray(soft_targets)
    if T.ndim != 2 or T.shape[0] != n_samples or T.shape[1] < 2:
        raise ValueError(f"soft_targets has shape {T.shape}; expected (n_samples={n_samples}, n_classes >= 2), "
                         "one distribution over the classes per row of X.")
    if not np.issubdtype(T.dtype, np.number):
        raise TypeError(f"soft_targets must hold real numbers; got dtype {T.dtype}.")
    T = T.astype(np.float64)
    if not np.isfinite(T).all():
        raise ValueError("soft_targets contains NaN or infinity; pass probability distributions.")
    sums = T.sum(axis=1)
    bad = np.flatnonzero((T < 0).any(axis=1) | (np.abs(sums - 1) > SUM_TOLERANCE))
    if bad.size:
        raise ValueError(f"soft_targets rows must be probability distributions (non-negative, summing to 1); "
                         f"{bad.size} row(s) are not (first: row {bad[0]}, sum {sums[bad[0]]:.6g}). "
                         "Apply a softmax to logits first.")
    return np.ascontiguousarray(T / sums[:, None], dtype=np.float32)


class SoftDecisionTreeClassifier(ClassifierMixin, BaseEstimator):
    """A soft binary decision tree (Frosst & Hinton 2017), trained on hard labels or on a
    teacher's soft targets.

    Each inner node ``i`` sends a row right with probability ``p_i(x) = sigmoid(beta_i (x w_i +
    b_i))``; each leaf ``l`` holds a class distribution ``Q_l = softmax(phi_l)``. Training
    minimises ``-sum_l P^l(x) sum_k T_k(x) log Q_lk`` (``P^l``: the product of the branch
    probabilities on the path to ``l``; ``T``: one-hot labels or soft targets) plus the balance
    penalty ``-sum_i lambda_i (0.5 log alpha_i + 0.5 log(1 - alpha_i))``, where ``alpha_i`` is
    the share of the probability mass reaching node ``i`` that goes right and ``lambda_i =
    penalty * penalty_decay ** -depth_i``. ``alpha_i`` is an exponentially decaying running
    average whose window doubles per level (see ``ema``). Inputs are standardised first
    (``standardize=True``).

    Parameters
    ----------
    depth : int, default=8
        Levels of inner nodes: ``2**depth - 1`` filters and ``2**depth`` leaves.
    beta : "learned" or float, default=1.0
        Inverse temperature of the gates: one fixed value, or ``"learned"``: a positive scalar
        per inner node (starting at 1) learned with the rest. With Adam, learned betas sharpen
        the gates early and the tree overfits, so a fixed value is the default.
    penalty : float, default=0.1
        ``lambda`` at the root.
    penalty_decay : float, default=2.0
        ``lambda`` is divided by this at each level (the paper's ``2^-d``).
    ema : float, default=0.9
        Decay of the root's running average of its split; a node at depth ``d`` uses
        ``1 - (1 - ema) * 2**-d`` (a window of ``2**d / (1 - ema)`` batches). The penalty reads
        its slope at the average and takes its direction from the current batch's rows.
    inference : {"max_path", "mixture"}, default="max_path"
        Predict with the leaf of greatest path probability (the paper's choice: one readable
        path per decision) or with the path-weighted mixture of all leaves.
    standardize : bool, default=True
        Standardise features (mean 0, standard deviation 1; constant features keep scale 1);
        the student stores the statistics.
    max_epochs : int, default=40
    lr : float, default=0.01
        Adam's learning rate (cosine schedule to 0).
    batch_size : int, default=128
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights and the batch order (torch's global RNG is left untouched;
        ``None``: fresh randomness).
    n_jobs : int, default=None
        PyTorch threads for training (joblib semantics: ``None`` is 1, ``-1`` all cores).
    verbose : bool, default=False
        Progress bar over epochs (stderr).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    student_ : nnkd.student.TreeStudent
        The ``kind="tree"`` artifact; predictions go through it (NumPy), so a saved and reloaded
        student predicts exactly what the estimator predicts.
    loss_curve_ : list of float
        Mean objective per epoch.
    size_bytes_ : int
        Bytes of the prediction parameters (float32).

    See Also
    --------
    nnkd.distill.TreeDistiller : fit the tree to a teacher's soft labels.

    References
    ----------
    .. [1] N. Frosst and G. Hinton, "Distilling a Neural Network Into a Soft Decision Tree",
       CEx workshop, AI*IA 2017 (arXiv:1711.09784).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from nnkd import SoftDecisionTreeClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> tree = SoftDecisionTreeClassifier(depth=2, max_epochs=150, batch_size=32, random_state=0).fit(X, y)
    >>> round(tree.score(X, y), 2) >= 0.9
    True
    """

    _parameter_constraints: dict = {
        "depth": [Interval(Integral, 1, MAX_DEPTH, closed="both")],
        "beta": [StrOptions({"learned"}), Interval(Real, 0, None, closed="neither")],
        "penalty": [Interval(Real, 0, None, closed="left")],
        "penalty_decay": [Interval(Real, 0, None, closed="neither")],
        "ema": [Interval(Real, 0, 1, closed="left")],
        "inference": [StrOptions(set(TREE_INFERENCE))],
        "standardize": ["boolean"],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "verbose": ["boolean"],
    }

    def __init__(self, depth=8, *, beta=1.0, penalty=0.1, penalty_decay=2.0, ema=0.9, inference="max_path",
                 standardize=True, max_epochs=40, lr=0.01, batch_size=128, random_state=None, n_jobs=None,
                 verbose=False):
        self.depth = depth
        self.beta = beta
        self.penalty = penalty
        self.penalty_decay = penalty_decay
        self.ema = ema
        self.inference = inference
        self.standardize = standardize
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, soft_targets=None,
            augment: Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]] | None = None):
        """Fit the tree to hard labels ``y`` or to target distributions ``soft_targets``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Class labels. With ``soft_targets`` they only name the classes (column ``j`` of
            ``soft_targets`` is the ``j``-th of the sorted unique labels) and may be omitted
            (classes ``0 .. n_classes - 1``).
        soft_targets : array-like of shape (n_samples, n_classes), default=None
            A distribution over the classes per row, e.g. a teacher's soft labels; replaces
            the one-hot encoding of ``y`` (fitting with ``one_hot(y)`` equals fitting with ``y``).
        augment : callable, default=None
            ``augment(X_batch, rng) -> (X_extra, T_extra)``: extra rows (input units) and their
            target distributions added to every mini-batch, e.g. perturbed copies labelled by a
            teacher (:class:`~nnkd.distill.TreeDistiller` builds one).

        Returns
        -------
        self : SoftDecisionTreeClassifier
        """
        # torch is not a dependency of nnkd: a clear message instead of a bare ModuleNotFoundError.
        torch = import_optional("torch", "torch==2.13.0", "SoftDecisionTreeClassifier.fit", hint="the CPU build; see README")

        from nnkd.trees._module import SoftDecisionTree
        from nnkd.trees._training import train_tree

        if soft_targets is None:
            X, y = validate_data(self, X, y, dtype=np.float32, order="C")
            check_classification_targets(y)
            self.classes_, codes = np.unique(y, return_inverse=True)
            T = np.eye(len(self.classes_), dtype=np.float32)[codes]
        else:
            X = validate_data(self, X, dtype=np.float32, order="C")
            T = check_soft_targets(soft_targets, X.shape[0])
            if y is None:
                self.classes_ = np.arange(T.shape[1])
            else:
                y = column_or_1d(y, warn=True)
                check_classification_targets(y)
                if y.shape[0] != X.shape[0]:
                    raise ValueError(f"y has {y.shape[0]} labels for {X.shape[0]} rows.")
                self.classes_ = np.unique(y)
                if len(self.classes_) != T.shape[1]:
                    raise ValueError(f"soft_targets has {T.shape[1]} columns but y has {len(self.classes_)} "
                                     "classes; they must match (column j = j-th sorted class), or omit y.")
        if len(self.classes_) < 2:
            raise ValueError("SoftDecisionTreeClassifier needs at least 2 classes; y has only one class.")
        if self.standardize:
            mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
            scale = X.std(axis=0, dtype=np.float64).astype(np.float32)
            scale[~(scale > 0)] = 1.0
        else:
            mean = scale = None
        Xs = X if mean is None else np.ascontiguousarray((X - mean) / scale, dtype=np.float32)

        def augment_std(xb, rng):                    # the callback sees input units, the tree standardised ones
            raw = xb if mean is None else xb * scale + mean
            xa, ta = augment(raw, rng)
            xa = np.asarray(xa, dtype=np.float32)
            return (xa if mean is None else (xa - mean) / scale), ta

        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with torch.random.fork_rng(devices=[]), torch_threads(torch, self.n_jobs):
            torch.manual_seed(seed)
            module = SoftDecisionTree(X.shape[1], T.shape[1], self.depth, self.beta)
            self.loss_curve_ = train_tree(
                module, Xs, T, penalty=self.penalty, penalty_decay=self.penalty_decay, ema=self.ema,
                epochs=self.max_epochs, lr=self.lr, batch_size=self.batch_size, seed=seed,
                augment=None if augment is None else augment_std, progress=self.verbose)
        self.student_ = TreeStudent(classes=self.classes_, depth=self.depth, inference=self.inference,
                                    input_mean=mean, input_scale=scale, **module.export(),
                                meta={"penalty": self.penalty, "penalty_decay": self.penalty_decay,
                                      "ema": self.ema, "beta": self.beta, "max_epochs": self.max_epochs,
                                      "soft_targets": soft_targets is not None})
        self.size_bytes_ = self.student_.size_bytes
        return self

    # -- inference ----------------------------------------------------------------------------
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, ndarray of shape (n_samples, n_classes), float64: the leaf
        distribution of the most probable path (``"max_path"``) or the mixture."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        return self.student_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """Class of each row, ndarray of shape (n_samples,)."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def route(self, X) -> np.ndarray:
        """Path probability of every leaf, ndarray of shape (n_samples, 2**depth), float64."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        return self.student_.route(X)

    def explain(self, X, k: int = 3) -> list[dict]:
        """Per row: the ``k`` most probable root-to-leaf paths (node, probability of going right,
        branch taken) and their leaves' class distributions (see :meth:`nnkd.student.TreeStudent.explain`)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        return self.student_.explain(X, k)

    # -- export -------------------------------------------------------------------------------
    def to_student(self) -> TreeStudent:
        """The NumPy-only ``kind="tree"`` :class:`~nnkd.student.Student` (``.save(dir)``)."""
        check_is_fitted(self)
        return self.student_

    def plot_tree(self, path, **kwargs) -> Path:
        """Draw the tree into an image file: each inner node's filter (an image for image data)
        and each leaf's class distribution; keyword arguments as :func:`nnkd.trees.plot_tree`."""
        check_is_fitted(self)
        from nnkd.trees._plot import plot_tree

        return plot_tree(self.student_, path, **kwargs)
