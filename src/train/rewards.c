/* Rewards that are not a judge's verdict: SAR from two passes' log-probs and sentence
 * BLEU-4 (conventions and formulas in include/srlm/rewards.h). */
#include "srlm/rewards.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double srlm_sar_reward(const float *logp_q, const float *logp_alone, int64_t n, double *nll_q, double *nll_alone) {
  double sq = 0, sa = 0;
  for (int64_t t = 0; t < n; t++) {
    sq -= logp_q[t];
    sa -= logp_alone[t];
  }
  double mq = n > 0 ? sq / (double)n : 0, ma = n > 0 ? sa / (double)n : 0;
  if (nll_q) *nll_q = mq;
  if (nll_alone) *nll_alone = ma;
  if (n <= 0) return 0;
  double r = 1 - exp(mq - ma); /* (ppl(a) - ppl(a|q)) / ppl(a) */
  if (!(r >= -1)) r = -1;      /* also -inf and NaN from an infinite NLL */
  return r > 1 ? 1 : r;
}

/* ---- BLEU ------------------------------------------------------------------------------- */

typedef struct span {
  const char *p;
  size_t n;
} span;

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* The tokens of s[0 .. len) (malloc'd array, *count of them). */
static span *tokenize(const char *s, size_t len, srlm_bleu_tokens mode, int64_t *count) {
  span *t = srlm_xmalloc((len + 1) * sizeof *t);
  int64_t n = 0;
  for (size_t i = 0; i < len;) {
    if (is_space((unsigned char)s[i])) {
      i++;
      continue;
    }
    size_t j = i + 1;
    if (mode == SRLM_BLEU_WORDS)
      while (j < len && !is_space((unsigned char)s[j])) j++;
    else
      while (j < len && ((unsigned char)s[j] & 0xC0) == 0x80) j++; /* UTF-8 continuation bytes */
    t[n++] = (span){s + i, j - i};
    i = j;
  }
  *count = n;
  return t;
}

static int gram_eq(const span *a, const span *b, int n) {
  for (int k = 0; k < n; k++)
    if (a[k].n != b[k].n || memcmp(a[k].p, b[k].p, a[k].n) != 0) return 0;
  return 1;
}

/* Occurrences of the n-gram g in the token list t (len tokens). */
static int64_t gram_count(const span *g, int n, const span *t, int64_t len) {
  int64_t c = 0;
  for (int64_t i = 0; i + n <= len; i++) c += gram_eq(g, t + i, n);
  return c;
}

double srlm_bleu(const char *cand, size_t cand_len, const char *const *refs, const size_t *ref_lens, int n_refs,
                 srlm_bleu_tokens mode) {
  if (n_refs < 1) return 0;
  int64_t c = 0;
  span *h = tokenize(cand, cand_len, mode, &c);
  span **r = srlm_xmalloc((size_t)n_refs * sizeof *r);
  int64_t *rl = srlm_xmalloc((size_t)n_refs * sizeof *rl);
  int64_t closest = -1;
  for (int i = 0; i < n_refs; i++) {
    r[i] = tokenize(refs[i], ref_lens ? ref_lens[i] : strlen(refs[i]), mode, &rl[i]);
    int64_t d = llabs(rl[i] - c), best = closest < 0 ? 0 : llabs(closest - c);
    if (closest < 0 || d < best || (d == best && rl[i] < closest)) closest = rl[i];
  }
  double log_sum = 0, bleu = 0;
  int unigram_match = 1;
  for (int n = 1; n <= 4 && c > 0; n++) {
    int64_t matched = 0, d = c - n + 1 > 1 ? c - n + 1 : 1;
    for (int64_t i = 0; i + n <= c; i++) {
      /* each distinct n-gram once, at its first position: its count clipped by the refs' */
      int first = 1;
      for (int64_t k = 0; k < i && first; k++) first = !gram_eq(h + k, h + i, n);
      if (!first) continue;
      int64_t in_h = gram_count(h + i, n, h, c), in_r = 0;
      for (int q = 0; q < n_refs; q++) {
        int64_t x = gram_count(h + i, n, r[q], rl[q]);
        if (x > in_r) in_r = x;
      }
      matched += in_h < in_r ? in_h : in_r;
    }
    if (n == 1 && matched == 0) unigram_match = 0;
    double p = matched ? (double)matched / (double)d : SRLM_BLEU_SMOOTH_EPS / (double)d;
    log_sum += 0.25 * log(p);
  }
  if (c > 0 && unigram_match) {
    double bp = c > closest ? 1.0 : exp(1.0 - (double)closest / (double)c);
    bleu = bp * exp(log_sum);
  }
  for (int i = 0; i < n_refs; i++) free(r[i]);
  free(r);
  free(rl);
  free(h);
  return bleu;
}
