/* The text LLM judge (llm_judge.h) on a tiny random Llama built here over the
 * printable-ASCII ChatML tokenizer of tests/fixtures/sft/chatml_tokenizer.
 *   - create: the default template (configs/judge/additive5.txt) renders through the
 *     chat format to the exact user turn; a template with an unknown placeholder, a
 *     missing template and a bad regex are errors naming what;
 *   - run with the score regex "([0-9])" (a random model writes digits often, so real
 *     generated judgments parse, clamp and fail to parse): every score equals an
 *     independent re-parse (last digit, clamped to 5), means are the means of the
 *     parsable ones, the stats counts agree with the scores, texts are the decoded ids;
 *   - randomness: the same key gives the same judgments whatever n, the order, the
 *     subset, the batch size and J; other keys give other judgments;
 *   - the parse/mean path on hand-written judgments with the default regex;
 *   - ill-formed UTF-8 in a response is replaced, not an error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/llm_judge.h"
#include "test.h"

#define MAX_NEW 16

static const char *source_path(char *buf, size_t n, const char *rel) {
  const char *src = getenv("SRLM_SOURCE_DIR");
  snprintf(buf, n, "%s/%s", src ? src : ".", rel);
  return buf;
}

static const char *write_tmp(const char *name, const char *text) {
  static char path[4][1024];
  static int k;
  char *p = path[k++ % 4];
  test_tmp_path(p, 1024, name);
  FILE *f = fopen(p, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
  return p;
}

static void set(srlm_config *cfg, const char *key, const char *value) {
  char arg[2048];
  snprintf(arg, sizeof arg, "%s=%s", key, value);
  srlm_status st = srlm_config_set(cfg, arg);
  EXPECT(st == SRLM_OK, "%s: %s", arg, srlm_error_message());
}

static void base_config(srlm_config *cfg) {
  char buf[1024];
  srlm_config_init(cfg);
  set(cfg, "tokenizer.path", source_path(buf, sizeof buf, "tests/fixtures/sft/chatml_tokenizer"));
  set(cfg, "judge.template", source_path(buf, sizeof buf, "configs/judge/additive5.txt"));
  set(cfg, "run.seed", "99");
}

static srlm_model *tiny_model(void) {
  srlm_model_config c;
  srlm_model_config_defaults(&c, SRLM_MODEL_LLAMA);
  c.vocab_size = 99;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 2048;
  c.tie_word_embeddings = false;
  srlm_model *m = NULL;
  srlm_status st = srlm_model_config_finalize(&c, "test");
  if (st == SRLM_OK) st = srlm_model_create(&c, 11, srlm_backend_cpu(), SRLM_F32, &m);
  EXPECT(st == SRLM_OK, "create: %s", srlm_error_message());
  return m;
}

/* ---- create and render ------------------------------------------------------------------ */

