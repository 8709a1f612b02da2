/* srlm memplan: what one rank of `srlm train` will hold in its backend's memory, worked
 * out from the config and the model's shape before anything is allocated (issue 10), so a
 * job that cannot fit stops at once with what to change instead of running out of memory
 * halfway.
 *
 * Lines (bytes; model.h's srlm_model_memory_plan gives the model's own numbers):
 *   weights      the compute copy (n_params x dtype size), every rank;
 *   master       the fp32 master copy of a bf16 model, every rank (the model keeps it);
 *   gradients    fp32, learners;
 *   moments      AdamW m and v, fp32, learners: divided over the learners with
 *                train.zero: 1 (each holds its range; rounded up to a whole element);
 *   activations  a learner's largest micro-batch: train.batch_size pairs x 2 sequences
 *                (GRPO: groups x K samples; SFT: examples) of train.max_seq_len tokens (or
 *                the model's max positions), with train.recompute as set;
 *   kv_cache     a generator's or judge's KV cache: SRLM_MEMPLAN_SLOTS sequences of
 *                data.max_prompt_tokens + generate.max_new_tokens + judge.max_new_tokens +
 *                SRLM_MEMPLAN_TEMPLATE_TOKENS (the judge template) positions, at most the
 *                model's max positions;
 *   inference    a generator's or judge's forward buffers for one step of at most
 *                SRLM_MEMPLAN_STEP_TOKENS tokens;
 *   workspace    SRLM_MEMPLAN_WORKSPACE: cuBLASLt's workspace (32 MiB), the LM head's logit
 *                chunks (16 MiB) and staging.
 * A colocated rank plays every role and holds the learner's and the samplers' lines.
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

#define SRLM_MEMPLAN_SLOTS 64
#define SRLM_MEMPLAN_TEMPLATE_TOKENS 1024
#define SRLM_MEMPLAN_STEP_TOKENS 4096
#define SRLM_MEMPLAN_WORKSPACE ((size_t)64 << 20)

typedef struct srlm_memplan {
  int learner, sampler;  /* the rank's roles: learner; generator or judge */
  int learners, zero;    /* learner ranks; train.zero */
  int64_t micro_seqs, micro_tokens; /* a learner's micro-batch */
  int64_t kv_slots, kv_len;
  size_t weights, master, grads, moments, activations, kv_cache, inference, workspace;
  size_t total;
} srlm_memplan;

/* The plan of a rank with the given roles, for model config mc and the config's dtype,
 * batch and role settings. */
srlm_status srlm_memplan_make(const srlm_config *cfg, const srlm_model_config *mc, int learner, int sampler,
                              int learners, srlm_memplan *out);

/* One line: "memory plan: 1.23 GiB of 80.0 GiB free (weights 0.5, master 1.0, ...)". */
void srlm_memplan_format(const srlm_memplan *p, size_t free_bytes, char *buf, size_t cap);

/* SRLM_ERR_NOMEM when p->total exceeds free_bytes, naming the largest lines and the config
 * keys that shrink them (train.batch_size, train.recompute, train.zero, model.arch.max_seq_len,
 * roles that share the device). device names the device in the message. */
srlm_status srlm_memplan_check(const srlm_memplan *p, size_t free_bytes, const char *device);

#ifdef __cplusplus
}
#endif
#endif
