"""nnkd.bench.suite and read_npz: the one loader of ``nnkd bench`` and the benchmark scripts.

Splits are checked against scikit-learn's own ``train_test_split`` / ``StandardScaler`` and
slices of the arrays written; bad files against the error each must raise.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from nnkd.bench import (
    DATASETS,
    SEALED_GROUP,
    TUNING_GROUP,
    check_datasets,
    json_safe,
    load_bench_dataset,
    load_split,
    markdown_table,
    read_npz,
)


def test_groups_are_disjoint_and_cover_the_suite():
    assert not set(TUNING_GROUP) & set(SEALED_GROUP)
    assert set(TUNING_GROUP) | set(SEALED_GROUP) == set(DATASETS)


def test_stratified_split_is_sklearns(tmp_path):
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=DATASETS["digits"].test_size, stratify=y,
                                              random_state=0)
    ds = load_split("digits", tmp_path / "unused")
    np.testing.assert_array_equal(ds.X_train, X_tr.astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, y_te)
    assert ds.X_train.dtype == np.float32 and ds.X_train.flags.c_contiguous and ds.y_train.dtype == np.int64
    assert ds.info()["n_train"] == len(y_tr) and ds.info()["n_classes"] == 10


def test_standardized_split_uses_the_training_rows_only(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_te, _, _ = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_tr)
    ds = load_split(DATASETS["breast_cancer"], tmp_path)
    np.testing.assert_allclose(ds.X_test, scaler.transform(X_te).astype(np.float32), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0.0, atol=1e-5)


def test_first_rows_and_official_splits_slice_the_file(tmp_path):
    rng = np.random.default_rng(0)
    n_train = DATASETS["letter"].n_train
    X, y = rng.normal(size=(n_train + 37, 5)), rng.integers(0, 3, n_train + 37)
    np.savez(tmp_path / "letter.npz", X=X, y=y)
    ds = load_split("letter", tmp_path)
    np.testing.assert_array_equal(ds.X_test, X[n_train:].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, y[:n_train])
    parts = {"X_train": X[:50], "y_train": y[:50], "X_test": X[50:60], "y_test": y[50:60]}
    np.savez(tmp_path / "usps.npz", **parts)
    ds = load_split("usps", tmp_path)
    np.testing.assert_array_equal(ds.X_test, parts["X_test"].astype(np.float32))
    np.savez(tmp_path / "satimage.npz", X=X, y=y)                  # official split, but no official arrays
    with pytest.raises(ValueError, match=r"satimage\.npz lacks \['X_train'"):
        load_split("satimage", tmp_path)


def test_unknown_and_missing_datasets_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset.*nope.*choose from"):
        check_datasets(["letter", "nope"], tmp_path)
    with pytest.raises(FileNotFoundError, match=r"letter\.npz, usps\.npz not found.*--data-dir"):
        check_datasets(["letter", "digits", "usps"], tmp_path)
    assert check_datasets(("digits", "wine"), tmp_path) == ["digits", "wine"]


def test_read_npz_round_trip_and_refusals(tmp_path):
    arrays = {"X": np.arange(12, dtype=np.float32).reshape(3, 4), "y": np.array([0, 1, 1])}
    np.savez(tmp_path / "ok.npz", **arrays)
    got = read_npz(tmp_path / "ok.npz")
    assert sorted(got) == ["X", "y"] and all(np.array_equal(got[k], arrays[k]) for k in arrays)
    np.savez(tmp_path / "objects.npz", X=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="'X' is stored as Python objects, which nnkd never unpickles"):
        read_npz(tmp_path / "objects.npz")
    np.save(tmp_path / "one.npy", arrays["X"])
    (tmp_path / "one.npz").write_bytes((tmp_path / "one.npy").read_bytes())
    with pytest.raises(ValueError, match="not a readable .npz archive: it holds one array"):
        read_npz(tmp_path / "one.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(ValueError, match="not a readable .npz"):
        read_npz(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_npz(tmp_path / "absent.npz")
    with pytest.raises(ValueError, match="never unpickles"):             # nnkd bench reads through it too
        load_bench_dataset(tmp_path / "objects.npz")


def test_tables_and_json_safe():
    assert markdown_table(["a", "b"], [["1", "2"]]) == ["| a | b |", "|---|---|", "| 1 | 2 |"]
    value = {"bound": float("inf"), "rows": (1.5, float("nan")), "ok": 2}
    text = json.dumps(json_safe(value), allow_nan=False)
    assert json.loads(text) == {"bound": "inf", "rows": [1.5, "nan"], "ok": 2}
