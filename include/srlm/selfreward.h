/* srlm selfreward: the self-rewarding iterations M_t -> M_{t+1} (ALGORITHMS.md sections
 * 1-3, RECIPES.md "Tiny self-rewarding from scratch on CPU") over MPI roles (comm.h): in
 * one process, on colocated ranks, or on separate generator, judge and learner ranks.
 * Work moves as rollout shards (shard.h; src/roles/rollout.h says how prompts are cut).
 *
 * Iteration t (1-based), from M_{t-1} (separate roles: learner 0 broadcasts it, version
 * t - 1, to generators and judges first: the weights they decode with, a bf16 model's as
 * its bf16 compute copy; generators and judges hold no fp32 master, model.h
 * SRLM_MODEL_DECODE, and serve their ARGS reference from a decode-only copy too):
 *   generate  n prompts: a task's fresh train instances (t-1)*n .. t*n-1
 *             (task.prompts_per_iteration), or the next data.prompts_per_iteration rows
 *             of the prompt set (wrapping; 0 = all); generate.samples_per_prompt samples
 *             each (generate.* sampling, RNG keyed by (run.seed, iteration, prompt, sample));
 *   judge     judge.source model: with a task, the task's judge format (the rationale
 *             greedily, then the score: judge.mode expected = the expected score over the
 *             score tokens, regex = the greedy score); with a prompt set, the text judge
 *             (llm_judge.h: judge.template, judge.samples judgments, judge.score_regex).
 *             verifier: the task's checker (score_max / score_min); mix: both, weighted by
 *             judge.verifier_weight; sar: the verifier plus the self-aligned reward of two
 *             forward passes of the judge's policy copy; bleu: BLEU-4 against the prompt's
 *             references (a prompt set's "reference", the sign puzzle's correct answers)
 *             (rewards.h). With source model the checker is NOT used;
 *   pairs     best vs worst per prompt (pairs.min_margin; ties and equal texts dropped),
 *             or for train.loss grpo, groups of the K samples with normalized advantages
 *             (train.grpo_std_scope: each group's std or the iteration's; with
 *             train.grpo_equal_groups drop, groups whose rewards are all equal are left
 *             out; both counted in the iteration line: groups_all_equal, groups_dropped;
 *             with refill, DAPO's dynamic sampling, also extra prompts are generated in
 *             rounds while the informative groups are fewer than the iteration's prompts
 *             (srlm_refill_next, train.grpo_refill_rounds / grpo_refill_prompts; every rank
 *             takes part in each round) and the first n informative groups in prompt order
 *             are trained: groups_refilled, groups_surplus, prompts_generated, short_by);
 *   replay    (task judge) the model's own greedy judgments, balanced by their verdict (up
 *             to judge.replay_per_verdict each way), as NLL examples;
 *   learn     reference log-probs from M_{t-1}, then DPO/IPO/SFT (+ NLL, + replay) or GRPO
 *             with train.* (fresh AdamW each iteration), each step split over the learners
 *             (dp.h) with gradients summed in rank order;
 *   eval      held-out accuracy (greedy, checked by the checker) and judge agreement
 *             (one sampled answer per eval prompt, judged by the model, compared with the
 *             checker): the checker is used here and only here; with eval.best_of N also
 *             best-of-N accuracy: N samples per eval prompt (generate.* sampling, keys
 *             SRLM_SR_RNG_BEST_OF), scored by the training reward (judge.source, the same
 *             code as the judge role) and the best one (the lowest sample among equals)
 *             checked.
 * M_0 is evaluated before the first iteration (iteration 0). Each iteration saves
 * iter_<t>/rollouts.h5 (every shard, the pairs, the counts) and iter_<t>/model/, and
 * appends metrics.jsonl lines (learn steps: loss, chosen/rejected log-probs and rewards,
 * margin, reward accuracy, kl (DPO family: the mean sequence log-ratio log pi - log pi_ref,
 * a sampled proxy; GRPO: the mean per-token k3 estimate), grad norm, lengths, tokens/s;
 * one "iteration" line and, with a task, one
 * {"event":"eval","iteration":t,"accuracy":A,"judge_agreement":J,...} line); checkpoints
 * as checkpoint.h says. With separate roles, M_t is evaluated by learner 0 while the
 * generators start iteration t + 1.
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
#define SRLM_SR_RNG_BEST_OF 0x5e13u  /* eval.best_of samples: (iteration, prompt * N + sample) */

