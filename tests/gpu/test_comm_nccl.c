/* The NCCL transport of comm (comm.h "Backends", src/comm/comm_nccl.h) on one GPU: one rank,
 * the only NCCL layout one GPU allows (NCCL refuses two ranks on one device). Run it plain
 * (a job of one process, MPI never started) and under `mpirun -np 1` (bench/gpu_check.sh
 * does both).
 *
 * With one rank every collective's result is its input, so the checks are built to fail when
 * NCCL does not move the right bytes:
 *   1. The transport layer OUT OF PLACE: recv starts as a sentinel pattern, so every element
 *      must be written from send (a wrong count, dtype, bucket offset or owner range leaves
 *      sentinels or copies the wrong elements), and a guard tail past the array must stay.
 *      ncclAllReduce (sum and ncclAvg) in buckets that do not divide the array, ncclBroadcast
 *      in buckets, ncclReduceScatter/ncclAllGather (equal ranges) and the grouped
 *      ncclReduce/ncclBroadcast per owner; bad bounds are refused; an aborted communicator
 *      leaves the device usable for a new one.
 *   2. The public interface IN PLACE with run.comm nccl: srlm_comm_open_transport opens NCCL
 *      for both groups (auto stays on MPI with one rank), and srlm_comm_allreduce_grads (both
 *      orders, sum and mean, more than one 64 MiB bucket), srlm_comm_bcast_weights (versioned,
 *      1 MiB buckets; fp32 and bf16 elements), srlm_comm_reduce_scatter_grads and
 *      srlm_comm_allgather_shards (fp32 and bf16) keep the
 *      device data bit for bit and the guard tail, and so does the gradient reduce overlapped
 *      with the backward (srlm_comm_reduce_begin/ready/end: buckets ordered after the
 *      backend's stream by an event, all-reduce and ZeRO-1); the version travels; closing
 *      returns the groups to MPI.
 * Prints "test_comm_nccl: OK" and exits 0, or names each wrong element and exits 1. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_nccl.h"
#include "srlm/backend.h"
#include "srlm/comm.h"
#include "test.h"

#define GUARD 64           /* floats past every array that no collective may touch */
#define SENTINEL 0x7fc0dead /* a NaN payload no input holds */

static srlm_backend *g_be;

static float value(int64_t i, int salt) { return (float)((i * 7919 + salt * 104729) % 100003) * 0.25f - 9000.0f; }

