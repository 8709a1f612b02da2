/* srlm grpo: the learner's GRPO / DAPO / Dr.GRPO training over groups of sampled
 * responses (ALGORITHMS.md section 2; the per-token loss and its gradient are
 * srlm_loss_grpo in losses.h, the advantages srlm_group_advantages in pairs.h).
 *
 * Data: n_groups groups of group_size sequences, group j = sequences
 * [j * group_size, (j + 1) * group_size), each prompt + response as token ids. A response
 * holds exactly the generated tokens (EOS included when it was generated); every
 * response token is predicted from the position before it, so a prompt needs >= 1
 * token. Per-token arrays (old, reference, behavior log-probs) are CONCATENATED over the
 * sequences in order: sequence i's tokens are [off[i], off[i+1]) with off the prefix sums
 * of the response lengths (N = off[n] in all).
 *
 * Old and reference policies: srlm_grpo_logps, called at the start of an iteration,
 * gives the log-probs of the iteration's starting weights M_t, which are both pi_ref
 * (the KL anchor) and pi_old (the ratio's denominator): the first step's ratio is 1 and
 * later steps' ratios measure how far the iteration's earlier steps moved the policy
 * (PPO-style mini-batch updates, clipped); with epochs = 1 every group is used once, one
 * update per sampling round as in DeepSeekMath. logp_old = NULL makes the ratio 1 at
 * every step instead (pure on-policy: rho = pi / stopgrad(pi)).
 *
 * Steps: each epoch visits the GROUPS in a Philox permutation keyed by
 * (seed, SRLM_GRPO_RNG_PURPOSE, epoch). One optimizer step takes the next
 * batch_groups * grad_accum groups of that order (the epoch's last step may take fewer);
 * its sequence list is those groups' sequences, group by group. The step's loss is the
 * aggregation (srlm_grpo_agg) over ALL of its sequences and tokens: the normalizers
 * (norm_seqs, norm_tokens) are the step's global counts, so splitting the step into
 * micro-batches or learners only re-associates the gradient sum.
 *
 * Data parallelism (dp.h): learner r takes the contiguous slice srlm_dp_slice of the
 * step's sequence list and processes it as grad_accum contiguous micro-batches of about
 * equal size (so a micro-batch holds about batch_groups * group_size / R sequences on
 * each of R learners; a learner with an empty piece skips it). After the last
 * micro-batch every learner calls dp->reduce exactly once (gradients + the step's metric
 * sums + a non-finite flag) and then all take, or all skip, the same AdamW step. Every
 * input check runs up front on all the data, identically on every learner, so no learner
 * fails alone in the middle of a step.
 *
 * Groups whose advantages are all zero (equal rewards) are trained like the others (the
 * self-rewarding learner can leave them out before: train.grpo_equal_groups drop):
 * they count in the normalizers (they dilute the step's loss as in TRL) and their
 * tokens carry the KL term when beta > 0; their surrogate gradient is exactly zero.
 *
 * Non-finite values: a learner whose micro-batch loss is NaN/Inf stops forwarding for
 * that step and raises the flag; after the reduce every learner skips the step
 * (counted, skipped = 1). AdamW also skips a step whose gradient norm is not finite,
 * which, the gradients being reduced, happens on every learner alike.
 *
 * The loop, the reduce, the skip, AdamW and resume are the training-step engine's
 * (engine.h). Gradients: cleared before each step; during on_step they hold the step's
 * gradient (summed over micro-batches and learners); they are cleared again before
 * srlm_grpo_train returns. A fresh AdamW per call; a resume (srlm_train_resume) continues
 * the uninterrupted run bit for bit. Deterministic for a seed and a learner count.
 */
#ifndef SRLM_GRPO_H
#define SRLM_GRPO_H

#include <stdint.h>

#include "srlm/core.h"
#include "srlm/dp.h"
#include "srlm/engine.h"
#include "srlm/losses.h"
#include "srlm/model.h"
#include "srlm/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The Philox counter word that marks the GRPO group shuffle. */
#define SRLM_GRPO_RNG_PURPOSE 0x6270u

typedef struct srlm_grpo_seq {
  const int32_t *prompt;   /* (prompt_len) >= 1 token */
  const int32_t *response; /* (response_len) >= 1 token: the generated tokens, EOS included if generated */
  const float *behavior;   /* (response_len) the generator's sampling log-probs; may be NULL unless is_cap > 0 */
  int64_t prompt_len, response_len;
} srlm_grpo_seq;

/* Offsets of the concatenated per-token arrays: off (n + 1), off[0] = 0,
 * off[i + 1] = off[i] + seqs[i].response_len. Returns N = off[n]. */
