/* pref_dp: srlm_pref_train's step split, DPO + NLL term + a replay batch throughout.
 * srlm_pref_grad's pieces add up to the whole (the normalization is the caller's) and its
 * metrics are the first step's; grad_accum (4 x 1, 2 x 2, 1 x 4 pairs per micro-batch)
 * gives the weights, losses and metric sums of one micro-batch per step; 2 learners
 * simulated as threads (each a model with the same weights, a reduce that sums in rank
 * order) give one learner's weights and step reports, with steps and replay batches
 * that do not split evenly (a learner with no pair at all included), and stay
 * bit-identical to each other; a NaN reference log-prob on one learner's pair makes both
 * skip that step together and keeps them (and their replay cursors) in step afterwards. */
#include <math.h>

#include "srlm/pref.h"
#include "model_host.h"
#include "test.h"
#include "tiny_model.h"
#include "sim_dp.h"

#define NP 11    /* pairs */
#define NR 5     /* replay examples */
#define VOCAB 19
#define MAXLEN 8
#define MAXSTEPS 8

static int32_t g_prompt[NP][MAXLEN], g_chosen[NP][MAXLEN], g_rejected[NP][MAXLEN];

/* Deterministic toy pairs: prompts of 2-5 tokens, answers of 1-5 (an EOS ends the longer
 * ones). */
static void make_pairs(srlm_pref_pair *p) {
  for (int i = 0; i < NP; i++) {
    srlm_philox_out len = srlm_rng_bits(21, 1, (uint32_t)i, 0, 0);
    const int np = 2 + (int)(len.v[0] % 4), nc = 1 + (int)(len.v[1] % 5), nr = 1 + (int)(len.v[2] % 5);
    for (int t = 0; t < MAXLEN; t++) {
      srlm_philox_out b = srlm_rng_bits(21, 2, (uint32_t)i, (uint32_t)t, 0);
      g_prompt[i][t] = 2 + (int32_t)(b.v[0] % 17);
      g_chosen[i][t] = t == nc - 1 && nc > 2 ? 0 : 2 + (int32_t)(b.v[1] % 17);
      g_rejected[i][t] = t == nr - 1 && nr > 2 ? 0 : 2 + (int32_t)(b.v[2] % 17);
    }
    p[i] = (srlm_pref_pair){g_prompt[i], g_chosen[i], g_rejected[i], np, nc, nr};
  }
}

static int64_t g_roff[NR + 1];
static int32_t g_rids[NR * MAXLEN], g_rtargets[NR * MAXLEN], g_rnt[NR];

/* Replay examples as srlm_sft_data_load lays them out: a 2-3 token prompt without
 * targets, then 2-5 answer tokens, each predicted from the position before it. */
static void make_replay(srlm_sft_data *d) {
  memset(d, 0, sizeof *d);
  int64_t at = 0, targets = 0, longest = 0;
  for (int i = 0; i < NR; i++) {
    srlm_philox_out len = srlm_rng_bits(21, 3, (uint32_t)i, 0, 0);
    const int np = 2 + (int)(len.v[0] % 2), T = np + 2 + (int)(len.v[1] % 4);
    g_roff[i] = at;
    for (int t = 0; t < T; t++) g_rids[at + t] = 2 + (int32_t)(srlm_rng_bits(21, 4, (uint32_t)i, (uint32_t)t, 0).v[0] % 17);
    g_rnt[i] = 0;
    for (int t = 0; t < T; t++) {
      g_rtargets[at + t] = t >= np - 1 && t + 1 < T ? g_rids[at + t + 1] : -1;
      g_rnt[i] += g_rtargets[at + t] >= 0;
    }
    targets += g_rnt[i];
    longest = T > longest ? T : longest;
    at += T;
  }
  g_roff[NR] = at;
  d->n = NR;
  d->offsets = g_roff;
  d->ids = g_rids;
  d->targets = g_rtargets;
  d->n_targets_of = g_rnt;
  d->n_tokens = at;
  d->n_targets = targets;
  d->max_seq = longest;
}

