/* The attention kernels (cuda/attention*.cu: fp32-tile and tensor-core forward, backward and
 * attention_kv) on the CUDA backend ("cuda-sim" here, "cuda" on a
 * GPU), fp32 and bf16, for what the table-driven test (tests/unit/test_backend_ops.c: the
 * accuracy of every op against float64, flash-attention's rule) does not check, over every
 * launch class: GQA ratios 1/2/3/4/8, windows, single-token and empty sequences, sequences
 * one longer than a tile (33: tiles of 32 here; 65: the CPU's and the tensor-core kernel's 64), many short packed
 * sequences, head dims 2, 7, 16, 32, 64, 80, 128, 256; in the sim label, so the
 * ThreadSanitizer build runs them:
 * - every output element is written (outputs start NaN) and reruns give the same bits;
 * - attention_kv gives a query the forward's bits (the same row arithmetic), for prefill
 *   chunks, decode steps and sequences without new queries, from cache slots in another
 *   order than the sequences, with every unused cache position NaN (on the bf16 tensor-core
 *   path: caches of up to 64 positions, one split-KV piece; longer ones run split-KV here too);
 * - split-KV decode (bf16; pieces of 64/128/256/512 keys chosen from each sequence's own
 *   length): a sequence's bits are the same alone and in a batch with sequences whose lengths
 *   pick other piece sizes, in any order;
 * - non-causal forward and backward (every element written, reruns the same bits);
 * - data only the device sees (cu_seqlens, cu_q, slots, lengths): a range error at the next
 *   sync naming the op and the entry or sequence, every output NaN, the backend usable after;
 * - empty batches, and a head dim past the kernels' classes refused on the host. */
#include <math.h>
#include <stdlib.h>

#include <string>
#include <vector>

#include "sim_test.h"

namespace {

// Deterministic values in [lo, hi).
float val(uint32_t i, uint32_t salt, float lo, float hi) {
  uint32_t h = i * 2654435761u ^ (salt * 40503u + 0x9e3779b9u);
  h ^= h >> 15;
  h *= 2246822519u;
  h ^= h >> 13;
  return lo + (hi - lo) * (float)(h & 0xffffff) / 16777216.0f;
}

// A tensor: its host contents in the storage dtype, the widened values, and a device copy.
struct tens {
  srlm_dtype dt = SRLM_F32;
  size_t n = 0;
  std::vector<unsigned char> raw;  // (n) in dt
  std::vector<float> f;            // (n) raw widened
  void *dev = nullptr;
  void set(const std::vector<float> &v, srlm_dtype d) {
    dt = d;
    n = v.size();
    raw.resize(n * srlm_dtype_size(d) + 1);
    srlm_convert(raw.data(), d, v.data(), SRLM_F32, n);
    f.resize(n);
    srlm_convert(f.data(), SRLM_F32, raw.data(), d, n);
  }
  size_t bytes() const { return n * srlm_dtype_size(dt); }
};

// Device buffers of one backend instance, freed together.
struct device {
  srlm_backend be;
  std::vector<void *> bufs;
  device() {
    be.ops = cuda_table();
    be.name = be.ops->name;
    be.device = 0;
    be.host_memory = 0;
    be.ctx = nullptr;
  }
  srlm_status open() { return be.ops->create(&be, 0); }
  ~device() {
    for (void *b : bufs) (void)srlm_backend_free(&be, b);
    if (be.ctx) (void)be.ops->destroy(&be);
  }
  void *alloc(size_t bytes, const void *host) {
    void *p = nullptr;
    if (srlm_backend_alloc(&be, &p, bytes ? bytes : 1) != SRLM_OK) return nullptr;
    bufs.push_back(p);
    if (host && bytes && srlm_backend_copy_h2d(&be, p, host, bytes) != SRLM_OK) return nullptr;
    return p;
  }
  void up(tens &t) { t.dev = alloc(t.bytes(), t.raw.data()); }
  void *ints(const std::vector<int32_t> &v) { return alloc(v.size() * 4, v.data()); }
  // An output of n elements of dtype dt, filled with NaN so that an element never written shows.
  void *out(size_t n, srlm_dtype dt) {
    std::vector<float> nan(n, NAN);
    tens t;
    t.set(nan, dt);
    return alloc(t.bytes(), t.raw.data());
  }
  std::vector<float> down(const void *p, size_t n, srlm_dtype dt) {
    std::vector<unsigned char> raw(n * srlm_dtype_size(dt) + 1);
    std::vector<float> f(n);
    if (n) OK(srlm_backend_copy_d2h(&be, raw.data(), p, n * srlm_dtype_size(dt)));
    srlm_convert(f.data(), SRLM_F32, raw.data(), dt, n);
    return f;
  }
};

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}
bool all_nan(const std::vector<float> &a) {
  for (float x : a)
    if (!isnan(x)) return false;
  return true;
}
bool any_nan(const std::vector<float> &a) {
  for (float x : a)
    if (isnan(x)) return true;
  return false;
}

