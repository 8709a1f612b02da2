/* Meta-Rewarding's data construction (include/srlm/meta.h) on hand-made inputs with known
 * answers: the most-varying response, the comparisons, the both-order rule, the Elo fit
 * (closed forms found by bisection, symmetry, the optimality condition) and the judge
 * pair; and the sign puzzle's meta-judge format and SFT examples (include/srlm/tasks.h). */
#include <math.h>

#include "srlm/countdown.h"
#include "srlm/judge.h"
#include "srlm/meta.h"
#include "srlm/tasks.h"
#include "test.h"

#define U NAN

static void test_pick(void) {
  const double s[] = {5, 5, 5, 5, /* no spread */
                      5, 1, 5, U, /* variance 32/9 */
                      5, 1, 1, 5}; /* variance 4 */
  double var;
  EXPECT_EQ_INT(srlm_meta_pick_response(3, 4, s, &var), 2);
  EXPECT_NEAR(var, 4.0, 1e-12);
  EXPECT_EQ_INT(srlm_meta_pick_response(2, 4, s, &var), 1);
  EXPECT_NEAR(var, 32.0 / 9.0, 1e-12);
  const double tie[] = {1, 3, U, 3, U, 5}; /* rows 0 and 1 both variance 1: the lowest index */
  EXPECT_EQ_INT(srlm_meta_pick_response(2, 3, tie, NULL), 0);
  const double none[] = {U, 4, U, U, 2, 2};
  EXPECT_EQ_INT(srlm_meta_pick_response(2, 3, none, &var), -1);
  EXPECT_NEAR(var, 0, 0);
}

static void test_comparisons(void) {
  const double s[] = {5, 1, 5, U, 3};
  int a[10], b[10];
  int n = srlm_meta_comparisons(5, s, a, b);
  /* (0,1) (0,4) (1,2) (1,4) (2,4); 0-2 equal, 3 unparsable */
  const int wa[] = {0, 0, 1, 1, 2}, wb[] = {1, 4, 2, 4, 4};
  EXPECT_EQ_INT(n, 5);
  for (int i = 0; i < 5 && i < n; i++) {
    EXPECT_EQ_INT(a[i], wa[i]);
    EXPECT_EQ_INT(b[i], wb[i]);
  }
  const double same[] = {4, 4, 4};
  EXPECT_EQ_INT(srlm_meta_comparisons(3, same, a, b), 0);
}

static void test_both_orders(void) {
  const srlm_meta_verdict N = SRLM_META_NONE, A = SRLM_META_A, B = SRLM_META_B;
  EXPECT_EQ_INT(srlm_meta_both_orders(A, B), 1);  /* x first wins, x second wins */
  EXPECT_EQ_INT(srlm_meta_both_orders(B, A), -1); /* y wins in both places */
  EXPECT_EQ_INT(srlm_meta_both_orders(A, A), 0);  /* always the first: position bias */
  EXPECT_EQ_INT(srlm_meta_both_orders(B, B), 0);
  EXPECT_EQ_INT(srlm_meta_both_orders(A, N), 0);
  EXPECT_EQ_INT(srlm_meta_both_orders(N, B), 0);
  EXPECT_EQ_INT(srlm_meta_both_orders(N, N), 0);
}

/* Two players, w01 wins of 0 over 1 and w10 back: c0 = -c1 = x with
 * w01 (1 - s) - w10 s = ridge x, s = sigmoid(2x); found by bisection. */
static double two_player_x(double w01, double w10) {
  double lo = -50, hi = 50;
  for (int i = 0; i < 200; i++) {
    const double x = 0.5 * (lo + hi), s = 1 / (1 + exp(-2 * x));
    if (w01 * (1 - s) - w10 * s - SRLM_META_ELO_RIDGE * x > 0)
      lo = x;
    else
      hi = x;
  }
  return 0.5 * (lo + hi);
}

