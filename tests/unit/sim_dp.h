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

/* Runs R learners as threads, learner r on body(base + r * stride) (an array of the
 * test's learner records), and waits for all of them; sets up sim's R and barrier for
 * them and tears the barrier down after. */
static inline void sim_dp_run(sim_dp *s, int R, void *(*body)(void *), void *base, size_t stride) {
  pthread_t th[SIM_DP_MAX_RANKS];
  s->R = R;
  pthread_barrier_init(&s->bar, NULL, (unsigned)R);
  for (int r = 0; r < R; r++) pthread_create(&th[r], NULL, body, (char *)base + (size_t)r * stride);
  for (int r = 0; r < R; r++) pthread_join(th[r], NULL);
  pthread_barrier_destroy(&s->bar);
}

#endif
