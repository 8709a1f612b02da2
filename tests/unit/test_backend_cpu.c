/* backend (the CPU reference backend): what is particular to the CPU. Every op's accuracy,
 * overwrite/accumulate behaviour, in-place use, reruns and data errors are checked for any
 * backend, the CPU included, by test_backend_ops; here:
 * - vector code: matmul gives the bits of its rounding contract (one fma chain per element;
 *   for bf16 inputs the chain with denormals flushed) at every ISA level this CPU has, and
 *   attention against a KV cache (prefill, then one token at a time) gives the bits of the
 *   full forward at every level, in fp32 and in bf16;
 * - threads: every op gives the same bits with 1 and 3 OpenMP threads;
 * - ISA levels: every op gives the same bits at every level (AVX-512 BF16, AVX-512, AVX2,
 *   portable C);
 * - bf16: the ops that compute bf16 tensors a block or a row at a time (SwiGLU, add,
 *   RMSNorm, RoPE) give the bits of their staged definition (cpu_ops.h) at every level and
 *   thread count; bf16 attention (P and dS in two bf16 parts) is within a bound of the fp32
 *   op on the widened inputs and gives the same bits at every level and thread count;
 * - the shared parameter checks (backend.c) as the CPU reports them, and the CPU's order
 *   of checks (targets before any output is written);
 * - matmul's packed weights (b_version): read from the cache, repacked on a new version;
 * - attention_backward's stash of P and dS: the bits of computing them again;
 * - memory calls and the registry.
 * Inputs from Philox (seed printed). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#if (defined(__x86_64__) || defined(__i386__)) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
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

static float *fbuf(int64_t n) { return srlm_xcalloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static uint16_t *hbuf(int64_t n) { return srlm_xcalloc((size_t)(n > 0 ? n : 1), sizeof(uint16_t)); }

/* n bf16 values from Philox in h and the same values as fp32 in f. */
static void fill_bf16(uint16_t *h, float *f, int64_t n, double lo, double hi) {
  fill_uniform(f, n, lo, hi);
  for (int64_t i = 0; i < n; i++) h[i] = srlm_f32_to_bf16(f[i]), f[i] = srlm_bf16_to_f32(h[i]);
}

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

/* amx first: its bf16 products have their own bits (test_matmul_amx); everything else
 * there is avx512bf16's, attention's products included (they ask for the chain). */
static const char *const k_isas[] = {"amx", "avx512bf16:dot", "avx512bf16:fma", "avx512", "avx2", "generic"};
enum { N_ISAS = sizeof k_isas / sizeof k_isas[0] };

/* An ISA level, "avx512bf16" with its bf16 kernel forced (":dot" or ":fma", both the same
 * bits), or NULL: the CPU's best, measured kernel. */
static srlm_status set_level(const char *name) {
  if (!name) {
    SRLM_TRY(srlm_backend_cpu_set_bf16_kernel(NULL));
    return srlm_backend_cpu_set_isa(NULL);
  }
  char isa[32];
  snprintf(isa, sizeof isa, "%s", name);
  char *kind = strchr(isa, ':');
  if (kind) *kind++ = '\0';
  SRLM_TRY(srlm_backend_cpu_set_bf16_kernel(kind));
  return srlm_backend_cpu_set_isa(isa);
}

/* ---- vector code: the same bits at every ISA level -------------------------------------- */

/* op(A)(m,k) and op(B)(k,n) of the matmul layouts */
static float mat_a(const srlm_matmul_params *p, int64_t m, int64_t k) {
  const float *a = p->a;
  return p->trans_a ? a[k * p->lda + m] : a[m * p->lda + k];
}
static float mat_b(const srlm_matmul_params *p, int64_t k, int64_t n) {
  const float *b = p->b;
  return p->trans_b ? b[n * p->ldb + k] : b[k * p->ldb + n];
}

/* backend.h's rounding contract of the CPU matmul: each element is one fma chain over k in
 * order from 0 (or from C), then + bias, whatever the kernel, tile or thread count. */
static void test_matmul_chain(srlm_backend *be) {
  static const struct { int64_t M, N, K; int ta, tb, acc, bias, pad; } cases[] = {
      {1, 1, 1, 0, 1, 0, 0, 0},      {7, 5, 3, 0, 1, 0, 1, 0},    {33, 70, 300, 0, 1, 0, 0, 0},
      {200, 97, 513, 0, 0, 1, 0, 0}, {65, 130, 260, 1, 0, 1, 0, 0}, {9, 64, 1000, 0, 1, 0, 1, 3},
      {193, 40, 77, 1, 1, 1, 1, 5},  {3, 1, 0, 0, 1, 1, 1, 0},     {401, 33, 64, 0, 1, 0, 0, 2},
      {40, 70, 2100, 0, 1, 1, 1, 2}, {30, 45, 1030, 1, 0, 0, 0, 0}, /* past the AVX-512 KC of 1024 */
      /* short tiles (matmul.c's kernel.pick): 2, 3 and 4 rows alone (the streaming kernels
         of decode), and after a full tile (10, 12; 8 and 9 for the 6-row AVX2 tile) */
      {2, 70, 300, 0, 1, 1, 0, 0},   {3, 45, 77, 0, 1, 0, 1, 1},  {4, 40, 1030, 0, 1, 1, 0, 0},
      {10, 33, 129, 0, 1, 0, 0, 0},  {12, 70, 300, 1, 0, 1, 1, 0}, {8, 40, 200, 0, 0, 0, 0, 1},
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    const int64_t M = cases[t].M, N = cases[t].N, K = cases[t].K, pad = cases[t].pad;
    srlm_matmul_params p = {.M = M, .N = N, .K = K, .trans_a = cases[t].ta, .trans_b = cases[t].tb,
                            .accumulate = cases[t].acc};
    p.lda = (cases[t].ta ? M : K) + pad;
    p.ldb = (cases[t].tb ? K : N) + pad;
    p.ldc = N + pad;
    const int64_t na = (cases[t].ta ? K : M) * p.lda, nb = (cases[t].tb ? N : K) * p.ldb, nc = M * p.ldc;
    float *a = fbuf(na), *b = fbuf(nb), *c0 = fbuf(nc), *bias = fbuf(N), *c = fbuf(nc), *chain = fbuf(nc);
    fill_uniform(a, na, -1, 1);
    fill_uniform(b, nb, -1, 1);
    fill_uniform(c0, nc, -1, 1);
    fill_uniform(bias, N, -1, 1);
    p.a = a, p.b = b, p.bias = cases[t].bias ? bias : NULL;
    memcpy(chain, c0, (size_t)nc * sizeof *chain); /* the padding columns stay */
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        float ch = cases[t].acc ? c0[m * p.ldc + n] : 0.0f;
        for (int64_t k = 0; k < K; k++) ch = fmaf(mat_a(&p, m, k), mat_b(&p, k, n), ch);
        chain[m * p.ldc + n] = p.bias ? ch + bias[n] : ch;
      }
    /* plain, then as a versioned weight twice (packed on the first call, read packed on the
       second where M is decode-sized) */
    const uint64_t version = srlm_weights_version_next();
    for (int i = 0; i < N_ISAS; i++) {
      if (set_level(k_isas[i]) != SRLM_OK) continue; /* not on this CPU */
      for (int run = 0; run < 3; run++) {
        memcpy(c, c0, (size_t)nc * sizeof *c);
        p.c = c;
        p.b_version = run ? version : 0;
        EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
        EXPECT_SAME_BITS(c, chain, nc, "matmul %s M=%lld N=%lld K=%lld ta=%d tb=%d acc=%d version %d is not the fma chain",
                         k_isas[i], (long long)M, (long long)N, (long long)K, cases[t].ta, cases[t].tb, cases[t].acc,
                         run);
      }
    }
    srlm_backend_forget(be, b, (size_t)nb * sizeof *b);
    EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
    free(a), free(b), free(c0), free(bias), free(c), free(chain);
  }
}

/* x with denormals flushed to zero (DAZ / FTZ) */
static float flushed(float x) { return fabsf(x) < 1.17549435e-38f ? copysignf(0.0f, x) : x; }

/* The bf16 contract of the CPU matmul (matmul.c): bf16 A and B, fp32 C: each element is the
 * fma chain over k in order with denormals flushed (the inputs, C when accumulated, every
 * step's result), then + bias, at every level (the AVX-512 BF16 dot-product kernel where
 * the CPU has it), with and without packed weights. The inputs include values whose
 * products and sums fall below FLT_MIN, bf16 denormals, and -0 and denormals in C. */
