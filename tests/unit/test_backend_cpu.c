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
#include <stdlib.h>
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

static void test_rmsnorm(srlm_backend *be) {
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
    EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_forward, p), SRLM_OK);
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
    EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_forward, p), SRLM_OK);
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

/* The LM head with x = I_N (C = N) and W = z^T (V x N): the chunk GEMM's logits are
 * exactly z (each is one product by 1 in an fma chain of zeros), so the fused op is
 * checked on chosen logits, at any V. */
typedef struct head_io {
  float *x, *w; /* (N, N) identity, (V, N) = z^T */
} head_io;

static head_io head_inputs(const float *z, int64_t N, int64_t V) {
  head_io h = {srlm_xcalloc((size_t)(N * N), sizeof(float)), srlm_xmalloc((size_t)(V * N) * sizeof(float))};
  for (int64_t n = 0; n < N; n++) h.x[n * N + n] = 1.0f;
  for (int64_t n = 0; n < N; n++)
    for (int64_t v = 0; v < V; v++) h.w[v * N + n] = z[n * V + v];
  return h;
}

static void test_logprob(srlm_backend *be) {
  static const struct { int64_t N, V; double lo, hi; } cases[] = {
      {1, 1, -1, 1},          {1, 7, -5, 5},           {4, 1000, -10, 10},       {3, 32003, -20, 20},
      {65, 257, -1, 1},       {2, 151937, -15, 15},    {8, 5003, -1e4, 1e4},     {8, 5003, 1e4, 1e4 + 8},
      {8, 5003, -1e4 - 8, -1e4}, {3, 16411, -30, 30}, /* three vocabulary chunks of the op, the last partial */
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    int64_t N = cases[k].N, V = cases[k].V;
    float *z = srlm_xmalloc((size_t)(N * V) * sizeof *z);
    int32_t *t = srlm_xmalloc((size_t)N * sizeof *t);
    float *logp = srlm_xmalloc((size_t)N * sizeof *logp), *lse = srlm_xmalloc((size_t)N * sizeof *lse);
    float *nlogp = srlm_xmalloc((size_t)N * sizeof *nlogp), *nlse = srlm_xmalloc((size_t)N * sizeof *nlse);
    double *rlogp = srlm_xmalloc((size_t)N * sizeof *rlogp), *rlse = srlm_xmalloc((size_t)N * sizeof *rlse);
    fill_uniform(z, N * V, cases[k].lo, cases[k].hi);
    pick_targets(z, N, V, t);
    head_io h = head_inputs(z, N, V);
    srlm_lmhead_params p = {.logp = logp, .lse = lse, .x = h.x, .w = h.w, .targets = t, .N = N, .C = N, .V = V};
    EXPECT_EQ_INT(SRLM_OP(be, lmhead_forward, p), SRLM_OK);
    logprob_ref(z, t, N, V, rlogp, rlse);
    logprob_naive(z, t, N, V, nlogp, nlse);
    char what[96];
    snprintf(what, sizeof what, "lmhead logp N=%lld V=%lld [%g,%g]", (long long)N, (long long)V, cases[k].lo,
             cases[k].hi);
    expect_rule(what, logp, nlogp, rlogp, NULL, N);
    snprintf(what, sizeof what, "lmhead lse  N=%lld V=%lld [%g,%g]", (long long)N, (long long)V, cases[k].lo,
             cases[k].hi);
    expect_rule(what, lse, nlse, rlse, NULL, N);

    /* backward from the op's own lse; one row with dlogp = 0 (no target): dW = dz^T x
     * is dz^T itself, dx = dz W */
    float *g = srlm_xmalloc((size_t)N * sizeof *g), *dw = srlm_xcalloc((size_t)(V * N), sizeof *dw);
    float *dx = srlm_xmalloc((size_t)(N * N) * sizeof *dx);
    float *ndz = srlm_xmalloc((size_t)(N * V) * sizeof *ndz), *dz = srlm_xmalloc((size_t)(N * V) * sizeof *dz);
    double *rdz = srlm_xmalloc((size_t)(N * V) * sizeof *rdz), *pdz = srlm_xmalloc((size_t)(N * V) * sizeof *pdz);
    fill_uniform(g, N, -2, 2);
    if (N > 1) {
      g[N - 1] = 0.0f;
      t[N - 1] = -1;
    }
    srlm_lmhead_bwd_params b = {.dx = dx, .dw = dw, .x = h.x, .w = h.w, .lse = lse, .dlogp = g, .targets = t, .N = N,
                                .C = N, .V = V};
    EXPECT_EQ_INT(SRLM_OP(be, lmhead_backward, b), SRLM_OK);
    for (int64_t n = 0; n < N; n++)
      for (int64_t v = 0; v < V; v++) {
        double pv = exp((double)z[n * V + v] - (double)lse[n]);
        rdz[n * V + v] = (double)g[n] * ((v == t[n] ? 1.0 : 0.0) - pv);
        pdz[n * V + v] = fmax(fabs(rdz[n * V + v]), fabs((double)g[n]) * pv);
        ndz[n * V + v] = g[n] * ((v == t[n] ? 1.0f : 0.0f) - expf(z[n * V + v] - lse[n]));
        dz[n * V + v] = dw[v * N + n];
      }
    snprintf(what, sizeof what, "lmhead bwd  N=%lld V=%lld [%g,%g]", (long long)N, (long long)V, cases[k].lo,
             cases[k].hi);
    expect_rule(what, dz, ndz, rdz, pdz, N * V);
    int zero_row = 1;
    for (int64_t v = 0; v < V && N > 1; v++) zero_row &= dz[(N - 1) * V + v] == 0.0f;
    EXPECT(zero_row, "dlogp = 0 must give a zero gradient row (N=%lld V=%lld)", (long long)N, (long long)V);
    free(z), free(t), free(logp), free(lse), free(nlogp), free(nlse), free(rlogp), free(rlse);
    free(g), free(dz), free(ndz), free(rdz), free(pdz), free(dw), free(dx), free(h.x), free(h.w);
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

/* One row each call: with x = I, a NaN logit of one row would reach the others through
 * 0 * NaN in their products. */
static void test_special_rows(srlm_backend *be) {
  enum { V = 5 };
  const float rows[2][V] = {{1, 2, NAN, 0, 1},  /* NaN propagates */
                            {3, 0, 0, -1, 0}};  /* no target: logp 0, lse still computed */
  const int32_t targets[2] = {0, -1};
  float logp[2], lse[2];
  for (int r = 0; r < 2; r++) {
    head_io h = head_inputs(rows[r], 1, V);
    srlm_lmhead_params p = {.logp = &logp[r], .lse = &lse[r], .x = h.x, .w = h.w, .targets = &targets[r], .N = 1,
                            .C = 1, .V = V};
    EXPECT_EQ_INT(SRLM_OP(be, lmhead_forward, p), SRLM_OK);
    free(h.x), free(h.w);
  }
  EXPECT(isnan(logp[0]), "a NaN logit gave logp %g", (double)logp[0]);
  EXPECT(logp[1] == 0.0f, "a row without target gave logp %g", (double)logp[1]);
  EXPECT_NEAR(lse[1], log(exp(3.0) + 3.0 + exp(-1.0)), 1e-5);
}

static int run_all_ops(srlm_backend *be, const float *x, const float *w, const float *z, const int32_t *t,
                       const float *g, int64_t N, int64_t C, int64_t V, float *out) {
  /* out: (N*C) rmsnorm | (N) rstd | (N) logp | (N) lse | (V*N) dW | (N*N) dx */
  float *rstd = out + N * C, *logp = rstd + N, *lse = logp + N, *dw = lse + N, *dx = dw + V * N;
  head_io h = head_inputs(z, N, V);
  memset(dw, 0, (size_t)(V * N) * sizeof *dw);
  srlm_rmsnorm_params r = {.out = out, .rstd = rstd, .x = x, .w = w, .N = N, .C = C, .eps = 1e-6f};
  srlm_lmhead_params f = {.logp = logp, .lse = lse, .x = h.x, .w = h.w, .targets = t, .N = N, .C = N, .V = V};
  srlm_lmhead_bwd_params b = {.dx = dx, .dw = dw, .x = h.x, .w = h.w, .lse = lse, .dlogp = g, .targets = t, .N = N,
                              .C = N, .V = V};
  int ok = SRLM_OP(be, rmsnorm_forward, r) == SRLM_OK && SRLM_OP(be, lmhead_forward, f) == SRLM_OK &&
           SRLM_OP(be, lmhead_backward, b) == SRLM_OK;
  free(h.x), free(h.w);
  return ok;
}

static void test_thread_independence(srlm_backend *be) {
#ifdef _OPENMP
  const int64_t N = 37, C = 515, V = 3001, n_out = N * C + 3 * N + V * N + N * N;
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

/* ---- transformer ops ------------------------------------------------------ */

static float *fbuf(int64_t n) { return srlm_xcalloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static double *dbuf(int64_t n) { return srlm_xcalloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

/* Index of the first differing float, -1 when all n are the same bits. */
static int64_t first_diff(const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], sizeof *a) != 0) return i;
  return -1;
}

#define EXPECT_SAME_BITS(a, b, n, ...)                                                         \
  do {                                                                                         \
    int64_t fd_ = first_diff((a), (b), (n));                                                   \
    if (fd_ >= 0)                                                                              \
      fprintf(stderr, "  first difference at %lld: %.9g vs %.9g\n", (long long)fd_,           \
              (double)(a)[fd_], (double)(b)[fd_]);                                             \
    EXPECT(fd_ < 0, __VA_ARGS__);                                                              \
  } while (0)

/* op(A)(m,k) and op(B)(k,n) of the matmul layouts */
static float mat_a(const srlm_matmul_params *p, int64_t m, int64_t k) {
  const float *a = p->a;
  return p->trans_a ? a[k * p->lda + m] : a[m * p->lda + k];
}
static float mat_b(const srlm_matmul_params *p, int64_t k, int64_t n) {
  const float *b = p->b;
  return p->trans_b ? b[n * p->ldb + k] : b[k * p->ldb + n];
}

static void test_matmul(srlm_backend *be) {
  static const struct { int64_t M, N, K; int ta, tb, acc, bias, pad; } cases[] = {
      {1, 1, 1, 0, 1, 0, 0, 0},       {7, 5, 3, 0, 1, 0, 1, 0},        {33, 70, 300, 0, 1, 0, 0, 0},
      {200, 97, 513, 0, 0, 1, 0, 0},  {65, 130, 260, 1, 0, 1, 0, 0},    {9, 64, 1000, 0, 1, 0, 1, 3},
      {193, 40, 77, 1, 1, 1, 1, 5},   {3, 1, 0, 0, 1, 1, 1, 0},        {401, 33, 64, 0, 1, 0, 0, 2},
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    const int64_t M = cases[t].M, N = cases[t].N, K = cases[t].K, pad = cases[t].pad;
    srlm_matmul_params p = {.M = M, .N = N, .K = K, .trans_a = cases[t].ta, .trans_b = cases[t].tb,
                            .accumulate = cases[t].acc};
    p.lda = (cases[t].ta ? M : K) + pad;
    p.ldb = (cases[t].tb ? K : N) + pad;
    p.ldc = N + pad;
    const int64_t na = (cases[t].ta ? K : M) * p.lda, nb = (cases[t].tb ? N : K) * p.ldb, nc = M * p.ldc;
    float *a = fbuf(na), *b = fbuf(nb), *c0 = fbuf(nc), *bias = fbuf(N), *c = fbuf(nc), *naive = fbuf(nc);
    float *chain = fbuf(nc);
    double *ref = dbuf(nc);
    fill_uniform(a, na, -1, 1);
    fill_uniform(b, nb, -1, 1);
    fill_uniform(c0, nc, -1, 1);
    fill_uniform(bias, N, -1, 1);
    p.a = a, p.b = b, p.bias = cases[t].bias ? bias : NULL;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        const int64_t i = m * p.ldc + n;
        double r = cases[t].acc ? c0[i] : 0;
        float nv = cases[t].acc ? c0[i] : 0.0f, ch = nv;
        for (int64_t k = 0; k < K; k++) {
          r += (double)mat_a(&p, m, k) * mat_b(&p, k, n);
          nv += mat_a(&p, m, k) * mat_b(&p, k, n);
          ch = fmaf(mat_a(&p, m, k), mat_b(&p, k, n), ch);
        }
        if (p.bias) r += bias[n], nv += bias[n], ch += bias[n];
        ref[i] = r, naive[i] = nv, chain[i] = ch;
      }
    /* padding columns must be left alone */
    for (int64_t i = 0; i < nc; i++)
      if (i % p.ldc >= N) ref[i] = chain[i] = naive[i] = c0[i];
    static const char *const isas[] = {"avx512", "avx2", "generic"};
    for (int kk = 0; kk < 3; kk++) {
      if (srlm_backend_cpu_set_isa(isas[kk]) != SRLM_OK) continue; /* not on this CPU */
      memcpy(c, c0, (size_t)nc * sizeof *c);
      p.c = c;
      EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
      char what[128];
      snprintf(what, sizeof what, "matmul %s M=%lld N=%lld K=%lld ta=%d tb=%d acc=%d", isas[kk], (long long)M,
               (long long)N, (long long)K, cases[t].ta, cases[t].tb, cases[t].acc);
      expect_rule(what, c, naive, ref, NULL, nc);
      /* the rounding contract: one fma chain per element, whatever the kernel */
      EXPECT_SAME_BITS(c, chain, nc, "%s is not the fma chain", what);
    }
    EXPECT_EQ_INT(srlm_backend_cpu_set_isa(NULL), SRLM_OK);
    free(a), free(b), free(c0), free(bias), free(c), free(naive), free(chain), free(ref);
  }
  /* strides below the row length are refused; M = 0 is nothing to do */
  float x[4] = {0};
  srlm_matmul_params bad = {.c = x, .a = x, .b = x, .M = 2, .N = 2, .K = 2, .lda = 1};
  EXPECT_EQ_INT(SRLM_OP(be, matmul, bad), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "cpu matmul: row strides lda 1");
  srlm_matmul_params none = {.c = NULL, .M = 0, .N = 5, .K = 3};
  EXPECT_EQ_INT(SRLM_OP(be, matmul, none), SRLM_OK);
}

/* RMSNorm backward in float64, from the forward's formula. */
static void rmsnorm_bwd_ref(const float *x, const float *w, const float *dy, int64_t N, int64_t C, float eps,
                            double *dx, double *dw) {
  for (int64_t n = 0; n < N; n++) {
    double ss = 0, dot = 0;
    for (int64_t c = 0; c < C; c++) ss += (double)x[n * C + c] * x[n * C + c];
    const double r = 1.0 / sqrt(ss / (double)C + eps);
    for (int64_t c = 0; c < C; c++) dot += (double)w[c] * dy[n * C + c] * x[n * C + c];
    for (int64_t c = 0; c < C; c++) {
      dx[n * C + c] = r * ((double)w[c] * dy[n * C + c] - x[n * C + c] * r * r * dot / (double)C);
      dw[c] += (double)dy[n * C + c] * x[n * C + c] * r;
    }
  }
}

static double rmsnorm_loss64(const double *x, const float *w, const float *dy, int64_t C, float eps) {
  double ss = 0, l = 0;
  for (int64_t c = 0; c < C; c++) ss += x[c] * x[c];
  const double r = 1.0 / sqrt(ss / (double)C + eps);
  for (int64_t c = 0; c < C; c++) l += dy[c] * x[c] * r * w[c];
  return l;
}

static void test_rmsnorm_backward(srlm_backend *be) {
  static const struct { int64_t N, C; } cases[] = {{2, 8}, {3, 64}, {130, 257}, {17, 1024}};
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    const int64_t N = cases[t].N, C = cases[t].C;
    float *x = fbuf(N * C), *w = fbuf(C), *dy = fbuf(N * C), *y = fbuf(N * C), *rstd = fbuf(N);
    float *dx = fbuf(N * C), *dw = fbuf(C), *ndx = fbuf(N * C), *ndw = fbuf(C), *dw0 = fbuf(C);
    double *rdx = dbuf(N * C), *rdw = dbuf(C);
    fill_uniform(x, N * C, -2, 2);
    fill_uniform(w, C, 0.5, 1.5);
    fill_uniform(dy, N * C, -1, 1);
    fill_uniform(dw0, C, -1, 1);
    srlm_rmsnorm_params f = {.out = y, .rstd = rstd, .x = x, .w = w, .N = N, .C = C, .eps = 1e-6f};
    EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_forward, f), SRLM_OK);
    memcpy(dw, dw0, (size_t)C * sizeof *dw);
    srlm_rmsnorm_bwd_params b = {.dx = dx, .dw = dw, .dy = dy, .x = x, .w = w, .rstd = rstd, .N = N, .C = C};
    EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_backward, b), SRLM_OK);
    for (int64_t c = 0; c < C; c++) rdw[c] = dw0[c];
    rmsnorm_bwd_ref(x, w, dy, N, C, 1e-6f, rdx, rdw);
    /* naive fp32: the formula in floats, dw summed row after row */
    memcpy(ndw, dw0, (size_t)C * sizeof *ndw);
    for (int64_t n = 0; n < N; n++) {
      float dot = 0, r = rstd[n];
      for (int64_t c = 0; c < C; c++) dot += w[c] * dy[n * C + c] * x[n * C + c];
      for (int64_t c = 0; c < C; c++) {
        ndx[n * C + c] = r * (w[c] * dy[n * C + c] - x[n * C + c] * r * r * dot / (float)C);
        ndw[c] += dy[n * C + c] * x[n * C + c] * r;
      }
    }
    char what[96];
    snprintf(what, sizeof what, "rmsnorm bwd dx N=%lld C=%lld", (long long)N, (long long)C);
    expect_rule(what, dx, ndx, rdx, NULL, N * C);
    snprintf(what, sizeof what, "rmsnorm bwd dw N=%lld C=%lld (+= start)", (long long)N, (long long)C);
    expect_rule(what, dw, ndw, rdw, NULL, C);
    /* in place: dx over dy */
    memcpy(ndx, dy, (size_t)(N * C) * sizeof *ndx);
    memcpy(dw, dw0, (size_t)C * sizeof *dw);
    b.dx = ndx, b.dy = ndx;
    EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_backward, b), SRLM_OK);
    EXPECT_SAME_BITS(ndx, dx, N * C, "in-place rmsnorm backward (N=%lld C=%lld)", (long long)N, (long long)C);
    free(x), free(w), free(dy), free(y), free(rstd), free(dx), free(dw), free(ndx), free(ndw), free(dw0);
    free(rdx), free(rdw);
  }
  /* the reference formula is the derivative of the forward: central differences */
  enum { C = 6 };
  float w[C] = {0.7f, 1.2f, 0.9f, 1.4f, 1.0f, 0.6f}, dy[C] = {0.3f, -1.1f, 0.8f, 0.2f, -0.5f, 1.0f};
  float xf[C] = {0.5f, -1.5f, 0.25f, 2.0f, -0.75f, 1.0f};
  double x[C], rdx[C], rdw[C] = {0};
  rmsnorm_bwd_ref(xf, w, dy, 1, C, 1e-6f, rdx, rdw);
  for (int c = 0; c < C; c++) x[c] = xf[c];
  for (int c = 0; c < C; c++) {
    const double h = 1e-6;
    x[c] = xf[c] + h;
    double up = rmsnorm_loss64(x, w, dy, C, 1e-6f);
    x[c] = xf[c] - h;
    double dn = rmsnorm_loss64(x, w, dy, C, 1e-6f);
    x[c] = xf[c];
    EXPECT_NEAR((up - dn) / (2 * h), rdx[c], 1e-8);
  }
}