// Whether attention_forward ran on the Hopper kernel (bf16, head dim 64 or 128, the path on:
// SRLM_CUDA_ATTENTION, attention_common.cuh). With SRLM_CUDA_ATTENTION=wgmma or check it must
// have: check runs the kernel against its mma.sync twin first (attention_path), and a
// disagreement would leave the context on mma.sync.
bool hopper_requested() {
  const char *env = getenv("SRLM_CUDA_ATTENTION");
  return env && (strcmp(env, "wgmma") == 0 || strcmp(env, "check") == 0);
}
bool hopper_forward(srlm_backend *be, srlm_dtype dt, int64_t HS) {
  if (dt != SRLM_BF16 || (HS != 64 && HS != 128)) return false;
  const bool used = ctx(be)->attn_path == 2;
  EXPECT(!hopper_requested() || used, "SRLM_CUDA_ATTENTION=%s, yet the forward (HS %lld) did not take the Hopper kernel",
         getenv("SRLM_CUDA_ATTENTION"), (long long)HS);
  return used;
}

// ---- cases --------------------------------------------------------------------------------------

// NC: non-causal (attention_forward and attention_backward only: attention_kv is causal).
// tsan: bf16 runs under ThreadSanitizer too (main() says which and why).
struct shape {
  std::vector<int32_t> lens;
  int64_t NH, NKV, HS, W;
  bool NC, tsan;
};

// Every launch class of the kernels: tiles of 32 rows and 32 keys, 8 lanes per row, head-dim
// classes 32/64/128/256; causal and not.
const shape k_shapes[] = {
    {{1}, 1, 1, 2, 0, false, false},                // one token, HS 2 (6 of 8 lanes without a dim)
    {{5, 3}, 2, 1, 16, 0, false, true},             // GQA 2
    {{33, 1, 65}, 4, 1, 64, 0, false, true},        // one past a tile, a lone token, one past the CPU's tile; GQA 4
    {{40, 33}, 8, 1, 16, 8, false, true},           // GQA 8 (MQA), window shorter than a tile
    {{1, 2, 3, 1, 5, 2, 1, 4, 3, 1, 2, 7, 1, 1}, 2, 1, 16, 3, false, true},  // many short packed sequences, window
    {{0, 9, 64, 2}, 2, 2, 32, 0, false, false},     // an empty sequence, exactly two tiles
    {{70}, 2, 2, 128, 0, false, true},              // HS 128, three key tiles
    {{40}, 2, 1, 256, 17, false, true},             // HS 256, window
    {{97}, 3, 1, 80, 33, false, false},             // GQA 3, HS 80 (128 class), window one past a tile
    {{12, 20}, 3, 3, 7, 0, false, false},           // an odd head dim
    {{150, 2}, 2, 1, 32, 0, false, true},           // 3 key tiles of 64: a K/V buffer reused (double buffering)
    // non-causal: every key tile of a query tile, none skipped above the diagonal
    {{5, 3}, 2, 1, 16, 0, true, true},              // GQA 2
    {{33, 1, 70}, 8, 1, 32, 0, true, true},         // GQA 8, a query tile seeing the keys of a later one
    {{40, 33}, 4, 2, 32, 9, true, true},            // a window both ways, shorter than a tile
    {{1, 2, 3, 1, 5, 2, 1, 4, 3, 1, 2, 7, 1, 1}, 2, 1, 16, 0, true, false},  // many short packed sequences
    {{130}, 2, 1, 128, 70, true, false},            // HS 128, a window across 64-key tiles both ways
    {{20, 45}, 2, 1, 256, 0, true, false},          // HS 256 (32-key tiles)
    {{12, 20}, 3, 3, 7, 0, true, false},            // an odd head dim (the fp32-tile kernel in bf16)
};

std::string label_of(const shape &s, srlm_dtype dt) {
  std::string l = std::string("[") + srlm_dtype_name(dt) + "] lens";
  for (size_t b = 0; b < s.lens.size() && b < 6; b++) l += (b ? "," : " ") + std::to_string(s.lens[b]);
  if (s.lens.size() > 6) l += ",...";
  return l + " NH=" + std::to_string(s.NH) + " NKV=" + std::to_string(s.NKV) + " HS=" + std::to_string(s.HS) +
         " W=" + std::to_string(s.W) + (s.NC ? " non-causal" : "");
}

