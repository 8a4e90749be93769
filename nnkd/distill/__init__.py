"""Distillation: teachers into compressed nonparametric students (needs PyTorch)."""

from nnkd._core.artifacts import import_optional

# A clear message instead of a bare ModuleNotFoundError: torch is not a dependency of nnkd.
import_optional("torch", "torch==2.13.0", "nnkd.distill", hint="the CPU build; see README")

from nnkd.distill._active import select_queries
from nnkd.distill._distiller import NNDistiller
from nnkd.distill._lelp import lelp_targets
from nnkd.distill._slam import slam_estimates
from nnkd.distill.losses import slam_loss, slam_mix, soft_target_loss

__all__ = ["NNDistiller", "lelp_targets", "select_queries", "slam_estimates", "slam_loss", "slam_mix",
           "soft_target_loss"]
