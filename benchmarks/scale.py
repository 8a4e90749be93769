"""Scale-out benchmark: the threaded greedy permutation, Dask condensing by partitions, 10M rows.

Four sections, each run on its own with ``--sections`` (results of earlier runs of the other
sections are kept in the JSON and the table is redrawn):

- ``threads``: :func:`nnkd.greedy_permutation` as KSU calls it (labels, a cap of
  ``--max-prototypes`` centres) on the 1M x 64 mixture with ``n_jobs=1`` and ``n_jobs=2``:
  wall time, speed-up, and whether every output array is identical.
- ``ceiling``: the scan's arithmetic alone (Numba kernels over rows held in cache, and
  over 1M rows streamed from memory) at 1 and 2 threads: what this machine's two cores give
  that work without the algorithm around it, the ceiling of the ``threads`` speed-up.
- ``partitions``: ``MarginCondensedNN(method=...)`` for KSU (``selection="bound"``,
  ``max_prototypes``) and Hart fitted once in one process on the in-memory rows
  (``n_jobs=2``) and then on a dask array of the same rows (read from ``.npy`` by
  partitions) on a fresh ``LocalCluster`` of 2 worker processes x 1 thread for each of 1,
  2, 4, 8 and 16 partitions: test accuracy, bound, prototypes, wall time of ``fit`` and the
  peak resident memory of each worker (``VmHWM`` of the worker process: the cluster is new
  for every run, so the peak is this fit's).
- ``cli``: the 1M and 10M row files condensed (Hart; KSU; ``NAME-cap``: a method with
  KSU's ``--max-prototypes``) with ``nnkd condense --dask local:2`` and bulk-predicted
  with ``nnkd predict --dask local:2``, each a fresh process: wall time, and the peak
  resident memory of the command's process and of each worker
  process (sampled every 0.2 s with psutil over the command's process tree). The
  growth of wall time from 1M to 10M rows is reported (10 = linear).

Data: a mixture of 10 Gaussian classes in 64 dimensions (centres uniform in
``[-10, 10]^64`` from seed 0, ``--std`` 7.5 around them, labels uniform), generated in
blocks of 1M rows (block ``b`` from seed ``(1, b)``) so the 1M file is the first block of
the 10M file; 100,000 test rows from seed 2. Files go to ``--work-dir`` (default: a folder
in the system's temporary directory, about 2.9 GB for 10M rows), never into the repository.

Usage
-----
From the repository root::

    python benchmarks/scale.py                          # everything (over an hour on 2 cores)
    python benchmarks/scale.py --sections threads
    python benchmarks/scale.py --sections ceiling
    python benchmarks/scale.py --sections partitions --partitions 1,2,4
    python benchmarks/scale.py --sections cli --cli-rows 1000000

Thread counts are pinned before numpy is imported (see ``_common.py``). Results:
``benchmarks/results/scale.json`` and ``benchmarks/results/scale.md``; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_OUT_DIR,  # noqa: I001 - must come before numpy: it pins thread counts
    log, machine_meta)

import numpy as np

import nnkd
from nnkd._core.partitions import read_npy_lazily
from nnkd.bench import json_safe, markdown_table
from nnkd.bench.report import fmt, pct

N_FEATURES = 64
N_CLASSES = 10
BLOCK = 1_000_000
N_TEST = 100_000
SECTIONS = ("threads", "ceiling", "partitions", "cli")
RESULTS = "scale"


# --------------------------------------------------------------------------- data

def centres() -> np.ndarray:
    """The mixture's class centres (seed 0)."""
    return np.random.default_rng(0).uniform(-10.0, 10.0, (N_CLASSES, N_FEATURES))


