/* backend (CPU reference ops): each op against a float64 reference on random inputs
 * (Philox, seed printed) under the flash-attention rule: the op's max error against
 * fp64 is at most 2x the max error of a naive fp32 implementation written here, plus
 * one fp32 rounding: of the largest |ref| for absolute errors; for dlogits, errors
 * relative to max(|ref|, |dlogp| * p) (an absolute floor set by the target's entry
 * would excuse any error in the tiny terms, and the target's entry cancels when p ~ 1). Also checks the gradient formula by
 * finite differences, thread-count independence (bit for bit), in-place use,
 * -inf/NaN rows, target range errors, parameter checks, memory ops and the registry. */
#include <float.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "srlm/backend.h"
#include "srlm/core.h"
#include "test.h"

static const uint64_t g_seed = 20240611u;
static uint32_t g_purpose; /* a fresh Philox stream per filled array */

static void fill_uniform(float *a, int64_t n, double lo, double hi) {
  uint32_t purpose = ++g_purpose;
  for (int64_t i = 0; i < n; i += 4) {
    srlm_philox_out o = srlm_rng_bits(g_seed, purpose, (uint32_t)(i >> 2), 0, 0);
    for (int64_t j = 0; j < 4 && i + j < n; j++)
      a[i + j] = (float)(lo + (hi - lo) * srlm_rng_u01d(o.v[j], o.v[(j + 1) & 3]));
  }
}

static uint32_t rand_below(uint32_t n, uint32_t i) {
  return srlm_rng_bits(g_seed, 0xbacc, i, 0, 0).v[0] % n;
}

/* Max |got - ref|, divided by denom[i] where given and not 0; infinite on a NaN. */
static double max_err(const float *got, const double *ref, const double *denom, int64_t n) {
  double e = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - ref[i]);
    if (denom && denom[i] != 0) d /= denom[i];
    if (isnan(d)) return INFINITY;
    if (d > e) e = d;
  }
  return e;
}

/* denom: NULL for absolute errors, else the per-entry magnitude errors are relative to. */
static void expect_rule(const char *what, const float *got, const float *naive, const double *ref,
                        const double *denom, int64_t n) {
  double scale = 0; /* what 1 ulp is relative to */
  for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
  if (denom) scale = 1;
  double e = max_err(got, ref, denom, n), en = max_err(naive, ref, denom, n);
  double tol = 2 * en + FLT_EPSILON * scale;
  fprintf(stderr, "  %-44s %s err %.3e  naive %.3e  tol %.3e\n", what, denom ? "rel" : "abs", e, en, tol);
  EXPECT(e <= tol, "%s: error %.3e exceeds 2 x naive %.3e + 1 ulp (tol %.3e)", what, e, en, tol);
}

/* ---- RMSNorm ------------------------------------------------------------ */

static void rmsnorm_ref(const float *x, const float *w, int64_t N, int64_t C, float eps,
                        double *out, double *rstd) {
  for (int64_t n = 0; n < N; n++) {
    double ss = 0;
    for (int64_t c = 0; c < C; c++) ss += (double)x[n * C + c] * x[n * C + c];
    double r = 1.0 / sqrt(ss / (double)C + eps);
    for (int64_t c = 0; c < C; c++) out[n * C + c] = x[n * C + c] * r * w[c];
    rstd[n] = r;
  }
}

static void rmsnorm_naive(const float *x, const float *w, int64_t N, int64_t C, float eps,
                          float *out, float *rstd) {
  for (int64_t n = 0; n < N; n++) {
    float ss = 0;
    for (int64_t c = 0; c < C; c++) ss += x[n * C + c] * x[n * C + c];
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    for (int64_t c = 0; c < C; c++) out[n * C + c] = x[n * C + c] * r * w[c];
    rstd[n] = r;
  }
}

