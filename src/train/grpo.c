/* GRPO training over groups: old/reference log-probs once per iteration, then steps of
 * packed sequences through the model's one backward, a data-parallel reduce and AdamW.
 * Conventions in include/srlm/grpo.h; the per-token loss math is losses.c. Nothing here
 * prints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "srlm/grpo.h"

/* Indices into the statistics every learner contributes to dp->reduce. */
enum {
  ST_SEQS,
  ST_TOKENS,
  ST_LOSS,
  ST_KL,
  ST_RATIO,
  ST_CLIPPED,
  ST_TRUNCATED,
  ST_FORWARDED,
  ST_NONFINITE,
  ST_COUNT
};

static int64_t seq_tokens(const srlm_grpo_seq *s) { return s->prompt_len + s->response_len; }

int64_t srlm_grpo_offsets(const srlm_grpo_seq *seqs, int64_t n, int64_t *off) {
  off[0] = 0;
  for (int64_t i = 0; i < n; i++) off[i + 1] = off[i] + seqs[i].response_len;
  return off[n];
}

int64_t srlm_grpo_total_steps(int64_t n_groups, int batch_groups, int grad_accum, int epochs) {
  if (n_groups <= 0 || batch_groups < 1 || grad_accum < 1 || epochs < 1) return 0;
  const int64_t per_step = (int64_t)batch_groups * grad_accum;
  return (n_groups + per_step - 1) / per_step * epochs;
}

/* A sequence the model can score: a prompt to predict from, a response, ids in [0, V). */
static srlm_status check_seq(const srlm_grpo_seq *s, int64_t i, int64_t vocab) {
  const char *w = "grpo";
  if (s->prompt_len < 1 || s->response_len < 1)
    return srlm_error(SRLM_ERR_RANGE, w, "sequence %lld: prompt and response need >= 1 token each (%lld, %lld)",
                      (long long)i, (long long)s->prompt_len, (long long)s->response_len);
  if (!s->prompt || !s->response) return srlm_error(SRLM_ERR_INTERNAL, w, "sequence %lld: NULL token ids", (long long)i);
  if (seq_tokens(s) > INT32_MAX)
    return srlm_error(SRLM_ERR_RANGE, w, "sequence %lld: %lld tokens", (long long)i, (long long)seq_tokens(s));
  for (int64_t t = 0; t < seq_tokens(s); t++) {
    const int32_t id = t < s->prompt_len ? s->prompt[t] : s->response[t - s->prompt_len];
    if (id < 0 || id >= vocab)
      return srlm_error(SRLM_ERR_RANGE, w, "sequence %lld: %s token %lld has id %d outside [0, %lld)", (long long)i,
                        t < s->prompt_len ? "prompt" : "response",
                        (long long)(t < s->prompt_len ? t : t - s->prompt_len), (int)id, (long long)vocab);
  }
  return SRLM_OK;
}

srlm_status srlm_grpo_logps(srlm_model *m, const srlm_grpo_seq *seqs, int64_t n, int64_t max_tokens, float *out) {
  if (!m || (n > 0 && (!seqs || !out))) return srlm_error(SRLM_ERR_INTERNAL, "grpo logps", "NULL model, sequences or output");
  if (n < 0) return srlm_error(SRLM_ERR_RANGE, "grpo logps", "%lld sequences", (long long)n);
  if (max_tokens < 1) return srlm_error(SRLM_ERR_RANGE, "grpo logps", "max_tokens %lld must be >= 1", (long long)max_tokens);
  const int64_t vocab = srlm_model_get_config(m)->vocab_size;
  for (int64_t i = 0; i < n; i++) SRLM_TRY(check_seq(&seqs[i], i, vocab));
  train_pack p = {0};
  srlm_status st = SRLM_OK;
  int64_t off = 0;
  for (int64_t i = 0; i < n && st == SRLM_OK;) {
    /* whole sequences while they fit in max_tokens (at least one) */
    int64_t j = i, tokens = 0;
    while (j < n && (j == i || tokens + seq_tokens(&seqs[j]) <= max_tokens) && tokens + seq_tokens(&seqs[j]) <= INT32_MAX)
      tokens += seq_tokens(&seqs[j++]);
    train_pack_begin(&p, tokens, (int)(j - i));
    for (int64_t k = i; k < j; k++)
      train_pack_add(&p, seqs[k].prompt, seqs[k].prompt_len, seqs[k].response, seqs[k].response_len);
    srlm_batch b = train_pack_batch(&p);
    st = srlm_model_logprobs(m, &b, p.logp);
    for (int64_t k = i; k < j && st == SRLM_OK; k++) {
      memcpy(out + off, p.logp + p.first[k - i], (size_t)seqs[k].response_len * sizeof *out);
      off += seqs[k].response_len;
    }
    i = j;
  }
  train_pack_free(&p);
  return st;
}

