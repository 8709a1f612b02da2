/* Rollout shards in HDF5: one group per shard of a store file (layout in
 * include/srlm/shard_store.h). Separate from shard.c, the record and its transport
 * buffer, so the roles' message path does not depend on the file format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/shard_store.h"

static srlm_status write_impl(srlm_store *st, const char *g, const srlm_shard *s) {
  char p[1024];
  int64_t P = s->n_prompts, R = s->n_responses, J = s->judgments_per_response, RJ = R * J;
  SRLM_TRY(srlm_store_group(st, g));
  SRLM_TRY(srlm_store_set_attr_str(st, g, "srlm_kind", "rollout_shard"));
  SRLM_TRY(srlm_store_set_attr_i64(st, g, "policy_version", s->policy_version));
  SRLM_TRY(srlm_store_set_attr_i64(st, g, "iteration", s->iteration));
  SRLM_TRY(srlm_store_set_attr_i64(st, g, "shard_index", s->shard_index));
  SRLM_TRY(srlm_store_set_attr_i64(st, g, "judgments_per_response", J));
#define PATH(name) (snprintf(p, sizeof p, "%s/%s", g, name), p)
  SRLM_TRY(srlm_store_write_array(st, PATH("prompt_index"), SRLM_STORE_I64, 1, &P, s->prompt_index));
  SRLM_TRY(srlm_store_write_seqs(st, PATH("prompts"), P, s->prompt_offsets, s->prompt_ids));
  SRLM_TRY(srlm_store_write_array(st, PATH("response_prompt"), SRLM_STORE_I64, 1, &R, s->response_prompt));
  SRLM_TRY(srlm_store_write_array(st, PATH("sample_index"), SRLM_STORE_I64, 1, &R, s->sample_index));
  SRLM_TRY(srlm_store_write_seqs(st, PATH("responses"), R, s->response_offsets, s->response_ids));
  int64_t nrt = s->response_offsets[R];
  SRLM_TRY(srlm_store_write_array(st, PATH("logprobs"), SRLM_STORE_F32, 1, &nrt, s->logprobs));
  SRLM_TRY(srlm_store_write_array(st, PATH("mean_score"), SRLM_STORE_F32, 1, &R, s->mean_score));
  /* flags as int32 bit patterns: the store has no unsigned types */
  SRLM_TRY(srlm_store_write_array(st, PATH("flags"), SRLM_STORE_I32, 1, &R, s->flags));
  int64_t dims[2] = {R, J};
  SRLM_TRY(srlm_store_write_array(st, PATH("judgment_score"), SRLM_STORE_F32, 2, dims, s->judgment_score));
  const char **texts = srlm_xmalloc((size_t)RJ * sizeof *texts);
  for (int64_t i = 0; i < RJ; i++) texts[i] = s->judgment_text + s->judgment_text_offsets[i];
  srlm_status rc = srlm_store_write_strings(st, PATH("judgments"), RJ, texts);
  free(texts);
  SRLM_TRY(rc);
  SRLM_TRY(srlm_store_write_seqs(st, PATH("judgment_ids"), RJ, s->judgment_id_offsets, s->judgment_ids));
#undef PATH
  return SRLM_OK;
}

srlm_status srlm_shard_write(srlm_store *st, const char *group, const srlm_shard *s) {
  srlm_status rc = srlm_shard_validate(s);
  if (rc == SRLM_OK) rc = write_impl(st, group, s);
  if (rc != SRLM_OK) return srlm_error_context(rc, "writing shard %lld to %s", (long long)s->shard_index, group);
  return SRLM_OK;
}

static srlm_status read_len(srlm_store *st, const char *path, srlm_store_dtype dt, int64_t want, void **data) {
  int64_t n = 0;
  SRLM_TRY(srlm_store_read_array(st, path, dt, 1, &n, data));
  if (n != want) return srlm_error(SRLM_ERR_FORMAT, path, "%lld elements, expected %lld", (long long)n, (long long)want);
  return SRLM_OK;
}

static void take_seqs(srlm_seqs *q, int64_t **offsets, int32_t **ids) {
  *offsets = q->offsets;
  *ids = q->ids;
  q->offsets = NULL;
  q->ids = NULL;
}

