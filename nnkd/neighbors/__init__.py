"""scikit-learn estimators built on nnkd's condensing and search layers."""

from nnkd.neighbors._condensed import MarginCondensedNN
from nnkd.neighbors._kernel_knn import KernelKNNClassifier, KernelKNNRegressor
from nnkd.neighbors._transformer import ANNTransformer

__all__ = ["ANNTransformer", "KernelKNNClassifier", "KernelKNNRegressor", "MarginCondensedNN"]