// Runs op `run` (which fills outputs[]) twice: the runs must write every element and agree
// bit for bit. Returns the first run's outputs.
template <class F>
std::vector<std::vector<float>> twice(const std::string &label, const char *op, F run) {
  std::vector<std::vector<float>> first, second;
  run(first);
  run(second);
  for (size_t i = 0; i < first.size(); i++) {
    EXPECT(!any_nan(first[i]), "%s: %s: output %zu has elements not written (NaN)", label.c_str(), op, i);
    EXPECT(same_bits(first[i], second[i]), "%s: %s: output %zu: a rerun gave other bits", label.c_str(), op, i);
  }
  return first;
}

void test_shape(const shape &s, srlm_dtype dt, uint32_t salt) {
  const std::string label = label_of(s, dt);
  device g;
  OK(g.open());
  srlm_backend *be = &g.be;
  const int B = (int)s.lens.size();
  std::vector<int32_t> cu(1, 0);
  for (int32_t L : s.lens) cu.push_back(cu.back() + L);
  const int64_t T = cu[B], NH = s.NH, NKV = s.NKV, HS = s.HS, kld = NKV * HS;
  const size_t nq = (size_t)(T * NH * HS), nkv = (size_t)(T * kld), nl = (size_t)(T * NH);
  const float scale = 1.0f / sqrtf((float)HS);
  std::vector<float> x(nq);
  tens q, k, v, dout;
  for (size_t i = 0; i < nq; i++) x[i] = val((uint32_t)i, salt + 1, -2, 2);
  q.set(x, dt);
  for (size_t i = 0; i < nq; i++) x[i] = val((uint32_t)i, salt + 4, -1, 1);
  dout.set(x, dt);
  x.resize(nkv);
  for (size_t i = 0; i < nkv; i++) x[i] = val((uint32_t)i, salt + 2, -2, 2);
  k.set(x, dt);
  for (size_t i = 0; i < nkv; i++) x[i] = val((uint32_t)i, salt + 3, -1, 1);
  v.set(x, dt);
  g.up(q);
  g.up(k);
  g.up(v);
  g.up(dout);
  const int32_t *dcu = (const int32_t *)g.ints(cu);

  // forward; its out and lse feed the backward
  srlm_attention_params fp = {};
  fp.B = B;
  fp.T = T;
  fp.NH = NH;
  fp.NKV = NKV;
  fp.HS = HS;
  fp.window = s.W;
  fp.scale = scale;
  fp.non_causal = s.NC;
  fp.dtype = dt;
  fp.q = q.dev;
  fp.k = k.dev;
  fp.v = v.dev;
  fp.cu_seqlens = dcu;
  const auto fwd = twice(label, "attention_forward", [&](std::vector<std::vector<float>> &res) {
    fp.out = g.out(nq, dt);
    fp.lse = (float *)g.out(nl, SRLM_F32);
    OK(SRLM_OP(be, attention_forward, fp));
    res.push_back(g.down(fp.out, nq, dt));
    res.push_back(g.down(fp.lse, nl, SRLM_F32));
  });

  srlm_attention_bwd_params bp = {};
  bp.B = B;
  bp.T = T;
  bp.NH = NH;
  bp.NKV = NKV;
  bp.HS = HS;
  bp.window = s.W;
  bp.scale = scale;
  bp.non_causal = s.NC;
  bp.dtype = dt;
  bp.dout = dout.dev;
  bp.out = fp.out;
  bp.lse = fp.lse;
  bp.q = q.dev;
  bp.k = k.dev;
  bp.v = v.dev;
  bp.cu_seqlens = dcu;
  // sim.attention_wgmma (the Hopper forward) leaves out what does not depend on the forward's
  // kernel: the backward (the same kernels: sim.attention runs them) and split-KV decode's
  // batch independence
  if (!hopper_requested()) twice(label, "attention_backward", [&](std::vector<std::vector<float>> &res) {
    bp.dq = g.out(nq, dt);
    bp.dk = g.out(nkv, dt);
    bp.dv = g.out(nkv, dt);
    OK(SRLM_OP(be, attention_backward, bp));
    res.push_back(g.down(bp.dq, nq, dt));
    res.push_back(g.down(bp.dk, nkv, dt));
    res.push_back(g.down(bp.dv, nkv, dt));
  });
  if (s.NC) return;  // attention_kv is causal

  // attention_kv: sequence b's keys in slot B - b (slot 0 unused), its last nnew[b] queries
  // new: all of them (prefill), one (decode), three, or none, by b % 4.
  const int64_t max_slots = B + 1;
  int64_t max_len = 1;
  for (int32_t L : s.lens) max_len = L + 2 > max_len ? L + 2 : max_len;
  std::vector<float> kc((size_t)(max_slots * max_len * kld), NAN), vc(kc.size(), NAN);
  std::vector<int32_t> slot(B), cuq(1, 0), len(B);
  std::vector<float> qn, fwd_rows;  // the new queries, and the forward's out for them
  // rows whose bits must be the forward's: all, but on the bf16 tensor-core path (even HS up
  // to 256) only those of caches of at most 64 positions (one split-KV piece, backend.h)
  std::vector<char> same;
  const bool splits = dt == SRLM_BF16 && HS % 2 == 0 && HS <= 256;
  for (int b = 0; b < B; b++) {
    const int32_t L = s.lens[b], pick[4] = {L, 1, 3, 0};
    const int32_t nn = pick[b % 4] < L ? pick[b % 4] : L;
    slot[b] = B - b;
    len[b] = L;
    cuq.push_back(cuq.back() + nn);
    for (int64_t j = 0; j < (int64_t)L * kld; j++) {
      kc[(size_t)(slot[b] * max_len * kld + j)] = k.f[(size_t)(cu[b] * kld + j)];
      vc[(size_t)(slot[b] * max_len * kld + j)] = v.f[(size_t)(cu[b] * kld + j)];
    }
    const size_t r0 = (size_t)((cu[b] + L - nn) * NH * HS), r1 = (size_t)((cu[b] + L) * NH * HS);
    qn.insert(qn.end(), q.f.begin() + (long)r0, q.f.begin() + (long)r1);
    fwd_rows.insert(fwd_rows.end(), fwd[0].begin() + (long)r0, fwd[0].begin() + (long)r1);
    same.insert(same.end(), r1 - r0, !splits || L <= 64);
  }
  tens tq, tkc, tvc;
  tq.set(qn, dt);  // exact: the values are of dtype already
  tkc.set(kc, dt);
  tvc.set(vc, dt);
  g.up(tq);
  g.up(tkc);
  g.up(tvc);
  srlm_attention_kv_params kp = {};
  kp.n = B;
  kp.NQ = cuq[B];
  kp.NH = NH;
  kp.NKV = NKV;
  kp.HS = HS;
  kp.max_slots = max_slots;
  kp.max_len = max_len;
  kp.window = s.W;
  kp.scale = scale;
  kp.dtype = dt;
  kp.q = tq.dev;
  kp.k_cache = tkc.dev;
  kp.v_cache = tvc.dev;
  kp.slot = (const int32_t *)g.ints(slot);
  kp.cu_q = (const int32_t *)g.ints(cuq);
  kp.kv_len = (const int32_t *)g.ints(len);
  const auto kout = twice(label, "attention_kv", [&](std::vector<std::vector<float>> &res) {
    kp.out = g.out(qn.size(), dt);
    OK(SRLM_OP(be, attention_kv, kp));
    res.push_back(g.down(kp.out, qn.size(), dt));
  });
  // The Hopper forward (attention_wgmma.cu) tiles keys by 128, attention_kv by 64: the
  // rows agree within rounding only.
  const bool hopper = hopper_forward(be, dt, HS);
  size_t diff = 0, checked = 0;
  for (size_t i = 0; i < qn.size(); i++)
    if (same[i] || hopper) {
      checked++;
      diff += hopper ? !(fabsf(kout[0][i] - fwd_rows[i]) <= 8e-3f * (1.0f + fabsf(fwd_rows[i])))
                     : memcmp(&kout[0][i], &fwd_rows[i], sizeof(float)) != 0;
    }
  EXPECT(diff == 0, "%s: attention_kv: %zu of %zu values differ from the forward's %s", label.c_str(), diff, checked,
         hopper ? "values (beyond rounding)" : "bits");
}

