/* srlm comm: every communicator of a job, and every byte that moves between roles.
 *
 * Roles. A job has three roles: generators sample answers, judges score them,
 * learners train. Either every rank plays all three in turn over its own shard
 * (colocated: roles.colocate = true, or a job of one rank, e.g. `srlm train` without
 * mpirun), or each rank plays one role, by the counts roles.learners, roles.generators,
 * roles.judges, which must each be >= 1 and add up to the world size.
 *
 * Rank layout (separate roles): learners first, then generators, then judges, each
 * block in world-rank order. Learner rank 0 is world rank 0: it prints progress,
 * writes checkpoints and is the root of the weight broadcast.
 *   mpirun -np 4 with learners 1, generators 2, judges 1:
 *     world rank   role        role rank   learner group   broadcast comm
 *     0            learner     0           rank 0          rank 0 (root)
 *     1            generator   0           -               rank 1
 *     2            generator   1           -               rank 2
 *     3            judge       0           -               rank 3
 *   mpirun -np 5 with learners 2, generators 2, judges 1:
 *     0 learner 0, 1 learner 1, 2 generator 0, 3 generator 1, 4 judge 0;
 *     learner group {0, 1}; broadcast comm {0, 2, 3, 4} (learner 1 keeps its own
 *     weights: learners apply the same all-reduced gradients and stay identical).
 * Colocated: every rank is rank r of every role; the learner group and the broadcast
 * comm are the whole world.
 *
 * Communicators (created by srlm_comm_assign_roles, freed by srlm_comm_free):
 *   world          all ranks (a duplicate of MPI_COMM_WORLD)
 *   per role       the ranks of one role (a rank outside the role has none)
 *   learner group  the learners: gradient all-reduce
 *   broadcast      learner rank 0 + every generator and judge: weight broadcast
 *
 * Errors. Invariant 4 of DESIGN.md: a failure on one rank becomes a decision of all
 * ranks. Two tools:
 *   - srlm_comm_agree(c, st): every rank passes its local status; all learn whether
 *     any failed, and every rank returns the first failing rank's error (its code and
 *     message, prefixed "rank R (role)"). Call it before a collective that a failed
 *     rank would not join, then every rank can stop cleanly together.
 *   - srlm_comm_abort(c, st): the role's top level prints this rank's error and ends
 *     the whole job with MPI_Abort (never exit() on one rank). srlm_comm_init installs
 *     an abort hook, so an SRLM_CHECK failure anywhere also ends every rank.
 * A rank that dies (signal, exit without MPI_Finalize) makes mpirun end the job, so no
 * rank hangs on a dead peer. Errors of srlm_comm_assign_roles depend only on the
 * config and the world size, so they are the same on every rank: the top level may
 * print them on rank 0 and end every rank with srlm_comm_free and exit status 2.
 *
 * Determinism of the gradient all-reduce. MPI_Allreduce on floats does not fix the
 * order of the additions: the algorithm (and so the rounding) depends on the message
 * size, the number of ranks and the network, so sums can differ in the last bits
 * between layouts and transports. SRLM_COMM_DETERMINISTIC sums in learner-rank order
 * (((g0 + g1) + g2) + ...) for every element, the same for every MPI algorithm:
 * each learner owns a 1/L slice, receives that slice from every learner
 * (MPI_Alltoallv), sums it in rank order and the slices are gathered back
 * (MPI_Allgatherv). It moves the same bytes as a ring all-reduce and needs a second
 * buffer of n floats; srlm uses it by default. With one learner both are no-ops.
 * On NCCL (below) both orders are NCCL's ncclAllReduce: its order of additions is fixed by
 * the topology, the rank count, the message size and NCCL's version (its algorithm and
 * protocol choice), so the same job on the same layout and software gives the same bits
 * run after run, but NOT the bits of the MPI learner-rank chain, and another layout (GPU
 * count, nodes, NVLink or network) may round differently. This is NCCL's behaviour, not a
 * promise srlm checks on several GPUs (one GPU was all it was tested on); NCCL_ALGO=Ring
 * pins the algorithm where a tuning change is a concern. The same holds for ZeRO-1 on
 * NCCL: its reduce-scatter sums in NCCL's order, which need not be the all-reduce's, so
 * sharded and unsharded NCCL runs agree within float re-association, not bit for bit.
 *
 * Backends. The handle hides the transport. Control (message headers, agree, abort, the
 * doubles of a training step) is always MPI. The float buffers of the weight broadcast, the
 * gradient all-reduce and ZeRO-1 are backend memory (backend.h) and move per group (the
 * learner group; the weight-broadcast group) by the transport srlm_comm_open_transport
 * chose (run.comm: auto, mpi, nccl); so do the bytes of rollout shards, over the third group
 * (the world of a separate-roles job; "Point-to-point" below):
 *   NCCL  every rank of the group runs the cuda backend on a GPU of its own (their UUIDs,
 *         exchanged over MPI, all differ): device memory moves GPU to GPU (ncclAllReduce,
 *         ncclBroadcast in buckets; ncclReduceScatter/ncclAllGather for equal ZeRO-1
 *         ranges, one ncclReduce/ncclBroadcast per owner range otherwise). Built with CUDA
 *         only. Communicators are non-blocking and every wait polls NCCL's asynchronous
 *         error, so a failed peer or link comes back as an error, never a hang. The
 *         gradient reduce overlapped with the backward (below) is the one collective not
 *         preceded by a host wait for the backend: its buckets follow the compute stream
 *         through an event.
 *   MPI   otherwise (a CPU run, cuda-sim, several ranks sharing a GPU): device memory is
 *         staged through pinned host buffers of the backend, host backends go in place.
 * auto picks NCCL for every group that can use it (a group of one rank stays on MPI: it has
 * nothing to exchange); nccl requires it (a group that cannot is a config error); mpi never
 * uses it. Rank 0 prints each group's choice and why. Role code calls only this interface,
 * so the transport changes nothing in src/roles beyond srlm_comm_progress between decode steps.
 *
 * Waiting. Every wait (receive, broadcast, barrier, all-reduce) polls the request and
 * sleeps in between (50 us doubling to 2 ms) instead of MPI's busy polling, so an idle
 * rank leaves its core to the ranks that work: roles take turns, and small jobs run
 * more ranks than cores.
 *
 * Threads: one handle is used by one thread (MPI is initialized with
 * MPI_THREAD_FUNNELED; OpenMP threads inside ops never call comm).
 */
