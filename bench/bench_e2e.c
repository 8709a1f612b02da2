/* bench_e2e: the learner's DPO step and the generator's sampling at real model shapes
 * (random weights: nothing to download), the srlm half of bench/e2e.sh, which runs
 * bench/e2e_torch.py on the same shapes and work in the same run and prints both.
 *
 *   bench_e2e [--backend cuda|cuda-sim|cpu] [--device N] [--dtype bf16|fp32]
 *             [--shape qwen3-0.6b|qwen3-1.7b|llama3.2-1b|llama3.2-3b|llama3.1-8b|tiny]
 *             [--layers L]            (fewer layers than the shape: a quick run)
 *             [--work dpo,gen]        [--steps S] [--warmup W]
 *             [--pairs N --micro M --prompt-len P --response-len R]      DPO step
 *             [--gen-prompts N --samples K --new-tokens T --gen-batch B]  generation
 *             [--peak-tflops F]       (the card's dense bf16 peak for MFU; H200: 989)
 *             [--json PATH]
 *   bench_e2e --shape NAME [--layers L] --arch-overrides
 *             prints the shape as `srlm train` overrides (model.arch.*, vocabulary left to the
 *             tokenizer) for bench/e2e.sh's one-iteration row, and exits
 *
 * dpo: N pairs of random prompt (P) + chosen/rejected (R each) tokens; reference
 *   log-probs once (not timed); then S timed optimizer steps of srlm_pref_train (DPO,
 *   beta 0.1, micro-batches of M pairs, AdamW), after W untimed ones. tokens/s =
 *   2 N (P + R) per step; MFU = (6 n_params tokens + attention 6 L H (P+R)^2 per
 *   sequence... written out in flops_dpo) / time / peak.
 * gen: N prompts of P random tokens, K samples each at temperature 1, exactly T new
 *   tokens (no EOS), srlm_generate with B slots (continuous batching); tokens/s of new
 *   tokens; the bandwidth bound: each decode step reads the weights once and each active
 *   sequence's KV cache, at the copy bandwidth measured here (device-to-device copies of
 *   256 MiB through the backend), so bound = new tokens / (sum of those bytes / copy BW).
 * Output: an nccl-tests-style table on stdout, one row per work, and --json. Exit 1 when
 * a loss or a log-prob is not finite. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srlm/backend.h"
#include "srlm/core.h"
#include "srlm/generate.h"
#include "srlm/hfmodel.h"
#include "srlm/model.h"
#include "srlm/pref.h"

typedef struct opts {
  const char *backend, *shape, *work, *json;
  int device, layers, steps, warmup, pairs, micro, prompt_len, response_len, gen_prompts, samples, new_tokens,
      gen_batch;
  srlm_dtype dt;
  double peak_tflops;
  int arch_overrides;
} opts;

typedef struct shape {
  const char *name;
  srlm_model_type type;
  int64_t V, C, FF, L, NH, NKV, HS;
  int tied;
} shape;

/* config.json of each model */
static const shape k_shapes[] = {
    {"qwen3-0.6b", SRLM_MODEL_QWEN3, 151936, 1024, 3072, 28, 16, 8, 128, 1},
    {"qwen3-1.7b", SRLM_MODEL_QWEN3, 151936, 2048, 6144, 28, 16, 8, 128, 1},
    {"llama3.2-1b", SRLM_MODEL_LLAMA, 128256, 2048, 8192, 16, 32, 8, 64, 1},
    {"llama3.2-3b", SRLM_MODEL_LLAMA, 128256, 3072, 8192, 28, 24, 8, 128, 1},
    {"llama3.1-8b", SRLM_MODEL_LLAMA, 128256, 4096, 14336, 32, 32, 8, 128, 0},
    {"tiny", SRLM_MODEL_LLAMA, 1000, 64, 128, 2, 4, 2, 16, 0},
};

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(void) {
  fprintf(stderr, "usage: bench_e2e [--backend NAME] [--device N] [--dtype bf16|fp32] [--shape NAME] [--layers L]\n"
                  "                 [--work dpo,gen] [--steps S] [--warmup W] [--pairs N] [--micro M]\n"
                  "                 [--prompt-len P] [--response-len R] [--gen-prompts N] [--samples K]\n"
                  "                 [--new-tokens T] [--gen-batch B] [--peak-tflops F] [--json PATH]\n"
                  "       bench_e2e --shape NAME [--layers L] --arch-overrides\n");
}

