/* Rollout shards: building, validation and the flat byte buffer that carries them
 * between roles (layout and rules in include/srlm/shard.h; their HDF5 storage is
 * shard_store.c).
 *
 * The byte buffer and the parser share one section table (shard_sections), so the two
 * cannot drift apart. The parser checks the header counts against the buffer length
 * before allocating anything: every allocation is bounded by the buffer's size.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/shard.h"

/* ---- init / free -------------------------------------------------------- */

void srlm_shard_init(srlm_shard *s, int64_t policy_version, int64_t iteration, int64_t shard_index) {
  memset(s, 0, sizeof *s);
  s->policy_version = policy_version;
  s->iteration = iteration;
  s->shard_index = shard_index;
  s->prompt_offsets = srlm_xcalloc(1, sizeof(int64_t));
  s->response_offsets = srlm_xcalloc(1, sizeof(int64_t));
  s->judgment_text_offsets = srlm_xcalloc(1, sizeof(int64_t));
  s->judgment_id_offsets = srlm_xcalloc(1, sizeof(int64_t));
}

void srlm_shard_free(srlm_shard *s) {
  if (!s) return;
  void *arrays[] = {s->prompt_index,   s->prompt_offsets,  s->prompt_ids,          s->response_prompt,
                    s->sample_index,   s->response_offsets, s->response_ids,       s->logprobs,
                    s->mean_score,     s->flags,            s->judgment_score,     s->judgment_text_offsets,
                    s->judgment_text,  s->judgment_id_offsets, s->judgment_ids};
  for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) free(arrays[i]);
  memset(s, 0, sizeof *s);
}

/* ---- building ----------------------------------------------------------- */

/* Capacity for `need` elements: doubling from 16, so appends are amortized O(1). */
static int64_t next_cap(int64_t cap, int64_t need) {
  int64_t c = cap < 16 ? 16 : cap;
  while (c < need) c *= 2;
  return c;
}
#define REALLOC(p, n) ((p) = srlm_xrealloc((p), (size_t)(n) * sizeof *(p)))

srlm_status srlm_shard_add_prompt(srlm_shard *s, int64_t prompt_index, const int32_t *ids, int64_t n, int64_t *row) {
  if (prompt_index < 0 || n < 0 || (n > 0 && !ids))
    return srlm_error(SRLM_ERR_RANGE, "shard add_prompt", "prompt_index %lld, %lld tokens", (long long)prompt_index,
                      (long long)n);
  int64_t P = s->n_prompts, nt = s->prompt_offsets[P];
  if (P + 1 > s->cap_p) {
    s->cap_p = next_cap(s->cap_p, P + 1);
    REALLOC(s->prompt_index, s->cap_p);
    REALLOC(s->prompt_offsets, s->cap_p + 1);
  }
  if (nt + n > s->cap_pt) {
    s->cap_pt = next_cap(s->cap_pt, nt + n);
    REALLOC(s->prompt_ids, s->cap_pt);
  }
  s->prompt_index[P] = prompt_index;
  if (n) memcpy(s->prompt_ids + nt, ids, (size_t)n * sizeof *ids);
  s->prompt_offsets[P + 1] = nt + n;
  s->n_prompts = P + 1;
  if (row) *row = P;
  return SRLM_OK;
}

