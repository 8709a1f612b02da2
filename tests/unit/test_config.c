/* Config: the option table, defaults, every error kind with its exact message
 * (file:line:col, key path, what), overrides, validation, and the print -> parse ->
 * print round trip with hostile strings and bit-exact floats. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/checkpoint.h"
#include "srlm/config.h"
#include "srlm/core.h"
#include "test.h"

/* Parses text as "t.yaml" onto defaults; returns the status, the message in msg. */
static srlm_status parse_text(const char *text, srlm_config *out) {
  srlm_config cfg;
  srlm_config_init(&cfg);
  srlm_error_clear();
  srlm_status st = srlm_config_parse(&cfg, "t.yaml", text, strlen(text));
  if (out)
    *out = cfg;
  else
    srlm_config_free(&cfg);
  return st;
}

/* The text must fail with exactly this message and SRLM_ERR_CONFIG. */
#define EXPECT_PARSE_ERROR(text, message)                                              \
  do {                                                                                 \
    srlm_status st_ = parse_text(text, NULL);                                          \
    EXPECT(st_ == SRLM_ERR_CONFIG, "status %d for %s", (int)st_, #text);                \
    EXPECT_STR_EQ(srlm_error_message(), message);                                      \
    EXPECT_EQ_INT(srlm_status_exit_code(st_), 2);                                      \
  } while (0)

/* The override must fail with exactly this message. */
#define EXPECT_SET_ERROR(arg, message)                                                 \
  do {                                                                                 \
    srlm_config c_;                                                                    \
    srlm_config_init(&c_);                                                             \
    srlm_status st_ = srlm_config_set(&c_, arg);                                       \
    EXPECT(st_ == SRLM_ERR_CONFIG, "status %d for override %s", (int)st_, arg);        \
    EXPECT_STR_EQ(srlm_error_message(), message);                                      \
    srlm_config_free(&c_);                                                             \
  } while (0)

static void test_table(void) {
  size_t n;
  const srlm_config_option *t = srlm_config_options(&n);
  EXPECT(n >= 60, "only %zu options", n);
  for (size_t i = 0; i < n; i++) {
    EXPECT(t[i].help && t[i].help[0] && !strchr(t[i].help, '\n'), "%s: help must be one line", t[i].key);
    EXPECT(srlm_config_option_find(t[i].key) == &t[i], "%s: duplicate key in the table", t[i].key);
    /* No option is also a section ("model" and "model.path"). */
    size_t len = strlen(t[i].key);
    for (size_t j = 0; j < n; j++)
      EXPECT(!(strncmp(t[j].key, t[i].key, len) == 0 && t[j].key[len] == '.'), "%s is an option and a section of %s",
             t[i].key, t[j].key);
    /* Sections are contiguous: once a section is left it never comes back (else the
     * printer would write its key twice). */
    const char *dot = strrchr(t[i].key, '.');
    size_t sec = dot ? (size_t)(dot - t[i].key) : 0;
    for (size_t j = i + 2; j < n && sec; j++) {
      bool in_sec = !strncmp(t[j].key, t[i].key, sec) && t[j].key[sec] == '.';
      bool prev_in = !strncmp(t[j - 1].key, t[i].key, sec) && t[j - 1].key[sec] == '.';
      EXPECT(!(in_sec && !prev_in), "section of %s comes back at %s", t[i].key, t[j].key);
    }
    if (t[i].type == SRLM_CONFIG_INT || t[i].type == SRLM_CONFIG_INT64)
      EXPECT(t[i].imin <= t[i].idef && t[i].idef <= t[i].imax, "%s: default outside its range", t[i].key);
  }
  EXPECT_STR_EQ(srlm_config_enum_name("train.loss", SRLM_CFG_LOSS_GRPO), "grpo");
  EXPECT_STR_EQ(srlm_config_enum_name("tokenizer.chat_format", SRLM_CFG_CHAT_NONE), "none");
  EXPECT_STR_EQ(srlm_config_enum_name("run.log_level", SRLM_LOG_WARN), "warn");
  EXPECT(srlm_config_enum_name("train.loss", 4) == NULL, "value past the names");
  EXPECT(srlm_config_enum_name("train.lr", 0) == NULL, "not an enum");
  EXPECT(srlm_config_option_find("train") == NULL, "a section is not an option");
  EXPECT_STR_EQ(srlm_config_type_name(SRLM_CONFIG_STRLIST), "list");
}

static void test_defaults(void) {
  srlm_config cfg;
  srlm_config_init(&cfg);
  EXPECT_STR_EQ(cfg.run.name, "srlm");
  EXPECT_STR_EQ(cfg.run.out_dir, "runs");
  EXPECT_EQ_INT(cfg.run.seed, 1234);
  EXPECT_EQ_INT(cfg.run.iterations, 2);
  EXPECT_EQ_INT(cfg.run.log_level, SRLM_LOG_INFO);
  EXPECT_STR_EQ(cfg.model.path, "");
  EXPECT_EQ_INT(cfg.model.arch.family, SRLM_CFG_FAMILY_LLAMA);
  EXPECT_EQ_INT(cfg.model.dtype, SRLM_CFG_DTYPE_FP32);
  EXPECT_EQ_INT(cfg.generate.samples_per_prompt, 4);
  EXPECT(cfg.generate.temperature == 0.7, "temperature %.17g", cfg.generate.temperature);
  EXPECT(cfg.generate.top_p == 0.9, "top_p %.17g", cfg.generate.top_p);
  EXPECT_EQ_INT(cfg.generate.max_new_tokens, 256);
  EXPECT_EQ_INT(cfg.generate.max_batch, 0);
  EXPECT(cfg.generate.kv_memory_fraction == 0.9, "kv_memory_fraction %.17g", cfg.generate.kv_memory_fraction);
  EXPECT_EQ_INT(cfg.generate.stop.n, 0);
  EXPECT_STR_EQ(cfg.judge.template_path, "configs/judge/additive5.txt");
  EXPECT_STR_EQ(cfg.judge.score_regex, "Score: *([0-9]+(\\.[0-9]+)?)");
  EXPECT_EQ_INT(cfg.judge.samples, 3);
  EXPECT(cfg.judge.score_max == 5.0, "score_max %g", cfg.judge.score_max);
  EXPECT_EQ_INT(cfg.train.loss, SRLM_CFG_LOSS_DPO);
  EXPECT(cfg.train.lr == 1e-6, "lr %.17g", cfg.train.lr);
  EXPECT(cfg.train.beta == 0.1, "beta %.17g", cfg.train.beta);
  EXPECT(cfg.train.grad_clip == 1.0, "grad_clip %g", cfg.train.grad_clip);
  EXPECT(cfg.roles.colocate, "colocate defaults to true");
  EXPECT(!cfg.data.skip_bad_lines, "skip_bad_lines defaults to false");
  EXPECT_EQ_INT(srlm_config_validate(&cfg), SRLM_OK);

  /* Empty files, comment-only files and an empty document are all defaults. */
  const char *empties[] = {"", "# nothing here\n", "---\n", "---\n...\n", "\n\n", "{}\n", "run:\n"};
  for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
    srlm_config got;
    srlm_status st = parse_text(empties[i], &got);
    const char *diff = NULL;
    EXPECT(st == SRLM_OK, "empty form %zu: %s", i, srlm_error_message());
    EXPECT(srlm_config_equal(&got, &cfg, &diff), "empty form %zu differs at %s", i, diff ? diff : "?");
    srlm_config_free(&got);
  }
  srlm_config_free(&cfg);
  srlm_config_free(&cfg); /* twice is safe */
}

