/* TensorBoard event files (include/srlm/tfevents.h): TFRecord framing with masked
 * CRC32C and hand-encoded tensorflow.Event protobufs. Protobuf wire format: a field
 * key is the varint (field << 3 | wire type); wire types used: 0 varint, 1 fixed64,
 * 2 length-delimited, 5 fixed32; fixed-width values are little endian. */
#include "srlm/tfevents.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct srlm_tfevents {
  FILE *f;
  int failed; /* a write failed since the last flush */
  char path[4400];
};

static uint32_t g_crc_table[256]; /* byte-at-a-time table of the reflected polynomial */
static pthread_once_t g_crc_once = PTHREAD_ONCE_INIT;
static void crc_table_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    g_crc_table[i] = c;
  }
}

uint32_t srlm_crc32c(const void *data, size_t n) {
  pthread_once(&g_crc_once, crc_table_init);
  const uint32_t *table = g_crc_table;
  const unsigned char *p = data;
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t srlm_tfevents_mask_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

/* ---- protobuf encoding into a small growable buffer ---------------------------------- */

typedef struct pbuf {
  unsigned char *p;
  size_t n, cap;
} pbuf;

static void pb_bytes(pbuf *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = 2 * (b->n + n) + 64;
    b->p = srlm_xrealloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
}
static void pb_varint(pbuf *b, uint64_t v) {
  unsigned char t[10];
  size_t n = 0;
  do {
    t[n++] = (unsigned char)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
    v >>= 7;
  } while (v);
  pb_bytes(b, t, n);
}
static void pb_le(pbuf *b, uint64_t v, int width) {
  unsigned char t[8];
  for (int i = 0; i < width; i++) t[i] = (unsigned char)(v >> (8 * i));
  pb_bytes(b, t, (size_t)width);
}
static void pb_key(pbuf *b, int field, int type) { pb_varint(b, (uint64_t)(field << 3 | type)); }
static void pb_lendelim(pbuf *b, int field, const void *d, size_t n) {
  pb_key(b, field, 2);
  pb_varint(b, n);
  pb_bytes(b, d, n);
}
static void pb_double(pbuf *b, int field, double x) {
  uint64_t u;
  memcpy(&u, &x, 8);
  pb_key(b, field, 1);
  pb_le(b, u, 8);
}

static double wall_time(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

/* One TFRecord around data. */
static void write_record(srlm_tfevents *w, const pbuf *data) {
  unsigned char head[12];
  uint64_t len = data->n;
  for (int i = 0; i < 8; i++) head[i] = (unsigned char)(len >> (8 * i));
  uint32_t c = srlm_tfevents_mask_crc(srlm_crc32c(head, 8));
  for (int i = 0; i < 4; i++) head[8 + i] = (unsigned char)(c >> (8 * i));
  uint32_t d = srlm_tfevents_mask_crc(srlm_crc32c(data->p, data->n));
  unsigned char tail[4];
  for (int i = 0; i < 4; i++) tail[i] = (unsigned char)(d >> (8 * i));
  if (fwrite(head, 1, 12, w->f) != 12 || fwrite(data->p, 1, data->n, w->f) != data->n || fwrite(tail, 1, 4, w->f) != 4)
    w->failed = 1;
}

srlm_status srlm_tfevents_open(const char *dir, srlm_tfevents **out) {
  *out = NULL;
  char host[256] = "localhost";
  if (gethostname(host, sizeof host - 1) != 0) strcpy(host, "localhost");
  host[sizeof host - 1] = 0;
  for (char *h = host; *h; h++)
    if (*h == '/') *h = '_';
  srlm_tfevents *w = srlm_xcalloc(1, sizeof *w);
  long now = (long)time(NULL);
  int fd = -1;
  for (int k = 0; k < 1000 && fd < 0; k++) { /* a resume within the same second gets a new name */
    int n = k ? snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%ld.%s.%d", dir, now, host, k)
              : snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%ld.%s", dir, now, host);
    if (n < 0 || (size_t)n >= sizeof w->path) {
      free(w);
      return srlm_error(SRLM_ERR_IO, dir, "path too long for an events file");
    }
    fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0 && errno != EEXIST) {
      srlm_status st = srlm_error(SRLM_ERR_IO, w->path, "cannot create: %s", strerror(errno));
      free(w);
      return st;
    }
  }
  if (fd < 0) {
    free(w);
    return srlm_error(SRLM_ERR_IO, dir, "no free events file name for this second");
  }
  w->f = fdopen(fd, "wb");
  if (!w->f) {
    close(fd);
    srlm_status st = srlm_error(SRLM_ERR_IO, w->path, "cannot open: %s", strerror(errno));
    free(w);
    return st;
  }
  pbuf b = {0};
  pb_double(&b, 1, wall_time());
  static const char k_version[] = "brain.Event:2";
  pb_lendelim(&b, 3, k_version, sizeof k_version - 1);
  write_record(w, &b);
  free(b.p);
  srlm_status st = srlm_tfevents_flush(w);
  if (st != SRLM_OK) {
    srlm_tfevents_close(w);
    return st;
  }
  *out = w;
  return SRLM_OK;
}

const char *srlm_tfevents_path(const srlm_tfevents *w) { return w->path; }

void srlm_tfevents_scalar(srlm_tfevents *w, const char *tag, int64_t step, double value) {
  pbuf v = {0}, s = {0}, e = {0};
  pb_lendelim(&v, 1, tag, strlen(tag)); /* Summary.Value.tag */
  float x = (float)value;
  uint32_t u;
  memcpy(&u, &x, 4);
  pb_key(&v, 2, 5); /* Summary.Value.simple_value */
  pb_le(&v, u, 4);
  pb_lendelim(&s, 1, v.p, v.n); /* Summary.value */
  pb_double(&e, 1, wall_time()); /* Event.wall_time */
  pb_key(&e, 2, 0);              /* Event.step */
  pb_varint(&e, (uint64_t)step);
  pb_lendelim(&e, 5, s.p, s.n); /* Event.summary */
  write_record(w, &e);
  free(v.p);
  free(s.p);
  free(e.p);
}

static int is_scalar(const char *key, const json_t *v, const char *const *skip) {
  for (const char *const *s = skip; s && *s; s++)
    if (!strcmp(*s, key)) return 0;
  return json_is_number(v) || json_is_boolean(v);
}

int64_t srlm_tfevents_json_count(const json_t *o, const char *const *skip) {
  const char *key;
  json_t *v;
  int64_t n = 0;
  json_object_foreach((json_t *)o, key, v) n += is_scalar(key, v, skip);
  return n;
}

srlm_status srlm_tfevents_json(srlm_tfevents *w, const char *prefix, int64_t step, const json_t *o,
                               const char *const *skip, int64_t from) {
  const char *key;
  json_t *v;
  int64_t i = 0;
  json_object_foreach((json_t *)o, key, v) {
    if (!is_scalar(key, v, skip) || i++ < from) continue;
    char tag[512];
    snprintf(tag, sizeof tag, "%s/%s", prefix, key);
    srlm_tfevents_scalar(w, tag, step, json_is_boolean(v) ? (json_is_true(v) ? 1.0 : 0.0) : json_number_value(v));
  }
  return srlm_tfevents_flush(w);
}

srlm_status srlm_tfevents_flush(srlm_tfevents *w) {
  if (fflush(w->f) != 0) w->failed = 1;
  if (w->failed) {
    w->failed = 0;
    return srlm_error(SRLM_ERR_IO, w->path, "write failed: %s", strerror(errno));
  }
  return SRLM_OK;
}

srlm_status srlm_tfevents_close(srlm_tfevents *w) {
  if (!w) return SRLM_OK;
  srlm_status st = srlm_tfevents_flush(w);
  if (fclose(w->f) != 0 && st == SRLM_OK) st = srlm_error(SRLM_ERR_IO, w->path, "close failed: %s", strerror(errno));
  free(w);
  return st;
}

/* ---- resume: cutting the files back ------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The byte offset after the record at `pos` of f, or -1 for a missing, truncated or
 * corrupt record. */
static long next_record(FILE *f, long pos) {
  unsigned char head[12], crc[4];
  if (fseek(f, pos, SEEK_SET) != 0 || fread(head, 1, 12, f) != 12) return -1;
  uint64_t len = 0;
  uint32_t want = 0;
  for (int i = 7; i >= 0; i--) len = len << 8 | head[i];
  for (int i = 3; i >= 0; i--) want = want << 8 | head[8 + i];
  if (srlm_tfevents_mask_crc(srlm_crc32c(head, 8)) != want || len > (1u << 26)) return -1;
  unsigned char *d = srlm_xmalloc(len + 1);
  int ok = fread(d, 1, len, f) == len && fread(crc, 1, 4, f) == 4;
  uint32_t got = ok ? srlm_tfevents_mask_crc(srlm_crc32c(d, len)) : 0;
  free(d);
  want = (uint32_t)crc[0] | (uint32_t)crc[1] << 8 | (uint32_t)crc[2] << 16 | (uint32_t)crc[3] << 24;
  return ok && got == want ? pos + 12 + (long)len + 4 : -1;
}

srlm_status srlm_tfevents_cut(const char *dir, int64_t keep, int64_t *kept) {
  *kept = 0;
  DIR *d = opendir(dir);
  if (!d) return srlm_error(SRLM_ERR_IO, dir, "cannot list: %s", strerror(errno));
  char **names = NULL;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (!strncmp(e->d_name, "events.out.tfevents.", 20)) {
      names = srlm_xrealloc(names, (n + 1) * sizeof *names);
      names[n++] = srlm_xstrdup(e->d_name);
    }
  closedir(d);
  if (n) qsort(names, n, sizeof *names, cmp_str);
  srlm_status st = SRLM_OK;
  for (size_t i = 0; i < n; i++) {
    char path[4400];
    st = srlm_path_join(path, sizeof path, dir, names[i]);
    FILE *f = st == SRLM_OK ? fopen(path, "rb") : NULL;
    if (st == SRLM_OK && !f) st = srlm_error(SRLM_ERR_IO, path, "cannot open: %s", strerror(errno));
    if (st != SRLM_OK) break;
    long end = next_record(f, 0); /* the file_version record */
    if (end < 0) end = 0;
    for (long next; end > 0 && *kept < keep && (next = next_record(f, end)) > 0; end = next) (*kept)++;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    if (size != end && truncate(path, (off_t)end) != 0) {
      st = srlm_error(SRLM_ERR_IO, path, "cannot cut back to %ld bytes: %s", end, strerror(errno));
      break;
    }
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return st;
}
