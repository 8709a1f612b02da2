/* srlm optim: AdamW with decoupled weight decay, global-norm gradient clipping, skipping
 * of steps whose gradients are not finite, and learning-rate schedules.
 *
 * AdamW follows torch.optim.AdamW (amsgrad=False, maximize=False, the for-loop
 * implementation), per parameter element, with step count t after incrementing:
 *   p <- p * (1 - lr * wd)                       (decoupled decay; only where decay is on)
 *   m <- beta1 * m + (1 - beta1) * g
 *   v <- beta2 * v + (1 - beta2) * g * g
 *   p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * so eps is added after the bias correction of sqrt(v), as PyTorch does.
 * m, v and p are fp32; the per-step scalars are computed in double.
 *
 * Clipping follows torch.nn.utils.clip_grad_norm_: with the global L2 norm N over all
 * gradients, g <- g * min(1, clip / (N + 1e-6)). The norm is a sum of squares in double
 * over fixed chunks of the flat array, chunk sums added in chunk order: the same bits
 * for any thread count. Clipping scales the gradient as the update reads it; the
 * gradient array itself is not modified.
 *
 * Non-finite gradients: when the norm is NaN or Inf the step is skipped (parameters,
 * m, v and the step count are unchanged), counted, and reported in the step stats; the
 * caller logs it.
 *
 * Weight decay applies per tensor: by default not to 1-D tensors (RMSNorm weights and
 * biases), as is usual for transformers (Llama and Qwen recipes, nanoGPT). Set
 * srlm_optim_config.decay_1d to decay them too. srlm_optim_create_for_model builds that
 * mask from the model's tensor list; srlm_optim_set_decay marks ranges by hand.
 *
 * Parameters (the fp32 master), gradients, m and v live in the backend's memory; the
 * arithmetic is the backend's grad_sumsq and adamw ops (backend.h). For a bf16 model the
 * optimizer made by srlm_optim_create_for_model also writes the bf16 compute copy.
 */
#ifndef SRLM_OPTIM_H
#define SRLM_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/backend.h"
#include "srlm/config.h"
#include "srlm/core.h"
#include "srlm/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- AdamW ----------------------------------------------------------------- */

typedef struct srlm_optim_config {
  double beta1, beta2; /* in [0, 1) */
  double eps;          /* > 0 */
  double weight_decay; /* >= 0, decoupled (multiplied by the step's lr) */
  double grad_clip;    /* global-norm clip; 0 = off */
  int decay_1d;        /* 1: decay 1-D tensors (norms, biases) too; 0 (usual): not */
} srlm_optim_config;

/* The optimizer options of a config (train.adam_beta1/2, adam_eps, weight_decay,
 * grad_clip, decay_1d). */
void srlm_optim_config_from_config(const srlm_config *cfg, srlm_optim_config *out);

typedef struct srlm_optim srlm_optim;

/* An optimizer over n flat parameters on backend be, m = v = 0, step 0, weight decay on
 * for every element. Bad options are SRLM_ERR_CONFIG naming the option. */
srlm_status srlm_optim_create(srlm_backend *be, size_t n, const srlm_optim_config *cfg, srlm_optim **out);
/* The same for a model's flat parameters, with the weight-decay mask from its tensors
 * (1-D tensors excluded unless decay_1d). */
srlm_status srlm_optim_create_for_model(srlm_model *m, const srlm_optim_config *cfg, srlm_optim **out);
void srlm_optim_free(srlm_optim *o);

/* Turns weight decay on (1) or off (0) for elements [offset, offset + numel). */
srlm_status srlm_optim_set_decay(srlm_optim *o, size_t offset, size_t numel, int decay);
/* Elements with weight decay on (for reports and tests). */
size_t srlm_optim_decayed_count(const srlm_optim *o);

/* What one call of srlm_optim_step did. */
typedef struct srlm_optim_stats {
  double grad_norm;  /* global L2 norm of the gradients before clipping (NaN/Inf when not finite) */
  double clip_scale; /* factor applied to the gradients (1 when not clipped) */
  double lr;         /* the learning rate used */
  int skipped;       /* 1: non-finite gradients, nothing changed */
  int64_t step;      /* optimizer steps taken so far (after this call) */
  int64_t n_skipped; /* steps skipped so far */
} srlm_optim_stats;

/* One AdamW step with learning rate lr on params (the fp32 master of the optimizer's range:
 * all n, or with srlm_optim_shard its [lo, hi) only, params[i] being parameter lo + i)
 * from grads (n), both in the backend's memory. grads is only read. stats may be NULL. */
srlm_status srlm_optim_step(srlm_optim *o, float *params, const float *grads, double lr,
                            srlm_optim_stats *stats);

/* Global L2 norm of x (n, host memory), in double, fixed chunk order (any thread count,
 * same bits): the CPU backend's grad_sumsq. */
