/* srlm comm, the NCCL transport (interface and rules in comm_nccl.h; which groups use it is
 * decided in comm.c). Built only with CUDA: src/CMakeLists.txt compiles *_nccl.c files of a
 * module when SRLM_HAVE_CUDA is on.
 *
 * Streams. A communicator has a stream of its own. A collective first waits for the
 * backend's queued work (srlm_backend_sync: the buffers hold what the ops wrote, and a
 * kernel error recorded there is reported before anything moves), queues its NCCL calls on
 * its stream and waits for that stream from the host, so the backend's next op sees the
 * result. The exception is the reduce overlapped with the backward (sr_nccl_bucket_start):
 * its buckets are ordered after the backend's stream by an event, not by a host wait, and
 * only sr_nccl_bucket_finish waits for them.
 *
 * Never a hang. The communicators are non-blocking (config.blocking = 0): a call may return
 * ncclInProgress, and then the communicator's state is polled (ncclCommGetAsyncError) until
 * it settles before the next call, as NCCL requires. A wait (initialization, a queued
 * collective) polls the stream and the communicator's asynchronous error, sleeping 20 us
 * doubling to 1 ms in between, and checks the rank watchdog (watchdog.h) like comm.c's MPI
 * waits. An NCCL error (a peer's process died, a network error, ...) aborts the
 * communicator at once (ncclCommAbort ends its kernels, so freeing memory afterwards does
 * not wait on them) and comes back as an SRLM_ERR_LIB error; the role's top level then ends
 * the job with its message (srlm_comm_abort). A peer that fails outside NCCL ends the job
 * with MPI_Abort, which ends this rank's wait too.
 */
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm_nccl.h"
#include "watchdog.h"

_Static_assert(SR_NCCL_ID_BYTES == NCCL_UNIQUE_ID_BYTES, "SR_NCCL_ID_BYTES must be NCCL_UNIQUE_ID_BYTES");
_Static_assert(SR_NCCL_UUID_BYTES == sizeof(cudaUUID_t), "SR_NCCL_UUID_BYTES must be sizeof(cudaUUID_t)");

#define DEFAULT_BUCKET_FLOATS ((int64_t)(64 << 20) / (int64_t)sizeof(float))
#define FINALIZE_SECONDS 10.0 /* a healthy close that takes longer is aborted */

#define SRLM_CUDA_RT(call) SRLM_LIB_CALL("CUDA", cudaError_t, call, srlm_rc == cudaSuccess, cudaGetErrorString(srlm_rc))

struct sr_nccl {
  ncclComm_t comm;     /* NULL once aborted or closed */
  cudaStream_t stream; /* every NCCL call of this communicator */
  srlm_backend *be;    /* whose device and memory */
  int rank, nranks;
  cudaEvent_t ready;   /* recorded on the backend's stream before an overlapped bucket; NULL until then */
  float *scratch;      /* (scratch_n) a bucket for receivers that keep nothing (bcast recv NULL) */
  int64_t scratch_n;
  /* point-to-point bytes: staging buffers (device memory) and the stream their host copies use */
  struct { void *p; size_t bytes; bool busy; } *pool;
  int n_pool;
  cudaStream_t copy; /* NULL until the first point-to-point message */
  char label[48];
};

int sr_nccl_rank(const sr_nccl *n) { return n->rank; }
int sr_nccl_size(const sr_nccl *n) { return n->nranks; }

void sr_nccl_version(char *out, size_t n) {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) {
    snprintf(out, n, "unknown");
    return;
  }
  /* NCCL_VERSION(X, Y, Z) = X * 10000 + Y * 100 + Z since 2.9 */
  snprintf(out, n, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
}

srlm_status sr_nccl_device_uuid(int device, unsigned char uuid[SR_NCCL_UUID_BYTES]) {
  struct cudaDeviceProp prop;
  SRLM_CUDA_RT(cudaGetDeviceProperties(&prop, device));
  memcpy(uuid, prop.uuid.bytes, SR_NCCL_UUID_BYTES);
  return SRLM_OK;
}

srlm_status sr_nccl_unique_id(unsigned char id[SR_NCCL_ID_BYTES]) {
  ncclUniqueId uid;
  SRLM_LIB_CALL("NCCL", ncclResult_t, ncclGetUniqueId(&uid), srlm_rc == ncclSuccess, ncclGetErrorString(srlm_rc));
  memcpy(id, uid.internal, SR_NCCL_ID_BYTES);
  return SRLM_OK;
}