static void test_rmsnorm(const srlm_backend_ops *be) {
  static const struct { int64_t N, C; double amp; float eps; } cases[] = {
      {1, 1, 1, 1e-6f},     {1, 768, 1, 1e-6f},   {7, 1000, 3, 1e-5f},
      {33, 4097, 1, 1e-6f}, {5, 515, 1e3, 1e-6f}, {4, 333, 1e-3, 1e-5f},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    int64_t N = cases[k].N, C = cases[k].C;
    float *x = srlm_xmalloc((size_t)(N * C) * sizeof *x), *w = srlm_xmalloc((size_t)C * sizeof *w);
    float *out = srlm_xmalloc((size_t)(N * C) * sizeof *out), *rstd = srlm_xmalloc((size_t)N * sizeof *rstd);
    float *nout = srlm_xmalloc((size_t)(N * C) * sizeof *nout), *nrstd = srlm_xmalloc((size_t)N * sizeof *nrstd);
    double *rout = srlm_xmalloc((size_t)(N * C) * sizeof *rout), *rrstd = srlm_xmalloc((size_t)N * sizeof *rrstd);
    fill_uniform(x, N * C, -cases[k].amp, cases[k].amp);
    fill_uniform(w, C, 0.5, 1.5);
    srlm_rmsnorm_params p = {.out = out, .rstd = rstd, .x = x, .w = w, .N = N, .C = C, .eps = cases[k].eps};
    EXPECT_EQ_INT(be->rmsnorm_forward(p), SRLM_OK);
    rmsnorm_ref(x, w, N, C, cases[k].eps, rout, rrstd);
    rmsnorm_naive(x, w, N, C, cases[k].eps, nout, nrstd);
    char what[96];
    snprintf(what, sizeof what, "rmsnorm out  N=%lld C=%lld amp=%g", (long long)N, (long long)C, cases[k].amp);
    expect_rule(what, out, nout, rout, NULL, N * C);
    snprintf(what, sizeof what, "rmsnorm rstd N=%lld C=%lld amp=%g", (long long)N, (long long)C, cases[k].amp);
    expect_rule(what, rstd, nrstd, rrstd, NULL, N);

    /* in place (out == x) gives the same bits; rstd may be omitted */
    memcpy(nout, x, (size_t)(N * C) * sizeof *x);
    p.x = nout;
    p.out = nout;
    p.rstd = NULL;
    EXPECT_EQ_INT(be->rmsnorm_forward(p), SRLM_OK);
    EXPECT(memcmp(nout, out, (size_t)(N * C) * sizeof *out) == 0, "in-place rmsnorm differs (N=%lld C=%lld)",
           (long long)N, (long long)C);
    free(x), free(w), free(out), free(rstd), free(nout), free(nrstd), free(rout), free(rrstd);
  }
}

/* ---- log-prob gather ---------------------------------------------------- */

static void logprob_ref(const float *z, const int32_t *t, int64_t N, int64_t V, double *logp,
                        double *lse) {
  for (int64_t n = 0; n < N; n++) {
    const float *r = z + n * V;
    double m = -INFINITY, s = 0;
    for (int64_t v = 0; v < V; v++) m = fmax(m, r[v]);
    for (int64_t v = 0; v < V; v++) s += exp((double)r[v] - m);
    logp[n] = ((double)r[t[n]] - m) - log(s);
    lse[n] = m + log(s);
  }
}

/* Two passes (max, then sum) in fp32: what one writes without thinking about it. */
static void logprob_naive(const float *z, const int32_t *t, int64_t N, int64_t V, float *logp,
                          float *lse) {
  for (int64_t n = 0; n < N; n++) {
    const float *r = z + n * V;
    float m = -INFINITY, s = 0;
    for (int64_t v = 0; v < V; v++) m = r[v] > m ? r[v] : m;
    for (int64_t v = 0; v < V; v++) s += expf(r[v] - m);
    logp[n] = (r[t[n]] - m) - logf(s);
    lse[n] = m + logf(s);
  }
}

/* Targets: the row's argmax, its argmin (among unmasked ids), or a random unmasked id. */
static void pick_targets(const float *z, int64_t N, int64_t V, int32_t *t) {
  for (int64_t n = 0; n < N; n++) {
    const float *r = z + n * V;
    int64_t best = -1;
    for (int64_t v = 0; v < V; v++) {
      if (r[v] == -INFINITY) continue;
      if (best < 0 || (n % 3 == 0 && r[v] > r[best]) || (n % 3 == 1 && r[v] < r[best])) best = v;
    }
    if (n % 3 == 2)
      do best = rand_below((uint32_t)V, (uint32_t)(n * 7919 + best)); while (r[best] == -INFINITY);
    t[n] = (int32_t)best;
  }
}

