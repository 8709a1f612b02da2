/* Sixteen lanes of AVX-512 shared by the CPU ops (x86 only; every function has the
 * avx512f target, and is called only at the avx512 levels and above): vexp.c's exp and
 * bf16 rounding, and loads and stores of fp32 or bf16 tensors as fp32 lanes. */
#ifndef SRLM_BACKEND_CPU_SIMD16_H
#define SRLM_BACKEND_CPU_SIMD16_H

#include <math.h>
#include <stdint.h>

#include "srlm/core.h"

/* vexp.c's constants (its top says how exp is computed) */
#define EXP_HI 88.7228317f
#define EXP_LO -87.3365479f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f


#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* exp of each lane: vexp.c's arithmetic (the same bits as its other levels) */
__attribute__((target("avx512f"))) static inline __m512 exp16(__m512 t) {
  const __m512 tc = _mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(EXP_LO)), _mm512_set1_ps(EXP_HI));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(tc, _mm512_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), tc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
  __m512 p = _mm512_set1_ps(P0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
  y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(t, _mm512_set1_ps(EXP_LO), _CMP_LT_OQ), _mm512_setzero_ps());
  y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(t, _mm512_set1_ps(EXP_HI), _CMP_GT_OQ), _mm512_set1_ps(INFINITY));
  return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(t, t, _CMP_UNORD_Q), t);
}

/* Sixteen floats (bits u) rounded to bf16 (core.h's arithmetic: to nearest even with a
 * carry, NaN to a quiet NaN), in the low halves of the lanes. */
__attribute__((target("avx512f"))) static inline __m512i round16(__m512i u) {
  const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), quiet = _mm512_set1_epi32(0x40);
  const __m512i r = _mm512_srli_epi32(
      _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), one))), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs), inf);
  return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), quiet);
}

/* 16 elements of x from element i (fp32, or bf16 widened exactly), and back (bf16 rounded
 * to nearest even, as srlm_cpu_narrow) */
__attribute__((target("avx512f"))) static inline __m512 load16(const void *x, srlm_dtype dt, int64_t i) {
  if (dt == SRLM_F32) return _mm512_loadu_ps((const float *)x + i);
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)((const uint16_t *)x + i)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
__attribute__((target("avx512f"))) static inline void store16(void *x, srlm_dtype dt, int64_t i, __m512 v) {
  if (dt == SRLM_F32) {
    _mm512_storeu_ps((float *)x + i, v);
    return;
  }
  _mm256_storeu_si256((__m256i *)(void *)((uint16_t *)x + i), _mm512_cvtepi32_epi16(round16(_mm512_castps_si512(v))));
}
#endif

#endif
