// The optimizer step on the GPU: grad_sumsq (the global gradient norm's sum of squares) and
// adamw (backend.h, optim.h).
//
// grad_sumsq, accumulated into *out (double; the optimizer sums its weight-decay segments
// into one value, as the CPU twin does): one 256-thread block per chunk of SRLM_SUMSQ_CHUNK
// elements. Thread t takes the chunk's groups of 4 elements t, t + 256, ... (a 16-byte load
// each when x is aligned, element by element otherwise: the same elements in the same order
// either way) and sums x^2 in double (a float's square is exact in double, so nvcc's fused
// multiply-add changes nothing); the block adds the thread sums in a fixed tree (warp
// shuffles, then the warps in order) into part[chunk] in the workspace. Then one thread adds
// the chunk sums to *out in chunk order. NaN and inf propagate.
//
// adamw: a memory-bound map over chunks of 8 elements (launch_map: 16-byte accesses when
// every pointer is aligned; elem.cuh), with the CPU twin's float arithmetic (src/backend/cpu/cpu_backend.c) spelled
// with __fmul_rn/__fadd_rn/__fsub_rn/__fdiv_rn/__fsqrt_rn, which nvcc never contracts into
// fused multiply-adds, so master, m and v get the CPU's bits (the CPU build has no -mfma).
// The CPU skips the multiplications by grad_scale or decay_mul when they are 1; x * 1 is x
// exactly, so they are always done here. The compute copy param is master rounded to the
// dtype (nearest even) by the same thread after the update.
#include "elem.cuh"

namespace SRLM_CUDA_NS {

namespace {

constexpr int kSumsqThreads = 256;

__device__ __forceinline__ double warp_sum_d(double v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__global__ void __launch_bounds__(kSumsqThreads) sumsq_chunk_kernel(double *part, const float *x, long long n, bool vec) {
  __shared__ double warp_part[kSumsqThreads / kWarp];
  const long long i0 = (long long)blockIdx.x * SRLM_SUMSQ_CHUNK;
  const long long i1 = i0 + SRLM_SUMSQ_CHUNK < n ? i0 + SRLM_SUMSQ_CHUNK : n;
  double s = 0.0;
  for (long long g = i0 + 4LL * threadIdx.x; g < i1; g += 4LL * kSumsqThreads) {
    float v[4];
    if (vec && g + 4 <= i1) {
      const uint4 u = ld16(x + g);
      v[0] = __uint_as_float(u.x), v[1] = __uint_as_float(u.y), v[2] = __uint_as_float(u.z), v[3] = __uint_as_float(u.w);
    } else {
#pragma unroll
      for (int k = 0; k < 4; k++) v[k] = g + k < i1 ? x[g + k] : 0.0f;
    }
#pragma unroll
    for (int k = 0; k < 4; k++) s += (double)v[k] * (double)v[k];
  }
  s = warp_sum_d(s);
  if (threadIdx.x % kWarp == 0) warp_part[threadIdx.x / kWarp] = s;
  __syncthreads();
  if (threadIdx.x != 0) return;
  double total = 0.0;
  for (int w = 0; w < kSumsqThreads / kWarp; w++) total += warp_part[w];
  part[blockIdx.x] = total;
}

__global__ void sumsq_total_kernel(double *out, const double *part, long long nc) {
  double total = *out;
#pragma unroll 8
  for (long long c = 0; c < nc; c++) total += part[c];
  *out = total;
}

template <class T>
__global__ void __launch_bounds__(kMapThreads) adamw_kernel(srlm_adamw_params p, bool vec) {
  T *param = static_cast<T *>(p.param);  // (n) or NULL
  SRLM_CHUNK_LOOP(ch, p.n) {
    const long long i0 = ch * kChunk;
    float w[kChunk], m[kChunk], v[kChunk], g[kChunk];
    load_chunk(p.master, i0, p.n, vec, w);
    load_chunk(p.m, i0, p.n, vec, m);
    load_chunk(p.v, i0, p.n, vec, v);
    load_chunk(p.grad, i0, p.n, vec, g);
#pragma unroll
    for (int k = 0; k < kChunk; k++) {
      const float gk = __fmul_rn(g[k], p.grad_scale), wk = __fmul_rn(w[k], p.decay_mul);
      const float mi = __fadd_rn(m[k], __fmul_rn(p.one_minus_beta1, __fsub_rn(gk, m[k])));
      const float vi = __fadd_rn(__fmul_rn(v[k], p.beta2), __fmul_rn(__fmul_rn(p.one_minus_beta2, gk), gk));
      const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), p.bc2_sqrt), p.eps);
      m[k] = mi;
      v[k] = vi;
      w[k] = __fsub_rn(wk, __fmul_rn(p.step_size, __fdiv_rn(mi, denom)));
    }
    store_chunk(p.master, i0, p.n, vec, w);
    store_chunk(p.m, i0, p.n, vec, m);
    store_chunk(p.v, i0, p.n, vec, v);
    if (param) store_chunk(param, i0, p.n, vec, w);
  }
}

}  // namespace

srlm_status op_grad_sumsq(srlm_backend *be, srlm_sumsq_params p) {
  const char *where = SRLM_CUDA_NAME " grad_sumsq";
  SRLM_TRY(srlm_sumsq_params_check(&p, where));
  if (p.n == 0) return SRLM_OK;
  SRLM_TRY(check_dev(where, "out", p.out, sizeof(double)));
  SRLM_TRY(check_dev(where, "x", p.x, (size_t)p.n * sizeof(float)));
  context *c = ctx(be);
  const long long nc = (p.n + SRLM_SUMSQ_CHUNK - 1) / SRLM_SUMSQ_CHUNK;
  void *ws = nullptr;
  SRLM_TRY(workspace(c, (size_t)nc * sizeof(double), &ws));
  double *part = static_cast<double *>(ws);  // (nc) chunk sums
  SRLM_LAUNCH(sumsq_chunk_kernel, (unsigned)nc, kSumsqThreads, 0, c->stream, part, p.x, (long long)p.n, aligned16(p.x));
  SRLM_CUDA_LAUNCHED();
  SRLM_LAUNCH(sumsq_total_kernel, 1, 1, 0, c->stream, p.out, (const double *)part, nc);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

srlm_status op_adamw(srlm_backend *be, srlm_adamw_params p) {
  const char *where = SRLM_CUDA_NAME " adamw";
  SRLM_TRY(srlm_adamw_params_check(&p, where));
  if (p.n == 0) return SRLM_OK;
  const size_t bytes = (size_t)p.n * sizeof(float), param_bytes = (size_t)p.n * srlm_dtype_size(p.dtype);
  auto k = p.dtype == SRLM_BF16 ? adamw_kernel<__nv_bfloat16> : adamw_kernel<float>;
  return launch_map(be, where, k, p, p.n,
                    {{"master", p.master, bytes}, {"param", p.param, param_bytes}, {"m", p.m, bytes}, {"v", p.v, bytes},
                     {"grad", p.grad, bytes}});
}

}  // namespace SRLM_CUDA_NS
