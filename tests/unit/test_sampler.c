/* Sampler: greedy and its ties, the sampling distribution of every setting against a
 * plain full-sort reference written here, chi-square goodness of fit of many draws at
 * a fixed seed (and a check that the same test rejects a wrong temperature), draws that
 * depend only on (seed, sequence, step), edge cases (-inf ids, top_k 1, tiny top_p,
 * min_p 1), invalid settings, and the time per draw at V = 151936. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/sampler.h"
#include "test.h"

static const uint64_t k_seed = 20240917;

/* Standard normal from the test's own Philox stream. */
static double normal(uint32_t a, uint32_t b) {
  srlm_philox_out r = srlm_rng_bits(k_seed, 0x7e57, a, b, 0);
  double u1 = (srlm_rng_u01d(r.v[0], r.v[1]) + 1e-300), u2 = srlm_rng_u01d(r.v[2], r.v[3]);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void random_logits(float *l, int64_t V, uint32_t row, double scale) {
  for (int64_t i = 0; i < V; i++) l[i] = (float)(scale * normal(row, (uint32_t)i));
}

/* ---- reference: the documented rules with a full sort, in double ---- */

static const float *g_sort_logits;
static int cmp_ref(const void *pa, const void *pb) {
  int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
  float la = g_sort_logits[a], lb = g_sort_logits[b];
  if (la != lb) return la > lb ? -1 : 1;
  return a < b ? -1 : (a > b);
}

static void ref_probs(const float *l, int64_t V, const srlm_sampler_params *p, double *out) {
  int32_t *idx = malloc((size_t)V * sizeof *idx);
  double *w = malloc((size_t)V * sizeof *w);
  int64_t n = 0;
  for (int64_t i = 0; i < V; i++)
    if (l[i] != -INFINITY) idx[n++] = (int32_t)i;
  g_sort_logits = l;
  qsort(idx, (size_t)n, sizeof *idx, cmp_ref);
  memset(out, 0, (size_t)V * sizeof *out);
  if (p->temperature == 0.0f) {
    out[idx[0]] = 1.0;
  } else {
    double m = l[idx[0]];
    for (int64_t j = 0; j < n; j++) w[j] = exp(((double)l[idx[j]] - m) / p->temperature);
    if (p->top_k > 0 && p->top_k < n) n = p->top_k;
    if (p->top_p < 1.0f) {
      double W = 0, cum = 0;
      for (int64_t j = 0; j < n; j++) W += w[j];
      for (int64_t j = 0; j < n; j++) {
        if (j > 0 && cum >= (double)p->top_p * W) {
          n = j;
          break;
        }
        cum += w[j];
      }
    }
    if (p->min_p > 0.0f) {
      int64_t k = 1;
      while (k < n && w[k] >= (double)p->min_p) k++;
      n = k;
    }
    double W = 0;
    for (int64_t j = 0; j < n; j++) W += w[j];
    for (int64_t j = 0; j < n; j++) out[idx[j]] = w[j] / W;
  }
  free(idx);
  free(w);
}

static double ref_log_softmax(const float *l, int64_t V, int32_t t) {
  double m = -INFINITY, z = 0;
  for (int64_t i = 0; i < V; i++)
    if (l[i] > m) m = l[i];
  for (int64_t i = 0; i < V; i++) z += exp((double)l[i] - m);
  return (double)l[t] - m - log(z);
}

static srlm_sampler_params params(float t, int k, float top_p, float min_p) {
  srlm_sampler_params p = srlm_sampler_params_default();
  p.temperature = t;
  p.top_k = k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.seed = k_seed;
  return p;
}

static void describe(char *buf, size_t n, const srlm_sampler_params *p) {
  snprintf(buf, n, "T=%g top_k=%d top_p=%g min_p=%g", (double)p->temperature, p->top_k, (double)p->top_p,
           (double)p->min_p);
}

/* ---- chi-square ---- */

/* Upper alpha = 0.001 point of chi-square with df degrees of freedom (Wilson-Hilferty;
 * z = 3.0902 is the standard normal's 0.999 quantile; within 3% of the exact values,
 * on the conservative side for small df). */
static double chi2_crit_0001(int df) {
  double a = 2.0 / (9.0 * df), c = 1.0 - a + 3.0902 * sqrt(a);
  return df * c * c * c;
}

/* Chi-square statistic of counts against probs, bins with expected < 5 pooled. */
static double chi2_stat(const long *counts, const double *probs, int64_t V, long N, int *df, long *outside) {
  double stat = 0, pool_e = 0;
  long pool_c = 0;
  int bins = 0;
  *outside = 0;
  for (int64_t i = 0; i < V; i++) {
    double e = probs[i] * (double)N;
    if (probs[i] == 0.0) {
      *outside += counts[i];
      continue;
    }
    if (e < 5.0) {
      pool_e += e;
      pool_c += counts[i];
      continue;
    }
    stat += (counts[i] - e) * (counts[i] - e) / e;
    bins++;
  }
  if (pool_e > 0) {
    stat += (pool_c - pool_e) * (pool_c - pool_e) / pool_e;
    bins++;
  }
  *df = bins - 1;
  return stat;
}

/* Draws N tokens (sequence ids 0..N-1, step 3) with p, tests them against the
 * reference distribution of `expect` (p itself, or a wrong one to check the test's
 * power). Returns 1 when the fit is accepted at alpha 0.001. */
static int chi2_fit(const float *l, int64_t V, const srlm_sampler_params *p, const srlm_sampler_params *expect,
                    long N, int verbose) {
  srlm_sampler *s;
  if (srlm_sampler_create(p, V, &s) != SRLM_OK) {
    EXPECT(0, "create: %s", srlm_error_message());
    return 0;
  }
  long *counts = calloc((size_t)V, sizeof *counts);
  double *probs = malloc((size_t)V * sizeof *probs);
  ref_probs(l, V, expect, probs);
  int bad_lp = 0;
  for (long i = 0; i < N; i++) {
    srlm_sample smp;
    if (srlm_sampler_sample(s, l, (uint64_t)i, 3, &smp) != SRLM_OK) {
      EXPECT(0, "sample: %s", srlm_error_message());
      break;
    }
    counts[smp.token]++;
    /* log-probs: full distribution and sampling distribution */
    if (i < 200 && expect == p) {
      double want_full = ref_log_softmax(l, V, smp.token), want_samp = log(probs[smp.token]);
      if (fabs(smp.logprob - want_full) > 1e-5 || fabs(smp.sample_logprob - want_samp) > 1e-5) {
        if (!bad_lp++)
          EXPECT(0, "draw %ld token %d: logprob %.7f sample_logprob %.7f, expected %.7f %.7f", i, smp.token,
                 (double)smp.logprob, (double)smp.sample_logprob, want_full, want_samp);
      }
    }
  }
  int df;
  long outside;
  double stat = chi2_stat(counts, probs, V, N, &df, &outside);
  double crit = chi2_crit_0001(df);
  char d[128];
  describe(d, sizeof d, p);
  if (verbose)
    printf("chi2 %-40s N=%ld df=%d stat=%.1f crit(0.001)=%.1f drawn outside kept set=%ld\n", d, N, df, stat,
           crit, outside);
  free(counts);
  free(probs);
  srlm_sampler_free(s);
  return df >= 1 && stat <= crit && outside == 0;
}

static void test_chi_square(void) {
  const int64_t V = 40;
  float l[40];
  random_logits(l, V, 1, 1.5);
  l[7] = -INFINITY; /* a masked id: never drawn (outside == 0) */
  const srlm_sampler_params cases[] = {
      params(1.0f, 0, 1.0f, 0.0f),   params(0.7f, 0, 1.0f, 0.0f),  params(1.6f, 0, 1.0f, 0.0f),
      params(1.0f, 8, 1.0f, 0.0f),   params(1.0f, 0, 0.8f, 0.0f),  params(1.0f, 0, 1.0f, 0.1f),
      params(0.8f, 20, 0.9f, 0.05f), params(1.3f, 12, 0.95f, 0.0f)};
  const long N = 40000;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    char d[128];
    describe(d, sizeof d, &cases[c]);
    srlm_sampler_params p = cases[c];
    p.seed = k_seed + 1 + c; /* independent draws for each case */
    EXPECT(chi2_fit(l, V, &p, &p, N, 1), "draws with %s do not fit their distribution", d);
  }
  /* the test has power: draws at T=1 are rejected against T=0.85, top_p 0.8 against 0.9,
   * min_p 0.1 against 0.2 */
  srlm_sampler_params a = params(1.0f, 0, 1.0f, 0.0f), b = params(0.85f, 0, 1.0f, 0.0f);
  EXPECT(!chi2_fit(l, V, &a, &b, N, 1), "draws at T=1 pass as T=0.85: the chi-square test cannot fail");
  a = params(1.0f, 0, 0.8f, 0.0f), b = params(1.0f, 0, 0.9f, 0.0f);
  EXPECT(!chi2_fit(l, V, &a, &b, N, 1), "draws with top_p 0.8 pass as top_p 0.9");
  a = params(1.0f, 0, 1.0f, 0.1f), b = params(1.0f, 0, 1.0f, 0.2f);
  EXPECT(!chi2_fit(l, V, &a, &b, N, 1), "draws with min_p 0.1 pass as min_p 0.2");
}

