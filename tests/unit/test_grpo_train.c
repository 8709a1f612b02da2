/* grpo_train: srlm_grpo_logps equals the model's own per-token log-probs whatever the
 * packing; one step's gradient matches central differences of the GRPO loss (each
 * aggregation); grad_accum 2 x B/2 and 2 or 3 simulated learners (threads with a summing
 * reduce) give the gradient and weights of 1 x B on one learner; a few steps on a toy
 * group task raise the log-probs of positive-advantage responses against negative ones;
 * a non-finite loss on one learner makes every learner skip the step; bad inputs are clear errors that change nothing. */
#include <math.h>

#include "srlm/grpo.h"
#include "srlm/pairs.h"
#include "model_host.h"
#include "test.h"
#include "tiny_model.h"
#include "sim_dp.h"

#define NG 7  /* groups */
#define G 4   /* samples per group */
#define NS (NG * G)
#define VOCAB 19
#define MAXLEN 8

static int32_t g_prompt[NS][MAXLEN], g_resp[NS][MAXLEN];
static float g_beh[NS][MAXLEN];
static double g_reward[NS];

/* Deterministic toy data: prompts of 2-6 tokens (one prompt per group), responses of
 * 1-6 tokens; reward = the share of response tokens with an even id; the last group's
 * rewards are all equal (zero advantages). */
static void make_seqs(srlm_grpo_seq *s) {
  for (int i = 0; i < NS; i++) {
    const int grp = i / G;
    srlm_philox_out pr = srlm_rng_bits(11, 1, (uint32_t)grp, 0, 0);
    srlm_philox_out rr = srlm_rng_bits(11, 2, (uint32_t)i, 0, 0);
    const int np = 2 + (int)(pr.v[0] % 5), nr = 1 + (int)(rr.v[0] % 6);
    for (int t = 0; t < np; t++) g_prompt[i][t] = 2 + (int32_t)(srlm_rng_bits(11, 3, (uint32_t)grp, (uint32_t)t, 0).v[0] % 17);
    int even = 0;
    for (int t = 0; t < nr; t++) {
      srlm_philox_out b = srlm_rng_bits(11, 4, (uint32_t)i, (uint32_t)t, 0);
      g_resp[i][t] = (t == nr - 1 && nr > 3) ? 0 : 2 + (int32_t)(b.v[0] % 17);
      even += g_resp[i][t] % 2 == 0;
      g_beh[i][t] = -2.0f - 0.5f * srlm_rng_u01f(b.v[1]);
    }
    g_reward[i] = grp == NG - 1 ? 0.5 : (double)even / nr;
    s[i] = (srlm_grpo_seq){.prompt = g_prompt[i], .response = g_resp[i], .behavior = g_beh[i], .prompt_len = np,
                           .response_len = nr};
  }
}

static srlm_model *tiny_model(void) { return tiny_model_with_vocab(VOCAB); }

static int64_t total_tokens(const srlm_grpo_seq *s) {
  int64_t off[NS + 1];
  return srlm_grpo_offsets(s, NS, off);
}

/* 1. srlm_grpo_logps = one-sequence srlm_model_logprobs, bit for bit, for any budget. */
static void test_logps(srlm_model *m, const srlm_grpo_seq *s) {
  const int64_t N = total_tokens(s);
  float *want = srlm_xmalloc((size_t)N * sizeof *want), *got = srlm_xmalloc((size_t)N * sizeof *got);
  int64_t at = 0;
  for (int i = 0; i < NS; i++) {
    int32_t tokens[2 * MAXLEN], targets[2 * MAXLEN];
    float lp[2 * MAXLEN];
    const int64_t np = s[i].prompt_len, nr = s[i].response_len, T = np + nr;
    for (int64_t t = 0; t < T; t++) tokens[t] = t < np ? s[i].prompt[t] : s[i].response[t - np];
    for (int64_t t = 0; t < T; t++) targets[t] = t >= np - 1 && t + 1 < T ? tokens[t + 1] : -1;
    int32_t cu[2] = {0, (int32_t)T};
    srlm_batch b = {.B = 1, .T = T, .tokens = tokens, .cu_seqlens = cu, .targets = targets};
    EXPECT_EQ_INT(srlm_model_logprobs(m, &b, lp), SRLM_OK);
    for (int64_t j = 0; j < nr; j++) want[at++] = lp[np - 1 + j];
  }
  EXPECT_EQ_INT(at, N);
  const int64_t budgets[] = {1, 9, 23, 60, 1 << 20};
  for (size_t k = 0; k < sizeof budgets / sizeof budgets[0]; k++) {
    memset(got, 0, (size_t)N * sizeof *got);
    EXPECT_EQ_INT(srlm_grpo_logps(m, s, NS, budgets[k], got), SRLM_OK);
    int64_t bad = -1;
    for (int64_t t = 0; t < N && bad < 0; t++)
      if (memcmp(&got[t], &want[t], sizeof(float)) != 0) bad = t;
    EXPECT(bad < 0, "max_tokens %lld: token %lld has %.9g, one-sequence logprobs %.9g", (long long)budgets[k],
           (long long)bad, bad >= 0 ? got[bad] : 0.0, bad >= 0 ? want[bad] : 0.0);
  }
  free(want);
  free(got);
}

