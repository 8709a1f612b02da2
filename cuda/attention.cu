// Grouped-query attention on the GPU, fp32 or bf16: attention_forward and attention_backward
// over packed sequences (cu_seqlens), causal or not (non_causal), attention_kv (causal) against
// the KV cache.
// This file: the ops (checks, dispatch) and the fp32-tile kernels; the tensor-core kernels are
// in attention_mma.cu (forward, attention_kv, split-KV) and attention_mma_bwd.cu (backward),
// what they share in attention_common.cuh.
// The masking and the per-element arithmetic are the CPU twin's (src/backend/cpu/attention.c):
// query i of a sequence sees keys j <= i with i - j < window (window > 0), or with non_causal
// every key j of its sequence with |i - j| < window (key_hi, query_lo); bf16 is read to
// fp32, everything is accumulated in fp32 and each result is rounded once to the dtype.
//
// Three forward kernels, chosen per call (queue_forward, queue_mma):
// - bf16 with an even head dim up to 256 and 4-byte aligned q, k, v: the tensor-core kernel
//   (attention_mma.cu, "bf16 forward on tensor cores": 64 query rows per block, cp.async
//   double-buffered K/V tiles, ldmatrix + mma.sync m16n8k16, online softmax in base 2), for
//   attention_forward and attention_kv alike, so a query still gets the same bits in a full forward, a prefill
//   chunk or a decode step;
// - on a compute capability 9.0 GPU, attention_forward of bf16 with head dim 64 or 128 and
//   16-byte aligned q, k, v: the Hopper kernel (attention_wgmma.cu: TMA, wgmma, warp
//   specialization, 128 query rows and 128-key tiles), once its first use agrees with the
//   tensor-core kernel above (SRLM_CUDA_ATTENTION, attention_common.cuh); its key tiles differ,
//   so on such a GPU a query's forward bits are no longer attention_kv's;
// - everything else (fp32, odd head dims, unaligned operands): the fp32-tile kernel below.
// attention_kv reads each cache tile once per kv group (the group's query heads share a
// block); on the tensor-core path with caches past SRLM_ATTN_SPLIT_MIN = 64 positions it runs split-KV
// (flash-decoding: pieces of 64 to 512 keys, sized from each sequence's own length, in
// parallel, merged by their lse; attention_common.cuh, "split-KV"), so its bits match the
// forward's only up to 64 cached positions (backend.h).
// Two backward kernels likewise (op_attention_backward), after the same D = rowsum(dout * out):
// bf16 with an even head dim up to 256 and 4-byte aligned q, k, v, dout on tensor cores
// (attention_mma_bwd.cu: FlashAttention-2's dK/dV pass per key tile and a separate dQ pass,
// deterministic), everything else the fp32-tile backward below.
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
#include "attention_common.cuh"