static void test_good_file_values(void) {
  const char *text =
      "run:\n"
      "  name: 2024\n"
      "  seed: 9223372036854775807\n"
      "  iterations: +7\n"
      "  log_level: debug\n"
      "model:\n"
      "  arch:\n"
      "    num_layers: 2\n"
      "    rope_theta: 5e5\n"
      "    tie_embeddings: False\n"
      "  dtype: \"bf16\"\n"
      "generate:\n"
      "  stop: [\"</s>\", 'a b', plain]\n"
      "  top_p: 1\n"
      "judge: {samples: 5, mode: expected}\n"
      "train:\n"
      "  lr: 3.0e-5\n"
      "  loss: grpo\n"
      "data:\n"
      "  prompts: |\n"
      "    multi\n"
      "    line\n"
      "  eval_prompts:\n";
  srlm_config cfg;
  srlm_status st = parse_text(text, &cfg);
  EXPECT(st == SRLM_OK, "good file failed: %s", srlm_error_message());
  EXPECT_STR_EQ(cfg.run.name, "2024");
  EXPECT_EQ_INT(cfg.run.seed, INT64_MAX);
  EXPECT_EQ_INT(cfg.run.iterations, 7);
  EXPECT_EQ_INT(cfg.run.log_level, SRLM_LOG_DEBUG);
  EXPECT_EQ_INT(cfg.model.arch.num_layers, 2);
  EXPECT(cfg.model.arch.rope_theta == 5e5, "rope_theta %g", cfg.model.arch.rope_theta);
  EXPECT(!cfg.model.arch.tie_embeddings, "False is false");
  EXPECT_EQ_INT(cfg.model.dtype, SRLM_CFG_DTYPE_BF16);
  EXPECT_EQ_INT(cfg.generate.stop.n, 3);
  if (cfg.generate.stop.n == 3) {
    EXPECT_STR_EQ(cfg.generate.stop.items[0], "</s>");
    EXPECT_STR_EQ(cfg.generate.stop.items[1], "a b");
    EXPECT_STR_EQ(cfg.generate.stop.items[2], "plain");
  }
  EXPECT(cfg.generate.top_p == 1.0, "top_p %g", cfg.generate.top_p);
  EXPECT_EQ_INT(cfg.judge.samples, 5);
  EXPECT_EQ_INT(cfg.judge.mode, SRLM_CFG_JUDGE_EXPECTED);
  EXPECT(cfg.train.lr == 3e-5, "lr %.17g", cfg.train.lr);
  EXPECT_EQ_INT(cfg.train.loss, SRLM_CFG_LOSS_GRPO);
  EXPECT_STR_EQ(cfg.data.prompts, "multi\nline\n");
  EXPECT_STR_EQ(cfg.data.eval_prompts, "");
  /* untouched keys keep their defaults */
  EXPECT_EQ_INT(cfg.generate.max_new_tokens, 256);
  EXPECT_STR_EQ(cfg.run.out_dir, "runs");
  srlm_config_free(&cfg);
}

