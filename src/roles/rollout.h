/* Internal to src/roles: one iteration's rollout work on one shard, the same code for
 * every layout (selfreward.c moves the shards between ranks).
 *
 * Shards. Iteration t uses n prompts (local index i = 0..n-1; the shard's prompt_index is
 * the task's train instance (t-1) n + i, or for a prompt set the row ((t-1) n + i) mod N
 * of the N prompts: iterations walk on through the set and wrap). Shard s holds the prompts
 * [s * roles.shard_prompts, min(n, (s + 1) * roles.shard_prompts)), each with its K
 * samples. Sample k of prompt i draws from the Philox stream keyed by (run.seed,
 * SRLM_SR_RNG_GENERATE, t, i K + k), so which rank generates a shard, and with what else
 * in the batch, changes nothing: a rank generates all its shards of an iteration as one
 * continuous batch (sr_generate_shards), and judges each shard as one batched call over its
 * sequences, the same in every layout.
 *
 * Refill (train.grpo_equal_groups refill, DAPO's dynamic sampling): when the iteration's
 * groups are short of n informative ones, extra rounds generate extra prompts, local
 * indices n, n + 1, ... up to n + refill_cap: extra shard s >= shards holds
 * [n + (s - shards) * shard_prompts, ...) cut at n + refill_cap. Extra prompt j = i - n of
 * iteration t is the task's train instance iterations n + (t-1) refill_cap + j (or that
 * row mod N of a prompt set): a reserve after the run's own prompts, so the extra prompts
 * are fresh and no iteration's prompts depend on another's refills. How many rounds and
 * prompts: srlm_refill_next (pairs.h) on the groups so far, decided by the lead learner
 * and broadcast to every rank; the learner then keeps the first n informative groups in
 * prompt order (selfreward.h). */
#ifndef SRLM_ROLES_ROLLOUT_H
#define SRLM_ROLES_ROLLOUT_H

#include "srlm/config.h"
#include "srlm/generate.h"
#include "srlm/llm_judge.h"
#include "srlm/prompts.h"
#include "srlm/model.h"
#include "srlm/shard.h"
#include "srlm/tasks.h"
#include "srlm/tokenizer.h"

typedef struct sr_rollout {
  const srlm_config *cfg;
  srlm_model *m;
  srlm_tokenizer *tok;
  const srlm_prompt_set *prompts; /* data.prompts; NULL with a built-in task */
  const srlm_task_ops *task;      /* the built-in task (task.name); NULL with a prompt set */
  srlm_llm_judge *llm;            /* the text judge of a prompt set */
  srlm_llm_meta *meta;            /* meta.enabled on a prompt set: the text meta-judge */
  int32_t eos;                    /* the task's end token */
  int32_t bos;                    /* judge.source sar: the start token of the answer-alone pass (rewards.h) */
  int32_t stops[SRLM_LLM_JUDGE_MAX_STOPS]; /* generation stops at these (task: eos) */
  int n_stops;
  int n;          /* prompts per iteration */
  int K;          /* samples per prompt */
  int64_t shards; /* shards per iteration */
  srlm_task_split split; /* the split of a task's puzzles (train; the eval's best-of-N: eval) */
  int64_t refill_cap;  /* refill: extra prompts per iteration at most (0: no refill) */
  int64_t shards_max;  /* shards + the extra shards refill_cap may need */
  srlm_model *args_ref; /* generate.args_reward implicit: the reference model (generating ranks), else NULL */
  int max_batch;        /* sequences decoded together by this rank's generation, judging and evaluation:
                           its memory plan's KV-cache slots (srlm_sr_inputs.max_batch) */
} sr_rollout;

/* What a judge saw in its shards (summed over shards and ranks for the progress lines). */
typedef struct sr_judge_counts {
  int64_t responses, judgments, unscored;
  int64_t format_failures; /* judgments without a score in the judge's format (srlm_shard_judge_health) */
  int64_t stale; /* shards of another policy version, dropped (shard.h) */
  double score_sum; /* over scored responses */
} sr_judge_counts;

