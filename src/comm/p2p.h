/* srlm comm, the shard-payload transport: the bytes of comm.h's point-to-point messages
 * (rollout shards: token ids, log-probs, judgments) when they go GPU to GPU with NCCL
 * send/recv instead of inline on MPI. Private to src/comm; comm.c opens it for the
 * separate-roles layout when every rank owns a GPU (comm.h, "Point-to-point").
 *
 * The problem it solves. NCCL has no matching engine: a rank's sends and receives run in the
 * order they were queued on its stream, and a send blocks until its receiver runs the
 * matching receive. Roles exchange shards many-to-many and receive from any source, so
 * queueing a send as soon as a shard is ready can deadlock: judge B's send to learner L0 waits
 * behind B -> L1, while L1 waits for judge A's shard, queued behind A -> L0.
 *
 * The handshake (receiver-driven). The header of every message still goes on MPI, with a
 * sequence number, and the bytes wait on the sender until the receiver asks:
 *   sender    sr_p2p_post keeps the bytes (host memory) and gives the header's number;
 *   receiver  having matched the header on MPI, sr_p2p_fetch_start queues the receive, then
 *             sends a clear-to-send (the number, on MPI) and waits for the bytes;
 *   sender    sr_p2p_progress (called at every pause of a comm wait, every decode step of a
 *             rank whose model has the hook, and every post) takes the clear-to-sends that
 *             arrived and queues each send, in arrival order.
 * So a send is queued only when its receive is already queued, and a receiver has one
 * receive under way at a time: in an acyclic flow, by induction from the ranks that only
 * receive, every queued send's receive is the only one its rank waits for, and it is reached
 * (what its rank queued before it are sends, which end), so every send ends, whatever the
 * order in which the messages are sent and taken. Two receives under way on one rank, from
 * different senders, would break this: L1 waiting [J1, J2] and L2 [J2, J1] while J1 serves
 * L2 first and J2 serves L1 first is a cycle. comm.c's recv clears the next message (already
 * matched) as soon as the current one's bytes are in, so the round trip hides behind the
 * caller's work on the current message, and waits that one out before it starts another.
 * The only waits are on peers that progress (a sender answers at its next pause or decode
 * step). The flow must be acyclic, as the roles' is (generators -> judges -> learners): two
 * ranks that each wait for the other's message while the other's clear-to-send is queued
 * behind their own receive would wait for ever (plain MPI would not).
 * Two NCCL rules the handshake also needs: NCCL connects a pair lazily, inside its first
 * send or receive, and that setup waits for the peer's own first call, so the communicator
 * connects every pair at open (sr_nccl_connect_all); and no call may be issued on a
 * communicator while another is still settling (ncclInProgress), so a nap inside an NCCL
 * call of this transport does not nest another (the `busy` flag).
 *
 * Two movers of the bytes:
 *   NCCL     ncclSend/ncclRecv through device staging buffers (comm_nccl.h), on a
 *            communicator over the world, of its own (its own stream);
 *   INORDER  the same handshake with the bytes on MPI, but moved as NCCL moves them: each
 *            rank runs its sends and receives one at a time in the order queued, and a send
 *            is synchronous (MPI_Issend, done only when matched). It exists so CI, which has
 *            no GPU, runs the handshake under NCCL's ordering rules (SRLM_COMM_P2P=inorder):
 *            an order of sends and receives that would deadlock on NCCL deadlocks here too
 *            (tests/mpi/mpi_comm.c's crossing traffic does, when sends are queued at once).
 *            It does not model the two rules above, nor anything else NCCL does.
 *
 * Errors. Every failure is sticky: later calls return it without touching the queues (a
 * queued op may hold a buffer the failed call gave back), and the role's top level ends the
 * job (srlm_comm_abort), which ends the peers' waits as well. */
#ifndef SRLM_COMM_P2P_H
#define SRLM_COMM_P2P_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

struct sr_nccl;
typedef struct sr_p2p sr_p2p;

typedef enum sr_p2p_kind { SR_P2P_NCCL = 0, SR_P2P_INORDER } sr_p2p_kind;

/* MPI's text for error code rc (comm.c; a buffer of the calling thread's, valid until its next
 * call): every MPI error of src/comm names it. */
const char *sr_mpi_desc(int rc);

/* world: the communicator the headers go on (the clear-to-sends and INORDER's bytes use
 * tags of their own there); nccl: the payload communicator (NCCL ranks = world ranks), for
 * SR_P2P_NCCL only, not owned. */
srlm_status sr_p2p_open(MPI_Comm world, sr_p2p_kind kind, struct sr_nccl *nccl, sr_p2p **out);
/* Frees the handle and every message still held (a healthy caller flushed first). NULL: no-op. */
void sr_p2p_close(sr_p2p *p);

/* Sender: takes buf (len bytes, freed once sent, or by close); *seq is the message's number
 * for its header. Nothing moves until dest's clear-to-send. */
srlm_status sr_p2p_post(sr_p2p *p, int dest, void *buf, size_t len, int64_t *seq);

/* Receiver: message seq of rank src (its header matched) into dst (len bytes), in two halves,
 * so a receiver can clear its next message before it waits for (or works on) the current one.
 * start queues the receive and sends the clear-to-send; wait waits for the bytes, progressing
 * meanwhile, and frees *f (also on error); drop gives up a receive that will not be waited for
 * (teardown). dst must stay valid until the wait. One at a time (above). */
typedef struct sr_p2p_rx sr_p2p_rx;
srlm_status sr_p2p_fetch_start(sr_p2p *p, int src, int64_t seq, void *dst, size_t len, sr_p2p_rx **f);
srlm_status sr_p2p_fetch_wait(sr_p2p *p, sr_p2p_rx *f);
void sr_p2p_fetch_drop(sr_p2p *p, sr_p2p_rx *f);

/* Takes the clear-to-sends that arrived (queues their sends) and moves queued transfers on;
 * never waits for a peer (NCCL: its pairs are connected at open; a send's host-to-device copy
 * is waited for, on a stream of its own). Re-entered from a wait inside itself or inside
 * another call of this transport (a nap): returns at once. */
srlm_status sr_p2p_progress(sr_p2p *p);

/* Waits until message seq has left (seq < 0: every message posted), progressing. */
srlm_status sr_p2p_wait(sr_p2p *p, int64_t seq);

#endif
