"""Benchmarking: ann-benchmarks-style search runs, downstream k-NN accuracy, condensing.

Used by ``nnkd bench`` (results go to ``results.jsonl``, one JSON object per run, resumable;
plots and ``summary.md``) and by the project's ``benchmarks/*.py`` scripts, which take their
datasets (:mod:`nnkd.bench.suite`), timings (:mod:`nnkd.bench.timing`), tables
(:mod:`nnkd.bench.report`) and provenance record (:func:`provenance`) from here.
"""

from nnkd.bench.data import (
           BenchDataset,
           convert_to_hdf5,
           ensure_ground_truth,
           load_bench_dataset,
           read_npz,
)
from nnkd.bench.metrics import latency_percentiles, pareto_frontier, recall_at_k
from nnkd.bench.report import json_safe, markdown_table, write_report
from nnkd.bench.runner import load_grid, provenance, read_results, run_grid
from nnkd.bench.suite import DATASETS, SEALED_GROUP, TUNING_GROUP, SplitDataset, check_datasets, load_split
from nnkd.bench.timing import Timing, time_call

__all__ = ["BenchDataset", "DATASETS", "SEALED_GROUP", "SplitDataset", "TUNING_GROUP", "Timing", "check_datasets",
           "convert_to_hdf5", "ensure_ground_truth", "json_safe", "latency_percentiles", "load_bench_dataset",
           "load_grid", "load_split", "markdown_table", "pareto_frontier", "provenance", "read_npz", "read_results",
           "recall_at_k", "run_grid", "time_call", "write_report"]
