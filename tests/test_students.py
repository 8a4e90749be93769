"""Every fitted estimator exports a student that is saved, served over HTTP and predicts what
the estimator predicts; the Student protocol answers for every kind (no AttributeError)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
torch = pytest.importorskip("torch")

from _http import _start_server, _stop

from nnkd import (
    KernelKNNClassifier,
    KernelKNNRegressor,
    MarginCondensedNN,
    NNDistiller,
    SoftDecisionTreeClassifier,
    TreeDistiller,
    load_student,
)
from nnkd.student import Student, student_kinds
from nnkd.teachers import train_mlp_teacher


def _split(loader, scale=True):
    X, y = loader(return_X_y=True)
    X = X.astype(np.float32)
    if scale:
        X = StandardScaler().fit_transform(X).astype(np.float32)
    return train_test_split(X, y, test_size=0.25, random_state=0)


@pytest.fixture(scope="module")
def wine_teacher():
    X_tr, X_te, y_tr, y_te = _split(load_wine)
    return train_mlp_teacher(X_tr, y_tr, hidden=(32,), epochs=30, random_state=0), (X_tr, X_te, y_tr, y_te)


def _estimators(wine_teacher):
    teacher, wine = wine_teacher
    return {
        "MarginCondensedNN": (lambda: MarginCondensedNN(method="hart", random_state=0), _split(load_digits, False)),
        "KernelKNNClassifier": (lambda: KernelKNNClassifier(n_neighbors=7, kernel="gaussian"),
                                _split(load_breast_cancer)),
        "KernelKNNRegressor": (lambda: KernelKNNRegressor(n_neighbors=5, kernel="triangular"), _split(load_diabetes)),
        "NNDistiller": (lambda: NNDistiller(teacher, space="projection", size_budget_kb=4, max_epochs=20,
                                            random_state=0), wine),
        "TreeDistiller": (lambda: TreeDistiller(teacher, tree=SoftDecisionTreeClassifier(depth=3, max_epochs=30,
                                                                                         random_state=0)), wine),
        "SoftDecisionTreeClassifier": (lambda: SoftDecisionTreeClassifier(depth=2, max_epochs=60, batch_size=32,
                                                                          random_state=0), _split(load_iris)),
    }


@pytest.mark.parametrize("name", ["MarginCondensedNN", "KernelKNNClassifier", "KernelKNNRegressor", "NNDistiller",
                                  "TreeDistiller", "SoftDecisionTreeClassifier"])
def test_estimator_student_served_over_http(name, wine_teacher, tmp_path):
    make, (X_tr, X_te, y_tr, _) = _estimators(wine_teacher)[name]
    est = make().fit(X_tr, y_tr)
    expected = est.predict(X_te)
    directory = est.to_student().save(tmp_path / "student")
    loaded = load_student(directory)
    assert_array_equal(loaded.predict(X_te), expected)
    proc, url = _start_server(directory)
    try:
        model = httpx.get(f"{url}/v1/model", timeout=10).json()["student"]
        assert model["kind"] == loaded.kind and model["n_features_in"] == X_te.shape[1]
        r = httpx.post(f"{url}/v1/predict", json={"instances": X_te.tolist()}, timeout=30)
        assert r.status_code == 200, r.text
        assert_array_equal(np.asarray(r.json()["label"]), expected)
        if loaded.classes is not None:
            r = httpx.post(f"{url}/v1/predict", json={"instances": X_te[:5].tolist(), "return": ["proba"]},
                           timeout=30)
            assert r.status_code == 200, r.text
            assert_allclose(r.json()["proba"], loaded.predict_proba(X_te[:5]), rtol=1e-12)
        else:                                          # a regressor says why it has no probabilities
            r = httpx.post(f"{url}/v1/predict", json={"instances": X_te[:2].tolist(), "return": ["proba"]},
                           timeout=30)
            assert r.status_code == 422 and "regressor" in r.json()["error"]
        r = httpx.post(f"{url}/v1/neighbors", json={"instances": X_te[:3].tolist(), "k": 2}, timeout=30)
        try:
            loaded.check_neighbors(2)
        except ValueError as exc:                      # a tree: a 4xx JSON error with the student's reason
            assert r.status_code == 422 and r.json()["error"] == str(exc)
        else:
            assert r.status_code == 200 and r.json()["neighbors"] == loaded.explain(X_te[:3], k=2)
    finally:
        _stop(proc)


def test_every_kind_is_exported_and_answers_the_protocol(wine_teacher, tmp_path):
    seen = set()
    for name, (make, (X_tr, X_te, y_tr, _)) in _estimators(wine_teacher).items():
        est = make().fit(X_tr, y_tr)
        student = est.to_student()
        assert isinstance(student, Student), name
        seen.add(student.kind)
        description = student.describe()
        assert description["kind"] == student.kind and description["size_bytes"] == student.size_bytes > 0
        explained = student.explain(X_te[:2], k=2)
        assert len(explained) == 2 and all("prediction" in e for e in explained)
        assert [e["prediction"] for e in explained] == est.predict(X_te[:2]).tolist()
        if hasattr(est, "explain"):
            assert est.explain(X_te[:2], k=2) == explained, name
        labels, proba = student.predict_with_proba(X_te[:4])
        assert_array_equal(labels, est.predict(X_te[:4]))
        if proba is not None:
            assert_allclose(proba, est.predict_proba(X_te[:4]), rtol=1e-6, atol=1e-9)
        rows = student.example_inputs(3, np.random.default_rng(0))
        assert rows.shape == (3, student.n_features_in) and rows.dtype == np.float32
    assert seen == set(student_kinds())


def test_kernel_knn_student_keeps_bandwidth_metric_and_refuses_callables(tmp_path):
    X_tr, X_te, y_tr, _ = _split(load_breast_cancer)
    est = KernelKNNClassifier(n_neighbors=9, kernel="epanechnikov", bandwidth=40.0, metric="manhattan").fit(X_tr, y_tr)
    loaded = load_student(est.to_student().save(tmp_path / "s"))
    assert_allclose(loaded.predict_proba(X_te), est.predict_proba(X_te), rtol=1e-12)
    with pytest.raises(ValueError, match="callable kernel"):
        KernelKNNClassifier(kernel=lambda u: np.ones_like(u)).fit(X_tr, y_tr).to_student()


def test_approximate_index_is_saved_with_the_student(tmp_path):
    pytest.importorskip("faiss")
    X_tr, X_te, y_tr, _ = _split(load_digits)
    est = KernelKNNClassifier(n_neighbors=3, index="faiss:HNSW16", index_params={"efSearch": 16}).fit(X_tr, y_tr)
    directory = est.to_student().save(tmp_path / "s")
    assert (directory / "index" / "index.json").is_file()
    with pytest.raises(ValueError, match="unsigned faiss native index"):
        load_student(directory)
    assert_array_equal(load_student(directory, trust_native=True).predict(X_te), est.predict(X_te))


def test_float16_distilled_student_searches_its_rounded_prototypes(wine_teacher):
    teacher, (X_tr, X_te, y_tr, _) = wine_teacher
    dist = NNDistiller(teacher, space="input", dtype="float16", random_state=0).fit(X_tr, y_tr)
    student = dist.to_student()
    P = student.prototypes
    nearest = np.argmin(((X_te[:, None, :] - P[None]) ** 2).sum(-1), axis=1)     # brute force on rounded rows
    assert_array_equal(student.predict(X_te), student.classes[np.argmax(student.label_vectors[nearest], axis=1)])