typedef struct grpo_run {
  srlm_model *m;
  const srlm_grpo_seq *seqs;
  const int64_t *off; /* (n + 1) global token offsets */
  const double *adv;
  const float *logp_old, *logp_ref;
  int use_behavior;
  train_pack p;
  /* one micro-batch, response tokens concatenated: (N_mb) and (n_mb [+ 1]) */
  float *lp, *old, *ref, *beh, *gtok;
  int64_t tok_cap;
  double *adv_mb;
  int64_t *off_mb;
  int64_t seq_cap;
} grpo_run;

static void run_reserve(grpo_run *r, int64_t tokens, int64_t seqs) {
  if (tokens > r->tok_cap) {
    r->tok_cap = tokens;
    const size_t b = (size_t)tokens * sizeof(float);
    r->lp = srlm_xrealloc(r->lp, b);
    r->old = srlm_xrealloc(r->old, b);
    r->ref = srlm_xrealloc(r->ref, b);
    r->beh = srlm_xrealloc(r->beh, b);
    r->gtok = srlm_xrealloc(r->gtok, b);
  }
  if (seqs > r->seq_cap) {
    r->seq_cap = seqs;
    r->adv_mb = srlm_xrealloc(r->adv_mb, (size_t)seqs * sizeof *r->adv_mb);
    r->off_mb = srlm_xrealloc(r->off_mb, (size_t)(seqs + 1) * sizeof *r->off_mb);
  }
}

static void run_free(grpo_run *r) {
  free(r->lp);
  free(r->old);
  free(r->ref);
  free(r->beh);
  free(r->gtok);
  free(r->adv_mb);
  free(r->off_mb);
  train_pack_free(&r->p);
}

/* One micro-batch (sequences idx[0..k)): forward, the loss with the step's normalizers
 * (lo), per-token coefficients, backward (accumulating). *finite = 0 (and no backward)
 * when the loss is not finite. */
static srlm_status micro_step(grpo_run *r, const int64_t *idx, int64_t k, const srlm_grpo_options *lo,
                              srlm_grpo_metrics *mt, int64_t *forwarded, int *finite) {
  int64_t tokens = 0, resp = 0;
  for (int64_t q = 0; q < k; q++) {
    tokens += seq_tokens(&r->seqs[idx[q]]);
    resp += r->seqs[idx[q]].response_len;
  }
  train_pack *p = &r->p;
  train_pack_begin(p, tokens, (int)k);
  run_reserve(r, resp, k);
  r->off_mb[0] = 0;
  for (int64_t q = 0; q < k; q++) {
    const srlm_grpo_seq *s = &r->seqs[idx[q]];
    const int64_t o = r->off[idx[q]], d = r->off_mb[q], nr = s->response_len;
    train_pack_add(p, s->prompt, s->prompt_len, s->response, s->response_len);
    r->off_mb[q + 1] = d + nr;
    r->adv_mb[q] = r->adv[idx[q]];
    if (r->logp_old) memcpy(r->old + d, r->logp_old + o, (size_t)nr * sizeof(float));
    if (r->logp_ref) memcpy(r->ref + d, r->logp_ref + o, (size_t)nr * sizeof(float));
    if (r->use_behavior) memcpy(r->beh + d, s->behavior, (size_t)nr * sizeof(float));
  }
  *forwarded = p->T;
  srlm_batch b = train_pack_batch(p);
  SRLM_TRY(srlm_model_forward_train(r->m, &b, p->logp));
  for (int64_t q = 0; q < k; q++)
    memcpy(r->lp + r->off_mb[q], p->logp + p->first[q], (size_t)(r->off_mb[q + 1] - r->off_mb[q]) * sizeof(float));
  srlm_grpo_batch gb = {.n = k, .offsets = r->off_mb, .logp = r->lp, .logp_old = r->logp_old ? r->old : NULL,
                        .logp_ref = r->logp_ref ? r->ref : NULL, .logp_behavior = r->use_behavior ? r->beh : NULL,
                        .advantages = r->adv_mb};
  SRLM_TRY(srlm_loss_grpo(lo, &gb, r->gtok, mt));
  *finite = isfinite(mt->loss);
  if (!*finite) return SRLM_OK;
  memset(p->g, 0, (size_t)p->T * sizeof *p->g);
  for (int64_t q = 0; q < k; q++)
    memcpy(p->g + p->first[q], r->gtok + r->off_mb[q], (size_t)(r->off_mb[q + 1] - r->off_mb[q]) * sizeof(float));
  return srlm_model_backward(r->m, p->g);
}