#ifndef SRLM_COMM_H
#define SRLM_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "srlm/backend.h"
#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srlm_comm srlm_comm;

typedef enum srlm_comm_backend { SRLM_COMM_MPI = 0, SRLM_COMM_NCCL } srlm_comm_backend;

/* run.comm: which transport the float collectives of a group may use (see "Backends"). */
typedef enum srlm_comm_transport {
  SRLM_COMM_TRANSPORT_AUTO = 0, /* NCCL where the group can use it, else MPI */
  SRLM_COMM_TRANSPORT_MPI,
  SRLM_COMM_TRANSPORT_NCCL,     /* NCCL for every group, or a config error */
  SRLM_COMM_TRANSPORT_COUNT
} srlm_comm_transport;

/* The groups whose float collectives move device memory. */
typedef enum srlm_comm_group {
  SRLM_COMM_GROUP_LEARNERS = 0, /* gradient all-reduce, ZeRO-1 */
  SRLM_COMM_GROUP_BCAST,        /* weight broadcast: learner 0 + generators + judges (fp32 or bf16) */
  SRLM_COMM_GROUP_SHARDS,       /* separate roles: every rank, the bytes of rollout shards ("Point-to-point") */
  SRLM_COMM_GROUP_COUNT
} srlm_comm_group;

typedef enum srlm_role { SRLM_ROLE_LEARNER = 0, SRLM_ROLE_GENERATOR, SRLM_ROLE_JUDGE, SRLM_ROLE_COUNT } srlm_role;

/* "learner", "generator", "judge". */
const char *srlm_role_name(srlm_role role);

/* The role counts of the config (roles.* in config.h). */
typedef struct srlm_comm_roles {
  int learners;
  int generators;
  int judges;
  bool colocate;
} srlm_comm_roles;

/* ---- setup -------------------------------------------------------------- */

