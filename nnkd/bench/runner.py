"""Run a parameter grid of indexes on a dataset; one JSON line per finished run (resumable)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import os
import platform
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from nnkd.bench.data import BenchDataset, ensure_ground_truth
from nnkd.bench.metrics import latency_percentiles, recall_at_k
from nnkd.index import make_index, parse_spec

RESULTS_FILE = "results.jsonl"
_GRID_KEYS = {"spec", "build", "query"}


def _expand(params: dict | None, where: str) -> list[dict]:
    """``{"a": [1, 2], "b": 3}`` -> ``[{"a": 1, "b": 3}, {"a": 2, "b": 3}]``."""
    if not params:
        return [{}]
    if not isinstance(params, dict):
        raise TypeError(f"{where} must map parameter names to values or lists of values; got {params!r}.")
    names = sorted(params)
    values = [v if isinstance(v, list) else [v] for v in (params[n] for n in names)]
    if any(len(v) == 0 for v in values):
        raise ValueError(f"{where} has a parameter with an empty list of values.")
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def load_grid(config=None, algorithms: list[str] | None = None) -> list[tuple[str, dict, list[dict]]]:
    """Read a grid (YAML list of ``{spec, build, query}``), default: the one shipped with nnkd.

    ``algorithms`` keeps only those specs; a spec not in the grid runs once with nnkd's
    default parameters.

    Returns
    -------
    grid : list of (spec, build_params, [query_params, ...])
    """
    try:
        import yaml
    except ImportError as exc:                  # pragma: no cover - depends on the install
        raise ImportError("parameter grids need PyYAML: pip install pyyaml (or pip install 'nnkd[bench]').") from exc
    if config is not None and not Path(config).is_file():
        raise FileNotFoundError(f"grid config {config} not found")
    text = Path(config).read_text() if config is not None else (files("nnkd.bench") / "default_grid.yaml").read_text()
    where = config or "the default grid"
    try:
        entries = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{where} is not valid YAML: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "spec" in e for e in entries):
        raise ValueError(f"{where} must be a YAML list of entries with a 'spec' key (and optional 'build', 'query').")
    grid = []
    for e in entries:
        unknown = set(e) - _GRID_KEYS
        if unknown:
            raise ValueError(f"{where}: entry {e['spec']!r} has unknown key(s) {sorted(unknown)}; "
                             f"use {sorted(_GRID_KEYS)}.")
        parse_spec(e["spec"])
        for build in _expand(e.get("build"), f"{e['spec']} build"):
            grid.append((e["spec"], build, _expand(e.get("query"), f"{e['spec']} query")))
    if algorithms:
        for spec in algorithms:
            parse_spec(spec)
        chosen = [g for g in grid if g[0] in algorithms]
        chosen += [(spec, {}, [{}]) for spec in algorithms if spec not in {g[0] for g in grid}]
        grid = chosen
    for spec, build, queries in grid:                 # unknown parameter names fail now, not mid-run
        for query in queries:
            make_index(spec, "euclidean", **build, **query)
    return grid


def run_key(kind: str, ds: BenchDataset, spec: str, build: dict, query: dict, **settings) -> str:
    """Identity of a run in ``results.jsonl`` (a resumed bench skips keys already there)."""
    return json.dumps([kind, ds.fingerprint[:16], spec, build, query, settings], sort_keys=True)


def read_results(out_dir) -> list[dict]:
    """Rows of ``out_dir/results.jsonl`` (a torn last line from an interrupted run is ignored)."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def provenance() -> dict:
    """When, where and with what a result was measured: ``date`` (UTC, ISO 8601), ``machine``
    (platform, processor, CPU count, CPUs this process may use) and ``versions`` (nnkd's
    libraries). Every ``nnkd bench`` row and every ``benchmarks/*.py`` report records it."""
    from nnkd._config import show_config

    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "cpu_count": os.cpu_count(),
                        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None},
            "versions": {k: v for k, v in show_config(print_out=False).items() if k != "platform"}}


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:                                   # not Linux: peak RSS is the best we have
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _disk_bytes(index) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = index.save(Path(tmp) / "index")
        return sum(p.stat().st_size for p in path.iterdir())


