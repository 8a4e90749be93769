"""Benchmarking: ann-benchmarks-style search runs, downstream k-NN accuracy, condensing.

Used by ``nnkd bench``; results go to ``results.jsonl`` (one JSON object per run, resumable),
plots and ``summary.md``.
"""

from nnkd.bench.data import (
           BenchDataset,
           convert_to_hdf5,
           ensure_ground_truth,
           load_bench_dataset,
)
from nnkd.bench.metrics import latency_percentiles, pareto_frontier, recall_at_k
from nnkd.bench.report import write_report
from nnkd.bench.runner import load_grid, provenance, read_results, run_grid

__all__ = ["BenchDataset", "convert_to_hdf5", "ensure_ground_truth", "latency_percentiles", "load_bench_dataset",
           "load_grid", "pareto_frontier", "provenance", "read_results", "recall_at_k", "run_grid", "write_report"]
