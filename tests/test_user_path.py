"""The whole user path in subprocesses, as a user would run it: a data file (+ a TorchScript
teacher) -> ``nnkd distill`` / ``nnkd condense`` -> ``nnkd serve`` -> HTTP predictions that
equal ``nnkd predict`` on the same file."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import load_digits, load_wine

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
torch = pytest.importorskip("torch")

from _http import _env, _start_server, _stop


def _nnkd(*args: str, cwd) -> dict:
    proc = subprocess.run([sys.executable, "-m", "nnkd", *args], env=_env(), cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _csv(path, X, labels, names):
    with open(path, "w") as f:
        f.write(",".join([*names, "kind"]) + "\n")
        for row, label in zip(X, labels, strict=True):
            f.write(",".join(repr(float(v)) for v in row) + f",{label}\n")


def _served_labels(student_dir, X, per_request: int = 500):
    proc, url = _start_server(student_dir)
    labels = []
    try:
        for start in range(0, len(X), per_request):
            r = httpx.post(f"{url}/v1/predict", json={"instances": X[start:start + per_request].tolist()}, timeout=60)
            assert r.status_code == 200, r.text
            labels += r.json()["label"]
        return labels
    finally:
        _stop(proc)


def test_distill_serve_predict_from_a_csv_and_a_torchscript_teacher(tmp_path):
    from nnkd.teachers import train_mlp_teacher

    X, y = load_wine(return_X_y=True)
    X = X.astype(np.float32)
    teacher = train_mlp_teacher(X, y, hidden=(32,), epochs=30, random_state=0)
    torch.jit.save(torch.jit.script(teacher.model), str(tmp_path / "teacher.pt"))
    names = np.array(["barolo", "grignolino", "barbera"])
    _csv(tmp_path / "wine.csv", X, names[y], [f"f{j}" for j in range(X.shape[1])])

    summary = _nnkd("distill", "wine.csv", "--teacher", "teacher.pt", "--label", "kind", "--budget-kb", "8",
                    "--classes", ",".join(names),
                    "--random-state", "0", "--out", "run", "--quiet", cwd=tmp_path)
    assert summary["size_bytes"] <= 8000 and summary["validation_accuracy"] > 0.8
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["student_description"]["classes"] == names.tolist()       # the teacher's output order

    # Without --classes the sorted labels (barbera, barolo, grignolino) would name outputs 0, 1, 2:
    # the teacher's predictions contradict that, and the command says which order they suggest.
    proc = subprocess.run([sys.executable, "-m", "nnkd", "distill", "wine.csv", "--teacher", "teacher.pt", "--label",
                           "kind", "--out", "wrong", "--quiet"], env=_env(), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("nnkd: error:") and "--classes barolo,grignolino,barbera" in proc.stderr

    predicted = _nnkd("predict", "run/student", "wine.csv", "--label", "kind", "--out", "pred.csv", cwd=tmp_path)
    assert predicted["n_rows"] == len(X)
    lines = (tmp_path / "pred.csv").read_text().splitlines()
    assert lines[0] == "prediction"
    assert _served_labels(tmp_path / "run" / "student", X) == lines[1:]


def test_condense_serve_predict_from_an_npz(tmp_path):
    X, y = load_digits(return_X_y=True)
    np.savez(tmp_path / "digits.npz", X=X, y=y)
    summary = _nnkd("condense", "digits.npz", "--method", "hart", "--random-state", "0", "--out", "run", "--quiet",
                    cwd=tmp_path)
    assert 0 < summary["kept_fraction"] < 0.5 and summary["train_accuracy"] == 1.0
    assert summary["validation_accuracy"] > 0.85 and summary["bound"] == pytest.approx(summary["bound"])
    _nnkd("predict", "run/student", "digits.npz", "--out", "pred.npy", cwd=tmp_path)
    predicted = np.load(tmp_path / "pred.npy")
    assert_array_equal(np.asarray(_served_labels(tmp_path / "run" / "student", X)), predicted)
