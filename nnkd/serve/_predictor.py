"""What one batch computes from a student: a single ``predict_proba`` over all the rows of
the batch, then each request's slice (labels, probabilities, neighbours)."""

from __future__ import annotations

import numpy as np

from nnkd.serve._requests import Options
from nnkd.student import Student
from nnkd.student._base import non_finite_rows


class PredictionError(Exception):
    """A request's answer the student could not give (a non-finite output): returned in
    place of that request's result, so the other requests of its batch are still answered."""


class StudentPredictor:
    """The ``run_batch`` function of :class:`nnkd.serve.MicroBatcher` for a :class:`Student`.

    Parameters
    ----------
    student : Student

    Notes
    -----
    Labels and probabilities come from one :meth:`Student.predict_with_proba` over the batch,
    so a batched answer equals ``predict`` on the request's own rows.
    Neighbours come from :meth:`Student.explain` on the rows that ask for them (one call
    per distinct ``k`` in the batch).
    """

    def __init__(self, student: Student):
        self.student = student
        self._classes = None if student.classes is None else student.classes.tolist()

    def sample_rows(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` plausible input rows (for profiling): :meth:`Student.example_inputs`."""
        return self.student.example_inputs(n, rng)

    def __call__(self, X: np.ndarray, sizes: list[int], options: list[Options]) -> list[dict]:
        """Answer every request of a batch: ``X`` holds their rows in order, ``sizes[r]`` of
        them for request ``r``, which asked for ``options[r]``."""
        labels, proba = self.student.predict_with_proba(X, check_finite=False)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        # A NaN or infinite output is never answered as if it were a prediction: the rows'
        # requests get a 500 that names them (an argmax over NaN would say "class 0"); the
        # other requests of the batch are answered.
        bad = np.zeros(len(X), dtype=bool)
        bad[non_finite_rows(proba if proba is not None else labels)] = True
        good = {r for r in range(len(options)) if not bad[bounds[r]:bounds[r + 1]].any()}
        neighbors = self._neighbors(X, [opt if r in good else None for r, opt in enumerate(options)], bounds)
        out = []
        for r, opt in enumerate(options):
            a, b = int(bounds[r]), int(bounds[r + 1])
            if bad[a:b].any():
                first = int(np.flatnonzero(bad[a:b])[0])
                out.append(PredictionError(f"the student's output for instances[{first}] is NaN or infinite (its "
                                           "values are out of the range the student was fitted on); nothing is "
                                           "answered for this request."))
                continue
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
            if opt is not None and "neighbors" in opt.fields:
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
