"""Condensing a dask array by partitions: the rows stay where they live.

- **KSU** orders the rows as one process does: the exact farthest-first traversal of
  :mod:`nnkd.condense.traversal` (each partition's rows and their nearest-centre state stay
  on its worker; a round moves them to the centres picked since the last one and returns a
  few candidates), with the class counts of every cell of every prefix kept in the client.
  The size is then chosen as in one process, by the bound of all ``n`` rows or by the error
  on rows each partition held out. With ``selection="bound"`` the result is the one-process
  net whatever the partitioning (up to float rounding in exact ties): the same prototypes,
  scale, training error and bound. (Nets of the partitions merged by a second traversal of
  their union cover every row within twice the partitions' scale, but their order differs
  from the one-process order, and the bound, flat near its minimum, then chose 29-32
  prototypes where one process chose 108: 0.8-1.1 points of test accuracy on 1M rows.)
- **Hart and FCNN**: every row partition is condensed where it lives and only its store
  comes back (the prototype rows, their labels and the scale); the method runs again on the
  union ``U`` of the stores, with the rows' own labels. That store is consistent on ``U``,
  not necessarily on every row, so (without a cap) passes over the partitions collect the
  rows it labels wrong and Hart's rule absorbs them into it (every prototype stays) until a
  pass finds none, at most ``MAX_REPAIR_ROUNDS`` times: the result is then consistent on all
  rows, as a single-process store is. Each row's nearest prototype stays on its worker
  between passes, so a pass after the first searches only the prototypes the last round
  added. The rows a repair adds can make earlier prototypes redundant, so the repaired store
  is condensed once more on its own and repaired again, and that store is kept when smaller
  (``benchmarks/results/scale.md``, 1M rows: 18,019-19,712 prototypes for 1, 2, 4 and 16
  partitions, where one process keeps 22,575 and is 0.13-0.16 points more accurate).
- **Second pass.** Every partition assigns its rows to the nearest prototype (through the
  estimator's index, shipped to each worker once): per-cell class counts (the prototypes'
  majority labels), the training error ``alpha`` over *all* rows, the covering radius and
  the cells. The bound is the compression bound of the prototypes at the error ``alpha``
  measured over all ``n`` rows, the statement of a single-process fit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state

from nnkd._core.distances import exact_knn
from nnkd._core.metrics import as_points, check_points, metric_code
from nnkd._core.partitions import (as_row_partitions, compute_tasks, labels_like, partition_blocks,
                                   partition_offsets)
from nnkd.condense.bounds import compression_bound
from nnkd.condense.hart import hart_condense
from nnkd.condense.ksu import SELECTIONS, _n_folds, tolerance_choice, warn_vacuous
from nnkd.condense.methods import CONSISTENT_METHODS, CondenseSettings, run_condenser
from nnkd.condense.traversal import (TraversalState, active_sum, farthest_from, pick_centres, traversal_state,
                                     traversal_step)

#: Methods that run on partitions; GKN's vertex cover is a global property of the conflict
#: graph, which per-partition covers do not give.
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
    scale : float: covering radius of the prototypes over all rows (working space)
    selection : str: the rule that chose the size (KSU), ``"merged"`` (Hart/FCNN)
    curve : dict: KSU's prefix curve; Hart/FCNN's partition sizes, scales and union size;
        the rows of every partition and the repair's store sizes
    index : Index: what ``make_index`` built over the prototypes
    """

    prototypes: np.ndarray
    support: np.ndarray
    codes: np.ndarray
    owner: np.ndarray
    counts: np.ndarray
    errors: int
    scale: float
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
    others, a random ``holdout`` fraction drawn from the partition's ``seed`` (so a fit is
    reproducible from ``random_state``), are held out for validation."""
    if holdout <= 0.0:
        return None
    active = np.random.default_rng(seed).random(n) >= holdout
    active[0] = True                  # every partition keeps a row that can be a centre
    return active


def _traversal_init(Xb, yb, classes, offset: int, seed: int, holdout: float, metric: str) -> TraversalState:
    X = check_points(Xb, "X")
    return traversal_state(X, label_codes(yb, classes), offset, _training_rows(X.shape[0], seed, holdout), metric)


class _CellCounts:
    """Class counts of every cell as centres are added, from the moves the partitions report,
    and the errors of each prefix: training rows against their cell's majority of training
    votes, held-out rows against the same label, and all rows against the majority of all
    (the bound's error over all ``n`` rows). Ties go to the smallest class code, as in the
    one-process traversal."""

    def __init__(self, size: int, n_classes: int):
        self.train = np.zeros((size, n_classes), dtype=np.int64)
        self.held = np.zeros((size, n_classes), dtype=np.int64)
        self.right = np.zeros((3, size), dtype=np.int64)     # per cell: train, held, all rows right
        self.total = np.zeros(3, dtype=np.int64)

    def add(self, k: int, moves: list[np.ndarray]) -> np.ndarray:
        """Apply centre ``k``'s moves (``(from, code, held_out, count)`` rows of every
        partition); returns the rows labelled right (train, held, all) after it."""
        moves = np.concatenate(moves)
        for held, counts in ((0, self.train), (1, self.held)):
            sel = moves[moves[:, 2] == held]
            np.add.at(counts, (np.full(len(sel), k), sel[:, 1]), sel[:, 3])
            came = sel[sel[:, 0] >= 0]
            np.subtract.at(counts, (came[:, 0], came[:, 1]), came[:, 3])
        cells = np.union1d(moves[moves[:, 0] >= 0, 0], [k])
        vote = np.argmax(self.train[cells], axis=1)
        right = np.stack([self.train[cells, vote], self.held[cells, vote],
                          (self.train[cells] + self.held[cells]).max(axis=1)])
        self.total += right.sum(axis=1) - self.right[:, cells].sum(axis=1)
        self.right[:, cells] = right
        return self.total.copy()


def _ksu_traversal(settings: CondenseSettings, blocks, labels, classes, n: int, offsets, metric: str,
                   progress: bool = False):
    """KSU over partitions: the one-process greedy permutation (:mod:`nnkd.condense.traversal`)
    with the class counts of every prefix, then the size chosen as
    :func:`~nnkd.condense.ksu.ksu_condense` chooses it, by the bound over all ``n`` rows (cells
    labelled by their majority) or, for ``selection="validation"``/``"auto"``, by the error
    on rows each partition holds out (cells labelled by the training rows only; held-out
    rows never become centres)."""
    import dask
    from tqdm.auto import tqdm

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
    init = dask.delayed(_traversal_init, pure=True)
    states = list(dask.persist(*[init(b, lab, classes, int(offsets[p]), int(seed), holdout, metric)
                                 for p, (b, lab, seed) in enumerate(zip(blocks, labels, seeds))]))
    sums = dask.compute(*[dask.delayed(active_sum, pure=True)(st) for st in states])
    n_active = int(sum(c for _, c in sums))
    limit = min(limit, n_active)
    # The first centre: the active row farthest from the active rows' mean (start_row's rule).
    mean = np.sum([v for v, _ in sums], axis=0) / n_active
    far = [f for f in dask.compute(*[dask.delayed(farthest_from, pure=True)(st, mean) for st in states]) if f]
    first = max(far, key=lambda f: (f[0], -f[1]))
    pending = (np.array([first[1]]), first[2][None, :], first[3][None, :], np.array([first[4]]))
    picked, right, cells = [], [], _CellCounts(limit, len(classes))
    step = dask.delayed(traversal_step, pure=True)
    bar = tqdm(total=limit, desc="KSU traversal", unit="centre", disable=not progress, leave=False)
    done = rounds = 0
    while pending is not None:                # a round: the partitions apply the pending centres
        rows = dask.delayed(np.ascontiguousarray(pending[1]), pure=True)
        passes = dask.persist(*[step(st, pending[0], rows, done, len(classes), metric) for st in states])
        states = [q[0] for q in passes]
        summaries = dask.compute(*[q[1] for q in passes])
        rounds += 1
        for j in range(len(pending[0])):
            right.append(cells.add(done + j, [sm[0][j] for sm in summaries]))
        picked.append(pending)
        bar.update(len(pending[0]))
        done += len(pending[0])
        pending = pick_centres(summaries, limit - done, metric) if done < limit else None
    bar.close()
    order, _, given, codes = (np.concatenate(parts) for parts in zip(*picked))
    right = np.array(right)
    m = np.arange(1, len(order) + 1)
    train_errors = n - right[:, 2]
    bound = compression_bound(n, train_errors / n, 2 * m, s.delta)
    best = int(np.argmin(bound)) + 1          # ties: the smallest net
    curve = {"m": m, "train_errors": train_errors, "bound": bound, "rounds": rounds}
    chosen = best
    if rule == "target_size":
        chosen = len(order)
    elif rule == "bound":
        warn_vacuous(bound, best, n)
    else:
        n_held = n - n_active
        valid_errors = n_held - right[:, 1]
        rates = valid_errors / max(n_held, 1)
        curve.update(valid_errors=valid_errors, n_held_out=n_held)
        chosen = min(tolerance_choice(valid_errors, max(n_held, 1), s.error_tolerance), len(order))
        rule = "validation"
        # With one centre every row is in its cell: the rows it labels right are the
        # majority class's, and the constant classifier errs on the rest.
        trivial = 1.0 - right[0, 2] / n
        if (s.selection == "auto" and bound[best - 1] < trivial
                and rates[best - 1] <= rates.min() + s.error_tolerance):
            chosen, rule = best, "bound"
    return given[:chosen], order[:chosen], codes[:chosen], rule, curve


def _consistent_merge(settings: CondenseSettings, blocks, labels, classes, n: int, offsets, metric: str,
                      progress: bool = False):
    """Hart/FCNN over partitions: each partition's store, then the method again on their union."""
    import dask

    condense = dask.delayed(_condense_partition, pure=True)
    stores: list[PartitionStore] = compute_tasks([condense(b, lab, classes, settings, metric)
                                                  for b, lab in zip(blocks, labels)],
                                                 desc=f"{settings.method} partition stores", progress=progress)
    U = np.concatenate([s.rows for s in stores])
    U_codes = np.concatenate([s.codes for s in stores])
    U_rows = np.concatenate([s.support + offsets[p] for p, s in enumerate(stores)])
    keep = np.asarray(run_condenser(settings, as_points(U, metric), U_codes, metric_code(metric)).support,
                      dtype=np.int64)
    # Consistent on the union of the partition stores, not necessarily on every row (the
    # repair passes and the estimator's "consistent" report rest on the second pass).
    curve = {"partition_sizes": np.array([len(s.support) for s in stores]),
             "partition_scales": np.array([s.scale for s in stores]), "union_size": len(U)}
    return U[keep], U_rows[keep], U_codes[keep], "merged", curve


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