def mixture_block(n: int, seed, std: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of the mixture (float32) and their labels (int64) from ``seed``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    X = centres()[y] + std * rng.standard_normal((n, N_FEATURES))
    return X.astype(np.float32), y.astype(np.int64)


def mixture_files(work: Path, n: int, std: float) -> tuple[Path, Path]:
    """``X_<n>.npy`` and ``y_<n>.npy`` in ``work`` (written block by block unless present)."""
    Xp, yp = work / f"X_{n}_std{std:g}.npy", work / f"y_{n}_std{std:g}.npy"
    if Xp.exists() and yp.exists():
        return Xp, yp
    log(f"writing {n:,} x {N_FEATURES} rows to {work}")
    work.mkdir(parents=True, exist_ok=True)
    X = np.lib.format.open_memmap(str(Xp) + ".tmp", mode="w+", dtype=np.float32, shape=(n, N_FEATURES))
    y = np.lib.format.open_memmap(str(yp) + ".tmp", mode="w+", dtype=np.int64, shape=(n,))
    for b, start in enumerate(range(0, n, BLOCK)):
        stop = min(start + BLOCK, n)
        X[start:stop], y[start:stop] = mixture_block(stop - start, (1, b), std)
    X.flush(), y.flush()
    del X, y
    Path(str(Xp) + ".tmp").rename(Xp)
    Path(str(yp) + ".tmp").rename(yp)
    return Xp, yp


def test_rows(std: float) -> tuple[np.ndarray, np.ndarray]:
    return mixture_block(N_TEST, 2, std)


# --------------------------------------------------------------------------- memory

def _peak_rss_bytes() -> int:
    """Peak resident memory of this process (runs in a worker via ``client.run``).

    ``VmHWM`` belongs to the process's own address space and starts again at ``exec``;
    ``getrusage``'s ``ru_maxrss`` would not do here, as a spawned worker inherits the
    launching process's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM line (this benchmark reads Linux's /proc)")


class TreeMemory:
    """Peak resident memory of a process and of each of its descendants, sampled."""

    def __init__(self, pid: int, every_s: float = 0.2):
        import psutil

        self._root = psutil.Process(pid)
        self._every = every_s
        self.peak: dict[int, int] = {}
        self.kind: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        try:
            procs = [self._root] + self._root.children(recursive=True)
        except psutil.Error:
            return
        for proc in procs:
            try:
                rss = proc.memory_info().rss
                if proc.pid not in self.kind:
                    line = " ".join(proc.cmdline())
                    self.kind[proc.pid] = ("command" if proc.pid == self._root.pid else
                                           "worker" if "spawn_main" in line else "other")
            except psutil.Error:
                continue
            self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._every)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        workers = sorted(v for p, v in self.peak.items() if self.kind.get(p) == "worker")
        command = [v for p, v in self.peak.items() if self.kind.get(p) == "command"]
        return {"command_peak_mb": round(max(command, default=0) / 2**20, 1),
                "worker_peak_mb": [round(v / 2**20, 1) for v in workers]}


# --------------------------------------------------------------------------- sections

def bench_threads(X: np.ndarray, y: np.ndarray, cap: int) -> list[dict[str, Any]]:
    rows, ref = [], None
    for jobs in (1, 2):
        log(f"greedy_permutation {X.shape[0]:,} x {X.shape[1]}, cap {cap}, n_jobs={jobs}")
        start = time.perf_counter()
        g = nnkd.greedy_permutation(X, max_prototypes=cap, labels=y, n_jobs=jobs)
        seconds = time.perf_counter() - start
        if ref is None:
            ref = g
        same = all(np.array_equal(getattr(g, a), getattr(ref, a))
                   for a in ("order", "radius", "owner", "dist", "train_errors"))
        rows.append({"n_jobs": jobs, "rows": X.shape[0], "cap": cap, "seconds": seconds,
                     "speedup": rows[0]["seconds"] / seconds if rows else 1.0, "identical_to_n_jobs_1": same,
                     "centres": int(len(g.order))})
    return rows


def _sweep_kernels():
    """Numba kernels doing the greedy scan's arithmetic (64-d float32 rows, squared
    euclidean distance accumulated in float64, no fused multiply-add): ``cached`` reuses
    each row many times (arithmetic only), ``streamed`` reads every row once per sweep, as
    one step of the scan reads ``X``. What two threads of *this* machine give that work,
    whatever the algorithm around it does."""
    import numba

    @numba.njit(inline="always")
    def dist2(x, q):
        s = 0.0
        for j in range(x.shape[0]):
            t = np.float64(x[j]) - np.float64(q[j])
            s += t * t
        return s

    @numba.njit(parallel=True, fastmath=False, cache=False)
    def cached(X, Q, repeats):
        out = np.empty(X.shape[0])
        for i in numba.prange(X.shape[0]):
            acc = 0.0
            for r in range(repeats):
                acc += dist2(X[i], Q[r % Q.shape[0]])
            out[i] = acc
        return out

    @numba.njit(parallel=True, fastmath=False, cache=False)
    def streamed(X, Q, repeats):
        out = np.zeros(X.shape[0])
        for r in range(repeats):
            q = Q[r % Q.shape[0]]
            for i in numba.prange(X.shape[0]):
                out[i] += dist2(X[i], q)
        return out

    return {"cached": cached, "streamed": streamed}


def bench_ceiling(reps: int = 5) -> list[dict[str, Any]]:
    """Throughput of :func:`_sweep_kernels` at 1 and 2 threads (best of ``reps``): the
    ceiling of the threaded greedy permutation's speed-up on this machine, with the rows in
    cache (2,048 rows, each reused 20,000 times) and streamed from memory (1M rows, 8 sweeps)."""
    import numba

    rng = np.random.default_rng(0)
    Q = rng.standard_normal((16, N_FEATURES)).astype(np.float32)
    kernels = _sweep_kernels()
    out = []
    for kind, rows, repeats in (("cached", 2048, 20000), ("streamed", BLOCK, 8)):
        X = rng.standard_normal((rows, N_FEATURES)).astype(np.float32)
        kernels[kind](X[:64], Q, 1)                  # compile outside the timing
        first = None
        for threads in (1, 2):
            numba.set_num_threads(threads)
            best = np.inf
            for _ in range(reps):
                start = time.perf_counter()
                kernels[kind](X, Q, repeats)
                best = min(best, time.perf_counter() - start)
            first = first or best
            out.append({"kind": kind, "rows": rows, "repeats": repeats, "threads": threads, "seconds": best,
                        "gdist_per_s": rows * repeats / best / 1e9, "speedup": first / best})
            log(f"distance sweep ({kind}, {rows:,} rows), {threads} thread(s): {best:.3f} s")
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return out


def estimator(method: str, cap: int, n_jobs: int):
    if method == "ksu":
        return nnkd.MarginCondensedNN(method="ksu", selection="bound", max_prototypes=cap, n_jobs=n_jobs)
    return nnkd.MarginCondensedNN(method=method, n_jobs=n_jobs, random_state=0)   # Hart's visit order


def summary(clf, Xt: np.ndarray, yt: np.ndarray) -> dict[str, Any]:
    return {"test_accuracy": float(clf.score(Xt, yt)), "bound": float(clf.bound_),
            "bound_vacuous": bool(clf.bound_vacuous_), "prototypes": int(len(clf.support_)),
            "scale": float(clf.scale_)}


def bench_partitions(Xp: Path, yp: Path, Xt: np.ndarray, yt: np.ndarray, methods: list[str],
                     partitions: list[int], cap: int) -> list[dict[str, Any]]:
    from distributed import Client, LocalCluster

    X, y = np.load(Xp), np.load(yp)
    n = X.shape[0]
    rows = []
    for method in methods:
        log(f"{method}: one process, n_jobs=2")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            clf = estimator(method, cap, 2).fit(X, y)
            seconds = time.perf_counter() - start
        single = {"method": method, "mode": "one process (n_jobs=2)", "partitions": None, "rows": n,
                  "fit_s": seconds, **summary(clf, Xt, yt)}
        rows.append(single)
        for parts in partitions:
            log(f"{method}: {parts} partition(s) on LocalCluster(2 workers x 1 thread)")
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                              dashboard_address=None) as cluster, Client(cluster) as client:
                base = client.run(_peak_rss_bytes)
                Xd = read_npy_lazily(Xp, rows_per_partition=math.ceil(n / parts))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    start = time.perf_counter()
                    clf = estimator(method, cap, 1).fit(Xd, y)
                    seconds = time.perf_counter() - start
                peaks = client.run(_peak_rss_bytes)
            row = {"method": method, "mode": "dask", "partitions": parts, "rows": n, "fit_s": seconds,
                   **summary(clf, Xt, yt),
                   "worker_start_mb": [round(v / 2**20, 1) for v in base.values()],
                   "worker_peak_mb": [round(v / 2**20, 1) for v in peaks.values()]}
            row["accuracy_diff_pts"] = 100 * (row["test_accuracy"] - single["test_accuracy"])
            row["bound_rel_diff"] = row["bound"] / single["bound"] - 1 if single["bound"] > 0 else None
            rows.append(row)
            log(f"  {seconds:.1f} s, acc {row['test_accuracy']:.4f} (one process {single['test_accuracy']:.4f}), "
                f"bound {row['bound']:.4f} ({single['bound']:.4f})")
    return rows


def run_cli(args: list[str]) -> tuple[float, dict[str, Any]]:
    """Run ``python -m nnkd ARGS``: wall time and the process tree's peak memory."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nnkd", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    memory = TreeMemory(proc.pid)
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    mem = memory.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"nnkd {' '.join(args)} failed ({proc.returncode}):\n{err[-3000:]}")
    return seconds, {**mem, "stdout": out[-2000:]}


