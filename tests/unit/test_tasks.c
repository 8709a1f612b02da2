/* Sign puzzle tests (include/srlm/tasks.h).
 * Generator: determinism, ranges, rough uniformity, held-out partition (eval prompts
 * never among train/sft/judge prompts; prints the overlap independent draws would have).
 * Checker: a table of correct, wrong and hostile strings, and random byte strings
 * against an independent oracle. Judge format: the RECIPES strings, malformed
 * candidates, the shown candidate keeps the checker's verdict, judgment parsing.
 * Data: sft-data counts, balance, exact lines, determinism, loading by srlm_sft_data_load;
 * prompt files; errors. Model: expected score equals a hand computation from
 * srlm_model_logits (reference, none and greedy rationales; batch = singles); a tiny
 * model SFT-trained here on a few examples reaches accuracy and judge agreement 1.0 on
 * them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/backend.h"
#include "srlm/generate.h"
#include "srlm/sft.h"
#include "srlm/tasks.h"
#include "test.h"

static const char *tiny_dir(void) {
  static char buf[1024];
  const char *src = getenv("SRLM_SOURCE_DIR");
  snprintf(buf, sizeof buf, "%s/configs/tiny", src ? src : ".");
  return buf;
}

static int prompt_code(const srlm_task_puzzle *p) {
  return (((p->d[0] * 10 + p->d[1]) * 10 + p->d[2]) * 10 + p->d[3]) * 128 + (p->target + 64);
}

/* ---- generator ------------------------------------------------------------------------ */

static void test_generator(void) {
  enum { N = 4000 };
  static unsigned char seen_nonheld[10000 * 128];
  memset(seen_nonheld, 0, sizeof seen_nonheld);
  for (int s = 0; s < SRLM_TASK_SPLIT_COUNT; s++) {
    int bad = 0, digit_hist[10] = {0}, sign_minus = 0, same_as_other_seed = 0;
    for (int i = 0; i < N; i++) {
      srlm_task_puzzle a, b, c;
      srlm_task_puzzle_make(11, (srlm_task_split)s, (uint64_t)i, &a);
      srlm_task_puzzle_make(12, (srlm_task_split)s, (uint64_t)(i + 1), &c); /* in between: no state */
      srlm_task_puzzle_make(11, (srlm_task_split)s, (uint64_t)i, &b);
      srlm_task_puzzle_make(12, (srlm_task_split)s, (uint64_t)i, &c);
      if (memcmp(&a, &b, sizeof a)) bad++;
      same_as_other_seed += !memcmp(&a, &c, sizeof a);
      int v = a.d[0];
      for (int k = 0; k < 4; k++) {
        if (a.d[k] < 1 || a.d[k] > 9) bad++;
        else digit_hist[a.d[k]]++;
      }
      for (int k = 0; k < 3; k++) {
        if (a.sign[k] != 1 && a.sign[k] != -1) bad++;
        sign_minus += a.sign[k] < 0;
        v += a.sign[k] * a.d[k + 1];
      }
      if (v != a.target || a.target < -26 || a.target > 36) bad++;
      if (srlm_task_puzzle_held_out(&a) != (s == SRLM_TASK_SPLIT_EVAL)) bad++;
      if (srlm_task_count_solutions(&a) < 1) bad++;
      char q[SRLM_TASK_PROMPT_LEN + 1], ans[SRLM_TASK_ANSWER_LEN + 1];
      srlm_task_prompt(&a, q);
      srlm_task_answer(&a, a.sign, ans);
      srlm_task_puzzle r;
      if (srlm_task_prompt_parse(q, strlen(q), &r) != SRLM_OK || memcmp(r.d, a.d, sizeof r.d) || r.target != a.target)
        bad++;
      if (!srlm_task_check(&a, ans, strlen(ans)) || !srlm_task_check(&r, ans, strlen(ans))) bad++;
      if (s != SRLM_TASK_SPLIT_EVAL) seen_nonheld[prompt_code(&a)] = 1;
    }
    EXPECT(bad == 0, "split %s: %d bad instances (not deterministic, out of range or wrong target)",
           srlm_task_split_name((srlm_task_split)s), bad);
    EXPECT(same_as_other_seed < N / 20, "split %s: %d of %d instances equal across seeds",
           srlm_task_split_name((srlm_task_split)s), same_as_other_seed, N);
    /* 16000 digits over 9 values: each near 1778 (sd about 40) */
    for (int d = 1; d <= 9; d++)
      EXPECT(abs(digit_hist[d] - 4 * N / 9) < 250, "split %s: digit %d drawn %d times of %d",
             srlm_task_split_name((srlm_task_split)s), d, digit_hist[d], 4 * N);
    if (s != SRLM_TASK_SPLIT_EVAL) /* the held-out set takes some sign patterns more than others */
      EXPECT(abs(sign_minus - 3 * N / 2) < 300, "split %s: %d minus signs of %d",
             srlm_task_split_name((srlm_task_split)s), sign_minus, 3 * N);
  }
  /* eval prompts are never training prompts */
  int overlap = 0;
  for (int i = 0; i < 1000; i++) {
    srlm_task_puzzle e;
    srlm_task_puzzle_make(11, SRLM_TASK_SPLIT_EVAL, (uint64_t)i, &e);
    overlap += seen_nonheld[prompt_code(&e)];
  }
  EXPECT_EQ_INT(overlap, 0);

  /* for the record: how much two independent draws (no partition) overlap, and the mass
   * of the held-out set */
  static unsigned char seen[10000 * 128];
  memset(seen, 0, sizeof seen);
  int held = 0, shared = 0;
  for (int i = 0; i < 5000; i++) {
    srlm_philox_out r = srlm_rng_bits(99, 1, (uint32_t)i, 0, 0), s = srlm_rng_bits(99, 2, (uint32_t)i, 0, 0);
    srlm_task_puzzle p;
    for (int k = 0; k < 4; k++) p.d[k] = 1 + (int)(((uint64_t)r.v[k] * 9u) >> 32);
    p.target = p.d[0];
    for (int k = 0; k < 3; k++) p.target += (s.v[0] >> k & 1u ? -1 : 1) * p.d[k + 1];
    held += srlm_task_puzzle_held_out(&p);
    if (i < 4000)
      seen[prompt_code(&p)] = 1;
    else
      shared += seen[prompt_code(&p)];
  }
  fprintf(stderr, "independent draws: %d of 1000 prompts also among 4000 others (%.1f%%); held-out mass %.3f\n",
          shared, shared / 10.0, held / 5000.0);
  EXPECT(held > 5000 / 8 - 150 && held < 5000 / 8 + 150, "held-out mass %d of 5000, expected about 1/8", held);

  srlm_task_split sp;
  EXPECT(srlm_task_split_parse("eval", &sp) == SRLM_OK && sp == SRLM_TASK_SPLIT_EVAL, "split eval");
  EXPECT(srlm_task_split_parse("test", &sp) == SRLM_ERR_USAGE, "unknown split accepted");
  EXPECT_CONTAINS(srlm_error_message(), "unknown split 'test' (train, eval, sft or judge)");
}

