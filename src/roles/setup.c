/* From a config to a tokenizer and a starting model; see include/srlm/setup.h. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/setup.h"

srlm_status srlm_setup_backend(const srlm_config *cfg, srlm_backend **be) {
  srlm_status st = srlm_backend_open(srlm_cfg_backend_name(cfg->run.backend), cfg->run.device, be);
  if (st != SRLM_OK) return srlm_error_context(st, "run.backend = %s", srlm_cfg_backend_name(cfg->run.backend));
  return SRLM_OK;
}

srlm_dtype srlm_setup_dtype(const srlm_config *cfg) {
  return cfg->model.dtype == SRLM_CFG_DTYPE_BF16 ? SRLM_BF16 : SRLM_F32;
}

srlm_status srlm_setup_tokenizer_dir(const srlm_config *cfg, const char **dir) {
  *dir = cfg->tokenizer.path[0] ? cfg->tokenizer.path : cfg->model.path;
  if (!(*dir)[0])
    return srlm_error(SRLM_ERR_CONFIG, "tokenizer.path", "empty, and model.path is empty too: set one of them");
  return SRLM_OK;
}

srlm_status srlm_setup_tokenizer(const srlm_config *cfg, srlm_tokenizer **tok, int *has_chat,
                                 srlm_chat_format *chat) {
  *tok = NULL;
  *has_chat = 0;
  const char *dir;
  SRLM_TRY(srlm_setup_tokenizer_dir(cfg, &dir));
  SRLM_TRY(srlm_tokenizer_load(dir, tok));
  srlm_status st = SRLM_OK;
  switch (cfg->tokenizer.chat_format) {
    case SRLM_CFG_CHAT_NONE: break;
    case SRLM_CFG_CHAT_AUTO:
      st = srlm_chat_format_detect(dir, chat);
      /* a config error (exit 2) like any other value of the key that cannot be used */
      if (st != SRLM_OK)
        st = srlm_error_context(SRLM_ERR_CONFIG, "tokenizer.chat_format auto (set it, or none for raw text)");
      *has_chat = st == SRLM_OK;
      break;
    default:
      st = srlm_chat_format_from_name(
          srlm_config_enum_name("tokenizer.chat_format", (int)cfg->tokenizer.chat_format), chat);
      *has_chat = st == SRLM_OK;
  }
  if (st != SRLM_OK) {
    srlm_tokenizer_free(*tok);
    *tok = NULL;
  }
  return st;
}

srlm_status srlm_setup_tokenizer_eos(srlm_tokenizer *tok, const char *dir, int64_t *eos) {
  char path[4096];
  *eos = -1;
  SRLM_TRY(srlm_path_join(path, sizeof path, dir, "tokenizer_config.json"));
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  if (!root) return SRLM_OK; /* no tokenizer_config.json: no eos known */
  json_t *e = json_object_get(root, "eos_token");
  if (json_is_object(e)) e = json_object_get(e, "content");
  srlm_status st = SRLM_OK;
  if (json_is_string(e)) {
    int32_t id;
    st = srlm_tokenizer_token_id(tok, json_string_value(e), json_string_length(e), &id);
    if (st == SRLM_OK)
      *eos = id;
    else
      st = srlm_error_context(st, "%s: eos_token", path);
  }
  json_decref(root);
  return st;
}

