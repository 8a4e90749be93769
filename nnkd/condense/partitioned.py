"""Partition-and-merge condensing of a dask array: each partition on its worker, then the union.

1. **Partitions.** Every row partition is condensed where it lives; only its store comes
   back (the prototype rows, their labels and the scale), never its rows.
2. **Merge.** The union ``U`` of the partition stores (small) is condensed once more:

   - KSU: every partition orders its rows farthest-first (up to the limit a single-process
     fit scans: the cap, or where the bound must be vacuous); ``U`` is ordered
     farthest-first again, and one pass over the partitions scores every prefix size of a
     grid (:func:`prefix_grid`) over *all* rows. The size is then chosen as in one
     process, by the bound of all ``n`` rows or by the error on rows each partition held
     out, so the scale does not shrink with the partition count.
   - Hart and FCNN: the method again on ``U`` with the rows' own labels. That store is
     consistent on ``U``, not necessarily on every row, so (without a cap) passes over the
     partitions collect the rows it labels wrong and Hart's rule absorbs them into it
     (every prototype stays) until a pass finds none, at most ``MAX_REPAIR_ROUNDS`` times:
     the result is then consistent on all rows, as a single-process store is. Each row's
     nearest prototype stays on its worker between passes, so a pass after the first
     searches only the prototypes the last round added.
3. **Second pass.** Every partition assigns its rows to the nearest merged prototype
   (through the estimator's index, shipped to each worker once): per-cell class counts
   (the prototypes' majority labels), the training error ``alpha`` of the merged
   classifier over *all* rows, the covering radius and the cells.

Guarantee relied on (KSU): a row of partition ``p`` lies within ``gamma_p`` of its
partition's prefix ``S_p``, a subset of ``U`` (``gamma_p``: that prefix's covering radius
over all the partition's rows), and every point of ``U`` lies within ``r`` of the merged net
``S`` (``r``: the covering radius of ``S`` over ``U``, ``merge_scale``). By the triangle
inequality **every row lies within** ``max_p gamma_p + r`` **of** ``S``; when ``S`` is all of
``U``'s permutation at the partitions' own scale (``r <= gamma = max_p gamma_p``), that is
the ``2 gamma``-cover of a ``gamma``-net of the union of ``gamma``-nets. ``scale_`` reports
the covering radius measured in the second pass. The bound is the compression bound of
``|S|`` prototypes at the error ``alpha`` measured over all ``n`` rows, the statement of a
single-process fit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state

from nnkd._core.distances import exact_knn
from nnkd._core.metrics import EUCLIDEAN, as_points, check_points, metric_code
from nnkd._core.partitions import as_row_partitions, labels_like, partition_blocks, partition_offsets
from nnkd.condense.bounds import compression_bound
from nnkd.condense.hart import hart_condense
from nnkd.condense.ksu import SELECTIONS, _n_folds, start_row, warn_vacuous
from nnkd.condense.methods import CONSISTENT_METHODS, CondenseSettings, run_condenser
from nnkd.condense.nets import run_greedy

#: Methods that merge partition stores; GKN's vertex cover is a global property of the
#: conflict graph, which per-partition covers do not give.
PARTITIONED_METHODS = ("ksu",) + CONSISTENT_METHODS


@dataclass
class PartitionStore:
    """What one partition's condensing returns (its prototypes, never its rows)."""

    support: np.ndarray          # row numbers inside the partition
    rows: np.ndarray             # the prototype rows, as given (float32)
    codes: np.ndarray            # their class codes
    scale: float                 # covering radius of the store over its partition (working space)
    selection: str
    n_rows: int
    row_sum: np.ndarray | None = None   # KSU: the sum of the partition's rows (working space, float64)


@dataclass
class PartitionedFit:
    """The merged condensed set, scored over every row by the second pass.

    Attributes
    ----------
    prototypes : ndarray of shape (k, n_features), float32 (rows as given)
    support : ndarray of shape (k,), int64, global row numbers
    codes : ndarray of shape (k,), int64: each prototype's own class code
    owner : ndarray of shape (n_samples,), int64: each row's prototype
    counts : ndarray of shape (k, n_classes), float64: class counts of each cell
    errors : int: rows whose label differs from their cell's majority label
    scale : float: covering radius of the merged set over all rows (working space)
    merge_scale : float or None: ``gamma`` of the merge (KSU)
    selection : str: the rule most partitions used to choose their store
    curve : dict: per-partition sizes, scales and rows; the union's size
    index : Index: what ``make_index`` built over the prototypes
    """

    prototypes: np.ndarray
    support: np.ndarray
    codes: np.ndarray
    owner: np.ndarray
    counts: np.ndarray
    errors: int
    scale: float
    merge_scale: float | None
    selection: str
    curve: dict
    index: object = None