static int parse(int argc, char **argv, opts *o) {
  *o = (opts){.backend = "cpu", .shape = "tiny", .work = "dpo,gen", .device = -1, .steps = 3, .warmup = 1, .pairs = 8,
              .micro = 4, .prompt_len = 32, .response_len = 32, .gen_prompts = 8, .samples = 2, .new_tokens = 16,
              .gen_batch = 16, .dt = SRLM_F32, .peak_tflops = 989};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--arch-overrides")) {
      o->arch_overrides = 1;
      continue;
    }
#define INT_OPT(name, field)            \
  if (!strcmp(a, name) && v) {          \
    o->field = atoi(v);                 \
    i++;                                \
    continue;                           \
  }
    INT_OPT("--device", device)
    INT_OPT("--layers", layers)
    INT_OPT("--steps", steps)
    INT_OPT("--warmup", warmup)
    INT_OPT("--pairs", pairs)
    INT_OPT("--micro", micro)
    INT_OPT("--prompt-len", prompt_len)
    INT_OPT("--response-len", response_len)
    INT_OPT("--gen-prompts", gen_prompts)
    INT_OPT("--samples", samples)
    INT_OPT("--new-tokens", new_tokens)
    INT_OPT("--gen-batch", gen_batch)
#undef INT_OPT
    if (!strcmp(a, "--backend") && v) { o->backend = v; i++; continue; }
    if (!strcmp(a, "--shape") && v) { o->shape = v; i++; continue; }
    if (!strcmp(a, "--work") && v) { o->work = v; i++; continue; }
    if (!strcmp(a, "--json") && v) { o->json = v; i++; continue; }
    if (!strcmp(a, "--peak-tflops") && v) { o->peak_tflops = atof(v); i++; continue; }
    if (!strcmp(a, "--dtype") && v) {
      if (!strcmp(v, "bf16")) o->dt = SRLM_BF16;
      else if (!strcmp(v, "fp32")) o->dt = SRLM_F32;
      else return fprintf(stderr, "bench_e2e: --dtype %s (bf16 or fp32)\n", v), 0;
      i++;
      continue;
    }
    usage();
    return 0;
  }
  if (o->steps < 1 || o->warmup < 0 || o->pairs < 1 || o->micro < 1 || o->prompt_len < 1 || o->response_len < 1 ||
      o->gen_prompts < 1 || o->samples < 1 || o->new_tokens < 1 || o->gen_batch < 1 || !(o->peak_tflops > 0)) {
    fprintf(stderr, "bench_e2e: counts must be >= 1 (warmup >= 0), --peak-tflops > 0\n");
    return 0;
  }
  return 1;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ULL;
static int32_t rnd_token(int64_t V) {
  g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
  return (int32_t)(g_rng % (uint64_t)V);
}

/* FLOPs of one optimizer step over `seqs` sequences of S tokens: 6 x params x tokens for
 * the dense parts (forward 2, backward 4), plus causal attention's QK^T and PV: forward
 * 2 x 2 x S^2/2 x heads x head_dim per layer and sequence, backward 2.5x that. The
 * embedding lookup is not a GEMM: its parameters are left out (the LM head is counted). */
static double flops_step(const srlm_model_config *c, size_t n_params, int64_t seqs, int64_t S) {
  const double dense = (double)n_params - (c->tie_word_embeddings ? 0.0 : (double)c->vocab_size * (double)c->hidden_size);
  const double tokens = (double)seqs * (double)S;
  const double attn_fwd = 2.0 * 2.0 * ((double)S * (double)S / 2.0) * (double)c->num_attention_heads *
                          (double)c->head_dim * (double)c->num_hidden_layers * (double)seqs;
  return 6.0 * dense * tokens + 3.5 * attn_fwd;
}

typedef struct result {
  const char *work;
  double seconds, tokens_per_s, tflops, mfu, bound_fraction, loss;
  int64_t tokens;
} result;