/* ---- RoPE ---- */

static void rope_ref(const float *x, const int32_t *pos, const float *inv_freq, int64_t N, int64_t H, int64_t HS,
                     double sign, double *out) {
  const int64_t half = HS / 2;
  for (int64_t n = 0; n < N; n++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t d = 0; d < half; d++) {
        const double a = (double)((float)pos[n] * inv_freq[d]); /* the fp32 angle, as transformers */
        const double c = cos(a), s = sign * sin(a);
        const float *r = x + (n * H + h) * HS;
        out[(n * H + h) * HS + d] = r[d] * c - r[d + half] * s;
        out[(n * H + h) * HS + d + half] = r[d + half] * c + r[d] * s;
      }
}

static void test_rope(srlm_backend *be) {
  static const struct { int64_t N, H, HS; } cases[] = {{1, 1, 2}, {5, 3, 8}, {70, 4, 64}, {9, 2, 128}};
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    const int64_t N = cases[t].N, H = cases[t].H, HS = cases[t].HS, n = N * H * HS;
    float *x = fbuf(n), *y = fbuf(n), *naive = fbuf(n), *inv = fbuf(HS / 2);
    double *ref = dbuf(n);
    int32_t *pos = srlm_xmalloc((size_t)N * sizeof *pos);
    fill_uniform(x, n, -1, 1);
    for (int64_t d = 0; d < HS / 2; d++) inv[d] = 1.0f / powf(10000.0f, (float)(2 * d) / (float)HS);
    for (int64_t i = 0; i < N; i++) pos[i] = (int32_t)(i * 37 % 2000);
    for (int dir = 0; dir < 2; dir++) {
      const double sign = dir ? -1.0 : 1.0;
      memcpy(y, x, (size_t)n * sizeof *y);
      srlm_rope_params p = {.x = y, .pos = pos, .inv_freq = inv, .N = N, .H = H, .HS = HS};
      EXPECT_EQ_INT(dir ? SRLM_OP(be, rope_backward, p) : SRLM_OP(be, rope_forward, p), SRLM_OK);
      rope_ref(x, pos, inv, N, H, HS, sign, ref);
      for (int64_t i = 0; i < N; i++)
        for (int64_t h = 0; h < H; h++)
          for (int64_t d = 0; d < HS / 2; d++) {
            const float a = (float)pos[i] * inv[d], c = cosf(a), s = (float)sign * sinf(a);
            const float *r = x + (i * H + h) * HS;
            naive[(i * H + h) * HS + d] = r[d] * c - r[d + HS / 2] * s;
            naive[(i * H + h) * HS + d + HS / 2] = r[d + HS / 2] * c + r[d] * s;
          }
      char what[96];
      snprintf(what, sizeof what, "rope %s N=%lld H=%lld HS=%lld", dir ? "bwd" : "fwd", (long long)N, (long long)H,
               (long long)HS);
      expect_rule(what, y, naive, ref, NULL, n);
    }
    /* the backward is the adjoint: <bwd(g), x> = <g, fwd(x)> (in float64 on the reference) */
    double *fx = dbuf(n), *bg = dbuf(n), l = 0, r = 0;
    float *g = fbuf(n);
    fill_uniform(g, n, -1, 1);
    rope_ref(x, pos, inv, N, H, HS, 1.0, fx);
    rope_ref(g, pos, inv, N, H, HS, -1.0, bg);
    for (int64_t i = 0; i < n; i++) l += bg[i] * x[i], r += g[i] * fx[i];
    EXPECT_NEAR(l, r, 1e-9 * (fabs(l) + 1));
    free(x), free(y), free(naive), free(inv), free(ref), free(pos), free(fx), free(bg), free(g);
  }
  int32_t bad_pos[1] = {-3};
  float xx[4] = {0}, inv[2] = {1, 1};
  srlm_rope_params p = {.x = xx, .pos = bad_pos, .inv_freq = inv, .N = 1, .H = 1, .HS = 4};
  EXPECT_EQ_INT(SRLM_OP(be, rope_forward, p), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu rope_forward: row 0: position -3 is negative");
  p.HS = 3;
  EXPECT_EQ_INT(SRLM_OP(be, rope_forward, p), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "head dim HS = 3 must be even");
}

