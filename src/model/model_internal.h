/* Private to the model module (model.c, forward.c, backward.c, kv.c): the model struct,
 * where each layer's tensors sit in the flat parameter array, the activation buffers,
 * and the helpers that call backend ops.
 *
 * Every buffer here is backend memory (from be->alloc); host-side arrays say so. */
#ifndef SRLM_MODEL_INTERNAL_H
#define SRLM_MODEL_INTERNAL_H

#include <stdint.h>

#include "srlm/model.h"

#define SRLM_NO_TENSOR SIZE_MAX

/* Offsets (in floats) of one layer's tensors in the flat arrays; SRLM_NO_TENSOR when
 * the family has no such tensor. */
typedef struct layer_offsets {
  size_t q, k, v, o;          /* [Q, C] [KV, C] [KV, C] [C, Q] */
  size_t q_bias, k_bias, v_bias, o_bias;
  size_t q_norm, k_norm;      /* [HS] */
  size_t gate, up, down;      /* [FF, C] [FF, C] [C, FF] */
  size_t attn_norm, mlp_norm; /* [C] */
  int64_t window;             /* sliding window of this layer, 0: none */
} layer_offsets;

/* What one layer's forward writes. In inference every layer shares one set (x_in, x_mid
 * and x_out are the same buffer: the residual stream updated in place); in training
 * each layer keeps its own, x_out being the next layer's x_in. Tensors without a
 * comment on their type are in the model's compute dtype; statistics are fp32. */
typedef struct layer_acts {
  void *x_in;           /* (T, C) residual stream into the layer */
  float *rstd1;         /* (T) */
  void *q;              /* (T, NH, HS) after q-norm and RoPE */
  void *k, *v;          /* (T, NKV, HS) k after k-norm and RoPE */
  void *q_raw, *k_raw;  /* (T, NH, HS) (T, NKV, HS) before q/k-norm (qwen3 only) */
  float *rstd_q;        /* (T, NH) (qwen3 only) */
  float *rstd_k;        /* (T, NKV) (qwen3 only) */
  void *att;            /* (T, NH, HS) attention output */
  float *lse;           /* (T, NH) */
  void *x_mid;          /* (T, C) after the attention residual */
  float *rstd2;         /* (T) */
  void *gate, *up;      /* (T, FF) */
  void *x_out;          /* (T, C) */
  /* kept on host memory only (srlm_model's keep_inputs), else NULL and recomputed by the
     backward into the scratch: the blocks' normed inputs and the down projection's input */
  void *xn1, *xn2;      /* (T, C) rmsnorm(x_in), rmsnorm(x_mid) */
  void *h;              /* (T, FF) silu(gate) * up */
} layer_acts;

/* Scratch of one forward or backward (not kept), compute dtype. */
typedef struct model_scratch {
  void *xn;      /* (T, C) normed input of a block */
  void *tmp;     /* (T, C) block output before the residual add */
  void *h;       /* (T, FF) silu(gate) * up */
} model_scratch;

/* A grow-only backend buffer. */
typedef struct dbuf {
  void *p;
  size_t bytes;
} dbuf;

/* A batch's ids on the backend. Training keeps its own set (and its own activation and
 * scratch buffers), so inference calls between forward_train and backward leave it
 * intact. */
typedef struct batch_bufs {
  dbuf tokens;  /* (T) */
  dbuf pos;     /* (T) position of each token in its sequence */
  dbuf cu;      /* (B + 1) */
  dbuf rows;    /* (NT) positions that have a target, in order */
  dbuf targets; /* (NT) their targets */
} batch_bufs;

struct srlm_kv_cache {
  srlm_model *m;
  int max_slots;
  int64_t max_len;
  void **k, **v;  /* (L) each (max_slots, max_len, NKV, HS) compute dtype */
  size_t bytes;   /* each buffer's allocated size (a reused spare may be larger than needed) */
  int64_t *len;   /* (max_slots) host: positions each slot holds */
};

/* The attention of a forward: packed sequences (cu on the backend), or a KV cache. */
typedef struct attn_src {
  int B;
  const int32_t *cu; /* (B + 1) backend */
  srlm_kv_cache *kv; /* non-NULL: decode/prefill against the cache */
  int n;             /* sequences of a cache step */
  int64_t NQ;        /* new tokens of a cache step */
  const int32_t *slot_dev;     /* (n) backend */
  const int32_t *kv_len_dev;   /* (n) backend: cached lengths after this step */
} attn_src;

