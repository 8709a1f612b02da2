/* head: the LM head, forward and backward in one place. Log-probs of the targets and
 * their backward are the backend's fused ops (lmhead_forward / lmhead_backward: chunk
 * GEMMs with an online log-sum-exp, so the (T x V) logits never exist); full logits of
 * a few chosen rows (evaluation, the judge's score distribution) come from the final
 * norm and one GEMM per chunk of rows, copied to the host; decoding samples each chunk
 * with the backend's sample op instead, so its logits never leave the backend. */
#include <stdio.h>
#include <stdlib.h>

#include "model_internal.h"

/* Kept logits (backend.h lmhead's logits). The backward recomputes a chunk's logits with a
 * GEMM of 2 N V C flops unless the training forward kept them: a quarter of the head's
 * training work (a tenth of a Qwen3-0.6B step at 256 tokens) for N V floats of memory. On
 * host memory the model keeps them up to SRLM_HEAD_KEEP_MB (default below; 0: never); on a
 * device, where memory is what limits the batch and a GEMM is cheap, it never does. The bits
 * are the same either way. */
#define HEAD_KEEP_MB_DEFAULT 512
static size_t head_keep_cap(const srlm_model *m) {
  if (!m->be->host_memory) return 0;
  static long long mb = -2;
  if (mb == -2) {
    const char *e = getenv("SRLM_HEAD_KEEP_MB");
    char *end = NULL;
    mb = e && *e ? strtoll(e, &end, 10) : HEAD_KEEP_MB_DEFAULT;
    if (e && *e && (*end || mb < 0)) {
      fprintf(stderr, "srlm: SRLM_HEAD_KEEP_MB=%s is not a number of MiB >= 0; using %d\n", e, HEAD_KEEP_MB_DEFAULT);
      mb = HEAD_KEEP_MB_DEFAULT;
    }
  }
  return (size_t)mb << 20;
}

srlm_status srlm_model_head_forward(srlm_model *m, const void *xf, const int32_t *targets, int64_t NT, float *logp,
                                    float *lse, int train) {
  if (train) m->head_kept = 0;
  if (NT == 0) return SRLM_OK;
  srlm_lmhead_params p = {.logp = logp, .lse = lse, .x = xf, .w = srlm_model_w(m, m->off_lm_head), .targets = targets,
                          .N = NT, .C = m->C, .V = m->V, .dtype = m->dt};
  const size_t keep = (size_t)NT * (size_t)m->V * sizeof(float);
  if (train && keep <= head_keep_cap(m)) {
    SRLM_TRY(srlm_model_dbuf_reserve(m, &m->head_keep_buf, keep));
    p.logits = m->head_keep_buf.p;
  }
  SRLM_TRY(OP(m, lmhead_forward, p));
  m->head_kept = p.logits != NULL;
  return SRLM_OK;
}

srlm_status srlm_model_head_backward(srlm_model *m, const void *xf, const int32_t *targets, const float *lse,
                                     const float *dlogp, int64_t NT, void *dxf) {
  if (NT == 0) return SRLM_OK;
  srlm_lmhead_bwd_params p = {.dx = dxf, .dw = m->grads + m->off_lm_head, .x = xf, .w = srlm_model_w(m, m->off_lm_head),
                              .lse = lse, .dlogp = dlogp, .targets = targets, .N = NT, .C = m->C, .V = m->V,
                              .dtype = m->dt, .logits = m->head_kept ? m->head_keep_buf.p : NULL};
  m->head_kept = 0; /* the backward writes its gradient over them */
  return OP(m, lmhead_backward, p);
}

/* Row r's logits of ids (n_ids) from a chunk of logits (rows of V, backend memory) into
 * out (host): one copy of the span the ids cover when it is short (a score's digits are
 * neighbours in a vocabulary), else one copy per id. */
static srlm_status copy_id_logits(srlm_model *m, const float *chunk, int64_t r, const int32_t *ids, int n_ids,
                                  float *out) {
  enum { SPAN_MAX = 256 };
  int32_t lo = ids[0], hi = ids[0];
  for (int k = 1; k < n_ids; k++) lo = ids[k] < lo ? ids[k] : lo, hi = ids[k] > hi ? ids[k] : hi;
  const float *row = chunk + r * m->V;
  if (hi - lo < SPAN_MAX) {
    float span[SPAN_MAX];
    SRLM_TRY(srlm_backend_copy_d2h(m->be, span, row + lo, (size_t)(hi - lo + 1) * sizeof(float)));
    for (int k = 0; k < n_ids; k++) out[k] = span[ids[k] - lo];
    return SRLM_OK;
  }
  for (int k = 0; k < n_ids; k++) SRLM_TRY(srlm_backend_copy_d2h(m->be, &out[k], row + ids[k], sizeof(float)));
  return SRLM_OK;
}

