/* HDF5 store: round trip of every record kind, format/version checks, error messages
 * for missing or mistyped records, truncated files, and the writer's
 * temp-file-then-rename behaviour. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "srlm/store.h"
#include "test.h"

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static void tmp_name(char *buf, size_t n, const char *path) { snprintf(buf, n, "%s.tmp.%ld", path, (long)getpid()); }

static uint32_t f32_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}
static float bits_f32(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

/* ---- the reference file: every record kind ---- */

static const int64_t k_offsets[5] = {0, 3, 3, 8, 8}; /* lengths 3, 0, 5, 0 */
static const int32_t k_ids[8] = {1, 2, 3, INT32_MIN, -1, 0, 151643, INT32_MAX};
static const char *const k_strs[5] = {"hello", "", "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82",
                                      "line\nbreak\ttab", NULL /* long: filled in */};
static char g_long[10001];

static void fill_f32(float x[15]) {
  const uint32_t specials[6] = {0x80000000u /* -0 */, 0x00000001u /* denormal */, 0x7fc12345u /* NaN payload */,
                                0x7f800000u /* inf */, 0xff7fffffu /* -FLT_MAX */, 0x3eaaaaabu};
  for (int i = 0; i < 15; i++) x[i] = i < 6 ? bits_f32(specials[i]) : (float)i / 7.0f - 1.0f;
}

