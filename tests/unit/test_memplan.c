/* The memory plan (memplan.h, srlm_model_memory_plan in model.h): the model's numbers
 * equal what a model really allocates (activation bytes after a training forward, with
 * and without recompute, fp32 and bf16; the KV cache), the parameter lines equal
 * hand-computed counts for two shapes (a tiny Llama and Qwen3-0.6B), the rank lines
 * follow the roles and train.zero, and a plan that does not fit is refused naming what to
 * change. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/config.h"
#include "srlm/hfmodel.h"
#include "srlm/memplan.h"
#include "srlm/model.h"
#include "test.h"

static srlm_model_config llama_tiny(void) {
  srlm_model_config c;
  srlm_model_config_defaults(&c, SRLM_MODEL_LLAMA);
  c.vocab_size = 50;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 40;
  c.tie_word_embeddings = false;
  EXPECT(srlm_model_config_finalize(&c, "test") == SRLM_OK, "finalize: %s", srlm_error_message());
  return c;
}

/* Qwen3-0.6B's config.json shape. */
static srlm_model_config qwen3_06b(void) {
  srlm_model_config c;
  srlm_model_config_defaults(&c, SRLM_MODEL_QWEN3);
  c.vocab_size = 151936;
  c.hidden_size = 1024;
  c.intermediate_size = 3072;
  c.num_hidden_layers = 28;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 40960;
  c.tie_word_embeddings = true;
  EXPECT(srlm_model_config_finalize(&c, "test") == SRLM_OK, "finalize: %s", srlm_error_message());
  return c;
}

/* The plan's training bytes against a real model's srlm_model_activation_bytes. */
static void test_against_model(srlm_dtype dt, int recompute) {
  srlm_model_config c = llama_tiny();
  srlm_model *m = NULL;
  EXPECT(srlm_model_create(&c, 7, srlm_backend_cpu(), dt, &m) == SRLM_OK, "create: %s", srlm_error_message());
  if (!m) return;
  EXPECT(srlm_model_set_recompute(m, recompute) == SRLM_OK, "recompute");
  int32_t tokens[37], targets[37], cu[4] = {0, 11, 30, 37};
  for (int i = 0; i < 37; i++) {
    tokens[i] = (i * 7) % 50;
    targets[i] = i % 5 == 0 ? -1 : (i * 3) % 50;
  }
  int64_t NT = 0;
  for (int i = 0; i < 37; i++) NT += targets[i] >= 0;
  srlm_batch b = {.B = 3, .T = 37, .tokens = tokens, .cu_seqlens = cu, .targets = targets};
  float logp[37];
  EXPECT(srlm_model_forward_train(m, &b, logp) == SRLM_OK, "forward_train: %s", srlm_error_message());
  srlm_model_memory mm;
  EXPECT(srlm_model_memory_plan(&c, dt, recompute, 37, NT, 0, &mm) == SRLM_OK, "plan: %s", srlm_error_message());
  EXPECT(mm.train == srlm_model_activation_bytes(m), "%s recompute %d: plan %zu bytes, the model kept %zu",
         dt == SRLM_BF16 ? "bf16" : "fp32", recompute, mm.train, srlm_model_activation_bytes(m));
  EXPECT(mm.n_params == srlm_model_num_params(m), "n_params %zu vs %zu", mm.n_params, srlm_model_num_params(m));
  srlm_kv_cache *kv = NULL;
  EXPECT(srlm_kv_cache_create(m, 3, 17, &kv) == SRLM_OK, "kv: %s", srlm_error_message());
  if (kv) EXPECT(mm.kv_per_position * 3 * 17 == srlm_kv_cache_bytes(kv), "kv: plan %zu, cache %zu", mm.kv_per_position * 51,
                 srlm_kv_cache_bytes(kv));
  srlm_kv_cache_free(kv);
  srlm_model_free(m);
}

