/* srlm pairs: turning judged candidates into training examples (ALGORITHMS.md
 * sections 2-4, RECIPES.md): one DPO pair per prompt, or GRPO advantages per group.
 *
 * Scores: one mean score per candidate; NaN (any non-finite value) marks an unscored
 * candidate (every judgment unparsable, srlm_judge_score); such candidates are never
 * picked.
 *
 * DPO pair of one prompt (srlm_pairs_select), in this order of checks, each counted:
 *   1. fewer than 2 scored candidates: prompt skipped (skipped_prompts);
 *   2. S_max == S_min: tie, dropped (dropped_tie);
 *   3. chosen = the highest score, rejected = the lowest, lowest index among equals;
 *      with length control (Meta-Rewarding, rho in [0, 0.5)): chosen = the SHORTEST
 *      candidate scoring in [(1-rho) S_max + rho S_min, S_max], rejected = the LONGEST in
 *      [S_min, (1-rho) S_min + rho S_max], lowest index among equal lengths;
 *   4. margin = score(chosen) - score(rejected) < min_margin: dropped (dropped_margin);
 *   5. byte-identical texts: dropped (dropped_equal_text): the pair would teach nothing
 *      but the judge's noise.
 * The selection is a pure function of its inputs (no randomness).
 *
 * GRPO groups (srlm_group_advantages): A_i = (r_i - mean r) / (std r + eps) with the
 * sample standard deviation (n - 1 in the denominator, as TRL computes it), or
 * A_i = r_i - mean r without std (Dr.GRPO). Mean and std run over the group's scored
 * samples; unscored samples (non-finite) get A = 0 and are counted. A group whose scored
 * rewards are all equal (or that has fewer than 2 scored) carries no signal: every A is
 * exactly 0 (not a rounding residue) and it is counted in zero_variance.
 * With batch_std the std is not the group's but that of every scored reward of the
 * n_groups groups together (sample std, n - 1; TRL's scale_rewards "batch"): the mean is
 * still each group's own, so a group's advantages keep their sum 0, while groups of
 * rare disagreement no longer get the large advantages a tiny group std gives them.
 * Zero-variance groups stay exactly 0 either way. eps is train.grpo_std_eps (default
 * SRLM_GROUP_STD_EPS = 1e-6, which the measured results used; TRL uses 1e-4): with
 * rewards of an {1, 5} scale the std of a mixed group is >= 1.6, so eps only matters for
 * near-equal rewards such as expected scores.
 */
#ifndef SRLM_PAIRS_H
#define SRLM_PAIRS_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srlm_pair_options {
  double min_margin;  /* pairs.min_margin: least score gap kept (>= 0) */
  int length_control; /* 1: Meta-Rewarding length control (needs lengths) */
  double length_rho;  /* rho in [0, 0.5); rho = 0 keeps the extreme scores, shortest/longest among them */
} srlm_pair_options;

typedef struct srlm_pair_stats {
  int64_t prompts;            /* prompts seen */
  int64_t pairs;              /* pairs made */
  int64_t skipped_prompts;    /* fewer than 2 scored candidates */
  int64_t dropped_tie;        /* S_max == S_min */
  int64_t dropped_margin;     /* margin below min_margin */
  int64_t dropped_equal_text; /* chosen and rejected byte-identical */
  int64_t unscored;           /* candidates without a score (over all prompts) */
} srlm_pair_stats;

typedef struct srlm_pair {
  int chosen, rejected; /* candidate indices in [0, k) */
  double margin;        /* score(chosen) - score(rejected) > 0 */
} srlm_pair;

/* Picks the pair of one prompt with k candidates. scores (k) mean scores (NaN =
 * unscored); texts (k) the candidates' bytes with lens (k) their lengths (lens NULL:
 * NUL-terminated); lengths (k) the lengths length control compares (tokens, say), NULL
 * unless length_control. *made = 1 and *pair filled when a pair is kept, else 0.
 * stats accumulates (may be NULL). Errors: bad options (SRLM_ERR_CONFIG). */
srlm_status srlm_pairs_select(const srlm_pair_options *o, int k, const double *scores,
                              const char *const *texts, const size_t *lens, const int64_t *lengths,
                              srlm_pair *pair, int *made, srlm_pair_stats *stats);

/* The std epsilon srlm uses for GRPO (added to the std, not under a square root). */
#define SRLM_GROUP_STD_EPS 1e-6

typedef struct srlm_group_options {
  int use_std;   /* 1: divide by (std + eps) (GRPO); 0: Dr.GRPO */
  double eps;    /* >= 0; train.grpo_std_eps, SRLM_GROUP_STD_EPS by default */
  int batch_std; /* 1: the std over all the groups' scored rewards; 0: each group's own */
} srlm_group_options;

typedef struct srlm_group_stats {
  int64_t groups;
  int64_t samples;
  int64_t zero_variance; /* groups with all scored rewards equal or fewer than 2 scored */
  int64_t unscored;      /* samples with a NaN reward (advantage 0) */
} srlm_group_stats;

/* 1 when a group of g rewards (NaN = unscored) carries no signal: fewer than 2 scored or
 * all scored rewards equal (zero_variance above; DAPO's dynamic sampling drops these). */
int srlm_group_all_equal(int g, const double *rewards);

/* DAPO's dynamic-sampling refill (train.grpo_equal_groups refill): the extra prompts the
 * next generation round makes, 0 when no round is due. target: informative groups wanted
 * (the iteration's prompts); informative: those so far; generated: prompts so far (the
 * iteration's plus the extra); extra_done: extra prompts so far; cap: extra prompts at most;
 * rounds_done/max_rounds: extra rounds so far and at most; per: prompts per shard.
 * No round once informative >= target, rounds_done >= max_rounds or extra_done >= cap.
 * Otherwise the missing groups over the informative rate so far (need x generated /
 * informative, rounded up; all of the cap left when nothing was informative yet), at
 * least need, rounded up to whole shards of per prompts and cut at the cap. A pure
 * function of counts: every layout of ranks makes the same rounds. */
int64_t srlm_refill_next(int64_t target, int64_t informative, int64_t generated, int64_t extra_done, int64_t cap,
                         int rounds_done, int max_rounds, int per);

/* Advantages of n_groups groups of g samples each, group j = samples [j g, (j+1) g).
 * rewards (n_groups * g), NaN = unscored; adv (n_groups * g) out. stats accumulates
 * (may be NULL). */
srlm_status srlm_group_advantages(const srlm_group_options *o, int64_t n_groups, int g,
                                  const double *rewards, double *adv, srlm_group_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
