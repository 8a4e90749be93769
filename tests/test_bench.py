"""`nnkd bench`: recall rule, datasets and conversion, resumable runs, plots, CLI errors."""

import json

import h5py
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import make_blobs

from nnkd.bench import (
    convert_to_hdf5,
    load_bench_dataset,
    load_grid,
    pareto_frontier,
    read_results,
    recall_at_k,
)
from nnkd.cli import main


def test_recall_rule_on_hand_made_cases():
    true = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    assert recall_at_k(true, true, 3) == 1.0
    # second query: ties at the k-th distance all count; 0.5 + 1e-3 is the threshold
    got = np.array([[1.0, 2.0, 3.0005], [0.5, 0.5005, 0.502]])
    assert recall_at_k(got, true, 3) == pytest.approx((3 / 3 + 2 / 3) / 2)
    got = np.array([[1.0, 4.0, 5.0], [9.0, 9.0, 9.0]])
    assert recall_at_k(got, true, 3) == pytest.approx((1 / 3 + 0) / 2)
    assert recall_at_k(got, true, 1) == pytest.approx(0.5)        # k=1 uses the 1st true distance
    with pytest.raises(ValueError, match="k=4"):
        recall_at_k(got, true, 4)


def test_pareto_frontier_keeps_undominated_points():
    recall = np.array([0.5, 0.9, 0.9, 0.99, 0.7])
    qps = np.array([1000, 500, 400, 100, 300])
    assert pareto_frontier(recall, qps).tolist() == [0, 1, 3]


@pytest.fixture
def tiny_npz(tmp_path):
    X, y = make_blobs(700, n_features=8, centers=5, random_state=0)
    path = tmp_path / "tiny.npz"
    np.savez(path, X_train=X[:600].astype(np.float32), y_train=y[:600], X_test=X[600:].astype(np.float32),
             y_test=y[600:])
    return path


def test_convert_round_trip_and_ground_truth(tiny_npz, tmp_path):
    out = convert_to_hdf5(tiny_npz, tmp_path / "tiny.hdf5", k=20)
    with h5py.File(out) as f:
        assert f.attrs["distance"] == "euclidean"
        assert f["train"].shape == (600, 8) and f["neighbors"].shape == (100, 20)
    ds = load_bench_dataset(out)
    X = np.load(tiny_npz)
    D = np.linalg.norm(X["X_test"][:, None, :].astype(float) - X["X_train"][None].astype(float), axis=2)
    assert_array_equal(ds.neighbors, np.argsort(D, axis=1, kind="stable")[:, :20])
    np.testing.assert_allclose(ds.distances, np.sort(D, axis=1)[:, :20], rtol=1e-5)


def _cli(*args):
    return main(["bench", *map(str, args)])


def test_bench_ann_end_to_end_resumes_and_agrees_with_numpy(tiny_npz, tmp_path, capsys):
    hdf5 = convert_to_hdf5(tiny_npz, tmp_path / "tiny.hdf5", k=10)
    out = tmp_path / "run"
    assert _cli("ann", "--dataset", hdf5, "--algorithms", "exact,faiss:HNSW32,nmslib:hnsw", "--runs", 1,
                "--save-neighbors", "--out", out, "--quiet") == 0
    rows = read_results(out)
    grid_runs = 1 + 5 + 5                                     # exact + efSearch settings of the default grid
    assert len(rows) == grid_runs and all("error" not in r for r in rows)
    assert {"qps", "p50_ms", "p99_ms", "build_s", "index_bytes", "rss_growth_bytes", "versions"} <= set(rows[0])
    assert (out / "pareto.png").stat().st_size > 0 and "best QPS" in (out / "summary.md").read_text()
    # independent recall: the ann-benchmarks rule recomputed in NumPy from the returned ids
    with h5py.File(hdf5) as f:
        base, queries = f["train"][:].astype(float), f["test"][:].astype(float)
    full = np.linalg.norm(queries[:, None] - base[None], axis=2)
    kth = np.sort(full, axis=1)[:, 9]
    for r in rows:
        ids = np.load(out / r["neighbors_file"])["ind"]
        got = np.linalg.norm(base[ids] - queries[:, None], axis=2)
        assert r["recall"] == pytest.approx(np.mean(np.sum(got <= kth[:, None] + 1e-3, axis=1) / 10), abs=1e-9)
    assert next(r for r in rows if r["algorithm"] == "exact")["recall"] == 1.0
    # a second invocation resumes: nothing is run again
    assert _cli("ann", "--dataset", hdf5, "--algorithms", "exact,faiss:HNSW32,nmslib:hnsw", "--runs", 1,
                "--out", out, "--quiet") == 0
    assert len(read_results(out)) == grid_runs
    assert _cli("plot", out) == 0


