/* pref: reference log-probs equal the model's own per-sequence sums; the pair gradient
 * matches a central difference of the loss along the gradient; DPO(+NLL) training on a
 * few pairs makes every chosen answer beat its rejected one against the reference, and
 * the replay term trains its examples. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/pref.h"
#include "model_host.h"
#include "test.h"
#include "tiny_model.h"

/* configs/tiny ids: 0 EOS, 2..11 digits, 12 '+', 13 '-', 14 Q, 15 T, 16 A */
static int32_t tok_of(char c) {
  if (c >= '0' && c <= '9') return 2 + (c - '0');
  switch (c) {
    case '+': return 12;
    case '-': return 13;
    case 'Q': return 14;
    case 'T': return 15;
    default: return 16;
  }
}

typedef struct text_pair {
  const char *prompt, *chosen, *rejected;
} text_pair;

static const text_pair k_pairs[] = {
    {"Q6371T+15A", "6+3+7-1", "6-3-7-1"}, {"Q2699T+08A", "2+6-9+9", "2-6-9-9"},
    {"Q9884T+29A", "9+8+8+4", "9-8+8-4"}, {"Q5281T-04A", "5-2-8+1", "5+2+8+1"},
    {"Q1234T+10A", "1+2+3+4", "1-2-3-4"}, {"Q4521T-04A", "4-5-2-1", "4+5+2+1"},
};
#define NP ((int64_t)(sizeof k_pairs / sizeof k_pairs[0]))

static int32_t g_ids[NP][3][16];

static void make_pairs(srlm_pref_pair *p) {
  for (int64_t i = 0; i < NP; i++) {
    const char *s[3] = {k_pairs[i].prompt, k_pairs[i].chosen, k_pairs[i].rejected};
    int64_t len[3];
    for (int k = 0; k < 3; k++) {
      len[k] = (int64_t)strlen(s[k]);
      for (int64_t j = 0; j < len[k]; j++) g_ids[i][k][j] = tok_of(s[k][j]);
      if (k > 0) g_ids[i][k][len[k]++] = 0; /* EOS */
    }
    p[i] = (srlm_pref_pair){g_ids[i][0], g_ids[i][1], g_ids[i][2], len[0], len[1], len[2]};
  }
}

static srlm_model *tiny_model(void) { return tiny_model_with_vocab(19); }

/* logpi(prompt + resp) summed over the response tokens, one sequence alone. */
static double seq_logp(srlm_model *m, const int32_t *prompt, int64_t np, const int32_t *resp, int64_t nr) {
  int32_t tokens[40], targets[40];
  for (int64_t t = 0; t < np; t++) tokens[t] = prompt[t];
  for (int64_t t = 0; t < nr; t++) tokens[np + t] = resp[t];
  for (int64_t t = 0; t < np + nr; t++) targets[t] = t >= np - 1 && t + 1 < np + nr ? tokens[t + 1] : -1;
  int32_t cu[2] = {0, (int32_t)(np + nr)};
  srlm_batch b = {.B = 1, .T = np + nr, .tokens = tokens, .cu_seqlens = cu, .targets = targets};
  float logp[40];
  srlm_status st = srlm_model_logprobs(m, &b, logp);
  EXPECT(st == SRLM_OK, "logprobs: %s", srlm_error_message());
  double s = 0;
  for (int64_t t = 0; t < np + nr; t++)
    if (targets[t] >= 0) s += logp[t];
  return s;
}

static double dpo_loss(srlm_model *m, const srlm_pref_pair *p, const double *rc, const double *rr,
                       const srlm_pref_options *lo) {
  double c[NP], r[NP];
  srlm_status st = srlm_pref_ref_logps(m, p, NP, 1 << 20, c, r);
  EXPECT(st == SRLM_OK, "ref: %s", srlm_error_message());
  int64_t lc[NP], lr[NP];
  for (int64_t i = 0; i < NP; i++) {
    lc[i] = p[i].chosen_len;
    lr[i] = p[i].rejected_len;
  }
  srlm_pref_batch b = {.n = NP, .logp_chosen = c, .logp_rejected = r, .ref_chosen = rc, .ref_rejected = rr,
                       .len_chosen = lc, .len_rejected = lr};
  srlm_pref_metrics mt;
  st = srlm_loss_pref(lo, &b, NULL, NULL, &mt);
  EXPECT(st == SRLM_OK, "loss: %s", srlm_error_message());
  return mt.loss;
}

