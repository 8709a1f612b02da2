/* The loss-coefficient ops of the CUDA backend (cuda/loss.cu: pref_loss, grpo_loss) against
 * their CPU twin (src/backend/cpu/loss.c) on random packed batches: pairs or sequences of
 * 1..300 tokens (several tiles of the kernels' 128) behind prompts, in random order with
 * padding, every preference loss (DPO with and without label smoothing, IPO, SimPO with
 * and without a reference, SFT; NLL term) and GRPO aggregation, with and without
 * old/ref/behavior log-probs, clipping, KL, importance caps and normalizers past the
 * batch, n = 0 and T = 0 included. On the simulator g, pair_out and seq_out must equal the
 * CPU's BIT FOR BIT (the same loss_math.h code on the same sums, summed in token order);
 * on a GPU the sums of logp still are, and the formulas' rounding is held to 1e-12
 * relative (g: one float ulp). g is overwritten over all T (a NaN-filled buffer). The
 * same bits run after run. Data errors (a response outside the batch or empty, GRPO's
 * offsets[0] != 0 and l_max) are named by the next sync in the CPU op's words, the bad
 * pair's or sequence's outputs NaN. */
#include <string>
#include <utility>

#include "op_test.h"
#include "srlm/loss_math.h"

namespace {

const uint64_t kSeed = 20260302;
uint64_t g_draw = 0;

double rnd(double lo, double hi) { return urand(kSeed, 9, g_draw++, lo, hi); }
int irnd(int lo, int hi) { return lo + (int)floor(rnd(0, hi - lo + 1)); }  // in [lo, hi]

// nseq sequences behind 1..4 prompt rows each, in random order, then 0..3 padding rows.
struct packed {
  int nseq = 0;
  int64_t T = 0;
  std::vector<int32_t> start, len;
  std::vector<float> logp;  // (T)
};

packed pack(int nseq, int max_len) {
  packed b;
  b.nseq = nseq;
  b.start.assign((size_t)nseq, 0);
  b.len.assign((size_t)nseq, 0);
  std::vector<int> order((size_t)nseq);
  for (int s = 0; s < nseq; s++) order[s] = s;
  for (int s = nseq - 1; s > 0; s--) std::swap(order[s], order[irnd(0, s)]);
  int64_t t = 0;
  for (int s : order) {
    t += irnd(1, 4);
    b.start[s] = (int32_t)t;
    b.len[s] = irnd(1, max_len);
    t += b.len[s];
  }
  b.T = t + irnd(0, 3);
  b.logp.resize((size_t)b.T);
  for (float &v : b.logp) v = (float)rnd(-6, -0.05);
  return b;
}

// Values of the device's run (downloaded) and the CPU's, compared as the header says.
template <class T>
int compare(const char *what, const std::vector<T> &dev, const std::vector<T> &cpu, double rel) {
  int bad = 0;
  for (size_t i = 0; i < dev.size(); i++) {
    const double a = (double)dev[i], b = (double)cpu[i];
    const bool ok = SIM ? !memcmp(&dev[i], &cpu[i], sizeof(T))
                        : (a == b || (isnan(a) && isnan(b)) || fabs(a - b) <= rel * fabs(b));
    if (!ok && bad++ == 0) EXPECT(0, "%s [%zu]: device %.17g, cpu %.17g", what, i, a, b);
  }
  return bad;
}
// One float ulp of the CPU's value on a GPU (the coefficient rounds once from a double).
const double kFloatRel = SIM ? 0.0 : FLT_EPSILON;
const double kDoubleRel = SIM ? 0.0 : 1e-12;

std::vector<float> nan_filled(int64_t n) { return std::vector<float>((size_t)n, NAN); }

// Runs the device op (launch), holds g and the per-pair/sequence outputs to the CPU's, and
// runs it again for the same bits. Returns how many values differ.
template <class F>
int run_and_compare(dev_instance &d, const char *what, F launch, float *dg, const std::vector<float> &cg, double *dout,
                    const std::vector<double> &cout) {
  OK(launch());
  const std::vector<float> g = d.down(dg, cg.size());
  const std::vector<double> out = d.down(dout, cout.size());
  char label[160];
  snprintf(label, sizeof label, "%s: g", what);
  int bad = compare(label, g, cg, kFloatRel);
  snprintf(label, sizeof label, "%s: outputs", what);
  bad += compare(label, out, cout, kDoubleRel);
  OK(launch());
  EXPECT(same_bits(d.down(dg, g.size()), g) && same_bits(d.down(dout, out.size()), out), "%s: a rerun gave other bits",
         what);
  return bad;
}

// The part of a CPU error message after "cpu " ("pref_loss: pair 1: ...").
std::string cpu_words(const char *msg) { return strncmp(msg, "cpu ", 4) ? std::string(msg) : std::string(msg + 4); }

// ---- preference losses

struct pref_setup {
  int kind;
  bool ref;
  double beta, ls, gamma, nll;
};

srlm_pref_loss_params pref_params(const pref_setup &o, int64_t n, int64_t T, int64_t norm) {
  srlm_pref_loss_params p = {};
  p.n = n, p.T = T, p.kind = o.kind, p.beta = o.beta, p.label_smoothing = o.ls, p.simpo_gamma = o.gamma;
  p.nll_weight = o.nll, p.norm = norm;
  return p;
}

void test_pref() {
  const pref_setup setups[] = {
      {SRLM_PREF_DPO, true, 0.1, 0.0, 0, 0},    {SRLM_PREF_DPO, true, 0.5, 0.2, 0, 1.0},
      {SRLM_PREF_IPO, true, 0.3, 0, 0, 0},      {SRLM_PREF_SIMPO, false, 2.0, 0, 0.5, 0},
      {SRLM_PREF_SIMPO, true, 2.5, 0, 1.0, 0.3}, {SRLM_PREF_SFT, false, 0, 0, 0, 0},
  };
  const int npairs[] = {0, 1, 3, 7};
  dev_instance d;
  int cases = 0, bad = 0;
  for (const pref_setup &o : setups)
    for (int n : npairs)
      for (int max_len : {5, 300}) {
        const packed b = pack(2 * n, max_len);
        std::vector<double> rc((size_t)n), rr((size_t)n);
        for (int i = 0; i < n; i++) rc[i] = rnd(-200, -1), rr[i] = rnd(-200, -1);
        const int64_t norm = n + irnd(0, 3) + (n == 0);
        // CPU
        std::vector<float> cg = nan_filled(b.T);
        std::vector<double> cout((size_t)n * SRLM_PREF_OUT_COUNT);
        srlm_pref_loss_params cp = pref_params(o, n, b.T, norm);
        cp.g = cg.data(), cp.pair_out = cout.data(), cp.logp = b.logp.data();
        cp.resp_start = b.start.data(), cp.resp_len = b.len.data();
        cp.ref_chosen = o.ref ? rc.data() : nullptr, cp.ref_rejected = o.ref ? rr.data() : nullptr;
        OK(SRLM_OP(srlm_backend_cpu(), pref_loss, cp));
        // device, over NaN
        srlm_pref_loss_params p = cp;
        float *dg = d.up(nan_filled(b.T));
        double *dout = d.up<double>(nullptr, cout.size());
        p.g = dg, p.pair_out = dout, p.logp = d.up(b.logp), p.resp_start = d.up(b.start), p.resp_len = d.up(b.len);
        p.ref_chosen = o.ref ? d.up(rc) : nullptr, p.ref_rejected = o.ref ? d.up(rr) : nullptr;
        char what[96];
        snprintf(what, sizeof what, "pref kind %d n=%d T=%lld", o.kind, n, (long long)b.T);
        bad += run_and_compare(d, what, [&] { return d.be.ops->pref_loss(&d.be, p); }, dg, cg, dout, cout);
        d.release();
        cases++;
      }
  fprintf(stderr, "pref_loss: %d batches, %d values differ from the CPU%s\n", cases, bad, SIM ? " in any bit" : "");
}

// A response past the batch's end and an empty one: named as the CPU names them.
void test_pref_errors() {
  dev_instance d;
  packed b = pack(6, 20);
  const pref_setup o = {SRLM_PREF_DPO, true, 0.1, 0, 0, 0};
  std::vector<double> rc(3, -10.0), rr(3, -12.0);
  for (int which = 0; which < 2; which++) {
    std::vector<int32_t> len = b.len;
    if (which == 0) len[3] = (int32_t)(b.T - b.start[3] + 1);  // pair 1's rejected answer leaves the batch
    else len[4] = 0;                                            // pair 2's chosen answer is empty
    const int bad_pair = which == 0 ? 1 : 2;
    std::vector<float> cg = nan_filled(b.T);
    std::vector<double> cout(3 * SRLM_PREF_OUT_COUNT);
    srlm_pref_loss_params cp = pref_params(o, 3, b.T, 3);
    cp.g = cg.data(), cp.pair_out = cout.data(), cp.logp = b.logp.data(), cp.resp_start = b.start.data();
    cp.resp_len = len.data(), cp.ref_chosen = rc.data(), cp.ref_rejected = rr.data();
    srlm_error_clear();
    EXPECT_EQ_INT(SRLM_OP(srlm_backend_cpu(), pref_loss, cp), SRLM_ERR_RANGE);
    const std::string want = cpu_words(srlm_error_message());
    srlm_pref_loss_params p = cp;
    float *dg = d.up(nan_filled(b.T));
    double *dout = d.up<double>(nullptr, cout.size());
    p.g = dg, p.pair_out = dout, p.logp = d.up(b.logp), p.resp_start = d.up(b.start), p.resp_len = d.up(len);
    p.ref_chosen = d.up(rc), p.ref_rejected = d.up(rr);
    OK(d.be.ops->pref_loss(&d.be, p));
    FAILS(d.be.ops->sync(&d.be), SRLM_ERR_RANGE, want.c_str());
    const std::vector<double> out = d.down(dout, cout.size());
    const std::vector<float> g = d.down(dg, (size_t)b.T);
    int nan_row = 1, finite_rows = 1;
    for (int i = 0; i < 3; i++)
      for (int k = 0; k < SRLM_PREF_OUT_COUNT; k++)
        (i == bad_pair ? nan_row : finite_rows) &= i == bad_pair ? isnan(out[i * SRLM_PREF_OUT_COUNT + k]) != 0
                                                                 : isfinite(out[i * SRLM_PREF_OUT_COUNT + k]) != 0;
    // the bad pair's other answer (inside the batch) gets NaN coefficients
    const int other = which == 0 ? 2 : 5;
    EXPECT(nan_row && finite_rows && isnan(g[b.start[other]]), "pref error %d: pair_out NaN %d, others finite %d, "
           "g of the pair's valid answer %g", which, nan_row, finite_rows, g[b.start[other]]);
    d.release();
  }
}

// ---- GRPO

struct grpo_setup {
  int agg;
  bool old_, ref, beh;
  double clip, beta, cap;
  double hi = 0;                      // DAPO's clip_eps_high (0 = clip)
  int ratio = SRLM_GRPO_RATIO_TOKEN;  // or per sequence (GSPO)
};

void test_grpo() {
  const grpo_setup setups[] = {
      {SRLM_GRPO_AGG_SEQ_MEAN, false, false, false, 0.2, 0.0, 0.0},
      {SRLM_GRPO_AGG_SEQ_MEAN, true, true, false, 0.2, 0.04, 0.0},
      {SRLM_GRPO_AGG_TOKEN_MEAN, true, true, true, 0.28, 0.0, 2.0},
      {SRLM_GRPO_AGG_FIXED_LEN, true, false, true, 0.1, 0.0, 1.5},
      {SRLM_GRPO_AGG_TOKEN_MEAN, false, true, false, 0.0, 0.1, 0.0},
      {SRLM_GRPO_AGG_TOKEN_MEAN, true, true, false, 0.1, 0.04, 0.0, 0.28, SRLM_GRPO_RATIO_TOKEN},
      {SRLM_GRPO_AGG_SEQ_MEAN, true, true, true, 0.2, 0.04, 2.0, 0.28, SRLM_GRPO_RATIO_SEQUENCE},
      {SRLM_GRPO_AGG_FIXED_LEN, false, false, false, 0.2, 0.0, 0.0, 0.0, SRLM_GRPO_RATIO_SEQUENCE},
  };
  dev_instance d;
  int cases = 0, bad = 0;
  for (const grpo_setup &o : setups)
    for (int n : {0, 1, 4, 9})
      for (int max_len : {7, 300}) {
        const packed b = pack(n, max_len);
        std::vector<int64_t> off((size_t)n + 1, 0);
        for (int i = 0; i < n; i++) off[i + 1] = off[i] + b.len[i];
        const size_t Ntok = (size_t)off[n];
        std::vector<float> old(Ntok), ref(Ntok), beh(Ntok);
        for (size_t j = 0; j < Ntok; j++) {
          old[j] = (float)rnd(-6, -0.05);
          ref[j] = (float)rnd(-6, -0.05);
          beh[j] = (float)rnd(-6, -0.05);
        }
        std::vector<double> adv((size_t)n);
        for (double &a : adv) a = rnd(-2, 2);
        srlm_grpo_loss_params cp = {};
        std::vector<float> cg = nan_filled(b.T);
        std::vector<double> cout((size_t)n * SRLM_GRPO_OUT_COUNT);
        cp.g = cg.data(), cp.seq_out = cout.data(), cp.logp = b.logp.data(), cp.resp_start = b.start.data();
        cp.offsets = off.data(), cp.logp_old = o.old_ ? old.data() : nullptr;
        cp.logp_ref = o.ref ? ref.data() : nullptr, cp.logp_behavior = o.beh ? beh.data() : nullptr;
        cp.advantages = adv.data(), cp.n = n, cp.T = b.T, cp.clip_eps = o.clip, cp.beta = o.beta;
        cp.is_cap = o.cap, cp.agg = o.agg, cp.l_max = max_len + 1, cp.clip_eps_high = o.hi, cp.ratio = o.ratio;
        cp.norm_seqs = n + irnd(1, 3), cp.norm_tokens = (int64_t)Ntok + irnd(1, 30);
        OK(SRLM_OP(srlm_backend_cpu(), grpo_loss, cp));
        srlm_grpo_loss_params p = cp;
        float *dg = d.up(nan_filled(b.T));
        double *dout = d.up<double>(nullptr, cout.size());
        p.g = dg, p.seq_out = dout, p.logp = d.up(b.logp), p.resp_start = d.up(b.start), p.offsets = d.up(off);
        p.logp_old = o.old_ ? d.up(old) : nullptr, p.logp_ref = o.ref ? d.up(ref) : nullptr;
        p.logp_behavior = o.beh ? d.up(beh) : nullptr, p.advantages = d.up(adv);
        char what[96];
        snprintf(what, sizeof what, "grpo agg %d ratio %d n=%d T=%lld", o.agg, o.ratio, n, (long long)b.T);
        bad += run_and_compare(d, what, [&] { return d.be.ops->grpo_loss(&d.be, p); }, dg, cg, dout, cout);
        d.release();
        cases++;
      }
  fprintf(stderr, "grpo_loss: %d batches, %d values differ from the CPU%s\n", cases, bad, SIM ? " in any bit" : "");
}

// offsets[0] != 0, an empty response, one past the batch, one longer than l_max.
void test_grpo_errors() {
  dev_instance d;
  const int n = 4;
  packed b = pack(n, 12);
  int cases = 0;
  for (int which = 0; which < 4; which++) {
    std::vector<int64_t> off((size_t)n + 1, 0);
    for (int i = 0; i < n; i++) off[i + 1] = off[i] + b.len[i];
    std::vector<int32_t> start = b.start;
    int64_t l_max = 12;
    int agg = SRLM_GRPO_AGG_SEQ_MEAN, bad_seq = -1;
    if (which == 0) {
      for (int64_t &o : off) o += 1;
    } else if (which == 1) {
      bad_seq = 2;
      for (int i = 3; i <= n; i++) off[i] = off[i] - b.len[2];  // sequence 2 has no tokens
    } else if (which == 2) {
      bad_seq = 1;
      start[1] = (int32_t)(b.T - b.len[1] + 1);
    } else {  // the longest sequences exceed l_max; the CPU names the first of them
      agg = SRLM_GRPO_AGG_FIXED_LEN;
      l_max = 0;
      for (int i = 0; i < n; i++) l_max = b.len[i] > l_max ? b.len[i] : l_max;
      l_max--;
    }
    const auto is_bad = [&](int i) {
      return which == 0 || i == bad_seq || (which == 3 && off[i + 1] - off[i] > l_max);
    };
    std::vector<double> adv((size_t)n, 0.5), cout((size_t)n * SRLM_GRPO_OUT_COUNT);
    std::vector<float> cg = nan_filled(b.T), old((size_t)off[n] + 2, -1.0f);
    srlm_grpo_loss_params cp = {};
    cp.g = cg.data(), cp.seq_out = cout.data(), cp.logp = b.logp.data(), cp.resp_start = start.data();
    cp.offsets = off.data(), cp.logp_old = old.data(), cp.advantages = adv.data(), cp.n = n, cp.T = b.T;
    cp.clip_eps = 0.2, cp.agg = agg, cp.l_max = l_max, cp.norm_seqs = n, cp.norm_tokens = 40;
    srlm_error_clear();
    EXPECT_EQ_INT(SRLM_OP(srlm_backend_cpu(), grpo_loss, cp), SRLM_ERR_RANGE);
    const std::string want = cpu_words(srlm_error_message());
    srlm_grpo_loss_params p = cp;
    float *dg = d.up(nan_filled(b.T));
    double *dout = d.up<double>(nullptr, cout.size());
    p.g = dg, p.seq_out = dout, p.logp = d.up(b.logp), p.resp_start = d.up(start), p.offsets = d.up(off);
    p.logp_old = d.up(old), p.advantages = d.up(adv);
    OK(d.be.ops->grpo_loss(&d.be, p));
    FAILS(d.be.ops->sync(&d.be), SRLM_ERR_RANGE, want.c_str());
    const std::vector<double> out = d.down(dout, cout.size());
    int poisoned = 1, finite = 1;
    for (int i = 0; i < n; i++)
      for (int k = 0; k < SRLM_GRPO_OUT_COUNT; k++) {
        const double v = out[i * SRLM_GRPO_OUT_COUNT + k];
        if (is_bad(i)) poisoned &= isnan(v) != 0;
        else finite &= isfinite(v) != 0;
      }
    EXPECT(poisoned && finite, "grpo error %d: the bad sequences' seq_out NaN %d, the others finite %d", which,
           poisoned, finite);
    d.release();
    cases++;
  }
  EXPECT_EQ_INT(cases, 4);
}

}  // namespace

int main() {
  test_pref();
  test_pref_errors();
  test_grpo();
  test_grpo_errors();
  TEST_MAIN_END();
}