/* ---- attention ---- */

/* Reference attention (and its gradients when dout is given) in the precision `real`:
 * float64 for the reference, float for the naive fp32 implementation of the rule. */
#define DEFINE_ATTN_REF(NAME, real, EXP, LOG)                                                              \
  static void NAME(const float *q, const float *k, const float *v, const int32_t *cu, int B, int64_t NH,     \
                   int64_t NKV, int64_t HS, int64_t W, float scale, const float *dout, real *out, real *dq,  \
                   real *dk, real *dv) {                                                                     \
    const int64_t rep = NH / NKV;                                                                            \
    for (int b = 0; b < B; b++) {                                                                            \
      const int64_t s0 = cu[b], L = cu[b + 1] - cu[b];                                                       \
      real *p = srlm_xcalloc((size_t)(L > 0 ? L : 1), sizeof(real));                                        \
      real *dp = srlm_xcalloc((size_t)(L > 0 ? L : 1), sizeof(real));                                       \
      for (int64_t h = 0; h < NH; h++) {                                                                     \
        const int64_t g = h / rep;                                                                           \
        for (int64_t i = 0; i < L; i++) {                                                                    \
          const float *qi = q + ((s0 + i) * NH + h) * HS;                                                    \
          const int64_t lo = W > 0 && i - W + 1 > 0 ? i - W + 1 : 0;                                         \
          real m = -INFINITY, sum = 0;                                                                       \
          for (int64_t j = lo; j <= i; j++) {                                                                \
            real s = 0;                                                                                      \
            for (int64_t d = 0; d < HS; d++) s += (real)qi[d] * k[((s0 + j) * NKV + g) * HS + d];            \
            p[j] = s * scale;                                                                                \
            m = p[j] > m ? p[j] : m;                                                                         \
          }                                                                                                  \
          for (int64_t j = lo; j <= i; j++) sum += (p[j] = EXP(p[j] - m));                                   \
          for (int64_t j = lo; j <= i; j++) p[j] /= sum;                                                     \
          real *o = out + ((s0 + i) * NH + h) * HS;                                                          \
          for (int64_t d = 0; d < HS; d++) {                                                                 \
            real acc = 0;                                                                                    \
            for (int64_t j = lo; j <= i; j++) acc += p[j] * v[((s0 + j) * NKV + g) * HS + d];                \
            o[d] = acc;                                                                                      \
          }                                                                                                  \
          if (!dout) continue;                                                                               \
          const float *go = dout + ((s0 + i) * NH + h) * HS;                                                 \
          real D = 0;                                                                                        \
          for (int64_t d = 0; d < HS; d++) D += (real)go[d] * o[d];                                          \
          for (int64_t j = lo; j <= i; j++) {                                                                \
            real s = 0;                                                                                      \
            for (int64_t d = 0; d < HS; d++) s += (real)go[d] * v[((s0 + j) * NKV + g) * HS + d];            \
            dp[j] = p[j] * (s - D) * scale;                                                                  \
            for (int64_t d = 0; d < HS; d++) {                                                               \
              dq[((s0 + i) * NH + h) * HS + d] += dp[j] * k[((s0 + j) * NKV + g) * HS + d];                  \
              dk[((s0 + j) * NKV + g) * HS + d] += dp[j] * qi[d];                                            \
              dv[((s0 + j) * NKV + g) * HS + d] += p[j] * go[d];                                             \
            }                                                                                                \
          }                                                                                                  \
        }                                                                                                    \
      }                                                                                                      \
      free(p), free(dp);                                                                                     \
    }                                                                                                        \
    (void)LOG;                                                                                               \
  }