/* Initializes MPI if nobody has (argc/argv may be NULL), or joins an MPI that the
 * caller initialized. A process that no launcher started (no mpirun/srun environment)
 * and whose caller did not initialize MPI is a job of one: rank 0 of 1, colocated, and
 * MPI is never called (every collective is then a local no-op or copy). Creates the world
 * communicator, installs the abort hook and sets the log context to this rank. backend
 * must be SRLM_COMM_MPI (the control plane; SRLM_ERR_UNSUPPORTED otherwise): NCCL is chosen
 * per group later, by srlm_comm_open_transport. */
srlm_status srlm_comm_init(int *argc, char ***argv, srlm_comm_backend backend, srlm_comm **out);

/* Splits the world into roles (the layout above) and creates every communicator. A count
 * mismatch is an SRLM_ERR_CONFIG error naming roles.* and the world size. Collective
 * over the world; call once. Sets the log context role ("learner", ..., or "colocated"). */
srlm_status srlm_comm_assign_roles(srlm_comm *c, const srlm_comm_roles *roles);

/* Frees the communicators and finalizes MPI if srlm_comm_init initialized it. Collective
 * (every rank calls it). NULL is a no-op. */
void srlm_comm_free(srlm_comm *c);

/* The backend instance whose memory the float buffers of the weight broadcast and the
 * gradient all-reduce live in (default: the CPU backend, host memory). A rank sets it
 * once, when it has opened its backend; the handle does not own it. */
void srlm_comm_set_backend(srlm_comm *c, srlm_backend *be);

/* ---- transport of the float collectives ---------------------------------- */

/* What a rank tells the others about its memory (srlm_comm_open_transport). */
typedef struct srlm_comm_device {
  char backend[16];       /* the backend's name: "cpu", "cuda-sim", "cuda" ("" = none set: the CPU) */
  int device;             /* its GPU index on its node; -1 for none */
  unsigned char uuid[16]; /* its GPU's UUID (cuda only; zeros otherwise) */
} srlm_comm_device;

/* The decision for one group (pure: the same inputs give the same answer on every rank).
 * devs: every world rank's device (indexed by world rank); ranks: the group's n world ranks.
 * *out = SRLM_COMM_NCCL when every member runs "cuda" with a distinct UUID and want is nccl,
 * or auto with n > 1; else SRLM_COMM_MPI. why: a short reason for the log ("ranks 1 and 2
 * share one GPU (...)"). want nccl where NCCL cannot be used: SRLM_ERR_CONFIG naming
 * run.comm, `group` and the reason. */
srlm_status srlm_comm_choose_transport(srlm_comm_transport want, const char *group, const srlm_comm_device *devs,
                                       const int *ranks, int n, srlm_comm_backend *out, char *why, size_t why_len);

/* Chooses each group's transport and opens its NCCL communicator where it uses NCCL (a
 * unique id made by the group's first rank and broadcast over MPI; ncclCommInitRankConfig,
 * non-blocking). Call after srlm_comm_set_backend, collective over the world (every rank,
 * once); without it every group uses MPI. Rank 0 logs the choices. Config errors (want nccl
 * where a group cannot, or in a build without CUDA) are the same on every rank. An NCCL
 * failure on one rank is that rank's error: its top level ends the job (srlm_comm_abort),
 * which also ends the others' waits. */
srlm_status srlm_comm_open_transport(srlm_comm *c, srlm_comm_transport want);

/* Closes the NCCL communicators, before the backend closes. st: the caller's status; SRLM_OK
 * (every rank of a group closes it too) finalizes them (ncclCommFinalize, at most a few
 * seconds), an error aborts them locally (ncclCommAbort: waits for nobody). The groups are
 * MPI afterwards. srlm_comm_set_backend with another backend and srlm_comm_free abort what is
 * still open. */
void srlm_comm_close_transport(srlm_comm *c, srlm_status st);

/* SRLM_COMM_NCCL when this rank's group g moves its floats with NCCL (this rank a member). */
srlm_comm_backend srlm_comm_transport_of(const srlm_comm *c, srlm_comm_group g);

/* ---- who is who --------------------------------------------------------- */

