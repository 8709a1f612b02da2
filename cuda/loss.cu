// The loss-coefficient ops (backend.h pref_loss, grpo_loss) for both CUDA flavors: the
// formulas of srlm/loss_math.h (the one definition the CPU twin, src/backend/cpu/loss.c,
// and the host losses call too) per pair or per token, fused with the scatter of the
// per-token coefficients g.
//
// Layout: g is zeroed over all T first (a memset: 0.0f is all-zero bits), then one block of
// kLossThreads threads per pair (pref_loss) or sequence (grpo_loss) writes its response
// tokens of g and its row of pair_out / seq_out. Ranges must not overlap (the contract; it
// is not checked, and two blocks would race there).
//
// Sums: in double, in token order, as the CPU twin: the block walks the response a tile of
// kLossThreads tokens at a time; its threads load (pref) or compute (grpo: one token's
// srlm_grpo_token_term each, g written at once) the tile's values into shared memory, and
// thread 0 adds them in token order. So the sums see the same values in the same order as
// the CPU: on the simulator (the same host compiler and libm) every output has the CPU's
// bits; on a GPU the sums of logp are the CPU's bits too, and what differs is the rounding
// of the formulas (nvcc contracts a * b + c into fma, and device exp/log1p are not glibc's).
//
// Data errors: the response ranges (and GRPO's offsets and l_max) are device data, so the
// kernels check them, with the CPU's rules and words (kerr_message): a block with a bad
// range records it, writes NaN over its pair_out/seq_out row and over whichever of its
// ranges lies inside [0, T), and skips the formulas. GRPO's offsets[0] != 0 is recorded by
// block 0 and poisons every sequence (the per-token arrays are then misaligned).
#include "common.cuh"
#include "srlm/loss_math.h"

