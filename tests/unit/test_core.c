/* core: Philox4x32-10 known answers, status/error text, arena, atomic file writes. */
#include <unistd.h>

#include "srlm/core.h"
#include "test.h"

static void test_philox_kat(void) {
  /* Random123 tests/kat_vectors, the three "philox4x32 10" lines: ctr[4] key[2] -> out[4]. */
  static const uint32_t kat[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
       0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
       0x94fdcceb, 0x5001e420, 0x24126ea1},
  };
  for (int i = 0; i < 3; i++) {
    srlm_philox_out o = srlm_philox4x32_10(kat[i], kat[i] + 4);
    for (int j = 0; j < 4; j++)
      EXPECT(o.v[j] == kat[i][6 + j], "vector %d word %d: got %08x expected %08x", i, j, o.v[j],
             kat[i][6 + j]);
  }
  /* keyed stream: 64-bit seed split low word first */
  srlm_philox_out a = srlm_rng_bits(((uint64_t)0x299f31d0 << 32) | 0xa4093822, 0x243f6a88,
                                    0x85a308d3, 0x13198a2e, 0x03707344);
  EXPECT(a.v[0] == 0xd16cfe09, "seeded stream %08x", a.v[0]);
  /* uniform floats stay in [0,1) */
  EXPECT(srlm_rng_u01f(0xffffffffu) < 1.0f);
  EXPECT(srlm_rng_u01d(0xffffffffu, 0xffffffffu) < 1.0);
  /* mean of many uniforms is close to 1/2 */
  double s = 0;
  for (uint32_t i = 0; i < 100000; i++) s += srlm_rng_u01f(srlm_rng_bits(7, 1, i, 0, 0).v[0]);
  EXPECT_NEAR(s / 100000, 0.5, 0.005);
}

static void test_errors(void) {
  srlm_status st = srlm_error(SRLM_ERR_FORMAT, "model.safetensors: tensor 'wte'", "bad dtype %s", "F8");
  EXPECT_EQ_INT(st, SRLM_ERR_FORMAT);
  EXPECT_STR_EQ(srlm_error_message(), "model.safetensors: tensor 'wte': bad dtype F8");
  srlm_error_context(st, "loading %s", "dir");
  EXPECT_STR_EQ(srlm_error_message(), "loading dir: model.safetensors: tensor 'wte': bad dtype F8");
  EXPECT_EQ_INT(srlm_status_exit_code(SRLM_ERR_CONFIG), 2);
  EXPECT_EQ_INT(srlm_status_exit_code(SRLM_ERR_USAGE), 2);
  EXPECT_EQ_INT(srlm_status_exit_code(SRLM_ERR_IO), 1);
  EXPECT_EQ_INT(srlm_status_exit_code(SRLM_OK), 0);
  srlm_log_set_context(3, "judge");
  srlm_log_set_device(1);
  srlm_status lib = srlm_lib_error("HDF5", "H5Fopen(path)", -1, "no such file", "store.c", 42);
  EXPECT_EQ_INT(lib, SRLM_ERR_LIB);
  EXPECT_CONTAINS(srlm_error_message(), "store.c:42 rank 3 device 1");
  EXPECT_CONTAINS(srlm_error_message(), "HDF5 call 'H5Fopen(path)' failed with -1 (no such file)");
  srlm_log_set_context(-1, "");
  srlm_log_set_device(-1);
}

static srlm_status lib_call_helper(int rc) {
  SRLM_LIB_CALL("TEST", int, rc, srlm_rc == 0, "nonzero");
  return SRLM_OK;
}

static void test_lib_call(void) {
  EXPECT_EQ_INT(lib_call_helper(0), SRLM_OK);
  EXPECT_EQ_INT(lib_call_helper(5), SRLM_ERR_LIB);
  EXPECT_CONTAINS(srlm_error_message(), "TEST call 'rc' failed with 5 (nonzero)");
}

static void test_arena(void) {
  srlm_arena a;
  srlm_arena_init(&a, 64);
  char *p = srlm_arena_alloc(&a, 10, 1);
  double *d = srlm_arena_alloc(&a, 100 * sizeof(double), 8);
  EXPECT(((uintptr_t)d & 7) == 0, "misaligned %p", (void *)d);
  for (int i = 0; i < 100; i++) EXPECT(d[i] == 0.0, "not zeroed");
  memcpy(p, "123456789", 10);
  char *s = srlm_arena_strdup(&a, "hello");
  EXPECT_STR_EQ(s, "hello");
  EXPECT_STR_EQ(p, "123456789");
  for (int i = 0; i < 1000; i++) srlm_arena_alloc(&a, 33, 16);
  srlm_arena_reset(&a);
  EXPECT_EQ_INT(a.used, 0);
  srlm_arena_free(&a);
}

static void test_files(void) {
  char path[512];
  test_tmp_path(path, sizeof path, "atomic.txt");
  EXPECT_EQ_INT(srlm_write_file_atomic(path, "abc", 3), SRLM_OK);
  char *data;
  size_t n;
  EXPECT_EQ_INT(srlm_read_file(path, &data, &n), SRLM_OK);
  EXPECT_EQ_INT(n, 3);
  EXPECT_STR_EQ(data, "abc");
  free(data);
  EXPECT_EQ_INT(srlm_read_file("/nonexistent/x", &data, &n), SRLM_ERR_IO);
  EXPECT_CONTAINS(srlm_error_message(), "/nonexistent/x: cannot open");
  EXPECT_EQ_INT(srlm_write_file_atomic("/nonexistent/dir/x", "a", 1), SRLM_ERR_IO);
  unlink(path);
}

static void test_timer(void) {
  srlm_timer t;
  srlm_timer_start(&t);
  double e = srlm_timer_elapsed(&t);
  EXPECT(e >= 0 && e < 1.0, "elapsed %g", e);
}

int main(void) {
  test_philox_kat();
  test_errors();
  test_lib_call();
  test_arena();
  test_files();
  test_timer();
  TEST_MAIN_END();
}