static void test_elo(void) {
  double elo[4];
  { /* one win: finite thanks to the ridge */
    const double w[] = {0, 1, 0, 0};
    EXPECT(srlm_meta_elo(2, w, elo) == SRLM_OK, "fit");
    const double x = two_player_x(1, 0);
    EXPECT(x > 1 && x < 3, "x = %g", x);
    EXPECT_NEAR(elo[0], 400 * x + 1000, 1e-6);
    EXPECT_NEAR(elo[1], -400 * x + 1000, 1e-6);
  }
  { /* 3 wins to 1 */
    const double w[] = {0, 3, 1, 0};
    EXPECT(srlm_meta_elo(2, w, elo) == SRLM_OK, "fit");
    const double x = two_player_x(3, 1);
    EXPECT_NEAR(elo[0], 400 * x + 1000, 1e-6);
    EXPECT_NEAR(elo[1], -400 * x + 1000, 1e-6);
    EXPECT(0.5 * log(3) - x > 0 && 0.5 * log(3) - x < 0.05, "x = %g below the unregularized log(3)/2", x);
  }
  { /* a cycle: everybody equal */
    const double w[] = {0, 1, 0, 0, 0, 1, 1, 0, 0};
    EXPECT(srlm_meta_elo(3, w, elo) == SRLM_OK, "fit");
    for (int i = 0; i < 3; i++) EXPECT_NEAR(elo[i], 1000, 1e-9);
  }
  { /* transitive 0 > 1 > 2: symmetric about the middle one */
    const double w[] = {0, 1, 1, 0, 0, 1, 0, 0, 0};
    EXPECT(srlm_meta_elo(3, w, elo) == SRLM_OK, "fit");
    EXPECT(elo[0] > elo[1] && elo[1] > elo[2], "%g %g %g", elo[0], elo[1], elo[2]);
    EXPECT_NEAR(elo[1], 1000, 1e-9);
    EXPECT_NEAR(elo[0] - 1000, 1000 - elo[2], 1e-9);
  }
  { /* a judgment without results has no Elo; the others fit as if it were absent */
    const double w[] = {0, 1, 0, 0, 0, 0, 0, 0, 0};
    EXPECT(srlm_meta_elo(3, w, elo) == SRLM_OK, "fit");
    EXPECT(isnan(elo[2]), "elo[2] = %g", elo[2]);
    EXPECT_NEAR(elo[0], 400 * two_player_x(1, 0) + 1000, 1e-6);
  }
  { /* an uneven 4-player matrix: the gradient of the objective vanishes at the fit */
    const double w[] = {0, 2, 1, 0, 1, 0, 0, 3, 0, 1, 0, 1, 2, 0, 1, 0};
    EXPECT(srlm_meta_elo(4, w, elo) == SRLM_OK, "fit");
    double c[4], sum = 0;
    for (int i = 0; i < 4; i++) c[i] = (elo[i] - 1000) / 400, sum += c[i];
    EXPECT_NEAR(sum, 0, 1e-9);
    for (int i = 0; i < 4; i++) {
      double g = -SRLM_META_ELO_RIDGE * c[i];
      for (int j = 0; j < 4; j++) {
        if (j == i) continue;
        const double s = 1 / (1 + exp(-(c[i] - c[j])));
        g += w[i * 4 + j] * (1 - s) - w[j * 4 + i] * s;
      }
      EXPECT_NEAR(g, 0, 1e-9);
    }
  }
  { /* errors */
    const double neg[] = {0, -1, 0, 0};
    EXPECT(srlm_meta_elo(2, neg, elo) == SRLM_ERR_RANGE, "negative count");
    const double inf[] = {0, INFINITY, 0, 0};
    EXPECT(srlm_meta_elo(2, inf, elo) == SRLM_ERR_RANGE, "infinite count");
    EXPECT(srlm_meta_elo(0, neg, elo) == SRLM_ERR_RANGE, "no judgments");
    EXPECT(srlm_meta_elo(SRLM_META_MAX_J + 1, neg, elo) == SRLM_ERR_RANGE, "too many");
  }
  { /* no results at all: every Elo NaN */
    const double w[] = {0, 0, 0, 0};
    EXPECT(srlm_meta_elo(2, w, elo) == SRLM_OK, "fit");
    EXPECT(isnan(elo[0]) && isnan(elo[1]), "%g %g", elo[0], elo[1]);
  }
}

