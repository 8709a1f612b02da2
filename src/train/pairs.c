/* DPO pair selection and GRPO group advantages; the rules are in include/srlm/pairs.h. */
#include "srlm/pairs.h"

#include <math.h>
#include <string.h>

srlm_status srlm_pairs_select(const srlm_pair_options *o, int k, const double *scores,
                              const char *const *texts, const size_t *lens, const int64_t *lengths,
                              srlm_pair *pair, int *made, srlm_pair_stats *stats) {
  const char *w = "pairs";
  *made = 0;
  if (!(o->min_margin >= 0)) return srlm_error(SRLM_ERR_CONFIG, w, "pairs.min_margin %g must be >= 0", o->min_margin);
  if (o->length_control && !(o->length_rho >= 0 && o->length_rho < 0.5))
    return srlm_error(SRLM_ERR_CONFIG, w, "length control rho %g outside [0, 0.5)", o->length_rho);
  if (o->length_control && !lengths)
    return srlm_error(SRLM_ERR_INTERNAL, w, "length control needs the candidates' lengths");
  if (k < 0) return srlm_error(SRLM_ERR_RANGE, w, "negative candidate count %d", k);
  srlm_pair_stats none;
  if (!stats) stats = &none;
  stats->prompts++;

  int scored = 0, imax = -1, imin = -1;
  for (int i = 0; i < k; i++) {
    if (!isfinite(scores[i])) {
      stats->unscored++;
      continue;
    }
    scored++;
    /* strict comparisons keep the lowest index among equal scores */
    if (imax < 0 || scores[i] > scores[imax]) imax = i;
    if (imin < 0 || scores[i] < scores[imin]) imin = i;
  }
  if (scored < 2) {
    stats->skipped_prompts++;
    return SRLM_OK;
  }
  const double smax = scores[imax], smin = scores[imin];
  if (smax == smin) {
    stats->dropped_tie++;
    return SRLM_OK;
  }
  int c = imax, r = imin;
  if (o->length_control) {
    const double rho = o->length_rho;
    const double top = (1 - rho) * smax + rho * smin, bottom = (1 - rho) * smin + rho * smax;
    c = r = -1;
    for (int i = 0; i < k; i++) {
      if (!isfinite(scores[i])) continue;
      if (scores[i] >= top && (c < 0 || lengths[i] < lengths[c])) c = i;
      if (scores[i] <= bottom && (r < 0 || lengths[i] > lengths[r])) r = i;
    }
    /* rho = 0 (top == smax) and rounding of top/bottom must not empty a band */
    if (c < 0) c = imax;
    if (r < 0) r = imin;
  }
  const double margin = scores[c] - scores[r];
  if (margin < o->min_margin) {
    stats->dropped_margin++;
    return SRLM_OK;
  }
  size_t lc = lens ? lens[c] : strlen(texts[c]), lr = lens ? lens[r] : strlen(texts[r]);
  if (lc == lr && memcmp(texts[c], texts[r], lc) == 0) {
    stats->dropped_equal_text++;
    return SRLM_OK;
  }
  pair->chosen = c;
  pair->rejected = r;
  pair->margin = margin;
  *made = 1;
  stats->pairs++;
  return SRLM_OK;
}

