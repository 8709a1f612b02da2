/* srlm info --model DIR [--json]: what a Hugging Face model directory holds
 * (architecture, parameter count, dtypes, tensors found vs expected, files).
 * The report goes to stdout; a broken directory also prints the error to stderr
 * and exits 1 (after the parts of the report that could be read). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "srlm/hfmodel.h"
#include "srlm/safetensors.h"

static const char k_info_help[] =
    "usage: srlm info --model DIR [--json]\n"
    "\n"
    "Reads DIR/config.json and DIR/model.safetensors (or the shards listed in\n"
    "DIR/model.safetensors.index.json) and prints the architecture, the parameter\n"
    "count, the dtypes of the tensors, the tensors found vs expected and the files.\n"
    "\n"
    "  --model DIR   the Hugging Face model directory (llama, qwen2, qwen3, mistral)\n"
    "  --json        print one JSON object instead of text\n"
    "  --help        this text\n"
    "\n"
    "Exit status: 0 when every expected tensor is present with the right shape,\n"
    "1 when the directory is unreadable or has missing, unexpected or misshapen\n"
    "tensors, 2 for a usage error.\n";

typedef struct info_dtypes {
  size_t count[SRLM_ST_DTYPE_COUNT];
} info_dtypes;

static info_dtypes count_dtypes(const srlm_st_set *w) {
  info_dtypes d = {{0}};
  for (size_t i = 0; i < srlm_st_set_count(w); i++) d.count[srlm_st_set_at(w, i)->dtype]++;
  return d;
}

static const char *yes_no(bool b) { return b ? "yes" : "no"; }

static const char *torch_name(srlm_st_dtype dt) {
  return dt == SRLM_ST_BF16 ? "bfloat16" : dt == SRLM_ST_F16 ? "float16" : "float32";
}

static const char *file_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

static void print_text_config(const char *dir, const srlm_model_config *c) {
  char human[32];
  uint64_t params = srlm_model_param_count(c);
  srlm_format_count(params, human, sizeof human);
  printf("model: %s\n", dir);
  printf("architecture: %s (%s)\n", srlm_model_type_name(c->model_type),
         srlm_model_type_architecture(c->model_type));
  printf("layers: %lld\n", (long long)c->num_hidden_layers);
  printf("hidden: %lld\n", (long long)c->hidden_size);
  printf("heads: %lld, kv heads: %lld, head_dim: %lld\n", (long long)c->num_attention_heads,
         (long long)c->num_key_value_heads, (long long)c->head_dim);
  printf("intermediate: %lld\n", (long long)c->intermediate_size);
  printf("vocab: %lld\n", (long long)c->vocab_size);
  printf("max positions: %lld\n", (long long)c->max_position_embeddings);
  if (c->rope_scaling.type == SRLM_ROPE_SCALING_LLAMA3)
    printf("rope: theta %g, scaling llama3 (factor %g, low_freq_factor %g, high_freq_factor %g, "
           "original_max_position_embeddings %lld)\n",
           c->rope_theta, c->rope_scaling.factor, c->rope_scaling.low_freq_factor,
           c->rope_scaling.high_freq_factor, (long long)c->rope_scaling.original_max_position_embeddings);
  else
    printf("rope: theta %g, scaling none\n", c->rope_theta);
  printf("rms norm eps: %g\n", c->rms_norm_eps);
  printf("tied embeddings: %s\n", yes_no(c->tie_word_embeddings));
  printf("qkv bias: %s, o bias: %s, qk norm: %s\n", yes_no(c->qkv_bias), yes_no(c->o_bias), yes_no(c->qk_norm));
  if (c->sliding_window > 0)
    printf("sliding window: %lld (layers >= %lld)\n", (long long)c->sliding_window, (long long)c->max_window_layers);
  else
    printf("sliding window: none\n");
  printf("config dtype: %s\n", torch_name(c->torch_dtype));
  printf("parameters: %llu (%s)\n", (unsigned long long)params, human);
}

static void print_text_weights(const srlm_st_set *w, const srlm_tensor_check *r) {
  info_dtypes d = count_dtypes(w);
  printf("dtypes:");
  const char *sep = " ";
  for (int i = 0; i < SRLM_ST_DTYPE_COUNT; i++)
    if (d.count[i]) {
      printf("%s%s (%zu tensor%s)", sep, srlm_st_dtype_name((srlm_st_dtype)i), d.count[i], d.count[i] == 1 ? "" : "s");
      sep = ", ";
    }
  if (!srlm_st_set_count(w)) printf(" none");
  printf("\n");
  printf("tensors: %zu found, %zu expected", r->n_found, r->n_expected);
  if (r->n_missing || r->n_unexpected || r->n_bad_shape)
    printf(" (%zu missing, %zu unexpected, %zu wrong shape or dtype)", r->n_missing, r->n_unexpected, r->n_bad_shape);
  if (r->n_ignored) printf(" (%zu ignored)", r->n_ignored);
  printf("\n");
  size_t nf = srlm_st_set_file_count(w);
  uint64_t total = 0;
  for (size_t i = 0; i < nf; i++) total += srlm_st_file_size(srlm_st_set_file(w, i));
  printf("files: %zu (%llu bytes)", nf, (unsigned long long)total);
  if (nf > 1) printf(" from %s", file_name(srlm_st_set_source(w)));
  printf("\n");
  for (size_t i = 0; i < nf; i++) {
    const srlm_st_file *f = srlm_st_set_file(w, i);
    printf("  %s: %llu bytes, %zu tensor%s\n", file_name(srlm_st_file_path(f)),
           (unsigned long long)srlm_st_file_size(f), srlm_st_count(f), srlm_st_count(f) == 1 ? "" : "s");
  }
}

static json_t *json_config(const char *dir, const srlm_model_config *c) {
  char human[32];
  uint64_t params = srlm_model_param_count(c);
  srlm_format_count(params, human, sizeof human);
  json_t *o = json_object();
  json_object_set_new(o, "model", json_string(dir));
  json_object_set_new(o, "model_type", json_string(srlm_model_type_name(c->model_type)));
  json_object_set_new(o, "architecture", json_string(srlm_model_type_architecture(c->model_type)));
  json_object_set_new(o, "num_hidden_layers", json_integer(c->num_hidden_layers));
  json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
  json_object_set_new(o, "num_attention_heads", json_integer(c->num_attention_heads));
  json_object_set_new(o, "num_key_value_heads", json_integer(c->num_key_value_heads));
  json_object_set_new(o, "head_dim", json_integer(c->head_dim));
  json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
  json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
  json_object_set_new(o, "max_position_embeddings", json_integer(c->max_position_embeddings));
  json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
  if (c->rope_scaling.type == SRLM_ROPE_SCALING_LLAMA3) {
    json_t *r = json_object();
    json_object_set_new(r, "rope_type", json_string("llama3"));
    json_object_set_new(r, "factor", json_real(c->rope_scaling.factor));
    json_object_set_new(r, "low_freq_factor", json_real(c->rope_scaling.low_freq_factor));
    json_object_set_new(r, "high_freq_factor", json_real(c->rope_scaling.high_freq_factor));
    json_object_set_new(r, "original_max_position_embeddings",
                        json_integer(c->rope_scaling.original_max_position_embeddings));
    json_object_set_new(o, "rope_scaling", r);
  } else {
    json_object_set_new(o, "rope_scaling", json_null());
  }
  json_object_set_new(o, "rms_norm_eps", json_real(c->rms_norm_eps));
  json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
  json_object_set_new(o, "qkv_bias", json_boolean(c->qkv_bias));
  json_object_set_new(o, "o_bias", json_boolean(c->o_bias));
  json_object_set_new(o, "qk_norm", json_boolean(c->qk_norm));
  json_object_set_new(o, "sliding_window", c->sliding_window > 0 ? json_integer(c->sliding_window) : json_null());
  json_object_set_new(o, "torch_dtype", json_string(torch_name(c->torch_dtype)));
  json_object_set_new(o, "parameters", json_integer((json_int_t)params));
  json_object_set_new(o, "parameters_human", json_string(human));
  return o;
}

static void json_weights(json_t *o, const srlm_st_set *w, const srlm_tensor_check *r) {
  info_dtypes d = count_dtypes(w);
  json_t *dt = json_object();
  for (int i = 0; i < SRLM_ST_DTYPE_COUNT; i++)
    if (d.count[i]) json_object_set_new(dt, srlm_st_dtype_name((srlm_st_dtype)i), json_integer((json_int_t)d.count[i]));
  json_object_set_new(o, "dtypes", dt);
  json_object_set_new(o, "tensors_found", json_integer((json_int_t)r->n_found));
  json_object_set_new(o, "tensors_expected", json_integer((json_int_t)r->n_expected));
  json_object_set_new(o, "tensors_missing", json_integer((json_int_t)r->n_missing));
  json_object_set_new(o, "tensors_unexpected", json_integer((json_int_t)r->n_unexpected));
  json_object_set_new(o, "tensors_bad_shape", json_integer((json_int_t)r->n_bad_shape));
  json_object_set_new(o, "tensors_ignored", json_integer((json_int_t)r->n_ignored));
  json_t *files = json_array();
  for (size_t i = 0; i < srlm_st_set_file_count(w); i++) {
    const srlm_st_file *f = srlm_st_set_file(w, i);
    json_t *e = json_object();
    json_object_set_new(e, "name", json_string(file_name(srlm_st_file_path(f))));
    json_object_set_new(e, "bytes", json_integer((json_int_t)srlm_st_file_size(f)));
    json_object_set_new(e, "tensors", json_integer((json_int_t)srlm_st_count(f)));
    json_array_append_new(files, e);
  }
  json_object_set_new(o, "files", files);
}

static void print_json(json_t *o, srlm_status st) {
  json_object_set_new(o, "ok", json_boolean(st == SRLM_OK));
  json_object_set_new(o, "error", st == SRLM_OK ? json_null() : json_string(srlm_error_message()));
  char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
  if (text) {
    printf("%s\n", text);
    free(text);
  }
}

int srlm_cmd_info(int argc, char **argv) {
  const char *cmd = argv[0];
  const char *dir = NULL;
  bool as_json = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(k_info_help, stdout);
      return 0;
    } else if (!strcmp(a, "--json")) {
      as_json = true;
    } else if (!strcmp(a, "--model")) {
      if (i + 1 >= argc) return srlm_cli_usage_error(cmd, "--model needs a directory");
      dir = argv[++i];
    } else if (!strncmp(a, "--model=", 8)) {
      dir = a + 8;
    } else {
      return srlm_cli_usage_error(cmd, "unknown argument '%s'", a);
    }
  }
  if (!dir || !dir[0]) return srlm_cli_usage_error(cmd, "--model DIR is required");

  size_t dl = strlen(dir);
  char *cfg_path = srlm_xmalloc(dl + 16);
  snprintf(cfg_path, dl + 16, "%s%sconfig.json", dir, dir[dl - 1] == '/' ? "" : "/");
  srlm_model_config cfg;
  srlm_status st = srlm_model_config_load(cfg_path, &cfg);
  free(cfg_path);
  if (st != SRLM_OK) return srlm_cli_fail(cmd, st);

  json_t *o = as_json ? json_config(dir, &cfg) : NULL;
  if (!as_json) print_text_config(dir, &cfg);
  srlm_st_set *w = NULL;
  st = srlm_st_set_open_dir(dir, &w);
  if (st == SRLM_OK) {
    srlm_tensor_check r;
    st = srlm_model_check_tensors(&cfg, w, dir, &r);
    if (as_json)
      json_weights(o, w, &r);
    else
      print_text_weights(w, &r);
  }
  if (as_json) {
    print_json(o, st);
    json_decref(o);
  }
  fflush(stdout);
  srlm_st_set_free(w);
  if (st != SRLM_OK) return srlm_cli_fail(cmd, st);
  return 0;
}
