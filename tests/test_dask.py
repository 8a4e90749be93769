"""Dask: sharded search, partition-and-merge condensing, bulk prediction, teacher labelling.

Oracles: one in-memory index, NumPy brute force, the compression bound's formula. The
cluster tests start and stop their own LocalCluster (2 worker processes on 127.0.0.1).
"""

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="the nnkd[dask] extra is not installed")
distributed = pytest.importorskip("distributed", reason="the nnkd[dask] extra is not installed")

from nnkd import MarginCondensedNN  # noqa: E402
from nnkd._core.partitions import read_npy_lazily  # noqa: E402
from nnkd.condense import compression_bound, holdout_bound  # noqa: E402
from nnkd.index import make_index  # noqa: E402
from nnkd.teachers import CallableTeacher  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, protocol="tcp")
    with cluster, distributed.Client(cluster) as c:
        yield c


def blobs(n=3000, d=5, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(classes, d))
    y = rng.integers(0, classes, size=n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


def tied_points(n, d, seed):
    # Small integer grids: many exact ties in distance, decided by row number.
    return np.random.default_rng(seed).integers(0, 4, size=(n, d)).astype(np.float32) + 0.5


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "manhattan"])
@pytest.mark.parametrize("on_cluster", [False, True])
def test_sharded_exact_search_equals_one_index(metric, on_cluster, request):
    if on_cluster:
        request.getfixturevalue("client")
    X, Q = tied_points(2500, 6, 0), tied_points(150, 6, 1)
    ref_d, ref_i = make_index("exact", metric=metric).fit(X).query(Q, 12)
    sharded = make_index("exact", metric=metric).fit(da.from_array(X, chunks=(600, 3)))
    got_d, got_i = sharded.query(Q, 12)
    assert len(sharded) == X.shape[0] and sharded.dim == X.shape[1]
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_array_equal(got_d, ref_d)


def test_sharded_index_k_larger_than_a_shard_and_errors():
    X = tied_points(50, 3, 2)
    sharded = make_index("exact").fit(da.from_array(X, chunks=(7, 3)))
    ref = make_index("exact").fit(X).query(X[:5], 30)
    np.testing.assert_array_equal(sharded.query(X[:5], 30)[1], ref[1])
    with pytest.raises(ValueError, match="features"):
        sharded.query(np.zeros((2, 4)), 3)
    with pytest.raises(ValueError, match="k="):
        sharded.query(X[:2], 51)
    with pytest.raises(ValueError, match="sharded"):
        sharded.save("unused")


def brute_nearest(Q, P):
    d2 = ((Q[:, None, :].astype(np.float64) - P[None, :, :]) ** 2).sum(-1)
    return np.sqrt(d2.min(axis=1)), d2.argmin(axis=1)


def farthest_first(X, start, m):
    """NumPy oracle: farthest-first order (ties: the smallest row), squared euclidean."""
    d = ((X.astype(np.float64) - X[start]) ** 2).sum(axis=1)
    order = [start]
    for _ in range(m - 1):
        d[order] = -1.0
        order.append(int(np.argmax(d)))
        d = np.minimum(d, ((X.astype(np.float64) - X[order[-1]]) ** 2).sum(axis=1))
    return np.array(order)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine"])
