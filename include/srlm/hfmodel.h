/* srlm hfmodel: Hugging Face model directories of the Llama family (llama, qwen2,
 * qwen3, mistral): config.json parsed into one struct and written back, the
 * tensor names and shapes each family expects, opening a directory (config.json
 * plus model.safetensors or its sharded index) with a check of found against
 * expected tensors, and writing a directory of deterministic random weights.
 *
 * Conventions:
 * - Dims: V vocab, C hidden, FF intermediate (SwiGLU width), L layers, NH query
 *   heads, NKV key/value heads, HS head dim. Weights use HF names and PyTorch
 *   Linear shapes [out, in], e.g. model.layers.{i}.self_attn.q_proj.weight is
 *   [NH*HS, C].
 * - Config errors name the file and the key ("dir/config.json: key 'hidden_size':
 *   ..."): a missing or wrongly typed key is SRLM_ERR_FORMAT, a valid value srlm
 *   cannot run (model_type gpt2, rope_type yarn, hidden_act gelu) is
 *   SRLM_ERR_UNSUPPORTED.
 */
#ifndef SRLM_HFMODEL_H
#define SRLM_HFMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"
#include "srlm/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum srlm_model_type {
  SRLM_MODEL_LLAMA = 0,
  SRLM_MODEL_QWEN2,
  SRLM_MODEL_QWEN3,
  SRLM_MODEL_MISTRAL,
  SRLM_MODEL_TYPE_COUNT
} srlm_model_type;

/* "llama", "qwen2", "qwen3", "mistral" */
const char *srlm_model_type_name(srlm_model_type t);
/* "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM" */
const char *srlm_model_type_architecture(srlm_model_type t);
bool srlm_model_type_parse(const char *name, srlm_model_type *out);

typedef enum srlm_rope_scaling_type {
  SRLM_ROPE_SCALING_NONE = 0,
  SRLM_ROPE_SCALING_LLAMA3 /* Llama 3.1 frequency-dependent scaling */
} srlm_rope_scaling_type;

typedef struct srlm_rope_scaling {
  srlm_rope_scaling_type type;
  double factor;
  double low_freq_factor;
  double high_freq_factor;
  int64_t original_max_position_embeddings;
} srlm_rope_scaling;

#define SRLM_MODEL_MAX_EOS 16

typedef struct srlm_model_config {
  srlm_model_type model_type;
  int64_t vocab_size;              /* V */
  int64_t hidden_size;             /* C */
  int64_t intermediate_size;       /* FF */
  int64_t num_hidden_layers;       /* L */
  int64_t num_attention_heads;     /* NH */
  int64_t num_key_value_heads;     /* NKV; NH divisible by it (grouped-query attention) */
  int64_t head_dim;                /* HS; need not equal C / NH (qwen3) */
  int64_t max_position_embeddings;
  double rms_norm_eps;
  double rope_theta;
  srlm_rope_scaling rope_scaling;
  bool tie_word_embeddings;        /* lm_head shares model.embed_tokens.weight */
  bool attention_bias;             /* the config's own key (llama, qwen3) */
  /* Derived from the family by srlm_model_config_finalize: */
  bool qkv_bias;                   /* q/k/v_proj have .bias: qwen2 always, llama/qwen3 with attention_bias */
  bool o_bias;                     /* o_proj has .bias: llama/qwen3 with attention_bias */
  bool qk_norm;                    /* per-head RMSNorm on q and k before RoPE: qwen3 */
  /* Layer i attends within the last sliding_window positions iff sliding_window > 0
   * and i >= max_window_layers (transformers' rule; mistral: all layers). */
  int64_t sliding_window;          /* 0: full attention everywhere */
  int64_t max_window_layers;
  int64_t bos_token_id;            /* -1: none */
  int n_eos;
  int64_t eos_token_ids[SRLM_MODEL_MAX_EOS];
  srlm_st_dtype torch_dtype;       /* the checkpoint's declared dtype (F32 when absent) */
} srlm_model_config;

/* Fills the family's transformers defaults with all sizes 0 (to be set by the
 * caller before srlm_model_config_finalize). */
void srlm_model_config_defaults(srlm_model_config *cfg, srlm_model_type type);
/* Fills what defaults to other fields (NKV = NH, HS = C / NH when 0), sets the
 * derived flags and checks consistency; errors name `where` and the key. */
srlm_status srlm_model_config_finalize(srlm_model_config *cfg, const char *where);

/* Parses a config.json file / text (path is used in errors). */
srlm_status srlm_model_config_load(const char *path, srlm_model_config *cfg);
srlm_status srlm_model_config_parse(const char *text, size_t len, const char *path,
                                    srlm_model_config *cfg);
/* Writes config.json with the keys transformers needs for the family (including
 * "architectures"), atomically. The config is finalized first. */
