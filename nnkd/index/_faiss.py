"""``"faiss:<index_factory string>"``: any FAISS index, with true distances.

FAISS quirks fixed here: ``METRIC_L2`` returns squared distances and inner-product
indexes return similarities (descending); missing results are padded with ``-1``.
Lossy codecs (PQ, SQ, PCA, ...) are followed by an exact re-ranking stage by default so
that the distances returned are true ones.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import numpy as np

from nnkd._core.artifacts import import_optional, package_version
from nnkd._core.threads import library_threads
from nnkd.index._base import Index

_NATIVE = "index.faiss"
# Codecs whose stored vectors are approximations, so their distances are estimates.
_LOSSY = re.compile(r"PQ|SQ|LSH|RQ|LSQ|PCA|ITQ|RaBitQ")
_REFINED = re.compile(r"RFlat|Refine")


def _import_faiss():
    return import_optional("faiss", "faiss-cpu", "The faiss backend")


def _omp_threads(faiss, n_jobs):
    return library_threads(faiss.omp_get_max_threads, faiss.omp_set_num_threads, n_jobs)


def _chain(faiss, index):
    """``index`` and the indexes it wraps (pre-transform, refine, HNSW storage), outermost first."""
    node = faiss.downcast_index(index)
    while node is not None:
        yield node
        inner = getattr(node, "index", None) or getattr(node, "base_index", None) or getattr(node, "storage", None)
        node = faiss.downcast_index(inner) if inner is not None else None


def _unwrap(faiss, index, attr):
    """The first index in the wrapper chain that has ``attr``."""
    return next((node for node in _chain(faiss, index) if hasattr(node, attr)), None)


#: FAISS's own rule of thumb: k-means wants this many training rows per centroid.
_ROWS_PER_CENTROID = 39


def _clusterings(faiss, index) -> list[tuple[str, int, object]]:
    """Every k-means the training of ``index`` will run: ``(what, centroids, parameters)``.

    FAISS prints a line to the C stderr per under-trained k-means (one per PQ sub-quantizer,
    so thousands over a benchmark grid); it has no switch for it, but skips it when
    ``min_points_per_centroid`` is low, so the caller lowers that and warns once instead.
    """
    found, keep = [], []
    for node in _chain(faiss, index):
        if isinstance(node, faiss.IndexPreTransform):
            for i in range(node.chain.size()):
                transform = faiss.downcast_VectorTransform(node.chain.at(i))
                if isinstance(transform, faiss.OPQMatrix):
                    # OPQ trains a PQ of its own; it uses ``transform.pq`` when one is set
                    # (and overrides its iteration counts, so only the threshold changes).
                    pq = faiss.ProductQuantizer(transform.d_out, transform.M, 8)
                    transform.pq = pq
                    keep.append(pq)
                    found.append(("OPQ", pq.ksub, pq.cp))
        ivf = faiss.try_extract_index_ivf(node) if isinstance(node, faiss.IndexIVF) else None
        if ivf is not None:
            found.append(("IVF", int(ivf.nlist), ivf.cp))
        pq = getattr(node, "pq", None)
        if pq is not None and hasattr(pq, "cp"):
            found.append(("PQ", int(pq.ksub), pq.cp))
    index.__dict__.setdefault("_nnkd_keep", []).extend(keep)      # SWIG holds raw pointers
    return found


def _quiet_training(faiss, index, n_rows: int, spec: str) -> None:
    """Silence FAISS's per-k-means warning at its source and say it once, as a Python warning."""
    short = []
    for what, k, params in _clusterings(faiss, index):
        if n_rows < _ROWS_PER_CENTROID * k:
            short.append(f"{what} ({k} centroids)")
        params.min_points_per_centroid = 1
    if short:
        import warnings

        warnings.warn(f"{spec}: {n_rows} training rows are few for {', '.join(short)}; FAISS suggests at least "
                      f"{_ROWS_PER_CENTROID} per centroid (the codebooks may be poor: check recall).", UserWarning,
                      stacklevel=4)


