/* AdamW (torch.optim.AdamW semantics), global-norm clipping and the non-finite skip;
 * see include/srlm/optim.h for the formulas.
 *
 * Work is split into fixed chunks of at most CHUNK elements that never straddle a
 * weight-decay boundary. Threads take whole chunks; the norm adds the chunk sums in
 * chunk order, so every result is the same for any thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/optim.h"

#define CHUNK ((size_t)1 << 16)

typedef struct optim_chunk {
  size_t start, end; /* [start, end) */
  int decay;
} optim_chunk;

struct srlm_optim {
  const srlm_backend_ops *be;
  srlm_optim_config cfg;
  size_t n;
  float *m, *v;      /* (n) backend memory */
  /* Decay ranges as a sorted list of boundaries: decay flag holds from bounds[i] to
   * bounds[i + 1]. Kept small (one entry per tensor at most). */
  size_t *bounds;    /* (n_bounds + 1) bounds[0] = 0, bounds[n_bounds] = n */
  int *flags;        /* (n_bounds) */
  size_t n_bounds;
  optim_chunk *chunks;
  size_t n_chunks;
  int64_t step, n_skipped;
  double *partial;   /* (n_chunks) scratch for the norm */
};

void srlm_optim_config_from_config(const srlm_config *cfg, srlm_optim_config *out) {
  memset(out, 0, sizeof *out);
  out->beta1 = cfg->train.adam_beta1;
  out->beta2 = cfg->train.adam_beta2;
  out->eps = cfg->train.adam_eps;
  out->weight_decay = cfg->train.weight_decay;
  out->grad_clip = cfg->train.grad_clip;
  out->decay_1d = cfg->train.decay_1d;
}

static srlm_status check_config(const srlm_optim_config *c) {
  if (!(c->beta1 >= 0 && c->beta1 < 1))
    return srlm_error(SRLM_ERR_CONFIG, "train.adam_beta1", "%g is outside [0, 1)", c->beta1);
  if (!(c->beta2 >= 0 && c->beta2 < 1))
    return srlm_error(SRLM_ERR_CONFIG, "train.adam_beta2", "%g is outside [0, 1)", c->beta2);
  if (!(c->eps > 0 && isfinite(c->eps))) return srlm_error(SRLM_ERR_CONFIG, "train.adam_eps", "%g must be > 0", c->eps);
  if (!(c->weight_decay >= 0 && isfinite(c->weight_decay)))
    return srlm_error(SRLM_ERR_CONFIG, "train.weight_decay", "%g must be >= 0", c->weight_decay);
  if (!(c->grad_clip >= 0 && isfinite(c->grad_clip)))
    return srlm_error(SRLM_ERR_CONFIG, "train.grad_clip", "%g must be >= 0 (0 = off)", c->grad_clip);
  return SRLM_OK;
}

/* Splits every decay segment into chunks of at most CHUNK elements. */
static void rebuild_chunks(srlm_optim *o) {
  size_t count = 0;
  for (size_t i = 0; i < o->n_bounds; i++) count += (o->bounds[i + 1] - o->bounds[i] + CHUNK - 1) / CHUNK;
  free(o->chunks);
  free(o->partial);
  o->chunks = srlm_xmalloc((count ? count : 1) * sizeof *o->chunks);
  o->partial = srlm_xmalloc((count ? count : 1) * sizeof *o->partial);
  o->n_chunks = 0;
  for (size_t i = 0; i < o->n_bounds; i++)
    for (size_t s = o->bounds[i]; s < o->bounds[i + 1]; s += CHUNK) {
      size_t e = s + CHUNK < o->bounds[i + 1] ? s + CHUNK : o->bounds[i + 1];
      o->chunks[o->n_chunks++] = (optim_chunk){s, e, o->flags[i]};
    }
}

