"""The Student protocol: what every inference-time artifact answers, and how it is saved.

A student maps input rows to predictions with NumPy (and an :mod:`nnkd.index` Index) only,
never torch. Each kind is one class in its own module, registered under its ``kind`` name;
:func:`load_student` reads the saved ``kind`` and hands the rest of the metadata to that
class. Nothing outside a kind's module branches on the kind: what a kind cannot do, it
answers itself (:meth:`Student.check_neighbors`, :meth:`Student.check_proba`).

On disk a student is a directory: ``student.json`` (format, version, kind, classes, the
kind's parameters, array shapes), ``arrays.npz``, an ``index/`` directory when the prototypes
are searched by an approximate backend, and ``manifest.json`` with the SHA-256 of every other
file, signed with HMAC-SHA256 when a key is configured (see :mod:`nnkd._core.artifacts`).
Loading checks the signature and checksums, then the metadata's schema (types, ranges, the
declared shapes) before any array is read, then every array's values; it never unpickles.
Saving writes a temporary directory and renames it into place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from nnkd._core.artifacts import (
    check_shapes,
    is_number,
    json_snippet,
    package_version,
    read_metadata,
    read_npz,
    write_artifact,
    write_json,
)
from nnkd._core.metrics import check_points
from nnkd._core.partitions import is_dask_collection, map_rows
from nnkd.student._storage import DTYPES, LOADED_CODES, decode, encode, round_to_storage, saved_layout

FORMAT = "nnkd.student"
FORMAT_VERSION = 2
#: Metadata versions this nnkd reads (1: checksums inside student.json, no manifest).
READ_VERSIONS = (1, 2)
#: Most classes a student may name.
MAX_CLASSES = 1 << 20
ARRAYS_FILE = "arrays.npz"
#: What a student's bound can be (``None``: no bound).
BOUND_KINDS = (None, "compression", "held-out")
METADATA_FILE = "student.json"

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


_CLASS_TYPES = {"str": (str, str), "int": (int, np.int64), "float": ((int, float), np.float64)}


def _decode_classes(encoded, meta_path: Path) -> np.ndarray | None:
    if encoded is None:
        return None
    spec = _CLASS_TYPES.get(encoded.get("dtype")) if isinstance(encoded, dict) else None
    values = encoded.get("values") if isinstance(encoded, dict) else None
    if spec is None or not isinstance(values, list) or not 1 <= len(values) <= MAX_CLASSES:
        raise ValueError(f"{meta_path}: 'classes' must be {{'dtype': 'str'|'int'|'float', 'values': [...]}} with "
                         f"1 to {MAX_CLASSES} values.")
    python_type, dtype = spec
    bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, python_type)
                or (isinstance(v, float) and not math.isfinite(v))
                or (isinstance(v, int) and dtype is np.int64 and not -(1 << 63) <= v < (1 << 63))), None)
    if bad is not None or len(set(values)) != len(values):
        raise ValueError(f"{meta_path}: 'classes' values must be distinct {encoded['dtype']} values; "
                         f"got {str(bad)[:40] if bad is not None else 'duplicates'}.")
    return np.array(values, dtype=dtype)


# -- metadata schema: checkers of the kinds' parameters --------------------------------------
def _is_int(v) -> bool:
    return type(v) is int


def int_param(lo: int, hi: int | None = None) -> Callable:
    """Checker of an integer parameter in ``[lo, hi]``."""
    def check(v):
        return _is_int(v) and v >= lo and (hi is None or v <= hi)
    check.__doc__ = f"an integer in [{lo}, {hi if hi is not None else 'inf'}]"
    return check


def choice_param(options) -> Callable:
    """Checker of a parameter taking one of ``options``."""
    options = tuple(options)

    def check(v):
        return isinstance(v, str) and v in options
    check.__doc__ = f"one of {list(options)}"
    return check


def positive_param(optional: bool = False) -> Callable:
    """Checker of a finite number > 0 (or ``None`` when ``optional``)."""
    def check(v):
        return (optional and v is None) or (is_number(v) and v > 0)
    check.__doc__ = "a finite number > 0" + (" or null" if optional else "")
    return check


def _check_params(cls, meta: dict, meta_path: Path) -> None:
    """Each of the kind's parameters present in ``meta`` (required ones must be) passes its checker."""
    for name, (check, required) in cls.PARAMS.items():
        if name not in meta:
            if required:
                raise ValueError(f"{meta_path}: missing {name!r} (kind {cls.kind!r}).")
            continue
        if not check(meta[name]):
            raise ValueError(f"{meta_path}: {name!r} must be {check.__doc__}; got {json_snippet(meta[name])}.")




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
    dtype : {"float32", "float16", "int8"}, default="float32"
        Storage type of the float parameters. ``"float16"`` halves the artifact, ``"int8"``
        quarters its matrices (one float32 scale per column, counted in ``size_bytes``; see
        :mod:`nnkd.student._storage`). Parameters are rounded once, in memory as well, so
        predictions before and after saving agree; computation stays in float32/float64.
    bound : float or None, default=None
        An upper bound on the student's error rate, holding with probability
        ``1 - meta["bound_delta"]``; a bound >= 1 certifies nothing and is stored as 1.0 (``describe()``
        then says ``"bound_vacuous": true``).
    bound_kind : {"compression", "held-out"} or None, default=None
        What ``bound`` is: ``"compression"``, a sample-compression bound on the true error
        from the training sample (:func:`nnkd.condense.bounds.compression_bound`);
        ``"held-out"``, a binomial-tail bound from rows the fit did not train on
        (:func:`nnkd.condense.bounds.holdout_bound`), against the labels or, where
        ``meta["bound_target"]`` says ``"teacher"``, on disagreement with the teacher.
    meta : dict
        JSON-serialisable provenance (how the student was fitted).
    """

    kind: ClassVar[str] = ""
    #: Float arrays rounded to ``dtype`` and stored at it.
    FLOAT_ARRAYS: ClassVar[tuple[str, ...]] = ()
    #: Every array field the kind saves (the float ones included) -> "float" or "int".
    ARRAYS: ClassVar[dict[str, str]] = {}
    #: The kind's metadata parameters -> (checker, required): checked before any array is read.
    PARAMS: ClassVar[dict[str, tuple[Callable, bool]]] = {}

    classes: np.ndarray | None
    dtype: str = "float32"
    bound: float | None = None
    bound_kind: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.classes is not None:
            self.classes = np.asarray(self.classes)
            if self.classes.ndim != 1 or self.classes.size == 0:
                raise ValueError(f"classes must be a non-empty 1-D array; got shape {self.classes.shape}.")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} must be one of {sorted(DTYPES)}.")
        if self.bound is not None:
            # An error-rate bound >= 1 certifies nothing: it is kept as the trivial bound 1.
            self.bound = min(float(self.bound), 1.0)
            if not self.bound >= 0:
                raise ValueError(f"bound={self.bound!r} must be a number >= 0 or None.")
        if self.bound_kind not in BOUND_KINDS:
            raise ValueError(f"bound_kind={self.bound_kind!r} must be one of {BOUND_KINDS}.")
        self.meta = dict(self.meta or {})
        self._validate()
        # name -> (the stored array, its int8 encoding): what save() writes, so nothing is
        # quantised twice.
        self._encodings: dict[str, tuple] = {}
        for name in self.FLOAT_ARRAYS:
            value = getattr(self, name)
            if value is not None:
                rounded, encoding = round_to_storage(value, self.dtype, name)
                setattr(self, name, rounded)
                if encoding is not None:
                    self._encodings[name] = (rounded, encoding)

    # -- what each kind provides ---------------------------------------------------------------
    def _validate(self) -> None:
        """Check and normalise the kind's fields (``ValueError`` naming the problem)."""

    def _params(self) -> dict:
        """The kind's JSON parameters for ``student.json``."""
        return {}

    @classmethod
    def _from_saved(cls, meta: dict, arrays: dict, common: dict, directory: Path, keys: dict) -> Student:
        """Rebuild a student of this kind from its metadata and arrays (``keys``: the
        ``key``/``key_file`` the student was loaded with, for files of its own it opens)."""
        raise NotImplementedError

    def _save_extra(self, directory: Path, key, key_file) -> dict:
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

    def _proba(self, X) -> np.ndarray:
        """The kind's class probabilities, unchecked (classifier kinds implement this)."""
        raise NotImplementedError

    def _outputs(self, X) -> tuple[np.ndarray, np.ndarray | None]:
        """``(predictions, probabilities or None)``, unchecked."""
        proba = self._proba(X)
        return self.classes[np.argmax(proba, axis=1)], proba

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
        """Predictions, ndarray of shape (n_queries,): the most probable class per row (ties:
        the first class), or a regressor's values.

        A dask array (or dataframe) of rows gives a dask array of predictions, computed per
        row partition wherever dask runs it (the student is shipped to each worker once).

        Raises
        ------
        ValueError
            Bad input, or an output that is NaN or infinite (an input far outside what the
            student was fitted on can overflow it): never a silent "class 0".
        """
        if is_dask_collection(X):
            dtype = np.float64 if self.classes is None else self.classes.dtype
            return map_rows(self, "predict", X, width=None, dtype=dtype)
        return self.predict_with_proba(X)[0]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, ndarray of shape (n_queries, n_classes), float64 (raises as
        :meth:`predict`, and :meth:`check_proba`'s error for a student without them). A dask
        array of rows gives a dask array, as for :meth:`predict`."""
        self.check_proba()
        if is_dask_collection(X):
            return map_rows(self, "predict_proba", X, width=len(self.classes), dtype=np.float64)
        return self.predict_with_proba(X)[1]

    def predict_with_proba(self, X, *, check_finite: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``(predict(X), predict_proba(X))`` from one pass (the probabilities are ``None``
        for a student without them). ``check_finite=False`` returns non-finite outputs as
        they are, for a caller that checks them per row (:func:`non_finite_rows`)."""
        out, proba = self._outputs(X)
        if check_finite:
            bad = non_finite_rows(proba if proba is not None else out)
            if bad.size:
                raise ValueError(f"the student's output for {bad.size} row(s) (first: row {bad[0]}) is NaN or "
                                 "infinite: those inputs lie far outside the range it was fitted on.")
        return out, proba

    def describe(self) -> dict:
        """Metadata of the student (what ``/v1/model`` shows), JSON-serialisable."""
        return {"kind": self.kind, "classes": None if self.classes is None else self.classes.tolist(),
                "n_classes": None if self.classes is None else len(self.classes),
                "n_features_in": self.n_features_in, "expects": self.expects(), "dtype": self.dtype,
                "size_bytes": self.size_bytes, "bound": self.bound, "bound_kind": self.bound_kind,
                "bound_vacuous": None if self.bound is None else self.bound >= 1.0, **self._describe(),
                "meta": self.meta}

    def save(self, path, *, key=None, key_file=None) -> Path:
        """Write the student into directory ``path``, atomically; returns it.

        The files go to a temporary directory beside ``path``, which then replaces it, so an
        interrupted save leaves the previous student whole. With a key (``key``, ``key_file``
        or ``NNKD_ARTIFACT_KEY``) the manifest is signed.
        """
        arrays = {}
        for name in self.ARRAYS:
            value = getattr(self, name)
            if value is None:
                continue
            if name in self.FLOAT_ARRAYS:
                kept = self._encodings.get(name)
                arrays.update(encode(name, value, self.dtype, kept[1] if kept and kept[0] is value else None))
            else:
                arrays[name] = value

        def write(directory: Path) -> None:
            np.savez(directory / ARRAYS_FILE, **arrays)
            meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind,
                    "classes": _encode_classes(self.classes), "dtype": self.dtype, "bound": self.bound,
                    "bound_kind": self.bound_kind,
                    "shapes": {k: list(v.shape) for k, v in arrays.items()}, "meta": self.meta,
                    "size_bytes": self.size_bytes, **self._params(), **self._save_extra(directory, key, key_file),
                    "versions": {"nnkd": package_version("nnkd"), "numpy": np.__version__}}
            write_json(directory / METADATA_FILE, meta)

        return write_artifact(path, write, "student", METADATA_FILE, key=key, key_file=key_file)


