/* Generation with the KV cache: greedy continuations token-identical to transformers for
 * every fixture of tests/fixtures/hf (all prompts of a fixture batched together, and one
 * at a time), log-probs equal to a full forward, sampled sequences identical whatever
 * the batch size, the request order and the prefill budget (and equal to a reference
 * loop that runs the full forward for every token), EOS and stop-string stopping with
 * their text (on a model made for a small multi-character tokenizer written here), the
 * input errors, srlm_model_step_sample (the backend samples; logits stay there)
 * against srlm_model_step + the host sampler, and the score position's logits against
 * the full forward. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/generate.h"
#include "srlm/hfmodel.h"
#include "srlm/model.h"
#include "srlm/safetensors.h"
#include "model_host.h"
#include "test.h"
#include "tiny_model.h"

static const char *const k_fixtures[] = {"llama", "llama3_scaled", "llama_tied_bf16", "qwen2", "qwen3", "mistral"};

static const char *fixture_dir(char *buf, size_t n, const char *name) {
  const char *src = getenv("SRLM_SOURCE_DIR");
  snprintf(buf, n, "%s/tests/fixtures/hf/%s", src ? src : "..", name);
  return buf;
}

/* ---- expected.safetensors: the greedy prompts and transformers' continuations ---- */

typedef struct greedy_case {
  int32_t *prompt, *output;
  int64_t n_prompt, n_output;
} greedy_case;

static int32_t *read_i32(const srlm_st_file *f, const char *name, int64_t *n) {
  const srlm_st_tensor *t = srlm_st_find(f, name);
  if (!t || t->dtype != SRLM_ST_I32) {
    EXPECT(0, "%s: no I32 tensor '%s'", srlm_st_file_path(f), name);
    *n = 0;
    return NULL;
  }
  int32_t *v = malloc(t->nbytes + 4);
  memcpy(v, t->data, t->nbytes);
  *n = (int64_t)t->numel;
  return v;
}

static int load_greedy_cases(const char *dir, greedy_case **out) {
  char path[4096];
  snprintf(path, sizeof path, "%s/expected.safetensors", dir);
  srlm_st_file *f;
  if (srlm_st_open(path, &f) != SRLM_OK) {
    EXPECT(0, "%s", srlm_error_message());
    return 0;
  }
  int64_t one;
  int32_t *S = read_i32(f, "meta.S", &one);
  int n = S ? S[0] : 0;
  free(S);
  greedy_case *c = calloc((size_t)n + 1, sizeof *c);
  for (int i = 0; i < n; i++) {
    char name[64];
    snprintf(name, sizeof name, "greedy%d.prompt", i);
    c[i].prompt = read_i32(f, name, &c[i].n_prompt);
    snprintf(name, sizeof name, "greedy%d.output", i);
    c[i].output = read_i32(f, name, &c[i].n_output);
  }
  srlm_st_close(f);
  *out = c;
  return n;
}

static void free_cases(greedy_case *c, int n) {
  for (int i = 0; i < n; i++) free(c[i].prompt), free(c[i].output);
  free(c);
}

static void free_results(srlm_gen_result *r, int n) {
  for (int i = 0; i < n; i++) srlm_gen_result_free(&r[i]);
}

/* "1,2,3" in one of 4 rotating buffers, so a message can show two lists */
static const char *ids_str(const int32_t *ids, int64_t n) {
  static char bufs[4][2048];
  static int which = 0;
  char *buf = bufs[which++ % 4];
  const size_t cap = sizeof bufs[0];
  size_t k = 0;
  buf[0] = 0;
  for (int64_t i = 0; i < n && k + 16 < cap; i++) k += (size_t)snprintf(buf + k, cap - k, i ? ",%d" : "%d", ids[i]);
  return buf;
}

/* Log-probs of the generated tokens from one full forward over prompt + output. */
static double max_logprob_error(srlm_model *m, const int32_t *prompt, int64_t np, const srlm_gen_result *r) {
  int64_t T = np + r->n;
  int32_t *tok = malloc((size_t)T * sizeof *tok), *tgt = malloc((size_t)T * sizeof *tgt);
  float *lp = malloc((size_t)T * sizeof *lp);
  memcpy(tok, prompt, (size_t)np * sizeof *tok);
  memcpy(tok + np, r->ids, (size_t)r->n * sizeof *tok);
  for (int64_t t = 0; t < T; t++) tgt[t] = (t >= np - 1 && t + 1 < T) ? tok[t + 1] : -1;
  int32_t cu[2] = {0, (int32_t)T};
  srlm_batch b = {.B = 1, .T = T, .tokens = tok, .cu_seqlens = cu, .targets = tgt};
  double worst = INFINITY;
  if (srlm_model_logprobs(m, &b, lp) == SRLM_OK) {
    worst = 0;
    for (int64_t i = 0; i < r->n; i++) {
      double d = fabs((double)lp[np - 1 + i] - (double)r->logprobs[i]);
      if (!(d <= worst)) worst = d;
    }
  } else {
    EXPECT(0, "logprobs: %s", srlm_error_message());
  }
  free(tok);
  free(tgt);
  free(lp);
  return worst;
}

/* ---- 1. greedy parity with transformers ---- */

