/* srlm comm, the shard-payload transport: the receiver-driven handshake over NCCL or the
 * in-order MPI mover (p2p.h has the protocol and why). */
#include <stdlib.h>
#include <string.h>

#include "p2p.h"
#include "watchdog.h"
#if SRLM_HAVE_NCCL
#include "comm_nccl.h"
#endif

#define TAG_CTS 7103     /* clear-to-send: one int64, the message's number */
#define TAG_PAYLOAD 7104 /* INORDER: the bytes */

/* One send or receive of bytes, queued in a rank's order. */
typedef struct p2p_op {
  bool send;
  int peer;
  void *buf;
  size_t len;
  bool posted, done;
  MPI_Request req;        /* INORDER */
  struct sr_nccl_op *nop; /* NCCL; NULL once done */
  struct p2p_op *next;    /* INORDER: the rank's queue */
} p2p_op;

/* A posted message: its bytes wait for dest's clear-to-send (op NULL), then travel (op). */
typedef struct p2p_msg {
  int dest;
  int64_t seq;
  void *buf;
  size_t len;
  p2p_op *op;
} p2p_msg;

struct sr_p2p {
  MPI_Comm world;
  sr_p2p_kind kind;
  struct sr_nccl *nccl;
  int64_t next_seq;
  p2p_msg *msg;
  int n_msg, cap_msg;
  p2p_op *head, *tail; /* INORDER: queued ops, run one at a time from the head */
  bool busy;           /* inside sr_p2p_progress or an NCCL call: the nap hook must not nest another */
  srlm_status failed;  /* sticky */
};

/* A receive under way: its op and its clear-to-send (the MPI_Isend reads cts until done). */
struct sr_p2p_rx {
  p2p_op *o;
  int64_t cts;
  MPI_Request cts_req;
  bool got;
  int sent;
};

srlm_status sr_p2p_open(MPI_Comm world, sr_p2p_kind kind, struct sr_nccl *nccl, sr_p2p **out) {
  *out = NULL;
#if !SRLM_HAVE_NCCL
  if (kind == SR_P2P_NCCL) return srlm_error(SRLM_ERR_INTERNAL, "shard payloads", "NCCL mover in a build without NCCL");
#endif
  if (kind == SR_P2P_NCCL && !nccl) return srlm_error(SRLM_ERR_INTERNAL, "shard payloads", "no NCCL communicator");
  sr_p2p *p = srlm_xcalloc(1, sizeof *p);
  p->world = world;
  p->kind = kind;
  p->nccl = nccl;
  *out = p;
  return SRLM_OK;
}

static void op_free(sr_p2p *p, p2p_op *op) {
  if (!op) return;
#if SRLM_HAVE_NCCL
  if (op->nop) sr_nccl_op_drop(p->nccl, op->nop);
#else
  (void)p;
#endif
  if (op->posted && !op->done && op->req != MPI_REQUEST_NULL) {
    (void)MPI_Cancel(&op->req);
    (void)MPI_Request_free(&op->req);
  }
  free(op);
}

void sr_p2p_close(sr_p2p *p) {
  if (!p) return;
  /* ops of the INORDER queue that no message owns: receives of fetches dropped or failed */
  for (p2p_op *o = p->head; o;) {
    p2p_op *next = o->next;
    bool owned = false;
    for (int i = 0; i < p->n_msg && !owned; i++) owned = p->msg[i].op == o;
    if (!owned) op_free(p, o);
    o = next;
  }
  for (int i = 0; i < p->n_msg; i++) {
    op_free(p, p->msg[i].op);
    free(p->msg[i].buf);
  }
  free(p->msg);
  free(p);
}

static srlm_status fail(sr_p2p *p, srlm_status st) {
  if (p->failed == SRLM_OK) p->failed = st;
  return st;
}

static srlm_status mpi_fail(sr_p2p *p, const char *call, int rc, int line) {
  return fail(p, srlm_lib_error("MPI", call, rc, sr_mpi_desc(rc), __FILE__, line));
}