static srlm_status run_dpo(const opts *o, srlm_model *m, result *r) {
  const srlm_model_config *c = srlm_model_get_config(m);
  const int64_t N = o->pairs, P = o->prompt_len, R = o->response_len;
  int32_t *ids = srlm_xmalloc((size_t)N * (size_t)(P + 2 * R) * sizeof *ids);
  srlm_pref_pair *pairs = srlm_xcalloc((size_t)N, sizeof *pairs);
  for (int64_t i = 0; i < N * (P + 2 * R); i++) ids[i] = rnd_token(c->vocab_size);
  for (int64_t i = 0; i < N; i++) {
    int32_t *b = ids + i * (P + 2 * R);
    pairs[i] = (srlm_pref_pair){.prompt = b, .chosen = b + P, .rejected = b + P + R, .prompt_len = P,
                                .chosen_len = R, .rejected_len = R};
  }
  double *ref = srlm_xmalloc(2 * (size_t)N * sizeof *ref);
  srlm_status st = srlm_pref_ref_logps(m, pairs, N, 1 << 16, ref, ref + N);
  srlm_pref_train_options t = {.loss = {.kind = SRLM_PREF_DPO, .beta = 0.1}, .batch_pairs = o->micro,
                               .grad_accum = (int)((N + o->micro - 1) / o->micro), .epochs = o->warmup + o->steps,
                               .optim = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0, .grad_clip = 1.0},
                               .schedule = {.kind = SRLM_CFG_LR_CONSTANT, .lr = 1e-6}, .seed = 1};
  /* one optimizer step per epoch (all N pairs); the warm-up epochs are timed apart */
  srlm_pref_summary warm = {0}, sum = {0};
  if (st == SRLM_OK && o->warmup > 0) {
    t.epochs = o->warmup;
    st = srlm_pref_train(m, pairs, N, ref, ref + N, &t, &warm);
  }
  double t0 = now();
  if (st == SRLM_OK) {
    t.epochs = o->steps;
    st = srlm_pref_train(m, pairs, N, ref, ref + N, &t, &sum);
  }
  if (st == SRLM_OK) st = srlm_backend_sync(srlm_model_backend(m));
  const double secs = now() - t0;
  if (st == SRLM_OK && !isfinite(sum.last_loss)) st = srlm_error(SRLM_ERR_RANGE, "dpo", "loss %g", sum.last_loss);
  if (st == SRLM_OK) {
    const double per_step = secs / o->steps;
    const int64_t tokens = 2 * N * (P + R);
    r->work = "dpo_step";
    r->seconds = per_step;
    r->tokens = tokens;
    r->tokens_per_s = (double)tokens / per_step;
    r->tflops = flops_step(c, srlm_model_num_params(m), 2 * N, P + R) / per_step / 1e12;
    r->mfu = r->tflops / o->peak_tflops;
    r->bound_fraction = NAN;
    r->loss = sum.last_loss;
  }
  free(ref);
  free(pairs);
  free(ids);
  return st;
}

/* Device (or host) copy bandwidth through the backend: bytes moved (read + write) per s. */
static double copy_bandwidth(srlm_backend *be) {
  const size_t bytes = (size_t)256 << 20;
  void *a = NULL, *b = NULL;
  double bw = NAN;
  if (srlm_backend_alloc(be, &a, bytes) == SRLM_OK && srlm_backend_alloc(be, &b, bytes) == SRLM_OK &&
      srlm_backend_zero(be, a, bytes) == SRLM_OK && srlm_backend_copy_d2d(be, b, a, bytes) == SRLM_OK &&
      srlm_backend_sync(be) == SRLM_OK) {
    const int reps = 5;
    double t0 = now();
    for (int i = 0; i < reps; i++) (void)srlm_backend_copy_d2d(be, i % 2 ? a : b, i % 2 ? b : a, bytes);
    if (srlm_backend_sync(be) == SRLM_OK) bw = 2.0 * (double)bytes * reps / (now() - t0);
  }
  (void)srlm_backend_free(be, a);
  (void)srlm_backend_free(be, b);
  srlm_error_clear();
  return bw;
}

