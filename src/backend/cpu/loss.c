/* CPU loss ops: pref_loss and grpo_loss (backend.h), the per-pair and per-token formulas
 * of loss_math.h over a packed batch, fused with the scatter of the per-token
 * coefficients g. The data checks come first (every response range inside the batch,
 * at least one token; GRPO: offsets from 0 that match, lengths within l_max), so an
 * error leaves the outputs untouched. Non-finite log-probs are computed through, as in
 * losses.c. One thread, sums in token order in double: the same bits as srlm_loss_pref
 * and srlm_loss_grpo on the same sums and log-probs. */
#include <string.h>

#include "cpu_ops.h"
#include "srlm/loss_math.h"

/* logpi of one response: its log-probs summed in double, in token order. */
static double response_sum(const float *logp, int64_t start, int64_t len) {
  double s = 0;
  for (int64_t t = start; t < start + len; t++) s += (double)logp[t];
  return s;
}

static void response_fill(float *g, int64_t start, int64_t len, float coef) {
  for (int64_t t = start; t < start + len; t++) g[t] = coef;
}

srlm_status srlm_cpu_pref_loss(srlm_backend *be, srlm_pref_loss_params p) {
  (void)be;
  const char *where = "cpu pref_loss";
  SRLM_TRY(srlm_pref_loss_params_check(&p, where));
  for (int64_t s = 0; s < 2 * p.n; s++) {
    if (!srlm_loss_range_ok(p.resp_start[s], p.resp_len[s], p.T))
      return srlm_error(SRLM_ERR_RANGE, where, "pair %lld: the %s answer's response (%d tokens from row %d) is "
                        "empty or outside the batch's %lld tokens", (long long)(s / 2), s % 2 ? "rejected" : "chosen",
                        p.resp_len[s], p.resp_start[s], (long long)p.T);
  }
  if (p.T > 0) memset(p.g, 0, (size_t)p.T * sizeof *p.g);
  const srlm_pref_math m = {.kind = p.kind, .beta = p.beta,
                            .simpo_gamma = p.simpo_gamma, .nll_weight = p.nll_weight,
                            .inv_norm = 1.0 / (double)p.norm};
  const int has_ref = p.ref_chosen && p.ref_rejected;
  for (int64_t i = 0; i < p.n; i++) {
    const int32_t *start = p.resp_start + 2 * i, *len = p.resp_len + 2 * i;
    const srlm_pref_pair_in x = {
        .logp_chosen = response_sum(p.logp, start[0], len[0]),
        .logp_rejected = response_sum(p.logp, start[1], len[1]),
        .ref_chosen = has_ref ? p.ref_chosen[i] : 0.0,
        .ref_rejected = has_ref ? p.ref_rejected[i] : 0.0,
        .len_chosen = (double)len[0],
        .len_rejected = (double)len[1],
        .weight = p.pair_weight ? p.pair_weight[i] : 1.0,
        .label_smoothing = p.pair_label ? p.pair_label[i] : p.label_smoothing,
        .has_ref = has_ref,
    };
    const srlm_pref_term t = srlm_pref_pair_term(m, x);
    double *out = p.pair_out + i * SRLM_PREF_OUT_COUNT;
    out[SRLM_PREF_OUT_LOSS] = t.loss;
    out[SRLM_PREF_OUT_NLL] = t.nll;
    out[SRLM_PREF_OUT_LOGP_CHOSEN] = x.logp_chosen;
    out[SRLM_PREF_OUT_LOGP_REJECTED] = x.logp_rejected;
    out[SRLM_PREF_OUT_REWARD_CHOSEN] = t.reward_chosen;
    out[SRLM_PREF_OUT_REWARD_REJECTED] = t.reward_rejected;
    out[SRLM_PREF_OUT_COEF_CHOSEN] = t.coef_chosen;
    out[SRLM_PREF_OUT_COEF_REJECTED] = t.coef_rejected;
    response_fill(p.g, start[0], len[0], (float)t.coef_chosen);
    response_fill(p.g, start[1], len[1], (float)t.coef_rejected);
  }
  return SRLM_OK;
}

