/* The comm module under mpirun (driven by tests/cli/comm_mpi.sh).
 *
 *   mpi_comm run L G J COLOCATE        layout, weight broadcast (bit-exact, versioned,
 *                                      version mismatch), shards generator -> judge ->
 *                                      learner (intact, stale one dropped), gradient
 *                                      all-reduce (sum, mean, ordered, fast), ZeRO-1,
 *                                      the overlapped reduce in buckets, agree
 *   mpi_comm joined L G J COLOCATE     the same, with MPI initialized by the program
 *   mpi_comm mismatch L G J            role counts that do not match the world size
 *   mpi_comm abort L G J VICTIM        VICTIM reports an error and aborts while the
 *                                      others wait on it: the job must end
 *   mpi_comm check L G J VICTIM        VICTIM fails an SRLM_CHECK (the abort hook)
 *   mpi_comm die L G J VICTIM          VICTIM is killed by SIGKILL
 *   mpi_comm overlap L G J VICTIM      learner VICTIM fails after starting buckets of the
 *                                      overlapped reduce, the other learners wait for them
 * Every rank counts its failed checks; the ranks agree at the end and all exit 1 when
 * any rank failed. Prints "mpi_comm: OK" on rank 0 on success.
 */
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#include "srlm/backend.h"
#include "srlm/comm.h"
#include "srlm/core.h"
#include "srlm/model.h"
#include "srlm/shard.h"
#include "test.h"

#define SEED 424242u
#define SHARDS_PER_GENERATOR 3
#define POLICY 5

static float rndf(uint32_t a, uint32_t b, uint32_t c) {
  return srlm_rng_u01f(srlm_rng_bits(SEED, a, b, c, 0).v[0]) * 2.0f - 1.0f;
}

static void die_on(srlm_comm *c, srlm_status st) {
  if (st != SRLM_OK) srlm_comm_abort(c, st);
}

/* ---- layout ---- */

static void check_layout(srlm_comm *c, int L, int G, int J) {
  int rank = srlm_comm_rank(c), size = srlm_comm_size(c);
  if (srlm_comm_colocated(c)) {
    for (int r = 0; r < SRLM_ROLE_COUNT; r++) {
      EXPECT(srlm_comm_has_role(c, (srlm_role)r), "colocated rank %d lacks role %d", rank, r);
      EXPECT_EQ_INT(srlm_comm_role_rank(c, (srlm_role)r), rank);
      EXPECT_EQ_INT(srlm_comm_role_size(c, (srlm_role)r), size);
    }
    return;
  }
  srlm_role want = rank < L ? SRLM_ROLE_LEARNER : rank < L + G ? SRLM_ROLE_GENERATOR : SRLM_ROLE_JUDGE;
  int base = want == SRLM_ROLE_LEARNER ? 0 : want == SRLM_ROLE_GENERATOR ? L : L + G;
  for (int r = 0; r < SRLM_ROLE_COUNT; r++)
    EXPECT(srlm_comm_has_role(c, (srlm_role)r) == (r == (int)want), "rank %d: has_role(%d) wrong", rank, r);
  EXPECT_EQ_INT(srlm_comm_role_rank(c, want), rank - base);
  EXPECT_EQ_INT(srlm_comm_role_size(c, SRLM_ROLE_LEARNER), L);
  EXPECT_EQ_INT(srlm_comm_role_size(c, SRLM_ROLE_GENERATOR), G);
  EXPECT_EQ_INT(srlm_comm_role_size(c, SRLM_ROLE_JUDGE), J);
  EXPECT_EQ_INT(srlm_comm_world_rank_of(c, want, rank - base), rank);
  EXPECT_STR_EQ(srlm_comm_role_label(c), srlm_role_name(want));
}

/* ---- weight broadcast ---- */

static void fill_weights(float *w, int64_t n) {
  const uint32_t specials[4] = {0x80000000u /* -0 */, 0x00000001u /* denormal */, 0x7fc12345u /* NaN payload */,
                                0xff800000u /* -inf */};
  for (int64_t i = 0; i < n; i++) w[i] = rndf(1, 0, (uint32_t)i);
  for (int i = 0; i < 4; i++) memcpy(&w[i * 1000], &specials[i], 4);
}

static void test_bcast(srlm_comm *c) {
  const int64_t n = 100003; /* not a multiple of the bucket */
  float *want = srlm_xmalloc((size_t)n * sizeof *want), *w = srlm_xmalloc((size_t)n * sizeof *w);
  fill_weights(want, n);
  bool root = srlm_comm_rank(c) == 0;
  bool in_bcast = root || !srlm_comm_has_role(c, SRLM_ROLE_LEARNER) || srlm_comm_colocated(c);
  if (root) memcpy(w, want, (size_t)n * sizeof *w);
  else memset(w, 0x5a, (size_t)n * sizeof *w);
  int64_t version = root ? POLICY : -1;
  double t0 = srlm_time_now();
  EXPECT_EQ_INT(srlm_comm_bcast_weights(c, w, n, SRLM_F32, &version, 4096), SRLM_OK);
  double dt = srlm_time_now() - t0;
  if (in_bcast) {
    EXPECT(memcmp(w, want, (size_t)n * sizeof *w) == 0, "rank %d: broadcast weights differ", srlm_comm_rank(c));
    EXPECT_EQ_INT(version, POLICY);
  } else {
    EXPECT_EQ_INT(version, -1); /* learners other than 0 are not in the broadcast */
  }
  if (root) fprintf(stderr, "bcast: %lld floats in 4 KiB buckets, %.2f ms on rank 0\n", (long long)n, dt * 1e3);
  /* a receiver that expects another version gets an error, and nobody hangs */
  version = root ? POLICY + 1 : POLICY + 2;
  srlm_status st = srlm_comm_bcast_weights(c, w, n, SRLM_F32, &version, 0);
  if (root || !in_bcast) {
    EXPECT_EQ_INT(st, SRLM_OK);
  } else {
    EXPECT_EQ_INT(st, SRLM_ERR_INTERNAL);
    EXPECT_CONTAINS(srlm_error_message(), "learner 0 sent policy version 6, this rank expected 7");
    EXPECT(memcmp(w, want, (size_t)n * sizeof *w) == 0, "rank %d: a refused broadcast overwrote weights",
           srlm_comm_rank(c));
  }
  /* a receiver holding another parameter count gets an error naming both */
  version = -1;
  if (root) version = POLICY;
  st = srlm_comm_bcast_weights(c, w, root ? n : n - 1, SRLM_F32, &version, 1 << 20);
  if (root || !in_bcast) EXPECT_EQ_INT(st, SRLM_OK);
  else EXPECT_CONTAINS(srlm_error_message(), "learner 0 sent 100003 weights, this rank holds 100002");
  /* bf16 weights (what a bf16 model's samplers get: the compute copy, 2 bytes a weight),
     an odd count in buckets of 2048 */
  uint16_t *hw = srlm_xmalloc((size_t)n * sizeof *hw), *hwant = srlm_xmalloc((size_t)n * sizeof *hwant);
  for (int64_t i = 0; i < n; i++) hwant[i] = srlm_f32_to_bf16(want[i]);
  if (root) memcpy(hw, hwant, (size_t)n * sizeof *hw);
  else memset(hw, 0x5a, (size_t)n * sizeof *hw);
  version = root ? POLICY : -1;
  EXPECT_EQ_INT(srlm_comm_bcast_weights(c, hw, n, SRLM_BF16, &version, 4096), SRLM_OK);
  if (in_bcast) {
    EXPECT(memcmp(hw, hwant, (size_t)n * sizeof *hw) == 0, "rank %d: broadcast bf16 weights differ", srlm_comm_rank(c));
    EXPECT_EQ_INT(version, POLICY);
  }
  /* a receiver holding fp32 weights where the root sends bf16 ones: an error naming both,
     its weights untouched, nobody hangs */
  version = root ? POLICY : -1;
  if (root) st = srlm_comm_bcast_weights(c, hw, n, SRLM_BF16, &version, 4096);
  else st = srlm_comm_bcast_weights(c, w, n, SRLM_F32, &version, 4096);
  if (root || !in_bcast) {
    EXPECT_EQ_INT(st, SRLM_OK);
  } else {
    EXPECT_EQ_INT(st, SRLM_ERR_INTERNAL);
    EXPECT_CONTAINS(srlm_error_message(), "learner 0 sent bf16 weights, this rank holds fp32 ones");
    EXPECT(memcmp(w, want, (size_t)n * sizeof *w) == 0, "rank %d: a refused bf16 broadcast overwrote fp32 weights",
           srlm_comm_rank(c));
  }
  free(hw);
  free(hwant);
  free(w);
  free(want);
}