/* ---- waiting -------------------------------------------------------------- */

/* Ends the communicator after an error: its kernels in flight stop, nothing waits on it. */
static void kill_comm(sr_nccl *n) {
  if (n->comm) (void)ncclCommAbort(n->comm);
  n->comm = NULL;
}

/* The error of a failed NCCL call (code rc) as SRLM_ERR_LIB, with NCCL's own last message;
 * the communicator is aborted first. */
static srlm_status nccl_fail(sr_nccl *n, ncclResult_t rc, const char *stmt, const char *file, int line) {
  char desc[640];
  const char *last = n->comm ? ncclGetLastError(n->comm) : NULL;
  snprintf(desc, sizeof desc, "%s%s%s (%s, NCCL rank %d of %d, device %d)", ncclGetErrorString(rc),
           last && last[0] ? ": " : "", last && last[0] ? last : "", n->label, n->rank, n->nranks, n->be->device);
  kill_comm(n);
  return srlm_lib_error("NCCL", stmt, (long long)rc, desc, file, line);
}

/* After a call on the non-blocking communicator: ncclInProgress means NCCL is still issuing
 * it; poll the communicator until its state settles (success or an error). */
static ncclResult_t settle(sr_nccl *n, ncclResult_t rc) {
  long ns = 20000;
  while (rc == ncclInProgress && n->comm) {
    sr_watchdog_nap(&ns, 1000000);
    ncclResult_t q = ncclCommGetAsyncError(n->comm, &rc);
    if (q != ncclSuccess) return q;
  }
  return rc;
}

