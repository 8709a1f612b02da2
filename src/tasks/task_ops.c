/* The task interface (include/srlm/tasks.h, srlm_task_ops): the sign puzzle's and
 * Countdown's implementations on prompt texts, the registry, and the evaluation that
 * only needs the interface (greedy accuracy, judge agreement). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/countdown.h"
#include "srlm/generate.h"
#include "srlm/tasks.h"

#define TASK_DEFAULT_BATCH 64
/* Answer tokens the sign puzzle's greedy answer may take past its 7 (sign_eval.c's slack). */
#define SIGN_ANSWER_SLACK 5

_Static_assert(SRLM_TASK_MAX_REFS >= 8 && SRLM_TASK_ANSWER_LEN < SRLM_TASK_TEXT_MAX && SRLM_CD_ANSWER_MAX < SRLM_TASK_TEXT_MAX,
               "the sign puzzle's up to 8 solutions and Countdown's solution fit the references");
_Static_assert(SRLM_TASK_JUDGE_PROMPT_MAX <= SRLM_TASK_TEXT_MAX && SRLM_CD_JUDGE_PROMPT_MAX <= SRLM_TASK_TEXT_MAX &&
                   SRLM_CD_JUDGMENT_MAX <= SRLM_TASK_TEXT_MAX && SRLM_TASK_JUDGMENT_LEN + 32 <= SRLM_TASK_TEXT_MAX,
               "SRLM_TASK_TEXT_MAX holds every built-in task's texts");

/* ---- the sign puzzle ------------------------------------------------------------------ */

static size_t sign_prompt(uint64_t seed, srlm_task_split split, uint64_t index, char out[SRLM_TASK_TEXT_MAX + 1]) {
  srlm_task_puzzle p;
  srlm_task_puzzle_make(seed, split, index, &p);
  srlm_task_prompt(&p, out);
  return SRLM_TASK_PROMPT_LEN;
}

static int sign_references(uint64_t seed, srlm_task_split split, uint64_t index,
                           char refs[SRLM_TASK_MAX_REFS][SRLM_TASK_TEXT_MAX + 1]) {
  srlm_task_puzzle p;
  srlm_task_puzzle_make(seed, split, index, &p);
  char sol[8][SRLM_TASK_ANSWER_LEN + 1];
  const int n = srlm_task_solutions(&p, sol);
  for (int i = 0; i < n; i++) memcpy(refs[i], sol[i], sizeof sol[i]);
  return n;
}

/* 1 with the puzzle of a prompt text; 0 (no error kept) when it is not one */
static int sign_parse(const char *prompt, srlm_task_puzzle *p) {
  if (srlm_task_prompt_parse(prompt, strlen(prompt), p) == SRLM_OK) return 1;
  srlm_error_clear();
  return 0;
}

static int sign_check(const char *prompt, const char *answer, size_t len) {
  srlm_task_puzzle p;
  return sign_parse(prompt, &p) && srlm_task_check(&p, answer, len);
}

static size_t sign_judge_prompt(const char *prompt, const char *cand, size_t len, char out[SRLM_TASK_TEXT_MAX + 1]) {
  srlm_task_puzzle p;
  out[0] = '\0';
  return sign_parse(prompt, &p) ? srlm_task_judge_prompt(&p, cand, len, out) : 0;
}

static int sign_answer_key(const char *prompt, const char *text, size_t len, char key[SRLM_TASK_ANSWER_KEY_MAX]) {
  (void)prompt;
  const size_t eos = strlen(SRLM_TASK_EOS_TEXT);
  if (len == SRLM_TASK_ANSWER_LEN + eos && memcmp(text + SRLM_TASK_ANSWER_LEN, SRLM_TASK_EOS_TEXT, eos) == 0)
    len = SRLM_TASK_ANSWER_LEN;
  if (len != SRLM_TASK_ANSWER_LEN) return 0;
  for (int i = 0; i < 4; i++)
    if (text[2 * i] < '0' || text[2 * i] > '9' || (i < 3 && text[2 * i + 1] != '+' && text[2 * i + 1] != '-'))
      return 0;
  memcpy(key, text, len);
  key[len] = 0;
  return 1;
}

static int sign_judgment_ok(const char *text, size_t len) {
  int score;
  return srlm_task_judgment_parse(text, len, &score);
}

