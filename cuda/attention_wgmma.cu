// The bf16 attention forward for Hopper (sm_90a): TMA tile loads, wgmma, warp specialization.
// Taken by attention_forward (attention.cu's dispatch) on a compute capability 9.0 device
// when the operands allow it (wgmma_eligible) and the path is on (attention_path: the first
// use on a GPU checks it against the mma.sync kernel of attention_mma.cu, its twin); the
// simulator runs it when SRLM_CUDA_ATTENTION=wgmma. hopper.cuh has the building blocks and
// the layouts.
//
// A block: 128 query rows of one head (a sequence's query tile, as fwd_rows / block_rows),
// 3 warpgroups of 128 threads.
// - Warpgroup 0, the producer, gives up registers (setmaxnreg) and one thread issues the TMA
//   loads: Q once (128 rows x HS, HS / 64 boxes of 64 dims), then for each key tile of
//   kWgKeys keys the K and V boxes into one of two stages, each completing on that stage's
//   full barrier (K and V apart, so S = Q K^T starts before V lands). Before refilling a stage
//   it waits on the stage's empty barrier, which every consumer thread arrives on when done.
// - Warpgroups 1 and 2, the consumers, own 64 rows each (rows 0-63, 64-127): S = Q K^T by
//   HS / 16 wgmmas m64 n128 k16 (Q and K from shared memory), masked, an online softmax in
//   base 2 with the scale folded in (the arithmetic of attention_mma.cu's forward_rows_mma,
//   row for row), P as bf16 hi + lo parts in registers, O += P V by 2 x kWgKeys / 16 wgmmas
//   m64 nHS k16 (P from registers, V from shared memory, MN-major).
// - Key tiles start at multiples of kWgKeys from position 0 (the block's first key's tile);
//   a consumer skips the tiles in which none of its rows sees a key, still waiting on the
//   full barriers and arriving on the empty one (so no arrival can count towards the wrong
//   phase). A row's update in a tile it sees nothing of is exact (alpha = 1, P = 0).
// - Keys past the sequence's end in a tile are the next sequence's (TMA reads the packed
//   tensor; past T, zeros): real finite values, masked, so they add exactly 0.
// The bits are not attention_mma.cu's: key tiles of 128 instead of 64 change where the
// online softmax rescales, and the tensor cores of the two instructions may round differently.
// A query's bits still depend only on its own query and keys. attention_kv (prefill, decode)
// stays on the mma.sync kernel (backend.h: its bits match the forward's only where the
// kernels are the same; on sm_90 they are not).
#include "attention_common.cuh"
#include "hopper.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <mutex>
#include <string>
#include <vector>
#if !SRLM_HOPPER_SIM
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled
#endif

