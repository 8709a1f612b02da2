/* CPU rotary embedding (transformers' rotate_half convention), in place on (N, H, HS).
 * The angle is the fp32 product pos * inv_freq, as transformers forms it, and cos/sin
 * are evaluated once per row and frequency and shared by the row's H heads. The
 * backward rotates by the opposite angle (a rotation's transpose is its inverse).
 * bf16 rows are staged through fp32 (cpu_ops.h). */
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"

static srlm_status rope(srlm_rope_params p, float sign, const char *where) {
  SRLM_TRY(srlm_rope_params_check(&p, where));
  const int64_t N = p.N, H = p.H, HS = p.HS, half = HS / 2;
  for (int64_t n = 0; n < N; n++)
    if (p.pos[n] < 0) return srlm_error(SRLM_ERR_RANGE, where, "row %lld: position %d is negative", (long long)n, (int)p.pos[n]);
  srlm_cpu_stage stage = {0};
  const int64_t n_all = p.N * p.H * p.HS;
  float *X = srlm_cpu_stage_out(&stage, p.x, p.dtype, n_all, 1);
  int nomem = 0;
#ifdef _OPENMP
#pragma omp parallel
#endif
  {
    float *cs = malloc((size_t)HS * sizeof *cs); /* (2, HS/2) cos | sin of this row */
    if (!cs) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
      nomem = 1;
    }
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t n = 0; n < N; n++) {
      if (!cs) continue;
      const float fp = (float)p.pos[n];
      for (int64_t d = 0; d < half; d++) {
        const float a = fp * p.inv_freq[d];
        cs[d] = cosf(a);
        cs[half + d] = sign * sinf(a);
      }
      for (int64_t h = 0; h < H; h++) {
        float *x = X + (n * H + h) * HS; /* (HS) */
        for (int64_t d = 0; d < half; d++) {
          const float x1 = x[d], x2 = x[d + half], c = cs[d], s = cs[half + d];
          x[d] = x1 * c - x2 * s;
          x[d + half] = x2 * c + x1 * s;
        }
      }
    }
    free(cs);
  }
  srlm_cpu_stage_store(p.x, p.dtype, X, n_all);
  srlm_cpu_stage_free(&stage);
  if (nomem) return srlm_error(SRLM_ERR_NOMEM, where, "cannot allocate a row of cos/sin");
  return SRLM_OK;
}

srlm_status srlm_cpu_rope_forward(srlm_backend *be, srlm_rope_params p) {
  (void)be;
  return rope(p, 1.0f, "cpu rope_forward");
}
srlm_status srlm_cpu_rope_backward(srlm_backend *be, srlm_rope_params p) {
  (void)be;
  return rope(p, -1.0f, "cpu rope_backward");
}
