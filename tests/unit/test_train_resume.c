/* train_resume: a trainer resumed inside an iteration (srlm_train_resume: start step,
 * AdamW moments and counters, the preference trainer's replay cursor, all as the
 * uninterrupted run's on_step saw them) ends with the uninterrupted run's weights and
 * reports its steps, bit for bit: srlm_pref_train (DPO + NLL term + replay, 2 epochs,
 * resumed before, at and after the epoch boundary) and srlm_grpo_train (beta > 0, old and
 * reference log-probs of the starting weights, resumed in either epoch); a resume with
 * the optimizer state or the replay cursor left out does not (so the checks can fail);
 * a resume with bad counters is an error naming them that changes nothing. */
#include <math.h>

#include "srlm/grpo.h"
#include "srlm/pairs.h"
#include "srlm/pref.h"
#include "model_host.h"
#include "test.h"
#include "tiny_model.h"

#define VOCAB 19
#define MAXLEN 8
#define MAXSTEPS 8

static srlm_model *tiny_model(void) { return tiny_model_with_vocab(VOCAB); }

/* ---- what a checkpoint would hold after each step ----------------------------------- */

typedef struct snap {
  float *w, *m, *v; /* (n) weights, AdamW moments */
  int64_t optim_step, optim_skipped, replay_next;
  double loss;
} snap;

typedef struct saver {
  srlm_model *model;
  size_t n;
  int64_t first, steps; /* the first step reported, steps reported */
  snap s[MAXSTEPS + 1]; /* s[k]: after step k */
} saver;

static void saver_init(saver *sv, srlm_model *model) {
  memset(sv, 0, sizeof *sv);
  sv->model = model;
  sv->n = srlm_model_num_params(model);
}

static void saver_free(saver *sv) {
  for (int k = 0; k <= MAXSTEPS; k++) {
    free(sv->s[k].w);
    free(sv->s[k].m);
    free(sv->s[k].v);
  }
}

static srlm_status save(saver *sv, int64_t step, srlm_optim *optim, int64_t replay_next, double loss) {
  if (step < 1 || step > MAXSTEPS) return srlm_error(SRLM_ERR_INTERNAL, "save", "step %lld", (long long)step);
  if (sv->steps == 0) sv->first = step;
  if (step != sv->first + sv->steps)
    return srlm_error(SRLM_ERR_INTERNAL, "save", "step %lld after %lld from %lld", (long long)step,
                      (long long)sv->steps, (long long)sv->first);
  sv->steps++;
  srlm_optim_state os;
  srlm_optim_get_state(optim, &os);
  if (os.n != sv->n) return srlm_error(SRLM_ERR_INTERNAL, "save", "optimizer of %zu elements", os.n);
  snap *s = &sv->s[step];
  s->w = srlm_xmalloc(sv->n * sizeof(float));
  s->m = srlm_xmalloc(sv->n * sizeof(float));
  s->v = srlm_xmalloc(sv->n * sizeof(float));
  memcpy(s->w, test_w(sv->model), sv->n * sizeof(float));
  memcpy(s->m, os.m, sv->n * sizeof(float));
  memcpy(s->v, os.v, sv->n * sizeof(float));
  s->optim_step = os.step;
  s->optim_skipped = os.n_skipped;
  s->replay_next = replay_next;
  s->loss = loss;
  return SRLM_OK;
}

static srlm_status pref_save(const srlm_pref_step_info *info, void *user) {
  return save(user, info->step, info->optim, info->replay_next, info->loss);
}

static srlm_status grpo_save(const srlm_grpo_step_info *info, void *user) {
  return save(user, info->step, info->optim, -1, info->loss);
}

static srlm_train_resume resume_at(const saver *sv, int64_t s) {
  const snap *k = &sv->s[s];
  return (srlm_train_resume){.start_step = s, .m = k->m, .v = k->v, .n = sv->n, .optim_step = k->optim_step,
                             .optim_skipped = k->optim_skipped, .replay_next = k->replay_next};
}

/* The resumed run (rs, from step s + 1) against the uninterrupted one (all): the same
 * steps, losses, cursors, optimizer states and final weights, bit for bit. */
