/* The sample op (backend.h) and its arithmetic (sample_math.h): exp and log against libm
 * in double, the 128-bit fixed point against a bit-by-bit reference; then the CPU op's
 * tokens against a straightforward reference of sampler.h's rules (full sort, double
 * sums of the documented weights) for every combination of settings on rows built to
 * put the cuts on ties, in flat buckets, in the open-ended last bucket, next to -inf
 * masks, for V from 1 to 151936, many rows and steps; the op against the host sampler
 * (same bits), across thread counts and vector levels (same bits); rows with NaN/+inf or
 * no finite logit named by row. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "srlm/backend.h"
#include "srlm/sample_math.h"
#include "srlm/sampler.h"
#include "sample_ref.h"
#include "test.h"

static const uint64_t k_seed = 20261203;

static double uniform(uint32_t a, uint32_t b) {
  const srlm_philox_out r = srlm_rng_bits(k_seed, 0x7e58, a, b, 0);
  return srlm_rng_u01d(r.v[0], r.v[1]);
}

static double ulps(double got, double want, double ulp_of_one) {
  if (got == want) return 0;
  const double ulp = want != 0 ? ulp_of_one * pow(2.0, floor(log2(fabs(want)))) : DBL_MIN;
  return fabs(got - want) / ulp;
}

/* ---- arithmetic ---- */

static void test_exp_log(void) {
  /* exp: a sweep of [-87, 0] in steps of 1/4096 plus random points; 0 below the bound */
  double worst = 0, at = 0;
  for (int i = 0; i <= 87 * 4096; i++) {
    const float x = i < 87 * 4096 ? -(float)i / 4096.0f : (float)(-87.0 * uniform(1, (uint32_t)i));
    const float got = srlm_sample_exp(x);
    const double want = exp((double)x);
    if (x < SRLM_SAMPLE_EXP_LO) {
      EXPECT(got == 0.0f, "exp(%.9g) = %g below the bound, expected 0", (double)x, (double)got);
      continue;
    }
    const double e = ulps(got, want, FLT_EPSILON);
    if (e > worst) worst = e, at = x;
  }
  for (int i = 0; i < 200000; i++) {
    const float x = (float)(SRLM_SAMPLE_EXP_LO * uniform(2, (uint32_t)i));
    const double e = ulps(srlm_sample_exp(x), exp((double)x), FLT_EPSILON);
    if (e > worst) worst = e, at = x;
  }
  printf("exp: worst %.2f ulp (at %.9g)\n", worst, at);
  EXPECT(worst <= 2.0, "exp is %.2f ulp off at %.9g", worst, at);
  EXPECT(srlm_sample_exp(0.0f) == 1.0f, "exp(0) = %.9g", (double)srlm_sample_exp(0.0f));
  EXPECT(srlm_sample_exp(-INFINITY) == 0.0f, "exp(-inf) = %g", (double)srlm_sample_exp(-INFINITY));
  EXPECT(srlm_sample_exp(SRLM_SAMPLE_EXP_LO) >= FLT_MIN, "exp at the bound is subnormal");

  worst = 0;
  for (int i = 0; i < 200000; i++) {
    const double x = i < 100 ? 1.0 + i : exp(60.0 * uniform(3, (uint32_t)i)) * (1 + uniform(4, (uint32_t)i));
    const double e = ulps(srlm_sample_log(x), log(x), DBL_EPSILON);
    if (e > worst) worst = e, at = x;
  }
  printf("log: worst %.2f ulp (at %.17g)\n", worst, at);
  EXPECT(worst <= 4.0, "log is %.2f ulp off at %.17g", worst, at);
  EXPECT(srlm_sample_log(1.0) == 0.0, "log(1) = %g", srlm_sample_log(1.0));
}

