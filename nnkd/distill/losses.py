"""Distillation losses: pure functions of tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_loss(student_logits: torch.Tensor, teacher_prob: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s KD loss: ``T^2 * KL(teacher || softmax(student / T))``, batch mean.

    ``teacher_prob`` is the teacher's distribution at the same temperature ``T``; the ``T^2``
    keeps gradient magnitudes comparable across temperatures.
    """
    log_p = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_p, teacher_prob, reduction="batchmean") * temperature ** 2
