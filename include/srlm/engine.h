/* srlm engine: the one training-step loop behind every trainer (SFT in sft.h, the
 * preference family in pref.h, the GRPO family in grpo.h). It owns everything the
 * trainers share: the learning-rate schedule, the resume point, clearing and accumulating
 * gradients over micro-batches, the data-parallel reduce (dp.h), the non-finite skip,
 * AdamW with global-norm clipping (optim.h), the counters, the timing and the per-step
 * callback. It is the only code in src/train that reaches the model's parameter and
 * gradient arrays or steps the optimizer.
 *
 * The data order is the engine's too: a trainer's data are `units` (examples, pairs,
 * groups); each epoch e is a permutation of them drawn by
 * srlm_rng_permutation(units, seed, purpose, e), and step k of the epoch takes the window
 * [k * per_step, min((k + 1) * per_step, units)) of it (the last step may take fewer), so
 * an epoch has ceil(units / per_step) steps.
 *
 * A trainer supplies only what differs, as hooks on one context (srlm_engine_hooks):
 *   epoch(e)          optional: called at the start of every epoch, after its order;
 *   step(s, w, n, plan)  global step s (1-based) with its window w[0..n) of units: the
 *                     step's example lists (below), counted from the WHOLE step so they
 *                     are the same on every learner, and the step's global normalizers
 *                     (kept in the context for micro);
 *   micro(list, idx, n, stats, finite)
 *                     one micro-batch of examples idx[0..n) of a list: pack, forward,
 *                     loss and coefficients normalized by the step's global counts,
 *                     backward (which ADDS to the model's gradients); it ADDS its metric
 *                     sums to stats (n_stats doubles, zeroed by the engine at the start
 *                     of each step) and sets *finite = 0, without a backward, when its
 *                     loss is NaN/Inf;
 *   done(info)        after each step, with the step's reduced sums (its loss, its
 *                     report, its summary); a non-OK status stops training with it.
 *
 * The loop. Global step s = e * steps_per_epoch + k (0-based), epochs in order:
 *   - the order and epoch(e) are drawn for every epoch, also one whose steps all precede
 *     the resume point (an epoch's order is a function of the seed and e alone, so a
 *     resumed run sees the uninterrupted run's data);
 *   - steps s < resume->start_step are not run (no other hook sees them);
 *   - step(s + 1, window) plans 1..SRLM_ENGINE_MAX_LISTS lists; the gradients are
 *     cleared; each list in turn: this learner's contiguous slice [lo, hi) of it
 *     (srlm_dp_slice; all of it with one learner) is cut into micro-batches by the
 *     list's rule, either
 *       chunk > 0:  [lo, lo + chunk), [lo + chunk, ...), the last one shorter, or
 *       pieces > 0: [lo + len * a / pieces, lo + len * (a + 1) / pieces) for a in
 *                   [0, pieces), len = hi - lo, empty pieces skipped,
 *     and micro() runs on each in order until one reports a non-finite loss (the rest of
 *     the step is then not forwarded on this learner; a learner whose slices are all
 *     empty runs no micro() at all);
 *   - with R > 1 learners every learner calls dp->reduce exactly once per step, with the
 *     gradients and stats + one non-finite flag (n_stats + 1 doubles), even when its
 *     slices were empty, so all see the same sums and decide alike;
 *   - with R > 1 learners and dp->overlap, the reduce overlaps the backward instead (dp.h):
 *     dp->reduce_begin before the step's first micro-batch; this learner's last non-empty
 *     micro-batch of the step runs with the model's final-gradient callback armed
 *     (srlm_model_on_grads_final), so its backward calls dp->reduce_ready after the head,
 *     each layer and the embedding and buckets start while the rest of it runs (earlier
 *     micro-batches only accumulate; micro() must run at most one backward, which the model
 *     enforces while armed); then dp->reduce_end, exactly once per step on every learner as
 *     reduce is, starts whatever is left (everything on a learner that ran no backward or
 *     stopped at a non-finite loss), waits and sums the stats. The same bits as reduce on
 *     MPI. A step that fails on this learner after reduce_begin (a hook's error, the
 *     backward's) calls dp->reduce_abandon and returns the error without waiting for its
 *     peers: the top level ends the job (srlm_comm_abort), which ends their waits;
 *   - a non-finite flag on any learner skips the step (skipped = 1, grad_norm NaN);
 *     otherwise AdamW steps with lr = srlm_lr_at(schedule, s) (it also skips, on every
 *     learner alike, when the reduced gradient norm is not finite);
 *   - with ZeRO-1 (dp->zero, dp.h) the reduce is dp->reduce_scatter (or, overlapped, the
 *     reduce_* functions with the shard bounds), the optimizer is
 *     sharded (srlm_optim_shard) and steps this learner's range, and dp->allgather then
 *     gives every learner all the updated weights (an fp32 model's parameters; a bf16
 *     model's compute copy, whose range the AdamW op wrote: a bf16 model's master is
 *     sharded from the first ZeRO-1 run on, srlm_model_shard_master, and so is the EMA
 *     anchor's, whose range is updated and whose compute copy is all-gathered the same
 *     way); only this learner's range of the gradient is the step's sum in done();
 *   - done(info) on every learner, with the step's gradient still in the model; then the
 *     next step.
 * The gradients are cleared once more before srlm_engine_run returns (also after a failed
 * step or hook).
 *
 * Deterministic: the same hook answers give the same bits, and a resumed run
 * (start_step, the AdamW state after it) continues the uninterrupted one bit for bit.
 * With R learners the gradient sum is re-associated (dp.h).
 *
 * Nothing here prints. Errors name the trainer (options.what) and what is wrong.
 */
