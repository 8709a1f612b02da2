/* Which transport each group's float collectives use (comm.h, "Backends"): the pure decision
 * srlm_comm_choose_transport on made-up layouts (ranks on cuda with distinct or shared GPUs,
 * a rank on cpu or cuda-sim, one rank, each run.comm value), and srlm_comm_open_transport in
 * a job of one rank on the CPU backend (MPI for both groups; nccl refused as a config error).
 * The NCCL path itself needs a GPU: tests/gpu/test_comm_nccl.c. */
#include <stdio.h>
#include <string.h>

#include "srlm/comm.h"
#include "test.h"

/* A rank on backend `be` with GPU `uuid_byte` (every byte of its UUID; -1: no GPU). */
static srlm_comm_device dev(const char *be, int device, int uuid_byte) {
  srlm_comm_device d;
  memset(&d, 0, sizeof d);
  snprintf(d.backend, sizeof d.backend, "%s", be);
  d.device = device;
  if (uuid_byte >= 0) memset(d.uuid, uuid_byte, sizeof d.uuid);
  return d;
}

/* Runs the decision and checks its result, its reason (or error) and its status. */
static void expect_choice(const char *name, srlm_comm_transport want, const srlm_comm_device *devs, const int *ranks,
                          int n, srlm_status want_st, srlm_comm_backend want_use, const char *want_text) {
  srlm_comm_backend use = (srlm_comm_backend)-1;
  char why[300] = "";
  srlm_error_clear();
  srlm_status st = srlm_comm_choose_transport(want, "learner group", devs, ranks, n, &use, why, sizeof why);
  EXPECT(st == want_st, "%s: status %d, expected %d (%s)", name, (int)st, (int)want_st, srlm_error_message());
  EXPECT(use == want_use, "%s: transport %d, expected %d", name, (int)use, (int)want_use);
  const char *text = st == SRLM_OK ? why : srlm_error_message();
  EXPECT(strstr(text, want_text) != NULL, "%s: \"%s\" lacks \"%s\"", name, text, want_text);
}

static void test_choose(void) {
  /* world ranks 0..5: 0-2 cuda on GPUs 0x11, 0x22, 0x33; 3 cuda sharing rank 1's GPU; 4 cpu; 5 cuda-sim */
  srlm_comm_device devs[6] = {dev("cuda", 0, 0x11), dev("cuda", 1, 0x22), dev("cuda", 2, 0x33),
                              dev("cuda", 1, 0x22), dev("cpu", -1, -1),   dev("cuda-sim", 0, -1)};
  const int distinct[3] = {0, 1, 2}, shared[3] = {0, 1, 3}, with_cpu[2] = {0, 4}, with_sim[2] = {2, 5}, one[1] = {2};
  const int bcast[3] = {0, 2, 1}; /* group order need not be world order */
  const srlm_comm_transport AUTO = SRLM_COMM_TRANSPORT_AUTO, MPI = SRLM_COMM_TRANSPORT_MPI, NCCL = SRLM_COMM_TRANSPORT_NCCL;

  expect_choice("distinct auto", AUTO, devs, distinct, 3, SRLM_OK, SRLM_COMM_NCCL, "every rank on a GPU of its own");
  expect_choice("distinct nccl", NCCL, devs, distinct, 3, SRLM_OK, SRLM_COMM_NCCL, "run.comm: nccl");
  expect_choice("distinct mpi", MPI, devs, distinct, 3, SRLM_OK, SRLM_COMM_MPI, "run.comm: mpi");
  expect_choice("reordered auto", AUTO, devs, bcast, 3, SRLM_OK, SRLM_COMM_NCCL, "every rank on a GPU of its own");

  expect_choice("shared auto", AUTO, devs, shared, 3, SRLM_OK, SRLM_COMM_MPI, "ranks 1 and 3 share one GPU (device 1 of rank 1)");
  expect_choice("shared nccl", NCCL, devs, shared, 3, SRLM_ERR_CONFIG, SRLM_COMM_MPI,
                "run.comm: nccl, but the learner group cannot use NCCL: ranks 1 and 3 share one GPU");
  expect_choice("shared mpi", MPI, devs, shared, 3, SRLM_OK, SRLM_COMM_MPI, "run.comm: mpi");

  expect_choice("cpu auto", AUTO, devs, with_cpu, 2, SRLM_OK, SRLM_COMM_MPI, "rank 4 runs the cpu backend, not cuda");
  expect_choice("cpu nccl", NCCL, devs, with_cpu, 2, SRLM_ERR_CONFIG, SRLM_COMM_MPI,
                "rank 4 runs the cpu backend, not cuda (NCCL needs every rank of a group on the cuda backend");
  expect_choice("sim auto", AUTO, devs, with_sim, 2, SRLM_OK, SRLM_COMM_MPI, "rank 5 runs the cuda-sim backend, not cuda");

  /* one rank: nothing to exchange, so auto stays on MPI; nccl still opens a communicator of one */
  expect_choice("one auto", AUTO, devs, one, 1, SRLM_OK, SRLM_COMM_MPI, "one rank: nothing to exchange");
  expect_choice("one nccl", NCCL, devs, one, 1, SRLM_OK, SRLM_COMM_NCCL, "run.comm: nccl");

  /* a rank without a backend set counts as the CPU */
  srlm_comm_device none[2] = {dev("cuda", 0, 0x11), dev("", -1, -1)};
  const int both[2] = {0, 1};
  expect_choice("no backend", AUTO, none, both, 2, SRLM_OK, SRLM_COMM_MPI, "rank 1 runs the cpu backend");
  expect_choice("bad want", (srlm_comm_transport)7, devs, distinct, 3, SRLM_ERR_RANGE, SRLM_COMM_MPI, "transport 7");
}

