/* loss ops (backend.h pref_loss and grpo_loss) on the CPU backend against the host
 * losses (losses.h srlm_loss_pref, srlm_loss_grpo) on random packed batches: several
 * pairs or sequences of varied lengths behind prompts of their own, placed in a random
 * order with padding rows, every loss kind and aggregation, with and without
 * reference/old/behavior log-probs, label smoothing, nll_weight, is_cap and normalizers
 * larger than the batch.
 *
 * Tolerance 0: both sides evaluate the same loss_math.h functions on the same doubles
 * (response sums in token order in double, as the trainers form them), so every value,
 * and the float g rounded once from the same double coefficient, must be identical.
 * The one exception is the GRPO batch loss: the op sums it per sequence and the host
 * over the whole batch, the same terms in another association (bound below).
 *
 * Also: g is 0 on every row off the responses (over a NaN-filled buffer); data errors
 * name the pair or sequence and leave g untouched; option errors name the option; and g
 * is dL/dlogp by central differences through the op itself.
 *
 * Seed printed; `test_loss_ops --seed N` replays another. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/backend.h"
#include "srlm/losses.h"
#include "test.h"

static uint64_t g_seed = 20250611u;
static uint64_t g_draw; /* counter of the draws */

static double urand(double lo, double hi) {
  const srlm_philox_out o = srlm_rng_bits(g_seed, 0x1055, (uint32_t)g_draw, (uint32_t)(g_draw >> 32), 0);
  g_draw++;
  return lo + (hi - lo) * srlm_rng_u01d(o.v[0], o.v[1]);
}

static int irand(int lo, int hi) { /* in [lo, hi] */
  return lo + (int)floor(urand(0, hi - lo + 1));
}

/* On a grid of 2^-10, so that +-2^-12 perturbations are exact in float. */
static float grid(double x) { return (float)(floor(x * 1024) / 1024); }

/* ---- a packed batch ---------------------------------------------------------------- */

enum { MAXS = 24, MAXT = 1024 };

/* nseq sequences (prompt of 1..4 rows, then the response), placed in a random order,
 * followed by 0..3 padding rows; logp random on every row. */
typedef struct packed {
  int nseq;
  int64_t T;
  int32_t start[MAXS], len[MAXS];
  int owner[MAXT]; /* the sequence whose response holds the row, -1 for prompts and padding */
  float logp[MAXT];
} packed;

static void pack(packed *b, int nseq, const int32_t *len) {
  int order[MAXS];
  for (int s = 0; s < nseq; s++) order[s] = s;
  for (int s = nseq - 1; s > 0; s--) {
    const int j = irand(0, s), tmp = order[s];
    order[s] = order[j];
    order[j] = tmp;
  }
  b->nseq = nseq;
  int64_t t = 0;
  for (int k = 0; k < nseq; k++) {
    const int s = order[k];
    for (int p = irand(1, 4); p > 0; p--) b->owner[t++] = -1;
    b->start[s] = (int32_t)t;
    b->len[s] = len[s];
    for (int r = 0; r < len[s]; r++) b->owner[t++] = s;
  }
  for (int p = irand(0, 3); p > 0; p--) b->owner[t++] = -1;
  SRLM_CHECK(t <= MAXT, "test batch of %lld rows", (long long)t);
  b->T = t;
  for (int64_t r = 0; r < t; r++) b->logp[r] = grid(urand(-6, -0.05));
}

/* logpi of sequence s as the trainers form it: double, token order. */
static double seq_sum(const packed *b, const float *logp, int s) {
  double sum = 0;
  for (int32_t t = b->start[s]; t < b->start[s] + b->len[s]; t++) sum += (double)logp[t];
  return sum;
}

static void fill_nan(float *g, int64_t n) {
  for (int64_t t = 0; t < n; t++) g[t] = NAN;
}

static int nonzero_rows(const float *g, int64_t T) {
  int n = 0;
  for (int64_t t = 0; t < T; t++) n += g[t] != 0.0f;
  return n;
}

/* Rows off the responses hold exactly 0; returns the number of rows that do not. */
static int off_response_nonzero(const packed *b, const float *g) {
  int bad = 0;
  for (int64_t t = 0; t < b->T; t++) bad += b->owner[t] < 0 && !(g[t] == 0.0f && !signbit(g[t]));
  return bad;
}

/* ---- preference losses ------------------------------------------------------------- */

typedef struct pref_case {
  packed b;
  int n;
  double ref_c[MAXS / 2], ref_r[MAXS / 2];
  int with_ref;
  int soft; /* 1: per-pair weights w (all kinds) and soft labels eps (DPO) below */
  double w[MAXS / 2], eps[MAXS / 2];
  srlm_pref_options o; /* o.norm > 0 */
} pref_case;

