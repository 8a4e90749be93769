"""Recipe selection for the projection student, inside ``fit``, on held-out transfer rows.

What the benchmarks once chose by hand per dataset (temperature, augmentation noise,
training length, and how a size budget is split between storage type, projection width
and prototype count) is chosen here on a held-out part of the transfer set, as
scikit-learn's ``early_stopping``/``validation_fraction`` do:

1. *Shape*: each storage type the budget allows (float32, float16, int8: more, coarser
   prototypes), then each projection width at the best type, trained briefly with the
   first temperature and noise.
2. *Targets*: each temperature x noise pair on the best shape, trained briefly.
3. *Length*: the best recipe trained in full, its held-out fidelity checked at
   :data:`N_CHECKPOINTS` points; the best checkpoint is the student.

Every candidate is scored on the student as it ships (parameters rounded to the storage
type) by top-1 agreement with the teacher on the held-out rows. The student is never
refitted on those rows, so they still give an honest bound on its error: the final
student is one of ``|grid| x N_CHECKPOINTS`` classifiers fixed before those rows were
looked at, and :func:`nnkd.condense.holdout_bound` with that many candidates holds for
whichever one the selection picks.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np

from nnkd.student import projection_size_bytes

#: Candidate temperatures of the teacher's soft labels (``temperature="auto"``).
TEMPERATURES = (1.0, 4.0)
#: Candidate noise of ``augment="noise"`` (``noise_scale="auto"``), standardised units.
NOISE_GRID = (0.3, 1.0)
#: Candidate storage types under a size budget (``dtype="auto"``).
BUDGET_DTYPES = ("float32", "float16", "int8")
#: Candidate projection widths (``projection_dim="auto"``), capped by the input width.
PROJECTION_DIMS = (16, 8, 32)
#: Width of the projection when it is not searched (``projection_dim=None``).
DEFAULT_PROJECTION_DIM = 16
#: Prototypes of a projection student without a size budget.
DEFAULT_PROJECTION_PROTOTYPES = 256
#: Held-out fidelity checks along the final training run.
N_CHECKPOINTS = 10
#: Optimiser steps the default training length aims at (``max_epochs="auto"``).
TARGET_STEPS = 16_000
#: Bounds of ``max_epochs="auto"``.
AUTO_EPOCHS = (30, 1000)
#: Share of ``max_epochs`` each brief candidate run trains for.
SHORT_SHARE = 1 / 12
#: Fewest held-out rows for which a selection (and a held-out bound) is attempted.
MIN_HOLDOUT = 10


@dataclass(frozen=True)
class Recipe:
    """One candidate: how the student is shaped and trained."""

    dtype: str
    projection_dim: int
    n_prototypes: int
    temperature: float
    noise_scale: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def auto_epochs(n_rows: int, batch_size: int) -> int:
    """``max_epochs="auto"``: about :data:`TARGET_STEPS` optimiser steps, within :data:`AUTO_EPOCHS`."""
    steps = max(1, math.ceil(n_rows / batch_size))
    return int(np.clip(round(TARGET_STEPS / steps), *AUTO_EPOCHS))


def budget_prototypes(budget_bytes: int | None, k: int, d: int, n_outputs: int, subclasses: bool,
                      dtype: str) -> int:
    """Most prototypes a projection student of width ``k`` fits in ``budget_bytes`` at ``dtype``
    (``DEFAULT_PROJECTION_PROTOTYPES`` without a budget; may be < 2: the budget is too small)."""
    if budget_bytes is None:
        return DEFAULT_PROJECTION_PROTOTYPES
    fixed = projection_size_bytes(0, k, d, n_outputs, subclasses, dtype)
    per = projection_size_bytes(1, k, d, n_outputs, subclasses, dtype) - fixed
    return max(0, (budget_bytes - fixed) // per)


@dataclass
class Grid:
    """The candidate values of each recipe axis (one value where the user fixed it)."""

    dtypes: tuple[str, ...]
    dims: tuple[int, ...]
    temperatures: tuple[float, ...]
    noises: tuple[float | None, ...]

    def size(self) -> int:
        return len(self.dtypes) * len(self.dims) * len(self.temperatures) * len(self.noises)

    def first(self) -> tuple:
        return self.dtypes[0], self.dims[0], self.temperatures[0], self.noises[0]


def make_grid(*, dtype, projection_dim, temperature, noise_scale, augment, loss: str, has_budget: bool,
              n_features: int) -> Grid:
    """The grid of a distiller's ``"auto"`` parameters (fixed ones give one value)."""
    if dtype == "auto":
        dtypes = BUDGET_DTYPES if has_budget else ("float32",)
    else:
        dtypes = (dtype,)
    if projection_dim == "auto":
        dims = tuple(dict.fromkeys(min(n_features, k) for k in PROJECTION_DIMS))
    else:
        dims = (min(n_features, projection_dim or DEFAULT_PROJECTION_DIM),)
    if temperature == "auto":
        # SLaM's loss is defined on the teacher's own probabilities.
        temperatures = (1.0,) if loss == "slam" else TEMPERATURES
    else:
        temperatures = (float(temperature),)
    if augment != "noise":
        noises = (None,)
    elif noise_scale == "auto":
        noises = NOISE_GRID
    else:
        noises = (float(noise_scale),)
    return Grid(dtypes, dims, temperatures, noises)


def staged_candidates(grid: Grid, best: dict, stage: int) -> list[tuple]:
    """Stage ``stage``'s candidates ``(dtype, dim, temperature, noise)`` given the best so far."""
    dtype, dim, temp, noise = best.get("key", grid.first())
    if stage == 0:
        return [(d, dim, temp, noise) for d in grid.dtypes]
    if stage == 1:
        return [(dtype, k, temp, noise) for k in grid.dims]
    return [(dtype, dim, t, z) for t, z in itertools.product(grid.temperatures, grid.noises)]
