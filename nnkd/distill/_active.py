"""Robust active distillation: which pool rows to send to an expensive teacher.

Baykal et al. (ICLR 2023) pose query selection as a game between the learner, who picks
inclusion probabilities ``p`` for the pool rows (``sum(p) = budget``, ``0 <= p <= 1``), and an
adversary who decides on which ``k`` rows the teacher's soft label is wrong. A row's worth to
the student is its informativeness ``g`` (the student's uncertainty there) if the teacher labels
it correctly and nothing otherwise, so the learner's payoff is

    sum_i p_i g_i  -  (sum of the k largest values of p_i g_i)

because the adversary spends its mistakes where they destroy the most. Greedy uncertainty
sampling (the ``budget`` most uncertain rows) is optimal when the teacher never errs (``k = 0``)
and the worst choice when it errs exactly where the student is unsure, which is where teachers
tend to err. The optimum spreads probability over more rows, ``p_i ~ 1 / g_i`` on the most
informative ones, so that no single mistake costs much.

Solution used here: with ``top_k(v) = min_t [k t + sum_i (v_i - t)_+]`` the payoff becomes
``max_{p, t} sum_i min(p_i g_i, t) - k t``, jointly concave. For fixed ``t`` the best ``p`` is
a fractional knapsack (fill rows in decreasing ``g`` up to ``p_i = min(1, t / g_i)``), and the
outer problem in ``t`` is a concave one-dimensional maximisation (golden-section search). The
``budget`` rows are then drawn with exactly these inclusion probabilities (systematic sampling
in random order).
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def informativeness(proba: np.ndarray) -> np.ndarray:
    """The student's uncertainty per row, ``1 - (p_top1 - p_top2)`` (margin uncertainty)."""
    part = np.sort(proba, axis=1)
    return 1.0 - (part[:, -1] - part[:, -2])


def _fill(gains_desc: np.ndarray, t: float, budget: float) -> tuple[np.ndarray, float]:
    """Best inclusion probabilities for a fixed threshold ``t`` (rows sorted by decreasing gain)
    and the payoff part ``sum_i min(p_i g_i, t)``."""
    caps = np.minimum(1.0, t / gains_desc)
    before = np.concatenate([[0.0], np.cumsum(caps)[:-1]])
    p = np.clip(budget - before, 0.0, caps)
    return p, float(np.sum(np.minimum(p * gains_desc, t)))


def query_probabilities(gains: np.ndarray, budget: int, n_mistakes: float, *, tol: float = 1e-9) -> np.ndarray:
    """Inclusion probabilities solving the robust query-selection game (see the module docstring).

    Parameters
    ----------
    gains : ndarray of shape (n_pool,)
        Informativeness of each row, ``>= 0``.
    budget : int
        Expected number of rows to query (``sum(p)``), ``1 <= budget <= n_pool``.
    n_mistakes : float
        How many rows the adversary may corrupt (the teacher's expected mistakes in the pool).

    Returns
    -------
    p : ndarray of shape (n_pool,)
        Inclusion probabilities in ``[0, 1]`` summing to ``budget``.
    """
    gains = np.asarray(gains, dtype=np.float64)
    n = gains.shape[0]
    order = np.argsort(-gains, kind="stable")
    g = np.maximum(gains[order], 1e-12)           # a zero gain still takes probability if it must
    k = float(n_mistakes)

    def value(t: float) -> float:
        return _fill(g, t, budget)[1] - k * t

    lo, hi = 0.0, float(g[0])
    if k > 0:
        # Golden-section search on the concave payoff in t.
        a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
        fa, fb = value(a), value(b)
        while hi - lo > tol * max(1.0, g[0]):
            if fa < fb:
                lo, a, fa = a, b, fb
                b = lo + _GOLDEN * (hi - lo)
                fb = value(b)
            else:
                hi, b, fb = b, a, fa
                a = hi - _GOLDEN * (hi - lo)
                fa = value(a)
        t = 0.5 * (lo + hi)
    else:
        t = hi                                    # no mistakes: greedy top-budget selection
    p_sorted = _fill(g, t, budget)[0]
    # t found to within tol: rescale the tail so that the probabilities sum to the budget exactly.
    deficit = budget - p_sorted.sum()
    if deficit > 0:
        room = 1.0 - p_sorted
        p_sorted += room * min(1.0, deficit / room.sum())
    p = np.empty(n)
    p[order] = np.minimum(p_sorted, 1.0)
    return p


