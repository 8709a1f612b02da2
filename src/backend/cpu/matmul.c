/* CPU matrix product C (+)= op(A) op(B) (+ bias): packed panels and a register-tile
 * micro-kernel (the BLIS structure), OpenMP over column panels.
 *
 * Rounding contract (backend.h): every C element is one fma chain over k = 0..K-1 in
 * order, started from 0 or from C. The micro-kernels keep MR x NR such chains in
 * registers and the K loop is only cut into KC blocks that continue the same chains,
 * so the result is the same bits for every kernel (AVX-512, AVX2, portable fmaf),
 * tile position, thread count and batch: a row of C depends only on its row of A.
 * One exception, bf16 products at the amx level (below): the tile unit's own sums, still
 * independent of tile position, thread count and batch.
 *
 * Loops, outermost first:
 *   MB rows of A are packed once (MR-row micro-panels, k-major) and shared;
 *   the column panels (NR wide) are split into one contiguous range per thread, which
 *   packs their B and runs them; a thread done with its range takes panels from the end
 *   of another's (take_panel);
 *   per thread: for each of its panels, for each KC block: pack B's KC x NR block
 *   (fits L1), then run the micro-kernel down all MB rows (A's packed rows stay in L2).
 *   Panels outside KC blocks: each weight row is read once, start to end, which is what
 *   the memory system streams best when M is small (decode); large M did not mind.
 * Edge tiles run the micro-kernel on a local MR x NR tile and copy the valid part; a tile
 * with fewer than MR rows left runs a shorter kernel (kernel.pick: at least that many
 * rows, rounded up to the kernel's next row count), decode's M = 1 a 1-row one.
 *
 * Packed weights (backend.h, matmul's b_version): a product with M <= SRLM_CPU_PACKED_MAX_M
 * whose B carries a version keeps all of B's packed blocks (every column panel, every KC
 * block, exactly what pack_b writes) in a process-wide cache keyed by B's address, and the
 * next call with the same (address, version, shape, kernel) runs on them without packing:
 * a decode step streams each weight once from the packed layout. The panels are the same,
 * so the bits are. The cache costs one more copy of the weights used at decode sizes (fp32
 * even for bf16 weights); an entry goes when its B gets a new version (replaced) or the
 * backend's forget names it. A mutex guards the cache and is held through a cached
 * product (one thread per backend instance is the contract anyway).
 *
 * bf16 products (A and B bf16, widened exactly): the same chain, with denormals flushed to
 * zero (inputs, and every fma's result: x86's DAZ and FTZ), which is what the AVX-512 BF16
 * instruction vdpbf16ps computes: per 32-bit lane it adds the products of a pair of bf16
 * elements to an fp32 sum one after the other, each product exact and each sum rounded to
 * nearest even, so with k's pairs packed (k even in the high half, added first) it is
 * the chain over k in order. Its kernel reads A and B packed as bf16 pairs (half the
 * bytes), at twice the fp32 kernels' multiply rate on AMD's Zen 4 but half of it on Intel's
 * cores, where compute-bound products run the fp32 kernel on widened operands instead
 * (dot_widen, measured once; packed weights keep the dot kernel); the fp32 kernels run a bf16 product
 * with MXCSR's FTZ and DAZ set (the portable one flushes by hand), so every level gives
 * the same bits. isa.c offers the dot-product level only when the instruction passes
 * srlm_cpu_bf16_dot_ok's products (flushing cases included). An odd K's last pair is
 * padded with A = -0 and B = +0: adding a -0 product leaves every sum as it was.
 *
 * AMX (the amx level, above avx512bf16): bf16 products on the tile unit, 32 x 32 tiles of C
 * from 32-row A and 32-column B tiles, k in chunks of 32 (16 pairs, zero-padded at K's
 * end), each chunk one TDPBF16PS. That instruction does not compute the chain: it sums a
 * chunk's 32 products its own way (measured: exactly when they share an exponent range;
 * a product more than about 2^24 below the chunk's largest is lost) and adds the sum to
 * C, rounding to nearest even. So the amx level has its own bits: for each C element
 * they depend only on its row of A, its column of B, K and C, never on the thread count,
 * tile position, M or the batch (the chunks always start at k = 0), and they are the
 * same on every call on the same CPU model; srlm_cpu_amx_ok checks that and that the
 * result stays within the chain's error bound before isa.c offers the level. Other CPU
 * models (and other levels) give other bits for bf16 products: SRLM_CPU_ISA=avx512bf16
 * keeps the chain's bits everywhere. fp32 products and every other op are unchanged at
 * the amx level, and so are products that ask for the chain (srlm_cpu_mm's chain:
 * attention's, whose key tiles start where the window does). Packing for AMX: k's pairs
 * are words with the even k in the LOW half (two bf16 in memory order); A in chunks of
 * 32 rows x 16 words (row-major, what a tile load reads), B as the dot kernel's panels.
 *
 * The kernel follows the ISA level of isa.c (the CPU's best unless forced narrower;
 * tests force each level to check that the kernels of the chain give the same bits). */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define SRLM_X86 1
#endif
/* AMX: x86-64 only (GCC's tile intrinsics are), Linux's permission call */
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define SRLM_AMX 1
#endif

#include "cpu_ops.h"

/* Blocking. First measured on a Zen 5 core (48 KiB L1d, 1 MiB L2), one thread, 200-240
 * GFLOP/s on the model's shapes: KC = 256 kept the B block (256 x 32 floats = 32 KiB) in
 * L1; MB = 192 beat 384 and 576 (A's rows stay in L2; B is re-packed per MB rows).
 * On a Zen 4 (32 KiB L1d, 1 MiB L2) the AVX-512 kernels do better with B's block in L2
 * and fewer, longer blocks (each block reloads and stores the C tiles and passes over A
 * again): fp32 KC_AVX512 = 1024 ran 1.00-1.13x of 256 on the model's shapes (2 threads;
 * 1.01-1.12x on one; 512 and 768 in between). The dot kernel's KC_DOT (in k, two per
 * packed row) does twice the work per byte: 768 ran 1.07-1.12x of 256, 1024 1.00-1.13x
 * of 768 (512 worse), 2048 (the model's largest K in one block, so its bf16 C is written
 * by the tiles) 1.02x of 1024 at K = 2048, the same elsewhere. (Interleaved runs,
 * medians.) MB = 96 and 384 did not beat 192 with them. The AVX2 and portable kernels
 * keep KC (not measured again). The AMX kernel (Sapphire Rapids class, 48 KiB L1d, 2 MiB
 * L2): KC_AMX = 256 and 512 ran slower than 2048 on every shape of bench_model's table in
 * each of three interleaved rounds (q_proj forward 545 and 548 against 805 GFLOP/s in one;
 * the machine's own speed moved 2x between rounds): the C tiles' store and reload per block
 * cost more than keeping a 16 KiB B block in L1 saves. */
enum { KC = 256, KC_AVX512 = 1024, KC_DOT = 2048, KC_AMX = 2048, MB = 192 };
_Static_assert(KC % 2 == 0 && KC_DOT % 2 == 0, "a dot kernel's k pairs must not straddle KC blocks");
_Static_assert(KC_AMX % 32 == 0, "AMX chunks of 32 k must not straddle KC blocks");

typedef void (*ukernel_fn)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int load);

/* A micro-kernel computes an MR x NR tile (kernel.pick's: its first rows) over kc values
 * of k from packed panels: fp32
 * kernels read k-major floats (a[k * MR + i], b[k * NR + j]); a dot kernel (dot = 1)
 * reads k's pairs as 32-bit words of two bf16 (a[q * MR + i], b[q * NR + j], q = k / 2);
 * the AMX kernel (dot = amx = 1) reads natural-order pairs, B as the dot kernel does and A
 * in chunks of 16 pairs, row-major (a[(c * MR + i) * 16 + q % 16], c = q / 16), K padded
 * to whole chunks. kc: the K loop's block (KC, KC_AVX512, KC_DOT or KC_AMX). */
typedef struct kernel {
  const char *name;
  int mr, nr, dot, amx;
  int64_t kc;
  ukernel_fn fn;
  /* pick(rows, stream), rows <= mr: a kernel of the same layouts that computes the tile's
     first rows rows, or a few more (rounded up to its own row count, at most mr: its
     destination must hold mr rows, as run_tile's local tile does, unless rows = mr) and,
     when stream is set, asks for B 8 KiB ahead of its reads (set for the first A panel
     when A's rows fit in L2, gemm_block: there B comes from memory, read once, in decode);
     NULL: fn for every call. Each element is computed as fn computes it (the same fma
     chain; at amx the same tile sums), so the bits are the same.
     Measured on a 2-core Xeon with AMX, streaming a packed fp32 weight at M = 1: the 8 x
     32 AVX-512 kernel read 6.7 GB/s a thread, a 1 x 32 one 13.9 (the machine's read
     rate); at M = 8 the 8 x 32 kernel read 13.7 GB/s on two threads, 23.2 when it asked
     for B into L2 8 KiB ahead (in L1, 19.7; 1 KiB ahead or into L1 only, no gain). */
  ukernel_fn (*pick)(int rows, int stream);
} kernel;

/* ---- micro-kernels: c[i, j] = fma(a[k*MR + i], b[k*NR + j], c[i, j]) over k ---------- */

enum { GEN_MR = 4, GEN_NR = 8 };

static void ukernel_generic(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int load) {
  float acc[GEN_MR][GEN_NR];
  for (int i = 0; i < GEN_MR; i++)
    for (int j = 0; j < GEN_NR; j++) acc[i][j] = load ? c[i * ldc + j] : 0.0f;
  for (int64_t k = 0; k < kc; k++)
    for (int i = 0; i < GEN_MR; i++)
      for (int j = 0; j < GEN_NR; j++) acc[i][j] = fmaf(a[k * GEN_MR + i], b[k * GEN_NR + j], acc[i][j]);
  for (int i = 0; i < GEN_MR; i++)
    for (int j = 0; j < GEN_NR; j++) c[i * ldc + j] = acc[i][j];
}

/* The portable kernel for bf16 products: the same chain, flushed by hand (DAZ on the
 * inputs, FTZ on every result). On x86 it runs under MXCSR's flags too, so its fmas flush
 * as the hardware does; elsewhere the hand flush sees the result rounded to the denormal
 * grid, so a result within 2^-150 below FLT_MIN can keep FLT_MIN where x86 (tininess
 * after rounding to 24 bits) gives 0. */
static inline float flush(float x) { return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x; }
static void ukernel_generic_ftz(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int load) {
  float acc[GEN_MR][GEN_NR];
  for (int i = 0; i < GEN_MR; i++)
    for (int j = 0; j < GEN_NR; j++) acc[i][j] = load ? flush(c[i * ldc + j]) : 0.0f;
  for (int64_t k = 0; k < kc; k++)
    for (int i = 0; i < GEN_MR; i++)
      for (int j = 0; j < GEN_NR; j++)
        acc[i][j] = flush(fmaf(flush(a[k * GEN_MR + i]), flush(b[k * GEN_NR + j]), acc[i][j]));
  for (int i = 0; i < GEN_MR; i++)
    for (int j = 0; j < GEN_NR; j++) c[i * ldc + j] = acc[i][j];
}

#ifdef SRLM_X86
/* AVX2 + FMA: 6 x 16 tile, 12 accumulators of 8 floats. */
#define ROW2(i)                                                  \
  c##i##0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + i), b0, c##i##0); \
  c##i##1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + i), b1, c##i##1);