static void make_pref(pref_case *c, int n, srlm_pref_options o, int with_ref, int max_len) {
  int32_t len[MAXS] = {0};
  for (int s = 0; s < 2 * n; s++) len[s] = irand(1, max_len);
  pack(&c->b, 2 * n, len);
  c->n = n;
  c->with_ref = with_ref;
  for (int i = 0; i < n; i++) {
    c->ref_c[i] = seq_sum(&c->b, c->b.logp, 2 * i) + urand(-3, 3);
    c->ref_r[i] = seq_sum(&c->b, c->b.logp, 2 * i + 1) + urand(-3, 3);
    c->w[i] = urand(0, 2.5);
    c->eps[i] = urand(0, 1);
  }
  c->soft = 0;
  c->o = o;
}

static srlm_pref_loss_params pref_params(pref_case *c, const float *logp, float *g, double *out) {
  srlm_pref_loss_params p = {
      .g = g, .pair_out = out, .logp = logp, .resp_start = c->b.start, .resp_len = c->b.len,
      .ref_chosen = c->with_ref ? c->ref_c : NULL, .ref_rejected = c->with_ref ? c->ref_r : NULL,
      .n = c->n, .T = c->b.T, .kind = (int)c->o.kind, .beta = c->o.beta,
      .label_smoothing = c->o.label_smoothing, .simpo_gamma = c->o.simpo_gamma,
      .nll_weight = c->o.nll_weight, .norm = c->o.norm,
      .pair_weight = c->soft ? c->w : NULL, .pair_label = c->soft && c->o.kind == SRLM_PREF_DPO ? c->eps : NULL};
  return p;
}

/* The op's loss (the sum of its per-pair terms) at logp, and its g. */
static double pref_op_loss(void *vc, const float *logp, float *g) {
  pref_case *c = vc;
  double out[MAXS / 2 * SRLM_PREF_OUT_COUNT];
  EXPECT_EQ_INT(SRLM_OP(srlm_backend_cpu(), pref_loss, pref_params(c, logp, g, out)), SRLM_OK);
  double l = 0;
  for (int i = 0; i < c->n; i++) l += out[i * SRLM_PREF_OUT_COUNT + SRLM_PREF_OUT_LOSS];
  return l;
}

/* The host loss on pairs [i0, i0 + n) of the case, with the case's sums and normalizer. */
static srlm_status pref_host(const pref_case *c, int i0, int n, double *cc, double *cr, srlm_pref_metrics *m) {
  double pc[MAXS / 2], pr[MAXS / 2];
  int64_t lc[MAXS / 2], lr[MAXS / 2];
  for (int i = 0; i < n; i++) {
    pc[i] = seq_sum(&c->b, c->b.logp, 2 * (i0 + i));
    pr[i] = seq_sum(&c->b, c->b.logp, 2 * (i0 + i) + 1);
    lc[i] = c->b.len[2 * (i0 + i)];
    lr[i] = c->b.len[2 * (i0 + i) + 1];
  }
  srlm_pref_batch hb = {.n = n, .logp_chosen = pc, .logp_rejected = pr,
                        .ref_chosen = c->with_ref ? c->ref_c + i0 : NULL,
                        .ref_rejected = c->with_ref ? c->ref_r + i0 : NULL, .len_chosen = lc, .len_rejected = lr,
                        .weight = c->soft ? c->w + i0 : NULL,
                        .label_smoothing = c->soft && c->o.kind == SRLM_PREF_DPO ? c->eps + i0 : NULL};
  return srlm_loss_pref(&c->o, &hb, cc, cr, m);
}