/* Copies the step's gradient (the trainer leaves it in the model's gradients (srlm_model_get_grads) during on_step). */
typedef struct grab {
  srlm_model *m;
  int64_t want_step; /* grab at this step */
  float *grads;      /* (num_params) */
  srlm_grpo_step_info info;
  int64_t steps;
} grab;

static srlm_status grab_step(const srlm_grpo_step_info *info, void *user) {
  grab *g = user;
  g->steps = info->step;
  if (info->step == g->want_step) {
    memcpy(g->grads, test_g(g->m), srlm_model_num_params(g->m) * sizeof(float));
    g->info = *info;
  }
  return SRLM_OK;
}

static srlm_grpo_train_options base_options(void) {
  srlm_grpo_train_options o = {.batch_groups = NG, .grad_accum = 1, .epochs = 1, .seed = 3};
  o.loss = (srlm_grpo_options){.clip_eps = 0.2, .beta = 0.1, .agg = SRLM_GRPO_AGG_SEQ_MEAN, .l_max = MAXLEN};
  o.optim = (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_CONSTANT, .lr = 0.0, .min_lr = 0.0};
  return o;
}

/* Off-policy inputs: old = current + {-0.6, -0.05, 0, 0.05, 0.6} (ratios 1.82 .. 0.55, so
 * both clip branches and the free band occur, each at least 0.1 in log space away from
 * a kink), reference and behavior shifted too. */
static void off_policy(const float *lp, int64_t N, float *old, float *ref) {
  static const float shift[5] = {-0.6f, -0.05f, 0.0f, 0.05f, 0.6f};
  for (int64_t t = 0; t < N; t++) {
    old[t] = lp[t] + shift[t % 5];
    ref[t] = lp[t] + 0.3f * (float)((t % 3) - 1);
  }
}

static double grpo_loss_at(srlm_model *m, const srlm_grpo_seq *s, const double *adv, const float *old,
                           const float *ref, const srlm_grpo_options *lo) {
  const int64_t N = total_tokens(s);
  int64_t off[NS + 1];
  srlm_grpo_offsets(s, NS, off);
  float *lp = srlm_xmalloc((size_t)N * sizeof *lp), *beh = srlm_xmalloc((size_t)N * sizeof *beh);
  EXPECT_EQ_INT(srlm_grpo_logps(m, s, NS, 64, lp), SRLM_OK);
  for (int i = 0; i < NS; i++) memcpy(beh + off[i], s[i].behavior, (size_t)s[i].response_len * sizeof *beh);
  srlm_grpo_batch b = {.n = NS, .offsets = off, .logp = lp, .logp_old = old, .logp_ref = ref,
                       .logp_behavior = beh, .advantages = adv};
  srlm_grpo_metrics mt;
  EXPECT_EQ_INT(srlm_loss_grpo(lo, &b, NULL, &mt), SRLM_OK);
  free(lp);
  free(beh);
  return mt.loss;
}

static void advantages(double *adv) {
  srlm_group_options go = {.use_std = 1, .eps = SRLM_GROUP_STD_EPS};
  EXPECT_EQ_INT(srlm_group_advantages(&go, NG, G, g_reward, adv, NULL), SRLM_OK);
}

/* 2. One step over all groups (lr 0): the gradient against central differences of the
 * loss, along the gradient and along single coordinates, for every aggregation. */