static void test_errors(void) {
  /* out of range, wrong type */
  EXPECT_PARSE_ERROR("train:\n  lr: 5\n", "t.yaml:2:7: train.lr: value 5 out of range [0, 1]");
  EXPECT_PARSE_ERROR("train:\n  lr: abc\n", "t.yaml:2:7: train.lr: expected a float, got 'abc'");
  EXPECT_PARSE_ERROR("train:\n  lr: \"1e-5\"\n", "t.yaml:2:7: train.lr: expected a float, got a quoted string \"1e-5\"");
  EXPECT_PARSE_ERROR("train:\n  lr: 0x10\n", "t.yaml:2:7: train.lr: expected a float, got '0x10'");
  EXPECT_PARSE_ERROR("train:\n  lr: .inf\n", "t.yaml:2:7: train.lr: expected a float, got '.inf' (only finite floats)");
  EXPECT_PARSE_ERROR("train:\n  lr: .NaN\n", "t.yaml:2:7: train.lr: expected a float, got '.NaN' (only finite floats)");
  EXPECT_PARSE_ERROR("train:\n  lr: 1e999\n", "t.yaml:2:7: train.lr: value 1e999 out of range [0, 1]");
  EXPECT_PARSE_ERROR("train:\n  lr: -0.5\n", "t.yaml:2:7: train.lr: value -0.5 out of range [0, 1]");
  EXPECT_PARSE_ERROR("train:\n  batch_size: 1.5\n", "t.yaml:2:15: train.batch_size: expected an integer, got '1.5'");
  EXPECT_PARSE_ERROR("train:\n  batch_size: 1e3\n", "t.yaml:2:15: train.batch_size: expected an integer, got '1e3'");
  EXPECT_PARSE_ERROR("train:\n  batch_size: \"8\"\n",
                     "t.yaml:2:15: train.batch_size: expected an integer, got a quoted string \"8\"");
  EXPECT_PARSE_ERROR("train:\n  batch_size: 010\n",
                     "t.yaml:2:15: train.batch_size: expected an integer, got '010' (leading zeros are ambiguous in YAML)");
  EXPECT_PARSE_ERROR("train:\n  batch_size: 0\n", "t.yaml:2:15: train.batch_size: value 0 out of range [1, 1048576]");
  EXPECT_PARSE_ERROR("run:\n  seed: 9223372036854775808\n",
                     "t.yaml:2:9: run.seed: value 9223372036854775808 out of range [0, 9223372036854775807]");
  EXPECT_PARSE_ERROR("run:\n  iterations: 99999999999999999999999\n",
                     "t.yaml:2:15: run.iterations: value 99999999999999999999999 out of range [0, 1000]");
  EXPECT_PARSE_ERROR("train:\n  batch_size:\n", "t.yaml:2:14: train.batch_size: expected an integer, got an empty value");
  /* open range ends */
  EXPECT_PARSE_ERROR("generate:\n  top_p: 0\n", "t.yaml:2:10: generate.top_p: value 0 out of range (0, 1]");
  EXPECT_PARSE_ERROR("train:\n  label_smoothing: 0.5\n",
                     "t.yaml:2:20: train.label_smoothing: value 0.5 out of range [0, 0.5)");
  EXPECT_PARSE_ERROR("pairs:\n  min_margin: -1\n", "t.yaml:2:15: pairs.min_margin: value -1 out of range [0, inf)");
  /* the KV cache's share of the free device memory and the decode batch (memplan.h) */
  EXPECT_PARSE_ERROR("generate:\n  kv_memory_fraction: 0\n",
                     "t.yaml:2:23: generate.kv_memory_fraction: value 0 out of range (0, 1]");
  EXPECT_PARSE_ERROR("generate:\n  kv_memory_fraction: 1.5\n",
                     "t.yaml:2:23: generate.kv_memory_fraction: value 1.5 out of range (0, 1]");
  EXPECT_PARSE_ERROR("generate:\n  max_batch: -1\n", "t.yaml:2:14: generate.max_batch: value -1 out of range [0, 1048576]");
  EXPECT_PARSE_ERROR("generate:\n  max_batch: many\n", "t.yaml:2:14: generate.max_batch: expected an integer, got 'many'");
  /* bools: only true/false */
  EXPECT_PARSE_ERROR("roles:\n  colocate: yes\n", "t.yaml:2:13: roles.colocate: expected a bool (true or false), got 'yes'");
  EXPECT_PARSE_ERROR("roles:\n  colocate: on\n", "t.yaml:2:13: roles.colocate: expected a bool (true or false), got 'on'");
  EXPECT_PARSE_ERROR("roles:\n  colocate: 1\n", "t.yaml:2:13: roles.colocate: expected a bool (true or false), got '1'");
  EXPECT_PARSE_ERROR("roles:\n  colocate: \"true\"\n",
                     "t.yaml:2:13: roles.colocate: expected a bool (true or false), got a quoted string \"true\"");
  /* enums */
  EXPECT_PARSE_ERROR("train:\n  loss: DPO\n", "t.yaml:2:9: train.loss: expected one of dpo, ipo, grpo, sft, got 'DPO'");
  /* null */
  EXPECT_PARSE_ERROR("train:\n  lr: ~\n", "t.yaml:2:7: train.lr: expected a float, got '~' (null)");
  EXPECT_PARSE_ERROR("run:\n  name: null\n",
                     "t.yaml:2:9: run.name: expected a string, got 'null' (null; write \"\" for the empty string)");
  /* unknown keys, with a suggestion when one is close */
  EXPECT_PARSE_ERROR("train:\n  lrr: 1\n", "t.yaml:2:3: train.lrr: unknown key (did you mean train.lr?)");
  EXPECT_PARSE_ERROR("lr: 1\n", "t.yaml:1:1: lr: unknown key (did you mean train.lr?)");
  EXPECT_PARSE_ERROR("model:\n  arch:\n    layers_count: 2\n", "t.yaml:3:5: model.arch.layers_count: unknown key");
  EXPECT_PARSE_ERROR("bogus:\n  x: 1\n", "t.yaml:1:1: bogus: unknown key");
  EXPECT_PARSE_ERROR("train.lr: 1\n", "t.yaml:1:1: train.lr: keys may not contain '.'; nest them as mappings");
  /* duplicate keys at every level, block and flow */
  EXPECT_PARSE_ERROR("train:\n  lr: 0.1\nrun:\n  seed: 1\ntrain:\n  beta: 1\n",
                     "t.yaml:5:1: train: duplicate key (first at 1:1)");
  EXPECT_PARSE_ERROR("train:\n  lr: 0.1\n  beta: 1\n  lr: 0.2\n", "t.yaml:4:3: train.lr: duplicate key (first at 2:3)");
  EXPECT_PARSE_ERROR("model:\n  arch:\n    num_layers: 2\n    num_layers: 3\n",
                     "t.yaml:4:5: model.arch.num_layers: duplicate key (first at 3:5)");
  EXPECT_PARSE_ERROR("model:\n  arch: {}\n  arch: {}\n", "t.yaml:3:3: model.arch: duplicate key (first at 2:3)");
  EXPECT_PARSE_ERROR("train: {lr: 1, lr: 2}\n", "t.yaml:1:16: train.lr: duplicate key (first at 1:9)");
  EXPECT_PARSE_ERROR("train:\n  \"lr\": 0.1\n  lr: 0.2\n", "t.yaml:3:3: train.lr: duplicate key (first at 2:3)");
  /* structure: mapping vs scalar vs list */
  EXPECT_PARSE_ERROR("train: 5\n", "t.yaml:1:8: train: expected a mapping (a section with keys such as train.loss), got a scalar");
  EXPECT_PARSE_ERROR("train: [1]\n", "t.yaml:1:8: train: expected a mapping (a section with keys such as train.loss), got a list");
  EXPECT_PARSE_ERROR("train:\n  lr: [1]\n", "t.yaml:2:7: train.lr: expected a float, got a list");
  EXPECT_PARSE_ERROR("train:\n  lr:\n    x: 1\n", "t.yaml:3:5: train.lr: expected a float, got a mapping");
  EXPECT_PARSE_ERROR("run:\n  name: {a: 1}\n",
                     "t.yaml:2:9: run.name: expected a string, got a mapping (quote strings that contain ': ')");
  EXPECT_PARSE_ERROR("- a\n", "t.yaml:1:1: the top level must be a mapping of sections (run:, model:, ...), got a list");
  EXPECT_PARSE_ERROR("hello\n", "t.yaml:1:1: the top level must be a mapping of sections (run:, model:, ...), got a scalar");
  EXPECT_PARSE_ERROR("? [a]\n: 1\n", "t.yaml:1:3: keys must be scalars, got a list");
  EXPECT_PARSE_ERROR("train:\n  ? {a: 1}\n  : 1\n", "t.yaml:2:5: train: keys must be scalars, got a mapping");
  /* lists */
  EXPECT_PARSE_ERROR("generate:\n  stop: a\n",
                     "t.yaml:2:9: generate.stop: expected a list of strings such as [a, \"b c\"], got 'a'");
  EXPECT_PARSE_ERROR("generate:\n  stop: [a, [b]]\n", "t.yaml:2:13: generate.stop[1]: expected a string, got a list");
  EXPECT_PARSE_ERROR("generate:\n  stop:\n    - a\n    - {b: 1}\n",
                     "t.yaml:4:7: generate.stop[1]: expected a string, got a mapping");
  EXPECT_PARSE_ERROR("generate:\n  stop: [a, ~]\n",
                     "t.yaml:2:13: generate.stop[1]: expected a string, got '~' (null; write \"\" for the empty string)");
  {
    char text[1024] = "generate:\n  stop: [";
    for (int i = 0; i < 65; i++) strcat(text, i ? ",x" : "x");
    strcat(text, "]\n");
    EXPECT_PARSE_ERROR(text, "t.yaml:2:138: generate.stop[64]: too many items (at most 64)");
  }
  /* anchors, aliases, tags, documents, NUL */
  EXPECT_PARSE_ERROR("train: &a\n  lr: 1\n", "t.yaml:1:8: train: anchors (&a) are not supported");
  EXPECT_PARSE_ERROR("train:\n  lr: &x 0.1\n", "t.yaml:2:7: train.lr: anchors (&x) are not supported");
  EXPECT_PARSE_ERROR("train:\n  lr: *x\n", "t.yaml:2:7: train.lr: aliases (*x) are not supported");
  EXPECT_PARSE_ERROR("train:\n  lr: !!float 1\n", "t.yaml:2:7: train.lr: tags ('tag:yaml.org,2002:float') are not supported");
  EXPECT_PARSE_ERROR("run:\n  name: !!str x\n", "t.yaml:2:9: run.name: tags ('tag:yaml.org,2002:str') are not supported");
  EXPECT_PARSE_ERROR("train:\n  lr: 0.1\n---\ntrain:\n  lr: 0.2\n", "t.yaml:3:1: only one YAML document is allowed");
  EXPECT_PARSE_ERROR("run:\n  name: \"a\\0b\"\n", "t.yaml:2:9: run.name: strings may not contain NUL (\\0)");
  /* YAML syntax errors: line:col of the problem */
  EXPECT_PARSE_ERROR("train:\n  lr: 1\n x: 2\n",
                     "t.yaml:3:2: YAML syntax error: did not find expected key (while parsing a block mapping at 1:1)");
  EXPECT_PARSE_ERROR("train:\n  lr: \"abc\n",
                     "t.yaml:3:1: train.lr: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar at 2:7)");
  EXPECT_PARSE_ERROR("run:\n  name: \x01\n", "t.yaml:2:9: YAML syntax error: control characters are not allowed");
  EXPECT_PARSE_ERROR("run:\n  name: \xc3\x28\n", "t.yaml:2:10: YAML syntax error: invalid trailing UTF-8 octet");

  /* A file that cannot be read is a config error naming the path. */
  srlm_config cfg;
  srlm_config_init(&cfg);
  srlm_status st = srlm_config_parse_file(&cfg, "/nonexistent/srlm.yaml");
  EXPECT_EQ_INT(st, SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "/nonexistent/srlm.yaml: cannot open");
  srlm_config_free(&cfg);
}

