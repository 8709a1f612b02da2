/* Losses of the learner: every loss and coefficient against central finite
 * differences in double, hand-computed values, label smoothing symmetry, GRPO
 * clipping, KL and importance weights, aggregation modes, and micro-batch splits. */
#include <math.h>
#include <stdint.h>

#include "srlm/losses.h"
#include "test.h"

/* deterministic pseudo-random numbers in [lo, hi) */
static double urand(uint32_t *state, double lo, double hi) {
  *state = *state * 1664525u + 1013904223u;
  return lo + (hi - lo) * ((*state >> 8) / 16777216.0);
}

static double pref_loss(const srlm_pref_options *o, const srlm_pref_batch *b) {
  srlm_pref_metrics m;
  srlm_status st = srlm_loss_pref(o, b, NULL, NULL, &m);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  return m.loss;
}

/* dL/dlogp_chosen[i] and dL/dlogp_rejected[i] by central differences against the coefficients;
 * soft: with per-pair weights in [0, 3) and soft labels in [0, 1] */
static void check_pref_fd_soft(const char *name, srlm_pref_options o, int n, uint32_t seed, int soft) {
  double pc[8], pr[8], rc[8], rr[8], cc[8], cr[8], w[8], eps[8];
  int64_t lc[8], lr[8];
  uint32_t s = seed;
  for (int i = 0; i < n; i++) {
    pc[i] = urand(&s, -40, -5);
    pr[i] = urand(&s, -40, -5);
    rc[i] = pc[i] + urand(&s, -3, 3);
    rr[i] = pr[i] + urand(&s, -3, 3);
    lc[i] = 1 + (int64_t)urand(&s, 0, 20);
    lr[i] = 1 + (int64_t)urand(&s, 0, 20);
    w[i] = urand(&s, 0, 3);
    eps[i] = i == 0 ? 1.0 : (i == 1 ? 0.0 : urand(&s, 0, 1)); /* the ends of the range too */
  }
  srlm_pref_batch b = {n, pc, pr, rc, rr, lc, lr, soft ? w : NULL, soft && o.kind == SRLM_PREF_DPO ? eps : NULL};
  srlm_status st = srlm_loss_pref(&o, &b, cc, cr, NULL);
  EXPECT(st == SRLM_OK, "%s: %s", name, srlm_error_message());
  const double h = 1e-5;
  double worst = 0;
  for (int i = 0; i < n; i++) {
    for (int side = 0; side < 2; side++) {
      double *x = side ? pr : pc;
      double x0 = x[i];
      x[i] = x0 + h;
      double lp = pref_loss(&o, &b);
      x[i] = x0 - h;
      double lm = pref_loss(&o, &b);
      x[i] = x0;
      double fd = (lp - lm) / (2 * h), an = side ? cr[i] : cc[i];
      double err = fabs(fd - an) / (fabs(fd) + 1e-3);
      if (err > worst) worst = err;
      EXPECT(err < 1e-6, "%s pair %d %s: analytic %.12g, finite difference %.12g", name, i,
             side ? "rejected" : "chosen", an, fd);
    }
  }
  fprintf(stderr, "%-28s worst relative FD error %.3g\n", name, worst);
}

static void check_pref_fd(const char *name, srlm_pref_options o, int n, uint32_t seed) {
  check_pref_fd_soft(name, o, n, seed, 0);
}

static void test_pref_finite_differences(void) {
  srlm_pref_options o = {0};
  o.kind = SRLM_PREF_DPO;
  o.beta = 0.1;
  check_pref_fd("dpo beta 0.1", o, 8, 1);
  o.beta = 1.0;
  check_pref_fd("dpo beta 1", o, 8, 2);
  o.label_smoothing = 0.2;
  check_pref_fd("cdpo eps 0.2", o, 8, 3);
  o.label_smoothing = 0;
  o.nll_weight = 1.0;
  check_pref_fd("dpo + nll (RECIPES)", o, 8, 4);
  o.nll_weight = 0;
  o.kind = SRLM_PREF_IPO;
  o.beta = 0.5;
  check_pref_fd("ipo tau 0.5", o, 8, 5);
  o.kind = SRLM_PREF_SIMPO;
  o.beta = 2.0;
  o.simpo_gamma = 0.5;
  check_pref_fd("simpo", o, 8, 6);
  o.kind = SRLM_PREF_SFT;
  check_pref_fd("sft", o, 8, 7);
  o.kind = SRLM_PREF_IPO;
  o.norm = 100; /* a micro-batch of a larger step */
  o.nll_weight = 0.3;
  check_pref_fd("ipo + nll, norm 100", o, 5, 8);
  /* per-pair weights and soft labels (ScPO, CREAM): eps over [0, 1], weights over [0, 3) */
  o = (srlm_pref_options){.kind = SRLM_PREF_DPO, .beta = 0.5};
  check_pref_fd_soft("dpo weights + soft labels", o, 8, 21, 1);
  o.nll_weight = 1.0;
  check_pref_fd_soft("dpo soft + weighted nll", o, 8, 22, 1);
  o = (srlm_pref_options){.kind = SRLM_PREF_SIMPO, .beta = 2.0, .simpo_gamma = 0.5, .nll_weight = 0.3};
  check_pref_fd_soft("simpo weights", o, 6, 23, 1);
}

