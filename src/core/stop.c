/* Signals that ask a job to stop at its next common point (include/srlm/stop.h). */
#include "srlm/stop.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const int k_signals[] = {SIGUSR1, SIGTERM, SIGINT};
#define N_SIGNALS (sizeof k_signals / sizeof k_signals[0])

static volatile sig_atomic_t g_signal;       /* the first signal, 0 before */
static char g_first[N_SIGNALS][320];         /* "what happens next", per signal */
static char g_second[N_SIGNALS][200];        /* "stopping now", per signal */

const char *srlm_stop_signal_name(int sig) {
  static char other[32];
  switch (sig) {
    case SIGUSR1: return "SIGUSR1";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    default: snprintf(other, sizeof other, "signal %d", sig); return other;
  }
}

static void on_signal(int sig) {
  size_t i = 0;
  while (i < N_SIGNALS && k_signals[i] != sig) i++;
  if (i == N_SIGNALS) return;
  if (g_signal) { /* the second: now, without a checkpoint */
    ssize_t w = write(STDERR_FILENO, g_second[i], strlen(g_second[i]));
    (void)w;
    _exit(128 + sig);
  }
  g_signal = sig;
  ssize_t w = write(STDERR_FILENO, g_first[i], strlen(g_first[i]));
  (void)w;
}

void srlm_stop_install(int rank, const char *role) {
  for (size_t i = 0; i < N_SIGNALS; i++) {
    const char *name = srlm_stop_signal_name(k_signals[i]);
    snprintf(g_first[i], sizeof g_first[i],
             "srlm: rank %d (%s) got %s: finishing the current step, then all ranks write a checkpoint and exit "
             "with status 75 (run again with --resume); a second signal stops at once without a checkpoint\n",
             rank, role, name);
    snprintf(g_second[i], sizeof g_second[i],
             "srlm: rank %d (%s) got %s again: stopping now without a checkpoint (the previous one stays valid)\n",
             rank, role, name);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(k_signals[i], &sa, NULL);
  }
}

int srlm_stop_signal(void) { return (int)g_signal; }
