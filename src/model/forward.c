/* forward: the transformer's forward pass over a packed batch, top to bottom:
 *
 *   x = embed[tokens]                                     (T, C)
 *   for each layer:
 *     xn = rmsnorm(x) ; q, k, v = xn Wq^T (+bq), xn Wk^T (+bk), xn Wv^T (+bv)
 *     q, k = rmsnorm per head (qwen3) ; q, k = rope(q, k)
 *     x = x + attention(q, k, v) Wo^T (+bo)               causal, GQA, sliding window
 *     xn = rmsnorm(x) ; x = x + (silu(xn Wg^T) * xn Wu^T) Wd^T
 *   logp[t] = log softmax(rmsnorm(x[t]) Wlm^T)[target[t]]  for rows with a target
 *
 * The LM head runs over chunks of rows (TC) and vocabulary (VC): logits of one chunk at a
 * time, folded into a running log-sum-exp (backend lse_chunk), so the (T x V) logits
 * never exist. Only rows with a target go through the final norm and the head.
 *
 * Memory: inference shares one set of layer activations for all layers (the residual
 * stream is updated in place); forward_train keeps every layer's (or, with recompute,
 * only every layer's input) for srlm_model_backward (backward.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

/* ---- memory layout -------------------------------------------------------------------- */

#define carve srlm_model_carve

size_t srlm_model_carve_acts(const srlm_model *m, int64_t T, int full, char **cur, layer_acts *a) {
  size_t total = 0;
  layer_acts z;
  memset(&z, 0, sizeof z);
  z.x_in = carve(cur, &total, T * m->C);
  if (full) {
    z.rstd1 = carve(cur, &total, T);
    z.q = carve(cur, &total, T * m->Q);
    z.k = carve(cur, &total, T * m->KV);
    z.v = carve(cur, &total, T * m->KV);
    if (m->cfg.qk_norm) {
      z.q_raw = carve(cur, &total, T * m->Q);
      z.k_raw = carve(cur, &total, T * m->KV);
      z.rstd_q = carve(cur, &total, T * m->NH);
      z.rstd_k = carve(cur, &total, T * m->NKV);
    }
    z.att = carve(cur, &total, T * m->Q);
    z.lse = carve(cur, &total, T * m->NH);
    z.x_mid = carve(cur, &total, T * m->C);
    z.rstd2 = carve(cur, &total, T);
    z.gate = carve(cur, &total, T * m->FF);
    z.up = carve(cur, &total, T * m->FF);
  }
  if (a) *a = z;
  return total;
}

/* Inference: one residual stream updated in place, no saved statistics. */
static size_t carve_infer_acts(const srlm_model *m, int64_t T, char **cur, layer_acts *a) {
  size_t total = 0;
  memset(a, 0, sizeof *a);
  a->x_in = a->x_mid = a->x_out = carve(cur, &total, T * m->C);
  a->q = carve(cur, &total, T * m->Q);
  a->k = carve(cur, &total, T * m->KV);
  a->v = carve(cur, &total, T * m->KV);
  a->att = carve(cur, &total, T * m->Q);
  a->gate = carve(cur, &total, T * m->FF);
  a->up = carve(cur, &total, T * m->FF);
  return total;
}

size_t srlm_model_carve_scratch(const srlm_model *m, int64_t T, char **cur, model_scratch *s) {
  size_t total = 0;
  model_scratch z;
  z.xn = carve(cur, &total, T * m->C);
  z.tmp = carve(cur, &total, T * m->C);
  z.h = carve(cur, &total, T * m->FF);
  if (s) *s = z;
  return total;
}

/* ---- the LM head ------------------------------------------------------------------------ */

/* Chunk sizes: VC ids (a multiple of 64, so chunked log-probs equal whole-row ones) and TC
 * rows, about 4M floats of logits at a time. */
static void head_chunks(const srlm_model *m, int64_t NT, int64_t *TC, int64_t *VC) {
  int64_t vc = m->V <= 8192 ? m->V : 8192;
  int64_t tc = ((int64_t)1 << 22) / vc;
  if (tc < 16) tc = 16;
  if (tc > NT) tc = NT > 0 ? NT : 1;
  *TC = tc;
  *VC = vc;
}

typedef struct head_bufs {
  float *chunk;     /* (TC, VC) */
  float *m, *s, *zt; /* (NT) */
  float *logp;      /* (NT) */
} head_bufs;

