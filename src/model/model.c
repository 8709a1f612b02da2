/* model: a transformer's parameters on a backend: loading a Hugging Face directory,
 * creating a fresh model, saving, the flat parameter and gradient arrays and where each
 * HF tensor sits in them, and the rotary frequencies of the config.
 *
 * Parameters are stored in the order of srlm_model_expected_tensors; a tied lm_head is
 * the embedding (one tensor, its gradient gets both contributions). In fp32 the one
 * parameter array is the master; in bf16 the fp32 master weights are kept next to the
 * bf16 compute copy the ops read, and every write of parameters goes to the master and
 * is cast into the copy (srlm_model_set_params, the optimizer's AdamW op). A bf16 model
 * for decoding only (SRLM_MODEL_DECODE) has no master: writes round into the compute copy
 * through a backend staging buffer and the cast op (the rounding refresh_params applies),
 * reads widen it on the host. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_internal.h"

/* Parameters moved through a host or staging buffer at a time (clone, a decode-only model). */
#define STAGE_ELEMS ((size_t)1 << 20)

/* ---- backend buffers ------------------------------------------------------------------ */

srlm_status srlm_model_dbuf_reserve(const srlm_model *m, dbuf *b, size_t bytes) {
  if (bytes <= b->bytes) return SRLM_OK;
  SRLM_TRY(srlm_backend_free(m->be, b->p));
  b->p = NULL;
  b->bytes = 0;
  SRLM_TRY(srlm_backend_alloc(m->be, &b->p, bytes));
  b->bytes = bytes;
  return SRLM_OK;
}

void srlm_model_dbuf_free(const srlm_model *m, dbuf *b) {
  if (b->p) (void)srlm_backend_free(m->be, b->p);
  b->p = NULL;
  b->bytes = 0;
}

void srlm_model_batch_bufs_free(const srlm_model *m, batch_bufs *b) {
  srlm_model_dbuf_free(m, &b->tokens);
  srlm_model_dbuf_free(m, &b->pos);
  srlm_model_dbuf_free(m, &b->cu);
  srlm_model_dbuf_free(m, &b->rows);
  srlm_model_dbuf_free(m, &b->targets);
}

srlm_status srlm_model_upload_i32(srlm_model *m, dbuf *b, const int32_t *host, int64_t n) {
  SRLM_TRY(srlm_model_dbuf_reserve(m, b, (size_t)(n > 0 ? n : 1) * sizeof(int32_t)));
  if (n > 0) SRLM_TRY(srlm_backend_copy_h2d(m->be, b->p, host, (size_t)n * sizeof(int32_t)));
  return SRLM_OK;
}

/* ---- rotary frequencies ----------------------------------------------------------------- */

/* transformers' inv_freq in fp32: 1 / base^(2d / HS), then for llama3 scaling
 * _compute_llama3_parameters: wavelengths above original/low_freq_factor are divided by
 * factor, below original/high_freq_factor kept, and smoothly interpolated between. */
static void rope_inv_freq(const srlm_model_config *c, float *inv) {
  const int64_t HS = c->head_dim;
  const float base = (float)c->rope_theta;
  for (int64_t d = 0; d < HS / 2; d++) inv[d] = 1.0f / powf(base, (float)(2 * d) / (float)HS);
  if (c->rope_scaling.type != SRLM_ROPE_SCALING_LLAMA3) return;
  const srlm_rope_scaling *s = &c->rope_scaling;
  const float factor = (float)s->factor, lo = (float)s->low_freq_factor;
  const float old_len = (float)s->original_max_position_embeddings;
  const float low_wavelen = (float)((double)s->original_max_position_embeddings / s->low_freq_factor);
  const float high_wavelen = (float)((double)s->original_max_position_embeddings / s->high_freq_factor);
  const float two_pi = (float)(2.0 * 3.14159265358979323846);
  for (int64_t d = 0; d < HS / 2; d++) {
    const float wavelen = two_pi / inv[d];
    float f = wavelen > low_wavelen ? inv[d] / factor : inv[d];
    if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
      const float smooth = (old_len / wavelen - lo) / (float)(s->high_freq_factor - s->low_freq_factor);
      f = (1.0f - smooth) * f / factor + smooth * f;
    }
    inv[d] = f;
  }
}

