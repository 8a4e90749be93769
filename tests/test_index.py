"""The Index layer: every backend x metric against a NumPy brute force, persistence, errors."""

import json
import pickle

import numpy as np
import pytest
from _artifacts import edit_json, rewrite_manifest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal
from scipy.spatial.distance import cdist
from sklearn.datasets import make_blobs
from sklearn.neighbors import NearestNeighbors

from nnkd.index import INDEX_METRICS, load_index, make_index

K = 10
RECALL = 0.95
EXACT_SPECS = ["exact", "faiss:Flat", "nmslib:brute_force"]
APPROX_SPECS = ["faiss:HNSW32", "faiss:IVF16,Flat", "faiss:IVF16,PQ8x4", "faiss:OPQ8,IVF16,PQ8x4", "faiss:SQ8",
                "nmslib:hnsw", "nmslib:sw-graph", "nmslib:napp", "nmslib:vptree"]


def unsupported(spec, metric):
    lossy = any(c in spec for c in ("PQ", "SQ"))
    return ((spec.startswith("faiss") and lossy and metric in ("manhattan", "chebyshev"))
            or (spec == "nmslib:vptree" and metric == "inner_product"))


def brute_force(Q, X, metric):
    """Independent float64 oracle for every metric of the index layer."""
    Q, X = Q.astype(np.float64), X.astype(np.float64)
    if metric == "inner_product":
        return -Q @ X.T
    if metric == "cosine":
        return 1.0 - (Q / np.linalg.norm(Q, axis=1, keepdims=True)) @ (X / np.linalg.norm(X, axis=1, keepdims=True)).T
    return cdist(Q, X, {"manhattan": "cityblock"}.get(metric, metric))


@pytest.fixture(scope="module")
def mixture():
    X, _ = make_blobs(n_samples=2200, centers=20, n_features=16, cluster_std=2.0, random_state=0)
    X = X.astype(np.float32)
    return X[:2000], X[2000:]


@pytest.mark.parametrize("metric", INDEX_METRICS)
@pytest.mark.parametrize("spec", EXACT_SPECS + APPROX_SPECS)
def test_backend_against_brute_force(mixture, spec, metric):
    X, Q = mixture
    if unsupported(spec, metric):
        with pytest.raises(ValueError, match=metric if "faiss" in spec else "metric space"):
            make_index(spec, metric)
        return
    index = make_index(spec, metric).fit(X)
    assert (len(index), index.dim, index.metric) == (2000, 16, metric)
    dist, ind = index.query(Q, K)
    assert dist.dtype == np.float32 and ind.dtype == np.int64 and dist.shape == ind.shape == (200, K)
    assert np.all(np.diff(dist, axis=1) >= -1e-5 * np.abs(dist[:, 1:]).max()), "rows are not sorted ascending"
    D = brute_force(Q, X, metric)
    # Returned distances are the true distances of the returned ids.
    assert_allclose(dist, np.take_along_axis(D, ind, axis=1), rtol=1e-4, atol=1e-5,
                    err_msg=f"{spec}/{metric} distances are not true {metric} distances")
    ref = np.argsort(D, axis=1, kind="stable")[:, :K]
    if spec in EXACT_SPECS:
        assert_array_equal(ind, ref, err_msg=f"{spec}/{metric} ids differ from brute force")
    else:
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(ind, ref, strict=True)])
        assert recall >= RECALL, f"{spec}/{metric}: recall@{K} {recall:.3f} < {RECALL}"


def test_exact_matches_sklearn(rng):
    X, Q = (rng.normal(size=(n, 8)).astype(np.float32) for n in (500, 50))
    dist, ind = make_index("exact").fit(X).query(Q, 10)
    ref_dist, ref_ind = NearestNeighbors(n_neighbors=10, algorithm="brute").fit(X).kneighbors(Q)
    assert_allclose(dist, ref_dist, rtol=1e-5)
    assert_array_equal(ind, ref_ind)


