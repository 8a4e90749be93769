"""Soft decision trees, TreeDistiller and data impressions."""

import dataclasses
import json
import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits, make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

from nnkd.condense import holdout_bound
from nnkd.distill import (
    DataImpressions,
    DirichletMixup,
    TreeDistiller,
    class_similarity,
    dirichlet_concentration,
)
from nnkd.distill._augment import make_augmenter
from nnkd.student import TreeStudent, load_student
from nnkd.teachers import CallableTeacher, TorchTeacher, train_mlp_teacher
from nnkd.trees import SoftDecisionTreeClassifier, node_filters, plot_tree
from nnkd.trees._module import SoftDecisionTree
from nnkd.trees._objective import RunningSplit, penalty_weights
from nnkd.trees._training import tree_objective


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def softmax_rows(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def fixed_tree(depth, rng, n_features=3, n_classes=3):
    """A tree with random but fixed parameters, and the same parameters as NumPy arrays."""
    n_inner = 2 ** depth - 1
    params = {"W": rng.normal(size=(n_inner, n_features)), "b": rng.normal(size=n_inner),
              "beta": rng.uniform(0.5, 2.0, size=n_inner), "phi": rng.normal(size=(2 ** depth, n_classes))}
    module = SoftDecisionTree(n_features, n_classes, depth).double()     # exact copies of the float64 values
    with torch.no_grad():
        module.gates.weight.copy_(torch.tensor(params["W"]))
        module.gates.bias.copy_(torch.tensor(params["b"]))
        module.log_beta.copy_(torch.tensor(np.log(params["beta"])))
        module.leaf_logits.copy_(torch.tensor(params["phi"]))
    return module, params


def by_hand(depth, params, X, T, lam):
    """The paper's loss and penalty, written out node by node (no loop over levels)."""
    p = sigmoid(params["beta"] * (X @ params["W"].T + params["b"]))        # p_i(x): probability of going right
    if depth == 1:
        leaves = np.c_[1 - p[:, 0], p[:, 0]]
        reach = np.ones((len(X), 1))
    else:
        leaves = np.c_[(1 - p[:, 0]) * (1 - p[:, 1]), (1 - p[:, 0]) * p[:, 1],
                       p[:, 0] * (1 - p[:, 2]), p[:, 0] * p[:, 2]]
        reach = np.c_[np.ones(len(X)), 1 - p[:, 0], p[:, 0]]
    log_q = np.log(softmax_rows(params["phi"]))
    ce = -np.mean(sum(leaves[:, l] * (T * log_q[l]).sum(axis=1) for l in range(2 ** depth)))
    alpha = (reach * p).sum(axis=0) / reach.sum(axis=0)
    penalty = -np.sum(lam * (0.5 * np.log(alpha) + 0.5 * np.log(1 - alpha)))
    return ce, penalty, alpha, leaves


@pytest.mark.parametrize("depth", [1, 2])
def test_loss_and_penalty_match_a_hand_computed_tree(rng, depth):
    module, params = fixed_tree(depth, rng)
    X = rng.normal(size=(7, 3))
    T = softmax_rows(rng.normal(size=(7, 3)))
    lam = 0.3 * 2.0 ** -np.array([0, 1, 1])[:2 ** depth - 1]
    assert_allclose(penalty_weights(depth, 0.3, 2.0), lam)
    ce, pen = tree_objective(module.double(), torch.tensor(X), torch.tensor(T), torch.tensor(lam), running=None)
    ref_ce, ref_pen, _, leaves = by_hand(depth, params, X, T, lam)
    assert_allclose(ce.item(), ref_ce, rtol=1e-10)
    assert_allclose(pen.item(), ref_pen, rtol=1e-10)
    assert_allclose(module.routing(torch.tensor(X))[2].detach().numpy(), leaves, rtol=1e-10)


def test_running_average_of_the_splits(rng):
    """First batch: the batch's own split fractions; then gamma_d = 1 - (1 - ema) 2^-d per node,
    and the gradient reaches the parameters through the current batch at full weight."""
    module, params = fixed_tree(2, rng)
    module = module.double()
    lam = penalty_weights(2, 0.1, 2.0)
    X1, X2 = rng.normal(size=(6, 3)), rng.normal(size=(5, 3)) + 0.5
    T1, T2 = np.eye(3)[[0, 1, 2, 0, 1, 2]], np.eye(3)[[2, 2, 1, 0, 0]]
    running = RunningSplit(2, ema=0.8)
    _, pen1 = tree_objective(module, torch.tensor(X1), torch.tensor(T1), torch.tensor(lam), running)
    _, ref_pen1, alpha1, _ = by_hand(2, params, X1, T1, lam)
    assert_allclose(pen1.item(), ref_pen1, rtol=1e-6)
    module.zero_grad()
    _, pen2 = tree_objective(module, torch.tensor(X2), torch.tensor(T2), torch.tensor(lam), running)
    pen2.backward()
    gamma = np.array([0.8, 0.9, 0.9])
    _, _, alpha2, _ = by_hand(2, params, X2, T2, lam)
    average = gamma * alpha1 + (1 - gamma) * alpha2
    assert_allclose(running.average.numpy(), average, rtol=1e-6)
    assert_allclose(pen2.item(), -np.sum(lam * (0.5 * np.log(average) + 0.5 * np.log(1 - average))), rtol=1e-6)
    # straight-through: the gradient is dC/dalpha at the average times d alpha_batch / d theta
    slope = torch.tensor(-lam * (0.5 / average - 0.5 / (1 - average)))
    reference = module.gates.weight.detach().clone().requires_grad_(True)
    p = torch.sigmoid(torch.exp(module.log_beta.detach()) * (torch.tensor(X2) @ reference.T + module.gates.bias.detach()))
    reach = torch.stack((torch.ones(5, dtype=torch.float64), 1 - p[:, 0], p[:, 0]), dim=1)
    alpha_t = (reach * p).sum(0) / reach.sum(0)
    (slope * alpha_t).sum().backward()
    assert_allclose(module.gates.weight.grad.numpy(), reference.grad.numpy(), rtol=1e-6)


# -- the estimator -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    return X[:1300], y[:1300], X[1300:], y[1300:]


@pytest.fixture(scope="module")
def digits_teacher(digits):
    X, y, _, _ = digits
    return train_mlp_teacher(X, y, hidden=(64,), epochs=40, random_state=0)


@parametrize_with_checks([SoftDecisionTreeClassifier(depth=3, max_epochs=20, batch_size=32, random_state=0)])
def test_sklearn_api(estimator, check):
    check(estimator)


def test_learned_betas_train_and_are_exported(digits):
    X, y, Q, _ = digits
    tree = SoftDecisionTreeClassifier(depth=3, beta="learned", max_epochs=5, random_state=0).fit(X, y)
    betas = tree.student_.gate_betas
    assert betas.shape == (7,) and (betas > 0).all() and not np.allclose(betas, 1.0)
    fixed = SoftDecisionTreeClassifier(depth=3, beta=0.5, max_epochs=2, random_state=0).fit(X, y)
    assert_array_equal(fixed.student_.gate_betas, np.full(7, 0.5, dtype=np.float32))


def test_student_predicts_what_the_torch_module_predicts(rng):
    module, _ = fixed_tree(2, rng, n_features=4, n_classes=3)
    student = TreeStudent(classes=np.array([3, 5, 7]), depth=2, inference="mixture", **module.export())
    X = rng.normal(size=(50, 4)).astype(np.float32)
    with torch.no_grad():                                         # float64 module; the student keeps float32
        ref = module(torch.from_numpy(X.astype(np.float64))).numpy()
        leaves = module.routing(torch.from_numpy(X.astype(np.float64)))[2].numpy()
    assert_allclose(student.predict_proba(X), ref, rtol=1e-5, atol=1e-7)
    assert_allclose(student.route(X), leaves, rtol=1e-5, atol=1e-7)
    max_path = dataclasses.replace(student, inference="max_path")
    assert_array_equal(max_path.predict_proba(X), student.leaf_distributions[leaves.argmax(1)].astype(np.float64))


def test_max_path_and_mixture_differ_as_defined():
    # one inner node: goes right with probability sigmoid(0.4) = 0.599 for x = 0.4
    leaves = np.array([[1.0, 0.0], [0.45, 0.55]], dtype=np.float32)
    student = TreeStudent(classes=np.array(["a", "b"]), depth=1, gate_weights=[[1.0]], gate_biases=[0.0],
                      gate_betas=[1.0], leaf_distributions=leaves, inference="max_path")
    x = np.array([[0.4]])
    p = sigmoid(0.4)
    assert_allclose(student.predict_proba(x), [[0.45, 0.55]], rtol=1e-6)          # the right leaf alone
    mixture = dataclasses.replace(student, inference="mixture")
    assert_allclose(mixture.predict_proba(x), [[(1 - p) + p * 0.45, p * 0.55]], rtol=1e-6)
    assert student.predict(x).tolist() == ["b"] and mixture.predict(x).tolist() == ["a"]
    paths = student.explain(x)[0]["paths"]                  # k=3 asks for more paths than the 2 leaves
    assert [q["leaf"] for q in paths] == [1, 0]
    assert paths[0]["path"] == [{"node": 0, "p_right": pytest.approx(p), "branch": "right"}]
    assert paths[1]["path"] == [{"node": 0, "p_right": pytest.approx(p), "branch": "left"}]
    assert paths[1]["path_probability"] == pytest.approx(1 - p)


def test_one_hot_soft_targets_equal_hard_labels(digits):
    X, y, Q, _ = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    labels = names[y]                                # sorted order differs from the digit order
    tree = SoftDecisionTreeClassifier(depth=3, max_epochs=3, random_state=4)
    hard = tree.fit(X, labels).student_
    classes = np.unique(labels)
    one_hot = (labels[:, None] == classes[None]).astype(float)
    soft = SoftDecisionTreeClassifier(depth=3, max_epochs=3, random_state=4).fit(X, labels, soft_targets=one_hot)
    assert_array_equal(soft.classes_, classes)
    for name in ("gate_weights", "gate_biases", "gate_betas", "leaf_distributions"):
        assert_array_equal(getattr(soft.student_, name), getattr(hard, name), err_msg=name)
    assert_array_equal(soft.predict(Q), tree.predict(Q))


def test_the_tree_learns_the_targets_it_is_given():
    """Soft targets from a teacher that disagrees with y on a band: the distilled tree follows
    the teacher there, the hard-label tree follows y."""
    X, _ = make_blobs(1500, n_features=2, centers=[[0, 0], [4, 0]], cluster_std=1.5, random_state=0)
    X = X.astype(np.float32)
    y = (X[:, 0] > 2).astype(int)                             # truth: a vertical boundary at x = 2
    teacher = CallableTeacher(logits=lambda Z: np.c_[np.zeros(len(Z)), 3 * (Z[:, 0] + Z[:, 1] - 2)])
    t_pred = teacher.soft_labels(X).argmax(1)
    assert 0.1 < np.mean(t_pred != y) < 0.45                  # the two really disagree
    tree = SoftDecisionTreeClassifier(depth=2, max_epochs=30, batch_size=64, random_state=0)
    hard = tree.fit(X, y)
    dist = TreeDistiller(teacher, tree=tree, augment=None).fit(X)
    assert dist.fidelity(X) >= 0.95 and dist.training_fidelity_ >= 0.95
    assert np.mean(hard.predict(X) == t_pred) <= dist.fidelity(X) - 0.1
    assert np.mean(hard.predict(X) == y) >= 0.95


def test_tree_distiller_alpha_mixes_the_labels_into_the_targets(digits, digits_teacher):
    """alpha fits the tree to alpha * one_hot(y) + (1 - alpha) * teacher: the same tree as
    fitting those targets directly (an exact oracle), with string class names in sorted order."""
    X, y, _, _ = digits
    X, y = X[:400], y[:400]
    names = np.array(list("abcdefghij"))[y]
    tree = SoftDecisionTreeClassifier(depth=3, max_epochs=3, batch_size=64, random_state=0)
    dist = TreeDistiller(digits_teacher, tree=tree, temperature=4.0, alpha=0.7, augment=None,
                         validation_fraction=0.0).fit(X, names)
    targets = 0.3 * digits_teacher.soft_labels(X, 4.0) + 0.7 * np.eye(10)[y]
    direct = SoftDecisionTreeClassifier(depth=3, max_epochs=3, batch_size=64, random_state=0).fit(
        X, names, soft_targets=targets)
    assert_array_equal(dist.classes_, np.array(list("abcdefghij")))
    for key in ("gate_weights", "gate_biases", "leaf_distributions"):
        assert_allclose(getattr(dist.student_, key), getattr(direct.student_, key), rtol=1e-5, atol=1e-6)
    assert dist.student_.meta["alpha"] == 0.7
    # Fidelity is measured against the teacher's own labels, not the mixed targets.
    teacher_codes = digits_teacher.soft_labels(X).argmax(1)
    assert dist.training_fidelity_ == np.mean(np.argmax(dist.student_.predict_proba(X), axis=1) == teacher_codes)
    with pytest.raises(ValueError, match="pass y"):
        TreeDistiller(digits_teacher, tree=tree, alpha=0.5).fit(X)
    with pytest.raises(ValueError, match="alpha"):
        TreeDistiller(digits_teacher, tree=tree, alpha=1.5).fit(X, y)


def test_tree_distiller_alpha_one_follows_the_labels():
    """On the band where the teacher and y disagree, alpha=1 follows y and alpha=0 the teacher."""
    X, _ = make_blobs(1500, n_features=2, centers=[[0, 0], [4, 0]], cluster_std=1.5, random_state=0)
    X = X.astype(np.float32)
    y = (X[:, 0] > 2).astype(int)
    teacher = CallableTeacher(logits=lambda Z: np.c_[np.zeros(len(Z)), 3 * (Z[:, 0] + Z[:, 1] - 2)])
    tree = SoftDecisionTreeClassifier(depth=2, max_epochs=30, batch_size=64, random_state=0)
    labels = TreeDistiller(teacher, tree=tree, alpha=1.0, temperature=1.0, augment=None,
                           validation_fraction=0.0).fit(X, y)
    soft = TreeDistiller(teacher, tree=tree, alpha=0.0, temperature=1.0, augment=None,
                         validation_fraction=0.0).fit(X, y)
    assert labels.score(X, y) >= 0.95 and soft.score(X, y) <= labels.score(X, y) - 0.1
    assert soft.fidelity(X) >= 0.95 and labels.training_fidelity_ <= soft.training_fidelity_ - 0.1


def _disagreeing_problem():
    X, _ = make_blobs(1500, n_features=2, centers=[[0, 0], [4, 0]], cluster_std=1.5, random_state=0)
    X = X.astype(np.float32)
    y = (X[:, 0] > 2).astype(int)
    teacher = CallableTeacher(logits=lambda Z: np.c_[np.zeros(len(Z)), 3 * (Z[:, 0] + Z[:, 1] - 2)])
    return X, y, teacher


def test_tree_distiller_falls_back_to_the_labels_when_the_teacher_hurts():
    """A teacher that disagrees with y on a wide band: on held-out rows the labels-only tree is
    more accurate than every distilled one, so fit keeps it and says so."""
    X, y, teacher = _disagreeing_problem()
    tree = SoftDecisionTreeClassifier(depth=2, max_epochs=20, batch_size=64, random_state=0)
    dist = TreeDistiller(teacher, tree=tree).fit(X, y)
    assert dist.fell_back_to_labels_ and dist.recipe_["source"] == "labels"
    scores = [c["validation_score"] for c in dist.recipe_["candidates"]]
    assert scores[0] == max(scores) and len(scores) == 4
    # the student is the tree fitted to the training rows' labels (an exact oracle)
    n_val = dist.recipe_["validation_rows"]
    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))
    rows = np.sort(np.random.default_rng(seed).permutation(len(X))[n_val:])
    direct = SoftDecisionTreeClassifier(depth=2, max_epochs=20, batch_size=64, random_state=0).fit(X[rows], y[rows])
    assert_allclose(dist.student_.gate_weights, direct.student_.gate_weights, rtol=1e-5, atol=1e-6)
    assert dist.bound_target_ == "labels" and dist.student_.bound_kind == "held-out"


