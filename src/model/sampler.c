/* srlm sampler: the next token from one row of logits. See include/srlm/sampler.h for the
 * order of the transformations (transformers' warper order), the tie rules and the RNG
 * keying.
 *
 * Every token gets a weight w = exp((l - l_max) / T) in [0, 1] (the max has weight 1).
 * top-k and top-p each cut the ranking (logit descending, lower id first) after one
 * token, the CUT: a histogram of the logits (over the row's range) finds the bucket
 * the cut falls in and only that bucket is sorted. min-p is a threshold on w. The kept set is then "ranked no
 * later than the cut, and w >= min_p", and the draw walks it in id order until the
 * running weight passes u * W. Sums are in double, in a fixed order, so a row always
 * gives the same token.
 */
#include "srlm/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_BUCKETS 1024
#define BUCKET_SPAN 64.0f /* logit units the buckets cover at most; the last one is open-ended */

typedef struct cand {
  float l;    /* logit */
  int32_t id;
} cand;

struct srlm_sampler {
  srlm_sampler_params p;
  int64_t V;
  float *w;                 /* (V) weights exp((l - l_max) / T), 0 for -inf logits */
  cand *cand;               /* (V) the sorted bucket of a cut */
  int64_t count[N_BUCKETS]; /* top-k histogram */
  double mass[N_BUCKETS];   /* top-p histogram */
};

/* The kept set of one row: tokens ranked no later than the cut (when there is one),
 * with w >= wmin, finite logit. */
typedef struct kept {
  int cut;
  float cut_l;
  int32_t cut_id;
  float wmin; /* the min-p threshold on w (0: none) */
  double W;   /* sum of the kept weights, in id order */
} kept;

/* Facts of one row's scan. */
typedef struct row_stats {
  float max;      /* largest finite logit */
  float scale;    /* histogram buckets per logit unit */
  int32_t argmax; /* its lowest id */
  int64_t n_fin;  /* finite logits */
  double lse;     /* log-sum-exp of the row (temperature 1) */
} row_stats;

srlm_sampler_params srlm_sampler_params_default(void) {
  srlm_sampler_params p = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 0};
  return p;
}

srlm_status srlm_sampler_params_check(const srlm_sampler_params *p) {
  if (!(isfinite(p->temperature) && p->temperature >= 0.0f))
    return srlm_error(SRLM_ERR_CONFIG, "sampler", "temperature %g: expected a finite value >= 0 (0 is greedy)",
                      (double)p->temperature);
  if (p->top_k < 0) return srlm_error(SRLM_ERR_CONFIG, "sampler", "top_k %d: expected >= 0 (0 is off)", p->top_k);
  if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
    return srlm_error(SRLM_ERR_CONFIG, "sampler", "top_p %g: expected a value in [0, 1] (1 is off)", (double)p->top_p);
  if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
    return srlm_error(SRLM_ERR_CONFIG, "sampler", "min_p %g: expected a value in [0, 1] (0 is off)", (double)p->min_p);
  return SRLM_OK;
}

srlm_status srlm_sampler_create(const srlm_sampler_params *p, int64_t V, srlm_sampler **out) {
  *out = NULL;
  SRLM_TRY(srlm_sampler_params_check(p));
  if (V <= 0 || V > INT32_MAX) return srlm_error(SRLM_ERR_RANGE, "sampler", "vocabulary size %lld", (long long)V);
  srlm_sampler *s = srlm_xcalloc(1, sizeof *s);
  s->p = *p;
  s->V = V;
  s->w = srlm_xmalloc((size_t)V * sizeof *s->w);
  s->cand = srlm_xmalloc((size_t)V * sizeof *s->cand);
  *out = s;
  return SRLM_OK;
}

void srlm_sampler_free(srlm_sampler *s) {
  if (!s) return;
  free(s->w);
  free(s->cand);
  free(s);
}

const srlm_sampler_params *srlm_sampler_get_params(const srlm_sampler *s) { return &s->p; }

/* ---- one row ------------------------------------------------------------------------ */

