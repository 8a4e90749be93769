"""The transfer rows of a dask array, partition by partition, for the projection student.

``NNDistiller(space="projection").fit(X_dask)`` never holds the transfer set: every row is
assigned, from a seed per partition, to training or to the held-out rows (as the in-memory
fit splits them, ``validation_fraction`` of them held out), and each pass recomputes that
assignment where the partition lives. The passes:

- the training rows' mean and spread (the standardisation), merged from per-partition
  moments;
- a uniform sample of training and of held-out rows, brought to the client: the recipe is
  chosen on it as in memory (brief candidate runs, then the checkpoints of the final run);
- every epoch of the final run: the partitions in a fresh random order, each partition's
  training rows and their teacher soft labels computed on a worker (the next partition is
  computed while the client trains on the current one), shuffled into mini-batches;
- the nearest prototype of every row (the cells of ``explain``) and the errors on all the
  held-out rows (the held-out bound).

Without an active ``dask.distributed`` client the same passes run in this process.
"""

from __future__ import annotations

import math

import numpy as np

from nnkd._core.partitions import active_client, partition_blocks, partition_offsets


def _assignment(n: int, seed: int, holdout: float) -> np.ndarray:
    """``True`` for the training rows of a partition of ``n`` rows (the rest are held out),
    drawn from the partition's ``seed``; the same in every pass."""
    if holdout <= 0.0:
        return np.ones(n, dtype=bool)
    return np.random.default_rng(seed).random(n) >= holdout


def _moments(block, seed: int, holdout: float):
    X = np.asarray(block, dtype=np.float64)[_assignment(len(block), seed, holdout)]
    if len(X) == 0:
        return 0, np.zeros(block.shape[1]), np.zeros(block.shape[1])
    mean = X.mean(axis=0)
    return len(X), mean, ((X - mean) ** 2).sum(axis=0)


def _sample(block, seed: int, holdout: float, p_train: float, p_val: float, offset: int):
    train = _assignment(len(block), seed, holdout)
    draw = np.random.default_rng([seed, 1]).random(len(block))
    take_train = np.flatnonzero(train & (draw < p_train))
    take_val = np.flatnonzero(~train & (draw < p_val))
    block = np.asarray(block, dtype=np.float32)
    return block[take_train], take_train + offset, block[take_val], take_val + offset


def _training_part(block, y_block, seed: int, holdout: float, teacher, temperature: float, mean, scale):
    """A partition's training rows (standardised), their teacher soft labels and label codes."""
    train = _assignment(len(block), seed, holdout)
    raw = np.ascontiguousarray(np.asarray(block, dtype=np.float32)[train])
    T = np.asarray(teacher.soft_labels(raw, temperature), dtype=np.float32)
    Xs = ((raw - mean) / scale).astype(np.float32)
    y = None if y_block is None else np.asarray(y_block, dtype=np.int64)[train]
    return Xs, T, y


def _owners(block, student):
    from nnkd.index import make_index

    Z = student.transform(np.ascontiguousarray(np.asarray(block, dtype=np.float32)))
    return make_index("exact").fit(student.prototypes).query(Z, 1)[1][:, 0]


def _held_out_errors(block, y_block, seed: int, holdout: float, student, teacher):
    """(errors, rows) of the student on the partition's held-out rows, against the labels
    where ``y_block`` has them (codes >= 0), otherwise against the teacher's top-1 label."""
    held = ~_assignment(len(block), seed, holdout)
    X = np.ascontiguousarray(np.asarray(block, dtype=np.float32)[held])
    if len(X) == 0:
        return 0, 0
    pred = np.argmax(student.predict_proba(X), axis=1)
    if y_block is not None:
        y = np.asarray(y_block, dtype=np.int64)[held]
        labelled = y >= 0
        return int(np.sum(pred[labelled] != y[labelled])), int(labelled.sum())
    target = np.argmax(teacher.soft_labels(X, 1.0), axis=1)
    return int(np.sum(pred != target)), len(X)


