/* Internal to src/train: how the trainers pack and forward their micro-batches.
 *
 * train_pack: prompt + response sequences packed back to back without padding
 * (srlm_batch), with targets on the response tokens only. The preference and GRPO
 * trainers both forward their sequences this way.
 *
 * Sequence b's response token j is predicted at packed position first[b] + j
 * (first[b] = its start + prompt_len - 1), so its response log-probs are
 * logp[first[b] .. first[b] + n_resp[b]) and its gradient coefficients go to the same
 * range of g. A prompt needs >= 1 token (the callers check it). */
#ifndef SRLM_TRAIN_PACK_H
#define SRLM_TRAIN_PACK_H

#include <stdint.h>

#include "srlm/model.h"
#include "srlm/sft.h"

typedef struct train_pack {
  int32_t *tokens, *targets, *cu; /* (T), (T), (B + 1) */
  int64_t *first, *n_resp;        /* (B) */
  float *logp, *g;                /* (T) the model's log-probs, the backward's coefficients */
  int64_t T, cap;
  int B, cap_seqs;
} train_pack;

/* Starts an empty pack with room for `tokens` tokens in `seqs` sequences. */
void train_pack_begin(train_pack *p, int64_t tokens, int seqs);
/* Appends prompt (np >= 1 tokens) + response (nr tokens) as one sequence. */
void train_pack_add(train_pack *p, const int32_t *prompt, int64_t np, const int32_t *resp, int64_t nr);
srlm_batch train_pack_batch(const train_pack *p);
/* Sum of sequence b's response log-probs (in token order). */
double train_pack_sum(const train_pack *p, int b);
void train_pack_free(train_pack *p);

/* train_nll: one micro-batch of plain NLL examples of srlm_sft_data (SFT's examples, the
 * preference trainer's replay), packed by srlm_sft_batch_fill; every target token gets
 * the backward coefficient coef = dL/dlogp (the caller's normalization, e.g. -1/N for
 * the token mean over a step's N targets). Zero-init is empty. */
typedef struct train_nll {
  srlm_sft_batch batch;
  float *logp, *g; /* (cap) per-token log-probs and coefficients */
  size_t cap;
} train_nll;

/* Forward and backward (accumulating) of examples idx[0..count) (count >= 1) of d:
 * *nll = the NLL summed over their target tokens, *tokens = the tokens forwarded;
 * *finite = 0, and no backward, when that sum is NaN/Inf. */
srlm_status train_nll_step(train_nll *w, srlm_model *m, const srlm_sft_data *d, const int64_t *idx, int count,
                           double coef, double *nll, int64_t *tokens, int *finite);
void train_nll_free(train_nll *w);

#endif
