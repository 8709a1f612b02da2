/* srlm sample math: how sampler.h's rules are evaluated, written once for the host
 * sampler (src/model/sampler.c), the CPU sample op (src/backend/cpu/sample.c) and the
 * CUDA kernel (cuda/sample.cu), so the same logits and (seed, seq_id, step) give the same
 * token, and the same log-probs, bit for bit, on every backend. The primitives are
 * SRLM_HD (srlm/core.h): plain static inline C, and __host__ __device__ under nvcc.
 *
 * The evaluation (the rules themselves are sampler.h's):
 *   weight  w_i = srlm_sample_exp((l_i - l_max) / T): an fp32 subtraction, an IEEE
 *           division and an exp built from IEEE operations only (below); the top token
 *           has w = 1 exactly. Ties, top-k and the ranking compare the logits exactly.
 *   mass    q_i = trunc(w_i 2^62), an integer, and every sum of masses is an exact
 *           128-bit integer sum (srlm_u128). Integer sums do not depend on their order,
 *           so a kernel may reduce in any tree, with atomics, over any number of blocks,
 *           and the CPU may walk a histogram: the result is the same. (The masses lose
 *           what lies below 2^-62 of the top token's weight: a token lighter than that
 *           is never drawn, as a double-precision running sum could not draw it either.)
 *   top-k   the k-th ranked token by exact comparisons (logit descending, lower id first).
 *   top-p   P = ceil(top_p Q_k) exactly, Q_k the mass of the ranked prefix that top-k
 *           left; the cut is the first ranked token whose inclusive mass reaches P (so a
 *           token is kept when the mass ranked strictly above it is < top_p Q_k).
 *   min-p   w_i >= min_p, an fp32 comparison.
 *   draw    x = srlm_rng_u53(v0, v1), the 53 bits of srlm_rng_u01d (u = x / 2^53), Q the kept
 *           mass, target = floor(x Q / 2^53): the token is the first kept id, in id
 *           order, whose inclusive mass exceeds the target (the inverse CDF, exact).
 *   logprob         (double)(l - l_max) - log(Z1 / 2^62), Z1 the mass of every id at
 *                   temperature 1 (w at T = 1), rounded to fp32;
 *   sample_logprob  (double)(l - l_max) / T - log(Q / 2^62), rounded to fp32 (0 greedy);
 *           with (double)(l - l_max) = (double)l - (double)l_max and srlm_sample_log.
 *
 * Exactness. Only IEEE-754 operations with round-to-nearest appear: +, -, *, /, fma,
 * rint and conversions. No product ever meets a sum outside an explicit fma (a compiler
 * that contracts a * b + c into an fma, as gcc does on FMA targets and nvcc does by
 * default, would otherwise change bits), and on the device products and quotients are
 * the _rn intrinsics. No result is subnormal, so flush-to-zero modes do not matter.
 */
#ifndef SRLM_SAMPLE_MATH_H
#define SRLM_SAMPLE_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "srlm/backend.h"
#include "srlm/philox.h" /* the draw's Philox on the device */

#ifdef __CUDA_ARCH__
#define SRLM_SM_FMUL(a, b) __fmul_rn((a), (b))
#define SRLM_SM_FDIV(a, b) __fdiv_rn((a), (b))
#define SRLM_SM_DMUL(a, b) __dmul_rn((a), (b))
#define SRLM_SM_DDIV(a, b) __ddiv_rn((a), (b))
#else
#define SRLM_SM_FMUL(a, b) ((a) * (b))
#define SRLM_SM_FDIV(a, b) ((a) / (b))
#define SRLM_SM_DMUL(a, b) ((a) * (b))
#define SRLM_SM_DDIV(a, b) ((a) / (b))
#endif

/* The Philox counter word `a` of sampling draws (other purposes use other values). */
#define SRLM_RNG_PURPOSE_SAMPLE 0x5a3du

/* ---- exp and log ------------------------------------------------------------------- */

/* Arguments below this give 0: the smallest result is then 2^-125 * 0.707 > FLT_MIN
 * (never subnormal). -inf gives 0, as masked ids need. */
#define SRLM_SAMPLE_EXP_LO (-86.5f)

/* exp(x) for x <= 0 (up to 88 works too): exp(x) = 2^n p(r), n = rint(x / ln 2),
 * r = x - n ln 2 (two-part ln 2, fma), p Cephes' expf polynomial (the same as the CPU
 * backend's vector exp); within 2 ulp of exp. Branch-free, so it vectorizes. */
