/* The sign puzzle's meta-judge format (include/srlm/tasks.h "meta-judge format"): the
 * meta prompt, and reading the meta-judge's verdict from the next-token logits after the
 * marker, the way the judge's score is read (src/tasks/sign_eval.c). */
#include <stdlib.h>
#include <string.h>

#include "srlm/generate.h"
#include "srlm/tasks.h"

#define SRLM_TASK_META_BATCH 64

size_t srlm_task_meta_prompt(const srlm_task_puzzle *p, const char *cand, size_t len, const char *ja, size_t la,
                             const char *jb, size_t lb, char out[SRLM_TASK_META_PROMPT_MAX + 1]) {
  int score;
  if (!ja || !jb || !srlm_task_judgment_parse(ja, la, &score) || !srlm_task_judgment_parse(jb, lb, &score)) return 0;
  size_t n = srlm_task_judge_prompt(p, cand, len, out);
  memcpy(out + n, ja, SRLM_TASK_JUDGMENT_LEN);
  n += SRLM_TASK_JUDGMENT_LEN;
  out[n++] = 'Q';
  memcpy(out + n, jb, SRLM_TASK_JUDGMENT_LEN);
  n += SRLM_TASK_JUDGMENT_LEN;
  out[n++] = 'A';
  out[n] = '\0';
  return n;
}

srlm_status srlm_task_meta_judge(srlm_model *m, srlm_tokenizer *tok, int max_batch, int n,
                                 const char *const *prompts, srlm_meta_verdict *verdict, int *format_ok) {
  const char *where = "sign puzzle meta-judge";
  if (n <= 0) return SRLM_OK;
  if (max_batch <= 0) max_batch = SRLM_TASK_META_BATCH;
  int32_t one, two, eos;
  SRLM_TRY(srlm_tokenizer_token_id(tok, "1", 1, &one));
  SRLM_TRY(srlm_tokenizer_token_id(tok, "2", 1, &two));
  SRLM_TRY(srlm_tokenizer_token_id(tok, SRLM_TASK_EOS_TEXT, strlen(SRLM_TASK_EOS_TEXT), &eos));
  const int64_t V = srlm_model_get_config(m)->vocab_size;
  if (one >= V || two >= V)
    return srlm_error(SRLM_ERR_RANGE, where, "answer token ids %d, %d are outside the model's vocabulary (%lld)",
                      (int)one, (int)two, (long long)V);
  srlm_token_ids ids = {0};
  int64_t *off = srlm_xmalloc(((size_t)n + 1) * sizeof *off);
  off[0] = 0;
  srlm_status st = SRLM_OK;
  int64_t max_seq = 0;
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    st = srlm_tokenizer_encode(tok, prompts[i], strlen(prompts[i]), &ids);
    off[i + 1] = (int64_t)ids.n;
    if (st == SRLM_OK && off[i + 1] == off[i]) st = srlm_error(SRLM_ERR_INTERNAL, where, "meta prompt %d is empty", i);
    if (off[i + 1] - off[i] > max_seq) max_seq = off[i + 1] - off[i];
  }
  max_seq += SRLM_TASK_JUDGMENT_LEN; /* with the own judgment */
  const int64_t max_pos = srlm_model_get_config(m)->max_position_embeddings;
  if (st == SRLM_OK && max_pos > 0 && max_seq + 1 > max_pos)
    st = srlm_error(SRLM_ERR_RANGE, where, "a meta prompt and its judgment of %lld tokens do not fit the model's %lld "
                    "positions (a model that meta-judges needs max_seq_len >= 54: "
                    "configs/methods/meta-rewarding-m1.yaml)", (long long)max_seq, (long long)max_pos);
  /* the own judgments, greedily */
  srlm_gen_result *g = srlm_xcalloc((size_t)n, sizeof *g);
  if (st == SRLM_OK) {
    srlm_gen_request *req = srlm_xmalloc((size_t)n * sizeof *req);
    for (int i = 0; i < n; i++) req[i] = (srlm_gen_request){ids.ids + off[i], off[i + 1] - off[i], (uint64_t)i};
    srlm_generate_params gp = srlm_generate_params_default();
    gp.sampler.temperature = 0;
    gp.max_new_tokens = SRLM_TASK_JUDGMENT_LEN;
    gp.max_batch = max_batch;
    gp.eos_ids = &eos;
    gp.n_eos = 1;
    gp.tok = tok;
    st = srlm_generate(m, &gp, n, req, g, NULL);
    free(req);
  }
  /* the verdict position: after meta prompt + own judgment (its EOS left out) */
  int32_t *tokens = srlm_xmalloc((size_t)(max_seq * max_batch + 1) * sizeof *tokens);
  int32_t *cu = srlm_xmalloc(((size_t)max_batch + 1) * sizeof *cu);
  int64_t *pos = srlm_xmalloc((size_t)max_batch * sizeof *pos);
  float *logits = srlm_xmalloc((size_t)max_batch * (size_t)V * sizeof *logits);
  for (int i0 = 0; st == SRLM_OK && i0 < n; i0 += max_batch) {
    const int B = n - i0 < max_batch ? n - i0 : max_batch;
    int64_t T = 0;
    cu[0] = 0;
    for (int b = 0; b < B; b++) {
      const int i = i0 + b;
      const int64_t k = g[i].stop == SRLM_STOP_EOS ? g[i].n - 1 : g[i].n;
      memcpy(tokens + T, ids.ids + off[i], (size_t)(off[i + 1] - off[i]) * sizeof *tokens);
      T += off[i + 1] - off[i];
      if (k > 0) memcpy(tokens + T, g[i].ids, (size_t)k * sizeof *tokens);
      T += k;
      cu[b + 1] = (int32_t)T;
      pos[b] = T - 1;
    }
    const srlm_batch batch = {.B = B, .T = T, .tokens = tokens, .cu_seqlens = cu, .targets = NULL};
    st = srlm_model_logits(m, &batch, pos, B, logits);
    for (int b = 0; st == SRLM_OK && b < B; b++) {
      const int i = i0 + b;
      const float *z = logits + (size_t)b * (size_t)V;
      verdict[i] = z[one] > z[two] ? SRLM_META_A : z[two] > z[one] ? SRLM_META_B : SRLM_META_NONE;
      if (format_ok) {
        int64_t best = 0; /* the argmax, lowest id on ties (sampler.h) */
        for (int64_t v = 1; v < V; v++)
          if (z[v] > z[best]) best = v;
        int score;
        format_ok[i] = (best == one || best == two) && g[i].text &&
                       srlm_task_judgment_parse(g[i].text, g[i].text_len, &score) &&
                       g[i].text_len == SRLM_TASK_JUDGMENT_LEN;
      }
    }
  }
  for (int i = 0; i < n; i++) srlm_gen_result_free(&g[i]);
  free(g);
  free(tokens);
  free(cu);
  free(pos);
  free(logits);
  free(off);
  srlm_token_ids_free(&ids);
  return st;
}

