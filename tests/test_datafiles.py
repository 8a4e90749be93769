"""Reading a user's data files: every format gives the same arrays, every mistake one clear error."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from nnkd._core.datafiles import read_data
from nnkd.cli import main


@pytest.fixture
def table(rng):
    X = rng.normal(size=(20, 3)).astype(np.float32)
    y = np.array(["cat", "dog"])[rng.integers(0, 2, 20)]
    return X, y


def _write_delimited(path, X, y, sep=","):
    with open(path, "w") as f:
        f.write(sep.join(["a", "b", "c", "label"]) + "\n")
        for row, label in zip(X, y, strict=True):
            f.write(sep.join(repr(float(v)) for v in row) + f"{sep}{label}\n")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".npz"])
def test_every_format_reads_the_same_rows(table, tmp_path, suffix):
    X, y = table
    path = tmp_path / f"data{suffix}"
    if suffix == ".npz":
        np.savez(path, X=X, y=y)
        label = None                                  # default key y
    elif suffix == ".parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": y}), path)
        label = "label"
    else:
        _write_delimited(path, X, y, "\t" if suffix == ".tsv" else ",")
        label = "label"
    d = read_data(path, label=label, require_labels=True)
    assert_array_equal(d.X, X)
    assert_array_equal(d.y, y)
    assert d.X.dtype == np.float32 and d.X.flags.c_contiguous


def test_npy_and_integer_labels(table, tmp_path):
    X, _ = table
    np.save(tmp_path / "x.npy", X)
    d = read_data(tmp_path / "x.npy")
    assert_array_equal(d.X, X) and d.y is None
    _write_delimited(tmp_path / "ints.csv", X, np.arange(20) % 3)
    assert read_data(tmp_path / "ints.csv", label="label").y.dtype == np.int64


@pytest.mark.parametrize("content, kwargs, match", [
    ("a,b,label\n1,2,x\n3,oops,y\n", {"label": "label"}, "column 'b' row 2 is 'oops', not a number"),
    ("a,b,label\n1,2,x\n", {"label": "kind"}, "no label column 'kind'; the columns are"),
    ("a,b\n1,2\n3\n", {}, "line 3 has 1 values; the header has 2"),
    ("a,a\n1,2\n", {}, "name every column once"),
    ("", {}, "is empty"),
    ("a,b\n", {}, "no rows"),
    ("a,b\n1,nan\n", {}, "NaN or infinite value"),
    ("a,b\n1,2\n", {"require_labels": True}, "gives no labels; name the label column with --label"),
])
def test_csv_mistakes_are_one_clear_error(tmp_path, content, kwargs, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        read_data(path, **kwargs)


def test_npz_and_file_mistakes(tmp_path):
    np.savez(tmp_path / "d.npz", features=np.ones((3, 2)), y=np.arange(3))
    with pytest.raises(ValueError, match=r"no features key 'X or X_train'.*\['features', 'y'\]"):
        read_data(tmp_path / "d.npz")
    assert read_data(tmp_path / "d.npz", features="features").X.shape == (3, 2)
    with pytest.raises(ValueError, match="no label key 'target'"):
        read_data(tmp_path / "d.npz", features="features", label="target")
    np.savez(tmp_path / "short.npz", X=np.ones((3, 2)), y=np.arange(2))
    with pytest.raises(ValueError, match="one label per row"):
        read_data(tmp_path / "short.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a readable numeric .npy"):
        read_data(tmp_path / "obj.npy")
    np.savez(tmp_path / "objects.npz", X=np.ones((3, 2)), y=np.array([{"a": 1}] * 3, dtype=object))
    with pytest.raises(ValueError, match="'y' is stored as Python objects, which nnkd never unpickles"):
        read_data(tmp_path / "objects.npz")
    np.save(tmp_path / "one.npy", np.ones((3, 2)))
    (tmp_path / "renamed.npz").write_bytes((tmp_path / "one.npy").read_bytes())   # a .npy under an .npz name
    with pytest.raises(ValueError, match="not a readable .npz archive: it holds one array"):
        read_data(tmp_path / "renamed.npz")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="unsupported data format '.json'"):
        read_data(tmp_path / "x.json")
    with pytest.raises(FileNotFoundError, match="no such data file"):
        read_data(tmp_path / "missing.csv")


def test_cli_user_mistakes_are_one_line_exit_1(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("a,b\n1,2\n3,4\n")
    assert main(["condense", str(tmp_path / "d.csv"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nnkd: error:") and "--label" in err
    assert main(["predict", str(tmp_path / "nothing"), str(tmp_path / "d.csv"), "--out", str(tmp_path / "p.npy")]) == 1
    assert "is not a directory; is it a saved nnkd student?" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["condense", str(tmp_path / "d.csv"), "--method", "magic", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