/* INORDER: posts the head op when it is not yet, and pops the ops that finished, in order. */
static srlm_status inorder_run(sr_p2p *p) {
  while (p->head) {
    p2p_op *o = p->head;
    if (!o->posted) {
      int rc = o->send ? MPI_Issend(o->buf, (int)o->len, MPI_BYTE, o->peer, TAG_PAYLOAD, p->world, &o->req)
                       : MPI_Irecv(o->buf, (int)o->len, MPI_BYTE, o->peer, TAG_PAYLOAD, p->world, &o->req);
      if (rc != MPI_SUCCESS) return mpi_fail(p, o->send ? "MPI_Issend(shard payload)" : "MPI_Irecv(shard payload)", rc, __LINE__);
      o->posted = true;
    }
    int flag = 0;
    int rc = MPI_Test(&o->req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(p, "MPI_Test(shard payload)", rc, __LINE__);
    if (!flag) return SRLM_OK;
    o->done = true;
    p->head = o->next;
    if (!p->head) p->tail = NULL;
  }
  return SRLM_OK;
}

/* Queues one transfer: NCCL queues it on the stream at once; INORDER appends it to the queue. */
static srlm_status op_start(sr_p2p *p, bool send, int peer, void *buf, size_t len, p2p_op **out) {
  if (len > (size_t)1 << 30)
    return fail(p, srlm_error(SRLM_ERR_RANGE, "shard payloads", "a message holds at most 1 GiB, not %zu bytes", len));
  p2p_op *o = srlm_xcalloc(1, sizeof *o);
  o->send = send;
  o->peer = peer;
  o->buf = buf;
  o->len = len;
  o->req = MPI_REQUEST_NULL;
  if (p->kind == SR_P2P_INORDER) {
    if (p->tail)
      p->tail->next = o;
    else
      p->head = o;
    p->tail = o;
    *out = o;
    return inorder_run(p);
  }
#if SRLM_HAVE_NCCL
  /* a nap inside the NCCL call (ncclInProgress, settled) must not issue another call on the
     communicator: NCCL forbids it until this one has settled */
  const bool was = p->busy;
  p->busy = true;
  srlm_status st = send ? sr_nccl_send_bytes(p->nccl, peer, buf, len, &o->nop) : sr_nccl_recv_bytes(p->nccl, peer, buf, len, &o->nop);
  p->busy = was;
  if (st != SRLM_OK) {
    free(o);
    return fail(p, st);
  }
  o->posted = true;
#endif
  *out = o;
  return SRLM_OK;
}

/* Whether op o has finished (NCCL: polled; INORDER: the queue moved on past it). */
static srlm_status op_test(sr_p2p *p, p2p_op *o, bool *done) {
  if (p->kind == SR_P2P_INORDER) {
    SRLM_TRY(inorder_run(p));
    *done = o->done;
    return SRLM_OK;
  }
#if SRLM_HAVE_NCCL
  if (o->nop) {
    srlm_status st = sr_nccl_op_test(p->nccl, o->nop, done);
    if (st != SRLM_OK || *done) o->nop = NULL; /* freed by the test */
    if (st != SRLM_OK) return fail(p, st);
    o->done = *done;
  }
#endif
  *done = o->done;
  return SRLM_OK;
}

srlm_status sr_p2p_post(sr_p2p *p, int dest, void *buf, size_t len, int64_t *seq) {
  if (p->failed != SRLM_OK) {
    free(buf);
    return p->failed;
  }
  if (p->n_msg == p->cap_msg) {
    p->cap_msg = p->cap_msg ? 2 * p->cap_msg : 16;
    p->msg = srlm_xrealloc(p->msg, (size_t)p->cap_msg * sizeof *p->msg);
  }
  *seq = p->next_seq++;
  p->msg[p->n_msg++] = (p2p_msg){.dest = dest, .seq = *seq, .buf = buf, .len = len, .op = NULL};
  return sr_p2p_progress(p);
}

srlm_status sr_p2p_progress(sr_p2p *p) {
  if (p->failed != SRLM_OK) return p->failed;
  if (p->busy) return SRLM_OK;
  p->busy = true;
  srlm_status st = SRLM_OK;
  /* clear-to-sends: each queues its message's send, in the order they arrived */
  for (;;) {
    int flag = 0;
    MPI_Message mh;
    MPI_Status status;
    int rc = MPI_Improbe(MPI_ANY_SOURCE, TAG_CTS, p->world, &flag, &mh, &status);
    if (rc != MPI_SUCCESS) {
      st = mpi_fail(p, "MPI_Improbe(clear-to-send)", rc, __LINE__);
      break;
    }
    if (!flag) break;
    int64_t seq = -1;
    rc = MPI_Mrecv(&seq, 1, MPI_INT64_T, &mh, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      st = mpi_fail(p, "MPI_Mrecv(clear-to-send)", rc, __LINE__);
      break;
    }
    p2p_msg *m = NULL;
    for (int i = 0; i < p->n_msg && !m; i++)
      if (p->msg[i].dest == status.MPI_SOURCE && p->msg[i].seq == seq && !p->msg[i].op) m = &p->msg[i];
    if (!m) {
      st = fail(p, srlm_error(SRLM_ERR_INTERNAL, "shard payloads",
                              "rank %d cleared message %lld to be sent, which this rank does not hold (messages out of step)",
                              status.MPI_SOURCE, (long long)seq));
      break;
    }
    st = op_start(p, true, m->dest, m->buf, m->len, &m->op);
    if (st != SRLM_OK) break;
  }
  /* messages that have left give their bytes back */
  int w = 0;
  for (int i = 0; i < p->n_msg; i++) {
    p2p_msg *m = &p->msg[i];
    bool done = false;
    if (st == SRLM_OK && m->op) st = op_test(p, m->op, &done);
    if (done) {
      op_free(p, m->op);
      free(m->buf);
    } else {
      p->msg[w++] = *m;
    }
  }
  p->n_msg = w;
  p->busy = false;
  return st;
}

void sr_p2p_fetch_drop(sr_p2p *p, sr_p2p_rx *f) {
  if (!f) return;
  /* INORDER's receive stays in the rank's queue until it is done there (sr_p2p_close frees it) */
  if (p->kind == SR_P2P_NCCL || f->o->done) op_free(p, f->o);
  if (f->cts_req != MPI_REQUEST_NULL) {
    (void)MPI_Request_free(&f->cts_req); /* MPI finishes the send, reading f->cts: f stays allocated */
    return;
  }
  free(f);
}

/* A fetch that failed: dropped, and the error (sticky already). */
static srlm_status fetch_failed(sr_p2p *p, sr_p2p_rx *f, srlm_status st) {
  sr_p2p_fetch_drop(p, f);
  return st;
}

srlm_status sr_p2p_fetch_start(sr_p2p *p, int src, int64_t seq, void *dst, size_t len, sr_p2p_rx **out) {
  *out = NULL;
  if (p->failed != SRLM_OK) return p->failed;
  sr_p2p_rx *f = srlm_xcalloc(1, sizeof *f);
  f->cts_req = MPI_REQUEST_NULL;
  srlm_status st = op_start(p, false, src, dst, len, &f->o); /* the receive first: the send it clears finds it */
  if (st != SRLM_OK) {
    free(f);
    return st;
  }
  f->cts = seq;
  int rc = MPI_Isend(&f->cts, 1, MPI_INT64_T, src, TAG_CTS, p->world, &f->cts_req);
  if (rc != MPI_SUCCESS) return fetch_failed(p, f, mpi_fail(p, "MPI_Isend(clear-to-send)", rc, __LINE__));
  *out = f;
  return SRLM_OK;
}

srlm_status sr_p2p_fetch_wait(sr_p2p *p, sr_p2p_rx *f) {
  long ns = 20000;
  for (;;) {
    srlm_status st = sr_p2p_progress(p); /* this rank's own messages move on meanwhile */
    if (st == SRLM_OK && !f->got) st = op_test(p, f->o, &f->got);
    if (st != SRLM_OK) return fetch_failed(p, f, st);
    if (!f->sent) {
      int rc = MPI_Test(&f->cts_req, &f->sent, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) return fetch_failed(p, f, mpi_fail(p, "MPI_Test(clear-to-send)", rc, __LINE__));
    }
    if (f->got && f->sent) break;
    sr_watchdog_nap(&ns, 1000000);
  }
  op_free(p, f->o);
  free(f);
  return SRLM_OK;
}

srlm_status sr_p2p_wait(sr_p2p *p, int64_t seq) {
  long ns = 20000;
  for (;;) {
    SRLM_TRY(sr_p2p_progress(p));
    bool left = true;
    for (int i = 0; i < p->n_msg && left; i++) left = seq >= 0 && p->msg[i].seq != seq;
    if (left) return SRLM_OK;
    sr_watchdog_nap(&ns, 2000000);
  }
}
