/* model parity with Hugging Face transformers on the committed fixtures
 * (tests/fixtures/hf/<name>/: an HF directory plus expected.safetensors written by
 * tests/fixtures/make_hf_fixtures.py in float32, see tests/fixtures/README.md).
 *
 * For each family: logits and log-probs of every sequence within 1e-4 absolute of
 * transformers; the gradient of the mean NLL over all sequences within 1e-4 of each
 * tensor's largest |gradient|; the packed batch of all sequences equals each sequence
 * alone, bit for bit; KV-cache decoding (prefill, then one token per step, all sequences
 * batched in slots of different lengths) gives the full forward's logits (tolerance 1e-5;
 * the design makes them the same bits, which is checked too); a saved-then-reloaded model
 * gives identical logits; 1 vs 2 threads give identical log-probs and gradients. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "srlm/model.h"
#include "model_host.h"
#include "test.h"

#define OK(expr)                                                                    \
  do {                                                                              \
    srlm_status ok_st_ = (expr);                                                    \
    EXPECT(ok_st_ == SRLM_OK, "%s: %s", #expr, srlm_error_message());              \
  } while (0)

enum { MAX_SEQ = 8 };

typedef struct fixture {
  const char *name;
  srlm_st_file *exp;
  int S;
  int32_t *ids[MAX_SEQ];
  int64_t len[MAX_SEQ];
} fixture;

/* A copy of an expected tensor (unaligned in the mapping); NULL when absent. */
static void *get(const fixture *f, const char *name, srlm_st_dtype dt, int64_t *numel) {
  const srlm_st_tensor *t = srlm_st_find(f->exp, name);
  if (!t || t->dtype != dt) {
    EXPECT(0, "%s: expected tensor '%s' (%s) missing", f->name, name, srlm_st_dtype_name(dt));
    return NULL;
  }
  void *p = srlm_xmalloc(t->nbytes ? t->nbytes : 1);
  memcpy(p, t->data, t->nbytes);
  if (numel) *numel = (int64_t)t->numel;
  return p;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (isnan(d)) return INFINITY;
    m = d > m ? d : m;
  }
  return m;
}

/* A packed batch of the given sequences with next-token targets. */
typedef struct packed {
  srlm_batch b;
  int32_t *tokens, *cu, *targets;
} packed;

static packed pack(const fixture *f, const int *which, int n) {
  packed p;
  int64_t T = 0;
  for (int i = 0; i < n; i++) T += f->len[which[i]];
  p.tokens = srlm_xmalloc((size_t)T * sizeof(int32_t));
  p.targets = srlm_xmalloc((size_t)T * sizeof(int32_t));
  p.cu = srlm_xmalloc((size_t)(n + 1) * sizeof(int32_t));
  p.cu[0] = 0;
  for (int i = 0; i < n; i++) {
    const int s = which[i];
    memcpy(p.tokens + p.cu[i], f->ids[s], (size_t)f->len[s] * sizeof(int32_t));
    for (int64_t t = 0; t < f->len[s]; t++) p.targets[p.cu[i] + t] = t + 1 < f->len[s] ? f->ids[s][t + 1] : -1;
    p.cu[i + 1] = p.cu[i] + (int32_t)f->len[s];
  }
  p.b = (srlm_batch){.B = n, .T = T, .tokens = p.tokens, .cu_seqlens = p.cu, .targets = p.targets};
  return p;
}

static void unpack(packed *p) {
  free(p->tokens);
  free(p->cu);
  free(p->targets);
}

static float *all_logits(srlm_model *m, const srlm_batch *b) {
  const int64_t V = srlm_model_get_config(m)->vocab_size;
  int64_t *pos = srlm_xmalloc((size_t)b->T * sizeof *pos);
  for (int64_t t = 0; t < b->T; t++) pos[t] = t;
  float *lg = srlm_xmalloc((size_t)(b->T * V) * sizeof *lg);
  OK(srlm_model_logits(m, b, pos, b->T, lg));
  free(pos);
  return lg;
}