/* One iteration's row of the summary table. */
typedef struct srlm_sr_iteration {
  int iteration;            /* 0 = the starting model */
  double accuracy;          /* held-out greedy accuracy (checker) */
  double sample_accuracy;   /* accuracy of one temperature sample per eval prompt */
  double judge_agreement;   /* judge verdict == checker on those samples */
  double eval_score;        /* prompt sets: mean self-judged score of the greedy eval answers */
  double best_of_accuracy;  /* eval.best_of: the best of N samples by judge.source, checked (NaN: off) */
  int64_t samples, pairs, replay;
  /* the judge's format health over the iteration's judgments (shard.h
     srlm_shard_judge_health; 0 with judge.source verifier) */
  int64_t judgments, judge_format_failures, judgments_without_score;
  /* GRPO: groups whose rewards are all equal, and those of them dropped
     (train.grpo_equal_groups drop) */
  int64_t groups_all_equal, groups_dropped;
  /* Meta-Rewarding (meta.enabled): pairs = actor_pairs + judge_pairs; the meta-judge's
     responses, ordered comparisons, pairs agreeing in both orders, comparisons without a
     verdict, the judge pairs' mean Elo spread, and (a task, reported only) the fraction of
     judge pairs whose chosen judgment is the better one by the checker */
  int64_t actor_pairs, judge_pairs, meta_responses, meta_comparisons, meta_agreeing, meta_format_failures;
  double elo_spread, judge_pair_accuracy;
  /* train.grpo_equal_groups refill: informative groups trained from the extra prompts,
     informative groups past the target left out, prompts generated in all (the
     iteration's and the extra), and informative groups still missing */
  int64_t groups_refilled, groups_surplus, prompts_generated, short_by;
  double mean_score;        /* mean judged score of the iteration's samples */
  /* judge.source sar: the mean R_SA and the fraction the checker accepts; bleu: the mean
     BLEU (NaN otherwise); from the shards' judgment records (rollout.h) */
  double sar_mean, verifier_right, bleu_mean;
  double pair_accuracy;     /* pairs whose chosen sample the checker accepts and rejected not
                               (reported only; never used for training) */
  double loss_first, loss_last;
  double seconds;
  /* the iteration's phases on the lead learner (issue 10's seconds per phase): rollouts
     (from the iteration's start until every scored shard is in: generation and judging,
     which overlap with separate roles), of which generating and judging on the lead itself
     (colocated only: with separate roles other ranks do them, NaN), and learning (pairs or
     groups, reference log-probs, optimizer steps); saving and evaluating M_t are the rest;
     all NaN for the iteration a LEARN checkpoint resumes (rollouts read back, part of a learning) */
  double rollout_seconds, generate_seconds, judge_seconds, learn_seconds;
  double anchor_distance;   /* train.reference ema: |theta - theta_ema| / |theta| after learning (NaN otherwise) */
  double mean_response_tokens; /* mean tokens per sample, a stopping EOS included */
  /* issue 11's pair sources and consistency rules (pairs.source votes/implicit,
     pairs.consistency, pairs.replay_fraction; 0 / NaN when off): ScPO's prompts without
     a pair (fewer than 2 distinct answers, all answers equally voted, top vote below
     pairs.vote_threshold) and samples without an answer; SCIR's pairs the implicit reward
     orders the other way (dropped or down-weighted); pairs replayed from iteration t-1;
     the mean loss weight and CREAM consistency C of the pairs; DICE's length alpha */
  int64_t votes_one_answer, votes_tie, votes_below_threshold, votes_no_answer;
  int64_t pairs_disagree, pairs_replayed;
  double pair_weight_mean, consistency_mean, length_alpha;
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
  const srlm_prompt_set *eval_prompts; /* task.name none, the lead: data.eval_prompts (NULL = no evaluation) */
  int resume;                     /* srlm train --resume: start from run_dir's checkpoint.h5 (checkpoint.h) */
  int max_batch;                  /* sequences this rank decodes at once: its memory plan's KV-cache
                                     slots (memplan.h); 0 on a rank that does not decode */
  int64_t kv_positions;           /* on a device: the positions those slots hold (the model's KV budget,
                                     model.h); 0: no bound */
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