static void same_as_uninterrupted(const char *what, int64_t s, const saver *all, const saver *rs, srlm_model *m) {
  const size_t n = all->n;
  const int64_t N = all->steps;
  EXPECT(rs->first == s + 1 && rs->steps == N - s, "%s from %lld: reported steps %lld.. (%lld of them), expected "
         "%lld..%lld", what, (long long)s, (long long)rs->first, (long long)rs->steps, (long long)s + 1, (long long)N);
  for (int64_t k = s + 1; k <= N && rs->steps == N - s; k++) {
    const snap *a = &all->s[k], *b = &rs->s[k];
    EXPECT(memcmp(&a->loss, &b->loss, sizeof a->loss) == 0 && a->replay_next == b->replay_next &&
               a->optim_step == b->optim_step && a->optim_skipped == b->optim_skipped,
           "%s from %lld, step %lld: loss %.17g vs %.17g, replay cursor %lld vs %lld, optimizer step %lld vs %lld",
           what, (long long)s, (long long)k, a->loss, b->loss, (long long)a->replay_next, (long long)b->replay_next,
           (long long)a->optim_step, (long long)b->optim_step);
    EXPECT(memcmp(a->m, b->m, n * sizeof(float)) == 0 && memcmp(a->v, b->v, n * sizeof(float)) == 0,
           "%s from %lld, step %lld: AdamW moments differ", what, (long long)s, (long long)k);
  }
  const float *w = test_w(m), *want = all->s[N].w;
  size_t bad = 0, first_bad = n;
  double dmax = 0;
  for (size_t i = 0; i < n; i++)
    if (memcmp(&w[i], &want[i], sizeof(float)) != 0) {
      if (!bad++) first_bad = i;
      dmax = fmax(dmax, fabs((double)w[i] - want[i]));
    }
  EXPECT(bad == 0, "%s from %lld: %zu of %zu final weights differ (first %zu: %.9g vs %.9g; max |diff| %.3g)", what,
         (long long)s, bad, n, first_bad, bad ? w[first_bad] : 0.0, bad ? want[first_bad] : 0.0, dmax);
  fprintf(stderr, "%s resumed after step %lld of %lld: %zu weights differ\n", what, (long long)s, (long long)N, bad);
}

/* Final weights that must differ from all's (a resume missing part of the state). */
static void differs(const char *what, const saver *all, srlm_model *m) {
  EXPECT(memcmp(test_w(m), all->s[all->steps].w, all->n * sizeof(float)) != 0,
         "%s: the final weights are the uninterrupted run's, so the check above could not fail", what);
}

/* A fresh model set to the weights after step s. */
static srlm_model *model_at(const saver *sv, int64_t s) {
  srlm_model *m = tiny_model();
  if (m) memcpy(test_w(m), sv->s[s].w, sv->n * sizeof(float));
  return m;
}

/* ---- preference training -------------------------------------------------------------- */

#define NP 11
#define NR 5

static int32_t g_prompt[NP][MAXLEN], g_chosen[NP][MAXLEN], g_rejected[NP][MAXLEN];
static int64_t g_roff[NR + 1];
static int32_t g_rids[NR * MAXLEN], g_rtargets[NR * MAXLEN], g_rnt[NR];

static void make_pairs(srlm_pref_pair *p) {
  for (int i = 0; i < NP; i++) {
    srlm_philox_out len = srlm_rng_bits(31, 1, (uint32_t)i, 0, 0);
    const int np = 2 + (int)(len.v[0] % 4), nc = 1 + (int)(len.v[1] % 5), nr = 1 + (int)(len.v[2] % 5);
    for (int t = 0; t < MAXLEN; t++) {
      srlm_philox_out b = srlm_rng_bits(31, 2, (uint32_t)i, (uint32_t)t, 0);
      g_prompt[i][t] = 2 + (int32_t)(b.v[0] % 17);
      g_chosen[i][t] = t == nc - 1 && nc > 2 ? 0 : 2 + (int32_t)(b.v[1] % 17);
      g_rejected[i][t] = t == nr - 1 && nr > 2 ? 0 : 2 + (int32_t)(b.v[2] % 17);
    }
    p[i] = (srlm_pref_pair){g_prompt[i], g_chosen[i], g_rejected[i], np, nc, nr};
  }
}

/* Replay examples laid out as srlm_sft_data_load does: prompt tokens without targets,
 * answer tokens predicted from the position before each. */
