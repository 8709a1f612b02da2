/* backend ops: every op of a backend (default "cuda"; argv[1] or SRLM_TEST_BACKEND picks
 * another, "cpu" checks this test itself) against the CPU reference on random inputs
 * (Philox, seed printed), for every launch-shape class: rows not a multiple of a block's
 * rows, widths below, at and off a warp or tile, vocabularies up to 151937 and one long
 * enough that the backward kernel strides over the grid's y limit, logits near +-1e4.
 *
 * Tolerance (flash-attention rule): the backend's max error against a float64 reference
 * is at most 2x the CPU op's max error (the fp32 implementation we trust) plus
 * LIBM_ULP ulps. Errors are absolute (ulps of the largest |ref|) for per-row outputs and
 * rmsnorm; for dlogits they are relative to max(|ref|, |dlogp| * p), the larger of the
 * result and its softmax term, because the values span many orders of magnitude (an
 * absolute floor set by the target's entry would excuse any error in the tiny terms,
 * even entries never written) and the target's entry dlogp * (1 - p) cancels when p is
 * near 1 (relative to itself, the same error in p would look arbitrarily large).
 * Rows: 64 or more where V is small, so each max is over enough rows to be a statistic
 * rather than one draw.
 * Also: identical bits on a second run, in-place use, -inf/NaN rows, the bad-target
 * error (reported by the op or by the next sync), memory ops and init errors. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "srlm/backend.h"
#include "srlm/core.h"
#include "test.h"

/* The floor: CUDA's expf is documented to 2 ulp and logf to 1 (CUDA C++ Programming
 * Guide, mathematical functions), glibc's to under 1; a kernel may differ from the CPU
 * by that much through no fault of its own. */
#define LIBM_ULP 2.0

static const uint64_t g_seed = 20240612u;
static uint32_t g_purpose;
static const srlm_backend_ops *g_be;  /* under test */
static const srlm_backend_ops *g_cpu; /* reference */

#define OK(expr)                                                                    \
  do {                                                                              \
    srlm_status ok_st_ = (expr);                                                    \
    EXPECT(ok_st_ == SRLM_OK, "%s: %s", #expr, srlm_error_message());              \
  } while (0)

static void fill_uniform(float *a, int64_t n, double lo, double hi) {
  uint32_t purpose = ++g_purpose;
  for (int64_t i = 0; i < n; i += 4) {
    srlm_philox_out o = srlm_rng_bits(g_seed, purpose, (uint32_t)(i >> 2), (uint32_t)(i >> 34), 0);
    for (int64_t j = 0; j < 4 && i + j < n; j++)
      a[i + j] = (float)(lo + (hi - lo) * srlm_rng_u01d(o.v[j], o.v[(j + 1) & 3]));
  }
}

/* ---- buffers on the backend under test ----------------------------------- */

static void *dev_alloc(size_t bytes) {
  void *d = NULL;
  OK(g_be->alloc(&d, bytes));
  return d;
}

static void *dev_upload(const void *host, size_t bytes) {
  void *d = dev_alloc(bytes);
  OK(g_be->copy_h2d(d, host, bytes));
  return d;
}

static void dev_free(void *d) { OK(g_be->free(d)); }

static void dev_download(void *host, const void *d, size_t bytes) { OK(g_be->copy_d2h(host, d, bytes)); }

/* ---- the tolerance rule ------------------------------------------------- */

typedef struct errs {
  int relative;            /* errors divided by a per-entry magnitude (see errs_add) */
  double got, base, scale; /* max error of backend and cpu against ref, max |ref| */
  double diff;             /* max |backend - cpu| (printed only) */
} errs;

/* |x - ref| / denom (absolute where denom is 0); infinite on a NaN. */
static double err_of(float x, double ref, double denom) {
  double d = fabs((double)x - ref);
  if (denom != 0) d /= denom;
  return isnan(d) ? INFINITY : d;
}

/* denom: the magnitude a relative error is measured against (ignored unless relative). */
static void errs_add(errs *e, double ref, double denom, float got, float base) {
  if (!e->relative) denom = 0;
  e->got = fmax(e->got, err_of(got, ref, denom));
  e->base = fmax(e->base, err_of(base, ref, denom));
  e->scale = fmax(e->scale, fabs(ref));
  double d = fabs((double)got - (double)base);
  e->diff = fmax(e->diff, isnan(d) ? INFINITY : d);
}

static void expect_rule(const char *what, const errs *e) {
  double tol = 2 * e->base + LIBM_ULP * FLT_EPSILON * (e->relative ? 1.0 : e->scale);
  fprintf(stderr, "  %-46s %s %s err %.3e  cpu %.3e  tol %.3e  |%s-cpu| %.3e\n", what, e->relative ? "rel" : "abs",
          g_be->name, e->got, e->base, tol, g_be->name, e->diff);
  EXPECT(e->got <= tol, "%s: %s error %.3e exceeds 2 x cpu error %.3e + 2 ulp (tol %.3e)", what,
         g_be->name, e->got, e->base, tol);
}

static void expect_same_bits(const char *what, const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], sizeof *a) != 0) {
      EXPECT(0, "%s: differs first at %lld: %.9g vs %.9g", what, (long long)i, (double)a[i], (double)b[i]);
      return;
    }
}

