/* srlm model: the decoder-only transformer of the Llama 3 / Qwen2 / Qwen3 / Mistral
 * families (RMSNorm, RoPE incl. llama3 scaling, grouped-query causal attention,
 * SwiGLU MLP, q/k/v bias for qwen2, q/k RMSNorm for qwen3, sliding window for mistral),
 * on a backend op table (backend.h): the model code calls ops only through it.
 *
 * Conventions
 * - Parameters are one flat array in the order and shapes of srlm_model_expected_tensors
 *   (hfmodel.h), in the backend's memory. The compute dtype (fp32 or bf16) is chosen at
 *   load/create: weights and activations are stored in it; the fp32 master weights are
 *   the parameters themselves in fp32 and a separate fp32 array in bf16 (the optimizer
 *   updates the master and writes the compute copy). A bf16 model loaded or created for
 *   decoding only (SRLM_MODEL_DECODE: a generator or judge that never learns) keeps no
 *   master: its compute copy is all it holds, and reading its parameters widens that copy
 *   (bf16 -> fp32 is exact). Gradients are fp32, same layout.
 *   Parameters and gradients move in and out through explicit copies
 *   (srlm_model_get_params / set_params / get_grads), never through host pointers.
 * - Batches are packed without padding (cu_seqlens style): B sequences back to back,
 *   T tokens in all; positions restart at 0 in every sequence, and attention never
 *   crosses a sequence boundary.
 * - The full (T x V) logits never exist at once: log-probs and their backward run over
 *   chunks of tokens and vocabulary (DESIGN.md invariant 7).
 * - Training: srlm_model_forward_train keeps the activations it needs inside the model
 *   (bounded, reported by srlm_model_activation_bytes); srlm_model_backward then takes
 *   per-token coefficients g_t = dL/dlogp_t (ALGORITHMS.md section 0) and ACCUMULATES
 *   (+=) into the gradients, so micro-batches sum; srlm_model_zero_grad clears them.
 *   SFT, DPO and GRPO all use this one backward.
 * - Results are identical for any thread count (fixed reduction order).
 * - A model handle is used by one thread at a time.
 */
#ifndef SRLM_MODEL_H
#define SRLM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/backend.h"
#include "srlm/core.h"
#include "srlm/hfmodel.h"
#include "srlm/safetensors.h"
#include "srlm/sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srlm_model srlm_model;

/* ---- create, load, save ------------------------------------------------- */

/* Loads a Hugging Face directory (config.json + single or sharded safetensors; F32, F16
 * or BF16 weights; tied or untied embeddings) onto backend instance be, computing in
 * dtype. Errors name the file and tensor. */
srlm_status srlm_model_load(const char *dir, srlm_backend *be, srlm_dtype dtype, srlm_model **out);
/* A fresh model with the same initialization as srlm_hf_model_write_random(cfg, seed). */
srlm_status srlm_model_create(const srlm_model_config *cfg, uint64_t seed, srlm_backend *be, srlm_dtype dtype,
                              srlm_model **out);

/* What a model is for. Load and create above give SRLM_MODEL_LEARN. A bf16 model for
 * SRLM_MODEL_DECODE keeps no fp32 master (4 bytes a parameter less): the weight broadcast
 * writes its compute copy directly (comm.h), srlm_model_get_params widens the compute copy
 * (the values every op reads, exactly), srlm_model_set_params rounds the host values into
 * it (as refresh_params does: to nearest, ties to even), srlm_model_master returns NULL and
 * refresh_params is an error; it can be evaluated, saved and copied, not trained (the
 * optimizer needs the master). An fp32 model is the same for both (its parameters are its
 * master). */
typedef enum srlm_model_use { SRLM_MODEL_LEARN = 0, SRLM_MODEL_DECODE } srlm_model_use;
srlm_status srlm_model_load_for(const char *dir, srlm_backend *be, srlm_dtype dtype, srlm_model_use use,
                                srlm_model **out);
srlm_status srlm_model_create_for(const srlm_model_config *cfg, uint64_t seed, srlm_backend *be, srlm_dtype dtype,
                                  srlm_model_use use, srlm_model **out);
