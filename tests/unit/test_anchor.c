/* WARP's EMA anchor (engine.h, pref.h): the update is (1 - mu) anchor + mu theta, element
 * by element from the fp32 masters; with mu = 1 the anchor is the policy of every step,
 * so every DPO step sees the reference equal to the policy (loss ln 2, margin 0) while the
 * weights still move; with mu = 0.1 the anchor after every step equals an EMA of the
 * weights kept here on the host, bit for bit, and the reference is the anchor's. GRPO with
 * a KL to the anchor: mu = 1 gives a KL of 0 at every step, mu = 0.1 a positive one once
 * the weights have moved (and the anchor is the host's EMA again). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/engine.h"
#include "srlm/grpo.h"
#include "srlm/pref.h"
#include "test.h"
#include "tiny_model.h"

static int32_t tok_of(char c) { return c >= '0' && c <= '9' ? 2 + (c - '0') : c == '+' ? 12 : c == '-' ? 13 : 16; }

static const char *const k_pairs[][3] = {
    {"6371+15", "6+3+7-1", "6-3-7-1"}, {"2699+08", "2+6-9+9", "2-6-9-9"}, {"9884+29", "9+8+8+4", "9-8+8-4"},
    {"5281-04", "5-2-8+1", "5+2+8+1"}, {"1234+10", "1+2+3+4", "1-2-3-4"}, {"4521-04", "4-5-2-1", "4+5+2+1"},
};
#define NP 6
static int32_t g_ids[NP][3][16];

static void make_pairs(srlm_pref_pair *p) {
  for (int64_t i = 0; i < NP; i++) {
    int64_t len[3];
    for (int k = 0; k < 3; k++) {
      len[k] = (int64_t)strlen(k_pairs[i][k]);
      for (int64_t j = 0; j < len[k]; j++) g_ids[i][k][j] = tok_of(k_pairs[i][k][j]);
      if (k > 0) g_ids[i][k][len[k]++] = 0; /* EOS */
    }
    p[i] = (srlm_pref_pair){g_ids[i][0], g_ids[i][1], g_ids[i][2], len[0], len[1], len[2]};
  }
}

static float *params_of(srlm_model *m) {
  size_t n = srlm_model_num_params(m);
  float *w = malloc(n * sizeof *w);
  SRLM_CHECK(srlm_model_get_params(m, w, 0, n) == SRLM_OK);
  return w;
}

static void test_update(void) {
  srlm_model *m = tiny_model_with_vocab(19), *a = NULL;
  EXPECT_EQ_INT(srlm_engine_anchor_create(m, &a), SRLM_OK);
  const size_t n = srlm_model_num_params(m);
  float *wm = params_of(m), *wa = params_of(a);
  EXPECT(memcmp(wm, wa, n * sizeof *wm) == 0, "a fresh anchor differs from its model");
  for (size_t i = 0; i < n; i++) wa[i] = (float)(i % 7) - 3.0f; /* hand-made anchor values */
  SRLM_CHECK(srlm_model_set_params(a, wa, 0, n) == SRLM_OK);
  EXPECT_EQ_INT(srlm_engine_ema_update(a, m, 0.25), SRLM_OK);
  float *got = params_of(a);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += got[i] != (float)(0.75 * (double)wa[i] + 0.25 * (double)wm[i]);
  EXPECT_EQ_INT(bad, 0);
  EXPECT_NEAR(got[3], 0.75 * 0.0 + 0.25 * wm[3], 1e-7); /* i = 3: anchor value 0 */
  free(got);
  EXPECT_EQ_INT(srlm_engine_ema_update(a, m, 1.0), SRLM_OK);
  got = params_of(a);
  EXPECT(memcmp(got, wm, n * sizeof *wm) == 0, "mu = 1 does not copy the weights");
  free(got), free(wm), free(wa);
  srlm_model_free(a);
  srlm_model_free(m);
}

