"""Benchmark of the search layer: nnkd indexes vs raw FAISS / NMSLIB calls vs scikit-learn.

For each dataset (usps official split; mnist_test first 8,000 / last 2,000; letter first
16,000 / last 4,000), with the exact backend's 10 nearest neighbours as ground truth:

- every backend of a small grid (exact; faiss Flat, HNSW32, IVF128,Flat, IVF128,SQ8; nmslib
  hnsw and sw-graph, each over a few query-time settings): recall@10 with the
  ann-benchmarks rule (a returned neighbour counts if its distance is at most the true
  10th distance + 1e-3), queries per second for one batch of all queries with 1 thread and
  with ``--threads`` threads (best of ``--repeats``), build time;
- in the same run, the raw library call on the very same native index with the same
  parameters (``faiss.Index.search`` / ``nmslib knnQueryBatch``; for the exact backend,
  FAISS's exact ``IndexFlatL2.search`` over the same rows, and its ids are checked against a
  float64 NumPy brute force), timed interleaved with
  nnkd's ``Index.query``; the overhead is the ratio of the medians minus one;
- the test accuracy of ``KernelKNNClassifier(n_neighbors=5)`` on each setting, next to
  scikit-learn's ``KNeighborsClassifier(n_neighbors=5)`` (accuracy and predict time).

A "large" section fits a 200,000 x 64 Gaussian mixture with 10 classes (10,000 queries) and
compares ``KernelKNNClassifier(n_neighbors=10)`` predict time and accuracy on faiss/nmslib
HNSW against scikit-learn's ``KNeighborsClassifier`` with each of its algorithms.
``--simd-python PATH`` adds the speed of an NMSLIB built from source with SIMD (``pip
install --no-binary nmslib nmslib``) in another virtualenv, against the PyPI wheel, on the
same hnsw parameters (``_nmslib_probe.py`` run by both interpreters).

Results: ``benchmarks/results/knn.json`` and ``knn.md``; progress on stderr.

Usage (repository root)::

    python benchmarks/knn.py                                   # all (about 20 minutes)
    python benchmarks/knn.py --datasets letter --skip-large --repeats 3
    python benchmarks/knn.py --simd-python /path/to/simd-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_DATA_DIR,  # noqa: I001 - must come before numpy: it pins thread counts
    DEFAULT_OUT_DIR, DEFAULT_THREADS, check_data, log, machine_meta)
import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from nnkd import KernelKNNClassifier
from nnkd.bench import DATASETS, SplitDataset, json_safe, load_split, markdown_table, time_call
from nnkd.bench.metrics import recall_at_k
from nnkd.bench.report import fmt
from nnkd.index import make_index

K = 10                # recall@K
CLF_K = 5             # neighbours of the classifiers
RECALL_TARGET = 0.95
ACC_TOLERANCE = 0.5   # accuracy points
OVERHEAD_TARGET = 0.05
BENCH_DATASETS = ("usps", "mnist_test", "letter")
LARGE_SHAPE, LARGE_QUERIES, LARGE_CLASSES = (200_000, 64), 10_000, 10
# kd_tree/ball_tree take ~20 ms per query here (64 dimensions): time them on fewer queries.
LARGE_TREE_QUERIES = 1_000
SPEEDUP_TARGET = 5.0

#: (spec, build parameters, list of query-parameter settings)
GRID: list[tuple[str, dict, list[dict]]] = [
    ("exact", {}, [{}]),
    ("faiss:Flat", {}, [{}]),
    ("faiss:HNSW32", {"efConstruction": 200}, [{"efSearch": e} for e in (16, 32, 64, 128)]),
    ("faiss:IVF128,Flat", {}, [{"nprobe": p} for p in (1, 4, 16, 32)]),
    ("faiss:IVF128,SQ8", {}, [{"nprobe": p} for p in (4, 16)]),
    ("nmslib:hnsw", {"M": 16, "efConstruction": 200}, [{"efSearch": e} for e in (16, 32, 64, 128)]),
    ("nmslib:sw-graph", {"NN": 16, "efConstruction": 200}, [{"efSearch": e} for e in (16, 64, 128)]),
]
SIMD_EF = (16, 64, 128)


# --------------------------------------------------------------------------- measures

def raw_call(index, Q: np.ndarray, threads: int):
    """The library call nnkd's ``Index.query`` wraps, on the same native index."""
    if index.backend == "faiss":
        import faiss
        faiss.omp_set_num_threads(threads)
        native = index._index
        return lambda: native.search(Q, K)
    if index.backend == "nmslib":
        native = index._index
        return lambda: native.knnQueryBatch(Q, k=K, num_threads=threads)
    # The exact backend against FAISS's exact search (IndexFlatL2) over the same rows.
    import faiss
    faiss.omp_set_num_threads(threads)
    flat = faiss.IndexFlatL2(index.dim)
    flat.add(index._X)
    return lambda: flat.search(Q, K)