/* ---- construction -------------------------------------------------------------------- */

static srlm_status layout(srlm_model *m) {
  const srlm_model_config *c = &m->cfg;
  m->C = c->hidden_size, m->V = c->vocab_size, m->FF = c->intermediate_size, m->L = c->num_hidden_layers;
  m->NH = c->num_attention_heads, m->NKV = c->num_key_value_heads, m->HS = c->head_dim;
  m->Q = m->NH * m->HS, m->KV = m->NKV * m->HS;
  m->eps = (float)c->rms_norm_eps;
  SRLM_TRY(srlm_model_expected_tensors(c, &m->specs, &m->n_specs));
  m->offsets = srlm_xcalloc(m->n_specs, sizeof *m->offsets);
  m->layers = srlm_xcalloc((size_t)m->L, sizeof *m->layers);
  for (int64_t l = 0; l < m->L; l++) {
    layer_offsets *lo = &m->layers[l];
    lo->q_bias = lo->k_bias = lo->v_bias = lo->o_bias = lo->q_norm = lo->k_norm = SRLM_NO_TENSOR;
    lo->window = c->sliding_window > 0 && l >= c->max_window_layers ? c->sliding_window : 0;
  }
  size_t off = 0;
  m->off_lm_head = SRLM_NO_TENSOR;
  for (size_t i = 0; i < m->n_specs; i++) {
    const srlm_tensor_spec *s = &m->specs[i];
    m->offsets[i] = off;
    layer_offsets *lo = s->layer >= 0 ? &m->layers[s->layer] : NULL;
    switch (s->role) {
      case SRLM_TENSOR_EMBED: m->off_embed = off; break;
      case SRLM_TENSOR_FINAL_NORM: m->off_final_norm = off; break;
      case SRLM_TENSOR_LM_HEAD: m->off_lm_head = off; break;
      case SRLM_TENSOR_Q: lo->q = off; break;
      case SRLM_TENSOR_K: lo->k = off; break;
      case SRLM_TENSOR_V: lo->v = off; break;
      case SRLM_TENSOR_O: lo->o = off; break;
      case SRLM_TENSOR_Q_BIAS: lo->q_bias = off; break;
      case SRLM_TENSOR_K_BIAS: lo->k_bias = off; break;
      case SRLM_TENSOR_V_BIAS: lo->v_bias = off; break;
      case SRLM_TENSOR_O_BIAS: lo->o_bias = off; break;
      case SRLM_TENSOR_Q_NORM: lo->q_norm = off; break;
      case SRLM_TENSOR_K_NORM: lo->k_norm = off; break;
      case SRLM_TENSOR_GATE: lo->gate = off; break;
      case SRLM_TENSOR_UP: lo->up = off; break;
      case SRLM_TENSOR_DOWN: lo->down = off; break;
      case SRLM_TENSOR_ATTN_NORM: lo->attn_norm = off; break;
      case SRLM_TENSOR_MLP_NORM: lo->mlp_norm = off; break;
      default: return srlm_error(SRLM_ERR_INTERNAL, "model", "tensor '%s' has no role", s->name);
    }
    off += (size_t)s->numel;
  }
  if (m->off_lm_head == SRLM_NO_TENSOR) m->off_lm_head = m->off_embed;
  m->n_params = off;
  return SRLM_OK;
}

