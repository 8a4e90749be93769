"""Dask inputs: recognising them, putting them in row partitions, reading files lazily.

Every layer that works on dask collections (index shards, partitioned condensing, teacher
labelling, bulk prediction) starts here, so they agree on what a partition is: a block of
whole rows (the feature axis in one chunk) as float32, with labels chunked like the rows.

Dask itself is imported only when a dask collection is handed in (``pip install
'nnkd[dask]'``): the base install does not need it. The work runs wherever dask runs it: on
the active ``dask.distributed`` client when there is one, otherwise dask's local scheduler.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnkd._core.artifacts import import_optional

#: Rows per partition when a file is read lazily and no chunk size is given.
DEFAULT_ROWS_PER_PARTITION = 250_000


def is_dask_collection(obj) -> bool:
    """Whether ``obj`` is a dask collection (array, dataframe, series), without importing dask."""
    graph = getattr(obj, "__dask_graph__", None)
    if not callable(graph) or isinstance(obj, type):
        return False
    try:
        return graph() is not None
    except Exception:           # a foreign object with an odd __dask_graph__
        return False


def import_dask(purpose: str):
    """``dask.array``, or an ``ImportError`` naming the extra that provides it."""
    return import_optional("dask.array", "dask[array]", purpose, "or pip install 'nnkd[dask]'")


def as_row_partitions(X, name: str = "X"):
    """A dask array of float32 rows chunked by rows only (one chunk across the features).

    A dask dataframe becomes its values (partition lengths are computed, one cheap pass).
    Raises ``ValueError`` for anything that is not two-dimensional with known row counts.
    """
    da = import_dask(f"{name} as a dask collection")
    if hasattr(X, "to_dask_array"):                       # dask dataframe
        X = X.to_dask_array(lengths=True)
    if not isinstance(X, da.Array):
        raise TypeError(f"{name} must be a dask array or dataframe; got {type(X).__name__}.")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got a dask array of shape {X.shape}.")
    if any(np.isnan(c) for c in X.chunks[0]) or np.isnan(X.shape[1]):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape}).")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers; got dtype {X.dtype}.")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    return X.astype(np.float32) if X.dtype != np.float32 else X


def labels_like(y, X, name: str = "y"):
    """``y`` as a 1-D dask array chunked like the rows of ``X`` (which :func:`as_row_partitions` made)."""
    da = import_dask(f"{name} as a dask collection")
    if hasattr(y, "to_dask_array"):
        y = y.to_dask_array(lengths=True)
    if not isinstance(y, da.Array):
        y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {y.shape}.")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{name} has {y.shape[0]} rows but X has {X.shape[0]}.")
    if not isinstance(y, da.Array):
        y = da.from_array(y, chunks=(X.chunks[0],))
    return y if y.chunks[0] == X.chunks[0] else y.rechunk((X.chunks[0],))


def partition_offsets(X) -> np.ndarray:
    """Row number of each partition's first row (length ``n_partitions + 1``, last = n)."""
    return np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)


def partition_blocks(X) -> list:
    """One dask.delayed per row partition of a row-partitioned array."""
    return list(X.to_delayed().ravel())


def _npy_rows(path: str, start: int, stop: int) -> np.ndarray:
    # Each task maps the file itself: the graph carries a path and two numbers, never data.
    values = np.load(path, mmap_mode="r", allow_pickle=False)
    return np.ascontiguousarray(values[start:stop], dtype=np.float32)


def read_npy_lazily(path, rows_per_partition: int | None = None):
    """A ``.npy`` file of shape (n, d) as a dask array read by partitions (memory-mapped).

    Only the header is read here; each partition task maps the file and copies its rows.
    """
    da = import_dask("Reading .npy files lazily")
    import dask

    path = Path(path)
    try:
        head = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable numeric .npy file: {exc}") from None
    if head.ndim != 2 or head.shape[0] == 0 or head.shape[1] == 0 or head.dtype.kind not in "biuf":
        raise ValueError(f"{path} must hold a non-empty 2-D numeric array; got shape {head.shape}, "
                         f"dtype {head.dtype}.")
    n, d = head.shape
    step = int(rows_per_partition or DEFAULT_ROWS_PER_PARTITION)
    if step < 1:
        raise ValueError(f"rows_per_partition={rows_per_partition} must be >= 1.")
    blocks = [da.from_delayed(dask.delayed(_npy_rows)(str(path.resolve()), s, min(s + step, n)),
                              shape=(min(s + step, n) - s, d), dtype=np.float32)
              for s in range(0, n, step)]
    return da.concatenate(blocks, axis=0)


def read_zarr(path, component: str | None = None):
    """A Zarr array of shape (n, d) as a row-partitioned dask array (``pip install zarr``)."""
    da = import_dask("Reading Zarr arrays")
    import_optional("zarr", "zarr", "Reading Zarr arrays", "pip install zarr")
    return as_row_partitions(da.from_zarr(str(path), component=component), str(path))


def active_client():
    """The active ``dask.distributed`` client, or ``None`` (no client, or distributed not installed)."""
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:                  # no client in this process
        return None


def _apply_rows(block, obj, method: str, kwargs: dict):
    return getattr(obj, method)(block, **kwargs)


def map_rows(obj, method: str, X, *, width: int | None, dtype, **kwargs):
    """``obj.<method>(block, **kwargs)`` on every row partition of ``X``, lazily: a dask array
    of shape ``(n, width)`` (``width=None``: one value per row).

    ``obj`` (a student, a teacher) enters the graph as one key, so each worker receives it
    once however many partitions it computes, and no partition carries a copy of it.
    """
    import_dask(f"{type(obj).__name__}.{method} on a dask collection")
    import dask

    X = as_row_partitions(X)
    shared = dask.delayed(obj, traverse=False)
    dtype = np.dtype(dtype)
    if width is None:
        return X.map_blocks(_apply_rows, shared, method, kwargs, drop_axis=1, dtype=dtype,
                            meta=np.empty((0,), dtype=dtype))
    return X.map_blocks(_apply_rows, shared, method, kwargs, chunks=(X.chunks[0], (int(width),)), dtype=dtype,
                        meta=np.empty((0, 0), dtype=dtype))


def first_row(X) -> np.ndarray:
    """The first row of a dask array, computed (what a probe for an output's width needs)."""
    return np.asarray(as_row_partitions(X)[:1].compute())
