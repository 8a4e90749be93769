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
 *
 * Threads (n_threads > 1): a step that scans many rows splits them among the threads
 * (whole cells, or contiguous row ranges for a full pass). Each thread files its rows
 * into private per-cell fragments (list, size, radius, farthest candidate, class-count
 * deltas), merged after the step. Every merged quantity is a sum, a maximum or a
 * minimum with ties broken by row number, and a row's decision depends on the row
 * alone, so the output equals the single-threaded one bit for bit; only the internal
 * order of each cell's member list differs, which nothing observable depends on.
 */
#include "greedy.h"

#include <math.h>
#include <pthread.h>
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

/* One slot of a thread's fragment: everything a visited row updates in one cache line.
 * Separate per-field arrays made each row touch six lines whose addresses differ by the
 * arrays' power-of-two capacity, i.e. the same cache sets: the threaded pass then cost
 * ~1.4x the serial one per row. */
typedef struct {
    int64_t head, tail, size, cand;
    double cell_r, cand_d;
    int64_t pad_[2];
} slot_t;

/* One thread's private per-cell accumulators for a step (indexed by slot). The class
 * counts are deltas: rows leave their scanned cell (-1) and join cell k (+1). */
typedef struct {
    slot_t *slots;
    int64_t *dcounts, *dpcounts;
} frag_t;

/* Put row x, which belonged to scanned cell c, into cell k (new centre p) if p is
 * strictly closer, else back into c; update the cells' radius, farthest candidate
 * and class counts. Decisions depend on x alone, so visiting order is free. */
static double move_distance(const state_t *s, int64_t x, int64_t p, double half) {
    if (x == p) return 0.0;
    if (s->dist[x] < half) return INFINITY; /* d(x, p) >= d(c, p) - d(x, c) >= d(x, c): cannot move */
    return bounded_distance(s->X + x * s->d, s->X + p * s->d, s->d, s->metric, s->dist[x]);
}

