/* Warp intrinsics and atomics against host references written from the CUDA Programming
 * Guide's words (not from the simulator's PTX-based code): every shuffle variant at widths
 * 32, 16, 8, 4 and 2 with 4- and 8-byte values, shuffles and votes under partial masks in
 * divergent code, ballot/all/any, match_any/match_all, the sm_80 warp reductions,
 * __syncwarp as a memory fence; then every atomic the simulator offers, from many blocks.
 * Simulator only: lanes that returned drop out of full-mask collectives (undefined on a
 * GPU). __activemask: the simulator does not model convergence and gives the lanes that
 * have not returned yet, so only "the lane itself is in it" is checked there. */
#include "sim_test.h"

namespace {

__host__ __device__ int width_of(int wi) { return 32 >> wi; }  // 32, 16, 8, 4, 2
constexpr int kModes = 4;  // idx, up, down, xor

// out[(mode * 5 + wi) * 32 + lane] for each mode and width; a second pass with 64-bit values.
__global__ void shuffle_kernel(int *out, long long *out64, int arg) {
  const int lane = threadIdx.x;
  const int v = lane * 7 + 100;
  const long long v64 = (long long)lane * 0x100000001LL + 5;
  for (int wi = 0; wi < 5; wi++) {
    const int w = width_of(wi);
    const int b = (arg + wi) % w;  // a source lane, a delta or a lane mask within the width
    out[(0 * 5 + wi) * 32 + lane] = __shfl_sync(0xffffffffu, v, b + (wi == 1 ? w : 0), w);  // src beyond w wraps
    out[(1 * 5 + wi) * 32 + lane] = __shfl_up_sync(0xffffffffu, v, (unsigned)b, w);
    out[(2 * 5 + wi) * 32 + lane] = __shfl_down_sync(0xffffffffu, v, (unsigned)b, w);
    out[(3 * 5 + wi) * 32 + lane] = __shfl_xor_sync(0xffffffffu, v, b | (wi == 2 ? 8 : 0), w);
    out64[(0 * 5 + wi) * 32 + lane] = __shfl_sync(0xffffffffu, v64, b, w);
    out64[(1 * 5 + wi) * 32 + lane] = __shfl_up_sync(0xffffffffu, v64, (unsigned)b, w);
    out64[(2 * 5 + wi) * 32 + lane] = __shfl_down_sync(0xffffffffu, v64, (unsigned)b, w);
    out64[(3 * 5 + wi) * 32 + lane] = __shfl_xor_sync(0xffffffffu, v64, b, w);
  }
}

// The Guide's rules, lane by lane.
long long ref_shfl(int mode, int lane, int b, int w, const long long *val) {
  const int base = lane / w * w;
  switch (mode) {
    case 0: return val[base + b % w];
    case 1: return lane % w >= b ? val[lane - b] : val[lane];
    case 2: return lane % w + b < w ? val[lane + b] : val[lane];
    default: {
      const int src = lane ^ b;
      return src < base + w ? val[src] : val[lane];  // a later group: own value
    }
  }
}

// Divergent halves with their own masks; votes; match; reductions.
__global__ void mask_kernel(int *out) {
  const int lane = threadIdx.x;
  int r;
  if (lane < 16) r = __shfl_xor_sync(0x0000ffffu, lane * 10, 1);
  else r = __shfl_down_sync(0xffff0000u, lane * 10, 2, 16);
  out[lane] = r;
  unsigned ballot;
  if (lane % 2) ballot = __ballot_sync(0xaaaaaaaau, lane % 3 == 0);
  else ballot = __ballot_sync(0x55555555u, lane % 5 == 0);
  out[32 + lane] = (int)ballot;
  out[64 + lane] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
  out[96 + lane] = __all_sync(0xffffffffu, lane < 40) | __all_sync(0xffffffffu, lane != 7) << 1 |
                   __any_sync(0xffffffffu, lane == 31) << 2 | __any_sync(0xffffffffu, 0) << 3;
  out[128 + lane] = (int)__match_any_sync(0xffffffffu, lane % 4);
  int pred_same = -1, pred_diff = -1;
  const unsigned same = __match_all_sync(0xffffffffu, 42, &pred_same);
  const unsigned diff = __match_all_sync(0xffffffffu, lane, &pred_diff);
  out[160 + lane] = (same == 0xffffffffu) | (pred_same << 1) | ((diff == 0) << 2) | (pred_diff << 3);
  out[192 + lane] = (int)__reduce_add_sync(0xffffffffu, (unsigned)lane);
  out[224 + lane] = __reduce_min_sync(0xffffffffu, lane - 10) * 1000 + __reduce_max_sync(0xffffffffu, lane - 10);
  out[256 + lane] = (int)(__reduce_and_sync(0xffffffffu, 0xf0u | (unsigned)lane) ^
                          __reduce_or_sync(0xffffffffu, 1u << lane) ^ __reduce_xor_sync(0xffffffffu, (unsigned)lane));
  out[288 + lane] = (int)(__reduce_min_sync(0xffffffffu, (unsigned)lane + 3) * 100 +
                          __reduce_max_sync(0xffffffffu, (unsigned)lane + 3));
  out[320 + lane] = (int)__activemask();
}

// __syncwarp as a fence for shared memory within a warp (2 warps, each its own half).
__global__ void syncwarp_kernel(int *out) {
  __shared__ int sh[64];
  const int t = threadIdx.x, lane = t % 32, base = t - lane;
  sh[t] = t * 3;
  __syncwarp();
  out[t] = sh[base + (lane + 5) % 32];
  __syncwarp();
  sh[t] = -t;
  __syncwarp();
  out[64 + t] = sh[base + (lane + 31) % 32];
}

#if SIM
// Lanes 20-31 return; full-mask collectives then see lanes 0-19 only.
__global__ void exited_kernel(int *out) {
  const int lane = threadIdx.x;
  if (lane >= 20) return;
  out[lane] = __shfl_sync(0xffffffffu, lane + 1000, 25);  // lane 25 is gone: own value
  out[32 + lane] = (int)__ballot_sync(0xffffffffu, 1);
  out[64 + lane] = __shfl_xor_sync(0xffffffffu, lane, 1);
  out[96 + lane] = (int)__activemask();
}
#endif

struct atomic_out {
  int add_i;
  unsigned add_u;
  unsigned long long add_ull;
  float add_f;
  double add_d;
  int max_i, min_i;
  unsigned max_u, min_u;
  long long max_ll, min_ll;
  unsigned long long max_ull, min_ull;
  int cas_count;
  int exch_i;
  unsigned and_u, or_u, xor_u;
  unsigned inc_u, dec_u;
  int sub_i;
  float exch_f;
};

__global__ void atomic_kernel(atomic_out *o) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;  // 0 .. 8 * 96 - 1
  atomicAdd(&o->add_i, i % 7 - 3);
  atomicAdd(&o->add_u, (unsigned)i);
  atomicAdd(&o->add_ull, (unsigned long long)i << 33);
  atomicAdd(&o->add_f, (float)(i % 5));  // small integers: exact in any order
  atomicAdd(&o->add_d, (double)i * 0.5);
  atomicMax(&o->max_i, (i * 37) % 1001 - 500);
  atomicMin(&o->min_i, (i * 37) % 1001 - 500);
  atomicMax(&o->max_u, (unsigned)((i * 13) % 997));
  atomicMin(&o->min_u, (unsigned)((i * 13) % 997) + 5);
  atomicMax(&o->max_ll, (long long)i * -3 + 7);
  atomicMin(&o->min_ll, (long long)i * -3 + 7);
  atomicMax(&o->max_ull, (unsigned long long)i * 1000000007ULL);
  atomicMin(&o->min_ull, (unsigned long long)i * 1000000007ULL + 1);
  int old = atomicAdd(&o->cas_count, 0), seen;  // a CAS loop: an increment (a plain read would race)
  while ((seen = atomicCAS(&o->cas_count, old, old + 1)) != old) old = seen;
  atomicExch(&o->exch_i, 77);
  atomicAnd(&o->and_u, ~(1u << (i % 32)) | 0x80000000u);
  atomicOr(&o->or_u, 1u << (i % 24));
  atomicXor(&o->xor_u, 1u << (i % 3));
  atomicInc(&o->inc_u, 9u);  // wraps to 0 past 9
  atomicDec(&o->dec_u, 9u);
  atomicSub(&o->sub_i, 2);
  atomicExch(&o->exch_f, 2.5f);
}