DEFINE_ATTN_REF(attention_ref, double, exp, log)
DEFINE_ATTN_REF(attention_naive, float, expf, logf)

static void to_float(const double *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = (float)x[i];
}

static void test_attention(srlm_backend *be) {
  static const struct { int B; int32_t lens[4]; int64_t NH, NKV, HS, W; } cases[] = {
      {1, {1}, 1, 1, 2, 0},          {2, {5, 3}, 2, 1, 8, 0},          {3, {70, 1, 130}, 4, 2, 16, 0},
      {2, {100, 67}, 4, 4, 32, 17},  {1, {200}, 6, 2, 64, 64},         {4, {0, 9, 65, 2}, 2, 2, 4, 3},
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    const int B = cases[t].B;
    const int64_t NH = cases[t].NH, NKV = cases[t].NKV, HS = cases[t].HS, W = cases[t].W;
    int32_t cu[5] = {0};
    for (int b = 0; b < B; b++) cu[b + 1] = cu[b] + cases[t].lens[b];
    const int64_t T = cu[B], nq = T * NH * HS, nk = T * NKV * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    float *q = fbuf(nq), *k = fbuf(nk), *v = fbuf(nk), *out = fbuf(nq), *lse = fbuf(T * NH), *dout = fbuf(nq);
    float *dq = fbuf(nq), *dk = fbuf(nk), *dv = fbuf(nk);
    double *rout = dbuf(nq), *rdq = dbuf(nq), *rdk = dbuf(nk), *rdv = dbuf(nk);
    float *nout = fbuf(nq), *ndq = fbuf(nq), *ndk = fbuf(nk), *ndv = fbuf(nk);
    fill_uniform(q, nq, -2, 2);
    fill_uniform(k, nk, -2, 2);
    fill_uniform(v, nk, -1, 1);
    fill_uniform(dout, nq, -1, 1);
    srlm_attention_params p = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .cu_seqlens = cu, .B = B, .T = T,
                               .NH = NH, .NKV = NKV, .HS = HS, .window = W, .scale = scale};
    EXPECT_EQ_INT(SRLM_OP(be, attention_forward, p), SRLM_OK);
    attention_ref(q, k, v, cu, B, NH, NKV, HS, W, scale, dout, rout, rdq, rdk, rdv);
    attention_naive(q, k, v, cu, B, NH, NKV, HS, W, scale, dout, nout, ndq, ndk, ndv);
    char what[128];
    snprintf(what, sizeof what, "attention fwd B=%d T=%lld NH=%lld NKV=%lld HS=%lld W=%lld", B, (long long)T,
             (long long)NH, (long long)NKV, (long long)HS, (long long)W);
    expect_rule(what, out, nout, rout, NULL, nq);
    srlm_attention_bwd_params bp = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .out = out, .lse = lse, .q = q,
                                    .k = k, .v = v, .cu_seqlens = cu, .B = B, .T = T, .NH = NH, .NKV = NKV,
                                    .HS = HS, .window = W, .scale = scale};
    EXPECT_EQ_INT(SRLM_OP(be, attention_backward, bp), SRLM_OK);
    snprintf(what, sizeof what, "attention dq  T=%lld NH=%lld NKV=%lld W=%lld", (long long)T, (long long)NH,
             (long long)NKV, (long long)W);
    expect_rule(what, dq, ndq, rdq, NULL, nq);
    snprintf(what, sizeof what, "attention dk  T=%lld NH=%lld NKV=%lld W=%lld", (long long)T, (long long)NH,
             (long long)NKV, (long long)W);
    expect_rule(what, dk, ndk, rdk, NULL, nk);
    snprintf(what, sizeof what, "attention dv  T=%lld NH=%lld NKV=%lld W=%lld", (long long)T, (long long)NH,
             (long long)NKV, (long long)W);
    expect_rule(what, dv, ndv, rdv, NULL, nk);

    /* against a KV cache: every sequence in its own slot (reversed order), fed as a
     * prefill of its first half then one token at a time, gives the same bits */
    const int64_t max_len = 256, kvld = NKV * HS;
    float *kc = fbuf(B * max_len * kvld), *vc = fbuf(B * max_len * kvld), *kout = fbuf(nq);
    for (int b = 0; b < B; b++) {
      const int slot = B - 1 - b, L = cu[b + 1] - cu[b];
      memcpy(kc + slot * max_len * kvld, k + cu[b] * kvld, (size_t)(L * kvld) * sizeof(float));
      memcpy(vc + slot * max_len * kvld, v + cu[b] * kvld, (size_t)(L * kvld) * sizeof(float));
      int32_t done = 0;
      while (done < L) {
        const int32_t step = done == 0 ? (L + 1) / 2 : 1;
        int32_t sl[1] = {slot}, cq[2] = {0, step}, len[1] = {done + step};
        srlm_attention_kv_params kp = {.out = kout + (cu[b] + done) * NH * HS, .q = q + (cu[b] + done) * NH * HS,
                                       .k_cache = kc, .v_cache = vc, .slot = sl, .cu_q = cq, .kv_len = len, .n = 1,
                                       .NQ = step, .NH = NH, .NKV = NKV, .HS = HS, .max_slots = B,
                                       .max_len = max_len, .window = W, .scale = scale};
        EXPECT_EQ_INT(SRLM_OP(be, attention_kv, kp), SRLM_OK);
        done += step;
      }
    }
    EXPECT_SAME_BITS(kout, out, nq, "attention_kv vs attention_forward (case %zu)", t);
    free(kc), free(vc), free(kout);
    free(q), free(k), free(v), free(out), free(lse), free(dout), free(dq), free(dk), free(dv);
    free(rout), free(rdq), free(rdk), free(rdv), free(nout), free(ndq), free(ndk), free(ndv);
  }
  /* the reference gradients are the derivatives of the reference forward: central
   * differences of L = sum dout . out in float64 on a small case with a window */
  enum { T = 6, NH = 2, NKV = 1, HS = 4 };
  int32_t cu[3] = {0, 4, 6};
  float q[T * NH * HS], k[T * NKV * HS], v[T * NKV * HS], dout[T * NH * HS];
  fill_uniform(q, T * NH * HS, -1, 1);
  fill_uniform(k, T * NKV * HS, -1, 1);
  fill_uniform(v, T * NKV * HS, -1, 1);
  fill_uniform(dout, T * NH * HS, -1, 1);
  double out[T * NH * HS], dq[T * NH * HS] = {0}, dk[T * NKV * HS] = {0}, dv[T * NKV * HS] = {0};
  attention_ref(q, k, v, cu, 2, NH, NKV, HS, 3, 0.5f, dout, out, dq, dk, dv);
  float *arrays[3] = {q, k, v};
  double *grads[3] = {dq, dk, dv};
  const int sizes[3] = {T * NH * HS, T * NKV * HS, T * NKV * HS};
  double worst = 0;
  for (int a = 0; a < 3; a++)
    for (int i = 0; i < sizes[a]; i++) {
      /* a float input moved by +-h: the inputs are floats, so step in float and divide by the real step */
      const float x0 = arrays[a][i];
      const float hi = x0 + 1e-3f, lo = x0 - 1e-3f;
      double l[2];
      for (int s = 0; s < 2; s++) {
        arrays[a][i] = s ? lo : hi;
        double o2[T * NH * HS], z1[T * NH * HS], z2[T * NKV * HS], z3[T * NKV * HS];
        attention_ref(q, k, v, cu, 2, NH, NKV, HS, 3, 0.5f, NULL, o2, z1, z2, z3);
        l[s] = 0;
        for (int j = 0; j < T * NH * HS; j++) l[s] += dout[j] * o2[j];
      }
      arrays[a][i] = x0;
      const double fd = (l[0] - l[1]) / ((double)hi - (double)lo);
      worst = fmax(worst, fabs(fd - grads[a][i]));
    }
  fprintf(stderr, "  attention reference gradients vs central differences: max |diff| %.3e\n", worst);
  EXPECT(worst < 1e-6, "reference attention gradient off by %.3e from central differences", worst);
  (void)to_float;
}