@pytest.mark.parametrize("chunks, candidates", [(5000, 128), (1700, 128), (900, 3), (611, 1)])
def test_partitioned_ksu_is_the_one_process_fit_for_every_partitioning(metric, chunks, candidates, monkeypatch):
    from nnkd.condense import greedy_permutation, traversal
    from nnkd.condense.ksu import start_row

    # Few listed candidates force many rounds and rounds that end on the certificate.
    monkeypatch.setattr(traversal, "CANDIDATES", candidates)
    X, y = blobs(5000, 4, 3, seed=3)
    Xd, yd = da.from_array(X, chunks=(chunks, 4)), da.from_array(y, chunks=chunks)
    clf = MarginCondensedNN(selection="bound", max_prototypes=300, metric=metric).fit(Xd, yd)
    one = MarginCondensedNN(selection="bound", max_prototypes=300, metric=metric).fit(X, y)
    np.testing.assert_array_equal(clf.support_, one.support_)
    np.testing.assert_array_equal(clf.prototypes_, X[clf.support_])
    assert clf.bound_ == pytest.approx(one.bound_) and clf.training_error_ == pytest.approx(one.training_error_)
    assert clf.scale_ == pytest.approx(one.scale_, rel=1e-6)
    # The whole curve: the one-process permutation's training errors at every prefix size.
    from nnkd._core.metrics import as_points
    Xw = as_points(X, metric)
    net = greedy_permutation(Xw, metric="euclidean" if metric == "cosine" else metric, start=start_row(Xw),
                             max_prototypes=300, labels=y)
    np.testing.assert_array_equal(clf.selection_curve_["train_errors"], net.train_errors)
    np.testing.assert_array_equal(clf.support_, net.order[:len(clf.support_)])


@pytest.mark.parametrize("candidates", [128, 2])
def test_partitioned_ksu_breaks_ties_by_row_as_a_brute_force_traversal(candidates, monkeypatch):
    from nnkd.condense import traversal

    monkeypatch.setattr(traversal, "CANDIDATES", candidates)
    X = tied_points(1200, 3, 7)                 # 64 distinct points: ties everywhere, duplicates too
    y = (X.sum(axis=1) > 6).astype(np.int64)
    clf = MarginCondensedNN(selection="bound", target_size=150).fit(
        da.from_array(X, chunks=(250, 3)), da.from_array(y, chunks=250))
    d = ((X.astype(np.float64) - X.mean(axis=0)) ** 2).sum(axis=1)
    np.testing.assert_array_equal(clf.support_, farthest_first(X, int(np.argmax(d)), 150))


@pytest.mark.parametrize("selection", ["validation", "auto"])
def test_partitioned_ksu_with_held_out_rows(client, selection):
    X, y = blobs(4000, 4, 3, seed=3)
    clf = MarginCondensedNN(selection=selection, random_state=0).fit(
        da.from_array(X, chunks=(900, 4)), da.from_array(y, chunks=900))
    dist, nearest = brute_nearest(X, clf.prototypes_)
    assert clf.selection_ in ("bound", "validation")
    curve = clf.selection_curve_
    held = curve["n_held_out"]
    assert 0.1 * len(y) < held < 0.3 * len(y)   # validation_fraction=0.2 of the rows
    assert np.all(curve["valid_errors"] <= held) and curve["valid_errors"].shape == curve["m"].shape
    if clf.selection_ == "bound":
        assert len(clf.support_) == curve["m"][np.argmin(curve["bound"])]
    assert clf.scale_ == pytest.approx(dist.max(), rel=1e-5)
    np.testing.assert_array_equal(clf.prototypes_, X[clf.support_])
    # Labels are cell majorities over all rows; the error and bound follow from them.
    labels = clf.prototype_labels_[nearest]
    counts = np.zeros((len(clf.support_), 3))
    np.add.at(counts, (nearest, y), 1)
    np.testing.assert_array_equal(clf.prototype_labels_, counts.argmax(axis=1))
    assert clf.training_error_ == pytest.approx(np.mean(labels != y))
    k = len(clf.support_)
    assert clf.bound_ == pytest.approx(min(1.0, compression_bound(len(y), clf.training_error_, 2 * k, 0.05)))
    np.testing.assert_array_equal(clf.predict(X), labels)