static void test_ref_logps(srlm_model *m, const srlm_pref_pair *p) {
  double c[NP], r[NP];
  /* a small token budget forces several batches */
  EXPECT_EQ_INT(srlm_pref_ref_logps(m, p, NP, 50, c, r), SRLM_OK);
  for (int64_t i = 0; i < NP; i++) {
    double wc = seq_logp(m, p[i].prompt, p[i].prompt_len, p[i].chosen, p[i].chosen_len);
    double wr = seq_logp(m, p[i].prompt, p[i].prompt_len, p[i].rejected, p[i].rejected_len);
    EXPECT_NEAR(c[i], wc, 1e-5 * fabs(wc));
    EXPECT_NEAR(r[i], wr, 1e-5 * fabs(wr));
  }
}

/* The learners' split of the reference log-probs (src/roles/learn.c: each learner computes a
 * contiguous share of the pairs) needs a pair's values not to depend on the pairs packed with
 * it: every cut of the pairs into two or three shares, each packed on its own, gives the bits
 * of all pairs in one pass. */
static void test_ref_logps_split(srlm_model *m, const srlm_pref_pair *p) {
  double c[NP], r[NP], sc[NP], sr[NP];
  EXPECT_EQ_INT(srlm_pref_ref_logps(m, p, NP, 1 << 20, c, r), SRLM_OK);
  for (int64_t a = 1; a < NP; a++)
    for (int64_t b = a; b <= NP; b++) { /* shares [0, a), [a, b), [b, NP); b == NP: two shares */
      const int64_t cut[4] = {0, a, b, NP};
      for (int k = 0; k < 3; k++)
        if (cut[k + 1] > cut[k])
          EXPECT_EQ_INT(srlm_pref_ref_logps(m, p + cut[k], cut[k + 1] - cut[k], 1 << 20, sc + cut[k], sr + cut[k]),
                        SRLM_OK);
      for (int64_t i = 0; i < NP; i++)
        EXPECT(!memcmp(&sc[i], &c[i], sizeof c[i]) && !memcmp(&sr[i], &r[i], sizeof r[i]),
               "shares cut at %lld and %lld: pair %lld has %.17g / %.17g, all pairs at once %.17g / %.17g", (long long)a,
               (long long)b, (long long)i, sc[i], sr[i], c[i], r[i]);
    }
}

/* d/de L(theta + e g) at e = 0 equals |g|^2 (g = the gradient srlm_pref_grad leaves). */
static void test_gradient(srlm_model *m, const srlm_pref_pair *p) {
  double rc[NP], rr[NP];
  EXPECT_EQ_INT(srlm_pref_ref_logps(m, p, NP, 1 << 20, rc, rr), SRLM_OK);
  /* a reference away from the current weights, so h != 0 */
  for (int64_t i = 0; i < NP; i++) {
    rc[i] += 0.3 * (double)(i % 3) - 0.2;
    rr[i] -= 0.1 * (double)(i % 2);
  }
  srlm_pref_options lo = {.kind = SRLM_PREF_DPO, .beta = 1.0, .label_smoothing = 0.1, .nll_weight = 0.5};
  int64_t idx[NP];
  for (int64_t i = 0; i < NP; i++) idx[i] = i;
  EXPECT_EQ_INT(srlm_model_zero_grad(m), SRLM_OK);
  srlm_pref_metrics mt;
  EXPECT_EQ_INT(srlm_pref_grad(m, p, idx, NP, rc, rr, &lo, &mt), SRLM_OK);
  EXPECT_EQ_INT(mt.pairs, NP);
  size_t n = srlm_model_num_params(m);
  float *w = test_w(m), *g = test_g(m);
  float *w0 = srlm_xmalloc(n * sizeof *w0), *dir = srlm_xmalloc(n * sizeof *dir);
  memcpy(w0, w, n * sizeof *w0);
  double g2 = 0;
  for (size_t i = 0; i < n; i++) g2 += (double)g[i] * g[i];
  const double e = 3e-2 / sqrt(g2);
  for (size_t i = 0; i < n; i++) dir[i] = g[i];
  for (size_t i = 0; i < n; i++) w[i] = w0[i] + (float)(e * dir[i]);
  double lp = dpo_loss(m, p, rc, rr, &lo);
  for (size_t i = 0; i < n; i++) w[i] = w0[i] - (float)(e * dir[i]);
  double lm = dpo_loss(m, p, rc, rr, &lo);
  memcpy(w, w0, n * sizeof *w0);
  double fd = (lp - lm) / (2 * e);
  EXPECT(fabs(fd - g2) <= 0.02 * g2, "directional derivative %.6g, |g|^2 %.6g", fd, g2);
  EXPECT_NEAR(mt.loss, dpo_loss(m, p, rc, rr, &lo), 1e-9);
  free(w0);
  free(dir);
  EXPECT_EQ_INT(srlm_model_zero_grad(m), SRLM_OK);
}

