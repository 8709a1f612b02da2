/* bench_model: training-step and decode speed of a llama-style model built with
 * srlm_model_create, measured the way bench/model_torch.py measures transformers, so
 * bench/model.sh can print the two side by side at the same thread count.
 *
 *   bench_model [--family llama|qwen3] [--hidden C --layers L --heads NH --kv-heads NKV
 *               --head-dim HS --ff FF --vocab V] [--tie] [--seq T] [--batch B] [--threads N]
 *               [--steps S] [--warmup W] [--decode-batch B] [--decode-tokens N]
 *               [--prompt-len P] [--recompute] [--seed S] [--save DIR [--save-only]] [--json PATH]
 *               [--train-only] [--dtype fp32|bf16]
 *
 * Measures, after warm-up (not timed):
 *   matmul GFLOP/s       the model's Linear shapes (forward, dx, dW) at T = batch x seq
 *   fwd_bwd_tokens_per_s training step: batch x seq random tokens, targets = next token,
 *                        g = -1/N (mean NLL), zero_grad + forward_train + backward
 *   prefill_tokens_per_s decode-batch prompts of prompt-len tokens in one srlm_model_step
 *   decode_tokens_per_s  decode-tokens greedy steps of one token per slot (argmax on the
 *                        host), generated tokens / time of those steps
 *   decode_weight_gb_per_s  bytes of the weights one decode step reads (every matrix and
 *                        norm once; the embedding table only as the tied LM head) / time
 *                        of a step: the achieved weight-read bandwidth
 *   train_gflop_per_token  the step's model FLOPs per token: 6 x the parameters of the
 *                        matrix products (LM head included, embedding lookup not) + 6 x
 *                        layers x seq x query width (causal attention, forward and backward)
 *   fma_peak_gflops, bf16_dot_peak_gflops, amx_peak_gflops  the threads' multiply-add
 *                        peak: independent register-only fp32 fmas (AVX-512, else AVX2),
 *                        bf16 dot products (vdpbf16ps, where the CPU has it; else 0) and
 *                        AMX tile products (TDPBF16PS on four tiles in registers, at the
 *                        amx ISA level; else 0), the ceiling a step's model FLOP/s
 *                        (tokens/s x train_gflop_per_token) is measured against (bf16: the
 *                        kernel of the level's bf16 products, bf16_kernel: AMX at amx,
 *                        vdpbf16ps for "dot", fp32 fma for "fma")
 *   copy_gb_per_s        a STREAM-style copy (a[i] = b[i], 2 x 256 MiB, threads as set,
 *                        bytes read + written / time, best of 5): the machine's reachable
 *                        memory bandwidth that decode is measured against
 *   peak_rss_mb          getrusage maxrss (before the copy's buffers)
 * --save DIR (before any timing) writes the model as a Hugging Face directory (in its dtype,
 * config.json + model.safetensors) and DIR/bench_ids.json (the training batch's and the
 * decode prompts' token ids), so bench/model_torch.py --model DIR --ids DIR/bench_ids.json
 * computes the same model on the same tokens: bench/model.sh compares the two losses.
 * --version: the commit and build type it was built from (bench/model.sh's header).
 * --save-only: only that, nothing timed. --train-only: only the training steps (no matmul
 * table, decode or copy; no JSON), for profiling a step (perf record).
 * Checked outside the timed loops (exit 1 when wrong): the loss is finite and near
 * log(V) at random init, and every greedy token is the argmax of srlm_model_logits over
 * the full sequence (the KV cache agrees with the full forward). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "srlm/backend.h"
#include "srlm/core.h"
#include "srlm/model.h"
#include "srlm_commit.h" /* generated: src/cli/CMakeLists.txt */

typedef struct opts {
  int64_t hidden, layers, heads, kv_heads, head_dim, ff, vocab;
  int seq, batch, threads, steps, warmup, decode_batch, decode_tokens, prompt_len, recompute, tie, qwen3, save_only,
      train_only, bf16;
  uint64_t seed;
  const char *json, *save;
} opts;

