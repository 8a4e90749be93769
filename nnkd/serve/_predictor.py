"""What one batch computes from a student: a single ``predict_proba`` over all the rows of
the batch, then each request's slice (labels, probabilities, neighbours)."""

from __future__ import annotations

import numpy as np

from nnkd.serve._requests import Options
from nnkd.student import Student


class StudentPredictor:
    """The ``run_batch`` function of :class:`nnkd.serve.MicroBatcher` for a :class:`Student`.

    Parameters
    ----------
    student : Student

    Notes
    -----
    Labels are ``classes[argmax(predict_proba)]``, which is how :meth:`Student.predict`
    computes them, so a batched answer equals ``predict`` on the request's own rows.
    Neighbours come from :meth:`Student.explain` on the rows that ask for them (one call
    per distinct ``k`` in the batch).
    """

    def __init__(self, student: Student):
        self.student = student
        self._classes = student.classes.tolist()

    def sample_rows(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` plausible input rows (for profiling): prototypes plus noise in input space,
        or standardised Gaussian rows when the student projects its inputs."""
        s = self.student
        if s.projection is None and s.input_mean is None:
            P = s.prototypes
            noise = rng.standard_normal((n, P.shape[1])) * (0.1 * P.std(axis=0) + 1e-6)
            return np.ascontiguousarray(P[rng.integers(0, P.shape[0], n)] + noise, dtype=np.float32)
        d = s.n_features_in
        mean = s.input_mean if s.input_mean is not None else np.zeros(d, dtype=np.float32)
        scale = s.input_scale if s.input_scale is not None else np.ones(d, dtype=np.float32)
        return np.ascontiguousarray(mean + scale * rng.standard_normal((n, d)), dtype=np.float32)

    def __call__(self, X: np.ndarray, sizes: list[int], options: list[Options]) -> list[dict]:
        """Answer every request of a batch: ``X`` holds their rows in order, ``sizes[r]`` of
        them for request ``r``, which asked for ``options[r]``."""
        s = self.student
        proba = s.predict_proba(X)
        labels = s.classes[np.argmax(proba, axis=1)]
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        neighbors = self._neighbors(X, options, bounds)
        out = []
        for r, opt in enumerate(options):
            a, b = int(bounds[r]), int(bounds[r + 1])
            result: dict = {}
            if "label" in opt.fields:
                result["label"] = labels[a:b].tolist()
            if "proba" in opt.fields:
                result["classes"] = self._classes
                result["proba"] = proba[a:b].tolist()
            if "neighbors" in opt.fields:
                result["neighbors"] = neighbors[r]
            out.append(result)
        return out

    def _neighbors(self, X: np.ndarray, options: list[Options], bounds: np.ndarray) -> dict[int, list]:
        wanted: dict[int, list[int]] = {}
        for r, opt in enumerate(options):
            if "neighbors" in opt.fields:
                wanted.setdefault(opt.k, []).append(r)
        out: dict[int, list] = {}
        for k, requests in wanted.items():
            rows = np.concatenate([np.arange(bounds[r], bounds[r + 1]) for r in requests])
            explained = self.student.explain(X[rows], k=k)
            start = 0
            for r in requests:
                n = int(bounds[r + 1] - bounds[r])
                out[r] = explained[start:start + n]
                start += n
        return out
