/* Private to the CPU backend: its op entry points, the OpenMP row loop, the
 * single-threaded fp32 matrix product other ops build on, and the bf16 staging and
 * row conversions ops use to compute bf16 tensors in fp32.
 *
 * bf16 on the CPU: an op with dtype bf16 widens its bf16 inputs to fp32 copies
 * (exact), runs the fp32 code, and rounds its bf16 outputs to nearest even (an output
 * that accumulates, or that the op updates in place, is widened first). fp32 tensors of
 * a bf16 op (statistics, parameter gradients) are used as they are. That is the
 * definition of every op's bf16 result ("bf16 storage, fp32 math"), but for two: bf16
 * products flush denormals (matmul.c), and attention's P and dS enter their products as
 * two bf16 parts each (attention.c: within 2^-16 of each term, not the staged bits). */
#ifndef SRLM_BACKEND_CPU_OPS_H
#define SRLM_BACKEND_CPU_OPS_H

#include <stddef.h>

#include "srlm/backend.h"

/* Rows are split over OpenMP threads; each row is computed by one thread in a fixed
 * order, so results do not depend on the thread count. */
#ifdef _OPENMP
#define SRLM_OMP_ROWS _Pragma("omp parallel for schedule(static)")
#else
#define SRLM_OMP_ROWS
#endif

/* The ops of the table (cpu_backend.c). */
#define SRLM_CPU_OP_DECL_(op, type) srlm_status srlm_cpu_##op(srlm_backend *be, type p);
SRLM_BACKEND_OPS(SRLM_CPU_OP_DECL_)
#undef SRLM_CPU_OP_DECL_

/* An fp32 matrix product, the fields of srlm_matmul_params with typed pointers (strides
 * resolved: never 0). bf16 = 1 says that A and B hold widened bf16 values: the product is
 * then the bf16 one of matmul.c (the same fma chain with denormals flushed, and the
 * AVX-512 BF16 dot-product kernel where the level allows it; at the amx level the tile
 * unit's chunked sums instead, unless chain = 1). */
typedef struct srlm_cpu_mm {
  float *c;
  const float *a, *b, *bias;
  int64_t M, N, K, lda, ldb, ldc;
  int trans_a, trans_b, accumulate, bf16;
  /* 1: a bf16 product must be the chain even at the amx level: there the dot-product
   * kernel when A or B is given as bf16 (a16 / b16), else the fp32 kernel with denormals
   * flushed (the same bits; srlm_cpu_chain_widen) */
  int chain;
  /* A / B of a bf16 product may be given as the bf16 tensors themselves (same strides; a /
   * b then NULL), packed without a widened copy: the dot and tile kernels read them as bf16
   * pairs, the fp32 kernels widen them as they pack (srlm_cpu_matmul always does so) */
  const uint16_t *a16, *b16;
  /* 1: a16 / b16 given for a compute-bound product: the level's kernel for it (the one
   * srlm_cpu_bf16_direct describes), not the one that prefers bf16 operands (at avx512bf16
   * on a CPU whose dot instruction is slow: the fp32 kernel, not the dot kernel) */
  int wide;
  /* C in bf16 (c then NULL): each tile rounded once from its fp32 chains and written, no
   * fp32 copy of C; only where K is one KC block of the kernel and there is no bias nor
   * accumulation (srlm_cpu_gemm_c16_ok) */
  uint16_t *c16;
} srlm_cpu_mm;

/* The fp32 product with OpenMP over column panels (the matmul op's fp32 path). */
srlm_status srlm_cpu_gemm(const srlm_cpu_mm *p);
/* Whether srlm_cpu_gemm can write p's C as bf16 (c16) at the ISA level in force. */
int srlm_cpu_gemm_c16_ok(const srlm_cpu_mm *p);
/* The same on the calling thread only (for ops that are themselves parallel over
 * tiles), with packing space kept in ws between calls (zero-initialize ws; free it with
 * srlm_cpu_gemm_ws_free). Same rounding as srlm_cpu_gemm: same bits. */