static srlm_model *tiny_model(void) { return tiny_model_with_vocab(VOCAB); }

/* Reference log-probs of the initial weights, shifted per pair so that the margins are
 * neither zero nor all of one sign from the first step on. */
static void make_refs(const srlm_pref_pair *p, double *rc, double *rr) {
  srlm_model *m = tiny_model();
  if (!m) return;
  EXPECT_EQ_INT(srlm_pref_ref_logps(m, p, NP, 64, rc, rr), SRLM_OK);
  for (int i = 0; i < NP; i++) {
    rc[i] += 0.4 * ((i % 3) - 1);
    rr[i] -= 0.3 * ((i % 2) ? 1 : -1);
  }
  srlm_model_free(m);
}

/* AdamW eps large enough that the update is a smooth function of the gradient, so float
 * re-association differences in the gradient stay tiny in the weights. */
static srlm_pref_train_options base_options(const srlm_sft_data *replay) {
  srlm_pref_train_options o = {.batch_pairs = 4, .grad_accum = 1, .epochs = 1, .seed = 5};
  o.loss = (srlm_pref_options){.kind = SRLM_PREF_DPO, .beta = 0.5, .nll_weight = 0.7};
  o.optim = (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-2, .weight_decay = 0.01};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_CONSTANT, .lr = 1e-3, .min_lr = 1e-3};
  o.replay = replay;
  o.replay_batch = 3;
  o.replay_weight = 0.4;
  return o;
}

/* What every step reported, and the weights after step 1. */
typedef struct rec {
  srlm_model *m;
  int64_t steps;
  srlm_pref_step_info info[MAXSTEPS];
  float *w1; /* (num_params) */
} rec;

static srlm_status rec_step(const srlm_pref_step_info *info, void *user) {
  rec *r = user;
  if (info->step != r->steps + 1 || info->step > MAXSTEPS)
    return srlm_error(SRLM_ERR_INTERNAL, "rec_step", "step %lld after %lld", (long long)info->step, (long long)r->steps);
  r->info[r->steps++] = *info;
  if (info->step == 1) memcpy(r->w1, test_w(r->m), srlm_model_num_params(r->m) * sizeof(float));
  return SRLM_OK;
}

static void rec_init(rec *r, srlm_model *m) {
  memset(r, 0, sizeof *r);
  r->m = m;
  r->w1 = srlm_xmalloc(srlm_model_num_params(m) * sizeof(float));
}

/* max |a - b| over max |a| (the weights' scale), checked against tol; returns it. */
static double compare(const char *what, const float *a, const float *b, size_t n, double tol) {
  double amax = 0, dmax = 0;
  for (size_t i = 0; i < n; i++) {
    amax = fmax(amax, fabs(a[i]));
    dmax = fmax(dmax, fabs((double)a[i] - b[i]));
  }
  EXPECT(amax > 0, "%s: all zero", what);
  const double rel = amax > 0 ? dmax / amax : INFINITY;
  EXPECT(rel <= tol, "%s: max |diff| %.3g over max |a| %.3g = %.3g (tol %.1g)", what, dmax, amax, rel, tol);
  fprintf(stderr, "%s: max |diff| / max |a| = %.3g\n", what, rel);
  return rel;
}

/* a and b agree within rel * scale; |a - b| / scale goes into *worst. Sums that cancel
 * (margins, rewards: differences of log-probs) are measured against the log-probs' scale. */
static void near(const char *what, int64_t step, double a, double b, double rel, double scale, double *worst) {
  const double d = fabs(a - b);
  EXPECT(isfinite(a) && isfinite(b) && d <= rel * scale, "%s, step %lld: %.12g vs %.12g (diff %.3g, scale %.3g)",
         what, (long long)step, a, b, d, scale);
  if (scale > 0 && d / scale > *worst) *worst = d / scale;
}