/* The ops a transformer calls. */
static const srlm_op_id k_model_ops[] = {
    SRLM_OP_matmul,           SRLM_OP_rmsnorm_forward,   SRLM_OP_rmsnorm_backward,  SRLM_OP_rope_forward,
    SRLM_OP_rope_backward,    SRLM_OP_attention_forward, SRLM_OP_attention_backward, SRLM_OP_attention_kv,
    SRLM_OP_kv_append,        SRLM_OP_swiglu_forward,    SRLM_OP_swiglu_backward,   SRLM_OP_embedding_forward,
    SRLM_OP_embedding_backward, SRLM_OP_add,             SRLM_OP_colsum,            SRLM_OP_cast,
    SRLM_OP_lmhead_forward,   SRLM_OP_lmhead_backward,
};

/* A model with config c and uninitialized parameters. */
static srlm_status model_new(const srlm_model_config *c, srlm_backend *be, srlm_dtype dt, srlm_model_use use,
                             srlm_model **out) {
  *out = NULL;
  for (size_t i = 0; i < sizeof k_model_ops / sizeof k_model_ops[0]; i++)
    if (!srlm_backend_has_op(be->ops, k_model_ops[i]))
      return srlm_backend_lacks(be, srlm_op_names[k_model_ops[i]]);
  if (dt != SRLM_F32 && dt != SRLM_BF16) return srlm_error(SRLM_ERR_INTERNAL, "model", "dtype %d", (int)dt);
  if (use != SRLM_MODEL_LEARN && use != SRLM_MODEL_DECODE)
    return srlm_error(SRLM_ERR_INTERNAL, "model", "use %d", (int)use);
  srlm_model *m = srlm_xcalloc(1, sizeof *m);
  m->cfg = *c;
  m->be = be;
  const char *keep = getenv("SRLM_KEEP_INPUTS"); /* "0": recompute them as a device does (tests; memory) */
  m->keep_inputs = be->host_memory && !(keep && strcmp(keep, "0") == 0);
  m->dt = dt;
  m->esz = srlm_dtype_size(dt);
  srlm_status st = srlm_model_config_finalize(&m->cfg, "model config");
  if (st == SRLM_OK) st = layout(m);
  if (st == SRLM_OK) st = srlm_backend_alloc(be, &m->params, m->n_params * m->esz);
  m->keeps_master = dt == SRLM_F32 || use == SRLM_MODEL_LEARN;
  if (st == SRLM_OK) m->master_hi = m->keeps_master ? m->n_params : 0;
  if (st == SRLM_OK && dt != SRLM_F32 && use == SRLM_MODEL_LEARN)
    st = srlm_backend_alloc(be, (void **)&m->master, m->n_params * sizeof(float));
  if (st == SRLM_OK) st = srlm_backend_alloc(be, (void **)&m->inv_freq, (size_t)(m->HS / 2) * sizeof(float));
  if (st == SRLM_OK) {
    float *inv = srlm_xmalloc((size_t)(m->HS / 2) * sizeof *inv);
    rope_inv_freq(&m->cfg, inv);
    st = srlm_backend_copy_h2d(be, m->inv_freq, inv, (size_t)(m->HS / 2) * sizeof *inv);
    free(inv);
  }
  if (st != SRLM_OK) {
    srlm_model_free(m);
    return st;
  }
  *out = m;
  return SRLM_OK;
}

/* Fills every tensor through fill(i, host) (host: numel floats of tensor i), moving each
 * into the master (and the compute copy) in turn, so at most one tensor is staged. */
typedef srlm_status (*fill_fn)(srlm_model *m, size_t i, float *host, void *ctx);
static srlm_status fill_tensors(srlm_model *m, fill_fn fill, void *ctx) {
  srlm_status st = SRLM_OK;
  float *host = NULL;
  size_t host_cap = 0;
  for (size_t i = 0; i < m->n_specs && st == SRLM_OK; i++) {
    const srlm_tensor_spec *s = &m->specs[i];
    if (s->numel > host_cap) {
      host_cap = s->numel;
      host = srlm_xrealloc(host, host_cap * sizeof *host);
    }
    st = fill(m, i, host, ctx);
    if (st == SRLM_OK) st = srlm_model_set_params(m, host, m->offsets[i], s->numel);
  }
  free(host);
  return st;
}

