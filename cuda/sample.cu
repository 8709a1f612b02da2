// The sample op (backend.h) for both CUDA flavors, with the arithmetic of srlm/sample_math.h,
// so a row gives the token and log-probs of the CPU op (src/backend/cpu/sample.c) bit for
// bit: every weight is srlm_sample_weight (IEEE operations only, the _rn intrinsics on the
// device), every sum of weights an exact 128-bit integer sum of masses, and integer sums do
// not depend on their order, so the reductions below may use any tree and atomics.
//
// One block of kThreads threads per row. Nothing is sorted and nothing is stored: each pass
// re-reads the row's logits (fp32, from L2 after the first pass) and recomputes the weights:
//   1. scan: max, lowest argmax, finite count, lowest NaN/+inf id (exact reductions);
//   2. Z1 = sum of the temperature-1 masses (the log-sum-exp);
//   3. top-k: the k-th largest rank key by an MSB-first radix select (8 bits a pass,
//      integer counts); the rank key orders (logit descending, lower id first);
//   4. top-p: the same radix walk with masses: the first ranked token whose inclusive mass
//      reaches P = ceil(top_p Q_k);
//   5. Q = the kept mass; the draw: each thread owns a contiguous id range, an exclusive
//      scan of the ranges' kept masses finds the thread whose range holds the target, and
//      that thread walks its range in id order.
// Data errors (a NaN/+inf logit, a row without a finite logit: the CPU op refuses both) are
// recorded in the context's kernel error record with the CPU's words (KERR_LOGIT naming the
// row and the lowest bad id, KERR_NO_FINITE), and the row's outputs become token -1 and NaN
// log-probs. With several bad rows the first block to find one claims the record: the
// lowest row on the simulator, as on the CPU; any of them on a GPU.
#include "common.cuh"
#include "srlm/sample_math.h"

