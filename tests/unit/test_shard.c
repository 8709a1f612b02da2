/* Rollout shards: building, byte-buffer round trips (full, empty, unjudged), every
 * truncation and every single-byte flip rejected, random structural corruption with a
 * valid checksum rejected or parsed into a valid shard (never a crash), targeted
 * corruptions with their messages, builder misuse, the HDF5 round trip, and the
 * stale-policy rule. Seed printed; SRLM_TEST_SEED replays. */
#include <math.h>
#include <stdint.h>

#include "srlm/core.h"
#include "srlm/shard.h"
#include "srlm/shard_store.h"
#include "srlm/store.h"
#include "test.h"

#define CHECKSUM_AT 96

/* 3 prompts (one empty), 5 responses (one empty), J = 2 judgments each. */
static void build(srlm_shard *s, int64_t J) {
  srlm_shard_init(s, 7, 3, 11);
  const int32_t p0[4] = {1, 2, 3, INT32_MAX}, p2[2] = {151643, 0};
  int64_t row;
  EXPECT_EQ_INT(srlm_shard_add_prompt(s, 40, p0, 4, &row), SRLM_OK);
  EXPECT_EQ_INT(row, 0);
  EXPECT_EQ_INT(srlm_shard_add_prompt(s, 41, NULL, 0, &row), SRLM_OK);
  EXPECT_EQ_INT(srlm_shard_add_prompt(s, 1000000007LL, p2, 2, &row), SRLM_OK);
  EXPECT_EQ_INT(row, 2);
  const int32_t r0[3] = {5, 6, 7}, r2[5] = {9, 9, 9, 9, 2};
  const float l0[3] = {-0.5f, -1e-8f, -30.25f}, l2[5] = {-1, -2, -3, -4, -0.0f};
  EXPECT_EQ_INT(srlm_shard_add_response(s, 0, 0, r0, l0, 3, SRLM_SHARD_F_EOS, &row), SRLM_OK);
  EXPECT_EQ_INT(srlm_shard_add_response(s, 0, 1, NULL, NULL, 0, SRLM_SHARD_F_TRUNCATED, &row), SRLM_OK);
  EXPECT_EQ_INT(srlm_shard_add_response(s, 1, 0, r2, l2, 5, 0, &row), SRLM_OK);
  EXPECT_EQ_INT(srlm_shard_add_response(s, 2, 0, r0, l0, 2, SRLM_SHARD_F_STOP, &row), SRLM_OK);
  EXPECT_EQ_INT(srlm_shard_add_response(s, 2, 1, r2, l2, 1, SRLM_SHARD_F_EOS, &row), SRLM_OK);
  EXPECT_EQ_INT(row, 4);
  if (J == 0) return;
  EXPECT_EQ_INT(srlm_shard_set_judgments_per_response(s, J), SRLM_OK);
  static const char *const texts[4] = {"Score: 4", "", "h\xc3\xa9 \xe2\x9c\x93\nScore: 5", "no score here"};
  for (int64_t r = 0; r < s->n_responses; r++) {
    int scored = 0;
    double sum = 0;
    for (int64_t j = 0; j < J; j++) {
      int64_t i = r * J + j;
      float score = i % 3 == 1 ? NAN : (float)(i % 6);
      int32_t ids[3] = {(int32_t)i, 100, -1};
      EXPECT_EQ_INT(srlm_shard_add_judgment(s, texts[i % 4], ids, i % 4, score), SRLM_OK);
      if (!isnan(score)) scored++, sum += score;
    }
    if (scored) {
      s->mean_score[r] = (float)(sum / scored);
      s->flags[r] |= SRLM_SHARD_F_SCORED;
    }
  }
}