srlm_status srlm_model_config_write(const char *path, const srlm_model_config *cfg);
/* The same JSON text (malloc'd, caller frees). */
srlm_status srlm_model_config_to_json(const srlm_model_config *cfg, char **text);

/* ---- expected tensors ------------------------------------------------------- */

typedef enum srlm_tensor_role {
  SRLM_TENSOR_EMBED = 0, /* model.embed_tokens.weight [V, C] */
  SRLM_TENSOR_Q, SRLM_TENSOR_K, SRLM_TENSOR_V, SRLM_TENSOR_O,
  SRLM_TENSOR_Q_BIAS, SRLM_TENSOR_K_BIAS, SRLM_TENSOR_V_BIAS, SRLM_TENSOR_O_BIAS,
  SRLM_TENSOR_Q_NORM, SRLM_TENSOR_K_NORM, /* [HS] */
  SRLM_TENSOR_GATE, SRLM_TENSOR_UP, SRLM_TENSOR_DOWN,
  SRLM_TENSOR_ATTN_NORM, SRLM_TENSOR_MLP_NORM, /* input_/post_attention_layernorm [C] */
  SRLM_TENSOR_FINAL_NORM,                      /* model.norm.weight [C] */
  SRLM_TENSOR_LM_HEAD,                         /* lm_head.weight [V, C], absent when tied */
  SRLM_TENSOR_ROLE_COUNT
} srlm_tensor_role;

typedef struct srlm_tensor_spec {
  char name[96];
  srlm_tensor_role role;
  int layer;        /* -1 for tensors outside the layers */
  int ndim;         /* 1 or 2 */
  int64_t shape[2];
  uint64_t numel;
} srlm_tensor_spec;

/* The tensors a checkpoint of this config holds, in HF order: embedding, then per
 * layer, then final norm and lm_head. *specs is malloc'd (caller frees). */
srlm_status srlm_model_expected_tensors(const srlm_model_config *cfg, srlm_tensor_spec **specs,
                                        size_t *n);
/* Parameters of the model (tied embeddings counted once). */
uint64_t srlm_model_param_count(const srlm_model_config *cfg);
/* "1.24B", "192K", "999" (3 significant digits). */
void srlm_format_count(uint64_t n, char *buf, size_t size);

/* ---- model directories -------------------------------------------------------- */

typedef struct srlm_tensor_check {
  size_t n_expected;
  size_t n_found;      /* tensors in the checkpoint */
  size_t n_missing;
  size_t n_unexpected;
  size_t n_bad_shape;
  size_t n_ignored;    /* known extras transformers also ignores (rotary inv_freq, tied lm_head) */
} srlm_tensor_check;

/* Compares a checkpoint with what cfg expects. On any problem returns
 * SRLM_ERR_FORMAT with a message that lists them all ("where: 2 tensor problems:
 * missing tensor 'x' (expected [64]); unexpected tensor 'y' in model.safetensors");
 * report (may be NULL) is filled either way. */
srlm_status srlm_model_check_tensors(const srlm_model_config *cfg, const srlm_st_set *weights,
                                     const char *where, srlm_tensor_check *report);

typedef struct srlm_hf_model srlm_hf_model;

/* Opens dir/config.json and the weights, and checks the tensors. */
srlm_status srlm_hf_model_open(const char *dir, srlm_hf_model **out);
void srlm_hf_model_close(srlm_hf_model *m);
const srlm_model_config *srlm_hf_model_config(const srlm_hf_model *m);
const srlm_st_set *srlm_hf_model_weights(const srlm_hf_model *m);
/* The tensor for a spec name; NULL when absent (only lm_head when tied). */
const srlm_st_tensor *srlm_hf_model_tensor(const srlm_hf_model *m, const char *name);

/* The fresh value of expected tensor k (specs from srlm_model_expected_tensors(cfg)) for
 * seed, as srlm_hf_model_write_random writes it (before any dtype conversion):
 * dst has specs[k].numel floats. cfg must be finalized. */
void srlm_hf_model_init_tensor(const srlm_model_config *cfg, const srlm_tensor_spec *specs, size_t k, uint64_t seed,
                               float *dst);
/* Writes dir/config.json and the weights of a fresh model (dir is created if
 * missing, parents too): norm weights 1, biases 0, every other weight N(0, 0.02^2) except the
 * residual-branch outputs (o_proj, down_proj) N(0, (0.02/sqrt(2L))^2). Element e of
 * expected tensor k is drawn from srlm_rng_bits(seed, 0x1417, k, e/2 low, e/2 high)
 * (Box-Muller, two normals per draw), so the weights depend only on (seed, cfg).
 * dtype: F32, BF16 or F16. */
srlm_status srlm_hf_model_write_random(const char *dir, const srlm_model_config *cfg, uint64_t seed,
                                       srlm_st_dtype dtype);

#ifdef __cplusplus
}
#endif
#endif