typedef struct seen {
  srlm_model *m, *anchor;
  double mu;
  float *ema; /* the host's own EMA of the weights */
  int64_t steps, mismatched_steps;
  double max_ln2_err, max_margin, losses[64];
} seen;

static srlm_status on_step(const srlm_pref_step_info *s, void *user) {
  seen *v = user;
  const size_t n = srlm_model_num_params(v->m);
  float *w = params_of(v->m), *a = params_of(v->anchor);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    v->ema[i] = (float)((1.0 - v->mu) * (double)v->ema[i] + v->mu * (double)w[i]);
    bad += v->ema[i] != a[i];
  }
  v->mismatched_steps += bad != 0;
  double np = s->pref.pairs ? (double)s->pref.pairs : 1;
  if (fabs(s->loss - log(2.0)) > v->max_ln2_err) v->max_ln2_err = fabs(s->loss - log(2.0));
  if (fabs(s->pref.margin_sum / np) > v->max_margin) v->max_margin = fabs(s->pref.margin_sum / np);
  if (v->steps < 64) v->losses[v->steps] = s->loss;
  v->steps++;
  free(w), free(a);
  return SRLM_OK;
}

static void run(double mu, seen *v) {
  srlm_pref_pair p[NP];
  make_pairs(p);
  srlm_model *m = tiny_model_with_vocab(19), *a = NULL;
  SRLM_CHECK(srlm_engine_anchor_create(m, &a) == SRLM_OK);
  float *w0 = params_of(m);
  memset(v, 0, sizeof *v);
  *v = (seen){.m = m, .anchor = a, .mu = mu, .ema = params_of(m)};
  srlm_pref_train_options o = {.loss = {.kind = SRLM_PREF_DPO, .beta = 1.0}, .batch_pairs = 2, .epochs = 4, .seed = 5,
                               .anchor = a, .anchor_mu = mu, .on_step = on_step, .user = v};
  o.optim = (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.98, .eps = 1e-8, .grad_clip = 1.0};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_CONSTANT, .lr = 1e-2, .min_lr = 1e-2};
  srlm_pref_summary sum;
  /* no ref arrays: the anchor is the reference */
  EXPECT_EQ_INT(srlm_pref_train(m, p, NP, NULL, NULL, &o, &sum), SRLM_OK);
  EXPECT_EQ_INT(sum.steps, 3 * 4);
  float *w = params_of(m);
  double moved = 0;
  for (size_t i = 0; i < srlm_model_num_params(m); i++) moved += fabs((double)w[i] - w0[i]);
  EXPECT(moved > 1e-3, "the weights did not move (sum |dw| %g)", moved);
  free(w), free(w0), free(v->ema);
  srlm_model_free(a);
  srlm_model_free(m);
}

static void test_training(void) {
  seen v;
  run(1.0, &v);
  EXPECT_EQ_INT(v.steps, 12);
  EXPECT_EQ_INT(v.mismatched_steps, 0);
  EXPECT(v.max_ln2_err < 1e-5, "mu = 1: a step's loss is off ln 2 by %g (the reference is not the policy)", v.max_ln2_err);
  EXPECT(v.max_margin < 1e-5, "mu = 1: margin %g", v.max_margin);
  run(0.1, &v);
  EXPECT_EQ_INT(v.mismatched_steps, 0);
  EXPECT_NEAR(v.losses[0], log(2.0), 1e-5); /* the anchor starts at the weights */
  EXPECT(v.max_ln2_err > 1e-3, "mu = 0.1: every loss is ln 2 (%g): the anchor does not lag the policy", v.max_ln2_err);
  /* DPO without a reference and without an anchor is refused */
  srlm_pref_pair p[NP];
  make_pairs(p);
  srlm_model *m = tiny_model_with_vocab(19);
  srlm_pref_train_options o = {.loss = {.kind = SRLM_PREF_DPO, .beta = 1.0}, .batch_pairs = 2, .epochs = 1};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_CONSTANT, .lr = 1e-2, .min_lr = 1e-2};
  EXPECT_EQ_INT(srlm_pref_train(m, p, NP, NULL, NULL, &o, NULL), SRLM_ERR_INTERNAL);
  srlm_model_free(m);
}