static void test_logprob(const srlm_backend_ops *be) {
  static const struct { int64_t N, V; double lo, hi; int mask; } cases[] = {
      {1, 1, -1, 1, 0},         {1, 7, -5, 5, 0},          {4, 1000, -10, 10, 0},
      {3, 32003, -20, 20, 0},   {65, 257, -1, 1, 0},       {2, 151937, -15, 15, 0},
      {8, 5003, -1e4, 1e4, 0},  {8, 5003, 1e4, 1e4 + 8, 0}, {8, 5003, -1e4 - 8, -1e4, 0},
      {6, 999, -10, 10, 1},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    int64_t N = cases[k].N, V = cases[k].V;
    float *z = srlm_xmalloc((size_t)(N * V) * sizeof *z);
    int32_t *t = srlm_xmalloc((size_t)N * sizeof *t);
    float *logp = srlm_xmalloc((size_t)N * sizeof *logp), *lse = srlm_xmalloc((size_t)N * sizeof *lse);
    float *nlogp = srlm_xmalloc((size_t)N * sizeof *nlogp), *nlse = srlm_xmalloc((size_t)N * sizeof *nlse);
    double *rlogp = srlm_xmalloc((size_t)N * sizeof *rlogp), *rlse = srlm_xmalloc((size_t)N * sizeof *rlse);
    fill_uniform(z, N * V, cases[k].lo, cases[k].hi);
    if (cases[k].mask)
      for (int64_t i = 0; i < N * V; i += 3) z[i] = -INFINITY;
    pick_targets(z, N, V, t);
    srlm_logprob_params p = {.logp = logp, .lse = lse, .logits = z, .targets = t, .N = N, .V = V};
    EXPECT_EQ_INT(be->logprob_forward(p), SRLM_OK);
    logprob_ref(z, t, N, V, rlogp, rlse);
    logprob_naive(z, t, N, V, nlogp, nlse);
    char what[96];
    snprintf(what, sizeof what, "logprob logp N=%lld V=%lld [%g,%g]%s", (long long)N, (long long)V,
             cases[k].lo, cases[k].hi, cases[k].mask ? " masked" : "");
    expect_rule(what, logp, nlogp, rlogp, NULL, N);
    snprintf(what, sizeof what, "logprob lse  N=%lld V=%lld [%g,%g]%s", (long long)N, (long long)V,
             cases[k].lo, cases[k].hi, cases[k].mask ? " masked" : "");
    expect_rule(what, lse, nlse, rlse, NULL, N);

    /* backward from the op's own lse; one row with dlogp = 0 (a masked token) */
    float *g = srlm_xmalloc((size_t)N * sizeof *g), *dz = srlm_xmalloc((size_t)(N * V) * sizeof *dz);
    float *ndz = srlm_xmalloc((size_t)(N * V) * sizeof *ndz);
    double *rdz = srlm_xmalloc((size_t)(N * V) * sizeof *rdz), *pdz = srlm_xmalloc((size_t)(N * V) * sizeof *pdz);
    fill_uniform(g, N, -2, 2);
    if (N > 1) g[N - 1] = 0.0f;
    srlm_logprob_bwd_params b = {.dlogits = dz, .logits = z, .lse = lse, .dlogp = g, .targets = t, .N = N, .V = V};
    EXPECT_EQ_INT(be->logprob_backward(b), SRLM_OK);
    for (int64_t n = 0; n < N; n++)
      for (int64_t v = 0; v < V; v++) {
        double pv = exp((double)z[n * V + v] - (double)lse[n]);
        rdz[n * V + v] = (double)g[n] * ((v == t[n] ? 1.0 : 0.0) - pv);
        pdz[n * V + v] = fmax(fabs(rdz[n * V + v]), fabs((double)g[n]) * pv);
        ndz[n * V + v] = g[n] * ((v == t[n] ? 1.0f : 0.0f) - expf(z[n * V + v] - lse[n]));
      }
    snprintf(what, sizeof what, "logprob bwd  N=%lld V=%lld [%g,%g]%s", (long long)N, (long long)V,
             cases[k].lo, cases[k].hi, cases[k].mask ? " masked" : "");
    expect_rule(what, dz, ndz, rdz, pdz, N * V);
    int zero_row = 1;
    for (int64_t v = 0; v < V && N > 1; v++) zero_row &= dz[(N - 1) * V + v] == 0.0f;
    EXPECT(zero_row, "dlogp = 0 must give a zero gradient row (N=%lld V=%lld)", (long long)N, (long long)V);

    /* in place: dlogits over the logits */
    memcpy(ndz, z, (size_t)(N * V) * sizeof *z);
    b.dlogits = ndz;
    b.logits = ndz;
    EXPECT_EQ_INT(be->logprob_backward(b), SRLM_OK);
    EXPECT(memcmp(ndz, dz, (size_t)(N * V) * sizeof *dz) == 0, "in-place backward differs (N=%lld V=%lld)",
           (long long)N, (long long)V);
    free(z), free(t), free(logp), free(lse), free(nlogp), free(nlse), free(rlogp), free(rlse);
    free(g), free(dz), free(ndz), free(rdz), free(pdz);
  }
}

