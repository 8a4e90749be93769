"""Batch augmentations for function matching: perturbed copies of a mini-batch that the
teacher labels on the fly (Beyer et al., CVPR 2022)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np


class DirichletMixup:
    """Each new row is a convex combination of ``n_rows`` random rows of the batch, with
    weights drawn from a symmetric Dirichlet(``alpha``).

    Mixup (``augment="mixup"``) mixes pairs; averaging more rows cancels what they do not
    share, which helps most when the transfer rows are data impressions: each impression is
    its class's pattern plus optimisation noise, and their mixtures look more like real rows
    (the data-free students of ``benchmarks/results/trees.md`` are trained with it).
    Pass an instance as ``augment=`` to :class:`NNDistiller` or :class:`TreeDistiller`.

    Parameters
    ----------
    n_rows : int, default=4
    alpha : float, default=1.0
        Dirichlet concentration: 1 draws weights uniformly from the simplex; large values
        average evenly, small ones pick mostly one row.
    """

    def __init__(self, n_rows: int = 4, alpha: float = 1.0):
        if not isinstance(n_rows, Integral) or n_rows < 2:
            raise ValueError(f"n_rows={n_rows!r} must be an integer >= 2.")
        if not isinstance(alpha, Real) or not alpha > 0:
            raise ValueError(f"alpha={alpha!r} must be > 0.")
        self.n_rows, self.alpha = int(n_rows), float(alpha)

    def __call__(self, xb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        idx = rng.integers(0, xb.shape[0], size=(xb.shape[0], self.n_rows))
        w = rng.dirichlet(np.full(self.n_rows, self.alpha), size=xb.shape[0])
        return np.einsum("nk,nkd->nd", w, xb[idx])

    def __repr__(self) -> str:
        return f"DirichletMixup(n_rows={self.n_rows}, alpha={self.alpha})"


def make_augmenter(augment, noise_scale: float, copies: int = 1):
    """``fn(xb, rng) -> perturbed copies of the batch`` for ``augment`` in ``{"noise", "mixup"}``
    (standardised units: noise of standard deviation ``noise_scale``; mixup with
    ``Beta(0.4, 0.4)`` weights), or ``augment`` itself when it is a callable.

    With ``copies > 1`` the perturbation is drawn ``copies`` times and the results stacked
    (``copies * len(xb)`` rows): more teacher queries per step for the same passes over the data.
    """
    if not isinstance(copies, Integral) or copies < 1:
        raise ValueError(f"copies={copies!r} must be an integer >= 1.")
    if callable(augment):
        perturb = augment
    elif augment == "noise":
        def perturb(xb, rng):
            return xb + noise_scale * rng.standard_normal(xb.shape)
    else:
        def perturb(xb, rng):
            lam = rng.beta(0.4, 0.4, size=(xb.shape[0], 1))
            return lam * xb + (1 - lam) * xb[rng.permutation(xb.shape[0])]
    if copies == 1:
        return perturb
    return lambda xb, rng: np.concatenate([perturb(xb, rng) for _ in range(copies)])
