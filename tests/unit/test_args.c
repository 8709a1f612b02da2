/* ARGS reward-guided decoding (generate.h): the candidates (top-k by logit, ties to the
 * lower id), the choice on hand-made logits and rewards (greedy argmax of logit + w
 * reward, the softmax(score / T) probabilities, draws keyed by (seed, seq, step)), and
 * srlm_generate with ARGS: weight 0 is greedy decoding, a callback reward can force a
 * token, the implicit reward against the model itself changes nothing, and sampled ARGS
 * outputs do not depend on the batch size. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/generate.h"
#include "test.h"
#include "tiny_model.h"

static void test_candidates(void) {
  const float l[7] = {1, 3, 3, 2, -INFINITY, 0, 3};
  int32_t c[7];
  srlm_args_candidates(l, 7, 4, c);
  EXPECT(c[0] == 1 && c[1] == 2 && c[2] == 6 && c[3] == 3, "top-4 of {1,3,3,2,-inf,0,3}: %d %d %d %d (want 1 2 6 3)",
         c[0], c[1], c[2], c[3]);
  srlm_args_candidates(l, 7, 2, c);
  EXPECT(c[0] == 1 && c[1] == 2, "top-2 ties: %d %d (want 1 2)", c[0], c[1]);
  srlm_args_candidates(l, 7, 7, c);
  EXPECT(c[5] == 5 && c[6] == 4, "the whole row ends with 0 then -inf: %d %d", c[5], c[6]);
}

static void test_choose(void) {
  const float lg[3] = {3, 3, 2};
  const double r0[3] = {0, 0, 1};
  int pick;
  double lp;
  EXPECT_EQ_INT(srlm_args_choose(3, lg, r0, 0.0, 0.0f, 1, 0, 0, &pick, &lp), SRLM_OK);
  EXPECT_EQ_INT(pick, 0); /* w = 0: the argmax, the first of a tie */
  EXPECT_NEAR(lp, 0, 0);
  EXPECT_EQ_INT(srlm_args_choose(3, lg, r0, 2.0, 0.0f, 1, 0, 0, &pick, &lp), SRLM_OK);
  EXPECT_EQ_INT(pick, 2); /* 2 + 2 x 1 beats 3 */
  EXPECT_EQ_INT(srlm_args_choose(3, lg, r0, 0.5, 0.0f, 1, 0, 0, &pick, &lp), SRLM_OK);
  EXPECT_EQ_INT(pick, 0); /* 2.5 < 3 */
  /* sampled: scores {0, ln 3}: probabilities 1/4, 3/4 */
  const float l2[2] = {0, 0};
  const double r2[2] = {0, log(3.0)};
  int count1 = 0;
  const int N = 4000;
  for (int s = 0; s < N; s++) {
    EXPECT_EQ_INT(srlm_args_choose(2, l2, r2, 1.0, 1.0f, 7, (uint64_t)s, 3, &pick, &lp), SRLM_OK);
    EXPECT_NEAR(lp, pick ? log(0.75) : log(0.25), 1e-12);
    count1 += pick;
    int again;
    double lp2;
    srlm_args_choose(2, l2, r2, 1.0, 1.0f, 7, (uint64_t)s, 3, &again, &lp2);
    if (again != pick) EXPECT(0, "seq %d: the same key drew %d then %d", s, pick, again);
  }
  EXPECT(fabs(count1 / (double)N - 0.75) < 0.03, "candidate 1 drawn %d of %d times (p = 0.75)", count1, N);
  /* temperature 2 flattens: probabilities 1/(1 + sqrt 3), sqrt 3/(1 + sqrt 3) */
  srlm_args_choose(2, l2, r2, 1.0, 2.0f, 7, 11, 0, &pick, &lp);
  EXPECT_NEAR(lp, pick ? log(sqrt(3.0) / (1 + sqrt(3.0))) : log(1 / (1 + sqrt(3.0))), 1e-12);
  const double rn[2] = {0, NAN};
  EXPECT_EQ_INT(srlm_args_choose(2, l2, rn, 1.0, 1.0f, 7, 0, 0, &pick, &lp), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "candidate 1");
}

/* A callback reward: 1 for token `want`, 0 otherwise; counts its calls. */
typedef struct favor {
  int32_t want;
  int64_t calls;
} favor;
static srlm_status favor_reward(void *user, int req, const int32_t *ids, int64_t n, const int32_t *cand, int k,
                                double *reward) {
  favor *f = user;
  (void)req, (void)ids, (void)n;
  f->calls++;
  for (int j = 0; j < k; j++) reward[j] = cand[j] == f->want;
  return SRLM_OK;
}

