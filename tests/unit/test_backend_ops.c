/* backend ops: every op of the list (SRLM_BACKEND_OPS) on any backend, by name, against a
 * float64 reference, in fp32 and bf16 (llama.cpp's test-backend-ops, with
 * flash-attention's tolerance rule).
 *
 *   test_backend_ops [BACKENDS] [--dtype fp32,bf16] [--seed S] [--op NAME] [--large] [--verbose]
 *
 * BACKENDS (or SRLM_TEST_BACKENDS): comma-separated names; default "cpu", plus "cuda-sim"
 * when this program has it. Dtypes also from SRLM_TEST_DTYPES. --large (or
 * SRLM_TEST_SIZE=large) adds model-sized shapes, for a GPU; SRLM_TEST_QUICK (the sanitizer
 * stage of tests/run.sh) leaves out the mid-sized attention shapes the Release stage runs.
 *
 * Cases. The case list is the X-macro: case_<op> for every op of SRLM_BACKEND_OPS, so an
 * op added to backend.h without a case does not link. Each case has a table of shapes
 * covering the launch-shape classes (1, odd sizes, sizes off multiples of 32/64/128,
 * empty batches, V = 151936, GQA ratios, sliding windows, packed sequences, in-place
 * aliasing where the contract allows it), inputs from Philox keyed by (seed, op, shape),
 * so --seed S --op NAME replays one op's inputs exactly, and a float64 reference computed
 * from the same inputs (for bf16: the rounded values the backend reads).
 *
 * Runs. Data moves only through the backend's alloc and copy calls. Every run uploads
 * every tensor: outputs the op overwrites are filled with NaN first (an element it does
 * not write stays NaN and fails the rule), outputs it accumulates into get random start
 * values the reference adds to. Each case runs twice on the backend; the second run must
 * give the same bits.
 *
 * The rule. For each output, the backend's max error against fp64 must be at most 2x the
 * error of the CPU backend computing the same op from the same inputs, plus a floor of a
 * few fp32 ulps of the output's magnitude (FLOOR_*, below). For the CPU itself (the
 * reference) the base is instead a naive fp32 implementation written here: fp32 math on
 * the (rounded) inputs, outputs rounded once to the dtype, plus the roundings an op's
 * contract prescribes (the LM head's bf16 dlogits). Where the contract fixes the bits
 * (gathers, the scatter-add in row order, add, cast, KV append, AdamW's compute copy,
 * a backend's sampled tokens and log-probs: the CPU's) the bits are checked instead. Data
 * errors (an id out of range, a bad slot) must be
 * reported by the op or by the next sync, as a range error naming the backend's op and
 * the row or sequence.
 *
 * Lacking ops are reported; for cpu and cuda-sim, which must have every op, a lacking op
 * is a failure. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/backend.h"
#include "srlm/core.h"
#include "srlm/loss_math.h"
#include "sample_ref.h"
#include "test.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Floors of the rule, in fp32 ulps of the output's largest magnitude: of |ref|, or where the
 * result is a sum whose terms may cancel, of the sum of the terms' absolute values (the
 * magnitude a rounding-error bound is proportional to; a small shape's few cancelled values
 * would otherwise set a floor far below the rounding of its terms); of 1 for errors measured
 * relative to a per-element magnitude:
 * FLOOR_ORDER 1: the one rounding by which two valid evaluation orders of the same sum can
 *   differ where the base happens to be exact (a bias or start value added first or last,
 *   a product rounded before its add instead of inside an fma; nvcc contracts a*b + c into
 *   an fma by default).
 * FLOOR_LIBM 2: the single-precision functions the op calls differ between correct
 *   implementations: CUDA's expf, sinf, cosf and rsqrtf are documented within 2 ulp and
 *   logf within 1 (CUDA C++ Programming Guide, "Mathematical Functions"), glibc's within 1,
 *   and the CPU backend's vector exp within about 1 (src/backend/cpu/vexp.c).
 * grad_sumsq's result is a double: its floor is FLOOR_ORDER ulps of double. */
#define FLOOR_ORDER 1.0
#define FLOOR_LIBM 2.0

/* Backends that must have every op of the list. */
static const char *const k_complete_backends[] = {"cpu", "cuda-sim"};

/* ---- tensors ------------------------------------------------------------------------ */

typedef enum elem { E_F32, E_BF16, E_I32, E_F64, E_I64 } elem; /* E_I64: offsets, sequence ids */
static const size_t k_elem_size[] = {4, 2, 4, 8, 8};
static elem E(srlm_dtype dt) { return dt == SRLM_BF16 ? E_BF16 : E_F32; }
static int is_float(elem e) { return e == E_F32 || e == E_BF16; }

enum { RES_GOT, RES_BASE, RES_AGAIN }; /* the runs of a case: backend, CPU, backend again */

typedef struct tens {
  const char *name;
  elem e;
  int64_t n;
  int out;         /* downloaded after each run (outputs, and inputs updated in place) */
  void *h;         /* (n) host contents, uploaded before each run */
  float *f;        /* (n) h widened (float elements) */
  void *dev;       /* the buffer of the run in progress */
  void *res[3];    /* (n) what each run left in it (outputs), raw */
  float *gotf, *basef; /* res[RES_GOT], res[RES_BASE] widened */
} tens;

#define MAX_TENS 32
#define MAX_MEM 64

typedef struct tctx {
  srlm_backend *be, *cpu; /* under test; the CPU reference */
  srlm_dtype dt;
  int is_ref;             /* be is the CPU: the rule's base is the naive code */
  int dtype_pass;         /* 0 for the first dtype run (dtype-free ops run only then) */
  int large, verbose;
  int quick;              /* SRLM_TEST_QUICK (the sanitizer stage): skip_quick's shapes left out */
  uint64_t seed;
  int op;                 /* srlm_op_id of the case running */
  uint32_t purpose;       /* the next Philox stream of the shape */
  char label[224];        /* "[cpu bf16] matmul M=7 N=5 K=3 ..." */
  tens *pool[MAX_TENS];   /* the shape's tensors and scratch, freed by shape_end */
  int npool;
  void *mem[MAX_MEM];
  int nmem;
  int shapes, checks;     /* per op */
  double worst;           /* max over the op's checks of error / tolerance */
} tctx;

static void *scratch(tctx *t, size_t bytes) {
  SRLM_CHECK(t->nmem < MAX_MEM, "more than %d scratch arrays in one shape", MAX_MEM);
  return t->mem[t->nmem++] = srlm_xcalloc(bytes ? bytes : 1, 1);
}
static float *fz(tctx *t, int64_t n) { return scratch(t, (size_t)n * sizeof(float)); }
static double *dz(tctx *t, int64_t n) { return scratch(t, (size_t)n * sizeof(double)); }

static tens *tnew(tctx *t, const char *name, elem e, int64_t n, int out) {
  SRLM_CHECK(t->npool < MAX_TENS, "more than %d tensors in one shape", MAX_TENS);
  tens *x = srlm_xcalloc(1, sizeof *x);
  x->name = name;
  x->e = e;
  x->n = n;
  x->out = out;
  const size_t bytes = (size_t)(n > 0 ? n : 1) * k_elem_size[e];
  x->h = srlm_xcalloc(1, bytes);
  if (is_float(e)) x->f = srlm_xcalloc((size_t)(n > 0 ? n : 1), sizeof(float));
  if (out)
    for (int r = 0; r < 3; r++) x->res[r] = srlm_xcalloc(1, bytes);
  if (out && is_float(e)) {
    x->gotf = srlm_xcalloc((size_t)(n > 0 ? n : 1), sizeof(float));
    x->basef = srlm_xcalloc((size_t)(n > 0 ? n : 1), sizeof(float));
  }
  t->pool[t->npool++] = x;
  return x;
}

/* Rounds x->f to the element type into x->h, and x->f to the stored values. */
static void tstore(tens *x) {
  if (x->e == E_F32) memcpy(x->h, x->f, (size_t)x->n * sizeof(float));
  if (x->e != E_BF16) return;
  srlm_convert(x->h, SRLM_BF16, x->f, SRLM_F32, (size_t)x->n);
  srlm_convert(x->f, SRLM_F32, x->h, SRLM_BF16, (size_t)x->n);
}

static void fill_nan(tens *x) {
  for (int64_t i = 0; i < x->n; i++) x->f[i] = NAN;
  tstore(x);
}

/* An input; an output the op overwrites (NaN until it does); an output whose start values
 * the caller sets (accumulated, or updated in place). */
static tens *T_in(tctx *t, const char *name, elem e, int64_t n) { return tnew(t, name, e, n, 0); }
static tens *T_out(tctx *t, const char *name, elem e, int64_t n) {
  tens *x = tnew(t, name, e, n, 1);
  if (is_float(e)) fill_nan(x);
  return x;
}
static tens *T_acc(tctx *t, const char *name, elem e, int64_t n) { return tnew(t, name, e, n, 1); }
/* A tensor holding x's contents, for a second run with other aliasing. */
static tens *T_copy(tctx *t, const char *name, const tens *x, int out) {
  tens *y = tnew(t, name, x->e, x->n, out);
  memcpy(y->h, x->h, (size_t)x->n * k_elem_size[x->e]);
  if (x->f) memcpy(y->f, x->f, (size_t)x->n * sizeof(float));
  return y;
}

static int32_t *I32(const tens *x) { return x->h; }
static double *F64(const tens *x) { return x->h; }
static int64_t *I64(const tens *x) { return x->h; }

/* Uniform values in [lo, hi] from the shape's next Philox stream, rounded to x's type. */
static void rnd(tctx *t, tens *x, double lo, double hi) {
  const uint32_t purpose = t->purpose++;
  for (int64_t i = 0; i < x->n; i += 4) {
    const srlm_philox_out o = srlm_rng_bits(t->seed, purpose, (uint32_t)(i >> 2), (uint32_t)(i >> 34), 0);
    for (int64_t j = 0; j < 4 && i + j < x->n; j++) {
      const double u = lo + (hi - lo) * srlm_rng_u01d(o.v[j], o.v[(j + 1) & 3]);
      if (x->e == E_I32) I32(x)[i + j] = (int32_t)u;
      else if (x->e == E_I64) I64(x)[i + j] = (int64_t)u;
      else if (x->e == E_F64) F64(x)[i + j] = u;
      else x->f[i + j] = (float)u;
    }
  }
  if (is_float(x->e)) tstore(x);
}

/* n integers uniform in [lo, hi) from the shape's next stream. */
static void rnd_ints(tctx *t, int32_t *a, int64_t n, int64_t lo, int64_t hi) {
  const uint32_t purpose = t->purpose++;
  for (int64_t i = 0; i < n; i++)
    a[i] = (int32_t)(lo + (int64_t)(srlm_rng_bits(t->seed, purpose, (uint32_t)i, (uint32_t)(i >> 32), 1).v[0] %
                                    (uint64_t)(hi - lo)));
}

/* n raw bit patterns of elem e (every float class: NaN, inf, subnormal, ...). */
static void rnd_bits(tctx *t, tens *x) {
  const uint32_t purpose = t->purpose++;
  for (int64_t i = 0; i < x->n; i++) {
    const uint32_t b = srlm_rng_bits(t->seed, purpose, (uint32_t)i, 0, 2).v[0];
    if (x->e == E_BF16) ((uint16_t *)x->h)[i] = (uint16_t)b;
    else ((uint32_t *)x->h)[i] = b;
  }
  srlm_convert(x->f, SRLM_F32, x->h, x->e == E_BF16 ? SRLM_BF16 : SRLM_F32, (size_t)x->n);
}

/* Rounds n naive fp32 results to e, as the op stores them. */
static void round_to(elem e, float *v, int64_t n) {
  if (e != E_BF16) return;
  for (int64_t i = 0; i < n; i++) v[i] = srlm_round_bf16(v[i]);
}

/* ---- shapes and runs --------------------------------------------------------------------- */

/* Shapes whose float64 reference costs more than LARGE_WORK multiply-adds (seconds on one
 * core) run only with --large: model-sized shapes for a GPU machine, listed last in the
 * tables. */
#define LARGE_WORK 1.5e8
static int skip_large(const tctx *t, double work) { return work > LARGE_WORK && !t->large; }
/* Shapes past QUICK_WORK (seconds of simulated kernels under ASan) are left out where
 * SRLM_TEST_QUICK is set (tests/run.sh's sanitizer stage); the Release stage runs them. */
#define QUICK_WORK 5e6
static int skip_quick(const tctx *t, double work) { return work > QUICK_WORK && t->quick && !t->large; }

static void shape_begin(tctx *t, int shape, const char *fmt, ...) {
  t->purpose = ((uint32_t)(t->op + 1) << 24) | ((uint32_t)shape << 12);
  int n = snprintf(t->label, sizeof t->label, "[%s %s] %s ", t->be->name, srlm_dtype_name(t->dt), srlm_op_names[t->op]);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof t->label) vsnprintf(t->label + n, sizeof t->label - (size_t)n, fmt, ap);
  va_end(ap);
  t->shapes++;
}

static void shape_end(tctx *t) {
  for (int i = 0; i < t->npool; i++) {
    tens *x = t->pool[i];
    free(x->h), free(x->f), free(x->gotf), free(x->basef);
    for (int r = 0; r < 3; r++) free(x->res[r]);
    free(x);
  }
  for (int i = 0; i < t->nmem; i++) free(t->mem[i]);
  t->npool = t->nmem = 0;
}

typedef srlm_status (*launch_fn)(srlm_backend *be, void *io);

/* The buffer of tensor x in the run in progress (NULL for an absent tensor). */
#define D(x) ((x) ? (x)->dev : NULL)

/* One run on `be`: allocate and upload every tensor (NULL entries are absent ones), launch,
 * download the outputs into res[slot], sync, free. Empty tensors still get a small buffer,
 * so an empty batch passes valid pointers. The first failure's status is returned (its
 * message is srlm_error_message()). */
static srlm_status run_on(srlm_backend *be, launch_fn fn, void *io, tens **ts, int nt, int slot) {
  srlm_status st = SRLM_OK;
  for (int i = 0; i < nt; i++)
    if (ts[i]) ts[i]->dev = NULL;
  for (int i = 0; i < nt && st == SRLM_OK; i++) {
    if (!ts[i]) continue;
    const size_t bytes = (size_t)ts[i]->n * k_elem_size[ts[i]->e];
    st = srlm_backend_alloc(be, &ts[i]->dev, bytes ? bytes : 64);
    if (st == SRLM_OK && bytes) st = srlm_backend_copy_h2d(be, ts[i]->dev, ts[i]->h, bytes);
  }
  if (st == SRLM_OK) st = fn(be, io);
  for (int i = 0; i < nt && st == SRLM_OK; i++) {
    if (!ts[i] || !ts[i]->out || ts[i]->n == 0) continue;
    st = srlm_backend_copy_d2h(be, ts[i]->res[slot], ts[i]->dev, (size_t)ts[i]->n * k_elem_size[ts[i]->e]);
  }
  if (st == SRLM_OK) st = srlm_backend_sync(be);
  for (int i = 0; i < nt; i++) {
    if (!ts[i] || !ts[i]->dev) continue;
    const srlm_status fs = srlm_backend_free(be, ts[i]->dev);
    ts[i]->dev = NULL;
    if (st == SRLM_OK) st = fs;
  }
  return st;
}

static int64_t first_diff(const void *a, const void *b, int64_t n, size_t esize) {
  for (int64_t i = 0; i < n; i++)
    if (memcmp((const char *)a + (size_t)i * esize, (const char *)b + (size_t)i * esize, esize) != 0) return i;
  return -1;
}

/* Element i of raw data of type e, as a double (for messages). */
static double elem_value(elem e, const void *p, int64_t i) {
  switch (e) {
    case E_F32: return ((const float *)p)[i];
    case E_BF16: return srlm_bf16_to_f32(((const uint16_t *)p)[i]);
    case E_I32: return ((const int32_t *)p)[i];
    case E_F64: return ((const double *)p)[i];
    case E_I64: return (double)((const int64_t *)p)[i];
  }
  return NAN;
}

/* The runs of a case: the backend (RES_GOT), the CPU unless the backend is the CPU
 * (RES_BASE), the backend again (RES_AGAIN: must be the same bits). Returns 1 when they
 * all ran. */
static int exec(tctx *t, launch_fn fn, void *io, tens **ts, int nt) {
  srlm_status st = run_on(t->be, fn, io, ts, nt, RES_GOT);
  EXPECT(st == SRLM_OK, "%s: %s", t->label, srlm_error_message());
  if (st != SRLM_OK) return 0;
  if (!t->is_ref) {
    st = run_on(t->cpu, fn, io, ts, nt, RES_BASE);
    EXPECT(st == SRLM_OK, "%s: on the cpu: %s", t->label, srlm_error_message());
    if (st != SRLM_OK) return 0;
  }
  st = run_on(t->be, fn, io, ts, nt, RES_AGAIN);
  EXPECT(st == SRLM_OK, "%s: second run: %s", t->label, srlm_error_message());
  if (st != SRLM_OK) return 0;
  for (int i = 0; i < nt; i++) {
    tens *x = ts[i];
    if (!x || !x->out) continue;
    const int64_t d = first_diff(x->res[RES_GOT], x->res[RES_AGAIN], x->n, k_elem_size[x->e]);
    EXPECT(d < 0, "%s: %s: a second run gave other bits, first at [%lld]: %.9g then %.9g", t->label, x->name,
           (long long)d, d < 0 ? 0.0 : elem_value(x->e, x->res[RES_GOT], d),
           d < 0 ? 0.0 : elem_value(x->e, x->res[RES_AGAIN], d));
    if (!is_float(x->e)) continue;
    srlm_convert(x->gotf, SRLM_F32, x->res[RES_GOT], x->e == E_BF16 ? SRLM_BF16 : SRLM_F32, (size_t)x->n);
    if (!t->is_ref)
      srlm_convert(x->basef, SRLM_F32, x->res[RES_BASE], x->e == E_BF16 ? SRLM_BF16 : SRLM_F32, (size_t)x->n);
  }
  return 1;
}

#define TLIST(...) (tens *[]){__VA_ARGS__}, (int)(sizeof((tens *[]){__VA_ARGS__}) / sizeof(tens *))
#define EXEC(t, fn, io, ...) exec((t), (fn), (io), TLIST(__VA_ARGS__))

/* A run that must fail with a data error, reported by the op or by the next sync/copy: a
 * range error whose message names the backend's op and contains `where` (the row or the
 * sequence). Afterwards the backend works again (the error was reported once). */
static void expect_data_error(tctx *t, const char *where, launch_fn fn, void *io, tens **ts, int nt) {
  const srlm_status st = run_on(t->be, fn, io, ts, nt, RES_AGAIN);
  char msg[512], op[96];
  snprintf(msg, sizeof msg, "%s", st == SRLM_OK ? "(no error)" : srlm_error_message());
  snprintf(op, sizeof op, "%s %s", t->be->name, srlm_op_names[t->op]);
  EXPECT(st == SRLM_ERR_RANGE, "%s: bad data at %s: status %d, expected a range error; message: %s", t->label,
         where, (int)st, msg);
  EXPECT(strstr(msg, op) && strstr(msg, where), "%s: the data error's message \"%s\" does not name \"%s\" and \"%s\"",
         t->label, msg, op, where);
  const srlm_status after = srlm_backend_sync(t->be);
  EXPECT(after == SRLM_OK, "%s: the data error was reported again by the next sync: %s", t->label,
         srlm_error_message());
}
#define DATA_ERROR(t, where, fn, io, ...) expect_data_error((t), (where), (fn), (io), TLIST(__VA_ARGS__))

/* ---- the rule -------------------------------------------------------------------------- */

/* |got - ref| (divided by denom when > 0); a NaN or inf ref must be matched exactly
 * (the same infinity, or any NaN); a NaN where ref is finite is an infinite error. */
static double err_of(double got, double ref, double denom) {
  if (isnan(ref)) return isnan(got) ? 0.0 : INFINITY;
  if (isinf(ref)) return got == ref ? 0.0 : INFINITY;
  double d = fabs(got - ref);
  if (denom > 0) d /= denom;
  return isnan(d) ? INFINITY : d;
}

