/* srlm selfreward: the self-rewarding iterations M_t -> M_{t+1} (ALGORITHMS.md section 3,
 * RECIPES.md "Tiny self-rewarding from scratch on CPU") on a built-in task, in one
 * process that plays generator, judge and learner in turn (the colocated layout).
 *
 * Iteration t (1-based), from the model M as it is:
 *   generate  task.prompts_per_iteration fresh train prompts (instances (t-1)*n .. t*n-1),
 *             generate.samples_per_prompt samples each (generate.* sampling, RNG keyed by
 *             (run.seed, iteration, prompt, sample));
 *   judge     the model judges every sample with the task's judge format: the rationale
 *             greedily, then the score (judge.mode expected: the expected score over the
 *             score tokens; regex: the greedy score); the checker is NOT used;
 *   pairs     best vs worst per prompt (pairs.min_margin; ties and equal texts dropped);
 *   replay    the model's own greedy judgments, balanced by their verdict (up to
 *             judge.replay_per_verdict each way), as NLL examples;
 *   learn     reference log-probs from M (the iteration's start), then DPO/IPO/... with
 *             train.* (fresh AdamW each iteration) plus train.replay_weight x replay NLL;
 *   eval      held-out accuracy (greedy, checked by the checker) and judge agreement
 *             (one sampled answer per eval prompt, judged by the model, compared with the
 *             checker): the checker is used here and only here.
 * M_0 is evaluated before the first iteration (iteration 0). Each iteration saves
 * iter_<t>/model/ and appends metrics.jsonl lines (phase events and one
 * {"event":"eval","iteration":t,"accuracy":A,"judge_agreement":J,...} line).
 */
#ifndef SRLM_SELFREWARD_H
#define SRLM_SELFREWARD_H

#include "srlm/comm.h"
#include "srlm/config.h"
#include "srlm/llm_judge.h"
#include "srlm/prompts.h"
#include "srlm/core.h"
#include "srlm/model.h"
#include "srlm/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SRLM_SR_RNG_GENERATE 0x5e11u /* sample seq ids: (iteration, prompt * K + sample) */
#define SRLM_SR_RNG_EVAL 0x5e12u     /* eval samples for judge agreement */

/* One iteration's row of the summary table. */
typedef struct srlm_sr_iteration {
  int iteration;            /* 0 = the starting model */
  double accuracy;          /* held-out greedy accuracy (checker) */
  double sample_accuracy;   /* accuracy of one temperature sample per eval prompt */
  double judge_agreement;   /* judge verdict == checker on those samples */
  int64_t samples, pairs, replay;
  double mean_score;        /* mean judged score of the iteration's samples */
  double pair_accuracy;     /* pairs whose chosen sample the checker accepts and rejected not
                               (reported only; never used for training) */
  double loss_first, loss_last;
  double seconds;
} srlm_sr_iteration;

/* What the iterations run on. Every rank passes the same config, model weights (M0),
 * tokenizer and prompt set. The lead (world rank 0) writes run_dir/metrics.jsonl (new,
 * or cut back to the checkpoint and appended to on a resume), checkpoint.h5 and the
 * iteration folders. */
typedef struct srlm_sr_inputs {
  const srlm_config *cfg;
  srlm_comm *comm;                /* the job's communicators, roles assigned (size 1: one process) */
  const char *run_dir, *tok_dir;  /* tok_dir's tokenizer files are copied next to each saved model */
  srlm_model *m;                  /* trained in place */
  srlm_tokenizer *tok;
  const srlm_prompt_set *prompts; /* task.name none: data.prompts (else NULL) */
  srlm_llm_judge *llm;            /* task.name none: the text judge (else NULL) */
  int resume;                     /* srlm train --resume: start from run_dir's checkpoint.h5 (checkpoint.h) */
} srlm_sr_inputs;

/* Runs cfg->run.iterations iterations. rows (iterations + 1) receives the table (the
 * lead's is complete). Errors: SRLM_ERR_CONFIG for a prompt set with judge.source
 * verifier/mix or without stop ids; otherwise what a phase returned (under MPI the
 * caller ends the job: shards may be in flight). */
srlm_status srlm_selfreward_run(const srlm_sr_inputs *in, srlm_sr_iteration *rows);

#ifdef __cplusplus
}
#endif
#endif
