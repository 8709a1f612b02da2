/* srlm shard: the rollout shard, the one record that moves between roles.
 *
 * A shard holds the samples of a few prompts: a prompt table (P rows), a response
 * table (R rows, K per prompt usually), and J judgments per response (J = 0 until a
 * judge has scored it). The same record is a flat byte buffer (for MPI messages) and
 * a group of datasets in an HDF5 "rollouts" file (for inspection, resume, re-scoring).
 *
 *   prompts    (P)      prompt_index    global index of the prompt in the data set
 *                       prompt_offsets  (P + 1), prompt_ids (prompt_offsets[P])
 *   responses  (R)      response_prompt row of its prompt in this shard's prompt table
 *                       sample_index    k in 0..K-1 (with prompt_index, the RNG key)
 *                       response_offsets (R + 1), response_ids (NRT = response_offsets[R])
 *                       logprobs        (NRT) the sampler's log-prob of each response token
 *                       mean_score      (R) mean of the parsed judgment scores; NaN = none
 *                       flags           (R) SRLM_SHARD_F_* bits
 *   judgments  (R * J)  row r * J + j is judgment j of response r
 *                       judgment_score  parsed score; NaN = unparsable
 *                       judgment_text_offsets (R*J + 1), judgment_text: each judgment's
 *                         UTF-8 text followed by one NUL, so judgment_text +
 *                         judgment_text_offsets[i] is a C string
 *                       judgment_id_offsets (R*J + 1), judgment_ids: the judge's tokens
 *
 * Byte buffer (srlm_shard_serialize): a 128-byte header, then the arrays above in
 * that order, each starting on an 8-byte boundary (zero padding), host byte order
 * (every rank of a job shares it; a foreign byte order fails the magic check).
 *   header: u32 magic "SRLS" (0x534c5253), u32 format version (SRLM_SHARD_FORMAT_VERSION),
 *           i64 policy_version, iteration, shard_index, P, R, J, NPT (prompt tokens),
 *           NRT (response tokens), NJB (judgment text bytes), NJT (judgment tokens),
 *           u64 total buffer length, u64 checksum, then zero bytes up to 128.
 *   checksum: FNV-1a 64 of the whole buffer with the checksum field read as zero
 *   (so any flipped byte, header or arrays, is caught).
 * Parsing validates everything before touching the arrays: the checksum, every count
 * against the buffer length (with overflow checks), offsets (start 0, non-decreasing,
 * end at the count), response_prompt in [0, P), sample_index >= 0, known flag bits,
 * judgment texts NUL-terminated with no NUL inside. A truncated or corrupt buffer is
 * an SRLM_ERR_FORMAT error naming what is wrong, never a crash.
 *
 * Files: include/srlm/shard_store.h stores shards as HDF5 groups.
 *
 * Stale policy versions. A shard carries the policy version of the weights that
 * sampled it (the learner's version counter, broadcast with the weights). A learner at
 * version `current` accepts a shard with current - max_lag <= version <= current and
 * drops (and counts) an older one; a shard from a newer version than the learner's is
 * a broken invariant (error). srlm's loop is synchronous (every shard of iteration t is
 * sampled by M_t), so roles use max_lag = 0: a stale shard can only come from a bug or
 * a resumed run mixing files, and is dropped, counted and reported, never trained on.
 * srlm_shard_check_policy implements the rule.
 *
 * Memory: every array of a shard is its own srlm_xmalloc'd buffer owned by the shard;
 * srlm_shard_free releases them. Build a shard with the add_* functions (they grow the
 * arrays), or fill the fields yourself and call srlm_shard_validate.
 */
#ifndef SRLM_SHARD_H
#define SRLM_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SRLM_SHARD_MAGIC 0x534c5253u /* "SRLS" in little-endian byte order */
#define SRLM_SHARD_FORMAT_VERSION 1
#define SRLM_SHARD_HEADER_BYTES 128
#define SRLM_SHARD_MAX_J (1 << 20) /* judgments per response, at most */

/* Response flags. */
enum {
  SRLM_SHARD_F_EOS = 1u << 0,       /* generation ended with an end-of-sequence token */
  SRLM_SHARD_F_STOP = 1u << 1,      /* ended at a stop string */
  SRLM_SHARD_F_TRUNCATED = 1u << 2, /* hit max_new_tokens */
  SRLM_SHARD_F_SCORED = 1u << 3,    /* mean_score holds the mean of >= 1 parsed judgment */
  SRLM_SHARD_F_ALL = 0xfu
};

