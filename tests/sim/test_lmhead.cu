/* The fused LM-head ops of the CUDA backend (cuda/lmhead.cu: lmhead_forward and
 * lmhead_backward) against their CPU twin (src/backend/cpu/lmhead.c), fp32 and bf16, on
 * shapes from 1 x 1 x 1 to V = 151936 and 128256, with the table's chunk plan and with
 * forced small chunks (several row chunks and vocabulary chunks, partial last ones):
 * - logp, lse, dx, dW by the rule against fp64 (device error <= 2x the CPU's + a floor of
 *   2 fp32 ulps of the output's magnitude), rows without a target exactly 0;
 * - the same bits run after run; on the simulator the backward's bits do not depend on the
 *   chunk shape (its GEMMs continue one fma chain through the fp32 accumulators);
 * - data errors named by the next sync with the op's row (in a row chunk past the first):
 *   a target outside [-1, V) (forward), a row without a target but with dlogp != 0
 *   (backward), NaN in the bad row's outputs, the other rows untouched;
 * - the chunk plan for the model's shapes. */
#include "logprob.cuh"
#include "op_test.h"

namespace {

const uint64_t kSeed = 20260301;
const long long kBudget = 32ll << 20;  // lmhead.cu's kChunkElems

struct head_case {
  int64_t N, C, V;
  lmhead_plan plan;  // TC 0: the table's op (its own plan)
};

// The inputs of a case in a dtype, and the fp64 logits of their stored values.
struct head_data {
  int64_t N, C, V;
  srlm_dtype dt;
  std::vector<float> x, w;              // (N, C), (V, C) stored values
  std::vector<unsigned char> xr, wr;    // their bytes in dt
  std::vector<int32_t> tg;              // (N)
  std::vector<double> z;                // (N, V) fp64 logits
};

head_data make_data(const head_case &k, srlm_dtype dt) {
  head_data h;
  h.N = k.N, h.C = k.C, h.V = k.V, h.dt = dt;
  h.x.resize((size_t)(k.N * k.C));
  h.w.resize((size_t)(k.V * k.C));
  for (size_t i = 0; i < h.x.size(); i++) h.x[i] = (float)urand(kSeed, 1, i, -1, 1);
  for (size_t i = 0; i < h.w.size(); i++) h.w[i] = (float)urand(kSeed, 2, i, -1, 1);
  h.xr = as_dtype(h.x, dt);
  h.wr = as_dtype(h.w, dt);
  h.z.assign((size_t)(k.N * k.V), 0.0);
  for (int64_t n = 0; n < k.N; n++)
    for (int64_t v = 0; v < k.V; v++) {
      double s = 0;
      for (int64_t c = 0; c < k.C; c++) s += (double)h.x[n * k.C + c] * h.w[v * k.C + c];
      h.z[n * k.V + v] = s;
    }
  // targets by row: the argmax, none, a random id, the last id
  h.tg.resize((size_t)k.N);
  for (int64_t n = 0; n < k.N; n++) {
    int64_t best = 0;
    for (int64_t v = 1; v < k.V; v++) best = h.z[n * k.V + v] > h.z[n * k.V + best] ? v : best;
    const int64_t pick = (int64_t)urand(kSeed, 3, n, 0, (double)k.V);
    h.tg[n] = (int32_t)(n % 4 == 0 ? best : n % 4 == 1 ? -1 : n % 4 == 2 ? pick : k.V - 1);
  }
  return h;
}

srlm_status fwd(dev_instance &d, const head_case &k, srlm_lmhead_params p) {
  return k.plan.TC ? lmhead_forward_chunks(&d.be, p, k.plan) : d.be.ops->lmhead_forward(&d.be, p);
}
srlm_status bwd(dev_instance &d, lmhead_plan plan, srlm_lmhead_bwd_params p) {
  return plan.TC ? lmhead_backward_chunks(&d.be, p, plan) : d.be.ops->lmhead_backward(&d.be, p);
}

// The widened values of n dtype elements.
std::vector<float> widen(const std::vector<unsigned char> &raw, srlm_dtype dt, size_t n) {
  std::vector<float> v(n);
  srlm_convert(v.data(), SRLM_F32, raw.data(), dt, n);
  return v;
}

void test_case(const head_case &k, srlm_dtype dt) {
  const int64_t N = k.N, C = k.C, V = k.V;
  const size_t es = srlm_dtype_size(dt);
  char what[160];
  snprintf(what, sizeof what, "N=%lld C=%lld V=%lld %s, chunks %s %lld x %lld", (long long)N, (long long)C,
           (long long)V, srlm_dtype_name(dt), k.plan.TC ? "forced" : "of the op",
           (long long)(k.plan.TC ? k.plan.TC : lmhead_plan_for(N, V, kBudget).TC),
           (long long)(k.plan.TC ? k.plan.VC : lmhead_plan_for(N, V, kBudget).VC));
  const int failures = g_test_failures;
  head_data h = make_data(k, dt);
  srlm_backend *cpu = srlm_backend_cpu();
  dev_instance d;

  // ---- forward
  std::vector<float> clogp((size_t)N), clse((size_t)N);
  srlm_lmhead_params cp = {clogp.data(), clse.data(), h.xr.data(), h.wr.data(), h.tg.data(), N, C, V, dt, nullptr};
  OK(SRLM_OP(cpu, lmhead_forward, cp));
  void *dx = d.up(h.xr), *dw = d.up(h.wr);
  int32_t *dtg = d.up(h.tg);
  float *dlogp = d.up<float>(nullptr, (size_t)N), *dlse = d.up<float>(nullptr, (size_t)N);
  srlm_lmhead_params p = {dlogp, dlse, dx, dw, dtg, N, C, V, dt, nullptr};
  OK(fwd(d, k, p));
  const std::vector<float> logp = d.down(dlogp, (size_t)N), lse = d.down(dlse, (size_t)N);
  std::vector<double> rlogp((size_t)N), rlse((size_t)N);
  double mag = 0;
  for (int64_t n = 0; n < N; n++) {
    const double *z = &h.z[(size_t)(n * V)];
    double m = -INFINITY, s = 0;
    for (int64_t v = 0; v < V; v++) m = z[v] > m ? z[v] : m;
    for (int64_t v = 0; v < V; v++) s += exp(z[v] - m);
    rlse[n] = m + log(s);
    rlogp[n] = h.tg[n] < 0 ? 0.0 : (z[h.tg[n]] - m) - log(s);
    mag = fmax(mag, fabs(m) + fabs(rlse[n] - m) + (h.tg[n] < 0 ? 0.0 : fabs(z[h.tg[n]])));
    if (h.tg[n] < 0) EXPECT(logp[n] == 0.0f, "%s: row %lld has no target but logp %g", what, (long long)n, logp[n]);
  }
  char label[200];
  snprintf(label, sizeof label, "%s: logp", what);
  expect_rule(label, logp.data(), clogp.data(), rlogp.data(), (size_t)N, 2 * FLT_EPSILON * mag);
  snprintf(label, sizeof label, "%s: lse", what);
  expect_rule(label, lse.data(), clse.data(), rlse.data(), (size_t)N, 2 * FLT_EPSILON * mag);
  OK(fwd(d, k, p));
  EXPECT(same_bits(d.down(dlogp, (size_t)N), logp) && same_bits(d.down(dlse, (size_t)N), lse),
         "%s: forward rerun gave other bits", what);

  // ---- backward, from the CPU's lse
  std::vector<float> dl((size_t)N), dw0((size_t)(V * C));
  for (int64_t n = 0; n < N; n++) dl[n] = h.tg[n] < 0 ? 0.0f : (float)urand(kSeed, 4, n, -2, 2);
  for (size_t i = 0; i < dw0.size(); i++) dw0[i] = (float)urand(kSeed, 5, i, -1, 1);
  std::vector<unsigned char> cdx_raw((size_t)(N * C) * es);
  std::vector<float> cdw = dw0;
  srlm_lmhead_bwd_params cb = {cdx_raw.data(), cdw.data(), h.xr.data(), h.wr.data(), clse.data(), dl.data(),
                               h.tg.data(), N, C, V, dt, nullptr};
  OK(SRLM_OP(cpu, lmhead_backward, cb));
  const std::vector<float> cdx = widen(cdx_raw, dt, (size_t)(N * C));
  unsigned char *ddx = d.up<unsigned char>(nullptr, (size_t)(N * C) * es);
  float *ddw = d.up(dw0), *dlse_in = d.up(clse), *ddl = d.up(dl);
  srlm_lmhead_bwd_params b = {ddx, ddw, dx, dw, dlse_in, ddl, dtg, N, C, V, dt, nullptr};
  OK(bwd(d, k.plan, b));
  const std::vector<unsigned char> gdx_raw = d.down(ddx, (size_t)(N * C) * es);
  const std::vector<float> gdx = widen(gdx_raw, dt, (size_t)(N * C)), gdw = d.down(ddw, (size_t)(V * C));
  std::vector<double> rdx((size_t)(N * C), 0.0), rdw(dw0.begin(), dw0.end()), mdx((size_t)(N * C), 0.0),
      mdw((size_t)(V * C));
  for (size_t i = 0; i < mdw.size(); i++) mdw[i] = fabs(dw0[i]);
  for (int64_t n = 0; n < N; n++)
    for (int64_t v = 0; v < V; v++) {
      const double g = dl[n] * ((v == h.tg[n] ? 1.0 : 0.0) - exp(h.z[n * V + v] - (double)clse[n]));
      for (int64_t c = 0; c < C; c++) {
        rdx[n * C + c] += g * h.w[v * C + c];
        mdx[n * C + c] += fabs(g * h.w[v * C + c]);
        rdw[v * C + c] += g * h.x[n * C + c];
        mdw[v * C + c] += fabs(g * h.x[n * C + c]);
      }
    }
  double mx = 0, mw = 0;
  for (double m : mdx) mx = fmax(mx, m);
  for (double m : mdw) mw = fmax(mw, m);
  snprintf(label, sizeof label, "%s: dx", what);
  expect_rule(label, gdx.data(), cdx.data(), rdx.data(), rdx.size(), 2 * FLT_EPSILON * mx);
  snprintf(label, sizeof label, "%s: dW", what);
  expect_rule(label, gdw.data(), cdw.data(), rdw.data(), rdw.size(), 2 * FLT_EPSILON * mw);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C && h.tg[n] < 0; c++)
      EXPECT(gdx[n * C + c] == 0.0f, "%s: row %lld has dlogp 0 but dx %g", what, (long long)n, gdx[n * C + c]);
  d.put(ddw, dw0);
  OK(bwd(d, k.plan, b));
  EXPECT(same_bits(d.down(ddx, gdx_raw.size()), gdx_raw) && same_bits(d.down(ddw, gdw.size()), gdw),
         "%s: backward rerun gave other bits", what);