/* Compares every field; prints the first difference. Float arrays compare bit for bit. */
static int same(const srlm_shard *a, const srlm_shard *b, const char *what) {
#define DIFF(...)                                          \
  do {                                                     \
    fprintf(stderr, "%s: ", what);                         \
    fprintf(stderr, __VA_ARGS__);                          \
    fprintf(stderr, "\n");                                 \
    return 0;                                              \
  } while (0)
  if (a->policy_version != b->policy_version || a->iteration != b->iteration || a->shard_index != b->shard_index)
    DIFF("ids differ");
  if (a->n_prompts != b->n_prompts || a->n_responses != b->n_responses ||
      a->judgments_per_response != b->judgments_per_response || a->judgments_added != b->judgments_added)
    DIFF("counts differ: P %lld/%lld R %lld/%lld J %lld/%lld", (long long)a->n_prompts, (long long)b->n_prompts,
         (long long)a->n_responses, (long long)b->n_responses, (long long)a->judgments_per_response,
         (long long)b->judgments_per_response);
  int64_t P = a->n_prompts, R = a->n_responses, RJ = R * a->judgments_per_response;
#define ARR(f, n)                                                                         \
  do {                                                                                    \
    if ((n) > 0 && memcmp(a->f, b->f, (size_t)(n) * sizeof *a->f) != 0) DIFF(#f " differs"); \
  } while (0)
  ARR(prompt_index, P);
  ARR(prompt_offsets, P + 1);
  ARR(prompt_ids, a->prompt_offsets[P]);
  ARR(response_prompt, R);
  ARR(sample_index, R);
  ARR(response_offsets, R + 1);
  ARR(response_ids, a->response_offsets[R]);
  ARR(logprobs, a->response_offsets[R]);
  ARR(mean_score, R);
  ARR(flags, R);
  ARR(judgment_score, RJ);
  ARR(judgment_text_offsets, RJ + 1);
  ARR(judgment_text, a->judgment_text_offsets[RJ]);
  ARR(judgment_id_offsets, RJ + 1);
  ARR(judgment_ids, a->judgment_id_offsets[RJ]);
  return 1;
#undef ARR
#undef DIFF
}

static void reseal(unsigned char *b, size_t len) {
  memset(b + CHECKSUM_AT, 0, 8);
  uint64_t h = srlm_shard_fnv1a64(b, len);
  memcpy(b + CHECKSUM_AT, &h, 8);
}

static void test_round_trips(void) {
  for (int64_t J = 0; J <= 2; J += 2) {
    srlm_shard s, t;
    build(&s, J);
    EXPECT_EQ_INT(srlm_shard_validate(&s), SRLM_OK);
    void *buf = NULL;
    size_t len = 0;
    EXPECT_EQ_INT(srlm_shard_serialize(&s, &buf, &len), SRLM_OK);
    EXPECT_EQ_INT(len, srlm_shard_serialized_size(&s));
    EXPECT_EQ_INT(len % 8, 0);
    EXPECT_EQ_INT(srlm_shard_parse(buf, len, &t), SRLM_OK);
    EXPECT(same(&s, &t, "round trip"), "J = %lld", (long long)J);
    if (J) EXPECT_STR_EQ(t.judgment_text + t.judgment_text_offsets[2], "h\xc3\xa9 \xe2\x9c\x93\nScore: 5");
    /* re-serializing the parsed shard gives the same bytes */
    void *buf2 = NULL;
    size_t len2 = 0;
    EXPECT_EQ_INT(srlm_shard_serialize(&t, &buf2, &len2), SRLM_OK);
    EXPECT(len2 == len && memcmp(buf, buf2, len) == 0, "re-serialized %zu bytes differ from %zu", len2, len);
    fprintf(stderr, "shard J=%lld: %zu bytes\n", (long long)J, len);
    free(buf);
    free(buf2);
    srlm_shard_free(&s);
    srlm_shard_free(&t);
  }
  srlm_shard e, f;
  srlm_shard_init(&e, 0, 0, 0);
  void *buf = NULL;
  size_t len = 0;
  EXPECT_EQ_INT(srlm_shard_serialize(&e, &buf, &len), SRLM_OK);
  EXPECT_EQ_INT(srlm_shard_parse(buf, len, &f), SRLM_OK);
  EXPECT(same(&e, &f, "empty shard"), "empty shard");
  free(buf);
  srlm_shard_free(&e);
  srlm_shard_free(&f);
}

static uint32_t g_seed;
static uint32_t rnd(uint32_t i) { return srlm_rng_bits(g_seed, 0x5eed, i, 0, 0).v[0]; }

static void test_corruption(void) {
  srlm_shard s, t;
  build(&s, 2);
  void *vbuf = NULL;
  size_t len = 0;
  EXPECT_EQ_INT(srlm_shard_serialize(&s, &vbuf, &len), SRLM_OK);
  unsigned char *buf = vbuf, *copy = srlm_xmalloc(len);
  /* every truncation (into a buffer of exactly that size, so ASan sees overreads) */
  int accepted = 0;
  for (size_t n = 0; n < len; n++) {
    unsigned char *cut = srlm_xmalloc(n);
    memcpy(cut, buf, n);
    srlm_status st = srlm_shard_parse(cut, n, &t);
    if (st == SRLM_OK) accepted++, srlm_shard_free(&t);
    else if (st != SRLM_ERR_FORMAT) EXPECT_EQ_INT(st, SRLM_ERR_FORMAT);
    free(cut);
  }
  EXPECT(accepted == 0, "%d truncations of a %zu-byte shard were accepted", accepted, len);
  /* every single-byte flip */
  accepted = 0;
  for (size_t i = 0; i < len; i++) {
    memcpy(copy, buf, len);
    copy[i] ^= (unsigned char)(1u << (rnd((uint32_t)i) % 8));
    if (srlm_shard_parse(copy, len, &t) == SRLM_OK) accepted++, srlm_shard_free(&t);
  }
  EXPECT(accepted == 0, "%d single-byte flips were accepted", accepted);
  /* random damage behind a valid checksum: reject, or parse into a shard that validates */
  int ok = 0, rejected = 0;
  for (uint32_t trial = 0; trial < 3000; trial++) {
    memcpy(copy, buf, len);
    int nflip = 1 + (int)(rnd(100000 + trial) % 4);
    for (int k = 0; k < nflip; k++) {
      uint32_t r = rnd(200000 + trial * 8 + (uint32_t)k);
      size_t at = r % len;
      if (at >= CHECKSUM_AT && at < CHECKSUM_AT + 8) continue;
      /* mostly small count-like values, sometimes garbage */
      copy[at] = (r >> 16) % 4 == 0 ? (unsigned char)(r >> 24) : (unsigned char)(copy[at] + (r >> 24) % 5 - 2);
    }
    reseal(copy, len);
    srlm_status st = srlm_shard_parse(copy, len, &t);
    if (st == SRLM_OK) {
      ok++;
      EXPECT_EQ_INT(srlm_shard_validate(&t), SRLM_OK);
      srlm_shard_free(&t);
    } else {
      rejected++;
      if (st != SRLM_ERR_FORMAT) EXPECT_EQ_INT(st, SRLM_ERR_FORMAT);
    }
  }
  fprintf(stderr, "resealed damage: %d parsed into valid shards, %d rejected\n", ok, rejected);
  EXPECT(rejected > 1000, "only %d of 3000 damaged buffers rejected", rejected);
  free(copy);
  free(buf);
  srlm_shard_free(&s);
}

/* One targeted corruption: apply `edit` to a parsed copy, check that validate names it,
 * then write the edited arrays over a valid buffer (the serializer refuses invalid
 * shards), reseal the checksum and check that the parser names it too. */
static void expect_parse_error(const srlm_shard *s, void (*edit)(srlm_shard *), const char *needle) {
  void *buf = NULL;
  size_t len = 0;
  EXPECT_EQ_INT(srlm_shard_serialize(s, &buf, &len), SRLM_OK);
  srlm_shard t;
  EXPECT_EQ_INT(srlm_shard_parse(buf, len, &t), SRLM_OK);
  edit(&t);
  EXPECT(srlm_shard_validate(&t) != SRLM_OK, "edit for '%s' still validates", needle);
  EXPECT_CONTAINS(srlm_error_message(), needle);
  /* the buffer's arrays, in order, from the edited copy t (u is the unedited original) */
  srlm_shard u;
  EXPECT_EQ_INT(srlm_shard_parse(buf, len, &u), SRLM_OK);
  unsigned char *b = buf;
  size_t at = SRLM_SHARD_HEADER_BYTES;
  struct { const void *orig, *edited; size_t bytes; } arr[] = {
      {u.prompt_index, t.prompt_index, 8 * (size_t)u.n_prompts},
      {u.prompt_offsets, t.prompt_offsets, 8 * (size_t)(u.n_prompts + 1)},
      {u.prompt_ids, t.prompt_ids, 4 * (size_t)u.prompt_offsets[u.n_prompts]},
      {u.response_prompt, t.response_prompt, 8 * (size_t)u.n_responses},
      {u.sample_index, t.sample_index, 8 * (size_t)u.n_responses},
      {u.response_offsets, t.response_offsets, 8 * (size_t)(u.n_responses + 1)},
      {u.response_ids, t.response_ids, 4 * (size_t)u.response_offsets[u.n_responses]},
      {u.logprobs, t.logprobs, 4 * (size_t)u.response_offsets[u.n_responses]},
      {u.mean_score, t.mean_score, 4 * (size_t)u.n_responses},
      {u.flags, t.flags, 4 * (size_t)u.n_responses},
  };
  for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) {
    memcpy(b + at, arr[i].edited, arr[i].bytes);
    at = (at + arr[i].bytes + 7) & ~(size_t)7;
  }
  int64_t RJ = u.n_responses * u.judgments_per_response;
  size_t jbytes[5] = {4 * (size_t)RJ, 8 * (size_t)(RJ + 1), (size_t)u.judgment_text_offsets[RJ], 8 * (size_t)(RJ + 1),
                      4 * (size_t)u.judgment_id_offsets[RJ]};
  const void *jed[5] = {t.judgment_score, t.judgment_text_offsets, t.judgment_text, t.judgment_id_offsets, t.judgment_ids};
  for (int i = 0; i < 5; i++) {
    memcpy(b + at, jed[i], jbytes[i]);
    at = (at + jbytes[i] + 7) & ~(size_t)7;
  }
  EXPECT_EQ_INT(at, len);
  reseal(b, len);
  srlm_shard v;
  EXPECT_EQ_INT(srlm_shard_parse(buf, len, &v), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), needle);
  free(buf);
  srlm_shard_free(&t);
  srlm_shard_free(&u);
}

