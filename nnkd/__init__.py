"""nnkd: nearest-neighbour sample compression and distillation.

Heavy or optional pieces load lazily (module ``__getattr__``, as scikit-learn does),
so ``import nnkd`` is fast and never imports torch, faiss or nmslib.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "MarginCondensedNN": "nnkd.neighbors",
    "KernelKNNClassifier": "nnkd.neighbors",
    "KernelKNNRegressor": "nnkd.neighbors",
    "ANNTransformer": "nnkd.neighbors",
    "NNDistiller": "nnkd.distill",
    "TreeDistiller": "nnkd.distill",
    "DataImpressions": "nnkd.distill",
    "SoftDecisionTreeClassifier": "nnkd.trees",
    "load_student": "nnkd.student",
    "greedy_permutation": "nnkd.condense",
    "compression_bound": "nnkd.condense",
    "holdout_bound": "nnkd.condense",
    "show_config": "nnkd._config",
    "read_rows_lazily": "nnkd._core.partitions",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnkd' has no attribute {name!r}")


def __dir__():
    return __all__