static void test_create(srlm_tokenizer *tok, const srlm_chat_format *chat) {
  srlm_config cfg;
  base_config(&cfg);
  srlm_llm_judge *jd;
  srlm_status st = srlm_llm_judge_create(&cfg, tok, chat, &jd);
  EXPECT(st == SRLM_OK, "default template: %s", srlm_error_message());
  if (st == SRLM_OK) {
    srlm_token_ids ids = {0};
    char *text;
    st = srlm_llm_judge_encode(jd, "Add 2 and 3.", "It is {prompt} 5.", &ids, &text);
    EXPECT(st == SRLM_OK, "%s", srlm_error_message());
    if (st == SRLM_OK) {
      char *tmpl, *user;
      char path[1024];
      EXPECT(srlm_judge_template_load(source_path(path, sizeof path, "configs/judge/additive5.txt"), &tmpl) == SRLM_OK,
             "%s", srlm_error_message());
      EXPECT(srlm_judge_render("t", tmpl, "Add 2 and 3.", "It is {prompt} 5.", &user) == SRLM_OK, "%s",
             srlm_error_message());
      size_t n = strlen(user) + 64;
      char *want = malloc(n);
      snprintf(want, n, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", user);
      EXPECT_STR_EQ(text, want);
      EXPECT_CONTAINS(text, "User request:\nAdd 2 and 3.\n\nAssistant reply:\nIt is {prompt} 5.\n");
      srlm_token_ids again = {0};
      EXPECT(srlm_tokenizer_encode(tok, text, strlen(text), &again) == SRLM_OK, "%s", srlm_error_message());
      EXPECT(again.n == ids.n && memcmp(again.ids, ids.ids, ids.n * sizeof *ids.ids) == 0,
             "ids (%zu) are not the encoding of the text (%zu)", ids.n, again.n);
      EXPECT_EQ_INT(ids.ids[0], 1); /* <|im_start|> */
      srlm_token_ids_free(&again);
      free(want);
      free(user);
      free(tmpl);
      free(text);
    }
    srlm_token_ids_free(&ids);
    srlm_llm_judge_free(jd);
  }
  /* raw: the rendered template itself */
  const char *tpath = write_tmp("raw.txt", "Q: {prompt}\nA: {response}\nScore:");
  set(&cfg, "judge.template", tpath);
  st = srlm_llm_judge_create(&cfg, tok, NULL, &jd);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    char *text;
    st = srlm_llm_judge_encode(jd, "1+1?", "2", NULL, &text);
    EXPECT(st == SRLM_OK, "%s", srlm_error_message());
    if (st == SRLM_OK) EXPECT_STR_EQ(text, "Q: 1+1?\nA: 2\nScore:");
    if (st == SRLM_OK) free(text);
    /* ill-formed UTF-8 (a generation cut inside a character) becomes U+FFFD per byte */
    st = srlm_llm_judge_encode(jd, "x", "ab\xe2\x82 c\xff", NULL, &text);
    EXPECT(st == SRLM_OK, "%s", srlm_error_message());
    if (st == SRLM_OK) EXPECT_STR_EQ(text, "Q: x\nA: ab\xef\xbf\xbd\xef\xbf\xbd c\xef\xbf\xbd\nScore:");
    if (st == SRLM_OK) free(text);
    srlm_llm_judge_free(jd);
  }
  /* errors */
  tpath = write_tmp("unknown.txt", "Rate {response} for {prompt} with {answer}.");
  set(&cfg, "judge.template", tpath);
  st = srlm_llm_judge_create(&cfg, tok, chat, &jd);
  EXPECT(st == SRLM_ERR_CONFIG, "unknown placeholder accepted (status %d)", (int)st);
  EXPECT_CONTAINS(srlm_error_message(), tpath);
  EXPECT_CONTAINS(srlm_error_message(), "unknown placeholder {answer}");
  EXPECT(jd == NULL, "a failed create returned a judge");
  tpath = write_tmp("noresp.txt", "Rate the answer to {prompt}.");
  set(&cfg, "judge.template", tpath);
  st = srlm_llm_judge_create(&cfg, tok, chat, &jd);
  EXPECT(st == SRLM_ERR_CONFIG, "template without {response} accepted");
  EXPECT_CONTAINS(srlm_error_message(), "{response}");
  set(&cfg, "judge.template", "/nonexistent/judge.txt");
  st = srlm_llm_judge_create(&cfg, tok, chat, &jd);
  EXPECT(st == SRLM_ERR_IO, "missing template: status %d", (int)st);
  EXPECT_CONTAINS(srlm_error_message(), "/nonexistent/judge.txt");
  set(&cfg, "judge.template", write_tmp("ok.txt", "{prompt} {response}"));
  set(&cfg, "judge.score_regex", "'Score: ([0-9]'");
  st = srlm_llm_judge_create(&cfg, tok, chat, &jd);
  EXPECT(st == SRLM_ERR_CONFIG, "bad regex accepted");
  EXPECT_CONTAINS(srlm_error_message(), "judge.score_regex");
  srlm_config_free(&cfg);
}

/* ---- runs on generated judgments ----------------------------------------------------------- */

/* The score the regex "([0-9])" with range [0, 5] must give: the last digit, clamped. */
static double reparse(const char *text, size_t len, int *clamped) {
  *clamped = 0;
  for (size_t i = len; i-- > 0;)
    if (text[i] >= '0' && text[i] <= '9') {
      int d = text[i] - '0';
      *clamped = d > 5;
      return d > 5 ? 5.0 : (double)d;
    }
  return NAN;
}

static int same_judgment(const srlm_llm_judgment *a, const srlm_llm_judgment *b) {
  return a->n_ids == b->n_ids && memcmp(a->ids, b->ids, (size_t)a->n_ids * sizeof *a->ids) == 0 &&
         a->text_len == b->text_len && memcmp(a->text, b->text, a->text_len) == 0 &&
         ((isnan(a->score) && isnan(b->score)) || a->score == b->score);
}

#define N_RESP 6
#define J_JUDGE 3