static void test_gradient(srlm_model *m, const srlm_grpo_seq *s) {
  const int64_t N = total_tokens(s);
  const size_t n = srlm_model_num_params(m);
  double adv[NS];
  advantages(adv);
  float *lp = srlm_xmalloc((size_t)N * sizeof *lp), *old = srlm_xmalloc((size_t)N * sizeof *old),
        *ref = srlm_xmalloc((size_t)N * sizeof *ref);
  EXPECT_EQ_INT(srlm_grpo_logps(m, s, NS, 1 << 20, lp), SRLM_OK);
  off_policy(lp, N, old, ref);
  const srlm_grpo_agg aggs[3] = {SRLM_GRPO_AGG_SEQ_MEAN, SRLM_GRPO_AGG_TOKEN_MEAN, SRLM_GRPO_AGG_FIXED_LEN};
  float *w = test_w(m);
  float *w0 = srlm_xmalloc(n * sizeof *w0), *g = srlm_xmalloc(n * sizeof *g);
  memcpy(w0, w, n * sizeof *w0);
  for (int a = 0; a < 3; a++) {
    srlm_grpo_train_options o = base_options();
    o.loss.agg = aggs[a];
    o.loss.is_cap = a == 1 ? 1.5 : 0.0;
    grab gr = {.m = m, .want_step = 1, .grads = g};
    o.on_step = grab_step;
    o.user = &gr;
    srlm_grpo_summary sum;
    srlm_status st = srlm_grpo_train(m, s, NG, G, adv, old, ref, &o, &sum);
    EXPECT(st == SRLM_OK, "train: %s", srlm_error_message());
    EXPECT_EQ_INT(sum.steps, 1);
    EXPECT(memcmp(w, w0, n * sizeof *w) == 0, "agg %d: lr 0 changed the weights", a);
    EXPECT_EQ_INT(gr.info.grpo.seqs, NS);
    EXPECT_EQ_INT(gr.info.grpo.tokens, N);
    EXPECT(gr.info.clip_frac > 0 && gr.info.clip_frac < 1, "agg %d: clip fraction %.3f", a, gr.info.clip_frac);
    EXPECT(gr.info.kl_mean > 0, "agg %d: kl mean %.4g", a, gr.info.kl_mean);
    srlm_grpo_options lo = o.loss;
    const double l0 = grpo_loss_at(m, s, adv, old, ref, &lo);
    EXPECT_NEAR(gr.info.loss, l0, 1e-6 * fabs(l0) + 1e-9);
    double g2 = 0;
    for (size_t i = 0; i < n; i++) g2 += (double)g[i] * g[i];
    EXPECT(g2 > 0, "agg %d: zero gradient", a);
    const double e = 1e-2 / sqrt(g2);
    for (size_t i = 0; i < n; i++) w[i] = w0[i] + (float)(e * g[i]);
    const double lplus = grpo_loss_at(m, s, adv, old, ref, &lo);
    for (size_t i = 0; i < n; i++) w[i] = w0[i] - (float)(e * g[i]);
    const double lminus = grpo_loss_at(m, s, adv, old, ref, &lo);
    memcpy(w, w0, n * sizeof *w);
    const double fd = (lplus - lminus) / (2 * e);
    EXPECT(fabs(fd - g2) <= 0.02 * g2, "agg %d: directional derivative %.6g, |g|^2 %.6g", a, fd, g2);
    /* the three largest gradient coordinates, one at a time */
    size_t top[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
      if (fabsf(g[i]) > fabsf(g[top[0]])) {
        top[2] = top[1];
        top[1] = top[0];
        top[0] = i;
      } else if (fabsf(g[i]) > fabsf(g[top[1]])) {
        top[2] = top[1];
        top[1] = i;
      } else if (fabsf(g[i]) > fabsf(g[top[2]])) {
        top[2] = i;
      }
    }
    for (int k = 0; k < 3; k++) {
      const size_t i = top[k];
      const float h = 1e-2f;
      w[i] = w0[i] + h;
      const double p = grpo_loss_at(m, s, adv, old, ref, &lo);
      w[i] = w0[i] - h;
      const double q = grpo_loss_at(m, s, adv, old, ref, &lo);
      w[i] = w0[i];
      const double fdi = (p - q) / (double)((w0[i] + h) - (w0[i] - h));
      EXPECT(fabs(fdi - g[i]) <= 0.02 * fabs(g[i]) + 1e-5, "agg %d: param %zu: finite difference %.6g, gradient %.6g",
             a, i, fdi, (double)g[i]);
    }
  }
  free(w0);
  free(g);
  free(lp);
  free(old);
  free(ref);
}

