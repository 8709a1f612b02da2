/* A rank's memory plan from the config and the model's shape; see include/srlm/memplan.h. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "srlm/attn_split.h"
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
  p->max_batch = cfg->generate.max_batch;
  p->kv_fraction = cfg->generate.kv_memory_fraction;
  p->sharers = 1;
  p->kv_rule = sampler ? SRLM_MEMPLAN_KV_HOST : SRLM_MEMPLAN_KV_NONE;
  p->kv_slots = !sampler ? 0 : p->max_batch > 0 ? p->max_batch : SRLM_MEMPLAN_HOST_SLOTS;
  /* a generator's sequences: a prompt + its answer; a judge's: the template + prompt +
     answer + judgment; one bound for both */
  int64_t kv = (int64_t)cfg->data.max_prompt_tokens + cfg->generate.max_new_tokens + cfg->judge.max_new_tokens +
               SRLM_MEMPLAN_TEMPLATE_TOKENS;
  if (cfg->meta.enabled) kv += cfg->judge.max_new_tokens + cfg->meta.max_new_tokens; /* two judgments, a verdict */
  if (kv > positions) kv = positions;
  p->kv_len = sampler ? kv : 0;
  /* the largest inference pass of the rank's own model: a decode step; a learner's log-prob
     passes (as many whole sequences as fit in SRLM_MEMPLAN_LOGPROB_TOKENS, at least one pair:
     a learner's sequences are not cut to train.max_seq_len, so one is bounded by kv, the
     longest sequence the samplers make, meta-judge pairs included); SAR's perplexities on a
     judge (the plan does not tell judges from generators: every sampler counts them) */
  const int64_t lp_tokens = SRLM_MEMPLAN_LOGPROB_TOKENS, lp_pass = lp_tokens > 2 * kv ? lp_tokens : 2 * kv;
  int64_t t_infer = sampler ? SRLM_MEMPLAN_STEP_TOKENS : 0;
  if (learner && lp_pass > t_infer) t_infer = lp_pass;
  if (sampler && cfg->judge.source == SRLM_CFG_SOURCE_SAR && (lp_tokens > t_infer || kv > t_infer))
    t_infer = lp_tokens > kv ? lp_tokens : kv;
  const srlm_dtype dt = srlm_setup_dtype(cfg);
  srlm_model_memory mm, step, micro;
  SRLM_TRY(srlm_model_memory_plan(mc, dt, cfg->train.recompute, p->micro_tokens, p->micro_tokens, t_infer, &mm));
  /* more models of the same shape: the EMA anchor of a learner (train.reference ema) and the
     reference of ARGS's implicit reward on a generating rank, each with its own KV cache and
     inference buffers (the anchor's for a micro-batch's log-probs, the reference's for a step) */
  const size_t anchor = learner && cfg->train.reference == SRLM_CFG_REFERENCE_EMA;
  const size_t args_ref = sampler && cfg->generate.args_reward == SRLM_CFG_ARGS_IMPLICIT;
  SRLM_TRY(srlm_model_memory_plan(mc, dt, 0, 0, 0, args_ref ? SRLM_MEMPLAN_STEP_TOKENS : 0, &step));
  SRLM_TRY(srlm_model_memory_plan(mc, dt, 0, 0, 0, anchor ? p->micro_tokens : 0, &micro));
  p->weights = (1 + anchor + args_ref) * mm.params;
  p->inference = mm.infer + micro.infer + step.infer;
  /* the implicit reward's older models (consist.h), decode-only, one at a time on a learner */
  const int scores = learner && cfg->train.loss != SRLM_CFG_LOSS_GRPO &&
                     (cfg->pairs.source == SRLM_CFG_PAIRS_IMPLICIT || cfg->pairs.consistency == SRLM_CFG_CONSIST_CREAM ||
                      cfg->pairs.consistency == SRLM_CFG_CONSIST_SCIR);
  if (scores) /* a learner's own model's largest pass is lp_pass too (t_infer above): the same buffers */
    p->scorer = mm.params + mm.infer;
  /* fp32 masters only where something learns: the model and the EMA anchor of a learner; a generator or judge
     (the broadcast writes its bf16 compute copy) and ARGS's reference (it only scores) keep none (model.h) */
  p->master = learner ? (1 + anchor) * mm.master : 0;
  if (learner) {
    p->grads = mm.grads;
    p->moments = mm.moments;
    if (p->zero && p->learners > 1) { /* the largest shard: a cut may move it by less than a chunk */
      const size_t n = mm.n_params, per = (n + (size_t)p->learners - 1) / (size_t)p->learners + 65536;
      p->moments = 2 * (per < n ? per : n) * sizeof(float);
      /* a bf16 model's learner keeps the fp32 master of its range only (the anchor's too) */
      if (mm.master) p->master = (1 + anchor) * (per < n ? per : n) * sizeof(float);
    }
    p->activations = mm.train;
    /* ZeRO-1 cuts the masters at the first training step: until then (iteration 1's
       generation, judging, evaluation) they are whole, while gradients, moments and
       activations are not allocated yet. The plan holds the larger of the two phases. */
    const size_t whole = (1 + anchor) * mm.master;
    if (whole > p->master + p->grads + p->moments + p->activations)
      p->startup = whole - (p->master + p->grads + p->moments + p->activations);
  }
  if (sampler) {
    p->kv_slot_bytes = (1 + args_ref) * mm.kv_per_position * (size_t)p->kv_len;
    p->kv_cache = p->kv_slot_bytes * (size_t)p->kv_slots;
  }
  p->workspace = SRLM_MEMPLAN_WORKSPACE;
  /* a bf16 model decodes on a GPU by split-KV (attn_split.h): every query row of a step keeps
     each piece's partial output in the workspace until they are merged */
  if (sampler && dt == SRLM_BF16)
    p->workspace += srlm_attn_split_bytes(p->kv_len, (long long)SRLM_MEMPLAN_STEP_TOKENS * mc->num_attention_heads,
                                          mc->head_dim);
  p->total = p->weights + p->master + p->grads + p->moments + p->activations + p->startup + p->kv_cache + p->inference +
             p->scorer + p->workspace;
  return SRLM_OK;
}

