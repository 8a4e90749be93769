"""``nnkd bench condense``: every condensing method and its peers on one labelled dataset."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from nnkd.bench.data import BenchDataset
from nnkd.bench.runner import RESULTS_FILE, provenance, read_results

#: label -> MarginCondensedNN parameters
METHODS = {
    "nnkd ksu (bound)": {"method": "ksu", "selection": "bound"},
    "nnkd ksu (validation)": {"method": "ksu", "selection": "validation"},
    "nnkd gkn": {"method": "gkn"},
    "nnkd hart": {"method": "hart"},
    "nnkd fcnn": {"method": "fcnn"},
}


def _peers():
    """(label, fit-and-reduce function) of the reference methods that are installed."""
    from sklearn.neighbors import KNeighborsClassifier

    peers = [("sklearn 1-NN (all rows)", lambda X, y: (X, y))]
    try:
        from imblearn.under_sampling import CondensedNearestNeighbour
    except ImportError:
        return peers, KNeighborsClassifier
    peers.append(("imbalanced-learn CNN", lambda X, y: CondensedNearestNeighbour(
        sampling_strategy="all", random_state=0).fit_resample(X, y)))
    return peers, KNeighborsClassifier


def run_condense(ds: BenchDataset, out_dir, *, threads: int = 1, random_state: int = 0,
                 progress: bool = True) -> list[dict]:
    """Fit each method on the base rows, score on the queries; append rows to results.jsonl.

    Returns
    -------
    rows : list of dict
        Kept fraction, test accuracy, bound (``None`` when vacuous) and fit time per method.
    """
    from tqdm.auto import tqdm

    from nnkd.neighbors import MarginCondensedNN

    if ds.y_base is None or ds.y_queries is None:
        raise ValueError(f"{ds.name} has no labels (y / y_train and y_test); nnkd bench condense needs them.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info, done = ds.info(), {r["key"] for r in read_results(out_dir)}
    peers, knn = _peers()
    jobs = [(label, None) for label in METHODS] + peers
    meta = {**info, **provenance()}
    with open(out_dir / RESULTS_FILE, "a") as out:
        for label, reduce in tqdm(jobs, desc="nnkd bench condense", unit="method", disable=not progress):
            key = json.dumps(["condense", info["sha256"], label, random_state])
            if key in done:
                continue
            start = time.perf_counter()
            if reduce is None:
                clf = MarginCondensedNN(**METHODS[label], random_state=random_state, n_jobs=threads)
                clf.fit(ds.base, ds.y_base)
                fit_s = time.perf_counter() - start
                kept, bound = clf.compression_ratio_, clf.bound_
                accuracy = clf.score(ds.queries, ds.y_queries)
            else:
                X_kept, y_kept = reduce(ds.base, ds.y_base)
                fit_s = time.perf_counter() - start
                kept, bound = len(y_kept) / len(ds.y_base), None
                accuracy = knn(n_neighbors=1).fit(X_kept, y_kept).score(ds.queries, ds.y_queries)
            row = {"key": key, "kind": "condense", **meta, "method": label, "kept_fraction": float(kept),
                   "accuracy": float(accuracy), "bound": None if bound is None or not math.isfinite(bound)
                   else float(bound), "fit_s": fit_s}
            out.write(json.dumps(row) + "\n")
            out.flush()
    return [r for r in read_results(out_dir) if r.get("kind") == "condense" and r.get("sha256") == info["sha256"]]
