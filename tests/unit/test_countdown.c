/* The Countdown task (include/srlm/countdown.h): checker known answers (valid, subset,
 * reuse, unknown number, division by zero, non-exact division, malformed), the judge's
 * reference rationale and its parser, prompt texts, generator determinism, split
 * membership and solvability (every generated puzzle solved by this test's own brute
 * force over postfix expressions, independent of srlm_cd_solvable), the shown candidate
 * keeping the checker's verdict, the SFT data file, and the task interface (tasks.h's
 * srlm_task_ops) of both built-in tasks on known texts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/countdown.h"
#include "test.h"

static srlm_cd_puzzle puzzle(int n, const int *num, int target) {
  srlm_cd_puzzle p;
  memset(&p, 0, sizeof p);
  p.n = n;
  memcpy(p.num, num, (size_t)n * sizeof *num);
  p.target = target;
  return p;
}

static void test_checker(void) {
  const int a[4] = {3, 7, 25, 4}, b[3] = {3, 3, 7}, c[3] = {2, 3, 10}, d[3] = {2, 8, 7};
  const srlm_cd_puzzle pa = puzzle(4, a, 56), pb = puzzle(3, b, 63), pc = puzzle(3, c, 30), pd = puzzle(3, d, 28);
  struct {
    const srlm_cd_puzzle *p;
    const char *answer;
    srlm_cd_verdict want;
    int64_t value; /* for OK and WRONG_VALUE */
  } cases[] = {
      {&pa, "(25-4)*3-7", SRLM_CD_OK, 56},
      {&pa, "7*4+25+3", SRLM_CD_OK, 56},
      {&pa, "(25-4)*3-7<|endoftext|>", SRLM_CD_OK, 56},
      {&pc, "3*10", SRLM_CD_OK, 30},            /* a subset of the numbers */
      {&pb, "3*3*7", SRLM_CD_OK, 63},           /* 3 is given twice */
      {&pa, "25+4*7", SRLM_CD_WRONG_VALUE, 53}, /* precedence: 25 + 28 */
      {&pa, "(25+4)*7", SRLM_CD_WRONG_VALUE, 203},
      {&pa, "25-4-7-3", SRLM_CD_WRONG_VALUE, 11}, /* left to right */
      {&pa, "3-25", SRLM_CD_WRONG_VALUE, -22},
      {&pa, "25+25+3", SRLM_CD_REUSED_NUMBER, 0},
      {&pb, "3*3*3", SRLM_CD_REUSED_NUMBER, 0},
      {&pa, "5*11+1", SRLM_CD_UNKNOWN_NUMBER, 0},
      {&pa, "25+25+5", SRLM_CD_UNKNOWN_NUMBER, 0}, /* an unknown number wins over a reuse */
      {&pa, "0*3", SRLM_CD_UNKNOWN_NUMBER, 0},
      {&pb, "7/(3-3)", SRLM_CD_DIV_ZERO, 0},
      {&pa, "25/4*3-7", SRLM_CD_INEXACT_DIV, 0},
      {&pa, "7/4*4", SRLM_CD_REUSED_NUMBER, 0}, /* usage is checked before the arithmetic */
      {&pc, "3/2*10", SRLM_CD_INEXACT_DIV, 0},  /* no rationals: 3/2 fails although (3/2)*10 = 15 */
      {&pc, "10/2*3", SRLM_CD_WRONG_VALUE, 15},
      {&pd, "8/2*7", SRLM_CD_OK, 28},           /* an exact division */
      {&pa, "", SRLM_CD_MALFORMED, 0},
      {&pa, "(25-4", SRLM_CD_MALFORMED, 0},
      {&pa, "25-4)", SRLM_CD_MALFORMED, 0},
      {&pa, "25--4", SRLM_CD_MALFORMED, 0},
      {&pa, "-3+7", SRLM_CD_MALFORMED, 0},
      {&pa, "25 + 4", SRLM_CD_MALFORMED, 0},
      {&pa, "025+4", SRLM_CD_MALFORMED, 0},
      {&pa, "3x7", SRLM_CD_MALFORMED, 0},
      {&pa, "()", SRLM_CD_MALFORMED, 0},
      {&pa, "(((((((((((3)))))))))))+7", SRLM_CD_MALFORMED, 0}, /* 26 bytes > SRLM_CD_ANSWER_MAX */
      {&pa, "((((((((((3))))))))))+7", SRLM_CD_WRONG_VALUE, 10}, /* 24 bytes */
      {&pa, "(25-4)*3-7<|endoftext|><|endoftext|>", SRLM_CD_MALFORMED, 0},
      {&pa, "12345678901+3", SRLM_CD_MALFORMED, 0}, /* more than 9 digits */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t v = -999;
    const srlm_cd_verdict got = srlm_cd_check(cases[i].p, cases[i].answer, strlen(cases[i].answer), &v);
    EXPECT(got == cases[i].want, "'%s': %s, expected %s", cases[i].answer, srlm_cd_verdict_name(got),
           srlm_cd_verdict_name(cases[i].want));
    if (got == cases[i].want && (got == SRLM_CD_OK || got == SRLM_CD_WRONG_VALUE))
      EXPECT(v == cases[i].value, "'%s': value %lld, expected %lld", cases[i].answer, (long long)v,
             (long long)cases[i].value);
  }
  /* bytes with NULs, NULL */
  EXPECT(srlm_cd_check(&pa, "3\0" "7", 3, NULL) == SRLM_CD_MALFORMED, "a NUL inside accepted");
  EXPECT(srlm_cd_check(&pa, NULL, 0, NULL) == SRLM_CD_MALFORMED, "NULL accepted");
}

