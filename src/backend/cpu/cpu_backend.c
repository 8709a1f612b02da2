/* CPU backend: the reference op table. Buffers are host memory aligned to 64 bytes;
 * copies are memcpy and every op finishes before it returns (sync has nothing to do).
 * The backend keeps no state, so one process-wide instance serves every caller.
 *
 * This file also holds the small ops (cast, KV append, the optimizer's sum of squares
 * and AdamW) and the bf16 staging of cpu_ops.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_ops.h"
#include "simd16.h"

static srlm_status cpu_create(srlm_backend *be, int device) {
  (void)device; /* one host, no devices to choose */
  be->device = -1;
  be->ctx = NULL;
  return SRLM_OK;
}

static srlm_status cpu_destroy(srlm_backend *be) {
  (void)be;
  return SRLM_OK;
}

static srlm_status cpu_alloc(srlm_backend *be, void **ptr, size_t bytes) {
  (void)be;
  *ptr = NULL;
  if (bytes == 0) return SRLM_OK;
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes) != 0)
    return srlm_error(SRLM_ERR_NOMEM, "cpu alloc", "cannot allocate %zu bytes", bytes);
  *ptr = p;
  return SRLM_OK;
}

static srlm_status cpu_free(srlm_backend *be, void *ptr) {
  (void)be;
  free(ptr);
  return SRLM_OK;
}

static srlm_status check_bufs(const char *where, const void *dst, const void *src, size_t bytes) {
  if (bytes > 0 && !dst) return srlm_error(SRLM_ERR_INTERNAL, where, "NULL destination for %zu bytes", bytes);
  if (bytes > 0 && !src) return srlm_error(SRLM_ERR_INTERNAL, where, "NULL source for %zu bytes", bytes);
  return SRLM_OK;
}

static srlm_status cpu_zero(srlm_backend *be, void *ptr, size_t bytes) {
  (void)be;
  SRLM_TRY(check_bufs("cpu zero", ptr, ptr, bytes));
  if (bytes) memset(ptr, 0, bytes);
  return SRLM_OK;
}

static srlm_status cpu_copy(srlm_backend *be, void *dst, const void *src, size_t bytes) {
  (void)be;
  SRLM_TRY(check_bufs("cpu copy", dst, src, bytes));
  if (bytes) memmove(dst, src, bytes);
  return SRLM_OK;
}

static srlm_status cpu_sync(srlm_backend *be) {
  (void)be;
  return SRLM_OK;
}

/* ---- bf16 staging -------------------------------------------------------------------- */

static float *stage_new(srlm_cpu_stage *s, int64_t n) {
  SRLM_CHECK(s->n < SRLM_CPU_STAGE_MAX, "more than %d staged tensors in one op", SRLM_CPU_STAGE_MAX);
  float *f = srlm_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *f);
  s->buf[s->n++] = f;
  return f;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
/* srlm_convert's bf16 <-> fp32 sixteen at a time with AVX-512 (core.h's arithmetic: widen
 * by a shift; narrow to nearest even with a carry, NaN to a quiet NaN), the tail by
 * srlm_convert. */
__attribute__((target("avx512f"))) static void convert_avx512(void *dst, srlm_dtype ddt, const void *src,
                                                                         int64_t n) {
  int64_t i = 0;
  if (ddt == SRLM_F32) {
    const uint16_t *s = src;
    float *d = dst;
    for (; i + 16 <= n; i += 16) {
      const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(s + i)));
      _mm512_storeu_si512(d + i, _mm512_slli_epi32(w, 16));
    }
    srlm_convert(d + i, SRLM_F32, s + i, SRLM_BF16, (size_t)(n - i));
    return;
  }
  const float *s = src;
  uint16_t *d = dst;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i *)(void *)(d + i), _mm512_cvtepi32_epi16(round16(_mm512_loadu_si512(s + i))));
  srlm_convert(d + i, SRLM_BF16, s + i, SRLM_F32, (size_t)(n - i));
}
#endif

/* One block of convert: the AVX-512 code at that level, else srlm_convert. */
static void convert_block(void *dst, srlm_dtype ddt, const void *src, srlm_dtype sdt, int64_t n) {
#if defined(__x86_64__) || defined(__i386__)
  if (sdt != ddt && srlm_cpu_isa() >= SRLM_CPU_ISA_AVX512) {
    convert_avx512(dst, ddt, src, n);
    return;
  }
#endif
  srlm_convert(dst, ddt, src, sdt, (size_t)n);
}

void srlm_cpu_widen(float *dst, const uint16_t *src, int64_t n) {
  if (n > 0) convert_block(dst, SRLM_F32, src, SRLM_BF16, n);
}

