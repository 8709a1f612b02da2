/* The sample op of the CUDA backend (cuda/sample.cu) against the CPU op
 * (src/backend/cpu/sample.c): the same token, logprob and sample_logprob BIT FOR BIT (the
 * design of sample_math.h: exact integer masses and IEEE-only weights), on rows built to
 * put the cuts on ties, in flat runs, far below the max, next to -inf masks and across two
 * adjacent floats, for V from 1 to 151936, over a grid of temperature (greedy to 50),
 * top-k (off, 1, small, V - 1, V, past V), top-p (off, 0, tiny, 0.5, 0.9, 0.999) and
 * min-p, with sequence ids past 2^32 and varied steps; with and without sample_logprob;
 * the same bits run after run; and rows with a NaN or +inf logit or without a finite one
 * named by the next sync in the CPU's words, their outputs poisoned, the others kept. */
#include "op_test.h"
#include "srlm/sample_math.h"

namespace {

const uint64_t kSeed = 20261203;

enum { ROW_NORMAL, ROW_TIES, ROW_FLAT, ROW_WIDE, ROW_MASKED, ROW_TINY_SPAN, ROW_KINDS };

void make_row(float *l, int64_t V, int kind, uint32_t salt) {
  for (int64_t i = 0; i < V; i++) {
    const double u = urand(kSeed, 100 + salt, (uint64_t)i, 0, 1);
    switch (kind) {
      case ROW_NORMAL: l[i] = (float)(4.0 * (u - 0.5) * (1 + (salt % 3))); break;
      case ROW_TIES: l[i] = (float)floor(6.0 * u) * 0.5f; break;        // few values, many ties
      case ROW_FLAT: l[i] = u < 0.9 ? 1.0f : (float)(2.0 * u); break;   // one huge tied run
      case ROW_WIDE: l[i] = (float)(-300.0 * u * u); break;             // far below the max
      case ROW_MASKED: l[i] = u < 0.5 ? -INFINITY : (float)(3.0 * u); break;
      default: l[i] = 1.0f + (u < 0.5 ? 0.0f : 1.2e-7f); break;         // two adjacent floats
    }
  }
  if (V > 2 && kind != ROW_MASKED) l[V / 2] = -INFINITY;  // a masked id everywhere
  if (kind == ROW_MASKED) l[V - 1] = 0.5f;                  // at least one finite
}

struct settings {
  float t, top_p, min_p;
  int top_k;
};

struct rows {
  int64_t n, V;
  std::vector<float> l;  // (n, V)
  std::vector<uint64_t> seq;
  std::vector<uint32_t> step;
};

rows make_rows(int64_t n, int64_t V, uint32_t salt) {
  rows r;
  r.n = n, r.V = V;
  r.l.resize((size_t)(n * V));
  for (int64_t i = 0; i < n; i++) make_row(&r.l[(size_t)(i * V)], V, (int)(i % ROW_KINDS), salt + (uint32_t)i);
  for (int64_t i = 0; i < n; i++) {
    r.seq.push_back((uint64_t)i * 977 + (i % 3 == 2 ? UINT64_C(1) << 33 : 0));
    r.step.push_back((uint32_t)(i % 5 + salt));
  }
  return r;
}

// The op on both backends; returns the rows whose token or log-probs differ in any bit.
struct sample_run {
  dev_instance &d;
  const rows &r;
  float *dl;
  uint64_t *dseq;
  uint32_t *dstep;
  int32_t *dtok;
  float *dlp, *dslp;
  int runs = 0;
  sample_run(dev_instance &dev, const rows &rs) : d(dev), r(rs) {
    dl = d.up(r.l);
    dseq = d.up(r.seq);
    dstep = d.up(r.step);
    dtok = d.up<int32_t>(nullptr, (size_t)r.n);
    dlp = d.up<float>(nullptr, (size_t)r.n);
    dslp = d.up<float>(nullptr, (size_t)r.n);
  }
  srlm_sample_params params(const settings &s, int32_t *tok, float *lp, float *slp, const float *l,
                            const uint64_t *seq, const uint32_t *step) const {
    srlm_sample_params p = {};
    p.token = tok, p.logprob = lp, p.sample_logprob = slp, p.logits = l, p.seq_id = seq, p.step = step;
    p.n = r.n, p.V = r.V, p.temperature = s.t, p.top_p = s.top_p, p.min_p = s.min_p, p.top_k = s.top_k;
    p.seed = kSeed;
    return p;
  }
  int check(const settings &s, bool with_slp) {
    const size_t n = (size_t)r.n;
    std::vector<int32_t> ctok(n);
    std::vector<float> clp(n), cslp(n);
    OK(SRLM_OP(srlm_backend_cpu(), sample,
               params(s, ctok.data(), clp.data(), with_slp ? cslp.data() : nullptr, r.l.data(), r.seq.data(),
                      r.step.data())));
    OK(d.be.ops->sample(&d.be, params(s, dtok, dlp, with_slp ? dslp : nullptr, dl, dseq, dstep)));
    const std::vector<int32_t> tok = d.down(dtok, n);
    const std::vector<float> lp = d.down(dlp, n), slp = d.down(dslp, n);
    runs++;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
      const bool same =
          tok[i] == ctok[i] && !memcmp(&lp[i], &clp[i], 4) && (!with_slp || !memcmp(&slp[i], &cslp[i], 4));
      if (!same && bad++ == 0)
        EXPECT(0, "V=%lld T=%g k=%d p=%g min_p=%g row %zu (seq %llu step %u): device %d %.9g %.9g, cpu %d %.9g %.9g",
               (long long)r.V, (double)s.t, s.top_k, (double)s.top_p, (double)s.min_p, i,
               (unsigned long long)r.seq[i], r.step[i], tok[i], (double)lp[i], (double)slp[i], ctok[i],
               (double)clp[i], (double)cslp[i]);
    }
    return bad;
  }
};