struct srlm_model {
  srlm_model_config cfg;
  int64_t kv_budget;       /* srlm_model_set_kv_budget's positions; 0: no bound */
  srlm_status (*step_hook)(void *user); /* srlm_model_set_step_hook; NULL: none */
  void *step_user;
  void **kv_spare;         /* device memory only: the 2L buffers (K, V of each layer) of the last KV
                              cache freed, kv_spare_bytes each, kept for the next (kv.c); NULL: none */
  size_t kv_spare_bytes;
  srlm_backend *be;
  srlm_dtype dt;           /* compute dtype of weights and activations */
  size_t esz;              /* its element size */
  int64_t C, V, FF, L, NH, NKV, HS, Q, KV; /* Q = NH * HS, KV = NKV * HS */
  float eps;
  srlm_tensor_spec *specs; /* (n_specs) HF order */
  size_t n_specs;
  size_t *offsets;         /* (n_specs) in elements */
  size_t n_params;
  size_t off_embed, off_final_norm, off_lm_head; /* lm_head = embed when tied */
  layer_offsets *layers;   /* (L) */
  void *params;            /* (n_params) compute dtype: what the ops read */
  float *master;           /* (master_hi - master_lo) fp32 master weights of [master_lo, master_hi): all of
                              them, or a ZeRO-1 learner's shard; NULL for fp32 (params is the master) and
                              for a decode-only bf16 model (and an empty shard) */
  int keeps_master;        /* fp32, or bf16 for SRLM_MODEL_LEARN */
  size_t master_lo, master_hi; /* the range the master holds: [0, n_params) unless sharded */
  int master_shard;        /* srlm_model_shard_master was called (even if its range is everything) */
  uint64_t wversion;       /* params' version for matmul's b_version (backend.h): new on every change */
  int decoding;            /* inside srlm_model_step: the weight matmuls pass wversion as b_version
                              (decode reads packed weights; training and scoring never do) */
  float *grads;            /* (n_params) fp32; NULL until first needed */
  float *inv_freq;         /* (HS / 2) fp32 */

  /* inference (logprobs, logits, step) */
  batch_bufs ib;
  dbuf scratch_buf;        /* activations and scratch of an inference forward */
  dbuf head_buf;           /* rows and logits of srlm_model_head_logits, head rows of logprobs */
  dbuf head_keep_buf;      /* the training forward's LM head logits (NT, V) fp32, when kept (head.c) */
  int head_kept;           /* 1: head_keep_buf holds the last training forward's logits */
  dbuf step_buf;           /* slots and cached lengths of a step; its sampling keys and results */

  /* training: the last forward_train, for backward */
  int recompute;           /* keep only each layer's input and recompute the rest */
  int keep_inputs;         /* a full layer_acts also keeps xn1, xn2 and h: on host memory, where the
                              backward's recompute of two RMSNorms and a SwiGLU per layer costs
                              more than the memory (a device's memory is its budget: it recomputes),
                              unless SRLM_KEEP_INPUTS=0 (the same bits either way) */
  batch_bufs tb;
  dbuf act_buf;            /* what backward reads */
  dbuf tscratch_buf;       /* forward/backward scratch */
  dbuf bwd_buf;            /* gradients of activations */
  layer_acts *acts;        /* (L) */
  model_scratch scr;       /* in tscratch_buf */
  void *x_final;           /* (T, C) residual stream after the last layer */
  void *x_rows;            /* (NT, C) x_final at the rows that have a target */
  float *rstd_final;       /* (NT) */
  void *xf_rows;           /* (NT, C) final-normed rows */
  float *lse_rows;         /* (NT) */
  float *logp_rows;        /* (NT) */
  int64_t T, NT;
  int B;
  int32_t *rows_host;      /* (NT) host */
  int trained;             /* 1 between forward_train and backward */
  /* srlm_model_on_grads_final: called by the next backward as its stages end */
  srlm_model_grads_final_fn final_fn;
  void *final_ctx;
  int final_spent;         /* 1: a backward called final_fn; another backward is an error until cleared */
  size_t act_bytes;        /* activations kept + forward/backward scratch of the last forward_train */
};

/* Calls op `op` of the model's backend (SRLM_OP: fails naming the op when missing). */
#define OP(m, op, p) SRLM_OP((m)->be, op, p)

/* Element `i` of a compute-dtype buffer, and the parameter at offset `off`. */
static inline void *srlm_model_el(const srlm_model *m, const void *base, int64_t i) {
  return (char *)(uintptr_t)base + (size_t)i * m->esz;
}
static inline void *srlm_model_w(const srlm_model *m, size_t off) { return srlm_model_el(m, m->params, (int64_t)off); }

/* n elements of esz bytes, 64-byte aligned, carved from *cur (advanced) and counted in
 * *total; with cur NULL only counts. */
static inline void *srlm_model_carve(char **cur, size_t *total, int64_t n, size_t esz) {
  const size_t bytes = ((size_t)(n > 0 ? n : 0) * esz + 63) & ~(size_t)63;
  *total += bytes;
  if (!cur) return NULL;
  void *p = *cur;
  *cur += bytes;
  return p;
}

