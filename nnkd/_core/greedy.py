"""Numba port of ``cext/greedy.c`` (farthest-first traversal with cell bookkeeping).

Same algorithm, same arithmetic (four float64 accumulators summed as
``(s0 + s1) + (s2 + s3)``, no fastmath), so its output is bit-identical to the C
core; the tests compare both with each other and with a NumPy brute force.
"""

from __future__ import annotations

import numba
import numpy as np

from nnkd._core.metrics import EUCLIDEAN, MANHATTAN

_SLACK = 1e-9
_BLOCK = 16


@numba.njit(cache=True, nogil=True)
def _bounded_distance(X, a, b, metric, thr):
    """d(X[a], X[b]), or inf once a partial sum proves it exceeds ``thr``."""
    d = X.shape[1]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    limit = thr * (1.0 + _SLACK)
    if metric == EUCLIDEAN:
        limit = limit * limit
    j = 0
    while j < d:
        stop = min(j + _BLOCK, d)
        if metric == EUCLIDEAN:
            while j + 4 <= stop:
                t = np.float64(X[a, j]) - np.float64(X[b, j])
                s0 += t * t
                t = np.float64(X[a, j + 1]) - np.float64(X[b, j + 1])
                s1 += t * t
                t = np.float64(X[a, j + 2]) - np.float64(X[b, j + 2])
                s2 += t * t
                t = np.float64(X[a, j + 3]) - np.float64(X[b, j + 3])
                s3 += t * t
                j += 4
            while j < stop:
                t = np.float64(X[a, j]) - np.float64(X[b, j])
                s0 += t * t
                j += 1
        elif metric == MANHATTAN:
            while j + 4 <= stop:
                s0 += abs(np.float64(X[a, j]) - np.float64(X[b, j]))
                s1 += abs(np.float64(X[a, j + 1]) - np.float64(X[b, j + 1]))
                s2 += abs(np.float64(X[a, j + 2]) - np.float64(X[b, j + 2]))
                s3 += abs(np.float64(X[a, j + 3]) - np.float64(X[b, j + 3]))
                j += 4
            while j < stop:
                s0 += abs(np.float64(X[a, j]) - np.float64(X[b, j]))
                j += 1
        else:
            while j < stop:
                t = abs(np.float64(X[a, j]) - np.float64(X[b, j]))
                s0 = max(s0, t)
                j += 1
        if (s0 + s1) + (s2 + s3) > limit:
            return np.inf
    t = (s0 + s1) + (s2 + s3)
    return np.sqrt(t) if metric == EUCLIDEAN else t


@numba.njit(cache=True, nogil=True)
def _majority(counts, row, n_classes):
    best = 0
    for c in range(1, n_classes):
        if counts[row, c] > counts[row, best]:
            best = c
    return best


@numba.njit(cache=True, nogil=True, inline="always")   # 22 array arguments: never a real call
def _visit(X, metric, x, c, k, p, half, has_active, active, has_labels, labels, owner, dist,
           head, nxt, size, cell_r, cand, cand_d, is_centre, counts, pcounts):
    """Twin of ``visit`` in greedy.c: file row x (of scanned cell c) in cell k or back in c."""
    a = active[x] != 0 if has_active else True
    to = c
    if x == p:
        dx = 0.0
    elif dist[x] < half:                   # d(x, p) >= d(c, p) - d(x, c) >= d(x, c)
        dx = np.inf
    else:
        dx = _bounded_distance(X, x, p, metric, dist[x])
    if x == p or dx < dist[x]:
        to = k
        owner[x] = k
        dist[x] = dx
        if has_labels:
            if a:
                counts[c, labels[x]] -= 1
                counts[k, labels[x]] += 1
            else:
                pcounts[c, labels[x]] -= 1
                pcounts[k, labels[x]] += 1
    nxt[x] = head[to]
    head[to] = x
    size[to] += 1
    cell_r[to] = max(cell_r[to], dist[x])
    if a and is_centre[x] == 0 and (dist[x] > cand_d[to] or (dist[x] == cand_d[to] and x < cand[to])):
        cand_d[to] = dist[x]
        cand[to] = x


_FULL_PASS = 8


