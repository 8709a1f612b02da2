/* TensorBoard event files (srlm/tfevents.h): CRC32C known answers; events written and
 * read back by the small reader below, which checks the TFRecord framing (length, both
 * masked CRCs) and decodes the Event / Summary protobufs; a corrupted length or data
 * byte is caught; two files opened in the same second get distinct names; the JSON
 * helper's tags, skipped keys, booleans, nulls and `from`; the resume's cut.
 * `test_tfevents --dump FILE` prints each scalar as "tag<TAB>step<TAB>value" (the CLI
 * test tests/cli/tensorboard.sh uses it) and exits 1 on a framing or CRC error. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "srlm/core.h"
#include "srlm/tfevents.h"
#include "test.h"

/* ---- the reader ------------------------------------------------------------------- */

typedef struct ev {
  double wall_time;
  int64_t step;
  char version[64]; /* file_version, "" when absent */
  char tag[256];    /* the first summary value's tag, "" when none */
  float value;
  int n_values;
} ev;

static uint64_t le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* A varint at *p (< end); 0 on a truncated one. */
static int varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
  *v = 0;
  for (int s = 0; *p < end && s < 64; s += 7) {
    unsigned char b = *(*p)++;
    *v |= (uint64_t)(b & 0x7F) << s;
    if (!(b & 0x80)) return 1;
  }
  return 0;
}

/* Decodes one protobuf message [p, end) calling field(num, type, varint/fixed value,
 * bytes, len) per field; 0 on malformed input. */
typedef int (*field_fn)(void *u, int num, int type, uint64_t v, const unsigned char *b, size_t n);
static int decode(const unsigned char *p, const unsigned char *end, field_fn fn, void *u) {
  while (p < end) {
    uint64_t key, v = 0;
    if (!varint(&p, end, &key)) return 0;
    int type = (int)(key & 7), num = (int)(key >> 3);
    const unsigned char *b = NULL;
    if (type == 0) {
      if (!varint(&p, end, &v)) return 0;
    } else if (type == 1 || type == 5) {
      int w = type == 1 ? 8 : 4;
      if (end - p < w) return 0;
      v = le(p, w);
      p += w;
    } else if (type == 2) {
      if (!varint(&p, end, &v) || (uint64_t)(end - p) < v) return 0;
      b = p;
      p += v;
    } else {
      return 0;
    }
    if (!fn(u, num, type, v, b, (size_t)v)) return 0;
  }
  return 1;
}

static int value_field(void *u, int num, int type, uint64_t v, const unsigned char *b, size_t n) {
  ev *e = u;
  if (num == 1 && type == 2 && n < sizeof e->tag) {
    memcpy(e->tag, b, n);
    e->tag[n] = 0;
  } else if (num == 2 && type == 5) {
    uint32_t x = (uint32_t)v;
    memcpy(&e->value, &x, 4);
  }
  return 1;
}
static int summary_field(void *u, int num, int type, uint64_t v, const unsigned char *b, size_t n) {
  (void)v;
  ev *e = u;
  if (num != 1 || type != 2) return 1;
  e->n_values++;
  return decode(b, b + n, value_field, e);
}
static int event_field(void *u, int num, int type, uint64_t v, const unsigned char *b, size_t n) {
  ev *e = u;
  if (num == 1 && type == 1) memcpy(&e->wall_time, &v, 8);
  if (num == 2 && type == 0) e->step = (int64_t)v;
  if (num == 3 && type == 2 && n < sizeof e->version) {
    memcpy(e->version, b, n);
    e->version[n] = 0;
  }
  if (num == 5 && type == 2) return decode(b, b + n, summary_field, e);
  return 1;
}