typedef struct load_ctx {
  srlm_hf_model *hf;
  const char *dir;
} load_ctx;

static srlm_status fill_from_file(srlm_model *m, size_t i, float *host, void *ctx) {
  const load_ctx *lc = ctx;
  const srlm_tensor_spec *s = &m->specs[i];
  const srlm_st_tensor *t = srlm_hf_model_tensor(lc->hf, s->name);
  if (!t) return srlm_error(SRLM_ERR_FORMAT, lc->dir, "tensor '%s' is missing", s->name);
  return srlm_st_tensor_to_f32(t, host, s->numel);
}

srlm_status srlm_model_load(const char *dir, srlm_backend *be, srlm_dtype dtype, srlm_model **out) {
  return srlm_model_load_for(dir, be, dtype, SRLM_MODEL_LEARN, out);
}

srlm_status srlm_model_load_for(const char *dir, srlm_backend *be, srlm_dtype dtype, srlm_model_use use,
                                srlm_model **out) {
  *out = NULL;
  srlm_hf_model *hf;
  SRLM_TRY(srlm_hf_model_open(dir, &hf));
  srlm_model *m;
  srlm_status st = model_new(srlm_hf_model_config(hf), be, dtype, use, &m);
  if (st != SRLM_OK) {
    srlm_hf_model_close(hf);
    return st;
  }
  load_ctx lc = {hf, dir};
  st = fill_tensors(m, fill_from_file, &lc);
  srlm_hf_model_close(hf);
  if (st != SRLM_OK) {
    srlm_model_free(m);
    return srlm_error_context(st, "loading %s", dir);
  }
  *out = m;
  return SRLM_OK;
}

static srlm_status fill_random(srlm_model *m, size_t i, float *host, void *ctx) {
  srlm_hf_model_init_tensor(&m->cfg, m->specs, i, *(const uint64_t *)ctx, host);
  return SRLM_OK;
}

/* A fresh model: the one definition of the initialization is srlm_hf_model_init_tensor,
 * so srlm_model_create(cfg, seed) equals loading srlm_hf_model_write_random(cfg, seed). */
srlm_status srlm_model_create(const srlm_model_config *cfg, uint64_t seed, srlm_backend *be, srlm_dtype dtype,
                              srlm_model **out) {
  return srlm_model_create_for(cfg, seed, be, dtype, SRLM_MODEL_LEARN, out);
}

srlm_status srlm_model_create_for(const srlm_model_config *cfg, uint64_t seed, srlm_backend *be, srlm_dtype dtype,
                                  srlm_model_use use, srlm_model **out) {
  *out = NULL;
  srlm_model *m;
  SRLM_TRY(model_new(cfg, be, dtype, use, &m));
  srlm_status st = fill_tensors(m, fill_random, &seed);
  if (st != SRLM_OK) {
    srlm_model_free(m);
    return st;
  }
  *out = m;
  return SRLM_OK;
}

srlm_status srlm_model_clone(const srlm_model *m, srlm_model_use use, srlm_model **out) {
  *out = NULL;
  srlm_model *c;
  SRLM_TRY(model_new(&m->cfg, m->be, m->dt, use, &c));
  const size_t n = m->n_params, k0 = n < STAGE_ELEMS ? n : STAGE_ELEMS;
  float *buf = srlm_xmalloc(k0 * sizeof *buf + 1);
  srlm_status st = SRLM_OK;
  for (size_t off = 0; off < n && st == SRLM_OK; off += k0) {
    const size_t k = n - off < k0 ? n - off : k0;
    st = srlm_model_get_params(m, buf, off, k);
    if (st == SRLM_OK) st = srlm_model_set_params(c, buf, off, k);
  }
  free(buf);
  if (st != SRLM_OK) {
    srlm_model_free(c);
    return st;
  }
  *out = c;
  return SRLM_OK;
}

srlm_status srlm_model_save(const srlm_model *m, const char *dir, srlm_st_dtype dtype) {
  return srlm_model_save_with(m, NULL, dir, dtype);
}