def interleaved(fn_a, fn_b, repeats: int) -> tuple[list[float], list[float]]:
    """Time two calls alternately (after one warm-up each) so both see the same machine state."""
    fn_a(), fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return times_a, times_b


def bench_setting(clf: KernelKNNClassifier, data: SplitDataset, true_dist: np.ndarray, query_params: dict,
                  threads: int, repeats: int) -> dict[str, Any]:
    index, Q = clf.index_, data.X_test
    index.set_query_params(**query_params)
    row: dict[str, Any] = {"query_params": query_params}
    for t in sorted({1, threads}):
        index.n_jobs = t
        ours, raw = interleaved(lambda: index.query(Q, K), raw_call(index, Q, t), repeats)
        row[f"qps_{t}t"] = len(Q) / min(ours)
        row[f"raw_qps_{t}t"] = len(Q) / min(raw)
        row[f"overhead_{t}t"] = float(np.median(ours) / np.median(raw) - 1.0)
    index.n_jobs = threads
    row["recall"] = recall_at_k(index.query(Q, K)[0], true_dist, K)
    if index.backend == "exact":                     # ids against a float64 NumPy brute force
        X64, Q64 = index._X.astype(np.float64), Q.astype(np.float64)
        ids = []
        for a in range(0, len(Q64), 500):
            D = (Q64[a:a + 500] ** 2).sum(1)[:, None] + (X64 ** 2).sum(1)[None] - 2 * Q64[a:a + 500] @ X64.T
            ids.append(np.lexsort((np.broadcast_to(np.arange(len(X64)), D.shape), D), axis=1)[:, :K])
        row["exact_ids_equal"] = bool((np.concatenate(ids) == index.query(Q, K)[1]).all())
    row["accuracy"] = float(clf.score(Q, data.y_test))
    return row


def bench_dataset(data: SplitDataset, threads: int, repeats: int) -> list[dict[str, Any]]:
    info = data.info()
    true_dist = make_index("exact", n_jobs=threads).fit(data.X_train).query(data.X_test, K)[0]
    rows = []
    peer = KNeighborsClassifier(n_neighbors=CLF_K, n_jobs=threads).fit(data.X_train, data.y_train)
    timing = time_call(lambda: peer.predict(data.X_test), repeats=repeats)
    rows.append({**info, "kind": "sklearn", "name": "sklearn KNeighborsClassifier (auto)",
                 "accuracy": float(np.mean(timing.result == data.y_test)),
                 "predict_s": min(timing.times)})
    for spec, build, settings in GRID:
        log(f"  {spec} {build or ''}")
        clf = KernelKNNClassifier(n_neighbors=CLF_K, index=spec, index_params=build, n_jobs=threads)
        start = time.perf_counter()
        clf.fit(data.X_train, data.y_train)
        build_s = time.perf_counter() - start
        for query_params in settings:
            try:
                row = bench_setting(clf, data, true_dist, query_params, threads, repeats)
            except ValueError as exc:          # e.g. IVF lists too small for k at nprobe=1
                log(f"    {query_params}: {exc}")
                row = {"query_params": query_params, "error": str(exc)}
            rows.append({**info, "kind": "index", "name": spec, "build_params": build, "build_s": build_s, **row})
    return rows


# --------------------------------------------------------------------------- large

def large_problem() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """200,000 + 10,000 rows of a 10-class Gaussian mixture in 64 dimensions (3 components
    per class at hypercube vertices, ``make_classification``)."""
    from sklearn.datasets import make_classification

    n, d = LARGE_SHAPE
    X, y = make_classification(n + LARGE_QUERIES, d, n_informative=d, n_redundant=0, n_classes=LARGE_CLASSES,
                               n_clusters_per_class=3, class_sep=1.5, flip_y=0.0, random_state=0)
    X = np.ascontiguousarray(X, dtype=np.float32)
    return X[:n], y[:n], X[n:], y[n:]