/* Two runs' step reports: counts exact, sums within rel; returns the worst relative
 * difference of the sums. */
static double same_steps(const char *what, const rec *a, const rec *b, double rel) {
  EXPECT(a->steps == b->steps, "%s: %lld steps vs %lld", what, (long long)a->steps, (long long)b->steps);
  double worst = 0;
  char w[160];
  for (int64_t s = 0; s < a->steps && s < b->steps; s++) {
    const srlm_pref_step_info *x = &a->info[s], *y = &b->info[s];
    const double lp_scale = fabs(x->pref.logp_chosen_sum) + fabs(x->pref.logp_rejected_sum);
    EXPECT(x->pref.pairs == y->pref.pairs && x->tokens == y->tokens && x->skipped == y->skipped &&
               x->pref.accuracy_sum == y->pref.accuracy_sum && x->pref.len_chosen_sum == y->pref.len_chosen_sum &&
               x->pref.len_rejected_sum == y->pref.len_rejected_sum && x->replay_next == y->replay_next,
           "%s, step %lld: pairs %lld/%lld tokens %lld/%lld skipped %d/%d accuracy %g/%g lengths %g+%g/%g+%g "
           "replay cursor %lld/%lld", what, (long long)s + 1, (long long)x->pref.pairs, (long long)y->pref.pairs,
           (long long)x->tokens, (long long)y->tokens, x->skipped, y->skipped, x->pref.accuracy_sum,
           y->pref.accuracy_sum, x->pref.len_chosen_sum, x->pref.len_rejected_sum, y->pref.len_chosen_sum,
           y->pref.len_rejected_sum, (long long)x->replay_next, (long long)y->replay_next);
    snprintf(w, sizeof w, "%s loss", what);
    near(w, s + 1, x->loss, y->loss, rel, fabs(x->loss), &worst);
    snprintf(w, sizeof w, "%s pair loss", what);
    near(w, s + 1, x->pref.loss, y->pref.loss, rel, fabs(x->pref.loss), &worst);
    snprintf(w, sizeof w, "%s replay NLL", what);
    near(w, s + 1, x->replay_nll, y->replay_nll, rel, fabs(x->replay_nll), &worst);
    snprintf(w, sizeof w, "%s nll_sum", what);
    near(w, s + 1, x->pref.nll_sum, y->pref.nll_sum, rel, fabs(x->pref.nll_sum), &worst);
    snprintf(w, sizeof w, "%s logp_chosen_sum", what);
    near(w, s + 1, x->pref.logp_chosen_sum, y->pref.logp_chosen_sum, rel, fabs(x->pref.logp_chosen_sum), &worst);
    snprintf(w, sizeof w, "%s logp_rejected_sum", what);
    near(w, s + 1, x->pref.logp_rejected_sum, y->pref.logp_rejected_sum, rel, fabs(x->pref.logp_rejected_sum), &worst);
    snprintf(w, sizeof w, "%s margin_sum", what);
    near(w, s + 1, x->pref.margin_sum, y->pref.margin_sum, rel, lp_scale, &worst);
    snprintf(w, sizeof w, "%s reward_chosen_sum", what);
    near(w, s + 1, x->pref.reward_chosen_sum, y->pref.reward_chosen_sum, rel, lp_scale, &worst);
  }
  fprintf(stderr, "%s: step reports agree, worst relative difference %.3g\n", what, worst);
  return worst;
}

/* Mean-token NLL of replay examples first..first+count (cycling), each forwarded alone. */
static double replay_nll(srlm_model *m, const srlm_sft_data *d, int64_t first, int count) {
  double s = 0;
  int64_t targets = 0;
  for (int k = 0; k < count; k++) {
    const int64_t i = (first + k) % d->n, a = d->offsets[i], T = d->offsets[i + 1] - a;
    float lp[MAXLEN];
    int32_t cu[2] = {0, (int32_t)T};
    srlm_batch b = {.B = 1, .T = T, .tokens = d->ids + a, .cu_seqlens = cu, .targets = d->targets + a};
    EXPECT_EQ_INT(srlm_model_logprobs(m, &b, lp), SRLM_OK);
    for (int64_t t = 0; t < T; t++)
      if (d->targets[a + t] >= 0) s -= lp[t];
    targets += d->n_targets_of[i];
  }
  return s / (double)targets;
}

