/* hfconfig: Hugging Face config.json <-> srlm_model_config for llama, qwen2, qwen3
 * and mistral.
 *
 * Parsing is strict about what srlm uses (type, range, supported values) and
 * ignores keys it does not use (transformers_version, initializer_range, ...).
 * Defaults are transformers' own for each family. The writer emits sorted keys,
 * as transformers' save_pretrained does, and reals in their shortest form that
 * reads back to the same double. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/hfmodel.h"
#include "srlm/jsonl.h"

static const struct {
  const char *name, *arch;
  int64_t max_positions; /* transformers' default max_position_embeddings */
} k_families[SRLM_MODEL_TYPE_COUNT] = {
    [SRLM_MODEL_LLAMA] = {"llama", "LlamaForCausalLM", 2048},
    [SRLM_MODEL_QWEN2] = {"qwen2", "Qwen2ForCausalLM", 32768},
    [SRLM_MODEL_QWEN3] = {"qwen3", "Qwen3ForCausalLM", 32768},
    [SRLM_MODEL_MISTRAL] = {"mistral", "MistralForCausalLM", 4096 * 32},
};

const char *srlm_model_type_name(srlm_model_type t) {
  return (unsigned)t < SRLM_MODEL_TYPE_COUNT ? k_families[t].name : "?";
}
const char *srlm_model_type_architecture(srlm_model_type t) {
  return (unsigned)t < SRLM_MODEL_TYPE_COUNT ? k_families[t].arch : "?";
}
bool srlm_model_type_parse(const char *name, srlm_model_type *out) {
  for (int i = 0; i < SRLM_MODEL_TYPE_COUNT; i++)
    if (!strcmp(name, k_families[i].name)) {
      *out = (srlm_model_type)i;
      return true;
    }
  return false;
}

void srlm_model_config_defaults(srlm_model_config *cfg, srlm_model_type type) {
  memset(cfg, 0, sizeof *cfg);
  cfg->model_type = type;
  cfg->max_position_embeddings = (unsigned)type < SRLM_MODEL_TYPE_COUNT ? k_families[type].max_positions : 2048;
  cfg->rms_norm_eps = 1e-6;
  cfg->rope_theta = 10000.0;
  cfg->rope_scaling.type = SRLM_ROPE_SCALING_NONE;
  cfg->max_window_layers = (type == SRLM_MODEL_QWEN2 || type == SRLM_MODEL_QWEN3) ? 28 : 0;
  cfg->bos_token_id = -1;
  cfg->n_eos = 0;
  cfg->torch_dtype = SRLM_ST_F32;
}

/* ---- errors ------------------------------------------------------------------------ */

static srlm_status key_error(const char *path, const char *key, srlm_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static srlm_status key_error(const char *path, const char *key, srlm_status code, const char *fmt, ...) {
  char where[1024];
  snprintf(where, sizeof where, "%s: key '%s'", path, key);
  va_list ap;
  va_start(ap, fmt);
  srlm_verror(code, where, fmt, ap);
  va_end(ap);
  return code;
}

/* Dimensions stay below 2^31 so that any product of two fits 62 bits. */
#define DIM_MAX 2147483647LL

static srlm_status check_dim(const char *where, const char *key, int64_t v, int64_t max) {
  if (v < 1 || v > max) return key_error(where, key, SRLM_ERR_RANGE, "must be in [1, %lld], got %lld", (long long)max, (long long)v);
  return SRLM_OK;
}

static bool count_params(const srlm_model_config *c, uint64_t *out) {
  uint64_t C = (uint64_t)c->hidden_size, V = (uint64_t)c->vocab_size, FF = (uint64_t)c->intermediate_size;
  uint64_t q = (uint64_t)c->num_attention_heads * (uint64_t)c->head_dim;
  uint64_t kv = (uint64_t)c->num_key_value_heads * (uint64_t)c->head_dim;
  uint64_t layer = 0, t, total = 0;
  bool of = false;
  /* q, k, v, o weights; biases; q/k norms; gate, up, down; two norms */
  uint64_t parts[] = {q * C, kv * C, kv * C, C * q,
                      c->qkv_bias ? q + 2 * kv : 0, c->o_bias ? C : 0,
                      c->qk_norm ? 2 * (uint64_t)c->head_dim : 0,
                      FF * C, FF * C, C * FF, 2 * C};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) of |= __builtin_add_overflow(layer, parts[i], &layer);
  of |= __builtin_mul_overflow(layer, (uint64_t)c->num_hidden_layers, &total);
  of |= __builtin_mul_overflow(V, C, &t);
  of |= __builtin_add_overflow(total, c->tie_word_embeddings ? t : 2 * t, &total);
  of |= __builtin_add_overflow(total, C, &total);
  *out = total;
  return !of;
}