namespace SRLM_CUDA_NS {

namespace {

constexpr int kWgRows = 128;     // query rows per block
constexpr int kWgKeys = 128;     // keys per tile
constexpr int kWgThreads = 384;  // producer + 2 consumer warpgroups
constexpr int kWgBoxRow = 128;   // bytes of a swizzled row: 64 bf16

template <int kHS>
struct wg_layout {
  static constexpr int kBoxes = kHS / 64;
  static constexpr unsigned kQBox = kWgRows * kWgBoxRow, kKVBox = kWgKeys * kWgBoxRow;  // bytes
  static constexpr unsigned kQ = kBoxes * kQBox, kKV = kBoxes * kKVBox;
  __host__ __device__ static constexpr unsigned k_off(int s) { return kQ + (unsigned)s * 2 * kKV; }
  __host__ __device__ static constexpr unsigned v_off(int s) { return k_off(s) + kKV; }
  static constexpr unsigned kBars = kQ + 4 * kKV;            // 7 mbarriers after the tiles
  static constexpr size_t kSmem = kBars + 7 * 8 + 1024;      // + slack to align the base
};

#if SRLM_HOPPER_DEVICE
template <int kHS>
__device__ __forceinline__ void wgmma_forward(const srlm_attention_params &p, const fwd_rows<__nv_bfloat16> &f, const tma_map *tq,
                              const tma_map *tk, const tma_map *tv) {
  using L = wg_layout<kHS>;
  using bf16 = __nv_bfloat16;
  constexpr int kNT = kWgKeys / 8;  // score n-blocks (8 keys)
  constexpr int kDT = kHS / 8;      // output n-blocks (8 dims)
  constexpr int kKP = kWgKeys / 16;  // k-steps of P V
  unsigned char *smem = srlm_dyn_smem<unsigned char>();
  smem += (1024 - ((uintptr_t)smem & 1023)) & 1023;
  uint64_t *bars = reinterpret_cast<uint64_t *>(smem + L::kBars);
  uint64_t *full_q = bars, *full_k = bars + 1, *full_v = bars + 3, *empty = bars + 5;

  const long long R = f.R;  // 1: a forward's block is one head's query tile
  const int rows = (int)lmin(kWgRows, f.nrows - f.row0);
  const long long jlo = key_lo(f.pos0 + f.row0 / R, f.W), jhi = f.hi_of((f.row0 + rows - 1) / R);
  const long long jt0 = jlo / kWgKeys * kWgKeys, ntiles = jlo <= jhi ? (jhi - jt0) / kWgKeys + 1 : 0;
  if (threadIdx.x == 0) {
    mbar_init(full_q, 1);
    for (int s = 0; s < 2; s++) {
      mbar_init(full_k + s, 1);
      mbar_init(full_v + s, 1);
      mbar_init(empty + s, 2 * 128);
    }
    mbar_fence_init();
  }
  __syncthreads();
  const int wg = threadIdx.x / 128;
  if (wg == 0) {  // the producer
    setmaxnreg_dec<24>();
    if (threadIdx.x != 0) return;
    const int s0 = (int)((f.q - static_cast<const bf16 *>(p.q)) / (p.NH * p.HS));
    const int head = (int)f.hbase, kvh = (int)(f.hbase / (p.NH / p.NKV));
    mbar_arrive_expect_tx(full_q, L::kQ);
    for (int b = 0; b < L::kBoxes; b++)
      tma_load_3d(smem + b * L::kQBox, tq, full_q, 64 * b, head, s0 + (int)f.row0);
    for (long long it = 0; it < ntiles; it++) {
      const int s = (int)(it & 1);
      const int key0 = s0 + (int)(jt0 + it * kWgKeys);
      if (it >= 2) mbar_wait(empty + s, (unsigned)((it / 2 - 1) & 1));
      mbar_arrive_expect_tx(full_k + s, L::kKV);
      for (int b = 0; b < L::kBoxes; b++) tma_load_3d(smem + L::k_off(s) + b * L::kKVBox, tk, full_k + s, 64 * b, kvh, key0);
      mbar_arrive_expect_tx(full_v + s, L::kKV);
      for (int b = 0; b < L::kBoxes; b++) tma_load_3d(smem + L::v_off(s) + b * L::kKVBox, tv, full_v + s, 64 * b, kvh, key0);
    }
    return;
  }
  setmaxnreg_inc<240>();
  // a consumer: rows 64 c .. 64 c + 63 of the block; this thread's two rows g and g + 8 of its warp's 16
  const int c = wg - 1, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int crows = (int)lmin(64, lmax(0, rows - 64 * c));
  const long long cr0 = f.row0 + 64 * c;
  const long long cj_lo = crows > 0 ? key_lo(f.pos0 + cr0 / R, f.W) : 1;
  const long long cj_hi = crows > 0 ? f.hi_of((cr0 + crows - 1) / R) : 0;
  long long P[2], lo[2];
  bool valid[2];
  for (int h = 0; h < 2; h++) {
    const int r = 64 * c + 16 * warp + g + 8 * h;
    valid[h] = r < rows;
    P[h] = f.hi_of((f.row0 + r) / R);
    lo[h] = key_lo(f.pos0 + (f.row0 + r) / R, f.W);
  }
  const float scale2 = f.scale * kLog2e;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, o[kHS / 2];
#pragma unroll
  for (int i = 0; i < kHS / 2; i++) o[i] = 0.0f;
  mbar_wait(full_q, 0);
  for (long long it = 0; it < ntiles; it++) {
    const int s = (int)(it & 1);
    const unsigned par = (unsigned)((it / 2) & 1);
    const long long jt = jt0 + it * kWgKeys;
    mbar_wait(full_k + s, par);
    if (jt <= cj_hi && jt + kWgKeys - 1 >= cj_lo) {  // warpgroup-uniform
      float sc[kWgKeys / 2];
      wgmma_hold(sc);  // the last tile's writes of sc stay before the fence
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kHS / 16; kk++) {
        const unsigned koff = (unsigned)(kk % 4) * 32;  // the k16 step inside a 64-dim box
        const wg_desc a = wgmma_desc(smem + (kk / 4) * L::kQBox + c * 64 * kWgBoxRow + koff, 0, 8 * kWgBoxRow);
        const wg_desc b = wgmma_desc(smem + L::k_off(s) + (kk / 4) * L::kKVBox + koff, 0, 8 * kWgBoxRow);
        wgmma_ss<kWgKeys>(sc, a, b, kk > 0);
      }
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_hold(sc);
      // mask, scale into base 2, the rows' new maxima (a row's 4 lanes: t = 0..3)
      float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int n = 0; n < kNT; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
          const int h = i / 2;
          const long long j = jt + n * 8 + 2 * t + i % 2;
          float &x = sc[4 * n + i];
          x = valid[h] && j >= lo[h] && j <= P[h] ? __fmul_rn(x, scale2) : -INFINITY;
          mt[h] = fmaxf(mt[h], x);
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
          pr[i] = exp2f(__fsub_rn(sc[4 * n + i], mu[i / 2]));
          ps[i / 2] += pr[i];
          hi[i] = bf16_hi(pr[i]);
        }
        pa[n / 2][(n % 2) * 2 + 0] = pack_bf16(hi[0], hi[1]);
        pa[n / 2][(n % 2) * 2 + 1] = pack_bf16(hi[2], hi[3]);
        pl[n / 2][(n % 2) * 2 + 0] = pack_bf16(__fsub_rn(pr[0], hi[0]), __fsub_rn(pr[1], hi[1]));
        pl[n / 2][(n % 2) * 2 + 1] = pack_bf16(__fsub_rn(pr[2], hi[2]), __fsub_rn(pr[3], hi[3]));
      }
#pragma unroll
      for (int h = 0; h < 2; h++) l[h] = fmaf(l[h], alpha[h], ps[h]);
#pragma unroll
      for (int n = 0; n < kDT; n++) {
        o[4 * n + 0] = __fmul_rn(o[4 * n + 0], alpha[0]);
        o[4 * n + 1] = __fmul_rn(o[4 * n + 1], alpha[0]);
        o[4 * n + 2] = __fmul_rn(o[4 * n + 2], alpha[1]);
        o[4 * n + 3] = __fmul_rn(o[4 * n + 3], alpha[1]);
      }
      mbar_wait(full_v + s, par);
      wgmma_hold(o);  // the rescale and P's fragments are written before the fence
      wgmma_hold(pa);
      wgmma_hold(pl);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kKP; kk++) {
        // keys 16 kk .. 16 kk + 15: rows of the stage's V boxes; box b (dims 64 b ..) at b * kKVBox
        const wg_desc b = wgmma_desc(smem + L::v_off(s) + kk * 16 * kWgBoxRow, L::kKVBox, 8 * kWgBoxRow);
        wgmma_rs_bt<kHS>(o, pl[kk], b, 1);
        wgmma_rs_bt<kHS>(o, pa[kk], b, 1);
      }
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_hold(o);
    } else {
      mbar_wait(full_v + s, par);
    }
    mbar_arrive(empty + s);  // this thread is done with the stage (its wgmmas have completed)
  }