def time_queries(index, Q: np.ndarray, k: int, runs: int, batch: bool) -> dict[str, Any]:
    """QPS (best of ``runs``), per-query latency percentiles and the results of the best run.

    Batch mode sends all queries in one call (latency = that call / number of queries);
    otherwise queries go one at a time, as ann-benchmarks does by default.
    """
    best_total, best_lat, best_dist, best_ind = np.inf, None, None, None
    for _ in range(max(1, runs)):
        if batch:
            start = time.perf_counter()
            dist, ind = index.query(Q, k)
            total = time.perf_counter() - start
            lat = np.full(len(Q), total / len(Q))
        else:
            lat = np.empty(len(Q))
            dist = np.empty((len(Q), k), dtype=np.float32)
            ind = np.empty((len(Q), k), dtype=np.int64)
            for i in range(len(Q)):
                start = time.perf_counter()
                dist[i:i + 1], ind[i:i + 1] = index.query(Q[i:i + 1], k)
                lat[i] = time.perf_counter() - start
            total = float(lat.sum())
        if total < best_total:
            best_total, best_lat, best_dist, best_ind = total, lat, dist, ind
    return {"qps": len(Q) / best_total, **latency_percentiles(best_lat), "dist": best_dist, "ind": best_ind}


def run_grid(ds: BenchDataset, out_dir, grid, *, k: int = 10, runs: int = 3, threads: int = 1, batch: bool = False,
             n_neighbors: int | None = None, kernel: str = "uniform", save_neighbors: bool = False,
             progress: bool = True) -> list[dict]:
    """Run every (spec, build, query) of ``grid`` on ``ds`` not already in ``results.jsonl``.

    With ``n_neighbors`` (``nnkd bench knn``) each index is built by a
    ``KernelKNNClassifier`` and its test accuracy is recorded too (needs labels). With
    ``save_neighbors`` the ids returned by each run are kept in ``neighbors/<run>.npz``
    (named in the row's ``neighbors_file``) so results can be checked independently.

    Returns
    -------
    rows : list of dict
        The rows of this dataset and kind, old (resumed) and new.
    """
    from tqdm.auto import tqdm

    kind = "knn" if n_neighbors is not None else "ann"
    if kind == "knn" and (ds.y_base is None or ds.y_queries is None):
        raise ValueError(f"{ds.name} has no labels (y / y_train and y_test); nnkd bench knn needs them.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not 1 <= k <= ds.base.shape[0]:
        raise ValueError(f"--k {k} must be in [1, {ds.base.shape[0]}] (the base rows).")
    ensure_ground_truth(ds, k, out_dir, n_jobs=threads)
    settings = {"k": k, "batch": batch, "threads": threads, **({"n_neighbors": n_neighbors, "kernel": kernel}
                                                                 if kind == "knn" else {})}
    done = {r["key"] for r in read_results(out_dir)}
    total = sum(len(q) for _, _, q in grid)
    meta = {**ds.info(), **provenance()}
    bar = tqdm(total=total, desc=f"nnkd bench {kind}", unit="run", disable=not progress)
    with open(out_dir / RESULTS_FILE, "a") as out:
        for spec, build, queries in grid:
            pending = [q for q in queries if run_key(kind, ds, spec, build, q, **settings) not in done]
            bar.update(len(queries) - len(pending))
            if not pending:
                continue
            bar.set_postfix_str(f"building {spec}")
            rss0, start = _rss_bytes(), time.perf_counter()
            if kind == "knn":
                from nnkd.neighbors import KernelKNNClassifier
                clf = KernelKNNClassifier(n_neighbors=n_neighbors, kernel=kernel, metric=ds.metric, index=spec,
                                          index_params=build, n_jobs=threads).fit(ds.base, ds.y_base)
                index = clf.index_
            else:
                index = make_index(spec, ds.metric, n_jobs=threads, **build).fit(ds.base)
            built = {"build_s": time.perf_counter() - start, "rss_growth_bytes": _rss_bytes() - rss0,
                     "index_bytes": _disk_bytes(index)}
            for query in pending:
                bar.set_postfix_str(f"{spec} {query}")
                row = {"key": run_key(kind, ds, spec, build, query, **settings), "kind": kind, **meta,
                       "algorithm": spec, "build": build, "query": query, **settings, **built}
                try:
                    index.set_query_params(**query)
                    timed = time_queries(index, ds.queries, k, runs, batch)
                    row.update({m: timed[m] for m in ("qps", "p50_ms", "p99_ms", "mean_ms")})
                    row["recall"] = recall_at_k(timed["dist"], ds.distances, k)
                    if save_neighbors:
                        name = f"neighbors/{hashlib.sha256(row['key'].encode()).hexdigest()[:16]}.npz"
                        (out_dir / "neighbors").mkdir(exist_ok=True)
                        np.savez_compressed(out_dir / name, ind=timed["ind"].astype(np.int32))
                        row["neighbors_file"] = name
                    if kind == "knn":
                        row["accuracy"] = float(clf.score(ds.queries, ds.y_queries))
                except ValueError as exc:             # e.g. too few results at a small nprobe
                    row["error"] = str(exc)
                out.write(json.dumps(row) + "\n")
                out.flush()
                bar.update(1)
    bar.close()
    return [r for r in read_results(out_dir) if r.get("kind") == kind and r.get("sha256") == ds.info()["sha256"]]
