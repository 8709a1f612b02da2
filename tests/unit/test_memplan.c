/* The memory plan (memplan.h, srlm_model_memory_plan in model.h): the model's numbers
 * equal what a model really allocates (activation bytes after a training forward, with
 * and without recompute, fp32 and bf16; the KV cache), the parameter lines equal
 * hand-computed counts for two shapes (a tiny Llama and Qwen3-0.6B), the rank lines
 * follow the roles and train.zero, a plan that does not fit is refused naming what to
 * change, and the KV cache's slots (generate.max_batch, generate.kv_memory_fraction) are
 * the hand-computed ones on host memory and on a device of given free bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/attn_split.h"
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
  /* on host memory the model also keeps the head's logits for the backward (NT x V fp32,
     head.c) and each full layer set's normed inputs and SwiGLU output (2 x T x C + T x FF:
     every layer's, or the recompute work set's), which it never does on a device, the
     plan's subject */
  const size_t esz = dt == SRLM_BF16 ? 2 : 4, full_sets = recompute ? 1 : (size_t)c.num_hidden_layers;
#define CARVED(n) (((size_t)(n) * esz + 63) & ~(size_t)63) /* the model's 64-byte carving */
  const size_t kept = (size_t)NT * (size_t)c.vocab_size * sizeof(float) +
                      full_sets * (2 * CARVED(37 * c.hidden_size) + CARVED(37 * c.intermediate_size));