/* ---- checker ---------------------------------------------------------------------------- */

typedef struct check_case {
  const char *prompt;
  const char *answer;
  size_t len; /* 0: strlen */
  int want;
} check_case;

static void test_checker(void) {
  static const check_case cases[] = {
      {"Q6371T+15A", "6+3+7-1", 0, 1},
      {"Q6371T+15A", "6+3+7-1<|endoftext|>", 0, 1},
      {"Q6371T+15A", "6+3+7-1<|endoftext|><|endoftext|>", 0, 0},
      {"Q6371T+15A", "6+3+7-1<|endoftext|", 0, 0},
      {"Q6371T+15A", "6+3+7+1", 0, 0},  /* 17 */
      {"Q6371T+15A", "6+3+7-2", 0, 0},  /* other digit */
      {"Q6371T+15A", "6+3+8-2", 0, 0},  /* 15 with other digits */
      {"Q6371T+15A", "3+6+7-1", 0, 0},  /* digits out of order */
      {"Q6371T+15A", "6+3+7-1 ", 0, 0},
      {"Q6371T+15A", " 6+3+7-1", 0, 0},
      {"Q6371T+15A", "6+3+7-1\n", 0, 0},
      {"Q6371T+15A", "6+3+7-", 0, 0},
      {"Q6371T+15A", "6+3+7-1+0", 0, 0},
      {"Q6371T+15A", "6+3+7*1", 0, 0},
      {"Q6371T+15A", "6+3+7--", 0, 0},
      {"Q6371T+15A", "+6+3+71", 0, 0},
      {"Q6371T+15A", "", 0, 0},
      {"Q6371T+15A", "6+3\0+7-1", 8, 0},
      {"Q6371T+15A", "6+3+7-1\0", 8, 0},
      {"Q6371T+15A", "<|endoftext|>", 0, 0},
      {"Q6371T+15A", "6+3+7-1S", 0, 0},
      {"Q6371T+15A", "\xff\xfe+3+7-1", 0, 0},
      {"Q5555T+10A", "5+5+5-5", 0, 1},
      {"Q5555T+10A", "5+5-5+5", 0, 1},
      {"Q5555T+10A", "5-5+5+5", 0, 1},
      {"Q5555T+10A", "5+5+5+5", 0, 0},
      {"Q1999T-26A", "1-9-9-9", 0, 1},
      {"Q1999T-26A", "1-9-9+9", 0, 0},
      {"Q0000T+00A", "0+0-0+0", 0, 1},
      {"Q0000T-00A", "0-0-0-0", 0, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const check_case *c = &cases[i];
    srlm_task_puzzle p;
    srlm_status st = srlm_task_prompt_parse(c->prompt, strlen(c->prompt), &p);
    EXPECT(st == SRLM_OK, "%s: %s", c->prompt, srlm_error_message());
    const size_t len = c->len ? c->len : strlen(c->answer);
    const int got = srlm_task_check(&p, c->answer, len);
    EXPECT(got == c->want, "case %zu: prompt %s answer \"%s\" (%zu bytes): %s, expected %s", i, c->prompt, c->answer,
           len, got ? "correct" : "wrong", c->want ? "correct" : "wrong");
  }
  srlm_task_puzzle p;
  srlm_task_prompt_parse("Q5555T+10A", 10, &p);
  EXPECT_EQ_INT(srlm_task_count_solutions(&p), 3);
  /* every correct answer, in the sign order +++, ++-, ..., --- (the BLEU references) */
  char sols[8][SRLM_TASK_ANSWER_LEN + 1];
  EXPECT_EQ_INT(srlm_task_solutions(&p, sols), 3);
  EXPECT_STR_EQ(sols[0], "5+5+5-5");
  EXPECT_STR_EQ(sols[1], "5+5-5+5");
  EXPECT_STR_EQ(sols[2], "5-5+5+5");
  EXPECT_EQ_INT(srlm_task_check(&p, NULL, 7), 0);
  EXPECT_EQ_INT(srlm_task_check(NULL, "5+5+5-5", 7), 0);

  /* prompt parsing errors */
  static const char *bad_prompts[] = {"Q6371T15A", "Q637T+15A", "X6371T+15A", "Q6371T+1xA", "", "Q6371T+15AA",
                                      "Q63a1T+15A", "Q6371X+15A", "Q6371T*15A", "Q6371T+15B"};
  for (size_t i = 0; i < sizeof bad_prompts / sizeof bad_prompts[0]; i++) {
    srlm_status st = srlm_task_prompt_parse(bad_prompts[i], strlen(bad_prompts[i]), &p);
    EXPECT(st == SRLM_ERR_FORMAT, "bad prompt '%s' accepted", bad_prompts[i]);
    EXPECT_CONTAINS(srlm_error_message(), "sign puzzle prompt: ");
  }
  EXPECT(srlm_task_prompt_parse(NULL, 0, &p) == SRLM_ERR_FORMAT, "NULL prompt accepted");

  /* random strings over a hostile alphabet against an independent oracle; the judge's
   * shown candidate keeps the verdict */
  static const char alphabet[] = "0123456789+-+-QTAJS <|>endoftxpa\xff\n";
  static const char *eos = "<|endoftext|>";
  srlm_task_prompt_parse("Q6371T+15A", 10, &p);
  int mismatches = 0, shown_mismatch = 0, n_correct = 0;
  char buf[64], shown[SRLM_TASK_JUDGE_MAX_CAND + 1];
  for (uint32_t i = 0; i < 200000; i++) {
    srlm_philox_out r = srlm_rng_bits(5, 77, i, 0, 0);
    /* half of them near an answer (7 characters, each right with probability 0.9), so
     * that correct answers occur; the others any length */
    const int near = r.v[2] % 2;
    size_t len = near ? 7 : r.v[0] % 24;
    for (size_t k = 0; k < len; k++) {
      srlm_philox_out c = srlm_rng_bits(5, 78, i, (uint32_t)k, 0);
      if (near && c.v[1] % 10)
        buf[k] = k % 2 ? "+-"[c.v[0] % 2] : "6371"[k / 2];
      else
        buf[k] = alphabet[c.v[0] % (sizeof alphabet - 1)];
    }
    if (r.v[1] % 5 == 0 && len + 13 < sizeof buf) { /* a written-out EOS */
      memcpy(buf + len, eos, 13);
      len += 13;
    }
    size_t core = len >= 13 && !memcmp(buf + len - 13, eos, 13) ? len - 13 : len;
    int want = core == 7 && buf[0] == '6' && buf[2] == '3' && buf[4] == '7' && buf[6] == '1';
    for (int k = 1; want && k < 7; k += 2) want = buf[k] == '+' || buf[k] == '-';
    if (want) want = 6 + (buf[1] == '+' ? 3 : -3) + (buf[3] == '+' ? 7 : -7) + (buf[5] == '+' ? 1 : -1) == 15;
    const int got = srlm_task_check(&p, buf, len);
    mismatches += got != want;
    n_correct += got;
    const size_t sl = srlm_task_judge_candidate(buf, len, shown);
    shown_mismatch += srlm_task_check(&p, shown, sl) != got || sl > SRLM_TASK_JUDGE_MAX_CAND || strlen(shown) != sl;
  }
  fprintf(stderr, "random candidates: %d of 200000 correct\n", n_correct);
  EXPECT(n_correct > 1000, "only %d random candidates correct: the oracle test is too weak", n_correct);
  EXPECT_EQ_INT(mismatches, 0);
  EXPECT_EQ_INT(shown_mismatch, 0);
}

/* ---- judge format ------------------------------------------------------------------------- */

typedef struct judge_case {
  const char *cand;
  const char *prompt; /* judge prompt */
  const char *judgment;
} judge_case;

static void test_judge_format(void) {
  static const judge_case cases[] = {
      {"6+3+7-1", "J6371T+15A6+3+7-1S", "+09+16+155"},
      {"6+3+7-1<|endoftext|>", "J6371T+15A6+3+7-1S", "+09+16+155"},
      {"6+3+7+1", "J6371T+15A6+3+7+1S", "+09+16+171"},
      {"6+3+8-1", "J6371T+15A6+3+8-1S", "+09+17+161"},
      {"6-3-7-1", "J6371T+15A6-3-7-1S", "+03-04-051"},
      {"", "J6371T+15AS", "+00+00+001"},
      {"6+3", "J6371T+15A6+3S", "+09+09+091"},
      {"6", "J6371T+15A6S", "+06+06+061"},
      {"6+3+7-1+5+2", "J6371T+15A6+3+7-1+5S", "+09+16+151"},
      {"6+3<|pad|>7-1", "J6371T+15A6+3Q7-1S", "+09+09+091"},
      {"6+3+7-1<|pad|>", "J6371T+15A6+3+7-1QS", "+09+16+151"},
      {"x6+3+7-1", "J6371T+15AQ6+3+7-1S", "+00+00+001"},
      {"6+3\n+7-1", "J6371T+15A6+3Q+7-1S", "+09+09+091"},
      {"63+7-1", "J6371T+15A63+7-1S", "+06+06+061"},
      {"6+3+7-1<|endoftext|><|endoftext|>", "J6371T+15A6+3+7-1QS", "+09+16+151"},
      {"SSSS", "J6371T+15ASSSSS", "+00+00+001"},
  };
  srlm_task_puzzle p;
  srlm_task_prompt_parse("Q6371T+15A", 10, &p);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char jp[SRLM_TASK_JUDGE_PROMPT_MAX + 1], jr[SRLM_TASK_JUDGMENT_LEN + 1];
    size_t n = srlm_task_judge_prompt(&p, cases[i].cand, strlen(cases[i].cand), jp);
    EXPECT_STR_EQ(jp, cases[i].prompt);
    EXPECT_EQ_INT(n, strlen(cases[i].prompt));
    srlm_task_judgment(&p, cases[i].cand, strlen(cases[i].cand), jr);
    EXPECT_STR_EQ(jr, cases[i].judgment);
  }
  srlm_task_puzzle q;
  srlm_task_prompt_parse("Q1999T-26A", 10, &q);
  char jr[SRLM_TASK_JUDGMENT_LEN + 1];
  srlm_task_judgment(&q, "1-9-9-9", 7, jr);
  EXPECT_STR_EQ(jr, "-08-17-265");
  char rat[SRLM_TASK_RATIONALE_LEN + 1];
  srlm_task_rationale(NULL, 0, rat);
  EXPECT_STR_EQ(rat, "+00+00+00");

  /* parsing judgments */
  static const struct { const char *text; int ok, score; } parse[] = {
      {"+09+16+155", 1, 5},   {"+09+16+151<|endoftext|>", 1, 1}, {"-08-17-263", 1, 3}, {"+09+16+15", 0, 0},
      {"+09+16+156", 0, 0},   {"+09+16+150", 0, 0},              {"+9+16+155x", 0, 0}, {"", 0, 0},
      {"+09+16+1x5", 0, 0},   {"*09+16+155", 0, 0},              {"+09+16+15S", 0, 0}, {"+99-99+995", 1, 5},
  };
  for (size_t i = 0; i < sizeof parse / sizeof parse[0]; i++) {
    int s = -7;
    int ok = srlm_task_judgment_parse(parse[i].text, strlen(parse[i].text), &s);
    EXPECT(ok == parse[i].ok && (!ok || s == parse[i].score), "judgment \"%s\": parsed %d score %d, expected %d %d",
           parse[i].text, ok, s, parse[i].ok, parse[i].score);
  }
  EXPECT_EQ_INT(srlm_task_judgment_parse(NULL, 10, NULL), 0);
}

