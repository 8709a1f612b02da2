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
 * The LM head is the backend's fused log-prob op (head.c): the (T x V) logits never
 * exist. Only rows with a target go through the final norm and the head. Weights and
 * activations are in the model's compute dtype; statistics are fp32.
 *
 * Memory: inference shares one set of layer activations for all layers (the residual
 * stream is updated in place); forward_train keeps every layer's (or, with recompute,
 * only every layer's input) for srlm_model_backward (backward.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

/* ---- memory layout -------------------------------------------------------------------- */

/* a dtype tensor / an fp32 tensor of n elements */
#define carve_x(cur, total, n) srlm_model_carve((cur), (total), (n), m->esz)
#define carve_f(cur, total, n) ((float *)srlm_model_carve((cur), (total), (n), sizeof(float)))

size_t srlm_model_carve_acts(const srlm_model *m, int64_t T, int full, char **cur, layer_acts *a) {
  size_t total = 0;
  layer_acts z;
  memset(&z, 0, sizeof z);
  z.x_in = carve_x(cur, &total, T * m->C);
  if (full) {
    z.rstd1 = carve_f(cur, &total, T);
    z.q = carve_x(cur, &total, T * m->Q);
    z.k = carve_x(cur, &total, T * m->KV);
    z.v = carve_x(cur, &total, T * m->KV);
    if (m->cfg.qk_norm) {
      z.q_raw = carve_x(cur, &total, T * m->Q);
      z.k_raw = carve_x(cur, &total, T * m->KV);
      z.rstd_q = carve_f(cur, &total, T * m->NH);
      z.rstd_k = carve_f(cur, &total, T * m->NKV);
    }
    z.att = carve_x(cur, &total, T * m->Q);
    z.lse = carve_f(cur, &total, T * m->NH);
    z.x_mid = carve_x(cur, &total, T * m->C);
    z.rstd2 = carve_f(cur, &total, T);
    z.gate = carve_x(cur, &total, T * m->FF);
    z.up = carve_x(cur, &total, T * m->FF);
    if (m->keep_inputs) {
      z.xn1 = carve_x(cur, &total, T * m->C);
      z.xn2 = carve_x(cur, &total, T * m->C);
      z.h = carve_x(cur, &total, T * m->FF);
    }
  }
  if (a) *a = z;
  return total;
}

/* Inference: one residual stream updated in place, no saved statistics. */
static size_t carve_infer_acts(const srlm_model *m, int64_t T, char **cur, layer_acts *a) {
  size_t total = 0;
  memset(a, 0, sizeof *a);
  a->x_in = a->x_mid = a->x_out = carve_x(cur, &total, T * m->C);
  a->q = carve_x(cur, &total, T * m->Q);
  a->k = carve_x(cur, &total, T * m->KV);
  a->v = carve_x(cur, &total, T * m->KV);
  a->att = carve_x(cur, &total, T * m->Q);
  a->gate = carve_x(cur, &total, T * m->FF);
  a->up = carve_x(cur, &total, T * m->FF);
  return total;
}

size_t srlm_model_carve_scratch(const srlm_model *m, int64_t T, char **cur, model_scratch *s) {
  size_t total = 0;
  model_scratch z;
  z.xn = carve_x(cur, &total, T * m->C);
  z.tmp = carve_x(cur, &total, T * m->C);
  z.h = carve_x(cur, &total, T * m->FF);
  if (s) *s = z;
  return total;
}

/* ---- one layer ------------------------------------------------------------------------------ */

srlm_status srlm_model_linear(srlm_model *m, void *y, const void *x, int64_t T, size_t w, size_t bias, int64_t out,
                              int64_t in) {
  srlm_matmul_params p = {.c = y, .a = x, .b = srlm_model_w(m, w),
                          .bias = bias == SRLM_NO_TENSOR ? NULL : srlm_model_w(m, bias), .M = T, .N = out, .K = in,
                          .trans_b = 1, .dtype = m->dt, .c_dtype = m->dt, .b_version = m->decoding ? m->wversion : 0};
  return OP(m, matmul, p);
}

