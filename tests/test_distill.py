"""Teachers, NNDistiller and the Student artifact."""

import json

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_blobs

from nnkd.condense import holdout_bound
from nnkd.distill import NNDistiller
from nnkd.student import ProjectionStudent, PrototypeStudent, load_student
from nnkd.teachers import CallableTeacher, TorchTeacher, softmax


class TinyNet(torch.nn.Module):
    def __init__(self, d=4, h=6, L=3):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.Tanh(), torch.nn.Dropout(0.5))
        self.head = torch.nn.Linear(h, L)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.fixture
def rows(rng):
    return rng.normal(size=(37, 4)).astype(np.float32)


def test_torch_teacher_logits_soft_labels_and_embedding(rows):
    net = TinyNet()
    teacher = TorchTeacher(net, embedding="body.1", batch_size=5, temperature=2.0)
    net.eval()
    with torch.no_grad():
        ref_logits = net(torch.from_numpy(rows)).numpy()
        ref_embed = torch.tanh(net.body[0](torch.from_numpy(rows))).numpy()
    # Batches of 5 against one batch of 37: torch may take another GEMM kernel for each shape,
    # so equal up to float32 rounding (dropout left on or a wrong batch would differ by ~0.1).
    close = {"rtol": 1e-5, "atol": 1e-6}
    assert_allclose(teacher.logits(rows), ref_logits, **close)          # batched, eval mode (no dropout)
    assert_allclose(teacher.embed(rows), ref_embed, **close)
    expected = torch.softmax(torch.from_numpy(ref_logits) / 2.0, dim=1).numpy()
    assert_allclose(teacher.soft_labels(rows), expected, rtol=1e-5)
    assert_allclose(teacher.soft_labels(rows, 1.0).sum(axis=1), 1.0)
    net.train()                                                         # the teacher puts it back in eval
    assert_allclose(teacher.logits(rows), ref_logits, **close)


def test_torchscript_teacher(tmp_path, rows):
    net = TinyNet().eval()
    path = tmp_path / "teacher.pt"
    torch.jit.script(net).save(str(path))
    assert_allclose(TorchTeacher.from_torchscript(path).logits(rows), TorchTeacher(net).logits(rows), rtol=1e-6)


class ExportingNet(TinyNet):
    @torch.jit.export
    def features(self, x):
        return self.body(x)


def test_torchscript_teacher_embeds_by_an_exported_method_and_pickles(rows):
    import pickle

    net = ExportingNet().eval()
    eager = TorchTeacher(net, embedding="body")
    scripted = TorchTeacher(torch.jit.script(net), embedding="features")
    assert_allclose(scripted.embed(rows), eager.embed(rows), rtol=1e-6)
    assert_allclose(TorchTeacher(net, embedding="features").embed(rows), eager.embed(rows), rtol=1e-6)
    # Dask ships teachers by pickle; a TorchScript module travels as its archive.
    copy = pickle.loads(pickle.dumps(scripted))
    assert isinstance(copy.model, torch.jit.ScriptModule)
    assert_allclose(copy.embed(rows), scripted.embed(rows), rtol=0)
    assert_allclose(copy.soft_labels(rows, 2.0), scripted.soft_labels(rows, 2.0), rtol=0)
    with pytest.raises(ValueError, match="TorchScript runs no forward hooks"):
        TorchTeacher(torch.jit.script(net), embedding="body")


@pytest.mark.parametrize("make, error, match", [
    (lambda: TorchTeacher(TinyNet(), embedding="nope"), ValueError, "no submodule"),
    (lambda: TorchTeacher(TinyNet(), embedding="__class__"), ValueError, "no submodule"),
    (lambda: TorchTeacher("model"), TypeError, "torch.nn.Module"),
    (lambda: CallableTeacher(logits=3), TypeError, "callables"),
])
def test_bad_teacher_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("fn, match", [
    (lambda X: np.zeros((len(X) + 1, 3)), "expected"),
    (lambda X: np.full((len(X), 3), np.nan), "NaN"),
])
def test_bad_teacher_outputs_are_clear_errors(rows, fn, match):
    with pytest.raises(ValueError, match=match):
        CallableTeacher(logits=fn).soft_labels(rows)
    with pytest.raises(ValueError, match="no embed"):
        CallableTeacher(logits=fn).embed(rows)