@pytest.mark.parametrize("method, on_cluster", [("hart", False), ("fcnn", False), ("hart", True)])
def test_partitioned_consistent_methods_are_consistent_on_every_row(method, on_cluster, request):
    if on_cluster:
        request.getfixturevalue("client")
    X, y = blobs(3000, 3, 4, seed=4)
    clf = MarginCondensedNN(method, random_state=0).fit(da.from_array(X, chunks=(800, 3)), y)
    # Like a single-process store, the merged and repaired one labels every training row
    # right by 1-NN over the prototypes' own labels (brute force oracle).
    _, nearest = brute_nearest(X, clf.prototypes_)
    np.testing.assert_array_equal(y[clf.support_][nearest], y)
    np.testing.assert_array_equal(X[clf.support_], clf.prototypes_)
    assert clf.selection_ == "consistent" and clf.training_error_ == 0.0
    # The repair only ever adds rows: the merge of the partition stores is kept. The store
    # condensed again and repaired is taken only when it is smaller.
    sizes, reduced = clf.selection_curve_["repair_sizes"], clf.selection_curve_["reduced_sizes"]
    assert np.all(np.diff(sizes) > 0) and np.all(np.diff(reduced) > 0) and reduced.size > 0
    assert len(clf.support_) == (reduced[-1] if reduced[-1] < sizes[-1] else sizes[-1])


def test_verbose_partitioned_fit_draws_client_bars_and_equals_the_quiet_fit(client, capsys):
    X, y = blobs(3000, 3, 4, seed=4)
    Xd = da.from_array(X, chunks=(800, 3))
    quiet = MarginCondensedNN("hart", random_state=0).fit(Xd, y)
    capsys.readouterr()
    loud = MarginCondensedNN("hart", random_state=0, verbose=True).fit(Xd, y)
    out = capsys.readouterr()
    # Futures counted as they finish give what one dask.compute gives, in the tasks' order.
    np.testing.assert_array_equal(loud.support_, quiet.support_)
    np.testing.assert_array_equal(loud.selection_curve_["repair_sizes"], quiet.selection_curve_["repair_sizes"])
    assert out.out == ""                                  # nothing on stdout
    for bar in ("hart partition stores", "repair passes", "scoring partitions"):
        assert bar in out.err


@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
def test_repair_pass_searching_the_added_prototypes_equals_a_search_of_the_whole_store(metric):
    # The repair keeps each row's nearest prototype between passes and searches only the
    # prototypes a round added: after two rounds, the state equals one brute-force search
    # over the grown store, ties (integer grids) going to the earlier prototype.
    from scipy.spatial.distance import cdist

    from nnkd.condense.methods import CondenseSettings
    from nnkd.condense.partitioned import _nearest_labels

    X, P = tied_points(500, 3, seed=1), tied_points(60, 3, seed=2)
    classes = np.arange(3)
    y, codes = np.random.default_rng(3).integers(0, 3, 500), np.random.default_rng(4).integers(0, 3, 60)
    settings = CondenseSettings(method="hart")
    state, _ = _nearest_labels(X, y, classes, None, P[:25], codes[:25], settings, metric)
    state, (wrong_X, wrong_codes, wrong) = _nearest_labels(X, y, classes, state, P[25:], codes[25:],
                                                           settings, metric)
    D = cdist(X.astype(np.float64), P.astype(np.float64), "cityblock" if metric == "manhattan" else "sqeuclidean")
    nearest = np.argmin(D, axis=1)          # first of the tied minima
    assert (D == D.min(axis=1, keepdims=True)).sum(axis=1).max() > 1       # ties do occur
    np.testing.assert_allclose(state[0], D.min(axis=1))
    np.testing.assert_array_equal(state[1], codes[nearest])
    np.testing.assert_array_equal(wrong, np.flatnonzero(codes[nearest] != y))
    np.testing.assert_array_equal(wrong_X, X[wrong])
    np.testing.assert_array_equal(wrong_codes, y[wrong])