/* |a - b| over |a|: max element difference relative to the largest |a|, and the L2 ratio. */
static void compare(const char *what, const float *a, const float *b, size_t n, double max_rel, double l2_rel) {
  double amax = 0, dmax = 0, a2 = 0, d2 = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = (double)a[i] - b[i];
    amax = fmax(amax, fabs(a[i]));
    dmax = fmax(dmax, fabs(d));
    a2 += (double)a[i] * a[i];
    d2 += d * d;
  }
  EXPECT(amax > 0, "%s: all zero", what);
  EXPECT(dmax <= max_rel * amax && sqrt(d2) <= l2_rel * sqrt(a2),
         "%s: max |diff| %.3g (|a| max %.3g, tol %.1g), L2 diff/L2 %.3g (tol %.1g)", what, dmax, amax, max_rel,
         sqrt(d2 / a2), l2_rel);
  fprintf(stderr, "%s: max |diff| / max |a| = %.3g, L2 ratio = %.3g\n", what, dmax / amax, sqrt(d2 / a2));
}

/* Options that step for real, with an AdamW eps large enough that the update is a smooth
 * function of the gradient (tiny float re-association differences stay tiny). */
static srlm_grpo_train_options stepping_options(void) {
  srlm_grpo_train_options o = base_options();
  o.optim.eps = 1e-2;
  o.schedule.lr = o.schedule.min_lr = 1e-3;
  return o;
}

/* 3. grad_accum 1 x 4 groups vs 2 x 2 groups: the same step gradients and weights. */
static void test_grad_accum(const srlm_grpo_seq *s) {
  const int64_t N = total_tokens(s);
  double adv[NS];
  advantages(adv);
  srlm_model *ma = tiny_model(), *mb = tiny_model();
  if (!ma || !mb) return;
  const size_t n = srlm_model_num_params(ma);
  float *old = srlm_xmalloc((size_t)N * sizeof *old), *ref = srlm_xmalloc((size_t)N * sizeof *ref);
  float *lp = srlm_xmalloc((size_t)N * sizeof *lp);
  EXPECT_EQ_INT(srlm_grpo_logps(ma, s, NS, 1 << 20, lp), SRLM_OK);
  off_policy(lp, N, old, ref);
  for (int agg = 0; agg < 2; agg++) {
    float *ga = srlm_xmalloc(n * sizeof(float)), *gb = srlm_xmalloc(n * sizeof(float));
    srlm_grpo_train_options o = stepping_options();
    o.loss.agg = agg == 0 ? SRLM_GRPO_AGG_TOKEN_MEAN : SRLM_GRPO_AGG_SEQ_MEAN;
    o.batch_groups = 4;
    o.grad_accum = 1;
    grab gra = {.m = ma, .want_step = 2, .grads = ga};
    o.on_step = grab_step;
    o.user = &gra;
    srlm_status st = srlm_grpo_train(ma, s, NG, G, adv, old, ref, &o, NULL);
    EXPECT(st == SRLM_OK, "train 1 x 4: %s", srlm_error_message());
    o.batch_groups = 2;
    o.grad_accum = 2;
    grab grb = {.m = mb, .want_step = 2, .grads = gb};
    o.user = &grb;
    st = srlm_grpo_train(mb, s, NG, G, adv, old, ref, &o, NULL);
    EXPECT(st == SRLM_OK, "train 2 x 2: %s", srlm_error_message());
    EXPECT_EQ_INT(gra.steps, 2);
    EXPECT_EQ_INT(grb.steps, 2);
    /* step 2 (3 groups) follows an update, so it also checks that step 1 agreed */
    char what[64];
    snprintf(what, sizeof what, "grad_accum agg %d step-2 gradient", (int)o.loss.agg);
    compare(what, ga, gb, n, 1e-7, 1e-7);
    EXPECT_NEAR(gra.info.loss, grb.info.loss, 1e-6 * fabs(gra.info.loss));
    EXPECT_EQ_INT(gra.info.tokens, grb.info.tokens);
    EXPECT_EQ_INT(gra.info.grpo.seqs, 3 * G);
    snprintf(what, sizeof what, "grad_accum agg %d weights", (int)o.loss.agg);
    compare(what, test_w(ma), test_w(mb), n, 1e-6, 1e-6);
    free(ga);
    free(gb);
  }
  free(old);
  free(ref);
  free(lp);
  srlm_model_free(ma);
  srlm_model_free(mb);
}