srlm_status srlm_pairs_votes(double threshold, int k, const char *const *answers, srlm_pair *pair, double *weight,
                             int *made, srlm_vote_stats *stats) {
  const char *w = "pairs votes";
  *made = 0;
  if (!(threshold >= 0 && threshold <= 1))
    return srlm_error(SRLM_ERR_CONFIG, w, "pairs.vote_threshold %g outside [0, 1]", threshold);
  if (k < 0 || k > SRLM_VOTE_MAX_K) return srlm_error(SRLM_ERR_RANGE, w, "%d samples (0..%d)", k, SRLM_VOTE_MAX_K);
  srlm_vote_stats none = {0};
  if (!stats) stats = &none;
  stats->prompts++;
  /* first[i]: the first sample with sample i's answer; votes counted on that first one */
  int first[SRLM_VOTE_MAX_K], votes[SRLM_VOTE_MAX_K];
  int distinct = 0;
  for (int i = 0; i < k; i++) {
    votes[i] = 0;
    first[i] = -1;
    if (!answers[i]) {
      stats->no_answer++;
      continue;
    }
    for (int j = 0; j < i && first[i] < 0; j++)
      if (answers[j] && first[j] == j && strcmp(answers[j], answers[i]) == 0) first[i] = j;
    if (first[i] < 0) {
      first[i] = i;
      distinct++;
    }
    votes[first[i]]++;
  }
  if (distinct < 2) {
    stats->one_answer++;
    return SRLM_OK;
  }
  int c = -1, r = -1; /* first samples of the most- and least-voted answers (strict: lowest index wins) */
  for (int i = 0; i < k; i++) {
    if (first[i] != i) continue;
    if (c < 0 || votes[i] > votes[c]) c = i;
    if (r < 0 || votes[i] < votes[r]) r = i;
  }
  if (votes[c] == votes[r]) {
    stats->tie++;
    return SRLM_OK;
  }
  if ((double)votes[c] < threshold * (double)k) {
    stats->below_threshold++;
    return SRLM_OK;
  }
  pair->chosen = c;
  pair->rejected = r;
  pair->margin = votes[c] - votes[r];
  *weight = (double)(votes[c] - votes[r]) / (double)k;
  *made = 1;
  stats->pairs++;
  stats->weight_sum += *weight;
  return SRLM_OK;
}

double srlm_kendall_tau_b(int n, const double *a, const double *b) {
  int64_t nc = 0, nd = 0, ta = 0, tb = 0, n0 = 0;
  for (int i = 0; i < n; i++) {
    if (!isfinite(a[i]) || !isfinite(b[i])) continue;
    for (int j = i + 1; j < n; j++) {
      if (!isfinite(a[j]) || !isfinite(b[j])) continue;
      n0++;
      const double da = a[i] - a[j], db = b[i] - b[j];
      ta += da == 0;
      tb += db == 0;
      if (da == 0 || db == 0) continue;
      if ((da > 0) == (db > 0)) nc++;
      else nd++;
    }
  }
  const double den = sqrt((double)(n0 - ta) * (double)(n0 - tb));
  if (!(den > 0)) return NAN;
  double tau = (double)(nc - nd) / den;
  return tau > 1 ? 1 : (tau < -1 ? -1 : tau);
}

double srlm_rank_consistency(int n, const double *a, const double *b) {
  const double tau = srlm_kendall_tau_b(n, a, b);
  return isfinite(tau) ? (tau + 1) / 2 : 0.5;
}

/* D(alpha) of srlm_length_alpha over the prompts with a pair; *pairs counts them. */
static double length_gap(int64_t n_prompts, int k, const double *s, const int64_t *len, double alpha, int64_t *pairs) {
  double sum = 0;
  *pairs = 0;
  for (int64_t p = 0; p < n_prompts; p++) {
    const double *sp = s + p * k;
    const int64_t *lp = len + p * k;
    int c = -1, r = -1;
    for (int i = 0; i < k; i++) {
      if (!isfinite(sp[i])) continue;
      const double v = sp[i] - alpha * (double)lp[i];
      if (c < 0 || v > sp[c] - alpha * (double)lp[c]) c = i;
      if (r < 0 || v < sp[r] - alpha * (double)lp[r]) r = i;
    }
    if (c < 0 || sp[c] - alpha * (double)lp[c] == sp[r] - alpha * (double)lp[r]) continue; /* no pair: a tie */
    sum += (double)(lp[c] - lp[r]);
    (*pairs)++;
  }
  return *pairs ? sum / (double)*pairs : 0;
}

