/* The training-step engine: the data order, epochs and steps, each learner's
 * micro-batches, the data-parallel reduce, the non-finite skip and AdamW, for every
 * trainer. Conventions in include/srlm/engine.h. The only code in src/train that reaches
 * the model's parameter and gradient arrays or steps the optimizer. Nothing here prints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/engine.h"

srlm_status srlm_train_resume_check(const srlm_train_resume *r, size_t n_params, int64_t total_steps) {
  if (!r) return SRLM_OK;
  if (r->n != n_params)
    return srlm_error(SRLM_ERR_RANGE, "resume", "the saved AdamW state has %zu elements, the model %zu parameters",
                      r->n, n_params);
  if (!r->m || !r->v) return srlm_error(SRLM_ERR_RANGE, "resume", "no AdamW moments given");
  if (r->start_step < 0 || r->start_step > total_steps)
    return srlm_error(SRLM_ERR_RANGE, "resume", "start step %lld outside [0, %lld] (the run's steps)",
                      (long long)r->start_step, (long long)total_steps);
  if (r->optim_step < 0 || r->optim_skipped < 0)
    return srlm_error(SRLM_ERR_RANGE, "resume", "negative counters (optimizer step %lld, skipped %lld)",
                      (long long)r->optim_step, (long long)r->optim_skipped);
  return SRLM_OK;
}

srlm_status srlm_engine_check_dp(const srlm_dp *dp, const char *what) {
  if (!dp || dp->size <= 1) return SRLM_OK;
  if (!dp->reduce) return srlm_error(SRLM_ERR_INTERNAL, what, "%d learners but no reduce function", dp->size);
  if (dp->rank < 0 || dp->rank >= dp->size)
    return srlm_error(SRLM_ERR_RANGE, what, "learner rank %d outside [0, %d)", dp->rank, dp->size);
  if (dp->zero && (!dp->reduce_scatter || !dp->allgather || !dp->chain))
    return srlm_error(SRLM_ERR_INTERNAL, what, "ZeRO-1 without the learners' reduce-scatter, all-gather and chain");
  if (dp->overlap && (!dp->reduce_begin || !dp->reduce_ready || !dp->reduce_end || !dp->reduce_abandon))
    return srlm_error(SRLM_ERR_INTERNAL, what, "an overlapped reduce without its begin, ready, end and abandon");
  return SRLM_OK;
}

typedef struct engine {
  srlm_model *m;
  const srlm_engine_options *o;
  const char *what;
  srlm_lr_schedule sched; /* total_steps filled in */
  int64_t steps_per_epoch;
  int64_t *order; /* (units) the epoch's order */
  srlm_optim *opt;
  double *stats; /* (n_stats + 1) the step's metric sums, then the non-finite flag */
  int multi;     /* more than one learner: reduce every step */
  int zero;      /* ZeRO-1 over them (dp.h) */
  int overlap;   /* the reduce in buckets during the step's last backward (dp.h) */
  int last_list; /* this step's last micro-batch on this learner: list and index (-1: none) */
  int64_t last_micro;
} engine;

static srlm_status check_options(const srlm_engine_options *o, const char *w) {
  const srlm_engine_hooks *h = &o->hooks;
  if (!h->step || !h->micro) return srlm_error(SRLM_ERR_INTERNAL, w, "the engine needs a step and a micro hook");
  if (o->order.units < 1 || o->order.per_step < 1)
    return srlm_error(SRLM_ERR_RANGE, w, "%lld units in steps of %lld (both must be >= 1)", (long long)o->order.units,
                      (long long)o->order.per_step);
  if (o->epochs < 1) return srlm_error(SRLM_ERR_CONFIG, "train.epochs", "%d must be >= 1", o->epochs);
  if (o->n_stats < 0) return srlm_error(SRLM_ERR_INTERNAL, w, "%d step statistics", o->n_stats);
  if (o->anchor && !(o->anchor_mu > 0 && o->anchor_mu <= 1))
    return srlm_error(SRLM_ERR_CONFIG, "train.ema_mu", "%g must be in (0, 1]", o->anchor_mu);
  return srlm_engine_check_dp(o->dp, w);
}

