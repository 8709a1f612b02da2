// RMSNorm forward on the GPU: one warp per row, lanes stride the row so loads coalesce;
// the sum of squares is reduced with shuffles. Same rounding sequence as the CPU twin
// for the output: (x * rstd) * w, rstd = 1 / sqrt(ss / C + eps) with IEEE div and sqrt.
// Pointers are not __restrict__: out may alias x (each lane reads x[c] before it writes
// out[c], and no other lane touches c).
#include "backend_cuda.cuh"

namespace {

constexpr int kRowsPerBlock = 8; // 256 threads: 8 warps, one row each

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = SRLM_CUDA_WARP / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__global__ void __launch_bounds__(kRowsPerBlock * SRLM_CUDA_WARP)
    rmsnorm_forward_kernel(srlm_rmsnorm_params p) {
  const long long row = (long long)blockIdx.x * kRowsPerBlock + threadIdx.x / SRLM_CUDA_WARP;
  const int lane = threadIdx.x % SRLM_CUDA_WARP;
  if (row >= p.N) return; // the whole warp leaves together
  const float *x = p.x + row * p.C; // (C)
  float *out = p.out + row * p.C;   // (C)
  float ss = 0.0f;
  for (long long c = lane; c < p.C; c += SRLM_CUDA_WARP) ss += x[c] * x[c];
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / (float)p.C + p.eps);
  for (long long c = lane; c < p.C; c += SRLM_CUDA_WARP) out[c] = x[c] * r * p.w[c];
  if (lane == 0 && p.rstd) p.rstd[row] = r;
}

} // namespace

srlm_status srlm_cuda_rmsnorm_forward(srlm_rmsnorm_params p) {
  const char *where = "cuda rmsnorm_forward";
  SRLM_TRY(srlm_cuda_ready(where));
  SRLM_TRY(srlm_rmsnorm_params_check(&p, where));
  if (p.N == 0) return SRLM_OK;
  const unsigned blocks = (unsigned)((p.N + kRowsPerBlock - 1) / kRowsPerBlock);
  rmsnorm_forward_kernel<<<blocks, kRowsPerBlock * SRLM_CUDA_WARP, 0, srlm_cuda_stream()>>>(p);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}
