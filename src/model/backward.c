/* backward: gradients of every parameter from per-token coefficients g_t = dL/dlogp_t
 * (ALGORITHMS.md section 0), for the last srlm_model_forward_train, in reverse order of
 * forward.c:
 *
 *   LM head (chunks; logits kept by the forward on host memory up to SRLM_HEAD_KEEP_MB,
 *   else recomputed) -> final norm -> scatter to the token rows
 *   for each layer, last first (recomputing its activations first in recompute mode; the
 *   blocks' normed inputs and silu(gate) * up kept on host memory, else recomputed here):
 *     MLP: dWd, dh, SwiGLU, dWg/dWu, dxn, rmsnorm -> residual
 *     attention: dWo (dbo), dattention, rope^-1, q/k-norm (qwen3), dbq/k/v, dWq/k/v,
 *                dxn, rmsnorm -> residual
 *   embedding scatter-add.
 *
 * Gradients of parameters accumulate (+=) into the model's gradients; everything else here is
 * scratch. For a weight W [out, in] of y = x W^T: dW += dy^T x and dx = dy W. When armed
 * (srlm_model_on_grads_final), the end of each stage above (head + final norm, each layer,
 * the embedding) is announced with the start of the parameter range it finished. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

/* Gradients of activations, in the compute dtype (g_rows fp32). */
typedef struct bwd_bufs {
  void *dres;            /* (T, C) gradient of the residual stream */
  void *dtmp, *dxn;      /* (T, C) */
  void *dh;              /* (T, FF) */
  void *datt, *dq;       /* (T, Q) */
  void *dk, *dv;         /* (T, KV) */
  void *dxf, *dx_rows;   /* (NT, C) */
  float *g_rows;         /* (NT) */
} bwd_bufs;

static size_t carve_bwd(const srlm_model *m, int64_t T, int64_t NT, char **cur, bwd_bufs *d) {
  size_t total = 0;
  bwd_bufs z;
  z.dres = srlm_model_carve(cur, &total, T * m->C, m->esz);
  z.dtmp = srlm_model_carve(cur, &total, T * m->C, m->esz);
  z.dxn = srlm_model_carve(cur, &total, T * m->C, m->esz);
  z.dh = srlm_model_carve(cur, &total, T * m->FF, m->esz);
  z.datt = srlm_model_carve(cur, &total, T * m->Q, m->esz);
  z.dq = srlm_model_carve(cur, &total, T * m->Q, m->esz);
  z.dk = srlm_model_carve(cur, &total, T * m->KV, m->esz);
  z.dv = srlm_model_carve(cur, &total, T * m->KV, m->esz);
  z.dxf = srlm_model_carve(cur, &total, NT * m->C, m->esz);
  z.dx_rows = srlm_model_carve(cur, &total, NT * m->C, m->esz);
  z.g_rows = srlm_model_carve(cur, &total, NT, sizeof(float));
  if (d) *d = z;
  return total;
}

size_t srlm_model_backward_bytes(const srlm_model *m, int64_t T, int64_t NT) { return carve_bwd(m, T, NT, NULL, NULL); }

/* dW [out, in] += dy^T x, with dy (T, out) and x (T, in); fp32 gradient. */
static srlm_status dweight(srlm_model *m, size_t w, const void *dy, const void *x, int64_t T, int64_t out, int64_t in) {
  srlm_matmul_params p = {.c = m->grads + w, .a = dy, .b = x, .M = out, .N = in, .K = T, .trans_a = 1, .accumulate = 1,
                          .dtype = m->dt, .c_dtype = SRLM_F32};
  return OP(m, matmul, p);
}

/* dx (T, in) (+)= dy (T, out) W, W [out, in]. */
static srlm_status dinput(srlm_model *m, void *dx, const void *dy, size_t w, int64_t T, int64_t out, int64_t in, int acc) {
  srlm_matmul_params p = {.c = dx, .a = dy, .b = srlm_model_w(m, w), .M = T, .N = in, .K = out, .accumulate = acc,
                          .dtype = m->dt, .c_dtype = m->dt};
  return OP(m, matmul, p);
}

