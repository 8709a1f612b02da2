/* Device placement (issue 10 item 1): the device a rank takes when run.device is -1.
 *   - srlm_backend_default_device reads the launcher's local rank: Open MPI's
 *     OMPI_COMM_WORLD_LOCAL_RANK, then Slurm's SLURM_LOCALID, MPICH/Intel MPI's
 *     MPI_LOCALRANKID, MVAPICH's MV2_COMM_WORLD_LOCAL_RANK, in that order; a value that is
 *     not a whole number in [0, 2^20) is skipped (the next variable counts), none: 0.
 *   - a GPU backend opened with device -1 wraps the local rank to the devices there are
 *     (local rank mod device count), so several ranks share one GPU; an explicit device
 *     past the count is an error naming it. Checked on cuda-sim, whose runtime has one
 *     device: every local rank lands on device 0. */
#include <stdlib.h>

#include "srlm/backend.h"
#include "test.h"

static const char *const k_vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID",
                                     "MV2_COMM_WORLD_LOCAL_RANK"};
enum { N_VARS = sizeof k_vars / sizeof k_vars[0] };

static void clear_vars(void) {
  for (int i = 0; i < N_VARS; i++) unsetenv(k_vars[i]);
}

static void test_each_variable(void) {
  clear_vars();
  EXPECT_EQ_INT(srlm_backend_default_device(), 0);
  for (int i = 0; i < N_VARS; i++) {
    clear_vars();
    setenv(k_vars[i], "3", 1);
    EXPECT(srlm_backend_default_device() == 3, "%s=3 alone gives device %d", k_vars[i], srlm_backend_default_device());
  }
  clear_vars();
}

/* The first variable set to a valid value wins, whatever the later ones say. */
static void test_order(void) {
  clear_vars();
  for (int i = 0; i < N_VARS; i++) {
    char v[16];
    snprintf(v, sizeof v, "%d", 10 + i);
    setenv(k_vars[i], v, 1);
  }
  for (int i = 0; i < N_VARS; i++) {
    const int got = srlm_backend_default_device();
    EXPECT(got == 10 + i, "with %s and the later ones set, device %d (expected %d)", k_vars[i], got, 10 + i);
    unsetenv(k_vars[i]);
  }
  EXPECT_EQ_INT(srlm_backend_default_device(), 0);
}

/* Values that are not a local rank: skipped, so the next variable (SLURM_LOCALID = 5) counts. */
static void test_invalid(void) {
  static const char *const bad[] = {"", "abc", "-1", "2x", "1.5", "1048576", "99999999999999999999"};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    clear_vars();
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", bad[k], 1);
    EXPECT(srlm_backend_default_device() == 0, "OMPI_COMM_WORLD_LOCAL_RANK=\"%s\" alone gives device %d, expected 0",
           bad[k], srlm_backend_default_device());
    setenv("SLURM_LOCALID", "5", 1);
    EXPECT(srlm_backend_default_device() == 5,
           "OMPI_COMM_WORLD_LOCAL_RANK=\"%s\", SLURM_LOCALID=5 gives device %d, expected 5", bad[k],
           srlm_backend_default_device());
  }
  clear_vars();
  setenv("MPI_LOCALRANKID", "1048575", 1); /* the largest accepted */
  EXPECT_EQ_INT(srlm_backend_default_device(), 1048575);
  clear_vars();
}

/* cuda-sim has one device: local ranks 0, 1 and 7 all open device 0 (7 mod 1), flagged
 * auto_device; an explicit device 1 is out of range, named in the error. */
static void test_wrap_on_sim(void) {
  const srlm_backend_ops *ops;
  if (srlm_backend_find("cuda-sim", &ops) != SRLM_OK) {
    fprintf(stderr, "test_backend_device: no cuda-sim backend in this build: the wrap is not checked\n");
    srlm_error_clear();
    return;
  }
  static const char *const ranks[] = {"0", "1", "7"};
  for (size_t k = 0; k < sizeof ranks / sizeof ranks[0]; k++) {
    clear_vars();
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", ranks[k], 1);
    srlm_backend *be = NULL;
    srlm_status st = srlm_backend_open("cuda-sim", -1, &be);
    EXPECT(st == SRLM_OK, "local rank %s: open cuda-sim with device -1: %s", ranks[k], srlm_error_message());
    if (st != SRLM_OK) continue;
    EXPECT(be->device == 0, "local rank %s: device %d, expected 0 (the simulator's one device)", ranks[k], be->device);
    EXPECT(be->auto_device == 1, "local rank %s: auto_device %d, expected 1", ranks[k], be->auto_device);
    EXPECT_EQ_INT(srlm_backend_close(be), SRLM_OK);
  }
  clear_vars();
  srlm_backend *be = NULL;
  srlm_error_clear();
  EXPECT_EQ_INT(srlm_backend_open("cuda-sim", 1, &be), SRLM_ERR_RANGE);
  EXPECT(be == NULL, "a failed open leaves no backend");
  EXPECT_CONTAINS(srlm_error_message(), "device 1 out of range [0, 1)");
  if (be) (void)srlm_backend_close(be);
}

int main(void) {
  test_each_variable();
  test_order();
  test_invalid();
  test_wrap_on_sim();
  TEST_MAIN_END();
}