static void test_judge_pair(void) {
  int c, r, made;
  const double e1[] = {U, 1200, 800, 1200, 900};
  srlm_meta_judge_pair(5, e1, &c, &r, &made);
  EXPECT_EQ_INT(made, 1);
  EXPECT_EQ_INT(c, 1); /* lowest index among the equal highest */
  EXPECT_EQ_INT(r, 2);
  const double e2[] = {1000, U, 1000};
  srlm_meta_judge_pair(3, e2, &c, &r, &made);
  EXPECT_EQ_INT(made, 0);
  const double e3[] = {U, U};
  srlm_meta_judge_pair(2, e3, &c, &r, &made);
  EXPECT_EQ_INT(made, 0);
  /* the whole chain: 3 judgments scored 5, 1, 5; the meta-judge prefers 0 over 1 in both
     orders, 1 over 2 in both orders (a judge with score 1 is right: the rationale of 2 is
     off), and splits on nothing else */
  const double scores[] = {5, 1, 5};
  int a[3], b[3];
  const int n = srlm_meta_comparisons(3, scores, a, b);
  EXPECT_EQ_INT(n, 2);
  const srlm_meta_verdict v[2][2] = {{SRLM_META_A, SRLM_META_B}, {SRLM_META_A, SRLM_META_B}};
  double w[9] = {0}, elo[3];
  for (int i = 0; i < n; i++) {
    const int o = srlm_meta_both_orders(v[i][0], v[i][1]);
    if (o > 0) w[a[i] * 3 + b[i]] += 1;
    if (o < 0) w[b[i] * 3 + a[i]] += 1;
  }
  EXPECT(srlm_meta_elo(3, w, elo) == SRLM_OK, "fit");
  srlm_meta_judge_pair(3, elo, &c, &r, &made);
  EXPECT_EQ_INT(made, 1);
  EXPECT_EQ_INT(c, 0);
  EXPECT_EQ_INT(r, 2);
}

static void test_sign_format(void) {
  srlm_task_puzzle p;
  EXPECT(srlm_task_prompt_parse("Q6371T+15A", 10, &p) == SRLM_OK, "parse");
  char out[SRLM_TASK_META_PROMPT_MAX + 1];
  size_t n = srlm_task_meta_prompt(&p, "6+3+7-1", 7, "+09+16+155", 10, "+09+12+151", 10, out);
  EXPECT_STR_EQ(out, "J6371T+15A6+3+7-1S+09+16+155Q+09+12+151A");
  EXPECT_EQ_INT(n, strlen("J6371T+15A6+3+7-1S+09+16+155Q+09+12+151A"));
  /* only the parsed part of a judgment is shown */
  n = srlm_task_meta_prompt(&p, "6+3+7-1", 7, "+09+16+155+1", 12, "+09+12+151", 10, out);
  EXPECT_STR_EQ(out, "J6371T+15A6+3+7-1S+09+16+155Q+09+12+151A");
  out[0] = 'x';
  EXPECT_EQ_INT(srlm_task_meta_prompt(&p, "6+3+7-1", 7, "+09+16", 6, "+09+12+151", 10, out), 0);
  EXPECT_EQ_INT(srlm_task_meta_prompt(&p, "6+3+7-1", 7, "+09+16+155", 10, "+09+12+15Q", 10, out), 0);
  EXPECT(out[0] == 'x', "nothing written for an unparsable judgment");
  /* the longest meta prompt fits the bound, and the answer (own judgment + verdict) + EOS fit 54 tokens */
  n = srlm_task_meta_prompt(&p, "6+3+7-1+2+3", 11, "+09+16+155", 10, "+09+12+151", 10, out);
  EXPECT_EQ_INT(n, SRLM_TASK_META_PROMPT_MAX);
  EXPECT(SRLM_TASK_META_PROMPT_MAX + SRLM_TASK_JUDGMENT_LEN + 2 <= 54, "%d", SRLM_TASK_META_PROMPT_MAX + 12);
}