srlm_status srlm_model_config_finalize(srlm_model_config *c, const char *where) {
  if ((unsigned)c->model_type >= SRLM_MODEL_TYPE_COUNT)
    return key_error(where, "model_type", SRLM_ERR_INTERNAL, "invalid model type %d", (int)c->model_type);
  SRLM_TRY(check_dim(where, "vocab_size", c->vocab_size, DIM_MAX));
  SRLM_TRY(check_dim(where, "hidden_size", c->hidden_size, DIM_MAX));
  SRLM_TRY(check_dim(where, "intermediate_size", c->intermediate_size, DIM_MAX));
  SRLM_TRY(check_dim(where, "num_hidden_layers", c->num_hidden_layers, 1 << 16));
  SRLM_TRY(check_dim(where, "num_attention_heads", c->num_attention_heads, 1 << 20));
  if (c->num_key_value_heads == 0) c->num_key_value_heads = c->num_attention_heads;
  SRLM_TRY(check_dim(where, "num_key_value_heads", c->num_key_value_heads, 1 << 20));
  if (c->num_attention_heads % c->num_key_value_heads != 0)
    return key_error(where, "num_key_value_heads", SRLM_ERR_RANGE,
                     "num_attention_heads (%lld) must be a multiple of num_key_value_heads (%lld)",
                     (long long)c->num_attention_heads, (long long)c->num_key_value_heads);
  if (c->head_dim == 0) {
    if (c->hidden_size % c->num_attention_heads != 0)
      return key_error(where, "head_dim", SRLM_ERR_RANGE,
                       "not given, and hidden_size (%lld) is not a multiple of num_attention_heads (%lld)",
                       (long long)c->hidden_size, (long long)c->num_attention_heads);
    c->head_dim = c->hidden_size / c->num_attention_heads;
  }
  SRLM_TRY(check_dim(where, "head_dim", c->head_dim, 1 << 20));
  if (c->head_dim % 2 != 0)
    return key_error(where, "head_dim", SRLM_ERR_RANGE, "must be even for rotary embeddings, got %lld",
                     (long long)c->head_dim);
  SRLM_TRY(check_dim(where, "max_position_embeddings", c->max_position_embeddings, DIM_MAX));
  if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps))
    return key_error(where, "rms_norm_eps", SRLM_ERR_RANGE, "must be > 0, got %g", c->rms_norm_eps);
  if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
    return key_error(where, "rope_theta", SRLM_ERR_RANGE, "must be > 0, got %g", c->rope_theta);
  if (c->rope_scaling.type == SRLM_ROPE_SCALING_LLAMA3) {
    const srlm_rope_scaling *r = &c->rope_scaling;
    if (!(r->factor > 0) || !isfinite(r->factor))
      return key_error(where, "rope_scaling.factor", SRLM_ERR_RANGE, "must be > 0, got %g", r->factor);
    if (!(r->low_freq_factor > 0) || !isfinite(r->low_freq_factor))
      return key_error(where, "rope_scaling.low_freq_factor", SRLM_ERR_RANGE, "must be > 0, got %g",
                       r->low_freq_factor);
    if (!(r->high_freq_factor > r->low_freq_factor) || !isfinite(r->high_freq_factor))
      return key_error(where, "rope_scaling.high_freq_factor", SRLM_ERR_RANGE,
                       "must be > low_freq_factor (%g), got %g", r->low_freq_factor, r->high_freq_factor);
    SRLM_TRY(check_dim(where, "rope_scaling.original_max_position_embeddings",
                       r->original_max_position_embeddings, DIM_MAX));
  } else if (c->rope_scaling.type != SRLM_ROPE_SCALING_NONE) {
    return key_error(where, "rope_scaling", SRLM_ERR_INTERNAL, "invalid type %d", (int)c->rope_scaling.type);
  }
  if (c->sliding_window < 0)
    return key_error(where, "sliding_window", SRLM_ERR_RANGE, "must be >= 0, got %lld", (long long)c->sliding_window);
  if (c->max_window_layers < 0)
    return key_error(where, "max_window_layers", SRLM_ERR_RANGE, "must be >= 0, got %lld",
                     (long long)c->max_window_layers);
  if (c->n_eos < 0 || c->n_eos > SRLM_MODEL_MAX_EOS)
    return key_error(where, "eos_token_id", SRLM_ERR_RANGE, "%d ids (at most %d)", c->n_eos, SRLM_MODEL_MAX_EOS);
  if (c->bos_token_id < -1)
    return key_error(where, "bos_token_id", SRLM_ERR_RANGE, "must be >= 0, got %lld", (long long)c->bos_token_id);
  for (int i = 0; i < c->n_eos; i++)
    if (c->eos_token_ids[i] < 0)
      return key_error(where, "eos_token_id", SRLM_ERR_RANGE, "must be >= 0, got %lld",
                       (long long)c->eos_token_ids[i]);
  if (!srlm_st_dtype_is_float(c->torch_dtype))
    return key_error(where, "torch_dtype", SRLM_ERR_RANGE, "must be a float dtype, got %s",
                     srlm_st_dtype_name(c->torch_dtype));
  switch (c->model_type) {
    case SRLM_MODEL_QWEN2:
      c->qkv_bias = true;
      c->o_bias = false;
      c->qk_norm = false;
      break;
    case SRLM_MODEL_QWEN3:
      c->qkv_bias = c->o_bias = c->attention_bias;
      c->qk_norm = true;
      break;
    case SRLM_MODEL_LLAMA:
      c->qkv_bias = c->o_bias = c->attention_bias;
      c->qk_norm = false;
      c->sliding_window = 0;
      break;
    case SRLM_MODEL_MISTRAL:
      c->qkv_bias = c->o_bias = false;
      c->qk_norm = false;
      c->max_window_layers = 0;
      break;
    default: break;
  }
  uint64_t params;
  if (!count_params(c, &params))
    return srlm_error(SRLM_ERR_RANGE, where, "model is too large: parameter count overflows 64 bits");
  return SRLM_OK;
}

