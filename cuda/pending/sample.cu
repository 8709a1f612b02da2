// The sample op (backend.h) on the GPU, with the arithmetic of srlm/sample_math.h, so a
// row gives the token and log-probs of the CPU op (src/backend/cpu/sample.c) bit for bit.
//
// NOT BUILT YET: the CUDA backend and its simulator are being rebuilt on another branch;
// this file holds the kernel and a launcher with explicit inputs (stream, error word) for
// that backend to put in its table as `.sample`, and for its backend-ops test to hold
// against the CPU op.
//
// One block of kThreads threads per row. Nothing is sorted and nothing is stored: each
// pass re-reads the row's logits (fp32, from L2 after the first pass) and recomputes
// the weights with srlm_sample_weight. Every sum is of 128-bit integer masses, so the
// shared-memory atomics and the reduction trees give the CPU's exact values:
//   1. scan: max, lowest argmax, finite count, lowest NaN/+inf id (exact reductions);
//   2. Z1 = sum of the temperature-1 masses (the log-sum-exp);
//   3. top-k: the k-th largest rank key by an MSB-first radix select (8 bits a pass,
//      integer counts); the rank key orders (logit descending, lower id first);
//   4. top-p: the same radix walk with masses: the first ranked token whose inclusive
//      mass reaches P = ceil(top_p Q_k);
//   5. Q = the kept mass; the draw: each thread owns a contiguous id range, an exclusive
//      scan of the ranges' kept masses finds the thread whose range holds the target,
//      and that thread walks its range in id order.
// Data errors (a NaN/+inf logit, a row without a finite one) go to one 64-bit error word
// by atomicMin on (row << 32 | detail): the lowest failing row wins, as on the CPU, and
// within a row the lowest bad id.
#include <cuda_runtime.h>

#include "srlm/sample_math.h"