/* A plan the loop can follow; a bad one is the trainer's bug, named with its step. */
static srlm_status check_plan(const srlm_engine_plan *p, const char *w, int64_t step) {
  if (p->n_lists < 1 || p->n_lists > SRLM_ENGINE_MAX_LISTS)
    return srlm_error(SRLM_ERR_INTERNAL, w, "step %lld: %d example lists (must be 1..%d)", (long long)step,
                      p->n_lists, SRLM_ENGINE_MAX_LISTS);
  for (int i = 0; i < p->n_lists; i++) {
    const srlm_engine_list *l = &p->list[i];
    if (l->count < 0 || (l->count > 0 && !l->idx) || l->chunk < 0 || l->pieces < 0 || (l->chunk > 0) == (l->pieces > 0))
      return srlm_error(SRLM_ERR_INTERNAL, w, "step %lld, list %d: %lld examples%s, chunk %lld, pieces %d (exactly one "
                        "of chunk and pieces must be > 0)", (long long)step, i, (long long)l->count,
                        l->idx ? "" : " (NULL)", (long long)l->chunk, l->pieces);
  }
  return SRLM_OK;
}

/* Micro-batch a of this learner's slice [lo, hi) of list l: [*b0, *b1). */
static void micro_range(const srlm_engine_list *l, int64_t lo, int64_t hi, int64_t a, int64_t *b0, int64_t *b1) {
  const int64_t len = hi - lo;
  *b0 = l->chunk > 0 ? lo + a * l->chunk : lo + len * a / l->pieces;
  *b1 = l->chunk > 0 ? (*b0 + l->chunk < hi ? *b0 + l->chunk : hi) : lo + len * (a + 1) / l->pieces;
}

static int64_t micro_count(const srlm_engine_list *l, int64_t lo, int64_t hi) {
  return l->chunk > 0 ? (hi - lo + l->chunk - 1) / l->chunk : l->pieces;
}

/* The step's last non-empty micro-batch on this learner (its backward is the one whose
 * gradients are final), into e->last_list / last_micro; -1 when there is none. */
static void find_last_micro(engine *e, const srlm_engine_plan *p) {
  e->last_list = -1;
  e->last_micro = -1;
  for (int li = 0; li < p->n_lists; li++) {
    const srlm_engine_list *l = &p->list[li];
    int64_t lo, hi, b0, b1;
    srlm_dp_slice(e->o->dp, l->count, &lo, &hi);
    for (int64_t a = 0; a < micro_count(l, lo, hi); a++) {
      micro_range(l, lo, hi, a, &b0, &b1);
      if (b1 > b0) e->last_list = li, e->last_micro = a;
    }
  }
}

/* The model's word that grads[from, n) are final, passed to the overlapped reduce. */
static srlm_status grads_final(void *ctx, size_t from) {
  const srlm_dp *dp = ((engine *)ctx)->o->dp;
  return dp->reduce_ready(dp->ctx, (int64_t)from);
}

/* The EMA step on the parameters this learner's anchor master holds (all of them, or a bf16
 * ZeRO-1 learner's shard [lo, hi), the model's master holding the same range): one ema op on
 * the backend, a <- (1 - mu) a + mu theta element by element, so a range gives the whole
 * update's bits, and the anchor's compute copy of the range is rounded from its new master. */