static void test_matmul_chain_bf16(srlm_backend *be) {
  static const struct { int64_t M, N, K; int ta, tb, acc, bias; } cases[] = {
      {1, 1, 1, 0, 1, 0, 0},   {7, 5, 3, 0, 1, 1, 1},    {33, 70, 301, 0, 1, 0, 0}, {200, 97, 513, 0, 0, 1, 0},
      {65, 130, 260, 1, 0, 1, 0}, {9, 64, 1000, 0, 1, 1, 1}, {193, 40, 77, 1, 1, 1, 1}, {8, 32, 2, 1, 1, 0, 0},
      {200, 50, 1001, 0, 1, 1, 0}, /* A's rows past L2: the KC-outer loop; two MB row blocks */
      {20, 45, 4201, 1, 0, 1, 1},  /* past the dot kernel's KC_DOT = 2048 twice, odd K */
      {24, 40, 2090, 0, 1, 0, 0},  /* one KC_DOT block and a short one */
      {2, 70, 301, 0, 1, 1, 0},    {3, 33, 77, 0, 1, 0, 1},   {4, 40, 300, 1, 0, 1, 0}, /* short tiles */
      {10, 45, 129, 0, 1, 0, 0},   {12, 70, 300, 0, 1, 1, 1},
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    const int64_t M = cases[t].M, N = cases[t].N, K = cases[t].K;
    const int ta = cases[t].ta, tb = cases[t].tb;
    float *af = fbuf(M * K), *bf = fbuf(K * N), *c0 = fbuf(M * N), *bias = fbuf(N), *c = fbuf(M * N);
    float *chain = fbuf(M * N);
    uint16_t *a = srlm_xcalloc((size_t)(M * K), 2), *b = srlm_xcalloc((size_t)(K * N), 2);
    fill_uniform(af, M * K, -1, 1);
    fill_uniform(bf, K * N, -1, 1);
    fill_uniform(c0, M * N, -1, 1);
    fill_uniform(bias, N, -1, 1);
    /* row 0 of A: bf16 denormals (DAZ); row 1 and every third column of B tiny, so that
       row 1's chains in those columns run below FLT_MIN (FTZ) */
    for (int64_t i = 0; i < M * K; i++) {
      const int64_t m = ta ? i % M : i / K;
      if (m == 0) af[i] *= 3e-39f;
      if (m == 1) af[i] *= 1e-19f;
      a[i] = srlm_f32_to_bf16(af[i]), af[i] = srlm_bf16_to_f32(a[i]);
    }
    for (int64_t i = 0; i < K * N; i++) {
      const int64_t n = tb ? i / K : i % N;
      if (n % 3 == 2) bf[i] *= 1e-20f;
      b[i] = srlm_f32_to_bf16(bf[i]), bf[i] = srlm_bf16_to_f32(b[i]);
    }
    for (int64_t i = 0; i < M * N; i += 13) c0[i] = i % 2 ? 2e-39f : -0.0f;
    srlm_matmul_params p = {.a = a, .b = b, .M = M, .N = N, .K = K, .trans_a = ta, .trans_b = tb,
                            .accumulate = cases[t].acc, .bias = cases[t].bias ? bias : NULL, .dtype = SRLM_BF16,
                            .c_dtype = SRLM_F32, .lda = ta ? M : K, .ldb = tb ? K : N, .ldc = N};
    /* on x86 the reference runs under MXCSR's FTZ/DAZ as well: its fmaf flushes as the
       hardware does (tininess after rounding), which the hand flush alone cannot show */
#if defined(__x86_64__) || defined(__i386__)
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040u);
#endif
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        float ch = cases[t].acc ? flushed(c0[m * N + n]) : 0.0f;
        for (int64_t k = 0; k < K; k++) {
          const float x = ta ? af[k * M + m] : af[m * K + k], y = tb ? bf[n * K + k] : bf[k * N + n];
          ch = flushed(fmaf(flushed(x), flushed(y), ch));
        }
        chain[m * N + n] = ch;
      }
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(csr);
#endif
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N && p.bias; n++) chain[m * N + n] += bias[n];
    const uint64_t version = srlm_weights_version_next();
    for (int i = 0; i < N_ISAS; i++) {
      if (!strcmp(k_isas[i], "amx")) continue; /* not the chain: test_matmul_amx */
      if (set_level(k_isas[i]) != SRLM_OK) continue; /* not on this CPU */
      for (int run = 0; run < 3; run++) {
        memcpy(c, c0, (size_t)(M * N) * sizeof *c);
        p.c = c;
        p.b_version = run ? version : 0;
        EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
        EXPECT_SAME_BITS(c, chain, M * N, "bf16 matmul %s M=%lld N=%lld K=%lld ta=%d tb=%d acc=%d version %d is not "
                         "the flushed fma chain", k_isas[i], (long long)M, (long long)N, (long long)K, ta, tb,
                         cases[t].acc, run);
      }
    }
    srlm_backend_forget(be, b, (size_t)(K * N) * sizeof *b);
    EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
    free(af), free(bf), free(c0), free(bias), free(c), free(chain), free(a), free(b);
  }
}

/* A bf16 C is the fp32 C's chains rounded once, whether the tiles write it (K within one
 * KC block, no bias, not accumulating) or it is staged in fp32: the same bits as rounding
 * the fp32-C product, at every level, edge tiles included; the padding past N stays. */
static void test_matmul_bf16_c(srlm_backend *be) {
  static const struct { int64_t M, N, K; int ta, tb, bias; } cases[] = {
      {1, 1, 1, 0, 1, 0},       {13, 45, 255, 0, 1, 0}, {200, 97, 513, 0, 0, 0}, {65, 130, 260, 1, 0, 0},
      {37, 70, 2048, 0, 1, 0}, {9, 40, 2049, 0, 1, 0}, {21, 33, 300, 0, 1, 1},
      /* C of at least 2^20 elements, ldc a multiple of 32 (1024) and 64-byte aligned rows:
         whole 32-column tiles written with non-temporal stores (matmul.c's STREAM_C_MIN),
         the last panel's 29 columns and the last 6 rows not */
      {1030, 1021, 40, 0, 1, 0},
  };
  enum { PAD = 3 };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    const int64_t M = cases[t].M, N = cases[t].N, K = cases[t].K, ldc = N + PAD;
    const int ta = cases[t].ta, tb = cases[t].tb;
    uint16_t *a = srlm_xcalloc((size_t)(M * K), 2), *b = srlm_xcalloc((size_t)(K * N), 2);
    uint16_t *c16 = NULL, *bias16 = srlm_xcalloc((size_t)N, 2);
    EXPECT(posix_memalign((void **)&c16, 64, (size_t)(M * ldc) * 2) == 0, "out of memory"); /* rows as the model's */
    float *f = fbuf(M * K + K * N + N), *c32 = fbuf(M * ldc), *bias32 = fbuf(N);
    fill_uniform(f, M * K + K * N + N, -1, 1);
    for (int64_t i = 0; i < M * K; i++) a[i] = srlm_f32_to_bf16(f[i]);
    for (int64_t i = 0; i < K * N; i++) b[i] = srlm_f32_to_bf16(f[M * K + i]);
    for (int64_t i = 0; i < N; i++) bias16[i] = srlm_f32_to_bf16(f[M * K + K * N + i]), bias32[i] = srlm_bf16_to_f32(bias16[i]);
    srlm_matmul_params p = {.a = a, .b = b, .M = M, .N = N, .K = K, .trans_a = ta, .trans_b = tb, .dtype = SRLM_BF16,
                            .lda = ta ? M : K, .ldb = tb ? K : N, .ldc = ldc};
    for (int i = 0; i < N_ISAS; i++) {
      if (set_level(k_isas[i]) != SRLM_OK) continue; /* not on this CPU */
      p.c = c32, p.c_dtype = SRLM_F32, p.bias = cases[t].bias ? bias32 : NULL;
      EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
      for (int64_t j = 0; j < M * ldc; j++) c16[j] = 0x7fc1; /* a NaN the padding must keep */
      p.c = c16, p.c_dtype = SRLM_BF16, p.bias = cases[t].bias ? bias16 : NULL;
      EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
      int64_t bad = -1;
      for (int64_t j = 0; j < M * ldc && bad < 0; j++)
        if (c16[j] != (j % ldc < N ? srlm_f32_to_bf16(c32[j]) : 0x7fc1)) bad = j;
      EXPECT(bad < 0, "bf16-C matmul %s M=%lld N=%lld K=%lld ta=%d tb=%d bias=%d: element %lld is 0x%04x, not the "
             "fp32 C rounded (0x%04x)", k_isas[i], (long long)M, (long long)N, (long long)K, ta, tb, cases[t].bias,
             (long long)bad, bad >= 0 ? c16[bad] : 0, bad >= 0 && bad % ldc < N ? srlm_f32_to_bf16(c32[bad]) : 0x7fc1);
    }
    EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
    free(a), free(b), free(c16), free(bias16), free(f), free(c32), free(bias32);
  }
}

/* An odd K's last pair is padded so that it changes no sum: -0 products added to -0 stay
 * -0 at every level of the chain, every layout (a +0 pad would make them +0). */
static void test_matmul_bf16_pad(srlm_backend *be) {
  static const int64_t ks[] = {1, 7, 77, 301};
  enum { M = 9, N = 33, KMAX = 301 };
  uint16_t *a = srlm_xcalloc(M * KMAX, 2), *b = srlm_xcalloc(KMAX * N, 2);
  float *c = fbuf(M * N);
  for (int64_t i = 0; i < M * KMAX; i++) a[i] = 0x8000u; /* -0 */
  for (int64_t i = 0; i < KMAX * N; i++) b[i] = srlm_f32_to_bf16(1.5f);
  for (int l = 0; l < N_ISAS; l++) {
    if (!strcmp(k_isas[l], "amx")) continue; /* not the chain: test_matmul_amx */
    if (set_level(k_isas[l]) != SRLM_OK) continue;
    for (size_t t = 0; t < sizeof ks / sizeof ks[0] * 4; t++) {
      const int64_t K = ks[t / 4];
      const int ta = t & 1, tb = (t >> 1) & 1;
      for (int64_t i = 0; i < M * N; i++) c[i] = -0.0f;
      srlm_matmul_params p = {.c = c, .a = a, .b = b, .M = M, .N = N, .K = K, .trans_a = ta, .trans_b = tb,
                              .accumulate = 1, .dtype = SRLM_BF16, .c_dtype = SRLM_F32};
      EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
      int64_t bad = -1;
      for (int64_t i = 0; i < M * N && bad < 0; i++)
        if (!signbit(c[i]) || c[i] != 0.0f) bad = i;
      EXPECT(bad < 0, "%s: bf16 matmul of -0 rows, K=%lld ta=%d tb=%d: element %lld is %g (want -0)", k_isas[l],
             (long long)K, ta, tb, (long long)bad, bad >= 0 ? (double)c[bad] : 0.0);
    }
  }
  EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
  free(a), free(b), free(c);
}

/* The amx level's bf16 products (matmul.c): not the chain, but each element a function of
 * its row of A, its column of B, K and C only. So every row computed alone (M = 1: the
 * packed-weight path of decode), in a block of other rows, with 1 and 3 threads, and from
 * packed weights gives the bits of the whole product; a second call gives them again; and
 * each element is within (K + 66) x 2^-24 of the sum of its terms' magnitudes from the
 * exact result (float64; the chain's own bound is K x 2^-24), bias included. Skipped, and
 * said so, where the CPU has no amx level. */