/* Every check of the options and the data, before any step: identical on all learners. */
static srlm_status check_train(srlm_model *m, const srlm_grpo_seq *seqs, int64_t n_groups, int group_size,
                               const double *advantages, const float *logp_ref, const srlm_grpo_train_options *o) {
  const char *w = "grpo";
  if (!m || !o) return srlm_error(SRLM_ERR_INTERNAL, w, "NULL model or options");
  if (group_size < 1) return srlm_error(SRLM_ERR_CONFIG, w, "group size %d must be >= 1", group_size);
  if (n_groups < 0) return srlm_error(SRLM_ERR_RANGE, w, "%lld groups", (long long)n_groups);
  if (o->batch_groups < 1) return srlm_error(SRLM_ERR_CONFIG, w, "batch_groups %d must be >= 1", o->batch_groups);
  if (o->grad_accum < 1) return srlm_error(SRLM_ERR_CONFIG, "train.grad_accum", "%d must be >= 1", o->grad_accum);
  if (o->epochs < 1) return srlm_error(SRLM_ERR_CONFIG, "train.epochs", "%d must be >= 1", o->epochs);
  if (o->loss.beta > 0 && !logp_ref)
    return srlm_error(SRLM_ERR_CONFIG, w, "beta %g > 0 needs reference log-probs (logp_ref)", o->loss.beta);
  if (o->loss.agg == SRLM_GRPO_AGG_FIXED_LEN && o->loss.l_max < 1)
    return srlm_error(SRLM_ERR_CONFIG, w, "the fixed-length aggregation needs l_max >= 1 (got %lld)",
                      (long long)o->loss.l_max);
  /* the loss's own option checks (clip_eps, beta, is_cap, agg) on an empty batch */
  srlm_grpo_batch none = {.n = 0};
  SRLM_TRY(srlm_loss_grpo(&o->loss, &none, NULL, NULL));
  if (o->dp && o->dp->size > 1) {
    if (!o->dp->reduce) return srlm_error(SRLM_ERR_INTERNAL, w, "%d learners but no reduce function", o->dp->size);
    if (o->dp->rank < 0 || o->dp->rank >= o->dp->size)
      return srlm_error(SRLM_ERR_RANGE, w, "learner rank %d outside [0, %d)", o->dp->rank, o->dp->size);
  }
  const int64_t n = n_groups * group_size;
  if (n > 0 && (!seqs || !advantages)) return srlm_error(SRLM_ERR_INTERNAL, w, "NULL sequences or advantages");
  const int64_t vocab = srlm_model_get_config(m)->vocab_size;
  for (int64_t i = 0; i < n; i++) {
    const srlm_grpo_seq *s = &seqs[i];
    SRLM_TRY(check_seq(s, i, vocab));
    if (o->loss.is_cap > 0 && !s->behavior)
      return srlm_error(SRLM_ERR_CONFIG, w, "sequence %lld: is_cap %g > 0 needs the generator's log-probs (behavior)",
                        (long long)i, o->loss.is_cap);
    if (o->loss.agg == SRLM_GRPO_AGG_FIXED_LEN && s->response_len > o->loss.l_max)
      return srlm_error(SRLM_ERR_RANGE, w, "sequence %lld: %lld response tokens exceed l_max %lld", (long long)i,
                        (long long)s->response_len, (long long)o->loss.l_max);
    if (!isfinite(advantages[i]))
      return srlm_error(SRLM_ERR_RANGE, w, "sequence %lld: advantage %g is not finite", (long long)i, advantages[i]);
  }
  return SRLM_OK;
}