static void test_overrides(void) {
  srlm_config cfg;
  srlm_config_init(&cfg);
  const char *good[] = {"train.lr=2e-5",         "train.lr=3e-5", /* the last one wins */
                        "run.name=\"yes\"",      "run.seed=42",
                        "roles.colocate=false",  "train.loss=ipo",
                        "generate.stop=[a, \"b c\", \"x: y\"]", "data.prompts=",
                        "run.out_dir=a b # c",   "judge.score_regex='S: *([0-9]+)'",
                        "model.arch.rope_theta=1e6"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    srlm_status st = srlm_config_set(&cfg, good[i]);
    EXPECT(st == SRLM_OK, "override %s: %s", good[i], srlm_error_message());
  }
  EXPECT(cfg.train.lr == 3e-5, "lr %.17g", cfg.train.lr);
  EXPECT_STR_EQ(cfg.run.name, "yes");
  EXPECT_EQ_INT(cfg.run.seed, 42);
  EXPECT(!cfg.roles.colocate, "colocate=false");
  EXPECT_EQ_INT(cfg.train.loss, SRLM_CFG_LOSS_IPO);
  EXPECT_EQ_INT(cfg.generate.stop.n, 3);
  if (cfg.generate.stop.n == 3) EXPECT_STR_EQ(cfg.generate.stop.items[2], "x: y");
  EXPECT_STR_EQ(cfg.data.prompts, "");
  EXPECT_STR_EQ(cfg.run.out_dir, "a b"); /* " # c" is a YAML comment */
  EXPECT_STR_EQ(cfg.judge.score_regex, "S: *([0-9]+)");
  EXPECT(cfg.model.arch.rope_theta == 1e6, "rope_theta %g", cfg.model.arch.rope_theta);
  EXPECT_EQ_INT(srlm_config_set(&cfg, "generate.stop=[]"), SRLM_OK);
  EXPECT_EQ_INT(cfg.generate.stop.n, 0);
  srlm_config_free(&cfg);

  EXPECT_SET_ERROR("train.lr=abc", "override 'train.lr=abc': train.lr: expected a float, got 'abc'");
  EXPECT_SET_ERROR("train.lr=2", "override 'train.lr=2': train.lr: value 2 out of range [0, 1]");
  EXPECT_SET_ERROR("train.batch_size=1.5", "override 'train.batch_size=1.5': train.batch_size: expected an integer, got '1.5'");
  EXPECT_SET_ERROR("roles.colocate=yes",
                   "override 'roles.colocate=yes': roles.colocate: expected a bool (true or false), got 'yes'");
  EXPECT_SET_ERROR("train.lr=", "override 'train.lr=': train.lr: expected a float, got an empty value");
  EXPECT_SET_ERROR("train.lr=[1]", "override 'train.lr=[1]': train.lr: expected a float, got a list");
  EXPECT_SET_ERROR("trian.lr=1", "override 'trian.lr=1': trian.lr: unknown key (did you mean train.lr?)");
  EXPECT_SET_ERROR("train=1", "override 'train=1': train: is a section, not an option; set one of its keys such as train.loss");
  EXPECT_SET_ERROR("train.lr", "override 'train.lr': expected key.path=value");
  EXPECT_SET_ERROR("=1", "override '=1': expected key.path=value");
  EXPECT_SET_ERROR("run.name=a: b",
                   "override 'run.name=a: b': run.name: expected a string, got a mapping (quote strings that contain ': ')");
  EXPECT_SET_ERROR("run.name=\"abc",
                   "override 'run.name=\"abc': run.name: YAML syntax error at column 14: found unexpected end of stream");
  EXPECT_SET_ERROR("run.name=*a", "override 'run.name=*a': run.name: aliases (*a) are not supported");
  EXPECT_SET_ERROR("run.name=!!str a", "override 'run.name=!!str a': run.name: tags ('tag:yaml.org,2002:str') are not supported");
  EXPECT_SET_ERROR("run.name=a\n---\nb", "override 'run.name=a?---?b': run.name: expected one value, got several documents");
  EXPECT_SET_ERROR("generate.stop=a", "override 'generate.stop=a': generate.stop: expected a list of strings such as [a, \"b c\"], got 'a'");
}

