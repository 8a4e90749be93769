"""Benchmark of :class:`nnkd.MarginCondensedNN` against scikit-learn and imbalanced-learn.

For every dataset one run measures, on a fixed train/test split:

- ``nnkd.MarginCondensedNN`` with ``method="ksu"`` (``selection="bound"`` and
  ``selection="validation"``), ``"gkn"``, ``"hart"`` and ``"fcnn"``: kept fraction, test
  accuracy, ``bound_`` and the median fit time over ``--repeats`` warm runs (one untimed
  warm-up fit first, so that Numba's JIT compilation is not timed);
- peers: scikit-learn's ``KNeighborsClassifier(n_neighbors=1)`` on all training rows
  (fit + predict time) and imbalanced-learn's ``CondensedNearestNeighbour`` and
  ``EditedNearestNeighbours`` (``sampling_strategy="all"``; kept fraction, accuracy of a
  1-NN fitted on the resampled rows, ``fit_resample`` time).

It also reports the cold first-call time of every method (a fresh interpreter, once with an
empty Numba cache, i.e. JIT compilation included, and once with the on-disk cache), a "KSU
scaling" section (letter with ``max_prototypes=0.2``; a 100,000 x 64 Gaussian mixture with
``max_prototypes=5000``; ``greedy_permutation`` alone) and
the speed ratio of nnkd's Hart against imbalanced-learn's CNN on letter.

Results go to ``benchmarks/results/condense.json`` (rows plus a ``meta`` dict) and
``benchmarks/results/condense.md``; progress messages go to stderr.

Usage
-----
From the repository root::

    python benchmarks/condense.py                      # everything (tens of minutes)
    python benchmarks/condense.py --quick              # skip connect4, mnist_test, shuttle
    python benchmarks/condense.py --datasets digits,letter --repeats 1 --skip-peers

Thread counts are pinned before numpy is imported: ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` default to 1 (kept when already set) and
``NUMBA_NUM_THREADS`` is set to ``--threads`` (default 2), which is also passed to nnkd as
``n_jobs``.

Data
----
The ``.npz`` files of ``../shared/data`` (relative to the repository root; see its
README.md), overridable with ``--data-dir``. Splits: official train/test where the source
has one (pendigits, satimage, optdigits, shuttle, usps); letter first 16,000 / last 4,000;
mnist_test first 8,000 / last 2,000; magic and connect4 a stratified 75/25 split with
``random_state=0``; scikit-learn's ``load_digits`` a stratified 70/30 split with
``random_state=0``. Only datasets whose features have heterogeneous units (magic, shuttle)
are standardized (``StandardScaler`` fitted on the training rows).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_DATA_DIR,  # noqa: I001 - must come before numpy: it pins thread counts
    DEFAULT_OUT_DIR, DEFAULT_THREADS, REPO_ROOT, check_data, log, machine_meta)
import numpy as np

from nnkd import MarginCondensedNN
from nnkd.bench import DATASETS, SplitDataset, json_safe, load_split, markdown_table, time_call
from nnkd.bench.report import fmt, pct
from nnkd.condense import greedy_permutation

SLOW_DATASETS = ("connect4", "mnist_test", "shuttle")
IMBLEARN_CNN_MAX_TRAIN = 20_000
PEER_BUDGET_S = 120.0  # stop repeating a peer's timing once this much time is spent
LETTER_KSU_MAX_PROTOTYPES = 0.2
BLOBS_SHAPE = (100_000, 64)
BLOBS_CENTERS = 10
BLOBS_MAX_PROTOTYPES = 5000
WARMUP_ROWS = 2000  # rows of the JIT warm-up fit for the large scaling problems


# --------------------------------------------------------------------------- datasets

def make_blobs_problem(cluster_std: float) -> tuple[np.ndarray, np.ndarray]:
    """The 100,000 x 64 Gaussian mixture of the scaling section."""
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=BLOBS_SHAPE[0], n_features=BLOBS_SHAPE[1], centers=BLOBS_CENTERS,
                      cluster_std=cluster_std, random_state=0)
    return np.ascontiguousarray(X, dtype=np.float32), y.astype(np.int64)


# --------------------------------------------------------------------------- timing

# --------------------------------------------------------------------------- methods

NNKD_METHODS: dict[str, dict[str, Any]] = {
    "ksu (bound)": {"method": "ksu", "selection": "bound"},
    "ksu (validation)": {"method": "ksu", "selection": "validation"},
    "ksu (validation, <=30%)": {"method": "ksu", "selection": "validation", "max_prototypes": 0.3},
    "gkn": {"method": "gkn"},
    "hart": {"method": "hart"},
    "fcnn": {"method": "fcnn"},
}


def nnkd_estimator(params: dict[str, Any], threads: int) -> MarginCondensedNN:
    """``MarginCondensedNN`` with the benchmark's fixed settings."""
    return MarginCondensedNN(random_state=0, n_jobs=threads, **params)