// ---- split-KV: a decode step's bits do not depend on the batch ---------------------------------

// Decode steps (bf16, GQA 4, HS 64) of sequences whose lengths pick every piece size of the
// tensor-core attention_kv (include/srlm/attn_split.h, srlm_attn_split_keys): 40 (one piece of 64), 130 (3 of
// 64), 700 (6 of 128), 1100 (5 of 256) and 2600 (6 of 512). Each sequence must get the same bits
// alone as in the batch of all five, in that order and reversed; its cache slot differs
// between the runs (the slots' contents are the same) and the cache is longer than any of
// them, so the grid has more pieces than most sequences use.
void test_split_independent() {
  device g;
  OK(g.open());
  srlm_backend *be = &g.be;
  const std::vector<int32_t> lens = {40, 130, 700, 1100, 2600};
  const int n = (int)lens.size();
  const int64_t NH = 4, NKV = 1, HS = 64, max_slots = 2 * n, max_len = 2700, kld = NKV * HS;
  const int64_t slot_len = max_len * kld;
  // slot n + i holds the same keys as slot i
  std::vector<float> kc((size_t)(max_slots * slot_len)), vc(kc.size()), qv((size_t)(n * NH * HS));
  for (size_t i = 0; i < (size_t)(n * slot_len); i++) {
    kc[i] = kc[i + (size_t)(n * slot_len)] = val((uint32_t)i, 1, -2, 2);
    vc[i] = vc[i + (size_t)(n * slot_len)] = val((uint32_t)i, 2, -1, 1);
  }
  for (size_t i = 0; i < qv.size(); i++) qv[i] = val((uint32_t)i, 3, -2, 2);
  tens tkc, tvc;
  tkc.set(kc, SRLM_BF16);
  tvc.set(vc, SRLM_BF16);
  g.up(tkc);
  g.up(tvc);
  // one decode step of the sequences `order` (sequence i reads slot i, or n + i with `other`);
  // returns each sequence's output row (by sequence)
  auto run = [&](const std::vector<int> &order, bool other) {
    std::vector<float> qn;
    std::vector<int32_t> cuq(1, 0), len, slots;
    for (int who : order) {
      qn.insert(qn.end(), qv.begin() + who * NH * HS, qv.begin() + (who + 1) * NH * HS);
      cuq.push_back(cuq.back() + 1);
      len.push_back(lens[(size_t)who]);
      slots.push_back(other ? n + who : who);
    }
    tens tq;
    tq.set(qn, SRLM_BF16);
    g.up(tq);
    srlm_attention_kv_params kp = {};
    kp.n = (int)order.size();
    kp.NQ = (int64_t)order.size();
    kp.NH = NH;
    kp.NKV = NKV;
    kp.HS = HS;
    kp.max_slots = max_slots;
    kp.max_len = max_len;
    kp.scale = 0.125f;
    kp.dtype = SRLM_BF16;
    kp.q = tq.dev;
    kp.k_cache = tkc.dev;
    kp.v_cache = tvc.dev;
    kp.slot = (const int32_t *)g.ints(slots);
    kp.cu_q = (const int32_t *)g.ints(cuq);
    kp.kv_len = (const int32_t *)g.ints(len);
    kp.out = g.out(qn.size(), SRLM_BF16);
    OK(SRLM_OP(be, attention_kv, kp));
    const std::vector<float> o = g.down(kp.out, qn.size(), SRLM_BF16);
    std::vector<std::vector<float>> by_seq((size_t)n);
    for (size_t r = 0; r < order.size(); r++)
      by_seq[(size_t)order[r]].assign(o.begin() + (long)(r * NH * HS), o.begin() + (long)((r + 1) * NH * HS));
    return by_seq;
  };
  std::vector<int> fwd_order, rev_order;
  for (int i = 0; i < n; i++) fwd_order.push_back(i), rev_order.push_back(n - 1 - i);
  const auto all = run(fwd_order, false), reversed = run(rev_order, true);
  for (int i = 0; i < n; i++) {
    const std::vector<float> alone = run({i}, i % 2 == 1)[(size_t)i];
    EXPECT(!any_nan(alone) && same_bits(alone, all[(size_t)i]) && same_bits(alone, reversed[(size_t)i]),
           "split-KV attention_kv: the decode step of the sequence of %d cached positions differs with the batch "
           "(alone vs in order: %s, vs reversed: %s)", (int)lens[(size_t)i],
           same_bits(alone, all[(size_t)i]) ? "same" : "differs", same_bits(alone, reversed[(size_t)i]) ? "same" : "differs");
  }
}

