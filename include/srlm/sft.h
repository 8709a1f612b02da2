/* srlm sft: supervised fine-tuning data and the training loop of `srlm sft`.
 *
 * Data (srlm_sft_data_load): a JSONL file, one example a line, either
 *   {"messages": [{"role": ..., "content": ...}, ...]}  rendered with the model's chat
 *       format (chat.h); the loss covers the assistant targets (content through the
 *       end-of-turn token) as srlm_chat_encode's mask marks them;
 *   {"prompt": "...", "response": "..."}  with a chat format: the user turn and the
 *       assistant turn of a two-message conversation; without one (chat_format none,
 *       e.g. configs/tiny): raw text, prompt and response encoded separately (as
 *       generation sees a prompt) and EOS appended to the response; the loss covers the
 *       response tokens and the EOS.
 * Each token position t gets a target: the next token ids[t + 1] when that token is
 * covered by the loss, else -1 (so the last token never has one). Errors read
 * "FILE:LINE: what"; with skip_bad_lines such lines are skipped and counted.
 * Sequences longer than max_len are truncated to their first max_len tokens (the last
 * kept position loses its target) or dropped (srlm_sft_overflow); either way counted.
 * An example left with no target at all is dropped and counted.
 *
 * Order and batches: each epoch visits the examples in a permutation drawn by
 * Fisher-Yates from the Philox stream keyed by (seed, SRLM_SFT_RNG_PURPOSE, epoch, i),
 * so the order is a function of (seed, epoch) alone. An optimizer step takes the next
 * batch_size * grad_accum examples of the permutation (the epoch's last step may take
 * fewer), as grad_accum micro-batches of up to batch_size sequences packed without
 * padding (srlm_batch).
 *
 * Loss and gradient accumulation: the loss of a step is the mean NLL over ALL target
 * tokens of the step's micro-batches, L = -(1/N) sum_t logp_t, N = the step's target
 * count (known before the first forward, since the data is tokenized up front). Each
 * micro-batch's backward gets g_t = -1/N on its target tokens, and the model sums the
 * micro-batch gradients, so the accumulated gradient is exactly dL/dparams of the
 * step's token mean, whatever the split into micro-batches.
 *
 * Non-finite values: a micro-batch whose loss is NaN/Inf ends the step without an
 * update; the optimizer also skips a step whose gradient norm is not finite. Both are
 * counted and reported in the step info (skipped = 1).
 *
 * The loop is the training-step engine's (engine.h), which also gives SFT:
 * - data parallelism (dp.h): every learner holds all examples; learner r takes its
 *   contiguous slice (srlm_dp_slice) of each step's examples, in micro-batches of up to
 *   batch_size, normalized by the whole step's N; dp->reduce sums the gradients, the NLL
 *   and a non-finite flag once per step, and all learners step or skip together. One
 *   learner (dp NULL) is the loop described above, bit for bit.
 * - resume (srlm_train_resume): steps before start_step are not run (each epoch's order
 *   is still drawn), AdamW restarts from the given state, and the run continues the
 *   uninterrupted one bit for bit. A checkpoint takes the weights and the step info's
 *   optimizer (srlm_optim_get_state) after a step.
 * Gradients: during the step callback the model's gradients (srlm_model_get_grads) hold the step's gradient (summed
 * over micro-batches and learners); they are cleared before srlm_sft_train returns.
 */
#ifndef SRLM_SFT_H
#define SRLM_SFT_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/chat.h"
#include "srlm/core.h"
#include "srlm/dp.h"
#include "srlm/engine.h"
#include "srlm/model.h"
#include "srlm/optim.h"
#include "srlm/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The Philox counter word that marks the SFT shuffle: draws are
 * srlm_rng_bits(seed, SRLM_SFT_RNG_PURPOSE, epoch, i, 0). */
#define SRLM_SFT_RNG_PURPOSE 0x5f70u

/* ---- data ------------------------------------------------------------------- */

typedef enum srlm_sft_overflow {
  SRLM_SFT_TRUNCATE = 0, /* keep the first max_len tokens */
  SRLM_SFT_DROP          /* skip the example */
} srlm_sft_overflow;

typedef struct srlm_sft_data_options {
  srlm_tokenizer *tok;
  const srlm_chat_format *chat; /* NULL: no chat format (raw prompt/response lines only) */
  int32_t eos_id;               /* appended to raw responses; -1: none */
  int64_t max_len;              /* longest sequence in tokens; 0: no limit */
  srlm_sft_overflow overflow;
  int skip_bad_lines;           /* 1: skip malformed lines (counted) instead of failing */
  int64_t vocab_size;           /* every id must be below it (the model's V); 0: no check */
} srlm_sft_data_options;

