"""MarginCondensedNN and the condensing methods: properties, oracles, sklearn API."""

import itertools
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.datasets import load_digits, make_blobs, make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from scipy.stats import binom

from nnkd import MarginCondensedNN
from nnkd.condense import compression_bound, holdout_bound
from nnkd.condense.gkn import conflict_graph, vertex_cover
from nnkd.condense.ksu import certifying_limit

METHODS = ["ksu", "gkn", "hart", "fcnn"]


@pytest.fixture(scope="module")
def noisy():
    X, y = make_classification(600, 6, n_informative=4, n_classes=3, flip_y=0.1, random_state=0)
    return X.astype(np.float32), y


@pytest.fixture
def vacuous():
    # Too few noisy rows for the compression bound to certify anything at any net size.
    X, y = make_classification(200, 6, n_informative=4, n_classes=3, flip_y=0.1, random_state=0)
    return X.astype(np.float32), y


@parametrize_with_checks([MarginCondensedNN(method=m, random_state=0) for m in METHODS]
                         + [MarginCondensedNN(selection="validation", random_state=0)])
def test_sklearn_api(estimator, check):
    check(estimator)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "chebyshev", "cosine"])
def test_ksu_net_covers_and_packs(noisy, metric):
    X, y = noisy
    clf = MarginCondensedNN(metric=metric, target_size=60).fit(X, y)
    Xw = X / np.linalg.norm(X, axis=1, keepdims=True) if metric == "cosine" else X.astype(np.float64)
    name = {"manhattan": "cityblock", "cosine": "euclidean"}.get(metric, metric)
    D = cdist(Xw, Xw[clf.support_], name)
    assert D.min(axis=1).max() <= clf.scale_ * (1 + 1e-5)            # covering
    P = cdist(Xw[clf.support_], Xw[clf.support_], name)
    assert P[~np.eye(60, dtype=bool)].min() >= clf.scale_ * (1 - 1e-5)  # packing


def test_ksu_bound_selection_minimises_the_recorded_bound(vacuous):
    X, y = vacuous
    with pytest.warns(UserWarning, match="vacuous"):
        clf = MarginCondensedNN(selection="bound").fit(X, y)
    curve = clf.selection_curve_
    k = len(clf.support_)
    assert k == int(np.argmin(curve["bound"])) + 1
    # the bound certifies nothing; it is reported as 1 and flagged
    assert curve["bound"][k - 1] >= 1 and clf.bound_ == 1.0 and clf.bound_vacuous_
    assert clf.selection_ == "bound"
    assert clf.training_error_ == pytest.approx(curve["train_errors"][k - 1] / len(y))
    # the cell-majority 1-NN classifier reproduces the recorded training error
    assert np.mean(clf.predict(X) != y) == pytest.approx(clf.training_error_)


def test_prototype_labels_are_cell_majorities(noisy):
    X, y = noisy
    clf = MarginCondensedNN(target_size=25).fit(X, y)
    owner = np.argmin(cdist(X, clf.prototypes_), axis=1)
    for k in range(25):
        votes = np.bincount(y[owner == k], minlength=3)
        np.testing.assert_allclose(clf.prototype_proba_[k], votes / votes.sum())
        assert clf.prototype_labels_[k] == np.argmax(votes)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[np.argmax(clf.predict_proba(X), axis=1)])


@pytest.mark.parametrize("method", ["hart", "fcnn"])
def test_consistent_methods_label_every_training_point(noisy, method):
    X, y = noisy
    clf = MarginCondensedNN(method=method, random_state=0).fit(X, y)
    oracle = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(X[clf.support_], y[clf.support_])
    np.testing.assert_array_equal(oracle.predict(X), y)
    assert clf.training_error_ == 0.0
    np.testing.assert_array_equal(clf.prototype_labels_, y[clf.support_])
    assert clf.compression_ratio_ < 1.0


def test_hart_is_deterministic_under_random_state(noisy):
    X, y = noisy
    a = MarginCondensedNN(method="hart", random_state=3).fit(X, y).support_
    b = MarginCondensedNN(method="hart", random_state=3).fit(X, y).support_
    c = MarginCondensedNN(method="hart", random_state=4).fit(X, y).support_
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_validation_selection_is_deterministic(noisy):
    X, y = noisy
    a = MarginCondensedNN(selection="validation", random_state=1).fit(X, y)
    b = MarginCondensedNN(selection="validation", random_state=1).fit(X, y)
    np.testing.assert_array_equal(a.support_, b.support_)
    assert a.selection_curve_["n_folds"] == 5


