"""Greedy permutation: the C core against a NumPy brute force, and the net laws."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cdist

from nnkd.condense import greedy_permutation

SCIPY = {"euclidean": "euclidean", "manhattan": "cityblock", "chebyshev": "chebyshev", "cosine": "euclidean"}


def _space(X, metric):
    X = np.asarray(X, dtype=np.float64)
    if metric == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return X


def brute_force(X, metric, start, m, labels=None, active=None):
    """Independent reference: full distance matrix, argmax with first-index ties."""
    D = cdist(_space(X, metric), _space(X, metric), SCIPY[metric])
    n = len(X)
    active = np.ones(n, bool) if active is None else active
    order, radius = [start], [np.inf]
    owner, dist = np.zeros(n, int), D[start].copy()
    errors = []

    def record():
        if labels is None:
            return
        err = 0
        for k in range(len(order)):
            cell = owner == k
            votes = np.bincount(labels[cell & active], minlength=labels.max() + 1)
            err += np.sum(labels[cell & active] != np.argmax(votes))
        errors.append(err)

    record()
    while len(order) < m:
        cand = np.where(active & ~np.isin(np.arange(n), order), dist, -1.0)
        p = int(np.argmax(cand))
        order.append(p)
        radius.append(cand[p])
        closer = D[p] < dist
        closer[p] = True
        owner[closer] = len(order) - 1
        dist = np.minimum(dist, D[p])
        dist[p] = 0.0
        record()
    return np.array(order), np.array(radius), owner, dist, np.array(errors)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "chebyshev", "cosine"])
def test_c_and_brute_force_agree(rng, metric):
    X = rng.normal(size=(300, 7)).astype(np.float32)
    y = rng.integers(0, 3, size=300)
    c = greedy_permutation(X, metric=metric, labels=y, start=5)
    assert (c.valid_errors == 0).all()                      # every row active: nothing held out
    order, radius, owner, dist, errors = brute_force(X, metric, 5, 300, labels=y)
    np.testing.assert_array_equal(c.order, order)
    np.testing.assert_allclose(c.radius, radius, rtol=1e-6)
    np.testing.assert_array_equal(c.owner, owner)
    np.testing.assert_allclose(c.dist, dist, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(c.train_errors, errors)


def test_held_out_rows_are_scored_not_chosen(rng):
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=200)
    active = rng.random(200) < 0.7
    active[0] = True
    c = greedy_permutation(X, labels=y, active=active, max_prototypes=40)
    assert active[c.order].all()
    order, _, owner, _, errors = brute_force(X, "euclidean", 0, 40, labels=y, active=active)
    np.testing.assert_array_equal(c.order, order)
    np.testing.assert_array_equal(c.train_errors, errors)
    # held-out error after all 40 centres, recomputed from the final cells
    votes = np.array([np.bincount(y[(owner == k) & active], minlength=2).argmax() for k in range(40)])
    assert c.valid_errors[-1] == np.sum(votes[owner[~active]] != y[~active])


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "chebyshev", "cosine"])
def test_every_prefix_is_a_net(rng, metric):
    X = rng.normal(size=(250, 5))
    res = greedy_permutation(X, metric=metric)
    D = cdist(_space(X, metric), _space(X, metric), SCIPY[metric])
    for m in (1, 2, 10, 50, 249):
        prefix = res.order[:m]
        cover = D[:, prefix].min(axis=1).max()
        assert cover <= res.radius[m] * (1 + 1e-6)             # covering at scale radius[m]
        if m > 1:
            sep = D[np.ix_(prefix, prefix)][~np.eye(m, dtype=bool)].min()
            assert sep >= res.radius[m - 1] * (1 - 1e-6)       # packing at scale radius[m-1]


def test_cap_and_stop_radius(rng):
    X = rng.normal(size=(500, 3))
    capped = greedy_permutation(X, max_prototypes=17)
    assert capped.order.shape == (17,)
    np.testing.assert_array_equal(capped.order, greedy_permutation(X).order[:17])
    frac = greedy_permutation(X, max_prototypes=0.1)
    assert frac.order.shape == (50,)
    net = greedy_permutation(X, stop_radius=0.5)
    assert net.covering_radius <= 0.5 and net.radius[-1] > 0.5


def test_duplicates_get_radius_zero():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    res = greedy_permutation(X)
    assert sorted(res.order) == [0, 1, 2, 3]
    np.testing.assert_array_equal(res.radius, [np.inf, 1.0, 0.0, 0.0])


@settings(deadline=None, max_examples=60)
@given(arrays(np.float32, st.tuples(st.integers(1, 40), st.integers(1, 6)),
              elements=st.floats(-1e3, 1e3, width=32)))
def test_radii_never_increase(X):
    c = greedy_permutation(X)
    assert np.all(np.diff(c.radius[1:]) <= 0)
    assert sorted(c.order) == list(range(len(X)))


@pytest.mark.parametrize("bad, err, match", [
    (np.array([[np.nan, 1.0]]), ValueError, "NaN"),
    (np.array([[np.inf, 1.0]]), ValueError, "NaN or infinity"),
    (np.zeros((0, 3)), ValueError, "empty"),
    (np.zeros(5), ValueError, "2-D"),
    (np.array([["a", "b"]]), TypeError, "real numbers"),
])
def test_bad_input(bad, err, match):
    with pytest.raises(err, match=match):
        greedy_permutation(bad)


def test_bad_options(rng):
    X = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match="metric='minkowski'"):
        greedy_permutation(X, metric="minkowski")
    with pytest.raises(ValueError, match="start=10"):
        greedy_permutation(X, start=10)
    with pytest.raises(ValueError, match="max_prototypes=0"):
        greedy_permutation(X, max_prototypes=0)
    with pytest.raises(ValueError, match="labels"):
        greedy_permutation(X, labels=np.arange(9))
    with pytest.raises(ValueError, match="active row"):
        greedy_permutation(X, active=np.arange(10) > 0)


# -- threads: the same traversal for every thread count --------------------------------------------
@pytest.mark.parametrize("metric", [0, 1, 2])
@pytest.mark.parametrize("shape", [(3000, 3), (1500, 40)])
def test_threaded_steps_give_identical_output(rng, metric, shape):
    """Every step split among 2, 3 and 5 threads (min_parallel=1): whole cells in low
    dimension, row ranges (full passes) in high; orders, radii, cells, distances and both
    error curves must equal the single-threaded run bit for bit, with held-out rows, labels
    and exact duplicates (ties) in play."""
    from nnkd._core.cext import greedy_permutation_c

    n, d = shape
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[n // 2:n // 2 + 50] = X[:50]                          # duplicates: ties by row number
    y = rng.integers(0, 4, size=n).astype(np.int64)
    active = (rng.random(n) < 0.8).view(np.uint8).astype(np.uint8)
    active[0] = 1
    runs = [greedy_permutation_c(X, metric, 0, 400, -1.0, y, 4, active, t, 1) for t in (1, 2, 3, 5)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_public_n_jobs_changes_nothing_but_speed(rng):
    X = rng.normal(size=(40_000, 4)).astype(np.float32)     # early steps scan > NNKD_PAR_MIN rows
    y = rng.integers(0, 3, size=len(X))
    one, two = (greedy_permutation(X, max_prototypes=60, labels=y, n_jobs=j) for j in (1, 2))
    for field in ("order", "radius", "owner", "dist", "train_errors"):
        np.testing.assert_array_equal(getattr(one, field), getattr(two, field))


def test_thread_count_is_checked():
    from nnkd._core.cext import greedy_permutation_c

    X = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="n_threads"):
        greedy_permutation_c(X, 0, 0, 2, -1.0, None, 0, None, 0)
    with pytest.raises(ValueError, match="n_threads"):
        greedy_permutation_c(X, 0, 0, 2, -1.0, None, 0, None, 65)
