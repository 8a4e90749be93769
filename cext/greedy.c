/* Farthest-first traversal with Voronoi-cell bookkeeping (see greedy.h).
 *
 * Every point belongs to the cell of its nearest centre so far; a cell keeps its
 * members in a singly linked list, its size, its radius (largest member distance), its
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
 * so that results do not depend on how the compiler would reassociate the sums.
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

/* Working state of one traversal; cells are indexed by centre position k. */
typedef struct {
    const float *X;
    int64_t d, C;
    int metric;
    const int64_t *labels;
    const uint8_t *active;
    int64_t *owner, *head, *next, *size, *cand, *counts, *pcounts;
    double *dist, *cell_r, *cand_d;
    uint8_t *is_centre;
} state_t;

/* Put row x, which belonged to scanned cell c, into cell k (new centre p) if p is
 * strictly closer, else back into c; update the cells' radius, farthest candidate
 * and class counts. Decisions depend on x alone, so visiting order is free. */
static void visit(state_t *s, int64_t x, int64_t c, int64_t k, int64_t p, double half) {
    int a = s->active ? s->active[x] : 1;
    int64_t to = c, d = s->d;
    double dx;
    if (x == p)
        dx = 0.0;
    else if (s->dist[x] < half) /* d(x, p) >= d(c, p) - d(x, c) >= d(x, c): cannot move */
        dx = INFINITY;
    else
        dx = bounded_distance(s->X + x * d, s->X + p * d, d, s->metric, s->dist[x]);
    if (x == p || dx < s->dist[x]) {
        to = k;
        s->owner[x] = k;
        s->dist[x] = dx;
        if (s->C) {
            int64_t y = s->labels[x];
            (a ? s->counts : s->pcounts)[c * s->C + y]--;
            (a ? s->counts : s->pcounts)[k * s->C + y]++;
        }
    }
    s->next[x] = s->head[to];
    s->head[to] = x;
    s->size[to]++;
    if (s->dist[x] > s->cell_r[to]) s->cell_r[to] = s->dist[x];
    if (a && !s->is_centre[x] &&
        (s->dist[x] > s->cand_d[to] || (s->dist[x] == s->cand_d[to] && x < s->cand[to]))) {
        s->cand_d[to] = s->dist[x];
        s->cand[to] = x;
    }
}

/* Cells whose scanned members exceed n / FULL_PASS are revisited by one pass over
 * all rows in memory order instead of by list walking: same decisions, far fewer
 * cache misses when (as in high dimension) pruning rarely skips a cell. */
#define NNKD_FULL_PASS 8

/* Centres between two interrupt checks: often enough for Ctrl-C to answer within a second
 * on large inputs, rare enough that the check costs nothing on small ones. */
#define NNKD_CHECK_EVERY 64

