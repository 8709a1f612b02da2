/* Learners simulated as threads for the trainer tests (include after test.h): every
 * learner's dp->reduce copies its gradients and statistics into its slot, waits for the
 * others, and sums the slots in rank order, as srlm_comm's deterministic all-reduce does. */
#ifndef SRLM_TEST_SIM_DP_H
#define SRLM_TEST_SIM_DP_H

#include <pthread.h>
#include <string.h>

#include "srlm/dp.h"

#define SIM_DP_MAX_RANKS 4
#define SIM_DP_MAX_STATS 32

typedef struct sim_dp {
  int R;                 /* learners */
  pthread_barrier_t bar; /* R parties */
  pthread_mutex_t mu;    /* the ZeRO-1 chain (zero-initialized: set up by sim_dp_run) */
  pthread_cond_t cv;
  int turn;              /* the chain's next learner (R: done) */
  double chain;
  float *slot[SIM_DP_MAX_RANKS];
  double stats[SIM_DP_MAX_RANKS][SIM_DP_MAX_STATS];
  int64_t n;                      /* gradient length every reduce must pass */
  int reduces[SIM_DP_MAX_RANKS];  /* reduce calls per learner */
} sim_dp;

/* dp->ctx of learner `rank`. */
typedef struct sim_dp_rank {
  sim_dp *sim;
  int rank;
} sim_dp_rank;

static srlm_status sim_reduce(void *ctx, float *grads, int64_t n, double *stats, int n_stats) {
  const sim_dp_rank *me = ctx;
  sim_dp *s = me->sim;
  const int r = me->rank;
  if (n != s->n || n_stats > SIM_DP_MAX_STATS)
    return srlm_error(SRLM_ERR_INTERNAL, "sim_reduce", "sizes %lld, %d", (long long)n, n_stats);
  s->reduces[r]++;
  memcpy(s->slot[r], grads, (size_t)n * sizeof *grads);
  memcpy(s->stats[r], stats, (size_t)n_stats * sizeof *stats);
  pthread_barrier_wait(&s->bar);
  for (int64_t i = 0; i < n; i++) {
    float v = s->slot[0][i];
    for (int q = 1; q < s->R; q++) v += s->slot[q][i];
    grads[i] = v;
  }
  for (int k = 0; k < n_stats; k++) {
    double v = s->stats[0][k];
    for (int q = 1; q < s->R; q++) v += s->stats[q][k];
    stats[k] = v;
  }
  pthread_barrier_wait(&s->bar); /* nobody refills a slot before every learner has read it */
  return SRLM_OK;
}

/* ZeRO-1 (dp.h): the same sums as sim_reduce, kept only in this learner's range. */
static srlm_status sim_reduce_scatter(void *ctx, float *grads, int64_t n, const int64_t *b, double *stats, int n_stats) {
  const sim_dp_rank *me = ctx;
  sim_dp *s = me->sim;
  const int r = me->rank;
  if (n != s->n || n_stats > SIM_DP_MAX_STATS || b[0] != 0 || b[s->R] != n)
    return srlm_error(SRLM_ERR_INTERNAL, "sim_reduce_scatter", "sizes %lld, %d", (long long)n, n_stats);
  s->reduces[r]++;
  memcpy(s->slot[r], grads, (size_t)n * sizeof *grads);
  memcpy(s->stats[r], stats, (size_t)n_stats * sizeof *stats);
  pthread_barrier_wait(&s->bar);
  for (int64_t i = b[r]; i < b[r + 1]; i++) {
    float v = s->slot[0][i];
    for (int q = 1; q < s->R; q++) v += s->slot[q][i];
    grads[i] = v;
  }
  for (int k = 0; k < n_stats; k++) {
    double v = s->stats[0][k];
    for (int q = 1; q < s->R; q++) v += s->stats[q][k];
    stats[k] = v;
  }
  pthread_barrier_wait(&s->bar);
  return SRLM_OK;
}

static srlm_status sim_allgather(void *ctx, void *x, int64_t n, srlm_dtype dt, const int64_t *b) {
  const sim_dp_rank *me = ctx;
  sim_dp *s = me->sim;
  const int r = me->rank;
  const size_t esz = srlm_dtype_size(dt); /* at most a float: a slot holds n of them */
  if (n != s->n || b[0] != 0 || b[s->R] != n || esz == 0 || esz > sizeof(float))
    return srlm_error(SRLM_ERR_INTERNAL, "sim_allgather", "size %lld, dtype %d", (long long)n, (int)dt);
  char *xb = x;
  memcpy((char *)s->slot[r] + (size_t)b[r] * esz, xb + (size_t)b[r] * esz, (size_t)(b[r + 1] - b[r]) * esz);
  pthread_barrier_wait(&s->bar);
  for (int q = 0; q < s->R; q++)
    if (q != r) memcpy(xb + (size_t)b[q] * esz, (char *)s->slot[q] + (size_t)b[q] * esz, (size_t)(b[q + 1] - b[q]) * esz);
  pthread_barrier_wait(&s->bar);
  return SRLM_OK;
}

static srlm_status sim_chain(void *ctx, double *x, int stage) {
  const sim_dp_rank *me = ctx;
  sim_dp *s = me->sim;
  const int r = me->rank;
  pthread_mutex_lock(&s->mu);
  if (stage == 0) {
    while (s->turn != r) pthread_cond_wait(&s->cv, &s->mu);
    if (r > 0) *x = s->chain;
    pthread_mutex_unlock(&s->mu);
    return SRLM_OK;
  }
  s->chain = *x;
  s->turn = r + 1;
  pthread_cond_broadcast(&s->cv);
  while (s->turn != s->R) pthread_cond_wait(&s->cv, &s->mu);
  *x = s->chain;
  pthread_mutex_unlock(&s->mu);
  pthread_barrier_wait(&s->bar); /* all have the total before the next chain starts */
  if (r == 0) {
    pthread_mutex_lock(&s->mu);
    s->turn = 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
  }
  return SRLM_OK;
}

/* Learner r's dp over sim (ctx: its sim_dp_rank); zero: ZeRO-1. */
static inline srlm_dp sim_dp_of(sim_dp_rank *ctx, int r, int R, int zero) {
  return (srlm_dp){.rank = r, .size = R, .reduce = sim_reduce, .ctx = ctx, .zero = zero,
                   .reduce_scatter = sim_reduce_scatter, .allgather = sim_allgather, .chain = sim_chain};
}

/* Runs R learners as threads, learner r on body(base + r * stride) (an array of the
 * test's learner records), and waits for all of them; sets up sim's R and barrier for
 * them and tears the barrier down after. */
static inline void sim_dp_run(sim_dp *s, int R, void *(*body)(void *), void *base, size_t stride) {
  pthread_t th[SIM_DP_MAX_RANKS];
  s->R = R;
  s->turn = 0;
  pthread_barrier_init(&s->bar, NULL, (unsigned)R);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  for (int r = 0; r < R; r++) pthread_create(&th[r], NULL, body, (char *)base + (size_t)r * stride);
  for (int r = 0; r < R; r++) pthread_join(th[r], NULL);
  pthread_barrier_destroy(&s->bar);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
}

#endif
