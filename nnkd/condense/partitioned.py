"""Partition-and-merge condensing of a dask array: each partition on its worker, then the union.

1. **Partitions.** Every row partition is condensed where it lives, by the method itself
   (:func:`~nnkd.condense.methods.run_condenser`, the estimator's own settings). Only its
   store comes back: the prototype rows, their labels and the scale.
2. **Merge.** The union ``U`` of the partition stores (small) is condensed once more:

   - KSU: the greedy ``gamma``-net of ``U`` with ``gamma = max_p gamma_p``, the largest
     covering radius of a partition's net over its own rows;
   - Hart and FCNN: the method again on ``U`` with the rows' own labels (the merged store
     is consistent on ``U``, not necessarily on every row).
3. **Second pass.** Every partition assigns its rows to the nearest merged prototype
   (through the estimator's index, shipped to each worker once): per-cell class counts
   (the prototypes' majority labels), the training error ``alpha`` of the merged
   classifier over *all* rows, the covering radius and the cells.

Guarantee relied on (KSU): a row of partition ``p`` lies within ``gamma_p <= gamma`` of its
partition's net ``S_p``, a subset of ``U``, and every point of ``U`` lies within ``gamma``
of the merged net ``S`` (a ``gamma``-net of ``U`` covers ``U``). By the triangle
inequality every row lies within ``2 gamma`` of ``S``: **the merged net is a
``2 gamma``-cover of all the data** (``scale_`` reports the covering radius measured in
the second pass). Its bound is the compression bound of ``|S|`` prototypes at the error
``alpha`` measured over all ``n`` rows, the same statement as for a single-process fit.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

import numpy as np

from nnkd._core.metrics import as_points, check_points, metric_code
from nnkd._core.partitions import as_row_partitions, labels_like, partition_blocks, partition_offsets
from nnkd.condense.ksu import central_row
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
    X = check_points(Xb, "X")
    codes = label_codes(yb, classes)
    dist, ind = index.query(X, 1)
    owner = ind[:, 0].astype(np.int64)
    k, c = len(index), len(classes)
    counts = np.bincount(owner * c + codes, minlength=k * c).reshape(k, c).astype(np.float64)
    return owner, counts, float(working_radius(dist[:, 0], metric).max())


def _merge_net(settings: CondenseSettings, U: np.ndarray, codes: np.ndarray, gamma: float, metric: str):
    """Positions in ``U`` of its greedy ``gamma``-net (at most ``max_prototypes`` of them)."""
    Uw = as_points(U, metric)
    cap, _ = settings.counts(U.shape[0])
    net = run_greedy(Uw, metric_code(metric), start=central_row(Uw), max_centres=cap, stop_radius=gamma,
                     n_jobs=settings.n_jobs)
    return net.order


def _merge_store(settings: CondenseSettings, U: np.ndarray, codes: np.ndarray, gamma: float, metric: str):
    """Positions in ``U`` of the method's store over ``U`` (Hart, FCNN)."""
    return run_condenser(settings, as_points(U, metric), codes, metric_code(metric)).support


#: method -> how the union of the partition stores is condensed.
MERGES = {"ksu": _merge_net, **{m: _merge_store for m in CONSISTENT_METHODS}}


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
    condense = dask.delayed(_condense_partition, pure=True)
    stores: list[PartitionStore] = list(dask.compute(*[condense(b, lab, classes, settings, metric)
                                                         for b, lab in zip(blocks, labels)]))
    U = np.concatenate([s.rows for s in stores])
    U_codes = np.concatenate([s.codes for s in stores])
    U_rows = np.concatenate([s.support + offsets[p] for p, s in enumerate(stores)])
    gamma = max(s.scale for s in stores)
    keep = np.asarray(MERGES[settings.method](settings, U, U_codes, gamma, metric), dtype=np.int64)
    prototypes = np.ascontiguousarray(U[keep])
    index = make_index(prototypes)
    # One key for the index: each worker receives it once, not once per partition.
    shared = dask.delayed(index, pure=True)
    score = dask.delayed(_score_partition, pure=True)
    scored = dask.compute(*[score(b, lab, classes, shared, metric) for b, lab in zip(blocks, labels)])
    counts = np.sum([s[1] for s in scored], axis=0)
    owner = np.concatenate([s[0] for s in scored])
    errors = int(round(counts.sum() - counts.max(axis=1).sum()))
    selection = Counter(s.selection for s in stores).most_common(1)[0][0]
    if settings.method in CONSISTENT_METHODS:
        # Consistent on the union of the partition stores, not necessarily on every row
        # (the estimator reports "consistent" when the second pass finds no error).
        selection = "merged"
    curve = {"partition_rows": np.array([s.n_rows for s in stores]),
             "partition_sizes": np.array([len(s.support) for s in stores]),
             "partition_scales": np.array([s.scale for s in stores]), "union_size": int(U.shape[0]),
             "merge_scale": gamma if settings.method == "ksu" else None}
    fit = PartitionedFit(prototypes, U_rows[keep], U_codes[keep], owner, counts, errors, max(s[2] for s in scored),
                         curve["merge_scale"], selection, curve, index)
    return fit, classes
