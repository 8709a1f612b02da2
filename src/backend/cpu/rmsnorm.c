/* CPU RMSNorm forward (reference). fp32 sum of squares in index order, one row per
 * thread; out = (x * rstd) * w, the same rounding sequence the CUDA kernel uses. */
#include <math.h>

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