srlm_status srlm_model_rmsnorm(srlm_model *m, void *out, float *rstd, const void *x, size_t w, int64_t N, int64_t C) {
  srlm_rmsnorm_params p = {.out = out, .rstd = rstd, .x = x, .w = srlm_model_w(m, w), .N = N, .C = C, .eps = m->eps,
                           .dtype = m->dt};
  return OP(m, rmsnorm_forward, p);
}

static srlm_status add(srlm_model *m, void *out, const void *a, const void *b, int64_t n) {
  srlm_add_params p = {.out = out, .a = a, .b = b, .n = n, .dtype = m->dt};
  return OP(m, add, p);
}

/* Appends this step's keys and values to each sequence's cache slot. */
static srlm_status kv_append(srlm_model *m, int l, const attn_src *src, const void *k, const void *v) {
  srlm_kv_append_params p = {.k_cache = src->kv->k[l], .v_cache = src->kv->v[l], .k = k, .v = v,
                             .slot = src->slot_dev, .cu_q = src->cu, .kv_len = src->kv_len_dev, .n = src->n,
                             .NQ = src->NQ, .NKV = m->NKV, .HS = m->HS, .max_slots = src->kv->max_slots,
                             .max_len = src->kv->max_len, .dtype = m->dt};
  return OP(m, kv_append, p);
}

