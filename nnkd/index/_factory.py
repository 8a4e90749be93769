"""``make_index`` (spec string -> Index) and ``load_index`` (directory -> fitted Index)."""

from __future__ import annotations

from pathlib import Path

from nnkd._core.artifacts import json_snippet, read_metadata, scalars_param, trust_native_files
from nnkd.index._base import FORMAT, INDEX_METRICS, METADATA_FILE, READ_VERSIONS, Index
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


def load_index(path, *, n_jobs=None, key=None, key_file=None, trust_native: bool | None = None) -> Index:
    """Load an index written by :meth:`Index.save`.

    Checks the signature (when a key is configured: ``key``, ``key_file`` or
    ``NNKD_ARTIFACT_KEY``; unsigned indexes are then refused) and the SHA-256 of every file,
    then the metadata's schema, before the backend's native parser reads anything. Nothing is
    unpickled. FAISS and NMSLIB parse their files in C++ without checks of their own, and a
    modified file can crash the process: their indexes load only when signed and verified
    with your key, or when you vouch for the files (``trust_native=True``, or
    ``NNKD_TRUST_NATIVE=1``) because you wrote them yourself.

    Parameters
    ----------
    path : str or path-like
        The directory given to ``save``.
    n_jobs : int, default=None
        Threads for queries on the loaded index.
    key : str or bytes, default=None
    key_file : path, default=None
    trust_native : bool, default=None
        Parse an unsigned FAISS/NMSLIB native file (default: ``NNKD_TRUST_NATIVE=1``).

    Returns
    -------
    index : Index
        Fitted, with the saved metric and parameters.

    Raises
    ------
    FileNotFoundError
        ``path`` or one of its files is missing.
    ValueError
        A bad signature or checksum, unknown format or version, metadata outside its schema,
        or contents inconsistent with the metadata.
    """
    directory = Path(path)
    meta = read_metadata(directory, METADATA_FILE, FORMAT, READ_VERSIONS, "index", key=key, key_file=key_file)
    meta_path = directory / METADATA_FILE
    backend = meta.get("backend")
    if backend not in BACKENDS:
        raise ValueError(f"{meta_path} names unknown backend {json_snippet(backend)}.")
    checks = {"method": (lambda v: isinstance(v, str), "a string"),
              "metric": (lambda v: v in INDEX_METRICS, f"one of {list(INDEX_METRICS)}"),
              "build_params": (scalars_param, "an object of JSON scalars"),
              "query_params": (scalars_param, "an object of JSON scalars"),
              "dim": (lambda v: type(v) is int and v >= 1, "an integer >= 1"),
              "n": (lambda v: type(v) is int and v >= 1, "an integer >= 1")}
    for name, (check, what) in checks.items():
        if not check(meta.get(name)):
            raise ValueError(f"{meta_path}: {name!r} must be {what}; got {json_snippet(meta.get(name))}.")
    if backend != "exact" and not meta["signed"] and not trust_native_files(trust_native):
        raise ValueError(f"{directory} holds an unsigned {backend} native index, which {backend} parses without "
                         "checks (a modified file can crash the process): sign artifacts with a key "
                         "(NNKD_ARTIFACT_KEY or --key-file), or, for files you wrote yourself, pass "
                         "trust_native=True (--trust-native, NNKD_TRUST_NATIVE=1).")
    index = BACKENDS[backend](meta["method"], metric=meta["metric"], n_jobs=n_jobs,
                              **{**meta["build_params"], **meta["query_params"]})
    index._dim, index._n = meta["dim"], meta["n"]
    index._load_native(directory)
    if len(index) != meta["n"] or index._dim != meta["dim"]:
        raise ValueError(f"{directory} holds {len(index)} rows of dim {index._dim}; its metadata says "
                         f"{meta['n']} rows of dim {meta['dim']}.")
    return index