srlm_status srlm_task_meta_accuracy(srlm_model *m, srlm_tokenizer *tok, int max_batch, uint64_t seed,
                                    srlm_task_split split, int n, double *accuracy, double *format_ok) {
  *accuracy = *format_ok = 0;
  if (n <= 0) return srlm_error(SRLM_ERR_RANGE, "sign puzzle meta-judge", "no meta examples");
  char (*mp)[SRLM_TASK_META_PROMPT_MAX + 1] = srlm_xmalloc((size_t)n * sizeof *mp);
  const char **ptr = srlm_xmalloc((size_t)n * sizeof *ptr);
  char *winner = srlm_xmalloc((size_t)n);
  for (int i = 0; i < n; i++) {
    srlm_task_puzzle p;
    char cand[SRLM_TASK_ANSWER_LEN + 1], a[SRLM_TASK_JUDGMENT_LEN + 1], b[SRLM_TASK_JUDGMENT_LEN + 1];
    srlm_task_meta_example(seed, split, (uint64_t)i, &p, cand, a, b, &winner[i], NULL);
    srlm_task_meta_prompt(&p, cand, strlen(cand), a, strlen(a), b, strlen(b), mp[i]);
    ptr[i] = mp[i];
  }
  srlm_meta_verdict *v = srlm_xmalloc((size_t)n * sizeof *v);
  int *ok = srlm_xmalloc((size_t)n * sizeof *ok);
  srlm_status st = srlm_task_meta_judge(m, tok, max_batch, n, ptr, v, ok);
  if (st == SRLM_OK) {
    int64_t right = 0, fmt = 0;
    for (int i = 0; i < n; i++) {
      right += v[i] == (winner[i] == '1' ? SRLM_META_A : SRLM_META_B);
      fmt += ok[i];
    }
    *accuracy = (double)right / (double)n;
    *format_ok = (double)fmt / (double)n;
  }
  free(ok);
  free(v);
  free(winner);
  free(ptr);
  free(mp);
  return st;
}