/* ---- simulated learners: threads and a reduce that sums in rank order ------------- */

typedef struct learner {
  sim_dp_rank sr; /* dp.ctx */
  srlm_dp dp;
  srlm_model *m;
  const srlm_grpo_seq *s;
  const double *adv;
  const float *old, *ref;
  srlm_grpo_train_options o;
  grab gr;
  srlm_status st;
  char err[256];
} learner;

static void *learner_main(void *arg) {
  learner *l = arg;
  l->o.dp = &l->dp;
  l->o.on_step = grab_step;
  l->o.user = &l->gr;
  l->st = srlm_grpo_train(l->m, l->s, NG, G, l->adv, l->old, l->ref, &l->o, NULL);
  if (l->st != SRLM_OK) snprintf(l->err, sizeof l->err, "%s", srlm_error_message());
  return NULL;
}

/* 4. R learners (each a model with the same weights, each its slice of every step) vs
 * one: same step gradient (from learner 0 after the reduce), same step statistics, same
 * weights after every step. Steps of 6 groups (24 sequences) then 1 group; the
 * micro-batches (and with 3 learners the last step's slices) cut through groups. */
static void test_dp(const srlm_grpo_seq *s, int R) {
  const int64_t N = total_tokens(s);
  double adv[NS];
  advantages(adv);
  srlm_model *one = tiny_model();
  if (!one) return;
  const size_t n = srlm_model_num_params(one);
  float *old = srlm_xmalloc((size_t)N * sizeof *old), *ref = srlm_xmalloc((size_t)N * sizeof *ref);
  float *lp = srlm_xmalloc((size_t)N * sizeof *lp);
  EXPECT_EQ_INT(srlm_grpo_logps(one, s, NS, 1 << 20, lp), SRLM_OK);
  off_policy(lp, N, old, ref);
  srlm_grpo_train_options o = stepping_options();
  o.batch_groups = 3;
  o.grad_accum = 2;
  o.loss.is_cap = 2.0;
  float *g1 = srlm_xmalloc(n * sizeof(float));
  grab gone = {.m = one, .want_step = 2, .grads = g1};
  o.on_step = grab_step;
  o.user = &gone;
  srlm_status st = srlm_grpo_train(one, s, NG, G, adv, old, ref, &o, NULL);
  EXPECT(st == SRLM_OK, "one learner: %s", srlm_error_message());

  sim_dp sim = {.R = R, .n = (int64_t)n};
  learner L[3];
  memset(L, 0, sizeof L);
  for (int r = 0; r < R; r++) {
    sim.slot[r] = srlm_xmalloc(n * sizeof(float));
    L[r] = (learner){.sr = {&sim, r}, .dp = {.rank = r, .size = R, .reduce = sim_reduce, .ctx = &L[r].sr}, .m = tiny_model(),
                     .s = s, .adv = adv, .old = old, .ref = ref, .o = o};
    L[r].gr = (grab){.m = L[r].m, .want_step = 2, .grads = srlm_xmalloc(n * sizeof(float))};
  }
  sim_dp_run(&sim, R, learner_main, L, sizeof *L);
  for (int r = 0; r < R; r++) {
    EXPECT(L[r].st == SRLM_OK, "learner %d of %d: %s", r, R, L[r].err);
    EXPECT_EQ_INT(L[r].gr.steps, 2); /* 6 groups, then 1 */
  }
  char what[64];
  snprintf(what, sizeof what, "dp %d learners step-2 gradient", R);
  compare(what, g1, L[0].gr.grads, n, 1e-6, 1e-6);
  for (int r = 1; r < R; r++) {
    EXPECT(memcmp(L[0].gr.grads, L[r].gr.grads, n * sizeof(float)) == 0, "learner %d's reduced gradient differs", r);
    EXPECT(memcmp(test_w(L[0].m), test_w(L[r].m), n * sizeof(float)) == 0,
           "learner %d's weights differ from learner 0's", r);
  }
  EXPECT_EQ_INT(L[0].gr.info.grpo.seqs, gone.info.grpo.seqs);
  EXPECT_EQ_INT(L[0].gr.info.grpo.tokens, gone.info.grpo.tokens);
  EXPECT_EQ_INT(L[0].gr.info.grpo.clipped, gone.info.grpo.clipped);
  EXPECT_EQ_INT(L[0].gr.info.tokens, gone.info.tokens);
  EXPECT_NEAR(L[0].gr.info.loss, gone.info.loss, 1e-6 * fabs(gone.info.loss));
  EXPECT_NEAR(L[0].gr.info.kl_mean, gone.info.kl_mean, 1e-6 * fabs(gone.info.kl_mean));
  EXPECT_EQ_INT(sim.reduces[0], 2);
  snprintf(what, sizeof what, "dp %d learners weights", R);
  compare(what, test_w(one), test_w(L[0].m), n, 1e-6, 1e-6);
  for (int r = 0; r < R; r++) {
    free(sim.slot[r]);
    free(L[r].gr.grads);
    srlm_model_free(L[r].m);
  }
  free(g1);
  free(old);
  free(ref);
  free(lp);
  srlm_model_free(one);
}

