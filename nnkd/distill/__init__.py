"""Distillation: teachers into compressed nonparametric students and soft decision trees, and
data impressions for distilling without data.

Importing this package never imports torch: the NumPy helpers (:func:`select_queries`,
:func:`lelp_targets`, :func:`slam_estimates`, ...) work without it, the estimators import it
when a fit needs it (a projection student, a tree, data impressions), and the PyTorch losses
load on first access.
"""

from __future__ import annotations

import importlib

from nnkd.distill._active import select_queries
from nnkd.distill._augment import DirichletMixup
from nnkd.distill._distiller import NNDistiller
from nnkd.distill._impressions import DataImpressions, class_similarity, dirichlet_concentration
from nnkd.distill._lelp import lelp_targets
from nnkd.distill._slam import slam_estimates
from nnkd.distill._trees import TreeDistiller

#: Names that need torch, resolved on first access (module ``__getattr__``).
_TORCH_NAMES = {"slam_loss": "nnkd.distill.losses", "slam_mix": "nnkd.distill.losses",
                "soft_target_loss": "nnkd.distill.losses"}

__all__ = ["DataImpressions", "DirichletMixup", "NNDistiller", "TreeDistiller", "class_similarity",
           "dirichlet_concentration", "lelp_targets", "select_queries", "slam_estimates", "slam_loss", "slam_mix",
           "soft_target_loss"]


def __getattr__(name):
    if name in _TORCH_NAMES:
        from nnkd._core.artifacts import import_optional

        # A clear message instead of a bare ModuleNotFoundError: torch is not a dependency of nnkd.
        import_optional("torch", "torch==2.13.0", f"nnkd.distill.{name}", hint="the CPU build; see README")
        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    raise AttributeError(f"module 'nnkd.distill' has no attribute {name!r}")


def __dir__():
    return __all__