static float sentinel(void) {
  uint32_t u = SENTINEL;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* A device array of n + GUARD floats filled from host (n + GUARD); NULL on failure. */
static float *dev_from(const float *host, int64_t n) {
  float *d = NULL;
  const size_t bytes = (size_t)(n + GUARD) * sizeof(float);
  if (srlm_backend_alloc(g_be, (void **)&d, bytes) != SRLM_OK) return NULL;
  if (srlm_backend_copy_h2d(g_be, d, host, bytes) != SRLM_OK) return NULL;
  return d;
}

/* Compares the device array (n + GUARD) with want (n + GUARD); prints the first few misses. */
static void expect_dev(const char *what, const float *d, const float *want, int64_t n) {
  const size_t bytes = (size_t)(n + GUARD) * sizeof(float);
  float *got = srlm_xmalloc(bytes);
  srlm_status st = srlm_backend_copy_d2h(g_be, got, d, bytes);
  EXPECT(st == SRLM_OK, "%s: copy back: %s", what, srlm_error_message());
  int64_t bad = 0;
  for (int64_t i = 0; st == SRLM_OK && i < n + GUARD; i++) {
    if (memcmp(&got[i], &want[i], sizeof(float)) == 0) continue;
    uint32_t bits;
    memcpy(&bits, &got[i], sizeof bits);
    if (bad++ < 5)
      fprintf(stderr, "  %s: element %lld%s = %.9g (bits %08x), expected %.9g\n", what, (long long)i,
              i >= n ? " (guard)" : "", got[i], (unsigned)bits, want[i]);
  }
  EXPECT(bad == 0, "%s: %lld of %lld elements (guard included) differ", what, (long long)bad, (long long)(n + GUARD));
  free(got);
}

/* host arrays: send = values, recv = sentinels, both with a guard tail of other values */
static void fill(float *send, float *recv, int64_t n, int salt) {
  for (int64_t i = 0; i < n + GUARD; i++) {
    send[i] = value(i, salt);
    recv[i] = i < n ? sentinel() : value(i, salt + 1);
  }
}

/* 1. the transport layer, out of place */
static void test_layer(void) {
  unsigned char id[SR_NCCL_ID_BYTES];
  EXPECT_EQ_INT(sr_nccl_unique_id(id), SRLM_OK);
  sr_nccl *n = NULL;
  srlm_status st = sr_nccl_open(id, 1, 0, g_be, "test group", &n);
  EXPECT(st == SRLM_OK, "sr_nccl_open: %s", srlm_error_message());
  if (st != SRLM_OK) return;
  EXPECT_EQ_INT(sr_nccl_size(n), 1);
  const int64_t N = 2503, bucket = 1000; /* three buckets, the last one short */
  const size_t bytes = (size_t)(N + GUARD) * sizeof(float);
  float *hs = srlm_xmalloc(bytes), *hr = srlm_xmalloc(bytes), *want = srlm_xmalloc(bytes);
  const int64_t whole[2] = {0, N};
  for (int c = 0; c < 7; c++) {
    fill(hs, hr, N, c);
    float *ds = dev_from(hs, N), *dr = dev_from(hr, N);
    EXPECT(ds && dr, "device arrays: %s", srlm_error_message());
    if (!ds || !dr) break;
    const char *what = "";
    switch (c) {
    case 0: what = "ncclAllReduce sum"; st = sr_nccl_allreduce(n, ds, dr, N, false, bucket); break;
    case 1: what = "ncclAllReduce avg"; st = sr_nccl_allreduce(n, ds, dr, N, true, bucket); break;
    case 2: what = "ncclBroadcast"; st = sr_nccl_bcast(n, ds, dr, N, sizeof(float), 0, bucket); break;
    case 3: what = "ncclReduceScatter"; st = sr_nccl_reduce_scatter(n, ds, dr, whole, false); break;
    case 4: what = "grouped ncclReduce"; st = sr_nccl_reduce_scatter(n, ds, dr, whole, true); break;
    case 5: what = "ncclAllGather"; st = sr_nccl_allgather(n, ds, dr, whole, false, sizeof(float)); break;
    case 6: what = "grouped ncclBroadcast"; st = sr_nccl_allgather(n, ds, dr, whole, true, sizeof(float)); break;
    }
    EXPECT(st == SRLM_OK, "%s: %s", what, srlm_error_message());
    /* every element of recv from send (one rank: sum = avg = the value), the guard as it was */
    memcpy(want, hs, (size_t)N * sizeof(float));
    memcpy(want + N, hr + N, GUARD * sizeof(float));
    expect_dev(what, dr, want, N);
    expect_dev("send buffer", ds, hs, N); /* out of place: send is only read */
    srlm_backend_free(g_be, ds);
    srlm_backend_free(g_be, dr);
  }
  /* refused before anything moves, and the communicator stays usable */
  const int64_t bad_start[2] = {1, N};
  EXPECT_EQ_INT(sr_nccl_reduce_scatter(n, NULL, NULL, bad_start, false), SRLM_ERR_INTERNAL);
  EXPECT_EQ_INT(sr_nccl_bcast(n, NULL, NULL, N, sizeof(float), 0, bucket), SRLM_ERR_INTERNAL); /* the root keeps its data */
  EXPECT_EQ_INT(sr_nccl_bcast(n, NULL, NULL, N, sizeof(float), 1, bucket), SRLM_ERR_RANGE);    /* no rank 1 */
  float *d = NULL;
  EXPECT_EQ_INT(srlm_backend_alloc(g_be, (void **)&d, 4 * sizeof(float)), SRLM_OK);
  EXPECT_EQ_INT(sr_nccl_allreduce(n, d, d, 4, false, 0), SRLM_OK);
  /* an aborted communicator (the error path's close) frees the device for a new one */
  sr_nccl_close(n, false);
  EXPECT_EQ_INT(sr_nccl_unique_id(id), SRLM_OK);
  n = NULL;
  st = sr_nccl_open(id, 1, 0, g_be, "test group again", &n);
  EXPECT(st == SRLM_OK, "sr_nccl_open after an abort: %s", srlm_error_message());
  if (st == SRLM_OK) EXPECT_EQ_INT(sr_nccl_allreduce(n, d, d, 4, true, 0), SRLM_OK);
  sr_nccl_close(n, true);
  srlm_backend_free(g_be, d);
  free(hs);
  free(hr);
  free(want);
}

/* 2. the public interface, in place, on NCCL */
static void test_interface(srlm_comm *c) {
  srlm_comm_set_backend(c, g_be);
  EXPECT_EQ_INT(srlm_comm_open_transport(c, SRLM_COMM_TRANSPORT_AUTO), SRLM_OK);
  EXPECT_EQ_INT(srlm_comm_transport_of(c, SRLM_COMM_GROUP_LEARNERS), SRLM_COMM_MPI); /* one rank: nothing to exchange */
  srlm_comm_close_transport(c, SRLM_OK);
  srlm_status st = srlm_comm_open_transport(c, SRLM_COMM_TRANSPORT_NCCL);
  EXPECT(st == SRLM_OK, "open_transport(nccl): %s", srlm_error_message());
  if (st != SRLM_OK) return;
  EXPECT_EQ_INT(srlm_comm_transport_of(c, SRLM_COMM_GROUP_LEARNERS), SRLM_COMM_NCCL);
  EXPECT_EQ_INT(srlm_comm_transport_of(c, SRLM_COMM_GROUP_BCAST), SRLM_COMM_NCCL);

  const int64_t N = ((int64_t)64 << 20) / 4 + 4099; /* just over one 64 MiB bucket */
  const size_t bytes = (size_t)(N + GUARD) * sizeof(float);
  float *h = srlm_xmalloc(bytes);
  for (int64_t i = 0; i < N + GUARD; i++) h[i] = value(i, 11);
  float *d = dev_from(h, N);
  EXPECT(d != NULL, "device array: %s", srlm_error_message());
  if (!d) {
    free(h);
    return;
  }
  for (int op = 0; op < SRLM_COMM_REDUCE_COUNT; op++)
    for (int order = 0; order < 2; order++) {
      char what[64];
      snprintf(what, sizeof what, "allreduce_grads %s %s", op ? "mean" : "sum", order ? "fast" : "deterministic");
      st = srlm_comm_allreduce_grads(c, d, N, (srlm_comm_reduce)op, (srlm_comm_order)order);
      EXPECT(st == SRLM_OK, "%s: %s", what, srlm_error_message());
      expect_dev(what, d, h, N);
    }
  int64_t version = 41;
  st = srlm_comm_bcast_weights(c, d, N, SRLM_F32, &version, (size_t)1 << 20); /* 65 buckets, the last one short */
  EXPECT(st == SRLM_OK, "bcast_weights: %s", srlm_error_message());
  EXPECT_EQ_INT(version, 41);
  expect_dev("bcast_weights", d, h, N);
  const int64_t bounds[2] = {0, N};
  st = srlm_comm_reduce_scatter_grads(c, d, N, bounds);
  EXPECT(st == SRLM_OK, "reduce_scatter_grads: %s", srlm_error_message());
  expect_dev("reduce_scatter_grads", d, h, N);
  st = srlm_comm_allgather_shards(c, d, N, SRLM_F32, bounds);
  EXPECT(st == SRLM_OK, "allgather_shards: %s", srlm_error_message());
  expect_dev("allgather_shards", d, h, N);
  /* a bf16 model's weights: the broadcast and the all-gather of 2-byte elements (the first
     half of the array as N bf16 values) move bytes, bit for bit, the rest untouched */
  st = srlm_comm_bcast_weights(c, d, N, SRLM_BF16, &version, (size_t)1 << 20);
  EXPECT(st == SRLM_OK, "bcast_weights bf16: %s", srlm_error_message());
  expect_dev("bcast_weights bf16", d, h, N);
  st = srlm_comm_allgather_shards(c, d, N, SRLM_BF16, bounds);
  EXPECT(st == SRLM_OK, "allgather_shards bf16: %s", srlm_error_message());
  expect_dev("allgather_shards bf16", d, h, N);
  /* the overlapped reduce: 65 buckets of 1 MiB, each queued on the NCCL stream after an event
     of the backend's stream (no host wait) as the stages announce them, then one wait */
  for (int zero = 0; zero < 2; zero++) {
    const char *what = zero ? "overlapped reduce-scatter" : "overlapped all-reduce";
    st = srlm_comm_reduce_begin(c, d, N, zero ? bounds : NULL, (size_t)1 << 20);
    for (int64_t from = N - 1; st == SRLM_OK && from > 0; from -= N / 7) st = srlm_comm_reduce_ready(c, from);
    if (st == SRLM_OK) st = srlm_comm_reduce_end(c);
    EXPECT(st == SRLM_OK, "%s: %s", what, srlm_error_message());
    expect_dev(what, d, h, N);
  }
  EXPECT_EQ_INT(srlm_comm_allreduce_grads(c, d, 0, SRLM_COMM_SUM, SRLM_COMM_FAST), SRLM_OK); /* empty */
  srlm_comm_close_transport(c, SRLM_OK);
  EXPECT_EQ_INT(srlm_comm_transport_of(c, SRLM_COMM_GROUP_LEARNERS), SRLM_COMM_MPI);
  srlm_comm_set_backend(c, NULL);
  srlm_backend_free(g_be, d);
  free(h);
}

int main(int argc, char **argv) {
  if (srlm_backend_register(srlm_backend_cuda_ops()) != SRLM_OK) {
    fprintf(stderr, "test_comm_nccl: %s\n", srlm_error_message());
    return 1;
  }
  srlm_comm *c = NULL;
  if (srlm_comm_init(&argc, &argv, SRLM_COMM_MPI, &c) != SRLM_OK) {
    fprintf(stderr, "test_comm_nccl: %s\n", srlm_error_message());
    return 1;
  }
  srlm_comm_roles roles = {1, 1, 1, true};
  srlm_status st = srlm_comm_assign_roles(c, &roles);
  if (st == SRLM_OK && srlm_comm_size(c) != 1)
    st = srlm_error(SRLM_ERR_CONFIG, "test_comm_nccl", "runs as one rank (one GPU allows one NCCL rank), not %d",
                    srlm_comm_size(c));
  if (st == SRLM_OK) st = srlm_backend_open("cuda", 0, &g_be);
  if (st != SRLM_OK) {
    fprintf(stderr, "test_comm_nccl: %s\n", srlm_error_message());
    srlm_comm_free(c);
    return 1;
  }
  char ver[32];
  sr_nccl_version(ver, sizeof ver);
  fprintf(stderr, "test_comm_nccl: NCCL %s, one rank on device %d\n", ver, g_be->device);
  test_layer();
  test_interface(c);
  EXPECT_EQ_INT(srlm_backend_close(g_be), SRLM_OK);
  srlm_comm_free(c);
  if (!g_test_failures) printf("test_comm_nccl: OK\n");
  TEST_MAIN_END();
}
