/* SFT tests. Data: raw prompt/response lines tokenized with configs/tiny (ids and
 * targets by hand), chat lines with the Qwen3 tokenizer (targets = the assistant turn
 * through <|im_end|>), FILE:LINE errors and skipping, truncation and dropping, the
 * Philox shuffle (a permutation, a function of (seed, epoch), roughly uniform), packing.
 * Loop, on a tiny model: the loss and gradient norm of a step do not depend on how it
 * is split into micro-batches (the accumulation is a token mean), a NaN loss skips every
 * step without touching the parameters, the same seed gives the same bits, and the
 * weight-decay mask leaves out exactly the 1-D tensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/sft.h"
#include "model_host.h"
#include "test.h"

static const char *tiny_dir(void) {
  static char buf[1024];
  const char *src = getenv("SRLM_SOURCE_DIR");
  snprintf(buf, sizeof buf, "%s/configs/tiny", src ? src : ".");
  return buf;
}

static const char *write_tmp(const char *name, const char *text) {
  static char path[1024];
  test_tmp_path(path, sizeof path, name);
  FILE *f = fopen(path, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
  return path;
}

static void expect_ids(const int32_t *got, const int32_t *want, int n, const char *what) {
  for (int i = 0; i < n; i++)
    if (got[i] != want[i]) {
      EXPECT(got[i] == want[i], "%s[%d] = %d, expected %d", what, i, got[i], want[i]);
      return;
    }
  EXPECT(1, "");
}

static void test_raw_data(srlm_tokenizer *tok) {
  /* Q=14 T=15 A=16 +=12 -=13, digit d = d + 2, <|endoftext|> = 0 */
  const char *path = write_tmp("raw.jsonl",
                               "{\"prompt\": \"Q1234T+10A\", \"response\": \"1+2\"}\n"
                               "\n"
                               "{\"prompt\": \"Q9T-01A\", \"response\": \"9-8\", \"extra\": 1}\n");
  srlm_sft_data_options o = {.tok = tok, .eos_id = 0, .vocab_size = 19};
  srlm_sft_data d;
  srlm_status st = srlm_sft_data_load(path, &o, &d);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  EXPECT_EQ_INT(d.n, 2);
  EXPECT_EQ_INT(d.n_lines, 2);
  EXPECT_EQ_INT(d.lines[0], 1);
  EXPECT_EQ_INT(d.lines[1], 3);
  const int32_t ids0[] = {14, 3, 4, 5, 6, 15, 12, 3, 2, 16, 3, 12, 4, 0};
  const int32_t tg0[] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, 3, 12, 4, 0, -1};
  EXPECT_EQ_INT(d.offsets[1], 14);
  expect_ids(d.ids, ids0, 14, "ids");
  expect_ids(d.targets, tg0, 14, "targets");
  EXPECT_EQ_INT(d.n_targets_of[0], 4);
  const int32_t tg1[] = {-1, -1, -1, -1, -1, -1, 11, 13, 10, 0, -1};
  EXPECT_EQ_INT(d.offsets[2] - d.offsets[1], 11);
  expect_ids(d.targets + d.offsets[1], tg1, 11, "targets of example 2");
  EXPECT_EQ_INT(d.n_targets, 8);
  EXPECT_EQ_INT(d.n_tokens, 25);
  EXPECT_EQ_INT(d.max_seq, 14);
  srlm_sft_data_free(&d);

  /* without EOS: the response alone is learned */
  o.eos_id = -1;
  st = srlm_sft_data_load(path, &o, &d);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    EXPECT_EQ_INT(d.n_targets, 6);
    EXPECT_EQ_INT(d.offsets[1], 13);
    srlm_sft_data_free(&d);
  }

  /* truncation: 12 tokens keep targets at positions 9 and 10; the cut position loses its own */
  o.eos_id = 0;
  o.max_len = 12;
  st = srlm_sft_data_load(path, &o, &d);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    EXPECT_EQ_INT(d.n, 2);
    EXPECT_EQ_INT(d.n_truncated, 1);
    EXPECT_EQ_INT(d.offsets[1], 12);
    const int32_t tgt[] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, 3, 12, -1};
    expect_ids(d.targets, tgt, 12, "truncated targets");
    EXPECT_EQ_INT(d.n_targets_of[0], 2);
    srlm_sft_data_free(&d);
  }
  o.overflow = SRLM_SFT_DROP;
  st = srlm_sft_data_load(path, &o, &d);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    EXPECT_EQ_INT(d.n, 1);
    EXPECT_EQ_INT(d.n_too_long, 1);
    EXPECT_EQ_INT(d.lines[0], 3);
    srlm_sft_data_free(&d);
  }
  /* truncated into the prompt: no target left, dropped and counted; nothing left is an error */
  o.overflow = SRLM_SFT_TRUNCATE;
  o.max_len = 7;
  st = srlm_sft_data_load(path, &o, &d);
  EXPECT(st == SRLM_ERR_FORMAT, "all examples without targets accepted");
  EXPECT_CONTAINS(srlm_error_message(), "no usable examples (2 lines: 0 malformed, 0 too long, 2 without a target token)");
}

