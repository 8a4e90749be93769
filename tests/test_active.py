"""Robust active distillation (``select_queries``): the game's solution against an LP oracle."""

import numpy as np
import pytest
from scipy.optimize import linprog

from nnkd.distill import select_queries
from nnkd.distill._active import _systematic_sample, informativeness, query_probabilities


def _lp_value(g, budget, k):
    """max sum_i u_i - k t  s.t.  u_i <= p_i g_i, u_i <= t, sum p = budget, 0 <= p <= 1 (scipy)."""
    n = len(g)
    c = np.concatenate([np.zeros(n), -np.ones(n), [k]])
    rows = []
    for i in range(n):
        a = np.zeros(2 * n + 1)
        a[n + i], a[i] = 1.0, -g[i]
        b = np.zeros(2 * n + 1)
        b[n + i], b[-1] = 1.0, -1.0
        rows += [a, b]
    res = linprog(c, A_ub=np.array(rows), b_ub=np.zeros(2 * n), A_eq=[np.r_[np.ones(n), np.zeros(n + 1)]],
                  b_eq=[budget], bounds=[(0, 1)] * n + [(None, None)] * n + [(0, None)])
    assert res.success
    return -res.fun


def _payoff(p, g, k):
    """sum p g minus the adversary's best k (fractional k takes part of the next value)."""
    v = np.sort(p * g)[::-1]
    whole = int(k)
    lost = v[:whole].sum() + (k - whole) * (v[whole] if whole < len(v) else 0.0)
    return v.sum() - lost


@pytest.mark.parametrize("seed", range(12))
def test_probabilities_solve_the_game(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    g = rng.uniform(0, 1, n)
    budget = int(rng.integers(1, n))
    k = float(rng.integers(0, n)) + rng.uniform() * (seed % 2)
    p = query_probabilities(g, budget, k)
    assert p.min() >= 0 and p.max() <= 1 + 1e-12
    assert p.sum() == pytest.approx(budget, abs=1e-9)
    assert _payoff(p, g, k) == pytest.approx(_lp_value(g, budget, k), abs=1e-6)


def test_perfect_teacher_is_uncertainty_sampling():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(4), size=200)
    idx = select_queries(proba, 15, random_state=0)
    expected = np.sort(np.argsort(-informativeness(proba), kind="stable")[:15])
    np.testing.assert_array_equal(idx, expected)


def test_noisy_teacher_spreads_the_budget():
    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.ones(3), size=500)
    g = informativeness(proba)
    idx, p = select_queries(proba, 20, teacher_error=0.05, random_state=0, return_probabilities=True)
    assert len(idx) == 20 and len(np.unique(idx)) == 20
    assert (p > 0).sum() > 20                       # hedged over more rows than the budget
    # Equaliser: the adversary is indifferent among the rows it could corrupt (all but the one
    # row the knapsack fills fractionally carry the same p * g).
    top = (p * g)[(p > 1e-9) & (p < 1 - 1e-9)]
    assert np.sum(~np.isclose(top, top.max(), rtol=1e-6)) <= 1
    # ... and it beats greedy selection when the mistakes land on the chosen rows.
    greedy = np.zeros_like(p)
    greedy[np.argsort(-g)[:20]] = 1.0
    assert _payoff(p, g, 25.0) > _payoff(greedy, g, 25.0)


def test_inclusion_frequencies_match_probabilities():
    rng = np.random.default_rng(2)
    proba = rng.dirichlet(np.ones(2), size=30)
    _, p = select_queries(proba, 6, teacher_error=0.2, return_probabilities=True)
    draws = 4000
    counts = np.zeros(30)
    rng = np.random.default_rng(3)
    for _ in range(draws):
        idx = _systematic_sample(p, rng)            # what select_queries draws with
        assert len(idx) == 6 and len(np.unique(idx)) == 6
        counts[idx] += 1
    sd = np.sqrt(p * (1 - p) / draws)
    assert np.all(np.abs(counts / draws - p) <= 5 * sd + 1e-3)


def test_per_row_teacher_error():
    proba = np.full((10, 2), 0.5)
    proba[:, 0] += np.linspace(0, 0.4, 10)
    proba[:, 1] = 1 - proba[:, 0]
    _, p_rate = select_queries(proba, 3, teacher_error=0.2, return_probabilities=True, random_state=0)
    _, p_rows = select_queries(proba, 3, teacher_error=np.full(10, 0.2), return_probabilities=True, random_state=0)
    np.testing.assert_allclose(p_rate, p_rows)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"budget": 0}, "budget"),
    ({"budget": 11}, "budget"),
    ({"budget": 2.5}, "budget"),
    ({"budget": 2, "teacher_error": 1.5}, "teacher_error"),
    ({"budget": 2, "teacher_error": np.zeros(3)}, "teacher_error"),
])
def test_bad_arguments(kwargs, match):
    proba = np.full((10, 2), 0.5)
    with pytest.raises(ValueError, match=match):
        select_queries(proba, **kwargs)


@pytest.mark.parametrize("proba", [np.ones(5), np.ones((5, 1)), np.array([[0.5, np.nan]] * 3),
                                   np.array([[1.5, -0.5]] * 3)])
def test_bad_probabilities(proba):
    with pytest.raises(ValueError, match="student_proba"):
        select_queries(proba, 1)
