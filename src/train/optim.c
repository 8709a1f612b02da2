/* AdamW (torch.optim.AdamW semantics), global-norm clipping and the non-finite skip;
 * see include/srlm/optim.h for the formulas.
 *
 * The arithmetic is the backend's: the grad_sumsq op over each weight-decay segment in
 * turn (its chunk sums accumulate into one double on the device, in chunk order, so the
 * norm does not depend on the thread count), one copy of that double to the host for
 * the clip and skip decisions, then one adamw op per segment with the host's per-step
 * scalars.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/dp.h"
#include "srlm/optim.h"

struct srlm_optim {
  srlm_backend *be;
  srlm_optim_config cfg;
  size_t n;          /* the flat parameters */
  size_t lo, hi;     /* the range this optimizer steps: [0, n), or its ZeRO-1 shard */
  const srlm_dp *dp; /* ZeRO-1 learners (srlm_optim_shard), else NULL */
  int64_t *shard_bounds; /* (dp->size + 1) with dp */
  float *m, *v;      /* (hi - lo) backend memory: the moments of [lo, hi) */
  double *sumsq;     /* (1) backend memory: the norm's sum of squares */
  void *param;       /* (n) the model's compute copy when it is not the master (bf16), else NULL */
  srlm_dtype param_dtype;
  /* Decay ranges as a sorted list of boundaries: decay flag holds from bounds[i] to
   * bounds[i + 1]. Kept small (one entry per tensor at most). */
  size_t *bounds;    /* (n_bounds + 1) bounds[0] = 0, bounds[n_bounds] = n */
  int *flags;        /* (n_bounds) */
  size_t n_bounds;
  int64_t step, n_skipped;
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

/* An optimizer without moments yet (alloc_moments 0: srlm_optim_shard allocates this
 * learner's range only, so a ZeRO-1 learner never holds the whole m and v). */
static srlm_status optim_new(srlm_backend *be, size_t n, const srlm_optim_config *cfg, int alloc_moments,
                             srlm_optim **out) {
  *out = NULL;
  if (!be) return srlm_error(SRLM_ERR_INTERNAL, "optim", "no backend");
  SRLM_TRY(check_config(cfg));
  srlm_optim *o = srlm_xcalloc(1, sizeof *o);
  o->be = be;
  o->cfg = *cfg;
  o->n = n;
  o->hi = n;
  srlm_status st = srlm_backend_alloc(be, (void **)&o->sumsq, sizeof(double));
  if (st == SRLM_OK && alloc_moments) st = srlm_backend_alloc(be, (void **)&o->m, n * sizeof(float));
  if (st == SRLM_OK && alloc_moments) st = srlm_backend_alloc(be, (void **)&o->v, n * sizeof(float));
  if (st == SRLM_OK && alloc_moments && n) st = srlm_backend_zero(be, o->m, n * sizeof(float));
  if (st == SRLM_OK && alloc_moments && n) st = srlm_backend_zero(be, o->v, n * sizeof(float));
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
  *out = o;
  return SRLM_OK;
}

srlm_status srlm_optim_create(srlm_backend *be, size_t n, const srlm_optim_config *cfg, srlm_optim **out) {
  return optim_new(be, n, cfg, 1, out);
}

void srlm_optim_free(srlm_optim *o) {
  if (!o) return;
  (void)srlm_backend_free(o->be, o->m);
  (void)srlm_backend_free(o->be, o->v);
  (void)srlm_backend_free(o->be, o->sumsq);
  free(o->bounds);
  free(o->flags);
  free(o->shard_bounds);
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
  if (o->dp) return srlm_error(SRLM_ERR_INTERNAL, "optim set_decay", "the optimizer is already sharded");
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
  return SRLM_OK;
}

size_t srlm_optim_decayed_count(const srlm_optim *o) {
  size_t c = 0;
  for (size_t i = 0; i < o->n_bounds; i++)
    if (o->flags[i]) c += o->bounds[i + 1] - o->bounds[i];
  return c;
}