/* An NCCL call on communicator n, settled; on failure the error (and the abort) above. */
#define SRLM_NCCL(n, call)                                                                        \
  do {                                                                                            \
    if (!(n)->comm)                                                                               \
      return srlm_error(SRLM_ERR_INTERNAL, (n)->label, "the NCCL communicator was aborted after an earlier error"); \
    ncclResult_t srlm_rc = settle((n), (call));                                                   \
    if (srlm_rc != ncclSuccess) return nccl_fail((n), srlm_rc, #call, __FILE__, __LINE__);        \
  } while (0)

/* Waits until the stream has run everything queued, polling the communicator's asynchronous
 * error meanwhile (a failed peer or link shows up there, not on the stream). */
static srlm_status wait_stream(sr_nccl *n, const char *what) {
  long ns = 20000;
  for (;;) {
    cudaError_t q = cudaStreamQuery(n->stream);
    if (q == cudaSuccess) break;
    if (q != cudaErrorNotReady) {
      kill_comm(n);
      return srlm_lib_error("CUDA", "cudaStreamQuery(NCCL stream)", (long long)q, cudaGetErrorString(q), __FILE__,
                            __LINE__);
    }
    ncclResult_t state = ncclSuccess, rc = ncclCommGetAsyncError(n->comm, &state);
    if (rc != ncclSuccess) return nccl_fail(n, rc, "ncclCommGetAsyncError", __FILE__, __LINE__);
    if (state != ncclSuccess && state != ncclInProgress) return nccl_fail(n, state, what, __FILE__, __LINE__);
    sr_watchdog_nap(&ns, 1000000);
  }
  /* cudaErrorNotReady of the polls is not an error; anything else recorded since is */
  cudaError_t last = cudaGetLastError();
  if (last != cudaSuccess && last != cudaErrorNotReady) {
    kill_comm(n);
    return srlm_lib_error("CUDA", what, (long long)last, cudaGetErrorString(last), __FILE__, __LINE__);
  }
  return SRLM_OK;
}

/* Before a collective: the right device, a live communicator, the backend's work done. */
static srlm_status begin(sr_nccl *n) {
  if (!n->comm) return srlm_error(SRLM_ERR_INTERNAL, n->label, "the NCCL communicator was aborted after an earlier error");
  SRLM_CUDA_RT(cudaSetDevice(n->be->device));
  return srlm_backend_sync(n->be);
}

/* ---- setup ---------------------------------------------------------------- */

srlm_status sr_nccl_open(const unsigned char id[SR_NCCL_ID_BYTES], int nranks, int rank, srlm_backend *be,
                         const char *label, sr_nccl **out) {
  *out = NULL;
  if (!be || be->host_memory || be->device < 0)
    return srlm_error(SRLM_ERR_INTERNAL, label, "NCCL needs a GPU backend's device memory");
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return srlm_error(SRLM_ERR_INTERNAL, label, "NCCL rank %d of %d", rank, nranks);
  SRLM_CUDA_RT(cudaSetDevice(be->device));
  sr_nccl *n = srlm_xcalloc(1, sizeof *n);
  n->be = be;
  n->rank = rank;
  n->nranks = nranks;
  snprintf(n->label, sizeof n->label, "%s", label);
  cudaError_t ce = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
  if (ce != cudaSuccess) {
    free(n);
    return srlm_lib_error("CUDA", "cudaStreamCreateWithFlags(NCCL stream)", (long long)ce, cudaGetErrorString(ce),
                          __FILE__, __LINE__);
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  config.commName = n->label;
  ncclUniqueId uid;
  memcpy(uid.internal, id, SR_NCCL_ID_BYTES);
  ncclResult_t rc = ncclCommInitRankConfig(&n->comm, nranks, uid, rank, &config);
  if (rc == ncclInProgress && !n->comm) rc = ncclInternalError; /* no handle to poll */
  rc = settle(n, rc);
  if (rc != ncclSuccess) {
    srlm_status st = nccl_fail(n, rc, "ncclCommInitRankConfig(blocking = 0)", __FILE__, __LINE__);
    (void)cudaStreamDestroy(n->stream);
    free(n);
    return st;
  }
  *out = n;
  return SRLM_OK;
}

void sr_nccl_close(sr_nccl *n, bool healthy) {
  if (!n) return;
  (void)cudaSetDevice(n->be->device);
  if (n->comm && healthy) {
    /* finalize flushes what the communicator still holds; polled, and bounded: a peer that
       never closes its side must not keep this rank here */
    ncclResult_t rc = ncclCommFinalize(n->comm);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long ns = 20000;
    while (rc == ncclInProgress) {
      clock_gettime(CLOCK_MONOTONIC, &t);
      if ((double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec) > FINALIZE_SECONDS) break;
      sr_watchdog_nap(&ns, 1000000);
      if (ncclCommGetAsyncError(n->comm, &rc) != ncclSuccess) rc = ncclInternalError;
    }
    if (rc == ncclSuccess && ncclCommDestroy(n->comm) == ncclSuccess) n->comm = NULL;
  }
  kill_comm(n); /* an unhealthy close, or a finalize that failed or took too long */
  if (n->scratch) (void)cudaFree(n->scratch);
  for (int i = 0; i < n->n_pool; i++) (void)cudaFree(n->pool[i].p);
  free(n->pool);
  if (n->copy) (void)cudaStreamDestroy(n->copy);
  if (n->ready) (void)cudaEventDestroy(n->ready);
  (void)cudaStreamDestroy(n->stream);
  free(n);
}

/* ---- collectives ---------------------------------------------------------- */

srlm_status sr_nccl_allreduce(sr_nccl *n, const float *send, float *recv, int64_t count, bool mean, int64_t bucket) {
  if (count < 0) return srlm_error(SRLM_ERR_RANGE, n->label, "all-reduce of %lld floats", (long long)count);
  if (bucket <= 0) bucket = DEFAULT_BUCKET_FLOATS;
  SRLM_TRY(begin(n));
  const ncclRedOp_t op = mean ? ncclAvg : ncclSum;
  for (int64_t off = 0; off < count; off += bucket) {
    const size_t cnt = (size_t)(count - off < bucket ? count - off : bucket);
    SRLM_NCCL(n, ncclAllReduce(send + off, recv + off, cnt, ncclFloat32, op, n->comm, n->stream));
  }
  return wait_stream(n, "ncclAllReduce(gradients)");
}

srlm_status sr_nccl_bcast(sr_nccl *n, const void *send, void *recv, int64_t count, size_t esz, int root,
                          int64_t bucket) {
  if (count < 0 || root < 0 || root >= n->nranks || (esz != 2 && esz != 4))
    return srlm_error(SRLM_ERR_RANGE, n->label, "broadcast of %lld elements of %zu bytes from rank %d", (long long)count,
                      esz, root);
  if (!recv && n->rank == root) return srlm_error(SRLM_ERR_INTERNAL, n->label, "the broadcast's root must keep its data");
  if (bucket <= 0) bucket = (int64_t)(DEFAULT_BUCKET_FLOATS * sizeof(float) / esz);
  SRLM_TRY(begin(n));
  const int64_t one = count < bucket ? count : bucket;
  const int64_t one_floats = (int64_t)(((size_t)one * esz + sizeof(float) - 1) / sizeof(float));
  if (!recv && one_floats > n->scratch_n) { /* a receiver that keeps nothing: one bucket of scratch */
    if (n->scratch) SRLM_CUDA_RT(cudaFree(n->scratch));
    n->scratch = NULL;
    n->scratch_n = 0;
    SRLM_CUDA_RT(cudaMalloc((void **)&n->scratch, (size_t)one_floats * sizeof(float)));
    n->scratch_n = one_floats;
  }
  /* bytes: a broadcast copies and never adds, so the element type does not matter */
  for (int64_t off = 0; off < count; off += bucket) {
    const size_t cnt = (size_t)(count - off < bucket ? count - off : bucket);
    char *dst = recv ? (char *)recv + (size_t)off * esz : (char *)n->scratch;
    const char *src = n->rank == root ? (const char *)send + (size_t)off * esz : dst; /* read on the root only */
    SRLM_NCCL(n, ncclBroadcast(src, dst, cnt * esz, ncclUint8, root, n->comm, n->stream));
  }
  return wait_stream(n, "ncclBroadcast(weights)");
}

bool sr_nccl_equal_ranges(const int64_t *bounds, int nranks) {
  for (int j = 1; j < nranks; j++)
    if (bounds[j + 1] - bounds[j] != bounds[1] - bounds[0]) return false;
  return true;
}

static srlm_status check_bounds(const sr_nccl *n, const int64_t *bounds, bool grouped) {
  if (!bounds || bounds[0] != 0)
    return srlm_error(SRLM_ERR_INTERNAL, n->label, "shard bounds must start at 0");
  for (int j = 0; j < n->nranks; j++)
    if (bounds[j + 1] < bounds[j]) return srlm_error(SRLM_ERR_INTERNAL, n->label, "shard bounds decrease at rank %d", j);
  if (!grouped && !sr_nccl_equal_ranges(bounds, n->nranks))
    return srlm_error(SRLM_ERR_INTERNAL, n->label, "unequal shard ranges need the grouped (per owner) collectives");
  return SRLM_OK;
}

/* Closes the NCCL group the caller opened (always, also after a failed call inside it: rc is
 * the calls' result, stmt the call that gave it) and settles it; the first failure's error
 * (the communicator aborted), naming that call or ncclGroupEnd. */
static srlm_status group_end(sr_nccl *n, ncclResult_t rc, const char *stmt) {
  ncclResult_t end = ncclGroupEnd();
  if (rc == ncclSuccess) {
    rc = end;
    stmt = "ncclGroupEnd()";
  }
  rc = settle(n, rc);
  if (rc != ncclSuccess) return nccl_fail(n, rc, stmt, __FILE__, __LINE__);
  return SRLM_OK;
}

/* One NCCL group of per-owner calls (reduce: ncclReduce to owner j; else ncclBroadcast from
 * owner j), each on owner j's range. The group is always closed, also after a failed call. */
static srlm_status grouped_owners(sr_nccl *n, const float *send, float *recv, const int64_t *bounds, bool reduce,
                                  size_t esz) {
  if (!n->comm) return srlm_error(SRLM_ERR_INTERNAL, n->label, "the NCCL communicator was aborted after an earlier error");
  ncclResult_t rc = ncclGroupStart();
  if (rc != ncclSuccess) return nccl_fail(n, rc, "ncclGroupStart()", __FILE__, __LINE__);
  const char *stmt = reduce ? "ncclReduce(gradient shard of owner j)" : "ncclBroadcast(shard of owner j)";
  for (int j = 0; j < n->nranks && rc == ncclSuccess; j++) {
    const size_t cnt = (size_t)(bounds[j + 1] - bounds[j]);
    if (cnt == 0) continue;
    /* recvbuff is written on the root only (reduce); sendbuff is read on the root only (broadcast) */
    if (reduce)
      rc = ncclReduce(send + bounds[j], recv + bounds[j], cnt, ncclFloat32, ncclSum, j, n->comm, n->stream);
    else /* bytes: a broadcast copies, whatever the element type (fp32, or a bf16 compute copy) */
      rc = ncclBroadcast((const char *)send + (size_t)bounds[j] * esz, (char *)recv + (size_t)bounds[j] * esz, cnt * esz,
                         ncclUint8, j, n->comm, n->stream);
  }
  SRLM_TRY(group_end(n, rc, stmt));
  return wait_stream(n, stmt);
}

srlm_status sr_nccl_reduce_scatter(sr_nccl *n, const float *send, float *recv, const int64_t *bounds, bool grouped) {
  SRLM_TRY(check_bounds(n, bounds, grouped));
  SRLM_TRY(begin(n));
  if (grouped) return grouped_owners(n, send, recv, bounds, true, sizeof(float));
  const size_t each = (size_t)(bounds[1] - bounds[0]);
  /* in place when recv == send: NCCL's rule is recvbuff == sendbuff + rank * recvcount */
  SRLM_NCCL(n, ncclReduceScatter(send, recv + bounds[n->rank], each, ncclFloat32, ncclSum, n->comm, n->stream));
  return wait_stream(n, "ncclReduceScatter(gradients)");
}

srlm_status sr_nccl_allgather(sr_nccl *n, const void *send, void *recv, const int64_t *bounds, bool grouped, size_t esz) {
  if (esz != 2 && esz != 4) return srlm_error(SRLM_ERR_INTERNAL, n->label, "all-gather of %zu-byte elements", esz);
  SRLM_TRY(check_bounds(n, bounds, grouped));
  SRLM_TRY(begin(n));
  if (grouped) return grouped_owners(n, send, recv, bounds, false, esz);
  const size_t each = (size_t)(bounds[1] - bounds[0]);
  /* in place when recv == send: sendbuff == recvbuff + rank * sendcount; bytes, as the broadcast */
  SRLM_NCCL(n, ncclAllGather((const char *)send + (size_t)bounds[n->rank] * esz, recv, each * esz, ncclUint8, n->comm,
                             n->stream));
  return wait_stream(n, "ncclAllGather(shards)");
}

/* ---- the reduce overlapped with the backward ------------------------------ */

srlm_status sr_nccl_bucket_start(sr_nccl *n, float *buf, int64_t lo, int64_t count, const int64_t *bounds) {
  if (lo < 0 || count < 0) return srlm_error(SRLM_ERR_RANGE, n->label, "bucket [%lld, +%lld)", (long long)lo, (long long)count);
  if (!n->comm) return srlm_error(SRLM_ERR_INTERNAL, n->label, "the NCCL communicator was aborted after an earlier error");
  if (count == 0) return SRLM_OK;
  SRLM_CUDA_RT(cudaSetDevice(n->be->device));
  void *bs = n->be->ops->native_stream ? n->be->ops->native_stream(n->be) : NULL;
  if (!bs) return srlm_error(SRLM_ERR_INTERNAL, n->label, "backend '%s' has no stream to order the bucket after", n->be->name);
  if (!n->ready) SRLM_CUDA_RT(cudaEventCreateWithFlags(&n->ready, cudaEventDisableTiming));
  /* the gradients of the bucket were written by ops queued on the backend's stream */
  SRLM_CUDA_RT(cudaEventRecord(n->ready, (cudaStream_t)bs));
  SRLM_CUDA_RT(cudaStreamWaitEvent(n->stream, n->ready, 0));
  if (!bounds) {
    SRLM_NCCL(n, ncclAllReduce(buf + lo, buf + lo, (size_t)count, ncclFloat32, ncclSum, n->comm, n->stream));
    return SRLM_OK;
  }
  ncclResult_t rc = ncclGroupStart();
  if (rc != ncclSuccess) return nccl_fail(n, rc, "ncclGroupStart()", __FILE__, __LINE__);
  const char *stmt = "ncclReduce(bucket part of owner j)";
  for (int j = 0; j < n->nranks && rc == ncclSuccess; j++) {
    const int64_t a = bounds[j] > lo ? bounds[j] : lo, b = bounds[j + 1] < lo + count ? bounds[j + 1] : lo + count;
    if (b <= a) continue;
    rc = ncclReduce(buf + a, buf + a, (size_t)(b - a), ncclFloat32, ncclSum, j, n->comm, n->stream);
  }
  return group_end(n, rc, stmt);
}

srlm_status sr_nccl_bucket_finish(sr_nccl *n) {
  if (!n->comm) return srlm_error(SRLM_ERR_INTERNAL, n->label, "the NCCL communicator was aborted after an earlier error");
  SRLM_CUDA_RT(cudaSetDevice(n->be->device));
  SRLM_TRY(wait_stream(n, "ncclAllReduce/ncclReduce(gradient buckets)"));
  return srlm_backend_sync(n->be);
}

/* ---- point-to-point bytes ------------------------------------------------- */

struct sr_nccl_op {
  cudaEvent_t done; /* recorded on the stream after the ncclSend/ncclRecv */
  int slot;         /* the staging buffer (pool index) */
  void *host;       /* a receive's destination; NULL for a send */
  size_t bytes;
};

/* A free staging buffer of at least `bytes` (a new one when none is: 1 MiB, or the next power
 * of two); marked busy. */
static srlm_status pool_get(sr_nccl *n, size_t bytes, int *slot) {
  int best = -1;
  for (int i = 0; i < n->n_pool; i++)
    if (!n->pool[i].busy && n->pool[i].bytes >= bytes && (best < 0 || n->pool[i].bytes < n->pool[best].bytes)) best = i;
  if (best < 0) {
    size_t want = (size_t)1 << 20;
    while (want < bytes) want *= 2;
    void *p = NULL;
    SRLM_CUDA_RT(cudaMalloc(&p, want));
    n->pool = srlm_xrealloc(n->pool, (size_t)(n->n_pool + 1) * sizeof *n->pool);
    best = n->n_pool++;
    n->pool[best].p = p;
    n->pool[best].bytes = want;
  }
  n->pool[best].busy = true;
  *slot = best;
  return SRLM_OK;
}

/* A copy between host and a staging buffer, on the copy stream, waited for: only this copy is
 * queued there, so the wait is bounded (no NCCL call or peer in front of it). */
static srlm_status copy_now(sr_nccl *n, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
  if (!n->copy) SRLM_CUDA_RT(cudaStreamCreateWithFlags(&n->copy, cudaStreamNonBlocking));
  SRLM_CUDA_RT(cudaMemcpyAsync(dst, src, bytes, kind, n->copy));
  SRLM_CUDA_RT(cudaStreamSynchronize(n->copy));
  return SRLM_OK;
}

/* Queues one ncclSend or ncclRecv of the op's staging buffer and its end event. */
static srlm_status p2p_queue(sr_nccl *n, int peer, sr_nccl_op *op, bool send) {
  void *buf = n->pool[op->slot].p;
  if (send)
    SRLM_NCCL(n, ncclSend(buf, op->bytes, ncclUint8, peer, n->comm, n->stream));
  else
    SRLM_NCCL(n, ncclRecv(buf, op->bytes, ncclUint8, peer, n->comm, n->stream));
  SRLM_CUDA_RT(cudaEventRecord(op->done, n->stream));
  return SRLM_OK;
}

static srlm_status p2p_start(sr_nccl *n, int peer, void *host, const void *from, size_t bytes, sr_nccl_op **out) {
  *out = NULL;
  if (!n->comm) return srlm_error(SRLM_ERR_INTERNAL, n->label, "the NCCL communicator was aborted after an earlier error");
  if (peer < 0 || peer >= n->nranks || peer == n->rank)
    return srlm_error(SRLM_ERR_INTERNAL, n->label, "point-to-point peer %d (this is rank %d of %d)", peer, n->rank,
                      n->nranks);
  SRLM_CUDA_RT(cudaSetDevice(n->be->device));
  sr_nccl_op *op = srlm_xcalloc(1, sizeof *op);
  op->host = host;
  op->bytes = bytes;
  op->slot = -1;
  srlm_status st = SRLM_OK;
  cudaError_t ce = cudaEventCreateWithFlags(&op->done, cudaEventDisableTiming);
  if (ce != cudaSuccess) {
    free(op);
    return srlm_lib_error("CUDA", "cudaEventCreateWithFlags(point-to-point)", (long long)ce, cudaGetErrorString(ce),
                          __FILE__, __LINE__);
  }
  st = pool_get(n, bytes ? bytes : 1, &op->slot);
  if (st == SRLM_OK && from && bytes) st = copy_now(n, n->pool[op->slot].p, from, bytes, cudaMemcpyHostToDevice);
  if (st == SRLM_OK) {
    st = p2p_queue(n, peer, op, from != NULL);
    if (st != SRLM_OK) kill_comm(n); /* a queued transfer may still use the staging buffer: nothing reuses it */
  }
  if (st != SRLM_OK) {
    sr_nccl_op_drop(n, op);
    return st;
  }
  *out = op;
  return SRLM_OK;
}

srlm_status sr_nccl_send_bytes(sr_nccl *n, int peer, const void *host, size_t bytes, sr_nccl_op **op) {
  static const char none;
  return p2p_start(n, peer, NULL, host ? host : &none, bytes, op);
}

srlm_status sr_nccl_recv_bytes(sr_nccl *n, int peer, void *host, size_t bytes, sr_nccl_op **op) {
  static char none;
  return p2p_start(n, peer, host ? host : &none, NULL, bytes, op);
}

void sr_nccl_op_drop(sr_nccl *n, sr_nccl_op *op) {
  if (!op) return;
  if (op->slot >= 0) n->pool[op->slot].busy = false;
  (void)cudaEventDestroy(op->done);
  free(op);
}

srlm_status sr_nccl_op_test(sr_nccl *n, sr_nccl_op *op, bool *done) {
  *done = false;
  srlm_status st = SRLM_OK;
  if (!n->comm) {
    st = srlm_error(SRLM_ERR_INTERNAL, n->label, "the NCCL communicator was aborted after an earlier error");
  } else {
    (void)cudaSetDevice(n->be->device);
    cudaError_t q = cudaEventQuery(op->done);
    if (q == cudaErrorNotReady) {
      if (cudaPeekAtLastError() == cudaErrorNotReady) (void)cudaGetLastError(); /* the poll's, not a launch's */
      ncclResult_t state = ncclSuccess, rc = ncclCommGetAsyncError(n->comm, &state);
      if (rc != ncclSuccess) st = nccl_fail(n, rc, "ncclCommGetAsyncError", __FILE__, __LINE__);
      else if (state != ncclSuccess && state != ncclInProgress)
        st = nccl_fail(n, state, op->host ? "ncclRecv(shard payload)" : "ncclSend(shard payload)", __FILE__, __LINE__);
      if (st == SRLM_OK) return SRLM_OK;
    } else if (q != cudaSuccess) {
      kill_comm(n);
      st = srlm_lib_error("CUDA", "cudaEventQuery(point-to-point)", (long long)q, cudaGetErrorString(q), __FILE__,
                          __LINE__);
    } else if (op->host && op->bytes) {
      st = copy_now(n, op->host, n->pool[op->slot].p, op->bytes, cudaMemcpyDeviceToHost);
      if (st != SRLM_OK) kill_comm(n);
    }
  }
  sr_nccl_op_drop(n, op);
  if (st == SRLM_OK) *done = true;
  return st;
}

srlm_status sr_nccl_connect_all(sr_nccl *n) {
  if (n->nranks < 2) return SRLM_OK;
  SRLM_TRY(begin(n));
  int slot = -1;
  SRLM_TRY(pool_get(n, (size_t)(2 * n->nranks), &slot));
  char *buf = n->pool[slot].p; /* [0]: the byte sent to every peer; [nranks + p]: the byte from peer p */
  ncclResult_t rc = ncclGroupStart();
  if (rc != ncclSuccess) return nccl_fail(n, rc, "ncclGroupStart()", __FILE__, __LINE__);
  const char *stmt = "ncclSend/ncclRecv(connect every peer)";
  for (int p = 0; p < n->nranks && rc == ncclSuccess; p++) {
    if (p == n->rank) continue;
    rc = ncclSend(buf, 1, ncclUint8, p, n->comm, n->stream);
    if (rc == ncclSuccess) rc = ncclRecv(buf + n->nranks + p, 1, ncclUint8, p, n->comm, n->stream);
  }
  SRLM_TRY(group_end(n, rc, stmt));
  SRLM_TRY(wait_stream(n, stmt));
  n->pool[slot].busy = false;
  return SRLM_OK;
}