#ifndef SRLM_ENGINE_H
#define SRLM_ENGINE_H

#include <stdint.h>

#include "srlm/core.h"
#include "srlm/dp.h"
#include "srlm/model.h"
#include "srlm/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- resume point --------------------------------------------------------------- */

/* Where a trainer starts when it resumes from a checkpoint: the optimizer steps already
 * taken, the AdamW state after them, and the preference trainer's replay cursor. Steps
 * before start_step are not run (their data order is still drawn), so the steps from
 * start_step on are the uninterrupted run's, bit for bit. */
typedef struct srlm_train_resume {
  int64_t start_step;     /* optimizer steps already done */
  const float *m, *v;     /* (n) AdamW moments after them */
  size_t n;               /* elements of m and v: must be the model's parameter count */
  int64_t optim_step, optim_skipped;
  int64_t replay_next;    /* the next replay example (srlm_pref_train; others ignore it) */
} srlm_train_resume;

/* Checks a resume point (NULL is fine) against the model's n_params and the run's
 * total_steps: n must match, m and v be given, 0 <= start_step <= total_steps, optimizer
 * counters non-negative (replay_next is the preference trainer's to check). SRLM_ERR_RANGE
 * naming what is off. */
srlm_status srlm_train_resume_check(const srlm_train_resume *r, size_t n_params, int64_t total_steps);

/* A learner layout the engine can run: NULL or size <= 1 (one learner), or a reduce
 * function and 0 <= rank < size. what names the trainer in the error. */
srlm_status srlm_engine_check_dp(const srlm_dp *dp, const char *what);

/* ---- one step's plan --------------------------------------------------------------- */

#define SRLM_ENGINE_MAX_LISTS 2

/* One list of a step's examples (indices into the trainer's data, the same on every
 * learner) and how a learner's slice of it is cut into micro-batches: exactly one of
 * chunk (examples per micro-batch) and pieces (micro-batches of about equal size) is > 0. */
typedef struct srlm_engine_list {
  const int64_t *idx; /* (count) owned by the trainer; valid until the step's last micro() */
  int64_t count;      /* >= 0 */
  int64_t chunk;
  int pieces;
} srlm_engine_list;

typedef struct srlm_engine_plan {
  srlm_engine_list list[SRLM_ENGINE_MAX_LISTS];
  int n_lists; /* 1..SRLM_ENGINE_MAX_LISTS */
} srlm_engine_plan;

/* The data order (see above). */
typedef struct srlm_engine_order {
  int64_t units;    /* >= 1 */
  int64_t per_step; /* units a step, >= 1 */
  uint64_t seed;
  uint32_t purpose; /* the trainer's Philox counter word (SRLM_SFT_RNG_PURPOSE, ...) */
} srlm_engine_order;

