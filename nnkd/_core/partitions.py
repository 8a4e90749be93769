"""Dask inputs: recognising them, putting them in row partitions, reading files lazily.

Every layer that works on dask collections (index shards, partitioned condensing, teacher
labelling, bulk prediction) starts here, so they agree on what a partition is: a block of
whole rows (the feature axis in one chunk) as float32, with labels chunked like the rows.

Dask itself is imported only when a dask collection is handed in (``pip install
'nnkd[dask]'``): the base install does not need it. The work runs wherever dask runs it: on
the active ``dask.distributed`` client when there is one, otherwise dask's local scheduler.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
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


def compute_tasks(tasks: list, *, desc: str, progress: bool = False) -> list:
    """``dask.compute(*tasks)`` as a list, with a progress bar on stderr counting finished tasks.

    The bar needs the tasks' completion events, which only a ``dask.distributed`` client
    gives: on the active client the tasks are submitted as futures and counted as they finish
    (the results are the same); without one, or with ``progress=False``, it is one
    ``dask.compute``. The bar is drawn here, in the client, so workers' output never
    interleaves with it.
    """
    import dask

    client = active_client() if progress and len(tasks) > 1 else None
    if client is None:
        return list(dask.compute(*tasks))
    from distributed import as_completed
    from tqdm.auto import tqdm

    futures = client.compute(list(tasks))
    for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="partition", leave=False):
        pass
    return client.gather(futures)


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


#: What ``--dask`` accepts.
DASK_SPEC_HELP = "local (a LocalCluster, one worker per core), local:N (N workers) or tcp://host:port"


@contextmanager
def dask_client(spec: str):
    """A ``dask.distributed`` client for ``spec`` (:data:`DASK_SPEC_HELP`), closed on exit.

    ``local[:N]`` starts a ``LocalCluster`` on 127.0.0.1 with ``N`` single-threaded worker
    processes (default: one per core) and stops it afterwards; ``tcp://host:port`` connects
    to a running scheduler and leaves the cluster as it was.
    """
    import_optional("distributed", "distributed", "--dask", "or pip install 'nnkd[dask]'")
    from distributed import Client, LocalCluster

    if not isinstance(spec, str):
        raise TypeError(f"dask spec must be a string: {DASK_SPEC_HELP}.")
    if spec.startswith("tcp://"):
        with Client(spec) as client:
            yield client
        return
    name, _, count = spec.partition(":")
    if name != "local" or (count and not count.isdigit()) or count == "0":
        raise ValueError(f"--dask {spec!r} is not understood; use {DASK_SPEC_HELP}.")
    workers = int(count) if count else max(1, os.cpu_count() or 1)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def _npy_files(path: Path) -> list[Path]:
    files = sorted(path.glob("*.npy"))
    if not files:
        raise ValueError(f"{path} holds no .npy files.")
    return files


def read_rows_lazily(path, *, label: str | None = None, labels=None, rows_per_partition: int | None = None):
    """Features (and labels) of a file or directory as dask arrays, read partition by partition.

    - ``.npy`` file, or a directory of ``.npy`` files (concatenated in name order): features;
      labels from ``labels`` (a ``.npy`` file or directory laid out the same way) if given;
    - ``.parquet`` file, or a directory of Parquet files: the ``label`` column (if named) holds
      the labels, every other column a feature;
    - ``.zarr``: a Zarr array of features.

    Returns
    -------
    X : dask array of shape (n_samples, n_features), float32, partitioned by rows
    y : dask array of shape (n_samples,) or None
    """
    da = import_dask("Reading files lazily")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    parquet = path.suffix.lower() == ".parquet" or (path.is_dir() and any(path.glob("*.parquet")))
    if parquet:
        return _read_parquet_lazily(path, label)
    if label is not None:
        raise ValueError(f"--label names a column of a table; {path} holds arrays (pass the labels as a .npy file).")
    if path.suffix.lower() == ".zarr":
        X = read_zarr(path)
    elif path.is_dir():
        X = da.concatenate([read_npy_lazily(f, rows_per_partition) for f in _npy_files(path)], axis=0)
    else:
        X = read_npy_lazily(path, rows_per_partition)
    y = None
    if labels is not None:
        labels = Path(labels)
        parts = _npy_files(labels) if labels.is_dir() else [labels]
        arrays = [np.load(f, mmap_mode="r", allow_pickle=False) for f in parts]
        if any(a.ndim != 1 for a in arrays):
            raise ValueError(f"{labels}: labels must be 1-D arrays.")
        y = labels_like(np.concatenate(arrays), X, str(labels))
    return X, y


def _parquet_part(path: str, row_group: int, columns: list[str]) -> np.ndarray:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path).read_row_group(row_group, columns=columns)
    return np.column_stack([table.column(c).to_numpy() for c in columns]) if len(columns) > 1 \
        else table.column(columns[0]).to_numpy()


def _read_parquet_lazily(path: Path, label: str | None):
    """One partition per Parquet row group, its row count read from the file's footer (so
    the partition sizes are known without reading any data)."""
    import_optional("pyarrow", "pyarrow", "Reading Parquet files", "or pip install 'nnkd[parquet]'")
    import dask
    import pyarrow.parquet as pq

    da = import_dask("Reading Parquet files lazily")
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    columns = None
    X_parts, y_parts = [], []
    for f in files:
        try:
            meta = pq.ParquetFile(f)
        except Exception as exc:                 # pyarrow raises its own error types
            raise ValueError(f"{f} is not a readable Parquet file: {exc}") from None
        schema = meta.schema_arrow
        if columns is None:
            if label is not None and label not in schema.names:
                raise ValueError(f"{f} has no column {label!r}; its columns: {schema.names[:20]}.")
            columns = [c for c in schema.names if c != label]
            bad = [c for c in columns if not (schema.field(c).type.num_fields == 0
                                              and np.dtype(schema.field(c).type.to_pandas_dtype()).kind in "biuf")]
            if bad or not columns:
                raise ValueError(f"{f}: feature column(s) {bad[:5] or columns} are not numeric.")
        elif [c for c in schema.names if c != label] != columns:
            raise ValueError(f"{f} has columns {schema.names[:20]}, unlike {files[0]}.")
        for g in range(meta.num_row_groups):
            rows = meta.metadata.row_group(g).num_rows
            if rows == 0:
                continue
            X_parts.append(da.from_delayed(dask.delayed(_parquet_part)(str(f), g, columns), shape=(rows, len(columns)),
                                           dtype=np.float64))
            if label is not None:
                y_parts.append(da.from_delayed(dask.delayed(_parquet_part)(str(f), g, [label]), shape=(rows,),
                                               dtype=np.dtype(schema.field(label).type.to_pandas_dtype())))
    if not X_parts:
        raise ValueError(f"{path} has no rows.")
    X = as_row_partitions(da.concatenate(X_parts, axis=0), str(path))
    return X, (da.concatenate(y_parts) if label is not None else None)
