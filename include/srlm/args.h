/* srlm args: the rewards of ARGS decoding (generate.h's srlm_args_params) that need more
 * than the model module: the model's own judge of a built-in task (tasks.h's interface).
 *
 * judge reward: for request r (task prompt text prompts[r]) after its generated ids,
 * candidate v's reward is the judge's expected score (1..5) of the answer text
 * decode(ids + v) (an EOS candidate adds no text), judged as the task's judge.mode
 * expected does (task->judge: the judge prompt, the judge's greedy rationale, then
 * sum_k k p_k over the score tokens). The k candidates of a step are judged in one batch. Cost per generated token: k judge prompts prefilled and up to 9 rationale
 * tokens each, i.e. about k x (prompt + 10) tokens of judge forward per answer token.
 * Deterministic: the judge decodes greedily and per sequence.
 */
#ifndef SRLM_ARGS_H
#define SRLM_ARGS_H

#include "srlm/core.h"
#include "srlm/generate.h"
#include "srlm/model.h"
#include "srlm/tasks.h"
#include "srlm/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srlm_args_judge {
  srlm_model *judge;                /* the model that judges (usually the one generating) */
  srlm_tokenizer *tok;
  const srlm_task_ops *task;        /* the task whose judge format judges */
  const char *const *prompts;       /* (requests) each request's task prompt text */
  int n_requests;
  int64_t judged;                   /* candidates judged so far (a cost counter) */
} srlm_args_judge;

/* The srlm_args_reward_fn of the judge reward; user is a srlm_args_judge. */
srlm_status srlm_args_judge_reward(void *user, int req, const int32_t *ids, int64_t n, const int32_t *cand, int k,
                                   double *reward);

#ifdef __cplusplus
}
#endif
#endif
