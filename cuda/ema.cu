// WARP's EMA of the weights on the GPU (backend.h, the ema op): the anchor's master moves
// toward the policy's, ema = fp32((1 - mu) ema + mu x) in double, and the compute copy is
// rounded from it, without the weights leaving the device (engine.h's anchor update). A
// memory-bound map over chunks of 8 elements (launch_map: 16-byte accesses when every
// pointer is aligned; elem.cuh). The CPU twin (src/backend/cpu/ema.c) rounds each product
// and the sum to double; nvcc would contract a * b + c into a fused multiply-add, so the
// arithmetic is spelled with __dmul_rn/__dadd_rn, which it never contracts: the CPU's bits.
// 1 - mu is computed once per thread from the same double mu, as the CPU does.
#include "elem.cuh"

namespace SRLM_CUDA_NS {

namespace {

#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
// The host compiler builds the simulator without -mfma: plain double arithmetic rounds each
// operation, as __dmul_rn/__dadd_rn do on a GPU.
inline double dmul_rn(double a, double b) { return a * b; }
inline double dadd_rn(double a, double b) { return a + b; }
#else
__device__ __forceinline__ double dmul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double dadd_rn(double a, double b) { return __dadd_rn(a, b); }
#endif

template <class T>
__global__ void __launch_bounds__(kMapThreads) ema_kernel(srlm_ema_params p, bool vec) {
  T *param = static_cast<T *>(p.param);  // (n) or NULL
  const double mu = p.mu, keep = 1.0 - p.mu;
  SRLM_CHUNK_LOOP(ch, p.n) {
    const long long i0 = ch * kChunk;
    float e[kChunk], x[kChunk];
    load_chunk(p.ema, i0, p.n, vec, e);
    load_chunk(p.x, i0, p.n, vec, x);
#pragma unroll
    for (int k = 0; k < kChunk; k++) e[k] = (float)dadd_rn(dmul_rn(keep, (double)e[k]), dmul_rn(mu, (double)x[k]));
    store_chunk(p.ema, i0, p.n, vec, e);
    if (param) store_chunk(param, i0, p.n, vec, e);
  }
}

}  // namespace

srlm_status op_ema(srlm_backend *be, srlm_ema_params p) {
  const char *where = SRLM_CUDA_NAME " ema";
  SRLM_TRY(srlm_ema_params_check(&p, where));
  if (p.n == 0) return SRLM_OK;
  const size_t bytes = (size_t)p.n * sizeof(float), param_bytes = (size_t)p.n * srlm_dtype_size(p.dtype);
  auto k = p.dtype == SRLM_BF16 ? ema_kernel<__nv_bfloat16> : ema_kernel<float>;
  return launch_map(be, where, k, p, p.n, {{"ema", p.ema, bytes}, {"param", p.param, param_bytes}, {"x", p.x, bytes}});
}

}  // namespace SRLM_CUDA_NS
