/* model equivalence across backends and dtypes: for every HF family fixture
 * (tests/fixtures/hf/<name>), the per-token log-probs of a packed batch, the gradients of
 * a fixed sum of them (one backward), and the weights after one AdamW step, computed on
 * each backend under test (SRLM_TEST_BACKENDS, comma-separated; default "cuda-sim")
 * in fp32 and in bf16, against the CPU in fp32 (the reference R).
 *
 * Measure: the relative L2 error e(x) = ||x - R|| / ||R|| of the log-probs, of every
 * gradient, and of the weight update (w1 - w0, so the step's size is what is compared).
 * Rules, per quantity:
 *   fp32: e <= 1e-5 for the log-probs and gradients (only the summation order of
 *         reductions may differ; the CPU's own rounding contract makes a GEMM element's
 *         bits independent of tiling). The update is compared from the SAME gradients (the
 *         CPU's, copied into the backend's gradient buffer before its AdamW step): AdamW
 *         divides by sqrt(v) + eps, so gradients near eps turn a 1e-7 gradient difference
 *         into an update difference of order 1e-4; from equal gradients the update is the
 *         adamw op alone, whose per-element float arithmetic is the CPU's: e <= 1e-6;
 *   bf16: e(backend bf16) <= 2 e(cpu bf16) + 1e-4, the flash-attention rule at the
 *         model level: computing in bf16 on the backend is no further from fp32 than
 *         twice the CPU's bf16 (which rounds every op's bf16 tensors exactly once), plus
 *         a floor for the reduction-order differences that a bf16 rounding boundary can
 *         turn into one ulp.
 * And the CPU's bf16 itself against R: e <= 5e-2 for log-probs and gradients and 0.5
 * for the update (AdamW's update is about the sign of m / sqrt(v); gradients near 0 can
 * flip it): bounds that catch a broken bf16 path (an op that skips the rounding, a
 * master copy that stops updating) without pinning bits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/model.h"
#include "srlm/optim.h"
#include "test.h"

#define OK(expr)                                                                    \
  do {                                                                              \
    srlm_status ok_st_ = (expr);                                                    \
    EXPECT(ok_st_ == SRLM_OK, "%s: %s", #expr, srlm_error_message());              \
  } while (0)

static const char *const k_families[] = {"llama", "qwen2", "qwen3", "mistral", "llama3_scaled", "llama_tied_bf16"};

enum { B = 3 };
static const int32_t k_cu[B + 1] = {0, 5, 14, 28}; /* three sequences of 5, 9 and 14 tokens */

typedef struct run_out {
  float *logp;   /* (T) */
  float *grads;  /* (n) */
  float *w0, *w1; /* (n) before and after one AdamW step */
  size_t n;
} run_out;

static void run_free(run_out *r) {
  free(r->logp), free(r->grads), free(r->w0), free(r->w1);
  memset(r, 0, sizeof *r);
}

/* The batch: ids from a fixed formula below V, targets the next token except at each
 * sequence's first two (a prompt) and last position; g a fixed pattern in [-1, 1]. */
static void make_batch(int64_t V, int32_t *tokens, int32_t *targets, float *g) {
  const int64_t T = k_cu[B];
  for (int64_t t = 0; t < T; t++) tokens[t] = (int32_t)((t * 7919 + 13) % V);
  for (int b = 0; b < B; b++)
    for (int32_t t = k_cu[b]; t < k_cu[b + 1]; t++) {
      const int last = t + 1 == k_cu[b + 1], prompt = t - k_cu[b] < 2;
      targets[t] = last || prompt ? -1 : tokens[t + 1];
      g[t] = targets[t] < 0 ? 0.0f : (float)sin(0.7 * (double)t + 0.3);
    }
}

/* Forward, backward and one AdamW step of model dir on backend `name` in dtype dt; the step
 * takes the gradients `step_grads` (host, n) instead of the model's own when given. */
