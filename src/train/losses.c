/* Losses of the learner: preference losses over summed sequence log-probs and the
 * per-token GRPO objective. Conventions in include/srlm/losses.h; the formulas are
 * loss_math.h's (shared with the backend's loss ops), this file checks the inputs, loops
 * over the batch and sums the metrics. All arithmetic in double, per-token outputs
 * rounded to float once at the end. */
#include "srlm/losses.h"

#include <math.h>
#include <string.h>

static srlm_status check_pref_options(const srlm_pref_options *o, const srlm_pref_batch *b) {
  const char *w = "loss";
  if (b->n < 0) return srlm_error(SRLM_ERR_RANGE, w, "negative pair count %lld", (long long)b->n);
  if (o->norm < 0) return srlm_error(SRLM_ERR_RANGE, w, "negative normalizer %lld", (long long)o->norm);
  char why[128];
  if (srlm_pref_options_invalid((int)o->kind, o->beta, o->label_smoothing, o->nll_weight, why, sizeof why))
    return srlm_error(SRLM_ERR_CONFIG, w, "%s", why);
  if (b->n == 0) return SRLM_OK;
  if (!b->logp_chosen || (o->kind != SRLM_PREF_SFT && !b->logp_rejected))
    return srlm_error(SRLM_ERR_INTERNAL, w, "policy log-probs missing");
  if (srlm_pref_needs_ref(o->kind) && (!b->ref_chosen || !b->ref_rejected))
    return srlm_error(SRLM_ERR_INTERNAL, w, "%s needs reference log-probs",
                      o->kind == SRLM_PREF_DPO ? "DPO" : "IPO");
  const int need_lc = srlm_pref_needs_len_chosen(o->kind, o->nll_weight);
  const int need_lr = srlm_pref_needs_len_rejected(o->kind);
  if ((need_lc && !b->len_chosen) || (need_lr && !b->len_rejected))
    return srlm_error(SRLM_ERR_INTERNAL, w, "response lengths missing");
  if (b->label_smoothing && o->kind != SRLM_PREF_DPO)
    return srlm_error(SRLM_ERR_CONFIG, w, "per-pair soft labels are DPO's (cDPO), not this loss's");
  for (int64_t i = 0; i < b->n; i++) {
    if (b->weight && !(isfinite(b->weight[i]) && b->weight[i] >= 0))
      return srlm_error(SRLM_ERR_RANGE, w, "pair %lld: weight %g must be finite and >= 0", (long long)i, b->weight[i]);
    if (b->label_smoothing && !(b->label_smoothing[i] >= 0 && b->label_smoothing[i] <= 1))
      return srlm_error(SRLM_ERR_RANGE, w, "pair %lld: soft label (label smoothing) %g outside [0, 1]", (long long)i,
                        b->label_smoothing[i]);
    if (need_lc && b->len_chosen[i] <= 0)
      return srlm_error(SRLM_ERR_RANGE, w, "pair %lld: chosen answer has %lld response tokens",
                        (long long)i, (long long)b->len_chosen[i]);
    if (need_lr && b->len_rejected[i] <= 0)
      return srlm_error(SRLM_ERR_RANGE, w, "pair %lld: rejected answer has %lld response tokens",
                        (long long)i, (long long)b->len_rejected[i]);
  }
  return SRLM_OK;
}