static void visit(state_t *s, int64_t x, int64_t c, int64_t k, int64_t p, double half) {
    int a = s->active ? s->active[x] : 1;
    int64_t to = c;
    double dx = move_distance(s, x, p, half);
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

/* visit() for a thread: the same decision, filed into the thread's fragment. Only the
 * row's own entries (owner, dist, next) are written in the shared state. */
static void visit_frag(state_t *s, frag_t *f, int64_t x, int64_t c, int64_t slot_c, int64_t k, int64_t slot_k,
                       int64_t p, double half) {
    int a = s->active ? s->active[x] : 1;
    slot_t *to = &f->slots[slot_c];
    double dx = move_distance(s, x, p, half);
    (void)c;
    if (x == p || dx < s->dist[x]) {
        to = &f->slots[slot_k];
        s->owner[x] = k;
        s->dist[x] = dx;
        if (s->C) {
            int64_t y = s->labels[x];
            (a ? f->dcounts : f->dpcounts)[slot_c * s->C + y]--;
            (a ? f->dcounts : f->dpcounts)[slot_k * s->C + y]++;
        }
    }
    if (to->head < 0) to->tail = x;
    s->next[x] = to->head;
    to->head = x;
    to->size++;
    if (s->dist[x] > to->cell_r) to->cell_r = s->dist[x];
    if (a && !s->is_centre[x] &&
        (s->dist[x] > to->cand_d || (s->dist[x] == to->cand_d && x < to->cand))) {
        to->cand_d = s->dist[x];
        to->cand = x;
    }
}

/* -- threads ------------------------------------------------------------------------------ */


typedef struct {
    state_t *s;
    int T;
    frag_t *frags;
    int64_t cap;              /* slots each fragment holds */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    int64_t generation;
    int pending, stop, n_started;
    /* the current step */
    int64_t k, p, n, n_slots;
    int full;                 /* 1: contiguous row ranges over all rows; 0: whole cells */
    const int64_t *cells;     /* scanned cells, slot order (slot n_slots - 1 is cell k) */
    const int64_t *slot;      /* cell -> slot, valid for scanned cells */
    const int64_t *first;     /* slot -> first row of its list before the step (cell mode) */
    const int64_t *bounds;    /* thread t: slots (cell mode) or rows (full) [bounds[t], bounds[t+1]) */
    const double *half;       /* per slot */
    const uint8_t *scan;      /* per cell */
} pool_t;

typedef struct { pool_t *pool; int id; } worker_t;

static void frag_reset(const pool_t *P, frag_t *f) {
    int64_t i, C = P->s->C;
    for (i = 0; i < P->n_slots; i++) {
        slot_t *q = &f->slots[i];
        q->head = -1; q->tail = -1; q->size = 0; q->cell_r = 0.0; q->cand = -1; q->cand_d = -1.0;
    }
    if (C) {
        memset(f->dcounts, 0, (size_t)(P->n_slots * C) * sizeof *f->dcounts);
        memset(f->dpcounts, 0, (size_t)(P->n_slots * C) * sizeof *f->dpcounts);
    }
}

static void step_part(pool_t *P, int t) {
    state_t *s = P->s;
    frag_t *f = &P->frags[t];
    int64_t i, x, nx, c, kslot = P->n_slots - 1;
    frag_reset(P, f);
    if (P->full) {
        for (x = P->bounds[t + 1] - 1; x >= P->bounds[t]; x--) {
            c = s->owner[x];
            if (c < P->k && P->scan[c]) visit_frag(s, f, x, c, P->slot[c], P->k, kslot, P->p, P->half[P->slot[c]]);
        }
    } else {
        for (i = P->bounds[t]; i < P->bounds[t + 1]; i++) {
            c = P->cells[i];
            for (x = P->first[i]; x >= 0; x = nx) {
                nx = s->next[x];
                visit_frag(s, f, x, c, i, P->k, kslot, P->p, P->half[i]);
            }
        }
    }
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    pool_t *P = w->pool;
    int64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&P->mu);
        while (P->generation == seen && !P->stop) pthread_cond_wait(&P->go, &P->mu);
        if (P->stop) { pthread_mutex_unlock(&P->mu); return NULL; }
        seen = P->generation;
        pthread_mutex_unlock(&P->mu);
        step_part(P, w->id);
        pthread_mutex_lock(&P->mu);
        if (--P->pending == 0) pthread_cond_signal(&P->done);
        pthread_mutex_unlock(&P->mu);
    }
}

static void frags_free(pool_t *P) {
    int t;
    if (!P->frags) return;
    for (t = 0; t < P->T; t++) {
        frag_t *f = &P->frags[t];
        free(f->slots); free(f->dcounts); free(f->dpcounts);
    }
    free(P->frags);
    P->frags = NULL;
    P->cap = 0;
}

/* Fragments for at least `slots` slots (grown by doubling; 0 on success). */
static int frags_reserve(pool_t *P, int64_t slots) {
    int t;
    int64_t cap = P->cap, C = P->s->C;
    if (slots <= cap) return 0;
    while (cap < slots) cap = cap ? 2 * cap : 1024;
    frags_free(P);
    P->frags = calloc((size_t)P->T, sizeof *P->frags);
    if (!P->frags) return -1;
    P->cap = cap;
    for (t = 0; t < P->T; t++) {
        frag_t *f = &P->frags[t];
        f->slots = malloc((size_t)cap * sizeof *f->slots);
        f->dcounts = C ? malloc((size_t)(cap * C) * sizeof *f->dcounts) : NULL;
        f->dpcounts = C ? malloc((size_t)(cap * C) * sizeof *f->dpcounts) : NULL;
        if (!f->slots || (C && (!f->dcounts || !f->dpcounts))) {
            frags_free(P);
            return -1;
        }
    }
    return 0;
}

