"""``MarginCondensedNN``: a 1-NN classifier over a small, provably good prototype set."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from nnkd._core.metrics import METRICS, as_points, metric_code
from nnkd._sklearn_compat import (
    Interval,
    StrOptions,
    _fit_context,
    _safe_indexing,
    validate_data,
)
from nnkd._core.partitions import as_row_partitions, is_dask_collection, labels_like
from nnkd.condense.bounds import compression_bound
from nnkd.condense.methods import METHODS, CondenseSettings, final_selection, run_condenser
from nnkd.condense.partitioned import check_partitioned_method, partitioned_classes, partitioned_condense
from nnkd.neighbors._base import StudentMixin, build_index
from nnkd.student import PrototypeStudent, cell_layout



class MarginCondensedNN(StudentMixin, ClassifierMixin, BaseEstimator):
    """1-NN classifier over a condensed prototype set with a generalization bound.

    ``fit`` keeps a small subset of the training rows (the prototypes), labels each by
    the majority of its Voronoi cell, and reports a compression-based bound on the
    true error. ``predict`` is 1-NN over the prototypes.

    Parameters
    ----------
    method : {"ksu", "gkn", "hart", "fcnn"}, default="ksu"
        - ``"ksu"``: nets of a greedy permutation at every scale, majority-vote labels,
          scale chosen by ``selection`` (Kontorovich, Sabato and Weiss 2017).
        - ``"gkn"``: remove a vertex cover of the conflict graph at scale gamma (exact
          for two classes, greedy for more), net the rest; gamma chosen by the bound
          (Gottlieb, Kontorovich and Nisnevitch 2014/2018).
        - ``"hart"``: Hart's condensed NN (1968), all classes, consistent on the
          training set.
        - ``"fcnn"``: Angiulli's fast condensed NN (FCNN1, 2007), consistent.
    metric : {"euclidean", "manhattan", "chebyshev", "cosine"}, default="euclidean"
        Cosine runs as euclidean distance on L2-normalised rows.
    delta : float, default=0.05
        Confidence parameter of the bound (it holds with probability ``1 - delta``).
    selection : {"auto", "bound", "validation"}, default="auto"
        How ``"ksu"`` picks the net size: the bound, held-out error, or ``"auto"``: the
        bound's choice where its minimum certifies more than a constant classifier would
        (below ``1 - `` the largest class's share of the rows; between that and 1 it
        certifies no better than a guess), held-out error otherwise (``selection_`` says which was used). Validation holds out stratified
        folds of ``validation_fraction`` of the rows (every row once), sums the held-out
        error of every net size up to ``max_prototypes`` (default: half the rows), takes
        the smallest size from which it stays within ``error_tolerance`` of the lowest and
        rebuilds a net of that fraction on all rows. The bound is conservative at
        realistic sample sizes: on most real data sets of a few thousand rows it is
        vacuous at every net size, and its argmin is then an arbitrary tiny net (the
        reason ``"auto"`` is the default). ``bound_`` is reported either way.
    validation_fraction : float, default=0.2
        Held-out fraction per fold for ``selection="validation"`` (``round(1 / f)`` folds).
    error_tolerance : float, default=0.005
        Held-out error rate ``selection="validation"`` may give up for a smaller net.
    max_prototypes : int or float, default=None
        Hard cap on the number of prototypes (a float is a fraction of ``n_samples``).
        For ``"hart"``/``"fcnn"`` the store then stops growing and may not be consistent.
    target_size : int or float, default=None
        Keep (about) this many prototypes instead of selecting a scale: the first
        ``target_size`` points of the greedy permutation (``"ksu"``), the scale whose net
        is closest in size (``"gkn"``); a cap for ``"hart"``/``"fcnn"``.
    index : str, default="exact"
        Search backend spec (:func:`nnkd.index.make_index`) over the prototypes, used for
        prediction and, when not ``"exact"``, to assign every training row to its
        prototype's Voronoi cell (so cell labels, ``training_error_`` and ``bound_``
        describe the classifier that actually predicts). ``"faiss:HNSW32"`` or
        ``"nmslib:hnsw"`` pay off for many prototypes and large query batches.
    index_params : dict, default=None
        Build and query parameters of the backend (``{"efSearch": 256}``, ...).
    random_state : int, RandomState instance or None, default=None
        Visiting order of ``"hart"`` and the split of ``selection="validation"``.
    n_jobs : int, default=None
        Threads for the Numba kernels (``None``: 1, ``-1``: all cores).
    verbose : bool, default=False
        Progress bars (on stderr) over the validation folds (``"ksu"``) and the scale
        scan (``"gkn"``); with dask inputs, over KSU's traversal and Hart/FCNN's repair
        passes, and (on a ``dask.distributed`` client) over the partitions condensed and
        scored.

    Attributes
    ----------
    prototypes_ : ndarray of shape (n_prototypes, n_features), dtype=float32
        The kept training rows, as given (not normalised).
    prototype_labels_ : ndarray of shape (n_prototypes,)
        Majority label of each prototype's cell.
    prototype_proba_ : ndarray of shape (n_prototypes, n_classes)
        Class distribution of each prototype's cell (``predict_proba`` returns these).
    support_ : ndarray of shape (n_prototypes,), dtype=int64
        Indices of the prototypes in the training set (also ``sample_indices_``).
    scale_ : float
        Covering radius of the prototype set over the training rows (``"gkn"``: the
        margin gamma; rows removed by the vertex cover are not covered).
    bound_ : float
        ``min(1, Q(n, training_error_, 2 * n_prototypes, delta))``: with probability
        ``1 - delta`` over the training sample, the true error rate is at most this (a
        sample-compression bound; see :func:`~nnkd.condense.compression_bound`). A value
        ``Q >= 1`` certifies nothing and is reported as 1.0 with ``bound_vacuous_``.
    bound_vacuous_ : bool
        Whether the bound certifies nothing (``Q >= 1``; ``Q`` is infinite once
        ``2 * n_prototypes >= n_samples``).
    selection_ : str
        What chose the number of prototypes: ``"bound"``, ``"validation"``,
        ``"target_size"``, ``"max_prototypes"`` (a Hart/FCNN store stopped at the cap) or
        ``"consistent"`` (Hart/FCNN: the store classifies every training row right) or
        ``"merged"`` (Hart/FCNN fitted on a dask array: the merged store is consistent on the
        union of the partition stores, not on every row).
    training_error_ : float
        Error of the fitted classifier on the training set.
    compression_ratio_ : float
        ``n_prototypes / n_samples``.
    selection_curve_ : dict
        Diagnostics of the scale search (sizes, errors, bounds) for plotting.
    index_ : nnkd.index.Index
        The search index over the prototypes.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    See Also
    --------
    sklearn.neighbors.KNeighborsClassifier : 1-NN on all training rows.

    Notes
    -----
    Each prototype is labelled by the majority of its Voronoi cell (ties: the class
    that sorts first), which for the consistent methods is its own label. The bound
    counts each prototype twice (the point and a sample point carrying its label), as
    in KSU. Prediction ties between equidistant prototypes go to the one chosen first.

    References
    ----------
    .. [1] A. Kontorovich, S. Sabato, R. Weiss, "Nearest-neighbor sample compression:
       efficiency, consistency, infinite dimensions", NeurIPS 2017, arXiv:1705.08184.
    .. [2] L.-A. Gottlieb, A. Kontorovich, P. Nisnevitch, "Near-optimal sample compression
       for nearest neighbors", NeurIPS 2014; IEEE Trans. Inf. Theory 64(6), 2018.
    .. [3] P. E. Hart, "The condensed nearest neighbor rule", IEEE Trans. Inf. Theory 14, 1968.
    .. [4] F. Angiulli, "Fast nearest neighbor condensation for large data sets
       classification", IEEE Trans. Knowl. Data Eng. 19(11), 2007.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from nnkd import MarginCondensedNN
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MarginCondensedNN(method="hart", random_state=0).fit(X, y)
    >>> bool(clf.compression_ratio_ < 0.5) and clf.training_error_ == 0.0
    True
    """

    _parameter_constraints: dict = {
        "method": [StrOptions(set(METHODS))],
        "metric": [StrOptions(set(METRICS))],
        "delta": [Interval(Real, 0, 1, closed="neither")],
        "selection": [StrOptions({"auto", "bound", "validation"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "error_tolerance": [Interval(Real, 0, 1, closed="left")],
        "max_prototypes": [Interval(Integral, 1, None, closed="left"),
                           Interval(Real, 0, 1, closed="right"), None],
        "target_size": [Interval(Integral, 1, None, closed="left"),
                        Interval(Real, 0, 1, closed="right"), None],
        "index": [str],
        "index_params": [dict, None],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "verbose": ["boolean"],
    }

    def __init__(self, method="ksu", *, metric="euclidean", delta=0.05, selection="auto",
                 validation_fraction=0.2, error_tolerance=0.005, max_prototypes=None, target_size=None, index="exact",
                 index_params=None, random_state=None, n_jobs=None, verbose=False):
        self.method = method
        self.metric = metric
        self.delta = delta
        self.selection = selection
        self.validation_fraction = validation_fraction
        self.error_tolerance = error_tolerance
        self.max_prototypes = max_prototypes
        self.target_size = target_size
        self.index = index
        self.index_params = index_params
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Scales chosen by the compression bound keep very few prototypes on small
        # samples (the bound is conservative), so training accuracy can be low by design.
        tags.classifier_tags.poor_score = self.method == "gkn" or (
            self.method == "ksu" and self.selection == "bound")
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Condense the training set.

        Parameters
        ----------
        X : array-like, dask array or dask dataframe of shape (n_samples, n_features)
            Training rows (finite; converted to float32). A dask collection is condensed by
            partitions where it lives ("ksu": the one-process traversal, rows staying on
            their workers; "hart", "fcnn": each row partition on its worker, then the union
            of their stores), then a second pass over the partitions labels the cells and
            measures ``training_error_`` and ``bound_`` over all rows (see
            :mod:`nnkd.condense.partitioned`).
        y : array-like or dask array of shape (n_samples,)
            Class labels (any hashable type numpy can sort).

        Returns
        -------
        self : MarginCondensedNN
        """
        if is_dask_collection(X):
            return self._fit_partitioned(X, y)
        X, y = validate_data(self, X, y, dtype=np.float32, order="C")
        check_classification_targets(y)
        self.classes_, y_codes = np.unique(y, return_inverse=True)
        y_codes = y_codes.astype(np.int64)
        settings = self._settings()
        result = run_condenser(settings, as_points(X, self.metric), y_codes, metric_code(self.metric))
        k = result.support.shape[0]
        self.index_ = build_index(self, X[result.support])
        owner, voters = result.owner, result.voters
        if self.index != "exact":
            owner = self.index_.query(X, 1)[1][:, 0]
        n_classes = self.classes_.shape[0]
        weights = None if voters is None else voters.astype(np.float64)
        counts = np.bincount(owner * n_classes + y_codes, weights=weights,
                             minlength=k * n_classes).reshape(k, n_classes)
        self._set_condensed(X[result.support], result.support, y_codes[result.support], owner, counts,
                            scale=result.scale, selection=result.selection, curve=result.curve)
        # Votes may come from some rows only (GKN); the error counts every row.
        self.training_error_ = float(np.mean(self._proto_codes[owner] != y_codes))
        self._set_bound(settings)
        return self

    def _settings(self) -> CondenseSettings:
        return CondenseSettings(
            method=self.method, delta=self.delta, selection=self.selection,
            validation_fraction=self.validation_fraction, error_tolerance=self.error_tolerance,
            max_prototypes=self.max_prototypes, target_size=self.target_size, random_state=self.random_state,
            n_jobs=self.n_jobs, progress=self.verbose)

    def _fit_partitioned(self, X, y):
        """``fit`` on a dask collection (:mod:`nnkd.condense.partitioned`): KSU's traversal of
        all rows as one process orders them, with the rows on their workers; Hart/FCNN
        condense each partition on its worker, then the union of their stores; the result
        is scored over every row in a second pass."""
        check_partitioned_method(self.method)
        X = as_row_partitions(X)
        y = labels_like(y, X)
        classes = partitioned_classes(y)
        check_classification_targets(classes)
        metric_code(self.metric)
        self.n_features_in_ = int(X.shape[1])
        settings = self._settings()
        fit, self.classes_ = partitioned_condense(settings, X, y, metric=self.metric, classes=classes,
                                                  make_index=lambda P: build_index(self, P))
        self.index_ = fit.index
        self._set_condensed(fit.prototypes, fit.support, fit.codes, fit.owner, fit.counts, scale=fit.scale,
                            selection=fit.selection, curve=fit.curve)
        self.training_error_ = fit.errors / fit.owner.shape[0]
        self._set_bound(settings)
        return self

    def _set_condensed(self, prototypes, support, own_codes, owner, counts, *, scale, selection, curve) -> None:
        """Fitted attributes from the prototypes, their training rows' cells and class counts."""
        k = prototypes.shape[0]
        counts = np.asarray(counts, dtype=np.float64)
        empty = counts.sum(axis=1) == 0
        # A cell can be empty only for an exact duplicate of an earlier prototype (ties go
        # to the earlier one); it then keeps its own label.
        counts[empty, own_codes[empty]] = 1
        self.prototype_proba_ = counts / counts.sum(axis=1, keepdims=True)
        self._proto_codes = np.argmax(counts, axis=1)
        self.prototype_labels_ = self.classes_[self._proto_codes]
        self.support_ = np.asarray(support, dtype=np.int64)
        self.sample_indices_ = self.support_
        self.prototypes_ = prototypes
        self.scale_ = float(scale)
        self._cell_indptr, self._cell_indices = cell_layout(owner, k)
        self._n_samples = owner.shape[0]
        self.selection_ = selection
        self.compression_ratio_ = k / owner.shape[0]
        self.selection_curve_ = curve

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """The training rows of each prototype's cell, in CSR layout.

        Returns
        -------
        indptr : ndarray of shape (n_prototypes + 1,), int64
        indices : ndarray of shape (n_samples,), int64
            ``indices[indptr[k]:indptr[k + 1]]`` are the training rows (in ``fit``'s row
            numbers) whose nearest prototype is ``k``.
        """
        check_is_fitted(self, "support_")
        return self._cell_indptr, self._cell_indices

    def _set_bound(self, settings: CondenseSettings) -> None:
        k = self.prototypes_.shape[0]
        q = float(compression_bound(self._n_samples, self.training_error_, 2 * k, self.delta))
        self.bound_vacuous_ = not q < 1.0
        self.bound_ = min(q, 1.0)
        self.selection_ = final_selection(settings, self.selection_, self.training_error_)

    def _nearest(self, X):
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        dist, ind = self.index_.query(X, 1)
        return dist[:, 0], ind[:, 0]

    def predict(self, X):
        """Label of the nearest prototype.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        y : ndarray of shape (n_queries,)
        """
        check_is_fitted(self)
        _, ind = self._nearest(X)
        return self.classes_[self._proto_codes[ind]]

    def predict_proba(self, X):
        """Class distribution of the nearest prototype's training cell.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        proba : ndarray of shape (n_queries, n_classes), dtype=float64
        """
        check_is_fitted(self)
        _, ind = self._nearest(X)
        return self.prototype_proba_[ind]

    def to_student(self) -> PrototypeStudent:
        """The condensed classifier as a NumPy-only student (``.save(dir)``, ``nnkd serve dir``).

        It predicts what :meth:`predict` predicts: the prototypes with their cell class
        distributions, 1-NN through the same index, the cells as explanations and
        ``bound_`` as its bound.

        Returns
        -------
        student : nnkd.student.PrototypeStudent
        """
        check_is_fitted(self)
        student = PrototypeStudent(
            classes=self.classes_, prototypes=self.prototypes_, label_vectors=self.prototype_proba_,
            metric=self.metric, n_neighbors=1, index=self.index, index_params=self.index_params or {},
            support=self.support_, cell_indptr=self._cell_indptr, cell_indices=self._cell_indices,
            bound=self.bound_, bound_kind="compression",
            meta={"estimator": "MarginCondensedNN", "method": self.method, "bound_delta": self.delta,
                  "selection": self.selection_,
                                     "scale": self.scale_, "training_error": self.training_error_,
                                     "compression_ratio": self.compression_ratio_, "n_samples": self._n_samples})
        student.attach_index(self.index_)
        return student

    def fit_resample(self, X, y):
        """Fit, then return the condensed set (imbalanced-learn's sampler protocol).

        Returns
        -------
        X_resampled : array-like of shape (n_prototypes, n_features)
            The prototype rows of ``X``, in the container type given.
        y_resampled : array-like of shape (n_prototypes,)
            Their original labels (``prototype_labels_`` holds the cell-majority labels).
        """
        self.fit(X, y)
        return _safe_indexing(X, self.support_), _safe_indexing(y, self.support_)
