/* hfmodel: the tensors a Llama-family checkpoint holds (HF names, PyTorch [out, in]
 * shapes), the check of a checkpoint against them, model directories (config.json +
 * weights) and fresh directories of deterministic random weights.
 *
 * The check lists every problem it finds (up to what fits in one error message),
 * so a user sees a whole missing layer at once rather than one tensor per run. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/hfmodel.h"

/* ---- expected tensors ------------------------------------------------------------ */

static void spec_set(srlm_tensor_spec *s, srlm_tensor_role role, int layer, const char *name, int ndim,
                     int64_t d0, int64_t d1) {
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  s->role = role;
  s->layer = layer;
  s->ndim = ndim;
  s->shape[0] = d0;
  s->shape[1] = ndim > 1 ? d1 : 0;
  s->numel = (uint64_t)d0 * (uint64_t)(ndim > 1 ? d1 : 1);
}

srlm_status srlm_model_expected_tensors(const srlm_model_config *cfg_in, srlm_tensor_spec **specs, size_t *n) {
  *specs = NULL;
  *n = 0;
  srlm_model_config c = *cfg_in;
  SRLM_TRY(srlm_model_config_finalize(&c, "model config"));
  const int64_t C = c.hidden_size, V = c.vocab_size, FF = c.intermediate_size, HS = c.head_dim;
  const int64_t Q = c.num_attention_heads * HS, KV = c.num_key_value_heads * HS;
  const int L = (int)c.num_hidden_layers;
  size_t cap = 3 + (size_t)L * 17;
  srlm_tensor_spec *s = srlm_xmalloc(cap * sizeof *s);
  size_t k = 0;
  char nm[96];
  spec_set(&s[k++], SRLM_TENSOR_EMBED, -1, "model.embed_tokens.weight", 2, V, C);
  for (int i = 0; i < L; i++) {
#define LAYER(role, suffix, ndim, d0, d1)                                   \
  do {                                                                      \
    snprintf(nm, sizeof nm, "model.layers.%d.%s", i, suffix);               \
    spec_set(&s[k++], role, i, nm, ndim, d0, d1);                           \
  } while (0)
    LAYER(SRLM_TENSOR_Q, "self_attn.q_proj.weight", 2, Q, C);
    if (c.qkv_bias) LAYER(SRLM_TENSOR_Q_BIAS, "self_attn.q_proj.bias", 1, Q, 0);
    LAYER(SRLM_TENSOR_K, "self_attn.k_proj.weight", 2, KV, C);
    if (c.qkv_bias) LAYER(SRLM_TENSOR_K_BIAS, "self_attn.k_proj.bias", 1, KV, 0);
    LAYER(SRLM_TENSOR_V, "self_attn.v_proj.weight", 2, KV, C);
    if (c.qkv_bias) LAYER(SRLM_TENSOR_V_BIAS, "self_attn.v_proj.bias", 1, KV, 0);
    LAYER(SRLM_TENSOR_O, "self_attn.o_proj.weight", 2, C, Q);
    if (c.o_bias) LAYER(SRLM_TENSOR_O_BIAS, "self_attn.o_proj.bias", 1, C, 0);
    if (c.qk_norm) {
      LAYER(SRLM_TENSOR_Q_NORM, "self_attn.q_norm.weight", 1, HS, 0);
      LAYER(SRLM_TENSOR_K_NORM, "self_attn.k_norm.weight", 1, HS, 0);
    }
    LAYER(SRLM_TENSOR_GATE, "mlp.gate_proj.weight", 2, FF, C);
    LAYER(SRLM_TENSOR_UP, "mlp.up_proj.weight", 2, FF, C);
    LAYER(SRLM_TENSOR_DOWN, "mlp.down_proj.weight", 2, C, FF);
    LAYER(SRLM_TENSOR_ATTN_NORM, "input_layernorm.weight", 1, C, 0);
    LAYER(SRLM_TENSOR_MLP_NORM, "post_attention_layernorm.weight", 1, C, 0);
#undef LAYER
  }
  spec_set(&s[k++], SRLM_TENSOR_FINAL_NORM, -1, "model.norm.weight", 1, C, 0);
  if (!c.tie_word_embeddings) spec_set(&s[k++], SRLM_TENSOR_LM_HEAD, -1, "lm_head.weight", 2, V, C);
  *specs = s;
  *n = k;
  return SRLM_OK;
}

