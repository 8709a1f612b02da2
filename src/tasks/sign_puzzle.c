/* The sign puzzle (include/srlm/tasks.h): generator, texts, checker and judge format.
 * Pure functions of their inputs; no allocation. */
#include <string.h>

#include "srlm/tasks.h"

static const char *const k_split_names[SRLM_TASK_SPLIT_COUNT] = {"train", "eval", "sft", "judge"};
static const uint32_t k_split_purpose[SRLM_TASK_SPLIT_COUNT] = {SRLM_TASK_RNG_TRAIN, SRLM_TASK_RNG_EVAL,
                                                                SRLM_TASK_RNG_SFT, SRLM_TASK_RNG_JUDGE};

/* The held-out hash's key: fixed, so membership is a property of the puzzle itself and
 * holds across seeds. 1 in SRLM_HOLDOUT_BUCKETS hash values is held out. */
#define SRLM_HOLDOUT_KEY 0x5167a11e0dd5eedULL
#define SRLM_HOLDOUT_BUCKETS 8u

const char *srlm_task_split_name(srlm_task_split s) {
  return (unsigned)s < SRLM_TASK_SPLIT_COUNT ? k_split_names[s] : "?";
}

srlm_status srlm_task_split_parse(const char *name, srlm_task_split *out) {
  for (int i = 0; i < SRLM_TASK_SPLIT_COUNT; i++)
    if (name && !strcmp(name, k_split_names[i])) {
      *out = (srlm_task_split)i;
      return SRLM_OK;
    }
  return srlm_error(SRLM_ERR_USAGE, "split", "unknown split '%s' (train, eval, sft or judge)", name ? name : "");
}

/* A uniform integer in [0, n) from 32 random bits (multiply-shift; bias < n / 2^32). */
static int uniform_int(uint32_t bits, uint32_t n) { return (int)(((uint64_t)bits * n) >> 32); }

static int value_of(const int d[4], const int sign[3]) {
  int v = d[0];
  for (int k = 0; k < 3; k++) v += sign[k] * d[k + 1];
  return v;
}

int srlm_task_puzzle_held_out(const srlm_task_puzzle *p) {
  uint32_t code = 0;
  for (int k = 0; k < 4; k++) code = code * 10u + (uint32_t)p->d[k];
  srlm_philox_out r = srlm_rng_bits(SRLM_HOLDOUT_KEY, SRLM_TASK_RNG_HOLDOUT, code, (uint32_t)(p->target + 128), 0);
  return r.v[0] % SRLM_HOLDOUT_BUCKETS == 0;
}

void srlm_task_puzzle_make(uint64_t seed, srlm_task_split split, uint64_t index, srlm_task_puzzle *p) {
  const uint32_t purpose = k_split_purpose[(unsigned)split < SRLM_TASK_SPLIT_COUNT ? split : 0];
  const int want_held_out = split == SRLM_TASK_SPLIT_EVAL;
  /* rejection sampling: attempt a draws from counter (purpose, index, a); about 8 attempts
   * for the eval split, 8/7 for the others */
  for (uint32_t a = 0;; a++) {
    srlm_philox_out r = srlm_rng_bits(seed, purpose, (uint32_t)index, (uint32_t)(index >> 32), a);
    for (int k = 0; k < 4; k++) p->d[k] = 1 + uniform_int(r.v[k], 9);
    srlm_philox_out s = srlm_rng_bits(seed, purpose, (uint32_t)index, (uint32_t)(index >> 32), a | 0x80000000u);
    for (int k = 0; k < 3; k++) p->sign[k] = (s.v[0] >> k) & 1u ? -1 : 1;
    p->target = value_of(p->d, p->sign);
    if (srlm_task_puzzle_held_out(p) == want_held_out) return;
  }
}

/* ---- texts and the checker ---------------------------------------------------------------- */

static void write_target(int t, char *out) {
  int a = t < 0 ? -t : t;
  out[0] = t < 0 ? '-' : '+';
  out[1] = (char)('0' + (a / 10) % 10);
  out[2] = (char)('0' + a % 10);
}