int srlm_comm_rank(const srlm_comm *c); /* world rank */
int srlm_comm_size(const srlm_comm *c); /* world size */
srlm_comm_backend srlm_comm_backend_of(const srlm_comm *c);
bool srlm_comm_colocated(const srlm_comm *c);
/* Whether this rank plays the role (all three when colocated). */
bool srlm_comm_has_role(const srlm_comm *c, srlm_role role);
/* This rank's rank within the role (-1 when it does not play it) and the role's size. */
int srlm_comm_role_rank(const srlm_comm *c, srlm_role role);
int srlm_comm_role_size(const srlm_comm *c, srlm_role role);
/* World rank of member i (0 <= i < role size) of a role: for shard destinations. */
int srlm_comm_world_rank_of(const srlm_comm *c, srlm_role role, int i);
/* A short name of this rank's role(s): "learner", "generator", "judge" or "colocated". */
const char *srlm_comm_role_label(const srlm_comm *c);

/* ---- collectives -------------------------------------------------------- */

/* World barrier. */
srlm_status srlm_comm_barrier(srlm_comm *c);

/* All-agree-ok over the world: returns SRLM_OK on every rank when every rank passed
 * SRLM_OK; otherwise every rank returns the code of the lowest failing rank with the
 * error "rank R (role): <its message>" (and the number of other failing ranks). */
srlm_status srlm_comm_agree(srlm_comm *c, srlm_status local);

/* Ends the whole job: prints this rank's error (srlm_error_message(), with code) and
 * calls MPI_Abort with srlm_status_exit_code(code) (1 if that is 0). For role top
 * levels only; library code returns errors. c may be NULL (MPI_COMM_WORLD is used). */
SRLM_NORETURN void srlm_comm_abort(srlm_comm *c, srlm_status code);

/* Broadcasts n int64 values from world rank 0 to every rank (decisions the lead takes
 * alone, e.g. where a resumed run starts). */
srlm_status srlm_comm_bcast_i64(srlm_comm *c, int64_t *x, int n);

/* Every rank's n int64 values become their maximum over the world (flags every rank must
 * agree on, e.g. a stop asked by a signal on any rank: stop.h). */
srlm_status srlm_comm_allreduce_max_i64(srlm_comm *c, int64_t *x, int n);

/* The rank watchdog (run.rank_timeout; like NCCL's and PyTorch's collective timeouts):
 * every rank beats in dir/.ranks/<rank> from a thread; a rank whose beats stop for
 * timeout_s seconds (SIGSTOP, a frozen node; a busy rank still beats) ends the job at the
 * watcher's next wait with MPI_Abort, naming the late rank, its role and its last phase
 * (src/comm/watchdog.h). No-op for one rank or timeout_s <= 0. dir should be shared by the
 * ranks' nodes (the run folder); a rank whose file is not visible is not watched. */
srlm_status srlm_comm_watchdog(srlm_comm *c, const char *dir, double timeout_s);

/* The MPI library this process runs with (MPI_Get_library_version's first line, for
 * `srlm version`); works without MPI_Init. */
void srlm_comm_library_version(char *out, size_t n);