srlm_status srlm_cpu_grpo_loss(srlm_backend *be, srlm_grpo_loss_params p) {
  (void)be;
  const char *where = "cpu grpo_loss";
  SRLM_TRY(srlm_grpo_loss_params_check(&p, where));
  if (p.n > 0 && p.offsets[0] != 0)
    return srlm_error(SRLM_ERR_RANGE, where, "offsets[0] = %lld, expected 0", (long long)p.offsets[0]);
  for (int64_t i = 0; i < p.n; i++) {
    const int64_t len = p.offsets[i + 1] - p.offsets[i];
    if (!srlm_loss_range_ok(p.resp_start[i], len, p.T))
      return srlm_error(SRLM_ERR_RANGE, where, "sequence %lld: its response (%lld tokens from row %d) is empty or "
                        "outside the batch's %lld tokens", (long long)i, (long long)len, p.resp_start[i],
                        (long long)p.T);
    if (p.agg == SRLM_GRPO_AGG_FIXED_LEN && len > p.l_max)
      return srlm_error(SRLM_ERR_RANGE, where, "sequence %lld: %lld tokens exceed l_max %lld", (long long)i,
                        (long long)len, (long long)p.l_max);
  }
  if (p.T > 0) memset(p.g, 0, (size_t)p.T * sizeof *p.g);
  const srlm_grpo_math m = srlm_grpo_math_make(p.clip_eps, p.clip_eps_high, p.beta, p.is_cap, p.ratio);
  const double nseq = (double)p.norm_seqs, ntok = (double)p.norm_tokens;
  for (int64_t i = 0; i < p.n; i++) {
    const int64_t t0 = p.resp_start[i], j0 = p.offsets[i], len = p.offsets[i + 1] - j0;
    const double w = srlm_grpo_token_weight(p.agg, nseq, ntok, len, p.l_max);
    double loss = 0, kl = 0, ratio = 0, clipped = 0, truncated = 0;
    double slr = 0, sis = 0; /* the sequence's log-ratio sums, in token order */
    if (m.seq_ratio) {
      for (int64_t k = 0; k < len; k++) {
        const double lp = p.logp[t0 + k], old = p.logp_old ? (double)p.logp_old[j0 + k] : lp;
        slr += lp - old;
        if (p.is_cap > 0) sis += old - (double)p.logp_behavior[j0 + k];
      }
    }
    for (int64_t k = 0; k < len; k++) {
      const int64_t t = t0 + k, j = j0 + k; /* row of the batch, index into old/ref/behavior */
      const double lp = p.logp[t];
      const srlm_grpo_token_in x = {
          .logp = lp,
          .logp_old = p.logp_old ? (double)p.logp_old[j] : lp,
          .logp_ref = p.logp_ref ? (double)p.logp_ref[j] : 0.0,
          .logp_behavior = p.is_cap > 0 ? (double)p.logp_behavior[j] : 0.0,
          .has_ref = p.logp_ref != NULL,
          .seq_log_ratio = slr / (double)len,
          .seq_log_is = sis / (double)len,
      };
      const srlm_grpo_term r = srlm_grpo_token_term(m, p.advantages[i], w, x);
      p.g[t] = (float)r.g;
      loss -= r.wj;
      kl += r.kl;
      ratio += r.rho;
      clipped += r.clipped;
      truncated += r.truncated;
    }
    double *out = p.seq_out + i * SRLM_GRPO_OUT_COUNT;
    out[SRLM_GRPO_OUT_LOSS] = loss;
    out[SRLM_GRPO_OUT_KL] = kl;
    out[SRLM_GRPO_OUT_RATIO] = ratio;
    out[SRLM_GRPO_OUT_CLIPPED] = clipped;
    out[SRLM_GRPO_OUT_TRUNCATED] = truncated;
  }
  return SRLM_OK;
}