def test_tree_distiller_keeps_the_distilled_tree_where_it_is_more_accurate(digits, digits_teacher):
    X, y, Q, yq = digits
    tree = SoftDecisionTreeClassifier(depth=4, max_epochs=10, random_state=0)
    dist = TreeDistiller(digits_teacher, tree=tree).fit(X, y)
    cands = dist.recipe_["candidates"]
    best = max(range(len(cands)), key=lambda i: (cands[i]["validation_score"], -i))
    assert dist.recipe_["source"] == cands[best]["source"] and dist.fell_back_to_labels_ == (best == 0)
    # the reported held-out score is recounted from the seeded split; the bound follows from it
    n_val = dist.recipe_["validation_rows"]
    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))
    val = np.sort(np.random.default_rng(seed).permutation(len(X))[:n_val])
    acc = np.mean(dist.predict(X[val]) == y[val])
    assert dist.recipe_["validation_score"] == pytest.approx(acc)
    errors = int(round((1 - acc) * n_val))
    assert dist.bound_ == pytest.approx(holdout_bound(errors, n_val, 0.05, len(cands)))
    assert 1 - dist.score(Q, yq) <= dist.bound_


def test_tree_distiller_on_digits(digits, digits_teacher):
    X, y, Q, yq = digits
    tree = SoftDecisionTreeClassifier(depth=4, max_epochs=15, random_state=0)
    dist = TreeDistiller(digits_teacher, tree=tree, temperature=2.0, augment="noise", validation_fraction=0.0).fit(X)
    assert dist.score(Q, yq) > 0.75 and dist.fidelity(Q) > 0.75
    assert dist.student_.meta["teacher_temperature"] == 2.0 and dist.student_.meta["soft_targets"] is True
    assert_array_equal(dist.classes_, np.arange(10)) and dist.size_bytes_ == dist.to_student().size_bytes


