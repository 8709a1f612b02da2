/* kv: the KV cache and incremental decoding (srlm_model_step).
 *
 * The cache holds, per layer, keys and values of every slot: (max_slots, max_len, NKV,
 * HS), positions in order, after k-norm and RoPE. A step appends each slot's new tokens
 * (a prefill when the slot is empty, one token for a decode step), runs the layers over
 * all new tokens packed together, and returns the logits after each slot's last new
 * token. The attention of a new token against its slot is the backend's attention_kv,
 * which has the arithmetic of the full forward per query, so a step's logits have the
 * bits of srlm_model_logits at the same position, whatever else is in the batch.
 * srlm_model_step_sample keeps those logits on the backend and runs its sample op on
 * them: only the tokens and their two log-probs come back to the host. */
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

/* Frees the model's spare KV buffers (model.h). */
void srlm_model_kv_spare_free(srlm_model *m) {
  if (!m->kv_spare) return;
  for (int64_t i = 0; i < 2 * m->L; i++) (void)srlm_backend_free(m->be, m->kv_spare[i]);
  free(m->kv_spare);
  m->kv_spare = NULL;
  m->kv_spare_bytes = 0;
}

srlm_status srlm_kv_cache_create(srlm_model *m, int max_slots, int64_t max_len, srlm_kv_cache **out) {
  *out = NULL;
  const char *where = "kv cache";
  if (max_slots < 1) return srlm_error(SRLM_ERR_RANGE, where, "max_slots = %d must be >= 1", max_slots);
  if (max_len < 1 || max_len > INT32_MAX)
    return srlm_error(SRLM_ERR_RANGE, where, "max_len = %lld out of range [1, %d]", (long long)max_len, INT32_MAX);
  const double total = 2.0 * (double)m->L * (double)max_slots * (double)max_len * (double)m->KV * (double)m->esz;
  if (total > 9.0e18) return srlm_error(SRLM_ERR_RANGE, where, "%g bytes is too large", total);
  srlm_kv_cache *kv = srlm_xcalloc(1, sizeof *kv);
  kv->m = m;
  kv->max_slots = max_slots;
  kv->max_len = max_len;
  kv->k = srlm_xcalloc((size_t)m->L, sizeof *kv->k);
  kv->v = srlm_xcalloc((size_t)m->L, sizeof *kv->v);
  kv->len = srlm_xcalloc((size_t)max_slots, sizeof *kv->len);
  const size_t bytes = (size_t)max_slots * (size_t)max_len * (size_t)m->KV * m->esz;
  srlm_status st = SRLM_OK;
  if (m->kv_spare && m->kv_spare_bytes >= bytes) { /* the last cache's buffers */
    for (int64_t l = 0; l < m->L; l++) kv->k[l] = m->kv_spare[2 * l], kv->v[l] = m->kv_spare[2 * l + 1];
    kv->bytes = m->kv_spare_bytes;
    free(m->kv_spare);
    m->kv_spare = NULL;
    m->kv_spare_bytes = 0;
    *out = kv;
    return SRLM_OK;
  }
  srlm_model_kv_spare_free(m); /* too small: its memory goes before the larger cache's comes */
  kv->bytes = bytes;
  for (int64_t l = 0; l < m->L && st == SRLM_OK; l++) {
    st = srlm_backend_alloc(m->be, &kv->k[l], bytes);
    if (st == SRLM_OK) st = srlm_backend_alloc(m->be, &kv->v[l], bytes);
  }
  if (st != SRLM_OK) {
    srlm_kv_cache_free(kv);
    return srlm_error_context(st, "kv cache of %d slots x %lld positions", max_slots, (long long)max_len);
  }
  *out = kv;
  return SRLM_OK;
}

