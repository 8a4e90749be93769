/* Farthest-first traversal (greedy permutation) with Voronoi-cell bookkeeping.
 *
 * Pure C99: no Python API, never prints, never aborts, never allocates what it
 * returns. The caller owns every array passed in. See greedy.c for the algorithm.
 */
#ifndef NNKD_GREEDY_H
#define NNKD_GREEDY_H

#include <stdint.h>

#define NNKD_OK 0
#define NNKD_ENOMEM 1
#define NNKD_EINVAL 2
#define NNKD_EOVERFLOW 3 /* a size product does not fit in size_t */
#define NNKD_EINTR 4     /* the caller's interrupt check asked to stop */

/* Most threads one traversal uses. */
#define NNKD_MAX_THREADS 64
/* Fewest rows a step must scan to be split among threads (below it the hand-off costs
 * more than it saves); the min_parallel argument's usual value. */
#define NNKD_PAR_MIN 16384

/* Called every few centres; a nonzero return stops the run with NNKD_EINTR. The core
 * never looks inside ctx (the Python glue uses it to check for Ctrl-C). */
typedef int (*nnkd_interrupt_fn)(void *ctx);

/* Metric codes; "cosine" is euclidean on L2-normalised rows, done by the caller. */
#define NNKD_EUCLIDEAN 0
#define NNKD_MANHATTAN 1
#define NNKD_CHEBYSHEV 2

/*
 * X          (n, d) row-major float32 points.
 * metric     NNKD_EUCLIDEAN | NNKD_MANHATTAN | NNKD_CHEBYSHEV.
 * start      index of the first centre (must be an active point).
 * max_centres stop after this many centres (1 <= max_centres <= number of active points).
 * stop_radius stop before adding a centre whose distance to the current net is
 *            <= stop_radius (pass a negative value to disable).
 * labels     (n,) class codes in [0, n_classes) or NULL (then error curves are not computed).
 * active     (n,) 1 = candidate centre and voter, 0 = passive (held-out) point, or NULL (all active).
 *
 * Outputs (caller-allocated):
 * order      (max_centres,) int64: centres in the order they were added.
 * radius     (max_centres,) float64: distance of order[k] to order[:k]; radius[0] = +inf.
 * owner      (n,) int64: position k in `order` of each point's nearest centre (ties: earliest).
 * dist       (n,) float64: distance of each point to that centre.
 * train_err  (max_centres,) int64 or NULL: after k+1 centres, number of active points whose
 *            label differs from the majority label of their cell (ties: smallest code).
 * valid_err  (max_centres,) int64 or NULL: same for passive points (votes come from active ones).
 * n_centres  number of centres actually added (< max_centres when stop_radius or the
 *            active points ran out).
 * n_threads  threads for the per-centre scan, 1 .. NNKD_MAX_THREADS; every output is identical
 *            for every value (see greedy.c).
 * min_parallel a step is split among the threads when it scans at least this many rows
 *            (NNKD_PAR_MIN; tests pass 1 to split every step).
 * interrupt  NULL, or checked every NNKD_CHECK_EVERY centres (with interrupt_ctx), on the
 *            calling thread only.
 */
int nnkd_greedy_permutation(const float *X, int64_t n, int64_t d, int metric, int64_t start,
                            int64_t max_centres, double stop_radius, const int64_t *labels,
                            int64_t n_classes, const uint8_t *active, int64_t *order,
                            double *radius, int64_t *owner, double *dist, int64_t *train_err,
                            int64_t *valid_err, int64_t *n_centres, int n_threads,
                            int64_t min_parallel, nnkd_interrupt_fn interrupt, void *interrupt_ctx);

#endif