static void test_sign_examples(void) {
  int64_t kinds[SRLM_TASK_META_KIND_COUNT] = {0}, first = 0;
  const int N = 3000;
  for (int i = 0; i < N; i++) {
    srlm_task_puzzle p;
    char cand[SRLM_TASK_ANSWER_LEN + 1], a[SRLM_TASK_JUDGMENT_LEN + 1], b[SRLM_TASK_JUDGMENT_LEN + 1], win;
    srlm_task_meta_kind k;
    const srlm_task_split split = i % 2 ? SRLM_TASK_SPLIT_EVAL : SRLM_TASK_SPLIT_JUDGE;
    srlm_task_meta_example(7, split, (uint64_t)i, &p, cand, a, b, &win, &k);
    EXPECT_EQ_INT(srlm_task_puzzle_held_out(&p), split == SRLM_TASK_SPLIT_EVAL);
    char ref[SRLM_TASK_JUDGMENT_LEN + 1];
    srlm_task_judgment(&p, cand, strlen(cand), ref);
    const char *good = win == '1' ? a : b, *bad = win == '1' ? b : a;
    EXPECT(win == '1' || win == '2', "winner %c", win);
    EXPECT_STR_EQ(good, ref);
    int sg, sb;
    EXPECT(srlm_task_judgment_parse(bad, strlen(bad), &sb) && srlm_task_judgment_parse(good, 10, &sg), "%s", bad);
    const int same_rat = !memcmp(good, bad, SRLM_TASK_RATIONALE_LEN);
    EXPECT_EQ_INT(same_rat, k == SRLM_TASK_META_SCORE_FLIP);
    EXPECT_EQ_INT(sg == sb, k == SRLM_TASK_META_RATIONALE);
    /* a rationale error is one partial sum, 1..9 away */
    int diff = 0;
    for (int g = 0; g < 3; g++) {
      int x = (good[3 * g] == '-' ? -1 : 1) * atoi((char[]){good[3 * g + 1], good[3 * g + 2], 0});
      int y = (bad[3 * g] == '-' ? -1 : 1) * atoi((char[]){bad[3 * g + 1], bad[3 * g + 2], 0});
      if (x != y) {
        diff++;
        EXPECT(abs(x - y) >= 1 && abs(x - y) <= 9, "%s vs %s", good, bad);
      }
    }
    EXPECT_EQ_INT(diff, k == SRLM_TASK_META_SCORE_FLIP ? 0 : 1);
    kinds[k]++;
    first += win == '1';
    /* a function of (seed, split, index) */
    char a2[SRLM_TASK_JUDGMENT_LEN + 1], b2[SRLM_TASK_JUDGMENT_LEN + 1], cand2[SRLM_TASK_ANSWER_LEN + 1], w2;
    srlm_task_puzzle p2;
    srlm_task_meta_example(7, split, (uint64_t)i, &p2, cand2, a2, b2, &w2, NULL);
    EXPECT(!strcmp(a, a2) && !strcmp(b, b2) && !strcmp(cand, cand2) && w2 == win, "example %d differs", i);
  }
  for (int k = 0; k < SRLM_TASK_META_KIND_COUNT; k++)
    EXPECT(kinds[k] > N / 3 - 150 && kinds[k] < N / 3 + 150, "kind %d: %lld of %d", k, (long long)kinds[k], N);
  EXPECT(first > N / 2 - 150 && first < N / 2 + 150, "winner first %lld of %d", (long long)first, N);
}

static void test_countdown_examples(void) {
  int64_t kinds[SRLM_TASK_META_KIND_COUNT] = {0};
  const int N = 1500;
  for (int i = 0; i < N; i++) {
    srlm_cd_puzzle p;
    char cand[SRLM_CD_ANSWER_MAX + 1], a[SRLM_CD_JUDGMENT_MAX + 2], b[SRLM_CD_JUDGMENT_MAX + 2], win;
    srlm_task_meta_kind k;
    srlm_cd_meta_example(5, (uint64_t)i, &p, cand, a, b, &win, &k);
    char ref[SRLM_CD_JUDGMENT_MAX + 1];
    srlm_cd_judgment(&p, cand, strlen(cand), ref);
    const char *good = win == '1' ? a : b, *bad = win == '1' ? b : a;
    EXPECT_STR_EQ(good, ref);
    int sg = 0, sb = 0;
    EXPECT(srlm_cd_judgment_parse(bad, strlen(bad), &sb) && srlm_cd_judgment_parse(good, strlen(good), &sg), "%s", bad);
    EXPECT(strcmp(good, bad) != 0, "equal judgments %s", good);
    EXPECT_EQ_INT(sg == sb, k == SRLM_TASK_META_RATIONALE);
    const size_t lg = strlen(good), lb = strlen(bad);
    const int same_rat = lg == lb && !memcmp(good, bad, lg - 1);
    EXPECT_EQ_INT(same_rat, k == SRLM_TASK_META_SCORE_FLIP);
    kinds[k]++;
    char mp[SRLM_CD_META_PROMPT_MAX + 1], jp[SRLM_CD_JUDGE_PROMPT_MAX + 1];
    const size_t n = srlm_cd_meta_prompt(&p, cand, strlen(cand), a, b, mp);
    const size_t jl = srlm_cd_judge_prompt(&p, cand, strlen(cand), jp);
    EXPECT_EQ_INT(n, jl + strlen(a) + strlen(b) + 2);
    EXPECT(!memcmp(mp, jp, jl) && mp[jl + strlen(a)] == 'T' && mp[n - 1] == 'A', "%s", mp);
  }
  /* steps are not always there to perturb ("N", "X"): fewer RATIONALE/BOTH than flips */
  for (int k = 0; k < SRLM_TASK_META_KIND_COUNT; k++) EXPECT(kinds[k] > N / 6, "kind %d: %lld", k, (long long)kinds[k]);
  /* the template file renders exactly the examples' text */
  char path[4096];
  snprintf(path, sizeof path, "%s/configs/judge/countdown-meta.txt", getenv("SRLM_SOURCE_DIR") ? getenv("SRLM_SOURCE_DIR") : ".");
  char *tmpl = NULL;
  size_t size = 0;
  EXPECT(srlm_read_file(path, &tmpl, &size) == SRLM_OK, "%s", path);
  if (tmpl) {
    srlm_cd_puzzle p;
    char cand[SRLM_CD_ANSWER_MAX + 1], a[SRLM_CD_JUDGMENT_MAX + 2], b[SRLM_CD_JUDGMENT_MAX + 2], win, q[SRLM_CD_PROMPT_MAX + 1];
    srlm_cd_meta_example(5, 3, &p, cand, a, b, &win, NULL);
    srlm_cd_prompt(&p, q);
    static const char *const names[] = {"prompt", "response", "judgment_a", "judgment_b"};
    const char *vals[] = {q, cand, a, b};
    char *out = NULL, mp[SRLM_CD_META_PROMPT_MAX + 1];
    EXPECT(srlm_judge_render_vars(path, tmpl, 4, names, vals, &out) == SRLM_OK, "render");
    srlm_cd_meta_prompt(&p, cand, strlen(cand), a, b, mp);
    EXPECT_STR_EQ(out, mp);
    free(out);
    free(tmpl);
  }
}

