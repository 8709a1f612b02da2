// What the elementwise, norm, gather and optimizer kernels share (elementwise.cu, rmsnorm.cu,
// rope.cu, embedding.cu, kv_append.cu, colsum.cu, adamw.cu):
// - chunks of 8 consecutive elements moved with 16-byte loads and stores (one uint4 for
//   bf16, two for fp32) when the addresses allow, element by element otherwise; the math on
//   a chunk is the same either way, so the path never changes a result's bits;
// - launch_map: an elementwise map's pointer checks, 16-byte path choice and grid;
// - raw row copies in units of 16, 4 or 2 bytes (the gathers: any dtype moves as bits);
// - grid sizing for grid-stride loops;
// - the column sums in a fixed order that colsum and rmsnorm_backward's dw use (colsum.cu).
#ifndef SRLM_CUDA_ELEM_CUH
#define SRLM_CUDA_ELEM_CUH

#include <initializer_list>

#include "common.cuh"

namespace SRLM_CUDA_NS {

constexpr int kChunk = 8;  // elements a thread moves at once: 16 bytes of bf16, 32 of fp32

// Grid-stride kernels launch at most this many blocks: a few waves of 256-thread blocks on
// any sm_80/sm_90 part (an H200 holds 132 x 8 of them at once); more blocks would only add
// scheduling. The simulator runs every thread, so small tensors get grids sized to them.
constexpr long long kMaxBlocks = 4096;

inline unsigned grid_for(long long items, int threads) {
  long long b = (items + threads - 1) / threads;
  if (b < 1) b = 1;
  return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

inline bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }
inline bool all_aligned16(std::initializer_list<const void *> ptrs) {
  for (const void *q : ptrs)
    if (!aligned16(q)) return false;
  return true;
}

__host__ __device__ __forceinline__ long long chunks_of(long long n) { return (n + kChunk - 1) / kChunk; }

// A grid-stride loop of the calling thread over the chunks of n elements.
#define SRLM_CHUNK_LOOP(ch, n)                                                              \
  for (long long ch = (long long)blockIdx.x * blockDim.x + threadIdx.x; ch < chunks_of(n); \
       ch += (long long)gridDim.x * blockDim.x)

// ---- 16-byte accesses ------------------------------------------------------------------------
// A plain uint4 load on the GPU (one LDG.128); memcpy on the simulator, where a cast would
// break the host compiler's aliasing rules.
__device__ __forceinline__ uint4 ld16(const void *p) {
#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
  uint4 u;
  memcpy(&u, p, sizeof u);
  return u;
#else
  return *reinterpret_cast<const uint4 *>(p);
#endif
}
__device__ __forceinline__ void st16(void *p, uint4 u) {
#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
  memcpy(p, &u, sizeof u);
#else
  *reinterpret_cast<uint4 *>(p) = u;
#endif
}

// bf16 pairs packed in a 32-bit word, low half first (little-endian memory order).
__device__ __forceinline__ float bf16_lo(unsigned w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(unsigned w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ unsigned bf16_pack(float lo, float hi) {
  return (unsigned)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
         ((unsigned)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16);
}

// 8 elements at p (16-byte aligned) as fp32, and back (bf16 rounds to nearest even, as st()).
__device__ __forceinline__ void load8(const float *p, float (&v)[kChunk]) {
  const uint4 a = ld16(p), b = ld16(p + 4);
  v[0] = __uint_as_float(a.x), v[1] = __uint_as_float(a.y), v[2] = __uint_as_float(a.z), v[3] = __uint_as_float(a.w);
  v[4] = __uint_as_float(b.x), v[5] = __uint_as_float(b.y), v[6] = __uint_as_float(b.z), v[7] = __uint_as_float(b.w);
}
__device__ __forceinline__ void load8(const __nv_bfloat16 *p, float (&v)[kChunk]) {
  const uint4 a = ld16(p);
  v[0] = bf16_lo(a.x), v[1] = bf16_hi(a.x), v[2] = bf16_lo(a.y), v[3] = bf16_hi(a.y);
  v[4] = bf16_lo(a.z), v[5] = bf16_hi(a.z), v[6] = bf16_lo(a.w), v[7] = bf16_hi(a.w);
}
__device__ __forceinline__ void store8(float *p, const float (&v)[kChunk]) {
  st16(p, make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]), __float_as_uint(v[3])));
  st16(p + 4, make_uint4(__float_as_uint(v[4]), __float_as_uint(v[5]), __float_as_uint(v[6]), __float_as_uint(v[7])));
}
__device__ __forceinline__ void store8(__nv_bfloat16 *p, const float (&v)[kChunk]) {
  st16(p, make_uint4(bf16_pack(v[0], v[1]), bf16_pack(v[2], v[3]), bf16_pack(v[4], v[5]), bf16_pack(v[6], v[7])));
}

