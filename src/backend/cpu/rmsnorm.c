/* CPU RMSNorm forward and backward (reference). Forward: fp32 sum of squares in index
 * order, one row per thread; out = (x * rstd) * w, the same rounding sequence the CUDA
 * kernel uses. Backward: dx overwritten row by row, dw accumulated in a fixed order. */
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"

srlm_status srlm_cpu_rmsnorm_forward(srlm_rmsnorm_params p) {
  SRLM_TRY(srlm_rmsnorm_params_check(&p, "cpu rmsnorm_forward"));
  const int64_t N = p.N, C = p.C;
  SRLM_OMP_ROWS
  for (int64_t n = 0; n < N; n++) {
    const float *x = p.x + n * C; /* (C) */
    float *out = p.out + n * C;   /* (C) may alias x */
    float ss = 0.0f;
    for (int64_t c = 0; c < C; c++) ss += x[c] * x[c];
    float r = 1.0f / sqrtf(ss / (float)C + p.eps);
    for (int64_t c = 0; c < C; c++) out[c] = x[c] * r * p.w[c];
    if (p.rstd) p.rstd[n] = r;
  }
  return SRLM_OK;
}

/* Backward. dw is summed in a fixed two-level order so it does not depend on the thread
 * count: rows in blocks of DW_BLOCK (in row order) into one partial per block, then the
 * partials in block order into dw. */
enum { DW_BLOCK = 64 };

srlm_status srlm_cpu_rmsnorm_backward(srlm_rmsnorm_bwd_params p) {
  SRLM_TRY(srlm_rmsnorm_bwd_params_check(&p, "cpu rmsnorm_backward"));
  const int64_t N = p.N, C = p.C, nblk = (N + DW_BLOCK - 1) / DW_BLOCK;
  if (N == 0) return SRLM_OK;
  float *part = calloc((size_t)(nblk * C), sizeof *part); /* (nblk, C) */
  if (!part) return srlm_error(SRLM_ERR_NOMEM, "cpu rmsnorm_backward", "cannot allocate %lld partial sums", (long long)(nblk * C));
  SRLM_OMP_ROWS
  for (int64_t b = 0; b < nblk; b++) {
    float *pw = part + b * C;
    const int64_t n_end = (b + 1) * DW_BLOCK < N ? (b + 1) * DW_BLOCK : N;
    for (int64_t n = b * DW_BLOCK; n < n_end; n++) {
      const float *x = p.x + n * C, *dy = p.dy + n * C; /* (C) */
      float *dx = p.dx + n * C;                         /* (C) may alias dy */
      const float r = p.rstd[n];
      float dot = 0.0f;
      for (int64_t c = 0; c < C; c++) {
        dot += p.w[c] * dy[c] * x[c];
        pw[c] += dy[c] * (x[c] * r);
      }
      const float k = r * r * (dot / (float)C);
      for (int64_t c = 0; c < C; c++) dx[c] = r * (p.w[c] * dy[c] - x[c] * k);
    }
  }
  SRLM_OMP_ROWS
  for (int64_t c = 0; c < C; c++) {
    float acc = p.dw[c];
    for (int64_t b = 0; b < nblk; b++) acc += part[b * C + c];
    p.dw[c] = acc;
  }
  free(part);
  return SRLM_OK;
}