namespace SRLM_CUDA_NS {

namespace {

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
  // this thread's row: query qi at position pos0 + qi, seeing keys [lo, P]
  const bool active = r < rows;
  const long long rho = f.row0 + r, qi = rho / R, head = f.hbase + rho % R;
  const long long P = f.hi_of(qi), lo = key_lo(f.pos0 + qi, f.W);
  // the block's keys: from the first row's first key to the last row's last
  const long long jlo = key_lo(f.pos0 + f.row0 / R, f.W), jhi = f.hi_of((f.row0 + rows - 1) / R);
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

// attention_forward (Params srlm_attention_params) and attention_kv (srlm_attention_kv_params).
template <class T, int kHS, class Params>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(Params p, const int *bad) {
  if (*bad) return;
  fwd_rows<T> f;
  if (block_rows(p, f)) forward_rows<T, kHS>(f);
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
  const bool causal = !p.non_causal;
  float *Qs = srlm_dyn_smem<float>();  // (kRows, lds)
  float *dOs = Qs + kRows * lds;       // (kRows, lds)
  float *Ks = dOs + kRows * lds;       // (kCols, lds)
  float *Vs = Ks + kCols * lds;        // (kCols, lds)
  float *dSs = Vs + kCols * lds;       // (kRows, ldp)
  const int r = threadIdx.x / kLanes, sub = threadIdx.x % kLanes;
  const int rows = (int)lmin(kRows, L - i0);
  const bool active = r < rows;
  // this thread's query sees keys [lo, hi]
  const long long i = i0 + r, lo = key_lo(i, W), hi = key_hi(i, W, L, causal);
  const T *q = static_cast<const T *>(p.q) + (s0 + i0) * q_ld + h * HS;
  const T *dout = static_cast<const T *>(p.dout) + (s0 + i0) * q_ld + h * HS;
  const T *k = static_cast<const T *>(p.k) + s0 * kv_ld + g * HS, *v = static_cast<const T *>(p.v) + s0 * kv_ld + g * HS;
  load_rows(Qs, lds, q, rows, HS, [&](int rr) { return rr * q_ld; });
  load_rows(dOs, lds, dout, rows, HS, [&](int rr) { return rr * q_ld; });
  const float lse = active ? p.lse[(s0 + i) * p.NH + h] : 0.0f, Dr = active ? D[(s0 + i) * p.NH + h] : 0.0f;
  const long long jhi = key_hi(i0 + rows - 1, W, L, causal);
  float acc[kDims];
#pragma unroll
  for (int kk = 0; kk < kDims; kk++) acc[kk] = 0.0f;
  for (long long jt = key_lo(i0, W) / kCols * kCols; jt <= jhi; jt += kCols) {
    __syncthreads();
    load_rows(Ks, lds, k, (int)lmin(kCols, jhi + 1 - jt), HS, [&](int c) { return (jt + c) * kv_ld; });
    load_rows(Vs, lds, v, (int)lmin(kCols, jhi + 1 - jt), HS, [&](int c) { return (jt + c) * kv_ld; });
    __syncthreads();
    const int a = (int)(lmax(lo, jt) - jt), bb = (int)(lmin(hi, jt + kCols - 1) - jt);
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
  const bool causal = !p.non_causal;
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
  // this thread's key, seen by queries [seen_lo, seen_hi): from j (causal) or j - W + 1 to j + W
  // - 1 (W > 0) or L - 1
  const long long j = j0 + r, seen_lo = query_lo(j, W, causal);
  const long long seen_hi = W > 0 ? lmin(L, j + W) : L;
  // the block's queries: [query_lo(j0), i_end)
  const long long i_end = W > 0 ? lmin(L, j0 + rows - 1 + W) : L;
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
    for (long long it = query_lo(j0, W, causal); it < i_end; it += kCols) {
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
      const int a = (int)(lmax(seen_lo, it) - it), bb = (int)(lmin(seen_hi, it + nq) - 1 - it);
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

// The tensor-core launcher of a forward (attention_mma.cu).
srlm_status queue_mma(context *c, const srlm_attention_params &p, const int *bad, dim3 grid) {
  bool hopper = false;
  if (wgmma_eligible(p)) SRLM_TRY(attention_path(c, &hopper));
  return hopper ? attention_wgmma_forward(c, p, bad) : attention_mma_forward(c, p, bad, grid);
}
srlm_status queue_mma(context *c, const srlm_attention_kv_params &p, const int *bad, dim3 grid) {
  return attention_mma_kv(c, p, bad, grid);
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
      st = queue_mma(c, p, bad, mma_grid);
    else if (st == SRLM_OK && grid.x > 0)
      st = hs_class(p.HS, [&](auto hs) {
        auto forward = attention_forward_kernel<T, decltype(hs)::value, Params>;
        SRLM_TRY(opt_in(c, forward, forward_smem(p.HS)));
        SRLM_LAUNCH(forward, grid, kThreads, forward_smem(p.HS), c->stream, p, (const int *)bad);
        SRLM_CUDA_LAUNCHED();
        return SRLM_OK;
      });
  });
  return st;
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
  // caches of at most SRLM_ATTN_SPLIT_MIN positions are one piece: the plain kernel, the same bits
  if (mma_chunk(p) && p.max_len > SRLM_ATTN_SPLIT_MIN) return attention_kv_split(ctx(be), p);
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
      if (mma_chunk(p) && attention_mma_backward_fits(c, p.HS)) st = attention_mma_backward(c, p, D, bad);
      else st = hs_class(p.HS, [&](auto hs) {
        auto dq = attention_dq_kernel<T, decltype(hs)::value>;
        auto dkv = attention_dkv_kernel<T, decltype(hs)::value>;
        SRLM_TRY(opt_in(c, dq, dq_smem(p.HS)));
        SRLM_TRY(opt_in(c, dkv, dkv_smem(p.HS)));
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