// ---- data errors and empty batches ----------------------------------------------------------

// The next sync reports a range error containing `part` (and the op's name), once.
void expect_kernel_error(srlm_backend *be, const char *op, const char *part) {
  srlm_error_clear();
  const srlm_status st = srlm_backend_sync(be);
  const std::string msg = srlm_error_message();
  EXPECT(st == SRLM_ERR_RANGE, "%s: sync gave %s (%s), expected a range error", op, srlm_status_name(st), msg.c_str());
  EXPECT(msg.find(std::string(be->name) + " " + op) != std::string::npos && msg.find(part) != std::string::npos,
         "\"%s\" does not name \"%s %s\" and \"%s\"", msg.c_str(), be->name, op, part);
  OK(srlm_backend_sync(be));
}

void test_data_errors() {
  device g;
  OK(g.open());
  srlm_backend *be = &g.be;
  const int64_t NH = 4, NKV = 2, HS = 8, T = 9;
  std::vector<float> x((size_t)(T * NH * HS));
  for (size_t i = 0; i < x.size(); i++) x[i] = val((uint32_t)i, 7, -1, 1);
  tens q, k;
  q.set(x, SRLM_F32);
  x.resize((size_t)(T * NKV * HS));
  k.set(x, SRLM_F32);
  g.up(q);
  g.up(k);
  const size_t nq = (size_t)(T * NH * HS), nkv = (size_t)(T * NKV * HS), nl = (size_t)(T * NH);
  float *lse = (float *)g.out(nl, SRLM_F32);
  std::vector<float> ones(nl, 0.0f);
  OK(srlm_backend_copy_h2d(be, lse, ones.data(), nl * 4));
  // cu_seqlens: decreasing, not starting at 0, not ending at T, and B = 0 with T > 0
  const std::vector<int32_t> bad_cu[] = {{0, 5, 4, 9}, {1, 5, 9}, {0, 5, 8}, {0}};
  const char *want[] = {"cu_seqlens[2] = 4: the entries must start at 0, not decrease and end at 9",
                        "cu_seqlens[0] = 1", "cu_seqlens[2] = 8", "cu_seqlens[0] = 0"};
  for (int c = 0; c < 4; c++) {
    srlm_attention_params p = {};
    p.B = (int)bad_cu[c].size() - 1;
    p.T = T;
    p.NH = NH;
    p.NKV = NKV;
    p.HS = HS;
    p.scale = 0.5f;
    p.dtype = SRLM_F32;
    p.out = g.out(nq, SRLM_F32);
    p.lse = (float *)g.out(nl, SRLM_F32);
    std::vector<float> zero(nl, 0.0f);
    OK(srlm_backend_copy_h2d(be, p.lse, zero.data(), nl * 4));  // so that NaN shows the poisoning
    p.q = q.dev;
    p.k = p.v = k.dev;
    p.cu_seqlens = (const int32_t *)g.ints(bad_cu[c]);
    OK(SRLM_OP(be, attention_forward, p));
    expect_kernel_error(be, "attention_forward", want[c]);
    EXPECT(all_nan(g.down(p.lse, nl, SRLM_F32)) && all_nan(g.down(p.out, nq, SRLM_F32)),
           "forward with bad cu_seqlens %d: every output NaN", c);
    srlm_attention_bwd_params bp = {};
    bp.B = p.B;
    bp.T = T;
    bp.NH = NH;
    bp.NKV = NKV;
    bp.HS = HS;
    bp.scale = 0.5f;
    bp.dtype = SRLM_BF16;  // the poisoning in the other dtype (sizes in bf16 elements)
    bp.dq = g.alloc(nq * 2, nullptr);
    bp.dk = g.alloc(nkv * 2, nullptr);
    bp.dv = g.alloc(nkv * 2, nullptr);
    bp.dout = bp.out = bp.q = q.dev;
    bp.k = bp.v = k.dev;
    bp.lse = lse;
    bp.cu_seqlens = p.cu_seqlens;
    OK(SRLM_OP(be, attention_backward, bp));
    expect_kernel_error(be, "attention_backward", want[c]);
    EXPECT(all_nan(g.down(bp.dq, nq, SRLM_BF16)) && all_nan(g.down(bp.dk, nkv, SRLM_BF16)) &&
               all_nan(g.down(bp.dv, nkv, SRLM_BF16)),
           "backward with bad cu_seqlens %d: every gradient NaN", c);
  }
  // attention_kv: 3 sequences in a cache of 3 slots x 6 positions
  struct kv_case {
    std::vector<int32_t> slot, cuq, len;
    const char *want;
  } kc[] = {
      {{0, 3, 1}, {0, 1, 2, 3}, {2, 3, 4}, "sequence 1: slot 3 out of range [0, 3)"},
      {{0, 1, -1}, {0, 1, 2, 3}, {7, 3, 4}, "sequence 0: length 7 out of range [0, 7)"},
      {{0, 1, 2}, {0, 1, 4, 5}, {2, 2, 4}, "sequence 1: position -1 out of range [0, 6)"},
      {{0, 1, 2}, {0, 2, 1, 5}, {2, 2, 4}, "cu_q[2] = 1: the entries must start at 0, not decrease and end at 5"},
      {{0, 1, 2}, {0, 1, 2, 4}, {2, 2, 4}, "cu_q[3] = 4"},
  };
  const int64_t max_slots = 3, max_len = 6;
  std::vector<float> cache((size_t)(max_slots * max_len * NKV * HS), 0.25f);
  tens tc;
  tc.set(cache, SRLM_F32);
  g.up(tc);
  for (auto &c : kc) {
    srlm_attention_kv_params p = {};
    p.n = 3;
    p.NQ = 5;
    p.NH = NH;
    p.NKV = NKV;
    p.HS = HS;
    p.max_slots = max_slots;
    p.max_len = max_len;
    p.scale = 0.5f;
    p.dtype = SRLM_F32;
    p.out = g.out((size_t)(p.NQ * NH * HS), SRLM_F32);
    std::vector<float> zero((size_t)(p.NQ * NH * HS), 0.0f);
    OK(srlm_backend_copy_h2d(be, p.out, zero.data(), zero.size() * 4));
    p.q = q.dev;
    p.k_cache = p.v_cache = tc.dev;
    p.slot = (const int32_t *)g.ints(c.slot);
    p.cu_q = (const int32_t *)g.ints(c.cuq);
    p.kv_len = (const int32_t *)g.ints(c.len);
    OK(SRLM_OP(be, attention_kv, p));
    expect_kernel_error(be, "attention_kv", c.want);
    EXPECT(all_nan(g.down(p.out, zero.size(), SRLM_F32)), "attention_kv with \"%s\": every output NaN", c.want);
  }
  // a head dim past the kernels' classes is refused on the host
  srlm_attention_params p = {};
  p.B = 0;
  p.T = 0;
  p.NH = p.NKV = 1;
  p.HS = 300;
  p.scale = 0.5f;
  p.out = p.lse = lse;
  p.q = p.k = p.v = q.dev;
  p.cu_seqlens = (const int32_t *)g.ints({0});
  srlm_error_clear();
  EXPECT(SRLM_OP(be, attention_forward, p) == SRLM_ERR_UNSUPPORTED, "HS 300 is refused");
  EXPECT_CONTAINS(srlm_error_message(), "HS = 300");
}

