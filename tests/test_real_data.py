"""Checks on real data: ../shared/data (skipped when the folder is absent) and scikit-learn's
bundled datasets."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from nnkd import MarginCondensedNN
from nnkd.distill import NNDistiller, TreeDistiller
from nnkd.teachers import train_mlp_teacher
from nnkd.trees import SoftDecisionTreeClassifier


def test_hart_on_pendigits_is_consistent_and_accurate(shared_data):
    d = shared_data("pendigits")
    clf = MarginCondensedNN(method="hart", random_state=0, n_jobs=2).fit(d["X_train"], d["y_train"])
    assert clf.training_error_ == 0.0
    full = KNeighborsClassifier(n_neighbors=1).fit(d["X_train"], d["y_train"]).score(d["X_test"], d["y_test"])
    assert clf.compression_ratio_ < 0.15
    assert clf.score(d["X_test"], d["y_test"]) >= full - 0.03


def test_ksu_validation_on_optdigits_is_close_to_full_1nn(shared_data):
    d = shared_data("optdigits")
    clf = MarginCondensedNN(selection="validation", random_state=0).fit(d["X_train"], d["y_train"])
    full = KNeighborsClassifier(n_neighbors=1).fit(d["X_train"], d["y_train"]).score(d["X_test"], d["y_test"])
    assert clf.compression_ratio_ <= 0.5
    assert clf.score(d["X_test"], d["y_test"]) >= full - 0.02
    assert np.isfinite(clf.bound_) or 2 * len(clf.support_) >= len(d["y_train"])


# -- bounds against measured test error ------------------------------------------------------------
# The law every non-vacuous bound states: the true error is below it with probability 0.95.
# On held-out test rows the measured error must sit below it (up to the test split's own
# noise, which at these sizes is far smaller than the bounds' slack). Scikit-learn's bundled
# datasets keep this check on every machine; the shared folder adds real ones where present.
LOADERS = {"digits": load_digits, "breast_cancer": load_breast_cancer, "wine": load_wine}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_every_students_bound_is_above_its_test_error(name):
    X, y = LOADERS[name](return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    X, Q, y, yq = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    teacher = train_mlp_teacher(X, y, hidden=(64,), epochs=30, random_state=0)
    students = {
        "condensed": MarginCondensedNN(random_state=0).fit(X, y),
        "input": NNDistiller(teacher, size_budget_kb=8, random_state=0).fit(X, y),
        "projection": NNDistiller(teacher, space="projection", size_budget_kb=8, max_epochs=20,
                                  random_state=0).fit(X, y),
        "tree": TreeDistiller(teacher, tree=SoftDecisionTreeClassifier(depth=3, max_epochs=15, random_state=0)
                              ).fit(X, y),
    }
    checked = 0
    for kind, est in students.items():
        student = est.to_student()
        bound = student.bound
        if bound is None or bound >= 1:
            continue
        error = np.mean(est.predict(Q) != yq)
        if student.meta.get("bound_target") == "teacher":       # a fidelity certificate
            error = np.mean(est.predict(Q) != teacher.logits(Q).argmax(1))
        assert error <= bound, (kind, error, bound)
        checked += 1
    # the held-out bounds are never vacuous at these sizes
    assert checked >= 2 and students["projection"].bound_kind_ == "held-out"