/* Backend memory helpers. */
srlm_status srlm_model_dbuf_reserve(const srlm_model *m, dbuf *b, size_t bytes);
void srlm_model_dbuf_free(const srlm_model *m, dbuf *b);
/* Frees the KV buffers the model keeps from its last cache (kv.c). */
void srlm_model_kv_spare_free(srlm_model *m);

/* y = x W^T (+ bias): x (T, in), W [out, in] at params offset w, bias offset or NO_TENSOR. */
srlm_status srlm_model_linear(srlm_model *m, void *y, const void *x, int64_t T, size_t w, size_t bias,
                              int64_t out, int64_t in);
/* out = rmsnorm(x) with the weight at params offset w (rstd may be NULL). */
srlm_status srlm_model_rmsnorm(srlm_model *m, void *out, float *rstd, const void *x, size_t w, int64_t N, int64_t C);
/* out (n, C) = x[rows] (rows on the backend, indices into the T rows of x). */
srlm_status srlm_model_gather_rows(srlm_model *m, void *out, const void *x, int64_t T, const int32_t *rows, int64_t n);

/* Frees every buffer of a batch_bufs. */
void srlm_model_batch_bufs_free(const srlm_model *m, batch_bufs *b);

/* One layer's forward from acts->x_in to acts->x_out (see forward.c). */
srlm_status srlm_model_layer_forward(srlm_model *m, int l, const layer_acts *a, const model_scratch *s, int64_t T,
                                     const int32_t *pos, const attn_src *src);

/* Activation layout: carves the buffers of `a` for T tokens out of *cursor (advanced);
 * with cursor NULL only counts. full = 0: only x_in (recompute keeps just that). */
size_t srlm_model_carve_acts(const srlm_model *m, int64_t T, int full, char **cursor, layer_acts *a);
size_t srlm_model_carve_scratch(const srlm_model *m, int64_t T, char **cursor, model_scratch *s);
/* Bytes a training forward + backward of T tokens (NT with targets) keeps (act_bytes), and
 * an inference forward of T tokens uses (layer activations + scratch), for the model's
 * shape, dtype, recompute and keep_inputs settings; no buffer is touched. (The memory plan's
 * shape-only model has keep_inputs 0: a device's numbers.) */
size_t srlm_model_train_bytes(const srlm_model *m, int64_t T, int64_t NT);
size_t srlm_model_infer_bytes(const srlm_model *m, int64_t T);

/* Inference activations and scratch for T tokens (one layer's set, shared by all). */
srlm_status srlm_model_infer_buffers(srlm_model *m, int64_t T, layer_acts *a, model_scratch *s);

/* Uploads the host array to a backend buffer (grown as needed). */
srlm_status srlm_model_upload_i32(srlm_model *m, dbuf *b, const int32_t *host, int64_t n);

/* The LM head (head.c). Logits (n, V, host memory) of the given rows of the residual
 * stream x (T, C): final norm and LM head, in chunks of rows. Used by srlm_model_logits
 * and the step. */
srlm_status srlm_model_head_logits(srlm_model *m, const void *x, int64_t T, const int32_t *rows_host, int64_t n,
                                   float *logits);
/* The same rows sampled on the backend instead (srlm_model_step_sample): sp holds the
 * settings and the backend arrays (n) seq_id, step, token, logprob, sample_logprob; its
 * logits, n and V are filled in per chunk of rows. With n_ids > 0, id_logits (n, n_ids,
 * host) also get each row's logits of the ids (the same logits the row is sampled from). */
srlm_status srlm_model_head_sample(srlm_model *m, const void *x, int64_t T, const int32_t *rows_host, int64_t n,
                                   srlm_sample_params sp, const int32_t *ids, int n_ids, float *id_logits);
/* logp and lse (NT, backend) of the targets (NT, backend) of the final-normed rows xf.
 * train: a training forward, whose LM head logits are kept for the backward where the
 * model keeps them (head.c: host memory, up to a size). */
srlm_status srlm_model_head_forward(srlm_model *m, const void *xf, const int32_t *targets, int64_t NT, float *logp,
                                    float *lse, int train);
/* Backward of the LM head from dlogp (NT): dxf (NT, C) overwritten, lm_head gradient
 * accumulated; from the training forward's kept logits when it kept them. */
srlm_status srlm_model_head_backward(srlm_model *m, const void *xf, const int32_t *targets, const float *lse,
                                     const float *dlogp, int64_t NT, void *dxf);
/* Bytes of backend memory srlm_model_backward needs for T tokens and NT targets. */
size_t srlm_model_backward_bytes(const srlm_model *m, int64_t T, int64_t NT);

#endif
