// RMSNorm forward on the GPU, fp32 or bf16: one warp per row, lanes stride the row so loads
// coalesce; the sum of squares is reduced with shuffles. The output follows the CPU twin's
// rounding sequence: (x * rstd) * w in fp32, rstd = 1 / sqrt(ss / C + eps) with IEEE
// division and square root, then one rounding to the dtype (the sum of squares is in a
// different order, so results match to a few ulps, not bit for bit).
// Pointers are not __restrict__: out may alias x (each lane reads x[c] before it writes
// out[c], and no other lane touches c).
//
// Backward: one block per kBwdRows rows, the whole block on one row at a time. A thread owns
// chunks of 8 columns (16-byte loads when aligned; a warp covers 256 contiguous columns) and
// for each row (1) sums w dy x over its chunks, the block reduces that with shuffles and
// then across warps in warp order (one __syncthreads a row: the warp sums alternate between
// two buffers), (2) writes dx = rstd (w dy - x rstd^2 dot / C) for its chunks (the CPU
// twin's expression; its second read of x and dy hits L1), and adds dy (x rstd) to its
// columns' dw partial, kept in registers. The block then writes its partial (row block b of
// part (nblk, C) in the workspace) and colsum_finish (colsum.cu) adds the partials to dw in
// a fixed tree: no float atomics, and the bits depend only on the data, N and C.
// Registers hold kBwdChunks chunks a thread, so the fused kernel takes rows up to
// kBwdMaxThreads x kBwdChunks x 8 = 16384 columns; wider rows get their dw partials from
// colsum_partials (which reads dy before the row kernel may overwrite it in place) and the
// same row kernel without the partial. dx may alias dy: a thread reads its chunks of dy
// before it writes the same chunks of dx, and no other thread touches them.
#include "elem.cuh"

