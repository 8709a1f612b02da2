/* bench_backend: times every op of the backend op list (SRLM_BACKEND_OPS) at model-like shapes,
 * nccl-tests style.
 *
 *   bench_backend [--backend NAME] [--dtype fp32|bf16] [--size small|full|attention] [--op NAME]
 *                 [--case MODEL] [--iters N] [--warmup N] [--seed S] [--json PATH]
 *   bench_backend --list      the backends this program has
 *   bench_backend [--backend NAME] [--dtype fp32|bf16] --attention-io DIR
 *
 * --case runs only the rows whose model column is MODEL (one kernel under a profiler).
 * --attention-io runs no benchmark: the attention forward and backward of the cases listed in
 * DIR/cases.txt on the given inputs, outputs written next to them (attention_io, below;
 * bench/attention_error.py writes the inputs and holds the outputs against float64 and
 * PyTorch's SDPA).
 *
 * The table (k_shapes) has each op's shapes for a 0.5B model (Qwen2.5-0.5B: C 896, FF 4864,
 * NH/NKV/HS 14/2/64, V 151936) and a 7B one (Llama-3-8B: C 4096, FF 14336, 32/8/128, V
 * 128256): "full" at T = 4096 and 16384 tokens (a GPU; the LM head at T = 16384, C = 4096,
 * V = 128256 and 151936), "small" at T = 256 and 64 (a CPU). "attention": issue 9's sweep of
 * the attention kernels (k_attention, below; bench/attention_torch.py runs PyTorch's SDPA at
 * the same shapes and prints both side by side). bench_<op> per op of the
 * X-macro list reads a shape, allocates its tensors on the backend and says how many bytes
 * and flops one call moves and does (the formula is next to each); an op added to the
 * list without its bench_<op> does not link.
 *
 * One driver runs every case: inputs from Philox (seed printed; large tensors tile a block
 * of 2^20 draws), a first call, then a second from the same inputs that must give the same
 * bits, --warmup calls not timed, then --iters calls between two syncs (default: as many as
 * fill about TARGET_S = 0.3 s, at least 3, estimated from the warm-up and timed again when
 * the estimate was off by 3x); time is per call. GB/s counts the bytes an op must move at
 * least (inputs read once, outputs written once), for memory-bound ops; TFLOP/s the
 * multiply-adds x 2 of GEMM-like ops.
 *
 * Correctness, outside the timed loop: once per op, on its first "small" shape, the backend
 * and the CPU backend run the op from the same inputs and every output must agree within a
 * sanity bound (max |backend - cpu| <= 1e-4 x max |cpu| for fp32, 2^-6 = two bf16 ulps for
 * bf16). That bound only keeps a broken kernel from being timed; test_backend_ops holds
 * every op to the accuracy rule on many shapes. Exit status 1 when a check, a rerun or an
 * op fails; 2 on a usage error. The CUDA backend is there when built with SRLM_HAVE_CUDA=1. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "srlm/backend.h"
#include "srlm/core.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the table -------------------------------------------------------------------------- */

/* d[] per op:  matmul M N K trans_a trans_b accumulate (accumulate: the weight gradient, C fp32)
 *   rmsnorm_*, colsum N C | rope_* N H HS | attention_forward/backward B L NH NKV HS window
 *   non_causal (B sequences of L tokens; non_causal 0 or left out: causal) | attention_kv n L NH NKV HS q (n sequences of L cached
 *   positions, q new queries each) | kv_append n L NKV HS q | swiglu_* N FF |
 *   embedding_* N V C | add, cast, grad_sumsq, adamw, ema n | lmhead_* N C V */
typedef struct bshape {
  int op;
  const char *model;
  int64_t d[7];
} bshape;

#define OP(name) SRLM_OP_##name
/* 0.5B: Qwen2.5-0.5B; 7B: Llama-3-8B. Full: T = 4096 (0.5B) and 16384 (7B). */
static const bshape k_full[] = {
    {OP(matmul), "0.5B x W_up^T", {4096, 4864, 896, 0, 1, 0}},
    {OP(matmul), "0.5B dy W_down", {4096, 896, 4864, 0, 0, 0}},
    {OP(matmul), "0.5B dW_up += dy^T x", {4864, 896, 4096, 1, 0, 1}},
    {OP(matmul), "7B x W_up^T", {16384, 14336, 4096, 0, 1, 0}},
    {OP(matmul), "7B dy W_down", {16384, 4096, 14336, 0, 0, 0}},
    {OP(matmul), "7B dW_up += dy^T x", {14336, 4096, 16384, 1, 0, 1}},
    {OP(rmsnorm_forward), "0.5B", {4096, 896}},
    {OP(rmsnorm_forward), "7B", {16384, 4096}},
    {OP(rmsnorm_backward), "0.5B", {4096, 896}},
    {OP(rmsnorm_backward), "7B", {16384, 4096}},
    {OP(rope_forward), "0.5B q", {4096, 14, 64}},
    {OP(rope_forward), "7B q", {16384, 32, 128}},
    {OP(rope_backward), "0.5B q", {4096, 14, 64}},
    {OP(rope_backward), "7B q", {16384, 32, 128}},
    {OP(attention_forward), "0.5B", {2, 2048, 14, 2, 64, 0}},
    {OP(attention_forward), "7B", {4, 4096, 32, 8, 128, 0}},
    {OP(attention_backward), "0.5B", {2, 2048, 14, 2, 64, 0}},
    {OP(attention_backward), "7B", {4, 4096, 32, 8, 128, 0}},
    {OP(attention_kv), "0.5B decode", {64, 4096, 14, 2, 64, 1}},
    {OP(attention_kv), "7B decode", {64, 4096, 32, 8, 128, 1}},
    {OP(attention_kv), "7B prefill chunk", {4, 4096, 32, 8, 128, 512}},
    {OP(kv_append), "7B decode", {64, 4096, 8, 128, 1}},
    {OP(kv_append), "7B prefill", {4, 4096, 8, 128, 4096}},
    {OP(swiglu_forward), "0.5B", {4096, 4864}},
    {OP(swiglu_forward), "7B", {16384, 14336}},
    {OP(swiglu_backward), "0.5B", {4096, 4864}},
    {OP(swiglu_backward), "7B", {16384, 14336}},
    {OP(embedding_forward), "0.5B", {4096, 151936, 896}},
    {OP(embedding_forward), "7B", {16384, 128256, 4096}},
    {OP(embedding_backward), "0.5B", {4096, 151936, 896}},
    {OP(embedding_backward), "7B", {16384, 128256, 4096}},
    {OP(add), "0.5B residual", {4096 * 896}},
    {OP(add), "7B residual", {16384 * 4096}},
    {OP(colsum), "0.5B qkv bias", {4096, 1152}},
    {OP(colsum), "7B", {16384, 4096}},
    {OP(cast), "0.5B MLP weights", {3 * 896 * 4864}},
    {OP(cast), "7B MLP weights", {3 * 4096 * 14336}},
    {OP(lmhead_forward), "0.5B", {4096, 896, 151936}},
    {OP(lmhead_forward), "7B Llama-3 vocab", {16384, 4096, 128256}},
    {OP(lmhead_forward), "7B Qwen vocab", {16384, 4096, 151936}},
    {OP(lmhead_backward), "0.5B", {4096, 896, 151936}},
    {OP(lmhead_backward), "7B Llama-3 vocab", {16384, 4096, 128256}},
    {OP(lmhead_backward), "7B Qwen vocab", {16384, 4096, 151936}},
    {OP(grad_sumsq), "0.5B params", {494032768}},
    {OP(grad_sumsq), "7B layer", {218103808}},
    {OP(adamw), "0.5B params", {494032768}},
    {OP(adamw), "7B layer", {218103808}},
    {OP(ema), "0.5B params", {494032768}},
};
/* Small: the same widths at T = 256 (0.5B) and 64 (7B), fewer rows for the GEMMs and the LM
 * head, for the CPU, and attention at bench/model.sh's 100M training shape (4 x 256 tokens,
 * 12 / 4 heads of 64). The first shape of each op is also its correctness check (the CPU
 * runs it). */
