/* Sign-puzzle evaluation with a model (include/srlm/tasks.h): greedy accuracy by the
 * checker, judging (greedy rationale, then the score distribution at the score position)
 * and judge agreement with the checker.
 *
 * The score distribution of a greedy rationale comes from the generation that wrote it
 * (generate.h's score position: one more decode step when the rationale ran to its 9
 * tokens); a given rationale (reference, none) is read with a packed forward over judge
 * prompt + rationale (task_internal.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/generate.h"
#include "srlm/tasks.h"
#include "task_internal.h"

#define SRLM_TASK_DEFAULT_BATCH 64
/* Answer tokens allowed past the answer's 7 before an answer counts as running on. */
#define SRLM_TASK_ANSWER_SLACK 5

static srlm_status eos_id(const srlm_tokenizer *tok, int32_t *id) {
  srlm_status st = srlm_tokenizer_token_id(tok, SRLM_TASK_EOS_TEXT, sizeof SRLM_TASK_EOS_TEXT - 1, id);
  if (st != SRLM_OK) return srlm_error_context(st, "sign puzzle: the tokenizer has no %s token", SRLM_TASK_EOS_TEXT);
  return SRLM_OK;
}

/* Encodes n texts into one array: text i is ids[off[i] .. off[i + 1]). */
static srlm_status encode_all(srlm_tokenizer *tok, int n, char (*texts)[SRLM_TASK_JUDGE_PROMPT_MAX + 1],
                              srlm_token_ids *ids, int64_t *off) {
  off[0] = 0;
  for (int i = 0; i < n; i++) {
    SRLM_TRY(srlm_tokenizer_encode(tok, texts[i], strlen(texts[i]), ids));
    off[i + 1] = (int64_t)ids->n;
    if (off[i + 1] == off[i]) return srlm_error(SRLM_ERR_INTERNAL, "sign puzzle", "text %d encodes to no tokens", i);
  }
  return SRLM_OK;
}

/* Greedy continuations; with score_ids (5, else NULL) each result also gets the score
 * position's logits of the score tokens (generate.h). */
static srlm_status greedy(srlm_model *m, srlm_tokenizer *tok, int max_batch, int max_new, int32_t eos, int n,
                          const srlm_token_ids *ids, const int64_t *off, const int32_t *score_ids,
                          srlm_gen_result *res) {
  srlm_generate_params gp = srlm_generate_params_default();
  gp.score_ids = score_ids;
  gp.n_score = score_ids ? 5 : 0;
  gp.sampler.temperature = 0;
  gp.max_new_tokens = max_new;
  gp.max_batch = max_batch > 0 ? max_batch : SRLM_TASK_DEFAULT_BATCH;
  gp.eos_ids = &eos;
  gp.n_eos = 1;
  gp.tok = tok;
  srlm_gen_request *req = srlm_xcalloc((size_t)n, sizeof *req);
  for (int i = 0; i < n; i++) {
    req[i].prompt = ids->ids + off[i];
    req[i].n_prompt = off[i + 1] - off[i];
    req[i].seq_id = (uint64_t)i;
  }
  srlm_status st = srlm_generate(m, &gp, n, req, res, NULL);
  free(req);
  return st;
}

srlm_status srlm_task_eval_accuracy(srlm_model *m, srlm_tokenizer *tok, int max_batch, int n,
                                    const srlm_task_puzzle *p, int *correct, char **answers, double *accuracy) {
  *accuracy = 0;
  if (n <= 0) return srlm_error(SRLM_ERR_RANGE, "sign puzzle eval", "no puzzles");
  int32_t eos;
  SRLM_TRY(eos_id(tok, &eos));
  char (*q)[SRLM_TASK_JUDGE_PROMPT_MAX + 1] = srlm_xmalloc((size_t)n * sizeof *q);
  for (int i = 0; i < n; i++) srlm_task_prompt(&p[i], q[i]);
  srlm_token_ids ids = {0};
  int64_t *off = srlm_xmalloc(((size_t)n + 1) * sizeof *off);
  srlm_gen_result *res = srlm_xcalloc((size_t)n, sizeof *res);
  srlm_status st = encode_all(tok, n, q, &ids, off);
  if (st == SRLM_OK)
    st = greedy(m, tok, max_batch, SRLM_TASK_ANSWER_LEN + SRLM_TASK_ANSWER_SLACK, eos, n, &ids, off, NULL, res);
  if (st == SRLM_OK) {
    int64_t right = 0;
    for (int i = 0; i < n; i++) {
      const int ok = res[i].stop == SRLM_STOP_EOS && srlm_task_check(&p[i], res[i].text, res[i].text_len);
      right += ok;
      if (correct) correct[i] = ok;
      if (answers) {
        answers[i] = res[i].text;
        res[i].text = NULL;
      }
    }
    *accuracy = (double)right / (double)n;
  }
  if (st == SRLM_OK)
    for (int i = 0; i < n; i++) srlm_gen_result_free(&res[i]);
  free(res);
  free(off);
  srlm_token_ids_free(&ids);
  free(q);
  return st;
}