  // ---- kept logits: the forward keeps them, the backward reads them; the same bits, on both
  {
    float *dkeep = d.up<float>(nullptr, (size_t)(N * V));
    srlm_lmhead_params pk = p;
    pk.logits = dkeep;
    OK(fwd(d, k, pk));
    EXPECT(same_bits(d.down(dlogp, (size_t)N), logp) && same_bits(d.down(dlse, (size_t)N), lse),
           "%s: forward keeping its logits gave other bits", what);
    d.put(ddw, dw0);
    srlm_lmhead_bwd_params bk = b;
    bk.logits = dkeep;
    OK(bwd(d, k.plan, bk));
    EXPECT(same_bits(d.down(ddx, gdx_raw.size()), gdx_raw) && same_bits(d.down(ddw, gdw.size()), gdw),
           "%s: backward from the kept logits gave other bits", what);
    std::vector<float> keep((size_t)(N * V)), klogp((size_t)N), klse((size_t)N), kdw = dw0;
    std::vector<unsigned char> kdx_raw(cdx_raw.size());
    srlm_lmhead_params ck = cp;
    ck.logp = klogp.data(), ck.lse = klse.data(), ck.logits = keep.data();
    OK(SRLM_OP(cpu, lmhead_forward, ck));
    srlm_lmhead_bwd_params cbk = cb;
    cbk.dx = kdx_raw.data(), cbk.dw = kdw.data(), cbk.logits = keep.data();
    OK(SRLM_OP(cpu, lmhead_backward, cbk));
    EXPECT(same_bits(klogp, clogp) && same_bits(klse, clse) && same_bits(widen(kdx_raw, dt, (size_t)(N * C)), cdx) &&
               same_bits(kdw, cdw),
           "%s: the CPU twin with kept logits gave other bits", what);
  }
#if SIM
  // The backward's GEMMs are the CPU's fma chains, continued across chunks: any chunk shape
  // gives the same bits.
  const lmhead_plan other = {N > 1 ? N - 1 : 1, V > 7 ? V / 3 + 1 : 1};
  d.put(ddw, dw0);
  OK(bwd(d, other, b));
  EXPECT(same_bits(d.down(ddx, gdx_raw.size()), gdx_raw) && same_bits(d.down(ddw, gdw.size()), gdw),
         "%s: backward with %lld x %lld chunks gave other bits", what, (long long)other.TC, (long long)other.VC);
#endif