static const bshape k_small[] = {
    {OP(matmul), "0.5B x W_up^T", {256, 4864, 896, 0, 1, 0}},
    {OP(matmul), "0.5B dW_up += dy^T x", {4864, 896, 256, 1, 0, 1}},
    {OP(matmul), "7B x W_up^T", {32, 14336, 4096, 0, 1, 0}},
    {OP(rmsnorm_forward), "0.5B", {256, 896}},
    {OP(rmsnorm_forward), "7B", {64, 4096}},
    {OP(rmsnorm_backward), "0.5B", {256, 896}},
    {OP(rmsnorm_backward), "7B", {64, 4096}},
    {OP(rope_forward), "0.5B q", {256, 14, 64}},
    {OP(rope_forward), "7B q", {64, 32, 128}},
    {OP(rope_backward), "0.5B q", {256, 14, 64}},
    {OP(rope_backward), "7B q", {64, 32, 128}},
    {OP(attention_forward), "0.5B", {1, 256, 14, 2, 64, 0}},
    {OP(attention_forward), "7B", {1, 64, 32, 8, 128, 0}},
    {OP(attention_forward), "0.5B non-causal", {1, 256, 14, 2, 64, 0, 1}},
    {OP(attention_backward), "0.5B", {1, 256, 14, 2, 64, 0}},
    {OP(attention_backward), "7B", {1, 64, 32, 8, 128, 0}},
    {OP(attention_backward), "0.5B non-causal", {1, 256, 14, 2, 64, 0, 1}},
    {OP(attention_forward), "100M train", {4, 256, 12, 4, 64, 0}}, /* bench/model.sh's 100M step, one layer */
    {OP(attention_backward), "100M train", {4, 256, 12, 4, 64, 0}},
    {OP(attention_kv), "0.5B decode", {8, 512, 14, 2, 64, 1}},
    {OP(attention_kv), "7B decode", {8, 512, 32, 8, 128, 1}},
    {OP(kv_append), "7B decode", {8, 512, 8, 128, 1}},
    {OP(kv_append), "7B prefill", {2, 512, 8, 128, 256}},
    {OP(swiglu_forward), "0.5B", {256, 4864}},
    {OP(swiglu_forward), "7B", {64, 14336}},
    {OP(swiglu_backward), "0.5B", {256, 4864}},
    {OP(swiglu_backward), "7B", {64, 14336}},
    {OP(embedding_forward), "0.5B", {256, 151936, 896}},
    {OP(embedding_backward), "0.5B", {256, 151936, 896}},
    {OP(add), "0.5B residual", {256 * 896}},
    {OP(add), "7B residual", {64 * 4096}},
    {OP(colsum), "0.5B qkv bias", {256, 1152}},
    {OP(cast), "0.5B MLP weights", {3 * 896 * 4864}},
    {OP(lmhead_forward), "0.5B", {16, 896, 151936}}, /* (a 7B head's dW alone is 2 GB) */
    {OP(lmhead_backward), "0.5B", {16, 896, 151936}},
    {OP(grad_sumsq), "0.5B MLP", {3 * 896 * 4864}},
    {OP(adamw), "0.5B MLP", {3 * 896 * 4864}},
    {OP(ema), "0.5B MLP", {3 * 896 * 4864}},
};

/* Issue 9's attention sweep (FlashAttention-2's benchmark): bf16, causal and not (the cases
 * named "non-causal"), head dim 64 (32 heads) and 128 (16 heads): model width 2048, 16k
 * tokens per batch at every sequence length from 512 to 16k, forward and backward. TFLOP/s
 * counts 4 x visible pairs x HS x NH (2.5x for the backward): FlashAttention's count, 4 L^2
 * HS NH non-causal, the causal one 4 L^2 HS NH / 2 up to the diagonal's L / 2 pairs. Decode: one new query per sequence, batch
 * 1/16/64/256 at 1k/8k/32k cached tokens, Llama-3-8B's heads (32 over 8 kv heads, HS 128):
 * GB/s against the card's copy bandwidth is the share of the bandwidth bound. The model
 * column names the case for attention_torch.py. */