/* ---- RMSNorm ------------------------------------------------------------ */

static void test_rmsnorm(void) {
  static const struct { int64_t N, C; double amp; } cases[] = {
      {1, 1, 1},    {7, 31, 1},      {9, 32, 1},   {8, 33, 1},     {4097, 768, 1},
      {3, 8192, 1}, {17, 5000, 1},   {5, 515, 1e3}, {4, 333, 1e-3},
  };
  const float eps = 1e-6f;
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const int64_t N = cases[k].N, C = cases[k].C;
    const size_t nx = (size_t)(N * C) * sizeof(float), nr = (size_t)N * sizeof(float);
    float *x = srlm_xmalloc(nx), *w = srlm_xmalloc((size_t)C * sizeof *w);
    float *cout = srlm_xmalloc(nx), *crstd = srlm_xmalloc(nr), *gout = srlm_xmalloc(nx),
          *grstd = srlm_xmalloc(nr), *again = srlm_xmalloc(nx);
    fill_uniform(x, N * C, -cases[k].amp, cases[k].amp);
    fill_uniform(w, C, 0.5, 1.5);
    srlm_rmsnorm_params p = {.out = cout, .rstd = crstd, .x = x, .w = w, .N = N, .C = C, .eps = eps};
    OK(g_cpu->rmsnorm_forward(p));

    float *dx = dev_upload(x, nx), *dw = dev_upload(w, (size_t)C * sizeof *w);
    float *dout = dev_alloc(nx), *drstd = dev_alloc(nr);
    srlm_rmsnorm_params d = {.out = dout, .rstd = drstd, .x = dx, .w = dw, .N = N, .C = C, .eps = eps};
    OK(g_be->rmsnorm_forward(d));
    dev_download(gout, dout, nx);
    dev_download(grstd, drstd, nr);

    errs eo = {0}, er = {0};
    for (int64_t n = 0; n < N; n++) {
      double ss = 0;
      for (int64_t c = 0; c < C; c++) ss += (double)x[n * C + c] * x[n * C + c];
      double r = 1.0 / sqrt(ss / (double)C + eps);
      errs_add(&er, r, 0, grstd[n], crstd[n]);
      for (int64_t c = 0; c < C; c++) errs_add(&eo, x[n * C + c] * r * w[c], 0, gout[n * C + c], cout[n * C + c]);
    }
    char what[96];
    snprintf(what, sizeof what, "rmsnorm out  N=%lld C=%lld amp=%g", (long long)N, (long long)C, cases[k].amp);
    expect_rule(what, &eo);
    snprintf(what, sizeof what, "rmsnorm rstd N=%lld C=%lld amp=%g", (long long)N, (long long)C, cases[k].amp);
    expect_rule(what, &er);

    /* a second run gives the same bits; so does the in-place form (out == x, no rstd) */
    OK(g_be->rmsnorm_forward(d));
    dev_download(again, dout, nx);
    snprintf(what, sizeof what, "rmsnorm rerun N=%lld C=%lld", (long long)N, (long long)C);
    expect_same_bits(what, again, gout, N * C);
    d.x = dx;
    d.out = dx;
    d.rstd = NULL;
    OK(g_be->rmsnorm_forward(d));
    dev_download(again, dx, nx);
    snprintf(what, sizeof what, "rmsnorm in place N=%lld C=%lld", (long long)N, (long long)C);
    expect_same_bits(what, again, gout, N * C);

    dev_free(dx), dev_free(dw), dev_free(dout), dev_free(drstd);
    free(x), free(w), free(cout), free(crstd), free(gout), free(grstd), free(again);
  }
}

/* ---- log-prob gather and backward --------------------------------------- */