/* 1 when the model keeps an fp32 master (every fp32 model; a bf16 model for SRLM_MODEL_LEARN). */
int srlm_model_has_master(const srlm_model *m);
/* ZeRO-1 (dp.h): a bf16 model that learns keeps only the fp32 master of [lo, hi) (this
 * learner's shard; the rest is freed). From then on srlm_model_master points at parameter
 * lo; get_params is an error outside [lo, hi) (the full master lives only across the
 * learners: gather it); set_params writes the compute copy of its whole range and the
 * master of its part in [lo, hi); refresh_params takes ranges inside [lo, hi). The compute
 * copy stays whole. Sharding again with the same range does nothing, with another one is
 * an error; an fp32 or decode-only model is an error (SRLM_ERR_INTERNAL). */
srlm_status srlm_model_shard_master(srlm_model *m, size_t lo, size_t hi);
/* The parameters the fp32 master holds: [0, num_params) (an fp32 model, a bf16 one that
 * learns), a ZeRO-1 shard, or [0, 0) (decode-only). Returns 1 when the master is sharded
 * (srlm_model_shard_master), also where this learner's range happens to be everything or
 * nothing: the same answer on every learner, so collectives can follow it. */
int srlm_model_master_range(const srlm_model *m, size_t *lo, size_t *hi);
/* A copy of m's parameters (srlm_model_get_params' values) in a new model of the same
 * config, backend and dtype, for `use`: a decode-only copy's compute copy equals m's. */
srlm_status srlm_model_clone(const srlm_model *m, srlm_model_use use, srlm_model **out);
/* Writes dir/config.json and dir/model.safetensors (dtype F32, BF16 or F16) so that
 * transformers' AutoModelForCausalLM.from_pretrained(dir) loads it. Tokenizer files
 * are the caller's to copy. */
srlm_status srlm_model_save(const srlm_model *m, const char *dir, srlm_st_dtype dtype);
/* The same with the parameters given (host memory, num_params fp32 values in the flat
 * layout) instead of m's: a ZeRO-1 learner's master gathered from the learners. */
srlm_status srlm_model_save_with(const srlm_model *m, const float *params, const char *dir, srlm_st_dtype dtype);
void srlm_model_free(srlm_model *m);

const srlm_model_config *srlm_model_get_config(const srlm_model *m);
srlm_backend *srlm_model_backend(const srlm_model *m);
srlm_dtype srlm_model_dtype(const srlm_model *m);

/* ---- parameters and gradients ------------------------------------------- */

size_t srlm_model_num_params(const srlm_model *m);
/* Copies n parameters (fp32 master values; without a master, the compute copy widened to
 * fp32) from offset into host memory. */
srlm_status srlm_model_get_params(const srlm_model *m, float *host, size_t offset, size_t n);
/* Sets n parameters from host memory: the master and the compute copy (without a master,
 * the compute copy alone, rounded as refresh_params rounds). */
srlm_status srlm_model_set_params(srlm_model *m, const float *host, size_t offset, size_t n);
/* Copies n gradients from offset into host memory (allocating zeroed gradients first). */
srlm_status srlm_model_get_grads(srlm_model *m, float *host, size_t offset, size_t n);
srlm_status srlm_model_zero_grad(srlm_model *m);

/* For code that moves parameters or gradients in backend memory (the optimizer, the
 * weight broadcast and gradient reduce of src/comm): the fp32 master of
 * srlm_model_master_range (element i is parameter lo + i; all of them unless sharded;
 * NULL for a bf16 model that keeps none, SRLM_MODEL_DECODE, or an empty shard) and the fp32 gradients (allocated
 * zeroed on first use). After writing the master through the pointer, refresh_params
 * casts [offset, offset + n) into the compute copy (an error without a master). Writing
 * the compute copy directly (compute_params: the weight broadcast into a decode-only
 * model) leaves the master, where there is one, as it was. */
float *srlm_model_master(srlm_model *m);
void *srlm_model_compute_params(srlm_model *m); /* (num_params) compute dtype: what the ops read */
srlm_status srlm_model_grad_buffer(srlm_model *m, float **grads);
srlm_status srlm_model_refresh_params(srlm_model *m, size_t offset, size_t n);
/* Where a named tensor (HF name) sits in the flat arrays (offset and count in elements). */
srlm_status srlm_model_param_view(const srlm_model *m, const char *name, size_t *offset, size_t *numel);

/* ---- batches ------------------------------------------------------------- */

/* B packed sequences, T tokens in all. */
typedef struct srlm_batch {
  int B;
  int64_t T;                 /* = cu_seqlens[B] */
  const int32_t *tokens;     /* (T) input ids, host memory */
  const int32_t *cu_seqlens; /* (B + 1) cu_seqlens[0] = 0, non-decreasing, host memory */
  const int32_t *targets;    /* (T) target of each position (usually the next token);
                                -1: no target (prompt tokens, the last token); host memory */
} srlm_batch;

