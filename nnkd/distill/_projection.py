"""The ``space="projection"`` student: a linear projection, prototypes and label vectors
learned jointly (ProtoNN's model, Gupta et al. 2017) by matching the teacher's tempered
distribution."""

from __future__ import annotations

import math

import numpy as np
import torch

from nnkd.distill.losses import slam_loss, soft_target_loss


class ProtoNNModule(torch.nn.Module):
    """``logits(x) = sum_j Z_j exp(-gamma^2 |W x - b_j|^2)``."""

    def __init__(self, W: np.ndarray, B: np.ndarray, Z: np.ndarray, gamma: float):
        super().__init__()
        self.W = torch.nn.Parameter(torch.as_tensor(W, dtype=torch.float32))
        self.B = torch.nn.Parameter(torch.as_tensor(B, dtype=torch.float32))
        self.Z = torch.nn.Parameter(torch.as_tensor(Z, dtype=torch.float32))
        self.log_gamma = torch.nn.Parameter(torch.tensor(math.log(gamma), dtype=torch.float32))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        P = X @ self.W.T
        d2 = (P * P).sum(1, keepdim=True) - 2 * P @ self.B.T + (self.B * self.B).sum(1)
        K = torch.exp(-torch.exp(2 * self.log_gamma) * d2.clamp_min(0))
        return K @ self.Z

    def export(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(W, B, Z, gamma) as float32 arrays and a float."""
        def arr(t):
            return t.detach().cpu().numpy().astype(np.float32)
        return arr(self.W), arr(self.B), arr(self.Z), float(torch.exp(self.log_gamma.detach()).item())


def train_prototypes(module: ProtoNNModule, X: np.ndarray, T: np.ndarray, *, temperature: float,
                     relabel=None, augment=None, y_codes: np.ndarray | None = None, alpha: float = 0.0,
                     epochs: int = 100, lr: float = 0.01, batch_size: int = 512, seed: int = 0,
                     slam: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = False,
                     on_epoch=None) -> list[float]:
    """Minimise the KD loss (plus ``alpha`` x cross-entropy on ``y_codes``) with Adam and a
    cosine learning-rate schedule.

    ``augment(xb, rng) -> x_aug`` makes perturbed copies of a batch (standardised space) which
    ``relabel(x_aug) -> teacher probabilities at temperature`` labels on the fly (function
    matching). ``slam=(alpha, k)`` replaces the KD loss on the transfer rows by SLaM's
    (``y_codes`` of -1 mark unlabelled rows for the cross-entropy). ``on_epoch(epoch)`` is
    called after each epoch (1-based; early stopping's checkpoints). Returns the mean loss
    of each epoch.
    """
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    Xt, Tt = torch.from_numpy(X), torch.from_numpy(T.astype(np.float32))
    yt = None if y_codes is None else torch.from_numpy(y_codes.astype(np.int64))
    if slam is not None:
        alpha_t, k_t = torch.from_numpy(slam[0].astype(np.float32)), torch.from_numpy(slam[1].astype(np.int64))
    n = X.shape[0]
    steps = max(1, math.ceil(n / batch_size))
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
    history = []
    for epoch in tqdm(range(1, epochs + 1), desc="distill", unit="epoch", disable=not progress, leave=False):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(steps):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            xb, tb = Xt[idx], Tt[idx]
            if slam is None:
                loss = soft_target_loss(module(xb), tb, temperature)
            else:
                loss = slam_loss(module(xb), tb, alpha_t[idx], k_t[idx])
            if alpha > 0 and yt is not None and bool((yt[idx] >= 0).any()):
                ce = torch.nn.functional.cross_entropy(module(xb), yt[idx], ignore_index=-1)
                loss = (1 - alpha) * loss + alpha * ce
            if augment is not None:
                xa = np.ascontiguousarray(augment(xb.numpy(), rng), dtype=np.float32)
                ta = torch.from_numpy(relabel(xa).astype(np.float32))
                loss = loss + soft_target_loss(module(torch.from_numpy(xa)), ta, temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        history.append(total / steps)
        if on_epoch is not None:
            on_epoch(epoch)
    return history
