/* The SFT trainer on the training-step engine (engine.h), which draws each epoch's order
 * (srlm_sft_order's) and runs the steps: each step's token-mean NLL over all of its target
 * tokens, micro-batches of batch_size packed examples (train_nll) with g_t = -1/N.
 * Conventions in include/srlm/sft.h. Nothing here prints: progress goes to the step
 * callback. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "srlm/engine.h"
#include "srlm/sft.h"

enum { SFT_NLL, SFT_STATS }; /* the step's metric sums: NLL over its target tokens */

typedef struct sft_run {
  srlm_model *m;
  const srlm_sft_data *d;
  const srlm_sft_options *o;
  train_nll nll;
  /* the step in progress, counted over all of it (every learner agrees) */
  double inv_n; /* 1 / its target tokens */
  int64_t n_targets, n_tokens, count;
  /* this call's totals */
  int64_t steps_run, tokens_done;
  double epoch_nll; /* over the current epoch's steps that were not skipped */
  int64_t epoch_targets;
  srlm_sft_summary *sum;
} sft_run;

static srlm_status check_options(const srlm_sft_options *o) {
  if (o->batch_size < 1) return srlm_error(SRLM_ERR_CONFIG, "train.batch_size", "%d must be >= 1", o->batch_size);
  if (o->grad_accum < 1) return srlm_error(SRLM_ERR_CONFIG, "train.grad_accum", "%d must be >= 1", o->grad_accum);
  if (o->epochs < 1) return srlm_error(SRLM_ERR_CONFIG, "train.epochs", "%d must be >= 1", o->epochs);
  return srlm_engine_check_dp(o->dp, "sft");
}

static srlm_status sft_epoch(void *ctx, int epoch) {
  sft_run *r = ctx;
  (void)epoch;
  r->epoch_nll = 0;
  r->epoch_targets = 0;
  return SRLM_OK;
}

/* A step is its window of examples, in micro-batches of batch_size; N counts them all. */
static srlm_status sft_step(void *ctx, int64_t step, const int64_t *ex, int64_t n, srlm_engine_plan *plan) {
  sft_run *r = ctx;
  const srlm_sft_data *d = r->d;
  (void)step;
  r->count = n;
  r->n_targets = 0;
  r->n_tokens = 0;
  for (int64_t i = 0; i < n; i++) {
    r->n_targets += d->n_targets_of[ex[i]];
    r->n_tokens += d->offsets[ex[i] + 1] - d->offsets[ex[i]];
  }
  r->inv_n = 1.0 / (double)r->n_targets; /* every example has >= 1 target */
  plan->list[0] = (srlm_engine_list){.idx = ex, .count = n, .chunk = r->o->batch_size};
  plan->n_lists = 1;
  return SRLM_OK;
}

static srlm_status sft_micro(void *ctx, int list, const int64_t *idx, int64_t n, double *stats, int *finite) {
  sft_run *r = ctx;
  (void)list;
  double nll;
  int64_t tokens;
  SRLM_TRY(train_nll_step(&r->nll, r->m, r->d, idx, (int)n, -r->inv_n, &nll, &tokens, finite));
  stats[SFT_NLL] += nll;
  return SRLM_OK;
}

static srlm_status sft_done(void *ctx, const srlm_engine_info *e) {
  sft_run *r = ctx;
  const double nll = e->stats[SFT_NLL];
  srlm_sft_step_info info = {.step = e->step, .total_steps = e->total_steps, .epoch = e->epoch, .epochs = e->epochs,
                             .loss = nll * r->inv_n, .lr = e->lr, .grad_norm = e->grad_norm,
                             .clip_scale = e->clip_scale, .skipped = e->skipped, .n_skipped = e->n_skipped,
                             .tokens = r->n_tokens, .targets = r->n_targets, .sequences = (int)r->count,
                             .step_seconds = e->step_seconds, .elapsed_seconds = e->elapsed_seconds,
                             .optim = e->optim};
  if (!e->skipped) {
    r->epoch_nll += nll;
    r->epoch_targets += r->n_targets;
  }
  r->tokens_done += r->n_tokens;
  info.tokens_done = r->tokens_done;
  if (r->steps_run++ == 0) r->sum->first_loss = info.loss;
  r->sum->last_loss = info.loss;
  return r->o->on_step ? r->o->on_step(&info, r->o->user) : SRLM_OK;
}

srlm_status srlm_sft_train(srlm_model *m, const srlm_sft_data *d, const srlm_sft_options *o,
                           srlm_sft_summary *sum) {
  srlm_sft_summary local;
  if (!sum) sum = &local;
  memset(sum, 0, sizeof *sum);
  SRLM_TRY(check_options(o));
  if (d->n < 1) return srlm_error(SRLM_ERR_FORMAT, "sft", "no training examples");
  sft_run r = {.m = m, .d = d, .o = o, .sum = sum};
  srlm_engine_options eo = {.what = "sft",
                            .order = {.units = d->n, .per_step = (int64_t)o->batch_size * o->grad_accum,
                                      .seed = o->seed, .purpose = SRLM_SFT_RNG_PURPOSE},
                            .epochs = o->epochs, .n_stats = SFT_STATS, .optim = o->optim, .schedule = o->schedule,
                            .dp = o->dp, .resume = o->resume,
                            .hooks = {.epoch = sft_epoch, .step = sft_step, .micro = sft_micro, .done = sft_done, .ctx = &r}};
  srlm_engine_summary es;
  srlm_status st = srlm_engine_run(m, &eo, &es);
  sum->steps = es.steps;
  sum->skipped = es.skipped;
  sum->tokens = r.tokens_done;
  sum->seconds = es.seconds;
  sum->last_epoch_loss = r.epoch_targets ? r.epoch_nll / (double)r.epoch_targets : NAN;
  train_nll_free(&r.nll);
  return st;
}