/* ---- SwiGLU, add, colsum, embedding ---- */

static void test_swiglu(srlm_backend *be) {
  const int64_t N = 37, FF = 301, n = N * FF;
  float *g = fbuf(n), *u = fbuf(n), *h = fbuf(n), *dh = fbuf(n), *dg = fbuf(n), *du = fbuf(n);
  float *nh = fbuf(n), *ndg = fbuf(n), *ndu = fbuf(n);
  double *rh = dbuf(n), *rdg = dbuf(n), *rdu = dbuf(n);
  fill_uniform(g, n, -12, 12);
  fill_uniform(u, n, -2, 2);
  fill_uniform(dh, n, -1, 1);
  srlm_swiglu_params f = {.h = h, .gate = g, .up = u, .N = N, .FF = FF};
  EXPECT_EQ_INT(SRLM_OP(be, swiglu_forward, f), SRLM_OK);
  srlm_swiglu_bwd_params b = {.dgate = dg, .dup = du, .dh = dh, .gate = g, .up = u, .N = N, .FF = FF};
  EXPECT_EQ_INT(SRLM_OP(be, swiglu_backward, b), SRLM_OK);
  double worst_fd = 0;
  for (int64_t i = 0; i < n; i++) {
    const double s = 1.0 / (1.0 + exp(-(double)g[i]));
    rh[i] = g[i] * s * u[i];
    rdg[i] = dh[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
    rdu[i] = dh[i] * g[i] * s;
    const float sf = 1.0f / (1.0f + expf(-g[i]));
    nh[i] = g[i] * sf * u[i];
    ndg[i] = dh[i] * u[i] * (sf + g[i] * sf * (1.0f - sf));
    ndu[i] = dh[i] * g[i] * sf;
    /* derivative of the float64 forward by central differences */
    const double e = 1e-6, x = g[i];
    const double up = (x + e) / (1.0 + exp(-(x + e))), dn = (x - e) / (1.0 + exp(-(x - e)));
    worst_fd = fmax(worst_fd, fabs((up - dn) / (2 * e) * dh[i] * u[i] - rdg[i]));
  }
  expect_rule("swiglu fwd N=37 FF=301", h, nh, rh, NULL, n);
  expect_rule("swiglu bwd dgate", dg, ndg, rdg, NULL, n);
  expect_rule("swiglu bwd dup", du, ndu, rdu, NULL, n);
  EXPECT(worst_fd < 1e-7, "silu' formula off from central differences by %.3e", worst_fd);
  /* in place: dgate over gate, dup over up */
  float *g2 = fbuf(n), *u2 = fbuf(n);
  memcpy(g2, g, (size_t)n * 4);
  memcpy(u2, u, (size_t)n * 4);
  b.dgate = g2, b.gate = g2, b.dup = u2, b.up = u2;
  EXPECT_EQ_INT(SRLM_OP(be, swiglu_backward, b), SRLM_OK);
  EXPECT_SAME_BITS(g2, dg, n, "in-place swiglu backward dgate");
  EXPECT_SAME_BITS(u2, du, n, "in-place swiglu backward dup");
  free(g), free(u), free(h), free(dh), free(dg), free(du), free(nh), free(ndg), free(ndu), free(rh), free(rdg);
  free(rdu), free(g2), free(u2);
}

static void test_add_colsum_embedding(srlm_backend *be) {
  const int64_t N = 150, C = 70, V = 11;
  float *a = fbuf(N * C), *b = fbuf(N * C), *o = fbuf(N * C), *cs = fbuf(C), *cs0 = fbuf(C);
  fill_uniform(a, N * C, -1, 1);
  fill_uniform(b, N * C, -1, 1);
  fill_uniform(cs0, C, -1, 1);
  srlm_add_params ap = {.out = o, .a = a, .b = b, .n = N * C};
  EXPECT_EQ_INT(SRLM_OP(be, add, ap), SRLM_OK);
  int add_ok = 1;
  for (int64_t i = 0; i < N * C; i++) add_ok &= o[i] == a[i] + b[i];
  EXPECT(add_ok, "add is not a + b");
  memcpy(cs, cs0, (size_t)C * 4);
  srlm_colsum_params cp = {.out = cs, .x = a, .N = N, .C = C};
  EXPECT_EQ_INT(SRLM_OP(be, colsum, cp), SRLM_OK);
  double *rcs = dbuf(C);
  float *ncs = fbuf(C);
  for (int64_t c = 0; c < C; c++) {
    rcs[c] = cs0[c];
    ncs[c] = cs0[c];
    for (int64_t n = 0; n < N; n++) rcs[c] += a[n * C + c], ncs[c] += a[n * C + c];
  }
  expect_rule("colsum N=150 C=70 (+= start)", cs, ncs, rcs, NULL, C);

  /* embedding: gather, and the scatter-add sums repeated ids in row order */
  float *table = fbuf(V * C), *emb = fbuf(N * C), *dtab = fbuf(V * C), *rtab = fbuf(V * C);
  int32_t *ids = srlm_xmalloc((size_t)N * sizeof *ids);
  fill_uniform(table, V * C, -1, 1);
  fill_uniform(dtab, V * C, -1, 1);
  memcpy(rtab, dtab, (size_t)(V * C) * 4);
  for (int64_t n = 0; n < N; n++) ids[n] = (int32_t)rand_below((uint32_t)V, (uint32_t)(n + 5000));
  srlm_embedding_params ep = {.out = emb, .table = table, .ids = ids, .N = N, .V = V, .C = C};
  EXPECT_EQ_INT(SRLM_OP(be, embedding_forward, ep), SRLM_OK);
  int gather_ok = 1;
  for (int64_t n = 0; n < N; n++) gather_ok &= memcmp(emb + n * C, table + ids[n] * C, (size_t)C * 4) == 0;
  EXPECT(gather_ok, "embedding gather is not table[ids]");
  srlm_embedding_bwd_params eb = {.dtable = dtab, .dout = a, .ids = ids, .N = N, .V = V, .C = C};
  EXPECT_EQ_INT(SRLM_OP(be, embedding_backward, eb), SRLM_OK);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) rtab[ids[n] * C + c] += a[n * C + c];
  EXPECT_SAME_BITS(dtab, rtab, V * C, "embedding backward is not the scatter-add in row order");
  ids[77] = (int32_t)V;
  EXPECT_EQ_INT(SRLM_OP(be, embedding_forward, ep), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu embedding_forward: row 77: token id 11 out of range [0, 11)");
  ids[77] = -2;
  EXPECT_EQ_INT(SRLM_OP(be, embedding_backward, eb), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu embedding_backward: row 77: token id -2 out of range [0, 11)");
  free(a), free(b), free(o), free(cs), free(cs0), free(rcs), free(ncs), free(table), free(emb), free(dtab);
  free(rtab), free(ids);
}

/* Every transformer op with 1 and 3 threads: the same bits. */
static void run_transformer_ops(srlm_backend *be, float *out, int64_t *n_out) {
  enum { B = 3, NH = 4, NKV = 2, HS = 16, C = 72, FF = 100 };
  const int32_t cu[B + 1] = {0, 77, 80, 211};
  const int64_t T = cu[B];
  float *x = fbuf(T * C), *w = fbuf(C * FF), *q = fbuf(T * NH * HS), *k = fbuf(T * NKV * HS), *v = fbuf(T * NKV * HS);
  float *dout = fbuf(T * NH * HS), *inv = fbuf(HS / 2);
  int32_t pos[211];
  for (int64_t i = 0; i < T; i++) pos[i] = (int32_t)i;
  for (int d = 0; d < HS / 2; d++) inv[d] = powf(0.5f, (float)d);
  g_purpose = 900; /* the same inputs on every call */
  fill_uniform(x, T * C, -1, 1);
  fill_uniform(w, C * FF, -1, 1);
  fill_uniform(q, T * NH * HS, -1, 1);
  fill_uniform(k, T * NKV * HS, -1, 1);
  fill_uniform(v, T * NKV * HS, -1, 1);
  fill_uniform(dout, T * NH * HS, -1, 1);
  float *o = out;
  srlm_matmul_params mp = {.c = o, .a = x, .b = w, .M = T, .N = FF, .K = C};
  EXPECT_EQ_INT(SRLM_OP(be, matmul, mp), SRLM_OK);
  o += T * FF;
  mp = (srlm_matmul_params){.c = o, .a = x, .b = x, .M = C, .N = C, .K = T, .trans_a = 1};
  EXPECT_EQ_INT(SRLM_OP(be, matmul, mp), SRLM_OK);
  o += C * C;
  srlm_rmsnorm_bwd_params rb = {.dx = o, .dw = o + T * C, .dy = x, .x = x, .w = w, .rstd = w + C, .N = T, .C = C};
  EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_backward, rb), SRLM_OK);
  o += T * C + C;
  srlm_colsum_params cs = {.out = o, .x = x, .N = T, .C = C};
  EXPECT_EQ_INT(SRLM_OP(be, colsum, cs), SRLM_OK);
  o += C;
  memcpy(o, q, (size_t)(T * NH * HS) * 4);
  srlm_rope_params rp = {.x = o, .pos = pos, .inv_freq = inv, .N = T, .H = NH, .HS = HS};
  EXPECT_EQ_INT(SRLM_OP(be, rope_forward, rp), SRLM_OK);
  o += T * NH * HS;
  float *att = o, *lse = o + T * NH * HS;
  srlm_attention_params ap = {.out = att, .lse = lse, .q = q, .k = k, .v = v, .cu_seqlens = cu, .B = B, .T = T,
                              .NH = NH, .NKV = NKV, .HS = HS, .window = 50, .scale = 0.25f};
  EXPECT_EQ_INT(SRLM_OP(be, attention_forward, ap), SRLM_OK);
  o += T * NH * HS + T * NH;
  srlm_attention_bwd_params bp = {.dq = o, .dk = o + T * NH * HS, .dv = o + T * NH * HS + T * NKV * HS, .dout = dout,
                                  .out = att, .lse = lse, .q = q, .k = k, .v = v, .cu_seqlens = cu, .B = B, .T = T,
                                  .NH = NH, .NKV = NKV, .HS = HS, .window = 50, .scale = 0.25f};
  EXPECT_EQ_INT(SRLM_OP(be, attention_backward, bp), SRLM_OK);
  o += T * NH * HS + 2 * T * NKV * HS;
  *n_out = o - out;
  free(x), free(w), free(q), free(k), free(v), free(dout), free(inv);
}