def _repair(settings: CondenseSettings, metric: str, blocks, labels, classes, offsets, prototypes, rows, codes,
            progress: bool = False):
    """Grow a merged Hart/FCNN store until it labels every row right (or the rounds run out).

    The first pass searches the whole store; each later pass searches only the prototypes the
    last round added, against each row's nearest distance kept on its worker (``dask.persist``),
    so a round costs a pass over the rows with a small search rather than a search of the whole
    store. Returns the store, its size after each round and whether the last pass found every
    row labelled right.
    """
    import dask
    from tqdm.auto import tqdm

    update = dask.delayed(_nearest_labels, pure=True)
    states = [None] * len(blocks)
    sizes, added, consistent = [len(rows)], 0, False
    bar = tqdm(total=MAX_REPAIR_ROUNDS, desc="repair passes", unit="pass", disable=not progress, leave=False)
    for _ in range(MAX_REPAIR_ROUNDS):
        new_rows = dask.delayed(np.ascontiguousarray(as_points(prototypes[added:], metric)), pure=True)
        new_codes = dask.delayed(codes[added:], pure=True)
        passes = dask.persist(*[update(b, lab, classes, st, new_rows, new_codes, settings, metric)
                                for b, lab, st in zip(blocks, labels, states)])
        states = [p[0] for p in passes]
        wrong = dask.compute(*[p[1] for p in passes])
        n_wrong = sum(len(w[2]) for w in wrong)
        bar.update()
        bar.set_postfix(prototypes=len(rows), wrong=n_wrong)
        if not n_wrong:
            consistent = True
            break
        added = len(rows)
        prototypes, rows, codes = _absorb(settings, metric, prototypes, rows, codes, wrong, offsets)
        sizes.append(len(rows))
    bar.close()
    return prototypes, rows, codes, sizes, consistent