SRLM_HD float srlm_sample_exp(float x) {
  /* xc = x, or the bound when under; a select on the bits (a conditional float
     expression would let gcc move the product below into branches, which stops it
     vectorizing) */
  const uint32_t keep = (uint32_t)!(x >= SRLM_SAMPLE_EXP_LO) - 1u; /* ~0, or 0 when under */
  const float lo = SRLM_SAMPLE_EXP_LO;
  uint32_t xb, lb;
  memcpy(&xb, &x, sizeof xb);
  memcpy(&lb, &lo, sizeof lb);
  xb = (xb & keep) | (lb & ~keep);
  float xc;
  memcpy(&xc, &xb, sizeof xc);
  const float n = rintf(SRLM_SM_FMUL(xc, 1.44269504088896341f));
  float r = fmaf(-n, 0.693359375f, xc);
  r = fmaf(-n, -2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fmaf(p, r, 1.3981999507e-3f);
  p = fmaf(p, r, 8.3334519073e-3f);
  p = fmaf(p, r, 4.1665795894e-2f);
  p = fmaf(p, r, 1.6666665459e-1f);
  p = fmaf(p, r, 5.0000001201e-1f);
  p = fmaf(p, SRLM_SM_FMUL(r, r), r + 1.0f);
  const uint32_t bits = ((uint32_t)((int32_t)n + 127) << 23) & keep; /* 2^n, or 0 */
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return SRLM_SM_FMUL(p, scale); /* exact */
}

/* The weight of logit l at temperature t > 0 in a row whose largest logit is lmax. */
SRLM_HD float srlm_sample_weight(float l, float lmax, float t) { return srlm_sample_exp(SRLM_SM_FDIV(l - lmax, t)); }

/* log(x) for a finite x > 0 that is not subnormal: x = m 2^e with m in [sqrt(1/2),
 * sqrt(2)), log m = 2 atanh(s), s = (m - 1) / (m + 1), by its series to s^23 (|s| <=
 * 0.172: truncation below 1e-18), e ln 2 with fdlibm's two-part ln 2. Within 4 ulp of
 * log (test_sample_op measures 2); the fp32 log-probs need 2^-29. */
SRLM_HD double srlm_sample_log(double x) {
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  int e = (int)(bits >> 52) - 1023;
  bits = (bits & UINT64_C(0x000fffffffffffff)) | UINT64_C(0x3ff0000000000000);
  double m;
  memcpy(&m, &bits, sizeof m);
  if (m > 1.4142135623730951) {
    m = SRLM_SM_DMUL(m, 0.5); /* exact */
    e++;
  }
  const double f = m - 1.0; /* exact */
  const double s = SRLM_SM_DDIV(f, 2.0 + f), z = SRLM_SM_DMUL(s, s), s2 = s + s;
  double t = 1.0 / 23;
  t = fma(t, z, 1.0 / 21);
  t = fma(t, z, 1.0 / 19);
  t = fma(t, z, 1.0 / 17);
  t = fma(t, z, 1.0 / 15);
  t = fma(t, z, 1.0 / 13);
  t = fma(t, z, 1.0 / 11);
  t = fma(t, z, 1.0 / 9);
  t = fma(t, z, 1.0 / 7);
  t = fma(t, z, 1.0 / 5);
  t = fma(t, z, 1.0 / 3);
  const double log_m = fma(SRLM_SM_DMUL(s2, z), t, s2);
  const double de = (double)e;
  return fma(de, 6.93147180369123816490e-01, fma(de, 1.90821492927058770002e-10, log_m));
}

/* ---- masses: 128-bit fixed point ----------------------------------------------------- */

typedef struct srlm_u128 {
  uint64_t lo, hi;
} srlm_u128;

#define SRLM_SAMPLE_MASS_BITS 62

/* q = trunc(w 2^62) of a weight in [0, 1]. */
SRLM_HD uint64_t srlm_sample_mass(float w) { return (uint64_t)(int64_t)SRLM_SM_FMUL(w, 4611686018427387904.0f); }

SRLM_HD srlm_u128 srlm_u128_add(srlm_u128 a, uint64_t x) {
  a.lo += x;
  a.hi += a.lo < x;
  return a;
}

SRLM_HD srlm_u128 srlm_u128_add128(srlm_u128 a, srlm_u128 b) {
  a.lo += b.lo;
  a.hi += b.hi + (a.lo < b.lo);
  return a;
}

SRLM_HD int srlm_u128_lt(srlm_u128 a, srlm_u128 b) { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo); }