srlm_status srlm_shard_add_response(srlm_shard *s, int64_t prompt_row, int64_t sample_index, const int32_t *ids,
                                    const float *logprobs, int64_t n, uint32_t flags, int64_t *row) {
  if (s->judgments_added > 0)
    return srlm_error(SRLM_ERR_INTERNAL, "shard add_response", "responses cannot follow judgments");
  if (prompt_row < 0 || prompt_row >= s->n_prompts)
    return srlm_error(SRLM_ERR_RANGE, "shard add_response", "prompt row %lld outside [0, %lld)", (long long)prompt_row,
                      (long long)s->n_prompts);
  if (sample_index < 0 || n < 0 || (n > 0 && (!ids || !logprobs)) || (flags & ~(uint32_t)SRLM_SHARD_F_ALL))
    return srlm_error(SRLM_ERR_RANGE, "shard add_response", "sample_index %lld, %lld tokens, flags 0x%x",
                      (long long)sample_index, (long long)n, flags);
  int64_t R = s->n_responses, nt = s->response_offsets[R];
  if (R + 1 > s->cap_r) {
    s->cap_r = next_cap(s->cap_r, R + 1);
    REALLOC(s->response_prompt, s->cap_r);
    REALLOC(s->sample_index, s->cap_r);
    REALLOC(s->mean_score, s->cap_r);
    REALLOC(s->flags, s->cap_r);
    REALLOC(s->response_offsets, s->cap_r + 1);
  }
  if (nt + n > s->cap_rt) {
    s->cap_rt = next_cap(s->cap_rt, nt + n);
    REALLOC(s->response_ids, s->cap_rt);
    REALLOC(s->logprobs, s->cap_rt);
  }
  s->response_prompt[R] = prompt_row;
  s->sample_index[R] = sample_index;
  if (n) {
    memcpy(s->response_ids + nt, ids, (size_t)n * sizeof *ids);
    memcpy(s->logprobs + nt, logprobs, (size_t)n * sizeof *logprobs);
  }
  s->response_offsets[R + 1] = nt + n;
  s->mean_score[R] = NAN;
  s->flags[R] = flags;
  s->n_responses = R + 1;
  if (row) *row = R;
  return SRLM_OK;
}

srlm_status srlm_shard_set_judgments_per_response(srlm_shard *s, int64_t J) {
  if (J < 0 || J > SRLM_SHARD_MAX_J)
    return srlm_error(SRLM_ERR_RANGE, "shard judgments_per_response", "%lld outside [0, %d]", (long long)J, SRLM_SHARD_MAX_J);
  if (s->judgments_added > 0 || s->judgments_per_response != 0)
    return srlm_error(SRLM_ERR_INTERNAL, "shard judgments_per_response", "already set to %lld",
                      (long long)s->judgments_per_response);
  s->judgments_per_response = J;
  return SRLM_OK;
}

int64_t srlm_shard_judgment_count(const srlm_shard *s) { return s->judgments_added; }

srlm_status srlm_shard_add_judgment(srlm_shard *s, const char *text, const int32_t *ids, int64_t n, float score) {
  int64_t total = s->n_responses * s->judgments_per_response, i = s->judgments_added;
  if (i >= total)
    return srlm_error(SRLM_ERR_RANGE, "shard add_judgment", "already %lld judgments (R %lld x J %lld)", (long long)i,
                      (long long)s->n_responses, (long long)s->judgments_per_response);
  if (n < 0 || (n > 0 && !ids)) return srlm_error(SRLM_ERR_RANGE, "shard add_judgment", "%lld tokens", (long long)n);
  if (!text) text = "";
  int64_t len = (int64_t)strlen(text) + 1;
  int64_t nb = s->judgment_text_offsets[i], nt = s->judgment_id_offsets[i];
  if (i + 1 > s->cap_j) {
    s->cap_j = next_cap(s->cap_j, i + 1);
    REALLOC(s->judgment_score, s->cap_j);
    REALLOC(s->judgment_text_offsets, s->cap_j + 1);
    REALLOC(s->judgment_id_offsets, s->cap_j + 1);
  }
  if (nb + len > s->cap_jb) {
    s->cap_jb = next_cap(s->cap_jb, nb + len);
    REALLOC(s->judgment_text, s->cap_jb);
  }
  if (nt + n > s->cap_jt) {
    s->cap_jt = next_cap(s->cap_jt, nt + n);
    REALLOC(s->judgment_ids, s->cap_jt);
  }
  s->judgment_score[i] = score;
  memcpy(s->judgment_text + nb, text, (size_t)len);
  if (n) memcpy(s->judgment_ids + nt, ids, (size_t)n * sizeof *ids);
  s->judgment_text_offsets[i + 1] = nb + len;
  s->judgment_id_offsets[i + 1] = nt + n;
  s->judgments_added = i + 1;
  return SRLM_OK;
}

/* ---- validation --------------------------------------------------------- */

