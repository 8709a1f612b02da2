/* The rank watchdog: heartbeat files and the late-rank check (watchdog.h). */
#include "watchdog.h"

#include <errno.h>
#include <mpi.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PHASE_CAP 160

static struct {
  pthread_t th;
  bool running;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool quit;
  char dir[4096];
  int rank, size, fd;
  double timeout, period;
  char phase[PHASE_CAP];
  char **labels;
  int64_t beat;
  /* the watcher's view of each watched rank: last beat seen and when it changed */
  int64_t *seen;
  double *changed;
  atomic_int late; /* -1 none, else the late rank */
  char msg[600];
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .late = -1};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void rank_path(char *out, size_t n, int r) { snprintf(out, n, "%s/.ranks/%d", g.dir, r); }

static void write_beat(int64_t beat) {
  char line[PHASE_CAP + 40];
  pthread_mutex_lock(&g.mu);
  int len = snprintf(line, sizeof line, "%lld %s\n", (long long)beat, g.phase);
  pthread_mutex_unlock(&g.mu);
  if (len >= (int)sizeof line) len = (int)sizeof line - 1;
  /* one pwrite of the whole line, then cut what a longer earlier line left */
  if (pwrite(g.fd, line, (size_t)len, 0) == len && ftruncate(g.fd, len) == 0) return;
}

/* Rank r's beat and phase; 0 if its file is not there (yet). */
static int read_beat(int r, int64_t *beat, char *phase, size_t n) {
  char path[4200], buf[PHASE_CAP + 40];
  rank_path(path, sizeof path, r);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  if (got <= 0) return 0;
  buf[got] = '\0';
  long long b;
  int at = 0;
  if (sscanf(buf, "%lld %n", &b, &at) < 1) return 0;
  *beat = b;
  snprintf(phase, n, "%.*s", (int)strcspn(buf + at, "\n"), buf + at);
  return 1;
}

static void check(int r, double t) {
  int64_t beat;
  char phase[PHASE_CAP];
  if (!read_beat(r, &beat, phase, sizeof phase) || beat < 0) return; /* not watched, or ended */
  if (beat != g.seen[r]) {
    g.seen[r] = beat;
    g.changed[r] = t;
    return;
  }
  if (t - g.changed[r] < g.timeout || atomic_load(&g.late) >= 0) return;
  snprintf(g.msg, sizeof g.msg,
           "srlm: rank %d (%s) has not answered for %.0f s (run.rank_timeout: %.0f s; its last phase: %s): the "
           "process is stopped or its node frozen; rank %d ends the job\n",
           r, g.labels[r], t - g.changed[r], g.timeout, phase, g.rank);
  atomic_store(&g.late, r);
}

static void *beat_loop(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g.mu);
  while (!g.quit) {
    pthread_mutex_unlock(&g.mu);
    write_beat(++g.beat);
    double t = now_s();
    if (g.rank == 0)
      for (int r = 1; r < g.size; r++) check(r, t);
    else
      check(0, t);
    pthread_mutex_lock(&g.mu);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long long ns = (long long)until.tv_nsec + (long long)(g.period * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec = (long)(ns % 1000000000);
    if (!g.quit) pthread_cond_timedwait(&g.cv, &g.mu, &until);
  }
  pthread_mutex_unlock(&g.mu);
  return NULL;
}

srlm_status sr_watchdog_start(const char *dir, int rank, int size, double timeout_s, const char *const *labels) {
  if (g.running || timeout_s <= 0 || size < 2) return SRLM_OK;
  snprintf(g.dir, sizeof g.dir, "%s", dir);
  char path[4200];
  snprintf(path, sizeof path, "%s/.ranks", dir);
  SRLM_TRY(srlm_mkdirs(path));
  rank_path(path, sizeof path, rank);
  g.fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (g.fd < 0) return srlm_error(SRLM_ERR_IO, path, "cannot create the rank's heartbeat file: %s", strerror(errno));
  g.rank = rank;
  g.size = size;
  g.timeout = timeout_s;
  g.period = timeout_s / 5 < 0.2 ? 0.2 : timeout_s / 5 > 2 ? 2 : timeout_s / 5;
  g.labels = srlm_xcalloc((size_t)size, sizeof *g.labels);
  for (int r = 0; r < size; r++) g.labels[r] = srlm_xstrdup(labels[r]);
  g.seen = srlm_xmalloc((size_t)size * sizeof *g.seen);
  g.changed = srlm_xmalloc((size_t)size * sizeof *g.changed);
  double t = now_s();
  for (int r = 0; r < size; r++) {
    g.seen[r] = -2;
    g.changed[r] = t;
  }
  g.quit = false;
  if (!g.phase[0]) snprintf(g.phase, sizeof g.phase, "starting");
  if (pthread_create(&g.th, NULL, beat_loop, NULL) != 0) {
    close(g.fd);
    return srlm_error(SRLM_ERR_LIB, "watchdog", "cannot start the heartbeat thread");
  }
  g.running = true;
  return SRLM_OK;
}

void sr_watchdog_phase(const char *phase) {
  pthread_mutex_lock(&g.mu);
  snprintf(g.phase, sizeof g.phase, "%s", phase);
  pthread_mutex_unlock(&g.mu);
}

const char *sr_watchdog_late(void) { return atomic_load(&g.late) >= 0 ? g.msg : NULL; }

void sr_watchdog_stop(void) {
  if (!g.running) return;
  pthread_mutex_lock(&g.mu);
  g.quit = true;
  pthread_cond_signal(&g.cv);
  pthread_mutex_unlock(&g.mu);
  pthread_join(g.th, NULL);
  write_beat(-1); /* ended: nobody waits for this rank's beats any more */
  close(g.fd);
  for (int r = 0; r < g.size; r++) free(g.labels[r]);
  free(g.labels);
  free(g.seen);
  free(g.changed);
  g.running = false;
}

static void (*g_nap_fn)(void *);
static void *g_nap_user;

void sr_watchdog_on_nap(void (*fn)(void *user), void *user) {
  g_nap_fn = fn;
  g_nap_user = user;
}

void sr_watchdog_nap(long *ns, long cap_ns) {
  const char *late = sr_watchdog_late(); /* a rank stopped answering: the wait would never end */
  if (late) {
    fputs(late, stderr);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (g_nap_fn) g_nap_fn(g_nap_user);
  struct timespec ts = {0, *ns};
  nanosleep(&ts, NULL);
  if (*ns < cap_ns) *ns *= 2;
}
