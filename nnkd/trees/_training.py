"""The training loop of a soft decision tree: Adam with a cosine learning-rate schedule on the
path-weighted cross-entropy plus the balance penalty."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from nnkd.trees._module import SoftDecisionTree
from nnkd.trees._objective import (
    RunningSplit,
    balance_penalty,
    leaf_cross_entropy,
    penalty_weights,
    split_fractions,
)


def tree_objective(module: SoftDecisionTree, x: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                   running: RunningSplit | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy term, penalty term) of one batch; ``running=None`` uses the batch's own
    split fractions (no running average)."""
    right, reach, leaves = module.routing(x)
    ce = leaf_cross_entropy(leaves, module.leaf_log_probs(), targets)
    alpha = split_fractions(right, reach)
    if running is not None:
        alpha = running.update(alpha)
    return ce, balance_penalty(alpha, weights)


def train_tree(module: SoftDecisionTree, X: np.ndarray, T: np.ndarray, *, penalty: float, penalty_decay: float,
               ema: float, epochs: int, lr: float, batch_size: int, seed: int,
               augment: Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]] | None = None,
               progress: bool = False) -> list[float]:
    """Train ``module`` in place on rows ``X`` (float32) with target distributions ``T``.

    ``augment(xb, rng) -> (x_aug, t_aug)`` adds perturbed rows and their targets to every batch
    (same space as ``X``). Returns the mean objective of each epoch.
    """
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    Xt, Tt = torch.from_numpy(X), torch.from_numpy(np.ascontiguousarray(T, dtype=np.float32))
    weights = torch.as_tensor(penalty_weights(module.depth, penalty, penalty_decay), dtype=torch.float32)
    running = RunningSplit(module.depth, ema)
    n = X.shape[0]
    steps = max(1, math.ceil(n / batch_size))
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
    history = []
    module.train()
    for _ in tqdm(range(epochs), desc="soft tree", unit="epoch", disable=not progress):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(steps):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            xb, tb = Xt[idx], Tt[idx]
            if augment is not None:
                xa, ta = augment(xb.numpy(), rng)
                xb = torch.cat((xb, torch.from_numpy(np.ascontiguousarray(xa, dtype=np.float32))))
                tb = torch.cat((tb, torch.from_numpy(np.ascontiguousarray(ta, dtype=np.float32))))
            ce, pen = tree_objective(module, xb, tb, weights, running)
            loss = ce + pen
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        history.append(total / steps)
    module.eval()
    return history