/* The reference gradient formula is the derivative of the reference log-prob:
 * central differences in float64 with h = 1e-5 are exact to ~h^2 + eps/h ~ 1e-10. */
static double logp64(const double *z, int V, int t) {
  double m = -INFINITY, s = 0;
  for (int v = 0; v < V; v++) m = fmax(m, z[v]);
  for (int v = 0; v < V; v++) s += exp(z[v] - m);
  return z[t] - m - log(s);
}

static void test_gradient_formula(void) {
  enum { V = 7 };
  const int t = 4;
  double z[V] = {0.3, -1.2, 2.5, 0.0, 1.1, -0.7, 2.4}, lse = 0;
  for (int v = 0; v < V; v++) lse += exp(z[v]);
  lse = log(lse);
  for (int v = 0; v < V; v++) {
    const double h = 1e-5, z0 = z[v];
    z[v] = z0 + h;
    double up = logp64(z, V, t);
    z[v] = z0 - h;
    double dn = logp64(z, V, t);
    z[v] = z0;
    double fd = (up - dn) / (2 * h), formula = (v == t ? 1.0 : 0.0) - exp(z[v] - lse);
    EXPECT_NEAR(fd, formula, 1e-8);
  }
}

/* ---- special rows, threads --------------------------------------------- */

static void test_special_rows(const srlm_backend_ops *be) {
  enum { V = 5 };
  float z[3 * V] = {1, 2, NAN, 0, 1,                                   /* NaN propagates */
                    -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, /* no distribution */
                    -INFINITY, 0, 0, -INFINITY, 0};                    /* target masked */
  int32_t t[3] = {0, 2, 0};
  float logp[3], lse[3];
  srlm_logprob_params p = {.logp = logp, .lse = lse, .logits = z, .targets = t, .N = 3, .V = V};
  EXPECT_EQ_INT(be->logprob_forward(p), SRLM_OK);
  EXPECT(isnan(logp[0]), "a NaN logit gave logp %g", (double)logp[0]);
  EXPECT(isnan(logp[1]), "an all -inf row gave logp %g", (double)logp[1]);
  EXPECT(logp[2] == -INFINITY, "a masked target gave logp %g", (double)logp[2]);
  EXPECT_NEAR(lse[2], log(3.0), 1e-6);
}

static int run_all_ops(const srlm_backend_ops *be, const float *x, const float *w, const float *z,
                       const int32_t *t, const float *g, int64_t N, int64_t C, int64_t V, float *out) {
  /* out: (N*C) rmsnorm | (N) rstd | (N) logp | (N) lse | (N*V) dlogits */
  float *rstd = out + N * C, *logp = rstd + N, *lse = logp + N, *dz = lse + N;
  srlm_rmsnorm_params r = {.out = out, .rstd = rstd, .x = x, .w = w, .N = N, .C = C, .eps = 1e-6f};
  srlm_logprob_params f = {.logp = logp, .lse = lse, .logits = z, .targets = t, .N = N, .V = V};
  srlm_logprob_bwd_params b = {.dlogits = dz, .logits = z, .lse = lse, .dlogp = g, .targets = t, .N = N, .V = V};
  return be->rmsnorm_forward(r) == SRLM_OK && be->logprob_forward(f) == SRLM_OK &&
         be->logprob_backward(b) == SRLM_OK;
}

