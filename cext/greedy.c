/* Farthest-first traversal with Voronoi-cell bookkeeping (see greedy.h).
 *
 * Every point belongs to the cell of its nearest centre so far; a cell keeps its
 * members in a singly linked list, its radius (largest member distance), its
 * farthest candidate (largest distance among active non-centre members) and its
 * class counts. Adding a centre p can only move a point x of cell c if
 * d(x, p) < d(x, c); by the triangle inequality d(x, p) >= d(c, p) - d(x, c), so a
 * cell with d(c, p) >= 2 * radius(c) is skipped without touching its members, and
 * inside a visited cell a member with d(x, c) <= d(c, p) / 2 is skipped without
 * computing d(x, p).
 * Class counts are updated as points move, so the training (and held-out) error
 * of the majority-vote net is known after every prefix in one pass.
 *
 * Arithmetic is fixed (four double accumulators summed as (s0 + s1) + (s2 + s3))
 * so that the Numba port in nnkd/_core/greedy.py returns bit-identical results.
 */
#include "greedy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Relative slack on pruning tests so rounding can never skip a cell whose
 * members might strictly move; the exact comparison is done on the point. */
#define NNKD_SLACK 1e-9
#define NNKD_BLOCK 16

/* Distance from a to b, or any value > thr once the partial result proves the
 * distance exceeds thr (the caller only needs the exact value below thr). */
static double bounded_distance(const float *a, const float *b, int64_t d, int metric,
                               double thr) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, t;
    double limit = thr * (1.0 + NNKD_SLACK);
    int64_t j = 0, stop;
    if (metric == NNKD_EUCLIDEAN) limit = limit * limit;
    while (j < d) {
        stop = j + NNKD_BLOCK < d ? j + NNKD_BLOCK : d;
        if (metric == NNKD_EUCLIDEAN) {
            for (; j + 4 <= stop; j += 4) {
                t = (double)a[j] - (double)b[j]; s0 += t * t;
                t = (double)a[j + 1] - (double)b[j + 1]; s1 += t * t;
                t = (double)a[j + 2] - (double)b[j + 2]; s2 += t * t;
                t = (double)a[j + 3] - (double)b[j + 3]; s3 += t * t;
            }
            for (; j < stop; j++) { t = (double)a[j] - (double)b[j]; s0 += t * t; }
        } else if (metric == NNKD_MANHATTAN) {
            for (; j + 4 <= stop; j += 4) {
                s0 += fabs((double)a[j] - (double)b[j]);
                s1 += fabs((double)a[j + 1] - (double)b[j + 1]);
                s2 += fabs((double)a[j + 2] - (double)b[j + 2]);
                s3 += fabs((double)a[j + 3] - (double)b[j + 3]);
            }
            for (; j < stop; j++) s0 += fabs((double)a[j] - (double)b[j]);
        } else {
            for (; j < stop; j++) {
                t = fabs((double)a[j] - (double)b[j]);
                if (t > s0) s0 = t;
            }
        }
        if ((s0 + s1) + (s2 + s3) > limit) return INFINITY;
    }
    t = (s0 + s1) + (s2 + s3);
    return metric == NNKD_EUCLIDEAN ? sqrt(t) : t;
}

static int64_t majority(const int64_t *counts, int64_t n_classes) {
    int64_t best = 0, c;
    for (c = 1; c < n_classes; c++)
        if (counts[c] > counts[best]) best = c;
    return best;
}