static void test_fixture_greedy(const char *name) {
  char dir[4096];
  fixture_dir(dir, sizeof dir, name);
  greedy_case *cases;
  int S = load_greedy_cases(dir, &cases);
  EXPECT(S > 0, "%s: no greedy cases", name);
  if (S <= 0) return;
  srlm_model *m;
  if (srlm_model_load(dir, srlm_backend_cpu(), SRLM_F32, &m) != SRLM_OK) {
    EXPECT(0, "%s: %s", name, srlm_error_message());
    free_cases(cases, S);
    return;
  }
  srlm_gen_request *req = calloc((size_t)S, sizeof *req);
  int64_t max_new = 0;
  for (int i = 0; i < S; i++) {
    req[i] = (srlm_gen_request){.prompt = cases[i].prompt, .n_prompt = cases[i].n_prompt, .seq_id = (uint64_t)i};
    if (cases[i].n_output > max_new) max_new = cases[i].n_output;
  }
  srlm_gen_result *res = calloc((size_t)S, sizeof *res);
  srlm_generate_params p = srlm_generate_params_default();
  p.sampler.temperature = 0.0f;
  p.max_new_tokens = (int)max_new; /* transformers ran with no EOS stopping */
  const int batches[] = {S, 1};
  for (size_t bi = 0; bi < 2; bi++) {
    p.max_batch = batches[bi];
    srlm_generate_stats stats;
    srlm_status st = srlm_generate(m, &p, S, req, res, &stats);
    EXPECT(st == SRLM_OK, "%s: %s", name, srlm_error_message());
    if (st != SRLM_OK) break;
    double worst_lp = 0;
    for (int i = 0; i < S; i++) {
      int same = res[i].n == cases[i].n_output &&
                 !memcmp(res[i].ids, cases[i].output, (size_t)res[i].n * sizeof(int32_t));
      EXPECT(same, "%s prompt %d (length %lld), max_batch %d: got [%s], transformers [%s]", name, i,
             (long long)cases[i].n_prompt, p.max_batch, ids_str(res[i].ids, res[i].n),
             ids_str(cases[i].output, cases[i].n_output));
      EXPECT(res[i].stop == SRLM_STOP_LENGTH && res[i].text == NULL, "%s prompt %d: stop %s, text %p", name, i,
             srlm_stop_reason_name(res[i].stop), (void *)res[i].text);
      double e = max_logprob_error(m, cases[i].prompt, cases[i].n_prompt, &res[i]);
      if (!(e <= worst_lp)) worst_lp = e;
    }
    EXPECT(worst_lp <= 1e-4, "%s: KV-cache log-probs differ from a full forward by %.3g", name, worst_lp);
    printf("%-16s max_batch %d: %d prompts x %lld tokens match transformers; log-probs vs full forward %.2g; "
           "%lld steps\n", name, p.max_batch, S, (long long)max_new, worst_lp, (long long)stats.steps);
    free_results(res, S);
  }
  free(res);
  free(req);
  srlm_model_free(m);
  free_cases(cases, S);
}

/* ---- 2. sampling does not depend on the batch ---- */

/* The same draws without the KV cache: the full forward's last logits for every token. */
static void reference_sample(srlm_model *m, const srlm_generate_params *p, const srlm_gen_request *r, int32_t *ids,
                             float *lps, int64_t *n_out) {
  const int64_t V = srlm_model_get_config(m)->vocab_size;
  int64_t T = r->n_prompt;
  int32_t *tok = malloc((size_t)(T + p->max_new_tokens) * sizeof *tok);
  int32_t *tgt = malloc((size_t)(T + p->max_new_tokens) * sizeof *tgt);
  float *logits = malloc((size_t)V * sizeof *logits);
  memcpy(tok, r->prompt, (size_t)T * sizeof *tok);
  srlm_sampler *s;
  EXPECT(srlm_sampler_create(&p->sampler, V, &s) == SRLM_OK, "%s", srlm_error_message());
  *n_out = 0;
  for (int step = 0; step < p->max_new_tokens; step++) {
    for (int64_t t = 0; t < T; t++) tgt[t] = -1;
    int32_t cu[2] = {0, (int32_t)T};
    int64_t pos = T - 1;
    srlm_batch b = {.B = 1, .T = T, .tokens = tok, .cu_seqlens = cu, .targets = tgt};
    srlm_sample smp;
    if (srlm_model_logits(m, &b, &pos, 1, logits) != SRLM_OK ||
        srlm_sampler_sample(s, logits, r->seq_id, (uint32_t)step, &smp) != SRLM_OK) {
      EXPECT(0, "reference: %s", srlm_error_message());
      break;
    }
    ids[step] = smp.token;
    lps[step] = smp.logprob;
    tok[T++] = smp.token;
    (*n_out)++;
  }
  srlm_sampler_free(s);
  free(tok);
  free(tgt);
  free(logits);
}

/* n requests (rev: the same, reversed) of random prompts: request i's is first + (i step) %
 * mod ids in [0, V) keyed by (seed, purpose, i, j), in row i of prompts (row stride ld), its
 * sequence id seq0 + i. */
static void random_requests(int n, int64_t V, int first, int step, int mod, uint64_t seed, uint32_t purpose,
                            uint64_t seq0, int32_t *prompts, int ld, srlm_gen_request *req, srlm_gen_request *rev) {
  for (int i = 0; i < n; i++) {
    const int len = first + (i * step) % mod;
    int32_t *row = prompts + (size_t)i * (size_t)ld;
    for (int j = 0; j < len; j++) row[j] = (int32_t)(srlm_rng_bits(seed, purpose, (uint32_t)i, (uint32_t)j, 0).v[0] % V);
    req[i] = (srlm_gen_request){.prompt = row, .n_prompt = len, .seq_id = seq0 + (uint64_t)i};
    rev[n - 1 - i] = req[i];
  }
}

/* Generates the n requests with max_batch n into base, then with max_batch 1, 3, 4, n,
 * 2, prefill budgets 1 and 5 and the requests reversed (rev): every run must give base's
 * samples bit for bit (sampling is keyed per sequence; the slots are independent). */