int64_t srlm_memplan_kv_slots(size_t rest, size_t free_bytes, double fraction, size_t slot_bytes, int sharers) {
  if (slot_bytes == 0 || rest >= free_bytes || !(fraction > 0)) return 0;
  const double budget = floor(fraction * (double)(free_bytes - rest) / (double)(sharers > 1 ? sharers : 1));
  const double slots = floor(budget / (double)slot_bytes);
  return slots >= (double)INT32_MAX ? INT32_MAX : (int64_t)slots;
}

void srlm_memplan_size_kv(srlm_memplan *p, size_t free_bytes, size_t shared, int sharers) {
  p->shared = shared;
  p->sharers = sharers > 1 ? sharers : 1;
  if (!p->sampler) return;
  const size_t rest = p->total - p->kv_cache;
  p->kv_fit = srlm_memplan_kv_slots(rest + shared, free_bytes, p->kv_fraction, p->kv_slot_bytes, p->sharers);
  const int64_t bound = p->max_batch > 0 ? p->max_batch : SRLM_MEMPLAN_MAX_SLOTS;
  p->kv_slots = p->kv_fit < bound ? p->kv_fit : bound;
  p->kv_rule = p->kv_fit <= bound ? SRLM_MEMPLAN_KV_FRACTION : p->max_batch > 0 ? SRLM_MEMPLAN_KV_MAX_BATCH : SRLM_MEMPLAN_KV_CAP;
  p->kv_cache = p->kv_slot_bytes * (size_t)p->kv_slots;
  p->total = rest + p->kv_cache;
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

/* Why the plan has its KV-cache slots (srlm_memplan_kv_rule). */
static void kv_why(const srlm_memplan *p, char *buf, size_t cap) {
  const char *share = p->sharers > 1 ? " shared by the decoding ranks on this device" : "";
  switch (p->kv_rule) {
    case SRLM_MEMPLAN_KV_HOST:
      if (p->max_batch > 0)
        snprintf(buf, cap, "generate.max_batch");
      else
        snprintf(buf, cap, "host memory: generate.max_batch auto = %d", SRLM_MEMPLAN_HOST_SLOTS);
      break;
    case SRLM_MEMPLAN_KV_FRACTION:
      snprintf(buf, cap, "kv_memory_fraction %.3g%s", p->kv_fraction, share);
      break;
    case SRLM_MEMPLAN_KV_MAX_BATCH:
      snprintf(buf, cap, "generate.max_batch; kv_memory_fraction %.3g%s would hold %lld", p->kv_fraction, share,
               (long long)p->kv_fit);
      break;
    case SRLM_MEMPLAN_KV_CAP:
      snprintf(buf, cap, "at most %d with generate.max_batch auto; kv_memory_fraction %.3g%s would hold %lld",
               SRLM_MEMPLAN_MAX_SLOTS, p->kv_fraction, share, (long long)p->kv_fit);
      break;
    default:
      snprintf(buf, cap, "no decoding");
  }
}

void srlm_memplan_format(const srlm_memplan *p, size_t free_bytes, char *buf, size_t cap) {
  char a[32], b[32], c[32], d[32];
  int k = snprintf(buf, cap, "memory plan: %s", human(p->total, a));
  if (free_bytes && k > 0 && (size_t)k < cap) k += snprintf(buf + k, cap - (size_t)k, " of %s free", human(free_bytes, a));
  if (p->shared && k > 0 && (size_t)k < cap)
    k += snprintf(buf + k, cap - (size_t)k, " less %s for the other ranks on this device", human(p->shared, a));
  if (k > 0 && (size_t)k < cap)
    k += snprintf(buf + k, cap - (size_t)k, " (weights %s, master %s%s", human(p->weights, a), human(p->master, b),
                  p->learner && p->zero && p->learners > 1 && p->master ? " (ZeRO-1 shard)" : "");
  if (p->learner && k > 0 && (size_t)k < cap)
    k += snprintf(buf + k, cap - (size_t)k, ", gradients %s, moments %s%s, activations %s for %lld tokens",
                  human(p->grads, a), human(p->moments, b), p->zero && p->learners > 1 ? " (ZeRO-1 shard)" : "",
                  human(p->activations, c), (long long)p->micro_tokens);
  if (p->sampler && k > 0 && (size_t)k < cap) {
    char why[160];
    kv_why(p, why, sizeof why);
    k += snprintf(buf + k, cap - (size_t)k, ", KV cache %s for %lld x %lld positions (%s)", human(p->kv_cache, a),
                  (long long)p->kv_slots, (long long)p->kv_len, why);
  }
  if (p->inference && k > 0 && (size_t)k < cap)
    k += snprintf(buf + k, cap - (size_t)k, ", inference %s", human(p->inference, d));
  if (p->scorer && k > 0 && (size_t)k < cap)
    k += snprintf(buf + k, cap - (size_t)k, ", implicit reward's older model %s", human(p->scorer, d));
  if (p->startup && k > 0 && (size_t)k < cap)
    k += snprintf(buf + k, cap - (size_t)k, ", whole masters until the first step %s more", human(p->startup, a));
  if (k > 0 && (size_t)k < cap) snprintf(buf + k, cap - (size_t)k, ", workspace %s)", human(p->workspace, a));
}

srlm_status srlm_memplan_check(const srlm_memplan *p, size_t free_bytes, const char *device) {
  const int sized = p->kv_rule == SRLM_MEMPLAN_KV_FRACTION || p->kv_rule == SRLM_MEMPLAN_KV_MAX_BATCH ||
                    p->kv_rule == SRLM_MEMPLAN_KV_CAP;
  if (p->shared <= free_bytes && p->total <= free_bytes - p->shared) {
    if (!sized || p->kv_slots >= SRLM_MEMPLAN_MIN_SLOTS) return SRLM_OK;
    char plan[768], slot[32], left[32];
    srlm_memplan_format(p, free_bytes, plan, sizeof plan);
    const size_t rest = p->total - p->kv_cache + p->shared;
    return srlm_error(SRLM_ERR_NOMEM, device,
                      "this rank's %s: %lld KV-cache slot%s, fewer than %d: one slot (%lld positions) takes %s and "
                      "generate.kv_memory_fraction %.3g of the %s left after the rest of the plan%s holds %lld. To "
                      "fit: a larger generate.kv_memory_fraction (at most 1), shorter sequences (generate.max_new_tokens, "
                      "judge.max_new_tokens, data.max_prompt_tokens), or the roles on more "
                      "devices (roles.colocate: false, fewer ranks sharing a device)",
                      plan, (long long)p->kv_slots, p->kv_slots == 1 ? "" : "s", SRLM_MEMPLAN_MIN_SLOTS,
                      (long long)p->kv_len, human(p->kv_slot_bytes, slot), p->kv_fraction,
                      human(free_bytes - rest, left), p->sharers > 1 ? " (divided by the decoding ranks on this device)" : "",
                      (long long)p->kv_fit);
  }
  char plan[768], what[640];
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
    k += snprintf(what + k, sizeof what - (size_t)k, "; a smaller KV cache: fewer slots (generate.max_batch, now %lld) "
                  "or shorter slots (%lld positions: data.max_prompt_tokens, generate.max_new_tokens, "
                  "judge.max_new_tokens)", (long long)p->kv_slots, (long long)p->kv_len);
  if (p->learner && p->sampler && k >= 0 && (size_t)k < sizeof what)
    k += snprintf(what + k, sizeof what - (size_t)k, "; separate roles (roles.colocate: false) on more devices");
  if (p->shared && k >= 0 && (size_t)k < sizeof what)
    snprintf(what + k, sizeof what - (size_t)k, "; fewer ranks on this device (%.3f GiB for the others)", gib(p->shared));
  return srlm_error(SRLM_ERR_NOMEM, device, "this rank's %s does not fit: %.3f GiB needed, %.3f GiB free. To fit%s",
                    plan, gib(p->total + p->shared), gib(free_bytes), what[0] ? what : ": a device with more memory");
}
