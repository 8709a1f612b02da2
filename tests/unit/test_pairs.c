/* Pair selection and group advantages: table-driven cases for every rule of
 * include/srlm/pairs.h (extremes, lowest-index ties, unscored, ties, margins, equal
 * texts, Meta-Rewarding length control) and GRPO / Dr.GRPO advantages. */
#include <math.h>
#include <string.h>

#include "srlm/pairs.h"
#include "test.h"

#define U NAN /* unscored */
enum { MAXK = 8 };

typedef enum { MADE, SKIPPED, TIE, MARGIN, EQUAL_TEXT } outcome;
static const char *const k_outcome[] = {"made", "skipped", "tie", "margin", "equal text"};

typedef struct pair_case {
  const char *name;
  int k;
  double scores[MAXK];
  const char *texts[MAXK]; /* NULL entries get distinct texts */
  int64_t lengths[MAXK];
  double min_margin;
  int length_control;
  double rho;
  outcome want;
  int chosen, rejected;
} pair_case;

static const pair_case k_cases[] = {
    {"max vs min", 4, {3, 5, 1, 4}, {0}, {0}, 0, 0, 0, MADE, 1, 2},
    {"lowest index among equal max and min", 5, {2, 5, 2, 5, 3}, {0}, {0}, 0, 0, 0, MADE, 1, 0},
    {"unscored never picked", 4, {U, 1, U, 2}, {0}, {0}, 0, 0, 0, MADE, 3, 1},
    {"one scored: skipped", 3, {U, 4, U}, {0}, {0}, 0, 0, 0, SKIPPED, 0, 0},
    {"none scored: skipped", 2, {U, U}, {0}, {0}, 0, 0, 0, SKIPPED, 0, 0},
    {"no candidates: skipped", 0, {0}, {0}, {0}, 0, 0, 0, SKIPPED, 0, 0},
    {"infinite score is unscored", 3, {INFINITY, 2, 3}, {0}, {0}, 0, 0, 0, MADE, 2, 1},
    {"all equal: tie", 4, {3, 3, U, 3}, {0}, {0}, 0, 0, 0, TIE, 0, 0},
    {"margin below min_margin", 3, {3, 3.4, 3.2}, {0}, {0}, 0.5, 0, 0, MARGIN, 0, 0},
    {"margin exactly min_margin kept", 2, {3, 3.5}, {0}, {0}, 0.5, 0, 0, MADE, 1, 0},
    {"equal texts dropped", 3, {1, 4, 2}, {"same", "same", "other"}, {0}, 0, 0, 0, EQUAL_TEXT, 0, 0},
    {"equal prefix is not equal", 2, {1, 4}, {"same", "same!"}, {0}, 0, 0, 0, MADE, 1, 0},
    /* length control: top band [4.5, 5] with rho 0.25 of (5 - 3): 1 (len 9), 3 (len 4) ->
     * shortest 3; bottom band [3, 3.5]: 0 (len 2), 2 (len 7) -> longest 2 */
    {"length control rho 0.25", 5, {3, 5, 3.5, 4.6, 4}, {0}, {2, 9, 7, 4, 1}, 0, 1, 0.25, MADE, 3, 2},
    {"length control rho 0: extremes only", 5, {3, 5, 3.5, 4.6, 5}, {0}, {2, 9, 7, 4, 6}, 0, 1, 0, MADE, 4, 0},
    {"length control equal lengths: lowest index", 4, {5, 1, 5, 1}, {0}, {3, 3, 3, 3}, 0, 1, 0.1, MADE, 0, 1},
    {"length control margin uses the picked pair", 4, {5, 4.9, 0, 0.1}, {0}, {9, 1, 1, 9}, 1.0, 1, 0.1, MADE, 1, 3},
    {"length control margin too small", 4, {5, 4.9, 4.1, 4}, {0}, {9, 1, 9, 1}, 0.85, 1, 0.2, MARGIN, 0, 0},
};