srlm_status srlm_setup_model_config(const srlm_config *cfg, srlm_tokenizer *tok, srlm_model_config *m) {
  static const srlm_model_type k_types[] = {
      [SRLM_CFG_FAMILY_LLAMA] = SRLM_MODEL_LLAMA, [SRLM_CFG_FAMILY_QWEN2] = SRLM_MODEL_QWEN2,
      [SRLM_CFG_FAMILY_QWEN3] = SRLM_MODEL_QWEN3, [SRLM_CFG_FAMILY_MISTRAL] = SRLM_MODEL_MISTRAL};
  const int32_t n_ids = srlm_tokenizer_n_ids(tok);
  srlm_model_config_defaults(m, k_types[cfg->model.arch.family]);
  m->vocab_size = cfg->model.arch.vocab_size ? cfg->model.arch.vocab_size : n_ids;
  if (m->vocab_size < n_ids)
    return srlm_error(SRLM_ERR_CONFIG, "model.arch.vocab_size", "%lld is smaller than the tokenizer's %d ids",
                      (long long)m->vocab_size, (int)n_ids);
  m->hidden_size = cfg->model.arch.hidden_size;
  m->intermediate_size = cfg->model.arch.intermediate_size;
  m->num_hidden_layers = cfg->model.arch.num_layers;
  m->num_attention_heads = cfg->model.arch.num_heads;
  m->num_key_value_heads = cfg->model.arch.num_kv_heads;
  m->head_dim = cfg->model.arch.head_dim;
  m->rope_theta = cfg->model.arch.rope_theta;
  m->rms_norm_eps = cfg->model.arch.rms_norm_eps;
  m->max_position_embeddings = cfg->model.arch.max_seq_len;
  m->tie_word_embeddings = cfg->model.arch.tie_embeddings;
  m->bos_token_id = -1;
  const char *dir;
  SRLM_TRY(srlm_setup_tokenizer_dir(cfg, &dir));
  int64_t eos;
  SRLM_TRY(srlm_setup_tokenizer_eos(tok, dir, &eos));
  m->n_eos = eos >= 0 ? 1 : 0;
  m->eos_token_ids[0] = eos;
  return srlm_model_config_finalize(m, "model.arch");
}

srlm_status srlm_setup_model(const srlm_config *cfg, srlm_tokenizer *tok, srlm_backend *be, srlm_model **out) {
  return srlm_setup_model_for(cfg, tok, be, SRLM_MODEL_LEARN, out);
}

srlm_status srlm_setup_model_for(const srlm_config *cfg, srlm_tokenizer *tok, srlm_backend *be, srlm_model_use use,
                                 srlm_model **out) {
  *out = NULL;
  const srlm_dtype dt = srlm_setup_dtype(cfg);
  if (cfg->model.path[0]) {
    SRLM_TRY(srlm_model_load_for(cfg->model.path, be, dt, use, out));
  } else {
    srlm_model_config mc;
    SRLM_TRY(srlm_setup_model_config(cfg, tok, &mc));
    SRLM_TRY(srlm_model_create_for(&mc, (uint64_t)cfg->run.seed, be, dt, use, out));
  }
  const srlm_model_config *mc = srlm_model_get_config(*out);
  if (mc->vocab_size < srlm_tokenizer_n_ids(tok)) {
    srlm_status st = srlm_error(SRLM_ERR_FORMAT, cfg->model.path[0] ? cfg->model.path : "model.arch",
                                "vocab_size %lld is smaller than the tokenizer's %d ids",
                                (long long)mc->vocab_size, (int)srlm_tokenizer_n_ids(tok));
    srlm_model_free(*out);
    *out = NULL;
    return st;
  }
  return SRLM_OK;
}

srlm_status srlm_setup_copy_tokenizer_files(const char *src_dir, const char *dst_dir) {
  static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char src[4096], dst[4096];
    SRLM_TRY(srlm_path_join(src, sizeof src, src_dir, files[i]));
    SRLM_TRY(srlm_path_join(dst, sizeof dst, dst_dir, files[i]));
    char *data;
    size_t n;
    srlm_status st = srlm_read_file(src, &data, &n);
    if (st != SRLM_OK) {
      if (i == 0) return st; /* tokenizer.json is required; the others are optional */
      srlm_error_clear();
      continue;
    }
    st = srlm_write_file_atomic(dst, data, n);
    free(data);
    SRLM_TRY(st);
  }
  return SRLM_OK;
}
