/* srlm comm, MPI backend: communicators by role, weight broadcast, gradient
 * all-reduce (also in buckets overlapped with the backward), byte messages between roles,
 * agree and abort (the interface, the rank layout and the error rules are in
 * include/srlm/comm.h). With CUDA built
 * (SRLM_HAVE_NCCL), the float collectives of a group whose ranks each own a GPU go through
 * NCCL instead (srlm_comm_open_transport below, comm_nccl.h); headers, agree and abort stay here.
 *
 * Every MPI call goes through SRLM_MPI, and the communicators are set to
 * MPI_ERRORS_RETURN, so an MPI failure comes back as an SRLM_ERR_LIB error naming the
 * call, file:line and rank; the top level then decides (usually srlm_comm_abort).
 * Counts passed to MPI are ints: large buffers move in pieces of at most
 * CHUNK_BYTES, so int counts never overflow.
 */
#include <limits.h>
#include <stdarg.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srlm/comm.h"
#include "p2p.h"
#include "watchdog.h"
#if SRLM_HAVE_NCCL
#include "comm_nccl.h"
#endif

#define CHUNK_BYTES ((size_t)1 << 30)
#define DEFAULT_BUCKET_BYTES ((size_t)64 << 20)
#define BCAST_MAGIC 0x5357454947484e53ll /* header word of a weight broadcast */
#define MSG_MAGIC 0x4d4c5253u            /* header word of a point-to-point message */
#define MSG_END 1u                       /* kind bit: end-of-stream marker */
#define MSG_P2P 2u                       /* kind bit: the bytes come by the shard-payload transport (p2p.h) */
#define HDR_WORDS 3                      /* magic | kind, length, the p2p message's number (else 0) */
#define TAG_HDR 7101
#define TAG_DATA 7102
#define AGREE_MSG 2040

static _Thread_local char g_mpi_desc[MPI_MAX_ERROR_STRING + 1];
const char *sr_mpi_desc(int rc) {
  int n = 0;
  if (MPI_Error_string(rc, g_mpi_desc, &n) != MPI_SUCCESS) snprintf(g_mpi_desc, sizeof g_mpi_desc, "unknown MPI error");
  return g_mpi_desc;
}
#define SRLM_MPI(call) SRLM_LIB_CALL("MPI", int, call, srlm_rc == MPI_SUCCESS, sr_mpi_desc(srlm_rc))

/* Waits for a request without spinning: Open MPI's blocking calls poll at 100% CPU,
 * which on a box with fewer cores than ranks steals the core from the rank doing the
 * work (generators and judges idle while the learner trains, and the other way round).
 * Polls with MPI_Test and sleeps in between, 50 us doubling up to 2 ms: at most ~2 ms of
 * added latency per message, nothing next to a phase of seconds. */
static int wait_polite(MPI_Request *req, MPI_Status *status) {
  long ns = 50000;
  for (;;) {
    int done = 0;
    int rc = MPI_Test(req, &done, status ? status : MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS || done) return rc;
    sr_watchdog_nap(&ns, 2000000);
  }
}
/* A nonblocking MPI call followed by the polite wait; rc of whichever failed. */
#define SRLM_MPI_WAIT(icall, req) SRLM_MPI(mpi_then_wait((icall), &(req)))
static int mpi_then_wait(int rc, MPI_Request *req) { return rc == MPI_SUCCESS ? wait_polite(req, NULL) : rc; }

typedef struct pending_send {
  MPI_Request req[2]; /* header, data (MPI_REQUEST_NULL when empty) */
  int64_t *hdr;       /* (HDR_WORDS) owned: its own allocation, so growing the array never moves it under MPI */
  void *buf;          /* owned: freed when the send completes (NULL when the p2p transport holds the bytes) */
} pending_send;

#define OV_SLOTS 4 /* MPI buckets in flight at most (each holds a staging and a receive buffer) */

/* The pinned staging buffers of a comm (srlm_comm.pin): a whole gradient or weight array
 * (ZeRO-1's reduce-scatter and all-gather), one piece (the all-reduce, the weight
 * broadcast), one bucket per slot of the overlapped reduce. */
enum { PIN_WHOLE = 0, PIN_PIECE, PIN_OV0, PIN_COUNT = PIN_OV0 + OV_SLOTS };

struct srlm_comm {
  srlm_comm_backend backend;
  int rank, size;
  bool we_initialized; /* MPI_Init was ours: srlm_comm_free finalizes */
  bool solo;           /* one process, no launcher: MPI is never initialized or called */
  bool roles_assigned;
  bool colocated;
  int my_role;                    /* separate roles: this rank's role; colocated: -1 */
  int count[SRLM_ROLE_COUNT];     /* ranks per role */
  MPI_Comm world;                 /* duplicate of MPI_COMM_WORLD */
  MPI_Comm role[SRLM_ROLE_COUNT]; /* MPI_COMM_NULL where this rank does not play the role */
  MPI_Comm bcast;                 /* learner 0 + generators + judges; MPI_COMM_NULL elsewhere */
  pending_send *pending;          /* srlm_comm_send_async in flight */
  int n_pending, cap_pending;
  srlm_backend *be;               /* memory of the weight and gradient buffers; NULL: the CPU */
  /* the NCCL communicator of each group (srlm_comm_group) where it uses NCCL, else NULL;
     colocated, both groups are the world and share one. Opened on nccl_be. */
  struct sr_nccl *nccl[SRLM_COMM_GROUP_COUNT];
  srlm_backend *nccl_be;
  struct sr_p2p *p2p; /* the shard-payload transport (p2p.h) where the shard group uses it, else NULL */
  /* with p2p: the next message, matched (and its bytes cleared to come) as the last receive
     ended, while the caller works on that one; srlm_comm_recv hands it out first */
  struct {
    bool on;
    int from;
    int64_t hdr[HDR_WORDS];
    char *buf;            /* its bytes' destination (p2p data); NULL otherwise */
    struct sr_p2p_rx *rx; /* their receive under way; NULL once they are in buf, or without bytes */
  } early;
  /* learners: the overlapped reduce's two phases (slices to their owners; sums back), each
     on a communicator of its own so the phases of different buckets never cross */
  MPI_Comm ov_comm[2];
  struct ov_state *ov; /* the overlapped reduce open now (srlm_comm_reduce_begin), or NULL */
  /* Pinned host memory of pin_be (host_alloc) through which the float collectives over MPI
     stage device memory, kept from one call to the next and grown only: freeing pinned memory
     (cudaFreeHost) synchronizes the whole device, so a training step that allocated its
     staging would stall the backward it overlaps and the next step's kernels. Released when
     the backend changes (srlm_comm_set_backend) and by srlm_comm_free. */
  struct { void *p; size_t bytes; } pin[PIN_COUNT];
  srlm_backend *pin_be;
};

static const char *const k_role_names[SRLM_ROLE_COUNT] = {"learner", "generator", "judge"};

const char *srlm_role_name(srlm_role role) {
  return (unsigned)role < SRLM_ROLE_COUNT ? k_role_names[role] : "unknown role";
}

/* Frees the pinned staging (srlm_comm.pin) while its backend is still open. */
static void pins_release(srlm_comm *c) {
  for (int i = 0; i < PIN_COUNT; i++) {
    if (c->pin[i].p) (void)srlm_backend_host_free(c->pin_be, c->pin[i].p);
    c->pin[i].p = NULL;
    c->pin[i].bytes = 0;
  }
  c->pin_be = NULL;
}

/* Pinned staging buffer `which` of at least `bytes` on backend be, kept for the next call. */
static srlm_status pin_get(srlm_comm *c, srlm_backend *be, int which, size_t bytes, void **out) {
  *out = NULL;
  if (be != c->pin_be) {
    pins_release(c);
    c->pin_be = be;
  }
  if (bytes > c->pin[which].bytes) {
    if (c->pin[which].p) (void)srlm_backend_host_free(be, c->pin[which].p);
    c->pin[which].p = NULL;
    c->pin[which].bytes = 0;
    SRLM_TRY(srlm_backend_host_alloc(be, &c->pin[which].p, bytes));
    c->pin[which].bytes = bytes;
  }
  *out = c->pin[which].p;
  return SRLM_OK;
}

void srlm_comm_set_backend(srlm_comm *c, srlm_backend *be) {
  /* NCCL communicators live on the old backend's device: a caller that did not close them
     (srlm_comm_close_transport) gets them aborted here, which waits for nobody */
  if (be != c->nccl_be) srlm_comm_close_transport(c, SRLM_ERR_INTERNAL);
  if (be != c->be) pins_release(c); /* before the old backend may close */
  c->be = be;
}

/* SRLM_CHECK failures on any rank end the whole job. */
static void abort_hook(int exit_code) {
  int inited = 0, fin = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&fin);
  if (inited && !fin) MPI_Abort(MPI_COMM_WORLD, exit_code);
}

/* ---- setup -------------------------------------------------------------- */

/* Whether a launcher (mpirun, srun, mpiexec) started this process: their environment. */
static bool launched_by_mpi(void) {
  static const char *const k_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK",
                                       "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD"};
  for (size_t i = 0; i < sizeof k_vars / sizeof *k_vars; i++)
    if (getenv(k_vars[i])) return true;
  return false;
}

srlm_status srlm_comm_init(int *argc, char ***argv, srlm_comm_backend backend, srlm_comm **out) {
  *out = NULL;
  if (backend != SRLM_COMM_MPI)
    return srlm_error(SRLM_ERR_UNSUPPORTED, "comm", "backend %d is not built (only MPI)", (int)backend);
  int inited = 0, fin = 0;
  SRLM_MPI(MPI_Initialized(&inited));
  SRLM_MPI(MPI_Finalized(&fin));
  if (fin) return srlm_error(SRLM_ERR_INTERNAL, "comm", "MPI was already finalized");
  if (!inited && !launched_by_mpi()) {
    /* a plain `srlm train`: the whole job is this process. Not starting MPI saves its
       start-up, works where a singleton MPI cannot start, and keeps sanitizer runs
       free of MPI's own allocations. */
    srlm_comm *c = srlm_xcalloc(1, sizeof *c);
    c->backend = backend;
    c->solo = true;
    c->size = 1;
    c->my_role = -1;
    c->world = c->bcast = c->ov_comm[0] = c->ov_comm[1] = MPI_COMM_NULL;
    for (int r = 0; r < SRLM_ROLE_COUNT; r++) c->role[r] = MPI_COMM_NULL;
    *out = c;
    return SRLM_OK;
  }
  bool ours = false;
  if (!inited) {
    int provided = 0;
    SRLM_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    ours = true;
  }
  srlm_set_abort_hook(abort_hook);
  srlm_comm *c = srlm_xcalloc(1, sizeof *c);
  c->backend = backend;
  c->we_initialized = ours;
  c->my_role = -1;
  c->world = c->bcast = c->ov_comm[0] = c->ov_comm[1] = MPI_COMM_NULL;
  for (int r = 0; r < SRLM_ROLE_COUNT; r++) c->role[r] = MPI_COMM_NULL;
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &c->world);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(c->world, MPI_ERRORS_RETURN);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(c->world, &c->rank);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_size(c->world, &c->size);
  if (rc != MPI_SUCCESS) {
    srlm_status st = srlm_lib_error("MPI", "MPI_Comm_dup/rank/size(MPI_COMM_WORLD)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
    srlm_comm_free(c);
    return st;
  }
  if (c->size > 1) srlm_log_set_context(c->rank, "");
  *out = c;
  return SRLM_OK;
}

static srlm_status dup_world(srlm_comm *c, MPI_Comm *out) {
  SRLM_MPI(MPI_Comm_dup(c->world, out));
  SRLM_MPI(MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN));
  return SRLM_OK;
}

static srlm_status split_world(srlm_comm *c, int color, MPI_Comm *out) {
  SRLM_MPI(MPI_Comm_split(c->world, color, c->rank, out));
  if (*out != MPI_COMM_NULL) SRLM_MPI(MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN));
  return SRLM_OK;
}

