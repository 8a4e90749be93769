"""Distillation: teachers into compressed nonparametric students."""

from nnkd.distill._distiller import NNDistiller
from nnkd.distill._slam import slam_estimates
from nnkd.distill.losses import slam_loss, slam_mix, soft_target_loss

__all__ = ["NNDistiller", "slam_estimates", "slam_loss", "slam_mix", "soft_target_loss"]