/* A tiny bf16 model for `use` whose fp32 master (a learner's) is off the bf16 grid, as after
 * an AdamW step: every parameter w of the seed-7 init becomes w * (1 + 2^-12) + 2^-20, so its
 * compute copy is the rounding of a master it differs from. */
static srlm_model *bf16_model(srlm_model_use use, uint64_t seed, int shift) {
  srlm_model_config mc;
  srlm_model_config_defaults(&mc, SRLM_MODEL_LLAMA);
  mc.vocab_size = 40, mc.hidden_size = 32, mc.intermediate_size = 64, mc.num_hidden_layers = 2;
  mc.num_attention_heads = 4, mc.num_key_value_heads = 2, mc.max_position_embeddings = 32;
  srlm_model *m = NULL;
  srlm_status st = srlm_model_config_finalize(&mc, "test");
  if (st == SRLM_OK) st = srlm_model_create_for(&mc, seed, srlm_backend_cpu(), SRLM_BF16, use, &m);
  EXPECT(st == SRLM_OK, "bf16 model: %s", srlm_error_message());
  if (!m || !shift) return m;
  const size_t n = srlm_model_num_params(m);
  float *w = srlm_xmalloc(n * sizeof *w);
  EXPECT_EQ_INT(srlm_model_get_params(m, w, 0, n), SRLM_OK);
  for (size_t i = 0; i < n; i++) w[i] = w[i] * (1.0f + 0x1p-12f) + 0x1p-20f;
  EXPECT_EQ_INT(srlm_model_set_params(m, w, 0, n), SRLM_OK);
  free(w);
  return m;
}

/* A bf16 model's weight broadcast as selfreward.c moves it: learner 0 sends its bf16 compute
 * copy, generators and judges receive it into decode-only models (no fp32 master). Each
 * receiver's compute copy must equal the learner's bit for bit (every rank rebuilds the
 * learner's model to compare), and reading its parameters gives that copy widened. */
static void test_bcast_bf16_model(srlm_comm *c) {
  const bool root = srlm_comm_rank(c) == 0;
  const bool learner = srlm_comm_has_role(c, SRLM_ROLE_LEARNER) && !srlm_comm_colocated(c);
  if (learner && !root) return; /* learners other than 0 hold their own weights */
  srlm_model *ref = bf16_model(SRLM_MODEL_LEARN, 7, 1); /* the learner's: a master off the bf16 grid */
  srlm_model *m = root || srlm_comm_colocated(c) ? bf16_model(SRLM_MODEL_LEARN, 7, 1)
                                                  : bf16_model(SRLM_MODEL_DECODE, 99, 0); /* other weights before */
  if (!ref || !m) {
    srlm_model_free(ref);
    srlm_model_free(m);
    return;
  }
  const size_t n = srlm_model_num_params(m);
  EXPECT_EQ_INT(srlm_model_has_master(m), root || srlm_comm_colocated(c));
  int64_t version = root ? POLICY : -1;
  EXPECT_EQ_INT(srlm_comm_bcast_weights(c, srlm_model_compute_params(m), (int64_t)n, SRLM_BF16, &version, 4096), SRLM_OK);
  EXPECT_EQ_INT(version, POLICY);
  uint16_t *got = srlm_xmalloc(n * sizeof *got), *want = srlm_xmalloc(n * sizeof *want);
  float *mw = srlm_xmalloc(n * sizeof *mw), *rw = srlm_xmalloc(n * sizeof *rw);
  EXPECT_EQ_INT(srlm_backend_copy_d2h(srlm_backend_cpu(), got, srlm_model_compute_params(m), n * 2), SRLM_OK);
  EXPECT_EQ_INT(srlm_backend_copy_d2h(srlm_backend_cpu(), want, srlm_model_compute_params(ref), n * 2), SRLM_OK);
  EXPECT(memcmp(got, want, n * 2) == 0, "rank %d: the bf16 weights after the broadcast differ from learner 0's compute "
         "copy", srlm_comm_rank(c));
  EXPECT_EQ_INT(srlm_model_get_params(m, mw, 0, n), SRLM_OK);
  EXPECT_EQ_INT(srlm_model_get_params(ref, rw, 0, n), SRLM_OK);
  size_t off_grid = 0, bad = 0;
  for (size_t i = 0; i < n; i++) {
    off_grid += rw[i] != srlm_round_bf16(rw[i]);
    if (!srlm_model_has_master(m)) bad += memcmp(&mw[i], &(float){srlm_bf16_to_f32(want[i])}, 4) != 0;
  }
  EXPECT(off_grid > n / 2, "the learner's master should be off the bf16 grid (%zu of %zu are)", off_grid, n);
  EXPECT(bad == 0, "rank %d: %zu parameters read back are not the compute copy widened", srlm_comm_rank(c), bad);
  if (!srlm_model_has_master(m)) {
    EXPECT(srlm_model_master(m) == NULL, "a decode-only bf16 model hands out no master");
    EXPECT_EQ_INT(srlm_model_refresh_params(m, 0, n), SRLM_ERR_INTERNAL);
    EXPECT_CONTAINS(srlm_error_message(), "keeps no fp32 master");
    srlm_error_clear();
  }
  free(got);
  free(want);
  free(mw);
  free(rw);
  srlm_model_free(ref);
  srlm_model_free(m);
}

/* ---- shards ---- */

/* The shard a generator makes for index idx (unjudged), deterministic in idx. */
static void make_shard(srlm_shard *s, int64_t idx) {
  srlm_shard_init(s, idx == 0 ? POLICY - 1 : POLICY, 2, idx); /* shard 0 is stale */
  for (int p = 0; p < 2; p++) {
    int32_t ids[20];
    int np = 3 + (int)((idx + p) % 11);
    for (int i = 0; i < np; i++) ids[i] = (int32_t)(idx * 1000 + p * 100 + i);
    int64_t row;
    die_on(NULL, srlm_shard_add_prompt(s, idx * 2 + p, ids, np, &row));
    for (int k = 0; k < 2; k++) {
      int32_t rid[40];
      float lp[40];
      int nr = (int)((idx * 7 + p * 3 + k) % 37);
      for (int i = 0; i < nr; i++) {
        rid[i] = (int32_t)(idx + i);
        lp[i] = -fabsf(rndf(2, (uint32_t)idx, (uint32_t)(p * 100 + k * 40 + i)));
      }
      die_on(NULL, srlm_shard_add_response(s, row, k, rid, lp, nr, SRLM_SHARD_F_EOS, NULL));
    }
  }
}

