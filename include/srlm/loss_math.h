/* srlm loss math: the one definition of the learner's loss formulas (ALGORITHMS.md
 * sections 0-2), per pair and per token, as static inline functions that compile as C11
 * and as CUDA device code. The host losses (src/train/losses.c), the CPU ops pref_loss
 * and grpo_loss (src/backend/cpu/loss.c) and the CUDA loss kernels all call these, so a
 * formula is written once.
 *
 * Conventions
 * - Everything is double. A function gets plain values (sums, lengths and per-token
 *   log-probs already read and widened by the caller) and returns a small struct
 *   (coefficients in double: the caller rounds g to float once); it reads no arrays and
 *   reports no errors (srlm_error is host-only). The checks come first, in the callers:
 *   the option checks below, and lengths >= 1 wherever a loss reads them
 *   (srlm_pref_needs_len_*).
 * - Non-finite inputs are computed through (NaN/Inf propagate into the results); the
 *   callers decide what a non-finite loss means (the trainers skip the step). Which
 *   NaN's sign bit survives an operation is the compiler's choice, as everywhere in C.
 * - The order of the operations is part of the contract: the CPU results are the
 *   trainers' (their weights are byte-identical run after run), so do not rearrange
 *   the arithmetic. The host build has no -march, so the compiler cannot fuse a
 *   multiply and an add; nvcc does (--fmad=true), and device exp/log1p are not glibc's,
 *   so a kernel differs from the CPU by rounding only.
 *
 * Shapes: pairs i (chosen y_w, rejected y_l); sequences i with response tokens t. */
#ifndef SRLM_LOSS_MATH_H
#define SRLM_LOSS_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "srlm/core.h" /* SRLM_HD */


