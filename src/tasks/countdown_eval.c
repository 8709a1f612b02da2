/* Countdown evaluation with a model (include/srlm/countdown.h): held-out greedy accuracy
 * by the checker, and the agreement of the model's greedy judgments of its own answers
 * with the checker; and the task judge of the built-in task (srlm_cd_judge: greedy
 * rationale, then the score position, task_internal.h). */
#include <stdlib.h>
#include <string.h>

#include "srlm/countdown.h"
#include "srlm/generate.h"
#include "task_internal.h"

#define CD_DEFAULT_BATCH 64

/* Greedy continuations of n texts (texts[i], NUL-terminated), up to max_new tokens. */
static srlm_status greedy_texts(srlm_model *m, srlm_tokenizer *tok, int max_batch, int max_new, int32_t eos, int n,
                                char **texts, srlm_gen_result *res) {
  srlm_token_ids ids = {0};
  int64_t *off = srlm_xmalloc(((size_t)n + 1) * sizeof *off);
  off[0] = 0;
  srlm_status st = SRLM_OK;
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    st = srlm_tokenizer_encode(tok, texts[i], strlen(texts[i]), &ids);
    off[i + 1] = (int64_t)ids.n;
    if (st == SRLM_OK && off[i + 1] == off[i])
      st = srlm_error(SRLM_ERR_INTERNAL, "countdown eval", "text %d encodes to no tokens", i);
  }
  srlm_gen_request *req = srlm_xcalloc((size_t)n, sizeof *req);
  for (int i = 0; i < n && st == SRLM_OK; i++) req[i] = (srlm_gen_request){ids.ids + off[i], off[i + 1] - off[i], (uint64_t)i};
  srlm_generate_params gp = srlm_generate_params_default();
  gp.sampler.temperature = 0;
  gp.max_new_tokens = max_new;
  gp.max_batch = max_batch > 0 ? max_batch : CD_DEFAULT_BATCH;
  gp.eos_ids = &eos;
  gp.n_eos = 1;
  gp.tok = tok;
  if (st == SRLM_OK) st = srlm_generate(m, &gp, n, req, res, NULL);
  free(req);
  free(off);
  srlm_token_ids_free(&ids);
  return st;
}

srlm_status srlm_cd_evaluate(srlm_model *m, srlm_tokenizer *tok, int max_batch, int n, const srlm_cd_puzzle *p,
                             srlm_cd_eval *out) {
  memset(out, 0, sizeof *out);
  if (n <= 0) return srlm_error(SRLM_ERR_RANGE, "countdown eval", "no puzzles");
  int32_t eos;
  srlm_status st = srlm_tokenizer_token_id(tok, SRLM_TASK_EOS_TEXT, sizeof SRLM_TASK_EOS_TEXT - 1, &eos);
  if (st != SRLM_OK) return srlm_error_context(st, "countdown: the tokenizer has no %s token", SRLM_TASK_EOS_TEXT);
  char **texts = srlm_xcalloc((size_t)n, sizeof *texts);
  srlm_gen_result *ans = srlm_xcalloc((size_t)n, sizeof *ans), *jud = srlm_xcalloc((size_t)n, sizeof *jud);
  int *truth = srlm_xcalloc((size_t)n, sizeof *truth);
  for (int i = 0; i < n; i++) {
    texts[i] = srlm_xmalloc(SRLM_CD_JUDGE_PROMPT_MAX + 1);
    srlm_cd_prompt(&p[i], texts[i]);
  }
  st = greedy_texts(m, tok, max_batch, SRLM_CD_ANSWER_MAX + 2, eos, n, texts, ans);
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    const char *a = ans[i].text ? ans[i].text : "";
    const size_t len = ans[i].text ? ans[i].text_len : 0;
    truth[i] = ans[i].stop == SRLM_STOP_EOS && srlm_cd_check(&p[i], a, len, NULL) == SRLM_CD_OK;
    out->correct += truth[i];
    /* the judge sees the answer as written; one that ran on without EOS is judged as cut */
    srlm_cd_judge_prompt(&p[i], a, len, texts[i]);
  }
  if (st == SRLM_OK) st = greedy_texts(m, tok, max_batch, SRLM_CD_JUDGMENT_MAX, eos, n, texts, jud);
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    int score;
    size_t jl = jud[i].text ? jud[i].text_len : 0;
    const size_t e = sizeof SRLM_TASK_EOS_TEXT - 1; /* the EOS, should the text hold it */
    if (jl >= e && !memcmp(jud[i].text + jl - e, SRLM_TASK_EOS_TEXT, e)) jl -= e;
    const int parsed = jud[i].stop == SRLM_STOP_EOS && jud[i].text && srlm_cd_judgment_parse(jud[i].text, jl, &score);
    if (!parsed) {
      out->judge_unparsed++;
      continue;
    }
    const int says = score >= 3;
    out->judge_agree += says == truth[i];
    out->false_pos += says && !truth[i];
    out->false_neg += !says && truth[i];
  }
  if (st == SRLM_OK) {
    out->n = n;
    out->accuracy = (double)out->correct / n;
    out->judge_agreement = (double)out->judge_agree / n;
  }
  for (int i = 0; i < n; i++) {
    srlm_gen_result_free(&ans[i]);
    srlm_gen_result_free(&jud[i]);
    free(texts[i]);
  }
  free(texts);
  free(ans);
  free(jud);
  free(truth);
  return st;
}

