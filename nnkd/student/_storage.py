"""Storage types of a student's float parameters: float32, float16 and int8.

A student rounds its float parameters to the storage type once, when it is built, and
keeps the rounded values in float32 memory, so predictions before and after saving agree
bit for bit; computation stays in float32/float64.

``int8`` is affine quantisation of every matrix with one float32 scale and one float32
offset per column (per input feature of a projection, per dimension of prototypes, per
output of label vectors): ``value = code * scale + offset`` with codes in ``[-127, 127]``.
Per column, because columns differ in range (a projection with the standardisation folded
in); with an offset, because a column's values can sit far from zero (prototypes with the
input mean folded in: symmetric codes would spend their range on the offset and leave a
few levels for the spread, which cost one benchmark student 70 points). Vectors (biases,
standardisation) stay float32: they are few, and a small entry rounded to 0 could divide
by zero. Scales and offsets are counted in the size (8 bytes per column).

A student keeps the codes it rounded to and saves those, and a loaded student keeps the
codes it read, so nothing is quantised twice.
"""

from __future__ import annotations

import contextvars

import numpy as np

#: Storage types of the float parameters and their bytes per parameter (int8 scales extra).
DTYPES = {"float32": 4, "float16": 2, "int8": 1}
#: Suffixes of the saved scale and offset arrays of an int8 parameter (a double underscore:
#: no field name has one, so ``input_scale`` stays a parameter of its own).
SCALE_SUFFIX = "__scale"
OFFSET_SUFFIX = "__offset"
#: int8 encodings read from disk, handed to the student being rebuilt (see ``decode``).
LOADED_CODES: contextvars.ContextVar[dict | None] = contextvars.ContextVar("nnkd_loaded_codes", default=None)


def stored_bytes(arrays, dtype: str) -> int:
    """Bytes of the float ``arrays`` stored at ``dtype``, int8 scales and offsets included."""
    total = 0
    for arr in arrays:
        if arr is None:
            continue
        if dtype == "int8" and arr.ndim != 2:
            total += 4 * int(arr.size)                # vectors stay float32
        else:
            total += DTYPES[dtype] * int(arr.size) + (8 * int(arr.shape[1]) if dtype == "int8" else 0)
    return total


