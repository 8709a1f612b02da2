/* backend: the registry of op tables (lookup by name), opening and closing instances,
 * the op names of the list, and the host-side parameter checks every backend runs
 * before it touches memory. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/backend.h"
#include "srlm/loss_math.h"

#define SRLM_BACKEND_MAX 8

const char *const srlm_op_names[SRLM_OP_COUNT] = {
#define SRLM_OP_NAME_(op, type) #op,
    SRLM_BACKEND_OPS(SRLM_OP_NAME_)
#undef SRLM_OP_NAME_
};

/* The built-in tables, always compiled: the CPU reference and the CUDA simulator (the CUDA
 * kernels run on the CPU by cuda/sim, part of this library). */
#define SRLM_BACKEND_BUILTIN 2
static const srlm_backend_ops *builtin(int i) {
  return i == 0 ? srlm_backend_cpu_ops() : srlm_backend_cuda_sim_ops();
}

/* Registered tables besides the built-in ones. Registration happens at start-up,
 * before any thread looks a name up. */
static const srlm_backend_ops *g_backends[SRLM_BACKEND_MAX];
static int g_nbackends;

srlm_status srlm_backend_register(const srlm_backend_ops *ops) {
  if (!ops || !ops->name || !ops->name[0])
    return srlm_error(SRLM_ERR_INTERNAL, "backend", "register: a table without a name");
  for (int i = 0; i < SRLM_BACKEND_BUILTIN; i++) {
    if (ops == builtin(i)) return SRLM_OK;
    if (strcmp(ops->name, builtin(i)->name) == 0)
      return srlm_error(SRLM_ERR_INTERNAL, "backend", "register: the name '%s' is taken by a built-in backend",
                        ops->name);
  }
  for (int i = 0; i < g_nbackends; i++) {
    if (g_backends[i] == ops) return SRLM_OK;
    if (strcmp(g_backends[i]->name, ops->name) == 0)
      return srlm_error(SRLM_ERR_INTERNAL, "backend",
                        "register: another backend is already registered as '%s'", ops->name);
  }
  if (g_nbackends == SRLM_BACKEND_MAX)
    return srlm_error(SRLM_ERR_INTERNAL, "backend", "register: more than %d backends", SRLM_BACKEND_MAX);
  g_backends[g_nbackends++] = ops;
  return SRLM_OK;
}

const char *srlm_backend_names(void) {
  static char names[256];
  size_t n = 0;
  for (int i = 0; i < SRLM_BACKEND_BUILTIN + g_nbackends && n < sizeof names; i++)
    n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "",
                          i < SRLM_BACKEND_BUILTIN ? builtin(i)->name : g_backends[i - SRLM_BACKEND_BUILTIN]->name);
  return names;
}

srlm_status srlm_backend_find(const char *name, const srlm_backend_ops **out) {
  *out = NULL;
  for (int i = 0; name && i < SRLM_BACKEND_BUILTIN + g_nbackends; i++) {
    const srlm_backend_ops *ops = i < SRLM_BACKEND_BUILTIN ? builtin(i) : g_backends[i - SRLM_BACKEND_BUILTIN];
    if (strcmp(ops->name, name) == 0) {
      *out = ops;
      return SRLM_OK;
    }
  }
  if (name && strcmp(name, "cuda") == 0)
    return srlm_error(SRLM_ERR_UNSUPPORTED, "backend",
                      "'cuda' is not available: this program was built without the CUDA "
                      "backend (available: %s); rebuild with -DSRLM_CUDA=ON where nvcc is installed",
                      srlm_backend_names());
  return srlm_error(SRLM_ERR_CONFIG, "backend", "unknown backend '%s' (available: %s)",
                    name ? name : "(null)", srlm_backend_names());
}

int srlm_backend_default_device(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID",
                                     "MV2_COMM_WORLD_LOCAL_RANK"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    char *end = NULL;
    long r = v && *v ? strtol(v, &end, 10) : -1;
    if (v && *v && end && !*end && r >= 0 && r < 1 << 20) return (int)r;
  }
  return 0;
}