/* What one optimizer step did (passed to done). */
typedef struct srlm_engine_info {
  int64_t step, total_steps; /* 1-based */
  int epoch, epochs;         /* 1-based */
  const double *stats;       /* (n_stats) the step's metric sums over micro-batches and learners */
  double lr, grad_norm, clip_scale; /* grad_norm NaN when the step was skipped before AdamW */
  int skipped;               /* 1: no update (non-finite loss on some learner, or gradients) */
  int64_t n_skipped;         /* steps skipped so far in this call */
  double step_seconds, elapsed_seconds;
  srlm_optim *optim;         /* the optimizer after the step (for a checkpoint) */
} srlm_engine_info;

/* ---- the trainer's hooks and the run ------------------------------------------------- */

typedef struct srlm_engine_hooks {
  srlm_status (*epoch)(void *ctx, int epoch);                                 /* may be NULL */
  srlm_status (*step)(void *ctx, int64_t step, const int64_t *window, int64_t n, srlm_engine_plan *plan);
  srlm_status (*micro)(void *ctx, int list, const int64_t *idx, int64_t n, double *stats, int *finite);
  srlm_status (*done)(void *ctx, const srlm_engine_info *info);               /* may be NULL */
  void *ctx;
} srlm_engine_hooks;

typedef struct srlm_engine_options {
  const char *what;          /* the trainer, for error messages ("sft", "pref", "grpo") */
  srlm_engine_order order;
  int epochs;                /* >= 1 */
  int n_stats;               /* metric sums per step (>= 0) */
  srlm_optim_config optim;   /* a fresh AdamW per run (srlm_optim_create_for_model) */
  srlm_lr_schedule schedule; /* total_steps is set to the run's steps (epochs x steps an epoch) */
  const srlm_dp *dp;         /* NULL: one learner */
  const srlm_train_resume *resume; /* NULL: from the first step */
  srlm_engine_hooks hooks;
  /* WARP's EMA anchor (NULL: none): after every step that updated the weights (and after
   * ZeRO's allgather, so every learner holds the same full weights and updates its own
   * full anchor alike, without communication), anchor <- (1 - anchor_mu) anchor + anchor_mu m
   * (srlm_engine_ema_update), before done(). With ZeRO-1 on a bf16 model each learner
   * updates only its master range of it (the model's and the anchor's masters are sharded)
   * and the anchor's bf16 compute copy is all-gathered: the same bits. The trainers forward
   * it for their reference. */
  srlm_model *anchor;
  double anchor_mu; /* (0, 1] */
} srlm_engine_options;

typedef struct srlm_engine_summary {
  int64_t steps;   /* the step count reached (those before the resume point included) */
  int64_t skipped; /* steps skipped in this run */
  double seconds;
} srlm_engine_summary;

/* A copy of m (same config, backend and dtype; parameters copied; srlm_model_clone for
 * SRLM_MODEL_LEARN) to be an EMA anchor. m's master must be whole (not yet sharded). */
srlm_status srlm_engine_anchor_create(srlm_model *m, srlm_model **anchor);

/* anchor <- (1 - mu) anchor + mu m over all parameters (both masters whole: a sharded one
 * is an error; the engine updates a ZeRO-1 shard itself), each element computed in double
 * from the fp32 masters and rounded once to fp32 (so the same bits on every learner and
 * after a resume); the anchor's compute copy is rounded from it. One ema op on the models'
 * backend (backend.h): the weights never leave it and nothing is allocated. The two models
 * must share backend, dtype and size. */
srlm_status srlm_engine_ema_update(srlm_model *anchor, srlm_model *m, double mu);

/* Trains m as described above. Every check (options, learners, schedule, resume point)
 * runs before anything changes; a rejected run leaves the weights as they were. out may
 * be NULL; it is filled also when a hook or a step fails. */
srlm_status srlm_engine_run(srlm_model *m, const srlm_engine_options *o, srlm_engine_summary *out);

#ifdef __cplusplus
}
#endif
#endif
