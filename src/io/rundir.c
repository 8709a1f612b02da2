/* A run folder owned by one job at a time: its lock, stale temporary files, srlm's own
 * files (include/srlm/rundir.h). */
#include "srlm/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct srlm_rundir_lock {
  int fd;
};

srlm_status srlm_rundir_lock_take(const char *dir, srlm_rundir_lock **out) {
  *out = NULL;
  SRLM_TRY(srlm_mkdirs(dir));
  char path[4096];
  SRLM_TRY(srlm_path_join(path, sizeof path, dir, SRLM_RUNDIR_LOCK));
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return srlm_error(SRLM_ERR_IO, path, "cannot open the run folder's lock: %s", strerror(errno));
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  if (fcntl(fd, F_SETLK, &fl) != 0) {
    int e = errno;
    char holder[256] = "";
    struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    long pid = fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK ? (long)q.l_pid : 0;
    ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
    close(fd); /* never held: closing drops nothing */
    holder[n > 0 ? n : 0] = '\0';
    holder[strcspn(holder, "\n")] = '\0';
    if (e != EAGAIN && e != EACCES)
      return srlm_error(SRLM_ERR_IO, path, "cannot lock the run folder: %s (a file system without fcntl locks?)",
                        strerror(e));
    char host[64] = "?";
    long wpid = 0;
    if (sscanf(holder, "host %63s pid %ld", host, &wpid) != 2) wpid = pid;
    return srlm_error(SRLM_ERR_IO, dir, "the run folder is in use by another srlm job (host %s, pid %ld, which "
                      "holds %s): wait for it to end or stop it; a second job would mix its files with that one's",
                      host, wpid, path);
  }
  char host[256] = "unknown";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = '\0';
  char text[400];
  int len = snprintf(text, sizeof text, "host %s pid %ld\n", host, (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len) {
    int e = errno;
    close(fd);
    return srlm_error(SRLM_ERR_IO, path, "cannot write the holder: %s", strerror(e));
  }
  srlm_rundir_lock *l = srlm_xmalloc(sizeof *l);
  l->fd = fd;
  *out = l;
  return SRLM_OK;
}

srlm_status srlm_rundir_lock_holder(const char *dir, int *held, char *holder, size_t n) {
  *held = 0;
  if (n) holder[0] = '\0';
  char path[4096];
  SRLM_TRY(srlm_path_join(path, sizeof path, dir, SRLM_RUNDIR_LOCK));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? SRLM_OK : srlm_error(SRLM_ERR_IO, path, "cannot open: %s", strerror(errno));
  struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
  if (fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK) {
    char text[256];
    ssize_t got = pread(fd, text, sizeof text - 1, 0);
    text[got > 0 ? got : 0] = '\0';
    text[strcspn(text, "\n")] = '\0';
    *held = 1;
    snprintf(holder, n, "%s", text[0] ? text : "unknown holder");
  }
  close(fd); /* this process holds no lock on it: closing drops nothing */
  return SRLM_OK;
}

void srlm_rundir_lock_release(srlm_rundir_lock *l) {
  if (!l) return;
  close(l->fd); /* the lock goes with the descriptor */
  free(l);
}

/* "name.tmp.<digits>" */
static int is_tmp_name(const char *name) {
  const char *p = strstr(name, ".tmp.");
  if (!p) return 0;
  const char *d = p + 5;
  while (strstr(d, ".tmp.")) d = strstr(d, ".tmp.") + 5; /* the last ".tmp." */
  if (!*d) return 0;
  for (; *d; d++)
    if (*d < '0' || *d > '9') return 0;
  return 1;
}

static int64_t g_tmp_removed, g_tmp_bytes;
static int g_tmp_errno;
static int tmp_visit(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)ftw;
  if (flag != FTW_F || !is_tmp_name(path + ftw->base)) return 0;
  if (unlink(path) != 0) {
    g_tmp_errno = errno;
    return 1;
  }
  g_tmp_removed++;
  g_tmp_bytes += (int64_t)sb->st_size;
  return 0;
}

static int rm_visit(const char *path, const struct stat *sb, int flag, struct FTW *ftw);

srlm_status srlm_rundir_clean_tmp(const char *dir, int64_t *removed, int64_t *bytes) {
  g_tmp_removed = g_tmp_bytes = 0;
  g_tmp_errno = 0;
  char ranks[4096];
  SRLM_TRY(srlm_path_join(ranks, sizeof ranks, dir, ".ranks"));
  if (nftw(ranks, rm_visit, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
    return srlm_error(SRLM_ERR_IO, ranks, "cannot remove the heartbeats of an earlier job: %s", strerror(errno));
  int rc = nftw(dir, tmp_visit, 16, FTW_PHYS);
  if (removed) *removed = g_tmp_removed;
  if (bytes) *bytes = g_tmp_bytes;
  if (rc != 0 && g_tmp_errno)
    return srlm_error(SRLM_ERR_IO, dir, "cannot remove a stale temporary file: %s", strerror(g_tmp_errno));
  if (rc != 0 && errno != ENOENT) return srlm_error(SRLM_ERR_IO, dir, "cannot walk the folder: %s", strerror(errno));
  return SRLM_OK;
}

/* srlm's own top-level entries (rundir.h). */
static int is_own(const char *name) {
  static const char *const k_files[] = {"config.yaml", "checkpoint.h5", "metrics.jsonl", "summary.json", "report.html"};
  for (size_t i = 0; i < sizeof k_files / sizeof *k_files; i++)
    if (!strcmp(name, k_files[i])) return 1;
  if (!strncmp(name, "events.out.tfevents.", 20)) return 1;
  if (!strncmp(name, "iter_", 5) && name[5]) {
    for (const char *d = name + 5; *d; d++)
      if (*d < '0' || *d > '9') return 0;
    return 1;
  }
  return 0;
}

srlm_status srlm_rundir_find_run(const char *dir, int *found, char *first, size_t n) {
  *found = 0;
  if (n) first[0] = '\0';
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? SRLM_OK : srlm_error(SRLM_ERR_IO, dir, "cannot list: %s", strerror(errno));
  struct dirent *e;
  while ((e = readdir(d)))
    if (is_own(e->d_name)) {
      if (!*found && n) snprintf(first, n, "%s", e->d_name);
      (*found)++;
    }
  closedir(d);
  return SRLM_OK;
}

static int rm_visit(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  return (flag == FTW_DP ? rmdir(path) : unlink(path)) != 0;
}

srlm_status srlm_rundir_clear(const char *dir, int *removed) {
  *removed = 0;
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? SRLM_OK : srlm_error(SRLM_ERR_IO, dir, "cannot list: %s", strerror(errno));
  srlm_status st = SRLM_OK;
  struct dirent *e;
  while ((e = readdir(d)) && st == SRLM_OK) {
    if (!is_own(e->d_name)) continue;
    char path[4096];
    st = srlm_path_join(path, sizeof path, dir, e->d_name);
    if (st == SRLM_OK && nftw(path, rm_visit, 16, FTW_DEPTH | FTW_PHYS) != 0)
      st = srlm_error(SRLM_ERR_IO, path, "cannot remove: %s", strerror(errno));
    if (st == SRLM_OK) (*removed)++;
  }
  closedir(d);
  return st;
}
