// What the attention kernels (cuda/attention.cu: dispatch and the fp32-tile kernels;
// cuda/attention_mma.cu: the bf16 forward, attention_kv and split-KV on tensor cores;
// cuda/attention_mma_bwd.cu: the bf16 backward on tensor cores) share: the mapping of blocks
// over packed sequences (first_block, block_sequence), the check kernel of the device-side
// arrays (cu_seqlens, cu_q, slots, lengths: attention.cu's header says what it does), the
// masking helpers, a forward block's rows (fwd_rows, block_rows), the tensor-core tile
// helpers (mma_load, pack_bf16, bf16_hi) and the head-dim classes. Internal to those files:
// everything here but the launchers at the end has internal linkage, one copy per file.
#ifndef SRLM_CUDA_ATTENTION_COMMON_CUH
#define SRLM_CUDA_ATTENTION_COMMON_CUH

#include <limits.h>

#include <type_traits>

#include "common.cuh"
#include "srlm/attn_split.h"
#include "mma.cuh"

namespace SRLM_CUDA_NS {

namespace {

constexpr int kRows = 32;                  // rows of a block's tile: (query, head) pairs, or keys (dK/dV)
constexpr int kCols = 32;                  // columns of a score tile: keys, or queries (dK/dV)
constexpr int kLanes = 8;                  // threads per row
constexpr int kThreads = kRows * kLanes;   // 256
constexpr int kPerLane = kCols / kLanes;   // score columns per thread
constexpr int kMaxHS = 256;                // head dims up to this (the widest class below)
constexpr int kCheckThreads = 256;
constexpr int kDThreads = 256;
constexpr size_t kSmemDefault = 48 * 1024;  // dynamic shared memory without opting in
static_assert(kRows * kLanes == kThreads && kCols % kLanes == 0 && kLanes <= kWarp && kWarp % kLanes == 0,
              "a row's lanes lie in one warp");

__host__ __device__ __forceinline__ long long lmin(long long a, long long b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ long long lmax(long long a, long long b) { return a > b ? a : b; }

// The first key position the query at position P sees.
__device__ __forceinline__ long long key_lo(long long P, long long W) { return W > 0 && P - W + 1 > 0 ? P - W + 1 : 0; }
// The last key position the query at position P of a sequence of L positions sees: P when
// causal, else P + W - 1 (W > 0) or the sequence's last (backend.h: a non-causal window
// reaches as far ahead as behind).
__device__ __forceinline__ long long key_hi(long long P, long long W, long long L, bool causal) {
  return causal ? P : W > 0 && P + W - 1 < L - 1 ? P + W - 1 : L - 1;
}
// The first query position that sees the key at position j: j when causal, else the
// window's mirror of key_lo (the last one is key_hi's mirror, the same either way:
// j + W - 1 or the sequence's last).
__device__ __forceinline__ long long query_lo(long long j, long long W, bool causal) {
  return causal ? j : key_lo(j, W);
}

// Shared-memory row stride for head dim HS: odd, so rows r..r+3 start in different banks.
__host__ __device__ __forceinline__ int smem_ld(long long HS) { return (int)(HS | 1); }

// ---- blocks over packed sequences -------------------------------------------------------

// Only the device knows the lengths. Sequence b (L_b = cu[b+1] - cu[b] queries, R rows
// each) owns blocks first_block(b) .. first_block(b+1) - 1, with
//   first_block(b) = floor(cu[b] R / kRows) + b,
// which are at least ceil(L_b R / kRows) blocks (floor(x + y) >= floor(x) + floor(y)), so
// floor(T R / kRows) + B blocks cover every tile; a sequence's spare block (at most one)
// exits. first_block increases strictly with b: a block finds its sequence by bisection.
// (`rows`: the rows of a block's tile, kRows here, kMmaRows for the tensor-core forward.)
__host__ __device__ __forceinline__ long long first_block(long long cu_b, long long b, long long R,
                                                          long long rows = kRows) {
  return cu_b * R / rows + b;
}
inline long long grid_blocks(long long total, long long n, long long R, long long rows = kRows) {
  return total * R / rows + n;
}

__device__ __forceinline__ int block_sequence(const int32_t *cu, int n, long long R, long long x,
                                              long long rows = kRows) {
  int lo = 0, hi = n - 1;  // the last b with first_block(b) <= x; first_block(0) = 0
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (first_block(cu[mid], mid, R, rows) <= x) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// ---- checks of the device-side arrays ---------------------------------------------------

// What an op's parameters say about its device arrays: cu (n + 1 entries from 0 to total,
// not decreasing) and, for the KV cache, each sequence's slot and length.
struct seq_arrays {
  const int32_t *cu;
  int n;
  long long total;
  int cu_kind;                     // KERR_SEQLEN or KERR_CU_Q
  const int32_t *slot, *kv_len;    // (n), NULL for packed sequences
  long long max_slots, max_len;
};

__device__ __forceinline__ seq_arrays arrays_of(const srlm_attention_params &p) {
  return {p.cu_seqlens, p.B, p.T, KERR_SEQLEN, nullptr, nullptr, 0, 0};
}
__device__ __forceinline__ seq_arrays arrays_of(const srlm_attention_bwd_params &p) {
  return {p.cu_seqlens, p.B, p.T, KERR_SEQLEN, nullptr, nullptr, 0, 0};
}
__device__ __forceinline__ seq_arrays arrays_of(const srlm_attention_kv_params &p) {
  return {p.cu_q, p.n, p.NQ, KERR_CU_Q, p.slot, p.kv_len, p.max_slots, p.max_len};
}

template <class T>
__device__ void fill_nan(void *x, long long n) {
  T *t = static_cast<T *>(x);
  for (long long i = threadIdx.x; i < n; i += blockDim.x) st(t + i, NAN);
}

// The outputs the CPU would not have written, NaN.
template <class T>
__device__ void poison(const srlm_attention_params &p) {
  fill_nan<T>(p.out, p.T * p.NH * p.HS);
  if (p.lse) fill_nan<float>(p.lse, p.T * p.NH);
}
template <class T>
__device__ void poison(const srlm_attention_bwd_params &p) {
  fill_nan<T>(p.dq, p.T * p.NH * p.HS);
  fill_nan<T>(p.dk, p.T * p.NKV * p.HS);
  fill_nan<T>(p.dv, p.T * p.NKV * p.HS);
}
template <class T>
__device__ void poison(const srlm_attention_kv_params &p) {
  fill_nan<T>(p.out, p.NQ * p.NH * p.HS);
}

// What is wrong with entry / sequence i (0: nothing), by priority: the cu entry, the slot,
// a length past the cache, fewer cached positions than queries.
enum { BAD_NONE = 0, BAD_CU, BAD_SLOT, BAD_LONG, BAD_SHORT, BAD_KINDS };

__device__ __forceinline__ int bad_at(const seq_arrays &a, int i) {
  const int32_t c = a.cu[i];
  if (i == 0 ? c != 0 : c < a.cu[i - 1]) return BAD_CU;
  if (i == a.n && c != a.total) return BAD_CU;
  if (!a.slot || i == a.n) return BAD_NONE;
  if (a.slot[i] < 0 || a.slot[i] >= a.max_slots) return BAD_SLOT;
  if (a.kv_len[i] > a.max_len) return BAD_LONG;
  const int32_t nq = a.cu[i + 1] - c;  // a decrease there is entry i + 1's error
  if (nq >= 0 && a.kv_len[i] < nq) return BAD_SHORT;
  return BAD_NONE;
}

// One block: finds the first bad entry or sequence, records it as op `op`'s error, sets
// *bad for the op's other kernels and fills the outputs with NaN; *bad = 0 otherwise.
template <class T, class Params>
__global__ void __launch_bounds__(kCheckThreads) attention_check_kernel(Params p, int *bad, kerr_rec *kerr, int op) {
  const seq_arrays a = arrays_of(p);
  __shared__ long long first;  // smallest i * BAD_KINDS + what
  if (threadIdx.x == 0) first = LLONG_MAX;
  __syncthreads();
  for (int i = threadIdx.x; i <= a.n; i += kCheckThreads) {
    const int what = bad_at(a, i);
    if (what != BAD_NONE) atomicMin(&first, (long long)i * BAD_KINDS + what);
  }
  __syncthreads();
  const long long f = first;
  if (threadIdx.x == 0) {
    *bad = f != LLONG_MAX;
    const long long i = f / BAD_KINDS;
    const srlm_op_id id = (srlm_op_id)op;
    switch (f == LLONG_MAX ? BAD_NONE : (int)(f % BAD_KINDS)) {
      case BAD_CU: kerr_record(kerr, id, a.cu_kind, i, a.cu[i], a.total); break;
      case BAD_SLOT: kerr_record(kerr, id, KERR_SLOT | KERR_SEQUENCE, i, a.slot[i], a.max_slots); break;
      case BAD_LONG: kerr_record(kerr, id, KERR_LENGTH | KERR_SEQUENCE, i, a.kv_len[i], a.max_len + 1); break;
      case BAD_SHORT:  // the first new query's position is negative
        kerr_record(kerr, id, KERR_POSITION | KERR_SEQUENCE, i, (long long)a.kv_len[i] - (a.cu[i + 1] - a.cu[i]),
                    a.max_len);
        break;
      default: break;
    }
  }
  if (f != LLONG_MAX) poison<T>(p);
}

// ---- forward and KV ---------------------------------------------------------------------

// The rows of one forward block: (query, head) pairs of one sequence that share a kv head.
// Row rho of the sequence is query rho / R with head hbase + rho % R (forward: R = 1 and the
// block's head; attention_kv: R = NH / NKV and the group's heads).
template <class T>
struct fwd_rows {
  const T *q;             // (., NH, HS) at the sequence's first query
  T *out;                 // (., NH, HS) likewise
  float *lse;             // (., NH) likewise; NULL when not wanted
  const T *k, *v;         // (., NKV, HS) at key position 0 and the block's kv head
  long long q_ld, kv_ld;  // row strides: NH * HS, NKV * HS
  long long lse_ld;       // NH
  long long row0, nrows;  // the block's first row, the sequence's rows (queries x R)
  long long R, hbase;
  long long pos0;         // position of the sequence's first query
  long long W;
  bool causal;            // false: a forward with non_causal (attention_kv is always causal)
  int HS;
  float scale;
  // The last key the row of query qi sees (the sequence's keys end at pos0 + nrows / R).
  __device__ __forceinline__ long long hi_of(long long qi) const {
    return key_hi(pos0 + qi, W, pos0 + nrows / R, causal);
  }
  // split-KV (the tensor-core attention_kv on long caches): only keys [klo, khi] are read,
  // and the rows' partial results go to part (fp32, out's layout) and part_lse (base 2,
  // lse's layout; -inf for a row that sees no key here) instead of out
  long long klo = 0, khi = LLONG_MAX;
  float *part = nullptr, *part_lse = nullptr;
};


// The rows of block blockIdx of a forward over packed sequences, grid (grid_blocks(T, B, 1),
// NH): a query tile of one head. False for a sequence's spare block.
template <class T>
__device__ bool block_rows(const srlm_attention_params &p, fwd_rows<T> &f, int tile_rows = kRows) {
  const int b = block_sequence(p.cu_seqlens, p.B, 1, blockIdx.x, tile_rows);
  const long long s0 = p.cu_seqlens[b], L = p.cu_seqlens[b + 1] - s0;
  const long long row0 = ((long long)blockIdx.x - first_block(s0, b, 1, tile_rows)) * tile_rows;
  if (row0 >= L) return false;
  const long long h = blockIdx.y, g = h / (p.NH / p.NKV);
  f.q = static_cast<const T *>(p.q) + s0 * p.NH * p.HS;
  f.out = static_cast<T *>(p.out) + s0 * p.NH * p.HS;
  f.lse = p.lse ? p.lse + s0 * p.NH : nullptr;
  f.k = static_cast<const T *>(p.k) + s0 * p.NKV * p.HS + g * p.HS;
  f.v = static_cast<const T *>(p.v) + s0 * p.NKV * p.HS + g * p.HS;
  f.q_ld = p.NH * p.HS;
  f.kv_ld = p.NKV * p.HS;
  f.lse_ld = p.NH;
  f.row0 = row0;
  f.nrows = L;
  f.R = 1;
  f.hbase = h;
  f.pos0 = 0;
  f.W = p.window;
  f.causal = !p.non_causal;
  f.HS = (int)p.HS;
  f.scale = p.scale;
  return true;
}

// Against the KV cache, grid (grid_blocks(NQ, n, NH / NKV), NKV): (query, head) pairs of one
// kv group, so the group reads each cache tile once and decode steps of GQA models fill the
// block with the group's heads.
template <class T>
__device__ bool block_rows(const srlm_attention_kv_params &p, fwd_rows<T> &f, int tile_rows = kRows) {
  const long long R = p.NH / p.NKV;
  const int i = block_sequence(p.cu_q, p.n, R, blockIdx.x, tile_rows);
  const long long q0 = p.cu_q[i], nq = p.cu_q[i + 1] - q0;
  const long long row0 = ((long long)blockIdx.x - first_block(q0, i, R, tile_rows)) * tile_rows;
  if (row0 >= nq * R) return false;
  const long long g = blockIdx.y, len = p.kv_len[i];
  const long long cache0 = (long long)p.slot[i] * p.max_len * p.NKV * p.HS + g * p.HS;
  f.q = static_cast<const T *>(p.q) + q0 * p.NH * p.HS;
  f.out = static_cast<T *>(p.out) + q0 * p.NH * p.HS;
  f.lse = nullptr;
  f.k = static_cast<const T *>(p.k_cache) + cache0;
  f.v = static_cast<const T *>(p.v_cache) + cache0;
  f.q_ld = p.NH * p.HS;
  f.kv_ld = p.NKV * p.HS;
  f.lse_ld = p.NH;
  f.row0 = row0;
  f.nrows = nq * R;
  f.R = R;
  f.hbase = g * R;
  f.pos0 = len - nq;
  f.W = p.window;
  f.causal = true;
  f.HS = (int)p.HS;
  f.scale = p.scale;
  return true;
}

// ---- tensor-core tiles (attention_mma.cu, attention_mma_bwd.cu) ------------------------------

constexpr int kMmaWarps = 4;
constexpr int kMmaRows = 16 * kMmaWarps;     // 64 rows per block
constexpr int kMmaThreads = 32 * kMmaWarps;  // 128
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

// Key tile width for a padded head dim: 64, or 32 above 128 (shared memory, registers).
__host__ __device__ constexpr int mma_keys(int kHSP) { return kHSP > 128 ? 32 : 64; }
// Row stride in shared memory (elements): 16 bytes past the padded row.
__host__ __device__ constexpr int mma_ld(int kHSP) { return kHSP + 8; }
inline size_t mma_smem(int kHSP) {
  return (size_t)(kMmaRows + 4 * mma_keys(kHSP)) * mma_ld(kHSP) * sizeof(__nv_bfloat16);
}

// Rows [0, nrows) of a (., HS) bf16 matrix into shared memory (row stride mma_ld(kHSP)),
// each padded with zeros to kHSP; rows nrows .. rows - 1 all zero. Row rr's elements start
// at src + off(rr). kChunk: bytes per cp.async (16: HS % 8 == 0 and 16-byte aligned rows).
template <int kHSP, int kChunk, class Off>
__device__ __forceinline__ void mma_load(__nv_bfloat16 *dst, const __nv_bfloat16 *src, int rows, int nrows, int HS,
                                         Off off) {
  constexpr int kE = kChunk / 2, kPerRow = kHSP / kE;  // elements per copy, copies per row
  for (int e = threadIdx.x; e < rows * kPerRow; e += kMmaThreads) {
    const int rr = e / kPerRow, d = (e - rr * kPerRow) * kE;
    const bool in = rr < nrows && d < HS;
    srlm_cp_async<kChunk>(dst + rr * mma_ld(kHSP) + d, in ? src + off(rr) + d : src, in ? kChunk : 0);
  }
}

// The double-buffered tile loop's wait (every kernel streams tiles 0 .. n - 1 through two
// shared-memory stages, tile `it` in stage it & 1): before tile `it` is used, start the
// next tile's copies into the other stage (load_next(), one commit group) and wait for all
// but that group, or, at the last tile, for everything; then a barrier, so every thread's
// copies of tile `it` (and of what was loaded before the loop) have landed. The caller
// puts a barrier at the end of each iteration, before the next refill overwrites a stage
// that warps may still read (the simulator reports a refill without one).
template <class LoadNext>
__device__ __forceinline__ void mma_tile_wait(long long it, long long n, LoadNext load_next) {
  if (it + 1 < n) {
    load_next();
    srlm_cp_async_commit();
    srlm_cp_async_wait<1>();
  } else {
    srlm_cp_async_wait<0>();
  }
  __syncthreads();
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
         (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16;
}
// The bf16 part of x and what is left of it.
__device__ __forceinline__ float bf16_hi(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// ---- host side ------------------------------------------------------------------------------

// Lets `kernel` have `smem` bytes of dynamic shared memory (opting in past 48 KiB; at most
// dkv_smem(256), 137 KiB, within the A100's 163). More than the device allows (99 KB on compute
// capability 8.6 and 8.9: L40S, L4, A10, RTX 30/40) is an error naming the sizes; callers with
// a smaller kernel check fits() first.
inline bool fits(const context *c, size_t smem) { return smem <= c->smem_optin; }
template <class K>
srlm_status opt_in(const context *c, K kernel, size_t smem) {
  if (!fits(c, smem))
    return srlm_error(SRLM_ERR_UNSUPPORTED, SRLM_CUDA_NAME " attention",
                      "this head dim's kernel needs %zu bytes of shared memory per block; device %d (compute "
                      "capability %d.%d) allows %zu",
                      smem, c->device, c->cc / 10, c->cc % 10, c->smem_optin);
  if (smem > kSmemDefault)
    SRLM_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  return SRLM_OK;
}

// The check kernel of the op (its flag in the workspace's first int).
template <class T, class Params>
srlm_status launch_check(context *c, const Params &p, int *bad, srlm_op_id op) {
  auto check = attention_check_kernel<T, Params>;
  SRLM_LAUNCH(check, 1, kCheckThreads, 0, c->stream, p, bad, c->kerr, (int)op);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

constexpr size_t kFlagBytes = 16;  // the workspace's flag, then (backward) D

// The tensor-core forward's copy size for these operands: 16 or 4 bytes, 0 when it does not
// apply (fp32, an odd head dim, a head dim past 256, operands not 4-byte aligned).
inline int mma_chunk(srlm_dtype dtype, long long HS, const void *q, const void *k, const void *v) {
  if (dtype != SRLM_BF16 || HS % 2 != 0 || HS > kMaxHS) return 0;
  const uintptr_t a = (uintptr_t)q | (uintptr_t)k | (uintptr_t)v;
  if (HS % 8 == 0 && a % 16 == 0) return 16;
  return a % 4 == 0 ? 4 : 0;
}
inline int mma_chunk(const srlm_attention_params &p) { return mma_chunk(p.dtype, p.HS, p.q, p.k, p.v); }
inline int mma_chunk(const srlm_attention_kv_params &p) { return mma_chunk(p.dtype, p.HS, p.q, p.k_cache, p.v_cache); }
inline int mma_chunk(const srlm_attention_bwd_params &p) {  // dout is read by cp.async too
  const int a = mma_chunk(p.dtype, p.HS, p.q, p.k, p.v), b = mma_chunk(p.dtype, p.HS, p.dout, p.dout, p.dout);
  return a < b ? a : b;
}

// Calls f(std::integral_constant<int, kHSP>) for the padded head dim of the tensor-core
// forward: 64 and 128 (the models' head dims) exactly; the others padded (32, 256).
template <class F>
srlm_status hsp_class(long long HS, F &&f) {
  if (HS <= 32) return f(std::integral_constant<int, 32>());
  if (HS <= 64) return f(std::integral_constant<int, 64>());
  if (HS <= 128) return f(std::integral_constant<int, 128>());
  return f(std::integral_constant<int, 256>());
}

// ---- split-KV attention_kv (flash-decoding) ------------------------------------------------
//
// A decode step has one query per sequence: its blocks are (sequence, kv group), far fewer
// than a GPU's SMs, each streaming a whole cache. The tensor-core attention_kv therefore
// splits each sequence's keys into pieces at fixed positions (0, K, 2K, ...; grid z = the
// piece), each block writing its rows' partial output (normalized) and base-2 lse to the
// workspace; attention_combine_kernel then merges a row's pieces in piece order: out = sum_s
// 2^(lse_s - M) o_s / sum_s 2^(lse_s - M), M = max_s lse_s. The piece size K comes from the
// sequence's own length (include/srlm/attn_split.h, shared with the memory plan, which counts
// the workspace): the smallest of 64, 128, 256, 512 that cuts it into at most 8 pieces, else
// 512 (a 1k context: 8 pieces of 128, 32k: 64 of 512; 8 pieces of a batch-1 decode are 8
// blocks per kv head instead of 1, and 512 keys per block past 4k keep the combine's reads
// small next to the cache's). Never from the batch or from max_len: a sequence's bits are the
// same run after run and whatever else shares the batch.
// A cache of at most 64 positions is one piece, and the merge of one piece (weight exactly 1)
// leaves the forward's bits; past that a decode step's bits are no longer the full
// forward's (backend.h, attention_kv).

}  // namespace

// The launchers of the tensor-core kernels, for attention.cu's dispatch:
// each queues its kernels on c->stream after the op's check kernel (flag `bad`).
// The forward and attention_kv (attention_mma.cu; one block per 64 rows: grid `grid`), where
// mma_chunk(p) != 0.
srlm_status attention_mma_forward(context *c, const srlm_attention_params &p, const int *bad, dim3 grid);
srlm_status attention_mma_kv(context *c, const srlm_attention_kv_params &p, const int *bad, dim3 grid);
// The Hopper forward (attention_wgmma.cu; 128 rows per block, its own grid), where
// wgmma_eligible(p) (bf16, head dim 64 or 128, 16-byte aligned q, k, v) and attention_path says
// so: SRLM_CUDA_ATTENTION = auto (the default: on a compute capability 9.0 GPU once a small
// forward agrees with the mma.sync kernel; never on the simulator), mma, wgmma (forced; the
// simulator runs it too) or check (as auto, on the simulator as well).
bool wgmma_eligible(const srlm_attention_params &p);
srlm_status attention_path(context *c, bool *use);
srlm_status attention_wgmma_forward(context *c, const srlm_attention_params &p, const int *bad);
// attention_kv by split-KV (its own workspace, check kernel included), where mma_chunk(p) != 0.
srlm_status attention_kv_split(context *c, const srlm_attention_kv_params &p);
// The backward's dK/dV and dQ passes on tensor cores (attention_mma_bwd.cu), after the check
// kernel and D = rowsum(dout * out) (fp32, (T, NH)), where mma_chunk(p) != 0 and p.T > 0.
srlm_status attention_mma_backward(context *c, const srlm_attention_bwd_params &p, const float *D, const int *bad);
// Whether its blocks' shared memory fits the device (not at head dims 65-128 on the 99 KB of
// compute capability 8.6/8.9, where the fp32-tile backward takes over).
bool attention_mma_backward_fits(const context *c, long long HS);

}  // namespace SRLM_CUDA_NS

#endif