__attribute__((target("avx2,fma"))) static void ukernel_avx2(int64_t kc, const float *a, const float *b, float *c,
                                                             int64_t ldc, int load) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  if (load) {
    c00 = _mm256_loadu_ps(c), c01 = _mm256_loadu_ps(c + 8);
    c10 = _mm256_loadu_ps(c + ldc), c11 = _mm256_loadu_ps(c + ldc + 8);
    c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
    c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
    c40 = _mm256_loadu_ps(c + 4 * ldc), c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
    c50 = _mm256_loadu_ps(c + 5 * ldc), c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
  } else {
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; k++, a += 6, b += 16) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    ROW2(0) ROW2(1) ROW2(2) ROW2(3) ROW2(4) ROW2(5)
  }
  _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01);
  _mm256_storeu_ps(c + ldc, c10), _mm256_storeu_ps(c + ldc + 8, c11);
  _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
  _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
  _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
  _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}
#undef ROW2

/* How far ahead of its reads of B a streaming kernel asks for B (into L2), bytes. */
enum { PF_AHEAD = 8192 };

/* AVX2 + FMA: the first R rows of the 6 x 16 tile, A still packed 6 rows a k; PF: B streams
 * (kernel.pick). */
__attribute__((target("avx2,fma"), always_inline)) static inline void avx2_rows(const int R, const int PF, int64_t kc,
                                                                               const float *a, const float *b, float *c,
                                                                               int64_t ldc, int load) {
  __m256 acc[6][2];
#pragma GCC unroll 6
  for (int i = 0; i < R; i++) {
    acc[i][0] = load ? _mm256_loadu_ps(c + i * ldc) : _mm256_setzero_ps();
    acc[i][1] = load ? _mm256_loadu_ps(c + i * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; k++, a += 6, b += 16) {
    if (PF) _mm_prefetch((const char *)b + PF_AHEAD, _MM_HINT_T1);
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) {
      acc[i][0] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + i), b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + i), b1, acc[i][1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < R; i++) _mm256_storeu_ps(c + i * ldc, acc[i][0]), _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
}
#define ROWS_FN(name, impl, R, PF, tgt)                                                                 \
  __attribute__((target(tgt))) static void name(int64_t kc, const float *a, const float *b, float *c, \
                                                int64_t ldc, int load) {                               \
    impl(R, PF, kc, a, b, c, ldc, load);                                                               \
  }
ROWS_FN(ukernel_avx2_1, avx2_rows, 1, 0, "avx2,fma")
ROWS_FN(ukernel_avx2_2, avx2_rows, 2, 0, "avx2,fma")
ROWS_FN(ukernel_avx2_3, avx2_rows, 3, 0, "avx2,fma")
ROWS_FN(ukernel_avx2_1s, avx2_rows, 1, 1, "avx2,fma")
ROWS_FN(ukernel_avx2_2s, avx2_rows, 2, 1, "avx2,fma")
ROWS_FN(ukernel_avx2_3s, avx2_rows, 3, 1, "avx2,fma")
ROWS_FN(ukernel_avx2_6s, avx2_rows, 6, 1, "avx2,fma")
static ukernel_fn avx2_pick(int rows, int stream) {
  if (stream) return rows == 1 ? ukernel_avx2_1s : rows == 2 ? ukernel_avx2_2s : rows == 3 ? ukernel_avx2_3s : ukernel_avx2_6s;
  return rows == 1 ? ukernel_avx2_1 : rows == 2 ? ukernel_avx2_2 : rows == 3 ? ukernel_avx2_3 : ukernel_avx2;
}

/* AVX-512: 8 x 32 tile, 16 accumulators of 16 floats. */
#define ROW5(i)                                                     \
  c##i##0 = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), b0, c##i##0);     \
  c##i##1 = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), b1, c##i##1);
#define LOAD5(i) c##i##0 = _mm512_loadu_ps(c + i * ldc), c##i##1 = _mm512_loadu_ps(c + i * ldc + 16);
#define STORE5(i) _mm512_storeu_ps(c + i * ldc, c##i##0), _mm512_storeu_ps(c + i * ldc + 16, c##i##1);
/* The 8 x 32 tile of the AVX-512 kernels (fp32 and bf16 dot): its 16 accumulators loaded
 * from C or zeroed, and stored back. */
#define TILE_8X32_BEGIN                                                                         \
  __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;         \
  if (load) {                                                                                   \
    LOAD5(0) LOAD5(1) LOAD5(2) LOAD5(3) LOAD5(4) LOAD5(5) LOAD5(6) LOAD5(7)                     \
  } else {                                                                                      \
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = _mm512_setzero_ps();                        \
    c40 = c41 = c50 = c51 = c60 = c61 = c70 = c71 = _mm512_setzero_ps();                        \
  }
#define TILE_8X32_END STORE5(0) STORE5(1) STORE5(2) STORE5(3) STORE5(4) STORE5(5) STORE5(6) STORE5(7)
__attribute__((target("avx512f"))) static void ukernel_avx512(int64_t kc, const float *a, const float *b, float *c,
                                                              int64_t ldc, int load) {
  TILE_8X32_BEGIN
  for (int64_t k = 0; k < kc; k++, a += 8, b += 32) {
    __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    ROW5(0) ROW5(1) ROW5(2) ROW5(3) ROW5(4) ROW5(5) ROW5(6) ROW5(7)
  }
  TILE_8X32_END
}
#undef ROW5

/* AVX-512 BF16: 8 x 32 tile, 16 accumulators of 16 floats, one pair of k per step. */
#define ROWD(i)                                                              \
  {                                                                          \
    const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);              \
    c##i##0 = _mm512_dpbf16_ps(c##i##0, ai, b0);                             \
    c##i##1 = _mm512_dpbf16_ps(c##i##1, ai, b1);                             \
  }
__attribute__((target("avx512f,avx512bf16"))) static void ukernel_avx512bf16(int64_t kc, const float *af,
                                                                             const float *bf, float *c, int64_t ldc,
                                                                             int load) {
  const int32_t *a = (const int32_t *)(const void *)af;
  const __m512i *b = (const __m512i *)(const void *)bf;
  TILE_8X32_BEGIN
  for (int64_t q = 0; q < (kc + 1) / 2; q++, a += 8, b += 2) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 1);
    ROWD(0) ROWD(1) ROWD(2) ROWD(3) ROWD(4) ROWD(5) ROWD(6) ROWD(7)
  }
  TILE_8X32_END
}
#undef ROWD

/* The first R rows of the AVX-512 kernels' 8 x 32 tile, A still packed 8 rows a k (fp32)
 * or a pair of k (bf16 dot); PF: B streams (kernel.pick). */
__attribute__((target("avx512f"), always_inline)) static inline void avx512_rows(const int R, const int PF, int64_t kc,
                                                                                const float *a, const float *b, float *c,
                                                                                int64_t ldc, int load) {
  __m512 acc[8][2];
#pragma GCC unroll 8
  for (int i = 0; i < R; i++) {
    acc[i][0] = load ? _mm512_loadu_ps(c + i * ldc) : _mm512_setzero_ps();
    acc[i][1] = load ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < kc; k++, a += 8, b += 32) {
    if (PF) _mm_prefetch((const char *)b + PF_AHEAD, _MM_HINT_T1), _mm_prefetch((const char *)b + PF_AHEAD + 64, _MM_HINT_T1);
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
      acc[i][0] = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), b1, acc[i][1]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; i++) _mm512_storeu_ps(c + i * ldc, acc[i][0]), _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);
}
__attribute__((target("avx512f,avx512bf16"), always_inline)) static inline void avx512bf16_rows(
    const int R, const int PF, int64_t kc, const float *af, const float *bf, float *c, int64_t ldc, int load) {
  const int32_t *a = (const int32_t *)(const void *)af;
  const __m512i *b = (const __m512i *)(const void *)bf;
  __m512 acc[8][2];
#pragma GCC unroll 8
  for (int i = 0; i < R; i++) {
    acc[i][0] = load ? _mm512_loadu_ps(c + i * ldc) : _mm512_setzero_ps();
    acc[i][1] = load ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t q = 0; q < (kc + 1) / 2; q++, a += 8, b += 2) {
    if (PF) _mm_prefetch((const char *)b + PF_AHEAD, _MM_HINT_T1), _mm_prefetch((const char *)b + PF_AHEAD + 64, _MM_HINT_T1);
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 1);
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; i++) _mm512_storeu_ps(c + i * ldc, acc[i][0]), _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);
}
ROWS_FN(ukernel_avx512_1, avx512_rows, 1, 0, "avx512f")
ROWS_FN(ukernel_avx512_2, avx512_rows, 2, 0, "avx512f")
ROWS_FN(ukernel_avx512_4, avx512_rows, 4, 0, "avx512f")
ROWS_FN(ukernel_avx512_1s, avx512_rows, 1, 1, "avx512f")
ROWS_FN(ukernel_avx512_2s, avx512_rows, 2, 1, "avx512f")
ROWS_FN(ukernel_avx512_4s, avx512_rows, 4, 1, "avx512f")
ROWS_FN(ukernel_avx512_8s, avx512_rows, 8, 1, "avx512f")
ROWS_FN(ukernel_avx512bf16_1, avx512bf16_rows, 1, 0, "avx512f,avx512bf16")
ROWS_FN(ukernel_avx512bf16_2, avx512bf16_rows, 2, 0, "avx512f,avx512bf16")
ROWS_FN(ukernel_avx512bf16_4, avx512bf16_rows, 4, 0, "avx512f,avx512bf16")
ROWS_FN(ukernel_avx512bf16_1s, avx512bf16_rows, 1, 1, "avx512f,avx512bf16")
ROWS_FN(ukernel_avx512bf16_2s, avx512bf16_rows, 2, 1, "avx512f,avx512bf16")
ROWS_FN(ukernel_avx512bf16_4s, avx512bf16_rows, 4, 1, "avx512f,avx512bf16")
ROWS_FN(ukernel_avx512bf16_8s, avx512bf16_rows, 8, 1, "avx512f,avx512bf16")
static ukernel_fn avx512_pick(int rows, int stream) {
  if (stream)
    return rows == 1 ? ukernel_avx512_1s : rows == 2 ? ukernel_avx512_2s : rows <= 4 ? ukernel_avx512_4s : ukernel_avx512_8s;
  return rows == 1 ? ukernel_avx512_1 : rows == 2 ? ukernel_avx512_2 : rows <= 4 ? ukernel_avx512_4 : ukernel_avx512;
}
static ukernel_fn avx512bf16_pick(int rows, int stream) {
  if (stream)
    return rows == 1 ? ukernel_avx512bf16_1s : rows == 2 ? ukernel_avx512bf16_2s : rows <= 4 ? ukernel_avx512bf16_4s
                                                                                          : ukernel_avx512bf16_8s;
  return rows == 1 ? ukernel_avx512bf16_1 : rows == 2 ? ukernel_avx512bf16_2 : rows <= 4 ? ukernel_avx512bf16_4
                                                                                      : ukernel_avx512bf16;
}
#undef ROWS_FN

#undef TILE_8X32_BEGIN
#undef TILE_8X32_END
#undef LOAD5
#undef STORE5

/* MXCSR's flush-to-zero and denormals-are-zero, on for a bf16 product's fp32 kernels
 * (per thread: every thread that runs kernels sets and restores its own). */
static unsigned ftz_enter(int on) {
  const unsigned old = _mm_getcsr();
  if (on) _mm_setcsr(old | 0x8040u);
  return old;
}
static void ftz_leave(int on, unsigned old) {
  if (on) _mm_setcsr(old);
}
#else
static unsigned ftz_enter(int on) { return (void)on, 0u; }
static void ftz_leave(int on, unsigned old) { (void)on, (void)old; }
#endif

#ifdef SRLM_AMX
/* AMX: a 32 x 32 tile of C in tiles 0-3 (2 x 2 of 16 x 16 fp32), A's chunk in tiles 4-5
 * (rows 0-15, 16-31: 16 rows x 64 bytes each), B's in 6-7 (columns 0-15, 16-31 of 16
 * pair rows, 128 bytes apart). The tile configuration is loaded by amx_enter. */