/* What a judge adds: J = 2 judgments per response. */
static void judge_shard(srlm_shard *s) {
  die_on(NULL, srlm_shard_set_judgments_per_response(s, 2));
  for (int64_t r = 0; r < s->n_responses; r++) {
    for (int j = 0; j < 2; j++) {
      char text[96];
      snprintf(text, sizeof text, "shard %lld response %lld judgment %d\nScore: %d", (long long)s->shard_index,
               (long long)r, j, (int)((r + j) % 6));
      int32_t ids[3] = {(int32_t)r, j, 7};
      die_on(NULL, srlm_shard_add_judgment(s, text, ids, 3, (float)((r + j) % 6)));
    }
    s->mean_score[r] = (float)((r % 6) + ((r + 1) % 6)) / 2.0f;
    s->flags[r] |= SRLM_SHARD_F_SCORED;
  }
}

static int shard_bytes_equal(const srlm_shard *a, const srlm_shard *b) {
  void *x = NULL, *y = NULL;
  size_t nx = 0, ny = 0;
  die_on(NULL, srlm_shard_serialize(a, &x, &nx));
  die_on(NULL, srlm_shard_serialize(b, &y, &ny));
  int eq = nx == ny && memcmp(x, y, nx) == 0;
  free(x);
  free(y);
  return eq;
}

static void send_shard(srlm_comm *c, int dest, const srlm_shard *s) {
  void *buf = NULL;
  size_t len = 0;
  die_on(c, srlm_shard_serialize(s, &buf, &len));
  EXPECT_EQ_INT(srlm_comm_send(c, dest, buf, len), SRLM_OK);
  free(buf);
}

/* Receives one message; returns 0 at an end marker, else parses it into *s. */
static int recv_shard(srlm_comm *c, int src, srlm_shard *s, int *from) {
  void *buf = NULL;
  size_t len = 0;
  bool end = false;
  die_on(c, srlm_comm_recv(c, src, &buf, &len, from, &end));
  if (end) return 0;
  srlm_status st = srlm_shard_parse(buf, len, s);
  free(buf);
  die_on(c, st);
  return 1;
}

static void test_shards_separate(srlm_comm *c) {
  int G = srlm_comm_role_size(c, SRLM_ROLE_GENERATOR), J = srlm_comm_role_size(c, SRLM_ROLE_JUDGE);
  if (srlm_comm_has_role(c, SRLM_ROLE_GENERATOR)) {
    int g = srlm_comm_role_rank(c, SRLM_ROLE_GENERATOR);
    for (int k = 0; k < SHARDS_PER_GENERATOR; k++) {
      int64_t idx = g + (int64_t)G * k;
      srlm_shard s;
      make_shard(&s, idx);
      send_shard(c, srlm_comm_world_rank_of(c, SRLM_ROLE_JUDGE, (int)(idx % J)), &s);
      srlm_shard_free(&s);
    }
    for (int j = 0; j < J; j++) EXPECT_EQ_INT(srlm_comm_send_end(c, srlm_comm_world_rank_of(c, SRLM_ROLE_JUDGE, j)), SRLM_OK);
  }
  if (srlm_comm_has_role(c, SRLM_ROLE_JUDGE)) {
    int ends = 0, got = 0, from = -1;
    int learner0 = srlm_comm_world_rank_of(c, SRLM_ROLE_LEARNER, 0);
    while (ends < G) {
      srlm_shard s, want;
      if (!recv_shard(c, SRLM_COMM_ANY_SOURCE, &s, &from)) {
        ends++;
        continue;
      }
      got++;
      make_shard(&want, s.shard_index);
      EXPECT(shard_bytes_equal(&s, &want), "judge: shard %lld from rank %d differs from what was sent",
             (long long)s.shard_index, from);
      EXPECT_EQ_INT(srlm_comm_world_rank_of(c, SRLM_ROLE_GENERATOR, (int)(s.shard_index % G)), from);
      judge_shard(&s);
      send_shard(c, learner0, &s);
      srlm_shard_free(&s);
      srlm_shard_free(&want);
    }
    EXPECT_EQ_INT(srlm_comm_send_end(c, learner0), SRLM_OK);
    int me = srlm_comm_role_rank(c, SRLM_ROLE_JUDGE), expect = 0;
    for (int64_t idx = 0; idx < (int64_t)G * SHARDS_PER_GENERATOR; idx++) expect += idx % J == me;
    EXPECT_EQ_INT(got, expect);
  }
  if (srlm_comm_role_rank(c, SRLM_ROLE_LEARNER) == 0) {
    int total = G * SHARDS_PER_GENERATOR, ends = 0, kept = 0, stale = 0;
    char *seen = srlm_xcalloc((size_t)total, 1);
    while (ends < J) {
      srlm_shard s, want;
      if (!recv_shard(c, SRLM_COMM_ANY_SOURCE, &s, NULL)) {
        ends++;
        continue;
      }
      make_shard(&want, s.shard_index);
      judge_shard(&want);
      EXPECT(shard_bytes_equal(&s, &want), "learner: judged shard %lld differs", (long long)s.shard_index);
      if (s.shard_index >= 0 && s.shard_index < total) seen[s.shard_index]++;
      bool accept = false;
      EXPECT_EQ_INT(srlm_shard_check_policy(&s, POLICY, 0, &accept), SRLM_OK);
      accept ? kept++ : stale++;
      srlm_shard_free(&s);
      srlm_shard_free(&want);
    }
    for (int i = 0; i < total; i++) EXPECT(seen[i] == 1, "learner saw shard %d %d times", i, seen[i]);
    EXPECT_EQ_INT(stale, 1);
    EXPECT_EQ_INT(kept, total - 1);
    fprintf(stderr, "shards: %d through %d generators -> %d judges -> learner 0, %d stale dropped\n", total, G, J, stale);
    free(seen);
  }
}

/* Many-to-many byte messages in the order that deadlocks NCCL's in-order point-to-point
 * without the handshake (comm.h, "Point-to-point"): every generator and judge sends
 * P2P_MSGS asynchronous messages to every learner, each sender in its own rotated order
 * (sender s starts at learner s mod L), then one blocking message, then ends. Learner l first
 * takes P2P_FIRST messages of each sender, sender by sender in another rotation (from sender
 * l + 1 on), so with two senders and two learners L0 waits for sender 1, whose first message
 * went to L1, while L1 waits for sender 0, whose first went to L0: queued sends would never
 * end. Then it takes the rest from any source, where a receiver that had two receives under
 * way (from different senders) can wait in a cycle (p2p.h). Message k of sender s to learner l holds bytes
 * derived from (s, l, k), of a length that varies (0 bytes, a few, 3 MB). Checks: intact, in
 * each sender's order, all there. Run with SRLM_COMM_P2P=inorder (comm_mpi.sh) it is the
 * handshake under NCCL's ordering rules; without it, MPI inline; with
 * SRLM_TEST_P2P_BACKEND=cuda on a machine with a GPU per rank (bench/gpu_check.sh job, 4 GPUs
 * or more), every rank opens the cuda backend on the GPU of its local rank and the bytes go by
 * NCCL. Learner 0 prints which. */
#define P2P_MSGS 30 /* per sender and learner; the last one blocking */
#define P2P_FIRST 6 /* the first ones taken sender by sender, the rest from any source */
static size_t p2p_len(int k) { return k == 0 ? 0 : k == 3 ? (size_t)3 << 20 : (size_t)(97 * k); }
static unsigned char p2p_byte(int s, int l, int k, size_t i) { return (unsigned char)(s * 31 + l * 7 + k * 13 + i * 5); }