static void batch_runs(srlm_model *m, srlm_generate_params *p, int n, const srlm_gen_request *req,
                       const srlm_gen_request *rev, srlm_gen_result *base, const char *what) {
  srlm_gen_result other[16];
  p->max_batch = n;
  p->max_step_tokens = 0;
  EXPECT(srlm_generate(m, p, n, req, base, NULL) == SRLM_OK, "%s: %s", what, srlm_error_message());
  struct {
    int max_batch;
    int64_t step_tokens;
    int reversed;
  } runs[] = {{1, 0, 0}, {3, 0, 0}, {4, 0, 1}, {n, 1, 1}, {2, 5, 0}};
  for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
    p->max_batch = runs[k].max_batch;
    p->max_step_tokens = runs[k].step_tokens;
    EXPECT(srlm_generate(m, p, n, runs[k].reversed ? rev : req, other, NULL) == SRLM_OK, "%s: %s", what,
           srlm_error_message());
    int diff = 0;
    for (int i = 0; i < n; i++) {
      const srlm_gen_result *a = &base[i], *b = &other[runs[k].reversed ? n - 1 - i : i];
      if (a->n != b->n || memcmp(a->ids, b->ids, (size_t)a->n * 4) || memcmp(a->logprobs, b->logprobs, (size_t)a->n * 4)) {
        if (!diff++) EXPECT(0, "%s: max_batch %d step budget %lld%s: request %d gave [%s], with max_batch %d [%s]", what,
                            runs[k].max_batch, (long long)runs[k].step_tokens, runs[k].reversed ? " reversed" : "",
                            i, ids_str(b->ids, b->n), n, ids_str(a->ids, a->n));
      }
    }
    EXPECT_EQ_INT(diff, 0);
    free_results(other, n);
  }
  p->max_batch = n;
  p->max_step_tokens = 0;
}

/* srlm_generate's on_done, checked against a run without it. */
typedef struct done_log {
  const srlm_gen_result *base;
  int n, calls[16], mismatch, last, order_differs, fail_at, total;
} done_log;
static srlm_status on_done_check(void *user, int req, srlm_gen_result *res) {
  done_log *d = user;
  if (++d->total == d->fail_at) return srlm_error(SRLM_ERR_CONFIG, "test", "stop here");
  d->calls[req]++;
  const srlm_gen_result *b = &d->base[req];
  d->mismatch += res->n != b->n || memcmp(res->ids, b->ids, (size_t)b->n * 4) ||
                 memcmp(res->logprobs, b->logprobs, (size_t)b->n * 4) || res->stop != b->stop;
  if (req < d->last) d->order_differs = 1;
  d->last = req;
  srlm_gen_result_free(res); /* the callback owns it now */
  return SRLM_OK;
}

static void test_sampling_invariance(void) {
  char dir[4096];
  fixture_dir(dir, sizeof dir, "qwen3");
  srlm_model *m;
  if (srlm_model_load(dir, srlm_backend_cpu(), SRLM_F32, &m) != SRLM_OK) {
    EXPECT(0, "%s", srlm_error_message());
    return;
  }
  const int64_t V = srlm_model_get_config(m)->vocab_size;
  enum { N = 7 };
  int32_t prompts[N][24];
  srlm_gen_request req[N], rev[N];
  random_requests(N, V, 1, 7, 23, 31, 1, 1000, prompts[0], 24, req, rev);
  srlm_generate_params p = srlm_generate_params_default();
  p.sampler = (srlm_sampler_params){.temperature = 1.2f, .top_k = 40, .top_p = 0.95f, .min_p = 0.0f, .seed = 99};
  p.max_new_tokens = 14;
  srlm_gen_result base[N], other[N];
  batch_runs(m, &p, N, req, rev, base, "cpu fp32");
  /* against draws from the full forward, token by token */
  int diff = 0;
  double worst = 0;
  for (int i = 0; i < N; i++) {
    int32_t ids[64];
    float lps[64];
    int64_t n;
    reference_sample(m, &p, &req[i], ids, lps, &n);
    if (n != base[i].n || memcmp(ids, base[i].ids, (size_t)n * 4)) {
      if (!diff++) EXPECT(0, "request %d: KV-cache generation [%s] differs from the full-forward reference", i,
                          ids_str(base[i].ids, base[i].n));
      continue;
    }
    for (int64_t t = 0; t < n; t++) worst = fmax(worst, fabs((double)lps[t] - base[i].logprobs[t]));
  }
  EXPECT_EQ_INT(diff, 0);
  EXPECT(worst <= 1e-4, "sampled log-probs differ from the reference's by %.3g", worst);
  int distinct = 0;
  for (int i = 1; i < N; i++) distinct += base[i].n > 0 && base[0].n > 0 && base[i].ids[0] != base[0].ids[0];
  EXPECT(distinct > 0, "every request drew the same first token");
  printf("sampling: %d requests identical for max_batch 1..%d, reversed order, prefill budgets 1 and 5; "
         "equal to the full-forward reference (log-probs within %.2g)\n", N, N, worst);
  /* on_done: each request once, final, in the step it ends; the callback may take it.
     A third of the vocabulary as EOS ends sequences early, out of request order. */
  free_results(base, N);
  int32_t eos[64];
  for (int k = 0; k < 64; k++) eos[k] = (int32_t)(k * 3 % V);
  p.eos_ids = eos;
  p.n_eos = V / 3 < 64 ? (int)(V / 3) : 64;
  p.max_batch = N;
  EXPECT(srlm_generate(m, &p, N, req, base, NULL) == SRLM_OK, "%s", srlm_error_message());
  done_log dl = {.base = base, .n = N};
  p.on_done = on_done_check;
  p.done_user = &dl;
  p.max_batch = 3;
  p.max_step_tokens = 0;
  EXPECT(srlm_generate(m, &p, N, req, other, NULL) == SRLM_OK, "%s", srlm_error_message());
  for (int i = 0; i < N; i++) EXPECT(dl.calls[i] == 1, "on_done: request %d reported %d times", i, dl.calls[i]);
  EXPECT_EQ_INT(dl.mismatch, 0);
  EXPECT(dl.order_differs, "on_done: requests ended in request order; the test wants them out of order");
  free_results(other, N); /* every entry already freed by the callback: a no-op */
  dl = (done_log){.base = base, .n = N, .fail_at = 3};
  srlm_status st = srlm_generate(m, &p, N, req, other, NULL);
  EXPECT(st == SRLM_ERR_CONFIG && strstr(srlm_error_message(), "stop here"), "on_done's error: %d %s", (int)st,
         srlm_error_message());
  printf("on_done: every request once with its final result, out of request order; its error ends generation\n");
  /* the model's KV budget: room for 2 of the longest sequences gives 2 slots, the same
     samples; less than one is an error naming the longest request */
  p.on_done = NULL;
  p.max_batch = N;
  int64_t longest = 0;
  for (int i = 0; i < N; i++)
    if (req[i].n_prompt + p.max_new_tokens > longest) longest = req[i].n_prompt + p.max_new_tokens;
  srlm_generate_stats free_stats, tight_stats;
  EXPECT(srlm_generate(m, &p, N, req, other, &free_stats) == SRLM_OK, "%s", srlm_error_message());
  free_results(other, N);
  srlm_model_set_kv_budget(m, 2 * longest + 1);
  EXPECT(srlm_generate(m, &p, N, req, other, &tight_stats) == SRLM_OK, "%s", srlm_error_message());
  int budget_diff = 0;
  for (int i = 0; i < N; i++)
    budget_diff += other[i].n != base[i].n || memcmp(other[i].ids, base[i].ids, (size_t)base[i].n * 4) ||
                   memcmp(other[i].logprobs, base[i].logprobs, (size_t)base[i].n * 4);
  EXPECT_EQ_INT(budget_diff, 0);
  EXPECT(tight_stats.steps > free_stats.steps, "KV budget of 2 slots: %lld steps, unbounded %lld",
         (long long)tight_stats.steps, (long long)free_stats.steps);
  free_results(other, N);
  srlm_model_set_kv_budget(m, longest - 1);
  st = srlm_generate(m, &p, N, req, other, NULL);
  EXPECT(st == SRLM_ERR_NOMEM && strstr(srlm_error_message(), "more than the KV-cache budget of"),
         "KV budget below one sequence: %d %s", (int)st, srlm_error_message());
  srlm_model_set_kv_budget(m, 0);
  printf("KV budget: 2 slots' room gives the same samples in %lld steps (unbounded %lld); less than one is refused\n",
         (long long)tight_stats.steps, (long long)free_stats.steps);
  free_results(base, N);
  srlm_model_free(m);
}

