/* Rewards of include/srlm/rewards.h on hand-made inputs: SAR's R_SA from per-token
 * log-probs (against the ppl formula computed directly, the clip, the empty answer), and
 * sentence BLEU-4 against values computed by hand and by NLTK (tests/fixtures/bleu_nltk.py
 * wrote the table). */
#include <math.h>
#include <string.h>

#include "srlm/rewards.h"
#include "test.h"

/* (ppl(a) - ppl(a|q)) / ppl(a) straight from the definition, clipped. */
static double sar_direct(const float *q, const float *a, int n) {
  double sq = 0, sa = 0;
  for (int t = 0; t < n; t++) {
    sq += q[t];
    sa += a[t];
  }
  double ppl_q = exp(-sq / n), ppl_a = exp(-sa / n), r = (ppl_a - ppl_q) / ppl_a;
  return r < -1 ? -1 : r > 1 ? 1 : r;
}

static void test_sar(void) {
  static const struct {
    const char *name;
    int n;
    float q[4], a[4];
    double want; /* by hand */
  } k[] = {
      {"query helps", 2, {-0.5f, -0.5f}, {-1.0f, -1.0f}, 0.39346934028736658 /* 1 - e^-0.5 */},
      {"no difference", 3, {-0.7f, -0.1f, -2.0f}, {-2.0f, -0.7f, -0.1f}, 0},
      {"query hurts a little", 1, {-1.2f}, {-1.0f}, -0.22140275816016985 /* 1 - e^0.2 */},
      {"query hurts a lot: clipped", 2, {-3.0f, -3.0f}, {-1.0f, -1.0f}, -1},
      /* mean NLLs 2/4 = 0.5 after the query, 4/4 = 1 alone */
      {"uneven tokens", 4, {-0.25f, -1.0f, -0.5f, -0.25f}, {-1.0f, -2.0f, -0.5f, -0.5f}, 0.39346934028736658},
  };
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
    double nq, na;
    double r = srlm_sar_reward(k[i].q, k[i].a, k[i].n, &nq, &na);
    double want = k[i].want;
    EXPECT_NEAR(r, want, 1e-7);
    EXPECT_NEAR(r, sar_direct(k[i].q, k[i].a, k[i].n), 1e-7);
    double sq = 0, sa = 0;
    for (int t = 0; t < k[i].n; t++) {
      sq -= k[i].q[t];
      sa -= k[i].a[t];
    }
    EXPECT_NEAR(nq, sq / k[i].n, 1e-7);
    EXPECT_NEAR(na, sa / k[i].n, 1e-7);
    if (fabs(r - want) > 1e-7) fprintf(stderr, "  case %s\n", k[i].name);
  }
  /* the empty answer */
  double nq = 1, na = 1;
  EXPECT(srlm_sar_reward(NULL, NULL, 0, &nq, &na) == 0 && nq == 0 && na == 0, "empty answer: R_SA 0, NLLs 0");
  /* an answer impossible alone is as helped as it gets; impossible after the query: -1 */
  float zero[1] = {-0.5f}, ninf[1] = {-INFINITY};
  EXPECT_NEAR(srlm_sar_reward(zero, ninf, 1, NULL, NULL), 1, 0);
  EXPECT_NEAR(srlm_sar_reward(ninf, zero, 1, NULL, NULL), -1, 0);
}

typedef struct bleu_case {
  srlm_bleu_tokens mode;
  const char *cand;
  const char *refs[2];
  int n_refs;
  double want;
} bleu_case;