/* Returns the number of values that differ. */
static int check_pref_case(pref_case *c) {
  const int n = c->n;
  float g[MAXT];
  double out[MAXS / 2 * SRLM_PREF_OUT_COUNT];
  fill_nan(g, c->b.T);
  EXPECT_EQ_INT(SRLM_OP(srlm_backend_cpu(), pref_loss, pref_params(c, c->b.logp, g, out)), SRLM_OK);
  double cc[MAXS / 2], cr[MAXS / 2];
  srlm_pref_metrics all;
  EXPECT(pref_host(c, 0, n, cc, cr, &all) == SRLM_OK, "%s", srlm_error_message());
  int bad = 0;
  srlm_pref_metrics sum = {0};
  for (int i = 0; i < n; i++) {
    const double *o = out + i * SRLM_PREF_OUT_COUNT;
    srlm_pref_metrics one; /* the pair alone: its own terms */
    double c1, r1;
    EXPECT(pref_host(c, i, 1, &c1, &r1, &one) == SRLM_OK, "%s", srlm_error_message());
    const double want[SRLM_PREF_OUT_COUNT] = {
        [SRLM_PREF_OUT_LOSS] = one.loss, [SRLM_PREF_OUT_NLL] = one.nll_sum,
        [SRLM_PREF_OUT_LOGP_CHOSEN] = seq_sum(&c->b, c->b.logp, 2 * i),
        [SRLM_PREF_OUT_LOGP_REJECTED] = seq_sum(&c->b, c->b.logp, 2 * i + 1),
        [SRLM_PREF_OUT_REWARD_CHOSEN] = one.reward_chosen_sum, [SRLM_PREF_OUT_REWARD_REJECTED] = one.reward_rejected_sum,
        [SRLM_PREF_OUT_COEF_CHOSEN] = cc[i], [SRLM_PREF_OUT_COEF_REJECTED] = cr[i]};
    for (int k = 0; k < SRLM_PREF_OUT_COUNT; k++) {
      if (o[k] == want[k]) continue;
      if (bad++ < 5) fprintf(stderr, "  pair %d column %d: op %.17g, host %.17g\n", i, k, o[k], want[k]);
    }
    sum.loss += o[SRLM_PREF_OUT_LOSS];
    sum.nll_sum += o[SRLM_PREF_OUT_NLL];
    sum.reward_chosen_sum += o[SRLM_PREF_OUT_REWARD_CHOSEN];
    sum.reward_rejected_sum += o[SRLM_PREF_OUT_REWARD_REJECTED];
    sum.margin_sum += o[SRLM_PREF_OUT_REWARD_CHOSEN] - o[SRLM_PREF_OUT_REWARD_REJECTED];
    if (c1 != cc[i] || r1 != cr[i]) bad++; /* a pair's coefficients do not depend on the others */
  }
  /* the host's batch sums add the same terms in pair order */
  bad += sum.loss != all.loss || sum.nll_sum != all.nll_sum || sum.reward_chosen_sum != all.reward_chosen_sum ||
         sum.reward_rejected_sum != all.reward_rejected_sum || sum.margin_sum != all.margin_sum;
  for (int64_t t = 0; t < c->b.T; t++) {
    const int s = c->b.owner[t];
    if (s < 0) continue;
    const float want = (float)(s % 2 ? cr[s / 2] : cc[s / 2]);
    if (memcmp(&g[t], &want, sizeof want) != 0 && bad++ < 5)
      fprintf(stderr, "  row %lld (sequence %d): g %.9g, host %.9g\n", (long long)t, s, (double)g[t], (double)want);
  }
  bad += off_response_nonzero(&c->b, g);
  return bad;
}

static void test_pref_against_host(void) {
  static const srlm_pref_loss kinds[] = {SRLM_PREF_DPO, SRLM_PREF_IPO, SRLM_PREF_SIMPO, SRLM_PREF_SFT};
  static const char *names[] = {"dpo", "ipo", "simpo", "sft"};
  static const int sizes[] = {1, 2, 5, 12};
  for (int k = 0; k < 4; k++) {
    int cases = 0, bad = 0;
    for (int with_ref = 0; with_ref < 2; with_ref++) {
      if (!with_ref && (kinds[k] == SRLM_PREF_DPO || kinds[k] == SRLM_PREF_IPO)) continue;
      for (int ls = 0; ls < 3; ls++) { /* 2: per-pair weights (and DPO's soft labels) */
        if (ls == 1 && kinds[k] != SRLM_PREF_DPO) continue;
        for (int nll = 0; nll < 2; nll++)
          for (int big_norm = 0; big_norm < 2; big_norm++)
            for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
              pref_case c;
              srlm_pref_options o = {.kind = kinds[k], .beta = urand(0.05, 2), .label_smoothing = ls ? 0.2 : 0,
                                     .simpo_gamma = urand(0, 1.5), .nll_weight = nll ? 0.7 : 0};
              o.norm = big_norm ? 3 * sizes[z] + 1 : sizes[z];
              make_pref(&c, sizes[z], o, with_ref, 20);
              c.soft = ls == 2;
              const int b = check_pref_case(&c);
              EXPECT(b == 0, "%s pairs %d ref %d eps %g nll %g norm %lld: %d values differ from the host's", names[k],
                     sizes[z], with_ref, o.label_smoothing, o.nll_weight, (long long)o.norm, b);
              bad += b;
              cases++;
            }
      }
    }
    fprintf(stderr, "pref_loss %-6s %3d batches: %d values differ from srlm_loss_pref (tolerance 0)\n", names[k],
            cases, bad);
  }
}