/* The same on cuda-sim in bf16: the device sampler, the KV cache in device memory and the
 * tensor-core split-KV decode, whose pieces are sized from each sequence's own length, so
 * the batch never changes a sample there either (what continuous refill relies on). */
static void test_sampling_invariance_sim(void) {
  char dir[4096];
  fixture_dir(dir, sizeof dir, "qwen3");
  srlm_backend *be = NULL;
  srlm_model *m = NULL;
  if (srlm_backend_open("cuda-sim", 0, &be) != SRLM_OK || srlm_model_load(dir, be, SRLM_BF16, &m) != SRLM_OK) {
    EXPECT(0, "cuda-sim bf16: %s", srlm_error_message());
    srlm_backend_close(be);
    return;
  }
  const int64_t V = srlm_model_get_config(m)->vocab_size;
  enum { N = 6 };
  int32_t prompts[N][80];
  srlm_gen_request req[N], rev[N];
  random_requests(N, V, 3, 29, 77, 37, 2, 500, prompts[0], 80, req, rev); /* up to 79 tokens: past one 64-key piece */
  srlm_generate_params p = srlm_generate_params_default();
  p.sampler = (srlm_sampler_params){.temperature = 1.0f, .top_k = 0, .top_p = 0.9f, .min_p = 0.0f, .seed = 5};
  p.max_new_tokens = 8;
  srlm_gen_result base[N];
  batch_runs(m, &p, N, req, rev, base, "cuda-sim bf16");
  printf("sampling on cuda-sim bf16: %d requests identical for max_batch 1..%d, reversed, prefill budgets 1 and 5\n", N, N);
  free_results(base, N);
  srlm_model_free(m);
  EXPECT_EQ_INT(srlm_backend_close(be), SRLM_OK);
}

/* ---- 3. EOS ---- */

