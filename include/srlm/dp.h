/* srlm dp: data parallelism over learner ranks, as the training-step engine (engine.h)
 * runs it for every trainer (sft.h, pref.h, grpo.h).
 *
 * Every learner holds the whole iteration's data (the same examples in the same order)
 * and the same weights. Each optimizer step's examples (a list of `count` indices, the
 * same on every learner) are split into contiguous slices: learner r of R takes
 * [count * r / R, count * (r + 1) / R) (srlm_dp_slice). Each learner normalizes its loss
 * by the step's GLOBAL counts (pairs, sequences, tokens of the whole step, which every
 * learner can count because it holds all examples), so the sum of the learners'
 * gradients is the gradient of the step. reduce() sums the gradients and a few
 * statistics (metrics sums, a non-finite flag) over the learners before the optimizer
 * step; after it every learner holds the same numbers and takes the same step (or
 * skips it together).
 *
 * With one learner (size 1, reduce NULL) a trainer runs as without dp: one slice (the
 * whole step), the same sums, bit-identical results. Results with R > 1 learners agree with R = 1
 * up to float re-association of the gradient sum (the MPI reduce sums in learner-rank
 * order, comm.h).
 */
#ifndef SRLM_DP_H
#define SRLM_DP_H

#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sums grads (n floats) and stats (n_stats doubles) over the learners, in place, with the
 * same result on every learner. */
typedef srlm_status (*srlm_dp_reduce_fn)(void *ctx, float *grads, int64_t n, double *stats, int n_stats);

typedef struct srlm_dp {
  int rank; /* this learner, 0 <= rank < size */
  int size; /* learners; 0 or 1 = a single learner (reduce unused) */
  srlm_dp_reduce_fn reduce;
  void *ctx;
} srlm_dp;

/* This learner's slice [*lo, *hi) of a step of count examples. dp may be NULL (all). */
static inline void srlm_dp_slice(const srlm_dp *dp, int64_t count, int64_t *lo, int64_t *hi) {
  if (!dp || dp->size <= 1) {
    *lo = 0;
    *hi = count;
    return;
  }
  *lo = count * dp->rank / dp->size;
  *hi = count * (dp->rank + 1) / dp->size;
}

#ifdef __cplusplus
}
#endif
#endif