static srlm_status read_impl(srlm_store *st, const char *g, srlm_shard *s) {
  char p[1024];
  char *kind = NULL;
  SRLM_TRY(srlm_store_get_attr_str(st, g, "srlm_kind", &kind));
  int is_shard = strcmp(kind, "rollout_shard") == 0;
  free(kind);
  if (!is_shard) return srlm_error(SRLM_ERR_FORMAT, g, "srlm_kind is not \"rollout_shard\"");
  SRLM_TRY(srlm_store_get_attr_i64(st, g, "policy_version", &s->policy_version));
  SRLM_TRY(srlm_store_get_attr_i64(st, g, "iteration", &s->iteration));
  SRLM_TRY(srlm_store_get_attr_i64(st, g, "shard_index", &s->shard_index));
  int64_t J;
  SRLM_TRY(srlm_store_get_attr_i64(st, g, "judgments_per_response", &J));
  if (J < 0 || J > SRLM_SHARD_MAX_J) return srlm_error(SRLM_ERR_FORMAT, g, "judgments_per_response %lld", (long long)J);
  s->judgments_per_response = J;
#define PATH(name) (snprintf(p, sizeof p, "%s/%s", g, name), p)
  srlm_seqs q = {0};
  SRLM_TRY(srlm_store_read_seqs(st, PATH("prompts"), &q));
  s->n_prompts = q.n;
  take_seqs(&q, &s->prompt_offsets, &s->prompt_ids);
  SRLM_TRY(read_len(st, PATH("prompt_index"), SRLM_STORE_I64, s->n_prompts, (void **)&s->prompt_index));
  SRLM_TRY(srlm_store_read_seqs(st, PATH("responses"), &q));
  int64_t R = s->n_responses = q.n;
  take_seqs(&q, &s->response_offsets, &s->response_ids);
  SRLM_TRY(read_len(st, PATH("response_prompt"), SRLM_STORE_I64, R, (void **)&s->response_prompt));
  SRLM_TRY(read_len(st, PATH("sample_index"), SRLM_STORE_I64, R, (void **)&s->sample_index));
  SRLM_TRY(read_len(st, PATH("logprobs"), SRLM_STORE_F32, s->response_offsets[R], (void **)&s->logprobs));
  SRLM_TRY(read_len(st, PATH("mean_score"), SRLM_STORE_F32, R, (void **)&s->mean_score));
  SRLM_TRY(read_len(st, PATH("flags"), SRLM_STORE_I32, R, (void **)&s->flags));
  int64_t RJ;
  if (__builtin_mul_overflow(R, J, &RJ)) return srlm_error(SRLM_ERR_FORMAT, g, "R x J overflows");
  int64_t dims[2];
  SRLM_TRY(srlm_store_read_array(st, PATH("judgment_score"), SRLM_STORE_F32, 2, dims, (void **)&s->judgment_score));
  if (dims[0] != R || dims[1] != J)
    return srlm_error(SRLM_ERR_FORMAT, p, "shape (%lld, %lld), expected (%lld, %lld)", (long long)dims[0],
                      (long long)dims[1], (long long)R, (long long)J);
  SRLM_TRY(srlm_store_read_seqs(st, PATH("judgment_ids"), &q));
  int64_t nq = q.n;
  take_seqs(&q, &s->judgment_id_offsets, &s->judgment_ids);
  if (nq != RJ) return srlm_error(SRLM_ERR_FORMAT, p, "%lld sequences, expected %lld", (long long)nq, (long long)RJ);
  int64_t nt = 0;
  char **texts = NULL;
  SRLM_TRY(srlm_store_read_strings(st, PATH("judgments"), &nt, &texts));
  if (nt != RJ) {
    srlm_store_strings_free(texts, nt);
    return srlm_error(SRLM_ERR_FORMAT, p, "%lld strings, expected %lld", (long long)nt, (long long)RJ);
  }
  s->judgment_text_offsets = srlm_xmalloc((size_t)(RJ + 1) * sizeof(int64_t));
  s->judgment_text_offsets[0] = 0;
  for (int64_t i = 0; i < RJ; i++) s->judgment_text_offsets[i + 1] = s->judgment_text_offsets[i] + (int64_t)strlen(texts[i]) + 1;
  s->judgment_text = srlm_xmalloc((size_t)s->judgment_text_offsets[RJ]);
  for (int64_t i = 0; i < RJ; i++)
    memcpy(s->judgment_text + s->judgment_text_offsets[i], texts[i],
           (size_t)(s->judgment_text_offsets[i + 1] - s->judgment_text_offsets[i]));
  srlm_store_strings_free(texts, nt);
#undef PATH
  s->judgments_added = RJ;
  return srlm_shard_validate(s);
}

srlm_status srlm_shard_read(srlm_store *st, const char *group, srlm_shard *out) {
  memset(out, 0, sizeof *out);
  srlm_status rc = read_impl(st, group, out);
  if (rc != SRLM_OK) {
    srlm_shard_free(out);
    return srlm_error_context(rc, "reading shard %s", group);
  }
  return SRLM_OK;
}
