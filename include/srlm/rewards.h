/* srlm rewards: rewards that are not a judge's verdict, computed by the judge role from
 * the sample and what it knows of its prompt (ALGORITHMS.md sections 8 and 9).
 *
 * SAR, the self-aligned reward (Han et al. 2026), from two forward passes of the CURRENT
 * policy over the answer a (the response's tokens without a final EOS token):
 *   logp_q[t]     = log p(a_t | q, a_<t)       the answer after the query (the prompt ids)
 *   logp_alone[t] = log p(a_t | BOS, a_<t)     the answer alone after one start token
 *   nll = -(1/|a|) sum_t logp[t]   (the mean token NLL of the answer's tokens),  ppl = exp(nll)
 *   R_SA = clip((ppl(a) - ppl(a|q)) / ppl(a), -1, 1) = clip(1 - exp(nll_q - nll_alone), -1, 1)
 * computed in that second form (no overflow for long, unlikely answers). R_SA > 0 when the
 * query makes the answer more likely than it is on its own; it is at most 1 by construction
 * and clipped at -1. An empty answer (|a| = 0) has R_SA = 0. The start token is the model's
 * bos_token_id, or where it has none the first end-of-sequence id (GPT-2 style: the tiny
 * tasks' <|endoftext|>). judge.source sar: reward = verifier + judge.sar_weight x
 * (score_max - score_min) x R_SA, so that on a 0/1 verifier scale it is the paper's
 * correctness + 0.2 R_SA, and on another scale the weight keeps its meaning.
 *
 * BLEU (BLEUBERI, Chang et al. 2025): sentence BLEU-4 of a candidate against one or more
 * references, uniform weights 1/4:
 *   tokens   SRLM_BLEU_WORDS: maximal runs of non-whitespace bytes (no punctuation split,
 *            case kept); SRLM_BLEU_CHARS: every UTF-8 character except ASCII whitespace
 *            (a lead byte and its continuation bytes are one token).
 *   p_n      = m_n / d_n, m_n the candidate's n-grams clipped by their largest count in any
 *            one reference, d_n = max(1, c - n + 1) with c the candidate's length in tokens;
 *   smoothing Chen & Cherry (2014) method 1 as NLTK's SmoothingFunction().method1: a p_n
 *            with m_n = 0 becomes 0.1 / d_n; but no unigram match at all (m_1 = 0) or an
 *            empty candidate gives BLEU 0;
 *   BP       = 1 if c > r else exp(1 - r / c), r the reference length closest to c (the
 *            shorter one on a tie);
 *   BLEU     = BP exp(sum_n log(p_n) / 4), in [0, 1].
 * The same numbers as nltk.translate.bleu_score.sentence_bleu(refs, hyp,
 * smoothing_function=SmoothingFunction().method1) on the same token lists
 * (tests/fixtures/bleu_nltk.py). judge.source bleu: reward = score_min + (score_max -
 * score_min) x BLEU.
 */
#ifndef SRLM_REWARDS_H
#define SRLM_REWARDS_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* R_SA of an answer of n tokens from its two passes' per-token log-probs (n each); n = 0
 * gives 0. *nll_q and *nll_alone (either may be NULL) get the two mean NLLs. */
double srlm_sar_reward(const float *logp_q, const float *logp_alone, int64_t n, double *nll_q, double *nll_alone);

typedef enum srlm_bleu_tokens {
  SRLM_BLEU_WORDS = 0, /* the order of srlm_cfg_bleu_tokenize */
  SRLM_BLEU_CHARS
} srlm_bleu_tokens;

#define SRLM_BLEU_SMOOTH_EPS 0.1 /* method 1's numerator for an order without a match */

/* BLEU-4 of cand (cand_len bytes) against refs[0 .. n_refs) (ref_lens[i] bytes each; NULL
 * lens: NUL-terminated); n_refs >= 1. Returns a value in [0, 1]. */
double srlm_bleu(const char *cand, size_t cand_len, const char *const *refs, const size_t *ref_lens, int n_refs,
                 srlm_bleu_tokens mode);

#ifdef __cplusplus
}
#endif
#endif