static void check_forward(const fixture *f, srlm_model *m) {
  const int64_t V = srlm_model_get_config(m)->vocab_size;
  double worst_logit = 0, worst_logp = 0;
  for (int i = 0; i < f->S; i++) {
    char name[64];
    snprintf(name, sizeof name, "seq%d.logits", i);
    float *want = get(f, name, SRLM_ST_F32, NULL);
    snprintf(name, sizeof name, "seq%d.logprobs", i);
    float *want_lp = get(f, name, SRLM_ST_F32, NULL);
    if (!want || !want_lp) continue;
    packed p = pack(f, &i, 1);
    float *lg = all_logits(m, &p.b);
    float *lp = srlm_xmalloc((size_t)p.b.T * sizeof *lp);
    OK(srlm_model_logprobs(m, &p.b, lp));
    worst_logit = fmax(worst_logit, max_abs_diff(lg, want, p.b.T * V));
    worst_logp = fmax(worst_logp, max_abs_diff(lp, want_lp, p.b.T - 1));
    EXPECT(lp[p.b.T - 1] == 0.0f, "%s seq%d: the last token has no target, got logp %g", f->name, i,
           (double)lp[p.b.T - 1]);
    free(lg), free(lp), free(want), free(want_lp);
    unpack(&p);
  }
  fprintf(stderr, "  %-16s logits max |diff| %.2e, log-probs %.2e (tol 1e-4)\n", f->name, worst_logit, worst_logp);
  EXPECT(worst_logit <= 1e-4, "%s: logits differ from transformers by %.3e", f->name, worst_logit);
  EXPECT(worst_logp <= 1e-4, "%s: log-probs differ from transformers by %.3e", f->name, worst_logp);
}

/* Log-probs of the packed batch of all sequences vs each alone (bit for bit). */
static void check_packed(const fixture *f, srlm_model *m) {
  int all[MAX_SEQ];
  for (int i = 0; i < f->S; i++) all[i] = f->S - 1 - i; /* reversed: order must not matter either */
  packed p = pack(f, all, f->S);
  float *lp = srlm_xmalloc((size_t)p.b.T * sizeof *lp);
  OK(srlm_model_logprobs(m, &p.b, lp));
  double worst = 0;
  int same = 1;
  for (int k = 0; k < f->S; k++) {
    packed one = pack(f, &all[k], 1);
    float *lp1 = srlm_xmalloc((size_t)one.b.T * sizeof *lp1);
    OK(srlm_model_logprobs(m, &one.b, lp1));
    worst = fmax(worst, max_abs_diff(lp + p.cu[k], lp1, one.b.T));
    same &= memcmp(lp + p.cu[k], lp1, (size_t)one.b.T * sizeof *lp1) == 0;
    free(lp1);
    unpack(&one);
  }
  fprintf(stderr, "  %-16s packed vs one sequence at a time: max |diff| %.2e\n", f->name, worst);
  EXPECT(same, "%s: packed log-probs are not the per-sequence ones (max |diff| %.3e)", f->name, worst);
  free(lp);
  unpack(&p);
}

/* g_t = -1 / N_targets on every target (the fixture's loss: mean NLL over all sequences). */
static float *mean_nll_g(const packed *p) {
  int64_t n = 0;
  for (int64_t t = 0; t < p->b.T; t++) n += p->targets[t] >= 0;
  float *g = srlm_xcalloc((size_t)p->b.T, sizeof *g);
  for (int64_t t = 0; t < p->b.T; t++) g[t] = p->targets[t] >= 0 ? -1.0f / (float)n : 0.0f;
  return g;
}

static float *train_grads(srlm_model *m, const packed *p) {
  float *lp = srlm_xmalloc((size_t)p->b.T * sizeof *lp), *g = mean_nll_g(p);
  OK(srlm_model_zero_grad(m));
  OK(srlm_model_forward_train(m, &p->b, lp));
  OK(srlm_model_backward(m, g));
  const size_t n = srlm_model_num_params(m);
  float *out = srlm_xmalloc(n * sizeof *out);
  memcpy(out, test_g(m), n * sizeof *out);
  free(lp), free(g);
  return out;
}

