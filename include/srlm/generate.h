/* srlm generate: continuations of many prompts with the KV cache of model.h: prefill and
 * batched decode over up to max_batch cache slots (continuous batching: a slot freed by
 * a finished sequence takes the next prompt at the next step), sampling with sampler.h.
 *
 * What a sequence gets does not depend on the others: its draws are keyed by (seed, its
 * seq_id, step) and the model's slots are independent (model.h), so max_batch, the
 * order of the requests and what shares a step change nothing (DESIGN.md invariant 3).
 *
 * Stopping, checked after each new token in this order:
 *   1. EOS: the token is one of eos_ids. It is KEPT as the last id (and log-prob), as in
 *      transformers; it is not part of the text.
 *   2. stop string: the text generated so far contains one of the stop strings. All ids
 *      through the token that completed it are kept (transformers' StopStringCriteria
 *      keeps them too), and the text is cut right AFTER the first occurrence: it ends
 *      with the stop string; bytes the completing token added past it are dropped.
 *      When several stop strings complete on the same token, the one that ends first
 *      wins (then the lower index). Only the new text is searched, never the prompt.
 *   3. length: max_new_tokens new tokens.
 *
 * Text: the new tokens decoded with the tokenizer's streaming decoder (exact bytes; a
 * character cut by max_new_tokens is flushed as its raw bytes, which may be invalid
 * UTF-8). Special tokens other than the stopping EOS are written as their text.
 *
 * Log-probs: per new token, log_softmax(logits)[token] under the model's full
 * distribution at temperature 1 (what a learner recomputes as pi_old) and the log-prob
 * under the distribution actually sampled from (see sampler.h).
 *
 * Score position (score_ids, a judge's score distribution): the logits of a few ids at
 * the position right after a result's tokens, a final EOS left out (so: the distribution
 * that EOS was drawn from), and the token the sampler draws there. A sequence that stops
 * by a stop string or by its length takes one more model step for it (its last token fed
 * in; nothing is added to its ids or text), in the batch like any other; one stopped by
 * EOS needs none. The logits are the bits srlm_model_step gives at that position, which
 * on the CPU backend are the full forward's (srlm_model_logits).
 */
#ifndef SRLM_GENERATE_H
#define SRLM_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"
#include "srlm/model.h"
#include "srlm/sampler.h"
#include "srlm/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum srlm_stop_reason {
  SRLM_STOP_LENGTH = 0, /* max_new_tokens reached */
  SRLM_STOP_EOS,        /* an EOS id was generated */
  SRLM_STOP_STRING      /* the text contains a stop string */
} srlm_stop_reason;

/* "length", "eos", "stop" */
const char *srlm_stop_reason_name(srlm_stop_reason r);

/* ARGS reward-guided decoding (Khanov et al. 2024, ALGORITHMS.md section 12). Each step,
 * for each sequence: the top_k tokens by logit (ties: lower id first) are the candidates
 * v; score(v) = logit(v) + weight * reward(prefix + v); the token is the argmax of the
 * score (temperature 0; ties: the higher-ranked candidate) or drawn from
 * softmax(score / T) with one uniform draw keyed by (seed, SRLM_RNG_PURPOSE_ARGS, seq_id,
 * step) like the sampler's, so a sequence's tokens do not depend on its batch. The
 * sampler's top_k / top_p / min_p do not apply (the candidates are ARGS's own).
 * Rewards, one of:
 *   ref != NULL (implicit): reward(prefix + v) = sum over the response's tokens of
 *     log pi(y_t) - log pi_ref(y_t), the policy's and ref's full log-softmax at temperature
 *     1 (ref has its own KV cache, stepped with the same tokens: one more forward of the
 *     reference per token);
 *   reward != NULL (a callback, e.g. the model's own judge of a built-in task, args.h):
 *     rewards of the k candidates of request req after its n generated ids.
 * Log-probs of the chosen token: logprob is the policy's as always; sample_logprob is
 * under the ARGS distribution over the candidates (0 greedy). */
typedef srlm_status (*srlm_args_reward_fn)(void *user, int req, const int32_t *ids, int64_t n, const int32_t *cand,
                                           int k, double *reward);

typedef struct srlm_args_params {
  double weight;              /* w */
  int top_k;                  /* k >= 1 candidates */
  srlm_model *ref;            /* implicit reward: the reference model (same vocabulary) */
  srlm_args_reward_fn reward; /* or a callback; exactly one of ref and reward */
  void *user;
} srlm_args_params;