/* Parameter lines by hand. */
static void test_by_hand(void) {
  srlm_model_config c = llama_tiny();
  /* embed + layers (2 norms, q, k, v, o, gate, up, down) + final norm + head */
  const size_t V = 50, C = 32, FF = 64, Q = 4 * 8, KV = 2 * 8, L = 2;
  size_t n = V * C + L * (2 * C + C * Q + 2 * C * KV + Q * C + 3 * C * FF) + C + V * C;
  srlm_model_memory mm;
  EXPECT(srlm_model_memory_plan(&c, SRLM_BF16, 0, 0, 0, 0, &mm) == SRLM_OK, "plan: %s", srlm_error_message());
  EXPECT(mm.n_params == n && mm.params == 2 * n && mm.master == 4 * n && mm.grads == 4 * n && mm.moments == 8 * n,
         "tiny llama: n %zu (hand %zu), params %zu, master %zu, grads %zu, moments %zu", mm.n_params, n, mm.params,
         mm.master, mm.grads, mm.moments);
  EXPECT(mm.kv_per_position == 2 * L * KV * 2 && mm.train == 0 && mm.infer == 0, "tiny llama: kv %zu per position",
         mm.kv_per_position);
  /* Qwen3-0.6B: tied embeddings, q/k norms of head_dim; 596,049,920 parameters */
  c = qwen3_06b();
  const size_t qV = 151936, qC = 1024, qFF = 3072, qQ = 16 * 128, qKV = 8 * 128, qL = 28, HS = 128;
  n = qV * qC + qL * (2 * qC + qC * qQ + 2 * qC * qKV + qQ * qC + 3 * qC * qFF + 2 * HS) + qC;
  EXPECT(n == 596049920u, "Qwen3-0.6B by hand: %zu", n);
  EXPECT(srlm_model_memory_plan(&c, SRLM_BF16, 0, 0, 0, 0, &mm) == SRLM_OK, "plan: %s", srlm_error_message());
  EXPECT(mm.n_params == n && mm.params == 2 * n && mm.master == 4 * n, "Qwen3-0.6B: n %zu (hand %zu)", mm.n_params, n);
  EXPECT(mm.kv_per_position == 2 * qL * qKV * 2, "Qwen3-0.6B: kv %zu bytes per position (hand %zu)", mm.kv_per_position,
         2 * qL * qKV * 2);
}

static void test_rank_plans(void) {
  srlm_config cfg;
  srlm_config_init(&cfg);
  cfg.model.dtype = SRLM_CFG_DTYPE_BF16;
  cfg.train.batch_size = 4;
  cfg.train.max_seq_len = 1024;
  srlm_model_config c = qwen3_06b();
  const size_t n = 596049920u;
  srlm_memplan lp, sp, zp, cp;
  EXPECT(srlm_memplan_make(&cfg, &c, 1, 0, 1, &lp) == SRLM_OK, "learner: %s", srlm_error_message());
  EXPECT(lp.weights == 2 * n && lp.master == 4 * n && lp.grads == 4 * n && lp.moments == 8 * n && lp.kv_cache == 0 &&
             lp.micro_seqs == 8 && lp.micro_tokens == 8 * 1024 && lp.activations > 0,
         "learner plan: micro %lld seqs %lld tokens", (long long)lp.micro_seqs, (long long)lp.micro_tokens);
  EXPECT(lp.total == lp.weights + lp.master + lp.grads + lp.moments + lp.activations + lp.workspace, "learner total");
  EXPECT(srlm_memplan_make(&cfg, &c, 0, 1, 1, &sp) == SRLM_OK, "sampler");
  EXPECT(sp.grads == 0 && sp.moments == 0 && sp.activations == 0 &&
             sp.kv_len == 512 + 256 + 256 + 1024 &&
             sp.kv_cache == (size_t)2 * 28 * 1024 * 2 * SRLM_MEMPLAN_SLOTS * 2048 && sp.inference > 0,
         "sampler plan: kv %zu", sp.kv_cache);
  cfg.train.zero = 1;
  EXPECT(srlm_memplan_make(&cfg, &c, 1, 0, 4, &zp) == SRLM_OK, "zero");
  EXPECT(zp.moments == 2 * ((n + 3) / 4 + 65536) * 4, "ZeRO-1 over 4 learners: moments %zu", zp.moments);
  cfg.train.zero = 0;
  EXPECT(srlm_memplan_make(&cfg, &c, 1, 1, 1, &cp) == SRLM_OK, "colocated");
  EXPECT(cp.total == lp.total + sp.kv_cache + sp.inference, "colocated = learner + the samplers' lines");
  /* recompute shrinks the activations */
  cfg.train.recompute = 1;
  srlm_memplan rp;
  EXPECT(srlm_memplan_make(&cfg, &c, 1, 0, 1, &rp) == SRLM_OK, "recompute");
  EXPECT(rp.activations < lp.activations / 4, "recompute: %zu vs %zu bytes", rp.activations, lp.activations);
  /* fits, does not fit */
  EXPECT(srlm_memplan_check(&lp, lp.total, "cuda device 0") == SRLM_OK, "a plan of exactly the free memory fits");
  EXPECT(srlm_memplan_check(&lp, lp.total - 1, "cuda device 0") == SRLM_ERR_NOMEM, "one byte short is refused");
  EXPECT_CONTAINS(srlm_error_message(), "cuda device 0: this rank's memory plan");
  cfg.generate.max_new_tokens = 100000; /* past the model's positions: the cache is bounded by them */
  EXPECT(srlm_memplan_make(&cfg, &c, 0, 1, 1, &sp) == SRLM_OK && sp.kv_len == 40960, "kv bound: %lld", (long long)sp.kv_len);
  cfg.generate.max_new_tokens = 256;
  EXPECT(srlm_memplan_check(&sp, sp.total / 2, "cuda device 3") == SRLM_ERR_NOMEM, "sampler refused");
  EXPECT_CONTAINS(srlm_error_message(), "model.arch.max_seq_len");
  cfg.train.batch_size = 64;
  cfg.train.recompute = 0;
  EXPECT(srlm_memplan_make(&cfg, &c, 1, 0, 1, &lp) == SRLM_OK, "big batch");
  EXPECT(srlm_memplan_check(&lp, lp.total / 2, "cuda device 0") == SRLM_ERR_NOMEM, "big batch refused");
  EXPECT_CONTAINS(srlm_error_message(), "train.batch_size (now 128 sequences");
  EXPECT_CONTAINS(srlm_error_message(), "train.recompute: true");
  char line[1024];
  srlm_memplan_format(&zp, (size_t)80 << 30, line, sizeof line);
  EXPECT(strstr(line, "of 80.00 GiB free") && strstr(line, "ZeRO-1 shard"), "format: %s", line);
  srlm_error_clear();
  srlm_config_free(&cfg);
}