static size_t carve_head(const srlm_model *m, int64_t NT, char **cur, head_bufs *h) {
  size_t total = 0;
  int64_t TC, VC;
  head_chunks(m, NT, &TC, &VC);
  head_bufs z;
  z.chunk = carve(cur, &total, TC * VC);
  z.m = carve(cur, &total, NT);
  z.s = carve(cur, &total, NT);
  z.zt = carve(cur, &total, NT);
  z.logp = carve(cur, &total, NT);
  if (h) *h = z;
  return total;
}

/* logits (tc, vc) of rows x (tc, C) against lm_head ids [v0, v0 + vc). */
static srlm_status head_chunk_logits(srlm_model *m, float *chunk, const float *x, int64_t tc, int64_t v0, int64_t vc) {
  srlm_matmul_params p = {.c = chunk, .a = x, .b = m->params + m->off_lm_head + v0 * m->C, .M = tc, .N = vc, .K = m->C,
                          .trans_b = 1};
  return OP(m, matmul, p);
}

/* logp and lse (NT) of the targets (NT, backend) of the final-normed rows xf (NT, C). */
static srlm_status head_logprobs(srlm_model *m, const float *xf, const int32_t *targets, int64_t NT, const head_bufs *h,
                                 float *lse) {
  int64_t TC, VC;
  head_chunks(m, NT, &TC, &VC);
  for (int64_t t0 = 0; t0 < NT; t0 += TC) {
    const int64_t tc = NT - t0 < TC ? NT - t0 : TC;
    for (int64_t v0 = 0; v0 < m->V; v0 += VC) {
      const int64_t vc = m->V - v0 < VC ? m->V - v0 : VC;
      SRLM_TRY(head_chunk_logits(m, h->chunk, xf + t0 * m->C, tc, v0, vc));
      srlm_lse_chunk_params p = {.m = h->m + t0, .s = h->s + t0, .zt = h->zt + t0, .logits = h->chunk,
                                 .targets = targets + t0, .N = tc, .Vc = vc, .v0 = v0, .V = m->V, .first = v0 == 0};
      SRLM_TRY(OP(m, lse_chunk, p));
    }
  }
  if (NT == 0) return SRLM_OK;
  srlm_lse_finish_params f = {.logp = h->logp, .lse = lse, .m = h->m, .s = h->s, .zt = h->zt, .targets = targets, .N = NT};
  return OP(m, lse_finish, f);
}

/* Backward of the head from dlogp (NT): dxf (NT, C) overwritten, lm_head gradient
 * accumulated. Recomputes each chunk's logits. */
srlm_status srlm_model_head_backward(srlm_model *m, const float *xf, const int32_t *targets, const float *lse,
                                     const float *dlogp, int64_t NT, float *dxf, float *chunk) {
  int64_t TC, VC;
  head_chunks(m, NT, &TC, &VC);
  float *g_head = m->grads + m->off_lm_head;
  const float *w_head = m->params + m->off_lm_head;
  for (int64_t t0 = 0; t0 < NT; t0 += TC) {
    const int64_t tc = NT - t0 < TC ? NT - t0 : TC;
    for (int64_t v0 = 0; v0 < m->V; v0 += VC) {
      const int64_t vc = m->V - v0 < VC ? m->V - v0 : VC;
      SRLM_TRY(head_chunk_logits(m, chunk, xf + t0 * m->C, tc, v0, vc));
      srlm_logprob_chunk_bwd_params b = {.dlogits = chunk, .logits = chunk, .lse = lse + t0, .dlogp = dlogp + t0,
                                         .targets = targets + t0, .N = tc, .Vc = vc, .v0 = v0, .V = m->V};
      SRLM_TRY(OP(m, logprob_chunk_backward, b));
      srlm_matmul_params dx = {.c = dxf + t0 * m->C, .a = chunk, .b = w_head + v0 * m->C, .M = tc, .N = m->C, .K = vc,
                               .accumulate = v0 > 0};
      SRLM_TRY(OP(m, matmul, dx));
      srlm_matmul_params dw = {.c = g_head + v0 * m->C, .a = chunk, .b = xf + t0 * m->C, .M = vc, .N = m->C, .K = tc,
                               .trans_a = 1, .accumulate = 1};
      SRLM_TRY(OP(m, matmul, dw));
    }
  }
  return SRLM_OK;
}

