/* Vectorized exp for the CPU ops (softmax rows, log-prob gathers, SwiGLU):
 * out[i] = exp(a x[i] - b), and the sum of the outputs; and the rows' max (srlm_cpu_max).
 *
 * exp(t) = 2^n p(r), n = round(t / ln 2), r = t - n ln 2 (two-part ln 2, fma), p the
 * degree-7 Taylor-like minimax polynomial of Cephes' expf (max error about 1 ulp on
 * [-ln2/2, ln2/2]; the log-prob, softmax and SwiGLU tests of test_backend_cpu hold it to
 * their float64 references). t below -87.34 gives 0
 * (exp(-inf) = 0 exactly, as masked logits need), above 88.72 +inf, NaN stays NaN.
 *
 * One arithmetic at every ISA level, so the outputs and the sum are the same bits on any
 * CPU (AVX-512, AVX2+FMA, portable C): each element is the same sequence of IEEE operations
 * (t = fma(a, x, -b), the clamp, the rounding, the two-part reduction and the polynomial by
 * fma), and the sum is the one order AVX-512 gives: 16 lanes, lane l adding the elements
 * i = l mod 16 in order (AVX2 keeps lanes 0-7 and 8-15 in two registers, the portable code
 * in 16 floats), then the lanes 0..15 in turn. The last n % 16 elements go through the same
 * code on a masked or padded copy, so every element's bits do not depend on its position.
 * Before 2026-12-04 AVX2 summed 8 lanes and the portable level used libm's expf: the same
 * seed trained different models on AVX-512 and AVX2 machines (bench/RESULTS.md). */
#include <math.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SRLM_X86 1
#endif

#include "cpu_ops.h"
#include "simd16.h"

#ifdef SRLM_X86
__attribute__((target("avx512f"))) static float exp_affine_avx512(const float *x, float a, float b, float *out,
                                                                 int64_t n) {
  const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(-b);
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 y = exp16(_mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), vb));
    if (out) _mm512_storeu_ps(out + i, y);
    acc = _mm512_add_ps(acc, y);
  }
  if (i < n) {
    const __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
    const __m512 y = exp16(_mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(k, x + i), vb));
    if (out) _mm512_mask_storeu_ps(out + i, k, y);
    acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(k, y));
  }
  float lanes[16];
  _mm512_storeu_ps(lanes, acc);
  float s = 0.0f;
  for (int l = 0; l < 16; l++) s += lanes[l];
  return s;
}

__attribute__((target("avx2,fma"))) static inline __m256 exp8(__m256 t) {
  const __m256 tc = _mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(tc, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), tc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
  __m256 p = _mm256_set1_ps(P0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(t, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ));
  y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(t, _mm256_set1_ps(EXP_HI), _CMP_GT_OQ));
  return _mm256_blendv_ps(y, t, _mm256_cmp_ps(t, t, _CMP_UNORD_Q));
}

__attribute__((target("avx2,fma"))) static float exp_affine_avx2(const float *x, float a, float b, float *out,
                                                                int64_t n) {
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(-b);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}; /* lanes 0-7 and 8-15 of AVX-512's 16 */
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 y = exp8(_mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), vb));
    if (out) _mm256_storeu_ps(out + i, y);
    acc[(i >> 3) & 1] = _mm256_add_ps(acc[(i >> 3) & 1], y);
  }
  if (i < n) {
    float tmp[8] = {0};
    memcpy(tmp, x + i, (size_t)(n - i) * sizeof *tmp);
    float y[8];
    _mm256_storeu_ps(y, exp8(_mm256_fmadd_ps(va, _mm256_loadu_ps(tmp), vb)));
    if (out) memcpy(out + i, y, (size_t)(n - i) * sizeof *y);
    for (int64_t l = n - i; l < 8; l++) y[l] = 0.0f;
    acc[(i >> 3) & 1] = _mm256_add_ps(acc[(i >> 3) & 1], _mm256_loadu_ps(y));
  }
  float lanes[16];
  _mm256_storeu_ps(lanes, acc[0]);
  _mm256_storeu_ps(lanes + 8, acc[1]);
  float s = 0.0f;
  for (int l = 0; l < 16; l++) s += lanes[l];
  return s;
}
#endif

/* exp16's operations on one element, in portable C (fmaf is the fused multiply-add; the
 * clamp follows the x86 min/max rule: a NaN input gives the bound, and is put back at the end). */
static float exp1(float t) {
  float tc = t > EXP_LO ? t : EXP_LO;
  tc = tc < EXP_HI ? tc : EXP_HI;
  const float n = nearbyintf(tc * LOG2E);
  float r = fmaf(-n, LN2_HI, tc);
  r = fmaf(-n, LN2_LO, r);
  float p = P0;
  p = fmaf(p, r, P1);
  p = fmaf(p, r, P2);
  p = fmaf(p, r, P3);
  p = fmaf(p, r, P4);
  p = fmaf(p, r, P5);
  p = fmaf(p, r * r, r + 1.0f);
  const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
  float e;
  memcpy(&e, &bits, sizeof e);
  float y = p * e;
  if (t < EXP_LO) y = 0.0f;
  if (t > EXP_HI) y = INFINITY;
  return isnan(t) ? t : y;
}

static float exp_affine_scalar(const float *x, float a, float b, float *out, int64_t n) {
  float acc[16] = {0};
  for (int64_t i = 0; i < n; i++) {
    const float y = exp1(fmaf(a, x[i], -b));
    if (out) out[i] = y;
    acc[i & 15] += y;
  }
  float s = 0.0f;
  for (int l = 0; l < 16; l++) s += acc[l];
  return s;
}

float srlm_cpu_exp_affine(const float *x, float a, float b, float *out, int64_t n) {
#ifdef SRLM_X86
  switch (srlm_cpu_isa()) {
    case SRLM_CPU_ISA_AMX:
    case SRLM_CPU_ISA_AVX512_BF16:
    case SRLM_CPU_ISA_AVX512: return exp_affine_avx512(x, a, b, out, n);
    case SRLM_CPU_ISA_AVX2: return exp_affine_avx2(x, a, b, out, n);
    default: break;
  }
#endif
  return exp_affine_scalar(x, a, b, out, n);
}

#ifdef SRLM_X86
/* Each lane keeps x > m ? x : m (vmaxps returns its second operand where the first is NaN
 * or they are equal: the scalar rule per lane); the lanes' maxima then combine in any order
 * to the same value, except the sign of a zero maximum (looked up by srlm_cpu_max). */
__attribute__((target("avx512f"))) static int64_t max_avx512(const float *x, int64_t n, float *mx) {
  __m512 vm = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(_mm512_loadu_ps(x + i), vm);
  *mx = _mm512_reduce_max_ps(vm);
  return i;
}
#endif

float srlm_cpu_max(const float *x, int64_t n) {
  float m = -INFINITY;
  int64_t i = 0;
#ifdef SRLM_X86
  if (srlm_cpu_isa() >= SRLM_CPU_ISA_AVX512) i = max_avx512(x, n, &m);
#endif
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  if (m == 0.0f)
    for (i = 0; i < n; i++)
      if (x[i] == 0.0f) return x[i];
  return m;
}