static void test_run(srlm_tokenizer *tok, const srlm_chat_format *chat, srlm_model *m) {
  srlm_config cfg;
  base_config(&cfg);
  set(&cfg, "judge.template", write_tmp("short.txt", "Rate 0-5.\nQ: {prompt}\nA: {response}\n"));
  set(&cfg, "judge.score_regex", "'([0-9])'");
  set(&cfg, "judge.temperature", "1.0");
  set(&cfg, "judge.max_new_tokens", "16");
  srlm_llm_judge *jd;
  srlm_status st = srlm_llm_judge_create(&cfg, tok, chat, &jd);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) {
    srlm_config_free(&cfg);
    return;
  }
  const char *instr[N_RESP] = {"1+1?", "Name a color.", "1+1?", "Say hi.", "2*3?", "Why?"};
  const char *resp[N_RESP] = {"2", "Blue.", "2", "Hi!", "6", "Because."};
  /* responses 0 and 2 are equal texts with equal keys; the others differ */
  const uint64_t keys[N_RESP] = {0x5e11000100000000ull, 0x5e11000100000001ull, 0x5e11000100000000ull,
                                 0x5e11000100000003ull, 0x5e11000100000004ull, 0x5e11000100000005ull};
  srlm_llm_judgment out[N_RESP * J_JUDGE];
  double mean[N_RESP];
  srlm_judge_stats stats = {0};
  st = srlm_llm_judge_run(jd, m, N_RESP, instr, resp, keys, J_JUDGE, out, mean, &stats);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) goto done;

  /* scores against an independent re-parse, means, stats, texts vs ids */
  int64_t parsed = 0, unparsable = 0, clamped = 0, unscored = 0, tokens = 0;
  for (int i = 0; i < N_RESP; i++) {
    double sum = 0;
    int np = 0;
    for (int j = 0; j < J_JUDGE; j++) {
      const srlm_llm_judgment *o = &out[i * J_JUDGE + j];
      int cl;
      double want = reparse(o->text, o->text_len, &cl);
      EXPECT((isnan(want) && isnan(o->score)) || want == o->score,
             "response %d judgment %d \"%s\": score %g, expected %g", i, j, o->text, o->score, want);
      EXPECT_EQ_INT(o->clamped, cl);
      if (!isnan(want)) sum += want, np++, parsed++;
      else unparsable++;
      clamped += cl;
      tokens += o->n_ids;
      EXPECT(o->n_ids >= 1 && o->n_ids <= MAX_NEW, "judgment of %lld tokens", (long long)o->n_ids);
      int eos = o->stop == SRLM_STOP_EOS;
      if (eos) EXPECT_EQ_INT(o->ids[o->n_ids - 1], 2);
      else EXPECT(o->stop == SRLM_STOP_LENGTH && o->n_ids == MAX_NEW, "stop %d after %lld tokens", (int)o->stop,
                  (long long)o->n_ids);
      char *dec;
      size_t dlen;
      if (srlm_tokenizer_decode(tok, o->ids, (size_t)(o->n_ids - eos), &dec, &dlen) == SRLM_OK) {
        EXPECT(dlen == o->text_len && memcmp(dec, o->text, dlen) == 0, "text \"%s\" is not its ids \"%s\"", o->text,
               dec);
        free(dec);
      }
    }
    if (np == 0) {
      unscored++;
      EXPECT(isnan(mean[i]), "response %d: mean %g without a parsable judgment", i, mean[i]);
    } else {
      EXPECT_NEAR(mean[i], sum / np, 1e-12);
    }
  }
  EXPECT_EQ_INT(stats.judgments, N_RESP * J_JUDGE);
  EXPECT_EQ_INT(stats.parsed, parsed);
  EXPECT_EQ_INT(stats.unparsable, unparsable);
  EXPECT_EQ_INT(stats.clamped, clamped);
  EXPECT_EQ_INT(stats.candidates, N_RESP);
  EXPECT_EQ_INT(stats.unscored, unscored);
  EXPECT_EQ_INT(srlm_llm_judge_generate_stats(jd)->new_tokens, tokens);
  /* the machinery is exercised both ways (fixed seed: these are facts of this model) */
  fprintf(stderr, "generated judgments: %lld parsed (%lld clamped), %lld unparsable, %lld responses unscored\n",
          (long long)parsed, (long long)clamped, (long long)unparsable, (long long)unscored);
  EXPECT(parsed > 0 && unparsable > 0, "parsed %lld, unparsable %lld: the test no longer covers both paths",
         (long long)parsed, (long long)unparsable);
  /* equal key and text: equal judgments; other keys: other judgments */
  for (int j = 0; j < J_JUDGE; j++)
    EXPECT(same_judgment(&out[0 * J_JUDGE + j], &out[2 * J_JUDGE + j]), "equal keys, judgment %d differs", j);
  int differ = 0;
  for (int j = 0; j < J_JUDGE; j++) differ += !same_judgment(&out[0 * J_JUDGE + j], &out[1 * J_JUDGE + j]);
  differ += !same_judgment(&out[0], &out[1]) + !same_judgment(&out[3 * J_JUDGE], &out[3 * J_JUDGE + 1]);
  EXPECT(differ >= 4, "judgments with other keys or indices are equal (%d of 5 differ)", differ);

  /* a reordered subset, one sequence at a time, with J = 2: the same judgments per key */
  const int sub[3] = {4, 1, 3};
  const char *instr2[3], *resp2[3];
  uint64_t keys2[3];
  for (int k = 0; k < 3; k++) instr2[k] = instr[sub[k]], resp2[k] = resp[sub[k]], keys2[k] = keys[sub[k]];
  srlm_llm_judgment out2[3 * 2];
  double mean2[3];
  srlm_judge_stats stats2 = {0};
  srlm_llm_judge_set_max_batch(jd, 1);
  st = srlm_llm_judge_run(jd, m, 3, instr2, resp2, keys2, 2, out2, mean2, &stats2);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    for (int k = 0; k < 3; k++)
      for (int j = 0; j < 2; j++)
        EXPECT(same_judgment(&out2[k * 2 + j], &out[sub[k] * J_JUDGE + j]),
               "response %d judgment %d differs in a reordered subset with batch 1", sub[k], j);
    EXPECT_EQ_INT(stats2.judgments, 6);
    EXPECT_EQ_INT(stats2.candidates, 3);
    srlm_llm_judgments_free(out2, 6);
  }
  /* nothing to judge, and bad counts */
  st = srlm_llm_judge_run(jd, m, 0, NULL, NULL, NULL, 2, NULL, NULL, &stats2);
  EXPECT(st == SRLM_OK, "n = 0: %s", srlm_error_message());
  st = srlm_llm_judge_run(jd, m, 1, instr, resp, keys, 0, out2, mean2, &stats2);
  EXPECT(st == SRLM_ERR_RANGE, "J = 0 accepted");
  EXPECT_EQ_INT(stats2.judgments, 6);
  /* the seq id is a function of (key, j) alone */
  EXPECT(srlm_llm_judge_seq_id(keys[0], 0) == srlm_llm_judge_seq_id(keys[2], 0), "seq id not a function");
  EXPECT(srlm_llm_judge_seq_id(keys[0], 0) != srlm_llm_judge_seq_id(keys[0], 1) &&
             srlm_llm_judge_seq_id(keys[0], 0) != srlm_llm_judge_seq_id(keys[1], 0) &&
             srlm_llm_judge_seq_id(keys[0], 0) != keys[0],
         "seq ids collide");
  srlm_llm_judgments_free(out, N_RESP * J_JUDGE);
