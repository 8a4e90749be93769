"""A small MLP teacher trained on labelled rows: what the demo and the benchmarks distil."""

from __future__ import annotations

import numpy as np
import torch

from nnkd._core.metrics import check_points
from nnkd.teachers._torch import TorchTeacher


class _MLP(torch.nn.Module):
    def __init__(self, mean: np.ndarray, std: np.ndarray, hidden: tuple[int, ...], n_classes: int):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        layers, width = [], mean.shape[0]
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
            width = h
        self.body = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(width, n_classes)

    def forward(self, x):
        return self.head(self.body((x - self.mean) / self.std))


def train_mlp_teacher(X, y, *, hidden: tuple[int, ...] = (128, 32), epochs: int = 60, lr: float = 2e-3,
                      weight_decay: float = 1e-4, batch_size: int = 64, random_state: int = 0,
                      progress: bool = False) -> TorchTeacher:
    """Train an MLP (inputs standardised inside the model) with Adam and a cosine schedule.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Integer class codes ``0 .. n_classes - 1``.
    hidden : tuple of int, default=(128, 32)
        Hidden widths; the last hidden layer (``"body"``'s output) is the teacher's embedding.

    Returns
    -------
    teacher : TorchTeacher
        ``teacher.model`` is the trained ``torch.nn.Module`` (eval mode).
    """
    from tqdm.auto import tqdm

    X = check_points(X, "X")
    y = np.asarray(y)
    if y.shape != (X.shape[0],) or y.dtype.kind not in "iu" or y.min() < 0:
        raise ValueError("y must hold one non-negative integer class code per row of X.")
    torch.manual_seed(random_state)
    std = X.std(axis=0)
    model = _MLP(X.mean(axis=0), np.where(std > 0, std, 1.0), tuple(hidden), int(y.max()) + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    steps = -(-len(Xt) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    gen = torch.Generator().manual_seed(random_state)
    for _ in tqdm(range(epochs), desc="teacher", unit="epoch", disable=not progress):
        model.train()
        for idx in torch.randperm(len(Xt), generator=gen).split(batch_size):
            loss = torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return TorchTeacher(model.eval(), embedding="body")
