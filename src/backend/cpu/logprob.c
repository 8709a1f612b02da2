/* CPU log-prob gather and its softmax backward (reference), whole rows or vocabulary
 * chunks of the LM head (lse_chunk / lse_finish / logprob_chunk_backward).
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

/* Folds z[0..V) into the running max *m and sum *s = sum exp(z - *m), block by block. */
static void row_fold(const float *z, int64_t V, float *m_io, float *s_io) {
  float m = *m_io, s = *s_io;
  for (int64_t b = 0; b < V; b += LSE_BLOCK) {
    int64_t e = b + LSE_BLOCK < V ? b + LSE_BLOCK : V;
    float bm = -INFINITY;
    for (int64_t v = b; v < e; v++) bm = z[v] > bm ? z[v] : bm;
    if (bm > m) {
      s *= expf(m - bm);
      m = bm;
    }
    if (m == -INFINITY) {
      /* only -inf (adds 0) and NaN (propagates) have been seen */
      for (int64_t v = b; v < e; v++) s += z[v] == -INFINITY ? 0.0f : z[v];
      continue;
    }
    s += srlm_cpu_exp_affine(z + b, 1.0f, m, NULL, e - b);
  }
  *m_io = m;
  *s_io = s;
}

/* Running max m and sum s = sum_v exp(z[v] - m) of one row. */
static void row_max_sum(const float *z, int64_t V, float *m_out, float *s_out) {
  *m_out = -INFINITY;
  *s_out = 0.0f;
  row_fold(z, V, m_out, s_out);
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
    const float pt = expf(z[t] - lse); /* read before dz (which may alias z) is written */
    srlm_cpu_exp_affine(z, 1.0f, lse, dz, V);
    for (int64_t v = 0; v < V; v++) dz[v] *= -g;
    dz[t] = g * (1.0f - pt);
  }
  return SRLM_OK;
}

/* ---- vocabulary chunks ------------------------------------------------------------ */

static srlm_status check_chunk_targets(const char *where, const int32_t *targets, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; n++)
    if (targets[n] < -1 || targets[n] >= V)
      return srlm_error(SRLM_ERR_RANGE, where, "row %lld: target id %d out of range [0, %lld) (or -1: none)",
                        (long long)n, (int)targets[n], (long long)V);
  return SRLM_OK;
}

srlm_status srlm_cpu_lse_chunk(srlm_lse_chunk_params p) {
  const char *where = "cpu lse_chunk";
  SRLM_TRY(srlm_lse_chunk_params_check(&p, where));
  SRLM_TRY(check_chunk_targets(where, p.targets, p.N, p.V));
  const int64_t Vc = p.Vc;
  SRLM_OMP_ROWS
  for (int64_t n = 0; n < p.N; n++) {
    const float *z = p.logits + n * Vc; /* (Vc) ids v0 .. v0 + Vc */
    if (p.first) {
      p.m[n] = -INFINITY;
      p.s[n] = 0.0f;
      p.zt[n] = 0.0f;
    }
    row_fold(z, Vc, &p.m[n], &p.s[n]);
    const int64_t t = p.targets[n] - p.v0;
    if (p.targets[n] >= 0 && t >= 0 && t < Vc) p.zt[n] = z[t];
  }
  return SRLM_OK;
}

srlm_status srlm_cpu_lse_finish(srlm_lse_finish_params p) {
  SRLM_TRY(srlm_lse_finish_params_check(&p, "cpu lse_finish"));
  SRLM_OMP_ROWS
  for (int64_t n = 0; n < p.N; n++) {
    const float ls = logf(p.s[n]);
    p.logp[n] = p.targets[n] >= 0 ? (p.zt[n] - p.m[n]) - ls : 0.0f;
    if (p.lse) p.lse[n] = p.m[n] + ls;
  }
  return SRLM_OK;
}

srlm_status srlm_cpu_logprob_chunk_backward(srlm_logprob_chunk_bwd_params p) {
  const char *where = "cpu logprob_chunk_backward";
  SRLM_TRY(srlm_logprob_chunk_bwd_params_check(&p, where));
  SRLM_TRY(check_chunk_targets(where, p.targets, p.N, p.V));
  for (int64_t n = 0; n < p.N; n++)
    if (p.targets[n] < 0 && p.dlogp[n] != 0.0f)
      return srlm_error(SRLM_ERR_RANGE, where, "row %lld has no target but dlogp %g (must be 0)", (long long)n,
                        (double)p.dlogp[n]);
  const int64_t Vc = p.Vc;
  SRLM_OMP_ROWS
  for (int64_t n = 0; n < p.N; n++) {
    const float *z = p.logits + n * Vc;
    float *dz = p.dlogits + n * Vc; /* may alias z */
    const float g = p.dlogp[n], lse = p.lse[n];
    if (g == 0.0f) {
      for (int64_t v = 0; v < Vc; v++) dz[v] = 0.0f;
      continue;
    }
    const int64_t t = p.targets[n] - p.v0;
    const int in_chunk = t >= 0 && t < Vc;
    const float pt = in_chunk ? expf(z[t] - lse) : 0.0f; /* read before dz (which may alias z) is written */
    srlm_cpu_exp_affine(z, 1.0f, lse, dz, Vc);
    for (int64_t v = 0; v < Vc; v++) dz[v] *= -g;
    if (in_chunk) dz[t] = g * (1.0f - pt);
  }
  return SRLM_OK;
}