static void test_transformer_threads(srlm_backend *be) {
#ifdef _OPENMP
  const int64_t cap = 400000;
  float *o1 = fbuf(cap), *o3 = fbuf(cap);
  int64_t n1 = 0, n3 = 0;
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  run_transformer_ops(be, o1, &n1);
  omp_set_num_threads(3);
  run_transformer_ops(be, o3, &n3);
  omp_set_num_threads(saved);
  EXPECT(n1 == n3 && n1 <= cap, "outputs %lld vs %lld (cap %lld)", (long long)n1, (long long)n3, (long long)cap);
  EXPECT_SAME_BITS(o1, o3, n1, "transformer ops with 1 vs 3 threads");
  free(o1), free(o3);
#else
  (void)be;
#endif
}

/* ---- errors ------------------------------------------------------------- */

static void test_errors(srlm_backend *be) {
  enum { N = 5, V = 1000 };
  float *z = srlm_xcalloc(N * V, sizeof *z), *dw = srlm_xcalloc(N * V, sizeof *dw), logp[N], lse[N], dx[N * N];
  float g[N] = {1, 1, 1, 1, 1};
  int32_t t[N] = {0, 1, 2, V, 4};
  for (int n = 0; n < N; n++) logp[n] = 123.0f;
  head_io h = head_inputs(z, N, V);
  srlm_lmhead_params p = {.logp = logp, .lse = lse, .x = h.x, .w = h.w, .targets = t, .N = N, .C = N, .V = V};
  EXPECT_EQ_INT(SRLM_OP(be, lmhead_forward, p), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu lmhead_forward: row 3: target id 1000 out of range [0, 1000) (or -1: none)");
  EXPECT(logp[0] == 123.0f, "logp written before the targets were checked: %g", (double)logp[0]);

  t[3] = 3;
  t[0] = -1;
  srlm_lmhead_bwd_params b = {.dx = dx, .dw = dw, .x = h.x, .w = h.w, .lse = lse, .dlogp = g, .targets = t, .N = N,
                              .C = N, .V = V};
  EXPECT_EQ_INT(SRLM_OP(be, lmhead_backward, b), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu lmhead_backward: row 0 has no target but dlogp 1 (must be 0)");

  t[0] = 0;
  p.w = NULL;
  EXPECT_EQ_INT(SRLM_OP(be, lmhead_forward, p), SRLM_ERR_INTERNAL);
  EXPECT_STR_EQ(srlm_error_message(), "cpu lmhead_forward: w is NULL");
  p.w = h.w;
  p.V = 0;
  EXPECT_EQ_INT(SRLM_OP(be, lmhead_forward, p), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "cpu lmhead_forward: V = 0 out of range");
  p.V = V;
  p.N = -1;
  EXPECT_EQ_INT(SRLM_OP(be, lmhead_forward, p), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu lmhead_forward: N = -1 rows is negative");
  p.N = 0; /* no rows: nothing to do */
  EXPECT_EQ_INT(SRLM_OP(be, lmhead_forward, p), SRLM_OK);
  free(h.x), free(h.w), free(dw);

  float w[4] = {1, 1, 1, 1};
  srlm_rmsnorm_params r = {.out = z, .rstd = NULL, .x = z, .w = w, .N = 2, .C = 4, .eps = 0.0f};
  EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_forward, r), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu rmsnorm_forward: eps = 0 must be finite and > 0");
  r.eps = 1e-6f;
  r.C = 0;
  EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_forward, r), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "C = 0 out of range");
  free(z);
}

