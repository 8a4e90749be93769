"""Scale out on Dask: condense a dask array partition by partition, predict in bulk, and search
a sharded exact index, on a LocalCluster of two single-threaded workers on 127.0.0.1.

The same code runs on a real cluster: replace the LocalCluster by ``Client("tcp://host:8786")``.

Run: ``python examples/dask_local_cluster.py`` (needs ``nnkd[dask]``).
"""

import dask.array as da
import numpy as np
from dask.distributed import Client, LocalCluster
from sklearn.datasets import make_blobs

from nnkd import MarginCondensedNN
from nnkd.index import make_index

if __name__ == "__main__":                               # workers are processes: guard the entry point
    X, y = make_blobs(n_samples=40_000, n_features=16, centers=8, cluster_std=3.0, random_state=0)
    X = X.astype(np.float32)
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster):
        X_dask, y_dask = da.from_array(X, chunks=10_000), da.from_array(y, chunks=10_000)   # 4 partitions

        # Each partition is condensed on its worker, then the union of their nets.
        clf = MarginCondensedNN(method="hart").fit(X_dask, y_dask)
        print(f"{len(clf.support_)} prototypes from {X_dask.numblocks[0]} partitions")

        labels = clf.predict(X_dask)                      # a dask array; the model ships once per worker
        print(f"training accuracy {float((labels == y_dask).mean().compute()):.4f}")

        sharded = make_index("exact").fit(X_dask)         # one shard per partition, on the workers
        dist, ind = sharded.query(X[:5], k=3)             # fans out, merges the top 3 exactly
        one = make_index("exact").fit(X)
        assert np.array_equal(ind, one.query(X[:5], k=3)[1])
        print("sharded exact search equals one index:", ind.tolist())