static void pick_targets(const float *z, int64_t N, int64_t V, int32_t *t) {
  for (int64_t n = 0; n < N; n++) {
    const float *r = z + n * V;
    int64_t best = -1;
    for (int64_t v = 0; v < V; v++) {
      if (r[v] == -INFINITY) continue;
      if (best < 0 || (n % 3 == 0 && r[v] > r[best]) || (n % 3 == 1 && r[v] < r[best])) best = v;
    }
    for (uint32_t i = 0; n % 3 == 2; i++) { /* a random unmasked id */
      int64_t v = srlm_rng_bits(g_seed, 0xbacc, (uint32_t)n, i, 0).v[0] % (uint64_t)V;
      if (r[v] != -INFINITY) {
        best = v;
        break;
      }
    }
    t[n] = (int32_t)best;
  }
}

static void test_logprob(void) {
  /* V classes: below a warp, one block (256 threads), one past it, one backward tile
   * (2048) and one past it, real vocabularies, and one past 65535 backward tiles. */
  static const struct { int64_t N, V; double lo, hi; int mask; } cases[] = {
      {64, 1, -1, 1, 0},          {64, 7, -5, 5, 0},           {64, 256, -3, 3, 0},
      {64, 257, -3, 3, 0},        {300, 1000, -10, 10, 0},     {64, 2048, -10, 10, 0},
      {64, 2049, -10, 10, 0},     {16, 32003, -20, 20, 0},     {4, 151937, -15, 15, 0},
      {64, 5003, -1e4, 1e4, 0},   {64, 5003, 1e4, 1e4 + 8, 0}, {64, 5003, -1e4 - 8, -1e4, 0},
      {64, 999, -10, 10, 1},      {1, 65535LL * 2048 + 5, -10, 10, 0},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const int64_t N = cases[k].N, V = cases[k].V;
    const size_t nz = (size_t)(N * V) * sizeof(float), nr = (size_t)N * sizeof(float);
    float *z = srlm_xmalloc(nz), *g = srlm_xmalloc(nr);
    int32_t *t = srlm_xmalloc((size_t)N * sizeof *t);
    float *clogp = srlm_xmalloc(nr), *clse = srlm_xmalloc(nr), *glogp = srlm_xmalloc(nr), *glse = srlm_xmalloc(nr);
    float *cdz = srlm_xmalloc(nz), *gdz = srlm_xmalloc(nz);
    fill_uniform(z, N * V, cases[k].lo, cases[k].hi);
    if (cases[k].mask)
      for (int64_t i = 0; i < N * V; i += 3) z[i] = -INFINITY;
    pick_targets(z, N, V, t);
    fill_uniform(g, N, -2, 2);
    if (N > 1) g[N - 1] = 0.0f; /* a masked token */

    srlm_logprob_params cf = {.logp = clogp, .lse = clse, .logits = z, .targets = t, .N = N, .V = V};
    OK(g_cpu->logprob_forward(cf));
    srlm_logprob_bwd_params cb = {.dlogits = cdz, .logits = z, .lse = clse, .dlogp = g, .targets = t, .N = N, .V = V};
    OK(g_cpu->logprob_backward(cb));

    float *dz = dev_upload(z, nz), *dg = dev_upload(g, nr), *dclse = dev_upload(clse, nr);
    int32_t *dt = dev_upload(t, (size_t)N * sizeof *t);
    float *dlogp = dev_alloc(nr), *dlse = dev_alloc(nr), *ddz = dev_alloc(nz);
    srlm_logprob_params df = {.logp = dlogp, .lse = dlse, .logits = dz, .targets = dt, .N = N, .V = V};
    OK(g_be->logprob_forward(df));
    /* the backward takes the CPU's lse, so both backwards see the same input */
    srlm_logprob_bwd_params db = {.dlogits = ddz, .logits = dz, .lse = dclse, .dlogp = dg, .targets = dt, .N = N, .V = V};
    OK(g_be->logprob_backward(db));
    dev_download(glogp, dlogp, nr);
    dev_download(glse, dlse, nr);
    dev_download(gdz, ddz, nz);

    errs elp = {0}, els = {0}, edz = {.relative = 1};
    for (int64_t n = 0; n < N; n++) {
      const float *r = z + n * V;
      double m = -INFINITY, s = 0;
      for (int64_t v = 0; v < V; v++) m = fmax(m, r[v]);
      for (int64_t v = 0; v < V; v++) s += exp((double)r[v] - m);
      errs_add(&elp, ((double)r[t[n]] - m) - log(s), 0, glogp[n], clogp[n]);
      errs_add(&els, m + log(s), 0, glse[n], clse[n]);
      for (int64_t v = 0; v < V; v++) {
        double pv = exp((double)r[v] - (double)clse[n]);
        double ref = (double)g[n] * ((v == t[n] ? 1.0 : 0.0) - pv);
        errs_add(&edz, ref, fmax(fabs(ref), fabs((double)g[n]) * pv), gdz[n * V + v], cdz[n * V + v]);
      }
    }
    char what[96], shape[64];
    snprintf(shape, sizeof shape, "N=%lld V=%lld [%g,%g]%s", (long long)N, (long long)V, cases[k].lo,
             cases[k].hi, cases[k].mask ? " masked" : "");
    snprintf(what, sizeof what, "logprob logp %s", shape);
    expect_rule(what, &elp);
    snprintf(what, sizeof what, "logprob lse  %s", shape);
    expect_rule(what, &els);
    snprintf(what, sizeof what, "logprob bwd  %s", shape);
    expect_rule(what, &edz);
    int zero_row = 1;
    for (int64_t v = 0; v < V && N > 1; v++) zero_row &= gdz[(N - 1) * V + v] == 0.0f;
    EXPECT(zero_row, "dlogp = 0 must give a zero gradient row (%s)", shape);

    /* rerun: same bits; backward in place over a copy of the logits: same bits */
    float *again = srlm_xmalloc(nz);
    OK(g_be->logprob_forward(df));
    dev_download(again, dlogp, nr);
    snprintf(what, sizeof what, "logprob rerun %s", shape);
    expect_same_bits(what, again, glogp, N);
    OK(g_be->copy_d2d(ddz, dz, nz));
    db.dlogits = ddz;
    db.logits = ddz;
    OK(g_be->logprob_backward(db));
    dev_download(again, ddz, nz);
    snprintf(what, sizeof what, "logprob bwd in place %s", shape);
    expect_same_bits(what, again, gdz, N * V);

    dev_free(dz), dev_free(dg), dev_free(dclse), dev_free(dt);
    dev_free(dlogp), dev_free(dlse), dev_free(ddz);
    free(z), free(g), free(t), free(clogp), free(clse), free(glogp), free(glse), free(cdz), free(gdz), free(again);
  }
}

