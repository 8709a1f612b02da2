/* bench_backend: time each backend op on a table of shapes (nccl-tests style).
 *
 *   bench_backend [--backend cpu|cuda] [--iters N] [--warmup N] [--seed S] [--json PATH]
 *
 * One driver runs every case: inputs from Philox (seed printed), warm-up calls not
 * timed, then --iters calls between two syncs; time is per call. Bandwidth counts the
 * bytes an op must move at least (read inputs once, write outputs once). Correctness is
 * checked outside the timed loop: the first call's outputs must agree with the CPU op
 * under the tests' rule (max error against float64 at most 2x the CPU op's, plus 2 ulp)
 * and every timed call must reproduce them bit for bit. Exit status 1 on a wrong result.
 * The CUDA backend is there only when built with SRLM_HAVE_CUDA=1 (linking srlm_cuda). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/backend.h"
#include "srlm/core.h"

typedef enum bench_op { OP_RMSNORM } bench_op;
static const char *const kOpNames[] = {"rmsnorm_forward"};

/* The table: shapes of a 0.5B-7B model's norms (C). */
static const struct bench_case { bench_op op; int64_t N, C_or_V; } kCases[] = {
    {OP_RMSNORM, 4096, 896}, {OP_RMSNORM, 4096, 4096}, {OP_RMSNORM, 16384, 4096},
};

typedef struct bench_opts {
  const char *backend, *json;
  int iters, warmup;
  uint64_t seed;
} bench_opts;

static void fill_uniform(float *a, int64_t n, double lo, double hi, uint64_t seed, uint32_t purpose) {
  for (int64_t i = 0; i < n; i += 4) {
    srlm_philox_out o = srlm_rng_bits(seed, purpose, (uint32_t)(i >> 2), (uint32_t)(i >> 34), 0);
    for (int64_t j = 0; j < 4 && i + j < n; j++)
      a[i + j] = (float)(lo + (hi - lo) * srlm_rng_u01d(o.v[j], o.v[(j + 1) & 3]));
  }
}

/* ---- one case's buffers: host inputs, CPU outputs, backend buffers ------- */

typedef struct bench_bufs {
  int64_t N, W;           /* rows, width (C or V) */
  float *x, *w, *g;       /* host inputs: (N, W) | (W) weights | (N) dlogp */
  int32_t *t;             /* (N) targets */
  float *ref_out, *ref_row; /* CPU op outputs: (N, W) | (N) */
  float *lse;             /* (N) CPU lse, the backward's input */
  void *dx, *dw, *dg, *dt, *dlse, *dout, *drow;
} bench_bufs;

static srlm_status run_op(srlm_backend *be, bench_op op, const bench_bufs *b, void *out, float *row, const void *x,
                          const void *w) {
  switch (op) {
    case OP_RMSNORM: {
      srlm_rmsnorm_params p = {.out = out, .rstd = row, .x = x, .w = w, .N = b->N, .C = b->W, .eps = 1e-6f};
      return SRLM_OP(be, rmsnorm_forward, p);
    }
  }
  return srlm_error(SRLM_ERR_INTERNAL, "bench_backend", "unknown op %d", (int)op);
}

static void out_sizes(bench_op op, int64_t N, int64_t W, int64_t *wide, int64_t *rows) {
  (void)op;
  *wide = N * W;
  *rows = N;
}

static double min_bytes(bench_op op, int64_t N, int64_t W) {
  (void)op;
  return 4.0 * (2.0 * N * W + W + N); /* x in, out, w, rstd */
}

/* ---- correctness: the tests' rule against float64 ------------------------ */

typedef struct rule_errs { double got, base, scale; } rule_errs;

static void rule_add(rule_errs *e, double ref, double denom, float got, float base) {
  double dg = fabs((double)got - ref), db = fabs((double)base - ref);
  if (denom != 0) dg /= denom, db /= denom;
  e->got = fmax(e->got, isnan(dg) ? INFINITY : dg);
  e->base = fmax(e->base, isnan(db) ? INFINITY : db);
  e->scale = fmax(e->scale, denom != 0 ? 1.0 : fabs(ref));
}

static int rule_ok(const rule_errs *e) { return e->got <= 2 * e->base + 2 * FLT_EPSILON * e->scale; }

/* Checks the backend's first outputs (out, row) against the CPU's; returns 1 when good. */
static int check_case(bench_op op, const bench_bufs *b, const float *out, const float *row) {
  const int64_t N = b->N, W = b->W;
  rule_errs e1 = {0, 0, 0}, e2 = {0, 0, 0};
  for (int64_t n = 0; n < N; n++) {
    const float *x = b->x + n * W;
    double ss = 0;
    for (int64_t c = 0; c < W; c++) ss += (double)x[c] * x[c];
    double r = 1.0 / sqrt(ss / (double)W + 1e-6f);
    rule_add(&e2, r, 0, row[n], b->ref_row[n]);
    for (int64_t c = 0; c < W; c++) rule_add(&e1, x[c] * r * b->w[c], 0, out[n * W + c], b->ref_out[n * W + c]);
  }
  int ok = rule_ok(&e1) && rule_ok(&e2);
  if (!ok)
    fprintf(stderr, "bench_backend: %s N=%lld W=%lld: error %.3e / %.3e exceeds 2 x cpu %.3e / %.3e + 2 ulp\n",
            kOpNames[op], (long long)N, (long long)W, e1.got, e2.got, e1.base, e2.base);
  return ok;
}

