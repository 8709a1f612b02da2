/* CPU log-prob gather and its softmax backward (reference).
 *
 * logsumexp is one pass over the row with a running max: the row is read in blocks of
 * LSE_BLOCK; a block whose max exceeds the running max m rescales the running sum s
 * by exp(m_old - m_new) once, then its terms exp(z - m) are added in index order.
 * The log-prob is formed as (z_t - m) - log(s), never as z_t - (m + log s): with
 * logits near 1e4 the sum m + log(s) would round to ulp(1e4) ~ 1e-3 before the
 * subtraction. -inf logits (masked ids) add nothing; NaN logits propagate.
 * Targets are checked before any output is written. */
#include <math.h>

#include "cpu_ops.h"

enum { LSE_BLOCK = 64 }; /* a block stays in L1 between its max and its sum */

/* Running max m and sum s = sum_v exp(z[v] - m) of one row. */
static void row_max_sum(const float *z, int64_t V, float *m_out, float *s_out) {
  float m = -INFINITY, s = 0.0f;
  for (int64_t b = 0; b < V; b += LSE_BLOCK) {
    int64_t e = b + LSE_BLOCK < V ? b + LSE_BLOCK : V;
    float bm = -INFINITY;
    for (int64_t v = b; v < e; v++) bm = z[v] > bm ? z[v] : bm;
    if (bm > m) {
      s *= expf(m - bm);
      m = bm;
    }
    /* while m is -inf only -inf (adds 0) and NaN (propagates) have been seen */
    for (int64_t v = b; v < e; v++) s += z[v] == -INFINITY ? 0.0f : expf(z[v] - m);
  }
  *m_out = m;
  *s_out = s;
}

static srlm_status check_targets(const char *where, const int32_t *targets, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; n++)
    if (targets[n] < 0 || targets[n] >= V)
      return srlm_error(SRLM_ERR_RANGE, where, "row %lld: target id %d out of range [0, %lld)",
                        (long long)n, (int)targets[n], (long long)V);
  return SRLM_OK;
}

srlm_status srlm_cpu_logprob_forward(srlm_logprob_params p) {
  const char *where = "cpu logprob_forward";
  SRLM_TRY(srlm_logprob_params_check(&p, where));
  SRLM_TRY(check_targets(where, p.targets, p.N, p.V));
  const int64_t N = p.N, V = p.V;
  SRLM_OMP_ROWS
  for (int64_t n = 0; n < N; n++) {
    const float *z = p.logits + n * V; /* (V) */
    float m, s;
    row_max_sum(z, V, &m, &s);
    float ls = logf(s);
    p.logp[n] = (z[p.targets[n]] - m) - ls;
    if (p.lse) p.lse[n] = m + ls;
  }
  return SRLM_OK;
}

srlm_status srlm_cpu_logprob_backward(srlm_logprob_bwd_params p) {
  const char *where = "cpu logprob_backward";
  SRLM_TRY(srlm_logprob_bwd_params_check(&p, where));
  SRLM_TRY(check_targets(where, p.targets, p.N, p.V));
  const int64_t N = p.N, V = p.V;
  SRLM_OMP_ROWS
  for (int64_t n = 0; n < N; n++) {
    const float *z = p.logits + n * V; /* (V) */
    float *dz = p.dlogits + n * V;     /* (V) may alias z */
    const float g = p.dlogp[n], lse = p.lse[n];
    const int64_t t = p.targets[n];
    for (int64_t v = 0; v < V; v++) dz[v] = g * ((v == t ? 1.0f : 0.0f) - expf(z[v] - lse));
  }
  return SRLM_OK;
}