static void test_judgment(void) {
  const int a[4] = {3, 7, 25, 4}, b[3] = {3, 3, 7}, c[2] = {25, 9};
  const srlm_cd_puzzle pa = puzzle(4, a, 56), pb = puzzle(3, b, 63), pc = puzzle(2, c, 25);
  struct {
    const srlm_cd_puzzle *p;
    const char *cand, *want;
  } cases[] = {
      {&pa, "(25-4)*3-7", "25-4=21,21*3=63,63-7=56;5"},
      {&pa, "25+4*7", "4*7=28,25+28=53;1"},
      {&pa, "3-25", "3-25=-22;1"},
      {&pa, "25/4*3-7", "25/4=X;1"},
      {&pb, "7/(3-3)", "3-3=0,7/0=X;1"},
      {&pa, "25+25", "N;1"},
      {&pa, "5+3", "N;1"},
      {&pa, "(25-4", "X;1"},
      {&pc, "25", "25;5"},
      {&pc, "9", "9;1"},
      {&pa, "(25-4)*3-7<|endoftext|>", "25-4=21,21*3=63,63-7=56;5"},
      {&pa, "25\xff\xfe-4", "X;1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[SRLM_CD_JUDGMENT_MAX + 1];
    const size_t n = srlm_cd_judgment(cases[i].p, cases[i].cand, strlen(cases[i].cand), out);
    EXPECT(n == strlen(out) && !strcmp(out, cases[i].want), "judgment of '%s': '%s', expected '%s'", cases[i].cand,
           out, cases[i].want);
    int score = 0;
    EXPECT(srlm_cd_judgment_parse(out, n, &score) && score == out[n - 1] - '0', "'%s' does not parse", out);
  }
  char jp[SRLM_CD_JUDGE_PROMPT_MAX + 1];
  srlm_cd_judge_prompt(&pa, "(25-4)*3-7", 10, jp);
  EXPECT(!strcmp(jp, "C3,7,25,4T56A(25-4)*3-7S"), "judge prompt '%s'", jp);
  srlm_cd_judge_prompt(&pa, "2\n\n5+x<|endoftext|>", 19, jp);
  EXPECT(!strcmp(jp, "C3,7,25,4T56A2?5+?S"), "judge prompt of junk '%s'", jp);
  struct {
    const char *text;
    int ok, score;
  } parses[] = {{"X;1", 1, 1}, {"25-4=21;5", 1, 5}, {";5", 0, 0}, {"25;6", 0, 0}, {"25;0", 0, 0}, {"255", 0, 0},
                {"", 0, 0},    {"25;5x", 0, 0}};
  for (size_t i = 0; i < sizeof parses / sizeof parses[0]; i++) {
    int s = -1;
    const int ok = srlm_cd_judgment_parse(parses[i].text, strlen(parses[i].text), &s);
    EXPECT(ok == parses[i].ok && (!ok || s == parses[i].score), "parse '%s': %d score %d, expected %d %d",
           parses[i].text, ok, s, parses[i].ok, parses[i].score);
  }
}

/* This test's own solver: every postfix expression over distinct indices of the numbers,
 * exact integer division. */
static int rpn_solve(const srlm_cd_puzzle *p, int64_t *stack, int depth, unsigned used, int target) {
  if (depth == 1 && stack[0] == target) return 1;
  for (int k = 0; k < p->n; k++) { /* push an unused number */
    if (used & (1u << k)) continue;
    stack[depth] = p->num[k];
    if (rpn_solve(p, stack, depth + 1, used | (1u << k), target)) return 1;
  }
  if (depth >= 2) { /* or apply an operator to the top two */
    const int64_t x = stack[depth - 2], y = stack[depth - 1];
    for (int o = 0; o < 4; o++) {
      int64_t r;
      if (o == 0) r = x + y;
      else if (o == 1) r = x - y;
      else if (o == 2) r = x * y;
      else if (y != 0 && x % y == 0) r = x / y;
      else continue;
      stack[depth - 2] = r;
      if (rpn_solve(p, stack, depth - 1, used, target)) return 1;
      stack[depth - 2] = x;
      stack[depth - 1] = y;
    }
  }
  return 0;
}

static int test_solvable(const srlm_cd_puzzle *p) {
  int64_t stack[2 * SRLM_CD_MAX_NUMS];
  return rpn_solve(p, stack, 0, 0, p->target);
}

static void test_generator(void) {
  const uint64_t seed = 1234;
  int bad_solution = 0, unsolvable = 0, bad_split = 0, bad_range = 0, bad_prompt = 0, differ = 0, n3 = 0;
  int64_t held = 0;
  const int N = 400;
  for (int s = 0; s < SRLM_TASK_SPLIT_COUNT; s++)
    for (int i = 0; i < N; i++) {
      srlm_cd_puzzle p, q;
      srlm_cd_puzzle_make(seed, (srlm_task_split)s, (uint64_t)i, &p);
      srlm_cd_puzzle_make(seed, (srlm_task_split)s, (uint64_t)i, &q);
      EXPECT(!memcmp(&p, &q, sizeof p), "split %d puzzle %d: two draws differ", s, i);
      srlm_cd_puzzle o;
      srlm_cd_puzzle_make(seed + 1, (srlm_task_split)s, (uint64_t)i, &o);
      differ += memcmp(&p, &o, sizeof p) != 0;
      n3 += p.n == 3;
      bad_range += p.n < SRLM_CD_MIN_NUMS || p.n > SRLM_CD_MAX_NUMS || p.target < 1 || p.target > SRLM_CD_MAX_TARGET;
      for (int k = 0; k < p.n; k++) bad_range += p.num[k] < 1 || p.num[k] > SRLM_CD_MAX_NUMBER;
      bad_solution += srlm_cd_check(&p, p.solution, strlen(p.solution), NULL) != SRLM_CD_OK;
      unsolvable += !test_solvable(&p) || !srlm_cd_solvable(&p);
      bad_split += srlm_cd_puzzle_held_out(&p) != (s == SRLM_TASK_SPLIT_EVAL);
      held += srlm_cd_puzzle_held_out(&p);
      char text[SRLM_CD_PROMPT_MAX + 1];
      const size_t len = srlm_cd_prompt(&p, text);
      srlm_cd_puzzle r;
      bad_prompt += srlm_cd_prompt_parse(text, len, &r) != SRLM_OK || r.n != p.n || r.target != p.target ||
                    memcmp(r.num, p.num, sizeof r.num) != 0 || srlm_cd_puzzle_held_out(&r) != srlm_cd_puzzle_held_out(&p);
    }
  EXPECT(bad_solution == 0, "%d generated solutions are not accepted by the checker", bad_solution);
  EXPECT(unsolvable == 0, "%d generated puzzles have no solution by brute force", unsolvable);
  EXPECT(bad_split == 0, "%d puzzles in the wrong split (held out: eval only)", bad_split);
  EXPECT(bad_range == 0 && bad_prompt == 0, "%d out of range, %d prompts that do not round-trip", bad_range, bad_prompt);
  EXPECT(differ > 4 * N * 9 / 10, "another seed changed only %d of %d puzzles", differ, 4 * N);
  EXPECT(n3 > N && n3 < 3 * N, "%d of %d puzzles have 3 numbers", n3, 4 * N);
  fprintf(stderr, "generator: %d puzzles, all solvable and in their split; %d with 3 numbers\n", 4 * N, n3);
  /* the held-out set is about 1/8 of the puzzle space: count it over fixed puzzles */
  int64_t in = 0, total = 0;
  for (int x = 1; x <= 25; x += 2)
    for (int y = 1; y <= 25; y += 3)
      for (int t = 1; t <= 200; t += 7) {
        const int nums[3] = {x, y, 5};
        const srlm_cd_puzzle p = puzzle(3, nums, t);
        in += srlm_cd_puzzle_held_out(&p);
        total++;
      }
  EXPECT(in * 8 > total * 6 / 10 && in * 8 < total * 14 / 10, "held-out share %lld of %lld, expected about 1/8",
         (long long)in, (long long)total);
  /* order does not matter: a multiset */
  const int u[4] = {3, 7, 25, 4}, v[4] = {25, 4, 7, 3};
  const srlm_cd_puzzle pu = puzzle(4, u, 56), pv = puzzle(4, v, 56);
  EXPECT(srlm_cd_puzzle_held_out(&pu) == srlm_cd_puzzle_held_out(&pv), "held-out membership depends on the order");
  /* solver known answers */
  const int ones[3] = {1, 1, 1}, w[4] = {2, 3, 5, 7};
  const srlm_cd_puzzle no = puzzle(3, ones, 999), yes = puzzle(4, w, 3 * 5 * 7 + 2), none = puzzle(4, w, 211);
  EXPECT(!srlm_cd_solvable(&no) && !test_solvable(&no), "1,1,1 -> 999 solved");
  EXPECT(srlm_cd_solvable(&yes) && test_solvable(&yes), "2,3,5,7 -> 107 not solved");
  EXPECT(srlm_cd_solvable(&none) == test_solvable(&none), "the solvers disagree on 2,3,5,7 -> 211");
  (void)held;
}

static void test_prompt_errors(void) {
  srlm_cd_puzzle p;
  const char *bad[] = {"", "C3,7T5", "C3,7,T5A", "C03,7T5A", "C3,7,1,2,5T9A", "C3;7T5A", "C3,7T1000A", "X3,7T5A",
                       "C3,7TA", "C1234,5T6A"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    EXPECT(srlm_cd_prompt_parse(bad[i], strlen(bad[i]), &p) == SRLM_ERR_FORMAT, "'%s' parsed", bad[i]);
  EXPECT(srlm_cd_prompt_parse("C3,7,25,4T56A", 13, &p) == SRLM_OK && p.n == 4 && p.num[2] == 25 && p.target == 56,
         "C3,7,25,4T56A: %s", srlm_error_message());
}

/* The shown candidate keeps the checker's verdict (right or not) under random junk. */
static void test_shown_candidate(void) {
  uint32_t s = 99;
  int mismatch = 0, right = 0;
  const char junk[] = "\xff\n ab?=<|endoftext|>Q";
  for (int i = 0; i < 3000; i++) {
    srlm_cd_puzzle p;
    srlm_cd_puzzle_make(7, SRLM_TASK_SPLIT_TRAIN, (uint64_t)i, &p);
    char cand[64];
    size_t n = strlen(p.solution);
    memcpy(cand, p.solution, n);
    s = s * 1664525u + 1013904223u;
    if (s >> 30 != 0) { /* 3 in 4: insert junk or pad */
      const size_t at = (s >> 8) % (n + 1), k = 1 + (s >> 16) % 6;
      memmove(cand + at + k, cand + at, n - at);
      for (size_t q = 0; q < k; q++) cand[at + q] = (s >> 20) & 1 ? junk[(q + (s >> 4)) % (sizeof junk - 1)] : '(';
      n += k;
    }
    char shown[SRLM_CD_ANSWER_MAX + 2];
    const size_t sl = srlm_cd_judge_candidate(cand, n, shown);
    const int a = srlm_cd_check(&p, cand, n, NULL) == SRLM_CD_OK, b = srlm_cd_check(&p, shown, sl, NULL) == SRLM_CD_OK;
    mismatch += a != b;
    right += a;
  }
  EXPECT(mismatch == 0, "%d shown candidates changed the checker's verdict", mismatch);
  EXPECT(right > 500, "only %d of the candidates were right", right);
}

static void test_sft_data(void) {
  const char *tmp = getenv("SRLM_TMP");
  char path[1024];
  snprintf(path, sizeof path, "%s/countdown_sft.jsonl", tmp ? tmp : "/tmp");
  srlm_cd_sft_counts c;
  EXPECT(srlm_cd_write_sft_data(path, 5, 50, 400, &c) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(c.instructions == 50 && c.judge == 400 && c.kind[SRLM_CD_CAND_SOLUTION] == 200, "counts %lld %lld %lld",
         (long long)c.instructions, (long long)c.judge, (long long)c.kind[SRLM_CD_CAND_SOLUTION]);
  for (int k = 1; k < SRLM_CD_CAND_KIND_COUNT; k++) EXPECT(c.kind[k] > 10, "kind %d: %lld examples", k, (long long)c.kind[k]);
  EXPECT(c.judge_correct >= 200 && c.judge_correct < 300, "%lld judge examples right", (long long)c.judge_correct);
  FILE *f = fopen(path, "r");
  EXPECT(f != NULL, "cannot read %s", path);
  char line[512];
  int lines = 0, bad = 0;
  while (f && fgets(line, sizeof line, f)) {
    lines++;
    bad += strncmp(line, "{\"prompt\": \"", 12) != 0 || !strstr(line, "\", \"response\": \"");
  }
  if (f) fclose(f);
  EXPECT(lines == 450 && bad == 0, "%d lines, %d malformed", lines, bad);
  /* every judge example's reference verdict is the checker's */
  int disagree = 0;
  for (uint64_t i = 0; i < 400; i++) {
    srlm_cd_puzzle p;
    char cand[SRLM_CD_ANSWER_MAX + 1], jr[SRLM_CD_JUDGMENT_MAX + 1];
    srlm_cd_cand_kind k;
    srlm_cd_judge_example(5, i, &p, cand, &k);
    const size_t n = srlm_cd_judgment(&p, cand, strlen(cand), jr);
    const srlm_cd_verdict v = srlm_cd_check(&p, cand, strlen(cand), NULL);
    disagree += (jr[n - 1] == '5') != (v == SRLM_CD_OK);
    if (k == SRLM_CD_CAND_UNKNOWN) disagree += v != SRLM_CD_UNKNOWN_NUMBER;
    if (k == SRLM_CD_CAND_REUSE) disagree += v != SRLM_CD_REUSED_NUMBER;
    if (k == SRLM_CD_CAND_SOLUTION) disagree += v != SRLM_CD_OK;
  }
  EXPECT(disagree == 0, "%d judge examples disagree with the checker or their kind", disagree);
  EXPECT(srlm_cd_write_prompts(path, 5, SRLM_TASK_SPLIT_EVAL, 0) == SRLM_ERR_RANGE, "0 prompts accepted");
  EXPECT(srlm_cd_write_sft_data(path, 5, 0, 0, NULL) == SRLM_ERR_RANGE, "no examples accepted");
}

/* The task interface: each task found by its config name, its prompts the generator's,
 * its checker, judge prompt and judgment parser the task's own on known texts. */
static void test_task_ops(void) {
  const srlm_task_ops *cd = srlm_task_find("countdown"), *sg = srlm_task_find("sign_puzzle");
  EXPECT(cd == &srlm_cd_task_ops && sg == &srlm_task_sign_ops, "srlm_task_find");
  EXPECT(srlm_task_find("none") == NULL && srlm_task_find(NULL) == NULL, "srlm_task_find of no task");
  char t[SRLM_TASK_TEXT_MAX + 1], want[SRLM_TASK_TEXT_MAX + 1];
  for (uint64_t i = 0; i < 50; i++) {
    srlm_cd_puzzle p;
    srlm_cd_puzzle_make(9, SRLM_TASK_SPLIT_EVAL, i, &p);
    const size_t n = cd->prompt(9, SRLM_TASK_SPLIT_EVAL, i, t);
    srlm_cd_prompt(&p, want);
    EXPECT(n == strlen(want) && !strcmp(t, want), "countdown prompt %llu: %s, want %s", (unsigned long long)i, t, want);
    EXPECT(cd->check(t, p.solution, strlen(p.solution)) == 1, "countdown: the solution %s of %s", p.solution, t);
    srlm_task_puzzle q;
    srlm_task_puzzle_make(9, SRLM_TASK_SPLIT_TRAIN, i, &q);
    sg->prompt(9, SRLM_TASK_SPLIT_TRAIN, i, t);
    srlm_task_prompt(&q, want);
    EXPECT_STR_EQ(t, want);
    char ans[SRLM_TASK_ANSWER_LEN + 1];
    srlm_task_answer(&q, q.sign, ans);
    EXPECT(sg->check(t, ans, strlen(ans)) == 1, "sign puzzle: the drawn answer %s of %s", ans, t);
    /* references: Countdown's the generator's solution, the sign puzzle's every correct answer */
    char refs[SRLM_TASK_MAX_REFS][SRLM_TASK_TEXT_MAX + 1], sol[8][SRLM_TASK_ANSWER_LEN + 1];
    EXPECT(cd->references(9, SRLM_TASK_SPLIT_EVAL, i, refs) == 1 && !strcmp(refs[0], p.solution),
           "countdown references of %s: %s, want %s", want, refs[0], p.solution);
    const int nr = sg->references(9, SRLM_TASK_SPLIT_TRAIN, i, refs), ns = srlm_task_solutions(&q, sol);
    EXPECT(nr == ns && nr == srlm_task_count_solutions(&q) && nr >= 1, "sign references: %d, %d solutions", nr, ns);
    for (int k = 0; k < nr && k < ns; k++) {
      EXPECT_STR_EQ(refs[k], sol[k]);
      EXPECT(sg->check(t, refs[k], strlen(refs[k])) == 1, "sign reference %s of %s", refs[k], t);
    }
  }
  EXPECT(cd->check("C3,7,25,4T56A", "(25-4)*3-7", 10) == 1, "countdown check: right");
  EXPECT(cd->check("C3,7,25,4T56A", "25+25+6", 7) == 0, "countdown check: unknown number");
  EXPECT(cd->check("Q6371T+15A", "6+3+7-1", 7) == 0, "countdown check of a sign-puzzle prompt");
  EXPECT(sg->check("Q6371T+15A", "6+3+7-1", 7) == 1 && sg->check("Q6371T+15A", "6+3-7-1", 7) == 0, "sign check");
  EXPECT(sg->check("C3,7,25,4T56A", "6+3+7-1", 7) == 0, "sign check of a countdown prompt");
  EXPECT(cd->judge_prompt("C3,7,25,4T56A", "(25-4)*3-7", 10, t) == 24, "countdown judge prompt length");
  EXPECT_STR_EQ(t, "C3,7,25,4T56A(25-4)*3-7S");
  EXPECT(sg->judge_prompt("Q6371T+15A", "6+3+7-1", 7, t) == 18, "sign judge prompt length");
  EXPECT_STR_EQ(t, "J6371T+15A6+3+7-1S");
  EXPECT(cd->judge_prompt("nope", "1", 1, t) == 0 && t[0] == '\0', "a judge prompt of no puzzle");
  int score = 0;
  EXPECT(cd->judgment_parse("25-4=21,21*3=63,63-7=56;5", 25, &score) == 1 && score == 5, "countdown judgment");
  EXPECT(cd->judgment_ok("25-4=21;", 8) == 0 && cd->judgment_ok("+09+16+155", 10) == 0, "countdown: no score");
  EXPECT(sg->judgment_parse("+09+16+155", 10, &score) == 1 && score == 5, "sign judgment");
  EXPECT(sg->judgment_ok("25-4=21;5", 9) == 0, "sign: a countdown judgment");
  char key[SRLM_TASK_ANSWER_KEY_MAX];
  EXPECT(cd->answer_key("C3,7,25,4T56A", "(25-4)*3-7", 10, key) == 1 && !strcmp(key, "56"), "countdown key: %s", key);
  EXPECT(cd->answer_key("C3,7,25,4T56A", "3+7", 3, key) == 1 && !strcmp(key, "10"), "countdown key of a wrong value");
  EXPECT(cd->answer_key("C3,7,25,4T56A", "25+25", 5, key) == 0 && cd->answer_key("C3,7,25,4T56A", "3+", 2, key) == 0,
         "countdown: reused number or malformed: no key");
  EXPECT(sg->answer_key("Q6371T+15A", "6+3+7-1", 7, key) == 1 && !strcmp(key, "6+3+7-1"), "sign key: %s", key);
  EXPECT(sg->answer_key("Q6371T+15A", "6+3+7-1<|endoftext|>", 20, key) == 1 && !strcmp(key, "6+3+7-1"),
         "sign key with the EOS text: %s", key);
  EXPECT(sg->answer_key("Q6371T+15A", "6+3+7", 5, key) == 0 && sg->answer_key("Q6371T+15A", "6*3+7-1", 7, key) == 0,
         "sign: no key without the answer's form");
  EXPECT(cd->answer_max_new == SRLM_CD_ANSWER_MAX + 2 && sg->answer_max_new == SRLM_TASK_ANSWER_LEN + 5,
         "answer lengths");
}

int main(void) {
  test_checker();
  test_judgment();
  test_generator();
  test_prompt_errors();
  test_shown_candidate();
  test_sft_data();
  test_task_ops();
  TEST_MAIN_END();
}