#pragma unroll
  for (int h = 0; h < 2; h++) {
    float sum = l[h];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    if (!valid[h]) continue;
    const long long rho = f.row0 + 64 * c + 16 * warp + g + 8 * h, qi = rho / R, head = f.hbase + rho % R;
    const float inv = 1.0f / sum;
    bf16 *out = f.out + qi * f.q_ld + head * kHS;
#pragma unroll
    for (int n = 0; n < kDT; n++) {
      const int d = n * 8 + 2 * t;
      st(out + d, __fmul_rn(o[4 * n + 2 * h], inv));
      st(out + d + 1, __fmul_rn(o[4 * n + 2 * h + 1], inv));
    }
    if (f.lse && t == 0) f.lse[qi * f.lse_ld + head] = __fmul_rn(__fadd_rn(m[h], log2f(sum)), kLn2);
  }
}
#endif

template <int kHS>
__global__ void __launch_bounds__(kWgThreads, 1)
    attention_wgmma_kernel(const srlm_attention_params p, const int *bad, const __grid_constant__ tma_map tq,
                           const __grid_constant__ tma_map tk, const __grid_constant__ tma_map tv) {
#if SRLM_HOPPER_DEVICE
  if (*bad) return;
  fwd_rows<__nv_bfloat16> f;
  if (block_rows(p, f, kWgRows)) wgmma_forward<kHS>(p, f, &tq, &tk, &tv);
#else
  (void)p, (void)bad, (void)tq, (void)tk, (void)tv;
  __trap();  // built for another architecture: attention_path never selects it there
#endif
}