srlm_status srlm_model_save_with(const srlm_model *m, const float *params, const char *dir, srlm_st_dtype dtype) {
  if (!srlm_st_dtype_is_float(dtype))
    return srlm_error(SRLM_ERR_RANGE, dir, "weights must be saved as F32, BF16 or F16, not %s", srlm_st_dtype_name(dtype));
  SRLM_TRY(srlm_mkdirs(dir));
  srlm_st_entry *entries = srlm_xcalloc(m->n_specs, sizeof *entries);
  void **bufs = srlm_xcalloc(m->n_specs, sizeof *bufs);
  float *host = params ? NULL : srlm_xmalloc(m->n_params * sizeof *host + 1);
  srlm_status st = params ? SRLM_OK : srlm_model_get_params(m, host, 0, m->n_params);
  const float *src = params ? params : host;
  for (size_t i = 0; i < m->n_specs && st == SRLM_OK; i++) {
    const srlm_tensor_spec *s = &m->specs[i];
    const void *data = src + m->offsets[i];
    if (dtype != SRLM_ST_F32) {
      bufs[i] = srlm_xmalloc(s->numel * srlm_st_dtype_size(dtype));
      st = srlm_st_convert(SRLM_ST_F32, data, dtype, bufs[i], s->numel);
      data = bufs[i];
    }
    entries[i] = (srlm_st_entry){s->name, dtype, s->ndim, s->shape, data};
  }
  const srlm_st_meta meta[] = {{"format", "pt"}};
  if (st == SRLM_OK) st = srlm_st_write_dir(dir, entries, m->n_specs, meta, 1, 0, NULL);
  if (st == SRLM_OK) {
    srlm_model_config c = m->cfg;
    c.torch_dtype = dtype;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    st = srlm_model_config_write(path, &c);
  }
  for (size_t i = 0; i < m->n_specs; i++) free(bufs[i]);
  free(bufs);
  free(entries);
  free(host);
  return st;
}

void srlm_model_free(srlm_model *m) {
  if (!m) return;
  srlm_backend *be = m->be;
  srlm_backend_forget(be, m->params, m->n_params * m->esz);
  (void)srlm_backend_free(be, m->params);
  (void)srlm_backend_free(be, m->master);
  (void)srlm_backend_free(be, m->grads);
  (void)srlm_backend_free(be, m->inv_freq);
  srlm_model_kv_spare_free(m);
  dbuf *bufs[] = {&m->scratch_buf, &m->head_buf, &m->step_buf, &m->act_buf, &m->tscratch_buf, &m->bwd_buf,
                  &m->head_keep_buf};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) srlm_model_dbuf_free(m, bufs[i]);
  srlm_model_batch_bufs_free(m, &m->ib);
  srlm_model_batch_bufs_free(m, &m->tb);
  free(m->acts);
  free(m->rows_host);
  free(m->specs);
  free(m->offsets);
  free(m->layers);
  free(m);
}

const srlm_model_config *srlm_model_get_config(const srlm_model *m) { return &m->cfg; }
srlm_backend *srlm_model_backend(const srlm_model *m) { return m->be; }
srlm_dtype srlm_model_dtype(const srlm_model *m) { return m->dt; }
size_t srlm_model_num_params(const srlm_model *m) { return m->n_params; }
int srlm_model_has_master(const srlm_model *m) { return m->keeps_master; }

int srlm_model_master_range(const srlm_model *m, size_t *lo, size_t *hi) {
  *lo = m->master_lo;
  *hi = m->master_hi;
  return m->master_shard;
}

static int master_sharded(const srlm_model *m) { return m->master_shard; }

