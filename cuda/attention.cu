// Causal grouped-query attention on the GPU, fp32 or bf16: attention_forward and
// attention_backward over packed sequences (cu_seqlens), attention_kv against the KV cache.
// The masking and the per-element arithmetic are the CPU twin's (src/backend/cpu/attention.c):
// query i of a sequence sees keys j <= i with i - j < window (window > 0); bf16 is read to
// fp32, everything is accumulated in fp32 and each result is rounded once to the dtype.
//
// Two forward kernels, chosen per call (queue_forward):
// - bf16 with an even head dim up to 256 and 4-byte aligned q, k, v: the tensor-core kernel
//   ("bf16 forward on tensor cores" below: 64 query rows per block, cp.async double-buffered
//   K/V tiles, ldmatrix + mma.sync m16n8k16, online softmax in base 2), for attention_forward
//   and attention_kv alike, so a query still gets the same bits in a full forward, a prefill
//   chunk or a decode step;
// - everything else (fp32, odd head dims, unaligned operands): the fp32-tile kernel below.
// attention_kv reads each cache tile once per kv group (the group's query heads share a
// block); on the tensor-core path with caches past kSplitKeys = 512 positions it runs split-KV
// (flash-decoding: pieces of 512 keys in parallel, merged by their lse; see "split-KV" below),
// so its bits match the forward's only up to 512 cached positions (backend.h).
// The backward (both dtypes) is the fp32-tile kernel's: the tensor-core backward is not
// written yet.
//
// The fp32-tile kernel, a straightforward one with the shape of FlashAttention-2:
// - 256 threads, a tile of kRows rows x kCols columns; 8 lanes (one eighth of a warp) per
//   row: lane `sub` computes the scores of columns sub, sub + 8, ... (each a full fma chain
//   over the head dim in order, as the CPU's GEMM) and owns the output dims sub, sub + 8, ...
//   Operands are staged in shared memory as fp32, rows padded to an odd stride (HS | 1) so
//   that the 4 rows x 8 columns a warp reads lie in different banks.
// - Forward (and KV): a block per (query tile, head, sequence); K/V tiles of kCols keys go
//   through shared memory with an online softmax (running max m and sum l per row). Key tiles
//   are aligned to multiples of kCols from position 0 and a row skips the tiles in which it
//   sees no key, so a row's arithmetic depends only on its own query and keys: a query gets
//   the same bits in a full forward, a prefill chunk or a decode step (attention_kv packs the
//   NH / NKV query heads of a group into the rows of one block, so the group reads each cache
//   tile once, and shares the forward's row code).
// - Backward (FlashAttention-2: probabilities recomputed from q, k and the saved lse):
//   D = rowsum(dout * out) by a small kernel; then a dQ pass, a block per (query tile, head,
//   sequence) over the key tiles, and a dK/dV pass, a block per (key tile, kv head,
//   sequence) over the query heads of the group in order and, for each, the query tiles that
//   see the keys in order. Each gradient element is one fma chain in the CPU's order, owned
//   by one thread: no atomics, the same bits run after run.
// - Sequence boundaries are device data: grids are sized from T and B alone (first_block),
//   and a one-block check kernel runs first. A bad cu_seqlens / cu_q entry, KV slot or length
//   is recorded (kerr_record: the first bad sequence), every output is filled with NaN (the
//   CPU refuses the whole op), and the other kernels of the op do nothing (a flag in the
//   workspace), so nothing reads or writes outside its buffers.
#include <limits.h>

#include <type_traits>