srlm_status srlm_backend_open(const char *name, int device, srlm_backend **out) {
  *out = NULL;
  const srlm_backend_ops *ops;
  SRLM_TRY(srlm_backend_find(name, &ops));
  if (ops == srlm_backend_cpu_ops()) {
    *out = srlm_backend_cpu();
    return SRLM_OK;
  }
  srlm_backend *be = srlm_xcalloc(1, sizeof *be);
  be->ops = ops;
  be->name = ops->name;
  be->host_memory = ops->host_memory;
  be->auto_device = device < 0;
  be->device = device < 0 ? srlm_backend_default_device() : device;
  srlm_status st = ops->create(be, be->device);
  if (st != SRLM_OK) {
    free(be);
    return srlm_error_context(st, "backend '%s' on device %d", name, device < 0 ? srlm_backend_default_device() : device);
  }
  *out = be;
  return SRLM_OK;
}

srlm_status srlm_backend_close(srlm_backend *be) {
  if (!be || be == srlm_backend_cpu()) return SRLM_OK;
  srlm_status st = be->ops->destroy(be);
  free(be);
  return st;
}

uint64_t srlm_weights_version_next(void) {
  static uint64_t next = 0;
  return __atomic_add_fetch(&next, 1, __ATOMIC_RELAXED);
}

srlm_status srlm_backend_lacks(const srlm_backend *be, const char *op) {
  return srlm_error(SRLM_ERR_UNSUPPORTED, "backend", "'%s' has no op '%s' yet", be->name, op);
}

int srlm_backend_has_op(const srlm_backend_ops *ops, srlm_op_id id) {
  switch (id) {
#define SRLM_OP_HAS_(op, type) \
  case SRLM_OP_##op:           \
    return ops->op != NULL;
    SRLM_BACKEND_OPS(SRLM_OP_HAS_)
#undef SRLM_OP_HAS_
    case SRLM_OP_COUNT: break;
  }
  return 0;
}

const char *srlm_backend_missing_op(const srlm_backend_ops *ops) {
  for (int i = 0; i < SRLM_OP_COUNT; i++)
    if (!srlm_backend_has_op(ops, (srlm_op_id)i)) return srlm_op_names[i];
  return NULL;
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

static srlm_status check_dtype(const char *where, const char *name, srlm_dtype dt) {
  if (dt != SRLM_F32 && dt != SRLM_BF16)
    return srlm_error(SRLM_ERR_INTERNAL, where, "%s = %d is not a dtype (fp32 or bf16)", name, (int)dt);
  return SRLM_OK;
}

#define CHECK_PTR(field)                                                                \
  do {                                                                                  \
    if (!p->field) return srlm_error(SRLM_ERR_INTERNAL, where, "%s is NULL", #field);  \
  } while (0)
#define CHECK_DTYPE(field) SRLM_TRY(check_dtype(where, #field, p->field))

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
  CHECK_DTYPE(dtype);
  CHECK_DTYPE(c_dtype);
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

srlm_status srlm_rmsnorm_params_check(const srlm_rmsnorm_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_dims(where, p->N, "C", p->C));
  if (!(p->eps > 0.0f) || !isfinite(p->eps))
    return srlm_error(SRLM_ERR_RANGE, where, "eps = %g must be finite and > 0", (double)p->eps);
  if (p->N == 0) return SRLM_OK;
  CHECK_PTR(out);
  CHECK_PTR(x);
  CHECK_PTR(w);
  return SRLM_OK;
}

srlm_status srlm_rmsnorm_bwd_params_check(const srlm_rmsnorm_bwd_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_dims(where, p->N, "C", p->C));
  if (p->N == 0) return SRLM_OK;
  CHECK_PTR(dx);
  CHECK_PTR(dw);
  CHECK_PTR(dy);
  CHECK_PTR(x);
  CHECK_PTR(w);
  CHECK_PTR(rstd);
  return SRLM_OK;
}