static void test_dpo_hand_values(void) {
  /* h = 0: L = log 2, coefficients -+beta/2 (sigma(0) - 1 = -1/2) */
  double pc = -10, pr = -12, rc = -10, rr = -12, cc, cr;
  srlm_pref_options o = {.kind = SRLM_PREF_DPO, .beta = 0.1};
  srlm_pref_batch b = {1, &pc, &pr, &rc, &rr, NULL, NULL, NULL, NULL};
  srlm_pref_metrics m;
  EXPECT(srlm_loss_pref(&o, &b, &cc, &cr, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(m.loss, log(2.0), 1e-15);
  EXPECT_NEAR(cc, -0.05, 1e-15);
  EXPECT_NEAR(cr, 0.05, 1e-15);
  EXPECT_NEAR(m.accuracy_sum, 0, 0);
  /* h = 2 (chosen up by 1.5, rejected down by 0.5), beta 0.5: L = log(1 + e^-1) */
  pc = -8.5;
  pr = -12.5;
  o.beta = 0.5;
  EXPECT(srlm_loss_pref(&o, &b, &cc, &cr, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(m.loss, log1p(exp(-1.0)), 1e-14);
  EXPECT_NEAR(cc, 0.5 * (1.0 / (1.0 + exp(-1.0)) - 1.0), 1e-14);
  EXPECT_NEAR(cr, -cc, 0);
  EXPECT_NEAR(m.reward_chosen_sum, 0.75, 1e-14);
  EXPECT_NEAR(m.reward_rejected_sum, -0.25, 1e-14);
  EXPECT_NEAR(m.margin_sum, 1.0, 1e-14);
  EXPECT_NEAR(m.accuracy_sum, 1, 0);
  EXPECT_NEAR(m.logp_chosen_sum, -8.5, 0);
  /* a huge margin stays finite (stable log sigmoid) */
  pc = 0;
  pr = -1e6;
  EXPECT(srlm_loss_pref(&o, &b, &cc, &cr, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(isfinite(m.loss) && m.loss >= 0 && m.loss < 1e-100, "loss %g at h = 1e6", m.loss);
  pr = 0;
  pc = -1e6;
  EXPECT(srlm_loss_pref(&o, &b, &cc, &cr, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(m.loss, 0.5 * (1e6 + 2), 1e-9); /* h = -1e6 - 2: L = -beta h */
  EXPECT_NEAR(cc, -0.5, 1e-12);
}

static void test_label_smoothing(void) {
  /* eps = 0.5: L(h) = L(-h) and the gradient vanishes at h = 0 */
  double pc = -5, pr = -7, rc = -6, rr = -6.5, cc1, cr1, cc2, cr2;
  srlm_pref_options o = {.kind = SRLM_PREF_DPO, .beta = 0.7, .label_smoothing = 0.5};
  srlm_pref_batch b = {1, &pc, &pr, &rc, &rr, NULL, NULL, NULL, NULL};
  srlm_pref_metrics m1, m2;
  EXPECT(srlm_loss_pref(&o, &b, &cc1, &cr1, &m1) == SRLM_OK, "%s", srlm_error_message());
  srlm_pref_batch sw = {1, &pr, &pc, &rr, &rc, NULL, NULL, NULL, NULL}; /* chosen and rejected swapped: -h */
  EXPECT(srlm_loss_pref(&o, &sw, &cc2, &cr2, &m2) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(m1.loss, m2.loss, 1e-15);
  EXPECT_NEAR(cc1, -cc2, 1e-15);
  double z = 0;
  srlm_pref_batch zero = {1, &z, &z, &z, &z, NULL, NULL, NULL, NULL};
  EXPECT(srlm_loss_pref(&o, &zero, &cc1, &cr1, &m1) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(cc1, 0, 1e-16);
  EXPECT_NEAR(m1.loss, log(2.0), 1e-15);
  /* eps = 0.1 at h: -(0.9) log sigma(beta h) - 0.1 log sigma(-beta h), coefficient beta (sigma - 0.9) */
  o.label_smoothing = 0.1;
  EXPECT(srlm_loss_pref(&o, &b, &cc1, &cr1, &m1) == SRLM_OK, "%s", srlm_error_message());
  double h = (pc - rc) - (pr - rr), s = 1.0 / (1.0 + exp(-0.7 * h));
  EXPECT_NEAR(m1.loss, -0.9 * log(s) - 0.1 * log(1 - s), 1e-14);
  EXPECT_NEAR(cc1, 0.7 * (s - 0.9), 1e-15);
}

/* Per-pair weights and soft labels (ScPO's w, CREAM's eps = 1 - C) against the formulas by
 * hand; w = 1 with the loss's own label_smoothing gives the unweighted bits exactly. */
static void test_pair_weights_and_labels(void) {
  double pc[3] = {-5, -8, -3}, pr[3] = {-7, -6, -9}, rc[3] = {-6, -7, -4}, rr[3] = {-6.5, -6, -8};
  int64_t lc[3] = {3, 4, 2}, lr[3] = {5, 2, 6};
  double w[3] = {1, 0.25, 0}, eps[3] = {0.1, 0.75, 0.3}, cc[3], cr[3], cc0[3], cr0[3];
  srlm_pref_options o = {.kind = SRLM_PREF_DPO, .beta = 0.7, .label_smoothing = 0.1, .nll_weight = 0.5};
  srlm_pref_batch plain = {3, pc, pr, rc, rr, lc, lr, NULL, NULL};
  srlm_pref_metrics m0, m;
  EXPECT(srlm_loss_pref(&o, &plain, cc0, cr0, &m0) == SRLM_OK, "%s", srlm_error_message());
  double ones[3] = {1, 1, 1}, same[3] = {0.1, 0.1, 0.1};
  srlm_pref_batch unit = plain;
  unit.weight = ones;
  unit.label_smoothing = same;
  EXPECT(srlm_loss_pref(&o, &unit, cc, cr, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(m.loss == m0.loss && cc[0] == cc0[0] && cr[2] == cr0[2] && cc[1] == cc0[1],
         "w = 1, eps = label_smoothing changed the bits: loss %.17g vs %.17g", m.loss, m0.loss);
  srlm_pref_batch b = plain;
  b.weight = w;
  b.label_smoothing = eps;
  EXPECT(srlm_loss_pref(&o, &b, cc, cr, &m) == SRLM_OK, "%s", srlm_error_message());
  double want = 0;
  for (int i = 0; i < 3; i++) {
    double h = (pc[i] - rc[i]) - (pr[i] - rr[i]), s = 1.0 / (1.0 + exp(-0.7 * h));
    double l = -(1 - eps[i]) * log(s) - eps[i] * log(1 - s) + 0.5 * (-pc[i] / (double)lc[i]);
    want += w[i] * l / 3.0;
    EXPECT_NEAR(cc[i], w[i] * (0.7 * (s - (1 - eps[i])) - 0.5 / (double)lc[i]) / 3.0, 1e-15);
    EXPECT_NEAR(cr[i], -w[i] * 0.7 * (s - (1 - eps[i])) / 3.0, 1e-15);
  }
  EXPECT_NEAR(m.loss, want, 1e-14);
  EXPECT(cc[2] == 0 && cr[2] == 0, "weight 0: coefficients %g %g", cc[2], cr[2]);
  /* eps = 1 flips the label: the loss of (y_w, y_l) with eps 1 is that of (y_l, y_w) with eps 0 */
  double one = 1, zero = 0, c1, r1, c2, r2;
  srlm_pref_batch f1 = {1, &pc[0], &pr[0], &rc[0], &rr[0], NULL, NULL, NULL, &one};
  srlm_pref_batch f2 = {1, &pr[0], &pc[0], &rr[0], &rc[0], NULL, NULL, NULL, &zero};
  srlm_pref_options od = {.kind = SRLM_PREF_DPO, .beta = 0.7};
  srlm_pref_metrics a1, a2;
  EXPECT(srlm_loss_pref(&od, &f1, &c1, &r1, &a1) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_loss_pref(&od, &f2, &c2, &r2, &a2) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(a1.loss, a2.loss, 1e-15);
  EXPECT_NEAR(c1, r2, 1e-15);
  /* errors: negative or non-finite weight, a label outside [0, 1], labels with IPO */
  w[1] = -0.5;
  EXPECT_EQ_INT(srlm_loss_pref(&o, &b, cc, cr, &m), SRLM_ERR_RANGE);
  w[1] = NAN;
  EXPECT_EQ_INT(srlm_loss_pref(&o, &b, cc, cr, &m), SRLM_ERR_RANGE);
  w[1] = 0.25;
  eps[2] = 1.5;
  EXPECT_EQ_INT(srlm_loss_pref(&o, &b, cc, cr, &m), SRLM_ERR_RANGE);
  eps[2] = 0.3;
  srlm_pref_options oi = {.kind = SRLM_PREF_IPO, .beta = 0.5};
  EXPECT_EQ_INT(srlm_loss_pref(&oi, &b, cc, cr, &m), SRLM_ERR_CONFIG);
}

static void test_ipo_simpo_sft_hand_values(void) {
  double pc = -4, pr = -9, rc = -6, rr = -9, cc, cr;
  int64_t lc = 2, lr = 3;
  srlm_pref_metrics m;
  /* IPO: hbar_w = 1, hbar_l = 0, tau 0.5 -> target 1: loss 0 */
  srlm_pref_options o = {.kind = SRLM_PREF_IPO, .beta = 0.5};
  srlm_pref_batch b = {1, &pc, &pr, &rc, &rr, &lc, &lr, NULL, NULL};
  EXPECT(srlm_loss_pref(&o, &b, &cc, &cr, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(m.loss, 0, 1e-15);
  EXPECT_NEAR(cc, 0, 1e-15);
  /* tau 1 -> d = 0.5: loss 0.25, dL/dpc = 2 d / 2 = 0.5, dL/dpr = -2 d / 3 */
  o.beta = 1;
  EXPECT(srlm_loss_pref(&o, &b, &cc, &cr, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(m.loss, 0.25, 1e-15);
  EXPECT_NEAR(cc, 0.5, 1e-15);
  EXPECT_NEAR(cr, -1.0 / 3.0, 1e-15);
  /* SimPO: z = 2 (-4/2) - 2 (-9/3) - 1 = 1 */
  srlm_pref_options so = {.kind = SRLM_PREF_SIMPO, .beta = 2, .simpo_gamma = 1};
  srlm_pref_batch sb = {1, &pc, &pr, NULL, NULL, &lc, &lr, NULL, NULL};
  EXPECT(srlm_loss_pref(&so, &sb, &cc, &cr, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(m.loss, log1p(exp(-1.0)), 1e-15);
  EXPECT_NEAR(cc, -(1.0 / (1.0 + exp(1.0))) * 2 / 2, 1e-15);
  EXPECT_NEAR(m.reward_chosen_sum, -4, 1e-15);
  EXPECT_NEAR(m.reward_rejected_sum, -6, 1e-15);
  /* SFT: -logpi/|y|; + NLL weight 0.5 adds half of that again; the rejected side is ignored */
  srlm_pref_options fo = {.kind = SRLM_PREF_SFT, .nll_weight = 0.5};
  srlm_pref_batch fb = {1, &pc, NULL, NULL, NULL, &lc, NULL, NULL, NULL};
  EXPECT(srlm_loss_pref(&fo, &fb, &cc, NULL, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(m.loss, 3.0, 1e-15);
  EXPECT_NEAR(cc, -0.75, 1e-15);
  EXPECT_NEAR(m.nll_sum, 2.0, 1e-15);
}

static void test_pref_split_and_errors(void) {
  /* two micro-batches with the step's normalizer add up to the whole batch */
  double pc[5] = {-3, -4, -5, -6, -7}, pr[5] = {-4, -3, -8, -6, -2}, rc[5] = {-3.5, -4, -4, -6.5, -7},
         rr[5] = {-4, -3.2, -8, -6, -2.5};
  int64_t lc[5] = {3, 4, 5, 6, 7}, lr[5] = {4, 3, 8, 6, 2};
  double cc[5], cr[5], cc2[5], cr2[5];
  srlm_pref_options o = {.kind = SRLM_PREF_DPO, .beta = 0.3, .label_smoothing = 0.1, .nll_weight = 1};
  srlm_pref_batch all = {5, pc, pr, rc, rr, lc, lr, NULL, NULL};
  srlm_pref_metrics mall, m1, m2;
  EXPECT(srlm_loss_pref(&o, &all, cc, cr, &mall) == SRLM_OK, "%s", srlm_error_message());
  o.norm = 5;
  srlm_pref_batch b1 = {2, pc, pr, rc, rr, lc, lr, NULL, NULL},
                  b2 = {3, pc + 2, pr + 2, rc + 2, rr + 2, lc + 2, lr + 2, NULL, NULL};
  EXPECT(srlm_loss_pref(&o, &b1, cc2, cr2, &m1) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_loss_pref(&o, &b2, cc2 + 2, cr2 + 2, &m2) == SRLM_OK, "%s", srlm_error_message());
  srlm_pref_metrics_merge(&m1, &m2);
  EXPECT_NEAR(m1.loss, mall.loss, 1e-15);
  EXPECT_EQ_INT(m1.pairs, 5);
  EXPECT_NEAR(m1.margin_sum, mall.margin_sum, 1e-15);
  for (int i = 0; i < 5; i++) {
    EXPECT_NEAR(cc2[i], cc[i], 1e-16);
    EXPECT_NEAR(cr2[i], cr[i], 1e-16);
  }
  /* errors name the pair; bad options name the option */
  lr[3] = 0;
  o.kind = SRLM_PREF_IPO;
  EXPECT(srlm_loss_pref(&o, &all, cc, cr, NULL) == SRLM_ERR_RANGE, "zero length accepted");
  EXPECT_CONTAINS(srlm_error_message(), "pair 3");
  o.kind = SRLM_PREF_DPO;
  o.label_smoothing = 0.7;
  EXPECT(srlm_loss_pref(&o, &all, cc, cr, NULL) == SRLM_ERR_CONFIG, "eps 0.7 accepted");
  EXPECT_CONTAINS(srlm_error_message(), "label_smoothing");
  o.label_smoothing = 0;
  all.ref_chosen = NULL;
  EXPECT(srlm_loss_pref(&o, &all, cc, cr, NULL) != SRLM_OK, "DPO without reference accepted");
}

/* ---- GRPO ---------------------------------------------------------------- */

static double grpo_loss(const srlm_grpo_options *o, const srlm_grpo_batch *b) {
  srlm_grpo_metrics m;
  EXPECT(srlm_loss_grpo(o, b, NULL, &m) == SRLM_OK, "%s", srlm_error_message());
  return m.loss;
}

enum { GN = 5, GT = 40 };

static int near_edge(double r, const srlm_grpo_options *o) {
  const double hi = o->clip_eps_high > 0 ? o->clip_eps_high : o->clip_eps;
  return fabs(r - (1 - o->clip_eps)) < 0.02 || fabs(r - (1 + hi)) < 0.02;
}

/* Inputs on a grid of 2^-10 so that +-2^-12 perturbations are exact in float; ratios
 * (per token, and per sequence for ratio SEQUENCE) kept at least 0.02 away from the clip
 * edges so the differences never cross a kink. */
static void make_grpo(uint32_t seed, const srlm_grpo_options *o, float *lp, float *old, float *ref, float *beh,
                      int64_t *off, double *adv) {
  uint32_t s = seed;
  off[0] = 0;
  for (int i = 0; i < GN; i++) off[i + 1] = off[i] + 3 + i * 2; /* 3, 5, 7, 9, 11 = 35 tokens */
  for (int i = 0; i < GN; i++) adv[i] = urand(&s, -2, 2);
  for (int t = 0; t < off[GN]; t++) {
    lp[t] = (float)(floor(urand(&s, -6, -0.1) * 1024) / 1024);
    double r;
    do r = urand(&s, 0.5, 1.5);
    while (near_edge(r, o));
    old[t] = (float)(lp[t] - log(r));
    ref[t] = (float)(lp[t] + urand(&s, -1, 1));
    beh[t] = (float)(old[t] + urand(&s, -1.5, 1.5));
  }
  for (int i = 0; i < GN && o->ratio == SRLM_GRPO_RATIO_SEQUENCE; i++)
    for (int moved = 0; moved < 100; moved++) {
      double m = 0;
      for (int64_t t = off[i]; t < off[i + 1]; t++) m += (double)lp[t] - old[t];
      if (!near_edge(exp(m / (double)(off[i + 1] - off[i])), o)) break;
      for (int64_t t = off[i]; t < off[i + 1]; t++) old[t] -= 0.0625f; /* the sequence's ratio x e^(1/16) */
    }
}

static void check_grpo_fd(const char *name, srlm_grpo_options o, uint32_t seed) {
  float lp[GT], old[GT], ref[GT], beh[GT], g[GT];
  int64_t off[GN + 1];
  double adv[GN];
  make_grpo(seed, &o, lp, old, ref, beh, off, adv);
  srlm_grpo_batch b = {GN, off, lp, old, ref, beh, adv};
  srlm_grpo_metrics m;
  EXPECT(srlm_loss_grpo(&o, &b, g, &m) == SRLM_OK, "%s: %s", name, srlm_error_message());
  double worst = 0;
  const float h = 1.0f / 4096;
  for (int t = 0; t < off[GN]; t++) {
    float x0 = lp[t];
    lp[t] = x0 + h;
    double lplus = grpo_loss(&o, &b);
    lp[t] = x0 - h;
    double lminus = grpo_loss(&o, &b);
    lp[t] = x0;
    double fd = (lplus - lminus) / (2.0 * h);
    double err = fabs(fd - g[t]) / (fabs(fd) + 1e-3);
    if (err > worst) worst = err;
    EXPECT(err < 1e-5, "%s token %d: analytic %.9g, finite difference %.9g", name, t, (double)g[t], fd);
  }
  fprintf(stderr, "%-28s worst relative FD error %.3g (clipped %lld of %lld tokens)\n", name, worst,
          (long long)m.clipped, (long long)m.tokens);
  EXPECT(m.clipped > 0 && m.clipped < m.tokens, "clipped %lld", (long long)m.clipped);
}

static void test_grpo_finite_differences(void) {
  srlm_grpo_options o = {.clip_eps = 0.2};
  check_grpo_fd("grpo seq mean", o, 11);
  o.beta = 0.04;
  check_grpo_fd("grpo seq mean + kl", o, 12);
  o.agg = SRLM_GRPO_AGG_TOKEN_MEAN;
  check_grpo_fd("dapo token mean + kl", o, 13);
  o.agg = SRLM_GRPO_AGG_FIXED_LEN;
  o.l_max = 16;
  check_grpo_fd("dr.grpo fixed len + kl", o, 14);
  o.is_cap = 2.0;
  check_grpo_fd("dr.grpo + is cap 2", o, 15);
  o.agg = SRLM_GRPO_AGG_SEQ_MEAN;
  o.clip_eps = 0.28;
  o.norm_seqs = 12;
  check_grpo_fd("grpo eps .28 norm 12", o, 16);
  /* DAPO clip-higher: the band [0.8, 1.28] */
  srlm_grpo_options d = {.clip_eps = 0.2, .clip_eps_high = 0.28, .beta = 0.04, .agg = SRLM_GRPO_AGG_TOKEN_MEAN};
  check_grpo_fd("dapo clip-higher .28 + kl", d, 17);
  /* GSPO: one ratio per sequence; narrow bands so that some sequences are clipped */
  srlm_grpo_options q = {.clip_eps = 0.05, .clip_eps_high = 0.08, .ratio = SRLM_GRPO_RATIO_SEQUENCE};
  check_grpo_fd("gspo seq ratio", q, 18);
  q.beta = 0.04;
  q.is_cap = 1.5;
  q.agg = SRLM_GRPO_AGG_TOKEN_MEAN;
  check_grpo_fd("gspo + kl + is cap, token mean", q, 19);
}

/* Hand-computed answers for DAPO's clip_eps_high and the GSPO sequence ratio. */
static void test_grpo_clip_high_and_seq_ratio(void) {
  /* one token, A, rho; band [0.8, 1 + hi] */
  struct {
    double a, rho, hi, loss, g;
    int clipped;
  } one[] = {
      {1, 1.25, 0.28, -1.25, -1.25, 0}, /* inside the wider band: the gradient flows */
      {1, 1.25, 0.0, -1.2, 0.0, 1},     /* hi 0 = clip_eps: clipped at 1.2 */
      {1, 1.3, 0.28, -1.28, 0.0, 1},    /* above 1.28: clipped there */
      {-1, 0.75, 0.28, 0.8, 0.0, 1},    /* the lower edge is clip_eps's whatever hi is */
      {-1, 1.5, 0.28, 1.5, 1.5, 0},     /* A < 0 above the band: unclipped */
  };
  for (size_t c = 0; c < sizeof one / sizeof one[0]; c++) {
    float lp = -1.0f, old = (float)(-1.0 - log(one[c].rho)), g = 99;
    int64_t off[2] = {0, 1};
    double a = one[c].a;
    srlm_grpo_options o = {.clip_eps = 0.2, .clip_eps_high = one[c].hi};
    srlm_grpo_batch b = {1, off, &lp, &old, NULL, NULL, &a};
    srlm_grpo_metrics m;
    EXPECT(srlm_loss_grpo(&o, &b, &g, &m) == SRLM_OK, "%s", srlm_error_message());
    EXPECT(m.clipped == one[c].clipped && fabs(m.loss - one[c].loss) < 1e-6 && fabs(g - one[c].g) < 1e-6,
           "A %g rho %g hi %g: loss %.9g g %.9g clipped %lld, expected %g %g %d", a, one[c].rho, one[c].hi, m.loss,
           (double)g, (long long)m.clipped, one[c].loss, one[c].g, one[c].clipped);
  }
  /* GSPO: one sequence of 2 tokens with token log-ratios ln 2 and 0: s = exp(ln 2 / 2) =
   * sqrt 2 for both tokens; seq mean w = 1/2. A = -1: unclipped, J_t = -sqrt 2, loss =
   * sqrt 2, g_t = -w A s = sqrt 2 / 2 (token ratios would give 1 and 0.5). A = +1: s >
   * 1.2, clipped: loss = -1.2, g = 0 (token ratios: the second token, rho 1, would flow). */
  float lp[2] = {-1.0f, -2.0f}, old[2] = {(float)(-1.0 - log(2.0)), -2.0f}, g[2];
  int64_t off[2] = {0, 2};
  double a = -1;
  srlm_grpo_options o = {.clip_eps = 0.2, .ratio = SRLM_GRPO_RATIO_SEQUENCE};
  srlm_grpo_batch b = {1, off, lp, old, NULL, NULL, &a};
  srlm_grpo_metrics m;
  const double s = exp(((double)lp[0] - old[0]) / 2); /* sqrt 2 up to old's float rounding */
  EXPECT(fabs(s - sqrt(2.0)) < 1e-6, "s %.9g", s);
  EXPECT(srlm_loss_grpo(&o, &b, g, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(fabs(m.loss - s) < 1e-12 && fabs(g[0] - s / 2) < 1e-6 && fabs(g[1] - s / 2) < 1e-6 && m.clipped == 0 &&
             fabs(m.ratio_sum - 2 * s) < 1e-12,
         "gspo A -1: loss %.12g g %.9g %.9g clipped %lld ratio sum %.9g; expected %.12g, %.9g each, 0, %.9g", m.loss,
         (double)g[0], (double)g[1], (long long)m.clipped, m.ratio_sum, s, s / 2, 2 * s);
  a = 1;
  EXPECT(srlm_loss_grpo(&o, &b, g, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(fabs(m.loss + 1.2) < 1e-12 && g[0] == 0 && g[1] == 0 && m.clipped == 2,
         "gspo A +1: loss %.12g g %g %g clipped %lld; expected -1.2, 0, 0, 2", m.loss, (double)g[0], (double)g[1],
         (long long)m.clipped);
  /* the sequence's importance weight: old - behavior = ln 4 and 0, geometric mean 2,
   * capped at 1.5 on both tokens: g_t = -w w_is A s = 0.5 * 1.5 * sqrt 2 (A = -1) */
  float beh[2] = {(float)(old[0] - log(4.0)), old[1]};
  const double wis = exp(((double)old[0] - beh[0]) / 2);
  EXPECT(fabs(wis - 2) < 1e-6, "w_is %.9g", wis);
  a = -1;
  o.is_cap = 1.5;
  srlm_grpo_batch bi = {1, off, lp, old, NULL, beh, &a};
  EXPECT(srlm_loss_grpo(&o, &bi, g, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(fabs(g[0] - 0.75 * s) < 1e-6 && fabs(g[1] - 0.75 * s) < 1e-6 && m.is_truncated == 2 &&
             fabs(m.loss - 1.5 * s) < 1e-12,
         "gspo + is cap: g %.9g %.9g truncated %lld loss %.12g; expected %.9g, 2, %.12g", (double)g[0], (double)g[1],
         (long long)m.is_truncated, m.loss, 0.75 * s, 1.5 * s);
}

static void test_grpo_clip_region(void) {
  /* one token per case: (A, rho) -> zero gradient exactly where the clipped branch is active */
  struct {
    double a, rho;
    int clipped;
  } cases[] = {{1, 1.5, 1}, {1, 1.1, 0}, {1, 0.5, 0}, {-1, 0.5, 1}, {-1, 0.9, 0}, {-1, 1.5, 0}, {0, 2, 0}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    float lp = -1.0f, old = (float)(-1.0 - log(cases[c].rho)), g = 99;
    int64_t off[2] = {0, 1};
    double a = cases[c].a;
    srlm_grpo_options o = {.clip_eps = 0.2};
    srlm_grpo_batch b = {1, off, &lp, &old, NULL, NULL, &a};
    srlm_grpo_metrics m;
    EXPECT(srlm_loss_grpo(&o, &b, &g, &m) == SRLM_OK, "%s", srlm_error_message());
    double rho = exp((double)lp - (double)old);
    double rc = rho < 0.8 ? 0.8 : rho > 1.2 ? 1.2 : rho;
    double want_g = cases[c].clipped ? 0.0 : -a * rho;
    double want_loss = -(rho * a < rc * a ? rho * a : rc * a);
    EXPECT(m.clipped == cases[c].clipped, "A %g rho %g: clipped %lld, expected %d", a, cases[c].rho,
           (long long)m.clipped, cases[c].clipped);
    EXPECT(fabs(g - want_g) < 1e-6, "A %g rho %g: g %.9g, expected %.9g", a, cases[c].rho, (double)g, want_g);
    EXPECT(fabs(m.loss - want_loss) < 1e-12, "A %g rho %g: loss %.12g, expected %.12g", a, cases[c].rho, m.loss,
           want_loss);
  }
}

static void test_grpo_aggregation_and_kl(void) {
  /* on-policy (rho = 1), no KL: g_t = -A_i w_t with w the aggregation weight */
  float lp[6] = {-1, -2, -3, -1, -2, -0.5f}, g[6];
  int64_t off[3] = {0, 2, 6}; /* lengths 2 and 4 */
  double adv[2] = {1.0, -0.5};
  srlm_grpo_batch b = {2, off, lp, NULL, NULL, NULL, adv};
  srlm_grpo_metrics m;
  srlm_grpo_options o = {.clip_eps = 0.2, .agg = SRLM_GRPO_AGG_SEQ_MEAN};
  EXPECT(srlm_loss_grpo(&o, &b, g, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(g[0], -1.0 / (2 * 2), 1e-7);
  EXPECT_NEAR(g[5], 0.5 / (2 * 4), 1e-7);
  EXPECT_NEAR(m.loss, -(1.0 - 0.5) / 2, 1e-15);
  o.agg = SRLM_GRPO_AGG_TOKEN_MEAN;
  EXPECT(srlm_loss_grpo(&o, &b, g, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(g[0], -1.0 / 6, 1e-7);
  EXPECT_NEAR(g[5], 0.5 / 6, 1e-7);
  EXPECT_NEAR(m.loss, -(2 * 1.0 - 4 * 0.5) / 6, 1e-15);
  o.agg = SRLM_GRPO_AGG_FIXED_LEN;
  o.l_max = 8;
  EXPECT(srlm_loss_grpo(&o, &b, g, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(g[0], -1.0 / 16, 1e-7);
  EXPECT_NEAR(g[5], 0.5 / 16, 1e-7);
  EXPECT_NEAR(m.loss, -(2 * 1.0 - 4 * 0.5) / 16, 1e-15);
  o.l_max = 3; /* a sequence longer than L_max is an error */
  EXPECT(srlm_loss_grpo(&o, &b, g, &m) == SRLM_ERR_RANGE, "length 4 > l_max 3 accepted");
  EXPECT_CONTAINS(srlm_error_message(), "sequence 1");

  /* k3 KL: Delta = log 2 -> D = 1 - log 2, dD/dlogp = 1 - 2 = -1; ref = policy -> 0 */
  float ref[6];
  for (int t = 0; t < 6; t++) ref[t] = (float)(lp[t] + log(2.0));
  double zero[2] = {0, 0};
  srlm_grpo_batch kb = {2, off, lp, NULL, ref, NULL, zero};
  srlm_grpo_options ko = {.clip_eps = 0.2, .beta = 0.1, .agg = SRLM_GRPO_AGG_TOKEN_MEAN};
  EXPECT(srlm_loss_grpo(&ko, &kb, g, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(m.kl_sum / m.tokens, 1 - log(2.0), 1e-6);
  EXPECT_NEAR(m.loss, 0.1 * (1 - log(2.0)), 1e-6);
  EXPECT_NEAR(g[3], 0.1 * -1.0 / 6, 1e-6);
  kb.logp_ref = lp;
  EXPECT(srlm_loss_grpo(&ko, &kb, g, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(m.kl_sum, 0, 0);
  EXPECT_NEAR(g[2], 0, 0);
}

static void test_grpo_is_and_split(void) {
  /* importance weight exp(old - behavior) = 5 is truncated to 3; 0.5 is kept */
  float lp[2] = {-1, -2}, beh[2] = {(float)(-1 - log(5.0)), (float)(-2 - log(0.5))}, g[2];
  int64_t off[2] = {0, 2};
  double a = 1;
  srlm_grpo_batch b = {1, off, lp, NULL, NULL, beh, &a};
  srlm_grpo_options o = {.clip_eps = 0.2, .is_cap = 3, .agg = SRLM_GRPO_AGG_TOKEN_MEAN};
  srlm_grpo_metrics m;
  EXPECT(srlm_loss_grpo(&o, &b, g, &m) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(m.is_truncated, 1);
  EXPECT_NEAR(g[0], -3.0 / 2, 1e-6);
  EXPECT_NEAR(g[1], -0.5 / 2, 1e-6);
  b.logp_behavior = NULL;
  EXPECT(srlm_loss_grpo(&o, &b, g, &m) != SRLM_OK, "is_cap without behavior log-probs accepted");

  /* splitting a batch with the step's normalizers reproduces it, for every aggregation */
  float lp5[GT], old[GT], ref[GT], beh5[GT], g1[GT], g2[GT];
  int64_t off5[GN + 1];
  double adv[GN];
  make_grpo(21, &(srlm_grpo_options){.clip_eps = 0.2}, lp5, old, ref, beh5, off5, adv);
  for (int agg = 0; agg < 3; agg++) {
    srlm_grpo_options so = {.clip_eps = 0.2, .beta = 0.04, .agg = (srlm_grpo_agg)agg, .l_max = 11, .is_cap = 2};
    srlm_grpo_batch all = {GN, off5, lp5, old, ref, beh5, adv};
    srlm_grpo_metrics mall, ma, mb;
    EXPECT(srlm_loss_grpo(&so, &all, g1, &mall) == SRLM_OK, "%s", srlm_error_message());
    so.norm_seqs = GN;
    so.norm_tokens = off5[GN];
    int64_t offa[3] = {0, off5[1], off5[2]}, offb[4];
    for (int i = 0; i < 4; i++) offb[i] = off5[2 + i] - off5[2];
    int64_t s = off5[2];
    srlm_grpo_batch pa = {2, offa, lp5, old, ref, beh5, adv};
    srlm_grpo_batch pb = {3, offb, lp5 + s, old + s, ref + s, beh5 + s, adv + 2};
    EXPECT(srlm_loss_grpo(&so, &pa, g2, &ma) == SRLM_OK, "%s", srlm_error_message());
    EXPECT(srlm_loss_grpo(&so, &pb, g2 + s, &mb) == SRLM_OK, "%s", srlm_error_message());
    srlm_grpo_metrics_merge(&ma, &mb);
    EXPECT(fabs(ma.loss - mall.loss) < 1e-14, "agg %d: split loss %.17g, whole %.17g", agg, ma.loss, mall.loss);
    EXPECT_EQ_INT(ma.tokens, mall.tokens);
    EXPECT_EQ_INT(ma.clipped, mall.clipped);
    int same = 1;
    for (int t = 0; t < off5[GN]; t++) same &= g1[t] == g2[t];
    EXPECT(same, "agg %d: split gradients differ", agg);
  }
}

int main(void) {
  test_pref_finite_differences();
  test_dpo_hand_values();
  test_label_smoothing();
  test_pair_weights_and_labels();
  test_ipo_simpo_sft_hand_values();
  test_pref_split_and_errors();
  test_grpo_finite_differences();
  test_grpo_clip_region();
  test_grpo_clip_high_and_seq_ratio();
  test_grpo_aggregation_and_kl();
  test_grpo_is_and_split();
  TEST_MAIN_END();
}