def test_vertex_cover_is_minimum_on_small_bipartite_graphs(rng):
    for trial in range(20):
        X = rng.normal(size=(12, 2))
        y = rng.integers(0, 2, size=12)
        rows, cols = conflict_graph(X, y, 0, 1.0)
        cover = vertex_cover(rows, cols, y, 12)
        assert np.all(cover[rows] | cover[cols])                      # it is a cover
        best = min(size for size in range(13) for S in itertools.combinations(range(12), size)
                   if all(r in S or c in S for r, c in zip(rows, cols, strict=True)))
        assert cover.sum() == best, f"trial {trial}"


def test_greedy_cover_covers_multiclass_graphs(rng):
    X = rng.normal(size=(80, 2))
    y = rng.integers(0, 4, size=80)
    rows, cols = conflict_graph(X, y, 0, 0.5)
    D = cdist(X, X)
    expected = {(i, j) for i in range(80) for j in range(i + 1, 80) if D[i, j] < 0.5 and y[i] != y[j]}
    assert set(zip(rows.tolist(), cols.tolist(), strict=True)) == expected
    cover = vertex_cover(rows, cols, y, 80)
    assert np.all(cover[rows] | cover[cols])


def test_gkn_kept_points_are_margin_separated_and_consistent():
    X, y = make_blobs(400, 2, centers=[[0, 0], [2.5, 0]], cluster_std=0.8, random_state=0)
    clf = MarginCondensedNN(method="gkn").fit(X, y)
    gamma = clf.scale_
    D = cdist(X, X)
    # Removed rows are exactly those whose label differs from their nearest prototype's,
    # or kept rows: the kept ones form a gamma-separated, correctly labelled set.
    pred = clf.predict(X)
    kept = np.array([np.all(D[i, y != y[i]] >= gamma) for i in range(len(X))])
    assert np.all(pred[kept] == y[kept])
    assert clf.training_error_ <= 1 - kept.mean() + 1e-12
    assert clf.bound_ == pytest.approx(min(1.0, min(clf.selection_curve_["bound"])))
    assert clf.bound_vacuous_ == (min(clf.selection_curve_["bound"]) >= 1)


def _separated(n=4000):
    X, y = make_blobs(n, 2, centers=[[0, 0], [8, 0], [0, 8]], cluster_std=0.7, random_state=1)
    return X.astype(np.float32), y


def test_auto_selection_takes_the_bound_where_it_certifies():
    X, y = _separated()
    auto = MarginCondensedNN(random_state=0).fit(X, y)
    bound = MarginCondensedNN(selection="bound", random_state=0).fit(X, y)
    assert auto.selection_ == "bound" and not auto.bound_vacuous_
    np.testing.assert_array_equal(auto.support_, bound.support_)
    # the reported bound is Q at the kept size, recomputed independently
    q = compression_bound(len(y), auto.training_error_, 2 * len(auto.support_), auto.delta)
    assert auto.bound_ == pytest.approx(q) and q < 1


def test_auto_selection_falls_back_to_validation_where_the_bound_is_vacuous(vacuous):
    X, y = vacuous
    auto = MarginCondensedNN(random_state=2).fit(X, y)
    val = MarginCondensedNN(selection="validation", random_state=2).fit(X, y)
    assert auto.selection_ == "validation"
    np.testing.assert_array_equal(auto.support_, val.support_)
    assert min(auto.selection_curve_["bound_curve"]["bound"]) >= 1      # why it fell back here
    q = compression_bound(len(y), auto.training_error_, 2 * len(auto.support_), auto.delta)
    assert auto.bound_vacuous_ == (q >= 1) and auto.bound_ == pytest.approx(min(q, 1.0))
    student = auto.to_student()
    assert student.bound == auto.bound_ and student.bound_kind == "compression"
    assert student.describe()["bound_vacuous"] == auto.bound_vacuous_