/* The nearest double (one rounding: hi < 2^53 converts exactly). */
SRLM_HD double srlm_u128_to_double(srlm_u128 a) { return fma((double)a.hi, 18446744073709551616.0, (double)a.lo); }

/* floor(a x / 2^s), or its ceiling when round_up, for 0 <= s < 192 and a result below
 * 2^128: a 128 x 64-bit schoolbook product in 32-bit limbs. */
SRLM_HD srlm_u128 srlm_u128_mul_shr(srlm_u128 a, uint64_t x, int s, int round_up) {
  const uint32_t A[4] = {(uint32_t)a.lo, (uint32_t)(a.lo >> 32), (uint32_t)a.hi, (uint32_t)(a.hi >> 32)};
  const uint32_t X[2] = {(uint32_t)x, (uint32_t)(x >> 32)};
  uint32_t P[10] = {0}; /* the 192-bit product, zero-padded for the shift */
  for (int j = 0; j < 2; j++) {
    uint64_t carry = 0;
    for (int i = 0; i < 4; i++) {
      const uint64_t t = (uint64_t)A[i] * X[j] + P[i + j] + carry; /* < 2^64 */
      P[i + j] = (uint32_t)t;
      carry = t >> 32;
    }
    P[j + 4] = (uint32_t)carry;
  }
  const int w = s >> 5, b = s & 31;
  int sticky = 0;
  for (int i = 0; i < w; i++) sticky |= P[i] != 0;
  if (b) sticky |= (P[w] & ((1u << b) - 1u)) != 0;
  uint32_t R[4];
  for (int k = 0; k < 4; k++) R[k] = b ? (P[w + k] >> b) | (P[w + k + 1] << (32 - b)) : P[w + k];
  srlm_u128 r = {((uint64_t)R[1] << 32) | R[0], ((uint64_t)R[3] << 32) | R[2]};
  return round_up && sticky ? srlm_u128_add(r, 1) : r;
}

/* log(q / 2^62) of a mass q >= 2^62 (a set that holds the top token). */
SRLM_HD double srlm_sample_log_mass(srlm_u128 q) {
  return srlm_sample_log(SRLM_SM_DMUL(srlm_u128_to_double(q), 2.168404344971008868e-19 /* 2^-62 */));
}

/* ---- the cuts and the draw ------------------------------------------------------------ */

/* a ranks before b: larger logit, then lower id. */
SRLM_HD int srlm_sample_ranks_before(float la, int32_t ia, float lb, int32_t ib) {
  return la > lb || (la == lb && ia < ib);
}

/* P = ceil(p q) for p in [0, 1], exactly (p = mant 2^-s). */
SRLM_HD srlm_u128 srlm_sample_top_p_target(float p, srlm_u128 q) {
  uint32_t bits;
  memcpy(&bits, &p, sizeof bits);
  const uint32_t e = bits >> 23 & 0xffu, frac = bits & 0x7fffffu;
  const uint64_t mant = e ? (frac | 0x800000u) : frac;
  return srlm_u128_mul_shr(q, mant, e ? 150 - (int)e : 149, 1);
}

/* floor(x q / 2^53): the draw's target in a kept mass q (always < q), x the draw's
 * srlm_rng_u53 bits. */
SRLM_HD srlm_u128 srlm_sample_draw_target(srlm_u128 q, uint64_t x53) { return srlm_u128_mul_shr(q, x53, 53, 0); }

/* ---- the CPU row (host only) ------------------------------------------------------------ */

#ifndef __CUDACC__
#ifdef __cplusplus
extern "C" {
#endif

/* Scratch for rows of V logits (a sampler or one thread of the op owns one). */
typedef struct srlm_sample_ws srlm_sample_ws;
srlm_sample_ws *srlm_sample_ws_create(int64_t V);
void srlm_sample_ws_free(srlm_sample_ws *ws);

/* Row `row` of the sample op p (checked by srlm_sample_params_check, p->V the
 * workspace's V): writes token[row], logprob[row] and sample_logprob[row] (when not
 * NULL). probs, when not NULL, gets the distribution the token is drawn from (V): kept
 * mass / Q, 0 elsewhere; one-hot at the argmax for greedy. A NaN or +inf logit, or a
 * row without a finite one, is SRLM_ERR_RANGE "where: ...". The CPU sample op and the
 * host sampler both run this: the rules exist once on the host. */
srlm_status srlm_sample_row(srlm_sample_ws *ws, const srlm_sample_params *p, int64_t row, double *probs,
                            const char *where);

#ifdef __cplusplus
}
#endif
#endif /* __CUDACC__ */

#endif
