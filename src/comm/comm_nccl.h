/* srlm comm, the NCCL transport: one NCCL communicator over a group of ranks that each own
 * a distinct GPU, and the float collectives of comm.h on device memory (comm_nccl.c).
 * Internal to src/comm (and to tests/gpu/test_comm_nccl.c, which checks this layer out of
 * place); built only with CUDA (SRLM_HAVE_NCCL=1), so comm.c calls it under that macro.
 * comm.c decides which groups use it and exchanges the unique id over MPI; everything here
 * is local to this rank.
 *
 * Buffers are device memory of the backend given to sr_nccl_open, counted in floats (the
 * broadcast: in elements of the size it is given).
 * Out of place unless send == recv. Every collective waits for the backend's queued work
 * first and returns when its result is in recv (the host waited for the NCCL stream), so
 * the backend's next op may read it. Collectives are calls every rank of the group makes
 * alike (same counts, bounds and bucket), as with MPI.
 *
 * Errors come back as SRLM_ERR_LIB naming the NCCL call, NCCL's message, the group, rank
 * and device. After an NCCL error the communicator is aborted at once (its kernels in
 * flight end) and every later call on it fails: the role's top level ends the job.
 */
#ifndef SRLM_COMM_NCCL_H
#define SRLM_COMM_NCCL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "srlm/backend.h"
#include "srlm/core.h"

#define SR_NCCL_ID_BYTES 128 /* NCCL_UNIQUE_ID_BYTES (checked in comm_nccl.c) */
#define SR_NCCL_UUID_BYTES 16

typedef struct sr_nccl sr_nccl;

/* "2.28.9": the NCCL this process runs with (ncclGetVersion). */
void sr_nccl_version(char *out, size_t n);

/* The UUID of GPU `device`: tells GPUs apart across processes and nodes (an index does not). */
srlm_status sr_nccl_device_uuid(int device, unsigned char uuid[SR_NCCL_UUID_BYTES]);

/* A new unique id (ncclGetUniqueId): the group's first rank makes it, the others get it. */
srlm_status sr_nccl_unique_id(unsigned char id[SR_NCCL_ID_BYTES]);

/* Joins the communicator `id` as rank `rank` of `nranks`, on be's device (be->device of the
 * "cuda" backend), non-blocking (config.blocking = 0): the initialization is polled, never
 * waited on blindly. `label` names the group in messages ("learner group"). */
srlm_status sr_nccl_open(const unsigned char id[SR_NCCL_ID_BYTES], int nranks, int rank, srlm_backend *be,
                         const char *label, sr_nccl **out);

/* Frees the communicator. healthy: every rank of the group closes it too (ncclCommFinalize,
 * polled for at most a few seconds, then ncclCommDestroy); otherwise, or when finalizing
 * fails or takes longer, ncclCommAbort, which waits for nobody. NULL is a no-op. */
void sr_nccl_close(sr_nccl *n, bool healthy);

int sr_nccl_rank(const sr_nccl *n);
int sr_nccl_size(const sr_nccl *n);

/* recv = the sum over the ranks of send (mean: the sum / nranks, ncclAvg), count floats,
 * in buckets of `bucket` floats (<= 0: 64 MiB), each an ncclAllReduce queued on the stream. */
srlm_status sr_nccl_allreduce(sr_nccl *n, const float *send, float *recv, int64_t count, bool mean, int64_t bucket);

/* recv = rank root's send (count elements of esz bytes, 4 or 2: the fp32 or bf16 weights;
 * only the root reads send), in buckets of `bucket` elements (<= 0: 64 MiB), each one
 * ncclBroadcast of bytes. recv NULL: this rank takes part but keeps nothing (a receiver that
 * cannot take the data: every bucket lands in a scratch bucket of its own). */
srlm_status sr_nccl_bcast(sr_nccl *n, const void *send, void *recv, int64_t count, size_t esz, int root,
                          int64_t bucket);

