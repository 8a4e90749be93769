"""What every condensing method returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CondenseResult:
    """A condensed set and the Voronoi cells it induces on the training rows.

    Attributes
    ----------
    support : ndarray of shape (k,), dtype=int64
        Training-row indices of the prototypes, in the order the method chose them.
    owner : ndarray of shape (n_samples,), dtype=int64
        Position in ``support`` of each training row's nearest prototype.
    scale : float
        The method's scale: the covering radius of a net, or the margin gamma (GKN).
    voters : ndarray of shape (n_samples,), dtype=bool, or None
        Rows whose labels vote for their cell's label (``None``: all rows).
    curve : dict
        Diagnostics of the scale search (candidate sizes, errors, bounds), for plots.
    selection : str
        The rule that chose the size: ``"bound"``, ``"validation"``, ``"target_size"`` or
        ``"consistent"`` (the store grew until the training set was classified right).
    """

    support: np.ndarray
    owner: np.ndarray
    scale: float
    voters: np.ndarray | None = None
    curve: dict = field(default_factory=dict)
    selection: str = "bound"
