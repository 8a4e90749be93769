"""Time NMSLIB hnsw queries in *this* interpreter (used by knn.py to compare nmslib builds).

Standalone on purpose (numpy + nmslib only): ``knn.py`` runs it once with its own Python
(the PyPI wheel) and once with ``--simd-python`` (a source build with ``-march=native``), on
the same data and parameters, and reads one JSON line from stdout.

Usage: python _nmslib_probe.py DATA.npz PARAMS.json
  DATA.npz holds float32 ``base`` and ``queries``; PARAMS.json has ``build`` (createIndex
  parameters), ``ef`` (list of efSearch values), ``k`` and ``repeats``.
"""

import json
import sys
import time

import nmslib
import numpy as np


def main() -> None:
    data = np.load(sys.argv[1])
    with open(sys.argv[2]) as f:
        params = json.load(f)
    base, queries = data["base"], data["queries"]
    index = nmslib.init(method="hnsw", space="l2")
    index.addDataPointBatch(base)
    start = time.perf_counter()
    index.createIndex(params["build"], print_progress=False)
    out = {"build_s": time.perf_counter() - start, "nmslib": nmslib.__version__ if hasattr(nmslib, "__version__")
           else None, "qps": {}}
    for ef in params["ef"]:
        index.setQueryTimeParams({"efSearch": ef})
        index.knnQueryBatch(queries[:100], k=params["k"], num_threads=1)      # warm caches
        best = min(_timed(index, queries, params["k"]) for _ in range(params["repeats"]))
        out["qps"][str(ef)] = len(queries) / best
    print(json.dumps(out))


def _timed(index, queries, k) -> float:
    start = time.perf_counter()
    index.knnQueryBatch(queries, k=k, num_threads=1)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
