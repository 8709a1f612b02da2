/* ScPO's final answers (src/roles/rollout.h sr_answer_key) on hand-made samples: the sign
 * puzzle's answer text when it has the answer's form, Countdown's exact value of an
 * expression the checker parses with the allowed numbers, nothing for samples cut off
 * before EOS, malformed answers or prompt sets without a checker. */
#include <string.h>

#include "../../src/roles/rollout.h"
#include "test.h"

/* A shard of one prompt (prompt_index 0) and one response with the given flags. */
static void one_sample(srlm_shard *s, uint32_t flags) {
  static int64_t prompt_index[1] = {0}, response_prompt[1] = {0};
  static uint32_t f[1];
  f[0] = flags;
  memset(s, 0, sizeof *s);
  s->n_prompts = 1;
  s->n_responses = 1;
  s->prompt_index = prompt_index;
  s->response_prompt = response_prompt;
  s->flags = f;
}

typedef struct key_case {
  const char *text;
  uint32_t flags;
  const char *want; /* NULL: no answer */
} key_case;

static void check(const sr_rollout *r, const char *what, const key_case *k, int n) {
  for (int i = 0; i < n; i++) {
    srlm_shard s;
    one_sample(&s, k[i].flags);
    char key[SR_ANSWER_KEY_MAX] = "";
    const int got = sr_answer_key(r, &s, 0, k[i].text, strlen(k[i].text), key);
    if (!k[i].want)
      EXPECT(!got, "%s \"%s\": answer \"%s\", want none", what, k[i].text, key);
    else
      EXPECT(got && strcmp(key, k[i].want) == 0, "%s \"%s\": %s \"%s\", want \"%s\"", what, k[i].text,
             got ? "answer" : "no answer", key, k[i].want);
  }
}

int main(void) {
  srlm_config cfg;
  srlm_config_init(&cfg);
  sr_rollout r = {.cfg = &cfg, .task = &srlm_task_sign_ops}; /* the built-in sign puzzle */
  static const key_case sign[] = {
      {"6+3+7-1", SRLM_SHARD_F_EOS, "6+3+7-1"},
      {"6+3+7-1<|endoftext|>", SRLM_SHARD_F_EOS, "6+3+7-1"}, /* the EOS written out, as the checker reads it */
      {"9-9-9-9", SRLM_SHARD_F_EOS, "9-9-9-9"},               /* another puzzle's digits: a wrong answer, still one */
      {"6+3+7-1", SRLM_SHARD_F_TRUNCATED, NULL},              /* cut off: no final answer */
      {"6+3+7", SRLM_SHARD_F_EOS, NULL},
      {"6*3+7-1", SRLM_SHARD_F_EOS, NULL},
      {"6+3+7-1-", SRLM_SHARD_F_EOS, NULL},
      {"", SRLM_SHARD_F_EOS, NULL},
  };
  check(&r, "sign puzzle", sign, (int)(sizeof sign / sizeof sign[0]));

  /* a Countdown prompt set: numbers 14, 2, 18, target 126 */
  char instr[] = "C14,2,18T126A";
  char *instructions[1] = {instr};
  srlm_prompt_set set = {.n = 1, .instruction = instructions};
  r.prompts = &set;
  cfg.data.checker = SRLM_CFG_CHECKER_COUNTDOWN;
  static const key_case cd[] = {
      {"18*14/2", SRLM_SHARD_F_EOS, "126"}, /* right */
      {"14*18/2", SRLM_SHARD_F_EOS, "126"}, /* another expression, the same answer: the same vote */
      {"(18-14)*2", SRLM_SHARD_F_EOS, "8"}, /* a wrong value is still an answer */
      {"2*(18-14)", SRLM_SHARD_F_EOS, "8"},
      {"14+14", SRLM_SHARD_F_EOS, NULL},    /* a number used twice */
      {"18*7", SRLM_SHARD_F_EOS, NULL},     /* a number not given */
      {"18*(14", SRLM_SHARD_F_EOS, NULL},   /* malformed */
      {"18*14/2", SRLM_SHARD_F_STOP, NULL}, /* not stopped at EOS */
  };
  check(&r, "countdown", cd, (int)(sizeof cd / sizeof cd[0]));
  cfg.data.checker = SRLM_CFG_CHECKER_NONE; /* a prompt set without a checker has no answers */
  check(&r, "no checker", (const key_case[]){{"18*14/2", SRLM_SHARD_F_EOS, NULL}}, 1);
  srlm_config_free(&cfg);
  TEST_MAIN_END();
}