/* Start T - 1 workers (0 on success; on failure the pool runs single-threaded). */
static int pool_start(pool_t *P, state_t *s, int T, worker_t *workers) {
    int t;
    memset(P, 0, sizeof *P);
    P->s = s;
    P->T = T;
    if (T < 2) return 0;
    P->threads = calloc((size_t)T, sizeof *P->threads);
    if (!P->threads) { P->T = 1; return 0; }
    pthread_mutex_init(&P->mu, NULL);
    pthread_cond_init(&P->go, NULL);
    pthread_cond_init(&P->done, NULL);
    for (t = 1; t < T; t++) {
        workers[t].pool = P;
        workers[t].id = t;
        if (pthread_create(&P->threads[t], NULL, worker_main, &workers[t]) != 0) break;
        P->n_started++;
    }
    P->T = 1 + P->n_started; /* fewer threads than asked if the system refused some */
    return 0;
}

static void pool_stop(pool_t *P) {
    int t;
    if (P->threads) {
        pthread_mutex_lock(&P->mu);
        P->stop = 1;
        pthread_cond_broadcast(&P->go);
        pthread_mutex_unlock(&P->mu);
        for (t = 1; t <= P->n_started; t++) pthread_join(P->threads[t], NULL);
        pthread_mutex_destroy(&P->mu);
        pthread_cond_destroy(&P->go);
        pthread_cond_destroy(&P->done);
        free(P->threads);
    }
    frags_free(P);
}

/* Run the step on every thread and merge the fragments into the shared cells. */
static void pool_step(pool_t *P) {
    state_t *s = P->s;
    int t;
    int64_t i, c, j, C = s->C, last;
    pthread_mutex_lock(&P->mu);
    P->pending = P->T - 1;
    P->generation++;
    pthread_cond_broadcast(&P->go);
    pthread_mutex_unlock(&P->mu);
    step_part(P, 0);
    pthread_mutex_lock(&P->mu);
    while (P->pending > 0) pthread_cond_wait(&P->done, &P->mu);
    pthread_mutex_unlock(&P->mu);
    for (i = 0; i < P->n_slots; i++) {
        c = P->cells[i];
        s->head[c] = -1; s->size[c] = 0; s->cell_r[c] = 0.0; s->cand[c] = -1; s->cand_d[c] = -1.0;
        last = -1;
        for (t = 0; t < P->T; t++) {
            frag_t *f = &P->frags[t];
            const slot_t *q = &f->slots[i];
            if (q->head >= 0) {
                if (last < 0) s->head[c] = q->head; else s->next[last] = q->head;
                last = q->tail;
                s->size[c] += q->size;
                if (q->cell_r > s->cell_r[c]) s->cell_r[c] = q->cell_r;
                if (q->cand >= 0 && (q->cand_d > s->cand_d[c] || (q->cand_d == s->cand_d[c] && q->cand < s->cand[c]))) {
                    s->cand_d[c] = q->cand_d;
                    s->cand[c] = q->cand;
                }
            }
            if (C)
                for (j = 0; j < C; j++) {
                    s->counts[c * C + j] += f->dcounts[i * C + j];
                    s->pcounts[c * C + j] += f->dpcounts[i * C + j];
                }
        }
    }
}

/* Cells whose scanned members exceed n / FULL_PASS are revisited by one pass over
 * all rows in memory order instead of by list walking: same decisions, far fewer
 * cache misses when (as in high dimension) pruning rarely skips a cell. */
#define NNKD_FULL_PASS 8

/* Centres between two interrupt checks: often enough for Ctrl-C to answer within a second
 * on large inputs, rare enough that the check costs nothing on small ones. */
#define NNKD_CHECK_EVERY 64

/* Set up and run one threaded step (0), or -1 when the fragments cannot be allocated
 * (the caller then runs the step on its own thread). */
