/* srlm sampler: the next token from one row of logits. See include/srlm/sampler.h for the
 * rules (transformers' warper order), the tie rules and the RNG keying. The row itself
 * is the CPU sample op's (srlm_sample_row, src/backend/cpu/sample.c): one implementation
 * of the rules on the host, with srlm/sample_math.h's arithmetic, which the CUDA kernel
 * shares.
 */
#include "srlm/sampler.h"

#include <math.h>
#include <stdlib.h>

struct srlm_sampler {
  srlm_sampler_params p;
  int64_t V;
  srlm_sample_ws *ws;
};

srlm_sampler_params srlm_sampler_params_default(void) {
  srlm_sampler_params p = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 0};
  return p;
}

srlm_status srlm_sampler_params_check(const srlm_sampler_params *p) {
  if (!(isfinite(p->temperature) && p->temperature >= 0.0f))
    return srlm_error(SRLM_ERR_CONFIG, "sampler", "temperature %g: expected a finite value >= 0 (0 is greedy)",
                      (double)p->temperature);
  if (p->top_k < 0) return srlm_error(SRLM_ERR_CONFIG, "sampler", "top_k %d: expected >= 0 (0 is off)", p->top_k);
  if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
    return srlm_error(SRLM_ERR_CONFIG, "sampler", "top_p %g: expected a value in [0, 1] (1 is off)", (double)p->top_p);
  if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
    return srlm_error(SRLM_ERR_CONFIG, "sampler", "min_p %g: expected a value in [0, 1] (0 is off)", (double)p->min_p);
  return SRLM_OK;
}

srlm_status srlm_sampler_create(const srlm_sampler_params *p, int64_t V, srlm_sampler **out) {
  *out = NULL;
  SRLM_TRY(srlm_sampler_params_check(p));
  if (V <= 0 || V > INT32_MAX) return srlm_error(SRLM_ERR_RANGE, "sampler", "vocabulary size %lld", (long long)V);
  srlm_sampler *s = srlm_xcalloc(1, sizeof *s);
  s->p = *p;
  s->V = V;
  s->ws = srlm_sample_ws_create(V);
  *out = s;
  return SRLM_OK;
}

void srlm_sampler_free(srlm_sampler *s) {
  if (!s) return;
  srlm_sample_ws_free(s->ws);
  free(s);
}

const srlm_sampler_params *srlm_sampler_get_params(const srlm_sampler *s) { return &s->p; }

/* The op's parameters for one row, writing into out. */
static srlm_sample_params one_row(const srlm_sampler *s, const float *logits, const uint64_t *seq_id,
                                  const uint32_t *step, srlm_sample *out) {
  srlm_sample_params p = {.token = &out->token, .logprob = &out->logprob, .sample_logprob = &out->sample_logprob,
                          .logits = logits, .seq_id = seq_id, .step = step, .n = 1, .V = s->V,
                          .temperature = s->p.temperature, .top_p = s->p.top_p, .min_p = s->p.min_p,
                          .top_k = s->p.top_k, .seed = s->p.seed};
  return p;
}

srlm_status srlm_sampler_sample(srlm_sampler *s, const float *logits, uint64_t seq_id, uint32_t step,
                                srlm_sample *out) {
  const srlm_sample_params p = one_row(s, logits, &seq_id, &step, out);
  return srlm_sample_row(s->ws, &p, 0, NULL, "sampler");
}

srlm_status srlm_sampler_probs(srlm_sampler *s, const float *logits, double *probs) {
  const uint64_t seq_id = 0;
  const uint32_t step = 0;
  srlm_sample unused;
  const srlm_sample_params p = one_row(s, logits, &seq_id, &step, &unused);
  return srlm_sample_row(s->ws, &p, 0, probs, "sampler");
}