done:
  srlm_llm_judge_free(jd);
  srlm_config_free(&cfg);
}

/* The real template (about 1400 tokens here) end to end: runs, and the response's
 * judgments are a function of its key (the same in a batch of two and alone). */
static void test_run_default_template(srlm_tokenizer *tok, const srlm_chat_format *chat, srlm_model *m) {
  srlm_config cfg;
  base_config(&cfg);
  set(&cfg, "judge.max_new_tokens", "4");
  srlm_llm_judge *jd;
  srlm_status st = srlm_llm_judge_create(&cfg, tok, chat, &jd);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) {
    srlm_config_free(&cfg);
    return;
  }
  const char *instr[2] = {"What is 2+2?", "Name a prime."};
  const char *resp[2] = {"4", "7"};
  const uint64_t keys[2] = {17, 18};
  srlm_llm_judgment out[4], one[2];
  double mean[2], mean1[1];
  st = srlm_llm_judge_run(jd, m, 2, instr, resp, keys, 2, out, mean, NULL);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    st = srlm_llm_judge_run(jd, m, 1, instr + 1, resp + 1, keys + 1, 2, one, mean1, NULL);
    EXPECT(st == SRLM_OK, "%s", srlm_error_message());
    if (st == SRLM_OK) {
      EXPECT(same_judgment(&one[0], &out[2]) && same_judgment(&one[1], &out[3]), "judgments depend on the batch");
      srlm_llm_judgments_free(one, 2);
    }
    /* every request prefills its own judge prompt: 2 x prompt 0 + 4 x prompt 1 */
    srlm_token_ids p0 = {0}, p1 = {0};
    EXPECT(srlm_llm_judge_encode(jd, instr[0], resp[0], &p0, NULL) == SRLM_OK, "%s", srlm_error_message());
    EXPECT(srlm_llm_judge_encode(jd, instr[1], resp[1], &p1, NULL) == SRLM_OK, "%s", srlm_error_message());
    EXPECT(p0.n > 1300, "the default template is only %zu tokens", p0.n);
    EXPECT_EQ_INT(srlm_llm_judge_generate_stats(jd)->prefill_tokens, 2 * (int64_t)p0.n + 4 * (int64_t)p1.n);
    srlm_token_ids_free(&p0);
    srlm_token_ids_free(&p1);
    srlm_llm_judgments_free(out, 4);
  }
  srlm_llm_judge_free(jd);
  srlm_config_free(&cfg);
}

