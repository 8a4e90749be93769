"""KernelKNNClassifier/Regressor and ANNTransformer: sklearn contract and oracles."""

import math
import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.cluster import DBSCAN
from sklearn.datasets import make_blobs, make_classification, make_regression, make_s_curve
from sklearn.manifold import TSNE, Isomap, trustworthiness
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import (KNeighborsClassifier, KNeighborsRegressor, KNeighborsTransformer,
                               NearestNeighbors)
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from nnkd import ANNTransformer, KernelKNNClassifier, KernelKNNRegressor, MarginCondensedNN
from nnkd._core.kernels import KERNELS, kernel_weights

ALL_KERNELS = sorted(KERNELS)


@parametrize_with_checks([KernelKNNClassifier(), KernelKNNRegressor(), ANNTransformer(index="exact"),
                          KernelKNNClassifier(kernel="gaussian", index="faiss:HNSW32"),
                          KernelKNNRegressor(kernel="epanechnikov", index="nmslib:hnsw"),
                          ANNTransformer()])
def test_sklearn_api(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(1200, 10, n_informative=6, n_classes=4, n_clusters_per_class=2,
                               flip_y=0.05, random_state=0)
    return X[:1000], y[:1000], X[1000:], y[1000:]


@pytest.mark.parametrize("k", [1, 4, 7, 15])
def test_uniform_exact_equals_sklearn(blobs, k):
    X, y, Q, _ = blobs
    ours = KernelKNNClassifier(n_neighbors=k).fit(X, y)
    ref = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(X, y)
    assert_array_equal(ours.predict(Q), ref.predict(Q))
    assert_allclose(ours.predict_proba(Q), ref.predict_proba(Q))
    reg = KernelKNNRegressor(n_neighbors=k).fit(X, y.astype(float))
    assert_allclose(reg.predict(Q), KNeighborsRegressor(n_neighbors=k).fit(X, y).predict(Q), rtol=1e-12)


def test_distance_weighted_regression_multioutput():
    X, Y = make_regression(300, 5, n_targets=2, random_state=0)
    pred = KernelKNNRegressor(n_neighbors=6, kernel="inverse", bandwidth=1.0).fit(X[:250], Y[:250]).predict(X[250:])
    # sklearn's weights="distance" is 1/d, our inverse kernel with h=1 is 1/max(d, 1e-6).
    ref = KNeighborsRegressor(n_neighbors=6, weights="distance").fit(X[:250], Y[:250]).predict(X[250:])
    assert pred.shape == (50, 2)
    assert_allclose(pred, ref, rtol=1e-5)


# Hand-written kernel profiles (independent of nnkd/_core/kernels.py), u >= 0.
ORACLE = {
    "uniform": lambda u: 0.5 if u <= 1 else 0.0,
    "triangular": lambda u: max(0.0, 1 - u),
    "epanechnikov": lambda u: 0.75 * (1 - u * u) if u <= 1 else 0.0,
    "biweight": lambda u: 15 / 16 * (1 - u * u) ** 2 if u <= 1 else 0.0,
    "triweight": lambda u: 35 / 32 * (1 - u * u) ** 3 if u <= 1 else 0.0,
    "tricube": lambda u: 70 / 81 * (1 - u ** 3) ** 3 if u <= 1 else 0.0,
    "cosine": lambda u: math.pi / 4 * math.cos(math.pi * u / 2) if u <= 1 else 0.0,
    "gaussian": lambda u: math.exp(-u * u / 2) / math.sqrt(2 * math.pi),
    "logistic": lambda u: 1 / (math.exp(u) + 2 + math.exp(-u)),
    "silverman": lambda u: 0.5 * math.exp(-u / math.sqrt(2)) * math.sin(u / math.sqrt(2) + math.pi / 4),
    "inverse": lambda u: 1 / max(u, 1e-6),
    "exponential": lambda u: math.exp(-u),
}


@pytest.mark.parametrize("kernel", ALL_KERNELS)
def test_kernel_weights_match_hand_computation(kernel):
    dist = np.array([[1.0, 2.0, 4.0, 5.0], [3.0, 3.0, 3.0, 3.0]])
    w = kernel_weights(dist, kernel)
    rows = [[abs((d - 1.0) / 4.0 - 1e-6) for d in dist[0]], [1e-6] * 4]     # KernelKnn's scaling
    assert_allclose(w, [[ORACLE[kernel](u) for u in r] for r in rows], rtol=1e-9, atol=1e-12)
    wb = kernel_weights(dist[:1], kernel, bandwidth=4.5)
    assert_allclose(wb[0], [ORACLE[kernel](d / 4.5) for d in dist[0]], rtol=1e-9, atol=1e-12)


def test_kernel_votes_by_hand():
    X = np.array([[0.0], [1.0], [2.0], [10.0]])
    y = np.array(["a", "b", "b", "a"])
    clf = KernelKNNClassifier(n_neighbors=3, kernel="triangular", bandwidth=4.0).fit(X, y)
    # query 0.5: neighbours 0 (a, d=.5), 1 (b, d=.5), 2 (b, d=1.5); weights 1-d/4
    proba = clf.predict_proba([[0.5]])[0]
    wa, wb = 1 - 0.5 / 4, (1 - 0.5 / 4) + (1 - 1.5 / 4)
    assert_allclose(proba, [wa / (wa + wb), wb / (wa + wb)])
    assert clf.predict([[0.5]]).tolist() == ["b"]


def test_class_ties_go_to_the_first_class():
    X = np.array([[0.0], [2.0]])
    clf = KernelKNNClassifier(n_neighbors=2).fit(X, ["z", "a"])
    assert clf.predict([[1.0]]).tolist() == ["a"]            # equal votes: first of classes_


def test_zero_weights_callable_and_bad_kernels_raise(blobs):
    X, y, Q, _ = blobs
    far = Q + 1e3
    with pytest.raises(ValueError, match="zero total kernel weight"):
        KernelKNNClassifier(kernel="epanechnikov", bandwidth=0.01).fit(X, y).predict(far)
    custom = KernelKNNClassifier(kernel=lambda u: np.exp(-3 * u)).fit(X, y)
    assert custom.predict(Q).shape == (200,)
    with pytest.raises(ValueError, match="same shape"):
        KernelKNNClassifier(kernel=lambda u: u[:, 0]).fit(X, y).predict(Q)
    with pytest.raises(ValueError, match="negative"):
        KernelKNNClassifier(kernel=lambda u: -u).fit(X, y).predict(Q)
    with pytest.raises(ValueError, match="kernel"):
        KernelKNNClassifier(kernel="parzen").fit(X, y)
    with pytest.raises(ValueError, match="n_neighbors"):
        KernelKNNClassifier(n_neighbors=1001).fit(X, y)
    with pytest.raises(ValueError, match="unknown index backend"):
        KernelKNNClassifier(index="annoy").fit(X, y)


def test_exclude_self_is_leave_one_out(blobs):
    X, y, _, _ = blobs
    clf = KernelKNNClassifier(n_neighbors=5, exclude_self=True).fit(X, y)
    _, ind = clf.kneighbors(X)
    _, ref = NearestNeighbors(n_neighbors=5).fit(X).kneighbors()          # X=None: sklearn's LOO
    assert_array_equal(ind, ref)
    plain = KernelKNNClassifier(n_neighbors=5).fit(X, y)
    assert_array_equal(plain.kneighbors(X)[1][:, 0], np.arange(len(X)))  # not special-cased
    with pytest.raises(ValueError, match="exclude_self"):
        clf.kneighbors(X[:10])


def test_exclude_self_with_duplicates_drops_one_copy():
    X = np.array([[0.0], [0.0], [1.0], [3.0]])
    clf = KernelKNNClassifier(n_neighbors=2, exclude_self=True).fit(X, [0, 0, 1, 1])
    ind = clf.kneighbors(X)[1]
    assert ind.tolist() == [[1, 2], [0, 2], [0, 1], [2, 0]]


@pytest.mark.parametrize("index", ["faiss:HNSW32", "faiss:IVF16,Flat", "nmslib:hnsw", "nmslib:sw-graph"])
def test_approximate_backends_keep_accuracy(index):
    X, y = make_blobs(3000, n_features=20, centers=12, cluster_std=4.0, random_state=1)
    exact = KernelKNNClassifier(n_neighbors=10, kernel="gaussian").fit(X[:2500], y[:2500]).score(X[2500:], y[2500:])
    approx = KernelKNNClassifier(n_neighbors=10, kernel="gaussian", index=index).fit(X[:2500], y[:2500])
    assert abs(approx.score(X[2500:], y[2500:]) - exact) <= 0.005


def test_pickle_pipeline_and_grid_search(blobs):
    X, y, Q, yq = blobs
    clf = KernelKNNClassifier(n_neighbors=5, index="nmslib:hnsw", n_jobs=2).fit(X, y)
    assert_array_equal(pickle.loads(pickle.dumps(clf)).predict(Q), clf.predict(Q))
    grid = GridSearchCV(KernelKNNClassifier(index="faiss:HNSW32"),
                        {"n_neighbors": [3, 9], "kernel": ["uniform", "tricube"]}, cv=3, n_jobs=2).fit(X, y)
    assert grid.best_params_["n_neighbors"] in (3, 9) and grid.score(Q, yq) > 0.5


# -- ANNTransformer --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["distance", "connectivity"])
def test_transformer_equals_sklearn_graph(blobs, mode):
    X, _, Q, _ = blobs
    ours = ANNTransformer(n_neighbors=6, mode=mode, index="exact").fit(X)
    ref = KNeighborsTransformer(n_neighbors=6, mode=mode).fit(X)
    for data in (X, Q):
        g, r = ours.transform(data), ref.transform(data)
        assert g.shape == r.shape and g.nnz == r.nnz == data.shape[0] * (6 + (mode == "distance"))
        assert_allclose(g.toarray(), r.toarray(), rtol=1e-5, atol=1e-6)
    fitted = ours.fit_transform(X)
    diagonal = np.asarray(fitted[np.arange(len(X)), np.arange(len(X))]).ravel()
    assert_allclose(diagonal, 0.0 if mode == "distance" else 1.0)        # each row holds itself


def test_precomputed_pipeline_with_approximate_graph(blobs):
    X, y, Q, yq = blobs
    pipe = make_pipeline(ANNTransformer(n_neighbors=10, index="nmslib:hnsw"),
                         KNeighborsClassifier(n_neighbors=10, metric="precomputed"))
    ref = KNeighborsClassifier(n_neighbors=10).fit(X, y).predict(Q)
    assert np.mean(pipe.fit(X, y).predict(Q) == ref) >= 0.98
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.5


def test_isomap_tsne_dbscan_on_precomputed_graphs():
    S, _ = make_s_curve(400, random_state=0)
    exact_graph = KNeighborsTransformer(n_neighbors=10, mode="distance").fit_transform(S)
    ours = ANNTransformer(n_neighbors=10, index="exact").fit_transform(S)
    iso = Isomap(n_neighbors=10, metric="precomputed", n_components=2)
    assert_allclose(np.abs(iso.fit_transform(ours)), np.abs(iso.fit_transform(exact_graph)), rtol=1e-3, atol=1e-3)
    X, _ = make_blobs(400, n_features=5, centers=4, random_state=0)
    approx = ANNTransformer(n_neighbors=20, index="faiss:HNSW32").fit_transform(X)
    labels = DBSCAN(eps=1.5, min_samples=5, metric="precomputed").fit_predict(approx)
    ref = DBSCAN(eps=1.5, min_samples=5).fit_predict(X)
    assert_array_equal(labels, ref)
    emb = TSNE(n_components=2, perplexity=5, metric="precomputed", init="random", random_state=0).fit_transform(approx)
    assert trustworthiness(X, emb, n_neighbors=5) > 0.9


# -- MarginCondensedNN over an Index -----------------------------------------------------------
@pytest.mark.parametrize("index", ["faiss:HNSW32", "nmslib:hnsw"])
def test_condensed_nn_predicts_through_any_index(blobs, index):
    X, y, Q, _ = blobs
    exact = MarginCondensedNN(selection="validation", random_state=0).fit(X, y)
    approx = MarginCondensedNN(selection="validation", random_state=0, index=index).fit(X, y)
    assert_array_equal(approx.support_, exact.support_)
    assert np.mean(approx.predict(Q) == exact.predict(Q)) >= 0.99
    assert approx.index_.spec == index and len(approx.index_) == len(approx.support_)
    assert_array_equal(pickle.loads(pickle.dumps(approx)).predict(Q), approx.predict(Q))