void test_grid() {
  const float temps[] = {0.0f, 1.0f, 0.7f, 1.6f, 1e-3f, 50.0f};
  const int ks[] = {0, 1, 3, -1 /* V - 1 */, -2 /* V */, -3 /* V + 10 */};
  const float top_ps[] = {1.0f, 0.9f, 0.5f, 0.0f, 1e-6f, 0.999f};
  const float min_ps[] = {0.0f, 0.05f, 1.0f};
  const int64_t Vs[] = {1, 2, 7, 300};
  long long combos = 0, nrows = 0, bad = 0, skipped = 0;
  dev_instance d;
  for (int64_t V : Vs) {
    const rows r = make_rows(2 * ROW_KINDS, V, (uint32_t)(31 * V));
    sample_run run(d, r);
    for (float t : temps)
      for (int kk : ks)
        for (float tp : top_ps)
          for (float mp : min_ps) {
            if (t == 0.0f && (kk != 0 || tp != 1.0f || mp != 0.0f)) continue;  // greedy ignores the cuts
            const int k = kk >= 0 ? kk : (int)V + (kk == -1 ? -1 : kk == -2 ? 0 : 10);
            if (kLight && ++skipped % 7 != 0) continue;  // every 7th: each dimension still varies
            bad += run.check({t, tp, mp, k}, (combos & 1) == 0);
            combos++;
            nrows += r.n;
          }
    d.release();
  }
  fprintf(stderr, "grid: %lld settings x rows of V 1..300, %lld rows, %lld differ from the CPU in any bit\n", combos,
          nrows, bad);
  EXPECT_EQ_INT(bad, 0);
}

// Many steps of the same rows (the key changes the draw), a middle V and the model's.
void test_large() {
  const settings cases[] = {{0.0f, 1.0f, 0.0f, 0},  {1.0f, 1.0f, 0.0f, 0},    {0.7f, 0.9f, 0.0f, 0},
                            {1.0f, 1.0f, 0.0f, 50}, {1.0f, 1.0f, 0.05f, 0},   {0.8f, 0.95f, 0.05f, 20},
                            {1.3f, 0.999f, 0.0f, 0}, {0.6f, 0.5f, 0.0f, 1000}};
  dev_instance d;
  for (int64_t V : {5000, 151936}) {
    const rows r = make_rows(ROW_KINDS, V, 7000);
    sample_run run(d, r);
    int bad = 0, nset = 0;
    for (const settings &s : cases)
      if (!kLight || &s - cases == 5 || (V < 100000 && &s - cases == 7)) bad += run.check(s, true), nset++;
    fprintf(stderr, "V=%lld: %d settings x %lld rows, %d differ from the CPU in any bit\n", (long long)V, nset,
            (long long)r.n, bad);
    EXPECT_EQ_INT(bad, 0);
    // the same bits again
    const settings s = cases[5];
    OK(d.be.ops->sample(&d.be, run.params(s, run.dtok, run.dlp, run.dslp, run.dl, run.dseq, run.dstep)));
    const std::vector<int32_t> t1 = d.down(run.dtok, (size_t)r.n);
    const std::vector<float> a1 = d.down(run.dlp, (size_t)r.n), b1 = d.down(run.dslp, (size_t)r.n);
    OK(d.be.ops->sample(&d.be, run.params(s, run.dtok, run.dlp, run.dslp, run.dl, run.dseq, run.dstep)));
    EXPECT(same_bits(t1, d.down(run.dtok, (size_t)r.n)) && same_bits(a1, d.down(run.dlp, (size_t)r.n)) &&
               same_bits(b1, d.down(run.dslp, (size_t)r.n)),
           "V=%lld: a rerun gave other bits", (long long)V);
    d.release();
  }
}