  // ---- data errors, in the last row (past the first row chunk when there are several)
  const int64_t r = N - 1;
  if (N >= 2) {
    std::vector<int32_t> bad = h.tg;
    bad[r] = (int32_t)V;
    d.put(dtg, bad);
    OK(fwd(d, k, p));
    char want[128];
    snprintf(want, sizeof want, "lmhead_forward: row %lld: target id %lld out of range [0, %lld)", (long long)r,
             (long long)V, (long long)V);
    FAILS(d.be.ops->sync(&d.be), SRLM_ERR_RANGE, want);
    const std::vector<float> elogp = d.down(dlogp, (size_t)N), else_ = d.down(dlse, (size_t)N);
    EXPECT(isnan(elogp[r]) && isnan(else_[r]), "%s: bad target: logp %g lse %g (expected NaN)", what, elogp[r],
           else_[r]);
    EXPECT(!memcmp(elogp.data(), logp.data(), (size_t)r * 4) && !memcmp(else_.data(), lse.data(), (size_t)r * 4),
           "%s: a bad target changed the other rows", what);
    // backward: no target, yet a gradient
    bad = h.tg;
    bad[r] = -1;
    std::vector<float> bdl = dl;
    bdl[r] = 0.5f;
    d.put(dtg, bad);
    d.put(ddl, bdl);
    d.put(ddw, dw0);
    OK(bwd(d, k.plan, b));
    snprintf(want, sizeof want, "lmhead_backward: row %lld: target id -1 out of range [0, %lld)", (long long)r,
             (long long)V);
    FAILS(d.be.ops->sync(&d.be), SRLM_ERR_RANGE, want);
    const std::vector<float> edx = widen(d.down(ddx, gdx_raw.size()), dt, (size_t)(N * C));
    const std::vector<float> edw = d.down(ddw, (size_t)(V * C));
    int nan_row = 1, others = 1, nan_dw = 1;
    for (int64_t i = 0; i < N * C; i++) {
      if (i / C == r) nan_row &= isnan(edx[i]) != 0;
      else others &= edx[i] == gdx[i];
    }
    for (float v : edw) nan_dw &= isnan(v);
    EXPECT(nan_row && others && nan_dw, "%s: bad backward row: dx row NaN %d, other rows kept %d, dW NaN %d", what,
           nan_row, others, nan_dw);
    d.put(dtg, h.tg);
    d.put(ddl, dl);
  }
  if (g_test_failures == failures) fprintf(stderr, "ok: %s\n", what);
}