template <int kHS>
srlm_status launch_wgmma(context *c, const srlm_attention_params &p, const int *bad) {
  tma_map tq, tk, tv;
  const uint64_t qdim[3] = {(uint64_t)kHS, (uint64_t)p.NH, (uint64_t)p.T};
  const uint64_t qstride[2] = {(uint64_t)kHS * 2, (uint64_t)(p.NH * kHS * 2)};
  const uint64_t kvdim[3] = {(uint64_t)kHS, (uint64_t)p.NKV, (uint64_t)p.T};
  const uint64_t kvstride[2] = {(uint64_t)kHS * 2, (uint64_t)(p.NKV * kHS * 2)};
  const uint32_t qbox[3] = {64, 1, kWgRows}, kvbox[3] = {64, 1, kWgKeys};
  SRLM_TRY(tma_map_bf16_3d(c, &tq, p.q, qdim, qstride, qbox));
  SRLM_TRY(tma_map_bf16_3d(c, &tk, p.k, kvdim, kvstride, kvbox));
  SRLM_TRY(tma_map_bf16_3d(c, &tv, p.v, kvdim, kvstride, kvbox));
  auto kernel = attention_wgmma_kernel<kHS>;
  SRLM_TRY(opt_in(c, kernel, wg_layout<kHS>::kSmem));
  const dim3 grid((unsigned)grid_blocks(p.T, p.B, 1, kWgRows), (unsigned)p.NH);
  SRLM_LAUNCH(kernel, grid, kWgThreads, wg_layout<kHS>::kSmem, c->stream, p, bad, tq, tk, tv);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

// ---- the path's check against its twin ------------------------------------------------------

// Waits for c->stream at most `seconds`. A kernel that never ends cannot be stopped, but it
// need not hang the process: the error ends it with a message.
srlm_status wait_stream(context *c, double seconds) {
  const double t0 = srlm_time_now();
  for (double pause = 1e-4;; pause = pause < 0.01 ? 2 * pause : pause) {
    const cudaError_t rc = cudaStreamQuery(c->stream);
    if (rc == cudaSuccess) return SRLM_OK;
    if (rc != cudaErrorNotReady) SRLM_CUDA(rc);
    if (srlm_time_now() - t0 > seconds)
      return srlm_error(SRLM_ERR_LIB, SRLM_CUDA_NAME " attention",
                        "device %d: the Hopper kernel's first-use check has not finished after %.0f s (it hangs on this "
                        "GPU); set SRLM_CUDA_ATTENTION=mma, and please report it",
                        c->device, seconds);
    const struct timespec ts = {0, (long)(pause * 1e9)};
    nanosleep(&ts, nullptr);
  }
}

// A small forward on both kernels: 2 sequences (400 and 61 queries: the longer one's last
// query tiles read 4 key tiles, so both stages are refilled, after the empty barrier, in both
// phases), 4 heads over 2 kv heads, head dims 64 and 128, causal, non-causal and a sliding
// window. *why says what disagreed.
srlm_status probe(context *c, bool *ok, char *why, size_t nwhy) {
  *ok = true;
  const int B = 2, T = 461, NH = 4, NKV = 2, HSmax = 128;
  const int32_t cu[3] = {0, 400, 461};
  const size_t nq = (size_t)T * NH * HSmax, nkv = (size_t)T * NKV * HSmax;
  std::vector<__nv_bfloat16> hq(nq), hk(nkv), hv(nkv), o1(nq), o2(nq);
  std::vector<float> l1((size_t)T * NH), l2((size_t)T * NH);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  auto rnd = [&x] {  // in [-2, 2)
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return __float2bfloat16_rn((float)(x >> 40) / (float)(1u << 24) * 4.0f - 2.0f);
  };
  for (auto &e : hq) e = rnd();
  for (auto &e : hk) e = rnd();
  for (auto &e : hv) e = rnd();
  void *buf = nullptr;
  const size_t qb = nq * 2, kvb = nkv * 2, lb = (size_t)T * NH * 4;
  const size_t bytes = 2 * qb + 2 * kvb + qb + 2 * lb + 64;
  SRLM_CUDA(cudaMalloc(&buf, bytes));
  char *d = static_cast<char *>(buf);
  void *dq = d, *dk = d + qb, *dv = d + qb + kvb, *do1 = d + qb + 2 * kvb, *do2 = d + 2 * qb + 2 * kvb;
  float *dl1 = reinterpret_cast<float *>(d + 3 * qb + 2 * kvb), *dl2 = dl1 + (size_t)T * NH;
  int32_t *dcu = reinterpret_cast<int32_t *>(dl2 + (size_t)T * NH);
  int *bad = reinterpret_cast<int *>(dcu + 4);
  srlm_status st = SRLM_OK;
  bool hung = false;  // the Hopper kernel did not finish: nothing may wait for the device now
  struct variant {
    int HS, non_causal;
    long long window;
  } const vs[] = {{64, 0, 0}, {64, 1, 0}, {64, 0, 50}, {128, 0, 0}, {128, 1, 0}, {128, 1, 37}};
  auto run = [&]() -> srlm_status {
    SRLM_CUDA(cudaMemcpyAsync(dq, hq.data(), qb, cudaMemcpyHostToDevice, c->stream));
    SRLM_CUDA(cudaMemcpyAsync(dk, hk.data(), kvb, cudaMemcpyHostToDevice, c->stream));
    SRLM_CUDA(cudaMemcpyAsync(dv, hv.data(), kvb, cudaMemcpyHostToDevice, c->stream));
    SRLM_CUDA(cudaMemcpyAsync(dcu, cu, sizeof cu, cudaMemcpyHostToDevice, c->stream));
    SRLM_CUDA(cudaMemsetAsync(bad, 0, sizeof(int), c->stream));
    for (const variant &v : vs) {
      srlm_attention_params p{};
      p.q = dq, p.k = dk, p.v = dv, p.cu_seqlens = dcu, p.B = B, p.T = T, p.NH = NH, p.NKV = NKV, p.HS = v.HS;
      p.window = v.window, p.scale = 1.0f / sqrtf((float)v.HS), p.non_causal = v.non_causal, p.dtype = SRLM_BF16;
      p.out = do1, p.lse = dl1;
      SRLM_TRY(attention_mma_forward(c, p, bad, dim3((unsigned)grid_blocks(T, B, 1, kMmaRows), (unsigned)NH)));
      p.out = do2, p.lse = dl2;
      SRLM_TRY(attention_wgmma_forward(c, p, bad));
      const srlm_status ws = wait_stream(c, 30.0);
      if (ws != SRLM_OK) {
        hung = true;
        return ws;
      }
      const size_t n = (size_t)T * NH * v.HS;
      SRLM_CUDA(cudaMemcpyAsync(o1.data(), do1, n * 2, cudaMemcpyDeviceToHost, c->stream));
      SRLM_CUDA(cudaMemcpyAsync(o2.data(), do2, n * 2, cudaMemcpyDeviceToHost, c->stream));
      SRLM_CUDA(cudaMemcpyAsync(l1.data(), dl1, lb, cudaMemcpyDeviceToHost, c->stream));
      SRLM_CUDA(cudaMemcpyAsync(l2.data(), dl2, lb, cudaMemcpyDeviceToHost, c->stream));
      SRLM_CUDA(cudaStreamSynchronize(c->stream));
      // rounding apart (the two tile the keys differently), never by a layout's garbage
      for (size_t i = 0; i < n && *ok; i++) {
        const float a = __bfloat162float(o1[i]), b = __bfloat162float(o2[i]);
        if (!(fabsf(a - b) <= 0.02f + 0.02f * fabsf(a))) {
          *ok = false;
          snprintf(why, nwhy, "head dim %d%s%s: out[%zu] = %g, the mma.sync kernel's %g", v.HS,
                   v.non_causal ? ", non-causal" : "", v.window ? ", window" : "", i, (double)b, (double)a);
        }
      }
      for (size_t i = 0; i < (size_t)T * NH && *ok; i++)
        if (!(fabsf(l1[i] - l2[i]) <= 1e-3f * fmaxf(1.0f, fabsf(l1[i])))) {
          *ok = false;
          snprintf(why, nwhy, "head dim %d%s%s: lse[%zu] = %g, the mma.sync kernel's %g", v.HS,
                   v.non_causal ? ", non-causal" : "", v.window ? ", window" : "", i, (double)l2[i], (double)l1[i]);
        }
      if (!*ok) break;
    }
    return SRLM_OK;
  };
  st = run();
  if (hung) return st;  // buf stays: cudaFree would wait for the kernel that does not end
  const cudaError_t rc = cudaFree(buf);
  SRLM_TRY(st);
  if (rc != cudaSuccess) SRLM_CUDA(rc);
  return SRLM_OK;
}

}  // namespace

