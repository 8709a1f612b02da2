/* Countdown data files (include/srlm/countdown.h): the seed SFT JSONL and prompt files.
 * Every text is built in memory and written with srlm_write_file_atomic, so a reader
 * never sees half a file. The texts hold only the task's characters (digits, + - * / ( ) ,
 * ; = C T A S X N ?), so they go into JSON strings without escaping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/countdown.h"

static void add_line(srlm_strbuf *b, const char *prompt, const char *response) {
  char line[1024]; /* a meta-judge example: up to about 580 bytes */
  const int w = response ? snprintf(line, sizeof line, "{\"prompt\": \"%s\", \"response\": \"%s\"}\n", prompt, response)
                         : snprintf(line, sizeof line, "{\"prompt\": \"%s\"}\n", prompt);
  SRLM_CHECK(w > 0 && (size_t)w < sizeof line, "countdown data line too long");
  srlm_strbuf_append(b, line, (size_t)w);
}

static srlm_status check_count(const char *what, int64_t n) {
  if (n < 0 || n > ((int64_t)1 << 40)) return srlm_error(SRLM_ERR_RANGE, what, "count %lld out of range", (long long)n);
  return SRLM_OK;
}

srlm_status srlm_cd_write_sft_data(const char *path, uint64_t seed, int64_t n_instructions, int64_t n_judge,
                                   srlm_cd_sft_counts *counts) {
  return srlm_cd_write_sft_data_meta(path, seed, n_instructions, n_judge, 0, counts);
}

srlm_status srlm_cd_write_sft_data_meta(const char *path, uint64_t seed, int64_t n_instructions, int64_t n_judge,
                                        int64_t n_meta, srlm_cd_sft_counts *counts) {
  SRLM_TRY(check_count("instructions", n_instructions));
  SRLM_TRY(check_count("judge examples", n_judge));
  SRLM_TRY(check_count("meta-judge examples", n_meta));
  if (n_instructions + n_judge + n_meta == 0) return srlm_error(SRLM_ERR_RANGE, path, "no examples asked for");
  srlm_cd_sft_counts c;
  memset(&c, 0, sizeof c);
  srlm_strbuf b = {0};
  for (int64_t i = 0; i < n_instructions; i++) {
    srlm_cd_puzzle p;
    srlm_cd_puzzle_make(seed, SRLM_TASK_SPLIT_SFT, (uint64_t)i, &p);
    char q[SRLM_CD_PROMPT_MAX + 1];
    srlm_cd_prompt(&p, q);
    add_line(&b, q, p.solution);
    c.instructions++;
  }
  for (int64_t i = 0; i < n_judge; i++) {
    srlm_cd_puzzle p;
    char cand[SRLM_CD_ANSWER_MAX + 1], jp[SRLM_CD_JUDGE_PROMPT_MAX + 1], jr[SRLM_CD_JUDGMENT_MAX + 1];
    srlm_cd_cand_kind k;
    srlm_cd_judge_example(seed, (uint64_t)i, &p, cand, &k);
    srlm_cd_judge_prompt(&p, cand, strlen(cand), jp);
    const size_t jl = srlm_cd_judgment(&p, cand, strlen(cand), jr);
    add_line(&b, jp, jr);
    c.judge++;
    c.judge_correct += jr[jl - 1] == '5';
    c.kind[k]++;
  }
  for (int64_t i = 0; i < n_meta; i++) {
    srlm_cd_puzzle p;
    char cand[SRLM_CD_ANSWER_MAX + 1], ja[SRLM_CD_JUDGMENT_MAX + 2], jb[SRLM_CD_JUDGMENT_MAX + 2];
    char mp[SRLM_CD_META_PROMPT_MAX + 1], answer[SRLM_CD_JUDGMENT_MAX + 2], win;
    srlm_task_meta_kind k;
    srlm_cd_meta_example(seed, (uint64_t)i, &p, cand, ja, jb, &win, &k);
    const size_t al = srlm_cd_judgment(&p, cand, strlen(cand), answer); /* the own judgment, then the verdict */
    answer[al] = win;
    answer[al + 1] = '\0';
    SRLM_CHECK(srlm_cd_meta_prompt(&p, cand, strlen(cand), ja, jb, mp) > 0, "meta example %lld: a judgment does not "
               "parse", (long long)i);
    add_line(&b, mp, answer);
    c.meta++;
    c.meta_first += win == '1';
    c.meta_kind[k]++;
  }
  srlm_status st = srlm_write_file_atomic(path, b.p, b.n);
  free(b.p);
  if (st == SRLM_OK && counts) *counts = c;
  return st;
}

srlm_status srlm_cd_write_prompts(const char *path, uint64_t seed, srlm_task_split split, int64_t n) {
  SRLM_TRY(check_count("prompts", n));
  if (n == 0) return srlm_error(SRLM_ERR_RANGE, path, "no prompts asked for");
  if ((unsigned)split >= SRLM_TASK_SPLIT_COUNT) return srlm_error(SRLM_ERR_RANGE, path, "unknown split %d", (int)split);
  srlm_strbuf b = {0};
  for (int64_t i = 0; i < n; i++) {
    srlm_cd_puzzle p;
    srlm_cd_puzzle_make(seed, split, (uint64_t)i, &p);
    char q[SRLM_CD_PROMPT_MAX + 1];
    srlm_cd_prompt(&p, q);
    add_line(&b, q, NULL);
  }
  srlm_status st = srlm_write_file_atomic(path, b.p, b.n);
  free(b.p);
  return st;
}