void srlm_kv_cache_free(srlm_kv_cache *kv) {
  if (!kv) return;
  srlm_model *m = kv->m;
  int whole = 1;
  for (int64_t l = 0; l < m->L; l++) whole &= kv->k[l] != NULL && kv->v[l] != NULL;
  if (whole && !m->be->host_memory && kv->bytes > m->kv_spare_bytes) { /* kept for the next cache */
    srlm_model_kv_spare_free(m);
    m->kv_spare = srlm_xmalloc(2 * (size_t)m->L * sizeof *m->kv_spare);
    for (int64_t l = 0; l < m->L; l++) m->kv_spare[2 * l] = kv->k[l], m->kv_spare[2 * l + 1] = kv->v[l];
    m->kv_spare_bytes = kv->bytes;
    memset(kv->k, 0, (size_t)m->L * sizeof *kv->k);
    memset(kv->v, 0, (size_t)m->L * sizeof *kv->v);
  }
  for (int64_t l = 0; l < kv->m->L; l++) {
    if (kv->k[l]) (void)srlm_backend_free(kv->m->be, kv->k[l]);
    if (kv->v[l]) (void)srlm_backend_free(kv->m->be, kv->v[l]);
  }
  free(kv->k);
  free(kv->v);
  free(kv->len);
  free(kv);
}

void srlm_kv_cache_reset(srlm_kv_cache *kv, int slot) {
  if (slot >= 0 && slot < kv->max_slots) kv->len[slot] = 0;
}

int64_t srlm_kv_cache_len(const srlm_kv_cache *kv, int slot) {
  return slot >= 0 && slot < kv->max_slots ? kv->len[slot] : 0;
}

size_t srlm_kv_cache_bytes(const srlm_kv_cache *kv) {
  return 2 * (size_t)kv->m->L * (size_t)kv->max_slots * (size_t)kv->max_len * (size_t)kv->m->KV * kv->m->esz;
}

static srlm_status check_step(const srlm_model *m, const srlm_kv_cache *kv, int n, const int *slots,
                              const int32_t *tokens, const int32_t *cu) {
  const char *where = "model step";
  if (kv->m != m) return srlm_error(SRLM_ERR_INTERNAL, where, "the KV cache belongs to another model");
  if (n < 0 || n > kv->max_slots)
    return srlm_error(SRLM_ERR_RANGE, where, "n = %d sequences out of range [0, %d]", n, kv->max_slots);
  if (cu[0] != 0) return srlm_error(SRLM_ERR_RANGE, where, "cu[0] = %d, expected 0", (int)cu[0]);
  char *seen = srlm_xcalloc((size_t)kv->max_slots, 1);
  srlm_status st = SRLM_OK;
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    const int s = slots[i];
    const int64_t n_new = (int64_t)cu[i + 1] - cu[i];
    if (s < 0 || s >= kv->max_slots)
      st = srlm_error(SRLM_ERR_RANGE, where, "sequence %d: slot %d out of range [0, %d)", i, s, kv->max_slots);
    else if (seen[s])
      st = srlm_error(SRLM_ERR_RANGE, where, "slot %d appears twice in one step", s);
    else if (n_new < 1)
      st = srlm_error(SRLM_ERR_RANGE, where, "slot %d: %lld new tokens (at least 1 per slot)", s, (long long)n_new);
    else if (kv->len[s] + n_new > kv->max_len)
      st = srlm_error(SRLM_ERR_RANGE, where, "slot %d: %lld cached + %lld new tokens exceed max_len %lld", s,
                      (long long)kv->len[s], (long long)n_new, (long long)kv->max_len);
    if (st == SRLM_OK) seen[s] = 1;
    for (int32_t t = cu[i]; t < cu[i + 1] && st == SRLM_OK; t++)
      if (tokens[t] < 0 || tokens[t] >= m->V)
        st = srlm_error(SRLM_ERR_RANGE, where, "slot %d: token id %d out of range [0, %lld)", s, (int)tokens[t],
                        (long long)m->V);
  }
  free(seen);
  return st;
}

/* What a sampling step takes and gives (host arrays, n). */
typedef struct step_sampling {
  const srlm_sampler_params *sp;
  const uint64_t *seq_id;
  const uint32_t *step;
  srlm_sample *out;
  const int32_t *ids; /* (n_ids) whose logits come back too, into id_logits (n, n_ids) */
  int n_ids;
  float *id_logits;
} step_sampling;

