/* srlm checkpoint: the full state of a self-rewarding run, so `srlm train --resume`
 * after a kill at any point finishes with weights bit-identical to an uninterrupted run
 * of the same layout.
 *
 * One file, run.out_dir/run.name/checkpoint.h5 (store format "checkpoint", version 1),
 * replaced atomically (temp + rename) at each checkpoint, so a kill while writing leaves
 * the previous one. Two kinds:
 *   ITERATION t  iterations 1..t are complete: M_t is iter_<t>/model/ (float32 weights,
 *                exact), evaluated, with its metrics lines written. Resume starts
 *                iteration t + 1 from those weights (t = 0: from M0).
 *   LEARN t, s   iteration t's rollouts are in iter_<t>/rollouts.h5 and its learner has
 *                taken s optimizer steps (train.checkpoint_every): the file holds the
 *                weights and the AdamW moments and counters after step s, and the replay
 *                cursor. Resume re-reads the rollouts (no generation, no judging),
 *                recomputes the reference log-probs from M_{t-1} and continues at step
 *                s + 1.
 * Every random draw is keyed by (seed, purpose, iteration, prompt, sample, step) rather
 * than drawn from a running state (DESIGN.md invariant 3), so the RNG "counters" of a
 * checkpoint are its iteration and step; the data position (prompts consumed) follows
 * from them and is stored for the record. The resolved config is stored too: resuming
 * with a different config is an error naming the first differing line. metrics.jsonl is
 * cut back to its length at the checkpoint, so no line is written twice.
 *
 * The run folder must be visible to every learner rank (a shared file system on a
 * cluster): learners read a LEARN checkpoint's weights and moments themselves;
 * generators and judges get weights from the broadcast as always.
 */
#ifndef SRLM_CHECKPOINT_H
#define SRLM_CHECKPOINT_H

#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SRLM_CKPT_FILE "checkpoint.h5"
#define SRLM_CKPT_FORMAT "checkpoint"
#define SRLM_CKPT_VERSION 1

typedef enum srlm_ckpt_kind { SRLM_CKPT_ITERATION = 0, SRLM_CKPT_LEARN } srlm_ckpt_kind;

typedef struct srlm_checkpoint {
  srlm_ckpt_kind kind;
  int64_t iteration;      /* ITERATION: iterations complete; LEARN: the iteration being learned */
  int64_t step;           /* LEARN: optimizer steps done in it; ITERATION: 0 */
  int64_t data_position;  /* prompts consumed by the generators so far */
  int64_t metrics_bytes;  /* length of metrics.jsonl at the checkpoint */
  char *config_yaml;      /* the resolved config (srlm_config_to_yaml) */
  /* LEARN only (NULL / 0 for ITERATION): */
  int64_t n_params;
  float *params, *m, *v;  /* (n_params) each */
  int64_t optim_step, optim_skipped, replay_next;
  double first_loss;      /* LEARN: the iteration's first step's loss (for its report) */
  /* Both kinds, only with train.reference: ema (else 0 / NULL): WARP's EMA anchor as it is
   * at the checkpoint (it lives over the whole run), dataset /anchor, attribute n_anchor. */
  int64_t n_anchor;
  float *anchor;          /* (n_anchor) */
} srlm_checkpoint;

/* Writes run_dir/checkpoint.h5 (replacing the old one atomically). */
srlm_status srlm_checkpoint_save(const char *run_dir, const srlm_checkpoint *c);

/* Reads run_dir/checkpoint.h5 into c (free with srlm_checkpoint_free). *found = 0 (and
 * SRLM_OK) when there is none; a malformed file is an SRLM_ERR_FORMAT error naming it. */
srlm_status srlm_checkpoint_load(const char *run_dir, srlm_checkpoint *c, int *found);

/* Whether a run may resume under the resolved config yaml (the checkpoint's own is
 * c->config_yaml; both srlm_config_to_yaml). Keys compared one by one: the keys that do
 * not change results may differ (run.iterations, run.log_level, run.rank_timeout,
 * run.tensorboard, run.device, train.zero, train.recompute, train.overlap_reduce and
 * train.reduce_bucket_mb (the same bits), generate.max_batch and generate.kv_memory_fraction
 * (the batch, not the samples), roles.*
 * but roles.shard_prompts, and run.comm: the rank layout, transport and threads; a LEARN
 * checkpoint holds the full optimizer state, so any learner count can continue it), each
 * difference logged; any other difference is SRLM_ERR_CONFIG naming every such key with
 * both values. */
srlm_status srlm_checkpoint_check_config(const srlm_checkpoint *c, const char *yaml, const char *run_dir);

void srlm_checkpoint_free(srlm_checkpoint *c);

#ifdef __cplusplus
}
#endif
#endif