def test_softmax_is_stable():
    p = softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    assert_allclose(p, [[1.0, 0.0], [0.5, 0.5]])


# -- distillation ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def problem():
    X, y = make_blobs(900, n_features=6, centers=[[0] * 6, [6] * 6, [0, 6, 0, 6, 0, 6]], cluster_std=1.0,
                      random_state=0)
    X = X.astype(np.float32)
    centers = np.array([[0] * 6, [6] * 6, [0, 6, 0, 6, 0, 6]], dtype=np.float32)
    # The teacher: nearest-centre logits (a known answer), embedding = distances to the centres.
    dists = lambda Z: np.linalg.norm(Z[:, None, :] - centers[None], axis=2)
    teacher = CallableTeacher(logits=lambda Z: -dists(Z), embed=dists)
    return X[:700], y[:700], X[700:], y[700:], teacher


@pytest.mark.parametrize("space", ["input", "teacher", "projection"])
def test_distiller_recovers_a_known_teacher(problem, space):
    X, y, Q, yq, teacher = problem
    dist = NNDistiller(teacher, space=space, size_budget_kb=2, max_epochs=30, temperature=2.0, random_state=0).fit(X, y)
    assert dist.size_bytes_ <= 2000
    assert dist.fidelity(Q) >= 0.98 and dist.score(Q, yq) >= 0.97
    proba = dist.predict_proba(Q)
    assert proba.shape == (200, 3) and np.allclose(proba.sum(axis=1), 1.0)
    if space != "projection":
        assert np.isfinite(dist.bound_) and 0 < dist.bound_
        # each prototype's distribution is the mean teacher distribution of its cell
        s = dist.student_
        T = teacher.soft_labels(X, 2.0)
        for j in range(len(s.support)):
            members = s.cell_indices[s.cell_indptr[j]:s.cell_indptr[j + 1]]
            if len(members):
                assert_allclose(s.label_vectors[j], T[members].mean(axis=0), rtol=1e-5)
    else:
        assert dist.bound_kind_ == "held-out" and 1 - dist.score(Q, yq) <= dist.bound_ < 1
        assert dist.student_.projection.shape[1] == 6


def test_explain_names_prototypes_and_their_training_rows(problem):
    X, y, Q, _, teacher = problem
    dist = NNDistiller(teacher, space="input", size_budget_kb=2, random_state=0).fit(X, y)
    out = dist.explain(Q[:4], k=2)
    assert len(out) == 4 and all(len(o["prototypes"]) == 2 for o in out)
    first = out[0]["prototypes"][0]
    assert first["distance"] <= out[0]["prototypes"][1]["distance"]
    assert first["support_row"] in first["training_rows"] or first["training_rows"] == []
    assert {r for o in out for p in o["prototypes"] for r in p["training_rows"]} <= set(range(len(X)))
    cells = dist.student_.cell_indices
    assert sorted(cells.tolist()) == list(range(len(X)))                # every row is in exactly one cell


