/* srlm losses: the sequence-level math of the learner's objectives (ALGORITHMS.md
 * sections 0-2). Each function turns log-probs into a loss, the coefficients the
 * learner's backward needs, and metrics. No model, no device: plain host math in double.
 *
 * The one-gradient contract (ALGORITHMS.md section 0): the model's backward takes
 * g_t = dL/dlogp_t per token. For the preference losses L depends on a response only
 * through logpi(y) = sum_t logp_t over its response tokens, so dL/dlogp_t is the same
 * coefficient dL/dlogpi(y) on every response token of y; srlm_loss_pref returns those
 * per-sequence coefficients. GRPO's objective is per token and returns g_t directly.
 *
 * Normalization and gradient accumulation: every loss is a SUM of per-pair (per-token)
 * terms divided by a normalizer (norm fields below). By default the normalizer counts
 * this call's pairs, sequences or tokens; a learner that splits one optimizer step into
 * micro-batches (or ranks) passes the step's totals instead, so the loss values and the
 * coefficients of the pieces add up exactly to those of the whole step. Metrics are
 * sums with their counts for the same reason (srlm_*_metrics_merge adds them; divide
 * by the counts to report means).
 *
 * The formulas themselves are written once, in loss_math.h (shared with the backend's
 * pref_loss and grpo_loss ops); this module adds the checks, the batch loops and the
 * metric sums. srlm_log_sigmoid and srlm_sigmoid come from there too.
 *
 * Shapes: n pairs / sequences; N = total response tokens of a GRPO batch.
 * Log-probs of a sequence are sums over its response tokens (prompt and padding
 * excluded; EOS included when it was generated); lengths count those tokens.
 */
#ifndef SRLM_LOSSES_H
#define SRLM_LOSSES_H

#include <stdint.h>

#include "srlm/core.h"
#include "srlm/loss_math.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- preference losses (DPO, cDPO, IPO, SimPO, SFT; + NLL term) ------------ */

/* The kinds (srlm_pref_loss) and their formulas are in loss_math.h. */

typedef struct srlm_pref_options {
  srlm_pref_loss kind;
  double beta;            /* DPO/SimPO inverse temperature; IPO: tau (> 0) */
  double label_smoothing; /* cDPO eps in [0, 0.5]; DPO only */
  double simpo_gamma;     /* SimPO target margin */
  double nll_weight;      /* alpha: adds alpha * (-logpi(y_w)/|y_w|) to every kind (RECIPES: 1.0) */
  int64_t norm;           /* loss = (1/norm) sum_i l_i; 0 = n (this call's pairs) */
} srlm_pref_options;

typedef struct srlm_pref_batch {
  int64_t n;                   /* pairs */
  const double *logp_chosen;   /* (n) logpi(y_w): summed response-token log-probs */
  const double *logp_rejected; /* (n) logpi(y_l) */
  const double *ref_chosen;    /* (n) logpi_ref(y_w); required for DPO and IPO, else may be NULL */
  const double *ref_rejected;  /* (n) logpi_ref(y_l); as ref_chosen */
  const int64_t *len_chosen;   /* (n) |y_w| > 0; required for IPO, SimPO, SFT and nll_weight > 0 */
  const int64_t *len_rejected; /* (n) |y_l| > 0; required for IPO and SimPO */
  /* Per-pair weights and soft labels (loss_math.h srlm_pref_pair_in): NULL = every pair's
   * w = 1 and eps = label_smoothing above. weight (n) finite, >= 0; label_smoothing (n) in
   * [0, 1], DPO only (another kind with labels is an error). */
  const double *weight;
  const double *label_smoothing;
} srlm_pref_batch;

/* Sums over the pairs of one call (or merged calls); divide by `pairs` for means.
 * Rewards: beta (logpi - logpi_ref) when the reference is given, beta logpi/|y| for
 * SimPO without one, else 0. accuracy counts pairs with reward_chosen > reward_rejected
 * (h > 0 for DPO). */
typedef struct srlm_pref_metrics {
  int64_t pairs;
  double loss; /* the normalized loss (sum of l_i / norm): add pieces of one step */
  double nll_sum;            /* sum of -logpi(y_w)/|y_w| (0 when lengths are not given) */
  double logp_chosen_sum;    /* sum of logpi(y_w) */
  double logp_rejected_sum;  /* sum of logpi(y_l) */
  double reward_chosen_sum;
  double reward_rejected_sum;
  double margin_sum;         /* sum of reward_chosen - reward_rejected */
  double accuracy_sum;       /* pairs with margin > 0 */
  double len_chosen_sum;     /* sum of |y_w| in tokens (0 when lengths are not given) */
  double len_rejected_sum;   /* sum of |y_l| */
} srlm_pref_metrics;