static void test_matmul_amx(srlm_backend *be) {
  if (srlm_backend_cpu_set_isa("amx") != SRLM_OK) {
    int usable = 0; /* the CPU has the tile unit and the OS grants it (what matmul.c asks) */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__linux__)
    unsigned eax, ebx, ecx, edx;
    usable = __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (edx >> 22 & 1) && (edx >> 24 & 1) &&
             syscall(SYS_arch_prctl, 0x1023, 18) == 0 && srlm_backend_cpu_set_isa("avx512bf16") == SRLM_OK;
#endif
    EXPECT(!usable, "this CPU has AMX-BF16 and the OS grants the tile data, but the amx level is not offered: the "
           "tile kernel failed matmul.c's start-up check");
    if (!usable) fprintf(stderr, "  (no amx level on this CPU: its bf16 products are not checked here)\n");
    EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
    return;
  }
  static const struct { int64_t M, N, K; int ta, tb, acc, bias; } cases[] = {
      {1, 1, 1, 0, 1, 0, 0},      {7, 5, 3, 0, 1, 1, 1},      {33, 70, 301, 0, 1, 0, 0}, {200, 97, 513, 0, 0, 1, 0},
      {65, 130, 260, 1, 0, 1, 0}, {9, 64, 1000, 0, 1, 1, 1},  {193, 40, 77, 1, 1, 1, 1}, {8, 32, 2, 1, 1, 0, 0},
      {200, 50, 1001, 0, 1, 1, 0}, /* two MB row blocks */
      {20, 45, 4201, 1, 0, 1, 1},  /* past KC_AMX = 2048 twice, K not a whole chunk */
      {70, 33, 2048, 0, 1, 0, 0},  /* one whole block */
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    const int64_t M = cases[t].M, N = cases[t].N, K = cases[t].K;
    const int ta = cases[t].ta, tb = cases[t].tb, acc = cases[t].acc;
    uint16_t *a = hbuf(M * K), *b = hbuf(K * N);
    float *af = fbuf(M * K), *bf = fbuf(K * N), *c0 = fbuf(M * N), *bias = fbuf(N), *c = fbuf(M * N);
    float *got = fbuf(M * N), *row = fbuf(N);
    fill_bf16(a, af, M * K, -4, 4);
    fill_bf16(b, bf, K * N, -1, 1);
    fill_uniform(c0, M * N, -8, 8);
    fill_uniform(bias, N, -1, 1);
    srlm_matmul_params p = {.a = a, .b = b, .M = M, .N = N, .K = K, .trans_a = ta, .trans_b = tb, .accumulate = acc,
                            .bias = cases[t].bias ? bias : NULL, .dtype = SRLM_BF16, .c_dtype = SRLM_F32,
                            .lda = ta ? M : K, .ldb = tb ? K : N, .ldc = N};
    memcpy(c, c0, (size_t)(M * N) * sizeof *c);
    p.c = c;
    EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
    double worst = 0;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double exact = acc ? c0[m * N + n] : 0.0, mag = fabs(exact);
        for (int64_t k = 0; k < K; k++) {
          const double y = (double)(ta ? af[k * M + m] : af[m * K + k]) * (tb ? bf[n * K + k] : bf[k * N + n]);
          exact += y, mag += fabs(y);
        }
        if (p.bias) exact += bias[n], mag += fabs(bias[n]);
        const double e = fabs(c[m * N + n] - exact) / (ldexp(mag, -24) * (double)(K + 66));
        worst = e > worst ? e : worst;
      }
    EXPECT(worst <= 1.0, "amx matmul M=%lld N=%lld K=%lld ta=%d tb=%d: an element %.3g x its bound from the exact sum",
           (long long)M, (long long)N, (long long)K, ta, tb, worst);
    const uint64_t version = srlm_weights_version_next();
    for (int run = 0; run < 4; run++) { /* again; packed twice; 1 and 3 threads */
#ifdef _OPENMP
      const int saved = omp_get_max_threads();
      if (run >= 2) omp_set_num_threads(run == 2 ? 1 : 3);
#endif
      memcpy(got, c0, (size_t)(M * N) * sizeof *got);
      p.c = got, p.b_version = run == 1 || run == 2 ? version : 0;
      EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
#ifdef _OPENMP
      omp_set_num_threads(saved);
#endif
      EXPECT_SAME_BITS(got, c, M * N, "amx matmul M=%lld N=%lld K=%lld ta=%d tb=%d, run %d: not the bits of the first",
                       (long long)M, (long long)N, (long long)K, ta, tb, run);
    }
    for (int64_t m = 0; m < M; m += 1 + M / 7) /* rows alone, plain and from packed weights */
      for (int run = 0; run < 2; run++) {
        srlm_matmul_params q = p;
        q.M = 1, q.a = ta ? a + m : a + m * K, q.c = row, q.b_version = run ? version : 0;
        memcpy(row, c0 + m * N, (size_t)N * sizeof *row);
        EXPECT_EQ_INT(SRLM_OP(be, matmul, q), SRLM_OK);
        EXPECT_SAME_BITS(row, c + m * N, N, "amx matmul M=%lld N=%lld K=%lld ta=%d tb=%d: row %lld alone (run %d)",
                         (long long)M, (long long)N, (long long)K, ta, tb, (long long)m, run);
      }
    if (M > 3) { /* rows [1, M - 1) as one product */
      srlm_matmul_params q = p;
      q.M = M - 2, q.a = ta ? a + 1 : a + K, q.c = got + N, q.b_version = 0;
      memcpy(got, c0, (size_t)(M * N) * sizeof *got);
      EXPECT_EQ_INT(SRLM_OP(be, matmul, q), SRLM_OK);
      EXPECT_SAME_BITS(got + N, c + N, (M - 2) * N, "amx matmul M=%lld N=%lld K=%lld ta=%d tb=%d: rows 1.. alone",
                       (long long)M, (long long)N, (long long)K, ta, tb);
    }
    srlm_backend_forget(be, b, (size_t)(K * N) * sizeof *b);
    free(a), free(b), free(af), free(bf), free(c0), free(bias), free(c), free(got), free(row);
  }
  EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
}

/* SRLM_CPU_PACKED_WEIGHTS=0 (ctest unit.backend_cpu.unpacked): versioned decode-sized
 * products keep nothing and give the bits of the unversioned product. */
static void test_unpacked(srlm_backend *be) {
  const int64_t M = 5, N = 70, K = 300;
  float *a = fbuf(M * K), *b = fbuf(N * K), *c = fbuf(M * N), *ref = fbuf(M * N);
  fill_uniform(a, M * K, -1, 1);
  fill_uniform(b, N * K, -1, 1);
  srlm_matmul_params p = {.c = ref, .a = a, .b = b, .M = M, .N = N, .K = K, .trans_b = 1};
  EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
  p.c = c;
  p.b_version = srlm_weights_version_next();
  for (int r = 0; r < 2; r++) {
    EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
    EXPECT_SAME_BITS(c, ref, M * N, "versioned product %d without the cache", r);
  }
  EXPECT(srlm_backend_cpu_packed_bytes() == 0, "SRLM_CPU_PACKED_WEIGHTS=0 but the cache holds %zu bytes",
         srlm_backend_cpu_packed_bytes());
  free(a), free(b), free(c), free(ref);
}

/* cast (and the bf16 staging of every op, which converts the same way) at every level:
 * core.h's srlm_f32_to_bf16 / srlm_bf16_to_f32 bits for ties, carries into the exponent,
 * denormals, infinities and NaNs, on a tensor long enough for the vector code and its
 * threads. */
static void test_cast_levels(srlm_backend *be) {
  enum { N = 100003 };
  float *x = fbuf(N), *back = fbuf(N);
  uint16_t *h = srlm_xcalloc(N, 2), *want = srlm_xcalloc(N, 2);
  fill_uniform(x, N, -3e4, 3e4);
  static const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7fffffu, 0xff7fffffu, 0x00000001u,
                                     0x807fffffu, 0x00800000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xff800001u,
                                     0x7f800001u, 0x80000000u, 0x3f7fffffu, 0x477fe000u};
  for (int64_t i = 0; i < N; i += 7) memcpy(&x[i], &special[(i / 7) % 16], 4);
  for (int64_t i = 0; i < N; i++) want[i] = srlm_f32_to_bf16(x[i]);
  for (int l = 0; l < N_ISAS; l++) {
    if (set_level(k_isas[l]) != SRLM_OK) continue;
    memset(h, 0, N * 2);
    srlm_cast_params c = {.out = h, .x = x, .n = N, .dtype = SRLM_F32, .out_dtype = SRLM_BF16};
    EXPECT_EQ_INT(SRLM_OP(be, cast, c), SRLM_OK);
    EXPECT(!memcmp(h, want, N * 2), "%s: fp32 -> bf16 cast differs from srlm_f32_to_bf16", k_isas[l]);
    srlm_cast_params w = {.out = back, .x = want, .n = N, .dtype = SRLM_BF16, .out_dtype = SRLM_F32};
    EXPECT_EQ_INT(SRLM_OP(be, cast, w), SRLM_OK);
    int64_t bad = -1;
    for (int64_t i = 0; i < N && bad < 0; i++) {
      const float f = srlm_bf16_to_f32(want[i]);
      if (memcmp(&f, &back[i], 4)) bad = i;
    }
    EXPECT(bad < 0, "%s: bf16 -> fp32 cast differs from srlm_bf16_to_f32 at %lld", k_isas[l], (long long)bad);
  }
  EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
  free(x), free(back), free(h), free(want);
}

/* matmul's b_version on the CPU (backend.h): a decode-sized product keeps B packed and reads
 * it from there while (B, version) is unchanged — shown by changing B's bytes under the
 * same version, which the cache does not see (the caller's promise broken on purpose) —
 * repacks on a new version, keeps nothing for large M, and forget drops it. fp32 and bf16
 * give the bits of the unversioned product. */
