/* backend: the registry of op tables (lookup by name) and the host-side parameter
 * checks every backend runs before it touches memory. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "srlm/backend.h"

#define SRLM_BACKEND_MAX 8

/* Registered tables; the CPU one is always found without registration. */
static const srlm_backend_ops *g_backends[SRLM_BACKEND_MAX];
static int g_nbackends;

srlm_status srlm_backend_register(const srlm_backend_ops *ops) {
  if (!ops || !ops->name || !ops->name[0])
    return srlm_error(SRLM_ERR_INTERNAL, "backend", "register: a table without a name");
  if (ops == srlm_backend_cpu()) return SRLM_OK;
  for (int i = 0; i < g_nbackends; i++) {
    if (g_backends[i] == ops) return SRLM_OK;
    if (strcmp(g_backends[i]->name, ops->name) == 0)
      return srlm_error(SRLM_ERR_INTERNAL, "backend",
                        "register: another backend is already registered as '%s'", ops->name);
  }
  if (strcmp(ops->name, srlm_backend_cpu()->name) == 0)
    return srlm_error(SRLM_ERR_INTERNAL, "backend", "register: the name 'cpu' is taken by the built-in backend");
  if (g_nbackends == SRLM_BACKEND_MAX)
    return srlm_error(SRLM_ERR_INTERNAL, "backend", "register: more than %d backends", SRLM_BACKEND_MAX);
  g_backends[g_nbackends++] = ops;
  return SRLM_OK;
}

srlm_status srlm_backend_find(const char *name, const srlm_backend_ops **out) {
  *out = NULL;
  const srlm_backend_ops *cpu = srlm_backend_cpu();
  if (name && strcmp(name, cpu->name) == 0) {
    *out = cpu;
    return SRLM_OK;
  }
  for (int i = 0; name && i < g_nbackends; i++) {
    if (strcmp(g_backends[i]->name, name) == 0) {
      *out = g_backends[i];
      return SRLM_OK;
    }
  }
  char avail[256];
  size_t n = (size_t)snprintf(avail, sizeof avail, "%s", cpu->name);
  for (int i = 0; i < g_nbackends && n < sizeof avail; i++)
    n += (size_t)snprintf(avail + n, sizeof avail - n, ", %s", g_backends[i]->name);
  if (name && strcmp(name, "cuda") == 0)
    return srlm_error(SRLM_ERR_UNSUPPORTED, "backend",
                      "'cuda' is not available: this program was built without the CUDA "
                      "backend (available: %s); rebuild with -DSRLM_CUDA=ON where nvcc is installed",
                      avail);
  return srlm_error(SRLM_ERR_CONFIG, "backend", "unknown backend '%s' (available: %s)",
                    name ? name : "(null)", avail);
}

/* ---- parameter checks ---------------------------------------------------- */

/* N rows of `cols` elements must be addressable with int64 products and, on devices,
 * with 32-bit row indices in a grid. */
static srlm_status check_dims(const char *where, int64_t N, const char *cname, int64_t cols) {
  if (N < 0) return srlm_error(SRLM_ERR_RANGE, where, "N = %lld rows is negative", (long long)N);
  if (N > INT32_MAX)
    return srlm_error(SRLM_ERR_RANGE, where, "N = %lld rows exceeds %d", (long long)N, INT32_MAX);
  if (cols < 1 || cols > INT32_MAX)
    return srlm_error(SRLM_ERR_RANGE, where, "%s = %lld out of range [1, %d]", cname,
                      (long long)cols, INT32_MAX);
  if (N > 0 && cols > INT64_MAX / 4 / N)
    return srlm_error(SRLM_ERR_RANGE, where, "N x %s = %lld x %lld elements overflows", cname,
                      (long long)N, (long long)cols);
  return SRLM_OK;
}