srlm_status srlm_optim_create(const srlm_backend_ops *be, size_t n, const srlm_optim_config *cfg,
                              srlm_optim **out) {
  *out = NULL;
  if (!be) return srlm_error(SRLM_ERR_INTERNAL, "optim", "no backend");
  if (!be->host_memory)
    return srlm_error(SRLM_ERR_UNSUPPORTED, "optim",
                      "the AdamW optimizer is not built for the '%s' backend yet (only backends with host memory)",
                      be->name);
  SRLM_TRY(check_config(cfg));
  srlm_optim *o = srlm_xcalloc(1, sizeof *o);
  o->be = be;
  o->cfg = *cfg;
  o->n = n;
  srlm_status st = be->alloc((void **)&o->m, n * sizeof(float));
  if (st == SRLM_OK) st = be->alloc((void **)&o->v, n * sizeof(float));
  if (st == SRLM_OK && n) st = be->zero(o->m, n * sizeof(float));
  if (st == SRLM_OK && n) st = be->zero(o->v, n * sizeof(float));
  if (st != SRLM_OK) {
    srlm_optim_free(o);
    return st;
  }
  o->bounds = srlm_xmalloc(2 * sizeof *o->bounds);
  o->flags = srlm_xmalloc(sizeof *o->flags);
  o->bounds[0] = 0;
  o->bounds[1] = n;
  o->flags[0] = 1;
  o->n_bounds = n ? 1 : 0;
  rebuild_chunks(o);
  *out = o;
  return SRLM_OK;
}

void srlm_optim_free(srlm_optim *o) {
  if (!o) return;
  o->be->free(o->m);
  o->be->free(o->v);
  free(o->bounds);
  free(o->flags);
  free(o->chunks);
  free(o->partial);
  free(o);
}

/* Makes x a segment boundary (splitting the segment that holds it); returns its index. */
static size_t split_at(srlm_optim *o, size_t x) {
  size_t i = 0;
  while (i < o->n_bounds && o->bounds[i + 1] <= x) i++;
  if (i == o->n_bounds || o->bounds[i] == x) return i;
  o->bounds = srlm_xrealloc(o->bounds, (o->n_bounds + 2) * sizeof *o->bounds);
  o->flags = srlm_xrealloc(o->flags, (o->n_bounds + 1) * sizeof *o->flags);
  memmove(o->bounds + i + 2, o->bounds + i + 1, (o->n_bounds - i) * sizeof *o->bounds);
  memmove(o->flags + i + 1, o->flags + i, (o->n_bounds - i) * sizeof *o->flags);
  o->bounds[i + 1] = x;
  o->n_bounds++;
  return i + 1;
}

srlm_status srlm_optim_set_decay(srlm_optim *o, size_t offset, size_t numel, int decay) {
  if (offset > o->n || numel > o->n - offset)
    return srlm_error(SRLM_ERR_RANGE, "optim set_decay", "range [%zu, %zu) outside the %zu parameters", offset,
                      offset + numel, o->n);
  if (!numel) return SRLM_OK;
  size_t a = split_at(o, offset), b = split_at(o, offset + numel);
  for (size_t i = a; i < b; i++) o->flags[i] = decay ? 1 : 0;
  /* Merge neighbours with equal flags so the list stays one entry per run. */
  size_t w = 0;
  for (size_t i = 0; i < o->n_bounds; i++) {
    if (w > 0 && o->flags[w - 1] == o->flags[i]) {
      o->bounds[w] = o->bounds[i + 1];
      continue;
    }
    o->bounds[w] = o->bounds[i];
    o->flags[w] = o->flags[i];
    o->bounds[w + 1] = o->bounds[i + 1];
    w++;
  }
  o->n_bounds = w;
  rebuild_chunks(o);
  return SRLM_OK;
}

size_t srlm_optim_decayed_count(const srlm_optim *o) {
  size_t c = 0;
  for (size_t i = 0; i < o->n_bounds; i++)
    if (o->flags[i]) c += o->bounds[i + 1] - o->bounds[i];
  return c;
}

srlm_status srlm_optim_create_for_model(srlm_model *m, const srlm_optim_config *cfg, srlm_optim **out) {
  *out = NULL;
  size_t n = srlm_model_num_params(m);
  SRLM_TRY(srlm_optim_create(srlm_model_backend(m), n, cfg, out));
  if (cfg->decay_1d) return SRLM_OK;
  srlm_tensor_spec *specs;
  size_t ns;
  srlm_status st = srlm_model_expected_tensors(srlm_model_get_config(m), &specs, &ns);
  for (size_t i = 0; st == SRLM_OK && i < ns; i++) {
    if (specs[i].ndim != 1) continue;
    size_t off, numel;
    st = srlm_model_param_view(m, specs[i].name, &off, &numel);
    if (st == SRLM_OK) st = srlm_optim_set_decay(*out, off, numel, 0);
  }
  if (st == SRLM_OK) free(specs);
  if (st != SRLM_OK) {
    srlm_optim_free(*out);
    *out = NULL;
  }
  return st;
}