def test_auto_takes_the_bound_only_where_it_certifies_and_costs_no_accuracy():
    # Imbalanced data: the bound's minimum can be below 1 yet above the majority-class error,
    # or certify a small net that loses accuracy; "auto" then keeps the validation choice.
    cases = [make_classification(3000, 5, n_informative=3, weights=[0.9, 0.1], flip_y=0.02, random_state=s)
             for s in range(2)] + [_separated(), load_digits(return_X_y=True)]
    for X, y in cases:
        auto = MarginCondensedNN(random_state=0).fit(X, y)
        val = MarginCondensedNN(selection="validation", random_state=0).fit(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bound = MarginCondensedNN(selection="bound", random_state=0).fit(X, y)
        trivial = 1 - np.bincount(y).max() / len(y)
        curve = auto.selection_curve_
        rates = curve["valid_errors"] / len(y)
        m = curve["bound_m_at_fold_scale"]
        takes_bound = (min(bound.selection_curve_["bound"]) < trivial and m <= len(rates)
                       and rates[m - 1] <= rates.min() + auto.error_tolerance)
        assert auto.selection_ == ("bound" if takes_bound else "validation")
        expected = bound if takes_bound else val
        np.testing.assert_array_equal(auto.support_, expected.support_)


def test_certifying_limit_is_the_last_size_whose_bound_can_be_below_the_level():
    for n in (50, 600, 10_000):
        for level in (1.0, 0.3):
            k = certifying_limit(n, 0.05, level)
            assert compression_bound(n, 0.0, 2 * k, 0.05) < level if k else True
            assert compression_bound(n, 0.0, 2 * (k + 1), 0.05) >= level


@pytest.mark.parametrize(("method", "expected"), [("hart", "consistent"), ("fcnn", "consistent"), ("gkn", "bound")])
def test_selection_names_what_chose_the_size(noisy, method, expected):
    X, y = noisy
    assert MarginCondensedNN(method=method, random_state=0).fit(X, y).selection_ == expected
    assert MarginCondensedNN(target_size=20).fit(X, y).selection_ == "target_size"


def test_holdout_bound_is_the_clopper_pearson_limit():
    n, delta = 400, 0.05
    for k in (0, 3, 40, 399):
        for K in (1, 12):
            p = holdout_bound(k, n, delta, K)
            # P[Bin(n, p) <= k] = delta / K exactly at the limit (scipy's binomial as oracle)
            assert binom.cdf(k, n, p) == pytest.approx(delta / K, rel=1e-6)
    assert holdout_bound(n, n, delta) == 1.0
    assert np.all(np.diff(holdout_bound(np.arange(n + 1), n, delta)) >= 0)
    assert holdout_bound(10, n, delta, 20) > holdout_bound(10, n, delta, 1)


def test_holdout_bound_covers_the_true_error_with_probability_one_minus_delta():
    # The law the bound states: over fresh held-out samples, P[bound < true error] <= delta.
    rng = np.random.default_rng(0)
    n, delta = 200, 0.1
    for p in (0.02, 0.1, 0.3):
        errors = rng.binomial(n, p, size=20_000)
        misses = np.mean(holdout_bound(errors, n, delta) < p)
        assert misses <= delta + 0.01


def test_holdout_bound_rejects_bad_arguments():
    for args, match in (((5, 0, 0.05), "n="), ((5, 10, 1.5), "delta"), ((11, 10, 0.05), "n_errors"),
                        ((1.5, 10, 0.05), "n_errors"), ((1, 10, 0.05, 0), "n_candidates")):
        with pytest.raises(ValueError, match=match):
            holdout_bound(*args)


def test_budgets(noisy):
    X, y = noisy
    for method in METHODS:
        clf = MarginCondensedNN(method=method, max_prototypes=30, random_state=0).fit(X, y)
        assert len(clf.support_) <= 30, method
    assert len(MarginCondensedNN(target_size=0.1).fit(X, y).support_) == 60
    assert len(MarginCondensedNN(target_size=45, max_prototypes=40).fit(X, y).support_) == 40


def test_fit_resample_returns_the_condensed_rows(noisy):
    X, y = noisy
    clf = MarginCondensedNN(method="hart", random_state=0)
    Xr, yr = clf.fit_resample(X, y)
    np.testing.assert_array_equal(Xr, X[clf.support_])
    np.testing.assert_array_equal(yr, y[clf.support_])
    np.testing.assert_array_equal(clf.sample_indices_, clf.support_)


def test_string_labels_duplicates_and_one_class():
    X = np.array([[0, 0], [0, 0], [1, 1], [1, 1], [5, 5], [5, 5.0]])
    y = np.array(["cat", "dog", "cat", "cat", "dog", "dog"])
    for method in METHODS:
        clf = MarginCondensedNN(method=method, random_state=0).fit(X, y)
        assert set(clf.predict(X)) <= {"cat", "dog"}
    for clf in (MarginCondensedNN(method="hart", random_state=0), MarginCondensedNN(method="fcnn"),
                MarginCondensedNN(target_size=3)):
        # the conflicting duplicate at (0, 0) is the only unavoidable training error
        assert np.sum(clf.fit(X, y).predict(X) != y) == 1
        assert clf.predict([[5, 5]])[0] == "dog" and clf.predict([[1, 1]])[0] == "cat"
    one = MarginCondensedNN().fit(X, np.full(6, "only"))
    assert list(one.predict(X)) == ["only"] * 6 and one.training_error_ == 0.0


def test_single_sample():
    clf = MarginCondensedNN().fit([[1.0, 2.0]], [3])
    assert clf.predict([[0.0, 0.0]])[0] == 3 and clf.bound_ == 1.0 and clf.bound_vacuous_


@pytest.mark.parametrize("X, y, err, match", [
    ([[np.nan, 1.0], [1.0, 2.0]], [0, 1], ValueError, "NaN"),
    ([[np.inf, 1.0], [1.0, 2.0]], [0, 1], ValueError, "infinity"),
    (np.zeros((0, 2)), [], ValueError, "0 sample"),
    ([[1.0, 2.0], [2.0, 3.0]], [0.5, 1.5], ValueError, "Unknown label type"),
])
def test_bad_input_raises(X, y, err, match):
    with pytest.raises(err, match=match):
        MarginCondensedNN().fit(X, y)


def test_bad_parameters_raise():
    X, y = [[0.0], [1.0]], [0, 1]
    with pytest.raises(ValueError, match="method"):
        MarginCondensedNN(method="enn").fit(X, y)
    with pytest.raises(ValueError, match="metric"):
        MarginCondensedNN(metric="hamming").fit(X, y)
    with pytest.raises(ValueError, match="n_samples >= 5"):
        MarginCondensedNN(selection="validation").fit(X, y)
    clf = MarginCondensedNN().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict([[0.0, 1.0]])


def test_pipeline_and_grid_search():
    X, y = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), MarginCondensedNN(random_state=0))
    grid = GridSearchCV(pipe, {"margincondensednn__method": ["hart", "fcnn"]}, cv=3).fit(X, y)
    assert grid.best_score_ > 0.85
    assert grid.best_estimator_.score(X, y) == 1.0                      # consistent on training data