void srlm_task_prompt(const srlm_task_puzzle *p, char out[SRLM_TASK_PROMPT_LEN + 1]) {
  out[0] = 'Q';
  for (int k = 0; k < 4; k++) out[1 + k] = (char)('0' + p->d[k]);
  out[5] = 'T';
  write_target(p->target, out + 6);
  out[9] = 'A';
  out[10] = '\0';
}

void srlm_task_answer(const srlm_task_puzzle *p, const int sign[3], char out[SRLM_TASK_ANSWER_LEN + 1]) {
  out[0] = (char)('0' + p->d[0]);
  for (int k = 0; k < 3; k++) {
    out[1 + 2 * k] = sign[k] < 0 ? '-' : '+';
    out[2 + 2 * k] = (char)('0' + p->d[k + 1]);
  }
  out[7] = '\0';
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_sign(char c) { return c == '+' || c == '-'; }

int srlm_task_count_solutions(const srlm_task_puzzle *p) {
  int n = 0;
  for (int m = 0; m < 8; m++) {
    const int s[3] = {m & 4 ? -1 : 1, m & 2 ? -1 : 1, m & 1 ? -1 : 1};
    n += value_of(p->d, s) == p->target;
  }
  return n;
}

srlm_status srlm_task_prompt_parse(const char *text, size_t len, srlm_task_puzzle *p) {
  const char *where = "sign puzzle prompt";
  if (!text || len != SRLM_TASK_PROMPT_LEN)
    return srlm_error(SRLM_ERR_FORMAT, where, "expected %d characters like Q6371T+15A, got %zu",
                      SRLM_TASK_PROMPT_LEN, text ? len : 0);
  if (text[0] != 'Q' || text[5] != 'T' || text[9] != 'A')
    return srlm_error(SRLM_ERR_FORMAT, where, "expected the form Q<4 digits>T<sign><2 digits>A like Q6371T+15A");
  for (int k = 0; k < 4; k++)
    if (!is_digit(text[1 + k])) return srlm_error(SRLM_ERR_FORMAT, where, "character %d is not a digit", 2 + k);
  if (!is_sign(text[6]) || !is_digit(text[7]) || !is_digit(text[8]))
    return srlm_error(SRLM_ERR_FORMAT, where, "the target must be a sign and two digits like +15");
  for (int k = 0; k < 4; k++) p->d[k] = text[1 + k] - '0';
  p->target = (text[7] - '0') * 10 + (text[8] - '0');
  if (text[6] == '-') p->target = -p->target;
  for (int k = 0; k < 3; k++) p->sign[k] = 1;
  for (int m = 0; m < 8; m++) {
    const int s[3] = {m & 4 ? -1 : 1, m & 2 ? -1 : 1, m & 1 ? -1 : 1};
    if (value_of(p->d, s) == p->target) {
      memcpy(p->sign, s, sizeof s);
      break;
    }
  }
  return SRLM_OK;
}

/* len without one trailing EOS written as text */
static size_t strip_eos(const char *s, size_t len) {
  const size_t n = sizeof SRLM_TASK_EOS_TEXT - 1;
  if (len >= n && memcmp(s + len - n, SRLM_TASK_EOS_TEXT, n) == 0) return len - n;
  return len;
}

int srlm_task_check(const srlm_task_puzzle *p, const char *answer, size_t len) {
  if (!p || !answer) return 0;
  len = strip_eos(answer, len);
  if (len != SRLM_TASK_ANSWER_LEN) return 0;
  for (int k = 0; k < 4; k++)
    if (answer[2 * k] != (char)('0' + p->d[k])) return 0;
  int v = p->d[0];
  for (int k = 0; k < 3; k++) {
    const char s = answer[1 + 2 * k];
    if (!is_sign(s)) return 0;
    v += s == '+' ? p->d[k + 1] : -p->d[k + 1];
  }
  return v == p->target;
}

/* ---- judge format ------------------------------------------------------------------------- */

static int in_vocab(char c) { return is_digit(c) || is_sign(c) || (c && strchr("QTAJS", c) != NULL); }

size_t srlm_task_judge_candidate(const char *cand, size_t len, char out[SRLM_TASK_JUDGE_MAX_CAND + 1]) {
  size_t n = 0;
  if (cand) {
    len = strip_eos(cand, len);
    int foreign = 0;
    for (size_t i = 0; i < len && n < SRLM_TASK_JUDGE_MAX_CAND; i++) {
      if (in_vocab(cand[i])) {
        out[n++] = cand[i];
        foreign = 0;
      } else if (!foreign) {
        out[n++] = 'Q';
        foreign = 1;
      }
    }
  }
  out[n] = '\0';
  return n;
}

size_t srlm_task_judge_prompt(const srlm_task_puzzle *p, const char *cand, size_t len,
                              char out[SRLM_TASK_JUDGE_PROMPT_MAX + 1]) {
  char q[SRLM_TASK_PROMPT_LEN + 1];
  srlm_task_prompt(p, q);
  /* "J" + the prompt's digits, T and target + "A" */
  memcpy(out, q, SRLM_TASK_PROMPT_LEN);
  out[0] = 'J';
  size_t n = SRLM_TASK_PROMPT_LEN;
  n += srlm_task_judge_candidate(cand, len, out + n);
  out[n++] = 'S';
  out[n] = '\0';
  return n;
}

void srlm_task_rationale(const char *cand, size_t len, char out[SRLM_TASK_RATIONALE_LEN + 1]) {
  char c[SRLM_TASK_JUDGE_MAX_CAND + 1];
  const size_t n = srlm_task_judge_candidate(cand, len, c);
  int sum = 0;
  size_t pos = 0;
  if (n > 0 && is_digit(c[0])) {
    sum = c[0] - '0';
    pos = 1;
  }
  for (int k = 0; k < 3; k++) {
    if (pos > 0 && pos + 1 < n && is_sign(c[pos]) && is_digit(c[pos + 1])) {
      sum += c[pos] == '+' ? c[pos + 1] - '0' : -(c[pos + 1] - '0');
      pos += 2;
    } else {
      pos = 0; /* the well-formed prefix ended: later steps repeat the sum */
    }
    write_target(sum, out + 3 * k);
  }
  out[SRLM_TASK_RATIONALE_LEN] = '\0';
}

void srlm_task_judgment(const srlm_task_puzzle *p, const char *cand, size_t len,
                        char out[SRLM_TASK_JUDGMENT_LEN + 1]) {
  srlm_task_rationale(cand, len, out);
  out[SRLM_TASK_RATIONALE_LEN] = srlm_task_check(p, cand, len) ? '5' : '1';
  out[SRLM_TASK_JUDGMENT_LEN] = '\0';
}

int srlm_task_judgment_parse(const char *text, size_t len, int *score) {
  if (!text || len < SRLM_TASK_JUDGMENT_LEN) return 0;
  for (int g = 0; g < 3; g++)
    if (!is_sign(text[3 * g]) || !is_digit(text[3 * g + 1]) || !is_digit(text[3 * g + 2])) return 0;
  const char s = text[SRLM_TASK_RATIONALE_LEN];
  if (s < '1' || s > '5') return 0;
  if (score) *score = s - '0';
  return 1;
}

int srlm_task_solutions(const srlm_task_puzzle *p, char out[8][SRLM_TASK_ANSWER_LEN + 1]) {
  int n = 0;
  for (int mask = 0; mask < 8; mask++) {
    const int sign[3] = {mask & 4 ? -1 : 1, mask & 2 ? -1 : 1, mask & 1 ? -1 : 1};
    srlm_task_answer(p, sign, out[n]);
    n += srlm_task_check(p, out[n], strlen(out[n]));
  }
  return n;
}