/* 1. srlm_pref_grad: two halves (each normalized by its own 2 pairs) accumulate to twice
 * the gradient of the 4 pairs together; its metrics over the first step's pairs are the
 * pair part of that step's report, and the step's replay NLL is the first 3 replay
 * examples' mean-token NLL. */
static void test_grad(const srlm_pref_pair *p, const double *rc, const double *rr, const srlm_sft_data *d) {
  srlm_model *m = tiny_model();
  if (!m) return;
  const size_t n = srlm_model_num_params(m);
  srlm_pref_train_options o = base_options(d);
  int64_t order[NP];
  srlm_rng_permutation(NP, o.seed, SRLM_PREF_RNG_PURPOSE, 0, order);
  float *whole = srlm_xmalloc(n * sizeof *whole), *twice = srlm_xmalloc(n * sizeof *twice);
  srlm_pref_metrics mw, m1, m2;
  EXPECT_EQ_INT(srlm_model_zero_grad(m), SRLM_OK);
  EXPECT_EQ_INT(srlm_pref_grad(m, p, order, 4, rc, rr, &o.loss, &mw), SRLM_OK);
  for (size_t i = 0; i < n; i++) whole[i] = 2.0f * test_g(m)[i];
  EXPECT_EQ_INT(srlm_model_zero_grad(m), SRLM_OK);
  EXPECT_EQ_INT(srlm_pref_grad(m, p, order, 2, rc, rr, &o.loss, &m1), SRLM_OK);
  EXPECT_EQ_INT(srlm_pref_grad(m, p, order + 2, 2, rc, rr, &o.loss, &m2), SRLM_OK);
  memcpy(twice, test_g(m), n * sizeof *twice);
  EXPECT_EQ_INT(srlm_model_zero_grad(m), SRLM_OK);
  compare("pref_grad halves vs 2 x whole", whole, twice, n, 1e-6);
  EXPECT_NEAR(m1.loss + m2.loss, 2 * mw.loss, 1e-12 * fabs(mw.loss));
  EXPECT_EQ_INT(mw.pairs, 4);
  const double replay0 = replay_nll(m, d, 0, 3);

  rec r;
  rec_init(&r, m);
  o.on_step = rec_step;
  o.user = &r;
  srlm_status st = srlm_pref_train(m, p, NP, rc, rr, &o, NULL);
  EXPECT(st == SRLM_OK, "train: %s", srlm_error_message());
  EXPECT_EQ_INT(r.steps, 3); /* 4 + 4 + 3 pairs */
  const srlm_pref_step_info *s1 = &r.info[0];
  EXPECT_EQ_INT(s1->pref.pairs, 4);
  EXPECT_NEAR(s1->pref.loss, mw.loss, 1e-12 * fabs(mw.loss));
  EXPECT_NEAR(s1->pref.nll_sum, mw.nll_sum, 1e-12 * fabs(mw.nll_sum));
  EXPECT_NEAR(s1->pref.margin_sum, mw.margin_sum, 1e-12 * fabs(mw.margin_sum) + 1e-15);
  EXPECT(mw.nll_sum > 0 && mw.margin_sum != 0, "first step: nll_sum %g, margin_sum %g (both terms present)",
         mw.nll_sum, mw.margin_sum);
  EXPECT_NEAR(s1->replay_nll, replay0, 1e-9 * replay0);
  EXPECT_NEAR(s1->loss, mw.loss + o.replay_weight * replay0, 1e-9 * fabs(s1->loss));
  EXPECT_EQ_INT(s1->replay_next, 3);
  EXPECT_EQ_INT(r.info[1].replay_next, 1); /* 3, 4, 0 */
  free(r.w1);
  free(whole);
  free(twice);
  srlm_model_free(m);
}