static void test_pref_errors(void) {
  pref_case c;
  srlm_pref_options o = {.kind = SRLM_PREF_IPO, .beta = 0.5, .nll_weight = 1, .norm = 4};
  make_pref(&c, 4, o, 1, 6);
  float g[MAXT];
  double out[4 * SRLM_PREF_OUT_COUNT];
  srlm_backend *be = srlm_backend_cpu();
  /* (sequence, start, length) of a broken response: empty, before row 0, past row T */
  const struct {
    int seq;
    int32_t start, len;
    const char *what;
  } bad[] = {{5, c.b.start[5], 0, "pair 2: the rejected"},
             {2, -3, c.b.len[2], "pair 1: the chosen"},
             {7, (int32_t)c.b.T - 2, 3, "pair 3: the rejected"},
             {0, c.b.start[0], -1, "pair 0: the chosen"}};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    pref_case e = c;
    e.b.start[bad[k].seq] = bad[k].start;
    e.b.len[bad[k].seq] = bad[k].len;
    fill_nan(g, e.b.T);
    EXPECT_EQ_INT(SRLM_OP(be, pref_loss, pref_params(&e, e.b.logp, g, out)), SRLM_ERR_RANGE);
    EXPECT_CONTAINS(srlm_error_message(), bad[k].what);
    EXPECT(isnan(g[0]) && isnan(g[e.b.T - 1]), "g written before the data check failed");
  }
  /* options as srlm_loss_pref checks them */
  pref_case e = c;
  e.o.kind = SRLM_PREF_DPO;
  e.o.label_smoothing = 0.7;
  EXPECT_EQ_INT(SRLM_OP(be, pref_loss, pref_params(&e, e.b.logp, g, out)), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "label_smoothing 0.7");
  e.o.label_smoothing = 0;
  e.o.nll_weight = -1;
  EXPECT_EQ_INT(SRLM_OP(be, pref_loss, pref_params(&e, e.b.logp, g, out)), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "nll_weight");
  e.o.nll_weight = 0;
  e.o.kind = (srlm_pref_loss)9;
  EXPECT_EQ_INT(SRLM_OP(be, pref_loss, pref_params(&e, e.b.logp, g, out)), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "unknown preference loss 9");
  e.o.kind = SRLM_PREF_IPO;
  e.o.beta = 0;
  EXPECT_EQ_INT(SRLM_OP(be, pref_loss, pref_params(&e, e.b.logp, g, out)), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "IPO tau");
  e.o.beta = 0.5;
  e.with_ref = 0;
  EXPECT(SRLM_OP(be, pref_loss, pref_params(&e, e.b.logp, g, out)) != SRLM_OK, "IPO without the reference accepted");
  EXPECT_CONTAINS(srlm_error_message(), "ref_chosen");
  e.o.kind = SRLM_PREF_SIMPO; /* SimPO needs none */
  EXPECT_EQ_INT(SRLM_OP(be, pref_loss, pref_params(&e, e.b.logp, g, out)), SRLM_OK);
  /* no pairs: g is all zeros */
  e.n = 0;
  fill_nan(g, e.b.T);
  EXPECT_EQ_INT(SRLM_OP(be, pref_loss, pref_params(&e, e.b.logp, g, NULL)), SRLM_OK);
  const int nonzero = nonzero_rows(g, e.b.T);
  EXPECT(nonzero == 0, "%d rows of g not zeroed in an empty batch", nonzero);
}

/* Central differences of an op's loss along every row of logp against its g; returns the
 * worst relative error. */
static double check_fd(const char *name, double (*op_loss)(void *c, const float *logp, float *g), void *c,
                       const float *logp, int64_t T) {
  float g[MAXT], scratch[MAXT], lp[MAXT];
  op_loss(c, logp, g);
  memcpy(lp, logp, (size_t)T * sizeof *lp);
  const float h = 1.0f / 4096;
  double worst = 0;
  for (int64_t t = 0; t < T; t++) {
    const float x0 = lp[t];
    lp[t] = x0 + h;
    const double lplus = op_loss(c, lp, scratch);
    lp[t] = x0 - h;
    const double lminus = op_loss(c, lp, scratch);
    lp[t] = x0;
    const double fd = (lplus - lminus) / (2.0 * h);
    const double err = fabs(fd - g[t]) / (fabs(fd) + 1e-3);
    if (err > worst) worst = err;
    EXPECT(err < 1e-5, "%s row %lld: g %.9g, finite difference %.9g", name, (long long)t, (double)g[t], fd);
  }
  return worst;
}

static void check_pref_fd_soft(const char *name, srlm_pref_options o, int with_ref, int soft) {
  pref_case c;
  make_pref(&c, 3, o, with_ref, 6);
  c.soft = soft;
  const double worst = check_fd(name, pref_op_loss, &c, c.b.logp, c.b.T);
  fprintf(stderr, "pref_loss %-22s worst relative FD error %.3g over %lld rows\n", name, worst, (long long)c.b.T);
}

static void check_pref_fd(const char *name, srlm_pref_options o, int with_ref) { check_pref_fd_soft(name, o, with_ref, 0); }