/* One step: logits to the host (logits) or sampled on the backend (smp). */
static srlm_status step_run(srlm_model *m, srlm_kv_cache *kv, int n, const int *slots, const int32_t *tokens,
                            const int32_t *cu, float *logits, const step_sampling *smp) {
  SRLM_TRY(check_step(m, kv, n, slots, tokens, cu));
  if (n == 0) return SRLM_OK;
  const int64_t T = cu[n];
  int32_t *pos = srlm_xmalloc((size_t)T * sizeof *pos);
  int32_t *rows = srlm_xmalloc((size_t)n * sizeof *rows);
  int32_t *sl = srlm_xmalloc((size_t)(2 * n) * sizeof *sl); /* slots | cached lengths after the step */
  for (int i = 0; i < n; i++) {
    const int64_t len0 = kv->len[slots[i]];
    for (int32_t t = cu[i]; t < cu[i + 1]; t++) pos[t] = (int32_t)(len0 + (t - cu[i]));
    rows[i] = cu[i + 1] - 1;
    sl[i] = slots[i];
    sl[n + i] = (int32_t)(len0 + (cu[i + 1] - cu[i]));
  }
  /* step_buf: sl (2n) | sampling: seq_id (n), step (n), token | logprob | sample_logprob (3n) */
  size_t bytes = 0, unused = 0;
  srlm_model_carve(NULL, &bytes, 2 * n, sizeof(int32_t));
  if (smp) {
    srlm_model_carve(NULL, &bytes, n, sizeof(uint64_t));
    srlm_model_carve(NULL, &bytes, n, sizeof(uint32_t));
    srlm_model_carve(NULL, &bytes, 3 * n, sizeof(float));
  }
  srlm_status st = srlm_model_dbuf_reserve(m, &m->step_buf, bytes);
  char *cur = m->step_buf.p;
  const int32_t *sl_dev = srlm_model_carve(&cur, &unused, 2 * n, sizeof(int32_t));
  if (st == SRLM_OK) st = srlm_backend_copy_h2d(m->be, (void *)sl_dev, sl, (size_t)(2 * n) * sizeof *sl);
  srlm_sample_params sp = {0};
  char *io_dev = NULL;
  if (smp) {
    uint64_t *seq_dev = srlm_model_carve(&cur, &unused, n, sizeof(uint64_t));
    uint32_t *step_dev = srlm_model_carve(&cur, &unused, n, sizeof(uint32_t));
    io_dev = srlm_model_carve(&cur, &unused, 3 * n, sizeof(float));
    if (st == SRLM_OK) st = srlm_backend_copy_h2d(m->be, seq_dev, smp->seq_id, (size_t)n * sizeof *seq_dev);
    if (st == SRLM_OK) st = srlm_backend_copy_h2d(m->be, step_dev, smp->step, (size_t)n * sizeof *step_dev);
    sp = (srlm_sample_params){.token = (int32_t *)io_dev, .logprob = (float *)io_dev + n,
                              .sample_logprob = (float *)io_dev + 2 * n, .seq_id = seq_dev, .step = step_dev,
                              .temperature = smp->sp->temperature, .top_p = smp->sp->top_p,
                              .min_p = smp->sp->min_p, .top_k = smp->sp->top_k, .seed = smp->sp->seed};
  }
  if (st == SRLM_OK) st = srlm_model_upload_i32(m, &m->ib.tokens, tokens, T);
  if (st == SRLM_OK) st = srlm_model_upload_i32(m, &m->ib.pos, pos, T);
  if (st == SRLM_OK) st = srlm_model_upload_i32(m, &m->ib.cu, cu, n + 1);
  layer_acts a;
  model_scratch s;
  if (st == SRLM_OK) st = srlm_model_infer_buffers(m, T, &a, &s);
  if (st == SRLM_OK) {
    srlm_embedding_params e = {.out = a.x_in, .table = srlm_model_w(m, m->off_embed), .ids = m->ib.tokens.p, .N = T,
                               .V = m->V, .C = m->C, .dtype = m->dt};
    st = OP(m, embedding_forward, e);
  }
  attn_src src = {.cu = m->ib.cu.p, .kv = kv, .n = n, .NQ = T, .slot_dev = sl_dev, .kv_len_dev = sl_dev + n};
  m->decoding = 1; /* the linears and the head may read packed weights (b_version) */
  for (int l = 0; l < m->L && st == SRLM_OK; l++) st = srlm_model_layer_forward(m, l, &a, &s, T, m->ib.pos.p, &src);
  if (st == SRLM_OK && !smp) st = srlm_model_head_logits(m, a.x_in, T, rows, n, logits);
  if (st == SRLM_OK && smp)
    st = srlm_model_head_sample(m, a.x_in, T, rows, n, sp, smp->ids, smp->n_ids, smp->id_logits);
  m->decoding = 0;
  if (st == SRLM_OK && smp) {
    /* only the tokens and two log-probs per slot come back */
    char *io = srlm_xmalloc((size_t)(3 * n) * sizeof(float));
    st = srlm_backend_copy_d2h(m->be, io, io_dev, (size_t)(3 * n) * sizeof(float));
    for (int i = 0; i < n && st == SRLM_OK; i++) {
      memcpy(&smp->out[i].token, io + (size_t)i * 4, 4);
      memcpy(&smp->out[i].logprob, io + (size_t)(n + i) * 4, 4);
      memcpy(&smp->out[i].sample_logprob, io + (size_t)(2 * n + i) * 4, 4);
    }
    free(io);
  }
  /* the cache holds the new keys of every layer only when all went through */
  if (st == SRLM_OK)
    for (int i = 0; i < n; i++) kv->len[slots[i]] = sl[n + i];
  free(pos);
  free(rows);
  free(sl);
  if (st == SRLM_OK && m->step_hook) st = m->step_hook(m->step_user);
  return st;
}