/* a * x / 2^s bit by bit: 192-bit shift-and-add, then the shift and the sticky bits. */
static srlm_u128 mul_shr_ref(srlm_u128 a, uint64_t x, int s, int round_up) {
  uint64_t p[3] = {0, 0, 0};
  for (int bit = 0; bit < 64; bit++) {
    if (!(x >> bit & 1)) continue;
    /* p += a << bit */
    uint64_t sh[3] = {a.lo << bit, bit ? (a.hi << bit) | (a.lo >> (64 - bit)) : a.hi, bit ? a.hi >> (64 - bit) : 0};
    unsigned carry = 0;
    for (int w = 0; w < 3; w++) {
      const uint64_t t = p[w] + sh[w];
      const unsigned c1 = t < p[w];
      p[w] = t + carry;
      carry = c1 | (p[w] < t);
    }
  }
  int sticky = 0;
  for (int bit = 0; bit < s; bit++) sticky |= (int)(p[bit / 64] >> (bit % 64) & 1);
  srlm_u128 r = {0, 0};
  for (int bit = 0; bit < 128 && s + bit < 192; bit++) {
    const uint64_t b = p[(s + bit) / 64] >> ((s + bit) % 64) & 1;
    if (bit < 64) r.lo |= b << bit;
    else r.hi |= b << (bit - 64);
  }
  return round_up && sticky ? srlm_u128_add(r, 1) : r;
}

static void test_fixed_point(void) {
  int bad = 0;
  for (uint32_t i = 0; i < 20000; i++) {
    const srlm_philox_out r = srlm_rng_bits(k_seed, 0x128, i, 0, 0), q = srlm_rng_bits(k_seed, 0x129, i, 0, 0);
    /* masses below 2^94, multipliers of 24 or 53 bits (what top-p and the draw use) */
    const srlm_u128 a = {((uint64_t)r.v[0] << 32) | r.v[1], ((uint64_t)r.v[2] << 32 | r.v[3]) >> (34 + i % 30)};
    const uint64_t x = (((uint64_t)q.v[0] << 32) | q.v[1]) >> (i % 2 ? 11 : 40);
    const int s = i % 2 ? 53 : 24 + (int)(q.v[2] % 126);
    const int up = (int)(q.v[3] & 1);
    const srlm_u128 got = srlm_u128_mul_shr(a, x, s, up), want = mul_shr_ref(a, x, s, up);
    if ((got.lo != want.lo || got.hi != want.hi) && !bad++)
      EXPECT(0, "mul_shr(%016llx%016llx, %llu, %d, %d) = %016llx%016llx, expected %016llx%016llx",
             (unsigned long long)a.hi, (unsigned long long)a.lo, (unsigned long long)x, s, up,
             (unsigned long long)got.hi, (unsigned long long)got.lo, (unsigned long long)want.hi,
             (unsigned long long)want.lo);
  }
  EXPECT_EQ_INT(bad, 0);
  /* ceil(p q) on exact cases */
  const srlm_u128 q7 = {7, 0}, big = {0, 1};
  EXPECT_EQ_INT(srlm_sample_top_p_target(0.5f, q7).lo, 4);
  EXPECT_EQ_INT(srlm_sample_top_p_target(0.0f, q7).lo, 0);
  EXPECT_EQ_INT(srlm_sample_top_p_target(1.0f, q7).lo, 7);
  EXPECT_EQ_INT(srlm_sample_top_p_target(1e-30f, q7).lo, 1);
  EXPECT_EQ_INT(srlm_sample_top_p_target(FLT_TRUE_MIN, q7).lo, 1);
  EXPECT(srlm_sample_top_p_target(0.25f, big).lo == UINT64_C(1) << 62, "1/4 of 2^64");
  /* the draw's 53 bits: all of hi, the top 21 of lo */
  EXPECT(srlm_rng_u53(0xffffffffu, 0xffffffffu) == (UINT64_C(1) << 53) - 1, "u53 of all ones");
  EXPECT(srlm_rng_u53(0, 0x800u) == 1 && srlm_rng_u53(1, 0) == UINT64_C(1) << 21, "u53 bit positions");
  /* the draw target is always below the mass */
  const srlm_u128 q = {UINT64_C(1) << 62, 0};
  EXPECT(srlm_u128_lt(srlm_sample_draw_target(q, (UINT64_C(1) << 53) - 1), q), "target reaches the mass");
}

/* ---- rows that stress the cuts ---- */

enum { ROW_NORMAL, ROW_TIES, ROW_FLAT, ROW_WIDE, ROW_MASKED, ROW_TINY_SPAN, ROW_KINDS };