static void test_thread_independence(const srlm_backend_ops *be) {
#ifdef _OPENMP
  const int64_t N = 37, C = 515, V = 3001, n_out = N * C + 3 * N + N * V;
  float *x = srlm_xmalloc((size_t)(N * C) * 4), *w = srlm_xmalloc((size_t)C * 4);
  float *z = srlm_xmalloc((size_t)(N * V) * 4), *g = srlm_xmalloc((size_t)N * 4);
  int32_t *t = srlm_xmalloc((size_t)N * 4);
  float *o1 = srlm_xmalloc((size_t)n_out * 4), *o3 = srlm_xmalloc((size_t)n_out * 4);
  fill_uniform(x, N * C, -2, 2);
  fill_uniform(w, C, 0.5, 1.5);
  fill_uniform(z, N * V, -30, 30);
  fill_uniform(g, N, -1, 1);
  pick_targets(z, N, V, t);
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  EXPECT(run_all_ops(be, x, w, z, t, g, N, C, V, o1), "ops failed with 1 thread: %s", srlm_error_message());
  omp_set_num_threads(3);
  EXPECT(run_all_ops(be, x, w, z, t, g, N, C, V, o3), "ops failed with 3 threads: %s", srlm_error_message());
  omp_set_num_threads(saved);
  int64_t first = -1;
  for (int64_t i = 0; i < n_out && first < 0; i++)
    if (memcmp(&o1[i], &o3[i], 4) != 0) first = i;
  EXPECT(first < 0, "1 vs 3 threads differ first at output %lld: %.9g vs %.9g", (long long)first,
         first < 0 ? 0.0 : (double)o1[first], first < 0 ? 0.0 : (double)o3[first]);
  free(x), free(w), free(z), free(g), free(t), free(o1), free(o3);
#else
  (void)be;
  fprintf(stderr, "  (built without OpenMP: thread-count check not applicable)\n");
#endif
}

/* ---- errors ------------------------------------------------------------- */