class PartitionStream:
    """Passes over the row partitions of a dask array (see the module docstring).

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features), float32, chunked by rows only
    y_codes : dask array of shape (n_samples,) or None
        Label codes (``-1``: unlabelled), chunked like ``X``.
    teacher : Teacher
        Shipped to each worker once per pass that needs it.
    holdout : float
        Share of the rows held out (``validation_fraction``).
    seed : int
        Seeds every partition's assignment and sample.
    """

    def __init__(self, X, y_codes, teacher, holdout: float, seed: int):
        import dask

        self.blocks = partition_blocks(X)
        self.y_blocks = [None] * len(self.blocks) if y_codes is None else list(y_codes.to_delayed().ravel())
        self.offsets = partition_offsets(X)
        self.seeds = [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=len(self.blocks))]
        self.holdout, self.teacher = float(holdout), teacher
        self.client = active_client()
        self._delayed = dask.delayed
        self.n_train = 0

    # -- running tasks --------------------------------------------------------------------
    def _tasks(self, fn, per_block):
        task = self._delayed(fn, pure=False)
        return [task(*args) for args in per_block]

    def _compute(self, tasks) -> list:
        import dask

        if self.client is not None:
            return self.client.gather(self.client.compute(tasks))
        return list(dask.compute(*tasks))

    def _shared(self, obj):
        """``obj`` as one graph key, so each worker receives it once per pass."""
        return self._delayed(obj, traverse=False)

    # -- passes -----------------------------------------------------------------------------
    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (zero spread read as 1) of every training row."""
        parts = self._compute(self._tasks(_moments, [(b, s, self.holdout) for b, s in zip(self.blocks, self.seeds)]))
        counts = np.array([c for c, _, _ in parts], dtype=np.float64)
        self.n_train = int(counts.sum())
        if self.n_train < 2:
            raise ValueError(f"{self.n_train} training rows after holding out validation_fraction="
                             f"{self.holdout} of them; give more rows.")
        mean = sum(c * m for c, m, _ in parts) / self.n_train
        # Chan et al.'s pairwise merge of the partitions' sums of squared deviations.
        m2 = sum(q + c * (m - mean) ** 2 for c, m, q in parts)
        scale = np.sqrt(m2 / self.n_train)
        scale[scale == 0] = 1.0
        return mean.astype(np.float32), scale.astype(np.float32)

    def sample(self, n_train: int, n_val: int):
        """About ``n_train`` training rows and ``n_val`` held-out rows drawn uniformly, with
        their global row numbers: ``(X_train, rows_train, X_val, rows_val)``."""
        n = int(self.offsets[-1])
        n_held = n - self.n_train
        p_train = min(1.0, n_train / max(self.n_train, 1))
        p_val = min(1.0, n_val / n_held) if n_held else 0.0
        parts = self._compute(self._tasks(_sample, [(b, s, self.holdout, p_train, p_val, int(o)) for b, s, o in
                                                    zip(self.blocks, self.seeds, self.offsets[:-1])]))
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(4))

    def steps(self, batch_size: int) -> int:
        """Mini-batches per epoch (each partition's training rows batched on their own)."""
        sizes = np.diff(self.offsets)
        # The assignment is a draw per row, so the exact count per partition needs the seeds.
        return int(sum(math.ceil(int(_assignment(int(m), s, self.holdout).sum()) / batch_size)
                       for m, s in zip(sizes, self.seeds)))

    def batches(self, *, temperature: float, mean: np.ndarray, scale: np.ndarray, batch_size: int, seed: int):
        """``(steps, batches)`` for :func:`nnkd.distill._projection.train_prototypes`: every
        epoch visits the partitions in a new order and each partition's rows in a new order."""
        import torch

        steps = self.steps(batch_size)
        rng = np.random.default_rng([seed, 2])
        # Each partition is its own computation, so the teacher goes to the workers once, up
        # front (a random key: see nnkd.index._sharded), not with every partition.
        teacher = self.teacher if self.client is None else self.client.scatter(self.teacher, broadcast=True,
                                                                                hash=False)
        task = self._delayed(_training_part, pure=False)

        def part(p):
            t = task(self.blocks[p], self.y_blocks[p], self.seeds[p], self.holdout, teacher, temperature, mean, scale)
            if self.client is not None:
                return self.client.compute(t)            # a future: computed while the client trains
            return t

        def result(handle):
            return handle.result() if self.client is not None else handle.compute()

        def batches(epoch: int):
            order = rng.permutation(len(self.blocks))
            pending = part(order[0])
            for j in range(len(order)):
                Xs, T, y = result(pending)
                if j + 1 < len(order):
                    pending = part(order[j + 1])
                perm = torch.from_numpy(rng.permutation(len(Xs)))
                Xt, Tt = torch.from_numpy(Xs), torch.from_numpy(T)
                yt = None if y is None else torch.from_numpy(y)
                for a in range(0, len(Xs), batch_size):
                    idx = perm[a:a + batch_size]
                    yield None, Xt[idx], Tt[idx], None if yt is None else yt[idx]

        return steps, batches

    def owners(self, student) -> np.ndarray:
        """The nearest prototype (in ``student.transform``'s space) of every row, in row order."""
        shared = self._shared(student)
        return np.concatenate(self._compute(self._tasks(_owners, [(b, shared) for b in self.blocks])))

    def held_out_errors(self, student) -> tuple[int, int]:
        """Errors of ``student`` on every held-out row and the number of rows they count (see
        :func:`_held_out_errors`)."""
        shared, teacher = self._shared(student), self._shared(self.teacher)
        parts = self._compute(self._tasks(_held_out_errors, [(b, yb, s, self.holdout, shared, teacher) for b, yb, s in
                                                             zip(self.blocks, self.y_blocks, self.seeds)]))
        return int(sum(e for e, _ in parts)), int(sum(c for _, c in parts))