static void make_row(float *l, int64_t V, int kind, uint32_t seed) {
  for (int64_t i = 0; i < V; i++) {
    const double u = uniform(100 + seed, (uint32_t)i);
    switch (kind) {
      case ROW_NORMAL: l[i] = (float)(4.0 * (u - 0.5) * (1 + (seed % 3))); break;
      case ROW_TIES: l[i] = (float)floor(6.0 * u) * 0.5f; break;       /* few values, many ties */
      case ROW_FLAT: l[i] = u < 0.9 ? 1.0f : (float)(2.0 * u); break;  /* one huge tied bucket */
      case ROW_WIDE: l[i] = (float)(-300.0 * u * u); break;            /* the open-ended last bucket */
      case ROW_MASKED: l[i] = u < 0.5 ? -INFINITY : (float)(3.0 * u); break;
      case ROW_TINY_SPAN: l[i] = 1.0f + (u < 0.5 ? 0.0f : 1.2e-7f); break; /* two adjacent floats */
    }
  }
  if (V > 2 && kind != ROW_MASKED) l[V / 2] = -INFINITY; /* a masked id everywhere */
  if (kind == ROW_MASKED) l[V - 1] = 0.5f;                 /* at least one finite */
}

static const char *const k_kind[] = {"normal", "ties", "flat", "wide", "masked", "tiny-span"};

/* Runs the op on n rows (one setting, steps and sequence ids varying) and checks each
 * row against the reference and the host sampler. Returns the mismatches. */
static int check_rows(const float *rows, int64_t n, int64_t V, const sample_settings *s, const char *what) {
  srlm_backend *be = srlm_backend_cpu();
  int32_t *tok = malloc((size_t)n * sizeof *tok);
  float *lp = malloc((size_t)n * sizeof *lp), *slp = malloc((size_t)n * sizeof *slp);
  uint64_t *seq = malloc((size_t)n * sizeof *seq);
  uint32_t *step = malloc((size_t)n * sizeof *step);
  for (int64_t i = 0; i < n; i++) {
    seq[i] = (uint64_t)i * 977 + (i % 3 == 2 ? UINT64_C(1) << 33 : 0);
    step[i] = (uint32_t)(i % 5);
  }
  const srlm_sample_params p = {.token = tok, .logprob = lp, .sample_logprob = slp, .logits = rows, .seq_id = seq,
                                .step = step, .n = n, .V = V, .temperature = s->t, .top_p = s->top_p,
                                .min_p = s->min_p, .top_k = s->top_k, .seed = k_seed};
  int bad = 0;
  if (SRLM_OP(be, sample, p) != SRLM_OK) {
    EXPECT(0, "%s: %s", what, srlm_error_message());
    bad = 1;
  }
  srlm_sampler_params sp = {.temperature = s->t, .top_k = s->top_k, .top_p = s->top_p, .min_p = s->min_p,
                            .seed = k_seed};
  srlm_sampler *sm;
  EXPECT(srlm_sampler_create(&sp, V, &sm) == SRLM_OK, "%s", srlm_error_message());
  for (int64_t i = 0; i < n && !bad; i++) {
    const float *l = rows + i * V;
    const sample_ref_out r = sample_reference(l, V, s, k_seed, seq[i], step[i]);
    srlm_sample h;
    EXPECT(srlm_sampler_sample(sm, l, seq[i], step[i], &h) == SRLM_OK, "%s", srlm_error_message());
    /* log-probs: fp32 weights (2 ulp each) move log Z by ~2^-22; then the fp32 result */
    const double tol_lp = 4 * FLT_EPSILON * (1 + fabs(r.logprob)), tol_slp = 4 * FLT_EPSILON * (1 + fabs(r.sample_logprob));
    if (tok[i] != r.token || fabs(lp[i] - r.logprob) > tol_lp || fabs(slp[i] - r.sample_logprob) > tol_slp) {
      if (!bad) EXPECT(0, "%s T=%g k=%d p=%g min_p=%g row %lld (seq %llu step %u): op token %d logprob %.9g "
                       "sample %.9g; reference %d %.9g %.9g", what, (double)s->t, s->top_k, (double)s->top_p,
                       (double)s->min_p, (long long)i, (unsigned long long)seq[i], step[i], tok[i], (double)lp[i],
                       (double)slp[i], r.token, r.logprob, r.sample_logprob);
      bad++;
    }
    if (h.token != tok[i] || memcmp(&h.logprob, &lp[i], 4) || memcmp(&h.sample_logprob, &slp[i], 4)) {
      if (!bad) EXPECT(0, "%s row %lld: host sampler %d %.9g %.9g, op %d %.9g %.9g", what, (long long)i, h.token,
                       (double)h.logprob, (double)h.sample_logprob, tok[i], (double)lp[i], (double)slp[i]);
      bad++;
    }
  }
  srlm_sampler_free(sm);
  free(tok);
  free(lp);
  free(slp);
  free(seq);
  free(step);
  return bad;
}