typedef struct steps_seen {
  int64_t steps;
  double last_replay;
} steps_seen;

static srlm_status on_step(const srlm_pref_step_info *info, void *user) {
  steps_seen *s = user;
  s->steps = info->step;
  s->last_replay = info->replay_nll;
  return SRLM_OK;
}

static void test_training(srlm_model *m, const srlm_pref_pair *p) {
  double rc[NP], rr[NP];
  EXPECT_EQ_INT(srlm_pref_ref_logps(m, p, NP, 1 << 20, rc, rr), SRLM_OK);
  /* replay: the first two chosen answers as plain NLL examples */
  int32_t ids[2][20], targets[2][20];
  int64_t offsets[3] = {0};
  int32_t nt[2];
  srlm_sft_data d = {0};
  int32_t all_ids[40], all_t[40];
  for (int k = 0; k < 2; k++) {
    int64_t L = p[k].prompt_len + p[k].chosen_len;
    for (int64_t t = 0; t < p[k].prompt_len; t++) ids[k][t] = p[k].prompt[t];
    for (int64_t t = 0; t < p[k].chosen_len; t++) ids[k][p[k].prompt_len + t] = p[k].chosen[t];
    nt[k] = 0;
    for (int64_t t = 0; t < L; t++) {
      targets[k][t] = t >= p[k].prompt_len - 1 && t + 1 < L ? ids[k][t + 1] : -1;
      nt[k] += targets[k][t] >= 0;
      all_ids[offsets[k] + t] = ids[k][t];
      all_t[offsets[k] + t] = targets[k][t];
    }
    offsets[k + 1] = offsets[k] + L;
  }
  d.n = 2;
  d.offsets = offsets;
  d.ids = all_ids;
  d.targets = all_t;
  d.n_targets_of = nt;
  d.n_tokens = offsets[2];
  d.n_targets = nt[0] + nt[1];
  srlm_pref_train_options o = {.loss = {.kind = SRLM_PREF_DPO, .beta = 1.0, .nll_weight = 1.0},
                               .batch_pairs = 3, .epochs = 30, .seed = 5, .replay = &d, .replay_batch = 2,
                               .replay_weight = 1.0};
  o.optim = (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.98, .eps = 1e-8, .grad_clip = 1.0};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_CONSTANT, .lr = 1e-2, .min_lr = 1e-2};
  steps_seen seen = {0};
  o.on_step = on_step;
  o.user = &seen;
  srlm_pref_summary sum;
  srlm_status st = srlm_pref_train(m, p, NP, rc, rr, &o, &sum);
  EXPECT(st == SRLM_OK, "train: %s", srlm_error_message());
  EXPECT_EQ_INT(sum.steps, 2 * 30);
  EXPECT_EQ_INT(seen.steps, 60);
  EXPECT(sum.last_loss < sum.first_loss, "loss %.4f -> %.4f", sum.first_loss, sum.last_loss);
  EXPECT(isfinite(seen.last_replay) && seen.last_replay < 0.5, "replay NLL %.4f", seen.last_replay);
  double c[NP], r[NP];
  EXPECT_EQ_INT(srlm_pref_ref_logps(m, p, NP, 1 << 20, c, r), SRLM_OK);
  for (int64_t i = 0; i < NP; i++) {
    double h = (c[i] - rc[i]) - (r[i] - rr[i]);
    EXPECT(h > 1.0, "pair %lld: implicit reward margin %.3f", (long long)i, h);
    EXPECT(c[i] > r[i], "pair %lld: chosen %.3f not above rejected %.3f", (long long)i, c[i], r[i]);
  }
}