static void test_text_parts(void) {
  static const char *const names[] = {"prompt", "response", "judgment_a", "judgment_b"};
  const char *vals[] = {"P", "R", "a", "b"};
  char *out = NULL;
  EXPECT(srlm_judge_render_vars("t", "{prompt}|{response}|{judgment_a}|{judgment_b}|{judgment_a}", 4, names, vals,
                                &out) == SRLM_OK, "render");
  EXPECT_STR_EQ(out, "P|R|a|b|a");
  free(out);
  EXPECT(srlm_judge_render_vars("t", "{prompt}{response}{judgment_a}", 4, names, vals, &out) == SRLM_ERR_CONFIG,
         "missing {judgment_b}");
  EXPECT_CONTAINS(srlm_error_message(), "{judgment_b}");
  EXPECT(srlm_judge_render_vars("t", "{prompt}{response}{judgment_a}{judgment_b}{judgment_c}", 4, names, vals, &out) ==
         SRLM_ERR_CONFIG, "unknown");
  EXPECT_CONTAINS(srlm_error_message(), "{judgment_c}");
  srlm_judge_parser *p = NULL;
  EXPECT(srlm_judge_parser_create("Winner: *([AB12])", 0, 1, &p) == SRLM_OK, "compile");
  const struct {
    const char *text;
    int want;
  } cases[] = {{"Winner: A", 1}, {"Winner: B", 2}, {"Winner:2", 2}, {"Winner: A ... no, Winner: B", 2},
               {"winner: A", 0}, {"Winner: C", 0}, {"", 0}, {"Winner: 1", 1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    EXPECT(srlm_judge_parse_winner(p, cases[i].text, strlen(cases[i].text)) == cases[i].want, "\"%s\"", cases[i].text);
  srlm_judge_parser_free(p);
  EXPECT(srlm_judge_parser_create("^([12])", 0, 1, &p) == SRLM_OK, "compile");
  EXPECT_EQ_INT(srlm_judge_parse_winner(p, "2", 1), 2);
  EXPECT_EQ_INT(srlm_judge_parse_winner(p, "12", 2), 1); /* the capture is "1" */
  EXPECT_EQ_INT(srlm_judge_parse_winner(p, "x", 1), 0);
  srlm_judge_parser_free(p);
}

int main(void) {
  test_pick();
  test_comparisons();
  test_both_orders();
  test_elo();
  test_judge_pair();
  test_sign_format();
  test_sign_examples();
  test_countdown_examples();
  test_text_parts();
  TEST_MAIN_END();
}