static void make_replay(srlm_sft_data *d) {
  memset(d, 0, sizeof *d);
  int64_t at = 0, targets = 0, longest = 0;
  for (int i = 0; i < NR; i++) {
    srlm_philox_out len = srlm_rng_bits(31, 3, (uint32_t)i, 0, 0);
    const int np = 2 + (int)(len.v[0] % 2), T = np + 2 + (int)(len.v[1] % 4);
    g_roff[i] = at;
    for (int t = 0; t < T; t++) g_rids[at + t] = 2 + (int32_t)(srlm_rng_bits(31, 4, (uint32_t)i, (uint32_t)t, 0).v[0] % 17);
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
  *d = (srlm_sft_data){.n = NR, .offsets = g_roff, .ids = g_rids, .targets = g_rtargets, .n_targets_of = g_rnt,
                       .n_tokens = at, .n_targets = targets, .max_seq = longest};
}

/* 2 epochs of 3 steps (4, 4, 3 pairs as 2 micro-batches), 2 replay examples a step
 * (the cursor wraps), warmup then cosine decay, weight decay and clipping on. */
static srlm_pref_train_options pref_options(const srlm_sft_data *d) {
  srlm_pref_train_options o = {.batch_pairs = 2, .grad_accum = 2, .epochs = 2, .seed = 9};
  o.loss = (srlm_pref_options){.kind = SRLM_PREF_DPO, .beta = 0.5, .nll_weight = 0.7};
  o.optim = (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01, .grad_clip = 1.0};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_COSINE, .lr = 3e-3, .min_lr = 3e-4, .warmup_steps = 1};
  o.replay = d;
  o.replay_batch = 2;
  o.replay_weight = 0.4;
  return o;
}

static void test_pref_resume(void) {
  srlm_pref_pair p[NP];
  srlm_sft_data d;
  double rc[NP], rr[NP];
  make_pairs(p);
  make_replay(&d);
  srlm_model *m = tiny_model();
  if (!m) return;
  EXPECT_EQ_INT(srlm_pref_ref_logps(m, p, NP, 64, rc, rr), SRLM_OK);
  for (int i = 0; i < NP; i++) rc[i] += 0.3 * ((i % 3) - 1); /* margins not all zero at the first step */
  saver all;
  saver_init(&all, m);
  float *w0 = srlm_xmalloc(all.n * sizeof *w0);
  memcpy(w0, test_w(m), all.n * sizeof *w0);
  srlm_pref_train_options o = pref_options(&d);
  o.on_step = pref_save;
  o.user = &all;
  srlm_pref_summary sum;
  srlm_status st = srlm_pref_train(m, p, NP, rc, rr, &o, &sum);
  EXPECT(st == SRLM_OK, "pref uninterrupted: %s", srlm_error_message());
  EXPECT_EQ_INT(all.steps, 6);
  EXPECT_EQ_INT(sum.skipped, 0);
  EXPECT_EQ_INT(all.s[3].replay_next, 1); /* 2, 4, 1: wrapped inside the first epoch */
  if (all.steps != 6) {
    saver_free(&all);
    free(w0);
    srlm_model_free(m);
    return;
  }

  /* after step 2 (the resumed part crosses into epoch 2), 3 (the boundary), 4 */
  static const int64_t starts[] = {2, 3, 4};
  for (size_t k = 0; k < sizeof starts / sizeof starts[0]; k++) {
    const int64_t s = starts[k];
    srlm_model *mr = model_at(&all, s);
    if (!mr) break;
    saver rs;
    saver_init(&rs, mr);
    const srlm_train_resume res = resume_at(&all, s);
    srlm_pref_train_options ro = pref_options(&d);
    ro.on_step = pref_save;
    ro.user = &rs;
    ro.resume = &res;
    srlm_pref_summary rsum;
    st = srlm_pref_train(mr, p, NP, rc, rr, &ro, &rsum);
    EXPECT(st == SRLM_OK, "pref resumed after step %lld: %s", (long long)s, srlm_error_message());
    EXPECT_EQ_INT(rsum.steps, 6);
    EXPECT(memcmp(&rsum.first_loss, &all.s[s + 1].loss, sizeof(double)) == 0 &&
               memcmp(&rsum.last_loss, &sum.last_loss, sizeof(double)) == 0,
           "pref resumed after step %lld: first loss %.17g (want %.17g), last %.17g (want %.17g)", (long long)s,
           rsum.first_loss, all.s[s + 1].loss, rsum.last_loss, sum.last_loss);
    same_as_uninterrupted("pref", s, &all, &rs, mr);
    saver_free(&rs);
    srlm_model_free(mr);
  }

  /* the same resume without the AdamW state, or without the replay cursor, ends elsewhere */
  const int64_t s = 2;
  const size_t n = all.n;
  float *zero = calloc(n, sizeof *zero);
  srlm_train_resume no_optim = resume_at(&all, s);
  no_optim.m = no_optim.v = zero;
  no_optim.optim_step = 0;
  srlm_train_resume no_cursor = resume_at(&all, s);
  no_cursor.replay_next = 0;
  const srlm_train_resume *partial[2] = {&no_optim, &no_cursor};
  const char *names[2] = {"pref resume without the AdamW state", "pref resume without the replay cursor"};
  for (int k = 0; k < 2; k++) {
    srlm_model *mr = model_at(&all, s);
    if (!mr) break;
    srlm_pref_train_options ro = pref_options(&d);
    ro.resume = partial[k];
    st = srlm_pref_train(mr, p, NP, rc, rr, &ro, NULL);
    EXPECT(st == SRLM_OK, "%s: %s", names[k], srlm_error_message());
    differs(names[k], &all, mr);
    srlm_model_free(mr);
  }

  /* bad counters: an error naming them, the weights untouched */
  memcpy(test_w(m), w0, n * sizeof *w0);
  srlm_train_resume bad = resume_at(&all, s);
  bad.optim_step = -1;
  srlm_pref_train_options ro = pref_options(&d);
  ro.resume = &bad;
  st = srlm_pref_train(m, p, NP, rc, rr, &ro, NULL);
  EXPECT(st != SRLM_OK, "pref: a resume with optimizer step -1 was accepted");
  EXPECT_CONTAINS(srlm_error_message(), "negative counters (optimizer step -1");
  EXPECT(memcmp(test_w(m), w0, n * sizeof *w0) == 0, "pref: a rejected resume changed the weights");
  /* a saved state of another size (a checkpoint of another model): an error, no copy */
  srlm_train_resume wrong = resume_at(&all, s);
  wrong.n = n - 1;
  ro.resume = &wrong;
  st = srlm_pref_train(m, p, NP, rc, rr, &ro, NULL);
  EXPECT(st != SRLM_OK, "pref: a resume with %zu moments for %zu parameters was accepted", n - 1, n);
  EXPECT_CONTAINS(srlm_error_message(), "the saved AdamW state has");
  EXPECT(memcmp(test_w(m), w0, n * sizeof *w0) == 0, "pref: a rejected resume changed the weights");
  srlm_train_resume late = resume_at(&all, s);
  late.start_step = 1000;
  ro.resume = &late;
  st = srlm_pref_train(m, p, NP, rc, rr, &ro, NULL);
  EXPECT(st != SRLM_OK, "pref: a resume at step 1000 of a shorter run was accepted");
  EXPECT_CONTAINS(srlm_error_message(), "start step 1000 outside");
  free(zero);
  free(w0);
  saver_free(&all);
  srlm_model_free(m);
}