#: method -> how partitions are condensed and merged.
MERGES = {"ksu": _ksu_traversal, **{m: _consistent_merge for m in CONSISTENT_METHODS}}


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
    # Progress bars inside workers would interleave: the bars are drawn here, in the client.
    progress = settings.progress
    settings = dataclasses.replace(settings, progress=False)
    X = as_row_partitions(X)
    y = labels_like(y, X)
    if classes is None:
        classes = partitioned_classes(y)
    classes = np.asarray(classes)
    blocks, labels = partition_blocks(X), list(y.to_delayed().ravel())
    offsets = partition_offsets(X)
    n = int(offsets[-1])
    prototypes, rows, codes, selection, curve = MERGES[settings.method](
        settings, blocks, labels, classes, n, offsets, metric, progress=progress)
    prototypes = np.ascontiguousarray(prototypes)
    # Hart/FCNN without a cap promise a consistent store: repair the merged one until a pass
    # finds no misclassified row (or the rounds run out).
    sizes, reduced = [len(rows)], []
    if settings.method in CONSISTENT_METHODS and settings.counts(n) == (None, None):
        prototypes, rows, codes, sizes, consistent = _repair(settings, metric, blocks, labels, classes, offsets,
                                                             prototypes, rows, codes, progress=progress)
        if consistent:
            # The repair only adds rows, and the rows it adds can make earlier prototypes
            # redundant: the method over the repaired store alone, repaired again on every row,
            # is kept when it is smaller (still consistent on every row).
            keep = np.asarray(run_condenser(settings, as_points(prototypes, metric), codes,
                                            metric_code(metric)).support, dtype=np.int64)
            small, small_rows, small_codes, reduced, small_consistent = _repair(
                settings, metric, blocks, labels, classes, offsets, np.ascontiguousarray(prototypes[keep]),
                rows[keep], codes[keep], progress=progress)
            if small_consistent and len(small_rows) < len(rows):
                prototypes, rows, codes = small, small_rows, small_codes
    index = make_index(prototypes)
    # One key for the index: each worker receives it once, not once per partition.
    shared = dask.delayed(index, pure=True)
    score = dask.delayed(_score_partition, pure=True)
    scored = compute_tasks([score(b, lab, classes, shared, metric) for b, lab in zip(blocks, labels)],
                           desc="scoring partitions", progress=progress)
    counts = np.sum([s[1] for s in scored], axis=0)
    owner = np.concatenate([s[0] for s in scored])
    errors = int(round(counts.sum() - counts.max(axis=1).sum()))
    curve.update(partition_rows=np.diff(offsets), repair_sizes=np.array(sizes), reduced_sizes=np.array(reduced))
    fit = PartitionedFit(prototypes, rows, codes, owner, counts, errors, max(s[2] for s in scored),
                         selection, curve, index)
    return fit, classes