def quantize_int8(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(codes, scales, offsets)`` of a finite float matrix: int8 codes of its shape and
    float32 scales and offsets of shape ``(n_columns,)`` (see the module docstring)."""
    a = np.asarray(values, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"int8 quantisation takes a matrix; got shape {a.shape}.")
    if a.shape[0] == 0:
        return np.zeros(a.shape, np.int8), np.ones(a.shape[1], np.float32), np.zeros(a.shape[1], np.float32)
    lo, hi = a.min(axis=0).astype(np.float64), a.max(axis=0).astype(np.float64)
    offset = ((lo + hi) / 2).astype(np.float32)
    centred = (a - offset).astype(np.float32)
    scale = (np.abs(centred).max(axis=0) / np.float32(127.0)).astype(np.float32)
    scale[~(scale > 0)] = np.float32(1.0)             # a constant column: codes 0, any scale
    codes = np.clip(np.rint(centred / scale), -127, 127).astype(np.int8)
    return codes, scale, offset


def dequantize_int8(codes: np.ndarray, scales: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Float32 values of int8 ``codes`` with their ``scales`` and ``offsets``; ``ValueError``
    on a mismatch."""
    codes = np.asarray(codes)
    scales = np.asarray(scales, dtype=np.float32)
    offsets = np.asarray(offsets, dtype=np.float32)
    if codes.dtype != np.int8 or codes.ndim != 2:
        raise ValueError(f"int8 codes must be an int8 matrix; got {codes.dtype} of shape {codes.shape}.")
    m = codes.shape[1]
    if scales.shape != (m,) or not (np.isfinite(scales).all() and (scales > 0).all()):
        raise ValueError(f"int8 scales must be {m} finite positive numbers (one per column); got shape "
                         f"{scales.shape}.")
    if offsets.shape != (m,) or not np.isfinite(offsets).all():
        raise ValueError(f"int8 offsets must be {m} finite numbers (one per column); got shape {offsets.shape}.")
    if (codes == -128).any():
        raise ValueError("int8 codes must lie in [-127, 127].")
    values = ((codes.astype(np.float32) * scales).astype(np.float32) + offsets).astype(np.float32)
    if not np.isfinite(values).all():
        raise ValueError("int8 codes x scales + offsets overflow float32.")
    return values


def round_to_storage(values: np.ndarray, dtype: str, name: str) -> tuple[np.ndarray, tuple | None]:
    """``(values as stored at dtype, back in float32; the int8 encoding or None)``;
    ``ValueError`` when they do not fit (float16 overflow). An int8 encoding read from disk
    for ``name`` (``LOADED_CODES``) is kept as it is when it decodes to ``values``."""
    if dtype == "float32":
        return values, None
    if dtype == "float16":
        half = values.astype(np.float16)
        if not np.isfinite(half).all():
            raise ValueError(f"{name} overflows float16; use dtype='float32'.")
        return half.astype(np.float32), None
    if dtype == "int8":
        if values.ndim != 2:
            return values, None
        loaded = (LOADED_CODES.get() or {}).get(name)
        if loaded is not None and np.array_equal(dequantize_int8(*loaded), values):
            return values, loaded
        encoding = quantize_int8(values)
        return dequantize_int8(*encoding), encoding
    raise ValueError(f"dtype={dtype!r} must be one of {sorted(DTYPES)}.")


def encode(name: str, values: np.ndarray, dtype: str, encoding: tuple | None = None) -> dict[str, np.ndarray]:
    """The arrays ``arrays.npz`` holds for float parameter ``name`` stored at ``dtype``
    (``encoding``: the int8 codes the student rounded ``values`` to)."""
    if dtype == "float16":
        return {name: values.astype(np.float16)}
    if dtype == "int8" and values.ndim == 2:
        codes, scales, offsets = encoding if encoding is not None else quantize_int8(values)
        return {name: codes, name + SCALE_SUFFIX: scales, name + OFFSET_SUFFIX: offsets}
    return {name: values}


def saved_layout(arrays: dict[str, str], float_names, dtype: str) -> dict[str, str]:
    """Name -> npz kind of every array a student of this layout may save at ``dtype``
    (an int8 matrix is ``"quantized"`` codes plus ``"float"`` scale and offset arrays; a
    vector under int8 is saved as float32, which ``"quantized"`` also admits)."""
    if dtype != "int8":
        return dict(arrays)
    out = {}
    for name, kind in arrays.items():
        if name in float_names:
            out[name] = "quantized"
            out[name + SCALE_SUFFIX] = "float"
            out[name + OFFSET_SUFFIX] = "float"
        else:
            out[name] = kind
    return out


def decode(saved: dict[str, np.ndarray], float_names, dtype: str) -> tuple[dict[str, np.ndarray], dict]:
    """``(parameters as float32, int8 encodings by name)`` from the arrays read back."""
    if dtype != "int8":
        return dict(saved), {}
    extra = {name + suffix for name in float_names for suffix in (SCALE_SUFFIX, OFFSET_SUFFIX)}
    out = {k: v for k, v in saved.items() if k not in extra}
    encodings = {}
    for name in float_names:
        scale, offset = saved.get(name + SCALE_SUFFIX), saved.get(name + OFFSET_SUFFIX)
        if name in out and out[name].dtype == np.int8:
            if scale is None or offset is None:
                raise ValueError(f"int8 parameter {name!r} needs {name + SCALE_SUFFIX!r} and "
                                 f"{name + OFFSET_SUFFIX!r} arrays.")
            encodings[name] = (out[name], scale.astype(np.float32), offset.astype(np.float32))
            out[name] = dequantize_int8(*encodings[name])
        elif scale is not None or offset is not None:
            raise ValueError(f"{name!r} has a saved scale or offset but is not int8 codes.")
    return out, encodings
