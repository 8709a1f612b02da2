/* srlm meta: Meta-Rewarding's data construction (ALGORITHMS.md section 4, Wu et al.
 * 2024): the model judges its answers J times, a meta-judge compares pairs of those
 * judgments, and the best and worst judgment of a response become a judge preference
 * pair. Pure functions of their inputs (no model, no randomness); the roles call them
 * (src/roles/meta_judge.c).
 *
 * 1. Which response is meta-judged (srlm_meta_pick_response): per prompt ONE response,
 *    the one whose parsed judgment scores vary most: the largest population variance of
 *    its finite scores, over responses with at least 2 distinct finite scores; the lowest
 *    index among equal variances; none when no response qualifies. (The paper takes one
 *    response per prompt too; one per prompt keeps the judge pairs at most one per
 *    prompt, like the actor pairs.)
 * 2. Comparisons (srlm_meta_comparisons): every pair a < b of that response's judgments
 *    whose finite scores differ, in judgment order (a, then b). Each is shown to the
 *    meta-judge twice: (A = a, B = b) and (A = b, B = a).
 * 3. Both orders (srlm_meta_both_orders): a win counts only when both orders name the
 *    same judgment; a split or missing verdict counts for neither (it cancels the
 *    meta-judge's position bias rather than averaging it).
 * 4. Elo (srlm_meta_elo): a Bradley-Terry logistic regression on the win matrix
 *    W (W[i n + j] = wins of i over j): maximise
 *        sum_ij W_ij log sigmoid(c_i - c_j) - (SRLM_META_ELO_RIDGE / 2) sum_i c_i^2
 *    over the judgments that took part in a comparison (others: Elo NaN). The ridge makes
 *    the optimum unique and finite when one judgment wins everything (separable data),
 *    and puts sum c = 0 (the gradient of the pairwise terms sums to zero). Solved by
 *    Newton's method with step halving (every accepted step raises the objective; the
 *    Hessian is negative definite thanks to the ridge), stopped when the largest step is
 *    below 1e-12 or after SRLM_META_ELO_MAX_ITER steps: deterministic, a function of W
 *    alone. Elo = 400 c + 1000 (the paper's scale).
 * 5. The judge pair (srlm_meta_judge_pair): chosen = the highest Elo, rejected = the
 *    lowest (lowest index among equals); made only when their Elo differ (a response
 *    whose comparisons all split gives no pair).
 */
#ifndef SRLM_META_H
#define SRLM_META_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SRLM_META_ELO_RIDGE 0.1
#define SRLM_META_ELO_MAX_ITER 100
#define SRLM_META_MAX_J 64 /* judgments per response the meta-judge compares, at most */

/* A meta-judge's answer for one ordered comparison. */
typedef enum srlm_meta_verdict {
  SRLM_META_NONE = 0, /* no readable answer */
  SRLM_META_A = 1,    /* the judgment shown first is more accurate */
  SRLM_META_B = 2     /* the judgment shown second is */
} srlm_meta_verdict;

/* The response (0..k-1) of a prompt whose J judgments' scores vary most (rule 1); scores
 * (k * J), row q = response q, NaN = unparsable. -1 when none has 2 distinct scores.
 * *variance (may be NULL) gets its variance (0 when none). */
int srlm_meta_pick_response(int k, int J, const double *scores, double *variance);

/* The comparisons of one response (rule 2): writes pairs (a[i], b[i]), a < b, and returns
 * their count (at most J (J - 1) / 2). scores (J), NaN = unparsable. */
int srlm_meta_comparisons(int J, const double *scores, int *a, int *b);

/* Rule 3: v_xy is the verdict with x shown as A and y as B, v_yx with y as A and x as B.
 * +1: x wins in both orders; -1: y wins in both; 0: no agreement. */
int srlm_meta_both_orders(srlm_meta_verdict v_xy, srlm_meta_verdict v_yx);

/* Rule 4: Elo of n judgments from the win matrix wins (n * n, >= 0, diagonal ignored);
 * elo (n) out, NaN for a judgment with no wins and no losses. SRLM_ERR_RANGE for n
 * outside 1..SRLM_META_MAX_J or a negative or non-finite count. */
srlm_status srlm_meta_elo(int n, const double *wins, double *elo);

/* Rule 5 on Elo scores (n, NaN = took no part): *made = 1 with *chosen and *rejected
 * when two finite Elo differ, else *made = 0. */
void srlm_meta_judge_pair(int n, const double *elo, int *chosen, int *rejected, int *made);

#ifdef __cplusplus
}
#endif
#endif
