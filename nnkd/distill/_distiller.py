"""``NNDistiller``: a teacher distilled into a compressed nearest-prototype student."""

from __future__ import annotations

import copy
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from nnkd._core.artifacts import import_optional
from nnkd._core.kernels import KERNELS
from nnkd._core.metrics import METRICS
from nnkd._core.partitions import (
    as_row_partitions,
    first_row,
    is_dask_collection,
    labels_like,
    partition_blocks,
    partition_offsets,
)
from nnkd._core.threads import torch_threads
from nnkd._sklearn_compat import Interval, StrOptions, _fit_context, validate_data
from nnkd.condense import holdout_bound
from nnkd.distill._augment import make_augmenter
from nnkd.distill._recipe import (
    MIN_HOLDOUT,
    N_CHECKPOINTS,
    SHORT_SHARE,
    Recipe,
    auto_epochs,
    budget_prototypes,
    make_grid,
    staged_candidates,
)
from nnkd.index import make_index
from nnkd.neighbors import MarginCondensedNN
from nnkd.student import ProjectionStudent, PrototypeStudent, Student, cell_layout
from nnkd.student._storage import stored_bytes

#: Temperature of the condensed spaces' label vectors under ``temperature="auto"``: the
#: teacher's own probabilities, so ``predict_proba`` is as calibrated as the teacher.
CONDENSED_TEMPERATURE = 1.0
#: Training rows (and as many held-out rows) of the sample on which a projection student fitted
#: on a dask array chooses its recipe; the final run streams every row.
STREAM_SAMPLE_ROWS = 20_000


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


