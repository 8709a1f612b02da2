/* Private to the CPU backend: its op entry points and the OpenMP row loop. */
#ifndef SRLM_BACKEND_CPU_OPS_H
#define SRLM_BACKEND_CPU_OPS_H

#include "srlm/backend.h"

/* Rows are split over OpenMP threads; each row is computed by one thread in a fixed
 * order, so results do not depend on the thread count. */
#ifdef _OPENMP
#define SRLM_OMP_ROWS _Pragma("omp parallel for schedule(static)")
#else
#define SRLM_OMP_ROWS
#endif

srlm_status srlm_cpu_rmsnorm_forward(srlm_rmsnorm_params p);
srlm_status srlm_cpu_logprob_forward(srlm_logprob_params p);
srlm_status srlm_cpu_logprob_backward(srlm_logprob_bwd_params p);

#endif
