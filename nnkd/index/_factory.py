"""``make_index`` (spec string -> Index) and ``load_index`` (directory -> fitted Index)."""

from __future__ import annotations

from pathlib import Path

from nnkd._core.artifacts import read_metadata
from nnkd.index._base import FORMAT, FORMAT_VERSION, METADATA_FILE, Index
from nnkd.index._exact import ExactIndex
from nnkd.index._faiss import FaissIndex
from nnkd.index._nmslib import NmslibIndex

BACKENDS: dict[str, type[Index]] = {"exact": ExactIndex, "faiss": FaissIndex, "nmslib": NmslibIndex}


def parse_spec(spec: str) -> tuple[str, str]:
    """``"faiss:HNSW32"`` -> ``("faiss", "HNSW32")``; ``"exact"`` -> ``("exact", "")``."""
    if not isinstance(spec, str):
        raise TypeError(f"index spec must be a string such as 'exact', 'faiss:HNSW32' or 'nmslib:hnsw'; "
                        f"got {type(spec).__name__}.")
    backend, _, method = spec.partition(":")
    if backend not in BACKENDS:
        raise ValueError(f"unknown index backend {backend!r} in spec {spec!r}; use 'exact', "
                         "'faiss:<index_factory string>' or 'nmslib:<method>'.")
    if backend == "exact" and method:
        raise ValueError(f"the exact backend takes no method; use spec 'exact', not {spec!r}.")
    return backend, method


def make_index(spec: str = "exact", metric: str = "euclidean", *, n_jobs=None, **params) -> Index:
    """Make an unfitted nearest-neighbour index from a spec string.

    Parameters
    ----------
    spec : str, default="exact"
        ``"exact"`` (brute force, the reference), ``"faiss:<index_factory string>"``
        (``"faiss:Flat"``, ``"faiss:HNSW32"``, ``"faiss:IVF256,Flat"``,
        ``"faiss:IVF256,PQ16"``, ``"faiss:OPQ16,IVF256,PQ16"``, ``"faiss:SQ8"``, ...) or
        ``"nmslib:<method>"`` (``hnsw``, ``sw-graph``, ``napp``, ``vptree``,
        ``brute_force``).
    metric : {"euclidean", "sqeuclidean", "manhattan", "chebyshev", "cosine", "inner_product"}, default="euclidean"
        Distances returned are true distances of this metric (see :class:`Index`).
    n_jobs : int, default=None
        Threads for building and querying (``None``: 1, ``-1``: all cores).
    **params
        Backend build and query parameters (``efConstruction``, ``efSearch``,
        ``nprobe``, ``M``, ...); unknown names raise ``ValueError``.

    Returns
    -------
    index : Index
        Call ``index.fit(X)``, then ``index.query(Q, k)``.

    Examples
    --------
    >>> import numpy as np
    >>> from nnkd.index import make_index
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    >>> dist, ind = make_index("exact").fit(X).query([[0.0, 0.0]], k=2)
    >>> ind.tolist(), dist.tolist()
    ([[0, 2]], [[0.0, 1.0]])
    """
    backend, method = parse_spec(spec)
    return BACKENDS[backend](method, metric=metric, n_jobs=n_jobs, **params)


def load_index(path, *, n_jobs=None) -> Index:
    """Load an index written by :meth:`Index.save`.

    Checks the format version and the SHA-256 of every file before reading it, and never
    unpickles anything.

    Parameters
    ----------
    path : str or path-like
        The directory given to ``save``.
    n_jobs : int, default=None
        Threads for queries on the loaded index.

    Returns
    -------
    index : Index
        Fitted, with the saved metric and parameters.

    Raises
    ------
    FileNotFoundError
        ``path`` or one of its files is missing.
    ValueError
        Unknown format or version, checksum mismatch, or contents inconsistent with the
        metadata.
    """
    directory = Path(path)
    meta = read_metadata(directory, METADATA_FILE, FORMAT, FORMAT_VERSION, "index")
    meta_path = directory / METADATA_FILE
    backend = meta.get("backend")
    if backend not in BACKENDS:
        raise ValueError(f"{meta_path} names unknown backend {backend!r}.")
    params = {**meta.get("build_params", {}), **meta.get("query_params", {})}
    index = BACKENDS[backend](meta.get("method", ""), metric=meta.get("metric"), n_jobs=n_jobs, **params)
    index._dim = int(meta["dim"])
    index._load_native(directory)
    if len(index) != meta["n"] or index._dim != meta["dim"]:
        raise ValueError(f"{directory} holds {len(index)} rows of dim {index._dim}; its metadata says "
                         f"{meta['n']} rows of dim {meta['dim']}.")
    return index