def label_codes(yb, classes: np.ndarray) -> np.ndarray:
    """Codes of ``yb`` in the sorted ``classes`` (``ValueError`` for a label not among them)."""
    yb = np.asarray(yb).reshape(-1)
    codes = np.searchsorted(classes, yb)
    codes = np.minimum(codes, len(classes) - 1)
    if not np.array_equal(classes[codes], yb):
        raise ValueError("y holds a label that is not among the classes found in it.")
    return codes.astype(np.int64)


def working_radius(dist: np.ndarray, metric: str) -> np.ndarray:
    """True distances of ``metric`` as distances of the kernels' working space (cosine:
    ``1 - cos`` becomes the euclidean distance of unit rows, ``sqrt(2 (1 - cos))``)."""
    dist = np.asarray(dist, dtype=np.float64)
    return np.sqrt(np.maximum(2.0 * dist, 0.0)) if metric == "cosine" else dist


def _condense_partition(Xb, yb, classes, settings: CondenseSettings, metric: str) -> PartitionStore:
    X = check_points(Xb, "X")
    codes = label_codes(yb, classes)
    result = run_condenser(settings, as_points(X, metric), codes, metric_code(metric))
    support = np.asarray(result.support, dtype=np.int64)
    return PartitionStore(support, X[support], codes[support], float(result.scale), result.selection, X.shape[0])


def _score_partition(Xb, yb, classes, index, metric: str):
    """Each row's prototype, the cells' class counts and the covering radius."""
    X = check_points(Xb, "X")
    codes = label_codes(yb, classes)
    dist, ind = index.query(X, 1)
    owner = ind[:, 0].astype(np.int64)
    k, c = len(index), len(classes)
    counts = np.bincount(owner * c + codes, minlength=k * c).reshape(k, c).astype(np.float64)
    return owner, counts, float(working_radius(dist[:, 0], metric).max())


def _nearest_labels(Xb, yb, classes, state, added, added_codes, settings: CondenseSettings, metric: str):
    """One repair pass over a partition: each row's nearest prototype after ``added`` joined
    the store, and the rows it labels wrong.

    ``state`` is ``(distance, code)`` of each row's nearest prototype in the store before
    (``None``: the store was empty). Only the added prototypes are searched; a row moves to one
    only when it is strictly closer (ties keep the earlier prototype, as one exact search over
    the whole store orders them), so the state equals a search over the grown store.

    Returns
    -------
    state : tuple of ndarrays
        The new ``(distance, code)`` (stays on the worker between passes).
    wrong : tuple
        The misclassified rows' features (as given), codes and positions in the partition.
    """
    X = check_points(Xb, "X")
    codes = label_codes(yb, classes)
    dist, ind = exact_knn(as_points(X, metric), added, 1, metric_code(metric), n_jobs=settings.n_jobs)
    dist, near = dist[:, 0], added_codes[ind[:, 0]]
    if state is not None:
        closer = dist < state[0]
        dist, near = np.where(closer, dist, state[0]), np.where(closer, near, state[1])
    wrong = np.flatnonzero(near != codes)
    return (dist, near), (X[wrong], codes[wrong], wrong)


def _training_rows(n: int, seed: int, holdout: float) -> np.ndarray | None:
    """The rows of a partition that may become prototypes (``None``: all of them); the
    others, a random ``holdout`` fraction drawn from ``seed``, are held out for validation.
    Drawn again from the same seed in every pass, so nothing is stored between passes."""
    if holdout <= 0.0:
        return None
    active = np.random.default_rng(seed).random(n) >= holdout
    active[0] = True                  # every partition keeps a row that can be a centre
    return active