srlm_status srlm_comm_assign_roles(srlm_comm *c, const srlm_comm_roles *roles) {
  if (c->roles_assigned) return srlm_error(SRLM_ERR_INTERNAL, "comm", "roles are already assigned");
  c->colocated = roles->colocate || c->size == 1;
  if (c->solo) {
    for (int r = 0; r < SRLM_ROLE_COUNT; r++) c->count[r] = 1;
    c->roles_assigned = true;
    return SRLM_OK;
  }
  if (c->colocated) {
    for (int r = 0; r < SRLM_ROLE_COUNT; r++) {
      c->count[r] = c->size;
      SRLM_TRY(dup_world(c, &c->role[r]));
    }
    SRLM_TRY(dup_world(c, &c->bcast));
    SRLM_TRY(dup_world(c, &c->ov_comm[0]));
    SRLM_TRY(dup_world(c, &c->ov_comm[1]));
    c->roles_assigned = true;
    if (c->size > 1) srlm_log_set_context(c->rank, "colocated");
    return SRLM_OK;
  }
  int L = roles->learners, G = roles->generators, J = roles->judges;
  if (L < 1 || G < 1 || J < 1)
    return srlm_error(SRLM_ERR_CONFIG, "roles",
                      "with roles.colocate false, roles.learners (%d), roles.generators (%d) and roles.judges (%d) "
                      "must each be >= 1",
                      L, G, J);
  long long sum = (long long)L + G + J;
  if (sum != c->size)
    return srlm_error(SRLM_ERR_CONFIG, "roles",
                      "roles.learners (%d) + roles.generators (%d) + roles.judges (%d) = %lld, but the job has %d "
                      "ranks (world size); start it with mpirun -np %lld or set roles.colocate: true",
                      L, G, J, sum, c->size, sum);
  c->count[SRLM_ROLE_LEARNER] = L;
  c->count[SRLM_ROLE_GENERATOR] = G;
  c->count[SRLM_ROLE_JUDGE] = J;
  c->my_role = c->rank < L ? SRLM_ROLE_LEARNER : c->rank < L + G ? SRLM_ROLE_GENERATOR : SRLM_ROLE_JUDGE;
  MPI_Comm mine = MPI_COMM_NULL;
  SRLM_TRY(split_world(c, c->my_role, &mine));
  c->role[c->my_role] = mine;
  SRLM_TRY(split_world(c, (c->rank == 0 || c->my_role != SRLM_ROLE_LEARNER) ? 0 : MPI_UNDEFINED, &c->bcast));
  for (int k = 0; k < 2 && c->my_role == SRLM_ROLE_LEARNER; k++) {
    SRLM_MPI(MPI_Comm_dup(mine, &c->ov_comm[k]));
    SRLM_MPI(MPI_Comm_set_errhandler(c->ov_comm[k], MPI_ERRORS_RETURN));
  }
  c->roles_assigned = true;
  srlm_log_set_context(c->rank, k_role_names[c->my_role]);
  return SRLM_OK;
}

static void ov_free(srlm_comm *c);

void srlm_comm_free(srlm_comm *c) {
  if (!c) return;
  /* sends nobody will receive any more (an error path): cancel rather than wait forever */
  for (int i = 0; i < c->n_pending; i++) {
    for (int k = 0; k < 2; k++)
      if (c->pending[i].req[k] != MPI_REQUEST_NULL) {
        MPI_Cancel(&c->pending[i].req[k]);
        MPI_Request_free(&c->pending[i].req[k]);
      }
    free(c->pending[i].buf);
    free(c->pending[i].hdr);
  }
  free(c->pending);
  ov_free(c);
  pins_release(c);
  srlm_comm_close_transport(c, SRLM_ERR_INTERNAL); /* left open: aborted, waits for nobody */
  sr_watchdog_stop();
  if (c->solo) {
    free(c);
    return;
  }
  MPI_Comm *comms[SRLM_ROLE_COUNT + 4] = {&c->role[0], &c->role[1], &c->role[2], &c->bcast, &c->ov_comm[0],
                                          &c->ov_comm[1], &c->world};
  for (int i = 0; i < SRLM_ROLE_COUNT + 4; i++)
    if (*comms[i] != MPI_COMM_NULL) MPI_Comm_free(comms[i]);
  if (c->we_initialized) {
    srlm_set_abort_hook(NULL);
    MPI_Finalize();
  }
  free(c);
}

/* ---- who is who --------------------------------------------------------- */

int srlm_comm_rank(const srlm_comm *c) { return c->rank; }
int srlm_comm_size(const srlm_comm *c) { return c->size; }
srlm_comm_backend srlm_comm_backend_of(const srlm_comm *c) { return c->backend; }
bool srlm_comm_colocated(const srlm_comm *c) { return c->colocated; }

bool srlm_comm_has_role(const srlm_comm *c, srlm_role role) {
  return c->roles_assigned && (unsigned)role < SRLM_ROLE_COUNT && (c->colocated || c->my_role == (int)role);
}

int srlm_comm_role_rank(const srlm_comm *c, srlm_role role) {
  if (!srlm_comm_has_role(c, role)) return -1;
  return c->colocated ? c->rank : c->rank - srlm_comm_world_rank_of(c, role, 0);
}

int srlm_comm_role_size(const srlm_comm *c, srlm_role role) {
  return c->roles_assigned && (unsigned)role < SRLM_ROLE_COUNT ? c->count[role] : 0;
}

int srlm_comm_world_rank_of(const srlm_comm *c, srlm_role role, int i) {
  if (!c->roles_assigned || (unsigned)role >= SRLM_ROLE_COUNT || i < 0 || i >= c->count[role]) return -1;
  if (c->colocated) return i;
  int base = 0;
  for (int r = 0; r < (int)role; r++) base += c->count[r];
  return base + i;
}

const char *srlm_comm_role_label(const srlm_comm *c) {
  if (!c->roles_assigned) return "unassigned";
  return c->colocated ? "colocated" : k_role_names[c->my_role];
}

/* The role label of any world rank. */
static const char *label_of(const srlm_comm *c, int rank) {
  if (!c->roles_assigned) return "unassigned";
  if (c->colocated) return "colocated";
  int L = c->count[SRLM_ROLE_LEARNER], G = c->count[SRLM_ROLE_GENERATOR];
  return k_role_names[rank < L ? SRLM_ROLE_LEARNER : rank < L + G ? SRLM_ROLE_GENERATOR : SRLM_ROLE_JUDGE];
}

/* ---- transport of the float collectives: MPI or NCCL, per group ---------- */

static const char *const k_group_names[SRLM_COMM_GROUP_COUNT] = {"learner group", "weight-broadcast group",
                                                                  "shard-payload group"};

srlm_status srlm_comm_choose_transport(srlm_comm_transport want, const char *group, const srlm_comm_device *devs,
                                       const int *ranks, int n, srlm_comm_backend *out, char *why, size_t why_len) {
  *out = SRLM_COMM_MPI;
  if ((unsigned)want >= SRLM_COMM_TRANSPORT_COUNT || n < 1)
    return srlm_error(SRLM_ERR_RANGE, "run.comm", "transport %d for a group of %d ranks", (int)want, n);
  if (want == SRLM_COMM_TRANSPORT_MPI) {
    snprintf(why, why_len, "run.comm: mpi");
    return SRLM_OK;
  }
  /* what keeps the group off NCCL: a rank off the cuda backend, or two ranks on one GPU */
  char reason[256] = "";
  for (int i = 0; i < n && !reason[0]; i++) {
    const srlm_comm_device *d = &devs[ranks[i]];
    if (strcmp(d->backend, "cuda") != 0)
      snprintf(reason, sizeof reason, "rank %d runs the %s backend, not cuda", ranks[i], d->backend[0] ? d->backend : "cpu");
  }
  for (int i = 0; i < n && !reason[0]; i++)
    for (int j = i + 1; j < n && !reason[0]; j++)
      if (memcmp(devs[ranks[i]].uuid, devs[ranks[j]].uuid, sizeof devs->uuid) == 0)
        snprintf(reason, sizeof reason, "ranks %d and %d share one GPU (device %d of rank %d)", ranks[i], ranks[j],
                 devs[ranks[i]].device, ranks[i]);
  if (reason[0]) {
    if (want == SRLM_COMM_TRANSPORT_NCCL)
      return srlm_error(SRLM_ERR_CONFIG, "run.comm",
                        "nccl, but the %s cannot use NCCL: %s (NCCL needs every rank of a group on the cuda backend "
                        "with a GPU of its own); set run.comm: auto (MPI where NCCL cannot be used) or mpi",
                        group, reason);
    snprintf(why, why_len, "%s", reason);
    return SRLM_OK;
  }
  if (want == SRLM_COMM_TRANSPORT_AUTO && n == 1) {
    snprintf(why, why_len, "one rank: nothing to exchange");
    return SRLM_OK;
  }
  *out = SRLM_COMM_NCCL;
  snprintf(why, why_len, "%s", want == SRLM_COMM_TRANSPORT_NCCL ? "run.comm: nccl" : "every rank on a GPU of its own");
  return SRLM_OK;
}

/* World ranks of group g in group-rank order (the order of its MPI communicator, split by
 * world rank): learners 0..L-1; broadcast: learner 0, then generators and judges; shard
 * payloads: the world (none when colocated or solo: shards are all-gathered there). */
static int group_members(const srlm_comm *c, srlm_comm_group g, int *out) {
  int k = 0;
  if (g == SRLM_COMM_GROUP_SHARDS) {
    if (c->solo || c->colocated) return 0;
    for (int r = 0; r < c->size; r++) out[k++] = r;
    return k;
  }
  if (c->solo || c->colocated) {
    for (int r = 0; r < c->size; r++) out[k++] = r;
    return k;
  }
  const int L = c->count[SRLM_ROLE_LEARNER];
  if (g == SRLM_COMM_GROUP_LEARNERS) {
    for (int r = 0; r < L; r++) out[k++] = r;
  } else {
    out[k++] = 0;
    for (int r = L; r < c->size; r++) out[k++] = r;
  }
  return k;
}

#if SRLM_HAVE_NCCL
/* Opens group g's NCCL communicator on this rank (a member): its first rank makes the id,
 * MPI carries it to the others (with a flag, so a failure there stops every member). */
static srlm_status open_group_nccl(srlm_comm *c, srlm_comm_group g, int first) {
  MPI_Comm comm = g == SRLM_COMM_GROUP_LEARNERS ? c->role[SRLM_ROLE_LEARNER]
                  : g == SRLM_COMM_GROUP_BCAST  ? c->bcast
                                                : c->world;
  int grank = 0, gsize = 1;
  if (!c->solo) {
    SRLM_MPI(MPI_Comm_rank(comm, &grank));
    SRLM_MPI(MPI_Comm_size(comm, &gsize));
  }
  struct {
    unsigned char id[SR_NCCL_ID_BYTES];
    int32_t failed;
  } msg;
  memset(&msg, 0, sizeof msg);
  srlm_status st = SRLM_OK;
  if (grank == 0) {
    st = sr_nccl_unique_id(msg.id);
    msg.failed = st != SRLM_OK;
  }
  if (!c->solo) {
    MPI_Request req;
    SRLM_MPI_WAIT(MPI_Ibcast(&msg, (int)sizeof msg, MPI_BYTE, 0, comm, &req), req);
  }
  if (msg.failed)
    return grank == 0 ? st
                      : srlm_error(SRLM_ERR_LIB, k_group_names[g], "world rank %d could not make the NCCL unique id",
                                   first);
  return sr_nccl_open(msg.id, gsize, grank, c->be, k_group_names[g], &c->nccl[g]);
}
#endif

/* The nap hook (watchdog.h) while the shard-payload transport is open: a rank waiting on
 * anything still answers clear-to-sends. An error there cannot be returned through the wait,
 * and a peer may be waiting for these bytes, so it ends the job at once. */
static void p2p_nap(void *user) {
  srlm_comm *c = user;
  srlm_status st = srlm_comm_progress(c);
  if (st != SRLM_OK) srlm_comm_abort(c, st);
}