srlm_status srlm_model_shard_master(srlm_model *m, size_t lo, size_t hi) {
  if (m->dt == SRLM_F32 || !m->keeps_master)
    return srlm_error(SRLM_ERR_INTERNAL, "model shard_master", "only a bf16 model that learns keeps a separate fp32 "
                      "master to shard (this one is %s%s)", srlm_dtype_name(m->dt), m->keeps_master ? "" : ", decode-only");
  if (lo > hi || hi > m->n_params)
    return srlm_error(SRLM_ERR_RANGE, "model shard_master", "[%zu, %zu) outside the %zu parameters", lo, hi, m->n_params);
  if (master_sharded(m) && lo == m->master_lo && hi == m->master_hi) return SRLM_OK;
  if (master_sharded(m))
    return srlm_error(SRLM_ERR_INTERNAL, "model shard_master", "already holds the shard [%zu, %zu), not [%zu, %zu)",
                      m->master_lo, m->master_hi, lo, hi);
  float *shard = NULL;
  if (hi > lo) {
    SRLM_TRY(srlm_backend_alloc(m->be, (void **)&shard, (hi - lo) * sizeof(float)));
    srlm_status st = srlm_backend_copy_d2d(m->be, shard, m->master + lo, (hi - lo) * sizeof(float));
    if (st != SRLM_OK) {
      (void)srlm_backend_free(m->be, shard);
      return st;
    }
  }
  SRLM_TRY(srlm_backend_free(m->be, m->master));
  m->master = shard;
  m->master_lo = lo;
  m->master_hi = hi;
  m->master_shard = 1;
  return SRLM_OK;
}

/* ---- parameters and gradients ---------------------------------------------------------- */

static srlm_status check_range(const srlm_model *m, const char *what, size_t offset, size_t n) {
  if (offset > m->n_params || n > m->n_params - offset)
    return srlm_error(SRLM_ERR_RANGE, "model", "%s [%zu, %zu) outside the %zu parameters", what, offset, offset + n,
                      m->n_params);
  return SRLM_OK;
}

/* The weights changed (or may change through a pointer just handed out): a new version,
 * and the backend forgets what it kept of the old ones (the CPU's packed weights). */
static void weights_changed(srlm_model *m) {
  m->wversion = srlm_weights_version_next();
  srlm_backend_forget(m->be, m->params, m->n_params * m->esz);
}

/* Both hand out writable pointers to the weights: each call counts as a change. */
float *srlm_model_master(srlm_model *m) {
  if (!m->keeps_master || m->master_hi == m->master_lo) return NULL;
  weights_changed(m);
  return m->master ? m->master : (float *)m->params;
}
void *srlm_model_compute_params(srlm_model *m) {
  weights_changed(m);
  return m->params;
}

/* A model without master: the compute copy [offset, offset + n) widened on the host (exact). */
static srlm_status widen_params(const srlm_model *m, float *host, size_t offset, size_t n) {
  const size_t k0 = n < STAGE_ELEMS ? n : STAGE_ELEMS;
  void *tmp = srlm_xmalloc(k0 * m->esz);
  srlm_status st = SRLM_OK;
  for (size_t off = 0; off < n && st == SRLM_OK; off += k0) {
    const size_t k = n - off < k0 ? n - off : k0;
    st = srlm_backend_copy_d2h(m->be, tmp, srlm_model_w(m, offset + off), k * m->esz);
    if (st == SRLM_OK) srlm_convert(host + off, SRLM_F32, tmp, m->dt, k);
  }
  free(tmp);
  return st;
}

/* A model without master: host fp32 values rounded into the compute copy by the backend's
 * cast op (the rounding of refresh_params and the optimizer), through a staging buffer. */
static srlm_status round_params(srlm_model *m, const float *host, size_t offset, size_t n) {
  weights_changed(m);
  const size_t k0 = n < STAGE_ELEMS ? n : STAGE_ELEMS;
  float *tmp = NULL;
  SRLM_TRY(srlm_backend_alloc(m->be, (void **)&tmp, k0 * sizeof(float)));
  srlm_status st = SRLM_OK;
  for (size_t off = 0; off < n && st == SRLM_OK; off += k0) {
    const size_t k = n - off < k0 ? n - off : k0;
    st = srlm_backend_copy_h2d(m->be, tmp, host + off, k * sizeof(float));
    srlm_cast_params c = {.out = srlm_model_w(m, offset + off), .x = tmp, .n = (int64_t)k, .dtype = SRLM_F32,
                          .out_dtype = m->dt};
    if (st == SRLM_OK) st = OP(m, cast, c);
  }
  srlm_status fst = srlm_backend_free(m->be, tmp);
  return st != SRLM_OK ? st : fst;
}