// Empty batches: no sequence, an empty sequence, a KV batch without new queries.
void test_empty() {
  device g;
  OK(g.open());
  srlm_backend *be = &g.be;
  float *dummy = (float *)g.alloc(256, nullptr);  // every tensor of these shapes fits
  for (int B = 0; B < 2; B++) {
    srlm_attention_params p = {};
    p.B = B;
    p.NH = 2;
    p.NKV = 1;
    p.HS = 4;
    p.scale = 0.5f;
    p.out = dummy;
    p.q = p.k = p.v = dummy;
    p.cu_seqlens = (const int32_t *)g.ints(std::vector<int32_t>((size_t)B + 1, 0));
    OK(SRLM_OP(be, attention_forward, p));
    srlm_attention_bwd_params bp = {};
    bp.B = B;
    bp.NH = 2;
    bp.NKV = 1;
    bp.HS = 4;
    bp.scale = 0.5f;
    bp.dq = bp.dk = bp.dv = dummy;
    bp.dout = bp.out = bp.q = bp.k = bp.v = dummy;
    bp.lse = dummy;
    bp.cu_seqlens = p.cu_seqlens;
    OK(SRLM_OP(be, attention_backward, bp));
    OK(srlm_backend_sync(be));
  }
  srlm_attention_kv_params kp = {};
  kp.n = 2;
  kp.NQ = 0;
  kp.NH = 2;
  kp.NKV = 1;
  kp.HS = 4;
  kp.max_slots = 2;
  kp.max_len = 3;
  kp.scale = 0.5f;
  kp.out = dummy;
  kp.q = kp.k_cache = kp.v_cache = dummy;
  kp.slot = (const int32_t *)g.ints({1, 0});
  kp.cu_q = (const int32_t *)g.ints({0, 0, 0});
  kp.kv_len = (const int32_t *)g.ints({3, 0});
  OK(SRLM_OP(be, attention_kv, kp));
  OK(srlm_backend_sync(be));
}

}  // namespace