/* ---- the driver ----------------------------------------------------------- */

typedef struct bench_result { double us, gbps; int ok; } bench_result;

#define BENCH_TRY(expr)                                                                    \
  do {                                                                                     \
    if ((expr) != SRLM_OK) {                                                               \
      fprintf(stderr, "bench_backend: %s\n", srlm_error_message());                       \
      return 0;                                                                            \
    }                                                                                      \
  } while (0)

static int bench_one(srlm_backend *be, const bench_opts *o, const struct bench_case *c,
                     bench_result *res) {
  const bench_op op = c->op;
  bench_bufs b = {.N = c->N, .W = c->C_or_V};
  const int64_t N = b.N, W = b.W;
  int64_t n_wide, n_rows;
  out_sizes(op, N, W, &n_wide, &n_rows);
  srlm_backend *cpu = srlm_backend_cpu();
  b.x = srlm_xmalloc((size_t)(N * W) * 4);
  b.w = srlm_xmalloc((size_t)W * 4);
  b.g = srlm_xmalloc((size_t)N * 4);
  b.t = srlm_xmalloc((size_t)N * 4);
  b.lse = srlm_xmalloc((size_t)N * 4);
  b.ref_out = srlm_xmalloc((size_t)n_wide * 4);
  b.ref_row = srlm_xmalloc((size_t)(N + 1) * 4);
  float *got_out = srlm_xmalloc((size_t)n_wide * 4), *got_row = srlm_xmalloc((size_t)(N + 1) * 4);
  float *again = srlm_xmalloc((size_t)n_wide * 4);
  fill_uniform(b.x, N * W, -2, 2, o->seed, 1);
  fill_uniform(b.w, W, 0.5, 1.5, o->seed, 2);
  fill_uniform(b.g, N, -1, 1, o->seed, 3);
  for (int64_t n = 0; n < N; n++) b.t[n] = (int32_t)(srlm_rng_bits(o->seed, 4, (uint32_t)n, 0, 0).v[0] % (uint64_t)W);
  int ok = 1;

  /* the CPU reference outputs */
  BENCH_TRY(run_op(cpu, op, &b, b.ref_out, b.ref_row, b.x, b.w));

  BENCH_TRY(srlm_backend_alloc(be, &b.dx, (size_t)(N * W) * 4));
  BENCH_TRY(srlm_backend_alloc(be, &b.dw, (size_t)W * 4));
  BENCH_TRY(srlm_backend_alloc(be, &b.dg, (size_t)N * 4));
  BENCH_TRY(srlm_backend_alloc(be, &b.dt, (size_t)N * 4));
  BENCH_TRY(srlm_backend_alloc(be, &b.dlse, (size_t)N * 4));
  BENCH_TRY(srlm_backend_alloc(be, &b.dout, (size_t)n_wide * 4));
  BENCH_TRY(srlm_backend_alloc(be, &b.drow, (size_t)(N + 1) * 4));
  BENCH_TRY(srlm_backend_copy_h2d(be, b.dx, b.x, (size_t)(N * W) * 4));
  BENCH_TRY(srlm_backend_copy_h2d(be, b.dw, b.w, (size_t)W * 4));
  BENCH_TRY(srlm_backend_copy_h2d(be, b.dg, b.g, (size_t)N * 4));
  BENCH_TRY(srlm_backend_copy_h2d(be, b.dt, b.t, (size_t)N * 4));
  BENCH_TRY(srlm_backend_copy_h2d(be, b.dlse, b.lse, (size_t)N * 4));

  /* first call: checked against the CPU */
  BENCH_TRY(run_op(be, op, &b, b.dout, b.drow, b.dx, b.dw));
  BENCH_TRY(srlm_backend_copy_d2h(be, got_out, b.dout, (size_t)n_wide * 4));
  if (n_rows) BENCH_TRY(srlm_backend_copy_d2h(be, got_row, b.drow, (size_t)n_rows * 4));
  ok &= check_case(op, &b, got_out, got_row);

  for (int i = 0; i < o->warmup; i++)
    BENCH_TRY(run_op(be, op, &b, b.dout, b.drow, b.dx, b.dw));
  BENCH_TRY(srlm_backend_sync(be));
  srlm_timer tm;
  srlm_timer_start(&tm);
  for (int i = 0; i < o->iters; i++)
    BENCH_TRY(run_op(be, op, &b, b.dout, b.drow, b.dx, b.dw));
  BENCH_TRY(srlm_backend_sync(be));
  double sec = srlm_timer_elapsed(&tm) / o->iters;

  /* the timed calls reproduced the checked outputs */
  BENCH_TRY(srlm_backend_copy_d2h(be, again, b.dout, (size_t)n_wide * 4));
  if (memcmp(again, got_out, (size_t)n_wide * 4) != 0) {
    fprintf(stderr, "bench_backend: %s N=%lld W=%lld: timed calls changed the output\n", kOpNames[op],
            (long long)N, (long long)W);
    ok = 0;
  }
  res->us = sec * 1e6;
  res->gbps = min_bytes(op, N, W) / sec / 1e9;
  res->ok = ok;

  void *dev[] = {b.dx, b.dw, b.dg, b.dt, b.dlse, b.dout, b.drow};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) BENCH_TRY(srlm_backend_free(be, dev[i]));
  free(b.x), free(b.w), free(b.g), free(b.t), free(b.lse), free(b.ref_out), free(b.ref_row);
  free(got_out), free(got_row), free(again);
  return 1;
}