/* A NaN reference log-prob of one sequence makes one learner's loss non-finite: every
 * learner skips that step together (weights untouched, counted). */
static void test_nonfinite_skip(const srlm_grpo_seq *s) {
  const int64_t N = total_tokens(s);
  double adv[NS];
  advantages(adv);
  float *lp = srlm_xmalloc((size_t)N * sizeof *lp);
  srlm_model *probe = tiny_model();
  if (!probe) return;
  EXPECT_EQ_INT(srlm_grpo_logps(probe, s, NS, 1 << 20, lp), SRLM_OK);
  srlm_model_free(probe);
  lp[N - 1] = NAN; /* the reference of the last sequence's last token */
  const int R = 2;
  sim_dp sim = {.R = R};
  learner L[2];
  memset(L, 0, sizeof L);
  srlm_grpo_train_options o = stepping_options();
  o.loss.beta = 0.1;
  float *w0 = NULL;
  for (int r = 0; r < R; r++) {
    L[r] = (learner){.sr = {&sim, r}, .dp = {.rank = r, .size = R, .reduce = sim_reduce, .ctx = &L[r].sr}, .m = tiny_model(),
                     .s = s, .adv = adv, .old = NULL, .ref = lp, .o = o};
    sim.n = (int64_t)srlm_model_num_params(L[r].m);
    sim.slot[r] = srlm_xmalloc((size_t)sim.n * sizeof(float));
    L[r].gr = (grab){.m = L[r].m, .want_step = 1, .grads = srlm_xmalloc((size_t)sim.n * sizeof(float))};
  }
  w0 = srlm_xmalloc((size_t)sim.n * sizeof *w0);
  memcpy(w0, test_w(L[0].m), (size_t)sim.n * sizeof *w0);
  sim_dp_run(&sim, R, learner_main, L, sizeof *L);
  for (int r = 0; r < R; r++) {
    EXPECT(L[r].st == SRLM_OK, "learner %d: %s", r, L[r].err);
    EXPECT_EQ_INT(L[r].gr.steps, 1);
    EXPECT_EQ_INT(L[r].gr.info.skipped, 1);
    EXPECT_EQ_INT(L[r].gr.info.n_skipped, 1);
    EXPECT(memcmp(test_w(L[r].m), w0, (size_t)sim.n * sizeof *w0) == 0, "learner %d stepped", r);
    free(sim.slot[r]);
    free(L[r].gr.grads);
    srlm_model_free(L[r].m);
  }
  free(w0);
  free(lp);
}

/* Sum over each sequence's response tokens of per-token log-probs lp (N). */
static void seq_sums(const srlm_grpo_seq *s, const float *lp, double *out) {
  int64_t at = 0;
  for (int i = 0; i < NS; i++) {
    out[i] = 0;
    for (int64_t j = 0; j < s[i].response_len; j++) out[i] += lp[at++];
  }
}

typedef struct watch {
  int64_t steps;
  int bad;
  double last_kl, last_ratio, last_clip;
} watch;