static void test_packed_weights(srlm_backend *be) {
  const int64_t M = 5, N = 70, K = 300;
  EXPECT(srlm_backend_cpu_packed_bytes() == 0, "the cache holds %zu bytes before the test", srlm_backend_cpu_packed_bytes());
  float *a = fbuf(M * K), *b = fbuf(N * K), *b2 = fbuf(N * K), *c = fbuf(M * N), *ref = fbuf(M * N);
  float *big_a = fbuf(100 * K), *big_c = fbuf(100 * N);
  fill_uniform(a, M * K, -1, 1);
  fill_uniform(b, N * K, -1, 1);
  fill_uniform(b2, N * K, -1, 1);
  fill_uniform(big_a, 100 * K, -1, 1);
  srlm_matmul_params p = {.c = ref, .a = a, .b = b, .M = M, .N = N, .K = K, .trans_b = 1};
  EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK); /* unversioned: the reference */
  EXPECT(srlm_backend_cpu_packed_bytes() == 0, "an unversioned product was cached");
  p.c = c, p.b_version = srlm_weights_version_next();
  EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
  EXPECT_SAME_BITS(c, ref, M * N, "the packing call differs from the plain product");
  const size_t held = srlm_backend_cpu_packed_bytes();
  EXPECT(held >= (size_t)(N * K) * sizeof(float), "the packed weight holds %zu bytes, B has %zu", held,
         (size_t)(N * K) * sizeof(float));
  /* B's bytes change, the version does not: the packed copy is what the product reads */
  float *saved = fbuf(N * K);
  memcpy(saved, b, (size_t)(N * K) * sizeof *b);
  memcpy(b, b2, (size_t)(N * K) * sizeof *b);
  memset(c, 0, (size_t)(M * N) * sizeof *c);
  EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
  EXPECT_SAME_BITS(c, ref, M * N, "a second call with the same version did not read the packed weight");
  /* a new version: repacked from the new bytes, the same bits as a plain product of them */
  p.b_version = srlm_weights_version_next();
  EXPECT_EQ_INT(SRLM_OP(be, matmul, p), SRLM_OK);
  srlm_matmul_params q = p;
  q.c = ref, q.b_version = 0;
  EXPECT_EQ_INT(SRLM_OP(be, matmul, q), SRLM_OK);
  EXPECT_SAME_BITS(c, ref, M * N, "a new version was not repacked");
  EXPECT(srlm_backend_cpu_packed_bytes() == held, "a new version added an entry (%zu bytes, want %zu)", srlm_backend_cpu_packed_bytes(),
         held);
  /* large M: never cached */
  srlm_matmul_params big = {.c = big_c, .a = big_a, .b = b2, .M = 100, .N = N, .K = K, .trans_b = 1,
                            .b_version = srlm_weights_version_next()};
  EXPECT_EQ_INT(SRLM_OP(be, matmul, big), SRLM_OK);
  EXPECT(srlm_backend_cpu_packed_bytes() == held, "a product with M = 100 > %d was cached", SRLM_CPU_PACKED_MAX_M);
  /* forget drops what lies in the range */
  srlm_backend_forget(be, b, 1);
  EXPECT(srlm_backend_cpu_packed_bytes() == 0, "forget left %zu bytes", srlm_backend_cpu_packed_bytes());
  /* bf16 weights: packed once (widened), same bits as the plain bf16 product */
  uint16_t *ab = srlm_xcalloc((size_t)(M * K), 2), *bb = srlm_xcalloc((size_t)(N * K), 2);
  uint16_t *cb = srlm_xcalloc((size_t)(M * N), 2), *rb = srlm_xcalloc((size_t)(M * N), 2);
  for (int64_t i = 0; i < M * K; i++) ab[i] = srlm_f32_to_bf16(a[i]);
  for (int64_t i = 0; i < N * K; i++) bb[i] = srlm_f32_to_bf16(saved[i]);
  srlm_matmul_params h = {.c = rb, .a = ab, .b = bb, .M = M, .N = N, .K = K, .trans_b = 1, .dtype = SRLM_BF16,
                          .c_dtype = SRLM_BF16};
  EXPECT_EQ_INT(SRLM_OP(be, matmul, h), SRLM_OK);
  h.c = cb, h.b_version = srlm_weights_version_next();
  for (int run = 0; run < 2; run++) {
    memset(cb, 0, (size_t)(M * N) * 2);
    EXPECT_EQ_INT(SRLM_OP(be, matmul, h), SRLM_OK);
    EXPECT(memcmp(cb, rb, (size_t)(M * N) * 2) == 0, "bf16 versioned product %d differs from the plain one", run);
  }
  srlm_backend_forget(be, bb, (size_t)(N * K) * 2);
  EXPECT(srlm_backend_cpu_packed_bytes() == 0, "forget (bf16) left %zu bytes", srlm_backend_cpu_packed_bytes());
  free(a), free(b), free(b2), free(c), free(ref), free(big_a), free(big_c), free(saved);
  free(ab), free(bb), free(cb), free(rb);
}

/* n fp32 values rounded to bf16 (a new array) */
static uint16_t *bf16_of(const float *f, int64_t n) {
  uint16_t *h = hbuf(n);
  for (int64_t i = 0; i < n; i++) h[i] = srlm_f32_to_bf16(f[i]);
  return h;
}

/* backend.h: on the CPU a query of attention_kv gets the bits of the full forward, in fp32
 * and in bf16 (attention.c: P enters P V in bf16 parts, element by element, so a tile does
 * not change them). Every sequence in its own slot (reversed order), fed as a prefill of
 * its first half then one token at a time, at every ISA level. */
static void test_kv_matches_forward(srlm_backend *be) {
  static const struct { int B; int32_t lens[4]; int64_t NH, NKV, HS, W; } cases[] = {
      {1, {1}, 1, 1, 2, 0},         {2, {5, 3}, 2, 1, 8, 0},  {3, {70, 1, 130}, 4, 2, 16, 0},
      {2, {100, 67}, 4, 4, 32, 17}, {1, {200}, 6, 2, 64, 64}, {4, {0, 9, 65, 2}, 2, 2, 4, 3},
  };
  for (int bf = 0; bf < 2; bf++) {
    const srlm_dtype dt = bf ? SRLM_BF16 : SRLM_F32;
    const size_t es = bf ? 2 : 4; /* element size */
    for (int isa = 0; isa < N_ISAS; isa++) {
      if (set_level(k_isas[isa]) != SRLM_OK) continue;
      for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int B = cases[t].B;
        const int64_t NH = cases[t].NH, NKV = cases[t].NKV, HS = cases[t].HS, W = cases[t].W;
        int32_t cu[5] = {0};
        for (int b = 0; b < B; b++) cu[b + 1] = cu[b] + cases[t].lens[b];
        const int64_t T = cu[B], nq = T * NH * HS, nk = T * NKV * HS, max_len = 256, kvld = NKV * HS;
        const float scale = 1.0f / sqrtf((float)HS);
        float *q = fbuf(nq), *k = fbuf(nk), *v = fbuf(nk), *out = fbuf(nq), *kout = fbuf(nq);
        float *kc = fbuf(B * max_len * kvld), *vc = fbuf(B * max_len * kvld);
        fill_uniform(q, nq, -2, 2);
        fill_uniform(k, nk, -2, 2);
        fill_uniform(v, nk, -1, 1);
        uint16_t *qh = bf16_of(q, nq), *kh = bf16_of(k, nk), *vh = bf16_of(v, nk);
        char *qd = bf ? (char *)qh : (char *)q, *kd = bf ? (char *)kh : (char *)k, *vd = bf ? (char *)vh : (char *)v;
        char *od = (char *)out, *kod = (char *)kout, *kcd = (char *)kc, *vcd = (char *)vc; /* es-sized elements */
        srlm_attention_params p = {.out = od, .q = qd, .k = kd, .v = vd, .cu_seqlens = cu, .B = B, .T = T, .NH = NH,
                                   .NKV = NKV, .HS = HS, .window = W, .scale = scale, .dtype = dt};
        EXPECT_EQ_INT(SRLM_OP(be, attention_forward, p), SRLM_OK);
        for (int b = 0; b < B; b++) {
          const int slot = B - 1 - b, L = cu[b + 1] - cu[b];
          memcpy(kcd + (size_t)(slot * max_len * kvld) * es, kd + (size_t)(cu[b] * kvld) * es, (size_t)(L * kvld) * es);
          memcpy(vcd + (size_t)(slot * max_len * kvld) * es, vd + (size_t)(cu[b] * kvld) * es, (size_t)(L * kvld) * es);
          for (int32_t done = 0; done < L;) {
            const int32_t step = done == 0 ? (L + 1) / 2 : 1;
            int32_t sl[1] = {slot}, cq[2] = {0, step}, len[1] = {done + step};
            const size_t row = (size_t)((cu[b] + done) * NH * HS) * es;
            srlm_attention_kv_params kp = {.out = kod + row, .q = qd + row, .k_cache = kcd, .v_cache = vcd,
                                           .slot = sl, .cu_q = cq, .kv_len = len, .n = 1, .NQ = step, .NH = NH,
                                           .NKV = NKV, .HS = HS, .max_slots = B, .max_len = max_len, .window = W,
                                           .scale = scale, .dtype = dt};
            EXPECT_EQ_INT(SRLM_OP(be, attention_kv, kp), SRLM_OK);
            done += step;
          }
        }
        const int same = memcmp(kod, od, (size_t)nq * es) == 0;
        EXPECT(same, "%s %s: attention_kv vs attention_forward (case %zu): not the same bits", k_isas[isa],
               bf ? "bf16" : "fp32", t);
        free(q), free(k), free(v), free(out), free(kout), free(kc), free(vc), free(qh), free(kh), free(vh);
      }
    }
  }
  EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
}

/* ---- threads: the same bits with 1 and 3 threads ---------------------------------------- */

/* Every op that splits work over threads, on inputs long enough to be split, each writing its
 * outputs into out (at most cap floats); returns how many it wrote. */
