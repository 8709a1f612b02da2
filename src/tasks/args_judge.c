/* The judge reward of ARGS decoding on a built-in task (conventions in include/srlm/args.h). */
#include "srlm/args.h"

#include <stdlib.h>
#include <string.h>

srlm_status srlm_args_judge_reward(void *user, int req, const int32_t *ids, int64_t n, const int32_t *cand, int k,
                                   double *reward) {
  srlm_args_judge *a = user;
  if (req < 0 || req >= a->n_requests)
    return srlm_error(SRLM_ERR_INTERNAL, "args judge", "request %d of %d", req, a->n_requests);
  int32_t *buf = srlm_xmalloc((size_t)(n + 1) * sizeof *buf);
  if (n) memcpy(buf, ids, (size_t)n * sizeof *buf);
  char **texts = srlm_xcalloc((size_t)k, sizeof *texts);
  const char **prm = srlm_xmalloc((size_t)k * sizeof *prm);
  srlm_task_verdict *res = srlm_xcalloc((size_t)k, sizeof *res);
  int32_t eos = -1;
  srlm_status st = srlm_tokenizer_token_id(a->tok, SRLM_TASK_EOS_TEXT, strlen(SRLM_TASK_EOS_TEXT), &eos);
  for (int j = 0; j < k && st == SRLM_OK; j++) {
    buf[n] = cand[j];
    const int64_t m = cand[j] == eos ? n : n + 1; /* EOS ends the answer: no text */
    size_t len = 0;
    st = srlm_tokenizer_decode(a->tok, buf, (size_t)m, &texts[j], &len);
    prm[j] = a->prompts[req];
  }
  if (st == SRLM_OK)
    st = a->task->judge(a->judge, a->tok, k, k, prm, (const char *const *)texts, res);
  for (int j = 0; j < k && st == SRLM_OK; j++) reward[j] = res[j].expected;
  if (st == SRLM_OK) a->judged += k;
  for (int j = 0; j < k; j++) free(texts[j]);
  free(texts);
  free(prm);
  free(res);
  free(buf);
  return st;
}
