/* CPU sample op (backend.h, sample) and the one host implementation of sampler.h's rules,
 * with the arithmetic of srlm/sample_math.h (exact integer masses, so the token does not
 * depend on the path taken to find it). The host sampler runs srlm_sample_row too.
 *
 * One row: a scan (max, lowest argmax, finite count, range; NaN/+inf is an error), the
 * weights w = exp((l - max) / T) and the mass Z1 of the temperature-1 weights (the
 * log-sum-exp), then the cuts: top-k and top-p each end the ranking (logit descending,
 * lower id first) at one token, the CUT. A histogram of the logits (N_BUCKETS buckets over
 * the row's range, at most BUCKET_SPAN logit units, the last open-ended) counts tokens
 * (top-k) or sums masses (top-p) per bucket; the walk over the buckets finds the one the
 * cut falls in and only that bucket is sorted. min-p is a threshold on w. The kept set
 * is "ranked no later than the cut, and w >= min_p"; the draw walks it in id order.
 *
 * Rows run in parallel over OpenMP threads, each row on one thread with its own scratch:
 * the same bits for any thread count. The weights go through vector code (isa.c's level,
 * target attributes) whose operations are those of srlm_sample_exp one for one: the same
 * bits at every level. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_ops.h"
#include "srlm/sample_math.h"

#define N_BUCKETS 1024
#define BUCKET_SPAN 64.0f
#define CHUNK 1024 /* weights computed a chunk at a time */

typedef struct cand {
  float l;
  int32_t id;
} cand;

struct srlm_sample_ws {
  int64_t V;
  float *w;                   /* (V) weights at the row's temperature */
  cand *cand;                 /* (V) the sorted bucket of a cut */
  int64_t count[N_BUCKETS];   /* top-k histogram */
  srlm_u128 mass[N_BUCKETS];  /* top-p histogram */
};

srlm_sample_ws *srlm_sample_ws_create(int64_t V) {
  srlm_sample_ws *ws = srlm_xcalloc(1, sizeof *ws);
  ws->V = V;
  ws->w = srlm_xmalloc((size_t)(V > 0 ? V : 1) * sizeof *ws->w);
  ws->cand = srlm_xmalloc((size_t)(V > 0 ? V : 1) * sizeof *ws->cand);
  return ws;
}

void srlm_sample_ws_free(srlm_sample_ws *ws) {
  if (!ws) return;
  free(ws->w);
  free(ws->cand);
  free(ws);
}

/* ---- weights ------------------------------------------------------------------------- */

/* out[i] = srlm_sample_weight(l[i], lmax, t), compiled for each vector level: the loop
 * body is the header's, so every level gives the same bits. */
#define WEIGHTS_FN(name, attr)                                                     \
  attr static void name(const float *l, int64_t n, float lmax, float t, float *out) { \
    for (int64_t i = 0; i < n; i++) out[i] = srlm_sample_weight(l[i], lmax, t);     \
  }
WEIGHTS_FN(weights_generic, )
#if defined(__x86_64__) || defined(__i386__)
WEIGHTS_FN(weights_avx2, __attribute__((target("avx2,fma"))))
WEIGHTS_FN(weights_avx512, __attribute__((target("avx512f"))))
#endif

static void weights(const float *l, int64_t n, float lmax, float t, float *out) {
#if defined(__x86_64__) || defined(__i386__)
  switch (srlm_cpu_isa()) {
    case SRLM_CPU_ISA_AMX:
    case SRLM_CPU_ISA_AVX512_BF16:
    case SRLM_CPU_ISA_AVX512: weights_avx512(l, n, lmax, t, out); return;
    case SRLM_CPU_ISA_AVX2: weights_avx2(l, n, lmax, t, out); return;
    default: break;
  }
#endif
  weights_generic(l, n, lmax, t, out);
}

static srlm_u128 mass_sum(const float *w, int64_t n, srlm_u128 acc) {
  for (int64_t i = 0; i < n; i++) acc = srlm_u128_add(acc, srlm_sample_mass(w[i]));
  return acc;
}

/* ---- one row ------------------------------------------------------------------------- */

