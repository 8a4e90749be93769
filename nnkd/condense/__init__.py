"""Nets, margin-regularized condensing (KSU, GKN), baselines (Hart CNN, FCNN), bounds."""

from nnkd.condense.bounds import compression_bound, holdout_bound
from nnkd.condense.nets import GreedyPermutation, greedy_permutation

__all__ = ["GreedyPermutation", "compression_bound", "greedy_permutation", "holdout_bound"]