srlm_status srlm_model_get_params(const srlm_model *m, float *host, size_t offset, size_t n) {
  SRLM_TRY(check_range(m, "get_params", offset, n));
  if (n == 0) return SRLM_OK;
  if (!m->keeps_master) return widen_params(m, host, offset, n);
  if (offset < m->master_lo || offset + n > m->master_hi)
    return srlm_error(SRLM_ERR_INTERNAL, "model get_params", "[%zu, %zu) of the fp32 master: this ZeRO-1 learner holds "
                      "only its shard [%zu, %zu) (the full master is gathered from the learners)", offset, offset + n,
                      m->master_lo, m->master_hi);
  const float *master = m->master ? m->master : (const float *)m->params;
  return srlm_backend_copy_d2h(m->be, host, master + (offset - m->master_lo), n * sizeof(float));
}

srlm_status srlm_model_refresh_params(srlm_model *m, size_t offset, size_t n) {
  SRLM_TRY(check_range(m, "refresh_params", offset, n));
  if (!srlm_model_has_master(m))
    return srlm_error(SRLM_ERR_INTERNAL, "model refresh_params", "this %s model keeps no fp32 master (loaded for "
                      "decoding only): there is nothing to refresh its compute copy from", srlm_dtype_name(m->dt));
  weights_changed(m);
  if (!m->master || n == 0) return SRLM_OK;
  if (offset < m->master_lo || offset + n > m->master_hi)
    return srlm_error(SRLM_ERR_INTERNAL, "model refresh_params", "[%zu, %zu) outside this ZeRO-1 learner's master "
                      "shard [%zu, %zu)", offset, offset + n, m->master_lo, m->master_hi);
  srlm_cast_params c = {.out = srlm_model_w(m, offset), .x = m->master + (offset - m->master_lo), .n = (int64_t)n,
                        .dtype = SRLM_F32,
                        .out_dtype = m->dt};
  return OP(m, cast, c);
}

srlm_status srlm_model_set_params(srlm_model *m, const float *host, size_t offset, size_t n) {
  SRLM_TRY(check_range(m, "set_params", offset, n));
  if (n == 0) return SRLM_OK;
  if (!m->keeps_master) return round_params(m, host, offset, n);
  if (master_sharded(m)) { /* the compute copy of the whole range, the master of its part in the shard */
    SRLM_TRY(round_params(m, host, offset, n));
    const size_t a = offset > m->master_lo ? offset : m->master_lo;
    const size_t b = offset + n < m->master_hi ? offset + n : m->master_hi;
    if (a >= b) return SRLM_OK;
    return srlm_backend_copy_h2d(m->be, m->master + (a - m->master_lo), host + (a - offset), (b - a) * sizeof(float));
  }
  SRLM_TRY(srlm_backend_copy_h2d(m->be, srlm_model_master(m) + offset, host, n * sizeof(float)));
  return srlm_model_refresh_params(m, offset, n);
}

static srlm_status ensure_grads(srlm_model *m) {
  if (m->grads) return SRLM_OK;
  srlm_status st = srlm_backend_alloc(m->be, (void **)&m->grads, m->n_params * sizeof(float));
  if (st == SRLM_OK) st = srlm_backend_zero(m->be, m->grads, m->n_params * sizeof(float));
  if (st != SRLM_OK) {
    (void)srlm_backend_free(m->be, m->grads);
    m->grads = NULL;
    return srlm_error_context(st, "model: %zu gradients", m->n_params);
  }
  return SRLM_OK;
}

