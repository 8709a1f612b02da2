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