static void check_grads(const fixture *f, srlm_model *m) {
  int all[MAX_SEQ];
  for (int i = 0; i < f->S; i++) all[i] = i;
  packed p = pack(f, all, f->S);
  float *grads = train_grads(m, &p);
  srlm_tensor_spec *specs;
  size_t n;
  OK(srlm_model_expected_tensors(srlm_model_get_config(m), &specs, &n));
  double worst = 0;
  const char *worst_name = "";
  for (size_t i = 0; i < n; i++) {
    char name[128];
    snprintf(name, sizeof name, "grad.%s", specs[i].name);
    float *want = get(f, name, SRLM_ST_F32, NULL);
    size_t off, numel;
    OK(srlm_model_param_view(m, specs[i].name, &off, &numel));
    if (!want) continue;
    double scale = 0;
    for (size_t e = 0; e < numel; e++) scale = fmax(scale, fabs(want[e]));
    double rel = max_abs_diff(grads + off, want, (int64_t)numel) / (scale > 0 ? scale : 1);
    if (rel > worst) worst = rel, worst_name = specs[i].name;
    EXPECT(rel <= 1e-4, "%s: gradient of %s differs by %.3e of its max |grad| %.3e", f->name, specs[i].name, rel, scale);
    free(want);
  }
  fprintf(stderr, "  %-16s gradients: worst max |diff| / max |grad| %.2e (%s) (tol 1e-4)\n", f->name, worst, worst_name);
  free(specs);
  free(grads);
  unpack(&p);
}

/* All sequences in slots of one cache: the first half of each as a prefill (together),
 * then one token per slot per step while any slot has tokens left. Each step's logits
 * against the full forward's at that position. */
static void check_kv(const fixture *f, srlm_model *m) {
  const int64_t V = srlm_model_get_config(m)->vocab_size;
  float *full[MAX_SEQ];
  int64_t maxlen = 0;
  for (int i = 0; i < f->S; i++) {
    packed p = pack(f, &i, 1);
    full[i] = all_logits(m, &p.b);
    unpack(&p);
    maxlen = f->len[i] > maxlen ? f->len[i] : maxlen;
  }
  srlm_kv_cache *kv = NULL;
  OK(srlm_kv_cache_create(m, f->S + 1, maxlen, &kv));
  if (!kv) return;
  int64_t done[MAX_SEQ] = {0};
  double worst = 0;
  int same = 1, steps = 0;
  float *logits = srlm_xmalloc((size_t)(f->S * V) * sizeof *logits);
  for (;;) {
    int slots[MAX_SEQ], seqs[MAX_SEQ], n = 0;
    int32_t tokens[256], cu[MAX_SEQ + 1] = {0};
    for (int i = 0; i < f->S; i++) {
      if (done[i] == f->len[i]) continue;
      const int64_t take = done[i] == 0 ? (f->len[i] + 1) / 2 : 1;
      memcpy(tokens + cu[n], f->ids[i] + done[i], (size_t)take * sizeof(int32_t));
      cu[n + 1] = cu[n] + (int32_t)take;
      slots[n] = f->S - i; /* slot 0 stays unused */
      seqs[n++] = i;
    }
    if (n == 0) break;
    OK(srlm_model_step(m, kv, n, slots, tokens, cu, logits));
    steps++;
    for (int k = 0; k < n; k++) {
      const int i = seqs[k];
      done[i] += cu[k + 1] - cu[k];
      const float *want = full[i] + (done[i] - 1) * V;
      worst = fmax(worst, max_abs_diff(logits + k * V, want, V));
      same &= memcmp(logits + k * V, want, (size_t)V * sizeof(float)) == 0;
      EXPECT_EQ_INT(srlm_kv_cache_len(kv, slots[k]), done[i]);
    }
  }
  fprintf(stderr, "  %-16s KV-cache decode (%d steps) vs full forward: max |diff| %.2e%s\n", f->name, steps, worst,
          same ? " (same bits)" : "");
  EXPECT(worst <= 1e-5, "%s: KV-cache logits differ from the full forward by %.3e", f->name, worst);
  EXPECT(same, "%s: KV-cache logits are not the full forward's bits (max |diff| %.3e)", f->name, worst);
  /* one more token than a slot holds is an error naming the slot (the longest sequence
   * fills its slot) */
  int slot = 0;
  for (int i = 0; i < f->S; i++)
    if (f->len[i] == maxlen) slot = f->S - i;
  int32_t tok[1] = {0}, cu1[2] = {0, 1};
  EXPECT_EQ_INT(srlm_model_step(m, kv, 1, &slot, tok, cu1, logits), SRLM_ERR_RANGE);
  char want[96];
  snprintf(want, sizeof want, "slot %d: %lld cached + 1 new tokens exceed max_len %lld", slot, (long long)maxlen,
           (long long)maxlen);
  EXPECT_CONTAINS(srlm_error_message(), want);
  free(logits);
  for (int i = 0; i < f->S; i++) free(full[i]);
  srlm_kv_cache_free(kv);
}

