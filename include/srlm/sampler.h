/* srlm sampler: picks the next token from one row of logits (V floats): greedy,
 * temperature, top-k, top-p (nucleus) and min-p, with randomness that is a function of
 * (seed, sequence id, step) (DESIGN.md invariant 3).
 *
 * Order of the transformations: the order transformers' generate() appends its sampling
 * warpers (generation/utils.py _get_logits_processor: TemperatureLogitsWarper,
 * TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper):
 *   1. temperature: z = logits / T (T = 0 means greedy: the argmax, lowest id on ties;
 *      the other settings are then ignored);
 *   2. top-k (k > 0): keep the k largest z; ties at the boundary go to the LOWER id, so
 *      exactly k are kept (transformers keeps every token tied with the k-th value);
 *   3. top-p (p < 1): rank the kept tokens by z (descending, lower id first on ties) and
 *      keep a token when the renormalized probability mass ranked strictly above it is
 *      < p: the smallest prefix whose mass reaches p (at least one token; p = 0 keeps
 *      only the top one);
 *   4. min-p (m > 0): keep a token when its probability is >= m times the largest one,
 *      i.e. exp(z - z_max) >= m (the ratio does not change with the renormalizations
 *      above, so applying it last is the same as transformers' order);
 *   then sample from the kept tokens in proportion to exp(z - z_max).
 * Logits of -inf are never kept (a masked id); NaN or +inf is an error naming the id,
 * and so is a row with no finite logit.
 *
 * Randomness: one uniform draw per (seed, sequence id, step), from
 *   srlm_rng_bits(seed, SRLM_RNG_PURPOSE_SAMPLE, seq_id low 32 bits, step, seq_id high 32 bits)
 * (for seq_id < 2^32 this is srlm_rng_bits(seed, purpose, seq_id, step, 0)), so a
 * sequence's token never depends on which other sequences share its batch, nor on the
 * order of the calls. The draw u in [0,1) picks the token by inverse CDF over the kept
 * tokens in id order.
 *
 * Log-probs: every sample returns
 *   logprob        = log_softmax(logits)[token]: the model's FULL distribution at
 *                    temperature 1 with no truncation. This is what a learner
 *                    recomputes from the same weights as pi_old (ALGORITHMS.md
 *                    section 2), so generator/learner mismatch is measurable;
 *   sample_logprob = log of the token's probability under the distribution it was
 *                    actually drawn from (after temperature and truncation; 0 for greedy).
 *
 * Evaluation (srlm/sample_math.h, shared with the backends' sample op, so the same
 * logits and key give the same token and log-probs on the CPU and on CUDA): weights
 * exp((l - l_max) / T) by an exp built from IEEE operations only; every sum of weights
 * is an exact sum of 128-bit fixed-point masses trunc(w 2^62), so it has no order; the
 * top-p cut compares the prefix mass with ceil(top_p * mass) and the draw's running mass
 * with floor(u * mass), both exact; log-probs in double with that header's log.
 *
 * Speed: a few passes over V (max, weights and masses, the draw); top-k and top-p find
 * where they cut the ranking with a histogram of the logits (1024 buckets over the row's
 * range, at most 64 logit units) and sort only the bucket the cut falls in, never the
 * whole vocabulary (unless most logits are exactly tied). The histogram only decides
 * what gets sorted: the masses are exact, so it never changes a cut.
 *
 * A sampler holds scratch for its V: one sampler per thread.
 */
#ifndef SRLM_SAMPLER_H
#define SRLM_SAMPLER_H

#include <stdint.h>

#include "srlm/core.h"
#include "srlm/sample_math.h" /* SRLM_RNG_PURPOSE_SAMPLE */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srlm_sampler_params {
  float temperature; /* 0: greedy; > 0: sample (1: the model's distribution) */
  int top_k;         /* 0: off; > 0: keep the k most likely */
  float top_p;       /* 1: off; in [0, 1] */
  float min_p;       /* 0: off; in [0, 1] */
  uint64_t seed;
} srlm_sampler_params;

/* temperature 1, top_k 0, top_p 1, min_p 0, seed 0: plain sampling from the model. */
srlm_sampler_params srlm_sampler_params_default(void);
/* SRLM_ERR_CONFIG naming the setting when a value is out of range (temperature < 0 or
 * not finite, top_k < 0, top_p or min_p outside [0, 1] or NaN). */
srlm_status srlm_sampler_params_check(const srlm_sampler_params *p);

typedef struct srlm_sampler srlm_sampler;

/* A sampler for rows of V logits with the given settings (checked). */
srlm_status srlm_sampler_create(const srlm_sampler_params *p, int64_t V, srlm_sampler **out);
void srlm_sampler_free(srlm_sampler *s);
const srlm_sampler_params *srlm_sampler_get_params(const srlm_sampler *s);

typedef struct srlm_sample {
  int32_t token;
  float logprob;        /* log_softmax(logits)[token]: full distribution, temperature 1 */
  float sample_logprob; /* log prob under the sampling distribution (0 for greedy) */
} srlm_sample;

/* Samples one token from logits (V) for sequence seq_id at step `step` (the index of
 * the token being generated). */
srlm_status srlm_sampler_sample(srlm_sampler *s, const float *logits, uint64_t seq_id, uint32_t step,
                                srlm_sample *out);

/* The distribution srlm_sampler_sample draws from: probs (V) gets each token's
 * probability after temperature and truncation (0 for dropped tokens; one-hot at the
 * argmax for greedy). For tests and for judges that read a distribution. */
srlm_status srlm_sampler_probs(srlm_sampler *s, const float *logits, double *probs);

#ifdef __cplusplus
}
#endif
#endif