static int usage(const char *msg) {
  fprintf(stderr, "bench_backend: error: %s\nusage: bench_backend [--backend cpu|cuda] [--iters N] "
          "[--warmup N] [--seed S] [--json PATH]\n", msg);
  return 2;
}

int main(int argc, char **argv) {
  bench_opts o = {.backend = "cpu", .json = NULL, .iters = 20, .warmup = 3, .seed = 1234};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return usage("every option takes a value");
    char *end = NULL;
    if (strcmp(a, "--backend") == 0) o.backend = v;
    else if (strcmp(a, "--json") == 0) o.json = v;
    else if (strcmp(a, "--iters") == 0 && (o.iters = (int)strtol(v, &end, 10)) > 0 && !*end) {}
    else if (strcmp(a, "--warmup") == 0 && (o.warmup = (int)strtol(v, &end, 10)) >= 0 && !*end) {}
    else if (strcmp(a, "--seed") == 0 && (o.seed = strtoull(v, &end, 10), !*end)) {}
    else return usage("unknown option or bad value");
    i++;
  }
#if defined(SRLM_HAVE_CUDA) && SRLM_HAVE_CUDA
  if (srlm_backend_register(srlm_backend_cuda_ops()) != SRLM_OK) return fprintf(stderr, "bench_backend: %s\n", srlm_error_message()), 1;
#endif
  srlm_backend *be = NULL;
  if (srlm_backend_open(o.backend, 0, &be) != SRLM_OK) return fprintf(stderr, "bench_backend: %s\n", srlm_error_message()), 2;

  printf("# bench_backend: backend %s, iters %d, warmup %d, seed %llu\n", be->name, o.iters, o.warmup,
         (unsigned long long)o.seed);
  printf("# time per call; GB/s = minimum bytes moved / time; check = vs CPU op (2x rule) and rerun bits\n");
  printf("# %-18s %8s %8s %12s %10s %6s\n", "op", "N", "C|V", "time_us", "GB/s", "check");
  char *json = NULL;
  size_t json_len = 0;
  FILE *js = o.json ? open_memstream(&json, &json_len) : NULL; /* written atomically at the end */
  if (js) fprintf(js, "{\"bench\": \"backend\", \"backend\": \"%s\", \"iters\": %d, \"warmup\": %d, \"seed\": %llu, \"results\": [",
                  be->name, o.iters, o.warmup, (unsigned long long)o.seed);
  int all_ok = 1;
  for (size_t k = 0; k < sizeof kCases / sizeof kCases[0]; k++) {
    bench_result r = {0, 0, 0};
    if (!bench_one(be, &o, &kCases[k], &r)) r.ok = 0;
    all_ok &= r.ok;
    printf("  %-18s %8lld %8lld %12.1f %10.2f %6s\n", kOpNames[kCases[k].op], (long long)kCases[k].N,
           (long long)kCases[k].C_or_V, r.us, r.gbps, r.ok ? "ok" : "WRONG");
    if (js) fprintf(js, "%s\n  {\"op\": \"%s\", \"N\": %lld, \"W\": %lld, \"time_us\": %.3f, \"gbps\": %.3f, \"ok\": %s}",
                    k ? "," : "", kOpNames[kCases[k].op], (long long)kCases[k].N, (long long)kCases[k].C_or_V,
                    r.us, r.gbps, r.ok ? "true" : "false");
  }
  if (js) {
    fprintf(js, "\n]}\n");
    fclose(js);
    if (srlm_write_file_atomic(o.json, json, json_len) != SRLM_OK)
      all_ok = 0, fprintf(stderr, "bench_backend: %s\n", srlm_error_message());
    free(json);
  }
  if (srlm_backend_close(be) != SRLM_OK) return fprintf(stderr, "bench_backend: %s\n", srlm_error_message()), 1;
  return all_ok ? 0 : 1;
}
