/* Pair selection and group advantages: table-driven cases for every rule of
 * include/srlm/pairs.h (extremes, lowest-index ties, unscored, ties, margins, equal
 * texts, Meta-Rewarding length control) and GRPO / Dr.GRPO advantages. */
#include <math.h>

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
    char distinct[MAXK][8];
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
    srlm_group_options o = {cases[c].use_std, SRLM_GROUP_STD_EPS};
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
  srlm_group_options o = {1, SRLM_GROUP_STD_EPS};
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

int main(void) {
  test_pair_table();
  test_pair_bytes_and_errors();
  test_group_table();
  TEST_MAIN_END();
}
