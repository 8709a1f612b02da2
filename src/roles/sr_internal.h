/* Internal to src/roles: what selfreward.c (the driver: shard movement, iterations,
 * resume), learn.c (the learner's iteration) and evaluate.c (the evaluation of M_t)
 * share: the driver's state and the metrics.jsonl writer. The lead learner (world rank 0)
 * owns metrics.jsonl; everything that reports writes through sr_metrics_line. */
#ifndef SRLM_ROLES_SR_INTERNAL_H
#define SRLM_ROLES_SR_INTERNAL_H

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>

#include "rollout.h"
#include "srlm/checkpoint.h"
#include "srlm/comm.h"
#include "srlm/pref.h"
#include "srlm/selfreward.h"
#include "srlm/tfevents.h"

/* The driver's state on one rank (srlm_selfreward_run). */
typedef struct sr_ctx {
  const srlm_config *cfg;
  srlm_comm *comm;
  sr_rollout ro;
  const char *run_dir, *tok_dir;
  FILE *metrics; /* learner 0 */
  srlm_tfevents *tb;   /* learner 0 with run.tensorboard: the same metrics as scalars */
  int64_t *learn_steps; /* learner 0: per iteration, its last reported learner step */
  srlm_sr_iteration *rows;
  bool lead;     /* learner 0 = world rank 0: reports, writes files */
  int64_t n_params;
  char *yaml;                /* the resolved config, stored in checkpoints */
  const srlm_checkpoint *ck; /* resuming inside an iteration's learning (LEARN), else NULL */
  bool resumed;              /* started from a checkpoint (every rank knows) */
  bool resume_learn;         /* ... of kind LEARN: the start iteration's rollouts exist */
  int64_t resume_metrics_bytes; /* the lead: metrics.jsonl's length at the checkpoint */
  const srlm_prompt_set *eval;  /* the lead: data.eval_prompts (prompt sets), else NULL */
  /* learners with train.reference: ema: WARP's EMA anchor, a full copy on every learner
   * (each applies the same update to the same weights), kept over the whole run (it
   * starts at M0 and never restarts), saved in every checkpoint; else NULL */
  srlm_model *anchor;
  /* the lead of a bf16 ZeRO-1 run (each learner holds a shard of the fp32 masters): the
   * model's and the anchor's (NULL without one) full masters, gathered at the end of each
   * iteration's learning, for iter_<t>/model and the ITERATION checkpoint; else NULL */
  float *master_host, *anchor_host;
} sr_ctx;

/* The anchor's values on the host (c->n_params floats, malloc'd) for a checkpoint; NULL
 * without an anchor. The lead's, outside the learning (c->anchor_host when gathered). */
srlm_status sr_anchor_host(sr_ctx *c, float **out);
/* The fp32 master of m (a learner's model or anchor) whole on the host of the lead
 * (malloc'd, *out): its own, or with a bf16 ZeRO-1 shard gathered from every learner (a
 * collective then: every learner calls it at the same point, and sends its range). Other
 * learners get *out = NULL: only the lead writes checkpoints and iteration models. */
srlm_status sr_master_host(sr_ctx *c, srlm_model *m, float **out);

/* The learners' common verdict on values each computed a share of: x (n + 1 doubles) holds
 * this learner's share and zeros elsewhere, x[n] is free for the error flag; st is this
 * learner's status. With several learners x is summed over them (one all-reduce: a value
 * plus zeros is that value, bit for bit), so every learner ends with every value, and every
 * learner returns an error when any failed (the failing one its own message, the others
 * "another learner failed to compute its share of <what>"), so none waits on a dead peer.
 * One learner: nothing moves, st comes back. Collective over the learners. */
srlm_status sr_learners_sum(srlm_comm *comm, double *x, int64_t n, srlm_status st, const char *what);

/* Writes o (consumed) as one compact line of c->metrics and flushes it; with c->tb, also
 * each of its numbers as a TensorBoard scalar "<event>/<key>" (and flushes): at step
 * `iteration` for iteration and eval lines, and for learn lines at the run's learner step
 * (the steps of the iterations before plus the line's step, so steps continue across
 * iterations and resumes). */
srlm_status sr_metrics_line(sr_ctx *c, json_t *o);