typedef struct row_stats {
  float max;      /* largest finite logit */
  float scale;    /* histogram buckets per logit unit */
  int32_t argmax; /* its lowest id */
  int64_t n_fin;  /* finite logits */
} row_stats;

/* The kept set: tokens ranked no later than the cut (when there is one), w >= wmin,
 * finite logit. */
typedef struct kept {
  int cut;
  float cut_l;
  int32_t cut_id;
  float wmin;
} kept;

static srlm_status scan_row(const float *l, int64_t V, row_stats *st, const char *where) {
  float m = -INFINITY, lo = INFINITY;
  int32_t arg = -1;
  int64_t n_fin = 0;
  for (int64_t i = 0; i < V; i++) {
    const float x = l[i];
    if (x == -INFINITY) continue;
    if (!isfinite(x))
      return srlm_error(SRLM_ERR_RANGE, where, "logit of id %lld is %s", (long long)i, isnan(x) ? "NaN" : "+inf");
    n_fin++;
    if (x < lo) lo = x;
    if (x > m) {
      m = x;
      arg = (int32_t)i;
    }
  }
  if (n_fin == 0) return srlm_error(SRLM_ERR_RANGE, where, "every logit is -inf: no token can be drawn");
  st->max = m;
  /* the buckets cover the row's range (at most BUCKET_SPAN below the max): near-flat rows
     get fine buckets, so the bucket a cut falls in stays small */
  const float span = m - lo < BUCKET_SPAN ? m - lo : BUCKET_SPAN;
  const float scale = span > 0.0f ? (float)N_BUCKETS / span : 0.0f;
  st->scale = isfinite(scale) ? scale : 0.0f; /* a subnormal span: one bucket */
  st->argmax = arg;
  st->n_fin = n_fin;
  return SRLM_OK;
}

/* Z1, the mass of the temperature-1 weights of the row, and ws->w at temperature t (> 0;
 * t = 0 leaves ws->w alone). */
static srlm_u128 weigh_row(srlm_sample_ws *ws, const float *l, float lmax, float t) {
  srlm_u128 z1 = {0, 0};
  float e1[CHUNK];
  for (int64_t i0 = 0; i0 < ws->V; i0 += CHUNK) {
    const int64_t n = ws->V - i0 < CHUNK ? ws->V - i0 : CHUNK;
    float *w1 = t == 1.0f ? ws->w + i0 : e1;
    weights(l + i0, n, lmax, 1.0f, w1);
    z1 = mass_sum(w1, n, z1);
    if (t > 0.0f && t != 1.0f) weights(l + i0, n, lmax, t, ws->w + i0);
  }
  return z1;
}

/* Histogram bucket of a finite logit: (max - l) * scale, the last bucket open-ended.
 * Buckets follow the ranking (a lower bucket never ranks after a higher one), so a cut
 * falls in one bucket and only it is sorted. */
static inline int bucket_of(float l, const row_stats *st) {
  const float d = (st->max - l) * st->scale;
  return d < (float)(N_BUCKETS - 1) ? (int)d : N_BUCKETS - 1;
}

/* Token (l, id) lies in the ranked prefix that ends at the cut (inclusive). */
static inline int in_prefix(const kept *k, float l, int32_t id) {
  return !k->cut || !srlm_sample_ranks_before(k->cut_l, k->cut_id, l, id);
}

static inline int kept_token(const kept *k, float l, int32_t id, float w) {
  return l != -INFINITY && w >= k->wmin && in_prefix(k, l, id);
}

static int cmp_rank(const void *pa, const void *pb) {
  const cand *a = pa, *b = pb;
  if (srlm_sample_ranks_before(a->l, a->id, b->l, b->id)) return -1;
  return srlm_sample_ranks_before(b->l, b->id, a->l, a->id);
}

