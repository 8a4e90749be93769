"""``NNDistiller``: a teacher distilled into a compressed nearest-prototype student."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from nnkd._core.artifacts import import_optional
from nnkd._core.kernels import KERNELS
from nnkd._core.metrics import METRICS
from nnkd._core.threads import torch_threads
from nnkd._sklearn_compat import Interval, StrOptions, _fit_context, validate_data
from nnkd.distill._augment import make_augmenter
from nnkd.index import make_index
from nnkd.neighbors import MarginCondensedNN
from nnkd.student import DTYPES, ProjectionStudent, PrototypeStudent, Student, cell_layout

#: Prototypes used by ``space="projection"`` when no size budget is given.
DEFAULT_PROJECTION_PROTOTYPES = 256
#: Candidates of ``noise_scale="auto"``.
NOISE_GRID = (0.1, 0.3, 0.6, 1.0)
_AUTO_HOLDOUT = 0.15


def check_teacher(teacher) -> None:
    """``TypeError`` unless ``teacher`` has ``embed`` and ``soft_labels`` (an nnkd teacher)."""
    if teacher is None or not (hasattr(teacher, "soft_labels") and hasattr(teacher, "embed")):
        raise TypeError("teacher must be an nnkd teacher (TorchTeacher, CallableTeacher, SklearnTeacher or an object "
                        f"with embed and soft_labels); got {type(teacher).__name__}.")


def prepare_teacher(teacher, X: np.ndarray, y):
    """The teacher a distiller fits with: checked, then ``teacher.prepare(X, y)`` where it
    has one (a scikit-learn teacher is fitted on the labelled rows there)."""
    check_teacher(teacher)
    if y is not None:
        check_classification_targets(y)
    return teacher.prepare(X, y) if hasattr(teacher, "prepare") else teacher


def teacher_soft_labels(teacher, X: np.ndarray, temperature: float) -> np.ndarray:
    """The teacher's soft labels of ``X`` at ``temperature`` (float64), checked to be one
    distribution over at least 2 classes per row."""
    T = np.asarray(teacher.soft_labels(X, temperature), dtype=np.float64)
    if T.ndim != 2 or T.shape[0] != X.shape[0] or T.shape[1] < 2:
        raise ValueError(f"teacher soft labels have shape {T.shape}; expected ({X.shape[0]}, n_classes >= 2).")
    return T


def _cell_means(owner: np.ndarray, T: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Mean teacher distribution of each cell (an empty cell keeps its own row's)."""
    m = support.shape[0]
    sums = np.zeros((m, T.shape[1]))
    np.add.at(sums, owner, T)
    counts = np.bincount(owner, minlength=m)
    empty = counts == 0
    sums[empty] = T[support[empty]]
    counts[empty] = 1
    return sums / counts[:, None]