/* ---- distribution against the reference, exactly ---- */

static void check_probs(const float *l, int64_t V, const srlm_sampler_params *p, const char *what) {
  srlm_sampler *s;
  EXPECT(srlm_sampler_create(p, V, &s) == SRLM_OK, "%s", srlm_error_message());
  double *got = malloc((size_t)V * sizeof *got), *want = malloc((size_t)V * sizeof *want);
  EXPECT(srlm_sampler_probs(s, l, got) == SRLM_OK, "%s", srlm_error_message());
  ref_probs(l, V, p, want);
  double worst = 0;
  int64_t at = 0, kept_got = 0, kept_want = 0;
  /* a token lighter than 2^-62 of the top one has no mass and one near it a truncated
     mass (sample_math.h): count the kept tokens well above that */
  const double light = 0x1p-50;
  for (int64_t i = 0; i < V; i++) {
    double d = fabs(got[i] - want[i]);
    if (d > worst) worst = d, at = i;
    kept_got += got[i] > light, kept_want += want[i] > light;
  }
  char d[128];
  describe(d, sizeof d, p);
  EXPECT(worst <= 1e-6 && kept_got == kept_want, "%s %s: probs differ from the reference by %.3g at id %lld "
         "(%.9g vs %.9g); kept %lld vs %lld", what, d, worst, (long long)at, got[at], want[at],
         (long long)kept_got, (long long)kept_want);
  free(got);
  free(want);
  srlm_sampler_free(s);
}