/* The LM head of the given rows of x (T, C), a chunk of rows at a time: final norm, one
 * GEMM, and the chunk's logits (fp32) copied to the host (logits) or sampled on the
 * backend (sp: its pointers are for all n rows; logits, n and V are set per chunk; the
 * logits of ids, n_ids of them, copied to id_logits (n, n_ids) first). */
static srlm_status head_rows(srlm_model *m, const void *x, int64_t T, const int32_t *rows_host, int64_t n,
                             float *logits, const srlm_sample_params *sp, const int32_t *ids, int n_ids,
                             float *id_logits) {
  if (n == 0) return SRLM_OK;
  int64_t RC = ((int64_t)1 << 22) / m->V; /* rows of logits at a time: ~16 MB */
  if (RC < 1) RC = 1;
  if (RC > n) RC = n;
  size_t bytes = 0;
  srlm_model_carve(NULL, &bytes, n * m->C, m->esz);
  srlm_model_carve(NULL, &bytes, RC * m->V, sizeof(float));
  SRLM_TRY(srlm_model_upload_i32(m, &m->ib.rows, rows_host, n));
  SRLM_TRY(srlm_model_dbuf_reserve(m, &m->head_buf, bytes));
  char *cur = m->head_buf.p;
  size_t unused = 0;
  void *xr = srlm_model_carve(&cur, &unused, n * m->C, m->esz);                /* (n, C) */
  float *chunk = srlm_model_carve(&cur, &unused, RC * m->V, sizeof(float));    /* (RC, V) */
  SRLM_TRY(srlm_model_gather_rows(m, xr, x, T, m->ib.rows.p, n));
  SRLM_TRY(srlm_model_rmsnorm(m, xr, NULL, xr, m->off_final_norm, n, m->C));
  for (int64_t r0 = 0; r0 < n; r0 += RC) {
    const int64_t rc = n - r0 < RC ? n - r0 : RC;
    srlm_matmul_params p = {.c = chunk, .a = srlm_model_el(m, xr, r0 * m->C), .b = srlm_model_w(m, m->off_lm_head),
                            .M = rc, .N = m->V, .K = m->C, .trans_b = 1, .dtype = m->dt, .c_dtype = SRLM_F32,
                            .b_version = m->decoding ? m->wversion : 0};
    SRLM_TRY(OP(m, matmul, p));
    if (logits) {
      SRLM_TRY(srlm_backend_copy_d2h(m->be, logits + r0 * m->V, chunk, (size_t)(rc * m->V) * sizeof(float)));
      continue;
    }
    for (int64_t r = 0; r < rc && n_ids > 0; r++)
      SRLM_TRY(copy_id_logits(m, chunk, r, ids, n_ids, id_logits + (r0 + r) * n_ids));
    srlm_sample_params c = *sp;
    c.token += r0;
    c.logprob += r0;
    if (c.sample_logprob) c.sample_logprob += r0;
    c.logits = chunk;
    c.seq_id += r0;
    c.step += r0;
    c.n = rc;
    c.V = m->V;
    const srlm_status st = OP(m, sample, c);
    if (st != SRLM_OK) return r0 ? srlm_error_context(st, "sampled rows from %lld on", (long long)r0) : st;
  }
  return SRLM_OK;
}

srlm_status srlm_model_head_logits(srlm_model *m, const void *x, int64_t T, const int32_t *rows_host, int64_t n,
                                   float *logits) {
  return head_rows(m, x, T, rows_host, n, logits, NULL, NULL, 0, NULL);
}

srlm_status srlm_model_head_sample(srlm_model *m, const void *x, int64_t T, const int32_t *rows_host, int64_t n,
                                   srlm_sample_params sp, const int32_t *ids, int n_ids, float *id_logits) {
  return head_rows(m, x, T, rows_host, n, NULL, &sp, ids, n_ids, id_logits);
}
