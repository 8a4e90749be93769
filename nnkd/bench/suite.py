"""The labelled datasets nnkd's benchmark scripts report on, and how each is split.

Each dataset is an ``.npz`` file in a data folder (read by :func:`nnkd.bench.data.read_npz`,
never unpickled) holding either ``X_train``/``y_train``/``X_test``/``y_test`` (an official
split) or ``X``/``y``; scikit-learn's bundled ``digits``, ``breast_cancer`` and ``wine`` need
no folder. The names are split into a tuning group, the only data defaults may be chosen on,
and a sealed group used for reporting only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnkd.bench.data import read_npz

#: Datasets scikit-learn ships (no data folder needed).
SKLEARN_DATASETS = ("digits", "breast_cancer", "wine")
#: Defaults may be chosen on these only ...
TUNING_GROUP = ("letter", "usps", "pendigits", "magic")
#: ... and these are for reporting: no default was chosen by looking at them.
SEALED_GROUP = ("optdigits", "satimage", "mnist_test", "connect4", "shuttle", "digits", "breast_cancer", "wine")


@dataclass(frozen=True)
class DatasetSpec:
    """How to load and split one dataset.

    Attributes
    ----------
    name : str
        Dataset name (``<name>.npz`` in the data folder, or one of :data:`SKLEARN_DATASETS`).
    split : {"official", "first", "stratified"}
        Official train/test arrays, the first ``n_train`` rows for training, or a stratified
        split with ``test_size`` and ``random_state=0``.
    standardize : bool
        Whether features have heterogeneous units (then ``StandardScaler`` is fitted on the
        training rows and applied to both parts).
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


#: Every dataset of the suite, by name.
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
class SplitDataset:
    """A split dataset (C-contiguous float32 features, int64 labels)."""

    spec: DatasetSpec
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    def info(self) -> dict[str, Any]:
        """Shape summary stored with every result row."""
        return {"dataset": self.spec.name, "n_train": int(self.X_train.shape[0]),
                "n_test": int(self.X_test.shape[0]), "n_features": int(self.X_train.shape[1]),
                "n_classes": int(np.unique(self.y_train).size),
                "standardized": self.spec.standardize, "split": self.spec.describe()}


def check_datasets(names: Iterable[str], data_dir: str | Path) -> list[str]:
    """``names`` as a list, once every one is known and readable from ``data_dir``.

    Raises
    ------
    ValueError
        A name that is not in :data:`DATASETS`.
    FileNotFoundError
        One line naming the folder, the missing files and what to pass instead.
    """
    names = list(names)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    missing = [n for n in names if n not in SKLEARN_DATASETS and not (Path(data_dir) / f"{n}.npz").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{data_dir}: {', '.join(n + '.npz' for n in missing)} not found. This benchmark reads the project's "
            "shared datasets (benchmarks/README.md says which and where they come from): pass --data-dir DIR, "
            f"or --datasets {','.join(SKLEARN_DATASETS)} (bundled with scikit-learn).")
    return names


def _arrays(name: str, data_dir: Path) -> dict[str, np.ndarray]:
    if name in SKLEARN_DATASETS:
        import sklearn.datasets

        X, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
        return {"X": X, "y": y}
    check_datasets([name], data_dir)
    return read_npz(Path(data_dir) / f"{name}.npz")


def load_split(spec: DatasetSpec | str, data_dir: str | Path) -> SplitDataset:
    """Load, split and (if the spec says so) standardize one dataset of the suite.

    Parameters
    ----------
    spec : DatasetSpec or str
        The dataset, or its name in :data:`DATASETS`.
    data_dir : path-like
        Folder of the ``.npz`` files (unused for scikit-learn's bundled datasets).

    Returns
    -------
    SplitDataset

    Raises
    ------
    ValueError
        Unknown name, unreadable file, or the arrays its split needs are missing.
    FileNotFoundError
        The dataset's file is not in ``data_dir``.
    """
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if isinstance(spec, str):
        spec = DATASETS[check_datasets([spec], data_dir)[0]]
    arrays = _arrays(spec.name, Path(data_dir))
    needed = ("X_train", "y_train", "X_test", "y_test") if spec.split == "official" else ("X", "y")
    absent = [key for key in needed if key not in arrays]
    if absent:
        raise ValueError(f"{spec.name}.npz lacks {absent} for its {spec.split!r} split (has {sorted(arrays)}).")
    if spec.split == "official":
        X_tr, y_tr, X_te, y_te = (arrays[key] for key in needed)
    elif spec.split == "first":
        X, y = arrays["X"], arrays["y"]
        X_tr, y_tr, X_te, y_te = X[:spec.n_train], y[:spec.n_train], X[spec.n_train:], y[spec.n_train:]
    else:
        X_tr, X_te, y_tr, y_te = train_test_split(arrays["X"], arrays["y"], test_size=spec.test_size,
                                                  stratify=arrays["y"], random_state=0)
    if spec.standardize:
        scaler = StandardScaler().fit(X_tr)
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    return SplitDataset(spec, np.ascontiguousarray(X_tr, dtype=np.float32), np.asarray(y_tr, dtype=np.int64),
                        np.ascontiguousarray(X_te, dtype=np.float32), np.asarray(y_te, dtype=np.int64))