static void test_probs(void) {
  const int64_t V = 300;
  float *l = malloc(V * sizeof *l);
  const srlm_sampler_params cases[] = {
      params(0.0f, 0, 1.0f, 0.0f),    params(1.0f, 0, 1.0f, 0.0f),   params(0.5f, 0, 1.0f, 0.0f),
      params(1.0f, 1, 1.0f, 0.0f),    params(1.0f, 17, 1.0f, 0.0f),  params(1.0f, 299, 1.0f, 0.0f),
      params(1.0f, 1000, 1.0f, 0.0f), params(1.0f, 0, 0.5f, 0.0f),   params(1.0f, 0, 0.999f, 0.0f),
      params(2.0f, 0, 0.3f, 0.0f),    params(1.0f, 0, 1.0f, 0.02f),  params(0.7f, 40, 0.9f, 0.05f),
      params(1.0f, 0, 0.0f, 0.0f),    params(1.0f, 0, 1.0f, 1.0f),   params(1e-3f, 0, 0.9f, 0.0f)};
  for (uint32_t row = 0; row < 4; row++) {
    random_logits(l, V, 100 + row, row == 3 ? 8.0 : 2.0);
    if (row == 2)
      for (int64_t i = 0; i < V; i += 3) l[i] = -INFINITY;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) check_probs(l, V, &cases[c], "random row");
  }
  /* a flat row: ties everywhere go to the lower ids */
  for (int64_t i = 0; i < 10; i++) l[i] = 0.25f;
  srlm_sampler_params p = params(1.0f, 0, 0.5f, 0.0f);
  srlm_sampler *s;
  double probs[10];
  EXPECT(srlm_sampler_create(&p, 10, &s) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_sampler_probs(s, l, probs) == SRLM_OK, "%s", srlm_error_message());
  for (int i = 0; i < 10; i++) EXPECT_NEAR(probs[i], i < 5 ? 0.2 : 0.0, 1e-12);
  srlm_sampler_free(s);
  p = params(1.0f, 3, 1.0f, 0.0f);
  EXPECT(srlm_sampler_create(&p, 10, &s) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_sampler_probs(s, l, probs) == SRLM_OK, "%s", srlm_error_message());
  for (int i = 0; i < 10; i++) EXPECT_NEAR(probs[i], i < 3 ? 1.0 / 3 : 0.0, 1e-12);
  srlm_sampler_free(s);
  free(l);
}

