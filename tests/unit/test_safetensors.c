/* safetensors: every dtype written and read back exactly, F16/BF16 conversions
 * (exhaustive round trips, ties to even), sharded checkpoints and their index
 * errors, and one crafted file per way the format can be malformed, each with the
 * file name, the tensor name and what is wrong in the error. */
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srlm/core.h"
#include "srlm/safetensors.h"
#include "test.h"

static char g_path[4096];
static const char *tmp(const char *rel) { return test_tmp_path(g_path, sizeof g_path, rel); }

/* ---- conversions ---------------------------------------------------------------- */

static uint32_t fbits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float bitsf(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void test_f16(void) {
  int bad_rt = 0, bad_tie = 0, bad_near = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    float f = srlm_st_f16_to_f32((uint16_t)h);
    bool nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
    if (nan) {
      if (!isnan(f) || !isnan(srlm_st_f16_to_f32(srlm_st_f32_to_f16(f)))) bad_rt++;
      continue;
    }
    if (srlm_st_f32_to_f16(f) != h) {
      if (bad_rt++ < 5) fprintf(stderr, "f16 %04x -> %g -> %04x\n", h, f, srlm_st_f32_to_f16(f));
    }
    /* midpoint to the next value up in magnitude (positive finite, below max) */
    if (h < 0x7bff) {
      float g = srlm_st_f16_to_f32((uint16_t)(h + 1));
      float mid = (float)(((double)f + (double)g) / 2); /* exact: needs 12 significant bits */
      uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
      if (srlm_st_f32_to_f16(mid) != want) {
        if (bad_tie++ < 5) fprintf(stderr, "f16 tie %04x/%04x: %a -> %04x\n", h, h + 1, mid, srlm_st_f32_to_f16(mid));
      }
      if (srlm_st_f32_to_f16(nextafterf(mid, 0)) != h || srlm_st_f32_to_f16(nextafterf(mid, INFINITY)) != h + 1)
        bad_near++;
    }
  }
  EXPECT_EQ_INT(bad_rt, 0);
  EXPECT_EQ_INT(bad_tie, 0);
  EXPECT_EQ_INT(bad_near, 0);
  EXPECT_EQ_INT(srlm_st_f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ_INT(srlm_st_f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ_INT(srlm_st_f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ_INT(srlm_st_f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ_INT(srlm_st_f32_to_f16(65520.0f), 0x7c00); /* tie rounds to even = infinity */
  EXPECT_EQ_INT(srlm_st_f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ_INT(srlm_st_f32_to_f16(-INFINITY), 0xfc00);
  EXPECT_EQ_INT(srlm_st_f32_to_f16(ldexpf(1, -24)), 0x0001);     /* smallest subnormal */
  EXPECT_EQ_INT(srlm_st_f32_to_f16(ldexpf(1, -25)), 0x0000);     /* tie to even: 0 */
  EXPECT_EQ_INT(srlm_st_f32_to_f16(ldexpf(3, -26)), 0x0001);     /* 0.75 ulp rounds up */
  EXPECT_EQ_INT(srlm_st_f32_to_f16(ldexpf(3, -25)), 0x0002);     /* 1.5 ulp tie to even 2 */
  EXPECT_EQ_INT(srlm_st_f32_to_f16(ldexpf(1023.5f, -24)), 0x0400); /* rounds up into the normals */
  EXPECT_EQ_INT(srlm_st_f32_to_f16(1e-30f), 0x0000);
  EXPECT_EQ_INT(srlm_st_f32_to_f16(-0.0f), 0x8000);
  EXPECT(isnan(srlm_st_f16_to_f32(srlm_st_f32_to_f16(NAN))), "NaN must stay NaN");
  EXPECT_NEAR(srlm_st_f16_to_f32(0x3555), 0.333251953125, 0);
}

static void test_bf16(void) {
  int bad_rt = 0, bad_tie = 0;
  for (uint32_t b = 0; b < 0x10000; b++) {
    float f = srlm_bf16_to_f32((uint16_t)b);
    if (isnan(f)) {
      if (!isnan(srlm_bf16_to_f32(srlm_f32_to_bf16(f)))) bad_rt++;
      continue;
    }
    if (srlm_f32_to_bf16(f) != b) bad_rt++;
    if ((b & 0x7fff) < 0x7f7f) { /* finite, next value up is finite */
      float mid = bitsf(fbits(f) + 0x8000u); /* exactly halfway in magnitude */
      uint16_t want = (b & 1) ? (uint16_t)(b + 1) : (uint16_t)b;
      if (srlm_f32_to_bf16(mid) != want) {
        if (bad_tie++ < 5) fprintf(stderr, "bf16 tie %04x: %a -> %04x\n", b, mid, srlm_f32_to_bf16(mid));
      }
    }
  }
  EXPECT_EQ_INT(bad_rt, 0);
  EXPECT_EQ_INT(bad_tie, 0);
  EXPECT_EQ_INT(srlm_f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ_INT(srlm_f32_to_bf16(bitsf(0x3f808000u)), 0x3f80); /* tie, even stays */
  EXPECT_EQ_INT(srlm_f32_to_bf16(bitsf(0x3f818000u)), 0x3f82); /* tie, odd rounds up */
  EXPECT_EQ_INT(srlm_f32_to_bf16(bitsf(0x3f808001u)), 0x3f81);
  EXPECT_EQ_INT(srlm_f32_to_bf16(bitsf(0x7f7fffffu)), 0x7f80); /* max float rounds to inf */
  EXPECT_EQ_INT(srlm_f32_to_bf16(-INFINITY), 0xff80);
  EXPECT(isnan(srlm_bf16_to_f32(srlm_f32_to_bf16(bitsf(0x7f800001u)))), "signalling NaN must stay NaN");

  float src[5] = {1.0f, -0.5f, 3.14159265f, 1e-3f, 65504.0f}, back[5];
  uint16_t half[5];
  EXPECT_EQ_INT(srlm_st_convert(SRLM_ST_F32, src, SRLM_ST_BF16, half, 5), SRLM_OK);
  EXPECT_EQ_INT(srlm_st_convert(SRLM_ST_BF16, half, SRLM_ST_F32, back, 5), SRLM_OK);
  for (int i = 0; i < 5; i++) EXPECT_NEAR(back[i], src[i], fabsf(src[i]) / 256);
  uint16_t h16[5];
  EXPECT_EQ_INT(srlm_st_convert(SRLM_ST_BF16, half, SRLM_ST_F16, h16, 5), SRLM_OK);
  EXPECT_EQ_INT(h16[0], 0x3c00);
  int32_t ints[2];
  EXPECT_EQ_INT(srlm_st_convert(SRLM_ST_I32, ints, SRLM_ST_F32, back, 2), SRLM_ERR_UNSUPPORTED);
}

/* ---- round trips -------------------------------------------------------------------- */

static void test_roundtrip(void) {
  float f32[6] = {1.5f, -2.25f, 0.0f, 3e-8f, 1e30f, -0.0f};
  uint16_t f16[4] = {0x3c00, 0x0001, 0xfbff, 0x7c00};
  uint16_t bf16[3] = {0x3f80, 0xc2f7, 0x0001};
  int32_t i32[2] = {INT32_MIN, 123456789};
  int64_t i64[3] = {INT64_MIN, -1, INT64_MAX};
  uint8_t u8[5] = {0, 1, 127, 128, 255};
  float scalar = 42.0f;
  int64_t s_f32[2] = {2, 3}, s_f16[1] = {4}, s_bf16[3] = {1, 3, 1}, s_i32[1] = {2}, s_i64[2] = {3, 1},
          s_u8[1] = {5}, s_empty[2] = {0, 7};
  srlm_st_entry e[] = {
      {"a.f32", SRLM_ST_F32, 2, s_f32, f32},   {"b.f16", SRLM_ST_F16, 1, s_f16, f16},
      {"c.bf16", SRLM_ST_BF16, 3, s_bf16, bf16}, {"d.i32", SRLM_ST_I32, 1, s_i32, i32},
      {"e.i64", SRLM_ST_I64, 2, s_i64, i64},   {"f.u8", SRLM_ST_U8, 1, s_u8, u8},
      {"g.scalar", SRLM_ST_F32, 0, NULL, &scalar}, {"h.empty", SRLM_ST_BF16, 2, s_empty, NULL},
  };
  const size_t n = sizeof e / sizeof e[0];
  srlm_st_meta meta[] = {{"format", "pt"}, {"note", "caf\xc3\xa9 \"quoted\""}};
  const char *path = tmp("every_dtype.safetensors");
  EXPECT_EQ_INT(srlm_st_write(path, e, n, meta, 2), SRLM_OK);
  srlm_st_file *f = NULL;
  srlm_status st = srlm_st_open(path, &f);
  EXPECT(st == SRLM_OK, "open: %s", srlm_error_message());
  if (!f) return;
  EXPECT_EQ_INT(srlm_st_count(f), n);
  for (size_t i = 0; i < n && i < srlm_st_count(f); i++) {
    const srlm_st_tensor *t = srlm_st_at(f, i);
    EXPECT_STR_EQ(t->name, e[i].name); /* header order is write order */
    EXPECT_EQ_INT(t->dtype, e[i].dtype);
    EXPECT_EQ_INT(t->ndim, e[i].ndim);
    uint64_t numel = 1;
    for (int d = 0; d < e[i].ndim && d < t->ndim; d++) {
      EXPECT(t->shape[d] == e[i].shape[d], "%s dim %d: %lld vs %lld", t->name, d, (long long)t->shape[d],
             (long long)e[i].shape[d]);
      numel *= (uint64_t)e[i].shape[d];
    }
    EXPECT_EQ_INT(t->numel, numel);
    EXPECT_EQ_INT(t->nbytes, numel * srlm_st_dtype_size(e[i].dtype));
    EXPECT(t->nbytes == 0 || memcmp(t->data, e[i].data, t->nbytes) == 0, "%s: data differs", t->name);
    EXPECT(srlm_st_find(f, e[i].name) == t, "find %s", e[i].name);
    EXPECT_STR_EQ(t->file, path);
  }
  EXPECT(srlm_st_find(f, "nope") == NULL, "found a tensor that is not there");
  EXPECT_EQ_INT(srlm_st_metadata_count(f), 2);
  EXPECT_STR_EQ(srlm_st_metadata_get(f, "format"), "pt");
  EXPECT_STR_EQ(srlm_st_metadata_get(f, "note"), "caf\xc3\xa9 \"quoted\"");

  float got[6];
  const srlm_st_tensor *tb = srlm_st_find(f, "c.bf16");
  EXPECT_EQ_INT(srlm_st_tensor_to_f32(tb, got, 3), SRLM_OK);
  EXPECT_NEAR(got[0], 1.0, 0);
  EXPECT_NEAR(got[1], -123.5, 0);
  EXPECT_EQ_INT(srlm_st_tensor_to_f32(tb, got, 4), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "tensor 'c.bf16'");
  EXPECT_EQ_INT(srlm_st_tensor_to_f32(srlm_st_find(f, "d.i32"), got, 2), SRLM_ERR_UNSUPPORTED);
  EXPECT_EQ_INT(srlm_st_tensor_to_f32(srlm_st_find(f, "a.f32"), got, 6), SRLM_OK);
  EXPECT(memcmp(got, f32, sizeof f32) == 0, "F32 values differ");

  /* the data area starts 8-aligned (header padded with spaces) */
  char *raw;
  size_t size;
  EXPECT_EQ_INT(srlm_read_file(path, &raw, &size), SRLM_OK);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (unsigned char)raw[i];
  EXPECT_EQ_INT(hlen % 8, 0);
  EXPECT_EQ_INT(srlm_st_file_size(f), size);
  /* the same bytes parse from memory */
  srlm_st_file *m = NULL;
  EXPECT_EQ_INT(srlm_st_parse_memory(raw, size, "mem.safetensors", &m), SRLM_OK);
  if (m) {
    EXPECT_EQ_INT(srlm_st_count(m), n);
    EXPECT(memcmp(srlm_st_find(m, "e.i64")->data, i64, sizeof i64) == 0, "memory image data differs");
    srlm_st_close(m);
  }
  free(raw);
  srlm_st_close(f);

  /* no tensors at all is a valid file */
  EXPECT_EQ_INT(srlm_st_write(tmp("empty.safetensors"), NULL, 0, NULL, 0), SRLM_OK);
  EXPECT_EQ_INT(srlm_st_open(tmp("empty.safetensors"), &f), SRLM_OK);
  if (f) EXPECT_EQ_INT(srlm_st_count(f), 0);
  srlm_st_close(f);

  /* writer refuses what it cannot write */
  srlm_st_entry dup[2] = {e[0], e[0]};
  EXPECT_EQ_INT(srlm_st_write(tmp("dup.safetensors"), dup, 2, NULL, 0), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "tensor 'a.f32' is listed twice");
  srlm_st_entry reserved = e[0];
  reserved.name = "__metadata__";
  EXPECT_EQ_INT(srlm_st_write(tmp("res.safetensors"), &reserved, 1, NULL, 0), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "reserved");
  int64_t neg[1] = {-2};
  srlm_st_entry negative = {"neg", SRLM_ST_F32, 1, neg, f32};
  EXPECT_EQ_INT(srlm_st_write(tmp("neg.safetensors"), &negative, 1, NULL, 0), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "tensor 'neg': dimension 0 is negative");
  EXPECT_EQ_INT(srlm_st_write(tmp("no/such/dir/x.safetensors"), e, 1, NULL, 0), SRLM_ERR_IO);
  EXPECT_CONTAINS(srlm_error_message(), "x.safetensors");
  EXPECT(access(tmp("dup.safetensors"), F_OK) != 0, "a refused write left a file behind");
}

/* ---- sharded checkpoints -------------------------------------------------------------- */

#define NT 10
static float g_vals[NT][24];
static int64_t g_shapes[NT][2];
static char g_names[NT][32];

static void make_entries(srlm_st_entry *e) {
  for (int i = 0; i < NT; i++) {
    snprintf(g_names[i], sizeof g_names[i], "layer.%d.weight", i);
    g_shapes[i][0] = 1 + i % 3;
    g_shapes[i][1] = 8;
    for (int j = 0; j < 24; j++) g_vals[i][j] = (float)(i * 100 + j);
    e[i] = (srlm_st_entry){g_names[i], SRLM_ST_F32, 2, g_shapes[i], g_vals[i]};
  }
}

static void write_text(const char *path, const char *text) {
  EXPECT_EQ_INT(srlm_write_file_atomic(path, text, strlen(text)), SRLM_OK);
}

static void test_sharded(void) {
  srlm_st_entry e[NT];
  make_entries(e);
  const char *dir = tmp("sharded");
  char dirbuf[4096];
  snprintf(dirbuf, sizeof dirbuf, "%s", dir);
  mkdir(dirbuf, 0755);
  char single[4200], index[4200];
  snprintf(single, sizeof single, "%s/model.safetensors", dirbuf);
  snprintf(index, sizeof index, "%s/model.safetensors.index.json", dirbuf);

  /* a stale single file must go when the directory is rewritten as shards */
  size_t nfiles = 0;
  EXPECT_EQ_INT(srlm_st_write_dir(dirbuf, e, NT, NULL, 0, 0, &nfiles), SRLM_OK);
  EXPECT_EQ_INT(nfiles, 1);
  EXPECT(access(single, F_OK) == 0, "single file not written");
  srlm_st_meta meta[] = {{"format", "pt"}};
  EXPECT_EQ_INT(srlm_st_write_dir(dirbuf, e, NT, meta, 1, 200, &nfiles), SRLM_OK);
  EXPECT(nfiles >= 3, "only %zu shards for 10 tensors of up to 96 bytes, 200 per shard", nfiles);
  EXPECT(access(single, F_OK) != 0, "stale model.safetensors left next to the shards");
  EXPECT(access(index, F_OK) == 0, "index not written");

  srlm_st_set *s = NULL;
  srlm_status st = srlm_st_set_open_dir(dirbuf, &s);
  EXPECT(st == SRLM_OK, "open sharded: %s", srlm_error_message());
  if (s) {
    EXPECT_EQ_INT(srlm_st_set_file_count(s), nfiles);
    EXPECT_EQ_INT(srlm_st_set_count(s), NT);
    for (int i = 0; i < NT; i++) {
      const srlm_st_tensor *t = srlm_st_set_find(s, g_names[i]);
      EXPECT(t != NULL, "tensor %s missing", g_names[i]);
      if (!t) continue;
      EXPECT_EQ_INT(t->shape[0], g_shapes[i][0]);
      EXPECT(memcmp(t->data, g_vals[i], t->nbytes) == 0, "%s: data differs", g_names[i]);
    }
    for (size_t k = 0; k < srlm_st_set_file_count(s); k++) {
      EXPECT_STR_EQ(srlm_st_metadata_get(srlm_st_set_file(s, k), "format"), "pt");
      EXPECT(srlm_st_file_size(srlm_st_set_file(s, k)) <= 200 + 8 + 1024, "shard %zu too big", k);
    }
    EXPECT_CONTAINS(srlm_st_set_source(s), "model.safetensors.index.json");
    srlm_st_set_free(s);
  }

  /* shard names: model-00001-of-0000N.safetensors */
  char shard1[4200], shard2[4200], name1[64], name2[64];
  snprintf(name1, sizeof name1, "model-00001-of-%05zu.safetensors", nfiles);
  snprintf(name2, sizeof name2, "model-00002-of-%05zu.safetensors", nfiles);
  snprintf(shard1, sizeof shard1, "%s/%s", dirbuf, name1);
  snprintf(shard2, sizeof shard2, "%s/%s", dirbuf, name2);
  EXPECT(access(shard1, F_OK) == 0, "%s missing", shard1);

  /* which tensors are in shard 1 and 2 */
  srlm_st_file *f1 = NULL, *f2 = NULL;
  EXPECT_EQ_INT(srlm_st_open(shard1, &f1), SRLM_OK);
  EXPECT_EQ_INT(srlm_st_open(shard2, &f2), SRLM_OK);
  if (!f1 || !f2) return;
  const char *t1 = srlm_st_at(f1, 0)->name, *t2 = srlm_st_at(f2, 0)->name;

  /* index cases: build weight_map text with one change each */
  char buf[8192];
  char *good_index;
  size_t glen;
  EXPECT_EQ_INT(srlm_read_file(index, &good_index, &glen), SRLM_OK);

  /* 1. tensor of shard 1 claimed to be in shard 2 */
  {
    char key[128];
    snprintf(key, sizeof key, "\"%s\": \"%s\"", t1, name1);
    char *at = strstr(good_index, key);
    EXPECT(at != NULL, "index lacks %s", key);
    if (at) {
      size_t pre = (size_t)(at - good_index);
      snprintf(buf, sizeof buf, "%.*s\"%s\": \"%s\"%s", (int)pre, good_index, t1, name2, at + strlen(key));
      write_text(index, buf);
      EXPECT_EQ_INT(srlm_st_set_open_dir(dirbuf, &s), SRLM_ERR_FORMAT);
      EXPECT_CONTAINS(srlm_error_message(), "model.safetensors.index.json");
      EXPECT_CONTAINS(srlm_error_message(), t1);
      EXPECT_CONTAINS(srlm_error_message(), "but weight_map names shard");
    }
  }
  /* 2. an index entry for a tensor that is in no shard */
  snprintf(buf, sizeof buf, "{\"weight_map\": {\"ghost.weight\": \"%s\"}}", name1);
  {
    /* a full map plus the ghost: take the good text and insert before its first entry */
    char *wm = strstr(good_index, "\"weight_map\": {");
    size_t pre = (size_t)(wm - good_index) + strlen("\"weight_map\": {");
    snprintf(buf, sizeof buf, "%.*s\"ghost.weight\": \"%s\", %s", (int)pre, good_index, name1, good_index + pre);
    write_text(index, buf);
    EXPECT_EQ_INT(srlm_st_set_open_dir(dirbuf, &s), SRLM_ERR_FORMAT);
    EXPECT_CONTAINS(srlm_error_message(), "tensor 'ghost.weight' is in none of the shards");
    /* 3. the same tensor listed twice in weight_map */
    snprintf(buf, sizeof buf, "%.*s\"%s\": \"%s\", %s", (int)pre, good_index, t1, name1, good_index + pre);
    write_text(index, buf);
    EXPECT_EQ_INT(srlm_st_set_open_dir(dirbuf, &s), SRLM_ERR_FORMAT);
    EXPECT_CONTAINS(srlm_error_message(), "model.safetensors.index.json");
    EXPECT_CONTAINS(srlm_error_message(), "duplicate");
  }
  /* 4. a tensor in a shard that the index leaves out */
  {
    char key[128];
    snprintf(key, sizeof key, "\"%s\": \"%s\",", t2, name2);
    char *at = strstr(good_index, key);
    EXPECT(at != NULL, "index lacks %s", key);
    if (at) {
      snprintf(buf, sizeof buf, "%.*s%s", (int)(at - good_index), good_index, at + strlen(key));
      write_text(index, buf);
      EXPECT_EQ_INT(srlm_st_set_open_dir(dirbuf, &s), SRLM_ERR_FORMAT);
      EXPECT_CONTAINS(srlm_error_message(), t2);
      EXPECT_CONTAINS(srlm_error_message(), "is not in the weight_map");
      EXPECT_CONTAINS(srlm_error_message(), name2);
    }
  }
  /* 5. a shard file that does not exist */
  snprintf(buf, sizeof buf, "{\"weight_map\": {\"%s\": \"model-00009-of-00009.safetensors\"}}", t1);
  write_text(index, buf);
  EXPECT_EQ_INT(srlm_st_set_open_dir(dirbuf, &s), SRLM_ERR_IO);
  EXPECT_CONTAINS(srlm_error_message(), "model.safetensors.index.json: shard 'model-00009-of-00009.safetensors'");
  EXPECT_CONTAINS(srlm_error_message(), "cannot open");
  /* 6. weight_map missing / not an object / entry not a file name */
  write_text(index, "{\"metadata\": {}}");
  EXPECT_EQ_INT(srlm_st_set_open_dir(dirbuf, &s), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "model.safetensors.index.json: missing key 'weight_map'");
  write_text(index, "{\"weight_map\": []}");
  EXPECT_EQ_INT(srlm_st_set_open_dir(dirbuf, &s), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "key 'weight_map' is an array, expected an object");
  write_text(index, "{\"weight_map\": {\"x\": \"../elsewhere.safetensors\"}}");
  EXPECT_EQ_INT(srlm_st_set_open_dir(dirbuf, &s), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "weight_map entry for tensor 'x' must be a shard file name");
  write_text(index, "{\"weight_map\": {\"x\": 3}}");
  EXPECT_EQ_INT(srlm_st_set_open_dir(dirbuf, &s), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "tensor 'x'");
  write_text(index, "{\"weight_map\": ");
  EXPECT_EQ_INT(srlm_st_set_open_dir(dirbuf, &s), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "model.safetensors.index.json: not valid JSON");
  /* 7. one tensor in two shards: shard 2 rewritten to also hold shard 1's first tensor */
  {
    size_t n2 = srlm_st_count(f2);
    srlm_st_entry e2[NT + 1];
    for (size_t i = 0; i < n2; i++) {
      const srlm_st_tensor *t = srlm_st_at(f2, i);
      e2[i] = (srlm_st_entry){t->name, t->dtype, t->ndim, t->shape, t->data};
    }
    const srlm_st_tensor *x = srlm_st_at(f1, 0);
    e2[n2] = (srlm_st_entry){x->name, x->dtype, x->ndim, x->shape, x->data};
    char shard2b[4300];
    snprintf(shard2b, sizeof shard2b, "%s.new", shard2);
    EXPECT_EQ_INT(srlm_st_write(shard2b, e2, n2 + 1, NULL, 0), SRLM_OK);
    write_text(index, good_index);
    srlm_st_close(f2);
    f2 = NULL;
    EXPECT(rename(shard2b, shard2) == 0, "rename");
    EXPECT_EQ_INT(srlm_st_set_open_dir(dirbuf, &s), SRLM_ERR_FORMAT);
    char want[256];
    snprintf(want, sizeof want, "tensor '%s' is in two shards: '%s' and '%s'", t1, name1, name2);
    EXPECT_CONTAINS(srlm_error_message(), want);
  }
  free(good_index);
  srlm_st_close(f1);

  /* rewriting as one file removes the index; an empty directory is a clear error */
  EXPECT_EQ_INT(srlm_st_write_dir(dirbuf, e, NT, NULL, 0, 0, &nfiles), SRLM_OK);
  EXPECT(access(index, F_OK) != 0, "stale index left next to model.safetensors");
  EXPECT_EQ_INT(srlm_st_set_open_dir(dirbuf, &s), SRLM_OK);
  srlm_st_set_free(s);
  mkdir(tmp("emptydir"), 0755);
  EXPECT_EQ_INT(srlm_st_set_open_dir(tmp("emptydir"), &s), SRLM_ERR_IO);
  EXPECT_CONTAINS(srlm_error_message(), "emptydir: no model.safetensors or model.safetensors.index.json");
}

/* ---- malformed files -------------------------------------------------------------------- */

/* Writes SRLM_TMP/name: an 8-byte length (hlen_override when not ~0) + header + data_len bytes. */
static const char *craft(const char *name, const char *header, size_t data_len, uint64_t hlen_override) {
  size_t hl = strlen(header);
  size_t n = 8 + hl + data_len;
  unsigned char *b = calloc(1, n);
  uint64_t len = hlen_override != ~0ull ? hlen_override : hl;
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(len >> (8 * i));
  memcpy(b + 8, header, hl);
  for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (unsigned char)i;
  const char *p = tmp(name);
  EXPECT_EQ_INT(srlm_write_file_atomic(p, b, n), SRLM_OK);
  free(b);
  return p;
}

static void expect_bad_at(int line, const char *name, const char *header, size_t data_len, uint64_t hlen,
                          srlm_status code, const char *part1, const char *part2) {
  const char *p = craft(name, header, data_len, hlen);
  srlm_st_file *f = NULL;
  srlm_status st = srlm_st_open(p, &f);
  const char *msg = srlm_error_message();
  if (st != code || !strstr(msg, name) || (part1 && !strstr(msg, part1)) || (part2 && !strstr(msg, part2))) {
    fprintf(stderr, "case at line %d (%s): status %s (want %s), message: %s\n", line, name, srlm_status_name(st),
            srlm_status_name(code), msg);
  }
  EXPECT_EQ_INT(st, code);
  EXPECT_CONTAINS(msg, name);
  if (part1) EXPECT_CONTAINS(msg, part1);
  if (part2) EXPECT_CONTAINS(msg, part2);
  EXPECT(f == NULL, "a failed open returned a handle");
  srlm_st_close(f);
}
#define BAD(name, header, data_len, code, part1, part2) \
  expect_bad_at(__LINE__, name, header, data_len, ~0ull, code, part1, part2)

static void expect_good(const char *name, const char *header, size_t data_len, size_t n_tensors) {
  const char *p = craft(name, header, data_len, ~0ull);
  srlm_st_file *f = NULL;
  srlm_status st = srlm_st_open(p, &f);
  EXPECT(st == SRLM_OK, "%s should open: %s", name, srlm_error_message());
  if (f) EXPECT_EQ_INT(srlm_st_count(f), n_tensors);
  srlm_st_close(f);
}

static void test_malformed(void) {
  const srlm_status F = SRLM_ERR_FORMAT;
  /* the length field */
  {
    const char *p = tmp("short.safetensors");
    EXPECT_EQ_INT(srlm_write_file_atomic(p, "\x05\0\0\0\0", 5), SRLM_OK);
    srlm_st_file *f = NULL;
    EXPECT_EQ_INT(srlm_st_open(p, &f), F);
    EXPECT_CONTAINS(srlm_error_message(), "short.safetensors: file is 5 bytes, shorter than the 8-byte header length");
    EXPECT_EQ_INT(srlm_write_file_atomic(p, "", 0), SRLM_OK);
    EXPECT_EQ_INT(srlm_st_open(p, &f), F);
    EXPECT_CONTAINS(srlm_error_message(), "file is 0 bytes");
    EXPECT_EQ_INT(srlm_st_open(tmp("does_not_exist.safetensors"), &f), SRLM_ERR_IO);
    EXPECT_CONTAINS(srlm_error_message(), "does_not_exist.safetensors: cannot open");
  }
  expect_bad_at(__LINE__, "hlen0.safetensors", "{}", 0, 0, F, "header length is 0", NULL);
  expect_bad_at(__LINE__, "hlen_big.safetensors", "{}", 0, 100, F,
                "header length 100 is larger than the 2 bytes after it", NULL);
  expect_bad_at(__LINE__, "hlen_bound.safetensors", "{}", 0, 100000001ull, F,
                "header length 100000001 exceeds the limit of 100000000 bytes", NULL);
  expect_bad_at(__LINE__, "hlen_huge.safetensors", "{}", 0, ~0ull - 1, F, "exceeds the limit", NULL);
  /* the header */
  BAD("notjson.safetensors", "{\"a\": ", 0, F, "header is not valid JSON", NULL);
  BAD("trailing.safetensors", "{}x", 0, F, "header is not valid JSON", NULL);
  {
    /* a NUL byte inside the header: JSON text cannot contain one */
    const char *p = tmp("nul.safetensors");
    EXPECT_EQ_INT(srlm_write_file_atomic(p, "\x04\0\0\0\0\0\0\0{}\0 ", 12), SRLM_OK);
    srlm_st_file *f = NULL;
    EXPECT_EQ_INT(srlm_st_open(p, &f), F);
    EXPECT_CONTAINS(srlm_error_message(), "nul.safetensors: header is not valid JSON");
  }
  BAD("array.safetensors", "[1, 2]", 0, F, "header is an array, expected a JSON object", NULL);
  BAD("number.safetensors", "7", 0, F, "header is an integer, expected a JSON object", NULL);
  BAD("dupname.safetensors",
      "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
      "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
      2, F, "duplicate", NULL);
  /* a tensor entry */
  BAD("entry.safetensors", "{\"w\": 5}", 0, F, "tensor 'w': entry is not an object (it is an integer)", NULL);
  BAD("extra_key.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 1, F,
      "tensor 'w': unknown key 'x'", NULL);
  BAD("nodtype.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, F, "tensor 'w': missing \"dtype\"",
      NULL);
  BAD("dtype_int.safetensors", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, F,
      "tensor 'w': \"dtype\" is an integer, expected a string", NULL);
  BAD("dtype_bad.safetensors", "{\"w\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, F,
      "tensor 'w': unknown dtype 'F7'", NULL);
  BAD("dtype_f64.safetensors", "{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
      SRLM_ERR_UNSUPPORTED, "tensor 'w': dtype 'F64' is not supported", NULL);
  BAD("noshape.safetensors", "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, F, "tensor 'w': missing \"shape\"",
      NULL);
  BAD("shape_num.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":3,\"data_offsets\":[0,3]}}", 3, F,
      "tensor 'w': \"shape\" is an integer, expected an array of non-negative integers", NULL);
  BAD("shape_neg.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[2,-1],\"data_offsets\":[0,2]}}", 2, F,
      "tensor 'w'", "\"shape\" must be an array of non-negative integers (element 1 is -1)");
  BAD("shape_real.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[2.0],\"data_offsets\":[0,2]}}", 2, F,
      "tensor 'w'", "(element 0 is a real number)");
  BAD("shape_str.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[\"2\"],\"data_offsets\":[0,2]}}", 2, F,
      "tensor 'w'", "(element 0 is a string)");
  BAD("nooffsets.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, F, "tensor 'w': missing \"data_offsets\"",
      NULL);
  BAD("offsets3.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1, F, "tensor 'w'",
      "\"data_offsets\" must be two non-negative integers [begin, end]");
  BAD("offsets_obj.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{}}}", 1, F, "tensor 'w'",
      "\"data_offsets\" must be two non-negative integers");
  BAD("offsets_neg.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1, F,
      "tensor 'w'", "(begin is -1)");
  BAD("offsets_real.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.0]}}", 1, F,
      "tensor 'w'", "(end is a real number)");
  BAD("offsets_order.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, F,
      "tensor 'w': data_offsets [8, 4] have begin > end", NULL);
  BAD("offsets_bigint.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}",
      1, F, "header is not valid JSON", NULL);
  BAD("size.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20, F,
      "tensor 'w': shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] span 20", NULL);
  BAD("overflow.safetensors",
      "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0, F,
      "tensor 'w': shape [4294967296, 4294967296, 16] of F32 is too large", NULL);
  BAD("overflow_bytes.safetensors",
      "{\"w\":{\"dtype\":\"I64\",\"shape\":[2305843009213693952,1],\"data_offsets\":[0,0]}}", 0, F,
      "tensor 'w'", "is too large");
  BAD("outside.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, F,
      "tensor 'w': data_offsets [0, 8] extend past the end of the data area (4 bytes)", NULL);
  BAD("outside_far.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9000000000,9000000001]}}",
      4, F, "tensor 'w'", "extend past the end of the data area");
  /* the data area */
  BAD("overlap.safetensors",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
      12, F, "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]", NULL);
  BAD("overlap_same.safetensors",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
      8, F, "tensor 'b'", "overlap tensor 'a'");
  BAD("overlap_empty.safetensors",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
      8, F, "tensor 'z'", "overlap tensor 'a'");
  BAD("hole.safetensors",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
      12, F, "tensor 'b': hole in the data area: bytes [4, 8) before this tensor belong to no tensor", NULL);
  BAD("hole_start.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 4, F,
      "tensor 'a': hole in the data area: bytes [0, 2)", NULL);
  BAD("hole_end.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, F,
      "hole_end.safetensors: hole in the data area: bytes [4, 8) at its end belong to no tensor", NULL);
  BAD("data_no_tensors.safetensors", "{}", 3, F, "bytes [0, 3) at its end belong to no tensor", NULL);
  /* __metadata__ */
  BAD("meta_str.safetensors", "{\"__metadata__\": \"x\"}", 0, F,
      "\"__metadata__\" is a string, expected an object of strings", NULL);
  BAD("meta_val.safetensors", "{\"__metadata__\": {\"format\": \"pt\", \"k\": 1}}", 0, F,
      "\"__metadata__\" value for key 'k' is an integer, expected a string", NULL);

  /* valid oddities: trailing spaces, scalars, empty tensors, out-of-order offsets */
  expect_good("spaces.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}     ", 3, 1);
  expect_good("scalar.safetensors", "{\"a\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8, 1);
  expect_good("zero.safetensors",
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
              "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
              "\"c\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]}}",
              2, 3);
  expect_good("order.safetensors",
              "{\"__metadata__\":{},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]},"
              "\"a\":{\"dtype\":\"BF16\",\"shape\":[1,1],\"data_offsets\":[1,3]},"
              "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
              5, 3);
  expect_good("empty_header.safetensors", "{}", 0, 0);
  /* the unaligned tensor above reads correctly */
  srlm_st_file *f = NULL;
  EXPECT_EQ_INT(srlm_st_open(tmp("order.safetensors"), &f), SRLM_OK);
  if (f) {
    const srlm_st_tensor *a = srlm_st_find(f, "a");
    float v;
    EXPECT_EQ_INT(srlm_st_tensor_to_f32(a, &v, 1), SRLM_OK);
    EXPECT_NEAR(v, srlm_bf16_to_f32(0x0201), 0); /* bytes 1, 2 of the data area */
    EXPECT_EQ_INT(srlm_st_at(f, 0)->offset, 3);    /* header order kept */
    srlm_st_close(f);
  }
}

int main(void) {
  test_f16();
  test_bf16();
  test_roundtrip();
  test_sharded();
  test_malformed();
  TEST_MAIN_END();
}