static srlm_status check_offsets(const char *name, const int64_t *off, int64_t n) {
  if (!off) return srlm_error(SRLM_ERR_FORMAT, "shard", "%s is missing", name);
  if (off[0] != 0) return srlm_error(SRLM_ERR_FORMAT, "shard", "%s[0] = %lld, expected 0", name, (long long)off[0]);
  for (int64_t i = 0; i < n; i++)
    if (off[i + 1] < off[i])
      return srlm_error(SRLM_ERR_FORMAT, "shard", "%s decreases at row %lld (%lld -> %lld)", name, (long long)i,
                        (long long)off[i], (long long)off[i + 1]);
  return SRLM_OK;
}

srlm_status srlm_shard_validate(const srlm_shard *s) {
  int64_t P = s->n_prompts, R = s->n_responses, J = s->judgments_per_response;
  if (P < 0 || R < 0 || J < 0 || J > SRLM_SHARD_MAX_J)
    return srlm_error(SRLM_ERR_FORMAT, "shard", "bad counts: %lld prompts, %lld responses, %lld judgments each",
                      (long long)P, (long long)R, (long long)J);
  int64_t RJ;
  if (__builtin_mul_overflow(R, J, &RJ)) return srlm_error(SRLM_ERR_FORMAT, "shard", "R x J overflows");
  if (s->judgments_added != RJ)
    return srlm_error(SRLM_ERR_FORMAT, "shard", "%lld judgments, expected R %lld x J %lld", (long long)s->judgments_added,
                      (long long)R, (long long)J);
  if ((P && !s->prompt_index) ||
      (R && (!s->response_prompt || !s->sample_index || !s->mean_score || !s->flags)) || (RJ && !s->judgment_score))
    return srlm_error(SRLM_ERR_FORMAT, "shard", "an array is missing");
  SRLM_TRY(check_offsets("prompt_offsets", s->prompt_offsets, P));
  SRLM_TRY(check_offsets("response_offsets", s->response_offsets, R));
  SRLM_TRY(check_offsets("judgment_text_offsets", s->judgment_text_offsets, RJ));
  SRLM_TRY(check_offsets("judgment_id_offsets", s->judgment_id_offsets, RJ));
  if ((s->prompt_offsets[P] && !s->prompt_ids) || (s->response_offsets[R] && (!s->response_ids || !s->logprobs)) ||
      (s->judgment_text_offsets[RJ] && !s->judgment_text) || (s->judgment_id_offsets[RJ] && !s->judgment_ids))
    return srlm_error(SRLM_ERR_FORMAT, "shard", "a token or text array is missing");
  for (int64_t p = 0; p < P; p++)
    if (s->prompt_index[p] < 0)
      return srlm_error(SRLM_ERR_FORMAT, "shard", "prompt_index[%lld] = %lld is negative", (long long)p,
                        (long long)s->prompt_index[p]);
  for (int64_t r = 0; r < R; r++) {
    if (s->response_prompt[r] < 0 || s->response_prompt[r] >= P)
      return srlm_error(SRLM_ERR_FORMAT, "shard", "response_prompt[%lld] = %lld outside [0, %lld)", (long long)r,
                        (long long)s->response_prompt[r], (long long)P);
    if (s->sample_index[r] < 0)
      return srlm_error(SRLM_ERR_FORMAT, "shard", "sample_index[%lld] = %lld is negative", (long long)r,
                        (long long)s->sample_index[r]);
    if (s->flags[r] & ~(uint32_t)SRLM_SHARD_F_ALL)
      return srlm_error(SRLM_ERR_FORMAT, "shard", "flags[%lld] = 0x%x has unknown bits", (long long)r, s->flags[r]);
  }
  for (int64_t i = 0; i < RJ; i++) {
    int64_t a = s->judgment_text_offsets[i], b = s->judgment_text_offsets[i + 1];
    if (b == a || s->judgment_text[b - 1] != '\0' || memchr(s->judgment_text + a, 0, (size_t)(b - a - 1)))
      return srlm_error(SRLM_ERR_FORMAT, "shard",
                        "judgment text %lld (response %lld, judgment %lld) is not one NUL-terminated string",
                        (long long)i, (long long)(i / J), (long long)(i % J));
  }
  return SRLM_OK;
}