srlm_status srlm_comm_open_transport(srlm_comm *c, srlm_comm_transport want) {
  if (!c->roles_assigned) return srlm_error(SRLM_ERR_INTERNAL, "comm", "roles are not assigned");
  if ((unsigned)want >= SRLM_COMM_TRANSPORT_COUNT)
    return srlm_error(SRLM_ERR_RANGE, "run.comm", "transport %d", (int)want);
  if (c->nccl[SRLM_COMM_GROUP_LEARNERS] || c->nccl[SRLM_COMM_GROUP_BCAST] || c->p2p)
    return srlm_error(SRLM_ERR_INTERNAL, "comm", "the transport is already open (srlm_comm_close_transport first)");
#if !SRLM_HAVE_NCCL
  if (want == SRLM_COMM_TRANSPORT_NCCL)
    return srlm_error(SRLM_ERR_CONFIG, "run.comm",
                      "nccl, but this srlm was built without CUDA, so without NCCL; set run.comm: auto or mpi");
#endif
  const int size = c->solo ? 1 : c->size;
  /* every rank's backend and GPU, and whether it could read them */
  struct dev_msg {
    srlm_comm_device d;
    int32_t failed;
    int32_t inorder; /* SRLM_COMM_P2P=inorder here (rank 0's decides for all: one rank's environment may differ) */
  } mine;
  memset(&mine, 0, sizeof mine);
  mine.d.device = -1;
  srlm_status local = SRLM_OK;
  if (c->be) {
    snprintf(mine.d.backend, sizeof mine.d.backend, "%s", c->be->name);
    mine.d.device = c->be->device;
#if SRLM_HAVE_NCCL
    if (want != SRLM_COMM_TRANSPORT_MPI && strcmp(c->be->name, "cuda") == 0)
      local = sr_nccl_device_uuid(c->be->device, mine.d.uuid);
#endif
  }
  mine.failed = local != SRLM_OK;
  /* SRLM_COMM_P2P=inorder: shard payloads by the handshake on MPI in NCCL's order (p2p.h), for CI */
  const char *p2p_env = getenv("SRLM_COMM_P2P");
  mine.inorder = p2p_env && strcmp(p2p_env, "inorder") == 0;
  if (p2p_env && p2p_env[0] && !mine.inorder && c->rank == 0)
    SRLM_WARN("SRLM_COMM_P2P=%s is not 'inorder'; ignored", p2p_env);
  struct dev_msg *all = srlm_xmalloc((size_t)size * sizeof *all);
  srlm_comm_device *devs = srlm_xmalloc((size_t)size * sizeof *devs);
  int *members = srlm_xmalloc((size_t)size * sizeof *members);
  srlm_status st = SRLM_OK;
  all[0] = mine;
  if (!c->solo) {
    MPI_Request req;
    int rc = mpi_then_wait(MPI_Iallgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, c->world, &req),
                           &req);
    if (rc != MPI_SUCCESS) st = srlm_lib_error("MPI", "MPI_Iallgather(devices)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
  }
  for (int r = 0; st == SRLM_OK && r < size; r++) {
    devs[r] = all[r].d;
    if (all[r].failed)
      st = local != SRLM_OK ? local
                            : srlm_error(SRLM_ERR_LIB, "comm", "rank %d could not read its GPU's UUID (its own error says why)", r);
  }
  /* the same decisions on every rank: they depend only on what every rank sent */
  srlm_comm_backend use[SRLM_COMM_GROUP_COUNT] = {SRLM_COMM_MPI, SRLM_COMM_MPI, SRLM_COMM_MPI};
  int first[SRLM_COMM_GROUP_COUNT] = {0, 0, 0};
  const bool inorder = all[0].inorder != 0;
  for (int g = 0; st == SRLM_OK && g < SRLM_COMM_GROUP_COUNT; g++) {
    const int k = group_members(c, (srlm_comm_group)g, members);
    if (k == 0) continue; /* shard payloads of a colocated or one-rank job: all-gathered on MPI */
    first[g] = members[0];
    char why[300];
    st = srlm_comm_choose_transport(want, k_group_names[g], devs, members, k, &use[g], why, sizeof why);
    if (st == SRLM_OK && g == SRLM_COMM_GROUP_SHARDS && inorder && use[g] == SRLM_COMM_NCCL) {
      use[g] = SRLM_COMM_MPI; /* the test hook wins, also between GPUs */
      snprintf(why, sizeof why, "SRLM_COMM_P2P=inorder");
    }
    bool staged = false;
    for (int i = 0; i < k; i++) staged |= strcmp(devs[members[i]].backend, "cpu") != 0 && devs[members[i]].backend[0];
    if (st == SRLM_OK && c->rank == 0) {
      char ver[32] = "";
#if SRLM_HAVE_NCCL
      sr_nccl_version(ver, sizeof ver);
#endif
      if (g == SRLM_COMM_GROUP_SHARDS)
        SRLM_INFO("comm: %s (%d ranks): headers on MPI, bytes %s%s (%s)", k_group_names[g], k,
                  use[g] == SRLM_COMM_NCCL ? "by NCCL send/recv, after the receiver's clear-to-send, NCCL "
                  : inorder               ? "on MPI in NCCL's order after the receiver's clear-to-send (SRLM_COMM_P2P=inorder)"
                                          : "on MPI, from host memory",
                  use[g] == SRLM_COMM_NCCL ? ver : "", why);
      else
        SRLM_INFO("comm: %s (%d rank%s): %s%s (%s)", k_group_names[g], k, k == 1 ? "" : "s",
                  use[g] == SRLM_COMM_NCCL ? "NCCL " : staged ? "MPI, device buffers through pinned host memory" : "MPI",
                  use[g] == SRLM_COMM_NCCL ? ver : "", why);
    }
  }
  free(all);
  free(devs);
  free(members);
  if (st != SRLM_OK) return st;
  const bool shard_group = !c->solo && !c->colocated;
#if SRLM_HAVE_NCCL
  for (int g = 0; g < SRLM_COMM_GROUP_COUNT; g++) {
    const bool member = g == SRLM_COMM_GROUP_LEARNERS ? srlm_comm_has_role(c, SRLM_ROLE_LEARNER)
                        : g == SRLM_COMM_GROUP_BCAST  ? c->solo || c->bcast != MPI_COMM_NULL
                                                      : shard_group;
    if (use[g] != SRLM_COMM_NCCL || !member) continue;
    if (g == SRLM_COMM_GROUP_BCAST && c->colocated) { /* the same ranks: one communicator serves both */
      c->nccl[g] = c->nccl[SRLM_COMM_GROUP_LEARNERS];
      continue;
    }
    st = open_group_nccl(c, (srlm_comm_group)g, first[g]);
    /* the shard bytes' pairs connect now: a lazy connection would wait inside the first receive,
       before its clear-to-send could go (comm_nccl.h) */
    if (st == SRLM_OK && g == SRLM_COMM_GROUP_SHARDS) st = sr_nccl_connect_all(c->nccl[g]);
    if (st != SRLM_OK) {
      srlm_comm_close_transport(c, st);
      return st;
    }
  }
  c->nccl_be = c->be;
#else
  (void)first;
#endif
  if (shard_group && (use[SRLM_COMM_GROUP_SHARDS] == SRLM_COMM_NCCL || inorder)) {
    st = sr_p2p_open(c->world, use[SRLM_COMM_GROUP_SHARDS] == SRLM_COMM_NCCL ? SR_P2P_NCCL : SR_P2P_INORDER,
                     c->nccl[SRLM_COMM_GROUP_SHARDS], &c->p2p);
    if (st != SRLM_OK) {
      srlm_comm_close_transport(c, st);
      return st;
    }
    sr_watchdog_on_nap(p2p_nap, c); /* every comm wait moves this rank's payloads on */
  }
  return SRLM_OK;
}

void srlm_comm_close_transport(srlm_comm *c, srlm_status st) {
  if (c->p2p) { /* before its NCCL communicator: its ops hold staging buffers there */
    if (c->early.on) { /* a message matched but never asked for */
      if (st == SRLM_OK)
        SRLM_WARN("comm: a message from rank %d was matched but never received before the transport closed",
                  c->early.from);
      if (c->early.rx) sr_p2p_fetch_drop(c->p2p, c->early.rx); /* its buffer may still be written: left */
      else free(c->early.buf);
      memset(&c->early, 0, sizeof c->early);
    }
    sr_watchdog_on_nap(NULL, NULL);
    sr_p2p_close(c->p2p);
    c->p2p = NULL;
  }
#if SRLM_HAVE_NCCL
  struct sr_nccl *learn = c->nccl[SRLM_COMM_GROUP_LEARNERS], *bcast = c->nccl[SRLM_COMM_GROUP_BCAST];
  sr_nccl_close(learn, st == SRLM_OK);
  if (bcast != learn) sr_nccl_close(bcast, st == SRLM_OK);
  sr_nccl_close(c->nccl[SRLM_COMM_GROUP_SHARDS], st == SRLM_OK);
#else
  (void)st;
#endif
  for (int g = 0; g < SRLM_COMM_GROUP_COUNT; g++) c->nccl[g] = NULL;
  c->nccl_be = NULL;
}

srlm_comm_backend srlm_comm_transport_of(const srlm_comm *c, srlm_comm_group g) {
  return (unsigned)g < SRLM_COMM_GROUP_COUNT && c->nccl[g] ? SRLM_COMM_NCCL : SRLM_COMM_MPI;
}

/* ---- collectives -------------------------------------------------------- */

srlm_status srlm_comm_barrier(srlm_comm *c) {
  if (c->solo) return SRLM_OK;
  MPI_Request req;
  SRLM_MPI_WAIT(MPI_Ibarrier(c->world, &req), req);
  return SRLM_OK;
}

srlm_status srlm_comm_agree(srlm_comm *c, srlm_status local) {
  if (c->solo) { /* the same words as a job of several ranks */
    if (local == SRLM_OK) return SRLM_OK;
    const char *msg = srlm_error_message();
    char copy[AGREE_MSG];
    snprintf(copy, sizeof copy, "%s", msg[0] ? msg : srlm_status_name(local));
    return srlm_error(local, "rank 0 (colocated)", "%s", copy);
  }
  int failed = local != SRLM_OK;
  int *flags = srlm_xmalloc((size_t)c->size * sizeof *flags);
  MPI_Request req;
  int rc = mpi_then_wait(MPI_Iallgather(&failed, 1, MPI_INT, flags, 1, MPI_INT, c->world, &req), &req);
  int first = -1, nfailed = 0;
  for (int r = 0; rc == MPI_SUCCESS && r < c->size; r++) {
    if (!flags[r]) continue;
    if (first < 0) first = r;
    nfailed++;
  }
  free(flags);
  if (rc != MPI_SUCCESS) return srlm_lib_error("MPI", "MPI_Allgather(ok flags)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
  if (first < 0) return SRLM_OK;
  /* the first failing rank tells everyone its code and message */
  struct {
    int code;
    char msg[AGREE_MSG];
  } m;
  memset(&m, 0, sizeof m);
  if (c->rank == first) {
    m.code = (int)local;
    const char *msg = srlm_error_message();
    snprintf(m.msg, sizeof m.msg, "%s", msg[0] ? msg : srlm_status_name(local));
  }
  SRLM_MPI_WAIT(MPI_Ibcast(&m, (int)sizeof m, MPI_BYTE, first, c->world, &req), req);
  m.msg[AGREE_MSG - 1] = '\0';
  srlm_status code = m.code > SRLM_OK && m.code < SRLM_STATUS_COUNT ? (srlm_status)m.code : SRLM_ERR_INTERNAL;
  char where[64];
  snprintf(where, sizeof where, "rank %d (%s)", first, label_of(c, first));
  if (nfailed > 1) return srlm_error(code, where, "%s (and %d other ranks failed)", m.msg, nfailed - 1);
  return srlm_error(code, where, "%s", m.msg);
}

SRLM_NORETURN void srlm_comm_abort(srlm_comm *c, srlm_status code) {
  (void)c; /* MPI_COMM_WORLD, not c->world: the abort must end every rank of the job */
  const char *msg = srlm_error_message();
  srlm_log(SRLM_LOG_ERROR, "%s", msg[0] ? msg : srlm_status_name(code));
  fflush(stdout);
  fflush(stderr);
  int ec = srlm_status_exit_code(code);
  if (ec == 0) ec = 1;
  int inited = 0, fin = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&fin);
  if (inited && !fin) MPI_Abort(MPI_COMM_WORLD, ec);
  exit(ec); /* MPI not running: this process is the whole job */
}

