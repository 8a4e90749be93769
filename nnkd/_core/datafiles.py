"""A user's data files as arrays: ``.npz``, ``.npy``, ``.csv``/``.tsv`` and Parquet.

What the ``nnkd condense``, ``nnkd distill`` and ``nnkd predict`` commands read:

- ``.npz``: features under key ``X`` (or ``X_train``), labels under ``y`` (or ``y_train``),
  both optional to rename (``features=``, ``label=``); nothing is unpickled.
- ``.npy``: one 2-D numeric array of features (no labels).
- ``.csv`` / ``.tsv``: a header row naming the columns, then one row per sample; the
  ``label`` column (if named) holds the labels (any text), every other column a number.
- ``.parquet``: the same layout as CSV, read with pyarrow (``pip install 'nnkd[parquet]'``).

Every problem (a missing key or column, a non-numeric value, ragged rows) is one
``ValueError`` naming the file, the column or key and the row.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnkd._core.artifacts import import_optional

FORMATS = (".npz", ".npy", ".csv", ".tsv", ".parquet")
_FEATURE_KEYS = ("X", "X_train")
_LABEL_KEYS = ("y", "y_train")


@dataclass
class DataFile:
    """Rows read from a file.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,) or None
        Labels (numbers, or strings from a text column); ``None`` when the file has none.
    feature_names : list of str
    path : Path
    """

    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str]
    path: Path


def read_data(path, *, label: str | None = None, features: str | None = None,
              require_labels: bool = False) -> DataFile:
    """Read features (and labels) from ``path``; see the module docstring for the layouts.

    Parameters
    ----------
    path : str or path-like
    label : str, default=None
        The label column (CSV/TSV/Parquet) or key (``.npz``; default ``y`` or ``y_train`` when
        present). For a table without ``label`` every column is a feature.
    features : str, default=None
        ``.npz`` only: the key of the features (default ``X`` or ``X_train``).
    require_labels : bool, default=False
        Raise ``ValueError`` when the file gives no labels.

    Returns
    -------
    data : DataFile
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unsupported data format {suffix or '(no suffix)'!r}; use one of {list(FORMATS)}.")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file.")
    if features is not None and suffix != ".npz":
        raise ValueError(f"{path}: features= names an .npz key; a {suffix} file has no keys.")
    if suffix == ".npz":
        data = _read_npz(path, label, features)
    elif suffix == ".npy":
        if label is not None:
            raise ValueError(f"{path}: an .npy file holds features only; it has no label column {label!r}.")
        data = _read_npy(path)
    elif suffix == ".parquet":
        data = _read_parquet(path, label)
    else:
        data = _read_delimited(path, label, "\t" if suffix == ".tsv" else ",")
    if require_labels and data.y is None:
        hint = "name the labels' key with --label (default: y)" if suffix == ".npz" else \
            "name the label column with --label COLUMN"
        raise ValueError(f"{path} gives no labels; {hint}.")
    return data


def _features(values, path: Path, what: str) -> np.ndarray:
    X = np.asarray(values)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{path}: {what} must be a non-empty 2-D array (rows x features); got shape {X.shape}.")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"{path}: {what} must be real numbers; got dtype {X.dtype}.")
    X = np.ascontiguousarray(X, dtype=np.float32)
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        raise ValueError(f"{path}: {what} has a NaN or infinite value (first at row {bad[0][0]}, column {bad[0][1]}); "
                         "clean or impute it first.")
    return X


def _labels(values, n: int, path: Path, what: str) -> np.ndarray:
    y = np.asarray(values)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{path}: {what} must be one label per row ({n}); got shape {y.shape}.")
    if y.dtype.kind == "O":
        raise ValueError(f"{path}: {what} holds Python objects; store labels as numbers or strings.")
    return y


_NPZ_ERRORS = (OSError, ValueError, EOFError, NotImplementedError, RuntimeError, zipfile.BadZipFile)


def open_npz(path: Path) -> np.lib.npyio.NpzFile:
    """An ``.npz`` archive opened without unpickling (use it as a context manager).

    Raises
    ------
    ValueError
        Not a readable archive (a pickle, a damaged zip, or a ``.npy`` file holding one array).
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as exc:
        raise ValueError(f"{path} is not a readable .npz archive: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):   # np.load read it as a .npy file
        raise ValueError(f"{path} is not a readable .npz archive: it holds one array (a .npy file), "
                         "not named arrays.")
    return archive


def npz_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One array of an archive from :func:`open_npz`; object arrays are refused, never unpickled.

    Raises
    ------
    ValueError
        The array is stored as Python objects, or its bytes cannot be read.
    """
    try:
        return archive[key]
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ValueError(f"{path}: array {key!r} is stored as Python objects, which nnkd never unpickles.") \
                from None
        raise ValueError(f"{path}: array {key!r} cannot be read: {exc}") from None
    except _NPZ_ERRORS as exc:
        raise ValueError(f"{path}: array {key!r} cannot be read: {exc}") from None