srlm_status srlm_shard_check_policy(const srlm_shard *s, int64_t current, int64_t max_lag, bool *accept) {
  *accept = false;
  if (max_lag < 0) return srlm_error(SRLM_ERR_RANGE, "shard policy check", "max_lag %lld < 0", (long long)max_lag);
  if (s->policy_version > current)
    return srlm_error(SRLM_ERR_INTERNAL, "shard policy check",
                      "shard %lld of iteration %lld has policy version %lld, newer than the learner's %lld",
                      (long long)s->shard_index, (long long)s->iteration, (long long)s->policy_version,
                      (long long)current);
  *accept = s->policy_version >= current - max_lag;
  return SRLM_OK;
}

void srlm_shard_judge_health_add(const srlm_shard *s, int (*format_ok)(const char *text, size_t len),
                                 srlm_shard_judge_health *h) {
  const int64_t nj = s->n_responses * s->judgments_per_response;
  for (int64_t j = 0; j < nj; j++) {
    const int no_score = isnan(s->judgment_score[j]);
    int ok;
    if (format_ok) {
      const char *text = s->judgment_text + s->judgment_text_offsets[j];
      ok = format_ok(text, strlen(text));
    } else {
      ok = !no_score;
    }
    h->judgments++;
    h->format_failures += !ok;
    h->without_score += no_score;
  }
}

/* ---- byte buffer -------------------------------------------------------- */