static srlm_status watch_step(const srlm_grpo_step_info *info, void *user) {
  watch *w = user;
  w->steps++;
  w->last_kl = info->kl_mean;
  w->last_ratio = info->ratio_mean;
  w->last_clip = info->clip_frac;
  if (info->skipped || !isfinite(info->loss) || !(info->clip_frac >= 0 && info->clip_frac <= 1) ||
      !(info->kl_mean >= 0) || !(info->grad_norm > 0) || info->tokens <= 0)
    w->bad++;
  return SRLM_OK;
}

/* 5. Four GRPO iterations (old = ref = the iteration's starting weights) on the toy
 * groups: positive-advantage responses gain log-prob against negative ones in every
 * group with a signal, and the advantage-weighted log-prob rises. */
static void test_training(const srlm_grpo_seq *s) {
  const int64_t N = total_tokens(s);
  double adv[NS];
  advantages(adv);
  srlm_model *m = tiny_model();
  if (!m) return;
  float *lp0 = srlm_xmalloc((size_t)N * sizeof *lp0), *lp = srlm_xmalloc((size_t)N * sizeof *lp);
  double before[NS], after[NS];
  EXPECT_EQ_INT(srlm_grpo_logps(m, s, NS, 1 << 20, lp0), SRLM_OK);
  seq_sums(s, lp0, before);
  srlm_grpo_train_options o = base_options();
  o.batch_groups = 2;
  o.epochs = 2;
  o.loss.beta = 0.04;
  o.optim.eps = 1e-8;
  o.schedule.lr = o.schedule.min_lr = 3e-3;
  watch w = {0};
  o.on_step = watch_step;
  o.user = &w;
  int64_t steps = 0;
  for (int it = 0; it < 4; it++) {
    EXPECT_EQ_INT(srlm_grpo_logps(m, s, NS, 64, lp), SRLM_OK); /* M_t: pi_old and pi_ref */
    srlm_grpo_summary sum;
    srlm_status st = srlm_grpo_train(m, s, NG, G, adv, lp, lp, &o, &sum);
    EXPECT(st == SRLM_OK, "iteration %d: %s", it, srlm_error_message());
    EXPECT_EQ_INT(sum.steps, srlm_grpo_total_steps(NG, 2, 1, 2));
    EXPECT_EQ_INT(sum.skipped, 0);
    steps += sum.steps;
  }
  EXPECT_EQ_INT(w.steps, steps);
  EXPECT_EQ_INT(w.bad, 0);
  EXPECT(w.last_kl > 0, "last step's KL %.3g", w.last_kl);
  EXPECT_EQ_INT(srlm_grpo_logps(m, s, NS, 64, lp), SRLM_OK);
  seq_sums(s, lp, after);
  double weighted = 0;
  for (int i = 0; i < NS; i++) weighted += adv[i] * (after[i] - before[i]);
  EXPECT(weighted > 1.0, "sum_i A_i (logpi_after - logpi_before) = %.4f", weighted);
  for (int grp = 0; grp < NG; grp++) {
    double pos = 0, neg = 0, pos_b = 0, neg_b = 0;
    int np = 0, nn = 0;
    for (int j = 0; j < G; j++) {
      const int i = grp * G + j;
      if (adv[i] > 0) {
        pos += after[i];
        pos_b += before[i];
        np++;
      } else if (adv[i] < 0) {
        neg += after[i];
        neg_b += before[i];
        nn++;
      }
    }
    if (np == 0 || nn == 0) continue;
    const double gap_b = pos_b / np - neg_b / nn, gap = pos / np - neg / nn;
    EXPECT(gap > gap_b + 0.1, "group %d: mean logpi(A>0) - mean logpi(A<0) went %.3f -> %.3f", grp, gap_b, gap);
  }
  fprintf(stderr, "training: %lld steps, weighted log-prob gain %.3f, last KL %.4f, ratio %.4f, clip %.3f\n",
          (long long)steps, weighted, w.last_kl, w.last_ratio, w.last_clip);
  free(lp0);
  free(lp);
  srlm_model_free(m);
}

/* 6. Bad input: a clear error naming what, and the weights untouched. */
static void expect_error(srlm_model *m, const char *what, srlm_status st, const char *needle, const float *w0) {
  EXPECT(st != SRLM_OK, "%s: accepted", what);
  EXPECT_CONTAINS(srlm_error_message(), needle);
  EXPECT(memcmp(test_w(m), w0, srlm_model_num_params(m) * sizeof(float)) == 0, "%s: weights changed", what);
}

