"""The condensing methods behind one call: what ``MarginCondensedNN`` and the partitioned
(Dask) path both run on a block of rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnkd.condense._result import CondenseResult
from nnkd.condense.fcnn import fcnn_condense
from nnkd.condense.gkn import gkn_condense
from nnkd.condense.hart import hart_condense
from nnkd.condense.ksu import ksu_condense
from nnkd.condense.nets import resolve_count

METHODS = ("ksu", "gkn", "hart", "fcnn")
#: Methods that grow a store until it is consistent (a cap makes them stop early).
CONSISTENT_METHODS = ("hart", "fcnn")


@dataclass(frozen=True)
class CondenseSettings:
    """The estimator parameters a condensing method reads (counts still unresolved: an int, a
    fraction of the rows condensed, or ``None``)."""

    method: str = "ksu"
    delta: float = 0.05
    selection: str = "auto"
    validation_fraction: float = 0.2
    error_tolerance: float = 0.005
    max_prototypes: int | float | None = None
    target_size: int | float | None = None
    random_state: object = None
    n_jobs: int | None = None
    progress: bool = False

    def counts(self, n: int) -> tuple[int | None, int | None]:
        """``(cap, target)`` resolved against ``n`` rows (the target never above the cap)."""
        cap = None if self.max_prototypes is None else resolve_count(self.max_prototypes, n, "max_prototypes")
        target = None if self.target_size is None else resolve_count(self.target_size, n, "target_size")
        if target is not None and cap is not None:
            target = min(target, cap)
        return cap, target


def run_condenser(settings: CondenseSettings, X: np.ndarray, y: np.ndarray, code: int) -> CondenseResult:
    """Condense ``(X, y)`` (working-space float32 rows, int64 class codes) as ``settings`` say.

    ``selection`` of the result is the rule that chose the size; for Hart and FCNN it says
    whether the store is ``"consistent"`` or stopped at a cap.
    """
    s = settings
    cap, target = s.counts(X.shape[0])
    if s.method == "ksu":
        return ksu_condense(X, y, code, delta=s.delta, selection=s.selection, max_prototypes=cap,
                            target_size=target, validation_fraction=s.validation_fraction,
                            error_tolerance=s.error_tolerance, random_state=s.random_state,
                            progress=s.progress, n_jobs=s.n_jobs)
    if s.method == "gkn":
        return gkn_condense(X, y, code, delta=s.delta, max_prototypes=cap, target_size=target,
                            n_jobs=s.n_jobs, progress=s.progress)
    if s.method not in CONSISTENT_METHODS:
        raise ValueError(f"method={s.method!r} is not supported; use one of {METHODS}.")
    limit = target if target is not None else cap
    if s.method == "hart":
        result = hart_condense(X, y, code, max_prototypes=limit, random_state=s.random_state, n_jobs=s.n_jobs)
    else:
        result = fcnn_condense(X, y, code, max_prototypes=limit, n_jobs=s.n_jobs)
    result.selection = ("consistent" if limit is None
                        else "target_size" if target is not None else "max_prototypes")
    return result


def final_selection(settings: CondenseSettings, selection: str, training_error: float) -> str:
    """The rule that chose the size, once the fitted classifier's training error is known: a
    capped Hart/FCNN store that classifies every training row right is ``"consistent"``."""
    if settings.method in CONSISTENT_METHODS and training_error == 0.0:
        return "consistent"
    return selection