void srlm_cpu_narrow(uint16_t *dst, const float *src, int64_t n) {
  if (n > 0) convert_block(dst, SRLM_BF16, src, SRLM_F32, n);
}

/* rows x n elements of src (row stride lds, elements of sdt) converted into dst (row stride
 * ldd, ddt): convert_block of each row, the level looked up once */
static void convert_rows(void *dst, srlm_dtype ddt, int64_t ldd, const void *src, srlm_dtype sdt, int64_t lds,
                         int64_t rows, int64_t n) {
  if (n <= 0) return;
  const size_t ds = srlm_dtype_size(ddt), ss = srlm_dtype_size(sdt);
#if defined(__x86_64__) || defined(__i386__)
  if (srlm_cpu_isa() >= SRLM_CPU_ISA_AVX512) {
    for (int64_t r = 0; r < rows; r++)
      convert_avx512((char *)dst + (size_t)(r * ldd) * ds, ddt, (const char *)src + (size_t)(r * lds) * ss, n);
    return;
  }
#endif
  for (int64_t r = 0; r < rows; r++)
    srlm_convert((char *)dst + (size_t)(r * ldd) * ds, ddt, (const char *)src + (size_t)(r * lds) * ss, sdt, (size_t)n);
}

void srlm_cpu_narrow_rows(uint16_t *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows, int64_t n) {
  convert_rows(dst, SRLM_BF16, ldd, src, SRLM_F32, lds, rows, n);
}

void srlm_cpu_widen_rows(float *dst, int64_t ldd, const uint16_t *src, int64_t lds, int64_t rows, int64_t n) {
  convert_rows(dst, SRLM_F32, ldd, src, SRLM_BF16, lds, rows, n);
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx512f"))) static void narrow32_stream(uint16_t *dst, int64_t ldd, const float *src,
                                                               int64_t lds, int64_t rows) {
  uint16_t line[32] __attribute__((aligned(64)));
  for (int64_t r = 0; r < rows; r++) {
    convert_avx512(line, SRLM_BF16, src + r * lds, 32);
    _mm512_stream_si512((void *)(dst + r * ldd), _mm512_load_si512(line));
  }
}
#endif

void srlm_cpu_narrow_rows32_stream(uint16_t *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows) {
#if defined(__x86_64__) || defined(__i386__)
  SRLM_CHECK(srlm_cpu_isa() >= SRLM_CPU_ISA_AVX512, "cpu: streamed bf16 rows below the avx512 level");
  narrow32_stream(dst, ldd, src, lds, rows);
#else
  srlm_cpu_narrow_rows(dst, ldd, src, lds, rows, 32);
#endif
}

void srlm_cpu_stream_fence(void) {
#if defined(__x86_64__) || defined(__i386__)
  _mm_sfence();
#endif
}

/* srlm_cpu_split's element: hi = bf16(x), lo = bf16(x - hi), each to nearest even. */
static inline void split1(float x, uint16_t *hi16, uint16_t *lo16, float *hif, float *lof) {
  const uint16_t h = srlm_f32_to_bf16(x), l = srlm_f32_to_bf16(x - srlm_bf16_to_f32(h));
  if (hi16) *hi16 = h, *lo16 = l;
  if (hif) *hif = srlm_bf16_to_f32(h), *lof = srlm_bf16_to_f32(l);
}

#if defined(__x86_64__) || defined(__i386__)
/* srlm_cpu_split sixteen at a time; returns how many it did (the rest: split1) */
__attribute__((target("avx512f"))) static int64_t split_avx512(const float *x, int64_t n, uint16_t *hi16,
                                                               uint16_t *lo16, float *hif, float *lof) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __m512i h = round16(_mm512_castps_si512(v)), hw = _mm512_slli_epi32(h, 16);
    const __m512i l = round16(_mm512_castps_si512(_mm512_sub_ps(v, _mm512_castsi512_ps(hw))));
    if (hi16) {
      _mm256_storeu_si256((__m256i *)(void *)(hi16 + i), _mm512_cvtepi32_epi16(h));
      _mm256_storeu_si256((__m256i *)(void *)(lo16 + i), _mm512_cvtepi32_epi16(l));
    }
    if (hif) {
      _mm512_storeu_si512(hif + i, hw);
      _mm512_storeu_si512(lof + i, _mm512_slli_epi32(l, 16));
    }
  }
  return i;
}
#endif