/* This rank's phase for the watchdog's message ("generating iteration 2", ...). */
void srlm_comm_phase(srlm_comm *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Weight broadcast from learner rank 0 over the broadcast comm, in buckets of
 * bucket_bytes (rounded down to whole elements, at least one, at most 1 GiB; 0 = 64 MiB;
 * the root's value counts, receivers follow the header).
 * w: (n) flat parameters of dtype dt in the memory of this rank's backend
 * (srlm_comm_set_backend); the root sends them, receivers overwrite theirs. dt is SRLM_F32
 * (an fp32 model: its parameters, the master) or SRLM_BF16 (a bf16 model: the compute
 * copy, 2 bytes a parameter, written straight into the receivers' compute copy; they keep
 * no fp32 master, model.h SRLM_MODEL_DECODE); the elements move as bytes, bit for bit.
 * Device memory moves through one pinned staging buffer of one bucket; host backends send
 * in place; NCCL broadcasts each bucket GPU to GPU (ncclBroadcast; the header stays on
 * MPI), also in a job of one rank.
 * version: the root sends *version; a receiver passing *version >= 0 requires exactly
 * that version (a mismatch is an SRLM_ERR_INTERNAL error naming both), passing -1
 * accepts any; on return *version is the root's. The root's n, dtype, version and bucket
 * size travel in a header first: a receiver holding a different n or dtype gets an error
 * naming both (after the broadcast completes, so no rank is left waiting; its weights are
 * left as they were). A rank outside the broadcast comm (learners other than rank 0)
 * returns at once. */
srlm_status srlm_comm_bcast_weights(srlm_comm *c, void *w, int64_t n, srlm_dtype dt, int64_t *version,
                                    size_t bucket_bytes);

typedef enum srlm_comm_reduce {
  SRLM_COMM_SUM = 0,
  SRLM_COMM_MEAN,          /* sum / number of learners */
  SRLM_COMM_REDUCE_COUNT
} srlm_comm_reduce;

typedef enum srlm_comm_order {
  SRLM_COMM_DETERMINISTIC = 0, /* MPI: sum in learner-rank order; NCCL: NCCL's fixed-topology order (see above) */
  SRLM_COMM_FAST               /* MPI_Allreduce, order left to the library; NCCL: the same as DETERMINISTIC */
} srlm_comm_order;

/* In-place all-reduce over the learner group. g: (n) in the memory of this rank's
 * backend. MPI: device memory is staged through pinned host buffers (at most 1 GiB at a
 * time). NCCL: on the device, ncclAllReduce in buckets of 64 MiB (MEAN: ncclAvg), also for
 * one learner. Learners only (others: error). */
srlm_status srlm_comm_allreduce_grads(srlm_comm *c, float *g, int64_t n, srlm_comm_reduce op, srlm_comm_order order);

/* In-place sum of n doubles over the learner group (metrics and flags of a training step;
 * MPI_Allreduce: the same result on every learner). Learners only. */
srlm_status srlm_comm_allreduce_f64(srlm_comm *c, double *x, int n);

/* ZeRO-1 (dp.h) over the learner group; bounds: (learners + 1) offsets, bounds[0] = 0,
 * bounds[L] = n, learner j owns [bounds[j], bounds[j + 1]). Buffers in the memory of this
 * rank's backend (MPI: device memory is staged whole through a pinned host copy, in rounds
 * of at most 1 GiB; NCCL: on the device, see "Backends"). Learners only; collectives: every
 * learner calls them alike.
 * reduce_scatter: this learner's range of g becomes the sum over the learners (MPI: in
 * learner-rank order, the bits srlm_comm_allreduce_grads (DETERMINISTIC) gives there;
 * NCCL: NCCL's order, see the determinism paragraph); the rest of g is left as it was. */
srlm_status srlm_comm_reduce_scatter_grads(srlm_comm *c, float *g, int64_t n, const int64_t *bounds);
/* Every learner's range of x (n elements of dtype dt: SRLM_F32, or SRLM_BF16 for a bf16
 * model's compute copy, 2 bytes a weight; moved as bytes) copied into every learner's x. */
srlm_status srlm_comm_allgather_shards(srlm_comm *c, void *x, int64_t n, srlm_dtype dt, const int64_t *bounds);
/* The same over HOST memory whatever the backend (always MPI), where each learner names
 * only its own range [lo, hi) of x (n floats): a bf16 model's fp32 master, of which a ZeRO-1
 * learner holds its shard, gathered whole for a checkpoint or the saved model. The ranges,
 * exchanged first, must tile [0, n) in learner order (else SRLM_ERR_INTERNAL on every
 * learner alike). One learner: [lo, hi) must be [0, n), nothing moves. Learners only;
 * collective. */
srlm_status srlm_comm_allgather_ranges_host(srlm_comm *c, float *x, int64_t n, int64_t lo, int64_t hi);
/* The same to learner `root` only (root < 0: to all, as above): the others send their range
 * and their x is not written (nor read outside [lo, hi)), so a non-root learner may pass a
 * buffer it never touched elsewhere; the physical memory it costs is its range. Checkpoints
 * and iteration saves gather to the lead (learner 0) this way. Collective. */
srlm_status srlm_comm_gather_ranges_host(srlm_comm *c, float *x, int64_t n, int64_t lo, int64_t hi, int root);
/* One double accumulated along the learners in rank order (srlm_dp_chain_fn): stage 0,
 * learner r > 0 receives r - 1's *x; stage 1, learner r < L - 1 sends *x to r + 1, then
 * every learner gets the last learner's *x. */
srlm_status srlm_comm_chain_f64(srlm_comm *c, double *x, int stage);

/* ---- the gradient reduce overlapped with the backward ---------------------
 *
 * One optimizer step's reduce in buckets that start while the backward still runs (the
 * training-step engine drives it, engine.h; the model says which gradients are final,
 * srlm_model_on_grads_final). Buckets are cut from the top of the flat array down, the
 * order the backward finishes the gradients in: bucket k is [max(0, n - (k + 1) b), n - k b)
 * for b = bucket floats (srlm_comm_bucket), the same cut on every learner whatever its
 * backward announced, so every learner starts the same collectives in the same order.
 *   begin   g (n floats, this rank's backend memory), bounds NULL (all-reduce: every
 *           element's sum) or the ZeRO-1 bounds (reduce-scatter: this learner's range),
 *           bucket_bytes (0 = 64 MiB). Nothing moves yet. Learners only.
 *   ready   g[from, n) is final: starts every bucket inside it not started yet, and
 *           progresses the ones in flight (MPI_Test); never waits for a peer.
 *   end     starts the buckets left (a learner whose backward announced nothing, e.g.
 *           an empty or non-finite slice, starts them all here) and waits for all of them.
 *           After it, g is what srlm_comm_allreduce_grads (DETERMINISTIC, SUM) or
 *           srlm_comm_reduce_scatter_grads would have left: on MPI the same bits, every
 *           element summed in learner-rank order (each bucket is the deterministic
 *           algorithm above: MPI_Ialltoallv of the owners' slices, the rank-order sum, then
 *           MPI_Iallgatherv for the all-reduce, on two communicators of their own so the
 *           two phases of different buckets never cross); on NCCL within float
 *           re-association, as every NCCL sum (ncclAllReduce of the bucket, or one
 *           ncclReduce per owner part, on the NCCL stream after an event of the backend's).
 *   abandon after an error on this rank: drops the step without waiting for its buckets.
 *           The rank's top level then ends the job (srlm_comm_abort), which also ends the
 *           other learners' waits; buffers a started collective may still write are left
 *           allocated until then.
 * MPI: at most 4 buckets are in flight (starting a fifth completes the oldest first);
 * device gradients go through pinned host staging, one buffer per bucket in flight. With
 * ZeRO-1 bounds on MPI the bucket is at most 64 MiB / L (an owner receives L parts of it),
 * so buffers and int counts stay bounded at any learner count. One overlapped reduce at a
 * time per handle; begin while one is open is an error. */
srlm_status srlm_comm_reduce_begin(srlm_comm *c, float *g, int64_t n, const int64_t *bounds, size_t bucket_bytes);
srlm_status srlm_comm_reduce_ready(srlm_comm *c, int64_t from);
srlm_status srlm_comm_reduce_end(srlm_comm *c);
void srlm_comm_reduce_abandon(srlm_comm *c);

/* Bucket k of n floats cut in buckets of b (b >= 1) as above: [*lo, *hi); the bucket count
 * is ceil(n / b). Pure. */
static inline void srlm_comm_bucket(int64_t n, int64_t b, int64_t k, int64_t *lo, int64_t *hi) {
  *hi = n - k * b;
  *lo = *hi - b > 0 ? *hi - b : 0;
}
/* The buckets that lie inside [from, n): the first srlm_comm_buckets_final of them may start. */
static inline int64_t srlm_comm_buckets_final(int64_t n, int64_t b, int64_t from) {
  if (from <= 0) return (n + b - 1) / b;
  return (n - from) / b;
}

/* Every rank of the world contributes len bytes; on return (*bufs)[r] (a new buffer of
 * (*lens)[r] bytes) is rank r's, for every r (free each, then both arrays). Collective;
 * at most INT_MAX bytes in all. For the colocated layout, where every learner needs
 * every rank's scored shards. */
srlm_status srlm_comm_allgather_bytes(srlm_comm *c, const void *buf, size_t len, void ***bufs, size_t **lens);

/* ---- point-to-point: rollout shards and other byte messages ------------- */

/* Byte messages (rollout shards: token ids, log-probs, judgments) are born and used in host
 * memory: the sampler's tokens come back at every decode step (stop checks, refill), the
 * judge tokenizes text, the learner packs its micro-batches on the host. Their header (kind,
 * length) always goes on MPI. Their bytes go by the shard-payload group's transport
 * (srlm_comm_open_transport; the group is the world of a separate-roles job):
 *   MPI   inline after the header, from host memory (a CPU run, cuda-sim, shared GPUs,
 *         run.comm: mpi, and every job before srlm_comm_open_transport);
 *   NCCL  every rank on a GPU of its own: ncclSend/ncclRecv through device staging buffers,
 *         on a communicator over the world of their own. NCCL runs a rank's sends and
 *         receives in issue order and has no matching engine, so with receives from any
 *         source a send queued as soon as its shard is ready can deadlock (judge B's shard
 *         for learner L0 queued behind B -> L1, while L1 waits for judge A's, queued behind
 *         A -> L0). The bytes therefore wait on the sender until the receiver, having matched
 *         the header on MPI, has queued the receive and sent a clear-to-send; a sender
 *         answers clear-to-sends at every pause of a comm wait, in srlm_comm_send,
 *         srlm_comm_send_async and srlm_comm_flush, and at srlm_comm_progress (every rank of
 *         `srlm train` calls it after each decode step: srlm_model_set_step_hook). Every pair
 *         is connected when the transport opens. The protocol, why it cannot deadlock while
 *         the flow is acyclic (generators -> judges -> learners is; two ranks must not wait
 *         for each other's messages), and the NCCL rules it keeps are in src/comm/p2p.h. The
 *         staging buffers (device memory, about one shard per message in flight) are not in
 *         the memory plan. SRLM_COMM_P2P=inorder (rank 0's environment decides for every
 *         rank) runs the same handshake with the bytes on MPI moved in NCCL's order (one at a
 *         time per rank, synchronous sends), also between GPUs, so CI tests it without a
 *         GPU. Messages between a pair still arrive in the order sent. */
#define SRLM_COMM_ANY_SOURCE (-1)

/* Sends len bytes to world rank dest (a header with the length goes first). Blocking.
 * len 0 is allowed. */
srlm_status srlm_comm_send(srlm_comm *c, int dest, const void *buf, size_t len);

/* Like srlm_comm_send, but returns at once: the handle takes buf (srlm_xmalloc'd, len
 * <= 1 GiB) and frees it when the send has completed (on error too). Messages to one
 * destination still arrive in the order posted, sync or async. Lets a generator go on
 * sampling while its judge is busy. srlm_comm_flush waits for every pending send; call
 * it before srlm_comm_send_end to the same peers is NOT needed for ordering, only to
 * bound memory and to be sure the data left. */
srlm_status srlm_comm_send_async(srlm_comm *c, int dest, void *buf, size_t len);
srlm_status srlm_comm_flush(srlm_comm *c);

/* Lets the receivers of this rank's messages take their bytes (answers clear-to-sends, moves
 * queued transfers on: see above); never waits for a peer (a send's host-to-device copy is
 * waited for). A no-op unless the shard-payload group uses NCCL (or SRLM_COMM_P2P=inorder).
 * c may be NULL. */
srlm_status srlm_comm_progress(srlm_comm *c);

/* Sends an end-of-stream marker to dest: the receiver's srlm_comm_recv returns with
 * *end = true. A producer sends one to each consumer when it has no more shards. */
srlm_status srlm_comm_send_end(srlm_comm *c, int dest);

/* Receives the next message from world rank src (or SRLM_COMM_ANY_SOURCE). On return
 * *src_out (may be NULL) is the sender; either *end is true (the sender's end marker,
 * *buf NULL, *len 0), or *buf is a new buffer of *len bytes (free()). Messages from
 * one sender arrive in the order sent. */
srlm_status srlm_comm_recv(srlm_comm *c, int src, void **buf, size_t *len, int *src_out, bool *end);

#ifdef __cplusplus
}
#endif
#endif
