/* The rank watchdog of comm.c (run.rank_timeout; the interface is srlm_comm_watchdog and
 * srlm_comm_phase in include/srlm/comm.h). Private to src/comm.
 *
 * Every rank runs a heartbeat thread that rewrites DIR/.ranks/<rank> ("beat phase") every
 * period (timeout / 5, 0.2 to 2 s). The thread beats while the rank computes, so a busy
 * rank is not late; a stopped process (SIGSTOP, a frozen node) beats no more. Rank 0
 * watches every rank's file, the others watch rank 0's: a beat counter that has not moved
 * for `timeout` seconds by the watcher's own clock (no clock agreement needed across
 * nodes) marks that rank late. The watcher's main thread learns it at its next wait
 * (comm.c's wait_polite, where a job that misses a rank would hang), prints the late
 * rank, its role and its last phase, and ends the job with MPI_Abort. A rank whose file
 * never appears (a run folder not shared with its node) is not watched. */
#ifndef SRLM_COMM_WATCHDOG_H
#define SRLM_COMM_WATCHDOG_H

#include "srlm/core.h"

/* Starts the heartbeat and the watching; labels[r] = rank r's role (copied). */
srlm_status sr_watchdog_start(const char *dir, int rank, int size, double timeout_s, const char *const *labels);

/* This rank's phase for the heartbeat file (cheap: a copy under a lock). */
void sr_watchdog_phase(const char *phase);

/* NULL, or the message naming a late rank (then the caller ends the job). */
const char *sr_watchdog_late(void);

/* One pause of a polling wait (comm.c's MPI waits and overlapped buckets, the NCCL
 * transport's): a late rank ends the job here (its message on stderr, MPI_Abort), else
 * sleeps *ns and doubles it up to cap_ns. */
void sr_watchdog_nap(long *ns, long cap_ns);

/* A function every sr_watchdog_nap calls before it sleeps (NULL: none): the shard-payload
 * transport answers clear-to-sends there (p2p.h), so a rank waiting on anything still lets its
 * peers' receives go on. One per process; the caller's thread only (the waits run on it). */
void sr_watchdog_on_nap(void (*fn)(void *user), void *user);

/* Stops the thread and marks this rank's file as ended (beat -1). */
void sr_watchdog_stop(void);

#endif