/* Reads every record of path into *out (*n of them); returns "" or what was wrong. */
static const char *read_events(const char *path, ev **out, int *n) {
  static char why[512];
  *out = NULL;
  *n = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return "cannot open";
  why[0] = 0;
  unsigned char head[12], tail[4];
  size_t got;
  while (!why[0] && (got = fread(head, 1, 12, f)) > 0) {
    if (got != 12) {
      snprintf(why, sizeof why, "record %d: truncated header", *n);
      break;
    }
    uint64_t len = le(head, 8);
    uint32_t want = (uint32_t)le(head + 8, 4), crc = srlm_tfevents_mask_crc(srlm_crc32c(head, 8));
    if (crc != want) {
      snprintf(why, sizeof why, "record %d: length CRC 0x%08x, the header says 0x%08x", *n, crc, want);
      break;
    }
    if (len > (1u << 20)) {
      snprintf(why, sizeof why, "record %d: length %llu", *n, (unsigned long long)len);
      break;
    }
    unsigned char *d = malloc(len + 1);
    if (fread(d, 1, len, f) != len || fread(tail, 1, 4, f) != 4) {
      snprintf(why, sizeof why, "record %d: truncated data", *n);
    } else if ((crc = srlm_tfevents_mask_crc(srlm_crc32c(d, len))) != (want = (uint32_t)le(tail, 4))) {
      snprintf(why, sizeof why, "record %d: data CRC 0x%08x, the record says 0x%08x", *n, crc, want);
    } else {
      *out = realloc(*out, (size_t)(*n + 1) * sizeof **out);
      ev *e = &(*out)[*n];
      memset(e, 0, sizeof *e);
      if (!decode(d, d + len, event_field, e)) snprintf(why, sizeof why, "record %d: malformed Event protobuf", *n);
      (*n)++;
    }
    free(d);
  }
  fclose(f);
  return why;
}

/* ---- the tests -------------------------------------------------------------------- */

static void test_crc32c(void) {
  EXPECT(srlm_crc32c("123456789", 9) == 0xE3069283u, "crc32c(\"123456789\") = 0x%08x", srlm_crc32c("123456789", 9));
  EXPECT(srlm_crc32c("", 0) == 0, "crc32c(\"\") = 0x%08x", srlm_crc32c("", 0));
  unsigned char z[32] = {0}, ff[32];
  memset(ff, 0xFF, sizeof ff);
  /* RFC 3720 (iSCSI) B.4 test vectors */
  EXPECT(srlm_crc32c(z, 32) == 0x8A9136AAu, "crc32c(32 zeros) = 0x%08x", srlm_crc32c(z, 32));
  EXPECT(srlm_crc32c(ff, 32) == 0x62A8AB43u, "crc32c(32 x 0xFF) = 0x%08x", srlm_crc32c(ff, 32));
  uint32_t c = 0x12345678u;
  EXPECT(srlm_tfevents_mask_crc(c) == ((c >> 15 | c << 17) + 0xa282ead8u), "mask");
}

static void make_dir(const char *name, char *dir, size_t n) {
  test_tmp_path(dir, n, name);
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  EXPECT(system(cmd) == 0, "%s", cmd);
  EXPECT(srlm_mkdirs(dir) == SRLM_OK, "%s", srlm_error_message());
}

