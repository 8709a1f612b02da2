/* srlm rundir: a run folder (run.out_dir/run.name) owned by one job at a time.
 *
 * The lock: RUN_DIR/.lock, an fcntl (POSIX record) write lock over the whole file, held by
 * the job's lead rank from before it touches the folder until it exits. The kernel (and,
 * on NFS, the lock manager; on Lustre the distributed lock manager) releases it when the
 * holder dies, whatever the way; there is nothing stale to clean up by hand. The holder
 * writes "host pid" into the file, so a second job is refused naming them. POSIX record
 * locks belong to the process: the holder must not open and close .lock again (closing any
 * descriptor of the file would drop the lock).
 *
 * Once the lock is held every temporary file in the folder (*.tmp.<pid>, the names of
 * srlm_write_file_atomic, the safetensors and HDF5 writers) belongs to a writer that is
 * gone: srlm_rundir_clean_tmp removes them, and the rank heartbeats of an earlier job
 * (.ranks/, the watchdog's: comm.h).
 *
 * srlm's own files, the ones srlm_rundir_find_run looks for and srlm_rundir_clear
 * removes: config.yaml, checkpoint.h5, metrics.jsonl, summary.json, report.html,
 * events.out.tfevents.*, and the folders iter_<N>/. Anything else (a batch script's log,
 * a user's notes) is left alone. */
#ifndef SRLM_RUNDIR_H
#define SRLM_RUNDIR_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#define SRLM_RUNDIR_LOCK ".lock"

typedef struct srlm_rundir_lock srlm_rundir_lock;

/* Creates dir if needed and takes its lock (never waits). Held by another process:
 * SRLM_ERR_IO naming the holder's host and pid. */
srlm_status srlm_rundir_lock_take(const char *dir, srlm_rundir_lock **out);

/* Who holds dir's lock, without taking it or creating anything: *held = 0 when nobody
 * does (or there is no folder); else holder = "host H pid P". */
srlm_status srlm_rundir_lock_holder(const char *dir, int *held, char *holder, size_t n);

/* Releases the lock (NULL is fine). */
void srlm_rundir_lock_release(srlm_rundir_lock *l);

/* Removes every *.tmp.<digits> file under dir (with the lock held: their writers are
 * gone); *removed (may be NULL) = how many, *bytes (may be NULL) = their size. */
srlm_status srlm_rundir_clean_tmp(const char *dir, int64_t *removed, int64_t *bytes);

/* Whether dir holds any of srlm's own files: *found = their count, the first one's name
 * in first (n bytes). A missing dir holds none. */
srlm_status srlm_rundir_find_run(const char *dir, int *found, char *first, size_t n);

/* Removes srlm's own files and folders from dir (not .lock, not other files);
 * *removed = the number of top-level entries removed. */
srlm_status srlm_rundir_clear(const char *dir, int *removed);

#endif
