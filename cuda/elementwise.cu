// Elementwise ops on the GPU, fp32 or bf16: add, cast, SwiGLU forward and backward.
//
// Design: memory-bound maps (launch_map, elem.cuh). A thread takes chunks of 8 consecutive
// elements, loaded and stored with 16-byte accesses when every pointer of the op is 16-byte
// aligned (element by element otherwise, and for the tail chunk), in a grid-stride loop over
// 256-thread blocks; consecutive threads take consecutive chunks, so a warp moves 512
// contiguous bytes of bf16 (1 KiB of fp32) per access. Math is fp32, each result rounded once
// to the dtype, as the CPU twins (src/backend/cpu/elementwise.c) do.
// - add: a + b in fp32, rounded: the CPU's bits exactly.
// - cast: fp32 -> bf16 rounds to nearest even (NaN stays a quiet NaN), bf16 -> fp32 widens
//   exactly; the same dtype is a device-to-device copy (nothing when out is x).
// - swiglu: h = g / (1 + exp(-g)) * u with CUDA's expf (within 2 ulp; the CPU's vector exp
//   is within about 1), so results agree to a few ulps, not bit for bit.
// In place: each thread reads all of a chunk's inputs before it writes the chunk's outputs
// and no other thread touches those elements, so out may alias a or b, h may alias gate or
// up, dgate may alias gate and dup up (no __restrict__ anywhere).
#include "elem.cuh"