static void test_bad_lines(srlm_tokenizer *tok) {
  const char *path = write_tmp("bad.jsonl",
                               "{\"prompt\": \"Q1A\", \"response\": \"1\"}\n"
                               "{\"prompt\": 5, \"response\": \"1\"}\n"
                               "not json\n"
                               "{\"messages\": [{\"role\": \"user\", \"content\": \"Q1A\"}]}\n"
                               "{\"prompt\": \"Qx\", \"response\": \"1\"}\n"
                               "[1, 2]\n"
                               "{\"prompt\": \"Q2A\"}\n"
                               "{\"prompt\": \"Q3A\", \"response\": \"3\"}\n");
  char where[1100];
  srlm_sft_data_options o = {.tok = tok, .eos_id = 0, .vocab_size = 19};
  srlm_sft_data d;
  EXPECT(srlm_sft_data_load(path, &o, &d) == SRLM_ERR_FORMAT, "a non-string prompt accepted");
  snprintf(where, sizeof where, "%s:2: \"prompt\" must be a string", path);
  EXPECT_CONTAINS(srlm_error_message(), where);
  o.skip_bad_lines = 1;
  srlm_status st = srlm_sft_data_load(path, &o, &d);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    EXPECT_EQ_INT(d.n, 2);
    EXPECT_EQ_INT(d.n_bad, 6);
    EXPECT_EQ_INT(d.n_lines, 8);
    EXPECT_EQ_INT(d.lines[1], 8);
    srlm_sft_data_free(&d);
  }
  /* each bad line alone, with the message it gets */
  struct {
    const char *line, *want;
  } cases[] = {
      {"not json\n", ":1:3: invalid JSON"},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"Q1A\"}]}\n", ":1: \"messages\" needs a chat format"},
      {"{\"prompt\": \"Qx\", \"response\": \"1\"}\n", ":1: \"prompt\": "},
      {"[1]\n", ":1: expected an object"},
      {"{\"prompt\": \"Q2A\"}\n", ":1: expected \"messages\", or \"prompt\" and \"response\""},
  };
  o.skip_bad_lines = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *p = write_tmp("one.jsonl", cases[i].line);
    EXPECT(srlm_sft_data_load(p, &o, &d) != SRLM_OK, "accepted %s", cases[i].line);
    snprintf(where, sizeof where, "%s%s", p, cases[i].want);
    EXPECT_CONTAINS(srlm_error_message(), where);
  }
  /* an id the model cannot embed */
  o.vocab_size = 10;
  EXPECT(srlm_sft_data_load(write_tmp("one.jsonl", "{\"prompt\": \"Q1A\", \"response\": \"1\"}\n"), &o, &d) ==
             SRLM_ERR_RANGE,
         "id outside the vocabulary accepted");
  EXPECT_CONTAINS(srlm_error_message(), ":1: token id 14 is outside the model's vocabulary of 10");
  EXPECT(srlm_sft_data_load("/nonexistent/x.jsonl", &o, &d) == SRLM_ERR_IO, "missing file accepted");
}