def test_tolerance_choice_waits_until_the_curve_stays_low():
    from nnkd.condense.ksu import tolerance_choice
    errors = np.array([50, 30, 9, 20, 12, 10, 9, 8])        # out of 100 held-out rows
    # threshold 0.08 + 0.02: size 3 dips under it once, but the curve only stays under from 6
    assert tolerance_choice(errors, 100, 0.02) == 6
    assert tolerance_choice(errors, 100, 0.0) == 8
    assert tolerance_choice(errors, 100, 0.5) == 1


def test_vacuous_bound_warns_when_it_chooses_but_not_under_auto():
    X, y = make_blobs(60, 2, centers=12, cluster_std=3.0, random_state=0)
    with pytest.warns(UserWarning, match="vacuous"):
        MarginCondensedNN(selection="bound").fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # auto falls back to validation silently
        assert MarginCondensedNN().fit(X, y).selection_ == "validation"


def test_verbose_shows_progress_on_stderr(noisy, capsys):
    X, y = noisy
    MarginCondensedNN(method="gkn", verbose=True).fit(X, y)
    MarginCondensedNN(selection="validation", verbose=True).fit(X, y)
    captured = capsys.readouterr()
    assert "GKN covers" in captured.err and "KSU validation folds" in captured.err
    assert captured.out == ""
    MarginCondensedNN(method="gkn").fit(X, y)
    assert capsys.readouterr().err == ""