// Under ThreadSanitizer (a fiber switch per thread at every barrier and shuffle costs ~30x)
// bf16 runs only on the shapes marked tsan: its forward and backward are the tensor-core
// kernels (cp.async double buffering, ldmatrix, mma), whose shared-memory discipline differs
// from the fp32 kernels'; these shapes cover one, two and three key or query tiles (the third
// reuses the first's buffer: a missing barrier before reissuing into it is a race, and the
// simulator's own hazard check), a 65-row sequence (two 64-row tiles), GQA 2, 4 and 8 (the
// backward's query tiles of several heads through one pipeline), windows, many short packed
// sequences, HS 16/32/64/128/256, non-causal (query tiles that read every key tile), and
// attention_kv on caches of 70, 65 and 150 positions (split-KV: 2 or 3 pieces of 64 and the
// merge); test_split_independent (every piece size, up to 6 pieces) runs there too.
#if defined(SRLM_SIM_TSAN) && SRLM_SIM_TSAN
constexpr bool kTsan = true;
#else
constexpr bool kTsan = false;
#endif
const srlm_dtype k_dtypes[] = {SRLM_F32, SRLM_BF16};

// With the 99 KB of shared memory of compute capability 8.6/8.9 (SRLM_SIM_SMEM_OPTIN=101376):
// head dims of the 256 class are refused, naming shared memory (the 128 class's bf16 backward
// takes the fp32-tile kernels instead; main runs those shapes).
void test_smem_limit() {
  device g;
  OK(g.open());
  srlm_backend *be = &g.be;
  const int64_t T = 4, NH = 2, NKV = 1, HS = 256;
  for (srlm_dtype dt : k_dtypes) {
    tens q, kv;
    q.set(std::vector<float>((size_t)(T * NH * HS), 0.5f), dt);
    kv.set(std::vector<float>((size_t)(T * NKV * HS), 0.25f), dt);
    g.up(q);
    g.up(kv);
    srlm_attention_params fp = {};
    fp.B = 1, fp.T = T, fp.NH = NH, fp.NKV = NKV, fp.HS = HS, fp.scale = 0.0625f, fp.dtype = dt;
    fp.q = q.dev, fp.k = kv.dev, fp.v = kv.dev;
    fp.cu_seqlens = (const int32_t *)g.ints({0, (int32_t)T});
    fp.out = g.out(q.n, dt);
    fp.lse = (float *)g.out((size_t)(T * NH), SRLM_F32);
    srlm_status st = SRLM_OP(be, attention_forward, fp);
    if (dt == SRLM_BF16) {  // the tensor-core forward fits exactly: 101376 bytes
      OK(st);
      srlm_attention_bwd_params bp = {};
      bp.B = 1, bp.T = T, bp.NH = NH, bp.NKV = NKV, bp.HS = HS, bp.scale = fp.scale, bp.dtype = dt;
      bp.q = q.dev, bp.k = kv.dev, bp.v = kv.dev, bp.dout = q.dev, bp.out = fp.out, bp.lse = fp.lse;
      bp.cu_seqlens = fp.cu_seqlens;
      bp.dq = g.out(q.n, dt), bp.dk = g.out(kv.n, dt), bp.dv = g.out(kv.n, dt);
      st = SRLM_OP(be, attention_backward, bp);
    }
    EXPECT(st == SRLM_ERR_UNSUPPORTED && strstr(srlm_error_message(), "bytes of shared memory per block; device 0"),
           "[%s] HS 256 on a 99 KB device: %d %s", srlm_dtype_name(dt), (int)st, srlm_error_message());
    OK(srlm_backend_sync(be));
  }
}