/* ---- parsing ----------------------------------------------------------------------- */


typedef struct cfg_reader {
  const char *path;
  json_t *obj;        /* the object keys are read from */
  const char *prefix; /* "" or "rope_scaling." for messages */
} cfg_reader;

static void full_key(const cfg_reader *r, const char *key, char *buf, size_t n) {
  snprintf(buf, n, "%s%s", r->prefix, key);
}

/* The value of key, NULL when absent or null (optional keys), error when required. */
static srlm_status get_value(const cfg_reader *r, const char *key, bool required, json_t **out) {
  json_t *v = json_object_get(r->obj, key);
  *out = (v && !json_is_null(v)) ? v : NULL;
  if (!*out && required) {
    char k[256];
    full_key(r, key, k, sizeof k);
    return key_error(r->path, k, SRLM_ERR_FORMAT, v ? "is null, expected a value" : "missing required key");
  }
  return SRLM_OK;
}

static srlm_status get_int(const cfg_reader *r, const char *key, bool required, int64_t min, int64_t *out) {
  json_t *v;
  SRLM_TRY(get_value(r, key, required, &v));
  if (!v) return SRLM_OK;
  char k[256];
  full_key(r, key, k, sizeof k);
  if (!json_is_integer(v)) return key_error(r->path, k, SRLM_ERR_FORMAT, "expected an integer, got %s", srlm_json_type_name(v));
  long long x = json_integer_value(v);
  if (x < min) return key_error(r->path, k, SRLM_ERR_RANGE, "must be >= %lld, got %lld", (long long)min, x);
  *out = x;
  return SRLM_OK;
}

static srlm_status get_num(const cfg_reader *r, const char *key, bool required, double *out) {
  json_t *v;
  SRLM_TRY(get_value(r, key, required, &v));
  if (!v) return SRLM_OK;
  if (!json_is_number(v)) {
    char k[256];
    full_key(r, key, k, sizeof k);
    return key_error(r->path, k, SRLM_ERR_FORMAT, "expected a number, got %s", srlm_json_type_name(v));
  }
  *out = json_number_value(v);
  return SRLM_OK;
}