class NNDistiller(ClassifierMixin, BaseEstimator):
    """Distil a teacher into a small nearest-prototype student.

    ``fit(X_transfer)`` labels the transfer rows with the teacher's soft labels (temperature
    ``temperature``), condenses them with :class:`~nnkd.MarginCondensedNN` on the teacher's
    hard labels in the chosen space, and gives each prototype the mean teacher distribution
    of its Voronoi cell. ``space="projection"`` then learns a linear projection, the
    prototypes and their label vectors jointly (ProtoNN's model, RBF kernel) to match the
    teacher's distribution, starting from the condensed set.

    Parameters
    ----------
    teacher : nnkd.teachers.Teacher
        ``TorchTeacher``, ``CallableTeacher``, ``SklearnTeacher`` or any object with ``embed`` and
        ``soft_labels`` (and optionally ``prepare(X, y)``, called once at the start of ``fit``:
        an unfitted ``SklearnTeacher`` is fitted on the labelled rows there).
    space : {"input", "teacher", "projection"}, default="input"
        Where prototypes live: raw rows, teacher embeddings (the teacher is then needed at
        prediction time), or a learned projection of standardised rows.
    condenser : MarginCondensedNN, default=None
        Condensing for ``"input"``/``"teacher"`` (cloned; its ``max_prototypes`` is capped by
        the budget). Default: Hart's consistent condensing, which on digits keeps 32 teacher-space
        prototypes at 97.8 % with a bound of 0.26 where a budget-capped KSU net reaches 96.5 %
        (bound 0.88). ``space="projection"`` starts from a KSU net of the budget's size.
    n_neighbors : int, default=1
        Prototypes voting per query (``"input"``/``"teacher"``).
    kernel : str, default="uniform"
        Vote weights (see :class:`~nnkd.KernelKNNClassifier`).
    metric : {"euclidean", "manhattan", "chebyshev", "cosine"}, default="euclidean"
        Distance between rows (``"input"``/``"teacher"``); the metrics condensing accepts.
    index : str, default="exact"
        Search backend spec (:func:`nnkd.index.make_index`) of the condenser and of the student
        over its prototypes (``"input"``/``"teacher"``; a projection student is evaluated exactly).
    index_params : dict, default=None
        Build and query parameters of the backend.
    temperature : float, default=4.0
        Temperature of the teacher's soft labels (and of the KD loss).
    size_budget_kb : float, default=None
        Largest student size in kB (1000 bytes), every prediction parameter counted at ``dtype``.
    dtype : {"float32", "float16"}, default="float32"
        Storage type of the student's parameters; ``"float16"`` fits twice the parameters in a
        budget (rounded once after training; computation stays in float32).
    projection_dim : int, default=None
        Width of the learned projection (default ``min(n_features, 16)``).
    augment : {"noise", "mixup"} or callable, default=None
        ``"projection"`` only: perturbed copies of each batch labelled by the teacher on the
        fly (function matching, Beyer et al. 2022). A callable gets ``(batch, rng)`` in the
        standardised space and returns the perturbed batch.
    noise_scale : float or "auto", default=0.3
        Standard deviation of ``augment="noise"`` (standardised units). ``"auto"`` picks it
        from :data:`NOISE_GRID` by fidelity to the teacher on a held-out 15 % of the transfer
        rows (each candidate trained for a third of ``max_epochs``), then trains on all rows;
        the choice is in ``noise_scale_``. The best scale depends on the data (letter prefers
        0.3, usps 1.0).
    subclasses : int, default=None
        LELP (Loo et al. 2024) for binary and few-class teachers: split each class into this many
        pseudo-subclasses along the principal directions of the teacher's embeddings that its
        classifier ignores (:func:`~nnkd.distill.lelp_targets`; the teacher must expose
        ``classifier_weights()``). ``"projection"`` learns the subclass distribution and sums it
        per class; ``"input"``/``"teacher"`` condense on the subclass labels, so prototypes also
        cover the structure inside each class.
    alpha : float, default=0.0
        Weight of the cross-entropy on ``y`` (when given) against the KD loss.
    loss : {"kd", "slam"}, default="kd"
        ``"projection"`` only. ``"slam"``: Student-Label Mixing (Kontonis et al. 2023) for
        noisy teachers on unlabelled pools; ``y`` then labels a (small) validation subset,
        with ``-1`` marking unlabelled rows, from which the teacher's per-example accuracy
        ``alpha(x)`` (isotonic in its margin) and top-k width are estimated. Use it with
        ``temperature=1``.
    slam_coverage : float, default=0.95
        Share of validation rows whose true label must lie in the teacher's top-k.
    max_epochs : int, default=60
    lr : float, default=0.01
    batch_size : int, default=256
    delta : float, default=0.05
        Confidence of ``bound_``.
    random_state : int, RandomState instance or None, default=None
        Seeds condensing, the held-out split and training (``None``: fresh randomness).
    n_jobs : int, default=None
        Threads for condensing and for PyTorch training (joblib semantics: ``None`` is 1,
        ``-1`` all cores).
    verbose : bool, default=False
        Progress bars (stderr).

    Attributes
    ----------
    teacher_ : nnkd.teachers.Teacher
        The teacher the fit used (``teacher.prepare(X, y)``).
    student_ : nnkd.student.Student
        The inference artifact (``student_.save(dir)``; NumPy only).
    classes_ : ndarray of shape (n_classes,)
    prototypes_ : ndarray of shape (n_prototypes, n_dims)
    size_bytes_ : int
    bound_ : float or None
        Compression bound on the error against the teacher's labels (``"input"`` and
        ``"teacher"``; ``None`` for a learned projection, which is not a sample compression).
    training_fidelity_ : float
        Top-1 agreement with the teacher on the transfer set.
    loss_curve_ : list of float
        ``"projection"``: mean loss per epoch.

    References
    ----------
    .. [1] S. Gupta et al., "ProtoNN: Compressed and accurate kNN for resource-scarce
       devices", ICML 2017.
    .. [2] L. Beyer et al., "Knowledge distillation: A good teacher is patient and
       consistent", CVPR 2022.
    """

    _parameter_constraints: dict = {
        "teacher": [object],
        "space": [StrOptions({"input", "teacher", "projection"})],
        "condenser": [MarginCondensedNN, None],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "kernel": [StrOptions(set(KERNELS))],
        "metric": [StrOptions(set(METRICS))],
        "index": [str],
        "index_params": [dict, None],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "size_budget_kb": [Interval(Real, 0, None, closed="neither"), None],
        "dtype": [StrOptions({"float32", "float16"})],
        "projection_dim": [Interval(Integral, 1, None, closed="left"), None],
        "augment": [StrOptions({"noise", "mixup"}), callable, None],
        "noise_scale": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "subclasses": [Interval(Integral, 2, None, closed="left"), None],
        "alpha": [Interval(Real, 0, 1, closed="both")],
        "loss": [StrOptions({"kd", "slam"})],
        "slam_coverage": [Interval(Real, 0, 1, closed="right")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "delta": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "verbose": ["boolean"],
    }

    def __init__(self, teacher=None, *, space="input", condenser=None, n_neighbors=1, kernel="uniform",
                 metric="euclidean", index="exact", index_params=None, temperature=4.0, size_budget_kb=None, dtype="float32", projection_dim=None,
                 augment=None, noise_scale=0.3, subclasses=None, alpha=0.0, loss="kd", slam_coverage=0.95,
                 max_epochs=60, lr=0.01, batch_size=256, delta=0.05, random_state=None, n_jobs=None, verbose=False):
        self.teacher = teacher
        self.space = space
        self.condenser = condenser
        self.n_neighbors = n_neighbors
        self.kernel = kernel
        self.metric = metric
        self.index = index
        self.index_params = index_params
        self.temperature = temperature
        self.size_budget_kb = size_budget_kb
        self.dtype = dtype
        self.projection_dim = projection_dim
        self.augment = augment
        self.noise_scale = noise_scale
        self.subclasses = subclasses
        self.alpha = alpha
        self.loss = loss
        self.slam_coverage = slam_coverage
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.delta = delta
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    # -- helpers ------------------------------------------------------------------------------
    def _budget_floats(self) -> int | None:
        return None if self.size_budget_kb is None else int(self.size_budget_kb * 1000 // DTYPES[self.dtype])

    def _student_input(self, X):
        return self.teacher_.embed(X) if self.space == "teacher" else X

    # -- fitting ------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Distil the teacher on the transfer rows ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Transfer set (labelled by the teacher).
        y : array-like of shape (n_samples,), default=None
            True labels, used only for ``alpha`` mixing; their classes must match the
            teacher's outputs in sorted order.

        Returns
        -------
        self : NNDistiller
        """
        X = validate_data(self, X, dtype=np.float32, order="C")
        self.teacher_ = prepare_teacher(self.teacher, X, y)
        # One draw from random_state seeds everything below: an int gives the same student
        # every time, None fresh randomness (never a silent 0).
        self._seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        T = teacher_soft_labels(self.teacher_, X, self.temperature)
        n_classes = T.shape[1]
        y_codes = None
        if y is not None:
            y = column_or_1d(y)
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"y has {y.shape[0]} labels for {X.shape[0]} rows.")
            # With loss="slam", -1 marks unlabelled rows (scikit-learn's semi-supervised
            # convention); otherwise every row is labelled, so classes {-1, 1} stay two classes.
            unlabelled = (y == -1) if self.loss == "slam" and y.dtype.kind in "iuf" else np.zeros(len(y), dtype=bool)
            labelled = ~unlabelled
            self.classes_, codes = np.unique(y[labelled], return_inverse=True)
            y_codes = np.full(len(y), -1, dtype=np.int64)
            y_codes[labelled] = codes
            if len(self.classes_) != n_classes:
                raise ValueError(f"the teacher has {n_classes} outputs but y has {len(self.classes_)} classes; "
                                 "they must match (class i = teacher output i).")
        else:
            self.classes_ = np.arange(n_classes)
        if self.loss == "slam" and (self.space != "projection" or y_codes is None or (y_codes >= 0).sum() < 2):
            raise ValueError("loss='slam' needs space='projection' and y labelling at least 2 validation rows "
                             "(-1 for unlabelled rows).")
        hard = T.argmax(axis=1)
        self.lelp_ = None
        if self.subclasses is not None:
            from nnkd.distill._lelp import LELPSplit

            if self.space == "projection" and (self.loss == "slam" or self.alpha > 0):
                raise ValueError("subclasses (LELP) cannot be combined with loss='slam' or alpha > 0.")
            H = self.teacher_.embed(X)
            self.lelp_ = LELPSplit(self.teacher_.classifier_weights(), self.subclasses).fit(H, hard, n_classes)
            T_out = self.lelp_.targets(H, T)
        if self.space == "projection":
            Z = X
            student = self._fit_projection(X, T if self.lelp_ is None else T_out, hard, y_codes)
        else:
            Z = H if self.space == "teacher" and self.lelp_ is not None else self._student_input(X)
            # Condense on subclass labels with LELP (finer cells), keep class distributions.
            student = self._fit_condensed(Z, T, hard if self.lelp_ is None else T_out.argmax(axis=1))
        self.student_ = student
        self.prototypes_ = student.prototypes
        self.size_bytes_ = student.size_bytes
        self.bound_ = student.bound
        pred = np.argmax(student.predict_proba(Z), axis=1)
        self.training_fidelity_ = float(np.mean(pred == hard))
        return self

    def _condenser(self, cap: int | None, target: int | None = None) -> MarginCondensedNN:
        if target is not None:                    # the projection's start: a net of exactly `target` rows
            cond = MarginCondensedNN(method="ksu")
        elif self.condenser is not None:
            cond = clone(self.condenser)
        else:
            cond = MarginCondensedNN(method="hart")
        params = {"metric": self.metric, "n_jobs": self.n_jobs, "random_state": self._seed, "index": self.index,
                  "index_params": self.index_params}
        if target is not None:
            params["target_size"] = target
        elif cap is not None:
            current = cond.max_prototypes
            params["max_prototypes"] = cap if current is None or isinstance(current, float) else min(current, cap)
        return cond.set_params(**params)

    def _fit_condensed(self, Z: np.ndarray, T: np.ndarray, hard: np.ndarray) -> Student:
        Z = np.ascontiguousarray(Z, dtype=np.float32)
        floats = self._budget_floats()
        cap = None
        if floats is not None:
            cap = floats // (Z.shape[1] + T.shape[1])
            if cap < 1:
                raise ValueError(f"size_budget_kb={self.size_budget_kb} cannot hold one prototype of "
                                 f"{Z.shape[1] + T.shape[1]} floats; raise it.")
        cond = self._condenser(cap).fit(Z, hard)
        owner = cond.index_.query(Z, 1)[1][:, 0]
        m = cond.support_.shape[0]
        indptr, indices = cell_layout(owner, m)
        student = PrototypeStudent(
            classes=self.classes_, prototypes=Z[cond.support_], label_vectors=_cell_means(owner, T, cond.support_),
            space=self.space, metric=self.metric, n_neighbors=min(self.n_neighbors, m), kernel=self.kernel,
            index=self.index, index_params=self.index_params or {}, support=cond.support_, cell_indptr=indptr,
            cell_indices=indices, bound=float(cond.bound_), dtype=self.dtype,
            meta={"teacher_temperature": self.temperature, "condenser": cond.method})
        if self.dtype == "float32":              # the same prototypes: search the condenser's index
            student.attach_index(cond.index_)
        return student

    def _fit_projection(self, X, T, hard, y_codes) -> Student:
        torch = import_optional("torch", "torch==2.13.0", "NNDistiller(space='projection')",
                                hint="the CPU build; see README")

        from nnkd.distill._projection import ProtoNNModule, train_prototypes

        n, d = X.shape
        L = T.shape[1]
        k = min(d, self.projection_dim or 16)
        floats = self._budget_floats()
        m = DEFAULT_PROJECTION_PROTOTYPES
        if floats is not None:
            # Per prototype k coordinates and L label-vector entries; then W (k x d), gamma and,
            # with LELP, the class of each of the L outputs.
            m = (floats - k * d - 1 - (0 if self.lelp_ is None else L)) // (k + L)
            if m < 2:
                raise ValueError(f"size_budget_kb={self.size_budget_kb} leaves room for {max(m, 0)} prototypes "
                                 f"after the {k}x{d} projection; raise it or lower projection_dim.")
        m = min(m, n)
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale == 0] = 1.0
        Xs = ((X - mean) / scale).astype(np.float32)
        # PCA start: the top-k right singular vectors of the standardised rows.
        W0 = np.linalg.svd(Xs[: min(n, 20000)], full_matrices=False)[2][:k].astype(np.float32)
        Xp = Xs @ W0.T
        cond = self._condenser(None, target=m).set_params(metric="euclidean").fit(Xp, hard)
        support = cond.support_
        owner = cond.index_.query(Xp, 1)[1][:, 0]
        P = _cell_means(owner, T, support)
        nearest = cond.index_.query(Xp, 2)[0]
        scale_d = float(np.median(nearest[nearest > 0])) if (nearest > 0).any() else 1.0
        module = ProtoNNModule(W0, Xp[support], np.log(P + 1e-2).astype(np.float32) + 5.0, 1.0 / scale_d)
        slam = None
        if self.loss == "slam":
            from nnkd.distill._slam import slam_estimates

            T1 = np.asarray(self.teacher_.soft_labels(X, 1.0))
            val = y_codes >= 0
            slam = slam_estimates(T1[val], y_codes[val], T1, self.slam_coverage)
        def relabel(xa):
            raw = xa * scale + mean
            soft = self.teacher_.soft_labels(raw, self.temperature)
            return soft if self.lelp_ is None else self.lelp_.targets(self.teacher_.embed(raw), soft)

        def train(mod, rows, epochs, noise):
            augment = None if self.augment is None else self._augmenter(noise)
            return train_prototypes(
                mod, Xs[rows], T[rows], temperature=self.temperature, relabel=relabel if augment else None,
                augment=augment, y_codes=None if y_codes is None else y_codes[rows], alpha=self.alpha,
                epochs=epochs, lr=self.lr, batch_size=self.batch_size, seed=self._seed,
                slam=None if slam is None else (slam[0][rows], slam[1][rows]), progress=self.verbose)

        with torch_threads(torch, self.n_jobs):
            noise = self.noise_scale
            if self.augment == "noise" and noise == "auto":
                noise = self._choose_noise(module, Xs, hard, train)
            self.noise_scale_ = noise if self.augment == "noise" else None
            self.loss_curve_ = train(module, np.arange(n), self.max_epochs, noise)
        W, B, Z, gamma = module.export()
        # Fold the standardisation into the projection and the prototypes: W((x - mean) / scale) - b
        # = (W / scale) x - (b + (W / scale) mean), so the artifact stores no mean or scale and the
        # 2 * n_features floats they would cost go to prototypes.
        W64 = W.astype(np.float64) / scale[None, :]
        B = (B.astype(np.float64) + W64 @ mean.astype(np.float64)).astype(np.float32)
        W = W64.astype(np.float32)
        owner = make_index("exact").fit(B).query(X @ W.T, 1)[1][:, 0]      # cells in the learned space
        indptr, indices = cell_layout(owner, m)
        return ProjectionStudent(classes=self.classes_, prototypes=B, label_vectors=Z,
                       gamma=gamma, projection=W, support=support,
                       output_classes=None if self.lelp_ is None else self.lelp_.subclass_class,
                       cell_indptr=indptr, cell_indices=indices, bound=None,
                       dtype=self.dtype, meta={"teacher_temperature": self.temperature, "projection_dim": k,
                             "noise_scale": self.noise_scale_,
                             "augment": self.augment if isinstance(self.augment, str) or self.augment is None
                             else "callable"})

    def _choose_noise(self, module, Xs, hard, train) -> float:
        """The candidate of NOISE_GRID whose student agrees best with the teacher on held-out rows."""
        import copy

        import torch

        rng = np.random.default_rng(self._seed)
        perm = rng.permutation(Xs.shape[0])
        n_val = max(1, int(_AUTO_HOLDOUT * Xs.shape[0]))
        val, fit_rows = perm[:n_val], perm[n_val:]
        scores = []
        for noise in NOISE_GRID:
            candidate = copy.deepcopy(module)
            train(candidate, fit_rows, max(1, self.max_epochs // 3), noise)
            with torch.no_grad():
                out = candidate(torch.from_numpy(Xs[val]))
            if self.lelp_ is not None:                 # class probability = sum over its subclasses
                out = torch.softmax(out, 1) @ torch.from_numpy(
                    np.eye(len(self.classes_), dtype=np.float32)[self.lelp_.subclass_class])
            pred = out.argmax(1).numpy()
            scores.append(float(np.mean(pred == hard[val])))
        self.noise_scores_ = dict(zip(NOISE_GRID, scores, strict=True))
        return NOISE_GRID[int(np.argmax(scores))]

    def _augmenter(self, noise_scale):
        return make_augmenter(self.augment, noise_scale)

    # -- inference ----------------------------------------------------------------------------
    def predict_proba(self, X):
        """Student class probabilities, ndarray of shape (n_queries, n_classes)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        return self.student_.predict_proba(self._student_input(X))

    def predict(self, X):
        """Student's class per row."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def explain(self, X, k: int = 3) -> list[dict]:
        """Nearest prototypes of each row: distances, labels, label vectors and the transfer
        rows they stand for (see :meth:`nnkd.student.Student.explain`)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        return self.student_.explain(self._student_input(X), k)

    def to_student(self) -> Student:
        """The fitted student (NumPy only): ``to_student().save(dir)``, then ``nnkd serve dir``.

        A ``space="teacher"`` student takes teacher embeddings (``teacher.embed(X)``), not raw rows.
        """
        check_is_fitted(self)
        return self.student_

    def fidelity(self, X) -> float:
        """Top-1 agreement of the student with the teacher on ``X``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        teacher = np.argmax(self.teacher_.soft_labels(X, 1.0), axis=1)
        return float(np.mean(np.argmax(self.predict_proba(X), axis=1) == teacher))