// A bad SRLM_CUDA_ATTENTION is create's error, naming the variable and the values it takes.
void test_path_env() {
  const char *old = getenv("SRLM_CUDA_ATTENTION");
  const std::string keep = old ? old : "";
  setenv("SRLM_CUDA_ATTENTION", "flash", 1);
  {
    device g;
    const srlm_status st = g.open();
    EXPECT(st == SRLM_ERR_CONFIG && strstr(srlm_error_message(), "SRLM_CUDA_ATTENTION=flash: expected auto, mma"),
           "SRLM_CUDA_ATTENTION=flash: create gave %d: %s", (int)st, srlm_error_message());
  }
  if (old) setenv("SRLM_CUDA_ATTENTION", keep.c_str(), 1);
  else unsetenv("SRLM_CUDA_ATTENTION");
}

int main() {
  // SRLM_SIM_SMEM_OPTIN=101376 (ctest sim.attention_smem99): the shapes of the 128 head-dim
  // class, whose bf16 backward falls back to the fp32-tile kernels there, and the 256 class's
  // refusal
  const bool small_smem = getenv("SRLM_SIM_SMEM_OPTIN") != nullptr;
  // SRLM_SIM_ODD=1 (ctest sim.attention_odd): the odd-numbered shapes only, sim.attention the
  // even ones and the cases after them, so the two halves run side by side (under
  // ThreadSanitizer the whole list took 126 s, the longest test of that stage)
  const char *odd_env = getenv("SRLM_SIM_ODD");
  const int half = odd_env == nullptr ? -1 : odd_env[0] == '1' ? 1 : 0;
  if (small_smem) test_smem_limit();
  else if (half != 1) test_path_env();
  uint32_t salt = 100;
  for (size_t k = 0; k < sizeof k_shapes / sizeof k_shapes[0]; k++) {
    const shape &s = k_shapes[k];
    for (srlm_dtype dt : k_dtypes) {
      salt += 10;
      if (half >= 0 && (int)(k % 2) != half) continue;
      if (small_smem && (s.HS <= 64 || s.HS > 128)) continue;
      if (kTsan && dt == SRLM_BF16 && !s.tsan) continue;
      // the Hopper run (sim.attention_wgmma): only the shapes its forward takes (bf16, head
      // dim 64 or 128); sim.attention runs the others with the same kernels
      if (hopper_requested() && (dt != SRLM_BF16 || (s.HS != 64 && s.HS != 128))) continue;
      const double t0 = srlm_time_now();
      test_shape(s, dt, salt);
      if (getenv("SRLM_TEST_VERBOSE")) fprintf(stderr, "%s: %.2f s\n", label_of(s, dt).c_str(), srlm_time_now() - t0);
    }
  }
  if (small_smem || half == 1) TEST_MAIN_END();
  if (!hopper_requested()) test_split_independent();
  test_data_errors();
  test_empty();
  TEST_MAIN_END();
}
