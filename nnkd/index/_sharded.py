"""Sharded search over a dask array: one index per row partition, top-k merged exactly.

``Index.fit(X)`` with a dask array lands here. Each partition becomes a shard, an index of
the same backend and parameters built where the partition lives: on the workers of the
active ``dask.distributed`` client (the shards stay there, held as futures), or in this
process when no client is active. ``query`` asks every shard for its own ``k`` nearest
rows and merges the candidate lists by ``(distance, global row number)``; the global
``k`` nearest rows are among the union of the per-shard ``k`` nearest, so for the exact
backend the result equals one index over all rows, ids and tie order included.
"""

from __future__ import annotations

import numpy as np

from nnkd._core.partitions import active_client, as_row_partitions, partition_blocks, partition_offsets


def _build_shard(template: dict, block):
    from nnkd.index._factory import BACKENDS

    index = BACKENDS[template["backend"]](template["method"], metric=template["metric"],
                                          n_jobs=template["n_jobs"], **template["params"])
    return index.fit(block)


def _query_shard(shard, Q, k: int, query_params: dict):
    # Query parameters travel with every query, so the shards (wherever they are) need no state change.
    if query_params:
        shard.set_query_params(**query_params)
    return shard.query_unrounded(Q, min(k, len(shard)))


class Shards:
    """The shards of an index fitted on a dask array (see the module docstring)."""

    def __init__(self, index, X):
        import dask

        X = as_row_partitions(X)
        self.offsets = partition_offsets(X)
        self.sizes = np.diff(self.offsets)
        template = {"backend": index.backend, "method": index.method, "metric": index.metric,
                    "n_jobs": index.n_jobs, "params": {**index.build_params, **index.query_params}}
        build = dask.delayed(_build_shard, pure=True)
        tasks = [build(template, block) for block in partition_blocks(X)]
        self.client = active_client()
        if self.client is not None:
            self.shards = self.client.compute(tasks)          # futures: the shards stay on the workers
        else:
            self.shards = list(dask.compute(*tasks))
        self.n, self.dim = int(X.shape[0]), int(X.shape[1])

    def __len__(self) -> int:
        return len(self.shards)

    def query(self, Q: np.ndarray, k: int, query_params: dict) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows over every shard: distances (as the backend computed them) and
        global int64 ids."""
        if self.client is not None:
            # A random key (hash=False): scattering the same queries again under their content
            # key races with the release of the last call's future, and the scheduler then
            # cancels the new tasks for "lost dependencies" (dask/distributed#3703).
            Q_shared = self.client.scatter(Q, broadcast=True, hash=False)
            futures = [self.client.submit(_query_shard, shard, Q_shared, k, query_params, pure=False) for shard in self.shards]
            parts = self.client.gather(futures)
        else:
            parts = [_query_shard(shard, Q, k, query_params) for shard in self.shards]
        dist = np.concatenate([d for d, _ in parts], axis=1)
        ids = np.concatenate([i + self.offsets[p] for p, (_, i) in enumerate(parts)], axis=1)
        # Ties in distance go to the smaller global row number, as within one exact index.
        order = np.lexsort((ids, dist), axis=-1)[:, :k]
        return np.take_along_axis(dist, order, axis=1), np.take_along_axis(ids, order, axis=1)
