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


def slam_mix(student_prob: torch.Tensor, teacher_prob: torch.Tensor, alpha: torch.Tensor, k: torch.Tensor,
             normalize: bool = False) -> torch.Tensor:
    """SLaM's forward loss adjustment: the label distribution a noisy teacher would produce
    if the student were right.

    ``mix(f; alpha, k) = alpha f + (1 - alpha) (1 - f) * top_k(teacher) [/ (k - 1)]``, where
    ``top_k(teacher)`` is the indicator of the teacher's ``k(x)`` most probable classes and
    ``alpha(x)`` the teacher's probability of being right. Kontonis et al. define it with the
    ``1 / (k - 1)`` normalisation and report better results without it (their Remark B.1), so
    ``normalize=False`` is the default.
    """
    ranks = torch.argsort(torch.argsort(teacher_prob, dim=1, descending=True), dim=1)
    top = (ranks < k.view(-1, 1)).to(student_prob.dtype)
    other = (1 - student_prob) * top
    if normalize:
        other = other / (k.view(-1, 1) - 1).clamp_min(1).to(student_prob.dtype)
    a = alpha.view(-1, 1).to(student_prob.dtype)
    return a * student_prob + (1 - a) * other


def slam_loss(student_logits: torch.Tensor, teacher_prob: torch.Tensor, alpha: torch.Tensor, k: torch.Tensor,
              normalize: bool = False) -> torch.Tensor:
    """Student-Label Mixing loss (Kontonis et al., NeurIPS 2023): cross-entropy between the
    teacher's labels and :func:`slam_mix` of the student's prediction, batch mean."""
    mixed = slam_mix(torch.softmax(student_logits, dim=1), teacher_prob, alpha, k, normalize)
    return -(teacher_prob * torch.log(mixed.clamp_min(1e-12))).sum(dim=1).mean()