static int parallel_step(pool_t *P, int64_t k, int64_t p, int64_t n, int64_t scanned, const uint8_t *scan,
                         const double *half, int64_t *cells, int64_t *slot, int64_t *first, double *shalf,
                         int64_t *bounds) {
    state_t *s = P->s;
    int64_t c, m = 0, acc = 0;
    int t;
    for (c = 0; c < k; c++)
        if (scan[c]) {
            cells[m] = c; slot[c] = m; first[m] = s->head[c]; shalf[m] = half[c];
            m++;
        }
    cells[m] = k; first[m] = -1; shalf[m] = INFINITY;
    P->n_slots = m + 1;
    if (frags_reserve(P, P->n_slots)) return -1;
    P->k = k; P->p = p; P->n = n;
    P->cells = cells; P->slot = slot; P->first = first; P->half = shalf; P->scan = scan;
    P->bounds = bounds;
    P->full = scanned * NNKD_FULL_PASS > n;
    bounds[0] = 0;
    if (P->full) {
        for (t = 1; t <= P->T; t++) bounds[t] = n * t / P->T;
    } else {                     /* whole cells, about scanned / T rows per thread */
        int64_t i = 0;
        for (t = 1; t < P->T; t++) {
            while (i < m && acc * P->T < scanned * t) acc += s->size[cells[i++]];
            bounds[t] = i;
        }
        bounds[P->T] = m;
    }
    pool_step(P);
    return 0;
}

int nnkd_greedy_permutation(const float *X, int64_t n, int64_t d, int metric, int64_t start,
                            int64_t max_centres, double stop_radius, const int64_t *labels,
                            int64_t n_classes, const uint8_t *active, int64_t *order,
                            double *radius, int64_t *owner, double *dist, int64_t *train_err,
                            int64_t *valid_err, int64_t *n_centres, int n_threads, int64_t min_parallel,
                            nnkd_interrupt_fn interrupt, void *interrupt_ctx) {
    state_t s;
    pool_t P;
    worker_t workers[NNKD_MAX_THREADS];
    int64_t *maj = NULL, *cells = NULL, *slot = NULL, *first = NULL, bounds[NNKD_MAX_THREADS + 1];
    double *half = NULL, *shalf = NULL;
    uint8_t *scan = NULL;
    int64_t i, k, c, x, nx, best, p, n_active = 0, correct = 0, pcorrect = 0, scanned;
    int64_t C = labels ? n_classes : 0;
    int status = NNKD_OK;
    double dcp;

    *n_centres = 0;
    if (n < 1 || d < 1 || start < 0 || start >= n || max_centres < 1 || max_centres > n ||
        (metric != NNKD_EUCLIDEAN && metric != NNKD_MANHATTAN && metric != NNKD_CHEBYSHEV) ||
        (labels && n_classes < 1) || (active && !active[start]) || n_threads < 1 ||
        n_threads > NNKD_MAX_THREADS)
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
    pool_start(&P, &s, n_threads, workers);
    if (P.T > 1) {
        cells = malloc((size_t)(max_centres + 1) * sizeof *cells);
        slot = malloc((size_t)max_centres * sizeof *slot);
        first = malloc((size_t)(max_centres + 1) * sizeof *first);
        shalf = malloc((size_t)(max_centres + 1) * sizeof *shalf);
        if (!cells || !slot || !first || !shalf) {
            status = NNKD_ENOMEM;
            goto done;
        }
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
        if (P.T > 1 && scanned >= min_parallel && parallel_step(&P, k, p, n, scanned, scan, half, cells,
                                                                 slot, first, shalf, bounds) == 0) {
            /* filed by the threads */
        } else if (scanned * NNKD_FULL_PASS > n) {
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
    pool_stop(&P);
    free(cells); free(slot); free(first); free(shalf);
    free(s.head); free(s.size); free(s.cand); free(s.cell_r); free(s.cand_d);
    free(s.next); free(s.is_centre); free(s.counts); free(s.pcounts);
    free(maj); free(half); free(scan);
    return status;
}