static void edit_prompt_row(srlm_shard *t) { t->response_prompt[3] = t->n_prompts; }
static void edit_offsets(srlm_shard *t) { t->response_offsets[2] = t->response_offsets[1] + 100; t->response_offsets[3] = 1; }
static void edit_flags(srlm_shard *t) { t->flags[1] = 0x100; }
static void edit_sample(srlm_shard *t) { t->sample_index[4] = -3; }
static void edit_text_nul(srlm_shard *t) { t->judgment_text[0] = '\0'; }
static void edit_text_end(srlm_shard *t) { t->judgment_text[t->judgment_text_offsets[1] - 1] = 'x'; }

static void test_targeted(void) {
  srlm_shard s;
  build(&s, 2);
  expect_parse_error(&s, edit_prompt_row, "response_prompt[3] = 3 outside [0, 3)");
  expect_parse_error(&s, edit_offsets, "response_offsets decreases at row 2");
  expect_parse_error(&s, edit_flags, "flags[1] = 0x100 has unknown bits");
  expect_parse_error(&s, edit_sample, "sample_index[4] = -3 is negative");
  expect_parse_error(&s, edit_text_nul, "judgment text 0 (response 0, judgment 0)");
  expect_parse_error(&s, edit_text_end, "judgment text 0");
  /* header: a count that disagrees with the length, a foreign magic, another version */
  void *vbuf = NULL;
  size_t len = 0;
  EXPECT_EQ_INT(srlm_shard_serialize(&s, &vbuf, &len), SRLM_OK);
  unsigned char *b = vbuf;
  srlm_shard t;
  int64_t big = (int64_t)1 << 60;
  memcpy(b + 40, &big, 8); /* R */
  reseal(b, len);
  EXPECT_EQ_INT(srlm_shard_parse(b, len, &t), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "counts need");
  free(vbuf);
  EXPECT_EQ_INT(srlm_shard_serialize(&s, &vbuf, &len), SRLM_OK);
  b = vbuf;
  uint32_t swapped = __builtin_bswap32(SRLM_SHARD_MAGIC), v2 = 2;
  memcpy(b, &swapped, 4);
  EXPECT_EQ_INT(srlm_shard_parse(b, len, &t), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "another byte order");
  memcpy(b, &(uint32_t){SRLM_SHARD_MAGIC}, 4);
  memcpy(b + 4, &v2, 4);
  EXPECT_EQ_INT(srlm_shard_parse(b, len, &t), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "format version 2");
  memcpy(b + 4, &(uint32_t){SRLM_SHARD_FORMAT_VERSION}, 4);
  b[len - 1] ^= 1;
  EXPECT_EQ_INT(srlm_shard_parse(b, len, &t), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "checksum");
  EXPECT_EQ_INT(srlm_shard_parse(b, len - 8, &t), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "truncated");
  free(vbuf);
  srlm_shard_free(&s);
}