#define CHECK_PTR(field)                                                                \
  do {                                                                                  \
    if (!p->field) return srlm_error(SRLM_ERR_INTERNAL, where, "%s is NULL", #field);  \
  } while (0)

srlm_status srlm_rmsnorm_params_check(const srlm_rmsnorm_params *p, const char *where) {
  SRLM_TRY(check_dims(where, p->N, "C", p->C));
  CHECK_PTR(out);
  CHECK_PTR(x);
  CHECK_PTR(w);
  if (!(p->eps > 0.0f) || !isfinite(p->eps))
    return srlm_error(SRLM_ERR_RANGE, where, "eps = %g must be finite and > 0", (double)p->eps);
  return SRLM_OK;
}

srlm_status srlm_logprob_params_check(const srlm_logprob_params *p, const char *where) {
  SRLM_TRY(check_dims(where, p->N, "V", p->V));
  CHECK_PTR(logp);
  CHECK_PTR(logits);
  CHECK_PTR(targets);
  return SRLM_OK;
}

srlm_status srlm_logprob_bwd_params_check(const srlm_logprob_bwd_params *p, const char *where) {
  SRLM_TRY(check_dims(where, p->N, "V", p->V));
  CHECK_PTR(dlogits);
  CHECK_PTR(logits);
  CHECK_PTR(lse);
  CHECK_PTR(dlogp);
  CHECK_PTR(targets);
  return SRLM_OK;
}

/* ---- transformer ops ------------------------------------------------------ */

static srlm_status check_nonneg(const char *where, const char *name, int64_t v) {
  if (v < 0 || v > INT32_MAX)
    return srlm_error(SRLM_ERR_RANGE, where, "%s = %lld out of range [0, %d]", name, (long long)v, INT32_MAX);
  return SRLM_OK;
}

static srlm_status check_pos(const char *where, const char *name, int64_t v) {
  if (v < 1 || v > INT32_MAX)
    return srlm_error(SRLM_ERR_RANGE, where, "%s = %lld out of range [1, %d]", name, (long long)v, INT32_MAX);
  return SRLM_OK;
}

srlm_status srlm_matmul_params_check(srlm_matmul_params *p, const char *where) {
  SRLM_TRY(check_nonneg(where, "M", p->M));
  SRLM_TRY(check_nonneg(where, "N", p->N));
  SRLM_TRY(check_nonneg(where, "K", p->K));
  /* the dense strides: rows of op-less A are K long, of transposed A M long, ... */
  int64_t a_cols = p->trans_a ? p->M : p->K, b_cols = p->trans_b ? p->K : p->N;
  if (p->lda == 0) p->lda = a_cols;
  if (p->ldb == 0) p->ldb = b_cols;
  if (p->ldc == 0) p->ldc = p->N;
  if (p->lda < a_cols || p->ldb < b_cols || p->ldc < p->N)
    return srlm_error(SRLM_ERR_RANGE, where, "row strides lda %lld, ldb %lld, ldc %lld below the row lengths %lld, %lld, %lld",
                      (long long)p->lda, (long long)p->ldb, (long long)p->ldc, (long long)a_cols, (long long)b_cols,
                      (long long)p->N);
  if (p->M == 0 || p->N == 0) return SRLM_OK;
  CHECK_PTR(c);
  if (p->K > 0) {
    CHECK_PTR(a);
    CHECK_PTR(b);
  }
  return SRLM_OK;
}

srlm_status srlm_rmsnorm_bwd_params_check(const srlm_rmsnorm_bwd_params *p, const char *where) {
  SRLM_TRY(check_dims(where, p->N, "C", p->C));
  CHECK_PTR(dx);
  CHECK_PTR(dw);
  CHECK_PTR(dy);
  CHECK_PTR(x);
  CHECK_PTR(w);
  CHECK_PTR(rstd);
  return SRLM_OK;
}

srlm_status srlm_rope_params_check(const srlm_rope_params *p, const char *where) {
  SRLM_TRY(check_pos(where, "H", p->H));
  SRLM_TRY(check_dims(where, p->N, "H * HS", p->H * (p->HS > 0 ? p->HS : 1)));
  if (p->HS < 2 || p->HS % 2 != 0)
    return srlm_error(SRLM_ERR_RANGE, where, "head dim HS = %lld must be even and >= 2", (long long)p->HS);
  CHECK_PTR(x);
  CHECK_PTR(pos);
  CHECK_PTR(inv_freq);
  return SRLM_OK;
}

static srlm_status check_heads(const char *where, int64_t NH, int64_t NKV, int64_t HS, float scale, int64_t window) {
  SRLM_TRY(check_pos(where, "NH", NH));
  SRLM_TRY(check_pos(where, "NKV", NKV));
  SRLM_TRY(check_pos(where, "HS", HS));
  if (NH % NKV != 0)
    return srlm_error(SRLM_ERR_RANGE, where, "NH = %lld is not a multiple of NKV = %lld", (long long)NH, (long long)NKV);
  if (NH * HS > INT32_MAX)
    return srlm_error(SRLM_ERR_RANGE, where, "NH x HS = %lld x %lld too large", (long long)NH, (long long)HS);
  if (!(scale > 0.0f) || !isfinite(scale))
    return srlm_error(SRLM_ERR_RANGE, where, "scale = %g must be finite and > 0", (double)scale);
  if (window < 0) return srlm_error(SRLM_ERR_RANGE, where, "window = %lld is negative", (long long)window);
  return SRLM_OK;
}

/* The values of cu_seqlens live in backend memory: backends that can read them check
 * them (the CPU one does), this checks what the host knows. */
static srlm_status check_seqlens(const char *where, const int32_t *cu, int B) {
  if (B < 0) return srlm_error(SRLM_ERR_RANGE, where, "B = %d sequences is negative", B);
  if (!cu) return srlm_error(SRLM_ERR_INTERNAL, where, "cu_seqlens is NULL");
  return SRLM_OK;
}

srlm_status srlm_attention_params_check(const srlm_attention_params *p, const char *where) {
  SRLM_TRY(check_heads(where, p->NH, p->NKV, p->HS, p->scale, p->window));
  SRLM_TRY(check_dims(where, p->T, "NH * HS", p->NH * p->HS));
  SRLM_TRY(check_seqlens(where, p->cu_seqlens, p->B));
  CHECK_PTR(out);
  CHECK_PTR(q);
  CHECK_PTR(k);
  CHECK_PTR(v);
  return SRLM_OK;
}

srlm_status srlm_attention_bwd_params_check(const srlm_attention_bwd_params *p, const char *where) {
  SRLM_TRY(check_heads(where, p->NH, p->NKV, p->HS, p->scale, p->window));
  SRLM_TRY(check_dims(where, p->T, "NH * HS", p->NH * p->HS));
  SRLM_TRY(check_seqlens(where, p->cu_seqlens, p->B));
  CHECK_PTR(dq);
  CHECK_PTR(dk);
  CHECK_PTR(dv);
  CHECK_PTR(dout);
  CHECK_PTR(out);
  CHECK_PTR(lse);
  CHECK_PTR(q);
  CHECK_PTR(k);
  CHECK_PTR(v);
  return SRLM_OK;
}

srlm_status srlm_attention_kv_params_check(const srlm_attention_kv_params *p, const char *where) {
  SRLM_TRY(check_heads(where, p->NH, p->NKV, p->HS, p->scale, p->window));
  SRLM_TRY(check_dims(where, p->NQ, "NH * HS", p->NH * p->HS));
  SRLM_TRY(check_pos(where, "max_slots", p->max_slots));
  SRLM_TRY(check_pos(where, "max_len", p->max_len));
  if (p->n < 0) return srlm_error(SRLM_ERR_RANGE, where, "n = %d sequences is negative", p->n);
  CHECK_PTR(out);
  CHECK_PTR(q);
  CHECK_PTR(k_cache);
  CHECK_PTR(v_cache);
  CHECK_PTR(slot);
  CHECK_PTR(cu_q);
  CHECK_PTR(kv_len);
  return SRLM_OK;
}

srlm_status srlm_swiglu_params_check(const srlm_swiglu_params *p, const char *where) {
  SRLM_TRY(check_dims(where, p->N, "FF", p->FF));
  CHECK_PTR(h);
  CHECK_PTR(gate);
  CHECK_PTR(up);
  return SRLM_OK;
}

srlm_status srlm_swiglu_bwd_params_check(const srlm_swiglu_bwd_params *p, const char *where) {
  SRLM_TRY(check_dims(where, p->N, "FF", p->FF));
  CHECK_PTR(dgate);
  CHECK_PTR(dup);
  CHECK_PTR(dh);
  CHECK_PTR(gate);
  CHECK_PTR(up);
  return SRLM_OK;
}

srlm_status srlm_embedding_params_check(const srlm_embedding_params *p, const char *where) {
  SRLM_TRY(check_dims(where, p->N, "C", p->C));
  SRLM_TRY(check_dims(where, p->V, "C", p->C));
  SRLM_TRY(check_pos(where, "V", p->V));
  CHECK_PTR(out);
  CHECK_PTR(table);
  CHECK_PTR(ids);
  return SRLM_OK;
}

srlm_status srlm_embedding_bwd_params_check(const srlm_embedding_bwd_params *p, const char *where) {
  SRLM_TRY(check_dims(where, p->N, "C", p->C));
  SRLM_TRY(check_dims(where, p->V, "C", p->C));
  SRLM_TRY(check_pos(where, "V", p->V));
  CHECK_PTR(dtable);
  CHECK_PTR(dout);
  CHECK_PTR(ids);
  return SRLM_OK;
}

srlm_status srlm_add_params_check(const srlm_add_params *p, const char *where) {
  if (p->n < 0) return srlm_error(SRLM_ERR_RANGE, where, "n = %lld is negative", (long long)p->n);
  if (p->n == 0) return SRLM_OK;
  CHECK_PTR(out);
  CHECK_PTR(a);
  CHECK_PTR(b);
  return SRLM_OK;
}

srlm_status srlm_colsum_params_check(const srlm_colsum_params *p, const char *where) {
  SRLM_TRY(check_dims(where, p->N, "C", p->C));
  CHECK_PTR(out);
  CHECK_PTR(x);
  return SRLM_OK;
}

static srlm_status check_chunk(const char *where, int64_t N, int64_t Vc, int64_t v0, int64_t V) {
  SRLM_TRY(check_dims(where, N, "Vc", Vc));
  SRLM_TRY(check_pos(where, "V", V));
  if (v0 < 0 || v0 + Vc > V)
    return srlm_error(SRLM_ERR_RANGE, where, "chunk [%lld, %lld) outside the vocabulary [0, %lld)", (long long)v0,
                      (long long)(v0 + Vc), (long long)V);
  return SRLM_OK;
}

srlm_status srlm_lse_chunk_params_check(const srlm_lse_chunk_params *p, const char *where) {
  SRLM_TRY(check_chunk(where, p->N, p->Vc, p->v0, p->V));
  CHECK_PTR(m);
  CHECK_PTR(s);
  CHECK_PTR(zt);
  CHECK_PTR(logits);
  CHECK_PTR(targets);
  return SRLM_OK;
}

srlm_status srlm_lse_finish_params_check(const srlm_lse_finish_params *p, const char *where) {
  if (p->N < 0) return srlm_error(SRLM_ERR_RANGE, where, "N = %lld rows is negative", (long long)p->N);
  CHECK_PTR(logp);
  CHECK_PTR(m);
  CHECK_PTR(s);
  CHECK_PTR(zt);
  CHECK_PTR(targets);
  return SRLM_OK;
}

srlm_status srlm_logprob_chunk_bwd_params_check(const srlm_logprob_chunk_bwd_params *p, const char *where) {
  SRLM_TRY(check_chunk(where, p->N, p->Vc, p->v0, p->V));
  CHECK_PTR(dlogits);
  CHECK_PTR(logits);
  CHECK_PTR(lse);
  CHECK_PTR(dlogp);
  CHECK_PTR(targets);
  return SRLM_OK;
}

const char *srlm_backend_missing_op(const srlm_backend_ops *be) {
#define NEED(op) \
  if (!be->op) return #op
  NEED(matmul);
  NEED(rmsnorm_forward);
  NEED(rmsnorm_backward);
  NEED(rope_forward);
  NEED(rope_backward);
  NEED(attention_forward);
  NEED(attention_backward);
  NEED(attention_kv);
  NEED(swiglu_forward);
  NEED(swiglu_backward);
  NEED(embedding_forward);
  NEED(embedding_backward);
  NEED(add);
  NEED(colsum);
  NEED(lse_chunk);
  NEED(lse_finish);
  NEED(logprob_chunk_backward);
#undef NEED
  return NULL;
}