/* The shipped GPU configs (configs/gpu/) with their models' config.json shapes: every
 * rank's plan fits the card the config is sized for (80 GB; 141 GB for the 8B). */
typedef struct shape {
  const char *file;
  srlm_model_type type;
  int64_t V, C, FF, L, NH, NKV, HS;
  bool tied;
  double card_gib; /* the card's memory, less a margin for the CUDA context */
} shape;

static void test_gpu_configs(void) {
  static const shape k[] = {
      {"qwen3-0.6b.yaml", SRLM_MODEL_QWEN3, 151936, 1024, 3072, 28, 16, 8, 128, true, 74},
      {"qwen3-1.7b.yaml", SRLM_MODEL_QWEN3, 151936, 2048, 6144, 28, 16, 8, 128, true, 74},
      {"llama3.2-1b.yaml", SRLM_MODEL_LLAMA, 128256, 2048, 8192, 16, 32, 8, 64, true, 74},
      {"llama3.2-3b.yaml", SRLM_MODEL_LLAMA, 128256, 3072, 8192, 28, 24, 8, 128, true, 74},
      {"llama3.1-8b.yaml", SRLM_MODEL_LLAMA, 128256, 4096, 14336, 32, 32, 8, 128, false, 130},
  };
  const char *src = getenv("SRLM_SOURCE_DIR");
  EXPECT(src != NULL, "SRLM_SOURCE_DIR is not set");
  if (!src) return;
  for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/gpu/%s", src, k[i].file);
    srlm_config cfg;
    srlm_status st = srlm_config_load(&cfg, path, 0, NULL);
    EXPECT(st == SRLM_OK, "%s: %s", k[i].file, srlm_error_message());
    srlm_model_config c;
    srlm_model_config_defaults(&c, k[i].type);
    c.vocab_size = k[i].V;
    c.hidden_size = k[i].C;
    c.intermediate_size = k[i].FF;
    c.num_hidden_layers = k[i].L;
    c.num_attention_heads = k[i].NH;
    c.num_key_value_heads = k[i].NKV;
    c.head_dim = k[i].HS;
    c.max_position_embeddings = 131072;
    c.tie_word_embeddings = k[i].tied;
    EXPECT(srlm_model_config_finalize(&c, k[i].file) == SRLM_OK, "%s: %s", k[i].file, srlm_error_message());
    const size_t card = (size_t)(k[i].card_gib * (double)(1u << 30));
    for (int role = 0; st == SRLM_OK && role < 2; role++) {
      srlm_memplan p;
      EXPECT(srlm_memplan_make(&cfg, &c, role == 0, role == 1, cfg.roles.learners, &p) == SRLM_OK, "%s plan", k[i].file);
      char line[1024];
      srlm_memplan_format(&p, card, line, sizeof line);
      fprintf(stderr, "%s %s: %s\n", k[i].file, role ? "sampler" : "learner", line);
      EXPECT(srlm_memplan_check(&p, card, k[i].file) == SRLM_OK, "%s %s: %s", k[i].file, role ? "sampler" : "learner",
             srlm_error_message());
    }
    srlm_config_free(&cfg);
  }
}

int main(void) {
  test_gpu_configs();
  test_against_model(SRLM_F32, 0);
  test_against_model(SRLM_F32, 1);
  test_against_model(SRLM_BF16, 0);
  test_against_model(SRLM_BF16, 1);
  test_by_hand();
  test_rank_plans();
  TEST_MAIN_END();
}