/* ---- GRPO ------------------------------------------------------------------------ */

#define NG 7
#define G 4
#define NS (NG * G)

static int32_t g_sprompt[NS][MAXLEN], g_resp[NS][MAXLEN];
static double g_reward[NS];

static void make_seqs(srlm_grpo_seq *s) {
  for (int i = 0; i < NS; i++) {
    const int grp = i / G;
    const int np = 2 + (int)(srlm_rng_bits(33, 1, (uint32_t)grp, 0, 0).v[0] % 5);
    const int nr = 1 + (int)(srlm_rng_bits(33, 2, (uint32_t)i, 0, 0).v[0] % 6);
    for (int t = 0; t < np; t++) g_sprompt[i][t] = 2 + (int32_t)(srlm_rng_bits(33, 3, (uint32_t)grp, (uint32_t)t, 0).v[0] % 17);
    int even = 0;
    for (int t = 0; t < nr; t++) {
      g_resp[i][t] = t == nr - 1 && nr > 3 ? 0 : 2 + (int32_t)(srlm_rng_bits(33, 4, (uint32_t)i, (uint32_t)t, 0).v[0] % 17);
      even += g_resp[i][t] % 2 == 0;
    }
    g_reward[i] = (double)even / nr;
    s[i] = (srlm_grpo_seq){.prompt = g_sprompt[i], .response = g_resp[i], .prompt_len = np, .response_len = nr};
  }
}

/* 2 epochs of 4 steps (2, 2, 2, 1 groups as 2 micro-batches of 1 group), KL to the
 * reference on, warmup then linear decay, weight decay and clipping on. */
static srlm_grpo_train_options grpo_options(void) {
  srlm_grpo_train_options o = {.batch_groups = 1, .grad_accum = 2, .epochs = 2, .seed = 4};
  o.loss = (srlm_grpo_options){.clip_eps = 0.2, .beta = 0.1, .agg = SRLM_GRPO_AGG_SEQ_MEAN};
  o.optim = (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01, .grad_clip = 1.0};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_LINEAR, .lr = 3e-3, .min_lr = 0, .warmup_steps = 1};
  return o;
}