static srlm_status dbias(srlm_model *m, size_t b, const void *dy, int64_t T, int64_t n) {
  if (b == SRLM_NO_TENSOR) return SRLM_OK;
  srlm_colsum_params p = {.out = m->grads + b, .x = dy, .N = T, .C = n, .dtype = m->dt};
  return OP(m, colsum, p);
}

static srlm_status rmsnorm_bwd(srlm_model *m, void *dx, const void *dy, const void *x, const float *rstd, size_t w,
                               int64_t N, int64_t C) {
  srlm_rmsnorm_bwd_params p = {.dx = dx, .dw = m->grads + w, .dy = dy, .x = x, .w = srlm_model_w(m, w), .rstd = rstd,
                               .N = N, .C = C, .dtype = m->dt};
  return OP(m, rmsnorm_backward, p);
}

static srlm_status add_into(srlm_model *m, void *acc, const void *x, int64_t n) {
  srlm_add_params p = {.out = acc, .a = acc, .b = x, .n = n, .dtype = m->dt};
  return OP(m, add, p);
}

/* d->dres: gradient of the layer's output in, of its input out. Overwrites the layer's
 * gate/up activations with their gradients. */
static srlm_status layer_backward(srlm_model *m, int l, const layer_acts *a, const model_scratch *s, const bwd_bufs *d,
                                  int64_t T) {
  const layer_offsets *lo = &m->layers[l];
  const int64_t C = m->C, FF = m->FF, Q = m->Q, KV = m->KV;

  /* MLP: x_out = x_mid + (silu(gate) * up) Wd^T, gate/up = rmsnorm(x_mid) Wg^T / Wu^T */
  const void *h = a->h, *xn2 = a->xn2, *xn1 = a->xn1; /* kept (keep_inputs) or recomputed */
  if (!h) {
    srlm_swiglu_params sw = {.h = s->h, .gate = a->gate, .up = a->up, .N = T, .FF = FF, .dtype = m->dt};
    SRLM_TRY(OP(m, swiglu_forward, sw));
    h = s->h;
  }
  SRLM_TRY(dweight(m, lo->down, d->dres, h, T, C, FF));
  SRLM_TRY(dinput(m, d->dh, d->dres, lo->down, T, C, FF, 0));
  srlm_swiglu_bwd_params swb = {.dgate = a->gate, .dup = a->up, .dh = d->dh, .gate = a->gate, .up = a->up, .N = T,
                                .FF = FF, .dtype = m->dt};
  SRLM_TRY(OP(m, swiglu_backward, swb));
  const void *dgate = a->gate, *dup = a->up;
  if (!xn2) {
    SRLM_TRY(srlm_model_rmsnorm(m, s->xn, NULL, a->x_mid, lo->mlp_norm, T, C));
    xn2 = s->xn;
  }
  SRLM_TRY(dweight(m, lo->gate, dgate, xn2, T, FF, C));
  SRLM_TRY(dweight(m, lo->up, dup, xn2, T, FF, C));
  SRLM_TRY(dinput(m, d->dxn, dgate, lo->gate, T, FF, C, 0));
  SRLM_TRY(dinput(m, d->dxn, dup, lo->up, T, FF, C, 1));
  SRLM_TRY(rmsnorm_bwd(m, d->dtmp, d->dxn, a->x_mid, a->rstd2, lo->mlp_norm, T, C));
  SRLM_TRY(add_into(m, d->dres, d->dtmp, T * C));

  /* attention: x_mid = x_in + att Wo^T (+ bo) */
  SRLM_TRY(dweight(m, lo->o, d->dres, a->att, T, C, Q));
  SRLM_TRY(dbias(m, lo->o_bias, d->dres, T, C));
  SRLM_TRY(dinput(m, d->datt, d->dres, lo->o, T, C, Q, 0));
  srlm_attention_bwd_params ab = {.dq = d->dq, .dk = d->dk, .dv = d->dv, .dout = d->datt, .out = a->att, .lse = a->lse,
                                  .q = a->q, .k = a->k, .v = a->v, .cu_seqlens = m->tb.cu.p, .B = m->B, .T = T,
                                  .NH = m->NH, .NKV = m->NKV, .HS = m->HS, .window = lo->window,
                                  .scale = 1.0f / sqrtf((float)m->HS), .dtype = m->dt};
  SRLM_TRY(OP(m, attention_backward, ab));
  srlm_rope_params rq = {.x = d->dq, .pos = m->tb.pos.p, .inv_freq = m->inv_freq, .N = T, .H = m->NH, .HS = m->HS,
                         .dtype = m->dt};
  srlm_rope_params rk = {.x = d->dk, .pos = m->tb.pos.p, .inv_freq = m->inv_freq, .N = T, .H = m->NKV, .HS = m->HS,
                         .dtype = m->dt};
  SRLM_TRY(OP(m, rope_backward, rq));
  SRLM_TRY(OP(m, rope_backward, rk));
  if (m->cfg.qk_norm) {
    SRLM_TRY(rmsnorm_bwd(m, d->dq, d->dq, a->q_raw, a->rstd_q, lo->q_norm, T * m->NH, m->HS));
    SRLM_TRY(rmsnorm_bwd(m, d->dk, d->dk, a->k_raw, a->rstd_k, lo->k_norm, T * m->NKV, m->HS));
  }
  SRLM_TRY(dbias(m, lo->q_bias, d->dq, T, Q));
  SRLM_TRY(dbias(m, lo->k_bias, d->dk, T, KV));
  SRLM_TRY(dbias(m, lo->v_bias, d->dv, T, KV));
  if (!xn1) {
    SRLM_TRY(srlm_model_rmsnorm(m, s->xn, NULL, a->x_in, lo->attn_norm, T, C));
    xn1 = s->xn;
  }
  SRLM_TRY(dweight(m, lo->q, d->dq, xn1, T, Q, C));
  SRLM_TRY(dweight(m, lo->k, d->dk, xn1, T, KV, C));
  SRLM_TRY(dweight(m, lo->v, d->dv, xn1, T, KV, C));
  SRLM_TRY(dinput(m, d->dxn, d->dq, lo->q, T, Q, C, 0));
  SRLM_TRY(dinput(m, d->dxn, d->dk, lo->k, T, KV, C, 1));
  SRLM_TRY(dinput(m, d->dxn, d->dv, lo->v, T, KV, C, 1));
  SRLM_TRY(rmsnorm_bwd(m, d->dtmp, d->dxn, a->x_in, a->rstd1, lo->attn_norm, T, C));
  return add_into(m, d->dres, d->dtmp, T * C);
}

