"""Wall-clock timing of repeated calls, as every benchmark script measures them."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timing:
    """Wall-clock times of repeated calls and the result of the last one."""

    times: list[float] = field(default_factory=list)
    result: Any = None

    @property
    def median(self) -> float:
        """Median of the timed calls."""
        return float(statistics.median(self.times))


def time_call(fn: Callable[[], Any], *, repeats: int, warmup: bool | Callable[[], Any] = True,
              budget_s: float | None = None) -> Timing:
    """Time ``fn`` ``repeats`` times (``time.perf_counter``) after an optional warm-up.

    Parameters
    ----------
    fn : callable
        The call to time; its last result is kept.
    repeats : int
        Number of timed calls (at least one is always made).
    warmup : bool or callable, default=True
        ``True``: one untimed call of ``fn`` first; a callable: call it instead (e.g. the
        same estimator on a few rows, which compiles the same Numba kernels); ``False``: none.
    budget_s : float, default=None
        Stop repeating once the timed calls have used this many seconds.

    Returns
    -------
    Timing
    """
    if warmup is True:
        fn()
    elif callable(warmup):
        warmup()
    timing = Timing()
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        timing.result = fn()
        timing.times.append(time.perf_counter() - start)
        if budget_s is not None and sum(timing.times) >= budget_s:
            break
    return timing
