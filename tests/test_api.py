"""The estimator API every nnkd estimator shares: scikit-learn's checks (distillers included)
and one meaning for each shared parameter."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import parametrize_with_checks

from nnkd import (
    ANNTransformer,
    KernelKNNClassifier,
    KernelKNNRegressor,
    MarginCondensedNN,
    NNDistiller,
    SoftDecisionTreeClassifier,
    TreeDistiller,
)
from nnkd._core.metrics import METRICS, SEARCH_METRICS
from nnkd.distill import DataImpressions
from nnkd.teachers import SklearnTeacher

pytest.importorskip("torch")

ESTIMATORS = [MarginCondensedNN, KernelKNNClassifier, KernelKNNRegressor, ANNTransformer, NNDistiller,
              TreeDistiller, SoftDecisionTreeClassifier]


def _teacher():
    return SklearnTeacher(LogisticRegression(max_iter=300))


@parametrize_with_checks([NNDistiller(_teacher(), random_state=0),
                          NNDistiller(_teacher(), space="projection", size_budget_kb=2, max_epochs=5, random_state=0),
                          TreeDistiller(_teacher(), tree=SoftDecisionTreeClassifier(depth=3, max_epochs=20,
                                                                                    batch_size=32, random_state=0))])
def test_distillers_pass_sklearn_checks(estimator, check):
    check(estimator)


def _defaults(cls) -> dict:
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}


#: shared parameter -> its one default
SHARED = {"random_state": None, "n_jobs": None, "verbose": False, "index": "exact", "index_params": None,
          "metric": "euclidean"}


@pytest.mark.parametrize("cls", ESTIMATORS + [DataImpressions], ids=lambda c: c.__name__)
def test_shared_parameters_have_one_name_and_default(cls):
    defaults = _defaults(cls)
    for name, value in SHARED.items():
        if name in defaults:
            assert defaults[name] == value, f"{cls.__name__}({name}={defaults[name]!r}); the shared default is {value!r}"
    # neighbour searchers take both index and index_params, and explain takes k
    if "index" in defaults:
        assert "index_params" in defaults and "metric" in defaults, cls.__name__
    if hasattr(cls, "explain"):
        k = inspect.signature(cls.explain).parameters.get("k")
        assert k is not None and k.default == 3 and k.kind == k.POSITIONAL_OR_KEYWORD, cls.__name__
    if hasattr(cls, "fit") and cls is not ANNTransformer:
        assert hasattr(cls, "to_student"), f"{cls.__name__} has no to_student()"


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_shared_parameters_mean_the_same(cls):
    constraints = cls._parameter_constraints
    if "metric" in constraints:
        allowed = next(c for c in constraints["metric"] if hasattr(c, "options")).options
        # searchers accept every metric name; condensers the true metrics among them (one table)
        assert allowed in (set(SEARCH_METRICS), set(METRICS)), (cls.__name__, allowed)
    if "random_state" in constraints:
        assert constraints["random_state"] == ["random_state"], cls.__name__
    if "n_jobs" in constraints:
        assert None in constraints["n_jobs"], cls.__name__
    if "verbose" in constraints:
        assert constraints["verbose"] == ["boolean"], cls.__name__


def test_random_state_none_is_fresh_and_an_int_repeats():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    fit = lambda **kw: SoftDecisionTreeClassifier(depth=2, max_epochs=3, **kw).fit(X, y).student_.gate_weights  # noqa: E731
    assert (fit(random_state=3) == fit(random_state=3)).all()
    assert not (fit() == fit()).all()


def test_numpy_helpers_import_without_torch(tmp_path):
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, Block())
        from nnkd.distill import lelp_targets, select_queries, slam_estimates
        from nnkd import NNDistiller, load_student
        import numpy as np
        from nnkd.teachers import CallableTeacher
        X = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
        teacher = CallableTeacher(logits=lambda Z: np.c_[Z[:, 0], -Z[:, 0]])
        dist = NNDistiller(teacher, random_state=0).fit(X)          # a condensed student needs no torch
        dist.to_student().save(sys.argv[1])
        np.save(sys.argv[1] + ".npy", X)
        from nnkd.cli import main
        assert main(["predict", sys.argv[1], sys.argv[1] + ".npy", "--out", sys.argv[1] + "-pred.npy"]) == 0
        assert (np.load(sys.argv[1] + "-pred.npy") == load_student(sys.argv[1]).predict(X)).all()
        print(load_student(sys.argv[1]).predict(X[:3]).tolist(), "torch" in sys.modules)
        try:
            NNDistiller(teacher, space="projection").fit(X)
        except ImportError as exc:
            print("projection:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s")], capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out[-2].endswith("False")
    assert out[-1].startswith("projection: NNDistiller(space='projection') needs the torch==2.13.0 package")