typedef struct srlm_cpu_gemm_ws {
  float *apack, *bpack;
  size_t a_cap, b_cap; /* floats */
} srlm_cpu_gemm_ws;
srlm_status srlm_cpu_gemm_serial(const srlm_cpu_mm *p, srlm_cpu_gemm_ws *ws);
/* B packed ahead, for serial products that share it (attention: a sequence's keys for every
 * query tile and head of a group). srlm_cpu_prepack_nr: the panel width of p's kernel, 0
 * where that kernel packs B its own way (the dot-product and tile kernels: no packing
 * ahead). srlm_cpu_prepack_b: p's B (K x N, fp32 sources) into dst as ceil(N / NR) panels
 * of NR columns one after another, each K NR floats, k row by row (columns past N zero).
 * srlm_cpu_gemm_serial_pre: the product p (its b unused) with B read from bpack: B(k, n)
 * of p is bpack[(n / NR) pld + k NR + n % NR]. So a product over rows [k0, ..) and the
 * columns from panel jp of a larger packed B passes bpack + jp pld + k0 NR and that B's
 * panel size as pld. Same kernel, same chains: the bits of srlm_cpu_gemm_serial. */
int srlm_cpu_prepack_nr(const srlm_cpu_mm *p);
void srlm_cpu_prepack_b(const srlm_cpu_mm *p, float *dst);
srlm_status srlm_cpu_gemm_serial_pre(const srlm_cpu_mm *p, const float *bpack, int64_t pld, srlm_cpu_gemm_ws *ws);
void srlm_cpu_gemm_ws_free(srlm_cpu_gemm_ws *ws);

/* The packed-weight cache of matmul's b_version (matmul.c): the backend's forget drops
 * every entry whose B starts in [ptr, ptr + bytes) (srlm_backend_cpu_packed_bytes in
 * backend.h says what it holds). */
void srlm_cpu_packed_forget(srlm_backend *be, const void *ptr, size_t bytes);

/* out[i] = exp(a x[i] - b) for i < n (out may alias x, or be NULL), vectorized; returns
 * the sum of the outputs, added in a fixed order (see vexp.c). */
float srlm_cpu_exp_affine(const float *x, float a, float b, float *out, int64_t n);
/* The largest x[i], i < n, by the rule m = x[i] > m ? x[i] : m from -INFINITY in order (NaN
 * never taken; of equal zeros the first): sixteen lanes at the avx512 levels and above, the
 * same value (the softmax rows' max, vexp.c). */
float srlm_cpu_max(const float *x, int64_t n);

/* The vector code level in force (isa.c): SRLM_CPU_ISA_*. AVX512_BF16 is AVX-512 plus the
 * bf16 dot-product instruction for bf16 matrix products (every other op runs its AVX-512
 * code there); AMX is that plus the tile unit for bf16 matrix products (matmul.c: its own
 * bits, not the chain's). */
enum {
  SRLM_CPU_ISA_GENERIC = 0,
  SRLM_CPU_ISA_AVX2 = 1,
  SRLM_CPU_ISA_AVX512 = 2,
  SRLM_CPU_ISA_AVX512_BF16 = 3,
  SRLM_CPU_ISA_AMX = 4
};
int srlm_cpu_isa(void);
/* 1 when this CPU's bf16 dot-product instruction gives the bits of matmul.c's bf16
 * contract on a set of checked products (isa.c offers the level only then). */
int srlm_cpu_bf16_dot_ok(void);
/* 1 when the CPU has AMX-BF16, the OS lets this process use the tile data, and the tile
 * kernel passes matmul.c's start-up check (isa.c offers the amx level only then). */
int srlm_cpu_amx_ok(void);
/* 1 when compute-bound bf16 products run the dot-product or tile kernel at the level in
 * force, which read bf16 A and B directly (srlm_cpu_mm's a16 / b16); 0 where they run
 * the fp32 kernels on widened operands (below avx512bf16, or at it on a CPU whose dot
 * instruction is slow: srlm_backend_cpu_bf16_kernel "fma"). */