srlm_status srlm_model_layer_forward(srlm_model *m, int l, const layer_acts *a, const model_scratch *s, int64_t T,
                                     const int32_t *pos, const attn_src *src) {
  const layer_offsets *lo = &m->layers[l];
  const float scale = 1.0f / sqrtf((float)m->HS);

  /* attention block */
  void *xn1 = a->xn1 ? a->xn1 : s->xn;
  SRLM_TRY(srlm_model_rmsnorm(m, xn1, a->rstd1, a->x_in, lo->attn_norm, T, m->C));
  void *q = a->q_raw ? a->q_raw : a->q, *k = a->k_raw ? a->k_raw : a->k;
  SRLM_TRY(srlm_model_linear(m, q, xn1, T, lo->q, lo->q_bias, m->Q, m->C));
  SRLM_TRY(srlm_model_linear(m, k, xn1, T, lo->k, lo->k_bias, m->KV, m->C));
  SRLM_TRY(srlm_model_linear(m, a->v, xn1, T, lo->v, lo->v_bias, m->KV, m->C));
  if (m->cfg.qk_norm) {
    SRLM_TRY(srlm_model_rmsnorm(m, a->q, a->rstd_q, q, lo->q_norm, T * m->NH, m->HS));
    SRLM_TRY(srlm_model_rmsnorm(m, a->k, a->rstd_k, k, lo->k_norm, T * m->NKV, m->HS));
  }
  srlm_rope_params rq = {.x = a->q, .pos = pos, .inv_freq = m->inv_freq, .N = T, .H = m->NH, .HS = m->HS,
                         .dtype = m->dt};
  srlm_rope_params rk = {.x = a->k, .pos = pos, .inv_freq = m->inv_freq, .N = T, .H = m->NKV, .HS = m->HS,
                         .dtype = m->dt};
  SRLM_TRY(OP(m, rope_forward, rq));
  SRLM_TRY(OP(m, rope_forward, rk));
  if (src->kv) {
    SRLM_TRY(kv_append(m, l, src, a->k, a->v));
    srlm_attention_kv_params p = {.out = a->att, .q = a->q, .k_cache = src->kv->k[l], .v_cache = src->kv->v[l],
                                  .slot = src->slot_dev, .cu_q = src->cu, .kv_len = src->kv_len_dev, .n = src->n,
                                  .NQ = T, .NH = m->NH, .NKV = m->NKV, .HS = m->HS, .max_slots = src->kv->max_slots,
                                  .max_len = src->kv->max_len, .window = lo->window, .scale = scale, .dtype = m->dt};
    SRLM_TRY(OP(m, attention_kv, p));
  } else {
    srlm_attention_params p = {.out = a->att, .lse = a->lse, .q = a->q, .k = a->k, .v = a->v, .cu_seqlens = src->cu,
                               .B = src->B, .T = T, .NH = m->NH, .NKV = m->NKV, .HS = m->HS, .window = lo->window,
                               .scale = scale, .dtype = m->dt};
    SRLM_TRY(OP(m, attention_forward, p));
  }
  SRLM_TRY(srlm_model_linear(m, s->tmp, a->att, T, lo->o, lo->o_bias, m->C, m->Q));
  SRLM_TRY(add(m, a->x_mid, a->x_in, s->tmp, T * m->C));

  /* MLP block */
  void *xn2 = a->xn2 ? a->xn2 : s->xn, *h = a->h ? a->h : s->h;
  SRLM_TRY(srlm_model_rmsnorm(m, xn2, a->rstd2, a->x_mid, lo->mlp_norm, T, m->C));
  SRLM_TRY(srlm_model_linear(m, a->gate, xn2, T, lo->gate, SRLM_NO_TENSOR, m->FF, m->C));
  SRLM_TRY(srlm_model_linear(m, a->up, xn2, T, lo->up, SRLM_NO_TENSOR, m->FF, m->C));
  srlm_swiglu_params sw = {.h = h, .gate = a->gate, .up = a->up, .N = T, .FF = m->FF, .dtype = m->dt};
  SRLM_TRY(OP(m, swiglu_forward, sw));
  SRLM_TRY(srlm_model_linear(m, s->tmp, h, T, lo->down, SRLM_NO_TENSOR, m->C, m->FF));
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

srlm_status srlm_model_gather_rows(srlm_model *m, void *out, const void *x, int64_t T, const int32_t *rows, int64_t n) {
  if (n == 0) return SRLM_OK;
  srlm_embedding_params p = {.out = out, .table = x, .ids = rows, .N = n, .V = T, .C = m->C, .dtype = m->dt};
  return OP(m, embedding_forward, p);
}

/* Log-probs (NT, backend) back to the host at the rows, 0 elsewhere. */
static srlm_status scatter_logp(srlm_model *m, const float *logp_rows, const int32_t *rows, int64_t NT, int64_t T,
                                float *logp) {
  float *tmp = srlm_xmalloc((size_t)(NT > 0 ? NT : 1) * sizeof *tmp);
  srlm_status st = NT > 0 ? srlm_backend_copy_d2h(m->be, tmp, logp_rows, (size_t)NT * sizeof *tmp) : SRLM_OK;
  if (st == SRLM_OK) {
    memset(logp, 0, (size_t)T * sizeof *logp);
    for (int64_t i = 0; i < NT; i++) logp[rows[i]] = tmp[i];
  }
  free(tmp);
  return st;
}

/* ---- inference ------------------------------------------------------------------------------ */

static srlm_status embed(srlm_model *m, void *out, const int32_t *tokens, int64_t T) {
  srlm_embedding_params e = {.out = out, .table = srlm_model_w(m, m->off_embed), .ids = tokens, .N = T, .V = m->V,
                             .C = m->C, .dtype = m->dt};
  return OP(m, embedding_forward, e);
}

/* The layers of an inference forward over an uploaded batch: the residual stream after
 * the last layer is a->x_in. */
static srlm_status infer_layers(srlm_model *m, const srlm_batch *b, const layer_acts *a, const model_scratch *s) {
  SRLM_TRY(embed(m, a->x_in, m->ib.tokens.p, b->T));
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
  size_t hbytes = 0;
  carve_x(NULL, &hbytes, NT * m->C);
  carve_f(NULL, &hbytes, NT);
  srlm_status st = srlm_model_infer_buffers(m, T, &a, &s);
  if (st == SRLM_OK) st = srlm_model_dbuf_reserve(m, &m->head_buf, hbytes);
  if (st != SRLM_OK) {
    free(rows);
    return st;
  }
  char *cur = m->head_buf.p;
  size_t unused = 0;
  void *xf = carve_x(&cur, &unused, NT * m->C); /* (NT, C) */
  float *lp = carve_f(&cur, &unused, NT);       /* (NT) */
  st = infer_layers(m, b, &a, &s);
  if (st == SRLM_OK) st = srlm_model_gather_rows(m, xf, a.x_in, T, m->ib.rows.p, NT);
  if (st == SRLM_OK && NT > 0) st = srlm_model_rmsnorm(m, xf, NULL, xf, m->off_final_norm, NT, m->C);
  if (st == SRLM_OK) st = srlm_model_head_forward(m, xf, m->ib.targets.p, NT, lp, NULL, 0);
  if (st == SRLM_OK) st = scatter_logp(m, lp, rows, NT, T, logp);
  free(rows);
  return st;
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
 * the recompute work set, the final rows); tscratch_buf the forward/backward scratch;
 * bwd_buf the gradients of activations (backward.c). */
static size_t train_act_bytes(const srlm_model *m, int64_t T, int64_t NT) {
  const int full = !m->recompute;
  size_t act = 0;
  for (int l = 0; l < m->L; l++) act += srlm_model_carve_acts(m, T, full, NULL, NULL);
  if (m->recompute) act += srlm_model_carve_acts(m, T, 1, NULL, NULL);
  carve_x(NULL, &act, T * m->C);  /* x_final */
  carve_x(NULL, &act, NT * m->C); /* x_rows */
  carve_f(NULL, &act, NT);        /* rstd_final */
  carve_x(NULL, &act, NT * m->C); /* xf_rows */
  carve_f(NULL, &act, NT);        /* lse_rows */
  carve_f(NULL, &act, NT);        /* logp_rows */
  return act;
}

size_t srlm_model_train_bytes(const srlm_model *m, int64_t T, int64_t NT) {
  if (T == 0) return 0;
  return train_act_bytes(m, T, NT) + srlm_model_carve_scratch(m, T, NULL, NULL) + srlm_model_backward_bytes(m, T, NT);
}

size_t srlm_model_infer_bytes(const srlm_model *m, int64_t T) {
  layer_acts unused;
  return carve_infer_acts(m, T, NULL, &unused) + srlm_model_carve_scratch(m, T, NULL, NULL);
}

static srlm_status plan_train(srlm_model *m, int64_t T, int64_t NT) {
  const int full = !m->recompute;
  const size_t act = train_act_bytes(m, T, NT);
  const size_t scr = srlm_model_carve_scratch(m, T, NULL, NULL);
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
      void *x_in = m->acts[l].x_in;
      m->acts[l] = work;
      m->acts[l].x_in = x_in;
    }
  }
  size_t unused = 0;
  m->x_final = carve_x(&cur, &unused, T * m->C);
  m->x_rows = carve_x(&cur, &unused, NT * m->C);
  m->rstd_final = carve_f(&cur, &unused, NT);
  m->xf_rows = carve_x(&cur, &unused, NT * m->C);
  m->lse_rows = carve_f(&cur, &unused, NT);
  m->logp_rows = carve_f(&cur, &unused, NT);
  for (int l = 0; l < m->L; l++) m->acts[l].x_out = l + 1 < m->L ? m->acts[l + 1].x_in : m->x_final;
  cur = m->tscratch_buf.p;
  srlm_model_carve_scratch(m, T, &cur, &m->scr);
  m->act_bytes = srlm_model_train_bytes(m, T, NT);
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
  SRLM_TRY(plan_train(m, T, NT));
  SRLM_TRY(embed(m, m->acts[0].x_in, m->tb.tokens.p, T));
  attn_src src = {.B = b->B, .cu = m->tb.cu.p};
  for (int l = 0; l < m->L; l++) SRLM_TRY(srlm_model_layer_forward(m, l, &m->acts[l], &m->scr, T, m->tb.pos.p, &src));
  SRLM_TRY(srlm_model_gather_rows(m, m->x_rows, m->x_final, T, m->tb.rows.p, NT));
  if (NT > 0) SRLM_TRY(srlm_model_rmsnorm(m, m->xf_rows, m->rstd_final, m->x_rows, m->off_final_norm, NT, m->C));
  SRLM_TRY(srlm_model_head_forward(m, m->xf_rows, m->tb.targets.p, NT, m->logp_rows, m->lse_rows, 1));
  if (m->head_kept) m->act_bytes += (size_t)NT * (size_t)m->V * sizeof(float);
  SRLM_TRY(scatter_logp(m, m->logp_rows, rows, NT, T, logp));
  m->trained = 1;
  return SRLM_OK;
}