static void test_p2p_crossing(srlm_comm *c) {
  if (srlm_comm_colocated(c)) return;
  const int L = srlm_comm_role_size(c, SRLM_ROLE_LEARNER), me = srlm_comm_rank(c), W = srlm_comm_size(c);
  const char *bk = getenv("SRLM_TEST_P2P_BACKEND"), *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  srlm_backend *be = NULL;
  if (bk && bk[0]) {
    die_on(c, srlm_backend_open(bk, strcmp(bk, "cuda") == 0 && lr ? atoi(lr) : 0, &be)); /* a GPU per rank */
    srlm_comm_set_backend(c, be);
  }
  EXPECT_EQ_INT(srlm_comm_open_transport(c, SRLM_COMM_TRANSPORT_AUTO), SRLM_OK);
  const char *how = srlm_comm_transport_of(c, SRLM_COMM_GROUP_SHARDS) == SRLM_COMM_NCCL ? "NCCL" : "MPI";
  if (!srlm_comm_has_role(c, SRLM_ROLE_LEARNER)) {
    const int s = me - L; /* senders: every generator and judge */
    for (int k = 0; k <= P2P_MSGS; k++)
      for (int j = 0; j < L; j++) {
        const int l = (s + j) % L, dest = srlm_comm_world_rank_of(c, SRLM_ROLE_LEARNER, l);
        const size_t n = p2p_len(k);
        unsigned char *b = srlm_xmalloc(n ? n : 1);
        for (size_t i = 0; i < n; i++) b[i] = p2p_byte(s, l, k, i);
        if (k < P2P_MSGS) {
          die_on(c, srlm_comm_send_async(c, dest, b, n));
        } else {
          die_on(c, srlm_comm_send(c, dest, b, n)); /* the last one blocking */
          free(b);
        }
        die_on(c, srlm_comm_progress(c));
      }
    die_on(c, srlm_comm_flush(c));
    for (int l = 0; l < L; l++) die_on(c, srlm_comm_send_end(c, srlm_comm_world_rank_of(c, SRLM_ROLE_LEARNER, l)));
  } else {
    const int l = srlm_comm_role_rank(c, SRLM_ROLE_LEARNER), S = W - L;
    int *next = srlm_xcalloc((size_t)S, sizeof *next), ends = 0, got = 0;
    for (int step = 0; ends < S; step++) {
      const int first = step < S * P2P_FIRST ? L + (l + 1 + step / P2P_FIRST) % S : SRLM_COMM_ANY_SOURCE;
      void *buf = NULL;
      size_t n = 0;
      int from = -1;
      bool end = false;
      die_on(c, srlm_comm_recv(c, first, &buf, &n, &from, &end));
      const int s = from - L;
      EXPECT(s >= 0 && s < S, "learner %d: message from rank %d, not a sender", l, from);
      if (s < 0 || s >= S) break;
      if (end) {
        EXPECT_EQ_INT(next[s], P2P_MSGS + 1);
        ends++;
        continue;
      }
      const int k = next[s]++;
      EXPECT(n == p2p_len(k), "learner %d: message %d of rank %d has %zu bytes, not %zu", l, k, from, n, p2p_len(k));
      size_t bad = 0;
      for (size_t i = 0; i < n && n == p2p_len(k); i++) bad += ((unsigned char *)buf)[i] != p2p_byte(s, l, k, i);
      EXPECT(bad == 0, "learner %d: message %d of rank %d: %zu bytes differ", l, k, from, bad);
      got++;
      free(buf);
    }
    EXPECT_EQ_INT(got, S * (P2P_MSGS + 1));
    if (l == 0) fprintf(stderr, "p2p: %d senders x %d learners x %d messages crossed (bytes by %s)\n", S, L, P2P_MSGS + 1, how);
    free(next);
  }
  srlm_comm_close_transport(c, SRLM_OK);
  if (be) {
    srlm_comm_set_backend(c, NULL);
    EXPECT_EQ_INT(srlm_backend_close(be), SRLM_OK);
  }
}

/* Colocated: each rank passes its shard to the next rank (even ranks send first). */
static void test_shards_colocated(srlm_comm *c) {
  int rank = srlm_comm_rank(c), size = srlm_comm_size(c);
  srlm_shard s, got, want;
  make_shard(&s, rank + 1);
  judge_shard(&s);
  if (size == 1) {
    void *buf = NULL;
    size_t len = 0;
    die_on(c, srlm_shard_serialize(&s, &buf, &len));
    die_on(c, srlm_shard_parse(buf, len, &got));
    free(buf);
    EXPECT(shard_bytes_equal(&s, &got), "local shard round trip differs");
  } else {
    int next = (rank + 1) % size, prev = (rank + size - 1) % size, from = -1;
    if (rank % 2 == 0) send_shard(c, next, &s);
    EXPECT_EQ_INT(recv_shard(c, prev, &got, &from), 1);
    if (rank % 2 == 1) send_shard(c, next, &s);
    EXPECT_EQ_INT(from, prev);
    make_shard(&want, prev + 1);
    judge_shard(&want);
    EXPECT(shard_bytes_equal(&got, &want), "rank %d: shard from rank %d differs", rank, prev);
    srlm_shard_free(&want);
  }
  srlm_shard_free(&got);
  srlm_shard_free(&s);
}

/* ---- gradient all-reduce ---- */

/* Gradient element i of learner r: mixed magnitudes, so the order of a sum shows. */
static float grad(int r, int64_t i) {
  uint32_t e = srlm_rng_bits(SEED, 4, (uint32_t)r, (uint32_t)i, 0).v[1] % 25;
  return ldexpf(rndf(3, (uint32_t)r, (uint32_t)i), (int)e - 12);
}

static void test_allreduce(srlm_comm *c) {
  if (!srlm_comm_has_role(c, SRLM_ROLE_LEARNER)) {
    float x = 0;
    EXPECT_EQ_INT(srlm_comm_allreduce_grads(c, &x, 1, SRLM_COMM_SUM, SRLM_COMM_FAST), SRLM_ERR_INTERNAL);
    return;
  }
  int L = srlm_comm_role_size(c, SRLM_ROLE_LEARNER), me = srlm_comm_role_rank(c, SRLM_ROLE_LEARNER);
  const int64_t n = 10007;
  float *g = srlm_xmalloc((size_t)n * sizeof *g);
  /* integers: exact in any order, so both orders must give the exact sum */
  for (int order = 0; order < 2; order++) {
    for (int64_t i = 0; i < n; i++) g[i] = (float)((me + 1) * (i % 13));
    EXPECT_EQ_INT(srlm_comm_allreduce_grads(c, g, n, SRLM_COMM_SUM, (srlm_comm_order)order), SRLM_OK);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += g[i] != (float)(L * (L + 1) / 2 * (i % 13));
    EXPECT(bad == 0, "order %d: %d of %lld integer sums wrong (g[12] = %g, expected %d)", order, bad, (long long)n,
           g[12], L * (L + 1) / 2 * 12);
  }
  /* random floats: the ordered sum equals the rank-order sum bit for bit; the mean too */
  for (int op = 0; op < 2; op++) {
    for (int64_t i = 0; i < n; i++) g[i] = grad(me, i);
    EXPECT_EQ_INT(srlm_comm_allreduce_grads(c, g, n, (srlm_comm_reduce)op, SRLM_COMM_DETERMINISTIC), SRLM_OK);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
      float s = grad(0, i);
      for (int r = 1; r < L; r++) s += grad(r, i);
      if (op == SRLM_COMM_MEAN) s /= (float)L;
      if (memcmp(&s, &g[i], 4) != 0) {
        if (!bad) fprintf(stderr, "ordered %s: g[%lld] = %.9g, expected %.9g\n", op ? "mean" : "sum", (long long)i, g[i], s);
        bad++;
      }
    }
    EXPECT(bad == 0, "ordered %s: %d of %lld elements differ from the rank-order sum", op ? "mean" : "sum", bad, (long long)n);
  }
  /* the fast path agrees within reassociation error */
  for (int64_t i = 0; i < n; i++) g[i] = grad(me, i);
  EXPECT_EQ_INT(srlm_comm_allreduce_grads(c, g, n, SRLM_COMM_MEAN, SRLM_COMM_FAST), SRLM_OK);
  double worst = 0;
  int64_t differ = 0;
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    float ordered = grad(0, i);
    for (int r = 0; r < L; r++) s += grad(r, i);
    for (int r = 1; r < L; r++) ordered += grad(r, i);
    ordered /= (float)L;
    differ += memcmp(&ordered, &g[i], 4) != 0;
    worst = fmax(worst, fabs(g[i] - s / L) / fmax(fabs(s / L), 1e-3));
  }
  EXPECT(worst <= 1e-5 * L, "fast mean: max relative error %.3g", worst);
  if (me == 0)
    fprintf(stderr, "allreduce over %d learners: MPI_Allreduce differs from the rank-order sum in %lld of %lld elements\n",
            L, (long long)differ, (long long)n);
  free(g);
}