def bench_large(threads: int, repeats: int, budget_s: float) -> list[dict[str, Any]]:
    X, y, Q, yq = large_problem()
    base = {"dataset": f"mixture {LARGE_SHAPE[0]:,}x{LARGE_SHAPE[1]}", "n_train": len(X), "n_test": len(Q),
            "kind": "large"}
    rows = []
    for algorithm in ("brute", "kd_tree", "ball_tree"):
        log(f"  sklearn {algorithm}")
        clf = KNeighborsClassifier(n_neighbors=K, algorithm=algorithm, n_jobs=threads)
        start = time.perf_counter()
        clf.fit(X, y)
        fit_s = time.perf_counter() - start
        nq = len(Q) if algorithm == "brute" else LARGE_TREE_QUERIES
        timing = time_call(lambda c=clf, q=Q[:nq]: c.predict(q), repeats=repeats, warmup=False, budget_s=budget_s)
        rows.append({**base, "name": f"sklearn KNeighborsClassifier ({algorithm})", "fit_s": fit_s, "queries": nq,
                     "predict_s": min(timing.times), "accuracy": float(np.mean(timing.result == yq[:nq]))})
    for spec, params in (("exact", {}), ("faiss:HNSW32", {}), ("nmslib:hnsw", {})):
        log(f"  nnkd {spec}")
        clf = KernelKNNClassifier(n_neighbors=K, index=spec, index_params=params, n_jobs=threads)
        start = time.perf_counter()
        clf.fit(X, y)
        fit_s = time.perf_counter() - start
        timing = time_call(lambda c=clf: c.predict(Q), repeats=repeats, warmup=False, budget_s=budget_s)
        recall = recall_at_k(clf.index_.query(Q[:1000], K)[0],
                             make_index("exact", n_jobs=threads).fit(X).query(Q[:1000], K)[0], K)
        rows.append({**base, "name": f"nnkd KernelKNNClassifier ({spec})", "fit_s": fit_s, "recall": recall,
                     "queries": len(Q),
                     "predict_s": min(timing.times), "accuracy": float(np.mean(timing.result == yq))})
    return rows


# --------------------------------------------------------------------------- SIMD nmslib

def bench_simd(data: SplitDataset, simd_python: str, repeats: int) -> dict[str, Any]:
    """nmslib hnsw QPS (1 thread) of the PyPI wheel vs a source build, same data and params."""
    probe = Path(__file__).with_name("_nmslib_probe.py")
    params = {"build": {"M": 16, "efConstruction": 200, "indexThreadQty": 1}, "ef": list(SIMD_EF), "k": K,
              "repeats": repeats}
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "data.npz", base=data.X_train, queries=data.X_test)
        (Path(tmp) / "params.json").write_text(json.dumps(params))
        out = {}
        for label, python in (("pypi", sys.executable), ("source", simd_python)):
            proc = subprocess.run([python, str(probe), str(Path(tmp) / "data.npz"), str(Path(tmp) / "params.json")],
                                  capture_output=True, text=True, check=True)
            out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"dataset": data.spec.name, "kind": "simd", "params": params, **out,
            "speedup": {ef: out["source"]["qps"][ef] / out["pypi"]["qps"][ef] for ef in out["pypi"]["qps"]}}


# --------------------------------------------------------------------------- report

def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, checked on this run's rows."""
    index_rows = [r for r in rows if r.get("kind") == "index" and "error" not in r]
    native = [r for r in index_rows if not r["name"].startswith("exact")]
    worst = max(native, key=lambda r: max(r.get("overhead_1t", -1), r.get("overhead_2t", -1)), default=None)
    acc_ok = {}
    for ds in {r["dataset"] for r in index_rows}:
        exact = next(r["accuracy"] for r in index_rows if r["dataset"] == ds and r["name"] == "exact")
        good = [r for r in index_rows if r["dataset"] == ds and r["recall"] >= RECALL_TARGET]
        acc_ok[ds] = max(abs(r["accuracy"] - exact) * 100 for r in good)
    out: dict[str, Any] = {"max_overhead": None if worst is None else max(
        worst.get("overhead_1t", -1), worst.get("overhead_2t", -1)),
        "max_overhead_setting": None if worst is None else f"{worst['dataset']} {worst['name']} "
                                                           f"{worst['query_params']}",
        "max_accuracy_gap_at_recall_target": acc_ok,
        # QPS of make_index("exact") / QPS of raw faiss.IndexFlatL2 (target >= 0.9)
        "exact_vs_faiss_flat": {f"{r['dataset']} {t}t": r[f"raw_qps_{t}t"] and (r[f"qps_{t}t"] / r[f"raw_qps_{t}t"])
                                for r in index_rows if r["name"] == "exact"
                                for t in (1, 2) if f"qps_{t}t" in r},
        "exact_ids_equal_float64_brute_force": {r["dataset"]: r.get("exact_ids_equal") for r in index_rows
                                                if r["name"] == "exact"}}
    large = [r for r in rows if r.get("kind") == "large"]
    if large:
        sk = [r for r in large if r["name"].startswith("sklearn")]
        best_sk = min(sk, key=lambda r: r["predict_s"] / r["queries"])
        ours = [r for r in large if r["name"].startswith("nnkd") and "exact" not in r["name"]]
        out["large"] = {r["name"]: {"speedup_vs_best_sklearn": (best_sk["predict_s"] / best_sk["queries"])
                                    / (r["predict_s"] / r["queries"]),
                                    "accuracy_gap_points": 100 * (r["accuracy"] - best_sk["accuracy"])}
                        for r in ours}
        out["large_best_sklearn"] = best_sk["name"]
    return out


