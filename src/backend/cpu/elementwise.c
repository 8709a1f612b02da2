/* CPU elementwise and gather ops of the transformer: SwiGLU and its backward, residual
 * add, bias gradient (column sums), embedding gather and its scatter-add backward.
 * Sums over rows run in a fixed order (rows in blocks, blocks in order, or one thread
 * per column range), so results do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"

/* exp(-gate) is computed a block at a time with the vector exp; blocks are a fixed
 * partition of the elements, so the bits do not depend on the thread count. */
enum { EW_BLOCK = 1024 };

srlm_status srlm_cpu_swiglu_forward(srlm_swiglu_params p) {
  SRLM_TRY(srlm_swiglu_params_check(&p, "cpu swiglu_forward"));
  const int64_t n = p.N * p.FF, nblk = (n + EW_BLOCK - 1) / EW_BLOCK;
  SRLM_OMP_ROWS
  for (int64_t b = 0; b < nblk; b++) {
    const int64_t i0 = b * EW_BLOCK, len = n - i0 < EW_BLOCK ? n - i0 : EW_BLOCK;
    float e[EW_BLOCK];
    srlm_cpu_exp_affine(p.gate + i0, -1.0f, 0.0f, e, len);
    for (int64_t i = 0; i < len; i++) {
      const float g = p.gate[i0 + i], u = p.up[i0 + i];
      p.h[i0 + i] = g / (1.0f + e[i]) * u;
    }
  }
  return SRLM_OK;
}

srlm_status srlm_cpu_swiglu_backward(srlm_swiglu_bwd_params p) {
  SRLM_TRY(srlm_swiglu_bwd_params_check(&p, "cpu swiglu_backward"));
  const int64_t n = p.N * p.FF, nblk = (n + EW_BLOCK - 1) / EW_BLOCK;
  SRLM_OMP_ROWS
  for (int64_t b = 0; b < nblk; b++) {
    const int64_t i0 = b * EW_BLOCK, len = n - i0 < EW_BLOCK ? n - i0 : EW_BLOCK;
    float e[EW_BLOCK];
    srlm_cpu_exp_affine(p.gate + i0, -1.0f, 0.0f, e, len);
    for (int64_t i = 0; i < len; i++) {
      const float g = p.gate[i0 + i], u = p.up[i0 + i], dh = p.dh[i0 + i];
      const float s = 1.0f / (1.0f + e[i]), silu = g * s;
      p.dgate[i0 + i] = dh * u * (s * (1.0f + g * (1.0f - s)));
      p.dup[i0 + i] = dh * silu;
    }
  }
  return SRLM_OK;
}

srlm_status srlm_cpu_add(srlm_add_params p) {
  SRLM_TRY(srlm_add_params_check(&p, "cpu add"));
  SRLM_OMP_ROWS
  for (int64_t i = 0; i < p.n; i++) p.out[i] = p.a[i] + p.b[i];
  return SRLM_OK;
}

enum { SUM_BLOCK = 64 }; /* rows summed into one partial before the partials are added */

srlm_status srlm_cpu_colsum(srlm_colsum_params p) {
  SRLM_TRY(srlm_colsum_params_check(&p, "cpu colsum"));
  const int64_t N = p.N, C = p.C, nblk = (N + SUM_BLOCK - 1) / SUM_BLOCK;
  if (N == 0) return SRLM_OK;
  float *part = calloc((size_t)(nblk * C), sizeof *part); /* (nblk, C) */
  if (!part) return srlm_error(SRLM_ERR_NOMEM, "cpu colsum", "cannot allocate %lld partial sums", (long long)(nblk * C));
  SRLM_OMP_ROWS
  for (int64_t b = 0; b < nblk; b++) {
    const int64_t end = (b + 1) * SUM_BLOCK < N ? (b + 1) * SUM_BLOCK : N;
    for (int64_t n = b * SUM_BLOCK; n < end; n++)
      for (int64_t c = 0; c < C; c++) part[b * C + c] += p.x[n * C + c];
  }
  SRLM_OMP_ROWS
  for (int64_t c = 0; c < C; c++) {
    float acc = p.out[c];
    for (int64_t b = 0; b < nblk; b++) acc += part[b * C + c];
    p.out[c] = acc;
  }
  free(part);
  return SRLM_OK;
}

static srlm_status check_ids(const char *where, const int32_t *ids, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; n++)
    if (ids[n] < 0 || ids[n] >= V)
      return srlm_error(SRLM_ERR_RANGE, where, "row %lld: token id %d out of range [0, %lld)", (long long)n, (int)ids[n],
                        (long long)V);
  return SRLM_OK;
}

srlm_status srlm_cpu_embedding_forward(srlm_embedding_params p) {
  const char *where = "cpu embedding_forward";
  SRLM_TRY(srlm_embedding_params_check(&p, where));
  SRLM_TRY(check_ids(where, p.ids, p.N, p.V));
  const int64_t C = p.C;
  SRLM_OMP_ROWS
  for (int64_t n = 0; n < p.N; n++) {
    const float *src = p.table + (int64_t)p.ids[n] * C;
    float *dst = p.out + n * C;
    for (int64_t c = 0; c < C; c++) dst[c] = src[c];
  }
  return SRLM_OK;
}

/* Columns are split over threads; each walks all rows in order for its columns. */
enum { COL_BLOCK = 64 };

srlm_status srlm_cpu_embedding_backward(srlm_embedding_bwd_params p) {
  const char *where = "cpu embedding_backward";
  SRLM_TRY(srlm_embedding_bwd_params_check(&p, where));
  SRLM_TRY(check_ids(where, p.ids, p.N, p.V));
  const int64_t C = p.C, ncb = (C + COL_BLOCK - 1) / COL_BLOCK;
  SRLM_OMP_ROWS
  for (int64_t cb = 0; cb < ncb; cb++) {
    const int64_t c0 = cb * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
    for (int64_t n = 0; n < p.N; n++) {
      float *dst = p.dtable + (int64_t)p.ids[n] * C;
      const float *src = p.dout + n * C;
      for (int64_t c = c0; c < c1; c++) dst[c] += src[c];
    }
  }
  return SRLM_OK;
}