static void test_pref_finite_differences(void) {
  check_pref_fd("dpo", (srlm_pref_options){.kind = SRLM_PREF_DPO, .beta = 0.5, .norm = 3}, 1);
  check_pref_fd("cdpo + nll, norm 7",
                (srlm_pref_options){.kind = SRLM_PREF_DPO, .beta = 1, .label_smoothing = 0.2, .nll_weight = 1,
                                    .norm = 7}, 1);
  check_pref_fd("ipo", (srlm_pref_options){.kind = SRLM_PREF_IPO, .beta = 0.5, .norm = 3}, 1);
  check_pref_fd("simpo", (srlm_pref_options){.kind = SRLM_PREF_SIMPO, .beta = 2, .simpo_gamma = 0.5, .norm = 3}, 0);
  check_pref_fd("sft + nll", (srlm_pref_options){.kind = SRLM_PREF_SFT, .nll_weight = 0.5, .norm = 3}, 0);
  check_pref_fd_soft("dpo w + soft labels + nll",
                     (srlm_pref_options){.kind = SRLM_PREF_DPO, .beta = 0.5, .nll_weight = 1, .norm = 3}, 1, 1);
  check_pref_fd_soft("ipo w", (srlm_pref_options){.kind = SRLM_PREF_IPO, .beta = 0.5, .norm = 3}, 1, 1);
}

/* ---- GRPO -------------------------------------------------------------------------- */

typedef struct grpo_case {
  packed b;
  int n;
  int64_t off[MAXS + 1];
  float old[MAXT], ref[MAXT], beh[MAXT]; /* concatenated per-token arrays (N) */
  double adv[MAXS];
  int with_old, with_ref, with_beh;
  srlm_grpo_options o; /* explicit normalizers */
} grpo_case;

/* A ratio 0.02 or closer to a clip edge of o. */
static int near_edge(double r, const srlm_grpo_options *o) {
  const double hi = o->clip_eps_high > 0 ? o->clip_eps_high : o->clip_eps;
  return fabs(r - (1 - o->clip_eps)) < 0.02 || fabs(r - (1 + hi)) < 0.02;
}

/* Ratios (per token, or per sequence with ratio SEQUENCE) kept 0.02 away from the clip
 * edges, so finite differences never cross a kink. */
static void make_grpo(grpo_case *c, int n, srlm_grpo_options o, int with_old, int with_ref, int with_beh, int max_len) {
  int32_t len[MAXS] = {0};
  for (int s = 0; s < n; s++) len[s] = irand(1, max_len);
  pack(&c->b, n, len);
  c->n = n;
  c->off[0] = 0;
  for (int s = 0; s < n; s++) c->off[s + 1] = c->off[s] + len[s];
  for (int s = 0; s < n; s++) {
    c->adv[s] = urand(-2, 2);
    for (int k = 0; k < len[s]; k++) {
      const int64_t j = c->off[s] + k;
      const double lp = c->b.logp[c->b.start[s] + k];
      double r;
      do r = urand(0.5, 1.5);
      while (near_edge(r, &o));
      c->old[j] = (float)(lp - log(r));
      c->ref[j] = (float)(lp + urand(-1, 1));
      c->beh[j] = (float)(c->old[j] + urand(-1.5, 1.5));
    }
    for (int moved = 0; o.ratio == SRLM_GRPO_RATIO_SEQUENCE && moved < 100; moved++) {
      double m = 0;
      for (int k = 0; k < len[s]; k++) m += c->b.logp[c->b.start[s] + k] - (double)c->old[c->off[s] + k];
      if (!near_edge(exp(m / len[s]), &o)) break;
      for (int k = 0; k < len[s]; k++) c->old[c->off[s] + k] -= 0.0625f; /* the sequence's ratio x e^(1/16) */
    }
  }
  c->with_old = with_old;
  c->with_ref = with_ref;
  c->with_beh = with_beh;
  if (o.norm_seqs == 0) o.norm_seqs = n;
  if (o.norm_tokens == 0) o.norm_tokens = c->off[n];
  c->o = o;
}

static srlm_grpo_loss_params grpo_params(grpo_case *c, const float *logp, float *g, double *out) {
  srlm_grpo_loss_params p = {
      .g = g, .seq_out = out, .logp = logp, .resp_start = c->b.start, .offsets = c->off,
      .logp_old = c->with_old ? c->old : NULL, .logp_ref = c->with_ref ? c->ref : NULL,
      .logp_behavior = c->with_beh ? c->beh : NULL, .advantages = c->adv, .n = c->n, .T = c->b.T,
      .clip_eps = c->o.clip_eps, .beta = c->o.beta, .is_cap = c->o.is_cap, .agg = (int)c->o.agg,
      .clip_eps_high = c->o.clip_eps_high, .ratio = (int)c->o.ratio,
      .l_max = c->o.l_max, .norm_seqs = c->o.norm_seqs, .norm_tokens = c->o.norm_tokens};
  return p;
}