/* ---- data files ---------------------------------------------------------------------------- */

static char *read_all(const char *path) {
  char *d = NULL;
  size_t n;
  return srlm_read_file(path, &d, &n) == SRLM_OK ? d : NULL;
}

static void test_data(srlm_tokenizer *tok) {
  char path[1024], path2[1024];
  test_tmp_path(path, sizeof path, "sft.jsonl");
  test_tmp_path(path2, sizeof path2, "sft2.jsonl");
  srlm_task_sft_counts c;
  srlm_status st = srlm_task_write_sft_data(path, 7, 200, 400, &c);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  EXPECT_EQ_INT(c.instructions, 200);
  EXPECT_EQ_INT(c.judge, 400);
  EXPECT_EQ_INT(c.kind[SRLM_TASK_CAND_CORRECT], 200);
  EXPECT_EQ_INT(c.kind[0] + c.kind[1] + c.kind[2] + c.kind[3], 400);
  fprintf(stderr, "judge examples: %lld correct, %lld random signs, %lld flipped, %lld digit; %lld scored 5\n",
          (long long)c.kind[0], (long long)c.kind[1], (long long)c.kind[2], (long long)c.kind[3],
          (long long)c.judge_correct);
  EXPECT(c.kind[1] > 90 && c.kind[1] < 150 && c.kind[2] > 20 && c.kind[2] < 65 && c.kind[3] > 20 && c.kind[3] < 65,
         "kinds %lld %lld %lld not near 120/40/40", (long long)c.kind[1], (long long)c.kind[2], (long long)c.kind[3]);
  /* random sign patterns are right about 1/4 of the time (1.6 solutions in 8 on average) */
  EXPECT(c.judge_correct > 200 && c.judge_correct < 200 + c.kind[1] / 2, "%lld judge examples scored 5",
         (long long)c.judge_correct);
  EXPECT(srlm_task_write_sft_data(path2, 7, 200, 400, NULL) == SRLM_OK, "%s", srlm_error_message());
  char *a = read_all(path), *b = read_all(path2);
  EXPECT(a && b && !strcmp(a, b), "same seed, different files");

  /* every line, parsed back */
  int line = 0, bad = 0, fives = 0;
  for (char *s = a; s && *s; line++) {
    char *nl = strchr(s, '\n');
    if (!nl) break;
    *nl = '\0';
    char pr[64], rs[64];
    if (sscanf(s, "{\"prompt\": \"%63[^\"]\", \"response\": \"%63[^\"]\"}", pr, rs) != 2) {
      bad++;
    } else if (line < 200) {
      srlm_task_puzzle p, want;
      srlm_task_puzzle_make(7, SRLM_TASK_SPLIT_SFT, (uint64_t)line, &want);
      if (srlm_task_prompt_parse(pr, strlen(pr), &p) != SRLM_OK || !srlm_task_check(&p, rs, strlen(rs)) ||
          memcmp(p.d, want.d, sizeof p.d) || p.target != want.target)
        bad++;
    } else {
      /* J...A<cand>S -> the puzzle and the candidate; the response is the reference judgment */
      srlm_task_puzzle p;
      char q[16], cand[32], jr[SRLM_TASK_JUDGMENT_LEN + 1];
      memcpy(q, pr, 10);
      q[0] = 'Q';
      size_t cl = strlen(pr) - 11;
      memcpy(cand, pr + 10, cl);
      cand[cl] = '\0';
      if (srlm_task_prompt_parse(q, 10, &p) != SRLM_OK || pr[strlen(pr) - 1] != 'S' || cl != 7) {
        bad++;
      } else {
        srlm_task_judgment(&p, cand, cl, jr);
        if (strcmp(jr, rs)) bad++;
        fives += rs[9] == '5';
        if ((rs[9] == '5') != srlm_task_check(&p, cand, cl)) bad++;
        if (srlm_task_puzzle_held_out(&p)) bad++;
      }
    }
    s = nl + 1;
  }
  EXPECT_EQ_INT(line, 600);
  EXPECT_EQ_INT(bad, 0);
  EXPECT_EQ_INT(fives, c.judge_correct);
  free(a);
  free(b);

  /* what srlm sft reads: 600 examples, every sequence within 31 tokens */
  srlm_sft_data_options o = {.tok = tok, .eos_id = 0, .vocab_size = 19};
  srlm_sft_data d;
  st = srlm_sft_data_load(path, &o, &d);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    EXPECT_EQ_INT(d.n, 600);
    EXPECT_EQ_INT(d.max_seq, 29); /* 18 judge prompt + 10 judgment + EOS */
    EXPECT_EQ_INT(d.n_targets_of[0], 8);
    EXPECT_EQ_INT(d.n_targets_of[200], 11);
    srlm_sft_data_free(&d);
  }

  /* prompts */
  test_tmp_path(path, sizeof path, "eval.jsonl");
  st = srlm_task_write_prompts(path, 3, SRLM_TASK_SPLIT_EVAL, 5);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  char want[512] = "";
  for (int i = 0; i < 5; i++) {
    srlm_task_puzzle p;
    char q[SRLM_TASK_PROMPT_LEN + 1], l[64];
    srlm_task_puzzle_make(3, SRLM_TASK_SPLIT_EVAL, (uint64_t)i, &p);
    srlm_task_prompt(&p, q);
    snprintf(l, sizeof l, "{\"prompt\": \"%s\"}\n", q);
    strcat(want, l);
  }
  a = read_all(path);
  EXPECT_STR_EQ(a, want);
  free(a);

  /* errors */
  EXPECT(srlm_task_write_prompts("/nonexistent-dir/x.jsonl", 3, SRLM_TASK_SPLIT_TRAIN, 5) == SRLM_ERR_IO,
         "writing into a missing folder succeeded");
  EXPECT(srlm_task_write_prompts(path, 3, SRLM_TASK_SPLIT_TRAIN, 0) == SRLM_ERR_RANGE, "0 prompts accepted");
  EXPECT(srlm_task_write_prompts(path, 3, SRLM_TASK_SPLIT_TRAIN, -1) == SRLM_ERR_RANGE, "-1 prompts accepted");
  EXPECT(srlm_task_write_sft_data(path, 3, 0, 0, NULL) == SRLM_ERR_RANGE, "no examples accepted");
}