static void check_save_reload(const fixture *f, srlm_model *m) {
  const srlm_st_dtype dt = srlm_model_get_config(m)->torch_dtype; /* BF16 weights survive a BF16 save */
  char dir[512], rel[128];
  snprintf(rel, sizeof rel, "saved_%s", f->name);
  test_tmp_path(dir, sizeof dir, rel);
  OK(srlm_model_save(m, dir, dt));
  srlm_model *r = NULL;
  OK(srlm_model_load(dir, srlm_backend_cpu(), SRLM_F32, &r));
  if (!r) return;
  int all[MAX_SEQ];
  for (int i = 0; i < f->S; i++) all[i] = i;
  packed p = pack(f, all, f->S);
  float *a = all_logits(m, &p.b), *b = all_logits(r, &p.b);
  const int64_t n = p.b.T * srlm_model_get_config(m)->vocab_size;
  EXPECT(memcmp(a, b, (size_t)n * sizeof *a) == 0, "%s: reloaded model's logits differ (max |diff| %.3e)", f->name,
         max_abs_diff(a, b, n));
  EXPECT(memcmp(test_w(m), test_w(r), srlm_model_num_params(m) * sizeof(float)) == 0,
         "%s: reloaded parameters differ", f->name);
  free(a), free(b);
  unpack(&p);
  srlm_model_free(r);
}

static void check_threads(const fixture *f, srlm_model *m) {
#ifdef _OPENMP
  int all[MAX_SEQ];
  for (int i = 0; i < f->S; i++) all[i] = i;
  packed p = pack(f, all, f->S);
  const int saved = omp_get_max_threads();
  float *lp[2], *gr[2];
  for (int k = 0; k < 2; k++) {
    omp_set_num_threads(k + 1);
    lp[k] = srlm_xmalloc((size_t)p.b.T * sizeof(float));
    OK(srlm_model_logprobs(m, &p.b, lp[k]));
    gr[k] = train_grads(m, &p);
  }
  omp_set_num_threads(saved);
  EXPECT(memcmp(lp[0], lp[1], (size_t)p.b.T * sizeof(float)) == 0, "%s: log-probs differ with 1 vs 2 threads", f->name);
  EXPECT(memcmp(gr[0], gr[1], srlm_model_num_params(m) * sizeof(float)) == 0, "%s: gradients differ with 1 vs 2 threads",
         f->name);
  for (int k = 0; k < 2; k++) free(lp[k]), free(gr[k]);
  unpack(&p);
#else
  (void)f, (void)m;
#endif
}

static void run_fixture(const char *name) {
  const char *src = getenv("SRLM_SOURCE_DIR");
  char dir[1024], path[1100];
  snprintf(dir, sizeof dir, "%s/tests/fixtures/hf/%s", src ? src : "..", name);
  snprintf(path, sizeof path, "%s/expected.safetensors", dir);
  fixture f = {.name = name};
  OK(srlm_st_open(path, &f.exp));
  if (!f.exp) return;
  int32_t *S = get(&f, "meta.S", SRLM_ST_I32, NULL);
  f.S = S ? S[0] : 0;
  free(S);
  EXPECT(f.S >= 1 && f.S <= MAX_SEQ, "%s: meta.S = %d", name, f.S);
  if (f.S < 1 || f.S > MAX_SEQ) f.S = 0;
  for (int i = 0; i < f.S; i++) {
    char nm[64];
    snprintf(nm, sizeof nm, "seq%d.input_ids", i);
    f.ids[i] = get(&f, nm, SRLM_ST_I32, &f.len[i]);
    if (!f.ids[i]) f.S = i;
  }
  srlm_model *m = NULL;
  OK(srlm_model_load(dir, srlm_backend_cpu(), SRLM_F32, &m));
  if (m && f.S > 0) {
    check_forward(&f, m);
    check_packed(&f, m);
    check_grads(&f, m);
    check_kv(&f, m);
    check_save_reload(&f, m);
    check_threads(&f, m);
  }
  srlm_model_free(m);
  for (int i = 0; i < f.S; i++) free(f.ids[i]);
  srlm_st_close(f.exp);
}

int main(void) {
  static const char *const names[] = {"llama", "llama3_scaled", "llama_tied_bf16", "qwen2", "qwen3", "mistral"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) run_fixture(names[i]);
  TEST_MAIN_END();
}
