/* CPU elementwise and gather ops of the transformer: SwiGLU and its backward, residual
 * add, bias gradient (column sums), embedding gather and its scatter-add backward.
 * Sums over rows run in a fixed order (rows in blocks, blocks in order, or one thread
 * per column range), so results do not depend on the thread count. bf16 tensors are
 * computed in fp32 a block at a time (SwiGLU, add) or staged through fp32 (colsum, the
 * embedding backward's gradient) (cpu_ops.h); the gathers and scatters move rows of any
 * dtype as they are. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "simd16.h"

/* exp(-gate) is computed a block at a time with the vector exp; blocks are a fixed
 * partition of the elements, so the bits do not depend on the thread count. bf16 tensors
 * are widened a block at a time into the thread's buffers (cpu_ops.h: srlm_cpu_widen). */
enum { EW_BLOCK = 1024 };

/* Block i0 (len elements) of an input: the fp32 tensor itself, or its bf16 values widened
 * into buf. */
static const float *block_in(const void *x, srlm_dtype dt, int64_t i0, int64_t len, float *buf) {
  if (dt == SRLM_F32) return (const float *)x + i0;
  srlm_cpu_widen(buf, (const uint16_t *)x + i0, len);
  return buf;
}

/* Where block i0 of an output is computed: the fp32 tensor itself, or buf (then
 * block_out rounds it into the bf16 tensor). */
static float *block_at(void *x, srlm_dtype dt, int64_t i0, float *buf) {
  return dt == SRLM_F32 ? (float *)x + i0 : buf;
}

static void block_out(void *x, srlm_dtype dt, int64_t i0, int64_t len, const float *buf) {
  if (dt != SRLM_F32) srlm_cpu_narrow((uint16_t *)x + i0, buf, len);
}

/* h = silu(gate) * up over one block; h may alias gate or up */
static void swiglu_block(float *h, const float *gate, const float *up, int64_t len) {
  float e[EW_BLOCK];
  srlm_cpu_exp_affine(gate, -1.0f, 0.0f, e, len);
  for (int64_t i = 0; i < len; i++) {
    const float g = gate[i], u = up[i];
    h[i] = g / (1.0f + e[i]) * u;
  }
}

/* The avx512 levels: SwiGLU, its backward and add over a block sixteen elements at a time,
 * reading and writing the tensors' own dtype (no widened copies of the block), the same
 * operations on each element in the same order as the blocks below (exp16 is
 * srlm_cpu_exp_affine's exp of -gate; the products and sums that follow one another use
 * the explicitly rounded forms, which the compiler does not fuse into an fma). Return the
 * elements done, a multiple of 16; the rest goes through the blocks below. */
#if defined(__x86_64__) || defined(__i386__)
#define RN (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
__attribute__((target("avx512f"))) static int64_t swiglu16(void *h, const void *gate, const void *up, srlm_dtype dt,
                                                           int64_t i0, int64_t len) {
  const __m512 one = _mm512_set1_ps(1.0f), m1 = _mm512_set1_ps(-1.0f), mz = _mm512_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    const __m512 g = load16(gate, dt, i0 + i), u = load16(up, dt, i0 + i);
    const __m512 e = exp16(_mm512_fmadd_ps(m1, g, mz));
    store16(h, dt, i0 + i, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u));
  }
  return i;
}
__attribute__((target("avx512f"))) static int64_t swiglu_bwd16(void *dgate, void *dup, const void *gate, const void *up,
                                                               const void *dh, srlm_dtype dt, int64_t i0, int64_t len) {
  const __m512 one = _mm512_set1_ps(1.0f), m1 = _mm512_set1_ps(-1.0f), mz = _mm512_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    const __m512 g = load16(gate, dt, i0 + i), u = load16(up, dt, i0 + i), d = load16(dh, dt, i0 + i);
    const __m512 e = exp16(_mm512_fmadd_ps(m1, g, mz));
    const __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, e)), silu = _mm512_mul_ps(g, sg);
    /* sg (1 + g (1 - sg)): a product then a sum, each rounded */
    const __m512 t = _mm512_add_round_ps(one, _mm512_mul_round_ps(g, _mm512_sub_ps(one, sg), RN), RN);
    store16(dgate, dt, i0 + i, _mm512_mul_ps(_mm512_mul_ps(d, u), _mm512_mul_ps(sg, t)));
    store16(dup, dt, i0 + i, _mm512_mul_ps(d, silu));
  }
  return i;
}
__attribute__((target("avx512f"))) static int64_t add16(void *out, const void *a, const void *b, srlm_dtype dt,
                                                        int64_t i0, int64_t len) {
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) store16(out, dt, i0 + i, _mm512_add_ps(load16(a, dt, i0 + i), load16(b, dt, i0 + i)));
  return i;
}
#undef RN
#define VEC16(call) (srlm_cpu_isa() >= SRLM_CPU_ISA_AVX512 ? (call) : 0)
#else
#define VEC16(call) 0
#endif