static void test_against_reference(void) {
  const float temps[] = {0.0f, 1.0f, 0.7f, 1.6f, 1e-3f, 50.0f};
  const int ks[] = {0, 1, 3, 40, -1 /* V - 1 */, -2 /* V */, -3 /* V + 10 */};
  const float top_ps[] = {1.0f, 0.9f, 0.5f, 0.0f, 1e-6f, 0.999f};
  const float min_ps[] = {0.0f, 0.05f, 1.0f};
  const int64_t Vs[] = {1, 2, 7, 300};
  int64_t combos = 0, rows_checked = 0, bad = 0;
  for (size_t iv = 0; iv < sizeof Vs / sizeof Vs[0]; iv++) {
    const int64_t V = Vs[iv], n = 2 * ROW_KINDS;
    float *rows = malloc((size_t)(n * V) * sizeof *rows);
    for (int64_t i = 0; i < n; i++) make_row(rows + i * V, V, (int)(i % ROW_KINDS), (uint32_t)(i + 31 * V));
    for (size_t a = 0; a < 6; a++)
      for (size_t b = 0; b < 7; b++)
        for (size_t c = 0; c < 6; c++)
          for (size_t d = 0; d < 3; d++) {
            const int k = ks[b] >= 0 ? ks[b] : (int)V + (ks[b] == -1 ? -1 : ks[b] == -2 ? 0 : 10);
            const sample_settings s = {temps[a], top_ps[c], min_ps[d], k};
            char what[64];
            snprintf(what, sizeof what, "V=%lld", (long long)V);
            bad += check_rows(rows, n, V, &s, what);
            combos++;
            rows_checked += n;
          }
    free(rows);
  }
  printf("reference: %lld setting combinations, %lld rows (kinds", (long long)combos, (long long)rows_checked);
  for (int k = 0; k < ROW_KINDS; k++) printf(" %s", k_kind[k]);
  printf("), %lld mismatches\n", (long long)bad);
  EXPECT_EQ_INT(bad, 0);
}

/* Many steps of the same rows (the key changes the draw) at V = 151936. */
static void test_large_vocab(void) {
  const int64_t V = 151936, n = ROW_KINDS;
  float *rows = malloc((size_t)(n * V) * sizeof *rows);
  for (int64_t i = 0; i < n; i++) make_row(rows + i * V, V, (int)i, 7000 + (uint32_t)i);
  const sample_settings cases[] = {{0.0f, 1.0f, 0.0f, 0},  {1.0f, 1.0f, 0.0f, 0},   {0.7f, 0.9f, 0.0f, 0},
                            {1.0f, 1.0f, 0.0f, 50}, {1.0f, 1.0f, 0.05f, 0},  {0.8f, 0.95f, 0.05f, 20},
                            {1.3f, 0.999f, 0.0f, 0}, {0.6f, 0.5f, 0.0f, 1000}};
  int bad = 0;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) bad += check_rows(rows, n, V, &cases[c], "V=151936");
  printf("V=151936: %zu settings x %lld rows against the reference, %d mismatches\n",
         sizeof cases / sizeof cases[0], (long long)n, bad);
  EXPECT_EQ_INT(bad, 0);
  free(rows);
}