/* ---- the parse/mean path on hand-written judgments ------------------------------------------ */

static void test_score(srlm_tokenizer *tok, const srlm_chat_format *chat) {
  srlm_config cfg;
  base_config(&cfg); /* default regex "Score: *([0-9]+(\.[0-9]+)?)", range [0, 5] */
  srlm_llm_judge *jd;
  srlm_status st = srlm_llm_judge_create(&cfg, tok, chat, &jd);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) {
    srlm_config_free(&cfg);
    return;
  }
  const char *texts[3 * 3] = {
      "On topic.\nScore: 3\nOn reflection, more.\nScore: 4", "Score: 10", "I cannot decide.",
      "Score: -2", "Score:", "Score: ",
      "Score: 2.5", "score: 5", "Score: 1\xff",
  };
  const double want[9] = {4, 5, NAN, NAN, NAN, NAN, 2.5, NAN, 1};
  srlm_llm_judgment out[9];
  memset(out, 0, sizeof out);
  for (int k = 0; k < 9; k++) {
    out[k].text = strdup(texts[k]);
    out[k].text_len = strlen(texts[k]);
  }
  double mean[3];
  srlm_judge_stats stats = {.judgments = 100}; /* accumulates */
  srlm_llm_judge_score(jd, 3, 3, out, mean, &stats);
  for (int k = 0; k < 9; k++)
    EXPECT((isnan(want[k]) && isnan(out[k].score)) || out[k].score == want[k], "\"%s\": score %g, expected %g",
           texts[k], out[k].score, want[k]);
  EXPECT_EQ_INT(out[1].clamped, 1);
  EXPECT_EQ_INT(out[0].clamped, 0);
  EXPECT_NEAR(mean[0], 4.5, 1e-12);
  EXPECT(isnan(mean[1]), "mean of unparsable judgments %g", mean[1]);
  EXPECT_NEAR(mean[2], 1.75, 1e-12);
  EXPECT_EQ_INT(stats.judgments, 109);
  EXPECT_EQ_INT(stats.parsed, 4);
  EXPECT_EQ_INT(stats.unparsable, 5);
  EXPECT_EQ_INT(stats.clamped, 1);
  EXPECT_EQ_INT(stats.candidates, 3);
  EXPECT_EQ_INT(stats.unscored, 1);
  srlm_llm_judgments_free(out, 9);
  EXPECT(out[0].text == NULL, "free left a pointer");
  srlm_llm_judge_free(jd);
  srlm_config_free(&cfg);
}

int main(void) {
  char dir[1024];
  srlm_tokenizer *tok;
  srlm_status st = srlm_tokenizer_load(source_path(dir, sizeof dir, "tests/fixtures/sft/chatml_tokenizer"), &tok);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) TEST_MAIN_END();
  srlm_chat_format chat;
  EXPECT(srlm_chat_format_from_name("chatml", &chat) == SRLM_OK, "%s", srlm_error_message());
  srlm_model *m = tiny_model();
  test_create(tok, &chat);
  test_score(tok, &chat);
  if (m) {
    test_run(tok, &chat, m);
    test_run_default_template(tok, &chat, m);
  }
  srlm_model_free(m);
  srlm_tokenizer_free(tok);
  TEST_MAIN_END();
}