namespace SRLM_CUDA_NS {

namespace {

constexpr int kRowsPerBlock = 8;  // 256 threads: 8 warps, one row each
constexpr int kBwdRows = 32;        // backward: rows per block, the dw partial's row block
constexpr int kBwdChunks = 4;       // backward: chunks of 8 columns a thread owns (fused kernel)
constexpr int kBwdMaxThreads = 512;

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

template <class T, bool kDw>
__global__ void __launch_bounds__(kBwdMaxThreads)
    rmsnorm_backward_kernel(srlm_rmsnorm_bwd_params p, float *part, bool vec) {
  __shared__ float warp_dot[2][kBwdMaxThreads / kWarp];
  const long long C = p.C, nch = chunks_of(C);
  const long long r0 = (long long)blockIdx.x * kBwdRows, r1 = r0 + kBwdRows < p.N ? r0 + kBwdRows : p.N;
  const int nwarps = blockDim.x / kWarp, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const T *w = static_cast<const T *>(p.w);  // (C)
  float acc[kBwdChunks][kChunk];              // this thread's columns of the dw partial
#pragma unroll
  for (int j = 0; j < kBwdChunks; j++)
#pragma unroll
    for (int k = 0; k < kChunk; k++) acc[j][k] = 0.0f;
  for (long long r = r0; r < r1; r++) {
    const T *x = static_cast<const T *>(p.x) + r * C, *dy = static_cast<const T *>(p.dy) + r * C;  // (C)
    T *dx = static_cast<T *>(p.dx) + r * C;  // (C) may alias dy
    const float rs = p.rstd[r];
    float dot = 0.0f;
    for (long long ch = threadIdx.x; ch < nch; ch += blockDim.x) {
      float xv[kChunk], gv[kChunk], wv[kChunk];
      load_chunk(x, ch * kChunk, C, vec, xv);
      load_chunk(dy, ch * kChunk, C, vec, gv);
      load_chunk(w, ch * kChunk, C, vec, wv);
#pragma unroll
      for (int k = 0; k < kChunk; k++) dot += wv[k] * gv[k] * xv[k];
    }
    dot = warp_sum(dot);
    const int buf = (int)((r - r0) & 1);
    if (lane == 0) warp_dot[buf][warp] = dot;
    __syncthreads();
    float total = 0.0f;
    for (int i = 0; i < nwarps; i++) total += warp_dot[buf][i];
    const float kr = rs * rs * (total / (float)C);
    // The fused kernel's trip count is at most kBwdChunks (the host sized the block so).
    for (int j = 0; kDw ? j < kBwdChunks : true; j++) {
      const long long ch = threadIdx.x + (long long)j * blockDim.x;
      if (ch >= nch) break;
      float xv[kChunk], gv[kChunk], wv[kChunk], dv[kChunk];
      load_chunk(x, ch * kChunk, C, vec, xv);
      load_chunk(dy, ch * kChunk, C, vec, gv);
      load_chunk(w, ch * kChunk, C, vec, wv);
#pragma unroll
      for (int k = 0; k < kChunk; k++) {
        dv[k] = rs * (wv[k] * gv[k] - xv[k] * kr);
        if constexpr (kDw) acc[j][k] += gv[k] * (xv[k] * rs);
      }
      store_chunk(dx, ch * kChunk, C, vec, dv);
    }
  }
  if constexpr (kDw) {
#pragma unroll
    for (int j = 0; j < kBwdChunks; j++) {
      const long long ch = threadIdx.x + (long long)j * blockDim.x;
      if (ch < nch) store_chunk(part + (long long)blockIdx.x * C, ch * kChunk, C, vec, acc[j]);
    }
  }
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

srlm_status op_rmsnorm_backward(srlm_backend *be, srlm_rmsnorm_bwd_params p) {
  const char *where = SRLM_CUDA_NAME " rmsnorm_backward";
  SRLM_TRY(srlm_rmsnorm_bwd_params_check(&p, where));
  if (p.N == 0) return SRLM_OK;
  const size_t es = srlm_dtype_size(p.dtype), bytes = (size_t)(p.N * p.C) * es;
  SRLM_TRY(check_dev(where, "dx", p.dx, bytes));
  SRLM_TRY(check_dev(where, "dw", p.dw, (size_t)p.C * sizeof(float)));
  SRLM_TRY(check_dev(where, "dy", p.dy, bytes));
  SRLM_TRY(check_dev(where, "x", p.x, bytes));
  SRLM_TRY(check_dev(where, "w", p.w, (size_t)p.C * es));
  SRLM_TRY(check_dev(where, "rstd", p.rstd, (size_t)p.N * sizeof(float)));
  context *c = ctx(be);
  const long long nblk = (p.N + kBwdRows - 1) / kBwdRows, nch = chunks_of(p.C);
  void *ws = nullptr;
  SRLM_TRY(workspace(c, (size_t)(nblk * p.C) * sizeof(float), &ws));
  float *part = static_cast<float *>(ws);  // (nblk, C) dw partials
  const bool fused = nch <= (long long)kBwdMaxThreads * kBwdChunks;
  int threads = kWarp;  // fused: enough threads that none owns more than kBwdChunks chunks
  while (threads < kBwdMaxThreads && (long long)threads * (fused ? kBwdChunks : 1) < nch) threads *= 2;
  const bool vec = p.C % kChunk == 0 && all_aligned16({p.dx, p.dy, p.x, p.w, part});
  if (!fused) SRLM_TRY(colsum_partials(c, part, p.dy, p.x, p.rstd, p.N, p.C, kBwdRows, p.dtype));
  SRLM_DTYPE_SWITCH(p.dtype, T, {
    auto k = fused ? rmsnorm_backward_kernel<T, true> : rmsnorm_backward_kernel<T, false>;
    SRLM_LAUNCH(k, (unsigned)nblk, threads, 0, c->stream, p, part, vec);
  });
  SRLM_CUDA_LAUNCHED();
  return colsum_finish(c, p.dw, part, nblk, p.C);
}

}  // namespace SRLM_CUDA_NS
