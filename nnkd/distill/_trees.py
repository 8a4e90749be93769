"""``TreeDistiller``: a teacher distilled into a soft decision tree."""

from __future__ import annotations

from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, column_or_1d

from nnkd._sklearn_compat import Interval, StrOptions, _fit_context, validate_data
from nnkd.condense import holdout_bound
from nnkd.distill._augment import make_augmenter
from nnkd.distill._distiller import prepare_teacher, teacher_soft_labels
from nnkd.student import TreeStudent
from nnkd.trees import SoftDecisionTreeClassifier


#: Candidate (temperature, alpha) pairs of ``temperature="auto"``/``alpha="auto"`` with
#: labels: the teacher alone, and the labels mixed in at higher temperatures (alpha=0.7, T=8
#: won a validation-split search on letter, a tuning-group dataset, in an earlier round).
TREE_RECIPES = ((1.0, 0.0), (4.0, 0.5), (8.0, 0.7))
#: Temperatures tried without labels.
UNLABELLED_TEMPERATURES = (1.0, 4.0)
MIN_HOLDOUT = 10


def tree_candidates(temperature, alpha, *, labelled: bool) -> list[dict]:
    """The candidate recipes of a TreeDistiller's parameters (fixed ones are kept as given);
    with labels the labels-only tree comes first."""
    if labelled:
        pairs = [(t, a) for t, a in TREE_RECIPES
                 if (temperature == "auto" or t == temperature) and (alpha == "auto" or a == alpha)]
        if not pairs:                             # fixed values off the grid: use them as given
            pairs = [(TREE_RECIPES[0][0] if temperature == "auto" else float(temperature),
                      TREE_RECIPES[0][1] if alpha == "auto" else float(alpha))]
    else:
        temps = UNLABELLED_TEMPERATURES if temperature == "auto" else (float(temperature),)
        pairs = [(t, 0.0) for t in temps]
    out = [{"source": "teacher", "temperature": float(t), "alpha": float(a)} for t, a in pairs]
    return ([{"source": "labels", "temperature": None, "alpha": 1.0}] if labelled else []) + out