static void test_validate_and_load(void) {
  char path[512];
  test_tmp_path(path, sizeof path, "load.yaml");
  const char *text = "train:\n  lr: 0.01\n  min_lr: 0.001\nmodel:\n  arch:\n    num_heads: 8\n";
  EXPECT_EQ_INT(srlm_write_file_atomic(path, text, strlen(text)), SRLM_OK);
  srlm_config cfg;
  const char *ovr[] = {"train.lr=0.02", "model.arch.num_kv_heads=2"};
  srlm_status st = srlm_config_load(&cfg, path, 2, ovr);
  EXPECT(st == SRLM_OK, "load: %s", srlm_error_message());
  EXPECT(cfg.train.lr == 0.02, "override after file: lr %g", cfg.train.lr);
  EXPECT(cfg.train.min_lr == 0.001, "min_lr %g", cfg.train.min_lr);
  EXPECT_EQ_INT(cfg.model.arch.num_heads, 8);
  EXPECT_EQ_INT(cfg.model.arch.num_kv_heads, 2);
  srlm_config_free(&cfg);

  /* Overrides come after the file, so a bad override names the override. */
  const char *bad[] = {"train.lr=x"};
  st = srlm_config_load(&cfg, path, 1, bad);
  EXPECT_EQ_INT(st, SRLM_ERR_CONFIG);
  EXPECT_STR_EQ(srlm_error_message(), "override 'train.lr=x': train.lr: expected a float, got 'x'");
  srlm_config_free(&cfg);

  struct {
    const char *ovr[3];
    const char *message;
  } cases[] = {
      {{"model.arch.num_heads=3"}, "model.arch.num_heads: 3 does not divide model.arch.hidden_size (256); set model.arch.head_dim"},
      {{"model.arch.num_kv_heads=3"}, "model.arch.num_kv_heads: 3 does not divide model.arch.num_heads (4)"},
      {{"model.arch.head_dim=33"}, "model.arch.head_dim: head size 33 must be even (RoPE rotates pairs)"},
      {{"judge.score_min=5"}, "judge.score_min: 5.0 must be below judge.score_max (5.0)"},
      {{"train.min_lr=0.1"}, "train.min_lr: 0.1 is above train.lr (1.0e-06)"},
      {{"roles.colocate=false", "roles.generators=1", "roles.judges=1"},
       "roles.learners: must be at least 1 when roles.colocate is false"},
      {{"generate.samples_per_prompt=1"},
       "generate.samples_per_prompt: 1 is too few for train.loss dpo (it compares at least 2 answers per prompt)"},
      {{"run.comm=nccl", "run.backend=cuda-sim"},
       "run.comm: nccl moves GPU memory between GPUs, so it needs run.backend: cuda (not cuda-sim); set run.comm: auto or mpi"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int n = 0;
    while (n < 3 && cases[i].ovr[n]) n++;
    st = srlm_config_load(&cfg, NULL, n, cases[i].ovr);
    EXPECT(st == SRLM_ERR_CONFIG, "case %zu status %d", i, (int)st);
    EXPECT_STR_EQ(srlm_error_message(), cases[i].message);
    srlm_config_free(&cfg);
  }
  /* The cross checks pass once the other key agrees; a loaded model skips the arch checks. */
  const char *fixed[] = {"model.arch.num_heads=3", "model.arch.head_dim=64"};
  EXPECT_EQ_INT(srlm_config_load(&cfg, NULL, 2, fixed), SRLM_OK);
  srlm_config_free(&cfg);
  const char *loaded[] = {"model.arch.num_heads=3", "model.path=models/x"};
  EXPECT_EQ_INT(srlm_config_load(&cfg, NULL, 2, loaded), SRLM_OK);
  srlm_config_free(&cfg);
  const char *nccl[] = {"run.comm=nccl", "run.backend=cuda"};
  EXPECT_EQ_INT(srlm_config_load(&cfg, NULL, 2, nccl), SRLM_OK);
  EXPECT_EQ_INT(cfg.run.comm, SRLM_CFG_COMM_NCCL);
  srlm_config_free(&cfg);
  const char *sft[] = {"train.loss=sft", "generate.samples_per_prompt=1"};
  EXPECT_EQ_INT(srlm_config_load(&cfg, NULL, 2, sft), SRLM_OK);
  srlm_config_free(&cfg);

  /* Range checks also catch values set from C. */
  srlm_config_init(&cfg);
  cfg.train.batch_size = 0;
  EXPECT_EQ_INT(srlm_config_validate(&cfg), SRLM_ERR_CONFIG);
  EXPECT_STR_EQ(srlm_error_message(), "train.batch_size: value 0 out of range [1, 1048576]");
  cfg.train.batch_size = 8;
  cfg.train.loss = (srlm_cfg_loss)9;
  EXPECT_EQ_INT(srlm_config_validate(&cfg), SRLM_ERR_CONFIG);
  EXPECT_STR_EQ(srlm_error_message(), "train.loss: value 9 is not one of dpo, ipo, grpo, sft");
  cfg.train.loss = SRLM_CFG_LOSS_DPO;
  cfg.generate.top_p = NAN;
  EXPECT_EQ_INT(srlm_config_validate(&cfg), SRLM_ERR_CONFIG);
  EXPECT_STR_EQ(srlm_error_message(), "generate.top_p: value .nan out of range (0, 1]");
  srlm_config_free(&cfg);
}

/* print -> parse -> print: the same text and an equal struct; also each value as an
 * override reproduces it. Returns false (after reporting) on any difference. */
static bool round_trip(const srlm_config *cfg, const char *label) {
  char *a = srlm_config_to_yaml(cfg, 0);
  srlm_config back;
  srlm_config_init(&back);
  srlm_status st = srlm_config_parse(&back, "printed.yaml", a, strlen(a));
  bool ok = st == SRLM_OK;
  EXPECT(ok, "%s: printed config does not parse: %s\n%s", label, srlm_error_message(), a);
  const char *diff = NULL;
  if (ok) {
    ok = srlm_config_equal(cfg, &back, &diff);
    EXPECT(ok, "%s: parsed back differs at %s", label, diff ? diff : "?");
    char *b = srlm_config_to_yaml(&back, 0);
    EXPECT(strcmp(a, b) == 0, "%s: second print differs:\n%s\n---\n%s", label, a, b);
    ok = ok && strcmp(a, b) == 0;
    free(b);
  }
  /* commented output parses to the same config too */
  char *c = srlm_config_to_yaml(cfg, SRLM_CONFIG_PRINT_COMMENTS);
  srlm_config back2;
  srlm_config_init(&back2);
  st = srlm_config_parse(&back2, "commented.yaml", c, strlen(c));
  EXPECT(st == SRLM_OK && srlm_config_equal(cfg, &back2, &diff), "%s: commented print does not round trip: %s",
         label, st ? srlm_error_message() : diff);
  srlm_config_free(&back2);
  free(c);
  /* key=value with the printed value */
  size_t n;
  const srlm_config_option *t = srlm_config_options(&n);
  srlm_config ov;
  srlm_config_init(&ov);
  for (size_t i = 0; i < n; i++) {
    char *v = srlm_config_value_text(cfg, &t[i]);
    size_t len = strlen(t[i].key) + strlen(v) + 2;
    char *arg = malloc(len);
    snprintf(arg, len, "%s=%s", t[i].key, v);
    st = srlm_config_set(&ov, arg);
    EXPECT(st == SRLM_OK, "%s: override %s: %s", label, arg, srlm_error_message());
    free(arg);
    free(v);
  }
  EXPECT(srlm_config_equal(cfg, &ov, &diff), "%s: overrides from printed values differ at %s", label,
         diff ? diff : "?");
  srlm_config_free(&ov);
  srlm_config_free(&back);
  free(a);
  return ok;
}

static void set_string(char **field, const char *s) {
  free(*field);
  *field = srlm_xstrdup(s);
}

static void test_round_trip_strings(void) {
  static const char *const hostile[] = {
      "", "yes", "No", "ON", "off", "y", "n", "true", "False", "null", "Null", "~", "1", "-1", "+1", "1.5", ".5",
      "1e3", "0x10", "010", "0o7", "1_000", "1:20", ".inf", "-.inf", ".nan", "2001-12-14", "a: b", "a:b", "#c",
      "a #c", "a#c", " lead", "trail ", "  ", "x\ny", "\n", "tab\there", "cr\rlf", "quote\"d", "'single'",
      "back\\slash", "\\", "-", "- a", "--- x", "---", "...", "?", "? a", ":", ", ", "a,b", "[x]", "{y}", "&a", "*b",
      "!t", "!!str", "%p", "@x", "`x", "|", ">", "<<", "=", "\x01\x02\x1f\x7f", "\xc3\xa9t\xc3\xa9",
      "\xe2\x80\xa8ls", "\xe2\x80\xa9ps", "\xc2\x85nel", "\xc2\x80\xc2\x9f", "\xef\xbb\xbf\x62om", "\xef\xbf\xbe",
      "\xf0\x9f\x98\x80", "\xc2\xa0nbsp", "runs/x.y-z_1+2", "configs/judge/additive5.txt", "Score: *([0-9]+(\\.[0-9]+)?)",
      "\"", "''", "a'b", "%", "a b\tc\n"};
  size_t n = sizeof hostile / sizeof hostile[0];
  srlm_config cfg;
  srlm_config_init(&cfg);
  for (size_t i = 0; i < n; i++) {
    set_string(&cfg.run.name, hostile[i]);
    set_string(&cfg.judge.score_regex, hostile[(i + 1) % n]);
    char label[32];
    snprintf(label, sizeof label, "hostile string %zu", i);
    round_trip(&cfg, label);
  }
  /* all of them in one list */
  free(cfg.generate.stop.items);
  cfg.generate.stop.items = NULL;
  cfg.generate.stop.n = 0;
  cfg.generate.stop.items = malloc(64 * sizeof(char *));
  for (size_t i = 0; i < n && i < 64; i++) cfg.generate.stop.items[cfg.generate.stop.n++] = srlm_xstrdup(hostile[i]);
  round_trip(&cfg, "hostile list");
  /* spot checks of the printed form */
  char *v;
  const srlm_config_option *name = srlm_config_option_find("run.name");
  set_string(&cfg.run.name, "yes");
  v = srlm_config_value_text(&cfg, name);
  EXPECT_STR_EQ(v, "\"yes\"");
  free(v);
  set_string(&cfg.run.name, "runs/a-b_c.d");
  v = srlm_config_value_text(&cfg, name);
  EXPECT_STR_EQ(v, "runs/a-b_c.d");
  free(v);
  set_string(&cfg.run.name, "a\"b\\c\nd\x01\xe2\x80\xa8");
  v = srlm_config_value_text(&cfg, name);
  EXPECT_STR_EQ(v, "\"a\\\"b\\\\c\\nd\\x01\\L\"");
  free(v);
  srlm_config_free(&cfg);
}

static void test_round_trip_floats(void) {
  srlm_config cfg;
  srlm_config_init(&cfg);
  const double special[] = {0.0, 1.0, 0.1, 1.0 / 3.0, 2.0 / 3.0, 1e-6, 3e-5, 0.30000000000000004, 1e16, 1e15 + 0.5,
                            123456789012345678.0, 5e-324, 2.2250738585072014e-308, DBL_MAX, 9007199254740993.0,
                            1e22, 1e23, 4.35, 0.7, 1e300};
  for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
    cfg.pairs.min_margin = special[i];
    cfg.judge.score_max = special[i] < 1e9 && special[i] > 0 ? special[i] : 5.0;
    char label[64];
    snprintf(label, sizeof label, "float %.17g", special[i]);
    round_trip(&cfg, label);
  }
  /* -0.0 keeps its sign bit */
  cfg.judge.score_min = -0.0;
  cfg.judge.score_max = 5.0;
  char *v = srlm_config_value_text(&cfg, srlm_config_option_find("judge.score_min"));
  EXPECT_STR_EQ(v, "-0.0");
  free(v);
  round_trip(&cfg, "-0.0");
  /* shapes YAML 1.1 readers take as floats: a '.' and a signed exponent */
  const struct {
    double x;
    const char *text;
  } shapes[] = {{1e-6, "1.0e-06"}, {10000.0, "10000.0"}, {0.1, "0.1"}, {1e20, "1.0e+20"}, {3.0, "3.0"},
                {1e-5, "1.0e-05"}, {0.0001, "0.0001"}, {1.5e300, "1.5e+300"}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    cfg.pairs.min_margin = shapes[i].x;
    v = srlm_config_value_text(&cfg, srlm_config_option_find("pairs.min_margin"));
    EXPECT_STR_EQ(v, shapes[i].text);
    free(v);
  }
  /* random bit patterns: every finite non-negative double, denormals included */
  int bad = 0;
  for (uint32_t i = 0; i < 3000 && bad < 5; i++) {
    srlm_philox_out r = srlm_rng_bits(20240611, 7, i, 0, 0);
    uint64_t bits = ((uint64_t)r.v[0] << 32 | r.v[1]) & ~(1ull << 63);
    if (i % 3 == 1) bits >>= (r.v[2] % 60); /* small magnitudes and denormals */
    double x;
    memcpy(&x, &bits, sizeof x);
    if (!isfinite(x)) continue;
    cfg.pairs.min_margin = x;
    char *text = srlm_config_to_yaml(&cfg, 0);
    srlm_config back;
    srlm_config_init(&back);
    srlm_status st = srlm_config_parse(&back, "f.yaml", text, strlen(text));
    bool same = st == SRLM_OK && memcmp(&back.pairs.min_margin, &x, sizeof x) == 0;
    if (!same) {
      bad++;
      EXPECT(same, "double bits %016llx (%.17g) came back as %.17g (%s)", (unsigned long long)bits, x,
             back.pairs.min_margin, st ? srlm_error_message() : "ok");
    }
    srlm_config_free(&back);
    free(text);
  }
  EXPECT_EQ_INT(bad, 0);
  srlm_config_free(&cfg);
}

