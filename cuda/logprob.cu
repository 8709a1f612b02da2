// Log-prob gather and its softmax backward on the GPU.
//
// Forward: one block per row. Each thread keeps a running (max m, sum s) over the
// elements it strides (online logsumexp: a larger element rescales s by exp(m_old -
// m_new)), folded in groups of kFwdGroup elements, each summed on its own and then
// merged into (m, s): one long running float sum drifts (a 134M-id row, 524K terms a
// thread, was 4e-4 off in lse on an H200; grouped, 1.2e-6, like the CPU's blocked
// sum). The block merges the pairs with warp shuffles and then across warps through
// shared memory, in a fixed tree, so results are deterministic. Thread 0 forms
// logp = (z_t - m) - log(s) (not z_t - lse: see the CPU twin) and lse = m + log(s).
// -inf logits add nothing, NaN logits propagate, as on the CPU.
//
// Targets are device data, so they are checked in the kernel: a bad id claims the
// backend's error record (reported by the next sync()/copy_d2h()) and its row's outputs
// become NaN.
//
// Backward: rows x column tiles; every element is independent:
// dlogits = dlogp * (onehot - exp(z - lse)), overwritten (may alias the logits).
// Probabilities under FLT_MIN are 0, as in the CPU twin's exp: expf's 2-ulp error is
// relative only for normal results, and a subnormal one would be off by 2x or more.
#include <math.h>

#include "backend_cuda.cuh"

namespace {

constexpr int kFwdThreads = 256;         // per row; 8 warps
constexpr int kFwdGroup = 64;            // elements a thread sums before merging into (m, s)
constexpr int kBwdThreads = 256;
constexpr int kBwdPerThread = 8;         // a tile is kBwdThreads * kBwdPerThread columns
constexpr unsigned kMaxGridY = 65535u;   // CUDA's limit on gridDim.y
constexpr float kExpLo = -87.3365479f;   // exp(kExpLo) = FLT_MIN; the CPU twin's cutoff

__device__ __forceinline__ void online_add(float &m, float &s, float x) {
  if (x > m) {
    s = s * expf(m - x) + 1.0f;
    m = x;
  } else {
    s += x == -INFINITY ? 0.0f : expf(x - m); // m may be -inf too: exp(-inf - -inf) is NaN
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

__global__ void __launch_bounds__(kFwdThreads)
    logprob_forward_kernel(srlm_logprob_params p, srlm_cuda_kerr *kerr) {
  __shared__ float sh_m[kFwdThreads / SRLM_CUDA_WARP], sh_s[kFwdThreads / SRLM_CUDA_WARP];
  const long long row = blockIdx.x;
  const float *z = p.logits + row * p.V; // (V)
  float m = -INFINITY, s = 0.0f;
  const long long span = (long long)kFwdThreads * kFwdGroup;
  for (long long v0 = threadIdx.x; v0 < p.V; v0 += span) {
    const long long end = v0 + span < p.V ? v0 + span : p.V;
    float gm = -INFINITY, gs = 0.0f;
    for (long long v = v0; v < end; v += kFwdThreads) online_add(gm, gs, z[v]);
    online_merge(m, s, gm, gs);
  }
  for (int off = SRLM_CUDA_WARP / 2; off > 0; off /= 2) {
    float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
    online_merge(m, s, m2, s2);
  }
  const int warp = threadIdx.x / SRLM_CUDA_WARP, lane = threadIdx.x % SRLM_CUDA_WARP;
  if (lane == 0) {
    sh_m[warp] = m;
    sh_s[warp] = s;
  }
  __syncthreads();
  if (warp != 0) return;
  m = lane < kFwdThreads / SRLM_CUDA_WARP ? sh_m[lane] : -INFINITY;
  s = lane < kFwdThreads / SRLM_CUDA_WARP ? sh_s[lane] : 0.0f;
  for (int off = SRLM_CUDA_WARP / 2; off > 0; off /= 2) {
    float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
    online_merge(m, s, m2, s2);
  }
  if (lane != 0) return;
  const int t = p.targets[row];
  if (t < 0 || t >= p.V) {
    srlm_cuda_kerr_record(kerr, SRLM_CUDA_KERR_LOGPROB_FORWARD, row, t, p.V);
    p.logp[row] = NAN;
    if (p.lse) p.lse[row] = NAN;
    return;
  }
  const float ls = logf(s);
  p.logp[row] = (z[t] - m) - ls;
  if (p.lse) p.lse[row] = m + ls;
}

__global__ void __launch_bounds__(kBwdThreads)
    logprob_backward_kernel(srlm_logprob_bwd_params p, srlm_cuda_kerr *kerr) {
  const long long row = blockIdx.x;
  const int t = p.targets[row];
  const bool bad = t < 0 || t >= p.V;
  if (bad && blockIdx.y == 0 && threadIdx.x == 0)
    srlm_cuda_kerr_record(kerr, SRLM_CUDA_KERR_LOGPROB_BACKWARD, row, t, p.V);
  const float g = p.dlogp[row], lse = p.lse[row];
  const float *z = p.logits + row * p.V; // (V)
  float *dz = p.dlogits + row * p.V;     // (V)
  const long long tile = (long long)kBwdThreads * kBwdPerThread;
  for (long long t0 = (long long)blockIdx.y * tile; t0 < p.V; t0 += (long long)gridDim.y * tile) {
    const long long end = t0 + tile < p.V ? t0 + tile : p.V;
    for (long long v = t0 + threadIdx.x; v < end; v += kBwdThreads) {
      const float d = z[v] - lse; // NaN stays NaN: the comparison is false
      const float e = d < kExpLo ? 0.0f : expf(d);
      dz[v] = bad ? NAN : g * ((v == t ? 1.0f : 0.0f) - e);
    }
  }
}

} // namespace

srlm_status srlm_cuda_logprob_forward(srlm_logprob_params p) {
  const char *where = "cuda logprob_forward";
  SRLM_TRY(srlm_cuda_ready(where));
  SRLM_TRY(srlm_logprob_params_check(&p, where));
  if (p.N == 0) return SRLM_OK;
  logprob_forward_kernel<<<(unsigned)p.N, kFwdThreads, 0, srlm_cuda_stream()>>>(p, srlm_cuda_kerr_ptr());
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

srlm_status srlm_cuda_logprob_backward(srlm_logprob_bwd_params p) {
  const char *where = "cuda logprob_backward";
  SRLM_TRY(srlm_cuda_ready(where));
  SRLM_TRY(srlm_logprob_bwd_params_check(&p, where));
  if (p.N == 0) return SRLM_OK;
  const long long tile = (long long)kBwdThreads * kBwdPerThread;
  long long tiles = (p.V + tile - 1) / tile;
  if (tiles > kMaxGridY) tiles = kMaxGridY; // the kernel strides over the rest
  dim3 grid((unsigned)p.N, (unsigned)tiles);
  logprob_backward_kernel<<<grid, kBwdThreads, 0, srlm_cuda_stream()>>>(p, srlm_cuda_kerr_ptr());
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}