static void test_eos(void) {
  char dir[4096];
  fixture_dir(dir, sizeof dir, "llama");
  greedy_case *cases;
  int S = load_greedy_cases(dir, &cases);
  srlm_model *m;
  if (S < 2 || srlm_model_load(dir, srlm_backend_cpu(), SRLM_F32, &m) != SRLM_OK) {
    EXPECT(0, "%s", srlm_error_message());
    free_cases(cases, S);
    return;
  }
  srlm_gen_request req[2];
  for (int i = 0; i < 2; i++)
    req[i] = (srlm_gen_request){.prompt = cases[i].prompt, .n_prompt = cases[i].n_prompt, .seq_id = (uint64_t)i};
  srlm_generate_params p = srlm_generate_params_default();
  p.sampler.temperature = 0.0f;
  p.max_new_tokens = 12;
  p.max_batch = 2;
  /* EOS = a token transformers' continuation of prompt 0 has at position 4 */
  int32_t eos[2] = {-5, cases[0].output[4]};
  int64_t first = 0;
  while (cases[0].output[first] != eos[1]) first++;
  p.eos_ids = eos;
  p.n_eos = 2;
  srlm_gen_result res[2];
  EXPECT(srlm_generate(m, &p, 2, req, res, NULL) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(res[0].stop == SRLM_STOP_EOS && res[0].stop_index == 1, "stop %s index %d", srlm_stop_reason_name(res[0].stop),
         res[0].stop_index);
  EXPECT(res[0].n == first + 1 && !memcmp(res[0].ids, cases[0].output, (size_t)(first + 1) * 4),
         "with EOS %d: got [%s], expected the first %lld tokens of transformers' continuation (EOS kept)", eos[1],
         ids_str(res[0].ids, res[0].n), (long long)first + 1);
  /* the other sequence stops at its own first EOS, or runs to the length */
  int64_t f1 = 0;
  while (f1 < cases[1].n_output && cases[1].output[f1] != eos[1]) f1++;
  int64_t want1 = f1 < cases[1].n_output ? f1 + 1 : cases[1].n_output;
  EXPECT(res[1].n == want1 && !memcmp(res[1].ids, cases[1].output, (size_t)want1 * 4), "prompt 1: got [%s]",
         ids_str(res[1].ids, res[1].n));
  EXPECT(res[1].stop == (f1 < cases[1].n_output ? SRLM_STOP_EOS : SRLM_STOP_LENGTH), "prompt 1: stop %s",
         srlm_stop_reason_name(res[1].stop));
  free_results(res, 2);
  /* max_new_tokens 0: nothing, and no model step */
  p.max_new_tokens = 0;
  srlm_generate_stats stats;
  EXPECT(srlm_generate(m, &p, 2, req, res, &stats) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(res[0].n == 0 && res[1].n == 0 && res[0].stop == SRLM_STOP_LENGTH && stats.steps == 0,
         "max_new_tokens 0: %lld and %lld tokens, %lld steps", (long long)res[0].n, (long long)res[1].n,
         (long long)stats.steps);
  free_results(res, 2);
  srlm_model_free(m);
  free_cases(cases, S);
}

/* ---- 4. stop strings and text, on a tokenizer of multi-character tokens ---- */

/* A byte-level BPE tokenizer whose tokens are 1 to 4 characters, and <|end|> (id 11). */
static const char k_tokenizer_json[] =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
    "\"added_tokens\":[{\"id\":11,\"content\":\"<|end|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true}],"
    "\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
    "\"post_processor\":null,"
    "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
    "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":false,"
    "\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"d\":3,\"x\":4,\"ab\":5,\"cd\":6,\"abcd\":7,\"bc\":8,\"xa\":9,\"dx\":10,"
    "\"<|end|>\":11},"
    "\"merges\":[\"a b\",\"c d\",\"ab cd\",\"b c\",\"x a\",\"d x\"]}}";

static srlm_model *tiny_model(int64_t V, uint64_t seed) {
  srlm_model_config cfg;
  srlm_model_config_defaults(&cfg, SRLM_MODEL_LLAMA);
  cfg.vocab_size = V;
  cfg.hidden_size = 32;
  cfg.intermediate_size = 64;
  cfg.num_hidden_layers = 2;
  cfg.num_attention_heads = 4;
  cfg.num_key_value_heads = 2;
  cfg.max_position_embeddings = 256;
  srlm_model *m = NULL;
  if (srlm_model_config_finalize(&cfg, "test") != SRLM_OK || srlm_model_create(&cfg, seed, srlm_backend_cpu(), SRLM_F32, &m) != SRLM_OK) {
    EXPECT(0, "tiny model: %s", srlm_error_message());
    return NULL;
  }
  /* sharpen the random init so continuations vary instead of repeating one token */
  size_t off, numel;
  if (srlm_model_param_view(m, "lm_head.weight", &off, &numel) == SRLM_OK)
    for (size_t i = 0; i < numel; i++) test_w(m)[off + i] *= 300.0f;
  return m;
}

/* Expected result of stopping on `stop` given the unstopped greedy run: the first
 * occurrence of any stop string in the text (the earliest end wins), the token that
 * completes it, the text through it. Returns the stop index or -1. */
static int expect_stop(const srlm_tokenizer *tok, const srlm_gen_result *full, const char *const *stop, int n_stop,
                       int64_t *n_ids, size_t *text_len) {
  size_t *ends = malloc((size_t)full->n * sizeof *ends), at = 0;
  for (int64_t i = 0; i < full->n; i++) {
    const char *b;
    size_t len;
    EXPECT(srlm_tokenizer_token_bytes(tok, full->ids[i], &b, &len) == SRLM_OK, "%s", srlm_error_message());
    ends[i] = (at += len);
  }
  int best = -1;
  size_t best_end = 0;
  for (int k = 0; k < n_stop; k++) {
    const char *hit = memmem(full->text, full->text_len, stop[k], strlen(stop[k]));
    if (!hit) continue;
    size_t e = (size_t)(hit - full->text) + strlen(stop[k]);
    if (best < 0 || e < best_end) best = k, best_end = e;
  }
  if (best >= 0) {
    int64_t j = 0;
    while (ends[j] < best_end) j++;
    *n_ids = j + 1;
    *text_len = best_end;
  } else {
    *n_ids = full->n;
    *text_len = full->text_len;
  }
  free(ends);
  return best;
}

static void test_stop_strings(void) {
  char dir[2048], path[4096];
  test_tmp_path(dir, sizeof dir, "stoptok");
  EXPECT(srlm_mkdirs(dir) == SRLM_OK, "%s", srlm_error_message());
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  EXPECT(srlm_write_file_atomic(path, k_tokenizer_json, sizeof k_tokenizer_json - 1) == SRLM_OK, "%s",
         srlm_error_message());
  srlm_tokenizer *tok;
  if (srlm_tokenizer_load(dir, &tok) != SRLM_OK) {
    EXPECT(0, "%s", srlm_error_message());
    return;
  }
  srlm_model *m = tiny_model(12, 5);
  if (!m) return;
  enum { N = 4 };
  int32_t prompts[N][3] = {{0, 1, 2}, {7}, {4, 9}, {10, 3, 6}};
  srlm_gen_request req[N];
  for (int i = 0; i < N; i++)
    req[i] = (srlm_gen_request){.prompt = prompts[i], .n_prompt = i == 1 ? 1 : (i == 2 ? 2 : 3), .seq_id = (uint64_t)i};
  srlm_generate_params p = srlm_generate_params_default();
  p.sampler.temperature = 0.0f;
  p.max_new_tokens = 24;
  p.max_batch = 3;
  p.tok = tok;
  srlm_gen_result full[N];
  EXPECT(srlm_generate(m, &p, N, req, full, NULL) == SRLM_OK, "%s", srlm_error_message());
  /* the text is the decoded ids (no EOS configured) */
  int multi = 0;
  for (int i = 0; i < N; i++) {
    char *want;
    size_t wl;
    EXPECT(srlm_tokenizer_decode(tok, full[i].ids, (size_t)full[i].n, &want, &wl) == SRLM_OK, "%s", srlm_error_message());
    EXPECT(full[i].text && wl == full[i].text_len && !memcmp(want, full[i].text, wl), "request %d: text '%s', decoded '%s'",
           i, full[i].text ? full[i].text : "(null)", want);
    free(want);
    for (int64_t t = 0; t < full[i].n; t++) multi += full[i].ids[t] >= 5 && full[i].ids[t] <= 10;
    printf("request %d: %s\n", i, full[i].text);
  }
  EXPECT(multi > 0, "no multi-character token was generated: overhang cases are not exercised");

  /* stop strings taken from the generated text: every start and length 1..3, so some
   * end inside a token (the rest of that token is cut from the text) */
  int checked = 0, cut_inside = 0, bad = 0;
  for (int i = 0; i < N; i++) {
    for (size_t start = 0; start + 1 < full[i].text_len && start < 12; start += 2) {
      for (size_t len = 1; len <= 3 && start + len <= full[i].text_len; len++) {
        char s1[8] = {0};
        memcpy(s1, full[i].text + start, len);
        const char *stops[2] = {"zz", s1}; /* "zz" never occurs */
        int64_t want_n;
        size_t want_len;
        int want_k = expect_stop(tok, &full[i], stops, 2, &want_n, &want_len);
        srlm_generate_params q = p;
        q.stop = stops;
        q.n_stop = 2;
        srlm_gen_result r[N];
        EXPECT(srlm_generate(m, &q, 1, &req[i], &r[i], NULL) == SRLM_OK, "%s", srlm_error_message());
        int ok = r[i].n == want_n && !memcmp(r[i].ids, full[i].ids, (size_t)want_n * 4) && r[i].text_len == want_len &&
                 !memcmp(r[i].text, full[i].text, want_len) && r[i].stop == SRLM_STOP_STRING && r[i].stop_index == want_k;
        if (!ok && !bad++)
          EXPECT(0, "request %d, stop '%s' in '%s': got %lld ids, text '%.*s', stop %s %d; expected %lld ids, "
                 "text '%.*s', stop index %d", i, s1, full[i].text, (long long)r[i].n, (int)r[i].text_len, r[i].text,
                 srlm_stop_reason_name(r[i].stop), r[i].stop_index, (long long)want_n, (int)want_len, full[i].text, want_k);
        size_t tok_end = 0;
        for (int64_t t = 0; t < want_n; t++) {
          const char *b;
          size_t bl;
          srlm_tokenizer_token_bytes(tok, full[i].ids[t], &b, &bl);
          tok_end += bl;
        }
        cut_inside += tok_end > want_len;
        checked++;
        srlm_gen_result_free(&r[i]);
      }
    }
  }
  EXPECT_EQ_INT(bad, 0);
  EXPECT(cut_inside > 0, "no stop string ended inside a token");
  printf("stop strings: %d cases, %d cut inside the completing token\n", checked, cut_inside);

  /* two stop strings: the one that ends first wins, whatever its index */
  if (full[0].text_len >= 4) {
    char early[3] = {full[0].text[0], full[0].text[1], 0}, late[3] = {full[0].text[2], full[0].text[3], 0};
    const char *stops[2] = {late, early};
    int64_t want_n;
    size_t want_len;
    int want_k = expect_stop(tok, &full[0], stops, 2, &want_n, &want_len);
    srlm_generate_params q = p;
    q.stop = stops;
    q.n_stop = 2;
    srlm_gen_result r[N];
    EXPECT(srlm_generate(m, &q, N, req, r, NULL) == SRLM_OK, "%s", srlm_error_message());
    EXPECT(r[0].stop_index == want_k && r[0].text_len == want_len, "two stop strings: index %d len %zu, expected %d %zu",
           r[0].stop_index, r[0].text_len, want_k, want_len);
    free_results(r, N);
  }

  /* EOS: kept in ids, not in the text; the stream's text so far is complete */
  {
    int32_t eos = full[0].n > 3 ? full[0].ids[3] : 0;
    int64_t first = 0;
    while (full[0].ids[first] != eos) first++;
    srlm_generate_params q = p;
    q.eos_ids = &eos;
    q.n_eos = 1;
    srlm_gen_result r[N];
    EXPECT(srlm_generate(m, &q, N, req, r, NULL) == SRLM_OK, "%s", srlm_error_message());
    char *want;
    size_t wl;
    EXPECT(srlm_tokenizer_decode(tok, full[0].ids, (size_t)first, &want, &wl) == SRLM_OK, "%s", srlm_error_message());
    EXPECT(r[0].n == first + 1 && r[0].stop == SRLM_STOP_EOS && r[0].text_len == wl && !memcmp(r[0].text, want, wl),
           "EOS %d: %lld ids, text '%s'; expected %lld ids, text '%s'", eos, (long long)r[0].n, r[0].text,
           (long long)first + 1, want);
    free(want);
    free_results(r, N);
  }
  free_results(full, N);

  /* errors */
  srlm_generate_params q = p;
  const char *empty[1] = {""};
  q.stop = empty;
  q.n_stop = 1;
  srlm_gen_result r[N];
  EXPECT(srlm_generate(m, &q, N, req, r, NULL) == SRLM_ERR_CONFIG, "empty stop string accepted");
  q = p;
  q.tok = NULL;
  const char *one[1] = {"a"};
  q.stop = one;
  q.n_stop = 1;
  EXPECT(srlm_generate(m, &q, N, req, r, NULL) == SRLM_ERR_CONFIG, "stop string without a tokenizer accepted");
  EXPECT_CONTAINS(srlm_error_message(), "stop strings need a tokenizer");
  q = p;
  q.max_batch = 0;
  EXPECT(srlm_generate(m, &q, N, req, r, NULL) == SRLM_ERR_CONFIG, "max_batch 0 accepted");
  q = p;
  q.sampler.top_p = 2.0f;
  EXPECT(srlm_generate(m, &q, N, req, r, NULL) == SRLM_ERR_CONFIG, "top_p 2 accepted");
  int32_t bad_ids[2] = {3, 12};
  srlm_gen_request bad_req[2] = {req[0], {.prompt = bad_ids, .n_prompt = 2, .seq_id = 9}};
  EXPECT(srlm_generate(m, &p, 2, bad_req, r, NULL) == SRLM_ERR_RANGE, "id 12 accepted (V = 12)");
  EXPECT_CONTAINS(srlm_error_message(), "request 1: prompt id 12 at position 1 is out of range (vocabulary 0..11)");
  bad_req[1].n_prompt = 0;
  EXPECT(srlm_generate(m, &p, 2, bad_req, r, NULL) == SRLM_ERR_RANGE, "empty prompt accepted");
  EXPECT_CONTAINS(srlm_error_message(), "request 1: empty prompt");
  srlm_model_free(m);
  srlm_tokenizer_free(tok);
}

/* ---- 5. srlm_model_step_sample against srlm_model_step + the host sampler ---- */

/* Same tokens and log-probs, bit for bit, greedy and sampled, at prefill and decode; 30
 * slots at V = 151936 make the LM head sample in two chunks of rows (27 + 3). */
static void test_step_sample(void) {
  enum { N = 30 };
  const int64_t V = 151936;
  srlm_model *m = tiny_model_with_vocab(V);
  if (!m) return;
  srlm_kv_cache *ka = NULL, *kb = NULL;
  EXPECT(srlm_kv_cache_create(m, N, 8, &ka) == SRLM_OK && srlm_kv_cache_create(m, N, 8, &kb) == SRLM_OK, "%s",
         srlm_error_message());
  float *logits = malloc((size_t)N * (size_t)V * sizeof *logits);
  const srlm_sampler_params settings[] = {{.temperature = 0.0f, .top_p = 1.0f},
                                          {.temperature = 0.8f, .top_k = 40, .top_p = 0.9f, .min_p = 0.02f, .seed = 3}};
  int diff = 0, steps = 0;
  for (size_t c = 0; c < 2 && ka && kb; c++) {
    srlm_sampler *sm;
    EXPECT(srlm_sampler_create(&settings[c], V, &sm) == SRLM_OK, "%s", srlm_error_message());
    int slots[N];
    int32_t tok[2 * N], cu[N + 1];
    uint64_t seq[N];
    uint32_t step[N];
    cu[0] = 0;
    for (int i = 0; i < N; i++) {
      srlm_kv_cache_reset(ka, i);
      srlm_kv_cache_reset(kb, i);
      slots[i] = N - 1 - i;
      tok[2 * i] = (int32_t)(srlm_rng_bits(5, 6, (uint32_t)i, 0, 0).v[0] % V);
      tok[2 * i + 1] = (int32_t)(srlm_rng_bits(5, 6, (uint32_t)i, 1, 0).v[0] % V);
      cu[i + 1] = 2 * (i + 1);
      seq[i] = 500 + (uint64_t)i * 3;
      step[i] = 0;
    }
    for (int s = 0; s < 3; s++, steps++) { /* a prefill of 2 tokens, then two decode steps */
      srlm_sample a[N], b[N];
      if (srlm_model_step_sample(m, ka, N, slots, tok, cu, &settings[c], seq, step, a) != SRLM_OK ||
          srlm_model_step(m, kb, N, slots, tok, cu, logits) != SRLM_OK) {
        EXPECT(0, "step %d: %s", s, srlm_error_message());
        break;
      }
      for (int i = 0; i < N; i++) {
        EXPECT(srlm_sampler_sample(sm, logits + (size_t)i * (size_t)V, seq[i], step[i], &b[i]) == SRLM_OK, "%s",
               srlm_error_message());
        if (a[i].token != b[i].token || memcmp(&a[i].logprob, &b[i].logprob, 4) ||
            memcmp(&a[i].sample_logprob, &b[i].sample_logprob, 4)) {
          if (!diff++) EXPECT(0, "T=%g step %d row %d: step_sample %d %.9g %.9g, step + sampler %d %.9g %.9g",
                              (double)settings[c].temperature, s, i, a[i].token, (double)a[i].logprob,
                              (double)a[i].sample_logprob, b[i].token, (double)b[i].logprob, (double)b[i].sample_logprob);
        }
        tok[i] = a[i].token;
        cu[i + 1] = i + 1;
        step[i]++;
      }
    }
    srlm_sampler_free(sm);
  }
  EXPECT_EQ_INT(diff, 0);
  printf("step_sample: %d steps x %d slots at V=%lld (two head chunks) equal step + host sampler\n", steps, N,
         (long long)V);
  free(logits);
  srlm_kv_cache_free(ka);
  srlm_kv_cache_free(kb);
  srlm_model_free(m);
}

/* The score position (generate.h's score_ids): each result's logits of the watched ids
 * are the bits of a full forward over prompt + its tokens (a final EOS left out) at the
 * last position, its score_token that row's lowest argmax (greedy), and the ids, stops
 * and log-probs are those of a run without score ids; for an EOS stop, a length stop,
 * max_new_tokens 0, at batch 1 and 3, fp32 and bf16, ids close together (one copy per
 * row) and far apart (one per id). */
static void test_score_position(void) {
  static const char *const fx[] = {"llama", "llama_tied_bf16"};
  for (int f = 0; f < 2; f++) {
    char dir[4096];
    fixture_dir(dir, sizeof dir, fx[f]);
    greedy_case *cases;
    const int S = load_greedy_cases(dir, &cases);
    srlm_model *m;
    if (S < 3 || srlm_model_load(dir, srlm_backend_cpu(), f ? SRLM_BF16 : SRLM_F32, &m) != SRLM_OK) {
      EXPECT(0, "%s: %s", fx[f], srlm_error_message());
      free_cases(cases, S);
      continue;
    }
    const int64_t V = srlm_model_get_config(m)->vocab_size;
    const int32_t near[5] = {7, 3, 4, 5, 6}, far[3] = {(int32_t)V - 1, 0, (int32_t)(V / 2)};
    srlm_gen_request req[3];
    for (int i = 0; i < 3; i++)
      req[i] = (srlm_gen_request){.prompt = cases[i].prompt, .n_prompt = cases[i].n_prompt, .seq_id = (uint64_t)i};
    int32_t eos = cases[0].output[3]; /* request 0 stops by EOS, the others likely by length */
    for (int v = 0; v < 4; v++) {
      srlm_generate_params p = srlm_generate_params_default();
      p.sampler.temperature = 0.0f;
      p.max_new_tokens = v == 3 ? 0 : 10;
      p.max_batch = v == 1 ? 1 : 3;
      p.eos_ids = &eos;
      p.n_eos = 1;
      srlm_gen_result plain[3], res[3];
      EXPECT(srlm_generate(m, &p, 3, req, plain, NULL) == SRLM_OK, "%s", srlm_error_message());
      p.score_ids = v == 2 ? far : near;
      p.n_score = v == 2 ? 3 : 5;
      EXPECT(srlm_generate(m, &p, 3, req, res, NULL) == SRLM_OK, "%s", srlm_error_message());
      for (int i = 0; i < 3; i++) {
        const srlm_gen_result *r = &res[i];
        EXPECT(r->n == plain[i].n && r->stop == plain[i].stop &&
                   (r->n == 0 || (!memcmp(r->ids, plain[i].ids, (size_t)r->n * 4) &&
                                  !memcmp(r->logprobs, plain[i].logprobs, (size_t)r->n * 4))),
               "%s case %d request %d: the score position changed the continuation", fx[f], v, i);
        const int64_t k = r->stop == SRLM_STOP_EOS ? r->n - 1 : r->n, T = cases[i].n_prompt + k;
        int32_t *tok = malloc((size_t)T * sizeof *tok);
        memcpy(tok, cases[i].prompt, (size_t)cases[i].n_prompt * sizeof *tok);
        if (k > 0) memcpy(tok + cases[i].n_prompt, r->ids, (size_t)k * sizeof *tok);
        int32_t cu[2] = {0, (int32_t)T};
        const srlm_batch b = {.B = 1, .T = T, .tokens = tok, .cu_seqlens = cu};
        const int64_t last = T - 1;
        float *z = malloc((size_t)V * sizeof *z);
        EXPECT(srlm_model_logits(m, &b, &last, 1, z) == SRLM_OK, "%s", srlm_error_message());
        int64_t best = 0;
        for (int64_t t = 1; t < V; t++)
          if (z[t] > z[best]) best = t;
        EXPECT(r->score_logits != NULL, "%s case %d request %d: no score logits", fx[f], v, i);
        for (int q = 0; q < p.n_score && r->score_logits; q++)
          EXPECT(!memcmp(&r->score_logits[q], &z[p.score_ids[q]], 4),
                 "%s case %d request %d (stop %s, %lld tokens): logit of id %d %.9g, the full forward's %.9g", fx[f], v,
                 i, srlm_stop_reason_name(r->stop), (long long)r->n, p.score_ids[q], (double)r->score_logits[q],
                 (double)z[p.score_ids[q]]);
        EXPECT(r->score_token == best, "%s case %d request %d: score token %d, the argmax %lld", fx[f], v, i,
               r->score_token, (long long)best);
        if (v == 0 && i == 0) EXPECT(r->stop == SRLM_STOP_EOS, "%s: request 0 did not stop by EOS", fx[f]);
        free(z);
        free(tok);
      }
      free_results(plain, 3);
      free_results(res, 3);
    }
    /* bad ids */
    srlm_generate_params p = srlm_generate_params_default();
    const int32_t bad[1] = {(int32_t)V};
    p.score_ids = bad;
    p.n_score = 1;
    srlm_gen_result res[3];
    EXPECT(srlm_generate(m, &p, 3, req, res, NULL) == SRLM_ERR_RANGE, "a score id past the vocabulary was taken");
    srlm_model_free(m);
    free_cases(cases, S);
  }
}

int main(void) {
  for (size_t i = 0; i < sizeof k_fixtures / sizeof k_fixtures[0]; i++) test_fixture_greedy(k_fixtures[i]);
  test_sampling_invariance();
  test_sampling_invariance_sim();
  test_eos();
  test_stop_strings();
  test_step_sample();
  test_score_position();
  TEST_MAIN_END();
}