void test_plan() {
  struct {
    long long N, V, TC, VC;
  } want[] = {{16384, 151936, 4096, 8192}, {16384, 128256, 4096, 8192}, {2048, 151936, 2048, 16384},
              {200, 151936, 200, 151936},  {1, 151936, 1, 151936},       {5, 300, 5, 300},
              {300, 151936, 300, 106496} /* 13 x 8192 ids: every row in one row chunk */};
  for (auto &w : want) {
    const lmhead_plan p = lmhead_plan_for(w.N, w.V, kBudget);
    EXPECT(p.TC == w.TC && p.VC == w.VC, "plan N=%lld V=%lld: %lld x %lld, expected %lld x %lld", w.N, w.V, p.TC,
           p.VC, w.TC, w.VC);
    EXPECT(p.TC * p.VC <= kBudget, "plan N=%lld V=%lld: %lld logits", w.N, w.V, p.TC * p.VC);
  }
}

}  // namespace

int main() {
  test_plan();
  const head_case cases[] = {
      {1, 1, 1, {0, 0}},        {5, 17, 300, {0, 0}},         {7, 33, 1000, {3, 256}},
      {33, 40, 3000, {32, 1024}}, {9, 24, 20000, {2, 8192}},  {6, 16, 151936, {0, 0}},
      {5, 8, 151936, {4, 8192}},  {4, 8, 128256, {3, 40000}},
  };
  const head_case light_large = {2, 4, 151936, {1, 50000}};  // under a sanitizer, the one large vocabulary
  for (const head_case &k : cases)
    for (srlm_dtype dt : {SRLM_F32, SRLM_BF16})
      if (!kLight || k.V < 20000) test_case(k, dt);
  if (kLight)
    for (srlm_dtype dt : {SRLM_F32, SRLM_BF16}) test_case(light_large, dt);
  TEST_MAIN_END();
}