def test_bench_knn_and_condense_write_plots(tiny_npz, tmp_path):
    out = tmp_path / "knn"
    assert _cli("knn", "--dataset", tiny_npz, "--algorithms", "exact,faiss:HNSW32", "--runs", 1, "--batch",
                "--out", out, "--quiet") == 0
    rows = [r for r in read_results(out) if r["kind"] == "knn"]
    assert all(0.9 <= r["accuracy"] <= 1.0 for r in rows) and (out / "knn.png").is_file()
    assert _cli("condense", "--dataset", tiny_npz, "--out", out, "--quiet") == 0
    methods = {r["method"] for r in read_results(out) if r["kind"] == "condense"}
    assert {"nnkd ksu (bound)", "nnkd hart", "sklearn 1-NN (all rows)", "imbalanced-learn CNN"} <= methods
    assert (out / "condense.png").is_file()


def test_grid_files(tmp_path):
    grid = load_grid()
    assert {g[0] for g in grid} == {"exact", "faiss:HNSW32", "faiss:IVF128,Flat", "nmslib:hnsw", "nmslib:sw-graph"}
    cfg = tmp_path / "grid.yaml"
    cfg.write_text("- spec: nmslib:hnsw\n  build: {M: [8, 16]}\n  query: {efSearch: [10, 20, 40]}\n")
    grid = load_grid(cfg)
    assert [(s, b, len(q)) for s, b, q in grid] == [("nmslib:hnsw", {"M": 8}, 3), ("nmslib:hnsw", {"M": 16}, 3)]


@pytest.mark.parametrize("args, message", [
    (["ann", "--dataset", "missing.hdf5", "--out", "o"], "not found"),
    (["ann", "--dataset", "{npz}", "--algorithms", "annoy:x", "--out", "o"], "unknown index backend"),
    (["ann", "--dataset", "{npz}", "--config", "{badgrid}", "--out", "o"], "unknown parameter"),
    (["ann", "--dataset", "{h5nokeys}", "--out", "o"], "lacks the ann-benchmarks dataset"),
    (["ann", "--dataset", "{txt}", "--out", "o"], "unknown dataset format"),
    (["knn", "--dataset", "{nolabels}", "--algorithms", "exact", "--out", "o"], "no labels"),
    (["plot", "nowhere"], "not a directory"),
])
def test_bad_input_is_one_error_line(tiny_npz, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("- spec: nmslib:hnsw\n  query: {ef: [10]}\n")
    with h5py.File(tmp_path / "nokeys.hdf5", "w") as f:
        f.create_dataset("base", data=np.zeros((3, 2)))
    (tmp_path / "data.txt").write_text("1 2 3")
    np.savez(tmp_path / "nolabels.npz", X=np.random.default_rng(0).normal(size=(50, 3)))
    subs = {"{npz}": str(tiny_npz), "{badgrid}": "bad.yaml", "{h5nokeys}": "nokeys.hdf5", "{txt}": "data.txt",
            "{nolabels}": "nolabels.npz"}
    assert main(["bench", *[subs.get(a, a) for a in args]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnkd: error:") and message in err[0]
    assert "Traceback" not in json.dumps(err)