srlm_status srlm_grpo_train(srlm_model *m, const srlm_grpo_seq *seqs, int64_t n_groups, int group_size,
                            const double *advantages, const float *logp_old, const float *logp_ref,
                            const srlm_grpo_train_options *o, srlm_grpo_summary *out) {
  srlm_grpo_summary local;
  if (!out) out = &local;
  memset(out, 0, sizeof *out);
  SRLM_TRY(check_train(m, seqs, n_groups, group_size, advantages, logp_ref, o));
  if (n_groups == 0) return SRLM_OK;
  const int64_t G = group_size, n = n_groups * G;
  const int64_t per_step = (int64_t)o->batch_groups * o->grad_accum < n_groups ? (int64_t)o->batch_groups * o->grad_accum
                                                                                : n_groups;
  const int64_t steps_per_epoch = (n_groups + per_step - 1) / per_step;
  srlm_lr_schedule sched = o->schedule;
  sched.total_steps = steps_per_epoch * o->epochs;
  SRLM_TRY(srlm_lr_schedule_check(&sched));
  const int dp_size = o->dp && o->dp->size > 1 ? o->dp->size : 1;

  int64_t *off = srlm_xmalloc((size_t)(n + 1) * sizeof *off);
  srlm_grpo_offsets(seqs, n, off);
  srlm_optim *opt = NULL;
  srlm_status st = srlm_train_resume_check(o->resume, srlm_model_num_params(m), sched.total_steps);
  if (st == SRLM_OK) st = srlm_optim_create_for_model(m, &o->optim, &opt);
  const int64_t start = o->resume ? o->resume->start_step : 0;
  if (st == SRLM_OK && o->resume)
    st = srlm_optim_set_state(opt, o->resume->m, o->resume->v, srlm_model_num_params(m), o->resume->optim_step,
                              o->resume->optim_skipped);
  if (st != SRLM_OK) {
    srlm_optim_free(opt);
    free(off);
    return st;
  }
  grpo_run r = {.m = m, .seqs = seqs, .off = off, .adv = advantages, .logp_old = logp_old, .logp_ref = logp_ref,
                .use_behavior = o->loss.is_cap > 0};
  int64_t *order = srlm_xmalloc((size_t)n_groups * sizeof *order);
  int64_t *list = srlm_xmalloc((size_t)(per_step * G) * sizeof *list); /* the step's sequences */
  float *params = srlm_model_params(m);
  float *grads = srlm_model_grads(m);
  const int64_t n_params = (int64_t)srlm_model_num_params(m);
  srlm_timer total;
  srlm_timer_start(&total);
  int64_t step = 0;
  for (int epoch = 0; st == SRLM_OK && epoch < o->epochs; epoch++) {
    srlm_rng_permutation(n_groups, o->seed, SRLM_GRPO_RNG_PURPOSE, (uint32_t)epoch, order);
    for (int64_t s = 0; st == SRLM_OK && s < steps_per_epoch; s++) {
      if (step < start) { /* done before the checkpoint */
        step++;
        continue;
      }
      srlm_timer t;
      srlm_timer_start(&t);
      const int64_t g0 = s * per_step, groups = n_groups - g0 < per_step ? n_groups - g0 : per_step;
      const int64_t count = groups * G;
      int64_t step_resp = 0, step_tokens = 0;
      for (int64_t q = 0; q < groups; q++)
        for (int64_t j = 0; j < G; j++) {
          const int64_t i = order[g0 + q] * G + j;
          list[q * G + j] = i;
          step_resp += seqs[i].response_len;
          step_tokens += seq_tokens(&seqs[i]);
        }
      /* the micro-batches are pieces of this step, so they all fit when the step does;
         every learner sees the same step, so this error is everyone's */
      if (step_tokens > INT32_MAX) {
        st = srlm_error(SRLM_ERR_RANGE, "grpo", "step %lld: %lld tokens exceed a packed batch's limit; lower "
                        "batch_groups x grad_accum", (long long)step + 1, (long long)step_tokens);
        break;
      }
      srlm_grpo_options lo = o->loss;
      lo.norm_seqs = count;
      lo.norm_tokens = step_resp;
      srlm_grpo_step_info info = {.step = step + 1, .total_steps = sched.total_steps, .epoch = epoch + 1,
                                  .epochs = o->epochs, .lr = srlm_lr_at(&sched, step), .grad_norm = NAN,
                                  .clip_scale = 1.0, .groups = groups};
      st = srlm_model_zero_grad(m);
      if (st != SRLM_OK) break;
      int64_t lo_i, hi_i;
      srlm_dp_slice(o->dp, count, &lo_i, &hi_i);
      const int64_t len = hi_i - lo_i;
      srlm_grpo_metrics mine;
      memset(&mine, 0, sizeof mine);
      int64_t forwarded = 0;
      int finite = 1;
      for (int a = 0; a < o->grad_accum && finite; a++) {
        const int64_t b0 = lo_i + len * a / o->grad_accum, b1 = lo_i + len * (a + 1) / o->grad_accum;
        if (b1 == b0) continue;
        srlm_grpo_metrics mt;
        int64_t fw = 0;
        st = micro_step(&r, list + b0, b1 - b0, &lo, &mt, &fw, &finite);
        if (st != SRLM_OK) break;
        srlm_grpo_metrics_merge(&mine, &mt);
        forwarded += fw;
      }
      if (st != SRLM_OK) break;
      double stats[ST_COUNT] = {
          [ST_SEQS] = (double)mine.seqs,         [ST_TOKENS] = (double)mine.tokens,
          [ST_LOSS] = mine.loss,                 [ST_KL] = mine.kl_sum,
          [ST_RATIO] = mine.ratio_sum,           [ST_CLIPPED] = (double)mine.clipped,
          [ST_TRUNCATED] = (double)mine.is_truncated, [ST_FORWARDED] = (double)forwarded,
          [ST_NONFINITE] = finite ? 0.0 : 1.0};
      if (dp_size > 1) {
        st = o->dp->reduce(o->dp->ctx, grads, n_params, stats, ST_COUNT);
        if (st != SRLM_OK) break;
      }
      info.grpo = (srlm_grpo_metrics){.seqs = (int64_t)stats[ST_SEQS], .tokens = (int64_t)stats[ST_TOKENS],
                                      .loss = stats[ST_LOSS], .kl_sum = stats[ST_KL], .ratio_sum = stats[ST_RATIO],
                                      .clipped = (int64_t)stats[ST_CLIPPED],
                                      .is_truncated = (int64_t)stats[ST_TRUNCATED]};
      info.loss = info.grpo.loss;
      info.tokens = (int64_t)stats[ST_FORWARDED];
      const double ntok = info.grpo.tokens > 0 ? (double)info.grpo.tokens : 1.0;
      info.kl_mean = info.grpo.kl_sum / ntok;
      info.clip_frac = (double)info.grpo.clipped / ntok;
      info.ratio_mean = info.grpo.ratio_sum / ntok;
      if (stats[ST_NONFINITE] > 0) {
        info.skipped = 1;
      } else {
        srlm_optim_stats os;
        st = srlm_optim_step(opt, params, grads, info.lr, &os);
        if (st != SRLM_OK) break;
        info.grad_norm = os.grad_norm;
        info.clip_scale = os.clip_scale;
        info.skipped = os.skipped;
      }
      step++;
      out->skipped += info.skipped;
      out->tokens += info.tokens;
      if (!info.skipped) srlm_grpo_metrics_merge(&out->grpo, &info.grpo);
      info.n_skipped = out->skipped;
      info.step_seconds = srlm_timer_elapsed(&t);
      info.elapsed_seconds = srlm_timer_elapsed(&total);
      if (step == start + 1) out->first_loss = info.loss;
      out->last_loss = info.loss;
      info.optim = opt;
      if (o->on_step) st = o->on_step(&info, o->user);
    }
  }
  srlm_status zst = srlm_model_zero_grad(m);
  if (st == SRLM_OK) st = zst;
  out->steps = step;
  out->seconds = srlm_timer_elapsed(&total);
  free(list);
  free(order);
  free(off);
  run_free(&r);
  srlm_optim_free(opt);
  return st;
}