/* Fills r from the score position after a rationale (text rat, rat_len bytes): the greedy
 * judgment parses when the rationale has its 9 bytes and the argmax is a score token. */
static void fill_result(double expected, int64_t argmax, const int32_t score_ids[5], const char *rat, size_t rat_len,
                        srlm_task_judge_result *r) {
  r->expected = expected;
  r->greedy_score = 0;
  if (rat_len == SRLM_TASK_RATIONALE_LEN) {
    for (int k = 0; k < 5; k++)
      if (argmax == score_ids[k]) {
        char text[SRLM_TASK_JUDGMENT_LEN];
        memcpy(text, rat, SRLM_TASK_RATIONALE_LEN);
        text[SRLM_TASK_RATIONALE_LEN] = (char)('1' + k);
        int s;
        if (srlm_task_judgment_parse(text, sizeof text, &s)) r->greedy_score = s;
      }
  }
  const size_t keep = rat_len < SRLM_TASK_RATIONALE_LEN ? rat_len : SRLM_TASK_RATIONALE_LEN;
  memcpy(r->rationale, rat, keep);
  r->rationale[keep] = '\0';
}

srlm_status srlm_task_judge(srlm_model *m, srlm_tokenizer *tok, int max_batch, srlm_task_rationale_mode mode,
                            int n, const srlm_task_puzzle *p, const char *const *cand, srlm_task_judge_result *res) {
  const char *where = "sign puzzle judge";
  if (n <= 0) return srlm_error(SRLM_ERR_RANGE, where, "no candidates");
  if (mode != SRLM_TASK_RATIONALE_GREEDY && mode != SRLM_TASK_RATIONALE_REFERENCE && mode != SRLM_TASK_RATIONALE_NONE)
    return srlm_error(SRLM_ERR_RANGE, where, "unknown rationale mode %d", (int)mode);
  int32_t eos, score_ids[5];
  SRLM_TRY(eos_id(tok, &eos));
  SRLM_TRY(task_score_ids(tok, m, where, score_ids));
  if (max_batch <= 0) max_batch = SRLM_TASK_DEFAULT_BATCH;

  /* judge prompts */
  char (*jp)[SRLM_TASK_JUDGE_PROMPT_MAX + 1] = srlm_xmalloc((size_t)n * sizeof *jp);
  for (int i = 0; i < n; i++) srlm_task_judge_prompt(&p[i], cand[i], cand[i] ? strlen(cand[i]) : 0, jp[i]);
  srlm_token_ids ids = {0}, rat_ids = {0};
  int64_t *off = srlm_xmalloc(((size_t)n + 1) * sizeof *off);
  int64_t *rat_off = srlm_xcalloc((size_t)n + 1, sizeof *rat_off);
  char (*rat)[SRLM_TASK_JUDGE_PROMPT_MAX + 1] = srlm_xcalloc((size_t)n, sizeof *rat); /* rationale texts */
  size_t *rat_len = srlm_xcalloc((size_t)n, sizeof *rat_len);
  srlm_status st = encode_all(tok, n, jp, &ids, off);

  /* rationales: ids rat_ids[rat_off[i] .. rat_off[i + 1]) and texts; a greedy one with
     its score position (expected, argmax) */
  double *expected = srlm_xmalloc((size_t)n * sizeof *expected);
  int64_t *argmax = srlm_xmalloc((size_t)n * sizeof *argmax);
  if (st == SRLM_OK && mode == SRLM_TASK_RATIONALE_GREEDY) {
    srlm_gen_result *g = srlm_xcalloc((size_t)n, sizeof *g);
    st = greedy(m, tok, max_batch, SRLM_TASK_RATIONALE_LEN, eos, n, &ids, off, score_ids, g);
    if (st == SRLM_OK) {
      for (int i = 0; i < n; i++) {
        expected[i] = task_score_expected(g[i].score_logits);
        argmax[i] = g[i].score_token;
        /* a rationale text longer than 9 bytes (special tokens written out) cannot parse:
         * keep 10 bytes so the parser sees that */
        rat_len[i] = g[i].text_len < SRLM_TASK_RATIONALE_LEN + 1 ? g[i].text_len : SRLM_TASK_RATIONALE_LEN + 1;
        if (rat_len[i] > 0) memcpy(rat[i], g[i].text, rat_len[i]);
        srlm_gen_result_free(&g[i]);
      }
    }
    free(g);
  } else if (st == SRLM_OK) {
    for (int i = 0; i < n && st == SRLM_OK; i++) {
      if (mode == SRLM_TASK_RATIONALE_REFERENCE) {
        srlm_task_rationale(cand[i], cand[i] ? strlen(cand[i]) : 0, rat[i]);
        rat_len[i] = SRLM_TASK_RATIONALE_LEN;
        st = srlm_tokenizer_encode(tok, rat[i], rat_len[i], &rat_ids);
      }
      rat_off[i + 1] = (int64_t)rat_ids.n;
    }
  }

  /* a given rationale's score position: a forward over judge prompt + rationale */
  if (st == SRLM_OK && mode != SRLM_TASK_RATIONALE_GREEDY)
    st = task_score_position(m, max_batch, n, &ids, off, &rat_ids, rat_off, score_ids, expected, argmax);
  for (int i = 0; st == SRLM_OK && i < n; i++) fill_result(expected[i], argmax[i], score_ids, rat[i], rat_len[i], &res[i]);
  free(expected);
  free(argmax);
  free(rat_len);
  free(rat);
  free(rat_off);
  free(off);
  srlm_token_ids_free(&rat_ids);
  srlm_token_ids_free(&ids);
  free(jp);
  return st;
}