/* ---- greedy, edge cases, determinism ---- */

static int32_t draw(srlm_sampler *s, const float *l, uint64_t seq, uint32_t step) {
  srlm_sample smp = {-1, 0, 0};
  srlm_status st = srlm_sampler_sample(s, l, seq, step, &smp);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  return smp.token;
}

static void test_greedy_and_edges(void) {
  const int64_t V = 64;
  float l[64];
  srlm_sampler *g, *k1, *ptiny, *p0, *m1;
  srlm_sampler_params pg = params(0.0f, 0, 1.0f, 0.0f), pk1 = params(1.0f, 1, 1.0f, 0.0f),
                      ptn = params(1.0f, 0, 1e-6f, 0.0f), pp0 = params(1.0f, 0, 0.0f, 0.0f),
                      pm1 = params(1.0f, 0, 1.0f, 1.0f);
  EXPECT(srlm_sampler_create(&pg, V, &g) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_sampler_create(&pk1, V, &k1) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_sampler_create(&ptn, V, &ptiny) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_sampler_create(&pp0, V, &p0) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_sampler_create(&pm1, V, &m1) == SRLM_OK, "%s", srlm_error_message());
  int mismatches = 0;
  for (uint32_t row = 0; row < 50; row++) {
    random_logits(l, V, 1000 + row, 3.0);
    /* ties at the max on some rows: the lowest id wins */
    int32_t want = 0;
    for (int64_t i = 1; i < V; i++)
      if (l[i] > l[want]) want = (int32_t)i;
    if (row % 3 == 0) {
      int32_t other = (int32_t)((want + 5 + row) % V), lo = other < want ? other : want;
      l[other] = l[want];
      want = lo;
    }
    srlm_sample smp;
    EXPECT(srlm_sampler_sample(g, l, row, 0, &smp) == SRLM_OK, "%s", srlm_error_message());
    if (smp.token != want) mismatches++;
    EXPECT_NEAR(smp.logprob, ref_log_softmax(l, V, want), 1e-5);
    EXPECT_NEAR(smp.sample_logprob, 0.0, 0.0);
    for (uint32_t step = 0; step < 5; step++) {
      int32_t a = draw(k1, l, row, step), b = draw(ptiny, l, row, step), c = draw(p0, l, row, step);
      int32_t d = row % 3 == 0 ? want : draw(m1, l, row, step); /* min_p 1 keeps every tie */
      if (a != want || b != want || c != want || d != want) {
        if (!mismatches) EXPECT(0, "row %u step %u: top_k 1 %d, top_p 1e-6 %d, top_p 0 %d, min_p 1 %d; greedy %d",
                                row, step, a, b, c, d, want);
        mismatches++;
      }
    }
  }
  EXPECT_EQ_INT(mismatches, 0);

  /* -inf ids are never drawn, even at a high temperature; a row with one finite id */
  for (int64_t i = 0; i < V; i++) l[i] = (i % 2) ? -INFINITY : 0.0f;
  srlm_sampler *hot;
  srlm_sampler_params ph = params(50.0f, 0, 1.0f, 0.0f);
  EXPECT(srlm_sampler_create(&ph, V, &hot) == SRLM_OK, "%s", srlm_error_message());
  int odd = 0;
  for (uint32_t i = 0; i < 5000; i++) odd += draw(hot, l, i, 1) % 2;
  EXPECT(odd == 0, "%d of 5000 draws picked an id whose logit is -inf", odd);
  for (int64_t i = 0; i < V; i++) l[i] = -INFINITY;
  l[41] = -3.0f;
  int other = 0;
  for (uint32_t i = 0; i < 1000; i++) other += draw(hot, l, i, 2) != 41;
  EXPECT(other == 0, "%d draws missed the only finite id", other);
  srlm_sample smp;
  EXPECT_NEAR((srlm_sampler_sample(hot, l, 0, 0, &smp), smp.logprob), 0.0, 1e-7);

  /* rows that cannot be sampled */
  l[41] = -INFINITY;
  EXPECT(srlm_sampler_sample(hot, l, 0, 0, &smp) == SRLM_ERR_RANGE, "all -inf accepted");
  EXPECT_CONTAINS(srlm_error_message(), "every logit is -inf");
  l[3] = NAN;
  EXPECT(srlm_sampler_sample(g, l, 0, 0, &smp) == SRLM_ERR_RANGE, "NaN accepted");
  EXPECT_CONTAINS(srlm_error_message(), "logit of id 3 is NaN");
  srlm_sampler_free(hot);
  srlm_sampler_free(g);
  srlm_sampler_free(k1);
  srlm_sampler_free(ptiny);
  srlm_sampler_free(p0);
  srlm_sampler_free(m1);
}