static int64_t run_threaded_ops(srlm_backend *be, float *out, int64_t cap) {
  enum { B = 3, NH = 4, NKV = 2, HS = 16, C = 72, FF = 100, V = 3001 };
  const int32_t cu[B + 1] = {0, 77, 80, 211};
  const int64_t T = cu[B];
  float *x = fbuf(T * C), *w = fbuf(C * FF), *q = fbuf(T * NH * HS), *k = fbuf(T * NKV * HS);
  float *v = fbuf(T * NKV * HS), *dout = fbuf(T * NH * HS), *inv = fbuf(HS / 2), *hw = fbuf(V * C);
  int32_t pos[211], tg[211];
  for (int64_t i = 0; i < T; i++) pos[i] = (int32_t)i, tg[i] = (int32_t)((i * 7919) % V);
  for (int d = 0; d < HS / 2; d++) inv[d] = powf(0.5f, (float)d);
  g_purpose = 900; /* the same inputs on every call */
  fill_uniform(x, T * C, -1, 1);
  fill_uniform(w, C * FF, -1, 1);
  fill_uniform(q, T * NH * HS, -1, 1);
  fill_uniform(k, T * NKV * HS, -1, 1);
  fill_uniform(v, T * NKV * HS, -1, 1);
  fill_uniform(dout, T * NH * HS, -1, 1);
  fill_uniform(hw, V * C, -1, 1);
  float *o = out;
#define NEXT(n)                                                                   \
  do {                                                                            \
    o += (n);                                                                     \
    SRLM_CHECK(o - out <= cap, "outputs past %lld floats: raise cap", (long long)cap); \
  } while (0)
  srlm_matmul_params mp = {.c = o, .a = x, .b = w, .M = T, .N = FF, .K = C};
  EXPECT_EQ_INT(SRLM_OP(be, matmul, mp), SRLM_OK);
  NEXT(T * FF);
  mp = (srlm_matmul_params){.c = o, .a = x, .b = x, .M = C, .N = C, .K = T, .trans_a = 1};
  EXPECT_EQ_INT(SRLM_OP(be, matmul, mp), SRLM_OK);
  NEXT(C * C);
  srlm_rmsnorm_params rf = {.out = o, .rstd = o + T * C, .x = x, .w = w, .N = T, .C = C, .eps = 1e-6f};
  EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_forward, rf), SRLM_OK);
  NEXT(T * C + T);
  srlm_rmsnorm_bwd_params rb = {.dx = o, .dw = o + T * C, .dy = x + C, .x = x, .w = w, .rstd = w + C, .N = T - 1,
                                .C = C}; /* dy: the next row's x */
  EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_backward, rb), SRLM_OK);
  NEXT(T * C + C);
  srlm_colsum_params cs = {.out = o, .x = x, .N = T, .C = C};
  EXPECT_EQ_INT(SRLM_OP(be, colsum, cs), SRLM_OK);
  NEXT(C);
  memcpy(o, q, (size_t)(T * NH * HS) * sizeof *o);
  srlm_rope_params rp = {.x = o, .pos = pos, .inv_freq = inv, .N = T, .H = NH, .HS = HS};
  EXPECT_EQ_INT(SRLM_OP(be, rope_forward, rp), SRLM_OK);
  NEXT(T * NH * HS);
  float *att = o, *lse = o + T * NH * HS;
  srlm_attention_params ap = {.out = att, .lse = lse, .q = q, .k = k, .v = v, .cu_seqlens = cu, .B = B, .T = T,
                              .NH = NH, .NKV = NKV, .HS = HS, .window = 50, .scale = 0.25f};
  EXPECT_EQ_INT(SRLM_OP(be, attention_forward, ap), SRLM_OK);
  NEXT(T * NH * HS + T * NH);
  srlm_attention_bwd_params bp = {.dq = o, .dk = o + T * NH * HS, .dv = o + T * NH * HS + T * NKV * HS, .dout = dout,
                                  .out = att, .lse = lse, .q = q, .k = k, .v = v, .cu_seqlens = cu, .B = B, .T = T,
                                  .NH = NH, .NKV = NKV, .HS = HS, .window = 50, .scale = 0.25f};
  EXPECT_EQ_INT(SRLM_OP(be, attention_backward, bp), SRLM_OK);
  NEXT(T * NH * HS + 2 * T * NKV * HS);
  srlm_swiglu_params sf = {.h = o, .gate = x, .up = x + C, .N = T - 1, .FF = C}; /* up: the next row's */
  EXPECT_EQ_INT(SRLM_OP(be, swiglu_forward, sf), SRLM_OK);
  NEXT((T - 1) * C);
  srlm_swiglu_bwd_params sw = {.dgate = o, .dup = o + (T - 2) * C, .dh = x, .gate = x + C, .up = x + 2 * C,
                               .N = T - 2, .FF = C}; /* three different inputs: rows apart */
  EXPECT_EQ_INT(SRLM_OP(be, swiglu_backward, sw), SRLM_OK);
  NEXT(2 * (T - 2) * C);
  float *logp = o, *hlse = o + T;
  srlm_lmhead_params lf = {.logp = logp, .lse = hlse, .x = x, .w = hw, .targets = tg, .N = T, .C = C, .V = V};
  EXPECT_EQ_INT(SRLM_OP(be, lmhead_forward, lf), SRLM_OK);
  NEXT(2 * T);
  memset(o + T * C, 0, (size_t)(V * C) * sizeof *o);
  srlm_lmhead_bwd_params lb = {.dx = o, .dw = o + T * C, .x = x, .w = hw, .lse = hlse, .dlogp = x, .targets = tg,
                               .N = T, .C = C, .V = V};
  EXPECT_EQ_INT(SRLM_OP(be, lmhead_backward, lb), SRLM_OK);
  NEXT(T * C + V * C);
  memset(o, 0, (size_t)(V * C) * sizeof *o);
  srlm_embedding_bwd_params eb = {.dtable = o, .dout = x, .ids = tg, .N = T, .V = V, .C = C};
  EXPECT_EQ_INT(SRLM_OP(be, embedding_backward, eb), SRLM_OK);
  NEXT(V * C);
  double ss = 0;
  srlm_sumsq_params sp = {.out = &ss, .x = hw, .n = V * C};
  EXPECT_EQ_INT(SRLM_OP(be, grad_sumsq, sp), SRLM_OK);
  memcpy(o, &ss, sizeof ss);
  NEXT(2);
  memcpy(o, hw, (size_t)(V * C) * sizeof *o); /* master */
  memset(o + V * C, 0, (size_t)(2 * V * C) * sizeof *o);
  srlm_adamw_params aw = {.master = o, .m = o + V * C, .v = o + 2 * V * C, .grad = hw, .n = V * C, .grad_scale = 0.5f,
                          .decay_mul = 0.999f, .one_minus_beta1 = 0.1f, .beta2 = 0.95f, .one_minus_beta2 = 0.05f,
                          .step_size = 1e-3f, .bc2_sqrt = 0.3f, .eps = 1e-8f};
  EXPECT_EQ_INT(SRLM_OP(be, adamw, aw), SRLM_OK);
  NEXT(3 * V * C);
#undef NEXT
  free(x), free(w), free(q), free(k), free(v), free(dout), free(inv), free(hw);
  return o - out;
}

static void test_threads(srlm_backend *be) {
#ifdef _OPENMP
  const int64_t cap = 2000000;
  float *o1 = fbuf(cap), *o3 = fbuf(cap);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const int64_t n1 = run_threaded_ops(be, o1, cap);
  omp_set_num_threads(3);
  const int64_t n3 = run_threaded_ops(be, o3, cap);
  omp_set_num_threads(saved);
  EXPECT(n1 == n3, "outputs %lld vs %lld", (long long)n1, (long long)n3);
  EXPECT_SAME_BITS(o1, o3, n1, "the ops with 1 vs 3 threads");
  free(o1), free(o3);
#else
  (void)be;
  fprintf(stderr, "  (built without OpenMP: thread-count check not applicable)\n");
#endif
}

/* ---- ISA levels: every op the same bits at every level this CPU has -------------------- */

/* The ops above (matmul, norms, attention forward/backward with its softmax sums, SwiGLU's
 * and the LM head's exp, AdamW, ...) at each ISA level against the CPU's best: one
 * arithmetic at every level (matmul's fma chains, vexp.c's lane order), so a seed trains
 * the same model on an AVX-512 machine and on an AVX2 one. */
static void test_isa_levels(srlm_backend *be) {
  const int64_t cap = 2000000;
  float *ref = fbuf(cap), *o = fbuf(cap);
  EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
  const char *best = srlm_backend_cpu_isa();
  const int64_t n = run_threaded_ops(be, ref, cap);
  for (int i = 0; i < N_ISAS; i++) {
    if (!strcmp(k_isas[i], best) || set_level(k_isas[i]) != SRLM_OK) continue;
    memset(o, 0, (size_t)cap * sizeof *o); /* some ops accumulate into their outputs */
    const int64_t m = run_threaded_ops(be, o, cap);
    EXPECT(m == n, "%s: outputs %lld vs %lld", k_isas[i], (long long)m, (long long)n);
    EXPECT_SAME_BITS(o, ref, n, "the ops at ISA level %s vs %s", k_isas[i], best);
  }
  EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
  free(ref), free(o);
}

/* ---- RMSNorm: rows summed side by side give each row its own bits ------------------------- */

/* rmsnorm.c sums the rows of a group side by side, each row its own chain, and the rows
 * past the last whole group one at a time: every row of a call, fp32 and bf16, forward
 * (out, rstd) and backward (dx), has the bits of that row computed alone (N = 1). */
static void test_rmsnorm_rows(srlm_backend *be) {
  enum { N = 2 * 8 + 5, C = 53 };
  float *x = fbuf(N * C), *dy = fbuf(N * C), *w = fbuf(C), *rstd = fbuf(N), *r1 = fbuf(1), *dw = fbuf(C);
  g_purpose = 960;
  fill_uniform(x, N * C, -2, 2);
  fill_uniform(dy, N * C, -1, 1);
  fill_uniform(w, C, 0.5, 1.5);
  for (int bf = 0; bf < 2; bf++) {
    const srlm_dtype dt = bf ? SRLM_BF16 : SRLM_F32;
    const size_t es = bf ? 2 : 4;
    char *xs = srlm_xcalloc(N * C, es), *dys = srlm_xcalloc(N * C, es), *ws = srlm_xcalloc(C, es);
    char *out = srlm_xcalloc(N * C, es), *row = srlm_xcalloc(C, es), *dx = srlm_xcalloc(N * C, es);
    srlm_convert(xs, dt, x, SRLM_F32, N * C);
    srlm_convert(dys, dt, dy, SRLM_F32, N * C);
    srlm_convert(ws, dt, w, SRLM_F32, C);
    srlm_rmsnorm_params f = {.out = out, .rstd = rstd, .x = xs, .w = ws, .N = N, .C = C, .eps = 1e-5f, .dtype = dt};
    EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_forward, f), SRLM_OK);
    srlm_rmsnorm_bwd_params b = {.dx = dx, .dw = dw, .dy = dys, .x = xs, .w = ws, .rstd = rstd, .N = N, .C = C,
                                 .dtype = dt};
    EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_backward, b), SRLM_OK);
    for (int64_t n = 0; n < N; n++) {
      srlm_rmsnorm_params f1 = f;
      f1.out = row, f1.rstd = r1, f1.x = xs + n * C * es, f1.N = 1;
      EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_forward, f1), SRLM_OK);
      EXPECT(!memcmp(row, out + n * C * es, C * es) && !memcmp(r1, rstd + n, sizeof *r1),
             "%s rmsnorm_forward row %lld alone: not the bits of the %d-row call", bf ? "bf16" : "fp32", (long long)n, N);
      srlm_rmsnorm_bwd_params b1 = b;
      b1.dx = row, b1.dy = dys + n * C * es, b1.x = xs + n * C * es, b1.rstd = rstd + n, b1.N = 1;
      EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_backward, b1), SRLM_OK);
      EXPECT(!memcmp(row, dx + n * C * es, C * es), "%s rmsnorm_backward row %lld alone: not the bits of dx in the "
             "%d-row call", bf ? "bf16" : "fp32", (long long)n, N);
    }
    free(xs), free(dys), free(ws), free(out), free(row), free(dx);
  }
  free(x), free(dy), free(w), free(rstd), free(r1), free(dw);
}

/* RoPE's cos/sin table (rope.c: where positions repeat) against rows rotated one call each
 * (no table): the same bits, forward and backward, fp32 and bf16. */
static void test_rope_table(srlm_backend *be) {
  enum { N = 23, H = 3, HS = 10 };
  float *x = fbuf(N * H * HS), *inv = fbuf(HS / 2);
  int32_t pos[N];
  for (int n = 0; n < N; n++) pos[n] = (int32_t)((n * 7) % 9); /* positions 0..8, repeated */
  for (int d = 0; d < HS / 2; d++) inv[d] = powf(0.3f, (float)d);
  g_purpose = 970;
  fill_uniform(x, N * H * HS, -2, 2);
  for (int bf = 0; bf < 2; bf++)
    for (int back = 0; back < 2; back++) {
      const srlm_dtype dt = bf ? SRLM_BF16 : SRLM_F32;
      const size_t es = bf ? 2 : 4, rb = (size_t)(H * HS) * es;
      char *all = srlm_xcalloc(N * H * HS, es), *one = srlm_xcalloc(N * H * HS, es);
      srlm_convert(all, dt, x, SRLM_F32, N * H * HS);
      memcpy(one, all, N * rb);
      srlm_rope_params p = {.x = all, .pos = pos, .inv_freq = inv, .N = N, .H = H, .HS = HS, .dtype = dt};
      EXPECT_EQ_INT(back ? SRLM_OP(be, rope_backward, p) : SRLM_OP(be, rope_forward, p), SRLM_OK);
      for (int n = 0; n < N; n++) {
        srlm_rope_params q = p;
        q.x = one + n * rb, q.pos = pos + n, q.N = 1;
        EXPECT_EQ_INT(back ? SRLM_OP(be, rope_backward, q) : SRLM_OP(be, rope_forward, q), SRLM_OK);
      }
      EXPECT(!memcmp(all, one, N * rb), "%s rope_%s: rows with repeated positions (cos/sin table) differ from rows "
             "rotated alone", bf ? "bf16" : "fp32", back ? "backward" : "forward");
      free(all), free(one);
    }
  free(x), free(inv);
}