void srlm_cpu_split(const float *x, int64_t n, uint16_t *hi16, uint16_t *lo16, float *hif, float *lof) {
  int64_t i = 0;
#if defined(__x86_64__) || defined(__i386__)
  if (srlm_cpu_isa() >= SRLM_CPU_ISA_AVX512) i = split_avx512(x, n, hi16, lo16, hif, lof);
#endif
  for (; i < n; i++)
    split1(x[i], hi16 ? hi16 + i : NULL, lo16 ? lo16 + i : NULL, hif ? hif + i : NULL, lof ? lof + i : NULL);
}

/* srlm_convert over OpenMP threads in blocks (element by element: the same bits); small
 * tensors, and calls from inside a parallel region, stay on the calling thread. */
static void convert(void *dst, srlm_dtype ddt, const void *src, srlm_dtype sdt, int64_t n) {
  enum { BLOCK = 16384 };
  if (n <= 0) return;
  const int64_t nblk = (n + BLOCK - 1) / BLOCK;
  const size_t is = srlm_dtype_size(sdt), os = srlm_dtype_size(ddt);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (nblk > 4)
#endif
  for (int64_t b = 0; b < nblk; b++) {
    const int64_t i0 = b * BLOCK, len = n - i0 < BLOCK ? n - i0 : BLOCK;
    convert_block((char *)dst + (size_t)i0 * os, ddt, (const char *)src + (size_t)i0 * is, sdt, len);
  }
}

const float *srlm_cpu_stage_in(srlm_cpu_stage *s, const void *x, srlm_dtype dt, int64_t n) {
  if (!x || dt == SRLM_F32) return x;
  float *f = stage_new(s, n);
  convert(f, SRLM_F32, x, dt, n);
  return f;
}

float *srlm_cpu_stage_out(srlm_cpu_stage *s, void *x, srlm_dtype dt, int64_t n, int load) {
  if (!x || dt == SRLM_F32) return x;
  float *f = stage_new(s, n);
  if (load) convert(f, SRLM_F32, x, dt, n);
  return f;
}

void srlm_cpu_stage_store(void *x, srlm_dtype dt, const float *f, int64_t n) {
  if (!x || dt == SRLM_F32) return;
  convert(x, dt, f, SRLM_F32, n);
}

void srlm_cpu_stage_free(srlm_cpu_stage *s) {
  for (int i = 0; i < s->n; i++) free(s->buf[i]);
  s->n = 0;
}

/* ---- small ops ------------------------------------------------------------------------- */

srlm_status srlm_cpu_cast(srlm_backend *be, srlm_cast_params p) {
  (void)be;
  SRLM_TRY(srlm_cast_params_check(&p, "cpu cast"));
  if (p.n == 0) return SRLM_OK;
  if (p.dtype == p.out_dtype) {
    memmove(p.out, p.x, (size_t)p.n * srlm_dtype_size(p.dtype));
    return SRLM_OK;
  }
  convert(p.out, p.out_dtype, p.x, p.dtype, p.n);
  return SRLM_OK;
}

srlm_status srlm_cpu_kv_append(srlm_backend *be, srlm_kv_append_params p) {
  (void)be;
  const char *where = "cpu kv_append";
  SRLM_TRY(srlm_kv_append_params_check(&p, where));
  const size_t row = (size_t)(p.NKV * p.HS) * srlm_dtype_size(p.dtype);
  for (int i = 0; i < p.n; i++) {
    const int64_t n_new = (int64_t)p.cu_q[i + 1] - p.cu_q[i], s = p.slot[i], len = p.kv_len[i];
    if (s < 0 || s >= p.max_slots)
      return srlm_error(SRLM_ERR_RANGE, where, "sequence %d: slot %lld out of range [0, %lld)", i, (long long)s,
                        (long long)p.max_slots);
    if (n_new < 0 || p.cu_q[i] < 0 || p.cu_q[i + 1] > p.NQ || len < n_new || len > p.max_len)
      return srlm_error(SRLM_ERR_RANGE, where, "sequence %d: %lld new rows at length %lld outside the cache (%lld "
                        "positions) or the %lld rows", i, (long long)n_new, (long long)len, (long long)p.max_len,
                        (long long)p.NQ);
  }
  for (int i = 0; i < p.n; i++) {
    const int64_t n_new = (int64_t)p.cu_q[i + 1] - p.cu_q[i];
    const size_t dst = (size_t)(p.slot[i] * p.max_len + p.kv_len[i] - n_new) * row, src = (size_t)p.cu_q[i] * row;
    memcpy((char *)p.k_cache + dst, (const char *)p.k + src, (size_t)n_new * row);
    memcpy((char *)p.v_cache + dst, (const char *)p.v + src, (size_t)n_new * row);
  }
  return SRLM_OK;
}