static void usage(void) {
  fprintf(stderr,
          "usage: bench_model [--family llama|qwen3] [--hidden C --layers L --heads NH --kv-heads NKV\n"
          "                   --head-dim HS --ff FF --vocab V] [--tie] [--seq T] [--batch B] [--threads N]\n"
          "                   [--steps S] [--warmup W] [--decode-batch B] [--decode-tokens N]\n"
          "                   [--prompt-len P] [--recompute] [--seed S] [--save DIR [--save-only]]\n"
          "                   [--json PATH] [--train-only] [--dtype fp32|bf16]\n"
          "       bench_model --version\n");
}

static int parse(int argc, char **argv, opts *o) {
  *o = (opts){.hidden = 256, .layers = 6, .heads = 8, .kv_heads = 4, .ff = 768, .vocab = 10000, .seq = 256,
              .batch = 4, .threads = 2, .steps = 5, .warmup = 1, .decode_batch = 8, .decode_tokens = 32,
              .prompt_len = 16, .seed = 1234};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--train-only")) {
      o->train_only = 1;
      continue;
    }
    if (!strcmp(a, "--recompute") || !strcmp(a, "--tie") || !strcmp(a, "--save-only")) {
      *(a[2] == 'r' ? &o->recompute : a[2] == 't' ? &o->tie : &o->save_only) = 1;
      continue;
    }
    if (!strcmp(a, "--help")) return usage(), 2;
    if (i + 1 >= argc) return usage(), 2;
    const char *v = argv[++i];
    char *end;
    long long x = strtoll(v, &end, 10);
    int num = v[0] && !*end && x >= 0;
    if (!strcmp(a, "--json")) o->json = v;
    else if (!strcmp(a, "--save")) o->save = v;
    else if (!strcmp(a, "--dtype")) {
      if (strcmp(v, "f32") && strcmp(v, "fp32") && strcmp(v, "bf16"))
        return fprintf(stderr, "bench_model: --dtype fp32 or bf16, got '%s'\n", v), 2;
      o->bf16 = !strcmp(v, "bf16");
    }
    else if (!strcmp(a, "--family")) {
      if (strcmp(v, "llama") && strcmp(v, "qwen3"))
        return fprintf(stderr, "bench_model: --family llama or qwen3, got '%s'\n", v), 2;
      o->qwen3 = !strcmp(v, "qwen3");
    }
    else if (!num) return fprintf(stderr, "bench_model: %s needs a non-negative integer, got '%s'\n", a, v), 2;
    else if (!strcmp(a, "--hidden")) o->hidden = x;
    else if (!strcmp(a, "--layers")) o->layers = x;
    else if (!strcmp(a, "--heads")) o->heads = x;
    else if (!strcmp(a, "--kv-heads")) o->kv_heads = x;
    else if (!strcmp(a, "--head-dim")) o->head_dim = x;
    else if (!strcmp(a, "--ff")) o->ff = x;
    else if (!strcmp(a, "--vocab")) o->vocab = x;
    else if (!strcmp(a, "--seq")) o->seq = (int)x;
    else if (!strcmp(a, "--batch")) o->batch = (int)x;
    else if (!strcmp(a, "--threads")) o->threads = (int)x;
    else if (!strcmp(a, "--steps")) o->steps = (int)x;
    else if (!strcmp(a, "--warmup")) o->warmup = (int)x;
    else if (!strcmp(a, "--decode-batch")) o->decode_batch = (int)x;
    else if (!strcmp(a, "--decode-tokens")) o->decode_tokens = (int)x;
    else if (!strcmp(a, "--prompt-len")) o->prompt_len = (int)x;
    else if (!strcmp(a, "--seed")) o->seed = (uint64_t)x;
    else return fprintf(stderr, "bench_model: unknown option %s\n", a), usage(), 2;
  }
  if (o->save_only && !o->save) return fprintf(stderr, "bench_model: --save-only needs --save DIR\n"), 2;
  if (o->seq < 2 || o->batch < 1 || o->steps < 1 || o->decode_batch < 1 || o->prompt_len < 1 || o->threads < 1)
    return fprintf(stderr, "bench_model: seq >= 2, batch, steps, decode-batch, prompt-len, threads >= 1\n"), 2;
  return 0;
}

/* CPU seconds of the whole process (all threads): on a loaded machine, the work a step
 * costs when the wall time says mostly how long it waited for a core. */
static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0;
}

static int32_t rand_id(uint64_t seed, uint32_t purpose, uint64_t i, int64_t V) {
  srlm_philox_out r = srlm_rng_bits(seed, purpose, (uint32_t)i, (uint32_t)(i >> 32), 0);
  return (int32_t)(r.v[0] % (uint32_t)V);
}