def test_exact_orders_ties_by_row_and_self_distance_is_zero():
    X = np.array([[1, 0], [0, 0], [1, 0], [0, 1], [2, 2]], dtype=np.float32)
    dist, ind = make_index("exact").fit(X).query([[0, 0], [1, 0]], 4)
    assert ind.tolist() == [[1, 0, 2, 3], [0, 2, 1, 3]]
    assert dist[1, :2].tolist() == [0.0, 0.0]
    assert_allclose(dist[0], [0, 1, 1, 1])


@settings(deadline=None, max_examples=40)
@given(X=arrays(np.float32, st.tuples(st.integers(1, 40), st.integers(1, 5)),
                elements=st.floats(-100, 100, width=32)),
       metric=st.sampled_from(["euclidean", "manhattan", "chebyshev", "inner_product"]),
       k=st.integers(1, 40))
def test_exact_knn_is_a_correct_selection(X, metric, k):
    """A law: returned ids hold the k smallest distances (no other row is strictly nearer)."""
    k = min(k, len(X))
    dist, ind = make_index("exact", metric).fit(X).query(X, k)
    D = brute_force(X, X, metric)
    chosen = np.take_along_axis(D, ind, axis=1)
    assert_allclose(dist, chosen, rtol=1e-4, atol=1e-3)
    kth = np.sort(D, axis=1)[:, k - 1]
    tol = 1e-4 * np.maximum(np.abs(kth), 1.0)
    assert np.all(chosen.max(axis=1) <= kth + tol)
    assert all(len(set(row)) == k for row in ind)


@pytest.mark.parametrize("spec", ["exact", "faiss:HNSW32", "faiss:IVF16,PQ8x4", "nmslib:hnsw", "nmslib:vptree"])
def test_save_load_round_trip(mixture, tmp_path, spec):
    X, Q = mixture
    index = make_index(spec, "euclidean", efSearch=64) if "HNSW" in spec or "hnsw" in spec else make_index(spec)
    index.fit(X)
    path = index.save(tmp_path / "idx")
    meta = json.loads((path / "index.json").read_text())
    assert (meta["backend"], meta["n"], meta["dim"], meta["metric"]) == (spec.split(":")[0], 2000, 16, "euclidean")
    if spec != "exact":
        with pytest.raises(ValueError, match="unsigned .* native index"):
            load_index(path)
    loaded = load_index(path, trust_native=True)
    assert (len(loaded), loaded.dim, loaded.spec, loaded.query_params) == (2000, 16, spec, index.query_params)
    d1, i1 = index.query(Q, K)
    d2, i2 = loaded.query(Q, K)
    assert_array_equal(i1, i2)
    assert_allclose(d1, d2)


@pytest.mark.parametrize("spec", ["exact", "faiss:HNSW32", "nmslib:hnsw"])
def test_tampered_file_is_rejected(mixture, tmp_path, spec):
    X, _ = mixture
    path = make_index(spec).fit(X).save(tmp_path / "idx")
    manifest = json.loads((path / "manifest.json").read_text())
    native = path / next(name for name in manifest["files"] if name != "index.json")
    data = bytearray(native.read_bytes())
    data[len(data) // 2] ^= 0xFF
    native.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_index(path)


def test_load_rejects_bad_metadata_and_pickled_arrays(mixture, tmp_path):
    X, _ = mixture
    path = make_index("exact").fit(X[:50]).save(tmp_path / "idx")
    original = json.loads((path / "index.json").read_text())
    (path / "index.json").write_text((path / "index.json").read_text().replace('"n": 50', '"n": 49'))
    with pytest.raises(ValueError, match="checksum mismatch for .*index.json"):
        load_index(path)                              # the manifest covers the metadata too
    for change, match in [({"format_version": 999}, "format_version"), ({"format_version": True}, "format_version"),
                          ({"dim": 1e308}, "'dim' must be an integer"), ({"backend": "magic"}, "unknown backend"),
                          ({"n": 10**12}, "shape")]:
        edit_json(path, "index.json", lambda m, change=change: {**original, **change})
        with pytest.raises(ValueError, match=match):
            load_index(path)
    edit_json(path, "index.json", lambda m: original)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "files": {"../escape.npz": "0" * 64}}))
    with pytest.raises(ValueError, match="outside"):
        load_index(path)
    # An object array (which only unpickling could read) with a matching checksum: never loaded.
    np.savez(path / "arrays.npz", X=np.array([{"a": 1}], dtype=object))
    (path / "manifest.json").write_text(json.dumps(manifest))
    rewrite_manifest(path)
    with pytest.raises(ValueError, match="dtype object"):
        load_index(path)
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "nowhere")