srlm_status srlm_cpu_swiglu_forward(srlm_backend *be, srlm_swiglu_params p) {
  (void)be;
  SRLM_TRY(srlm_swiglu_params_check(&p, "cpu swiglu_forward"));
  const int64_t n = p.N * p.FF, nblk = (n + EW_BLOCK - 1) / EW_BLOCK;
  const srlm_dtype dt = p.dtype;
  SRLM_OMP_ROWS
  for (int64_t b = 0; b < nblk; b++) {
    int64_t i0 = b * EW_BLOCK, len = n - i0 < EW_BLOCK ? n - i0 : EW_BLOCK;
    const int64_t done = VEC16(swiglu16(p.h, p.gate, p.up, dt, i0, len));
    i0 += done, len -= done;
    if (len == 0) continue;
    float gb[EW_BLOCK], ub[EW_BLOCK], hb[EW_BLOCK]; /* bf16 blocks widened */
    float *h = block_at(p.h, dt, i0, hb);
    swiglu_block(h, block_in(p.gate, dt, i0, len, gb), block_in(p.up, dt, i0, len, ub), len);
    block_out(p.h, dt, i0, len, hb);
  }
  return SRLM_OK;
}

/* dgate, dup over one block; the outputs may alias the inputs */
static void swiglu_bwd_block(float *dgate, float *dup, const float *gate, const float *up, const float *dh,
                             int64_t len) {
  float e[EW_BLOCK];
  srlm_cpu_exp_affine(gate, -1.0f, 0.0f, e, len);
  for (int64_t i = 0; i < len; i++) {
    const float g = gate[i], u = up[i], d = dh[i];
    const float sg = 1.0f / (1.0f + e[i]), silu = g * sg;
    dgate[i] = d * u * (sg * (1.0f + g * (1.0f - sg)));
    dup[i] = d * silu;
  }
}

srlm_status srlm_cpu_swiglu_backward(srlm_backend *be, srlm_swiglu_bwd_params p) {
  (void)be;
  SRLM_TRY(srlm_swiglu_bwd_params_check(&p, "cpu swiglu_backward"));
  const int64_t n = p.N * p.FF, nblk = (n + EW_BLOCK - 1) / EW_BLOCK;
  const srlm_dtype dt = p.dtype;
  SRLM_OMP_ROWS
  for (int64_t b = 0; b < nblk; b++) {
    int64_t i0 = b * EW_BLOCK, len = n - i0 < EW_BLOCK ? n - i0 : EW_BLOCK;
    const int64_t done = VEC16(swiglu_bwd16(p.dgate, p.dup, p.gate, p.up, p.dh, dt, i0, len));
    i0 += done, len -= done;
    if (len == 0) continue;
    float gb[EW_BLOCK], ub[EW_BLOCK], db[EW_BLOCK], dgb[EW_BLOCK], dub[EW_BLOCK];
    float *dgate = block_at(p.dgate, dt, i0, dgb), *dup = block_at(p.dup, dt, i0, dub);
    swiglu_bwd_block(dgate, dup, block_in(p.gate, dt, i0, len, gb), block_in(p.up, dt, i0, len, ub),
                     block_in(p.dh, dt, i0, len, db), len);
    block_out(p.dgate, dt, i0, len, dgb);
    block_out(p.dup, dt, i0, len, dub);
  }
  return SRLM_OK;
}

srlm_status srlm_cpu_add(srlm_backend *be, srlm_add_params p) {
  (void)be;
  SRLM_TRY(srlm_add_params_check(&p, "cpu add"));
  const srlm_dtype dt = p.dtype;
  if (dt == SRLM_F32) {
    const float *a = p.a, *b = p.b;
    float *out = p.out;
    SRLM_OMP_ROWS
    for (int64_t i = 0; i < p.n; i++) out[i] = a[i] + b[i];
    return SRLM_OK;
  }
  const int64_t nblk = (p.n + EW_BLOCK - 1) / EW_BLOCK;
  SRLM_OMP_ROWS
  for (int64_t k = 0; k < nblk; k++) {
    int64_t i0 = k * EW_BLOCK, len = p.n - i0 < EW_BLOCK ? p.n - i0 : EW_BLOCK;
    const int64_t done = VEC16(add16(p.out, p.a, p.b, dt, i0, len));
    i0 += done, len -= done;
    if (len == 0) continue;
    float ab[EW_BLOCK], bb[EW_BLOCK];
    const float *a = block_in(p.a, dt, i0, len, ab), *b = block_in(p.b, dt, i0, len, bb);
    for (int64_t i = 0; i < len; i++) ab[i] = a[i] + b[i];
    block_out(p.out, dt, i0, len, ab);
  }
  return SRLM_OK;
}

enum { SUM_BLOCK = 64 }; /* rows summed into one partial before the partials are added */