static srlm_status run_gen(const opts *o, srlm_model *m, result *r) {
  const srlm_model_config *c = srlm_model_get_config(m);
  const int n = o->gen_prompts * o->samples;
  int32_t *ids = srlm_xmalloc((size_t)o->gen_prompts * (size_t)o->prompt_len * sizeof *ids);
  for (int64_t i = 0; i < (int64_t)o->gen_prompts * o->prompt_len; i++) ids[i] = rnd_token(c->vocab_size);
  srlm_gen_request *req = srlm_xcalloc((size_t)n, sizeof *req);
  for (int i = 0; i < n; i++)
    req[i] = (srlm_gen_request){.prompt = ids + (int64_t)(i / o->samples) * o->prompt_len, .n_prompt = o->prompt_len,
                                .seq_id = (uint64_t)i};
  srlm_generate_params gp = srlm_generate_params_default();
  gp.sampler.temperature = 1.0f;
  gp.sampler.seed = 7;
  gp.max_new_tokens = o->new_tokens;
  gp.max_batch = o->gen_batch;
  srlm_gen_result *res = srlm_xcalloc((size_t)n, sizeof *res);
  srlm_generate_stats gs = {0};
  srlm_status st = srlm_generate(m, &gp, n, req, res, &gs);
  int64_t produced = 0;
  double lp = 0;
  for (int i = 0; st == SRLM_OK && i < n; i++) {
    produced += res[i].n;
    for (int64_t k = 0; k < res[i].n; k++) lp += res[i].logprobs[k];
    srlm_gen_result_free(&res[i]);
  }
  if (st == SRLM_OK && (produced != (int64_t)n * o->new_tokens || !isfinite(lp)))
    st = srlm_error(SRLM_ERR_RANGE, "gen", "%lld tokens (want %lld), sum of log-probs %g", (long long)produced,
                    (long long)n * o->new_tokens, lp);
  if (st == SRLM_OK) {
    /* bytes a decode step reads: the weights once, each active sequence's KV cache */
    srlm_model_memory mm;
    st = srlm_model_memory_plan(c, srlm_model_dtype(m), 0, 0, 0, 0, &mm);
    const double B = o->gen_batch < n ? o->gen_batch : n;
    const double steps = ceil((double)n / B) * o->new_tokens; /* steps at full slots */
    const double avg_ctx = o->prompt_len + o->new_tokens / 2.0;
    const double bytes = steps * (double)mm.params + (double)produced * avg_ctx * (double)mm.kv_per_position;
    const double bw = copy_bandwidth(srlm_model_backend(m));
    r->work = "generate";
    r->seconds = gs.seconds;
    r->tokens = produced;
    r->tokens_per_s = (double)produced / gs.seconds;
    r->tflops = NAN;
    r->mfu = NAN;
    r->bound_fraction = isfinite(bw) ? (bytes / bw) / gs.seconds : NAN;
    r->loss = -lp / (double)produced;
  }
  free(res);
  free(req);
  free(ids);
  return st;
}