static void test_pair_table(void) {
  srlm_pair_stats total = {0};
  int want_counts[5] = {0};
  for (size_t c = 0; c < sizeof k_cases / sizeof k_cases[0]; c++) {
    const pair_case *pc = &k_cases[c];
    char distinct[MAXK][16];
    const char *texts[MAXK];
    for (int i = 0; i < MAXK; i++) {
      snprintf(distinct[i], sizeof distinct[i], "ans%d", i);
      texts[i] = pc->texts[i] ? pc->texts[i] : distinct[i];
    }
    srlm_pair_options o = {pc->min_margin, pc->length_control, pc->rho};
    srlm_pair p = {-1, -1, 0};
    srlm_pair_stats st = {0};
    int made = -1;
    srlm_status s = srlm_pairs_select(&o, pc->k, pc->scores, texts, NULL, pc->lengths, &p, &made, &st);
    EXPECT(s == SRLM_OK, "%s: %s", pc->name, srlm_error_message());
    int64_t got[5] = {st.pairs, st.skipped_prompts, st.dropped_tie, st.dropped_margin, st.dropped_equal_text};
    for (int r = 0; r < 5; r++)
      EXPECT(got[r] == (r == (int)pc->want), "%s: %s counted %lld, expected outcome %s", pc->name, k_outcome[r],
             (long long)got[r], k_outcome[pc->want]);
    EXPECT(made == (pc->want == MADE), "%s: made %d", pc->name, made);
    if (pc->want == MADE) {
      EXPECT(p.chosen == pc->chosen && p.rejected == pc->rejected, "%s: pair (%d, %d), expected (%d, %d)", pc->name,
             p.chosen, p.rejected, pc->chosen, pc->rejected);
      EXPECT(fabs(p.margin - (pc->scores[pc->chosen] - pc->scores[pc->rejected])) < 1e-15, "%s: margin %g", pc->name,
             p.margin);
    }
    EXPECT_EQ_INT(st.prompts, 1);
    /* accumulate into one stats struct as a caller would over prompts */
    srlm_pairs_select(&o, pc->k, pc->scores, texts, NULL, pc->lengths, &p, &made, &total);
    want_counts[pc->want]++;
  }
  EXPECT_EQ_INT(total.prompts, (long long)(sizeof k_cases / sizeof k_cases[0]));
  EXPECT_EQ_INT(total.pairs, want_counts[MADE]);
  EXPECT_EQ_INT(total.skipped_prompts, want_counts[SKIPPED]);
  EXPECT_EQ_INT(total.dropped_tie, want_counts[TIE]);
  EXPECT_EQ_INT(total.dropped_margin, want_counts[MARGIN]);
  EXPECT_EQ_INT(total.dropped_equal_text, want_counts[EQUAL_TEXT]);
  EXPECT_EQ_INT(total.unscored, 2 + 2 + 2 + 1 + 1);
}

