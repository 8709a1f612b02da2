/* CPU RMSNorm forward and backward (reference). Forward: fp32 sum of squares in index
 * order, one row per thread; out = (x * rstd) * w, the same rounding sequence the CUDA
 * kernel uses. Backward: dx overwritten row by row, dw accumulated in a fixed order.
 * bf16 rows are widened one at a time into the thread's fp32 buffer and rounded back
 * (cpu_ops.h); w (C) is staged. */
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"

/* One row: o = (x * rstd) * w; returns rstd. o may alias x. */
static float forward_row(float *o, const float *x, const float *w, int64_t C, float eps) {
  float ss = 0.0f;
  for (int64_t c = 0; c < C; c++) ss += x[c] * x[c];
  const float r = 1.0f / sqrtf(ss / (float)C + eps);
  for (int64_t c = 0; c < C; c++) o[c] = x[c] * r * w[c];
  return r;
}

/* A thread's fp32 rows for a bf16 op: nrow buffers of C floats each, or NULL for fp32 (the
 * op then reads and writes the tensors themselves). Freed with free(). */
static float *rows_new(srlm_dtype dt, int nrow, int64_t C) {
  return dt == SRLM_F32 ? NULL : srlm_xmalloc((size_t)(nrow * C) * sizeof(float));
}

/* Row n of x: the fp32 row itself, or the bf16 row widened into buf. */
static const float *row_in(const void *x, srlm_dtype dt, int64_t n, int64_t C, float *buf) {
  if (dt == SRLM_F32) return (const float *)x + n * C;
  srlm_cpu_widen(buf, (const uint16_t *)x + n * C, C);
  return buf;
}

static void forward(void *out, float *rstd, const void *x, const float *w, srlm_dtype dt, int64_t N, int64_t C,
                    float eps) {
#ifdef _OPENMP
#pragma omp parallel
#endif
  {
    float *buf = rows_new(dt, 1, C); /* (C) a bf16 row, in and out */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t n = 0; n < N; n++) {
      const float *xr = row_in(x, dt, n, C, buf); /* (C) */
      float *o = buf ? buf : (float *)out + n * C;  /* (C) may alias xr */
      const float r = forward_row(o, xr, w, C, eps);
      if (buf) srlm_cpu_narrow((uint16_t *)out + n * C, buf, C);
      if (rstd) rstd[n] = r;
    }
    free(buf);
  }
}

srlm_status srlm_cpu_rmsnorm_forward(srlm_backend *be, srlm_rmsnorm_params p) {
  (void)be;
  SRLM_TRY(srlm_rmsnorm_params_check(&p, "cpu rmsnorm_forward"));
  srlm_cpu_stage s = {0};
  const float *w = srlm_cpu_stage_in(&s, p.w, p.dtype, p.C);
  forward(p.out, p.rstd, p.x, w, p.dtype, p.N, p.C, p.eps);
  srlm_cpu_stage_free(&s);
  return SRLM_OK;
}

/* Backward. dw is summed in a fixed two-level order so it does not depend on the thread
 * count: rows in blocks of DW_BLOCK (in row order) into one partial per block, then the
 * partials in block order into dw. */
enum { DW_BLOCK = 64 };

/* One row: dx overwritten (may alias dy), dy (x r) added into the partial pw. */
static void backward_row(float *dxr, float *pw, const float *dyr, const float *xr, const float *w, float r,
                         int64_t C) {
  float dot = 0.0f;
  for (int64_t c = 0; c < C; c++) {
    dot += w[c] * dyr[c] * xr[c];
    pw[c] += dyr[c] * (xr[c] * r);
  }
  const float k = r * r * (dot / (float)C);
  for (int64_t c = 0; c < C; c++) dxr[c] = r * (w[c] * dyr[c] - xr[c] * k);
}

static void backward(void *dx, float *dw, const void *dy, const void *x, const float *w, const float *rstd,
                     srlm_dtype dt, int64_t N, int64_t C, float *part) {
  const int64_t nblk = (N + DW_BLOCK - 1) / DW_BLOCK;
#ifdef _OPENMP
#pragma omp parallel
#endif
  {
    float *buf = rows_new(dt, 2, C); /* (2, C) bf16 rows of x and of dy, then dx */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t b = 0; b < nblk; b++) {
      float *pw = part + b * C;
      const int64_t n_end = (b + 1) * DW_BLOCK < N ? (b + 1) * DW_BLOCK : N;
      for (int64_t n = b * DW_BLOCK; n < n_end; n++) {
        const float *xr = row_in(x, dt, n, C, buf), *dyr = row_in(dy, dt, n, C, buf ? buf + C : NULL); /* (C) */
        float *dxr = buf ? buf + C : (float *)dx + n * C; /* (C) may alias dyr */
        backward_row(dxr, pw, dyr, xr, w, rstd[n], C);
        if (buf) srlm_cpu_narrow((uint16_t *)dx + n * C, dxr, C);
      }
    }
    free(buf);
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
  const float *w = srlm_cpu_stage_in(&s, p.w, p.dtype, C);
  backward(p.dx, p.dw, p.dy, p.x, w, p.rstd, p.dtype, N, C, part);
  srlm_cpu_stage_free(&s);
  free(part);
  return SRLM_OK;
}