static srlm_status get_bool(const cfg_reader *r, const char *key, bool *out) {
  json_t *v;
  SRLM_TRY(get_value(r, key, false, &v));
  if (!v) return SRLM_OK;
  if (!json_is_boolean(v)) {
    char k[256];
    full_key(r, key, k, sizeof k);
    return key_error(r->path, k, SRLM_ERR_FORMAT, "expected true or false, got %s", srlm_json_type_name(v));
  }
  *out = json_is_true(v);
  return SRLM_OK;
}

static srlm_status get_string(const cfg_reader *r, const char *key, bool required, const char **out) {
  json_t *v;
  SRLM_TRY(get_value(r, key, required, &v));
  if (!v) return SRLM_OK;
  if (!json_is_string(v)) {
    char k[256];
    full_key(r, key, k, sizeof k);
    return key_error(r->path, k, SRLM_ERR_FORMAT, "expected a string, got %s", srlm_json_type_name(v));
  }
  *out = json_string_value(v);
  return SRLM_OK;
}

/* rope_scaling (or transformers 5's rope_parameters): "default" or "llama3". */
static srlm_status parse_rope(const char *path, json_t *obj, const char *name, srlm_model_config *c,
                              bool theta_given) {
  char prefix[64];
  snprintf(prefix, sizeof prefix, "%s.", name);
  cfg_reader r = {path, obj, prefix};
  if (!json_is_object(obj))
    return key_error(path, name, SRLM_ERR_FORMAT, "expected an object or null, got %s", srlm_json_type_name(obj));
  const char *type = NULL;
  SRLM_TRY(get_string(&r, "rope_type", false, &type));
  if (!type) SRLM_TRY(get_string(&r, "type", false, &type));
  if (!strcmp(name, "rope_parameters") && !theta_given) SRLM_TRY(get_num(&r, "rope_theta", false, &c->rope_theta));
  if (!type) {
    char k[96];
    snprintf(k, sizeof k, "%s.rope_type", name);
    return key_error(path, k, SRLM_ERR_FORMAT, "missing required key");
  }
  if (!strcmp(type, "default")) {
    c->rope_scaling.type = SRLM_ROPE_SCALING_NONE;
    return SRLM_OK;
  }
  if (strcmp(type, "llama3")) {
    char k[96];
    snprintf(k, sizeof k, "%s.rope_type", name);
    return key_error(path, k, SRLM_ERR_UNSUPPORTED, "'%s' is not supported (srlm supports llama3 and default)",
                     type);
  }
  srlm_rope_scaling *s = &c->rope_scaling;
  s->type = SRLM_ROPE_SCALING_LLAMA3;
  SRLM_TRY(get_num(&r, "factor", true, &s->factor));
  SRLM_TRY(get_num(&r, "low_freq_factor", true, &s->low_freq_factor));
  SRLM_TRY(get_num(&r, "high_freq_factor", true, &s->high_freq_factor));
  SRLM_TRY(get_int(&r, "original_max_position_embeddings", true, 1, &s->original_max_position_embeddings));
  return SRLM_OK;
}

static srlm_status parse_dtype(const cfg_reader *r, srlm_model_config *c) {
  const char *key = json_object_get(r->obj, "torch_dtype") ? "torch_dtype" : "dtype";
  const char *s = NULL;
  SRLM_TRY(get_string(r, key, false, &s));
  if (!s) return SRLM_OK;
  if (!strcmp(s, "float32"))
    c->torch_dtype = SRLM_ST_F32;
  else if (!strcmp(s, "bfloat16"))
    c->torch_dtype = SRLM_ST_BF16;
  else if (!strcmp(s, "float16"))
    c->torch_dtype = SRLM_ST_F16;
  else
    return key_error(r->path, key, SRLM_ERR_UNSUPPORTED,
                     "'%s' is not supported (srlm reads float32, bfloat16, float16)", s);
  return SRLM_OK;
}