def _systematic_sample(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``round(sum(p))`` distinct rows, row ``i`` included with probability ``p_i``."""
    order = rng.permutation(p.shape[0])
    edges = np.cumsum(p[order])
    budget = int(round(edges[-1]))
    ticks = rng.uniform() + np.arange(budget)
    picked = np.searchsorted(edges, np.minimum(ticks, edges[-1] - 1e-12), side="right")
    return np.sort(order[picked])


def select_queries(student_proba, budget: int, *, teacher_error=0.0, random_state=None,
                   return_probabilities: bool = False):
    """Choose which pool rows to send to the teacher under a query budget (robust active
    distillation, Baykal et al., ICLR 2023).

    Informative rows (where the current student is unsure) are worth most, but that is also
    where a teacher tends to be wrong. The rows are drawn with the inclusion probabilities that
    maximise the informativeness gained when the teacher's mistakes fall on the worst possible
    rows (see :mod:`nnkd.distill._active`): with ``teacher_error=0`` this is plain uncertainty
    sampling; the larger the error, the more the budget is spread.

    Parameters
    ----------
    student_proba : array-like of shape (n_pool, n_classes)
        The current student's class probabilities on the pool (e.g. from a student distilled on
        the rows queried so far).
    budget : int
        Number of rows to query (``1 <= budget <= n_pool``).
    teacher_error : float or array-like of shape (n_pool,), default=0.0
        The teacher's error rate (e.g. measured on a labelled validation set), or a per-row
        probability that the teacher is wrong; the adversary gets ``n_pool * rate`` (or the sum
        of the per-row probabilities) mistakes.
    random_state : int, Generator or None, default=None
    return_probabilities : bool, default=False
        Also return the inclusion probabilities.

    Returns
    -------
    indices : ndarray of int64, shape (budget,)
        Sorted pool rows to query.
    probabilities : ndarray of shape (n_pool,)
        Only with ``return_probabilities=True``.

    Examples
    --------
    >>> import numpy as np
    >>> proba = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [0.99, 0.01]])
    >>> select_queries(proba, 2).tolist()              # a perfect teacher: the 2 most uncertain
    [0, 2]
    """
    P = np.asarray(student_proba, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] < 1 or P.shape[1] < 2:
        raise ValueError(f"student_proba has shape {P.shape}; expected (n_pool >= 1, n_classes >= 2).")
    if not np.isfinite(P).all() or (P < 0).any():
        raise ValueError("student_proba must hold finite non-negative probabilities.")
    n = P.shape[0]
    if not isinstance(budget, Integral) or isinstance(budget, bool) or not 1 <= budget <= n:
        raise ValueError(f"budget={budget!r} must be an integer in [1, {n}] (the pool size).")
    if isinstance(teacher_error, Real):
        if not 0.0 <= teacher_error <= 1.0:
            raise ValueError(f"teacher_error={teacher_error} must be in [0, 1].")
        n_mistakes = float(teacher_error) * n
    else:
        err = np.asarray(teacher_error, dtype=np.float64)
        if err.shape != (n,) or not np.isfinite(err).all() or (err < 0).any() or (err > 1).any():
            raise ValueError(f"teacher_error must be a rate in [0, 1] or {n} per-row probabilities in [0, 1].")
        n_mistakes = float(err.sum())
    P = P / np.maximum(P.sum(axis=1, keepdims=True), 1e-300)
    p = query_probabilities(informativeness(P), int(budget), n_mistakes)
    rng = np.random.default_rng(random_state)
    idx = _systematic_sample(p, rng)
    return (idx, p) if return_probabilities else idx