/* NaN propagates, an all -inf row has no distribution (NaN), a masked target is -inf:
 * the same outcome as the CPU op. */
static void test_special_rows(void) {
  enum { V = 300 };
  float z[3 * V];
  fill_uniform(z, 3 * V, -3, 3);
  z[V / 2] = NAN;
  for (int v = 0; v < V; v++) z[V + v] = -INFINITY;
  z[2 * V + 7] = -INFINITY;
  int32_t t[3] = {0, 2, 7};
  float clogp[3], glogp[3];
  srlm_logprob_params cf = {.logp = clogp, .lse = NULL, .logits = z, .targets = t, .N = 3, .V = V};
  OK(g_cpu->logprob_forward(cf));
  float *dz = dev_upload(z, sizeof z), *dlogp = dev_alloc(sizeof glogp);
  int32_t *dt = dev_upload(t, sizeof t);
  srlm_logprob_params df = {.logp = dlogp, .lse = NULL, .logits = dz, .targets = dt, .N = 3, .V = V};
  OK(g_be->logprob_forward(df));
  dev_download(glogp, dlogp, sizeof glogp);
  EXPECT(isnan(clogp[0]) && isnan(glogp[0]), "NaN row: cpu %g, %s %g", (double)clogp[0], g_be->name, (double)glogp[0]);
  EXPECT(isnan(clogp[1]) && isnan(glogp[1]), "-inf row: cpu %g, %s %g", (double)clogp[1], g_be->name, (double)glogp[1]);
  EXPECT(clogp[2] == -INFINITY && glogp[2] == -INFINITY, "masked target: cpu %g, %s %g", (double)clogp[2],
         g_be->name, (double)glogp[2]);
  dev_free(dz), dev_free(dlogp), dev_free(dt);
}

/* A bad target is reported by the op (CPU) or by the next call that waits (device),
 * naming the op, the row and the id; afterwards the backend works again. */