@numba.njit(cache=True, nogil=True)
def greedy_permutation_numba(X, metric, start, max_centres, stop_radius, labels, n_classes, active,
                             order, radius, owner, dist, train_err, valid_err):
    """Numba twin of ``nnkd_greedy_permutation``; empty ``labels``/``active`` mean absent.

    Returns the number of centres added. Arguments are validated by the caller.
    """
    n = X.shape[0]
    has_labels = labels.shape[0] > 0
    has_active = active.shape[0] > 0
    C = n_classes if has_labels else 1
    head = np.empty(max_centres, dtype=np.int64)
    size = np.zeros(max_centres, dtype=np.int64)
    cand = np.empty(max_centres, dtype=np.int64)
    maj = np.zeros(max_centres, dtype=np.int64)
    cell_r = np.empty(max_centres, dtype=np.float64)
    cand_d = np.empty(max_centres, dtype=np.float64)
    half = np.empty(max_centres, dtype=np.float64)
    scan = np.zeros(max_centres, dtype=np.uint8)
    nxt = np.empty(n, dtype=np.int64)
    is_centre = np.zeros(n, dtype=np.uint8)
    counts = np.zeros((max_centres, C), dtype=np.int64)
    pcounts = np.zeros((max_centres, C), dtype=np.int64)
    n_active = 0
    correct = 0
    pcorrect = 0

    order[0] = start
    radius[0] = np.inf
    is_centre[start] = 1
    head[0] = -1
    cell_r[0] = 0.0
    cand[0] = -1
    cand_d[0] = -1.0
    for i in range(n - 1, -1, -1):
        a = active[i] != 0 if has_active else True
        owner[i] = 0
        dist[i] = 0.0 if i == start else _bounded_distance(X, i, start, metric, np.inf)
        if a:
            n_active += 1
        if has_labels:
            if a:
                counts[0, labels[i]] += 1
            else:
                pcounts[0, labels[i]] += 1
        _visit(X, metric, i, 0, 0, -1, np.inf, has_active, active, has_labels, labels, owner, dist,
               head, nxt, size, cell_r, cand, cand_d, is_centre, counts, pcounts)
    if has_labels:
        maj[0] = _majority(counts, 0, C)
        correct = counts[0, maj[0]]
        pcorrect = pcounts[0, maj[0]]
        train_err[0] = n_active - correct
        valid_err[0] = (n - n_active) - pcorrect

    k = 1
    while k < max_centres:
        best = -1
        for c in range(k):
            if cand[c] >= 0 and (best < 0 or cand_d[c] > cand_d[best]
                                 or (cand_d[c] == cand_d[best] and cand[c] < cand[best])):
                best = c
        if best < 0 or cand_d[best] <= stop_radius:
            break
        p = cand[best]
        order[k] = p
        radius[k] = cand_d[best]
        is_centre[p] = 1
        head[k] = -1
        size[k] = 0
        cell_r[k] = 0.0
        cand[k] = -1
        cand_d[k] = -1.0
        scanned = 0
        for c in range(k):
            if c != owner[p]:
                if cell_r[c] <= 0.0:
                    continue
                dcp = _bounded_distance(X, order[c], p, metric, 2.0 * cell_r[c])
                if dcp > 2.0 * cell_r[c] * (1.0 + _SLACK):
                    continue
            else:
                dcp = dist[p]
            scan[c] = 1
            half[c] = 0.5 * dcp * (1.0 - _SLACK)
            scanned += size[c]
            if has_labels:
                correct -= counts[c, maj[c]]
                pcorrect -= pcounts[c, maj[c]]
        if scanned * _FULL_PASS > n:
            for c in range(k):
                if scan[c] != 0:
                    head[c] = -1
                    size[c] = 0
                    cell_r[c] = 0.0
                    cand[c] = -1
                    cand_d[c] = -1.0
            for x in range(n - 1, -1, -1):
                c = owner[x]
                if c < k and scan[c] != 0:
                    _visit(X, metric, x, c, k, p, half[c], has_active, active, has_labels, labels, owner,
                           dist, head, nxt, size, cell_r, cand, cand_d, is_centre, counts, pcounts)
        else:
            for c in range(k):
                if scan[c] == 0:
                    continue
                x = head[c]
                head[c] = -1
                size[c] = 0
                cell_r[c] = 0.0
                cand[c] = -1
                cand_d[c] = -1.0
                while x >= 0:
                    nx = nxt[x]
                    _visit(X, metric, x, c, k, p, half[c], has_active, active, has_labels, labels, owner,
                           dist, head, nxt, size, cell_r, cand, cand_d, is_centre, counts, pcounts)
                    x = nx
        for c in range(k):
            if scan[c] == 0:
                continue
            scan[c] = 0
            if has_labels:
                maj[c] = _majority(counts, c, C)
                correct += counts[c, maj[c]]
                pcorrect += pcounts[c, maj[c]]
        if has_labels:
            maj[k] = _majority(counts, k, C)
            correct += counts[k, maj[k]]
            pcorrect += pcounts[k, maj[k]]
            train_err[k] = n_active - correct
            valid_err[k] = (n - n_active) - pcorrect
        k += 1
    return k