@pytest.mark.parametrize("method", ["hart", "fcnn"])
def test_partitioned_capped_stores_come_from_the_partition_stores(method):
    X, y = blobs(3000, 3, 4, seed=4)
    clf = MarginCondensedNN(method, random_state=0, max_prototypes=40).fit(da.from_array(X, chunks=(800, 3)), y)
    union = np.concatenate([a + MarginCondensedNN(method, random_state=0, max_prototypes=40)
                            .fit(X[a:a + 800], y[a:a + 800]).support_ for a in range(0, 3000, 800)])
    assert set(clf.support_) <= set(union) and len(clf.support_) <= 40
    # The second pass scores the capped store over all rows (NumPy oracle).
    _, nearest = brute_nearest(X, clf.prototypes_)
    assert clf.training_error_ == np.mean(clf.prototype_labels_[nearest] != y)
    assert clf.selection_curve_["repair_sizes"].tolist() == [len(clf.support_)]


def test_partitioned_fit_rejects_bad_input():
    X, y = blobs(400, 3, 2, seed=5)
    Xd = da.from_array(X, chunks=(100, 3))
    with pytest.raises(ValueError, match="gkn"):
        MarginCondensedNN("gkn").fit(Xd, y)
    with pytest.raises(ValueError, match="rows"):
        MarginCondensedNN().fit(Xd, y[:-1])
    bad = X.copy()
    bad[250, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MarginCondensedNN().fit(da.from_array(bad, chunks=(100, 3)), y)


def test_bulk_prediction_equals_in_memory_prediction(client):
    X, y = blobs(2000, 4, 3, seed=6)
    student = MarginCondensedNN("hart", random_state=0).fit(X, y).to_student()
    Q, _ = blobs(1500, 4, 3, seed=7)
    Qd = da.from_array(Q, chunks=(400, 4))
    pred, proba = student.predict(Qd), student.predict_proba(Qd)
    assert isinstance(pred, da.Array) and isinstance(proba, da.Array)
    np.testing.assert_array_equal(pred.compute(), student.predict(Q))
    np.testing.assert_allclose(proba.compute(), student.predict_proba(Q))


def test_teacher_labelling_over_partitions_equals_in_memory(client):
    W = np.random.default_rng(8).normal(size=(4, 3))
    teacher = CallableTeacher(logits=lambda X: X @ W, embed=lambda X: np.tanh(X))
    X, _ = blobs(1200, 4, 3, seed=9)
    Xd = da.from_array(X, chunks=(500, 4))
    np.testing.assert_allclose(teacher.soft_labels(Xd, 2.0).compute(), teacher.soft_labels(X, 2.0))
    np.testing.assert_allclose(teacher.embed(Xd).compute(), teacher.embed(X))


def test_torchscript_teacher_labels_partitions_on_the_workers(client):
    torch = pytest.importorskip("torch")
    from nnkd.teachers import TorchTeacher

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.body, self.head = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh()), torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.head(self.body(x))

        @torch.jit.export
        def features(self, x):
            return self.body(x)

    teacher = TorchTeacher(torch.jit.script(Net().eval()), embedding="features")
    X, _ = blobs(900, 4, 3, seed=13)
    Xd = da.from_array(X, chunks=(300, 4))
    np.testing.assert_allclose(teacher.soft_labels(Xd, 2.0).compute(), teacher.soft_labels(X, 2.0), rtol=1e-6)
    np.testing.assert_allclose(teacher.embed(Xd).compute(), teacher.embed(X), rtol=1e-6)


def test_read_npy_lazily_reads_partitions_of_the_file(tmp_path):
    X, _ = blobs(1000, 3, 2, seed=10)
    np.save(tmp_path / "x.npy", X.astype(np.float64))
    lazy = read_npy_lazily(tmp_path / "x.npy", rows_per_partition=300)
    assert lazy.chunks[0] == (300, 300, 300, 100)
    np.testing.assert_array_equal(lazy.compute(), X)
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="readable"):
        read_npy_lazily(tmp_path / "bad.npy")