@pytest.mark.parametrize("spec", ["exact", "faiss:HNSW32", "faiss:IVF16,PQ8x4", "nmslib:hnsw", "nmslib:napp"])
def test_pickle_round_trip(mixture, spec):
    X, Q = mixture
    index = make_index(spec, "cosine").fit(X)
    clone = pickle.loads(pickle.dumps(index))
    assert_array_equal(index.query(Q, K)[1], clone.query(Q, K)[1])
    assert pickle.loads(pickle.dumps(make_index(spec))).spec == spec       # unfitted too


def test_query_params_change_results_and_are_validated(mixture):
    X, Q = mixture
    index = make_index("faiss:IVF16,Flat", nprobe=1).fit(X)
    with pytest.raises(ValueError, match="fewer than k=400.*raise nprobe"):
        index.query(Q, 400)                          # one list holds fewer than 400 rows
    index.set_query_params(nprobe=16)
    assert index.query(Q, 400)[1].shape == (200, 400)
    with pytest.raises(ValueError, match="unknown query parameter"):
        index.set_query_params(ef=3)


@pytest.mark.parametrize("call, match", [
    (lambda X: make_index("annoy:x"), "unknown index backend"),
    (lambda X: make_index("exact:x"), "takes no method"),
    (lambda X: make_index(3), "must be a string"),
    (lambda X: make_index("nmslib:kdtree"), "unknown nmslib method"),
    (lambda X: make_index("faiss:"), "index_factory string"),
    (lambda X: make_index("faiss:NotAnIndex").fit(X), "could not parse"),
    (lambda X: make_index("faiss:IVF4096,Flat").fit(X), "at least nlist=4096"),
    (lambda X: make_index("exact", "hamming"), "metric='hamming'"),
    (lambda X: make_index("nmslib:hnsw", bogus=1), "unknown parameter"),
    (lambda X: make_index("exact").fit(X).query(X, 0), "k=0"),
    (lambda X: make_index("exact").fit(X).query(X, 2001), "k=2001"),
    (lambda X: make_index("exact").fit(X).query(X[:, :3], 1), "3 features"),
    (lambda X: make_index("exact").fit(np.where(X > 5, np.nan, X)), "NaN"),
    (lambda X: make_index("exact", "cosine").fit(np.vstack([X, np.zeros((1, 16))])), "all-zero"),
    (lambda X: make_index("exact").fit(X[:0]), "empty"),
    (lambda X: make_index("exact").query(X, 1), "not fitted"),
])
def test_bad_input_is_a_clear_error(mixture, call, match):
    X, _ = mixture
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        call(X)


def test_import_index_does_not_load_faiss_or_nmslib():
    import subprocess
    import sys
    code = "import nnkd.index, sys; print('faiss' in sys.modules, 'nmslib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def _brute_force(Q, X, k, metric):
    """float64 NumPy brute force, ties by row number."""
    Q64, X64 = Q.astype(np.float64), X.astype(np.float64)
    if metric == "inner_product":
        D = -Q64 @ X64.T
    else:
        D = ((Q64[:, None, :] - X64[None]) ** 2).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(len(X)), D.shape), D), axis=1)[:, :k]
    return np.take_along_axis(D, order, 1), order


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "inner_product"])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_exact_search_equals_a_float64_brute_force_ties_included(metric, n_jobs):
    from sklearn.datasets import load_digits

    X = load_digits().data.astype(np.float32)               # integer pixels: many exact ties
    X = np.vstack([X, X[:50]])                              # and exact duplicates
    base, Q = X[:1500], X[1500:]
    for k in (1, 10, 40):
        dist, ind = make_index("exact", metric, n_jobs=n_jobs).fit(base).query(Q, k)
        ref_d, ref_i = _brute_force(Q, base, k, metric)
        assert_array_equal(ind, ref_i, err_msg=f"{metric} k={k} n_jobs={n_jobs}")
        expected = np.sqrt(ref_d) if metric == "euclidean" else ref_d
        assert_allclose(dist, expected, rtol=1e-6, atol=1e-6)


