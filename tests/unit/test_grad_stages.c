/* grad_stages: the bookkeeping of the gradient reduce overlapped with the backward (model.h
 * srlm_model_grad_stages / srlm_model_on_grads_final, comm.h srlm_comm_bucket):
 * 1. the backward's stages, on tiny llama, qwen2 (biases) and qwen3 (q/k norms) models with an
 *    untied and with a tied LM head: from[]
 *    strictly decreasing to 0, and every tensor (srlm_model_param_view) inside exactly one
 *    stage's range [from[i], from[i - 1]), the one its role says (head and final norm
 *    first, then the layers last to first, the embedding last): the ranges cover every
 *    parameter exactly once, in backward order;
 * 2. armed, a backward (after another micro-batch's, so the gradients accumulate) calls the
 *    hook once per stage in that order, and what [from, n) holds at each call is what the
 *    backward leaves there, bit for bit; a second backward on the same arming is an error,
 *    disarming allows it again;
 * 3. the buckets of n floats in buckets of b, for several n and b: in backward order (from
 *    the top down) they cover [0, n) exactly once, and srlm_comm_buckets_final(from)
 *    counts exactly the leading buckets that lie inside [from, n). */
#include <string.h>

#include "srlm/comm.h"
#include "srlm/hfmodel.h"
#include "srlm/model.h"
#include "test.h"

#define VOCAB 23
#define MAX_STAGES 16

static srlm_model *tiny(srlm_model_type type, int tied) {
  srlm_model_config c;
  srlm_model_config_defaults(&c, type);
  c.vocab_size = VOCAB;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32;
  c.tie_word_embeddings = tied;
  srlm_model *m = NULL;
  srlm_status st = srlm_model_config_finalize(&c, "test");
  if (st == SRLM_OK) st = srlm_model_create(&c, 11, srlm_backend_cpu(), SRLM_F32, &m);
  EXPECT(st == SRLM_OK, "create: %s", srlm_error_message());
  return m;
}

/* The stage a tensor belongs to, from its name: 0 head and final norm, 1 + (L - 1 - l)
 * layer l, L + 1 the embedding. */
static int stage_of(const char *name, int L) {
  if (!strcmp(name, "model.embed_tokens.weight")) return L + 1;
  int l = -1;
  if (sscanf(name, "model.layers.%d.", &l) == 1) return 1 + (L - 1 - l);
  return 0;
}

static void test_stages(srlm_model_type type, int tied) {
  srlm_model *m = tiny(type, tied);
  if (!m) return;
  const srlm_model_config *cfg = srlm_model_get_config(m);
  const int L = (int)cfg->num_hidden_layers;
  const size_t n = srlm_model_num_params(m);
  size_t from[MAX_STAGES];
  const int k = srlm_model_grad_stages(m, from);
  EXPECT_EQ_INT(k, L + 2);
  EXPECT(from[k - 1] == 0, "tied %d: the last stage starts at %zu, not 0", tied, from[k - 1]);
  for (int i = 1; i < k; i++)
    EXPECT(from[i] < from[i - 1], "tied %d: stage %d starts at %zu, not below stage %d's %zu", tied, i, from[i], i - 1,
           from[i - 1]);
  EXPECT(from[0] < n, "tied %d: stage 0 starts at %zu of %zu", tied, from[0], n);
  /* every tensor inside its own stage's range; the ranges' sizes add up to n */
  srlm_tensor_spec *specs = NULL;
  size_t n_specs = 0, covered = 0;
  EXPECT_EQ_INT(srlm_model_expected_tensors(cfg, &specs, &n_specs), SRLM_OK);
  for (size_t i = 0; i < n_specs; i++) {
    size_t off = 0, numel = 0;
    EXPECT_EQ_INT(srlm_model_param_view(m, specs[i].name, &off, &numel), SRLM_OK);
    const int s = stage_of(specs[i].name, L);
    const size_t lo = from[s], hi = s == 0 ? n : from[s - 1];
    EXPECT(off >= lo && off + numel <= hi, "tied %d: %s [%zu, %zu) outside stage %d [%zu, %zu)", tied, specs[i].name,
           off, off + numel, s, lo, hi);
    covered += numel;
  }
  EXPECT(covered == n, "tied %d: the tensors hold %zu of %zu parameters", tied, covered, n);
  free(specs);
  srlm_model_free(m);
}

/* ---- the hook during a backward ---- */

typedef struct snap {
  srlm_model *m;
  size_t n;
  int calls;
  size_t from[MAX_STAGES];
  float *at[MAX_STAGES]; /* (n - from) the gradients [from, n) when the hook was called */
} snap;

static srlm_status on_final(void *ctx, size_t from) {
  snap *s = ctx;
  if (s->calls >= MAX_STAGES) return srlm_error(SRLM_ERR_INTERNAL, "test", "too many stages");
  s->from[s->calls] = from;
  s->at[s->calls] = srlm_xmalloc((s->n - from + 1) * sizeof(float));
  srlm_status st = srlm_model_get_grads(s->m, s->at[s->calls], from, s->n - from);
  s->calls++;
  return st;
}

static srlm_status train_once(srlm_model *m, uint32_t salt) {
  enum { T = 12 };
  int32_t tok[T], tgt[T], cu[3] = {0, 5, T};
  float logp[T], g[T];
  for (int t = 0; t < T; t++) {
    tok[t] = (int32_t)((t * 7 + salt) % VOCAB);
    const int last = t == cu[1] - 1 || t == T - 1;
    tgt[t] = last ? -1 : (int32_t)((t * 5 + 3 * salt) % VOCAB);
    g[t] = last ? 0.0f : (float)(t % 3) - 0.75f;
  }
  srlm_batch b = {.B = 2, .T = T, .tokens = tok, .cu_seqlens = cu, .targets = tgt};
  SRLM_TRY(srlm_model_forward_train(m, &b, logp));
  return srlm_model_backward(m, g);
}

