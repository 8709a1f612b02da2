// The bf16 attention forward and attention_kv on tensor cores, and split-KV attention_kv
// (flash-decoding; attention_common.cuh says how the pieces are cut): the kernels, and the
// launchers attention.cu's dispatch calls (attention_common.cuh). The sections below say how
// each works.
#include "attention_common.cuh"

namespace SRLM_CUDA_NS {

namespace {

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
//   none of its 16 rows sees a key (causal tiles above the diagonal, keys outside a window;
//   with non_causal and no window, none: every key tile, the masking only at the sequence's end);
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
  // the block's keys: from the first row's first key to the last row's last
  // (within the split's keys [klo, khi])
  const long long jlo = lmax(f.klo, key_lo(f.pos0 + f.row0 / R, f.W));
  const long long jhi = lmin(f.khi, f.hi_of((f.row0 + rows - 1) / R));
  // this warp's rows and keys (a warp past the block's rows has none: wj_hi < wj_lo)
  const int wrows = (int)lmin(16, lmax(0, rows - 16 * warp));
  const long long wr0 = f.row0 + 16 * warp;
  const long long wj_lo = wrows > 0 ? lmax(f.klo, key_lo(f.pos0 + wr0 / R, f.W)) : 1;
  const long long wj_hi = wrows > 0 ? lmin(f.khi, f.hi_of((wr0 + wrows - 1) / R)) : 0;
  // this thread's two rows: g and g + 8 of the warp's 16
  long long P[2], lo[2];  // its keys: [lo, P] (within the split)
  bool valid[2];
  for (int h = 0; h < 2; h++) {
    const int r = 16 * warp + g + 8 * h;
    valid[h] = r < rows;
    P[h] = lmin(f.khi, f.hi_of((f.row0 + r) / R));
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
    mma_tile_wait(it, ntiles, [&] { load_kv(jt + kN, stage ^ 1); });  // tile it (and Q) landed
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


template <int kHSP, int kChunk>
__global__ void __launch_bounds__(kMmaThreads)
    attention_mma_split_kernel(srlm_attention_kv_params p, const int *bad, float *part, float *part_lse) {
  if (*bad) return;
  fwd_rows<__nv_bfloat16> f;
  if (!block_rows(p, f, kMmaRows)) return;
  const long long len = f.pos0 + f.nrows / f.R, keys = srlm_attn_split_keys(len), klo = (long long)blockIdx.z * keys;
  if (klo >= len) return;  // past this sequence's pieces: its merge stops before this one
  const long long q0 = (f.q - static_cast<const __nv_bfloat16 *>(p.q)) / (p.NH * p.HS);
  const long long rows_all = p.NQ * p.NH;
  f.klo = klo;
  f.khi = klo + keys - 1;
  f.part = part + ((long long)blockIdx.z * rows_all + q0 * p.NH) * p.HS;
  f.part_lse = part_lse + (long long)blockIdx.z * rows_all + q0 * p.NH;
  forward_rows_mma<kHSP, kChunk>(f);
}

constexpr int kCombineThreads = 64;

// grid (NQ * NH): row (query q, head h) of out from its sequence's srlm_attn_split_pieces(kv_len)
// pieces, in piece order.
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
  const long long ns = srlm_attn_split_pieces(p.kv_len[lo]);
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

template <int kHSP, int kChunk, class Params>
srlm_status launch_mma(context *c, const Params &p, const int *bad, dim3 grid) {
  auto kernel = attention_mma_kernel<kHSP, kChunk, Params>;
  SRLM_TRY(opt_in(c, kernel, mma_smem(kHSP)));
  SRLM_LAUNCH(kernel, grid, kMmaThreads, mma_smem(kHSP), c->stream, p, bad);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

template <class Params>
srlm_status queue_mma(context *c, const Params &p, const int *bad, dim3 grid) {
  const int chunk = mma_chunk(p);
  return hsp_class(p.HS, [&](auto hsp) {
    constexpr int kHSP = decltype(hsp)::value;
    return chunk == 16 ? launch_mma<kHSP, 16>(c, p, bad, grid) : launch_mma<kHSP, 4>(c, p, bad, grid);
  });
}

}  // namespace

srlm_status attention_mma_forward(context *c, const srlm_attention_params &p, const int *bad, dim3 grid) {
  return queue_mma(c, p, bad, grid);
}
srlm_status attention_mma_kv(context *c, const srlm_attention_kv_params &p, const int *bad, dim3 grid) {
  return queue_mma(c, p, bad, grid);
}

// attention_kv by split-KV (the tensor-core kernel per piece, then the merge); only where
// mma_chunk(p) is not 0.
srlm_status attention_kv_split(context *c, const srlm_attention_kv_params &p) {
  const long long splits = srlm_attn_split_pieces_max(p.max_len), rows_all = p.NQ * p.NH;
  if (splits > 65535 || rows_all > INT_MAX)
    return srlm_error(SRLM_ERR_UNSUPPORTED, SRLM_CUDA_NAME " attention_kv", "%lld pieces of %lld rows: too many blocks",
                      splits, rows_all);
  const size_t lse_bytes = ((size_t)(splits * rows_all) * sizeof(float) + 15) / 16 * 16;
  void *w; /* srlm_attn_split_bytes, which the memory plan counts, after the flags */
  SRLM_TRY(workspace(c, kFlagBytes + srlm_attn_split_bytes(p.max_len, rows_all, p.HS), &w));
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
      SRLM_TRY(opt_in(c, k16, mma_smem(kHSP)));
      SRLM_LAUNCH(k16, grid, kMmaThreads, mma_smem(kHSP), c->stream, p, (const int *)bad, part, part_lse);
    } else {
      SRLM_TRY(opt_in(c, k4, mma_smem(kHSP)));
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

}  // namespace SRLM_CUDA_NS