srlm_status srlm_model_grad_buffer(srlm_model *m, float **grads) {
  *grads = NULL;
  SRLM_TRY(ensure_grads(m));
  *grads = m->grads;
  return SRLM_OK;
}

srlm_status srlm_model_get_grads(srlm_model *m, float *host, size_t offset, size_t n) {
  SRLM_TRY(check_range(m, "get_grads", offset, n));
  SRLM_TRY(ensure_grads(m));
  if (n == 0) return SRLM_OK;
  return srlm_backend_copy_d2h(m->be, host, m->grads + offset, n * sizeof(float));
}

srlm_status srlm_model_zero_grad(srlm_model *m) {
  SRLM_TRY(ensure_grads(m));
  return srlm_backend_zero(m->be, m->grads, m->n_params * sizeof(float));
}

srlm_status srlm_model_param_view(const srlm_model *m, const char *name, size_t *offset, size_t *numel) {
  for (size_t i = 0; i < m->n_specs; i++)
    if (!strcmp(m->specs[i].name, name)) {
      *offset = m->offsets[i];
      *numel = m->specs[i].numel;
      return SRLM_OK;
    }
  if (m->cfg.tie_word_embeddings && !strcmp(name, "lm_head.weight")) {
    *offset = m->off_embed;
    *numel = (size_t)(m->V * m->C);
    return SRLM_OK;
  }
  return srlm_error(SRLM_ERR_RANGE, "model", "no tensor named '%s' in this %s model", name,
                    srlm_model_type_name(m->cfg.model_type));
}

srlm_status srlm_model_memory_plan(const srlm_model_config *c, srlm_dtype dt, int recompute, int64_t T, int64_t NT,
                                   int64_t T_infer, srlm_model_memory *out) {
  memset(out, 0, sizeof *out);
  if (dt != SRLM_F32 && dt != SRLM_BF16) return srlm_error(SRLM_ERR_INTERNAL, "model memory plan", "dtype %d", (int)dt);
  if (T < 0 || NT < 0 || NT > T || T_infer < 0)
    return srlm_error(SRLM_ERR_RANGE, "model memory plan", "T = %lld, NT = %lld, T_infer = %lld", (long long)T,
                      (long long)NT, (long long)T_infer);
  srlm_model *m = srlm_xcalloc(1, sizeof *m); /* the shape only: nothing is allocated on a backend */
  m->cfg = *c;
  m->dt = dt;
  m->esz = srlm_dtype_size(dt);
  m->recompute = recompute ? 1 : 0;
  srlm_status st = srlm_model_config_finalize(&m->cfg, "model config");
  if (st == SRLM_OK) st = layout(m);
  if (st == SRLM_OK) {
    const size_t n = m->n_params;
    out->n_params = n;
    out->params = n * m->esz;
    out->master = dt != SRLM_F32 ? n * sizeof(float) : 0;
    out->grads = n * sizeof(float);
    out->moments = 2 * n * sizeof(float);
    out->train = srlm_model_train_bytes(m, T, NT);
    if (T_infer > 0) { /* + the head's rows of a log-prob pass (srlm_model_logprobs: every token a target) */
      size_t head = 0;
      srlm_model_carve(NULL, &head, T_infer * m->C, m->esz);
      srlm_model_carve(NULL, &head, T_infer, sizeof(float));
      out->infer = srlm_model_infer_bytes(m, T_infer) + head;
    }
    out->kv_per_position = 2 * (size_t)m->L * (size_t)m->KV * m->esz;
  }
  free(m->specs);
  free(m->offsets);
  free(m->layers);
  free(m);
  return st;
}

srlm_status srlm_model_set_recompute(srlm_model *m, int on) {
  m->recompute = on ? 1 : 0;
  m->trained = 0;
  return SRLM_OK;
}

size_t srlm_model_activation_bytes(const srlm_model *m) { return m->act_bytes; }
size_t srlm_model_inference_bytes(const srlm_model *m) { return m->scratch_buf.bytes + m->head_buf.bytes; }
