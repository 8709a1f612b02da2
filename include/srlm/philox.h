/* srlm philox: Philox4x32-10 (core.h) as inline code for the host and CUDA devices, so a
 * kernel draws exactly the bits srlm_rng_bits draws on the CPU (the sample op keys its
 * draw this way). core's srlm_philox4x32_10, srlm_rng_bits and srlm_rng_u01d are these
 * functions.
 *
 * SRLM_HD marks code shared by host and device: static inline in C, and
 * __host__ __device__ under nvcc. */
#ifndef SRLM_PHILOX_H
#define SRLM_PHILOX_H

#include <stdint.h>

#include "srlm/core.h"


/* Ten rounds on counter ctr with key key (Salmon et al. 2011). */
SRLM_HD srlm_philox_out srlm_philox_rounds(const uint32_t ctr[4], const uint32_t key[2]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
  }
  srlm_philox_out o = {{c0, c1, c2, c3}};
  return o;
}

/* srlm_rng_bits: key = seed, counter = (a, b, c, d). */
SRLM_HD srlm_philox_out srlm_philox_keyed(uint64_t seed, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  const uint32_t ctr[4] = {a, b, c, d};
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  return srlm_philox_rounds(ctr, key);
}

/* The 53 random bits of srlm_rng_u01d(hi, lo) = x / 2^53. */
SRLM_HD uint64_t srlm_rng_u53(uint32_t hi, uint32_t lo) {
  return (((uint64_t)hi << 21) ^ (lo >> 11)) & ((UINT64_C(1) << 53) - 1);
}

#endif
