// The LM head's log-prob kernels over vocabulary chunks (logprob.cuh says how the fused
// lmhead ops use them; they are not ops of their own).
//
// Fold: one block per row. Each thread keeps a running (max m, sum s) over the elements it
// strides (online logsumexp: a larger element rescales s by exp(m_old - m_new)), folded in
// groups of kFoldGroup elements, each summed on its own and then merged into (m, s): one
// long running float sum drifts (a 134M-id row, 524K terms a thread, was 4e-4 off in lse
// on an H200; grouped, 1.2e-6, like the CPU's blocked sum). The block merges the pairs
// with warp shuffles and then across warps through shared memory, in a fixed tree, so
// results are deterministic; thread 0 merges the chunk into the row's running state.
// -inf logits add nothing, NaN logits propagate, as on the CPU.
//
// Finalize: logp = (z_t - m) - log(s) (not z_t - lse: see the CPU twin), lse = m + log(s).
// Targets are device data, so they are checked here: a bad id claims the context's error
// record (reported by the next sync()/copy_d2h()) and its row's outputs become NaN.
//
// dz: rows x column tiles; every element is independent. Probabilities under FLT_MIN are 0,
// as in the CPU twin's exp: expf's 2-ulp error is relative only for normal results, and a
// subnormal one would be off by 2x or more. A row with dlogp 0 gets exact zeros (the CPU
// twin's shortcut: an infinite logit must not turn 0 * inf into NaN there).
#include "logprob.cuh"

namespace SRLM_CUDA_NS {

namespace {

constexpr int kFoldThreads = 256;      // per row; 8 warps
constexpr int kFoldGroup = 64;         // elements a thread sums before merging into (m, s)
constexpr int kDzThreads = 256;
constexpr int kDzPerThread = 8;        // a tile is kDzThreads * kDzPerThread columns
constexpr unsigned kMaxGridY = 65535u;  // CUDA's limit on gridDim.y
constexpr float kExpLo = -87.3365479f;  // exp(kExpLo) = FLT_MIN; the CPU twin's cutoff

__device__ __forceinline__ void online_add(float &m, float &s, float x) {
  if (x > m) {
    s = s * expf(m - x) + 1.0f;
    m = x;
  } else {
    s += x == -INFINITY ? 0.0f : expf(x - m);  // m may be -inf too: exp(-inf - -inf) is NaN
  }
}

// Merges (m2, s2) into (m, s). A side that saw only -inf has m = -inf and contributes
// s2 * 0 (NaN when it saw a NaN).
__device__ __forceinline__ void online_merge(float &m, float &s, float m2, float s2) {
  if (m2 > m) {
    s = s * expf(m - m2) + s2;
    m = m2;
  } else {
    s += m2 == -INFINITY ? s2 * 0.0f : s2 * expf(m2 - m);
  }
}

__global__ void __launch_bounds__(kFoldThreads) lmhead_fold_kernel(lmhead_chunk p) {
  __shared__ float sh_m[kFoldThreads / kWarp], sh_s[kFoldThreads / kWarp];
  const long long row = blockIdx.x;
  const float *z = p.z + row * p.ldz;  // (Vc)
  float m = -INFINITY, s = 0.0f;
  const long long span = (long long)kFoldThreads * kFoldGroup;
  for (long long v0 = threadIdx.x; v0 < p.Vc; v0 += span) {
    const long long end = v0 + span < p.Vc ? v0 + span : p.Vc;
    float gm = -INFINITY, gs = 0.0f;
    for (long long v = v0; v < end; v += kFoldThreads) online_add(gm, gs, z[v]);
    online_merge(m, s, gm, gs);
  }
  const int t = p.targets[row];
  if (t >= p.v0 && t < p.v0 + p.Vc && (t - p.v0) % kFoldThreads == threadIdx.x) p.zt[row] = z[t - p.v0];
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
    online_merge(m, s, m2, s2);
  }
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) {
    sh_m[warp] = m;
    sh_s[warp] = s;
  }
  __syncthreads();
  if (warp != 0) return;
  m = lane < kFoldThreads / kWarp ? sh_m[lane] : -INFINITY;
  s = lane < kFoldThreads / kWarp ? sh_s[lane] : 0.0f;
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
    online_merge(m, s, m2, s2);
  }
  if (lane != 0) return;
  float rm = p.m[row], rs = p.s[row];
  online_merge(rm, rs, m, s);
  p.m[row] = rm;
  p.s[row] = rs;
}