static void note_check(tctx *t, double err, double tol) {
  t->checks++;
  const double ratio = tol > 0 ? err / tol : (err > 0 ? INFINITY : 0.0);
  if (ratio > t->worst) t->worst = ratio;
}

/* The rule on n values: max err(got) <= 2 max err(base) + floor (absolute). base is the CPU
 * (backends) or the naive code (the CPU). */
static void rule_n(tctx *t, const char *what, const double *got, const double *base, const double *ref,
                   const double *denom, int64_t n, double floor) {
  double eg = 0, eb = 0;
  int64_t at = -1, bat = -1;
  for (int64_t i = 0; i < n; i++) {
    const double den = denom ? denom[i] : 0, e = err_of(got[i], ref[i], den), b = err_of(base[i], ref[i], den);
    if (at < 0 || e > eg) eg = e, at = i;
    if (bat < 0 || b > eb) eb = b, bat = i;
  }
  const double tol = 2 * eb + floor;
  note_check(t, eg, tol);
  const char *bname = t->is_ref ? "naive fp32" : "cpu";
  if (t->verbose)
    fprintf(stderr, "  %s: %s: %s err %.3e  %s %.3e  tol %.3e\n", t->label, what, denom ? "rel" : "abs", eg, bname,
            eb, tol);
  EXPECT(isfinite(eb), "%s: %s: the %s base itself is off: error %g at [%lld]: %.9g vs ref %.17g", t->label, what,
         bname, eb, (long long)bat, bat < 0 ? 0.0 : base[bat], bat < 0 ? 0.0 : ref[bat]);
  EXPECT(eg <= tol,
         "%s: %s: %s error %.3e at [%lld] (got %.9g, ref %.17g, %s %.9g) exceeds 2 x %s error %.3e + floor %.3e "
         "= %.3e",
         t->label, what, denom ? "relative" : "absolute", eg, (long long)at, got[at], ref[at], bname, base[at], bname,
         eb, floor, tol);
}

/* The rule on output x of n elements, with a floor of `ulps` fp32 ulps of its largest finite
 * |mag| (mag NULL: of |ref|; where the result cancels, the magnitude of its terms), or of 1
 * when errors are relative to denom. naive: the naive fp32 result, rounded to x's type. */
static void rule_mag(tctx *t, const char *what, const tens *x, const double *ref, const float *naive,
                     const double *denom, const double *mag, double ulps) {
  const int64_t n = x->n;
  double *got = dz(t, n), *base = dz(t, n), scale = 0;
  const float *b = t->is_ref ? naive : x->basef;
  for (int64_t i = 0; i < n; i++) {
    got[i] = x->gotf[i];
    base[i] = b[i];
    const double m = mag ? mag[i] : ref[i];
    if (isfinite(m)) scale = fmax(scale, fabs(m));
  }
  rule_n(t, what, got, base, ref, denom, n, ulps * FLT_EPSILON * (denom ? 1.0 : scale));
}

static void rule(tctx *t, const char *what, const tens *x, const double *ref, const float *naive, const double *denom,
                 double ulps) {
  rule_mag(t, what, x, ref, naive, denom, NULL, ulps);
}

/* x's first run left exactly the bytes `want`. */
static void expect_bits(tctx *t, const char *what, const tens *x, const void *want) {
  const int64_t d = first_diff(x->res[RES_GOT], want, x->n, k_elem_size[x->e]);
  note_check(t, d < 0 ? 0 : 1, 1);
  EXPECT(d < 0, "%s: %s: differs first at [%lld] of %lld: got %.9g, expected %.9g", t->label, what, (long long)d,
         (long long)x->n, d < 0 ? 0.0 : elem_value(x->e, x->res[RES_GOT], d), d < 0 ? 0.0 : elem_value(x->e, want, d));
}

/* ---- matmul -------------------------------------------------------------------------- */

typedef struct mm_io {
  srlm_matmul_params p;
  tens *c, *a, *b, *bias;
} mm_io;

static srlm_status mm_launch(srlm_backend *be, void *v) {
  const mm_io *io = v;
  srlm_matmul_params p = io->p;
  p.c = D(io->c), p.a = D(io->a), p.b = D(io->b), p.bias = D(io->bias);
  return SRLM_OP(be, matmul, p);
}

/* NaN in the stride padding of a (rows, ld) array: an op that reads it poisons a result. */
static void pad_nan(tens *x, int64_t rows, int64_t cols, int64_t ld) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = cols; c < ld; c++) x->f[r * ld + c] = NAN;
  tstore(x);
}

static void case_matmul(tctx *t) {
  /* the three Linear layouts (x W^T: tb; dy W; dW += dy^T x: ta, acc), M = 1 (decode), K = 0
   * (C = bias or kept), empty M or N, sizes around 32/64/128, row strides past the row */
  static const struct { int64_t M, N, K; int ta, tb, acc, bias, pad; } S[] = {
      {1, 1, 1, 0, 0, 0, 0, 0},       {1, 1, 1, 0, 1, 1, 1, 0},     {0, 5, 3, 0, 1, 0, 0, 0},
      {4, 0, 3, 0, 0, 1, 0, 0},       {3, 1, 0, 0, 1, 1, 1, 0},     {5, 4, 0, 0, 0, 0, 0, 0},
      {7, 5, 3, 0, 1, 0, 1, 0},       {33, 70, 300, 0, 1, 0, 0, 0}, {129, 97, 513, 0, 0, 1, 0, 0},
      {65, 130, 260, 1, 0, 1, 0, 0},  {9, 64, 1000, 0, 1, 0, 1, 3}, {193, 40, 77, 1, 1, 1, 1, 5},
      {200, 257, 64, 0, 1, 0, 1, 0},  {1, 896, 128, 0, 1, 0, 0, 0}, {31, 33, 127, 1, 0, 0, 1, 2},
      /* --large: a 0.5B model's MLP layouts */
      {256, 4864, 896, 0, 1, 0, 1, 0}, {896, 896, 512, 1, 0, 1, 0, 0},
  };
  for (size_t k = 0; k < NELEM(S); k++)
    for (int cv = 0; cv < (t->dt == SRLM_BF16 ? 2 : 1); cv++) { /* bf16: C in bf16, then fp32 */
      const int64_t M = S[k].M, N = S[k].N, K = S[k].K, pad = S[k].pad;
      const int ta = S[k].ta, tb = S[k].tb, acc = S[k].acc;
      const srlm_dtype cdt = cv ? SRLM_F32 : t->dt;
      if (skip_large(t, (double)M * N * K)) continue;
      shape_begin(t, (int)(2 * k + (size_t)cv), "M=%lld N=%lld K=%lld%s%s%s%s pad=%lld C=%s", (long long)M,
                  (long long)N, (long long)K, ta ? " trans_a" : "", tb ? " trans_b" : "", acc ? " acc" : "",
                  S[k].bias ? " bias" : "", (long long)pad, srlm_dtype_name(cdt));
      const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
      const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = N + pad;
      tens *a = T_in(t, "A", E(t->dt), a_rows * lda), *b = T_in(t, "B", E(t->dt), b_rows * ldb);
      tens *c = T_acc(t, "C", E(cdt), M * ldc), *bias = S[k].bias ? T_in(t, "bias", E(cdt), N) : NULL;
      rnd(t, a, -1, 1);
      rnd(t, b, -1, 1);
      rnd(t, c, -1, 1);
      if (bias) rnd(t, bias, -1, 1);
      pad_nan(a, a_rows, a_cols, lda);
      pad_nan(b, b_rows, b_cols, ldb);
      if (!acc) pad_nan(c, M, 0, N); /* overwritten: NaN until written; the padding keeps its values */
      mm_io io = {{.M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc, .trans_a = ta, .trans_b = tb,
                   .accumulate = acc, .dtype = t->dt, .c_dtype = cdt},
                  c, a, b, bias};
      if (EXEC(t, mm_launch, &io, a, b, c, bias)) {
        double *ref = dz(t, M * ldc), *mag = dz(t, M * ldc);
        float *nv = fz(t, M * ldc);
        for (int64_t i = 0; i < M * ldc; i++) ref[i] = nv[i] = c->f[i]; /* the padding stays */
        for (int64_t m = 0; m < M; m++)
          for (int64_t n = 0; n < N; n++) {
            double r = acc ? c->f[m * ldc + n] : 0.0, g = fabs(r);
            float s = acc ? c->f[m * ldc + n] : 0.0f;
            for (int64_t q = 0; q < K; q++) {
              const float av = ta ? a->f[q * lda + m] : a->f[m * lda + q];
              const float bv = tb ? b->f[n * ldb + q] : b->f[q * ldb + n];
              r += (double)av * bv;
              g += fabs((double)av * bv);
              s += av * bv;
            }
            if (bias) r += bias->f[n], g += fabs(bias->f[n]), s += bias->f[n];
            ref[m * ldc + n] = r;
            mag[m * ldc + n] = g;
            nv[m * ldc + n] = s;
          }
        round_to(c->e, nv, M * ldc);
        rule_mag(t, "C", c, ref, nv, NULL, mag, FLOOR_ORDER);
      }
      shape_end(t);
    }
}

/* ---- RMSNorm ------------------------------------------------------------------------- */

typedef struct rms_io {
  srlm_rmsnorm_params p;
  tens *out, *rstd, *x, *w;
} rms_io;

static srlm_status rms_launch(srlm_backend *be, void *v) {
  const rms_io *io = v;
  srlm_rmsnorm_params p = io->p;
  p.out = D(io->out), p.rstd = D(io->rstd), p.x = D(io->x), p.w = D(io->w);
  return SRLM_OP(be, rmsnorm_forward, p);
}

/* rstd of row x (C) in float64: 1 / sqrt(mean(x^2) + eps). */
static double rstd64(const float *x, int64_t C, float eps) {
  double ss = 0;
  for (int64_t c = 0; c < C; c++) ss += (double)x[c] * x[c];
  return 1.0 / sqrt(ss / (double)C + eps);
}

static void case_rmsnorm_forward(tctx *t) {
  static const struct { int64_t N, C; double amp; float eps; } S[] = {
      {1, 1, 1, 1e-6f},    {0, 64, 1, 1e-6f},    {1, 768, 1, 1e-6f},  {7, 1000, 3, 1e-5f}, {33, 4097, 1, 1e-6f},
      {5, 515, 1e3, 1e-6f}, {4, 333, 1e-3, 1e-5f}, {64, 33, 1, 1e-6f}, {9, 32, 1, 1e-6f},  {3, 8192, 1, 1e-6f},
  };
  for (size_t k = 0; k < NELEM(S); k++) {
    const int64_t N = S[k].N, C = S[k].C;
    const float eps = S[k].eps;
    shape_begin(t, (int)k, "N=%lld C=%lld amp=%g eps=%g", (long long)N, (long long)C, S[k].amp, (double)eps);
    tens *x = T_in(t, "x", E(t->dt), N * C), *w = T_in(t, "w", E(t->dt), C);
    tens *out = T_out(t, "out", E(t->dt), N * C), *rstd = T_out(t, "rstd", E_F32, N);
    rnd(t, x, -S[k].amp, S[k].amp);
    rnd(t, w, 0.5, 1.5);
    rms_io io = {{.N = N, .C = C, .eps = eps, .dtype = t->dt}, out, rstd, x, w};
    if (EXEC(t, rms_launch, &io, x, w, out, rstd)) {
      double *rout = dz(t, N * C), *rr = dz(t, N);
      float *nout = fz(t, N * C), *nr = fz(t, N);
      for (int64_t n = 0; n < N; n++) {
        const float *xr = x->f + n * C;
        rr[n] = rstd64(xr, C, eps);
        float ss = 0;
        for (int64_t c = 0; c < C; c++) ss += xr[c] * xr[c];
        nr[n] = 1.0f / sqrtf(ss / (float)C + eps);
        for (int64_t c = 0; c < C; c++) {
          rout[n * C + c] = xr[c] * rr[n] * w->f[c];
          nout[n * C + c] = xr[c] * nr[n] * w->f[c];
        }
      }
      round_to(out->e, nout, N * C);
      rule(t, "out", out, rout, nout, NULL, FLOOR_LIBM);
      rule(t, "rstd", rstd, rr, nr, NULL, FLOOR_LIBM);
      /* in place (out = x) without rstd: the same bits */
      tens *xo = T_copy(t, "out=x", x, 1);
      rms_io ip = {io.p, xo, NULL, xo, w};
      if (EXEC(t, rms_launch, &ip, xo, w)) expect_bits(t, "in place (out = x)", xo, out->res[RES_GOT]);
    }
    shape_end(t);
  }
}

/* The backward of one row from the given rstd r, in double: dx (C) overwritten, dw (C)
 * accumulated, and the magnitudes of dx's terms (mag, C): dx cancels (at C = 1 it is
 * r w dy eps / (x^2 + eps)). */
static void rmsnorm_bwd_row64(const float *x, const float *w, const float *dy, double r, int64_t C, double *dx,
                              double *dw, double *mag) {
  double dot = 0, adot = 0;
  for (int64_t c = 0; c < C; c++) dot += (double)w[c] * dy[c] * x[c], adot += fabs((double)w[c] * dy[c] * x[c]);
  for (int64_t c = 0; c < C; c++) {
    dx[c] = r * ((double)w[c] * dy[c] - x[c] * r * r * dot / (double)C);
    mag[c] = r * (fabs((double)w[c] * dy[c]) + fabs((double)x[c]) * r * r * adot / (double)C);
    dw[c] += (double)dy[c] * x[c] * r;
  }
}

typedef struct rmsb_io {
  srlm_rmsnorm_bwd_params p;
  tens *dx, *dw, *dy, *x, *w, *rstd;
} rmsb_io;

static srlm_status rmsb_launch(srlm_backend *be, void *v) {
  const rmsb_io *io = v;
  srlm_rmsnorm_bwd_params p = io->p;
  p.dx = D(io->dx), p.dw = D(io->dw), p.dy = D(io->dy), p.x = D(io->x), p.w = D(io->w), p.rstd = D(io->rstd);
  return SRLM_OP(be, rmsnorm_backward, p);
}

static void case_rmsnorm_backward(tctx *t) {
  static const struct { int64_t N, C; } S[] = {
      {1, 1}, {0, 8}, {2, 8}, {3, 64}, {130, 257}, {17, 1024}, {65, 129}, {200, 33},
  };
  const float eps = 1e-6f;
  for (size_t k = 0; k < NELEM(S); k++) {
    const int64_t N = S[k].N, C = S[k].C;
    shape_begin(t, (int)k, "N=%lld C=%lld", (long long)N, (long long)C);
    tens *x = T_in(t, "x", E(t->dt), N * C), *w = T_in(t, "w", E(t->dt), C), *dy = T_in(t, "dy", E(t->dt), N * C);
    tens *rstd = T_in(t, "rstd", E_F32, N), *dx = T_out(t, "dx", E(t->dt), N * C), *dw = T_acc(t, "dw", E_F32, C);
    rnd(t, x, -2, 2);
    rnd(t, w, 0.5, 1.5);
    rnd(t, dy, -1, 1);
    rnd(t, dw, -1, 1); /* accumulated */
    for (int64_t n = 0; n < N; n++) rstd->f[n] = (float)rstd64(x->f + n * C, C, eps); /* the forward's, in fp32 */
    tstore(rstd);
    rmsb_io io = {{.N = N, .C = C, .dtype = t->dt}, dx, dw, dy, x, w, rstd};
    if (EXEC(t, rmsb_launch, &io, x, w, dy, rstd, dx, dw)) {
      double *rdx = dz(t, N * C), *rdw = dz(t, C), *mag = dz(t, N * C), *mdw = dz(t, C);
      float *ndx = fz(t, N * C), *ndw = fz(t, C);
      for (int64_t c = 0; c < C; c++) rdw[c] = ndw[c] = dw->f[c], mdw[c] = fabs(dw->f[c]);
      for (int64_t n = 0; n < N; n++) {
        const float *xr = x->f + n * C, *g = dy->f + n * C, r = rstd->f[n];
        rmsnorm_bwd_row64(xr, w->f, g, r, C, rdx + n * C, rdw, mag + n * C);
        float ndot = 0;
        for (int64_t c = 0; c < C; c++) ndot += w->f[c] * g[c] * xr[c];
        for (int64_t c = 0; c < C; c++) {
          ndx[n * C + c] = r * (w->f[c] * g[c] - xr[c] * r * r * ndot / (float)C);
          mdw[c] += fabs((double)g[c] * xr[c] * r);
          ndw[c] += g[c] * xr[c] * r;
        }
      }
      round_to(dx->e, ndx, N * C);
      rule_mag(t, "dx (overwritten)", dx, rdx, ndx, NULL, mag, FLOOR_ORDER);
      rule_mag(t, "dw (accumulated)", dw, rdw, ndw, NULL, mdw, FLOOR_ORDER);
      /* in place (dx = dy): the same bits */
      tens *g2 = T_copy(t, "dx=dy", dy, 1), *dw2 = T_copy(t, "dw", dw, 1);
      rmsb_io ip = {io.p, g2, dw2, g2, x, w, rstd};
      if (EXEC(t, rmsb_launch, &ip, x, w, g2, rstd, dw2)) {
        expect_bits(t, "in place (dx = dy): dx", g2, dx->res[RES_GOT]);
        expect_bits(t, "in place (dx = dy): dw", dw2, dw->res[RES_GOT]);
      }
    }
    shape_end(t);
  }
}

/* ---- RoPE ---------------------------------------------------------------------------- */

typedef struct rope_io {
  srlm_rope_params p;
  tens *x, *pos, *inv;
  int backward;
} rope_io;

static srlm_status rope_launch(srlm_backend *be, void *v) {
  const rope_io *io = v;
  srlm_rope_params p = io->p;
  p.x = D(io->x), p.pos = D(io->pos), p.inv_freq = D(io->inv);
  return io->backward ? SRLM_OP(be, rope_backward, p) : SRLM_OP(be, rope_forward, p);
}

/* Rotary frequencies base^(-2d/HS); llama3: Llama-3.1's scaling (factor 8, low/high
 * frequency factors 1 and 4, 8192 original positions): long wavelengths divided by the
 * factor, short ones kept, a smooth blend between. Input data only: computed in double. */
static void rope_freqs(float *inv, int64_t HS, double base, int llama3) {
  const double pi = 3.14159265358979323846, factor = 8, lo = 1, hi = 4, old = 8192;
  for (int64_t d = 0; d < HS / 2; d++) {
    double f = pow(base, -2.0 * (double)d / (double)HS);
    const double wavelen = 2 * pi / f;
    if (llama3 && wavelen > old / lo) f /= factor;
    else if (llama3 && wavelen >= old / hi) {
      const double smooth = (old / wavelen - lo) / (hi - lo);
      f = (1 - smooth) * f / factor + smooth * f;
    }
    inv[d] = (float)f;
  }
}

/* RoPE of (N, H, HS) rows in double, by the fp32 angle pos * inv_freq of the contract; sign
 * -1: the backward. out (and mag, the magnitudes of its two terms; may be NULL). */
static void rope_ref64(const float *x, const int32_t *pos, const float *inv, int64_t N, int64_t H, int64_t HS,
                       double sign, double *out, double *mag) {
  const int64_t half = HS / 2;
  for (int64_t i = 0; i < N; i++)
    for (int64_t d = 0; d < half; d++) {
      const float a = (float)pos[i] * inv[d];
      const double c = cos((double)a), s = sign * sin((double)a);
      for (int64_t h = 0; h < H; h++) {
        const float *r = x + (i * H + h) * HS;
        double *o = out + (i * H + h) * HS;
        o[d] = r[d] * c - r[d + half] * s;
        o[d + half] = r[d + half] * c + r[d] * s;
        if (!mag) continue;
        mag[(i * H + h) * HS + d] = fabs(r[d] * c) + fabs(r[d + half] * s);
        mag[(i * H + h) * HS + d + half] = fabs(r[d + half] * c) + fabs(r[d] * s);
      }
    }
}