def _cell_sums(T_block: np.ndarray, owner_block: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    sums = np.zeros((m, T_block.shape[1]))
    np.add.at(sums, owner_block, np.asarray(T_block, dtype=np.float64))
    return sums, np.bincount(owner_block, minlength=m)


def partitioned_cell_means(owner: np.ndarray, T, support: np.ndarray) -> np.ndarray:
    """:func:`_cell_means` of a dask array ``T``: per-partition sums, added on the client."""
    import dask

    m = support.shape[0]
    offsets = partition_offsets(T)
    parts = [dask.delayed(_cell_sums, pure=True)(b, owner[offsets[i]:offsets[i + 1]], m)
             for i, b in enumerate(partition_blocks(T))]
    done = dask.compute(*parts)
    sums, counts = np.sum([d[0] for d in done], axis=0), np.sum([d[1] for d in done], axis=0)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        sums[empty] = np.asarray(T[np.sort(support[empty])].compute())[np.argsort(np.argsort(support[empty]))]
        counts[empty] = 1
    return sums / counts[:, None]


def da_argmax(P):
    """Row-wise argmax of a dask array (lazy)."""
    return P.argmax(axis=1)


class NNDistiller(ClassifierMixin, BaseEstimator):
    """Distil a teacher into a small nearest-prototype student.

    ``fit(X_transfer)`` labels the transfer rows with the teacher's soft labels, condenses them with :class:`~nnkd.MarginCondensedNN` on the teacher's
    hard labels in the chosen space, and gives each prototype the mean teacher distribution
    of its Voronoi cell. ``space="projection"`` then learns a linear projection, the
    prototypes and their label vectors jointly (ProtoNN's model, RBF kernel) to match the
    teacher's distribution, starting from the condensed set.

    For ``space="projection"`` the parameters left at ``"auto"`` (storage type, projection
    width, temperature, augmentation noise, training length) are chosen inside ``fit`` on a
    held-out ``validation_fraction`` of the transfer rows, by fidelity to the teacher of the
    student as it ships (see :mod:`nnkd.distill._recipe`); the choice is ``recipe_``. The
    student is not refitted on those rows, which then give ``bound_``, a held-out bound on
    its error with a union bound over every recipe and checkpoint it could have returned.

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
        the budget). Default: Hart's consistent condensing: in a teacher's embedding space the
        classes are well separated, so a consistent subset is small and its compression bound
        tight, where a budget-capped KSU net keeps a fixed size whatever the separation.
        ``space="projection"`` starts from a KSU net of the budget's size.
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
    temperature : float or "auto", default="auto"
        Temperature of the teacher's soft labels (and of the KD loss). ``"auto"``: chosen
        from ``_recipe.TEMPERATURES`` (``"projection"``); the teacher's own probabilities
        (1.0) for the condensed spaces' label vectors.
    size_budget_kb : float, default=None
        Largest student size in kB (1000 bytes), every prediction parameter counted at its
        storage type (int8 scales included).
    dtype : {"auto", "float32", "float16", "int8"}, default="auto"
        Storage type of the student's parameters, rounded once after training (computation
        stays in float32): ``"float16"`` fits twice the parameters in a budget, ``"int8"``
        about four times (one float32 scale per column). ``"auto"``: ``"projection"`` under a
        budget chooses among the three (more, coarser prototypes or fewer, finer ones);
        otherwise float32.
    projection_dim : int, "auto" or None, default="auto"
        Width of the learned projection: chosen from ``_recipe.PROJECTION_DIMS`` (capped by
        ``n_features``), or fixed (``None``: ``min(n_features, 16)``).
    augment : {"noise", "mixup"}, callable or None, default="noise"
        ``"projection"`` only: perturbed copies of each batch labelled by the teacher on the
        fly (function matching, Beyer et al. 2022; the teacher is called on every batch). A
        callable gets ``(batch, rng)`` in the standardised space and returns the perturbed
        batch. ``None``: the transfer rows only.
    noise_scale : float or "auto", default="auto"
        Standard deviation of ``augment="noise"`` (standardised units); ``"auto"``: chosen
        from ``_recipe.NOISE_GRID`` (the best scale depends on the data: letter prefers 0.3,
        usps 1.0).
    validation_fraction : float, default=0.1
        ``"projection"``: transfer rows held out to choose the recipe and the checkpoint and
        to bound the student's error (no selection and no bound when that is fewer than 10
        rows).
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
    max_epochs : int or "auto", default="auto"
        Training length of the projection student (the best of 10 held-out checkpoints is
        kept); ``"auto"``: about 16,000 optimiser steps, between 30 and 1,000 epochs.
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
        An upper bound on the student's error rate, holding with probability ``1 - delta``,
        clipped to 1 (``bound_vacuous_``). ``"input"``/``"teacher"``: the compression bound
        of the condensed set on its disagreement with the teacher's labels
        (``bound_kind_ = "compression"``). ``"projection"``: the held-out bound
        (``bound_kind_ = "held-out"``) on the error against ``y`` where the held-out rows are
        labelled, otherwise on disagreement with the teacher (``bound_target_``); ``None``
        when too few rows were held out.
    bound_kind_ : {"compression", "held-out"} or None
    bound_target_ : {"labels", "teacher"} or None
    bound_vacuous_ : bool or None
    recipe_ : dict or None
        ``"projection"``: the chosen ``dtype``, ``projection_dim``, ``n_prototypes``,
        ``temperature``, ``noise_scale``, ``epochs`` (of the kept checkpoint), its
        ``validation_fidelity``, and every candidate tried with its held-out fidelity.
    training_fidelity_ : float
        Top-1 agreement with the teacher on the transfer set.
    loss_curve_ : list of float
        ``"projection"``: mean loss per epoch of the final run.

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
        "temperature": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "size_budget_kb": [Interval(Real, 0, None, closed="neither"), None],
        "dtype": [StrOptions({"auto", "float32", "float16", "int8"})],
        "projection_dim": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "augment": [StrOptions({"noise", "mixup"}), callable, None],
        "noise_scale": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "subclasses": [Interval(Integral, 2, None, closed="left"), None],
        "alpha": [Interval(Real, 0, 1, closed="both")],
        "loss": [StrOptions({"kd", "slam"})],
        "slam_coverage": [Interval(Real, 0, 1, closed="right")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "delta": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "verbose": ["boolean"],
    }

    def __init__(self, teacher=None, *, space="input", condenser=None, n_neighbors=1, kernel="uniform",
                 metric="euclidean", index="exact", index_params=None, temperature="auto", size_budget_kb=None,
                 dtype="auto", projection_dim="auto", augment="noise", noise_scale="auto", validation_fraction=0.1,
                 subclasses=None, alpha=0.0, loss="kd", slam_coverage=0.95, max_epochs="auto", lr=0.01,
                 batch_size=256, delta=0.05, random_state=None, n_jobs=None, verbose=False):
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
        self.validation_fraction = validation_fraction
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
    def _student_input(self, X):
        return self.teacher_.embed(X) if self.space == "teacher" else X

    # -- fitting ------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Distil the teacher on the transfer rows ``X``.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            Transfer set (labelled by the teacher). A dask array (or dataframe) is distilled
            partition by partition on the active ``dask.distributed`` client (or in this
            process): the condensed spaces condense and merge the partitions; the projection
            space chooses its recipe on a sample of :data:`STREAM_SAMPLE_ROWS` training and
            held-out rows and streams every training row, one partition at a time, through
            the final run (see :mod:`nnkd.distill._stream`). ``loss="slam"`` and
            ``subclasses`` need an in-memory array.
        y : array-like of shape (n_samples,), default=None
            True labels, used only for ``alpha`` mixing; their classes must match the
            teacher's outputs in sorted order.

        Returns
        -------
        self : NNDistiller
        """
        if is_dask_collection(X):
            return self._fit_partitioned(X, y)
        X = validate_data(self, X, dtype=np.float32, order="C")
        self.teacher_ = prepare_teacher(self.teacher, X, y)
        # One draw from random_state seeds everything below: an int gives the same student
        # every time, None fresh randomness (never a silent 0).
        self._seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        condensed_t = CONDENSED_TEMPERATURE if self.temperature == "auto" else self.temperature
        T = teacher_soft_labels(self.teacher_, X, condensed_t)
        n_classes = T.shape[1]
        y_codes = self._set_classes(y, X.shape[0], n_classes)
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
        self.recipe_ = None
        if self.space == "projection":
            Z = X

            def targets_at(t: float) -> np.ndarray:
                soft = T if t == condensed_t else teacher_soft_labels(self.teacher_, X, t)
                return soft if self.lelp_ is None else self.lelp_.targets(H, soft)

            student = self._fit_projection(X, hard, y_codes, targets_at)
        else:
            Z = H if self.space == "teacher" and self.lelp_ is not None else self._student_input(X)
            # Condense on subclass labels with LELP (finer cells), keep class distributions.
            student = self._fit_condensed(Z, T, hard if self.lelp_ is None else T_out.argmax(axis=1), condensed_t)
        self._set_student(student)
        pred = np.argmax(student.predict_proba(Z), axis=1)
        self.training_fidelity_ = float(np.mean(pred == hard))
        return self

    def _set_classes(self, y, n_rows: int, n_classes: int) -> np.ndarray | None:
        """``classes_`` from ``y`` (or the teacher's outputs) and ``y``'s codes (``-1``: unlabelled)."""
        if y is None:
            self.classes_ = np.arange(n_classes)
            return None
        y = column_or_1d(y)
        if y.shape[0] != n_rows:
            raise ValueError(f"y has {y.shape[0]} labels for {n_rows} rows.")
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
        return y_codes

    def _fit_partitioned(self, X, y):
        """``fit`` on a dask array: a condensed space distilled partition by partition.

        The teacher (shipped to each worker once) labels every partition where it lives; its
        top-1 labels (one integer per row) come back, and the condenser (Hart by default, or
        KSU/FCNN) condenses the partitions and merges them (see
        :meth:`nnkd.MarginCondensedNN.fit`). A last pass sums each cell's teacher
        distributions. The teacher therefore runs twice over the transfer set (``"teacher"``
        space: its embeddings are recomputed in each pass), and nothing but labels, prototypes
        and per-cell sums ever reaches the client.
        """
        if self.subclasses is not None or self.loss != "kd":
            raise ValueError("NNDistiller.fit on a dask array takes loss='kd' and no subclasses (SLaM and LELP "
                             "need every row's estimates in memory); pass an in-memory array for them.")
        if self.space == "projection":
            return self._fit_projection_partitioned(X, y)
        X = as_row_partitions(X)
        if y is not None and is_dask_collection(y):
            y = np.asarray(y.compute())
        self.teacher_ = prepare_teacher(self.teacher, X, y)
        self.n_features_in_ = int(X.shape[1])
        self._seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        condensed_t = CONDENSED_TEMPERATURE if self.temperature == "auto" else self.temperature
        T = self.teacher_.soft_labels(X, condensed_t)
        if T.ndim != 2 or T.shape[1] < 2:
            raise ValueError(f"teacher soft labels have shape {T.shape}; expected (n_samples, n_classes >= 2).")
        hard = np.asarray(T.argmax(axis=1).compute(), dtype=np.int64)
        self._set_classes(y, X.shape[0], T.shape[1])
        self.lelp_ = None
        self.recipe_ = None
        Z = self._student_input(X)
        student = self._fit_condensed(Z, T, hard, condensed_t)
        self._set_student(student)
        agree = da_argmax(student.predict_proba(Z)) == labels_like(hard, Z)
        self.training_fidelity_ = float(agree.mean().compute())
        return self

    def _fit_projection_partitioned(self, X, y):
        """``fit`` of the projection space on a dask array: streamed from the partitions.

        See :mod:`nnkd.distill._stream`: the recipe is chosen on a uniform sample of at most
        :data:`STREAM_SAMPLE_ROWS` training rows and as many held-out rows, the final run trains on every
        training row, one partition at a time, and the held-out bound counts every held-out row.
        """
        from nnkd.distill._stream import PartitionStream

        X = as_row_partitions(X)
        if y is not None and is_dask_collection(y):
            y = np.asarray(labels_like(y, X).compute())
        self.teacher_ = prepare_teacher(self.teacher, X, y)
        self.n_features_in_ = int(X.shape[1])
        self._seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.lelp_ = None
        width = teacher_soft_labels(self.teacher_, first_row(X), 1.0).shape[1]
        y_all = self._set_classes(y, X.shape[0], width)
        stream = PartitionStream(X, None if y_all is None else labels_like(y_all, X), self.teacher_,
                                 self.validation_fraction, self._seed)
        mean, scale = stream.moments()
        X_tr, ids_tr, X_val, ids_val = stream.sample(STREAM_SAMPLE_ROWS, STREAM_SAMPLE_ROWS)
        Xm = np.ascontiguousarray(np.concatenate([X_tr, X_val]), dtype=np.float32)
        T1 = teacher_soft_labels(self.teacher_, Xm, 1.0)
        hard = T1.argmax(axis=1)
        y_codes = None if y_all is None else y_all[np.concatenate([ids_tr, ids_val])]

        def targets_at(t: float) -> np.ndarray:
            return T1 if t == 1.0 else teacher_soft_labels(self.teacher_, Xm, t)

        rows = np.arange(len(X_tr))
        val = np.arange(len(X_tr), len(Xm))
        student = self._fit_projection(Xm, hard, y_codes, targets_at, stream=stream,
                                       sample=(rows, val, np.concatenate([ids_tr, ids_val]), mean, scale))
        self._set_student(student)
        agree = da_argmax(student.predict_proba(X)) == da_argmax(self.teacher_.soft_labels(X, 1.0))
        self.training_fidelity_ = float(agree.mean().compute())
        return self

    def _set_student(self, student: Student) -> None:
        self.student_ = student
        self.prototypes_ = student.prototypes
        self.size_bytes_ = student.size_bytes
        self.bound_ = student.bound
        self.bound_kind_ = student.bound_kind
        self.bound_target_ = student.meta.get("bound_target")
        self.bound_vacuous_ = None if self.bound_ is None else self.bound_ >= 1.0

    def _condenser(self, cap: int | None, target: int | None = None) -> MarginCondensedNN:
        if target is not None:                    # the projection's start: a net of exactly `target` rows
            cond = MarginCondensedNN(method="ksu")
        elif self.condenser is not None:
            cond = clone(self.condenser)
        else:
            cond = MarginCondensedNN(method="hart")
        params = {"metric": self.metric, "n_jobs": self.n_jobs, "random_state": self._seed, "index": self.index,
                  "index_params": self.index_params, "delta": self.delta}
        if target is not None:
            params["target_size"] = target
        elif cap is not None:
            current = cond.max_prototypes
            params["max_prototypes"] = cap if current is None or isinstance(current, float) else min(current, cap)
        return cond.set_params(**params)

    def _fit_condensed(self, Z, T, hard: np.ndarray, temperature: float) -> Student:
        """The condensed student of ``Z`` (in-memory, or a dask array with ``T`` one too)."""
        partitioned = is_dask_collection(Z)
        if not partitioned:
            Z = np.ascontiguousarray(Z, dtype=np.float32)
        dtype = "float32" if self.dtype == "auto" else self.dtype
        cap = None
        if self.size_budget_kb is not None:
            def size(m):
                return stored_bytes((np.empty((m, Z.shape[1])), np.empty((m, T.shape[1]))), dtype)
            cap = int((self.size_budget_kb * 1000 - size(0)) // (size(1) - size(0)))
            if cap < 1:
                raise ValueError(f"size_budget_kb={self.size_budget_kb} cannot hold one prototype of "
                                 f"{Z.shape[1] + T.shape[1]} parameters; raise it.")
        cond = self._condenser(cap).fit(Z, hard)
        m = cond.support_.shape[0]
        if partitioned:               # the condenser's second pass assigned every row
            indptr, indices = cond.cells()
            owner = np.empty(indices.shape[0], dtype=np.int64)
            owner[indices] = np.repeat(np.arange(m), np.diff(indptr))
            label_vectors = partitioned_cell_means(owner, T, cond.support_)
        else:
            owner = cond.index_.query(Z, 1)[1][:, 0]
            indptr, indices = cell_layout(owner, m)
            label_vectors = _cell_means(owner, T, cond.support_)
        student = PrototypeStudent(
            classes=self.classes_, prototypes=cond.prototypes_, label_vectors=label_vectors,
            space=self.space, metric=self.metric, n_neighbors=min(self.n_neighbors, m), kernel=self.kernel,
            index=self.index, index_params=self.index_params or {}, support=cond.support_, cell_indptr=indptr,
            cell_indices=indices, bound=float(cond.bound_), bound_kind="compression", dtype=dtype,
            meta={"teacher_temperature": temperature, "condenser": cond.method, "bound_target": "teacher",
                  "bound_delta": cond.delta})
        if dtype == "float32":              # the same prototypes: search the condenser's index
            student.attach_index(cond.index_)
        return student

    def _fit_projection(self, X, hard, y_codes, targets_at, stream=None, sample=None) -> Student:
        """The projection student: recipe chosen on held-out rows, then trained in full.

        In memory, ``X`` holds every transfer row. With a :class:`~nnkd.distill._stream.PartitionStream`
        (a dask array), ``X`` is the stream's sample and ``sample=(rows, val, row_ids, mean,
        scale)`` says which of its rows train and which are held out, their global row numbers
        and the standardisation of all training rows: the candidates and checkpoints are scored
        on the sample, the final run streams every training row, and the cells and the bound
        cover every row.
        """
        import_optional("torch", "torch==2.13.0", "NNDistiller(space='projection')", hint="the CPU build; see README")
        import torch

        from nnkd.distill._projection import train_prototypes

        n, d = X.shape
        n_outputs = targets_at(1.0).shape[1]
        budget = None if self.size_budget_kb is None else int(self.size_budget_kb * 1000)
        grid = make_grid(dtype=self.dtype, projection_dim=self.projection_dim, temperature=self.temperature,
                         noise_scale=self.noise_scale, augment=self.augment, loss=self.loss,
                         has_budget=budget is not None, n_features=d)
        # The held-out rows choose the recipe and then bound the student's error; the student
        # is never trained on them (nor is the standardisation), so the bound stays honest.
        perm = np.random.default_rng(self._seed).permutation(n)
        if stream is None:
            n_val = int(round(self.validation_fraction * n))
            if n_val < MIN_HOLDOUT or n - n_val < 2:
                n_val = 0
            val, rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            n_train = len(rows)
            mean = X[rows].mean(axis=0)
            scale = X[rows].std(axis=0)
            scale[scale == 0] = 1.0
        else:
            rows, val, row_ids, mean, scale = sample
            n_val = len(val) if len(val) >= MIN_HOLDOUT else 0
            val = val[:n_val]
            n_train = stream.n_train
        epochs = self.max_epochs if self.max_epochs != "auto" else auto_epochs(n_train, self.batch_size)
        # The brief candidate runs train on the rows in memory (the sample, for a stream), as
        # long as a fit on those rows alone would train them.
        brief = epochs if stream is None or self.max_epochs != "auto" else auto_epochs(len(rows), self.batch_size)
        Xs = ((X - mean) / scale).astype(np.float32)
        # PCA start from (at most) 20,000 training rows drawn at random, not the file's first ones.
        if len(rows) <= 20000:
            pca_rows = rows
        elif stream is None:
            pca_rows = np.sort(perm[n_val:][:20000])
        else:
            pca_rows = np.sort(np.random.default_rng(self._seed).permutation(rows)[:20000])
        W_pca = np.linalg.svd(Xs[pca_rows], full_matrices=False)[2].astype(np.float32)
        targets = {t: targets_at(t) for t in grid.temperatures}
        slam = None
        if self.loss == "slam":
            from nnkd.distill._slam import slam_estimates

            T1 = targets_at(1.0)
            labelled = y_codes >= 0
            slam = slam_estimates(T1[labelled], y_codes[labelled], T1, self.slam_coverage)
        subclasses = self.lelp_ is not None

        def recipe_of(key) -> Recipe | None:
            dtype, k, t, noise = key
            m = min(budget_prototypes(budget, k, d, n_outputs, subclasses, dtype), len(rows))
            return None if m < 2 else Recipe(dtype, k, int(m), t, noise)

        def start(recipe: Recipe):
            return self._initial_module(Xs[rows] @ W_pca[:recipe.projection_dim].T, W_pca[:recipe.projection_dim],
                                        hard[rows], targets[recipe.temperature][rows], recipe.n_prototypes)

        def train(module, recipe: Recipe, n_epochs: int, on_epoch=None, streamed: bool = False):
            def relabel(xa):
                raw = xa * scale + mean
                soft = self.teacher_.soft_labels(raw, recipe.temperature)
                return soft if self.lelp_ is None else self.lelp_.targets(self.teacher_.embed(raw), soft)

            augment = None if self.augment is None else make_augmenter(self.augment, recipe.noise_scale or 0.0)
            source = stream.batches(temperature=recipe.temperature, mean=mean, scale=scale,
                                    batch_size=self.batch_size, seed=self._seed) if streamed else None
            return train_prototypes(
                module, Xs[rows], targets[recipe.temperature][rows], temperature=recipe.temperature,
                relabel=relabel if augment else None, augment=augment,
                y_codes=None if y_codes is None else y_codes[rows], alpha=self.alpha, epochs=n_epochs, lr=self.lr,
                batch_size=self.batch_size, seed=self._seed,
                slam=None if slam is None else (slam[0][rows], slam[1][rows]), progress=self.verbose,
                on_epoch=on_epoch, source=source)

        def fidelity(module, recipe: Recipe) -> float:
            try:
                student = self._projection_student(module, recipe, mean, scale, None)
            except ValueError:      # cannot be stored at its dtype (float16 overflow): never chosen
                return -1.0
            return float(np.mean(np.argmax(student.predict_proba(X[val]), axis=1) == hard[val]))

        log, scored = [], {}
        with torch_threads(torch, self.n_jobs):
            if n_val and grid.size() > 1:
                best: dict = {}
                short = max(1, int(round(brief * SHORT_SHARE)))
                for stage in range(3):
                    options = [key for key in staged_candidates(grid, best, stage) if recipe_of(key) is not None]
                    for key in options:
                        if key not in scored:
                            recipe = recipe_of(key)
                            module = start(recipe)
                            train(module, recipe, short)
                            scored[key] = fidelity(module, recipe)
                            log.append({**recipe.as_dict(), "epochs": short, "validation_fidelity": scored[key]})
                    if options:                       # ties: the earlier candidate
                        best["key"] = max(options, key=lambda k: (scored[k], -options.index(k)))
                key = best.get("key", grid.first())
            else:
                key = grid.first()
            recipe = recipe_of(key)
            if recipe is None:
                raise ValueError(f"size_budget_kb={self.size_budget_kb} leaves room for fewer than 2 prototypes "
                                 f"after the {key[1]}x{d} projection; raise it or lower projection_dim.")
            module = start(recipe)
            # N_CHECKPOINTS evenly spaced epochs (fewer for a short run), the last included.
            checkpoints = (sorted({int(round(e)) for e in np.linspace(epochs / N_CHECKPOINTS, epochs, N_CHECKPOINTS)}
                                  - {0}) if n_val else [])
            kept = {"fidelity": -1.0, "epoch": epochs, "state": None}

            def checkpoint(epoch: int) -> None:
                if epoch in checkpoints:
                    f = fidelity(module, recipe)
                    if f >= kept["fidelity"]:             # ties: the longer-trained one
                        kept.update(fidelity=f, epoch=epoch, state=copy.deepcopy(module.state_dict()))

            self.loss_curve_ = train(module, recipe, epochs, checkpoint, streamed=stream is not None)
            if kept["state"] is not None:
                module.load_state_dict(kept["state"])
        if stream is not None:
            module.support = row_ids[module.support]          # the sample's positions -> global row numbers
        owner_space = self._projection_student(module, recipe, mean, scale, None)
        if stream is None:
            owner = make_index("exact").fit(owner_space.prototypes).query(owner_space.transform(X), 1)[1][:, 0]
        else:
            owner = stream.owners(owner_space)
        student = self._projection_student(module, recipe, mean, scale, cell_layout(owner, recipe.n_prototypes))
        self.noise_scale_ = recipe.noise_scale
        self.recipe_ = {**recipe.as_dict(), "epochs": kept["epoch"], "max_epochs": epochs,
                        "validation_rows": int(n_val), "validation_fidelity": kept["fidelity"] if n_val else None,
                        "candidates": log}
        self.bound_, self.bound_target_ = None, None
        if n_val and stream is not None:
            # Every held-out row, not only the sample's: the candidates were fixed by the
            # training rows alone, so the union bound below holds for the one chosen.
            errors, n_eval = stream.held_out_errors(student)
            self.bound_target_ = "teacher" if y_codes is None else "labels"
        elif n_val:
            pred = np.argmax(student.predict_proba(X[val]), axis=1)
            labelled = np.ones(n_val, dtype=bool) if y_codes is None else y_codes[val] >= 0
            if y_codes is not None and labelled.any():
                errors, n_eval, self.bound_target_ = int(np.sum(pred[labelled] != y_codes[val][labelled])), \
                    int(labelled.sum()), "labels"
            else:
                errors, n_eval, self.bound_target_ = int(np.sum(pred != hard[val])), n_val, "teacher"
        if n_val:
            # Union bound over every student this procedure could have returned: any recipe of
            # the grid, at any checkpoint.
            n_candidates = grid.size() * len(checkpoints)
            self.bound_ = float(holdout_bound(errors, n_eval, self.delta, n_candidates))
            student.bound, student.bound_kind = self.bound_, "held-out"
            student.meta.update(bound_target=self.bound_target_, bound_delta=self.delta,
                                bound_candidates=n_candidates, bound_rows=n_eval)
        student.meta["recipe"] = {k: v for k, v in self.recipe_.items() if k != "candidates"}
        return student

    def _initial_module(self, Xp, W0, hard, T, m):
        """ProtoNN's start: a KSU net of ``m`` rows in the PCA space, cell-mean label vectors."""
        from nnkd.distill._projection import ProtoNNModule

        Xp = np.ascontiguousarray(Xp, dtype=np.float32)
        cond = self._condenser(None, target=m).set_params(metric="euclidean").fit(Xp, hard)
        support = cond.support_
        owner = cond.index_.query(Xp, 1)[1][:, 0]
        P = _cell_means(owner, T, support)
        nearest = cond.index_.query(Xp, 2)[0]
        scale_d = float(np.median(nearest[nearest > 0])) if (nearest > 0).any() else 1.0
        module = ProtoNNModule(W0, Xp[support], np.log(P + 1e-2).astype(np.float32) + 5.0, 1.0 / scale_d)
        module.support = support
        return module

    def _projection_student(self, module, recipe, mean, scale, cells) -> ProjectionStudent:
        W, B, Z, gamma = module.export()
        # Fold the standardisation into the projection and the prototypes: W((x - mean) / scale) - b
        # = (W / scale) x - (b + (W / scale) mean), so the artifact stores no mean or scale and the
        # 2 * n_features floats they would cost go to prototypes.
        W64 = W.astype(np.float64) / scale[None, :]
        B = (B.astype(np.float64) + W64 @ mean.astype(np.float64)).astype(np.float32)
        indptr, indices = (None, None) if cells is None else cells
        return ProjectionStudent(
            classes=self.classes_, prototypes=B, label_vectors=Z, gamma=gamma, projection=W64.astype(np.float32),
            support=module.support, output_classes=None if self.lelp_ is None else self.lelp_.subclass_class,
            cell_indptr=indptr, cell_indices=indices, dtype=recipe.dtype,
            meta={"teacher_temperature": recipe.temperature, "projection_dim": recipe.projection_dim,
                  "noise_scale": recipe.noise_scale,
                  "augment": self.augment if isinstance(self.augment, str) or self.augment is None else "callable"})

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