def error_row(base: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """A row recording a failed measurement (the run goes on)."""
    log(f"  ERROR {base.get('method')}: {exc!r}")
    return {**base, "status": f"error: {type(exc).__name__}: {exc}"}


def bench_nnkd(data: SplitDataset, label: str, params: dict[str, Any], repeats: int,
               threads: int) -> dict[str, Any]:
    """Kept fraction, accuracy, bound and warm fit time of one nnkd method."""
    base = {**data.info(), "section": "dataset", "library": "nnkd", "method": label,
            "params": params}
    try:
        timing = time_call(lambda: nnkd_estimator(params, threads).fit(data.X_train, data.y_train),
                           repeats=repeats)
        clf = timing.result
        return {**base, "status": "ok", "n_kept": int(clf.support_.size),
                "kept_fraction": float(clf.compression_ratio_),
                "test_accuracy": float(clf.score(data.X_test, data.y_test)),
                "bound": float(clf.bound_), "training_error": float(clf.training_error_),
                "scale": float(clf.scale_), "fit_s_median": timing.median, "fit_s_all": timing.times}
    except Exception as exc:  # noqa: BLE001 - one failure must not stop the benchmark
        return error_row(base, exc)


def one_nn_accuracy(X_train: np.ndarray, y_train: np.ndarray, data: SplitDataset) -> float:
    """Test accuracy of scikit-learn's 1-NN fitted on the given rows."""
    from sklearn.neighbors import KNeighborsClassifier

    return float(KNeighborsClassifier(n_neighbors=1).fit(X_train, y_train).score(data.X_test, data.y_test))


def bench_peers(data: SplitDataset, repeats: int) -> list[dict[str, Any]]:
    """scikit-learn 1-NN on all rows and imbalanced-learn's CNN and ENN."""
    from imblearn.under_sampling import CondensedNearestNeighbour, EditedNearestNeighbours
    from sklearn.neighbors import KNeighborsClassifier

    n = data.X_train.shape[0]
    info = {**data.info(), "section": "dataset"}
    rows = []
    base = {**info, "library": "scikit-learn", "method": "KNeighborsClassifier(1), all rows",
            "timed": "fit + predict"}
    log("  sklearn 1-NN")
    try:
        timing = time_call(lambda: KNeighborsClassifier(n_neighbors=1).fit(data.X_train, data.y_train)
                           .predict(data.X_test), repeats=repeats, warmup=False, budget_s=PEER_BUDGET_S)
        rows.append({**base, "status": "ok", "n_kept": n, "kept_fraction": 1.0,
                     "test_accuracy": float(np.mean(timing.result == data.y_test)),
                     "fit_s_median": timing.median, "fit_s_all": timing.times})
    except Exception as exc:  # noqa: BLE001
        rows.append(error_row(base, exc))

    samplers = {
        "imblearn CNN": lambda: CondensedNearestNeighbour(sampling_strategy="all", random_state=0),
        "imblearn ENN": lambda: EditedNearestNeighbours(sampling_strategy="all"),
    }
    for label, make in samplers.items():
        base = {**info, "library": "imbalanced-learn", "method": label, "timed": "fit_resample"}
        if label == "imblearn CNN" and n > IMBLEARN_CNN_MAX_TRAIN:
            log(f"  {label}: skipped (n_train {n:,} > {IMBLEARN_CNN_MAX_TRAIN:,})")
            rows.append({**base, "status": "skipped (time)"})
            continue
        log(f"  {label}")
        try:
            timing = time_call(lambda: make().fit_resample(data.X_train, data.y_train),
                               repeats=repeats, warmup=False, budget_s=PEER_BUDGET_S)
            X_res, y_res = timing.result
            rows.append({**base, "status": "ok", "n_kept": int(len(y_res)),
                         "kept_fraction": len(y_res) / n,
                         "test_accuracy": one_nn_accuracy(X_res, y_res, data),
                         "fit_s_median": timing.median, "fit_s_all": timing.times})
        except Exception as exc:  # noqa: BLE001
            rows.append(error_row(base, exc))
    return rows


# --------------------------------------------------------------------------- cold first call

def cold_probe(spec: dict[str, Any], data_dir: Path, threads: int) -> float:
    """Time the first ``fit`` in this (fresh) interpreter: the ``--cold-probe`` mode."""
    data = load_split(DATASETS[spec["dataset"]], data_dir)
    timing = time_call(lambda: nnkd_estimator(spec["params"], threads).fit(data.X_train, data.y_train),
                       repeats=1, warmup=False)
    return timing.median


def cold_first_call(dataset: str, params: dict[str, Any], data_dir: Path, threads: int) -> dict[str, float]:
    """First-fit time in a fresh interpreter, with an empty Numba cache and with the default one.

    Returns
    -------
    dict
        ``{"compile": seconds, "cached": seconds}``; interpreter start-up, imports and data
        loading are not included.
    """
    spec = json.dumps({"dataset": dataset, "params": params})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--cold-probe", spec,
           "--threads", str(threads), "--data-dir", str(data_dir)]
    out = {}
    with tempfile.TemporaryDirectory(prefix="nnkd-numba-cache-") as empty_cache:
        for variant, extra in (("compile", {"NUMBA_CACHE_DIR": empty_cache}), ("cached", {})):
            proc = subprocess.run(cmd, env={**os.environ, **extra}, capture_output=True, text=True,
                                  check=True, cwd=REPO_ROOT)
            out[variant] = float(proc.stdout.strip().splitlines()[-1])
    return out