static void test_invalid_params(void) {
  srlm_sampler *s = (srlm_sampler *)1;
  struct {
    srlm_sampler_params p;
    const char *msg;
  } bad[] = {{params(-0.5f, 0, 1.0f, 0.0f), "temperature -0.5"}, {params(INFINITY, 0, 1.0f, 0.0f), "temperature inf"},
             {params(NAN, 0, 1.0f, 0.0f), "temperature nan"},    {params(1.0f, -1, 1.0f, 0.0f), "top_k -1"},
             {params(1.0f, 0, 1.5f, 0.0f), "top_p 1.5"},         {params(1.0f, 0, -0.1f, 0.0f), "top_p -0.1"},
             {params(1.0f, 0, NAN, 0.0f), "top_p nan"},          {params(1.0f, 0, 1.0f, 2.0f), "min_p 2"},
             {params(1.0f, 0, 1.0f, -1.0f), "min_p -1"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    srlm_status st = srlm_sampler_create(&bad[i].p, 10, &s);
    EXPECT(st == SRLM_ERR_CONFIG, "%s: status %d", bad[i].msg, (int)st);
    EXPECT_CONTAINS(srlm_error_message(), bad[i].msg);
    EXPECT(s == NULL, "%s: handle not cleared", bad[i].msg);
  }
  srlm_sampler_params ok = params(1.0f, 0, 1.0f, 0.0f);
  EXPECT(srlm_sampler_create(&ok, 0, &s) == SRLM_ERR_RANGE, "V = 0 accepted");
}

static void test_determinism(void) {
  const int64_t V = 500;
  const int NS = 6, NT = 20;
  float *rows = malloc((size_t)NS * NT * V * sizeof *rows);
  for (int i = 0; i < NS * NT; i++) random_logits(rows + (size_t)i * V, V, 5000 + (uint32_t)i, 1.0);
  srlm_sampler_params p = params(0.9f, 50, 0.95f, 0.01f);
  srlm_sampler *a, *b;
  EXPECT(srlm_sampler_create(&p, V, &a) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_sampler_create(&p, V, &b) == SRLM_OK, "%s", srlm_error_message());
  int32_t fwd[6][20];
  for (int s = 0; s < NS; s++)
    for (int t = 0; t < NT; t++) fwd[s][t] = draw(a, rows + ((size_t)s * NT + t) * V, (uint64_t)s, (uint32_t)t);
  /* reverse order, on another sampler, interleaved with unrelated draws */
  int diff = 0, distinct = 0;
  float *junk = malloc(V * sizeof *junk);
  random_logits(junk, V, 9999, 4.0);
  for (int t = NT - 1; t >= 0; t--)
    for (int s = NS - 1; s >= 0; s--) {
      (void)draw(b, junk, 77, (uint32_t)t);
      diff += draw(b, rows + ((size_t)s * NT + t) * V, (uint64_t)s, (uint32_t)t) != fwd[s][t];
    }
  EXPECT(diff == 0, "%d of %d draws changed with the call order", diff, NS * NT);
  /* the key matters: same row, different (seq, step) give different tokens often */
  for (uint32_t i = 0; i < 100; i++) distinct += draw(a, rows, i, 0) != draw(a, rows, 0, 0);
  EXPECT(distinct > 50, "only %d of 100 sequence ids changed the token", distinct);
  /* a sequence id above 2^32 is its own stream */
  EXPECT(draw(a, rows, (UINT64_C(1) << 32) + 5, 3) == draw(a, rows, (UINT64_C(1) << 32) + 5, 3), "not repeatable");
  free(junk);
  free(rows);
  srlm_sampler_free(a);
  srlm_sampler_free(b);
}

/* Large vocabulary: the threshold path of top-p against the reference, and the time per draw. */
static void test_large_vocab(void) {
  const int64_t V = 151936;
  float *l = malloc((size_t)V * sizeof *l);
  random_logits(l, V, 424242, 3.0);
  const srlm_sampler_params cases[] = {params(0.0f, 0, 1.0f, 0.0f), params(1.0f, 0, 1.0f, 0.0f),
                                       params(0.7f, 0, 0.9f, 0.0f), params(1.0f, 50, 1.0f, 0.0f),
                                       params(1.0f, 0, 1.0f, 0.05f), params(0.8f, 20, 0.95f, 0.05f),
                                       params(1.0f, 0, 0.999f, 0.0f)};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    check_probs(l, V, &cases[c], "V=151936");
    srlm_sampler *s;
    EXPECT(srlm_sampler_create(&cases[c], V, &s) == SRLM_OK, "%s", srlm_error_message());
    const int reps = 20;
    srlm_timer t;
    srlm_timer_start(&t);
    for (int r = 0; r < reps; r++) (void)draw(s, l, (uint64_t)r, 0);
    char d[128];
    describe(d, sizeof d, &cases[c]);
    printf("V=%lld %-40s %.3f ms/draw\n", (long long)V, d, srlm_timer_elapsed(&t) * 1e3 / reps);
    srlm_sampler_free(s);
  }
  free(l);
}

int main(void) {
  printf("seed %llu\n", (unsigned long long)k_seed);
  test_invalid_params();
  test_greedy_and_edges();
  test_probs();
  test_determinism();
  test_chi_square();
  test_large_vocab();
  TEST_MAIN_END();
}