#undef CARVED
  EXPECT(mm.train + kept == srlm_model_activation_bytes(m), "%s recompute %d: plan %zu bytes + %zu kept on host memory, "
         "the model kept %zu", dt == SRLM_BF16 ? "bf16" : "fp32", recompute, mm.train, kept,
         srlm_model_activation_bytes(m));
  EXPECT(mm.n_params == srlm_model_num_params(m), "n_params %zu vs %zu", mm.n_params, srlm_model_num_params(m));
  srlm_kv_cache *kv = NULL;
  EXPECT(srlm_kv_cache_create(m, 3, 17, &kv) == SRLM_OK, "kv: %s", srlm_error_message());
  if (kv) EXPECT(mm.kv_per_position * 3 * 17 == srlm_kv_cache_bytes(kv), "kv: plan %zu, cache %zu", mm.kv_per_position * 51,
                 srlm_kv_cache_bytes(kv));
  srlm_kv_cache_free(kv);
  srlm_model_free(m);
  /* a log-prob pass of 37 tokens, every one a target (the plan's bound): the inference buffers
     a fresh model reserves are the plan's infer */
  EXPECT(srlm_model_create(&c, 7, srlm_backend_cpu(), dt, &m) == SRLM_OK, "create: %s", srlm_error_message());
  if (!m) return;
  for (int i = 0; i < 37; i++) targets[i] = (i * 3) % 50;
  EXPECT(srlm_model_logprobs(m, &b, logp) == SRLM_OK, "logprobs: %s", srlm_error_message());
  EXPECT(srlm_model_memory_plan(&c, dt, recompute, 0, 0, 37, &mm) == SRLM_OK, "plan: %s", srlm_error_message());
  EXPECT(mm.infer == srlm_model_inference_bytes(m), "%s: inference plan %zu bytes, the model reserved %zu",
         dt == SRLM_BF16 ? "bf16" : "fp32", mm.infer, srlm_model_inference_bytes(m));
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
  EXPECT(lp.total == lp.weights + lp.master + lp.grads + lp.moments + lp.activations + lp.inference + lp.workspace,
         "learner total");
  /* a learner's log-prob passes (reference log-probs) pack up to SRLM_MEMPLAN_LOGPROB_TOKENS
     (16384 > a pair of 2 x 1024) tokens in one inference forward */
  srlm_model_memory lpm;
  EXPECT(srlm_model_memory_plan(&c, SRLM_BF16, 0, 0, 0, 16384, &lpm) == SRLM_OK, "plan: %s", srlm_error_message());
  EXPECT(lp.inference == lpm.infer && lp.scorer == 0, "learner: inference %zu (hand %zu)", lp.inference, lpm.infer);
  EXPECT(srlm_memplan_make(&cfg, &c, 0, 1, 1, &sp) == SRLM_OK, "sampler");
  /* a generator or judge of a bf16 model keeps no fp32 master: the broadcast writes its bf16 copy */
  EXPECT(sp.weights == 2 * n && sp.master == 0, "sampler: weights %zu, master %zu (hand %zu, 0)", sp.weights, sp.master,
         2 * n);
  EXPECT(sp.grads == 0 && sp.moments == 0 && sp.activations == 0 &&
             sp.kv_len == 512 + 256 + 256 + 1024 &&
             sp.kv_cache == (size_t)2 * 28 * 1024 * 2 * SRLM_MEMPLAN_HOST_SLOTS * 2048 && sp.inference > 0,
         "sampler plan: kv %zu", sp.kv_cache);
  cfg.train.zero = 1;
  EXPECT(srlm_memplan_make(&cfg, &c, 1, 0, 4, &zp) == SRLM_OK, "zero");
  EXPECT(zp.moments == 2 * ((n + 3) / 4 + 65536) * 4, "ZeRO-1 over 4 learners: moments %zu", zp.moments);
  /* and the bf16 model's fp32 master: the learner's range only, (n + 3) / 4 + 65536 = 149078016 floats */
  EXPECT(zp.master == ((n + 3) / 4 + 65536) * 4 && zp.master == (size_t)149078016 * 4,
         "ZeRO-1 over 4 learners: master %zu (hand %zu)", zp.master, (size_t)149078016 * 4);
  EXPECT(zp.weights == 2 * n, "ZeRO-1 keeps the whole bf16 compute copy: %zu", zp.weights);
  /* before the first step the master is whole but gradients, moments and activations are not
     allocated: 4n < shard 4n/4 + grads 4n + moments 8n/4, so that phase needs nothing more */
  EXPECT(zp.startup == 0 &&
             zp.total == zp.weights + zp.master + zp.grads + zp.moments + zp.activations + zp.inference + zp.workspace,
         "ZeRO-1 over 4: startup %zu", zp.startup);
  /* with the EMA anchor over 16 learners: masters 2 x 4n whole, later 2 x 4 x per + 4n + 8 per + activations
     (per = (n + 15) / 16 + 65536 floats): the whole masters are the peak, by their difference */
  cfg.train.reference = SRLM_CFG_REFERENCE_EMA;
  cfg.train.batch_size = 1, cfg.train.max_seq_len = 64; /* small activations */
  srlm_memplan ep;
  EXPECT(srlm_memplan_make(&cfg, &c, 1, 0, 16, &ep) == SRLM_OK, "zero ema");
  const size_t per = (n + 15) / 16 + 65536, later = 2 * 4 * per + 4 * n + 8 * per + ep.activations;
  EXPECT(ep.master == 2 * 4 * per && ep.startup == (8 * n > later ? 8 * n - later : 0) && ep.startup > 0 &&
             ep.total == ep.weights + 8 * n + ep.inference + ep.workspace,
         "ZeRO-1 over 16 with the anchor: master %zu, startup %zu (hand %zu), total %zu", ep.master, ep.startup,
         8 * n - later, ep.total);
  cfg.train.reference = SRLM_CFG_REFERENCE_ITERATION;
  cfg.train.batch_size = 4, cfg.train.max_seq_len = 1024;
  cfg.train.zero = 0;
  EXPECT(srlm_memplan_make(&cfg, &c, 1, 1, 1, &cp) == SRLM_OK, "colocated");
  /* one model: its inference buffers serve the larger pass (the learner's log-probs) */
  EXPECT(cp.total == lp.total + sp.kv_cache + (sp.workspace - lp.workspace) && cp.inference == lp.inference &&
             cp.workspace == sp.workspace,
         "colocated = learner + the samplers' KV cache and split-KV workspace");
  srlm_model_memory step, micro;
  EXPECT(srlm_model_memory_plan(&c, SRLM_BF16, 0, 0, 0, SRLM_MEMPLAN_STEP_TOKENS, &step) == SRLM_OK &&
             srlm_model_memory_plan(&c, SRLM_BF16, 0, 0, 0, 8 * 1024, &micro) == SRLM_OK,
         "plan: %s", srlm_error_message());
  EXPECT(sp.inference == step.infer, "sampler: inference %zu (a step of 4096 tokens: %zu)", sp.inference, step.infer);
  /* a bf16 sampler's split-KV pieces (attn_split.h): caches of 2048 positions are cut into at
     most 8 pieces (of 256; 1024 into 8 of 128, ...), each of the step's 4096 x 16 query rows
     keeping 8 partial lse and 8 partial outputs of 128 floats */
  EXPECT(srlm_attn_split_pieces_max(2048) == 8 && srlm_attn_split_pieces_max(32768) == 64 &&
             srlm_attn_split_pieces_max(520) == 8 && srlm_attn_split_pieces(520) == 5 && srlm_attn_split_keys(1024) == 128 &&
             srlm_attn_split_bytes(64, 100, 128) == 0,
         "split rule: %lld pieces at most up to 2048", srlm_attn_split_pieces_max(2048));
  EXPECT(sp.workspace == SRLM_MEMPLAN_WORKSPACE + (size_t)8 * 65536 * 4 + (size_t)8 * 65536 * 128 * 4 && lp.workspace ==
             SRLM_MEMPLAN_WORKSPACE,
         "sampler: workspace %zu (hand %zu)", sp.workspace,
         SRLM_MEMPLAN_WORKSPACE + (size_t)8 * 65536 * 4 + (size_t)8 * 65536 * 128 * 4);
  /* a judge of SAR scores perplexities in log-prob passes; the implicit reward's older model
     (DICE/CREAM/SCIR) is a learner's, decode-only: its compute copy and its own pass buffers */
  cfg.judge.source = SRLM_CFG_SOURCE_SAR;
  srlm_memplan xp;
  EXPECT(srlm_memplan_make(&cfg, &c, 0, 1, 1, &xp) == SRLM_OK && xp.inference == lpm.infer && xp.scorer == 0,
         "SAR sampler: inference %zu (hand %zu)", xp.inference, lpm.infer);
  cfg.judge.source = SRLM_CFG_SOURCE_MODEL;
  const int rules[3][2] = {{SRLM_CFG_PAIRS_IMPLICIT, SRLM_CFG_CONSIST_NONE},
                           {SRLM_CFG_PAIRS_JUDGE, SRLM_CFG_CONSIST_CREAM},
                           {SRLM_CFG_PAIRS_JUDGE, SRLM_CFG_CONSIST_SCIR}};
  for (int i = 0; i < 3; i++) {
    cfg.pairs.source = (srlm_cfg_pair_source)rules[i][0];
    cfg.pairs.consistency = (srlm_cfg_consistency)rules[i][1];
    EXPECT(srlm_memplan_make(&cfg, &c, 1, 0, 1, &xp) == SRLM_OK && xp.scorer == 2 * n + lpm.infer &&
               xp.total == lp.total + xp.scorer,
           "implicit reward rule %d: scorer %zu (hand %zu)", i, xp.scorer, 2 * n + lpm.infer);
    EXPECT(srlm_memplan_make(&cfg, &c, 0, 1, 1, &xp) == SRLM_OK && xp.scorer == 0, "rule %d: a sampler scores none", i);
  }
  char sline[1024];
  srlm_memplan_make(&cfg, &c, 1, 0, 1, &xp);
  srlm_memplan_format(&xp, 0, sline, sizeof sline);
  EXPECT(strstr(sline, ", implicit reward's older model ") != NULL, "format: %s", sline);
  cfg.pairs.source = SRLM_CFG_PAIRS_JUDGE;
  cfg.pairs.consistency = SRLM_CFG_CONSIST_NONE;
  /* the models beside the policy: ARGS's reference (scores only: weights, no master) and the
     EMA anchor (a learner's, updated in fp32: weights and master) */
  cfg.generate.args_reward = SRLM_CFG_ARGS_IMPLICIT;
  cfg.train.reference = SRLM_CFG_REFERENCE_EMA;
  srlm_memplan ap;
  EXPECT(srlm_memplan_make(&cfg, &c, 0, 1, 1, &ap) == SRLM_OK, "sampler with ARGS");
  EXPECT(ap.weights == 2 * 2 * n && ap.master == 0, "sampler with ARGS's reference: weights %zu (hand %zu), master %zu",
         ap.weights, 4 * n, ap.master);
  EXPECT(srlm_memplan_make(&cfg, &c, 1, 1, 1, &ap) == SRLM_OK, "colocated with ARGS and EMA");
  EXPECT(ap.weights == 3 * 2 * n && ap.master == 2 * 4 * n,
         "colocated with ARGS's reference and the EMA anchor: weights %zu (hand %zu), master %zu (hand %zu)", ap.weights,
         6 * n, ap.master, 8 * n);
  /* inference buffers of each model: the policy's log-prob passes, the anchor's micro-batch
     (8 x 1024 tokens), the reference's decode step */
  EXPECT(ap.inference == lpm.infer + micro.infer + step.infer, "colocated with ARGS and EMA: inference %zu (hand %zu)",
         ap.inference, lpm.infer + micro.infer + step.infer);
  cfg.generate.args_reward = SRLM_CFG_ARGS_NONE;
  cfg.train.reference = SRLM_CFG_REFERENCE_ITERATION;
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
  EXPECT_CONTAINS(srlm_error_message(), "or shorter slots (40960 positions: data.max_prompt_tokens");
  cfg.train.batch_size = 64;
  cfg.train.recompute = 0;
  EXPECT(srlm_memplan_make(&cfg, &c, 1, 0, 1, &lp) == SRLM_OK, "big batch");
  EXPECT(srlm_memplan_check(&lp, lp.total / 2, "cuda device 0") == SRLM_ERR_NOMEM, "big batch refused");
  EXPECT_CONTAINS(srlm_error_message(), "train.batch_size (now 128 sequences");
  EXPECT_CONTAINS(srlm_error_message(), "train.recompute: true");
  char line[1024];
  srlm_memplan_format(&zp, (size_t)80 << 30, line, sizeof line);
  EXPECT(strstr(line, "of 80.00 GiB free") && strstr(line, "master 568.7 MiB (ZeRO-1 shard)") &&
             strstr(line, "(ZeRO-1 shard), activations"), "format: %s", line);
  srlm_error_clear();
  srlm_config_free(&cfg);
}