@pytest.mark.parametrize("space", ["input", "projection"])
def test_student_round_trip_without_teacher(problem, tmp_path, space):
    X, y, Q, _, teacher = problem
    dist = NNDistiller(teacher, space=space, size_budget_kb=2, max_epochs=10, random_state=0).fit(X, y)
    path = dist.student_.save(tmp_path / "student")
    loaded = load_student(path)
    assert_array_equal(loaded.predict(Q), dist.predict(Q))
    assert_allclose(loaded.predict_proba(Q), dist.predict_proba(Q), rtol=1e-6)
    assert loaded.size_bytes == dist.size_bytes_
    meta = json.loads((path / "student.json").read_text())
    assert meta["format_version"] == 2 and meta["space"] == space
    data = bytearray((path / "arrays.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "arrays.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        load_student(path)


def test_student_with_string_classes(problem, tmp_path):
    X, y, Q, _, teacher = problem
    names = np.array(["cat", "dog", "emu"])
    dist = NNDistiller(teacher, size_budget_kb=2, random_state=0).fit(X, names[y])
    loaded = load_student(dist.student_.save(tmp_path / "s"))
    assert set(loaded.predict(Q)) <= set(names) and loaded.classes.tolist() == names.tolist()


def test_noise_and_mixup_augmentation_run(problem):
    X, y, Q, yq, teacher = problem
    for augment in ("noise", "mixup", lambda xb, rng: xb[::-1]):
        d = NNDistiller(teacher, space="projection", size_budget_kb=2, max_epochs=5, augment=augment, random_state=0).fit(X, y)
        assert d.score(Q, yq) > 0.9


@pytest.mark.parametrize("kwargs, fit_y, error, match", [
    ({"teacher": None}, None, TypeError, "teacher"),
    ({"size_budget_kb": 0.01}, None, ValueError, "cannot hold"),
    ({"space": "projection", "size_budget_kb": 0.1}, None, ValueError, "leaves room"),
    ({}, "two_classes", ValueError, "3 outputs but y has 2 classes"),
])
def test_bad_distiller_input(problem, kwargs, fit_y, error, match):
    X, y, _, _, teacher = problem
    params = {"teacher": teacher, **kwargs}
    yy = None if fit_y is None else (y > 0).astype(int)
    with pytest.raises(error, match=match):
        NNDistiller(**params, random_state=0).fit(X, yy)


def test_nan_embeddings_are_rejected(problem):
    X, y, _, _, _ = problem
    bad = CallableTeacher(logits=lambda Z: Z[:, :3], embed=lambda Z: np.full((len(Z), 2), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        NNDistiller(bad, space="teacher", random_state=0).fit(X, y)


def test_student_validates_its_arrays():
    with pytest.raises(ValueError, match="label_vectors"):
        PrototypeStudent(classes=np.arange(2), prototypes=np.zeros((3, 2)), label_vectors=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="gamma"):
        ProjectionStudent(classes=np.arange(2), prototypes=np.zeros((3, 2)), label_vectors=np.zeros((3, 2)),
                          projection=np.eye(2), gamma=0.0)


# -- SLaM ----------------------------------------------------------------------------------------
def test_slam_mix_by_hand():
    from nnkd.distill import slam_mix

    f = torch.tensor([[0.7, 0.2, 0.1]])
    t = torch.tensor([[0.6, 0.3, 0.1]])
    mixed = slam_mix(f, t, torch.tensor([0.8]), torch.tensor([2]))
    assert_allclose(mixed.numpy(), [[0.8 * 0.7 + 0.2 * 0.3, 0.8 * 0.2 + 0.2 * 0.8, 0.8 * 0.1]], rtol=1e-6)
    mixed = slam_mix(f, t, torch.tensor([0.8]), torch.tensor([3]), normalize=True)
    assert_allclose(mixed.numpy(), [[0.56 + 0.2 * 0.3 / 2, 0.16 + 0.2 * 0.8 / 2, 0.08 + 0.2 * 0.9 / 2]], rtol=1e-6)


def test_slam_estimates_follow_the_teachers_margin():
    from nnkd.distill import slam_estimates

    rng = np.random.default_rng(0)
    n, L = 2000, 4
    y = rng.integers(0, L, n)
    confident = rng.random(n) < 0.5
    T = np.full((n, L), 0.1)
    right = np.where(confident, y, np.where(rng.random(n) < 0.5, y, (y + 1) % L))   # 100% vs 50% correct
    T[np.arange(n), right] = np.where(confident, 0.7, 0.4)
    second = np.where(right == y, (y + 2) % L, y)          # a wrong top-1 has the truth second
    T[np.arange(n), second] = np.where(confident, 0.1, 0.4 - 1e-3)
    T /= T.sum(1, keepdims=True)
    alpha, k = slam_estimates(T, y, T)
    assert alpha[confident].mean() == pytest.approx(1.0, abs=0.02)
    assert alpha[~confident].mean() == pytest.approx(0.5, abs=0.06)
    # the true label is top-1 on 75% of rows and within the top 2 on 100%
    assert set(k.tolist()) == {2}
    assert set(slam_estimates(T, y, T, coverage=0.7)[1].tolist()) == {1}


def test_distiller_with_slam_on_a_noisy_teacher(problem):
    X, y, Q, yq, _ = problem
    centers = np.array([[0] * 6, [6] * 6, [0, 6, 0, 6, 0, 6]], dtype=np.float32)

    def noisy_logits(Z):                     # right everywhere but on one side of class 0, unsure there
        logits = -np.linalg.norm(Z[:, None, :] - centers[None], axis=2)
        flip = Z[:, 0] < -1.0
        logits[flip, 1] = logits[flip, 0] + 0.1
        return logits
    teacher = CallableTeacher(logits=noisy_logits)
    y_semi = np.full(len(y), -1)
    y_semi[:150] = y[:150]                   # a small labelled validation subset
    dist = NNDistiller(teacher, space="projection", loss="slam", temperature=1.0, size_budget_kb=2,
                       max_epochs=30, random_state=0).fit(X, y_semi)
    assert dist.score(Q, yq) >= 0.9 and list(dist.classes_) == [0, 1, 2]
    with pytest.raises(ValueError, match="loss='slam' needs"):
        NNDistiller(teacher, space="input", loss="slam", random_state=0).fit(X, y_semi)
    with pytest.raises(ValueError, match="loss='slam' needs"):
        NNDistiller(teacher, space="projection", loss="slam", random_state=0).fit(X)


def test_train_mlp_teacher(problem):
    from nnkd.teachers import train_mlp_teacher

    X, y, Q, yq, _ = problem
    teacher = train_mlp_teacher(X, y, hidden=(16, 8), epochs=30, dropout=0.2, input_noise=0.1, random_state=0)
    assert np.mean(teacher.logits(Q).argmax(1) == yq) > 0.95
    assert teacher.embed(Q).shape == (len(Q), 8)                    # the last hidden layer
    with pytest.raises(ValueError, match="class code"):
        train_mlp_teacher(X, y.astype(float))
    with pytest.raises(ValueError, match="dropout"):
        train_mlp_teacher(X, y, dropout=1.0)


def test_recipe_is_chosen_on_held_out_rows_and_scored_as_shipped(problem):
    from nnkd.distill._recipe import N_CHECKPOINTS, make_grid

    X, y, Q, yq, teacher = problem
    d = NNDistiller(teacher, space="projection", size_budget_kb=2, max_epochs=12, random_state=0).fit(X)
    recipe = d.recipe_
    tried = recipe["candidates"]
    # every storage type, width and (temperature, noise) pair of its stage was tried
    assert {c["dtype"] for c in tried} == {"float32", "float16", "int8"}
    assert {(c["temperature"], c["noise_scale"]) for c in tried} >= {(1.0, 0.3), (1.0, 1.0), (4.0, 0.3), (4.0, 1.0)}
    # the student has the chosen shape and is within the budget at its storage type
    s = d.student_
    assert s.dtype == recipe["dtype"] and s.prototypes.shape == (recipe["n_prototypes"], recipe["projection_dim"])
    assert d.size_bytes_ <= 2000 and s.meta["recipe"]["dtype"] == recipe["dtype"]
    # the reported held-out fidelity is the student's agreement with the teacher on the held-out
    # rows, recounted here from the seeded split
    n_val = recipe["validation_rows"]
    assert n_val == round(0.1 * len(X))
    val = np.sort(np.random.default_rng(d._seed).permutation(len(X))[:n_val])
    agree = np.mean(s.predict(X[val]) == teacher.soft_labels(X[val], 1.0).argmax(1))
    assert recipe["validation_fidelity"] == pytest.approx(agree)
    # unlabelled fit: a fidelity certificate, union over every recipe x checkpoint
    grid = make_grid(dtype="auto", projection_dim="auto", temperature="auto", noise_scale="auto", augment="noise",
                     loss="kd", has_budget=True, n_features=X.shape[1])
    k = grid.size() * min(N_CHECKPOINTS, 12)
    errors = int(round((1 - agree) * n_val))
    assert d.bound_kind_ == "held-out" and d.bound_target_ == "teacher"
    assert d.bound_ == pytest.approx(holdout_bound(errors, n_val, 0.05, k))
    assert s.describe()["bound_kind"] == "held-out" and s.meta["bound_candidates"] == k


def test_fixed_parameters_are_not_searched(problem):
    X, y, Q, yq, teacher = problem
    d = NNDistiller(teacher, space="projection", size_budget_kb=2, max_epochs=6, dtype="float16", projection_dim=4,
                    temperature=2.0, noise_scale=0.5, random_state=0).fit(X, y)
    assert d.recipe_["candidates"] == []
    assert (d.recipe_["dtype"], d.recipe_["projection_dim"], d.recipe_["temperature"],
            d.recipe_["noise_scale"]) == ("float16", 4, 2.0, 0.5)
    # labelled rows: the bound is on the error against y, union over the 6 checkpoints only
    assert d.bound_target_ == "labels" and d.student_.meta["bound_candidates"] == 6


def test_no_holdout_no_selection_and_no_bound(problem):
    X, y, Q, yq, teacher = problem
    d = NNDistiller(teacher, space="projection", size_budget_kb=2, max_epochs=4, validation_fraction=0.0,
                    random_state=0).fit(X, y)
    assert d.recipe_["candidates"] == [] and d.recipe_["validation_rows"] == 0
    assert d.bound_ is None and d.bound_kind_ is None and d.recipe_["epochs"] == 4


def test_held_out_bounds_cover_the_test_error(problem):
    # The bound states P[true error > bound] <= delta; on fresh test rows the measured error
    # must sit below it (a bound that fails here would be wrong, not merely loose).
    X, y, Q, yq, teacher = problem
    for seed in range(3):
        d = NNDistiller(teacher, space="projection", size_budget_kb=2, max_epochs=8, random_state=seed).fit(X, y)
        assert 1 - d.score(Q, yq) <= d.bound_ < 1


def test_float16_students_halve_the_size(problem, tmp_path):
    X, y, Q, yq, teacher = problem
    common = {"space": "projection", "temperature": 2.0, "max_epochs": 30, "size_budget_kb": 2, "noise_scale": 0.3,
              "projection_dim": None}
    full = NNDistiller(teacher, dtype="float32", **common, random_state=0).fit(X, y)
    half = NNDistiller(teacher, dtype="float16", **common, random_state=0).fit(X, y)
    assert half.size_bytes_ <= 2000 and full.size_bytes_ <= 2000
    assert half.score(Q, yq) >= 0.97
    # The same budget holds (about) twice the prototypes at 2 bytes per parameter.
    assert len(half.prototypes_) >= 2 * len(full.prototypes_)
    params = half.student_.prototypes.size + half.student_.label_vectors.size + half.student_.projection.size
    assert half.size_bytes_ == 2 * params + 4                # gamma is stored at full precision
    # Parameters are float16 values; saving and loading changes no prediction.
    np.testing.assert_array_equal(half.student_.prototypes.astype(np.float16).astype(np.float32),
                                  half.student_.prototypes)
    path = half.student_.save(tmp_path / "s")
    with np.load(path / "arrays.npz") as arrays:
        assert arrays["prototypes"].dtype == np.float16
    loaded = load_student(path)
    assert loaded.dtype == "float16" and loaded.size_bytes == half.size_bytes_
    np.testing.assert_array_equal(loaded.predict_proba(X), half.student_.predict_proba(X))