/* python3 tests/fixtures/bleu_nltk.py */
static const bleu_case k_nltk[] = {
    {SRLM_BLEU_WORDS, "the cat sat on the mat", {"the cat is on the mat"}, 1, 0.25406637407730737},
    {SRLM_BLEU_WORDS, "the cat sat on the mat", {"a cat sat on a mat", "there is a cat on the mat"}, 2, 0.32466791547509893},
    {SRLM_BLEU_WORDS, "on the mat", {"the cat is on the mat"}, 1, 0.20687381245863395},
    {SRLM_BLEU_WORDS, "a dog", {"the cat is on the mat"}, 1, 0},
    {SRLM_BLEU_WORDS, "the the the the the the the", {"the cat is on the mat"}, 1, 0.039281465090051315},
    {SRLM_BLEU_WORDS, "the cat is on the mat today and tomorrow", {"the cat is on the mat", "the cat"}, 2, 0.58739490946992134},
    {SRLM_BLEU_CHARS, "6+3+7-1", {"6+3+7-1"}, 1, 1},
    {SRLM_BLEU_CHARS, "6+3-7-1", {"6+3+7-1", "6-3+7+1"}, 2, 0.274941620352113},
    {SRLM_BLEU_CHARS, "6+", {"6+3+7-1"}, 1, 0.025957555738330737},
    {SRLM_BLEU_CHARS, "(25-4)*3-7", {"(25-4)*3-7"}, 1, 1},
    {SRLM_BLEU_CHARS, "25-4*3-7 ", {"(25-4)*3-7"}, 1, 0.53849523560640833},
    {SRLM_BLEU_CHARS, "caf\xc3\xa9 au lait", {"caf\xc3\xa9 noir"}, 1, 0.27776190340117912},
};

static void test_bleu(void) {
  /* by hand: "the cat sat on the mat" vs "the cat is on the mat": p1 = 5/6, p2 = 3/5,
     p3 = 1/4, p4 = 0 -> 0.1/3 (method 1), c = r = 6 so BP = 1 */
  const char *ref = "the cat is on the mat";
  double hand = pow(5.0 / 6 * 3.0 / 5 * 1.0 / 4 * 0.1 / 3, 0.25);
  const char *c1 = "the cat sat on the mat";
  EXPECT_NEAR(srlm_bleu(c1, strlen(c1), &ref, NULL, 1, SRLM_BLEU_WORDS), hand, 1e-12);
  /* by hand, the brevity penalty: "on the mat" (c = 3) vs 6 words: p1 = p2 = p3 = 1, no
     4-gram (d4 = max(1, 0) = 1 -> 0.1), BP = exp(1 - 6/3) */
  const char *c2 = "on the mat";
  EXPECT_NEAR(srlm_bleu(c2, strlen(c2), &ref, NULL, 1, SRLM_BLEU_WORDS), exp(1 - 2.0) * pow(0.1, 0.25), 1e-12);
  /* whitespace of any kind separates words; an empty candidate scores 0 */
  const char *c3 = "  the\tcat sat\non the   mat ";
  EXPECT_NEAR(srlm_bleu(c3, strlen(c3), &ref, NULL, 1, SRLM_BLEU_WORDS), hand, 1e-12);
  EXPECT(srlm_bleu("", 0, &ref, NULL, 1, SRLM_BLEU_WORDS) == 0, "empty candidate");
  EXPECT(srlm_bleu("  ", 2, &ref, NULL, 1, SRLM_BLEU_CHARS) == 0, "blank candidate");
  /* lengths given: the bytes past them do not count (3 tokens equal to the reference:
     p1 = p2 = p3 = 1, no 4-gram: 0.1) */
  size_t rl = 3;
  EXPECT_NEAR(srlm_bleu("6+3+7-1", 3, (const char *[]){"6+3XXXX"}, &rl, 1, SRLM_BLEU_CHARS), pow(0.1, 0.25), 1e-12);
  for (size_t i = 0; i < sizeof k_nltk / sizeof k_nltk[0]; i++) {
    const bleu_case *b = &k_nltk[i];
    double got = srlm_bleu(b->cand, strlen(b->cand), b->refs, NULL, b->n_refs, b->mode);
    EXPECT(fabs(got - b->want) <= 1e-12, "case %zu \"%s\": BLEU %.17g, NLTK %.17g", i, b->cand, got, b->want);
    EXPECT(got >= 0 && got <= 1, "case %zu: %g outside [0, 1]", i, got);
  }
}

int main(void) {
  test_sar();
  test_bleu();
  TEST_MAIN_END();
}