srlm_status srlm_loss_pref(const srlm_pref_options *o, const srlm_pref_batch *b, double *coef_chosen,
                           double *coef_rejected, srlm_pref_metrics *m) {
  SRLM_TRY(check_pref_options(o, b));
  srlm_pref_metrics acc;
  memset(&acc, 0, sizeof acc);
  acc.pairs = b->n;
  const double inv_norm = 1.0 / (double)(o->norm > 0 ? o->norm : (b->n > 0 ? b->n : 1));
  const srlm_pref_math pm = {.kind = (int)o->kind, .beta = o->beta,
                             .simpo_gamma = o->simpo_gamma, .nll_weight = o->nll_weight, .inv_norm = inv_norm};
  const int has_ref = b->ref_chosen && b->ref_rejected;
  for (int64_t i = 0; i < b->n; i++) {
    const srlm_pref_pair_in x = {
        .logp_chosen = b->logp_chosen[i],
        .logp_rejected = b->logp_rejected ? b->logp_rejected[i] : 0.0,
        .ref_chosen = has_ref ? b->ref_chosen[i] : 0.0,
        .ref_rejected = has_ref ? b->ref_rejected[i] : 0.0,
        .len_chosen = b->len_chosen ? (double)b->len_chosen[i] : 0.0,
        .len_rejected = b->len_rejected ? (double)b->len_rejected[i] : 0.0,
        .weight = b->weight ? b->weight[i] : 1.0,
        .label_smoothing = b->label_smoothing ? b->label_smoothing[i] : o->label_smoothing,
        .has_ref = has_ref,
    };
    const srlm_pref_term t = srlm_pref_pair_term(pm, x);
    if (coef_chosen) coef_chosen[i] = t.coef_chosen;
    if (coef_rejected) coef_rejected[i] = t.coef_rejected;
    acc.loss += t.loss;
    if (b->len_chosen) acc.nll_sum += t.nll;
    acc.logp_chosen_sum += x.logp_chosen;
    acc.logp_rejected_sum += x.logp_rejected;
    acc.reward_chosen_sum += t.reward_chosen;
    acc.reward_rejected_sum += t.reward_rejected;
    acc.margin_sum += t.reward_chosen - t.reward_rejected;
    acc.accuracy_sum += t.reward_chosen - t.reward_rejected > 0 ? 1.0 : 0.0;
    acc.len_chosen_sum += x.len_chosen;
    acc.len_rejected_sum += x.len_rejected;
  }
  if (m) *m = acc;
  return SRLM_OK;
}

void srlm_pref_metrics_merge(srlm_pref_metrics *dst, const srlm_pref_metrics *src) {
  dst->pairs += src->pairs;
  dst->loss += src->loss;
  dst->nll_sum += src->nll_sum;
  dst->logp_chosen_sum += src->logp_chosen_sum;
  dst->logp_rejected_sum += src->logp_rejected_sum;
  dst->reward_chosen_sum += src->reward_chosen_sum;
  dst->reward_rejected_sum += src->reward_rejected_sum;
  dst->margin_sum += src->margin_sum;
  dst->accuracy_sum += src->accuracy_sum;
  dst->len_chosen_sum += src->len_chosen_sum;
  dst->len_rejected_sum += src->len_rejected_sum;
}

/* ---- GRPO ------------------------------------------------------------------ */

static srlm_status check_grpo(const srlm_grpo_options *o, const srlm_grpo_batch *b) {
  const char *w = "loss";
  char why[128];
  if (srlm_grpo_options_invalid(o->clip_eps, o->clip_eps_high, (int)o->ratio, o->beta, o->is_cap, (int)o->agg, why,
                                sizeof why))
    return srlm_error(SRLM_ERR_CONFIG, w, "%s", why);
  if (b->n < 0 || o->norm_seqs < 0 || o->norm_tokens < 0)
    return srlm_error(SRLM_ERR_RANGE, w, "negative sequence or token count");
  if (b->n == 0) return SRLM_OK;
  if (!b->offsets || !b->logp || !b->advantages) return srlm_error(SRLM_ERR_INTERNAL, w, "GRPO inputs missing");
  if (o->beta > 0 && !b->logp_ref) return srlm_error(SRLM_ERR_INTERNAL, w, "GRPO beta > 0 needs reference log-probs");
  if (o->is_cap > 0 && !b->logp_behavior)
    return srlm_error(SRLM_ERR_INTERNAL, w, "GRPO is_cap > 0 needs the generator's log-probs");
  if (b->offsets[0] != 0) return srlm_error(SRLM_ERR_RANGE, w, "offsets[0] = %lld, expected 0", (long long)b->offsets[0]);
  for (int64_t i = 0; i < b->n; i++) {
    int64_t len = b->offsets[i + 1] - b->offsets[i];
    if (len < 0) return srlm_error(SRLM_ERR_RANGE, w, "sequence %lld: offsets decrease", (long long)i);
    if (o->agg == SRLM_GRPO_AGG_FIXED_LEN && len > o->l_max)
      return srlm_error(SRLM_ERR_RANGE, w, "sequence %lld: %lld tokens exceed l_max %lld", (long long)i,
                        (long long)len, (long long)o->l_max);
  }
  return SRLM_OK;
}