/* HALVES = 1: only the tile's first 16 rows (tiles 0-1 of C, 4 of A: half the tile
 * products, when at most 16 rows of C are left); PF: B streams (kernel.pick). Each element
 * is computed the same way either way. */
__attribute__((target("amx-tile,amx-bf16"), always_inline)) static inline void amx_tile(const int HALVES, const int PF,
                                                                                        int64_t kc, const float *af,
                                                                                        const float *bf, float *c,
                                                                                        int64_t ldc, int load) {
  const char *a = (const char *)(const void *)af, *b = (const char *)(const void *)bf;
  const long ldcb = (long)ldc * (long)sizeof *c;
  /* GCC's tile loads and stores do not tell it which memory they touch: the caller's
     stores to c, a and b come first, its reads of c after */
  __asm__ volatile("" ::: "memory");
  if (load) {
    _tile_loadd(0, c, ldcb);
    _tile_loadd(1, c + 16, ldcb);
    if (HALVES == 2) {
      _tile_loadd(2, c + 16 * ldc, ldcb);
      _tile_loadd(3, c + 16 * ldc + 16, ldcb);
    }
  } else {
    _tile_zero(0);
    _tile_zero(1);
    if (HALVES == 2) {
      _tile_zero(2);
      _tile_zero(3);
    }
  }
  for (int64_t q = 0; q < (kc + 31) / 32; q++, a += 2048, b += 2048) {
    if (PF)
      for (int l = 0; l < 2048; l += 64) _mm_prefetch(b + PF_AHEAD + l, _MM_HINT_T1);
    _tile_loadd(4, a, 64);
    _tile_loadd(6, b, 128);
    if (HALVES == 2) _tile_loadd(5, a + 1024, 64);
    _tile_loadd(7, b + 64, 128);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    if (HALVES == 2) {
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, ldcb);
  _tile_stored(1, c + 16, ldcb);
  if (HALVES == 2) {
    _tile_stored(2, c + 16 * ldc, ldcb);
    _tile_stored(3, c + 16 * ldc + 16, ldcb);
  }
  __asm__ volatile("" ::: "memory");
}
#define AMX_FN(name, HALVES, PF)                                                                                    \
  __attribute__((target("amx-tile,amx-bf16"), noinline)) static void name(int64_t kc, const float *a, const float *b, \
                                                                          float *c, int64_t ldc, int load) {         \
    amx_tile(HALVES, PF, kc, a, b, c, ldc, load);                                                                   \
  }
AMX_FN(ukernel_amx, 2, 0)
AMX_FN(ukernel_amx_16, 1, 0)
AMX_FN(ukernel_amx_s, 2, 1)
AMX_FN(ukernel_amx_16s, 1, 1)
#undef AMX_FN
static ukernel_fn amx_pick(int rows, int stream) {
  if (stream) return rows <= 16 ? ukernel_amx_16s : ukernel_amx_s;
  return rows <= 16 ? ukernel_amx_16 : ukernel_amx;
}

/* The calling thread's tile configuration (palette 1, tiles 0-7 of 16 rows x 64 bytes),
 * loaded before a product's first AMX kernel and released after its last. */
typedef struct amx_cfg {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} amx_cfg;
/* (a constant: GCC 12 does not see the instruction read the stores of a local one, and
 * drops them) */
static const amx_cfg k_amx_cfg = {.palette = 1,
                                  .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
                                  .rows = {16, 16, 16, 16, 16, 16, 16, 16}};
__attribute__((target("amx-tile"))) static void amx_enter(const kernel *kr) {
  if (kr->amx) _tile_loadconfig(&k_amx_cfg);
}
__attribute__((target("amx-tile"))) static void amx_leave(const kernel *kr) {
  if (kr->amx) _tile_release();
}
#else
static void amx_enter(const struct kernel *kr) { (void)kr; }
static void amx_leave(const struct kernel *kr) { (void)kr; }
#endif

static const kernel k_generic = {"generic", GEN_MR, GEN_NR, 0, 0, KC, ukernel_generic, NULL};
static const kernel k_generic_ftz = {"generic", GEN_MR, GEN_NR, 0, 0, KC, ukernel_generic_ftz, NULL};
#ifdef SRLM_X86
static const kernel k_avx2 = {"avx2", 6, 16, 0, 0, KC, ukernel_avx2, avx2_pick};
static const kernel k_avx512 = {"avx512", 8, 32, 0, 0, KC_AVX512, ukernel_avx512, avx512_pick};
static const kernel k_avx512bf16 = {"avx512bf16", 8, 32, 1, 0, KC_DOT, ukernel_avx512bf16, avx512bf16_pick};
#endif
#ifdef SRLM_AMX
static const kernel k_amx = {"amx", 32, 32, 1, 1, KC_AMX, ukernel_amx, amx_pick};
#endif

/* The kernel of a product at the level in force: bf16 products get the tile kernel at the
 * amx level (when the product asks for the chain: the dot-product kernel on bf16 operands,
 * src16, the fp32 one with flushing on widened ones, srlm_cpu_chain_widen), the
 * dot-product kernel at its level (on a CPU whose dot instruction is slow, dot_widen, only
 * on bf16 operands: the fp32 kernel with flushing on widened ones) and the flushing
 * portable kernel at the generic one. */
static int dot_widen(void);
static const kernel *pick_kernel_for(int bf16, int chain, int src16) {
#ifdef SRLM_X86
  switch (srlm_cpu_isa()) {
#ifdef SRLM_AMX
    case SRLM_CPU_ISA_AMX: return bf16 ? (chain ? (src16 ? &k_avx512bf16 : &k_avx512) : &k_amx) : &k_avx512;
#endif
    case SRLM_CPU_ISA_AVX512_BF16: return bf16 && (src16 || !dot_widen()) ? &k_avx512bf16 : &k_avx512;
    case SRLM_CPU_ISA_AVX512: return &k_avx512;
    case SRLM_CPU_ISA_AVX2: return &k_avx2;
    default: break;
  }
#else
  (void)chain, (void)src16;
#endif
  return bf16 ? &k_generic_ftz : &k_generic;
}
/* a product that reads bf16 operands as they are where its level's kernel can (packed
 * weights: decode) */
static const kernel *pick_kernel(int bf16) { return pick_kernel_for(bf16, 0, 1); }
static const kernel *pick_kernel_mm(const srlm_cpu_mm *p) {
  return pick_kernel_for(p->bf16, p->chain, (p->a16 || p->b16) && !p->wide);
}

/* ---- packing ------------------------------------------------------------------------ */

typedef struct gemm {
  const kernel *kr;
  int64_t M, N, K, lda, ldb, ldc;
  int trans_a, trans_b, accumulate, bf16;
  const float *a, *b;
  const uint16_t *a16, *b16; /* a dot kernel's A / B read as bf16 directly (a / b NULL) */
  float *c;
  uint16_t *c16; /* C in bf16 (c NULL): srlm_cpu_mm's c16 */
  int stream_c;  /* c16's whole 32-column tiles written past the caches (make_gemm) */
  int64_t b_pld; /* B packed ahead (srlm_cpu_gemm_serial_pre): floats from a panel to the next; 0: none */
} gemm;

/* Packed depth: the rows of k a panel holds (k's pairs for a dot kernel, whole chunks of
 * 16 pairs for AMX), and where the KC block at k0 (even; a multiple of 32 for AMX) starts
 * in it. */
static inline int64_t kdepth(const gemm *g, int64_t k) {
  return g->kr->amx ? (k + 31) / 32 * 16 : g->kr->dot ? (k + 1) / 2 : k;
}

/* The 32-bit word of a dot kernel's panel: bf16 `even` (k even: added first) in the high
 * half, `odd` in the low half; both are widened bf16, so their high halves are exact.
 * nat (the AMX kernel's order): `even` in the low half, as two bf16 lie in memory. */
static inline uint32_t pair_word(float even, float odd, int nat) {
  uint32_t e, o;
  memcpy(&e, &even, 4);
  memcpy(&o, &odd, 4);
  return nat ? (e >> 16) | (o & 0xffff0000u) : (e & 0xffff0000u) | (o >> 16);
}
/* the pads of an odd K's last pair (see the top) */
#define PAD_A (-0.0f)
#define PAD_B 0.0f

/* Dot-kernel packing. A: rows [m0, m0 + rows) of MR, k in [k_lo, k_hi) (k_lo even);
 * B: columns [n0, n0 + cols) of NR, k in [k0, k0 + kc) (k0 even). Rows / columns past the
 * valid ones are 0; an odd end's last pair takes the pads. The words of a pair of stored
 * rows (k, k + 1) are formed along the rows (contiguous), the others by walking k along
 * one row (8 rows at a time as a transpose of words, pair_along8). Sources are widened fp32 (x, h NULL) or the bf16 tensor itself (h). */
static inline uint32_t pair16(uint16_t even, uint16_t odd, int nat) {
  return nat ? (uint32_t)odd << 16 | even : (uint32_t)even << 16 | odd;
}
#ifdef SRLM_X86
/* pair_rows' words of two bf16 rows, sixteen at a time: each bf16 zero-extended to its
 * word's lane, one of them shifted up. Returns the words done (a multiple of 16). Only the
 * dot and tile kernels' packings pair words, and their CPUs have AVX-512 (no srlm_cpu_isa
 * here: amx_check packs while the level is being decided). Measured on the 100M shapes'
 * products that pair stored rows (dx = dy W and dW = dy^T x, bf16 at the amx level, calls
 * of the two versions alternated in one process): 8-20% less time. */
__attribute__((target("avx512f"))) static int64_t pair_rows16(const uint16_t *h0, const uint16_t *h1, int64_t n,
                                                              uint32_t *d, int nat) {
  const uint16_t *lo = nat ? h0 : h1, *hi = nat ? h1 : h0;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512i l = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(lo + j)));
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(hi + j)));
    _mm512_storeu_si512(d + j, _mm512_or_si512(l, _mm512_slli_epi32(h, 16)));
  }
  return j;
}
/* n (<= 32) widened bf16 of x as bf16 (their high halves) into h: pack_a_amx's A from
 * widened values (the LM head's dz), sixteen at a time; returns the number done */
__attribute__((target("avx512f"))) static int64_t high_halves16(const float *x, int64_t n, uint16_t *h) {
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    _mm256_storeu_si256((__m256i *)(void *)(h + j),
                        _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(_mm512_loadu_ps(x + j)), 16)));
  return j;
}
#endif
static inline void pair_rows(const float *x0, const uint16_t *h0, const float *x1, const uint16_t *h1, float pad,
                             int64_t n, uint32_t *d, int nat) {
  const uint16_t p16 = srlm_f32_to_bf16(pad);
  if (h0 && h1) {
    int64_t j = 0;
#ifdef SRLM_X86
    j = pair_rows16(h0, h1, n, d, nat);
#endif
    for (; j < n; j++) d[j] = pair16(h0[j], h1[j], nat);
  } else if (h0)
    for (int64_t j = 0; j < n; j++) d[j] = pair16(h0[j], p16, nat);
  else if (x1)
    for (int64_t j = 0; j < n; j++) d[j] = pair_word(x0[j], x1[j], nat);
  else
    for (int64_t j = 0; j < n; j++) d[j] = pair_word(x0[j], pad, nat);
}
static inline void pair_along(const float *x, const uint16_t *h, int64_t kc, float pad, uint32_t *d, int64_t ld_d,
                              int nat) {
  int64_t q = 0;
  if (h) {
    for (; 2 * q + 1 < kc; q++) d[q * ld_d] = pair16(h[2 * q], h[2 * q + 1], nat);
    if (2 * q < kc) d[q * ld_d] = pair16(h[2 * q], srlm_f32_to_bf16(pad), nat);
    return;
  }
  for (; 2 * q + 1 < kc; q++) d[q * ld_d] = pair_word(x[2 * q], x[2 * q + 1], nat);
  if (2 * q < kc) d[q * ld_d] = pair_word(x[2 * q], pad, nat);
}
#ifdef SRLM_X86
/* The 8 x 8 transpose of r[0..7] (32-bit elements) in place: 24 shuffles per 64 elements
 * instead of 64 scalar stores, for the packings' transposes (rows along k into k-major
 * panels). */