int nnkd_greedy_permutation(const float *X, int64_t n, int64_t d, int metric, int64_t start,
                            int64_t max_centres, double stop_radius, const int64_t *labels,
                            int64_t n_classes, const uint8_t *active, int64_t *order,
                            double *radius, int64_t *owner, double *dist, int64_t *train_err,
                            int64_t *valid_err, int64_t *n_centres, nnkd_interrupt_fn interrupt,
                            void *interrupt_ctx) {
    state_t s;
    int64_t *maj = NULL;
    double *half = NULL;
    uint8_t *scan = NULL;
    int64_t i, k, c, x, nx, best, p, n_active = 0, correct = 0, pcorrect = 0, scanned;
    int64_t C = labels ? n_classes : 0;
    int status = NNKD_OK;
    double dcp;

    *n_centres = 0;
    if (n < 1 || d < 1 || start < 0 || start >= n || max_centres < 1 || max_centres > n ||
        (metric != NNKD_EUCLIDEAN && metric != NNKD_MANHATTAN && metric != NNKD_CHEBYSHEV) ||
        (labels && n_classes < 1) || (active && !active[start]))
        return NNKD_EINVAL;
    if (labels)
        for (i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] >= n_classes) return NNKD_EINVAL;
    /* Every allocation below is at most max_centres * C or n elements of 8 bytes: refuse
     * sizes whose byte count would wrap around size_t instead of allocating too little. */
    if ((uint64_t)n > SIZE_MAX / 8 || (uint64_t)max_centres > SIZE_MAX / 8 ||
        (C && (uint64_t)C > SIZE_MAX / 8 / (uint64_t)max_centres))
        return NNKD_EOVERFLOW;

    memset(&s, 0, sizeof s);
    s.X = X; s.d = d; s.C = C; s.metric = metric; s.labels = labels; s.active = active;
    s.owner = owner; s.dist = dist;
    s.head = malloc((size_t)max_centres * sizeof *s.head);
    s.size = malloc((size_t)max_centres * sizeof *s.size);
    s.cand = malloc((size_t)max_centres * sizeof *s.cand);
    s.cell_r = malloc((size_t)max_centres * sizeof *s.cell_r);
    s.cand_d = malloc((size_t)max_centres * sizeof *s.cand_d);
    s.next = malloc((size_t)n * sizeof *s.next);
    s.is_centre = calloc((size_t)n, 1);
    maj = malloc((size_t)max_centres * sizeof *maj);
    half = malloc((size_t)max_centres * sizeof *half);
    scan = calloc((size_t)max_centres, 1);
    if (C) {
        s.counts = calloc((size_t)(max_centres * C), sizeof *s.counts);
        s.pcounts = calloc((size_t)(max_centres * C), sizeof *s.pcounts);
    }
    if (!s.head || !s.size || !s.cand || !s.cell_r || !s.cand_d || !s.next || !s.is_centre ||
        !maj || !half || !scan || (C && (!s.counts || !s.pcounts))) {
        status = NNKD_ENOMEM;
        goto done;
    }

    /* First centre: every row is in its cell. */
    order[0] = start;
    radius[0] = INFINITY;
    s.is_centre[start] = 1;
    s.head[0] = -1;
    s.size[0] = 0;
    s.cell_r[0] = 0.0;
    s.cand[0] = -1;
    s.cand_d[0] = -1.0;
    for (i = n - 1; i >= 0; i--) {
        int a = active ? active[i] : 1;
        owner[i] = 0;
        dist[i] = i == start ? 0.0 : bounded_distance(X + i * d, X + start * d, d, metric, INFINITY);
        if (a) n_active++;
        if (C) (a ? s.counts : s.pcounts)[labels[i]]++;
        /* No new centre (p = -1) and half = +inf: visit() only files row i in cell 0. */
        visit(&s, i, 0, 0, -1, INFINITY);
    }
    if (C) {
        maj[0] = majority(s.counts, C);
        correct = s.counts[maj[0]];
        pcorrect = s.pcounts[maj[0]];
        if (train_err) train_err[0] = n_active - correct;
        if (valid_err) valid_err[0] = (n - n_active) - pcorrect;
    }

    for (k = 1; k < max_centres; k++) {
        if (interrupt && k % NNKD_CHECK_EVERY == 0 && interrupt(interrupt_ctx)) {
            status = NNKD_EINTR;
            break;
        }
        best = -1;
        for (c = 0; c < k; c++)
            if (s.cand[c] >= 0 && (best < 0 || s.cand_d[c] > s.cand_d[best] ||
                                   (s.cand_d[c] == s.cand_d[best] && s.cand[c] < s.cand[best])))
                best = c;
        if (best < 0 || s.cand_d[best] <= stop_radius) break;
        p = s.cand[best];
        order[k] = p;
        radius[k] = s.cand_d[best];
        s.is_centre[p] = 1;
        s.head[k] = -1;
        s.size[k] = 0;
        s.cell_r[k] = 0.0;
        s.cand[k] = -1;
        s.cand_d[k] = -1.0;

        /* Which cells can lose rows to p: d(c, p) < 2 radius(c) (triangle inequality). */
        scanned = 0;
        for (c = 0; c < k; c++) {
            if (c != owner[p]) {
                if (s.cell_r[c] <= 0.0) continue;
                dcp = bounded_distance(X + order[c] * d, X + p * d, d, metric, 2.0 * s.cell_r[c]);
                if (dcp > 2.0 * s.cell_r[c] * (1.0 + NNKD_SLACK)) continue;
            } else {
                dcp = dist[p];
            }
            scan[c] = 1;
            half[c] = 0.5 * dcp * (1.0 - NNKD_SLACK);
            scanned += s.size[c];
            if (C) {
                correct -= s.counts[c * C + maj[c]];
                pcorrect -= s.pcounts[c * C + maj[c]];
            }
        }
        if (scanned * NNKD_FULL_PASS > n) {
            for (c = 0; c < k; c++)
                if (scan[c]) {
                    s.head[c] = -1; s.size[c] = 0; s.cell_r[c] = 0.0; s.cand[c] = -1; s.cand_d[c] = -1.0;
                }
            for (x = n - 1; x >= 0; x--) {
                c = owner[x];
                if (c < k && scan[c]) visit(&s, x, c, k, p, half[c]);
            }
        } else {
            for (c = 0; c < k; c++) {
                if (!scan[c]) continue;
                x = s.head[c];
                s.head[c] = -1; s.size[c] = 0; s.cell_r[c] = 0.0; s.cand[c] = -1; s.cand_d[c] = -1.0;
                for (; x >= 0; x = nx) {
                    nx = s.next[x];
                    visit(&s, x, c, k, p, half[c]);
                }
            }
        }
        for (c = 0; c < k; c++) {
            if (!scan[c]) continue;
            scan[c] = 0;
            if (C) {
                maj[c] = majority(s.counts + c * C, C);
                correct += s.counts[c * C + maj[c]];
                pcorrect += s.pcounts[c * C + maj[c]];
            }
        }
        if (C) {
            maj[k] = majority(s.counts + k * C, C);
            correct += s.counts[k * C + maj[k]];
            pcorrect += s.pcounts[k * C + maj[k]];
            if (train_err) train_err[k] = n_active - correct;
            if (valid_err) valid_err[k] = (n - n_active) - pcorrect;
        }
    }
    *n_centres = k;

done:
    free(s.head); free(s.size); free(s.cand); free(s.cell_r); free(s.cand_d);
    free(s.next); free(s.is_centre); free(s.counts); free(s.pcounts);
    free(maj); free(half); free(scan);
    return status;
}