namespace {

constexpr int kThreads = 256;
constexpr int kRadixBits = 8;
constexpr int kBins = 1 << kRadixBits;

// detail of the error word: (id << 1 | is_inf) for a bad logit, kNoFinite for a row
// without a finite logit.
constexpr unsigned kNoFinite = 0xffffffffu;

// Rank key: larger = ranked earlier (larger logit, then lower id). -0 counts as +0, as
// the float comparison of srlm_sample_ranks_before does.
__device__ __forceinline__ unsigned long long rank_key(float l, long long id) {
  if (l == 0.0f) l = 0.0f;
  unsigned u = __float_as_uint(l);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ((unsigned long long)u << 32) | (0xffffffffu - (unsigned)id);
}

__device__ __forceinline__ srlm_u128 u128_block_sum(srlm_u128 v, srlm_u128 *part) {
  part[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if ((int)threadIdx.x < s) part[threadIdx.x] = srlm_u128_add128(part[threadIdx.x], part[threadIdx.x + s]);
    __syncthreads();
  }
  const srlm_u128 r = part[0];
  __syncthreads();
  return r;
}

// Adds q to a shared 128-bit bin: integer atomics, exact in any order.
__device__ __forceinline__ void u128_atomic_add(unsigned long long *lo, unsigned long long *hi, uint64_t q) {
  const unsigned long long old = atomicAdd(lo, (unsigned long long)q);
  if (old + q < old) atomicAdd(hi, 1ull);
}

struct shared_state {
  srlm_u128 part[kThreads];
  unsigned long long mass_lo[kBins], mass_hi[kBins];
  unsigned count[kBins];
  float red_f[kThreads];
  long long red_i[kThreads], red_j[kThreads];
  unsigned long long key_prefix; // the radix walk's result
  int tok;
};

// The row's kept-set predicate (as kept_token in cpu/sample.c).
struct kept_set {
  int cut;
  float cut_l;
  long long cut_id;
  float wmin;
  __device__ __forceinline__ bool in_prefix(float l, long long id) const {
    return !cut || !srlm_sample_ranks_before(cut_l, (int32_t)cut_id, l, (int32_t)id);
  }
  __device__ __forceinline__ bool kept(float l, long long id, float w) const {
    return l != -INFINITY && w >= wmin && in_prefix(l, id);
  }
};

// MSB-first radix walk over the rank keys of the tokens in the current prefix: with
// masses (by_mass), the first ranked token whose inclusive mass reaches target; with
// counts, the target-th ranked token (target.lo >= 1). Returns its key.
__device__ unsigned long long radix_walk(const float *l, long long V, float lmax, float t, const kept_set &k,
                                         srlm_u128 target, bool by_mass, shared_state &sh) {
  unsigned long long prefix = 0, mask = 0;
  srlm_u128 above = {0, 0};
  for (int shift = 64 - kRadixBits; shift >= 0; shift -= kRadixBits) {
    for (int b = threadIdx.x; b < kBins; b += kThreads) sh.mass_lo[b] = sh.mass_hi[b] = 0, sh.count[b] = 0;
    __syncthreads();
    for (long long i = threadIdx.x; i < V; i += kThreads) {
      const float x = l[i];
      if (x == -INFINITY || !k.in_prefix(x, i)) continue;
      const unsigned long long key = rank_key(x, i);
      if ((key & mask) != prefix) continue;
      const int d = (int)(key >> shift) & (kBins - 1);
      atomicAdd(&sh.count[d], 1u);
      if (by_mass) u128_atomic_add(&sh.mass_lo[d], &sh.mass_hi[d], srlm_sample_mass(srlm_sample_weight(x, lmax, t)));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int d = kBins - 1;
      for (; d > 0; d--) {
        if (!sh.count[d]) continue;
        const srlm_u128 bin = by_mass ? srlm_u128{sh.mass_lo[d], sh.mass_hi[d]} : srlm_u128{sh.count[d], 0};
        const srlm_u128 through = srlm_u128_add128(above, bin);
        if (!srlm_u128_lt(through, target)) break; // the cut lies in this group
        above = through;
      }
      sh.key_prefix = prefix | ((unsigned long long)d << shift);
    }
    __syncthreads();
    prefix = sh.key_prefix;
    mask |= (unsigned long long)(kBins - 1) << shift;
    __syncthreads();
  }
  return prefix;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(srlm_sample_params p, unsigned long long *err) {
  __shared__ shared_state sh;
  const long long row = blockIdx.x, V = p.V;
  const float *l = p.logits + row * V; // (V)

  // 1. scan
  float m = -INFINITY;
  long long arg = V, bad = V, n_fin = 0;
  unsigned bad_inf = 0;
  for (long long i = threadIdx.x; i < V; i += kThreads) {
    const float x = l[i];
    if (x == -INFINITY) continue;
    if (!isfinite(x)) {
      if (i < bad) bad = i, bad_inf = !isnan(x);
      continue;
    }
    n_fin++;
    if (x > m) m = x, arg = i; // ids grow within a thread: the first max is the lowest id
  }
  sh.red_f[threadIdx.x] = m;
  sh.red_i[threadIdx.x] = arg;
  sh.red_j[threadIdx.x] = bad * 2 + bad_inf;
  sh.part[threadIdx.x] = srlm_u128{(uint64_t)n_fin, 0};
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if ((int)threadIdx.x < s) {
      const int o = threadIdx.x + s;
      if (sh.red_f[o] > sh.red_f[threadIdx.x] ||
          (sh.red_f[o] == sh.red_f[threadIdx.x] && sh.red_i[o] < sh.red_i[threadIdx.x]))
        sh.red_f[threadIdx.x] = sh.red_f[o], sh.red_i[threadIdx.x] = sh.red_i[o];
      if (sh.red_j[o] < sh.red_j[threadIdx.x]) sh.red_j[threadIdx.x] = sh.red_j[o];
      sh.part[threadIdx.x] = srlm_u128_add128(sh.part[threadIdx.x], sh.part[o]);
    }
    __syncthreads();
  }
  m = sh.red_f[0];
  const long long argmax = sh.red_i[0], bad_code = sh.red_j[0];
  n_fin = (long long)sh.part[0].lo;
  __syncthreads();
  if (bad_code < 2 * V || n_fin == 0) {
    if (threadIdx.x == 0)
      atomicMin(err, ((unsigned long long)row << 32) | (bad_code < 2 * V ? (unsigned long long)bad_code : kNoFinite));
    return;
  }

  // 2. Z1
  srlm_u128 z1 = {0, 0};
  for (long long i = threadIdx.x; i < V; i += kThreads)
    z1 = srlm_u128_add(z1, srlm_sample_mass(srlm_sample_weight(l[i], m, 1.0f)));
  z1 = u128_block_sum(z1, sh.part);

  const float t = p.temperature;
  long long tok = argmax;
  double sample_lp = 0.0;
  if (t > 0.0f) {
    kept_set k = {0, 0.0f, 0, p.min_p};
    // 3. top-k
    if (p.top_k > 0 && p.top_k < n_fin) {
      const unsigned long long key = radix_walk(l, V, m, t, k, srlm_u128{(uint64_t)p.top_k, 0}, false, sh);
      k.cut = 1;
      k.cut_id = 0xffffffffu - (unsigned)(key & 0xffffffffu);
      k.cut_l = l[k.cut_id];
    }
    // 4. top-p
    if (p.top_p < 1.0f) {
      srlm_u128 qk = {0, 0};
      for (long long i = threadIdx.x; i < V; i += kThreads)
        if (l[i] != -INFINITY && k.in_prefix(l[i], i)) qk = srlm_u128_add(qk, srlm_sample_mass(srlm_sample_weight(l[i], m, t)));
      qk = u128_block_sum(qk, sh.part);
      const unsigned long long key = radix_walk(l, V, m, t, k, srlm_sample_top_p_target(p.top_p, qk), true, sh);
      k.cut = 1;
      k.cut_id = 0xffffffffu - (unsigned)(key & 0xffffffffu);
      k.cut_l = l[k.cut_id];
    }
    // 5. the kept mass, then the draw over contiguous id ranges
    const long long per = (V + kThreads - 1) / kThreads, i0 = threadIdx.x * per, i1 = i0 + per < V ? i0 + per : V;
    srlm_u128 own = {0, 0};
    for (long long i = i0; i < i1; i++) {
      const float w = srlm_sample_weight(l[i], m, t);
      if (k.kept(l[i], i, w)) own = srlm_u128_add(own, srlm_sample_mass(w));
    }
    sh.part[threadIdx.x] = own;
    if (threadIdx.x == 0) sh.tok = -1;
    __syncthreads();
    if (threadIdx.x == 0) { // exclusive scan in thread order: exact, so its order is free
      srlm_u128 run = {0, 0};
      for (int j = 0; j < kThreads; j++) {
        const srlm_u128 x = sh.part[j];
        sh.part[j] = run;
        run = srlm_u128_add128(run, x);
      }
      sh.mass_lo[0] = run.lo, sh.mass_hi[0] = run.hi; // Q, the kept mass (the bins are free now)
    }
    __syncthreads();
    const srlm_u128 q = {sh.mass_lo[0], sh.mass_hi[0]}, excl = sh.part[threadIdx.x];
    const srlm_philox_out r = srlm_philox_keyed(p.seed, SRLM_RNG_PURPOSE_SAMPLE, (uint32_t)p.seq_id[row], p.step[row],
                                                (uint32_t)(p.seq_id[row] >> 32));
    const srlm_u128 target = srlm_sample_draw_target(q, srlm_rng_u53(r.v[0], r.v[1]));
    if (!srlm_u128_lt(target, excl) && srlm_u128_lt(target, srlm_u128_add128(excl, own))) {
      srlm_u128 cum = excl;
      for (long long i = i0; i < i1; i++) {
        const float w = srlm_sample_weight(l[i], m, t);
        if (!k.kept(l[i], i, w)) continue;
        cum = srlm_u128_add(cum, srlm_sample_mass(w));
        if (srlm_u128_lt(target, cum)) {
          sh.tok = (int)i;
          break;
        }
      }
    }
    __syncthreads();
    tok = sh.tok;
    sample_lp = SRLM_SM_DDIV((double)l[tok] - (double)m, (double)t) - srlm_sample_log_mass(q);
  }
  if (threadIdx.x == 0) {
    p.token[row] = (int32_t)tok;
    p.logprob[row] = (float)(((double)l[tok] - (double)m) - srlm_sample_log_mass(z1));
    if (p.sample_logprob) p.sample_logprob[row] = (float)sample_lp;
  }
}

} // namespace

// The glue for the rebuilt CUDA backend. err: one device word the caller sets to ~0ull
// before the launch; after the stream reaches this point it holds ~0ull, or the first
// failing row (err >> 32) and its detail (srlm_cuda_sample_error turns it into the
// CPU op's message).
cudaError_t srlm_cuda_sample_launch(const srlm_sample_params &p, cudaStream_t stream, unsigned long long *err) {
  if (p.n == 0) return cudaSuccess;
  sample_kernel<<<(unsigned)p.n, kThreads, 0, stream>>>(p, err);
  return cudaGetLastError();
}

srlm_status srlm_cuda_sample_error(const char *where, unsigned long long err) {
  if (err == ~0ull) return SRLM_OK;
  const long long row = (long long)(err >> 32);
  const unsigned detail = (unsigned)err;
  if (detail == kNoFinite)
    return srlm_error(SRLM_ERR_RANGE, where, "row %lld: every logit is -inf: no token can be drawn", row);
  return srlm_error(SRLM_ERR_RANGE, where, "row %lld: logit of id %u is %s", row, detail >> 1,
                    (detail & 1) ? "+inf" : "NaN");
}