/* ---- GRPO ---- */
#define NG 4
#define GS 3
static int32_t g_p[NG * GS][4], g_r[NG * GS][5];

typedef struct gseen {
  seen base;
  double kl[64];
} gseen;

static srlm_status on_grpo(const srlm_grpo_step_info *s, void *user) {
  gseen *v = user;
  const size_t n = srlm_model_num_params(v->base.m);
  float *w = params_of(v->base.m), *a = params_of(v->base.anchor);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    v->base.ema[i] = (float)((1.0 - v->base.mu) * (double)v->base.ema[i] + v->base.mu * (double)w[i]);
    bad += v->base.ema[i] != a[i];
  }
  v->base.mismatched_steps += bad != 0;
  if (v->base.steps < 64) v->kl[v->base.steps] = s->kl_mean;
  v->base.steps++;
  free(w), free(a);
  return SRLM_OK;
}

static void run_grpo(double mu, gseen *v) {
  srlm_grpo_seq s[NG * GS];
  double adv[NG * GS];
  for (int i = 0; i < NG * GS; i++) {
    for (int t = 0; t < 4; t++) g_p[i][t] = (int32_t)(2 + (i / GS * 3 + t) % 15);
    for (int t = 0; t < 5; t++) g_r[i][t] = (int32_t)(2 + (i * 5 + t * 7) % 15);
    s[i] = (srlm_grpo_seq){.prompt = g_p[i], .response = g_r[i], .prompt_len = 4, .response_len = 5};
    adv[i] = (i % GS) - 1.0; /* -1, 0, 1 in each group */
  }
  srlm_model *m = tiny_model_with_vocab(19), *a = NULL;
  SRLM_CHECK(srlm_engine_anchor_create(m, &a) == SRLM_OK);
  memset(v, 0, sizeof *v);
  v->base = (seen){.m = m, .anchor = a, .mu = mu, .ema = params_of(m)};
  srlm_grpo_train_options o = {.batch_groups = 1, .grad_accum = 1, .epochs = 3, .seed = 3, .anchor = a,
                               .anchor_mu = mu, .on_step = on_grpo, .user = v};
  o.loss = (srlm_grpo_options){.clip_eps = 0.2, .beta = 0.1, .agg = SRLM_GRPO_AGG_SEQ_MEAN, .l_max = 5};
  o.optim = (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_CONSTANT, .lr = 1e-2, .min_lr = 1e-2};
  /* on-policy (no old log-probs), no reference array: the anchor is the KL reference */
  EXPECT_EQ_INT(srlm_grpo_train(m, s, NG, GS, adv, NULL, NULL, &o, NULL), SRLM_OK);
  free(v->base.ema);
  srlm_model_free(a);
  srlm_model_free(m);
}

static void test_grpo(void) {
  gseen v;
  run_grpo(1.0, &v);
  EXPECT_EQ_INT(v.base.steps, NG * 3);
  EXPECT_EQ_INT(v.base.mismatched_steps, 0);
  double mx = 0;
  for (int i = 0; i < NG * 3; i++) mx = fabs(v.kl[i]) > mx ? fabs(v.kl[i]) : mx;
  EXPECT(mx < 1e-6, "mu = 1: a step's KL to the anchor is %g (the anchor is not the policy)", mx);
  run_grpo(0.1, &v);
  EXPECT_EQ_INT(v.base.mismatched_steps, 0);
  EXPECT(fabs(v.kl[0]) < 1e-6, "mu = 0.1: first step KL %g (the anchor starts at the weights)", v.kl[0]);
  EXPECT(v.kl[NG * 3 - 1] > 1e-6, "mu = 0.1: last step KL %g: the anchor does not lag the policy", v.kl[NG * 3 - 1]);
}

int main(void) {
  test_update();
  test_training();
  test_grpo();
  TEST_MAIN_END();
}
