/* Learning-rate schedules: constant, linear and cosine decay after a linear warmup, in
 * the shape of transformers' get_*_schedule_with_warmup with a min_lr floor; formulas
 * in include/srlm/optim.h. Steps are 0-based optimizer steps; past total_steps the
 * decaying schedules stay at min_lr. */
#include <math.h>

#include "srlm/optim.h"

void srlm_lr_schedule_from_config(const srlm_config *cfg, int64_t total_steps, srlm_lr_schedule *out) {
  out->kind = cfg->train.lr_schedule;
  out->lr = cfg->train.lr;
  out->min_lr = cfg->train.min_lr;
  out->warmup_steps = cfg->train.warmup_steps;
  out->total_steps = total_steps;
}

srlm_status srlm_lr_schedule_check(const srlm_lr_schedule *s) {
  if (!(s->lr >= 0 && isfinite(s->lr))) return srlm_error(SRLM_ERR_CONFIG, "train.lr", "%g must be >= 0", s->lr);
  if (s->kind != SRLM_CFG_LR_CONSTANT && s->kind != SRLM_CFG_LR_LINEAR && s->kind != SRLM_CFG_LR_COSINE)
    return srlm_error(SRLM_ERR_CONFIG, "train.lr_schedule", "unknown schedule %d", (int)s->kind);
  if (s->kind != SRLM_CFG_LR_CONSTANT && !(s->min_lr >= 0 && s->min_lr <= s->lr))
    return srlm_error(SRLM_ERR_CONFIG, "train.min_lr", "%g must lie in [0, train.lr = %g] for a decaying schedule",
                      s->min_lr, s->lr);
  if (s->warmup_steps < 0)
    return srlm_error(SRLM_ERR_CONFIG, "train.warmup_steps", "%lld must be >= 0", (long long)s->warmup_steps);
  if (s->total_steps < 1)
    return srlm_error(SRLM_ERR_CONFIG, "train", "the schedule needs at least one step (got %lld)",
                      (long long)s->total_steps);
  return SRLM_OK;
}

double srlm_lr_at(const srlm_lr_schedule *s, int64_t step) {
  if (step < 0) step = 0;
  const int64_t W = s->warmup_steps, S = s->total_steps;
  if (step < W) return s->lr * (double)step / (double)W;
  const double span = (double)(S - W > 1 ? S - W : 1);
  double factor;
  switch (s->kind) {
    case SRLM_CFG_LR_LINEAR:
      factor = (double)(S - step) / span;
      if (factor < 0) factor = 0;
      break;
    case SRLM_CFG_LR_COSINE: {
      double p = (double)(step - W) / span;
      if (p > 1) p = 1;
      factor = 0.5 * (1.0 + cos(M_PI * p));
      break;
    }
    default: return s->lr;
  }
  return s->min_lr + (s->lr - s->min_lr) * factor;
}