/* Backend memory through MPI (which takes host memory): a bucket at a time through the
 * comm's pinned staging piece (PIN_PIECE), or in place on host backends. */
typedef struct staging {
  srlm_backend *be;
  char *host; /* (cap elements) pinned; NULL on host-memory backends */
  int64_t cap;
  size_t esz; /* bytes an element: 4 (fp32), 2 (the bf16 weights of the broadcast) */
} staging;

static srlm_status staging_open(srlm_comm *c, staging *s, srlm_backend *be, int64_t cap, size_t esz) {
  s->be = be;
  s->host = NULL;
  s->cap = cap;
  s->esz = esz;
  if (be->host_memory || cap == 0) return SRLM_OK;
  return pin_get(c, be, PIN_PIECE, (size_t)cap * esz, (void **)&s->host);
}

/* The host view of elements w[off .. off + cnt): w itself on host backends, else the
 * staging buffer, filled from the device when `load`. */
static srlm_status staging_get(staging *s, void *w, int64_t off, int64_t cnt, int load, void **out) {
  char *at = (char *)w + (size_t)off * s->esz;
  *out = at;
  if (!s->host) return SRLM_OK;
  *out = s->host;
  if (!load || cnt == 0) return SRLM_OK;
  return srlm_backend_copy_d2h(s->be, s->host, at, (size_t)cnt * s->esz);
}

/* Writes the staging buffer back to w[off .. off + cnt) (nothing on host backends). */
static srlm_status staging_put(staging *s, void *w, int64_t off, int64_t cnt) {
  if (!s->host || cnt == 0) return SRLM_OK;
  return srlm_backend_copy_h2d(s->be, (char *)w + (size_t)off * s->esz, s->host, (size_t)cnt * s->esz);
}

/* After every bucket went by: a receiver's dtype, size or version mismatch, else *version =
 * the root's. */
static srlm_status bcast_verdict(int brank, int64_t n, int64_t root_n, srlm_dtype dt, srlm_dtype root_dt, int64_t want,
                                 int64_t got, bool mismatch, int64_t *version) {
  if (brank != 0 && root_dt != dt)
    return srlm_error(SRLM_ERR_INTERNAL, "weight broadcast", "learner 0 sent %s weights, this rank holds %s ones",
                      srlm_dtype_name(root_dt), srlm_dtype_name(dt));
  if (brank != 0 && root_n != n)
    return srlm_error(SRLM_ERR_INTERNAL, "weight broadcast", "learner 0 sent %lld weights, this rank holds %lld",
                      (long long)root_n, (long long)n);
  if (mismatch)
    return srlm_error(SRLM_ERR_INTERNAL, "weight broadcast", "learner 0 sent policy version %lld, this rank expected %lld",
                      (long long)got, (long long)want);
  *version = got;
  return SRLM_OK;
}