/* Loss of a batch of pairs and its coefficients: coef_chosen[i] = dL/dlogpi(y_w,i),
 * coef_rejected[i] = dL/dlogpi(y_l,i) (both include 1/norm). Either output may be NULL
 * when not wanted; m may be NULL. Errors (SRLM_ERR_CONFIG for bad options,
 * SRLM_ERR_RANGE naming the pair for a missing or non-positive length). */
srlm_status srlm_loss_pref(const srlm_pref_options *o, const srlm_pref_batch *b, double *coef_chosen,
                           double *coef_rejected, srlm_pref_metrics *m);

void srlm_pref_metrics_merge(srlm_pref_metrics *dst, const srlm_pref_metrics *src);

/* ---- GRPO / DAPO / Dr.GRPO ------------------------------------------------- */

/* The aggregations (srlm_grpo_agg) are in loss_math.h. */

typedef struct srlm_grpo_options {
  double clip_eps;  /* ratio clipped to [1 - clip_eps, 1 + clip_eps_high] (0.2) */
  double clip_eps_high; /* DAPO's upper clip (0.28); 0 = clip_eps */
  srlm_grpo_ratio ratio; /* per token (GRPO) or per sequence (GSPO); loss_math.h */
  double beta;      /* weight of the k3 KL to the reference; 0 = none (logp_ref not needed) */
  srlm_grpo_agg agg;
  int64_t l_max;    /* FIXED_LEN: L_max (e.g. generate.max_new_tokens) >= every length */
  /* Truncated importance-weight correction for generator/learner mismatch: the
   * clipped surrogate of token t is multiplied by min(exp(logp_old_t - logp_behavior_t), C)
   * (a constant; the KL term is not). 0 = off. */
  double is_cap;
  int64_t norm_seqs;   /* SEQ_MEAN and FIXED_LEN: n of the formulas; 0 = this call's n */
  int64_t norm_tokens; /* TOKEN_MEAN: N of the formula; 0 = this call's tokens */
} srlm_grpo_options;

typedef struct srlm_grpo_batch {
  int64_t n;                    /* sequences */
  const int64_t *offsets;       /* (n + 1) sequence i's response tokens are [offsets[i], offsets[i+1]) */
  const float *logp;            /* (N) log pi(o_t) under the current weights */
  const float *logp_old;        /* (N) log pi_old(o_t), a constant; NULL = logp (on-policy, rho = 1) */
  const float *logp_ref;        /* (N) log pi_ref(o_t); needed when beta > 0 */
  const float *logp_behavior;   /* (N) the generator's sampling log-probs; needed when is_cap > 0 */
  const double *advantages;     /* (n) A_i (srlm_group_advantages) */
} srlm_grpo_batch;

typedef struct srlm_grpo_metrics {
  int64_t seqs, tokens;
  double loss;          /* the normalized loss, -J */
  double kl_sum;        /* sum over tokens of the k3 estimate D_t (0 without logp_ref) */
  double ratio_sum;     /* sum over tokens of rho_t */
  int64_t clipped;      /* tokens whose clipped branch is active (gradient 0 through rho) */
  int64_t is_truncated; /* tokens whose importance weight hit is_cap */
} srlm_grpo_metrics;

/* Per token: rho_t = exp(logp_t - logp_old_t) (ratio SEQUENCE: the sequence's
 * exp(mean_t(logp_t - logp_old_t)) for all its tokens), Delta_t = logp_ref_t - logp_t,
 * D_t = exp(Delta_t) - Delta_t - 1 (k3),
 * J_t = w_t min(rho_t A_i, clip(rho_t, 1-eps, 1+eps_high) A_i) - beta D_t (w_t the IS weight),
 * L = -(aggregation of J_t), g[t] = dL/dlogp_t (N). m may be NULL. */
srlm_status srlm_loss_grpo(const srlm_grpo_options *o, const srlm_grpo_batch *b, float *g,
                           srlm_grpo_metrics *m);

void srlm_grpo_metrics_merge(srlm_grpo_metrics *dst, const srlm_grpo_metrics *src);

#ifdef __cplusplus
}
#endif
#endif