static srlm_status parse_token_ids(const cfg_reader *r, srlm_model_config *c) {
  SRLM_TRY(get_int(r, "bos_token_id", false, 0, &c->bos_token_id));
  json_t *eos;
  SRLM_TRY(get_value(r, "eos_token_id", false, &eos));
  if (!eos) return SRLM_OK;
  if (json_is_integer(eos)) {
    int64_t id = -1;
    SRLM_TRY(get_int(r, "eos_token_id", false, 0, &id));
    c->eos_token_ids[0] = id;
    c->n_eos = 1;
    return SRLM_OK;
  }
  if (!json_is_array(eos))
    return key_error(r->path, "eos_token_id", SRLM_ERR_FORMAT, "expected an integer or a list of integers, got %s",
                     srlm_json_type_name(eos));
  if (json_array_size(eos) > SRLM_MODEL_MAX_EOS)
    return key_error(r->path, "eos_token_id", SRLM_ERR_RANGE, "%zu ids (at most %d)", json_array_size(eos),
                     SRLM_MODEL_MAX_EOS);
  size_t i;
  json_t *v;
  json_array_foreach(eos, i, v) {
    if (!json_is_integer(v) || json_integer_value(v) < 0)
      return key_error(r->path, "eos_token_id", SRLM_ERR_FORMAT,
                       "element %zu must be a non-negative integer, got %s", i, srlm_json_type_name(v));
    c->eos_token_ids[i] = json_integer_value(v);
  }
  c->n_eos = (int)json_array_size(eos);
  return SRLM_OK;
}

static srlm_status parse_sliding(const cfg_reader *r, srlm_model_config *c) {
  int64_t window = 0;
  switch (c->model_type) {
    case SRLM_MODEL_MISTRAL: /* null or a window over every layer */
      SRLM_TRY(get_int(r, "sliding_window", false, 1, &window));
      c->sliding_window = window;
      c->max_window_layers = 0;
      break;
    case SRLM_MODEL_QWEN2:
    case SRLM_MODEL_QWEN3: { /* only when use_sliding_window, from layer max_window_layers on */
      bool use = false;
      SRLM_TRY(get_bool(r, "use_sliding_window", &use));
      SRLM_TRY(get_int(r, "sliding_window", false, 0, &window));
      SRLM_TRY(get_int(r, "max_window_layers", false, 0, &c->max_window_layers));
      c->sliding_window = use ? window : 0;
      break;
    }
    default: break;
  }
  return SRLM_OK;
}

