/* srlm stop: a job asked to stop by a signal (preemption, requeue, Ctrl-C).
 *
 * srlm_stop_install catches SIGUSR1 (Slurm's --signal=B:USR1@N warning, forwarded by
 * mpirun), SIGTERM (scontrol requeue, scancel, mpirun forwarding) and SIGINT. The first
 * signal prints which signal reached which rank and what happens next, and only sets a
 * flag: the job carries on to the next point where all ranks agree (selfreward.h: an
 * optimizer step boundary or an iteration boundary), writes a checkpoint there and exits
 * with status 75 (EX_TEMPFAIL: "checkpointed, run me again with --resume"). A second
 * signal while stopping ends the process at once with 128 + the signal's number and no
 * checkpoint (the previous checkpoint stays valid: every write is to a temporary name).
 *
 * The handler is async-signal-safe: its messages are formatted at install time and
 * written with write(2). */
#ifndef SRLM_STOP_H
#define SRLM_STOP_H

/* Installs the handlers; rank and role name this process in the messages. */
void srlm_stop_install(int rank, const char *role);

/* The signal that asked this process to stop (SIGUSR1, SIGTERM, SIGINT), or 0. */
int srlm_stop_signal(void);

/* "SIGUSR1", "SIGTERM", "SIGINT" or "signal N" for any other number. */
const char *srlm_stop_signal_name(int sig);

#endif