srlm_status srlm_cd_judge(srlm_model *m, srlm_tokenizer *tok, int max_batch, int n, const srlm_cd_puzzle *p,
                          const char *const *cand, srlm_task_verdict *out) {
  const char *where = "countdown judge";
  if (n <= 0) return srlm_error(SRLM_ERR_RANGE, where, "no candidates");
  int32_t eos, score_ids[5];
  srlm_status st = srlm_tokenizer_token_id(tok, SRLM_TASK_EOS_TEXT, sizeof SRLM_TASK_EOS_TEXT - 1, &eos);
  if (st != SRLM_OK) return srlm_error_context(st, "countdown: the tokenizer has no %s token", SRLM_TASK_EOS_TEXT);
  SRLM_TRY(task_score_ids(tok, m, where, score_ids));
  if (max_batch <= 0) max_batch = CD_DEFAULT_BATCH;
  srlm_token_ids ids = {0};
  int64_t *off = srlm_xmalloc(((size_t)n + 1) * sizeof *off);
  off[0] = 0;
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    char jp[SRLM_CD_JUDGE_PROMPT_MAX + 1];
    const size_t jl = srlm_cd_judge_prompt(&p[i], cand[i] ? cand[i] : "", cand[i] ? strlen(cand[i]) : 0, jp);
    st = srlm_tokenizer_encode(tok, jp, jl, &ids);
    off[i + 1] = (int64_t)ids.n;
  }
  /* the rationale: greedy up to its ';' (kept: the score follows it) or EOS (dropped),
     and the score distribution right after it (generate.h's score position) */
  srlm_gen_result *g = srlm_xcalloc((size_t)n, sizeof *g);
  srlm_gen_request *req = srlm_xcalloc((size_t)n, sizeof *req);
  for (int i = 0; i < n; i++) req[i] = (srlm_gen_request){ids.ids + off[i], off[i + 1] - off[i], (uint64_t)i};
  const char *const semicolon[] = {";"};
  srlm_generate_params gp = srlm_generate_params_default();
  gp.sampler.temperature = 0;
  gp.max_new_tokens = SRLM_CD_RATIONALE_MAX + 1;
  gp.max_batch = max_batch;
  gp.eos_ids = &eos;
  gp.n_eos = 1;
  gp.stop = semicolon;
  gp.n_stop = 1;
  gp.tok = tok;
  gp.score_ids = score_ids;
  gp.n_score = 5;
  if (st == SRLM_OK) st = srlm_generate(m, &gp, n, req, g, NULL);
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    srlm_task_verdict *v = &out[i];
    v->expected = task_score_expected(g[i].score_logits);
    const int64_t argmax = g[i].score_token;
    v->greedy_score = 0;
    /* the stop string ends the text right after the first ';', so a rationale holds a ';'
       only as its last byte, and one without it cannot parse */
    size_t rl = g[i].text ? g[i].text_len : 0;
    if (rl > SRLM_CD_RATIONALE_MAX + 1) rl = SRLM_CD_RATIONALE_MAX + 1;
    if (rl) memcpy(v->judgment, g[i].text, rl);
    v->judgment[rl] = '\0';
    for (int k = 0; k < 5; k++)
      if (g[i].stop == SRLM_STOP_STRING && argmax == score_ids[k]) {
        v->judgment[rl] = (char)('1' + k);
        v->judgment[rl + 1] = '\0';
        int s;
        if (srlm_cd_judgment_parse(v->judgment, rl + 1, &s))
          v->greedy_score = s;
        else
          v->judgment[rl] = '\0';
      }
  }
  for (int i = 0; i < n; i++) srlm_gen_result_free(&g[i]);
  free(g);
  free(req);
  free(off);
  srlm_token_ids_free(&ids);
  return st;
}
