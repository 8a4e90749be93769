"""Compression-based generalization bound used to pick the scale of a net."""

from __future__ import annotations

import numpy as np


def compression_bound(n, alpha, m, delta):
    r"""Kontorovich–Sabato–Weiss bound :math:`Q(n, \alpha, m, \delta)`.

    With probability at least :math:`1 - \delta` over an i.i.d. sample of size ``n``, a
    classifier reconstructed from a compression set of size ``m`` whose empirical error
    on the sample is :math:`\alpha` has true error at most

    .. math::

        Q = \frac{n}{n-m}\alpha + \frac{2}{3}\frac{(m+1)\ln n + \ln\frac{1}{\delta}}{n-m}
            + \frac{3}{\sqrt 2}\sqrt{\frac{\frac{n}{n-m}\alpha\left((m+1)\ln n
            + \ln\frac{1}{\delta}\right)}{n-m}}

    (a Bernstein-type sample-compression bound). For a majority-vote net with ``k``
    prototypes the compression size is ``m = 2k``: each prototype plus one sample point
    carrying its label.

    Parameters
    ----------
    n : int
        Sample size.
    alpha : float or array-like
        Empirical error in [0, 1].
    m : int or array-like
        Compression size; ``m >= n`` gives ``inf``.
    delta : float
        Confidence parameter in (0, 1).

    Returns
    -------
    float or ndarray of float64

    References
    ----------
    .. [1] A. Kontorovich, S. Sabato, R. Weiss, "Nearest-neighbor sample compression:
       efficiency, consistency, infinite dimensions", NeurIPS 2017, arXiv:1705.08184
       (Section 2, the quantity minimised by algorithm KSU).
    .. [2] T. Graepel, R. Herbrich, J. Shawe-Taylor, "PAC-Bayesian compression bounds on
       the prediction error of learning algorithms for classification", Machine
       Learning 59, 2005.
    """
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta={delta} must lie in (0, 1).")
    if n < 1:
        raise ValueError(f"n={n} must be >= 1.")
    alpha = np.asarray(alpha, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    if np.any((alpha < 0) | (alpha > 1)):
        raise ValueError("alpha must lie in [0, 1].")
    if np.any(m < 0):
        raise ValueError("m must be >= 0.")
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = n - m
        complexity = (m + 1.0) * np.log(n) + np.log(1.0 / delta)
        scaled = n / gap * alpha
        q = scaled + (2.0 / 3.0) * complexity / gap + (3.0 / np.sqrt(2.0)) * np.sqrt(scaled * complexity / gap)
    q = np.where(gap > 0, q, np.inf)
    return float(q) if q.ndim == 0 else q
