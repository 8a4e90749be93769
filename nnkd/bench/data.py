"""Benchmark datasets: ann-benchmarks HDF5 files as they are, and ``.npz`` arrays.

An ann-benchmarks file holds ``train`` (base), ``test`` (queries), ``neighbors``,
``distances`` and the attribute ``distance`` (``"euclidean"`` or ``"angular"``, which is
``1 - cos``: nnkd's ``"cosine"``). An ``.npz`` holds ``X`` or ``X_train`` as base, and
``X_test`` as queries or else the last ``query_fraction`` of the rows; labels ``y`` /
``y_train`` / ``y_test`` are kept for ``nnkd bench knn``. Ground truth for ``.npz`` files
is computed with the exact backend and cached in a file keyed by the data's SHA-256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnkd._core.artifacts import import_optional
from nnkd._core.datafiles import npz_array, open_npz
from nnkd._core.metrics import check_points
from nnkd.index import make_index

#: ann-benchmarks metric names -> nnkd metric names.
ANN_METRICS = {"euclidean": "euclidean", "angular": "cosine"}
GROUND_TRUTH_K = 100


def _import_h5py():
    return import_optional("h5py", "h5py", "Reading or writing ann-benchmarks HDF5 files")


@dataclass
class BenchDataset:
    """Base rows, queries, metric and (optionally) ground truth and labels."""

    name: str
    base: np.ndarray
    queries: np.ndarray
    metric: str
    neighbors: np.ndarray | None = None
    distances: np.ndarray | None = None
    y_base: np.ndarray | None = None
    y_queries: np.ndarray | None = None

    @property
    def fingerprint(self) -> str:
        """SHA-256 over base, queries and metric (names ground-truth caches and result rows)."""
        h = hashlib.sha256()
        for part in (self.base, self.queries):
            h.update(np.ascontiguousarray(part).tobytes())
        h.update(self.metric.encode())
        return h.hexdigest()

    def info(self) -> dict:
        return {"dataset": self.name, "n_base": int(self.base.shape[0]), "n_queries": int(self.queries.shape[0]),
                "dim": int(self.base.shape[1]), "metric": self.metric, "sha256": self.fingerprint[:16]}


def load_bench_dataset(path, *, query_fraction: float = 0.1, max_queries: int | None = None) -> BenchDataset:
    """Read an ann-benchmarks ``.hdf5`` or an ``.npz`` file.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Unknown extension, missing keys, bad shapes or an unknown distance attribute.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset {path} not found")
    suffix = path.suffix.lower()
    if suffix in (".hdf5", ".h5"):
        ds = _load_hdf5(path)
    elif suffix == ".npz":
        ds = _load_npz(path, query_fraction)
    else:
        raise ValueError(f"{path}: unknown dataset format {suffix!r}; use an ann-benchmarks .hdf5 or a .npz file.")
    if max_queries is not None and ds.queries.shape[0] > max_queries:
        keep = slice(0, max_queries)
        ds.queries = ds.queries[keep]
        for name in ("neighbors", "distances", "y_queries"):
            if getattr(ds, name) is not None:
                setattr(ds, name, getattr(ds, name)[keep])
    return ds


def _load_hdf5(path: Path) -> BenchDataset:
    h5py = _import_h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path} is not a readable HDF5 file: {exc}") from None
    with f:
        missing = [key for key in ("train", "test") if key not in f]
        if missing:
            raise ValueError(f"{path} lacks the ann-benchmarks dataset(s) {missing} (has {sorted(f.keys())}).")
        distance = f.attrs.get("distance", "euclidean")
        distance = distance.decode() if isinstance(distance, bytes) else str(distance)
        if distance not in ANN_METRICS:
            raise ValueError(f"{path}: distance attribute {distance!r} is not supported; "
                             f"nnkd reads {sorted(ANN_METRICS)}.")
        base = check_points(f["train"][:], "train")
        queries = check_points(f["test"][:], "test")
        neighbors = f["neighbors"][:] if "neighbors" in f else None
        distances = f["distances"][:] if "distances" in f else None
    if base.shape[1] != queries.shape[1]:
        raise ValueError(f"{path}: train has {base.shape[1]} columns but test has {queries.shape[1]}.")
    if (neighbors is None) != (distances is None):
        raise ValueError(f"{path} has only one of 'neighbors' and 'distances'; it needs both or neither.")
    if neighbors is not None and (neighbors.shape != distances.shape or neighbors.shape[0] != queries.shape[0]):
        raise ValueError(f"{path}: neighbors {neighbors.shape} / distances {distances.shape} do not match "
                         f"{queries.shape[0]} queries.")
    return BenchDataset(path.stem, base, queries, ANN_METRICS[distance],
                        None if neighbors is None else neighbors.astype(np.int64),
                        None if distances is None else distances.astype(np.float32))


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read without unpickling.

    The one ``.npz`` reader of ``nnkd bench`` and of the benchmark scripts (their labelled
    splits, :mod:`nnkd.bench.suite`), built on the one the data commands use.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a readable ``.npz`` archive, or it holds object arrays (which would need pickle).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset {path} not found")
    with open_npz(path) as archive:
        return {key: npz_array(archive, key, path) for key in archive.files}


