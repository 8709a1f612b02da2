/* srlm memplan: what one rank of `srlm train` will hold in its backend's memory, worked
 * out from the config and the model's shape before anything is allocated (issue 10), so a
 * job that cannot fit stops at once with what to change instead of running out of memory
 * halfway.
 *
 * Lines (bytes; model.h's srlm_model_memory_plan gives the model's own numbers):
 *   weights      the compute copy (n_params x dtype size), every rank;
 *   master       the fp32 master copy of a bf16 model (and of a learner's EMA anchor),
 *                learners only: a generator or judge that does not learn keeps none (it
 *                decodes the bf16 compute copy the weight broadcast writes, model.h
 *                SRLM_MODEL_DECODE), nor does ARGS's implicit reference (it only scores);
 *                with train.zero: 1 a learner keeps only its ZeRO-1 range of it, as of the
 *                moments (the largest shard; "(ZeRO-1 shard)" on the plan line), from the
 *                first training step on: before it (iteration 1's generation, judging and
 *                evaluation) the masters are whole while gradients, moments and
 *                activations are not yet allocated; `startup` is what that phase needs
 *                beyond the later one, counted in the total;
 *   gradients    fp32, learners;
 *   moments      AdamW m and v, fp32, learners: divided over the learners with
 *                train.zero: 1 (each holds its range; rounded up to a whole element);
 *   activations  a learner's largest micro-batch: train.batch_size pairs x 2 sequences
 *                (GRPO: groups x K samples; SFT: examples) of train.max_seq_len tokens (or
 *                the model's max positions), with train.recompute as set;
 *   kv_cache     a decoding rank's KV cache (generators, judges, and learners that decode:
 *                the caller says which): kv_slots sequences of data.max_prompt_tokens +
 *                generate.max_new_tokens + judge.max_new_tokens + SRLM_MEMPLAN_TEMPLATE_TOKENS
 *                (the judge template) positions (with meta.enabled + judge.max_new_tokens +
 *                meta.max_new_tokens: the meta-judge sees two judgments), at most the
 *                model's max positions; twice with ARGS's implicit reference, which keeps
 *                its own cache. The slots are the roles' batch (srlm_sr_inputs.max_batch:
 *                generation, judging and evaluation decode that many sequences at once),
 *                worked out here:
 *                  host memory (the cpu backend): generate.max_batch, or 0 = auto =
 *                    SRLM_MEMPLAN_HOST_SLOTS; srlm_memplan_make does this;
 *                  a device (cuda, cuda-sim): srlm_memplan_size_kv: as many as
 *                    generate.kv_memory_fraction of the memory left after every other line
 *                    holds (srlm_memplan_kv_slots), at most generate.max_batch, or with
 *                    auto at most SRLM_MEMPLAN_MAX_SLOTS (past a few hundred sequences a
 *                    step's fixed costs are small next to its tokens); fewer than
 *                    SRLM_MEMPLAN_MIN_SLOTS is refused by srlm_memplan_check;
 *   inference    forward buffers of inference passes (srlm_model_memory's infer: layer
 *                activations, scratch and the head's rows), one set per model, as large as
 *                its largest pass: a decoding rank's step of at most SRLM_MEMPLAN_STEP_TOKENS
 *                tokens; a learner's log-prob passes (reference log-probs, the implicit
 *                reward's current model) of SRLM_MEMPLAN_LOGPROB_TOKENS or one pair of the
 *                longest sequences (kv_len's bound), and SAR's perplexities (judge.source
 *                sar; counted on every decoding rank, judges run them); plus the EMA anchor's passes of a micro-batch
 *                (a learner's) and ARGS's reference's steps (a decoding rank's);
 *   scorer       a learner of the implicit reward (pairs.source implicit, pairs.consistency
 *                cream or scir): the older models it scores with (M_{t-2}, CREAM's M_{t-3}),
 *                loaded decode-only one at a time: a compute copy and its log-prob pass
 *                buffers;
 *   workspace    SRLM_MEMPLAN_WORKSPACE: cuBLASLt's workspace (32 MiB), the LM head's logit
 *                chunks (16 MiB) and staging; on a decoding rank of a bf16 model also the
 *                split-KV pieces of a step of SRLM_MEMPLAN_STEP_TOKENS query rows against
 *                kv_len positions (attn_split.h: srlm_attn_split_bytes), which the GPU's
 *                tensor-core attention_kv keeps there.
 * A colocated rank plays every role and holds the learner's and the samplers' lines (inference:
 * one model, so the largest pass of either).
 * Not counted: on the CPU backend a rank that decodes also keeps its weights once more,
 * packed as fp32 for the matmul's micro-kernel (backend.h, matmul's b_version), host memory
 * that no device limit applies to.
 * Upper bounds where the data decide (sequence lengths); exact for the parameter lines.
 */