def test_exact_search_on_ties_falls_back_and_stays_exact(rng, monkeypatch):
    # 100 copies of one row: a pool of 2k + 8 cannot prove which copies are the k nearest,
    # so those queries go to the float64 path, which orders the copies by row number.
    from nnkd._core import distances

    calls = []
    real = distances._exact_knn_float64
    monkeypatch.setattr(distances, "_exact_knn_float64", lambda Q, *a: calls.append(len(Q)) or real(Q, *a))
    X = rng.normal(size=(2000, 16)).astype(np.float32)
    X[rng.choice(2000, 100, replace=False)] = X[7]
    Q = np.vstack([X[7] + 1e-3, rng.normal(size=(299, 16))]).astype(np.float32)
    dist, ind = make_index("exact", n_jobs=2).fit(X).query(Q, 5)
    ref_d, ref_i = _brute_force(Q, X, 5, "euclidean")
    assert calls and calls[0] >= 1
    assert_array_equal(ind, ref_i)
    assert_allclose(dist, np.sqrt(ref_d), rtol=1e-6)


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_exact_search_is_the_same_at_every_thread_count(n_jobs, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(700, 12)).astype(np.float32)
    Q = rng.normal(size=(600, 12)).astype(np.float32)
    one = make_index("exact", n_jobs=1).fit(X).query(Q, 7)
    many = make_index("exact", n_jobs=n_jobs).fit(X).query(Q, 7)
    assert_array_equal(one[1], many[1])
    assert_array_equal(one[0], many[0])


# --------------------------------------------------------------------------- third-party noise

def test_faiss_small_training_sets_warn_once_and_print_nothing(capfd):
    """FAISS prints a C-level line per under-trained k-means (one per PQ sub-quantizer); nnkd
    lowers the threshold at the source and says it once, as a Python warning."""
    X = np.random.default_rng(0).normal(size=(1500, 16)).astype(np.float32)
    capfd.readouterr()
    with pytest.warns(UserWarning, match="FAISS suggests at least 39 per centroid") as record:
        index = make_index("faiss:OPQ8,IVF64,PQ8").fit(X)
    assert len([w for w in record if "FAISS suggests" in str(w.message)]) == 1
    assert "OPQ (256 centroids)" in str(record[0].message) and "IVF (64 centroids)" in str(record[0].message)
    out, err = capfd.readouterr()
    assert "WARNING clustering" not in out + err, err
    exact = make_index("exact").fit(X)
    assert_array_equal(index.query(X[:5], 1)[1], exact.query(X[:5], 1)[1])   # re-ranked: itself first


def test_nmslib_build_banner_is_held_back_and_other_stderr_passes(capfd):
    from nnkd.index._nmslib import _without_banner

    with _without_banner():
        import os

        os.write(2, b"Your CPU supports instructions that this binary was not compiled to use: AVX2\n"
                    b"For maximum performance, you can install NMSLIB from sources \n"
                    b"pip install --no-binary :all: nmslib\nsomething else\n")
    assert capfd.readouterr().err == "something else\n"


def test_importing_nmslib_through_nnkd_prints_no_banner():
    import subprocess
    import sys

    code = "from nnkd.index import make_index; import numpy as np; make_index('nmslib:hnsw').fit(np.eye(8, dtype='f4'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Your CPU supports" not in proc.stderr + proc.stdout and "--no-binary" not in proc.stderr + proc.stdout