static srlm_status ema_range(srlm_model *anchor, srlm_model *m, double mu) {
  const size_t n = srlm_model_num_params(m);
  if (srlm_model_num_params(anchor) != n || srlm_model_dtype(anchor) != srlm_model_dtype(m) ||
      srlm_model_backend(anchor) != srlm_model_backend(m))
    return srlm_error(SRLM_ERR_INTERNAL, "ema anchor", "%zu %s parameters on %s, the model has %zu %s on %s",
                      srlm_model_num_params(anchor), srlm_dtype_name(srlm_model_dtype(anchor)),
                      srlm_model_backend(anchor)->name, n, srlm_dtype_name(srlm_model_dtype(m)),
                      srlm_model_backend(m)->name);
  size_t alo, ahi, mlo, mhi;
  srlm_model_master_range(anchor, &alo, &ahi);
  srlm_model_master_range(m, &mlo, &mhi);
  if (!srlm_model_has_master(anchor) || !srlm_model_has_master(m) || alo != mlo || ahi != mhi)
    return srlm_error(SRLM_ERR_INTERNAL, "ema anchor", "the anchor's fp32 master holds [%zu, %zu), the model's [%zu, "
                      "%zu): both must hold the same range", alo, ahi, mlo, mhi);
  if (ahi == alo) return SRLM_OK;
  const srlm_dtype dt = srlm_model_dtype(anchor);
  srlm_ema_params p = {.ema = srlm_model_master(anchor), .x = srlm_model_master(m), .n = (int64_t)(ahi - alo), .mu = mu,
                       .dtype = dt};
  /* an fp32 model's master is its parameters; a bf16 one's compute copy is rounded from it */
  if (dt != SRLM_F32) p.param = (char *)srlm_model_compute_params(anchor) + alo * srlm_dtype_size(dt);
  return SRLM_OP(srlm_model_backend(anchor), ema, p);
}

/* This learner's micro-batches of one list, in order, until a non-finite loss. With the
 * overlapped reduce, the step's last micro-batch runs with the model's final-gradient
 * callback armed (its backward starts the buckets), disarmed after it whatever happened. */
static srlm_status run_list(engine *e, int li, const srlm_engine_list *l, int *finite) {
  const srlm_engine_hooks *h = &e->o->hooks;
  int64_t lo, hi;
  srlm_dp_slice(e->o->dp, l->count, &lo, &hi);
  const int64_t n_micro = micro_count(l, lo, hi);
  for (int64_t a = 0; *finite && a < n_micro; a++) {
    int64_t b0, b1;
    micro_range(l, lo, hi, a, &b0, &b1);
    if (b1 == b0) continue;
    const int arm = e->overlap && li == e->last_list && a == e->last_micro;
    if (arm) srlm_model_on_grads_final(e->m, grads_final, e);
    srlm_status st = h->micro(h->ctx, li, l->idx + b0, b1 - b0, e->stats, finite);
    if (arm) srlm_model_on_grads_final(e->m, NULL, NULL);
    SRLM_TRY(st);
  }
  return SRLM_OK;
}

/* Global step s (0-based; step k of the epoch): plan, micro-batches, reduce, AdamW or
 * skip. Fills info's lr, grad_norm, clip_scale and skipped. */