/* Sorts the tokens of bucket b inside the current prefix into ws->cand; returns how many. */
static int64_t sort_bucket(srlm_sample_ws *ws, const float *l, const kept *k, const row_stats *st, int b) {
  int64_t n = 0;
  for (int64_t i = 0; i < ws->V; i++) {
    if (l[i] == -INFINITY || bucket_of(l[i], st) != b || !in_prefix(k, l[i], (int32_t)i)) continue;
    ws->cand[n].l = l[i];
    ws->cand[n].id = (int32_t)i;
    n++;
  }
  qsort(ws->cand, (size_t)n, sizeof *ws->cand, cmp_rank);
  return n;
}

static void set_cut(kept *k, cand c) {
  k->cut = 1;
  k->cut_l = c.l;
  k->cut_id = c.id;
}

/* top-k (0 < k < finite ids): the prefix ends at the k-th ranked token. */
static void cut_top_k(srlm_sample_ws *ws, const float *l, const row_stats *st, int64_t top_k, kept *k) {
  int64_t *count = ws->count;
  memset(count, 0, sizeof ws->count);
  for (int64_t i = 0; i < ws->V; i++)
    if (l[i] != -INFINITY) count[bucket_of(l[i], st)]++;
  int64_t before = 0;
  int b = 0;
  while (before + count[b] < top_k) before += count[b++];
  const int64_t n = sort_bucket(ws, l, k, st, b);
  SRLM_CHECK(top_k - before - 1 < n, "top-k cut outside its bucket");
  set_cut(k, ws->cand[top_k - before - 1]);
}

/* top-p: the prefix ends at the first ranked token whose inclusive mass reaches
 * P = ceil(top_p Q_k), Q_k the mass of the current prefix. Exact integers: the buckets
 * only decide which tokens get sorted. */
static void cut_top_p(srlm_sample_ws *ws, const float *l, const row_stats *st, float top_p, kept *k) {
  srlm_u128 *mass = ws->mass;
  memset(mass, 0, sizeof ws->mass);
  for (int64_t i = 0; i < ws->V; i++)
    if (l[i] != -INFINITY && in_prefix(k, l[i], (int32_t)i)) {
      const int b = bucket_of(l[i], st);
      mass[b] = srlm_u128_add(mass[b], srlm_sample_mass(ws->w[i]));
    }
  srlm_u128 qk = {0, 0};
  for (int b = 0; b < N_BUCKETS; b++) qk = srlm_u128_add128(qk, mass[b]);
  const srlm_u128 target = srlm_sample_top_p_target(top_p, qk); /* <= qk: the cut exists */
  srlm_u128 cum = {0, 0};
  int b = 0;
  while (srlm_u128_lt(srlm_u128_add128(cum, mass[b]), target)) cum = srlm_u128_add128(cum, mass[b++]);
  const int64_t n = sort_bucket(ws, l, k, st, b);
  for (int64_t j = 0; j < n; j++) {
    cum = srlm_u128_add(cum, srlm_sample_mass(ws->w[ws->cand[j].id]));
    if (!srlm_u128_lt(cum, target)) {
      set_cut(k, ws->cand[j]);
      return;
    }
  }
  SRLM_CHECK(0, "top-p cut outside its bucket");
}

/* The kept set after top-k, top-p and min-p (temperature > 0), and its mass. The top
 * token is always kept (w = 1 >= min_p, first in the ranking), so the mass is >= 2^62. */
static srlm_u128 keep_set(srlm_sample_ws *ws, const float *l, const row_stats *st, const srlm_sample_params *p,
                          kept *k) {
  k->cut = 0;
  k->wmin = p->min_p;
  if (p->top_k > 0 && p->top_k < st->n_fin) cut_top_k(ws, l, st, p->top_k, k);
  if (p->top_p < 1.0f) cut_top_p(ws, l, st, p->top_p, k);
  srlm_u128 q = {0, 0};
  for (int64_t i = 0; i < ws->V; i++)
    if (kept_token(k, l[i], (int32_t)i, ws->w[i])) q = srlm_u128_add(q, srlm_sample_mass(ws->w[i]));
  return q;
}

