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

/* ---- self-consistency votes (ScPO, ALGORITHMS.md section 6) --------------------------
 *
 * answers (k): each sample's final answer in its task's canonical form (a NUL-terminated
 * key; two samples vote together iff their keys are byte-equal), NULL = no extractable
 * answer: such a sample has no vote and is never picked. V(a) = the samples whose answer
 * is a. In this order of checks, each counted:
 *   1. fewer than 2 distinct answers: no pair (one_answer);
 *   2. V+ == V- (every answer has the same votes): tie, no pair (tie);
 *   3. V+ / k < threshold: dropped (below_threshold), k counting every sample, answered
 *      or not (ScPO keeps prompts whose top vote passes a threshold);
 *   4. chosen = the first sample (lowest index) of the most-voted answer, rejected = the
 *      first sample of the least-voted one; among answers with equal votes the one whose
 *      first sample comes first. weight w = (V+ - V-) / k in (0, 1]; margin = V+ - V-.
 * Different answers are different texts, so there is no equal-text case. */
typedef struct srlm_vote_stats {
  int64_t prompts, pairs;
  int64_t no_answer;       /* samples without an extractable answer */
  int64_t one_answer;      /* prompts with fewer than 2 distinct answers */
  int64_t tie;             /* prompts whose answers all have the same votes */
  int64_t below_threshold; /* prompts whose top vote is below the threshold */
  double weight_sum;       /* sum of the kept pairs' w */
} srlm_vote_stats;

/* One prompt of k <= SRLM_VOTE_MAX_K samples; threshold in [0, 1]. *made, *pair and
 * *weight as srlm_pairs_select; stats accumulates (may be NULL). */
#define SRLM_VOTE_MAX_K 4096
srlm_status srlm_pairs_votes(double threshold, int k, const char *const *answers, srlm_pair *pair, double *weight,
                             int *made, srlm_vote_stats *stats);

/* ---- rank consistency (CREAM, ALGORITHMS.md section 5) -------------------------------
 *
 * Kendall's tau-b of two scorings a, b of the same n items, over the items finite in both:
 * tau_b = (n_c - n_d) / sqrt((n_0 - n_a)(n_0 - n_b)), n_0 = m(m-1)/2 for m such items,
 * n_c / n_d the concordant / discordant pairs (a pair tied in a or in b is neither),
 * n_a / n_b the pairs tied in a / in b. Ties are handled as tau-b does, so an all-tied
 * side has no ranking: tau is then undefined (NaN), as with m < 2. In [-1, 1]. */
double srlm_kendall_tau_b(int n, const double *a, const double *b);

/* CREAM's consistency of a prompt: C = (tau_b + 1) / 2 in [0, 1]; an undefined tau
 * (NaN: no ranking to compare) counts as tau = 0, C = 1/2 (neither consistent nor not). */
double srlm_rank_consistency(int n, const double *a, const double *b);

/* ---- length-regularized scores (DICE, ALGORITHMS.md section 7) -----------------------
 *
 * Each of n_prompts prompts of k samples: score s (n_prompts * k, NaN = unscored) and
 * length len (characters). With alpha, sample i scores s_i - alpha len_i and the pair is
 * argmax/argmin of it (lowest index among equals, srlm_pairs_select's rule). DICE picks
 * alpha so that the pairs' mean chosen length equals their mean rejected length:
 * srlm_length_alpha returns 0 when D(0) <= 0 already (or there are no pairs), else an alpha
 * where D(alpha) = mean len(chosen) - mean len(rejected) over the prompts with a pair turns
 * from > 0 to <= 0: 60 steps of bisection on its sign between 0 (D > 0) and alpha_hi = 1 +
 * the largest score range of a prompt over its smallest nonzero length gap (there every
 * pair is a shortest vs a longest sample, D <= 0); D falls with alpha overall but not
 * strictly everywhere, so with several sign changes it is one of them, not always the
 * smallest. A pair whose adjusted scores tie is no pair (srlm_pairs_select drops ties). */
double srlm_length_alpha(int64_t n_prompts, int k, const double *s, const int64_t *len);

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
