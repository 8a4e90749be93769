"""What every teacher gives: embeddings and tempered soft labels, computed in batches."""

from __future__ import annotations

import numpy as np

from nnkd._core.metrics import check_points
from nnkd._core.partitions import first_row, is_dask_collection, map_rows


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64 (max-shifted, so it never overflows)."""
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be > 0.")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class Teacher:
    """Base class: subclasses implement ``_embed_batch`` and ``_logits_batch`` on float32 rows."""

    batch_size: int = 1024
    temperature: float = 1.0
    progress: bool = False

    def _embed_batch(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _logits_batch(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _batched(self, fn, X, what: str) -> np.ndarray:
        from tqdm.auto import tqdm

        X = check_points(X, "X")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r} must be a positive integer.")
        starts = range(0, X.shape[0], self.batch_size)
        parts = []
        for a in tqdm(starts, desc=f"teacher {what}", unit="batch", disable=not self.progress or len(starts) < 2):
            out = np.asarray(fn(X[a:a + self.batch_size]), dtype=np.float32)
            rows = min(self.batch_size, X.shape[0] - a)
            if out.ndim != 2 or out.shape[0] != rows:
                raise ValueError(f"teacher {what} returned shape {out.shape} for a batch of {rows} rows; "
                                 "expected (n_rows, n_outputs).")
            if not np.isfinite(out).all():
                raise ValueError(f"teacher {what} contain NaN or infinity; check the model and its inputs.")
            parts.append(out)
        result = np.concatenate(parts)
        if parts and any(p.shape[1] != parts[0].shape[1] for p in parts):
            raise ValueError(f"teacher {what} changed width between batches.")
        return result

    def _lazily(self, method: str, X, **kwargs):
        """``self.<method>`` over the row partitions of a dask array: a dask array, the teacher
        shipped to each worker once. The output width comes from the first row."""
        width = getattr(self, method)(first_row(X), **kwargs).shape[1]
        dtype = np.float64 if method == "soft_labels" else np.float32
        return map_rows(self, method, X, width=width, dtype=dtype, **kwargs)

    def embed(self, X) -> np.ndarray:
        """Teacher embeddings of ``X``: ndarray of shape (n_samples, n_dims), float32 (a dask
        array, computed per partition, for a dask array ``X``)."""
        if is_dask_collection(X):
            return self._lazily("embed", X)
        return self._batched(self._embed_batch, X, "embeddings")

    def logits(self, X) -> np.ndarray:
        """Teacher logits of ``X``: ndarray of shape (n_samples, n_classes), float32 (a dask
        array for a dask array ``X``)."""
        if is_dask_collection(X):
            return self._lazily("logits", X)
        return self._batched(self._logits_batch, X, "logits")

    def classifier_weights(self) -> np.ndarray:
        """Weight matrix ``(n_outputs, n_dims)`` of the teacher's final linear layer, the map from
        its embedding to its logits (what LELP and data impressions read)."""
        raise TypeError(f"{type(self).__name__} does not expose its final linear layer.")

    def prepare(self, X, y) -> Teacher:
        """The teacher a distiller uses on the transfer rows ``X`` (labels ``y`` or ``None``):
        a trained teacher returns itself; one that learns from labels returns a fitted copy."""
        return self

    def soft_labels(self, X, temperature: float | None = None) -> np.ndarray:
        """``softmax(logits / T)``: ndarray of shape (n_samples, n_classes), float64 (rows sum to 1).

        ``temperature`` defaults to the teacher's ``temperature``. For a dask array ``X``: a
        dask array, computed per partition with the teacher shipped to each worker once.
        """
        if is_dask_collection(X):
            return self._lazily("soft_labels", X, temperature=temperature)
        return softmax(self.logits(X), self.temperature if temperature is None else temperature)
