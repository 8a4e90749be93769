"""The soft tree's training objective (Frosst & Hinton 2017): the path-weighted cross-entropy
of the leaves and the balance penalty on running averages of each node's split."""

from __future__ import annotations

import numpy as np
import torch

from nnkd.trees._module import node_depths

#: Split fractions are clipped to ``[EPS, 1 - EPS]`` before the logarithm of the penalty.
EPS = 1e-6


def leaf_cross_entropy(leaves: torch.Tensor, leaf_log_q: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``-mean_x sum_l P^l(x) sum_k T_k(x) log Q_lk``: each leaf's cross-entropy with the
    targets, weighted by the path probability of reaching it.

    Parameters
    ----------
    leaves : Tensor of shape (B, n_leaves)
        Path probabilities ``P^l(x)``.
    leaf_log_q : Tensor of shape (n_leaves, n_classes)
        ``log Q_l``.
    targets : Tensor of shape (B, n_classes)
        Target distributions ``T(x)`` (one-hot for hard labels).
    """
    return -(leaves * (targets @ leaf_log_q.T)).sum(dim=1).mean()


def split_fractions(right: torch.Tensor, reach: torch.Tensor) -> torch.Tensor:
    """``alpha_i = sum_x P^i(x) p_i(x) / sum_x P^i(x)``: the share of the probability mass
    arriving at inner node ``i`` that goes right, over a batch. Tensor of shape (n_inner,)."""
    return (reach * right).sum(dim=0) / reach.sum(dim=0).clamp_min(torch.finfo(reach.dtype).tiny)


def balance_penalty(alpha: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``-sum_i lambda_i (0.5 log alpha_i + 0.5 log(1 - alpha_i))``: zero-gradient at an even
    split, growing without bound as a node sends everything one way."""
    a = alpha.clamp(EPS, 1 - EPS)
    return -(weights * (0.5 * torch.log(a) + 0.5 * torch.log(1 - a))).sum()


def penalty_weights(depth: int, penalty: float, penalty_decay: float) -> np.ndarray:
    """``lambda_i = penalty * penalty_decay ** -d_i`` for each inner node at depth ``d_i``
    (the paper's ``lambda`` proportional to ``2^-d`` with ``penalty_decay=2``)."""
    return penalty * float(penalty_decay) ** -node_depths(depth).astype(np.float64)


class RunningSplit:
    """Exponentially decaying running averages of each inner node's split fraction.

    A node at depth ``d`` sees about ``2^-d`` of each batch, so its batch estimate is noisy;
    following the paper, its average uses a time window that doubles with each level:
    decay ``gamma_d = 1 - (1 - ema) * 2^-d``, a window of ``2^d / (1 - ema)`` batches (``ema`` is
    the root's decay). The first batch initialises every average (no pull towards 0.5).

    :meth:`update` returns the new average ``abar = gamma abar_prev + (1 - gamma) alpha_batch`` as
    the value the penalty sees, with the gradient of the current batch's ``alpha`` at full weight
    (a straight-through estimate): the penalty's slope is read at the smoothed split, and its
    direction in parameter space comes from the rows of this batch. Differentiating through the
    average instead would shrink a depth-``d`` node's gradient by ``(1 - gamma_d)``, a factor
    of ``2^-d`` on top of ``lambda``'s.

    Parameters
    ----------
    depth : int
    ema : float in [0, 1)
    """

    def __init__(self, depth: int, ema: float):
        self.decay = torch.as_tensor(1.0 - (1.0 - ema) * 2.0 ** -node_depths(depth).astype(np.float64),
                                     dtype=torch.float32)
        self.average: torch.Tensor | None = None

    def update(self, alpha: torch.Tensor) -> torch.Tensor:
        """Fold the batch estimate ``alpha`` (n_inner,) into the averages; see the class docstring."""
        batch = alpha.detach()
        if self.average is None:
            self.average = batch.clone()
        else:
            self.average = self.decay * self.average + (1 - self.decay) * batch
        return alpha + (self.average - batch)