srlm_status attention_path_init(context *c) {
  const char *where = SRLM_CUDA_NAME " create";
  const char *env = getenv("SRLM_CUDA_ATTENTION");
  const std::string v = env ? env : "auto";
  if (v != "auto" && v != "mma" && v != "wgmma" && v != "check")
    return srlm_error(SRLM_ERR_CONFIG, where, "SRLM_CUDA_ATTENTION=%s: expected auto, mma, wgmma or check", v.c_str());
  if (c->cc != 90 && (v == "wgmma" || v == "check"))
    return srlm_error(SRLM_ERR_UNSUPPORTED, where,
                      "SRLM_CUDA_ATTENTION=%s: the Hopper kernel needs compute capability 9.0, device %d has %d.%d",
                      v.c_str(), c->device, c->cc / 10, c->cc % 10);
  if (v == "wgmma") c->attn_path = 2;
  else if (v == "mma" || c->cc != 90 || (v == "auto" && SRLM_HOPPER_SIM)) c->attn_path = 1;  // the simulator keeps the twin unless asked
  else c->attn_path = 3;  // checked at first use
  return SRLM_OK;
}

srlm_status attention_path(context *c, bool *use) {
  // a device's verdict holds for the process: later instances on it take it without a probe
  static std::mutex mu;
  static int verdict[64];  // by device: 0 not yet, else the path (1 or 2)
  if (c->attn_path == 3 && c->device >= 0 && c->device < 64) {
    std::lock_guard<std::mutex> lk(mu);
    if (verdict[c->device]) c->attn_path = verdict[c->device];
  }
  if (c->attn_path == 3) {
    bool ok = false;
    char why[256] = "";
    SRLM_TRY(probe(c, &ok, why, sizeof why));
    c->attn_path = ok ? 2 : 1;
    if (c->device >= 0 && c->device < 64) {
      std::lock_guard<std::mutex> lk(mu);
      verdict[c->device] = c->attn_path;
    }
    if (ok)
      srlm_log(SRLM_LOG_INFO, "device %d: attention forward on the Hopper kernel (wgmma + TMA; it agrees with the "
                              "mma.sync kernel)", c->device);
    else
      srlm_log(SRLM_LOG_WARN,
               "device %d: the Hopper attention kernel disagrees with the mma.sync kernel (%s); using mma.sync. "
               "Please report this; SRLM_CUDA_ATTENTION=wgmma forces it",
               c->device, why);
  }
  *use = c->attn_path == 2;
  return SRLM_OK;
}