/* 2. The same 4 pairs per step as 1 micro-batch, 2 x 2 and 4 x 1: weights after step 1
 * and after the last step agree up to re-association, step reports too. */
static void test_grad_accum(const srlm_pref_pair *p, const double *rc, const double *rr, const srlm_sft_data *d) {
  static const int splits[3][2] = {{4, 1}, {2, 2}, {1, 4}};
  srlm_model *ms[3];
  rec rs[3];
  for (int k = 0; k < 3; k++) {
    ms[k] = tiny_model();
    if (!ms[k]) return;
    rec_init(&rs[k], ms[k]);
    srlm_pref_train_options o = base_options(d);
    o.batch_pairs = splits[k][0];
    o.grad_accum = splits[k][1];
    o.on_step = rec_step;
    o.user = &rs[k];
    srlm_pref_summary sum;
    srlm_status st = srlm_pref_train(ms[k], p, NP, rc, rr, &o, &sum);
    EXPECT(st == SRLM_OK, "%d x %d: %s", splits[k][0], splits[k][1], srlm_error_message());
    EXPECT_EQ_INT(sum.steps, 3);
    EXPECT_EQ_INT(sum.skipped, 0);
  }
  const size_t n = srlm_model_num_params(ms[0]);
  for (int k = 1; k < 3; k++) {
    char what[64];
    snprintf(what, sizeof what, "grad_accum %d x %d step-1 weights", splits[k][0], splits[k][1]);
    compare(what, rs[0].w1, rs[k].w1, n, 1e-6);
    snprintf(what, sizeof what, "grad_accum %d x %d step-3 weights", splits[k][0], splits[k][1]);
    compare(what, test_w(ms[0]), test_w(ms[k]), n, 1e-6);
    snprintf(what, sizeof what, "grad_accum %d x %d", splits[k][0], splits[k][1]);
    same_steps(what, &rs[0], &rs[k], 1e-6);
  }
  for (int k = 0; k < 3; k++) {
    free(rs[k].w1);
    srlm_model_free(ms[k]);
  }
}

/* ---- simulated learners: threads and a reduce that sums in rank order ------------- */

typedef struct learner {
  sim_dp_rank sr; /* dp.ctx */
  srlm_dp dp;
  srlm_model *m;
  const srlm_pref_pair *p;
  const double *rc, *rr;
  srlm_pref_train_options o;
  rec r;
  srlm_pref_summary sum;
  srlm_status st;
  char err[256];
} learner;

static void *learner_main(void *arg) {
  learner *l = arg;
  l->o.dp = &l->dp;
  l->o.on_step = rec_step;
  l->o.user = &l->r;
  l->st = srlm_pref_train(l->m, l->p, NP, l->rc, l->rr, &l->o, &l->sum);
  if (l->st != SRLM_OK) snprintf(l->err, sizeof l->err, "%s", srlm_error_message());
  return NULL;
}

/* Runs o on 2 simulated learners, each a fresh tiny model; L[r].m and L[r].r hold the
 * results (the caller frees). */
static void run_two(learner L[2], sim_dp *sim, const srlm_pref_pair *p, const double *rc, const double *rr,
                    const srlm_pref_train_options *o) {
  memset(sim, 0, sizeof *sim);
  memset(L, 0, 2 * sizeof *L);
  for (int r = 0; r < 2; r++) {
    L[r] = (learner){.sr = {sim, r}, .dp = {.rank = r, .size = 2, .reduce = sim_reduce, .ctx = &L[r].sr}, .m = tiny_model(),
                     .p = p, .rc = rc, .rr = rr, .o = *o};
    sim->n = (int64_t)srlm_model_num_params(L[r].m);
    sim->slot[r] = srlm_xmalloc((size_t)sim->n * sizeof(float));
    rec_init(&L[r].r, L[r].m);
  }
  sim_dp_run(sim, 2, learner_main, L, sizeof *L);
  for (int r = 0; r < 2; r++) EXPECT(L[r].st == SRLM_OK, "learner %d: %s", r, L[r].err);
}