def bench_cold(data_dir: Path, threads: int, warm_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cold first-call time of every nnkd method on digits (small: the time is mostly JIT)."""
    warm = {r["method"]: r.get("fit_s_median") for r in warm_rows
            if r.get("dataset") == "digits" and r.get("library") == "nnkd"}
    rows = []
    for label, params in NNKD_METHODS.items():
        log(f"cold first call: {label} on digits")
        base = {"section": "cold", "dataset": "digits", "library": "nnkd", "method": label,
                "params": params}
        try:
            cold = cold_first_call("digits", params, data_dir, threads)
            rows.append({**base, "status": "ok", "cold_compile_s": cold["compile"],
                         "cold_cached_s": cold["cached"], "warm_s_median": warm.get(label)})
        except Exception as exc:  # noqa: BLE001
            rows.append(error_row(base, exc))
    return rows


# --------------------------------------------------------------------------- scaling

def bench_greedy(name: str, X: np.ndarray, y: np.ndarray, max_prototypes: int | float,
                 repeats: int) -> list[dict[str, Any]]:
    """``greedy_permutation`` alone (with labels, as KSU calls it), the C core."""
    log("  greedy_permutation")
    base = {"section": "scaling", "dataset": name, "n_train": int(X.shape[0]), "n_features": int(X.shape[1]),
            "library": "nnkd", "method": "greedy_permutation (C)",
            "params": {"max_prototypes": max_prototypes, "labels": True}}
    try:
        small = slice(0, min(WARMUP_ROWS, X.shape[0]))
        timing = time_call(lambda: greedy_permutation(X, max_prototypes=max_prototypes, labels=y), repeats=repeats,
                           warmup=lambda: greedy_permutation(X[small], max_prototypes=10, labels=y[small]))
        return [{**base, "status": "ok", "n_kept": int(timing.result.order.size),
                 "fit_s_median": timing.median, "fit_s_all": timing.times}]
    except Exception as exc:  # noqa: BLE001
        return [error_row(base, exc)]


def bench_ksu_scaling(name: str, X: np.ndarray, y: np.ndarray, max_prototypes: int | float,
                      repeats: int, threads: int, X_test: np.ndarray | None = None,
                      y_test: np.ndarray | None = None) -> dict[str, Any]:
    """Warm fit time of ``method="ksu"`` with a prototype cap (warm-up on a few rows)."""
    params = {"method": "ksu", "max_prototypes": max_prototypes}
    base = {"section": "scaling", "dataset": name, "n_train": int(X.shape[0]),
            "n_features": int(X.shape[1]), "library": "nnkd",
            "method": f"ksu, max_prototypes={max_prototypes}", "params": params}
    log(f"  ksu max_prototypes={max_prototypes}")
    try:
        small = slice(0, min(WARMUP_ROWS, X.shape[0]))
        timing = time_call(lambda: nnkd_estimator(params, threads).fit(X, y), repeats=repeats,
                           warmup=lambda: nnkd_estimator(params, threads).fit(X[small], y[small]))
        clf = timing.result
        row = {**base, "status": "ok", "n_kept": int(clf.support_.size),
               "kept_fraction": float(clf.compression_ratio_), "bound": float(clf.bound_),
               "fit_s_median": timing.median, "fit_s_all": timing.times}
        if X_test is not None:
            row["test_accuracy"] = float(clf.score(X_test, y_test))
        return row
    except Exception as exc:  # noqa: BLE001
        return error_row(base, exc)


def bench_scaling(data_dir: Path, letter: SplitDataset | None, repeats: int, threads: int,
                  blobs_std: float, skip_blobs: bool) -> list[dict[str, Any]]:
    """The "KSU scaling" section: letter and a 100,000 x 64 Gaussian mixture."""
    rows = []
    if letter is not None:
        log("KSU scaling: letter")
        row = bench_ksu_scaling("letter", letter.X_train, letter.y_train, LETTER_KSU_MAX_PROTOTYPES,
                                repeats, threads, letter.X_test, letter.y_test)
        if row["status"] == "ok":
            try:
                cold = cold_first_call("letter", row["params"], data_dir, threads)
                row.update(cold_compile_s=cold["compile"], cold_cached_s=cold["cached"])
            except Exception as exc:  # noqa: BLE001
                row["cold_status"] = f"error: {exc}"
        rows.append(row)
        rows += bench_greedy("letter", letter.X_train, letter.y_train, LETTER_KSU_MAX_PROTOTYPES,
                             repeats)
    if not skip_blobs:
        name = f"blobs {BLOBS_SHAPE[0]:,} x {BLOBS_SHAPE[1]} (std {blobs_std:g})"
        log(f"KSU scaling: {name}")
        X, y = make_blobs_problem(blobs_std)
        row = bench_ksu_scaling(name, X, y, BLOBS_MAX_PROTOTYPES, repeats, threads)
        row["cluster_std"] = blobs_std
        rows.append(row)
        rows += bench_greedy(name, X, y, BLOBS_MAX_PROTOTYPES, repeats)
    return rows


def hart_vs_imblearn(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Speed ratio (imblearn CNN time / nnkd Hart time) and accuracies on letter."""
    def find(method: str) -> dict[str, Any] | None:
        return next((r for r in rows if r.get("section") == "dataset" and r.get("dataset") == "letter"
                     and r.get("method") == method and r.get("status") == "ok"), None)

    hart, cnn = find("hart"), find("imblearn CNN")
    if hart is None or cnn is None:
        return None
    ratio = cnn["fit_s_median"] / hart["fit_s_median"]
    return {"section": "hart_vs_imblearn", "dataset": "letter", "speed_ratio": ratio,
            "hart_fit_s": hart["fit_s_median"], "imblearn_cnn_fit_s": cnn["fit_s_median"],
            "hart_accuracy": hart["test_accuracy"], "imblearn_cnn_accuracy": cnn["test_accuracy"],
            "target_ratio": 20.0, "target_hart_accuracy": 0.91,
            "meets_ratio_target": ratio >= 20.0, "meets_accuracy_target": hart["test_accuracy"] >= 0.91}


# --------------------------------------------------------------------------- report

def method_cells(row: dict[str, Any]) -> list[str]:
    """method | kept % | test acc % | bound | fit s (median) cells of one row."""
    name = row["method"] if row["library"] != "nnkd" else f"nnkd {row['method']}"
    if row.get("timed") == "fit + predict":
        name += " †"
    if row.get("status") != "ok":
        return [name] + [row["status"]] + ["–"] * 3
    return [name, pct(row.get("kept_fraction")), pct(row.get("test_accuracy")),
            fmt(row.get("bound"), ".3f"), fmt(row.get("fit_s_median"), ".3f")]


def render_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The markdown report."""
    threads = meta["threads"]
    out = ["# Condensing benchmark: nnkd.MarginCondensedNN", ""]
    if not meta.get("complete", True):
        out += ["**Partial results: the run has not finished.**", ""]
    versions = meta["versions"]
    out += [f"Run {meta['date']} on {meta['machine']['platform']} ({meta['machine']['cpu_count']} "
            f"CPUs visible); nnkd {versions.get('nnkd')}, numpy {versions.get('numpy')}, numba "
            f"{versions.get('numba')}, scikit-learn {versions.get('scikit-learn')}, imbalanced-learn "
            f"{versions.get('imbalanced-learn')}. Threads: n_jobs = NUMBA_NUM_THREADS = "
            f"{threads['threads']}, OMP/OPENBLAS/MKL = {threads['OMP_NUM_THREADS']}/"
            f"{threads['OPENBLAS_NUM_THREADS']}/{threads['MKL_NUM_THREADS']}. Fit times are the "
            f"median of {meta['repeats']} warm runs (after one untimed warm-up fit); peers are "
            f"timed without warm-up (median of up to {meta['repeats']} runs, fewer once "
            f"{PEER_BUDGET_S:.0f} s are spent). Generated by `benchmarks/condense.py`; raw numbers "
            "in `condense.json`.", ""]
    for name in meta["datasets"]:
        drows = [r for r in rows if r.get("section") == "dataset" and r.get("dataset") == name]
        if not drows:
            continue
        first = drows[0]
        out += [f"## {name}", "",
                f"{first['n_train']:,} train / {first['n_test']:,} test rows, {first['n_features']} "
                f"features, {first['n_classes']} classes; {first['split']}.", ""]
        out += markdown_table(["method", "kept %", "test acc %", "bound", "fit s (median)"],
                              [method_cells(r) for r in drows])
        out.append("")
    if any(r.get("timed") == "fit + predict" for r in rows):
        out += ["† scikit-learn 1-NN keeps every training row; its time is fit + predict on the "
                "test set (the others: fit / fit_resample only).", ""]

    cold = [r for r in rows if r.get("section") == "cold"]
    if cold:
        out += ["## Cold first call", "",
                "First `fit` in a fresh interpreter on digits (imports and data loading not timed): "
                "with an empty Numba cache (`NUMBA_CACHE_DIR` set to a new folder, so JIT "
                "compilation is included) and with the default on-disk cache (the kernels use "
                "`cache=True`, so only the first call after installation or a source change "
                "compiles).", ""]
        out += markdown_table(
            ["method", "cold, empty Numba cache (s)", "cold, cached kernels (s)", "warm (s, median)"],
            [[f"nnkd {r['method']}", fmt(r.get("cold_compile_s"), ".2f"), fmt(r.get("cold_cached_s"), ".2f"),
              fmt(r.get("warm_s_median"), ".3f")] if r.get("status") == "ok"
             else [f"nnkd {r['method']}", r["status"], "–", "–"] for r in cold])
        out.append("")

    scaling = [r for r in rows if r.get("section") == "scaling"]
    if scaling:
        out += ["## KSU scaling", ""]
        body = []
        for r in scaling:
            shape = f"{r['n_train']:,} x {r['n_features']}"
            if r.get("status") != "ok":
                body.append([r["dataset"], shape, r["method"], r["status"], "–", "–", "–", "–"])
                continue
            body.append([r["dataset"], shape, r["method"], f"{r['n_kept']:,}",
                         pct(r.get("test_accuracy")), fmt(r.get("fit_s_median"), ".3f"),
                         fmt(r.get("cold_compile_s"), ".2f"), fmt(r.get("cold_cached_s"), ".2f")])
        out += markdown_table(["data", "shape", "what", "kept", "test acc %", "warm s (median)",
                               "cold s (empty cache)", "cold s (cached)"], body)
        blob = next((r for r in scaling if "cluster_std" in r), None)
        out += ["", "The `ksu` rows use `selection=\"bound\"` (the default) with the given cap; "
                "`greedy_permutation` is called as KSU calls it (with labels, same cap). "
                "The JIT warm-up for these rows is a fit / permutation on the first "
                f"{WARMUP_ROWS:,} rows (same dtypes, so the same kernels)."
                + (f" The mixture is `make_blobs(n_samples=100_000, n_features=64, centers=10, "
                   f"cluster_std={blob['cluster_std']:g}, random_state=0)`." if blob else ""), ""]

    ratio = next((r for r in rows if r.get("section") == "hart_vs_imblearn"), None)
    out += ["## Hart vs imbalanced-learn CNN on letter", ""]
    if ratio:
        out += [f"imbalanced-learn CNN {ratio['imblearn_cnn_fit_s']:.3f} s / nnkd hart "
                f"{ratio['hart_fit_s']:.3f} s = **{ratio['speed_ratio']:.1f}x** (target >= 20x: "
                f"{'met' if ratio['meets_ratio_target'] else 'NOT met'}); accuracy nnkd hart "
                f"{100 * ratio['hart_accuracy']:.2f}% (target >= 91%: "
                f"{'met' if ratio['meets_accuracy_target'] else 'NOT met'}), imbalanced-learn CNN "
                f"{100 * ratio['imblearn_cnn_accuracy']:.2f}%.", ""]
    else:
        out += ["Not measured in this run (needs letter and the peers).", ""]

    out += ["## Notes", "",
            "- Splits: official train/test where the source has one (pendigits, satimage, optdigits, "
            "shuttle, usps); letter first 16,000 / last 4,000; mnist_test first 8,000 / last 2,000 "
            "(only MNIST's official test file is available); magic and connect4 a fixed stratified "
            "75/25 split (`random_state=0`); scikit-learn `load_digits` stratified 70/30 "
            "(`random_state=0`).",
            "- Scaling rule: only datasets whose features have heterogeneous units are standardized "
            "(magic, shuttle; `StandardScaler` fitted on the training rows). The others (letter, "
            "pendigits, optdigits, satimage, usps, mnist_test, connect4, digits) have all features "
            "on a common scale and are used as stored.",
            "- imbalanced-learn's `CondensedNearestNeighbour` condenses each class only against the "
            "smallest class (not against the other classes, so the union is not consistent on the "
            "training set), and with `sampling_strategy=\"all\"` it shrinks that smallest class "
            "to a single row; this is why its accuracy on letter (26 classes) is low. It is "
            f"skipped (\"skipped (time)\") when n_train > {IMBLEARN_CNN_MAX_TRAIN:,}, but runs on "
            "letter and magic.",
            "- The KSU compression bound is conservative at these sample sizes: `selection=\"bound\"` "
            "picks very small nets (often a handful of prototypes) and so low accuracy; the bound "
            "column is that bound (values >= 1 are vacuous; `inf` when 2 x prototypes >= n).",
            "- `selection=\"validation\"` runs 5 stratified folds (`validation_fraction=0.2`), sums "
            "the held-out error of every net size and keeps the smallest size from which that error "
            "stays within `error_tolerance=0.005` of the lowest, then builds a net of the same "
            "fraction on all rows. `ksu (validation, <=30%)` adds the hard budget "
            "`max_prototypes=0.3`: the issue's target (within 1.5 points of full 1-NN while keeping "
            "<= 30%) is checked on that row.",
            "- All nnkd fits use `random_state=0` and `n_jobs` = the thread count above; the "
            "peers run single-threaded (their defaults).", ""]
    return "\n".join(out)


def build_meta(args: argparse.Namespace, datasets: list[str]) -> dict[str, Any]:
    """Date, machine, library versions, thread settings and repeats."""
    import imblearn

    meta = machine_meta(args.threads)
    meta["versions"]["imbalanced-learn"] = imblearn.__version__
    return {**meta, "repeats": args.repeats, "datasets": datasets, "quick": args.quick,
            "skip_peers": args.skip_peers, "blobs_cluster_std": args.blobs_std}


# --------------------------------------------------------------------------- main

def write_reports(rows: list[dict[str, Any]], meta: dict[str, Any], out_dir: Path, *,
                  final: bool = False) -> None:
    """Write ``condense.json`` and ``condense.md`` (also after each dataset, so that an
    interrupted run keeps what it measured; ``meta["complete"]`` tells the two apart)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "complete": final}
    json_path, md_path = out_dir / "condense.json", out_dir / "condense.md"
    json_path.write_text(json.dumps(json_safe({"meta": meta, "rows": rows}), indent=2, allow_nan=False) + "\n")
    md_path.write_text(render_markdown(rows, meta))
    if final:
        log(f"wrote {json_path} and {md_path}")


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"folder of the .npz datasets (default: {DEFAULT_DATA_DIR})")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help="where condense.json and condense.md are written")
    parser.add_argument("--datasets", type=str, default=None,
                        help=f"comma-separated subset of: {','.join(DATASETS)}")
    parser.add_argument("--quick", action="store_true",
                        help=f"skip the slowest datasets ({', '.join(SLOW_DATASETS)}) and the "
                             "100,000-row mixture")
    parser.add_argument("--repeats", type=int, default=3, help="timed warm runs per measurement")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="NUMBA_NUM_THREADS and nnkd n_jobs")
    parser.add_argument("--skip-peers", action="store_true",
                        help="omit scikit-learn and imbalanced-learn")
    parser.add_argument("--skip-scaling", action="store_true", help="omit the KSU scaling section")
    parser.add_argument("--skip-cold", action="store_true", help="omit the cold first-call probes")
    parser.add_argument("--blobs-std", type=float, default=10.0,
                        help="cluster_std of the Gaussian mixture (10 gives overlapping classes: "
                             "1-NN accuracy about 95%%; 4 separates them completely)")
    parser.add_argument("--cold-probe", type=str, default=None, help=argparse.SUPPRESS)
    return parser