/* The weights of a fresh tiny model after 4 epochs of DPO on the pairs with per-pair
 * weights w and soft labels eps (NULL: none); *h gets each pair's final margin h. */
static float *train_soft(const srlm_pref_pair *p, const double *w, const double *eps, double ls, double *h) {
  srlm_model *m = tiny_model();
  double rc[NP], rr[NP];
  EXPECT_EQ_INT(srlm_pref_ref_logps(m, p, NP, 1 << 20, rc, rr), SRLM_OK);
  srlm_pref_train_options o = {.loss = {.kind = SRLM_PREF_DPO, .beta = 1.0, .label_smoothing = ls},
                               .batch_pairs = 3, .epochs = 12, .seed = 5, .pair_weight = w, .pair_label = eps};
  o.optim = (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.98, .eps = 1e-8, .grad_clip = 1.0};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_CONSTANT, .lr = 1e-2, .min_lr = 1e-2};
  srlm_status st = srlm_pref_train(m, p, NP, rc, rr, &o, NULL);
  EXPECT(st == SRLM_OK, "train: %s", srlm_error_message());
  double c[NP], r[NP];
  EXPECT_EQ_INT(srlm_pref_ref_logps(m, p, NP, 1 << 20, c, r), SRLM_OK);
  for (int i = 0; i < NP; i++) h[i] = (c[i] - rc[i]) - (r[i] - rr[i]);
  const size_t n = srlm_model_num_params(m);
  float *x = malloc(n * sizeof *x);
  EXPECT_EQ_INT(srlm_model_get_params(m, x, 0, n), SRLM_OK);
  srlm_model_free(m);
  return x;
}

/* Per-pair weights and soft labels through the trainer: w = 1 with eps = label_smoothing
 * is bit for bit the unweighted run; w = 0 on every pair leaves the weights as they were
 * (no gradient, no weight decay); eps = 1 on every pair flips what is learnt. */
static void test_pair_weights(const srlm_pref_pair *p) {
  srlm_model *m0 = tiny_model();
  const size_t n = srlm_model_num_params(m0);
  float *init = malloc(n * sizeof *init);
  EXPECT_EQ_INT(srlm_model_get_params(m0, init, 0, n), SRLM_OK);
  srlm_model_free(m0);
  double ones[NP], eps01[NP], zeros[NP], flip[NP], h0[NP], h1[NP], hz[NP], hf[NP];
  for (int i = 0; i < NP; i++) ones[i] = 1, eps01[i] = 0.1, zeros[i] = 0, flip[i] = 1;
  float *a = train_soft(p, NULL, NULL, 0.1, h0), *b = train_soft(p, ones, eps01, 0.1, h1);
  EXPECT(memcmp(a, b, n * sizeof *a) == 0, "w = 1, eps = label_smoothing: the weights differ from the plain run");
  float *z = train_soft(p, zeros, NULL, 0, hz);
  EXPECT(memcmp(z, init, n * sizeof *z) == 0, "w = 0 on every pair changed the weights");
  float *f = train_soft(p, NULL, flip, 0, hf);
  for (int i = 0; i < NP; i++) {
    EXPECT(h0[i] > 0.5, "pair %d: margin %.3f after plain DPO", i, h0[i]);
    EXPECT(hf[i] < -0.5, "pair %d: margin %.3f after DPO with eps = 1 (flipped labels)", i, hf[i]);
  }
  free(a), free(b), free(z), free(f), free(init);
}

int main(void) {
  srlm_pref_pair p[NP];
  make_pairs(p);
  srlm_model *m = tiny_model();
  if (!m) TEST_MAIN_END();
  test_ref_logps(m, p);
  test_ref_logps_split(m, p);
  test_gradient(m, p);
  test_training(m, p);
  srlm_model_free(m);
  test_pair_weights(p);
  TEST_MAIN_END();
}
