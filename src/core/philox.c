/* Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as
 * 1, 2, 3", SC 2011). Checked against Random123's tests/kat_vectors. */
#include "srlm/core.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
  uint64_t p = (uint64_t)a * b;
  *hi = (uint32_t)(p >> 32);
  return (uint32_t)p;
}

srlm_philox_out srlm_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 += PHILOX_W0;
      k1 += PHILOX_W1;
    }
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo(PHILOX_M0, c0, &hi0);
    uint32_t lo1 = mulhilo(PHILOX_M1, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
  }
  srlm_philox_out o = {{c0, c1, c2, c3}};
  return o;
}

srlm_philox_out srlm_rng_bits(uint64_t seed, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  const uint32_t ctr[4] = {a, b, c, d};
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  return srlm_philox4x32_10(ctr, key);
}

float srlm_rng_u01f(uint32_t bits) { return (float)(bits >> 8) * (1.0f / 16777216.0f); }

double srlm_rng_u01d(uint32_t hi, uint32_t lo) {
  uint64_t x = ((uint64_t)hi << 21) ^ (lo >> 11);
  return (double)(x & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

void srlm_rng_permutation(int64_t n, uint64_t seed, uint32_t purpose, uint32_t epoch, int64_t *order) {
  for (int64_t i = 0; i < n; i++) order[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    srlm_philox_out r = srlm_rng_bits(seed, purpose, epoch, (uint32_t)i, (uint32_t)((uint64_t)i >> 32));
    uint64_t bits = ((uint64_t)r.v[0] << 32) | r.v[1];
    int64_t j = (int64_t)(((unsigned __int128)bits * (unsigned __int128)(uint64_t)(i + 1)) >> 64);
    int64_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
}