static srlm_status sign_judge(srlm_model *m, srlm_tokenizer *tok, int max_batch, int n, const char *const *prompt,
                              const char *const *cand, srlm_task_verdict *out) {
  srlm_task_puzzle *p = srlm_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *p);
  srlm_status st = SRLM_OK;
  for (int i = 0; i < n && st == SRLM_OK; i++) st = srlm_task_prompt_parse(prompt[i], strlen(prompt[i]), &p[i]);
  srlm_task_judge_result *r = srlm_xcalloc((size_t)(n > 0 ? n : 1), sizeof *r);
  if (st == SRLM_OK) st = srlm_task_judge(m, tok, max_batch, SRLM_TASK_RATIONALE_GREEDY, n, p, cand, r);
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    out[i].expected = r[i].expected;
    out[i].greedy_score = r[i].greedy_score;
    if (r[i].greedy_score > 0)
      snprintf(out[i].judgment, sizeof out[i].judgment, "%s%d", r[i].rationale, r[i].greedy_score);
    else
      snprintf(out[i].judgment, sizeof out[i].judgment, "%s", r[i].rationale);
  }
  free(r);
  free(p);
  return st;
}

const srlm_task_ops srlm_task_sign_ops = {
    .name = "sign_puzzle",
    .answer_max_new = SRLM_TASK_ANSWER_LEN + SIGN_ANSWER_SLACK,
    .prompt = sign_prompt,
    .references = sign_references,
    .check = sign_check,
    .answer_key = sign_answer_key,
    .judge_prompt = sign_judge_prompt,
    .judgment_parse = srlm_task_judgment_parse,
    .judgment_ok = sign_judgment_ok,
    .judge = sign_judge,
};

/* ---- Countdown -------------------------------------------------------------------------- */

static size_t cd_prompt(uint64_t seed, srlm_task_split split, uint64_t index, char out[SRLM_TASK_TEXT_MAX + 1]) {
  srlm_cd_puzzle p;
  srlm_cd_puzzle_make(seed, split, index, &p);
  return srlm_cd_prompt(&p, out);
}

static int cd_references(uint64_t seed, srlm_task_split split, uint64_t index,
                         char refs[SRLM_TASK_MAX_REFS][SRLM_TASK_TEXT_MAX + 1]) {
  srlm_cd_puzzle p;
  srlm_cd_puzzle_make(seed, split, index, &p);
  memcpy(refs[0], p.solution, sizeof p.solution);
  return 1;
}

static int cd_parse(const char *prompt, srlm_cd_puzzle *p) {
  if (srlm_cd_prompt_parse(prompt, strlen(prompt), p) == SRLM_OK) return 1;
  srlm_error_clear();
  return 0;
}

static int cd_check(const char *prompt, const char *answer, size_t len) {
  srlm_cd_puzzle p;
  return cd_parse(prompt, &p) && srlm_cd_check(&p, answer, len, NULL) == SRLM_CD_OK;
}

static size_t cd_judge_prompt(const char *prompt, const char *cand, size_t len, char out[SRLM_TASK_TEXT_MAX + 1]) {
  srlm_cd_puzzle p;
  out[0] = '\0';
  return cd_parse(prompt, &p) ? srlm_cd_judge_prompt(&p, cand, len, out) : 0;
}

static int cd_answer_key(const char *prompt, const char *text, size_t len, char key[SRLM_TASK_ANSWER_KEY_MAX]) {
  srlm_cd_puzzle p;
  if (!cd_parse(prompt, &p)) return 0;
  int64_t value = 0;
  const srlm_cd_verdict v = srlm_cd_check(&p, text, len, &value);
  if (v != SRLM_CD_OK && v != SRLM_CD_WRONG_VALUE) return 0;
  snprintf(key, SRLM_TASK_ANSWER_KEY_MAX, "%lld", (long long)value);
  return 1;
}

static int cd_judgment_ok(const char *text, size_t len) {
  int score;
  return srlm_cd_judgment_parse(text, len, &score);
}

static srlm_status cd_judge(srlm_model *m, srlm_tokenizer *tok, int max_batch, int n, const char *const *prompt,
                            const char *const *cand, srlm_task_verdict *out) {
  srlm_cd_puzzle *p = srlm_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *p);
  srlm_status st = SRLM_OK;
  for (int i = 0; i < n && st == SRLM_OK; i++) st = srlm_cd_prompt_parse(prompt[i], strlen(prompt[i]), &p[i]);
  if (st == SRLM_OK) st = srlm_cd_judge(m, tok, max_batch, n, p, cand, out);
  free(p);
  return st;
}

const srlm_task_ops srlm_cd_task_ops = {
    .name = "countdown",
    .answer_max_new = SRLM_CD_ANSWER_MAX + 2,
    .prompt = cd_prompt,
    .references = cd_references,
    .check = cd_check,
    .answer_key = cd_answer_key,
    .judge_prompt = cd_judge_prompt,
    .judgment_parse = srlm_cd_judgment_parse,
    .judgment_ok = cd_judgment_ok,
    .judge = cd_judge,
};