static void rope_case(tctx *t, int backward) {
  static const struct { int64_t N, H, HS; double base; int llama3; int32_t max_pos; } S[] = {
      {1, 1, 2, 1e4, 0, 1},        {0, 2, 8, 1e4, 0, 1},        {5, 3, 8, 1e4, 0, 2000},
      {70, 4, 64, 1e4, 0, 2000},   {9, 2, 128, 1e6, 0, 32768},  {13, 5, 80, 1e4, 0, 4096},
      {33, 3, 96, 5e5, 1, 131072}, {17, 8, 128, 5e5, 1, 131072},
  };
  for (size_t k = 0; k < NELEM(S); k++) {
    const int64_t N = S[k].N, H = S[k].H, HS = S[k].HS, n = N * H * HS, half = HS / 2;
    shape_begin(t, (int)k, "N=%lld H=%lld HS=%lld base=%g%s positions < %d", (long long)N, (long long)H,
                (long long)HS, S[k].base, S[k].llama3 ? " llama3-scaled" : "", (int)S[k].max_pos);
    tens *x = T_acc(t, "x (in place)", E(t->dt), n), *pos = T_in(t, "pos", E_I32, N);
    tens *inv = T_in(t, "inv_freq", E_F32, half);
    rnd(t, x, -1, 1);
    rnd_ints(t, I32(pos), N, 0, S[k].max_pos);
    rope_freqs(inv->f, HS, S[k].base, S[k].llama3);
    tstore(inv);
    rope_io io = {{.N = N, .H = H, .HS = HS, .dtype = t->dt}, x, pos, inv, backward};
    if (EXEC(t, rope_launch, &io, x, pos, inv)) {
      double *ref = dz(t, n), *mag = dz(t, n);
      float *nv = fz(t, n);
      const double sign = backward ? -1.0 : 1.0;
      rope_ref64(x->f, I32(pos), inv->f, N, H, HS, sign, ref, mag);
      for (int64_t i = 0; i < N; i++)
        for (int64_t d = 0; d < half; d++) {
          const float a = (float)I32(pos)[i] * inv->f[d]; /* the fp32 angle of the contract */
          const float cf = cosf(a), sf = (float)sign * sinf(a);
          for (int64_t h = 0; h < H; h++) {
            const float *r = x->f + (i * H + h) * HS;
            nv[(i * H + h) * HS + d] = r[d] * cf - r[d + half] * sf;
            nv[(i * H + h) * HS + d + half] = r[d + half] * cf + r[d] * sf;
          }
        }
      round_to(x->e, nv, n);
      rule_mag(t, "x", x, ref, nv, NULL, mag, FLOOR_LIBM);
    }
    if (N > 2) { /* a negative position: an error naming the row */
      char where[32];
      snprintf(where, sizeof where, "row %lld", (long long)(N / 2));
      I32(pos)[N / 2] = -3;
      DATA_ERROR(t, where, rope_launch, &io, x, pos, inv);
    }
    shape_end(t);
  }
}

static void case_rope_forward(tctx *t) { rope_case(t, 0); }
static void case_rope_backward(tctx *t) { rope_case(t, 1); }

/* ---- attention ----------------------------------------------------------------------- */

/* The first key position a query at position P sees (window 0: all). */
static int64_t key_lo(int64_t P, int64_t W) { return W > 0 && P - W + 1 > 0 ? P - W + 1 : 0; }
/* The last one, in a sequence of L positions: P when causal, else P + W - 1 or L - 1 (a
 * non-causal window reaches as far ahead as behind, backend.h). */
static int64_t key_hi(int64_t P, int64_t W, int64_t L, int non_causal) {
  if (!non_causal) return P;
  return W > 0 && P + W - 1 < L - 1 ? P + W - 1 : L - 1;
}

/* One query row qi (HS) over keys and values rows lo..hi (row stride ld), in the precision
 * `real` (double: the reference; float: the naive code): o (HS) = softmax(scale q.k) v,
 * returns the row's log-sum-exp m + log(sum). p: scratch of hi - lo + 1. With TERM = fabs
 * it gives the magnitudes of the same sums instead (sum p |v|, |m| + log(sum)). */
#define DEFINE_ATTN_ROW(NAME, real, EXP, LOG, TERM)                                                  \
  static real NAME(const float *qi, const float *k, const float *v, int64_t ld, int64_t lo, int64_t hi, \
                   int64_t HS, float scale, real *p, real *o) {                                        \
    real m = -INFINITY, sum = 0;                                                                       \
    for (int64_t j = lo; j <= hi; j++) {                                                               \
      real s = 0;                                                                                      \
      for (int64_t d = 0; d < HS; d++) s += (real)qi[d] * (real)k[j * ld + d];                         \
      p[j - lo] = s * (real)scale;                                                                     \
      if (p[j - lo] > m) m = p[j - lo];                                                                \
    }                                                                                                  \
    for (int64_t j = lo; j <= hi; j++) sum += (p[j - lo] = EXP(p[j - lo] - m));                        \
    for (int64_t d = 0; d < HS; d++) {                                                                 \
      real acc = 0;                                                                                    \
      for (int64_t j = lo; j <= hi; j++) acc += p[j - lo] * TERM((real)v[j * ld + d]);                 \
      o[d] = acc / sum;                                                                                \
    }                                                                                                  \
    return TERM(m) + LOG(sum);                                                                         \
  }
#define SAME(x) (x)
DEFINE_ATTN_ROW(attn_row64, double, exp, log, SAME)
DEFINE_ATTN_ROW(attn_row32, float, expf, logf, SAME)
DEFINE_ATTN_ROW(attn_mag64, double, exp, log, fabs)

/* Its backward for one query row, from the given out row oi and lse (the op's inputs):
 * P_j = exp(scale q.k_j - lse), D = dout.o, dS_j = P_j (dout.v_j - D) scale;
 * dqi += dS K, dk_j += dS_j qi, dv_j += P_j dout (dk, dv with k's row stride ld). With
 * TERM = fabs and SUB +, the magnitudes of the same sums. */
#define DEFINE_ATTN_BWD_ROW(NAME, real, EXP, TERM, SUB)                                               \
  static void NAME(const float *qi, const float *doi, const float *oi, float lse, const float *k,      \
                   const float *v, int64_t ld, int64_t lo, int64_t hi, int64_t HS, float scale,         \
                   real *dqi, real *dk, real *dv) {                                                     \
    real D = 0;                                                                                         \
    for (int64_t d = 0; d < HS; d++) D += TERM((real)doi[d] * (real)oi[d]);                             \
    for (int64_t j = lo; j <= hi; j++) {                                                                \
      real s = 0, dp = 0;                                                                               \
      for (int64_t d = 0; d < HS; d++) {                                                                \
        s += (real)qi[d] * (real)k[j * ld + d];                                                         \
        dp += TERM((real)doi[d] * (real)v[j * ld + d]);                                                 \
      }                                                                                                 \
      const real p = EXP(s * (real)scale - (real)lse), ds = p * (dp SUB D) * (real)scale;               \
      for (int64_t d = 0; d < HS; d++) {                                                                \
        dqi[d] += TERM(ds * (real)k[j * ld + d]);                                                       \
        dk[j * ld + d] += TERM(ds * (real)qi[d]);                                                       \
        dv[j * ld + d] += p * TERM((real)doi[d]);                                                       \
      }                                                                                                 \
    }                                                                                                   \
  }
DEFINE_ATTN_BWD_ROW(attn_bwd_row64, double, exp, SAME, -)
DEFINE_ATTN_BWD_ROW(attn_bwd_row32, float, expf, SAME, -)
DEFINE_ATTN_BWD_ROW(attn_bwd_mag64, double, exp, fabs, +)

/* Packed sequences (lens), heads (NH query heads over NKV kv heads), head dim, window,
 * non-causal (0: causal). */
typedef struct attn_shape {
  int B;
  int32_t lens[16];
  int64_t NH, NKV, HS, W;
  int NC;
} attn_shape;

/* causal and not (NC), empty batches (B = 0, an empty sequence), GQA ratios 1, 2, 3, 4, 8 (MQA), windows,
 * sequences past 32/64/128-query tiles, many short sequences packed, head dims 2..256
 * including 10, 24, 80, 96 and an odd one (7: the fp32-tile kernel) */
static const attn_shape k_attn_shapes[] = {
    {1, {1}, 1, 1, 2, 0, 0},           {0, {0}, 2, 1, 4, 0, 0},          {1, {0}, 2, 1, 4, 0, 0},
    {2, {5, 3}, 2, 1, 8, 0, 0},        {3, {70, 1, 130}, 4, 2, 16, 0, 0}, {2, {100, 67}, 4, 4, 32, 17, 0},
    {1, {200}, 6, 2, 64, 64, 0},       {4, {0, 9, 65, 2}, 2, 2, 4, 3, 0}, {2, {33, 31}, 8, 1, 128, 0, 0},
    {1, {47}, 4, 2, 80, 5, 0},         {3, {129, 64, 65}, 2, 1, 64, 0, 0},
    {2, {40, 1}, 4, 1, 256, 17, 0},    {2, {12, 20}, 3, 3, 7, 0, 0},
    {14, {1, 2, 3, 1, 5, 2, 1, 4, 3, 1, 2, 7, 1, 1}, 8, 2, 16, 3, 0},
    /* the tensor-core forward's classes: HS 24 and 96 padded (to 32, 128), GQA 8 at HS 96
     * over a sequence one past a 64-row tile, HS 10 (4-byte copies), 2+ key tiles at HS 128
     * with GQA 4 (causal tiles skipped per warp) and a window crossing tile boundaries */
    {3, {1, 33, 17}, 4, 2, 24, 0, 0},  {2, {65, 3}, 8, 1, 96, 0, 0},      {2, {31, 6}, 2, 1, 10, 4, 0},
    {1, {150}, 4, 1, 128, 0, 0},       {2, {140, 20}, 2, 2, 64, 70, 0},
    /* the tensor-core backward's classes (64-key blocks; query or key tiles of 64, 32 at HS
     * 256): HS 256 one past a block and one past a 32-wide tile, many sequences packed at HS
     * 64 (one exactly a tile, two past it), HS 128 with a window across tiles, GQA 8 at HS
     * 128 over 5 tiles, GQA 4 at HS 64. Past QUICK_WORK (the Release stage only): these
     * but the first, and the 150-token one above */
    {2, {65, 33}, 2, 1, 256, 0, 0},    {6, {3, 70, 1, 64, 17, 130}, 4, 1, 64, 0, 0}, {2, {130, 66}, 4, 2, 128, 80, 0},
    {1, {300}, 8, 1, 128, 0, 0},       {2, {257, 200}, 8, 2, 64, 0, 0},
    /* non-causal: every key tile of a query tile (none skipped above the diagonal), GQA 2/4/8,
     * HS 7 (the fp32-tile kernel in bf16 too), 8, 10, 16, 32, 64, 96, 128, 256, packed
     * sequences past 32/64-row tiles, many short ones, windows reaching both ways (shorter
     * than a tile, across tile boundaries) */
    {2, {5, 3}, 2, 1, 8, 0, 1},     {3, {70, 1, 130}, 4, 2, 16, 0, 1}, {2, {100, 67}, 4, 4, 32, 17, 1},
    {14, {1, 2, 3, 1, 5, 2, 1, 4, 3, 1, 2, 7, 1, 1}, 8, 2, 16, 3, 1},  {2, {65, 3}, 8, 1, 96, 0, 1},
    {2, {12, 20}, 3, 3, 7, 0, 1},   {2, {31, 6}, 2, 1, 10, 4, 1},     {1, {150}, 4, 1, 128, 0, 1},
    {2, {140, 20}, 2, 2, 64, 70, 1}, {2, {65, 33}, 2, 1, 256, 0, 1},
    {2, {1024, 700}, 8, 2, 128, 256, 0}, /* --large: Llama-3's head dim and GQA ratio */
};

/* The reference's multiply-adds for a shape. */
static double attn_work(const attn_shape *s) {
  double w = 0;
  for (int b = 0; b < s->B; b++) {
    const int64_t span = s->NC ? 2 * s->W - 1 : s->W; /* keys a query sees at most */
    w += (double)s->lens[b] * (s->W > 0 && span < s->lens[b] ? span : s->lens[b]);
  }
  return w * (double)(s->NH * s->HS);
}

/* The shape's tensors in the op's layouts, inputs drawn; cu = prefix sums of lens. */
typedef struct attn_in {
  int64_t T;
  float scale;
  tens *q, *k, *v, *cu;
} attn_in;

static attn_in attn_inputs(tctx *t, const attn_shape *s) {
  attn_in a;
  a.cu = T_in(t, "cu_seqlens", E_I32, s->B + 1);
  I32(a.cu)[0] = 0;
  for (int b = 0; b < s->B; b++) I32(a.cu)[b + 1] = I32(a.cu)[b] + s->lens[b];
  a.T = I32(a.cu)[s->B];
  a.scale = 1.0f / sqrtf((float)s->HS);
  a.q = T_in(t, "q", E(t->dt), a.T * s->NH * s->HS);
  a.k = T_in(t, "k", E(t->dt), a.T * s->NKV * s->HS);
  a.v = T_in(t, "v", E(t->dt), a.T * s->NKV * s->HS);
  rnd(t, a.q, -2, 2);
  rnd(t, a.k, -2, 2);
  rnd(t, a.v, -1, 1);
  return a;
}

/* The forward of every (sequence, head, query) in double (out64, lse64), float, and the
 * magnitudes of its sums (omag, lmag; NULL when not needed). */
static void attn_forward_ref(const attn_shape *s, const attn_in *a, double *out64, double *lse64, float *out32,
                             float *lse32, double *omag, double *lmag) {
  const int64_t NH = s->NH, HS = s->HS, rep = NH / s->NKV, kld = s->NKV * HS;
  double *p64 = srlm_xmalloc((size_t)(a->T + 1) * sizeof *p64);
  float *p32 = srlm_xmalloc((size_t)(a->T + 1) * sizeof *p32);
  for (int b = 0; b < s->B; b++) {
    const int64_t s0 = I32(a->cu)[b], L = I32(a->cu)[b + 1] - s0;
    for (int64_t h = 0; h < NH; h++) {
      const float *k = a->k->f + s0 * kld + (h / rep) * HS, *v = a->v->f + s0 * kld + (h / rep) * HS;
      for (int64_t i = 0; i < L; i++) {
        const int64_t r = (s0 + i) * NH + h;
        const float *qi = a->q->f + r * HS;
        const int64_t lo = key_lo(i, s->W), hi = key_hi(i, s->W, L, s->NC);
        lse64[r] = attn_row64(qi, k, v, kld, lo, hi, HS, a->scale, p64, out64 + r * HS);
        lse32[r] = attn_row32(qi, k, v, kld, lo, hi, HS, a->scale, p32, out32 + r * HS);
        if (omag) lmag[r] = attn_mag64(qi, k, v, kld, lo, hi, HS, a->scale, p64, omag + r * HS);
      }
    }
  }
  free(p64);
  free(p32);
}

static const char *attn_label(char *buf, size_t n, const attn_shape *s) {
  int w = snprintf(buf, n, "B=%d lens", s->B);
  for (int b = 0; b < s->B && w > 0 && (size_t)w < n; b++)
    w += snprintf(buf + w, n - (size_t)w, "%s%d", b ? "," : " ", (int)s->lens[b]);
  if (w > 0 && (size_t)w < n)
    snprintf(buf + w, n - (size_t)w, " NH=%lld NKV=%lld HS=%lld W=%lld%s", (long long)s->NH, (long long)s->NKV,
             (long long)s->HS, (long long)s->W, s->NC ? " non-causal" : "");
  return buf;
}

typedef struct attf_io {
  srlm_attention_params p;
  tens *out, *lse, *q, *k, *v, *cu;
} attf_io;

static srlm_status attf_launch(srlm_backend *be, void *vp) {
  const attf_io *io = vp;
  srlm_attention_params p = io->p;
  p.out = D(io->out), p.lse = D(io->lse), p.q = D(io->q), p.k = D(io->k), p.v = D(io->v), p.cu_seqlens = D(io->cu);
  return SRLM_OP(be, attention_forward, p);
}

static void case_attention_forward(tctx *t) {
  for (size_t k = 0; k < NELEM(k_attn_shapes); k++) {
    const attn_shape *s = &k_attn_shapes[k];
    if (skip_large(t, attn_work(s)) || skip_quick(t, attn_work(s))) continue;
    char lb[128];
    shape_begin(t, (int)k, "%s", attn_label(lb, sizeof lb, s));
    attn_in a = attn_inputs(t, s);
    const int64_t nq = a.T * s->NH * s->HS;
    tens *out = T_out(t, "out", E(t->dt), nq), *lse = T_out(t, "lse", E_F32, a.T * s->NH);
    attf_io io = {{.B = s->B, .T = a.T, .NH = s->NH, .NKV = s->NKV, .HS = s->HS, .window = s->W, .scale = a.scale,
                   .non_causal = s->NC, .dtype = t->dt},
                  out, lse, a.q, a.k, a.v, a.cu};
    if (EXEC(t, attf_launch, &io, a.q, a.k, a.v, a.cu, out, lse)) {
      double *rout = dz(t, nq), *rlse = dz(t, a.T * s->NH), *omag = dz(t, nq), *lmag = dz(t, a.T * s->NH);
      float *nout = fz(t, nq), *nlse = fz(t, a.T * s->NH);
      attn_forward_ref(s, &a, rout, rlse, nout, nlse, omag, lmag);
      round_to(out->e, nout, nq);
      rule_mag(t, "out", out, rout, nout, NULL, omag, FLOOR_LIBM);
      rule_mag(t, "lse", lse, rlse, nlse, NULL, lmag, FLOOR_LIBM);
    }
    if (s->B >= 2) { /* cu_seqlens not ending at T: an error naming them */
      I32(a.cu)[s->B] -= 1;
      DATA_ERROR(t, "cu_seqlens", attf_launch, &io, a.q, a.k, a.v, a.cu, out, lse);
    }
    shape_end(t);
  }
}

typedef struct attb_io {
  srlm_attention_bwd_params p;
  tens *dq, *dk, *dv, *dout, *out, *lse, *q, *k, *v, *cu;
} attb_io;

static srlm_status attb_launch(srlm_backend *be, void *vp) {
  const attb_io *io = vp;
  srlm_attention_bwd_params p = io->p;
  p.dq = D(io->dq), p.dk = D(io->dk), p.dv = D(io->dv), p.dout = D(io->dout), p.out = D(io->out);
  p.lse = D(io->lse), p.q = D(io->q), p.k = D(io->k), p.v = D(io->v), p.cu_seqlens = D(io->cu);
  return SRLM_OP(be, attention_backward, p);
}