srlm_status srlm_model_config_parse(const char *text, size_t len, const char *path, srlm_model_config *c) {
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
  if (!root)
    return srlm_error(SRLM_ERR_FORMAT, path, "not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                      jerr.column);
  srlm_status st = SRLM_OK;
  if (!json_is_object(root)) {
    st = srlm_error(SRLM_ERR_FORMAT, path, "is %s, expected a JSON object", srlm_json_type_name(root));
    json_decref(root);
    return st;
  }
  cfg_reader r = {path, root, ""};
  const char *type = NULL, *act = NULL;
  srlm_model_type mt;
  bool mlp_bias = false, theta_given = false;
  json_t *rope = NULL;
#define STEP(expr)                          \
  do {                                      \
    if ((st = (expr)) != SRLM_OK) goto done; \
  } while (0)
  STEP(get_string(&r, "model_type", true, &type));
  if (!srlm_model_type_parse(type, &mt)) {
    st = key_error(path, "model_type", SRLM_ERR_UNSUPPORTED,
                   "'%s' is not supported (srlm supports llama, qwen2, qwen3, mistral)", type);
    goto done;
  }
  srlm_model_config_defaults(c, mt);
  STEP(get_int(&r, "vocab_size", true, 1, &c->vocab_size));
  STEP(get_int(&r, "hidden_size", true, 1, &c->hidden_size));
  STEP(get_int(&r, "intermediate_size", true, 1, &c->intermediate_size));
  STEP(get_int(&r, "num_hidden_layers", true, 1, &c->num_hidden_layers));
  STEP(get_int(&r, "num_attention_heads", true, 1, &c->num_attention_heads));
  STEP(get_int(&r, "num_key_value_heads", false, 1, &c->num_key_value_heads));
  STEP(get_int(&r, "head_dim", false, 1, &c->head_dim));
  STEP(get_int(&r, "max_position_embeddings", false, 1, &c->max_position_embeddings));
  STEP(get_num(&r, "rms_norm_eps", false, &c->rms_norm_eps));
  theta_given = json_object_get(root, "rope_theta") && !json_is_null(json_object_get(root, "rope_theta"));
  STEP(get_num(&r, "rope_theta", false, &c->rope_theta));
  STEP(get_bool(&r, "tie_word_embeddings", &c->tie_word_embeddings));
  if (mt == SRLM_MODEL_LLAMA || mt == SRLM_MODEL_QWEN3) STEP(get_bool(&r, "attention_bias", &c->attention_bias));
  if (mt == SRLM_MODEL_LLAMA) {
    STEP(get_bool(&r, "mlp_bias", &mlp_bias));
    if (mlp_bias) {
      st = key_error(path, "mlp_bias", SRLM_ERR_UNSUPPORTED, "true is not supported (no MLP biases in srlm)");
      goto done;
    }
  }
  STEP(get_string(&r, "hidden_act", false, &act));
  if (act && strcmp(act, "silu")) {
    st = key_error(path, "hidden_act", SRLM_ERR_UNSUPPORTED, "'%s' is not supported (srlm supports silu)", act);
    goto done;
  }
  STEP(get_value(&r, "rope_scaling", false, &rope));
  if (rope) {
    STEP(parse_rope(path, rope, "rope_scaling", c, theta_given));
  } else {
    STEP(get_value(&r, "rope_parameters", false, &rope));
    if (rope) STEP(parse_rope(path, rope, "rope_parameters", c, theta_given));
  }
  STEP(parse_sliding(&r, c));
  STEP(parse_token_ids(&r, c));
  STEP(parse_dtype(&r, c));
  st = srlm_model_config_finalize(c, path);
#undef STEP
done:
  json_decref(root);
  return st;
}

srlm_status srlm_model_config_load(const char *path, srlm_model_config *cfg) {
  char *text;
  size_t len;
  SRLM_TRY(srlm_read_file(path, &text, &len));
  srlm_status st = srlm_model_config_parse(text, len, path, cfg);
  free(text);
  return st;
}

/* ---- writing ----------------------------------------------------------------------- */

typedef struct kv {
  const char *key;
  char value[256]; /* JSON text */
} kv;

typedef struct kv_list {
  kv items[48];
  int n;
} kv_list;

static void put(kv_list *l, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(kv_list *l, const char *key, const char *fmt, ...) {
  SRLM_CHECK(l->n < (int)(sizeof l->items / sizeof l->items[0]), "too many config keys");
  kv *e = &l->items[l->n++];
  e->key = key;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->value, sizeof e->value, fmt, ap);
  va_end(ap);
}

/* Shortest "%.*g" that reads back to the same double, always with a '.' or an
 * exponent so Python reads a float. */
static void format_real(double v, char *buf, size_t n) {
  for (int p = 1; p <= 17; p++) {
    snprintf(buf, n, "%.*g", p, v);
    if (strtod(buf, NULL) == v) break;
  }
  if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", n - strlen(buf) - 1);
}

static void put_real(kv_list *l, const char *key, double v) {
  char b[64];
  format_real(v, b, sizeof b);
  put(l, key, "%s", b);
}

static int cmp_kv(const void *a, const void *b) { return strcmp(((const kv *)a)->key, ((const kv *)b)->key); }

static const char *torch_dtype_name(srlm_st_dtype dt) {
  return dt == SRLM_ST_BF16 ? "bfloat16" : dt == SRLM_ST_F16 ? "float16" : "float32";
}

srlm_status srlm_model_config_to_json(const srlm_model_config *cfg_in, char **text) {
  *text = NULL;
  srlm_model_config c = *cfg_in;
  SRLM_TRY(srlm_model_config_finalize(&c, "config.json"));
  kv_list l = {.n = 0};
  put(&l, "architectures", "[\n    \"%s\"\n  ]", srlm_model_type_architecture(c.model_type));
  put(&l, "model_type", "\"%s\"", srlm_model_type_name(c.model_type));
  put(&l, "vocab_size", "%lld", (long long)c.vocab_size);
  put(&l, "hidden_size", "%lld", (long long)c.hidden_size);
  put(&l, "intermediate_size", "%lld", (long long)c.intermediate_size);
  put(&l, "num_hidden_layers", "%lld", (long long)c.num_hidden_layers);
  put(&l, "num_attention_heads", "%lld", (long long)c.num_attention_heads);
  put(&l, "num_key_value_heads", "%lld", (long long)c.num_key_value_heads);
  put(&l, "head_dim", "%lld", (long long)c.head_dim);
  put(&l, "hidden_act", "\"silu\"");
  put(&l, "max_position_embeddings", "%lld", (long long)c.max_position_embeddings);
  put_real(&l, "rms_norm_eps", c.rms_norm_eps);
  put_real(&l, "rope_theta", c.rope_theta);
  if (c.rope_scaling.type == SRLM_ROPE_SCALING_LLAMA3) {
    char f[64], lo[64], hi[64];
    format_real(c.rope_scaling.factor, f, sizeof f);
    format_real(c.rope_scaling.low_freq_factor, lo, sizeof lo);
    format_real(c.rope_scaling.high_freq_factor, hi, sizeof hi);
    put(&l, "rope_scaling",
        "{\n    \"factor\": %s,\n    \"high_freq_factor\": %s,\n    \"low_freq_factor\": %s,\n"
        "    \"original_max_position_embeddings\": %lld,\n    \"rope_type\": \"llama3\"\n  }",
        f, hi, lo, (long long)c.rope_scaling.original_max_position_embeddings);
  } else {
    put(&l, "rope_scaling", "null");
  }
  put(&l, "tie_word_embeddings", "%s", c.tie_word_embeddings ? "true" : "false");
  if (c.bos_token_id >= 0)
    put(&l, "bos_token_id", "%lld", (long long)c.bos_token_id);
  else
    put(&l, "bos_token_id", "null");
  if (c.n_eos == 0) {
    put(&l, "eos_token_id", "null");
  } else if (c.n_eos == 1) {
    put(&l, "eos_token_id", "%lld", (long long)c.eos_token_ids[0]);
  } else {
    char b[256];
    size_t k = (size_t)snprintf(b, sizeof b, "[");
    for (int i = 0; i < c.n_eos && k < sizeof b; i++)
      k += (size_t)snprintf(b + k, sizeof b - k, "%s\n    %lld", i ? "," : "", (long long)c.eos_token_ids[i]);
    if (k < sizeof b) snprintf(b + k, sizeof b - k, "\n  ]");
    put(&l, "eos_token_id", "%s", b);
  }
  put(&l, "torch_dtype", "\"%s\"", torch_dtype_name(c.torch_dtype));
  put(&l, "initializer_range", "0.02");
  put(&l, "attention_dropout", "0.0");
  put(&l, "use_cache", "true");
  switch (c.model_type) {
    case SRLM_MODEL_LLAMA:
      put(&l, "attention_bias", "%s", c.attention_bias ? "true" : "false");
      put(&l, "mlp_bias", "false");
      put(&l, "pretraining_tp", "1");
      break;
    case SRLM_MODEL_QWEN3:
      put(&l, "attention_bias", "%s", c.attention_bias ? "true" : "false");
      /* fall through */
    case SRLM_MODEL_QWEN2:
      put(&l, "use_sliding_window", "%s", c.sliding_window > 0 ? "true" : "false");
      if (c.sliding_window > 0)
        put(&l, "sliding_window", "%lld", (long long)c.sliding_window);
      else
        put(&l, "sliding_window", "null");
      put(&l, "max_window_layers", "%lld", (long long)c.max_window_layers);
      break;
    case SRLM_MODEL_MISTRAL:
      if (c.sliding_window > 0)
        put(&l, "sliding_window", "%lld", (long long)c.sliding_window);
      else
        put(&l, "sliding_window", "null");
      break;
    default: break;
  }
  qsort(l.items, (size_t)l.n, sizeof l.items[0], cmp_kv);
  size_t cap = 256;
  for (int i = 0; i < l.n; i++) cap += strlen(l.items[i].key) + strlen(l.items[i].value) + 16;
  char *out = srlm_xmalloc(cap);
  size_t k = (size_t)snprintf(out, cap, "{\n");
  for (int i = 0; i < l.n; i++)
    k += (size_t)snprintf(out + k, cap - k, "  \"%s\": %s%s\n", l.items[i].key, l.items[i].value,
                          i + 1 < l.n ? "," : "");
  snprintf(out + k, cap - k, "}\n");
  *text = out;
  return SRLM_OK;
}

srlm_status srlm_model_config_write(const char *path, const srlm_model_config *cfg) {
  char *text;
  srlm_status st = srlm_model_config_to_json(cfg, &text);
  if (st != SRLM_OK) return srlm_error_context(st, "writing %s", path);
  st = srlm_write_file_atomic(path, text, strlen(text));
  free(text);
  return st;
}