def test_condense_and_predict_files_by_partitions(tmp_path):
    from nnkd.student import load_student
    from nnkd.workflows import condense_file, predict_file

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X, y = blobs(3000, 4, 3, seed=11)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "parts").mkdir()
    for i, a in enumerate(range(0, 3000, 1000)):
        table = pa.table({**{f"f{j}": X[a:a + 1000, j] for j in range(4)}, "label": y[a:a + 1000]})
        pq.write_table(table, tmp_path / "parts" / f"part{i}.parquet")
    summary = condense_file(tmp_path / "X.npy", tmp_path / "out", method="hart", labels=tmp_path / "y.npy",
                            dask="local:2", random_state=0, validation_fraction=0.2)
    assert summary["dask"] == "local:2" and summary["n_train"] == 2400
    student = load_student(tmp_path / "out" / "student")
    assert summary["n_prototypes"] == len(student.prototypes)
    # Predicting a directory of Parquet files by partitions equals predicting in memory.
    result = predict_file(tmp_path / "out" / "student", tmp_path / "parts", tmp_path / "pred.npy", label="label",
                          dask="local:2")
    assert result["n_rows"] == 3000 and result["n_partitions"] == 3
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), student.predict(X))
    with pytest.raises(ValueError, match="--dask"):
        condense_file(tmp_path / "X.npy", tmp_path / "out2", dask="cluster")
    with pytest.raises(ValueError, match="labels"):
        condense_file(tmp_path / "X.npy", tmp_path / "out2", dask="local:1")


@pytest.mark.parametrize("space", ["input", "teacher"])
def test_distiller_on_partitions_against_numpy(client, space):
    from nnkd.distill import NNDistiller

    W = np.random.default_rng(10).normal(size=(3, 4))
    teacher = CallableTeacher(logits=lambda X: X @ W, embed=lambda X: np.tanh(X))
    X, _ = blobs(2400, 3, 4, seed=11)
    dist = NNDistiller(teacher, space=space, random_state=0).fit(da.from_array(X, chunks=(700, 3)))
    student = dist.student_
    T = teacher.soft_labels(X, 1.0)
    hard = T.argmax(axis=1)
    Z = X if space == "input" else np.tanh(X).astype(np.float32)
    np.testing.assert_array_equal(student.prototypes, Z[student.support])
    # Hart (the default condenser) after its repair: 1-NN over the prototypes' own teacher
    # labels reproduces the teacher's label of every row (brute force oracle) ...
    _, nearest = brute_nearest(Z, student.prototypes)
    np.testing.assert_array_equal(hard[student.support][nearest], hard)
    # ... and every prototype carries the mean teacher distribution of its cell.
    means = np.stack([T[nearest == k].mean(axis=0) for k in range(len(student.support))])
    np.testing.assert_allclose(student.label_vectors, means, rtol=1e-5, atol=1e-6)
    pred = np.argmax(student.predict_proba(X if space == "input" else Z), axis=1)
    assert dist.training_fidelity_ == np.mean(pred == hard)
    assert dist.bound_kind_ == "compression" and 0 < dist.bound_ <= 1


