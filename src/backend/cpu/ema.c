/* The CPU twin of the ema op (backend.h): WARP's EMA of the weights in double, rounded once
 * to fp32, then the compute copy rounded from it. The arithmetic is the host loop the engine
 * ran before the op existed (engine.c), so a run keeps its bits; the CPU build has no -mfma,
 * so the products and the sum are each rounded (the CUDA kernel spells them with __dmul_rn
 * and __dadd_rn). Threads take blocks of 4096 elements: every element is computed alone,
 * so the bits do not depend on the thread count. */
#include "cpu_ops.h"

srlm_status srlm_cpu_ema(srlm_backend *be, srlm_ema_params p) {
  (void)be;
  SRLM_TRY(srlm_ema_params_check(&p, "cpu ema"));
  enum { BLOCK = 4096 };
  const int64_t nblk = (p.n + BLOCK - 1) / BLOCK;
  const double mu = p.mu, keep = 1.0 - p.mu;
  SRLM_OMP_ROWS
  for (int64_t b = 0; b < nblk; b++) {
    const int64_t i0 = b * BLOCK, i1 = i0 + BLOCK < p.n ? i0 + BLOCK : p.n;
    for (int64_t i = i0; i < i1; i++) p.ema[i] = (float)(keep * (double)p.ema[i] + mu * (double)p.x[i]);
    if (p.param) srlm_convert((char *)p.param + (size_t)i0 * srlm_dtype_size(p.dtype), p.dtype, p.ema + i0, SRLM_F32,
                              (size_t)(i1 - i0));
  }
  return SRLM_OK;
}
