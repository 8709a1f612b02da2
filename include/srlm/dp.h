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
 *
 * ZeRO-1 (zero = 1, with the three functions below): the AdamW moments are sharded over
 * the learners. Learner j owns the parameter range [bounds[j], bounds[j + 1]) (cut by the
 * optimizer, optim.h). Instead of reduce, a step calls reduce_scatter (after it, this
 * learner's range of the gradient holds the step's sum, the same bits as reduce's; the
 * rest of its gradient array is left unspecified) with the statistics summed as reduce
 * does; the gradient norm is accumulated along the learners in rank order (chain), so
 * it has the bits of the unsharded sum; each learner steps AdamW on its range; then
 * allgather copies every learner's range of the updated weights to all: an fp32 model's
 * parameters, a bf16 model's bf16 compute copy (2 bytes a weight). A bf16 model's learner
 * keeps only its range of the fp32 master (srlm_model_shard_master: the engine shards it,
 * and the EMA anchor's, at its first ZeRO-1 run; they stay sharded), so whatever needs the
 * full master on a learner (checkpoints, the saved model, the anchor's distance) gathers it
 * from the learners (learn.c). Results are those of the unsharded run with the same
 * learners, bit for bit, on MPI (on NCCL within float re-association: comm.h); a learner
 * holds 1/R of the moments and, in bf16, of the fp32 master.
 *
 * Overlap (overlap = 1, with the four reduce_* functions below): the step's reduce (or
 * ZeRO-1's reduce-scatter) runs in buckets that start while the step's last backward on
 * this learner still runs. reduce_begin opens it before that micro-batch (nothing moves);
 * reduce_ready(from) says grads[from, n) are final (the model calls it between the
 * backward's stages, model.h srlm_model_on_grads_final); reduce_end starts whatever is left
 * (all of it on a learner that ran no backward: empty or non-finite slices), waits for
 * every bucket and then sums the statistics as reduce does. After reduce_end the gradients
 * hold the same bits as after reduce (or reduce_scatter) on MPI, every element summed in
 * learner-rank order (comm.h, "the gradient reduce overlapped with the backward").
 * reduce_abandon drops an open reduce after an error on this learner without waiting for
 * its peers (the error then ends the job at the top level, which ends their waits too).
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

/* ZeRO-1: sums grads (n) over the learners into this learner's range [bounds[rank],
 * bounds[rank + 1]) (bounds: size + 1 offsets), and stats (n_stats) as reduce does. */
typedef srlm_status (*srlm_dp_reduce_scatter_fn)(void *ctx, float *grads, int64_t n, const int64_t *bounds,
                                                double *stats, int n_stats);
/* ZeRO-1: copies learner j's range [bounds[j], bounds[j + 1]) of x (n elements of dtype dt:
 * SRLM_F32, or SRLM_BF16 for a bf16 model's compute copy) into every learner's x, for every j. */
typedef srlm_status (*srlm_dp_allgather_fn)(void *ctx, void *x, int64_t n, srlm_dtype dt, const int64_t *bounds);
/* ZeRO-1: every learner's range of fp32 arrays in HOST memory gathered for a checkpoint
 * (the optimizer's moments): to learner 0 at least, who writes it (srlm's learners gather
 * to learner 0 only, so the others hold no whole copy); optional: NULL means allgather is
 * used, which is right only where the backend's memory is host memory. */
typedef srlm_status (*srlm_dp_allgather_host_fn)(void *ctx, float *x, int64_t n, const int64_t *bounds);
/* ZeRO-1: one double accumulated along the learners in rank order. stage 0: learner r > 0
 * receives learner r - 1's value into *x (learner 0 keeps *x); stage 1: learner r < size - 1
 * sends *x to learner r + 1, then every learner receives the last learner's *x. */
typedef srlm_status (*srlm_dp_chain_fn)(void *ctx, double *x, int stage);

/* The overlapped reduce (see above). bounds: NULL (reduce) or ZeRO-1's (reduce_scatter). */
typedef srlm_status (*srlm_dp_reduce_begin_fn)(void *ctx, float *grads, int64_t n, const int64_t *bounds);
typedef srlm_status (*srlm_dp_reduce_ready_fn)(void *ctx, int64_t from);
typedef srlm_status (*srlm_dp_reduce_end_fn)(void *ctx, double *stats, int n_stats);
typedef void (*srlm_dp_reduce_abandon_fn)(void *ctx);

typedef struct srlm_dp {
  int rank; /* this learner, 0 <= rank < size */
  int size; /* learners; 0 or 1 = a single learner (reduce unused) */
  srlm_dp_reduce_fn reduce;
  void *ctx;
  int zero; /* 1: ZeRO-1 (size > 1; the three functions below are required) */
  srlm_dp_reduce_scatter_fn reduce_scatter;
  srlm_dp_allgather_fn allgather;
  srlm_dp_chain_fn chain;
  srlm_dp_allgather_host_fn allgather_host; /* optional, see above */
  int overlap; /* 1: reduce in buckets overlapped with the backward (size > 1; the four below are required) */
  srlm_dp_reduce_begin_fn reduce_begin;
  srlm_dp_reduce_ready_fn reduce_ready;
  srlm_dp_reduce_end_fn reduce_end;
  srlm_dp_reduce_abandon_fn reduce_abandon;
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