const srlm_task_ops *srlm_task_find(const char *name) {
  static const srlm_task_ops *const all[] = {&srlm_task_sign_ops, &srlm_cd_task_ops};
  for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
    if (!strcmp(all[i]->name, name)) return all[i];
  return NULL;
}

/* ---- evaluation through the interface ------------------------------------------------------- */

srlm_status srlm_task_accuracy(const srlm_task_ops *t, srlm_model *m, srlm_tokenizer *tok, int max_batch, int n,
                               const char *const *prompt, int *correct, char **answers, double *accuracy) {
  *accuracy = 0;
  if (n <= 0) return srlm_error(SRLM_ERR_RANGE, t->name, "no puzzles to evaluate");
  int32_t eos;
  srlm_status st = srlm_tokenizer_token_id(tok, SRLM_TASK_EOS_TEXT, sizeof SRLM_TASK_EOS_TEXT - 1, &eos);
  if (st != SRLM_OK) return srlm_error_context(st, "%s: the tokenizer has no %s token", t->name, SRLM_TASK_EOS_TEXT);
  srlm_token_ids ids = {0};
  int64_t *off = srlm_xmalloc(((size_t)n + 1) * sizeof *off);
  off[0] = 0;
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    st = srlm_tokenizer_encode(tok, prompt[i], strlen(prompt[i]), &ids);
    off[i + 1] = (int64_t)ids.n;
    if (st == SRLM_OK && off[i + 1] == off[i])
      st = srlm_error(SRLM_ERR_INTERNAL, t->name, "prompt %d encodes to no tokens", i);
  }
  srlm_gen_request *req = srlm_xcalloc((size_t)n, sizeof *req);
  srlm_gen_result *res = srlm_xcalloc((size_t)n, sizeof *res);
  for (int i = 0; i < n && st == SRLM_OK; i++) req[i] = (srlm_gen_request){ids.ids + off[i], off[i + 1] - off[i], (uint64_t)i};
  srlm_generate_params gp = srlm_generate_params_default();
  gp.sampler.temperature = 0;
  gp.max_new_tokens = t->answer_max_new;
  gp.max_batch = max_batch > 0 ? max_batch : TASK_DEFAULT_BATCH;
  gp.eos_ids = &eos;
  gp.n_eos = 1;
  gp.tok = tok;
  if (st == SRLM_OK) st = srlm_generate(m, &gp, n, req, res, NULL);
  if (st == SRLM_OK) {
    int64_t right = 0;
    for (int i = 0; i < n; i++) {
      const int ok = res[i].stop == SRLM_STOP_EOS && t->check(prompt[i], res[i].text ? res[i].text : "", res[i].text_len);
      right += ok;
      if (correct) correct[i] = ok;
      if (answers) {
        answers[i] = res[i].text;
        res[i].text = NULL;
      }
    }
    *accuracy = (double)right / (double)n;
  }
  for (int i = 0; i < n; i++) srlm_gen_result_free(&res[i]);
  free(res);
  free(req);
  free(off);
  srlm_token_ids_free(&ids);
  return st;
}

srlm_status srlm_task_agreement_of(const srlm_task_ops *t, srlm_model *m, srlm_tokenizer *tok, int max_batch, int n,
                                   const char *const *prompt, const char *const *cand, srlm_task_agreement *out) {
  memset(out, 0, sizeof *out);
  srlm_task_verdict *v = srlm_xcalloc((size_t)(n > 0 ? n : 1), sizeof *v);
  srlm_status st = t->judge(m, tok, max_batch, n, prompt, cand, v);
  if (st == SRLM_OK) {
    out->n = n;
    for (int i = 0; i < n; i++) {
      const int truth = t->check(prompt[i], cand[i] ? cand[i] : "", cand[i] ? strlen(cand[i]) : 0);
      const int exp_ok = v[i].expected >= 3.0;
      out->checker_correct += truth;
      out->unparsed += v[i].greedy_score == 0;
      out->agree_greedy += v[i].greedy_score != 0 && (v[i].greedy_score >= 3) == truth;
      out->agree_expected += exp_ok == truth;
      out->false_pos += exp_ok && !truth;
      out->false_neg += !exp_ok && truth;
    }
    out->greedy = (double)out->agree_greedy / (double)n;
    out->expected = (double)out->agree_expected / (double)n;
  }
  free(v);
  return st;
}