static srlm_status scan_row(const srlm_sampler *s, const float *logits, row_stats *st) {
  float m = -INFINITY, lo = INFINITY;
  int32_t arg = -1;
  int64_t n_fin = 0;
  for (int64_t i = 0; i < s->V; i++) {
    float l = logits[i];
    if (l == -INFINITY) continue;
    if (!isfinite(l))
      return srlm_error(SRLM_ERR_RANGE, "sampler", "logit of id %lld is %s", (long long)i, isnan(l) ? "NaN" : "+inf");
    n_fin++;
    if (l < lo) lo = l;
    if (l > m) {
      m = l;
      arg = (int32_t)i;
    }
  }
  if (n_fin == 0) return srlm_error(SRLM_ERR_RANGE, "sampler", "every logit is -inf: no token can be drawn");
  st->max = m;
  /* the buckets cover the row's range (at most BUCKET_SPAN below the max): near-flat
     rows get fine buckets, so the bucket a cut falls in stays small */
  float span = m - lo < BUCKET_SPAN ? m - lo : BUCKET_SPAN;
  float scale = span > 0.0f ? (float)N_BUCKETS / span : 0.0f;
  st->scale = isfinite(scale) ? scale : 0.0f; /* a subnormal span: one bucket */
  st->argmax = arg;
  st->n_fin = n_fin;
  return SRLM_OK;
}

/* Fills s->w and the row's log-sum-exp (fixed order: id order). */
static void weigh_row(srlm_sampler *s, const float *logits, row_stats *st) {
  const float m = st->max;
  const float inv_t = s->p.temperature > 0.0f ? 1.0f / s->p.temperature : 0.0f;
  double z1 = 0.0;
  if (s->p.temperature == 1.0f) {
    for (int64_t i = 0; i < s->V; i++) {
      float e = expf(logits[i] - m); /* 0 for masked ids (-inf) */
      s->w[i] = e;
      z1 += (double)e;
    }
  } else if (s->p.temperature == 0.0f) { /* greedy needs only the log-sum-exp */
    for (int64_t i = 0; i < s->V; i++) z1 += (double)expf(logits[i] - m);
  } else {
    for (int64_t i = 0; i < s->V; i++) {
      float d = logits[i] - m;
      z1 += (double)expf(d);
      s->w[i] = expf(d * inv_t);
    }
  }
  st->lse = (double)m + log(z1);
}

/* ---- ranking ---------------------------------------------------------------------- */

/* a ranks before b: larger logit, then lower id */
static inline int ranks_before(cand a, cand b) { return a.l > b.l || (a.l == b.l && a.id < b.id); }

static int cmp_rank(const void *pa, const void *pb) {
  const cand *a = pa, *b = pb;
  if (ranks_before(*a, *b)) return -1;
  if (ranks_before(*b, *a)) return 1;
  return 0;
}

/* Histogram bucket of a finite logit l of a row: (max - l) * scale, the last bucket
 * open-ended. Buckets follow the ranking (a lower bucket never ranks after a higher
 * one), so a cut of the ranking falls in one bucket and only it is sorted. */
static inline int bucket_of(float l, const row_stats *st) {
  float d = (st->max - l) * st->scale;
  return d < (float)(N_BUCKETS - 1) ? (int)d : N_BUCKETS - 1;
}

/* Token (l, id) lies in the ranked prefix that ends at cut (inclusive). */
static inline int in_prefix(const kept *k, float l, int32_t id) {
  return !k->cut || l > k->cut_l || (l == k->cut_l && id <= k->cut_id);
}

static inline int kept_token(const kept *k, float l, int32_t id, float w) {
  return l != -INFINITY && w >= k->wmin && in_prefix(k, l, id);
}

/* Sorts the tokens of bucket b that are inside the current prefix into s->cand; returns
 * how many. */
static int64_t sort_bucket(srlm_sampler *s, const float *logits, const kept *k, const row_stats *st, int b) {
  int64_t n = 0;
  for (int64_t i = 0; i < s->V; i++) {
    float l = logits[i];
    if (l == -INFINITY || bucket_of(l, st) != b || !in_prefix(k, l, (int32_t)i)) continue;
    s->cand[n].l = l;
    s->cand[n].id = (int32_t)i;
    n++;
  }
  qsort(s->cand, (size_t)n, sizeof *s->cand, cmp_rank);
  return n;
}

static void set_cut(kept *k, cand c) {
  k->cut = 1;
  k->cut_l = c.l;
  k->cut_id = c.id;
}

/* top-k: the prefix ends at the k-th ranked token. */
static void cut_top_k(srlm_sampler *s, const float *logits, const row_stats *st, kept *k) {
  int64_t *count = s->count;
  memset(count, 0, N_BUCKETS * sizeof *count);
  for (int64_t i = 0; i < s->V; i++)
    if (logits[i] != -INFINITY) count[bucket_of(logits[i], st)]++;
  int64_t before = 0;
  int b = 0;
  while (before + count[b] < s->p.top_k) before += count[b++];
  int64_t n = sort_bucket(s, logits, k, st, b);
  SRLM_CHECK(s->p.top_k - before - 1 < n, "top-k cut outside its bucket");
  set_cut(k, s->cand[s->p.top_k - before - 1]);
}