static srlm_status run_step(engine *e, int64_t k, int64_t s, srlm_engine_info *info) {
  const srlm_engine_options *o = e->o;
  const srlm_engine_hooks *h = &o->hooks;
  const int64_t first = k * o->order.per_step, left = o->order.units - first;
  srlm_engine_plan plan;
  memset(&plan, 0, sizeof plan);
  SRLM_TRY(h->step(h->ctx, s + 1, e->order + first, left < o->order.per_step ? left : o->order.per_step, &plan));
  SRLM_TRY(check_plan(&plan, e->what, s + 1));
  SRLM_TRY(srlm_model_zero_grad(e->m));
  float *grads; /* (n) backend memory: the reduce and the optimizer take it as such */
  SRLM_TRY(srlm_model_grad_buffer(e->m, &grads));
  memset(e->stats, 0, ((size_t)o->n_stats + 1) * sizeof *e->stats);
  const int64_t n = (int64_t)srlm_model_num_params(e->m);
  const int64_t *bounds = e->zero ? srlm_optim_shard_bounds(e->opt) : NULL;
  if (e->overlap) {
    find_last_micro(e, &plan);
    SRLM_TRY(o->dp->reduce_begin(o->dp->ctx, grads, n, bounds));
  }
  int finite = 1;
  srlm_status st = SRLM_OK;
  for (int li = 0; li < plan.n_lists && finite && st == SRLM_OK; li++) st = run_list(e, li, &plan.list[li], &finite);
  if (st != SRLM_OK) {
    /* buckets this learner started may wait for peers that never join them: drop them;
       the error ends the job at the top level, and with it the peers' waits */
    if (e->overlap) o->dp->reduce_abandon(o->dp->ctx);
    return st;
  }
  double *nonfinite = &e->stats[o->n_stats];
  *nonfinite = finite ? 0.0 : 1.0;
  /* one reduce per step on every learner, whatever it forwarded, so none waits alone (the
     overlapped one: end starts every bucket the backward did not, all of them on a learner
     that ran none) */
  if (e->overlap)
    SRLM_TRY(o->dp->reduce_end(o->dp->ctx, e->stats, o->n_stats + 1));
  else if (e->zero)
    SRLM_TRY(o->dp->reduce_scatter(o->dp->ctx, grads, n, bounds, e->stats, o->n_stats + 1));
  else if (e->multi)
    SRLM_TRY(o->dp->reduce(o->dp->ctx, grads, n, e->stats, o->n_stats + 1));
  info->lr = srlm_lr_at(&e->sched, s);
  info->grad_norm = NAN;
  info->clip_scale = 1.0;
  if (*nonfinite > 0) {
    info->skipped = 1;
    return SRLM_OK;
  }
  srlm_optim_stats os;
  size_t mlo, mhi; /* the master the model holds: all of it, or (bf16 ZeRO-1) this learner's range */
  srlm_model_master_range(e->m, &mlo, &mhi);
  const size_t olo = bounds ? (size_t)bounds[o->dp->rank] : 0; /* the range the optimizer steps */
  float *master = srlm_model_master(e->m);
  SRLM_TRY(srlm_optim_step(e->opt, master ? master + (olo - mlo) : NULL, grads, info->lr, &os));
  info->grad_norm = os.grad_norm;
  info->clip_scale = os.clip_scale;
  info->skipped = os.skipped;
  const int bf16 = srlm_model_dtype(e->m) != SRLM_F32;
  if (e->zero && !os.skipped) { /* every learner's updated range to all (they skip alike): the weights the ops read */
    if (bf16)
      SRLM_TRY(o->dp->allgather(o->dp->ctx, srlm_model_compute_params(e->m), n, SRLM_BF16, bounds));
    else
      SRLM_TRY(o->dp->allgather(o->dp->ctx, srlm_model_master(e->m), n, SRLM_F32, bounds));
  }
  if (o->anchor && !os.skipped) {
    /* a bf16 ZeRO-1 anchor's master is sharded as the model's: its range, then its compute copy to all */
    SRLM_TRY(ema_range(o->anchor, e->m, o->anchor_mu));
    if (e->zero && bf16)
      SRLM_TRY(o->dp->allgather(o->dp->ctx, srlm_model_compute_params(o->anchor), n, SRLM_BF16, bounds));
  }
  return SRLM_OK;
}

srlm_status srlm_engine_anchor_create(srlm_model *m, srlm_model **anchor) {
  return srlm_model_clone(m, SRLM_MODEL_LEARN, anchor); /* the EMA updates its fp32 master */
}

srlm_status srlm_engine_ema_update(srlm_model *anchor, srlm_model *m, double mu) {
  size_t lo, hi;
  if (srlm_model_master_range(anchor, &lo, &hi) || srlm_model_master_range(m, &lo, &hi))
    return srlm_error(SRLM_ERR_INTERNAL, "ema anchor", "a ZeRO-1 shard of the master: the engine updates it itself");
  return ema_range(anchor, m, mu);
}