#define NR 5
static void run(srlm_model *m, const srlm_generate_params *p, const srlm_gen_request *req, srlm_gen_result *res) {
  EXPECT(srlm_generate(m, p, NR, req, res, NULL) == SRLM_OK, "generate: %s", srlm_error_message());
}

static int same(const srlm_gen_result *a, const srlm_gen_result *b) {
  for (int i = 0; i < NR; i++)
    if (a[i].n != b[i].n || memcmp(a[i].ids, b[i].ids, (size_t)a[i].n * sizeof *a[i].ids)) return 0;
  return 1;
}

static void free_all(srlm_gen_result *r) {
  for (int i = 0; i < NR; i++) srlm_gen_result_free(&r[i]);
}

static void test_generate(void) {
  srlm_model *m = tiny_model_with_vocab(19);
  int32_t prompts[NR][4];
  srlm_gen_request req[NR];
  for (int i = 0; i < NR; i++) {
    for (int t = 0; t < 4; t++) prompts[i][t] = (int32_t)((3 * i + 5 * t + 1) % 19);
    req[i] = (srlm_gen_request){.prompt = prompts[i], .n_prompt = 4, .seq_id = (uint64_t)(100 + i)};
  }
  srlm_generate_params p = srlm_generate_params_default();
  p.max_new_tokens = 8;
  p.max_batch = NR;
  p.sampler.temperature = 0;
  srlm_gen_result plain[NR], a[NR], b[NR];
  run(m, &p, req, plain);
  /* weight 0: ARGS is greedy decoding */
  favor f = {.want = 5};
  srlm_args_params ap = {.weight = 0.0, .top_k = 4, .reward = favor_reward, .user = &f};
  p.args = &ap;
  run(m, &p, req, a);
  EXPECT(same(plain, a), "ARGS with weight 0 differs from greedy decoding");
  EXPECT_EQ_INT(f.calls, NR * 8); /* one call per sequence and step */
  free_all(a);
  /* a large weight on token 5 over the whole vocabulary: every token is 5 */
  ap.weight = 100;
  ap.top_k = 19;
  run(m, &p, req, a);
  int all5 = 1;
  for (int i = 0; i < NR; i++)
    for (int64_t t = 0; t < a[i].n; t++) all5 &= a[i].ids[t] == 5;
  EXPECT(all5 && a[0].n == 8, "the favored token was not always chosen");
  EXPECT_NEAR(a[0].sample_logprobs[0], 0, 0); /* greedy */
  free_all(a);
  /* implicit reward against the model itself: 0 for every candidate, so greedy again */
  srlm_args_params ip = {.weight = 3.0, .top_k = 4, .ref = m};
  p.args = &ip;
  run(m, &p, req, a);
  EXPECT(same(plain, a), "ARGS implicit against the model itself differs from greedy decoding");
  free_all(a);
  /* sampled ARGS: the same tokens whatever the batch */
  srlm_model *other = tiny_model_with_vocab(19); /* the same weights: seed 7 */
  float *w = malloc(srlm_model_num_params(other) * sizeof *w);
  SRLM_CHECK(srlm_model_get_params(other, w, 0, srlm_model_num_params(other)) == SRLM_OK);
  for (size_t i = 0; i < srlm_model_num_params(other); i += 3) w[i] *= 0.5f; /* a different reference */
  SRLM_CHECK(srlm_model_set_params(other, w, 0, srlm_model_num_params(other)) == SRLM_OK);
  free(w);
  ip.ref = other;
  ip.weight = 1.0;
  p.sampler.temperature = 1.0f;
  p.sampler.seed = 9;
  run(m, &p, req, a);
  p.max_batch = 1;
  run(m, &p, req, b);
  EXPECT(same(a, b), "sampled ARGS depends on the batch size");
  for (int i = 0; i < NR; i++)
    for (int64_t t = 0; t < a[i].n; t++)
      if (!(a[i].sample_logprobs[t] <= 0 && a[i].logprobs[t] <= 0)) EXPECT(0, "seq %d token %lld: log-probs %g %g", i,
                                                                           (long long)t, a[i].sample_logprobs[t],
                                                                           a[i].logprobs[t]);
  free_all(a);
  free_all(b);
  /* errors */
  ip.top_k = 0;
  EXPECT_EQ_INT(srlm_generate(m, &p, NR, req, a, NULL), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "args_top_k");
  ip.top_k = 4;
  ip.reward = favor_reward;
  EXPECT_EQ_INT(srlm_generate(m, &p, NR, req, a, NULL), SRLM_ERR_INTERNAL);
  free_all(plain);
  srlm_model_free(other);
  srlm_model_free(m);
}

int main(void) {
  test_candidates();
  test_choose();
  test_generate();
  TEST_MAIN_END();
}