/* ---- bf16: the native ops against their staged definition --------------------------------- */

static uint16_t *hdup(const uint16_t *h, int64_t n) {
  uint16_t *d = hbuf(n);
  memcpy(d, h, (size_t)n * sizeof *d);
  return d;
}

/* got (bf16) against the fp32 reference ref rounded to nearest even. */
static void expect_rounded(const uint16_t *got, const float *ref, int64_t n, const char *what, const char *isa,
                           int threads) {
  int64_t bad = -1;
  for (int64_t i = 0; i < n && bad < 0; i++)
    if (got[i] != srlm_f32_to_bf16(ref[i])) bad = i;
  if (bad >= 0)
    fprintf(stderr, "  element %lld of %lld: 0x%04x, staged 0x%04x (%.9g)\n", (long long)bad, (long long)n,
            (unsigned)got[bad], (unsigned)srlm_f32_to_bf16(ref[bad]), (double)ref[bad]);
  EXPECT(bad < 0, "bf16 %s at %s, %d threads: not the staged fp32 result rounded", what, isa, threads);
}

/* The ops computed in fp32 a block or a row at a time (SwiGLU, add, RMSNorm, RoPE): each
 * bf16 result is the fp32 op on the widened inputs with its bf16 outputs rounded (the
 * staging of cpu_ops.h), bit for bit, fp32 outputs (rstd, dw) included; separate and
 * in-place outputs; lengths that leave partial vectors, blocks and row blocks. */
static void check_bf16_native(srlm_backend *be, const char *isa, int threads) {
  enum { NA = 3 * 1024 + 37, NF = 5, FF = 1037, N = 131, C = 37, NR = 7, H = 3, HS = 22 };
  const int64_t NS = NF * FF, NX = N * C, NRH = NR * H * HS;
  const int64_t NMAX = NA > NX ? (NA > NRH ? NA : NRH) : (NX > NRH ? NX : NRH); /* o, ref: any op's output */
  uint16_t *a = hbuf(NA), *b = hbuf(NA), *g = hbuf(NS), *u = hbuf(NS), *dh = hbuf(NS);
  uint16_t *x = hbuf(NX), *dy = hbuf(NX), *w = hbuf(C), *xr = hbuf(NRH);
  float *fa = fbuf(NA), *fb = fbuf(NA), *fg = fbuf(NS), *fu = fbuf(NS), *fdh = fbuf(NS);
  float *fx = fbuf(NX), *fdy = fbuf(NX), *fw = fbuf(C), *fxr = fbuf(NRH);
  float *ref = fbuf(NMAX), *ref2 = fbuf(NS), *rstd = fbuf(N), *rstd_ref = fbuf(N), *dw = fbuf(C), *dw_ref = fbuf(C);
  uint16_t *o = hbuf(NMAX), *o2 = hbuf(NS);
  g_purpose = 950;
  fill_bf16(a, fa, NA, -3, 3);
  fill_bf16(b, fb, NA, -3, 3);
  fill_bf16(g, fg, NS, -8, 8);
  fill_bf16(u, fu, NS, -2, 2);
  fill_bf16(dh, fdh, NS, -1, 1);
  fill_bf16(x, fx, NX, -2, 2);
  fill_bf16(dy, fdy, NX, -1, 1);
  fill_bf16(w, fw, C, 0.5, 1.5);
  fill_bf16(xr, fxr, NRH, -2, 2);
  const srlm_dtype BF = SRLM_BF16;

  for (int inplace = 0; inplace < 2; inplace++) {
    uint16_t *ai = hdup(a, NA);
    srlm_add_params ap = {.out = inplace ? ai : o, .a = ai, .b = b, .n = NA, .dtype = BF};
    EXPECT_EQ_INT(SRLM_OP(be, add, ap), SRLM_OK);
    srlm_add_params apf = {.out = ref, .a = fa, .b = fb, .n = NA};
    EXPECT_EQ_INT(SRLM_OP(be, add, apf), SRLM_OK);
    expect_rounded(inplace ? ai : o, ref, NA, inplace ? "add in place" : "add", isa, threads);
    free(ai);

    uint16_t *gi = hdup(g, NS), *ui = hdup(u, NS);
    srlm_swiglu_params sp = {.h = inplace ? gi : o2, .gate = gi, .up = ui, .N = NF, .FF = FF, .dtype = BF};
    EXPECT_EQ_INT(SRLM_OP(be, swiglu_forward, sp), SRLM_OK);
    srlm_swiglu_params spf = {.h = ref2, .gate = fg, .up = fu, .N = NF, .FF = FF};
    EXPECT_EQ_INT(SRLM_OP(be, swiglu_forward, spf), SRLM_OK);
    expect_rounded(inplace ? gi : o2, ref2, NS, inplace ? "swiglu_forward in place" : "swiglu_forward", isa, threads);
    memcpy(gi, g, (size_t)NS * sizeof *gi);
    uint16_t *dg = hbuf(NS), *du = hbuf(NS);
    float *fdg = fbuf(NS), *fdu = fbuf(NS);
    srlm_swiglu_bwd_params sb = {.dgate = inplace ? gi : dg, .dup = inplace ? ui : du, .dh = dh, .gate = gi, .up = ui,
                                 .N = NF, .FF = FF, .dtype = BF};
    EXPECT_EQ_INT(SRLM_OP(be, swiglu_backward, sb), SRLM_OK);
    srlm_swiglu_bwd_params sbf = {.dgate = fdg, .dup = fdu, .dh = fdh, .gate = fg, .up = fu, .N = NF, .FF = FF};
    EXPECT_EQ_INT(SRLM_OP(be, swiglu_backward, sbf), SRLM_OK);
    expect_rounded(inplace ? gi : dg, fdg, NS, "swiglu_backward dgate", isa, threads);
    expect_rounded(inplace ? ui : du, fdu, NS, "swiglu_backward dup", isa, threads);
    free(gi), free(ui), free(dg), free(du), free(fdg), free(fdu);

    uint16_t *xi = hdup(x, NX);
    srlm_rmsnorm_params rf = {.out = inplace ? xi : o, .rstd = rstd, .x = xi, .w = w, .N = N, .C = C, .eps = 1e-5f,
                              .dtype = BF};
    EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_forward, rf), SRLM_OK);
    srlm_rmsnorm_params rff = {.out = ref, .rstd = rstd_ref, .x = fx, .w = fw, .N = N, .C = C, .eps = 1e-5f};
    EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_forward, rff), SRLM_OK);
    expect_rounded(inplace ? xi : o, ref, NX, inplace ? "rmsnorm_forward in place" : "rmsnorm_forward", isa, threads);
    EXPECT_SAME_BITS(rstd, rstd_ref, N, "bf16 rmsnorm_forward's rstd at %s, %d threads", isa, threads);
    free(xi);
    uint16_t *dyi = hdup(dy, NX);
    fill_uniform(dw, C, -1, 1);
    memcpy(dw_ref, dw, (size_t)C * sizeof *dw);
    srlm_rmsnorm_bwd_params rb = {.dx = inplace ? dyi : o, .dw = dw, .dy = dyi, .x = x, .w = w, .rstd = rstd_ref,
                                  .N = N, .C = C, .dtype = BF};
    EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_backward, rb), SRLM_OK);
    srlm_rmsnorm_bwd_params rbf = {.dx = ref, .dw = dw_ref, .dy = fdy, .x = fx, .w = fw, .rstd = rstd_ref, .N = N, .C = C};
    EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_backward, rbf), SRLM_OK);
    expect_rounded(inplace ? dyi : o, ref, NX, inplace ? "rmsnorm_backward dx in place" : "rmsnorm_backward dx", isa,
                   threads);
    EXPECT_SAME_BITS(dw, dw_ref, C, "bf16 rmsnorm_backward's dw at %s, %d threads", isa, threads);
    free(dyi);
  }

  int32_t pos[NR];
  float inv[HS / 2];
  for (int i = 0; i < NR; i++) pos[i] = 3 + 17 * i;
  for (int d = 0; d < HS / 2; d++) inv[d] = powf(0.6f, (float)d);
  for (int dir = 0; dir < 2; dir++) {
    uint16_t *xi = hdup(xr, NRH);
    memcpy(ref, fxr, (size_t)NRH * sizeof *ref);
    srlm_rope_params rp = {.x = xi, .pos = pos, .inv_freq = inv, .N = NR, .H = H, .HS = HS, .dtype = BF};
    srlm_rope_params rpf = {.x = ref, .pos = pos, .inv_freq = inv, .N = NR, .H = H, .HS = HS};
    EXPECT_EQ_INT(dir ? SRLM_OP(be, rope_backward, rp) : SRLM_OP(be, rope_forward, rp), SRLM_OK);
    EXPECT_EQ_INT(dir ? SRLM_OP(be, rope_backward, rpf) : SRLM_OP(be, rope_forward, rpf), SRLM_OK);
    expect_rounded(xi, ref, NRH, dir ? "rope_backward" : "rope_forward", isa, threads);
    free(xi);
  }
  free(a), free(b), free(g), free(u), free(dh), free(x), free(dy), free(w), free(xr);
  free(fa), free(fb), free(fg), free(fu), free(fdh), free(fx), free(fdy), free(fw), free(fxr);
  free(ref), free(ref2), free(rstd), free(rstd_ref), free(dw), free(dw_ref), free(o), free(o2);
}

/* bf16 attention does not give the bits of its staged definition: P and dS enter their
 * products as two bf16 parts each, hi = bf16(x) and lo = bf16(x - hi) (attention.c), so a
 * product term errs by up to 2^-16 of itself (lo's rounding: 2^-8 of x - hi, itself at
 * most 2^-8 of x) where fp32 P errs by 2^-24. Against the fp32 op on the widened inputs a
 * bf16 result may then differ by the output's own rounding (half a bf16 ulp) plus at most
 * 2^-16 of the sum of its terms' magnitudes. The check: the part of |got - ref| past half
 * an ulp of max(|got|, |ref|), over the output's max |ref|, at most ATTN_BF16_EXCESS =
 * 2^-16, the per-term bound with the terms' magnitudes summing to the output's max (they
 * do for out: an average of v). Measured on these inputs (every level, thread count, NKV,
 * window; the same bits everywhere): 2^-20.0, 16x below. A single bf16 P or dS (lo
 * dropped) measures 2^-10.3 to 2^-9.2, a wrong row stride or a lost 1/sum more. */