namespace SRLM_CUDA_NS {

namespace {

template <class T>
__global__ void __launch_bounds__(kMapThreads) add_kernel(srlm_add_params p, bool vec) {
  const T *a = static_cast<const T *>(p.a), *b = static_cast<const T *>(p.b);  // (n)
  T *out = static_cast<T *>(p.out);                                            // (n) may alias a or b
  SRLM_CHUNK_LOOP(ch, p.n) {
    const long long i0 = ch * kChunk;
    float va[kChunk], vb[kChunk];
    load_chunk(a, i0, p.n, vec, va);
    load_chunk(b, i0, p.n, vec, vb);
#pragma unroll
    for (int k = 0; k < kChunk; k++) va[k] += vb[k];
    store_chunk(out, i0, p.n, vec, va);
  }
}

template <class TI, class TO>
__global__ void __launch_bounds__(kMapThreads) cast_kernel(srlm_cast_params p, bool vec) {
  const TI *x = static_cast<const TI *>(p.x);  // (n)
  TO *out = static_cast<TO *>(p.out);          // (n)
  SRLM_CHUNK_LOOP(ch, p.n) {
    float v[kChunk];
    load_chunk(x, ch * kChunk, p.n, vec, v);
    store_chunk(out, ch * kChunk, p.n, vec, v);
  }
}

template <class T>
__global__ void __launch_bounds__(kMapThreads) swiglu_forward_kernel(srlm_swiglu_params p, bool vec) {
  const long long n = p.N * p.FF;
  const T *gate = static_cast<const T *>(p.gate), *up = static_cast<const T *>(p.up);  // (N, FF)
  T *h = static_cast<T *>(p.h);                                                       // (N, FF)
  SRLM_CHUNK_LOOP(ch, n) {
    const long long i0 = ch * kChunk;
    float g[kChunk], u[kChunk];
    load_chunk(gate, i0, n, vec, g);
    load_chunk(up, i0, n, vec, u);
#pragma unroll
    for (int k = 0; k < kChunk; k++) g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
    store_chunk(h, i0, n, vec, g);
  }
}

template <class T>
__global__ void __launch_bounds__(kMapThreads) swiglu_backward_kernel(srlm_swiglu_bwd_params p, bool vec) {
  const long long n = p.N * p.FF;
  const T *gate = static_cast<const T *>(p.gate), *up = static_cast<const T *>(p.up);  // (N, FF)
  const T *dh = static_cast<const T *>(p.dh);                                         // (N, FF)
  T *dgate = static_cast<T *>(p.dgate), *dup = static_cast<T *>(p.dup);               // (N, FF)
  SRLM_CHUNK_LOOP(ch, n) {
    const long long i0 = ch * kChunk;
    float g[kChunk], u[kChunk], d[kChunk];
    load_chunk(gate, i0, n, vec, g);
    load_chunk(up, i0, n, vec, u);
    load_chunk(dh, i0, n, vec, d);
#pragma unroll
    for (int k = 0; k < kChunk; k++) {
      const float sg = 1.0f / (1.0f + expf(-g[k])), silu = g[k] * sg;
      g[k] = d[k] * u[k] * (sg * (1.0f + g[k] * (1.0f - sg)));  // dgate
      u[k] = d[k] * silu;                                        // dup
    }
    store_chunk(dgate, i0, n, vec, g);
    store_chunk(dup, i0, n, vec, u);
  }
}

}  // namespace

srlm_status op_add(srlm_backend *be, srlm_add_params p) {
  const char *where = SRLM_CUDA_NAME " add";
  SRLM_TRY(srlm_add_params_check(&p, where));
  if (p.n == 0) return SRLM_OK;
  const size_t bytes = (size_t)p.n * srlm_dtype_size(p.dtype);
  auto k = p.dtype == SRLM_BF16 ? add_kernel<__nv_bfloat16> : add_kernel<float>;
  return launch_map(be, where, k, p, p.n, {{"out", p.out, bytes}, {"a", p.a, bytes}, {"b", p.b, bytes}});
}

srlm_status op_cast(srlm_backend *be, srlm_cast_params p) {
  const char *where = SRLM_CUDA_NAME " cast";
  SRLM_TRY(srlm_cast_params_check(&p, where));
  if (p.n == 0) return SRLM_OK;
  const size_t in_bytes = (size_t)p.n * srlm_dtype_size(p.dtype), out_bytes = (size_t)p.n * srlm_dtype_size(p.out_dtype);
  if (p.dtype == p.out_dtype) {  // a copy: the copy engine's job
    SRLM_TRY(check_dev(where, "out", p.out, out_bytes));
    SRLM_TRY(check_dev(where, "x", p.x, in_bytes));
    if (p.out != p.x) SRLM_CUDA(cudaMemcpyAsync(p.out, p.x, in_bytes, cudaMemcpyDeviceToDevice, ctx(be)->stream));
    return SRLM_OK;
  }
  auto k = p.dtype == SRLM_F32 ? cast_kernel<float, __nv_bfloat16> : cast_kernel<__nv_bfloat16, float>;
  return launch_map(be, where, k, p, p.n, {{"out", p.out, out_bytes}, {"x", p.x, in_bytes}});
}

srlm_status op_swiglu_forward(srlm_backend *be, srlm_swiglu_params p) {
  const char *where = SRLM_CUDA_NAME " swiglu_forward";
  SRLM_TRY(srlm_swiglu_params_check(&p, where));
  const long long n = p.N * p.FF;
  if (n == 0) return SRLM_OK;
  const size_t bytes = (size_t)n * srlm_dtype_size(p.dtype);
  auto k = p.dtype == SRLM_BF16 ? swiglu_forward_kernel<__nv_bfloat16> : swiglu_forward_kernel<float>;
  return launch_map(be, where, k, p, n, {{"h", p.h, bytes}, {"gate", p.gate, bytes}, {"up", p.up, bytes}});
}

srlm_status op_swiglu_backward(srlm_backend *be, srlm_swiglu_bwd_params p) {
  const char *where = SRLM_CUDA_NAME " swiglu_backward";
  SRLM_TRY(srlm_swiglu_bwd_params_check(&p, where));
  const long long n = p.N * p.FF;
  if (n == 0) return SRLM_OK;
  const size_t bytes = (size_t)n * srlm_dtype_size(p.dtype);
  auto k = p.dtype == SRLM_BF16 ? swiglu_backward_kernel<__nv_bfloat16> : swiglu_backward_kernel<float>;
  return launch_map(be, where, k, p, n,
                    {{"dgate", p.dgate, bytes}, {"dup", p.dup, bytes}, {"dh", p.dh, bytes}, {"gate", p.gate, bytes},
                     {"up", p.up, bytes}});
}

}  // namespace SRLM_CUDA_NS
