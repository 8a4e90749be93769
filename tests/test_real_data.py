"""Checks on real data from ../shared/data (skipped when the folder is absent)."""

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from nnkd import MarginCondensedNN


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