#include "common.cuh"
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
long long grid_blocks(long long total, long long n, long long R, long long rows = kRows) {
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

// ---- the shared arithmetic --------------------------------------------------------------

// s[i] = x . Y[sub + kLanes i] over d < HS: each one fma chain in d order (the CPU's GEMM).
__device__ __forceinline__ void dots(const float *x, const float *Y, int lds, int HS, int sub, float s[kPerLane]) {
#pragma unroll
  for (int i = 0; i < kPerLane; i++) s[i] = 0.0f;
  for (int d = 0; d < HS; d++) {
    const float xd = x[d];
#pragma unroll
    for (int i = 0; i < kPerLane; i++) s[i] = fmaf(xd, Y[(sub + kLanes * i) * lds + d], s[i]);
  }
}

// Max and sum over a row's kLanes lanes (a butterfly: every lane gets the same bits, in the
// same order in every kernel).
__device__ __forceinline__ float row_max(float v) {
  for (int off = kLanes / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
__device__ __forceinline__ float row_sum(float v) {
  for (int off = kLanes / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Rows [0, nrows) of a matrix into shared memory as fp32 (row stride lds): row rr's HS
// elements start at src + off(rr).
template <class T, class Off>
__device__ __forceinline__ void load_rows(float *dst, int lds, const T *src, int nrows, int HS, Off off) {
  for (int e = threadIdx.x; e < nrows * HS; e += kThreads) {
    const int rr = e / HS, d = e - rr * HS;
    dst[rr * lds + d] = ld(src + off(rr) + d);
  }
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
  int HS;
  float scale;
  // split-KV (the tensor-core attention_kv on long caches): only keys [klo, khi] are read,
  // and the rows' partial results go to part (fp32, out's layout) and part_lse (base 2,
  // lse's layout; -inf for a row that sees no key here) instead of out
  long long klo = 0, khi = LLONG_MAX;
  float *part = nullptr, *part_lse = nullptr;
};

// Shared memory of the forward: Q (kRows, lds), K and V (kCols, lds), P (kRows, kCols + 1).
size_t forward_smem(long long HS) {
  return ((size_t)(kRows + 2 * kCols) * smem_ld(HS) + (size_t)kRows * (kCols + 1)) * sizeof(float);
}

template <class T, int kHS>
__device__ void forward_rows(const fwd_rows<T> &f) {
  constexpr int kDims = kHS / kLanes;  // output dims per thread
  const int HS = f.HS, lds = smem_ld(HS), ldp = kCols + 1;
  float *Qs = srlm_dyn_smem<float>();  // (kRows, lds)
  float *Ks = Qs + kRows * lds;        // (kCols, lds)
  float *Vs = Ks + kCols * lds;        // (kCols, lds)
  float *Ps = Vs + kCols * lds;        // (kRows, ldp) this tile's probabilities
  const int r = threadIdx.x / kLanes, sub = threadIdx.x % kLanes;
  const int rows = (int)lmin(kRows, f.nrows - f.row0);
  const long long R = f.R;
  // this thread's row: query qi at position P, seeing keys [lo, P]
  const bool active = r < rows;
  const long long rho = f.row0 + r, qi = rho / R, head = f.hbase + rho % R;
  const long long P = f.pos0 + qi, lo = key_lo(P, f.W);
  // the block's keys: from the first row's first key to the last row's position
  const long long jlo = key_lo(f.pos0 + f.row0 / R, f.W), jhi = f.pos0 + (f.row0 + rows - 1) / R;
  load_rows(Qs, lds, f.q, rows, HS, [&](int rr) {
    const long long x = f.row0 + rr;
    return (x / R) * f.q_ld + (f.hbase + x % R) * HS;
  });
  float m = -INFINITY, l = 0.0f, acc[kDims];
#pragma unroll
  for (int k = 0; k < kDims; k++) acc[k] = 0.0f;
  for (long long jt = jlo / kCols * kCols; jt <= jhi; jt += kCols) {
    __syncthreads();  // the Q tile is in; the previous K/V tile is read
    load_rows(Ks, lds, f.k, (int)lmin(kCols, jhi + 1 - jt), HS, [&](int c) { return (jt + c) * f.kv_ld; });
    load_rows(Vs, lds, f.v, (int)lmin(kCols, jhi + 1 - jt), HS, [&](int c) { return (jt + c) * f.kv_ld; });
    __syncthreads();
    // the row's keys in this tile: columns [a, b]
    const int a = (int)(lmax(lo, jt) - jt), b = (int)(lmin(P, jt + kCols - 1) - jt);
    const bool vis = active && a <= b;
    float s[kPerLane], mt = -INFINITY;
    dots(Qs + r * lds, Ks, lds, HS, sub, s);
#pragma unroll
    for (int i = 0; i < kPerLane; i++) {
      const int c = sub + kLanes * i;
      // scaled once and rounded, as the CPU's scores (__fmul_rn: never fused into the exp's subtraction)
      s[i] = vis && c >= a && c <= b ? __fmul_rn(s[i], f.scale) : -INFINITY;
      mt = fmaxf(mt, s[i]);
    }
    const float mn = fmaxf(m, row_max(mt));
    float ps = 0.0f;
#pragma unroll
    for (int i = 0; i < kPerLane; i++) {
      const int c = sub + kLanes * i;
      const float pr = vis && c >= a && c <= b ? expf(__fsub_rn(s[i], mn)) : 0.0f;
      Ps[r * ldp + c] = pr;
      ps += pr;
    }
    ps = row_sum(ps);
    __syncwarp();  // the row's probabilities are written (its lanes share a warp)
    if (vis) {
      const float alpha = expf(__fsub_rn(m, mn));  // 0 on the row's first tile (m = -inf)
      l = fmaf(l, alpha, ps);
#pragma unroll
      for (int k = 0; k < kDims; k++) {
        const int d = sub + kLanes * k;
        if (d >= HS) continue;
        float o = __fmul_rn(acc[k], alpha);
        for (int c = a; c <= b; c++) o = fmaf(Ps[r * ldp + c], Vs[c * lds + d], o);
        acc[k] = o;
      }
      m = mn;
    }
  }
  if (!active) return;
  const float inv = 1.0f / l;  // the CPU's out = (P V) * (1 / sum)
  T *o = f.out + qi * f.q_ld + head * HS;
#pragma unroll
  for (int k = 0; k < kDims; k++) {
    const int d = sub + kLanes * k;
    if (d < HS) st(o + d, __fmul_rn(acc[k], inv));
  }
  if (f.lse && sub == 0) f.lse[qi * f.lse_ld + head] = m + logf(l);
}

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
  f.HS = (int)p.HS;
  f.scale = p.scale;
  return true;
}

// attention_forward (Params srlm_attention_params) and attention_kv (srlm_attention_kv_params).
template <class T, int kHS, class Params>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(Params p, const int *bad) {
  if (*bad) return;
  fwd_rows<T> f;
  if (block_rows(p, f)) forward_rows<T, kHS>(f);
}

// ---- bf16 forward on tensor cores -------------------------------------------------------
//
// The same rows as forward_rows (fwd_rows: a forward's query tile of one head, or attention_kv's
// (query, head) pairs of one kv group), kMmaRows = 64 of them per block: 4 warps of 16 rows.
// Q, then K/V tiles of kN keys, go to shared memory as bf16 by cp.async, the K/V tiles double
// buffered (tile i + 1 loads while tile i is used). Rows are padded to a multiple of 16 dims
// (kHSP; the padding is zero-filled, so it adds nothing) plus 8 elements, so ldmatrix's 8 rows
// of 16 bytes fall in different banks. Each warp: S = Q K^T by mma.sync m16n8k16 (operands by
// ldmatrix; fp32 accumulation), masked, online softmax in registers in base 2 with the scale
// folded in (s * scale * log2 e, exp2), P (bf16 hi + lo parts, below) times V by mma into
// fp32 accumulators, rescaled by exp2(m_old - m_new) per tile.
// - Key tiles start at multiples of kN from position 0, and a warp skips the tiles in which
//   none of its 16 rows sees a key (causal tiles above the diagonal, keys left of a window);
//   in a tile a row sees nothing of, its update is exact: alpha = 1 and P = 0. So a row's
//   bits depend only on its own query and keys: attention_forward, a prefill chunk and a
//   decode step give a query the same bits on this kernel, as on the fp32-tile kernel.
// - P enters the P V product as two bf16 parts, hi = bf16(p) and lo = bf16(p - hi) (two mmas),
//   so the product keeps about 16 bits of each probability: rounding P to bf16 alone errs by
//   up to 2^-9 of the output's terms, as much as the output's own rounding, which the 2x rule
//   against the fp32 CPU does not leave room for. (The price: a third more mma work than
//   FlashAttention-2's single bf16 P.)
// - Keys past the block's last position (another sequence's, or past the cache's length,
//   where the cache may hold anything) are zero-filled by cp.async, so a masked key's V is
//   finite and 0 * V adds nothing.
// Taken when the dtype is bf16, HS is even (up to 256) and q, k, v are 4-byte aligned
// (16-byte copies where HS % 8 == 0 and the pointers are 16-byte aligned); anything else
// runs the fp32-tile kernel above.
constexpr int kMmaWarps = 4;
constexpr int kMmaRows = 16 * kMmaWarps;     // 64 rows per block
constexpr int kMmaThreads = 32 * kMmaWarps;  // 128
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

// Key tile width for a padded head dim: 64, or 32 above 128 (shared memory, registers).
__host__ __device__ constexpr int mma_keys(int kHSP) { return kHSP > 128 ? 32 : 64; }
// Row stride in shared memory (elements): 16 bytes past the padded row.
__host__ __device__ constexpr int mma_ld(int kHSP) { return kHSP + 8; }
size_t mma_smem(int kHSP) {
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

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
         (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16;
}
// The bf16 part of x and what is left of it.
__device__ __forceinline__ float bf16_hi(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

template <int kHSP, int kChunk>
__device__ void forward_rows_mma(const fwd_rows<__nv_bfloat16> &f) {
  constexpr int kN = mma_keys(kHSP), kLd = mma_ld(kHSP);
  constexpr int kNT = kN / 8;     // score n-tiles of a warp (8 keys each)
  constexpr int kDT = kHSP / 8;   // output n-tiles (8 dims each)
  constexpr int kKQ = kHSP / 16;  // k-steps of Q K^T
  constexpr int kKP = kN / 16;    // k-steps of P V
  using bf16 = __nv_bfloat16;
  bf16 *Qs = srlm_dyn_smem<bf16>();  // (kMmaRows, kLd)
  bf16 *Ks = Qs + kMmaRows * kLd;    // 2 stages of (kN, kLd)
  bf16 *Vs = Ks + 2 * kN * kLd;      // 2 stages of (kN, kLd)
  const int HS = f.HS, warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const long long R = f.R;
  const int rows = (int)lmin(kMmaRows, f.nrows - f.row0);
  // the block's keys: from the first row's first key to the last row's position
  // (within the split's keys [klo, khi])
  const long long jlo = lmax(f.klo, key_lo(f.pos0 + f.row0 / R, f.W));
  const long long jhi = lmin(f.khi, f.pos0 + (f.row0 + rows - 1) / R);
  // this warp's rows and keys (a warp past the block's rows has none: wj_hi < wj_lo)
  const int wrows = (int)lmin(16, lmax(0, rows - 16 * warp));
  const long long wr0 = f.row0 + 16 * warp;
  const long long wj_lo = wrows > 0 ? lmax(f.klo, key_lo(f.pos0 + wr0 / R, f.W)) : 1;
  const long long wj_hi = wrows > 0 ? lmin(f.khi, f.pos0 + (wr0 + wrows - 1) / R) : 0;
  // this thread's two rows: g and g + 8 of the warp's 16
  long long P[2], lo[2];  // its keys: [lo, P] (within the split)
  bool valid[2];
  for (int h = 0; h < 2; h++) {
    const int r = 16 * warp + g + 8 * h;
    valid[h] = r < rows;
    P[h] = lmin(f.khi, f.pos0 + (f.row0 + r) / R);
    lo[h] = lmax(f.klo, key_lo(f.pos0 + (f.row0 + r) / R, f.W));
  }
  const float scale2 = f.scale * kLog2e;
  const long long jt0 = jlo / kN * kN, ntiles = jlo <= jhi ? (jhi - jt0) / kN + 1 : 0;
  auto load_kv = [&](long long jt, int stage) {
    const int n = (int)lmin(kN, jhi + 1 - jt);
    mma_load<kHSP, kChunk>(Ks + stage * kN * kLd, f.k, kN, n, HS, [&](int c) { return (jt + c) * f.kv_ld; });
    mma_load<kHSP, kChunk>(Vs + stage * kN * kLd, f.v, kN, n, HS, [&](int c) { return (jt + c) * f.kv_ld; });
  };
  mma_load<kHSP, kChunk>(Qs, f.q, kMmaRows, rows, HS, [&](int rr) {
    const long long x = f.row0 + rr;
    return (x / R) * f.q_ld + (f.hbase + x % R) * HS;
  });
  if (ntiles > 0) load_kv(jt0, 0);
  srlm_cp_async_commit();
  if (ntiles == 0) srlm_cp_async_wait<0>();  // a split none of the block's rows sees a key of
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, acc[kDT][4];
#pragma unroll
  for (int n = 0; n < kDT; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
  uint32_t qa[kKQ][4];  // this warp's Q fragments, loaded once
  for (long long it = 0; it < ntiles; it++) {
    const long long jt = jt0 + it * kN;
    const int stage = (int)(it & 1);
    if (it + 1 < ntiles) {
      load_kv(jt + kN, stage ^ 1);
      srlm_cp_async_commit();
      srlm_cp_async_wait<1>();
    } else {
      srlm_cp_async_wait<0>();
    }
    __syncthreads();  // tile it (and Q) landed for every thread's copies
    if (it == 0) {
#pragma unroll
      for (int kk = 0; kk < kKQ; kk++)
        ldmatrix_x4(qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], Qs + (16 * warp + lane % 16) * kLd + kk * 16 + (lane / 16) * 8);
    }
    // warp-uniform: does any of the warp's rows see a key of this tile?
    if (jt <= wj_hi && jt + kN - 1 >= wj_lo) {
      const bf16 *K = Ks + stage * kN * kLd, *V = Vs + stage * kN * kLd;
      float s[kNT][4];
#pragma unroll
      for (int n = 0; n < kNT; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < kKQ; kk++) {
#pragma unroll
        for (int n = 0; n < kNT; n += 2) {
          uint32_t b[4];
          ldmatrix_x4(b[0], b[1], b[2], b[3], K + (n * 8 + lane % 8 + (lane / 16) * 8) * kLd + kk * 16 + ((lane / 8) % 2) * 8);
          mma_m16n8k16_bf16(s[n], qa[kk], b, s[n]);
          mma_m16n8k16_bf16(s[n + 1], qa[kk], b + 2, s[n + 1]);
        }
      }
      // mask, scale into base 2, the rows' new maxima (a row's 4 lanes: t = 0..3)
      float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int n = 0; n < kNT; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
          const int h = i / 2;
          const long long j = jt + n * 8 + 2 * t + i % 2;
          s[n][i] = valid[h] && j >= lo[h] && j <= P[h] ? __fmul_rn(s[n][i], scale2) : -INFINITY;
          mt[h] = fmaxf(mt[h], s[n][i]);
        }
      float alpha[2], mu[2];
#pragma unroll
      for (int h = 0; h < 2; h++) {
        mt[h] = fmaxf(mt[h], __shfl_xor_sync(0xffffffffu, mt[h], 1));
        mt[h] = fmaxf(mt[h], __shfl_xor_sync(0xffffffffu, mt[h], 2));
        const float mn = fmaxf(m[h], mt[h]);
        mu[h] = mn == -INFINITY ? 0.0f : mn;  // a row that has seen nothing yet: P = 0, alpha = 0
        alpha[h] = exp2f(__fsub_rn(m[h], mu[h]));
        m[h] = mn;
      }
      float ps[2] = {0.0f, 0.0f};
      uint32_t pa[kKP][4], pl[kKP][4];  // P's hi and lo parts as A fragments
#pragma unroll
      for (int n = 0; n < kNT; n++) {
        float pr[4], hi[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
          pr[i] = exp2f(__fsub_rn(s[n][i], mu[i / 2]));
          ps[i / 2] += pr[i];
          hi[i] = bf16_hi(pr[i]);
        }
        // n-tile n holds keys 8n..8n+7: k-step n / 2, registers (n % 2) * 2 + row half
        pa[n / 2][(n % 2) * 2 + 0] = pack_bf16(hi[0], hi[1]);
        pa[n / 2][(n % 2) * 2 + 1] = pack_bf16(hi[2], hi[3]);
        pl[n / 2][(n % 2) * 2 + 0] = pack_bf16(__fsub_rn(pr[0], hi[0]), __fsub_rn(pr[1], hi[1]));
        pl[n / 2][(n % 2) * 2 + 1] = pack_bf16(__fsub_rn(pr[2], hi[2]), __fsub_rn(pr[3], hi[3]));
      }
#pragma unroll
      for (int h = 0; h < 2; h++) l[h] = fmaf(l[h], alpha[h], ps[h]);
#pragma unroll
      for (int n = 0; n < kDT; n++) {
        acc[n][0] = __fmul_rn(acc[n][0], alpha[0]);
        acc[n][1] = __fmul_rn(acc[n][1], alpha[0]);
        acc[n][2] = __fmul_rn(acc[n][2], alpha[1]);
        acc[n][3] = __fmul_rn(acc[n][3], alpha[1]);
      }
#pragma unroll
      for (int kk = 0; kk < kKP; kk++) {
#pragma unroll
        for (int n = 0; n < kDT; n += 2) {
          uint32_t b[4];
          ldmatrix_x4_trans(b[0], b[1], b[2], b[3],
                            V + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kLd + n * 8 + (lane / 16) * 8);
          mma_m16n8k16_bf16(acc[n], pl[kk], b, acc[n]);
          mma_m16n8k16_bf16(acc[n + 1], pl[kk], b + 2, acc[n + 1]);
          mma_m16n8k16_bf16(acc[n], pa[kk], b, acc[n]);
          mma_m16n8k16_bf16(acc[n + 1], pa[kk], b + 2, acc[n + 1]);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before tile it + 2 loads into it
  }
#pragma unroll
  for (int h = 0; h < 2; h++) {
    float sum = l[h];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    if (!valid[h]) continue;
    const long long rho = f.row0 + 16 * warp + g + 8 * h, qi = rho / R, head = f.hbase + rho % R;
    const float inv = 1.0f / sum;
    if (f.part) {  // split-KV: the split's normalized output and base-2 lse (0 and -inf: no key)
      float *o = f.part + qi * f.q_ld + head * HS;
#pragma unroll
      for (int n = 0; n < kDT; n++) {
        const int d = n * 8 + 2 * t;
        if (d >= HS) continue;
        o[d] = sum > 0.0f ? __fmul_rn(acc[n][2 * h], inv) : 0.0f;
        o[d + 1] = sum > 0.0f ? __fmul_rn(acc[n][2 * h + 1], inv) : 0.0f;
      }
      if (t == 0) f.part_lse[qi * f.lse_ld + head] = sum > 0.0f ? __fadd_rn(m[h], log2f(sum)) : -INFINITY;
      continue;
    }
    bf16 *o = f.out + qi * f.q_ld + head * HS;
#pragma unroll
    for (int n = 0; n < kDT; n++) {
      const int d = n * 8 + 2 * t;
      if (d >= HS) continue;
      st(o + d, __fmul_rn(acc[n][2 * h], inv));
      st(o + d + 1, __fmul_rn(acc[n][2 * h + 1], inv));
    }
    if (f.lse && t == 0) f.lse[qi * f.lse_ld + head] = __fmul_rn(__fadd_rn(m[h], log2f(sum)), kLn2);
  }
}

template <int kHSP, int kChunk, class Params>
__global__ void __launch_bounds__(kMmaThreads) attention_mma_kernel(Params p, const int *bad) {
  if (*bad) return;
  fwd_rows<__nv_bfloat16> f;
  if (block_rows(p, f, kMmaRows)) forward_rows_mma<kHSP, kChunk>(f);
}

// ---- split-KV attention_kv (flash-decoding) ------------------------------------------------
//
// A decode step has one query per sequence: its blocks are (sequence, kv group), far fewer
// than a GPU's SMs, each streaming a whole cache. On caches longer than kSplitKeys positions
// the tensor-core attention_kv therefore splits the keys into pieces of kSplitKeys at fixed
// positions (0, kSplitKeys, ...; grid z = the split), each block writing its rows' partial
// output (normalized) and base-2 lse to the workspace; attention_combine_kernel then merges a
// row's pieces in split order: out = sum_s 2^(lse_s - M) o_s / sum_s 2^(lse_s - M), M = max_s
// lse_s. The pieces depend only on the sequence's own length (never on the batch), so the
// bits are the same run after run and whatever else shares the batch; a cache of at most
// kSplitKeys positions is one piece, and the merge of one piece (weight exactly 1) leaves the
// forward's bits. The cost: past kSplitKeys cached positions a decode step's bits are no
// longer the full forward's (backend.h, attention_kv).
constexpr long long kSplitKeys = 512;

template <int kHSP, int kChunk>
__global__ void __launch_bounds__(kMmaThreads)
    attention_mma_split_kernel(srlm_attention_kv_params p, const int *bad, float *part, float *part_lse) {
  if (*bad) return;
  fwd_rows<__nv_bfloat16> f;
  if (!block_rows(p, f, kMmaRows)) return;
  const long long len = f.pos0 + f.nrows / f.R, klo = (long long)blockIdx.z * kSplitKeys;
  if (klo >= len) return;  // past this sequence's cache: its merge stops before this split
  const long long q0 = (f.q - static_cast<const __nv_bfloat16 *>(p.q)) / (p.NH * p.HS);
  const long long rows_all = p.NQ * p.NH;
  f.klo = klo;
  f.khi = klo + kSplitKeys - 1;
  f.part = part + ((long long)blockIdx.z * rows_all + q0 * p.NH) * p.HS;
  f.part_lse = part_lse + (long long)blockIdx.z * rows_all + q0 * p.NH;
  forward_rows_mma<kHSP, kChunk>(f);
}

constexpr int kCombineThreads = 64;

// grid (NQ * NH): row (query q, head h) of out from its sequence's ceil(kv_len / kSplitKeys)
// pieces, in split order.
__global__ void __launch_bounds__(kCombineThreads)
    attention_combine_kernel(srlm_attention_kv_params p, const int *bad, const float *part, const float *part_lse) {
  if (*bad) return;
  const long long row = blockIdx.x, q = row / p.NH, rows_all = p.NQ * p.NH;
  int lo = 0, hi = p.n - 1;  // the sequence of query q: the last i with cu_q[i] <= q
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (p.cu_q[mid] <= q) lo = mid;
    else hi = mid - 1;
  }
  const long long ns = (p.kv_len[lo] + kSplitKeys - 1) / kSplitKeys;
  float M = -INFINITY;
  for (long long sp = 0; sp < ns; sp++) M = fmaxf(M, part_lse[sp * rows_all + row]);
  float wsum = 0.0f;
  for (long long sp = 0; sp < ns; sp++) wsum += exp2f(__fsub_rn(part_lse[sp * rows_all + row], M));
  const float inv = 1.0f / wsum;
  __nv_bfloat16 *out = static_cast<__nv_bfloat16 *>(p.out) + row * p.HS;
  for (long long d = threadIdx.x; d < p.HS; d += kCombineThreads) {
    float o = 0.0f;
    for (long long sp = 0; sp < ns; sp++)
      o = fmaf(exp2f(__fsub_rn(part_lse[sp * rows_all + row], M)), part[(sp * rows_all + row) * p.HS + d], o);
    st(out + d, ns == 1 ? o : __fmul_rn(o, inv));
  }
}

// ---- backward -----------------------------------------------------------------------------

// D[t, h] = dout[t, h] . out[t, h]: one fma chain in d order, the one the scores' dP = dO V^T
// uses, so where out is a single value row dP - D is exactly 0 (as on the CPU).
template <class T>
__global__ void __launch_bounds__(kDThreads) attention_d_kernel(srlm_attention_bwd_params p, float *D) {
  const long long row = (long long)blockIdx.x * kDThreads + threadIdx.x;
  if (row >= p.T * p.NH) return;
  const T *o = static_cast<const T *>(p.out) + row * p.HS, *dout = static_cast<const T *>(p.dout) + row * p.HS;
  float d = 0.0f;
  for (long long c = 0; c < p.HS; c++) d = fmaf(ld(dout + c), ld(o + c), d);
  D[row] = d;
}

// P and dS of one score: p = exp(scale s - lse) (s scaled and rounded first, as the CPU
// does: a lone key gets p = 1 exactly), ds = p (dp - D) scale, 0 where p is.
__device__ __forceinline__ void prob_and_grad(float s, float dp, float lse, float D, float scale, float &p, float &ds) {
  p = expf(__fsub_rn(__fmul_rn(s, scale), lse));
  ds = p == 0.0f ? 0.0f : __fmul_rn(__fmul_rn(p, __fsub_rn(dp, D)), scale);
}

// Shared memory of the dQ pass: Q, dO (kRows, lds), K, V (kCols, lds), dS (kRows, kCols + 1).
size_t dq_smem(long long HS) {
  return ((size_t)(2 * kRows + 2 * kCols) * smem_ld(HS) + (size_t)kRows * (kCols + 1)) * sizeof(float);
}

// grid (grid_blocks(T, B, 1), NH): dq of a query tile of one head, over the key tiles it sees.
template <class T, int kHS>
__global__ void __launch_bounds__(kThreads) attention_dq_kernel(srlm_attention_bwd_params p, const float *D,
                                                                const int *bad) {
  if (*bad || p.B == 0) return;
  constexpr int kDims = kHS / kLanes;  // output dims per thread
  const int b = block_sequence(p.cu_seqlens, p.B, 1, blockIdx.x);
  const long long s0 = p.cu_seqlens[b], L = p.cu_seqlens[b + 1] - s0;
  const long long i0 = ((long long)blockIdx.x - first_block(s0, b, 1)) * kRows;
  if (i0 >= L) return;
  const int HS = (int)p.HS, lds = smem_ld(HS), ldp = kCols + 1;
  const long long h = blockIdx.y, g = h / (p.NH / p.NKV), q_ld = p.NH * p.HS, kv_ld = p.NKV * p.HS, W = p.window;
  float *Qs = srlm_dyn_smem<float>();  // (kRows, lds)
  float *dOs = Qs + kRows * lds;       // (kRows, lds)
  float *Ks = dOs + kRows * lds;       // (kCols, lds)
  float *Vs = Ks + kCols * lds;        // (kCols, lds)
  float *dSs = Vs + kCols * lds;       // (kRows, ldp)
  const int r = threadIdx.x / kLanes, sub = threadIdx.x % kLanes;
  const int rows = (int)lmin(kRows, L - i0);
  const bool active = r < rows;
  const long long i = i0 + r, lo = key_lo(i, W);  // this thread's query sees keys [lo, i]
  const T *q = static_cast<const T *>(p.q) + (s0 + i0) * q_ld + h * HS;
  const T *dout = static_cast<const T *>(p.dout) + (s0 + i0) * q_ld + h * HS;
  const T *k = static_cast<const T *>(p.k) + s0 * kv_ld + g * HS, *v = static_cast<const T *>(p.v) + s0 * kv_ld + g * HS;
  load_rows(Qs, lds, q, rows, HS, [&](int rr) { return rr * q_ld; });
  load_rows(dOs, lds, dout, rows, HS, [&](int rr) { return rr * q_ld; });
  const float lse = active ? p.lse[(s0 + i) * p.NH + h] : 0.0f, Dr = active ? D[(s0 + i) * p.NH + h] : 0.0f;
  const long long jhi = i0 + rows - 1;
  float acc[kDims];
#pragma unroll
  for (int kk = 0; kk < kDims; kk++) acc[kk] = 0.0f;
  for (long long jt = key_lo(i0, W) / kCols * kCols; jt <= jhi; jt += kCols) {
    __syncthreads();
    load_rows(Ks, lds, k, (int)lmin(kCols, jhi + 1 - jt), HS, [&](int c) { return (jt + c) * kv_ld; });
    load_rows(Vs, lds, v, (int)lmin(kCols, jhi + 1 - jt), HS, [&](int c) { return (jt + c) * kv_ld; });
    __syncthreads();
    const int a = (int)(lmax(lo, jt) - jt), bb = (int)(lmin(i, jt + kCols - 1) - jt);
    const bool vis = active && a <= bb;
    float s[kPerLane], dp[kPerLane];
    dots(Qs + r * lds, Ks, lds, HS, sub, s);
    dots(dOs + r * lds, Vs, lds, HS, sub, dp);
#pragma unroll
    for (int c4 = 0; c4 < kPerLane; c4++) {
      const int c = sub + kLanes * c4;
      float pr = 0.0f, ds = 0.0f;
      if (vis && c >= a && c <= bb) prob_and_grad(s[c4], dp[c4], lse, Dr, p.scale, pr, ds);
      dSs[r * ldp + c] = ds;
    }
    __syncwarp();
    if (!vis) continue;
#pragma unroll
    for (int kk = 0; kk < kDims; kk++) {
      const int d = sub + kLanes * kk;
      if (d >= HS) continue;
      float o = acc[kk];
      for (int c = a; c <= bb; c++) o = fmaf(dSs[r * ldp + c], Ks[c * lds + d], o);
      acc[kk] = o;
    }
  }
  if (!active) return;
  T *dq = static_cast<T *>(p.dq) + (s0 + i) * q_ld + h * HS;
#pragma unroll
  for (int kk = 0; kk < kDims; kk++) {
    const int d = sub + kLanes * kk;
    if (d < HS) st(dq + d, acc[kk]);
  }
}

// Shared memory of the dK/dV pass: K, V (kRows, lds), Q, dO (kCols, lds), P and dS
// (kRows, kCols + 1), lse and D of the query tile (kCols each).
size_t dkv_smem(long long HS) {
  return ((size_t)(2 * kRows + 2 * kCols) * smem_ld(HS) + (size_t)2 * kRows * (kCols + 1) + 2 * kCols) *
         sizeof(float);
}

// grid (grid_blocks(T, B, 1), NKV): dk, dv of a key tile of one kv head; for each query head
// of the group in order, the query tiles that see the keys in order. Each element's sum is
// one fma chain over (head, query) ascending: the CPU's order.
template <class T, int kHS>
__global__ void __launch_bounds__(kThreads) attention_dkv_kernel(srlm_attention_bwd_params p, const float *D,
                                                                 const int *bad) {
  if (*bad || p.B == 0) return;
  constexpr int kDims = kHS / kLanes;  // output dims per thread
  const int b = block_sequence(p.cu_seqlens, p.B, 1, blockIdx.x);
  const long long s0 = p.cu_seqlens[b], L = p.cu_seqlens[b + 1] - s0;
  const long long j0 = ((long long)blockIdx.x - first_block(s0, b, 1)) * kRows;
  if (j0 >= L) return;
  const int HS = (int)p.HS, lds = smem_ld(HS), ldp = kCols + 1;
  const long long g = blockIdx.y, rep = p.NH / p.NKV, q_ld = p.NH * p.HS, kv_ld = p.NKV * p.HS, W = p.window;
  float *Ks = srlm_dyn_smem<float>();  // (kRows, lds)
  float *Vs = Ks + kRows * lds;        // (kRows, lds)
  float *Qs = Vs + kRows * lds;        // (kCols, lds)
  float *dOs = Qs + kCols * lds;       // (kCols, lds)
  float *Ps = dOs + kCols * lds;       // (kRows, ldp)
  float *dSs = Ps + kRows * ldp;       // (kRows, ldp)
  float *lses = dSs + kRows * ldp;     // (kCols)
  float *Ds = lses + kCols;            // (kCols)
  const int r = threadIdx.x / kLanes, sub = threadIdx.x % kLanes;
  const int rows = (int)lmin(kRows, L - j0);
  const bool active = r < rows;
  const long long j = j0 + r;  // this thread's key, seen by queries [j, j + W) (W > 0) or [j, L)
  const long long seen_hi = W > 0 ? lmin(L, j + W) : L;
  const long long i_end = W > 0 ? lmin(L, j0 + rows - 1 + W) : L;  // the block's queries: [j0, i_end)
  load_rows(Ks, lds, static_cast<const T *>(p.k) + (s0 + j0) * kv_ld + g * HS, rows, HS,
            [&](int rr) { return rr * kv_ld; });
  load_rows(Vs, lds, static_cast<const T *>(p.v) + (s0 + j0) * kv_ld + g * HS, rows, HS,
            [&](int rr) { return rr * kv_ld; });
  float acc_k[kDims], acc_v[kDims];
#pragma unroll
  for (int kk = 0; kk < kDims; kk++) acc_k[kk] = acc_v[kk] = 0.0f;
  for (long long hr = 0; hr < rep; hr++) {
    const long long h = g * rep + hr;
    const T *q = static_cast<const T *>(p.q) + s0 * q_ld + h * HS;
    const T *dout = static_cast<const T *>(p.dout) + s0 * q_ld + h * HS;
    for (long long it = j0; it < i_end; it += kCols) {
      const int nq = (int)lmin(kCols, i_end - it);
      __syncthreads();  // the K/V tile is in; the previous query tile is read
      load_rows(Qs, lds, q, nq, HS, [&](int c) { return (it + c) * q_ld; });
      load_rows(dOs, lds, dout, nq, HS, [&](int c) { return (it + c) * q_ld; });
      if ((int)threadIdx.x < nq) {
        lses[threadIdx.x] = p.lse[(s0 + it + threadIdx.x) * p.NH + h];
        Ds[threadIdx.x] = D[(s0 + it + threadIdx.x) * p.NH + h];
      }
      __syncthreads();
      // the key's queries in this tile: columns [a, bb]
      const int a = (int)(lmax(j, it) - it), bb = (int)(lmin(seen_hi, it + nq) - 1 - it);
      const bool vis = active && a <= bb;
      float s[kPerLane], dp[kPerLane];
      dots(Ks + r * lds, Qs, lds, HS, sub, s);    // k . q = q . k: the same fma chain
      dots(Vs + r * lds, dOs, lds, HS, sub, dp);  // v . dout
#pragma unroll
      for (int c4 = 0; c4 < kPerLane; c4++) {
        const int c = sub + kLanes * c4;
        float pr = 0.0f, ds = 0.0f;
        if (vis && c >= a && c <= bb) prob_and_grad(s[c4], dp[c4], lses[c], Ds[c], p.scale, pr, ds);
        Ps[r * ldp + c] = pr;
        dSs[r * ldp + c] = ds;
      }
      __syncwarp();
      if (!vis) continue;
#pragma unroll
      for (int kk = 0; kk < kDims; kk++) {
        const int d = sub + kLanes * kk;
        if (d >= HS) continue;
        float ok = acc_k[kk], ov = acc_v[kk];
        for (int c = a; c <= bb; c++) {
          ov = fmaf(Ps[r * ldp + c], dOs[c * lds + d], ov);
          ok = fmaf(dSs[r * ldp + c], Qs[c * lds + d], ok);
        }
        acc_k[kk] = ok;
        acc_v[kk] = ov;
      }
    }
  }
  if (!active) return;
  T *dk = static_cast<T *>(p.dk) + (s0 + j) * kv_ld + g * HS, *dv = static_cast<T *>(p.dv) + (s0 + j) * kv_ld + g * HS;
#pragma unroll
  for (int kk = 0; kk < kDims; kk++) {
    const int d = sub + kLanes * kk;
    if (d >= HS) continue;
    st(dk + d, acc_k[kk]);
    st(dv + d, acc_v[kk]);
  }
}

// ---- host side ------------------------------------------------------------------------------

// Calls f(std::integral_constant<int, kHS>) for the smallest head-dim class kHS >= HS.
template <class F>
srlm_status hs_class(long long HS, F &&f) {
  if (HS <= 32) return f(std::integral_constant<int, 32>());
  if (HS <= 64) return f(std::integral_constant<int, 64>());
  if (HS <= 128) return f(std::integral_constant<int, 128>());
  return f(std::integral_constant<int, kMaxHS>());
}

// Grids and head dims these kernels take.
srlm_status check_launch(const char *where, long long HS, long long grid_x, long long grid_y) {
  if (HS > kMaxHS)
    return srlm_error(SRLM_ERR_UNSUPPORTED, where, "head dim HS = %lld: these kernels take at most %d", HS, kMaxHS);
  if (grid_x > INT_MAX || grid_y > 65535)
    return srlm_error(SRLM_ERR_UNSUPPORTED, where, "%lld x %lld blocks are more than a grid holds", grid_x, grid_y);
  return SRLM_OK;
}

// Lets `kernel` have `smem` bytes of dynamic shared memory (opting in past 48 KiB; at most
// dkv_smem(256), 137 KiB, within the A100's 163).
template <class K>
srlm_status opt_in(K kernel, size_t smem) {
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
int mma_chunk(srlm_dtype dtype, long long HS, const void *q, const void *k, const void *v) {
  if (dtype != SRLM_BF16 || HS % 2 != 0 || HS > kMaxHS) return 0;
  const uintptr_t a = (uintptr_t)q | (uintptr_t)k | (uintptr_t)v;
  if (HS % 8 == 0 && a % 16 == 0) return 16;
  return a % 4 == 0 ? 4 : 0;
}
int mma_chunk(const srlm_attention_params &p) { return mma_chunk(p.dtype, p.HS, p.q, p.k, p.v); }
int mma_chunk(const srlm_attention_kv_params &p) { return mma_chunk(p.dtype, p.HS, p.q, p.k_cache, p.v_cache); }

// Calls f(std::integral_constant<int, kHSP>) for the padded head dim of the tensor-core
// forward: 64 and 128 (the models' head dims) exactly; the others padded (32, 256).
template <class F>
srlm_status hsp_class(long long HS, F &&f) {
  if (HS <= 32) return f(std::integral_constant<int, 32>());
  if (HS <= 64) return f(std::integral_constant<int, 64>());
  if (HS <= 128) return f(std::integral_constant<int, 128>());
  return f(std::integral_constant<int, 256>());
}

template <int kHSP, int kChunk, class Params>
srlm_status launch_mma(context *c, const Params &p, const int *bad, dim3 grid) {
  auto kernel = attention_mma_kernel<kHSP, kChunk, Params>;
  SRLM_TRY(opt_in(kernel, mma_smem(kHSP)));
  SRLM_LAUNCH(kernel, grid, kMmaThreads, mma_smem(kHSP), c->stream, p, bad);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

// Queues a forward (attention_forward or attention_kv): the check kernel, then the tiles
// (none when the grid is empty: with no sequence, anything else is the check's error), on
// tensor cores where mma_chunk says so (grid `mma_grid`), else the fp32-tile kernel (`grid`).
template <class Params>
srlm_status queue_forward(context *c, const Params &p, srlm_op_id op, dim3 grid, dim3 mma_grid) {
  void *w;
  SRLM_TRY(workspace(c, kFlagBytes, &w));
  int *bad = static_cast<int *>(w);
  srlm_status st = SRLM_OK;
  const int chunk = mma_chunk(p);
  SRLM_DTYPE_SWITCH(p.dtype, T, {
    st = launch_check<T>(c, p, bad, op);
    if (st == SRLM_OK && grid.x > 0 && chunk)
      st = hsp_class(p.HS, [&](auto hsp) {
        constexpr int kHSP = decltype(hsp)::value;
        return chunk == 16 ? launch_mma<kHSP, 16>(c, p, bad, mma_grid) : launch_mma<kHSP, 4>(c, p, bad, mma_grid);
      });
    else if (st == SRLM_OK && grid.x > 0)
      st = hs_class(p.HS, [&](auto hs) {
        auto forward = attention_forward_kernel<T, decltype(hs)::value, Params>;
        SRLM_TRY(opt_in(forward, forward_smem(p.HS)));
        SRLM_LAUNCH(forward, grid, kThreads, forward_smem(p.HS), c->stream, p, (const int *)bad);
        SRLM_CUDA_LAUNCHED();
        return SRLM_OK;
      });
  });
  return st;
}

// attention_kv by split-KV (the tensor-core kernel per piece, then the merge); only where
// mma_chunk(p) is not 0.
srlm_status queue_kv_split(context *c, const srlm_attention_kv_params &p) {
  const long long splits = (p.max_len + kSplitKeys - 1) / kSplitKeys, rows_all = p.NQ * p.NH;
  if (splits > 65535 || rows_all > INT_MAX)
    return srlm_error(SRLM_ERR_UNSUPPORTED, SRLM_CUDA_NAME " attention_kv", "%lld pieces of %lld rows: too many blocks",
                      splits, rows_all);
  const size_t lse_bytes = ((size_t)(splits * rows_all) * sizeof(float) + 15) / 16 * 16;
  void *w;
  SRLM_TRY(workspace(c, kFlagBytes + lse_bytes + (size_t)(splits * rows_all * p.HS) * sizeof(float), &w));
  int *bad = static_cast<int *>(w);
  float *part_lse = reinterpret_cast<float *>(static_cast<char *>(w) + kFlagBytes);
  float *part = reinterpret_cast<float *>(static_cast<char *>(w) + kFlagBytes + lse_bytes);
  SRLM_TRY(launch_check<__nv_bfloat16>(c, p, bad, SRLM_OP_attention_kv));
  if (rows_all == 0) return SRLM_OK;
  const dim3 grid((unsigned)grid_blocks(p.NQ, p.n, p.NH / p.NKV, kMmaRows), (unsigned)p.NKV, (unsigned)splits);
  const int chunk = mma_chunk(p);
  SRLM_TRY(hsp_class(p.HS, [&](auto hsp) {
    constexpr int kHSP = decltype(hsp)::value;
    auto k16 = attention_mma_split_kernel<kHSP, 16>;
    auto k4 = attention_mma_split_kernel<kHSP, 4>;
    if (chunk == 16) {
      SRLM_TRY(opt_in(k16, mma_smem(kHSP)));
      SRLM_LAUNCH(k16, grid, kMmaThreads, mma_smem(kHSP), c->stream, p, (const int *)bad, part, part_lse);
    } else {
      SRLM_TRY(opt_in(k4, mma_smem(kHSP)));
      SRLM_LAUNCH(k4, grid, kMmaThreads, mma_smem(kHSP), c->stream, p, (const int *)bad, part, part_lse);
    }
    SRLM_CUDA_LAUNCHED();
    return SRLM_OK;
  }));
  SRLM_LAUNCH(attention_combine_kernel, (unsigned)rows_all, kCombineThreads, 0, c->stream, p, (const int *)bad,
              (const float *)part, (const float *)part_lse);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

}  // namespace

srlm_status op_attention_forward(srlm_backend *be, srlm_attention_params p) {
  const char *where = SRLM_CUDA_NAME " attention_forward";
  SRLM_TRY(srlm_attention_params_check(&p, where));
  const size_t es = srlm_dtype_size(p.dtype), nq = (size_t)(p.T * p.NH * p.HS), nkv = (size_t)(p.T * p.NKV * p.HS);
  SRLM_TRY(check_dev(where, "out", p.out, nq * es));
  SRLM_TRY(check_dev(where, "lse", p.lse, (size_t)(p.T * p.NH) * sizeof(float)));
  SRLM_TRY(check_dev(where, "q", p.q, nq * es));
  SRLM_TRY(check_dev(where, "k", p.k, nkv * es));
  SRLM_TRY(check_dev(where, "v", p.v, nkv * es));
  SRLM_TRY(check_dev(where, "cu_seqlens", p.cu_seqlens, (size_t)(p.B + 1) * sizeof(int32_t)));
  SRLM_TRY(check_launch(where, p.HS, grid_blocks(p.T, p.B, 1), p.NH));
  return queue_forward(ctx(be), p, SRLM_OP_attention_forward, dim3((unsigned)grid_blocks(p.T, p.B, 1), (unsigned)p.NH),
                       dim3((unsigned)grid_blocks(p.T, p.B, 1, kMmaRows), (unsigned)p.NH));
}

srlm_status op_attention_kv(srlm_backend *be, srlm_attention_kv_params p) {
  const char *where = SRLM_CUDA_NAME " attention_kv";
  SRLM_TRY(srlm_attention_kv_params_check(&p, where));
  if (p.n == 0 && p.NQ == 0) return SRLM_OK;  // no batch: its tensors may be NULL (backend.h)
  const size_t es = srlm_dtype_size(p.dtype), nq = (size_t)(p.NQ * p.NH * p.HS);
  const size_t ncache = (size_t)p.max_slots * (size_t)p.max_len * (size_t)(p.NKV * p.HS);
  SRLM_TRY(check_dev(where, "out", p.out, nq * es));
  SRLM_TRY(check_dev(where, "q", p.q, nq * es));
  SRLM_TRY(check_dev(where, "k_cache", p.k_cache, ncache * es));
  SRLM_TRY(check_dev(where, "v_cache", p.v_cache, ncache * es));
  SRLM_TRY(check_dev(where, "slot", p.slot, (size_t)p.n * sizeof(int32_t)));
  SRLM_TRY(check_dev(where, "cu_q", p.cu_q, (size_t)(p.n + 1) * sizeof(int32_t)));
  SRLM_TRY(check_dev(where, "kv_len", p.kv_len, (size_t)p.n * sizeof(int32_t)));
  const long long R = p.NH / p.NKV;
  SRLM_TRY(check_launch(where, p.HS, grid_blocks(p.NQ, p.n, R), p.NKV));
  if (mma_chunk(p) && p.max_len > kSplitKeys) return queue_kv_split(ctx(be), p);
  return queue_forward(ctx(be), p, SRLM_OP_attention_kv, dim3((unsigned)grid_blocks(p.NQ, p.n, R), (unsigned)p.NKV),
                       dim3((unsigned)grid_blocks(p.NQ, p.n, R, kMmaRows), (unsigned)p.NKV));
}

srlm_status op_attention_backward(srlm_backend *be, srlm_attention_bwd_params p) {
  const char *where = SRLM_CUDA_NAME " attention_backward";
  SRLM_TRY(srlm_attention_bwd_params_check(&p, where));
  const size_t es = srlm_dtype_size(p.dtype), nq = (size_t)(p.T * p.NH * p.HS), nkv = (size_t)(p.T * p.NKV * p.HS);
  SRLM_TRY(check_dev(where, "dq", p.dq, nq * es));
  SRLM_TRY(check_dev(where, "dk", p.dk, nkv * es));
  SRLM_TRY(check_dev(where, "dv", p.dv, nkv * es));
  SRLM_TRY(check_dev(where, "dout", p.dout, nq * es));
  SRLM_TRY(check_dev(where, "out", p.out, nq * es));
  SRLM_TRY(check_dev(where, "lse", p.lse, (size_t)(p.T * p.NH) * sizeof(float)));
  SRLM_TRY(check_dev(where, "q", p.q, nq * es));
  SRLM_TRY(check_dev(where, "k", p.k, nkv * es));
  SRLM_TRY(check_dev(where, "v", p.v, nkv * es));
  SRLM_TRY(check_dev(where, "cu_seqlens", p.cu_seqlens, (size_t)(p.B + 1) * sizeof(int32_t)));
  const long long blocks = grid_blocks(p.T, p.B, 1);
  SRLM_TRY(check_launch(where, p.HS, blocks, p.NH));
  context *c = ctx(be);
  void *w;
  SRLM_TRY(workspace(c, kFlagBytes + (size_t)(p.T * p.NH) * sizeof(float), &w));
  int *bad = static_cast<int *>(w);
  float *D = reinterpret_cast<float *>(static_cast<char *>(w) + kFlagBytes);  // (T, NH)
  srlm_status st = SRLM_OK;
  SRLM_DTYPE_SWITCH(p.dtype, T, {
    st = launch_check<T>(c, p, bad, SRLM_OP_attention_backward);
    if (st == SRLM_OK && p.T > 0 && blocks > 0) {
      const long long rows = p.T * p.NH;
      auto rowsum = attention_d_kernel<T>;
      SRLM_LAUNCH(rowsum, (unsigned)((rows + kDThreads - 1) / kDThreads), kDThreads, 0, c->stream, p,
                  D);
      SRLM_CUDA_LAUNCHED();
      st = hs_class(p.HS, [&](auto hs) {
        auto dq = attention_dq_kernel<T, decltype(hs)::value>;
        auto dkv = attention_dkv_kernel<T, decltype(hs)::value>;
        SRLM_TRY(opt_in(dq, dq_smem(p.HS)));
        SRLM_TRY(opt_in(dkv, dkv_smem(p.HS)));
        SRLM_LAUNCH(dq, dim3((unsigned)blocks, (unsigned)p.NH), kThreads, dq_smem(p.HS), c->stream, p, (const float *)D,
                    (const int *)bad);
        SRLM_CUDA_LAUNCHED();
        SRLM_LAUNCH(dkv, dim3((unsigned)blocks, (unsigned)p.NKV), kThreads, dkv_smem(p.HS), c->stream, p,
                    (const float *)D, (const int *)bad);
        SRLM_CUDA_LAUNCHED();
        return SRLM_OK;
      });
    }
  });
  return st;
}

}  // namespace SRLM_CUDA_NS