/* ---- one layer ------------------------------------------------------------------------------ */

srlm_status srlm_model_linear(srlm_model *m, float *y, const float *x, int64_t T, size_t w, size_t bias, int64_t out,
                              int64_t in) {
  srlm_matmul_params p = {.c = y, .a = x, .b = m->params + w, .bias = bias == SRLM_NO_TENSOR ? NULL : m->params + bias,
                          .M = T, .N = out, .K = in, .trans_b = 1};
  return OP(m, matmul, p);
}

static srlm_status rmsnorm(srlm_model *m, float *out, float *rstd, const float *x, size_t w, int64_t N, int64_t C) {
  srlm_rmsnorm_params p = {.out = out, .rstd = rstd, .x = x, .w = m->params + w, .N = N, .C = C, .eps = m->eps};
  return OP(m, rmsnorm_forward, p);
}

static srlm_status add(srlm_model *m, float *out, const float *a, const float *b, int64_t n) {
  srlm_add_params p = {.out = out, .a = a, .b = b, .n = n};
  return OP(m, add, p);
}

/* Appends this step's keys and values to each sequence's cache slot. */
static srlm_status kv_append(srlm_model *m, int l, const attn_src *src, const float *k, const float *v) {
  srlm_kv_cache *kv = src->kv;
  const size_t row = (size_t)m->KV * sizeof(float);
  for (int i = 0; i < src->n; i++) {
    const int64_t n_new = src->cu_host[i + 1] - src->cu_host[i];
    const int64_t dst = ((int64_t)src->slots_host[i] * kv->max_len + src->kv_len0_host[i]) * m->KV;
    SRLM_TRY(m->be->copy_d2d(kv->k[l] + dst, k + src->cu_host[i] * m->KV, (size_t)n_new * row));
    SRLM_TRY(m->be->copy_d2d(kv->v[l] + dst, v + src->cu_host[i] * m->KV, (size_t)n_new * row));
  }
  return SRLM_OK;
}

srlm_status srlm_model_layer_forward(srlm_model *m, int l, const layer_acts *a, const model_scratch *s, int64_t T,
                                     const int32_t *pos, const attn_src *src) {
  const layer_offsets *lo = &m->layers[l];
  const float scale = 1.0f / sqrtf((float)m->HS);

  /* attention block */
  SRLM_TRY(rmsnorm(m, s->xn, a->rstd1, a->x_in, lo->attn_norm, T, m->C));
  float *q = a->q_raw ? a->q_raw : a->q, *k = a->k_raw ? a->k_raw : a->k;
  SRLM_TRY(srlm_model_linear(m, q, s->xn, T, lo->q, lo->q_bias, m->Q, m->C));
  SRLM_TRY(srlm_model_linear(m, k, s->xn, T, lo->k, lo->k_bias, m->KV, m->C));
  SRLM_TRY(srlm_model_linear(m, a->v, s->xn, T, lo->v, lo->v_bias, m->KV, m->C));
  if (m->cfg.qk_norm) {
    SRLM_TRY(rmsnorm(m, a->q, a->rstd_q, q, lo->q_norm, T * m->NH, m->HS));
    SRLM_TRY(rmsnorm(m, a->k, a->rstd_k, k, lo->k_norm, T * m->NKV, m->HS));
  }
  srlm_rope_params rq = {.x = a->q, .pos = pos, .inv_freq = m->inv_freq, .N = T, .H = m->NH, .HS = m->HS};
  srlm_rope_params rk = {.x = a->k, .pos = pos, .inv_freq = m->inv_freq, .N = T, .H = m->NKV, .HS = m->HS};
  SRLM_TRY(OP(m, rope_forward, rq));
  SRLM_TRY(OP(m, rope_forward, rk));
  if (src->kv) {
    SRLM_TRY(kv_append(m, l, src, a->k, a->v));
    srlm_attention_kv_params p = {.out = a->att, .q = a->q, .k_cache = src->kv->k[l], .v_cache = src->kv->v[l],
                                  .slot = src->slot_dev, .cu_q = src->cu, .kv_len = src->kv_len_dev, .n = src->n,
                                  .NQ = T, .NH = m->NH, .NKV = m->NKV, .HS = m->HS, .max_slots = src->kv->max_slots,
                                  .max_len = src->kv->max_len, .window = lo->window, .scale = scale};
    SRLM_TRY(OP(m, attention_kv, p));
  } else {
    srlm_attention_params p = {.out = a->att, .lse = a->lse, .q = a->q, .k = a->k, .v = a->v, .cu_seqlens = src->cu,
                               .B = src->B, .T = T, .NH = m->NH, .NKV = m->NKV, .HS = m->HS, .window = lo->window,
                               .scale = scale};
    SRLM_TRY(OP(m, attention_forward, p));
  }
  SRLM_TRY(srlm_model_linear(m, s->tmp, a->att, T, lo->o, lo->o_bias, m->C, m->Q));
  SRLM_TRY(add(m, a->x_mid, a->x_in, s->tmp, T * m->C));

  /* MLP block */
  SRLM_TRY(rmsnorm(m, s->xn, a->rstd2, a->x_mid, lo->mlp_norm, T, m->C));
  SRLM_TRY(srlm_model_linear(m, a->gate, s->xn, T, lo->gate, SRLM_NO_TENSOR, m->FF, m->C));
  SRLM_TRY(srlm_model_linear(m, a->up, s->xn, T, lo->up, SRLM_NO_TENSOR, m->FF, m->C));
  srlm_swiglu_params sw = {.h = s->h, .gate = a->gate, .up = a->up, .N = T, .FF = m->FF};
  SRLM_TRY(OP(m, swiglu_forward, sw));
  SRLM_TRY(srlm_model_linear(m, s->tmp, s->h, T, lo->down, SRLM_NO_TENSOR, m->C, m->FF));
  return add(m, a->x_out, a->x_mid, s->tmp, T * m->C);
}