#define ATTN_BF16_EXCESS 0x1p-16
static double g_attn_excess; /* the worst excess seen, for the summary line */

/* got (bf16) against the fp32 reference ref (n values), as ATTN_BF16_EXCESS says. */
static void expect_bf16_near(const uint16_t *got, const float *ref, int64_t n, const char *what, const char *isa,
                             int threads) {
  double mx = 0, worst = 0;
  int64_t at = -1;
  for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)ref[i]));
  for (int64_t i = 0; i < n; i++) {
    const double g = srlm_bf16_to_f32(got[i]), r = ref[i], m = fmax(fabs(g), fabs(r));
    const double e = fabs(g - r) - (m > 0 ? ldexp(1.0, ilogb(m) - 8) : 0.0);
    if (!(e <= worst)) worst = e, at = i; /* NaN counts as worst */
  }
  const double rel = mx > 0 ? worst / mx : worst;
  if (rel > g_attn_excess || rel != rel) g_attn_excess = rel;
  if (!(rel <= ATTN_BF16_EXCESS))
    fprintf(stderr, "  element %lld of %lld: %.9g, fp32 %.9g (max |fp32| %.6g): excess 2^%.2f of the max\n",
            (long long)at, (long long)n, (double)srlm_bf16_to_f32(got[at]), (double)ref[at], mx, log2(rel));
  EXPECT(rel <= ATTN_BF16_EXCESS, "bf16 %s at %s, %d threads: past the fp32 result's rounding by more than 2^%d", what,
         isa, threads, ilogb(ATTN_BF16_EXCESS));
}

/* Attention on bf16 tensors against the fp32 op on the widened tensors (expect_bf16_near;
 * lse the same bits: the scores are the same chains): forward (with and without a window),
 * backward, and the KV-cache forward (a decode of 3 queries and a prefill); tiles with
 * partial rows, a head size that is not a multiple of 16. NKV = 1: every task reads the
 * one key/value head, so below the dot kernel's level a thread's next task finds rows of it
 * widened (attention.c's bf16_kv), sometimes fewer than it needs (the prefill's second
 * tile). Every output (bf16 values, lse bits) goes to res in order; returns how many
 * uint16 it wrote (at most ATTN_RES). */
enum { ATTN_RES = 200000 };
static int64_t check_bf16_attention(srlm_backend *be, const char *isa, int threads, int64_t NKV, uint16_t *res) {
  enum { B = 3, NH = 6, HS = 20, SLOTS = 2, MAXL = 80 };
  const int32_t cu[B + 1] = {0, 70, 75, 141};
  const int64_t T = cu[B], nq = T * NH * HS, nkv = T * NKV * HS, ncache = SLOTS * MAXL * NKV * HS;
  uint16_t *q = hbuf(nq), *k = hbuf(nkv), *v = hbuf(nkv), *dout = hbuf(nq), *kc = hbuf(ncache), *vc = hbuf(ncache);
  float *fq = fbuf(nq), *fk = fbuf(nkv), *fv = fbuf(nkv), *fdout = fbuf(nq), *fkc = fbuf(ncache), *fvc = fbuf(ncache);
  uint16_t *out = hbuf(nq), *dq = hbuf(nq), *dk = hbuf(nkv), *dv = hbuf(nkv);
  float *fout = fbuf(nq), *fdq = fbuf(nq), *fdk = fbuf(nkv), *fdv = fbuf(nkv), *lse = fbuf(T * NH), *flse = fbuf(T * NH);
  uint16_t *r = res;
#define RECORD(x, n)                                                                         \
  do {                                                                                       \
    SRLM_CHECK(r - res + (int64_t)sizeof(*(x)) / 2 * (n) <= ATTN_RES, "raise ATTN_RES");     \
    memcpy(r, (x), (size_t)(n) * sizeof(*(x)));                                              \
    r += (int64_t)sizeof(*(x)) / 2 * (n);                                                    \
  } while (0)
  g_purpose = 970;
  fill_bf16(q, fq, nq, -2, 2);
  fill_bf16(k, fk, nkv, -2, 2);
  fill_bf16(v, fv, nkv, -1, 1);
  fill_bf16(dout, fdout, nq, -1, 1);
  fill_bf16(kc, fkc, ncache, -2, 2);
  fill_bf16(vc, fvc, ncache, -1, 1);
  for (int win = 0; win <= 33; win += 33) {
    char what[96]; /* "attention_backward (NKV <int64>, window <int>) dq" at its longest */
    srlm_attention_params ap = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .cu_seqlens = cu, .B = B, .T = T,
                                .NH = NH, .NKV = NKV, .HS = HS, .window = win, .scale = 0.3f, .dtype = SRLM_BF16};
    EXPECT_EQ_INT(SRLM_OP(be, attention_forward, ap), SRLM_OK);
    srlm_attention_params apf = ap;
    apf.out = fout, apf.lse = flse, apf.q = fq, apf.k = fk, apf.v = fv, apf.dtype = SRLM_F32;
    EXPECT_EQ_INT(SRLM_OP(be, attention_forward, apf), SRLM_OK);
    snprintf(what, sizeof what, "attention_forward (NKV %lld, window %d)", (long long)NKV, win);
    expect_bf16_near(out, fout, nq, what, isa, threads);
    EXPECT_SAME_BITS(lse, flse, T * NH, "bf16 %s's lse at %s, %d threads", what, isa, threads);
    RECORD(out, nq);
    RECORD(lse, T * NH);
    /* the backward reads the rounded out, as a bf16 graph holds it */
    for (int64_t i = 0; i < nq; i++) fout[i] = srlm_bf16_to_f32(out[i]);
    srlm_attention_bwd_params bp = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .out = out, .lse = lse, .q = q,
                                    .k = k, .v = v, .cu_seqlens = cu, .B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS,
                                    .window = win, .scale = 0.3f, .dtype = SRLM_BF16};
    EXPECT_EQ_INT(SRLM_OP(be, attention_backward, bp), SRLM_OK);
    srlm_attention_bwd_params bpf = bp;
    bpf.dq = fdq, bpf.dk = fdk, bpf.dv = fdv, bpf.dout = fdout, bpf.out = fout, bpf.lse = flse, bpf.q = fq;
    bpf.k = fk, bpf.v = fv, bpf.dtype = SRLM_F32;
    EXPECT_EQ_INT(SRLM_OP(be, attention_backward, bpf), SRLM_OK);
    snprintf(what, sizeof what, "attention_backward (NKV %lld, window %d) dq", (long long)NKV, win);
    expect_bf16_near(dq, fdq, nq, what, isa, threads);
    snprintf(what, sizeof what, "attention_backward (NKV %lld, window %d) dk", (long long)NKV, win);
    expect_bf16_near(dk, fdk, nkv, what, isa, threads);
    snprintf(what, sizeof what, "attention_backward (NKV %lld, window %d) dv", (long long)NKV, win);
    expect_bf16_near(dv, fdv, nkv, what, isa, threads);
    RECORD(dq, nq);
    RECORD(dk, nkv);
    RECORD(dv, nkv);

    /* the cache: sequence 0 decodes 3 queries at length 75 in slot 1, sequence 1 a
     * prefill of 70 in slot 0 */
    const int32_t slot[2] = {1, 0}, cuq[3] = {0, 3, 73}, kvlen[2] = {75, 70};
    srlm_attention_kv_params kp = {.out = out, .q = q, .k_cache = kc, .v_cache = vc, .slot = slot, .cu_q = cuq,
                                   .kv_len = kvlen, .n = 2, .NQ = 73, .NH = NH, .NKV = NKV, .HS = HS,
                                   .max_slots = SLOTS, .max_len = MAXL, .window = win, .scale = 0.3f,
                                   .dtype = SRLM_BF16};
    EXPECT_EQ_INT(SRLM_OP(be, attention_kv, kp), SRLM_OK);
    srlm_attention_kv_params kpf = kp;
    kpf.out = fout, kpf.q = fq, kpf.k_cache = fkc, kpf.v_cache = fvc, kpf.dtype = SRLM_F32;
    EXPECT_EQ_INT(SRLM_OP(be, attention_kv, kpf), SRLM_OK);
    snprintf(what, sizeof what, "attention_kv (NKV %lld, window %d)", (long long)NKV, win);
    expect_bf16_near(out, fout, 73 * NH * HS, what, isa, threads);
    RECORD(out, 73 * NH * HS);
  }
#undef RECORD
  free(q), free(k), free(v), free(dout), free(kc), free(vc), free(out), free(dq), free(dk), free(dv);
  free(fq), free(fk), free(fv), free(fdout), free(fkc), free(fvc), free(fout), free(fdq), free(fdk), free(fdv);
  free(lse), free(flse);
  return r - res;
}

/* attention's forward and backward pack their B operands once ahead of their tiles or per
 * product (srlm_backend_cpu_set_attention_prepack(0)): the same bits either way and with 1
 * and 3 threads, fp32 and bf16, causal with and without a window, non-causal with one
 * (whose query tiles for a key tile do not start at multiples of the tile) and without, NKV
 * 1 and 3. Head size 20 and sequences of 70, 5 and 66: panels (32 wide at the avx512 and
 * amx levels) cut in both directions. The forward packs ahead where there is no window, the
 * backward with windows too, at the levels with fp32 panels (every level but avx512bf16's,
 * whose bf16 products read bf16 rows). */