static void test_write_read(void) {
  char dir[1024];
  make_dir("rw", dir, sizeof dir);
  srlm_tfevents *w;
  double t0 = (double)time(NULL);
  EXPECT(srlm_tfevents_open(dir, &w) == SRLM_OK, "%s", srlm_error_message());
  if (!w) return;
  char path[1200];
  snprintf(path, sizeof path, "%s", srlm_tfevents_path(w));
  EXPECT(strstr(path, "/events.out.tfevents.") != NULL, "%s", path);
  const char *tags[] = {"learn/loss", "learn/margin", "eval/accuracy", "x"};
  const double vals[] = {0.6931471805599453, -1.5e-3, 1.0, 3.4e38};
  const int64_t steps[] = {1, 2, 300, 5000000000LL};
  for (int i = 0; i < 4; i++) srlm_tfevents_scalar(w, tags[i], steps[i], vals[i]);
  EXPECT(srlm_tfevents_flush(w) == SRLM_OK, "%s", srlm_error_message());
  /* flushed: a reader sees them before the close */
  ev *e;
  int n;
  const char *why = read_events(path, &e, &n);
  EXPECT(!why[0], "%s: %s", path, why);
  EXPECT_EQ_INT(n, 5);
  EXPECT(srlm_tfevents_close(w) == SRLM_OK, "%s", srlm_error_message());
  if (n == 5) {
    EXPECT_STR_EQ(e[0].version, "brain.Event:2");
    EXPECT_EQ_INT(e[0].n_values, 0);
    for (int i = 0; i < 4; i++) {
      const ev *x = &e[i + 1];
      EXPECT_STR_EQ(x->tag, tags[i]);
      EXPECT_EQ_INT(x->n_values, 1);
      EXPECT_EQ_INT(x->step, steps[i]);
      EXPECT(x->value == (float)vals[i], "%s: %.9g, wrote %.9g", tags[i], x->value, vals[i]);
      EXPECT(x->wall_time >= t0 - 1 && x->wall_time <= t0 + 60, "wall_time %.3f, started at %.0f", x->wall_time, t0);
      EXPECT(x->version[0] == 0, "a scalar event with a file_version");
    }
  }
  free(e);

  /* a corrupted data byte, then a corrupted length byte: the reader names the CRC */
  FILE *f = fopen(path, "r+b");
  EXPECT(f != NULL, "reopen %s", path);
  if (!f) return;
  long size;
  fseek(f, 0, SEEK_END);
  size = ftell(f);
  fseek(f, size - 6, SEEK_SET); /* inside the last record's data */
  int c = fgetc(f);
  fseek(f, size - 6, SEEK_SET);
  fputc(c ^ 0x01, f);
  fclose(f);
  why = read_events(path, &e, &n);
  EXPECT(strstr(why, "record 4: data CRC") != NULL, "a flipped data bit: \"%s\"", why);
  free(e);
  f = fopen(path, "r+b");
  fseek(f, 0, SEEK_SET);
  fputc(0x7F, f);
  fclose(f);
  why = read_events(path, &e, &n);
  EXPECT(strstr(why, "record 0: length CRC") != NULL, "a changed length: \"%s\"", why);
  free(e);
}

static void test_names_and_json(void) {
  char dir[1024];
  make_dir("names", dir, sizeof dir);
  srlm_tfevents *a, *b;
  EXPECT(srlm_tfevents_open(dir, &a) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_tfevents_open(dir, &b) == SRLM_OK, "%s", srlm_error_message());
  if (!a || !b) return;
  EXPECT(strcmp(srlm_tfevents_path(a), srlm_tfevents_path(b)) != 0, "two files named %s", srlm_tfevents_path(a));
  json_t *o = json_pack("{s:s, s:i, s:i, s:f, s:b, s:n, s:s, s:i}", "event", "learn", "iteration", 2, "step", 7, "loss",
                        0.25, "skipped", 1, "kl", "note", "text", "tokens", 1234);
  const char *skip[] = {"iteration", "step", NULL};
  EXPECT_EQ_INT(srlm_tfevents_json_count(o, skip), 3);
  EXPECT(srlm_tfevents_json(b, "learn", 17, o, skip, 0) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_tfevents_json(b, "learn", 18, o, skip, 2) == SRLM_OK, "%s", srlm_error_message()); /* tokens only */
  json_decref(o);
  char path[1200];
  snprintf(path, sizeof path, "%s", srlm_tfevents_path(b));
  EXPECT(srlm_tfevents_close(a) == SRLM_OK && srlm_tfevents_close(b) == SRLM_OK, "%s", srlm_error_message());
  ev *e;
  int n;
  const char *why = read_events(path, &e, &n);
  EXPECT(!why[0], "%s", why);
  EXPECT_EQ_INT(n, 5); /* version, loss, skipped, tokens: no strings, nulls or skipped keys; tokens */
  if (n == 5) {
    EXPECT_STR_EQ(e[1].tag, "learn/loss");
    EXPECT(e[1].value == 0.25f && e[1].step == 17, "loss %g step %lld", e[1].value, (long long)e[1].step);
    EXPECT_STR_EQ(e[2].tag, "learn/skipped");
    EXPECT(e[2].value == 1.0f, "skipped %g", e[2].value);
    EXPECT_STR_EQ(e[3].tag, "learn/tokens");
    EXPECT(e[3].value == 1234.0f, "tokens %g", e[3].value);
    EXPECT_STR_EQ(e[4].tag, "learn/tokens");
    EXPECT_EQ_INT(e[4].step, 18);
  }
  free(e);
  EXPECT(srlm_tfevents_open("/nonexistent/dir", &a) == SRLM_ERR_IO && !a, "open in a missing folder");
  EXPECT_CONTAINS(srlm_error_message(), "/nonexistent/dir/events.out.tfevents.");
}