/* ---- batches ----------------------------------------------------------------------------- */

static srlm_status check_batch(const srlm_model *m, const srlm_batch *b, int need_targets) {
  const char *where = "model batch";
  if (b->B < 0) return srlm_error(SRLM_ERR_RANGE, where, "B = %d sequences is negative", b->B);
  if (b->T < 0 || b->T > INT32_MAX) return srlm_error(SRLM_ERR_RANGE, where, "T = %lld tokens out of range", (long long)b->T);
  if (!b->cu_seqlens || (b->T > 0 && !b->tokens) || (need_targets && b->T > 0 && !b->targets))
    return srlm_error(SRLM_ERR_INTERNAL, where, "NULL cu_seqlens, tokens or targets");
  if (b->cu_seqlens[0] != 0) return srlm_error(SRLM_ERR_RANGE, where, "cu_seqlens[0] = %d, expected 0", (int)b->cu_seqlens[0]);
  for (int i = 0; i < b->B; i++)
    if (b->cu_seqlens[i + 1] < b->cu_seqlens[i])
      return srlm_error(SRLM_ERR_RANGE, where, "cu_seqlens decreases at sequence %d", i);
  if (b->cu_seqlens[b->B] != b->T)
    return srlm_error(SRLM_ERR_RANGE, where, "cu_seqlens[%d] = %d but T = %lld", b->B, (int)b->cu_seqlens[b->B],
                      (long long)b->T);
  for (int64_t t = 0; t < b->T; t++) {
    if (b->tokens[t] < 0 || b->tokens[t] >= m->V)
      return srlm_error(SRLM_ERR_RANGE, where, "token %lld: id %d out of range [0, %lld)", (long long)t, (int)b->tokens[t],
                        (long long)m->V);
    if (need_targets && (b->targets[t] < -1 || b->targets[t] >= m->V))
      return srlm_error(SRLM_ERR_RANGE, where, "token %lld: target id %d out of range [0, %lld) (or -1: none)",
                        (long long)t, (int)b->targets[t], (long long)m->V);
  }
  return SRLM_OK;
}

/* Uploads tokens, positions and cu_seqlens, and the rows that have targets with their
 * targets (rows_host gets the rows, malloc'd; NULL targets: no rows). */