int test_shuffles() {
  int *d = dev_from<int>(nullptr, kModes * 5 * 32);
  long long *d64 = dev_from<long long>(nullptr, kModes * 5 * 32);
  for (int arg = 0; arg < 6; arg++) {
    SRLM_LAUNCH(shuffle_kernel, 1, 32, 0, 0, d, d64, arg);
    CK_LAUNCH();
    int h[kModes * 5 * 32];
    long long h64[kModes * 5 * 32];
    CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(h64, d64, sizeof h64, cudaMemcpyDeviceToHost));
    long long val[32], val64[32];
    for (int l = 0; l < 32; l++) {
      val[l] = l * 7 + 100;
      val64[l] = (long long)l * 0x100000001LL + 5;
    }
    for (int mode = 0; mode < kModes; mode++)
      for (int wi = 0; wi < 5; wi++) {
        const int w = width_of(wi), b = (arg + wi) % w;
        int bad = 0, bad64 = 0;
        for (int l = 0; l < 32; l++) {
          const int b32 = mode == 0 ? b + (wi == 1 ? w : 0) : (mode == 3 ? b | (wi == 2 ? 8 : 0) : b);
          bad += h[(mode * 5 + wi) * 32 + l] != ref_shfl(mode, l, b32, w, val);
          bad64 += h64[(mode * 5 + wi) * 32 + l] != ref_shfl(mode, l, b, w, val64);
        }
        EXPECT(bad == 0 && bad64 == 0, "shuffle mode %d width %d arg %d: %d (32-bit) and %d (64-bit) lanes wrong", mode,
               w, b, bad, bad64);
      }
  }
  CK(cudaFree(d));
  CK(cudaFree(d64));
  return 0;
}