/* The scalar count of a file (-1 when it does not read back cleanly). */
static int count_scalars(const char *path) {
  ev *e;
  int n;
  const char *why = read_events(path, &e, &n);
  free(e);
  if (why[0]) fprintf(stderr, "%s: %s\n", path, why);
  return why[0] ? -1 : n - 1;
}

/* A resume's cut: two files (5 and 3 scalars) keep the first `keep` in name order; a torn
 * record at the end counts as lost; keep 0 leaves the file_version records. */
static void test_cut(void) {
  char dir[1024];
  make_dir("cut", dir, sizeof dir);
  srlm_tfevents *a, *b;
  char pa[1200], pb[1200];
  EXPECT(srlm_tfevents_open(dir, &a) == SRLM_OK, "%s", srlm_error_message());
  if (!a) return;
  for (int i = 0; i < 5; i++) srlm_tfevents_scalar(a, "a", i, i);
  snprintf(pa, sizeof pa, "%s", srlm_tfevents_path(a));
  EXPECT(srlm_tfevents_close(a) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_tfevents_open(dir, &b) == SRLM_OK, "%s", srlm_error_message());
  if (!b) return;
  for (int i = 0; i < 3; i++) srlm_tfevents_scalar(b, "b", 5 + i, i);
  snprintf(pb, sizeof pb, "%s", srlm_tfevents_path(b));
  EXPECT(srlm_tfevents_close(b) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(strcmp(pa, pb) < 0, "the second file %s does not sort after the first %s", pb, pa);
  int64_t kept = -1;
  EXPECT(srlm_tfevents_cut(dir, 100, &kept) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(kept, 8);
  EXPECT(srlm_tfevents_cut(dir, 6, &kept) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(kept, 6);
  EXPECT_EQ_INT(count_scalars(pa), 5);
  EXPECT_EQ_INT(count_scalars(pb), 1);
  FILE *f = fopen(pb, "ab"); /* half a record, as a killed writer leaves it */
  fwrite("\x10\0\0\0\0\0\0\0\1\2", 1, 10, f);
  fclose(f);
  EXPECT(srlm_tfevents_cut(dir, 7, &kept) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(kept, 6);
  EXPECT_EQ_INT(count_scalars(pb), 1); /* the torn record is cut away */
  EXPECT(srlm_tfevents_cut(dir, 0, &kept) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(kept, 0);
  EXPECT_EQ_INT(count_scalars(pa), 0);
  EXPECT_EQ_INT(count_scalars(pb), 0);
}

static int dump(const char *path) {
  ev *e;
  int n;
  const char *why = read_events(path, &e, &n);
  if (why[0]) {
    fprintf(stderr, "%s: %s\n", path, why);
    free(e);
    return 1;
  }
  if (n == 0 || strcmp(e[0].version, "brain.Event:2")) {
    fprintf(stderr, "%s: the first record is not file_version brain.Event:2\n", path);
    free(e);
    return 1;
  }
  for (int i = 1; i < n; i++) printf("%s\t%lld\t%.9g\n", e[i].tag, (long long)e[i].step, e[i].value);
  free(e);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--dump")) return dump(argv[2]);
  test_crc32c();
  test_write_read();
  test_names_and_json();
  test_cut();
  TEST_MAIN_END();
}