srlm_status srlm_loss_grpo(const srlm_grpo_options *o, const srlm_grpo_batch *b, float *g,
                           srlm_grpo_metrics *m) {
  SRLM_TRY(check_grpo(o, b));
  srlm_grpo_metrics acc;
  memset(&acc, 0, sizeof acc);
  acc.seqs = b->n;
  acc.tokens = b->n > 0 ? b->offsets[b->n] : 0;
  const double nseq = (double)(o->norm_seqs > 0 ? o->norm_seqs : (b->n > 0 ? b->n : 1));
  const double ntok = (double)(o->norm_tokens > 0 ? o->norm_tokens : (acc.tokens > 0 ? acc.tokens : 1));
  const srlm_grpo_math gm = srlm_grpo_math_make(o->clip_eps, o->clip_eps_high, o->beta, o->is_cap, (int)o->ratio);
  for (int64_t i = 0; i < b->n; i++) {
    const int64_t t0 = b->offsets[i], t1 = b->offsets[i + 1];
    if (t1 == t0) continue;
    const double w = srlm_grpo_token_weight((int)o->agg, nseq, ntok, t1 - t0, o->l_max);
    double slr = 0, sis = 0; /* the sequence's log-ratio sums, in token order */
    if (gm.seq_ratio) {
      for (int64_t t = t0; t < t1; t++) {
        const double lp = b->logp[t], old = b->logp_old ? (double)b->logp_old[t] : lp;
        slr += lp - old;
        if (o->is_cap > 0) sis += old - (double)b->logp_behavior[t];
      }
    }
    for (int64_t t = t0; t < t1; t++) {
      const double lp = b->logp[t];
      const srlm_grpo_token_in x = {
          .logp = lp,
          .logp_old = b->logp_old ? (double)b->logp_old[t] : lp,
          .logp_ref = b->logp_ref ? (double)b->logp_ref[t] : 0.0,
          .logp_behavior = o->is_cap > 0 ? (double)b->logp_behavior[t] : 0.0,
          .has_ref = b->logp_ref != NULL,
          .seq_log_ratio = slr / (double)(t1 - t0),
          .seq_log_is = sis / (double)(t1 - t0),
      };
      const srlm_grpo_term r = srlm_grpo_token_term(gm, b->advantages[i], w, x);
      if (b->logp_ref) acc.kl_sum += r.kl; /* the KL is logged whenever the reference is there */
      acc.loss -= r.wj;
      if (g) g[t] = (float)r.g;
      acc.ratio_sum += r.rho;
      acc.clipped += r.clipped;
      acc.is_truncated += r.truncated;
    }
  }
  if (m) *m = acc;
  return SRLM_OK;
}

void srlm_grpo_metrics_merge(srlm_grpo_metrics *dst, const srlm_grpo_metrics *src) {
  dst->seqs += src->seqs;
  dst->tokens += src->tokens;
  dst->loss += src->loss;
  dst->kl_sum += src->kl_sum;
  dst->ratio_sum += src->ratio_sum;
  dst->clipped += src->clipped;
  dst->is_truncated += src->is_truncated;
}