static void free_two(learner L[2], sim_dp *sim) {
  for (int r = 0; r < 2; r++) {
    free(sim->slot[r]);
    free(L[r].r.w1);
    srlm_model_free(L[r].m);
  }
}

/* The learners end alike: weights and replay cursors bit for bit. */
static void learners_agree(const char *what, learner L[2]) {
  const size_t n = srlm_model_num_params(L[0].m);
  EXPECT(memcmp(test_w(L[0].m), test_w(L[1].m), n * sizeof(float)) == 0,
         "%s: learner 1's weights differ from learner 0's", what);
  EXPECT(L[0].r.steps == L[1].r.steps, "%s: learners took %lld and %lld steps", what, (long long)L[0].r.steps,
         (long long)L[1].r.steps);
  for (int64_t s = 0; s < L[0].r.steps && s < L[1].r.steps; s++)
    EXPECT(L[0].r.info[s].replay_next == L[1].r.info[s].replay_next && L[0].r.info[s].skipped == L[1].r.info[s].skipped,
           "%s, step %lld: replay cursors %lld and %lld, skipped %d and %d", what, (long long)s + 1,
           (long long)L[0].r.info[s].replay_next, (long long)L[1].r.info[s].replay_next, L[0].r.info[s].skipped,
           L[1].r.info[s].skipped);
}

/* 3. 2 learners vs 1, for (batch_pairs, grad_accum) = (5, 1): steps of 5, 5, 1 pairs
 * (slices 2 + 3, and 0 + 1: learner 0 has no pair in the last step), and (2, 2): steps
 * of 4, 4, 3 (slices 2 + 2 and 1 + 2, micro-batches inside the slices); 3 replay
 * examples a step (slices 1 + 2), cycling over 5. */
static void test_dp(const srlm_pref_pair *p, const double *rc, const double *rr, const srlm_sft_data *d) {
  static const int cfgs[2][2] = {{5, 1}, {2, 2}};
  for (int c = 0; c < 2; c++) {
    srlm_pref_train_options o = base_options(d);
    o.batch_pairs = cfgs[c][0];
    o.grad_accum = cfgs[c][1];
    srlm_model *one = tiny_model();
    if (!one) return;
    const size_t n = srlm_model_num_params(one);
    rec r1;
    rec_init(&r1, one);
    o.on_step = rec_step;
    o.user = &r1;
    srlm_pref_summary s1;
    srlm_status st = srlm_pref_train(one, p, NP, rc, rr, &o, &s1);
    EXPECT(st == SRLM_OK, "one learner: %s", srlm_error_message());
    EXPECT_EQ_INT(r1.steps, 3);

    sim_dp sim;
    learner L[2];
    run_two(L, &sim, p, rc, rr, &o);
    char what[80];
    snprintf(what, sizeof what, "dp 2 learners, %d x %d", cfgs[c][0], cfgs[c][1]);
    learners_agree(what, L);
    EXPECT_EQ_INT(sim.reduces[0], 3);
    EXPECT_EQ_INT(sim.reduces[1], 3);
    for (int r = 0; r < 2; r++) {
      char w2[160];
      snprintf(w2, sizeof w2, "%s, learner %d vs 1", what, r);
      same_steps(w2, &r1, &L[r].r, 1e-6);
      EXPECT_EQ_INT(L[r].sum.steps, s1.steps);
      EXPECT_EQ_INT(L[r].sum.tokens, s1.tokens);
      EXPECT_EQ_INT(L[r].sum.pref.pairs, s1.pref.pairs);
    }
    char w3[160];
    snprintf(w3, sizeof w3, "%s step-1 weights vs 1", what);
    compare(w3, r1.w1, L[0].r.w1, n, 1e-6);
    snprintf(w3, sizeof w3, "%s step-3 weights vs 1", what);
    compare(w3, test_w(one), test_w(L[0].m), n, 1e-6);
    free_two(L, &sim);
    free(r1.w1);
    srlm_model_free(one);
  }
}

