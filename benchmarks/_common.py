"""Helpers shared by the benchmark scripts: thread pinning, datasets, timing, reports.

Import this module before numpy: it pins BLAS/OpenMP threads to 1 (unless set) and Numba's
pool to ``--threads`` (read from ``sys.argv``), which must happen before those libraries load.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_THREADS = 2
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _early_threads(argv: list[str]) -> int:
    """Read ``--threads`` before numpy is imported (the full parser comes later)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    return pre.parse_known_args(argv)[0].threads


_THREADS = _early_threads(sys.argv[1:]) if __name__ == "__main__" else DEFAULT_THREADS
for _var in BLAS_THREAD_VARS:
    os.environ.setdefault(_var, "1")
os.environ["NUMBA_NUM_THREADS"] = str(_THREADS)

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
try:  # a stale editable install can resolve ``nnkd`` to an empty namespace package
    import nnkd
    nnkd.show_config  # noqa: B018
except (ImportError, AttributeError):
    sys.path.insert(0, str(REPO_ROOT))
    for _name in [m for m in sys.modules if m == "nnkd" or m.startswith("nnkd.")]:
        del sys.modules[_name]
    import nnkd

T = TypeVar("T")
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT_DIR = REPO_ROOT / "benchmarks" / "results"
#: Datasets scikit-learn ships (no data folder needed).
SKLEARN_DATASETS = ("digits", "breast_cancer", "wine")
#: The one teacher recipe every benchmark trains, whatever the dataset (dropout and input
#: noise: chosen in the trees benchmark's pilots on optdigits and pendigits, before the
#: groups were split; optdigits is now sealed).
DEFAULT_TEACHER = {"hidden": (512, 512), "epochs": 60, "batch_size": 128, "lr": 2e-3, "dropout": 0.2,
                   "input_noise": 0.3}
#: Defaults may be chosen on these only ...
TUNING_GROUP = ("letter", "usps", "pendigits", "magic")
#: ... and these are for reporting: no default was chosen by looking at them.
SEALED_GROUP = ("optdigits", "satimage", "mnist_test", "connect4", "shuttle", "digits", "breast_cancer", "wine")


# --------------------------------------------------------------------------- datasets

@dataclass(frozen=True)
class DatasetSpec:
    """How to load and split one dataset.

    Attributes
    ----------
    name : str
        Dataset name (``<name>.npz`` in the data folder, or ``"digits"``).
    split : {"official", "first", "stratified"}
        Official train/test arrays, the first ``n_train`` rows for training, or a stratified
        split with ``test_size`` and ``random_state=0``.
    standardize : bool
        Whether features have heterogeneous units (then ``StandardScaler`` is applied).
    n_train : int
        Training rows for ``split="first"``.
    test_size : float
        Test fraction for ``split="stratified"``.
    """

    name: str
    split: str
    standardize: bool = False
    n_train: int = 0
    test_size: float = 0.25

    def describe(self) -> str:
        """One-line description of the split and scaling."""
        if self.split == "official":
            text = "official train/test split"
        elif self.split == "first":
            text = f"first {self.n_train:,} rows train, the rest test"
        else:
            pct = round(100 * (1 - self.test_size))
            text = f"stratified {pct}/{100 - pct} split, random_state=0"
        return text + ("; standardized (StandardScaler fit on train)" if self.standardize else "")


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("digits", "stratified", test_size=0.3),
    DatasetSpec("letter", "first", n_train=16_000),
    DatasetSpec("pendigits", "official"),
    DatasetSpec("optdigits", "official"),
    DatasetSpec("satimage", "official"),
    DatasetSpec("usps", "official"),
    DatasetSpec("magic", "stratified", standardize=True),
    DatasetSpec("shuttle", "official", standardize=True),
    DatasetSpec("mnist_test", "first", n_train=8_000),
    DatasetSpec("connect4", "stratified"),
    DatasetSpec("breast_cancer", "stratified", standardize=True, test_size=0.3),
    DatasetSpec("wine", "stratified", standardize=True, test_size=0.3),
)}


@dataclass
class Dataset:
    """A split dataset (float32 features, int64 labels)."""

    spec: DatasetSpec
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    def info(self) -> dict[str, Any]:
        """Shape summary stored with every row."""
        return {"dataset": self.spec.name, "n_train": int(self.X_train.shape[0]),
                "n_test": int(self.X_test.shape[0]), "n_features": int(self.X_train.shape[1]),
                "n_classes": int(np.unique(self.y_train).size),
                "standardized": self.spec.standardize, "split": self.spec.describe()}