/* Philox counter word of ARGS draws. */
#define SRLM_RNG_PURPOSE_ARGS 0xa265u

/* The k candidates of a row of V logits: ids by logit, descending, ties to the lower id
 * (k <= V). */
void srlm_args_candidates(const float *logits, int64_t V, int k, int32_t *cand);
/* The choice among k candidates with logits logit (k) and rewards reward (k): *pick is an
 * index into them, *logprob its log-probability under softmax(score / T) (0 for greedy,
 * T = 0). A NaN score is an error naming the candidate. */
srlm_status srlm_args_choose(int k, const float *logit, const double *reward, double weight, float temperature,
                             uint64_t seed, uint64_t seq_id, uint32_t step, int *pick, double *logprob);

typedef struct srlm_gen_result srlm_gen_result; /* below */

typedef struct srlm_generate_params {
  srlm_sampler_params sampler;
  const srlm_args_params *args; /* NULL: plain sampling; else ARGS decoding (above) */
  int max_new_tokens;          /* >= 0 */
  int max_batch;               /* sequences decoded together (KV-cache slots), >= 1 */
  int64_t max_step_tokens;     /* prefill budget of one model step: a waiting prompt joins
                                  a step while the step's tokens stay within it (one
                                  prompt always may); 0 means 4096 */
  const int32_t *eos_ids;      /* (n_eos) */
  int n_eos;
  const char *const *stop;     /* (n_stop) NUL-terminated, non-empty; needs tok */
  int n_stop;
  const srlm_tokenizer *tok;   /* for text and stop strings; NULL: no text */
  const int32_t *score_ids;    /* (n_score, 0..SRLM_GEN_MAX_SCORE_IDS) ids in [0, V) read at each */
  int n_score;                 /* result's score position (above); not with args */
  /* Called once per request when its result is final, in the step it finishes (before the
     next step runs), so the caller can use results while the others decode: a generator
     sends each rollout shard as soon as its last sample ends. res is request req's entry of
     the result array, complete. The callback may keep it there, srlm_gen_result_free it, or
     move its arrays out and leave NULL pointers behind: after an error srlm_generate frees
     every entry (the error the callback returns ends srlm_generate too). NULL: none. */
  srlm_status (*on_done)(void *user, int req, srlm_gen_result *res);
  void *done_user;
} srlm_generate_params;
#define SRLM_GEN_MAX_SCORE_IDS 64

/* Defaults: sampler defaults, max_new_tokens 64, max_batch 8, no EOS, no stop strings. */
srlm_generate_params srlm_generate_params_default(void);

typedef struct srlm_gen_request {
  const int32_t *prompt; /* (n_prompt) ids, n_prompt >= 1 */
  int64_t n_prompt;
  uint64_t seq_id;       /* the sampler's sequence id: its draws depend on nothing else */
} srlm_gen_request;

struct srlm_gen_result {
  int32_t *ids;           /* (n) new tokens, a final EOS included */
  float *logprobs;        /* (n) log_softmax(logits)[id]: full distribution, temperature 1 */
  float *sample_logprobs; /* (n) under the sampling distribution (0 for greedy) */
  int64_t n;
  char *text;             /* (text_len) NUL-terminated; NULL without a tokenizer */
  size_t text_len;
  srlm_stop_reason stop;
  int stop_index;         /* index into eos_ids (EOS) or stop (STRING); -1 for LENGTH */
  float *score_logits;    /* (n_score) the score position's logits of score_ids; NULL without */
  int32_t score_token;    /* the token the sampler draws there (greedy: the lowest argmax) */
};

typedef struct srlm_generate_stats {
  int64_t prefill_tokens; /* prompt tokens run through the model */
  int64_t new_tokens;     /* tokens generated */
  int64_t steps;          /* srlm_model_step calls */
  double seconds;         /* wall time of srlm_generate */
} srlm_generate_stats;

/* Generates a continuation for each of the n requests into res (n entries, filled in
 * request order; free each with srlm_gen_result_free). stats may be NULL. On error
 * nothing is left allocated in res. Errors name the request ("request 3: ...") */
srlm_status srlm_generate(srlm_model *m, const srlm_generate_params *p, int n, const srlm_gen_request *req,
                          srlm_gen_result *res, srlm_generate_stats *stats);
void srlm_gen_result_free(srlm_gen_result *r);

#ifdef __cplusplus
}
#endif
#endif