int main(int argc, char **argv) {
  opts o;
  if (!parse(argc, argv, &o)) return 2;
#if defined(SRLM_HAVE_CUDA) && SRLM_HAVE_CUDA
  if (srlm_backend_register(srlm_backend_cuda_ops()) != SRLM_OK) return fprintf(stderr, "bench_e2e: %s\n", srlm_error_message()), 1;
#endif
  const shape *sh = NULL;
  for (size_t i = 0; i < sizeof k_shapes / sizeof *k_shapes; i++)
    if (!strcmp(k_shapes[i].name, o.shape)) sh = &k_shapes[i];
  if (!sh) return fprintf(stderr, "bench_e2e: unknown --shape %s\n", o.shape), 2;
  const int64_t layers = o.layers > 0 && o.layers < sh->L ? o.layers : sh->L;
  if (o.arch_overrides) { /* the transformer of the shape; the vocabulary is the run's tokenizer's */
    printf("model.path= model.arch.family=%s model.arch.hidden_size=%lld model.arch.intermediate_size=%lld "
           "model.arch.num_layers=%lld model.arch.num_heads=%lld model.arch.num_kv_heads=%lld model.arch.head_dim=%lld "
           "model.arch.tie_embeddings=%s\n",
           sh->type == SRLM_MODEL_QWEN3 ? "qwen3" : "llama", (long long)sh->C, (long long)sh->FF, (long long)layers,
           (long long)sh->NH, (long long)sh->NKV, (long long)sh->HS, sh->tied ? "true" : "false");
    return 0;
  }
  srlm_model_config c;
  srlm_model_config_defaults(&c, sh->type);
  c.vocab_size = sh->V;
  c.hidden_size = sh->C;
  c.intermediate_size = sh->FF;
  c.num_hidden_layers = layers;
  c.num_attention_heads = sh->NH;
  c.num_key_value_heads = sh->NKV;
  c.head_dim = sh->HS;
  c.tie_word_embeddings = sh->tied;
  c.max_position_embeddings = o.prompt_len + 2 * o.response_len + o.new_tokens + 8;
  srlm_backend *be = NULL;
  srlm_model *m = NULL;
  srlm_status st = srlm_model_config_finalize(&c, o.shape);
  if (st == SRLM_OK) st = srlm_backend_open(o.backend, o.device, &be);
  if (st == SRLM_OK) st = srlm_model_create(&c, 1234, be, o.dt, &m);
  result rs[2];
  int nr = 0;
  const double t0 = now();
  if (st == SRLM_OK && strstr(o.work, "dpo") && (st = run_dpo(&o, m, &rs[nr])) == SRLM_OK) nr++;
  if (st == SRLM_OK && strstr(o.work, "gen") && (st = run_gen(&o, m, &rs[nr])) == SRLM_OK) nr++;
  if (st != SRLM_OK) {
    fprintf(stderr, "bench_e2e: %s\n", srlm_error_message());
    srlm_model_free(m);
    (void)srlm_backend_close(be);
    return 1;
  }
  printf("# bench_e2e: srlm, %s %s (%lld layers, %.3g B parameters), backend %s, %s, %.1f s\n", o.shape,
         sh->type == SRLM_MODEL_QWEN3 ? "qwen3" : "llama", (long long)c.num_hidden_layers,
         (double)srlm_model_num_params(m) / 1e9, o.backend, o.dt == SRLM_BF16 ? "bf16" : "fp32", now() - t0);
  printf("# %-10s %12s %12s %14s %10s %8s %10s %10s\n", "work", "tokens", "seconds", "tokens/s", "TFLOP/s", "MFU",
         "BW bound", "loss");
  for (int i = 0; i < nr; i++)
    printf("  %-10s %12lld %12.4f %14.1f %10.2f %7.1f%% %9.1f%% %10.4f\n", rs[i].work, (long long)rs[i].tokens,
           rs[i].seconds, rs[i].tokens_per_s, rs[i].tflops, 100 * rs[i].mfu, 100 * rs[i].bound_fraction, rs[i].loss);
  if (o.json) {
    FILE *f = fopen(o.json, "w");
    if (!f) return fprintf(stderr, "bench_e2e: cannot write %s\n", o.json), 1;
    fprintf(f, "{\"side\": \"srlm\", \"shape\": \"%s\", \"layers\": %lld, \"params\": %zu, \"backend\": \"%s\", "
               "\"dtype\": \"%s\", \"results\": [",
            o.shape, (long long)c.num_hidden_layers, srlm_model_num_params(m), o.backend, o.dt == SRLM_BF16 ? "bf16" : "fp32");
    for (int i = 0; i < nr; i++) {
      fprintf(f, "%s{\"work\": \"%s\", \"tokens\": %lld, \"seconds\": %.6g, \"tokens_per_s\": %.6g", i ? ", " : "",
              rs[i].work, (long long)rs[i].tokens, rs[i].seconds, rs[i].tokens_per_s);
      if (isfinite(rs[i].tflops)) fprintf(f, ", \"tflops\": %.6g, \"mfu\": %.6g", rs[i].tflops, rs[i].mfu);
      if (isfinite(rs[i].bound_fraction)) fprintf(f, ", \"bandwidth_bound_fraction\": %.6g", rs[i].bound_fraction);
      fprintf(f, ", \"loss\": %.6g}", rs[i].loss);
    }
    fprintf(f, "]}\n");
    fclose(f);
  }
  srlm_model_free(m);
  st = srlm_backend_close(be);
  return st == SRLM_OK ? 0 : 1;
}