#define CHECK_OK(expr)                                                                 \
  do {                                                                                 \
    srlm_status st_ = (expr);                                                          \
    if (st_ != SRLM_OK) {                                                              \
      fprintf(stderr, "bench_model: %s: %s\n", #expr, srlm_error_message());           \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

/* GFLOP/s of one matmul shape, best of a few calls after one warm-up. bf16: A and B in
 * bf16, C in bf16 (fp32 when accumulating: the weight gradients), as the model calls it. */
static double time_matmul(int64_t M, int64_t N, int64_t K, int ta, int tb, int acc, int bf16) {
  srlm_backend *be = srlm_backend_cpu();
  const size_t es = bf16 ? 2 : 4;
  void *a = calloc((size_t)(M * K), es), *b = calloc((size_t)(N * K), es), *c = calloc((size_t)(M * N), 4);
  for (int64_t i = 0; i < M * K; i++) {
    float x = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    if (bf16) ((uint16_t *)a)[i] = srlm_f32_to_bf16(x);
    else ((float *)a)[i] = x;
  }
  for (int64_t i = 0; i < N * K; i++) {
    float x = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    if (bf16) ((uint16_t *)b)[i] = srlm_f32_to_bf16(x);
    else ((float *)b)[i] = x;
  }
  const srlm_dtype dt = bf16 ? SRLM_BF16 : SRLM_F32;
  srlm_matmul_params p = {.c = c, .a = a, .b = b, .M = M, .N = N, .K = K, .trans_a = ta, .trans_b = tb, .accumulate = acc,
                          .dtype = dt, .c_dtype = acc ? SRLM_F32 : dt};
  CHECK_OK(SRLM_OP(be, matmul, p));
  double best = 1e30, spent = 0;
  for (int r = 0; r < 20 && spent < 1.0; r++) {
    double t0 = srlm_time_now();
    CHECK_OK(SRLM_OP(be, matmul, p));
    double t = srlm_time_now() - t0;
    spent += t;
    best = t < best ? t : best;
  }
  free(a), free(b), free(c);
  return 2.0 * (double)M * (double)N * (double)K / best / 1e9;
}

/* STREAM's copy kernel over 2 x 256 MiB: (bytes read + bytes written) / time, GB/s, best
 * of 5 after one untimed pass (which also faults the pages in). */
static double copy_bandwidth(void) {
  const size_t n = ((size_t)256 << 20) / sizeof(double);
  double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  if (!a || !b) return free(a), free(b), 0.0;
  double best = 1e30;
  for (int r = 0; r < 6; r++) {
    double t0 = srlm_time_now();
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = r == 0 ? (double)i : b[i];
    double t = srlm_time_now() - t0;
    if (r == 0) {
      memcpy(b, a, n * sizeof *a);
      continue;
    }
    best = t < best ? t : best;
  }
  volatile double sink = a[n / 2];
  (void)sink;
  free(a), free(b);
  return 2.0 * (double)(n * sizeof(double)) / best / 1e9;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
/* The body of a peak loop over n: ten chains of multiply-adds OP(acc) on VEC, independent so
 * that they overlap, each from its own start (equal starts let the compiler merge them into
 * one chain), summed with ADD into s, which the function reduces and returns so that
 * nothing folds away. */
#define REP10(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9)
#define PEAK_BODY(VEC, SET1, ADD, OP)                                                             \
  VEC acc0 = SET1(0.5f), acc1 = SET1(1.0f), acc2 = SET1(1.5f), acc3 = SET1(2.0f), acc4 = SET1(2.5f); \
  VEC acc5 = SET1(3.0f), acc6 = SET1(3.5f), acc7 = SET1(4.0f), acc8 = SET1(4.5f), acc9 = SET1(5.0f); \
  for (long k = 0; k < n; k++) {                                                                  \
    REP10(OP)                                                                                     \
  }                                                                                               \
  VEC s = acc0;                                                                                   \
  s = ADD(s, acc1), s = ADD(s, acc2), s = ADD(s, acc3), s = ADD(s, acc4), s = ADD(s, acc5);       \
  s = ADD(s, acc6), s = ADD(s, acc7), s = ADD(s, acc8), s = ADD(s, acc9);

__attribute__((target("avx512f"))) static float fma_loop512(long n) {
  const __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
#define OP(i) acc##i = _mm512_fmadd_ps(acc##i, b, c);
  PEAK_BODY(__m512, _mm512_set1_ps, _mm512_add_ps, OP)
#undef OP
  return _mm512_reduce_add_ps(s);
}
__attribute__((target("avx2,fma"))) static float fma_loop256(long n) {
  const __m256 b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
#define OP(i) acc##i = _mm256_fmadd_ps(acc##i, b, c);
  PEAK_BODY(__m256, _mm256_set1_ps, _mm256_add_ps, OP)
#undef OP
  return s[0];
}
__attribute__((target("avx512f,avx512bf16"))) static float dot_loop(long n) {
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3f80), c = (__m512bh)_mm512_set1_epi16(0x3380);
#define OP(i) acc##i = _mm512_dpbf16_ps(acc##i, b, c);
  PEAK_BODY(__m512, _mm512_set1_ps, _mm512_add_ps, OP)
#undef OP
  return _mm512_reduce_add_ps(s);
}
#undef PEAK_BODY
#undef REP10

/* Four independent tile products per iteration on tiles 4-7 held in registers (loaded
 * once): the tile unit's multiply-add rate. The configuration: tiles 0-7 of 16 x 64 bytes
 * (a constant: GCC 12 drops the stores of a local one). */
static const struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} k_tiles = {1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};
__attribute__((target("amx-tile,amx-bf16"))) static float amx_loop(long n) {
  static const uint16_t ones[16 * 32] __attribute__((aligned(64))) = {0};
  float out[16 * 16];
  _tile_loadconfig(&k_tiles);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ones, 64);
  _tile_loadd(5, ones, 64);
  _tile_loadd(6, ones, 64);
  _tile_loadd(7, ones, 64);
  for (long k = 0; k < n; k++) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, out, 64);
  _tile_release();
  return out[0];
}
#endif