/* Examples tokenized back to back. */
typedef struct srlm_sft_data {
  int64_t n;         /* examples kept */
  int64_t *offsets;  /* (n + 1) example i is [offsets[i], offsets[i + 1]) */
  int32_t *ids;      /* (offsets[n]) token ids */
  int32_t *targets;  /* (offsets[n]) next-token target or -1 (see above) */
  int32_t *n_targets_of; /* (n) targets of each example */
  long *lines;       /* (n) the JSONL line each example came from */
  int64_t n_tokens, n_targets, max_seq;
  /* what was left out or cut */
  int64_t n_lines;     /* non-blank lines read */
  int64_t n_bad;       /* malformed lines skipped (skip_bad_lines) */
  int64_t n_truncated; /* kept, truncated to max_len */
  int64_t n_too_long;  /* dropped for being longer than max_len (SRLM_SFT_DROP) */
  int64_t n_no_target; /* dropped: no target token (after truncation) */
} srlm_sft_data;

srlm_status srlm_sft_data_load(const char *path, const srlm_sft_data_options *opt, srlm_sft_data *out);
void srlm_sft_data_free(srlm_sft_data *d);

/* The epoch's order: a permutation of [0, n) into order (n), a function of (seed, epoch). */
void srlm_sft_order(int64_t n, uint64_t seed, int epoch, int64_t *order);

/* A packed micro-batch with its own buffers; b views them. Zero-init is empty. */
typedef struct srlm_sft_batch {
  srlm_batch b;
  int32_t *tokens, *targets, *cu_seqlens;
  int64_t n_targets;
  size_t cap_tokens;
  int cap_seqs;
} srlm_sft_batch;

/* Packs examples idx[0..count) of d (count >= 1) into batch, reusing its buffers. */
void srlm_sft_batch_fill(srlm_sft_batch *batch, const srlm_sft_data *d, const int64_t *idx, int count);
void srlm_sft_batch_free(srlm_sft_batch *batch);

/* Optimizer steps in one epoch: ceil(n / (batch_size * grad_accum)). */
int64_t srlm_sft_steps_per_epoch(int64_t n, int batch_size, int grad_accum);

/* ---- training loop --------------------------------------------------------- */

/* What one optimizer step did (passed to the step callback). */
typedef struct srlm_sft_step_info {
  int64_t step;        /* steps done, 1-based */
  int64_t total_steps;
  int epoch;           /* 1-based */
  int epochs;
  double loss;         /* mean NLL over the step's target tokens (NaN/Inf when not finite) */
  double lr;           /* learning rate of this step */
  double grad_norm;    /* global gradient norm before clipping (NaN when the loss was not finite) */
  double clip_scale;   /* 1 when not clipped */
  int skipped;         /* 1: no update (non-finite loss or gradients) */
  int64_t n_skipped;   /* steps skipped so far */
  int64_t tokens;      /* tokens in the step (prompt and target) */
  int64_t targets;     /* target tokens in the step */
  int sequences;
  double step_seconds;
  double elapsed_seconds;  /* since training started */
  int64_t tokens_done;     /* tokens so far (in this call) */
  srlm_optim *optim;       /* the trainer's optimizer after the step (for a checkpoint) */
} srlm_sft_step_info;

/* Called after every optimizer step; a non-OK status stops training with that status. */
typedef srlm_status (*srlm_sft_step_fn)(const srlm_sft_step_info *info, void *user);

typedef struct srlm_sft_options {
  int batch_size;  /* sequences per micro-batch (>= 1) */
  int grad_accum;  /* micro-batches per optimizer step (>= 1) */
  int epochs;      /* >= 1 */
  uint64_t seed;   /* of the shuffle */
  srlm_optim_config optim;
  srlm_lr_schedule schedule; /* total_steps is set by srlm_sft_train (epochs x steps per epoch) */
  srlm_sft_step_fn on_step;  /* may be NULL */
  void *user;
  const srlm_dp *dp;         /* learners splitting each step (dp.h); NULL = one learner */
  const srlm_train_resume *resume; /* NULL: from the first step (engine.h) */
} srlm_sft_options;

typedef struct srlm_sft_summary {
  int64_t steps;                /* the step count reached (steps before a resume point included) */
  int64_t skipped;              /* steps skipped in this call */
  double first_loss, last_loss; /* of the first and the last step run in this call */
  double last_epoch_loss;       /* token mean over the last epoch's non-skipped steps run in this call */
  int64_t tokens;               /* tokens of the steps run in this call */
  double seconds;
} srlm_sft_summary;

/* Trains m on d: epochs x steps as described above, a fresh AdamW on the model's
 * parameters (srlm_optim_create_for_model). sum may be NULL. */
srlm_status srlm_sft_train(srlm_model *m, const srlm_sft_data *d, const srlm_sft_options *o,
                           srlm_sft_summary *sum);

#ifdef __cplusplus
}
#endif
#endif