uint64_t srlm_model_param_count(const srlm_model_config *cfg) {
  srlm_tensor_spec *s;
  size_t n;
  if (srlm_model_expected_tensors(cfg, &s, &n) != SRLM_OK) return 0;
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) total += s[i].numel;
  free(s);
  return total;
}

void srlm_format_count(uint64_t n, char *buf, size_t size) {
  static const char units[] = {'K', 'M', 'B', 'T'};
  if (n < 1000) {
    snprintf(buf, size, "%llu", (unsigned long long)n);
    return;
  }
  double v = (double)n;
  int u = -1;
  /* pick the unit after rounding to 3 significant digits, so 999,999 reads 1.00M */
  while (u < 3 && v >= 999.5) {
    v /= 1000.0;
    u++;
  }
  if (v >= 99.95)
    snprintf(buf, size, "%.0f%c", v, units[u]);
  else if (v >= 9.995)
    snprintf(buf, size, "%.1f%c", v, units[u]);
  else
    snprintf(buf, size, "%.2f%c", v, units[u]);
}

/* ---- checking a checkpoint -------------------------------------------------------- */

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

typedef struct problems {
  char text[1700];
  size_t len;
  size_t count, listed;
} problems;

static void problem(problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(problems *p, const char *fmt, ...) {
  p->count++;
  char one[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(one, sizeof one, fmt, ap);
  va_end(ap);
  size_t need = strlen(one) + 2;
  if (p->len + need >= sizeof p->text - 40) return; /* keep room for "and N more" */
  p->len += (size_t)snprintf(p->text + p->len, sizeof p->text - p->len, "%s%s", p->listed ? "; " : "", one);
  p->listed++;
}

static int cmp_spec_name(const void *a, const void *b) {
  return strcmp(((const srlm_tensor_spec *)a)->name, ((const srlm_tensor_spec *)b)->name);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

srlm_status srlm_model_check_tensors(const srlm_model_config *cfg, const srlm_st_set *w, const char *where,
                                     srlm_tensor_check *report) {
  srlm_tensor_check r = {0};
  if (report) *report = r;
  srlm_tensor_spec *specs;
  size_t n;
  SRLM_TRY(srlm_model_expected_tensors(cfg, &specs, &n));
  problems p = {.len = 0};
  r.n_expected = n;
  r.n_found = srlm_st_set_count(w);
  char a[128], b[128];
  for (size_t i = 0; i < n; i++) {
    const srlm_tensor_spec *s = &specs[i];
    const srlm_st_tensor *t = srlm_st_set_find(w, s->name);
    shape_str(a, sizeof a, s->ndim, s->shape);
    if (!t) {
      r.n_missing++;
      problem(&p, "missing tensor '%s' (expected shape %s)", s->name, a);
      continue;
    }
    bool same = t->ndim == s->ndim;
    for (int d = 0; same && d < s->ndim; d++) same = t->shape[d] == s->shape[d];
    if (!same) {
      r.n_bad_shape++;
      shape_str(b, sizeof b, t->ndim > 8 ? 8 : t->ndim, t->shape);
      problem(&p, "tensor '%s' in %s has shape %s, expected %s", s->name, base_name(t->file), b, a);
    } else if (!srlm_st_dtype_is_float(t->dtype)) {
      r.n_bad_shape++;
      problem(&p, "tensor '%s' in %s has dtype %s, expected F32, F16 or BF16", s->name, base_name(t->file),
              srlm_st_dtype_name(t->dtype));
    }
  }
  qsort(specs, n, sizeof *specs, cmp_spec_name);
  srlm_model_config c = *cfg;
  srlm_model_config_finalize(&c, where); /* succeeded inside srlm_model_expected_tensors */
  for (size_t i = 0; i < srlm_st_set_count(w); i++) {
    const srlm_st_tensor *t = srlm_st_set_at(w, i);
    srlm_tensor_spec key;
    snprintf(key.name, sizeof key.name, "%s", t->name);
    if (strlen(t->name) < sizeof key.name && bsearch(&key, specs, n, sizeof *specs, cmp_spec_name)) continue;
    /* transformers ties lm_head to the embedding and drops old rotary buffers */
    bool tied_head = c.tie_word_embeddings && !strcmp(t->name, "lm_head.weight") && t->ndim == 2 &&
                     t->shape[0] == c.vocab_size && t->shape[1] == c.hidden_size;
    if (tied_head || ends_with(t->name, ".rotary_emb.inv_freq")) {
      r.n_ignored++;
      continue;
    }
    r.n_unexpected++;
    problem(&p, "unexpected tensor '%s' in %s", t->name, base_name(t->file));
  }
  free(specs);
  if (report) *report = r;
  if (p.count == 0) return SRLM_OK;
  if (p.listed < p.count)
    snprintf(p.text + p.len, sizeof p.text - p.len, "; and %zu more", p.count - p.listed);
  return srlm_error(SRLM_ERR_FORMAT, where, "%zu tensor problem%s: %s", p.count, p.count == 1 ? "" : "s", p.text);
}

/* ---- model directories -------------------------------------------------------------- */

struct srlm_hf_model {
  char *dir;
  srlm_model_config config;
  srlm_st_set *weights;
};

static char *join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = srlm_xmalloc(a + b + 2);
  memcpy(p, dir, a);
  size_t k = a;
  if (a && dir[a - 1] != '/') p[k++] = '/';
  memcpy(p + k, name, b + 1);
  return p;
}

srlm_status srlm_hf_model_open(const char *dir, srlm_hf_model **out) {
  *out = NULL;
  srlm_hf_model *m = srlm_xcalloc(1, sizeof *m);
  m->dir = srlm_xstrdup(dir);
  char *cfg_path = join(dir, "config.json");
  srlm_status st = srlm_model_config_load(cfg_path, &m->config);
  free(cfg_path);
  if (st == SRLM_OK) st = srlm_st_set_open_dir(dir, &m->weights);
  if (st == SRLM_OK) st = srlm_model_check_tensors(&m->config, m->weights, dir, NULL);
  if (st != SRLM_OK) {
    srlm_hf_model_close(m);
    return st;
  }
  *out = m;
  return SRLM_OK;
}

void srlm_hf_model_close(srlm_hf_model *m) {
  if (!m) return;
  srlm_st_set_free(m->weights);
  free(m->dir);
  free(m);
}

const srlm_model_config *srlm_hf_model_config(const srlm_hf_model *m) { return &m->config; }
const srlm_st_set *srlm_hf_model_weights(const srlm_hf_model *m) { return m->weights; }
const srlm_st_tensor *srlm_hf_model_tensor(const srlm_hf_model *m, const char *name) {
  return srlm_st_set_find(m->weights, name);
}

/* ---- random directories ---------------------------------------------------------------- */

/* Purpose word of the init stream in srlm_rng_bits' counter. */
#define INIT_PURPOSE 0x1417u

static void fill_normal(float *x, uint64_t n, double std, uint64_t seed, uint32_t tensor) {
  const double two_pi = 6.283185307179586476925286766559;
  for (uint64_t e = 0; e < n; e += 2) {
    uint64_t block = e / 2;
    srlm_philox_out r = srlm_rng_bits(seed, INIT_PURPOSE, tensor, (uint32_t)block, (uint32_t)(block >> 32));
    double u1 = 1.0 - srlm_rng_u01d(r.v[0], r.v[1]); /* (0, 1]: log stays finite */
    double u2 = srlm_rng_u01d(r.v[2], r.v[3]);
    double rad = sqrt(-2.0 * log(u1));
    x[e] = (float)(std * rad * cos(two_pi * u2));
    if (e + 1 < n) x[e + 1] = (float)(std * rad * sin(two_pi * u2));
  }
}

void srlm_hf_model_init_tensor(const srlm_model_config *cfg, const srlm_tensor_spec *specs, size_t k, uint64_t seed,
                               float *dst) {
  const srlm_tensor_spec *s = &specs[k];
  const double std = 0.02, resid_std = 0.02 / sqrt(2.0 * (double)cfg->num_hidden_layers);
  switch (s->role) {
    case SRLM_TENSOR_ATTN_NORM:
    case SRLM_TENSOR_MLP_NORM:
    case SRLM_TENSOR_FINAL_NORM:
    case SRLM_TENSOR_Q_NORM:
    case SRLM_TENSOR_K_NORM:
      for (uint64_t e = 0; e < s->numel; e++) dst[e] = 1.0f;
      break;
    case SRLM_TENSOR_Q_BIAS:
    case SRLM_TENSOR_K_BIAS:
    case SRLM_TENSOR_V_BIAS:
    case SRLM_TENSOR_O_BIAS:
      for (uint64_t e = 0; e < s->numel; e++) dst[e] = 0.0f;
      break;
    case SRLM_TENSOR_O:
    case SRLM_TENSOR_DOWN:
      fill_normal(dst, s->numel, resid_std, seed, (uint32_t)k);
      break;
    default:
      fill_normal(dst, s->numel, std, seed, (uint32_t)k);
      break;
  }
}

srlm_status srlm_hf_model_write_random(const char *dir, const srlm_model_config *cfg_in, uint64_t seed,
                                       srlm_st_dtype dtype) {
  if (!srlm_st_dtype_is_float(dtype))
    return srlm_error(SRLM_ERR_RANGE, dir, "random weights must be F32, BF16 or F16, not %s",
                      srlm_st_dtype_name(dtype));
  srlm_model_config c = *cfg_in;
  c.torch_dtype = dtype;
  SRLM_TRY(srlm_model_config_finalize(&c, dir));
  SRLM_TRY(srlm_mkdirs(dir));
  srlm_tensor_spec *specs;
  size_t n;
  SRLM_TRY(srlm_model_expected_tensors(&c, &specs, &n));
  srlm_st_entry *entries = srlm_xcalloc(n ? n : 1, sizeof *entries);
  void **bufs = srlm_xcalloc(n ? n : 1, sizeof *bufs);
  float *tmp = NULL;
  uint64_t tmp_cap = 0;
  for (size_t i = 0; i < n; i++) {
    const srlm_tensor_spec *s = &specs[i];
    if (s->numel > tmp_cap) {
      tmp_cap = s->numel;
      tmp = srlm_xrealloc(tmp, tmp_cap * sizeof *tmp);
    }
    srlm_hf_model_init_tensor(&c, specs, i, seed, tmp);
    bufs[i] = srlm_xmalloc(s->numel * srlm_st_dtype_size(dtype));
    srlm_st_convert(SRLM_ST_F32, tmp, dtype, bufs[i], s->numel);
    entries[i] = (srlm_st_entry){s->name, dtype, s->ndim, s->shape, bufs[i]};
  }
  free(tmp);
  const srlm_st_meta meta[] = {{"format", "pt"}};
  srlm_status st = srlm_st_write_dir(dir, entries, n, meta, 1, 0, NULL);
  if (st == SRLM_OK) {
    char *cfg_path = join(dir, "config.json");
    st = srlm_model_config_write(cfg_path, &c);
    free(cfg_path);
  }
  for (size_t i = 0; i < n; i++) free(bufs[i]);
  free(bufs);
  free(entries);
  free(specs);
  return st;
}