def choose_datasets(args: argparse.Namespace) -> list[str]:
    """Datasets to run, in table order (each checked before any work starts)."""
    names = list(DATASETS) if args.datasets is None else [s.strip() for s in args.datasets.split(",") if s.strip()]
    check_data(names, args.data_dir)
    return [n for n in names if not (args.quick and n in SLOW_DATASETS)]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON and markdown reports."""
    args = build_parser().parse_args(argv)
    if args.cold_probe is not None:
        print(cold_probe(json.loads(args.cold_probe), args.data_dir, args.threads))
        return 0
    names = choose_datasets(args)
    meta = build_meta(args, names)
    log(f"datasets: {', '.join(names) or '(none)'}; repeats={args.repeats}, threads={args.threads}")
    rows: list[dict[str, Any]] = []
    loaded: dict[str, SplitDataset] = {}
    for name in names:
        data = load_split(DATASETS[name], args.data_dir)
        loaded[name] = data
        log(f"{name}: {data.X_train.shape[0]:,} x {data.X_train.shape[1]} train, "
            f"{data.X_test.shape[0]:,} test")
        for label, params in NNKD_METHODS.items():
            log(f"  nnkd {label}")
            rows.append(bench_nnkd(data, label, params, args.repeats, args.threads))
        if not args.skip_peers:
            rows += bench_peers(data, args.repeats)
        write_reports(rows, meta, args.out_dir)
    if not args.skip_cold and "digits" in names:
        rows += bench_cold(args.data_dir, args.threads, rows)
    if not args.skip_scaling:
        rows += bench_scaling(args.data_dir, loaded.get("letter"), args.repeats, args.threads,
                              args.blobs_std, skip_blobs=args.quick)
    ratio = hart_vs_imblearn(rows)
    if ratio is not None:
        rows.append(ratio)

    write_reports(rows, meta, args.out_dir, final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