static void test_chat_data(void) {
  char dir[1024];
  test_shared_path(dir, sizeof dir, "fixtures/tokenizers/qwen3");
  srlm_tokenizer *tok;
  srlm_status st = srlm_tokenizer_load(dir, &tok);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  srlm_chat_format fmt;
  EXPECT(srlm_chat_format_from_name("chatml", &fmt) == SRLM_OK, "%s", srlm_error_message());
  const char *path = write_tmp("chat.jsonl",
                               "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
                               " {\"role\": \"user\", \"content\": \"What is 6*7?\"},"
                               " {\"role\": \"assistant\", \"content\": \"42.\"},"
                               " {\"role\": \"user\", \"content\": \"And 6*8?\"},"
                               " {\"role\": \"assistant\", \"content\": \"48.\"}]}\n"
                               "{\"prompt\": \"What is 6*7?\", \"response\": \"42.\"}\n"
                               "{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}\n"
                               "{\"messages\": [{\"role\": \"user\", \"content\": 3}]}\n");
  srlm_sft_data_options o = {.tok = tok, .chat = &fmt, .eos_id = -1, .skip_bad_lines = 1};
  srlm_sft_data d;
  st = srlm_sft_data_load(path, &o, &d);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    EXPECT_EQ_INT(d.n, 2);
    EXPECT_EQ_INT(d.n_no_target, 1);
    EXPECT_EQ_INT(d.n_bad, 1);
    const char *want[2] = {"42.<|im_end|>48.<|im_end|>", "42.<|im_end|>"};
    for (int e = 0; e < 2; e++) {
      int32_t sel[256];
      size_t ns = 0;
      for (int64_t t = d.offsets[e]; t < d.offsets[e + 1]; t++) {
        if (d.targets[t] < 0) continue;
        EXPECT(t + 1 < d.offsets[e + 1] && d.targets[t] == d.ids[t + 1], "target at %lld is not the next token",
               (long long)t);
        if (ns < 256) sel[ns++] = d.targets[t];
      }
      char *text;
      size_t len;
      EXPECT(srlm_tokenizer_decode(tok, sel, ns, &text, &len) == SRLM_OK, "%s", srlm_error_message());
      EXPECT_STR_EQ(text, want[e]);
      free(text);
    }
    /* the prompt/response line renders as the same conversation as user + assistant messages */
    srlm_chat_message msgs[2] = {{.role = "user", .content = "What is 6*7?", .content_len = 12},
                                 {.role = "assistant", .content = "42.", .content_len = 3}};
    srlm_chat_tokens ct = {0};
    EXPECT(srlm_chat_encode(tok, &fmt, msgs, 2, 0, &ct) == SRLM_OK, "%s", srlm_error_message());
    EXPECT_EQ_INT(d.offsets[2] - d.offsets[1], ct.ids.n);
    if ((size_t)(d.offsets[2] - d.offsets[1]) == ct.ids.n)
      expect_ids(d.ids + d.offsets[1], ct.ids.ids, (int)ct.ids.n, "ids");
    srlm_chat_tokens_free(&ct);
    srlm_sft_data_free(&d);
  }
  o.skip_bad_lines = 0;
  EXPECT(srlm_sft_data_load(path, &o, &d) == SRLM_ERR_FORMAT, "a non-string content accepted");
  char where[1100];
  snprintf(where, sizeof where, "%s:4: messages[0].content", path);
  EXPECT_CONTAINS(srlm_error_message(), where);
  srlm_tokenizer_free(tok);
}