static srlm_status upload_batch(srlm_model *m, batch_bufs *bb, const srlm_batch *b, int32_t **rows_host, int64_t *NT) {
  int32_t *pos = srlm_xmalloc((size_t)(b->T > 0 ? b->T : 1) * sizeof *pos);
  int32_t *rows = srlm_xmalloc((size_t)(b->T > 0 ? b->T : 1) * sizeof *rows);
  int32_t *tg = srlm_xmalloc((size_t)(b->T > 0 ? b->T : 1) * sizeof *tg);
  int64_t nt = 0;
  for (int i = 0; i < b->B; i++)
    for (int32_t t = b->cu_seqlens[i]; t < b->cu_seqlens[i + 1]; t++) {
      pos[t] = t - b->cu_seqlens[i];
      if (b->targets && b->targets[t] >= 0) {
        rows[nt] = t;
        tg[nt++] = b->targets[t];
      }
    }
  srlm_status st = srlm_model_upload_i32(m, &bb->tokens, b->tokens, b->T);
  if (st == SRLM_OK) st = srlm_model_upload_i32(m, &bb->pos, pos, b->T);
  if (st == SRLM_OK) st = srlm_model_upload_i32(m, &bb->cu, b->cu_seqlens, b->B + 1);
  if (st == SRLM_OK) st = srlm_model_upload_i32(m, &bb->rows, rows, nt);
  if (st == SRLM_OK) st = srlm_model_upload_i32(m, &bb->targets, tg, nt);
  free(pos);
  free(tg);
  if (st != SRLM_OK) {
    free(rows);
    return st;
  }
  *rows_host = rows;
  *NT = nt;
  return SRLM_OK;
}

/* x_rows (n, C) = x[rows] (rows on the backend, indices into the T rows of x). */
static srlm_status gather_rows(srlm_model *m, float *out, const float *x, int64_t T, const int32_t *rows, int64_t n) {
  if (n == 0) return SRLM_OK;
  srlm_embedding_params p = {.out = out, .table = x, .ids = rows, .N = n, .V = T, .C = m->C};
  return OP(m, embedding_forward, p);
}

/* Log-probs (NT, backend h->logp) back to the host at the rows, 0 elsewhere. */
static srlm_status scatter_logp(srlm_model *m, const head_bufs *h, const int32_t *rows, int64_t NT, int64_t T, float *logp) {
  float *tmp = srlm_xmalloc((size_t)(NT > 0 ? NT : 1) * sizeof *tmp);
  srlm_status st = NT > 0 ? m->be->copy_d2h(tmp, h->logp, (size_t)NT * sizeof *tmp) : SRLM_OK;
  if (st == SRLM_OK) {
    memset(logp, 0, (size_t)T * sizeof *logp);
    for (int64_t i = 0; i < NT; i++) logp[rows[i]] = tmp[i];
  }
  free(tmp);
  return st;
}

/* ---- inference ------------------------------------------------------------------------------ */

/* The layers of an inference forward over an uploaded batch: the residual stream after
 * the last layer is a->x_in. */
static srlm_status infer_layers(srlm_model *m, const srlm_batch *b, const layer_acts *a, const model_scratch *s) {
  srlm_embedding_params e = {.out = a->x_in, .table = m->params + m->off_embed, .ids = m->ib.tokens.p, .N = b->T,
                             .V = m->V, .C = m->C};
  SRLM_TRY(OP(m, embedding_forward, e));
  attn_src src = {.B = b->B, .cu = m->ib.cu.p};
  for (int l = 0; l < m->L; l++) SRLM_TRY(srlm_model_layer_forward(m, l, a, s, b->T, m->ib.pos.p, &src));
  return SRLM_OK;
}

srlm_status srlm_model_infer_buffers(srlm_model *m, int64_t T, layer_acts *a, model_scratch *s) {
  layer_acts unused;
  const size_t bytes = carve_infer_acts(m, T, NULL, &unused) + srlm_model_carve_scratch(m, T, NULL, NULL);
  SRLM_TRY(srlm_model_dbuf_reserve(m, &m->scratch_buf, bytes));
  char *cur = m->scratch_buf.p;
  carve_infer_acts(m, T, &cur, a);
  srlm_model_carve_scratch(m, T, &cur, s);
  return SRLM_OK;
}