/* ---- ZeRO-1 collectives ---- */

/* Uneven shards with an empty one (learner 1 of 3+), on host memory and on the simulated
 * CUDA backend's: the reduce-scatter gives each learner's range the rank-order sum (the
 * all-reduce's bits) and leaves the rest alone, the all-gather gives everyone every range,
 * the chain adds in learner order. */
static void test_zero1(srlm_comm *c, srlm_backend *be) {
  if (!srlm_comm_has_role(c, SRLM_ROLE_LEARNER)) {
    double x = 0;
    EXPECT_EQ_INT(srlm_comm_chain_f64(c, &x, 0), SRLM_ERR_INTERNAL);
    return;
  }
  const int L = srlm_comm_role_size(c, SRLM_ROLE_LEARNER), me = srlm_comm_role_rank(c, SRLM_ROLE_LEARNER);
  const int64_t n = 30011;
  int64_t b[9];
  b[0] = 0;
  for (int j = 1; j < L; j++) b[j] = j == 2 ? b[1] : n * j / L + 7; /* learner 1's range is empty with L > 2 */
  b[L] = n;
  const size_t bytes = (size_t)n * sizeof(float);
  float *host = srlm_xmalloc(bytes), *buf = host;
  if (be) EXPECT_EQ_INT(srlm_backend_alloc(be, (void **)&buf, bytes), SRLM_OK);
  srlm_comm_set_backend(c, be);
  for (int64_t i = 0; i < n; i++) host[i] = grad(me, i);
  if (be) EXPECT_EQ_INT(srlm_backend_copy_h2d(be, buf, host, bytes), SRLM_OK);
  EXPECT_EQ_INT(srlm_comm_reduce_scatter_grads(c, buf, n, b), SRLM_OK);
  if (be) EXPECT_EQ_INT(srlm_backend_copy_d2h(be, host, buf, bytes), SRLM_OK);
  int bad = 0;
  for (int64_t i = 0; i < n; i++) {
    float s = grad(0, i);
    for (int r = 1; r < L; r++) s += grad(r, i);
    float want = i >= b[me] && i < b[me + 1] ? s : grad(me, i);
    bad += memcmp(&want, &host[i], 4) != 0;
  }
  EXPECT(bad == 0, "%s reduce-scatter, learner %d of %d: %d elements wrong", be ? "device" : "host", me, L, bad);
  for (int64_t i = 0; i < n; i++) { /* learner j's value in its range only */
    int j = 0;
    while (i >= b[j + 1]) j++;
    host[i] = j == me ? (float)(j * 100000 + i) : -1.0f;
  }
  if (be) EXPECT_EQ_INT(srlm_backend_copy_h2d(be, buf, host, bytes), SRLM_OK);
  EXPECT_EQ_INT(srlm_comm_allgather_shards(c, buf, n, SRLM_F32, b), SRLM_OK);
  if (be) EXPECT_EQ_INT(srlm_backend_copy_d2h(be, host, buf, bytes), SRLM_OK);
  bad = 0;
  for (int64_t i = 0; i < n; i++) {
    int j = 0;
    while (i >= b[j + 1]) j++;
    bad += host[i] != (float)(j * 100000 + i);
  }
  EXPECT(bad == 0, "%s all-gather, learner %d of %d: %d elements wrong", be ? "device" : "host", me, L, bad);
  { /* bf16 elements (a bf16 model's compute copy): learner j's 16-bit patterns in its range */
    uint16_t *hb = srlm_xmalloc((size_t)n * sizeof *hb);
    for (int64_t i = 0; i < n; i++) {
      int j = 0;
      while (i >= b[j + 1]) j++;
      hb[i] = j == me ? (uint16_t)(j * 7919 + i) : 0xffffu;
    }
    if (be) EXPECT_EQ_INT(srlm_backend_copy_h2d(be, buf, hb, (size_t)n * sizeof *hb), SRLM_OK);
    EXPECT_EQ_INT(srlm_comm_allgather_shards(c, be ? (void *)buf : (void *)hb, n, SRLM_BF16, b), SRLM_OK);
    if (be) EXPECT_EQ_INT(srlm_backend_copy_d2h(be, hb, buf, (size_t)n * sizeof *hb), SRLM_OK);
    bad = 0;
    for (int64_t i = 0; i < n; i++) {
      int j = 0;
      while (i >= b[j + 1]) j++;
      bad += hb[i] != (uint16_t)(j * 7919 + i);
    }
    EXPECT(bad == 0, "%s bf16 all-gather, learner %d of %d: %d elements wrong", be ? "device" : "host", me, L, bad);
    free(hb);
  }
  { /* host memory, each learner naming only its range: the master of a ZeRO-1 bf16 learner */
    float *hm = srlm_xmalloc((size_t)n * sizeof *hm);
    for (int64_t i = 0; i < n; i++) hm[i] = i >= b[me] && i < b[me + 1] ? (float)(me * 100000 + i) : -1.0f;
    EXPECT_EQ_INT(srlm_comm_allgather_ranges_host(c, hm, n, b[me], b[me + 1]), SRLM_OK);
    bad = 0;
    for (int64_t i = 0; i < n; i++) {
      int j = 0;
      while (i >= b[j + 1]) j++;
      bad += hm[i] != (float)(j * 100000 + i);
    }
    EXPECT(bad == 0, "host range all-gather, learner %d of %d: %d elements wrong", me, L, bad);
    /* to the last learner only: it gets every range, the others' arrays keep what they held */
    for (int64_t i = 0; i < n; i++) hm[i] = i >= b[me] && i < b[me + 1] ? (float)(me * 100000 + i + 7) : -1.0f;
    EXPECT_EQ_INT(srlm_comm_gather_ranges_host(c, hm, n, b[me], b[me + 1], L - 1), SRLM_OK);
    bad = 0;
    for (int64_t i = 0; i < n; i++) {
      int j = 0;
      while (i >= b[j + 1]) j++;
      bad += hm[i] != (me == L - 1 || j == me ? (float)(j * 100000 + i + 7) : -1.0f);
    }
    EXPECT(bad == 0, "host range gather to learner %d, learner %d of %d: %d elements wrong", L - 1, me, L, bad);
    if (L > 1) { /* ranges that leave a hole: every learner gets the error, nobody hangs */
      EXPECT_EQ_INT(srlm_comm_allgather_ranges_host(c, hm, n, b[me], b[me + 1] - (me == 0)), SRLM_ERR_INTERNAL);
      srlm_error_clear();
    }
    free(hm);
  }
  if (be) { /* a second step's reduce-scatter and all-gathers (fp32, bf16) allocate nothing: pinned staging kept */
    srlm_backend_alloc_counts before, after;
    srlm_backend_alloc_counts_get(be, &before);
    EXPECT_EQ_INT(srlm_comm_reduce_scatter_grads(c, buf, n, b), SRLM_OK);
    EXPECT_EQ_INT(srlm_comm_allgather_shards(c, buf, n, SRLM_F32, b), SRLM_OK);
    EXPECT_EQ_INT(srlm_comm_allgather_shards(c, buf, n, SRLM_BF16, b), SRLM_OK);
    srlm_backend_alloc_counts_get(be, &after);
    EXPECT(L == 1 || (after.host_allocs == before.host_allocs && after.host_frees == before.host_frees &&
                      after.device_allocs == before.device_allocs && after.device_frees == before.device_frees),
           "ZeRO-1, learner %d of %d, second step: %llu pinned allocations and %llu frees (want none)", me, L,
           (unsigned long long)(after.host_allocs - before.host_allocs),
           (unsigned long long)(after.host_frees - before.host_frees));
  }
  /* the chain: ((0 + 0.1) + 1e16) + ... in learner order, not any other */
  double x = 0;
  EXPECT_EQ_INT(srlm_comm_chain_f64(c, &x, 0), SRLM_OK);
  x += me == 1 ? 1e16 : 0.1 * (me + 1);
  EXPECT_EQ_INT(srlm_comm_chain_f64(c, &x, 1), SRLM_OK);
  double want = 0;
  for (int r = 0; r < L; r++) want += r == 1 ? 1e16 : 0.1 * (r + 1);
  EXPECT(memcmp(&x, &want, sizeof x) == 0, "chain over %d learners: %.17g, want %.17g", L, x, want);
  bad = 0;
  int64_t wrong[3] = {0, n, n}; /* bounds that do not cover n */
  if (L == 2) EXPECT_EQ_INT(srlm_comm_reduce_scatter_grads(c, buf, n + 1, wrong), SRLM_ERR_INTERNAL);
  srlm_comm_set_backend(c, NULL);
  if (be) EXPECT_EQ_INT(srlm_backend_free(be, buf), SRLM_OK);
  free(host);
}

