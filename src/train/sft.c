/* The SFT training loop: epochs of shuffled, packed micro-batches; token-mean NLL over
 * each optimizer step's targets; g_t = -1/N into the model's one backward; AdamW with
 * clipping and the schedule's lr; non-finite steps skipped. Conventions in
 * include/srlm/sft.h. Nothing here prints: progress goes to the step callback. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/sft.h"

typedef struct sft_run {
  srlm_model *m;
  const srlm_sft_data *d;
  const srlm_sft_options *o;
  srlm_optim *opt;
  srlm_sft_batch batch;
  float *logp, *g; /* (cap) per-token log-probs and coefficients of one micro-batch */
  size_t cap;
} sft_run;

static srlm_status check_options(const srlm_sft_options *o) {
  if (o->batch_size < 1) return srlm_error(SRLM_ERR_CONFIG, "train.batch_size", "%d must be >= 1", o->batch_size);
  if (o->grad_accum < 1) return srlm_error(SRLM_ERR_CONFIG, "train.grad_accum", "%d must be >= 1", o->grad_accum);
  if (o->epochs < 1) return srlm_error(SRLM_ERR_CONFIG, "train.epochs", "%d must be >= 1", o->epochs);
  return SRLM_OK;
}

/* Forward and backward of one micro-batch; adds its NLL sum to *nll.
 * Returns with *finite = 0 (and no backward) when the loss is NaN/Inf. */
static srlm_status micro_step(sft_run *r, const int64_t *idx, int count, double inv_n, double *nll, int *finite) {
  srlm_sft_batch_fill(&r->batch, r->d, idx, count);
  const srlm_batch *b = &r->batch.b;
  if ((size_t)b->T > r->cap) {
    r->cap = (size_t)b->T;
    r->logp = srlm_xrealloc(r->logp, r->cap * sizeof *r->logp);
    r->g = srlm_xrealloc(r->g, r->cap * sizeof *r->g);
  }
  SRLM_TRY(srlm_model_forward_train(r->m, b, r->logp));
  double s = 0;
  for (int64_t t = 0; t < b->T; t++) {
    if (b->targets[t] >= 0) {
      s -= (double)r->logp[t];
      r->g[t] = (float)-inv_n;
    } else {
      r->g[t] = 0.0f;
    }
  }
  *nll += s;
  *finite = isfinite(s);
  if (!*finite) return SRLM_OK;
  return srlm_model_backward(r->m, r->g);
}

static srlm_status train_loop(sft_run *r, srlm_sft_summary *sum) {
  const srlm_sft_options *o = r->o;
  const srlm_sft_data *d = r->d;
  const int64_t per_step = (int64_t)o->batch_size * o->grad_accum;
  const int64_t steps_per_epoch = srlm_sft_steps_per_epoch(d->n, o->batch_size, o->grad_accum);
  srlm_lr_schedule sched = o->schedule;
  sched.total_steps = steps_per_epoch * o->epochs;
  SRLM_TRY(srlm_lr_schedule_check(&sched));
  int64_t *order = srlm_xmalloc((size_t)d->n * sizeof *order);
  float *params = srlm_model_params(r->m);
  float *grads = srlm_model_grads(r->m);
  srlm_status st = srlm_model_zero_grad(r->m);
  srlm_timer total;
  srlm_timer_start(&total);
  int64_t step = 0, tokens_done = 0, n_skipped = 0;
  double epoch_nll = 0;
  int64_t epoch_targets = 0;
  for (int epoch = 0; st == SRLM_OK && epoch < o->epochs; epoch++) {
    srlm_sft_order(d->n, o->seed, epoch, order);
    epoch_nll = 0;
    epoch_targets = 0;
    for (int64_t k = 0; st == SRLM_OK && k < steps_per_epoch; k++) {
      srlm_timer t;
      srlm_timer_start(&t);
      const int64_t first = k * per_step;
      const int64_t count = d->n - first < per_step ? d->n - first : per_step;
      int64_t n_targets = 0, n_tokens = 0;
      for (int64_t i = first; i < first + count; i++) {
        n_targets += d->n_targets_of[order[i]];
        n_tokens += d->offsets[order[i] + 1] - d->offsets[order[i]];
      }
      const double inv_n = 1.0 / (double)n_targets; /* every example has >= 1 target */
      double nll = 0;
      int finite = 1;
      for (int64_t mb = first; st == SRLM_OK && finite && mb < first + count; mb += o->batch_size) {
        int c = (int)(first + count - mb < o->batch_size ? first + count - mb : o->batch_size);
        st = micro_step(r, order + mb, c, inv_n, &nll, &finite);
      }
      if (st != SRLM_OK) break;
      srlm_sft_step_info info = {.step = step + 1, .total_steps = sched.total_steps, .epoch = epoch + 1,
                                 .epochs = o->epochs, .loss = nll * inv_n, .lr = srlm_lr_at(&sched, step),
                                 .grad_norm = NAN, .clip_scale = 1.0, .tokens = n_tokens, .targets = n_targets,
                                 .sequences = (int)count};
      if (finite) {
        srlm_optim_stats os;
        st = srlm_optim_step(r->opt, params, grads, info.lr, &os);
        if (st != SRLM_OK) break;
        info.grad_norm = os.grad_norm;
        info.clip_scale = os.clip_scale;
        info.skipped = os.skipped;
      } else {
        info.skipped = 1;
      }
      st = srlm_model_zero_grad(r->m);
      if (st != SRLM_OK) break;
      if (info.skipped) {
        n_skipped++;
      } else {
        epoch_nll += nll;
        epoch_targets += n_targets;
      }
      step++;
      tokens_done += n_tokens;
      info.n_skipped = n_skipped;
      info.tokens_done = tokens_done;
      info.step_seconds = srlm_timer_elapsed(&t);
      info.elapsed_seconds = srlm_timer_elapsed(&total);
      if (step == 1) sum->first_loss = info.loss;
      sum->last_loss = info.loss;
      if (o->on_step) st = o->on_step(&info, o->user);
    }
  }
  free(order);
  sum->steps = step;
  sum->skipped = n_skipped;
  sum->tokens = tokens_done;
  sum->seconds = srlm_timer_elapsed(&total);
  sum->last_epoch_loss = epoch_targets ? epoch_nll / (double)epoch_targets : NAN;
  return st;
}

srlm_status srlm_sft_train(srlm_model *m, const srlm_sft_data *d, const srlm_sft_options *o,
                           srlm_sft_summary *sum) {
  srlm_sft_summary local;
  if (!sum) sum = &local;
  memset(sum, 0, sizeof *sum);
  SRLM_TRY(check_options(o));
  if (d->n < 1) return srlm_error(SRLM_ERR_FORMAT, "sft", "no training examples");
  sft_run r = {.m = m, .d = d, .o = o};
  SRLM_TRY(srlm_optim_create_for_model(m, &o->optim, &r.opt));
  srlm_status st = train_loop(&r, sum);
  srlm_optim_free(r.opt);
  srlm_sft_batch_free(&r.batch);
  free(r.logp);
  free(r.g);
  return st;
}