def test_save_load_round_trip(digits, tmp_path):
    X, y, Q, _ = digits
    names = np.array([f"digit {k}" for k in range(10)])
    for inference in ("max_path", "mixture"):
        tree = SoftDecisionTreeClassifier(depth=3, max_epochs=5, inference=inference, random_state=0).fit(X, names[y])
        path = tree.to_student().save(tmp_path / inference)
        loaded = load_student(path)
        assert loaded.kind == "tree" and loaded.depth == 3 and loaded.inference == inference
        assert_array_equal(loaded.predict(Q), tree.predict(Q))
        assert_array_equal(loaded.predict_proba(Q), tree.predict_proba(Q))
        assert loaded.size_bytes == tree.size_bytes_ == 4 * (7 * 64 + 7 + 7 + 8 * 10 + 2 * 64)
        assert loaded.explain(Q[:2]) == tree.explain(Q[:2])
    meta = json.loads((path / "student.json").read_text())
    assert meta["format_version"] == 2 and meta["kind"] == "tree" and meta["inference"] == "mixture"
    data = bytearray((path / "arrays.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "arrays.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        load_student(path)


def test_explain_follows_the_most_probable_path(digits):
    X, y, Q, _ = digits
    tree = SoftDecisionTreeClassifier(depth=3, max_epochs=5, random_state=0).fit(X, y)
    route = tree.route(Q[:5])
    assert_allclose(route.sum(axis=1), 1.0)
    for row, out in zip(route, tree.explain(Q[:5], k=8), strict=True):
        assert [q["leaf"] for q in out["paths"]] == np.argsort(-row, kind="stable").tolist()
        for q in out["paths"]:
            leaf = q["leaf"]
            assert q["path_probability"] == pytest.approx(row[leaf])
            assert [step["node"] for step in q["path"]] == [0, 1 + (leaf >= 4), 3 + leaf // 2]
            assert np.prod([s["p_right"] if s["branch"] == "right" else 1 - s["p_right"] for s in q["path"]]) \
                == pytest.approx(row[leaf])


def test_plot_tree(digits, tmp_path):
    X, y, _, _ = digits
    tree = SoftDecisionTreeClassifier(depth=2, max_epochs=3, random_state=0).fit(X, y)
    s = tree.to_student()
    assert_allclose(node_filters(s), s.gate_weights * s.gate_betas[:, None], rtol=1e-6)
    assert_allclose(node_filters(s, "input"), s.gate_weights * s.gate_betas[:, None] / s.input_scale, rtol=1e-6)
    png = tree.plot_tree(tmp_path / "tree.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bars = plot_tree(s, tmp_path / "bars.png", image_shape=None, class_names=[str(k) for k in range(10)], units="input")
    assert bars.stat().st_size > 1000
    with pytest.raises(ValueError, match="image_shape"):
        plot_tree(s, tmp_path / "x.png", image_shape=(5, 5))


@pytest.mark.parametrize("kwargs, fit_kwargs, error, match", [
    ({"depth": 0}, {}, ValueError, "'depth' parameter"),
    ({"inference": "vote"}, {}, ValueError, "'inference' parameter"),
    ({"beta": -1.0}, {}, ValueError, "'beta' parameter"),
    ({}, {"soft_targets": np.full((10, 3), 1 / 3)}, ValueError, r"soft_targets has shape \(10, 3\)"),
    ({}, {"soft_targets": "wrong_rows"}, ValueError, "summing to 1"),
    ({}, {"soft_targets": "nan"}, ValueError, "NaN"),
    ({}, {"soft_targets": "two_columns"}, ValueError, "2 columns but y has 3 classes"),
])
def test_bad_tree_input(kwargs, fit_kwargs, error, match):
    X, y = make_blobs(60, n_features=2, centers=3, random_state=0)
    T = np.full((60, 3), 1 / 3)
    special = {"wrong_rows": T * 1.1, "nan": np.where(np.arange(180).reshape(60, 3) == 7, np.nan, T),
               "two_columns": np.full((60, 2), 0.5)}
    fit_kwargs = {k: special.get(v, v) if isinstance(v, str) else v for k, v in fit_kwargs.items()}
    with pytest.raises(error, match=match):
        SoftDecisionTreeClassifier(max_epochs=1, **kwargs, random_state=0).fit(X, y, **fit_kwargs)


def test_student_rejects_inconsistent_tree_arrays():
    good = {"gate_weights": np.zeros((3, 2)), "gate_biases": np.zeros(3), "gate_betas": np.ones(3),
            "leaf_distributions": np.full((4, 2), 0.5)}
    TreeStudent(classes=np.arange(2), depth=2, **good)
    with pytest.raises(ValueError, match=r"leaf_distributions has shape \(4, 2\); expected \(8, 2\)"):
        TreeStudent(classes=np.arange(2), depth=3, **{**good, "gate_weights": np.zeros((7, 2)),
                                                               "gate_biases": np.zeros(7), "gate_betas": np.ones(7)})
    with pytest.raises(ValueError, match="summing to 1"):
        TreeStudent(classes=np.arange(2), depth=2, **{**good, "leaf_distributions": np.ones((4, 2))})
    with pytest.raises(ValueError, match="inference"):
        TreeStudent(classes=np.arange(2), depth=2, inference="vote", **good)
    with pytest.raises(ValueError, match="depth"):
        TreeStudent(classes=np.arange(2), depth=1e308, **good)
    with pytest.raises(TypeError, match="prototypes"):
        TreeStudent(classes=np.arange(2), depth=2, prototypes=np.zeros((1, 2)), **good)


# -- data impressions --------------------------------------------------------------------------
def test_class_similarity_by_hand():
    W = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]])
    unit = W / np.linalg.norm(W, axis=1, keepdims=True)
    S = unit @ unit.T                                   # cosines: [[1, .707, 0], [.707, 1, -.707], [0, -.707, 1]]
    expected = np.array([[1.0, S[0, 1] / 1.0, 0.0],
                         [(S[1, 0] - S[1, 2]) / (1 - S[1, 2]), 1.0, 0.0],
                         [(0 - S[2, 1]) / (1 - S[2, 1]), 0.0, 1.0]])
    assert_allclose(class_similarity(W), expected, atol=1e-12)
    assert_allclose(dirichlet_concentration(expected[0], 0.1), 0.1 * np.array([1.0, S[0, 1], 1e-3]))
    with pytest.raises(ValueError, match="all-zero rows"):
        class_similarity(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_beta_changes_the_target_distributions(digits_teacher):
    """The two betas give measurably different targets: beta = 0.1 concentrates the mass
    (high max-probability, low entropy), beta = 1.0 spreads it."""
    di = DataImpressions(digits_teacher, n_per_class=400, betas=(1.0, 0.1), random_state=0)
    Y, _, row_beta = di.targets()
    entropy = -(Y * np.log(np.clip(Y, 1e-300, None))).sum(axis=1)
    wide, peaked = row_beta == 1.0, row_beta == 0.1
    assert Y[peaked].max(axis=1).mean() >= Y[wide].max(axis=1).mean() + 0.2
    assert entropy[wide].mean() >= entropy[peaked].mean() + 0.5
    assert_allclose(Y.sum(axis=1), 1.0)
    # beta = 1 targets follow the class similarity: mean target of class k ~ c_k / sum(c_k)
    for k in range(10):
        c = np.maximum(di.similarity_[k], 1e-3)
        rows = wide & (di.targets()[1] == k)
        assert_allclose(Y[rows].mean(axis=0), c / c.sum(), atol=0.05)


def test_data_impressions_cover_every_class(digits, digits_teacher):
    X, _, Q, yq = digits
    model = digits_teacher.model
    before = [(p.detach().clone(), None if p.grad is None else p.grad.clone()) for p in model.parameters()]
    di = DataImpressions(digits_teacher, n_per_class=12, steps=60, lr=0.05, input_range=(0.0, 16.0),
                         random_state=0)
    Xi, Yi = di.generate()
    assert Xi.shape == (120, 64) and Xi.dtype == np.float32 and Yi.shape == (120, 10)
    assert Xi.min() >= 0.0 and Xi.max() <= 16.0
    assert di.weights_source_ == "head" and di.loss_.shape == (120,)
    teacher_class = digits_teacher.logits(Xi).argmax(1)
    assert set(teacher_class.tolist()) == set(range(10)), np.bincount(teacher_class, minlength=10)
    assert np.mean(teacher_class == Yi.argmax(1)) >= 0.9          # the optimisation reached its targets
    assert di.target_agreement_ == np.mean(teacher_class == Yi.argmax(1))
    for p, (p0, g0) in zip(model.parameters(), before, strict=True):     # frozen, and left as found
        assert torch.equal(p, p0) and p.requires_grad
        assert (p.grad is None) if g0 is None else torch.equal(p.grad, g0)
    # beta = 0.1 impressions: the teacher is more confident on them at the tempered softmax
    tempered = digits_teacher.soft_labels(Xi, 20.0).max(axis=1)
    assert tempered[di.row_beta_ == 0.1].mean() > tempered[di.row_beta_ == 1.0].mean()


@pytest.mark.filterwarnings("ignore:the teacher assigns only")     # 3 steps: not converged, as intended
def test_data_impressions_need_a_torch_teacher_with_a_linear_layer():
    with pytest.raises(TypeError, match="TorchTeacher"):
        DataImpressions(CallableTeacher(logits=lambda X: X), n_per_class=2)

    class NoLinear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.W = torch.nn.Parameter(torch.randn(4, 3))

        def forward(self, x):
            return x @ self.W

    with pytest.raises(ValueError, match="no torch.nn.Linear"):
        DataImpressions(TorchTeacher(NoLinear()), n_per_class=2)
    di = DataImpressions(TorchTeacher(NoLinear()), n_per_class=2, weights=np.eye(3) + 0.1, n_features=4, steps=3)
    X, Y = di.generate()
    assert X.shape == (6, 4) and di.weights_source_ == "weights="
    with pytest.raises(ValueError, match="logits of shape"):
        DataImpressions(TorchTeacher(NoLinear()), n_per_class=2, weights=np.eye(5) + 0.1, n_features=4,
                        steps=1).generate()


def test_dirichlet_mixup_makes_convex_combinations(rng):
    out = DirichletMixup(n_rows=3)(np.eye(6), rng)                  # row j of eye(6) marks source row j
    assert out.shape == (6, 6) and (out >= 0).all()
    assert_allclose(out.sum(axis=1), 1.0)
    assert ((out > 0).sum(axis=1) <= 3).all()
    column = np.arange(40.0).reshape(40, 1)
    even = DirichletMixup(n_rows=4, alpha=1e6)(column, np.random.default_rng(1))
    idx = np.random.default_rng(1).integers(0, 40, size=(40, 4))        # the same draws: equal weights
    assert_allclose(even[:, 0], column[idx, 0].mean(axis=1), rtol=1e-2)
    assert repr(pickle.loads(pickle.dumps(DirichletMixup(8)))) == "DirichletMixup(n_rows=8, alpha=1.0)"
    with pytest.raises(ValueError, match="n_rows"):
        DirichletMixup(n_rows=1)


def test_augment_copies_stack_independent_draws():
    xb = np.zeros((5, 3))
    one = make_augmenter("noise", 0.5)(xb, np.random.default_rng(0))
    three = make_augmenter("noise", 0.5, copies=3)(xb, np.random.default_rng(0))
    assert one.shape == (5, 3) and three.shape == (15, 3)
    assert_allclose(three[:5], one)                             # the first copy is the one-copy draw
    assert not np.allclose(three[5:10], three[:5])              # the others are fresh draws
    calls = []
    make_augmenter(lambda b, rng: calls.append(len(b)) or b + 1, 0.0, copies=2)(xb, np.random.default_rng(0))
    assert calls == [5, 5]
    with pytest.raises(ValueError, match="copies"):
        make_augmenter("noise", 0.5, copies=0)


def test_tree_distiller_feeds_every_copy_to_the_tree(digits, digits_teacher):
    # The tree's training loop sees (1 + copies) x batch rows per step; every extra row is labelled
    # by the teacher, so the counts of teacher calls tell how many rows went in.
    X = digits[0][:256]
    seen = []

    class Counting:
        def __init__(self, teacher):
            self.teacher = teacher

        def embed(self, Z):
            return self.teacher.embed(Z)

        def soft_labels(self, Z, temperature=1.0):
            seen.append(len(Z))
            return self.teacher.soft_labels(Z, temperature)

    tree = SoftDecisionTreeClassifier(depth=2, max_epochs=1, batch_size=64, random_state=0)
    dist = TreeDistiller(Counting(digits_teacher), tree=tree, augment="noise", augment_copies=3, temperature=1.0,
                         validation_fraction=0.0).fit(X)
    # the teacher's labels of all rows (fidelity), of the training rows (targets), then the copies
    assert seen[:2] == [256, 256] and seen[2:] == [3 * 64] * 4
    assert dist.student_.meta["augment_copies"] == 3
    with pytest.raises(ValueError, match="augment_copies"):
        TreeDistiller(digits_teacher, tree=tree, augment="noise", augment_copies=0).fit(X)


def test_data_impressions_warn_when_they_have_not_converged(digits_teacher):
    # One step from uniform noise: the teacher puts most rows in one or two classes, far from
    # the Dirichlet targets' classes, and generate() says so rather than returning them silently.
    di = DataImpressions(digits_teacher, n_per_class=10, steps=1, lr=1e-4, input_range=(0.0, 16.0),
                         random_state=0)
    with pytest.warns(UserWarning, match="did not reach the targets"):
        Xi, Yi = di.generate()
    agreement = np.mean(digits_teacher.logits(Xi).argmax(1) == Yi.argmax(1))
    assert di.target_agreement_ == agreement < 0.5


def test_unfitted_tree_distiller_raises_not_fitted(tmp_path):
    from sklearn.exceptions import NotFittedError

    dist = TreeDistiller()
    for call in (dist.predict, dist.predict_proba, dist.explain, dist.fidelity):
        with pytest.raises(NotFittedError):
            call(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        dist.to_student()
    with pytest.raises(NotFittedError):
        dist.plot_tree(tmp_path / "tree.png")