static void test_copy_save(void) {
  srlm_config a, b;
  srlm_config_init(&a);
  set_string(&a.run.name, "copy: me");
  srlm_config_set(&a, "generate.stop=[x, y]");
  a.train.lr = 0.123;
  srlm_config_copy(&b, &a);
  const char *diff = NULL;
  EXPECT(srlm_config_equal(&a, &b, &diff), "copy differs at %s", diff ? diff : "?");
  EXPECT(a.run.name != b.run.name && a.generate.stop.items != b.generate.stop.items, "copy is deep");
  b.generate.stop.items[1][0] = 'z';
  EXPECT(!srlm_config_equal(&a, &b, &diff) && diff && !strcmp(diff, "generate.stop"), "a changed list item is a difference");
  b.generate.stop.items[1][0] = 'y';
  b.train.lr = nextafter(0.123, 1.0);
  EXPECT(!srlm_config_equal(&a, &b, &diff) && diff && !strcmp(diff, "train.lr"), "one ulp is a difference");

  char path[512];
  test_tmp_path(path, sizeof path, "saved.yaml");
  EXPECT_EQ_INT(srlm_config_save(&a, path), SRLM_OK);
  srlm_config c;
  srlm_config_init(&c);
  srlm_status st = srlm_config_parse_file(&c, path);
  EXPECT(st == SRLM_OK && srlm_config_equal(&a, &c, &diff), "saved config reads back: %s",
         st ? srlm_error_message() : diff ? diff : "");
  srlm_config_free(&a);
  srlm_config_free(&b);
  srlm_config_free(&c);
}