srlm_status srlm_task_judge_expected(srlm_model *m, srlm_tokenizer *tok, const char *prompt, const char *cand,
                                     srlm_task_rationale_mode mode, double *score) {
  srlm_task_puzzle p;
  SRLM_TRY(srlm_task_prompt_parse(prompt, prompt ? strlen(prompt) : 0, &p));
  srlm_task_judge_result r;
  SRLM_TRY(srlm_task_judge(m, tok, 1, mode, 1, &p, &cand, &r));
  *score = r.expected;
  return SRLM_OK;
}

srlm_status srlm_task_judge_agreement(srlm_model *m, srlm_tokenizer *tok, int max_batch, int n,
                                      const srlm_task_puzzle *p, const char *const *cand,
                                      srlm_task_agreement *out) {
  memset(out, 0, sizeof *out);
  srlm_task_judge_result *r = srlm_xcalloc((size_t)(n > 0 ? n : 1), sizeof *r);
  srlm_status st = srlm_task_judge(m, tok, max_batch, SRLM_TASK_RATIONALE_GREEDY, n, p, cand, r);
  if (st == SRLM_OK) {
    out->n = n;
    for (int i = 0; i < n; i++) {
      const int truth = srlm_task_check(&p[i], cand[i], cand[i] ? strlen(cand[i]) : 0);
      const int exp_ok = r[i].expected >= 3.0;
      out->checker_correct += truth;
      out->unparsed += r[i].greedy_score == 0;
      out->agree_greedy += r[i].greedy_score != 0 && (r[i].greedy_score >= 3) == truth;
      out->agree_expected += exp_ok == truth;
      out->false_pos += exp_ok && !truth;
      out->false_neg += !exp_ok && truth;
    }
    out->greedy = (double)out->agree_greedy / (double)n;
    out->expected = (double)out->agree_expected / (double)n;
  }
  free(r);
  return st;
}