static void test_grpo_resume(void) {
  srlm_grpo_seq seqs[NS];
  make_seqs(seqs);
  double adv[NS];
  srlm_group_options go = {.use_std = 1, .eps = SRLM_GROUP_STD_EPS};
  EXPECT_EQ_INT(srlm_group_advantages(&go, NG, G, g_reward, adv, NULL), SRLM_OK);
  int64_t off[NS + 1];
  const int64_t N = srlm_grpo_offsets(seqs, NS, off);
  srlm_model *m = tiny_model();
  if (!m) return;
  float *lp = srlm_xmalloc((size_t)N * sizeof *lp);
  EXPECT_EQ_INT(srlm_grpo_logps(m, seqs, NS, 64, lp), SRLM_OK); /* M_t: pi_old and pi_ref */
  saver all;
  saver_init(&all, m);
  const size_t n = all.n;
  float *w0 = srlm_xmalloc(n * sizeof *w0);
  memcpy(w0, test_w(m), n * sizeof *w0);
  srlm_grpo_train_options o = grpo_options();
  o.on_step = grpo_save;
  o.user = &all;
  srlm_grpo_summary sum;
  srlm_status st = srlm_grpo_train(m, seqs, NG, G, adv, lp, lp, &o, &sum);
  EXPECT(st == SRLM_OK, "grpo uninterrupted: %s", srlm_error_message());
  EXPECT_EQ_INT(all.steps, 8);
  EXPECT_EQ_INT(sum.skipped, 0);
  if (all.steps == 8) {
    static const int64_t starts[] = {3, 4, 6};
    for (size_t k = 0; k < sizeof starts / sizeof starts[0]; k++) {
      const int64_t s = starts[k];
      srlm_model *mr = model_at(&all, s);
      if (!mr) break;
      saver rs;
      saver_init(&rs, mr);
      const srlm_train_resume res = resume_at(&all, s);
      srlm_grpo_train_options ro = grpo_options();
      ro.on_step = grpo_save;
      ro.user = &rs;
      ro.resume = &res;
      srlm_grpo_summary rsum;
      st = srlm_grpo_train(mr, seqs, NG, G, adv, lp, lp, &ro, &rsum);
      EXPECT(st == SRLM_OK, "grpo resumed after step %lld: %s", (long long)s, srlm_error_message());
      EXPECT_EQ_INT(rsum.steps, 8);
      EXPECT(memcmp(&rsum.first_loss, &all.s[s + 1].loss, sizeof(double)) == 0,
             "grpo resumed after step %lld: first loss %.17g, want %.17g", (long long)s, rsum.first_loss,
             all.s[s + 1].loss);
      same_as_uninterrupted("grpo", s, &all, &rs, mr);
      saver_free(&rs);
      srlm_model_free(mr);
    }
    float *zero = calloc(n, sizeof *zero);
    srlm_train_resume no_optim = resume_at(&all, 5);
    no_optim.m = no_optim.v = zero;
    no_optim.optim_step = 0;
    srlm_model *mr = model_at(&all, 5);
    if (mr) {
      srlm_grpo_train_options ro = grpo_options();
      ro.resume = &no_optim;
      st = srlm_grpo_train(mr, seqs, NG, G, adv, lp, lp, &ro, NULL);
      EXPECT(st == SRLM_OK, "grpo resume without the AdamW state: %s", srlm_error_message());
      differs("grpo resume without the AdamW state", &all, mr);
      srlm_model_free(mr);
    }
    memcpy(test_w(m), w0, n * sizeof *w0);
    srlm_train_resume bad = resume_at(&all, 5);
    bad.optim_skipped = -2;
    srlm_grpo_train_options ro = grpo_options();
    ro.resume = &bad;
    st = srlm_grpo_train(m, seqs, NG, G, adv, lp, lp, &ro, NULL);
    EXPECT(st != SRLM_OK, "grpo: a resume with skip count -2 was accepted");
    EXPECT_CONTAINS(srlm_error_message(), "skipped -2");
    EXPECT(memcmp(test_w(m), w0, n * sizeof *w0) == 0, "grpo: a rejected resume changed the weights");
    free(zero);
  }
  free(w0);
  free(lp);
  saver_free(&all);
  srlm_model_free(m);
}

int main(void) {
  test_pref_resume();
  test_grpo_resume();
  TEST_MAIN_END();
}