#ifndef SRLM_MEMPLAN_H
#define SRLM_MEMPLAN_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/config.h"
#include "srlm/core.h"
#include "srlm/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SRLM_MEMPLAN_HOST_SLOTS 64
#define SRLM_MEMPLAN_MAX_SLOTS 1024
#define SRLM_MEMPLAN_MIN_SLOTS 1
#define SRLM_MEMPLAN_TEMPLATE_TOKENS 1024
#define SRLM_MEMPLAN_STEP_TOKENS 4096
/* the token budget of one log-prob pass (srlm_grpo_logps, srlm_pref_ref_logps) of srlm train */
#define SRLM_MEMPLAN_LOGPROB_TOKENS 16384
#define SRLM_MEMPLAN_WORKSPACE ((size_t)64 << 20)

/* How kv_slots was chosen. */
typedef enum srlm_memplan_kv_rule {
  SRLM_MEMPLAN_KV_NONE = 0,  /* the rank does not decode */
  SRLM_MEMPLAN_KV_HOST,      /* host memory: generate.max_batch, or SRLM_MEMPLAN_HOST_SLOTS */
  SRLM_MEMPLAN_KV_FRACTION,  /* device: what kv_memory_fraction holds (kv_fit) */
  SRLM_MEMPLAN_KV_MAX_BATCH, /* device: generate.max_batch, below kv_fit */
  SRLM_MEMPLAN_KV_CAP        /* device, auto: SRLM_MEMPLAN_MAX_SLOTS, below kv_fit */
} srlm_memplan_kv_rule;

typedef struct srlm_memplan {
  int learner, sampler;  /* the rank's roles: learner; decodes (generator, judge, or a learner that decodes) */
  int learners, zero;    /* learner ranks; train.zero */
  int64_t micro_seqs, micro_tokens; /* a learner's micro-batch */
  int64_t kv_slots, kv_len;
  size_t kv_slot_bytes;   /* one slot: kv_len positions (x2 with ARGS's implicit reference) */
  int max_batch;          /* generate.max_batch (0 = auto) */
  double kv_fraction;     /* generate.kv_memory_fraction */
  srlm_memplan_kv_rule kv_rule;
  int64_t kv_fit;         /* sized from free memory: the slots kv_fraction holds, before the bound */
  size_t shared;          /* sized from free memory: other ranks' plans on the same device */
  int sharers;            /* decoding ranks that divide the KV budget (this one included), >= 1 */
  size_t weights, master, grads, moments, activations, kv_cache, inference, scorer, workspace;
  size_t startup; /* ZeRO-1, bf16: what the whole masters before the first step exceed the later lines by */
  size_t total;
} srlm_memplan;

/* The plan of a rank with the given roles (sampler: it decodes), for model config mc and
 * the config's dtype, batch and role settings; the KV cache as on host memory (kv_rule
 * HOST). cfg's values are checked ranges (config_options.c). */
srlm_status srlm_memplan_make(const srlm_config *cfg, const srlm_model_config *mc, int learner, int sampler,
                              int learners, srlm_memplan *out);

/* The KV-cache slots that fraction of the memory left holds: floor(fraction x (free_bytes -
 * rest) / sharers) bytes (the product in double) divided by slot_bytes, whole slots; 0 when
 * rest >= free_bytes. rest: every other line of the plans on the device (this rank's and
 * the others'); sharers: the decoding ranks on it, which divide the budget evenly. Capped
 * at INT32_MAX. */
int64_t srlm_memplan_kv_slots(size_t rest, size_t free_bytes, double fraction, size_t slot_bytes, int sharers);

/* A rank's plan on a device with free_bytes free. shared: the other ranks' plans on the
 * same device (their lines but the KV cache), which srlm_memplan_check counts too; sharers:
 * the decoding ranks there, this one included (<= 1 means 1). A decoding rank's kv_slots
 * (and kv_cache, total) are sized from the free memory as the header says; a rank that
 * does not decode keeps no KV cache. */
void srlm_memplan_size_kv(srlm_memplan *p, size_t free_bytes, size_t shared, int sharers);

/* One line: "memory plan: 1.23 GiB of 80.0 GiB free (weights 0.5, master 1.0, ..., KV cache
 * 3.2 GiB for 412 x 1536 positions (kv_memory_fraction 0.9), ...)": the KV cache's slots and
 * the rule that chose them. */
void srlm_memplan_format(const srlm_memplan *p, size_t free_bytes, char *buf, size_t cap);

/* SRLM_ERR_NOMEM when p->total plus p->shared exceeds free_bytes, naming the largest lines
 * and the config keys that shrink them (train.batch_size, train.recompute, train.zero,
 * generate.max_batch, model.arch.max_seq_len, roles that share the device); or when a plan
 * sized from free memory has fewer than SRLM_MEMPLAN_MIN_SLOTS KV-cache slots, naming
 * generate.kv_memory_fraction, the sequence lengths (generate.max_new_tokens,
 * judge.max_new_tokens, data.max_prompt_tokens, model.arch.max_seq_len) and the roles on
 * more devices. device names the device in the message. */
srlm_status srlm_memplan_check(const srlm_memplan *p, size_t free_bytes, const char *device);

#ifdef __cplusplus
}
#endif
#endif