__attribute__((target("avx"), always_inline)) static inline void transpose8_regs(__m256 r[8]) {
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]), t2 = _mm256_unpacklo_ps(r[2], r[3]);
  __m256 t3 = _mm256_unpackhi_ps(r[2], r[3]), t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* dst[k * ld_dst + i] = src[i * ld_src + k] for an 8 x 8 block. */
__attribute__((target("avx"))) static void transpose8x8(const float *src, int64_t ld_src, float *dst, int64_t ld_dst) {
  __m256 r[8];
  for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * ld_src);
  transpose8_regs(r);
  for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + i * ld_dst, r[i]);
}

/* pair_along for 8 bf16 rows h + i * ld_h at once: d[q * ld_d + i] = the pair word of
 * (h_i[2q], h_i[2q + 1]) for q < kc / 16 * 8. Two bf16 in memory are a little-endian word
 * with the even one low, so the pair word is that word (nat) or that word rotated by 16,
 * and the packing is a transpose of words. Returns the k done (a multiple of 16); the
 * caller pairs the rest. */
__attribute__((target("avx2"))) static int64_t pair_along8(const uint16_t *h, int64_t ld_h, int64_t kc, uint32_t *d,
                                                           int64_t ld_d, int nat) {
  int64_t k = 0;
  for (; k + 16 <= kc; k += 16) {
    __m256 r[8];
    for (int i = 0; i < 8; i++) {
      const __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)(h + i * ld_h + k));
      r[i] = _mm256_castsi256_ps(nat ? w : _mm256_or_si256(_mm256_slli_epi32(w, 16), _mm256_srli_epi32(w, 16)));
    }
    transpose8_regs(r);
    for (int q = 0; q < 8; q++) _mm256_storeu_ps((float *)(void *)(d + (k / 2 + q) * ld_d), r[q]);
  }
  return k;
}
#endif

/* pair_along for `rows` rows of one source (row i at x / h + i * ld) into d + i: bf16
 * sources 8 rows at a time by pair_along8 (only the dot kernel packs pairs, and its CPU
 * has AVX2). */
static void pair_along_rows(const float *x, const uint16_t *h, int64_t ld, int64_t rows, int64_t kc, float pad,
                            uint32_t *d, int64_t ld_d, int nat) {
  int64_t i = 0;
#ifdef SRLM_X86
  for (; h && i + 8 <= rows; i += 8) {
    const int64_t k = pair_along8(h + i * ld, ld, kc, d + i, ld_d, nat);
    for (int64_t r = i; r < i + 8; r++)
      pair_along(NULL, h + r * ld + k, kc - k, pad, d + k / 2 * ld_d + r, ld_d, nat);
  }
#endif
  for (; i < rows; i++) pair_along(x ? x + i * ld : NULL, h ? h + i * ld : NULL, kc, pad, d + i, ld_d, nat);
}
/* element i of A's / B's storage in either source (the other pointer NULL) */
#define AT_A(g, i) ((g)->a16 ? NULL : (g)->a + (i)), ((g)->a16 ? (g)->a16 + (i) : NULL)
#define AT_B(g, i) ((g)->b16 ? NULL : (g)->b + (i)), ((g)->b16 ? (g)->b16 + (i) : NULL)
static void pack_a_dot(const gemm *g, int64_t m0, int64_t k_lo, int64_t k_hi, uint32_t *dst) {
  const int MR = g->kr->mr;
  const int64_t rows = g->M - m0 < MR ? g->M - m0 : MR;
  if (g->trans_a) /* stored A^T: row k holds A(., k) along m */
    for (int64_t k = k_lo; k < k_hi; k += 2) {
      uint32_t *d = dst + k / 2 * MR;
      if (k + 1 < k_hi)
        pair_rows(AT_A(g, k * g->lda + m0), AT_A(g, (k + 1) * g->lda + m0), PAD_A, rows, d, 0);
      else
        pair_rows(AT_A(g, k * g->lda + m0), NULL, NULL, PAD_A, rows, d, 0);
      for (int64_t i = rows; i < MR; i++) d[i] = 0;
    }
  else {
    pair_along_rows(AT_A(g, m0 * g->lda + k_lo), g->lda, rows, k_hi - k_lo, PAD_A, dst + k_lo / 2 * MR, MR, 0);
    for (int64_t i = rows; i < MR; i++)
      for (int64_t k = k_lo; k < k_hi; k += 2) dst[k / 2 * MR + i] = 0;
  }
}
/* AMX's B block of kc values of k (block points at its first pair row): zero pair rows
 * from the last pair to the end of the last chunk. */
static void amx_b_tail(const gemm *g, int64_t kc, uint32_t *block) {
  const int64_t used = (kc + 1) / 2;
  memset(block + used * g->kr->nr, 0, (size_t)(kdepth(g, kc) - used) * (size_t)g->kr->nr * sizeof *block);
}
/* B for the dot kernel, or for AMX (nat order, zero pairs to the end of the last chunk). */
static void pack_b_dot(const gemm *g, int64_t k0, int64_t kc, int64_t n0, uint32_t *dst) {
  const int NR = g->kr->nr, nat = g->kr->amx;
  const int64_t cols = g->N - n0 < NR ? g->N - n0 : NR;
  if (!g->trans_b) /* stored B: row k holds B(k, .) along n */
    for (int64_t k = 0; k < kc; k += 2) {
      uint32_t *d = dst + k / 2 * NR;
      const int64_t r0 = (k0 + k) * g->ldb + n0;
      if (k + 1 < kc)
        pair_rows(AT_B(g, r0), AT_B(g, r0 + g->ldb), PAD_B, cols, d, nat);
      else
        pair_rows(AT_B(g, r0), NULL, NULL, PAD_B, cols, d, nat);
      for (int64_t j = cols; j < NR; j++) d[j] = 0;
    }
  else {
    pair_along_rows(AT_B(g, n0 * g->ldb + k0), g->ldb, cols, kc, PAD_B, dst, NR, nat);
    for (int64_t j = cols; j < NR; j++)
      for (int64_t k = 0; k < kc; k += 2) dst[k / 2 * NR + j] = 0;
  }
  if (nat) amx_b_tail(g, kc, dst);
}

#ifdef SRLM_X86
/* n (<= 32) bf16 of each of `rows` rows (src + i * ld) into 32-wide rows of dst, zero past
 * n: one masked load and store a row (AMX CPUs have AVX-512 BW). */
__attribute__((target("avx512f,avx512bw"))) static void copy_rows32(uint16_t *dst, const uint16_t *src, int64_t ld,
                                                                    int64_t rows, int64_t n) {
  const __mmask32 mask = n >= 32 ? 0xffffffffu : (1u << n) - 1u;
  for (int64_t i = 0; i < rows; i++) _mm512_storeu_si512(dst + i * 32, _mm512_maskz_loadu_epi16(mask, src + i * ld));
}
#endif

/* A for AMX: rows [m0, m0 + MR) (past M: 0), k in [k_lo, k_hi) (k_lo a multiple of 32;
 * k_hi too, or K), in chunks of MR rows x 16 words (row-major; zero past K to the chunk's
 * end): stored A's rows are copied as they are (two bf16 are a nat word); stored A^T is
 * paired along m as the dot kernel's is (a chunk's 16 x MR words) and transposed. */
static void pack_a_amx(const gemm *g, int64_t m0, int64_t k_lo, int64_t k_hi, uint32_t *dst) {
  const int MR = g->kr->mr;
  const int64_t rows = g->M - m0 < MR ? g->M - m0 : MR;
  for (int64_t k = k_lo; k < k_hi; k += 32) {
    uint32_t *d = dst + k / 2 * MR; /* this chunk */
    const int64_t n = k_hi - k < 32 ? k_hi - k : 32;
    if (!g->trans_a) {
#ifdef SRLM_X86
      if (g->a16) {
        copy_rows32((uint16_t *)(void *)d, g->a16 + m0 * g->lda + k, g->lda, rows, n);
        memset(d + rows * 16, 0, (size_t)(MR - rows) * 16 * sizeof *d);
        continue;
      }
#endif
      for (int64_t i = 0; i < rows; i++) {
        uint16_t *w = (uint16_t *)(void *)(d + i * 16);
        const int64_t at = (m0 + i) * g->lda + k;
        if (g->a16)
          memcpy(w, g->a16 + at, (size_t)n * sizeof *w);
        else {
          int64_t kk = 0;
#ifdef SRLM_X86
          kk = high_halves16(g->a + at, n, w);
#endif
          for (; kk < n; kk++) { /* widened bf16: the high half, as pair_word takes it */
            uint32_t u;
            memcpy(&u, &g->a[at + kk], 4);
            w[kk] = (uint16_t)(u >> 16);
          }
        }
        memset(w + n, 0, (size_t)(32 - n) * sizeof *w);
      }
    } else {
      uint32_t t[16 * 32] __attribute__((aligned(32))); /* (pair, row) */
      for (int64_t q = 0; q < 16; q++) {
        const int64_t kk = k + 2 * q;
        if (kk + 1 < k + n)
          pair_rows(AT_A(g, kk * g->lda + m0), AT_A(g, (kk + 1) * g->lda + m0), 0.0f, rows, t + q * MR, 1);
        else if (kk < k + n)
          pair_rows(AT_A(g, kk * g->lda + m0), NULL, NULL, 0.0f, rows, t + q * MR, 1);
        else
          memset(t + q * MR, 0, (size_t)rows * sizeof *t);
      }
      int64_t i = 0;
#ifdef SRLM_X86
      for (; i + 8 <= rows; i += 8)
        for (int q = 0; q < 16; q += 8)
          transpose8x8((const float *)(const void *)(t + q * MR + i), MR, (float *)(void *)(d + i * 16 + q), 16);
#endif
      for (; i < rows; i++)
        for (int q = 0; q < 16; q++) d[i * 16 + q] = t[q * MR + i];
    }
    memset(d + rows * 16, 0, (size_t)(MR - rows) * 16 * sizeof *d);
  }
}

/* dst[k * ld_dst + i] = src[i * ld_src + k], i < rows (<= 8), k < kc. */
static void transpose_rows(const gemm *g, const float *src, int64_t ld_src, int64_t rows, int64_t kc, float *dst,
                           int64_t ld_dst) {
  int64_t k = 0;
#ifdef SRLM_X86
  if (rows == 8 && g->kr != &k_generic && g->kr != &k_generic_ftz)
    for (; k + 8 <= kc; k += 8) transpose8x8(src + k, ld_src, dst + k * ld_dst, ld_dst);
#else
  (void)g;
#endif
  for (int64_t i = 0; i < rows; i++)
    for (int64_t kk = k; kk < kc; kk++) dst[kk * ld_dst + i] = src[i * ld_src + kk];
}

/* The fp32 kernels' packing of bf16 operands (a16 / b16: a compute-bound bf16 product at a
 * level whose kernel for it is not a dot kernel): the values are widened as they are
 * packed, at most SEG of a row at a time through a buffer on the stack, instead of into a
 * widened copy of the whole operand first (that copy and its pages' first touch were 7% of
 * a 100M bf16 training step on one thread). Widening is exact: the same values, the same
 * bits. */
enum { SEG = 256 };
_Static_assert((int)MB <= (int)SEG && SEG % 32 == 0, "pack_a_rows_t widens a row of MB values; panels must not straddle segments");
/* n (<= SEG) values of an operand's row from element off: fp32 f there, or bf16 h widened
 * into buf */