/* The shipped GPU configs (configs/gpu/) with their models' config.json shapes: every
 * rank's plan fits the card the config is sized for (80 GB; 141 GB for the 8B), and a
 * sampler's KV cache sized from the card holds at least 64 sequences. */
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
      if (role == 1) { /* on the card alone, the KV cache sized from what is left: at least the CPU's 64 slots */
        srlm_memplan_size_kv(&p, card, 0, 1);
        srlm_memplan_format(&p, card, line, sizeof line);
        fprintf(stderr, "%s sampler sized on its card: %s\n", k[i].file, line);
        EXPECT(srlm_memplan_check(&p, card, k[i].file) == SRLM_OK && p.kv_slots >= SRLM_MEMPLAN_HOST_SLOTS,
               "%s sampler sized on its card: %lld slots: %s", k[i].file, (long long)p.kv_slots, line);
      }
    }
    srlm_config_free(&cfg);
  }
}

/* The quickstart's tiny model (configs/quickstart-m1.yaml's model.arch: llama, C 64, FF 160,
 * L 4, NH = NKV = 4, HS 16, 32 positions, fp32). */
static srlm_model_config quickstart_tiny(void) {
  srlm_model_config c;
  srlm_model_config_defaults(&c, SRLM_MODEL_LLAMA);
  c.vocab_size = 16;
  c.hidden_size = 64;
  c.intermediate_size = 160;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.max_position_embeddings = 32;
  c.tie_word_embeddings = false;
  EXPECT(srlm_model_config_finalize(&c, "test") == SRLM_OK, "finalize: %s", srlm_error_message());
  return c;
}