double srlm_optim_global_norm(const float *x, size_t n);

/* ---- state, for checkpoints -------------------------------------------------- */

/* A view of the optimizer's state: m and v point into the optimizer (BACKEND memory,
 * n elements each: the moments of parameters [offset, offset + n), all of them unless
 * the optimizer is sharded; srlm_optim_read_moments copies all to the host); valid until
 * srlm_optim_free. */
typedef struct srlm_optim_state {
  float *m;          /* (n) first moments */
  float *v;          /* (n) second moments */
  size_t offset;     /* the first parameter they belong to (a ZeRO-1 shard's start; else 0) */
  size_t n;
  int64_t step;      /* steps taken (the bias corrections use it) */
  int64_t n_skipped; /* steps skipped */
} srlm_optim_state;

void srlm_optim_get_state(srlm_optim *o, srlm_optim_state *out);
/* Copies all the moments into host memory m and v (one element per parameter each), for
 * checkpoints. A sharded optimizer gathers them from every learner: a collective, every
 * learner calls it at the same point; with the learners' allgather_host (dp.h) they are
 * gathered to learner 0 only (who writes the checkpoint), the others' m and v getting
 * their own range. */
srlm_status srlm_optim_read_moments(srlm_optim *o, float *m, float *v);
/* Restores a saved state: copies m and v (n each, host memory: one per parameter; a
 * sharded optimizer takes its range) and sets the counters. n must equal the number of
 * parameters (SRLM_ERR_RANGE otherwise). */
srlm_status srlm_optim_set_state(srlm_optim *o, const float *m, const float *v, size_t n, int64_t step,
                                 int64_t n_skipped);

/* ---- ZeRO-1 (dp.h) ------------------------------------------------------------ */

struct srlm_dp;
/* Shards a fresh optimizer over dp's learners (dp->size > 1 with the ZeRO-1 functions;
 * NULL or one learner: nothing to do). Learner j gets the parameters [b[j], b[j + 1]),
 * b[j] the cut nearest below n * j / size that is a weight-decay segment's start plus a
 * multiple of SRLM_SUMSQ_CHUNK (so the norm's chunk sums are the unsharded ones); it keeps
 * only their moments. From then on srlm_optim_step updates only that range (its params
 * are that range's master; the bf16 compute copy's range is written too), the gradient
 * norm is the chain over the learners (a
 * collective), and read_moments gathers. dp must outlive the optimizer. Call before
 * set_state; set_decay is refused after it. */
srlm_status srlm_optim_shard(srlm_optim *o, const struct srlm_dp *dp);
/* create_for_model + shard without ever holding the whole moments: this learner's range is
 * allocated (zeroed) directly, so a ZeRO-1 learner's peak is its shard, as the memory plan
 * counts. dp NULL or one learner: create_for_model. */
srlm_status srlm_optim_create_sharded(srlm_model *m, const srlm_optim_config *cfg, const struct srlm_dp *dp,
                                      srlm_optim **out);
/* The shard bounds (dp->size + 1 offsets) of a sharded optimizer, else NULL. */
const int64_t *srlm_optim_shard_bounds(const srlm_optim *o);

/* ---- learning-rate schedules -------------------------------------------------- */

/* lr at optimizer step s (0-based: the first step uses s = 0), with W warmup steps and
 * S total steps, as transformers' schedulers (the scheduler steps after the optimizer):
 *   warmup (s < W):     lr * s / W                    (the first step has lr 0 when W > 0)
 *   constant:           lr
 *   linear:             min_lr + (lr - min_lr) * max(0, (S - s) / max(1, S - W))
 *   cosine:             min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * p)),
 *                       p = min(1, (s - W) / max(1, S - W))
 * With min_lr = 0 these are get_constant_schedule_with_warmup,
 * get_linear_schedule_with_warmup and get_cosine_schedule_with_warmup (num_cycles 0.5);
 * with min_lr > 0, cosine is get_cosine_with_min_lr_schedule_with_warmup(min_lr=...). */
typedef struct srlm_lr_schedule {
  srlm_cfg_lr_schedule kind; /* constant, linear, cosine */
  double lr;                 /* peak */
  double min_lr;             /* end of the decay (linear, cosine); <= lr */
  int64_t warmup_steps;      /* W >= 0 */
  int64_t total_steps;       /* S >= 1 */
} srlm_lr_schedule;

/* From train.lr, lr_schedule, min_lr, warmup_steps and the run's total steps. */
void srlm_lr_schedule_from_config(const srlm_config *cfg, int64_t total_steps, srlm_lr_schedule *out);
/* Consistency (min_lr <= lr, S >= 1, W >= 0): SRLM_ERR_CONFIG naming the train.* key. */
srlm_status srlm_lr_schedule_check(const srlm_lr_schedule *s);
double srlm_lr_at(const srlm_lr_schedule *s, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