static inline const float *row_seg(const float *f, const uint16_t *h, int64_t off, int64_t n, float *buf) {
  if (!h) return f + off;
  srlm_cpu_widen_rows(buf, n, h + off, n, 1, n);
  return buf;
}
/* transpose_rows of the operand at element off: fp32 f, or bf16 h widened SEG k at a time */
static void transpose_src(const gemm *g, const float *f, const uint16_t *h, int64_t off, int64_t ld_src, int64_t rows,
                          int64_t kc, float *dst, int64_t ld_dst) {
  if (!h) {
    transpose_rows(g, f + off, ld_src, rows, kc, dst, ld_dst);
    return;
  }
  float buf[8 * SEG] __attribute__((aligned(64)));
  for (int64_t k = 0; k < kc; k += SEG) {
    const int64_t n = kc - k < SEG ? kc - k : SEG;
    srlm_cpu_widen_rows(buf, SEG, h + off + k, ld_src, rows, n);
    transpose_rows(g, buf, SEG, rows, n, dst + k * ld_dst, ld_dst);
  }
}

/* A(m, k) for m in [m0, m0 + mr) (rows past M are 0), k in [0, K): dst[k*MR + i]. */
static void pack_a(const gemm *g, int64_t m0, float *dst) {
  if (g->kr->amx) {
    pack_a_amx(g, m0, 0, g->K, (uint32_t *)(void *)dst);
    return;
  }
  if (g->kr->dot) {
    pack_a_dot(g, m0, 0, g->K, (uint32_t *)(void *)dst);
    return;
  }
  const int MR = g->kr->mr;
  const int64_t rows = g->M - m0 < MR ? g->M - m0 : MR;
  if (g->trans_a) {
    float buf[32];
    for (int64_t k = 0; k < g->K; k++) {
      const float *src = row_seg(g->a, g->a16, k * g->lda + m0, rows, buf);
      float *d = dst + k * MR;
      int64_t i = 0;
      for (; i < rows; i++) d[i] = src[i];
      for (; i < MR; i++) d[i] = 0.0f;
    }
    return;
  }
  int64_t i = 0;
  for (; i + 8 <= rows; i += 8) transpose_src(g, g->a, g->a16, (m0 + i) * g->lda, g->lda, 8, g->K, dst + i, MR);
  if (i < rows) transpose_src(g, g->a, g->a16, (m0 + i) * g->lda, g->lda, rows - i, g->K, dst + i, MR);
  for (i = rows; i < MR; i++)
    for (int64_t k = 0; k < g->K; k++) dst[k * MR + i] = 0.0f;
}

/* B(k, n) for k in [k0, k0 + kc), n in [n0, n0 + NR) (columns past N are 0): dst[k*NR + j]. */
static void pack_b(const gemm *g, int64_t k0, int64_t kc, int64_t n0, float *dst) {
  if (g->kr->dot) {
    pack_b_dot(g, k0, kc, n0, (uint32_t *)(void *)dst);
    return;
  }
  const int NR = g->kr->nr;
  const int64_t cols = g->N - n0 < NR ? g->N - n0 : NR;
  if (!g->trans_b) {
    float buf[32];
    for (int64_t k = 0; k < kc; k++) {
      const float *src = row_seg(g->b, g->b16, (k0 + k) * g->ldb + n0, cols, buf);
      float *d = dst + k * NR;
      int64_t j = 0;
      for (; j < cols; j++) d[j] = src[j];
      for (; j < NR; j++) d[j] = 0.0f;
    }
    return;
  }
  /* B^T is stored: rows n of length K, transposed 8 rows at a time */
  int64_t j = 0;
  for (; j + 8 <= cols; j += 8) transpose_src(g, g->b, g->b16, (n0 + j) * g->ldb + k0, g->ldb, 8, kc, dst + j, NR);
  if (j < cols) transpose_src(g, g->b, g->b16, (n0 + j) * g->ldb + k0, g->ldb, cols - j, kc, dst + j, NR);
  for (j = cols; j < NR; j++)
    for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = 0.0f;
}

/* ---- the driver --------------------------------------------------------------------- */

/* One MR x NR tile of C at (m0, n0) over the KC block [k0, k0 + kc). */
static void run_tile(const gemm *g, const float *ap, const float *bp, int64_t m0, int64_t n0, int64_t kc,
                     int load, int stream) {
  const int MR = g->kr->mr, NR = g->kr->nr;
  float tile[32 * 32] __attribute__((aligned(64))); /* MR x NR of the largest kernel */
  const int64_t rows = g->M - m0 < MR ? g->M - m0 : MR, cols = g->N - n0 < NR ? g->N - n0 : NR;
  const ukernel_fn fn = g->kr->pick && (rows < MR || stream) ? g->kr->pick((int)rows, stream) : g->kr->fn;
  if (g->c16) { /* the whole chain in this call (one KC block, load = 0): round it once */
    fn(kc, ap, bp, tile, NR, 0);
    uint16_t *c16 = g->c16 + m0 * g->ldc + n0;
    if (g->stream_c && cols == 32 && ((uintptr_t)c16 & 63) == 0)
      srlm_cpu_narrow_rows32_stream(c16, g->ldc, tile, NR, rows);
    else
      srlm_cpu_narrow_rows(c16, g->ldc, tile, NR, rows, cols);
    return;
  }
  float *c = g->c + m0 * g->ldc + n0;
  if (rows == MR && cols == NR) {
    fn(kc, ap, bp, c, g->ldc, load);
    return;
  }
  if (load)
    for (int64_t i = 0; i < rows; i++) memcpy(tile + i * NR, c + i * g->ldc, (size_t)cols * sizeof *c);
  fn(kc, ap, bp, tile, NR, load);
  for (int64_t i = 0; i < rows; i++) memcpy(c + i * g->ldc, tile + i * NR, (size_t)cols * sizeof *c);
}

/* Where block (panel jp, k0) of B sits in a fully packed B (packed weights, and each
 * thread's share of B in a product): panels one after another, each its KC blocks in
 * order, every block kc x NR. B packed ahead for a larger product (b_pld): its panels
 * b_pld floats apart. */
static inline int64_t packed_offset(const gemm *g, int64_t jp, int64_t k0) {
  if (g->b_pld) return jp * g->b_pld + kdepth(g, k0) * g->kr->nr;
  return (jp * kdepth(g, g->K) + kdepth(g, k0)) * g->kr->nr;
}
/* Where A's panel ip (MR rows, all of K) and its KC block at k0 sit in a packed A. */
static inline int64_t a_offset(const gemm *g, int64_t ip, int64_t k0) {
  return (ip * kdepth(g, g->K) + kdepth(g, k0)) * g->kr->mr;
}

/* B's column panels [j_begin, j_end) over all of K into dst, panel j_begin first
 * (packed_offset). Stored B is read a row at a time across all the panels (each row once,
 * in order, which the memory system streams; a dot kernel's bf16 B two rows at a time,
 * paired, where K is even: the dx = dy W products took 4-12% less time than panel by
 * panel); stored B^T (rows n along k) is transposed 8 rows at a time over the whole K. */
static void pack_b_panels(const gemm *g, int64_t j_begin, int64_t j_end, float *dst) {
  const int NR = g->kr->nr;
  if (!g->trans_b && g->kr->dot && g->b16 && g->K % 2 == 0) { /* bf16 rows, paired across the panels */
    const int64_t kcb = g->kr->kc;
    for (int64_t k = 0; k < g->K; k += 2) {
      const int64_t k0 = k / kcb * kcb;
      const uint16_t *r0 = g->b16 + k * g->ldb, *r1 = r0 + g->ldb;
      for (int64_t jp = j_begin; jp < j_end; jp++) {
        uint32_t *d = (uint32_t *)(void *)(dst + packed_offset(g, jp - j_begin, k0)) + (k - k0) / 2 * NR;
        const int64_t n0 = jp * NR, cols = g->N - n0 < NR ? g->N - n0 : NR;
        pair_rows(NULL, r0 + n0, NULL, r1 + n0, PAD_B, cols, d, g->kr->amx);
        for (int64_t j = cols; j < NR; j++) d[j] = 0;
      }
    }
    if (g->kr->amx) { /* the last block's tail, as pack_b_dot */
      const int64_t k0 = (g->K - 1) / kcb * kcb;
      for (int64_t jp = j_begin; jp < j_end; jp++)
        amx_b_tail(g, g->K - k0, (uint32_t *)(void *)(dst + packed_offset(g, jp - j_begin, k0)));
    }
    return;
  }
  if (g->trans_b || g->kr->dot) {
    for (int64_t jp = j_begin; jp < j_end; jp++) pack_b(g, 0, g->K, jp * NR, dst + packed_offset(g, jp - j_begin, 0));
    return;
  }
  /* each row of the share's columns, SEG columns (whole panels) at a time */
  float buf[SEG] __attribute__((aligned(64)));
  const int64_t c_hi = j_end * NR < g->N ? j_end * NR : g->N;
  for (int64_t k = 0; k < g->K; k++)
    for (int64_t c0 = j_begin * NR; c0 < c_hi; c0 += SEG) {
      const int64_t n = c_hi - c0 < SEG ? c_hi - c0 : SEG;
      const float *src = row_seg(g->b, g->b16, k * g->ldb + c0, n, buf);
      for (int64_t jp = c0 / NR; jp < (c0 + n + NR - 1) / NR; jp++) {
        float *d = dst + packed_offset(g, jp - j_begin, k);
        const int64_t n0 = jp * NR, cols = g->N - n0 < NR ? g->N - n0 : NR;
        int64_t j = 0;
        for (; j < cols; j++) d[j] = src[n0 - c0 + j];
        for (; j < NR; j++) d[j] = 0.0f;
      }
    }
}

/* Stored A^T (rows k along m): rows [m_start, m_start + mb) of A as pack_a's MR-row panels,
 * for k in [k_lo, k_hi). Each row of A^T is read once across all the panels, instead of MR
 * floats from each of K rows per panel (K cache lines and pages for 6 floats each). */
static void pack_a_rows_t(const gemm *g, int64_t m_start, int64_t mb, int64_t k_lo, int64_t k_hi, float *dst) {
  const int MR = g->kr->mr;
  const int64_t panels = (mb + MR - 1) / MR;
  if (g->kr->dot) {
    for (int64_t ip = 0; ip < panels; ip++)
      (g->kr->amx ? pack_a_amx : pack_a_dot)(g, m_start + ip * MR, k_lo, k_hi,
                                             (uint32_t *)(void *)(dst + a_offset(g, ip, 0)));
    return;
  }
  const int64_t whole = MR == 8 ? mb / 8 : 0; /* the AVX-512 kernel's panels: 8 floats a row, one move */
  float buf[SEG] __attribute__((aligned(64)));
  for (int64_t k = k_lo; k < k_hi; k++) {
    const float *src = row_seg(g->a, g->a16, k * g->lda + m_start, mb, buf);
    float *d = dst + k * MR;
    for (int64_t ip = 0; ip < whole; ip++) memcpy(d + ip * 8 * g->K, src + ip * 8, 8 * sizeof *d);
    for (int64_t ip = whole; ip < panels; ip++) {
      const int64_t rows = mb - ip * MR < MR ? mb - ip * MR : MR;
      int64_t i = 0;
      for (; i < rows; i++) d[ip * MR * g->K + i] = src[ip * MR + i];
      for (; i < MR; i++) d[ip * MR * g->K + i] = 0.0f;
    }
  }
}

/* A (mb x K) at or below this many floats stays in L2 (1 MiB) beside B's block. */
enum { A_IN_L2 = 64 * 1024 };

/* Rows [m_start, m_start + mb) of C (their A panels packed in apack, all of K) times the
 * column panels [j_begin, j_end), whose B is packed at bp (panel j_begin first,
 * packed_offset). When A's rows fit in L2 the panels go outermost, each read once start to
 * end (what streams best when M is small: decode), and the first A panel's kernel asks
 * for B ahead of its reads (kernel.pick); otherwise the KC blocks do, so that
 * one KC slice of A stays in L2 while every panel passes. The order of the k blocks of
 * each C tile is the same either way, so are the bits. */