class FaissIndex(Index):
    """A FAISS index built by ``faiss.index_factory(dim, method, metric)``.

    Build parameters: ``efConstruction`` (HNSW, default 200), ``refine`` (``"auto"``:
    append an exact re-ranking stage ``RFlat`` to lossy codecs so distances are true and
    recall recovers; ``False`` keeps the codec's estimated distances). Query parameters:
    ``efSearch`` (HNSW, default 128), ``nprobe`` (IVF, default ``max(1, nlist // 8)``),
    ``k_factor`` (re-ranking candidates per neighbour, default 8).

    Metrics: euclidean/sqeuclidean (``METRIC_L2``), cosine and inner_product
    (``METRIC_INNER_PRODUCT``) everywhere; manhattan/chebyshev (``METRIC_L1``/``Linf``)
    only for indexes that store exact vectors (Flat, HNSW, IVF-Flat).
    """

    backend = "faiss"
    BUILD_DEFAULTS: ClassVar[dict] = {"efConstruction": 200, "refine": "auto"}
    QUERY_DEFAULTS: ClassVar[dict] = {"efSearch": 128, "nprobe": None, "k_factor": 8}
    _NATIVE_ATTRS = ("_index",)

    def _check_supported(self):
        if not self.method:
            raise ValueError("the faiss spec needs an index_factory string, e.g. 'faiss:HNSW32' or "
                             "'faiss:IVF256,Flat'.")
        if self.build_params["refine"] not in ("auto", True, False):
            raise ValueError(f"refine={self.build_params['refine']!r} must be 'auto', True or False.")
        if self.metric in ("manhattan", "chebyshev") and _LOSSY.search(self.method):
            raise ValueError(f"faiss cannot compute {self.metric} distances over the lossy codec in "
                             f"{self.method!r}; use 'Flat', 'HNSW32' or 'IVF256,Flat', or the nmslib backend.")

    @property
    def exact_distances(self) -> bool:
        """Whether returned distances are true ones (``False`` only for a lossy codec with
        ``refine=False``)."""
        return not _LOSSY.search(self.method) or bool(_REFINED.search(self._factory_string()))

    def _factory_string(self) -> str:
        refine = self.build_params["refine"]
        if refine and _LOSSY.search(self.method) and not _REFINED.search(self.method):
            return f"{self.method},RFlat"
        return self.method

    def _faiss_metric(self, faiss):
        return {"euclidean": faiss.METRIC_L2, "sqeuclidean": faiss.METRIC_L2,
                "manhattan": faiss.METRIC_L1, "chebyshev": faiss.METRIC_Linf,
                "cosine": faiss.METRIC_INNER_PRODUCT, "inner_product": faiss.METRIC_INNER_PRODUCT}[self.metric]

    def _build(self, X):
        faiss = _import_faiss()
        d = X.shape[1]
        try:
            index = faiss.index_factory(d, self._factory_string(), self._faiss_metric(faiss))
        except RuntimeError as exc:
            raise ValueError(f"faiss could not parse index_factory string {self.method!r} for dim={d}: "
                             f"{str(exc).strip().splitlines()[-1]}") from None
        hnsw = _unwrap(faiss, index, "hnsw")
        if hnsw is not None:
            hnsw.hnsw.efConstruction = int(self.build_params["efConstruction"])
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None and X.shape[0] < ivf.nlist:
            raise ValueError(f"{self.spec} needs at least nlist={ivf.nlist} rows to train; got {X.shape[0]}. "
                             f"Use a smaller nlist (e.g. IVF{max(1, X.shape[0] // 39)},Flat) or 'HNSW32'.")
        with _omp_threads(faiss, self.n_jobs):
            try:
                if not index.is_trained:
                    _quiet_training(faiss, index, X.shape[0], self.spec)
                    index.train(X)
                index.add(X)
            except RuntimeError as exc:
                raise ValueError(f"faiss failed to build {self.spec}: {str(exc).strip().splitlines()[-1]}") from None
        self._index = index
        self._dim, self._n = d, X.shape[0]
        self._apply_query_params()

    def _apply_query_params(self):
        faiss = _import_faiss()
        qp = self.query_params
        hnsw = _unwrap(faiss, self._index, "hnsw")
        if hnsw is not None:
            hnsw.hnsw.efSearch = int(qp["efSearch"])
        ivf = faiss.try_extract_index_ivf(self._index)
        if ivf is not None:
            ivf.nprobe = int(qp["nprobe"]) if qp["nprobe"] is not None else max(1, ivf.nlist // 8)
        refine = _unwrap(faiss, self._index, "k_factor")
        if refine is not None:
            refine.k_factor = float(qp["k_factor"])

    def _breadth_param(self):
        faiss = _import_faiss()
        if faiss.try_extract_index_ivf(self._index) is not None:
            return "nprobe"
        return "efSearch" if _unwrap(faiss, self._index, "hnsw") is not None else "the search breadth"

    def _search(self, Q, k):
        faiss = _import_faiss()
        with _omp_threads(faiss, self.n_jobs):
            D, ind = self._index.search(Q, k)
        if self.metric == "euclidean":
            D = np.sqrt(np.maximum(D, 0.0, out=D), out=D)
        elif self.metric == "sqeuclidean":
            np.maximum(D, 0.0, out=D)
        elif self.metric == "cosine":
            D = np.subtract(1.0, D, out=D)
        elif self.metric == "inner_product":
            D = np.negative(D, out=D)
        return D, ind

    def _library_versions(self):
        return {"faiss": package_version("faiss-cpu") or package_version("faiss")}

    def _save_native(self, directory: Path) -> list[str]:
        _import_faiss().write_index(self._index, str(directory / _NATIVE))
        return [_NATIVE]

    def _load_native(self, directory: Path) -> None:
        faiss = _import_faiss()
        self._index = faiss.read_index(str(directory / _NATIVE))
        self._dim, self._n = self._index.d, self._index.ntotal
        self._apply_query_params()