unsigned bits_where(bool (*pred)(int)) {
  unsigned m = 0;
  for (int l = 0; l < 32; l++)
    if (pred(l)) m |= 1u << l;
  return m;
}

int test_masks_votes() {
  int *d = dev_from<int>(nullptr, 352);
  SRLM_LAUNCH(mask_kernel, 1, 32, 0, 0, d);
  CK_LAUNCH();
  int h[352];
  CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
  const unsigned odd3 = bits_where([](int l) { return l % 2 == 1 && l % 3 == 0; });
  const unsigned even5 = bits_where([](int l) { return l % 2 == 0 && l % 5 == 0; });
  const unsigned all3 = bits_where([](int l) { return l % 3 == 0; });
  for (int l = 0; l < 32; l++) {
    const int want = l < 16 ? (l ^ 1) * 10 : ((l % 16) + 2 < 16 ? (l + 2) * 10 : l * 10);
    EXPECT(h[l] == want, "lane %d: divergent halves' shuffle %d, expected %d", l, h[l], want);
    EXPECT((unsigned)h[32 + l] == (l % 2 ? odd3 : even5), "lane %d: ballot under a half mask 0x%08x", l, (unsigned)h[32 + l]);
    EXPECT((unsigned)h[64 + l] == all3, "lane %d: ballot 0x%08x, expected 0x%08x", l, (unsigned)h[64 + l], all3);
    EXPECT(h[96 + l] == 0x5, "lane %d: all/any bits 0x%x, expected 0x5", l, h[96 + l]);
    const unsigned m4 = 0x11111111u << (l % 4);
    EXPECT((unsigned)h[128 + l] == m4, "lane %d: match_any 0x%08x, expected 0x%08x", l, (unsigned)h[128 + l], m4);
    EXPECT(h[160 + l] == 0x7, "lane %d: match_all bits 0x%x, expected 0x7 (same: all, pred 1; different: 0, pred 0)", l,
           h[160 + l]);
    EXPECT(h[192 + l] == 496, "lane %d: reduce_add %d", l, h[192 + l]);
    EXPECT(h[224 + l] == -10 * 1000 + 21, "lane %d: reduce_min/max (signed) %d", l, h[224 + l]);
    unsigned x = 0;
    for (unsigned k = 0; k < 32; k++) x ^= k;
    unsigned a = 0xffffffffu;
    for (unsigned k = 0; k < 32; k++) a &= 0xf0u | k;
    EXPECT((unsigned)h[256 + l] == (a ^ 0xffffffffu ^ x), "lane %d: reduce and/or/xor 0x%08x", l, (unsigned)h[256 + l]);
    EXPECT(h[288 + l] == 3 * 100 + 34, "lane %d: reduce_min/max (unsigned) %d", l, h[288 + l]);
    // converged: all lanes on a GPU; on the simulator, the lanes that have not returned
    EXPECT(SIM ? (h[320 + l] >> l & 1) : (unsigned)h[320 + l] == 0xffffffffu, "lane %d: activemask 0x%08x", l,
           (unsigned)h[320 + l]);
  }
  CK(cudaFree(d));

  int *s = dev_from<int>(nullptr, 128);
  SRLM_LAUNCH(syncwarp_kernel, 1, 64, 0, 0, s);
  CK_LAUNCH();
  int hs[128];
  CK(cudaMemcpy(hs, s, sizeof hs, cudaMemcpyDeviceToHost));
  for (int t = 0; t < 64; t++) {
    const int base = t - t % 32;
    EXPECT(hs[t] == (base + (t % 32 + 5) % 32) * 3, "syncwarp: thread %d read %d", t, hs[t]);
    EXPECT(hs[64 + t] == -(base + (t % 32 + 31) % 32), "syncwarp: thread %d read %d after the rewrite", t, hs[64 + t]);
  }
  CK(cudaFree(s));
#if SIM
  int *e = dev_from<int>(nullptr, 128);
  SRLM_LAUNCH(exited_kernel, 1, 32, 0, 0, e);
  CK_LAUNCH();
  int he[128];
  CK(cudaMemcpy(he, e, sizeof he, cudaMemcpyDeviceToHost));
  for (int l = 0; l < 20; l++) {
    EXPECT(he[l] == l + 1000, "lane %d: shuffle from a returned lane gave %d, not its own value", l, he[l]);
    EXPECT((unsigned)he[32 + l] == 0xfffffu, "lane %d: ballot with lanes 20-31 gone: 0x%08x", l, (unsigned)he[32 + l]);
    const int want = (l ^ 1) < 20 ? (l ^ 1) : l;
    EXPECT(he[64 + l] == want, "lane %d: xor shuffle %d, expected %d", l, he[64 + l], want);
    // Convergence is not simulated: __activemask is the lanes that have not returned yet,
    // which is the lane itself and some of 0-19 (on a GPU, all of 0-19 here).
    const unsigned am = (unsigned)he[96 + l];
    EXPECT((am & ~0xfffffu) == 0 && (am >> l & 1), "lane %d: activemask 0x%08x", l, am);
  }
  CK(cudaFree(e));
#endif
  return 0;
}