def check_data(names: list[str], data_dir: Path) -> list[str]:
    """``names``, once each is known and its file is present; otherwise one line (``SystemExit``)
    that names the folder and what to do, before any work starts."""
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise SystemExit(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    missing = [n for n in names if n not in SKLEARN_DATASETS and not (Path(data_dir) / f"{n}.npz").is_file()]
    if missing:
        raise SystemExit(f"{data_dir}: {', '.join(n + '.npz' for n in missing)} not found. This benchmark reads the "
                         "project's shared datasets (benchmarks/README.md says which and where they come from): "
                         f"pass --data-dir DIR, or --datasets {','.join(SKLEARN_DATASETS)} (bundled with scikit-learn).")
    return list(names)


def load_dataset(spec: DatasetSpec, data_dir: Path) -> Dataset:
    """Load, split and (if the spec says so) standardize one dataset."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if spec.name in SKLEARN_DATASETS:
        import sklearn.datasets

        X, y = getattr(sklearn.datasets, f"load_{spec.name}")(return_X_y=True)
        arrays: dict[str, np.ndarray] = {"X": X, "y": y}
    else:
        if not (data_dir / f"{spec.name}.npz").is_file():
            raise SystemExit(f"{data_dir / (spec.name + '.npz')} not found: this benchmark reads the shared "
                             "datasets (see benchmarks/README.md); pass --data-dir, or pick scikit-learn's "
                             f"{', '.join(SKLEARN_DATASETS)} with --datasets.")
        with np.load(data_dir / f"{spec.name}.npz") as archive:
            arrays = {key: archive[key] for key in archive.files}
    if spec.split == "official":
        parts = [arrays[k] for k in ("X_train", "y_train", "X_test", "y_test")]
    elif spec.split == "first":
        X, y = arrays["X"], arrays["y"]
        parts = [X[:spec.n_train], y[:spec.n_train], X[spec.n_train:], y[spec.n_train:]]
    else:
        X_tr, X_te, y_tr, y_te = train_test_split(arrays["X"], arrays["y"], test_size=spec.test_size,
                                                  stratify=arrays["y"], random_state=0)
        parts = [X_tr, y_tr, X_te, y_te]
    X_tr, y_tr, X_te, y_te = parts
    if spec.standardize:
        scaler = StandardScaler().fit(X_tr)
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    as_x = lambda a: np.ascontiguousarray(a, dtype=np.float32)
    as_y = lambda a: np.asarray(a, dtype=np.int64)
    return Dataset(spec, as_x(X_tr), as_y(y_tr), as_x(X_te), as_y(y_te))



# --------------------------------------------------------------------------- timing

@dataclass
class Timing:
    """Wall-clock times of repeated calls and the result of the last one."""

    times: list[float] = field(default_factory=list)
    result: Any = None

    @property
    def median(self) -> float:
        """Median of the timed calls."""
        return float(statistics.median(self.times))


def time_call(fn: Callable[[], T], *, repeats: int, warmup: bool | Callable[[], Any] = True,
              budget_s: float | None = None) -> Timing:
    """Time ``fn`` ``repeats`` times (``time.perf_counter``) after an optional warm-up.

    Parameters
    ----------
    fn : callable
        The call to time; its last result is kept.
    repeats : int
        Number of timed calls (at least one is always made).
    warmup : bool or callable, default=True
        ``True``: one untimed call of ``fn`` first; a callable: call it instead (e.g. the
        same estimator on a few rows, which compiles the same Numba kernels); ``False``: none.
    budget_s : float, default=None
        Stop repeating once the timed calls have used this many seconds.

    Returns
    -------
    Timing
    """
    if warmup is True:
        fn()
    elif callable(warmup):
        warmup()
    timing = Timing()
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        timing.result = fn()
        timing.times.append(time.perf_counter() - start)
        if budget_s is not None and sum(timing.times) >= budget_s:
            break
    return timing


def log(message: str) -> None:
    """Progress message on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)



# --------------------------------------------------------------------------- report

def fmt(value: Any, spec: str) -> str:
    """Format a number for the markdown tables ("–" when missing, "inf" when infinite)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float) and np.isinf(value):
        return "inf"
    return format(value, spec)


def pct(value: Any) -> str:
    """A fraction as a percentage with two decimals."""
    return fmt(None if value is None else 100 * value, ".2f")


def markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    """Rows of a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def json_safe(value: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by the strings "inf", "-inf" and "nan", and
    paths by strings."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value



def machine_meta(threads: int) -> dict[str, Any]:
    """``nnkd.bench.provenance()`` (date, machine, versions; the one provenance record of
    ``nnkd bench`` and these scripts) plus this run's thread settings and arguments."""
    import numba

    from nnkd.bench import provenance

    return {**provenance(),
            "threads": {"threads": threads, "n_jobs": threads, "numba_get_num_threads": numba.get_num_threads(),
                        **{var: os.environ.get(var) for var in (*BLAS_THREAD_VARS, "NUMBA_NUM_THREADS")}},
            "argv": sys.argv[1:]}
