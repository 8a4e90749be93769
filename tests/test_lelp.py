"""LELP pseudo-subclass targets and their use in ``NNDistiller(subclasses=..., random_state=0)``."""

import functools

import numpy as np
import pytest
import torch

from nnkd import load_student
from nnkd.distill import NNDistiller, lelp_targets
from nnkd.teachers import CallableTeacher, TorchTeacher


def _softmax(Z):
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)


def _hidden_subclass_problem(n=400, seed=0):
    """Two classes told apart by embedding dim 0; inside each, a hidden split along a dim the
    classifier ignores (dim 2 for class 0, dim 3 for class 1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    hidden = rng.integers(0, 2, n)
    H = 0.3 * rng.standard_normal((n, 5))
    H[:, 0] += np.where(y == 0, 2.0, -2.0)
    H[np.arange(n), 2 + y] += np.where(hidden == 1, 3.0, -3.0)
    W = np.array([[1.0, 0, 0, 0, 0], [-1.0, 0, 0, 0, 0]])
    return H, _softmax(H @ W.T), W, y, hidden


def test_class_marginals_are_the_teachers():
    H, T, W, _, _ = _hidden_subclass_problem()
    targets, groups = lelp_targets(H, T, W, n_subclasses=4)
    assert targets.shape == (len(H), 8)
    np.testing.assert_array_equal(groups, np.repeat([0, 1], 4))
    np.testing.assert_allclose(targets @ np.eye(2)[groups], T, atol=1e-12)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-12)


def test_split_ignores_what_the_classifier_sees():
    """Moving embeddings along the classifier's weight rows changes nothing inside a class."""
    H, T, W, _, _ = _hidden_subclass_problem()
    shift = np.random.default_rng(5).standard_normal((len(H), 2)) @ W
    a, _ = lelp_targets(H, T, W, n_subclasses=2)
    b, _ = lelp_targets(H + shift, T, W, n_subclasses=2)
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_recovers_hidden_subclasses():
    H, T, W, y, hidden = _hidden_subclass_problem()
    targets, _ = lelp_targets(H, T, W, n_subclasses=2)
    for c in (0, 1):
        rows = y == c
        side = targets[rows, 2 * c:2 * c + 2].argmax(axis=1)
        agree = np.mean(side == hidden[rows])
        assert max(agree, 1 - agree) >= 0.98          # PCA's sign is arbitrary


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_subclasses": 1}, "n_subclasses"),
    ({"temperature": 0.0}, "temperature"),
    ({"classifier_weights": np.ones((2, 3))}, "classifier_weights"),
    ({"teacher_proba": np.ones((400, 2))}, "teacher_proba"),
    ({"labels": np.full(400, 7)}, "labels"),
    ({"labels": np.r_[np.ones(399, int), 0]}, "class 0 has 1 rows"),
    ({"n_subclasses": 12}, "fewer than 6 directions"),
])
def test_bad_inputs(kwargs, match):
    H, T, W, _, _ = _hidden_subclass_problem()
    args = {"embeddings": H, "teacher_proba": T, "classifier_weights": W, **kwargs}
    with pytest.raises(ValueError, match=match):
        lelp_targets(**args)


@functools.lru_cache(maxsize=1)
def _binary_teacher(seed=0):
    """A small torch MLP on a 2-class problem with two modes per class."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [4, 4], [0, 4], [4, 0]], dtype=np.float32)
    mode = rng.integers(0, 4, 600)
    X = (centres[mode] + 0.7 * rng.standard_normal((600, 2))).astype(np.float32)
    y = (mode >= 2).astype(np.int64)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    return TorchTeacher(model, embedding="3"), X, y


def test_torch_teacher_exposes_its_last_linear_layer():
    teacher, X, _ = _binary_teacher()
    W = teacher.classifier_weights()
    np.testing.assert_array_equal(W, teacher.model[4].weight.detach().numpy())
    # logits = embedding @ W.T + bias
    logits = teacher.embed(X[:5]) @ W.T + teacher.model[4].bias.detach().numpy()
    np.testing.assert_allclose(logits, teacher.logits(X[:5]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no torch.nn.Linear"):
        TorchTeacher(torch.nn.ReLU()).classifier_weights()
    with pytest.raises(TypeError, match="classifier_weights"):
        CallableTeacher(logits=lambda X: X).classifier_weights()


@pytest.mark.parametrize("space", ["projection", "input", "teacher"])
def test_distiller_with_subclasses(space, tmp_path):
    teacher, X, y = _binary_teacher()
    dist = NNDistiller(teacher, space=space, subclasses=4, temperature=1.0, max_epochs=30,
                       size_budget_kb=2 if space == "projection" else None, random_state=0).fit(X, y)
    proba = dist.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert dist.score(X, y) >= 0.95
    if space == "projection":
        assert dist.student_.label_vectors.shape[1] == 8           # 2 classes x 4 subclasses
        assert dist.size_bytes_ <= 2000
        np.testing.assert_array_equal(dist.student_.output_classes, np.repeat([0, 1], 4))
        loaded = load_student(dist.student_.save(tmp_path / "s"))
        np.testing.assert_array_equal(loaded.predict(X), dist.predict(X))
        np.testing.assert_allclose(loaded.predict_proba(X), proba, rtol=1e-6, atol=1e-9)
        assert all(row["prototypes"][0]["label"] in (0, 1) for row in loaded.explain(X[:3], 2))
    else:
        # Condensed on subclass labels: at least as many prototypes as without LELP.
        plain = NNDistiller(teacher, space=space, temperature=1.0, random_state=0).fit(X, y)
        assert len(dist.prototypes_) >= len(plain.prototypes_)


def test_recipe_scores_classes_not_subclasses():
    teacher, X, y = _binary_teacher()
    dist = NNDistiller(teacher, space="projection", subclasses=4, temperature=1.0, augment="noise",
                       noise_scale="auto", max_epochs=6, size_budget_kb=2, random_state=0).fit(X, y)
    # Held-out agreement with the teacher's class: with subclass outputs compared as classes
    # it would sit near 1/4; a working student agrees on most rows.
    assert min(c["validation_fidelity"] for c in dist.recipe_["candidates"]) >= 0.8


def test_subclasses_reject_slam_and_alpha():
    teacher, X, y = _binary_teacher()
    with pytest.raises(ValueError, match="LELP"):
        NNDistiller(teacher, space="projection", subclasses=2, alpha=0.5, max_epochs=1, random_state=0).fit(X, y)