static uint64_t fnv_update(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

uint64_t srlm_shard_fnv1a64(const void *data, size_t n) { return fnv_update(FNV_INIT, data, n); }

/* FNV-1a of the whole buffer with the 8 checksum bytes (at `at`) read as zero. */
static uint64_t buffer_checksum(const unsigned char *b, size_t len, size_t at) {
  static const unsigned char zero[8] = {0};
  uint64_t h = fnv_update(FNV_INIT, b, at);
  h = fnv_update(h, zero, 8);
  return fnv_update(h, b + at + 8, len - at - 8);
}

enum { NSEC = 15 };
typedef struct counts {
  int64_t P, R, J, NPT, NRT, NJB, NJT;
} counts;
typedef struct section {
  void **ptr; /* the shard field */
  int64_t n;  /* elements */
  size_t elem;
} section;

/* The arrays in buffer order; returns SRLM_OK and fills sec when RJ does not overflow. */
static srlm_status shard_sections(srlm_shard *s, const counts *c, section sec[NSEC]) {
  int64_t RJ;
  if (__builtin_mul_overflow(c->R, c->J, &RJ)) return srlm_error(SRLM_ERR_FORMAT, "shard", "R x J overflows");
  section t[NSEC] = {
      {(void **)&s->prompt_index, c->P, 8},          {(void **)&s->prompt_offsets, c->P + 1, 8},
      {(void **)&s->prompt_ids, c->NPT, 4},          {(void **)&s->response_prompt, c->R, 8},
      {(void **)&s->sample_index, c->R, 8},          {(void **)&s->response_offsets, c->R + 1, 8},
      {(void **)&s->response_ids, c->NRT, 4},        {(void **)&s->logprobs, c->NRT, 4},
      {(void **)&s->mean_score, c->R, 4},            {(void **)&s->flags, c->R, 4},
      {(void **)&s->judgment_score, RJ, 4},          {(void **)&s->judgment_text_offsets, RJ + 1, 8},
      {(void **)&s->judgment_text, c->NJB, 1},       {(void **)&s->judgment_id_offsets, RJ + 1, 8},
      {(void **)&s->judgment_ids, c->NJT, 4},
  };
  memcpy(sec, t, sizeof t);
  return SRLM_OK;
}

/* Total buffer size for these counts, or 0 when a count is negative or the size overflows. */
static size_t sections_size(const section sec[NSEC]) {
  uint64_t total = SRLM_SHARD_HEADER_BYTES;
  for (int i = 0; i < NSEC; i++) {
    uint64_t bytes;
    if (sec[i].n < 0 || __builtin_mul_overflow((uint64_t)sec[i].n, (uint64_t)sec[i].elem, &bytes)) return 0;
    if (__builtin_add_overflow(total, bytes, &total) || __builtin_add_overflow(total, 7u, &total)) return 0;
    total &= ~(uint64_t)7;
  }
  if (total > (uint64_t)SIZE_MAX) return 0;
  return (size_t)total;
}

static counts shard_counts(const srlm_shard *s) {
  int64_t RJ = s->n_responses * s->judgments_per_response;
  counts c = {s->n_prompts,
              s->n_responses,
              s->judgments_per_response,
              s->prompt_offsets[s->n_prompts],
              s->response_offsets[s->n_responses],
              s->judgment_text_offsets[RJ],
              s->judgment_id_offsets[RJ]};
  return c;
}

size_t srlm_shard_serialized_size(const srlm_shard *s) {
  if (s->n_prompts < 0 || s->n_responses < 0 || s->judgments_per_response < 0 ||
      s->judgments_added != s->n_responses * s->judgments_per_response)
    return 0; /* incomplete: the judgment offsets do not reach R * J yet */
  counts c = shard_counts(s);
  section sec[NSEC];
  if (shard_sections((srlm_shard *)s, &c, sec) != SRLM_OK) return 0;
  return sections_size(sec);
}

/* header field offsets */
enum {
  H_MAGIC = 0, H_VERSION = 4, H_POLICY = 8, H_ITER = 16, H_INDEX = 24, H_P = 32, H_R = 40, H_J = 48,
  H_NPT = 56, H_NRT = 64, H_NJB = 72, H_NJT = 80, H_TOTAL = 88, H_SUM = 96, H_END = 104
};

static void put64(unsigned char *b, size_t at, int64_t v) { memcpy(b + at, &v, 8); }
static int64_t get64(const unsigned char *b, size_t at) {
  int64_t v;
  memcpy(&v, b + at, 8);
  return v;
}

srlm_status srlm_shard_serialize(const srlm_shard *s, void **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  srlm_status rc = srlm_shard_validate(s);
  if (rc != SRLM_OK) return srlm_error_context(rc, "serializing shard %lld", (long long)s->shard_index);
  counts c = shard_counts(s);
  section sec[NSEC];
  SRLM_TRY(shard_sections((srlm_shard *)s, &c, sec));
  size_t total = sections_size(sec);
  if (!total) return srlm_error(SRLM_ERR_RANGE, "serializing shard", "size overflows");
  unsigned char *b = srlm_xcalloc(1, total);
  uint32_t magic = SRLM_SHARD_MAGIC, version = SRLM_SHARD_FORMAT_VERSION;
  memcpy(b + H_MAGIC, &magic, 4);
  memcpy(b + H_VERSION, &version, 4);
  put64(b, H_POLICY, s->policy_version);
  put64(b, H_ITER, s->iteration);
  put64(b, H_INDEX, s->shard_index);
  put64(b, H_P, c.P);
  put64(b, H_R, c.R);
  put64(b, H_J, c.J);
  put64(b, H_NPT, c.NPT);
  put64(b, H_NRT, c.NRT);
  put64(b, H_NJB, c.NJB);
  put64(b, H_NJT, c.NJT);
  put64(b, H_TOTAL, (int64_t)total);
  size_t at = SRLM_SHARD_HEADER_BYTES;
  for (int i = 0; i < NSEC; i++) {
    size_t bytes = (size_t)sec[i].n * sec[i].elem;
    if (bytes) memcpy(b + at, *sec[i].ptr, bytes);
    at = (at + bytes + 7) & ~(size_t)7;
  }
  uint64_t sum = buffer_checksum(b, total, H_SUM);
  memcpy(b + H_SUM, &sum, 8);
  *buf = b;
  *len = total;
  return SRLM_OK;
}

srlm_status srlm_shard_parse(const void *buf, size_t len, srlm_shard *out) {
  memset(out, 0, sizeof *out);
  const unsigned char *b = buf;
  if (!b || len < SRLM_SHARD_HEADER_BYTES)
    return srlm_error(SRLM_ERR_FORMAT, "shard buffer", "%zu bytes, shorter than the %d-byte header", len,
                      SRLM_SHARD_HEADER_BYTES);
  uint32_t magic, version;
  memcpy(&magic, b + H_MAGIC, 4);
  memcpy(&version, b + H_VERSION, 4);
  if (magic != SRLM_SHARD_MAGIC)
    return srlm_error(SRLM_ERR_FORMAT, "shard buffer", "magic 0x%08x, expected 0x%08x (not a shard, or another byte order)",
                      magic, SRLM_SHARD_MAGIC);
  if (version != SRLM_SHARD_FORMAT_VERSION)
    return srlm_error(SRLM_ERR_FORMAT, "shard buffer", "format version %u, this build reads %d", version,
                      SRLM_SHARD_FORMAT_VERSION);
  for (size_t i = H_END; i < SRLM_SHARD_HEADER_BYTES; i++)
    if (b[i]) return srlm_error(SRLM_ERR_FORMAT, "shard buffer", "reserved header byte %zu is not zero", i);
  counts c = {get64(b, H_P), get64(b, H_R), get64(b, H_J), get64(b, H_NPT), get64(b, H_NRT), get64(b, H_NJB),
              get64(b, H_NJT)};
  int64_t total = get64(b, H_TOTAL);
  if ((uint64_t)total != (uint64_t)len)
    return srlm_error(SRLM_ERR_FORMAT, "shard buffer", "header says %lld bytes, buffer has %zu (truncated?)",
                      (long long)total, len);
  if (c.P < 0 || c.R < 0 || c.J < 0 || c.J > SRLM_SHARD_MAX_J || c.NPT < 0 || c.NRT < 0 || c.NJB < 0 || c.NJT < 0)
    return srlm_error(SRLM_ERR_FORMAT, "shard buffer", "bad counts P %lld R %lld J %lld NPT %lld NRT %lld NJB %lld NJT %lld",
                      (long long)c.P, (long long)c.R, (long long)c.J, (long long)c.NPT, (long long)c.NRT,
                      (long long)c.NJB, (long long)c.NJT);
  srlm_shard tmp;
  memset(&tmp, 0, sizeof tmp);
  section sec[NSEC];
  SRLM_TRY(shard_sections(&tmp, &c, sec));
  size_t need = sections_size(sec);
  if (need != len)
    return srlm_error(SRLM_ERR_FORMAT, "shard buffer", "counts need %zu bytes, buffer has %zu", need, len);
  uint64_t sum, want;
  memcpy(&want, b + H_SUM, 8);
  sum = buffer_checksum(b, len, H_SUM);
  if (sum != want)
    return srlm_error(SRLM_ERR_FORMAT, "shard buffer", "checksum 0x%016llx, header says 0x%016llx (corrupt)",
                      (unsigned long long)sum, (unsigned long long)want);
  /* counts agree with the length, so every allocation below is bounded by len */
  size_t at = SRLM_SHARD_HEADER_BYTES;
  for (int i = 0; i < NSEC; i++) {
    size_t bytes = (size_t)sec[i].n * sec[i].elem;
    *sec[i].ptr = srlm_xmalloc(bytes);
    if (bytes) memcpy(*sec[i].ptr, b + at, bytes);
    at = (at + bytes + 7) & ~(size_t)7;
  }
  tmp.policy_version = get64(b, H_POLICY);
  tmp.iteration = get64(b, H_ITER);
  tmp.shard_index = get64(b, H_INDEX);
  tmp.n_prompts = c.P;
  tmp.n_responses = c.R;
  tmp.judgments_per_response = c.J;
  tmp.judgments_added = c.R * c.J;
  srlm_status st = SRLM_OK;
  /* the offsets must end at the header's counts before validate trusts them as sizes */
  const char *bad = tmp.prompt_offsets[c.P] != c.NPT                      ? "prompt_offsets"
                    : tmp.response_offsets[c.R] != c.NRT                  ? "response_offsets"
                    : tmp.judgment_text_offsets[c.R * c.J] != c.NJB       ? "judgment_text_offsets"
                    : tmp.judgment_id_offsets[c.R * c.J] != c.NJT         ? "judgment_id_offsets"
                                                                           : NULL;
  if (bad)
    st = srlm_error(SRLM_ERR_FORMAT, "shard", "%s does not end at the header's count", bad);
  else
    st = srlm_shard_validate(&tmp);
  if (st != SRLM_OK) {
    srlm_shard_free(&tmp);
    return srlm_error_context(st, "shard buffer");
  }
  *out = tmp;
  return SRLM_OK;
}
