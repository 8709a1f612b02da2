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
 * each layer keeps its own, x_out being the next layer's x_in. */
typedef struct layer_acts {
  float *x_in;          /* (T, C) residual stream into the layer */
  float *rstd1;         /* (T) */
  float *q;             /* (T, NH, HS) after q-norm and RoPE */
  float *k, *v;         /* (T, NKV, HS) k after k-norm and RoPE */
  float *q_raw, *k_raw; /* (T, NH, HS) (T, NKV, HS) before q/k-norm (qwen3 only) */
  float *rstd_q;        /* (T, NH) (qwen3 only) */
  float *rstd_k;        /* (T, NKV) (qwen3 only) */
  float *att;           /* (T, NH, HS) attention output */
  float *lse;           /* (T, NH) */
  float *x_mid;         /* (T, C) after the attention residual */
  float *rstd2;         /* (T) */
  float *gate, *up;     /* (T, FF) */
  float *x_out;         /* (T, C) */
} layer_acts;

/* Scratch of one forward or backward (not kept). */
typedef struct model_scratch {
  float *xn;     /* (T, C) normed input of a block */
  float *tmp;    /* (T, C) block output before the residual add */
  float *h;      /* (T, FF) silu(gate) * up */
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
  const srlm_model *m;
  int max_slots;
  int64_t max_len;
  float **k, **v; /* (L) each (max_slots, max_len, NKV, HS) */
  int64_t *len;   /* (max_slots) host: positions each slot holds */
};

/* The attention of a forward: packed sequences (cu on the backend), or a KV cache. */
typedef struct attn_src {
  int B;
  const int32_t *cu; /* (B + 1) backend */
  srlm_kv_cache *kv; /* non-NULL: decode/prefill against the cache */
  int n;             /* sequences of a cache step */
  const int *slots_host;
  const int32_t *cu_host;      /* (n + 1) host */
  const int32_t *slot_dev;     /* (n) backend */
  const int32_t *kv_len_dev;   /* (n) backend: cached lengths after this step */
  const int64_t *kv_len0_host; /* (n) host: lengths before this step */
} attn_src;

struct srlm_model {
  srlm_model_config cfg;
  const srlm_backend_ops *be;
  int64_t C, V, FF, L, NH, NKV, HS, Q, KV; /* Q = NH * HS, KV = NKV * HS */
  float eps;
  srlm_tensor_spec *specs; /* (n_specs) HF order */
  size_t n_specs;
  size_t *offsets;         /* (n_specs) in floats */
  size_t n_params;
  size_t off_embed, off_final_norm, off_lm_head; /* lm_head = embed when tied */
  layer_offsets *layers;   /* (L) */
  float *params;           /* (n_params) */
  float *grads;            /* (n_params) NULL until srlm_model_grads */
  float *inv_freq;         /* (HS / 2) */

  /* inference (logprobs, logits, step) */
  batch_bufs ib;
  dbuf scratch_buf;        /* activations and scratch of an inference forward */
  dbuf head_buf;           /* rows and logits of srlm_model_head_logits */
  dbuf step_buf;           /* slots and cached lengths of a step */

  /* training: the last forward_train, for backward */
  int recompute;           /* keep only each layer's input and recompute the rest */
  batch_bufs tb;
  dbuf act_buf;            /* what backward reads */
  dbuf tscratch_buf;       /* forward/backward scratch and LM-head chunks */
  dbuf bwd_buf;            /* gradients of activations */
  layer_acts *acts;        /* (L) */
  model_scratch scr;       /* in tscratch_buf */
  float *chunk;            /* (TC, VC) LM-head logits chunk, in tscratch_buf */
  float *x_final;          /* (T, C) residual stream after the last layer */
  float *x_rows;           /* (NT, C) x_final at the rows that have a target */
  float *rstd_final;       /* (NT) */
  float *xf_rows;          /* (NT, C) final-normed rows */
  float *lse_rows;         /* (NT) */
  int64_t T, NT;
  int B;
  int32_t *rows_host;      /* (NT) host */
  int trained;             /* 1 between forward_train and backward */
  size_t act_bytes;        /* activations kept + forward/backward scratch of the last forward_train */
};

/* Calls op `name` of the model's backend, or fails naming the op when it is missing. */
#define OP(m, op, ...)                                                                                        \
  ((m)->be->op ? (m)->be->op(__VA_ARGS__)                                                                     \
               : srlm_error(SRLM_ERR_UNSUPPORTED, "model", "backend '%s' has no op '%s' yet", (m)->be->name, #op))

/* n floats, 64-byte aligned, carved from *cur (advanced) and counted in *total;
 * with cur NULL only counts. */
static inline float *srlm_model_carve(char **cur, size_t *total, int64_t n) {
  const size_t bytes = ((size_t)(n > 0 ? n : 0) * sizeof(float) + 63) & ~(size_t)63;
  *total += bytes;
  if (!cur) return NULL;
  float *p = (float *)(void *)*cur;
  *cur += bytes;
  return p;
}

/* Backend memory helpers. */
srlm_status srlm_model_dbuf_reserve(const srlm_model *m, dbuf *b, size_t bytes);
void srlm_model_dbuf_free(const srlm_model *m, dbuf *b);

/* y = x W^T (+ bias): x (T, in), W [out, in] at params offset w, bias offset or NO_TENSOR. */
srlm_status srlm_model_linear(srlm_model *m, float *y, const float *x, int64_t T, size_t w, size_t bias,
                              int64_t out, int64_t in);

/* Frees every buffer of a batch_bufs. */
void srlm_model_batch_bufs_free(const srlm_model *m, batch_bufs *b);

/* One layer's forward from acts->x_in to acts->x_out (see forward.c). */
srlm_status srlm_model_layer_forward(srlm_model *m, int l, const layer_acts *a, const model_scratch *s, int64_t T,
                                     const int32_t *pos, const attn_src *src);

/* Activation layout: carves the buffers of `a` for T tokens out of *cursor (advanced);
 * with cursor NULL only counts. full = 0: only x_in (recompute keeps just that). */
size_t srlm_model_carve_acts(const srlm_model *m, int64_t T, int full, char **cursor, layer_acts *a);
size_t srlm_model_carve_scratch(const srlm_model *m, int64_t T, char **cursor, model_scratch *s);

/* Inference activations and scratch for T tokens (one layer's set, shared by all). */
srlm_status srlm_model_infer_buffers(srlm_model *m, int64_t T, layer_acts *a, model_scratch *s);

/* Uploads the host array to a backend buffer (grown as needed). */
srlm_status srlm_model_upload_i32(srlm_model *m, dbuf *b, const int32_t *host, int64_t n);

/* Logits (n, V, host memory) of the given rows of the residual stream x (T, C): final
 * norm and LM head, in chunks of rows. Used by srlm_model_logits and the step. */
srlm_status srlm_model_head_logits(srlm_model *m, const float *x, int64_t T, const int32_t *rows_host, int64_t n,
                                   float *logits);

/* Backward of the LM head from dlogp (NT): dxf (NT, C) overwritten, lm_head gradient
 * accumulated; chunk is (TC, VC) scratch (see forward.c). */
srlm_status srlm_model_head_backward(srlm_model *m, const float *xf, const int32_t *targets, const float *lse,
                                     const float *dlogp, int64_t NT, float *dxf, float *chunk);
/* Bytes of backend memory srlm_model_backward needs for T tokens and NT targets. */
size_t srlm_model_backward_bytes(const srlm_model *m, int64_t T, int64_t NT);

#endif
