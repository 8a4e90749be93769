"""``"nmslib:<method>"``: NMSLIB's hnsw, sw-graph, napp, vptree and brute_force, with true
distances.

NMSLIB quirks fixed here: hnsw's optimised L2 index returns *squared* distances (the
other methods return true L2); results come as a list of ``(int32 ids, distances)``
pairs whose rows may be short; indexes cannot be pickled (they go through NMSLIB's own
files instead). Cosine runs as L2 on unit rows (``1 - cos = |x - q|^2 / 2``), which keeps
the space metric for vptree and the SIMD path for hnsw.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from nnkd._core.artifacts import import_optional, package_version
from nnkd._core.cext import pairs_to_arrays
from nnkd._core.threads import n_threads
from nnkd.index._base import Index

_NATIVE = "index.nmslib"
_SPACES = {"euclidean": "l2", "sqeuclidean": "l2", "cosine": "l2", "manhattan": "l1",
           "chebyshev": "linf", "inner_product": "negdotprod"}
# Per method: (build parameters, query parameters) with nnkd's defaults; None means
# "NMSLIB's own default" (not passed). hnsw/sw-graph defaults aim at recall >= 0.95 @ 10.
_PARAMS = {
    "hnsw": ({"M": 16, "efConstruction": 200, "post": 0, "delaunay_type": None,
              "skip_optimized_index": None}, {"efSearch": 128}),
    "sw-graph": ({"NN": 16, "efConstruction": 200}, {"efSearch": 128}),
    "napp": ({"numPivot": None, "numPivotIndex": None, "hashTrickDim": None, "chunkIndexSize": None},
             {"numPivotSearch": None}),
    "vptree": ({"bucketSize": None, "chunkBucket": None, "selectPivotAttempts": None},
               {"alphaLeft": None, "alphaRight": None, "expLeft": None, "expRight": None,
                "maxLeavesToVisit": None}),
    "brute_force": ({}, {}),
}


#: The lines NMSLIB's binary wheels print to the C stderr when the module is first imported.
_BANNER = ("Your CPU supports instructions that this binary was not compiled to use",
           "For maximum performance, you can install NMSLIB from sources", "pip install --no-binary :all: nmslib")


def _import_nmslib():
    if "nmslib" in sys.modules:
        return sys.modules["nmslib"]
    with _without_banner():
        return import_optional("nmslib", "nmslib", "The nmslib backend")


@contextmanager
def _without_banner():
    """Hold the C stderr in a file while NMSLIB's module initialises (it prints a build banner
    there, with no switch to turn it off), then pass on every other line it received."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):               # no usable fd 2: nothing to protect
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode(errors="replace")
            rest = "".join(line for line in text.splitlines(keepends=True) if not line.startswith(_BANNER))
            if rest:
                os.write(2, rest.encode())


def _given(params: dict) -> dict:
    return {k: v for k, v in params.items() if v is not None}


class NmslibIndex(Index):
    """An NMSLIB index (``method`` in hnsw, sw-graph, napp, vptree, brute_force).

    Build parameters are NMSLIB's (``M``, ``efConstruction``, ``post`` for hnsw; ``NN``,
    ``efConstruction`` for sw-graph; ``numPivot``, ``numPivotIndex`` for napp; ...);
    query parameters likewise (``efSearch``, ``numPivotSearch``, ``alphaLeft``, ...).
    hnsw and sw-graph default to ``efConstruction=200`` and ``efSearch=128``.

    Metrics: all of :data:`nnkd.index.INDEX_METRICS`; vptree needs a metric space, so
    not ``inner_product``.
    """

    backend = "nmslib"
    _NATIVE_ATTRS = ("_index",)

    @property
    def BUILD_DEFAULTS(self):
        return self._method_params()[0]

    @property
    def QUERY_DEFAULTS(self):
        return self._method_params()[1]

    def _method_params(self):
        if self.method not in _PARAMS:
            raise ValueError(f"unknown nmslib method {self.method!r}; use one of {sorted(_PARAMS)} "
                             "(spec 'nmslib:<method>').")
        return _PARAMS[self.method]

    def _check_supported(self):
        if self.method == "vptree" and self.metric == "inner_product":
            raise ValueError("nmslib:vptree needs a metric space and inner_product is not one; "
                             "use nmslib:hnsw, nmslib:sw-graph or nmslib:napp.")

    @property
    def _returns_squared(self) -> bool:
        return (self.method == "hnsw" and _SPACES[self.metric] == "l2"
                and not self.build_params.get("skip_optimized_index"))

    def _new(self):
        return _import_nmslib().init(method=self.method, space=_SPACES[self.metric],
                                     data_type=_import_nmslib().DataType.DENSE_VECTOR)

    def _build(self, X):
        index = self._new()
        index.addDataPointBatch(X)
        params = _given(self.build_params)
        if self.method in ("hnsw", "sw-graph", "napp"):       # the others take no thread count
            params["indexThreadQty"] = n_threads(self.n_jobs)
        try:
            index.createIndex(params, print_progress=False)
        except RuntimeError as exc:
            raise ValueError(f"nmslib failed to build {self.spec} with {params}: {exc}") from None
        self._index = index
        self._apply_query_params()

    def _apply_query_params(self):
        params = _given(self.query_params)
        if params:
            self._index.setQueryTimeParams(params)

    def _breadth_param(self):
        return {"hnsw": "efSearch", "sw-graph": "efSearch", "napp": "numPivotSearch",
                "vptree": "maxLeavesToVisit"}.get(self.method, "the search breadth")

    def _search(self, Q, k):
        rows = self._index.knnQueryBatch(Q, k=k, num_threads=n_threads(self.n_jobs))
        dist, ind = pairs_to_arrays(rows, k)             # short rows: -1 ids, query() reports them
        if self.metric == "cosine":                       # |x - q|^2 / 2 on unit rows
            dist = dist / 2.0 if self._returns_squared else dist * dist / 2.0
        elif self.metric == "euclidean" and self._returns_squared:
            dist = np.sqrt(np.maximum(dist, 0.0))
        elif self.metric == "sqeuclidean" and not self._returns_squared:
            dist = dist * dist
        return dist, ind

    def _library_versions(self):
        return {"nmslib": package_version("nmslib")}

    def _save_native(self, directory: Path) -> list[str]:
        self._index.saveIndex(str(directory / _NATIVE), save_data=True)
        return [_NATIVE, _NATIVE + ".dat"]

    def _load_native(self, directory: Path) -> None:
        index = self._new()
        index.loadIndex(str(directory / _NATIVE), load_data=True)
        self._index = index
        self._n = len(index)
        self._apply_query_params()
