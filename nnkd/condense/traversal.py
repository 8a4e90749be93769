"""Farthest-first traversal of a dask array's rows: the permutation one process computes over
all of them, while the rows stay on their workers.

KSU chooses its scale with a bound over the prefixes of one greedy permutation, and the
bound is flat near its minimum: a permutation that differs from the one-process one (the
farthest-first order of a union of per-partition nets, say) moves the choice along that
flat floor, and with it the test accuracy (measured on 1M rows: 32 prototypes instead of
108, 0.8 points). So the partitioned KSU orders the rows exactly as one process does.

Each partition keeps, for every row, the distance to its nearest centre so far and that
centre's position (its *state*, persisted on the worker between rounds). A round hands every
partition the centres chosen since the last one; the partition moves each row to a new
centre strictly closer than its own (centres in order, as the one-process scan does; a
centre always joins its own cell) and returns its ``T`` farthest candidates (active rows
that are not centres, the largest distances first, ties by row), ``tau``, the largest
distance no candidate outside that list can exceed, and the class counts every new
centre's cell took from the cells before it.

The client then picks the next centres from the candidate lists alone, for as long as that
is provably the pick of one process: after the centres picked so far this round, the best
listed candidate (largest distance, ties by global row number) is the next centre when its
distance exceeds every partition's ``tau``, since no distance grows. The first pick of a
round always qualifies (it is the farthest of all rows). The work per row is the
one-process scan's, done row by row against the round's centres (a row and the batch stay
in cache); the rounds cost one small task per partition each (1M x 64 rows, 4 partitions,
5,000 centres: 24 rounds, as ``selection_curve_["rounds"]`` reports). Each worker holds its partitions' rows for the whole traversal
(working space, float32) plus 17 bytes of state per row, as one process holds all of them;
each partition's pass runs on one thread (more workers, or threads per worker, run more
partitions at once).

Distances are the kernels' rank distances (squared euclidean, manhattan, chebyshev; cosine
as euclidean on unit rows), computed by one compiled function on the workers and in the
client, so every decision sees the same value wherever it is taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from nnkd._core.metrics import EUCLIDEAN, MANHATTAN, as_points, metric_code

#: Candidates each partition lists per round: more picks per round for a little more traffic.
CANDIDATES = 128
#: Features summed between two checks against a row's current distance.
_BLOCK = 16


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _bounded_distance(x, p, metric, bound):
    """Rank distance of rows ``x`` and ``p``, or ``inf`` once a partial sum (over blocks of
    ``_BLOCK`` features, each vectorised) reaches ``bound``: the partial sums only grow, so
    the row cannot be strictly closer. Most rows stop after the first block."""
    s = 0.0
    d = x.shape[0]
    for lo in range(0, d, _BLOCK):
        hi = min(lo + _BLOCK, d)
        if metric == EUCLIDEAN:
            b = 0.0
            for f in range(lo, hi):
                t = np.float64(x[f]) - np.float64(p[f])
                b += t * t
            s += b
        elif metric == MANHATTAN:
            b = 0.0
            for f in range(lo, hi):
                b += abs(np.float64(x[f]) - np.float64(p[f]))
            s += b
        else:
            for f in range(lo, hi):
                s = max(s, abs(np.float64(x[f]) - np.float64(p[f])))
        if s >= bound:
            return np.inf
    return s


@numba.njit(cache=True, nogil=True)
def _grown(a, size):
    out = np.empty(size, dtype=a.dtype)
    out[:a.shape[0]] = a
    return out


@numba.njit(cache=True, nogil=True)
def _move(X, C, own, dist, owner, first, metric):
    """Apply centres ``C`` (in order; ``own[j]``: the row of ``X`` that centre ``j`` is, or
    ``-1``) to every row: a row joins centre ``j`` when strictly closer than its own (a
    centre always joins its own cell). Row by row, so each row and the batch of centres stay
    in cache. Updates ``dist`` and ``owner`` (centre ``j`` is position ``first + j``) and
    returns every move as ``(row, j, previous owner)``."""
    cap = max(16, X.shape[0] // 8)
    rows = np.empty(cap, dtype=np.int64)
    steps = np.empty(cap, dtype=np.int64)
    came = np.empty(cap, dtype=np.int64)
    count = 0
    for i in range(X.shape[0]):
        x = X[i]
        for j in range(C.shape[0]):
            if own[j] == i:
                dist[i] = 0.0
            else:
                d = _bounded_distance(x, C[j], metric, dist[i])
                if not d < dist[i]:
                    continue
                dist[i] = d
            if count == cap:                         # more moves than room: double it
                cap *= 2
                rows = _grown(rows, cap)
                steps = _grown(steps, cap)
                came = _grown(came, cap)
            rows[count], steps[count], came[count] = i, j, owner[i]
            owner[i] = first + j
            count += 1
    return rows[:count], steps[:count], came[:count]


@dataclass
class TraversalState:
    """One partition's rows and where they stand (kept on its worker between rounds)."""

    rows: np.ndarray            # working space, float32
    given: np.ndarray           # the rows as given (prototypes are these)
    codes: np.ndarray           # class codes
    active: np.ndarray | None   # rows that may become centres and vote (None: all)
    offset: int                 # global number of the partition's first row
    dist: np.ndarray            # rank distance to the nearest centre (inf before the first)
    owner: np.ndarray           # that centre's position in the order (-1 before the first)
    centre: np.ndarray          # uint8: the row is a centre


def traversal_state(X: np.ndarray, codes: np.ndarray, offset: int, active, metric: str) -> TraversalState:
    """A partition's state before the first centre (``X``: checked float32 rows as given)."""
    n = X.shape[0]
    return TraversalState(as_points(X, metric), X, codes, active, offset, np.full(n, np.inf),
                          np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.uint8))