def cli_options(method: str, cap: int) -> list[str]:
    """``nnkd condense`` options of a CLI row: ``ksu`` (``--selection bound``, capped), a method
    name as is (its defaults, no cap), or ``NAME-cap`` (the method with KSU's cap)."""
    name = method.removesuffix("-cap")
    options = ["--method", name]
    if name == "ksu":
        options += ["--selection", "bound"]
    if name == "ksu" or method.endswith("-cap"):
        options += ["--max-prototypes", str(cap)]
    return options


def bench_cli(work: Path, sizes: list[int], methods: list[str], Xt: np.ndarray, yt: np.ndarray,
              std: float, cap: int, on_row=None) -> list[dict[str, Any]]:
    """The CLI rows; ``on_row(rows)`` after each one, so a run of hours keeps what it measured."""
    from nnkd.student import load_student

    rows = []
    for n in sizes:
        Xp, yp = mixture_files(work, n, std)
        y = np.load(yp, mmap_mode="r")
        for method in methods:
            out = work / f"{method}_{n}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            options = cli_options(method, cap)
            log(f"nnkd condense {Xp.name} --dask local:2 {' '.join(options)}")
            fit_s, fit_mem = run_cli(["condense", str(Xp), "--labels", str(yp), "--dask", "local:2", *options,
                                      "--validation-fraction", "0", "--quiet", "--out", str(out)])
            report = json.loads((out / "report.json").read_text())
            preds = work / f"pred_{method}_{n}.npy"
            log(f"nnkd predict {out.name}/student {Xp.name} --dask local:2")
            pred_s, pred_mem = run_cli(["predict", str(out / "student"), str(Xp), "--dask", "local:2",
                                        "--out", str(preds)])
            predicted = np.load(preds, mmap_mode="r")
            student = load_student(out / "student")
            rows.append({"method": method, "rows": n, "condense_s": fit_s, "predict_s": pred_s,
                         "prototypes": report.get("n_prototypes"), "bound": report.get("bound"),
                         "bound_vacuous": report.get("bound_vacuous"), "partitions": report.get("n_partitions"),
                         "train_accuracy": float(np.mean(predicted == y)),
                         "test_accuracy": float(np.mean(student.predict(Xt) == yt)),
                         "condense_memory": {k: v for k, v in fit_mem.items() if k != "stdout"},
                         "predict_memory": {k: v for k, v in pred_mem.items() if k != "stdout"}})
            log(f"  condense {fit_s:.1f} s, predict {pred_s:.1f} s, test acc {rows[-1]['test_accuracy']:.4f}")
            preds.unlink()
            if on_row is not None:
                on_row(rows)
    return rows


