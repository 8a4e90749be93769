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


def memory_batches(X: np.ndarray, T: np.ndarray, y_codes: np.ndarray | None, batch_size: int, seed: int):
    """The mini-batches of in-memory rows: ``(steps, batches)``, where ``batches(epoch)``
    yields ``(idx, xb, tb, yb)`` tensors over a fresh permutation (``yb`` ``None`` without
    labels; ``idx`` the rows, for per-row SLaM estimates)."""
    gen = torch.Generator().manual_seed(seed)
    Xt, Tt = torch.from_numpy(X), torch.from_numpy(T.astype(np.float32))
    yt = None if y_codes is None else torch.from_numpy(y_codes.astype(np.int64))
    n = X.shape[0]
    steps = max(1, math.ceil(n / batch_size))

    def batches(epoch: int):
        perm = torch.randperm(n, generator=gen)
        for s in range(steps):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            yield idx, Xt[idx], Tt[idx], None if yt is None else yt[idx]

    return steps, batches


def train_prototypes(module: ProtoNNModule, X: np.ndarray | None, T: np.ndarray | None, *, temperature: float,
                     relabel=None, augment=None, y_codes: np.ndarray | None = None, alpha: float = 0.0,
                     epochs: int = 100, lr: float = 0.01, batch_size: int = 512, seed: int = 0,
                     slam: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = False,
                     on_epoch=None, source=None) -> list[float]:
    """Minimise the KD loss (plus ``alpha`` x cross-entropy on ``y_codes``) with Adam and a
    cosine learning-rate schedule.

    The rows are ``X`` with targets ``T`` (and ``y_codes``), or, with ``source=(steps,
    batches)``, whatever ``batches(epoch)`` yields (see :func:`memory_batches`; the rows of a
    dask array come from :class:`nnkd.distill._stream.PartitionStream`), ``steps`` batches per
    epoch. ``augment(xb, rng) -> x_aug`` makes perturbed copies of a batch (standardised space) which
    ``relabel(x_aug) -> teacher probabilities at temperature`` labels on the fly (function
    matching). ``slam=(alpha, k)`` replaces the KD loss on the transfer rows by SLaM's
    (``y_codes`` of -1 mark unlabelled rows for the cross-entropy). ``on_epoch(epoch)`` is
    called after each epoch (1-based; early stopping's checkpoints). Returns the mean loss
    of each epoch.
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    steps, batches = source if source is not None else memory_batches(X, T, y_codes, batch_size, seed)
    if slam is not None:
        alpha_t, k_t = torch.from_numpy(slam[0].astype(np.float32)), torch.from_numpy(slam[1].astype(np.int64))
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
    history = []
    for epoch in tqdm(range(1, epochs + 1), desc="distill", unit="epoch", disable=not progress, leave=False):
        total, done = 0.0, 0
        for idx, xb, tb, yb in batches(epoch):
            if slam is None:
                loss = soft_target_loss(module(xb), tb, temperature)
            else:
                loss = slam_loss(module(xb), tb, alpha_t[idx], k_t[idx])
            if alpha > 0 and yb is not None and bool((yb >= 0).any()):
                ce = torch.nn.functional.cross_entropy(module(xb), yb, ignore_index=-1)
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
            done += 1
        history.append(total / max(done, 1))
        if on_epoch is not None:
            on_epoch(epoch)
    return history