/* 4. A NaN reference log-prob on a pair of learner 1's slice of step 1: both learners
 * skip step 1 (weights as they were, counted), take steps 2 and 3 together, and match
 * one learner given the same NaN. */
static void test_nonfinite_skip(const srlm_pref_pair *p, const double *rc0, const double *rr, const srlm_sft_data *d) {
  srlm_pref_train_options o = base_options(d);
  o.batch_pairs = 5; /* step 1: pairs order[0..5), learner 1 has order[2..5) */
  int64_t order[NP];
  srlm_rng_permutation(NP, o.seed, SRLM_PREF_RNG_PURPOSE, 0, order);
  double rc[NP];
  memcpy(rc, rc0, sizeof rc);
  rc[order[3]] = NAN;

  srlm_model *one = tiny_model();
  if (!one) return;
  const size_t n = srlm_model_num_params(one);
  float *w0 = srlm_xmalloc(n * sizeof *w0);
  memcpy(w0, test_w(one), n * sizeof *w0);
  rec r1;
  rec_init(&r1, one);
  o.on_step = rec_step;
  o.user = &r1;
  srlm_pref_summary s1;
  srlm_status st = srlm_pref_train(one, p, NP, rc, rr, &o, &s1);
  EXPECT(st == SRLM_OK, "one learner: %s", srlm_error_message());
  EXPECT_EQ_INT(s1.skipped, 1);
  EXPECT_EQ_INT(r1.info[0].skipped, 1);
  EXPECT(memcmp(r1.w1, w0, n * sizeof *w0) == 0, "one learner stepped on a NaN loss");

  sim_dp sim;
  learner L[2];
  run_two(L, &sim, p, rc, rr, &o);
  for (int r = 0; r < 2; r++) {
    EXPECT_EQ_INT(L[r].r.steps, 3);
    EXPECT_EQ_INT(L[r].r.info[0].skipped, 1);
    EXPECT_EQ_INT(L[r].r.info[0].n_skipped, 1);
    EXPECT_EQ_INT(L[r].r.info[1].skipped, 0);
    EXPECT_EQ_INT(L[r].r.info[2].n_skipped, 1);
    EXPECT_EQ_INT(L[r].sum.skipped, 1);
    EXPECT(!isfinite(L[r].r.info[0].loss), "learner %d: step 1's loss %g should be non-finite", r, L[r].r.info[0].loss);
    EXPECT(memcmp(L[r].r.w1, w0, n * sizeof *w0) == 0, "learner %d stepped on a NaN loss", r);
    EXPECT(memcmp(test_w(L[r].m), w0, n * sizeof *w0) != 0, "learner %d never stepped after the skip", r);
  }
  learners_agree("NaN skip", L);
  for (int s = 0; s < 3; s++)
    EXPECT(L[0].r.info[s].replay_next == r1.info[s].replay_next,
           "NaN skip, step %d: learner 0's replay cursor %lld, one learner's %lld", s + 1,
           (long long)L[0].r.info[s].replay_next, (long long)r1.info[s].replay_next);
  compare("NaN skip: 2 learners' weights vs 1", test_w(one), test_w(L[0].m), n, 1e-6);
  free_two(L, &sim);
  free(r1.w1);
  free(w0);
  srlm_model_free(one);
}

int main(void) {
  srlm_pref_pair p[NP];
  srlm_sft_data d;
  double rc[NP], rr[NP];
  make_pairs(p);
  make_replay(&d);
  make_refs(p, rc, rr);
  test_grad(p, rc, rr, &d);
  test_grad_accum(p, rc, rr, &d);
  test_dp(p, rc, rr, &d);
  test_nonfinite_skip(p, rc, rr, &d);
  TEST_MAIN_END();
}