srlm_status srlm_model_logprobs(srlm_model *m, const srlm_batch *b, float *logp) {
  SRLM_TRY(check_batch(m, b, 1));
  if (b->T == 0) return SRLM_OK;
  int32_t *rows;
  int64_t NT;
  SRLM_TRY(upload_batch(m, &m->ib, b, &rows, &NT));
  const int64_t T = b->T;
  layer_acts a;
  model_scratch s;
  head_bufs h;
  size_t hbytes = carve_head(m, NT, NULL, NULL);
  carve(NULL, &hbytes, NT * m->C);
  srlm_status st = srlm_model_infer_buffers(m, T, &a, &s);
  if (st == SRLM_OK) st = srlm_model_dbuf_reserve(m, &m->head_buf, hbytes);
  if (st != SRLM_OK) {
    free(rows);
    return st;
  }
  char *cur = m->head_buf.p;
  carve_head(m, NT, &cur, &h);
  size_t unused = 0;
  float *xf = carve(&cur, &unused, NT * m->C); /* (NT, C) */
  st = infer_layers(m, b, &a, &s);
  if (st == SRLM_OK) st = gather_rows(m, xf, a.x_in, T, m->ib.rows.p, NT);
  if (st == SRLM_OK && NT > 0) st = rmsnorm(m, xf, NULL, xf, m->off_final_norm, NT, m->C);
  if (st == SRLM_OK) st = head_logprobs(m, xf, m->ib.targets.p, NT, &h, NULL);
  if (st == SRLM_OK) st = scatter_logp(m, &h, rows, NT, T, logp);
  free(rows);
  return st;
}

srlm_status srlm_model_head_logits(srlm_model *m, const float *x, int64_t T, const int32_t *rows_host, int64_t n,
                                   float *logits) {
  if (n == 0) return SRLM_OK;
  int64_t RC = ((int64_t)1 << 22) / m->V; /* rows of logits at a time: ~16 MB */
  if (RC < 1) RC = 1;
  if (RC > n) RC = n;
  size_t bytes = 0;
  carve(NULL, &bytes, n * m->C);
  carve(NULL, &bytes, RC * m->V);
  SRLM_TRY(srlm_model_upload_i32(m, &m->ib.rows, rows_host, n));
  SRLM_TRY(srlm_model_dbuf_reserve(m, &m->head_buf, bytes));
  char *cur = m->head_buf.p;
  size_t unused = 0;
  float *xr = carve(&cur, &unused, n * m->C), *chunk = carve(&cur, &unused, RC * m->V);
  SRLM_TRY(gather_rows(m, xr, x, T, m->ib.rows.p, n));
  SRLM_TRY(rmsnorm(m, xr, NULL, xr, m->off_final_norm, n, m->C));
  for (int64_t r0 = 0; r0 < n; r0 += RC) {
    const int64_t rc = n - r0 < RC ? n - r0 : RC;
    SRLM_TRY(head_chunk_logits(m, chunk, xr + r0 * m->C, rc, 0, m->V));
    SRLM_TRY(m->be->copy_d2h(logits + r0 * m->V, chunk, (size_t)(rc * m->V) * sizeof(float)));
  }
  return SRLM_OK;
}

srlm_status srlm_model_logits(srlm_model *m, const srlm_batch *b, const int64_t *pos, int64_t n_pos, float *logits) {
  SRLM_TRY(check_batch(m, b, 0));
  for (int64_t i = 0; i < n_pos; i++)
    if (pos[i] < 0 || pos[i] >= b->T)
      return srlm_error(SRLM_ERR_RANGE, "model logits", "position %lld (index %lld) out of range [0, %lld)",
                        (long long)pos[i], (long long)i, (long long)b->T);
  if (n_pos == 0) return SRLM_OK;
  srlm_batch nb = *b;
  nb.targets = NULL;
  int32_t *rows;
  int64_t NT;
  SRLM_TRY(upload_batch(m, &m->ib, &nb, &rows, &NT));
  free(rows);
  const int64_t T = b->T;
  layer_acts a;
  model_scratch s;
  SRLM_TRY(srlm_model_infer_buffers(m, T, &a, &s));
  SRLM_TRY(infer_layers(m, &nb, &a, &s));
  int32_t *r = srlm_xmalloc((size_t)n_pos * sizeof *r);
  for (int64_t i = 0; i < n_pos; i++) r[i] = (int32_t)pos[i];
  srlm_status st = srlm_model_head_logits(m, a.x_in, T, r, n_pos, logits);
  free(r);
  return st;
}

/* ---- training forward -------------------------------------------------------------------------- */

