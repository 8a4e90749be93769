"""A small MLP teacher trained on labelled rows: what the demo and the benchmarks distil."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state

from nnkd._core.metrics import check_points
from nnkd.teachers._torch import TorchTeacher


class _MLP(torch.nn.Module):
    def __init__(self, mean: np.ndarray, std: np.ndarray, hidden: tuple[int, ...], n_classes: int,
                 dropout: float = 0.0):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        layers, width = [], mean.shape[0]
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU()] + ([torch.nn.Dropout(dropout)] if dropout else [])
            width = h
        self.body = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(width, n_classes)

    def forward(self, x):
        return self.head(self.body((x - self.mean) / self.std))


def train_mlp_teacher(X, y, *, hidden: tuple[int, ...] = (128, 32), epochs: int = 60, lr: float = 2e-3,
                      weight_decay: float = 1e-4, batch_size: int = 64, dropout: float = 0.0,
                      input_noise: float = 0.0, random_state=None, progress: bool = False) -> TorchTeacher:
    """Train an MLP (inputs standardised inside the model) with Adam and a cosine schedule.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Integer class codes ``0 .. n_classes - 1``.
    hidden : tuple of int, default=(128, 32)
        Hidden widths; the last hidden layer (``"body"``'s output) is the teacher's embedding.
    dropout : float, default=0.0
        Dropout after each hidden layer (training only).
    input_noise : float, default=0.0
        Gaussian noise added to training batches, in units of each feature's standard deviation.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, dropout and the batch order (torch's global RNG is left
        untouched; ``None``: fresh randomness).

    Returns
    -------
    teacher : TorchTeacher
        ``teacher.model`` is the trained ``torch.nn.Module`` (eval mode).
    """
    X = check_points(X, "X")
    y = np.asarray(y)
    if y.shape != (X.shape[0],) or y.dtype.kind not in "iu" or y.min() < 0:
        raise ValueError("y must hold one non-negative integer class code per row of X.")
    if not (0.0 <= dropout < 1.0 and input_noise >= 0.0):
        raise ValueError(f"dropout={dropout} must be in [0, 1) and input_noise={input_noise} >= 0.")
    # An int seeds torch as given (reproducing earlier runs); None or a RandomState draws one.
    seed = int(random_state) if isinstance(random_state, Integral) else \
        int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _train(X, y, hidden, epochs, lr, weight_decay, batch_size, dropout, input_noise, seed, progress)


def _train(X, y, hidden, epochs, lr, weight_decay, batch_size, dropout, input_noise, seed, progress) -> TorchTeacher:
    from tqdm.auto import tqdm

    std = X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    model = _MLP(X.mean(axis=0), std, tuple(hidden), int(y.max()) + 1, dropout)
    noise_scale = torch.from_numpy((input_noise * std).astype(np.float32))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    steps = -(-len(Xt) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="teacher", unit="epoch", disable=not progress):
        model.train()
        for idx in torch.randperm(len(Xt), generator=gen).split(batch_size):
            xb = Xt[idx] + noise_scale * torch.randn(len(idx), Xt.shape[1], generator=gen) if input_noise else Xt[idx]
            loss = torch.nn.functional.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return TorchTeacher(model.eval(), embedding="body")