static void case_attention_backward(tctx *t) {
  for (size_t k = 0; k < NELEM(k_attn_shapes); k++) {
    const attn_shape *s = &k_attn_shapes[k];
    if (skip_large(t, attn_work(s)) || skip_quick(t, attn_work(s))) continue;
    char lb[128];
    shape_begin(t, (int)k, "%s", attn_label(lb, sizeof lb, s));
    attn_in a = attn_inputs(t, s);
    const int64_t NH = s->NH, HS = s->HS, nq = a.T * NH * HS, nkv = a.T * s->NKV * HS, kld = s->NKV * HS;
    const int64_t rep = NH / s->NKV;
    tens *dout = T_in(t, "dout", E(t->dt), nq), *out = T_in(t, "out", E(t->dt), nq);
    tens *lse = T_in(t, "lse", E_F32, a.T * NH);
    tens *dq = T_out(t, "dq", E(t->dt), nq), *dk = T_out(t, "dk", E(t->dt), nkv), *dv = T_out(t, "dv", E(t->dt), nkv);
    rnd(t, dout, -1, 1);
    /* the forward's out and lse, from the float64 forward rounded to their types */
    double *o64 = dz(t, nq), *l64 = dz(t, a.T * NH);
    attn_forward_ref(s, &a, o64, l64, fz(t, nq), fz(t, a.T * NH), NULL, NULL);
    for (int64_t i = 0; i < nq; i++) out->f[i] = (float)o64[i];
    for (int64_t i = 0; i < a.T * NH; i++) lse->f[i] = (float)l64[i];
    tstore(out);
    tstore(lse);
    attb_io io = {{.B = s->B, .T = a.T, .NH = NH, .NKV = s->NKV, .HS = HS, .window = s->W, .scale = a.scale,
                   .non_causal = s->NC, .dtype = t->dt},
                  dq, dk, dv, dout, out, lse, a.q, a.k, a.v, a.cu};
    if (EXEC(t, attb_launch, &io, dout, out, lse, a.q, a.k, a.v, a.cu, dq, dk, dv)) {
      double *rdq = dz(t, nq), *rdk = dz(t, nkv), *rdv = dz(t, nkv);
      double *mdq = dz(t, nq), *mdk = dz(t, nkv), *mdv = dz(t, nkv);
      float *ndq = fz(t, nq), *ndk = fz(t, nkv), *ndv = fz(t, nkv);
      for (int b = 0; b < s->B; b++) {
        const int64_t s0 = I32(a.cu)[b], L = I32(a.cu)[b + 1] - s0;
        for (int64_t h = 0; h < NH; h++) {
          const int64_t kv = s0 * kld + (h / rep) * HS;
          for (int64_t i = 0; i < L; i++) {
            const int64_t r = (s0 + i) * NH + h;
            const float *qi = a.q->f + r * HS, *doi = dout->f + r * HS, *oi = out->f + r * HS;
            const int64_t lo = key_lo(i, s->W), hi = key_hi(i, s->W, L, s->NC);
            attn_bwd_row64(qi, doi, oi, lse->f[r], a.k->f + kv, a.v->f + kv, kld, lo, hi, HS, a.scale, rdq + r * HS,
                           rdk + kv, rdv + kv);
            attn_bwd_row32(qi, doi, oi, lse->f[r], a.k->f + kv, a.v->f + kv, kld, lo, hi, HS, a.scale, ndq + r * HS,
                           ndk + kv, ndv + kv);
            attn_bwd_mag64(qi, doi, oi, lse->f[r], a.k->f + kv, a.v->f + kv, kld, lo, hi, HS, a.scale, mdq + r * HS,
                           mdk + kv, mdv + kv);
          }
        }
      }
      round_to(dq->e, ndq, nq);
      round_to(dk->e, ndk, nkv);
      round_to(dv->e, ndv, nkv);
      rule_mag(t, "dq", dq, rdq, ndq, NULL, mdq, FLOOR_LIBM);
      rule_mag(t, "dk", dk, rdk, ndk, NULL, mdk, FLOOR_LIBM);
      rule_mag(t, "dv", dv, rdv, ndv, NULL, mdv, FLOOR_LIBM);
    }
    shape_end(t);
  }
}

/* ---- the KV cache ---------------------------------------------------------------------- */

/* n sequences; sequence i holds L[i] positions after its nq[i] new queries (or rows). */
typedef struct kv_shape {
  int n;
  int32_t L[16], nq[16];
  int64_t NH, NKV, HS, W;
} kv_shape;

/* The cache tensors of a shape: every used position random, every other one NaN (an op that
 * reads past a sequence's length, or another slot, poisons its result); slot[i] counts down
 * from the last slot, so slots and sequences are in different orders. */
typedef struct kv_in {
  int64_t NQ, max_slots, max_len;
  tens *kc, *vc, *slot, *cuq, *len;
} kv_in;

static kv_in kv_inputs(tctx *t, const kv_shape *s, int out) {
  kv_in c;
  c.max_slots = s->n + 2;
  c.max_len = 0;
  for (int i = 0; i < s->n; i++) c.max_len = s->L[i] > c.max_len ? s->L[i] : c.max_len;
  c.max_len += 3;
  const int64_t kvld = s->NKV * s->HS, ncache = c.max_slots * c.max_len * kvld;
  c.kc = out ? T_acc(t, "k_cache", E(t->dt), ncache) : T_in(t, "k_cache", E(t->dt), ncache);
  c.vc = out ? T_acc(t, "v_cache", E(t->dt), ncache) : T_in(t, "v_cache", E(t->dt), ncache);
  c.slot = T_in(t, "slot", E_I32, s->n);
  c.cuq = T_in(t, "cu_q", E_I32, s->n + 1);
  c.len = T_in(t, "kv_len", E_I32, s->n);
  rnd(t, c.kc, -2, 2);
  rnd(t, c.vc, -1, 1);
  I32(c.cuq)[0] = 0;
  for (int i = 0; i < s->n; i++) {
    I32(c.slot)[i] = (int32_t)(c.max_slots - 1 - i);
    I32(c.cuq)[i + 1] = I32(c.cuq)[i] + s->nq[i];
    I32(c.len)[i] = s->L[i];
  }
  c.NQ = I32(c.cuq)[s->n];
  if (!out) { /* attention_kv reads only the used positions */
    for (int64_t sl = 0; sl < c.max_slots; sl++) {
      int64_t used = 0;
      for (int i = 0; i < s->n; i++)
        if (I32(c.slot)[i] == sl) used = s->L[i];
      for (int64_t j = used * kvld; j < c.max_len * kvld; j++)
        c.kc->f[sl * c.max_len * kvld + j] = c.vc->f[sl * c.max_len * kvld + j] = NAN;
    }
    tstore(c.kc);
    tstore(c.vc);
  }
  return c;
}

typedef struct attkv_io {
  srlm_attention_kv_params p;
  tens *out, *q, *kc, *vc, *slot, *cuq, *len;
} attkv_io;

static srlm_status attkv_launch(srlm_backend *be, void *vp) {
  const attkv_io *io = vp;
  srlm_attention_kv_params p = io->p;
  p.out = D(io->out), p.q = D(io->q), p.k_cache = D(io->kc), p.v_cache = D(io->vc);
  p.slot = D(io->slot), p.cu_q = D(io->cuq), p.kv_len = D(io->len);
  return SRLM_OP(be, attention_kv, p);
}

static void case_attention_kv(tctx *t) {
  /* a first token, an empty batch, prefill chunks next to decode steps, a sequence without
   * new queries, a decode batch with MQA and a window, a long chunk with HS 80, GQA 4 at HS 256 */
  static const kv_shape S[] = {
      {1, {1}, {1}, 1, 1, 2, 0},
      {0, {0}, {0}, 2, 1, 8, 0},
      {3, {5, 70, 1}, {5, 1, 1}, 4, 2, 16, 0},
      {2, {100, 67}, {3, 0}, 4, 4, 32, 17},
      {4, {130, 9, 65, 2}, {1, 1, 1, 1}, 8, 1, 64, 64},
      {1, {200}, {67}, 6, 2, 80, 0},
      {3, {40, 1, 33}, {1, 1, 33}, 8, 2, 256, 17},
      /* decode steps of GQA 8 at HS 128 past one and two 64-key tiles, a chunk of 2; HS 96 with GQA 2 */
      {4, {65, 1, 129, 64}, {1, 1, 2, 1}, 8, 1, 128, 0},
      {2, {70, 9}, {5, 1}, 4, 2, 96, 0},
      /* split-KV (caches past 64 positions on the tensor-core path, pieces of 64/128/256/512
       * keys by the sequence's length): 6 pieces of 128 and 5 of 256 next to one of 64; a window
       * that leaves a query no key in its first pieces, a chunk of 2 across a boundary */
      {3, {700, 40, 1100}, {1, 2, 1}, 4, 1, 64, 0},
      {2, {1100, 530}, {1, 2}, 2, 1, 32, 50},
      /* many short sequences packed (1 to 3 pieces of 64, chunks of 2 and 3 next to decode
       * steps); GQA 8 at HS 128 with every piece size: 9 pieces of 512, 5 of 256, 5 of 128, 1 */
      {12, {1, 3, 2, 7, 65, 1, 9, 4, 130, 2, 5, 17}, {1, 1, 2, 1, 1, 1, 3, 1, 1, 2, 1, 1}, 4, 2, 32, 0},
      {4, {4100, 1030, 513, 64}, {1, 1, 1, 1}, 8, 1, 128, 0},
      /* GQA 8 at HS 128 again: decode steps on 3 pieces of 64 and 5 of 256, next to a prefill
       * chunk of 96 new queries on 4 pieces of 64 (the pieces' workspace of many rows) */
      {3, {130, 1030, 200}, {1, 1, 96}, 8, 1, 128, 0},
  };
  for (size_t k = 0; k < NELEM(S); k++) {
    const kv_shape *s = &S[k];
    shape_begin(t, (int)k, "n=%d L=%d,%d,.. new=%d,%d,.. NH=%lld NKV=%lld HS=%lld W=%lld", s->n, (int)s->L[0],
                (int)s->L[1], (int)s->nq[0], (int)s->nq[1], (long long)s->NH, (long long)s->NKV, (long long)s->HS,
                (long long)s->W);
    kv_in c = kv_inputs(t, s, 0);
    const int64_t NH = s->NH, HS = s->HS, kvld = s->NKV * HS, rep = NH / s->NKV, nq = c.NQ * NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    tens *q = T_in(t, "q", E(t->dt), nq), *out = T_out(t, "out", E(t->dt), nq);
    rnd(t, q, -2, 2);
    attkv_io io = {{.n = s->n, .NQ = c.NQ, .NH = NH, .NKV = s->NKV, .HS = HS, .max_slots = c.max_slots,
                    .max_len = c.max_len, .window = s->W, .scale = scale, .dtype = t->dt},
                   out, q, c.kc, c.vc, c.slot, c.cuq, c.len};
    if (EXEC(t, attkv_launch, &io, q, c.kc, c.vc, c.slot, c.cuq, c.len, out)) {
      double *ref = dz(t, nq), *mag = dz(t, nq), *p64 = dz(t, c.max_len);
      float *nv = fz(t, nq), *p32 = fz(t, c.max_len);
      for (int i = 0; i < s->n; i++)
        for (int64_t r = 0; r < s->nq[i]; r++)
          for (int64_t h = 0; h < NH; h++) {
            const int64_t P = s->L[i] - s->nq[i] + r, row = (I32(c.cuq)[i] + r) * NH + h;
            const int64_t base = (int64_t)I32(c.slot)[i] * c.max_len * kvld + (h / rep) * HS;
            attn_row64(q->f + row * HS, c.kc->f + base, c.vc->f + base, kvld, key_lo(P, s->W), P, HS, scale, p64,
                       ref + row * HS);
            attn_row32(q->f + row * HS, c.kc->f + base, c.vc->f + base, kvld, key_lo(P, s->W), P, HS, scale, p32,
                       nv + row * HS);
            attn_mag64(q->f + row * HS, c.kc->f + base, c.vc->f + base, kvld, key_lo(P, s->W), P, HS, scale, p64,
                       mag + row * HS);
          }
      round_to(out->e, nv, nq);
      rule_mag(t, "out", out, ref, nv, NULL, mag, FLOOR_LIBM);
    }
    if (s->n >= 2) { /* a slot out of range, then a length past the cache: errors naming the sequence */
      I32(c.slot)[1] = (int32_t)c.max_slots;
      DATA_ERROR(t, "sequence 1", attkv_launch, &io, q, c.kc, c.vc, c.slot, c.cuq, c.len, out);
      I32(c.slot)[1] = 0;
      I32(c.len)[0] = (int32_t)c.max_len + 1;
      DATA_ERROR(t, "sequence 0", attkv_launch, &io, q, c.kc, c.vc, c.slot, c.cuq, c.len, out);
    }
    shape_end(t);
  }
}

typedef struct kva_io {
  srlm_kv_append_params p;
  tens *kc, *vc, *k, *v, *slot, *cuq, *len;
} kva_io;

static srlm_status kva_launch(srlm_backend *be, void *vp) {
  const kva_io *io = vp;
  srlm_kv_append_params p = io->p;
  p.k_cache = D(io->kc), p.v_cache = D(io->vc), p.k = D(io->k), p.v = D(io->v);
  p.slot = D(io->slot), p.cu_q = D(io->cuq), p.kv_len = D(io->len);
  return SRLM_OP(be, kv_append, p);
}

static void case_kv_append(tctx *t) {
  /* nothing to append; a first row; several sequences, one appending nothing; HS 80. The
   * first sequence's kv_len is set to max_len below: it fills its slot to the last row. */
  static const kv_shape S[] = {
      {0, {0}, {0}, 1, 1, 2, 0},
      {1, {1}, {1}, 1, 1, 2, 0},
      {3, {4, 10, 7}, {4, 1, 0}, 1, 2, 8, 0},
      {2, {12, 3}, {5, 3}, 1, 3, 80, 0},
  };
  for (size_t k = 0; k < NELEM(S); k++) {
    const kv_shape *s = &S[k];
    shape_begin(t, (int)k, "n=%d L=%d,%d,.. new=%d,%d,.. NKV=%lld HS=%lld", s->n, (int)s->L[0], (int)s->L[1],
                (int)s->nq[0], (int)s->nq[1], (long long)s->NKV, (long long)s->HS);
    kv_in c = kv_inputs(t, s, 1);
    const int64_t kvld = s->NKV * s->HS;
    tens *kn = T_in(t, "k", E(t->dt), c.NQ * kvld), *vn = T_in(t, "v", E(t->dt), c.NQ * kvld);
    rnd(t, kn, -1, 1);
    rnd(t, vn, -1, 1);
    if (s->n > 0) I32(c.len)[0] = (int32_t)c.max_len; /* the first sequence fills its slot */
    kva_io io = {{.n = s->n, .NQ = c.NQ, .NKV = s->NKV, .HS = s->HS, .max_slots = c.max_slots, .max_len = c.max_len,
                  .dtype = t->dt},
                 c.kc, c.vc, kn, vn, c.slot, c.cuq, c.len};
    if (EXEC(t, kva_launch, &io, kn, vn, c.slot, c.cuq, c.len, c.kc, c.vc)) {
      /* the new rows at their positions, every other byte of the caches as it was */
      const size_t es = k_elem_size[c.kc->e], row = (size_t)kvld * es;
      char *wk = scratch(t, (size_t)c.kc->n * es), *wv = scratch(t, (size_t)c.vc->n * es);
      memcpy(wk, c.kc->h, (size_t)c.kc->n * es);
      memcpy(wv, c.vc->h, (size_t)c.vc->n * es);
      for (int i = 0; i < s->n; i++) {
        const int64_t nnew = I32(c.cuq)[i + 1] - I32(c.cuq)[i];
        const size_t dst = (size_t)(I32(c.slot)[i] * c.max_len + I32(c.len)[i] - nnew) * row;
        memcpy(wk + dst, (const char *)kn->h + (size_t)I32(c.cuq)[i] * row, (size_t)nnew * row);
        memcpy(wv + dst, (const char *)vn->h + (size_t)I32(c.cuq)[i] * row, (size_t)nnew * row);
      }
      expect_bits(t, "k_cache", c.kc, wk);
      expect_bits(t, "v_cache", c.vc, wv);
    }
    if (s->n >= 2) {
      I32(c.slot)[1] = -1;
      DATA_ERROR(t, "sequence 1", kva_launch, &io, kn, vn, c.slot, c.cuq, c.len, c.kc, c.vc);
      I32(c.slot)[1] = 0;
      I32(c.len)[0] = (int32_t)c.max_len + 1;
      DATA_ERROR(t, "sequence 0", kva_launch, &io, kn, vn, c.slot, c.cuq, c.len, c.kc, c.vc);
    }
    shape_end(t);
  }
}

/* ---- SwiGLU ---------------------------------------------------------------------------- */

/* gate spans [-G, G]: at G = 100, exp(-gate) overflows fp32 at one end and is 0 at the other */
static const struct { int64_t N, FF; double G; } k_swiglu_shapes[] = {
    {1, 1, 12}, {0, 16, 12}, {37, 301, 12}, {3, 1000, 12}, {64, 129, 12}, {5, 4864, 100},
    {2048, 4864, 12}, /* --large */
};

typedef struct sw_io {
  srlm_swiglu_params p;
  tens *h, *gate, *up;
} sw_io;

static srlm_status sw_launch(srlm_backend *be, void *vp) {
  const sw_io *io = vp;
  srlm_swiglu_params p = io->p;
  p.h = D(io->h), p.gate = D(io->gate), p.up = D(io->up);
  return SRLM_OP(be, swiglu_forward, p);
}

static void case_swiglu_forward(tctx *t) {
  for (size_t k = 0; k < NELEM(k_swiglu_shapes); k++) {
    const int64_t N = k_swiglu_shapes[k].N, FF = k_swiglu_shapes[k].FF, n = N * FF;
    if (skip_large(t, 20.0 * n)) continue;
    shape_begin(t, (int)k, "N=%lld FF=%lld gate in [-%g, %g]", (long long)N, (long long)FF, k_swiglu_shapes[k].G,
                k_swiglu_shapes[k].G);
    tens *gate = T_in(t, "gate", E(t->dt), n), *up = T_in(t, "up", E(t->dt), n), *h = T_out(t, "h", E(t->dt), n);
    rnd(t, gate, -k_swiglu_shapes[k].G, k_swiglu_shapes[k].G);
    rnd(t, up, -2, 2);
    sw_io io = {{.N = N, .FF = FF, .dtype = t->dt}, h, gate, up};
    if (EXEC(t, sw_launch, &io, gate, up, h)) {
      double *ref = dz(t, n);
      float *nv = fz(t, n);
      for (int64_t i = 0; i < n; i++) {
        const float g = gate->f[i], u = up->f[i];
        ref[i] = (double)g / (1.0 + exp(-(double)g)) * u;
        nv[i] = g / (1.0f + expf(-g)) * u;
      }
      round_to(h->e, nv, n);
      rule(t, "h", h, ref, nv, NULL, FLOOR_LIBM);
      /* in place over gate, then over up: the same bits */
      tens *g2 = T_copy(t, "h=gate", gate, 1), *u2 = T_copy(t, "h=up", up, 1);
      sw_io a = {io.p, g2, g2, up}, b = {io.p, u2, gate, u2};
      if (EXEC(t, sw_launch, &a, g2, up)) expect_bits(t, "in place (h = gate)", g2, h->res[RES_GOT]);
      if (EXEC(t, sw_launch, &b, gate, u2)) expect_bits(t, "in place (h = up)", u2, h->res[RES_GOT]);
    }
    shape_end(t);
  }
}

/* SwiGLU's backward of one element in double: dgate, dup, and the magnitude of dgate's
 * terms (1 + g (1 - s) cancels near g = -1.28). */
static void swiglu_bwd64(float g, float u, float d, double *dg, double *du, double *mag) {
  const double s = 1.0 / (1.0 + exp(-(double)g));
  *dg = (double)d * u * s * (1.0 + g * (1.0 - s));
  *du = (double)d * g * s;
  *mag = fabs((double)d * u * s) * (1.0 + fabs(g * (1.0 - s)));
}

typedef struct swb_io {
  srlm_swiglu_bwd_params p;
  tens *dgate, *dup, *dh, *gate, *up;
} swb_io;

static srlm_status swb_launch(srlm_backend *be, void *vp) {
  const swb_io *io = vp;
  srlm_swiglu_bwd_params p = io->p;
  p.dgate = D(io->dgate), p.dup = D(io->dup), p.dh = D(io->dh), p.gate = D(io->gate), p.up = D(io->up);
  return SRLM_OP(be, swiglu_backward, p);
}