static void test_builder_misuse(void) {
  srlm_shard s;
  build(&s, 2);
  int32_t id = 1;
  float lp = -1;
  EXPECT_EQ_INT(srlm_shard_add_judgment(&s, "x", NULL, 0, 1.0f), SRLM_ERR_RANGE); /* already R x J */
  EXPECT_EQ_INT(srlm_shard_add_response(&s, 0, 2, &id, &lp, 1, 0, NULL), SRLM_ERR_INTERNAL);
  EXPECT_EQ_INT(srlm_shard_set_judgments_per_response(&s, 3), SRLM_ERR_INTERNAL);
  srlm_shard_free(&s);
  build(&s, 0);
  EXPECT_EQ_INT(srlm_shard_add_response(&s, 3, 0, &id, &lp, 1, 0, NULL), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "prompt row 3 outside [0, 3)");
  EXPECT_EQ_INT(srlm_shard_add_response(&s, 0, 0, &id, &lp, 1, 0x40, NULL), SRLM_ERR_RANGE);
  EXPECT_EQ_INT(srlm_shard_add_prompt(&s, -1, NULL, 0, NULL), SRLM_ERR_RANGE);
  EXPECT_EQ_INT(srlm_shard_set_judgments_per_response(&s, 2), SRLM_OK);
  EXPECT_EQ_INT(srlm_shard_add_judgment(&s, "only one", NULL, 0, 1.0f), SRLM_OK);
  void *buf = NULL;
  size_t len = 0;
  EXPECT_EQ_INT(srlm_shard_serialized_size(&s), 0);
  EXPECT_EQ_INT(srlm_shard_serialize(&s, &buf, &len), SRLM_ERR_FORMAT); /* judgments incomplete */
  EXPECT_CONTAINS(srlm_error_message(), "1 judgments, expected R 5 x J 2");
  EXPECT(buf == NULL, "buffer returned on error");
  srlm_shard_free(&s);
  /* many appends (growth past the first capacity) */
  srlm_shard_init(&s, 1, 0, 0);
  int32_t ids[50];
  float lps[50];
  for (int i = 0; i < 50; i++) ids[i] = i, lps[i] = -(float)i;
  for (int p = 0; p < 40; p++) {
    int64_t row;
    EXPECT_EQ_INT(srlm_shard_add_prompt(&s, p, ids, p % 50, &row), SRLM_OK);
    for (int k = 0; k < 5; k++) EXPECT_EQ_INT(srlm_shard_add_response(&s, row, k, ids, lps, (p * k) % 50, 0, NULL), SRLM_OK);
  }
  EXPECT_EQ_INT(srlm_shard_set_judgments_per_response(&s, 3), SRLM_OK);
  for (int i = 0; i < 600; i++) EXPECT_EQ_INT(srlm_shard_add_judgment(&s, "Score: 3", ids, i % 7, 3.0f), SRLM_OK);
  EXPECT_EQ_INT(srlm_shard_validate(&s), SRLM_OK);
  EXPECT_EQ_INT(s.response_offsets[s.n_responses], 3400); /* sum over p < 40, k < 5 of (p * k) % 50 */
  srlm_shard t;
  EXPECT_EQ_INT(srlm_shard_serialize(&s, &buf, &len), SRLM_OK);
  EXPECT_EQ_INT(srlm_shard_parse(buf, len, &t), SRLM_OK);
  EXPECT(same(&s, &t, "grown shard"), "grown shard");
  free(buf);
  srlm_shard_free(&s);
  srlm_shard_free(&t);
}