static void test_errors(const srlm_backend_ops *be) {
  enum { N = 5, V = 1000 };
  float *z = srlm_xcalloc(N * V, sizeof *z), logp[N], lse[N], g[N] = {1, 1, 1, 1, 1};
  int32_t t[N] = {0, 1, 2, V, 4};
  for (int n = 0; n < N; n++) logp[n] = 123.0f;
  srlm_logprob_params p = {.logp = logp, .lse = lse, .logits = z, .targets = t, .N = N, .V = V};
  EXPECT_EQ_INT(be->logprob_forward(p), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu logprob_forward: row 3: target id 1000 out of range [0, 1000)");
  EXPECT(logp[0] == 123.0f, "logp written before the targets were checked: %g", (double)logp[0]);

  t[3] = 3;
  t[0] = -1;
  srlm_logprob_bwd_params b = {.dlogits = z, .logits = z, .lse = lse, .dlogp = g, .targets = t, .N = N, .V = V};
  EXPECT_EQ_INT(be->logprob_backward(b), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu logprob_backward: row 0: target id -1 out of range [0, 1000)");

  t[0] = 0;
  p.logits = NULL;
  EXPECT_EQ_INT(be->logprob_forward(p), SRLM_ERR_INTERNAL);
  EXPECT_STR_EQ(srlm_error_message(), "cpu logprob_forward: logits is NULL");
  p.logits = z;
  p.V = 0;
  EXPECT_EQ_INT(be->logprob_forward(p), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "cpu logprob_forward: V = 0 out of range [1, 2147483647]");
  p.V = V;
  p.N = -1;
  EXPECT_EQ_INT(be->logprob_forward(p), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu logprob_forward: N = -1 rows is negative");
  p.N = 0; /* no rows: nothing to do */
  EXPECT_EQ_INT(be->logprob_forward(p), SRLM_OK);

  float w[4] = {1, 1, 1, 1};
  srlm_rmsnorm_params r = {.out = z, .rstd = NULL, .x = z, .w = w, .N = 2, .C = 4, .eps = 0.0f};
  EXPECT_EQ_INT(be->rmsnorm_forward(r), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu rmsnorm_forward: eps = 0 must be finite and > 0");
  r.eps = 1e-6f;
  r.C = 0;
  EXPECT_EQ_INT(be->rmsnorm_forward(r), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "C = 0 out of range");
  free(z);
}

static void test_memory(const srlm_backend_ops *be) {
  void *p = (void *)1;
  EXPECT_EQ_INT(be->alloc(&p, 0), SRLM_OK);
  EXPECT(p == NULL, "alloc of 0 bytes gave %p", p);
  EXPECT_EQ_INT(be->free(NULL), SRLM_OK);
  float host[100], back[100];
  for (int i = 0; i < 100; i++) host[i] = (float)i + 0.5f;
  void *a = NULL, *b = NULL;
  EXPECT_EQ_INT(be->alloc(&a, sizeof host), SRLM_OK);
  EXPECT_EQ_INT(be->alloc(&b, sizeof host), SRLM_OK);
  EXPECT(((uintptr_t)a & 63) == 0, "alloc not 64-byte aligned: %p", a);
  EXPECT_EQ_INT(be->copy_h2d(a, host, sizeof host), SRLM_OK);
  EXPECT_EQ_INT(be->copy_d2d(b, a, sizeof host), SRLM_OK);
  EXPECT_EQ_INT(be->zero(a, sizeof host), SRLM_OK);
  EXPECT_EQ_INT(be->copy_d2h(back, b, sizeof host), SRLM_OK);
  EXPECT(memcmp(back, host, sizeof host) == 0, "h2d, d2d, d2h round trip changed the data");
  EXPECT_EQ_INT(be->copy_d2h(back, a, sizeof host), SRLM_OK);
  EXPECT(back[0] == 0.0f && back[99] == 0.0f, "zero left %g %g", (double)back[0], (double)back[99]);
  EXPECT_EQ_INT(be->sync(), SRLM_OK);
  EXPECT_EQ_INT(be->zero(NULL, 4), SRLM_ERR_INTERNAL);
  EXPECT_CONTAINS(srlm_error_message(), "cpu zero: NULL destination for 4 bytes");
  be->free(a);
  be->free(b);
}

static void test_registry(void) {
  const srlm_backend_ops *be = NULL;
  EXPECT_EQ_INT(srlm_backend_find("cpu", &be), SRLM_OK);
  EXPECT(be == srlm_backend_cpu(), "find(cpu) gave another table");
  EXPECT_EQ_INT(srlm_backend_find("cuda", &be), SRLM_ERR_UNSUPPORTED);
  EXPECT(be == NULL, "a failed find left a table");
  EXPECT_CONTAINS(srlm_error_message(), "backend: 'cuda' is not available: this program was built without the CUDA backend");

  static srlm_backend_ops fake, other; /* the registry keeps the pointer */
  fake = *srlm_backend_cpu();
  other = *srlm_backend_cpu();
  fake.name = "fake";
  other.name = "fake";
  EXPECT_EQ_INT(srlm_backend_register(&fake), SRLM_OK);
  EXPECT_EQ_INT(srlm_backend_register(&fake), SRLM_OK);
  EXPECT_EQ_INT(srlm_backend_register(&other), SRLM_ERR_INTERNAL);
  EXPECT_CONTAINS(srlm_error_message(), "another backend is already registered as 'fake'");
  other.name = "cpu";
  EXPECT_EQ_INT(srlm_backend_register(&other), SRLM_ERR_INTERNAL);
  EXPECT_EQ_INT(srlm_backend_find("fake", &be), SRLM_OK);
  EXPECT(be == &fake, "find(fake) gave another table");
  EXPECT_EQ_INT(srlm_backend_find("tpu", &be), SRLM_ERR_CONFIG);
  EXPECT_STR_EQ(srlm_error_message(), "backend: unknown backend 'tpu' (available: cpu, fake)");
}

int main(void) {
  fprintf(stderr, "seed %llu\n", (unsigned long long)g_seed);
  const srlm_backend_ops *be = srlm_backend_cpu();
  EXPECT_STR_EQ(be->name, "cpu");
  EXPECT_EQ_INT(be->init(-1), SRLM_OK);
  test_rmsnorm(be);
  test_logprob(be);
  test_gradient_formula();
  test_special_rows(be);
  test_thread_independence(be);
  test_errors(be);
  test_memory(be);
  test_registry();
  EXPECT_EQ_INT(be->shutdown(), SRLM_OK);
  TEST_MAIN_END();
}
