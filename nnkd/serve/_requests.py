"""Validation of request bodies: every way a body can be wrong becomes a :class:`RequestError`
with an HTTP status and a message that names the problem, before anything is queued.

Checking each request completely on arrival is what keeps one bad request from failing the
batch it would have joined.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import orjson

#: JSON numbers only: ``bool`` is a subclass of ``int`` but ``type(True) is bool``, so true/false
#: are rejected rather than read as 1/0.
_NUMBER_TYPES = frozenset((int, float))
RETURN_FIELDS = ("label", "proba", "neighbors")
DEFAULT_K = 3


class RequestError(Exception):
    """A bad request: ``status`` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Options:
    """What one request asks for.

    Attributes
    ----------
    fields : tuple of str
        A subset of ``("label", "proba", "neighbors")``, in that order.
    k : int
        Neighbours per row for ``"neighbors"``.
    """

    fields: tuple[str, ...] = ("label",)
    k: int = DEFAULT_K


def check_content_type(content_type: str | None) -> None:
    """Raise 415 unless the request declares a JSON body."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise RequestError(415, f"Content-Type must be application/json (got {content_type or 'none'!r}).")


def decode_json(body: bytes) -> dict:
    """Parse a JSON object; 400 if the body is not one."""
    if not body:
        raise RequestError(400, "the request body is empty; send a JSON object such as {\"instances\": [[...]]}.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson parses a one-row body ~10x faster than the standard library, which matters
        # because decoding runs on the event loop for every request. It also refuses what the
        # standard library accepts (NaN, Infinity, integers beyond float64); the standard
        # parser reads the body again so that those reach the checks that name the bad value.
        payload = _decode_stdlib(body)
    if not isinstance(payload, dict):
        raise RequestError(400, f"the body must be a JSON object, not {_json_type(payload)}.")
    return payload


def _decode_stdlib(body: bytes):
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.") from None
    except UnicodeDecodeError:
        raise RequestError(400, "malformed JSON: the body is not UTF-8 text.") from None
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply.") from None
    except ValueError as exc:                  # e.g. an integer literal beyond 4300 digits
        raise RequestError(422, f"the body holds a number JSON parsing refuses: {str(exc)[:120]}") from None


def _json_type(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def parse_instances(value, n_features: int, max_instances: int, *, what: str = "") -> np.ndarray:
    """The ``"instances"`` field as a C-contiguous float32 array of shape (n, n_features).

    Parameters
    ----------
    value : object
        The decoded JSON value.
    n_features : int
        Values per instance the student takes.
    max_instances : int
        Most rows accepted in one request.
    what : str, default=""
        What an instance is, for the dimension message (:meth:`~nnkd.student.Student.expects`).

    Raises
    ------
    RequestError
        413 for too many rows, 422 for anything else wrong, naming the first bad row/value.
    """
    if not isinstance(value, list):
        raise RequestError(422, f'"instances" must be an array of rows (arrays of numbers), not {_json_type(value)}.')
    n = len(value)
    if n == 0:
        raise RequestError(422, '"instances" is empty; send at least one row.')
    if n > max_instances:
        raise RequestError(413, f'"instances" has {n} rows; at most {max_instances} are accepted per request.')
    for i, row in enumerate(value):
        if type(row) is not list:
            raise RequestError(422, f"instances[{i}] is {_json_type(row)}; each instance must be an array of "
                                    f"{n_features} numbers.")
        if len(row) != n_features:
            raise RequestError(422, f"instances[{i}] has {len(row)} values; this student expects {n_features}"
                                    + (f" ({what})" if what else "") + ".")
        if not _NUMBER_TYPES.issuperset(map(type, row)):
            j = next(j for j, v in enumerate(row) if type(v) not in _NUMBER_TYPES)
            raise RequestError(422, f"instances[{i}][{j}] is {_json_type(row[j])}; values must be numbers.")
    try:
        X = np.array(value, dtype=np.float64)
    except OverflowError:                    # an integer literal beyond float64
        i, j = next((i, j) for i, row in enumerate(value) for j, v in enumerate(row)
                    if type(v) is int and not _fits_float(v))
        raise RequestError(422, f"instances[{i}][{j}] is too large; values must be finite float32 numbers.") from None
    with np.errstate(over="ignore"):         # beyond float32 becomes inf here, and is refused below
        X32 = X.astype(np.float32)
    if not np.isfinite(X32).all():
        i, j = (int(a[0]) for a in np.nonzero(~np.isfinite(X32)))
        v = float(X[i, j])
        problem = "NaN" if math.isnan(v) else ("infinite" if math.isinf(v) else f"{v!r}, outside the float32 range")
        raise RequestError(422, f"instances[{i}][{j}] is {problem}; values must be finite float32 numbers.")
    return X32


def _fits_float(v: int) -> bool:
    try:
        float(v)
    except OverflowError:
        return False
    return True


def parse_options(payload: dict, *, student, endpoint: str) -> Options:
    """The request's options (``"return"``, ``"k"``); 422 naming the problem.

    ``endpoint="neighbors"`` always returns neighbours and accepts no ``"return"``. What the
    student cannot answer (probabilities from a regressor, neighbours from a tree) is a 422
    with the student's own reason (:meth:`~nnkd.student.Student.check_proba`,
    :meth:`~nnkd.student.Student.check_neighbors`).
    """
    allowed = {"instances", "k"} | ({"return"} if endpoint == "predict" else set())
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise RequestError(422, f"unknown field(s) {unknown}; this endpoint accepts {sorted(allowed)}.")
    if "instances" not in payload:
        raise RequestError(422, 'missing field "instances" (an array of rows).')
    if endpoint == "neighbors":
        fields: tuple[str, ...] = ("neighbors",)
    else:
        requested = payload.get("return", ["label"])
        if isinstance(requested, str):
            requested = [requested]
        if (not isinstance(requested, list) or not requested
                or any(not isinstance(f, str) or f not in RETURN_FIELDS for f in requested)):
            raise RequestError(422, f'"return" must be a non-empty array of {list(RETURN_FIELDS)}; '
                                    f"got {json.dumps(requested)[:80]}.")
        fields = tuple(f for f in RETURN_FIELDS if f in requested)
    k = payload.get("k", DEFAULT_K)
    if type(k) is not int or k < 1:
        raise RequestError(422, f'"k" must be an integer >= 1; got {json.dumps(k)[:40]}.')
    try:
        if "proba" in fields:
            student.check_proba()
        if "neighbors" in fields:
            student.check_neighbors(k)
    except ValueError as exc:
        raise RequestError(422, str(exc)) from None
    return Options(fields=fields, k=k)


def request_overhead(student, *, repeats: int = 200, seed: int = 0) -> float:
    """Median seconds one one-row request spends being decoded, validated and its answer
    encoded (what the planner adds to the model's time per request)."""
    import time

    rng = np.random.default_rng(seed)
    n_features = student.n_features_in
    body = json.dumps({"instances": rng.standard_normal((1, n_features)).round(4).tolist()}).encode()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        payload = decode_json(body)
        parse_options(payload, student=student, endpoint="predict")
        parse_instances(payload["instances"], n_features, 1)
        json.dumps({"label": [0]}, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        times.append(time.perf_counter() - start)
    return float(np.median(times))
