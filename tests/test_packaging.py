"""The wheel: ``python -m build`` makes an sdist and a wheel that carries the compiled C
extension and the package data; installed into a fresh virtualenv (its dependencies taken from
this one, so nothing is downloaded), it reports ``cext: True`` and predicts, away from the
source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(args, cwd, env=None, timeout=600) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: build with this environment's setuptools and numpy instead of downloading
    # them; --skip-dependency-check: pyproject's "wheel" is built into setuptools >= 70.
    _run([sys.executable, "-m", "build", "--no-isolation", "--skip-dependency-check", "--outdir", out, REPO], REPO)
    assert len(list(out.glob("nnkd-*.tar.gz"))) == 1
    (found,) = out.glob("nnkd-*.whl")
    return found


def test_wheel_carries_the_extension_and_the_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("nnkd/_cext") and n.endswith((".so", ".pyd")) for n in names), names
    assert "nnkd/bench/default_grid.yaml" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "cext/")) for n in names)


def test_wheel_installs_and_predicts_in_a_fresh_venv(wheel, tmp_path):
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel],
         tmp_path)
    # Dependencies from this environment (numpy, scikit-learn, numba, ...), after the venv's own
    # site-packages, so the nnkd imported is the installed wheel.
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    config = json.loads(_run([target / "bin" / "nnkd", "show-config", "--json"], tmp_path, env))
    assert config["cext"] is True
    script = (
        "import numpy as np, nnkd\n"
        f"assert nnkd.__file__.startswith({str(target)!r}), nnkd.__file__\n"
        "from sklearn.datasets import load_iris\n"
        "X, y = load_iris(return_X_y=True)\n"
        "clf = nnkd.MarginCondensedNN(method='hart').fit(X, y)\n"
        "P = clf.prototypes_.astype(np.float64)\n"
        "Z = X.astype(np.float32).astype(np.float64)   # what the model sees, in float64\n"
        "nearest = ((Z[:, None, :] - P[None]) ** 2).sum(-1).argmin(1)   # ties: the first, as the index\n"
        "assert (clf.predict(X) == clf.prototype_labels_[nearest]).all()\n"
        "print((clf.predict(X) == y).mean())\n")
    accuracy = float(_run([python, "-c", script], tmp_path, env).strip())
    assert accuracy > 0.9
