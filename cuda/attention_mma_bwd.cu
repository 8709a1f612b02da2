// The bf16 attention backward on tensor cores: FlashAttention-2's algorithm with ldmatrix +
// mma.sync m16n8k16, deterministic (no float atomics), for attention.cu's dispatch
// (attention_common.cuh: attention_mma_backward). Taken for bf16 with an even head dim up to
// 256 and 4-byte aligned q, k, v, dout (16-byte copies where HS % 8 == 0 and the pointers are
// 16-byte aligned); fp32 and odd head dims keep the fp32-tile backward of attention.cu.
//
// After attention.cu's check kernel and D = rowsum(dout * out) (fp32, attention_d_kernel):
// - dK/dV: a block per (key tile of 64 keys, kv head, sequence), 4 warps of 16 keys each. K
//   and V stay in shared memory; for each query head of the group in order and, for each,
//   the query tiles that see the keys (from the tile's first key on when causal, from its
//   first key - window + 1 or the sequence's start when not; up to the last key + window - 1
//   with a window), in order, Q and dO tiles of kM queries (64, 32 above
//   HS 128) with their lse and D come through shared memory by cp.async, double buffered
//   (the next tile, possibly the next head's, loads while this one is used). Per warp, in
//   the transposed form (its keys are the mma's rows):
//     S^T = K Q^T, P^T = exp2(S^T scale log2e - lse log2e) (masked: 0), dV += P^T dO,
//     dP^T = V dO^T, dS^T = P^T (dP^T - D) scale, dK += dS^T Q.
//   A warp skips (warp-uniformly) the tiles in which none of its keys is seen.
// - dQ: a block per (query tile of 64 queries, head, sequence), 4 warps of 16 queries; Q and
//   dO stay in shared memory, K/V tiles of kM keys stream through it double buffered:
//     S = Q K^T, P, dP = dO V^T, dS = P (dP - D) scale, dQ += dS K.
//   Computing S and dP twice (once per pass) is the price of a dQ without atomics.
// Every output element is accumulated by one thread in a fixed order (heads of the group,
// then query tiles, then the mma's k order), so reruns give the same bits; GQA gradients are
// summed over the group's query heads in head order inside the dK/dV block.
// - P and dS enter the products as bf16 hi + lo parts (hi = bf16(x), lo = bf16(x - hi)), as
//   the forward's P does (attention_mma.cu says why: a single bf16 P or dS errs as much as
//   the output's own rounding, which the 2x rule against the fp32 CPU leaves no room for).
// - Rows past the sequence (queries or keys) and padding dims are zero-filled by cp.async:
//   their scores are masked to P = 0 and dS = 0 exactly, and they add nothing.
#include "attention_common.cuh"