def render_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    t = meta["threads"]["threads"]
    out = ["# Search benchmark: nnkd indexes vs raw faiss / nmslib vs scikit-learn", "",
           f"Run {meta['date']} on {meta['machine']['platform']} ({meta['machine']['cpus_available']} CPUs "
           f"visible); versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v) + ". "
           f"Generated by `benchmarks/knn.py`; raw numbers in `knn.json`. QPS: one batch of all queries, "
           f"best of {meta['repeats']}; overhead: median nnkd `Index.query` time / median raw call time - 1 "
           f"(interleaved, same native index, same parameters); recall@{K} by the ann-benchmarks rule; "
           f"accuracy: `KernelKNNClassifier(n_neighbors={CLF_K})` (uniform kernel).", ""]
    s = meta.get("summary", {})
    if s:
        out += ["## Targets", ""]
        if s.get("max_overhead") is not None:
            out.append(f"- Largest overhead vs the raw library call: {100 * s['max_overhead']:+.1f}% "
                       f"({s['max_overhead_setting']}); target <= {100 * OVERHEAD_TARGET:.0f}%.")
        for key, ratio in s.get("exact_vs_faiss_flat", {}).items():
            out.append(f"- {key}: `make_index(\"exact\")` runs at {ratio:.2f}x the QPS of raw `faiss.IndexFlatL2` "
                       f"(target >= 0.9); its ids equal a float64 NumPy brute force: "
                       f"{s['exact_ids_equal_float64_brute_force'].get(key.split()[0])}.")
        for ds, gap in sorted(s.get("max_accuracy_gap_at_recall_target", {}).items()):
            out.append(f"- {ds}: at recall@{K} >= {RECALL_TARGET}, accuracy is within {gap:.2f} points of the "
                       f"exact backend (target <= {ACC_TOLERANCE}).")
        for name, v in s.get("large", {}).items():
            out.append(f"- Large mixture: {name} predicts {v['speedup_vs_best_sklearn']:.1f}x faster than the "
                       f"fastest scikit-learn algorithm ({s['large_best_sklearn']}), accuracy "
                       f"{v['accuracy_gap_points']:+.2f} points (target >= {SPEEDUP_TARGET:.0f}x at +-0.5).")
        out.append("")
    for ds in dict.fromkeys(r["dataset"] for r in rows if r.get("kind") in ("index", "sklearn")):
        dr = [r for r in rows if r["dataset"] == ds and r.get("kind") in ("index", "sklearn")]
        first = dr[0]
        out += [f"## {ds}", "", f"{first['n_train']:,} base / {first['n_test']:,} queries, "
                f"{first['n_features']} features; {first['split']}.", ""]
        body = []
        for r in dr:
            if r["kind"] == "sklearn":
                body.append([r["name"], "", "", "", "", "", "", "", "", f"{100 * r['accuracy']:.2f}",
                             f"predict {r['predict_s']:.3f} s"])
                continue
            qp = ", ".join(f"{k}={v}" for k, v in r["query_params"].items())
            if "error" in r:
                body.append([r["name"], qp] + ["–"] * 6 + [fmt(r["build_s"], ".2f"), "–",
                                                          "fewer than 10 results for some queries"])
                continue
            body.append([r["name"], qp, fmt(r["recall"], ".4f"), fmt(r["qps_1t"], ",.0f"),
                         fmt(r.get(f"qps_{t}t"), ",.0f"), fmt(r["raw_qps_1t"], ",.0f"),
                         fmt(100 * r["overhead_1t"], "+.1f"), fmt(100 * r.get(f"overhead_{t}t", np.nan), "+.1f"),
                         fmt(r["build_s"], ".2f"), f"{100 * r['accuracy']:.2f}", ""])
        out += markdown_table(["index", "query params", f"recall@{K}", "QPS 1t", f"QPS {t}t", "raw QPS 1t",
                               "overhead 1t %", f"overhead {t}t %", "build s", "acc %", "note"], body)
        out += ["", "Raw call: faiss `search` / nmslib `knnQueryBatch` on the same index; for `exact`, "
                "faiss `IndexFlatL2.search` over the same rows (FAISS's exact search).", ""]
    large = [r for r in rows if r.get("kind") == "large"]
    if large:
        out += [f"## Large: {large[0]['dataset']} Gaussian mixture, {LARGE_CLASSES} classes, "
                f"{large[0]['n_test']:,} queries, k={K}", ""]
        out += markdown_table(["classifier", "fit s", "queries", "predict s", "ms / query", "acc %",
                               f"recall@{K}"],
                              [[r["name"], f"{r['fit_s']:.2f}", f"{r['queries']:,}", f"{r['predict_s']:.3f}",
                                f"{1e3 * r['predict_s'] / r['queries']:.3f}", f"{100 * r['accuracy']:.2f}",
                                fmt(r.get("recall"), ".4f")] for r in large])
        out += ["", f"kd_tree and ball_tree are timed on the first {LARGE_TREE_QUERIES:,} queries (about 20 ms "
                "per query each); speed-ups compare time per query. Recall is measured on the first 1,000 "
                "queries.", ""]
    simd = [r for r in rows if r.get("kind") == "simd"]
    if simd:
        out += ["## nmslib from source with SIMD vs the PyPI wheel", "",
                "hnsw (M=16, efConstruction=200), 1 thread, same data and parameters; the source build is "
                "`pip install --no-binary nmslib nmslib==2.1.2` (its setup.py adds `-march=native`).", ""]
        body = [[r["dataset"], str(ef), f"{r['pypi']['qps'][ef]:,.0f}", f"{r['source']['qps'][ef]:,.0f}",
                 f"{r['speedup'][ef]:.2f}x"] for r in simd for ef in r["speedup"]]
        out += markdown_table(["dataset", "efSearch", "PyPI wheel QPS", "source build QPS", "speed-up"], body)
        out.append("")
    return "\n".join(out)