def active_sum(state: TraversalState) -> tuple[np.ndarray, int]:
    """Sum (float64) and number of the partition's active rows, in working space."""
    rows = state.rows if state.active is None else state.rows[state.active]
    return rows.astype(np.float64).sum(axis=0), rows.shape[0]


def farthest_from(state: TraversalState, centre: np.ndarray):
    """The active row farthest (euclidean, float64) from ``centre``, the first of equals:
    ``(squared distance, global row, working row, given row, code)`` or ``None``."""
    idx = np.arange(state.rows.shape[0]) if state.active is None else np.flatnonzero(state.active)
    if idx.size == 0:
        return None
    d = ((state.rows[idx].astype(np.float64) - centre) ** 2).sum(axis=1)
    i = int(idx[np.argmax(d)])
    return float(d.max()), state.offset + i, state.rows[i], state.given[i], int(state.codes[i])


def _candidates(state: TraversalState, limit: int):
    """The ``limit`` farthest active non-centre rows (largest distance first, ties by row) and
    ``tau``, the largest distance of a row left out (``-inf`` when none is)."""
    dist = state.dist
    free = state.centre == 0
    if state.active is not None:
        free &= state.active
    idx = np.flatnonzero(free)
    tau = -np.inf
    if idx.size > limit:
        d = dist[idx]
        # The (limit + 1)-th largest distance: the rows above it, then those at it in row order.
        tau = float(np.partition(d, idx.size - limit - 1)[idx.size - limit - 1])
        above = idx[d > tau]
        idx = np.concatenate([above, idx[d == tau][:limit - above.size]])
    idx = idx[np.lexsort((idx, -dist[idx]))]
    return (dist[idx], idx + state.offset, state.rows[idx], state.given[idx], state.codes[idx]), tau


def traversal_step(state: TraversalState, centres: np.ndarray, centre_rows: np.ndarray, first: int,
                   n_classes: int, metric: str, limit: int | None = None):
    """Apply centres ``first, first + 1, ...`` (global rows ``centres``, working rows
    ``centre_rows``) to a partition; returns the new state and what the client needs
    (``limit``: candidates listed, default ``CANDIDATES``).

    Returns
    -------
    state : TraversalState
        A new state (the old one is left as it was: a retried task sees the same input).
    summary : tuple
        ``(moves, candidates, tau)``: for every centre, the class counts its cell took from
        each earlier cell, as ``(from, code, held_out, count)`` rows; the candidates as
        ``(dist, global rows, working rows, given rows, codes)``; ``tau``.
    """
    dist, owner, centre = state.dist.copy(), state.owner.copy(), state.centre.copy()
    local = np.asarray(centres, dtype=np.int64) - state.offset
    own = np.where((local >= 0) & (local < state.rows.shape[0]), local, -1)
    centre[own[own >= 0]] = 1
    rows, steps, came = _move(state.rows, np.ascontiguousarray(centre_rows), own, dist, owner, first,
                              metric_code(metric))
    held = np.zeros(len(rows), dtype=np.int64) if state.active is None else (~state.active[rows]).astype(np.int64)
    # One key per (centre, previous cell, class, held out); counted, then split by centre.
    width = (first + len(centres) + 1) * n_classes * 2
    key, counts = np.unique(steps * width + (came + 1) * (2 * n_classes) + state.codes[rows] * 2 + held,
                            return_counts=True)
    step, rest = key // width, key % width
    table = np.stack([rest // (2 * n_classes) - 1, rest % (2 * n_classes) // 2, rest % 2, counts], axis=1)
    cuts = np.searchsorted(step, np.arange(len(centres) + 1))
    moves = [table[cuts[j]:cuts[j + 1]] for j in range(len(centres))]
    new = TraversalState(state.rows, state.given, state.codes, state.active, state.offset, dist, owner, centre)
    candidates, tau = _candidates(new, CANDIDATES if limit is None else limit)
    return new, (moves, candidates, tau)


def _pool_move(pool_rows: np.ndarray, pool_dist: np.ndarray, row: np.ndarray, metric: str) -> None:
    """The client's copy of a partition's update over the listed candidates (the same kernel,
    so the same distances)."""
    owner = np.zeros(pool_rows.shape[0], dtype=np.int64)
    _move(pool_rows, row[None, :], np.array([-1]), pool_dist, owner, 0, metric_code(metric))


def pick_centres(summaries, limit: int, metric: str):
    """The centres one process would add next, from the partitions' candidate lists.

    Returns the picks as ``(global rows, working rows, given rows, codes)``, at most ``limit``
    of them; ``None`` when no partition lists a candidate.
    """
    lists = [s[1] for s in summaries]
    dist = np.concatenate([c[0] for c in lists]).astype(np.float64)
    rows = np.concatenate([c[1] for c in lists])
    if dist.size == 0:
        return None
    work = np.ascontiguousarray(np.concatenate([c[2] for c in lists]))
    given = np.concatenate([c[3] for c in lists])
    codes = np.concatenate([c[4] for c in lists])
    tau = max(s[2] for s in summaries)
    picks = []
    while len(picks) < limit:
        free = np.flatnonzero(dist >= 0)            # -1: picked this round
        if free.size == 0:
            break
        best = free[np.lexsort((rows[free], -dist[free]))[0]]
        if picks and not dist[best] > tau:
            break
        picks.append(best)
        dist[best] = -1.0                           # now a centre
        _pool_move(work, dist, work[best], metric)
    at = np.array(picks, dtype=np.int64)
    return rows[at], work[at], given[at], codes[at]
