/* CPU rotary embedding (transformers' rotate_half convention), in place on (N, H, HS).
 * The angle is the fp32 product pos * inv_freq, as transformers forms it, and cos/sin
 * are evaluated once per row and frequency and shared by the row's H heads. The
 * backward rotates by the opposite angle (a rotation's transpose is its inverse).
 * A bf16 row is widened into the thread's fp32 buffer, rotated and rounded back
 * (cpu_ops.h). Where positions repeat (packed sequences start again at 0), cos/sin are
 * computed once per position into a table first (the same calls on the same angles: the
 * same values); a training step's RoPE calls took 4x fewer of them. */
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"

/* cos | sin of position pos for the half frequencies: cs[d] = cos(pos f_d), cs[half + d] =
 * sign sin(pos f_d) */
static void cos_sin(float *cs, int32_t pos, const float *inv_freq, int64_t half, float sign) {
  const float fp = (float)pos;
  for (int64_t d = 0; d < half; d++) {
    const float a = fp * inv_freq[d];
    cs[d] = cosf(a);
    cs[half + d] = sign * sinf(a);
  }
}

static srlm_status rope(srlm_rope_params p, float sign, const char *where) {
  SRLM_TRY(srlm_rope_params_check(&p, where));
  const int64_t N = p.N, H = p.H, HS = p.HS, half = HS / 2;
  for (int64_t n = 0; n < N; n++)
    if (p.pos[n] < 0) return srlm_error(SRLM_ERR_RANGE, where, "row %lld: position %d is negative", (long long)n, (int)p.pos[n]);
  const int64_t row = H * HS; /* (H, HS) of one position */
  int64_t P = -1; /* the largest position */
  for (int64_t n = 0; n < N; n++) P = p.pos[n] > P ? p.pos[n] : P;
  /* cos | sin of positions 0..P (P + 1, HS), where that is fewer rows than N */
  float *tab = P >= 0 && P + 1 < N ? malloc((size_t)((P + 1) * HS) * sizeof *tab) : NULL;
  if (tab) {
    SRLM_OMP_ROWS
    for (int64_t q = 0; q <= P; q++) cos_sin(tab + q * HS, (int32_t)q, p.inv_freq, half, sign);
  }
  int nomem = 0;
#ifdef _OPENMP
#pragma omp parallel
#endif
  {
    /* cos | sin of this row (2, HS/2), then for bf16 the row widened (H, HS) */
    float *cs = malloc((size_t)(HS + (p.dtype == SRLM_F32 ? 0 : row)) * sizeof *cs);
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
      const float *cn = cs;
      if (tab)
        cn = tab + p.pos[n] * HS;
      else
        cos_sin(cs, p.pos[n], p.inv_freq, half, sign);
      float *X = p.dtype == SRLM_F32 ? (float *)p.x + n * row : cs + HS; /* (H, HS) */
      if (p.dtype != SRLM_F32) srlm_cpu_widen(X, (const uint16_t *)p.x + n * row, row);
      for (int64_t h = 0; h < H; h++) {
        float *x = X + h * HS; /* (HS) */
        for (int64_t d = 0; d < half; d++) {
          const float x1 = x[d], x2 = x[d + half], c = cn[d], s = cn[half + d];
          x[d] = x1 * c - x2 * s;
          x[d + half] = x2 * c + x1 * s;
        }
      }
      if (p.dtype != SRLM_F32) srlm_cpu_narrow((uint16_t *)p.x + n * row, X, row);
    }
    free(cs);
  }
  free(tab);
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