def write_reports(rows, meta, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "summary": summary(rows)} if any(r.get("kind") == "index" for r in rows) else meta
    (out_dir / "knn.json").write_text(json.dumps(json_safe({"meta": meta, "rows": rows}), indent=2,
                                                 allow_nan=False) + "\n")
    (out_dir / "knn.md").write_text(render_markdown(rows, meta))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(BENCH_DATASETS))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--large-budget", type=float, default=300.0,
                        help="seconds after which a large-set classifier's predict is not repeated")
    parser.add_argument("--simd-python", default=None,
                        help="python of a virtualenv with nmslib built from source (adds the SIMD table)")
    args = parser.parse_args(argv)
    names = check_data([n for n in args.datasets.split(",") if n], args.data_dir)
    meta = {**machine_meta(args.threads), "repeats": args.repeats}
    import faiss

    from nnkd.index._nmslib import _import_nmslib
    _import_nmslib()                         # recorded in the versions below (without its build banner)
    meta["versions"]["faiss"] = faiss.__version__
    rows: list[dict[str, Any]] = []
    for name in names:
        data = load_split(DATASETS[name], args.data_dir)
        log(f"{name}: {data.X_train.shape} base, {data.X_test.shape[0]} queries")
        rows += bench_dataset(data, args.threads, args.repeats)
        if args.simd_python:
            log(f"  nmslib SIMD build vs PyPI wheel on {name}")
            rows.append(bench_simd(data, args.simd_python, min(args.repeats, 5)))
        write_reports(rows, meta, args.out_dir)
    if not args.skip_large:
        log("large mixture")
        rows += bench_large(args.threads, min(args.repeats, 3), args.large_budget)
    write_reports(rows, meta, args.out_dir)
    log(f"wrote {args.out_dir / 'knn.json'} and {args.out_dir / 'knn.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