/* The same bits with one thread or many, and at every vector level the CPU has. */
static void test_bits_independent(void) {
  const int64_t V = 5000, n = 24;
  float *rows = malloc((size_t)(n * V) * sizeof *rows);
  for (int64_t i = 0; i < n; i++) make_row(rows + i * V, V, (int)(i % ROW_KINDS), 900 + (uint32_t)i);
  uint64_t seq[24];
  uint32_t step[24];
  for (int i = 0; i < n; i++) seq[i] = (uint64_t)i, step[i] = (uint32_t)(3 * i);
  int32_t tok[3][24];
  float lp[3][24], slp[3][24];
  const char *level[3] = {"default", "1 thread", "generic"};
  for (int run = 0; run < 3; run++) {
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
    if (run == 1) omp_set_num_threads(1);
#endif
    if (run == 2) EXPECT(srlm_backend_cpu_set_isa("generic") == SRLM_OK, "%s", srlm_error_message());
    const srlm_sample_params p = {.token = tok[run], .logprob = lp[run], .sample_logprob = slp[run], .logits = rows,
                                  .seq_id = seq, .step = step, .n = n, .V = V, .temperature = 0.9f, .top_p = 0.9f,
                                  .min_p = 0.01f, .top_k = 100, .seed = 5};
    EXPECT(SRLM_OP(srlm_backend_cpu(), sample, p) == SRLM_OK, "%s", srlm_error_message());
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    EXPECT(srlm_backend_cpu_set_isa(NULL) == SRLM_OK, "%s", srlm_error_message());
    EXPECT(!memcmp(tok[run], tok[0], sizeof tok[0]) && !memcmp(lp[run], lp[0], sizeof lp[0]) &&
               !memcmp(slp[run], slp[0], sizeof slp[0]),
           "%s: tokens or log-probs differ from the default run", level[run]);
  }
  printf("bits: same with %s, %s and %s (best level %s)\n", level[0], level[1], level[2], srlm_backend_cpu_isa());
  free(rows);
}

static void test_errors(void) {
  const int64_t V = 16, n = 5;
  float rows[5 * 16];
  for (int i = 0; i < n * V; i++) rows[i] = (float)(i % 7);
  int32_t tok[5];
  float lp[5];
  uint64_t seq[5] = {0, 1, 2, 3, 4};
  uint32_t step[5] = {0};
  srlm_sample_params p = {.token = tok, .logprob = lp, .logits = rows, .seq_id = seq, .step = step, .n = n, .V = V,
                          .temperature = 1.0f, .top_p = 1.0f};
  srlm_backend *be = srlm_backend_cpu();
  rows[3 * V + 7] = NAN;
  EXPECT(SRLM_OP(be, sample, p) == SRLM_ERR_RANGE, "NaN accepted");
  EXPECT_CONTAINS(srlm_error_message(), "row 3: logit of id 7 is NaN");
  rows[3 * V + 7] = 0;
  rows[4 * V + 2] = INFINITY;
  EXPECT(SRLM_OP(be, sample, p) == SRLM_ERR_RANGE, "+inf accepted");
  EXPECT_CONTAINS(srlm_error_message(), "row 4: logit of id 2 is +inf");
  rows[4 * V + 2] = 0;
  for (int i = 0; i < V; i++) rows[V + i] = -INFINITY;
  p.temperature = 0.0f;
  EXPECT(SRLM_OP(be, sample, p) == SRLM_ERR_RANGE, "an all -inf row accepted");
  EXPECT_CONTAINS(srlm_error_message(), "row 1: every logit is -inf");
  rows[V + 9] = -1e30f; /* one finite id: drawn whatever the settings */
  p.temperature = 30.0f;
  p.top_k = 3;
  EXPECT(SRLM_OP(be, sample, p) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(tok[1], 9);
  EXPECT_NEAR(lp[1], 0.0, 0.0);
  /* settings out of range; an empty batch */
  p.temperature = -1.0f;
  EXPECT(SRLM_OP(be, sample, p) == SRLM_ERR_RANGE, "temperature -1 accepted");
  p.temperature = 1.0f;
  p.top_p = 1.5f;
  EXPECT(SRLM_OP(be, sample, p) == SRLM_ERR_RANGE, "top_p 1.5 accepted");
  p.top_p = 1.0f;
  p.n = 0;
  EXPECT(SRLM_OP(be, sample, p) == SRLM_OK, "%s", srlm_error_message());
}

int main(void) {
  printf("seed %llu\n", (unsigned long long)k_seed);
  test_exp_log();
  test_fixed_point();
  test_errors();
  test_against_reference();
  test_bits_independent();
  test_large_vocab();
  TEST_MAIN_END();
}
