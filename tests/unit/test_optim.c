/* Optimizer tests: AdamW against a float64 reference of torch.optim.AdamW's formulas
 * over several steps (weight decay on and off per range, bias correction, changing lr),
 * the closed form of the first step, global-norm clipping (value, determinism across
 * thread counts), the schedules at their key steps, the non-finite skip leaving every
 * bit of the state alone, state save/restore continuing bit for bit, the decay mask,
 * and the errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "srlm/optim.h"
#include "test.h"
#include "sim_dp.h"

#define N 12

/* torch.optim.AdamW for one element in float64. */
typedef struct ref_state {
  double p[N], m[N], v[N];
  int decay[N];
  int64_t t;
} ref_state;

static void ref_step(ref_state *r, const double *g, double lr, const srlm_optim_config *c, double clip) {
  double norm = 0;
  for (int i = 0; i < N; i++) norm += g[i] * g[i];
  norm = sqrt(norm);
  double scale = clip > 0 && clip / (norm + 1e-6) < 1 ? clip / (norm + 1e-6) : 1.0;
  r->t++;
  double bc1 = 1 - pow(c->beta1, (double)r->t), bc2 = 1 - pow(c->beta2, (double)r->t);
  for (int i = 0; i < N; i++) {
    double gi = g[i] * scale;
    if (r->decay[i]) r->p[i] *= 1 - lr * c->weight_decay;
    r->m[i] = c->beta1 * r->m[i] + (1 - c->beta1) * gi;
    r->v[i] = c->beta2 * r->v[i] + (1 - c->beta2) * gi * gi;
    r->p[i] -= lr / bc1 * r->m[i] / (sqrt(r->v[i]) / sqrt(bc2) + c->eps);
  }
}

static srlm_optim_config default_cfg(void) {
  return (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1, .grad_clip = 0};
}

/* Several steps with decay off on [3, 7), against the float64 reference. A large eps
 * (1e-3) makes its placement visible: added before the bias correction of sqrt(v)
 * instead of after, the first update would change by about 10%. fp32 keeps
 * about 7 digits; each step rounds p, m, v a few times, so after 6 steps on parameters
 * of size ~1 the float result sits within 1e-6 of the exact one. */
