"""End-to-end check of ``nnkd bench ann`` on usps, as the bench issue asks.

1. ``nnkd bench convert`` turns ``usps.npz`` (7,291 base / 2,007 queries) into the
   ann-benchmarks HDF5 layout;
2. ``nnkd bench ann`` runs the default grid (exact, faiss HNSW32 and IVF128,Flat, nmslib hnsw
   and sw-graph) with ``--threads 2 --save-neighbors``, timed as a whole;
3. every run's recall is recomputed here with plain NumPy from the HDF5 arrays and the ids
   the run returned (float64 distances, the ann-benchmarks rule), independently of nnkd's
   distances and ground truth, and compared with the recall nnkd reported.

Writes ``benchmarks/results/bench_usps/`` (results.jsonl, pareto.png, summary.md) and
``benchmarks/results/bench_usps.md``. Usage: ``python benchmarks/bench_usps.py`` (about 5 minutes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 0.005
BUDGET_S = 600.0


def numpy_recall(base: np.ndarray, queries: np.ndarray, ids: np.ndarray, k: int, eps: float = 1e-3) -> float:
    """ann-benchmarks recall from scratch: true k-th distance by a full float64 distance matrix."""
    b, q = base.astype(np.float64), queries.astype(np.float64)
    full = np.sqrt(np.maximum((q * q).sum(1)[:, None] - 2 * q @ b.T + (b * b).sum(1)[None], 0))
    kth = np.sort(full, axis=1)[:, k - 1]
    got = np.linalg.norm(b[ids] - q[:, None, :], axis=2)           # (n_queries, k), exact differences
    return float(np.mean(np.sum(got <= kth[:, None] + eps, axis=1) / k))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "usps.npz")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_usps")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found")
    if args.out.exists():
        shutil.rmtree(args.out)
    nnkd = [sys.executable, "-m", "nnkd"]
    with tempfile.TemporaryDirectory() as tmp:
        hdf5 = Path(tmp) / "usps.hdf5"
        subprocess.run([*nnkd, "bench", "convert", str(args.data), str(hdf5)], check=True)
        start = time.perf_counter()
        subprocess.run([*nnkd, "bench", "ann", "--dataset", str(hdf5), "--threads", str(args.threads),
                        "--save-neighbors", "--out", str(args.out)], check=True)
        wall = time.perf_counter() - start
        with h5py.File(hdf5) as f:
            base, queries = f["train"][:], f["test"][:]
    rows = [json.loads(line) for line in (args.out / "results.jsonl").read_text().splitlines()]
    checks = []
    for r in rows:
        if "error" in r:
            checks.append((r, None))
            continue
        ids = np.load(args.out / r["neighbors_file"])["ind"]
        checks.append((r, numpy_recall(base, queries, ids, r["k"])))
    shutil.rmtree(args.out / "neighbors")            # large; the check above is what they were for
    worst = max(abs(r["recall"] - ours) for r, ours in checks if ours is not None)
    lines = ["# `nnkd bench ann` on usps: default grid, timed, recall checked with NumPy", "",
             f"`nnkd bench convert usps.npz` ({base.shape[0]:,} base / {queries.shape[0]:,} queries, "
             f"{base.shape[1]} dims), then `nnkd bench ann --threads {args.threads}` with the default grid "
             f"(one query at a time, best of 3 runs): **{wall:.0f} s** wall clock for {len(rows)} runs "
             f"(target <= {BUDGET_S:.0f} s). Recall recomputed in NumPy from the ids each run returned: "
             f"largest difference **{worst:.4f}** (target <= {TOLERANCE}).", "",
             "| algorithm | parameters | recall (nnkd) | recall (NumPy) | QPS | p50 ms | p99 ms |",
             "|---|---|---|---|---|---|---|"]
    for r, ours in checks:
        params = ", ".join(f"{k}={v}" for k, v in {**r["build"], **r["query"]}.items()) or "-"
        if ours is None:
            lines.append(f"| {r['algorithm']} | {params} | failed: {r['error']} | | | | |")
            continue
        lines.append(f"| {r['algorithm']} | {params} | {r['recall']:.4f} | {ours:.4f} | {r['qps']:,.0f} | "
                     f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
    lines += ["", "Plot and per-algorithm summary: `bench_usps/pareto.png`, `bench_usps/summary.md`.", ""]
    (args.out.parent / "bench_usps.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if worst <= TOLERANCE and wall <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
