// RMSNorm forward on the GPU, fp32 or bf16: one warp per row, lanes stride the row so loads
// coalesce; the sum of squares is reduced with shuffles. The output follows the CPU twin's
// rounding sequence: (x * rstd) * w in fp32, rstd = 1 / sqrt(ss / C + eps) with IEEE
// division and square root, then one rounding to the dtype (the sum of squares is in a
// different order, so results match to a few ulps, not bit for bit).
// Pointers are not __restrict__: out may alias x (each lane reads x[c] before it writes
// out[c], and no other lane touches c).
#include "common.cuh"

namespace SRLM_CUDA_NS {

namespace {

constexpr int kRowsPerBlock = 8;  // 256 threads: 8 warps, one row each

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <class T>
__global__ void __launch_bounds__(kRowsPerBlock *kWarp) rmsnorm_forward_kernel(srlm_rmsnorm_params p) {
  const long long row = (long long)blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= p.N) return;  // the whole warp leaves together
  const T *x = static_cast<const T *>(p.x) + row * p.C;  // (C)
  const T *w = static_cast<const T *>(p.w);              // (C)
  T *out = static_cast<T *>(p.out) + row * p.C;          // (C)
  float ss = 0.0f;
  for (long long c = lane; c < p.C; c += kWarp) {
    const float v = ld(x + c);
    ss += v * v;
  }
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / (float)p.C + p.eps);
  for (long long c = lane; c < p.C; c += kWarp) st(out + c, ld(x + c) * r * ld(w + c));
  if (lane == 0 && p.rstd) p.rstd[row] = r;
}

}  // namespace

srlm_status op_rmsnorm_forward(srlm_backend *be, srlm_rmsnorm_params p) {
  const char *where = SRLM_CUDA_NAME " rmsnorm_forward";
  SRLM_TRY(srlm_rmsnorm_params_check(&p, where));
  if (p.N == 0) return SRLM_OK;
  const size_t es = srlm_dtype_size(p.dtype);
  SRLM_TRY(check_dev(where, "out", p.out, (size_t)(p.N * p.C) * es));
  SRLM_TRY(check_dev(where, "x", p.x, (size_t)(p.N * p.C) * es));
  SRLM_TRY(check_dev(where, "w", p.w, (size_t)p.C * es));
  SRLM_TRY(check_dev(where, "rstd", p.rstd, (size_t)p.N * sizeof(float)));
  const unsigned blocks = (unsigned)((p.N + kRowsPerBlock - 1) / kRowsPerBlock);
  cudaStream_t s = ctx(be)->stream;
  SRLM_DTYPE_SWITCH(p.dtype, T, SRLM_LAUNCH(rmsnorm_forward_kernel<T>, blocks, kRowsPerBlock * kWarp, 0, s, p););
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

}  // namespace SRLM_CUDA_NS
