"""Storage types of a student's float parameters: float32, float16 and int8.

A student rounds its float parameters to the storage type once, when it is built, and
keeps the rounded values in float32 memory, so predictions before and after saving agree
bit for bit; computation stays in float32/float64.

``int8`` is symmetric linear quantisation of every matrix with one float32 scale per column
(per input feature of a projection, per dimension of prototypes, per output of label
vectors): ``value = code * scale`` with codes in ``[-127, 127]``. Per column, because a
projection with the input standardisation folded in has columns of very different
magnitude, and one scale per matrix would spend the codes on the widest. Vectors (biases,
standardisation) stay float32: they are few, and a small entry rounded to 0 could divide
by zero. Scales are counted in the size (4 bytes each).
"""

from __future__ import annotations

import numpy as np

#: Storage types of the float parameters and their bytes per parameter (int8 scales extra).
DTYPES = {"float32": 4, "float16": 2, "int8": 1}
#: Suffix of the saved scale array of an int8 parameter (a double underscore: no field name
#: has one, so ``input_scale`` stays a parameter of its own).
SCALE_SUFFIX = "__scale"
_F32_127 = np.float32(127.0)


def stored_bytes(arrays, dtype: str) -> int:
    """Bytes of the float ``arrays`` stored at ``dtype``, int8 scales included."""
    total = 0
    for arr in arrays:
        if arr is None:
            continue
        if dtype == "int8" and arr.ndim != 2:
            total += 4 * int(arr.size)                # vectors stay float32
        else:
            total += DTYPES[dtype] * int(arr.size) + (4 * int(arr.shape[1]) if dtype == "int8" else 0)
    return total


def _scales(columns_max: np.ndarray) -> np.ndarray:
    """Per-column float32 scales ``s`` that are fixed points of ``s -> fl(fl(127 s) / 127)``.

    Rounding ``max / 127`` to float32 is not always such a point (about 1 % of values are
    not), and then quantising an already quantised array would move its scale by one ulp.
    At a fixed point it cannot: the largest code is 127, so the new scale is the old one
    and so are the codes. A fixed point is at most a few ulps above the first guess.
    """
    s = (columns_max.astype(np.float32) / _F32_127).astype(np.float32)
    s[~(s > 0)] = np.float32(1.0)                    # an all-zero column: codes 0, any scale
    for _ in range(16):
        moved = ((_F32_127 * s) / _F32_127).astype(np.float32) != s
        if not moved.any():
            return s
        s[moved] = np.nextafter(s[moved], np.float32(np.inf))
    raise AssertionError("no fixed-point int8 scale found")      # unreachable for finite input


def quantize_int8(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, scales)`` of a finite float matrix: int8 codes of its shape and float32
    scales of shape ``(n_columns,)`` (see the module docstring)."""
    a = np.asarray(values, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"int8 quantisation takes a matrix; got shape {a.shape}.")
    scale = _scales(np.abs(a).max(axis=0) if a.shape[0] else np.zeros(a.shape[1], np.float32))
    return np.clip(np.rint(a / scale), -127, 127).astype(np.int8), scale


def dequantize_int8(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Float32 values of int8 ``codes`` and their ``scales``; ``ValueError`` on a mismatch."""
    codes = np.asarray(codes)
    scales = np.asarray(scales, dtype=np.float32)
    if codes.dtype != np.int8 or codes.ndim != 2:
        raise ValueError(f"int8 codes must be an int8 matrix; got {codes.dtype} of shape {codes.shape}.")
    if scales.shape != (codes.shape[1],) or not (np.isfinite(scales).all() and (scales > 0).all()):
        raise ValueError(f"int8 scales must be {codes.shape[1]} finite positive numbers (one per column); got "
                         f"shape {scales.shape}.")
    if (codes == -128).any():
        raise ValueError("int8 codes must lie in [-127, 127].")
    return (codes.astype(np.float32) * scales).astype(np.float32)


def round_to_storage(values: np.ndarray, dtype: str, name: str) -> np.ndarray:
    """``values`` (float32) as stored at ``dtype``, back in float32; ``ValueError`` when they
    do not fit (float16 overflow)."""
    if dtype == "float32":
        return values
    if dtype == "float16":
        half = values.astype(np.float16)
        if not np.isfinite(half).all():
            raise ValueError(f"{name} overflows float16; use dtype='float32'.")
        return half.astype(np.float32)
    if dtype == "int8":
        return dequantize_int8(*quantize_int8(values)) if values.ndim == 2 else values
    raise ValueError(f"dtype={dtype!r} must be one of {sorted(DTYPES)}.")


def encode(name: str, values: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    """The arrays ``arrays.npz`` holds for float parameter ``name`` stored at ``dtype``."""
    if dtype == "float16":
        return {name: values.astype(np.float16)}
    if dtype == "int8" and values.ndim == 2:
        codes, scales = quantize_int8(values)
        return {name: codes, name + SCALE_SUFFIX: scales}
    return {name: values}


def saved_layout(arrays: dict[str, str], float_names, dtype: str) -> dict[str, str]:
    """Name -> npz kind of every array a student of this layout may save at ``dtype``
    (an int8 matrix is ``"quantized"`` codes plus a ``"float"`` scale array; a vector under
    int8 is saved as float32, which ``"quantized"`` also admits)."""
    if dtype != "int8":
        return dict(arrays)
    out = {}
    for name, kind in arrays.items():
        if name in float_names:
            out[name] = "quantized"
            out[name + SCALE_SUFFIX] = "float"
        else:
            out[name] = kind
    return out


def decode(saved: dict[str, np.ndarray], float_names, dtype: str) -> dict[str, np.ndarray]:
    """The float32 parameters from the arrays read back (int8 codes dequantised)."""
    if dtype != "int8":
        return dict(saved)
    scales = {name + SCALE_SUFFIX for name in float_names}
    out = {k: v for k, v in saved.items() if k not in scales}
    for name in float_names:
        scale = saved.get(name + SCALE_SUFFIX)
        if name in out and out[name].dtype == np.int8:
            if scale is None:
                raise ValueError(f"int8 parameter {name!r} has no {name + SCALE_SUFFIX!r} array.")
            out[name] = dequantize_int8(out[name], scale)
        elif scale is not None:
            raise ValueError(f"{name + SCALE_SUFFIX!r} is saved but {name!r} is not int8 codes.")
    return out