def _ksu_partition(Xb, yb, classes, limit: int, seed: int, holdout: float, settings: CondenseSettings,
                   metric: str) -> PartitionStore:
    """The partition's greedy permutation over its training rows, up to ``limit`` centres."""
    X = check_points(Xb, "X")
    codes = label_codes(yb, classes)
    Xw = as_points(X, metric)
    active = _training_rows(X.shape[0], seed, holdout)
    net = run_greedy(Xw, metric_code(metric), start=start_row(Xw, active), max_centres=limit,
                     active=None if active is None else active.view(np.uint8), n_jobs=settings.n_jobs)
    support = np.asarray(net.order, dtype=np.int64)
    return PartitionStore(support, X[support], codes[support], net.covering_radius, "merged", X.shape[0],
                          Xw.astype(np.float64).sum(axis=0))


#: Most sizes the KSU merge's second scoring pass adds near the bound's best grid sizes.
MAX_REFINED_SIZES = 256
#: Grid sizes whose bound is within this relative slack of the lowest are refined.
REFINE_SLACK = 0.05


def _add_counts(a, b):
    """Element-wise sum of two partitions' (all rows, held-out rows) prefix counts."""
    return [x + y for x, y in zip(a[0], b[0])], [x + y for x, y in zip(a[1], b[1])]


def prefix_grid(m: int, ratio: float = 1.05) -> np.ndarray:
    """Prefix sizes scored by the KSU merge: every size up to 32, then geometric steps of
    ``ratio`` up to ``m`` (included)."""
    sizes = np.unique(np.round(np.geomspace(1, max(m, 1), 2 + int(np.log(max(m, 1)) / np.log(ratio)))))
    sizes = np.union1d(np.arange(1, min(m, 32) + 1), sizes.astype(np.int64))
    return sizes[(sizes >= 1) & (sizes <= m)].astype(np.int64)


def _score_prefixes(Xb, yb, classes, net_rows, grid, seed: int, holdout: float, settings: CondenseSettings,
                    metric: str):
    """Class counts of every cell of every prefix ``net_rows[:m]``, ``m`` in ``grid``: of all
    rows and of the held-out ones. Each row's nearest prototype is tracked as prefixes grow
    (only the new prototypes are searched at each step; ties keep the earlier one, as a
    search over the whole prefix would)."""
    X = as_points(check_points(Xb, "X"), metric)
    codes = label_codes(yb, classes)
    held = _training_rows(X.shape[0], seed, holdout)
    held = None if held is None else ~held
    code, c = metric_code(metric), len(classes)
    best = np.full(X.shape[0], np.inf)
    owner = np.zeros(X.shape[0], dtype=np.int64)
    counts_all, counts_held, lo = [], [], 0
    for m in grid:
        dist, ind = exact_knn(X, np.ascontiguousarray(net_rows[lo:m]), 1, code, n_jobs=settings.n_jobs)
        closer = dist[:, 0] < best
        best[closer], owner[closer] = dist[closer, 0], ind[closer, 0] + lo
        lo = m
        counts_all.append(np.bincount(owner * c + codes, minlength=m * c).reshape(m, c))
        if held is not None:
            counts_held.append(np.bincount(owner[held] * c + codes[held], minlength=m * c).reshape(m, c))
    return counts_all, counts_held


def _grid_tolerance_choice(grid: np.ndarray, rates: np.ndarray, error_tolerance: float) -> int:
    """Smallest grid size from which the held-out error rate stays within ``error_tolerance``
    of the lowest (:func:`~nnkd.condense.ksu.tolerance_choice` on a grid of sizes)."""
    above = np.flatnonzero(rates > rates.min() + error_tolerance)
    return int(grid[0] if above.size == 0 else grid[min(above[-1] + 1, len(grid) - 1)])