/* The first element of layer l's tensors in the flat arrays (they are contiguous). */
static size_t layer_start(const srlm_model *m, int64_t l) {
  size_t lo = m->n_params;
  for (size_t i = 0; i < m->n_specs; i++)
    if (m->specs[i].layer == l && m->offsets[i] < lo) lo = m->offsets[i];
  return lo;
}

int srlm_model_grad_stages(const srlm_model *m, size_t *from) {
  int k = 0;
  from[k++] = m->off_final_norm;
  for (int64_t l = m->L - 1; l >= 0; l--) from[k++] = layer_start(m, l);
  from[k++] = 0;
  return k;
}

void srlm_model_on_grads_final(srlm_model *m, srlm_model_grads_final_fn fn, void *ctx) {
  m->final_fn = fn;
  m->final_ctx = ctx;
  m->final_spent = 0;
}

/* Stage done: [from, n) is final (srlm_model_on_grads_final). */
static srlm_status grads_final(srlm_model *m, size_t from) { return m->final_fn ? m->final_fn(m->final_ctx, from) : SRLM_OK; }

/* g at the rows with a target; g must be 0 at tokens without one. */
static srlm_status compact_g(const srlm_model *m, const float *g, float *g_rows) {
  int64_t r = 0;
  for (int64_t t = 0; t < m->T; t++) {
    if (r < m->NT && m->rows_host[r] == t) {
      g_rows[r++] = g[t];
      continue;
    }
    if (g[t] != 0.0f)
      return srlm_error(SRLM_ERR_RANGE, "model backward", "g[%lld] = %g at a token without a target (must be 0)",
                        (long long)t, (double)g[t]);
  }
  return SRLM_OK;
}

