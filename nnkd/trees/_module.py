"""``SoftDecisionTree``: Frosst & Hinton's soft binary decision tree as a torch module."""

from __future__ import annotations

import math

import numpy as np
import torch


def node_depths(depth: int) -> np.ndarray:
    """Depth of each inner node of a ``depth``-level tree in breadth-first order (root: 0)."""
    return np.repeat(np.arange(depth), 2 ** np.arange(depth))


class SoftDecisionTree(torch.nn.Module):
    """Inner node ``i`` sends a row right with probability ``sigmoid(beta_i (w_i . x + b_i))``;
    leaf ``l`` holds the class distribution ``Q_l = softmax(phi_l)``.

    Inner nodes are stored breadth-first (children of node ``i``: ``2i + 1`` left, ``2i + 2``
    right); leaves left to right.

    Parameters
    ----------
    n_features, n_classes, depth : int
    beta : "learned" or float, default="learned"
        Inverse temperature of the gates: one learned scalar per inner node (kept positive as
        ``exp(log_beta)``, starting at 1), or the same fixed value for every node.
    """

    def __init__(self, n_features: int, n_classes: int, depth: int, beta: str | float = "learned"):
        super().__init__()
        self.depth = depth
        n_inner = 2 ** depth - 1
        self.gates = torch.nn.Linear(n_features, n_inner)
        if beta == "learned":
            self.log_beta = torch.nn.Parameter(torch.zeros(n_inner))
        else:
            self.register_buffer("log_beta", torch.full((n_inner,), math.log(float(beta))))
        self.leaf_logits = torch.nn.Parameter(torch.zeros(2 ** depth, n_classes))

    def routing(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gate and path probabilities of a batch ``x`` of shape (B, n_features).

        Returns
        -------
        right : Tensor of shape (B, n_inner)
            ``p_i(x)``: probability of taking the right branch at each inner node.
        reach : Tensor of shape (B, n_inner)
            ``P^i(x)``: path probability of arriving at each inner node.
        leaves : Tensor of shape (B, n_leaves)
            ``P^l(x)``: path probability of each leaf (rows sum to 1).
        """
        right = torch.sigmoid(torch.exp(self.log_beta) * self.gates(x))
        mu = x.new_ones(x.shape[0], 1)
        reach = []
        for level in range(self.depth):
            reach.append(mu)
            g = right[:, 2 ** level - 1:2 ** (level + 1) - 1]
            mu = torch.stack((mu * (1 - g), mu * g), dim=2).flatten(1)
        return right, torch.cat(reach, dim=1), mu

    def leaf_log_probs(self) -> torch.Tensor:
        """``log Q``: Tensor of shape (n_leaves, n_classes)."""
        return torch.log_softmax(self.leaf_logits, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Path-weighted mixture of the leaf distributions, Tensor of shape (B, n_classes)."""
        return self.routing(x)[2] @ torch.softmax(self.leaf_logits, dim=1)

    def export(self) -> dict[str, np.ndarray]:
        """Gate weights, biases, betas and leaf distributions as float32 arrays (the Student's fields)."""
        def arr(t):
            return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)
        return {"gate_weights": arr(self.gates.weight), "gate_biases": arr(self.gates.bias),
                "gate_betas": arr(torch.exp(self.log_beta)),
                "leaf_distributions": arr(torch.softmax(self.leaf_logits.double(), dim=1))}