static void gemm_block(const gemm *g, const float *apack, const float *bp, int64_t m_start, int64_t mb,
                       int64_t j_begin, int64_t j_end) {
  const int MR = g->kr->mr, NR = g->kr->nr;
  const int64_t a_panels = (mb + MR - 1) / MR, kcb = g->kr->kc;
  if (mb * kdepth(g, g->K) <= A_IN_L2) {
    for (int64_t jp = j_begin; jp < j_end; jp++)
      for (int64_t k0 = 0; k0 < g->K; k0 += kcb) {
        const int64_t kc = g->K - k0 < kcb ? g->K - k0 : kcb;
        const float *b = bp + packed_offset(g, jp - j_begin, k0);
        for (int64_t ip = 0; ip < a_panels; ip++)
          run_tile(g, apack + a_offset(g, ip, k0), b, m_start + ip * MR, jp * NR, kc, k0 > 0 || g->accumulate,
                   ip == 0);
      }
    return;
  }
  for (int64_t k0 = 0; k0 < g->K; k0 += kcb) {
    const int64_t kc = g->K - k0 < kcb ? g->K - k0 : kcb;
    for (int64_t jp = j_begin; jp < j_end; jp++) {
      const float *b = bp + packed_offset(g, jp - j_begin, k0);
      for (int64_t ip = 0; ip < a_panels; ip++)
        run_tile(g, apack + a_offset(g, ip, k0), b, m_start + ip * MR, jp * NR, kc, k0 > 0 || g->accumulate, 0);
    }
  }
}

/* The cases that need no packing: nothing to do, or K = 0 (C = bias, or kept). */
static int trivial(const srlm_cpu_mm *p) {
  if (p->M == 0 || p->N == 0) return 1;
  if (p->K > 0) return 0;
  for (int64_t m = 0; m < p->M; m++)
    for (int64_t n = 0; n < p->N; n++) {
      float *c = p->c + m * p->ldc + n;
      const float c0 = p->accumulate ? *c : 0.0f;
      *c = (p->bf16 ? flush(c0) : c0) + (p->bias ? p->bias[n] : 0.0f);
    }
  return 1;
}

static void add_bias(const srlm_cpu_mm *p, int parallel) {
  if (!p->bias) return;
  if (parallel) {
    SRLM_OMP_ROWS
    for (int64_t m = 0; m < p->M; m++)
      for (int64_t n = 0; n < p->N; n++) p->c[m * p->ldc + n] += p->bias[n];
  } else {
    for (int64_t m = 0; m < p->M; m++)
      for (int64_t n = 0; n < p->N; n++) p->c[m * p->ldc + n] += p->bias[n];
  }
}

/* A bf16 C of at least this many elements (2 MiB: past a core's L2 on the machines measured)
 * is written by its whole 32-column tiles with non-temporal stores: a tile's 32 rows, each
 * a line of its own, had cost a quarter of a 1024 x 2048 x 768 product's time to narrow
 * and store (a 32 x 32 tile's narrowing alone, into a buffer, much less). Measured on a
 * 2-core Xeon with AMX, old and new alternated call by call: 0.68-0.74x the time for the
 * model's 1024 x 2048 products on one thread, 0.82-0.95x on two; smaller C (which the next
 * op reads from the caches) stays as it was: streamed, 1024 x 768 x 256 took 1.3x. */
enum { STREAM_C_MIN = 1 << 20 };

static gemm make_gemm(const srlm_cpu_mm *p, const kernel *kr) {
  gemm g = {kr ? kr : pick_kernel_mm(p), p->M, p->N, p->K, p->lda, p->ldb, p->ldc, p->trans_a, p->trans_b, p->accumulate,
            p->bf16, p->a, p->b, p->a16, p->b16, p->c, p->c16, 0, 0};
  g.stream_c = g.c16 && g.kr->nr == 32 && g.ldc % 32 == 0 && g.M * g.N >= STREAM_C_MIN &&
               srlm_cpu_isa() >= SRLM_CPU_ISA_AVX512;
  SRLM_CHECK(!g.c16 || (g.K > 0 && g.K <= g.kr->kc && !g.accumulate && !p->bias),
             "cpu matmul: a bf16 C the %s kernel cannot write (K = %lld)", g.kr->name, (long long)g.K);
  return g;
}

int srlm_cpu_gemm_c16_ok(const srlm_cpu_mm *p) {
  return p->K > 0 && p->K <= pick_kernel_mm(p)->kc && !p->accumulate && !p->bias;
}

/* Packs rows [m_start, m_start + mb) of A into apack (all of K) in shares: stored A^T in
 * blocks of KB of its rows, stored A by MR-row panels. */
enum { KB = 64 };
_Static_assert(KB % 2 == 0, "a dot kernel's k pairs must not straddle KB blocks");
static int64_t pack_a_shares(const gemm *g, int64_t mb) {
  return g->trans_a ? (g->K + KB - 1) / KB : (mb + g->kr->mr - 1) / g->kr->mr;
}
static void pack_a_share(const gemm *g, int64_t m_start, int64_t mb, int64_t i, float *apack) {
  const int MR = g->kr->mr;
  if (g->trans_a)
    pack_a_rows_t(g, m_start, mb, i * KB, g->K - i * KB < KB ? g->K : i * KB + KB, apack);
  else
    pack_a(g, m_start + i * MR, apack + a_offset(g, i, 0));
}

/* A thread's column panels in one MB block of a product: [front, back) in one word
 * (front << 32 | back). Its owner takes panels from the front; a thread done with its own
 * takes them from the back (take_panel's back), so that a thread the machine runs slower does not
 * hold the others at the block's barrier, while each thread still works mostly on the B
 * panels it packed (they stay in its core's L2 from block to block). */
enum { SHARE_MAX = 256 }; /* threads with a share word; more run their own panels only */
static int take_panel(uint64_t *w, int back, int64_t *jp) {
  uint64_t v = __atomic_load_n(w, __ATOMIC_ACQUIRE);
  for (;;) {
    const uint64_t f = v >> 32, b = v & 0xffffffffu;
    if (f >= b) return 0;
    const uint64_t nv = back ? (f << 32 | (b - 1)) : ((f + 1) << 32 | b);
    if (__atomic_compare_exchange_n(w, &v, nv, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      *jp = (int64_t)(back ? b - 1 : f);
      return 1;
    }
  }
}

/* srlm_cpu_gemm, with all of B already packed in bpre (packed weights) when not NULL.
 * Each thread packs a contiguous share of the column panels once, over all of K
 * (packed_offset's layout, as bpre), into one buffer; then for every block of MB rows (A
 * packed once per row, MB rows at a time, shared by the threads) it runs its share's
 * panels and then takes what is left of the others' (take_panel). Each C tile is computed
 * the same way whoever runs it: the same bits. */
static srlm_status gemm_run(const srlm_cpu_mm *pp, const float *bpre) {
  const srlm_cpu_mm p = *pp;
  if (trivial(&p)) return SRLM_OK;
  const gemm g = make_gemm(&p, NULL);
  const int MR = g.kr->mr, NR = g.kr->nr;
  const int64_t mb_max = p.M < MB ? p.M : MB;
  const int64_t n_panels = (p.N + NR - 1) / NR;
  float *apack = NULL, *bown = NULL;
  const size_t a_bytes = (size_t)((mb_max + MR - 1) / MR * MR) * (size_t)kdepth(&g, p.K) * sizeof(float);
  const size_t b_bytes = (size_t)n_panels * (size_t)kdepth(&g, p.K) * (size_t)NR * sizeof(float);
  if (posix_memalign((void **)&apack, 64, a_bytes) != 0)
    return srlm_error(SRLM_ERR_NOMEM, "cpu matmul", "cannot allocate %zu bytes to pack A", a_bytes);
  if (!bpre && posix_memalign((void **)&bown, 64, b_bytes) != 0) {
    free(apack);
    return srlm_error(SRLM_ERR_NOMEM, "cpu matmul", "cannot allocate %zu bytes to pack B", b_bytes);
  }
  const float *bp = bpre ? bpre : bown;
  uint64_t share[SHARE_MAX];
#ifdef _OPENMP
#pragma omp parallel
#endif
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
    const int tid = 0, nth = 1;
#endif
    const unsigned csr = ftz_enter(g.bf16);
    amx_enter(g.kr);
    /* this thread's column panels: a contiguous share */
    const int64_t j_begin = n_panels * tid / nth, j_end = n_panels * (tid + 1) / nth;
    const int shares = nth <= SHARE_MAX;
    if (bown && j_end > j_begin) pack_b_panels(&g, j_begin, j_end, bown + packed_offset(&g, j_begin, 0));
    for (int64_t m_start = 0; m_start < p.M; m_start += MB) {
      const int64_t mb = p.M - m_start < MB ? p.M - m_start : MB;
      if (shares) __atomic_store_n(&share[tid], (uint64_t)j_begin << 32 | (uint64_t)j_end, __ATOMIC_RELAXED);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (int64_t i = 0; i < pack_a_shares(&g, mb); i++) pack_a_share(&g, m_start, mb, i, apack);
      /* (the implicit barrier of the omp for: A is packed, B too on the first block, the
         shares are set) */
      int64_t jp;
      if (!shares) {
        if (j_end > j_begin) gemm_block(&g, apack, bp + packed_offset(&g, j_begin, 0), m_start, mb, j_begin, j_end);
      } else {
        while (take_panel(&share[tid], 0, &jp)) gemm_block(&g, apack, bp + packed_offset(&g, jp, 0), m_start, mb, jp, jp + 1);
        for (int o = 1; o < nth; o++)
          while (take_panel(&share[(tid + o) % nth], 1, &jp))
            gemm_block(&g, apack, bp + packed_offset(&g, jp, 0), m_start, mb, jp, jp + 1);
      }
#ifdef _OPENMP
#pragma omp barrier
#endif
    }
    if (g.stream_c) srlm_cpu_stream_fence(); /* this thread's streamed tiles, before anyone reads C */
    amx_leave(g.kr);
    ftz_leave(g.bf16, csr);
  }
  free(apack);
  free(bown);
  add_bias(&p, 1);
  return SRLM_OK;
}

srlm_status srlm_cpu_gemm(const srlm_cpu_mm *p) { return gemm_run(p, NULL); }

static srlm_status ws_reserve(float **buf, size_t *cap, size_t n) {
  if (n <= *cap) return SRLM_OK;
  free(*buf);
  *buf = NULL;
  *cap = 0;
  if (posix_memalign((void **)buf, 64, n * sizeof(float)) != 0) {
    *buf = NULL;
    return srlm_error(SRLM_ERR_NOMEM, "cpu matmul", "cannot allocate %zu floats of packing space", n);
  }
  *cap = n;
  return SRLM_OK;
}

/* srlm_cpu_gemm_serial with kernel kr (NULL: the level's), and with B packed ahead at bpre
 * (panels pld floats apart) when bpre is not NULL */