def _read_npz(path: Path, label: str | None, features: str | None) -> DataFile:
    with open_npz(path) as archive:
        keys = list(archive.files)
        feature_key = features or next((k for k in _FEATURE_KEYS if k in keys), None)
        if feature_key not in keys:
            raise ValueError(f"{path}: no features key {features or ' or '.join(_FEATURE_KEYS)!r}; the archive "
                             f"holds {keys}. Name it with --features KEY.")
        label_key = label if label is not None else next((k for k in _LABEL_KEYS if k in keys), None)
        if label_key is not None and label_key not in keys:
            raise ValueError(f"{path}: no label key {label_key!r}; the archive holds {keys}.")
        X = _features(npz_array(archive, feature_key, path), path, f"key {feature_key!r}")
        y = None if label_key is None else _labels(npz_array(archive, label_key, path), X.shape[0], path,
                                                   f"key {label_key!r}")
    return DataFile(X, y, [f"x{j}" for j in range(X.shape[1])], path)


def _read_npy(path: Path) -> DataFile:
    try:
        values = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable numeric .npy file: {exc}") from None
    X = _features(values, path, "the array")
    return DataFile(X, None, [f"x{j}" for j in range(X.shape[1])], path)


def _split_label(columns: dict[str, list], path: Path, label: str | None) -> DataFile:
    names = list(columns)
    if label is not None and label not in columns:
        raise ValueError(f"{path}: no label column {label!r}; the columns are {names}.")
    y = None
    if label is not None:
        y = _label_column(columns.pop(label))
    if not columns:
        raise ValueError(f"{path}: no feature columns besides the label {label!r}.")
    feature_names = list(columns)
    for name, values in columns.items():
        bad = next((i for i, v in enumerate(values) if not _is_number(v)), None)
        if bad is not None:
            raise ValueError(f"{path}: column {name!r} row {bad + 1} is {values[bad]!r}, not a number; every column "
                             "but the label must be numeric" + ("" if label else " (name the label with --label)") + ".")
    X = _features(np.array([[float(v) for v in col] for col in columns.values()]).T, path, "the features")
    return DataFile(X, y, feature_names, path)


def _is_number(value) -> bool:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def _label_column(values: list) -> np.ndarray:
    """Integer labels where every value is an integer, else the text as given."""
    text = [str(v) for v in values]
    try:
        ints = [int(t) for t in text]
    except ValueError:
        return np.array(text)
    return np.array(ints, dtype=np.int64)


def _read_delimited(path: Path, label: str | None, delimiter: str) -> DataFile:
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f, delimiter=delimiter)
        try:
            header = next(rows)
        except StopIteration:
            raise ValueError(f"{path} is empty; expected a header row naming the columns.") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a readable {delimiter!r}-separated text file: {exc}") from None
        header = [h.strip() for h in header]
        if len(set(header)) != len(header) or not all(header):
            raise ValueError(f"{path}: the header row must name every column once; got {header}.")
        columns: dict[str, list] = {h: [] for h in header}
        try:
            for line, row in enumerate(rows, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise ValueError(f"{path}: line {line} has {len(row)} values; the header has {len(header)}.")
                for h, v in zip(header, row, strict=True):
                    columns[h].append(v.strip())
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a readable {delimiter!r}-separated text file: {exc}") from None
    if not columns[header[0]]:
        raise ValueError(f"{path} has a header but no rows.")
    return _split_label(columns, path, label)


def _read_parquet(path: Path, label: str | None) -> DataFile:
    pq = import_optional("pyarrow.parquet", "pyarrow", "Reading Parquet files", "or pip install 'nnkd[parquet]'")
    try:
        table = pq.read_table(path)
    except Exception as exc:                     # pyarrow raises its own error types
        raise ValueError(f"{path} is not a readable Parquet file: {exc}") from None
    if table.num_rows == 0:
        raise ValueError(f"{path} has no rows.")
    return _split_label({name: table.column(name).to_pylist() for name in table.column_names}, path, label)