__global__ void lmhead_finalize_kernel(float *logp, float *lse, const float *m, const float *s, const float *zt,
                                       const int32_t *targets, long long N, long long V, kerr_rec *kerr, int op) {
  const long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= N) return;
  const float ls = logf(s[row]);
  const int t = targets[row];
  if (t == -1) {
    logp[row] = 0.0f;
  } else if (t < 0 || t >= V) {
    kerr_record(kerr, (srlm_op_id)op, KERR_TARGET_ID, row, t, V);
    logp[row] = NAN;
  } else {
    logp[row] = (zt[row] - m[row]) - ls;
  }
  if (lse) lse[row] = (t == -1 || (t >= 0 && t < V)) ? m[row] + ls : NAN;
}

template <class T>
__global__ void __launch_bounds__(kDzThreads)
    lmhead_dz_kernel(T *dz, long long lddz, lmhead_chunk p, const float *lse_in, const float *dlogp, long long V,
                     kerr_rec *kerr, int op) {
  const long long row = blockIdx.x;
  const int t = p.targets[row];
  const float g = dlogp[row], lse = lse_in[row];
  // A row without a target must carry no gradient: its -1 is then out of range [0, V).
  const bool bad = t == -1 ? g != 0.0f : (t < 0 || t >= V);
  if (bad && blockIdx.y == 0 && threadIdx.x == 0) kerr_record(kerr, (srlm_op_id)op, KERR_TARGET_ID, p.n0 + row, t, V);
  const float *z = p.z + row * p.ldz;  // (Vc)
  T *d = dz + row * lddz;              // (Vc)
  const long long tile = (long long)kDzThreads * kDzPerThread;
  for (long long t0 = (long long)blockIdx.y * tile; t0 < p.Vc; t0 += (long long)gridDim.y * tile) {
    const long long end = t0 + tile < p.Vc ? t0 + tile : p.Vc;
    for (long long v = t0 + threadIdx.x; v < end; v += kDzThreads) {
      const float dl = z[v] - lse;  // NaN stays NaN: the comparison is false
      const float e = dl < kExpLo ? 0.0f : expf(dl);
      st(d + v, bad ? NAN : g == 0.0f ? 0.0f : g * ((p.v0 + v == t ? 1.0f : 0.0f) - e));
    }
  }
}

}  // namespace

srlm_status lmhead_fold(context *c, const lmhead_chunk &p) {
  if (p.N == 0 || p.Vc == 0) return SRLM_OK;
  SRLM_LAUNCH(lmhead_fold_kernel, (unsigned)p.N, kFoldThreads, 0, c->stream, p);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

srlm_status lmhead_finalize(context *c, float *logp, float *lse, const float *m, const float *s, const float *zt,
                            const int32_t *targets, long long N, long long V, srlm_op_id op) {
  if (N == 0) return SRLM_OK;
  SRLM_LAUNCH(lmhead_finalize_kernel, (unsigned)((N + 255) / 256), 256, 0, c->stream, logp, lse, m, s, zt, targets,
              N, V, c->kerr, (int)op);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

srlm_status lmhead_dz(context *c, void *dz, long long lddz, srlm_dtype dtype, const lmhead_chunk &p, const float *lse,
                      const float *dlogp, long long V, srlm_op_id op) {
  if (p.N == 0 || p.Vc == 0) return SRLM_OK;
  const long long tile = (long long)kDzThreads * kDzPerThread;
  long long tiles = (p.Vc + tile - 1) / tile;
  if (tiles > kMaxGridY) tiles = kMaxGridY;  // the kernel strides over the rest
  const dim3 grid((unsigned)p.N, (unsigned)tiles);
  SRLM_DTYPE_SWITCH(dtype, T,
                    SRLM_LAUNCH(lmhead_dz_kernel<T>, grid, kDzThreads, 0, c->stream, static_cast<T *>(dz), lddz, p,
                                lse, dlogp, V, c->kerr, (int)op););
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

}  // namespace SRLM_CUDA_NS