static void test_memory(srlm_backend *be) {
  void *p = (void *)1;
  EXPECT_EQ_INT(srlm_backend_alloc(be, &p, 0), SRLM_OK);
  EXPECT(p == NULL, "alloc of 0 bytes gave %p", p);
  EXPECT_EQ_INT(srlm_backend_free(be, NULL), SRLM_OK);
  float host[100], back[100];
  for (int i = 0; i < 100; i++) host[i] = (float)i + 0.5f;
  void *a = NULL, *b = NULL;
  EXPECT_EQ_INT(srlm_backend_alloc(be, &a, sizeof host), SRLM_OK);
  EXPECT_EQ_INT(srlm_backend_alloc(be, &b, sizeof host), SRLM_OK);
  EXPECT(((uintptr_t)a & 63) == 0, "alloc not 64-byte aligned: %p", a);
  EXPECT_EQ_INT(srlm_backend_copy_h2d(be, a, host, sizeof host), SRLM_OK);
  EXPECT_EQ_INT(srlm_backend_copy_d2d(be, b, a, sizeof host), SRLM_OK);
  EXPECT_EQ_INT(srlm_backend_zero(be, a, sizeof host), SRLM_OK);
  EXPECT_EQ_INT(srlm_backend_copy_d2h(be, back, b, sizeof host), SRLM_OK);
  EXPECT(memcmp(back, host, sizeof host) == 0, "h2d, d2d, d2h round trip changed the data");
  EXPECT_EQ_INT(srlm_backend_copy_d2h(be, back, a, sizeof host), SRLM_OK);
  EXPECT(back[0] == 0.0f && back[99] == 0.0f, "zero left %g %g", (double)back[0], (double)back[99]);
  EXPECT_EQ_INT(srlm_backend_sync(be), SRLM_OK);
  EXPECT_EQ_INT(srlm_backend_zero(be, NULL, 4), SRLM_ERR_INTERNAL);
  EXPECT_CONTAINS(srlm_error_message(), "cpu zero: NULL destination for 4 bytes");
  srlm_backend_free(be, a);
  srlm_backend_free(be, b);
}