static void case_swiglu_backward(tctx *t) {
  for (size_t k = 0; k < NELEM(k_swiglu_shapes); k++) {
    const int64_t N = k_swiglu_shapes[k].N, FF = k_swiglu_shapes[k].FF, n = N * FF;
    if (skip_large(t, 20.0 * n)) continue;
    shape_begin(t, (int)k, "N=%lld FF=%lld gate in [-%g, %g]", (long long)N, (long long)FF, k_swiglu_shapes[k].G,
                k_swiglu_shapes[k].G);
    tens *gate = T_in(t, "gate", E(t->dt), n), *up = T_in(t, "up", E(t->dt), n), *dh = T_in(t, "dh", E(t->dt), n);
    tens *dg = T_out(t, "dgate", E(t->dt), n), *du = T_out(t, "dup", E(t->dt), n);
    rnd(t, gate, -k_swiglu_shapes[k].G, k_swiglu_shapes[k].G);
    rnd(t, up, -2, 2);
    rnd(t, dh, -1, 1);
    swb_io io = {{.N = N, .FF = FF, .dtype = t->dt}, dg, du, dh, gate, up};
    if (EXEC(t, swb_launch, &io, gate, up, dh, dg, du)) {
      double *rdg = dz(t, n), *rdu = dz(t, n), *mag = dz(t, n);
      float *ndg = fz(t, n), *ndu = fz(t, n);
      for (int64_t i = 0; i < n; i++) {
        const float g = gate->f[i], u = up->f[i], d = dh->f[i];
        const float sf = 1.0f / (1.0f + expf(-g));
        swiglu_bwd64(g, u, d, &rdg[i], &rdu[i], &mag[i]);
        ndg[i] = d * u * (sf * (1.0f + g * (1.0f - sf)));
        ndu[i] = d * (g * sf);
      }
      round_to(dg->e, ndg, n);
      round_to(du->e, ndu, n);
      rule_mag(t, "dgate", dg, rdg, ndg, NULL, mag, FLOOR_LIBM);
      rule(t, "dup", du, rdu, ndu, NULL, FLOOR_LIBM);
      /* in place: dgate over gate and dup over up, the same bits */
      tens *g2 = T_copy(t, "dgate=gate", gate, 1), *u2 = T_copy(t, "dup=up", up, 1);
      swb_io ip = {io.p, g2, u2, dh, g2, u2};
      if (EXEC(t, swb_launch, &ip, dh, g2, u2)) {
        expect_bits(t, "in place (dgate = gate)", g2, dg->res[RES_GOT]);
        expect_bits(t, "in place (dup = up)", u2, du->res[RES_GOT]);
      }
    }
    shape_end(t);
  }
}

/* ---- embedding --------------------------------------------------------------------------- */

/* Ids uniform in [0, V), the first 0 and the last V - 1. */
static tens *embed_ids(tctx *t, int64_t N, int64_t V) {
  tens *ids = T_in(t, "ids", E_I32, N);
  rnd_ints(t, I32(ids), N, 0, V);
  if (N > 0) I32(ids)[0] = 0, I32(ids)[N - 1] = (int32_t)(V - 1);
  return ids;
}

typedef struct emb_io {
  srlm_embedding_params p;
  tens *out, *table, *ids;
} emb_io;

static srlm_status emb_launch(srlm_backend *be, void *vp) {
  const emb_io *io = vp;
  srlm_embedding_params p = io->p;
  p.out = D(io->out), p.table = D(io->table), p.ids = D(io->ids);
  return SRLM_OP(be, embedding_forward, p);
}

static void case_embedding_forward(tctx *t) {
  static const struct { int64_t N, V, C; } S[] = {
      {1, 1, 1}, {0, 11, 70}, {150, 11, 70}, {33, 151936, 8}, {7, 1000, 129},
  };
  for (size_t k = 0; k < NELEM(S); k++) {
    const int64_t N = S[k].N, V = S[k].V, C = S[k].C;
    shape_begin(t, (int)k, "N=%lld V=%lld C=%lld", (long long)N, (long long)V, (long long)C);
    tens *table = T_in(t, "table", E(t->dt), V * C), *out = T_out(t, "out", E(t->dt), N * C), *ids = embed_ids(t, N, V);
    rnd(t, table, -1, 1);
    emb_io io = {{.N = N, .V = V, .C = C, .dtype = t->dt}, out, table, ids};
    if (EXEC(t, emb_launch, &io, table, ids, out)) {
      const size_t row = (size_t)C * k_elem_size[table->e];
      char *want = scratch(t, (size_t)N * row);
      for (int64_t n = 0; n < N; n++)
        memcpy(want + (size_t)n * row, (const char *)table->h + (size_t)I32(ids)[n] * row, row);
      expect_bits(t, "out = table[ids]", out, want);
    }
    if (N > 77) { /* ids out of range: errors naming the row */
      I32(ids)[77] = (int32_t)V;
      DATA_ERROR(t, "row 77", emb_launch, &io, table, ids, out);
      I32(ids)[77] = -2;
      DATA_ERROR(t, "row 77", emb_launch, &io, table, ids, out);
    }
    shape_end(t);
  }
}

typedef struct embb_io {
  srlm_embedding_bwd_params p;
  tens *dtable, *dout, *ids;
} embb_io;

static srlm_status embb_launch(srlm_backend *be, void *vp) {
  const embb_io *io = vp;
  srlm_embedding_bwd_params p = io->p;
  p.dtable = D(io->dtable), p.dout = D(io->dout), p.ids = D(io->ids);
  return SRLM_OP(be, embedding_backward, p);
}

static void case_embedding_backward(tctx *t) {
  /* repeated ids (V small), a huge table with few rows touched */
  static const struct { int64_t N, V, C; } S[] = {
      {1, 1, 1}, {0, 11, 70}, {150, 11, 70}, {1000, 7, 33}, {40, 151936, 8},
  };
  for (size_t k = 0; k < NELEM(S); k++)
    for (int tv = 0; tv < (t->dt == SRLM_BF16 ? 2 : 1); tv++) { /* the table in fp32, then in bf16 */
      const int64_t N = S[k].N, V = S[k].V, C = S[k].C;
      const srlm_dtype tdt = tv ? SRLM_BF16 : SRLM_F32;
      shape_begin(t, (int)(2 * k + (size_t)tv), "N=%lld V=%lld C=%lld table %s", (long long)N, (long long)V,
                  (long long)C, srlm_dtype_name(tdt));
      tens *dtab = T_acc(t, "dtable", E(tdt), V * C), *dout = T_in(t, "dout", E(t->dt), N * C);
      tens *ids = embed_ids(t, N, V);
      rnd(t, dtab, -1, 1); /* accumulated */
      rnd(t, dout, -1, 1);
      embb_io io = {{.N = N, .V = V, .C = C, .dtype = t->dt, .table_dtype = tdt}, dtab, dout, ids};
      if (EXEC(t, embb_launch, &io, dout, ids, dtab)) {
        /* the contract fixes the bits: each row's sum in fp32 in the order n = 0..N-1 from its
         * start value, rounded once to the table's type */
        float *acc = fz(t, V * C);
        memcpy(acc, dtab->f, (size_t)(V * C) * sizeof *acc);
        for (int64_t n = 0; n < N; n++)
          for (int64_t c = 0; c < C; c++) acc[(int64_t)I32(ids)[n] * C + c] += dout->f[n * C + c];
        void *want = scratch(t, (size_t)(V * C) * k_elem_size[dtab->e]);
        srlm_convert(want, tdt, acc, SRLM_F32, (size_t)(V * C));
        expect_bits(t, "dtable += scatter of dout, rows in order", dtab, want);
      }
      if (N > 77) {
        I32(ids)[77] = -2;
        DATA_ERROR(t, "row 77", embb_launch, &io, dout, ids, dtab);
      }
      shape_end(t);
    }
}

/* ---- add, colsum, cast ----------------------------------------------------------------------- */

typedef struct add_io {
  srlm_add_params p;
  tens *out, *a, *b;
} add_io;

static srlm_status add_launch(srlm_backend *be, void *vp) {
  const add_io *io = vp;
  srlm_add_params p = io->p;
  p.out = D(io->out), p.a = D(io->a), p.b = D(io->b);
  return SRLM_OP(be, add, p);
}

static void case_add(tctx *t) {
  static const int64_t S[] = {0, 1, 7, 1000, 4097, 100003};
  for (size_t k = 0; k < NELEM(S); k++) {
    const int64_t n = S[k];
    shape_begin(t, (int)k, "n=%lld", (long long)n);
    tens *a = T_in(t, "a", E(t->dt), n), *b = T_in(t, "b", E(t->dt), n), *out = T_out(t, "out", E(t->dt), n);
    rnd(t, a, -1, 1);
    rnd(t, b, -1e-3, 1e-3); /* mixed exponents: the fp32 sum is inexact, so its rounding shows */
    add_io io = {{.n = n, .dtype = t->dt}, out, a, b};
    if (EXEC(t, add_launch, &io, a, b, out)) {
      /* the bits: the fp32 sum rounded once to the dtype */
      float *s = fz(t, n);
      for (int64_t i = 0; i < n; i++) s[i] = a->f[i] + b->f[i];
      void *want = scratch(t, (size_t)n * k_elem_size[out->e]);
      srlm_convert(want, t->dt, s, SRLM_F32, (size_t)n);
      expect_bits(t, "out = a + b", out, want);
      tens *a2 = T_copy(t, "out=a", a, 1), *b2 = T_copy(t, "out=b", b, 1);
      add_io ia = {io.p, a2, a2, b}, ib = {io.p, b2, a, b2};
      if (EXEC(t, add_launch, &ia, a2, b)) expect_bits(t, "in place (out = a)", a2, want);
      if (EXEC(t, add_launch, &ib, a, b2)) expect_bits(t, "in place (out = b)", b2, want);
    }
    shape_end(t);
  }
}

typedef struct cs_io {
  srlm_colsum_params p;
  tens *out, *x;
} cs_io;

static srlm_status cs_launch(srlm_backend *be, void *vp) {
  const cs_io *io = vp;
  srlm_colsum_params p = io->p;
  p.out = D(io->out), p.x = D(io->x);
  return SRLM_OP(be, colsum, p);
}

static void case_colsum(tctx *t) {
  static const struct { int64_t N, C; } S[] = {{1, 1}, {0, 5}, {150, 70}, {1000, 33}, {65, 129}, {4097, 3}};
  for (size_t k = 0; k < NELEM(S); k++) {
    const int64_t N = S[k].N, C = S[k].C;
    shape_begin(t, (int)k, "N=%lld C=%lld", (long long)N, (long long)C);
    tens *x = T_in(t, "x", E(t->dt), N * C), *out = T_acc(t, "out", E_F32, C);
    rnd(t, x, -1, 1);
    rnd(t, out, -1, 1); /* accumulated */
    cs_io io = {{.N = N, .C = C, .dtype = t->dt}, out, x};
    if (EXEC(t, cs_launch, &io, x, out)) {
      double *ref = dz(t, C), *mag = dz(t, C);
      float *nv = fz(t, C);
      for (int64_t c = 0; c < C; c++) {
        ref[c] = nv[c] = out->f[c];
        mag[c] = fabs(out->f[c]);
        for (int64_t n = 0; n < N; n++)
          ref[c] += x->f[n * C + c], nv[c] += x->f[n * C + c], mag[c] += fabs(x->f[n * C + c]);
      }
      rule_mag(t, "out (accumulated)", out, ref, nv, NULL, mag, FLOOR_ORDER);
    }
    shape_end(t);
  }
}

/* fp32 -> bf16 by another route than the one under test: the value scaled so its bf16 ulp
 * is 1, rounded by nearbyint (ties to even in the default rounding mode), scaled back; a
 * result past bf16's largest finite value (0x7f7f) is infinite. */
static uint16_t bf16_rne(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if (isnan(x)) return 0x7fc0;
  if (isinf(x) || x == 0.0f) return (uint16_t)(u >> 16);
  int e;
  frexp(x, &e);                                 /* |x| in [2^(e-1), 2^e) */
  const int q = (e - 1 < -126 ? -126 : e - 1) - 7; /* the exponent of the bf16 ulp */
  const double y = ldexp(nearbyint(ldexp((double)x, -q)), q);
  const double max = ldexp(255.0, 120);        /* 0x7f7f = (2 - 2^-7) 2^127 */
  const float f = fabs(y) > max ? copysignf(INFINITY, x) : (float)y;
  memcpy(&u, &f, sizeof u);
  return (uint16_t)(u >> 16);
}

typedef struct cast_io {
  srlm_cast_params p;
  tens *out, *x;
} cast_io;

static srlm_status cast_launch(srlm_backend *be, void *vp) {
  const cast_io *io = vp;
  srlm_cast_params p = io->p;
  p.out = D(io->out), p.x = D(io->x);
  return SRLM_OP(be, cast, p);
}

/* Special fp32 inputs: ties (1 + 2^-8 rounds to 1, 1 + 3 2^-8 up), their neighbours, a
 * carry into the exponent, values rounding past the largest bf16 to inf, subnormals
 * (ties among them too), signed zeros, infinities, quiet and signalling NaNs. */
static const uint32_t k_cast_specials[] = {
    0x3f808000, 0x3f818000, 0xbf808000, 0xbf818000, 0x3f808001, 0x3f807fff, 0x3f7fffff, 0x3fffc000,
    0x7f7fffff, 0x7f7f8000, 0x7f7f7fff, 0xff7f8000, 0x00008000, 0x00018000, 0x00000001, 0x807fffff,
    0x00800000, 0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001,
    0x7fbfffff, 0x4b7f8000, 0xc0490fdb, 0x3eaaaaab,
};

static void case_cast(tctx *t) {
  /* n = 37: the specials (bf16 inputs: their top halves) then random bit patterns */
  static const int64_t S[] = {0, 1, 37, 4097, 100003};
  for (size_t k = 0; k < NELEM(S); k++)
    for (int ov = 0; ov < 2; ov++) {
      const int64_t n = S[k];
      const srlm_dtype odt = ov ? SRLM_BF16 : SRLM_F32;
      shape_begin(t, (int)(2 * k + (size_t)ov), "n=%lld %s -> %s", (long long)n, srlm_dtype_name(t->dt),
                  srlm_dtype_name(odt));
      tens *x = T_in(t, "x", E(t->dt), n), *out = T_out(t, "out", E(odt), n);
      rnd_bits(t, x);
      for (int64_t i = 0; i < n && n == 37 && i < (int64_t)NELEM(k_cast_specials); i++) {
        if (x->e == E_BF16) ((uint16_t *)x->h)[i] = (uint16_t)(k_cast_specials[i] >> 16);
        else ((uint32_t *)x->h)[i] = k_cast_specials[i];
      }
      srlm_convert(x->f, SRLM_F32, x->h, t->dt, (size_t)n); /* bf16 widening: the format's definition */
      cast_io io = {{.n = n, .dtype = t->dt, .out_dtype = odt}, out, x};
      if (EXEC(t, cast_launch, &io, x, out)) {
        void *want = scratch(t, (size_t)n * k_elem_size[out->e]);
        if (t->dt == odt) memcpy(want, x->h, (size_t)n * k_elem_size[out->e]); /* a copy, NaN payloads kept */
        else if (odt == SRLM_F32) memcpy(want, x->f, (size_t)n * sizeof(float));
        else
          for (int64_t i = 0; i < n; i++) ((uint16_t *)want)[i] = bf16_rne(x->f[i]);
        /* fp32 -> bf16 turns any NaN into a quiet NaN of any payload: compare classes there */
        int64_t bad = -1;
        for (int64_t i = 0; i < n && t->dt != odt && odt == SRLM_BF16; i++) {
          const uint16_t g = ((const uint16_t *)out->res[RES_GOT])[i];
          if (isnan(x->f[i])) {
            if ((g & 0x7f80) != 0x7f80 || !(g & 0x0040)) bad = bad < 0 ? i : bad;
            ((uint16_t *)want)[i] = g;
          }
        }
        EXPECT(bad < 0, "%s: NaN input [%lld] (0x%08x) gave 0x%04x, not a quiet NaN", t->label, (long long)bad,
               bad < 0 ? 0u : ((const uint32_t *)x->h)[bad], bad < 0 ? 0u : ((const uint16_t *)out->res[RES_GOT])[bad]);
        expect_bits(t, "out", out, want);
      }
      shape_end(t);
    }
}

/* ---- the LM head --------------------------------------------------------------------------- */

/* RANDOM: x (N, C) in [-1, 1], W (V, C) in [lo, hi]. IDENTITY (C = N): x = I and W = z^T,
 * so the logits are exactly z, uniform in [lo, hi] (logits near +-1e4 at any V; from the
 * deleted GPU test). MASKED (N = C = 1): every third logit -inf. NAN: one NaN logit. */
enum { HEAD_RANDOM, HEAD_IDENTITY, HEAD_MASKED, HEAD_NAN };
typedef struct head_shape {
  int64_t N, C, V;
  double lo, hi;
  int kind;
} head_shape;

/* V = 1, an empty batch, C off multiples of 32/64/128, V at one vocabulary chunk of the CPU
 * op (8192), one past it, three chunks with a partial last, Qwen's 151936 (18 chunks and
 * 4480), rows past a row chunk (512 rows at 8192 ids), and chosen logits */
static const head_shape k_head_shapes[] = {
    {1, 1, 1, -1, 1, HEAD_RANDOM},          {0, 8, 100, -1, 1, HEAD_RANDOM},
    {4, 16, 1000, -1, 1, HEAD_RANDOM},      {33, 129, 333, -1, 1, HEAD_RANDOM},
    {5, 12, 8192, -2, 2, HEAD_RANDOM},      {6, 8, 8193, -2, 2, HEAD_RANDOM},
    {3, 24, 16411, -2, 2, HEAD_RANDOM},     {3, 8, 151936, -2, 2, HEAD_RANDOM},
    {513, 8, 8193, -1, 1, HEAD_RANDOM},     {64, 64, 7, -5, 5, HEAD_IDENTITY},
    {8, 8, 5003, -1e4, 1e4, HEAD_IDENTITY}, {8, 8, 5003, 1e4, 1e4 + 8, HEAD_IDENTITY},
    {8, 8, 5003, -1e4 - 8, -1e4, HEAD_IDENTITY}, {2, 2, 151936, -15, 15, HEAD_IDENTITY},
    {1, 1, 999, -10, 10, HEAD_MASKED},      {1, 1, 300, -3, 3, HEAD_NAN},
    {16, 128, 151936, -0.3, 0.3, HEAD_RANDOM}, {8, 128, 128256, -0.3, 0.3, HEAD_RANDOM}, /* --large */
};

typedef struct head_in {
  tens *x, *w, *tg;
} head_in;

/* Row n's logits z (V) = x_n W^T in double (from the stored inputs) and in naive fp32. */
static void head_row64(const float *x, const float *w, int64_t C, int64_t V, double *z) {
  for (int64_t v = 0; v < V; v++) {
    double s = 0;
    for (int64_t c = 0; c < C; c++) s += (double)x[c] * w[v * C + c];
    z[v] = s;
  }
}
static void head_row32(const float *x, const float *w, int64_t C, int64_t V, float *z) {
  for (int64_t v = 0; v < V; v++) {
    float s = 0;
    for (int64_t c = 0; c < C; c++) s += x[c] * w[v * C + c];
    z[v] = s;
  }
}

/* Row n's sums of |x_c w_vc| (V): the magnitudes the logits' rounding errors scale with. */
static void head_row_abs(const float *x, const float *w, int64_t C, int64_t V, double *za) {
  for (int64_t v = 0; v < V; v++) {
    double s = 0;
    for (int64_t c = 0; c < C; c++) s += fabs((double)x[c] * w[v * C + c]);
    za[v] = s;
  }
}

/* Row max ignoring NaN (NaN reaches the results through the sum), and the log-sum-exp. */
static double lse64(const double *z, int64_t V, double *m_out) {
  double m = -INFINITY, s = 0;
  for (int64_t v = 0; v < V; v++) m = z[v] > m ? z[v] : m;
  for (int64_t v = 0; v < V; v++) s += exp(z[v] - m);
  *m_out = m;
  return m + log(s);
}

static head_in head_inputs(tctx *t, const head_shape *s) {
  const int64_t N = s->N, C = s->C, V = s->V;
  head_in h = {T_in(t, "x", E(t->dt), N * C), T_in(t, "w", E(t->dt), V * C), T_in(t, "targets", E_I32, N)};
  if (s->kind == HEAD_RANDOM) {
    rnd(t, h.x, -1, 1);
    rnd(t, h.w, s->lo, s->hi);
  } else {
    tens *z = T_in(t, "z", E_F32, N * V);
    rnd(t, z, s->lo, s->hi);
    for (int64_t i = 0; s->kind == HEAD_MASKED && i < N * V; i += 3) z->f[i] = -INFINITY;
    if (s->kind == HEAD_NAN) z->f[V / 2] = NAN;
    for (int64_t n = 0; n < N; n++) {
      h.x->f[n * C + n] = 1.0f;
      for (int64_t v = 0; v < V; v++) h.w->f[v * C + n] = z->f[n * V + v];
    }
    tstore(h.x);
    tstore(h.w);
  }
  /* targets by row: the argmax, the argmin, a random id, none (-1); never a masked id */
  int32_t *pick = scratch(t, (size_t)N * sizeof(int32_t)), *tg = I32(h.tg);
  rnd_ints(t, pick, N, 0, V);
  double *z = dz(t, V);
  for (int64_t n = 0; n < N; n++) {
    head_row64(h.x->f + n * C, h.w->f, C, V, z);
    int64_t best = pick[n];
    while (z[best] == -INFINITY) best = (best + 1) % V;
    for (int64_t v = 0; v < V && n % 4 < 2; v++)
      if (z[v] != -INFINITY && (n % 4 == 0 ? z[v] > z[best] : z[v] < z[best])) best = v;
    tg[n] = n % 4 == 3 ? -1 : (int32_t)best;
  }
  return h;
}