srlm_status srlm_model_backward(srlm_model *m, const float *g) {
  if (!m->trained)
    return srlm_error(SRLM_ERR_INTERNAL, "model backward",
                      "no forward_train to take the backward of (each forward_train allows one backward)");
  m->trained = 0;
  if (m->final_fn && m->final_spent)
    return srlm_error(SRLM_ERR_INTERNAL, "model backward", "a second backward after the previous one declared the "
                      "gradients final (srlm_model_on_grads_final: one backward per arming)");
  float *grads; /* allocated (zeroed) on the first backward */
  SRLM_TRY(srlm_model_grad_buffer(m, &grads));
  (void)grads;
  const int64_t T = m->T, NT = m->NT, C = m->C;
  if (T == 0) return SRLM_OK;
  if (m->final_fn) m->final_spent = 1;
  float *g_rows = srlm_xmalloc((size_t)(NT > 0 ? NT : 1) * sizeof *g_rows);
  srlm_status st = compact_g(m, g, g_rows);
  if (st == SRLM_OK) st = srlm_model_dbuf_reserve(m, &m->bwd_buf, carve_bwd(m, T, NT, NULL, NULL));
  bwd_bufs d;
  if (st == SRLM_OK) {
    char *cur = m->bwd_buf.p;
    carve_bwd(m, T, NT, &cur, &d);
    if (NT > 0) st = srlm_backend_copy_h2d(m->be, d.g_rows, g_rows, (size_t)NT * sizeof *g_rows);
  }
  free(g_rows);
  SRLM_TRY(st);

  /* LM head and final norm on the rows with targets, then back onto all T tokens */
  SRLM_TRY(srlm_backend_zero(m->be, d.dres, (size_t)(T * C) * m->esz));
  if (NT > 0) {
    SRLM_TRY(srlm_model_head_backward(m, m->xf_rows, m->tb.targets.p, m->lse_rows, d.g_rows, NT, d.dxf));
    SRLM_TRY(rmsnorm_bwd(m, d.dx_rows, d.dxf, m->x_rows, m->rstd_final, m->off_final_norm, NT, C));
    srlm_embedding_bwd_params sc = {.dtable = d.dres, .dout = d.dx_rows, .ids = m->tb.rows.p, .N = NT, .V = T, .C = C,
                                    .dtype = m->dt, .table_dtype = m->dt};
    SRLM_TRY(OP(m, embedding_backward, sc));
  }
  SRLM_TRY(grads_final(m, m->off_final_norm));

  attn_src src = {.B = m->B, .cu = m->tb.cu.p};
  for (int l = (int)m->L - 1; l >= 0; l--) {
    if (m->recompute) SRLM_TRY(srlm_model_layer_forward(m, l, &m->acts[l], &m->scr, T, m->tb.pos.p, &src));
    SRLM_TRY(layer_backward(m, l, &m->acts[l], &m->scr, &d, T));
    if (m->final_fn) SRLM_TRY(grads_final(m, layer_start(m, l)));
  }
  srlm_embedding_bwd_params e = {.dtable = m->grads + m->off_embed, .dout = d.dres, .ids = m->tb.tokens.p, .N = T,
                                 .V = m->V, .C = C, .dtype = m->dt, .table_dtype = SRLM_F32};
  SRLM_TRY(OP(m, embedding_backward, e));
  return grads_final(m, 0);
}