static int run(const char *dir, const char *name, srlm_dtype dt, const float *step_grads, run_out *out) {
  memset(out, 0, sizeof *out);
  srlm_backend *be = NULL;
  if (srlm_backend_open(name, -1, &be) != SRLM_OK) {
    EXPECT(0, "cannot open backend %s: %s", name, srlm_error_message());
    return 0;
  }
  srlm_model *m = NULL;
  srlm_status st = srlm_model_load(dir, be, dt, &m);
  EXPECT(st == SRLM_OK, "load %s on %s/%s: %s", dir, name, srlm_dtype_name(dt), srlm_error_message());
  if (st != SRLM_OK) {
    srlm_backend_close(be);
    return 0;
  }
  const int64_t T = k_cu[B], V = srlm_model_get_config(m)->vocab_size;
  int32_t tokens[64], targets[64];
  float g[64];
  make_batch(V, tokens, targets, g);
  const size_t n = srlm_model_num_params(m);
  out->n = n;
  out->logp = srlm_xmalloc((size_t)T * sizeof(float));
  out->grads = srlm_xmalloc(n * sizeof(float));
  out->w0 = srlm_xmalloc(n * sizeof(float));
  out->w1 = srlm_xmalloc(n * sizeof(float));
  srlm_batch b = {.B = B, .T = T, .tokens = tokens, .cu_seqlens = k_cu, .targets = targets};
  srlm_optim_config oc = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .grad_clip = 1.0};
  srlm_optim *o = NULL;
  st = srlm_model_zero_grad(m);
  if (st == SRLM_OK) st = srlm_model_forward_train(m, &b, out->logp);
  if (st == SRLM_OK) st = srlm_model_backward(m, g);
  if (st == SRLM_OK) st = srlm_model_get_grads(m, out->grads, 0, n);
  if (st == SRLM_OK) st = srlm_model_get_params(m, out->w0, 0, n);
  if (st == SRLM_OK) st = srlm_optim_create_for_model(m, &oc, &o);
  float *grads = NULL;
  if (st == SRLM_OK) st = srlm_model_grad_buffer(m, &grads);
  if (st == SRLM_OK && step_grads) st = srlm_backend_copy_h2d(be, grads, step_grads, n * sizeof(float));
  if (st == SRLM_OK) st = srlm_optim_step(o, srlm_model_master(m), grads, 1e-3, NULL);
  if (st == SRLM_OK) st = srlm_model_get_params(m, out->w1, 0, n);
  EXPECT(st == SRLM_OK, "%s on %s/%s: %s", dir, name, srlm_dtype_name(dt), srlm_error_message());
  srlm_optim_free(o);
  srlm_model_free(m);
  srlm_status cst = srlm_backend_close(be);
  EXPECT(cst == SRLM_OK, "close %s: %s", name, srlm_error_message());
  return st == SRLM_OK && cst == SRLM_OK;
}

/* ||x - r|| / ||r|| over n values (x - x0 and r - r0 when the bases are given). */
static double rel_err(const float *x, const float *x0, const float *r, const float *r0, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    const double a = (double)x[i] - (x0 ? (double)x0[i] : 0.0), b = (double)r[i] - (r0 ? (double)r0[i] : 0.0);
    num += (a - b) * (a - b);
    den += b * b;
  }
  if (isnan(num)) return INFINITY;
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

typedef struct errs {
  double logp, grads, update;
} errs;

static errs compare(const run_out *x, const run_out *r) {
  errs e = {rel_err(x->logp, NULL, r->logp, NULL, (size_t)k_cu[B]), rel_err(x->grads, NULL, r->grads, NULL, r->n),
            rel_err(x->w1, x->w0, r->w1, r->w0, r->n)};
  return e;
}

static void report(const char *family, const char *what, errs e) {
  fprintf(stderr, "  %-16s %-16s logp %.2e  grads %.2e  update %.2e\n", family, what, e.logp, e.grads, e.update);
}

int main(void) {
  const char *src = getenv("SRLM_SOURCE_DIR");
  const char *list = getenv("SRLM_TEST_BACKENDS");
  char backends[256];
  snprintf(backends, sizeof backends, "%s", list ? list : "cuda-sim");
  fprintf(stderr, "backends under test: %s\n", backends);
  for (size_t f = 0; f < sizeof k_families / sizeof k_families[0]; f++) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/hf/%s", src ? src : ".", k_families[f]);
    run_out ref, cbf;
    if (!run(dir, "cpu", SRLM_F32, NULL, &ref)) continue;
    if (!run(dir, "cpu", SRLM_BF16, NULL, &cbf)) {
      run_free(&ref);
      continue;
    }
    const errs ec = compare(&cbf, &ref);
    report(k_families[f], "cpu bf16", ec);
    EXPECT(ec.logp <= 5e-2 && ec.grads <= 5e-2 && ec.update <= 0.5,
           "%s: cpu bf16 too far from fp32: logp %.2e grads %.2e update %.2e", k_families[f], ec.logp, ec.grads,
           ec.update);
    char names[256];
    snprintf(names, sizeof names, "%s", backends);
    for (char *save = NULL, *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
      run_out x;
      char what[64];
      if (run(dir, name, SRLM_F32, ref.grads, &x)) {
        const errs e = compare(&x, &ref);
        snprintf(what, sizeof what, "%s fp32", name);
        report(k_families[f], what, e);
        EXPECT(e.logp <= 1e-5 && e.grads <= 1e-5 && e.update <= 1e-6,
               "%s on %s fp32: logp %.2e grads %.2e (rule 1e-5) update from equal gradients %.2e (rule 1e-6)",
               k_families[f], name, e.logp, e.grads, e.update);
        run_free(&x);
      }
      if (run(dir, name, SRLM_BF16, NULL, &x)) {
        const errs e = compare(&x, &ref);
        snprintf(what, sizeof what, "%s bf16", name);
        report(k_families[f], what, e);
        EXPECT(e.logp <= 2 * ec.logp + 1e-4 && e.grads <= 2 * ec.grads + 1e-4 && e.update <= 2 * ec.update + 1e-4,
               "%s on %s bf16: logp %.2e grads %.2e update %.2e vs 2 x cpu bf16 (%.2e %.2e %.2e) + 1e-4",
               k_families[f], name, e.logp, e.grads, e.update, ec.logp, ec.grads, ec.update);
        run_free(&x);
      }
    }
    run_free(&ref);
    run_free(&cbf);
  }
  TEST_MAIN_END();
}