static srlm_status gemm_serial_b(const srlm_cpu_mm *pp, srlm_cpu_gemm_ws *ws, const kernel *kr, const float *bpre,
                                 int64_t pld) {
  const srlm_cpu_mm p = *pp;
  if (trivial(&p)) return SRLM_OK;
  gemm g = make_gemm(&p, kr);
  const int MR = g.kr->mr, NR = g.kr->nr;
  const int64_t mb_max = p.M < MB ? p.M : MB;
  SRLM_TRY(ws_reserve(&ws->apack, &ws->a_cap, (size_t)((mb_max + MR - 1) / MR * MR) * (size_t)kdepth(&g, p.K)));
  const int64_t n_panels = (p.N + NR - 1) / NR;
  if (bpre) {
    SRLM_CHECK(!g.kr->dot, "cpu matmul: B packed ahead for the %s kernel", g.kr->name);
    g.b_pld = pld;
  } else {
    SRLM_TRY(ws_reserve(&ws->bpack, &ws->b_cap, (size_t)n_panels * (size_t)kdepth(&g, p.K) * (size_t)NR));
    pack_b_panels(&g, 0, n_panels, ws->bpack);
  }
  const unsigned csr = ftz_enter(g.bf16);
  amx_enter(g.kr);
  for (int64_t m_start = 0; m_start < p.M; m_start += MB) {
    const int64_t mb = p.M - m_start < MB ? p.M - m_start : MB;
    for (int64_t i = 0; i < pack_a_shares(&g, mb); i++) pack_a_share(&g, m_start, mb, i, ws->apack);
    gemm_block(&g, ws->apack, bpre ? bpre : ws->bpack, m_start, mb, 0, n_panels);
  }
  if (g.stream_c) srlm_cpu_stream_fence();
  amx_leave(g.kr);
  ftz_leave(g.bf16, csr);
  add_bias(&p, 0);
  return SRLM_OK;
}
static srlm_status gemm_serial(const srlm_cpu_mm *pp, srlm_cpu_gemm_ws *ws, const kernel *kr) {
  return gemm_serial_b(pp, ws, kr, NULL, 0);
}

srlm_status srlm_cpu_gemm_serial(const srlm_cpu_mm *p, srlm_cpu_gemm_ws *ws) { return gemm_serial(p, ws, NULL); }

int srlm_cpu_prepack_nr(const srlm_cpu_mm *p) {
  const kernel *kr = pick_kernel_mm(p);
  return kr->dot ? 0 : kr->nr;
}

void srlm_cpu_prepack_b(const srlm_cpu_mm *p, float *dst) {
  if (p->N == 0 || p->K == 0) return;
  const gemm g = make_gemm(p, NULL);
  SRLM_CHECK(!g.kr->dot, "cpu matmul: B packed ahead for the %s kernel", g.kr->name);
  pack_b_panels(&g, 0, (p->N + g.kr->nr - 1) / g.kr->nr, dst);
}

srlm_status srlm_cpu_gemm_serial_pre(const srlm_cpu_mm *p, const float *bpack, int64_t pld, srlm_cpu_gemm_ws *ws) {
  return gemm_serial_b(p, ws, NULL, bpack, pld);
}

/* The dot-product kernel against the fp32 AVX-512 kernel (MXCSR flushing) and the
 * portable flushing one on products of every layout, K odd and even and across the
 * portable kernel's KC blocks (unit.backend_cpu crosses the others'), accumulating into C with
 * denormals and -0 in it, with values whose products and sums fall below FLT_MIN, and
 * bf16 denormal inputs. Computed once. */
#ifdef SRLM_X86
static int dot_check(void) {
  enum { M = 11, N = 37, KMAX = 301 };
  static const int64_t ks[] = {1, 2, 7, 64, KMAX};
  float *a = calloc(M * KMAX, 4), *b = calloc(KMAX * N, 4), *c0 = calloc(M * N, 4), *c[3];
  for (int r = 0; r < 3; r++) c[r] = calloc(M * N, 4);
  int ok = a && b && c0 && c[0] && c[1] && c[2];
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (int64_t i = 0; ok && i < M * KMAX + KMAX * N + M * N; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    const int e = (int)(x >> 58) % 8;                      /* a magnitude class */
    const float u = (float)((x >> 11) & 0xffffff) / 16777216.0f - 0.5f;
    float v = e == 0 ? u * 1e-20f : e == 1 ? u * 1e-39f : e == 2 ? 0.0f * u : u * (float)(1 << (e * 3));
    if (i < M * KMAX + KMAX * N) v = srlm_bf16_to_f32(srlm_f32_to_bf16(v));
    *(i < M * KMAX ? &a[i] : i < M * KMAX + KMAX * N ? &b[i - M * KMAX] : &c0[i - M * KMAX - KMAX * N]) = v;
  }
  if (ok) {
    c0[0] = -0.0f, c0[1] = 1e-39f;
    /* fixed cases for K = 2, ta = tb = 0 (A(m, k) = a[2m + k], B(k, n) = b[kN + n]):
       C(1, 0) = 0 + 1e-40 (flushed between the pair's two sums) + 1.2e-38;
       C(2, 1) = FLT_MIN - 0.75 x 2^-150, which x86 flushes (tininess after rounding) */
    a[2] = srlm_bf16_to_f32(srlm_f32_to_bf16(1e-20f)), a[3] = 1.0f;
    b[0] = srlm_bf16_to_f32(srlm_f32_to_bf16(1e-20f)), b[N] = srlm_bf16_to_f32(srlm_f32_to_bf16(1.2e-38f));
    a[4] = ldexpf(1.5f, -100), a[5] = 0.0f;
    b[1] = -ldexpf(1.0f, -51), b[N + 1] = 0.0f;
    c0[N] = 0.0f, c0[2 * N + 1] = FLT_MIN;
  }
  const kernel *kr[3] = {&k_avx512bf16, &k_avx512, &k_generic_ftz};
  srlm_cpu_gemm_ws ws = {0};
  for (size_t t = 0; ok && t < sizeof ks / sizeof ks[0] * 8; t++) {
    const int64_t K = ks[t / 8];
    const int ta = t & 1, tb = (t >> 1) & 1, acc = (t >> 2) & 1;
    for (int r = 0; ok && r < 3; r++) {
      memcpy(c[r], c0, M * N * 4);
      srlm_cpu_mm p = {.c = c[r], .a = a, .b = b, .M = M, .N = N, .K = K, .lda = ta ? M : K, .ldb = tb ? K : N,
                       .ldc = N, .trans_a = ta, .trans_b = tb, .accumulate = acc, .bf16 = 1};
      ok = gemm_serial(&p, &ws, kr[r]) == SRLM_OK;
    }
    ok = ok && !memcmp(c[0], c[1], M * N * 4) && !memcmp(c[0], c[2], M * N * 4);
  }
  srlm_cpu_gemm_ws_free(&ws);
  free(a), free(b), free(c0), free(c[0]), free(c[1]), free(c[2]);
  return ok;
}
#endif

#ifdef SRLM_X86
static int g_dot_ok;
static void dot_check_once(void) {
  __builtin_cpu_init();
  g_dot_ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16") && dot_check();
}
#endif

/* The AMX kernel on products of every layout, K across chunks and KC_AMX, accumulating
 * and not: each element within the chain's error bound of the exact sum (a broken tile
 * configuration or packing is far outside it); every row the same bits computed alone
 * (M = 1) as among 37, and the same bits again on a second call. Needs the CPU's AMX-TILE
 * and AMX-BF16 and the kernel's permission for the tile data (Linux's arch_prctl). */
#ifdef SRLM_AMX
static int amx_check(void) {
  enum { M = 37, N = 45, KMAX = 2100 };
  static const struct { int64_t K; int ta, tb, acc; } cases[] = {
      {1, 0, 0, 0},    {33, 1, 0, 1},   {64, 0, 1, 0},     {301, 1, 1, 1},
      {301, 0, 0, 1},  {KMAX, 0, 1, 1}, {KMAX, 1, 0, 0},
  };
  const size_t na = (size_t)M * KMAX, nb = (size_t)KMAX * N;
  uint16_t *a = calloc(na, 2), *b = calloc(nb, 2);
  float *c0 = calloc(M * N, 4), *c = calloc(M * N, 4), *c2 = calloc(M * N, 4), *row = calloc(N, 4);
  int ok = a && b && c0 && c && c2 && row;
  uint64_t x = 0x2545f4914f6cdd1dull;
  for (size_t i = 0; ok && i < na + nb + M * N; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    const float u = ((float)((x >> 11) & 0xffffff) / 16777216.0f - 0.5f) * (float)(1 << ((x >> 60) % 8));
    if (i < na) a[i] = srlm_f32_to_bf16(u);
    else if (i < na + nb) b[i - na] = srlm_f32_to_bf16(u);
    else c0[i - na - nb] = u;
  }
  srlm_cpu_gemm_ws ws = {0};
  for (size_t t = 0; ok && t < sizeof cases / sizeof cases[0]; t++) {
    const int64_t K = cases[t].K;
    const int ta = cases[t].ta, tb = cases[t].tb, acc = cases[t].acc;
    srlm_cpu_mm p = {.a16 = a, .b16 = b, .M = M, .N = N, .K = K, .lda = ta ? M : K, .ldb = tb ? K : N, .ldc = N,
                     .trans_a = ta, .trans_b = tb, .accumulate = acc, .bf16 = 1};
    for (int r = 0; ok && r < 2; r++) {
      memcpy(r ? c2 : c, c0, M * N * 4);
      p.c = r ? c2 : c;
      ok = gemm_serial(&p, &ws, &k_amx) == SRLM_OK;
    }
    ok = ok && !memcmp(c, c2, M * N * 4);
    for (int64_t m = 0; ok && m < M; m += 6) { /* row m alone */
      srlm_cpu_mm q = p;
      q.M = 1, q.a16 = ta ? a + m : a + m * K, q.c = row;
      memcpy(row, c0 + m * N, N * 4);
      ok = gemm_serial(&q, &ws, &k_amx) == SRLM_OK && !memcmp(row, c + m * N, N * 4);
    }
    for (int64_t m = 0; ok && m < M; m++)
      for (int64_t n = 0; ok && n < N; n++) {
        double exact = acc ? c0[m * N + n] : 0.0, mag = fabs(exact);
        for (int64_t k = 0; k < K; k++) {
          const double y = (double)srlm_bf16_to_f32(a[ta ? k * M + m : m * K + k]) *
                           srlm_bf16_to_f32(b[tb ? n * K + k : k * N + n]);
          exact += y, mag += fabs(y);
        }
        ok = fabs(c[m * N + n] - exact) <= (double)(K + 64) * ldexp(mag, -24);
      }
  }
  srlm_cpu_gemm_ws_free(&ws);
  free(a), free(b), free(c0), free(c), free(c2), free(row);
  return ok;
}
static int g_amx_ok;
static void amx_check_once(void) {
  unsigned eax, ebx, ecx, edx;
  const int cpu = __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (edx >> 22 & 1) && (edx >> 24 & 1);
  /* ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA: without it a tile load faults */
  g_amx_ok = cpu && srlm_cpu_bf16_dot_ok() && syscall(SYS_arch_prctl, 0x1023, 18) == 0 && amx_check();
}
#endif

int srlm_cpu_amx_ok(void) {
#ifdef SRLM_AMX
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  return pthread_once(&once, amx_check_once) == 0 && g_amx_ok;
#else
  return 0;
#endif
}

int srlm_cpu_bf16_direct(void) { return pick_kernel_for(1, 0, 0)->dot; }

/* ---- the dot instruction against the fma units -------------------------------------- */

/* Intel's cores run vdpbf16ps at half the rate of their fp32 fmas (86 against 176 GFLOP/s
 * a thread measured on a 2-core Xeon whose hypervisor hides AMX, so the avx512bf16 level
 * is its best; 83 against 165 on a Xeon with AMX); a Zen 4 runs it at twice the rate. On
 * the former the fp32 kernel on widened operands (the same bits: the chain, flushed) does
 * compute-bound bf16 products faster: a 100M model's bf16 training step took 0.61x the
 * time on one thread. Memory-bound ones (decode's, on packed weights) keep the dot kernel,
 * whose panels are half the bytes. The choice is measured once (both instructions'
 * throughput, 12 independent sums each, best of 5 alternated runs of about 0.2 ms) or
 * forced by srlm_backend_cpu_set_bf16_kernel / SRLM_CPU_BF16_KERNEL. */