/* create_for_model, with the moments allocated now (alloc_moments) or by srlm_optim_shard. */
static srlm_status create_for_model(srlm_model *m, const srlm_optim_config *cfg, int alloc_moments, srlm_optim **out) {
  *out = NULL;
  size_t n = srlm_model_num_params(m);
  SRLM_TRY(optim_new(srlm_model_backend(m), n, cfg, alloc_moments, out));
  if (srlm_model_dtype(m) != SRLM_F32) {
    (*out)->param = srlm_model_compute_params(m);
    (*out)->param_dtype = srlm_model_dtype(m);
  }
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

srlm_status srlm_optim_create_for_model(srlm_model *m, const srlm_optim_config *cfg, srlm_optim **out) {
  return create_for_model(m, cfg, 1, out);
}

srlm_status srlm_optim_create_sharded(srlm_model *m, const srlm_optim_config *cfg, const srlm_dp *dp,
                                      srlm_optim **out) {
  if (!dp || dp->size <= 1) return create_for_model(m, cfg, 1, out);
  SRLM_TRY(create_for_model(m, cfg, 0, out));
  srlm_status st = srlm_optim_shard(*out, dp);
  if (st != SRLM_OK) {
    srlm_optim_free(*out);
    *out = NULL;
  }
  return st;
}

/* The part of segment i in this optimizer's range: [*a, *b) (empty when *a >= *b). */
static void seg_range(const srlm_optim *o, size_t i, size_t *a, size_t *b) {
  *a = o->bounds[i] > o->lo ? o->bounds[i] : o->lo;
  *b = o->bounds[i + 1] < o->hi ? o->bounds[i + 1] : o->hi;
}

/* The sum of squares of x (n, backend memory) over the decay segments in turn, into
 * *out (host). Sharded: only this learner's range, continuing the running sum of the
 * learners before it (dp chain), so the chunk sums are added in the unsharded order. */
static srlm_status sumsq(srlm_optim *o, const float *x, double *out) {
  double run = 0;
  if (o->dp) SRLM_TRY(o->dp->chain(o->dp->ctx, &run, 0));
  SRLM_TRY(srlm_backend_copy_h2d(o->be, o->sumsq, &run, sizeof(double)));
  for (size_t i = 0; i < o->n_bounds; i++) {
    size_t a, b;
    seg_range(o, i, &a, &b);
    if (a >= b) continue;
    srlm_sumsq_params p = {.out = o->sumsq, .x = x + a, .n = (int64_t)(b - a)};
    SRLM_TRY(SRLM_OP(o->be, grad_sumsq, p));
  }
  SRLM_TRY(srlm_backend_copy_d2h(o->be, out, o->sumsq, sizeof(double)));
  if (o->dp) SRLM_TRY(o->dp->chain(o->dp->ctx, out, 1));
  return SRLM_OK;
}

double srlm_optim_global_norm(const float *x, size_t n) {
  double s = 0;
  srlm_sumsq_params p = {.out = &s, .x = x, .n = (int64_t)n};
  srlm_status st = SRLM_OP(srlm_backend_cpu(), grad_sumsq, p);
  return st == SRLM_OK ? sqrt(s) : NAN;
}

srlm_status srlm_optim_step(srlm_optim *o, float *params, const float *grads, double lr,
                            srlm_optim_stats *stats) {
  if (!(lr >= 0 && isfinite(lr))) return srlm_error(SRLM_ERR_RANGE, "optim step", "learning rate %g", lr);
  if ((o->hi > o->lo && !params) || (o->n && !grads))
    return srlm_error(SRLM_ERR_INTERNAL, "optim step", "NULL params or grads");
  double ss = 0;
  SRLM_TRY(sumsq(o, grads, &ss));
  const double norm = sqrt(ss);
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
    srlm_adamw_params a = {.grad_scale = (float)s.clip_scale, .one_minus_beta1 = (float)(1.0 - b1),
                           .beta2 = (float)b2, .one_minus_beta2 = (float)(1.0 - b2),
                           .step_size = (float)(lr / (1.0 - pow(b1, t))), .bc2_sqrt = (float)sqrt(1.0 - pow(b2, t)),
                           .eps = (float)o->cfg.eps, .dtype = o->param_dtype};
    const float decay_mul = (float)(1.0 - lr * o->cfg.weight_decay);
    const size_t esz = srlm_dtype_size(o->param_dtype);
    for (size_t i = 0; i < o->n_bounds; i++) {
      size_t b0, b1;
      seg_range(o, i, &b0, &b1);
      if (b0 >= b1) continue;
      a.master = params + (b0 - o->lo);
      a.param = o->param ? (char *)o->param + b0 * esz : NULL;
      a.m = o->m + (b0 - o->lo);
      a.v = o->v + (b0 - o->lo);
      a.grad = grads + b0;
      a.n = (int64_t)(b1 - b0);
      a.decay_mul = o->flags[i] ? decay_mul : 1.0f;
      SRLM_TRY(SRLM_OP(o->be, adamw, a));
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
  out->offset = o->lo;
  out->n = o->hi - o->lo;
  out->step = o->step;
  out->n_skipped = o->n_skipped;
}

srlm_status srlm_optim_read_moments(srlm_optim *o, float *m, float *v) {
  const size_t len = o->hi - o->lo;
  if (len) {
    SRLM_TRY(srlm_backend_copy_d2h(o->be, m + o->lo, o->m, len * sizeof(float)));
    SRLM_TRY(srlm_backend_copy_d2h(o->be, v + o->lo, o->v, len * sizeof(float)));
  }
  if (!o->dp) return SRLM_OK;
  /* m and v are host arrays: a device backend's learners gather them with the host variant */
  if (o->dp->allgather_host) {
    SRLM_TRY(o->dp->allgather_host(o->dp->ctx, m, (int64_t)o->n, o->shard_bounds));
    return o->dp->allgather_host(o->dp->ctx, v, (int64_t)o->n, o->shard_bounds);
  }
  SRLM_TRY(o->dp->allgather(o->dp->ctx, m, (int64_t)o->n, SRLM_F32, o->shard_bounds));
  return o->dp->allgather(o->dp->ctx, v, (int64_t)o->n, SRLM_F32, o->shard_bounds);
}

srlm_status srlm_optim_set_state(srlm_optim *o, const float *m, const float *v, size_t n, int64_t step,
                                 int64_t n_skipped) {
  if (n != o->n)
    return srlm_error(SRLM_ERR_RANGE, "optim set_state", "state has %zu elements, the optimizer %zu", n, o->n);
  if (step < 0 || n_skipped < 0)
    return srlm_error(SRLM_ERR_RANGE, "optim set_state", "negative step count %lld or skip count %lld",
                      (long long)step, (long long)n_skipped);
  const size_t len = o->hi - o->lo;
  if (len) {
    SRLM_TRY(srlm_backend_copy_h2d(o->be, o->m, m + o->lo, len * sizeof(float)));
    SRLM_TRY(srlm_backend_copy_h2d(o->be, o->v, v + o->lo, len * sizeof(float)));
  }
  o->step = step;
  o->n_skipped = n_skipped;
  return SRLM_OK;
}

/* ---- ZeRO-1 ---------------------------------------------------------------------- */

/* The cut nearest below x (< n) at which a shard may start: the start of x's segment plus
 * whole SRLM_SUMSQ_CHUNKs, so every shard's chunk sums are the unsharded ones. */
static size_t shard_cut(const srlm_optim *o, size_t x) {
  size_t i = 0;
  while (i + 1 < o->n_bounds && o->bounds[i + 1] <= x) i++;
  const size_t s0 = o->n_bounds ? o->bounds[i] : 0;
  return s0 + (x - s0) / SRLM_SUMSQ_CHUNK * SRLM_SUMSQ_CHUNK;
}

srlm_status srlm_optim_shard(srlm_optim *o, const srlm_dp *dp) {
  if (!dp || dp->size <= 1) return SRLM_OK;
  if (o->dp) return srlm_error(SRLM_ERR_INTERNAL, "optim shard", "the optimizer is already sharded");
  if (!dp->reduce_scatter || !dp->allgather || !dp->chain)
    return srlm_error(SRLM_ERR_INTERNAL, "optim shard", "ZeRO-1 needs the learners' reduce-scatter, all-gather and chain");
  if (dp->rank < 0 || dp->rank >= dp->size)
    return srlm_error(SRLM_ERR_RANGE, "optim shard", "learner rank %d outside [0, %d)", dp->rank, dp->size);
  int64_t *b = srlm_xmalloc(((size_t)dp->size + 1) * sizeof *b);
  b[0] = 0;
  b[dp->size] = (int64_t)o->n;
  for (int j = 1; j < dp->size; j++) {
    const size_t want = (size_t)((unsigned long long)o->n * (unsigned long long)j / (unsigned long long)dp->size);
    b[j] = want < o->n ? (int64_t)shard_cut(o, want) : (int64_t)o->n;
    if (b[j] < b[j - 1]) b[j] = b[j - 1];
  }
  const size_t lo = (size_t)b[dp->rank], hi = (size_t)b[dp->rank + 1];
  float *m = NULL, *v = NULL;
  srlm_status st = srlm_backend_alloc(o->be, (void **)&m, (hi - lo) * sizeof(float));
  if (st == SRLM_OK) st = srlm_backend_alloc(o->be, (void **)&v, (hi - lo) * sizeof(float));
  if (st == SRLM_OK && hi > lo) /* the range of the whole moments, or zeros (srlm_optim_create_sharded) */
    st = o->m ? srlm_backend_copy_d2d(o->be, m, o->m + lo, (hi - lo) * sizeof(float))
              : srlm_backend_zero(o->be, m, (hi - lo) * sizeof(float));
  if (st == SRLM_OK && hi > lo)
    st = o->v ? srlm_backend_copy_d2d(o->be, v, o->v + lo, (hi - lo) * sizeof(float))
              : srlm_backend_zero(o->be, v, (hi - lo) * sizeof(float));
  if (st != SRLM_OK) {
    (void)srlm_backend_free(o->be, m);
    (void)srlm_backend_free(o->be, v);
    free(b);
    return st;
  }
  (void)srlm_backend_free(o->be, o->m);
  (void)srlm_backend_free(o->be, o->v);
  o->m = m;
  o->v = v;
  o->lo = lo;
  o->hi = hi;
  o->dp = dp;
  o->shard_bounds = b;
  return SRLM_OK;
}

const int64_t *srlm_optim_shard_bounds(const srlm_optim *o) { return o->shard_bounds; }
