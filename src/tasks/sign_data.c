/* Sign-puzzle data files (include/srlm/tasks.h): judge examples, the seed SFT JSONL and
 * prompt files. Every text is built in memory and written with srlm_write_file_atomic,
 * so a reader never sees half a file. The texts hold only vocabulary characters, so
 * they go into JSON strings without escaping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/tasks.h"

/* Counter word `d` of a judge example's candidate draws (the puzzle draws use small
 * attempt numbers in the same word). */
#define SRLM_TASK_CAND_DRAW 0x40000000u

/* A candidate for puzzle p from the draws r: a correct one, or (perturbed) one made as
 * srlm_task_judge_example says. */
static void make_candidate(const srlm_task_puzzle *p, srlm_philox_out r, int perturbed,
                           char cand[SRLM_TASK_ANSWER_LEN + 1], srlm_task_cand_kind *kind) {
  /* a correct sign pattern, uniform among those that reach the target */
  int correct[8][3], n_correct = 0;
  for (int m = 0; m < 8; m++) {
    const int s[3] = {m & 4 ? -1 : 1, m & 2 ? -1 : 1, m & 1 ? -1 : 1};
    int v = p->d[0] + s[0] * p->d[1] + s[1] * p->d[2] + s[2] * p->d[3];
    if (v == p->target) memcpy(correct[n_correct++], s, sizeof s);
  }
  SRLM_CHECK(n_correct > 0, "puzzle %d%d%d%d T%d has no solution", p->d[0], p->d[1], p->d[2], p->d[3], p->target);
  int sign[3];
  memcpy(sign, correct[(int)(((uint64_t)r.v[0] * (uint32_t)n_correct) >> 32)], sizeof sign);
  srlm_task_cand_kind k = SRLM_TASK_CAND_CORRECT;
  if (perturbed) {
    const double u = srlm_rng_u01d(r.v[1], r.v[2]);
    k = u < 0.6 ? SRLM_TASK_CAND_RANDOM_SIGNS : u < 0.8 ? SRLM_TASK_CAND_SIGN_FLIP : SRLM_TASK_CAND_DIGIT_SWAP;
  }
  const uint32_t bits = r.v[3];
  srlm_task_answer(p, sign, cand);
  switch (k) {
    case SRLM_TASK_CAND_RANDOM_SIGNS:
      for (int j = 0; j < 3; j++) cand[1 + 2 * j] = (bits >> j) & 1u ? '-' : '+';
      break;
    case SRLM_TASK_CAND_SIGN_FLIP: {
      const int j = (int)(((uint64_t)bits * 3u) >> 32);
      cand[1 + 2 * j] = cand[1 + 2 * j] == '+' ? '-' : '+';
      break;
    }
    case SRLM_TASK_CAND_DIGIT_SWAP: {
      /* position from the high bits, a different digit 1..9 from the low bits */
      const int j = (int)(bits >> 30);
      const int other = 1 + (int)((bits & 0xffffu) % 8u); /* 1..8, skipping the digit itself */
      const int d = other >= p->d[j] ? other + 1 : other;
      cand[2 * j] = (char)('0' + d);
      break;
    }
    default:
      break;
  }
  if (kind) *kind = k;
}

void srlm_task_judge_example(uint64_t seed, uint64_t index, srlm_task_puzzle *p,
                             char cand[SRLM_TASK_ANSWER_LEN + 1], srlm_task_cand_kind *kind) {
  srlm_task_puzzle_make(seed, SRLM_TASK_SPLIT_JUDGE, index, p);
  srlm_philox_out r = srlm_rng_bits(seed, SRLM_TASK_RNG_JUDGE, (uint32_t)index, (uint32_t)(index >> 32),
                                    SRLM_TASK_CAND_DRAW);
  make_candidate(p, r, index % 2 == 1, cand, kind);
}

/* Counter word `d` of a meta example's draws: the split in the low byte, the word. */
#define SRLM_TASK_META_CAND_DRAW 0x100u
#define SRLM_TASK_META_JUDGMENT_DRAW 0x200u