typedef struct srlm_shard {
  int64_t policy_version; /* version of the weights that sampled the responses */
  int64_t iteration;
  int64_t shard_index;
  int64_t n_prompts;   /* P */
  int64_t n_responses; /* R */
  int64_t judgments_per_response; /* J (0 before judging) */

  int64_t *prompt_index;   /* (P) */
  int64_t *prompt_offsets; /* (P + 1) */
  int32_t *prompt_ids;     /* (prompt_offsets[P]) */

  int64_t *response_prompt;  /* (R) row in the prompt table */
  int64_t *sample_index;     /* (R) */
  int64_t *response_offsets; /* (R + 1) */
  int32_t *response_ids;     /* (NRT) */
  float *logprobs;           /* (NRT) sampler log-prob of each response token */
  float *mean_score;         /* (R) NaN = no parsed judgment */
  uint32_t *flags;           /* (R) SRLM_SHARD_F_* */

  float *judgment_score;          /* (R * J) NaN = unparsable */
  int64_t *judgment_text_offsets; /* (R * J + 1) */
  char *judgment_text;            /* (judgment_text_offsets[R * J]) texts, each NUL-terminated */
  int64_t *judgment_id_offsets;   /* (R * J + 1) */
  int32_t *judgment_ids;          /* (judgment_id_offsets[R * J]) */

  /* builder bookkeeping: judgments appended so far (R * J when complete) and the
   * capacities of the growing arrays (0 for parsed shards: they are exact) */
  int64_t judgments_added;
  int64_t cap_p, cap_pt, cap_r, cap_rt, cap_j, cap_jb, cap_jt;
} srlm_shard;

/* An empty shard (P = R = J = 0) with the given ids; offsets arrays hold their 0. */
void srlm_shard_init(srlm_shard *s, int64_t policy_version, int64_t iteration, int64_t shard_index);
void srlm_shard_free(srlm_shard *s); /* frees the arrays; s itself is the caller's */

/* ---- building ----------------------------------------------------------- */

/* Appends a prompt; returns its row (0..P-1) in *row. */
srlm_status srlm_shard_add_prompt(srlm_shard *s, int64_t prompt_index, const int32_t *ids, int64_t n, int64_t *row);

/* Appends a response to prompt row `prompt_row`: n tokens with their sampler log-probs
 * (logprobs may be NULL only when n == 0). mean_score starts NaN. Only before judgments. */
srlm_status srlm_shard_add_response(srlm_shard *s, int64_t prompt_row, int64_t sample_index, const int32_t *ids,
                                    const float *logprobs, int64_t n, uint32_t flags, int64_t *row);

/* Sets J; judgments are then appended with srlm_shard_add_judgment in row order
 * (response 0 judgments 0..J-1, response 1, ...). Only once, with no judgments yet. */
srlm_status srlm_shard_set_judgments_per_response(srlm_shard *s, int64_t J);

/* Appends the next judgment: its text (no NUL inside; NULL = ""), the judge's tokens
 * (ids may be NULL when n == 0) and the parsed score (NaN = unparsable). */
srlm_status srlm_shard_add_judgment(srlm_shard *s, const char *text, const int32_t *ids, int64_t n, float score);

/* Number of judgments appended so far (complete when == R * J). */
int64_t srlm_shard_judgment_count(const srlm_shard *s);

/* ---- checking ----------------------------------------------------------- */

/* Full structural check of a shard in memory (the rules of the parser); judgments must
 * be complete (R * J of them). Errors name the array and row. */
srlm_status srlm_shard_validate(const srlm_shard *s);

/* The stale-policy rule above: *accept = 1 when current - max_lag <= version <= current,
 * 0 for an older shard (drop and count it); a shard newer than `current` is an
 * SRLM_ERR_INTERNAL error naming both versions. max_lag >= 0. */
srlm_status srlm_shard_check_policy(const srlm_shard *s, int64_t current, int64_t max_lag, bool *accept);

/* ---- the judge's format health ------------------------------------------------ */

/* Two counts over a shard's judgments that are easy to confuse (issue 11):
 *   format_failures  judgments whose TEXT ends without a score in the judge's format:
 *                    format_ok(text) is 0 (the task's judge format: the greedy rationale
 *                    and score digit do not parse), or, with format_ok NULL (the text
 *                    judge: its score is NaN exactly when judge.score_regex finds no
 *                    score), the stored score is NaN. They measure the judge's format,
 *                    whatever score the sample finally got.
 *   without_score    judgments whose stored SCORE is NaN: dropped from the sample's mean
 *                    score. With judge.mode expected the score is read from the score
 *                    tokens' probabilities whether or not the greedy text parses, and
 *                    with judge.source mix the checker fills in, so a format failure
 *                    need not lose its score (this was the progress line's
 *                    "unparsable judgments", which stayed 0 while the greedy format
 *                    broke on up to 21.6% of the judgments).
 * Counts accumulate into *h. */
typedef struct srlm_shard_judge_health {
  int64_t judgments;       /* judgments seen (R * J per shard) */
  int64_t format_failures; /* text without a score in the judge's format */
  int64_t without_score;   /* stored score NaN */
} srlm_shard_judge_health;

void srlm_shard_judge_health_add(const srlm_shard *s, int (*format_ok)(const char *text, size_t len),
                                 srlm_shard_judge_health *h);

/* ---- byte buffer -------------------------------------------------------- */

/* Exact length of the serialized shard; 0 while its judgments are incomplete. */
size_t srlm_shard_serialized_size(const srlm_shard *s);

/* Validates s and writes it to a new buffer (*buf: free()); *len is its length. */
srlm_status srlm_shard_serialize(const srlm_shard *s, void **buf, size_t *len);

/* Parses and validates a buffer into a new shard (free with srlm_shard_free). On error
 * *out is left empty (srlm_shard_free on it is a no-op). */
srlm_status srlm_shard_parse(const void *buf, size_t len, srlm_shard *out);

/* FNV-1a 64 of n bytes (the checksum above; the checksum field is at byte 96). */
uint64_t srlm_shard_fnv1a64(const void *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif
