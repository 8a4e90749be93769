"""Distillation: teachers into compressed nonparametric students."""

from nnkd.distill._distiller import NNDistiller
from nnkd.distill.losses import soft_target_loss

__all__ = ["NNDistiller", "soft_target_loss"]