namespace SRLM_CUDA_NS {

namespace {

using bf16 = __nv_bfloat16;

// The inner tile of the backward: queries per Q/dO tile (dK/dV) and keys per K/V tile (dQ).
__host__ __device__ constexpr int bwd_cols(int kHSP) { return mma_keys(kHSP); }

// Shared memory of either pass: 64 resident rows of two operands, 2 stages of two streamed
// tiles of kM rows, and (dK/dV) 2 stages of the tile's lse and D.
inline size_t bwd_smem(int kHSP) {
  return (size_t)(2 * kMmaRows + 4 * bwd_cols(kHSP)) * mma_ld(kHSP) * sizeof(bf16) +
         (size_t)4 * bwd_cols(kHSP) * sizeof(float);
}

// x[n][.] = A B^T for this warp's 16 rows of A (row-major at A, row stride kLd) and the
// kNT * 8 rows of B (at Bt): fp32, k over the padded head dim kHSP.
template <int kHSP, int kNT>
__device__ __forceinline__ void mma_abt(float x[kNT][4], const bf16 *A, const bf16 *Bt) {
  constexpr int kLd = mma_ld(kHSP);
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int n = 0; n < kNT; n++) x[n][0] = x[n][1] = x[n][2] = x[n][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < kHSP / 16; kk++) {
    uint32_t a[4];
    ldmatrix_x4(a[0], a[1], a[2], a[3], A + (lane % 16) * kLd + kk * 16 + (lane / 16) * 8);
#pragma unroll
    for (int n = 0; n < kNT; n += 2) {
      uint32_t b[4];
      ldmatrix_x4(b[0], b[1], b[2], b[3], Bt + (n * 8 + lane % 8 + (lane / 16) * 8) * kLd + kk * 16 + ((lane / 8) % 2) * 8);
      mma_m16n8k16_bf16(x[n], a, b, x[n]);
      mma_m16n8k16_bf16(x[n + 1], a, b + 2, x[n + 1]);
    }
  }
}

// acc (16 x kHSP, C fragments) += X B for X (16 x kNT * 8, C fragments: the output of
// mma_abt) and B (kNT * 8 rows x kHSP, row-major at B): X enters as bf16 hi + lo parts.
template <int kHSP, int kNT>
__device__ __forceinline__ void mma_acc_xb(float acc[kHSP / 8][4], const float x[kNT][4], const bf16 *B) {
  constexpr int kLd = mma_ld(kHSP), kDT = kHSP / 8;
  const int lane = threadIdx.x % 32;
  uint32_t xa[kNT / 2][4], xl[kNT / 2][4];  // X's hi and lo parts as A fragments
#pragma unroll
  for (int n = 0; n < kNT; n++) {
    float hi[4];
#pragma unroll
    for (int i = 0; i < 4; i++) hi[i] = bf16_hi(x[n][i]);
    // n-tile n holds columns 8n..8n+7: k-step n / 2, registers (n % 2) * 2 + row half
    xa[n / 2][(n % 2) * 2 + 0] = pack_bf16(hi[0], hi[1]);
    xa[n / 2][(n % 2) * 2 + 1] = pack_bf16(hi[2], hi[3]);
    xl[n / 2][(n % 2) * 2 + 0] = pack_bf16(__fsub_rn(x[n][0], hi[0]), __fsub_rn(x[n][1], hi[1]));
    xl[n / 2][(n % 2) * 2 + 1] = pack_bf16(__fsub_rn(x[n][2], hi[2]), __fsub_rn(x[n][3], hi[3]));
  }
#pragma unroll
  for (int kk = 0; kk < kNT / 2; kk++) {
#pragma unroll
    for (int n = 0; n < kDT; n += 2) {
      uint32_t b[4];
      ldmatrix_x4_trans(b[0], b[1], b[2], b[3], B + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kLd + n * 8 + (lane / 16) * 8);
      mma_m16n8k16_bf16(acc[n], xl[kk], b, acc[n]);
      mma_m16n8k16_bf16(acc[n + 1], xl[kk], b + 2, acc[n + 1]);
      mma_m16n8k16_bf16(acc[n], xa[kk], b, acc[n]);
      mma_m16n8k16_bf16(acc[n + 1], xa[kk], b + 2, acc[n + 1]);
    }
  }
}

// dS of one score from its probability: p (dp - D) scale, exactly 0 where p is (a masked
// score: whatever dp holds).
__device__ __forceinline__ float grad_of(float p, float dp, float D, float scale) {
  return p == 0.0f ? 0.0f : __fmul_rn(__fmul_rn(p, __fsub_rn(dp, D)), scale);
}

// Rows of this thread's C fragments, h = 0, 1: the warp's rows g and g + 8; writes x (HS
// dims, fp32 accumulators) to row pointer o as bf16.
template <int kHSP>
__device__ __forceinline__ void store_row(bf16 *o, const float acc[kHSP / 8][4], int h, int HS) {
  const int t = threadIdx.x % 4;
#pragma unroll
  for (int n = 0; n < kHSP / 8; n++) {
    const int d = n * 8 + 2 * t;
    if (d >= HS) continue;
    st(o + d, acc[n][2 * h]);
    st(o + d + 1, acc[n][2 * h + 1]);
  }
}

// grid (grid_blocks(T, B, 1, kMmaRows), NKV): dk, dv of a key tile of one kv head.
template <int kHSP, int kChunk>
__global__ void __launch_bounds__(kMmaThreads) attention_dkv_mma_kernel(srlm_attention_bwd_params p, const float *D,
                                                                        const int *bad) {
  if (*bad || p.B == 0) return;
  constexpr int kM = bwd_cols(kHSP), kLd = mma_ld(kHSP), kNT = kM / 8, kDT = kHSP / 8;
  const int b = block_sequence(p.cu_seqlens, p.B, 1, blockIdx.x, kMmaRows);
  const long long s0 = p.cu_seqlens[b], L = p.cu_seqlens[b + 1] - s0;
  const long long j0 = ((long long)blockIdx.x - first_block(s0, b, 1, kMmaRows)) * kMmaRows;
  if (j0 >= L) return;
  const int HS = (int)p.HS, warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const long long kv = blockIdx.y, rep = p.NH / p.NKV, q_ld = p.NH * p.HS, kv_ld = p.NKV * p.HS, W = p.window;
  const bool causal = !p.non_causal;
  const int rows = (int)lmin(kMmaRows, L - j0);
  bf16 *Ks = srlm_dyn_smem<bf16>();  // (kMmaRows, kLd)
  bf16 *Vs = Ks + kMmaRows * kLd;    // (kMmaRows, kLd)
  bf16 *Qs = Vs + kMmaRows * kLd;    // 2 stages of (kM, kLd)
  bf16 *dOs = Qs + 2 * kM * kLd;     // 2 stages of (kM, kLd)
  float *lses = reinterpret_cast<float *>(dOs + 2 * kM * kLd);  // 2 stages of (kM)
  float *Ds = lses + 2 * kM;                                     // 2 stages of (kM)
  // the block's queries: [i_beg, i_end) (the first key's first query to the last key's last)
  const long long i_beg = query_lo(j0, W, causal), i_end = W > 0 ? lmin(L, j0 + rows - 1 + W) : L;
  const long long ntq = (i_end - i_beg + kM - 1) / kM, nx = rep * ntq;  // query tiles per head, in all
  // this warp's keys [wj0, wj0 + wrows) and the queries that see them: [wi_beg, wi_end)
  const int wrows = (int)lmin(16, lmax(0, rows - 16 * warp));
  const long long wj0 = j0 + 16 * warp, wi_beg = query_lo(wj0, W, causal);
  const long long wi_end = wrows == 0 ? wi_beg : W > 0 ? lmin(L, wj0 + wrows - 1 + W) : L;
  long long key[2], seen_lo[2];  // this thread's rows: keys g and g + 8 of the warp's, their first queries
  bool kvalid[2];
  for (int h = 0; h < 2; h++) {
    key[h] = wj0 + g + 8 * h;
    seen_lo[h] = query_lo(key[h], W, causal);
    kvalid[h] = 16 * warp + g + 8 * h < rows;
  }
  const bf16 *k = static_cast<const bf16 *>(p.k) + (s0 + j0) * kv_ld + kv * HS;
  const bf16 *v = static_cast<const bf16 *>(p.v) + (s0 + j0) * kv_ld + kv * HS;
  // query tile x: head kv * rep + x / ntq, queries from i_beg + (x % ntq) kM
  auto load_q = [&](long long x, int stage) {
    const long long h = kv * rep + x / ntq, it = i_beg + (x % ntq) * kM;
    const int n = (int)lmin(kM, i_end - it);
    const bf16 *q = static_cast<const bf16 *>(p.q) + (s0 + it) * q_ld + h * HS;
    const bf16 *dout = static_cast<const bf16 *>(p.dout) + (s0 + it) * q_ld + h * HS;
    mma_load<kHSP, kChunk>(Qs + stage * kM * kLd, q, kM, n, HS, [&](int c) { return c * q_ld; });
    mma_load<kHSP, kChunk>(dOs + stage * kM * kLd, dout, kM, n, HS, [&](int c) { return c * q_ld; });
    for (int c = threadIdx.x; c < kM; c += kMmaThreads) {
      const long long r = (s0 + it + c) * p.NH + h;  // the query's (row, head)
      srlm_cp_async<4>(lses + stage * kM + c, c < n ? p.lse + r : p.lse, c < n ? 4 : 0);
      srlm_cp_async<4>(Ds + stage * kM + c, c < n ? D + r : D, c < n ? 4 : 0);
    }
  };
  mma_load<kHSP, kChunk>(Ks, k, kMmaRows, rows, HS, [&](int r) { return r * kv_ld; });
  mma_load<kHSP, kChunk>(Vs, v, kMmaRows, rows, HS, [&](int r) { return r * kv_ld; });
  load_q(0, 0);
  srlm_cp_async_commit();
  const float scale2 = p.scale * kLog2e;
  float acck[kDT][4], accv[kDT][4];
#pragma unroll
  for (int n = 0; n < kDT; n++)
#pragma unroll
    for (int i = 0; i < 4; i++) acck[n][i] = accv[n][i] = 0.0f;
  for (long long x = 0; x < nx; x++) {
    const int stage = (int)(x & 1);
    mma_tile_wait(x, nx, [&] { load_q(x + 1, stage ^ 1); });  // tile x (and K, V) landed
    const long long it = i_beg + (x % ntq) * kM;
    // warp-uniform: does a query of this tile see one of the warp's keys?
    if (wrows > 0 && it < wi_end && it + kM - 1 >= wi_beg) {
      const bf16 *Q = Qs + stage * kM * kLd, *dO = dOs + stage * kM * kLd;
      const float *lse = lses + stage * kM, *Dt = Ds + stage * kM;
      float sp[kNT][4];  // S^T, then P^T
      mma_abt<kHSP, kNT>(sp, Ks + 16 * warp * kLd, Q);
#pragma unroll
      for (int n = 0; n < kNT; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
          const int h = i / 2, c = n * 8 + 2 * t + i % 2;
          const long long qi = it + c;
          const bool vis = kvalid[h] && qi < L && qi >= seen_lo[h] && (W <= 0 || qi - key[h] < W);
          sp[n][i] = vis ? exp2f(__fsub_rn(__fmul_rn(sp[n][i], scale2), __fmul_rn(lse[c], kLog2e))) : 0.0f;
        }
      mma_acc_xb<kHSP, kNT>(accv, sp, dO);  // dV += P^T dO
      float ds[kNT][4];                     // dP^T, then dS^T
      mma_abt<kHSP, kNT>(ds, Vs + 16 * warp * kLd, dO);
#pragma unroll
      for (int n = 0; n < kNT; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) ds[n][i] = grad_of(sp[n][i], ds[n][i], Dt[n * 8 + 2 * t + i % 2], p.scale);
      mma_acc_xb<kHSP, kNT>(acck, ds, Q);  // dK += dS^T Q
    }
    __syncthreads();  // every warp is done with this stage before tile x + 2 loads into it
  }
  for (int h = 0; h < 2; h++) {
    if (!kvalid[h]) continue;
    store_row<kHSP>(static_cast<bf16 *>(p.dk) + (s0 + key[h]) * kv_ld + kv * HS, acck, h, HS);
    store_row<kHSP>(static_cast<bf16 *>(p.dv) + (s0 + key[h]) * kv_ld + kv * HS, accv, h, HS);
  }
}

// grid (grid_blocks(T, B, 1, kMmaRows), NH): dq of a query tile of one head, over the key
// tiles it sees.
template <int kHSP, int kChunk>
__global__ void __launch_bounds__(kMmaThreads) attention_dq_mma_kernel(srlm_attention_bwd_params p, const float *D,
                                                                       const int *bad) {
  if (*bad || p.B == 0) return;
  constexpr int kN = bwd_cols(kHSP), kLd = mma_ld(kHSP), kNT = kN / 8, kDT = kHSP / 8;
  const int b = block_sequence(p.cu_seqlens, p.B, 1, blockIdx.x, kMmaRows);
  const long long s0 = p.cu_seqlens[b], L = p.cu_seqlens[b + 1] - s0;
  const long long i0 = ((long long)blockIdx.x - first_block(s0, b, 1, kMmaRows)) * kMmaRows;
  if (i0 >= L) return;
  const int HS = (int)p.HS, warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const long long h = blockIdx.y, kv = h / (p.NH / p.NKV), q_ld = p.NH * p.HS, kv_ld = p.NKV * p.HS, W = p.window;
  const bool causal = !p.non_causal;
  const int rows = (int)lmin(kMmaRows, L - i0);
  bf16 *Qs = srlm_dyn_smem<bf16>();  // (kMmaRows, kLd)
  bf16 *dOs = Qs + kMmaRows * kLd;   // (kMmaRows, kLd)
  bf16 *Ks = dOs + kMmaRows * kLd;   // 2 stages of (kN, kLd)
  bf16 *Vs = Ks + 2 * kN * kLd;      // 2 stages of (kN, kLd)
  // the block's keys: from the first query's first key to the last query's last
  const long long jlo = key_lo(i0, W), jhi = key_hi(i0 + rows - 1, W, L, causal), ntiles = (jhi - jlo) / kN + 1;
  // this warp's queries and the keys they see: [wj_lo, wj_hi]
  const int wrows = (int)lmin(16, lmax(0, rows - 16 * warp));
  const long long wi0 = i0 + 16 * warp, wj_lo = key_lo(wi0, W);
  const long long wj_hi = wrows > 0 ? key_hi(wi0 + wrows - 1, W, L, causal) : wi0 - 1;
  long long qi[2], lo[2], hi[2];  // this thread's rows: queries g and g + 8 of the warp's, seeing keys [lo, hi]
  bool valid[2];
  float lse2[2], Dr[2];
  for (int hh = 0; hh < 2; hh++) {
    const int r = 16 * warp + g + 8 * hh;
    valid[hh] = r < rows;
    qi[hh] = i0 + r;
    lo[hh] = key_lo(qi[hh], W);
    hi[hh] = key_hi(qi[hh], W, L, causal);
    lse2[hh] = valid[hh] ? __fmul_rn(p.lse[(s0 + qi[hh]) * p.NH + h], kLog2e) : 0.0f;
    Dr[hh] = valid[hh] ? D[(s0 + qi[hh]) * p.NH + h] : 0.0f;
  }
  const bf16 *k = static_cast<const bf16 *>(p.k) + s0 * kv_ld + kv * HS;
  const bf16 *v = static_cast<const bf16 *>(p.v) + s0 * kv_ld + kv * HS;
  auto load_kv = [&](long long jt, int stage) {
    const int n = (int)lmin(kN, jhi + 1 - jt);
    mma_load<kHSP, kChunk>(Ks + stage * kN * kLd, k, kN, n, HS, [&](int c) { return (jt + c) * kv_ld; });
    mma_load<kHSP, kChunk>(Vs + stage * kN * kLd, v, kN, n, HS, [&](int c) { return (jt + c) * kv_ld; });
  };
  const bf16 *q = static_cast<const bf16 *>(p.q) + (s0 + i0) * q_ld + h * HS;
  const bf16 *dout = static_cast<const bf16 *>(p.dout) + (s0 + i0) * q_ld + h * HS;
  mma_load<kHSP, kChunk>(Qs, q, kMmaRows, rows, HS, [&](int r) { return r * q_ld; });
  mma_load<kHSP, kChunk>(dOs, dout, kMmaRows, rows, HS, [&](int r) { return r * q_ld; });
  load_kv(jlo, 0);
  srlm_cp_async_commit();
  const float scale2 = p.scale * kLog2e;
  float acc[kDT][4];
#pragma unroll
  for (int n = 0; n < kDT; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
  for (long long it = 0; it < ntiles; it++) {
    const long long jt = jlo + it * kN;
    const int stage = (int)(it & 1);
    mma_tile_wait(it, ntiles, [&] { load_kv(jt + kN, stage ^ 1); });  // tile it (and Q, dO) landed
    // warp-uniform: does one of the warp's queries see a key of this tile?
    if (wrows > 0 && jt <= wj_hi && jt + kN - 1 >= wj_lo) {
      const bf16 *K = Ks + stage * kN * kLd, *V = Vs + stage * kN * kLd;
      float sp[kNT][4];  // S, then P
      mma_abt<kHSP, kNT>(sp, Qs + 16 * warp * kLd, K);
#pragma unroll
      for (int n = 0; n < kNT; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
          const int hh = i / 2;
          const long long j = jt + n * 8 + 2 * t + i % 2;
          const bool vis = valid[hh] && j >= lo[hh] && j <= hi[hh];
          sp[n][i] = vis ? exp2f(__fsub_rn(__fmul_rn(sp[n][i], scale2), lse2[hh])) : 0.0f;
        }
      float ds[kNT][4];  // dP, then dS
      mma_abt<kHSP, kNT>(ds, dOs + 16 * warp * kLd, V);
#pragma unroll
      for (int n = 0; n < kNT; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) ds[n][i] = grad_of(sp[n][i], ds[n][i], Dr[i / 2], p.scale);
      mma_acc_xb<kHSP, kNT>(acc, ds, K);  // dQ += dS K
    }
    __syncthreads();  // every warp is done with this stage before tile it + 2 loads into it
  }
  for (int hh = 0; hh < 2; hh++)
    if (valid[hh]) store_row<kHSP>(static_cast<bf16 *>(p.dq) + (s0 + qi[hh]) * q_ld + h * HS, acc, hh, HS);
}

template <int kHSP, int kChunk>
srlm_status launch_bwd(context *c, const srlm_attention_bwd_params &p, const float *D, const int *bad,
                       unsigned blocks) {
  auto dkv = attention_dkv_mma_kernel<kHSP, kChunk>;
  auto dq = attention_dq_mma_kernel<kHSP, kChunk>;
  SRLM_TRY(opt_in(c, dkv, bwd_smem(kHSP)));
  SRLM_TRY(opt_in(c, dq, bwd_smem(kHSP)));
  SRLM_LAUNCH(dkv, dim3(blocks, (unsigned)p.NKV), kMmaThreads, bwd_smem(kHSP), c->stream, p, D, bad);
  SRLM_CUDA_LAUNCHED();
  SRLM_LAUNCH(dq, dim3(blocks, (unsigned)p.NH), kMmaThreads, bwd_smem(kHSP), c->stream, p, D, bad);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

}  // namespace

bool attention_mma_backward_fits(const context *c, long long HS) {
  bool ok = false;
  (void)hsp_class(HS, [&](auto hsp) {
    ok = fits(c, bwd_smem(decltype(hsp)::value));
    return SRLM_OK;
  });
  return ok;
}

srlm_status attention_mma_backward(context *c, const srlm_attention_bwd_params &p, const float *D, const int *bad) {
  const int chunk = mma_chunk(p);
  const unsigned blocks = (unsigned)grid_blocks(p.T, p.B, 1, kMmaRows);
  return hsp_class(p.HS, [&](auto hsp) {
    constexpr int kHSP = decltype(hsp)::value;
    return chunk == 16 ? launch_bwd<kHSP, 16>(c, p, D, bad, blocks) : launch_bwd<kHSP, 4>(c, p, D, bad, blocks);
  });
}

}  // namespace SRLM_CUDA_NS