/* ---- with a model --------------------------------------------------------------------------- */

static srlm_status make_model(int hidden, uint64_t seed, srlm_model **m) {
  srlm_model_config c;
  srlm_model_config_defaults(&c, SRLM_MODEL_LLAMA);
  c.vocab_size = 19;
  c.hidden_size = hidden;
  c.intermediate_size = 2 * hidden;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.max_position_embeddings = 32;
  c.tie_word_embeddings = false;
  SRLM_TRY(srlm_model_config_finalize(&c, "test"));
  return srlm_model_create(&c, seed, srlm_backend_cpu(), SRLM_F32, m);
}

/* expected score over ids 3..7 ('1'..'5') at the last position of text, by hand */
static double hand_expected(srlm_model *m, srlm_tokenizer *tok, const char *text, const int32_t *extra, int n_extra) {
  srlm_token_ids ids = {0};
  srlm_tokenizer_encode(tok, text, strlen(text), &ids);
  for (int i = 0; i < n_extra; i++) srlm_token_ids_push(&ids, extra[i]);
  int32_t cu[2] = {0, (int32_t)ids.n};
  srlm_batch b = {.B = 1, .T = (int64_t)ids.n, .tokens = ids.ids, .cu_seqlens = cu};
  int64_t pos = (int64_t)ids.n - 1;
  float z[19];
  double e = NAN;
  if (srlm_model_logits(m, &b, &pos, 1, z) == SRLM_OK) {
    double num = 0, den = 0;
    for (int k = 1; k <= 5; k++) {
      double w = exp((double)z[2 + k]);
      num += k * w;
      den += w;
    }
    e = num / den;
  }
  srlm_token_ids_free(&ids);
  return e;
}