double srlm_length_alpha(int64_t n_prompts, int k, const double *s, const int64_t *len) {
  int64_t pairs;
  if (!(length_gap(n_prompts, k, s, len, 0, &pairs) > 0)) return 0;
  double hi = 0;
  for (int64_t p = 0; p < n_prompts; p++) {
    double smin = INFINITY, smax = -INFINITY;
    int64_t gap = 0;
    for (int i = 0; i < k; i++) {
      if (!isfinite(s[p * k + i])) continue;
      smin = fmin(smin, s[p * k + i]);
      smax = fmax(smax, s[p * k + i]);
      for (int j = 0; j < k; j++) {
        const int64_t d = len[p * k + i] - len[p * k + j];
        if (isfinite(s[p * k + j]) && d > 0 && (gap == 0 || d < gap)) gap = d;
      }
    }
    if (gap > 0 && smax > smin) hi = fmax(hi, (smax - smin) / (double)gap);
  }
  hi += 1;
  double lo = 0;
  for (int it = 0; it < 60; it++) {
    const double mid = 0.5 * (lo + hi);
    if (length_gap(n_prompts, k, s, len, mid, &pairs) > 0) lo = mid;
    else hi = mid;
  }
  return hi;
}

int srlm_group_all_equal(int g, const double *r) {
  int n = 0;
  double first = 0;
  for (int i = 0; i < g; i++) {
    if (!isfinite(r[i])) continue;
    if (n == 0) first = r[i];
    else if (r[i] != first) return 0;
    n++;
  }
  return 1;
}

/* The sample std of every scored reward (two passes; 0 with fewer than 2). */
static double batch_std(int64_t n, const double *r) {
  double sum = 0, ss = 0;
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++)
    if (isfinite(r[i])) {
      sum += r[i];
      k++;
    }
  if (k < 2) return 0;
  const double mean = sum / (double)k;
  for (int64_t i = 0; i < n; i++)
    if (isfinite(r[i])) ss += (r[i] - mean) * (r[i] - mean);
  return sqrt(ss / (double)(k - 1));
}

srlm_status srlm_group_advantages(const srlm_group_options *o, int64_t n_groups, int g,
                                  const double *rewards, double *adv, srlm_group_stats *stats) {
  const char *w = "groups";
  if (n_groups < 0 || g < 1)
    return srlm_error(SRLM_ERR_RANGE, w, "%lld groups of %d samples", (long long)n_groups, g);
  if (o->use_std && !(o->eps >= 0)) return srlm_error(SRLM_ERR_CONFIG, w, "std eps %g must be >= 0", o->eps);
  srlm_group_stats none;
  if (!stats) stats = &none;
  const double bstd = o->use_std && o->batch_std ? batch_std(n_groups * g, rewards) : 0;
  for (int64_t j = 0; j < n_groups; j++) {
    const double *r = rewards + j * g;
    double *a = adv + j * g;
    stats->groups++;
    stats->samples += g;
    int n = 0, all_equal = 1;
    double first = 0, sum = 0;
    for (int i = 0; i < g; i++) {
      if (!isfinite(r[i])) {
        stats->unscored++;
        continue;
      }
      if (n == 0) first = r[i];
      else if (r[i] != first) all_equal = 0;
      sum += r[i];
      n++;
    }
    if (n < 2 || all_equal) {
      for (int i = 0; i < g; i++) a[i] = 0.0;
      stats->zero_variance++;
      continue;
    }
    const double mean = sum / n;
    double ss = 0;
    for (int i = 0; i < g; i++)
      if (isfinite(r[i])) ss += (r[i] - mean) * (r[i] - mean);
    const double std = o->batch_std ? bstd : sqrt(ss / (n - 1));
    const double scale = o->use_std ? 1.0 / (std + o->eps) : 1.0;
    for (int i = 0; i < g; i++) a[i] = isfinite(r[i]) ? (r[i] - mean) * scale : 0.0;
  }
  return SRLM_OK;
}

int64_t srlm_refill_next(int64_t target, int64_t informative, int64_t generated, int64_t extra_done, int64_t cap,
                         int rounds_done, int max_rounds, int per) {
  if (informative >= target || rounds_done >= max_rounds || extra_done >= cap || per < 1) return 0;
  const int64_t need = target - informative, left = cap - extra_done;
  int64_t x = informative > 0 ? (need * generated + informative - 1) / informative : left;
  if (x < need) x = need;
  x = (x + per - 1) / per * per;
  return x < left ? x : left;
}
