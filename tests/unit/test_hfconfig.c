/* HF config.json and model directories: one config per family (llama with llama3
 * rope scaling, qwen2 biases, qwen3 head_dim and q/k norms, mistral sliding window),
 * config errors naming the file and key, the writer read back, expected tensors and
 * parameter counts of real models, and model directories checked against their
 * config (missing / unexpected / misshapen tensors, all listed). */
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srlm/core.h"
#include "srlm/hfmodel.h"
#include "srlm/safetensors.h"
#include "test.h"

/* Writes SRLM_TMP/<name>/config.json and returns its path (static buffer). */
static const char *write_config(const char *name, const char *json) {
  static char path[4096];
  char dir[4000];
  test_tmp_path(dir, sizeof dir, name);
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/config.json", dir);
  EXPECT_EQ_INT(srlm_write_file_atomic(path, json, strlen(json)), SRLM_OK);
  return path;
}

static srlm_status load(const char *name, const char *json, srlm_model_config *c) {
  return srlm_model_config_load(write_config(name, json), c);
}

static void test_llama(void) {
  /* Llama 3.2 1B Instruct's config.json */
  const char *json =
      "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
      " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009], \"head_dim\": 64,"
      " \"hidden_act\": \"silu\", \"hidden_size\": 2048, \"initializer_range\": 0.02,"
      " \"intermediate_size\": 8192, \"max_position_embeddings\": 131072, \"mlp_bias\": false,"
      " \"model_type\": \"llama\", \"num_attention_heads\": 32, \"num_hidden_layers\": 16,"
      " \"num_key_value_heads\": 8, \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05,"
      " \"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
      " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}, \"rope_theta\": 500000.0,"
      " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.45.0.dev0\","
      " \"use_cache\": true, \"vocab_size\": 128256}";
  srlm_model_config c;
  srlm_status st = load("llama32", json, &c);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(c.model_type, SRLM_MODEL_LLAMA);
  EXPECT_EQ_INT(c.vocab_size, 128256);
  EXPECT_EQ_INT(c.hidden_size, 2048);
  EXPECT_EQ_INT(c.intermediate_size, 8192);
  EXPECT_EQ_INT(c.num_hidden_layers, 16);
  EXPECT_EQ_INT(c.num_attention_heads, 32);
  EXPECT_EQ_INT(c.num_key_value_heads, 8);
  EXPECT_EQ_INT(c.head_dim, 64);
  EXPECT_EQ_INT(c.max_position_embeddings, 131072);
  EXPECT_NEAR(c.rms_norm_eps, 1e-5, 0);
  EXPECT_NEAR(c.rope_theta, 500000.0, 0);
  EXPECT_EQ_INT(c.rope_scaling.type, SRLM_ROPE_SCALING_LLAMA3);
  EXPECT_NEAR(c.rope_scaling.factor, 32.0, 0);
  EXPECT_NEAR(c.rope_scaling.low_freq_factor, 1.0, 0);
  EXPECT_NEAR(c.rope_scaling.high_freq_factor, 4.0, 0);
  EXPECT_EQ_INT(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT(c.tie_word_embeddings, "tied");
  EXPECT(!c.qkv_bias && !c.o_bias && !c.qk_norm, "llama without attention_bias has no biases or q/k norms");
  EXPECT_EQ_INT(c.bos_token_id, 128000);
  EXPECT_EQ_INT(c.n_eos, 3);
  EXPECT_EQ_INT(c.eos_token_ids[2], 128009);
  EXPECT_EQ_INT(c.torch_dtype, SRLM_ST_BF16);
  EXPECT_EQ_INT(c.sliding_window, 0);
  /* 1,235,814,400 parameters: the published size of Llama 3.2 1B */
  EXPECT_EQ_INT(srlm_model_param_count(&c), 1235814400LL);
  char h[32];
  srlm_format_count(srlm_model_param_count(&c), h, sizeof h);
  EXPECT_STR_EQ(h, "1.24B");

  /* older key "type", integer theta, a single eos id, defaults for absent keys */
  st = load("llama_old",
            "{\"model_type\": \"llama\", \"vocab_size\": 32000, \"hidden_size\": 64, \"intermediate_size\": 160,"
            " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"rope_theta\": 10000, \"eos_token_id\": 2,"
            " \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1,"
            " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}, \"attention_bias\": true}",
            &c);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(c.num_key_value_heads, 4); /* defaults to the heads */
  EXPECT_EQ_INT(c.head_dim, 16);           /* hidden / heads */
  EXPECT_EQ_INT(c.max_position_embeddings, 2048);
  EXPECT_NEAR(c.rms_norm_eps, 1e-6, 0);
  EXPECT_EQ_INT(c.n_eos, 1);
  EXPECT_EQ_INT(c.eos_token_ids[0], 2);
  EXPECT_EQ_INT(c.bos_token_id, -1);
  EXPECT_EQ_INT(c.rope_scaling.type, SRLM_ROPE_SCALING_LLAMA3);
  EXPECT_NEAR(c.rope_scaling.factor, 8, 0);
  EXPECT(c.qkv_bias && c.o_bias, "llama attention_bias puts biases on q, k, v and o");
  EXPECT_EQ_INT(c.torch_dtype, SRLM_ST_F32);

  /* transformers 5 keeps theta and the rope type in rope_parameters */
  st = load("llama_v5",
            "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 160,"
            " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"dtype\": \"float16\","
            " \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 250000.0}}",
            &c);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  EXPECT_NEAR(c.rope_theta, 250000.0, 0);
  EXPECT_EQ_INT(c.rope_scaling.type, SRLM_ROPE_SCALING_NONE);
  EXPECT_EQ_INT(c.torch_dtype, SRLM_ST_F16);
}

static void test_qwen2(void) {
  /* Qwen2.5 0.5B Instruct's config.json */
  const char *json =
      "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0, \"bos_token_id\": 151643,"
      " \"eos_token_id\": 151645, \"hidden_act\": \"silu\", \"hidden_size\": 896, \"initializer_range\": 0.02,"
      " \"intermediate_size\": 4864, \"max_position_embeddings\": 32768, \"max_window_layers\": 21,"
      " \"model_type\": \"qwen2\", \"num_attention_heads\": 14, \"num_hidden_layers\": 24,"
      " \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"sliding_window\": 32768,"
      " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.43.1\","
      " \"use_cache\": true, \"use_sliding_window\": false, \"vocab_size\": 151936}";
  srlm_model_config c;
  srlm_status st = load("qwen25", json, &c);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(c.model_type, SRLM_MODEL_QWEN2);
  EXPECT_EQ_INT(c.head_dim, 64);
  EXPECT(c.qkv_bias && !c.o_bias && !c.qk_norm, "qwen2: q/k/v biases only");
  EXPECT_EQ_INT(c.sliding_window, 0); /* use_sliding_window false */
  EXPECT_EQ_INT(c.max_window_layers, 21);
  EXPECT_EQ_INT(c.n_eos, 1);
  EXPECT_EQ_INT(c.eos_token_ids[0], 151645);
  EXPECT_EQ_INT(srlm_model_param_count(&c), 494032768LL); /* Qwen2.5-0.5B */
  srlm_tensor_spec *s;
  size_t n;
  EXPECT_EQ_INT(srlm_model_expected_tensors(&c, &s, &n), SRLM_OK);
  EXPECT_EQ_INT(n, 1 + 24 * 12 + 1); /* tied: no lm_head */
  EXPECT_STR_EQ(s[2].name, "model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ_INT(s[2].shape[0], 896);
  EXPECT_STR_EQ(s[4].name, "model.layers.0.self_attn.k_proj.bias");
  EXPECT_EQ_INT(s[4].shape[0], 128);
  EXPECT_STR_EQ(s[n - 1].name, "model.norm.weight");
  free(s);

  st = load("qwen2_swa",
            "{\"model_type\": \"qwen2\", \"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 128,"
            " \"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
            " \"use_sliding_window\": true, \"sliding_window\": 16, \"max_window_layers\": 2}",
            &c);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(c.sliding_window, 16);
  EXPECT_EQ_INT(c.max_window_layers, 2);
}

static void test_qwen3(void) {
  /* Qwen3 0.6B's config.json: head_dim 128 although hidden / heads is 64 */
  const char *json =
      "{\"architectures\": [\"Qwen3ForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
      " \"bos_token_id\": 151643, \"eos_token_id\": 151645, \"head_dim\": 128, \"hidden_act\": \"silu\","
      " \"hidden_size\": 1024, \"initializer_range\": 0.02, \"intermediate_size\": 3072,"
      " \"max_position_embeddings\": 40960, \"max_window_layers\": 28, \"model_type\": \"qwen3\","
      " \"num_attention_heads\": 16, \"num_hidden_layers\": 28, \"num_key_value_heads\": 8,"
      " \"rms_norm_eps\": 1e-06, \"rope_scaling\": null, \"rope_theta\": 1000000, \"sliding_window\": null,"
      " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.51.0\","
      " \"use_cache\": true, \"use_sliding_window\": false, \"vocab_size\": 151936}";
  srlm_model_config c;
  srlm_status st = load("qwen3", json, &c);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(c.model_type, SRLM_MODEL_QWEN3);
  EXPECT_EQ_INT(c.head_dim, 128);
  EXPECT(c.qk_norm && !c.qkv_bias && !c.o_bias, "qwen3: q/k norms, no biases");
  EXPECT_EQ_INT(c.rope_scaling.type, SRLM_ROPE_SCALING_NONE);
  EXPECT_EQ_INT(srlm_model_param_count(&c), 596049920LL); /* Qwen3-0.6B */
  char h[32];
  srlm_format_count(srlm_model_param_count(&c), h, sizeof h);
  EXPECT_STR_EQ(h, "596M");
  srlm_tensor_spec *s;
  size_t n;
  EXPECT_EQ_INT(srlm_model_expected_tensors(&c, &s, &n), SRLM_OK);
  bool q_ok = false, qn_ok = false, o_ok = false;
  for (size_t i = 0; i < n; i++) {
    if (!strcmp(s[i].name, "model.layers.27.self_attn.q_proj.weight"))
      q_ok = s[i].shape[0] == 2048 && s[i].shape[1] == 1024;
    if (!strcmp(s[i].name, "model.layers.27.self_attn.q_norm.weight")) qn_ok = s[i].ndim == 1 && s[i].shape[0] == 128;
    if (!strcmp(s[i].name, "model.layers.0.self_attn.o_proj.weight"))
      o_ok = s[i].shape[0] == 1024 && s[i].shape[1] == 2048;
  }
  EXPECT(q_ok && qn_ok && o_ok, "q_proj [2048, 1024]: %d, q_norm [128]: %d, o_proj [1024, 2048]: %d", q_ok, qn_ok, o_ok);
  free(s);
}

static void test_mistral(void) {
  const char *base =
      "{\"model_type\": \"mistral\", \"vocab_size\": 32000, \"hidden_size\": 4096, \"intermediate_size\": 14336,"
      " \"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"num_key_value_heads\": 8,"
      " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false, \"sliding_window\": %s}";
  char json[1024];
  srlm_model_config c;
  snprintf(json, sizeof json, base, "4096");
  srlm_status st = load("mistral_swa", json, &c);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(c.model_type, SRLM_MODEL_MISTRAL);
  EXPECT_EQ_INT(c.sliding_window, 4096);
  EXPECT_EQ_INT(c.max_window_layers, 0); /* every layer */
  EXPECT_EQ_INT(c.max_position_embeddings, 131072);
  EXPECT_EQ_INT(srlm_model_param_count(&c), 7241732096LL); /* Mistral 7B */
  snprintf(json, sizeof json, base, "null");
  st = load("mistral_null", json, &c);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(c.sliding_window, 0);
  snprintf(json, sizeof json, base, "\"4096\"");
  st = load("mistral_bad", json, &c);
  EXPECT_EQ_INT(st, SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "mistral_bad/config.json: key 'sliding_window': expected an integer, got a string");
}

static const char *k_tiny =
    "\"vocab_size\": 22, \"hidden_size\": 64, \"intermediate_size\": 160, \"num_hidden_layers\": 4,"
    " \"num_attention_heads\": 4";

static void expect_config_error(const char *name, const char *json, srlm_status code, const char *part1,
                                const char *part2) {
  srlm_model_config c;
  srlm_status st = load(name, json, &c);
  const char *msg = srlm_error_message();
  if (st != code) fprintf(stderr, "case %s: got %s: %s\n", name, srlm_status_name(st), msg);
  EXPECT_EQ_INT(st, code);
  char want[256];
  snprintf(want, sizeof want, "%s/config.json", name);
  EXPECT_CONTAINS(msg, want);
  if (part1) EXPECT_CONTAINS(msg, part1);
  if (part2) EXPECT_CONTAINS(msg, part2);
}

static void test_errors(void) {
  char j[1024];
  const srlm_status F = SRLM_ERR_FORMAT, U = SRLM_ERR_UNSUPPORTED, R = SRLM_ERR_RANGE;
  snprintf(j, sizeof j, "{\"model_type\": \"gpt2\", %s}", k_tiny);
  expect_config_error("e_type", j, U, "key 'model_type': 'gpt2' is not supported",
                      "(srlm supports llama, qwen2, qwen3, mistral)");
  expect_config_error("e_notype", "{\"vocab_size\": 3}", F, "key 'model_type': missing required key", NULL);
  snprintf(j, sizeof j, "{\"model_type\": 7, %s}", k_tiny);
  expect_config_error("e_typetype", j, F, "key 'model_type': expected a string, got an integer", NULL);
  expect_config_error("e_missing",
                      "{\"model_type\": \"llama\", \"vocab_size\": 22, \"intermediate_size\": 160,"
                      " \"num_hidden_layers\": 4, \"num_attention_heads\": 4}",
                      F, "key 'hidden_size': missing required key", NULL);
  expect_config_error("e_null",
                      "{\"model_type\": \"llama\", \"vocab_size\": 22, \"hidden_size\": null, \"intermediate_size\": 160,"
                      " \"num_hidden_layers\": 4, \"num_attention_heads\": 4}",
                      F, "key 'hidden_size': is null", NULL);
  expect_config_error("e_string",
                      "{\"model_type\": \"qwen2\", \"vocab_size\": 22, \"hidden_size\": \"64\", \"intermediate_size\": 160,"
                      " \"num_hidden_layers\": 4, \"num_attention_heads\": 4}",
                      F, "key 'hidden_size': expected an integer, got a string", NULL);
  expect_config_error("e_real",
                      "{\"model_type\": \"qwen3\", \"vocab_size\": 22, \"hidden_size\": 64, \"intermediate_size\": 160,"
                      " \"num_hidden_layers\": 4.0, \"num_attention_heads\": 4}",
                      F, "key 'num_hidden_layers': expected an integer, got a real number", NULL);
  expect_config_error("e_neg",
                      "{\"model_type\": \"llama\", \"vocab_size\": -22, \"hidden_size\": 64, \"intermediate_size\": 160,"
                      " \"num_hidden_layers\": 4, \"num_attention_heads\": 4}",
                      R, "key 'vocab_size': must be >= 1, got -22", NULL);
  snprintf(j, sizeof j, "{\"model_type\": \"llama\", %s, \"tie_word_embeddings\": 1}", k_tiny);
  expect_config_error("e_bool", j, F, "key 'tie_word_embeddings': expected true or false, got an integer", NULL);
  snprintf(j, sizeof j, "{\"model_type\": \"llama\", %s, \"rms_norm_eps\": \"1e-5\"}", k_tiny);
  expect_config_error("e_eps", j, F, "key 'rms_norm_eps': expected a number, got a string", NULL);
  snprintf(j, sizeof j, "{\"model_type\": \"llama\", %s, \"rms_norm_eps\": 0}", k_tiny);
  expect_config_error("e_eps0", j, R, "key 'rms_norm_eps': must be > 0", NULL);
  snprintf(j, sizeof j, "{\"model_type\": \"llama\", %s, \"num_key_value_heads\": 3}", k_tiny);
  expect_config_error("e_kv", j, R, "key 'num_key_value_heads'", "must be a multiple of num_key_value_heads (3)");
  expect_config_error("e_hd",
                      "{\"model_type\": \"llama\", \"vocab_size\": 22, \"hidden_size\": 66, \"intermediate_size\": 160,"
                      " \"num_hidden_layers\": 4, \"num_attention_heads\": 4}",
                      R, "key 'head_dim': not given, and hidden_size (66) is not a multiple", NULL);
  snprintf(j, sizeof j, "{\"model_type\": \"llama\", %s, \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}",
           k_tiny);
  expect_config_error("e_yarn", j, U, "key 'rope_scaling.rope_type': 'yarn' is not supported", NULL);
  snprintf(j, sizeof j, "{\"model_type\": \"llama\", %s, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}}",
           k_tiny);
  expect_config_error("e_linear", j, U, "key 'rope_scaling.rope_type': 'linear' is not supported", NULL);
  snprintf(j, sizeof j,
           "{\"model_type\": \"llama\", %s, \"rope_scaling\": {\"rope_type\": \"llama3\", \"low_freq_factor\": 1,"
           " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}}",
           k_tiny);
  expect_config_error("e_factor", j, F, "key 'rope_scaling.factor': missing required key", NULL);
  snprintf(j, sizeof j,
           "{\"model_type\": \"llama\", %s, \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8,"
           " \"low_freq_factor\": 1, \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192.5}}",
           k_tiny);
  expect_config_error("e_orig", j, F, "key 'rope_scaling.original_max_position_embeddings': expected an integer", NULL);
  snprintf(j, sizeof j, "{\"model_type\": \"llama\", %s, \"rope_scaling\": [1]}", k_tiny);
  expect_config_error("e_ropearr", j, F, "key 'rope_scaling': expected an object or null, got an array", NULL);
  snprintf(j, sizeof j, "{\"model_type\": \"llama\", %s, \"hidden_act\": \"gelu\"}", k_tiny);
  expect_config_error("e_act", j, U, "key 'hidden_act': 'gelu' is not supported", NULL);
  snprintf(j, sizeof j, "{\"model_type\": \"llama\", %s, \"mlp_bias\": true}", k_tiny);
  expect_config_error("e_mlpbias", j, U, "key 'mlp_bias'", NULL);
  snprintf(j, sizeof j, "{\"model_type\": \"llama\", %s, \"eos_token_id\": [1, \"2\"]}", k_tiny);
  expect_config_error("e_eos", j, F, "key 'eos_token_id': element 1 must be a non-negative integer, got a string", NULL);
  snprintf(j, sizeof j, "{\"model_type\": \"llama\", %s, \"torch_dtype\": \"int8\"}", k_tiny);
  expect_config_error("e_dtype", j, U, "key 'torch_dtype': 'int8' is not supported", NULL);
  snprintf(j, sizeof j, "{\"model_type\": \"llama\", %s, \"vocab_size\": 23}", k_tiny);
  expect_config_error("e_dupkey", j, F, "not valid JSON", "duplicate");
  expect_config_error("e_json", "{\"model_type\": ", F, "not valid JSON", NULL);
  expect_config_error("e_array", "[]", F, "is an array, expected a JSON object", NULL);
  srlm_model_config c;
  EXPECT_EQ_INT(srlm_model_config_load("/nonexistent/dir/config.json", &c), SRLM_ERR_IO);
  EXPECT_CONTAINS(srlm_error_message(), "/nonexistent/dir/config.json");
}

static bool same_config(const srlm_model_config *a, const srlm_model_config *b) {
  bool eos = a->n_eos == b->n_eos;
  for (int i = 0; eos && i < a->n_eos; i++) eos = a->eos_token_ids[i] == b->eos_token_ids[i];
  return a->model_type == b->model_type && a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
         a->intermediate_size == b->intermediate_size && a->num_hidden_layers == b->num_hidden_layers &&
         a->num_attention_heads == b->num_attention_heads && a->num_key_value_heads == b->num_key_value_heads &&
         a->head_dim == b->head_dim && a->max_position_embeddings == b->max_position_embeddings &&
         a->rms_norm_eps == b->rms_norm_eps && a->rope_theta == b->rope_theta &&
         a->rope_scaling.type == b->rope_scaling.type && a->rope_scaling.factor == b->rope_scaling.factor &&
         a->rope_scaling.low_freq_factor == b->rope_scaling.low_freq_factor &&
         a->rope_scaling.high_freq_factor == b->rope_scaling.high_freq_factor &&
         a->rope_scaling.original_max_position_embeddings == b->rope_scaling.original_max_position_embeddings &&
         a->tie_word_embeddings == b->tie_word_embeddings && a->attention_bias == b->attention_bias &&
         a->qkv_bias == b->qkv_bias && a->o_bias == b->o_bias && a->qk_norm == b->qk_norm &&
         a->sliding_window == b->sliding_window && a->max_window_layers == b->max_window_layers &&
         a->bos_token_id == b->bos_token_id && eos && a->torch_dtype == b->torch_dtype;
}

static void test_writer(void) {
  srlm_model_config cfgs[4];
  for (int t = 0; t < SRLM_MODEL_TYPE_COUNT; t++) {
    srlm_model_config *c = &cfgs[t];
    srlm_model_config_defaults(c, (srlm_model_type)t);
    c->vocab_size = 22 + t;
    c->hidden_size = 64;
    c->intermediate_size = 160;
    c->num_hidden_layers = 2 + t;
    c->num_attention_heads = 4;
    c->num_key_value_heads = 2;
    c->rms_norm_eps = 1e-5;
    c->rope_theta = 0.1 + 0.2; /* not a short decimal: the writer must still read back exactly */
    c->bos_token_id = 1;
    c->n_eos = t == 0 ? 2 : 1;
    c->eos_token_ids[0] = 2;
    c->eos_token_ids[1] = 3;
    c->torch_dtype = SRLM_ST_BF16;
  }
  cfgs[SRLM_MODEL_LLAMA].rope_scaling = (srlm_rope_scaling){SRLM_ROPE_SCALING_LLAMA3, 8, 1, 4, 8192};
  cfgs[SRLM_MODEL_LLAMA].attention_bias = true;
  cfgs[SRLM_MODEL_QWEN3].head_dim = 32;
  cfgs[SRLM_MODEL_QWEN3].tie_word_embeddings = true;
  cfgs[SRLM_MODEL_QWEN2].sliding_window = 128;
  cfgs[SRLM_MODEL_QWEN2].max_window_layers = 1;
  cfgs[SRLM_MODEL_MISTRAL].sliding_window = 4096;
  for (int t = 0; t < SRLM_MODEL_TYPE_COUNT; t++) {
    EXPECT_EQ_INT(srlm_model_config_finalize(&cfgs[t], "test"), SRLM_OK);
    char name[64], path[4096];
    snprintf(name, sizeof name, "w_%s", srlm_model_type_name((srlm_model_type)t));
    test_tmp_path(path, sizeof path, name);
    mkdir(path, 0755);
    strncat(path, "/config.json", sizeof path - strlen(path) - 1);
    EXPECT_EQ_INT(srlm_model_config_write(path, &cfgs[t]), SRLM_OK);
    srlm_model_config back;
    srlm_status st = srlm_model_config_load(path, &back);
    EXPECT(st == SRLM_OK, "%s: %s", name, srlm_error_message());
    EXPECT(same_config(&cfgs[t], &back), "%s: config changed in a write/read round trip", name);
    char *text;
    size_t len;
    EXPECT_EQ_INT(srlm_read_file(path, &text, &len), SRLM_OK);
    char arch[128];
    snprintf(arch, sizeof arch, "\"architectures\": [\n    \"%s\"\n  ]",
             srlm_model_type_architecture((srlm_model_type)t));
    EXPECT_CONTAINS(text, arch);
    EXPECT_CONTAINS(text, "\"hidden_act\": \"silu\"");
    EXPECT_CONTAINS(text, "\"torch_dtype\": \"bfloat16\"");
    EXPECT_CONTAINS(text, "\"rms_norm_eps\": 1e-05");
    if (t == SRLM_MODEL_LLAMA) {
      EXPECT_CONTAINS(text, "\"rope_type\": \"llama3\"");
      EXPECT_CONTAINS(text, "\"factor\": 8.0");
      EXPECT_CONTAINS(text, "\"eos_token_id\": [\n    2,\n    3\n  ]");
    }
    if (t == SRLM_MODEL_QWEN2) EXPECT_CONTAINS(text, "\"use_sliding_window\": true");
    if (t == SRLM_MODEL_MISTRAL) EXPECT_CONTAINS(text, "\"sliding_window\": 4096");
    free(text);
  }
  char h[32];
  const struct {
    uint64_t n;
    const char *s;
  } counts[] = {{0, "0"}, {999, "999"}, {1000, "1.00K"}, {191808, "192K"}, {999499, "999K"}, {999999, "1.00M"},
                {12345678, "12.3M"}, {7241732096ULL, "7.24B"}, {1234567890123ULL, "1.23T"}};
  for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
    srlm_format_count(counts[i].n, h, sizeof h);
    EXPECT_STR_EQ(h, counts[i].s);
  }
}

/* ---- model directories ---------------------------------------------------------------- */

static srlm_model_config tiny(srlm_model_type t) {
  /* the quickstart recipe's model: d_model 64, 4 layers, 4 heads of 16, SwiGLU 160, untied */
  srlm_model_config c;
  srlm_model_config_defaults(&c, t);
  c.vocab_size = 22;
  c.hidden_size = 64;
  c.intermediate_size = 160;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.rms_norm_eps = 1e-5;
  return c;
}

static double stddev(const float *x, size_t n, double *mean) {
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) s += x[i];
  *mean = s / (double)n;
  for (size_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
  return sqrt(s2 / (double)n);
}

static void test_random_dir(void) {
  srlm_model_config c = tiny(SRLM_MODEL_LLAMA);
  EXPECT_EQ_INT(srlm_model_param_count(&c), 191808); /* the recipe's count */
  char dir[4096], dir2[4096];
  test_tmp_path(dir, sizeof dir, "rand_llama");
  test_tmp_path(dir2, sizeof dir2, "nested/rand_llama2"); /* parents are created */
  EXPECT_EQ_INT(srlm_hf_model_write_random(dir, &c, 1234, SRLM_ST_F32), SRLM_OK);
  srlm_hf_model *m = NULL;
  srlm_status st = srlm_hf_model_open(dir, &m);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (!m) return;
  EXPECT_EQ_INT(srlm_st_set_count(srlm_hf_model_weights(m)), 2 + 4 * 9 + 1);
  EXPECT_EQ_INT(srlm_hf_model_config(m)->hidden_size, 64);
  float buf[22 * 64];
  const srlm_st_tensor *t = srlm_hf_model_tensor(m, "model.embed_tokens.weight");
  EXPECT_EQ_INT(srlm_st_tensor_to_f32(t, buf, 22 * 64), SRLM_OK);
  double mean, sd = stddev(buf, 22 * 64, &mean);
  EXPECT_NEAR(sd, 0.02, 0.0015);
  EXPECT_NEAR(mean, 0.0, 0.0015);
  static float big[160 * 64];
  t = srlm_hf_model_tensor(m, "model.layers.3.mlp.down_proj.weight");
  EXPECT_EQ_INT(srlm_st_tensor_to_f32(t, big, 160 * 64), SRLM_OK);
  sd = stddev(big, 160 * 64, &mean);
  EXPECT_NEAR(sd, 0.02 / sqrt(8.0), 0.0003);
  t = srlm_hf_model_tensor(m, "model.layers.0.input_layernorm.weight");
  EXPECT_EQ_INT(srlm_st_tensor_to_f32(t, buf, 64), SRLM_OK);
  EXPECT_NEAR(buf[0], 1.0, 0);
  EXPECT_NEAR(buf[63], 1.0, 0);
  /* different tensors draw different numbers */
  float q[64], k[64];
  srlm_st_tensor_to_f32(srlm_hf_model_tensor(m, "model.layers.0.self_attn.q_proj.weight"), big, 64 * 64);
  memcpy(q, big, sizeof q);
  srlm_st_tensor_to_f32(srlm_hf_model_tensor(m, "model.layers.0.self_attn.k_proj.weight"), big, 64 * 64);
  memcpy(k, big, sizeof k);
  EXPECT(memcmp(q, k, sizeof q) != 0, "q_proj and k_proj drew the same numbers");
  srlm_hf_model_close(m);

  /* the weights are a function of (seed, config): same seed, same bytes; other seed, other bytes */
  char p1[4200], p2[4200];
  snprintf(p1, sizeof p1, "%s/model.safetensors", dir);
  snprintf(p2, sizeof p2, "%s/model.safetensors", dir2);
  char *a, *b;
  size_t na, nb;
  EXPECT_EQ_INT(srlm_hf_model_write_random(dir2, &c, 1234, SRLM_ST_F32), SRLM_OK);
  srlm_read_file(p1, &a, &na);
  srlm_read_file(p2, &b, &nb);
  EXPECT(na == nb && memcmp(a, b, na) == 0, "same seed gave different files");
  free(b);
  EXPECT_EQ_INT(srlm_hf_model_write_random(dir2, &c, 1235, SRLM_ST_F32), SRLM_OK);
  srlm_read_file(p2, &b, &nb);
  EXPECT(na == nb && memcmp(a, b, na) != 0, "another seed gave the same file");
  free(a);
  free(b);

  /* every family, in bf16, opens clean */
  for (int ty = 0; ty < SRLM_MODEL_TYPE_COUNT; ty++) {
    srlm_model_config cf = tiny((srlm_model_type)ty);
    cf.num_key_value_heads = 2;
    if (ty == SRLM_MODEL_QWEN3) cf.head_dim = 32;
    if (ty == SRLM_MODEL_QWEN2) cf.tie_word_embeddings = true;
    char d[4096], nm[64];
    snprintf(nm, sizeof nm, "rand_%s", srlm_model_type_name((srlm_model_type)ty));
    test_tmp_path(d, sizeof d, nm);
    EXPECT_EQ_INT(srlm_hf_model_write_random(d, &cf, 7, SRLM_ST_BF16), SRLM_OK);
    st = srlm_hf_model_open(d, &m);
    EXPECT(st == SRLM_OK, "%s: %s", nm, srlm_error_message());
    if (!m) continue;
    const srlm_st_tensor *e = srlm_hf_model_tensor(m, "model.embed_tokens.weight");
    EXPECT_EQ_INT(e->dtype, SRLM_ST_BF16);
    EXPECT_EQ_INT(srlm_hf_model_config(m)->torch_dtype, SRLM_ST_BF16);
    if (ty == SRLM_MODEL_QWEN3) {
      const srlm_st_tensor *qn = srlm_hf_model_tensor(m, "model.layers.3.self_attn.q_norm.weight");
      EXPECT(qn && qn->ndim == 1 && qn->shape[0] == 32, "qwen3 q_norm [32]");
    }
    if (ty == SRLM_MODEL_QWEN2) {
      EXPECT(srlm_hf_model_tensor(m, "model.layers.0.self_attn.v_proj.bias") != NULL, "qwen2 v bias");
      EXPECT(srlm_hf_model_tensor(m, "lm_head.weight") == NULL, "tied qwen2 has no lm_head");
    }
    srlm_hf_model_close(m);
  }
}

/* Writes dir with the expected tensors of c, edited: drop one, add one, reshape one. */
static void test_bad_dir(void) {
  srlm_model_config c = tiny(SRLM_MODEL_LLAMA);
  srlm_tensor_spec *s;
  size_t n;
  EXPECT_EQ_INT(srlm_model_expected_tensors(&c, &s, &n), SRLM_OK);
  EXPECT_EQ_INT(n, 39);
  static float zeros[160 * 64 * 4];
  srlm_st_entry *e = calloc(n + 4, sizeof *e);
  size_t k = 0;
  int64_t bad_shape[1] = {32}, extra_shape[2] = {2, 2}, inv_shape[1] = {8};
  for (size_t i = 0; i < n; i++) {
    if (!strcmp(s[i].name, "model.layers.1.mlp.up_proj.weight")) continue;
    e[k] = (srlm_st_entry){s[i].name, SRLM_ST_F32, s[i].ndim, s[i].shape, zeros};
    if (!strcmp(s[i].name, "model.norm.weight")) e[k].shape = bad_shape;
    k++;
  }
  e[k++] = (srlm_st_entry){"extra.weight", SRLM_ST_F32, 2, extra_shape, zeros};
  char dir[4096];
  test_tmp_path(dir, sizeof dir, "bad_dir");
  mkdir(dir, 0755);
  char cfg_path[4200];
  snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
  EXPECT_EQ_INT(srlm_model_config_write(cfg_path, &c), SRLM_OK);
  EXPECT_EQ_INT(srlm_st_write_dir(dir, e, k, NULL, 0, 0, NULL), SRLM_OK);
  srlm_hf_model *m = NULL;
  EXPECT_EQ_INT(srlm_hf_model_open(dir, &m), SRLM_ERR_FORMAT);
  const char *msg = srlm_error_message();
  EXPECT_CONTAINS(msg, "bad_dir: 3 tensor problems: ");
  EXPECT_CONTAINS(msg, "missing tensor 'model.layers.1.mlp.up_proj.weight' (expected shape [160, 64])");
  EXPECT_CONTAINS(msg, "tensor 'model.norm.weight' in model.safetensors has shape [32], expected [64]");
  EXPECT_CONTAINS(msg, "unexpected tensor 'extra.weight' in model.safetensors");
  EXPECT(m == NULL, "handle returned for a bad directory");

  /* the same as a report, and sharded */
  EXPECT_EQ_INT(srlm_st_write_dir(dir, e, k, NULL, 0, 40000, NULL), SRLM_OK);
  srlm_st_set *w = NULL;
  EXPECT_EQ_INT(srlm_st_set_open_dir(dir, &w), SRLM_OK);
  if (w) {
    EXPECT(srlm_st_set_file_count(w) > 1, "expected shards");
    srlm_tensor_check r;
    EXPECT_EQ_INT(srlm_model_check_tensors(&c, w, dir, &r), SRLM_ERR_FORMAT);
    EXPECT_EQ_INT(r.n_expected, 39);
    EXPECT_EQ_INT(r.n_found, 39);
    EXPECT_EQ_INT(r.n_missing, 1);
    EXPECT_EQ_INT(r.n_unexpected, 1);
    EXPECT_EQ_INT(r.n_bad_shape, 1);
    EXPECT_CONTAINS(srlm_error_message(), "unexpected tensor 'extra.weight' in model-000");
    srlm_st_set_free(w);
  }

  /* tolerated extras: a tied model's lm_head and old rotary buffers; a wrong dtype is not */
  srlm_model_config tied = c;
  tied.tie_word_embeddings = true;
  EXPECT_EQ_INT(srlm_model_config_write(cfg_path, &tied), SRLM_OK);
  k = 0;
  for (size_t i = 0; i < n; i++) e[k++] = (srlm_st_entry){s[i].name, SRLM_ST_F32, s[i].ndim, s[i].shape, zeros};
  e[k++] = (srlm_st_entry){"model.layers.0.self_attn.rotary_emb.inv_freq", SRLM_ST_F32, 1, inv_shape, zeros};
  EXPECT_EQ_INT(srlm_st_write_dir(dir, e, k, NULL, 0, 0, NULL), SRLM_OK);
  srlm_status st = srlm_hf_model_open(dir, &m);
  EXPECT(st == SRLM_OK, "tied lm_head and inv_freq should be ignored: %s", srlm_error_message());
  srlm_hf_model_close(m);
  e[0].dtype = SRLM_ST_U8; /* embed_tokens [22, 64] as bytes */
  EXPECT_EQ_INT(srlm_st_write_dir(dir, e, k, NULL, 0, 0, NULL), SRLM_OK);
  EXPECT_EQ_INT(srlm_hf_model_open(dir, &m), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "tensor 'model.embed_tokens.weight' in model.safetensors has dtype U8");

  /* a checkpoint with only the embedding: 38 problems, listed until the message is full */
  EXPECT_EQ_INT(srlm_model_config_write(cfg_path, &c), SRLM_OK);
  e[0].dtype = SRLM_ST_F32;
  EXPECT_EQ_INT(srlm_st_write_dir(dir, e, 1, NULL, 0, 0, NULL), SRLM_OK);
  EXPECT_EQ_INT(srlm_hf_model_open(dir, &m), SRLM_ERR_FORMAT);
  msg = srlm_error_message();
  EXPECT_CONTAINS(msg, "38 tensor problems: missing tensor 'model.layers.0.self_attn.q_proj.weight'");
  EXPECT_CONTAINS(msg, "more");
  EXPECT(strlen(msg) < 2000, "message of %zu bytes", strlen(msg));

  /* no config.json, no weights */
  char nodir[4096];
  test_tmp_path(nodir, sizeof nodir, "no_weights");
  mkdir(nodir, 0755);
  snprintf(cfg_path, sizeof cfg_path, "%s/config.json", nodir);
  unlink(cfg_path); /* left by an earlier run */
  EXPECT_EQ_INT(srlm_hf_model_open(nodir, &m), SRLM_ERR_IO);
  EXPECT_CONTAINS(srlm_error_message(), "no_weights/config.json: cannot open");
  EXPECT_EQ_INT(srlm_model_config_write(cfg_path, &c), SRLM_OK);
  EXPECT_EQ_INT(srlm_hf_model_open(nodir, &m), SRLM_ERR_IO);
  EXPECT_CONTAINS(srlm_error_message(), "no_weights: no model.safetensors or model.safetensors.index.json");
  free(e);
  free(s);
}

int main(void) {
  test_llama();
  test_qwen2();
  test_qwen3();
  test_mistral();
  test_errors();
  test_writer();
  test_random_dir();
  test_bad_dir();
  TEST_MAIN_END();
}