// The chunk of elements [i0, i0 + 8) of p (n elements), as fp32: one or two 16-byte loads
// when `vec` (the caller's promise that p + i0 is 16-byte aligned whenever i0 is a multiple
// of 8) and the chunk is whole, else element by element, with 0 past n.
template <class T>
__device__ __forceinline__ void load_chunk(const T *p, long long i0, long long n, bool vec, float (&v)[kChunk]) {
  if (vec && i0 + kChunk <= n) {
    load8(p + i0, v);
    return;
  }
#pragma unroll
  for (int k = 0; k < kChunk; k++) v[k] = i0 + k < n ? ld(p + i0 + k) : 0.0f;
}
template <class T>
__device__ __forceinline__ void store_chunk(T *p, long long i0, long long n, bool vec, const float (&v)[kChunk]) {
  if (vec && i0 + kChunk <= n) {
    store8(p + i0, v);
    return;
  }
#pragma unroll
  for (int k = 0; k < kChunk; k++)
    if (i0 + k < n) st(p + i0 + k, v[k]);
}

// ---- maps ------------------------------------------------------------------------------------
// A map kernel takes (params, vec) and walks the chunks of its elements with SRLM_CHUNK_LOOP
// in blocks of kMapThreads; launch_map sizes its grid.
constexpr int kMapThreads = 256;

// An op's device pointers and the bytes each spans.
struct dev_arg {
  const char *name;
  const void *ptr;
  size_t bytes;
};

// Checks the pointers, then runs `kernel` over the chunks of n > 0 elements, with 16-byte
// accesses when every pointer is 16-byte aligned.
template <class P>
inline srlm_status launch_map(srlm_backend *be, const char *where, void (*kernel)(P, bool), const P &p, long long n,
                              std::initializer_list<dev_arg> args) {
  bool vec = true;
  for (const dev_arg &a : args) {
    SRLM_TRY(check_dev(where, a.name, a.ptr, a.bytes));
    vec = vec && aligned16(a.ptr);
  }
  SRLM_LAUNCH(kernel, grid_for(chunks_of(n), kMapThreads), kMapThreads, 0, ctx(be)->stream, p, vec);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

// ---- raw row copies ----------------------------------------------------------------------------
// A row of `bytes` bytes moves in units U of 16, 4 or 2 bytes: the widest that divides the row
// and the alignment of every row start (unit_bytes). Bits move untouched (NaN payloads too).
inline int unit_bytes(size_t row_bytes, const void *const *ptrs, int nptr) {
  uintptr_t a = (uintptr_t)row_bytes;
  for (int i = 0; i < nptr; i++) a |= (uintptr_t)ptrs[i];
  return (a & 15u) == 0 ? 16 : (a & 3u) == 0 ? 4 : 2;
}

// A unit filled with a repeated 32-bit word (the NaN of a dtype: 0x7fc00000, or 0x7fc07fc0
// for bf16 pairs), for rows the op poisons.
template <class U>
__device__ __forceinline__ U unit_fill(unsigned w);
template <>
__device__ __forceinline__ uint4 unit_fill<uint4>(unsigned w) {
  return make_uint4(w, w, w, w);
}
template <>
__device__ __forceinline__ unsigned unit_fill<unsigned>(unsigned w) {
  return w;
}
template <>
__device__ __forceinline__ unsigned short unit_fill<unsigned short>(unsigned w) {
  return (unsigned short)w;
}
template <class U>
__device__ __forceinline__ U unit_ld(const U *p) {
  if constexpr (sizeof(U) == 16) return ld16(p);
  else return *p;
}
template <class U>
__device__ __forceinline__ void unit_st(U *p, U u) {
  if constexpr (sizeof(U) == 16) st16(p, u);
  else *p = u;
}
inline unsigned nan_word(srlm_dtype dt) { return dt == SRLM_BF16 ? 0x7fc07fc0u : 0x7fc00000u; }

// Dispatches on a unit size from unit_bytes(): defines U around the statements.
#define SRLM_UNIT_SWITCH(bytes, U, ...)  \
  do {                                   \
    if ((bytes) == 16) {                 \
      using U = uint4;                   \
      __VA_ARGS__                        \
    } else if ((bytes) == 4) {           \
      using U = unsigned;                \
      __VA_ARGS__                        \
    } else {                             \
      using U = unsigned short;          \
      __VA_ARGS__                        \
    }                                    \
  } while (0)

// Block shape for row copies: x threads along a row's units (a warp or more, up to 256), y
// rows per block, 256 threads in all, so short rows still fill a block.
inline dim3 row_block(long long units) {
  int x = 32;
  while (x < 256 && x < units) x *= 2;
  return dim3((unsigned)x, (unsigned)(256 / x));
}

// ---- column sums in a fixed order (colsum.cu) -------------------------------------------------
// out[c] (+)= sum_n x[n, c] for x (N, C) of dtype `dt`, or, with b and s, of
// x[n, c] * (b[n, c] * s[n]) (rmsnorm_backward's dw: dy * (x * rstd)). Rows are summed in
// blocks of `rows` in row order into part (nblk, C) fp32 in the workspace (colsum_partials),
// then colsum_finish adds the partials to out in a fixed tree (colsum.cu): the bits depend
// only on the data, N, C and `rows`.
srlm_status colsum_partials(context *c, float *part, const void *x, const void *b, const float *s, long long N,
                            long long C, long long rows, srlm_dtype dt);
srlm_status colsum_finish(context *c, float *out, const float *part, long long nblk, long long C);

}  // namespace SRLM_CUDA_NS

#endif
