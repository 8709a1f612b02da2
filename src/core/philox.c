/* Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as
 * 1, 2, 3", SC 2011). Checked against Random123's tests/kat_vectors. */
#include "srlm/core.h"
#include "srlm/philox.h"

/* The rounds live in srlm/philox.h, shared with CUDA kernels. */
srlm_philox_out srlm_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2]) { return srlm_philox_rounds(ctr, key); }

srlm_philox_out srlm_rng_bits(uint64_t seed, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return srlm_philox_keyed(seed, a, b, c, d);
}

float srlm_rng_u01f(uint32_t bits) { return (float)(bits >> 8) * (1.0f / 16777216.0f); }

double srlm_rng_u01d(uint32_t hi, uint32_t lo) { return (double)srlm_rng_u53(hi, lo) * (1.0 / 9007199254740992.0); }

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