static void test_help(void) {
  char *help = srlm_config_help();
  size_t n;
  const srlm_config_option *t = srlm_config_options(&n);
  for (size_t i = 0; i < n; i++) {
    char line_start[160];
    snprintf(line_start, sizeof line_start, "\n%s ", t[i].key);
    EXPECT_CONTAINS(help, line_start);
    EXPECT_CONTAINS(help, t[i].help);
  }
  EXPECT_CONTAINS(help, "dpo|ipo|grpo|sft");
  EXPECT_CONTAINS(help, "(0, 1]");
  EXPECT_CONTAINS(help, "[0, 0.5)");
  /* columns line up: the type column starts at the same offset on every line */
  const char *line = help;
  long type_col = -1;
  int misaligned = 0;
  while (line && *line) {
    const char *nl = strchr(line, '\n');
    const char *sp = strstr(line, "  ");
    if (sp && (!nl || sp < nl)) {
      while (*sp == ' ') sp++;
      long col = (long)(sp - line);
      if (type_col < 0) type_col = col;
      if (col != type_col) misaligned++;
    }
    line = nl ? nl + 1 : NULL;
  }
  EXPECT_EQ_INT(misaligned, 0);
  free(help);
}

/* The decode batch keys change no sample: a resume may change them, and a checkpoint written
 * before they existed (its config without them) still resumes; another key still refuses. */