static void test_expected_mechanics(srlm_tokenizer *tok) {
  srlm_model *m;
  srlm_status st = make_model(32, 9, &m);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  const char *cands[] = {"6+3+7-1", "6+3+7+1", "", "6+3<|pad|>7", "9-9-9-9+9+9"};
  enum { NC = 5 };
  srlm_task_puzzle p[NC];
  for (int i = 0; i < NC; i++) srlm_task_prompt_parse("Q6371T+15A", 10, &p[i]);
  srlm_task_judge_result r[NC];
  /* reference and no rationale */
  for (int mode = SRLM_TASK_RATIONALE_REFERENCE; mode <= SRLM_TASK_RATIONALE_NONE; mode++) {
    st = srlm_task_judge(m, tok, 2, (srlm_task_rationale_mode)mode, NC, p, cands, r);
    EXPECT(st == SRLM_OK, "%s", srlm_error_message());
    for (int i = 0; st == SRLM_OK && i < NC; i++) {
      char text[64], jp[SRLM_TASK_JUDGE_PROMPT_MAX + 1], rat[SRLM_TASK_RATIONALE_LEN + 1];
      srlm_task_judge_prompt(&p[i], cands[i], strlen(cands[i]), jp);
      srlm_task_rationale(cands[i], strlen(cands[i]), rat);
      snprintf(text, sizeof text, "%s%s", jp, mode == SRLM_TASK_RATIONALE_REFERENCE ? rat : "");
      const double want = hand_expected(m, tok, text, NULL, 0);
      EXPECT_NEAR(r[i].expected, want, 1e-5);
      EXPECT(r[i].expected >= 1 && r[i].expected <= 5, "expected score %g", r[i].expected);
      double single;
      st = srlm_task_judge_expected(m, tok, "Q6371T+15A", cands[i], (srlm_task_rationale_mode)mode, &single);
      EXPECT(st == SRLM_OK, "%s", srlm_error_message());
      EXPECT_NEAR(single, r[i].expected, 1e-5);
    }
  }
  /* greedy rationale: the model's own greedy continuation of the judge prompt */
  st = srlm_task_judge(m, tok, 3, SRLM_TASK_RATIONALE_GREEDY, NC, p, cands, r);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  for (int i = 0; st == SRLM_OK && i < NC; i++) {
    char jp[SRLM_TASK_JUDGE_PROMPT_MAX + 1];
    srlm_task_judge_prompt(&p[i], cands[i], strlen(cands[i]), jp);
    srlm_token_ids ids = {0};
    srlm_tokenizer_encode(tok, jp, strlen(jp), &ids);
    srlm_generate_params gp = srlm_generate_params_default();
    gp.sampler.temperature = 0;
    gp.max_new_tokens = 9;
    int32_t eos = 0;
    gp.eos_ids = &eos;
    gp.n_eos = 1;
    gp.tok = tok;
    srlm_gen_request rq = {.prompt = ids.ids, .n_prompt = (int64_t)ids.n, .seq_id = 0};
    srlm_gen_result g;
    if (srlm_generate(m, &gp, 1, &rq, &g, NULL) == SRLM_OK) {
      const int n_rat = (int)(g.stop == SRLM_STOP_EOS ? g.n - 1 : g.n);
      EXPECT_NEAR(r[i].expected, hand_expected(m, tok, jp, g.ids, n_rat), 1e-5);
      EXPECT(!strncmp(r[i].rationale, g.text, 9), "rationale '%s', generated '%s'", r[i].rationale, g.text);
      srlm_gen_result_free(&g);
    }
    srlm_token_ids_free(&ids);
  }
  double s;
  EXPECT(srlm_task_judge_expected(m, tok, "Q6371T+15", "6+3+7-1", SRLM_TASK_RATIONALE_GREEDY, &s) == SRLM_ERR_FORMAT,
         "a malformed prompt accepted");
  srlm_model_free(m);
}

