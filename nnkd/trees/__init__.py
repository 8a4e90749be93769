"""Soft decision trees (Frosst & Hinton 2017): training (PyTorch, loaded by ``fit`` only), the
scikit-learn estimator and tree plots. A fitted tree exports a NumPy-only Student."""

from nnkd.trees._plot import node_filters, plot_tree
from nnkd.trees._sklearn import SoftDecisionTreeClassifier, check_soft_targets

__all__ = ["SoftDecisionTreeClassifier", "check_soft_targets", "node_filters", "plot_tree"]
