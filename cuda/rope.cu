// Rotary embedding on the GPU, in place on x (N, H, HS), fp32 or bf16 (backend.h: the
// rotate_half convention; the backward rotates by -a).
//
// Design: a thread owns one chunk of 8 frequencies d (its pairs x[d], x[d + HS/2]) of a row
// and applies it to a group of heads h = g, g + G, ... (about 4 heads a thread), so each
// cos/sin is evaluated once per 4 heads, in registers: no shared memory, no barrier. Block:
// x = chunks x head groups of one row (consecutive threads take consecutive chunks of a head,
// so loads coalesce; 16-byte loads when HS/2 is a multiple of 8 and x is aligned), y = rows,
// about 256 threads in all.
// Arithmetic as the CPU twin (src/backend/cpu/rope.c): the angle is the fp32 product
// pos * inv_freq[d]; cosf/sinf (CUDA's, within 2 ulp, full-range argument reduction);
// x1 c - x2 s and x2 c + x1 s in fp32, rounded once to the dtype.
// A negative position (device data) is recorded as the op's error naming the row
// (reported by the next sync), and the row becomes NaN instead of being rotated.
#include "elem.cuh"

namespace SRLM_CUDA_NS {

namespace {

constexpr int kThreads = 256;
constexpr int kHeadsPerThread = 4;

template <class T>
__global__ void __launch_bounds__(kThreads)
    rope_kernel(srlm_rope_params p, int head_groups, float sign, bool vec, kerr_rec *kerr, int op) {
  const long long n = (long long)blockIdx.x * blockDim.y + threadIdx.y;
  if (n >= p.N) return;
  const long long half = p.HS / 2, nchd = chunks_of(half), H = p.H;
  const int pos = p.pos[n];
  const bool bad = pos < 0;
  if (bad && threadIdx.x == 0) kerr_record(kerr, (srlm_op_id)op, KERR_POSITION, n, pos, 2147483648LL);
  T *row = static_cast<T *>(p.x) + n * H * p.HS;  // (H, HS)
  const float fp = (float)pos;
  for (long long item = threadIdx.x; item < nchd * head_groups; item += blockDim.x) {
    const long long dc = item % nchd, d0 = dc * kChunk;
    float c[kChunk], s[kChunk];
#pragma unroll
    for (int k = 0; k < kChunk; k++) {
      const float a = d0 + k < half ? fp * p.inv_freq[d0 + k] : 0.0f;
      c[k] = bad ? NAN : cosf(a);
      s[k] = bad ? NAN : sign * sinf(a);
    }
    for (long long h = item / nchd; h < H; h += head_groups) {
      T *x1p = row + h * p.HS, *x2p = x1p + half;  // (HS/2) each
      float x1[kChunk], x2[kChunk];
      load_chunk(x1p, d0, half, vec, x1);
      load_chunk(x2p, d0, half, vec, x2);
#pragma unroll
      for (int k = 0; k < kChunk; k++) {
        const float a1 = x1[k], a2 = x2[k];
        x1[k] = a1 * c[k] - a2 * s[k];
        x2[k] = a2 * c[k] + a1 * s[k];
      }
      store_chunk(x1p, d0, half, vec, x1);
      store_chunk(x2p, d0, half, vec, x2);
    }
  }
}

srlm_status rope(srlm_backend *be, const srlm_rope_params &p, float sign, srlm_op_id op, const char *where) {
  SRLM_TRY(srlm_rope_params_check(&p, where));
  if (p.N == 0) return SRLM_OK;
  SRLM_TRY(check_dev(where, "x", p.x, (size_t)(p.N * p.H * p.HS) * srlm_dtype_size(p.dtype)));
  SRLM_TRY(check_dev(where, "pos", p.pos, (size_t)p.N * sizeof(int32_t)));
  SRLM_TRY(check_dev(where, "inv_freq", p.inv_freq, (size_t)(p.HS / 2) * sizeof(float)));
  const long long half = p.HS / 2, nchd = chunks_of(half);
  const long long groups = (p.H + kHeadsPerThread - 1) / kHeadsPerThread;
  const long long per_row = nchd * groups < kThreads ? nchd * groups : kThreads;
  const int rows = (int)(kThreads / per_row);
  const dim3 block((unsigned)per_row, (unsigned)rows);
  const unsigned grid = (unsigned)((p.N + rows - 1) / rows);
  const bool vec = half % kChunk == 0 && aligned16(p.x);
  context *c = ctx(be);
  SRLM_DTYPE_SWITCH(p.dtype, T,
                    SRLM_LAUNCH(rope_kernel<T>, grid, block, 0, c->stream, p, (int)groups, sign, vec, c->kerr, (int)op););
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

}  // namespace

srlm_status op_rope_forward(srlm_backend *be, srlm_rope_params p) {
  return rope(be, p, 1.0f, SRLM_OP_rope_forward, SRLM_CUDA_NAME " rope_forward");
}

srlm_status op_rope_backward(srlm_backend *be, srlm_rope_params p) {
  return rope(be, p, -1.0f, SRLM_OP_rope_backward, SRLM_CUDA_NAME " rope_backward");
}

}  // namespace SRLM_CUDA_NS