#if defined(__x86_64__) || defined(__i386__)
/* Every thread runs loop(n) at once; the threads' rate, GFLOP/s (flops_per_iter a call's
 * iteration, all threads), best of 3. */
static double best_rate(float (*loop)(long), long n, double flops_per_iter) {
  double best = 0.0;
  for (int r = 0; r < 3; r++) {
    int nth = 1;
    volatile float sink = 0.0f;
    const double t0 = srlm_time_now();
#pragma omp parallel
    {
#ifdef _OPENMP
#pragma omp single
      nth = omp_get_num_threads();
#endif
      const float v = loop(n);
#pragma omp critical
      sink += v;
    }
    const double g = nth * (double)n * flops_per_iter / (srlm_time_now() - t0) / 1e9;
    best = g > best ? g : best;
  }
  return best;
}
#endif

/* The threads' tile peak, GFLOP/s (a TDPBF16PS of 16 x 16 x 32 is 16384 flops, four an
 * iteration), best of 3; 0 below the amx level (whose start-up check got the OS's
 * permission for the tiles). */
static double amx_peak(void) {
#if defined(__x86_64__) || defined(__i386__)
  if (strcmp(srlm_backend_cpu_isa(), "amx") != 0) return 0.0;
  return best_rate(amx_loop, 200000, 4.0 * 16384.0);
#else
  return 0.0;
#endif
}

/* The threads' multiply-add peak, GFLOP/s (an fma is 2 flops, a bf16 pair dot product 4),
 * best of 3; 0 when the CPU lacks the instructions. */
static double fma_peak(int bf16) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const int w512 = __builtin_cpu_supports("avx512f");
  if (bf16 ? !(w512 && __builtin_cpu_supports("avx512bf16"))
           : !(w512 || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))))
    return 0.0;
  return best_rate(bf16 ? dot_loop : w512 ? fma_loop512 : fma_loop256, 20000000,
                   10.0 * (bf16 ? 64.0 : w512 ? 32.0 : 16.0));
#else
  (void)bf16;
  return 0.0;
#endif
}

/* Writes dir/bench_ids.json: {"train": [[...] x batch], "prompt": [[...] x decode_batch]},
 * the ids main() draws (rand_id purposes 1 and 2). */
