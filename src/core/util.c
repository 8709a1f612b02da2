/* Timers, checked allocation and whole-file I/O with atomic writes. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "srlm/core.h"

double srlm_time_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
void srlm_timer_start(srlm_timer *t) { t->start = srlm_time_now(); }
double srlm_timer_elapsed(const srlm_timer *t) { return srlm_time_now() - t->start; }

void *srlm_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  SRLM_CHECK(p != NULL, "out of memory allocating %zu bytes", n);
  return p;
}
void *srlm_xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  SRLM_CHECK(p != NULL, "out of memory allocating %zu x %zu bytes", n, size);
  return p;
}
void *srlm_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  SRLM_CHECK(q != NULL, "out of memory reallocating %zu bytes", n);
  return q;
}
char *srlm_xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = srlm_xmalloc(n);
  memcpy(d, s, n);
  return d;
}

srlm_status srlm_read_file(const char *path, char **data, size_t *size) {
  *data = NULL;
  if (size) *size = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return srlm_error(SRLM_ERR_IO, path, "cannot open: %s", strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return srlm_error(SRLM_ERR_IO, path, "not a regular file");
  }
  size_t n = (size_t)st.st_size;
  char *buf = srlm_xmalloc(n + 1);
  size_t got = n ? fread(buf, 1, n, f) : 0;
  int err = ferror(f);
  fclose(f);
  if (got != n || err) {
    free(buf);
    return srlm_error(SRLM_ERR_IO, path, "short read (%zu of %zu bytes)", got, n);
  }
  buf[n] = '\0';
  *data = buf;
  if (size) *size = n;
  return SRLM_OK;
}

srlm_status srlm_write_file_atomic(const char *path, const void *data, size_t size) {
  char tmp[4096];
  int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  if (n < 0 || (size_t)n >= sizeof tmp) return srlm_error(SRLM_ERR_IO, path, "path too long");
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return srlm_error(SRLM_ERR_IO, path, "cannot create %s: %s", tmp, strerror(errno));
  const char *p = data;
  size_t left = size;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      close(fd);
      unlink(tmp);
      return srlm_error(SRLM_ERR_IO, path, "write failed: %s", strerror(e));
    }
    p += w;
    left -= (size_t)w;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    int e = errno;
    unlink(tmp);
    return srlm_error(SRLM_ERR_IO, path, "flush failed: %s", strerror(e));
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return srlm_error(SRLM_ERR_IO, path, "rename from %s failed: %s", tmp, strerror(e));
  }
  return SRLM_OK;
}

srlm_status srlm_mkdirs(const char *path) {
  size_t n = strlen(path);
  if (n == 0) return srlm_error(SRLM_ERR_IO, "mkdir", "empty path");
  char *buf = srlm_xstrdup(path);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char c = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
      int e = errno;
      srlm_status st = srlm_error(SRLM_ERR_IO, buf, "cannot create directory: %s", strerror(e));
      free(buf);
      return st;
    }
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
      srlm_status rc = srlm_error(SRLM_ERR_IO, buf, "exists and is not a directory");
      free(buf);
      return rc;
    }
    buf[i] = c;
  }
  free(buf);
  return SRLM_OK;
}

void srlm_strbuf_append(srlm_strbuf *b, const void *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    b->p = srlm_xrealloc(b->p, cap);
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

srlm_status srlm_path_join(char *out, size_t n, const char *a, const char *b) {
  int w = snprintf(out, n, "%s/%s", a, b);
  if (w < 0 || (size_t)w >= n) return srlm_error(SRLM_ERR_IO, a, "path too long");
  return SRLM_OK;
}

/* ---- element types ---------------------------------------------------------------- */

size_t srlm_dtype_size(srlm_dtype dt) {
  switch (dt) {
    case SRLM_F32: return 4;
    case SRLM_BF16: return 2;
  }
  return 0;
}

const char *srlm_dtype_name(srlm_dtype dt) {
  switch (dt) {
    case SRLM_F32: return "fp32";
    case SRLM_BF16: return "bf16";
  }
  return "?";
}

srlm_status srlm_dtype_parse(const char *s, const char *where, srlm_dtype *out) {
  if (s && (!strcmp(s, "fp32") || !strcmp(s, "f32") || !strcmp(s, "float32"))) {
    *out = SRLM_F32;
    return SRLM_OK;
  }
  if (s && (!strcmp(s, "bf16") || !strcmp(s, "bfloat16"))) {
    *out = SRLM_BF16;
    return SRLM_OK;
  }
  return srlm_error(SRLM_ERR_CONFIG, where, "unknown dtype '%s' (expected fp32 or bf16)", s ? s : "(null)");
}

void srlm_convert(void *dst, srlm_dtype ddt, const void *src, srlm_dtype sdt, size_t n) {
  if (ddt == sdt) {
    memcpy(dst, src, n * srlm_dtype_size(sdt));
  } else if (sdt == SRLM_BF16) {
    const uint16_t *s = src;
    float *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = srlm_bf16_to_f32(s[i]);
  } else {
    const float *s = src;
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = srlm_f32_to_bf16(s[i]);
  }
}