/* A metrics value: NaN and infinities become null (JSON has no such numbers). */
static inline json_t *sr_num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* The learner's iteration t on its scored shards sh (c->ro.shards, by shard index; a
 * dropped shard is all zero), stale of them dropped: pairs or groups, rollouts.h5 (the
 * lead), training of c->ro.m; fills row's data and loss columns. */
srlm_status sr_learn(sr_ctx *c, int t, srlm_shard *sh, int64_t stale, srlm_sr_iteration *row);

/* The iteration line's keys of issue 11's pair sources and consistency rules (row's
 * votes_*, pairs_disagree, pairs_replayed, pair_weight_mean, consistency_mean,
 * length_alpha), added to o when the config uses them (learn.c). */
void sr_consist_report(const srlm_config *cfg, const srlm_sr_iteration *row, json_t *o);
/* Informative GRPO groups of shards sh[0 .. n_shards) (all K samples there, rewards not all
 * equal): what DAPO's refill counts (rollout.h). */
int64_t sr_informative_groups(const sr_ctx *c, const srlm_shard *sh, int64_t n_shards);

/* One vote of the ranks' common stop point (stop.h): every rank of the world calls it the
 * same number of times. Its inputs: a signal that asked this rank to stop, and done (a
 * learner whose iteration's learning is over). *sig = the largest signal number any rank
 * got (0: nobody asks to stop), *all_done (may be NULL) = some learner is done.
 * Where the votes are (selfreward.c, learn.c): at the top of every iteration (stop:
 * the last ITERATION checkpoint stands), after every optimizer step but the last of an
 * iteration (stop: a LEARN checkpoint), and, with separate roles, generators and judges
 * vote while the learners train, until the learners' done vote. */
srlm_status sr_stop_vote(sr_ctx *c, int done, int *sig, bool *all_done);

/* The SRLM_ERR_STOPPED error of a stop at `where`, agreed on signal sig. */
srlm_status sr_stopped(const sr_ctx *c, int sig, const char *where);

/* Meta-Rewarding (meta.enabled; include/srlm/meta.h): the learner's meta-judging of an
 * iteration's scored shards sh (ro->shards_max of them, a dropped or unused one all zero) with the
 * model as it is (M_{t-1}: before any training step, so a LEARN resume, which reads the
 * shards back and starts from M_{t-1}, meta-judges the same). Per prompt the response
 * whose judgments vary most; its comparisons in both orders, the task's meta-judge
 * format (tasks.h) or meta.template (llm_judge.h); Elo; one judge pair when the best
 * and worst Elo differ: prompt = the judge prompt, chosen/rejected = the two judgments
 * (the task: the parsed 10 characters + EOS; a prompt set: the judge's own tokens). The
 * meta-judge runs on the learners, not the judge ranks: its verdicts are read from the
 * same weights either way, and the shard format needs no new arrays. Every learner
 * computes the same pairs (deterministic: greedy verdicts, a deterministic Elo fit). */
typedef struct sr_meta {
  srlm_token_ids store;  /* the pairs' tokens */
  int64_t *spans;        /* (n, 6) prompt, chosen, rejected: offset and length in store */
  int64_t *rows;         /* (n, 4) prompt_index, sample_index, chosen and rejected judgment */
  int64_t n, cap, cap_rows;
  int64_t responses;        /* responses meta-judged (one per prompt at most) */
  int64_t comparisons;      /* ordered meta-judgments (2 per compared pair of judgments) */
  int64_t agreeing;         /* compared pairs whose two orders name the same winner */
  int64_t format_failures;  /* ordered meta-judgments without a verdict in the format */
  int64_t too_long;         /* prompt sets: meta prompts past the model's positions (no verdict) */
  double elo_spread_sum;    /* over the pairs: Elo(chosen) - Elo(rejected) */
  int64_t pairs_better_by_checker; /* task: chosen judgment better by the checker (reported only) */
} sr_meta;

srlm_status sr_meta_judge(const sr_rollout *ro, const srlm_shard *sh, sr_meta *out);
/* The judge pairs (mj->n of them) as preference pairs pointing into mj->store. */
void sr_meta_pairs(const sr_meta *mj, srlm_pref_pair *out);
void sr_meta_free(sr_meta *mj);

/* Evaluation of M_t when eval.every asks (every N iterations and the last; 0 = never);
 * the lead learner only. Fills row's evaluation columns (NaN when not evaluated). */
srlm_status sr_evaluate_model(sr_ctx *c, int t, srlm_sr_iteration *row);

#endif