void sr_shard_range(const sr_rollout *r, int64_t s, int64_t *lo, int64_t *hi);

/* 1 when judge.source has the model judge (model, mix); verifier, sar and bleu do not. */
static inline int sr_source_has_model(srlm_cfg_judge_source src) {
  return src == SRLM_CFG_SOURCE_MODEL || src == SRLM_CFG_SOURCE_MIX;
}

/* The generators' sampling from the config (generate.*, run.seed), batches of r->max_batch,
 * stopping at r's stops: what sr_generate_shards and the eval's best-of-N samples use. */
srlm_generate_params sr_sample_params(const sr_rollout *r);

/* Takes a generated shard (its owner now: send it, keep it or srlm_shard_free it, also
 * when returning an error). */
typedef srlm_status (*sr_shard_ready_fn)(void *user, srlm_shard *sh);

/* Generates the n shards list[0..n-1] of iteration t with the weights of policy version
 * `version` in ONE srlm_generate call, so the batch stays full across shards (continuous
 * batching: a slot that ends takes the next shard's waiting sample), and hands each shard
 * to ready as soon as its last sample has ended (in the order shards finish, not list
 * order). Samples are keyed per sequence, so a shard is the same whatever else the call
 * generates (every layout of ranks makes the same shards). *new_tokens (may be NULL) counts tokens. */
srlm_status sr_generate_shards(const sr_rollout *r, int t, const int64_t *list, int n, int64_t version,
                               sr_shard_ready_fn ready, void *user, int64_t *new_tokens);

/* Judges every response of a generated shard (judge.source), filling its judgments,
 * mean scores and SCORED flags. Counts accumulate into jc. Sources without a model
 * judgment record, per response: verifier one judgment "checker: right|wrong" (score:
 * the verifier's); sar two, that one and "sar <R_SA> (answer NLL <after the prompt>
 * after the prompt, <alone> alone)" (score: R_SA); bleu one, "bleu <BLEU>" (score: the
 * BLEU in [0, 1]). The response's mean score is the reward (config.h, rewards.h). */
srlm_status sr_judge_shard(const sr_rollout *r, srlm_shard *s, sr_judge_counts *jc);

/* The text of response `row` as generation returned it: the tokens decoded without the
 * final stop token. *text: free(). */
srlm_status sr_response_text(const sr_rollout *r, const srlm_shard *s, int64_t row, char **text, size_t *len);

/* The judge's format health of a scored shard (shard.h srlm_shard_judge_health): the
 * task's judge format, or the text judge's NaN scores; nothing with judge.source
 * verifier (no model judgment). Accumulates into *h. */
void sr_judge_health(const sr_rollout *r, const srlm_shard *s, srlm_shard_judge_health *h);

/* A prompt set's checker (data.checker): *ok = 1 when `answer` (len bytes, stopped at
 * EOS) is right for the prompt whose judge {prompt} is `instruction`. SRLM_ERR_FORMAT
 * when the prompt is not one the checker reads; SRLM_ERR_CONFIG without a checker. */
srlm_status sr_prompt_check(const srlm_config *cfg, const char *instruction, const char *answer, size_t len, int *ok);

/* ScPO's final answer of response `row` (text/len: sr_response_text's) in its task's
 * canonical form, written to key (NUL-terminated); returns 0 when it has none (no vote).
 * Only samples that stopped at EOS answer. A built-in task: its answer_key (tasks.h: the
 * sign puzzle's answer text in the answer's form, Countdown's exact value); a prompt set
 * with data.checker countdown: Countdown's answer_key on the prompt's text; other prompt
 * sets: none. */
#define SR_ANSWER_KEY_MAX SRLM_TASK_ANSWER_KEY_MAX
int sr_answer_key(const sr_rollout *r, const srlm_shard *s, int64_t row, const char *text, size_t len,
                  char key[SR_ANSWER_KEY_MAX]);

/* The built-in task's prompt text of a shard's prompt row; returns its length. */
size_t sr_task_prompt(const sr_rollout *r, const srlm_shard *s, int64_t prompt_row, char out[SRLM_TASK_TEXT_MAX + 1]);

#endif
