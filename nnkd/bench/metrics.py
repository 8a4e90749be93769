"""Search-quality and latency measures, as ann-benchmarks defines them."""

from __future__ import annotations

import numpy as np

#: ann-benchmarks' slack: a returned neighbour counts if its distance is at most the true
#: k-th distance plus this (absorbs float noise and ties at the k-th place).
RECALL_EPSILON = 1e-3


def recall_at_k(dist: np.ndarray, true_dist: np.ndarray, k: int, epsilon: float = RECALL_EPSILON) -> float:
    """Recall@k by the ann-benchmarks rule.

    Parameters
    ----------
    dist : ndarray of shape (n_queries, >= k)
        Distances returned by the index, ascending per row.
    true_dist : ndarray of shape (n_queries, >= k)
        Ground-truth distances, ascending per row.
    k : int
    epsilon : float, default=1e-3

    Returns
    -------
    recall : float
        Mean over queries of ``#{j < k : dist[i, j] <= true_dist[i, k - 1] + epsilon} / k``.
    """
    dist, true_dist = np.asarray(dist), np.asarray(true_dist)
    if dist.ndim != 2 or true_dist.ndim != 2 or dist.shape[0] != true_dist.shape[0]:
        raise ValueError(f"dist {dist.shape} and true_dist {true_dist.shape} must be 2-D with one row per query.")
    if not 1 <= k <= min(dist.shape[1], true_dist.shape[1]):
        raise ValueError(f"k={k} must be in [1, {min(dist.shape[1], true_dist.shape[1])}].")
    threshold = true_dist[:, k - 1:k] + epsilon
    return float(np.mean(np.sum(dist[:, :k] <= threshold, axis=1) / k))


def latency_percentiles(seconds: np.ndarray) -> dict[str, float]:
    """p50 / p99 / mean of per-query latencies, in milliseconds."""
    ms = 1e3 * np.asarray(seconds, dtype=np.float64)
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


def pareto_frontier(recall: np.ndarray, qps: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats in both recall and QPS, by increasing recall."""
    recall, qps = np.asarray(recall, dtype=float), np.asarray(qps, dtype=float)
    order = np.lexsort((-qps, -recall))            # recall descending, then QPS descending
    keep, best = [], -np.inf
    for i in order:
        if qps[i] > best:
            keep.append(i)
            best = qps[i]
    return np.array(keep[::-1], dtype=np.int64)