static void test_hook(srlm_model_type type, int tied) {
  srlm_model *m = tiny(type, tied);
  if (!m) return;
  snap s = {.m = m, .n = srlm_model_num_params(m)};
  size_t from[MAX_STAGES];
  const int k = srlm_model_grad_stages(m, from);
  EXPECT_EQ_INT(train_once(m, 1), SRLM_OK); /* an earlier micro-batch: not final yet, no hook */
  srlm_model_on_grads_final(m, on_final, &s);
  EXPECT_EQ_INT(train_once(m, 2), SRLM_OK);
  EXPECT_EQ_INT(s.calls, k);
  float *fin = srlm_xmalloc(s.n * sizeof *fin);
  EXPECT_EQ_INT(srlm_model_get_grads(m, fin, 0, s.n), SRLM_OK);
  for (int i = 0; i < s.calls && i < k; i++) {
    EXPECT(s.from[i] == from[i], "tied %d: call %d announced %zu, stage %d starts at %zu", tied, i, s.from[i], i, from[i]);
    int64_t bad = 0;
    for (size_t j = s.from[i]; j < s.n; j++) bad += memcmp(&s.at[i][j - s.from[i]], &fin[j], sizeof *fin) != 0;
    EXPECT(bad == 0, "tied %d: at stage %d, %lld of the gradients [%zu, %zu) were not final yet", tied, i, (long long)bad,
           s.from[i], s.n);
  }
  /* one backward per arming: a second is the caller's bug, not an accumulation */
  EXPECT_EQ_INT(train_once(m, 3), SRLM_ERR_INTERNAL);
  EXPECT_CONTAINS(srlm_error_message(), "a second backward after the previous one declared the gradients final");
  srlm_error_clear();
  srlm_model_on_grads_final(m, NULL, NULL);
  EXPECT_EQ_INT(train_once(m, 3), SRLM_OK);
  EXPECT_EQ_INT(s.calls, k); /* disarmed: no more calls */
  for (int i = 0; i < s.calls; i++) free(s.at[i]);
  free(fin);
  srlm_model_free(m);
}

/* ---- buckets ---- */

static void test_buckets(void) {
  const int64_t ns[] = {1, 7, 1000, 1001, 30011};
  const int64_t bs[] = {1, 3, 1000, 4096};
  for (size_t a = 0; a < sizeof ns / sizeof *ns; a++) {
    for (size_t c = 0; c < sizeof bs / sizeof *bs; c++) {
      const int64_t n = ns[a], b = bs[c], nb = srlm_comm_buckets_final(n, b, 0);
      EXPECT(nb == (n + b - 1) / b, "n %lld b %lld: %lld buckets", (long long)n, (long long)b, (long long)nb);
      unsigned char *hit = srlm_xcalloc((size_t)n, 1);
      int64_t top = n, bad = 0;
      for (int64_t k = 0; k < nb; k++) {
        int64_t lo, hi;
        srlm_comm_bucket(n, b, k, &lo, &hi);
        bad += hi != top || lo >= hi || hi - lo > b; /* contiguous, from the top down */
        for (int64_t i = lo; i < hi; i++) hit[i]++;
        top = lo;
      }
      EXPECT(top == 0 && bad == 0, "n %lld b %lld: the buckets end at %lld, %lld out of order", (long long)n,
             (long long)b, (long long)top, (long long)bad);
      int64_t twice = 0;
      for (int64_t i = 0; i < n; i++) twice += hit[i] != 1;
      EXPECT(twice == 0, "n %lld b %lld: %lld elements not in exactly one bucket", (long long)n, (long long)b,
             (long long)twice);
      free(hit);
      /* final buckets: exactly the leading ones inside [from, n) */
      for (int64_t from = n; from >= 0; from -= (n / 37 + 1)) {
        const int64_t f = srlm_comm_buckets_final(n, b, from);
        int64_t lo = 0, hi = 0;
        if (f > 0) srlm_comm_bucket(n, b, f - 1, &lo, &hi);
        EXPECT(f == 0 || lo >= from, "n %lld b %lld from %lld: bucket %lld [%lld, %lld) is not final", (long long)n,
               (long long)b, (long long)from, (long long)(f - 1), (long long)lo, (long long)hi);
        if (f < nb) srlm_comm_bucket(n, b, f, &lo, &hi);
        EXPECT(f == nb || lo < from, "n %lld b %lld from %lld: bucket %lld [%lld, %lld) is final but not counted",
               (long long)n, (long long)b, (long long)from, (long long)f, (long long)lo, (long long)hi);
      }
    }
  }
}

int main(void) {
  /* llama; qwen2's q/k/v biases and qwen3's q/k norms are layer tensors too */
  const srlm_model_type types[] = {SRLM_MODEL_LLAMA, SRLM_MODEL_QWEN2, SRLM_MODEL_QWEN3};
  for (size_t t = 0; t < sizeof types / sizeof *types; t++)
    for (int tied = 0; tied < 2; tied++) {
      test_stages(types[t], tied);
      test_hook(types[t], tied);
    }
  test_buckets();
  TEST_MAIN_END();
}