/* top-p: the prefix ends at the first ranked token where the weight through it reaches
 * top_p * W, W the weight of the current prefix (after top-k). */
static void cut_top_p(srlm_sampler *s, const float *logits, const row_stats *st, kept *k) {
  double *mass = s->mass;
  memset(mass, 0, N_BUCKETS * sizeof *mass);
  for (int64_t i = 0; i < s->V; i++) {
    float l = logits[i];
    if (l != -INFINITY && in_prefix(k, l, (int32_t)i)) mass[bucket_of(l, st)] += s->w[i];
  }
  double W = 0.0;
  for (int b = 0; b < N_BUCKETS; b++) W += mass[b];
  const double target = (double)s->p.top_p * W;
  double cum = 0.0;
  int b = 0;
  while (b < N_BUCKETS && cum + mass[b] < target) cum += mass[b++];
  if (b == N_BUCKETS) return; /* the whole prefix (top_p * W rounded above W) */
  int64_t n = sort_bucket(s, logits, k, st, b);
  for (int64_t j = 0; j < n; j++) {
    cum += s->w[s->cand[j].id];
    if (cum >= target || j == n - 1) {
      set_cut(k, s->cand[j]);
      return;
    }
  }
}

/* The kept set after top-k, top-p and min-p (temperature > 0), and its weight. */
static void keep_set(srlm_sampler *s, const float *logits, const row_stats *st, kept *k) {
  const srlm_sampler_params *p = &s->p;
  k->cut = 0;
  k->wmin = p->min_p > 0.0f ? p->min_p : 0.0f;
  if (p->top_k > 0 && p->top_k < st->n_fin) cut_top_k(s, logits, st, k);
  if (p->top_p < 1.0f) cut_top_p(s, logits, st, k);
  /* min-p is a threshold on w; the top token has w = 1 >= min_p and always stays. */
  double W = 0.0;
  for (int64_t i = 0; i < s->V; i++)
    if (kept_token(k, logits[i], (int32_t)i, s->w[i])) W += s->w[i];
  k->W = W;
}

srlm_status srlm_sampler_sample(srlm_sampler *s, const float *logits, uint64_t seq_id, uint32_t step,
                                srlm_sample *out) {
  row_stats st = {0};
  SRLM_TRY(scan_row(s, logits, &st));
  weigh_row(s, logits, &st);
  if (s->p.temperature == 0.0f) {
    out->token = st.argmax;
    out->logprob = (float)((double)logits[st.argmax] - st.lse);
    out->sample_logprob = 0.0f;
    return SRLM_OK;
  }
  kept k;
  keep_set(s, logits, &st, &k);
  srlm_philox_out r = srlm_rng_bits(s->p.seed, SRLM_RNG_PURPOSE_SAMPLE, (uint32_t)seq_id, step, (uint32_t)(seq_id >> 32));
  const double target = srlm_rng_u01d(r.v[0], r.v[1]) * k.W;
  double cum = 0.0;
  int32_t tok = -1, last = -1;
  for (int64_t i = 0; i < s->V && tok < 0; i++) {
    const float w = s->w[i];
    if (w <= 0.0f || !kept_token(&k, logits[i], (int32_t)i, w)) continue;
    last = (int32_t)i;
    cum += w;
    if (target < cum) tok = (int32_t)i;
  }
  if (tok < 0) tok = last; /* u * W rounded up to the total */
  if (tok < 0) return srlm_error(SRLM_ERR_INTERNAL, "sampler", "no token kept (max weight %g)", (double)s->w[st.argmax]);
  out->token = tok;
  out->logprob = (float)((double)logits[tok] - st.lse);
  out->sample_logprob = (float)((double)(logits[tok] - st.max) / (double)s->p.temperature - log(k.W));
  return SRLM_OK;
}

srlm_status srlm_sampler_probs(srlm_sampler *s, const float *logits, double *probs) {
  row_stats st = {0};
  SRLM_TRY(scan_row(s, logits, &st));
  memset(probs, 0, (size_t)s->V * sizeof *probs);
  if (s->p.temperature == 0.0f) {
    probs[st.argmax] = 1.0;
    return SRLM_OK;
  }
  weigh_row(s, logits, &st);
  kept k;
  keep_set(s, logits, &st, &k);
  for (int64_t i = 0; i < s->V; i++)
    if (kept_token(&k, logits[i], (int32_t)i, s->w[i])) probs[i] = s->w[i] / k.W;
  return SRLM_OK;
}