srlm_status srlm_model_step(srlm_model *m, srlm_kv_cache *kv, int n, const int *slots, const int32_t *tokens,
                            const int32_t *cu, float *logits) {
  return step_run(m, kv, n, slots, tokens, cu, logits, NULL);
}

srlm_status srlm_model_step_sample(srlm_model *m, srlm_kv_cache *kv, int n, const int *slots, const int32_t *tokens,
                                   const int32_t *cu, const srlm_sampler_params *sp, const uint64_t *seq_id,
                                   const uint32_t *step, srlm_sample *out) {
  return srlm_model_step_sample_ids(m, kv, n, slots, tokens, cu, sp, seq_id, step, out, NULL, 0, NULL);
}

srlm_status srlm_model_step_sample_ids(srlm_model *m, srlm_kv_cache *kv, int n, const int *slots,
                                       const int32_t *tokens, const int32_t *cu, const srlm_sampler_params *sp,
                                       const uint64_t *seq_id, const uint32_t *step, srlm_sample *out,
                                       const int32_t *ids, int n_ids, float *id_logits) {
  SRLM_TRY(srlm_sampler_params_check(sp));
  for (int k = 0; k < n_ids; k++)
    if (ids[k] < 0 || ids[k] >= m->V)
      return srlm_error(SRLM_ERR_RANGE, "model step", "watched id %d is outside the vocabulary (%lld)", (int)ids[k],
                        (long long)m->V);
  const step_sampling smp = {.sp = sp, .seq_id = seq_id, .step = step, .out = out, .ids = ids,
                             .n_ids = n_ids > 0 ? n_ids : 0, .id_logits = id_logits};
  return step_run(m, kv, n, slots, tokens, cu, NULL, &smp);
}

void srlm_model_set_step_hook(srlm_model *m, srlm_status (*fn)(void *user), void *user) {
  m->step_hook = fn;
  m->step_user = user;
}

void srlm_model_set_kv_budget(srlm_model *m, int64_t positions) { m->kv_budget = positions > 0 ? positions : 0; }
int64_t srlm_model_kv_budget(const srlm_model *m) { return m->kv_budget; }