static int save_ids(const opts *o, const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/bench_ids.json", dir);
  FILE *f = fopen(path, "w");
  if (!f) return fprintf(stderr, "bench_model: cannot write %s\n", path), 1;
  fprintf(f, "{\"train\": [");
  for (int b = 0; b < o->batch; b++) {
    fprintf(f, "%s[", b ? ", " : "");
    for (int t = 0; t < o->seq; t++)
      fprintf(f, "%s%d", t ? "," : "", rand_id(o->seed, 1, (uint64_t)b * (uint64_t)o->seq + (uint64_t)t, o->vocab));
    fprintf(f, "]");
  }
  fprintf(f, "],\n\"prompt\": [");
  for (int b = 0; b < o->decode_batch; b++) {
    fprintf(f, "%s[", b ? ", " : "");
    for (int t = 0; t < o->prompt_len; t++)
      fprintf(f, "%s%d", t ? "," : "", rand_id(o->seed, 2, (uint64_t)b * (uint64_t)o->prompt_len + (uint64_t)t, o->vocab));
    fprintf(f, "]");
  }
  fprintf(f, "]}\n");
  return fclose(f) != 0 ? (fprintf(stderr, "bench_model: cannot write %s\n", path), 1) : 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--version")) {
    printf("bench_model: commit %s, build type %s\n", SRLM_GIT_COMMIT, SRLM_BUILD_TYPE);
    return 0;
  }
  opts o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc;
#ifdef _OPENMP
  omp_set_num_threads(o.threads);