void srlm_task_meta_example(uint64_t seed, srlm_task_split split, uint64_t index, srlm_task_puzzle *p,
                            char cand[SRLM_TASK_ANSWER_LEN + 1], char a[SRLM_TASK_JUDGMENT_LEN + 1],
                            char b[SRLM_TASK_JUDGMENT_LEN + 1], char *winner, srlm_task_meta_kind *kind) {
  srlm_task_puzzle_make(seed, split, SRLM_TASK_META_INDEX_BASE + index, p);
  const uint32_t lo = (uint32_t)index, hi = (uint32_t)(index >> 32);
  make_candidate(p, srlm_rng_bits(seed, SRLM_TASK_RNG_META, lo, hi, SRLM_TASK_META_CAND_DRAW | (uint32_t)split),
                 index % 2 == 1, cand, NULL);
  srlm_philox_out r = srlm_rng_bits(seed, SRLM_TASK_RNG_META, lo, hi, SRLM_TASK_META_JUDGMENT_DRAW | (uint32_t)split);
  char good[SRLM_TASK_JUDGMENT_LEN + 1], bad[SRLM_TASK_JUDGMENT_LEN + 1];
  srlm_task_judgment(p, cand, strlen(cand), good);
  memcpy(bad, good, sizeof bad);
  const srlm_task_meta_kind k = (srlm_task_meta_kind)(((uint64_t)r.v[0] * 3u) >> 32);
  if (k != SRLM_TASK_META_RATIONALE) /* the other verdict */
    bad[SRLM_TASK_RATIONALE_LEN] = bad[SRLM_TASK_RATIONALE_LEN] == '5' ? '1' : '5';
  if (k != SRLM_TASK_META_SCORE_FLIP) { /* one partial sum off by 1..9, staying in -99..99 */
    const int g = (int)(((uint64_t)r.v[1] * 3u) >> 32);
    char *s = bad + 3 * g;
    const int v = (s[0] == '-' ? -1 : 1) * ((s[1] - '0') * 10 + (s[2] - '0'));
    const int delta = 1 + (int)(((uint64_t)r.v[2] * 9u) >> 32);
    int w = r.v[3] & 1u ? v + delta : v - delta;
    if (w > 99 || w < -99) w = 2 * v - w; /* the other side */
    char grp[16];
    snprintf(grp, sizeof grp, "%c%02d", w < 0 ? '-' : '+', w < 0 ? -w : w);
    memcpy(s, grp, 3);
  }
  const int first = (r.v[3] >> 1) & 1u;
  memcpy(a, first ? good : bad, SRLM_TASK_JUDGMENT_LEN + 1);
  memcpy(b, first ? bad : good, SRLM_TASK_JUDGMENT_LEN + 1);
  *winner = first ? '1' : '2';
  if (kind) *kind = k;
}

/* ---- a growable text buffer ---- */

typedef struct text_buf {
  char *s;
  size_t n, cap;
} text_buf;

static void buf_add(text_buf *b, const char *fmt, const char *x, const char *y) {
  char line[256];
  int w = y ? snprintf(line, sizeof line, fmt, x, y) : snprintf(line, sizeof line, fmt, x);
  SRLM_CHECK(w > 0 && (size_t)w < sizeof line, "line too long");
  if (b->n + (size_t)w + 1 > b->cap) {
    b->cap = 2 * (b->n + (size_t)w + 1);
    b->s = srlm_xrealloc(b->s, b->cap);
  }
  memcpy(b->s + b->n, line, (size_t)w);
  b->n += (size_t)w;
}

static srlm_status check_count(const char *what, int64_t n) {
  if (n < 0 || n > ((int64_t)1 << 40)) return srlm_error(SRLM_ERR_RANGE, what, "count %lld out of range", (long long)n);
  return SRLM_OK;
}

srlm_status srlm_task_write_sft_data(const char *path, uint64_t seed, int64_t n_instructions, int64_t n_judge,
                                     srlm_task_sft_counts *counts) {
  return srlm_task_write_sft_data_meta(path, seed, n_instructions, n_judge, 0, counts);
}