static double grpo_op_loss(void *vc, const float *logp, float *g) {
  grpo_case *c = vc;
  double out[MAXS * SRLM_GRPO_OUT_COUNT];
  EXPECT_EQ_INT(SRLM_OP(srlm_backend_cpu(), grpo_loss, grpo_params(c, logp, g, out)), SRLM_OK);
  double l = 0;
  for (int i = 0; i < c->n; i++) l += out[i * SRLM_GRPO_OUT_COUNT + SRLM_GRPO_OUT_LOSS];
  return l;
}

/* The host loss on sequences [i0, i0 + n) with the case's normalizers; gcat (N) gets g. */
static srlm_status grpo_host(const grpo_case *c, int i0, int n, float *gcat, srlm_grpo_metrics *m) {
  float lp[MAXT];
  int64_t off[MAXS + 1];
  const int64_t base = c->off[i0];
  off[0] = 0;
  for (int i = 0; i < n; i++) {
    const int s = i0 + i;
    off[i + 1] = c->off[s + 1] - base;
    memcpy(lp + off[i], c->b.logp + c->b.start[s], (size_t)c->b.len[s] * sizeof *lp);
  }
  srlm_grpo_batch hb = {.n = n, .offsets = off, .logp = lp, .logp_old = c->with_old ? c->old + base : NULL,
                        .logp_ref = c->with_ref ? c->ref + base : NULL,
                        .logp_behavior = c->with_beh ? c->beh + base : NULL, .advantages = c->adv + i0};
  return srlm_loss_grpo(&c->o, &hb, gcat, m);
}

static int check_grpo_case(grpo_case *c, double *loss_gap, int64_t *clipped, int64_t *truncated) {
  const int n = c->n;
  float g[MAXT], gcat[MAXT];
  double out[MAXS * SRLM_GRPO_OUT_COUNT];
  fill_nan(g, c->b.T);
  EXPECT_EQ_INT(SRLM_OP(srlm_backend_cpu(), grpo_loss, grpo_params(c, c->b.logp, g, out)), SRLM_OK);
  srlm_grpo_metrics all;
  EXPECT(grpo_host(c, 0, n, gcat, &all) == SRLM_OK, "%s", srlm_error_message());
  int bad = 0;
  double total = 0, total_clipped = 0;
  for (int i = 0; i < n; i++) {
    const double *o = out + i * SRLM_GRPO_OUT_COUNT;
    srlm_grpo_metrics one; /* the sequence alone, with the batch's normalizers */
    float g1[MAXT];
    EXPECT(grpo_host(c, i, 1, g1, &one) == SRLM_OK, "%s", srlm_error_message());
    const double want[SRLM_GRPO_OUT_COUNT] = {
        [SRLM_GRPO_OUT_LOSS] = one.loss, [SRLM_GRPO_OUT_KL] = one.kl_sum, [SRLM_GRPO_OUT_RATIO] = one.ratio_sum,
        [SRLM_GRPO_OUT_CLIPPED] = (double)one.clipped, [SRLM_GRPO_OUT_TRUNCATED] = (double)one.is_truncated};
    for (int k = 0; k < SRLM_GRPO_OUT_COUNT; k++) {
      if (o[k] == want[k]) continue;
      if (bad++ < 5) fprintf(stderr, "  sequence %d column %d: op %.17g, host %.17g\n", i, k, o[k], want[k]);
    }
    total += o[SRLM_GRPO_OUT_LOSS];
    total_clipped += o[SRLM_GRPO_OUT_CLIPPED];
    for (int k = 0; k < c->b.len[i]; k++) {
      const float *got = &g[c->b.start[i] + k], *host = &gcat[c->off[i] + k];
      if (memcmp(got, host, sizeof *got) != 0 && bad++ < 5)
        fprintf(stderr, "  sequence %d token %d: g %.9g, host %.9g\n", i, k, (double)*got, (double)*host);
    }
  }
  bad += total_clipped != (double)all.clipped;
  bad += off_response_nonzero(&c->b, g);
  /* the same per-token terms w J_t, summed per sequence then across (op) or in one run
   * (host): each order is within (N - 1) u sum |w J_t| of the exact sum (u = eps / 2), and
   * sum |w J_t| <= 8 here (the weights w sum to at most 1, |J_t| <= 1.5 * 2 * 2 + 0.1) */
  const double tol = (double)(c->off[n] + 1) * DBL_EPSILON * 8;
  EXPECT(fabs(total - all.loss) <= tol, "batch loss %.17g, host %.17g (tol %.3g)", total, all.loss, tol);
  if (fabs(total - all.loss) > *loss_gap) *loss_gap = fabs(total - all.loss);
  *clipped += all.clipped;
  *truncated += all.is_truncated;
  return bad;
}