#ifdef __cplusplus
extern "C" {
#endif

/* ---- preference losses (DPO, cDPO, IPO, SimPO, SFT; + NLL term) -------------------- */

typedef enum srlm_pref_loss {
  /* L = -(1-eps) log sigma(beta h) - eps log sigma(-beta h) (cDPO; eps = label_smoothing),
   * h = (logpi(y_w) - logpi_ref(y_w)) - (logpi(y_l) - logpi_ref(y_l)). */
  SRLM_PREF_DPO = 0,
  /* L = (hbar_w - hbar_l - 1/(2 tau))^2, hbar = (logpi(y) - logpi_ref(y)) / |y|, tau = beta.
   * srlm normalizes by length (per-token average log-ratio, as TRL does; OpenRLHF does
   * not): the target margin 1/(2 tau) is then per token, independent of answer length. */
  SRLM_PREF_IPO,
  /* L = -log sigma(beta logpi(y_w)/|y_w| - beta logpi(y_l)/|y_l| - gamma); no reference. */
  SRLM_PREF_SIMPO,
  /* L = -logpi(y_w)/|y_w| (the chosen answer's mean-token NLL); the rejected answer and
   * the reference are ignored. */
  SRLM_PREF_SFT
} srlm_pref_loss;

/* Numerically stable log sigma(x) and sigma(x). */
SRLM_HD double srlm_log_sigmoid(double x) {
  /* log sigma(x) = -log(1 + e^-x); split so that exp never overflows */
  return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

SRLM_HD double srlm_sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

/* The scalars of a preference loss (srlm_pref_options / srlm_pref_loss_params). */
typedef struct srlm_pref_math {
  int kind;               /* srlm_pref_loss */
  double beta;            /* DPO/SimPO inverse temperature; IPO: tau */
  double simpo_gamma;     /* SimPO target margin */
  double nll_weight;      /* alpha of the NLL term; 0 = none */
  double inv_norm;        /* 1 / norm: the loss is (1/norm) sum_i l_i */
} srlm_pref_math;

/* One pair's inputs. Lengths are read only where the kind or the NLL term needs them
 * (IPO, SimPO, SFT, nll_weight > 0: both >= 1 there); references only with has_ref.
 * Per pair (every caller sets both; a pair without its own has weight 1 and the loss's
 * train.label_smoothing, which keeps the unweighted results bit for bit: w l = l for w = 1):
 * - weight w >= 0 multiplies the pair's whole term, NLL included: l_i = w (L_kind + alpha
 *   NLL) (ScPO's w (DPO + alpha NLL)); the normalizer stays the pair count;
 * - label_smoothing eps in [0, 1], DPO only: the soft label of cDPO,
 *   L = (1-eps)(-log sigma(beta h)) + eps(-log sigma(-beta h)) (CREAM: eps = 1 - C; eps
 *   above 0.5 prefers the rejected answer). */
typedef struct srlm_pref_pair_in {
  double logp_chosen, logp_rejected; /* logpi(y_w), logpi(y_l): summed response log-probs */
  double ref_chosen, ref_rejected;   /* logpi_ref(y_w), logpi_ref(y_l) */
  double len_chosen, len_rejected;   /* |y_w|, |y_l| in tokens */
  double weight;                     /* w */
  double label_smoothing;            /* eps (DPO) */
  int has_ref;
} srlm_pref_pair_in;

/* One pair's results (loss and coefficients with the weight). Rewards: beta (logpi - logpi_ref) with the reference, beta
 * logpi/|y| for SimPO without one, else 0. */
typedef struct srlm_pref_term {
  double loss;                         /* l_i / norm */
  double coef_chosen, coef_rejected;   /* dL/dlogpi(y_w), dL/dlogpi(y_l) (with 1/norm) */
  double reward_chosen, reward_rejected;
  double nll;                          /* -logpi(y_w)/|y_w| (meaningless without the length) */
} srlm_pref_term;

/* The loss term of one pair and its coefficients (ALGORITHMS.md section 1). */
SRLM_HD srlm_pref_term srlm_pref_pair_term(srlm_pref_math m, srlm_pref_pair_in x) {
  const double beta = m.beta, pc = x.logp_chosen, pr = x.logp_rejected;
  const double lc = x.len_chosen, lr = x.len_rejected;
  double l = 0, dc = 0, dr = 0; /* loss of the pair and its derivatives */
  double rw_c = 0, rw_r = 0;    /* logged rewards */
  if (x.has_ref) {
    rw_c = beta * (pc - x.ref_chosen);
    rw_r = beta * (pr - x.ref_rejected);
  }
  switch (m.kind) {
  case SRLM_PREF_DPO: {
    const double h = (pc - x.ref_chosen) - (pr - x.ref_rejected);
    const double eps = x.label_smoothing;
    l = -(1 - eps) * srlm_log_sigmoid(beta * h) - eps * srlm_log_sigmoid(-beta * h);
    const double dh = beta * (srlm_sigmoid(beta * h) - (1 - eps));
    dc = dh;
    dr = -dh;
    break;
  }
  case SRLM_PREF_IPO: {
    const double d = (pc - x.ref_chosen) / lc - (pr - x.ref_rejected) / lr - 1.0 / (2.0 * beta);
    l = d * d;
    dc = 2 * d / lc;
    dr = -2 * d / lr;
    break;
  }
  case SRLM_PREF_SIMPO: {
    const double z = beta * pc / lc - beta * pr / lr - m.simpo_gamma;
    l = -srlm_log_sigmoid(z);
    const double s = srlm_sigmoid(-z); /* -d log sigma(z)/dz */
    dc = -s * beta / lc;
    dr = s * beta / lr;
    if (!x.has_ref) {
      rw_c = beta * pc / lc;
      rw_r = beta * pr / lr;
    }
    break;
  }
  case SRLM_PREF_SFT:
    l = -pc / lc;
    dc = -1.0 / lc;
    break;
  default: break; /* rejected by srlm_pref_options_invalid */
  }
  if (m.nll_weight > 0) {
    l += m.nll_weight * (-pc / lc);
    dc += -m.nll_weight / lc;
  }
  srlm_pref_term t;
  t.loss = x.weight * l * m.inv_norm;
  t.coef_chosen = x.weight * dc * m.inv_norm;
  t.coef_rejected = x.weight * dr * m.inv_norm;
  t.reward_chosen = rw_c;
  t.reward_rejected = rw_r;
  t.nll = -pc / lc;
  return t;
}

/* Which lengths a preference loss reads (each must then be >= 1). */
SRLM_HD int srlm_pref_needs_len_chosen(int kind, double nll_weight) {
  return kind == SRLM_PREF_IPO || kind == SRLM_PREF_SIMPO || kind == SRLM_PREF_SFT || nll_weight > 0;
}
SRLM_HD int srlm_pref_needs_len_rejected(int kind) {
  return kind == SRLM_PREF_IPO || kind == SRLM_PREF_SIMPO;
}
/* Whether it needs the reference log-probs. */
SRLM_HD int srlm_pref_needs_ref(int kind) { return kind == SRLM_PREF_DPO || kind == SRLM_PREF_IPO; }

/* ---- GRPO / DAPO / Dr.GRPO ------------------------------------------------------- */

typedef enum srlm_grpo_agg {
  /* (1/n) sum_i (1/|o_i|) sum_t J_it: per-sequence mean, then mean (GRPO) */
  SRLM_GRPO_AGG_SEQ_MEAN = 0,
  /* (1/N) sum_i sum_t J_it: token mean over the batch (DAPO) */
  SRLM_GRPO_AGG_TOKEN_MEAN,
  /* (1/(n L_max)) sum_i sum_t J_it: sum over a fixed length budget (Dr.GRPO's G * L_max,
   * over a batch of groups) */
  SRLM_GRPO_AGG_FIXED_LEN
} srlm_grpo_agg;

/* Where the importance ratio lives. */
typedef enum srlm_grpo_ratio {
  /* rho_t = pi(o_t) / pi_old(o_t) per token (GRPO, DAPO) */
  SRLM_GRPO_RATIO_TOKEN = 0,
  /* GSPO (Zheng et al. 2025): one ratio per sequence, the geometric mean of its tokens'
   * ratios, s_i = exp((1/|o_i|) sum_t (logp_t - logp_old_t)), clipped as a whole and
   * used for every token of the sequence; the truncated importance weight (is_cap) is
   * then the sequence's geometric mean too, min(exp((1/|o_i|) sum_t (logp_old_t -
   * logp_behavior_t)), C). ds_i/dlogp_t = s_i / |o_i|: every token of a sequence gets the
   * same surrogate gradient -w w_is A_i s_i (0 on the clipped branch); the KL stays per
   * token. */
  SRLM_GRPO_RATIO_SEQUENCE
} srlm_grpo_ratio;

/* The scalars of the GRPO objective. */
typedef struct srlm_grpo_math {
  double clip_lo, clip_hi; /* 1 - clip_eps, 1 + clip_eps_high */
  double beta;             /* weight of the k3 KL */
  double is_cap;           /* truncation C of the importance weight; 0 = off */
  int seq_ratio;           /* srlm_grpo_ratio SEQUENCE: rho and w_is from the token inputs' seq_log_* */
} srlm_grpo_math;

/* clip_eps_high: DAPO's asymmetric upper clip ("clip-higher", Yu et al. 2025: 0.28 with
 * clip_eps 0.2); 0 means clip_eps (the symmetric band). */
SRLM_HD srlm_grpo_math srlm_grpo_math_make(double clip_eps, double clip_eps_high, double beta, double is_cap,
                                           int ratio) {
  srlm_grpo_math m;
  m.clip_lo = 1.0 - clip_eps;
  m.clip_hi = 1.0 + (clip_eps_high > 0 ? clip_eps_high : clip_eps);
  m.beta = beta;
  m.is_cap = is_cap;
  m.seq_ratio = ratio == SRLM_GRPO_RATIO_SEQUENCE;
  return m;
}

/* d(aggregate)/dJ_t for every token of a sequence of len tokens: nseq and ntok are the
 * normalizers n and N of the formulas (the step's counts), l_max Dr.GRPO's L_max. */
SRLM_HD double srlm_grpo_token_weight(int agg, double nseq, double ntok, int64_t len, int64_t l_max) {
  switch (agg) {
  case SRLM_GRPO_AGG_SEQ_MEAN: return 1.0 / (nseq * (double)len);
  case SRLM_GRPO_AGG_TOKEN_MEAN: return 1.0 / ntok;
  default: return 1.0 / (nseq * (double)l_max);
  }
}

/* One token's inputs (log-probs widened from fp32). */
typedef struct srlm_grpo_token_in {
  double logp;          /* log pi(o_t) under the current weights */
  double logp_old;      /* log pi_old(o_t); = logp on-policy (rho = 1) */
  double logp_ref;      /* log pi_ref(o_t), read with has_ref */
  double logp_behavior; /* the generator's log-prob, read when is_cap > 0 */
  int has_ref;
  /* SRLM_GRPO_RATIO_SEQUENCE only: the sequence's means over its tokens (sums in token
   * order divided by the length) of logp - logp_old and (is_cap > 0) logp_old -
   * logp_behavior; they replace the token's own log-ratios */
  double seq_log_ratio, seq_log_is;
} srlm_grpo_token_in;

/* One token's results. */
typedef struct srlm_grpo_term {
  double wj;     /* w J_t, the token's share of the aggregate: L = -sum_t wj */
  double g;      /* dL/dlogp_t = -w dJ_t/dlogp_t */
  double rho;    /* exp(logp - logp_old) */
  double kl;     /* the k3 estimate D_t; 0 without the reference */
  int clipped;   /* the clipped branch is active (no gradient through rho) */
  int truncated; /* the importance weight hit is_cap */
} srlm_grpo_term;

/* J_t = w_is min(rho A, clip(rho, 1-eps, 1+eps_high) A) - beta D_t, D_t = e^Delta - Delta
 * - 1, Delta = logp_ref - logp, w_is = min(exp(logp_old - logp_behavior), C) (a constant;
 * the KL term is not weighted), for advantage a and aggregation weight w
 * (srlm_grpo_token_weight). With m.seq_ratio, rho and w_is are the sequence's
 * (srlm_grpo_ratio SEQUENCE). The KL is computed whenever the reference is there, so it
 * is logged even with beta 0. */
SRLM_HD srlm_grpo_term srlm_grpo_token_term(srlm_grpo_math m, double a, double w, srlm_grpo_token_in x) {
  srlm_grpo_term r;
  const double lp = x.logp, old = x.logp_old;
  const double rho = m.seq_ratio ? exp(x.seq_log_ratio) : exp(lp - old);
  double wis = 1.0;
  r.truncated = 0;
  if (m.is_cap > 0) {
    wis = m.seq_ratio ? exp(x.seq_log_is) : exp(old - x.logp_behavior);
    if (wis > m.is_cap) {
      wis = m.is_cap;
      r.truncated = 1;
    }
  }
  const double rc = rho < m.clip_lo ? m.clip_lo : (rho > m.clip_hi ? m.clip_hi : rho);
  /* min(rho A, clip(rho) A): the clipped branch wins (and blocks the gradient) only
   * when it is strictly smaller, i.e. A > 0 above the band or A < 0 below it. */
  const int clipped = rc * a < rho * a;
  double surr = clipped ? rc * a : rho * a;
  double dsurr = clipped ? 0.0 : rho * a; /* d(rho A)/dlogp = rho A */
  double jt = wis * surr, djt = wis * dsurr;
  r.kl = 0;
  if (x.has_ref) {
    const double delta = x.logp_ref - lp;
    const double ed = exp(delta);
    const double d = ed - delta - 1.0;
    jt -= m.beta * d;
    djt -= m.beta * (1.0 - ed); /* dD/dlogp = -(e^Delta - 1) */
    r.kl = d;
  }
  r.wj = w * jt;
  r.g = -w * djt;
  r.rho = rho;
  r.clipped = clipped;
  return r;
}

/* ---- checks shared by the host losses and the ops' parameter checks --------------- */

/* A response of len tokens starting at start lies inside a batch of T tokens, len >= 1. */
SRLM_HD int srlm_loss_range_ok(int64_t start, int64_t len, int64_t T) {
  return len >= 1 && start >= 0 && start <= T - len;
}

/* The option checks of the host losses and of the ops' parameter checks: NULL when the
 * options are valid, else what is wrong (naming the option and its value) written into
 * msg (n bytes). Host only (no SRLM_HD): they format a message. */
static inline const char *srlm_pref_options_invalid(int kind, double beta, double label_smoothing,
                                                    double nll_weight, char *msg, size_t n) {
  if (!(nll_weight >= 0)) {
    snprintf(msg, n, "nll_weight %g must be >= 0", nll_weight);
  } else if (kind == SRLM_PREF_DPO && !(label_smoothing >= 0 && label_smoothing <= 0.5)) {
    snprintf(msg, n, "DPO label_smoothing %g outside [0, 0.5]", label_smoothing);
  } else if ((kind == SRLM_PREF_DPO || kind == SRLM_PREF_IPO || kind == SRLM_PREF_SIMPO) && !(beta > 0)) {
    snprintf(msg, n, "%s %g must be > 0",
             kind == SRLM_PREF_DPO ? "DPO beta" : (kind == SRLM_PREF_IPO ? "IPO tau (beta)" : "SimPO beta"), beta);
  } else if (kind < SRLM_PREF_DPO || kind > SRLM_PREF_SFT) {
    snprintf(msg, n, "unknown preference loss %d", kind);
  } else {
    return NULL;
  }
  return msg;
}

static inline const char *srlm_grpo_options_invalid(double clip_eps, double clip_eps_high, int ratio, double beta,
                                                    double is_cap, int agg, char *msg, size_t n) {
  if (!(clip_eps >= 0 && clip_eps < 1)) {
    snprintf(msg, n, "GRPO clip_eps %g outside [0, 1)", clip_eps);
  } else if (!(clip_eps_high >= 0 && clip_eps_high <= 10)) {
    snprintf(msg, n, "GRPO clip_eps_high %g outside [0, 10]", clip_eps_high);
  } else if (ratio != SRLM_GRPO_RATIO_TOKEN && ratio != SRLM_GRPO_RATIO_SEQUENCE) {
    snprintf(msg, n, "unknown GRPO ratio level %d", ratio);
  } else if (!(beta >= 0)) {
    snprintf(msg, n, "GRPO beta %g must be >= 0", beta);
  } else if (!(is_cap >= 0)) {
    snprintf(msg, n, "GRPO is_cap %g must be >= 0", is_cap);
  } else if (agg != SRLM_GRPO_AGG_SEQ_MEAN && agg != SRLM_GRPO_AGG_TOKEN_MEAN && agg != SRLM_GRPO_AGG_FIXED_LEN) {
    snprintf(msg, n, "unknown GRPO aggregation %d", agg);
  } else {
    return NULL;
  }
  return msg;
}

#ifdef __cplusplus
}
#endif
#endif