static const char *rule_name(srlm_memplan_kv_rule r) {
  static const char *const k[] = {"none", "host", "fraction", "max_batch", "cap"};
  return (unsigned)r < 5 ? k[r] : "?";
}

/* One device sizing: the slots and the rule against the hand-computed ones. */
static void expect_slots(const char *what, srlm_memplan p, size_t free_bytes, size_t shared, int sharers,
                         int64_t slots, srlm_memplan_kv_rule rule, int64_t fit) {
  const size_t rest = p.total - p.kv_cache;
  srlm_memplan_size_kv(&p, free_bytes, shared, sharers);
  EXPECT(p.kv_slots == slots && p.kv_rule == rule && p.kv_fit == fit,
         "%s: %lld slots by %s (the fraction holds %lld); by hand %lld by %s (%lld)", what, (long long)p.kv_slots,
         rule_name(p.kv_rule), (long long)p.kv_fit, (long long)slots, rule_name(rule), (long long)fit);
  EXPECT(p.kv_cache == (size_t)slots * p.kv_slot_bytes && p.total == rest + p.kv_cache,
         "%s: kv %zu bytes, total %zu (rest %zu)", what, p.kv_cache, p.total, rest);
}

/* The KV cache's slots: host memory keeps generate.max_batch (auto 64); a device holds what
 * generate.kv_memory_fraction of the memory left holds, bounded by generate.max_batch or
 * SRLM_MEMPLAN_MAX_SLOTS; no slot is refused naming the keys to change. */