static void test_grpo_against_host(void) {
  static const char *names[] = {"grpo (seq mean)", "dapo (token mean)", "dr.grpo (fixed len)"};
  static const char *variants[] = {"", " clip_eps_high .35", " gspo ratio"};
  static const int sizes[] = {1, 3, 8, 24};
  for (int v = 0; v < 3; v++)
  for (int agg = 0; agg < 3; agg++) {
    int cases = 0, bad = 0;
    double gap = 0;
    int64_t clipped = 0, truncated = 0;
    for (int inputs = 0; inputs < 8; inputs++) /* old, ref, behavior: each present or not */
      for (int big_norm = 0; big_norm < 2; big_norm++)
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
          const int with_old = inputs & 1, with_ref = (inputs >> 1) & 1, with_beh = (inputs >> 2) & 1;
          srlm_grpo_options o = {.clip_eps = big_norm ? 0.28 : 0.2, .beta = with_ref ? 0.04 : 0,
                                 .agg = (srlm_grpo_agg)agg, .l_max = 16, .is_cap = with_beh ? 2 : 0,
                                 .clip_eps_high = v == 1 ? 0.35 : 0,
                                 .ratio = v == 2 ? SRLM_GRPO_RATIO_SEQUENCE : SRLM_GRPO_RATIO_TOKEN};
          if (big_norm) {
            o.norm_seqs = 3 * sizes[z] + 1;
            o.norm_tokens = 16 * sizes[z] + 5;
          }
          grpo_case c;
          make_grpo(&c, sizes[z], o, with_old, with_ref, with_beh, 15);
          const int b = check_grpo_case(&c, &gap, &clipped, &truncated);
          EXPECT(b == 0, "%s%s: %d seqs old %d ref %d behavior %d norms %lld/%lld: %d values differ", names[agg],
                 variants[v], sizes[z], with_old, with_ref, with_beh, (long long)c.o.norm_seqs, (long long)c.o.norm_tokens, b);
          bad += b;
          cases++;
        }
    EXPECT(clipped > 0 && truncated > 0, "%s%s: no clipped (%lld) or truncated (%lld) tokens", names[agg],
           variants[v], (long long)clipped, (long long)truncated);
    fprintf(stderr, "grpo_loss %-20s%-18s %3d batches: %d values differ from srlm_loss_grpo (tolerance 0); "
            "batch loss gap %.3g; %lld clipped, %lld truncated tokens\n", names[agg], variants[v], cases, bad, gap,
            (long long)clipped, (long long)truncated);
  }
}