static const char *head_kind(int kind) {
  static const char *const names[] = {"random x, W", "x = I, W = logits^T", "x = I, masked logits", "a NaN logit"};
  return names[kind];
}

typedef struct lmh_io {
  srlm_lmhead_params p;
  tens *logp, *lse, *x, *w, *tg;
} lmh_io;

static srlm_status lmh_launch(srlm_backend *be, void *vp) {
  const lmh_io *io = vp;
  srlm_lmhead_params p = io->p;
  p.logp = D(io->logp), p.lse = D(io->lse), p.x = D(io->x), p.w = D(io->w), p.targets = D(io->tg);
  return SRLM_OP(be, lmhead_forward, p);
}

static void case_lmhead_forward(tctx *t) {
  for (size_t k = 0; k < NELEM(k_head_shapes); k++) {
    const head_shape *s = &k_head_shapes[k];
    const int64_t N = s->N, C = s->C, V = s->V;
    if (skip_large(t, 2.0 * N * C * V)) continue;
    shape_begin(t, (int)k, "N=%lld C=%lld V=%lld %s in [%g, %g]", (long long)N, (long long)C, (long long)V,
                head_kind(s->kind), s->lo, s->hi);
    head_in h = head_inputs(t, s);
    tens *logp = T_out(t, "logp", E_F32, N), *lse = T_out(t, "lse", E_F32, N);
    lmh_io io = {{.N = N, .C = C, .V = V, .dtype = t->dt}, logp, lse, h.x, h.w, h.tg};
    if (EXEC(t, lmh_launch, &io, h.x, h.w, h.tg, logp, lse)) {
      double *rlogp = dz(t, N), *rlse = dz(t, N), *z = dz(t, V), *za = dz(t, V), *mlogp = dz(t, N), *mlse = dz(t, N);
      float *nlogp = fz(t, N), *nlse = fz(t, N), *zf = fz(t, V);
      for (int64_t n = 0; n < N; n++) {
        const int32_t tn = I32(h.tg)[n];
        double m;
        head_row64(h.x->f + n * C, h.w->f, C, V, z);
        head_row_abs(h.x->f + n * C, h.w->f, C, V, za);
        rlse[n] = lse64(z, V, &m);
        rlogp[n] = tn < 0 ? 0.0 : (z[tn] - m) - (rlse[n] - m);
        /* magnitudes: the logits' terms (of the target and of the max), and log(sum) */
        double zam = 0;
        for (int64_t v = 0; v < V; v++) zam = z[v] == m ? fmax(zam, za[v]) : zam;
        mlse[n] = zam + fabs(rlse[n] - m);
        mlogp[n] = tn < 0 ? 0.0 : za[tn] + mlse[n];
        head_row32(h.x->f + n * C, h.w->f, C, V, zf);
        float mf = -INFINITY, sf = 0;
        for (int64_t v = 0; v < V; v++) mf = zf[v] > mf ? zf[v] : mf;
        for (int64_t v = 0; v < V; v++) sf += expf(zf[v] - mf);
        nlogp[n] = tn < 0 ? 0.0f : (zf[tn] - mf) - logf(sf);
        nlse[n] = mf + logf(sf);
        EXPECT(tn >= 0 || logp->gotf[n] == 0.0f, "%s: row %lld has no target but logp %g (must be 0)", t->label,
               (long long)n, (double)logp->gotf[n]);
      }
      rule_mag(t, "logp", logp, rlogp, nlogp, NULL, mlogp, FLOOR_LIBM);
      rule_mag(t, "lse", lse, rlse, nlse, NULL, mlse, FLOOR_LIBM);
    }
    if (N == 4) { /* a target out of range: an error naming the row */
      I32(h.tg)[3] = (int32_t)V;
      DATA_ERROR(t, "row 3", lmh_launch, &io, h.x, h.w, h.tg, logp, lse);
    }
    shape_end(t);
  }
}

typedef struct lmhb_io {
  srlm_lmhead_bwd_params p;
  tens *dx, *dw, *x, *w, *lse, *g, *tg;
} lmhb_io;

static srlm_status lmhb_launch(srlm_backend *be, void *vp) {
  const lmhb_io *io = vp;
  srlm_lmhead_bwd_params p = io->p;
  p.dx = D(io->dx), p.dw = D(io->dw), p.x = D(io->x), p.w = D(io->w), p.lse = D(io->lse), p.dlogp = D(io->g);
  p.targets = D(io->tg);
  return SRLM_OP(be, lmhead_backward, p);
}

/* dW's errors: absolute for random inputs; with x = I, dW = dlogits^T exactly, and its
 * errors are relative to max(|ref|, |dlogp| p): the values span many orders of magnitude (an
 * absolute floor set by the target's entry would excuse any error in the small ones), and
 * the target's entry dlogp (1 - p) cancels when p is near 1 (relative to itself, the same
 * error in p would look arbitrarily large). Where p underflows (below FLT_MIN fp32's exp is
 * denormal, or 0 where it flushes: the CPU's vector exp, CUDA with -ftz) an absolute error
 * of |dlogp| FLT_MIN counts as one ulp; a row with dlogp 0 must give zeros. */
static void case_lmhead_backward(tctx *t) {
  for (size_t k = 0; k < NELEM(k_head_shapes); k++) {
    const head_shape *s = &k_head_shapes[k];
    if (s->kind == HEAD_NAN) continue; /* NaN everywhere: the forward checks it propagates */
    const int64_t N = s->N, C = s->C, V = s->V;
    if (skip_large(t, 4.0 * N * C * V)) continue;
    shape_begin(t, (int)k, "N=%lld C=%lld V=%lld %s in [%g, %g]", (long long)N, (long long)C, (long long)V,
                head_kind(s->kind), s->lo, s->hi);
    head_in h = head_inputs(t, s);
    const int32_t *tg = I32(h.tg);
    tens *lse = T_in(t, "lse", E_F32, N), *g = T_in(t, "dlogp", E_F32, N);
    tens *dx = T_out(t, "dx", E(t->dt), N * C), *dw = T_acc(t, "dw", E_F32, V * C);
    rnd(t, g, -2, 2);
    if (s->kind == HEAD_RANDOM) rnd(t, dw, -1, 1); /* accumulated; with x = I it starts at 0 */
    double *z = dz(t, V), m;
    for (int64_t n = 0; n < N; n++) { /* the forward's lse, in fp32; no target: dlogp 0 */
      head_row64(h.x->f + n * C, h.w->f, C, V, z);
      lse->f[n] = (float)lse64(z, V, &m);
      if (tg[n] < 0) g->f[n] = 0.0f;
    }
    tstore(lse);
    tstore(g);
    lmhb_io io = {{.N = N, .C = C, .V = V, .dtype = t->dt}, dx, dw, h.x, h.w, lse, g, h.tg};
    if (EXEC(t, lmhb_launch, &io, h.x, h.w, lse, g, h.tg, dx, dw)) {
      double *rdx = dz(t, N * C), *rdw = dz(t, V * C), *den = s->kind == HEAD_RANDOM ? NULL : dz(t, V * C);
      double *mdx = dz(t, N * C), *mdw = dz(t, V * C); /* dx sums dz w, and the dz of a row sum to 0 */
      float *ndx = fz(t, N * C), *ndw = fz(t, V * C), *zf = fz(t, V);
      for (int64_t i = 0; i < V * C; i++) rdw[i] = ndw[i] = dw->f[i], mdw[i] = fabs(dw->f[i]);
      for (int64_t n = 0; n < N; n++) {
        const float *xn = h.x->f + n * C, gn = g->f[n], ln = lse->f[n];
        const double tiny = fmax(fabs((double)gn), FLT_EPSILON) * (FLT_MIN / FLT_EPSILON);
        head_row64(xn, h.w->f, C, V, z);
        head_row32(xn, h.w->f, C, V, zf);
        for (int64_t v = 0; v < V; v++) {
          const double p = exp(z[v] - ln), d = gn * ((v == tg[n] ? 1.0 : 0.0) - p);
          float df = gn * ((v == tg[n] ? 1.0f : 0.0f) - expf(zf[v] - ln));
          if (t->dt == SRLM_BF16) df = srlm_round_bf16(df); /* the contract's bf16 dlogits */
          for (int64_t c = 0; c < C; c++) {
            rdx[n * C + c] += d * h.w->f[v * C + c];
            mdx[n * C + c] += fabs(d * h.w->f[v * C + c]);
            mdw[v * C + c] += fabs(d * xn[c]);
            ndx[n * C + c] += df * h.w->f[v * C + c];
            rdw[v * C + c] += d * xn[c];
            ndw[v * C + c] += df * xn[c];
          }
          if (den) den[v * C + n] = fmax(fmax(fabs(d), fabs((double)gn) * p), tiny);
        }
        int zero = 1;
        for (int64_t c = 0; c < C && tg[n] < 0; c++) zero &= dx->gotf[n * C + c] == 0.0f;
        EXPECT(zero, "%s: row %lld has no target (dlogp 0) but a non-zero dx row", t->label, (long long)n);
      }
      round_to(dx->e, ndx, N * C);
      rule_mag(t, "dx (overwritten)", dx, rdx, ndx, NULL, mdx, FLOOR_LIBM);
      rule_mag(t, den ? "dW = dlogits^T (accumulated)" : "dW (accumulated)", dw, rdw, ndw, den, mdw, FLOOR_LIBM);
    }
    if (N == 4) { /* a row without target must have dlogp 0 */
      I32(h.tg)[0] = -1;
      g->f[0] = 1.0f;
      tstore(g);
      DATA_ERROR(t, "row 0", lmhb_launch, &io, h.x, h.w, lse, g, h.tg, dx, dw);
    }
    shape_end(t);
  }
}

/* ---- the optimizer step ---------------------------------------------------------------- */

typedef struct ss_io {
  srlm_sumsq_params p;
  tens *out, *x;
} ss_io;

static srlm_status ss_launch(srlm_backend *be, void *vp) {
  const ss_io *io = vp;
  srlm_sumsq_params p = io->p;
  p.out = D(io->out), p.x = D(io->x);
  return SRLM_OP(be, grad_sumsq, p);
}

/* The sum of squares into *out (accumulated: the optimizer sums its segments into one
 * double) over chunk boundaries at SRLM_SUMSQ_CHUNK, and a NaN or an infinity inside. */
static void case_grad_sumsq(tctx *t) {
  enum { K = SRLM_SUMSQ_CHUNK };
  static const struct { int64_t n; double start; int special; int64_t at; } S[] = {
      {0, 0.75, 0, 0},     {1, 0, 0, 0},          {1000, 0.75, 0, 0},  {K - 1, 0, 0, 0},
      {K, 0.75, 0, 0},     {K + 1, 0, 0, 0},      {3 * K + 17, 0.75, 0, 0},
      {2 * K + 5, 0, 1, K + 3}, {K + 9, 0, 2, 7}, {1000, 0.5, 3, 999},
  };
  static const float specials[] = {0, NAN, INFINITY, -INFINITY};
  if (t->dtype_pass > 0) return; /* no dtype: run with the first one only */
  for (size_t k = 0; k < NELEM(S); k++) {
    const int64_t n = S[k].n;
    shape_begin(t, (int)k, "n=%lld start %g%s", (long long)n, S[k].start,
                S[k].special ? (S[k].special == 1 ? " NaN inside" : " inf inside") : "");
    tens *x = T_in(t, "x", E_F32, n), *out = T_acc(t, "out", E_F64, 1);
    rnd(t, x, -3, 3);
    if (S[k].special) x->f[S[k].at] = specials[S[k].special], tstore(x);
    F64(out)[0] = S[k].start;
    ss_io io = {{.n = n}, out, x};
    if (EXEC(t, ss_launch, &io, x, out)) {
      const double got = ((const double *)out->res[RES_GOT])[0];
      if (S[k].special) {
        EXPECT(!isfinite(got) && (S[k].special != 1 || isnan(got)), "%s: sum of squares %g, expected %s", t->label,
               got, S[k].special == 1 ? "NaN" : "NaN or inf");
      } else {
        /* the reference: the exact squares (fp32 products are exact in double) summed in
         * double-double (Knuth's TwoSum); the naive sum: double, in index order */
        double hi = S[k].start, lo = 0, naive = S[k].start;
        for (int64_t i = 0; i < n; i++) {
          const double sq = (double)x->f[i] * x->f[i], s = hi + sq, bb = s - hi;
          lo += (hi - (s - bb)) + (sq - bb);
          hi = s;
          naive += sq;
        }
        const double ref = hi + lo, base = t->is_ref ? naive : ((const double *)out->res[RES_BASE])[0];
        rule_n(t, "sum of squares", &got, &base, &ref, NULL, 1, FLOOR_ORDER * DBL_EPSILON * fabs(ref));
      }
    }
    shape_end(t);
  }
}

typedef struct aw_io {
  srlm_adamw_params p;
  tens *master, *param, *m, *v, *grad;
} aw_io;

static srlm_status aw_launch(srlm_backend *be, void *vp) {
  const aw_io *io = vp;
  srlm_adamw_params p = io->p;
  p.master = D(io->master), p.param = D(io->param), p.m = D(io->m), p.v = D(io->v), p.grad = D(io->grad);
  return SRLM_OP(be, adamw, p);
}

static void case_adamw(tctx *t) {
  /* fp32 master only (param NULL) or with the compute copy in the dtype; weight decay on or
   * off (decay_mul 1); a clip factor or none (grad_scale 1); blocks of 4096 and a tail */
  static const struct { int64_t n; int param, decay, clip; } S[] = {
      {0, 1, 1, 1}, {1, 0, 0, 0}, {1, 1, 1, 1}, {5, 1, 1, 1}, {4097, 0, 1, 1}, {4097, 1, 0, 0}, {10000, 1, 1, 0},
      {1 << 23, 1, 1, 1}, /* --large */
  };
  /* torch.optim.AdamW at step 3: lr 1e-3, betas (0.9, 0.95), eps 1e-8, weight decay 0.1;
   * the host's per-step scalars in double, passed as float */
  const double lr = 1e-3, b1 = 0.9, b2 = 0.95, wd = 0.1, step = 3;
  for (size_t k = 0; k < NELEM(S); k++) {
    const int64_t n = S[k].n;
    if (skip_large(t, 20.0 * n)) continue;
    shape_begin(t, (int)k, "n=%lld%s%s%s", (long long)n, S[k].param ? " +compute copy" : " master only",
                S[k].decay ? " decay" : "", S[k].clip ? " clipped" : "");
    tens *master = T_acc(t, "master", E_F32, n), *m = T_acc(t, "m", E_F32, n), *v = T_acc(t, "v", E_F32, n);
    tens *grad = T_in(t, "grad", E_F32, n), *param = S[k].param ? T_out(t, "param", E(t->dt), n) : NULL;
    rnd(t, master, -1, 1);
    rnd(t, m, -1e-2, 1e-2);
    rnd(t, v, 0, 1e-4);
    rnd(t, grad, -0.1, 0.1);
    aw_io io = {{.n = n, .grad_scale = S[k].clip ? 0.37f : 1.0f, .decay_mul = S[k].decay ? (float)(1 - lr * wd) : 1.0f,
                 .one_minus_beta1 = (float)(1 - b1), .beta2 = (float)b2, .one_minus_beta2 = (float)(1 - b2),
                 .step_size = (float)(lr / (1 - pow(b1, step))), .bc2_sqrt = (float)sqrt(1 - pow(b2, step)),
                 .eps = 1e-8f, .dtype = t->dt},
                master, param, m, v, grad};
    if (EXEC(t, aw_launch, &io, grad, master, m, v, param)) {
      const srlm_adamw_params p = io.p;
      double *rw = dz(t, n), *rm = dz(t, n), *rv = dz(t, n), *mw = dz(t, n), *mm = dz(t, n);
      float *nw = fz(t, n), *nm = fz(t, n), *nv = fz(t, n);
      for (int64_t i = 0; i < n; i++) {
        const double g = (double)grad->f[i] * p.grad_scale, w = (double)master->f[i] * p.decay_mul;
        rm[i] = m->f[i] + (double)p.one_minus_beta1 * (g - m->f[i]);
        rv[i] = (double)v->f[i] * p.beta2 + (double)p.one_minus_beta2 * g * g;
        rw[i] = w - (double)p.step_size * (rm[i] / (sqrt(rv[i]) / p.bc2_sqrt + p.eps));
        mm[i] = fabs(m->f[i]) + (double)p.one_minus_beta1 * (fabs(g) + fabs(m->f[i])); /* g - m, m + .. cancel */
        mw[i] = fabs(w) + fabs(w - rw[i]);
        const float gf = grad->f[i] * p.grad_scale, wf = master->f[i] * p.decay_mul;
        nm[i] = m->f[i] + p.one_minus_beta1 * (gf - m->f[i]);
        nv[i] = v->f[i] * p.beta2 + p.one_minus_beta2 * gf * gf;
        nw[i] = wf - p.step_size * (nm[i] / (sqrtf(nv[i]) / p.bc2_sqrt + p.eps));
      }
      rule_mag(t, "master", master, rw, nw, NULL, mw, FLOOR_ORDER);
      rule_mag(t, "m", m, rm, nm, NULL, mm, FLOOR_ORDER);
      rule(t, "v", v, rv, nv, NULL, FLOOR_ORDER);
      if (param) { /* the compute copy: the new master rounded to the dtype, exactly */
        void *want = scratch(t, (size_t)n * k_elem_size[param->e]);
        srlm_convert(want, t->dt, master->res[RES_GOT], SRLM_F32, (size_t)n);
        expect_bits(t, "param = master rounded", param, want);
      }
    }
    shape_end(t);
  }
}

typedef struct ema_io {
  srlm_ema_params p;
  tens *ema, *param, *x;
} ema_io;

static srlm_status ema_launch(srlm_backend *be, void *vp) {
  const ema_io *io = vp;
  srlm_ema_params p = io->p;
  p.ema = D(io->ema), p.param = D(io->param), p.x = D(io->x);
  return SRLM_OP(be, ema, p);
}

static void case_ema(tctx *t) {
  /* the master only (fp32 weights: param NULL) or with the compute copy in the dtype; WARP's
   * mu 0.01, an odd mu, the ends 0 (the anchor stays) and 1 (it becomes x); chunks of 8 and
   * a tail, threads' blocks of 4096 and a tail */
  static const struct { int64_t n; int param; double mu; } S[] = {
      {0, 1, 0.01}, {1, 0, 0.01}, {1, 1, 0.3}, {7, 1, 0.01}, {4097, 0, 0.3}, {4097, 1, 0.01}, {10000, 1, 1.0},
      {999, 1, 0.0}, {1 << 23, 1, 0.01}, /* --large */
  };
  for (size_t k = 0; k < NELEM(S); k++) {
    const int64_t n = S[k].n;
    if (skip_large(t, 6.0 * n)) continue;
    shape_begin(t, (int)k, "n=%lld mu=%g%s", (long long)n, S[k].mu, S[k].param ? " +compute copy" : " master only");
    tens *ema = T_acc(t, "ema", E_F32, n), *x = T_in(t, "x", E_F32, n);
    tens *param = S[k].param ? T_out(t, "param", E(t->dt), n) : NULL;
    rnd(t, ema, -1, 1);
    rnd(t, x, -1, 1);
    ema_io io = {{.n = n, .mu = S[k].mu, .dtype = t->dt}, ema, param, x};
    if (EXEC(t, ema_launch, &io, x, ema, param)) {
      /* the contract fixes the bits: the double products and sum each rounded, then fp32 */
      float *want = fz(t, n);
      const double mu = S[k].mu, keep = 1.0 - S[k].mu;
      for (int64_t i = 0; i < n; i++) want[i] = (float)(keep * (double)ema->f[i] + mu * (double)x->f[i]);
      expect_bits(t, "ema = fp32((1 - mu) ema + mu x)", ema, want);
      if (param) { /* the compute copy: the new master rounded to the dtype, exactly */
        void *pw = scratch(t, (size_t)n * k_elem_size[param->e]);
        srlm_convert(pw, t->dt, ema->res[RES_GOT], SRLM_F32, (size_t)n);
        expect_bits(t, "param = ema rounded", param, pw);
      }
    }
    shape_end(t);
  }
}