static void test_trained(srlm_tokenizer *tok) {
  /* 8 instructions + 8 judge examples, memorized by a small model */
  char path[1024];
  test_tmp_path(path, sizeof path, "small.jsonl");
  srlm_status st = srlm_task_write_sft_data(path, 21, 8, 8, NULL);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  srlm_sft_data_options dopt = {.tok = tok, .eos_id = 0, .vocab_size = 19};
  srlm_sft_data d;
  if (st == SRLM_OK) st = srlm_sft_data_load(path, &dopt, &d);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  srlm_model *m;
  st = make_model(64, 4, &m);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  srlm_sft_options o = {.batch_size = 16, .grad_accum = 1, .epochs = 150, .seed = 1};
  o.optim = (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.98, .eps = 1e-8, .weight_decay = 0.0, .grad_clip = 1.0};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_COSINE, .lr = 3e-3, .min_lr = 3e-4, .warmup_steps = 10};
  srlm_sft_summary sum;
  srlm_timer t;
  srlm_timer_start(&t);
  if (st == SRLM_OK) st = srlm_sft_train(m, &d, &o, &sum);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  srlm_sft_data_free(&d);
  if (st != SRLM_OK) return;
  fprintf(stderr, "sft on 16 examples: %lld steps, loss %.4f -> %.4f (%.2f s)\n", (long long)sum.steps,
          sum.first_loss, sum.last_loss, srlm_timer_elapsed(&t));

  srlm_task_puzzle p[8], jpz[8];
  char cand[8][SRLM_TASK_ANSWER_LEN + 1];
  const char *cp[8];
  for (int i = 0; i < 8; i++) {
    srlm_task_puzzle_make(21, SRLM_TASK_SPLIT_SFT, (uint64_t)i, &p[i]);
    srlm_task_judge_example(21, (uint64_t)i, &jpz[i], cand[i], NULL);
    cp[i] = cand[i];
  }
  double acc = -1;
  int correct[8];
  char *answers[8] = {0};
  st = srlm_task_eval_accuracy(m, tok, 3, 8, p, correct, answers, &acc);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(acc, 1.0, 0);
  for (int i = 0; st == SRLM_OK && i < 8; i++) {
    if (!correct[i]) fprintf(stderr, "  answer %d: \"%s\"\n", i, answers[i]);
    free(answers[i]);
  }
  srlm_task_agreement ag;
  st = srlm_task_judge_agreement(m, tok, 5, 8, jpz, cp, &ag);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    fprintf(stderr, "trained: accuracy %.3f; judge agreement %.3f (greedy %.3f, %lld unparsed) on %lld pairs, "
                    "%lld correct by the checker\n",
            acc, ag.expected, ag.greedy, (long long)ag.unparsed, (long long)ag.n, (long long)ag.checker_correct);
    EXPECT_NEAR(ag.expected, 1.0, 0);
    EXPECT_NEAR(ag.greedy, 1.0, 0);
    EXPECT_EQ_INT(ag.unparsed, 0);
    EXPECT(ag.checker_correct >= 4 && ag.checker_correct < 8, "%lld correct candidates", (long long)ag.checker_correct);
  }
  srlm_task_judge_result r[8];
  st = srlm_task_judge(m, tok, 8, SRLM_TASK_RATIONALE_GREEDY, 8, jpz, cp, r);
  for (int i = 0; st == SRLM_OK && i < 8; i++) {
    char jr[SRLM_TASK_JUDGMENT_LEN + 1];
    srlm_task_judgment(&jpz[i], cp[i], strlen(cp[i]), jr);
    EXPECT(!strncmp(r[i].rationale, jr, 9) && r[i].greedy_score == jr[9] - '0',
           "pair %d: rationale %s score %d, reference %s", i, r[i].rationale, r[i].greedy_score, jr);
  }
  srlm_model_free(m);
}

int main(void) {
  test_generator();
  test_checker();
  test_judge_format();
  srlm_tokenizer *tok = NULL;
  srlm_status st = srlm_tokenizer_load(tiny_dir(), &tok);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    test_data(tok);
    test_expected_mechanics(tok);
    test_trained(tok);
    srlm_tokenizer_free(tok);
  }
  TEST_MAIN_END();
}