static void test_grpo_errors(void) {
  grpo_case c;
  srlm_grpo_options o = {.clip_eps = 0.2, .beta = 0.04, .agg = SRLM_GRPO_AGG_FIXED_LEN, .l_max = 8, .is_cap = 2};
  make_grpo(&c, 5, o, 1, 1, 1, 6);
  float g[MAXT];
  double out[5 * SRLM_GRPO_OUT_COUNT];
  srlm_backend *be = srlm_backend_cpu();
  grpo_case e = c;
  e.b.start[3] = (int32_t)e.b.T - e.b.len[3] + 1; /* one row past the batch */
  fill_nan(g, e.b.T);
  EXPECT_EQ_INT(SRLM_OP(be, grpo_loss, grpo_params(&e, e.b.logp, g, out)), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "sequence 3:");
  EXPECT(isnan(g[0]) && isnan(g[e.b.T - 1]), "g written before the data check failed");
  e = c;
  e.b.start[1] = -1;
  EXPECT_EQ_INT(SRLM_OP(be, grpo_loss, grpo_params(&e, e.b.logp, g, out)), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "sequence 1:");
  e = c;
  e.off[3] = e.off[2]; /* sequence 2 empty, sequence 3 longer */
  EXPECT_EQ_INT(SRLM_OP(be, grpo_loss, grpo_params(&e, e.b.logp, g, out)), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "sequence 2:");
  e = c;
  for (int i = 0; i <= e.n; i++) e.off[i] += 1;
  EXPECT_EQ_INT(SRLM_OP(be, grpo_loss, grpo_params(&e, e.b.logp, g, out)), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "offsets[0] = 1");
  e = c;
  int32_t longest = 0; /* l_max one short of the longest response: its first sequence is named */
  for (int i = 0; i < e.n; i++) longest = e.b.len[i] > longest ? e.b.len[i] : longest;
  int first = 0;
  while (e.b.len[first] != longest) first++;
  e.o.l_max = longest - 1;
  char what[64];
  snprintf(what, sizeof what, "sequence %d: %d tokens exceed l_max %d", first, longest, longest - 1);
  EXPECT_EQ_INT(SRLM_OP(be, grpo_loss, grpo_params(&e, e.b.logp, g, out)), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), what);
  /* options and inputs as srlm_loss_grpo checks them */
  e = c;
  e.o.clip_eps = 1;
  EXPECT_EQ_INT(SRLM_OP(be, grpo_loss, grpo_params(&e, e.b.logp, g, out)), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "clip_eps 1");
  e = c;
  e.o.clip_eps_high = -0.1;
  EXPECT_EQ_INT(SRLM_OP(be, grpo_loss, grpo_params(&e, e.b.logp, g, out)), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "clip_eps_high -0.1");
  e = c;
  e.o.ratio = (srlm_grpo_ratio)5;
  EXPECT_EQ_INT(SRLM_OP(be, grpo_loss, grpo_params(&e, e.b.logp, g, out)), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "unknown GRPO ratio level 5");
  e = c;
  e.o.agg = (srlm_grpo_agg)7;
  EXPECT_EQ_INT(SRLM_OP(be, grpo_loss, grpo_params(&e, e.b.logp, g, out)), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "unknown GRPO aggregation 7");
  e = c;
  e.with_ref = 0;
  EXPECT(SRLM_OP(be, grpo_loss, grpo_params(&e, e.b.logp, g, out)) != SRLM_OK, "beta > 0 without logp_ref accepted");
  EXPECT_CONTAINS(srlm_error_message(), "logp_ref");
  e = c;
  e.with_beh = 0;
  EXPECT(SRLM_OP(be, grpo_loss, grpo_params(&e, e.b.logp, g, out)) != SRLM_OK, "is_cap > 0 without behavior accepted");
  EXPECT_CONTAINS(srlm_error_message(), "logp_behavior");
  /* no sequences: g is all zeros */
  e = c;
  e.n = 0;
  fill_nan(g, e.b.T);
  EXPECT_EQ_INT(SRLM_OP(be, grpo_loss, grpo_params(&e, e.b.logp, g, NULL)), SRLM_OK);
  const int nonzero = nonzero_rows(g, e.b.T);
  EXPECT(nonzero == 0, "%d rows of g not zeroed in an empty batch", nonzero);
}

static void check_grpo_fd(const char *name, srlm_grpo_options o) {
  grpo_case c;
  make_grpo(&c, 4, o, 1, 1, 1, 7);
  float g[MAXT];
  double out[4 * SRLM_GRPO_OUT_COUNT];
  EXPECT_EQ_INT(SRLM_OP(srlm_backend_cpu(), grpo_loss, grpo_params(&c, c.b.logp, g, out)), SRLM_OK);
  double clipped = 0;
  for (int i = 0; i < c.n; i++) clipped += out[i * SRLM_GRPO_OUT_COUNT + SRLM_GRPO_OUT_CLIPPED];
  const double worst = check_fd(name, grpo_op_loss, &c, c.b.logp, c.b.T);
  fprintf(stderr, "grpo_loss %-22s worst relative FD error %.3g over %lld rows (%g of %lld tokens clipped)\n", name,
          worst, (long long)c.b.T, clipped, (long long)c.off[c.n]);
}

static void test_grpo_finite_differences(void) {
  check_grpo_fd("grpo + kl + is cap", (srlm_grpo_options){.clip_eps = 0.2, .beta = 0.04, .is_cap = 2});
  check_grpo_fd("dapo + kl, norms 9/80",
                (srlm_grpo_options){.clip_eps = 0.28, .beta = 0.1, .agg = SRLM_GRPO_AGG_TOKEN_MEAN,
                                    .norm_seqs = 9, .norm_tokens = 80});
  check_grpo_fd("dr.grpo + kl",
                (srlm_grpo_options){.clip_eps = 0.2, .beta = 0.04, .agg = SRLM_GRPO_AGG_FIXED_LEN, .l_max = 12});
  check_grpo_fd("dapo clip-higher .28 + kl",
                (srlm_grpo_options){.clip_eps = 0.2, .clip_eps_high = 0.28, .beta = 0.04,
                                    .agg = SRLM_GRPO_AGG_TOKEN_MEAN});
  check_grpo_fd("gspo + kl + is cap",
                (srlm_grpo_options){.clip_eps = 0.1, .clip_eps_high = 0.15, .beta = 0.04, .is_cap = 1.5,
                                    .ratio = SRLM_GRPO_RATIO_SEQUENCE});
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--seed") == 0) g_seed = strtoull(argv[2], NULL, 10);
  fprintf(stderr, "seed %llu\n", (unsigned long long)g_seed);
  test_pref_against_host();
  test_pref_errors();
  test_pref_finite_differences();
  test_grpo_against_host();
  test_grpo_errors();
  test_grpo_finite_differences();
  TEST_MAIN_END();
}
