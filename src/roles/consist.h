/* Internal to src/roles: what the learner's consistency methods need beyond the judge's
 * scores (issue 11; ALGORITHMS.md sections 5-7): the implicit reward of every sample
 * (DICE, CREAM, SCIR) and the replay of the previous iteration's pairs (DICE).
 *
 * The implicit reward, computed by the learners (they hold M_{t-1}, the policy of
 * iteration t, and compute reference log-probs anyway; judges keep nothing between
 * iterations, so the rule is the same in every role layout). logpi_u(y|x) is the summed
 * response log-prob of a sample under M_u (M_0 = the run's start model, model.path or the
 * fresh model of model.arch and run.seed; M_u = iter_<u>/model):
 *   R(M_u) = beta (logpi_u - logpi_{u-1})   for u >= 1 (beta = train.beta),
 *   R(M_0) = logpi_0 / |y|                   (no DPO model yet: CREAM's rule for M0,
 *                                             length-normalized log-likelihood).
 * Iteration t scores with cur = R(M_{t-1}) and (CREAM) prev = R(M_{t-2}), prev absent at
 * t = 1. M_{t-1} is the learner's model as the iteration starts (before any update; on a
 * LEARN resume, the iter_<t-1>/model the resume loads), the older ones are read from
 * their directories, so a resumed run scores exactly as the uninterrupted one. The
 * learners split the samples (sample g of the iteration, in shard and row order, goes to
 * learner g mod L) and sum the results over the learners (one all-reduce, with an error
 * flag, so a failure on one learner ends every learner with an error, none waits).
 * A sample with no response token has no reward (NaN). */
#ifndef SRLM_ROLES_CONSIST_H
#define SRLM_ROLES_CONSIST_H

#include "sr_internal.h"
#include "srlm/pref.h"

typedef struct sr_implicit {
  int64_t n;      /* samples of the iteration */
  int64_t *first; /* (shards + 1) shard i's samples are [first[i], first[i + 1]) */
  double *cur;    /* (n) R(M_{t-1}) */
  double *prev;   /* (n) R(M_{t-2}); NULL when not asked for or t = 1 */
} sr_implicit;

/* The implicit rewards of iteration t's shards sh (c->ro.shards_max, a dropped shard empty);
 * want_prev asks for prev too. Learners only; every learner calls it. */
srlm_status sr_implicit_rewards(sr_ctx *c, int t, const srlm_shard *sh, int want_prev, sr_implicit *out);
void sr_implicit_free(sr_implicit *im);

/* DICE's experience replay: round(gamma x P) of iteration t-1's P pairs (a Philox
 * permutation keyed by (run.seed, SR_RNG_PAIR_REPLAY, t) picks which), read back from
 * iter_<t-1>/rollouts.h5 (its shards and /pairs rows, weights and labels), so a resumed
 * run replays the same pairs. Nothing at t = 1. The pairs point into the shards kept here
 * until sr_pair_replay_free. weight/label (n) are the pairs' own (1 and eps when the file
 * has none: label_smoothing). */
#define SR_RNG_PAIR_REPLAY 0x5e21u
typedef struct sr_pair_replay {
  srlm_shard *sh;
  int64_t n_shards;
  srlm_pref_pair *pairs;
  int64_t *rows3; /* (n, 3) prompt index, chosen and rejected sample of iteration t-1 */
  double *weight, *label;
  int64_t n;
} sr_pair_replay;
srlm_status sr_pair_replay_read(sr_ctx *c, int t, double gamma, double label_smoothing, sr_pair_replay *out);
void sr_pair_replay_free(sr_pair_replay *r);

#endif