#if SRLM_HOPPER_SIM
srlm_status tma_map_bf16_3d(context *, tma_map *m, const void *base, const uint64_t dim[3], const uint64_t stride[2],
                            const uint32_t box[3]) {
  if ((uintptr_t)base % 16 || stride[0] % 16 || stride[1] % 16 || box[0] * 2 != 128)
    return srlm_error(SRLM_ERR_INTERNAL, SRLM_CUDA_NAME " tensor map", "unaligned base, strides or box");
  // what cuTensorMapEncodeTiled refuses: dims in [1, 2^32], strides below 2^40, boxes of 1..256
  for (int i = 0; i < 3; i++)
    if (dim[i] < 1 || dim[i] > (1ull << 32) || box[i] < 1 || box[i] > 256 || (i < 2 && stride[i] >= (1ull << 40)))
      return srlm_error(SRLM_ERR_INTERNAL, SRLM_CUDA_NAME " tensor map", "dimension %d: %llu elements, box %u", i,
                        (unsigned long long)dim[i], box[i]);
  m->base = static_cast<const unsigned char *>(base);
  for (int i = 0; i < 3; i++) m->dim[i] = dim[i], m->box[i] = box[i];
  m->stride[0] = stride[0];
  m->stride[1] = stride[1];
  return SRLM_OK;
}
#else
srlm_status tma_map_bf16_3d(context *c, tma_map *m, const void *base, const uint64_t dim[3], const uint64_t stride[2],
                            const uint32_t box[3]) {
  const char *where = SRLM_CUDA_NAME " tensor map";
  if (!c->tma_encode) {
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    void *fn = nullptr;
    const cudaError_t rc = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
    if (rc != cudaSuccess || q != cudaDriverEntryPointSuccess || !fn) {
      (void)cudaGetLastError();
      return srlm_error(SRLM_ERR_UNSUPPORTED, where, "the driver has no cuTensorMapEncodeTiled (%s)",
                        SRLM_CUDA_ERRSTR(rc));
    }
    c->tma_encode = fn;
  }
  const cuuint32_t one[3] = {1, 1, 1};
  const CUresult r = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(c->tma_encode)(
      m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void *>(base), dim, stride, box, one,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return srlm_error(SRLM_ERR_INTERNAL, where, "cuTensorMapEncodeTiled failed (CUresult %d) for %llu x %llu x %llu",
                      (int)r, (unsigned long long)dim[0], (unsigned long long)dim[1], (unsigned long long)dim[2]);
  return SRLM_OK;
}
#endif

bool wgmma_eligible(const srlm_attention_params &p) {
  const uintptr_t a = (uintptr_t)p.q | (uintptr_t)p.k | (uintptr_t)p.v;
  return p.dtype == SRLM_BF16 && (p.HS == 64 || p.HS == 128) && a % 16 == 0 && p.T > 0 && p.T <= INT_MAX - kWgKeys &&
         p.NH <= INT_MAX;
}

srlm_status attention_wgmma_forward(context *c, const srlm_attention_params &p, const int *bad) {
  return p.HS == 64 ? launch_wgmma<64>(c, p, bad) : launch_wgmma<128>(c, p, bad);
}

}  // namespace SRLM_CUDA_NS