static void test_zero1_both(srlm_comm *c) {
  test_zero1(c, NULL);
  srlm_backend *be = NULL;
  srlm_status st = srlm_backend_open("cuda-sim", 0, &be);
  EXPECT(st == SRLM_OK, "open cuda-sim: %s", srlm_error_message());
  if (st != SRLM_OK) return;
  test_zero1(c, be);
  EXPECT_EQ_INT(srlm_backend_close(be), SRLM_OK);
}

/* ---- the reduce overlapped with the backward ---- */

/* The overlapped reduce (srlm_comm_reduce_begin/ready/end) in buckets of 1000 floats (31
 * buckets: more than the 4 in flight), with every learner announcing final gradients on a
 * schedule of its own and the last one announcing none (a learner that ran no backward),
 * on host memory and on the simulated CUDA backend's (pinned staging per slot, kept by the
 * comm: a second round of both makes no allocation on the backend): the
 * all-reduce gives every element the rank-order sum, ZeRO-1's owner ranges (uneven, one
 * empty) theirs with the rest untouched: the bits of srlm_comm_allreduce_grads and
 * srlm_comm_reduce_scatter_grads. */
static void test_overlap(srlm_comm *c, srlm_backend *be) {
  if (!srlm_comm_has_role(c, SRLM_ROLE_LEARNER)) {
    float x = 0;
    EXPECT_EQ_INT(srlm_comm_reduce_begin(c, &x, 1, NULL, 0), SRLM_ERR_INTERNAL);
    srlm_error_clear();
    return;
  }
  const int L = srlm_comm_role_size(c, SRLM_ROLE_LEARNER), me = srlm_comm_role_rank(c, SRLM_ROLE_LEARNER);
  const int64_t n = 30011;
  int64_t b[9];
  b[0] = 0;
  for (int j = 1; j < L; j++) b[j] = j == 2 ? b[1] : n * j / L + 7;
  b[L] = n;
  const size_t bytes = (size_t)n * sizeof(float);
  float *host = srlm_xmalloc(bytes), *buf = host;
  if (be) EXPECT_EQ_INT(srlm_backend_alloc(be, (void **)&buf, bytes), SRLM_OK);
  srlm_comm_set_backend(c, be);
  EXPECT_EQ_INT(srlm_comm_reduce_ready(c, n), SRLM_ERR_INTERNAL); /* nothing open */
  /* twice, as two training steps: the second allocates nothing (pinned staging kept) */
  srlm_backend_alloc_counts before = {0}, after = {0};
  for (int step = 0; step < 2; step++) {
    if (be && step == 1) srlm_backend_alloc_counts_get(be, &before);
    for (int zero = 0; zero < 2; zero++) {
      for (int64_t i = 0; i < n; i++) host[i] = grad(me, i);
      if (be) EXPECT_EQ_INT(srlm_backend_copy_h2d(be, buf, host, bytes), SRLM_OK);
      EXPECT_EQ_INT(srlm_comm_reduce_begin(c, buf, n, zero ? b : NULL, 1000 * sizeof(float)), SRLM_OK);
      EXPECT_EQ_INT(srlm_comm_reduce_begin(c, buf, n, NULL, 0), SRLM_ERR_INTERNAL); /* one at a time */
      if (me < L - 1) /* stages of uneven sizes, a different schedule on each learner */
        for (int64_t from = n - 1; from > 0; from -= 1777 * (me + 1))
          EXPECT_EQ_INT(srlm_comm_reduce_ready(c, from), SRLM_OK);
      EXPECT_EQ_INT(srlm_comm_reduce_end(c), SRLM_OK);
      if (be) EXPECT_EQ_INT(srlm_backend_copy_d2h(be, host, buf, bytes), SRLM_OK);
      int bad = 0;
      for (int64_t i = 0; i < n; i++) {
        float s = grad(0, i);
        for (int r = 1; r < L; r++) s += grad(r, i);
        const float want = !zero || (i >= b[me] && i < b[me + 1]) ? s : grad(me, i);
        if (memcmp(&want, &host[i], 4) != 0) {
          if (!bad) fprintf(stderr, "overlapped %s: g[%lld] = %.9g, expected %.9g\n", zero ? "reduce-scatter" : "all-reduce",
                            (long long)i, host[i], want);
          bad++;
        }
      }
      EXPECT(bad == 0, "%s overlapped %s, learner %d of %d: %d of %lld elements differ from the rank-order sum",
             be ? "device" : "host", zero ? "reduce-scatter" : "all-reduce", me, L, bad, (long long)n);
    }
  }
  if (be) { /* the copies of the check above allocate nothing either */
    srlm_backend_alloc_counts_get(be, &after);
    EXPECT(after.host_allocs == before.host_allocs && after.host_frees == before.host_frees &&
               after.device_allocs == before.device_allocs && after.device_frees == before.device_frees,
           "overlapped reduce, learner %d of %d, second step: %llu pinned allocations and %llu frees, %llu device "
           "allocations and %llu frees (want none)", me, L, (unsigned long long)(after.host_allocs - before.host_allocs),
           (unsigned long long)(after.host_frees - before.host_frees),
           (unsigned long long)(after.device_allocs - before.device_allocs),
           (unsigned long long)(after.device_frees - before.device_frees));
  }
  /* abandoned before anything started: nothing in flight, the next reduce opens */
  EXPECT_EQ_INT(srlm_comm_reduce_begin(c, buf, n, NULL, 0), SRLM_OK);
  srlm_comm_reduce_abandon(c);
  EXPECT_EQ_INT(srlm_comm_reduce_begin(c, buf, n, NULL, 0), SRLM_OK);
  EXPECT_EQ_INT(srlm_comm_reduce_end(c), SRLM_OK);
  srlm_error_clear();
  srlm_comm_set_backend(c, NULL);
  if (be) EXPECT_EQ_INT(srlm_backend_free(be, buf), SRLM_OK);
  free(host);
}

