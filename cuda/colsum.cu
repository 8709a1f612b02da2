// Column sums in a fixed order, fp32 or bf16 input, fp32 result: the colsum op (a bias
// gradient, out[c] += sum_n x[n, c]) and rmsnorm_backward's dw when its rows are too wide
// for the fused kernel (rmsnorm.cu). No float atomics: the order is a function of N and C.
//
// colsum_partials: the rows are cut into blocks of `rows`; grid (row blocks, column tiles of
// 256 x 8 columns). A thread owns a chunk of 8 columns (16-byte loads when aligned, so a
// warp reads 512 contiguous bytes of a bf16 row) and walks its block's rows in order,
// summing in fp32 registers; it writes its chunk of part[b] (nblk, C).
// colsum_finish: 32 columns x 8 lanes per block. Lane y sums the partials b = y, y + 8, ...
// of its column in order; then lane 0 adds the 8 lane sums to out[c] in lane order.
// So out[c] = out[c] + sum_y (sum_{b = y mod 8} part[b][c]) in that fixed tree; the 8 lanes
// give the finish 8x the loads in flight that one thread per column would.
#include "elem.cuh"

namespace SRLM_CUDA_NS {

namespace {

constexpr int kTileThreads = 256;  // column chunks per partials block
constexpr int kFinishCols = 32;    // finish block: 32 columns (a warp reads 128 bytes) ...
constexpr int kFinishLanes = 8;    // ... x 8 lanes over the row blocks
constexpr int kColsumRows = 64;    // colsum's rows per partial (the CPU twin's block too)
constexpr unsigned kMaxGridY = 65535u;

template <class T, bool kScaled>
__global__ void __launch_bounds__(kTileThreads)
    colsum_partials_kernel(float *part, const T *x, const T *b, const float *s, long long N, long long C,
                           long long rows, bool vec) {
  const long long r0 = (long long)blockIdx.x * rows, r1 = r0 + rows < N ? r0 + rows : N;
  const long long nch = chunks_of(C);
  for (long long ch = (long long)blockIdx.y * blockDim.x + threadIdx.x; ch < nch;
       ch += (long long)gridDim.y * blockDim.x) {
    const long long c0 = ch * kChunk;
    float acc[kChunk];
#pragma unroll
    for (int k = 0; k < kChunk; k++) acc[k] = 0.0f;
    for (long long r = r0; r < r1; r++) {
      float v[kChunk];
      load_chunk(x + r * C, c0, C, vec, v);
      if constexpr (kScaled) {
        float w[kChunk];
        load_chunk(b + r * C, c0, C, vec, w);
        const float sr = s[r];
#pragma unroll
        for (int k = 0; k < kChunk; k++) acc[k] += v[k] * (w[k] * sr);
      } else {
#pragma unroll
        for (int k = 0; k < kChunk; k++) acc[k] += v[k];
      }
    }
    store_chunk(part + (long long)blockIdx.x * C, c0, C, vec, acc);
  }
}

__global__ void __launch_bounds__(kFinishCols *kFinishLanes)
    colsum_finish_kernel(float *out, const float *part, long long nblk, long long C) {
  __shared__ float lane_sum[kFinishLanes][kFinishCols];
  const long long c = (long long)blockIdx.x * kFinishCols + threadIdx.x;
  float acc = 0.0f;
  if (c < C)
    for (long long b = threadIdx.y; b < nblk; b += kFinishLanes) acc += part[b * C + c];
  lane_sum[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y != 0 || c >= C) return;
  float total = out[c];
#pragma unroll
  for (int y = 0; y < kFinishLanes; y++) total += lane_sum[y][threadIdx.x];
  out[c] = total;
}

}  // namespace

srlm_status colsum_partials(context *c, float *part, const void *x, const void *b, const float *s, long long N,
                            long long C, long long rows, srlm_dtype dt) {
  if (N == 0) return SRLM_OK;
  const long long nblk = (N + rows - 1) / rows, nch = chunks_of(C);
  int threads = 32;
  while (threads < kTileThreads && threads < nch) threads *= 2;
  const long long tiles = (nch + threads - 1) / threads;
  const dim3 grid((unsigned)nblk, (unsigned)(tiles < kMaxGridY ? tiles : kMaxGridY));
  // Whole chunks of every row start 16 bytes apart from the (aligned) bases when C % 8 == 0.
  const bool vec = C % kChunk == 0 && all_aligned16({part, x, b});
  SRLM_DTYPE_SWITCH(dt, T, {
    const T *xt = static_cast<const T *>(x), *bt = static_cast<const T *>(b);
    if (b) {
      auto k = colsum_partials_kernel<T, true>;
      SRLM_LAUNCH(k, grid, threads, 0, c->stream, part, xt, bt, s, N, C, rows, vec);
    } else {
      auto k = colsum_partials_kernel<T, false>;
      SRLM_LAUNCH(k, grid, threads, 0, c->stream, part, xt, bt, s, N, C, rows, vec);
    }
  });
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

srlm_status colsum_finish(context *c, float *out, const float *part, long long nblk, long long C) {
  if (nblk == 0) return SRLM_OK;
  const unsigned grid = (unsigned)((C + kFinishCols - 1) / kFinishCols);
  SRLM_LAUNCH(colsum_finish_kernel, grid, dim3(kFinishCols, kFinishLanes), 0, c->stream, out, part, nblk, C);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

srlm_status op_colsum(srlm_backend *be, srlm_colsum_params p) {
  const char *where = SRLM_CUDA_NAME " colsum";
  SRLM_TRY(srlm_colsum_params_check(&p, where));
  if (p.N == 0) return SRLM_OK;
  SRLM_TRY(check_dev(where, "out", p.out, (size_t)p.C * sizeof(float)));
  SRLM_TRY(check_dev(where, "x", p.x, (size_t)(p.N * p.C) * srlm_dtype_size(p.dtype)));
  context *c = ctx(be);
  const long long nblk = (p.N + kColsumRows - 1) / kColsumRows;
  void *ws = nullptr;
  SRLM_TRY(workspace(c, (size_t)(nblk * p.C) * sizeof(float), &ws));
  float *part = static_cast<float *>(ws);  // (nblk, C)
  SRLM_TRY(colsum_partials(c, part, p.x, nullptr, nullptr, p.N, p.C, kColsumRows, p.dtype));
  return colsum_finish(c, p.out, part, nblk, p.C);
}

}  // namespace SRLM_CUDA_NS