static void write_reference(const char *path) {
  srlm_store *s = NULL;
  EXPECT_EQ_INT(srlm_store_create(path, "rollouts", 1, &s), SRLM_OK);
  if (!s) {
    fprintf(stderr, "create: %s\n", srlm_error_message());
    return;
  }
  memset(g_long, 'x', sizeof g_long - 1);
  g_long[sizeof g_long - 1] = '\0';
  const char *strs[5] = {k_strs[0], k_strs[1], k_strs[2], k_strs[3], g_long};
  float f32[15];
  fill_f32(f32);
  double f64[4] = {M_PI, -0.0, 1e-310, -1e300};
  int32_t i32[3] = {INT32_MIN, 0, INT32_MAX};
  int64_t i64[3] = {INT64_MIN, 42, INT64_MAX};
  int64_t d2[2] = {3, 5}, d1_4 = 4, d1_3 = 3, d0 = 0, d20[2] = {2, 0};

  srlm_status st = SRLM_OK;
#define W(call)                                                                     \
  do {                                                                              \
    st = (call);                                                                    \
    EXPECT(st == SRLM_OK, "%s -> %s: %s", #call, srlm_status_name(st), srlm_error_message()); \
  } while (0)
  W(srlm_store_write_seqs(s, "/iter_0/prompts", 4, k_offsets, k_ids));
  W(srlm_store_write_seqs(s, "iter_0/none", 0, k_offsets, NULL));
  W(srlm_store_write_array(s, "/iter_0/logp", SRLM_STORE_F32, 2, d2, f32));
  W(srlm_store_write_array(s, "/iter_0/f64", SRLM_STORE_F64, 1, &d1_4, f64));
  W(srlm_store_write_array(s, "/iter_0/i32", SRLM_STORE_I32, 1, &d1_3, i32));
  W(srlm_store_write_array(s, "/iter_0/i64", SRLM_STORE_I64, 1, &d1_3, i64));
  W(srlm_store_write_array(s, "/iter_0/empty1", SRLM_STORE_F32, 1, &d0, NULL));
  W(srlm_store_write_array(s, "/iter_0/empty2", SRLM_STORE_I64, 2, d20, NULL));
  W(srlm_store_write_strings(s, "/iter_0/texts", 5, strs));
  W(srlm_store_write_strings(s, "/iter_0/notexts", 0, NULL));
  W(srlm_store_write_array(s, "/iter_1/deep/er/x", SRLM_STORE_I32, 1, &d1_3, i32));
  W(srlm_store_group(s, "/meta"));
  W(srlm_store_group(s, "/meta")); /* existing group is fine */
  W(srlm_store_set_attr_str(s, "/meta", "model", "Qwen2.5-0.5B \xe2\x9c\x93"));
  W(srlm_store_set_attr_str(s, "/meta", "empty", ""));
  W(srlm_store_set_attr_i64(s, "/iter_0/logp", "policy_version", 7));
  W(srlm_store_set_attr_i64(s, "/iter_0/logp", "policy_version", -9)); /* replaced */
  W(srlm_store_set_attr_f64(s, "/", "lr", 3e-6));
  W(srlm_store_set_attr_f64(s, "iter_0/prompts", "temperature", 0.7));
#undef W
  /* Writers can read their own records back before commit. */
  srlm_seqs q;
  EXPECT_EQ_INT(srlm_store_read_seqs(s, "/iter_0/prompts", &q), SRLM_OK);
  EXPECT_EQ_INT(q.n, 4);
  srlm_seqs_free(&q);
  EXPECT_EQ_INT(srlm_store_commit(s), SRLM_OK);
}

static void test_round_trip(const char *path) {
  write_reference(path);
  srlm_store *s = NULL;
  srlm_status st = srlm_store_open(path, "rollouts", 1, &s);
  EXPECT(st == SRLM_OK, "open: %s", srlm_error_message());
  if (!s) return;
  EXPECT_STR_EQ(srlm_store_path(s), path);

  srlm_seqs q;
  EXPECT_EQ_INT(srlm_store_read_seqs(s, "iter_0/prompts", &q), SRLM_OK);
  EXPECT_EQ_INT(q.n, 4);
  for (int i = 0; i <= 4 && q.offsets; i++) EXPECT(q.offsets[i] == k_offsets[i], "offsets[%d] = %lld, expected %lld", i, (long long)q.offsets[i], (long long)k_offsets[i]);
  for (int i = 0; i < 8 && q.ids; i++) EXPECT(q.ids[i] == k_ids[i], "ids[%d] = %d, expected %d", i, q.ids[i], k_ids[i]);
  srlm_seqs_free(&q);
  EXPECT(q.ids == NULL && q.offsets == NULL && q.n == 0, "srlm_seqs_free resets the struct");
  EXPECT_EQ_INT(srlm_store_read_seqs(s, "/iter_0/none", &q), SRLM_OK);
  EXPECT_EQ_INT(q.n, 0);
  EXPECT(q.offsets && q.offsets[0] == 0, "empty seqs has offsets = [0]");
  srlm_seqs_free(&q);

  /* float32 bit-exact, including -0, denormal, NaN payload, inf. */
  float ref[15];
  fill_f32(ref);
  int64_t dims[SRLM_STORE_MAX_RANK] = {0};
  void *data = NULL;
  EXPECT_EQ_INT(srlm_store_read_array(s, "/iter_0/logp", SRLM_STORE_F32, 2, dims, &data), SRLM_OK);
  EXPECT(dims[0] == 3 && dims[1] == 5, "dims = [%lld, %lld], expected [3, 5]", (long long)dims[0], (long long)dims[1]);
  for (int i = 0; i < 15 && data; i++)
    EXPECT(f32_bits(((float *)data)[i]) == f32_bits(ref[i]), "logp[%d] bits 0x%08x, expected 0x%08x", i,
           f32_bits(((float *)data)[i]), f32_bits(ref[i]));
  free(data);

  float into[15] = {0};
  int64_t want[2] = {3, 5};
  EXPECT_EQ_INT(srlm_store_read_array_into(s, "/iter_0/logp", SRLM_STORE_F32, 2, want, into), SRLM_OK);
  EXPECT(memcmp(into, ref, sizeof into) == 0, "read_array_into gives the same bits");

  double f64[4] = {M_PI, -0.0, 1e-310, -1e300};
  EXPECT_EQ_INT(srlm_store_read_array(s, "/iter_0/f64", SRLM_STORE_F64, 1, dims, &data), SRLM_OK);
  EXPECT_EQ_INT(dims[0], 4);
  EXPECT(data && memcmp(data, f64, sizeof f64) == 0, "float64 bit-exact");
  free(data);

  int32_t i32[3] = {INT32_MIN, 0, INT32_MAX};
  EXPECT_EQ_INT(srlm_store_read_array(s, "/iter_0/i32", SRLM_STORE_I32, 1, dims, &data), SRLM_OK);
  EXPECT(data && memcmp(data, i32, sizeof i32) == 0, "int32 exact");
  free(data);
  int64_t i64[3] = {INT64_MIN, 42, INT64_MAX};
  EXPECT_EQ_INT(srlm_store_read_array(s, "/iter_0/i64", SRLM_STORE_I64, 1, dims, &data), SRLM_OK);
  EXPECT(data && memcmp(data, i64, sizeof i64) == 0, "int64 exact");
  free(data);
  EXPECT_EQ_INT(srlm_store_read_array(s, "/iter_1/deep/er/x", SRLM_STORE_I32, 1, dims, &data), SRLM_OK);
  EXPECT(data && memcmp(data, i32, sizeof i32) == 0, "nested groups made on write");
  free(data);

  EXPECT_EQ_INT(srlm_store_read_array(s, "/iter_0/empty1", SRLM_STORE_F32, 1, dims, &data), SRLM_OK);
  EXPECT_EQ_INT(dims[0], 0);
  EXPECT(data != NULL, "empty array gives a freeable buffer");
  free(data);
  EXPECT_EQ_INT(srlm_store_read_array(s, "/iter_0/empty2", SRLM_STORE_I64, 2, dims, &data), SRLM_OK);
  EXPECT(dims[0] == 2 && dims[1] == 0, "dims = [%lld, %lld], expected [2, 0]", (long long)dims[0], (long long)dims[1]);
  free(data);

  int64_t n = -1;
  char **strs = NULL;
  EXPECT_EQ_INT(srlm_store_read_strings(s, "/iter_0/texts", &n, &strs), SRLM_OK);
  EXPECT_EQ_INT(n, 5);
  for (int i = 0; i < 4 && strs && n == 5; i++) EXPECT_STR_EQ(strs[i], k_strs[i]);
  if (strs && n == 5) EXPECT(strcmp(strs[4], g_long) == 0, "10000-byte string comes back (length %zu)", strlen(strs[4]));
  srlm_store_strings_free(strs, n);
  EXPECT_EQ_INT(srlm_store_read_strings(s, "/iter_0/notexts", &n, &strs), SRLM_OK);
  EXPECT_EQ_INT(n, 0);
  srlm_store_strings_free(strs, n);

  char *v = NULL;
  EXPECT_EQ_INT(srlm_store_get_attr_str(s, "/meta", "model", &v), SRLM_OK);
  EXPECT_STR_EQ(v, "Qwen2.5-0.5B \xe2\x9c\x93");
  free(v);
  EXPECT_EQ_INT(srlm_store_get_attr_str(s, "meta/", "empty", &v), SRLM_OK);
  EXPECT_STR_EQ(v, "");
  free(v);
  EXPECT_EQ_INT(srlm_store_get_attr_str(s, "/", "srlm_format", &v), SRLM_OK);
  EXPECT_STR_EQ(v, "rollouts");
  free(v);
  int64_t iv = 0;
  EXPECT_EQ_INT(srlm_store_get_attr_i64(s, "/iter_0/logp", "policy_version", &iv), SRLM_OK);
  EXPECT_EQ_INT(iv, -9);
  EXPECT_EQ_INT(srlm_store_get_attr_i64(s, "/", "srlm_version", &iv), SRLM_OK);
  EXPECT_EQ_INT(iv, 1);
  double dv = 0;
  EXPECT_EQ_INT(srlm_store_get_attr_f64(s, "/", "lr", &dv), SRLM_OK);
  EXPECT(dv == 3e-6, "lr = %.17g, expected 3e-6", dv);
  EXPECT_EQ_INT(srlm_store_get_attr_f64(s, "/iter_0/prompts", "temperature", &dv), SRLM_OK);
  EXPECT(dv == 0.7, "temperature = %.17g, expected 0.7", dv);
  char *kind = NULL;
  EXPECT_EQ_INT(srlm_store_get_attr_str(s, "/iter_0/prompts", "srlm_kind", &kind), SRLM_OK);
  EXPECT_STR_EQ(kind, "seqs");
  free(kind);

  EXPECT_EQ_INT(srlm_store_has(s, "/iter_0"), 1);
  EXPECT_EQ_INT(srlm_store_has(s, "iter_0/prompts"), 1);
  EXPECT_EQ_INT(srlm_store_has(s, "/iter_0/prompts/ids"), 1);
  EXPECT_EQ_INT(srlm_store_has(s, "/"), 1);
  EXPECT_EQ_INT(srlm_store_has(s, "/nope"), 0);
  EXPECT_EQ_INT(srlm_store_has(s, "/nope/deeper"), 0);
  EXPECT_EQ_INT(srlm_store_has(s, "/iter_0/logp/below_a_dataset"), 0);
  EXPECT_EQ_INT(srlm_store_has(s, "/iter_0//logp"), 0);
  EXPECT_EQ_INT(srlm_store_has(s, ""), 0);

  char **names = NULL;
  EXPECT_EQ_INT(srlm_store_list(s, "/", &n, &names), SRLM_OK);
  EXPECT_EQ_INT(n, 3);
  if (n == 3) {
    EXPECT_STR_EQ(names[0], "iter_0");
    EXPECT_STR_EQ(names[1], "iter_1");
    EXPECT_STR_EQ(names[2], "meta");
  }
  srlm_store_strings_free(names, n);
  EXPECT_EQ_INT(srlm_store_list(s, "/iter_0", &n, &names), SRLM_OK);
  EXPECT_EQ_INT(n, 10);
  if (n == 10) EXPECT_STR_EQ(names[0], "empty1");
  srlm_store_strings_free(names, n);
  EXPECT_EQ_INT(srlm_store_list(s, "/meta", &n, &names), SRLM_OK);
  EXPECT_EQ_INT(n, 0);
  srlm_store_strings_free(names, n);
  srlm_store_close(s);
}

/* ---- errors: each message names the file and the record ---- */

static void expect_error(srlm_status got, srlm_status code, const char *p1, const char *p2) {
  EXPECT(got == code, "status %s, expected %s (message: %s)", srlm_status_name(got), srlm_status_name(code),
         srlm_error_message());
  EXPECT_CONTAINS(srlm_error_message(), p1);
  if (p2) EXPECT_CONTAINS(srlm_error_message(), p2);
}

static void test_read_errors(const char *path) {
  srlm_store *s = NULL;
  if (srlm_store_open(path, "rollouts", 1, &s) != SRLM_OK) {
    EXPECT(0, "open %s: %s", path, srlm_error_message());
    return;
  }
  char want[1200];
  int64_t dims[4];
  void *data = (void *)&dims; /* must come back NULL on error */
  snprintf(want, sizeof want, "%s: /iter_0/nope: no such dataset", path);
  expect_error(srlm_store_read_array(s, "iter_0/nope", SRLM_STORE_F32, 1, dims, &data), SRLM_ERR_FORMAT, want, NULL);
  EXPECT(data == NULL, "output is NULL after an error");
  snprintf(want, sizeof want, "%s: /nope/deeper/x: no such dataset", path);
  expect_error(srlm_store_read_array(s, "/nope/deeper/x", SRLM_STORE_F32, 1, dims, &data), SRLM_ERR_FORMAT, want, NULL);
  snprintf(want, sizeof want, "%s: /iter_0/logp: is stored as float32, expected float64", path);
  expect_error(srlm_store_read_array(s, "/iter_0/logp", SRLM_STORE_F64, 2, dims, &data), SRLM_ERR_FORMAT, want, NULL);
  snprintf(want, sizeof want, "%s: /iter_0/i32: is stored as int32, expected int64", path);
  expect_error(srlm_store_read_array(s, "/iter_0/i32", SRLM_STORE_I64, 1, dims, &data), SRLM_ERR_FORMAT, want, NULL);
  snprintf(want, sizeof want, "%s: /iter_0/texts: is stored as string, expected float32", path);
  expect_error(srlm_store_read_array(s, "/iter_0/texts", SRLM_STORE_F32, 1, dims, &data), SRLM_ERR_FORMAT, want, NULL);
  snprintf(want, sizeof want, "%s: /iter_0/logp: has rank 2, expected rank 1", path);
  expect_error(srlm_store_read_array(s, "/iter_0/logp", SRLM_STORE_F32, 1, dims, &data), SRLM_ERR_FORMAT, want, NULL);
  snprintf(want, sizeof want, "%s: /iter_0: is a group, not a dataset", path);
  expect_error(srlm_store_read_array(s, "/iter_0", SRLM_STORE_F32, 1, dims, &data), SRLM_ERR_FORMAT, want, NULL);
  float buf[20];
  int64_t wrong[2] = {3, 4};
  snprintf(want, sizeof want, "%s: /iter_0/logp: has shape [3, 5], expected [3, 4]", path);
  expect_error(srlm_store_read_array_into(s, "/iter_0/logp", SRLM_STORE_F32, 2, wrong, buf), SRLM_ERR_FORMAT, want, NULL);

  int64_t n = 7;
  char **strs = (char **)&n;
  snprintf(want, sizeof want, "%s: /iter_0/logp: is stored as float32, expected strings", path);
  expect_error(srlm_store_read_strings(s, "/iter_0/logp", &n, &strs), SRLM_ERR_FORMAT, want, NULL);
  EXPECT(strs == NULL && n == 0, "strings output reset after an error");

  srlm_seqs q;
  snprintf(want, sizeof want, "%s: /iter_0/gone: no such sequences record", path);
  expect_error(srlm_store_read_seqs(s, "/iter_0/gone", &q), SRLM_ERR_FORMAT, want, NULL);
  EXPECT(q.ids == NULL && q.offsets == NULL, "seqs output reset after an error");
  snprintf(want, sizeof want, "%s: /iter_0/logp: is a dataset, not a sequences group", path);
  expect_error(srlm_store_read_seqs(s, "/iter_0/logp", &q), SRLM_ERR_FORMAT, want, NULL);
  snprintf(want, sizeof want, "%s: /meta/offsets: no such dataset", path);
  expect_error(srlm_store_read_seqs(s, "/meta", &q), SRLM_ERR_FORMAT, want, NULL);

  char *v = NULL;
  int64_t iv;
  double dv;
  snprintf(want, sizeof want, "%s: /meta: attribute 'nope' is missing", path);
  expect_error(srlm_store_get_attr_str(s, "/meta", "nope", &v), SRLM_ERR_FORMAT, want, NULL);
  snprintf(want, sizeof want, "%s: /meta: attribute 'model' is string, expected an integer", path);
  expect_error(srlm_store_get_attr_i64(s, "/meta", "model", &iv), SRLM_ERR_FORMAT, want, NULL);
  snprintf(want, sizeof want, "%s: attribute 'srlm_version' is int64, expected a float", path);
  expect_error(srlm_store_get_attr_f64(s, "/", "srlm_version", &dv), SRLM_ERR_FORMAT, want, NULL);
  snprintf(want, sizeof want, "%s: /ghost: no such group or dataset", path);
  expect_error(srlm_store_get_attr_f64(s, "/ghost", "x", &dv), SRLM_ERR_FORMAT, want, NULL);
  snprintf(want, sizeof want, "%s: bad record path 'a//b'", path);
  expect_error(srlm_store_read_strings(s, "a//b", &n, &strs), SRLM_ERR_RANGE, want, NULL);
  expect_error(srlm_store_read_strings(s, "/a/../b", &n, &strs), SRLM_ERR_RANGE, "bad record path '/a/../b'", NULL);
  char **names = NULL;
  snprintf(want, sizeof want, "%s: /iter_0/logp: is a dataset, not a group", path);
  expect_error(srlm_store_list(s, "/iter_0/logp", &n, &names), SRLM_ERR_FORMAT, want, NULL);

  /* A reader cannot write. */
  int64_t one = 1;
  expect_error(srlm_store_write_array(s, "/new", SRLM_STORE_I64, 1, &one, &one), SRLM_ERR_INTERNAL,
               "store is open for reading", NULL);
  srlm_store_close(s);
}

static void test_format_checks(const char *path, const char *dir) {
  srlm_store *s = (srlm_store *)1;
  char want[1200];
  snprintf(want, sizeof want, "%s: srlm_format is \"rollouts\", expected \"dataset\"", path);
  expect_error(srlm_store_open(path, "dataset", 1, &s), SRLM_ERR_FORMAT, want, NULL);
  EXPECT(s == NULL, "handle is NULL after a failed open");
  snprintf(want, sizeof want, "%s: srlm_version is 1, this srlm reads version 2", path);
  expect_error(srlm_store_open(path, "rollouts", 2, &s), SRLM_ERR_FORMAT, want, NULL);

  char missing[1024];
  snprintf(missing, sizeof missing, "%s/does_not_exist.h5", dir);
  snprintf(want, sizeof want, "%s: cannot open: No such file or directory", missing);
  expect_error(srlm_store_open(missing, "rollouts", 1, &s), SRLM_ERR_IO, want, NULL);
  expect_error(srlm_store_open(dir, "rollouts", 1, &s), SRLM_ERR_IO, "not a regular file", NULL);

  /* Files written by other tools: no attributes, a version stored as a string. */
  char foreign[1024];
  snprintf(foreign, sizeof foreign, "%s/foreign.h5", dir);
  hid_t f = H5Fcreate(foreign, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  EXPECT(f >= 0, "raw H5Fcreate %s", foreign);
  H5Fclose(f);
  snprintf(want, sizeof want, "%s: srlm_format attribute is missing", foreign);
  expect_error(srlm_store_open(foreign, "rollouts", 1, &s), SRLM_ERR_FORMAT, want, NULL);

  f = H5Fcreate(foreign, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t ft = H5Tcopy(H5T_C_S1); /* fixed-length, space padded, as numpy bytes_ would give */
  H5Tset_size(ft, 12);
  H5Tset_strpad(ft, H5T_STR_SPACEPAD);
  hid_t a = H5Acreate2(f, "srlm_format", ft, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, ft, "rollouts    ");
  H5Aclose(a);
  a = H5Acreate2(f, "srlm_version", ft, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, ft, "1           ");
  H5Aclose(a);
  /* A fixed-length string dataset: null-terminated fields of 6 bytes. */
  hid_t ft6 = H5Tcopy(H5T_C_S1);
  H5Tset_size(ft6, 6);
  hsize_t d3 = 3;
  hid_t sp3 = H5Screate_simple(1, &d3, NULL);
  hid_t ds = H5Dcreate2(f, "fixed", ft6, sp3, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, ft6, H5S_ALL, H5S_ALL, H5P_DEFAULT, "ab\0\0\0\0abcdef\0\0\0\0\0\0");
  H5Dclose(ds);
  H5Sclose(sp3);
  H5Tclose(ft6);
  H5Tclose(ft);
  H5Sclose(sp);
  H5Fclose(f);
  snprintf(want, sizeof want, "%s: attribute 'srlm_version' is string, expected an integer", foreign);
  expect_error(srlm_store_open(foreign, "rollouts", 1, &s), SRLM_ERR_FORMAT, want, NULL);

  /* Same file, version fixed: opens, and fixed-length strings read back trimmed. */
  f = H5Fopen(foreign, H5F_ACC_RDWR, H5P_DEFAULT);
  H5Adelete(f, "srlm_version");
  sp = H5Screate(H5S_SCALAR);
  a = H5Acreate2(f, "srlm_version", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  uint8_t one = 1;
  H5Awrite(a, H5T_NATIVE_UINT8, &one);
  H5Aclose(a);
  H5Sclose(sp);
  H5Fclose(f);
  srlm_status st = srlm_store_open(foreign, "rollouts", 1, &s);
  EXPECT(st == SRLM_OK, "open %s: %s", foreign, srlm_error_message());
  if (s) {
    int64_t n = 0;
    char **strs = NULL;
    EXPECT_EQ_INT(srlm_store_read_strings(s, "fixed", &n, &strs), SRLM_OK);
    EXPECT_EQ_INT(n, 3);
    if (n == 3) {
      EXPECT_STR_EQ(strs[0], "ab");
      EXPECT_STR_EQ(strs[1], "abcdef");
      EXPECT_STR_EQ(strs[2], "");
    }
    srlm_store_strings_free(strs, n);
    srlm_store_close(s);
  }
}

/* ---- damaged files ---- */

static void copy_prefix(const char *src, const char *dst, size_t len) {
  char *data = NULL;
  size_t size = 0;
  if (srlm_read_file(src, &data, &size) != SRLM_OK) return;
  FILE *f = fopen(dst, "wb");
  if (f) {
    fwrite(data, 1, len < size ? len : size, f);
    fclose(f);
  }
  free(data);
}

/* Reads every record (when a damaged file opens anyway); any outcome but a crash is fine. */
static int read_everything(srlm_store *s) {
  int failed = 0;
  srlm_seqs q;
  int64_t dims[4], n;
  void *data;
  char **strs, *v;
  failed += srlm_store_read_seqs(s, "/iter_0/prompts", &q) != SRLM_OK;
  srlm_seqs_free(&q);
  const char *arrays[4] = {"/iter_0/logp", "/iter_0/f64", "/iter_0/i32", "/iter_0/i64"};
  const srlm_store_dtype dt[4] = {SRLM_STORE_F32, SRLM_STORE_F64, SRLM_STORE_I32, SRLM_STORE_I64};
  const int rank[4] = {2, 1, 1, 1};
  for (int i = 0; i < 4; i++) {
    failed += srlm_store_read_array(s, arrays[i], dt[i], rank[i], dims, &data) != SRLM_OK;
    free(data);
  }
  failed += srlm_store_read_strings(s, "/iter_0/texts", &n, &strs) != SRLM_OK;
  srlm_store_strings_free(strs, n);
  failed += srlm_store_get_attr_str(s, "/meta", "model", &v) != SRLM_OK;
  free(v);
  failed += srlm_store_list(s, "/iter_0", &n, &strs) != SRLM_OK;
  srlm_store_strings_free(strs, n);
  return failed;
}

static void test_truncated(const char *path, const char *dir) {
  char *data = NULL;
  size_t size = 0;
  if (srlm_read_file(path, &data, &size) != SRLM_OK) {
    EXPECT(0, "read %s: %s", path, srlm_error_message());
    return;
  }
  char cut[1024];
  snprintf(cut, sizeof cut, "%s/truncated.h5", dir);
  const size_t lens[6] = {0, 7, 100, 800, size / 2, size - 1};
  for (int i = 0; i < 6; i++) {
    copy_prefix(path, cut, lens[i]);
    srlm_store *s = NULL;
    srlm_status st = srlm_store_open(cut, "rollouts", 1, &s);
    EXPECT(st == SRLM_ERR_FORMAT && s == NULL, "truncated to %zu of %zu bytes: status %s (%s)", lens[i], size,
           srlm_status_name(st), srlm_error_message());
    char want[1200];
    snprintf(want, sizeof want, "%s: not a readable HDF5 file (", cut);
    EXPECT_CONTAINS(srlm_error_message(), want);
    if (s) {
      read_everything(s);
      srlm_store_close(s);
    }
  }
  free(data);
}

/* ---- the writer: temp file, rename, discard ---- */

static void write_marker(const char *path, int64_t value, int commit) {
  srlm_store *s = NULL;
  if (srlm_store_create(path, "dataset", 3, &s) != SRLM_OK) {
    EXPECT(0, "create %s: %s", path, srlm_error_message());
    return;
  }
  int64_t one = 1;
  EXPECT_EQ_INT(srlm_store_write_array(s, "/marker", SRLM_STORE_I64, 1, &one, &value), SRLM_OK);
  if (commit)
    EXPECT_EQ_INT(srlm_store_commit(s), SRLM_OK);
  else
    srlm_store_close(s);
}

static int64_t read_marker(const char *path) {
  srlm_store *s = NULL;
  int64_t v = -1, one = 1;
  if (srlm_store_open(path, "dataset", 3, &s) != SRLM_OK) return -1;
  if (srlm_store_read_array_into(s, "marker", SRLM_STORE_I64, 1, &one, &v) != SRLM_OK) v = -2;
  srlm_store_close(s);
  return v;
}

static void test_writer(const char *dir) {
  char path[1024], tmp[1100];
  snprintf(path, sizeof path, "%s/atomic.h5", dir);
  tmp_name(tmp, sizeof tmp, path);
  unlink(path);

  srlm_store *s = NULL;
  EXPECT_EQ_INT(srlm_store_create(path, "dataset", 3, &s), SRLM_OK);
  int64_t one = 1, v = 11;
  EXPECT_EQ_INT(srlm_store_write_array(s, "/marker", SRLM_STORE_I64, 1, &one, &v), SRLM_OK);
  EXPECT(!exists(path), "no file under the real name before commit");
  EXPECT(exists(tmp), "the writer works in %s", tmp);
  char want[1200];
  snprintf(want, sizeof want, "%s: /marker: cannot write: the file already has a dataset here", path);
  expect_error(srlm_store_write_array(s, "marker", SRLM_STORE_I64, 1, &one, &v), SRLM_ERR_IO, want, NULL);
  snprintf(want, sizeof want, "%s: /marker/x/y: cannot write: /marker is a dataset, not a group", path);
  expect_error(srlm_store_write_array(s, "/marker/x/y", SRLM_STORE_I64, 1, &one, &v), SRLM_ERR_IO, want, NULL);
  int64_t bad_off[3] = {0, 2, 1};
  snprintf(want, sizeof want, "%s: /s: offsets[2] = 1 is below offsets[1] = 2", path);
  expect_error(srlm_store_write_seqs(s, "/s", 2, bad_off, k_ids), SRLM_ERR_RANGE, want, NULL);
  bad_off[0] = 5;
  expect_error(srlm_store_write_seqs(s, "/s", 2, bad_off, k_ids), SRLM_ERR_RANGE, "offsets[0] is 5, expected 0", NULL);
  int64_t neg = -1;
  expect_error(srlm_store_write_array(s, "/neg", SRLM_STORE_I64, 1, &neg, &v), SRLM_ERR_RANGE, "dimension 0 is negative",
               NULL);
  expect_error(srlm_store_write_array(s, "/r0", SRLM_STORE_I64, 0, &one, &v), SRLM_ERR_RANGE, "rank 0 is outside 1..4", NULL);
  const char *with_null[2] = {"a", NULL};
  expect_error(srlm_store_write_strings(s, "/strs", 2, with_null), SRLM_ERR_INTERNAL, "string 1 is NULL", NULL);
  EXPECT_EQ_INT(srlm_store_commit(s), SRLM_OK);
  EXPECT(exists(path), "real file after commit");
  EXPECT(!exists(tmp), "no temp file after commit");
  EXPECT_EQ_INT(read_marker(path), 11);

  /* An abandoned writer leaves the old file as it was and no temp file. */
  write_marker(path, 22, 0);
  EXPECT(!exists(tmp), "abandoned writer removed %s", tmp);
  EXPECT_EQ_INT(read_marker(path), 11);
  write_marker(path, 33, 1);
  EXPECT_EQ_INT(read_marker(path), 33);

  char fresh[1024], fresh_tmp[1100];
  snprintf(fresh, sizeof fresh, "%s/abandoned.h5", dir);
  tmp_name(fresh_tmp, sizeof fresh_tmp, fresh);
  write_marker(fresh, 1, 0);
  EXPECT(!exists(fresh) && !exists(fresh_tmp), "abandoned new file leaves nothing behind");

  /* A writer that dies before commit never leaves a file under the real name. */
  char crash[1024];
  snprintf(crash, sizeof crash, "%s/crash.h5", dir);
  unlink(crash);
  pid_t pid = fork();
  if (pid == 0) {
    srlm_store *c = NULL;
    if (srlm_store_create(crash, "dataset", 3, &c) != SRLM_OK) _exit(3);
    int64_t big[4096] = {0};
    int64_t d = 4096;
    if (srlm_store_write_array(c, "/big", SRLM_STORE_I64, 1, &d, big) != SRLM_OK) _exit(4);
    _exit(0); /* no commit, no close: as if killed */
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child writer ran (status %d)", status);
  EXPECT(!exists(crash), "a killed writer leaves no file under the real name");
  char crash_tmp[1100];
  snprintf(crash_tmp, sizeof crash_tmp, "%s.tmp.%ld", crash, (long)pid);
  unlink(crash_tmp);

  /* Cannot create in a folder that does not exist. */
  char nodir[1024];
  snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.h5", dir);
  snprintf(want, sizeof want, "%s: cannot create temp file %s/no/such/dir/x.h5.tmp.", nodir, dir);
  expect_error(srlm_store_create(nodir, "dataset", 3, &s), SRLM_ERR_IO, want, NULL);
  EXPECT(s == NULL, "handle is NULL after a failed create");

  /* Damaged seqs written as plain arrays are caught on read. */
  snprintf(path, sizeof path, "%s/badseqs.h5", dir);
  EXPECT_EQ_INT(srlm_store_create(path, "dataset", 3, &s), SRLM_OK);
  int64_t off[3] = {0, 2, 4}, d3 = 3, d2 = 2;
  int32_t ids[2] = {5, 6};
  EXPECT_EQ_INT(srlm_store_write_array(s, "/q/offsets", SRLM_STORE_I64, 1, &d3, off), SRLM_OK);
  EXPECT_EQ_INT(srlm_store_write_array(s, "/q/ids", SRLM_STORE_I32, 1, &d2, ids), SRLM_OK);
  EXPECT_EQ_INT(srlm_store_commit(s), SRLM_OK);
  EXPECT_EQ_INT(srlm_store_open(path, "dataset", 3, &s), SRLM_OK);
  if (s) {
    srlm_seqs q;
    snprintf(want, sizeof want, "%s: /q/offsets: last offset is 4 but /q/ids holds 2 ids", path);
    expect_error(srlm_store_read_seqs(s, "q", &q), SRLM_ERR_FORMAT, want, NULL);
    EXPECT(q.ids == NULL && q.offsets == NULL, "no buffers left after the error");
    srlm_store_close(s);
  }
}

/* A failure only HDF5 sees (raw data kept in an external file that is gone): the error
 * is SRLM_ERR_LIB with the statement and HDF5's own innermost reason. */
static void test_library_error(const char *dir) {
  char path[1024], raw[1024];
  snprintf(path, sizeof path, "%s/external.h5", dir);
  snprintf(raw, sizeof raw, "%s/external.raw", dir);
  srlm_store *s = NULL;
  EXPECT_EQ_INT(srlm_store_create(path, "dataset", 1, &s), SRLM_OK);
  EXPECT_EQ_INT(srlm_store_commit(s), SRLM_OK);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_external(dcpl, raw, 0, 4 * sizeof(int64_t));
  hsize_t d4 = 4;
  hid_t sp = H5Screate_simple(1, &d4, NULL);
  hid_t ds = H5Dcreate2(f, "x", H5T_STD_I64LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  int64_t vals[4] = {1, 2, 3, 4};
  EXPECT(H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals) >= 0, "raw write to %s", raw);
  H5Dclose(ds);
  H5Sclose(sp);
  H5Pclose(dcpl);
  H5Fclose(f);
  EXPECT_EQ_INT(srlm_store_open(path, "dataset", 1, &s), SRLM_OK);
  if (!s) return;
  int64_t dims[1];
  void *data = NULL;
  EXPECT_EQ_INT(srlm_store_read_array(s, "x", SRLM_STORE_I64, 1, dims, &data), SRLM_OK);
  EXPECT(data && ((int64_t *)data)[3] == 4, "external data read while the raw file exists");
  free(data);
  unlink(raw);
  char want[1200];
  snprintf(want, sizeof want, "%s: /x: ", path);
  expect_error(srlm_store_read_array(s, "x", SRLM_STORE_I64, 1, dims, &data), SRLM_ERR_LIB, want,
               "HDF5 call 'H5Dread(");
  EXPECT_CONTAINS(srlm_error_message(), "failed with -1 (unable to open external raw data file)");
  srlm_store_close(s);
}

int main(void) {
  const char *dir = getenv("SRLM_TMP");
  if (!dir) dir = "/tmp";
  char path[1024];
  snprintf(path, sizeof path, "%s/reference.h5", dir);
  test_round_trip(path);
  test_read_errors(path);
  test_format_checks(path, dir);
  test_truncated(path, dir);
  test_writer(dir);
  test_library_error(dir);
  TEST_MAIN_END();
}