static void test_resume_batch_keys(void) {
  srlm_config cfg;
  srlm_config_init(&cfg);
  char *now = srlm_config_to_yaml(&cfg, 0);
  /* the checkpoint's config: the same without the two lines */
  char *old = srlm_xstrdup(now);
  const char *const drop[] = {"  max_batch: ", "  kv_memory_fraction: "};
  for (int i = 0; i < 2; i++) {
    char *at = strstr(old, drop[i]);
    EXPECT(at != NULL, "no '%s' in the yaml", drop[i]);
    if (!at) continue;
    char *nl = strchr(at, '\n');
    memmove(at, nl + 1, strlen(nl + 1) + 1);
  }
  srlm_checkpoint ck = {0};
  ck.config_yaml = old;
  EXPECT(srlm_checkpoint_check_config(&ck, now, "run") == SRLM_OK, "a checkpoint without the batch keys: %s",
         srlm_error_message());
  cfg.generate.max_batch = 3;
  cfg.generate.kv_memory_fraction = 0.5;
  char *other = srlm_config_to_yaml(&cfg, 0);
  ck.config_yaml = now;
  EXPECT(srlm_checkpoint_check_config(&ck, other, "run") == SRLM_OK, "another max_batch: %s", srlm_error_message());
  cfg.generate.max_new_tokens = 7;
  char *bad = srlm_config_to_yaml(&cfg, 0);
  EXPECT(srlm_checkpoint_check_config(&ck, bad, "run") == SRLM_ERR_CONFIG, "another max_new_tokens is refused");
  EXPECT_CONTAINS(srlm_error_message(), "generate.max_new_tokens (checkpoint 256, now 7)");
  srlm_error_clear();
  free(bad);
  free(other);
  free(old);
  free(now);
  srlm_config_free(&cfg);
}

int main(void) {
  test_table();
  test_defaults();
  test_good_file_values();
  test_errors();
  test_overrides();
  test_validate_and_load();
  test_round_trip_strings();
  test_round_trip_floats();
  test_copy_save();
  test_help();
  test_resume_batch_keys();
  TEST_MAIN_END();
}