/* ---- sampling ------------------------------------------------------------------------------ */

typedef struct smp_io {
  srlm_sample_params p;
  tens *tok, *lp, *slp, *logits, *seq, *step;
} smp_io;

static srlm_status smp_launch(srlm_backend *be, void *vp) {
  const smp_io *io = vp;
  srlm_sample_params p = io->p;
  p.token = D(io->tok), p.logprob = D(io->lp), p.sample_logprob = D(io->slp), p.logits = D(io->logits);
  p.seq_id = D(io->seq), p.step = D(io->step);
  return SRLM_OP(be, sample, p);
}

/* The token must be sampler.h's by a straightforward reference (full sort, double sums:
 * tests/unit/sample_ref.h), on every backend; a backend must give the CPU's token and
 * log-probs BIT FOR BIT (sample_math.h's design); the log-probs against the reference's
 * float64 values by the rule (the CPU's base: the reference rounded to fp32; the weights'
 * fp32 exp and the 2^-62 masses cost the CPU a few ulps of log Z). Rows: random, ties
 * (logits on a grid of 1/2), a third masked to -inf, a wide range; settings: greedy, plain,
 * each cut and all of them; sequence ids past 2^32. */
static void case_sample(tctx *t) {
  static const struct { int64_t n, V; } S[] = {{0, 5}, {1, 1}, {8, 7}, {8, 300}, {4, 5000}, {3, 151936}};
  static const sample_settings set[] = {{0.0f, 1.0f, 0.0f, 0},   {1.0f, 1.0f, 0.0f, 0},  {0.7f, 0.9f, 0.0f, 0},
                                        {1.0f, 1.0f, 0.05f, 0},  {1.3f, 1.0f, 0.0f, 3},  {0.8f, 0.95f, 0.05f, 20}};
  if (t->dtype_pass > 0) return; /* no dtype: run with the first one only */
  for (size_t k = 0; k < NELEM(S); k++)
    for (size_t j = 0; j < NELEM(set); j++) {
      const int64_t n = S[k].n, V = S[k].V;
      const sample_settings *st = &set[j];
      shape_begin(t, (int)(k * NELEM(set) + j), "n=%lld V=%lld T=%g top_k=%d top_p=%g min_p=%g", (long long)n,
                  (long long)V, (double)st->t, st->top_k, (double)st->top_p, (double)st->min_p);
      tens *logits = T_in(t, "logits", E_F32, n * V), *seq = T_in(t, "seq_id", E_I64, n);
      tens *step = T_in(t, "step", E_I32, n), *tok = T_out(t, "token", E_I32, n);
      tens *lp = T_out(t, "logprob", E_F32, n), *slp = T_out(t, "sample_logprob", E_F32, n);
      rnd(t, logits, -4, 4);
      for (int64_t r = 0; r < n; r++) {
        float *l = logits->f + r * V;
        for (int64_t i = 0; i < V; i++) {
          if (r % 4 == 1) l[i] = floorf(2 * l[i]) / 2;
          if (r % 4 == 2 && i % 3 == 1) l[i] = -INFINITY;
          if (r % 4 == 3) l[i] = -5 * l[i] * l[i];
        }
        I64(seq)[r] = r * 977 + (r % 3 == 2 ? INT64_C(1) << 33 : 0);
        I32(step)[r] = (int32_t)(r % 5 + k);
      }
      tstore(logits);
      smp_io io = {{.n = n, .V = V, .temperature = st->t, .top_p = st->top_p, .min_p = st->min_p,
                    .top_k = st->top_k, .seed = t->seed},
                   tok, lp, slp, logits, seq, step};
      if (EXEC(t, smp_launch, &io, logits, seq, step, tok, lp, slp)) {
        double *rlp = dz(t, n), *rslp = dz(t, n), *glp = dz(t, n), *gslp = dz(t, n), *blp = dz(t, n),
               *bslp = dz(t, n), mag = 0;
        for (int64_t r = 0; r < n; r++) {
          const float *l = logits->f + r * V;
          const sample_ref_out ref = sample_reference(l, V, st, t->seed, (uint64_t)I64(seq)[r], (uint32_t)I32(step)[r]);
          const int32_t got = ((const int32_t *)tok->res[RES_GOT])[r];
          note_check(t, got != ref.token, 1);
          EXPECT(got == ref.token, "%s: row %lld: token %d, the reference's %d", t->label, (long long)r, got,
                 ref.token);
          rlp[r] = ref.logprob, rslp[r] = ref.sample_logprob;
          glp[r] = lp->gotf[r], gslp[r] = slp->gotf[r];
          blp[r] = t->is_ref ? (float)ref.logprob : lp->basef[r];
          bslp[r] = t->is_ref ? (float)ref.sample_logprob : slp->basef[r];
          float m = -INFINITY;
          for (int64_t i = 0; i < V; i++) m = l[i] > m ? l[i] : m;
          mag = fmax(mag, fabs(ref.logprob) + fabs(m) + (st->t > 0 ? fabs(ref.sample_logprob) + fabs(m) / st->t : 0));
        }
        rule_n(t, "logprob", glp, blp, rlp, NULL, n, FLOOR_LIBM * FLT_EPSILON * mag);
        rule_n(t, "sample_logprob", gslp, bslp, rslp, NULL, n, FLOOR_LIBM * FLT_EPSILON * mag);
        if (!t->is_ref) {
          expect_bits(t, "token = the cpu's", tok, tok->res[RES_BASE]);
          expect_bits(t, "logprob = the cpu's", lp, lp->res[RES_BASE]);
          expect_bits(t, "sample_logprob = the cpu's", slp, slp->res[RES_BASE]);
        }
      }
      if (n >= 4 && j == 1) { /* a NaN logit: an error naming the row */
        logits->f[2 * V + 3] = NAN;
        tstore(logits);
        DATA_ERROR(t, "row 2", smp_launch, &io, logits, seq, step, tok, lp, slp);
      }
      shape_end(t);
    }
}

/* ---- the loss coefficients --------------------------------------------------------------- */

/* A packed batch: nseq responses of 1..max_len tokens, each behind 1..3 prompt rows, then
 * 2 padding rows; log-probs in [-6, -0.05]. *start (nseq) gets where each response starts. */
static tens *packed_logp(tctx *t, int64_t nseq, int64_t max_len, tens *start, tens *len, int64_t *T) {
  int32_t *gap = scratch(t, (size_t)(nseq > 0 ? nseq : 1) * sizeof(int32_t));
  rnd_ints(t, I32(len), nseq, 1, max_len + 1);
  rnd_ints(t, gap, nseq, 1, 4);
  int64_t rows = 0;
  for (int64_t s = 0; s < nseq; s++) {
    rows += gap[s];
    I32(start)[s] = (int32_t)rows;
    rows += I32(len)[s];
  }
  *T = rows + 2;
  tens *logp = T_in(t, "logp", E_F32, *T);
  rnd(t, logp, -6, -0.05);
  return logp;
}

/* sum of x[start .. start + len) in double-double (TwoSum): exact to 2^-106, independent of
 * the order; `naive`: the plain double sum in token order (the contract's); *mag: sum |x|. */
static double exact_sum(const float *x, int64_t start, int64_t len, double *naive, double *mag) {
  double hi = 0, lo = 0;
  *naive = 0, *mag = 0;
  for (int64_t i = start; i < start + len; i++) {
    const double v = x[i], s = hi + v, bb = s - hi;
    lo += (hi - (s - bb)) + (v - bb);
    hi = s;
    *naive += v;
    *mag += fabs(v);
  }
  return hi + lo;
}

/* The rule on a double output of n values (the floor: `ulps` double ulps of mag). */
static void rule_f64(tctx *t, const char *what, const tens *x, const double *ref, const double *naive, int64_t n,
                     double ulps, double mag) {
  const double *got = x->res[RES_GOT], *base = t->is_ref ? naive : x->res[RES_BASE];
  rule_n(t, what, got, base, ref, NULL, n, ulps * DBL_EPSILON * mag);
}

/* g is 0 (+0) on every row no response holds. */
static void expect_g_zero_off(tctx *t, const tens *g, const char *covered) {
  int64_t bad = -1;
  for (int64_t i = 0; i < g->n && bad < 0; i++)
    if (!covered[i] && !(g->gotf[i] == 0.0f && !signbit(g->gotf[i]))) bad = i;
  note_check(t, bad >= 0, 1);
  EXPECT(bad < 0, "%s: g[%lld] = %g off the responses (must be 0)", t->label, (long long)bad,
         bad < 0 ? 0.0 : (double)g->gotf[bad]);
}

typedef struct pref_io {
  srlm_pref_loss_params p;
  tens *g, *out, *logp, *start, *len, *rc, *rr, *w, *eps;
} pref_io;

static srlm_status pref_launch(srlm_backend *be, void *vp) {
  const pref_io *io = vp;
  srlm_pref_loss_params p = io->p;
  p.g = D(io->g), p.pair_out = D(io->out), p.logp = D(io->logp), p.resp_start = D(io->start);
  p.resp_len = D(io->len), p.ref_chosen = D(io->rc), p.ref_rejected = D(io->rr);
  p.pair_weight = D(io->w), p.pair_label = D(io->eps);
  return SRLM_OP(be, pref_loss, p);
}

/* Every preference loss on packed pairs against loss_math.h's formulas evaluated on exact
 * (double-double) response sums; the CPU's base: the same formulas on the contract's
 * double sums in token order. The formulas' rounding on a GPU (fma contraction, device
 * exp/log1p) is a few double ulps of the terms' magnitude: the floor is 16 of them. g is
 * the coefficient rounded once to fp32, 0 off the responses (over NaN). */
static void case_pref_loss(tctx *t) {
  /* soft: per-pair weights (1: and DPO's soft labels) */
  static const struct { int64_t n, max_len; int kind, ref; double beta, ls, gamma, nll; int soft; } S[] = {
      {0, 5, SRLM_PREF_DPO, 1, 0.1, 0, 0, 0, 0},       {1, 1, SRLM_PREF_SFT, 0, 0, 0, 0, 0, 0},
      {3, 40, SRLM_PREF_DPO, 1, 0.1, 0, 0, 0, 0},      {3, 40, SRLM_PREF_DPO, 1, 0.5, 0.2, 0, 1.0, 0},
      {4, 300, SRLM_PREF_IPO, 1, 0.3, 0, 0, 0, 0},     {5, 17, SRLM_PREF_SIMPO, 0, 2.0, 0, 0.5, 0, 0},
      {2, 200, SRLM_PREF_SIMPO, 1, 2.5, 0, 1.0, 0.3, 0},
      {5, 60, SRLM_PREF_DPO, 1, 0.5, 0, 0, 1.0, 1},    {3, 30, SRLM_PREF_IPO, 1, 0.4, 0, 0, 0.5, 1},
  };
  if (t->dtype_pass > 0) return; /* no dtype: run with the first one only */
  for (size_t k = 0; k < NELEM(S); k++) {
    const int64_t n = S[k].n, norm = n + 2;
    shape_begin(t, (int)k, "pairs=%lld kind %d%s beta %g ls %g gamma %g nll %g%s", (long long)n, S[k].kind,
                S[k].ref ? " ref" : "", S[k].beta, S[k].ls, S[k].gamma, S[k].nll,
                S[k].soft ? " per-pair weights/labels" : "");
    tens *start = T_in(t, "resp_start", E_I32, 2 * n), *len = T_in(t, "resp_len", E_I32, 2 * n);
    int64_t T;
    tens *logp = packed_logp(t, 2 * n, S[k].max_len, start, len, &T);
    tens *rc = S[k].ref ? T_in(t, "ref_chosen", E_F64, n) : NULL;
    tens *rr = S[k].ref ? T_in(t, "ref_rejected", E_F64, n) : NULL;
    if (rc) rnd(t, rc, -200, -1), rnd(t, rr, -200, -1);
    tens *w = S[k].soft ? T_in(t, "pair_weight", E_F64, n) : NULL;
    tens *eps = S[k].soft && S[k].kind == SRLM_PREF_DPO ? T_in(t, "pair_label", E_F64, n) : NULL;
    if (w) rnd(t, w, 0, 3);
    if (eps) rnd(t, eps, 0, 1);
    tens *g = T_out(t, "g", E_F32, T), *out = T_out(t, "pair_out", E_F64, n * SRLM_PREF_OUT_COUNT);
    for (int64_t i = 0; i < out->n; i++) F64(out)[i] = NAN; /* overwritten */
    pref_io io = {{.n = n, .T = T, .kind = S[k].kind, .beta = S[k].beta, .label_smoothing = S[k].ls,
                   .simpo_gamma = S[k].gamma, .nll_weight = S[k].nll, .norm = norm},
                  g, out, logp, start, len, rc, rr, w, eps};
    if (EXEC(t, pref_launch, &io, logp, start, len, rc, rr, w, eps, g, out)) {
      const srlm_pref_math m = {.kind = S[k].kind, .beta = S[k].beta,
                                .simpo_gamma = S[k].gamma, .nll_weight = S[k].nll, .inv_norm = 1.0 / (double)norm};
      double *ref = dz(t, out->n), *nv = dz(t, out->n), *gref = dz(t, T), mag = 0;
      float *gnv = fz(t, T);
      char *covered = scratch(t, (size_t)T);
      for (int64_t i = 0; i < n; i++) {
        srlm_pref_pair_in x = {.len_chosen = I32(len)[2 * i], .len_rejected = I32(len)[2 * i + 1], .has_ref = S[k].ref,
                               .weight = w ? F64(w)[i] : 1.0, .label_smoothing = eps ? F64(eps)[i] : S[k].ls};
        srlm_pref_pair_in xn = x;
        double mc, mr;
        x.logp_chosen = exact_sum(logp->f, I32(start)[2 * i], I32(len)[2 * i], &xn.logp_chosen, &mc);
        x.logp_rejected = exact_sum(logp->f, I32(start)[2 * i + 1], I32(len)[2 * i + 1], &xn.logp_rejected, &mr);
        if (S[k].ref) xn.ref_chosen = x.ref_chosen = F64(rc)[i], xn.ref_rejected = x.ref_rejected = F64(rr)[i];
        const srlm_pref_term r = srlm_pref_pair_term(m, x), q = srlm_pref_pair_term(m, xn);
        const double row[SRLM_PREF_OUT_COUNT] = {r.loss, r.nll, x.logp_chosen, x.logp_rejected, r.reward_chosen,
                                                 r.reward_rejected, r.coef_chosen, r.coef_rejected};
        const double nrow[SRLM_PREF_OUT_COUNT] = {q.loss, q.nll, xn.logp_chosen, xn.logp_rejected, q.reward_chosen,
                                                  q.reward_rejected, q.coef_chosen, q.coef_rejected};
        memcpy(ref + i * SRLM_PREF_OUT_COUNT, row, sizeof row);
        memcpy(nv + i * SRLM_PREF_OUT_COUNT, nrow, sizeof nrow);
        const double refs = S[k].ref ? fabs(F64(rc)[i]) + fabs(F64(rr)[i]) : 0;
        mag = fmax(mag, (1 + S[k].beta) * (1 + S[k].nll) * (1 + S[k].gamma + mc + mr + refs) * (w ? 3 : 1));
        for (int a = 0; a < 2; a++)
          for (int32_t j = I32(start)[2 * i + a]; j < I32(start)[2 * i + a] + I32(len)[2 * i + a]; j++) {
            gref[j] = a ? r.coef_rejected : r.coef_chosen;
            gnv[j] = (float)(a ? q.coef_rejected : q.coef_chosen);
            covered[j] = 1;
          }
      }
      rule_f64(t, "pair_out", out, ref, nv, out->n, 16, mag);
      rule(t, "g", g, gref, gnv, NULL, FLOOR_ORDER);
      expect_g_zero_off(t, g, covered);
    }
    if (n >= 2) { /* pair 1's rejected answer runs past the batch */
      I32(len)[3] = (int32_t)(T - I32(start)[3] + 1);
      DATA_ERROR(t, "pair 1", pref_launch, &io, logp, start, len, rc, rr, w, eps, g, out);
    }
    shape_end(t);
  }
}

typedef struct grpo_io {
  srlm_grpo_loss_params p;
  tens *g, *out, *logp, *start, *off, *old, *ref, *beh, *adv;
} grpo_io;

static srlm_status grpo_launch(srlm_backend *be, void *vp) {
  const grpo_io *io = vp;
  srlm_grpo_loss_params p = io->p;
  p.g = D(io->g), p.seq_out = D(io->out), p.logp = D(io->logp), p.resp_start = D(io->start), p.offsets = D(io->off);
  p.logp_old = D(io->old), p.logp_ref = D(io->ref), p.logp_behavior = D(io->beh), p.advantages = D(io->adv);
  return SRLM_OP(be, grpo_loss, p);
}

/* GRPO, DAPO and Dr.GRPO per token against loss_math.h's per-token terms, the sequence sums
 * in double-double (the CPU's base: plain double sums in token order); old/ref/behavior
 * log-probs near the current ones, so tokens fall on both sides of the clip band and of the
 * importance cap. The floor: 16 double ulps of the sum of |terms|. */