static void test_order(void) {
  enum { n = 10 };
  int64_t a[n], b[n], c[n];
  srlm_sft_order(n, 7, 0, a);
  srlm_sft_order(n, 7, 0, b);
  EXPECT(!memcmp(a, b, sizeof a), "same (seed, epoch) gave different orders");
  int seen[n] = {0};
  for (int i = 0; i < n; i++)
    if (a[i] >= 0 && a[i] < n) seen[a[i]]++;
  for (int i = 0; i < n; i++) EXPECT(seen[i] == 1, "index %d appears %d times", i, seen[i]);
  srlm_sft_order(n, 7, 1, b);
  srlm_sft_order(n, 8, 0, c);
  EXPECT(memcmp(a, b, sizeof a) != 0, "epochs 0 and 1 gave the same order");
  EXPECT(memcmp(a, c, sizeof a) != 0, "seeds 7 and 8 gave the same order");
  /* uniformity: over 4000 epochs each of 4 items leads 1000 times on average with a
   * standard deviation of sqrt(4000 * 1/4 * 3/4) = 27.4; 150 is 5.5 deviations */
  int first[4] = {0};
  for (int e = 0; e < 4000; e++) {
    int64_t o4[4];
    srlm_sft_order(4, 99, e, o4);
    first[o4[0]]++;
  }
  for (int i = 0; i < 4; i++) EXPECT(abs(first[i] - 1000) <= 150, "item %d first in %d of 4000 epochs", i, first[i]);
  int64_t one;
  srlm_sft_order(1, 1, 0, &one);
  EXPECT_EQ_INT(one, 0);
  EXPECT_EQ_INT(srlm_sft_steps_per_epoch(16, 8, 2), 1);
  EXPECT_EQ_INT(srlm_sft_steps_per_epoch(17, 8, 2), 2);
  EXPECT_EQ_INT(srlm_sft_steps_per_epoch(5, 1, 1), 5);
}

static void test_batch(srlm_tokenizer *tok) {
  const char *path = write_tmp("batch.jsonl",
                               "{\"prompt\": \"Q1A\", \"response\": \"1\"}\n"
                               "{\"prompt\": \"Q22A\", \"response\": \"2+2\"}\n"
                               "{\"prompt\": \"Q3A\", \"response\": \"33\"}\n");
  srlm_sft_data_options o = {.tok = tok, .eos_id = 0};
  srlm_sft_data d;
  srlm_status st = srlm_sft_data_load(path, &o, &d);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  srlm_sft_batch b = {0};
  const int64_t idx[2] = {2, 0};
  srlm_sft_batch_fill(&b, &d, idx, 2);
  EXPECT_EQ_INT(b.b.B, 2);
  EXPECT_EQ_INT(b.b.T, 11);
  EXPECT_EQ_INT(b.b.cu_seqlens[0], 0);
  EXPECT_EQ_INT(b.b.cu_seqlens[1], 6);
  EXPECT_EQ_INT(b.b.cu_seqlens[2], 11);
  EXPECT_EQ_INT(b.n_targets, 5);
  const int32_t tok_want[] = {14, 5, 16, 5, 5, 0, 14, 3, 16, 3, 0};
  const int32_t tg_want[] = {-1, -1, 5, 5, 0, -1, -1, -1, 3, 0, -1};
  expect_ids(b.b.tokens, tok_want, 11, "packed tokens");
  expect_ids(b.b.targets, tg_want, 11, "packed targets");
  const int64_t idx1[1] = {1};
  srlm_sft_batch_fill(&b, &d, idx1, 1);
  EXPECT_EQ_INT(b.b.T, 8);
  EXPECT_EQ_INT(b.b.cu_seqlens[1], 8);
  srlm_sft_batch_free(&b);
  srlm_sft_data_free(&d);
}

/* ---- the loop on a tiny model ---------------------------------------------- */

