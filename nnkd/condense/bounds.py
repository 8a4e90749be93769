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


def holdout_bound(n_errors, n, delta, n_candidates=1):
    r"""Binomial-tail (Clopper–Pearson) upper bound on an error rate from held-out rows.

    Let ``h_1 .. h_K`` be classifiers fixed before the ``n`` held-out rows are looked at
    (trained without them; ``K = n_candidates``). With probability at least
    :math:`1 - \delta` over an i.i.d. draw of those rows, *every* ``h_i`` with ``k_i``
    errors among them has true error rate at most

    .. math::

        \bar p(k_i) = \max\{p : P[\mathrm{Bin}(n, p) \le k_i] \ge \delta / K\}
                  = \mathrm{Beta}^{-1}(1 - \delta / K;\ k_i + 1,\ n - k_i)

    (the one-sided Clopper–Pearson limit, i.e. Langford's test-set bound, with a union
    bound over the ``K`` candidates). Because it holds for all candidates at once, it
    holds for the one a selection rule then picks with the same rows: selecting on the
    held-out rows costs only the ``ln K`` of the union bound. "Error" is whatever was
    counted: disagreement with the labels, or with a teacher (then it bounds the rate at
    which the student disagrees with the teacher on fresh rows).

    Parameters
    ----------
    n_errors : int or array-like of int
        Errors on the held-out rows, in ``[0, n]``.
    n : int
        Held-out rows (>= 1).
    delta : float
        Confidence parameter in (0, 1).
    n_candidates : int, default=1
        Classifiers evaluated on the same rows.

    Returns
    -------
    float or ndarray of float64
        In ``[0, 1]``; 1.0 when every row is an error.

    References
    ----------
    .. [1] J. Langford, "Tutorial on practical prediction theory for classification",
       JMLR 6, 2005 (the test-set bound, Theorem 3.3).
    .. [2] C. J. Clopper, E. S. Pearson, "The use of confidence or fiducial limits
       illustrated in the case of the binomial", Biometrika 26, 1934.
    """
    from scipy.stats import beta

    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta={delta} must lie in (0, 1).")
    if int(n) != n or n < 1:
        raise ValueError(f"n={n} must be an integer >= 1.")
    if int(n_candidates) != n_candidates or n_candidates < 1:
        raise ValueError(f"n_candidates={n_candidates} must be an integer >= 1.")
    k = np.asarray(n_errors, dtype=np.float64)
    if np.any((k < 0) | (k > n) | (k != np.round(k))):
        raise ValueError(f"n_errors must be integers in [0, {n}].")
    with np.errstate(invalid="ignore"):
        q = np.where(k >= n, 1.0, beta.ppf(1.0 - delta / n_candidates, k + 1.0, np.maximum(n - k, 1.0)))
    return float(q) if q.ndim == 0 else q