// Bad rows: named by the next sync in the CPU's words (the lowest bad row, its lowest bad id),
// their outputs poisoned (token -1, NaN), the other rows as without them.
void test_errors() {
  dev_instance d;
  const int64_t V = 700, n = 6;
  rows r = make_rows(n, V, 55);
  const settings s = {0.9f, 0.95f, 0.0f, 40};
  sample_run clean(d, r);
  EXPECT_EQ_INT(clean.check(s, true), 0);
  const std::vector<int32_t> tok0 = d.down(clean.dtok, (size_t)n);
  const std::vector<float> lp0 = d.down(clean.dlp, (size_t)n);
  struct {
    int64_t row, id;
    float v;
    const char *want;
  } bad[] = {{2, 17, NAN, "row 2: logit of id 17 is NaN"},
             {1, 650, INFINITY, "row 1: logit of id 650 is +inf"},
             {4, -1, 0.0f, "row 4: every logit is -inf: no token can be drawn"}};
  for (auto &b : bad) {
    rows e = r;
    float *l = &e.l[(size_t)(b.row * V)];
    if (b.id >= 0) {
      l[b.id] = b.v;
      l[b.id + 40] = b.v;  // a later one too: the lowest id is named
    } else {
      for (int64_t i = 0; i < V; i++) l[i] = -INFINITY;
    }
    // the CPU's message, from its op
    std::vector<int32_t> ctok((size_t)n);
    std::vector<float> clp((size_t)n);
    srlm_error_clear();
    const srlm_status cst = SRLM_OP(srlm_backend_cpu(), sample,
                                    clean.params(s, ctok.data(), clp.data(), nullptr, e.l.data(), e.seq.data(),
                                                 e.step.data()));
    EXPECT(cst == SRLM_ERR_RANGE, "the CPU op gave %s", srlm_status_name(cst));
    EXPECT_CONTAINS(srlm_error_message(), b.want);
    d.put(clean.dl, e.l);
    OK(d.be.ops->sample(&d.be, clean.params(s, clean.dtok, clean.dlp, clean.dslp, clean.dl, clean.dseq, clean.dstep)));
    char want[160];
    snprintf(want, sizeof want, "%s sample: %s", d.be.name, b.want);
    FAILS(d.be.ops->sync(&d.be), SRLM_ERR_RANGE, want);
    const std::vector<int32_t> tok = d.down(clean.dtok, (size_t)n);
    const std::vector<float> lp = d.down(clean.dlp, (size_t)n), slp = d.down(clean.dslp, (size_t)n);
    EXPECT(tok[b.row] == -1 && isnan(lp[b.row]) && isnan(slp[b.row]), "bad row %lld: token %d logprob %g %g",
           (long long)b.row, tok[b.row], lp[b.row], slp[b.row]);
    for (int64_t i = 0; i < n; i++)
      if (i != b.row)
        EXPECT(tok[i] == tok0[i] && !memcmp(&lp[i], &lp0[i], 4), "row %lld changed next to a bad row", (long long)i);
  }
  // two bad rows: the lower one is named on the simulator (blocks run in order), as on the CPU
  rows e = r;
  e.l[(size_t)(3 * V + 5)] = NAN;
  e.l[(size_t)(1 * V + 9)] = NAN;
  d.put(clean.dl, e.l);
  OK(d.be.ops->sample(&d.be, clean.params(s, clean.dtok, clean.dlp, nullptr, clean.dl, clean.dseq, clean.dstep)));
  FAILS(d.be.ops->sync(&d.be), SRLM_ERR_RANGE, SIM ? "row 1: logit of id 9 is NaN" : "logit of id");
}

}  // namespace

int main() {
  test_grid();
  test_large();
  test_errors();
  TEST_MAIN_END();
}
