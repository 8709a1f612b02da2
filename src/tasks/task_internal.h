/* Internal to src/tasks: what the built-in tasks' judges share. A task judge writes its
 * rationale greedily with srlm_generate, which also reads the score distribution at the
 * score position after it (generate.h's score_ids: from the same KV cache, one more
 * decode step at most); a rationale the judge is given (reference, none) is read with
 * one packed forward per chunk of sequences (srlm_model_logits) instead. On the CPU both
 * give the same bits. */
#ifndef SRLM_TASKS_TASK_INTERNAL_H
#define SRLM_TASKS_TASK_INTERNAL_H

#include "srlm/model.h"
#include "srlm/tokenizer.h"

/* The ids of the score tokens '1'..'5' in tok, each inside m's vocabulary; `where` names
 * the task in the error. */
srlm_status task_score_ids(const srlm_tokenizer *tok, const srlm_model *m, const char *where, int32_t score_ids[5]);

/* For each of n sequences, judge prompt ids->ids[off[i] .. off[i + 1]) followed by the
 * rationale rat->ids[rat_off[i] .. rat_off[i + 1]) (may be empty), the next-token logits
 * at its end, max_batch sequences a forward: expected[i] = sum_k k p_k with p = the
 * softmax of the logits of score_ids[0..4] (scores 1..5), argmax[i] = the token with the
 * largest logit over the vocabulary (the lowest id on ties, as the greedy sampler). */
/* sum_k k p_k with p the softmax of the logits z of the score tokens of scores 1..5 */
double task_score_expected(const float z[5]);

srlm_status task_score_position(srlm_model *m, int max_batch, int n, const srlm_token_ids *ids, const int64_t *off,
                                const srlm_token_ids *rat, const int64_t *rat_off, const int32_t score_ids[5],
                                double *expected, int64_t *argmax);

#endif
