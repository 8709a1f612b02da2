/* Countdown's meta-judge format and its checker-made SFT examples (include/srlm/countdown.h
 * "meta-judge format"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/countdown.h"

size_t srlm_cd_meta_prompt(const srlm_cd_puzzle *p, const char *cand, size_t len, const char *ja, const char *jb,
                           char out[SRLM_CD_META_PROMPT_MAX + 1]) {
  int score;
  if (!ja || !jb) return 0;
  const size_t la = strlen(ja), lb = strlen(jb);
  if (la > SRLM_CD_JUDGMENT_MAX + 1 || lb > SRLM_CD_JUDGMENT_MAX + 1 || !srlm_cd_judgment_parse(ja, la, &score) ||
      !srlm_cd_judgment_parse(jb, lb, &score))
    return 0;
  size_t n = srlm_cd_judge_prompt(p, cand, len, out);
  memcpy(out + n, ja, la);
  n += la;
  out[n++] = 'T';
  memcpy(out + n, jb, lb);
  n += lb;
  out[n++] = 'A';
  out[n] = '\0';
  return n;
}

void srlm_cd_meta_example(uint64_t seed, uint64_t index, srlm_cd_puzzle *p, char cand[SRLM_CD_ANSWER_MAX + 1],
                          char a[SRLM_CD_JUDGMENT_MAX + 2], char b[SRLM_CD_JUDGMENT_MAX + 2], char *winner,
                          srlm_task_meta_kind *kind) {
  srlm_cd_judge_example(seed, SRLM_TASK_META_INDEX_BASE + index, p, cand, NULL);
  srlm_philox_out r = srlm_rng_bits(seed, SRLM_CD_RNG_META, (uint32_t)index, (uint32_t)(index >> 32), 0);
  char good[SRLM_CD_JUDGMENT_MAX + 2], bad[SRLM_CD_JUDGMENT_MAX + 24];
  const size_t gl = srlm_cd_judgment(p, cand, strlen(cand), good);
  srlm_task_meta_kind k = (srlm_task_meta_kind)(((uint64_t)r.v[0] * 3u) >> 32);
  /* the steps' results: the numbers right after each '=' of the rationale */
  int eq[8], n_eq = 0;
  for (size_t i = 0; i + 2 < gl && n_eq < 8; i++)
    if (good[i] == '=' && ((good[i + 1] >= '0' && good[i + 1] <= '9') || (good[i + 1] == '-' && good[i + 2] >= '0' &&
                                                                             good[i + 2] <= '9')))
      eq[n_eq++] = (int)i + 1; /* not "a/b=X", a failing division */
  if (n_eq == 0) k = SRLM_TASK_META_SCORE_FLIP;
  memcpy(bad, good, gl + 1);
  if (k != SRLM_TASK_META_SCORE_FLIP) { /* one result off by 1..9 */
    const int at = eq[((uint64_t)r.v[1] * (uint32_t)n_eq) >> 32];
    int end = at + (good[at] == '-');
    while (good[end] >= '0' && good[end] <= '9') end++;
    const long v = strtol(good + at, NULL, 10);
    const long delta = 1 + (long)(((uint64_t)r.v[2] * 9u) >> 32);
    char num[32];
    const int w = snprintf(num, sizeof num, "%ld", r.v[3] & 1u ? v + delta : v - delta);
    /* good[0..at) + num + good[end..] */
    memcpy(bad + at, num, (size_t)w);
    memcpy(bad + at + w, good + end, gl - (size_t)end + 1);
  }
  const size_t bl = strlen(bad);
  if (k != SRLM_TASK_META_RATIONALE) bad[bl - 1] = bad[bl - 1] == '5' ? '1' : '5';
  /* a perturbed result can be one digit longer than the judgment's bound: then the
     flip alone */
  if (bl > SRLM_CD_JUDGMENT_MAX + 1) {
    memcpy(bad, good, gl + 1);
    bad[gl - 1] = bad[gl - 1] == '5' ? '1' : '5';
    k = SRLM_TASK_META_SCORE_FLIP;
  }
  const int first = (r.v[3] >> 1) & 1u;
  memcpy(a, first ? good : bad, strlen(first ? good : bad) + 1);
  memcpy(b, first ? bad : good, strlen(first ? bad : good) + 1);
  *winner = first ? '1' : '2';
  if (kind) *kind = k;
}