/* The first kept id (id order) whose inclusive mass exceeds the target (< q: one exists). */
static int32_t draw(const srlm_sample_ws *ws, const float *l, const kept *k, srlm_u128 target) {
  srlm_u128 cum = {0, 0};
  for (int64_t i = 0; i < ws->V; i++) {
    if (!kept_token(k, l[i], (int32_t)i, ws->w[i])) continue;
    cum = srlm_u128_add(cum, srlm_sample_mass(ws->w[i]));
    if (srlm_u128_lt(target, cum)) return (int32_t)i;
  }
  SRLM_CHECK(0, "draw target past the kept mass");
  return -1;
}

srlm_status srlm_sample_row(srlm_sample_ws *ws, const srlm_sample_params *p, int64_t row, double *probs,
                            const char *where) {
  const int64_t V = p->V;
  SRLM_CHECK(ws->V == V, "sample workspace for V = %lld used with V = %lld", (long long)ws->V, (long long)V);
  const float *l = p->logits + row * V;
  row_stats st;
  SRLM_TRY(scan_row(l, V, &st, where));
  const float t = p->temperature;
  const double log_z1 = srlm_sample_log_mass(weigh_row(ws, l, st.max, t));
  int32_t tok;
  double sample_lp = 0.0;
  if (t == 0.0f) {
    tok = st.argmax;
    if (probs) {
      memset(probs, 0, (size_t)V * sizeof *probs);
      probs[tok] = 1.0;
    }
  } else {
    kept k;
    const srlm_u128 q = keep_set(ws, l, &st, p, &k);
    const srlm_philox_out r = srlm_philox_keyed(p->seed, SRLM_RNG_PURPOSE_SAMPLE, (uint32_t)p->seq_id[row],
                                                p->step[row], (uint32_t)(p->seq_id[row] >> 32));
    tok = draw(ws, l, &k, srlm_sample_draw_target(q, srlm_rng_u53(r.v[0], r.v[1])));
    const double log_q = srlm_sample_log_mass(q);
    sample_lp = ((double)l[tok] - (double)st.max) / (double)t - log_q;
    if (probs) {
      const double qd = srlm_u128_to_double(q);
      for (int64_t i = 0; i < V; i++)
        probs[i] = kept_token(&k, l[i], (int32_t)i, ws->w[i]) ? (double)srlm_sample_mass(ws->w[i]) / qd : 0.0;
    }
  }
  p->token[row] = tok;
  p->logprob[row] = (float)(((double)l[tok] - (double)st.max) - log_z1);
  if (p->sample_logprob) p->sample_logprob[row] = (float)sample_lp;
  return SRLM_OK;
}

/* ---- the op ------------------------------------------------------------------------------ */

srlm_status srlm_cpu_sample(srlm_backend *be, srlm_sample_params p) {
  (void)be;
  const char *where = "cpu sample";
  SRLM_TRY(srlm_sample_params_check(&p, where));
  if (p.n == 0) return SRLM_OK;
#ifdef _OPENMP
  const int64_t n_chunks = p.n < omp_get_max_threads() ? p.n : omp_get_max_threads();
#else
  const int64_t n_chunks = 1;
#endif
  srlm_status *st = srlm_xmalloc((size_t)p.n * sizeof *st);
  /* contiguous rows per chunk, one workspace per chunk */
  SRLM_OMP_ROWS
  for (int64_t c = 0; c < n_chunks; c++) {
    srlm_sample_ws *ws = srlm_sample_ws_create(p.V);
    for (int64_t i = c * p.n / n_chunks; i < (c + 1) * p.n / n_chunks; i++) st[i] = srlm_sample_row(ws, &p, i, NULL, where);
    srlm_sample_ws_free(ws);
  }
  int64_t bad = -1;
  for (int64_t i = 0; i < p.n && bad < 0; i++)
    if (st[i] != SRLM_OK) bad = i;
  free(st);
  if (bad < 0) return SRLM_OK;
  /* the worker's message stayed on its thread: the row fails the same way here */
  char row_where[64];
  snprintf(row_where, sizeof row_where, "%s: row %lld", where, (long long)bad);
  srlm_sample_ws *ws = srlm_sample_ws_create(p.V);
  const srlm_status s = srlm_sample_row(ws, &p, bad, NULL, row_where);
  srlm_sample_ws_free(ws);
  return s;
}