static void test_attention_prepack(srlm_backend *be) {
  enum { B = 3, NH = 6, HS = 20 };
  const int32_t cu[B + 1] = {0, 70, 75, 141};
  const int64_t T = cu[B], nq = T * NH * HS;
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
#endif
  g_purpose = 980;
  for (int bf = 0; bf <= 1; bf++)
    for (int64_t NKV = 1; NKV <= 3; NKV += 2)
      for (int form = 0; form < 4; form++) {
        const int64_t nkv = T * NKV * HS, n_out = nq + 2 * nkv;
        const int win = form == 0 || form == 3 ? 0 : 33, non_causal = form >= 2;
        const srlm_dtype dt = bf ? SRLM_BF16 : SRLM_F32;
        const size_t es = bf ? 2 : 4;
        void *q = srlm_xcalloc((size_t)nq, es), *k = srlm_xcalloc((size_t)nkv, es), *v = srlm_xcalloc((size_t)nkv, es);
        void *dout = srlm_xcalloc((size_t)nq, es), *out = srlm_xcalloc((size_t)nq, es);
        void *res[2] = {srlm_xcalloc((size_t)n_out, es), srlm_xcalloc((size_t)n_out, es)};
        float *lse = fbuf(T * NH), *tmp = fbuf(nq);
        void *xs[4] = {q, k, v, dout};
        const int64_t ns[4] = {nq, nkv, nkv, nq};
        for (int i = 0; i < 4; i++) {
          if (bf)
            fill_bf16(xs[i], tmp, ns[i], -2, 2);
          else
            fill_uniform(xs[i], ns[i], -2, 2);
        }
        srlm_attention_params ap = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .cu_seqlens = cu, .B = B,
                                    .T = T, .NH = NH, .NKV = NKV, .HS = HS, .window = win,
                                    .non_causal = non_causal, .scale = 0.3f, .dtype = dt};
        EXPECT_EQ_INT(SRLM_OP(be, attention_forward, ap), SRLM_OK);
        for (int threads = 1; threads <= 3; threads += 2) {
#ifdef _OPENMP
          omp_set_num_threads(threads);
#endif
          /* B packed per product / ahead (cfg 0 / 1), each thread count: all as the first run */
          for (int cfg = 0; cfg < 2; cfg++) {
            srlm_backend_cpu_set_attention_prepack(cfg ? SRLM_CPU_ATTENTION_PREPACK_DEFAULT : 0);
            const int first = threads == 1 && cfg == 0;
            char *o = res[!first];
            srlm_attention_bwd_params bp = {.dq = o, .dk = o + nq * es, .dv = o + (nq + nkv) * es, .dout = dout,
                                            .out = out, .lse = lse, .q = q, .k = k, .v = v, .cu_seqlens = cu,
                                            .B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .window = win,
                                            .non_causal = non_causal, .scale = 0.3f, .dtype = dt};
            EXPECT_EQ_INT(SRLM_OP(be, attention_backward, bp), SRLM_OK);
            EXPECT(first || !memcmp(res[0], res[1], (size_t)n_out * es),
                   "attention_backward (%s, NKV %lld, window %d, %s, %d threads): B packed %s changed the bits",
                   bf ? "bf16" : "fp32", (long long)NKV, win, non_causal ? "non-causal" : "causal", threads,
                   cfg ? "ahead" : "per product");
            /* the forward's output and log-sum-exp with B packed ahead or not */
            void *o2 = srlm_xcalloc((size_t)nq, es);
            float *lse2 = fbuf(T * NH);
            srlm_attention_params ap2 = ap;
            ap2.out = o2, ap2.lse = lse2;
            EXPECT_EQ_INT(SRLM_OP(be, attention_forward, ap2), SRLM_OK);
            EXPECT(!memcmp(o2, out, (size_t)nq * es) && !memcmp(lse2, lse, (size_t)(T * NH) * sizeof(float)),
                   "attention_forward (%s, NKV %lld, window %d, %s, %d threads): B packed %s changed the bits",
                   bf ? "bf16" : "fp32", (long long)NKV, win, non_causal ? "non-causal" : "causal", threads,
                   cfg ? "ahead" : "per product");
            free(o2), free(lse2);
          }
        }
        free(q), free(k), free(v), free(dout), free(out), free(res[0]), free(res[1]), free(lse), free(tmp);
      }
  srlm_backend_cpu_set_attention_prepack(SRLM_CPU_ATTENTION_PREPACK_DEFAULT);
#ifdef _OPENMP
  omp_set_num_threads(saved);
#endif
}

/* The bf16 ops at every ISA level and with 1 and 3 threads: the block/row ops against
 * staging, attention within ATTN_BF16_EXCESS of fp32 and, at every level and thread
 * count, the same bits as at the first (backend.h: the CPU's bits do not depend on them);
 * the amx level's attention, which has its own bits (attention.c: P and dS unsplit), the
 * same bits with 1 and 3 threads. */
static void test_bf16_native(srlm_backend *be) {
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
#endif
  /* [own][NKV - 1]: own = 1 for the amx level's bits, 0 for the other levels' */
  uint16_t *first[2][2] = {{hbuf(ATTN_RES), hbuf(ATTN_RES)}, {hbuf(ATTN_RES), hbuf(ATTN_RES)}}, *res = hbuf(ATTN_RES);
  int64_t n_first[2][2] = {{-1, -1}, {-1, -1}};
  const char *first_at[2] = {"", ""};
  int first_threads[2] = {0, 0};
  for (int i = 0; i < N_ISAS; i++) {
    if (set_level(k_isas[i]) != SRLM_OK) continue; /* not on this CPU */
    const int own = !strcmp(k_isas[i], "amx");
    for (int threads = 1; threads <= 3; threads += 2) {
#ifdef _OPENMP
      omp_set_num_threads(threads);
#endif
      check_bf16_native(be, k_isas[i], threads);
      for (int64_t NKV = 1; NKV <= 2; NKV++) {
        const int64_t n = check_bf16_attention(be, k_isas[i], threads, NKV, res);
        if (n_first[own][NKV - 1] < 0) {
          memcpy(first[own][NKV - 1], res, (size_t)n * sizeof *res);
          n_first[own][NKV - 1] = n, first_at[own] = k_isas[i], first_threads[own] = threads;
          continue;
        }
        int64_t d = -1;
        for (int64_t j = 0; j < n && d < 0; j++)
          if (res[j] != first[own][NKV - 1][j]) d = j;
        EXPECT(n == n_first[own][NKV - 1] && d < 0,
               "bf16 attention (NKV %lld) at %s, %d threads: not the bits of %s, %d threads (%lld of %lld values, "
               "first difference at %lld)",
               (long long)NKV, k_isas[i], threads, first_at[own], first_threads[own], (long long)n,
               (long long)n_first[own][NKV - 1], (long long)d);
      }
    }
  }
  fprintf(stderr, "  bf16 attention vs fp32: worst excess over the output's rounding 2^%.2f of the max (bound 2^%d)\n",
          log2(g_attn_excess), ilogb(ATTN_BF16_EXCESS));
#ifdef _OPENMP
  omp_set_num_threads(saved);
#endif
  EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
  free(first[0][0]), free(first[0][1]), free(first[1][0]), free(first[1][1]), free(res);
}

/* ---- parameter checks, as the CPU reports them -------------------------------------------- */

static void test_params(srlm_backend *be) {
  enum { N = 5, V = 1000 };
  float *x = srlm_xcalloc(N * N, sizeof *x), *w = srlm_xcalloc(V * N, sizeof *w), logp[N], lse[N];
  int32_t t[N] = {0, 1, 2, V, 4};
  for (int n = 0; n < N; n++) logp[n] = 123.0f;
  srlm_lmhead_params p = {.logp = logp, .lse = lse, .x = x, .w = w, .targets = t, .N = N, .C = N, .V = V};
  EXPECT_EQ_INT(SRLM_OP(be, lmhead_forward, p), SRLM_ERR_RANGE);
  EXPECT(logp[0] == 123.0f, "logp written before the targets were checked: %g", (double)logp[0]);
  t[3] = 3;
  p.w = NULL;
  EXPECT_EQ_INT(SRLM_OP(be, lmhead_forward, p), SRLM_ERR_INTERNAL);
  EXPECT_STR_EQ(srlm_error_message(), "cpu lmhead_forward: w is NULL");
  p.w = w;
  p.V = 0;
  EXPECT_EQ_INT(SRLM_OP(be, lmhead_forward, p), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "cpu lmhead_forward: V = 0 out of range");
  p.V = V;
  p.N = -1;
  EXPECT_EQ_INT(SRLM_OP(be, lmhead_forward, p), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu lmhead_forward: N = -1 rows is negative");

  srlm_rmsnorm_params r = {.out = x, .rstd = NULL, .x = x, .w = w, .N = 2, .C = 4, .eps = 0.0f};
  EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_forward, r), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "cpu rmsnorm_forward: eps = 0 must be finite and > 0");
  r.eps = 1e-6f;
  r.C = 0;
  EXPECT_EQ_INT(SRLM_OP(be, rmsnorm_forward, r), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "C = 0 out of range");

  /* strides below the row length are refused; M = 0 is nothing to do, even without C */
  srlm_matmul_params bad = {.c = x, .a = x, .b = x, .M = 2, .N = 2, .K = 2, .lda = 1};
  EXPECT_EQ_INT(SRLM_OP(be, matmul, bad), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "cpu matmul: row strides lda 1");
  srlm_matmul_params none = {.c = NULL, .M = 0, .N = 5, .K = 3};
  EXPECT_EQ_INT(SRLM_OP(be, matmul, none), SRLM_OK);

  int32_t pos[1] = {0};
  srlm_rope_params rp = {.x = x, .pos = pos, .inv_freq = w, .N = 1, .H = 1, .HS = 3};
  EXPECT_EQ_INT(SRLM_OP(be, rope_forward, rp), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "head dim HS = 3 must be even");
  free(x), free(w);
}

/* ---- memory and the registry --------------------------------------------------------------- */

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
  fprintf(stderr, "seed %llu, best ISA %s\n", (unsigned long long)g_seed, srlm_backend_cpu_isa());
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16") &&
      srlm_backend_cpu_set_isa("avx512bf16") != SRLM_OK)
    fprintf(stderr, "  NOTE: this CPU has AVX-512 BF16, but its vdpbf16ps did not give matmul's bf16 bits on the "
                    "start-up check: bf16 products run the fp32 kernels here\n");
  EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
#endif
  srlm_backend *be = srlm_backend_cpu();
  EXPECT_STR_EQ(be->name, "cpu");
  test_matmul_chain(be);
  test_matmul_chain_bf16(be);
  test_matmul_bf16_pad(be);
  test_matmul_bf16_c(be);
  test_matmul_amx(be);
  test_cast_levels(be);
  const char *pw = getenv("SRLM_CPU_PACKED_WEIGHTS");
  if (pw && !strcmp(pw, "0"))
    test_unpacked(be);
  else
    test_packed_weights(be);
  test_kv_matches_forward(be);
  EXPECT_EQ_INT(srlm_backend_cpu_set_isa("avx9"), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "unknown ISA 'avx9'");
  EXPECT_EQ_INT(srlm_backend_cpu_set_bf16_kernel("tiles"), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "unknown bf16 kernel 'tiles'");
  if (set_level("avx512bf16:fma") == SRLM_OK) {
    EXPECT(!strcmp(srlm_backend_cpu_bf16_kernel(), "fma"), "avx512bf16:fma runs %s", srlm_backend_cpu_bf16_kernel());
    EXPECT_EQ_INT(set_level("avx512bf16:dot"), SRLM_OK);
    EXPECT(!strcmp(srlm_backend_cpu_bf16_kernel(), "dot"), "avx512bf16:dot runs %s", srlm_backend_cpu_bf16_kernel());
  }
  EXPECT_EQ_INT(set_level(NULL), SRLM_OK);
  test_threads(be);
  test_isa_levels(be);
  test_rmsnorm_rows(be);
  test_rope_table(be);
  test_bf16_native(be);
  test_attention_prepack(be);
  test_params(be);
  test_memory(be);
  test_registry();
  TEST_MAIN_END();
}
