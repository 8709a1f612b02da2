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