srlm_status srlm_cpu_colsum(srlm_backend *be, srlm_colsum_params p) {
  (void)be;
  SRLM_TRY(srlm_colsum_params_check(&p, "cpu colsum"));
  const int64_t N = p.N, C = p.C, nblk = (N + SUM_BLOCK - 1) / SUM_BLOCK;
  if (N == 0) return SRLM_OK;
  float *part = calloc((size_t)(nblk * C), sizeof *part); /* (nblk, C) */
  if (!part) return srlm_error(SRLM_ERR_NOMEM, "cpu colsum", "cannot allocate %lld partial sums", (long long)(nblk * C));
  srlm_cpu_stage s = {0};
  const float *x = srlm_cpu_stage_in(&s, p.x, p.dtype, N * C);
  SRLM_OMP_ROWS
  for (int64_t b = 0; b < nblk; b++) {
    const int64_t end = (b + 1) * SUM_BLOCK < N ? (b + 1) * SUM_BLOCK : N;
    for (int64_t n = b * SUM_BLOCK; n < end; n++)
      for (int64_t c = 0; c < C; c++) part[b * C + c] += x[n * C + c];
  }
  SRLM_OMP_ROWS
  for (int64_t c = 0; c < C; c++) {
    float acc = p.out[c];
    for (int64_t b = 0; b < nblk; b++) acc += part[b * C + c];
    p.out[c] = acc;
  }
  srlm_cpu_stage_free(&s);
  free(part);
  return SRLM_OK;
}

static srlm_status check_ids(const char *where, const int32_t *ids, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; n++)
    if (ids[n] < 0 || ids[n] >= V)
      return srlm_error(SRLM_ERR_RANGE, where, "row %lld: token id %d out of range [0, %lld)", (long long)n, (int)ids[n],
                        (long long)V);
  return SRLM_OK;
}

srlm_status srlm_cpu_embedding_forward(srlm_backend *be, srlm_embedding_params p) {
  (void)be;
  const char *where = "cpu embedding_forward";
  SRLM_TRY(srlm_embedding_params_check(&p, where));
  SRLM_TRY(check_ids(where, p.ids, p.N, p.V));
  const size_t row = (size_t)p.C * srlm_dtype_size(p.dtype);
  SRLM_OMP_ROWS
  for (int64_t n = 0; n < p.N; n++) memcpy((char *)p.out + (size_t)n * row, (const char *)p.table + (size_t)p.ids[n] * row, row);
  return SRLM_OK;
}

/* Columns are split over threads; each walks all rows in order for its columns. */
enum { COL_BLOCK = 64 };

srlm_status srlm_cpu_embedding_backward(srlm_backend *be, srlm_embedding_bwd_params p) {
  (void)be;
  const char *where = "cpu embedding_backward";
  SRLM_TRY(srlm_embedding_bwd_params_check(&p, where));
  SRLM_TRY(check_ids(where, p.ids, p.N, p.V));
  const int64_t C = p.C, ncb = (C + COL_BLOCK - 1) / COL_BLOCK;
  srlm_cpu_stage s = {0};
  const float *dout = srlm_cpu_stage_in(&s, p.dout, p.dtype, p.N * C);
  /* a bf16 table is widened only at the rows the ids touch, then rounded back once */
  float *dtable = p.dtable;
  int32_t *touched = NULL;
  int64_t n_touched = 0;
  if (p.table_dtype != SRLM_F32) {
    char *seen = srlm_xcalloc((size_t)p.V, 1);
    touched = srlm_xmalloc((size_t)(p.N > 0 ? p.N : 1) * sizeof *touched);
    for (int64_t n = 0; n < p.N; n++)
      if (!seen[p.ids[n]]) {
        seen[p.ids[n]] = 1;
        touched[n_touched++] = p.ids[n];
      }
    free(seen);
    dtable = srlm_xcalloc((size_t)(p.V * C), sizeof *dtable); /* only touched rows are read back */
    for (int64_t i = 0; i < n_touched; i++)
      srlm_convert(dtable + (int64_t)touched[i] * C, SRLM_F32, (const uint16_t *)p.dtable + (int64_t)touched[i] * C,
                   p.table_dtype, (size_t)C);
  }
  SRLM_OMP_ROWS
  for (int64_t cb = 0; cb < ncb; cb++) {
    const int64_t c0 = cb * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
    for (int64_t n = 0; n < p.N; n++) {
      float *dst = dtable + (int64_t)p.ids[n] * C;
      const float *src = dout + n * C;
      for (int64_t c = c0; c < c1; c++) dst[c] += src[c];
    }
  }
  if (p.table_dtype != SRLM_F32) {
    for (int64_t i = 0; i < n_touched; i++)
      srlm_convert((uint16_t *)p.dtable + (int64_t)touched[i] * C, p.table_dtype, dtable + (int64_t)touched[i] * C,
                   SRLM_F32, (size_t)C);
    free(dtable);
    free(touched);
  }
  srlm_cpu_stage_free(&s);
  return SRLM_OK;
}