int64_t srlm_grpo_offsets(const srlm_grpo_seq *seqs, int64_t n, int64_t *off);

/* out (N): the log-prob of every response token under the model's current weights,
 * concatenated in sequence order (srlm_grpo_offsets), from packed batches of whole
 * sequences of up to max_tokens tokens (prompt + response; a longer sequence goes
 * alone), formed greedily from sequence 0 (src/roles/learn.c relies on it, as for
 * srlm_pref_ref_logps). Errors name the sequence (empty prompt or response, token id outside the
 * vocabulary). */
srlm_status srlm_grpo_logps(srlm_model *m, const srlm_grpo_seq *seqs, int64_t n, int64_t max_tokens, float *out);

/* What one optimizer step did (passed to the step callback); sums over the whole step
 * (all micro-batches, all learners). */
typedef struct srlm_grpo_step_info {
  int64_t step, total_steps; /* 1-based */
  int epoch, epochs;         /* 1-based */
  srlm_grpo_metrics grpo;    /* sums: seqs, tokens (response), loss, kl_sum, ratio_sum, clipped, is_truncated */
  double loss;               /* the step's loss (= grpo.loss) */
  double kl_mean;            /* grpo.kl_sum / grpo.tokens (0 without reference log-probs) */
  double clip_frac;          /* grpo.clipped / grpo.tokens */
  double ratio_mean;         /* grpo.ratio_sum / grpo.tokens */
  double lr, grad_norm, clip_scale; /* grad_norm NaN when the step was skipped before AdamW */
  int skipped;
  int64_t n_skipped;
  int64_t tokens;            /* tokens forwarded (prompt + response) */
  int64_t groups;            /* groups in the step */
  double step_seconds, elapsed_seconds;
  srlm_optim *optim; /* the trainer's optimizer after the step (for a checkpoint) */
} srlm_grpo_step_info;

/* Called after every optimizer step; a non-OK status stops training with that status
 * (with several learners the caller must make every learner stop alike). */
typedef srlm_status (*srlm_grpo_step_fn)(const srlm_grpo_step_info *info, void *user);

typedef struct srlm_grpo_train_options {
  srlm_grpo_options loss;    /* clip_eps, beta, agg, l_max, is_cap; norm_seqs / norm_tokens are set per step */
  int batch_groups;          /* groups per micro-batch over all learners (>= 1) */
  int grad_accum;            /* micro-batches per optimizer step (>= 1) */
  int epochs;                /* passes over the groups (>= 1) */
  srlm_optim_config optim;
  srlm_lr_schedule schedule; /* total_steps is filled in from the data */
  uint64_t seed;             /* of the group order */
  const srlm_dp *dp;         /* NULL: a single learner */
  srlm_grpo_step_fn on_step; /* may be NULL */
  void *user;
  const srlm_train_resume *resume; /* NULL: from the first step (engine.h) */
  /* WARP's EMA anchor (NULL: none): the KL reference is the anchor's log-probs of each
   * micro-batch, forwarded just before the policy's (logp_ref is then unused: one more
   * forward per micro-batch); logp_old stays the iteration's. The engine moves the anchor
   * toward the weights by anchor_mu after every step that updated them (engine.h). */
  srlm_model *anchor;
  double anchor_mu;
} srlm_grpo_train_options;

typedef struct srlm_grpo_summary {
  int64_t steps;                /* the step count reached (steps before a resume point included) */
  int64_t skipped, tokens;      /* over the steps run in this call */
  double first_loss, last_loss; /* of the first and the last step run in this call */
  double seconds;
  srlm_grpo_metrics grpo;       /* merged over the steps run in this call that were not skipped */
} srlm_grpo_summary;

/* Trains m on n_groups groups of group_size sequences (seqs, n_groups * group_size)
 * with advantages (n_groups * group_size, finite; srlm_group_advantages), logp_old (N)
 * the old policy's log-probs (NULL: on-policy, ratio 1) and logp_ref (N) the
 * reference's (needed when loss.beta > 0; when given with beta = 0 the KL is only
 * logged). Behavior log-probs come from seqs[i].behavior and are needed when
 * loss.is_cap > 0. out may be NULL. */
srlm_status srlm_grpo_train(srlm_model *m, const srlm_grpo_seq *seqs, int64_t n_groups, int group_size,
                            const double *advantages, const float *logp_old, const float *logp_ref,
                            const srlm_grpo_train_options *o, srlm_grpo_summary *out);

/* Optimizer steps of one call: epochs * ceil(n_groups / (batch_groups * grad_accum)). */
int64_t srlm_grpo_total_steps(int64_t n_groups, int batch_groups, int grad_accum, int epochs);

#ifdef __cplusplus
}
#endif
#endif