def _load_npz(path: Path, query_fraction: float) -> BenchDataset:
    arrays = read_npz(path)
    base_key = "X_train" if "X_train" in arrays else "X" if "X" in arrays else None
    if base_key is None:
        raise ValueError(f"{path} has neither 'X' nor 'X_train' (keys: {sorted(arrays)}).")
    y_key = "y_train" if base_key == "X_train" else "y"
    base, y_base = arrays[base_key], arrays.get(y_key)
    if "X_test" in arrays:
        queries, y_queries = arrays["X_test"], arrays.get("y_test")
    else:
        if not 0.0 < query_fraction < 1.0:
            raise ValueError(f"query_fraction={query_fraction} must lie in (0, 1).")
        n_q = max(1, round(query_fraction * base.shape[0]))
        if n_q >= base.shape[0]:
            raise ValueError(f"{path} has too few rows ({base.shape[0]}) to hold out queries.")
        base, queries = base[:-n_q], base[-n_q:]
        y_base, y_queries = (None, None) if y_base is None else (y_base[:-n_q], y_base[-n_q:])
    base, queries = check_points(base, base_key), check_points(queries, "X_test")
    if base.shape[1] != queries.shape[1]:
        raise ValueError(f"{path}: base has {base.shape[1]} columns but queries have {queries.shape[1]}.")
    return BenchDataset(path.stem, base, queries, "euclidean", y_base=y_base, y_queries=y_queries)


def ensure_ground_truth(ds: BenchDataset, k: int, cache_dir: Path | None = None, n_jobs=None) -> None:
    """Fill ``ds.neighbors``/``ds.distances`` with at least ``k`` exact neighbours.

    Computed with the exact backend when missing or too short, and cached as
    ``cache_dir/groundtruth-<sha256>-<k>.npz`` (reused when the data are the same).
    """
    if ds.distances is not None and ds.distances.shape[1] >= k:
        return
    if k > ds.base.shape[0]:
        raise ValueError(f"k={k} exceeds the {ds.base.shape[0]} base rows.")
    cache = None if cache_dir is None else Path(cache_dir) / f"groundtruth-{ds.fingerprint[:16]}-{k}.npz"
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            ds.neighbors, ds.distances = data["neighbors"], data["distances"]
        return
    dist, ind = make_index("exact", ds.metric, n_jobs=n_jobs).fit(ds.base).query(ds.queries, k)
    ds.neighbors, ds.distances = ind, dist
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, neighbors=ind, distances=dist)


def convert_to_hdf5(src, dst, *, k: int = GROUND_TRUTH_K, query_fraction: float = 0.1, n_jobs=None) -> Path:
    """Write an ``.npz`` dataset in the ann-benchmarks HDF5 layout, with exact ground truth.

    Returns
    -------
    path : pathlib.Path
    """
    h5py = _import_h5py()
    ds = load_bench_dataset(src, query_fraction=query_fraction)
    ensure_ground_truth(ds, min(k, ds.base.shape[0]), n_jobs=n_jobs)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(dst, "w") as f:
        f.attrs["distance"] = {v: key for key, v in ANN_METRICS.items()}[ds.metric]
        f.attrs["point_type"] = "float"
        f.create_dataset("train", data=ds.base)
        f.create_dataset("test", data=ds.queries)
        f.create_dataset("neighbors", data=ds.neighbors.astype(np.int32))
        f.create_dataset("distances", data=ds.distances.astype(np.float32))
    return dst
