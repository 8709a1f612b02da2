/* CPU RMSNorm forward and backward (reference). Forward: fp32 sum of squares in index
 * order, one row per thread; out = (x * rstd) * w, the same rounding sequence the CUDA
 * kernel uses. Backward: dx overwritten row by row, dw accumulated in a fixed order.
 * bf16 rows are widened one at a time into the thread's fp32 buffer and rounded back
 * (cpu_ops.h); w (C) is staged. */
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"

/* One row: o = (x * rstd) * w from its sum of squares ss (sumsq_rows); returns rstd. o
 * may alias x. */
static float forward_row(float *o, const float *x, const float *w, int64_t C, float eps, float ss) {
  const float r = 1.0f / sqrtf(ss / (float)C + eps);
  for (int64_t c = 0; c < C; c++) o[c] = x[c] * r * w[c];
  return r;
}

/* A thread's fp32 rows for a bf16 op: nrow buffers of C floats each, or NULL for fp32 (the
 * op then reads and writes the tensors themselves). Freed with free(). */
static float *rows_new(srlm_dtype dt, int nrow, int64_t C) {
  return dt == SRLM_F32 ? NULL : srlm_xmalloc((size_t)(nrow * C) * sizeof(float));
}

/* The row sums (the forward's sum of squares, the backward's dot) of R rows side by side:
 * each row's sum is one chain over c in order, as forward_row and backward_row add it (a
 * product, then the sum, each rounded; the build never fuses them: no FMA in its baseline
 * ISA), a latency-bound add per element; R independent chains keep the adder busy. Rows
 * are x + i ld. The rest of each row's arithmetic stays in forward_row and backward_row,
 * which take the sums. */
enum { R = 8 };
/* The chains of n rows (n a constant: R, or 1 for the rows of a group of fewer) */
__attribute__((always_inline)) static inline void sumsq_n(const float *x, int64_t ld, int64_t C, float *ss,
                                                          const int n) {
  float a[R] = {0};
  for (int64_t c = 0; c < C; c++)
    for (int i = 0; i < n; i++) a[i] += x[i * ld + c] * x[i * ld + c];
  for (int i = 0; i < n; i++) ss[i] = a[i];
}
__attribute__((always_inline)) static inline void dot_n(const float *dy, const float *x, int64_t ld, const float *w,
                                                        int64_t C, float *dot, const int n) {
  float a[R] = {0};
  for (int64_t c = 0; c < C; c++)
    for (int i = 0; i < n; i++) a[i] += w[c] * dy[i * ld + c] * x[i * ld + c];
  for (int i = 0; i < n; i++) dot[i] = a[i];
}
/* rows (<= R) rows' sums: R side by side, fewer one at a time */
static void sumsq_rows(const float *x, int64_t ld, int64_t rows, int64_t C, float *ss) {
  if (rows == R)
    sumsq_n(x, ld, C, ss, R);
  else
    for (int64_t i = 0; i < rows; i++) sumsq_n(x + i * ld, ld, C, ss + i, 1);
}
static void dot_rows(const float *dy, const float *x, int64_t ld, int64_t rows, const float *w, int64_t C,
                     float *dot) {
  if (rows == R)
    dot_n(dy, x, ld, w, C, dot, R);
  else
    for (int64_t i = 0; i < rows; i++) dot_n(dy + i * ld, x + i * ld, ld, w, C, dot + i, 1);
}

static void forward(void *out, float *rstd, const void *x, const float *w, srlm_dtype dt, int64_t N, int64_t C,
                    float eps) {
#ifdef _OPENMP
#pragma omp parallel
#endif
  {
    float *buf = rows_new(dt, R, C); /* (R, C) bf16 rows, in and out */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t g = 0; g < (N + R - 1) / R; g++) { /* R rows at a time */
      const int64_t n0 = g * R, rows = N - n0 < R ? N - n0 : R;
      float ss[R];
      const float *X = dt == SRLM_F32 ? (const float *)x + n0 * C : buf; /* (rows, C) the group's fp32 rows */
      if (buf) srlm_cpu_widen(buf, (const uint16_t *)x + n0 * C, rows * C);
      sumsq_rows(X, C, rows, C, ss);
      for (int64_t i = 0; i < rows; i++) {
        const int64_t n = n0 + i;
        const float *xr = X + i * C;                          /* (C) */
        float *o = buf ? (float *)xr : (float *)out + n * C; /* (C) may alias xr */
        const float r = forward_row(o, xr, w, C, eps, ss[i]);
        if (buf) srlm_cpu_narrow((uint16_t *)out + n * C, o, C);
        if (rstd) rstd[n] = r;
      }
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
_Static_assert(DW_BLOCK % R == 0, "the backward sums R rows of a block at a time");

/* One row: dx overwritten (may alias dy), dy (x r) added into the partial pw; dot: the row's
 * sum of w dy x (dot_rows). */
static void backward_row(float *dxr, float *pw, const float *dyr, const float *xr, const float *w, float r,
                         int64_t C, float dot) {
  for (int64_t c = 0; c < C; c++) pw[c] += dyr[c] * (xr[c] * r);
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
    float *buf = rows_new(dt, 2 * R, C); /* (2, R, C) bf16 rows of x and of dy, then dx */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t b = 0; b < nblk; b++) {
      float *pw = part + b * C;
      const int64_t n_end = (b + 1) * DW_BLOCK < N ? (b + 1) * DW_BLOCK : N;
      for (int64_t n0 = b * DW_BLOCK; n0 < n_end; n0 += R) { /* R rows at a time (DW_BLOCK's a multiple) */
        const int64_t rows = n_end - n0 < R ? n_end - n0 : R;
        float dots[R];
        /* (rows, C) the group's fp32 rows of x and dy */
        const float *X = dt == SRLM_F32 ? (const float *)x + n0 * C : buf;
        const float *DY = dt == SRLM_F32 ? (const float *)dy + n0 * C : buf + R * C;
        if (buf) {
          srlm_cpu_widen(buf, (const uint16_t *)x + n0 * C, rows * C);
          srlm_cpu_widen(buf + R * C, (const uint16_t *)dy + n0 * C, rows * C);
        }
        dot_rows(DY, X, C, rows, w, C, dots);
        for (int64_t i = 0; i < rows; i++) {
          const int64_t n = n0 + i;
          const float *xr = X + i * C, *dyr = DY + i * C;      /* (C) */
          float *dxr = buf ? (float *)dyr : (float *)dx + n * C; /* (C) may alias dyr */
          backward_row(dxr, pw, dyr, xr, w, rstd[n], C, dots[i]);
          if (buf) srlm_cpu_narrow((uint16_t *)dx + n * C, dxr, C);
        }
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