static void test_hdf5(void) {
  char path[512];
  test_tmp_path(path, sizeof path, "shards.h5");
  srlm_shard a, b, e, ra, rb, re;
  build(&a, 2);
  build(&b, 0);
  srlm_shard_init(&e, 2, 1, 5);
  srlm_store *st = NULL;
  EXPECT_EQ_INT(srlm_store_create(path, SRLM_SHARD_STORE_FORMAT, SRLM_SHARD_STORE_VERSION, &st), SRLM_OK);
  if (!st) return;
  EXPECT_EQ_INT(srlm_shard_write(st, "/iter_3/shard_0", &a), SRLM_OK);
  EXPECT_EQ_INT(srlm_shard_write(st, "iter_3/shard_1", &b), SRLM_OK);
  EXPECT_EQ_INT(srlm_shard_write(st, "/iter_1/shard_5", &e), SRLM_OK);
  EXPECT_EQ_INT(srlm_store_commit(st), SRLM_OK);
  EXPECT_EQ_INT(srlm_store_open(path, SRLM_SHARD_STORE_FORMAT, SRLM_SHARD_STORE_VERSION, &st), SRLM_OK);
  if (!st) return;
  EXPECT_EQ_INT(srlm_shard_read(st, "/iter_3/shard_0", &ra), SRLM_OK);
  EXPECT(same(&a, &ra, "hdf5 judged"), "hdf5 judged shard");
  EXPECT_EQ_INT(srlm_shard_read(st, "/iter_3/shard_1", &rb), SRLM_OK);
  EXPECT(same(&b, &rb, "hdf5 unjudged"), "hdf5 unjudged shard");
  EXPECT_EQ_INT(srlm_shard_read(st, "/iter_1/shard_5", &re), SRLM_OK);
  EXPECT(same(&e, &re, "hdf5 empty"), "hdf5 empty shard");
  srlm_shard x;
  EXPECT(srlm_shard_read(st, "/iter_3", &x) != SRLM_OK, "a non-shard group was read as a shard");
  EXPECT_CONTAINS(srlm_error_message(), "reading shard /iter_3");
  EXPECT(srlm_shard_read(st, "/iter_9/shard_0", &x) != SRLM_OK, "a missing group was read");
  srlm_store_close(st);
  /* a file of another format is refused by the store */
  EXPECT(srlm_store_open(path, "datasets", 1, &st) != SRLM_OK, "opened rollouts as datasets");
  srlm_shard *all[6] = {&a, &b, &e, &ra, &rb, &re};
  for (int i = 0; i < 6; i++) srlm_shard_free(all[i]);
}

