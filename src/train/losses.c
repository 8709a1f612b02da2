/* Losses of the learner: preference losses over summed sequence log-probs and the
 * per-token GRPO objective. Math and conventions in include/srlm/losses.h; all
 * arithmetic in double, per-token outputs rounded to float once at the end. */
#include "srlm/losses.h"

#include <math.h>
#include <string.h>

double srlm_log_sigmoid(double x) {
  /* log sigma(x) = -log(1 + e^-x); split so that exp never overflows */
  return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

double srlm_sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

static srlm_status check_pref_options(const srlm_pref_options *o, const srlm_pref_batch *b) {
  const char *w = "loss";
  if (b->n < 0) return srlm_error(SRLM_ERR_RANGE, w, "negative pair count %lld", (long long)b->n);
  if (o->norm < 0) return srlm_error(SRLM_ERR_RANGE, w, "negative normalizer %lld", (long long)o->norm);
  if (!(o->nll_weight >= 0)) return srlm_error(SRLM_ERR_CONFIG, w, "nll_weight %g must be >= 0", o->nll_weight);
  switch (o->kind) {
  case SRLM_PREF_DPO:
    if (!(o->label_smoothing >= 0 && o->label_smoothing <= 0.5))
      return srlm_error(SRLM_ERR_CONFIG, w, "DPO label_smoothing %g outside [0, 0.5]", o->label_smoothing);
    if (!(o->beta > 0)) return srlm_error(SRLM_ERR_CONFIG, w, "DPO beta %g must be > 0", o->beta);
    break;
  case SRLM_PREF_IPO:
    if (!(o->beta > 0)) return srlm_error(SRLM_ERR_CONFIG, w, "IPO tau (beta) %g must be > 0", o->beta);
    break;
  case SRLM_PREF_SIMPO:
    if (!(o->beta > 0)) return srlm_error(SRLM_ERR_CONFIG, w, "SimPO beta %g must be > 0", o->beta);
    break;
  case SRLM_PREF_SFT: break;
  default: return srlm_error(SRLM_ERR_CONFIG, w, "unknown preference loss %d", (int)o->kind);
  }
  if (b->n == 0) return SRLM_OK;
  if (!b->logp_chosen || (o->kind != SRLM_PREF_SFT && !b->logp_rejected))
    return srlm_error(SRLM_ERR_INTERNAL, w, "policy log-probs missing");
  if ((o->kind == SRLM_PREF_DPO || o->kind == SRLM_PREF_IPO) && (!b->ref_chosen || !b->ref_rejected))
    return srlm_error(SRLM_ERR_INTERNAL, w, "%s needs reference log-probs",
                      o->kind == SRLM_PREF_DPO ? "DPO" : "IPO");
  int need_lc = o->kind == SRLM_PREF_IPO || o->kind == SRLM_PREF_SIMPO || o->kind == SRLM_PREF_SFT ||
                o->nll_weight > 0;
  int need_lr = o->kind == SRLM_PREF_IPO || o->kind == SRLM_PREF_SIMPO;
  if ((need_lc && !b->len_chosen) || (need_lr && !b->len_rejected))
    return srlm_error(SRLM_ERR_INTERNAL, w, "response lengths missing");
  for (int64_t i = 0; i < b->n; i++) {
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
  const double beta = o->beta;
  const int has_ref = b->ref_chosen && b->ref_rejected;
  for (int64_t i = 0; i < b->n; i++) {
    const double pc = b->logp_chosen[i];
    const double pr = b->logp_rejected ? b->logp_rejected[i] : 0.0;
    const double lc = b->len_chosen ? (double)b->len_chosen[i] : 0.0;
    const double lr = b->len_rejected ? (double)b->len_rejected[i] : 0.0;
    double l = 0, dc = 0, dr = 0; /* loss of the pair and its derivatives */
    double rw_c = 0, rw_r = 0;    /* logged rewards */
    if (has_ref) {
      rw_c = beta * (pc - b->ref_chosen[i]);
      rw_r = beta * (pr - b->ref_rejected[i]);
    }
    switch (o->kind) {
    case SRLM_PREF_DPO: {
      const double h = (pc - b->ref_chosen[i]) - (pr - b->ref_rejected[i]);
      const double eps = o->label_smoothing;
      l = -(1 - eps) * srlm_log_sigmoid(beta * h) - eps * srlm_log_sigmoid(-beta * h);
      const double dh = beta * (srlm_sigmoid(beta * h) - (1 - eps));
      dc = dh;
      dr = -dh;
      break;
    }
    case SRLM_PREF_IPO: {
      const double d = (pc - b->ref_chosen[i]) / lc - (pr - b->ref_rejected[i]) / lr - 1.0 / (2.0 * beta);
      l = d * d;
      dc = 2 * d / lc;
      dr = -2 * d / lr;
      break;
    }
    case SRLM_PREF_SIMPO: {
      const double z = beta * pc / lc - beta * pr / lr - o->simpo_gamma;
      l = -srlm_log_sigmoid(z);
      const double s = srlm_sigmoid(-z); /* -d log sigma(z)/dz */
      dc = -s * beta / lc;
      dr = s * beta / lr;
      if (!has_ref) {
        rw_c = beta * pc / lc;
        rw_r = beta * pr / lr;
      }
      break;
    }
    case SRLM_PREF_SFT:
      l = -pc / lc;
      dc = -1.0 / lc;
      break;
    }
    if (o->nll_weight > 0) {
      l += o->nll_weight * (-pc / lc);
      dc += -o->nll_weight / lc;
    }
    if (coef_chosen) coef_chosen[i] = dc * inv_norm;
    if (coef_rejected) coef_rejected[i] = dr * inv_norm;
    acc.loss += l * inv_norm;
    if (b->len_chosen) acc.nll_sum += -pc / lc;
    acc.logp_chosen_sum += pc;
    acc.logp_rejected_sum += pr;
    acc.reward_chosen_sum += rw_c;
    acc.reward_rejected_sum += rw_r;
    acc.margin_sum += rw_c - rw_r;
    acc.accuracy_sum += rw_c - rw_r > 0 ? 1.0 : 0.0;
    acc.len_chosen_sum += lc;
    acc.len_rejected_sum += lr;
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
  if (!(o->clip_eps >= 0 && o->clip_eps < 1))
    return srlm_error(SRLM_ERR_CONFIG, w, "GRPO clip_eps %g outside [0, 1)", o->clip_eps);
  if (!(o->beta >= 0)) return srlm_error(SRLM_ERR_CONFIG, w, "GRPO beta %g must be >= 0", o->beta);
  if (!(o->is_cap >= 0)) return srlm_error(SRLM_ERR_CONFIG, w, "GRPO is_cap %g must be >= 0", o->is_cap);
  if (o->agg != SRLM_GRPO_AGG_SEQ_MEAN && o->agg != SRLM_GRPO_AGG_TOKEN_MEAN && o->agg != SRLM_GRPO_AGG_FIXED_LEN)
    return srlm_error(SRLM_ERR_CONFIG, w, "unknown GRPO aggregation %d", (int)o->agg);
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
  const double lo = 1.0 - o->clip_eps, hi = 1.0 + o->clip_eps;
  for (int64_t i = 0; i < b->n; i++) {
    const int64_t t0 = b->offsets[i], t1 = b->offsets[i + 1];
    if (t1 == t0) continue;
    double wagg; /* d(aggregate)/dJ_t */
    switch (o->agg) {
    case SRLM_GRPO_AGG_SEQ_MEAN: wagg = 1.0 / (nseq * (double)(t1 - t0)); break;
    case SRLM_GRPO_AGG_TOKEN_MEAN: wagg = 1.0 / ntok; break;
    default: wagg = 1.0 / (nseq * (double)o->l_max); break;
    }
    const double a = b->advantages[i];
    for (int64_t t = t0; t < t1; t++) {
      const double lp = b->logp[t];
      const double old = b->logp_old ? (double)b->logp_old[t] : lp;
      const double rho = exp(lp - old);
      double wis = 1.0;
      if (o->is_cap > 0) {
        wis = exp(old - (double)b->logp_behavior[t]);
        if (wis > o->is_cap) {
          wis = o->is_cap;
          acc.is_truncated++;
        }
      }
      const double rc = rho < lo ? lo : (rho > hi ? hi : rho);
      /* min(rho A, clip(rho) A): the clipped branch wins (and blocks the gradient) only
       * when it is strictly smaller, i.e. A > 0 above the band or A < 0 below it. */
      const int clipped = rc * a < rho * a;
      double surr = clipped ? rc * a : rho * a;
      double dsurr = clipped ? 0.0 : rho * a; /* d(rho A)/dlogp = rho A */
      double jt = wis * surr, djt = wis * dsurr;
      if (b->logp_ref) { /* the KL is logged whenever the reference is there */
        const double delta = (double)b->logp_ref[t] - lp;
        const double ed = exp(delta);
        const double d = ed - delta - 1.0;
        jt -= o->beta * d;
        djt -= o->beta * (1.0 - ed); /* dD/dlogp = -(e^Delta - 1) */
        acc.kl_sum += d;
      }
      acc.loss -= wagg * jt;
      if (g) g[t] = (float)(-wagg * djt);
      acc.ratio_sum += rho;
      acc.clipped += clipped;
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