def _ksu_merge(settings: CondenseSettings, blocks, labels, classes, n: int, offsets, metric: str):
    """KSU over partitions: the scale is chosen once, over all rows, on the merged permutation.

    Each partition orders its rows farthest-first (up to the same limit a single-process fit
    scans); the union ``U`` of those prefixes is ordered farthest-first again, and one pass
    over the partitions scores every prefix size of a grid: its training error over all
    ``n`` rows (cells labelled by their majority) for the bound, and, for
    ``selection="validation"``/``"auto"``, its held-out error on the rows each partition
    held out (cells labelled by the training rows only); a second, shorter pass scores the
    sizes next to the grid sizes whose bound is near the lowest. The size is chosen as
    :func:`~nnkd.condense.ksu.ksu_condense` chooses it, with the bound of all ``n`` rows.
    """
    import dask

    s = settings
    if s.selection not in SELECTIONS:
        raise ValueError(f"selection={s.selection!r} is not supported; use one of {SELECTIONS}.")
    cap, target = s.counts(n)
    rule = "target_size" if target is not None else s.selection
    holdout = s.validation_fraction if rule in ("validation", "auto") else 0.0
    if holdout:
        _n_folds(holdout)                     # the same check and message as in one process
    if target is not None:
        limit = target
    elif rule == "bound":
        limit = min(cap or n, max(1, (n - 1) // 2))   # Q is infinite once 2m reaches n
    else:
        limit = cap if cap is not None else max(1, n // 2)
    seeds = check_random_state(s.random_state).randint(0, 2**31 - 1, size=len(blocks))
    part = dask.delayed(_ksu_partition, pure=True)
    stores = list(dask.compute(*[part(b, lab, classes, limit, int(seed), holdout, s, metric)
                                 for b, lab, seed in zip(blocks, labels, seeds)]))
    U = np.concatenate([st.rows for st in stores])
    U_codes = np.concatenate([st.codes for st in stores])
    U_rows = np.concatenate([st.support + offsets[p] for p, st in enumerate(stores)])
    Uw = as_points(U, metric)
    # Start at the row of U farthest from the mean of all rows, the first centre one process
    # over all rows takes wherever U holds it. With one partition it does (it is the
    # partition's own first centre) and U is a prefix of that process's permutation, which
    # greedy over U reproduces: one partition gives the one-process net.
    centre = np.sum([st.row_sum for st in stores], axis=0) / sum(st.n_rows for st in stores)
    merged = run_greedy(Uw, metric_code(metric), start=start_row(Uw, centre=centre), max_centres=limit,
                        n_jobs=s.n_jobs).order
    shared_rows = dask.delayed(np.ascontiguousarray(Uw[merged]), pure=True)
    score = dask.delayed(_score_prefixes, pure=True)

    def scores(sizes):
        """Summed class counts (all rows, held-out rows) of the prefixes of ``sizes``: one pass,
        the partitions' counts added pairwise on the workers, so only the sum reaches here."""
        level = [score(b, lab, classes, shared_rows, sizes, int(seed), holdout, s, metric)
                 for b, lab, seed in zip(blocks, labels, seeds)]
        add = dask.delayed(_add_counts, pure=True)
        while len(level) > 1:
            level = [add(level[j], level[j + 1]) if j + 1 < len(level) else level[j]
                     for j in range(0, len(level), 2)]
        return dask.compute(level[0])[0]

    def bound_curve(sizes, counts):
        """Training errors (cells labelled by their majority) and the bound of each size."""
        errors = np.array([int(cn.sum() - cn.max(axis=1).sum()) for cn in counts])
        return errors, compression_bound(n, errors / n, 2 * sizes, s.delta)

    grid = prefix_grid(len(merged))
    counts, held = scores(grid)
    train_errors, bound = bound_curve(grid, counts)
    # The training errors are not monotone in the size and the bound is flat near its
    # minimum, so the grid's steps alone can move the choice: a second pass scores every size
    # between the neighbours of each grid size whose bound is within REFINE_SLACK of the
    # lowest (at most MAX_REFINED_SIZES of them), as one process scores every size.
    # (Nothing to refine where every size's bound is infinite.)
    near = np.flatnonzero(bound <= bound.min() * (1 + REFINE_SLACK)) if np.isfinite(bound.min()) else []
    between = np.setdiff1d(np.concatenate([np.arange(grid[max(i - 1, 0)] + 1, grid[min(i + 1, len(grid) - 1)])
                                           for i in near] + [np.empty(0, dtype=np.int64)]), grid)
    if rule != "target_size" and between.size:
        if between.size > MAX_REFINED_SIZES:
            keep = np.unique(np.round(np.linspace(0, between.size - 1, MAX_REFINED_SIZES)).astype(np.int64))
            between = between[keep]
        more_counts, more_held = scores(between)
        grid, all_counts, all_held = np.concatenate([grid, between]), counts + more_counts, held + more_held
        order = np.argsort(grid, kind="stable")
        grid, counts = grid[order], [all_counts[j] for j in order]
        held = [all_held[j] for j in order] if holdout else []
        train_errors, bound = bound_curve(grid, counts)
    best = int(grid[np.argmin(bound)])        # ties: the smallest net
    curve = {"m": grid, "train_errors": train_errors, "bound": bound}
    chosen = best
    if rule == "target_size":
        chosen = int(grid[-1])
    elif rule == "bound":
        warn_vacuous(bound, best, n)
    else:
        n_held = int(held[0].sum())
        # Cells labelled by their training rows only: held-out rows do not vote on themselves.
        valid_errors = np.array([int(h.sum() - h[np.arange(len(h)), np.argmax(cn - h, axis=1)].sum())
                                 for h, cn in zip(held, counts)])
        rates = valid_errors / max(n_held, 1)
        curve.update(valid_errors=valid_errors, n_held_out=n_held)
        chosen = _grid_tolerance_choice(grid, rates, s.error_tolerance)
        rule = "validation"
        class_totals = counts[0].sum(axis=0)
        trivial = 1.0 - class_totals.max() / class_totals.sum()
        if (s.selection == "auto" and bound[grid == best][0] < trivial
                and rates[grid == best][0] <= rates.min() + s.error_tolerance):
            chosen, rule = best, "bound"
    keep = merged[:chosen]
    # Every row lies within its partition's covering radius of U, and U within this radius
    # of the chosen prefix.
    d, _ = exact_knn(np.ascontiguousarray(Uw), np.ascontiguousarray(Uw[keep]), 1, metric_code(metric),
                     n_jobs=s.n_jobs)
    merge_scale = float(np.sqrt(d.max()) if metric_code(metric) == EUCLIDEAN else d.max())
    return stores, U[keep], U_rows[keep], U_codes[keep], rule, curve, merge_scale


def _consistent_merge(settings: CondenseSettings, blocks, labels, classes, n: int, offsets, metric: str):
    """Hart/FCNN over partitions: each partition's store, then the method again on their union."""
    import dask

    condense = dask.delayed(_condense_partition, pure=True)
    stores: list[PartitionStore] = list(dask.compute(*[condense(b, lab, classes, settings, metric)
                                                         for b, lab in zip(blocks, labels)]))
    U = np.concatenate([s.rows for s in stores])
    U_codes = np.concatenate([s.codes for s in stores])
    U_rows = np.concatenate([s.support + offsets[p] for p, s in enumerate(stores)])
    keep = np.asarray(run_condenser(settings, as_points(U, metric), U_codes, metric_code(metric)).support,
                      dtype=np.int64)
    # Consistent on the union of the partition stores, not necessarily on every row (the
    # repair passes and the estimator's "consistent" report rest on the second pass).
    return stores, U[keep], U_rows[keep], U_codes[keep], "merged", {}, None


#: Most passes over the partitions that grow a merged Hart/FCNN store towards consistency.
MAX_REPAIR_ROUNDS = 10


def _absorb(settings: CondenseSettings, metric: str, prototypes, rows, codes, wrong, offsets):
    """The store grown by Hart's rule over the rows it misclassified: every prototype stays
    (the store is a prefix of the result), and each misclassified row, visited in random
    order, joins it unless the grown store already labels it right. Each round adds at least
    the first such row, so rounds end."""
    wrong_X = np.concatenate([prototypes] + [w[0] for w in wrong])
    wrong_codes = np.concatenate([codes] + [w[1] for w in wrong])
    wrong_rows = np.concatenate([rows] + [w[2] + offsets[p] for p, w in enumerate(wrong)])
    grown = hart_condense(as_points(wrong_X, metric), wrong_codes, metric_code(metric), initial=len(rows),
                          random_state=settings.random_state, n_jobs=settings.n_jobs).support
    return np.ascontiguousarray(wrong_X[grown]), wrong_rows[grown], wrong_codes[grown]


def _repair(settings: CondenseSettings, metric: str, blocks, labels, classes, offsets, prototypes, rows, codes):
    """Grow a merged Hart/FCNN store until it labels every row right (or the rounds run out).

    The first pass searches the whole store; each later pass searches only the prototypes the
    last round added, against each row's nearest distance kept on its worker (``dask.persist``),
    so a round costs a pass over the rows with a small search rather than a search of the whole
    store. Returns the store and its size after each round.
    """
    import dask

    update = dask.delayed(_nearest_labels, pure=True)
    states = [None] * len(blocks)
    sizes, added = [len(rows)], 0
    for _ in range(MAX_REPAIR_ROUNDS):
        new_rows = dask.delayed(np.ascontiguousarray(as_points(prototypes[added:], metric)), pure=True)
        new_codes = dask.delayed(codes[added:], pure=True)
        passes = dask.persist(*[update(b, lab, classes, st, new_rows, new_codes, settings, metric)
                                for b, lab, st in zip(blocks, labels, states)])
        states = [p[0] for p in passes]
        wrong = dask.compute(*[p[1] for p in passes])
        if not any(len(w[2]) for w in wrong):
            break
        added = len(rows)
        prototypes, rows, codes = _absorb(settings, metric, prototypes, rows, codes, wrong, offsets)
        sizes.append(len(rows))
    return prototypes, rows, codes, sizes


#: method -> how partitions are condensed and merged.
MERGES = {"ksu": _ksu_merge, **{m: _consistent_merge for m in CONSISTENT_METHODS}}


def check_partitioned_method(method: str) -> None:
    """Raise ``ValueError`` for a method that cannot condense dask partitions."""
    if method not in MERGES:
        raise ValueError(f"method={method!r} does not run on dask partitions; use one of {PARTITIONED_METHODS} "
                         "(or compute the array and fit in one process).")


def partitioned_classes(y):
    """Sorted distinct labels of a dask array of labels (one pass)."""
    import dask.array as da

    return np.asarray(da.unique(y).compute())


def partitioned_condense(settings: CondenseSettings, X, y, *, metric: str, make_index, classes=None,
                         ) -> tuple[PartitionedFit, np.ndarray]:
    """Condense a dask array ``X`` (rows partitioned) with labels ``y`` (see the module docstring).

    Parameters
    ----------
    settings : CondenseSettings
        The estimator's parameters; counts (``max_prototypes``, ``target_size``) apply to each
        partition and to the merged store.
    X : dask array or dataframe of shape (n_samples, n_features)
    y : dask array, dataframe column or array-like of shape (n_samples,)
    metric : str
    make_index : callable
        ``make_index(prototypes) -> fitted Index`` over the merged prototypes: the index the
        classifier will predict with (the second pass assigns rows through it).
    classes : ndarray, default=None
        Sorted labels; found with one pass over ``y`` when not given.

    Returns
    -------
    fit : PartitionedFit
    classes : ndarray
    """
    import dask

    check_partitioned_method(settings.method)
    # Progress bars inside workers would interleave; the scheduler's dashboard shows progress.
    settings = dataclasses.replace(settings, progress=False)
    X = as_row_partitions(X)
    y = labels_like(y, X)
    if classes is None:
        classes = partitioned_classes(y)
    classes = np.asarray(classes)
    blocks, labels = partition_blocks(X), list(y.to_delayed().ravel())
    offsets = partition_offsets(X)
    n = int(offsets[-1])
    stores, prototypes, rows, codes, selection, curve, merge_scale = MERGES[settings.method](
        settings, blocks, labels, classes, n, offsets, metric)
    prototypes = np.ascontiguousarray(prototypes)
    # Hart/FCNN without a cap promise a consistent store: repair the merged one until a pass
    # finds no misclassified row (or the rounds run out).
    sizes = [len(rows)]
    if settings.method in CONSISTENT_METHODS and settings.counts(n) == (None, None):
        prototypes, rows, codes, sizes = _repair(settings, metric, blocks, labels, classes, offsets,
                                                 prototypes, rows, codes)
    index = make_index(prototypes)
    # One key for the index: each worker receives it once, not once per partition.
    shared = dask.delayed(index, pure=True)
    score = dask.delayed(_score_partition, pure=True)
    scored = dask.compute(*[score(b, lab, classes, shared, metric) for b, lab in zip(blocks, labels)])
    counts = np.sum([s[1] for s in scored], axis=0)
    owner = np.concatenate([s[0] for s in scored])
    errors = int(round(counts.sum() - counts.max(axis=1).sum()))
    curve.update(partition_rows=np.array([s.n_rows for s in stores]),
                 partition_sizes=np.array([len(s.support) for s in stores]),
                 partition_scales=np.array([s.scale for s in stores]),
                 union_size=int(sum(len(s.support) for s in stores)), merge_scale=merge_scale,
                 repair_sizes=np.array(sizes))
    fit = PartitionedFit(prototypes, rows, codes, owner, counts, errors, max(s[2] for s in scored),
                         merge_scale, selection, curve, index)
    return fit, classes