/* A job of one process (no launcher: solo) on the CPU backend: every group stays on MPI. */
static void test_open_solo(void) {
  srlm_comm *c = NULL;
  EXPECT_EQ_INT(srlm_comm_init(NULL, NULL, SRLM_COMM_MPI, &c), SRLM_OK);
  if (!c) return;
  EXPECT_EQ_INT(srlm_comm_open_transport(c, SRLM_COMM_TRANSPORT_AUTO), SRLM_ERR_INTERNAL); /* roles first */
  srlm_comm_roles roles = {1, 1, 1, true};
  EXPECT_EQ_INT(srlm_comm_assign_roles(c, &roles), SRLM_OK);
  srlm_comm_set_backend(c, srlm_backend_cpu());
  EXPECT_EQ_INT(srlm_comm_open_transport(c, SRLM_COMM_TRANSPORT_AUTO), SRLM_OK);
  EXPECT_EQ_INT(srlm_comm_transport_of(c, SRLM_COMM_GROUP_LEARNERS), SRLM_COMM_MPI);
  EXPECT_EQ_INT(srlm_comm_transport_of(c, SRLM_COMM_GROUP_BCAST), SRLM_COMM_MPI);
  srlm_comm_close_transport(c, SRLM_OK);
  EXPECT_EQ_INT(srlm_comm_open_transport(c, SRLM_COMM_TRANSPORT_MPI), SRLM_OK);
  EXPECT_EQ_INT(srlm_comm_transport_of(c, SRLM_COMM_GROUP_LEARNERS), SRLM_COMM_MPI);
  srlm_comm_close_transport(c, SRLM_OK);
  /* nccl on the CPU backend: refused, naming the key (a CPU-only build says it has no NCCL) */
  srlm_error_clear();
  EXPECT_EQ_INT(srlm_comm_open_transport(c, SRLM_COMM_TRANSPORT_NCCL), SRLM_ERR_CONFIG);
  EXPECT_CONTAINS(srlm_error_message(), "run.comm: nccl, but ");
#if defined(SRLM_HAVE_CUDA) && SRLM_HAVE_CUDA
  EXPECT_CONTAINS(srlm_error_message(), "rank 0 runs the cpu backend, not cuda");
#else
  EXPECT_CONTAINS(srlm_error_message(), "built without CUDA");
#endif
  EXPECT_EQ_INT(srlm_comm_transport_of(c, SRLM_COMM_GROUP_LEARNERS), SRLM_COMM_MPI);
  /* the MPI path still works after the refusal: a job of one keeps its gradients */
  float g[3] = {1.5f, -2.0f, 3.25f};
  EXPECT_EQ_INT(srlm_comm_allreduce_grads(c, g, 3, SRLM_COMM_SUM, SRLM_COMM_DETERMINISTIC), SRLM_OK);
  EXPECT(g[0] == 1.5f && g[1] == -2.0f && g[2] == 3.25f, "solo all-reduce changed the gradients: %g %g %g", g[0], g[1],
         g[2]);
  srlm_comm_set_backend(c, NULL);
  srlm_comm_free(c);
}

int main(void) {
  test_choose();
  test_open_solo();
  TEST_MAIN_END();
}
