"""The Student protocol: what every inference-time artifact answers, and how it is saved.

A student maps input rows to predictions with NumPy (and an :mod:`nnkd.index` Index) only,
never torch. Each kind is one class in its own module, registered under its ``kind`` name;
:func:`load_student` reads the saved ``kind`` and hands the rest of the metadata to that
class. Nothing outside a kind's module branches on the kind: what a kind cannot do, it
answers itself (:meth:`Student.check_neighbors`, :meth:`Student.check_proba`).

On disk a student is a directory: ``student.json`` (format, version, kind, classes, the
kind's parameters, array shapes and the SHA-256 of every file) and ``arrays.npz``, plus an
``index/`` directory when the prototypes are searched by an approximate backend. Loading
validates all of it and never unpickles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from nnkd._core.artifacts import package_version, read_metadata, write_metadata
from nnkd._core.metrics import check_points

FORMAT = "nnkd.student"
FORMAT_VERSION = 1
ARRAYS_FILE = "arrays.npz"
METADATA_FILE = "student.json"
#: Storage types of the float parameters and their bytes per parameter.
DTYPES = {"float32": 4, "float16": 2}

#: kind name -> Student subclass (filled by :func:`register_kind`).
_KINDS: dict[str, type[Student]] = {}


def register_kind(cls: type[Student]) -> type[Student]:
    """Class decorator: make ``load_student`` read artifacts whose ``kind`` is ``cls.kind``."""
    if cls.kind in _KINDS:
        raise ValueError(f"student kind {cls.kind!r} is already registered by {_KINDS[cls.kind].__name__}.")
    _KINDS[cls.kind] = cls
    return cls


def student_kinds() -> tuple[str, ...]:
    """Names of the registered student kinds."""
    return tuple(sorted(_KINDS))


def _encode_classes(classes: np.ndarray | None) -> dict | None:
    if classes is None:
        return None
    if classes.dtype.kind in "US":
        return {"dtype": "str", "values": [str(c) for c in classes]}
    if classes.dtype.kind in "iub":
        return {"dtype": "int", "values": [int(c) for c in classes]}
    if classes.dtype.kind == "f":
        return {"dtype": "float", "values": [float(c) for c in classes]}
    raise TypeError(f"classes of dtype {classes.dtype} cannot be saved; use str, int or float labels.")


def _decode_classes(encoded, meta_path: Path) -> np.ndarray | None:
    if encoded is None:
        return None
    dtype = {"str": str, "int": np.int64, "float": np.float64}.get(encoded.get("dtype")) \
        if isinstance(encoded, dict) else None
    if dtype is None or not isinstance(encoded.get("values"), list):
        raise ValueError(f"{meta_path}: 'classes' must be {{'dtype': 'str'|'int'|'float', 'values': [...]}}.")
    return np.array(encoded["values"], dtype=dtype)


def float_array(value, name: str, shape: tuple | None = None) -> np.ndarray:
    """``value`` as a finite C-contiguous float32 array (of ``shape`` when given), or ``ValueError``."""
    arr = np.ascontiguousarray(value, dtype=np.float32)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}; expected {shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    return arr


@dataclass(kw_only=True, eq=False)
class Student:
    """Base class of every student kind (see the module docstring).

    Attributes
    ----------
    classes : ndarray of shape (n_classes,) or None
        Class labels, in the order of ``predict_proba``'s columns; ``None`` for a regressor.
    dtype : {"float32", "float16"}, default="float32"
        Storage type of the float parameters. ``"float16"`` halves the artifact: parameters
        are rounded to float16 once (in memory as well, so predictions before and after
        saving agree); computation stays in float32/float64.
    bound : float or None, default=None
        A generalization bound on the student's error, where its training gives one.
    meta : dict
        JSON-serialisable provenance (how the student was fitted).
    """

    kind: ClassVar[str] = ""
    #: Float arrays rounded to ``dtype`` and stored at it.
    FLOAT_ARRAYS: ClassVar[tuple[str, ...]] = ()
    #: Every array field the kind saves (the float ones included).
    ARRAYS: ClassVar[tuple[str, ...]] = ()

    classes: np.ndarray | None
    dtype: str = "float32"
    bound: float | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.classes is not None:
            self.classes = np.asarray(self.classes)
            if self.classes.ndim != 1 or self.classes.size == 0:
                raise ValueError(f"classes must be a non-empty 1-D array; got shape {self.classes.shape}.")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} must be one of {sorted(DTYPES)}.")
        if self.bound is not None:
            self.bound = float(self.bound)
        self.meta = dict(self.meta or {})
        self._validate()
        if self.dtype == "float16":
            for name in self.FLOAT_ARRAYS:
                value = getattr(self, name)
                if value is not None:
                    half = value.astype(np.float16)
                    if not np.isfinite(half).all():
                        raise ValueError(f"{name} overflows float16; use dtype='float32'.")
                    setattr(self, name, half.astype(np.float32))

    # -- what each kind provides ---------------------------------------------------------------
    def _validate(self) -> None:
        """Check and normalise the kind's fields (``ValueError`` naming the problem)."""

    def _params(self) -> dict:
        """The kind's JSON parameters for ``student.json``."""
        return {}

    @classmethod
    def _from_saved(cls, meta: dict, arrays: dict, common: dict, directory: Path) -> Student:
        """Rebuild a student of this kind from its metadata and arrays."""
        raise NotImplementedError

    def _save_extra(self, directory: Path) -> dict:
        """Write files beyond ``arrays.npz`` (a native index); returns metadata entries for them."""
        return {}

    @property
    def n_features_in(self) -> int:
        """Width of the rows ``predict`` takes."""
        raise NotImplementedError

    @property
    def size_bytes(self) -> int:
        """Bytes of every parameter prediction needs (at ``dtype``), explanation data excluded."""
        raise NotImplementedError

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, ndarray of shape (n_queries, n_classes), float64."""
        raise NotImplementedError

    def explain(self, X, k: int = 3) -> list[dict]:
        """Per row, a dict with ``"prediction"`` and the evidence behind it (see each kind)."""
        raise NotImplementedError

    def check_neighbors(self, k) -> None:
        """Raise ``ValueError`` unless :meth:`explain` can return ``k`` nearest prototypes per row."""
        raise NotImplementedError

    def example_inputs(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` plausible input rows, float32 (for latency profiling and smoke tests)."""
        raise NotImplementedError

    def _describe(self) -> dict:
        return {}

    def expects(self) -> str:
        """What one input row is, in words (shown by ``/v1/model`` and in errors)."""
        return f"raw input rows: {self.n_features_in} values per instance"

    @property
    def needs_teacher(self) -> bool:
        """Whether inputs are teacher embeddings (the teacher must embed raw rows first)."""
        return False

    # -- shared behaviour -----------------------------------------------------------------------
    def check_proba(self) -> None:
        """Raise ``ValueError`` unless this student gives class probabilities."""

    def check_input(self, X) -> np.ndarray:
        """``X`` as C-contiguous float32 of width :attr:`n_features_in`, or ``ValueError``."""
        X = check_points(X, "X")
        if X.shape[1] != self.n_features_in:
            raise ValueError(f"X has {X.shape[1]} features but the student takes {self.expects()}.")
        return X

    def predict(self, X) -> np.ndarray:
        """Most probable class per row (ties: the first class), ndarray of shape (n_queries,)."""
        return self.predict_with_proba(X)[0]

    def predict_with_proba(self, X) -> tuple[np.ndarray, np.ndarray | None]:
        """``(predict(X), predict_proba(X))`` from one pass (the probabilities are ``None``
        for a student without them)."""
        proba = self.predict_proba(X)
        return self.classes[np.argmax(proba, axis=1)], proba

    def describe(self) -> dict:
        """Metadata of the student (what ``/v1/model`` shows), JSON-serialisable."""
        return {"kind": self.kind, "classes": None if self.classes is None else self.classes.tolist(),
                "n_classes": None if self.classes is None else len(self.classes),
                "n_features_in": self.n_features_in, "expects": self.expects(), "dtype": self.dtype,
                "size_bytes": self.size_bytes, "bound": self.bound, **self._describe(), "meta": self.meta}

    def save(self, path) -> Path:
        """Write the student into directory ``path`` (created if needed); returns it."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in self.ARRAYS if getattr(self, name) is not None}
        if self.dtype == "float16":
            arrays.update({k: v.astype(np.float16) for k, v in arrays.items() if k in self.FLOAT_ARRAYS})
        np.savez(directory / ARRAYS_FILE, **arrays)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind,
                "classes": _encode_classes(self.classes), "dtype": self.dtype, "bound": self.bound,
                "shapes": {k: list(v.shape) for k, v in arrays.items()}, "meta": self.meta,
                "size_bytes": self.size_bytes, **self._params(), **self._save_extra(directory),
                "versions": {"nnkd": package_version("nnkd"), "numpy": np.__version__}}
        write_metadata(directory, METADATA_FILE, meta, [ARRAYS_FILE])
        return directory


def read_student_metadata(path) -> dict:
    """The checked ``student.json`` of a saved student (format, version, every checksum)."""
    return read_metadata(Path(path), METADATA_FILE, FORMAT, FORMAT_VERSION, "student")


def load_student(path) -> Student:
    """Load a student written by :meth:`Student.save`, checking format, checksums and shapes.

    Parameters
    ----------
    path : str or path-like
        The student directory.

    Returns
    -------
    student : Student
        An instance of the class registered for the saved ``kind``.

    Raises
    ------
    FileNotFoundError, ValueError
    """
    directory = Path(path)
    meta = read_student_metadata(directory)
    meta_path = directory / METADATA_FILE
    kind = meta.get("kind")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"{meta_path}: unknown student kind {kind!r}; this nnkd reads {list(student_kinds())}.")
    if ARRAYS_FILE not in meta["files"]:
        raise ValueError(f"{meta_path} does not list {ARRAYS_FILE}.")
    with np.load(directory / ARRAYS_FILE, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    shapes = meta.get("shapes")
    unknown = set(arrays) - set(cls.ARRAYS)
    if unknown or not isinstance(shapes, dict) or any(list(arrays[k].shape) != shapes.get(k) for k in arrays):
        raise ValueError(f"{directory / ARRAYS_FILE} does not match the arrays recorded in {meta_path}.")
    common = {"classes": _decode_classes(meta.get("classes"), meta_path), "dtype": meta.get("dtype", "float32"),
              "bound": meta.get("bound"), "meta": meta.get("meta") or {}}
    return cls._from_saved(meta, arrays, common, directory)
