/* The sample op's reference for the tests (test_sample_op, test_backend_ops): sampler.h's
 * rules by a full sort and double sums of the documented weights, independent of the
 * histograms, integer masses and radix walks of the ops. Host C; one definition per test. */
#ifndef SRLM_TEST_SAMPLE_REF_H
#define SRLM_TEST_SAMPLE_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "srlm/core.h"
#include "srlm/sample_math.h"

typedef struct sample_settings {
  float t, top_p, min_p;
  int top_k;
} sample_settings;

static const float *g_sample_rank_l;
static inline int sample_cmp_rank(const void *pa, const void *pb) {
  const int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
  if (g_sample_rank_l[a] != g_sample_rank_l[b]) return g_sample_rank_l[a] > g_sample_rank_l[b] ? -1 : 1;
  return (a > b) - (a < b);
}

typedef struct sample_ref_out {
  int32_t token;
  double logprob, sample_logprob;
} sample_ref_out;

/* The token by the rules with the documented weights w = srlm_sample_weight(l, max, T),
 * every sum in double in the order the rule reads: rank order for top-p, id order for
 * the draw (u W, u = srlm_rng_u01d of the key's Philox words). */
static inline sample_ref_out sample_reference(const float *l, int64_t V, const sample_settings *s, uint64_t seed,
                                              uint64_t seq, uint32_t step) {
  int32_t *idx = malloc((size_t)V * sizeof *idx);
  double *w = calloc((size_t)V, sizeof *w);
  char *kept = calloc((size_t)V, 1);
  int64_t n = 0;
  for (int64_t i = 0; i < V; i++)
    if (l[i] != -INFINITY) idx[n++] = (int32_t)i;
  g_sample_rank_l = l;
  qsort(idx, (size_t)n, sizeof *idx, sample_cmp_rank);
  const float m = l[idx[0]];
  double z = 0;
  for (int64_t i = 0; i < V; i++) z += exp((double)l[i] - m);
  sample_ref_out o = {idx[0], 0, 0};
  if (s->t > 0) {
    for (int64_t i = 0; i < V; i++) w[i] = l[i] == -INFINITY ? 0 : srlm_sample_weight(l[i], m, s->t);
    if (s->top_k > 0 && s->top_k < n) n = s->top_k;
    if (s->top_p < 1.0f) {
      double W = 0, above = 0;
      for (int64_t j = 0; j < n; j++) W += w[idx[j]];
      int64_t j = 1;
      for (above = w[idx[0]]; j < n && above < (double)s->top_p * W; j++) above += w[idx[j]];
      n = j;
    }
    double W = 0;
    for (int64_t j = 0; j < n; j++) kept[idx[j]] = (float)w[idx[j]] >= s->min_p;
    for (int64_t i = 0; i < V; i++)
      if (kept[i]) W += w[i];
    const srlm_philox_out r = srlm_rng_bits(seed, SRLM_RNG_PURPOSE_SAMPLE, (uint32_t)seq, step, (uint32_t)(seq >> 32));
    const double target = srlm_rng_u01d(r.v[0], r.v[1]) * W;
    double cum = 0;
    for (int64_t i = 0; i < V; i++) {
      if (!kept[i] || w[i] == 0) continue;
      cum += w[i];
      o.token = (int32_t)i;
      if (target < cum) break;
    }
    o.sample_logprob = ((double)l[o.token] - m) / s->t - log(W);
  }
  o.logprob = (double)l[o.token] - m - log(z);
  free(idx);
  free(w);
  free(kept);
  return o;
}

#endif