# --------------------------------------------------------------------------- report

def mb_list(values) -> str:
    return " / ".join(f"{v:,.0f}" for v in values) if values else "–"


def table_section(title: str, intro: str, header: list[str], body: list[list[str]]) -> list[str]:
    """A titled table of the report (lines, ending with a blank one)."""
    return [title, "", intro, ""] + markdown_table(header, body) + [""]


def render(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    lines = ["# Scale-out: threads, Dask partitions, 10M rows", "",
             f"Generated by `benchmarks/scale.py` (sections run {', '.join(sorted(meta.get('runs', {})))}); raw "
             "numbers in `scale.json` (with each run's machine, versions and arguments). Data: a mixture of "
             f"{N_CLASSES} Gaussian classes in {N_FEATURES} dimensions (std {meta.get('std')}, see the script's "
             f"docstring); test accuracy on {N_TEST:,} rows drawn apart from the training rows. Memory in MiB.", ""]
    if results.get("threads"):
        lines += table_section(
            "## Threaded greedy permutation",
            "`greedy_permutation(X, max_prototypes=cap, labels=y, n_jobs=...)` (KSU's call) on the training file.",
            ["rows", "cap", "n_jobs", "seconds", "speed-up", "output identical to n_jobs=1"],
            [[f"{r['rows']:,}", str(r["cap"]), str(r["n_jobs"]), fmt(r["seconds"], ".1f"), fmt(r["speedup"], ".2f"),
              "yes" if r["identical_to_n_jobs_1"] else "NO"] for r in results["threads"]])
    if results.get("ceiling"):
        lines += table_section(
            "### What two threads give the scan's work on this machine",
            "The greedy scan's inner work alone (64-d float32 rows, squared distance accumulated in float64, no "
            "FMA) in a Numba `prange`, the same total work split over the threads (best of 5): *cached*, 2,048 rows each reused "
            "20,000 times (arithmetic only); *streamed*, 1M rows read once per sweep (8 sweeps), as each step of "
            "the scan reads the training rows. The ceiling of the speed-up above, whatever the algorithm.",
            ["rows", "threads", "seconds", "10^9 distances / s", "speed-up"],
            [[f"{r['kind']}, {r['rows']:,}", str(r["threads"]), fmt(r["seconds"], ".3f"), fmt(r["gdist_per_s"], ".3f"),
              fmt(r["speedup"], ".2f")] for r in results["ceiling"]])
    if results.get("partitions"):
        lines += ["## Condensing by partitions on a LocalCluster", "",
                  "One process: the estimator on the in-memory rows with `n_jobs=2`. Dask: the same estimator "
                  "(`n_jobs=1`) on the `.npy` file read by partitions, on a fresh `LocalCluster(n_workers=2, "
                  "threads_per_worker=1)` per row; worker memory is each worker process's peak (`VmHWM`), "
                  "after starting at the value in brackets. KSU: `selection=\"bound\"`, `max_prototypes`: the "
                  "traversal of all rows stops there, the size is chosen by the bound over all rows; Hart: defaults, "
                  "`random_state=0` (its visit order).", ""]
        body = []
        for r in results["partitions"]:
            body.append([r["method"], r["mode"] if r["partitions"] is None else f"dask, {r['partitions']} partitions",
                         pct(r["test_accuracy"]),
                         "–" if r.get("accuracy_diff_pts") is None else fmt(r["accuracy_diff_pts"], "+.2f"),
                         fmt(r["bound"], ".4f") + (" (vacuous)" if r["bound_vacuous"] else ""),
                         "–" if r.get("bound_rel_diff") is None else fmt(100 * r["bound_rel_diff"], "+.1f") + " %",
                         f"{r['prototypes']:,}", fmt(r["fit_s"], ".1f"),
                         "–" if "worker_peak_mb" not in r else
                         f"{mb_list(r['worker_peak_mb'])} ({mb_list(r['worker_start_mb'])})"])
        lines += markdown_table(["method", "run", "test acc %", "Δ acc (pts)", "bound", "Δ bound", "prototypes",
                                 "fit s", "worker peak MiB (start)"], body)
        lines.append("")
    if results.get("cli"):
        lines += ["## The CLI on `.npy` files with `--dask local:2`", "",
                  "`nnkd condense X.npy --labels y.npy --dask local:2 --method M --validation-fraction 0` "
                  "(KSU: `--selection bound --max-prototypes cap`; `hart-cap`: Hart with `--max-prototypes cap`) and "
                  "`nnkd predict STUDENT X.npy --dask local:2` "
                  "over all training rows, each a fresh process (its own LocalCluster, 2 workers x 1 thread); "
                  "the files are read by partitions of 250,000 rows. Memory: peak of the command's process / "
                  "peak of each worker process. Growth: wall time over the same method's smallest row (linear: the "
                  "ratio of the row counts, "
                  "10 from 1M to 10M).", ""]
        base = {}
        for r in results["cli"]:
            if r["method"] not in base or r["rows"] < base[r["method"]]["rows"]:
                base[r["method"]] = r
        body = []
        for r in sorted(results["cli"], key=lambda r: (r["method"], r["rows"])):
            b = base.get(r["method"])
            growth = (lambda key: "–" if b is None or b is r else fmt(r[key] / b[key], ".1f"))
            body.append([r["method"], f"{r['rows']:,}", str(r["partitions"]), f"{r['prototypes']:,}",
                         pct(r["test_accuracy"]), pct(r["train_accuracy"]),
                         fmt(r["bound"], ".4f") + (" (vacuous)" if r["bound_vacuous"] else ""),
                         fmt(r["condense_s"], ".0f"), growth("condense_s"),
                         f"{r['condense_memory']['command_peak_mb']:,.0f} / "
                         f"{mb_list(r['condense_memory']['worker_peak_mb'])}",
                         fmt(r["predict_s"], ".0f"), growth("predict_s"),
                         f"{r['predict_memory']['command_peak_mb']:,.0f} / "
                         f"{mb_list(r['predict_memory']['worker_peak_mb'])}"])
        lines += markdown_table(["method", "rows", "partitions", "prototypes", "test acc %", "train acc %", "bound",
                                 "condense s", "growth", "condense memory", "predict s", "growth",
                                 "predict memory"], body)
        lines.append("")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {SECTIONS}")
    parser.add_argument("--threads", type=int, default=2, help="pinned thread count (see _common.py)")
    parser.add_argument("--std", type=float, default=7.5, help="class spread of the mixture")
    parser.add_argument("--max-prototypes", type=int, default=5000, help="KSU's cap (and the greedy run's)")
    parser.add_argument("--methods", default="ksu,hart",
                        help="condensing methods (ksu, hart, fcnn; CLI section also NAME-cap: with KSU's cap)")
    parser.add_argument("--partitions", default="1,2,4,8,16", help="partition counts of the partitions section")
    parser.add_argument("--rows", type=int, default=BLOCK, help="training rows of the threads and partitions sections")
    parser.add_argument("--cli-rows", default="1000000,10000000", help="row counts of the CLI section")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "nnkd-scale",
                        help="where the generated .npy files and students go")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; use {SECTIONS}")
    methods = [m for m in args.methods.split(",") if m]
    out_json = args.out_dir / f"{RESULTS}.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    if results.get("meta", {}).get("std") not in (None, args.std):
        results = {}                       # another mixture: earlier sections no longer compare
    meta = results.setdefault("meta", {"std": args.std, "runs": {}})
    Xt, yt = test_rows(args.std)

    def save(section: str) -> None:
        meta["runs"][section] = machine_meta(args.threads)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(json_safe(results), indent=2) + "\n")
        (args.out_dir / f"{RESULTS}.md").write_text(render(results))

    for section in sections:
        if section == "threads":
            Xp, yp = mixture_files(args.work_dir, args.rows, args.std)
            results["threads"] = bench_threads(np.load(Xp), np.load(yp), args.max_prototypes)
        elif section == "ceiling":
            results["ceiling"] = bench_ceiling()
        elif section == "partitions":
            Xp, yp = mixture_files(args.work_dir, args.rows, args.std)
            kept = [r for r in results.get("partitions", []) if r["method"] not in methods]
            results["partitions"] = kept + bench_partitions(Xp, yp, Xt, yt, methods,
                                                     [int(p) for p in args.partitions.split(",")],
                                                     args.max_prototypes)
        else:
            sizes = [int(r) for r in args.cli_rows.split(",")]
            kept = [r for r in results.get("cli", []) if (r["method"], r["rows"]) not in
                    {(m, n) for m in methods for n in sizes}]

            def keep(rows: list[dict[str, Any]]) -> None:
                results["cli"] = kept + rows
                save("cli")
            results["cli"] = kept + bench_cli(args.work_dir, sizes, methods, Xt, yt,
                                       args.std, args.max_prototypes, on_row=keep)
        save(section)
        log(f"wrote {out_json} and {RESULTS}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