static const bshape k_attention[] = {
#define FA_CASES(op, HS, NH, NC, name)                                                                      \
  {OP(op), "fa HS=" #HS " L=512" name, {32, 512, NH, NH, HS, 0, NC}},                                         \
      {OP(op), "fa HS=" #HS " L=1k" name, {16, 1024, NH, NH, HS, 0, NC}},                                     \
      {OP(op), "fa HS=" #HS " L=2k" name, {8, 2048, NH, NH, HS, 0, NC}},                                      \
      {OP(op), "fa HS=" #HS " L=4k" name, {4, 4096, NH, NH, HS, 0, NC}},                                      \
      {OP(op), "fa HS=" #HS " L=8k" name, {2, 8192, NH, NH, HS, 0, NC}},                                      \
      {OP(op), "fa HS=" #HS " L=16k" name, {1, 16384, NH, NH, HS, 0, NC}}
    FA_CASES(attention_forward, 64, 32, 0, ""),  FA_CASES(attention_forward, 128, 16, 0, ""),
    FA_CASES(attention_forward, 64, 32, 1, " non-causal"),  FA_CASES(attention_forward, 128, 16, 1, " non-causal"),
    FA_CASES(attention_backward, 64, 32, 0, ""), FA_CASES(attention_backward, 128, 16, 0, ""),
    FA_CASES(attention_backward, 64, 32, 1, " non-causal"), FA_CASES(attention_backward, 128, 16, 1, " non-causal"),
#undef FA_CASES
#define DECODE_CASES(n)                                                                                      \
  {OP(attention_kv), "decode b=" #n " L=1k", {n, 1024, 32, 8, 128, 1}},                                       \
      {OP(attention_kv), "decode b=" #n " L=8k", {n, 8192, 32, 8, 128, 1}},                                   \
      {OP(attention_kv), "decode b=" #n " L=32k", {n, 32768, 32, 8, 128, 1}}
    DECODE_CASES(1), DECODE_CASES(16), DECODE_CASES(64), DECODE_CASES(256),
#undef DECODE_CASES
};
#undef OP

/* ---- a case's buffers and the run driver ---------------------------------------------------- */

enum { E_F32, E_BF16, E_I32, E_F64 };
static const size_t k_esize[] = {4, 2, 4, 8};
enum { MAX_BUFS = 16, POOL = 1 << 20 };
enum { MODE_CHECK, MODE_TIME };
#define TARGET_S 0.3     /* seconds of timed calls per case when --iters is not given */
#define MAX_ITERS 100000

typedef struct bbuf {
  void *dev;
  void *host;  /* kept for outputs with start values (restored before the rerun) */
  size_t n;
  int e, out;
} bbuf;

typedef struct bench {
  srlm_backend *be;
  srlm_dtype dt;
  const bshape *s;
  uint64_t seed;
  uint32_t purpose;
  const float *pool;   /* POOL draws in [0, 1) */
  int mode, iters_opt, warmup;
  bbuf buf[MAX_BUFS];
  int nbuf;
  void *first[MAX_BUFS];  /* outputs after the first call (raw) */
  double bytes, flops;    /* per call */
  char shape[128];
  /* the run */
  int step, t0, iters, rerun_ok; /* t0: the step of the first timed call */
  double sec;
  srlm_status st;
  srlm_timer tm;
} bench;

static int e_of(srlm_dtype dt) { return dt == SRLM_BF16 ? E_BF16 : E_F32; }
static size_t dsize(const bench *b) { return srlm_dtype_size(b->dt); }

static void fail_st(bench *b, srlm_status st) {
  if (b->st == SRLM_OK && st != SRLM_OK) {
    b->st = st;
    fprintf(stderr, "bench_backend: %s: %s\n", srlm_op_names[b->s->op], srlm_error_message());
  }
}

/* A backend buffer of n elements of type e, filled with values in [lo, hi) (tiled from the
 * draw pool at an offset of its own) or, for int32, integers in [lo, hi); out: read back
 * after the first two calls (with its contents kept and restored when `keep`). */
static void *buf_new(bench *b, size_t n, int e, double lo, double hi, int out, int keep, int fill) {
  if (b->nbuf == MAX_BUFS) {
    fail_st(b, srlm_error(SRLM_ERR_INTERNAL, "bench_backend", "more than %d buffers", MAX_BUFS));
    return NULL;
  }
  bbuf *x = &b->buf[b->nbuf++];
  memset(x, 0, sizeof *x);
  x->n = n, x->e = e, x->out = out;
  const size_t bytes = (n ? n : 1) * k_esize[e];
  void *h = srlm_xcalloc(1, bytes);
  const size_t off = (size_t)srlm_rng_bits(b->seed, b->purpose++, 0, 0, 3).v[0] % POOL;
  for (size_t i = 0; fill && i < n; i++) {
    const double u = b->pool[(i + off) % POOL];
    if (e == E_I32) ((int32_t *)h)[i] = (int32_t)(lo + (hi - lo) * u);
    else if (e == E_F64) ((double *)h)[i] = lo + (hi - lo) * u;
    else if (e == E_F32) ((float *)h)[i] = (float)(lo + (hi - lo) * u);
    else ((uint16_t *)h)[i] = srlm_f32_to_bf16((float)(lo + (hi - lo) * u));
  }
  srlm_status st = srlm_backend_alloc(b->be, &x->dev, bytes);
  if (st == SRLM_OK) st = srlm_backend_copy_h2d(b->be, x->dev, h, bytes);
  fail_st(b, st);
  if (keep) x->host = h;
  else free(h);
  return x->dev;
}

/* Inputs; outputs the op overwrites (zeros); outputs with start values (accumulated, or
 * updated in place); int32 ids in [lo, hi). */
static void *IN(bench *b, size_t n, int e, double lo, double hi) { return buf_new(b, n, e, lo, hi, 0, 0, 1); }
static void *OUT(bench *b, size_t n, int e) { return buf_new(b, n, e, 0, 0, 1, 0, 0); }
static void *ACC(bench *b, size_t n, int e, double lo, double hi) { return buf_new(b, n, e, lo, hi, 1, 1, 1); }
static int32_t *IDS(bench *b, size_t n, int64_t lo, int64_t hi) {
  return buf_new(b, n, E_I32, (double)lo, (double)hi, 0, 0, 1);
}
/* An int32 input with the given values. */
static int32_t *IDS_OF(bench *b, const int32_t *v, size_t n) {
  int32_t *d = buf_new(b, n, E_I32, 0, 0, 0, 0, 0);
  if (d && n) fail_st(b, srlm_backend_copy_h2d(b->be, d, v, n * sizeof *v));
  return d;
}

static void shape_str(bench *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->shape, sizeof b->shape, fmt, ap);
  va_end(ap);
}

static void download(bench *b, int slot_first) {
  for (int i = 0; i < b->nbuf && b->st == SRLM_OK; i++) {
    bbuf *x = &b->buf[i];
    if (!x->out || !x->n) continue;
    const size_t bytes = x->n * k_esize[x->e];
    void *h = srlm_xmalloc(bytes);
    fail_st(b, srlm_backend_copy_d2h(b->be, h, x->dev, bytes));
    if (slot_first) {
      b->first[i] = h;
    } else {
      if (b->st == SRLM_OK && memcmp(h, b->first[i], bytes) != 0) b->rerun_ok = 0;
      free(h);
    }
  }
}

/* Called before each call of the op: returns 1 to call it again, 0 when the case is done.
 * MODE_CHECK: one call, outputs kept. MODE_TIME: a call, outputs kept; start values
 * restored and a second call that must give the same bits; warm-up; the timed calls. */
static int bench_step(bench *b) {
  const int k = b->step++;
  if (b->st != SRLM_OK) return 0;
  if (k == 0) return 1;
  if (k == 1) {
    download(b, 1);
    if (b->mode == MODE_CHECK) return 0;
    for (int i = 0; i < b->nbuf && b->st == SRLM_OK; i++)
      if (b->buf[i].host)
        fail_st(b, srlm_backend_copy_h2d(b->be, b->buf[i].dev, b->buf[i].host, b->buf[i].n * k_esize[b->buf[i].e]));
    return 1;
  }
  const int warm = b->warmup > 0 ? b->warmup : 1;
  if (k == 2) {
    download(b, 0);
    fail_st(b, srlm_backend_sync(b->be));
    srlm_timer_start(&b->tm);
  }
  if (k < 2 + warm) return b->st == SRLM_OK;
  if (k == 2 + warm) { /* the warm-up calls' time sets the count when not given */
    fail_st(b, srlm_backend_sync(b->be));
    const double per = srlm_timer_elapsed(&b->tm) / warm;
    b->iters = b->iters_opt > 0 ? b->iters_opt : (int)fmin(MAX_ITERS, fmax(3, ceil(TARGET_S / fmax(per, 1e-9))));
    b->t0 = k;
    srlm_timer_start(&b->tm);
  }
  if (k < b->t0 + b->iters) return b->st == SRLM_OK;
  fail_st(b, srlm_backend_sync(b->be));
  const double sec = srlm_timer_elapsed(&b->tm);
  if (b->iters_opt == 0 && sec < TARGET_S / 3 && b->iters < MAX_ITERS && b->st == SRLM_OK) {
    /* the warm-up overestimated a call (first-touch, clocks ramping): time again, longer */
    b->iters = (int)fmin(MAX_ITERS, ceil(b->iters * TARGET_S / fmax(sec, 1e-9)));
    b->t0 = k;
    srlm_timer_start(&b->tm);
    return 1;
  }
  b->sec = sec / b->iters;
  return 0;
}

/* Runs `op` with parameters p under the driver. */
#define RUN(b, op, p)                                                                 \
  do {                                                                                \
    while (bench_step(b)) {                                                           \
      srlm_status run_st_ = SRLM_OP((b)->be, op, (p));                                \
      if (run_st_ != SRLM_OK) fail_st((b), run_st_);                                  \
    }                                                                                 \
  } while (0)

static void bench_free(bench *b) {
  for (int i = 0; i < b->nbuf; i++) {
    if (b->buf[i].dev) (void)srlm_backend_free(b->be, b->buf[i].dev);
    free(b->buf[i].host);
    free(b->first[i]);
    b->first[i] = NULL;
  }
  b->nbuf = 0;
}

/* ---- one bench_<op> per op of the list ---------------------------------------------------- */

typedef void (*bench_fn)(bench *b);
static const int64_t *dims(const bench *b) { return b->s->d; }

static void bench_matmul(bench *b) {
  const int64_t *d = dims(b), M = d[0], N = d[1], K = d[2];
  const int ta = (int)d[3], tb = (int)d[4], acc = (int)d[5];
  const srlm_dtype cdt = acc ? SRLM_F32 : b->dt; /* the weight gradient accumulates in fp32 */
  srlm_matmul_params p = {.a = IN(b, (size_t)(M * K), e_of(b->dt), -1, 1), .b = IN(b, (size_t)(K * N), e_of(b->dt), -1, 1),
                          .c = acc ? ACC(b, (size_t)(M * N), E_F32, -1, 1) : OUT(b, (size_t)(M * N), e_of(cdt)),
                          .M = M, .N = N, .K = K, .trans_a = ta, .trans_b = tb, .accumulate = acc, .dtype = b->dt,
                          .c_dtype = cdt};
  shape_str(b, "M=%lld N=%lld K=%lld%s%s%s", (long long)M, (long long)N, (long long)K, ta ? " ta" : "",
            tb ? " tb" : "", acc ? " acc C=fp32" : "");
  b->flops = 2.0 * M * N * K; /* a multiply-add per (m, n, k) */
  RUN(b, matmul, p);
}

static void bench_rmsnorm_forward(bench *b) {
  const int64_t N = dims(b)[0], C = dims(b)[1];
  srlm_rmsnorm_params p = {.x = IN(b, (size_t)(N * C), e_of(b->dt), -2, 2), .w = IN(b, (size_t)C, e_of(b->dt), 0.5, 1.5),
                           .out = OUT(b, (size_t)(N * C), e_of(b->dt)), .rstd = OUT(b, (size_t)N, E_F32), .N = N, .C = C,
                           .eps = 1e-6f, .dtype = b->dt};
  shape_str(b, "N=%lld C=%lld", (long long)N, (long long)C);
  b->bytes = (2.0 * N * C + C) * dsize(b) + 4.0 * N; /* x in, out, w; rstd */
  RUN(b, rmsnorm_forward, p);
}

static void bench_rmsnorm_backward(bench *b) {
  const int64_t N = dims(b)[0], C = dims(b)[1];
  srlm_rmsnorm_bwd_params p = {.dy = IN(b, (size_t)(N * C), e_of(b->dt), -1, 1),
                               .x = IN(b, (size_t)(N * C), e_of(b->dt), -2, 2),
                               .w = IN(b, (size_t)C, e_of(b->dt), 0.5, 1.5), .rstd = IN(b, (size_t)N, E_F32, 0.5, 1.5),
                               .dx = OUT(b, (size_t)(N * C), e_of(b->dt)), .dw = ACC(b, (size_t)C, E_F32, -1, 1),
                               .N = N, .C = C, .dtype = b->dt};
  shape_str(b, "N=%lld C=%lld", (long long)N, (long long)C);
  b->bytes = (3.0 * N * C + C) * dsize(b) + 4.0 * N + 8.0 * C; /* dy, x in, dx out, w; rstd; dw read and written */
  RUN(b, rmsnorm_backward, p);
}

static void rope_run(bench *b, int backward) {
  const int64_t N = dims(b)[0], H = dims(b)[1], HS = dims(b)[2];
  srlm_rope_params p = {.x = ACC(b, (size_t)(N * H * HS), e_of(b->dt), -1, 1), .pos = IDS(b, (size_t)N, 0, 32768),
                        .inv_freq = IN(b, (size_t)(HS / 2), E_F32, 1e-4, 1), .N = N, .H = H, .HS = HS, .dtype = b->dt};
  shape_str(b, "N=%lld H=%lld HS=%lld", (long long)N, (long long)H, (long long)HS);
  b->bytes = 2.0 * N * H * HS * dsize(b) + 4.0 * N; /* x read and written in place; positions */
  if (backward) RUN(b, rope_backward, p);
  else RUN(b, rope_forward, p);
}
static void bench_rope_forward(bench *b) { rope_run(b, 0); }
static void bench_rope_backward(bench *b) { rope_run(b, 1); }

/* Query-key pairs a causal (windowed) sequence of L tokens scores. */
static double causal_pairs(int64_t L, int64_t W) {
  return W > 0 && W < L ? (double)W * (W + 1) / 2 + (double)(L - W) * W : (double)L * (L + 1) / 2;
}
/* And a non-causal one: each query sees its causal keys and as many ahead, itself once
 * (L^2 without a window). */
static double pairs(int64_t L, int64_t W, int non_causal) {
  return non_causal ? 2.0 * causal_pairs(L, W) - (double)L : causal_pairs(L, W);
}

static void attention_run(bench *b, int backward) {
  const int64_t *d = dims(b), B = d[0], L = d[1], NH = d[2], NKV = d[3], HS = d[4], W = d[5], T = B * L;
  const int NC = (int)d[6];
  int32_t *cu = srlm_xmalloc((size_t)(B + 1) * sizeof *cu);
  for (int64_t i = 0; i <= B; i++) cu[i] = (int32_t)(i * L);
  const size_t nq = (size_t)(T * NH * HS), nkv = (size_t)(T * NKV * HS);
  const int e = e_of(b->dt);
  const float scale = 1.0f / sqrtf((float)HS);
  shape_str(b, "B=%lld L=%lld NH=%lld NKV=%lld HS=%lld W=%lld%s", (long long)B, (long long)L, (long long)NH,
            (long long)NKV, (long long)HS, (long long)W, NC ? " non-causal" : "");
  /* the forward: S = Q K^T and O = P V, 2 flops per multiply-add, per visible pair and head
   * dim; the backward recomputes S and forms dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q:
   * 5 products (flash-attention's count, 2.5x the forward) */
  b->flops = (backward ? 10.0 : 4.0) * B * pairs(L, W, NC) * NH * HS;
  if (!backward) {
    srlm_attention_params p = {.q = IN(b, nq, e, -2, 2), .k = IN(b, nkv, e, -2, 2), .v = IN(b, nkv, e, -1, 1),
                               .out = OUT(b, nq, e), .lse = OUT(b, (size_t)(T * NH), E_F32),
                               .cu_seqlens = IDS_OF(b, cu, (size_t)B + 1), .B = (int)B, .T = T, .NH = NH, .NKV = NKV,
                               .HS = HS, .window = W, .scale = scale, .non_causal = NC, .dtype = b->dt};
    RUN(b, attention_forward, p);
  } else {
    /* lse of about log(L) keeps P = exp(scale s - lse) in range for these inputs */
    srlm_attention_bwd_params p = {.q = IN(b, nq, e, -1, 1), .k = IN(b, nkv, e, -1, 1), .v = IN(b, nkv, e, -1, 1),
                                   .dout = IN(b, nq, e, -1, 1), .out = IN(b, nq, e, -0.1, 0.1),
                                   .lse = IN(b, (size_t)(T * NH), E_F32, log((double)L), log((double)L) + 1),
                                   .dq = OUT(b, nq, e), .dk = OUT(b, nkv, e), .dv = OUT(b, nkv, e),
                                   .cu_seqlens = IDS_OF(b, cu, (size_t)B + 1), .B = (int)B, .T = T, .NH = NH,
                                   .NKV = NKV, .HS = HS, .window = W, .scale = scale, .non_causal = NC,
                                   .dtype = b->dt};
    RUN(b, attention_backward, p);
  }
  free(cu);
}
static void bench_attention_forward(bench *b) { attention_run(b, 0); }
static void bench_attention_backward(bench *b) { attention_run(b, 1); }

/* n sequences in slots 0..n-1, each holding L positions after q new rows. */
static void kv_arrays(bench *b, int64_t n, int64_t L, int64_t q, int32_t **slot, int32_t **cu, int32_t **len) {
  int32_t *s = srlm_xmalloc((size_t)n * 4), *c = srlm_xmalloc((size_t)(n + 1) * 4), *l = srlm_xmalloc((size_t)n * 4);
  c[0] = 0;
  for (int64_t i = 0; i < n; i++) s[i] = (int32_t)i, c[i + 1] = (int32_t)((i + 1) * q), l[i] = (int32_t)L;
  *slot = IDS_OF(b, s, (size_t)n);
  *cu = IDS_OF(b, c, (size_t)n + 1);
  *len = IDS_OF(b, l, (size_t)n);
  free(s), free(c), free(l);
}

static void bench_attention_kv(bench *b) {
  const int64_t *d = dims(b), n = d[0], L = d[1], NH = d[2], NKV = d[3], HS = d[4], q = d[5];
  const size_t ncache = (size_t)(n * L * NKV * HS), nq = (size_t)(n * q * NH * HS);
  const int e = e_of(b->dt);
  int32_t *slot, *cu, *len;
  kv_arrays(b, n, L, q, &slot, &cu, &len);
  srlm_attention_kv_params p = {.q = IN(b, nq, e, -2, 2), .k_cache = IN(b, ncache, e, -2, 2),
                                .v_cache = IN(b, ncache, e, -1, 1), .out = OUT(b, nq, e), .slot = slot, .cu_q = cu,
                                .kv_len = len, .n = (int)n, .NQ = n * q, .NH = NH, .NKV = NKV, .HS = HS,
                                .max_slots = n, .max_len = L, .scale = 1.0f / sqrtf((float)HS), .dtype = b->dt};
  shape_str(b, "n=%lld L=%lld q=%lld NH=%lld NKV=%lld HS=%lld", (long long)n, (long long)L, (long long)q, (long long)NH,
            (long long)NKV, (long long)HS);
  /* memory-bound when q is small: the cached keys and values read once, queries in, out */
  b->bytes = (2.0 * ncache + 2.0 * nq) * dsize(b);
  b->flops = 4.0 * n * (causal_pairs(L, 0) - causal_pairs(L - q, 0)) * NH * HS; /* q.k and p v per visible pair */
  RUN(b, attention_kv, p);
}

static void bench_kv_append(bench *b) {
  const int64_t *d = dims(b), n = d[0], L = d[1], NKV = d[2], HS = d[3], q = d[4];
  const size_t ncache = (size_t)(n * L * NKV * HS), nnew = (size_t)(n * q * NKV * HS);
  const int e = e_of(b->dt);
  int32_t *slot, *cu, *len;
  kv_arrays(b, n, L, q, &slot, &cu, &len);
  srlm_kv_append_params p = {.k = IN(b, nnew, e, -1, 1), .v = IN(b, nnew, e, -1, 1), .k_cache = ACC(b, ncache, e, -1, 1),
                             .v_cache = ACC(b, ncache, e, -1, 1), .slot = slot, .cu_q = cu, .kv_len = len, .n = (int)n,
                             .NQ = n * q, .NKV = NKV, .HS = HS, .max_slots = n, .max_len = L, .dtype = b->dt};
  shape_str(b, "n=%lld L=%lld q=%lld NKV=%lld HS=%lld", (long long)n, (long long)L, (long long)q, (long long)NKV,
            (long long)HS);
  b->bytes = 4.0 * nnew * dsize(b); /* new keys and values read, written into the caches */
  RUN(b, kv_append, p);
}

static void bench_swiglu_forward(bench *b) {
  const int64_t N = dims(b)[0], FF = dims(b)[1];
  const size_t n = (size_t)(N * FF);
  srlm_swiglu_params p = {.gate = IN(b, n, e_of(b->dt), -6, 6), .up = IN(b, n, e_of(b->dt), -2, 2),
                          .h = OUT(b, n, e_of(b->dt)), .N = N, .FF = FF, .dtype = b->dt};
  shape_str(b, "N=%lld FF=%lld", (long long)N, (long long)FF);
  b->bytes = 3.0 * n * dsize(b); /* gate, up in; h out */
  RUN(b, swiglu_forward, p);
}

static void bench_swiglu_backward(bench *b) {
  const int64_t N = dims(b)[0], FF = dims(b)[1];
  const size_t n = (size_t)(N * FF);
  const int e = e_of(b->dt);
  srlm_swiglu_bwd_params p = {.dh = IN(b, n, e, -1, 1), .gate = IN(b, n, e, -6, 6), .up = IN(b, n, e, -2, 2),
                              .dgate = OUT(b, n, e), .dup = OUT(b, n, e), .N = N, .FF = FF, .dtype = b->dt};
  shape_str(b, "N=%lld FF=%lld", (long long)N, (long long)FF);
  b->bytes = 5.0 * n * dsize(b); /* dh, gate, up in; dgate, dup out */
  RUN(b, swiglu_backward, p);
}

static void bench_embedding_forward(bench *b) {
  const int64_t N = dims(b)[0], V = dims(b)[1], C = dims(b)[2];
  srlm_embedding_params p = {.table = IN(b, (size_t)(V * C), e_of(b->dt), -1, 1), .ids = IDS(b, (size_t)N, 0, V),
                             .out = OUT(b, (size_t)(N * C), e_of(b->dt)), .N = N, .V = V, .C = C, .dtype = b->dt};
  shape_str(b, "N=%lld V=%lld C=%lld", (long long)N, (long long)V, (long long)C);
  b->bytes = 2.0 * N * C * dsize(b) + 4.0 * N; /* the gathered rows read, written; ids */
  RUN(b, embedding_forward, p);
}

static void bench_embedding_backward(bench *b) {
  const int64_t N = dims(b)[0], V = dims(b)[1], C = dims(b)[2];
  srlm_embedding_bwd_params p = {.dout = IN(b, (size_t)(N * C), e_of(b->dt), -1, 1), .ids = IDS(b, (size_t)N, 0, V),
                                 .dtable = ACC(b, (size_t)(V * C), E_F32, -1, 1), .N = N, .V = V, .C = C,
                                 .dtype = b->dt, .table_dtype = SRLM_F32};
  shape_str(b, "N=%lld V=%lld C=%lld table fp32", (long long)N, (long long)V, (long long)C);
  b->bytes = N * C * (dsize(b) + 8.0) + 4.0 * N; /* dout read; a table row read and written per id (at most) */
  RUN(b, embedding_backward, p);
}

static void bench_add(bench *b) {
  const size_t n = (size_t)dims(b)[0];
  srlm_add_params p = {.a = IN(b, n, e_of(b->dt), -1, 1), .b = IN(b, n, e_of(b->dt), -1, 1),
                       .out = OUT(b, n, e_of(b->dt)), .n = (int64_t)n, .dtype = b->dt};
  shape_str(b, "n=%zu", n);
  b->bytes = 3.0 * n * dsize(b); /* a, b in; out */
  RUN(b, add, p);
}

static void bench_colsum(bench *b) {
  const int64_t N = dims(b)[0], C = dims(b)[1];
  srlm_colsum_params p = {.x = IN(b, (size_t)(N * C), e_of(b->dt), -1, 1), .out = ACC(b, (size_t)C, E_F32, -1, 1),
                          .N = N, .C = C, .dtype = b->dt};
  shape_str(b, "N=%lld C=%lld", (long long)N, (long long)C);
  b->bytes = (double)N * C * dsize(b) + 8.0 * C; /* x in; out read and written */
  RUN(b, colsum, p);
}

static void bench_cast(bench *b) {
  const size_t n = (size_t)dims(b)[0];
  const srlm_dtype odt = b->dt == SRLM_BF16 ? SRLM_F32 : SRLM_BF16; /* to the other type */
  srlm_cast_params p = {.x = IN(b, n, e_of(b->dt), -4, 4), .out = OUT(b, n, e_of(odt)), .n = (int64_t)n,
                        .dtype = b->dt, .out_dtype = odt};
  shape_str(b, "n=%zu %s -> %s", n, srlm_dtype_name(b->dt), srlm_dtype_name(odt));
  b->bytes = (double)n * (srlm_dtype_size(b->dt) + srlm_dtype_size(odt)); /* in, out */
  RUN(b, cast, p);
}

static void lmhead_run(bench *b, int backward) {
  const int64_t N = dims(b)[0], C = dims(b)[1], V = dims(b)[2];
  const int e = e_of(b->dt);
  shape_str(b, "N=%lld C=%lld V=%lld", (long long)N, (long long)C, (long long)V);
  /* the logits' GEMM, 2 N C V; the backward recomputes them and forms dx = dz W and
   * dW += dz^T x: 3 products */
  b->flops = (backward ? 6.0 : 2.0) * N * C * V;
  if (!backward) {
    srlm_lmhead_params p = {.x = IN(b, (size_t)(N * C), e, -1, 1), .w = IN(b, (size_t)(V * C), e, -0.05, 0.05),
                            .targets = IDS(b, (size_t)N, 0, V), .logp = OUT(b, (size_t)N, E_F32),
                            .lse = OUT(b, (size_t)N, E_F32), .N = N, .C = C, .V = V, .dtype = b->dt};
    RUN(b, lmhead_forward, p);
  } else {
    /* lse of about log(V): the uniform distribution's, near these small logits' */
    srlm_lmhead_bwd_params p = {.x = IN(b, (size_t)(N * C), e, -1, 1), .w = IN(b, (size_t)(V * C), e, -0.05, 0.05),
                                .targets = IDS(b, (size_t)N, 0, V),
                                .lse = IN(b, (size_t)N, E_F32, log((double)V), log((double)V) + 0.1),
                                .dlogp = IN(b, (size_t)N, E_F32, -1, 1), .dx = OUT(b, (size_t)(N * C), e),
                                .dw = ACC(b, (size_t)(V * C), E_F32, -1, 1), .N = N, .C = C, .V = V, .dtype = b->dt};
    RUN(b, lmhead_backward, p);
  }
}
static void bench_lmhead_forward(bench *b) { lmhead_run(b, 0); }
static void bench_lmhead_backward(bench *b) { lmhead_run(b, 1); }

static void bench_grad_sumsq(bench *b) {
  const size_t n = (size_t)dims(b)[0];
  srlm_sumsq_params p = {.x = IN(b, n, E_F32, -1, 1), .out = ACC(b, 1, E_F64, 0, 0), .n = (int64_t)n};
  shape_str(b, "n=%zu fp32", n);
  b->bytes = 4.0 * n; /* x read */
  RUN(b, grad_sumsq, p);
}

static void bench_adamw(bench *b) {
  const size_t n = (size_t)dims(b)[0];
  srlm_adamw_params p = {.master = ACC(b, n, E_F32, -1, 1), .m = ACC(b, n, E_F32, -1e-2, 1e-2),
                         .v = ACC(b, n, E_F32, 0, 1e-4), .grad = IN(b, n, E_F32, -0.1, 0.1),
                         .param = b->dt == SRLM_BF16 ? OUT(b, n, E_BF16) : NULL, .n = (int64_t)n, .grad_scale = 0.5f,
                         .decay_mul = 0.9999f, .one_minus_beta1 = 0.1f, .beta2 = 0.95f, .one_minus_beta2 = 0.05f,
                         .step_size = 1e-3f, .bc2_sqrt = 0.3f, .eps = 1e-8f, .dtype = b->dt};
  shape_str(b, "n=%zu%s", n, p.param ? " +bf16 copy" : " fp32 master only");
  /* master, m, v read and written; grad read; the compute copy written */
  b->bytes = 28.0 * n + (p.param ? 2.0 * n : 0.0);
  RUN(b, adamw, p);
}

static void bench_ema(bench *b) {
  const size_t n = (size_t)dims(b)[0];
  srlm_ema_params p = {.ema = ACC(b, n, E_F32, -1, 1), .x = IN(b, n, E_F32, -1, 1),
                       .param = b->dt == SRLM_BF16 ? OUT(b, n, E_BF16) : NULL, .n = (int64_t)n, .mu = 0.01,
                       .dtype = b->dt};
  shape_str(b, "n=%zu mu=0.01%s", n, p.param ? " +bf16 copy" : " fp32 master only");
  /* the anchor's master read and written, the policy's read; the compute copy written */
  b->bytes = 12.0 * n + (p.param ? 2.0 * n : 0.0);
  RUN(b, ema, p);
}

/* sample, pref_loss, grpo_loss: their benches come with their CPU twins (other branches). */
static void bench_pending(bench *b) { shape_str(b, "(no bench case yet)"); }
static void bench_sample(bench *b) { bench_pending(b); }
static void bench_pref_loss(bench *b) { bench_pending(b); }
static void bench_grpo_loss(bench *b) { bench_pending(b); }

/* X(op, type) -> bench_<op>: an op of the list without one does not compile. */
#define BENCH_ENTRY_(op, type) [SRLM_OP_##op] = bench_##op,
static const bench_fn k_bench[SRLM_OP_COUNT] = {SRLM_BACKEND_OPS(BENCH_ENTRY_)};
#undef BENCH_ENTRY_

/* ---- correctness against the CPU ------------------------------------------------------------ */

/* The op on its check shape on `be`; outputs left in b->first (the caller frees with
 * bench_free). */
static void run_check(bench *b, srlm_backend *be, const bshape *s, uint32_t purpose) {
  b->be = be, b->s = s, b->mode = MODE_CHECK, b->step = 0, b->st = SRLM_OK, b->purpose = purpose;
  b->bytes = b->flops = 0;
  k_bench[s->op](b);
}

/* Every output of the backend's run within the sanity bound of the CPU's; prints what was
 * off. */
static int outputs_agree(const bench *cpu, const bench *got, const char *op) {
  const double tol = got->dt == SRLM_BF16 ? ldexp(1.0, -6) : 1e-4;
  int ok = 1;
  for (int i = 0; i < got->nbuf; i++) {
    const bbuf *x = &got->buf[i];
    if (!x->out || !x->n) continue;
    double maxref = 0, maxdiff = 0;
    size_t at = 0, nan_off = 0;
    for (size_t j = 0; j < x->n; j++) {
      double a, c;
      if (x->e == E_F32) a = ((const float *)got->first[i])[j], c = ((const float *)cpu->first[i])[j];
      else if (x->e == E_BF16)
        a = srlm_bf16_to_f32(((const uint16_t *)got->first[i])[j]), c = srlm_bf16_to_f32(((const uint16_t *)cpu->first[i])[j]);
      else if (x->e == E_F64) a = ((const double *)got->first[i])[j], c = ((const double *)cpu->first[i])[j];
      else a = ((const int32_t *)got->first[i])[j], c = ((const int32_t *)cpu->first[i])[j];
      if (isnan(a) != isnan(c)) nan_off++;
      if (isnan(a) || isnan(c)) continue;
      maxref = fmax(maxref, fabs(c));
      if (fabs(a - c) > maxdiff) maxdiff = fabs(a - c), at = j;
    }
    if (nan_off || maxdiff > tol * maxref) {
      ok = 0;
      fprintf(stderr, "bench_backend: %s: output %d differs from the cpu by %.3e at [%zu] (bound %.1e x max |cpu| %.3e)%s\n",
              op, i, maxdiff, at, tol, maxref, nan_off ? "; NaN where the other is not" : "");
    }
  }
  return ok;
}

/* ---- --attention-io: the ops on inputs from files --------------------------------------------- */

/* DIR/cases.txt holds one case a line, "NAME B L NH NKV HS window non_causal" (B sequences of
 * L tokens; '#' starts a comment line). Per case it reads DIR/NAME.q (T, NH, HS), NAME.k and
 * NAME.v (T, NKV, HS) and NAME.dout (T, NH, HS), T = B L, raw little-endian elements of
 * --dtype; runs attention_forward (scale 1/sqrt(HS)) and then attention_backward from dout
 * and that forward's out and lse; writes NAME.out, NAME.dq, NAME.dk, NAME.dv (dtype) and
 * NAME.lse (T, NH) fp32. Returns 0, 1 when an op fails, 2 on a bad list or file. */

/* A device buffer of `bytes` from DIR/NAME.EXT (whose size must be `bytes`), or zeros when
 * ext is NULL. */
static srlm_status io_load(srlm_backend *be, const char *dir, const char *name, const char *ext, size_t bytes,
                           void **dev) {
  *dev = NULL;
  srlm_status st = srlm_backend_alloc(be, dev, bytes ? bytes : 1);
  if (st != SRLM_OK || !ext) return st;
  char file[4096], path[4096];
  snprintf(file, sizeof file, "%s.%s", name, ext);
  if ((st = srlm_path_join(path, sizeof path, dir, file)) != SRLM_OK) return st;
  char *data = NULL;
  size_t n = 0;
  if ((st = srlm_read_file(path, &data, &n)) != SRLM_OK) return st;
  if (n != bytes) st = srlm_error(SRLM_ERR_FORMAT, path, "%zu bytes, the case's shape needs %zu", n, bytes);
  else st = srlm_backend_copy_h2d(be, *dev, data, bytes);
  free(data);
  return st;
}

/* Writes `bytes` of device buffer dev to DIR/NAME.EXT. */
static srlm_status io_save(srlm_backend *be, const char *dir, const char *name, const char *ext, const void *dev,
                           size_t bytes) {
  char file[4096], path[4096];
  snprintf(file, sizeof file, "%s.%s", name, ext);
  srlm_status st = srlm_path_join(path, sizeof path, dir, file);
  void *h = srlm_xmalloc(bytes ? bytes : 1);
  if (st == SRLM_OK) st = srlm_backend_copy_d2h(be, h, dev, bytes);
  if (st == SRLM_OK) st = srlm_write_file_atomic(path, h, bytes);
  free(h);
  return st;
}

/* One case: 0, 1 when an op fails, 2 when a file does. */
static int io_case(srlm_backend *be, srlm_dtype dt, const char *dir, const char *name, int B, int64_t L, int64_t NH,
                   int64_t NKV, int64_t HS, int64_t W, int NC) {
  const int64_t T = B * L;
  const size_t es = srlm_dtype_size(dt), nq = (size_t)(T * NH * HS) * es, nkv = (size_t)(T * NKV * HS) * es;
  const size_t nlse = (size_t)(T * NH) * sizeof(float);
  enum { Q, K, V, DOUT, OUTP, LSE, DQ, DK, DV, CU, NBUF };
  void *d[NBUF] = {0};
  const char *ext[NBUF] = {"q", "k", "v", "dout", "out", "lse", "dq", "dk", "dv", NULL};
  const size_t bytes[NBUF] = {nq, nkv, nkv, nq, nq, nlse, nq, nkv, nkv, (size_t)(B + 1) * sizeof(int32_t)};
  srlm_status st = SRLM_OK;
  for (int i = 0; i < NBUF && st == SRLM_OK; i++) st = io_load(be, dir, name, i <= DOUT ? ext[i] : NULL, bytes[i], &d[i]);
  int rc = st == SRLM_OK ? 0 : 2;
  if (rc == 0) {
    int32_t *cu = srlm_xmalloc((size_t)(B + 1) * sizeof *cu);
    for (int b = 0; b <= B; b++) cu[b] = (int32_t)(b * L);
    st = srlm_backend_copy_h2d(be, d[CU], cu, bytes[CU]);
    free(cu);
    const float scale = 1.0f / sqrtf((float)HS);
    srlm_attention_params f = {.out = d[OUTP], .lse = d[LSE], .q = d[Q], .k = d[K], .v = d[V], .cu_seqlens = d[CU],
                               .B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .window = W, .scale = scale,
                               .non_causal = NC, .dtype = dt};
    srlm_attention_bwd_params g = {.dq = d[DQ], .dk = d[DK], .dv = d[DV], .dout = d[DOUT], .out = d[OUTP],
                                   .lse = d[LSE], .q = d[Q], .k = d[K], .v = d[V], .cu_seqlens = d[CU], .B = B,
                                   .T = T, .NH = NH, .NKV = NKV, .HS = HS, .window = W, .scale = scale,
                                   .non_causal = NC, .dtype = dt};
    if (st == SRLM_OK) st = SRLM_OP(be, attention_forward, f);
    if (st == SRLM_OK) st = SRLM_OP(be, attention_backward, g);
    if (st == SRLM_OK) st = srlm_backend_sync(be);
    rc = st == SRLM_OK ? 0 : 1;
    for (int i = OUTP; i <= DV && st == SRLM_OK; i++)
      if (i != DOUT) st = io_save(be, dir, name, ext[i], d[i], bytes[i]);
    if (rc == 0 && st != SRLM_OK) rc = 2;
  }
  if (st != SRLM_OK) fprintf(stderr, "bench_backend: attention-io case %s: %s\n", name, srlm_error_message());
  for (int i = 0; i < NBUF; i++)
    if (d[i]) (void)srlm_backend_free(be, d[i]);
  return rc;
}

static int attention_io(srlm_backend *be, srlm_dtype dt, const char *dir) {
  char path[4096], *text = NULL;
  size_t n = 0;
  if (srlm_path_join(path, sizeof path, dir, "cases.txt") != SRLM_OK || srlm_read_file(path, &text, &n) != SRLM_OK)
    return fprintf(stderr, "bench_backend: --attention-io: %s\n", srlm_error_message()), 2;
  int rc = 0, line_no = 0, cases = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line && rc != 2; line = strtok_r(NULL, "\n", &save)) {
    line_no++;
    while (*line == ' ' || *line == '\t') line++;
    if (!*line || *line == '#') continue;
    char name[256];
    int B, NC;
    long long L, NH, NKV, HS, W;
    char extra;
    if (sscanf(line, "%255s %d %lld %lld %lld %lld %lld %d %c", name, &B, &L, &NH, &NKV, &HS, &W, &NC, &extra) != 8 ||
        B < 1 || L < 1 || NH < 1 || NKV < 1 || HS < 1 || W < 0 || (NC != 0 && NC != 1) || strchr(name, '/')) {
      fprintf(stderr, "bench_backend: %s:%d: want \"NAME B L NH NKV HS window non_causal\" (positive sizes, "
              "window >= 0, non_causal 0 or 1, no '/' in NAME)\n", path, line_no);
      rc = 2;
      break;
    }
    const int r = io_case(be, dt, dir, name, B, L, NH, NKV, HS, W, NC);
    printf("attention-io %s B=%d L=%lld NH=%lld NKV=%lld HS=%lld W=%lld%s: %s\n", name, B, L, NH, NKV, HS, W,
           NC ? " non-causal" : "", r == 0 ? "ok" : "FAILED");
    fflush(stdout);
    rc = r > rc ? r : rc;
    cases++;
  }
  free(text);
  if (rc == 0 && cases == 0) return fprintf(stderr, "bench_backend: %s lists no case\n", path), 2;
  return rc;
}

/* ---- the driver ------------------------------------------------------------------------------ */

typedef struct opts {
  const char *backend, *json, *only_op, *only_case, *attention_io;
  srlm_dtype dt;
  int full, iters, warmup, list;
  uint64_t seed;
} opts;

static int usage(const char *msg) {
  fprintf(stderr,
          "bench_backend: %s\nusage: bench_backend [--backend NAME] [--dtype fp32|bf16] [--size small|full|attention] "
          "[--op NAME] [--case MODEL] [--iters N] [--warmup N] [--seed S] [--json PATH] | --list\n"
          "       bench_backend [--backend NAME] [--dtype fp32|bf16] --attention-io DIR   (the ops on DIR/cases.txt's inputs)\n",
          msg);
  return 2;
}

static int parse(int argc, char **argv, opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end = NULL;
    if (strcmp(a, "--help") == 0) return usage("help");
    if (strcmp(a, "--list") == 0) {
      o->list = 1;
      continue;
    }
    if (!v) return usage("every option takes a value");
    if (strcmp(a, "--backend") == 0) o->backend = v;
    else if (strcmp(a, "--json") == 0) o->json = v;
    else if (strcmp(a, "--op") == 0) o->only_op = v;
    else if (strcmp(a, "--case") == 0) o->only_case = v;
    else if (strcmp(a, "--attention-io") == 0) o->attention_io = v;
    else if (strcmp(a, "--dtype") == 0) {
      if (srlm_dtype_parse(v, "--dtype", &o->dt) != SRLM_OK) return usage(srlm_error_message());
    } else if (strcmp(a, "--size") == 0 && (!strcmp(v, "small") || !strcmp(v, "full") || !strcmp(v, "attention")))
      o->full = !strcmp(v, "full") ? 1 : !strcmp(v, "attention") ? 2 : 0;
    else if (strcmp(a, "--iters") == 0 && (o->iters = (int)strtol(v, &end, 10)) > 0 && !*end) {}
    else if (strcmp(a, "--warmup") == 0 && (o->warmup = (int)strtol(v, &end, 10)) >= 0 && !*end) {}
    else if (strcmp(a, "--seed") == 0 && (o->seed = strtoull(v, &end, 10), !*end)) {}
    else return usage("unknown option or bad value");
    i++;
  }
  return 0;
}

static float *make_pool(uint64_t seed) {
  float *pool = srlm_xmalloc(POOL * sizeof *pool);
  for (uint32_t i = 0; i < POOL; i += 4) {
    const srlm_philox_out r = srlm_rng_bits(seed, 0xbe7c, i >> 2, 0, 0);
    for (int j = 0; j < 4; j++) pool[i + (uint32_t)j] = srlm_rng_u01f(r.v[j]);
  }
  return pool;
}

/* The correctness check of one op on its first small shape: 1 when it agrees with the CPU
 * (or the backend is the CPU). */
static int check_op(srlm_backend *be, const opts *o, const float *pool, int op) {
  if (be == srlm_backend_cpu()) return 1;
  const bshape *s = NULL;
  for (size_t k = 0; k < NELEM(k_small) && !s; k++)
    if (k_small[k].op == op) s = &k_small[k];
  if (!s) return 1;
  bench c = {.dt = o->dt, .seed = o->seed, .pool = pool}, g = c;
  run_check(&c, srlm_backend_cpu(), s, 1);
  run_check(&g, be, s, 1);
  const int ok = c.st == SRLM_OK && g.st == SRLM_OK && outputs_agree(&c, &g, srlm_op_names[op]);
  bench_free(&c);
  bench_free(&g);
  return ok;
}

static void print_header(const srlm_backend *be, const opts *o) {
  char date[32];
  const time_t now = time(NULL);
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
#else
  const int threads = 1;
#endif
  printf("# bench_backend: srlm %s (%s), gcc %s, %s\n", SRLM_VERSION_STRING, SRLM_BUILD_TYPE, __VERSION__, date);
  printf("# backend %s (device %d%s%s), dtype %s, size %s, host threads %d\n", be->name, be->device,
         be == srlm_backend_cpu() ? ", ISA " : "", be == srlm_backend_cpu() ? srlm_backend_cpu_isa() : "",
         srlm_dtype_name(o->dt), o->full == 2 ? "attention" : o->full ? "full" : "small", threads);
  printf("# iters %s, warmup %d, seed %llu; time per call; GB/s = minimum bytes moved / time (memory-bound ops);\n",
         o->iters > 0 ? "fixed" : "auto (about 0.3 s per case, >= 3)", o->warmup, (unsigned long long)o->seed);
  printf("# TFLOP/s = 2 x multiply-adds / time (GEMM-like ops); check: %s\n",
         be == srlm_backend_cpu() ? "a rerun from the same inputs bit-identical (the CPU is the reference)"
                                  : "the op vs the CPU on its first small shape, a rerun bit-identical");
  printf("# %-19s %-22s %-42s %6s %12s %9s %9s %6s\n", "op", "model", "shape", "iters", "time_us", "GB/s", "TFLOP/s",
         "check");
}

int main(int argc, char **argv) {
  opts o = {.backend = "cpu", .dt = SRLM_F32, .warmup = 2, .seed = 1234};
  const int rc = parse(argc, argv, &o);
  if (rc) return rc;
  if (o.only_op) {
    int found = 0;
    for (int i = 0; i < SRLM_OP_COUNT; i++) found |= !strcmp(o.only_op, srlm_op_names[i]);
    if (!found) return usage("--op names no op of the list");
  }
  const bshape *table = o.full == 2 ? k_attention : o.full ? k_full : k_small;
  const size_t nt = o.full == 2 ? NELEM(k_attention) : o.full ? NELEM(k_full) : NELEM(k_small);
  if (o.only_case) {
    int found = 0;
    for (size_t k = 0; k < nt; k++)
      found |= !strcmp(o.only_case, table[k].model) && (!o.only_op || !strcmp(o.only_op, srlm_op_names[table[k].op]));
    if (!found) return usage("--case names no model column of the --size table (for the --op given)");
  }
#if defined(SRLM_HAVE_CUDA) && SRLM_HAVE_CUDA
  if (srlm_backend_register(srlm_backend_cuda_ops()) != SRLM_OK)
    return fprintf(stderr, "bench_backend: %s\n", srlm_error_message()), 1;
#endif
  if (o.list) return printf("%s\n", srlm_backend_names()), 0;
  srlm_backend *be = NULL;
  if (srlm_backend_open(o.backend, -1, &be) != SRLM_OK)
    return fprintf(stderr, "bench_backend: %s\n", srlm_error_message()), 2;
  if (o.attention_io) {
    const int io_rc = attention_io(be, o.dt, o.attention_io);
    if (srlm_backend_close(be) != SRLM_OK) return fprintf(stderr, "bench_backend: %s\n", srlm_error_message()), 1;
    return io_rc;
  }
  float *pool = make_pool(o.seed);
  print_header(be, &o);
  char *json = NULL;
  size_t json_len = 0;
  FILE *js = o.json ? open_memstream(&json, &json_len) : NULL; /* written atomically at the end */
  if (js)
    fprintf(js, "{\"bench\": \"backend\", \"srlm_version\": \"%s\", \"backend\": \"%s\", \"device\": %d, \"dtype\": \"%s\", "
            "\"size\": \"%s\", \"warmup\": %d, \"seed\": %llu, \"results\": [",
            SRLM_VERSION_STRING, be->name, be->device, srlm_dtype_name(o.dt), o.full == 2 ? "attention" : o.full ? "full" : "small", o.warmup,
            (unsigned long long)o.seed);
  int all_ok = 1, rows = 0, checked[SRLM_OP_COUNT] = {0}, check_ok[SRLM_OP_COUNT] = {0};
  for (int op = 0; op < SRLM_OP_COUNT; op++) {
    if (o.only_op && strcmp(o.only_op, srlm_op_names[op]) != 0) continue;
    if (!srlm_backend_has_op(be->ops, (srlm_op_id)op)) {
      printf("  %-19s %-22s %-42s\n", srlm_op_names[op], "-", "(the backend lacks it)");
      continue;
    }
    for (size_t k = 0; k < nt; k++) {
      const bshape *s = &table[k];
      if (s->op != op || (o.only_case && strcmp(o.only_case, s->model) != 0)) continue;
      if (!checked[op]) checked[op] = 1, check_ok[op] = check_op(be, &o, pool, op);
      bench b = {.be = be, .dt = o.dt, .s = s, .seed = o.seed, .purpose = 2, .pool = pool, .mode = MODE_TIME,
                 .iters_opt = o.iters, .warmup = o.warmup, .rerun_ok = 1};
      k_bench[op](&b);
      const int ran = b.st == SRLM_OK && b.step > 0 && b.sec > 0;
      const int ok = b.st == SRLM_OK && (!ran || b.rerun_ok) && check_ok[op];
      all_ok &= ok;
      bench_free(&b);
      char gbps[16] = "-", tflops[16] = "-";
      if (ran && b.bytes > 0) snprintf(gbps, sizeof gbps, "%.1f", b.bytes / b.sec / 1e9);
      if (ran && b.flops > 0) snprintf(tflops, sizeof tflops, "%.2f", b.flops / b.sec / 1e12);
      const char *check = b.st != SRLM_OK ? "ERROR" : !check_ok[op] ? "WRONG" : ran && !b.rerun_ok ? "RERUN" : "ok";
      printf("  %-19s %-22s %-42s %6d %12.1f %9s %9s %6s\n", srlm_op_names[op], s->model, b.shape, ran ? b.iters : 0,
             ran ? b.sec * 1e6 : 0.0, gbps, tflops, ran || b.st != SRLM_OK ? check : "-");
      fflush(stdout);
      if (js) /* a row that did not run has time 0 and "ok": false */
        fprintf(js, "%s\n  {\"op\": \"%s\", \"model\": \"%s\", \"shape\": \"%s\", \"dtype\": \"%s\", \"iters\": %d, "
                "\"time_us\": %.3f, \"gbps\": %.3f, \"tflops\": %.4f, \"check\": \"%s\", \"ok\": %s}",
                rows++ ? "," : "", srlm_op_names[op], s->model, b.shape, srlm_dtype_name(o.dt), ran ? b.iters : 0,
                ran ? b.sec * 1e6 : 0.0, ran ? b.bytes / b.sec / 1e9 : 0.0, ran ? b.flops / b.sec / 1e12 : 0.0, check,
                ok && ran ? "true" : "false");
    }
  }
  if (js) {
    fprintf(js, "\n]}\n");
    fclose(js);
    if (srlm_write_file_atomic(o.json, json, json_len) != SRLM_OK)
      all_ok = 0, fprintf(stderr, "bench_backend: %s\n", srlm_error_message());
    free(json);
  }
  free(pool);
  if (srlm_backend_close(be) != SRLM_OK) return fprintf(stderr, "bench_backend: %s\n", srlm_error_message()), 1;
  printf("# %s\n", all_ok ? "all results checked: ok" : "WRONG results: see the check column and stderr");
  return all_ok ? 0 : 1;
}