/* Sum of squares of each chunk into partial[], then added in chunk order. */
static double chunked_norm(const float *x, const optim_chunk *chunks, size_t n_chunks, double *partial) {
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < n_chunks; c++) {
    double s = 0;
    for (size_t i = chunks[c].start; i < chunks[c].end; i++) s += (double)x[i] * (double)x[i];
    partial[c] = s;
  }
  double total = 0;
  for (size_t c = 0; c < n_chunks; c++) total += partial[c];
  return sqrt(total);
}

double srlm_optim_global_norm(const float *x, size_t n) {
  size_t nc = (n + CHUNK - 1) / CHUNK;
  optim_chunk *chunks = srlm_xmalloc((nc ? nc : 1) * sizeof *chunks);
  double *partial = srlm_xmalloc((nc ? nc : 1) * sizeof *partial);
  for (size_t c = 0; c < nc; c++)
    chunks[c] = (optim_chunk){c * CHUNK, (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n, 1};
  double r = chunked_norm(x, chunks, nc, partial);
  free(chunks);
  free(partial);
  return r;
}

srlm_status srlm_optim_step(srlm_optim *o, float *params, const float *grads, double lr,
                            srlm_optim_stats *stats) {
  if (!(lr >= 0 && isfinite(lr))) return srlm_error(SRLM_ERR_RANGE, "optim step", "learning rate %g", lr);
  if (o->n && (!params || !grads)) return srlm_error(SRLM_ERR_INTERNAL, "optim step", "NULL params or grads");
  double norm = chunked_norm(grads, o->chunks, o->n_chunks, o->partial);
  srlm_optim_stats s = {.grad_norm = norm, .clip_scale = 1.0, .lr = lr};
  if (!isfinite(norm)) {
    o->n_skipped++;
    s.skipped = 1;
  } else {
    /* torch.nn.utils.clip_grad_norm_: coef = clip / (norm + 1e-6), clamped to 1. */
    if (o->cfg.grad_clip > 0) {
      double coef = o->cfg.grad_clip / (norm + 1e-6);
      if (coef < 1.0) s.clip_scale = coef;
    }
    o->step++;
    const double t = (double)o->step;
    const double b1 = o->cfg.beta1, b2 = o->cfg.beta2;
    const float scale = (float)s.clip_scale;
    const float decay_mul = (float)(1.0 - lr * o->cfg.weight_decay);
    const float w1 = (float)(1.0 - b1), fb2 = (float)b2, w2 = (float)(1.0 - b2);
    const float step_size = (float)(lr / (1.0 - pow(b1, t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(b2, t));
    const float eps = (float)o->cfg.eps;
    const int clipped = s.clip_scale != 1.0;
    float *m = o->m, *v = o->v;
    const optim_chunk *chunks = o->chunks;
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < o->n_chunks; c++) {
      const int decay = chunks[c].decay && decay_mul != 1.0f;
      for (size_t i = chunks[c].start; i < chunks[c].end; i++) {
        float g = clipped ? grads[i] * scale : grads[i];
        float p = decay ? params[i] * decay_mul : params[i];
        float mi = m[i] + w1 * (g - m[i]); /* lerp, as torch's exp_avg.lerp_(grad, 1 - beta1) */
        float vi = v[i] * fb2 + w2 * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] = p - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
      }
    }
  }
  s.step = o->step;
  s.n_skipped = o->n_skipped;
  if (stats) *stats = s;
  return SRLM_OK;
}

void srlm_optim_get_state(srlm_optim *o, srlm_optim_state *out) {
  out->m = o->m;
  out->v = o->v;
  out->n = o->n;
  out->step = o->step;
  out->n_skipped = o->n_skipped;
}

srlm_status srlm_optim_set_state(srlm_optim *o, const float *m, const float *v, size_t n, int64_t step,
                                 int64_t n_skipped) {
  if (n != o->n)
    return srlm_error(SRLM_ERR_RANGE, "optim set_state", "state has %zu elements, the optimizer %zu", n, o->n);
  if (step < 0 || n_skipped < 0)
    return srlm_error(SRLM_ERR_RANGE, "optim set_state", "negative step count %lld or skip count %lld",
                      (long long)step, (long long)n_skipped);
  if (n) {
    SRLM_TRY(o->be->copy_h2d(o->m, m, n * sizeof(float)));
    SRLM_TRY(o->be->copy_h2d(o->v, v, n * sizeof(float)));
  }
  o->step = step;
  o->n_skipped = n_skipped;
  return SRLM_OK;
}