static void test_kv_slots(void) {
  const char *src = getenv("SRLM_SOURCE_DIR");
  EXPECT(src != NULL, "SRLM_SOURCE_DIR is not set");
  if (!src) return;
  char path[4096];
  snprintf(path, sizeof path, "%s/configs/quickstart.yaml", src);
  srlm_config cfg;
  EXPECT(srlm_config_load(&cfg, path, 0, NULL) == SRLM_OK, "%s: %s", path, srlm_error_message());
  /* the tiny model: 2 (K, V) x 4 layers x 4 heads x 16 x 4 bytes = 2048 bytes a position;
     512 + 12 + 256 + 1024 positions, bounded by the model's 32: 64 KiB a slot */
  srlm_model_config tiny = quickstart_tiny();
  srlm_memplan g;
  EXPECT(srlm_memplan_make(&cfg, &tiny, 0, 1, 1, &g) == SRLM_OK, "tiny generator: %s", srlm_error_message());
  EXPECT(g.kv_len == 32 && g.kv_slot_bytes == 65536 && g.kv_slots == 64 && g.kv_rule == SRLM_MEMPLAN_KV_HOST &&
             g.kv_cache == 64 * 65536,
         "tiny host plan: %lld x %lld positions, %zu bytes a slot", (long long)g.kv_slots, (long long)g.kv_len,
         g.kv_slot_bytes);
  const size_t rest = g.total - g.kv_cache;
  /* 0.9 x 100 MiB / 64 KiB = 1440 slots: auto stops at 1024; max_batch 2000 lets all 1440 in,
     max_batch 500 is the bound; 0.9 x (100 slots + 1000 bytes) = 90.01 slots -> 90 */
  expect_slots("tiny, 100 MiB left", g, rest + ((size_t)100 << 20), 0, 1, 1024, SRLM_MEMPLAN_KV_CAP, 1440);
  expect_slots("tiny, 100 slots left", g, rest + 100 * 65536 + 1000, 0, 1, 90, SRLM_MEMPLAN_KV_FRACTION, 90);
  cfg.generate.max_batch = 2000;
  srlm_memplan gb;
  EXPECT(srlm_memplan_make(&cfg, &tiny, 0, 1, 1, &gb) == SRLM_OK && gb.kv_slots == 2000 &&
             gb.kv_rule == SRLM_MEMPLAN_KV_HOST, "host memory: max_batch 2000 gives %lld slots", (long long)gb.kv_slots);
  expect_slots("tiny, max_batch 2000", gb, rest + ((size_t)100 << 20), 0, 1, 1440, SRLM_MEMPLAN_KV_FRACTION, 1440);
  cfg.generate.max_batch = 500;
  EXPECT(srlm_memplan_make(&cfg, &tiny, 0, 1, 1, &gb) == SRLM_OK, "max_batch 500");
  expect_slots("tiny, max_batch 500", gb, rest + ((size_t)100 << 20), 0, 1, 500, SRLM_MEMPLAN_KV_MAX_BATCH, 1440);
  expect_slots("tiny, max_batch 500, 100 slots left", gb, rest + 100 * 65536 + 1000, 0, 1, 90, SRLM_MEMPLAN_KV_FRACTION, 90);
  /* the whole rest at fraction 1: exactly 3 slots */
  cfg.generate.max_batch = 0;
  cfg.generate.kv_memory_fraction = 1.0;
  EXPECT(srlm_memplan_make(&cfg, &tiny, 0, 1, 1, &gb) == SRLM_OK, "fraction 1");
  expect_slots("tiny, fraction 1, 3 slots left", gb, rest + 3 * 65536, 0, 1, 3, SRLM_MEMPLAN_KV_FRACTION, 3);
  expect_slots("tiny, fraction 1, 3 slots less a byte", gb, rest + 3 * 65536 - 1, 0, 1, 2, SRLM_MEMPLAN_KV_FRACTION, 2);
  srlm_config_free(&cfg);

  /* Qwen3-0.6B in bf16: 2 x 28 layers x 8 heads x 128 x 2 bytes = 114688 bytes a position;
     512 + 256 + 256 + 1024 = 2048 positions: 224 MiB a slot */
  srlm_config_init(&cfg);
  cfg.model.dtype = SRLM_CFG_DTYPE_BF16;
  srlm_model_config q = qwen3_06b();
  srlm_memplan s;
  EXPECT(srlm_memplan_make(&cfg, &q, 0, 1, 1, &s) == SRLM_OK, "qwen sampler: %s", srlm_error_message());
  EXPECT(s.kv_slot_bytes == (size_t)224 << 20 && s.kv_len == 2048, "qwen: %zu bytes a slot", s.kv_slot_bytes);
  const size_t qrest = s.total - s.kv_cache;
  EXPECT(qrest == s.weights + s.master + s.inference + s.workspace, "qwen sampler: the rest is its other lines");
  /* 0.9 x 50 GiB / 224 MiB = 205.7; shared by two decoding ranks after 10 GiB of the other's
     lines: 0.9 x 50 GiB / 2 / 224 MiB = 102.9 */
  expect_slots("qwen, 50 GiB left", s, qrest + ((size_t)50 << 30), 0, 1, 205, SRLM_MEMPLAN_KV_FRACTION, 205);
  expect_slots("qwen, 50 GiB left for two", s, qrest + ((size_t)60 << 30), (size_t)10 << 30, 2, 102,
               SRLM_MEMPLAN_KV_FRACTION, 102);
  EXPECT(srlm_memplan_kv_slots(qrest, qrest + ((size_t)50 << 30), 0.9, (size_t)224 << 20, 1) == 205, "kv_slots");
  EXPECT(srlm_memplan_kv_slots(qrest, qrest, 0.9, (size_t)224 << 20, 1) == 0, "nothing left: 0 slots");
  EXPECT(srlm_memplan_kv_slots(qrest + 1, qrest, 0.9, (size_t)224 << 20, 1) == 0, "less than nothing left: 0 slots");
  /* the sized plan fits and prints its slots and why */
  srlm_memplan f = s;
  srlm_memplan_size_kv(&f, qrest + ((size_t)50 << 30), 0, 1);
  EXPECT(srlm_memplan_check(&f, qrest + ((size_t)50 << 30), "cuda device 0") == SRLM_OK, "205 slots fit: %s",
         srlm_error_message());
  char line[1024];
  srlm_memplan_format(&f, qrest + ((size_t)50 << 30), line, sizeof line);
  EXPECT(strstr(line, "KV cache 44.84 GiB for 205 x 2048 positions (kv_memory_fraction 0.9)") != NULL, "format: %s", line);
  f = s;
  srlm_memplan_size_kv(&f, qrest + ((size_t)100 << 30), 0, 1);
  srlm_memplan_format(&f, qrest + ((size_t)100 << 30), line, sizeof line);
  EXPECT(strstr(line, "for 411 x 2048 positions (kv_memory_fraction 0.9)"), "format: %s", line);
  /* 100 MiB left: not one 224 MiB slot. Refused, naming what to change */
  f = s;
  srlm_memplan_size_kv(&f, qrest + ((size_t)100 << 20), 0, 1);
  EXPECT(f.kv_slots == 0 && f.total == qrest, "no slot: %lld", (long long)f.kv_slots);
  EXPECT(srlm_memplan_check(&f, qrest + ((size_t)100 << 20), "cuda device 2") == SRLM_ERR_NOMEM, "no slot is refused");
  const char *msg = srlm_error_message();
  EXPECT_CONTAINS(msg, "cuda device 2: this rank's memory plan");
  EXPECT_CONTAINS(msg, "0 KV-cache slots, fewer than 1: one slot (2048 positions) takes 224.0 MiB");
  EXPECT_CONTAINS(msg, "generate.kv_memory_fraction 0.9");
  EXPECT_CONTAINS(msg, "generate.max_new_tokens");
  EXPECT_CONTAINS(msg, "data.max_prompt_tokens), or the roles");
  EXPECT_CONTAINS(msg, "roles on more devices");
  /* the rest alone does not fit: the plain refusal, counting the other ranks on the device */
  f = s;
  srlm_memplan_size_kv(&f, qrest + ((size_t)1 << 30), (size_t)2 << 30, 2);
  EXPECT(srlm_memplan_check(&f, qrest + ((size_t)1 << 30), "cuda device 0") == SRLM_ERR_NOMEM, "shared: refused");
  EXPECT_CONTAINS(srlm_error_message(), "fewer ranks on this device (2.000 GiB for the others)");
  /* a host plan on a device is checked as it is: generate.max_batch names the slots */
  EXPECT(srlm_memplan_check(&s, s.total - 1, "cuda device 0") == SRLM_ERR_NOMEM, "host-sized plan one byte short");
  EXPECT_CONTAINS(srlm_error_message(), "fewer slots (generate.max_batch, now 64)");
  /* a rank that does not decode has no slots, on a device too */
  srlm_memplan l;
  EXPECT(srlm_memplan_make(&cfg, &q, 1, 0, 1, &l) == SRLM_OK, "learner");
  srlm_memplan_size_kv(&l, (size_t)80 << 30, 0, 1);
  EXPECT(l.kv_slots == 0 && l.kv_cache == 0 && l.kv_rule == SRLM_MEMPLAN_KV_NONE, "learner: %lld slots", (long long)l.kv_slots);
  srlm_error_clear();
  srlm_config_free(&cfg);
}

int main(void) {
  setenv("SRLM_HEAD_KEEP_MB", "512", 1); /* whatever the shell says: the model's activations below count its kept head logits */
  test_gpu_configs();
  test_against_model(SRLM_F32, 0);
  test_against_model(SRLM_F32, 1);
  test_against_model(SRLM_BF16, 0);
  test_against_model(SRLM_BF16, 1);
  test_by_hand();
  test_rank_plans();
  test_kv_slots();
  TEST_MAIN_END();
}