static void test_policy_rule(void) {
  srlm_shard s;
  bool acc = true;
  struct { int64_t version, current, lag; int want; } cases[] = {
      {3, 3, 0, 1}, {2, 3, 0, 0}, {0, 3, 0, 0}, {2, 3, 1, 1}, {1, 3, 1, 0}, {0, 0, 0, 1}, {3, 5, 2, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    srlm_shard_init(&s, cases[i].version, 0, (int64_t)i);
    EXPECT_EQ_INT(srlm_shard_check_policy(&s, cases[i].current, cases[i].lag, &acc), SRLM_OK);
    EXPECT(acc == (cases[i].want == 1), "version %lld current %lld lag %lld: accept %d, expected %d",
           (long long)cases[i].version, (long long)cases[i].current, (long long)cases[i].lag, (int)acc, cases[i].want);
    srlm_shard_free(&s);
  }
  srlm_shard_init(&s, 4, 2, 9);
  EXPECT_EQ_INT(srlm_shard_check_policy(&s, 3, 0, &acc), SRLM_ERR_INTERNAL);
  EXPECT_CONTAINS(srlm_error_message(), "policy version 4, newer than the learner's 3");
  EXPECT(!acc, "a future shard was accepted");
  EXPECT_EQ_INT(srlm_shard_check_policy(&s, 4, -1, &acc), SRLM_ERR_RANGE);
  srlm_shard_free(&s);
}

/* A stand-in judge format: a judgment holds its score when it ends with "S<digit>". */
static int ends_with_score(const char *text, size_t len) {
  return len >= 2 && text[len - 2] == 'S' && text[len - 1] >= '0' && text[len - 1] <= '9';
}

/* The two counts of srlm_shard_judge_health move independently: a judgment whose text
 * breaks the format but whose score was read elsewhere (judge.mode expected, or the
 * checker of judge.source mix) is a format failure with a score; a judgment in format
 * whose score is NaN lacks a score without a format failure; the text judge (format_ok
 * NULL) counts a NaN score as both. */
static void test_judge_health(void) {
  srlm_shard s;
  srlm_shard_init(&s, 0, 1, 0);
  int64_t row, r;
  const int32_t ids[2] = {1, 2};
  const float lp[2] = {-1.0f, -2.0f};
  EXPECT_EQ_INT(srlm_shard_add_prompt(&s, 0, ids, 2, &row), SRLM_OK);
  for (int k = 0; k < 3; k++) EXPECT_EQ_INT(srlm_shard_add_response(&s, row, k, ids, lp, 2, SRLM_SHARD_F_EOS, &r), SRLM_OK);
  EXPECT_EQ_INT(srlm_shard_set_judgments_per_response(&s, 2), SRLM_OK);
  /* (text, score): in format with a score; out of format with a score (x2); in format
     without a score; out of format without one; in format with a score */
  const char *texts[6] = {"+09+16+15S5", "+09+1", "", "+01+02+03S1", "garbage", "S3"};
  const float scores[6] = {5.0f, 3.7f, 1.2f, NAN, NAN, 3.0f};
  for (int j = 0; j < 6; j++) EXPECT_EQ_INT(srlm_shard_add_judgment(&s, texts[j], NULL, 0, scores[j]), SRLM_OK);
  srlm_shard_judge_health h = {0};
  srlm_shard_judge_health_add(&s, ends_with_score, &h);
  EXPECT(h.judgments == 6 && h.format_failures == 3 && h.without_score == 2,
         "task format: %lld judgments, %lld format failures (want 3), %lld without a score (want 2)",
         (long long)h.judgments, (long long)h.format_failures, (long long)h.without_score);
  /* accumulates */
  srlm_shard_judge_health_add(&s, ends_with_score, &h);
  EXPECT(h.judgments == 12 && h.format_failures == 6 && h.without_score == 4, "accumulated %lld %lld %lld",
         (long long)h.judgments, (long long)h.format_failures, (long long)h.without_score);
  /* the text judge: a score is missing exactly when the format failed */
  srlm_shard_judge_health t = {0};
  srlm_shard_judge_health_add(&s, NULL, &t);
  EXPECT(t.judgments == 6 && t.format_failures == 2 && t.without_score == 2, "text judge: %lld %lld %lld",
         (long long)t.judgments, (long long)t.format_failures, (long long)t.without_score);
  /* every score there, every text broken: only the format count moves */
  for (int j = 0; j < 6; j++) s.judgment_score[j] = 4.0f;
  s.judgment_text[s.judgment_text_offsets[0] + 9] = 'X'; /* "+09+16+15X5" */
  srlm_shard_judge_health u = {0};
  srlm_shard_judge_health_add(&s, ends_with_score, &u);
  EXPECT(u.format_failures == 4 && u.without_score == 0, "scores all there: %lld format failures (want 4), %lld "
         "without a score (want 0)", (long long)u.format_failures, (long long)u.without_score);
  /* an unjudged shard counts nothing */
  srlm_shard e;
  srlm_shard_init(&e, 0, 1, 1);
  srlm_shard_judge_health z = {0};
  srlm_shard_judge_health_add(&e, ends_with_score, &z);
  EXPECT(z.judgments == 0 && z.format_failures == 0 && z.without_score == 0, "empty shard counted");
  srlm_shard_free(&e);
  srlm_shard_free(&s);
}

int main(void) {
  const char *env = getenv("SRLM_TEST_SEED");
  g_seed = env ? (uint32_t)strtoul(env, NULL, 10) : 20261126u;
  fprintf(stderr, "seed %u (SRLM_TEST_SEED to replay)\n", g_seed);
  test_round_trips();
  test_corruption();
  test_targeted();
  test_builder_misuse();
  test_hdf5();
  test_policy_rule();
  test_judge_health();
  TEST_MAIN_END();
}
