/* srlm pref: the learner's preference training over pairs (DPO, cDPO, IPO, SimPO, SFT,
 * each with an optional NLL term on the chosen answer; losses.h has the math), plus an
 * optional replay batch of plain NLL examples per step (RECIPES.md: the model's own
 * judgments, so the judge does not drift while the actor is trained).
 *
 * A pair is (prompt, chosen response, rejected response) as token ids; a response holds
 * exactly the generated tokens (EOS included when it was generated). Both sequences of a
 * pair are prompt + response, packed without padding; logpi(y) sums the response
 * tokens' log-probs, predicted from the position before each.
 *
 * Reference log-probs (srlm_pref_ref_logps) are computed once, before any update, from
 * the model as it is: called at the start of an iteration they are the iteration's
 * starting weights M_t (ALGORITHMS.md section 1), never a second trainable model.
 *
 * Steps: one optimizer step takes the next batch_pairs x grad_accum pairs of the epoch's
 * order (a Philox permutation keyed by (seed, epoch)), forwarded in micro-batches of
 * batch_pairs, then the next replay_batch replay examples (cycling through the replay
 * data) as one micro-batch; its loss is the pair loss normalized over the step's pairs
 * plus replay_weight times the replay examples' mean-token NLL; the model's backward gets
 * the per-token coefficients of both (gradients accumulate over micro-batches); AdamW
 * (optim.h) updates. With dp (dp.h) each learner forwards its slice of the step's pairs
 * and of its replay examples, normalized by the step's global counts, and dp->reduce sums
 * the gradients, the metric sums and a non-finite flag once per step.
 * A non-finite loss (on any learner) or gradient skips the step on every learner
 * (counted); the replay cursor still moves past the step's replay examples, so the
 * learners stay in step. Deterministic for a seed and a learner count.
 *
 * The loop, the reduce, the skip, AdamW and resume are the training-step engine's
 * (engine.h): a resume (srlm_train_resume, with the replay cursor after the last step
 * done) continues the uninterrupted run bit for bit. During the step callback
 * the model's gradients (srlm_model_get_grads) hold the step's gradient; it is cleared before srlm_pref_train
 * returns.
 */
#ifndef SRLM_PREF_H
#define SRLM_PREF_H

#include <stdint.h>

#include "srlm/core.h"
#include "srlm/dp.h"
#include "srlm/engine.h"
#include "srlm/losses.h"
#include "srlm/model.h"
#include "srlm/optim.h"
#include "srlm/sft.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SRLM_PREF_RNG_PURPOSE 0x9ef0u

typedef struct srlm_pref_pair {
  const int32_t *prompt;   /* (prompt_len) */
  const int32_t *chosen;   /* (chosen_len) >= 1 token */
  const int32_t *rejected; /* (rejected_len) >= 1 token */
  int64_t prompt_len, chosen_len, rejected_len;
} srlm_pref_pair;

/* ref_chosen[i] = logpi_ref(chosen_i), ref_rejected[i] likewise, from the model's current
 * weights, in packed batches of up to max_tokens tokens, formed greedily from pair 0: a
 * batch takes whole pairs in order while they fit, at least one (src/roles/learn.c splits
 * the pairs over learners at these batches' starts, so each share runs the same batches). */
srlm_status srlm_pref_ref_logps(srlm_model *m, const srlm_pref_pair *pairs, int64_t n, int64_t max_tokens,
                                double *ref_chosen, double *ref_rejected);

/* Gradient of the pair loss of pairs idx[0..count) (normalized over count pairs),
 * ACCUMULATED into the model's gradients (its backward adds; srlm_model_get_grads reads them); no optimizer step.
 * For tests and for learners that all-reduce gradients before stepping. m may be NULL. */
srlm_status srlm_pref_grad(srlm_model *m, const srlm_pref_pair *pairs, const int64_t *idx, int64_t count,
                           const double *ref_chosen, const double *ref_rejected, const srlm_pref_options *loss,
                           srlm_pref_metrics *metrics);

/* What one optimizer step did (passed to the step callback). */
typedef struct srlm_pref_step_info {
  int64_t step, total_steps;
  int epoch, epochs;
  srlm_pref_metrics pref; /* sums over the step's pairs (divide by pref.pairs) */
  double loss;            /* pair loss + replay_weight * replay NLL */
  double replay_nll;      /* mean-token NLL of the replay batch (NaN when none) */
  double lr, grad_norm, clip_scale;
  int skipped;
  int64_t n_skipped;
  int64_t tokens; /* tokens forwarded in the step (pairs and replay) */
  double step_seconds, elapsed_seconds;
  srlm_optim *optim;   /* the trainer's optimizer after the step (for a checkpoint) */
  int64_t replay_next; /* the replay cursor after the step (for a checkpoint) */
} srlm_pref_step_info;

typedef srlm_status (*srlm_pref_step_fn)(const srlm_pref_step_info *info, void *user);

typedef struct srlm_pref_train_options {
  srlm_pref_options loss;        /* kind, beta, label smoothing, nll_weight (norm is set per step) */
  /* Per-pair loss weights and soft labels, indexed like the pairs (loss_math.h
   * srlm_pref_pair_in: w scales the pair's whole term, NLL included; eps is cDPO's, DPO
   * only). NULL = w 1 and eps loss.label_smoothing for every pair, bit for bit the
   * unweighted loss. Arrays beside the pairs (like ref_chosen), not pair fields, so the
   * pairs' positional initializers stay as they are. */
  const double *pair_weight;     /* (n) w >= 0: ScPO's vote margin, SCIR's w_disagree */
  const double *pair_label;      /* (n) eps in [0, 1]: CREAM's 1 - C */
  int batch_pairs;               /* pairs per micro-batch (>= 1) */
  int grad_accum;                /* micro-batches per optimizer step (0 or 1 = one) */
  const srlm_dp *dp;             /* learners splitting each step (dp.h); NULL = one learner */
  int epochs;                    /* passes over the pairs (>= 1) */
  srlm_optim_config optim;
  srlm_lr_schedule schedule;     /* total_steps is filled in from the data */
  uint64_t seed;
  const srlm_sft_data *replay;   /* NULL or empty: no replay term */
  int replay_batch;              /* replay examples per step */
  double replay_weight;
  srlm_pref_step_fn on_step;
  void *user;
  const srlm_train_resume *resume; /* NULL: from the first step (engine.h) */
  /* WARP's EMA anchor (NULL: none): the reference is the anchor's log-probs of each
   * micro-batch, forwarded just before the policy's (ref_* are then ignored and may be
   * NULL: one more forward per micro-batch), and the engine moves the anchor toward the
   * weights by anchor_mu after every step that updated them (engine.h). */
  srlm_model *anchor;
  double anchor_mu;
} srlm_pref_train_options;

typedef struct srlm_pref_summary {
  int64_t steps;                /* the step count reached (steps before a resume point included) */
  int64_t skipped, tokens;      /* over the steps run in this call */
  double first_loss, last_loss; /* of the first and the last step run in this call */
  double seconds;
  srlm_pref_metrics pref;       /* over the steps run in this call that were not skipped */
} srlm_pref_summary;

/* Trains m on n pairs with reference log-probs ref_* (from srlm_pref_ref_logps; may be
 * NULL for losses without a reference). A fresh optimizer per call (RECIPES.md: fresh
 * optimizer each iteration). */
srlm_status srlm_pref_train(srlm_model *m, const srlm_pref_pair *pairs, int64_t n, const double *ref_chosen,
                            const double *ref_rejected, const srlm_pref_train_options *o, srlm_pref_summary *out);

#ifdef __cplusplus
}
#endif
#endif