static void test_bad_input(srlm_model *m, const srlm_grpo_seq *s0) {
  srlm_grpo_seq s[NS];
  memcpy(s, s0, sizeof s);
  const int64_t N = total_tokens(s);
  double adv[NS];
  advantages(adv);
  float *lp = srlm_xmalloc((size_t)N * sizeof *lp);
  EXPECT_EQ_INT(srlm_grpo_logps(m, s, NS, 1 << 20, lp), SRLM_OK);
  const size_t n = srlm_model_num_params(m);
  float *w0 = srlm_xmalloc(n * sizeof *w0);
  memcpy(w0, test_w(m), n * sizeof *w0);
  srlm_grpo_train_options o = base_options();
  o.schedule.lr = o.schedule.min_lr = 1e-2;

  expect_error(m, "group size 0", srlm_grpo_train(m, s, NG, 0, adv, lp, lp, &o, NULL), "group size 0", w0);
  s[5].response_len = 0;
  expect_error(m, "empty response", srlm_grpo_train(m, s, NG, G, adv, lp, lp, &o, NULL), "sequence 5", w0);
  EXPECT(srlm_grpo_logps(m, s, NS, 64, lp) != SRLM_OK, "logps accepted an empty response");
  EXPECT_CONTAINS(srlm_error_message(), "sequence 5");
  s[5] = s0[5];
  expect_error(m, "beta without reference", srlm_grpo_train(m, s, NG, G, adv, lp, NULL, &o, NULL), "logp_ref", w0);
  o.loss.is_cap = 2.0;
  s[9].behavior = NULL;
  expect_error(m, "is_cap without behavior", srlm_grpo_train(m, s, NG, G, adv, lp, lp, &o, NULL), "behavior", w0);
  EXPECT_CONTAINS(srlm_error_message(), "sequence 9");
  s[9] = s0[9];
  o.loss.is_cap = 0;
  o.batch_groups = 0;
  expect_error(m, "batch_groups 0", srlm_grpo_train(m, s, NG, G, adv, lp, lp, &o, NULL), "batch_groups", w0);
  o.batch_groups = 2;
  o.loss.agg = SRLM_GRPO_AGG_FIXED_LEN;
  o.loss.l_max = 3;
  expect_error(m, "response over l_max", srlm_grpo_train(m, s, NG, G, adv, lp, lp, &o, NULL), "l_max 3", w0);
  o.loss.agg = SRLM_GRPO_AGG_SEQ_MEAN;
  o.loss.clip_eps = 1.5;
  expect_error(m, "clip_eps 1.5", srlm_grpo_train(m, s, NG, G, adv, lp, lp, &o, NULL), "clip_eps", w0);
  o.loss.clip_eps = 0.2;
  adv[3] = NAN;
  expect_error(m, "NaN advantage", srlm_grpo_train(m, s, NG, G, adv, lp, lp, &o, NULL), "sequence 3", w0);
  advantages(adv);
  srlm_dp dp = {.rank = 0, .size = 2, .reduce = NULL};
  o.dp = &dp;
  expect_error(m, "dp without reduce", srlm_grpo_train(m, s, NG, G, adv, lp, lp, &o, NULL), "reduce", w0);
  o.dp = NULL;
  int32_t bad_prompt[2] = {3, VOCAB};
  s[2].prompt = bad_prompt;
  s[2].prompt_len = 2;
  expect_error(m, "token id", srlm_grpo_train(m, s, NG, G, adv, lp, lp, &o, NULL), "outside [0, 19)", w0);
  EXPECT(srlm_grpo_logps(m, s, NS, 64, lp) != SRLM_OK, "logps accepted id 19");
  EXPECT_CONTAINS(srlm_error_message(), "sequence 2");
  free(lp);
  free(w0);
}

int main(void) {
  srlm_grpo_seq s[NS];
  make_seqs(s);
  srlm_model *m = tiny_model();
  if (!m) TEST_MAIN_END();
  test_logps(m, s);
  test_gradient(m, s);
  test_bad_input(m, s);
  srlm_model_free(m);
  test_grad_accum(s);
  test_dp(s, 2);
  test_dp(s, 3);
  test_nonfinite_skip(s);
  test_training(s);
  TEST_MAIN_END();
}
