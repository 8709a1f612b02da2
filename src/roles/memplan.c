/* A rank's memory plan from the config and the model's shape; see include/srlm/memplan.h. */
#include <stdio.h>
#include <string.h>

#include "srlm/memplan.h"
#include "srlm/setup.h"

srlm_status srlm_memplan_make(const srlm_config *cfg, const srlm_model_config *mc, int learner, int sampler,
                              int learners, srlm_memplan *p) {
  memset(p, 0, sizeof *p);
  p->learner = learner ? 1 : 0;
  p->sampler = sampler ? 1 : 0;
  p->learners = learners > 0 ? learners : 1;
  p->zero = cfg->train.zero;
  const int64_t positions = mc->max_position_embeddings;
  const int64_t seq = cfg->train.max_seq_len > 0 && cfg->train.max_seq_len < positions ? cfg->train.max_seq_len : positions;
  const int64_t per_unit = cfg->train.loss == SRLM_CFG_LOSS_GRPO ? cfg->generate.samples_per_prompt
                           : cfg->train.loss == SRLM_CFG_LOSS_SFT  ? 1
                                                                   : 2;
  p->micro_seqs = learner ? (int64_t)cfg->train.batch_size * per_unit : 0;
  p->micro_tokens = p->micro_seqs * seq;
  p->kv_slots = sampler ? SRLM_MEMPLAN_SLOTS : 0;
  /* a generator's sequences: a prompt + its answer; a judge's: the template + prompt +
     answer + judgment; one bound for both */
  int64_t kv = (int64_t)cfg->data.max_prompt_tokens + cfg->generate.max_new_tokens + cfg->judge.max_new_tokens +
               SRLM_MEMPLAN_TEMPLATE_TOKENS;
  if (kv > positions) kv = positions;
  p->kv_len = sampler ? kv : 0;
  srlm_model_memory mm;
  SRLM_TRY(srlm_model_memory_plan(mc, srlm_setup_dtype(cfg), cfg->train.recompute, p->micro_tokens, p->micro_tokens,
                                  sampler ? SRLM_MEMPLAN_STEP_TOKENS : 0, &mm));
  /* more models of the same shape: the EMA anchor of a learner (train.reference ema) and the
     reference of ARGS's implicit reward on a generating rank, each with its own KV cache */
  const size_t anchor = learner && cfg->train.reference == SRLM_CFG_REFERENCE_EMA;
  const size_t args_ref = sampler && cfg->generate.args_reward == SRLM_CFG_ARGS_IMPLICIT;
  p->weights = (1 + anchor + args_ref) * mm.params;
  p->master = (1 + anchor + args_ref) * mm.master;
  if (learner) {
    p->grads = mm.grads;
    p->moments = mm.moments;
    if (p->zero && p->learners > 1) { /* the largest shard: a cut may move it by less than a chunk */
      const size_t n = mm.n_params, per = (n + (size_t)p->learners - 1) / (size_t)p->learners + 65536;
      p->moments = 2 * (per < n ? per : n) * sizeof(float);
    }
    p->activations = mm.train;
  }
  if (sampler) {
    p->kv_cache = (1 + args_ref) * mm.kv_per_position * (size_t)p->kv_slots * (size_t)p->kv_len;
    p->inference = mm.infer;
  }
  p->workspace = SRLM_MEMPLAN_WORKSPACE;
  p->total = p->weights + p->master + p->grads + p->moments + p->activations + p->kv_cache + p->inference + p->workspace;
  return SRLM_OK;
}

static double gib(size_t b) { return (double)b / (double)(1u << 30); }

/* b in KiB, MiB or GiB, 3 significant digits or more. */
static const char *human(size_t b, char *buf) {
  if (b >= ((size_t)1 << 30))
    snprintf(buf, 32, "%.2f GiB", gib(b));
  else if (b >= ((size_t)1 << 20))
    snprintf(buf, 32, "%.1f MiB", (double)b / (double)(1u << 20));
  else
    snprintf(buf, 32, "%.1f KiB", (double)b / 1024.0);
  return buf;
}

void srlm_memplan_format(const srlm_memplan *p, size_t free_bytes, char *buf, size_t cap) {
  char a[32], b[32], c[32], d[32];
  int k = snprintf(buf, cap, "memory plan: %s", human(p->total, a));
  if (free_bytes && k > 0 && (size_t)k < cap) k += snprintf(buf + k, cap - (size_t)k, " of %s free", human(free_bytes, a));
  if (k > 0 && (size_t)k < cap)
    k += snprintf(buf + k, cap - (size_t)k, " (weights %s, master %s", human(p->weights, a), human(p->master, b));
  if (p->learner && k > 0 && (size_t)k < cap)
    k += snprintf(buf + k, cap - (size_t)k, ", gradients %s, moments %s%s, activations %s for %lld tokens",
                  human(p->grads, a), human(p->moments, b), p->zero && p->learners > 1 ? " (ZeRO-1 shard)" : "",
                  human(p->activations, c), (long long)p->micro_tokens);
  if (p->sampler && k > 0 && (size_t)k < cap)
    k += snprintf(buf + k, cap - (size_t)k, ", KV cache %s for %lld x %lld positions, inference %s",
                  human(p->kv_cache, a), (long long)p->kv_slots, (long long)p->kv_len, human(p->inference, d));
  if (k > 0 && (size_t)k < cap) snprintf(buf + k, cap - (size_t)k, ", workspace %s)", human(p->workspace, a));
}

srlm_status srlm_memplan_check(const srlm_memplan *p, size_t free_bytes, const char *device) {
  if (p->total <= free_bytes) return SRLM_OK;
  char plan[512], what[512];
  srlm_memplan_format(p, free_bytes, plan, sizeof plan);
  int k = 0;
  what[0] = 0;
  if (p->learner && p->activations >= p->total / 4)
    k += snprintf(what + k, sizeof what - (size_t)k, "; fewer activations: a smaller train.batch_size (now %lld sequences "
                  "a micro-batch) with train.grad_accum, a smaller train.max_seq_len, or train.recompute: true",
                  (long long)p->micro_seqs);
  if (p->learner && p->moments >= p->total / 4 && k >= 0 && (size_t)k < sizeof what)
    k += snprintf(what + k, sizeof what - (size_t)k, "; %s", p->zero ? "more learner ranks (train.zero: 1 divides the AdamW moments over them)"
                  : "train.zero: 1 with several learners (divides the AdamW moments over them)");
  if (p->sampler && p->kv_cache >= p->total / 4 && k >= 0 && (size_t)k < sizeof what)
    k += snprintf(what + k, sizeof what - (size_t)k, "; a smaller KV cache: a smaller model.arch.max_seq_len (%lld positions)",
                  (long long)p->kv_len);
  if (p->learner && p->sampler && k >= 0 && (size_t)k < sizeof what)
    snprintf(what + k, sizeof what - (size_t)k, "; separate roles (roles.colocate: false) on more devices");
  return srlm_error(SRLM_ERR_NOMEM, device, "this rank's %s does not fit: %.3f GiB needed, %.3f GiB free. To fit%s",
                    plan, gib(p->total), gib(free_bytes), what[0] ? what : ": a device with more memory");
}