/* Training memory: act_buf holds what backward reads (per-layer activations or inputs,
 * the recompute work set, the final rows); tscratch_buf the forward/backward scratch and
 * the head's logits chunk; bwd_buf the gradients of activations (backward.c). */
static srlm_status plan_train(srlm_model *m, int64_t T, int64_t NT, head_bufs *h) {
  const int full = !m->recompute;
  size_t act = 0;
  for (int l = 0; l < m->L; l++) act += srlm_model_carve_acts(m, T, full, NULL, NULL);
  if (m->recompute) act += srlm_model_carve_acts(m, T, 1, NULL, NULL);
  carve(NULL, &act, T * m->C);  /* x_final */
  carve(NULL, &act, NT * m->C); /* x_rows */
  carve(NULL, &act, NT);        /* rstd_final */
  carve(NULL, &act, NT * m->C); /* xf_rows */
  carve(NULL, &act, NT);        /* lse_rows */
  const size_t scr = srlm_model_carve_scratch(m, T, NULL, NULL) + carve_head(m, NT, NULL, NULL);
  SRLM_TRY(srlm_model_dbuf_reserve(m, &m->act_buf, act));
  SRLM_TRY(srlm_model_dbuf_reserve(m, &m->tscratch_buf, scr));
  free(m->acts);
  m->acts = srlm_xcalloc((size_t)m->L, sizeof *m->acts);
  char *cur = m->act_buf.p;
  for (int l = 0; l < m->L; l++) srlm_model_carve_acts(m, T, full, &cur, &m->acts[l]);
  if (m->recompute) {
    layer_acts work;
    srlm_model_carve_acts(m, T, 1, &cur, &work);
    for (int l = 0; l < m->L; l++) {
      float *x_in = m->acts[l].x_in;
      m->acts[l] = work;
      m->acts[l].x_in = x_in;
    }
  }
  size_t unused = 0;
  m->x_final = carve(&cur, &unused, T * m->C);
  m->x_rows = carve(&cur, &unused, NT * m->C);
  m->rstd_final = carve(&cur, &unused, NT);
  m->xf_rows = carve(&cur, &unused, NT * m->C);
  m->lse_rows = carve(&cur, &unused, NT);
  for (int l = 0; l < m->L; l++) m->acts[l].x_out = l + 1 < m->L ? m->acts[l + 1].x_in : m->x_final;
  cur = m->tscratch_buf.p;
  srlm_model_carve_scratch(m, T, &cur, &m->scr);
  carve_head(m, NT, &cur, h);
  m->chunk = h->chunk;
  m->act_bytes = act + scr + srlm_model_backward_bytes(m, T, NT);
  return SRLM_OK;
}

srlm_status srlm_model_forward_train(srlm_model *m, const srlm_batch *b, float *logp) {
  SRLM_TRY(check_batch(m, b, 1));
  m->trained = 0;
  int32_t *rows;
  int64_t NT;
  SRLM_TRY(upload_batch(m, &m->tb, b, &rows, &NT));
  free(m->rows_host);
  m->rows_host = rows;
  const int64_t T = b->T;
  m->T = T, m->NT = NT, m->B = b->B;
  if (T == 0) {
    m->trained = 1;
    m->act_bytes = 0;
    return SRLM_OK;
  }
  head_bufs h;
  SRLM_TRY(plan_train(m, T, NT, &h));
  srlm_embedding_params e = {.out = m->acts[0].x_in, .table = m->params + m->off_embed, .ids = m->tb.tokens.p, .N = T,
                             .V = m->V, .C = m->C};
  SRLM_TRY(OP(m, embedding_forward, e));
  attn_src src = {.B = b->B, .cu = m->tb.cu.p};
  for (int l = 0; l < m->L; l++) SRLM_TRY(srlm_model_layer_forward(m, l, &m->acts[l], &m->scr, T, m->tb.pos.p, &src));
  SRLM_TRY(gather_rows(m, m->x_rows, m->x_final, T, m->tb.rows.p, NT));
  if (NT > 0) SRLM_TRY(rmsnorm(m, m->xf_rows, m->rstd_final, m->x_rows, m->off_final_norm, NT, m->C));
  SRLM_TRY(head_logprobs(m, m->xf_rows, m->tb.targets.p, NT, &h, m->lse_rows));
  SRLM_TRY(scatter_logp(m, &h, rows, NT, T, logp));
  m->trained = 1;
  return SRLM_OK;
}