static void case_grpo_loss(tctx *t) {
  /* hi: DAPO's clip_eps_high (0 = clip); ratio: per token or per sequence (GSPO) */
  static const struct { int64_t n, max_len; int agg, old, ref, beh; double clip, beta, cap, hi; int ratio; } S[] = {
      {0, 5, SRLM_GRPO_AGG_SEQ_MEAN, 0, 0, 0, 0.2, 0, 0, 0, SRLM_GRPO_RATIO_TOKEN},
      {1, 1, SRLM_GRPO_AGG_SEQ_MEAN, 0, 0, 0, 0.2, 0, 0, 0, SRLM_GRPO_RATIO_TOKEN},
      {4, 40, SRLM_GRPO_AGG_SEQ_MEAN, 1, 1, 0, 0.2, 0.04, 0, 0, SRLM_GRPO_RATIO_TOKEN},
      {5, 300, SRLM_GRPO_AGG_TOKEN_MEAN, 1, 1, 1, 0.28, 0, 2, 0, SRLM_GRPO_RATIO_TOKEN},
      {3, 60, SRLM_GRPO_AGG_FIXED_LEN, 1, 0, 1, 0.1, 0, 1.5, 0, SRLM_GRPO_RATIO_TOKEN},
      {6, 9, SRLM_GRPO_AGG_TOKEN_MEAN, 0, 1, 0, 0, 0.1, 0, 0, SRLM_GRPO_RATIO_TOKEN},
      {5, 300, SRLM_GRPO_AGG_TOKEN_MEAN, 1, 1, 0, 0.1, 0.04, 0, 0.28, SRLM_GRPO_RATIO_TOKEN},
      {4, 40, SRLM_GRPO_AGG_SEQ_MEAN, 1, 1, 1, 0.05, 0.04, 1.2, 0.08, SRLM_GRPO_RATIO_SEQUENCE},
      {6, 300, SRLM_GRPO_AGG_TOKEN_MEAN, 0, 0, 0, 0.2, 0, 0, 0, SRLM_GRPO_RATIO_SEQUENCE},
  };
  if (t->dtype_pass > 0) return; /* no dtype: run with the first one only */
  for (size_t k = 0; k < NELEM(S); k++) {
    const int64_t n = S[k].n;
    shape_begin(t, (int)k, "seqs=%lld agg %d%s%s%s clip %g/%g beta %g cap %g ratio %s", (long long)n, S[k].agg,
                S[k].old ? " old" : "", S[k].ref ? " ref" : "", S[k].beh ? " behavior" : "", S[k].clip, S[k].hi,
                S[k].beta, S[k].cap, S[k].ratio ? "sequence" : "token");
    tens *start = T_in(t, "resp_start", E_I32, n), *len = T_in(t, "len", E_I32, n);
    tens *off = T_in(t, "offsets", E_I64, n + 1);
    int64_t T;
    tens *logp = packed_logp(t, n, S[k].max_len, start, len, &T);
    I64(off)[0] = 0;
    for (int64_t i = 0; i < n; i++) I64(off)[i + 1] = I64(off)[i] + I32(len)[i];
    const int64_t N = I64(off)[n];
    tens *old = S[k].old ? T_in(t, "logp_old", E_F32, N) : NULL, *ref = S[k].ref ? T_in(t, "logp_ref", E_F32, N) : NULL;
    tens *beh = S[k].beh ? T_in(t, "logp_behavior", E_F32, N) : NULL, *adv = T_in(t, "advantages", E_F64, n);
    tens *near[3] = {old, ref, beh};
    for (int a = 0; a < 3; a++) {
      if (!near[a]) continue;
      rnd(t, near[a], -0.4, 0.4);
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = I64(off)[i]; j < I64(off)[i + 1]; j++)
          near[a]->f[j] += logp->f[I32(start)[i] + j - I64(off)[i]];
      tstore(near[a]);
    }
    rnd(t, adv, -2, 2);
    tens *g = T_out(t, "g", E_F32, T), *out = T_out(t, "seq_out", E_F64, n * SRLM_GRPO_OUT_COUNT);
    for (int64_t i = 0; i < out->n; i++) F64(out)[i] = NAN; /* overwritten */
    grpo_io io = {{.n = n, .T = T, .clip_eps = S[k].clip, .beta = S[k].beta, .is_cap = S[k].cap, .agg = S[k].agg,
                   .clip_eps_high = S[k].hi, .ratio = S[k].ratio,
                   .l_max = S[k].max_len + 3, .norm_seqs = n + 1, .norm_tokens = N + 7},
                  g, out, logp, start, off, old, ref, beh, adv};
    if (EXEC(t, grpo_launch, &io, logp, start, off, old, ref, beh, adv, g, out)) {
      const srlm_grpo_math m = srlm_grpo_math_make(S[k].clip, S[k].hi, S[k].beta, S[k].cap, S[k].ratio);
      double *rs = dz(t, out->n), *ns = dz(t, out->n), *gref = dz(t, T), mag = 0;
      float *gnv = fz(t, T);
      char *covered = scratch(t, (size_t)T);
      for (int64_t i = 0; i < n; i++) {
        const int64_t j0 = I64(off)[i], L = I64(off)[i + 1] - j0;
        const double w =
            srlm_grpo_token_weight(S[k].agg, (double)io.p.norm_seqs, (double)io.p.norm_tokens, L, io.p.l_max);
        double hi[SRLM_GRPO_OUT_COUNT] = {0}, lo[SRLM_GRPO_OUT_COUNT] = {0}, sm[SRLM_GRPO_OUT_COUNT] = {0};
        double *nrow = ns + i * SRLM_GRPO_OUT_COUNT;
        double slr = 0, sis = 0; /* GSPO: the sequence's log-ratio sums in token order */
        for (int64_t q = 0; q < L; q++) {
          const double lp = logp->f[I32(start)[i] + q], o = old ? old->f[j0 + q] : lp;
          slr += lp - o;
          if (S[k].cap > 0) sis += o - (double)beh->f[j0 + q];
        }
        for (int64_t q = 0; q < L; q++) {
          const int64_t tt = I32(start)[i] + q, j = j0 + q;
          const double lp = logp->f[tt];
          const srlm_grpo_token_in x = {.logp = lp, .logp_old = old ? old->f[j] : lp, .logp_ref = ref ? ref->f[j] : 0,
                                        .logp_behavior = beh ? beh->f[j] : 0, .has_ref = ref != NULL,
                                        .seq_log_ratio = slr / (double)L, .seq_log_is = sis / (double)L};
          const srlm_grpo_term r = srlm_grpo_token_term(m, F64(adv)[i], w, x);
          gref[tt] = r.g, gnv[tt] = (float)r.g, covered[tt] = 1;
          const double v[SRLM_GRPO_OUT_COUNT] = {-r.wj, r.kl, r.rho, r.clipped, r.truncated};
          for (int o = 0; o < SRLM_GRPO_OUT_COUNT; o++) { /* TwoSum, and the naive running sum */
            const double s2 = hi[o] + v[o], bb = s2 - hi[o];
            lo[o] += (hi[o] - (s2 - bb)) + (v[o] - bb);
            hi[o] = s2;
            nrow[o] = o == 0 ? nrow[o] - r.wj : nrow[o] + v[o];
            sm[o] += fabs(v[o]);
          }
        }
        for (int o = 0; o < SRLM_GRPO_OUT_COUNT; o++) {
          rs[i * SRLM_GRPO_OUT_COUNT + o] = hi[o] + lo[o];
          mag = fmax(mag, sm[o]);
        }
      }
      rule_f64(t, "seq_out", out, rs, ns, out->n, 16, mag);
      rule(t, "g", g, gref, gnv, NULL, FLOOR_ORDER);
      expect_g_zero_off(t, g, covered);
    }
    if (n >= 3) { /* sequence 2's response starts past the batch */
      I32(start)[2] = (int32_t)T;
      DATA_ERROR(t, "sequence 2", grpo_launch, &io, logp, start, off, old, ref, beh, adv, g, out);
    }
    shape_end(t);
  }
}

/* ---- the references themselves ---------------------------------------------------------------- */

/* The float64 backward references are the derivatives of the forward references: central
 * differences on small fixed inputs. Inputs are floats, so each is moved by +-H (exact: a
 * power of two well above their ulp); the difference quotient is then exact to about
 * H^2 |f'''| + eps / H, below FD_TOL here. */
#define FD_H (1.0f / 1024)
#define FD_TOL 1e-5

static void expect_fd(const char *what, int i, double fd, double formula) {
  EXPECT(fabs(fd - formula) <= FD_TOL * (1 + fabs(formula)),
         "reference %s [%d]: formula %.12g, central difference %.12g", what, i, formula, fd);
}

/* The loss of one row of the LM head's log-prob: logp(z) = z_t - logsumexp(z). */
static double head_logp(const double *z, int64_t V, int t) {
  double m;
  return z[t] - lse64(z, V, &m);
}

/* Loss of an RMSNorm row: sum_c dy_c out_c(x, w). */
static double rmsnorm_loss(const float *x, const float *w, const float *dy, int64_t C, float eps) {
  const double r = rstd64(x, C, eps);
  double l = 0;
  for (int64_t c = 0; c < C; c++) l += (double)dy[c] * x[c] * r * w[c];
  return l;
}

/* Loss of one attention query row over keys 0..hi: dout . out(q, K, V). */
static double attn_loss(const float *q, const float *k, const float *v, const float *dout, int64_t hi, int64_t HS,
                        float scale) {
  double p[8], o[8], l = 0;
  attn_row64(q, k, v, HS, 0, hi, HS, scale, p, o);
  for (int64_t d = 0; d < HS; d++) l += (double)dout[d] * o[d];
  return l;
}

/* out = the central difference of expr in x (moved by +-H, then restored). */
#define CENTRAL(out, x, expr)      \
  do {                             \
    const float x0_ = (x);         \
    (x) = x0_ + FD_H;              \
    const double up_ = (expr);     \
    (x) = x0_ - FD_H;              \
    const double dn_ = (expr);     \
    (x) = x0_;                     \
    (out) = (up_ - dn_) / (2.0 * FD_H); \
  } while (0)

static void check_references(void) {
  /* LM head: d logp / dz_v = onehot_t(v) - p_v */
  double z[7] = {0.3, -1.2, 2.5, 0.0, 1.1, -0.7, 2.4}, m;
  const double lse = lse64(z, 7, &m);
  for (int v = 0; v < 7; v++) {
    const double z0 = z[v], h = 1e-5;
    z[v] = z0 + h;
    const double up = head_logp(z, 7, 4);
    z[v] = z0 - h;
    const double dn = head_logp(z, 7, 4);
    z[v] = z0;
    expect_fd("lmhead dlogits", v, (up - dn) / (2 * h), (v == 4 ? 1.0 : 0.0) - exp(z0 - lse));
  }
  /* RMSNorm: dx and dw of sum dy out */
  enum { C = 6 };
  float x[C] = {0.5f, -1.5f, 0.25f, 2.0f, -0.75f, 1.0f}, w[C] = {0.7f, 1.2f, 0.9f, 1.4f, 1.0f, 0.6f};
  const float dy[C] = {0.3f, -1.1f, 0.8f, 0.2f, -0.5f, 1.0f}, eps = 1e-6f;
  double dx[C], dw[C] = {0}, mag[C];
  rmsnorm_bwd_row64(x, w, dy, rstd64(x, C, eps), C, dx, dw, mag);
  double fd;
  for (int c = 0; c < C; c++) {
    CENTRAL(fd, x[c], rmsnorm_loss(x, w, dy, C, eps));
    expect_fd("rmsnorm dx", c, fd, dx[c]);
    CENTRAL(fd, w[c], rmsnorm_loss(x, w, dy, C, eps));
    expect_fd("rmsnorm dw", c, fd, dw[c]);
  }
  /* RoPE: the backward is the forward's adjoint, <bwd(g), x> = <g, fwd(x)> */
  const int32_t pos[2] = {3, 1000};
  float inv[4], g[16], xr[16];
  rope_freqs(inv, 8, 1e4, 0);
  for (int i = 0; i < 16; i++) g[i] = (float)sin(1.7 * i + 0.4), xr[i] = (float)cos(0.9 * i - 0.2);
  double fx[16], bg[16], lhs = 0, rhs = 0;
  rope_ref64(xr, pos, inv, 2, 1, 8, 1.0, fx, NULL);
  rope_ref64(g, pos, inv, 2, 1, 8, -1.0, bg, NULL);
  for (int i = 0; i < 16; i++) lhs += bg[i] * xr[i], rhs += g[i] * fx[i];
  expect_fd("rope adjoint", 0, lhs, rhs);
  /* attention: dq, dk, dv of one query row over 5 keys */
  enum { HS = 4, J = 5 };
  float q[HS], k[J * HS], v[J * HS], dout[HS];
  for (int i = 0; i < HS; i++) q[i] = (float)sin(i + 0.5), dout[i] = (float)cos(2.0 * i);
  for (int i = 0; i < J * HS; i++) k[i] = (float)sin(0.7 * i), v[i] = (float)cos(1.3 * i + 0.1);
  double p[J], o64[HS], dq[HS] = {0}, dk[J * HS] = {0}, dv[J * HS] = {0};
  float o32[HS];
  const float scale = 0.5f, l32 = (float)attn_row64(q, k, v, HS, 0, J - 1, HS, scale, p, o64);
  for (int d = 0; d < HS; d++) o32[d] = (float)o64[d];
  attn_bwd_row64(q, dout, o32, l32, k, v, HS, 0, J - 1, HS, scale, dq, dk, dv);
  for (int i = 0; i < HS; i++) {
    CENTRAL(fd, q[i], attn_loss(q, k, v, dout, J - 1, HS, scale));
    expect_fd("attention dq", i, fd, dq[i]);
  }
  for (int i = 0; i < J * HS; i++) {
    CENTRAL(fd, k[i], attn_loss(q, k, v, dout, J - 1, HS, scale));
    expect_fd("attention dk", i, fd, dk[i]);
    CENTRAL(fd, v[i], attn_loss(q, k, v, dout, J - 1, HS, scale));
    expect_fd("attention dv", i, fd, dv[i]);
  }
  /* SwiGLU: dgate, dup of dh silu(gate) up */
  for (int i = 0; i < 9; i++) {
    float gt = -6.0f + 1.5f * (float)i, up = 0.75f;
    const float dh = -1.25f;
    double dg, du, mg;
    swiglu_bwd64(gt, up, dh, &dg, &du, &mg);
    CENTRAL(fd, gt, (double)dh * gt / (1.0 + exp(-(double)gt)) * up);
    expect_fd("swiglu dgate", i, fd, dg);
    CENTRAL(fd, up, (double)dh * gt / (1.0 + exp(-(double)gt)) * up);
    expect_fd("swiglu dup", i, fd, du);
  }
}

/* ---- the case list and the driver ------------------------------------------------------------ */

typedef void (*case_fn)(tctx *t);
/* X(op, type) -> case_<op>: an op of the list without a case does not link. */
#define CASE_ENTRY_(op, type) [SRLM_OP_##op] = case_##op,
static const case_fn k_cases[SRLM_OP_COUNT] = {SRLM_BACKEND_OPS(CASE_ENTRY_)};
#undef CASE_ENTRY_

static int in_list(const char *name, const char *const *list, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(name, list[i]) == 0) return 1;
  return 0;
}

/* Reports the ops `be` lacks; a failure where the backend must have them all. Returns how
 * many it lacks. */
static int report_lacks(const srlm_backend *be) {
  const int complete = in_list(be->name, k_complete_backends, NELEM(k_complete_backends));
  char list[1024] = "";
  size_t len = 0;
  int n = 0;
  for (int i = 0; i < SRLM_OP_COUNT; i++) {
    if (srlm_backend_has_op(be->ops, (srlm_op_id)i)) continue;
    if (len < sizeof list)
      len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", n ? ", " : "", srlm_op_names[i]);
    n++;
    EXPECT(!complete, "backend %s lacks op %s (every op of the list is required of it)", be->name, srlm_op_names[i]);
  }
  if (n) fprintf(stderr, "backend %s lacks %d of %d ops: %s\n", be->name, n, SRLM_OP_COUNT, list);
  else fprintf(stderr, "backend %s has all %d ops\n", be->name, SRLM_OP_COUNT);
  return n;
}

typedef struct opts {
  char backends[256], dtypes[64];
  const char *only_op;
  uint64_t seed;
  int large, verbose, quick;
} opts;

static int usage(const char *msg) {
  fprintf(stderr,
          "test_backend_ops: %s\nusage: test_backend_ops [BACKENDS] [--dtype fp32,bf16] [--seed S] [--op NAME] "
          "[--large] [--verbose]\n  BACKENDS: comma-separated (also SRLM_TEST_BACKENDS; default cpu, and cuda-sim "
          "when built in)\n",
          msg);
  return 2;
}

static int parse_args(int argc, char **argv, opts *o) {
  const char *env = getenv("SRLM_TEST_BACKENDS"), *dts = getenv("SRLM_TEST_DTYPES"), *size = getenv("SRLM_TEST_SIZE");
  const srlm_backend_ops *sim = NULL;
  if (env && *env) snprintf(o->backends, sizeof o->backends, "%s", env);
  else
    snprintf(o->backends, sizeof o->backends, "cpu%s",
             srlm_backend_find("cuda-sim", &sim) == SRLM_OK ? ",cuda-sim" : "");
  snprintf(o->dtypes, sizeof o->dtypes, "%s", dts && *dts ? dts : "fp32,bf16");
  o->large = size && strcmp(size, "large") == 0;
  const char *quick = getenv("SRLM_TEST_QUICK");
  o->quick = quick && *quick && strcmp(quick, "0") != 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end = NULL;
    if (strcmp(a, "--large") == 0) o->large = 1;
    else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) o->verbose = 1;
    else if (strcmp(a, "--seed") == 0 && v && (o->seed = strtoull(v, &end, 10), end && !*end)) i++;
    else if (strcmp(a, "--dtype") == 0 && v) snprintf(o->dtypes, sizeof o->dtypes, "%s", v), i++;
    else if (strcmp(a, "--op") == 0 && v) o->only_op = v, i++;
    else if (a[0] != '-') snprintf(o->backends, sizeof o->backends, "%s", a);
    else return usage(strcmp(a, "--help") == 0 ? "help" : "unknown option or missing value");
  }
  if (o->only_op) {
    int found = 0;
    for (int i = 0; i < SRLM_OP_COUNT; i++) found |= strcmp(o->only_op, srlm_op_names[i]) == 0;
    if (!found) return usage("--op names no op of the list");
  }
  return 0;
}

/* Every case on one backend in one dtype. */
static void run_backend_dtype(srlm_backend *be, srlm_dtype dt, int pass, const opts *o) {
  tctx t = {.be = be, .cpu = srlm_backend_cpu(), .dt = dt, .is_ref = be == srlm_backend_cpu(), .dtype_pass = pass,
            .large = o->large, .verbose = o->verbose, .quick = o->quick, .seed = o->seed};
  fprintf(stderr, "== %s %s (rule base: %s%s%s)\n", be->name, srlm_dtype_name(dt), t.is_ref ? "naive fp32" : "cpu",
          ", cpu ISA ", srlm_backend_cpu_isa());
  for (int i = 0; i < SRLM_OP_COUNT; i++) {
    if (o->only_op && strcmp(o->only_op, srlm_op_names[i]) != 0) continue;
    if (!srlm_backend_has_op(be->ops, (srlm_op_id)i)) {
      fprintf(stderr, "  %-20s lacks\n", srlm_op_names[i]);
      continue;
    }
    t.op = i;
    t.shapes = t.checks = 0;
    t.worst = 0;
    const int fails = g_test_failures;
    srlm_timer tm;
    srlm_timer_start(&tm);
    k_cases[i](&t);
    shape_end(&t);
    if (t.shapes == 0) fprintf(stderr, "  %-20s (no dtype: runs with the first one)\n", srlm_op_names[i]);
    else
      fprintf(stderr, "  %-20s %3d shapes %5d checks  worst err/tol %.2f  %6.2f s%s\n", srlm_op_names[i], t.shapes,
              t.checks, t.worst, srlm_timer_elapsed(&tm), g_test_failures > fails ? "  FAILED" : "");
    if (g_test_failures > fails)
      fprintf(stderr, "  replay: test_backend_ops %s --dtype %s --op %s --seed %llu\n", be->name, srlm_dtype_name(dt),
              srlm_op_names[i], (unsigned long long)o->seed);
  }
}

int main(int argc, char **argv) {
  opts o = {.seed = 20240611u};
  const int rc = parse_args(argc, argv, &o);
  if (rc) return rc;
#if defined(SRLM_HAVE_CUDA) && SRLM_HAVE_CUDA
  if (srlm_backend_register(srlm_backend_cuda_ops()) != SRLM_OK)
    return fprintf(stderr, "test_backend_ops: %s\n", srlm_error_message()), 1;
#endif
  fprintf(stderr, "seed %llu (replay: --seed %llu), backends %s, dtypes %s%s\n", (unsigned long long)o.seed,
          (unsigned long long)o.seed, o.backends, o.dtypes, o.large ? ", large shapes" : "");
  check_references();
  srlm_dtype dts[4];
  int ndt = 0;
  char dlist[64];
  snprintf(dlist, sizeof dlist, "%s", o.dtypes);
  for (char *save = NULL, *d = strtok_r(dlist, ",", &save); d && ndt < 4; d = strtok_r(NULL, ",", &save))
    if (srlm_dtype_parse(d, "--dtype", &dts[ndt]) == SRLM_OK) ndt++;
    else return usage(srlm_error_message());
  char blist[256];
  snprintf(blist, sizeof blist, "%s", o.backends);
  for (char *save = NULL, *name = strtok_r(blist, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    srlm_backend *be = NULL;
    const srlm_status st = srlm_backend_open(name, -1, &be);
    EXPECT(st == SRLM_OK, "cannot open backend %s: %s", name, srlm_error_message());
    if (st != SRLM_OK) continue;
    report_lacks(be);
    for (int d = 0; d < ndt; d++) run_backend_dtype(be, dts[d], d, &o);
    const srlm_status cs = srlm_backend_close(be);
    EXPECT(cs == SRLM_OK, "closing backend %s: %s", name, srlm_error_message());
  }
  TEST_MAIN_END();
}