class TreeDistiller(ClassifierMixin, BaseEstimator):
    """Distil a teacher into a soft decision tree (Frosst & Hinton 2017).

    ``fit(X_transfer)`` labels the transfer rows with the teacher's soft labels at
    ``temperature`` and fits ``tree`` to them (``SoftDecisionTreeClassifier.fit(X,
    soft_targets=T)``). The transfer rows can be the teacher's training rows (the paper's
    setting), unlabelled rows, or data impressions (:class:`DataImpressions`) when no data is
    left.

    Parameters left at ``"auto"`` (``temperature``, ``alpha``) are chosen inside ``fit`` on a
    held-out ``validation_fraction`` of the rows among :data:`TREE_RECIPES`. With labels
    ``y``, the tree fitted to the labels alone (same depth and settings) is a candidate too,
    and accuracy on the held-out rows decides: a distilled tree is kept only where it is at
    least as accurate there; otherwise ``fit`` falls back to the labels
    (``fell_back_to_labels_``). Without labels, fidelity to the teacher decides. Trees are
    not refitted on the held-out rows, which then bound the tree's error (``bound_``).

    Parameters
    ----------
    teacher : nnkd.teachers.Teacher
        ``TorchTeacher``, ``CallableTeacher``, ``SklearnTeacher`` or any object with ``embed`` and
        ``soft_labels`` (and optionally ``prepare(X, y)``, called once at the start of ``fit``:
        an unfitted ``SklearnTeacher`` is fitted on the labelled rows there).
    tree : SoftDecisionTreeClassifier, default=None
        The student's settings (cloned; default ``SoftDecisionTreeClassifier()``).
    temperature : float or "auto", default="auto"
        Temperature of the teacher's soft labels (the leaves are fitted to them as they are).
    alpha : float or "auto", default="auto"
        Weight of the true labels ``y`` in the targets of the transfer rows (``"auto"``
        without ``y``: 0): each row is
        fitted to ``alpha * one_hot(y) + (1 - alpha) * teacher`` (the leaf loss is linear in
        the target, so this is Hinton et al.'s weighted sum of the hard and the soft
        cross-entropy); perturbed copies are labelled by the teacher alone. With a high
        ``temperature`` the soft part carries which classes the teacher finds alike while
        the labels keep the tree on the right class; where trees underfit (many classes), the
        similarity structure also helps the tree find its splits. Needs ``y``.
    augment : {"noise", "mixup"}, callable or None, default="noise"
        Add perturbed copies of every mini-batch, labelled by the teacher on the fly
        (function matching, Beyer et al. 2022): Gaussian noise of ``noise_scale`` standard
        deviations per feature, mixup, or ``fn(batch, rng)`` on standardised rows.
    noise_scale : float, default=0.3
    augment_copies : int, default=1
        Perturbed copies of every mini-batch. A tree fitted to a few thousand rows overfits
        them within a few epochs, so what it learns from the teacher beyond the training rows
        comes from these copies; several per batch transfer more, at the cost of a longer fit.
    validation_fraction : float, default=0.1
        Rows held out to choose the recipe and bound the tree's error (no selection and no
        bound when that is fewer than 10 rows).
    delta : float, default=0.05
        Confidence of ``bound_``.

    Attributes
    ----------
    teacher_ : nnkd.teachers.Teacher
        The teacher the fit used (``teacher.prepare(X, y)``).
    tree_ : SoftDecisionTreeClassifier
        The fitted tree.
    student_ : nnkd.student.TreeStudent
        Its ``kind="tree"`` artifact (NumPy only).
    classes_ : ndarray of shape (n_classes,)
    size_bytes_ : int
    training_fidelity_ : float
        Top-1 agreement with the teacher on the transfer rows.
    recipe_ : dict
        The chosen ``source`` (``"teacher"`` or ``"labels"``), ``temperature``, ``alpha``,
        and every candidate with its held-out score.
    fell_back_to_labels_ : bool
        Whether the tree fitted to the labels alone was at least as accurate on the held-out
        rows as every distilled one, and so is the student.
    bound_ : float or None
        Held-out (Clopper–Pearson) bound on the tree's error rate against ``y`` (against the
        teacher without labels), with a union bound over the candidates; ``None`` without a
        held-out split.
    bound_target_ : {"labels", "teacher"} or None

    References
    ----------
    .. [1] N. Frosst and G. Hinton, "Distilling a Neural Network Into a Soft Decision Tree",
       arXiv:1711.09784, 2017.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from nnkd.distill import TreeDistiller
    >>> from nnkd.teachers import train_mlp_teacher
    >>> from nnkd.trees import SoftDecisionTreeClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> teacher = train_mlp_teacher(X, y, hidden=(16,), epochs=40, random_state=0)
    >>> tree = SoftDecisionTreeClassifier(depth=2, max_epochs=60, batch_size=32, random_state=0)
    >>> dist = TreeDistiller(teacher, tree=tree)
    >>> dist.fit(X).fidelity(X) > 0.85
    True
    """

    _parameter_constraints: dict = {
        "teacher": [object],
        "tree": [SoftDecisionTreeClassifier, None],
        "temperature": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "alpha": [Interval(Real, 0, 1, closed="both"), StrOptions({"auto"})],
        "augment": [StrOptions({"noise", "mixup"}), callable, None],
        "noise_scale": [Interval(Real, 0, None, closed="left")],
        "augment_copies": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "delta": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(self, teacher=None, *, tree=None, temperature="auto", alpha="auto", augment="noise",
                 noise_scale=0.3, augment_copies=1, validation_fraction=0.1, delta=0.05):
        self.teacher = teacher
        self.tree = tree
        self.temperature = temperature
        self.alpha = alpha
        self.augment = augment
        self.noise_scale = noise_scale
        self.augment_copies = augment_copies
        self.validation_fraction = validation_fraction
        self.delta = delta

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the tree to the teacher's soft labels on the transfer rows ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Class labels of the rows: they name the classes (class ``j`` = teacher output
            ``j`` = ``j``-th sorted label; default ``0 .. n_classes - 1``) and, with
            ``alpha > 0``, are mixed into the targets.

        Returns
        -------
        self : TreeDistiller
        """
        X = validate_data(self, X, dtype=np.float32, order="C")
        self.teacher_ = teacher = prepare_teacher(self.teacher, X, y)
        T1 = teacher_soft_labels(teacher, X, 1.0)
        codes = None
        if y is not None:
            y = column_or_1d(y, warn=True)
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"y has {y.shape[0]} labels for {X.shape[0]} rows.")
            classes, codes = np.unique(y, return_inverse=True)
            if len(classes) != T1.shape[1]:
                raise ValueError(f"the teacher has {T1.shape[1]} outputs but y has {len(classes)} classes; "
                                 "they must match (class j = teacher output j), or omit y.")
        elif self.alpha != "auto" and self.alpha > 0:
            raise ValueError(f"alpha={self.alpha} mixes the true labels into the targets; pass y, or use alpha=0.")
        candidates = tree_candidates(self.temperature, self.alpha, labelled=y is not None)
        tree = clone(self.tree) if self.tree is not None else SoftDecisionTreeClassifier()
        # The split is seeded by the tree's random_state, so a seeded tree gives a seeded fit.
        seed = int(check_random_state(tree.random_state).randint(np.iinfo(np.int32).max))
        perm = np.random.default_rng(seed).permutation(X.shape[0])
        n_val = int(round(self.validation_fraction * X.shape[0]))
        if n_val < MIN_HOLDOUT or X.shape[0] - n_val < 2:
            n_val = 0
        val, rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        if n_val == 0:                                # nothing to choose on: the first teacher recipe
            candidates = [c for c in candidates if c["source"] == "teacher"][:1]
        truth = T1.argmax(1) if y is None else codes
        fitted, log = [], []
        for cand in candidates:
            fit_tree = self._fit_candidate(clone(tree), X, y, codes, rows, cand)
            score = None
            if n_val:
                score = float(np.mean(np.argmax(fit_tree.student_.predict_proba(X[val]), axis=1) == truth[val]))
            fitted.append(fit_tree)
            log.append({**cand, "validation_score": score})
        # Ties go to the earlier candidate: the labels-only tree comes first, so a distilled
        # tree must be strictly more accurate on the held-out rows to be kept.
        best = 0 if n_val == 0 else max(range(len(log)), key=lambda i: (log[i]["validation_score"], -i))
        chosen = candidates[best]
        self.tree_ = fitted[best]
        self.classes_ = self.tree_.classes_ if y is None else classes
        self.student_ = self.tree_.student_
        self.fell_back_to_labels_ = chosen["source"] == "labels"
        self.recipe_ = {**chosen, "validation_rows": int(n_val), "validation_score": log[best]["validation_score"],
                        "score": "accuracy" if y is not None else "fidelity", "candidates": log}
        self.bound_ = self.bound_target_ = None
        if n_val:
            errors = int(round((1 - log[best]["validation_score"]) * n_val))
            self.bound_ = float(holdout_bound(errors, n_val, self.delta, len(candidates)))
            self.bound_target_ = "labels" if y is not None else "teacher"
            self.student_.bound, self.student_.bound_kind = self.bound_, "held-out"
        self.student_.meta.update(
            teacher_temperature=chosen["temperature"], alpha=chosen["alpha"], source=chosen["source"],
            augment_copies=self.augment_copies, bound_target=self.bound_target_, bound_delta=self.delta,
            bound_candidates=len(candidates),
            augment=self.augment if self.augment is None or isinstance(self.augment, str) else "callable")
        self.size_bytes_ = self.student_.size_bytes
        tree_codes = np.argmax(self.student_.predict_proba(X), axis=1)
        self.training_fidelity_ = float(np.mean(tree_codes == T1.argmax(1)))   # the teacher's, not the mix
        return self

    def _fit_candidate(self, tree: SoftDecisionTreeClassifier, X, y, codes, rows, cand) -> SoftDecisionTreeClassifier:
        """One candidate tree on the training ``rows``: the labels alone, or the teacher's
        soft labels at the candidate's temperature with ``alpha`` of the labels mixed in."""
        Xr = X[rows]
        if cand["source"] == "labels":
            return tree.fit(Xr, y[rows])
        teacher, temperature = self.teacher_, cand["temperature"]
        T = teacher_soft_labels(teacher, Xr, temperature)
        if cand["alpha"] > 0:
            T = (1 - cand["alpha"]) * T + cand["alpha"] * np.eye(T.shape[1])[codes[rows]]
        augment = None
        if self.augment is not None:
            mean = Xr.mean(axis=0, dtype=np.float64)
            scale = Xr.std(axis=0, dtype=np.float64)
            scale[~(scale > 0)] = 1.0
            perturb = make_augmenter(self.augment, self.noise_scale, self.augment_copies)

            def augment(xb, rng):
                xa = (mean + scale * perturb((xb - mean) / scale, rng)).astype(np.float32)
                return xa, teacher.soft_labels(xa, temperature)

        return tree.fit(Xr, None if y is None else y[rows], soft_targets=T, augment=augment)

    # -- inference ----------------------------------------------------------------------------
    def _checked(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, dtype=np.float32, order="C", reset=False)

    def predict_proba(self, X) -> np.ndarray:
        """Tree class probabilities, ndarray of shape (n_samples, n_classes)."""
        X = self._checked(X)                          # before student_ is read: NotFittedError, not AttributeError
        return self.student_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """Tree's class per row."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def fidelity(self, X) -> float:
        """Top-1 agreement of the tree with the teacher on ``X``."""
        X = self._checked(X)
        teacher = np.argmax(self.teacher_.soft_labels(X, 1.0), axis=1)
        return float(np.mean(np.argmax(self.student_.predict_proba(X), axis=1) == teacher))

    def explain(self, X, k: int = 3) -> list[dict]:
        """The ``k`` most probable root-to-leaf paths of each row (see :meth:`nnkd.student.TreeStudent.explain`)."""
        X = self._checked(X)
        return self.student_.explain(X, k)

    def to_student(self) -> TreeStudent:
        """The NumPy-only ``kind="tree"`` student."""
        check_is_fitted(self)
        return self.student_

    def plot_tree(self, path, **kwargs) -> Path:
        """Draw the tree (keyword arguments as :func:`nnkd.trees.plot_tree`)."""
        check_is_fitted(self)
        return self.tree_.plot_tree(path, **kwargs)