int srlm_cpu_bf16_direct(void);
/* 1 when chain products (srlm_cpu_mm.chain) run faster on widened operands than on bf16
 * ones at the level in force: at the amx level, because the CPUs with the tile unit
 * (Intel's) run the dot-product instruction at half the rate of their fp32 fmas (83 vs 165
 * GFLOP/s a thread measured on a Xeon with AMX; a Zen 4 runs it at twice the rate), and at
 * avx512bf16 on such a CPU (bf16 kernel "fma"). The
 * fp32 kernel gives the same bits, so a caller that widens its rows once for many
 * products (attention's tiles of 64 queries) gains; one that would widen rows for a single
 * product (a decode step's query) keeps them bf16. */
int srlm_cpu_chain_widen(void);

/* ---- bf16 staging ----------------------------------------------------------------- */

/* SwiGLU, add, RMSNorm and RoPE do not stage whole bf16 tensors: each thread widens the
 * block or row it works on into its own fp32 buffer, runs the fp32 code on it, and rounds
 * that part's outputs back; the same arithmetic, so the same bits as staging
 * (unit.backend_cpu checks each against staging). Attention reads bf16 rows directly
 * (attention.c; widened rows below the dot kernel's level). The other ops stage.
 * These two convert on the calling thread only (AVX-512 sixteen at a time at that level,
 * else core.h's srlm_convert; the same bits). */
void srlm_cpu_widen(float *dst, const uint16_t *src, int64_t n);  /* exact */
void srlm_cpu_narrow(uint16_t *dst, const float *src, int64_t n); /* to nearest even */
/* rows x n of src (row stride lds) narrowed into dst (row stride ldd): srlm_cpu_narrow of
 * each row, the level looked up once (a product's 32 x 32 tiles, attention's output rows);
 * widen_rows likewise (attention's input rows) */
void srlm_cpu_narrow_rows(uint16_t *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows, int64_t n);
void srlm_cpu_widen_rows(float *dst, int64_t ldd, const uint16_t *src, int64_t lds, int64_t rows, int64_t n);
/* rows x 32 of src (row stride lds) narrowed as srlm_cpu_narrow_rows into dst (row stride
 * ldd), each row one 64-byte line written past the caches (a non-temporal store: every row
 * of dst 64-byte aligned); at the avx512 levels and above only. The writing thread calls
 * srlm_cpu_stream_fence before another thread may read them. */
void srlm_cpu_narrow_rows32_stream(uint16_t *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows);
void srlm_cpu_stream_fence(void);
/* x as two bf16 parts, hi = bf16(x) and lo = bf16(x - hi) (x - hi is exact; each to
 * nearest even): into hi16 / lo16 as bf16 and into hif / lof widened (either pair may be
 * NULL), in one pass; the bits of srlm_cpu_narrow and srlm_cpu_widen's steps. */
void srlm_cpu_split(const float *x, int64_t n, uint16_t *hi16, uint16_t *lo16, float *hif, float *lof);

/* fp32 copies of an op's bf16 tensors, freed together. */
#define SRLM_CPU_STAGE_MAX 12
typedef struct srlm_cpu_stage {
  float *buf[SRLM_CPU_STAGE_MAX];
  int n;
} srlm_cpu_stage;

/* x (n elements of dtype dt) as fp32: x itself when dt is fp32, else a widened copy;
 * NULL stays NULL. */
const float *srlm_cpu_stage_in(srlm_cpu_stage *s, const void *x, srlm_dtype dt, int64_t n);
/* Where an op writes an output x of dtype dt: x itself when fp32, else an fp32 buffer,
 * holding x's widened values when load is 1 (accumulated or in-place outputs). */
float *srlm_cpu_stage_out(srlm_cpu_stage *s, void *x, srlm_dtype dt, int64_t n, int load);
/* Stores a staged output back: rounds f (n) into x when dt is bf16 (nothing when fp32). */
void srlm_cpu_stage_store(void *x, srlm_dtype dt, const float *f, int64_t n);
void srlm_cpu_stage_free(srlm_cpu_stage *s);

#endif