static void test_pair_bytes_and_errors(void) {
  /* texts with explicit lengths: equal up to a NUL byte but different lengths are different */
  const char *texts[2] = {"ab\0c", "ab\0d"};
  size_t lens[2] = {4, 4};
  double scores[2] = {1, 2};
  srlm_pair p;
  int made;
  srlm_pair_options o = {0};
  EXPECT(srlm_pairs_select(&o, 2, scores, texts, lens, NULL, &p, &made, NULL) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(made, 1);
  lens[0] = lens[1] = 3;
  EXPECT(srlm_pairs_select(&o, 2, scores, texts, lens, NULL, &p, &made, NULL) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(made, 0);
  o.length_control = 1;
  o.length_rho = 0.5;
  int64_t len[2] = {1, 2};
  EXPECT(srlm_pairs_select(&o, 2, scores, texts, lens, len, &p, &made, NULL) == SRLM_ERR_CONFIG, "rho 0.5 accepted");
  EXPECT_CONTAINS(srlm_error_message(), "rho");
  o.length_rho = 0.1;
  EXPECT(srlm_pairs_select(&o, 2, scores, texts, lens, NULL, &p, &made, NULL) != SRLM_OK, "no lengths accepted");
  o.length_control = 0;
  o.min_margin = -1;
  EXPECT(srlm_pairs_select(&o, 2, scores, texts, lens, NULL, &p, &made, NULL) == SRLM_ERR_CONFIG, "margin -1 accepted");
  EXPECT_CONTAINS(srlm_error_message(), "pairs.min_margin");
}

typedef struct group_case {
  const char *name;
  int use_std;
  double r[4];
  double want[4];
  int zero_variance, unscored;
} group_case;

static void test_group_table(void) {
  const double s3 = sqrt(5.0 / 3.0); /* sample std of {1, 2, 3, 4} */
  const double e = SRLM_GROUP_STD_EPS;
  const group_case cases[] = {
      {"grpo", 1, {1, 2, 3, 4}, {-1.5 / (s3 + e), -0.5 / (s3 + e), 0.5 / (s3 + e), 1.5 / (s3 + e)}, 0, 0},
      {"dr.grpo", 0, {1, 2, 3, 4}, {-1.5, -0.5, 0.5, 1.5}, 0, 0},
      {"all equal (grpo): zeros", 1, {0.3, 0.3, 0.3, 0.3}, {0, 0, 0, 0}, 1, 0},
      {"all equal (dr.grpo): zeros", 0, {0.1, 0.1, 0.1, 0.1}, {0, 0, 0, 0}, 1, 0},
      {"unscored excluded", 1, {U, 5, 1, U}, {0, 1 / (sqrt(8.0) + e) * 2, -2 / (sqrt(8.0) + e), 0}, 0, 2},
      {"one scored: zeros", 1, {U, U, 4, U}, {0, 0, 0, 0}, 1, 3},
      {"equal scored with unscored: zeros", 0, {2, U, 2, 2}, {0, 0, 0, 0}, 1, 1},
  };
  srlm_group_stats total = {0};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    srlm_group_options o = {cases[c].use_std, SRLM_GROUP_STD_EPS, 0};
    srlm_group_stats st = {0};
    double adv[4];
    EXPECT(srlm_group_advantages(&o, 1, 4, cases[c].r, adv, &st) == SRLM_OK, "%s", srlm_error_message());
    for (int i = 0; i < 4; i++)
      EXPECT(fabs(adv[i] - cases[c].want[i]) < 1e-12 && (cases[c].want[i] != 0 || adv[i] == 0),
             "%s: A[%d] = %.15g, expected %.15g", cases[c].name, i, adv[i], cases[c].want[i]);
    EXPECT(st.zero_variance == cases[c].zero_variance && st.unscored == cases[c].unscored,
           "%s: zero_variance %lld unscored %lld", cases[c].name, (long long)st.zero_variance, (long long)st.unscored);
    EXPECT_EQ_INT(st.groups, 1);
    EXPECT_EQ_INT(st.samples, 4);
    srlm_group_advantages(&o, 1, 4, cases[c].r, adv, &total);
  }
  EXPECT_EQ_INT(total.groups, 7);
  EXPECT_EQ_INT(total.zero_variance, 4);

  /* several groups in one call are independent; advantages of a group sum to 0 */
  double r[12] = {1, 0, 0, 1, 5, 5, 5, 5, 0.2, 0.9, 0.4, 0.1}, adv[12];
  srlm_group_options o = {1, SRLM_GROUP_STD_EPS, 0};
  srlm_group_stats st = {0};
  EXPECT(srlm_group_advantages(&o, 3, 4, r, adv, &st) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(st.zero_variance, 1);
  for (int j = 0; j < 3; j++) {
    double sum = adv[4 * j] + adv[4 * j + 1] + adv[4 * j + 2] + adv[4 * j + 3];
    EXPECT(fabs(sum) < 1e-12, "group %d: advantages sum to %g", j, sum);
  }
  EXPECT_NEAR(adv[0], 0.5 / (sqrt(1.0 / 3.0) + SRLM_GROUP_STD_EPS), 1e-12);
  EXPECT(srlm_group_advantages(&o, 1, 0, r, adv, NULL) == SRLM_ERR_RANGE, "group of 0 accepted");
}

/* Hand-computed: the std over the batch, the std epsilon, and the all-equal test that
 * DAPO's dynamic sampling uses. */
static void test_group_batch_std_and_eps(void) {
  /* groups {1, 5}, {2, 4}, {3, 3}: every reward together has mean 3, squares 4+4+1+1+0+0
   * = 10, sample std sqrt(10 / 5) = sqrt 2; group means 3, 3, 3 */
  const double r[6] = {1, 5, 2, 4, 3, 3};
  double adv[6];
  srlm_group_options o = {.use_std = 1, .eps = 0, .batch_std = 1};
  srlm_group_stats st = {0};
  EXPECT(srlm_group_advantages(&o, 3, 2, r, adv, &st) == SRLM_OK, "%s", srlm_error_message());
  const double want[6] = {-2 / sqrt(2.0), 2 / sqrt(2.0), -1 / sqrt(2.0), 1 / sqrt(2.0), 0, 0};
  for (int i = 0; i < 6; i++) EXPECT(fabs(adv[i] - want[i]) < 1e-12, "batch std: adv[%d] %.15g, want %.15g", i, adv[i], want[i]);
  EXPECT(adv[4] == 0 && adv[5] == 0 && st.zero_variance == 1, "the equal group: %g %g, zero_variance %lld", adv[4],
         adv[5], (long long)st.zero_variance);
  /* per group the two mixed groups get the same +-1/sqrt 2: group std 2 sqrt 2 and sqrt 2 */
  o.batch_std = 0;
  EXPECT(srlm_group_advantages(&o, 3, 2, r, adv, NULL) == SRLM_OK, "%s", srlm_error_message());
  for (int i = 0; i < 4; i++)
    EXPECT(fabs(fabs(adv[i]) - 1 / sqrt(2.0)) < 1e-12, "group std: adv[%d] %.15g, want +-%.15g", i, adv[i],
           1 / sqrt(2.0));
  /* an unscored sample stays out of the batch std: {1, NaN}, {2, 4} -> rewards {1, 2, 4},
   * mean 7/3, std sqrt(((4/3)^2 + (1/3)^2 + (5/3)^2) / 2) = sqrt(7/3); the first group has
   * one score: zero variance */
  const double r2[4] = {1, NAN, 2, 4};
  o.batch_std = 1;
  EXPECT(srlm_group_advantages(&o, 2, 2, r2, adv, NULL) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(adv[0] == 0 && adv[1] == 0 && fabs(adv[2] + 1 / sqrt(7.0 / 3)) < 1e-12 && fabs(adv[3] - 1 / sqrt(7.0 / 3)) < 1e-12,
         "batch std with NaN: %g %g %.15g %.15g, want 0 0 -+%.15g", adv[0], adv[1], adv[2], adv[3], 1 / sqrt(7.0 / 3));
  /* the std epsilon: {0, 1} has std sqrt(1/2); eps 0.5: A = 0.5 / (sqrt(1/2) + 0.5) */
  const double r3[2] = {0, 1};
  srlm_group_options e = {.use_std = 1, .eps = 0.5};
  EXPECT(srlm_group_advantages(&e, 1, 2, r3, adv, NULL) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(fabs(adv[1] - 0.5 / (sqrt(0.5) + 0.5)) < 1e-12 && fabs(adv[0] + adv[1]) < 1e-15, "eps 0.5: %.15g %.15g, want +-%.15g",
         adv[0], adv[1], 0.5 / (sqrt(0.5) + 0.5));
  e.eps = -1;
  EXPECT(srlm_group_advantages(&e, 1, 2, r3, adv, NULL) == SRLM_ERR_CONFIG, "eps -1 accepted");
  /* all equal: fewer than 2 scored, or every scored reward the same */
  const double eq1[3] = {2, 2, NAN}, eq2[3] = {NAN, 4, NAN}, eq3[3] = {NAN, NAN, NAN}, mixed[3] = {2, NAN, 2.5};
  EXPECT(srlm_group_all_equal(3, eq1) && srlm_group_all_equal(3, eq2) && srlm_group_all_equal(3, eq3) &&
             !srlm_group_all_equal(3, mixed),
         "srlm_group_all_equal: %d %d %d %d, want 1 1 1 0", srlm_group_all_equal(3, eq1), srlm_group_all_equal(3, eq2),
         srlm_group_all_equal(3, eq3), srlm_group_all_equal(3, mixed));
}

/* ScPO votes on hand-made vote tables: answers, expected outcome, chosen/rejected, weight. */
typedef enum { V_MADE, V_ONE, V_TIE, V_BELOW } vote_outcome;
typedef struct vote_case {
  const char *name;
  int k;
  const char *answers[MAXK]; /* "-" = no extractable answer */
  double threshold;
  vote_outcome want;
  int chosen, rejected;
  double weight;
} vote_case;

static const vote_case k_votes[] = {
    {"most vs least, unanswered no vote", 6, {"7", "7", "3", "7", "-", "5"}, 0, V_MADE, 0, 2, 2.0 / 6},
    {"threshold exactly V+/k kept", 6, {"7", "7", "3", "7", "-", "5"}, 0.5, V_MADE, 0, 2, 2.0 / 6},
    {"threshold above V+/k dropped", 6, {"7", "7", "3", "7", "-", "5"}, 0.6, V_BELOW, 0, 0, 0},
    {"one answer only", 3, {"4", "4", "4"}, 0, V_ONE, 0, 0, 0},
    {"one answer among unanswered", 4, {"-", "4", "-", "-"}, 0, V_ONE, 0, 0, 0},
    {"no answers", 2, {"-", "-"}, 0, V_ONE, 0, 0, 0},
    {"all answers equally voted: tie", 4, {"1", "2", "1", "2"}, 0, V_TIE, 0, 0, 0},
    {"equal least votes: the first answer", 7, {"a", "b", "b", "c", "c", "c", "d"}, 0, V_MADE, 3, 0, 2.0 / 7},
    {"equal top votes: the first answer", 5, {"x", "y", "y", "x", "z"}, 0, V_MADE, 0, 4, 1.0 / 5},
    {"chosen is the answer's first sample", 4, {"q", "p", "p", "p"}, 0, V_MADE, 1, 0, 2.0 / 4},
};

static void test_votes(void) {
  srlm_vote_stats total = {0};
  int64_t want[4] = {0}, no_answer = 0;
  for (size_t c = 0; c < sizeof k_votes / sizeof k_votes[0]; c++) {
    const vote_case *v = &k_votes[c];
    const char *a[MAXK];
    for (int i = 0; i < v->k; i++) {
      a[i] = strcmp(v->answers[i], "-") ? v->answers[i] : NULL;
      no_answer += a[i] == NULL;
    }
    srlm_pair p = {-1, -1, 0};
    double w = -1;
    int made = -1;
    srlm_vote_stats one = {0};
    EXPECT_EQ_INT(srlm_pairs_votes(v->threshold, v->k, a, &p, &w, &made, &one), SRLM_OK);
    srlm_pairs_votes(v->threshold, v->k, a, &p, &w, &made, &total);
    want[v->want]++;
    const int64_t got[4] = {one.pairs, one.one_answer, one.tie, one.below_threshold};
    EXPECT(got[v->want] == 1 && one.prompts == 1, "%s: outcome counts %lld made, %lld one answer, %lld tie, %lld below",
           v->name, (long long)got[0], (long long)got[1], (long long)got[2], (long long)got[3]);
    EXPECT(made == (v->want == V_MADE), "%s: made %d", v->name, made);
    if (v->want == V_MADE) {
      EXPECT(p.chosen == v->chosen && p.rejected == v->rejected, "%s: pair (%d, %d), want (%d, %d)", v->name, p.chosen,
             p.rejected, v->chosen, v->rejected);
      EXPECT(w == v->weight, "%s: weight %.17g, want %.17g", v->name, w, v->weight);
    }
  }
  EXPECT(total.pairs == want[V_MADE] && total.one_answer == want[V_ONE] && total.tie == want[V_TIE] &&
         total.below_threshold == want[V_BELOW] && total.no_answer == no_answer,
         "totals: %lld pairs, %lld one answer, %lld ties, %lld below, %lld unanswered", (long long)total.pairs,
         (long long)total.one_answer, (long long)total.tie, (long long)total.below_threshold,
         (long long)total.no_answer);
  EXPECT_NEAR(total.weight_sum, 2.0 / 6 * 2 + 2.0 / 7 + 1.0 / 5 + 2.0 / 4, 1e-15);
  srlm_pair p;
  double w;
  int made;
  const char *a[2] = {"1", "2"};
  EXPECT_EQ_INT(srlm_pairs_votes(1.5, 2, a, &p, &w, &made, NULL), SRLM_ERR_CONFIG);
  EXPECT_EQ_INT(srlm_pairs_votes(NAN, 2, a, &p, &w, &made, NULL), SRLM_ERR_CONFIG);
}

/* Kendall's tau-b against values worked out by hand (scipy.stats.kendalltau agrees). */
static void test_kendall(void) {
  const double up[4] = {1, 2, 3, 4}, down[4] = {4, 3, 2, 1}, swap[4] = {1, 3, 2, 4};
  EXPECT_NEAR(srlm_kendall_tau_b(4, up, up), 1, 0);
  EXPECT_NEAR(srlm_kendall_tau_b(4, up, down), -1, 0);
  EXPECT_NEAR(srlm_kendall_tau_b(4, up, swap), 2.0 / 3, 1e-15); /* 5 concordant, 1 discordant of 6 */
  /* ties: (1,2,2,3) vs (1,2,3,3): 4 concordant, 0 discordant, one tie on each side: 4 / sqrt(5 x 5) */
  const double ta[4] = {1, 2, 2, 3}, tb[4] = {1, 2, 3, 3};
  EXPECT_NEAR(srlm_kendall_tau_b(4, ta, tb), 0.8, 1e-15);
  /* ties on one side only: (1,1,2) vs (1,2,3): n_c 2, n_0 3, t_a 1: 2 / sqrt(2 x 3) */
  const double oa[3] = {1, 1, 2}, ob[3] = {1, 2, 3};
  EXPECT_NEAR(srlm_kendall_tau_b(3, oa, ob), 2.0 / sqrt(6.0), 1e-15);
  /* items not finite on either side are left out */
  const double na[4] = {1, NAN, 2, 3}, nb[4] = {3, 0, 2, 1};
  EXPECT_NEAR(srlm_kendall_tau_b(4, na, nb), -1, 0);
  /* an all-tied side has no ranking: undefined, consistency 1/2 */
  const double flat[4] = {2, 2, 2, 2};
  EXPECT(isnan(srlm_kendall_tau_b(4, flat, up)), "tau with an all-tied side: %g", srlm_kendall_tau_b(4, flat, up));
  EXPECT(isnan(srlm_kendall_tau_b(1, up, up)), "tau of one item");
  EXPECT_NEAR(srlm_rank_consistency(4, flat, up), 0.5, 0);
  EXPECT_NEAR(srlm_rank_consistency(4, up, swap), (2.0 / 3 + 1) / 2, 1e-15);
  EXPECT_NEAR(srlm_rank_consistency(4, up, down), 0, 0);
}

/* DICE's length alpha: the smallest alpha whose pairs' mean chosen length is not above the
 * mean rejected length, on prompts worked out by hand. */
static void test_length_alpha(void) {
  /* one prompt: 3 - 10 a = 2 - 2 a at a = 1/8; above it the short answer is chosen */
  const double s1[2] = {3, 2};
  const int64_t l1[2] = {10, 2};
  EXPECT_NEAR(srlm_length_alpha(1, 2, s1, l1), 0.125, 1e-12);
  /* two prompts: P1 (3, 2) lengths (10, 8) flips at 1/2 (D1 +2 -> -2), P2 (5, 1) lengths
   * (12, 2) flips at 2/5 (D2 +10 -> -10): the mean gap (D1 + D2) / 2 turns <= 0 at 2/5 */
  const double s2[4] = {3, 2, 5, 1};
  const int64_t l2[4] = {10, 8, 12, 2};
  EXPECT_NEAR(srlm_length_alpha(2, 2, s2, l2), 0.4, 1e-12);
  /* chosen already shorter on average: 0; unscored samples are never picked */
  const double s3[3] = {5, 1, NAN};
  const int64_t l3[3] = {2, 9, 100};
  EXPECT_NEAR(srlm_length_alpha(1, 3, s3, l3), 0, 0);
  const double s4[2] = {NAN, NAN};
  EXPECT_NEAR(srlm_length_alpha(1, 2, s4, l3), 0, 0);
}

/* DAPO's refill rounds: hand-counted cases of srlm_refill_next. */
static void test_refill(void) {
  static const struct {
    const char *name;
    int64_t target, informative, generated, extra_done, cap;
    int rounds_done, max_rounds, per;
    int64_t want;
  } k[] = {
      {"enough groups: no round", 48, 48, 48, 0, 48, 0, 3, 8, 0},
      {"more than enough: no round", 48, 50, 64, 16, 48, 1, 3, 8, 0},
      {"rounds spent", 48, 10, 96, 48, 96, 3, 3, 8, 0},
      {"cap spent", 48, 10, 96, 48, 48, 1, 3, 8, 0},
      /* 24 of 48 informative: need 24 at rate 1/2 -> 48 prompts, 6 shards of 8 */
      {"half informative", 48, 24, 48, 0, 48, 0, 3, 8, 48},
      /* 36 of 48: need 12 -> 12 x 48 / 36 = 16 */
      {"three quarters", 48, 36, 48, 0, 48, 0, 3, 8, 16},
      /* need 12 x 48 / 36 = 16 -> rounded up to whole shards of 10: 20 */
      {"whole shards", 48, 36, 48, 0, 48, 0, 3, 10, 20},
      /* 47 of 48: 1 x 48 / 47 -> 2 (rounded up), then one shard of 8 */
      {"one missing", 48, 47, 48, 0, 48, 0, 3, 8, 8},
      /* nothing informative: all of the cap left */
      {"none informative", 48, 0, 48, 8, 48, 1, 3, 8, 40},
      /* 6 of 48: need 42 x 48 / 6 = 336, cut at the 48 - 16 = 32 left */
      {"cut at the cap", 48, 6, 64, 16, 48, 1, 3, 8, 32},
      /* the cap itself need not be whole shards: 5 left */
      {"partial last shard", 48, 40, 91, 43, 48, 2, 5, 8, 5},
  };
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
    int64_t got = srlm_refill_next(k[i].target, k[i].informative, k[i].generated, k[i].extra_done, k[i].cap,
                                   k[i].rounds_done, k[i].max_rounds, k[i].per);
    EXPECT(got == k[i].want, "refill \"%s\": %lld extra prompts, expected %lld", k[i].name, (long long)got,
           (long long)k[i].want);
  }
}

int main(void) {
  test_refill();
  test_votes();
  test_kendall();
  test_length_alpha();
  test_pair_table();
  test_pair_bytes_and_errors();
  test_group_table();
  test_group_batch_std_and_eps();
  TEST_MAIN_END();
}