int nnkd_greedy_permutation(const float *X, int64_t n, int64_t d, int metric, int64_t start,
                            int64_t max_centres, double stop_radius, const int64_t *labels,
                            int64_t n_classes, const uint8_t *active, int64_t *order,
                            double *radius, int64_t *owner, double *dist, int64_t *train_err,
                            int64_t *valid_err, int64_t *n_centres) {
    int64_t *head = NULL, *next = NULL, *cand = NULL, *maj = NULL, *counts = NULL,
            *pcounts = NULL;
    double *cell_r = NULL, *cand_d = NULL;
    uint8_t *is_centre = NULL;
    int64_t i, k, c, x, prev, nx, best, p, y, n_active = 0, correct = 0, pcorrect = 0;
    int64_t C = labels ? n_classes : 0;
    int status = NNKD_OK;
    double dx, dcp, half;

    *n_centres = 0;
    if (n < 1 || d < 1 || start < 0 || start >= n || max_centres < 1 || max_centres > n ||
        (metric != NNKD_EUCLIDEAN && metric != NNKD_MANHATTAN && metric != NNKD_CHEBYSHEV) ||
        (labels && n_classes < 1) || (active && !active[start]))
        return NNKD_EINVAL;
    if (labels)
        for (i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] >= n_classes) return NNKD_EINVAL;

    head = malloc((size_t)max_centres * sizeof *head);
    cand = malloc((size_t)max_centres * sizeof *cand);
    maj = malloc((size_t)max_centres * sizeof *maj);
    cell_r = malloc((size_t)max_centres * sizeof *cell_r);
    cand_d = malloc((size_t)max_centres * sizeof *cand_d);
    next = malloc((size_t)n * sizeof *next);
    is_centre = calloc((size_t)n, 1);
    if (C) {
        counts = calloc((size_t)(max_centres * C), sizeof *counts);
        pcounts = calloc((size_t)(max_centres * C), sizeof *pcounts);
    }
    if (!head || !cand || !maj || !cell_r || !cand_d || !next || !is_centre ||
        (C && (!counts || !pcounts))) {
        status = NNKD_ENOMEM;
        goto done;
    }

    /* First centre: every point is in its cell. */
    order[0] = start;
    radius[0] = INFINITY;
    is_centre[start] = 1;
    head[0] = -1;
    cell_r[0] = 0.0;
    cand[0] = -1;
    cand_d[0] = -1.0;
    for (i = n - 1; i >= 0; i--) {
        int a = active ? active[i] : 1;
        dx = i == start ? 0.0 : bounded_distance(X + i * d, X + start * d, d, metric, INFINITY);
        owner[i] = 0;
        dist[i] = dx;
        next[i] = head[0];
        head[0] = i;
        if (dx > cell_r[0]) cell_r[0] = dx;
        if (a) {
            n_active++;
            if (!is_centre[i] && (dx > cand_d[0] || (dx == cand_d[0] && i < cand[0]))) {
                cand_d[0] = dx;
                cand[0] = i;
            }
        }
        if (C) (a ? counts : pcounts)[labels[i]]++;
    }
    if (C) {
        maj[0] = majority(counts, C);
        correct = counts[maj[0]];
        pcorrect = pcounts[maj[0]];
        if (train_err) train_err[0] = n_active - correct;
        if (valid_err) valid_err[0] = (n - n_active) - pcorrect;
    }

    for (k = 1; k < max_centres; k++) {
        best = -1;
        for (c = 0; c < k; c++)
            if (cand[c] >= 0 && (best < 0 || cand_d[c] > cand_d[best] ||
                                 (cand_d[c] == cand_d[best] && cand[c] < cand[best])))
                best = c;
        if (best < 0 || cand_d[best] <= stop_radius) break;
        p = cand[best];
        order[k] = p;
        radius[k] = cand_d[best];
        is_centre[p] = 1;
        head[k] = -1;
        cell_r[k] = 0.0;
        cand[k] = -1;
        cand_d[k] = -1.0;

        for (c = 0; c < k; c++) {
            if (c != owner[p]) {
                if (cell_r[c] <= 0.0) continue;
                dcp = bounded_distance(X + order[c] * d, X + p * d, d, metric, 2.0 * cell_r[c]);
                if (dcp > 2.0 * cell_r[c] * (1.0 + NNKD_SLACK)) continue;
            } else {
                dcp = dist[p];
            }
            /* A member x can only move if d(x, c) > d(c, p) / 2 (same triangle inequality,
             * per point): members nearer their centre are skipped without a distance. */
            half = 0.5 * dcp * (1.0 - NNKD_SLACK);
            if (C) {
                correct -= counts[c * C + maj[c]];
                pcorrect -= pcounts[c * C + maj[c]];
            }
            cell_r[c] = 0.0;
            cand[c] = -1;
            cand_d[c] = -1.0;
            prev = -1;
            for (x = head[c]; x >= 0; x = nx) {
                int a = active ? active[x] : 1;
                nx = next[x];
                if (x == p)
                    dx = 0.0;
                else if (dist[x] < half)
                    dx = INFINITY;
                else
                    dx = bounded_distance(X + x * d, X + p * d, d, metric, dist[x]);
                if (x == p || dx < dist[x]) {
                    if (prev < 0) head[c] = nx; else next[prev] = nx;
                    next[x] = head[k];
                    head[k] = x;
                    owner[x] = k;
                    dist[x] = dx;
                    if (dx > cell_r[k]) cell_r[k] = dx;
                    if (a && !is_centre[x] && (dx > cand_d[k] || (dx == cand_d[k] && x < cand[k]))) {
                        cand_d[k] = dx;
                        cand[k] = x;
                    }
                    if (C) {
                        y = labels[x];
                        (a ? counts : pcounts)[c * C + y]--;
                        (a ? counts : pcounts)[k * C + y]++;
                    }
                } else {
                    prev = x;
                    if (dist[x] > cell_r[c]) cell_r[c] = dist[x];
                    if (a && !is_centre[x] &&
                        (dist[x] > cand_d[c] || (dist[x] == cand_d[c] && x < cand[c]))) {
                        cand_d[c] = dist[x];
                        cand[c] = x;
                    }
                }
            }
            if (C) {
                maj[c] = majority(counts + c * C, C);
                correct += counts[c * C + maj[c]];
                pcorrect += pcounts[c * C + maj[c]];
            }
        }
        if (C) {
            maj[k] = majority(counts + k * C, C);
            correct += counts[k * C + maj[k]];
            pcorrect += pcounts[k * C + maj[k]];
            if (train_err) train_err[k] = n_active - correct;
            if (valid_err) valid_err[k] = (n - n_active) - pcorrect;
        }
    }
    *n_centres = k;

done:
    free(head); free(cand); free(maj); free(cell_r); free(cand_d);
    free(next); free(is_centre); free(counts); free(pcounts);
    return status;
}