/* Each chunk is summed in double in index order by one thread; the chunk sums are then
 * added to *out in chunk order, so the bits do not depend on the thread count. */
srlm_status srlm_cpu_grad_sumsq(srlm_backend *be, srlm_sumsq_params p) {
  (void)be;
  SRLM_TRY(srlm_sumsq_params_check(&p, "cpu grad_sumsq"));
  const int64_t nc = (p.n + SRLM_SUMSQ_CHUNK - 1) / SRLM_SUMSQ_CHUNK;
  double *part = srlm_xmalloc((size_t)(nc > 0 ? nc : 1) * sizeof *part);
  SRLM_OMP_ROWS
  for (int64_t c = 0; c < nc; c++) {
    const int64_t end = (c + 1) * SRLM_SUMSQ_CHUNK < p.n ? (c + 1) * SRLM_SUMSQ_CHUNK : p.n;
    double s = 0;
    for (int64_t i = c * SRLM_SUMSQ_CHUNK; i < end; i++) s += (double)p.x[i] * (double)p.x[i];
    part[c] = s;
  }
  double total = *p.out;
  for (int64_t c = 0; c < nc; c++) total += part[c];
  *p.out = total;
  free(part);
  return SRLM_OK;
}

srlm_status srlm_cpu_adamw(srlm_backend *be, srlm_adamw_params p) {
  (void)be;
  SRLM_TRY(srlm_adamw_params_check(&p, "cpu adamw"));
  enum { BLOCK = 4096 };
  const int64_t nblk = (p.n + BLOCK - 1) / BLOCK;
  const int scaled = p.grad_scale != 1.0f, decay = p.decay_mul != 1.0f;
  SRLM_OMP_ROWS
  for (int64_t b = 0; b < nblk; b++) {
    const int64_t i0 = b * BLOCK, i1 = i0 + BLOCK < p.n ? i0 + BLOCK : p.n;
    for (int64_t i = i0; i < i1; i++) {
      const float g = scaled ? p.grad[i] * p.grad_scale : p.grad[i];
      const float w = decay ? p.master[i] * p.decay_mul : p.master[i];
      const float mi = p.m[i] + p.one_minus_beta1 * (g - p.m[i]); /* lerp, as torch's exp_avg.lerp_ */
      const float vi = p.v[i] * p.beta2 + p.one_minus_beta2 * g * g;
      p.m[i] = mi;
      p.v[i] = vi;
      p.master[i] = w - p.step_size * (mi / (sqrtf(vi) / p.bc2_sqrt + p.eps));
    }
    if (p.param) srlm_convert((char *)p.param + (size_t)i0 * srlm_dtype_size(p.dtype), p.dtype, p.master + i0,
                              SRLM_F32, (size_t)(i1 - i0));
  }
  return SRLM_OK;
}

/* ---- the table and the instance ---------------------------------------------------------- */

static srlm_status cpu_mem_info(srlm_backend *be, size_t *free_bytes, size_t *total_bytes) {
  (void)be;
  const long page = sysconf(_SC_PAGESIZE), avail = sysconf(_SC_AVPHYS_PAGES), phys = sysconf(_SC_PHYS_PAGES);
  *free_bytes = page > 0 && avail > 0 ? (size_t)avail * (size_t)page : 0;
  *total_bytes = page > 0 && phys > 0 ? (size_t)phys * (size_t)page : 0;
  return SRLM_OK;
}

static const srlm_backend_ops g_cpu_ops = {
    .name = "cpu",
    .host_memory = 1,
    .create = cpu_create,
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .host_alloc = cpu_alloc,
    .host_free = cpu_free,
    .zero = cpu_zero,
    .copy_h2d = cpu_copy,
    .copy_d2h = cpu_copy,
    .copy_d2d = cpu_copy,
    .sync = cpu_sync,
    .mem_info = cpu_mem_info,
    .forget = srlm_cpu_packed_forget,
#define SRLM_CPU_OP_ENTRY_(op, type) .op = srlm_cpu_##op,
    SRLM_BACKEND_OPS(SRLM_CPU_OP_ENTRY_)
#undef SRLM_CPU_OP_ENTRY_
};

const srlm_backend_ops *srlm_backend_cpu_ops(void) { return &g_cpu_ops; }

srlm_backend *srlm_backend_cpu(void) {
  static srlm_backend instance = {.ops = &g_cpu_ops, .name = "cpu", .device = -1, .host_memory = 1, .ctx = NULL};
  return &instance;
}
