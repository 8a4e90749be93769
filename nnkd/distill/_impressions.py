"""Data impressions (Nayak et al., ICML 2019): a transfer set synthesised from the teacher alone."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state

#: The per-row min-max normalisation gives each class's least similar class a similarity of
#: exactly 0, which is not a valid Dirichlet concentration: similarities are floored here.
SIMILARITY_FLOOR = 1e-3


def class_similarity(weights) -> np.ndarray:
    """Class similarity from a final linear layer: ``C = W W^T`` on unit-length class weight
    vectors, each row min-max normalised to [0, 1] (1 on the diagonal).

    Parameters
    ----------
    weights : array-like of shape (n_classes, n_hidden)
        Row ``k``: the weights of the logit of class ``k`` (``torch.nn.Linear.weight``).

    Returns
    -------
    similarity : ndarray of shape (n_classes, n_classes), float64
    """
    W = np.asarray(weights, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] < 2 or not np.isfinite(W).all():
        raise ValueError(f"weights must be a finite (n_classes >= 2, n_hidden) matrix; got shape {W.shape}.")
    norms = np.linalg.norm(W, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"weights has all-zero rows for classes {np.flatnonzero(norms[:, 0] == 0).tolist()}; "
                         "class similarity is undefined for them.")
    S = (W / norms) @ (W / norms).T
    lo, hi = S.min(axis=1, keepdims=True), S.max(axis=1, keepdims=True)
    if (hi - lo <= 0).any():
        raise ValueError("every class weight vector points the same way; the final layer carries no class similarity.")
    return (S - lo) / (hi - lo)


def dirichlet_concentration(similarity_row: np.ndarray, beta: float) -> np.ndarray:
    """``beta * c_k`` (``c_k`` floored at :data:`SIMILARITY_FLOOR`): the concentration of the
    Dirichlet the targets of class ``k`` are drawn from. ``beta`` scales it *after* the
    normalisation (the official code normalises again afterwards, which cancels ``beta``):
    a large ``beta`` gives targets near ``c_k / sum(c_k)``, a small one sparse, peaked targets."""
    return beta * np.maximum(np.asarray(similarity_row, dtype=np.float64), SIMILARITY_FLOOR)


class DataImpressions:
    """Synthesise a transfer set from a frozen teacher: Zero-Shot Knowledge Distillation's data
    impressions.

    For each class ``k`` and each ``beta`` in ``betas``, targets ``y ~ Dir(beta * c_k)`` are
    drawn (``c_k``: row ``k`` of :func:`class_similarity` of the teacher's final linear layer),
    and inputs ``x`` start from noise and are optimised with Adam to minimise the
    cross-entropy between ``y`` and ``softmax(teacher_logits(x) / temperature)``, the teacher
    frozen in eval mode. Each class gets ``n_per_class`` impressions, split evenly across
    ``betas``.

    Parameters
    ----------
    teacher : nnkd.teachers.TorchTeacher
        Gradients with respect to the inputs are needed, so the teacher must be a torch model
        (a ``CallableTeacher`` cannot be differentiated).
    n_per_class : int, default=1000
    betas : sequence of float, default=(1.0, 0.1)
        Scales of the Dirichlet concentration (the paper's two).
    temperature : float, default=20.0
    steps : int, default=1500
        Adam steps per impression.
    lr : float, default=0.01
        Adam's step size, in units of the input range when ``input_range`` is given (inputs
        are optimised in the unit box mapped onto the range), else in input units.
    batch_size : int, default=512
        Impressions optimised together (each row's loss is independent of the others').
    input_range : (low, high), default=None
        Clamp inputs into ``[low, high]`` (scalars or per-feature arrays), e.g. the pixel range
        of the data the teacher was trained on; impressions then start uniform in the range.
        ``None``: no clamp, start from a standard normal.
    n_features : int, default=None
        Input width; default from per-feature ``input_range`` arrays or the first
        ``torch.nn.Linear``'s ``in_features``.
    weights : array-like of shape (n_classes, n_hidden), default=None
        Class weights of the final layer; default: the last ``torch.nn.Linear`` of the model.
    random_state : int, RandomState instance or None, default=None
        Seeds the targets and the starting rows (``None``: fresh randomness).
    verbose : bool, default=False
        Progress bar over optimisation steps (stderr).

    Attributes
    ----------
    similarity_ : ndarray of shape (n_classes, n_classes)
    weights_source_ : str
        The layer the class weights came from (``"weights="`` when given).
    targets_ : ndarray of shape (n_impressions, n_classes), float64
        Sampled Dirichlet targets (set by :meth:`generate`).
    row_class_, row_beta_ : ndarray of shape (n_impressions,)
        Class ``k`` and ``beta`` each target was drawn for.
    loss_ : ndarray of shape (n_impressions,)
        Final cross-entropy of each impression with its target.
    target_agreement_ : float
        Share of impressions the teacher assigns to their target's most probable class. Below
        0.5, :meth:`generate` warns: the optimisation did not reach the targets, and a student
        fitted to them learns little (more steps or a larger ``lr`` do not always help; see
        the data-free rows of ``benchmarks/results/trees.md``).

    References
    ----------
    .. [1] G. K. Nayak, K. R. Mopuri, V. Shaj, R. V. Babu and A. Chakraborty, "Zero-Shot
       Knowledge Distillation in Deep Networks", ICML 2019.
    """

    def __init__(self, teacher, n_per_class: int = 1000, *, betas: Sequence[float] = (1.0, 0.1),
                 temperature: float = 20.0, steps: int = 1500, lr: float = 0.01, batch_size: int = 512,
                 input_range: tuple | None = None, n_features: int | None = None, weights=None,
                 random_state=None, verbose: bool = False):
        from nnkd.teachers import TorchTeacher

        if not isinstance(teacher, TorchTeacher):
            raise TypeError(f"DataImpressions needs a TorchTeacher (gradients with respect to the inputs); got "
                            f"{type(teacher).__name__}. Wrap the torch.nn.Module in nnkd.teachers.TorchTeacher.")
        for name, value in (("n_per_class", n_per_class), ("steps", steps), ("batch_size", batch_size)):
            if not isinstance(value, Integral) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer.")
        betas = tuple(float(b) for b in betas)
        if not betas or any(not b > 0 for b in betas) or len(betas) > n_per_class:
            raise ValueError(f"betas={betas} must be 1 to n_per_class={n_per_class} positive numbers.")
        for name, value in (("temperature", temperature), ("lr", lr)):
            if not isinstance(value, Real) or not value > 0:
                raise ValueError(f"{name}={value!r} must be > 0.")
        self.teacher, self.n_per_class, self.betas = teacher, int(n_per_class), betas
        self.temperature, self.steps, self.lr, self.batch_size = float(temperature), int(steps), float(lr), int(batch_size)
        self.random_state, self.verbose = random_state, verbose
        if weights is None:
            self.weights_source_, W = teacher.classifier_layer()
            W = W.astype(np.float64)
        else:
            self.weights_source_, W = "weights=", np.asarray(weights, dtype=np.float64)
        self.similarity_ = class_similarity(W)
        self.n_features = self._input_width(n_features, input_range)
        self.input_range = self._check_range(input_range)

    def _input_width(self, n_features, input_range) -> int:
        if n_features is not None:
            if not isinstance(n_features, Integral) or n_features < 1:
                raise ValueError(f"n_features={n_features!r} must be a positive integer.")
            return int(n_features)
        if input_range is not None:
            widths = {np.size(bound) for bound in input_range} - {1}
            if len(widths) == 1:
                return widths.pop()
        import torch

        first = next((m for m in self.teacher.model.modules() if isinstance(m, torch.nn.Linear)), None)
        if first is None:
            raise ValueError("cannot tell the teacher's input width: pass n_features=.")
        return int(first.in_features)

    def _check_range(self, input_range):
        if input_range is None:
            return None
        if len(input_range) != 2:
            raise ValueError(f"input_range must be (low, high); got {input_range!r}.")
        low, high = (np.broadcast_to(np.asarray(b, dtype=np.float32), (self.n_features,)).copy()
                     for b in input_range)
        if not (np.isfinite(low).all() and np.isfinite(high).all()) or (low > high).any():
            raise ValueError("input_range must hold finite bounds with low <= high, scalars or one per feature "
                             f"({self.n_features}).")
        return low, high

    def _rng(self, stream: int) -> np.random.Generator:
        """Generator ``stream`` of this run: fixed by an int ``random_state``, fresh for ``None``."""
        if isinstance(self.random_state, Integral):
            return np.random.default_rng(int(self.random_state) + stream)
        return np.random.default_rng(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def targets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sampled targets ``(Y, row_class, row_beta)``: ``n_per_class`` rows per class, split
        evenly across ``betas`` (the first betas take the remainder)."""
        rng = self._rng(0)
        n_classes = self.similarity_.shape[0]
        counts = np.full(len(self.betas), self.n_per_class // len(self.betas))
        counts[:self.n_per_class % len(self.betas)] += 1
        Y, row_class, row_beta = [], [], []
        for k in range(n_classes):
            for beta, m in zip(self.betas, counts, strict=True):
                Y.append(rng.dirichlet(dirichlet_concentration(self.similarity_[k], beta), size=int(m)))
                row_class.append(np.full(m, k))
                row_beta.append(np.full(m, beta))
        return np.concatenate(Y), np.concatenate(row_class), np.concatenate(row_beta)

    def generate(self) -> tuple[np.ndarray, np.ndarray]:
        """Optimise the impressions.

        Returns
        -------
        X : ndarray of shape (n_classes * n_per_class, n_features), float32
            The impressions (a transfer set for :class:`NNDistiller` or :class:`TreeDistiller`).
        Y : ndarray of shape (n_classes * n_per_class, n_classes), float64
            The Dirichlet targets they were optimised to match at ``temperature``.
        """
        import torch
        from tqdm.auto import tqdm

        Y, self.row_class_, self.row_beta_ = self.targets()
        self.targets_ = Y
        rng = self._rng(1)
        n = Y.shape[0]
        if self.input_range is None:
            U = rng.standard_normal((n, self.n_features)).astype(np.float32)
            low, width = np.zeros(self.n_features, np.float32), np.ones(self.n_features, np.float32)
        else:
            U = rng.random((n, self.n_features), dtype=np.float32)
            low, width = self.input_range[0], self.input_range[1] - self.input_range[0]
        model, device = self.teacher.model, self.teacher.device
        model.eval()
        low_t, width_t = torch.from_numpy(low).to(device), torch.from_numpy(width).to(device)
        flags = [p.requires_grad for p in model.parameters()]
        losses = np.empty(n)
        agree = np.empty(n, dtype=bool)
        chunks = range(0, n, self.batch_size)
        bar = tqdm(total=len(chunks) * self.steps, desc="data impressions", unit="step", disable=not self.verbose)
        try:
            for p in model.parameters():           # frozen teacher: gradients flow to the inputs only
                p.requires_grad_(False)
            for a in chunks:
                u = torch.from_numpy(U[a:a + self.batch_size]).to(device).requires_grad_(True)
                y = torch.from_numpy(Y[a:a + self.batch_size].astype(np.float32)).to(device)
                opt = torch.optim.Adam([u], lr=self.lr)
                for _ in range(self.steps):
                    loss = self._loss(model(low_t + width_t * u), y)
                    opt.zero_grad()
                    loss.mean().backward()
                    opt.step()
                    if self.input_range is not None:
                        with torch.no_grad():
                            u.clamp_(0.0, 1.0)
                    bar.update(1)
                with torch.no_grad():
                    x = low_t + width_t * u
                    logits = model(x)
                    losses[a:a + len(x)] = self._loss(logits, y).cpu().numpy()
                    agree[a:a + len(x)] = (logits.argmax(1) == y.argmax(1)).cpu().numpy()
                U[a:a + self.batch_size] = x.cpu().numpy()
        finally:
            bar.close()
            for p, flag in zip(model.parameters(), flags, strict=True):
                p.requires_grad_(flag)
        self.loss_ = losses
        X = np.ascontiguousarray(U, dtype=np.float32)
        if not np.isfinite(X).all():
            raise ValueError("impressions diverged to NaN or infinity; lower lr or pass input_range to clamp them.")
        self.target_agreement_ = float(agree.mean())
        if self.target_agreement_ < 0.5:
            warnings.warn(f"the teacher assigns only {100 * self.target_agreement_:.1f}% of the impressions to their "
                          f"target's most probable class: the optimisation did not reach the targets in {self.steps} "
                          f"steps at lr={self.lr}. Raise steps or lr; if that does not help, the teacher may not "
                          "reach every class inside input_range.", UserWarning, stacklevel=2)
        return X, Y

    def _loss(self, logits, y):
        import torch

        if logits.ndim != 2 or logits.shape[1] != y.shape[1]:
            raise ValueError(f"the teacher returns logits of shape {tuple(logits.shape)} but its final layer "
                             f"({self.weights_source_}) has {y.shape[1]} classes; pass weights= for the layer "
                             "that produces the logits.")
        return -(y * torch.log_softmax(logits / self.temperature, dim=1)).sum(dim=1)