/* The loop over epochs and steps (engine.h); out->steps counts the steps reached. */
static srlm_status run_loop(engine *e, int64_t start, srlm_engine_summary *out) {
  const srlm_engine_options *o = e->o;
  const srlm_engine_hooks *h = &o->hooks;
  srlm_timer total;
  srlm_timer_start(&total);
  srlm_status st = SRLM_OK;
  int64_t s = 0;
  for (int epoch = 0; st == SRLM_OK && epoch < o->epochs; epoch++) {
    srlm_rng_permutation(o->order.units, o->order.seed, o->order.purpose, (uint32_t)epoch, e->order);
    if (h->epoch) st = h->epoch(h->ctx, epoch);
    for (int64_t k = 0; st == SRLM_OK && k < e->steps_per_epoch; k++, s++) {
      if (s < start) continue; /* done before the checkpoint */
      srlm_timer t;
      srlm_timer_start(&t);
      srlm_engine_info info = {.step = s + 1, .total_steps = e->sched.total_steps, .epoch = epoch + 1,
                               .epochs = o->epochs, .stats = e->stats, .optim = e->opt};
      st = run_step(e, k, s, &info);
      if (st != SRLM_OK) break; /* a step that failed is not counted */
      out->skipped += info.skipped;
      info.n_skipped = out->skipped;
      info.step_seconds = srlm_timer_elapsed(&t);
      info.elapsed_seconds = srlm_timer_elapsed(&total);
      if (h->done) st = h->done(h->ctx, &info);
    }
  }
  out->steps = s;
  out->seconds = srlm_timer_elapsed(&total);
  return st;
}

srlm_status srlm_engine_run(srlm_model *m, const srlm_engine_options *o, srlm_engine_summary *out) {
  srlm_engine_summary local;
  if (!out) out = &local;
  memset(out, 0, sizeof *out);
  if (!m || !o) return srlm_error(SRLM_ERR_INTERNAL, "engine", "NULL model or options");
  engine e = {.m = m, .o = o, .what = o->what ? o->what : "engine", .sched = o->schedule,
              .multi = o->dp && o->dp->size > 1, .zero = o->dp && o->dp->size > 1 && o->dp->zero,
              .overlap = o->dp && o->dp->size > 1 && o->dp->overlap};
  SRLM_TRY(check_options(o, e.what));
  e.steps_per_epoch = (o->order.units + o->order.per_step - 1) / o->order.per_step;
  e.sched.total_steps = e.steps_per_epoch * o->epochs;
  SRLM_TRY(srlm_lr_schedule_check(&e.sched));
  const size_t n_params = srlm_model_num_params(m);
  const srlm_train_resume *rs = o->resume;
  SRLM_TRY(srlm_train_resume_check(rs, n_params, e.sched.total_steps));
  /* ZeRO-1: the moments are allocated sharded, never whole */
  srlm_status st = e.zero ? srlm_optim_create_sharded(m, &o->optim, o->dp, &e.opt)
                          : srlm_optim_create_for_model(m, &o->optim, &e.opt);
  if (st != SRLM_OK) return st;
  if (st == SRLM_OK && e.zero && srlm_model_dtype(m) != SRLM_F32) {
    /* a bf16 model's learner keeps only its range of the fp32 master (and of the anchor's): from the first ZeRO-1
       run on, for good (later runs cut the same bounds) */
    const int64_t *b = srlm_optim_shard_bounds(e.opt);
    const size_t lo = (size_t)b[o->dp->rank], hi = (size_t)b[o->dp->rank + 1];
    st = srlm_model_shard_master(m, lo, hi);
    if (st == SRLM_OK && o->anchor) st = srlm_model_shard_master(o->anchor, lo, hi);
  }
  if (rs && st == SRLM_OK) st = srlm_optim_set_state(e.opt, rs->m, rs->v, n_params, rs->optim_step, rs->optim_skipped);
  if (st == SRLM_OK) {
    e.stats = srlm_xmalloc(((size_t)o->n_stats + 1) * sizeof *e.stats);
    e.order = srlm_xmalloc((size_t)o->order.units * sizeof *e.order);
    st = run_loop(&e, rs ? rs->start_step : 0, out);
    /* no step's gradient outlives the run (the next caller accumulates from zero) */
    srlm_status zst = srlm_model_zero_grad(m);
    if (st == SRLM_OK) st = zst;
  }
  free(e.stats);
  free(e.order);
  srlm_optim_free(e.opt);
  return st;
}