/* ZeRO-1. bounds: nranks + 1 offsets, bounds[0] = 0, non-decreasing; rank j owns
 * [bounds[j], bounds[j + 1]). recv and send are whole arrays of bounds[nranks] floats.
 * reduce_scatter: recv's range of this rank = the sum over the ranks of send's same range;
 *   the rest of recv is not written. Equal ranges (grouped false) use one ncclReduceScatter;
 *   grouped: one ncclReduce per owner (root j, its range) in an NCCL group, any bounds.
 * allgather: recv's range j = rank j's send range j, for every j; equal ranges (grouped false)
 *   use one ncclAllGather; grouped: one ncclBroadcast per owner in an NCCL group.
 * grouped false with unequal ranges is an SRLM_ERR_INTERNAL error. */
srlm_status sr_nccl_reduce_scatter(sr_nccl *n, const float *send, float *recv, const int64_t *bounds, bool grouped);
/* allgather moves elements of esz bytes (4: fp32; 2: a bf16 model's compute copy), as bytes. */
srlm_status sr_nccl_allgather(sr_nccl *n, const void *send, void *recv, const int64_t *bounds, bool grouped, size_t esz);

/* The reduce overlapped with the backward (comm.h, "Overlapped reduce"): one bucket
 * [lo, lo + count) of buf (device memory, in place) queued on this communicator's stream
 * after the backend's work queued so far (an event recorded on the backend's stream, which
 * the NCCL stream waits for: the backward goes on meanwhile), without waiting for it.
 * bounds NULL: ncclAllReduce (sum) of the bucket; else (ZeRO-1, nranks + 1 offsets) one
 * ncclReduce per owner j of the bucket's part inside [bounds[j], bounds[j + 1]), in an NCCL
 * group, so each owner's range ends up summed. Buckets queue in call order on every rank. */
srlm_status sr_nccl_bucket_start(sr_nccl *n, float *buf, int64_t lo, int64_t count, const int64_t *bounds);
/* Waits for every bucket queued (polling NCCL's asynchronous error, as every wait here) and
 * for the backend (its kernel errors), so the backend's next op reads the sums. */
srlm_status sr_nccl_bucket_finish(sr_nccl *n);

/* Whether every rank's range of bounds has the same length (ncclReduceScatter/AllGather fit). */
bool sr_nccl_equal_ranges(const int64_t *bounds, int nranks);

/* ---- point-to-point bytes: rollout-shard payloads (p2p.h) ----------------------------
 *
 * One message of `bytes` host bytes to or from NCCL rank `peer`, through device memory of
 * the communicator (a pool of staging buffers, grown and never freed before close: a
 * cudaFree would synchronize the device under a decode). A send copies the host bytes into
 * a staging buffer (a copy stream of its own, waited for: the host may free them after the
 * call) and queues ncclSend on the communicator's stream; a receive queues ncclRecv into a
 * staging buffer; an event after each marks its end. Sends and receives run in the order
 * they were queued, as every NCCL call on one stream: the caller (p2p.c's handshake) queues a
 * send only when its receiver has queued the receive. sr_nccl_op_test polls: not done yet
 * (the communicator's asynchronous error checked meanwhile), or done, when a receive's bytes
 * are copied to its host buffer, the staging buffer goes back to the pool and *op is freed. */
typedef struct sr_nccl_op sr_nccl_op;
/* NCCL connects point-to-point peers lazily, inside the first send or receive, and that setup
 * waits for the peer's own first call: a receive queued before its clear-to-send (p2p.h) would
 * wait there for a sender that waits for the clear-to-send. So the communicator connects every
 * pair at once, both ways, with one byte each in one NCCL group: collective (every rank calls
 * it right after sr_nccl_open), before any message. */
srlm_status sr_nccl_connect_all(sr_nccl *n);
srlm_status sr_nccl_send_bytes(sr_nccl *n, int peer, const void *host, size_t bytes, sr_nccl_op **op);
/* host must stay valid until the op is done. */
srlm_status sr_nccl_recv_bytes(sr_nccl *n, int peer, void *host, size_t bytes, sr_nccl_op **op);
/* *done false: still running; true: finished and freed (*op is then dangling). An error also
 * frees the op; the communicator is aborted (as every NCCL error here). */
srlm_status sr_nccl_op_test(sr_nccl *n, sr_nccl_op *op, bool *done);
/* Frees an op that will never be tested again (after an error elsewhere: the communicator is
 * being aborted, so its staging buffer is not reused). */
void sr_nccl_op_drop(sr_nccl *n, sr_nccl_op *op);

#endif