static void test_bad_target(void) {
  enum { N = 5, V = 1000 };
  float *z = srlm_xcalloc(N * V, sizeof *z), g[N] = {1, 1, 1, 1, 1}, lse[N] = {0};
  int32_t t[N] = {0, 1, 2, V, 4};
  float *dz = dev_upload(z, (size_t)N * V * sizeof *z), *dg = dev_upload(g, sizeof g);
  float *dlse = dev_upload(lse, sizeof lse), *dlogp = dev_alloc(sizeof g);
  float *ddz = dev_alloc((size_t)N * V * sizeof *z);
  int32_t *dt = dev_upload(t, sizeof t);
  char want[160];

  srlm_logprob_params f = {.logp = dlogp, .lse = NULL, .logits = dz, .targets = dt, .N = N, .V = V};
  srlm_status st = g_be->logprob_forward(f);
  if (st == SRLM_OK) st = g_be->sync();
  EXPECT_EQ_INT(st, SRLM_ERR_RANGE);
  snprintf(want, sizeof want, "%s logprob_forward: row 3: target id 1000 out of range [0, 1000)", g_be->name);
  EXPECT_STR_EQ(srlm_error_message(), want);
  OK(g_be->sync()); /* reported once */

  t[3] = 3;
  t[1] = -7;
  OK(g_be->copy_h2d(dt, t, sizeof t));
  srlm_logprob_bwd_params b = {.dlogits = ddz, .logits = dz, .lse = dlse, .dlogp = dg, .targets = dt, .N = N, .V = V};
  st = g_be->logprob_backward(b);
  float back[N];
  if (st == SRLM_OK) st = g_be->copy_d2h(back, dlogp, sizeof back);
  EXPECT_EQ_INT(st, SRLM_ERR_RANGE);
  snprintf(want, sizeof want, "%s logprob_backward: row 1: target id -7 out of range [0, 1000)", g_be->name);
  EXPECT_STR_EQ(srlm_error_message(), want);

  t[1] = 1;
  OK(g_be->copy_h2d(dt, t, sizeof t));
  OK(g_be->logprob_forward(f));
  OK(g_be->copy_d2h(back, dlogp, sizeof back));
  EXPECT_NEAR(back[0], -log((double)V), 1e-5); /* all-zero logits: uniform */

  f.logits = NULL;
  EXPECT_EQ_INT(g_be->logprob_forward(f), SRLM_ERR_INTERNAL);
  snprintf(want, sizeof want, "%s logprob_forward: logits is NULL", g_be->name);
  EXPECT_STR_EQ(srlm_error_message(), want);
  dev_free(dz), dev_free(dg), dev_free(dlse), dev_free(dlogp), dev_free(dt);
  dev_free(ddz);
  free(z);
}

static void test_memory(void) {
  void *p = (void *)1;
  OK(g_be->alloc(&p, 0));
  EXPECT(p == NULL, "alloc of 0 bytes gave %p", p);
  OK(g_be->free(NULL));
  float host[1000], back[1000];
  for (int i = 0; i < 1000; i++) host[i] = (float)i - 0.25f;
  float *a = dev_upload(host, sizeof host), *b = dev_alloc(sizeof host);
  OK(g_be->copy_d2d(b, a, sizeof host));
  OK(g_be->zero(a, sizeof host / 2));
  dev_download(back, b, sizeof host);
  EXPECT(memcmp(back, host, sizeof host) == 0, "h2d, d2d, d2h round trip changed the data");
  dev_download(back, a, sizeof host);
  EXPECT(back[0] == 0.0f && back[499] == 0.0f && back[500] == host[500], "zero of half: %g %g %g",
         (double)back[0], (double)back[499], (double)back[500]);
  OK(g_be->sync());
  dev_free(a), dev_free(b);
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : getenv("SRLM_TEST_BACKEND");
  if (!name || !name[0]) name = "cuda";
  fprintf(stderr, "seed %llu, backend %s\n", (unsigned long long)g_seed, name);
  g_cpu = srlm_backend_cpu();
  OK(srlm_backend_register(srlm_backend_cuda()));
  const srlm_backend_ops *be = NULL;
  OK(srlm_backend_find(name, &be));
  if (!be) TEST_MAIN_END();
  g_be = be;
  if (!g_be->host_memory) {
    /* before init: a clear error, not a crash */
    void *p = NULL;
    EXPECT_EQ_INT(g_be->alloc(&p, 16), SRLM_ERR_INTERNAL);
    EXPECT_CONTAINS(srlm_error_message(), "not initialized");
    EXPECT_EQ_INT(g_be->init(-1), SRLM_ERR_RANGE);
    EXPECT_CONTAINS(srlm_error_message(), "device -1 out of range");
  }
  OK(g_cpu->init(-1));
  srlm_status st = g_be->init(0);
  EXPECT(st == SRLM_OK, "%s init(0): %s", g_be->name, srlm_error_message());
  if (st != SRLM_OK) TEST_MAIN_END(); /* nothing else can run */
  test_memory();
  test_rmsnorm();
  test_logprob();
  test_special_rows();
  test_bad_target();
  OK(g_be->shutdown());
  TEST_MAIN_END();
}