int test_atomics() {
  atomic_out init;
  memset(&init, 0, sizeof init);
  init.max_i = -1000000;
  init.min_i = 1000000;
  init.min_u = 0xffffffffu;
  init.max_ll = -(1LL << 60);
  init.min_ll = 1LL << 60;
  init.min_ull = ~0ULL;
  init.and_u = 0xffffffffu;
  init.dec_u = 3;
  atomic_out *d = dev_from(&init, 1);
  const int blocks = 8, threads = 96, n = blocks * threads;
  SRLM_LAUNCH(atomic_kernel, blocks, threads, 0, 0, d);
  CK_LAUNCH();
  atomic_out h;
  CK(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost));
  atomic_out r = init;
  unsigned inc = 0, dec = 3;
  for (int i = 0; i < n; i++) {
    r.add_i += i % 7 - 3;
    r.add_u += (unsigned)i;
    r.add_ull += (unsigned long long)i << 33;
    r.add_f += (float)(i % 5);
    r.add_d += (double)i * 0.5;
    const int v = (i * 37) % 1001 - 500;
    r.max_i = v > r.max_i ? v : r.max_i;
    r.min_i = v < r.min_i ? v : r.min_i;
    const unsigned u = (unsigned)((i * 13) % 997);
    r.max_u = u > r.max_u ? u : r.max_u;
    r.min_u = u + 5 < r.min_u ? u + 5 : r.min_u;
    const long long ll = (long long)i * -3 + 7;
    r.max_ll = ll > r.max_ll ? ll : r.max_ll;
    r.min_ll = ll < r.min_ll ? ll : r.min_ll;
    const unsigned long long ull = (unsigned long long)i * 1000000007ULL;
    r.max_ull = ull > r.max_ull ? ull : r.max_ull;
    r.min_ull = ull + 1 < r.min_ull ? ull + 1 : r.min_ull;
    r.cas_count++;
    r.and_u &= ~(1u << (i % 32)) | 0x80000000u;
    r.or_u |= 1u << (i % 24);
    r.xor_u ^= 1u << (i % 3);
    inc = inc >= 9 ? 0 : inc + 1;
    dec = (dec == 0 || dec > 9) ? 9 : dec - 1;
    r.sub_i -= 2;
  }
  EXPECT_EQ_INT(h.add_i, r.add_i);
  EXPECT_EQ_INT(h.add_u, r.add_u);
  EXPECT(h.add_ull == r.add_ull, "atomicAdd ull %llu, expected %llu", h.add_ull, r.add_ull);
  EXPECT(h.add_f == r.add_f, "atomicAdd float %g, expected %g", h.add_f, r.add_f);
  EXPECT(h.add_d == r.add_d, "atomicAdd double %.17g, expected %.17g", h.add_d, r.add_d);
  EXPECT_EQ_INT(h.max_i, r.max_i);
  EXPECT_EQ_INT(h.min_i, r.min_i);
  EXPECT_EQ_INT(h.max_u, r.max_u);
  EXPECT_EQ_INT(h.min_u, r.min_u);
  EXPECT_EQ_INT(h.max_ll, r.max_ll);
  EXPECT_EQ_INT(h.min_ll, r.min_ll);
  EXPECT(h.max_ull == r.max_ull && h.min_ull == r.min_ull, "atomicMax/Min ull");
  EXPECT_EQ_INT(h.cas_count, n);
  EXPECT_EQ_INT(h.exch_i, 77);
  EXPECT(h.and_u == r.and_u && h.or_u == r.or_u && h.xor_u == r.xor_u, "atomicAnd/Or/Xor 0x%x 0x%x 0x%x", h.and_u,
         h.or_u, h.xor_u);
  EXPECT_EQ_INT(h.inc_u, inc);
  EXPECT_EQ_INT(h.dec_u, dec);
  EXPECT_EQ_INT(h.sub_i, r.sub_i);
  EXPECT(h.exch_f == 2.5f, "atomicExch float %g", h.exch_f);
  CK(cudaFree(d));
  return 0;
}

}  // namespace

int main() {
  if (test_shuffles() || test_masks_votes() || test_atomics()) return 1;
  TEST_MAIN_END();
}