namespace SRLM_CUDA_NS {

namespace {

constexpr int kThreads = 256;
constexpr int kGroups = 16;  // block reductions: kGroups threads reduce kThreads / kGroups values each
constexpr int kPerGroup = kThreads / kGroups;
constexpr int kRadixBits = 8;
constexpr int kBins = 1 << kRadixBits;

// Rank key: larger = ranked earlier (larger logit, then lower id). -0 counts as +0, as the
// float comparison of srlm_sample_ranks_before does.
__device__ __forceinline__ unsigned long long rank_key(float l, long long id) {
  if (l == 0.0f) l = 0.0f;
  unsigned u = __float_as_uint(l);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ((unsigned long long)u << 32) | (0xffffffffu - (unsigned)id);
}

struct radix_bins {
  unsigned long long mass_lo[kBins], mass_hi[kBins];
  unsigned count[kBins];
};

// A scan's partial result: the largest finite logit and its lowest id, the lowest bad id
// (2 id + is_inf; 2 V when none), the finite count.
struct scan_part {
  float max;
  long long arg, bad, n_fin;
};

struct shared_state {
  srlm_u128 part[kThreads];     // one value per thread
  srlm_u128 group[kGroups];     // one per group of kPerGroup threads
  scan_part scan[kThreads];
  scan_part scan_group[kGroups];
  radix_bins bins[2];           // the radix walk's histograms, one filled while the other is cleared
  scan_part row;                // the scan's result
  srlm_u128 total;              // a block sum's result
  unsigned long long key_prefix;  // the radix walk's current group (and at last its result)
  int unique;                     // the walk's group holds one token
  int tok;
};

// Reductions in two levels: kGroups threads combine kPerGroup values each, thread 0 the
// groups' results: 3 barriers (a tree would take log2(kThreads) + 1, and barriers are what a
// block costs on the simulator). Every operation here is exact, so its order is free.
__device__ __forceinline__ scan_part scan_merge(scan_part a, const scan_part &b) {
  if (b.max > a.max || (b.max == a.max && b.arg < a.arg)) a.max = b.max, a.arg = b.arg;
  if (b.bad < a.bad) a.bad = b.bad;
  a.n_fin += b.n_fin;
  return a;
}

__device__ scan_part scan_block(scan_part v, shared_state &sh) {
  sh.scan[threadIdx.x] = v;
  __syncthreads();
  if (threadIdx.x < kGroups) {
    scan_part r = sh.scan[threadIdx.x * kPerGroup];
    for (int j = 1; j < kPerGroup; j++) r = scan_merge(r, sh.scan[threadIdx.x * kPerGroup + j]);
    sh.scan_group[threadIdx.x] = r;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    scan_part r = sh.scan_group[0];
    for (int j = 1; j < kGroups; j++) r = scan_merge(r, sh.scan_group[j]);
    sh.row = r;
  }
  __syncthreads();
  return sh.row;
}

__device__ srlm_u128 u128_block_sum(srlm_u128 v, shared_state &sh) {
  sh.part[threadIdx.x] = v;
  __syncthreads();
  if (threadIdx.x < kGroups) {
    srlm_u128 r = {0, 0};
    for (int j = 0; j < kPerGroup; j++) r = srlm_u128_add128(r, sh.part[threadIdx.x * kPerGroup + j]);
    sh.group[threadIdx.x] = r;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    srlm_u128 r = {0, 0};
    for (int j = 0; j < kGroups; j++) r = srlm_u128_add128(r, sh.group[j]);
    sh.total = r;
  }
  __syncthreads();
  return sh.total;
}

// Adds q to a shared 128-bit bin: integer atomics, exact in any order.
__device__ __forceinline__ void u128_atomic_add(unsigned long long *lo, unsigned long long *hi, uint64_t q) {
  const unsigned long long old = atomicAdd(lo, (unsigned long long)q);
  if (old + q < old) atomicAdd(hi, 1ull);
}

__device__ __forceinline__ void clear_bins(radix_bins &b) {
  for (int d = threadIdx.x; d < kBins; d += kThreads) b.mass_lo[d] = b.mass_hi[d] = 0, b.count[d] = 0;
}

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

// MSB-first radix walk over the rank keys of the tokens in the current prefix: with masses
// (by_mass), the first ranked token whose inclusive mass reaches target; with counts, the
// target-th ranked token (target.lo >= 1). Returns its key. A pass histograms the keys of
// the current group by their next 8 bits (into one set of bins while the other set is
// cleared for the next pass: 2 barriers a pass) and thread 0 walks the bins from the top to
// the one the cut lies in. Once that bin holds a single token the cut is that token: one
// more pass finds its key (ranks are unique, so distinct logits seldom need more than 3 or
// 4 of the 8 passes).
__device__ unsigned long long radix_walk(const float *l, long long V, float lmax, float t, const kept_set &k,
                                         srlm_u128 target, bool by_mass, shared_state &sh) {
  unsigned long long prefix = 0, mask = 0;
  srlm_u128 above = {0, 0};  // thread 0's: the count or mass ranked above the current group
  int buf = 0, shift = 64 - kRadixBits;
  clear_bins(sh.bins[0]);
  __syncthreads();
  for (;; shift -= kRadixBits, buf ^= 1) {
    radix_bins &b = sh.bins[buf];
    for (long long i = threadIdx.x; i < V; i += kThreads) {
      const float x = l[i];
      if (x == -INFINITY || !k.in_prefix(x, i)) continue;
      const unsigned long long key = rank_key(x, i);
      if ((key & mask) != prefix) continue;
      const int d = (int)(key >> shift) & (kBins - 1);
      atomicAdd(&b.count[d], 1u);
      if (by_mass) u128_atomic_add(&b.mass_lo[d], &b.mass_hi[d], srlm_sample_mass(srlm_sample_weight(x, lmax, t)));
    }
    clear_bins(sh.bins[buf ^ 1]);  // last read by thread 0 before the previous pass's second barrier
    __syncthreads();
    if (threadIdx.x == 0) {
      int d = kBins - 1;
      for (; d > 0; d--) {
        if (!b.count[d]) continue;
        const srlm_u128 bin = by_mass ? srlm_u128{b.mass_lo[d], b.mass_hi[d]} : srlm_u128{b.count[d], 0};
        const srlm_u128 through = srlm_u128_add128(above, bin);
        if (!srlm_u128_lt(through, target)) break;  // the cut lies in this group
        above = through;
      }
      sh.key_prefix = prefix | ((unsigned long long)d << shift);
      sh.unique = b.count[d] == 1;
    }
    __syncthreads();
    prefix = sh.key_prefix;
    mask |= (unsigned long long)(kBins - 1) << shift;
    if (shift == 0) return prefix;
    if (sh.unique) break;  // the same for every thread
  }
  __syncthreads();  // every thread has read key_prefix and unique
  for (long long i = threadIdx.x; i < V; i += kThreads) {
    const float x = l[i];
    if (x == -INFINITY || !k.in_prefix(x, i)) continue;
    const unsigned long long key = rank_key(x, i);
    if ((key & mask) == prefix) sh.key_prefix = key;  // exactly one token matches
  }
  __syncthreads();
  return sh.key_prefix;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(srlm_sample_params p, kerr_rec *kerr) {
  __shared__ shared_state sh;
  const long long row = blockIdx.x, V = p.V;
  const float *l = p.logits + row * V;  // (V)

  // 1. scan
  scan_part own_scan = {-INFINITY, V, 2 * V, 0};
  for (long long i = threadIdx.x; i < V; i += kThreads) {
    const float x = l[i];
    if (x == -INFINITY) continue;
    if (!isfinite(x)) {
      if (2 * i < own_scan.bad) own_scan.bad = 2 * i + !isnan(x);
      continue;
    }
    own_scan.n_fin++;
    if (x > own_scan.max) own_scan.max = x, own_scan.arg = i;  // ids grow within a thread: the lowest id
  }
  const scan_part rs = scan_block(own_scan, sh);
  const float m = rs.max;
  const long long argmax = rs.arg, n_fin = rs.n_fin;
  if (rs.bad < 2 * V || n_fin == 0) {  // the same for every thread: the block leaves together
    if (threadIdx.x == 0) {
      if (rs.bad < 2 * V) kerr_record(kerr, SRLM_OP_sample, KERR_LOGIT, row, rs.bad / 2, V, rs.bad % 2);
      else kerr_record(kerr, SRLM_OP_sample, KERR_NO_FINITE, row, 0, V);
      p.token[row] = -1;
      p.logprob[row] = NAN;
      if (p.sample_logprob) p.sample_logprob[row] = NAN;
    }
    return;
  }

  // 2. Z1
  srlm_u128 z1 = {0, 0};
  for (long long i = threadIdx.x; i < V; i += kThreads)
    z1 = srlm_u128_add(z1, srlm_sample_mass(srlm_sample_weight(l[i], m, 1.0f)));
  z1 = u128_block_sum(z1, sh);

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
        if (l[i] != -INFINITY && k.in_prefix(l[i], i))
          qk = srlm_u128_add(qk, srlm_sample_mass(srlm_sample_weight(l[i], m, t)));
      qk = u128_block_sum(qk, sh);
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
    if (threadIdx.x == 0) {  // exclusive scan in thread order: exact, so its order is free
      srlm_u128 run = {0, 0};
      for (int j = 0; j < kThreads; j++) {
        const srlm_u128 x = sh.part[j];
        sh.part[j] = run;
        run = srlm_u128_add128(run, x);
      }
      sh.total = run;  // Q, the kept mass
    }
    __syncthreads();
    const srlm_u128 q = sh.total, excl = sh.part[threadIdx.x];
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
    // target < Q always finds a token (the CPU checks it); never read l[-1]
    if (tok >= 0) sample_lp = SRLM_SM_DDIV((double)l[tok] - (double)m, (double)t) - srlm_sample_log_mass(q);
  }
  if (threadIdx.x == 0) {
    p.token[row] = (int32_t)tok;
    p.logprob[row] = tok >= 0 ? (float)(((double)l[tok] - (double)m) - srlm_sample_log_mass(z1)) : NAN;
    if (p.sample_logprob) p.sample_logprob[row] = tok >= 0 ? (float)sample_lp : NAN;
  }
}

}  // namespace

srlm_status op_sample(srlm_backend *be, srlm_sample_params p) {
  const char *where = SRLM_CUDA_NAME " sample";
  SRLM_TRY(srlm_sample_params_check(&p, where));
  if (p.n == 0) return SRLM_OK;
  const size_t n = (size_t)p.n;
  SRLM_TRY(check_dev(where, "token", p.token, n * sizeof(int32_t)));
  SRLM_TRY(check_dev(where, "logprob", p.logprob, n * sizeof(float)));
  SRLM_TRY(check_dev(where, "sample_logprob", p.sample_logprob, n * sizeof(float)));
  SRLM_TRY(check_dev(where, "logits", p.logits, n * (size_t)p.V * sizeof(float)));
  SRLM_TRY(check_dev(where, "seq_id", p.seq_id, n * sizeof(uint64_t)));
  SRLM_TRY(check_dev(where, "step", p.step, n * sizeof(uint32_t)));
  context *c = ctx(be);
  SRLM_LAUNCH(sample_kernel, (unsigned)n, kThreads, 0, c->stream, p, c->kerr);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

}  // namespace SRLM_CUDA_NS