static int g_widen_forced = -1; /* -1: the default; 0: the dot kernel; 1: fp32 on widened */
static int g_widen_default;     /* SRLM_CPU_BF16_KERNEL's, else measured (widen_decide_once) */
#ifdef SRLM_X86
/* 12 independent sums in registers (named, so that they stay there) */
#define RATE_LOOP(OP, FLOPS)                                                                     \
  __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, \
         c8 = c0, c9 = c0, c10 = c0, c11 = c0;                                                   \
  const double t0 = srlm_time_now();                                                             \
  for (long i = 0; i < n; i++) {                                                                 \
    OP(c0) OP(c1) OP(c2) OP(c3) OP(c4) OP(c5) OP(c6) OP(c7) OP(c8) OP(c9) OP(c10) OP(c11)         \
  }                                                                                              \
  const double t = srlm_time_now() - t0;                                                         \
  volatile float sink = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c5), c11));          \
  (void)sink;                                                                                    \
  return 12.0 * (FLOPS) * (double)n / (t > 0 ? t : 1e-9);
__attribute__((target("avx512f,avx512bf16"), noinline)) static double dot_rate(long n) {
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3f80);
#define DOT_OP(c) c = _mm512_dpbf16_ps(c, a, b); __asm__ volatile("" : "+v"(c));
  RATE_LOOP(DOT_OP, 64.0)
#undef DOT_OP
}
__attribute__((target("avx512f"), noinline)) static double fma_rate(long n) {
  const __m512 a = _mm512_set1_ps(1.0f), b = _mm512_set1_ps(0.5f);
#define FMA_OP(c) c = _mm512_fmadd_ps(a, b, c); __asm__ volatile("" : "+v"(c));
  RATE_LOOP(FMA_OP, 32.0)
#undef FMA_OP
}
#undef RATE_LOOP
static void widen_decide_once(void) {
  const char *e = getenv("SRLM_CPU_BF16_KERNEL");
  if (e && (!strcmp(e, "dot") || !strcmp(e, "fma"))) {
    g_widen_default = !strcmp(e, "fma");
    return;
  }
  if (e && strcmp(e, "auto") != 0)
    SRLM_WARN("SRLM_CPU_BF16_KERNEL='%s' is not auto, dot or fma: the kernel is measured", e);
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"))) return;
  double dot = 0, fma = 0;
  for (int r = 0; r < 5; r++) {
    const double d = dot_rate(20000), f = fma_rate(20000);
    dot = d > dot ? d : dot, fma = f > fma ? f : fma;
  }
  g_widen_default = fma > 1.5 * dot; /* (each way's packing costs aside) */
}
#endif
static int dot_widen(void) {
  const int forced = __atomic_load_n(&g_widen_forced, __ATOMIC_RELAXED);
  if (forced >= 0) return forced;
#ifdef SRLM_X86
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  return pthread_once(&once, widen_decide_once) == 0 && g_widen_default;
#else
  return 0;
#endif
}

srlm_status srlm_backend_cpu_set_bf16_kernel(const char *kind) {
  const int v = !kind || !strcmp(kind, "auto") ? -1 : !strcmp(kind, "dot") ? 0 : !strcmp(kind, "fma") ? 1 : -2;
  if (v == -2) return srlm_error(SRLM_ERR_CONFIG, "cpu backend", "unknown bf16 kernel '%s' (auto, dot, fma)", kind);
  __atomic_store_n(&g_widen_forced, v, __ATOMIC_RELAXED);
  return SRLM_OK;
}

const char *srlm_backend_cpu_bf16_kernel(void) {
  const kernel *k = pick_kernel_for(1, 0, 0);
#ifdef SRLM_AMX
  if (k == &k_amx) return "amx";
#endif
  return k->dot ? "dot" : "fma";
}

int srlm_cpu_chain_widen(void) { return pick_kernel_for(1, 1, 0) != pick_kernel_for(1, 1, 1); }

int srlm_cpu_bf16_dot_ok(void) {
#ifdef SRLM_X86
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  return pthread_once(&once, dot_check_once) == 0 && g_dot_ok;
#else
  return 0;
#endif
}

void srlm_cpu_gemm_ws_free(srlm_cpu_gemm_ws *ws) {
  free(ws->apack);
  free(ws->bpack);
  memset(ws, 0, sizeof *ws);
}


/* ---- packed weights ------------------------------------------------------------------ */

typedef struct packed_b {
  const void *b;     /* the key: B's address */
  uint64_t version;
  int64_t N, K, ldb;
  int trans_b;
  srlm_dtype dtype;
  const kernel *kr;  /* the panels are NR = kr->nr wide */
  float *data;       /* (N panels) x K x NR */
  size_t floats;
} packed_b;

static struct {
  pthread_mutex_t mu;
  packed_b *e;
  size_t n, cap, floats;
} g_packed = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void packed_drop(size_t i) {
  free(g_packed.e[i].data);
  g_packed.floats -= g_packed.e[i].floats;
  g_packed.e[i] = g_packed.e[--g_packed.n];
}

void srlm_cpu_packed_forget(srlm_backend *be, const void *ptr, size_t bytes) {
  (void)be;
  const char *lo = ptr, *hi = lo + bytes;
  pthread_mutex_lock(&g_packed.mu);
  for (size_t i = 0; i < g_packed.n;) {
    const char *b = g_packed.e[i].b;
    if (b >= lo && b < hi)
      packed_drop(i);
    else
      i++;
  }
  pthread_mutex_unlock(&g_packed.mu);
}

size_t srlm_backend_cpu_packed_bytes(void) {
  pthread_mutex_lock(&g_packed.mu);
  const size_t n = g_packed.floats * sizeof(float);
  pthread_mutex_unlock(&g_packed.mu);
  return n;
}

/* The entry of p's B, packed for kernel kr now (made or remade as needed); the caller
 * holds the lock. NULL with *st set when memory runs out. */
static packed_b *packed_get(const srlm_matmul_params *p, const kernel *kr, srlm_status *st) {
  size_t i = 0;
  while (i < g_packed.n && g_packed.e[i].b != p->b) i++;
  if (i < g_packed.n) {
    packed_b *e = &g_packed.e[i];
    if (e->version == p->b_version && e->N == p->N && e->K == p->K && e->ldb == p->ldb && e->trans_b == p->trans_b &&
        e->dtype == p->dtype && e->kr == kr)
      return e;
    packed_drop(i); /* a new version (or shape): repack */
  }
  const int64_t n_panels = (p->N + kr->nr - 1) / kr->nr;
  const gemm shape = {.kr = kr};
  const size_t floats = (size_t)n_panels * (size_t)kdepth(&shape, p->K) * (size_t)kr->nr;
  float *data = NULL;
  if (posix_memalign((void **)&data, 64, floats * sizeof(float)) != 0) {
    *st = srlm_error(SRLM_ERR_NOMEM, "cpu matmul", "cannot allocate %zu bytes for a packed weight", floats * 4);
    return NULL;
  }
  const int bf16 = p->dtype == SRLM_BF16;
  gemm g = {.kr = kr, .M = 0, .N = p->N, .K = p->K, .ldb = p->ldb, .trans_b = p->trans_b, .bf16 = bf16,
            .b = bf16 ? NULL : p->b, .b16 = bf16 ? p->b : NULL};
  SRLM_OMP_ROWS
  for (int64_t jp = 0; jp < n_panels; jp++)
    for (int64_t k0 = 0; k0 < p->K; k0 += kr->kc)
      pack_b(&g, k0, p->K - k0 < kr->kc ? p->K - k0 : kr->kc, jp * kr->nr, data + packed_offset(&g, jp, k0));
  if (g_packed.n == g_packed.cap) {
    size_t cap = g_packed.cap ? 2 * g_packed.cap : 64;
    packed_b *e = realloc(g_packed.e, cap * sizeof *e);
    if (!e) {
      free(data);
      *st = srlm_error(SRLM_ERR_NOMEM, "cpu matmul", "cannot grow the packed-weight cache");
      return NULL;
    }
    g_packed.e = e, g_packed.cap = cap;
  }
  g_packed.e[g_packed.n] = (packed_b){p->b, p->b_version, p->N, p->K, p->ldb, p->trans_b, p->dtype, kr, data, floats};
  g_packed.floats += floats;
  return &g_packed.e[g_packed.n++];
}

/* 0 when the environment says SRLM_CPU_PACKED_WEIGHTS=0: b_version is then ignored (every
 * product packs its B, as before the cache existed; the same bits), for measuring what
 * the cache saves. */
static int packed_weights_on(void) {
  static int on = -1;
  int v = __atomic_load_n(&on, __ATOMIC_RELAXED);
  if (v < 0) {
    const char *e = getenv("SRLM_CPU_PACKED_WEIGHTS");
    v = !(e && !strcmp(e, "0"));
    __atomic_store_n(&on, v, __ATOMIC_RELAXED);
  }
  return v;
}

/* The op: bf16 A and B are widened (exactly) or packed as they are (the dot kernel); a
 * bf16 C is rounded once from the flushed fp32 chain (see the top): by each tile when its
 * chains end in one kernel call (K within one KC block, no bias, not accumulating), else
 * widened into an fp32 copy when accumulating and rounded at the end. The same bits. */
srlm_status srlm_cpu_matmul(srlm_backend *be, srlm_matmul_params p) {
  (void)be;
  SRLM_TRY(srlm_matmul_params_check(&p, "cpu matmul"));
  if (p.M == 0 || p.N == 0) return SRLM_OK;
  if (p.ldb == 0) p.ldb = p.trans_b ? p.K : p.N;
  const int packed = p.b_version != 0 && p.K > 0 && p.M <= SRLM_CPU_PACKED_MAX_M && packed_weights_on();
  srlm_status st = SRLM_OK;
  const packed_b *e = NULL;
  if (packed) {
    pthread_mutex_lock(&g_packed.mu);
    e = packed_get(&p, pick_kernel(p.dtype == SRLM_BF16), &st);
    if (!e) {
      pthread_mutex_unlock(&g_packed.mu);
      return st;
    }
  }
  srlm_cpu_stage s = {0};
  const int64_t nc = (p.M - 1) * p.ldc + p.N;
  /* bf16 A and B are packed from the tensors themselves: as bf16 pairs by the dot and tile
     kernels, widened as they go by the fp32 ones. wide: the level's kernel for a
     compute-bound product; on packed weights pick_kernel's, which reads bf16 pairs where the
     level has a dot kernel (decode) */
  const int bf16 = p.dtype == SRLM_BF16;
  srlm_cpu_mm m = {.a = bf16 ? NULL : (const float *)p.a, .b = bf16 || e ? NULL : (const float *)p.b,
                   .a16 = bf16 ? p.a : NULL, .b16 = bf16 && !e ? p.b : NULL, .wide = !e,
                   .bias = srlm_cpu_stage_in(&s, p.bias, p.c_dtype, p.N),
                   .M = p.M, .N = p.N, .K = p.K, .lda = p.lda, .ldb = p.ldb, .ldc = p.ldc,
                   .trans_a = p.trans_a, .trans_b = p.trans_b, .accumulate = p.accumulate,
                   .bf16 = p.dtype == SRLM_BF16};
  /* a bf16 C is written by the tiles where they hold whole chains, else staged in fp32 */
  const int c16 = p.c_dtype == SRLM_BF16 && srlm_cpu_gemm_c16_ok(&m);
  if (c16)
    m.c16 = p.c;
  else
    m.c = srlm_cpu_stage_out(&s, p.c, p.c_dtype, nc, p.accumulate || p.ldc > p.N);
  st = gemm_run(&m, e ? e->data : NULL);
  if (e) pthread_mutex_unlock(&g_packed.mu);
  if (st == SRLM_OK && !c16) srlm_cpu_stage_store(p.c, p.c_dtype, m.c, nc);
  srlm_cpu_stage_free(&s);
  return st;
}