srlm_status srlm_rope_params_check(const srlm_rope_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_pos(where, "H", p->H));
  SRLM_TRY(check_dims(where, p->N, "H * HS", p->H * (p->HS > 0 ? p->HS : 1)));
  if (p->HS < 2 || p->HS % 2 != 0)
    return srlm_error(SRLM_ERR_RANGE, where, "head dim HS = %lld must be even and >= 2", (long long)p->HS);
  if (p->N == 0) return SRLM_OK;
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
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_heads(where, p->NH, p->NKV, p->HS, p->scale, p->window));
  SRLM_TRY(check_dims(where, p->T, "NH * HS", p->NH * p->HS));
  SRLM_TRY(check_seqlens(where, p->cu_seqlens, p->B));
  if (p->T == 0) return SRLM_OK;
  CHECK_PTR(out);
  CHECK_PTR(q);
  CHECK_PTR(k);
  CHECK_PTR(v);
  return SRLM_OK;
}

srlm_status srlm_attention_bwd_params_check(const srlm_attention_bwd_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_heads(where, p->NH, p->NKV, p->HS, p->scale, p->window));
  SRLM_TRY(check_dims(where, p->T, "NH * HS", p->NH * p->HS));
  SRLM_TRY(check_seqlens(where, p->cu_seqlens, p->B));
  if (p->T == 0) return SRLM_OK;
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
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_heads(where, p->NH, p->NKV, p->HS, p->scale, p->window));
  SRLM_TRY(check_dims(where, p->NQ, "NH * HS", p->NH * p->HS));
  SRLM_TRY(check_pos(where, "max_slots", p->max_slots));
  SRLM_TRY(check_pos(where, "max_len", p->max_len));
  if (p->n < 0) return srlm_error(SRLM_ERR_RANGE, where, "n = %d sequences is negative", p->n);
  if (p->n == 0 && p->NQ == 0) return SRLM_OK;
  CHECK_PTR(out);
  CHECK_PTR(q);
  CHECK_PTR(k_cache);
  CHECK_PTR(v_cache);
  CHECK_PTR(slot);
  CHECK_PTR(cu_q);
  CHECK_PTR(kv_len);
  return SRLM_OK;
}

srlm_status srlm_kv_append_params_check(const srlm_kv_append_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_pos(where, "NKV", p->NKV));
  SRLM_TRY(check_pos(where, "HS", p->HS));
  SRLM_TRY(check_dims(where, p->NQ, "NKV * HS", p->NKV * p->HS));
  SRLM_TRY(check_pos(where, "max_slots", p->max_slots));
  SRLM_TRY(check_pos(where, "max_len", p->max_len));
  if (p->n < 0) return srlm_error(SRLM_ERR_RANGE, where, "n = %d sequences is negative", p->n);
  if (p->n == 0) return SRLM_OK;
  CHECK_PTR(k_cache);
  CHECK_PTR(v_cache);
  CHECK_PTR(k);
  CHECK_PTR(v);
  CHECK_PTR(slot);
  CHECK_PTR(cu_q);
  CHECK_PTR(kv_len);
  return SRLM_OK;
}

srlm_status srlm_swiglu_params_check(const srlm_swiglu_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_dims(where, p->N, "FF", p->FF));
  if (p->N == 0) return SRLM_OK;
  CHECK_PTR(h);
  CHECK_PTR(gate);
  CHECK_PTR(up);
  return SRLM_OK;
}

srlm_status srlm_swiglu_bwd_params_check(const srlm_swiglu_bwd_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_dims(where, p->N, "FF", p->FF));
  if (p->N == 0) return SRLM_OK;
  CHECK_PTR(dgate);
  CHECK_PTR(dup);
  CHECK_PTR(dh);
  CHECK_PTR(gate);
  CHECK_PTR(up);
  return SRLM_OK;
}

srlm_status srlm_embedding_params_check(const srlm_embedding_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_dims(where, p->N, "C", p->C));
  SRLM_TRY(check_dims(where, p->V, "C", p->C));
  SRLM_TRY(check_pos(where, "V", p->V));
  if (p->N == 0) return SRLM_OK;
  CHECK_PTR(out);
  CHECK_PTR(table);
  CHECK_PTR(ids);
  return SRLM_OK;
}

srlm_status srlm_embedding_bwd_params_check(const srlm_embedding_bwd_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  CHECK_DTYPE(table_dtype);
  SRLM_TRY(check_dims(where, p->N, "C", p->C));
  SRLM_TRY(check_dims(where, p->V, "C", p->C));
  SRLM_TRY(check_pos(where, "V", p->V));
  if (p->N == 0) return SRLM_OK;
  CHECK_PTR(dtable);
  CHECK_PTR(dout);
  CHECK_PTR(ids);
  return SRLM_OK;
}