/* ---- forward -------------------------------------------------------------- */

/* Per-token log-probs: logp[t] = log softmax(z_t)[targets[t]] where targets[t] >= 0,
 * 0 where targets[t] == -1. logp is host memory (T). No activations are kept. */
srlm_status srlm_model_logprobs(srlm_model *m, const srlm_batch *b, float *logp);

/* Full logits at chosen positions (for tests, evaluation and small vocabularies):
 * logits[i, :] = z at token position pos[i] of the packed batch. logits is host memory
 * (n_pos, V). */
srlm_status srlm_model_logits(srlm_model *m, const srlm_batch *b, const int64_t *pos, int64_t n_pos,
                              float *logits);

/* ---- training ------------------------------------------------------------- */

/* As srlm_model_logprobs, keeping the activations for srlm_model_backward. */
srlm_status srlm_model_forward_train(srlm_model *m, const srlm_batch *b, float *logp);
/* Backward of the last forward_train from g (T, host memory; g[t] = dL/dlogp[t], 0 where
 * there is no target): accumulates dL/dparams into the model's gradients (srlm_model_get_grads). One backward per
 * forward_train (a second is an error); logprobs, logits and step calls in between do
 * not disturb it (training keeps its own buffers). The parameters must not change
 * between the two. */
srlm_status srlm_model_backward(srlm_model *m, const float *g);
/* Gradients that are final before the backward returns (for a data-parallel reduce that
 * overlaps the backward, engine.h / dp.h). The backward writes the parameter gradients in
 * stages, each a contiguous range of the flat array, last range first:
 *   stage 0       the final norm and an untied LM head: [start of final norm, n)
 *   stage 1..L    layer L-1, ..., layer 0: each layer's tensors
 *   stage L + 1   the embedding [0, start of layer 0) (a tied LM head writes there too)
 * so after stage i the range [from[i], n) holds what the backward will leave there:
 * from[] decreases strictly to from[L + 1] = 0 (a stage without parameters would not
 * be one). Fills from (L + 2 entries, the model's layer count + 2) and returns the count. */
int srlm_model_grad_stages(const srlm_model *m, size_t *from);

/* Arms fn for the next srlm_model_backward: after each stage i above it calls
 * fn(ctx, from[i]) (in stage order, from[] decreasing) when the ops that write that range
 * have been queued on the backend (a device transport orders its own stream after the
 * backend's), so [from, n) may be reduced while the rest of the backward runs. A non-OK
 * status from fn ends the backward with it. Meant for the last backward of an optimizer
 * step (earlier micro-batches still accumulate): once a backward has called fn, another
 * backward is an SRLM_ERR_INTERNAL error until srlm_model_on_grads_final(m, NULL, NULL)
 * disarms it (the engine does so after the step's last micro-batch). A backward of an
 * empty batch (T = 0) calls nothing. */
typedef srlm_status (*srlm_model_grads_final_fn)(void *ctx, size_t from);
void srlm_model_on_grads_final(srlm_model *m, srlm_model_grads_final_fn fn, void *ctx);

/* Bytes of activations the last forward_train kept (peak during forward+backward). */
size_t srlm_model_activation_bytes(const srlm_model *m);
/* Bytes the inference passes have reserved so far (layer activations and scratch, the head's
 * rows): srlm_model_memory_plan's infer for the largest pass run. */
size_t srlm_model_inference_bytes(const srlm_model *m);
/* Activation recompute: on (1), forward_train keeps only each layer's input (T x C per
 * layer) and backward recomputes a layer's activations just before its backward (one
 * more forward's work, same bits). Off (0, the default) keeps everything. */
srlm_status srlm_model_set_recompute(srlm_model *m, int on);

/* What a model of config c and dtype dt will allocate, from its shape alone (before
 * anything is allocated; the memory plan of a rank, memplan.h): */
