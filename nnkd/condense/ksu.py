"""KSU: majority-vote nets at every scale, scale chosen by a compression bound.

For every prefix size ``m`` of a greedy permutation (a net at scale ``radius[m]``),
each net point is labelled by the majority of its Voronoi cell and
``alpha(m)`` is the fraction of training points whose label differs from their
cell's. The curve ``alpha(m)`` comes out of a single traversal (the C core updates
class counts as points change cells), so all scales cost one pass.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold
from tqdm.auto import tqdm

from nnkd.condense._result import CondenseResult
from nnkd.condense.bounds import compression_bound
from nnkd.condense.nets import run_greedy

SELECTIONS = ("auto", "bound", "validation")


def start_row(X, rows=None, centre=None) -> int:
    """First centre of every greedy permutation nnkd builds: the row of ``X[rows]`` farthest
    (euclidean) from their mean (or from ``centre``: the KSU merge passes the mean of all
    rows, so that it starts where one process over the same rows starts), the first of equals.

    Deterministic, and the same rule for one process, each partition and the merge. The row
    nearest the mean was the rule before; on mixtures it sits where the classes overlap and
    its cell stays large and mixed for thousands of steps, since farthest-first only adds
    outlying rows (``benchmarks/ksu_start.py`` measures the rules; ``benchmarks/results/ksu_start.md``).
    """
    idx = np.arange(X.shape[0]) if rows is None else np.flatnonzero(rows)
    sub = X[idx].astype(np.float64)
    centre = sub.mean(axis=0) if centre is None else np.asarray(centre, dtype=np.float64)
    return int(idx[np.argmax(((sub - centre) ** 2).sum(axis=1))])


def ksu_condense(X, y, code, *, delta=0.05, selection="auto", max_prototypes=None, target_size=None,
                 validation_fraction=0.2, error_tolerance=0.005, random_state=None,
                 progress=False, n_jobs=None) -> CondenseResult:
    """Condense ``(X, y)`` with algorithm KSU.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32, C-contiguous
        Points in the metric's working space (see :func:`nnkd._core.metrics.as_points`).
    y : ndarray of shape (n_samples,), int64
        Class codes in ``[0, n_classes)``.
    code : int
        Metric code.
    delta : float, default=0.05
        Confidence of the bound.
    selection : {"auto", "bound", "validation"}, default="auto"
        ``"bound"`` picks the prefix minimising ``Q(n, alpha(m), 2m, delta)``
        (Kontorovich, Sabato and Weiss); ``"auto"`` runs both and keeps the bound's net
        where its bound certifies more than the constant majority-class classifier's error
        (:func:`trivial_error`) and its held-out error is within ``error_tolerance`` of the
        lowest, the validation choice otherwise; ``"validation"`` holds out stratified folds of
        ``validation_fraction`` of the rows (``round(1 / validation_fraction)`` folds, so
        every row is held out once), sums the held-out error of every net size (up to
        ``max_prototypes``, or half the training rows) over the folds, picks the smallest size whose held-out error rate is within
        ``error_tolerance`` of the lowest (see :func:`tolerance_choice`) and rebuilds the
        net of the same fraction of all rows.
    max_prototypes : int, default=None
        Largest net considered (already resolved to a count).
    validation_fraction : float, default=0.2
        Held-out fraction per fold (``selection="validation"``).
    error_tolerance : float, default=0.005
        Held-out error rate that may be given up for a smaller net.
    target_size : int, default=None
        Use exactly this many prototypes (the first ``target_size`` of the
        permutation) instead of a selection rule.
    progress : bool, default=False
        Show a progress bar (stderr) over the validation folds.
    n_jobs : int, default=None
        Threads of the greedy permutation (the result does not depend on it).

    Returns
    -------
    CondenseResult
        ``curve`` holds ``m``, ``train_errors``, ``bound`` (and ``valid_errors``);
        ``selection`` the rule that chose the size.

    References
    ----------
    .. [1] A. Kontorovich, S. Sabato, R. Weiss, "Nearest-neighbor sample compression:
       efficiency, consistency, infinite dimensions", NeurIPS 2017, arXiv:1705.08184.
    """
    n = X.shape[0]
    n_classes = int(y.max()) + 1
    cap = n if max_prototypes is None else max_prototypes
    if target_size is not None:
        net = run_greedy(X, code, start=start_row(X), max_centres=min(target_size, cap), labels=y,
                         n_classes=n_classes, n_jobs=n_jobs)
        m = np.arange(1, len(net.order) + 1)
        curve = {"m": m, "train_errors": net.train_errors,
                 "bound": compression_bound(n, net.train_errors / n, 2 * m, delta)}
        return CondenseResult(net.order, net.owner, net.covering_radius, curve=curve, selection="target_size")
    if selection not in SELECTIONS:
        raise ValueError(f"selection={selection!r} is not supported; use one of {SELECTIONS}.")
    bound_curve = None
    if selection in ("bound", "auto"):
        # Q is infinite once the compression size 2m reaches n: no need to go further. For
        # "auto" only nets that could certify something matter: Q(n, 0, 2m) < 1, which
        # keeps the scan to m of order n / (3 ln n) (a far cheaper greedy run).
        limit = min(cap, max(1, (n - 1) // 2))
        if selection == "auto":
            limit = min(limit, max(1, certifying_limit(n, delta, trivial_error(y))))
        net = run_greedy(X, code, start=start_row(X), max_centres=limit, labels=y,
                         n_classes=n_classes, n_jobs=n_jobs)
        m = np.arange(1, len(net.order) + 1)
        bound = compression_bound(n, net.train_errors / n, 2 * m, delta)
        best = int(np.argmin(bound)) + 1            # ties: the smallest net
        bound_curve = {"m": m, "train_errors": net.train_errors, "bound": bound}
    if selection == "bound":
        warn_vacuous(bound, best, n, stacklevel=4)

    def bound_choice(curve) -> CondenseResult:
        # The traversal keeps only the cells of its last prefix; replaying the (identical)
        # first steps is cheaper than recording every row's cell at every step.
        final = run_greedy(X, code, start=int(net.order[0]), max_centres=best, labels=y,
                           n_classes=n_classes, n_jobs=n_jobs)
        return CondenseResult(final.order, final.owner, final.covering_radius, curve=curve, selection="bound")

    if selection == "bound" or (selection == "auto" and n < _n_folds(validation_fraction)):
        return bound_choice(bound_curve)
    # Every row is held out once (k folds of about validation_fraction each): the summed
    # held-out error curve is far less noisy than one split's, which matters because the
    # chosen size is where that curve first reaches its floor.
    curves, n_train = [], []
    masks = list(_training_masks(y, validation_fraction, random_state))
    for active in tqdm(masks, desc="KSU validation folds", disable=not progress, leave=False):
        # Without a budget, search nets up to half the training rows: keeping more is
        # hardly condensing, and the largest nets cost the most to build.
        fold_cap = min(cap, int(active.sum())) if max_prototypes is not None else int(active.sum()) // 2
        fold = run_greedy(X, code, start=start_row(X, active), max_centres=max(1, fold_cap),
                          labels=y, n_classes=n_classes, active=active.view(np.uint8), n_jobs=n_jobs)
        curves.append(fold.valid_errors)
        n_train.append(int(active.sum()))
    length = min(len(c) for c in curves)
    valid_errors = np.sum([c[:length] for c in curves], axis=0)
    chosen = tolerance_choice(valid_errors, n, error_tolerance)
    curve = {"m": np.arange(1, length + 1), "valid_errors": valid_errors, "n_folds": len(curves),
             "n_train_per_fold": np.array(n_train), "chosen_m": chosen}
    if bound_curve is not None:
        curve["bound_curve"] = bound_curve
        # "auto" takes the bound's net where it certifies more than a constant classifier
        # would (the majority class errs on 1 - its share: a bound between that and 1
        # certifies a guess) *and* costs no accuracy: its size, carried to the folds' scale,
        # has held-out error within error_tolerance of the lowest. Otherwise the bound's
        # small net is a certificate bought with accuracy, which a default should not buy.
        at_fold_scale = max(1, int(np.ceil(best * np.mean(n_train) / n)))
        rates = valid_errors / n
        curve["bound_m_at_fold_scale"] = at_fold_scale
        if (bound[best - 1] < trivial_error(y) and at_fold_scale <= length
                and rates[at_fold_scale - 1] <= rates.min() + error_tolerance):
            return bound_choice(curve)
    # Carry the chosen *fraction* of the training folds over to all rows: the radius
    # curve is flat at small scales, so carrying the scale over is unstable.
    size = min(cap, n, int(round(chosen * n / np.mean(n_train))))
    final = run_greedy(X, code, start=start_row(X), max_centres=size, labels=y,
                       n_classes=n_classes, n_jobs=n_jobs)
    return CondenseResult(final.order, final.owner, final.covering_radius, curve=curve, selection="validation")


def warn_vacuous(bound: np.ndarray, best: int, n: int, stacklevel: int = 3) -> None:
    """Warn when the bound's chosen net (``best`` prototypes, ``bound[best - 1]``) certifies
    nothing: its argmin is then an arbitrary net."""
    q = float(np.min(bound))
    if not q < 1.0:
        warnings.warn(
            f"The KSU bound is vacuous (>= 1) at every net size (smallest: {q:.3g} "
            f"at {best} prototypes): with n={n} samples it certifies nothing, and its argmin is "
            "an arbitrary net. Use selection='validation' (or target_size) to choose the size.",
            UserWarning, stacklevel=stacklevel)


def trivial_error(y) -> float:
    """Training error of the constant classifier that predicts the most frequent class."""
    counts = np.bincount(y)
    return 1.0 - counts.max() / counts.sum()


def certifying_limit(n: int, delta: float, level: float = 1.0) -> int:
    """Largest net size ``k`` with ``Q(n, 0, 2k, delta) < level``: no larger net's bound can
    go below ``level``, whatever its training error (0 if none can)."""
    k = np.arange(1, max(2, n // 2 + 1))
    ok = np.flatnonzero(compression_bound(n, 0.0, 2 * k, delta) < level)
    return 0 if ok.size == 0 else int(k[ok[-1]])


def tolerance_choice(valid_errors, n_valid, error_tolerance) -> int:
    """Smallest prefix size from which the held-out error rate stays within
    ``error_tolerance`` of the lowest one.

    Held-out error falls fast and then creeps down along a long, flat floor; the
    lowest point sits at a very large net. Trading a bounded amount of accuracy for a
    much smaller student is what condensing is for, so the caller names the trade.
    Requiring the curve to *stay* under the threshold (rather than touch it once)
    keeps a lucky early dip of a noisy curve from choosing too small a net.
    """
    rates = np.asarray(valid_errors, dtype=np.float64) / n_valid
    above = np.flatnonzero(rates > rates.min() + error_tolerance)
    return 1 if above.size == 0 else int(above[-1]) + 2


def _n_folds(validation_fraction: float) -> int:
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction={validation_fraction} must lie in (0, 1).")
    return max(2, int(round(1.0 / validation_fraction)))


def _training_masks(y, validation_fraction, random_state):
    """Training-row masks of ``k = max(2, round(1 / validation_fraction))`` folds."""
    n = y.shape[0]
    k = _n_folds(validation_fraction)
    if n < k:
        raise ValueError(f"selection='validation' holds out {k} folds and needs n_samples >= {k}; "
                         f"got n_samples={n}. Use selection='bound' or a larger validation_fraction.")
    counts = np.bincount(y)
    # Stratify when every class can appear in every fold; otherwise split at random.
    if counts[counts > 0].min() >= k:
        splitter = StratifiedKFold(k, shuffle=True, random_state=random_state)
    else:
        splitter = KFold(k, shuffle=True, random_state=random_state)
    for train_idx, _ in splitter.split(np.zeros((n, 1)), y):
        mask = np.zeros(n, dtype=bool)
        mask[train_idx] = True
        yield mask