srlm_status srlm_add_params_check(const srlm_add_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  if (p->n < 0) return srlm_error(SRLM_ERR_RANGE, where, "n = %lld is negative", (long long)p->n);
  if (p->n == 0) return SRLM_OK;
  CHECK_PTR(out);
  CHECK_PTR(a);
  CHECK_PTR(b);
  return SRLM_OK;
}

srlm_status srlm_colsum_params_check(const srlm_colsum_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_dims(where, p->N, "C", p->C));
  if (p->N == 0) return SRLM_OK;
  CHECK_PTR(out);
  CHECK_PTR(x);
  return SRLM_OK;
}

srlm_status srlm_cast_params_check(const srlm_cast_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  CHECK_DTYPE(out_dtype);
  if (p->n < 0) return srlm_error(SRLM_ERR_RANGE, where, "n = %lld is negative", (long long)p->n);
  if (p->n == 0) return SRLM_OK;
  CHECK_PTR(out);
  CHECK_PTR(x);
  return SRLM_OK;
}

static srlm_status check_head(const char *where, int64_t N, int64_t C, int64_t V) {
  SRLM_TRY(check_dims(where, N, "C", C));
  SRLM_TRY(check_dims(where, V, "C", C));
  SRLM_TRY(check_pos(where, "V", V));
  return SRLM_OK;
}

srlm_status srlm_lmhead_params_check(const srlm_lmhead_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_head(where, p->N, p->C, p->V));
  if (p->N == 0) return SRLM_OK;
  CHECK_PTR(logp);
  CHECK_PTR(x);
  CHECK_PTR(w);
  CHECK_PTR(targets);
  return SRLM_OK;
}

srlm_status srlm_lmhead_bwd_params_check(const srlm_lmhead_bwd_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  SRLM_TRY(check_head(where, p->N, p->C, p->V));
  if (p->N == 0) return SRLM_OK;
  CHECK_PTR(dx);
  CHECK_PTR(dw);
  CHECK_PTR(x);
  CHECK_PTR(w);
  CHECK_PTR(lse);
  CHECK_PTR(dlogp);
  CHECK_PTR(targets);
  return SRLM_OK;
}

srlm_status srlm_sumsq_params_check(const srlm_sumsq_params *p, const char *where) {
  if (p->n < 0) return srlm_error(SRLM_ERR_RANGE, where, "n = %lld is negative", (long long)p->n);
  CHECK_PTR(out);
  if (p->n > 0) CHECK_PTR(x);
  return SRLM_OK;
}

srlm_status srlm_adamw_params_check(const srlm_adamw_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  if (p->n < 0) return srlm_error(SRLM_ERR_RANGE, where, "n = %lld is negative", (long long)p->n);
  const float sc[] = {p->grad_scale, p->decay_mul, p->one_minus_beta1, p->beta2, p->one_minus_beta2,
                      p->step_size, p->bc2_sqrt, p->eps};
  for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++)
    if (!isfinite(sc[i]))
      return srlm_error(SRLM_ERR_RANGE, where, "step scalar %zu is %g (must be finite)", i, (double)sc[i]);
  if (!(p->bc2_sqrt > 0.0f) || !(p->eps > 0.0f))
    return srlm_error(SRLM_ERR_RANGE, where, "bc2_sqrt %g and eps %g must be > 0", (double)p->bc2_sqrt, (double)p->eps);
  if (p->n == 0) return SRLM_OK;
  CHECK_PTR(master);
  CHECK_PTR(m);
  CHECK_PTR(v);
  CHECK_PTR(grad);
  return SRLM_OK;
}

