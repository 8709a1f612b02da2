/* Private to the CPU backend: its op entry points, the OpenMP row loop and the
 * single-threaded matrix product other ops build on. */
#ifndef SRLM_BACKEND_CPU_OPS_H
#define SRLM_BACKEND_CPU_OPS_H

#include <stddef.h>

#include "srlm/backend.h"

/* Rows are split over OpenMP threads; each row is computed by one thread in a fixed
 * order, so results do not depend on the thread count. */
#ifdef _OPENMP
#define SRLM_OMP_ROWS _Pragma("omp parallel for schedule(static)")
#else
#define SRLM_OMP_ROWS
#endif

srlm_status srlm_cpu_rmsnorm_forward(srlm_rmsnorm_params p);
srlm_status srlm_cpu_rmsnorm_backward(srlm_rmsnorm_bwd_params p);
srlm_status srlm_cpu_logprob_forward(srlm_logprob_params p);
srlm_status srlm_cpu_logprob_backward(srlm_logprob_bwd_params p);
srlm_status srlm_cpu_lse_chunk(srlm_lse_chunk_params p);
srlm_status srlm_cpu_lse_finish(srlm_lse_finish_params p);
srlm_status srlm_cpu_logprob_chunk_backward(srlm_logprob_chunk_bwd_params p);
srlm_status srlm_cpu_matmul(srlm_matmul_params p);
srlm_status srlm_cpu_rope_forward(srlm_rope_params p);
srlm_status srlm_cpu_rope_backward(srlm_rope_params p);
srlm_status srlm_cpu_attention_forward(srlm_attention_params p);
srlm_status srlm_cpu_attention_backward(srlm_attention_bwd_params p);
srlm_status srlm_cpu_attention_kv(srlm_attention_kv_params p);
srlm_status srlm_cpu_swiglu_forward(srlm_swiglu_params p);
srlm_status srlm_cpu_swiglu_backward(srlm_swiglu_bwd_params p);
srlm_status srlm_cpu_embedding_forward(srlm_embedding_params p);
srlm_status srlm_cpu_embedding_backward(srlm_embedding_bwd_params p);
srlm_status srlm_cpu_add(srlm_add_params p);
srlm_status srlm_cpu_colsum(srlm_colsum_params p);

/* The matrix product on the calling thread only (for ops that are themselves parallel
 * over tiles), with packing space kept in ws between calls (zero-initialize ws; free
 * it with srlm_cpu_gemm_ws_free). Same rounding as srlm_cpu_matmul: same bits. */
typedef struct srlm_cpu_gemm_ws {
  float *apack, *bpack;
  size_t a_cap, b_cap; /* floats */
} srlm_cpu_gemm_ws;
srlm_status srlm_cpu_gemm_serial(srlm_matmul_params p, srlm_cpu_gemm_ws *ws);
void srlm_cpu_gemm_ws_free(srlm_cpu_gemm_ws *ws);
/* out[i] = exp(a x[i] - b) for i < n (out may alias x, or be NULL), vectorized; returns
 * the sum of the outputs, added in a fixed order (see vexp.c). */
float srlm_cpu_exp_affine(const float *x, float a, float b, float *out, int64_t n);

/* The vector code level in force (isa.c): SRLM_CPU_ISA_*. */
enum { SRLM_CPU_ISA_GENERIC = 0, SRLM_CPU_ISA_AVX2 = 1, SRLM_CPU_ISA_AVX512 = 2 };
int srlm_cpu_isa(void);

#endif
