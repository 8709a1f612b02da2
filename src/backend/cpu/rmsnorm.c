/* CPU RMSNorm forward and backward (reference). Forward: fp32 sum of squares in index
 * order, one row per thread; out = (x * rstd) * w, the same rounding sequence the CUDA
 * kernel uses. Backward: dx overwritten row by row, dw accumulated in a fixed order.
 * bf16 tensors are staged through fp32 (cpu_ops.h). */
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"

static void forward_f32(float *out, float *rstd, const float *x, const float *w, int64_t N, int64_t C, float eps) {
  SRLM_OMP_ROWS
  for (int64_t n = 0; n < N; n++) {
    const float *xr = x + n * C; /* (C) */
    float *o = out + n * C;      /* (C) may alias xr */
    float ss = 0.0f;
    for (int64_t c = 0; c < C; c++) ss += xr[c] * xr[c];
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    for (int64_t c = 0; c < C; c++) o[c] = xr[c] * r * w[c];
    if (rstd) rstd[n] = r;
  }
}

srlm_status srlm_cpu_rmsnorm_forward(srlm_backend *be, srlm_rmsnorm_params p) {
  (void)be;
  SRLM_TRY(srlm_rmsnorm_params_check(&p, "cpu rmsnorm_forward"));
  srlm_cpu_stage s = {0};
  const int64_t NC = p.N * p.C;
  const float *x = srlm_cpu_stage_in(&s, p.x, p.dtype, NC), *w = srlm_cpu_stage_in(&s, p.w, p.dtype, p.C);
  float *out = srlm_cpu_stage_out(&s, p.out, p.dtype, NC, 0);
  forward_f32(out, p.rstd, x, w, p.N, p.C, p.eps);
  srlm_cpu_stage_store(p.out, p.dtype, out, NC);
  srlm_cpu_stage_free(&s);
  return SRLM_OK;
}

/* Backward. dw is summed in a fixed two-level order so it does not depend on the thread
 * count: rows in blocks of DW_BLOCK (in row order) into one partial per block, then the
 * partials in block order into dw. */
enum { DW_BLOCK = 64 };

static void backward_f32(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                         int64_t N, int64_t C, float *part) {
  const int64_t nblk = (N + DW_BLOCK - 1) / DW_BLOCK;
  SRLM_OMP_ROWS
  for (int64_t b = 0; b < nblk; b++) {
    float *pw = part + b * C;
    const int64_t n_end = (b + 1) * DW_BLOCK < N ? (b + 1) * DW_BLOCK : N;
    for (int64_t n = b * DW_BLOCK; n < n_end; n++) {
      const float *xr = x + n * C, *dyr = dy + n * C; /* (C) */
      float *dxr = dx + n * C;                        /* (C) may alias dyr */
      const float r = rstd[n];
      float dot = 0.0f;
      for (int64_t c = 0; c < C; c++) {
        dot += w[c] * dyr[c] * xr[c];
        pw[c] += dyr[c] * (xr[c] * r);
      }
      const float k = r * r * (dot / (float)C);
      for (int64_t c = 0; c < C; c++) dxr[c] = r * (w[c] * dyr[c] - xr[c] * k);
    }
  }
  SRLM_OMP_ROWS
  for (int64_t c = 0; c < C; c++) {
    float acc = dw[c];
    for (int64_t b = 0; b < nblk; b++) acc += part[b * C + c];
    dw[c] = acc;
  }
}

srlm_status srlm_cpu_rmsnorm_backward(srlm_backend *be, srlm_rmsnorm_bwd_params p) {
  (void)be;
  SRLM_TRY(srlm_rmsnorm_bwd_params_check(&p, "cpu rmsnorm_backward"));
  const int64_t N = p.N, C = p.C, nblk = (N + DW_BLOCK - 1) / DW_BLOCK;
  if (N == 0) return SRLM_OK;
  float *part = calloc((size_t)(nblk * C), sizeof *part); /* (nblk, C) */
  if (!part) return srlm_error(SRLM_ERR_NOMEM, "cpu rmsnorm_backward", "cannot allocate %lld partial sums", (long long)(nblk * C));
  srlm_cpu_stage s = {0};
  const int64_t NC = N * C;
  const float *dy = srlm_cpu_stage_in(&s, p.dy, p.dtype, NC), *x = srlm_cpu_stage_in(&s, p.x, p.dtype, NC);
  const float *w = srlm_cpu_stage_in(&s, p.w, p.dtype, C);
  float *dx = srlm_cpu_stage_out(&s, p.dx, p.dtype, NC, 0);
  backward_f32(dx, p.dw, dy, x, w, p.rstd, N, C, part);
  srlm_cpu_stage_store(p.dx, p.dtype, dx, NC);
  srlm_cpu_stage_free(&s);
  free(part);
  return SRLM_OK;
}