@pytest.mark.parametrize("on_cluster", [False, True])
def test_projection_distiller_streams_the_partitions(on_cluster, request):
    pytest.importorskip("torch")
    from nnkd.distill import NNDistiller
    from nnkd.distill._stream import _assignment

    if on_cluster:
        request.getfixturevalue("client")
    W = np.random.default_rng(14).normal(size=(5, 3))
    teacher = CallableTeacher(logits=lambda X: 2.0 * X @ W, embed=lambda X: X)
    X, y = blobs(3000, 5, 3, seed=15)
    Xd = da.from_array(X, chunks=(700, 5))
    # On the cluster the true labels are given (as a dask array): the bound is against them.
    labels = da.from_array(y, chunks=(700,)) if on_cluster else None
    dist = NNDistiller(teacher, space="projection", max_epochs=4, size_budget_kb=4, random_state=0).fit(Xd, labels)
    student = dist.to_student()
    # Which rows were held out, drawn again from the partitions' seeds, as the stream does.
    stream_seed = np.random.default_rng(dist._seed).integers(0, 2**31 - 1, size=len(Xd.chunks[0]))
    train = np.concatenate([_assignment(m, int(s), dist.validation_fraction)
                            for m, s in zip(Xd.chunks[0], stream_seed)])
    held = ~train
    assert 0 < held.sum() < len(X)
    # The bound counts every held-out row, and its errors (NumPy).
    hard = teacher.soft_labels(X, 1.0).argmax(axis=1)
    pred = student.predict(X)
    target = y if on_cluster else hard
    errors = int(np.sum(pred[held] != target[held]))
    assert student.meta["bound_rows"] == held.sum()
    assert dist.bound_target_ == ("labels" if on_cluster else "teacher")
    assert dist.bound_ == pytest.approx(holdout_bound(errors, int(held.sum()), dist.delta,
                                                      student.meta["bound_candidates"]))
    # The cells partition every row by its nearest prototype (brute force in the student's space).
    _, nearest = brute_nearest(student.transform(X), student.prototypes)
    indptr, indices = student.cell_indptr, student.cell_indices
    owner = np.empty(len(X), dtype=np.int64)
    owner[indices] = np.repeat(np.arange(len(student.prototypes)), np.diff(indptr))
    assert np.sort(indices).tolist() == list(range(len(X)))
    np.testing.assert_array_equal(owner, nearest)
    # The start rows are training rows, named by their global row numbers.
    assert train[student.support].all()
    assert dist.training_fidelity_ == pytest.approx(np.mean(pred == hard))
    assert dist.training_fidelity_ > 0.8            # the teacher is linear in the inputs


def test_projection_stream_moments_and_sample_against_numpy():
    from nnkd.distill._stream import PartitionStream, _assignment

    X, _ = blobs(2000, 4, 3, seed=16)
    Xd = da.from_array(X, chunks=(600, 4))
    stream = PartitionStream(Xd, None, CallableTeacher(logits=lambda A: A[:, :2]), 0.25, seed=3)
    mean, scale = stream.moments()
    train = np.concatenate([_assignment(m, s, 0.25) for m, s in zip(Xd.chunks[0], stream.seeds)])
    np.testing.assert_allclose(mean, X[train].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(scale, X[train].std(axis=0), rtol=1e-5)
    assert stream.n_train == train.sum()
    X_tr, ids_tr, X_val, ids_val = stream.sample(300, 100)
    np.testing.assert_array_equal(X_tr, X[ids_tr])
    np.testing.assert_array_equal(X_val, X[ids_val])
    assert train[ids_tr].all() and not train[ids_val].any()
    assert 200 < len(ids_tr) < 400 and 50 < len(ids_val) < 150
    steps, batches = stream.batches(temperature=1.0, mean=mean, scale=scale, batch_size=128, seed=0)
    seen = [xb.numpy() for _, xb, _, _ in batches(1)]
    assert len(seen) == steps
    rows = np.concatenate(seen) * scale + mean          # every training row once per epoch
    np.testing.assert_allclose(np.sort(rows, axis=0), np.sort(X[train], axis=0), rtol=1e-4, atol=1e-4)


def test_distiller_on_partitions_rejects_slam_and_subclasses():
    from nnkd.distill import NNDistiller

    teacher = CallableTeacher(logits=lambda X: X[:, :2], embed=lambda X: X)
    X, _ = blobs(300, 3, 2, seed=12)
    with pytest.raises(ValueError, match="loss='kd'"):
        NNDistiller(teacher, space="projection", loss="slam").fit(da.from_array(X, chunks=(100, 3)), np.zeros(300))