srlm_status srlm_task_write_sft_data_meta(const char *path, uint64_t seed, int64_t n_instructions, int64_t n_judge,
                                          int64_t n_meta, srlm_task_sft_counts *counts) {
  SRLM_TRY(check_count("instructions", n_instructions));
  SRLM_TRY(check_count("judge examples", n_judge));
  SRLM_TRY(check_count("meta-judge examples", n_meta));
  if (n_instructions + n_judge + n_meta == 0) return srlm_error(SRLM_ERR_RANGE, path, "no examples asked for");
  srlm_task_sft_counts c;
  memset(&c, 0, sizeof c);
  text_buf b = {0};
  for (int64_t i = 0; i < n_instructions; i++) {
    srlm_task_puzzle p;
    srlm_task_puzzle_make(seed, SRLM_TASK_SPLIT_SFT, (uint64_t)i, &p);
    char q[SRLM_TASK_PROMPT_LEN + 1], a[SRLM_TASK_ANSWER_LEN + 1];
    srlm_task_prompt(&p, q);
    srlm_task_answer(&p, p.sign, a);
    buf_add(&b, "{\"prompt\": \"%s\", \"response\": \"%s\"}\n", q, a);
    c.instructions++;
  }
  for (int64_t i = 0; i < n_judge; i++) {
    srlm_task_puzzle p;
    char cand[SRLM_TASK_ANSWER_LEN + 1], jp[SRLM_TASK_JUDGE_PROMPT_MAX + 1], jr[SRLM_TASK_JUDGMENT_LEN + 1];
    srlm_task_cand_kind k;
    srlm_task_judge_example(seed, (uint64_t)i, &p, cand, &k);
    srlm_task_judge_prompt(&p, cand, strlen(cand), jp);
    srlm_task_judgment(&p, cand, strlen(cand), jr);
    buf_add(&b, "{\"prompt\": \"%s\", \"response\": \"%s\"}\n", jp, jr);
    c.judge++;
    c.judge_correct += jr[SRLM_TASK_RATIONALE_LEN] == '5';
    c.kind[k]++;
  }
  for (int64_t i = 0; i < n_meta; i++) {
    srlm_task_puzzle p;
    char cand[SRLM_TASK_ANSWER_LEN + 1], ja[SRLM_TASK_JUDGMENT_LEN + 1], jb[SRLM_TASK_JUDGMENT_LEN + 1];
    char mp[SRLM_TASK_META_PROMPT_MAX + 1], answer[SRLM_TASK_JUDGMENT_LEN + 2] = {0};
    srlm_task_meta_kind k;
    char win;
    srlm_task_meta_example(seed, SRLM_TASK_SPLIT_JUDGE, (uint64_t)i, &p, cand, ja, jb, &win, &k);
    srlm_task_judgment(&p, cand, strlen(cand), answer); /* the meta-judge's own judgment, then the verdict */
    answer[SRLM_TASK_JUDGMENT_LEN] = win;
    SRLM_CHECK(srlm_task_meta_prompt(&p, cand, strlen(cand), ja, strlen(ja), jb, strlen(jb), mp) > 0,
               "meta example %lld: a judgment does not parse", (long long)i);
    buf_add(&b, "{\"prompt\": \"%s\", \"response\": \"%s\"}\n", mp, answer);
    c.meta++;
    c.meta_first += win == '1';
    c.meta_kind[k]++;
  }
  srlm_status st = srlm_write_file_atomic(path, b.s, b.n);
  free(b.s);
  if (st == SRLM_OK && counts) *counts = c;
  return st;
}

srlm_status srlm_task_write_prompts(const char *path, uint64_t seed, srlm_task_split split, int64_t n) {
  SRLM_TRY(check_count("prompts", n));
  if (n == 0) return srlm_error(SRLM_ERR_RANGE, path, "no prompts asked for");
  if ((unsigned)split >= SRLM_TASK_SPLIT_COUNT) return srlm_error(SRLM_ERR_RANGE, path, "unknown split %d", (int)split);
  text_buf b = {0};
  for (int64_t i = 0; i < n; i++) {
    srlm_task_puzzle p;
    srlm_task_puzzle_make(seed, split, (uint64_t)i, &p);
    char q[SRLM_TASK_PROMPT_LEN + 1];
    srlm_task_prompt(&p, q);
    buf_add(&b, "{\"prompt\": \"%s\"}\n", q, NULL);
  }
  srlm_status st = srlm_write_file_atomic(path, b.s, b.n);
  free(b.s);
  return st;
}
