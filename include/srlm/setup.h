/* srlm setup: the steps every job takes from a config to a backend, a tokenizer and a
 * model (`srlm train`, `srlm sft`, the roles), kept in one place so they agree: which
 * backend and device a rank runs on, which folder holds the tokenizer, which chat format
 * applies, which EOS id a fresh model gets, how model.arch becomes a model config, and
 * which tokenizer files go next to a saved model. It belongs to the layer that runs jobs
 * (src/roles); the trainers below it take a model and never read a config's files.
 */
#ifndef SRLM_SETUP_H
#define SRLM_SETUP_H

#include <stdint.h>

#include "srlm/backend.h"
#include "srlm/chat.h"
#include "srlm/config.h"
#include "srlm/core.h"
#include "srlm/hfmodel.h"
#include "srlm/model.h"
#include "srlm/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The backend instance of run.backend on run.device (-1: the launcher's local rank, else
 * 0); close it with srlm_backend_close. */
srlm_status srlm_setup_backend(const srlm_config *cfg, srlm_backend **be);

/* The compute dtype of model.dtype. */
srlm_dtype srlm_setup_dtype(const srlm_config *cfg);

/* The folder holding the tokenizer: tokenizer.path, or model.path when it is empty.
 * Both empty is SRLM_ERR_CONFIG. */
srlm_status srlm_setup_tokenizer_dir(const srlm_config *cfg, const char **dir);

/* Loads the tokenizer of srlm_setup_tokenizer_dir and resolves tokenizer.chat_format:
 * auto detects it from tokenizer_config.json, none gives *has_chat = 0 (raw text). */
srlm_status srlm_setup_tokenizer(const srlm_config *cfg, srlm_tokenizer **tok, int *has_chat,
                                 srlm_chat_format *chat);

/* The id of tokenizer_config.json's "eos_token" (a string or {"content": ...}) in dir;
 * -1 when the file or the key is missing. A token the tokenizer lacks is an error. */
srlm_status srlm_setup_tokenizer_eos(srlm_tokenizer *tok, const char *dir, int64_t *eos);

/* The model config of model.arch: vocabulary from the tokenizer when arch.vocab_size is
 * 0 (smaller than the tokenizer is an error), EOS from tokenizer_config.json, no BOS.
 * Finalized. */
srlm_status srlm_setup_model_config(const srlm_config *cfg, srlm_tokenizer *tok, srlm_model_config *out);

/* The starting model on backend be, computing in model.dtype: srlm_model_load(model.path),
 * or, when model.path is empty, a fresh srlm_model_create(srlm_setup_model_config,
 * run.seed) — the same weights `srlm train` writes for M0. The model's vocabulary must
 * cover the tokenizer's ids. */
srlm_status srlm_setup_model(const srlm_config *cfg, srlm_tokenizer *tok, srlm_backend *be, srlm_model **out);
/* The same for the given use (model.h: SRLM_MODEL_DECODE keeps no fp32 master of a bf16 model). */
srlm_status srlm_setup_model_for(const srlm_config *cfg, srlm_tokenizer *tok, srlm_backend *be, srlm_model_use use,
                                 srlm_model **out);

/* Copies tokenizer.json (required), tokenizer_config.json and special_tokens_map.json
 * (when present) from src_dir to dst_dir, each written atomically. */
srlm_status srlm_setup_copy_tokenizer_files(const char *src_dir, const char *dst_dir);

#ifdef __cplusplus
}
#endif
#endif