static void test_registry(void) {
  const srlm_backend_ops *ops = NULL;
  EXPECT_EQ_INT(srlm_backend_find("cpu", &ops), SRLM_OK);
  EXPECT(ops == srlm_backend_cpu_ops(), "find(cpu) gave another table");
  EXPECT_EQ_INT(srlm_backend_find("cuda", &ops), SRLM_ERR_UNSUPPORTED);
  EXPECT(ops == NULL, "a failed find left a table");
  EXPECT_CONTAINS(srlm_error_message(), "backend: 'cuda' is not available: this program was built without the CUDA backend");
  srlm_backend *be = NULL;
  EXPECT_EQ_INT(srlm_backend_open("cpu", 3, &be), SRLM_OK);
  EXPECT(be == srlm_backend_cpu() && be->device == -1, "open(cpu) gave another instance or device %d", be ? be->device : 0);
  EXPECT_EQ_INT(srlm_backend_close(be), SRLM_OK);

  static srlm_backend_ops fake, other; /* the registry keeps the pointer */
  fake = *srlm_backend_cpu_ops();
  other = *srlm_backend_cpu_ops();
  fake.name = "fake";
  other.name = "fake";
  EXPECT_EQ_INT(srlm_backend_register(&fake), SRLM_OK);
  EXPECT_EQ_INT(srlm_backend_register(&fake), SRLM_OK);
  EXPECT_EQ_INT(srlm_backend_register(&other), SRLM_ERR_INTERNAL);
  EXPECT_CONTAINS(srlm_error_message(), "another backend is already registered as 'fake'");
  other.name = "cpu";
  EXPECT_EQ_INT(srlm_backend_register(&other), SRLM_ERR_INTERNAL);
  EXPECT_EQ_INT(srlm_backend_find("fake", &ops), SRLM_OK);
  EXPECT(ops == &fake, "find(fake) gave another table");
  EXPECT_EQ_INT(srlm_backend_find("tpu", &ops), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "backend: unknown backend 'tpu' (available: cpu");
  EXPECT_CONTAINS(srlm_error_message(), "fake)");
}

int main(void) {
  fprintf(stderr, "seed %llu\n", (unsigned long long)g_seed);
  srlm_backend *be = srlm_backend_cpu();
  EXPECT_STR_EQ(be->name, "cpu");
  test_rmsnorm(be);
  test_gradient_formula();
  test_thread_independence(be);
  test_matmul(be);
  test_rmsnorm_backward(be);
  test_rope(be);
  test_add_colsum_embedding(be);
  /* the ops with a vectorized exp, at every ISA level this CPU has */
  static const char *const isas[] = {"avx512", "avx2", "generic"};
  for (int i = 0; i < 3; i++) {
    if (srlm_backend_cpu_set_isa(isas[i]) != SRLM_OK) {
      fprintf(stderr, "== ISA %s: not on this CPU\n", isas[i]);
      continue;
    }
    fprintf(stderr, "== ISA %s\n", srlm_backend_cpu_isa());
    test_logprob(be);
    test_special_rows(be);
    test_attention(be);
    test_swiglu(be);
  }
  EXPECT_EQ_INT(srlm_backend_cpu_set_isa("avx9"), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "unknown ISA 'avx9'");
  EXPECT_EQ_INT(srlm_backend_cpu_set_isa(NULL), SRLM_OK);
  test_transformer_threads(be);
  test_errors(be);
  test_memory(be);
  test_registry();
  TEST_MAIN_END();
}