def non_finite_rows(values: np.ndarray) -> np.ndarray:
    """Row numbers where a float output array (predictions or probabilities) is NaN or infinite."""
    if values.dtype.kind not in "fc":
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))


def read_student_metadata(path, *, key=None, key_file=None) -> dict:
    """The verified ``student.json`` of a saved student (signature, checksums, format and
    version); ``"files"`` maps every verified file to its SHA-256."""
    return read_metadata(Path(path), METADATA_FILE, FORMAT, READ_VERSIONS, "student", key=key, key_file=key_file)


def load_student(path, *, key=None, key_file=None, trust_native: bool | None = None) -> Student:
    """Load a student written by :meth:`Student.save`.

    Checks the signature (when a key is configured: ``key``, ``key_file`` or
    ``NNKD_ARTIFACT_KEY``; unsigned students are then refused), every file's checksum, the
    metadata's schema and declared shapes before reading any array, then the arrays' dtypes,
    shapes and values. Nothing is unpickled.

    Parameters
    ----------
    path : str or path-like
        The student directory.
    key : str or bytes, default=None
    key_file : path, default=None
    trust_native : bool, default=None
        Load an unsigned FAISS/NMSLIB index saved with the student (see
        :func:`nnkd.index.load_index`; default: ``NNKD_TRUST_NATIVE=1``).

    Returns
    -------
    student : Student
        An instance of the class registered for the saved ``kind``.

    Raises
    ------
    FileNotFoundError, ValueError
        One message per problem, naming the file and the field.
    """
    directory = Path(path)
    meta = read_student_metadata(directory, key=key, key_file=key_file)
    meta_path = directory / METADATA_FILE
    kind = meta.get("kind")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"{meta_path}: unknown student kind {json_snippet(kind)}; this nnkd reads "
                         f"{list(student_kinds())}.")
    if ARRAYS_FILE not in meta["files"]:
        raise ValueError(f"{meta_path}: {ARRAYS_FILE} is not covered by the checksums.")
    if meta.get("dtype", "float32") not in DTYPES:
        raise ValueError(f"{meta_path}: 'dtype' must be one of {sorted(DTYPES)}; got {json_snippet(meta.get('dtype'))}.")
    bound = meta.get("bound")
    if bound is not None and not (type(bound) in (int, float) and bound >= 0):
        raise ValueError(f"{meta_path}: 'bound' must be a number >= 0 or null; got {json_snippet(bound)}.")
    if meta.get("bound_kind") not in BOUND_KINDS:
        raise ValueError(f"{meta_path}: 'bound_kind' must be one of {list(BOUND_KINDS)}; got "
                         f"{json_snippet(meta.get('bound_kind'))}.")
    if not isinstance(meta.get("meta", {}), dict):
        raise ValueError(f"{meta_path}: 'meta' must be an object.")
    classes = _decode_classes(meta.get("classes"), meta_path)
    _check_params(cls, meta, meta_path)
    if "shapes" not in meta:
        raise ValueError(f"{meta_path}: missing 'shapes'.")
    layout = saved_layout(cls.ARRAYS, cls.FLOAT_ARRAYS, meta.get("dtype", "float32"))
    shapes = check_shapes(meta["shapes"], layout, str(meta_path))
    try:
        arrays, encodings = decode(read_npz(directory / ARRAYS_FILE,
                                            {k: (layout[k], shape) for k, shape in shapes.items()}),
                                   cls.FLOAT_ARRAYS, meta.get("dtype", "float32"))
    except ValueError as exc:
        if str(exc).startswith(str(directory)):
            raise
        raise ValueError(f"{directory / ARRAYS_FILE}: {exc}") from None
    common = {"classes": classes, "dtype": meta.get("dtype", "float32"), "bound": bound,
              "bound_kind": meta.get("bound_kind"), "meta": meta.get("meta") or {}}
    token = LOADED_CODES.set(encodings)         # the rebuilt student keeps the codes it was saved with
    try:
        return cls._from_saved(meta, arrays, common, directory,
                               {"key": key, "key_file": key_file, "trust_native": trust_native})
    finally:
        LOADED_CODES.reset(token)