#endif
  srlm_model_config cfg;
  srlm_model_config_defaults(&cfg, o.qwen3 ? SRLM_MODEL_QWEN3 : SRLM_MODEL_LLAMA);
  cfg.vocab_size = o.vocab, cfg.hidden_size = o.hidden, cfg.intermediate_size = o.ff;
  cfg.num_hidden_layers = o.layers, cfg.num_attention_heads = o.heads, cfg.num_key_value_heads = o.kv_heads;
  if (o.head_dim) cfg.head_dim = o.head_dim;
  cfg.max_position_embeddings = 4096 > o.seq ? 4096 : o.seq;
  cfg.tie_word_embeddings = o.tie != 0;
  CHECK_OK(srlm_model_config_finalize(&cfg, "bench config"));
  const double rss0 = peak_rss_mb();
  srlm_model *m;
  CHECK_OK(srlm_model_create(&cfg, o.seed, srlm_backend_cpu(), o.bf16 ? SRLM_BF16 : SRLM_F32, &m));
  CHECK_OK(srlm_model_set_recompute(m, o.recompute));
  const int64_t V = o.vocab, C = o.hidden, T = (int64_t)o.seq * o.batch;
  printf("# bench_model %s (%s): srlm %s backend, ISA %s, %d threads, seed %llu\n", SRLM_VERSION_STRING, SRLM_BUILD_TYPE,
         srlm_backend_cpu()->name, srlm_backend_cpu_isa(), o.threads, (unsigned long long)o.seed);
  printf("# %s: hidden %lld, layers %lld, heads %lld/%lld x %lld, ff %lld, vocab %lld%s: %.2fM params, %s; train %d x %d "
         "tokens\n", o.qwen3 ? "qwen3" : "llama", (long long)C, (long long)o.layers, (long long)o.heads,
         (long long)o.kv_heads, (long long)cfg.head_dim, (long long)o.ff, (long long)V, o.tie ? ", tied" : "",
         (double)srlm_model_num_params(m) / 1e6, o.bf16 ? "bf16" : "fp32", o.batch, o.seq);
  if (o.save) {
    CHECK_OK(srlm_model_save(m, o.save, o.bf16 ? SRLM_ST_BF16 : SRLM_ST_F32));
    if (save_ids(&o, o.save)) return 1;
    printf("# saved the model and its token ids to %s\n", o.save);
    if (o.save_only) {
      srlm_model_free(m);
      return 0;
    }
  }

  /* ---- matmul shapes of the model ---- */
  const int64_t Q = cfg.num_attention_heads * cfg.head_dim;
  const struct { const char *what; int64_t M, N, K; int ta, tb, acc; } shapes[] = {
      {"q_proj fwd  x W^T", T, Q, C, 0, 1, 0},   {"gate fwd    x W^T", T, o.ff, C, 0, 1, 0},
      {"down dx     dy W", T, o.ff, C, 0, 0, 0},  {"down dW    dy^T x", C, o.ff, T, 1, 0, 1},
      {"lm_head fwd x E^T", 512, V < 8192 ? V : 8192, C, 0, 1, 0}, {"decode     x W^T", o.decode_batch, o.ff, C, 0, 1, 0},
  };
  if (!o.train_only) printf("%-20s %8s %8s %8s %10s\n", "# matmul", "M", "N", "K", "GFLOP/s");
  for (size_t i = 0; i < (o.train_only ? 0 : sizeof shapes / sizeof shapes[0]); i++)
    printf("  %-18s %8lld %8lld %8lld %10.1f\n", shapes[i].what, (long long)shapes[i].M, (long long)shapes[i].N,
           (long long)shapes[i].K, time_matmul(shapes[i].M, shapes[i].N, shapes[i].K, shapes[i].ta, shapes[i].tb,
                                               shapes[i].acc, o.bf16));

  /* ---- training steps ---- */
  int32_t *tokens = malloc((size_t)T * 4), *targets = malloc((size_t)T * 4), *cu = malloc((size_t)(o.batch + 1) * 4);
  float *logp = malloc((size_t)T * 4), *g = malloc((size_t)T * 4);
  int64_t n_targets = 0;
  cu[0] = 0;
  for (int b = 0; b < o.batch; b++) {
    cu[b + 1] = cu[b] + o.seq;
    for (int t = 0; t < o.seq; t++) tokens[cu[b] + t] = rand_id(o.seed, 1, (uint64_t)(cu[b] + t), V);
    for (int t = 0; t < o.seq; t++) {
      targets[cu[b] + t] = t + 1 < o.seq ? tokens[cu[b] + t + 1] : -1;
      n_targets += t + 1 < o.seq;
    }
  }
  for (int64_t t = 0; t < T; t++) g[t] = targets[t] >= 0 ? -1.0f / (float)n_targets : 0.0f;
  srlm_batch batch = {.B = o.batch, .T = T, .tokens = tokens, .cu_seqlens = cu, .targets = targets};
  double loss = 0, t_train = 0, cpu_train = 0;
  for (int s = 0; s < o.warmup + o.steps; s++) {
    double t0 = srlm_time_now(), c0 = cpu_seconds();
    CHECK_OK(srlm_model_zero_grad(m));
    CHECK_OK(srlm_model_forward_train(m, &batch, logp));
    CHECK_OK(srlm_model_backward(m, g));
    if (s >= o.warmup) t_train += srlm_time_now() - t0, cpu_train += cpu_seconds() - c0;
  }
  for (int64_t t = 0; t < T; t++) loss -= targets[t] >= 0 ? logp[t] : 0.0;
  loss /= (double)n_targets;
  const double fwd_bwd = (double)o.steps * (double)T / t_train;
  printf("train: %.0f tokens/s (%.1f ms/step, %.1f CPU ms/step, loss %.3f, log V %.3f), activations %.1f MB\n",
         fwd_bwd, 1000 * t_train / o.steps, 1000 * cpu_train / o.steps, loss, log((double)V), (double)srlm_model_activation_bytes(m) / 1e6);
  const double D = (double)(cfg.num_attention_heads * cfg.head_dim), KVD = (double)(cfg.num_key_value_heads * cfg.head_dim);
  const double mm_params = (double)o.layers * ((double)C * (2.0 * D + 2.0 * KVD) + 3.0 * (double)C * (double)o.ff) +
                           (double)V * (double)C;
  const double gflop_tok = (6.0 * mm_params + 6.0 * (double)o.layers * (double)o.seq * D) / 1e9;
  const double peak = o.train_only ? 0.0 : fma_peak(0), peak_bf16 = o.train_only ? 0.0 : fma_peak(1);
  const double peak_amx = o.train_only ? 0.0 : amx_peak();
  /* the ceiling of the kernel that runs the step's bf16 products */
  const char *bk = srlm_backend_cpu_bf16_kernel();
  const int use_amx = o.bf16 && !strcmp(bk, "amx") && peak_amx > 0, use_dot = o.bf16 && !strcmp(bk, "dot") && peak_bf16 > 0;
  const double peak_dt = use_amx ? peak_amx : use_dot ? peak_bf16 : peak;
  printf("train model FLOP/s: %.1f GFLOP/s (%.3f GFLOP a token) = %.0f%% of the %s multiply-add peak (%.1f GFLOP/s, "
         "%d threads; fp32 fma %.1f, bf16 dot %.1f, amx %.1f; bf16 products: %s)\n", fwd_bwd * gflop_tok, gflop_tok,
         peak_dt > 0 ? 100.0 * fwd_bwd * gflop_tok / peak_dt : 0.0,
         use_amx ? "amx" : use_dot ? "bf16 dot" : "fp32 fma", peak_dt, o.threads, peak, peak_bf16, peak_amx, bk);
  int bad = 0;
  if (!isfinite(loss) || fabs(loss - log((double)V)) > 1.0) {
    fprintf(stderr, "bench_model: loss %.4f at random init is not near log V = %.4f\n", loss, log((double)V));
    bad = 1;
  }
  if (o.train_only) {
    free(tokens), free(targets), free(cu), free(logp), free(g);
    srlm_model_free(m);
    return bad;
  }

  /* ---- prefill + decode ---- */
  const int DB = o.decode_batch, P = o.prompt_len, N = o.decode_tokens;
  srlm_kv_cache *kv;
  CHECK_OK(srlm_kv_cache_create(m, DB, P + N + 1, &kv));
  int *slots = malloc((size_t)DB * sizeof *slots);
  int32_t *prompt = malloc((size_t)(DB * P) * 4), *pcu = malloc((size_t)(DB + 1) * 4);
  int32_t *next = malloc((size_t)DB * 4), *dcu = malloc((size_t)(DB + 1) * 4);
  int32_t *gen = malloc((size_t)(DB * (N + 1)) * 4);
  float *logits = malloc((size_t)(DB * V) * 4);
  for (int i = 0; i <= DB; i++) pcu[i] = i * P, dcu[i] = i;
  for (int i = 0; i < DB * P; i++) prompt[i] = rand_id(o.seed, 2, (uint64_t)i, V);
  double t_prefill = 0, t_decode = 0;
  for (int run = 0; run < o.warmup + 1; run++) {
    for (int i = 0; i < DB; i++) slots[i] = i, srlm_kv_cache_reset(kv, i);
    double t0 = srlm_time_now();
    CHECK_OK(srlm_model_step(m, kv, DB, slots, prompt, pcu, logits));
    double t1 = srlm_time_now();
    for (int step = 0; step <= N; step++) {
      for (int i = 0; i < DB; i++) {
        const float *z = logits + (int64_t)i * V;
        int32_t best = 0;
        for (int64_t v = 1; v < V; v++) best = z[v] > z[best] ? (int32_t)v : best;
        next[i] = best;
        gen[i * (N + 1) + step] = best;
      }
      if (step < N) CHECK_OK(srlm_model_step(m, kv, DB, slots, next, dcu, logits));
    }
    double t2 = srlm_time_now();
    t_prefill = t1 - t0, t_decode = t2 - t1;
  }
  const double prefill = (double)DB * P / t_prefill, decode = (double)DB * N / t_decode;
  printf("prefill: %.0f tokens/s (%.1f ms); decode: %.0f tokens/s (%.2f ms/step of %d sequences), KV cache %.1f MB\n",
         prefill, 1000 * t_prefill, decode, 1000 * t_decode / (N > 0 ? N : 1), DB, (double)srlm_kv_cache_bytes(kv) / 1e6);
  /* a step reads every weight once; an untied embedding table only by the rows it gathers */
  const double step_bytes = (o.bf16 ? 2.0 : 4.0) * (double)(srlm_model_num_params(m) - (o.tie ? 0 : (size_t)(V * C)));
  const double weight_gbs = N > 0 ? step_bytes * N / t_decode / 1e9 : 0.0;

  /* greedy tokens against the full forward (the argmax of srlm_model_logits) */
  const int64_t L = P + N;
  int32_t *seqs = malloc((size_t)(DB * L) * 4), *scu = malloc((size_t)(DB + 1) * 4);
  int64_t *pos = malloc((size_t)(DB * (N + 1)) * sizeof *pos);
  float *full = malloc((size_t)(DB * (N + 1) * V) * 4);
  scu[0] = 0;
  for (int i = 0; i < DB; i++) {
    memcpy(seqs + i * L, prompt + i * P, (size_t)P * 4);
    memcpy(seqs + i * L + P, gen + i * (N + 1), (size_t)N * 4);
    scu[i + 1] = (int32_t)((i + 1) * L);
    for (int s = 0; s <= N; s++) pos[i * (N + 1) + s] = i * L + P - 1 + s;
  }
  srlm_batch fb = {.B = DB, .T = DB * L, .tokens = seqs, .cu_seqlens = scu, .targets = NULL};
  CHECK_OK(srlm_model_logits(m, &fb, pos, DB * (N + 1), full));
  int mismatches = 0;
  for (int64_t r = 0; r < DB * (N + 1); r++) {
    const float *z = full + r * V;
    int32_t best = 0;
    for (int64_t v = 1; v < V; v++) best = z[v] > z[best] ? (int32_t)v : best;
    mismatches += best != gen[r];
  }
  printf("check: greedy tokens vs full-forward argmax: %d of %d differ\n", mismatches, DB * (N + 1));
  if (mismatches) bad = 1;
  const double rss = peak_rss_mb();
  printf("peak RSS %.1f MB (%.1f MB before the model)\n", rss, rss0);
  const double copy_gbs = copy_bandwidth(); /* after the RSS: its 512 MiB are not the model's */
  printf("decode weight reads: %.1f GB/s (%.1f MB a step) = %.0f%% of the copy bandwidth (STREAM-style, %d threads: "
         "%.1f GB/s)\n", weight_gbs, step_bytes / 1e6, copy_gbs > 0 ? 100.0 * weight_gbs / copy_gbs : 0.0, o.threads,
         copy_gbs);

  if (o.json) {
    FILE *f = fopen(o.json, "w");
    if (!f) {
      fprintf(stderr, "bench_model: cannot write %s\n", o.json);
      return 1;
    }
    fprintf(f,
            "{\"impl\":\"srlm\",\"dtype\":\"%s\",\"threads\":%d,\"params\":%zu,\"isa\":\"%s\",\"recompute\":%d,\"family\":\"%s\","
            "\"copy_gb_per_s\":%.2f,\"decode_weight_gb_per_s\":%.2f,\"tie\":%d,\"head_dim\":%lld,"
            "\"shape\":{\"hidden\":%lld,\"layers\":%lld,\"heads\":%lld,\"kv_heads\":%lld,\"ff\":%lld,\"vocab\":%lld},"
            "\"seq\":%d,\"batch\":%d,\"steps\":%d,\"decode_batch\":%d,\"decode_tokens\":%d,\"prompt_len\":%d,"
            "\"fwd_bwd_tokens_per_s\":%.1f,\"fwd_bwd_cpu_ms_per_step\":%.1f,\"decode_tokens_per_s\":%.1f,\"prefill_tokens_per_s\":%.1f,"
            "\"loss\":%.5f,\"activation_mb\":%.1f,\"peak_rss_mb\":%.1f,\"greedy_mismatches\":%d,"
            "\"train_gflop_per_token\":%.4f,\"fma_peak_gflops\":%.1f,\"bf16_dot_peak_gflops\":%.1f,"
            "\"amx_peak_gflops\":%.1f,\"bf16_kernel\":\"%s\"}\n",
            o.bf16 ? "bf16" : "fp32", o.threads, srlm_model_num_params(m), srlm_backend_cpu_isa(), o.recompute, o.qwen3 ? "qwen3" : "llama",
            copy_gbs, weight_gbs, o.tie, (long long)cfg.head_dim, (long long)C,
            (long long)o.layers, (long long)o.heads, (long long)o.kv_heads, (long long)o.ff, (long long)V, o.seq, o.batch,
            o.steps, DB, N, P, fwd_bwd, 1000 * cpu_train / o.steps, decode, prefill, loss, (double)srlm_model_activation_bytes(m) / 1e6, rss,
            mismatches, gflop_tok, peak, peak_bf16, peak_amx, bk);
    fclose(f);
  }
  free(tokens), free(targets), free(cu), free(logp), free(g), free(slots), free(prompt), free(pcu), free(next);
  free(dcu), free(gen), free(logits), free(seqs), free(scu), free(pos), free(full);
  srlm_kv_cache_free(kv);
  srlm_model_free(m);
  return bad;
}