srlm_status srlm_ema_params_check(const srlm_ema_params *p, const char *where) {
  CHECK_DTYPE(dtype);
  if (p->n < 0) return srlm_error(SRLM_ERR_RANGE, where, "n = %lld is negative", (long long)p->n);
  if (!(p->mu >= 0.0 && p->mu <= 1.0))
    return srlm_error(SRLM_ERR_RANGE, where, "mu %g is outside [0, 1]", p->mu);
  if (p->n == 0) return SRLM_OK;
  CHECK_PTR(ema);
  CHECK_PTR(x);
  const char *e = (const char *)p->ema, *x = (const char *)p->x;
  const size_t bytes = (size_t)p->n * sizeof(float);
  if (e < x + bytes && x < e + bytes)
    return srlm_error(SRLM_ERR_RANGE, where, "ema and x overlap (%lld elements)", (long long)p->n);
  return SRLM_OK;
}

srlm_status srlm_sample_params_check(const srlm_sample_params *p, const char *where) {
  SRLM_TRY(check_dims(where, p->n, "V", p->V));
  if (!(isfinite(p->temperature) && p->temperature >= 0.0f))
    return srlm_error(SRLM_ERR_RANGE, where, "temperature %g: expected a finite value >= 0", (double)p->temperature);
  if (p->top_k < 0) return srlm_error(SRLM_ERR_RANGE, where, "top_k %d: expected >= 0", p->top_k);
  if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
    return srlm_error(SRLM_ERR_RANGE, where, "top_p %g: expected a value in [0, 1]", (double)p->top_p);
  if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
    return srlm_error(SRLM_ERR_RANGE, where, "min_p %g: expected a value in [0, 1]", (double)p->min_p);
  if (p->n == 0) return SRLM_OK;
  CHECK_PTR(token);
  CHECK_PTR(logprob);
  CHECK_PTR(logits);
  CHECK_PTR(seq_id);
  CHECK_PTR(step);
  return SRLM_OK;
}

srlm_status srlm_pref_loss_params_check(const srlm_pref_loss_params *p, const char *where) {
  if (p->n < 0 || p->T < 0 || p->T > INT32_MAX)
    return srlm_error(SRLM_ERR_RANGE, where, "n = %lld pairs, T = %lld tokens out of range", (long long)p->n,
                      (long long)p->T);
  if (p->norm < 1) return srlm_error(SRLM_ERR_RANGE, where, "norm = %lld must be >= 1", (long long)p->norm);
  char why[128];
  if (srlm_pref_options_invalid(p->kind, p->beta, p->label_smoothing, p->nll_weight, why, sizeof why))
    return srlm_error(SRLM_ERR_CONFIG, where, "%s", why);
  if (p->T > 0) CHECK_PTR(g);
  if (p->n == 0) return SRLM_OK;
  CHECK_PTR(pair_out);
  CHECK_PTR(logp);
  CHECK_PTR(resp_start);
  CHECK_PTR(resp_len);
  if (srlm_pref_needs_ref(p->kind)) {
    CHECK_PTR(ref_chosen);
    CHECK_PTR(ref_rejected);
  }
  return SRLM_OK;
}

srlm_status srlm_grpo_loss_params_check(const srlm_grpo_loss_params *p, const char *where) {
  if (p->n < 0 || p->T < 0 || p->T > INT32_MAX)
    return srlm_error(SRLM_ERR_RANGE, where, "n = %lld sequences, T = %lld tokens out of range", (long long)p->n,
                      (long long)p->T);
  if (p->norm_seqs < 1 || p->norm_tokens < 1)
    return srlm_error(SRLM_ERR_RANGE, where, "normalizers %lld sequences, %lld tokens must be >= 1",
                      (long long)p->norm_seqs, (long long)p->norm_tokens);
  char why[128];
  if (srlm_grpo_options_invalid(p->clip_eps, p->clip_eps_high, p->ratio, p->beta, p->is_cap, p->agg, why, sizeof why))
    return srlm_error(SRLM_ERR_CONFIG, where, "%s", why);
  if (p->T > 0) CHECK_PTR(g);
  if (p->n == 0) return SRLM_OK;
  CHECK_PTR(seq_out);
  CHECK_PTR(logp);
  CHECK_PTR(resp_start);
  CHECK_PTR(offsets);
  CHECK_PTR(advantages);
  if (p->beta > 0) CHECK_PTR(logp_ref);
  if (p->is_cap > 0) CHECK_PTR(logp_behavior);
  return SRLM_OK;
}