srlm_status srlm_comm_bcast_weights(srlm_comm *c, void *w, int64_t n, srlm_dtype dt, int64_t *version,
                                    size_t bucket_bytes) {
  srlm_backend *be = c->be ? c->be : srlm_backend_cpu();
  if (!c->roles_assigned) return srlm_error(SRLM_ERR_INTERNAL, "weight broadcast", "roles are not assigned");
  const size_t esz = srlm_dtype_size(dt);
  if (dt != SRLM_F32 && dt != SRLM_BF16) return srlm_error(SRLM_ERR_INTERNAL, "weight broadcast", "dtype %d", (int)dt);
  struct sr_nccl *nc = c->nccl[SRLM_COMM_GROUP_BCAST];
  /* solo: the root is everyone (only a forced NCCL communicator of one rank still moves) */
  if (!nc && (c->solo || c->bcast == MPI_COMM_NULL)) return SRLM_OK;
  if (n < 0) return srlm_error(SRLM_ERR_RANGE, "weight broadcast", "n = %lld", (long long)n);
  int brank = 0;
  if (!c->solo) SRLM_MPI(MPI_Comm_rank(c->bcast, &brank));
  if (bucket_bytes == 0) bucket_bytes = DEFAULT_BUCKET_BYTES;
  if (bucket_bytes > CHUNK_BYTES) bucket_bytes = CHUNK_BYTES;
  int64_t hdr[5] = {BCAST_MAGIC, *version, n, (int64_t)(bucket_bytes / esz), (int64_t)dt};
  if (hdr[3] < 1) hdr[3] = 1;
  MPI_Request req;
  if (!c->solo) SRLM_MPI_WAIT(MPI_Ibcast(hdr, 5, MPI_INT64_T, 0, c->bcast, &req), req);
  if (hdr[0] != BCAST_MAGIC || (hdr[4] != SRLM_F32 && hdr[4] != SRLM_BF16) || hdr[3] < 1 ||
      hdr[3] > (int64_t)(CHUNK_BYTES / srlm_dtype_size((srlm_dtype)hdr[4])) || hdr[2] < 0)
    return srlm_error(SRLM_ERR_INTERNAL, "weight broadcast", "bad header from learner 0 (messages out of step)");
  int64_t want = *version, got = hdr[1], root_n = hdr[2], bucket = hdr[3];
  const srlm_dtype root_dt = (srlm_dtype)hdr[4];
  const size_t root_esz = srlm_dtype_size(root_dt);
  /* a receiver that cannot take the weights still joins every bucket (in the root's
     element size), so no rank waits */
  bool mismatch = brank != 0 && (root_dt != dt || root_n != n || (want >= 0 && got != want));
  const int64_t one = root_n < bucket ? root_n : bucket;
#if SRLM_HAVE_NCCL
  if (nc) { /* the buckets GPU to GPU; a receiver that cannot take them joins into scratch */
    SRLM_TRY(sr_nccl_bcast(nc, w, mismatch ? NULL : w, root_n, root_esz, 0, bucket));
    return bcast_verdict(brank, n, root_n, dt, root_dt, want, got, mismatch, version);
  }
#endif
  /* A rank that cannot take (or stage) the weights still joins every bucket through a
     scratch buffer, so no rank waits; it reports its error afterwards (the root's error
     ends the job at its top level, receivers' weights are then never used). Elements go
     as bytes: the broadcast copies, it never adds. */
  staging sg = {be, NULL, 0, esz};
  srlm_status st = mismatch ? SRLM_OK : staging_open(c, &sg, be, one, esz);
  const size_t scratch_bytes = (size_t)(one > 0 ? one : 1) * root_esz;
  void *scratch = mismatch || st != SRLM_OK ? srlm_xmalloc(scratch_bytes) : NULL;
  int rc = MPI_SUCCESS;
  for (int64_t off = 0; off < root_n && rc == MPI_SUCCESS; off += bucket) {
    const int64_t cnt = root_n - off < bucket ? root_n - off : bucket;
    void *buf = scratch;
    if (!scratch && (st = staging_get(&sg, w, off, cnt, brank == 0, &buf)) != SRLM_OK)
      buf = scratch = srlm_xmalloc(scratch_bytes);
    rc = mpi_then_wait(MPI_Ibcast(buf, (int)((size_t)cnt * root_esz), MPI_BYTE, 0, c->bcast, &req), &req);
    if (rc == MPI_SUCCESS && !scratch && brank != 0 && (st = staging_put(&sg, w, off, cnt)) != SRLM_OK)
      scratch = srlm_xmalloc(scratch_bytes);
  }
  free(scratch);
  if (rc != MPI_SUCCESS) return srlm_lib_error("MPI", "MPI_Bcast(weight bucket)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
  SRLM_TRY(st);
  return bcast_verdict(brank, n, root_n, dt, root_dt, want, got, mismatch, version);
}

/* Sum in learner-rank order: each learner sums the slice it owns, then all gather. */
static srlm_status allreduce_ordered(MPI_Comm comm, int L, int me, float *g, int64_t n, bool mean) {
  const int64_t round_max = (int64_t)(CHUNK_BYTES / sizeof(float));
  int *scnt = srlm_xmalloc((size_t)L * sizeof(int)), *sdsp = srlm_xmalloc((size_t)L * sizeof(int));
  int *rcnt = srlm_xmalloc((size_t)L * sizeof(int)), *rdsp = srlm_xmalloc((size_t)L * sizeof(int));
  float *recv = NULL;
  int rc = MPI_SUCCESS;
  for (int64_t off = 0; off < n && rc == MPI_SUCCESS; off += round_max) {
    int64_t m = n - off < round_max ? n - off : round_max;
    for (int j = 0; j < L; j++) {
      int64_t a = m * j / L, b = m * (j + 1) / L;
      sdsp[j] = (int)a;
      scnt[j] = (int)(b - a);
    }
    int mine = scnt[me];
    for (int j = 0; j < L; j++) {
      rcnt[j] = mine;
      rdsp[j] = j * mine;
    }
    recv = srlm_xrealloc(recv, ((size_t)L * (size_t)mine + 1) * sizeof(float));
    MPI_Request req;
    rc = mpi_then_wait(MPI_Ialltoallv(g + off, scnt, sdsp, MPI_FLOAT, recv, rcnt, rdsp, MPI_FLOAT, comm, &req), &req);
    if (rc != MPI_SUCCESS) break;
    float *out = g + off + sdsp[me];
    for (int k = 0; k < mine; k++) {
      float s = recv[k];
      for (int j = 1; j < L; j++) s += recv[(size_t)j * (size_t)mine + (size_t)k];
      out[k] = mean ? s / (float)L : s;
    }
    rc = mpi_then_wait(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, g + off, scnt, sdsp, MPI_FLOAT, comm, &req),
                       &req);
  }
  free(recv);
  free(scnt);
  free(sdsp);
  free(rcnt);
  free(rdsp);
  if (rc != MPI_SUCCESS)
    return srlm_lib_error("MPI", "MPI_Alltoallv/MPI_Allgatherv(gradient slices)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
  return SRLM_OK;
}

srlm_status srlm_comm_allreduce_grads(srlm_comm *c, float *g, int64_t n, srlm_comm_reduce op, srlm_comm_order order) {
  srlm_backend *be = c->be ? c->be : srlm_backend_cpu();
  if (!srlm_comm_has_role(c, SRLM_ROLE_LEARNER))
    return srlm_error(SRLM_ERR_INTERNAL, "gradient all-reduce", "rank %d (%s) is not a learner", c->rank,
                      srlm_comm_role_label(c));
  if (n < 0 || (unsigned)op >= SRLM_COMM_REDUCE_COUNT)
    return srlm_error(SRLM_ERR_RANGE, "gradient all-reduce", "n = %lld, op %d", (long long)n, (int)op);
#if SRLM_HAVE_NCCL
  /* both orders: NCCL's own, fixed for a fixed layout (comm.h) */
  if (c->nccl[SRLM_COMM_GROUP_LEARNERS])
    return n == 0 ? SRLM_OK
                  : sr_nccl_allreduce(c->nccl[SRLM_COMM_GROUP_LEARNERS], g, g, n, op == SRLM_COMM_MEAN,
                                      (int64_t)(DEFAULT_BUCKET_BYTES / sizeof(float)));
#endif
  if (c->solo) return SRLM_OK;
  MPI_Comm comm = c->role[SRLM_ROLE_LEARNER];
  int L = 0, me = 0;
  SRLM_MPI(MPI_Comm_size(comm, &L));
  SRLM_MPI(MPI_Comm_rank(comm, &me));
  if (L == 1 || n == 0) return SRLM_OK;
  /* device gradients are staged a piece at a time: every learner stages the same pieces,
     so the collectives below match; a staging failure is this learner's and is agreed on
     by the caller before the next collective */
  const int64_t piece = (int64_t)(CHUNK_BYTES / sizeof(float));
  staging sg;
  SRLM_TRY(staging_open(c, &sg, be, n < piece ? n : piece, sizeof(float)));
  srlm_status st = SRLM_OK;
  for (int64_t off = 0; off < n && st == SRLM_OK; off += piece) {
    const int64_t cnt = n - off < piece ? n - off : piece;
    float *h;
    st = staging_get(&sg, g, off, cnt, 1, (void **)&h);
    if (st != SRLM_OK) break;
    if (order == SRLM_COMM_DETERMINISTIC) {
      st = allreduce_ordered(comm, L, me, h, cnt, op == SRLM_COMM_MEAN);
    } else {
      MPI_Request req;
      int rc = mpi_then_wait(MPI_Iallreduce(MPI_IN_PLACE, h, (int)cnt, MPI_FLOAT, MPI_SUM, comm, &req), &req);
      if (rc != MPI_SUCCESS) st = srlm_lib_error("MPI", "MPI_Allreduce(gradients)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
      if (st == SRLM_OK && op == SRLM_COMM_MEAN)
        for (int64_t i = 0; i < cnt; i++) h[i] /= (float)L;
    }
    if (st == SRLM_OK) st = staging_put(&sg, g, off, cnt);
  }
  return st;
}

/* ---- ZeRO-1 over the learners ------------------------------------------- */

/* The learner group's size and this learner's rank; *L = 1 when there is nothing to do. */
static srlm_status learner_group(srlm_comm *c, const char *what, int64_t n, const int64_t *bounds, int *L, int *me) {
  *L = 1;
  *me = 0;
  if (!srlm_comm_has_role(c, SRLM_ROLE_LEARNER))
    return srlm_error(SRLM_ERR_INTERNAL, what, "rank %d (%s) is not a learner", c->rank, srlm_comm_role_label(c));
  if (n < 0) return srlm_error(SRLM_ERR_RANGE, what, "n = %lld", (long long)n);
  if (c->solo) return SRLM_OK;
  SRLM_MPI(MPI_Comm_size(c->role[SRLM_ROLE_LEARNER], L));
  SRLM_MPI(MPI_Comm_rank(c->role[SRLM_ROLE_LEARNER], me));
  if (*L > 1 && bounds && (bounds[0] != 0 || bounds[*L] != n))
    return srlm_error(SRLM_ERR_INTERNAL, what, "shard bounds [%lld .. %lld] do not cover the %lld elements",
                      (long long)bounds[0], (long long)bounds[*L], (long long)n);
  for (int j = 0; *L > 1 && bounds && j < *L; j++)
    if (bounds[j + 1] < bounds[j])
      return srlm_error(SRLM_ERR_INTERNAL, what, "shard bounds decrease at learner %d", j);
  return SRLM_OK;
}

/* The host view of x (n floats): x itself on host backends, else a pinned copy (the comm's
 * PIN_WHOLE). */
static srlm_status whole_get(srlm_comm *c, srlm_backend *be, float *x, int64_t n, float **h) {
  *h = x;
  if (be->host_memory || n == 0) return SRLM_OK;
  SRLM_TRY(pin_get(c, be, PIN_WHOLE, (size_t)n * sizeof(float), (void **)h));
  srlm_status st = srlm_backend_copy_d2h(be, *h, x, (size_t)n * sizeof(float));
  if (st != SRLM_OK) *h = NULL;
  return st;
}

static srlm_status whole_put(srlm_backend *be, float *x, float *h, int64_t off, int64_t cnt, srlm_status st) {
  if (h == x || !h) return st;
  if (st == SRLM_OK && cnt > 0) st = srlm_backend_copy_h2d(be, x + off, h + off, (size_t)cnt * sizeof(float));
  return st;
}

/* Rounds of at most CHUNK_BYTES: in round k learner j's piece is [bounds[j] + k q,
 * min(bounds[j + 1], bounds[j] + (k + 1) q)). */
static int64_t piece_count(const int64_t *bounds, int j, int64_t k, int64_t q) {
  int64_t a = bounds[j] + k * q, left = bounds[j + 1] - a;
  return left <= 0 ? 0 : left < q ? left : q;
}

static int64_t largest_range(const int64_t *bounds, int L) {
  int64_t most = 0;
  for (int j = 0; j < L; j++)
    if (bounds[j + 1] - bounds[j] > most) most = bounds[j + 1] - bounds[j];
  return most;
}

/* q: a learner's piece per round (L q floats a round, at most CHUNK_BYTES). */
static int64_t round_size(const int64_t *bounds, int L) {
  int64_t q = (int64_t)(CHUNK_BYTES / sizeof(float)) / L, most = largest_range(bounds, L);
  if (q > most) q = most;
  return q > 0 ? q : 1;
}

static int64_t rounds_of(const int64_t *bounds, int L, int64_t q) { return (largest_range(bounds, L) + q - 1) / q; }

#if SRLM_HAVE_NCCL
/* ZeRO-1 on the learners' NCCL communicator, in place: one ncclReduceScatter/ncclAllGather
 * when the learners' ranges are equal, else one ncclReduce/ncclBroadcast per owner range in
 * an NCCL group. One learner: the whole array is its range. */
static srlm_status zero1_nccl(srlm_comm *c, void *x, int64_t n, const int64_t *bounds, int L, bool reduce, size_t esz) {
  struct sr_nccl *nc = c->nccl[SRLM_COMM_GROUP_LEARNERS];
  const int64_t whole[2] = {0, n};
  if (L == 1) bounds = whole;
  if (!bounds) return srlm_error(SRLM_ERR_INTERNAL, "ZeRO-1", "no shard bounds for %d learners", L);
  if (n == 0) return SRLM_OK;
  const bool grouped = !sr_nccl_equal_ranges(bounds, L);
  return reduce ? sr_nccl_reduce_scatter(nc, x, x, bounds, grouped) : sr_nccl_allgather(nc, x, x, bounds, grouped, esz);
}
#endif

srlm_status srlm_comm_reduce_scatter_grads(srlm_comm *c, float *g, int64_t n, const int64_t *bounds) {
  int L, me;
  SRLM_TRY(learner_group(c, "gradient reduce-scatter", n, bounds, &L, &me));
#if SRLM_HAVE_NCCL
  if (c->nccl[SRLM_COMM_GROUP_LEARNERS]) return zero1_nccl(c, g, n, bounds, L, true, sizeof(float));
#endif
  if (L == 1 || n == 0) return SRLM_OK;
  srlm_backend *be = c->be ? c->be : srlm_backend_cpu();
  MPI_Comm comm = c->role[SRLM_ROLE_LEARNER];
  const int64_t q = round_size(bounds, L);
  float *h;
  SRLM_TRY(whole_get(c, be, g, n, &h));
  int *scnt = srlm_xmalloc((size_t)L * sizeof(int)), *dsp = srlm_xmalloc((size_t)L * sizeof(int));
  int *rcnt = srlm_xmalloc((size_t)L * sizeof(int));
  float *send = srlm_xmalloc((size_t)L * (size_t)q * sizeof(float)), *recv = srlm_xmalloc((size_t)L * (size_t)q * sizeof(float));
  int rc = MPI_SUCCESS;
  const int64_t rounds = rounds_of(bounds, L, q);
  for (int64_t k = 0; k < rounds && rc == MPI_SUCCESS; k++) {
    const int mine = (int)piece_count(bounds, me, k, q);
    for (int j = 0; j < L; j++) {
      scnt[j] = (int)piece_count(bounds, j, k, q);
      dsp[j] = (int)((int64_t)j * q);
      rcnt[j] = mine;
      memcpy(send + (size_t)j * (size_t)q, h + bounds[j] + k * q, (size_t)scnt[j] * sizeof(float));
    }
    MPI_Request req;
    rc = mpi_then_wait(MPI_Ialltoallv(send, scnt, dsp, MPI_FLOAT, recv, rcnt, dsp, MPI_FLOAT, comm, &req), &req);
    if (rc != MPI_SUCCESS) break;
    float *out = h + bounds[me] + k * q;
    for (int t = 0; t < mine; t++) { /* learner-rank order, as srlm_comm_allreduce_grads */
      float v = recv[t];
      for (int j = 1; j < L; j++) v += recv[(size_t)j * (size_t)q + (size_t)t];
      out[t] = v;
    }
  }
  free(scnt);
  free(dsp);
  free(rcnt);
  free(send);
  free(recv);
  srlm_status st = rc == MPI_SUCCESS ? SRLM_OK
                                     : srlm_lib_error("MPI", "MPI_Alltoallv(gradient shards)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
  return whole_put(be, g, h, bounds[me], bounds[me + 1] - bounds[me], st);
}

/* The all-gather over MPI: x (n elements of esz bytes) in backend memory (staged whole
 * through a pinned host copy on a device backend) or, with host set, host memory; the
 * elements move as bytes in rounds of at most CHUNK_BYTES. */
/* Every learner's range of x to all (root < 0), or to learner root only (the others' x is
 * neither written nor, outside their own range, read: host buffers there may stay untouched). */
static srlm_status allgather_mpi(srlm_comm *c, void *x, int64_t n, size_t esz, const int64_t *bounds, int L, int me,
                                 bool host, int root) {
  srlm_backend *be = host ? srlm_backend_cpu() : c->be ? c->be : srlm_backend_cpu();
  MPI_Comm comm = c->role[SRLM_ROLE_LEARNER];
  int64_t q = (int64_t)(CHUNK_BYTES / esz) / L, most = largest_range(bounds, L);
  if (q > most) q = most;
  if (q < 1) q = 1;
  char *h = x;
  if (!be->host_memory && n > 0) { /* staged whole through the comm's PIN_WHOLE */
    SRLM_TRY(pin_get(c, be, PIN_WHOLE, (size_t)n * esz, (void **)&h));
    SRLM_TRY(srlm_backend_copy_d2h(be, h, x, (size_t)n * esz));
  }
  int *cnt = srlm_xmalloc((size_t)L * sizeof(int)), *dsp = srlm_xmalloc((size_t)L * sizeof(int));
  const bool receives = root < 0 || me == root;
  char *recv = receives ? srlm_xmalloc((size_t)L * (size_t)q * esz) : NULL;
  int rc = MPI_SUCCESS;
  const int64_t rounds = rounds_of(bounds, L, q);
  for (int64_t k = 0; k < rounds && rc == MPI_SUCCESS; k++) {
    for (int j = 0; j < L; j++) {
      cnt[j] = (int)((size_t)piece_count(bounds, j, k, q) * esz);
      dsp[j] = (int)((size_t)j * (size_t)q * esz);
    }
    MPI_Request req;
    char *send = h + (size_t)(bounds[me] + k * q) * esz;
    rc = mpi_then_wait(root < 0 ? MPI_Iallgatherv(send, cnt[me], MPI_BYTE, recv, cnt, dsp, MPI_BYTE, comm, &req)
                                : MPI_Igatherv(send, cnt[me], MPI_BYTE, recv, cnt, dsp, MPI_BYTE, root, comm, &req),
                       &req);
    for (int j = 0; receives && rc == MPI_SUCCESS && j < L; j++)
      if (j != me) memcpy(h + (size_t)(bounds[j] + k * q) * esz, recv + dsp[j], (size_t)cnt[j]);
  }
  free(cnt);
  free(dsp);
  free(recv);
  srlm_status st = rc == MPI_SUCCESS ? SRLM_OK
                                     : srlm_lib_error("MPI", "MPI_Allgatherv(shards)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
  if (h != (char *)x && st == SRLM_OK && n > 0) st = srlm_backend_copy_h2d(be, x, h, (size_t)n * esz);
  return st;
}

srlm_status srlm_comm_allgather_shards(srlm_comm *c, void *x, int64_t n, srlm_dtype dt, const int64_t *bounds) {
  int L, me;
  SRLM_TRY(learner_group(c, "shard all-gather", n, bounds, &L, &me));
  const size_t esz = srlm_dtype_size(dt);
  if (dt != SRLM_F32 && dt != SRLM_BF16) return srlm_error(SRLM_ERR_INTERNAL, "shard all-gather", "dtype %d", (int)dt);
#if SRLM_HAVE_NCCL
  if (c->nccl[SRLM_COMM_GROUP_LEARNERS]) return zero1_nccl(c, x, n, bounds, L, false, esz);
#endif
  if (L == 1 || n == 0) return SRLM_OK;
  return allgather_mpi(c, x, n, esz, bounds, L, me, false, -1);
}

srlm_status srlm_comm_allgather_ranges_host(srlm_comm *c, float *x, int64_t n, int64_t lo, int64_t hi) {
  return srlm_comm_gather_ranges_host(c, x, n, lo, hi, -1);
}

srlm_status srlm_comm_gather_ranges_host(srlm_comm *c, float *x, int64_t n, int64_t lo, int64_t hi, int root) {
  int L, me;
  SRLM_TRY(learner_group(c, "master all-gather", n, NULL, &L, &me));
  if (root >= L) return srlm_error(SRLM_ERR_INTERNAL, "master gather", "root learner %d of %d", root, L);
  if (lo < 0 || hi < lo || hi > n)
    return srlm_error(SRLM_ERR_RANGE, "master all-gather", "range [%lld, %lld) of %lld elements", (long long)lo,
                      (long long)hi, (long long)n);
  if (L == 1) {
    if (lo != 0 || hi != n)
      return srlm_error(SRLM_ERR_INTERNAL, "master all-gather", "one learner holds [%lld, %lld) of %lld", (long long)lo,
                        (long long)hi, (long long)n);
    return SRLM_OK;
  }
  MPI_Comm comm = c->role[SRLM_ROLE_LEARNER];
  int64_t mine[2] = {lo, hi}, *all = srlm_xmalloc((size_t)L * 2 * sizeof *all);
  MPI_Request req;
  int rc = mpi_then_wait(MPI_Iallgather(mine, 2, MPI_INT64_T, all, 2, MPI_INT64_T, comm, &req), &req);
  if (rc != MPI_SUCCESS) {
    free(all);
    return srlm_lib_error("MPI", "MPI_Allgather(master ranges)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
  }
  int64_t *bounds = srlm_xmalloc(((size_t)L + 1) * sizeof *bounds);
  srlm_status st = SRLM_OK;
  for (int j = 0; j < L && st == SRLM_OK; j++) {
    if (all[2 * j] != (j ? all[2 * j - 1] : 0))
      st = srlm_error(SRLM_ERR_INTERNAL, "master all-gather", "learner %d holds [%lld, %lld), which does not follow "
                      "the learner before it", j, (long long)all[2 * j], (long long)all[2 * j + 1]);
    bounds[j] = all[2 * j];
  }
  bounds[L] = n;
  if (st == SRLM_OK && all[2 * L - 1] != n)
    st = srlm_error(SRLM_ERR_INTERNAL, "master all-gather", "the learners' ranges end at %lld, not %lld",
                    (long long)all[2 * L - 1], (long long)n);
  free(all);
  /* every learner saw the same ranges, so all return here alike or all gather */
  if (st == SRLM_OK && n > 0) st = allgather_mpi(c, x, n, sizeof(float), bounds, L, me, true, root);
  free(bounds);
  return st;
}

#define TAG_CHAIN 0x5a31

srlm_status srlm_comm_chain_f64(srlm_comm *c, double *x, int stage) {
  int L, me;
  SRLM_TRY(learner_group(c, "ordered sum", 0, NULL, &L, &me));
  if (L == 1) return SRLM_OK;
  MPI_Comm comm = c->role[SRLM_ROLE_LEARNER];
  MPI_Request req;
  if (stage == 0) {
    if (me > 0) SRLM_MPI_WAIT(MPI_Irecv(x, 1, MPI_DOUBLE, me - 1, TAG_CHAIN, comm, &req), req);
    return SRLM_OK;
  }
  if (me < L - 1) SRLM_MPI_WAIT(MPI_Isend(x, 1, MPI_DOUBLE, me + 1, TAG_CHAIN, comm, &req), req);
  SRLM_MPI_WAIT(MPI_Ibcast(x, 1, MPI_DOUBLE, L - 1, comm, &req), req);
  return SRLM_OK;
}

/* ---- the gradient reduce overlapped with the backward (comm.h) ----------- */

typedef struct ov_bucket {
  int phase;          /* 0 free, 1 slices to their owners in flight, 2 sums back in flight */
  int64_t seq;        /* bucket number k (srlm_comm_bucket) */
  int64_t lo, cnt;    /* g[lo, lo + cnt) */
  float *h;           /* its host view: g + lo on host backends, else host */
  float *host;        /* (b) the comm's pinned staging of this slot (PIN_OV0 + slot); NULL on host backends */
  float *recv;        /* (recv_cap) every learner's slice of this learner's part */
  size_t recv_cap;
  int *cnt_s, *dsp_s; /* (L) learner j's part of the bucket: [dsp_s[j], + cnt_s[j]) */
  int *cnt_r, *dsp_r; /* (L) this learner's part from each learner, back to back */
  MPI_Request req;
} ov_bucket;

typedef struct ov_state {
  srlm_backend *be;
  float *g;        /* (n) backend memory */
  int64_t n, b;    /* floats; bucket floats */
  int64_t *bounds; /* (L + 1) ZeRO-1 owners, or NULL: all-reduce */
  int L, me;
  bool nccl;       /* the learner group is on NCCL */
  bool abandoned;  /* dropped after an error: buckets may still be in flight */
  int64_t nb;      /* buckets in all */
  int64_t started; /* buckets started (0..nb), in order */
  int64_t summed;  /* buckets whose slices arrived and were summed (0..started), in order */
  ov_bucket slot[OV_SLOTS];
} ov_state;

static void ov_free(srlm_comm *c) {
  ov_state *o = c->ov;
  if (!o) return;
  c->ov = NULL;
  for (int i = 0; i < OV_SLOTS; i++) {
    ov_bucket *k = &o->slot[i];
    /* a collective that may still write them (an abandoned step; the job is ending): kept */
    if (o->abandoned && k->phase != 0) continue;
    free(k->recv);
    free(k->cnt_s);
    free(k->dsp_s);
    free(k->cnt_r);
    free(k->dsp_r);
  }
  if (!o->abandoned) {
    free(o->bounds);
    free(o);
  }
}

static srlm_status ov_mpi_error(const char *call, int rc, const char *file, int line) {
  return srlm_lib_error("MPI", call, rc, sr_mpi_desc(rc), file, line);
}

/* Bucket k's slots: every learner's part (the deterministic all-reduce's equal slices, or
 * the ZeRO-1 owners' ranges inside the bucket), and this learner's receive layout. */
static void ov_layout(const ov_state *o, ov_bucket *k) {
  for (int j = 0; j < o->L; j++) {
    int64_t a, b;
    if (o->bounds) {
      a = o->bounds[j] - k->lo, b = o->bounds[j + 1] - k->lo;
      a = a < 0 ? 0 : a > k->cnt ? k->cnt : a;
      b = b < 0 ? 0 : b > k->cnt ? k->cnt : b;
      if (b < a) b = a;
    } else {
      a = k->cnt * j / o->L, b = k->cnt * (j + 1) / o->L;
    }
    k->dsp_s[j] = (int)a;
    k->cnt_s[j] = (int)(b - a);
  }
  const int mine = k->cnt_s[o->me];
  for (int j = 0; j < o->L; j++) {
    k->cnt_r[j] = mine;
    k->dsp_r[j] = j * mine;
  }
}

/* The sums of bucket k's part of this learner arrived: add them in learner-rank order (the
 * bits of allreduce_ordered and the MPI reduce-scatter), then send them back to all
 * (all-reduce) or keep them (ZeRO-1: only the owner's range is the step's sum). */
static srlm_status ov_summed(srlm_comm *c, ov_state *o, ov_bucket *k) {
  const int mine = k->cnt_s[o->me];
  float *out = k->h + k->dsp_s[o->me];
  for (int t = 0; t < mine; t++) {
    float v = k->recv[t];
    for (int j = 1; j < o->L; j++) v += k->recv[(size_t)j * (size_t)mine + (size_t)t];
    out[t] = v;
  }
  if (o->bounds) {
    k->phase = 0;
    if (!k->host || mine == 0) return SRLM_OK;
    return srlm_backend_copy_h2d(o->be, o->g + k->lo + k->dsp_s[o->me], out, (size_t)mine * sizeof(float));
  }
  int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, k->h, k->cnt_s, k->dsp_s, MPI_FLOAT, c->ov_comm[1], &k->req);
  if (rc != MPI_SUCCESS) return ov_mpi_error("MPI_Iallgatherv(gradient bucket sums)", rc, __FILE__, __LINE__);
  k->phase = 2;
  return SRLM_OK;
}

/* Moves every bucket in flight as far as it goes without waiting. Slices are summed in
 * bucket order, so the second phase's collectives are posted in the same order everywhere. */
static srlm_status ov_progress(srlm_comm *c, ov_state *o) {
  for (bool moved = true; moved;) {
    moved = false;
    for (int i = 0; i < OV_SLOTS; i++) {
      ov_bucket *k = &o->slot[i];
      if (k->phase == 1 && k->seq == o->summed) {
        int done = 0, rc = MPI_Test(&k->req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return ov_mpi_error("MPI_Ialltoallv(gradient bucket slices)", rc, __FILE__, __LINE__);
        if (!done) continue;
        o->summed++;
        SRLM_TRY(ov_summed(c, o, k));
        moved = true;
      } else if (k->phase == 2) {
        int done = 0, rc = MPI_Test(&k->req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return ov_mpi_error("MPI_Iallgatherv(gradient bucket sums)", rc, __FILE__, __LINE__);
        if (!done) continue;
        k->phase = 0;
        moved = true;
        if (k->host) SRLM_TRY(srlm_backend_copy_h2d(o->be, o->g + k->lo, k->host, (size_t)k->cnt * sizeof(float)));
      }
    }
  }
  return SRLM_OK;
}

/* Starts bucket o->started: on NCCL queued after the backend's stream; on MPI in a free slot
 * (waiting for the oldest bucket when all are in flight), staged to the host, and its
 * slices posted to their owners. */
static srlm_status ov_start(srlm_comm *c, ov_state *o) {
  const int64_t seq = o->started;
  int64_t lo, hi;
  srlm_comm_bucket(o->n, o->b, seq, &lo, &hi);
  if (o->nccl) {
#if SRLM_HAVE_NCCL
    SRLM_TRY(sr_nccl_bucket_start(c->nccl[SRLM_COMM_GROUP_LEARNERS], o->g, lo, hi - lo, o->bounds));
    o->started++;
    return SRLM_OK;
#endif
  }
  ov_bucket *k = NULL;
  for (long ns = 50000;;) {
    for (int i = 0; i < OV_SLOTS && !k; i++)
      if (o->slot[i].phase == 0) k = &o->slot[i];
    if (k) break;
    SRLM_TRY(ov_progress(c, o));
    for (int i = 0; i < OV_SLOTS && !k; i++)
      if (o->slot[i].phase == 0) k = &o->slot[i];
    if (k) break;
    sr_watchdog_nap(&ns, 2000000); /* as wait_polite */
  }
  k->seq = seq;
  k->lo = lo;
  k->cnt = hi - lo;
  if (!k->cnt_s) {
    k->cnt_s = srlm_xmalloc((size_t)o->L * sizeof(int));
    k->dsp_s = srlm_xmalloc((size_t)o->L * sizeof(int));
    k->cnt_r = srlm_xmalloc((size_t)o->L * sizeof(int));
    k->dsp_r = srlm_xmalloc((size_t)o->L * sizeof(int));
  }
  ov_layout(o, k);
  const size_t need = (size_t)o->L * (size_t)k->cnt_s[o->me] + 1;
  if (need > k->recv_cap) {
    k->recv = srlm_xrealloc(k->recv, need * sizeof(float));
    k->recv_cap = need;
  }
  k->h = o->g + lo;
  if (!o->be->host_memory) {
    if (!k->host) SRLM_TRY(pin_get(c, o->be, PIN_OV0 + (int)(k - o->slot), (size_t)o->b * sizeof(float), (void **)&k->host));
    k->h = k->host;
    SRLM_TRY(srlm_backend_copy_d2h(o->be, k->host, o->g + lo, (size_t)k->cnt * sizeof(float)));
  }
  int rc = MPI_Ialltoallv(k->h, k->cnt_s, k->dsp_s, MPI_FLOAT, k->recv, k->cnt_r, k->dsp_r, MPI_FLOAT, c->ov_comm[0],
                          &k->req);
  if (rc != MPI_SUCCESS) return ov_mpi_error("MPI_Ialltoallv(gradient bucket slices)", rc, __FILE__, __LINE__);
  k->phase = 1;
  o->started++;
  return SRLM_OK;
}

srlm_status srlm_comm_reduce_begin(srlm_comm *c, float *g, int64_t n, const int64_t *bounds, size_t bucket_bytes) {
  const char *what = "overlapped gradient reduce";
  if (c->ov && c->ov->abandoned)
    return srlm_error(SRLM_ERR_INTERNAL, what, "an earlier step's reduce was abandoned after an error");
  if (c->ov) return srlm_error(SRLM_ERR_INTERNAL, what, "begin while the previous step's reduce is open");
  int L, me;
  SRLM_TRY(learner_group(c, what, n, bounds, &L, &me));
  if (bucket_bytes == 0) bucket_bytes = DEFAULT_BUCKET_BYTES;
  if (bucket_bytes > CHUNK_BYTES) bucket_bytes = CHUNK_BYTES;
  ov_state *o = srlm_xcalloc(1, sizeof *o);
  o->be = c->be ? c->be : srlm_backend_cpu();
  o->g = g;
  o->n = n;
  o->b = (int64_t)(bucket_bytes / sizeof(float));
  if (o->b < 1) o->b = 1;
  o->L = L;
  o->me = me;
  o->nccl = c->nccl[SRLM_COMM_GROUP_LEARNERS] != NULL;
  /* ZeRO-1 over MPI: a bucket inside one learner's shard brings that learner L parts of the
     bucket at once (all-to-all, int counts and displacements up to L x bucket floats), in
     each of the slots in flight: the bucket is cut to DEFAULT_BUCKET_BYTES / L, so a slot's
     receive stays one default bucket whatever L and train.reduce_bucket_mb (the bits do not
     depend on the bucket size on MPI) */
  if (bounds && !o->nccl && L > 1) {
    const int64_t cap = (int64_t)(DEFAULT_BUCKET_BYTES / sizeof(float)) / L;
    if (o->b > cap) o->b = cap > 0 ? cap : 1;
  }
  /* nothing to exchange: one learner on MPI (NCCL moves even one, as the other collectives) */
  o->nb = (L > 1 || o->nccl) ? (n + o->b - 1) / o->b : 0;
  if (bounds && o->nb > 0) {
    const int64_t whole[2] = {0, n};
    if (L == 1) bounds = whole;
    o->bounds = srlm_xmalloc((size_t)(L + 1) * sizeof *o->bounds);
    memcpy(o->bounds, bounds, (size_t)(L + 1) * sizeof *o->bounds);
  }
  c->ov = o;
  return SRLM_OK;
}

srlm_status srlm_comm_reduce_ready(srlm_comm *c, int64_t from) {
  ov_state *o = c->ov;
  if (!o || o->abandoned) return srlm_error(SRLM_ERR_INTERNAL, "overlapped gradient reduce", "no reduce is open");
  if (from < 0 || from > o->n)
    return srlm_error(SRLM_ERR_RANGE, "overlapped gradient reduce", "final from %lld outside [0, %lld]", (long long)from,
                      (long long)o->n);
  const int64_t may = o->nb > 0 ? srlm_comm_buckets_final(o->n, o->b, from) : 0;
  while (o->started < may) SRLM_TRY(ov_start(c, o));
  return o->nccl ? SRLM_OK : ov_progress(c, o);
}

srlm_status srlm_comm_reduce_end(srlm_comm *c) {
  ov_state *o = c->ov;
  if (!o || o->abandoned) return srlm_error(SRLM_ERR_INTERNAL, "overlapped gradient reduce", "no reduce is open");
  srlm_status st = SRLM_OK;
  while (st == SRLM_OK && o->started < o->nb) st = ov_start(c, o);
  if (st == SRLM_OK && o->nccl) {
#if SRLM_HAVE_NCCL
    if (o->nb > 0) st = sr_nccl_bucket_finish(c->nccl[SRLM_COMM_GROUP_LEARNERS]);
#endif
  }
  for (long ns = 50000; st == SRLM_OK && !o->nccl;) {
    st = ov_progress(c, o);
    bool busy = false;
    for (int i = 0; i < OV_SLOTS; i++) busy |= o->slot[i].phase != 0;
    if (!busy) break;
    if (st == SRLM_OK) sr_watchdog_nap(&ns, 2000000); /* as wait_polite */
  }
  if (st != SRLM_OK) {
    srlm_comm_reduce_abandon(c);
    return st;
  }
  ov_free(c);
  return SRLM_OK;
}

void srlm_comm_reduce_abandon(srlm_comm *c) {
  ov_state *o = c->ov;
  if (!o || o->abandoned) return;
  bool busy = false;
  for (int i = 0; i < OV_SLOTS; i++) busy |= o->slot[i].phase != 0;
  if (!busy) { /* nothing in flight: nothing can write its buffers any more */
    ov_free(c);
    return;
  }
  o->abandoned = true; /* leaked on purpose: MPI may still write them; the job is ending */
  for (int i = 0; i < OV_SLOTS; i++) /* so is a busy slot's pinned staging: the comm forgets it */
    if (o->slot[i].phase != 0 && o->slot[i].host) {
      c->pin[PIN_OV0 + i].p = NULL;
      c->pin[PIN_OV0 + i].bytes = 0;
    }
}

/* ---- point-to-point ----------------------------------------------------- */

static srlm_status check_peer(const srlm_comm *c, int peer, const char *what) {
  if (peer < 0 || peer >= c->size)
    return srlm_error(SRLM_ERR_RANGE, what, "rank %d outside the world [0, %d)", peer, c->size);
  if (peer == c->rank)
    return srlm_error(SRLM_ERR_INTERNAL, what, "rank %d cannot message itself (a blocking send to self deadlocks)", peer);
  return SRLM_OK;
}

/* A message header: HDR_WORDS int64, magic | kind, length, the p2p message's number. */
static void header_fill(int64_t *h, uint32_t kind, size_t len, int64_t seq) {
  h[0] = (int64_t)(((uint64_t)MSG_MAGIC << 32) | kind);
  h[1] = (int64_t)len;
  h[2] = seq;
}
static uint32_t header_kind(const int64_t *h) { return (uint32_t)((uint64_t)h[0] & 0xffffffffu); }

/* Blocking: the header, then the bytes (inline, or by the p2p transport: a copy of them posted
 * there, waited for until it has left). */
static srlm_status send_impl(srlm_comm *c, int dest, const void *buf, size_t len, uint32_t kind) {
  SRLM_TRY(check_peer(c, dest, "send"));
  int64_t seq = 0;
  const bool p2p = c->p2p && !(kind & MSG_END);
  if (p2p) {
    void *copy = srlm_xmalloc(len ? len : 1);
    if (len) memcpy(copy, buf, len);
    SRLM_TRY(sr_p2p_post(c->p2p, dest, copy, len, &seq));
    kind |= MSG_P2P;
  }
  int64_t hdr[HDR_WORDS];
  header_fill(hdr, kind, len, seq);
  MPI_Request req;
  SRLM_MPI_WAIT(MPI_Isend(hdr, HDR_WORDS, MPI_INT64_T, dest, TAG_HDR, c->world, &req), req);
  if (p2p) return sr_p2p_wait(c->p2p, seq);
  const char *p = buf;
  for (size_t off = 0; off < len; off += CHUNK_BYTES) {
    int cnt = (int)(len - off < CHUNK_BYTES ? len - off : CHUNK_BYTES);
    SRLM_MPI_WAIT(MPI_Isend(p + off, cnt, MPI_BYTE, dest, TAG_DATA, c->world, &req), req);
  }
  return SRLM_OK;
}

srlm_status srlm_comm_send(srlm_comm *c, int dest, const void *buf, size_t len) {
  if (len > 0 && !buf) return srlm_error(SRLM_ERR_RANGE, "send", "NULL buffer of %zu bytes", len);
  return send_impl(c, dest, buf, len, 0);
}

srlm_status srlm_comm_send_end(srlm_comm *c, int dest) { return send_impl(c, dest, NULL, 0, MSG_END); }

/* Whether hdr is a point-to-point header this rank can take (MSG_P2P needs the transport, and
 * its messages hold at most CHUNK_BYTES). */
static bool header_ok(const srlm_comm *c, const int64_t *hdr) {
  const uint32_t kind = header_kind(hdr);
  return ((uint64_t)hdr[0] >> 32) == MSG_MAGIC && !(kind & ~(MSG_END | MSG_P2P)) && hdr[1] >= 0 &&
         (!(kind & MSG_P2P) || (c->p2p && (uint64_t)hdr[1] <= CHUNK_BYTES));
}

/* With the p2p transport, after a receive ended: matches the next header from src (or any
 * source) if one has come, and clears its bytes to come, so the sender's answer (its next pause
 * or decode step) overlaps the caller's work on the message just received. Never more than one
 * receive under way: with two, from different senders, two receivers could each wait behind
 * the receive the other's sender serves last (p2p.h). */
static srlm_status match_early(srlm_comm *c, int src) {
  int flag = 0;
  MPI_Message mh;
  MPI_Status status;
  SRLM_MPI(MPI_Improbe(src == SRLM_COMM_ANY_SOURCE ? MPI_ANY_SOURCE : src, TAG_HDR, c->world, &flag, &mh, &status));
  if (!flag) return SRLM_OK;
  SRLM_MPI(MPI_Mrecv(c->early.hdr, HDR_WORDS, MPI_INT64_T, &mh, MPI_STATUS_IGNORE));
  c->early.on = true;
  c->early.from = status.MPI_SOURCE;
  c->early.buf = NULL;
  c->early.rx = NULL;
  const uint32_t kind = header_kind(c->early.hdr);
  if (!header_ok(c, c->early.hdr) || !(kind & MSG_P2P) || (kind & MSG_END)) return SRLM_OK; /* checked when taken */
  const size_t n = (size_t)c->early.hdr[1];
  c->early.buf = srlm_xmalloc(n ? n : 1);
  srlm_status st = sr_p2p_fetch_start(c->p2p, c->early.from, c->early.hdr[2], c->early.buf, n, &c->early.rx);
  if (st != SRLM_OK) c->early.buf = NULL; /* a queued receive may still write it: left (the job is ending) */
  return st;
}

srlm_status srlm_comm_recv(srlm_comm *c, int src, void **buf, size_t *len, int *src_out, bool *end) {
  *buf = NULL;
  *len = 0;
  *end = false;
  if (src_out) *src_out = -1;
  if (src != SRLM_COMM_ANY_SOURCE) SRLM_TRY(check_peer(c, src, "recv"));
  int64_t hdr[HDR_WORDS];
  int from;
  char *p = NULL;
  struct sr_p2p_rx *rx = NULL;
  bool have = false; /* p holds the bytes already */
  if (c->early.on && (src == SRLM_COMM_ANY_SOURCE || src == c->early.from)) { /* matched last time */
    memcpy(hdr, c->early.hdr, sizeof hdr);
    from = c->early.from;
    p = c->early.buf;
    rx = c->early.rx;
    have = p && !rx;
    memset(&c->early, 0, sizeof c->early);
  } else {
    if (c->early.rx) { /* another sender's message is under way: its bytes first (one receive at a time) */
      srlm_status st = sr_p2p_fetch_wait(c->p2p, c->early.rx);
      c->early.rx = NULL;
      if (st != SRLM_OK) {
        c->early.buf = NULL; /* may still be written: left */
        return srlm_error_context(st, "receiving %lld bytes from rank %d", (long long)c->early.hdr[1], c->early.from);
      }
    }
    MPI_Status status;
    MPI_Request req;
    SRLM_MPI(MPI_Irecv(hdr, HDR_WORDS, MPI_INT64_T, src == SRLM_COMM_ANY_SOURCE ? MPI_ANY_SOURCE : src, TAG_HDR, c->world,
                       &req));
    SRLM_MPI(wait_polite(&req, &status));
    from = status.MPI_SOURCE;
  }
  if (src_out) *src_out = from;
  if (!header_ok(c, hdr))
    return srlm_error(SRLM_ERR_INTERNAL, "recv", "bad message header from rank %d (messages out of step)", from);
  const uint32_t kind = header_kind(hdr);
  if (kind & MSG_END) {
    *end = true;
    return SRLM_OK;
  }
  size_t n = (size_t)hdr[1];
  if (kind & MSG_P2P) {
    srlm_status st = SRLM_OK;
    if (!have) {
      if (!rx) {
        p = srlm_xmalloc(n ? n : 1);
        st = sr_p2p_fetch_start(c->p2p, from, hdr[2], p, n, &rx);
      }
      if (st == SRLM_OK) st = sr_p2p_fetch_wait(c->p2p, rx);
      /* after an error p may still be the target of a queued receive: it is left (the job is ending) */
      if (st != SRLM_OK) return srlm_error_context(st, "receiving %zu bytes from rank %d", n, from);
    }
    if (!c->early.on) st = match_early(c, src);
    if (st != SRLM_OK) {
      free(p);
      return srlm_error_context(st, "clearing the next message after rank %d's", from);
    }
    *buf = p;
    *len = n;
    return SRLM_OK;
  }
  p = srlm_xmalloc(n ? n : 1);
  MPI_Request req;
  int rc = MPI_SUCCESS;
  for (size_t off = 0; off < n && rc == MPI_SUCCESS; off += CHUNK_BYTES) {
    int cnt = (int)(n - off < CHUNK_BYTES ? n - off : CHUNK_BYTES);
    rc = mpi_then_wait(MPI_Irecv(p + off, cnt, MPI_BYTE, from, TAG_DATA, c->world, &req), &req);
  }
  if (rc != MPI_SUCCESS) {
    free(p);
    return srlm_lib_error("MPI", "MPI_Recv(message data)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
  }
  *buf = p;
  *len = n;
  return SRLM_OK;
}

/* Drops the pending sends whose requests have all completed (their buffers back). */
static srlm_status reap_sends(srlm_comm *c) {
  int w = 0;
  srlm_status st = SRLM_OK;
  for (int i = 0; i < c->n_pending; i++) {
    int done = 0;
    if (st == SRLM_OK) {
      int rc = MPI_Testall(2, c->pending[i].req, &done, MPI_STATUSES_IGNORE);
      if (rc != MPI_SUCCESS) st = srlm_lib_error("MPI", "MPI_Testall(sends)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
    }
    if (done) {
      free(c->pending[i].buf);
      free(c->pending[i].hdr);
    } else {
      c->pending[w++] = c->pending[i];
    }
  }
  c->n_pending = w;
  return st;
}

srlm_status srlm_comm_send_async(srlm_comm *c, int dest, void *buf, size_t len) {
  srlm_status st = check_peer(c, dest, "send");
  if (st == SRLM_OK && len > CHUNK_BYTES)
    st = srlm_error(SRLM_ERR_RANGE, "send", "an asynchronous message holds at most %zu bytes, not %zu", CHUNK_BYTES, len);
  if (st == SRLM_OK && len > 0 && !buf) st = srlm_error(SRLM_ERR_RANGE, "send", "NULL buffer of %zu bytes", len);
  if (st != SRLM_OK) {
    free(buf);
    return st;
  }
  uint32_t kind = 0;
  int64_t seq = 0;
  if (c->p2p) { /* the bytes wait in the p2p transport for dest's clear-to-send */
    SRLM_TRY(sr_p2p_post(c->p2p, dest, buf, len, &seq));
    buf = NULL;
    kind = MSG_P2P;
  }
  if (c->n_pending == c->cap_pending) {
    c->cap_pending = c->cap_pending ? 2 * c->cap_pending : 16;
    c->pending = srlm_xrealloc(c->pending, (size_t)c->cap_pending * sizeof *c->pending);
  }
  pending_send *p = &c->pending[c->n_pending];
  p->hdr = srlm_xmalloc(HDR_WORDS * sizeof *p->hdr);
  header_fill(p->hdr, kind, len, seq);
  p->buf = buf;
  p->req[0] = p->req[1] = MPI_REQUEST_NULL;
  int rc = MPI_Isend(p->hdr, HDR_WORDS, MPI_INT64_T, dest, TAG_HDR, c->world, &p->req[0]);
  if (rc == MPI_SUCCESS && len > 0 && buf) rc = MPI_Isend(buf, (int)len, MPI_BYTE, dest, TAG_DATA, c->world, &p->req[1]);
  if (rc != MPI_SUCCESS) {
    /* a header already posted stays with its request: the job ends on this error */
    if (p->req[0] == MPI_REQUEST_NULL) {
      free(buf);
      free(p->hdr);
    } else {
      c->n_pending++;
    }
    return srlm_lib_error("MPI", "MPI_Isend(message)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
  }
  c->n_pending++;
  /* finished sends give their buffers back as we go, so a long stream does not pile up */
  return reap_sends(c);
}

srlm_status srlm_comm_flush(srlm_comm *c) {
  int i = 0, rc = MPI_SUCCESS;
  for (; i < c->n_pending && rc == MPI_SUCCESS; i++) {
    for (int k = 0; k < 2 && rc == MPI_SUCCESS; k++)
      if (c->pending[i].req[k] != MPI_REQUEST_NULL) rc = wait_polite(&c->pending[i].req[k], NULL);
    if (rc != MPI_SUCCESS) break;
    free(c->pending[i].buf);
    free(c->pending[i].hdr);
  }
  /* after an error the sends left keep their buffers (MPI may still read them): srlm_comm_free cancels them */
  memmove(c->pending, c->pending + i, (size_t)(c->n_pending - i) * sizeof *c->pending);
  c->n_pending -= i;
  if (rc != MPI_SUCCESS) return srlm_lib_error("MPI", "MPI_Test(send)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
  return c->p2p ? sr_p2p_wait(c->p2p, -1) : SRLM_OK;
}

srlm_status srlm_comm_progress(srlm_comm *c) {
  if (!c || !c->p2p) return SRLM_OK;
  return sr_p2p_progress(c->p2p);
}

srlm_status srlm_comm_allgather_bytes(srlm_comm *c, const void *buf, size_t len, void ***bufs, size_t **lens) {
  *bufs = NULL;
  *lens = NULL;
  if (len > (size_t)INT_MAX) return srlm_error(SRLM_ERR_RANGE, "allgather", "%zu bytes is more than INT_MAX", len);
  if (c->solo) {
    *bufs = srlm_xmalloc(sizeof **bufs);
    *lens = srlm_xmalloc(sizeof **lens);
    (*bufs)[0] = srlm_xmalloc(len + 1);
    if (len) memcpy((*bufs)[0], buf, len);
    (*lens)[0] = len;
    return SRLM_OK;
  }
  int64_t mine = (int64_t)len, *all = srlm_xmalloc((size_t)c->size * sizeof *all);
  MPI_Request req;
  int rc = mpi_then_wait(MPI_Iallgather(&mine, 1, MPI_INT64_T, all, 1, MPI_INT64_T, c->world, &req), &req);
  if (rc != MPI_SUCCESS) {
    free(all);
    return srlm_lib_error("MPI", "MPI_Iallgather(lengths)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
  }
  int64_t total = 0;
  for (int r = 0; r < c->size; r++) total += all[r];
  if (total > INT_MAX) {
    free(all);
    return srlm_error(SRLM_ERR_RANGE, "allgather", "%lld bytes in all is more than INT_MAX", (long long)total);
  }
  int *cnt = srlm_xmalloc((size_t)c->size * sizeof *cnt), *dsp = srlm_xmalloc((size_t)c->size * sizeof *dsp);
  for (int r = 0, at = 0; r < c->size; r++) {
    cnt[r] = (int)all[r];
    dsp[r] = at;
    at += cnt[r];
  }
  char *flat = srlm_xmalloc((size_t)total + 1);
  rc = mpi_then_wait(MPI_Iallgatherv(buf, (int)len, MPI_BYTE, flat, cnt, dsp, MPI_BYTE, c->world, &req), &req);
  if (rc == MPI_SUCCESS) {
    *bufs = srlm_xmalloc((size_t)c->size * sizeof **bufs);
    *lens = srlm_xmalloc((size_t)c->size * sizeof **lens);
    for (int r = 0; r < c->size; r++) {
      (*bufs)[r] = srlm_xmalloc((size_t)cnt[r] + 1);
      memcpy((*bufs)[r], flat + dsp[r], (size_t)cnt[r]);
      (*lens)[r] = (size_t)cnt[r];
    }
  }
  free(flat);
  free(cnt);
  free(dsp);
  free(all);
  if (rc != MPI_SUCCESS) return srlm_lib_error("MPI", "MPI_Iallgatherv(bytes)", rc, sr_mpi_desc(rc), __FILE__, __LINE__);
  return SRLM_OK;
}

srlm_status srlm_comm_allreduce_f64(srlm_comm *c, double *x, int n) {
  if (!srlm_comm_has_role(c, SRLM_ROLE_LEARNER))
    return srlm_error(SRLM_ERR_INTERNAL, "statistics all-reduce", "rank %d (%s) is not a learner", c->rank,
                      srlm_comm_role_label(c));
  if (n <= 0 || c->solo) return SRLM_OK;
  MPI_Request req;
  SRLM_MPI_WAIT(MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, c->role[SRLM_ROLE_LEARNER], &req), req);
  return SRLM_OK;
}

srlm_status srlm_comm_bcast_i64(srlm_comm *c, int64_t *x, int n) {
  if (n <= 0 || c->size == 1) return SRLM_OK;
  MPI_Request req;
  SRLM_MPI_WAIT(MPI_Ibcast(x, n, MPI_INT64_T, 0, c->world, &req), req);
  return SRLM_OK;
}

srlm_status srlm_comm_allreduce_max_i64(srlm_comm *c, int64_t *x, int n) {
  if (n <= 0 || c->size == 1) return SRLM_OK;
  MPI_Request req;
  SRLM_MPI_WAIT(MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_INT64_T, MPI_MAX, c->world, &req), req);
  return SRLM_OK;
}

srlm_status srlm_comm_watchdog(srlm_comm *c, const char *dir, double timeout_s) {
  if (c->solo || c->size < 2 || timeout_s <= 0) return SRLM_OK;
  const char **labels = srlm_xmalloc((size_t)c->size * sizeof *labels);
  for (int r = 0; r < c->size; r++) labels[r] = label_of(c, r);
  srlm_status st = sr_watchdog_start(dir, c->rank, c->size, timeout_s, labels);
  free(labels);
  return st;
}

void srlm_comm_phase(srlm_comm *c, const char *fmt, ...) {
  if (c->solo) return;
  char phase[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(phase, sizeof phase, fmt, ap);
  va_end(ap);
  sr_watchdog_phase(phase);
}

void srlm_comm_library_version(char *out, size_t n) {
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  if (MPI_Get_library_version(v, &len) != MPI_SUCCESS) len = snprintf(v, sizeof v, "unknown");
  v[len < (int)sizeof v ? len : (int)sizeof v - 1] = '\0';
  snprintf(out, n, "%.*s", (int)strcspn(v, "\n,"), v);
}