namespace SRLM_CUDA_NS {

namespace {

constexpr int kLossThreads = 128;

__device__ __forceinline__ void fill(float *g, long long start, long long len, float v) {
  for (long long k = threadIdx.x; k < len; k += kLossThreads) g[start + k] = v;
}

// sum_k x[start + k], k = 0..len-1 in order, in double; valid in thread 0. Every thread of
// the block must call it (it meets at barriers).
__device__ double ordered_sum(const float *x, long long start, long long len, float *tile) {
  double s = 0;
  for (long long b = 0; b < len; b += kLossThreads) {
    const long long k = b + threadIdx.x;
    if (k < len) tile[threadIdx.x] = x[start + k];
    __syncthreads();
    if (threadIdx.x == 0) {
      const long long nk = len - b < kLossThreads ? len - b : kLossThreads;
      for (long long q = 0; q < nk; q++) s += (double)tile[q];
    }
    __syncthreads();
  }
  return s;
}

// One block per pair i: sequences 2i (chosen) and 2i + 1 (rejected).
__global__ void __launch_bounds__(kLossThreads) pref_loss_kernel(srlm_pref_loss_params p, kerr_rec *kerr) {
  __shared__ float tile[kLossThreads];
  __shared__ float coef[2];
  const long long i = blockIdx.x;
  const int32_t *start = p.resp_start + 2 * i, *len = p.resp_len + 2 * i;  // (2) chosen, rejected
  const bool ok0 = srlm_loss_range_ok(start[0], len[0], p.T), ok1 = srlm_loss_range_ok(start[1], len[1], p.T);
  double *out = p.pair_out + i * SRLM_PREF_OUT_COUNT;  // (SRLM_PREF_OUT_COUNT)
  if (!ok0 || !ok1) {
    if (threadIdx.x == 0) {
      const int s = ok0 ? 1 : 0;  // the CPU names the first bad sequence
      kerr_record(kerr, SRLM_OP_pref_loss, KERR_PAIR_RESPONSE, 2 * i + s, start[s], p.T, len[s]);
      for (int k = 0; k < SRLM_PREF_OUT_COUNT; k++) out[k] = NAN;
    }
    if (ok0) fill(p.g, start[0], len[0], NAN);
    if (ok1) fill(p.g, start[1], len[1], NAN);
    return;
  }
  const double lc = ordered_sum(p.logp, start[0], len[0], tile);
  const double lr = ordered_sum(p.logp, start[1], len[1], tile);
  if (threadIdx.x == 0) {
    srlm_pref_math m;
    m.kind = p.kind;
    m.beta = p.beta;
    m.simpo_gamma = p.simpo_gamma;
    m.nll_weight = p.nll_weight;
    m.inv_norm = 1.0 / (double)p.norm;
    const int has_ref = p.ref_chosen && p.ref_rejected;
    srlm_pref_pair_in x;
    x.logp_chosen = lc;
    x.logp_rejected = lr;
    x.ref_chosen = has_ref ? p.ref_chosen[i] : 0.0;
    x.ref_rejected = has_ref ? p.ref_rejected[i] : 0.0;
    x.len_chosen = (double)len[0];
    x.len_rejected = (double)len[1];
    x.weight = p.pair_weight ? p.pair_weight[i] : 1.0;
    x.label_smoothing = p.pair_label ? p.pair_label[i] : p.label_smoothing;
    x.has_ref = has_ref;
    const srlm_pref_term t = srlm_pref_pair_term(m, x);
    out[SRLM_PREF_OUT_LOSS] = t.loss;
    out[SRLM_PREF_OUT_NLL] = t.nll;
    out[SRLM_PREF_OUT_LOGP_CHOSEN] = lc;
    out[SRLM_PREF_OUT_LOGP_REJECTED] = lr;
    out[SRLM_PREF_OUT_REWARD_CHOSEN] = t.reward_chosen;
    out[SRLM_PREF_OUT_REWARD_REJECTED] = t.reward_rejected;
    out[SRLM_PREF_OUT_COEF_CHOSEN] = t.coef_chosen;
    out[SRLM_PREF_OUT_COEF_REJECTED] = t.coef_rejected;
    coef[0] = (float)t.coef_chosen;
    coef[1] = (float)t.coef_rejected;
  }
  __syncthreads();
  fill(p.g, start[0], len[0], coef[0]);
  fill(p.g, start[1], len[1], coef[1]);
}

// One block per sequence i: tokens t0 + k of logp and g, entries j0 + k of the per-token arrays.
__global__ void __launch_bounds__(kLossThreads) grpo_loss_kernel(srlm_grpo_loss_params p, kerr_rec *kerr) {
  __shared__ double part[SRLM_GRPO_OUT_COUNT][kLossThreads];  // a tile's per-token terms
  const long long i = blockIdx.x;
  const long long off0 = p.offsets[0], j0 = p.offsets[i], len = p.offsets[i + 1] - j0, t0 = p.resp_start[i];
  const bool ok_range = srlm_loss_range_ok(t0, len, p.T);
  const bool ok_len = p.agg != SRLM_GRPO_AGG_FIXED_LEN || len <= p.l_max;
  double *out = p.seq_out + i * SRLM_GRPO_OUT_COUNT;  // (SRLM_GRPO_OUT_COUNT)
  if (off0 != 0 || !ok_range || !ok_len) {
    if (threadIdx.x == 0) {
      if (off0 != 0) {
        if (i == 0) kerr_record(kerr, SRLM_OP_grpo_loss, KERR_OFFSETS0, 0, off0, 0);
      } else if (!ok_range) {
        kerr_record(kerr, SRLM_OP_grpo_loss, KERR_SEQ_RESPONSE, i, t0, p.T, len);
      } else {
        kerr_record(kerr, SRLM_OP_grpo_loss, KERR_L_MAX, i, len, p.l_max);
      }
      for (int k = 0; k < SRLM_GRPO_OUT_COUNT; k++) out[k] = NAN;
    }
    if (ok_range) fill(p.g, t0, len, NAN);
    return;
  }
  const srlm_grpo_math m = srlm_grpo_math_make(p.clip_eps, p.clip_eps_high, p.beta, p.is_cap, p.ratio);
  const double w = srlm_grpo_token_weight(p.agg, (double)p.norm_seqs, (double)p.norm_tokens, len, p.l_max);
  const double a = p.advantages[i];
  // GSPO: the sequence's log-ratio sums first, summed by thread 0 in token order (the CPU's order)
  __shared__ double seq_sum[2];
  if (m.seq_ratio) {
    double s0 = 0, s1 = 0;
    for (long long b = 0; b < len; b += kLossThreads) {
      const long long k = b + threadIdx.x;
      if (k < len) {
        const double lp = p.logp[t0 + k], old = p.logp_old ? (double)p.logp_old[j0 + k] : lp;
        part[0][threadIdx.x] = lp - old;
        part[1][threadIdx.x] = p.is_cap > 0 ? old - (double)p.logp_behavior[j0 + k] : 0.0;
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        const long long nk = len - b < kLossThreads ? len - b : kLossThreads;
        for (long long q = 0; q < nk; q++) {
          s0 += part[0][q];
          if (p.is_cap > 0) s1 += part[1][q];
        }
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      seq_sum[0] = s0;
      seq_sum[1] = s1;
    }
    __syncthreads();
  }
  double sum[SRLM_GRPO_OUT_COUNT] = {0, 0, 0, 0, 0};  // thread 0's, in token order
  for (long long b = 0; b < len; b += kLossThreads) {
    const long long k = b + threadIdx.x;
    if (k < len) {
      const long long t = t0 + k, j = j0 + k;  // row of the batch, index into old/ref/behavior
      const double lp = p.logp[t];
      srlm_grpo_token_in x;
      x.logp = lp;
      x.logp_old = p.logp_old ? (double)p.logp_old[j] : lp;
      x.logp_ref = p.logp_ref ? (double)p.logp_ref[j] : 0.0;
      x.logp_behavior = p.is_cap > 0 ? (double)p.logp_behavior[j] : 0.0;
      x.has_ref = p.logp_ref != nullptr;
      x.seq_log_ratio = m.seq_ratio ? seq_sum[0] / (double)len : 0.0;
      x.seq_log_is = m.seq_ratio ? seq_sum[1] / (double)len : 0.0;
      const srlm_grpo_term r = srlm_grpo_token_term(m, a, w, x);
      p.g[t] = (float)r.g;
      part[SRLM_GRPO_OUT_LOSS][threadIdx.x] = r.wj;
      part[SRLM_GRPO_OUT_KL][threadIdx.x] = r.kl;
      part[SRLM_GRPO_OUT_RATIO][threadIdx.x] = r.rho;
      part[SRLM_GRPO_OUT_CLIPPED][threadIdx.x] = r.clipped;
      part[SRLM_GRPO_OUT_TRUNCATED][threadIdx.x] = r.truncated;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      const long long nk = len - b < kLossThreads ? len - b : kLossThreads;
      for (long long q = 0; q < nk; q++) {
        sum[SRLM_GRPO_OUT_LOSS] -= part[SRLM_GRPO_OUT_LOSS][q];
        for (int o = SRLM_GRPO_OUT_KL; o < SRLM_GRPO_OUT_COUNT; o++) sum[o] += part[o][q];
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0)
    for (int o = 0; o < SRLM_GRPO_OUT_COUNT; o++) out[o] = sum[o];
}

// g = 0 over all T, then one block per pair or sequence.
template <class P>
srlm_status zero_and_launch(context *c, const char *where, void (*kernel)(P, kerr_rec *), const P &p, float *g,
                            size_t T, long long blocks) {
  if (blocks > 0x7fffffffll) return srlm_error(SRLM_ERR_RANGE, where, "%lld blocks exceed CUDA's grid", blocks);
  if (T > 0) SRLM_CUDA(cudaMemsetAsync(g, 0, T * sizeof(float), c->stream));
  if (blocks == 0) return SRLM_OK;
  SRLM_LAUNCH(kernel, (unsigned)blocks, kLossThreads, 0, c->stream, p, c->kerr);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

}  // namespace

srlm_status op_pref_loss(srlm_backend *be, srlm_pref_loss_params p) {
  const char *where = SRLM_CUDA_NAME " pref_loss";
  SRLM_TRY(srlm_pref_loss_params_check(&p, where));
  const size_t n = (size_t)p.n, T = (size_t)p.T;
  SRLM_TRY(check_dev(where, "g", p.g, T * sizeof(float)));
  SRLM_TRY(check_dev(where, "pair_out", p.pair_out, n * SRLM_PREF_OUT_COUNT * sizeof(double)));
  SRLM_TRY(check_dev(where, "logp", p.logp, T * sizeof(float)));
  SRLM_TRY(check_dev(where, "resp_start", p.resp_start, 2 * n * sizeof(int32_t)));
  SRLM_TRY(check_dev(where, "resp_len", p.resp_len, 2 * n * sizeof(int32_t)));
  SRLM_TRY(check_dev(where, "ref_chosen", p.ref_chosen, n * sizeof(double)));
  SRLM_TRY(check_dev(where, "ref_rejected", p.ref_rejected, n * sizeof(double)));
  SRLM_TRY(check_dev(where, "pair_weight", p.pair_weight, n * sizeof(double)));
  SRLM_TRY(check_dev(where, "pair_label", p.pair_label, n * sizeof(double)));
  return zero_and_launch(ctx(be), where, pref_loss_kernel, p, p.g, T, p.n);
}

srlm_status op_grpo_loss(srlm_backend *be, srlm_grpo_loss_params p) {
  const char *where = SRLM_CUDA_NAME " grpo_loss";
  SRLM_TRY(srlm_grpo_loss_params_check(&p, where));
  const size_t n = (size_t)p.n, T = (size_t)p.T;
  SRLM_TRY(check_dev(where, "g", p.g, T * sizeof(float)));
  SRLM_TRY(check_dev(where, "seq_out", p.seq_out, n * SRLM_GRPO_OUT_COUNT * sizeof(double)));
  SRLM_TRY(check_dev(where, "logp", p.logp, T * sizeof(float)));
  SRLM_TRY(check_dev(where, "resp_start", p.resp_start, n * sizeof(int32_t)));
  SRLM_TRY(check_dev(where, "offsets", p.offsets, (n + 1) * sizeof(int64_t)));
  SRLM_TRY(check_dev(where, "advantages", p.advantages, n * sizeof(double)));
  // Their length, offsets[n], is device data: their first element at least must be there.
  const size_t one = n > 0 ? sizeof(float) : 0;
  SRLM_TRY(check_dev(where, "logp_old", p.logp_old, one));
  SRLM_TRY(check_dev(where, "logp_ref", p.logp_ref, one));
  if (p.is_cap > 0) SRLM_TRY(check_dev(where, "logp_behavior", p.logp_behavior, one));
  return zero_and_launch(ctx(be), where, grpo_loss_kernel, p, p.g, T, p.n);
}

}  // namespace SRLM_CUDA_NS