static srlm_status make_model(srlm_model **m) {
  srlm_model_config c;
  srlm_model_config_defaults(&c, SRLM_MODEL_LLAMA);
  c.vocab_size = 19;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32;
  c.tie_word_embeddings = false;
  SRLM_TRY(srlm_model_config_finalize(&c, "test"));
  return srlm_model_create(&c, 5, srlm_backend_cpu(), SRLM_F32, m);
}

typedef struct recorded {
  double loss[64], norm[64];
  int skipped[64];
  int n;
} recorded;

static srlm_status record(const srlm_sft_step_info *s, void *user) {
  recorded *r = user;
  if (r->n < 64) {
    r->loss[r->n] = s->loss;
    r->norm[r->n] = s->grad_norm;
    r->skipped[r->n] = s->skipped;
    r->n++;
  }
  return SRLM_OK;
}

static srlm_sft_options loop_options(recorded *r) {
  srlm_sft_options o = {.batch_size = 4, .grad_accum = 1, .epochs = 1, .seed = 3, .on_step = record, .user = r};
  o.optim = (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1, .grad_clip = 1.0};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_CONSTANT, .lr = 1e-2};
  return o;
}

static void test_loop(srlm_tokenizer *tok) {
  char src[1024];
  const char *root = getenv("SRLM_SOURCE_DIR");
  snprintf(src, sizeof src, "%s/tests/fixtures/sft/sign_puzzle.jsonl", root ? root : ".");
  srlm_sft_data_options dopt = {.tok = tok, .eos_id = 0, .vocab_size = 19};
  srlm_sft_data d;
  srlm_status st = srlm_sft_data_load(src, &dopt, &d);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  d.n = 6; /* training sees the first 6 examples (the arrays hold all 16) */

  /* one step over 6 examples, split 4 ways: same loss and gradient norm */
  const int splits[4][2] = {{6, 1}, {3, 2}, {1, 6}, {4, 2}};
  double loss0 = 0, norm0 = 0;
  for (int k = 0; k < 4; k++) {
    srlm_model *m;
    st = make_model(&m);
    EXPECT(st == SRLM_OK, "%s", srlm_error_message());
    if (st != SRLM_OK) break;
    recorded r = {.n = 0};
    srlm_sft_options o = loop_options(&r);
    o.batch_size = splits[k][0];
    o.grad_accum = splits[k][1];
    st = srlm_sft_train(m, &d, &o, NULL);
    EXPECT(st == SRLM_OK, "%s", srlm_error_message());
    EXPECT_EQ_INT(r.n, 1);
    if (k == 0) {
      loss0 = r.loss[0];
      norm0 = r.norm[0];
      fprintf(stderr, "one step over 6 examples: loss %.9g (ln 19 = %.9g), grad norm %.9g\n", loss0, log(19.0), norm0);
      EXPECT(fabs(loss0 - log(19.0)) < 0.2, "initial loss %.6g far from ln V", loss0);
    } else {
      fprintf(stderr, "batch %d x accum %d: loss %.9g, grad norm %.9g\n", splits[k][0], splits[k][1], r.loss[0],
              r.norm[0]);
      /* the same float32 sums over about 100 tokens in another order: each may move by
       * about 100 x 6e-8 relative, so 1e-5 bounds it; a wrong accumulation scale is off
       * by a factor of 2 or more */
      EXPECT(fabs(r.loss[0] - loss0) <= 1e-6 * loss0, "batch %d x accum %d: loss %.9g, one micro-batch %.9g",
             splits[k][0], splits[k][1], r.loss[0], loss0);
      EXPECT(fabs(r.norm[0] - norm0) <= 1e-5 * norm0, "batch %d x accum %d: grad norm %.9g, one micro-batch %.9g",
             splits[k][0], splits[k][1], r.norm[0], norm0);
    }
    srlm_model_free(m);
  }

  /* same seed, same bits; and training lowers the loss on these examples */
  srlm_model *a = NULL, *b = NULL;
  if (make_model(&a) == SRLM_OK && make_model(&b) == SRLM_OK) {
    recorded ra = {.n = 0}, rb = {.n = 0};
    srlm_sft_options oa = loop_options(&ra), ob = loop_options(&rb);
    oa.epochs = ob.epochs = 20;
    oa.batch_size = ob.batch_size = 2;
    srlm_sft_summary sa;
    EXPECT(srlm_sft_train(a, &d, &oa, &sa) == SRLM_OK, "%s", srlm_error_message());
    EXPECT(srlm_sft_train(b, &d, &ob, NULL) == SRLM_OK, "%s", srlm_error_message());
    EXPECT_EQ_INT(sa.steps, 60);
    EXPECT(!memcmp(test_w(a), test_w(b), srlm_model_num_params(a) * sizeof(float)),
           "two runs with the same seed differ");
    fprintf(stderr, "20 epochs on 6 examples: first step loss %.4f, last epoch %.4f\n", sa.first_loss,
            sa.last_epoch_loss);
    EXPECT(sa.last_epoch_loss < 0.7 * sa.first_loss, "loss %.4f -> %.4f did not fall", sa.first_loss,
           sa.last_epoch_loss);
  }
  srlm_model_free(a);
  srlm_model_free(b);

  /* a NaN weight makes every loss NaN: each step skipped, no parameter moves */
  srlm_model *m;
  if (make_model(&m) == SRLM_OK) {
    size_t off, numel;
    EXPECT(srlm_model_param_view(m, "model.norm.weight", &off, &numel) == SRLM_OK, "%s", srlm_error_message());
    float *p = test_w(m);
    p[off] = NAN;
    size_t n = srlm_model_num_params(m);
    float *before = malloc(n * sizeof *before);
    memcpy(before, p, n * sizeof *before);
    recorded r = {.n = 0};
    srlm_sft_options o = loop_options(&r);
    o.batch_size = 2;
    srlm_sft_summary s;
    EXPECT(srlm_sft_train(m, &d, &o, &s) == SRLM_OK, "%s", srlm_error_message());
    EXPECT_EQ_INT(s.steps, 3);
    EXPECT_EQ_INT(s.skipped, 3);
    for (int i = 0; i < r.n; i++) EXPECT(r.skipped[i] == 1 && !isfinite(r.loss[i]), "step %d: skipped %d loss %g", i,
                                         r.skipped[i], r.loss[i]);
    EXPECT(!memcmp(before, p, n * sizeof *before), "skipped steps changed the parameters");
    free(before);

    /* the decay mask: every tensor but the 1-D ones */
    srlm_tensor_spec *specs;
    size_t ns, n1 = 0;
    EXPECT(srlm_model_expected_tensors(srlm_model_get_config(m), &specs, &ns) == SRLM_OK, "%s", srlm_error_message());
    for (size_t i = 0; i < ns; i++)
      if (specs[i].ndim == 1) n1 += specs[i].numel;
    free(specs);
    srlm_optim *opt;
    EXPECT(srlm_optim_create_for_model(m, &o.optim, &opt) == SRLM_OK, "%s", srlm_error_message());
    EXPECT_EQ_INT(srlm_optim_decayed_count(opt), n - n1);
    EXPECT(n1 > 0, "no 1-D tensors in the model");
    srlm_optim_free(opt);
    o.optim.decay_1d = 1;
    EXPECT(srlm_optim_create_for_model(m, &o.optim, &opt) == SRLM_OK, "%s", srlm_error_message());
    EXPECT_EQ_INT(srlm_optim_decayed_count(opt), n);
    srlm_optim_free(opt);
    srlm_model_free(m);
  }
  srlm_sft_data_free(&d);
}

int main(void) {
  srlm_tokenizer *tok;
  srlm_status st = srlm_tokenizer_load(tiny_dir(), &tok);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) TEST_MAIN_END();
  test_raw_data(tok);
  test_bad_lines(tok);
  test_chat_data();
  test_order();
  test_batch(tok);
  test_loop(tok);
  srlm_tokenizer_free(tok);
  TEST_MAIN_END();
}