static void test_adamw_reference(double clip, double eps) {
  srlm_optim_config c = default_cfg();
  c.grad_clip = clip;
  c.eps = eps;
  srlm_optim *o;
  srlm_status st = srlm_optim_create(srlm_backend_cpu(), N, &c, &o);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  EXPECT(srlm_optim_set_decay(o, 3, 4, 0) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(srlm_optim_decayed_count(o), N - 4);
  ref_state r = {.t = 0};
  float p[N], g[N];
  for (int i = 0; i < N; i++) {
    p[i] = (float)(0.5 - 0.09 * i);
    r.p[i] = p[i];
    r.decay[i] = !(i >= 3 && i < 7);
  }
  const double lrs[] = {1e-3, 5e-2, 2e-2, 2e-2, 1e-2, 0.0};
  double max_err = 0;
  for (int s = 0; s < 6; s++) {
    double gd[N];
    for (int i = 0; i < N; i++) {
      g[i] = (float)(sin(1.0 + 0.7 * i + 1.3 * s) * (i % 3 + 1) * 0.3);
      gd[i] = g[i];
    }
    srlm_optim_stats os;
    EXPECT(srlm_optim_step(o, p, g, lrs[s], &os) == SRLM_OK, "%s", srlm_error_message());
    ref_step(&r, gd, lrs[s], &c, clip);
    EXPECT_EQ_INT(os.step, s + 1);
    EXPECT_EQ_INT(os.skipped, 0);
    for (int i = 0; i < N; i++) {
      double e = fabs(p[i] - r.p[i]);
      if (e > max_err) max_err = e;
    }
  }
  srlm_optim_state state;
  srlm_optim_get_state(o, &state);
  double max_mv = 0;
  for (int i = 0; i < N; i++) {
    max_mv = fmax(max_mv, fabs(state.m[i] - r.m[i]));
    max_mv = fmax(max_mv, fabs(state.v[i] - r.v[i]));
  }
  fprintf(stderr, "adamw vs float64 reference (clip %g, eps %g): max |p - p_ref| = %.3g, max |m,v - ref| = %.3g\n",
          clip, eps, max_err, max_mv);
  EXPECT(max_err <= 1e-6, "params differ from the float64 reference by %.3g", max_err);
  EXPECT(max_mv <= 1e-6, "moments differ from the float64 reference by %.3g", max_mv);
  srlm_optim_free(o);
}

/* First step by hand: m = (1-b1) g, v = (1-b2) g^2, so after bias correction the update
 * is lr * g / (|g| + eps), and decay multiplies p by (1 - lr wd) first. */
static void test_first_step_closed_form(void) {
  srlm_optim_config c = default_cfg();
  c.weight_decay = 0.5;
  srlm_optim *o;
  EXPECT(srlm_optim_create(srlm_backend_cpu(), 2, &c, &o) == SRLM_OK, "%s", srlm_error_message());
  float p[2] = {2.0f, -1.0f}, g[2] = {0.25f, -4.0f};
  const double lr = 0.1;
  EXPECT(srlm_optim_step(o, p, g, lr, NULL) == SRLM_OK, "%s", srlm_error_message());
  double want0 = 2.0 * (1 - 0.05) - 0.1 * 0.25 / (0.25 + 1e-8);
  double want1 = -1.0 * (1 - 0.05) - 0.1 * -4.0 / (4.0 + 1e-8);
  EXPECT_NEAR(p[0], want0, 2e-7);
  EXPECT_NEAR(p[1], want1, 2e-7);
  srlm_optim_free(o);
}

static void test_zero_grad_decay_only(void) {
  /* With g = 0 the Adam part is 0 / (0 + eps) = 0: only decayed elements move. */
  srlm_optim_config c = default_cfg();
  srlm_optim *o;
  EXPECT(srlm_optim_create(srlm_backend_cpu(), 6, &c, &o) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_optim_set_decay(o, 1, 2, 0) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_optim_set_decay(o, 4, 1, 0) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_optim_set_decay(o, 2, 1, 1) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(srlm_optim_decayed_count(o), 4);
  float p[6] = {1, 1, 1, 1, 1, 1}, g[6] = {0};
  EXPECT(srlm_optim_step(o, p, g, 0.5, NULL) == SRLM_OK, "%s", srlm_error_message());
  const float want[6] = {0.95f, 1, 0.95f, 0.95f, 1, 0.95f};
  for (int i = 0; i < 6; i++) EXPECT(p[i] == want[i], "p[%d] = %.9g, expected %.9g", i, p[i], want[i]);
  EXPECT(srlm_optim_set_decay(o, 5, 2, 0) == SRLM_ERR_RANGE, "range past the end accepted");
  EXPECT_CONTAINS(srlm_error_message(), "outside the 6 parameters");
  srlm_optim_free(o);
}

static void test_clipping(void) {
  srlm_optim_config c = default_cfg();
  c.grad_clip = 1.0;
  c.weight_decay = 0;
  srlm_optim *o;
  EXPECT(srlm_optim_create(srlm_backend_cpu(), 2, &c, &o) == SRLM_OK, "%s", srlm_error_message());
  float p[2] = {0, 0}, g[2] = {3, 4};
  srlm_optim_stats s;
  EXPECT(srlm_optim_step(o, p, g, 0.1, &s) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(s.grad_norm == 5.0, "grad norm %.17g, expected 5", s.grad_norm);
  EXPECT_NEAR(s.clip_scale, 1.0 / (5.0 + 1e-6), 1e-15);
  EXPECT(g[0] == 3 && g[1] == 4, "the gradients were modified: %g %g", g[0], g[1]);
  srlm_optim_state st;
  srlm_optim_get_state(o, &st);
  EXPECT_NEAR(st.m[0], 0.1 * 3 / (5 + 1e-6), 1e-8);
  EXPECT_NEAR(st.v[1], 0.001 * 16 / ((5 + 1e-6) * (5 + 1e-6)), 1e-10);
  /* under the limit: no scaling */
  float g2[2] = {0.3f, 0.4f};
  EXPECT(srlm_optim_step(o, p, g2, 0.1, &s) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(s.clip_scale == 1.0, "clip scale %.17g for norm %.17g under the limit", s.clip_scale, s.grad_norm);
  srlm_optim_free(o);
}

static void test_norm_deterministic(void) {
  /* Several chunks, values over many magnitudes, so a different summation order would
   * change low bits. */
  size_t n = (1u << 18) + 12345;
  float *x = malloc(n * sizeof *x);
  double ref = 0;
  for (size_t i = 0; i < n; i++) {
    x[i] = (float)(sin((double)i * 0.37) * pow(10.0, (double)(i % 7) - 3));
    ref += (double)x[i] * x[i];
  }
  ref = sqrt(ref);
  double a = srlm_optim_global_norm(x, n);
  EXPECT(fabs(a - ref) <= 1e-12 * ref, "norm %.17g, plain double sum %.17g", a, ref);
#ifdef _OPENMP
  int nt = omp_get_max_threads();
  double per[3];
  const int threads[3] = {1, 2, 3};
  for (int k = 0; k < 3; k++) {
    omp_set_num_threads(threads[k]);
    per[k] = srlm_optim_global_norm(x, n);
  }
  omp_set_num_threads(nt);
  for (int k = 0; k < 3; k++)
    EXPECT(per[k] == a, "norm with %d threads %.17g differs from %.17g", threads[k], per[k], a);
#endif
  free(x);
}

static void test_nonfinite_skip(void) {
  const float bad[2] = {NAN, INFINITY};
  for (int k = 0; k < 2; k++) {
    srlm_optim_config c = default_cfg();
    c.grad_clip = 1.0;
    srlm_optim *o, *fresh;
    EXPECT(srlm_optim_create(srlm_backend_cpu(), N, &c, &o) == SRLM_OK, "%s", srlm_error_message());
    EXPECT(srlm_optim_create(srlm_backend_cpu(), N, &c, &fresh) == SRLM_OK, "%s", srlm_error_message());
    float p[N], p2[N], g[N], before_p[N], before_m[N], before_v[N];
    for (int i = 0; i < N; i++) {
      p[i] = p2[i] = (float)i * 0.1f;
      g[i] = (float)(i - 5) * 0.01f;
    }
    srlm_optim_state s;
    srlm_optim_get_state(o, &s);
    memcpy(before_p, p, sizeof p);
    memcpy(before_m, s.m, sizeof before_m);
    memcpy(before_v, s.v, sizeof before_v);
    float gbad[N];
    memcpy(gbad, g, sizeof g);
    gbad[7] = bad[k];
    srlm_optim_stats os;
    EXPECT(srlm_optim_step(o, p, gbad, 0.01, &os) == SRLM_OK, "%s", srlm_error_message());
    EXPECT_EQ_INT(os.skipped, 1);
    EXPECT_EQ_INT(os.step, 0);
    EXPECT_EQ_INT(os.n_skipped, 1);
    EXPECT(!isfinite(os.grad_norm), "grad norm %g reported finite", os.grad_norm);
    EXPECT(!memcmp(p, before_p, sizeof p), "a skipped step changed the parameters");
    EXPECT(!memcmp(s.m, before_m, sizeof before_m), "a skipped step changed m");
    EXPECT(!memcmp(s.v, before_v, sizeof before_v), "a skipped step changed v");
    /* the next good step is step 1 (bias correction t = 1), as on a fresh optimizer */
    EXPECT(srlm_optim_step(o, p, g, 0.01, &os) == SRLM_OK, "%s", srlm_error_message());
    EXPECT(srlm_optim_step(fresh, p2, g, 0.01, NULL) == SRLM_OK, "%s", srlm_error_message());
    EXPECT_EQ_INT(os.step, 1);
    EXPECT(!memcmp(p, p2, sizeof p), "after a skip the step differs from a fresh optimizer's first step");
    srlm_optim_free(o);
    srlm_optim_free(fresh);
  }
}

static void test_state_restore(void) {
  srlm_optim_config c = default_cfg();
  srlm_optim *a, *b;
  EXPECT(srlm_optim_create(srlm_backend_cpu(), N, &c, &a) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_optim_create(srlm_backend_cpu(), N, &c, &b) == SRLM_OK, "%s", srlm_error_message());
  float pa[N], pb[N], g[N];
  for (int i = 0; i < N; i++) pa[i] = (float)cos(i);
  for (int s = 0; s < 3; s++) {
    for (int i = 0; i < N; i++) g[i] = (float)sin(i * 1.1 + s);
    EXPECT(srlm_optim_step(a, pa, g, 0.01, NULL) == SRLM_OK, "%s", srlm_error_message());
  }
  srlm_optim_state sa;
  srlm_optim_get_state(a, &sa);
  EXPECT_EQ_INT(sa.step, 3);
  memcpy(pb, pa, sizeof pa);
  EXPECT(srlm_optim_set_state(b, sa.m, sa.v, sa.n, sa.step, sa.n_skipped) == SRLM_OK, "%s", srlm_error_message());
  for (int s = 0; s < 3; s++) {
    for (int i = 0; i < N; i++) g[i] = (float)cos(i * 0.3 + s);
    EXPECT(srlm_optim_step(a, pa, g, 0.02, NULL) == SRLM_OK, "%s", srlm_error_message());
    EXPECT(srlm_optim_step(b, pb, g, 0.02, NULL) == SRLM_OK, "%s", srlm_error_message());
  }
  EXPECT(!memcmp(pa, pb, sizeof pa), "restored optimizer does not continue bit for bit");
  EXPECT(srlm_optim_set_state(b, sa.m, sa.v, N - 1, 1, 0) == SRLM_ERR_RANGE, "size mismatch accepted");
  EXPECT_CONTAINS(srlm_error_message(), "state has 11 elements, the optimizer 12");
  srlm_optim_free(a);
  srlm_optim_free(b);
}

static void test_errors(void) {
  srlm_optim *o;
  srlm_optim_config c = default_cfg();
  c.beta2 = 1.0;
  EXPECT(srlm_optim_create(srlm_backend_cpu(), 4, &c, &o) == SRLM_ERR_CONFIG, "beta2 = 1 accepted");
  EXPECT_CONTAINS(srlm_error_message(), "train.adam_beta2");
  c = default_cfg();
  c.eps = 0;
  EXPECT(srlm_optim_create(srlm_backend_cpu(), 4, &c, &o) == SRLM_ERR_CONFIG, "eps = 0 accepted");
  EXPECT_CONTAINS(srlm_error_message(), "train.adam_eps");
  c = default_cfg();
  EXPECT(srlm_optim_create(srlm_backend_cpu(), 4, &c, &o) == SRLM_OK, "%s", srlm_error_message());
  float p[4] = {0}, g[4] = {0};
  EXPECT(srlm_optim_step(o, p, g, NAN, NULL) == SRLM_ERR_RANGE, "NaN learning rate accepted");
  srlm_optim_free(o);

  srlm_config cfg;
  srlm_config_init(&cfg);
  srlm_optim_config fc;
  srlm_optim_config_from_config(&cfg, &fc);
  EXPECT(fc.beta1 == cfg.train.adam_beta1 && fc.beta2 == cfg.train.adam_beta2 && fc.eps == cfg.train.adam_eps &&
             fc.weight_decay == cfg.train.weight_decay && fc.grad_clip == cfg.train.grad_clip && fc.decay_1d == 0,
         "optimizer options do not mirror the config");
  srlm_config_free(&cfg);
}

static void test_schedules(void) {
  const double lr = 1e-3, mn = 1e-4;
  /* W = 10, S = 110: the decay spans 100 steps, its middle is step 60. */
  srlm_lr_schedule s = {.kind = SRLM_CFG_LR_CONSTANT, .lr = lr, .min_lr = mn, .warmup_steps = 10, .total_steps = 110};
  EXPECT(srlm_lr_schedule_check(&s) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_lr_at(&s, 0) == 0.0, "constant warmup start %g", srlm_lr_at(&s, 0));
  EXPECT_NEAR(srlm_lr_at(&s, 5), lr / 2, 1e-18);
  EXPECT_NEAR(srlm_lr_at(&s, 10), lr, 1e-18);
  EXPECT_NEAR(srlm_lr_at(&s, 109), lr, 1e-18);

  s.kind = SRLM_CFG_LR_LINEAR;
  EXPECT(srlm_lr_at(&s, 0) == 0.0, "linear warmup start %g", srlm_lr_at(&s, 0));
  EXPECT_NEAR(srlm_lr_at(&s, 1), lr / 10, 1e-18);
  EXPECT_NEAR(srlm_lr_at(&s, 10), lr, 1e-18);
  EXPECT_NEAR(srlm_lr_at(&s, 60), mn + (lr - mn) * 0.5, 1e-18);
  EXPECT_NEAR(srlm_lr_at(&s, 85), mn + (lr - mn) * 0.25, 1e-18);
  EXPECT_NEAR(srlm_lr_at(&s, 110), mn, 1e-18);
  EXPECT_NEAR(srlm_lr_at(&s, 500), mn, 1e-18);

  s.kind = SRLM_CFG_LR_COSINE;
  EXPECT(srlm_lr_at(&s, 0) == 0.0, "cosine warmup start %g", srlm_lr_at(&s, 0));
  EXPECT_NEAR(srlm_lr_at(&s, 10), lr, 1e-18);
  EXPECT_NEAR(srlm_lr_at(&s, 35), mn + (lr - mn) * 0.5 * (1 + cos(M_PI * 0.25)), 1e-18);
  EXPECT_NEAR(srlm_lr_at(&s, 60), (lr + mn) / 2, 1e-18);
  EXPECT_NEAR(srlm_lr_at(&s, 110), mn, 1e-18);
  EXPECT_NEAR(srlm_lr_at(&s, 1000), mn, 1e-18);
  /* transformers' get_cosine_schedule_with_warmup (min_lr 0), W = 0: full lr at step 0 */
  s = (srlm_lr_schedule){.kind = SRLM_CFG_LR_COSINE, .lr = lr, .min_lr = 0, .warmup_steps = 0, .total_steps = 4};
  const double want[5] = {lr, lr * 0.5 * (1 + cos(M_PI / 4)), lr * 0.5, lr * 0.5 * (1 + cos(3 * M_PI / 4)), 0};
  for (int i = 0; i < 5; i++) EXPECT_NEAR(srlm_lr_at(&s, i), want[i], 1e-18);
  /* warmup longer than the run */
  s = (srlm_lr_schedule){.kind = SRLM_CFG_LR_LINEAR, .lr = lr, .warmup_steps = 20, .total_steps = 10};
  EXPECT_NEAR(srlm_lr_at(&s, 9), lr * 9 / 20, 1e-18);

  s = (srlm_lr_schedule){.kind = SRLM_CFG_LR_COSINE, .lr = 1e-4, .min_lr = 1e-3, .total_steps = 10};
  EXPECT(srlm_lr_schedule_check(&s) == SRLM_ERR_CONFIG, "min_lr > lr accepted");
  EXPECT_CONTAINS(srlm_error_message(), "train.min_lr");
  s = (srlm_lr_schedule){.kind = SRLM_CFG_LR_CONSTANT, .lr = 1e-4, .total_steps = 0};
  EXPECT(srlm_lr_schedule_check(&s) == SRLM_ERR_CONFIG, "0 steps accepted");

  srlm_config cfg;
  srlm_config_init(&cfg);
  cfg.train.lr_schedule = SRLM_CFG_LR_COSINE;
  cfg.train.warmup_steps = 7;
  srlm_lr_schedule fc;
  srlm_lr_schedule_from_config(&cfg, 99, &fc);
  EXPECT(fc.kind == SRLM_CFG_LR_COSINE && fc.lr == cfg.train.lr && fc.min_lr == cfg.train.min_lr &&
             fc.warmup_steps == 7 && fc.total_steps == 99,
         "schedule does not mirror the config");
  srlm_config_free(&cfg);
}

/* ---- ZeRO-1: sharded optimizers (threads as learners) equal one unsharded, bit for bit --- */

#define ZN 300001 /* several SUMSQ chunks, so shards start inside decay segments */
#define ZSTEPS 4

typedef struct zlearner {
  sim_dp_rank sr;
  srlm_dp dp;
  const float *g[ZSTEPS]; /* every learner is given the same (already summed) gradients */
  float *p;
  float *m, *v;           /* gathered moments after the last step */
  srlm_optim_stats st[ZSTEPS];
  int64_t bounds[SIM_DP_MAX_RANKS + 1];
  srlm_status status;
} zlearner;

static srlm_status zero_optim(srlm_optim **o) {
  srlm_optim_config c = default_cfg();
  c.grad_clip = 10; /* clips the steps: the norm's bits matter */
  SRLM_TRY(srlm_optim_create(srlm_backend_cpu(), ZN, &c, o));
  SRLM_TRY(srlm_optim_set_decay(*o, 70000, 11, 0));
  SRLM_TRY(srlm_optim_set_decay(*o, 200003, 1, 0));
  return SRLM_OK;
}

static void *zero_main(void *arg) {
  zlearner *l = arg;
  srlm_optim *o = NULL;
  srlm_status st = zero_optim(&o);
  if (st == SRLM_OK) st = srlm_optim_shard(o, &l->dp);
  for (int k = 0; st == SRLM_OK && k < ZSTEPS; k++) {
    st = srlm_optim_step(o, l->p + srlm_optim_shard_bounds(o)[l->dp.rank], l->g[k], 1e-2, &l->st[k]); /* its range */
    if (st == SRLM_OK && !l->st[k].skipped) st = sim_allgather(&l->sr, l->p, ZN, SRLM_F32, srlm_optim_shard_bounds(o));
  }
  if (st == SRLM_OK) st = srlm_optim_read_moments(o, l->m, l->v);
  if (st == SRLM_OK) memcpy(l->bounds, srlm_optim_shard_bounds(o), ((size_t)l->dp.size + 1) * sizeof(int64_t));
  l->status = st;
  srlm_optim_free(o);
  return NULL;
}

static void test_zero1(int R) {
  float *g[ZSTEPS];
  uint64_t x = 12345;
  for (int k = 0; k < ZSTEPS; k++) {
    g[k] = malloc(ZN * sizeof(float));
    for (size_t i = 0; i < ZN; i++) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      g[k][i] = (float)((double)(x >> 40) / (double)(1 << 24) - 0.5) * 0.1f;
    }
  }
  g[2][123456] = NAN; /* step 3 is skipped on every learner alike */
  float *p0 = malloc(ZN * sizeof(float)), *m1 = malloc(ZN * sizeof(float)), *v1 = malloc(ZN * sizeof(float));
  for (size_t i = 0; i < ZN; i++) p0[i] = (float)sin((double)i);
  /* one unsharded optimizer */
  srlm_optim *o = NULL;
  srlm_optim_stats one[ZSTEPS];
  EXPECT(zero_optim(&o) == SRLM_OK, "zero_optim: %s", srlm_error_message());
  for (int k = 0; k < ZSTEPS; k++) EXPECT(srlm_optim_step(o, p0, g[k], 1e-2, &one[k]) == SRLM_OK, "step");
  EXPECT(srlm_optim_read_moments(o, m1, v1) == SRLM_OK, "moments");
  srlm_optim_free(o);
  EXPECT(one[0].clip_scale < 1 && one[2].skipped && !one[3].skipped, "the reference run clips and skips");
  /* R sharded */
  sim_dp sim = {.n = ZN};
  zlearner L[SIM_DP_MAX_RANKS];
  memset(L, 0, sizeof L);
  for (int r = 0; r < R; r++) {
    L[r].sr = (sim_dp_rank){&sim, r};
    L[r].dp = sim_dp_of(&L[r].sr, r, R, 1);
    for (int k = 0; k < ZSTEPS; k++) L[r].g[k] = g[k];
    L[r].p = malloc(ZN * sizeof(float));
    for (size_t i = 0; i < ZN; i++) L[r].p[i] = (float)sin((double)i);
    L[r].m = malloc(ZN * sizeof(float));
    L[r].v = malloc(ZN * sizeof(float));
    sim.slot[r] = malloc(ZN * sizeof(float));
  }
  sim_dp_run(&sim, R, zero_main, L, sizeof *L);
  const size_t segs[] = {0, 70000, 70011, 200003, 200004}; /* the decay segments' starts */
  for (int r = 0; r < R; r++) {
    EXPECT(L[r].status == SRLM_OK, "ZeRO-1 R=%d learner %d failed", R, r);
    if (L[r].status != SRLM_OK) continue;
    for (int j = 1; j < R; j++) { /* a cut is a segment's start plus whole chunks, near ZN j / R */
      size_t b = (size_t)L[r].bounds[j], s0 = 0;
      for (size_t q = 0; q < sizeof segs / sizeof *segs; q++)
        if (segs[q] <= b) s0 = segs[q];
      EXPECT((b - s0) % SRLM_SUMSQ_CHUNK == 0 && b <= (size_t)ZN * j / R && (size_t)ZN * j / R - b < SRLM_SUMSQ_CHUNK,
             "R=%d: cut %d at %zu (segment from %zu)", R, j, b, s0);
    }
    for (int k = 0; k < ZSTEPS; k++)
      EXPECT(memcmp(&L[r].st[k].grad_norm, &one[k].grad_norm, sizeof(double)) == 0 && L[r].st[k].skipped == one[k].skipped &&
                 L[r].st[k].clip_scale == one[k].clip_scale,
             "R=%d learner %d step %d: norm %.17g vs %.17g", R, r, k + 1, L[r].st[k].grad_norm, one[k].grad_norm);
    EXPECT(memcmp(L[r].p, p0, ZN * sizeof(float)) == 0, "R=%d learner %d: weights differ from one optimizer's", R, r);
    EXPECT(memcmp(L[r].m, m1, ZN * sizeof(float)) == 0 && memcmp(L[r].v, v1, ZN * sizeof(float)) == 0,
           "R=%d learner %d: gathered moments differ from one optimizer's", R, r);
    free(L[r].p);
    free(L[r].m);
    free(L[r].v);
    free(sim.slot[r]);
  }
  /* the cut is inside a segment somewhere (else this test would not test the chunk rule) */
  int inside = 0;
  for (int j = 1; j < R; j++)
    inside |= L[0].bounds[j] != 0 && L[0].bounds[j] != 70000 && L[0].bounds[j] != 70011 && L[0].bounds[j] != 200003 &&
              L[0].bounds[j] != 200004;
  EXPECT(inside, "R=%d: no cut inside a segment", R);
  for (int k = 0; k < ZSTEPS; k++) free(g[k]);
  free(p0);
  free(m1);
  free(v1);
}

int main(void) {
  test_zero1(2);
  test_zero1(3);
  test_zero1(4);
  test_adamw_reference(0, 1e-8);
  test_adamw_reference(0.5, 1e-3);
  test_first_step_closed_form();
  test_zero_grad_decay_only();
  test_clipping();
  test_norm_deterministic();
  test_nonfinite_skip();
  test_state_restore();
  test_errors();
  test_schedules();
  TEST_MAIN_END();
}