typedef struct srlm_model_memory {
  size_t n_params;
  size_t params;          /* the compute copy: n_params x dtype size */
  size_t master;          /* the fp32 master copy of a bf16 model for SRLM_MODEL_LEARN; 0 for fp32
                             (and for a bf16 model that only decodes: the caller's to leave out) */
  size_t grads;           /* fp32 gradients (a learner's) */
  size_t moments;         /* AdamW m and v, fp32 (unsharded) */
  size_t train;           /* a training forward + backward of T tokens, NT with targets, with
                             recompute as given: srlm_model_activation_bytes' value after it */
  size_t infer;           /* an inference forward of T_infer tokens (layer activations + scratch, and
                             the head's rows of a log-prob pass with every token a target) */
  size_t kv_per_position; /* KV cache bytes per cached position of one slot (all layers, K and V) */
} srlm_model_memory;
srlm_status srlm_model_memory_plan(const srlm_model_config *c, srlm_dtype dt, int recompute, int64_t T, int64_t NT,
                                   int64_t T_infer, srlm_model_memory *out);

/* ---- KV cache and incremental decoding ------------------------------------ */

/* A cache of keys and values for up to max_slots sequences of up to max_len tokens each
 * (prompt + generated). Slots are independent: a sequence's results do not depend on
 * what else is in the batch. */
typedef struct srlm_kv_cache srlm_kv_cache;
/* On device memory the model keeps the buffers of the last cache freed and the next cache that
 * fits in them takes them (cudaFree synchronizes the whole device, and a judge makes a cache per
 * shard); srlm_model_free releases them. Free every cache before its model. */
srlm_status srlm_kv_cache_create(srlm_model *m, int max_slots, int64_t max_len, srlm_kv_cache **out);
void srlm_kv_cache_free(srlm_kv_cache *kv);
/* Empties one slot (its length becomes 0). */
void srlm_kv_cache_reset(srlm_kv_cache *kv, int slot);
int64_t srlm_kv_cache_len(const srlm_kv_cache *kv, int slot);
size_t srlm_kv_cache_bytes(const srlm_kv_cache *kv);

/* A function called after every successful srlm_model_step* on m (NULL: none); its error
 * becomes the step's. For work that must go on while a rank decodes for a long time: a
 * generator or judge lets its shards' receivers take their bytes (srlm_comm_progress). It
 * must not change anything the step computes. */
void srlm_model_set_step_hook(srlm_model *m, srlm_status (*fn)(void *user), void *user);

/* The KV-cache budget of srlm_generate on m: its caches hold at most `positions` cached
 * positions in all (slots x length; 0, the default: no bound), the share of the device a rank's
 * memory plan gave them (memplan.h). A call whose longest sequence leaves room for fewer
 * slots than its max_batch decodes fewer sequences at once (the same samples: slots are
 * independent); one whose longest sequence alone needs more is an error naming it. */
void srlm_model_set_kv_budget(srlm_model *m, int64_t positions);
int64_t srlm_model_kv_budget(const srlm_model *m);

/* Appends new tokens to n slots and returns the next-token logits after each slot's last
 * new token: slot slots[i] gets tokens[cu[i] .. cu[i+1]) after the tokens it holds (a
 * prefill when it holds none, one token per slot for a decode step). logits is host
 * memory (n, V). Exceeding a slot's max_len is SRLM_ERR_RANGE naming the slot. */
srlm_status srlm_model_step(srlm_model *m, srlm_kv_cache *kv, int n, const int *slots, const int32_t *tokens,
                            const int32_t *cu, float *logits);

/* The same step, decoding without shipping logits: the logits stay in backend memory and
 * the backend's sample op picks each slot's next token with the settings sp, drawn for
 * sequence seq_id[i] at step step[i] (sampler.h's keying: the same token as
 * srlm_sampler_sample on the logits srlm_model_step returns). out (n, host) gets the
 * tokens and their log-probs. seq_id and step are host arrays (n). */
srlm_status srlm_model_step_sample(srlm_model *m, srlm_kv_cache *kv, int n, const int *slots, const int32_t *tokens,
                                   const int32_t *cu, const srlm_sampler_params *sp, const uint64_t *seq_id,
                                   const uint32_t *step, srlm_sample *out);
/* The same, and id_logits (n, n_ids, host) gets each slot's logits of the ids (n_ids of
 * them, each in [0, V)): the same bits as srlm_model_step's logits there. A judge reads
 * its score distribution this way without the full logits leaving the backend. */
srlm_status srlm_model_step_sample_ids(srlm_model *m, srlm_kv_cache *kv, int n, const int *slots,
                                       const int32_t *tokens, const int32_t *cu, const srlm_sampler_params *sp,
                                       const uint64_t *seq_id, const uint32_t *step, srlm_sample *out,
                                       const int32_t *ids, int n_ids, float *id_logits);

#ifdef __cplusplus
}
#endif
#endif