static void test_overlap_both(srlm_comm *c) {
  test_overlap(c, NULL);
  srlm_backend *be = NULL;
  srlm_status st = srlm_backend_open("cuda-sim", 0, &be);
  EXPECT(st == SRLM_OK, "open cuda-sim: %s", srlm_error_message());
  if (st != SRLM_OK) return;
  test_overlap(c, be);
  EXPECT_EQ_INT(srlm_backend_close(be), SRLM_OK);
}

/* ---- agree ---- */

static void test_agree(srlm_comm *c) {
  int rank = srlm_comm_rank(c), size = srlm_comm_size(c), victim = size - 1;
  EXPECT_EQ_INT(srlm_comm_agree(c, SRLM_OK), SRLM_OK);
  srlm_status local = rank == victim ? srlm_error(SRLM_ERR_IO, "planted.txt:3", "planted failure on rank %d", rank) : SRLM_OK;
  srlm_status st = srlm_comm_agree(c, local);
  EXPECT_EQ_INT(st, SRLM_ERR_IO);
  char want[128];
  snprintf(want, sizeof want, "rank %d (%s): planted.txt:3: planted failure on rank %d", victim,
           srlm_comm_colocated(c) ? "colocated" : "judge", victim);
  EXPECT_CONTAINS(srlm_error_message(), want);
  if (size > 1) {
    local = rank >= size - 2 ? srlm_error(SRLM_ERR_FORMAT, "x", "failure %d", rank) : SRLM_OK;
    st = srlm_comm_agree(c, local);
    EXPECT_EQ_INT(st, SRLM_ERR_FORMAT);
    snprintf(want, sizeof want, "x: failure %d (and 1 other ranks failed)", size - 2);
    EXPECT_CONTAINS(srlm_error_message(), want);
  }
  srlm_error_clear();
}

/* ---- backend memory ---- */

/* The weight broadcast and the ordered gradient all-reduce on buffers of the simulated
 * CUDA backend (device memory to the comm: staged through pinned host buffers), in buckets
 * smaller than the weights; the results must be the host path's bit for bit. */
static void test_device_memory(srlm_comm *c) {
  srlm_backend *be = NULL;
  srlm_status st = srlm_backend_open("cuda-sim", 0, &be);
  EXPECT(st == SRLM_OK, "open cuda-sim: %s", srlm_error_message());
  if (st != SRLM_OK) return;
  EXPECT(!be->host_memory, "cuda-sim claims host memory: the staging path would not be exercised");
  srlm_comm_set_backend(c, be);
  const int64_t n = 50021;
  const size_t bytes = (size_t)n * sizeof(float);
  float *want = srlm_xmalloc(bytes), *host = srlm_xmalloc(bytes), *dev = NULL;
  EXPECT_EQ_INT(srlm_backend_alloc(be, (void **)&dev, bytes), SRLM_OK);
  const bool root = srlm_comm_rank(c) == 0;
  const bool in_bcast = root || !srlm_comm_has_role(c, SRLM_ROLE_LEARNER) || srlm_comm_colocated(c);
  fill_weights(want, n);
  if (root) memcpy(host, want, bytes);
  else memset(host, 0x5a, bytes);
  EXPECT_EQ_INT(srlm_backend_copy_h2d(be, dev, host, bytes), SRLM_OK);
  int64_t version = root ? POLICY : -1;
  EXPECT_EQ_INT(srlm_comm_bcast_weights(c, dev, n, SRLM_F32, &version, 4096), SRLM_OK);
  EXPECT_EQ_INT(srlm_backend_copy_d2h(be, host, dev, bytes), SRLM_OK);
  if (in_bcast)
    EXPECT(memcmp(host, want, bytes) == 0, "rank %d: device-memory broadcast differs", srlm_comm_rank(c));
  { /* bf16 device weights through the staging buffer (2 bytes an element) */
    uint16_t *hb = srlm_xmalloc((size_t)n * sizeof *hb), *hbw = srlm_xmalloc((size_t)n * sizeof *hbw);
    for (int64_t i = 0; i < n; i++) hbw[i] = srlm_f32_to_bf16(want[i]);
    if (root) memcpy(hb, hbw, (size_t)n * sizeof *hb);
    else memset(hb, 0x5a, (size_t)n * sizeof *hb);
    EXPECT_EQ_INT(srlm_backend_copy_h2d(be, dev, hb, (size_t)n * sizeof *hb), SRLM_OK);
    version = root ? POLICY : -1;
    EXPECT_EQ_INT(srlm_comm_bcast_weights(c, dev, n, SRLM_BF16, &version, 4096), SRLM_OK);
    EXPECT_EQ_INT(srlm_backend_copy_d2h(be, hb, dev, (size_t)n * sizeof *hb), SRLM_OK);
    if (in_bcast)
      EXPECT(memcmp(hb, hbw, (size_t)n * sizeof *hb) == 0, "rank %d: device-memory bf16 broadcast differs",
             srlm_comm_rank(c));
    free(hb);
    free(hbw);
  }
  if (srlm_comm_has_role(c, SRLM_ROLE_LEARNER)) {
    const int L = srlm_comm_role_size(c, SRLM_ROLE_LEARNER), me = srlm_comm_role_rank(c, SRLM_ROLE_LEARNER);
    for (int64_t i = 0; i < n; i++) host[i] = grad(me, i);
    EXPECT_EQ_INT(srlm_backend_copy_h2d(be, dev, host, bytes), SRLM_OK);
    EXPECT_EQ_INT(srlm_comm_allreduce_grads(c, dev, n, SRLM_COMM_SUM, SRLM_COMM_DETERMINISTIC), SRLM_OK);
    EXPECT_EQ_INT(srlm_backend_copy_d2h(be, host, dev, bytes), SRLM_OK);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
      float s = grad(0, i);
      for (int r = 1; r < L; r++) s += grad(r, i);
      bad += memcmp(&s, &host[i], 4) != 0;
    }
    EXPECT(bad == 0, "device-memory ordered sum: %d of %lld elements differ from the rank-order sum", bad, (long long)n);
  }
  srlm_comm_set_backend(c, NULL);
  EXPECT_EQ_INT(srlm_backend_free(be, dev), SRLM_OK);
  EXPECT_EQ_INT(srlm_backend_close(be), SRLM_OK);
  free(want);
  free(host);
}

/* The transport choice over MPI: every rank sends its backend and GPU; on cuda-sim (not a
 * GPU of its own) both groups stay on MPI, and run.comm nccl is the same config error on
 * every rank, naming the first rank that keeps its group off NCCL. */
