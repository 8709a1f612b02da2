/* The score position of a task judge (src/tasks/task_internal.h): the expected score over
 * the score tokens and the greedy next token after judge prompt + rationale, by a packed
 * forward when the rationale is given (reference or none), and the expected score of the
 * score-token logits the generation engine read there (a greedy rationale). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "task_internal.h"

srlm_status task_score_ids(const srlm_tokenizer *tok, const srlm_model *m, const char *where, int32_t score_ids[5]) {
  for (int k = 0; k < 5; k++) {
    const char c = (char)('1' + k);
    SRLM_TRY(srlm_tokenizer_token_id(tok, &c, 1, &score_ids[k]));
  }
  const int64_t V = srlm_model_get_config(m)->vocab_size;
  for (int k = 0; k < 5; k++)
    if (score_ids[k] >= V)
      return srlm_error(SRLM_ERR_RANGE, where, "score token id %d is outside the model's vocabulary (%lld)",
                        (int)score_ids[k], (long long)V);
  return SRLM_OK;
}

double task_score_expected(const float z[5]) {
  float zmax = z[0];
  for (int k = 1; k < 5; k++)
    if (z[k] > zmax) zmax = z[k];
  double num = 0, den = 0;
  for (int k = 0; k < 5; k++) {
    const double e = exp((double)z[k] - (double)zmax);
    num += (k + 1) * e;
    den += e;
  }
  return num / den;
}

/* The expected score and the argmax of one logits row z (V). */
static void score_row(const float *z, int64_t V, const int32_t score_ids[5], double *expected, int64_t *argmax) {
  float zs[5];
  for (int k = 0; k < 5; k++) zs[k] = z[score_ids[k]];
  *expected = task_score_expected(zs);
  int64_t best = 0;
  for (int64_t v = 1; v < V; v++)
    if (z[v] > z[best]) best = v;
  *argmax = best;
}

srlm_status task_score_position(srlm_model *m, int max_batch, int n, const srlm_token_ids *ids, const int64_t *off,
                                const srlm_token_ids *rat, const int64_t *rat_off, const int32_t score_ids[5],
                                double *expected, int64_t *argmax) {
  const int64_t V = srlm_model_get_config(m)->vocab_size;
  int64_t max_seq = 0;
  for (int i = 0; i < n; i++) {
    const int64_t len = off[i + 1] - off[i] + rat_off[i + 1] - rat_off[i];
    if (len > max_seq) max_seq = len;
  }
  int32_t *tokens = srlm_xmalloc((size_t)(max_seq * max_batch) * sizeof *tokens); /* (B T) packed */
  int32_t *cu = srlm_xmalloc(((size_t)max_batch + 1) * sizeof *cu);
  int64_t *pos = srlm_xmalloc((size_t)max_batch * sizeof *pos);
  float *logits = srlm_xmalloc((size_t)max_batch * (size_t)V * sizeof *logits); /* (B, V) */
  srlm_status st = SRLM_OK;
  for (int i0 = 0; st == SRLM_OK && i0 < n; i0 += max_batch) {
    const int B = n - i0 < max_batch ? n - i0 : max_batch;
    int64_t T = 0;
    cu[0] = 0;
    for (int b = 0; b < B; b++) {
      const int i = i0 + b;
      memcpy(tokens + T, ids->ids + off[i], (size_t)(off[i + 1] - off[i]) * sizeof *tokens);
      T += off[i + 1] - off[i];
      const int64_t nr = rat_off[i + 1] - rat_off[i];
      if (nr > 0) memcpy(tokens + T, rat->ids + rat_off[i], (size_t)nr * sizeof *tokens);
      T += nr;
      cu[b + 1] = (int32_t)T;
      pos[b] = T - 1;
    }
    const srlm_batch batch = {.B = B, .T = T, .tokens = tokens, .cu_seqlens = cu, .targets = NULL};
    st = srlm_model_logits(m, &batch, pos, B, logits);
    for (int b = 0; st == SRLM_OK && b < B; b++)
      score_row(logits + (size_t)b * (size_t)V, V, score_ids, &expected[i0 + b], &argmax[i0 + b]);
  }
  free(tokens);
  free(cu);
  free(pos);
  free(logits);
  return st;
}