static void test_transport(srlm_comm *c) {
  srlm_backend *be = NULL;
  srlm_status st = srlm_backend_open("cuda-sim", 0, &be);
  EXPECT(st == SRLM_OK, "open cuda-sim: %s", srlm_error_message());
  if (st != SRLM_OK) return;
  srlm_comm_set_backend(c, be);
  EXPECT_EQ_INT(srlm_comm_open_transport(c, SRLM_COMM_TRANSPORT_AUTO), SRLM_OK);
  EXPECT_EQ_INT(srlm_comm_transport_of(c, SRLM_COMM_GROUP_LEARNERS), SRLM_COMM_MPI);
  EXPECT_EQ_INT(srlm_comm_transport_of(c, SRLM_COMM_GROUP_BCAST), SRLM_COMM_MPI);
  srlm_comm_close_transport(c, SRLM_OK);
  srlm_error_clear();
  EXPECT_EQ_INT(srlm_comm_open_transport(c, SRLM_COMM_TRANSPORT_NCCL), SRLM_ERR_CONFIG);
  /* a CUDA build names the rank (the same message on every rank); a CPU-only build has no NCCL */
  const char *msg = srlm_error_message();
  EXPECT(strstr(msg, "run.comm: nccl, but the learner group cannot use NCCL: rank 0 runs the cuda-sim backend") ||
             strstr(msg, "run.comm: nccl, but this srlm was built without CUDA"),
         "rank %d: %s", srlm_comm_rank(c), msg);
  EXPECT_EQ_INT(srlm_comm_transport_of(c, SRLM_COMM_GROUP_LEARNERS), SRLM_COMM_MPI);
  srlm_comm_set_backend(c, NULL);
  EXPECT_EQ_INT(srlm_backend_close(be), SRLM_OK);
  srlm_error_clear();
}

static int run(srlm_comm *c, int L, int G, int J) {
  check_layout(c, L, G, J);
  test_bcast(c);
  test_bcast_bf16_model(c);
  if (srlm_comm_colocated(c)) {
    test_shards_colocated(c);
  } else { /* SRLM_COMM_P2P=inorder: the shards go by the handshake (the transport opens it) */
    EXPECT_EQ_INT(srlm_comm_open_transport(c, SRLM_COMM_TRANSPORT_AUTO), SRLM_OK);
    test_shards_separate(c);
    srlm_comm_close_transport(c, SRLM_OK);
    test_p2p_crossing(c);
  }
  test_allreduce(c);
  test_zero1_both(c);
  test_overlap_both(c);
  test_device_memory(c);
  test_transport(c);
  test_agree(c);
  EXPECT_EQ_INT(srlm_comm_barrier(c), SRLM_OK);
  if (g_test_failures) fprintf(stderr, "rank %d: %d of %d checks failed\n", srlm_comm_rank(c), g_test_failures, g_test_checks);
  srlm_status st = g_test_failures ? srlm_error(SRLM_ERR_INTERNAL, "mpi_comm", "%d checks failed", g_test_failures) : SRLM_OK;
  st = srlm_comm_agree(c, st);
  if (srlm_comm_rank(c) == 0) {
    if (st == SRLM_OK) printf("mpi_comm: OK (%d ranks, %s)\n", srlm_comm_size(c), srlm_comm_colocated(c) ? "colocated" : "separate roles");
    else fprintf(stderr, "mpi_comm: FAILED: %s\n", srlm_error_message());
  }
  return st == SRLM_OK ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: mpi_comm run|joined|mismatch|abort|check|die|overlap L G J [COLOCATE|VICTIM]\n");
    return 2;
  }
  const char *mode = argv[1];
  int L = atoi(argv[2]), G = atoi(argv[3]), J = atoi(argv[4]), extra = argc > 5 ? atoi(argv[5]) : 0;
  /* "joined": the program initializes MPI itself, srlm_comm joins it and leaves it up */
  bool joined = strcmp(mode, "joined") == 0;
  if (joined) {
    MPI_Init(&argc, &argv);
    mode = "run";
  }
  srlm_comm *c = NULL;
  srlm_status st = srlm_comm_init(&argc, &argv, SRLM_COMM_MPI, &c);
  if (st != SRLM_OK) {
    fprintf(stderr, "mpi_comm: %s\n", srlm_error_message());
    return 1;
  }
  bool colocate = strcmp(mode, "run") == 0 && extra;
  srlm_comm_roles roles = {L, G, J, colocate};
  st = srlm_comm_assign_roles(c, &roles);
  if (st != SRLM_OK) {
    /* the same error on every rank: rank 0 reports, every rank ends */
    if (srlm_comm_rank(c) == 0) fprintf(stderr, "mpi_comm: error: %s\n", srlm_error_message());
    srlm_comm_free(c);
    return srlm_status_exit_code(st);
  }
  int rc = 0;
  if (strcmp(mode, "run") == 0) {
    rc = run(c, L, G, J);
  } else if (strcmp(mode, "abort") == 0 || strcmp(mode, "check") == 0 || strcmp(mode, "die") == 0) {
    if (srlm_comm_rank(c) == extra) {
      usleep(200 * 1000); /* let the others block first */
      if (mode[0] == 'a') srlm_comm_abort(c, srlm_error(SRLM_ERR_FORMAT, "prompts.jsonl:7", "planted failure on rank %d", extra));
      if (mode[0] == 'c') SRLM_CHECK(extra < 0, "planted check failure on rank %d", extra);
      raise(SIGKILL);
    }
    /* everyone else waits for a message the victim never sends */
    void *buf = NULL;
    size_t len = 0;
    bool end = false;
    srlm_comm_recv(c, extra, &buf, &len, NULL, &end);
    fprintf(stderr, "mpi_comm: rank %d was not stopped\n", srlm_comm_rank(c));
    rc = 3;
  } else if (strcmp(mode, "overlap") == 0) {
    /* learner VICTIM's backward fails after its first buckets started: it drops them and
       ends the job, while the other learners wait for its buckets in reduce_end */
    if (srlm_comm_has_role(c, SRLM_ROLE_LEARNER)) {
      const int64_t n = 30011;
      float *g = srlm_xcalloc((size_t)n, sizeof *g);
      st = srlm_comm_reduce_begin(c, g, n, NULL, 1000 * sizeof(float));
      if (st == SRLM_OK) st = srlm_comm_reduce_ready(c, n / 2);
      if (st == SRLM_OK && srlm_comm_rank(c) == extra) {
        usleep(200 * 1000); /* let the others block first */
        srlm_comm_reduce_abandon(c);
        srlm_comm_abort(c, srlm_error(SRLM_ERR_INTERNAL, "model backward", "planted failure on rank %d", extra));
      }
      if (st == SRLM_OK) st = srlm_comm_reduce_end(c);
      fprintf(stderr, "mpi_comm: rank %d was not stopped (%s)\n", srlm_comm_rank(c), st == SRLM_OK ? "ok" : srlm_error_message());
      free(g);
    } else {
      void *buf = NULL;
      size_t len = 0;
      bool end = false;
      srlm_comm_recv(c, extra, &buf, &len, NULL, &end);
      fprintf(stderr, "mpi_comm: rank %d was not stopped\n", srlm_comm_rank(c));
    }
    rc = 3;
  } else {
    fprintf(stderr, "mpi_comm: unknown mode %s\n", mode);
    rc = 2;
  }
  srlm_comm_free(c);
  if (joined) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) {
      fprintf(stderr, "mpi_comm: srlm_comm_free finalized an MPI it did not initialize\n");
      return 1;
    }
    MPI_Finalize();
  }
  return rc;
}
