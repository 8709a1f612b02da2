/* Preference training over pairs: reference log-probs once, then steps of packed pairs
 * (+ a replay NLL batch) through the model's one backward and AdamW. Conventions in
 * include/srlm/pref.h; the loss math is losses.c. Nothing here prints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "srlm/pref.h"

static int64_t pair_tokens(const srlm_pref_pair *q) { return 2 * q->prompt_len + q->chosen_len + q->rejected_len; }

static srlm_status check_pair(const srlm_pref_pair *q, int64_t i) {
  if (q->chosen_len < 1 || q->rejected_len < 1 || q->prompt_len < 1)
    return srlm_error(SRLM_ERR_RANGE, "pref", "pair %lld: prompt, chosen and rejected need >= 1 token each "
                      "(%lld, %lld, %lld)", (long long)i, (long long)q->prompt_len, (long long)q->chosen_len,
                      (long long)q->rejected_len);
  return SRLM_OK;
}

/* Per-sequence sums of the batch's response log-probs into sums (B). */
static void sequence_sums(const train_pack *p, double *sums) {
  for (int b = 0; b < p->B; b++) sums[b] = train_pack_sum(p, b);
}

srlm_status srlm_pref_ref_logps(srlm_model *m, const srlm_pref_pair *pairs, int64_t n, int64_t max_tokens,
                                double *ref_chosen, double *ref_rejected) {
  train_pack p = {0};
  double *sums = NULL;
  int sums_cap = 0;
  srlm_status st = SRLM_OK;
  for (int64_t i = 0; i < n && st == SRLM_OK;) {
    /* as many whole pairs as fit in max_tokens (at least one) */
    int64_t j = i, tokens = 0;
    while (j < n && (j == i || tokens + pair_tokens(&pairs[j]) <= max_tokens)) tokens += pair_tokens(&pairs[j++]);
    train_pack_begin(&p, tokens, (int)(2 * (j - i)));
    for (int64_t k = i; k < j && st == SRLM_OK; k++) {
      st = check_pair(&pairs[k], k);
      if (st != SRLM_OK) break;
      train_pack_add(&p, pairs[k].prompt, pairs[k].prompt_len, pairs[k].chosen, pairs[k].chosen_len);
      train_pack_add(&p, pairs[k].prompt, pairs[k].prompt_len, pairs[k].rejected, pairs[k].rejected_len);
    }
    srlm_batch b = train_pack_batch(&p);
    if (st == SRLM_OK) st = srlm_model_logprobs(m, &b, p.logp);
    if (p.B > sums_cap) {
      sums_cap = p.B;
      sums = srlm_xrealloc(sums, (size_t)sums_cap * sizeof *sums);
    }
    if (st == SRLM_OK) {
      sequence_sums(&p, sums);
      for (int64_t k = i; k < j; k++) {
        ref_chosen[k] = sums[2 * (k - i)];
        ref_rejected[k] = sums[2 * (k - i) + 1];
      }
    }
    i = j;
  }
  free(sums);
  train_pack_free(&p);
  return st;
}

typedef struct pref_run {
  srlm_model *m;
  const srlm_pref_pair *pairs;
  const double *ref_chosen, *ref_rejected;
  const srlm_pref_train_options *o;
  train_pack p;
  srlm_sft_batch replay;
  float *replay_logp, *replay_g;
  size_t replay_cap;
  int64_t replay_next; /* the next replay example (cycling) */
  double *lc, *lr, *rc, *rr, *cc, *cr, *sums; /* per pair of a step */
  int64_t *len_c, *len_r;
} pref_run;

static void run_alloc(pref_run *r, int64_t per_step) {
  const size_t k = (size_t)per_step;
  r->lc = srlm_xmalloc(k * sizeof(double));
  r->lr = srlm_xmalloc(k * sizeof(double));
  r->rc = srlm_xmalloc(k * sizeof(double));
  r->rr = srlm_xmalloc(k * sizeof(double));
  r->cc = srlm_xmalloc(k * sizeof(double));
  r->cr = srlm_xmalloc(k * sizeof(double));
  r->sums = srlm_xmalloc(2 * k * sizeof(double));
  r->len_c = srlm_xmalloc(k * sizeof(int64_t));
  r->len_r = srlm_xmalloc(k * sizeof(int64_t));
}

static void run_free(pref_run *r) {
  free(r->lc);
  free(r->lr);
  free(r->rc);
  free(r->rr);
  free(r->cc);
  free(r->cr);
  free(r->sums);
  free(r->len_c);
  free(r->len_r);
  free(r->replay_logp);
  free(r->replay_g);
  srlm_sft_batch_free(&r->replay);
  train_pack_free(&r->p);
}

/* The pair part of one step: forward, loss, per-token coefficients, backward. */
static srlm_status pairs_step(pref_run *r, const srlm_pref_options *loss, const int64_t *idx, int64_t count,
                              int64_t norm, srlm_pref_metrics *pm, int *finite) {
  int64_t tokens = 0;
  for (int64_t k = 0; k < count; k++) tokens += pair_tokens(&r->pairs[idx[k]]);
  train_pack *p = &r->p;
  train_pack_begin(p, tokens, (int)(2 * count));
  for (int64_t k = 0; k < count; k++) {
    const srlm_pref_pair *q = &r->pairs[idx[k]];
    SRLM_TRY(check_pair(q, idx[k]));
    train_pack_add(p, q->prompt, q->prompt_len, q->chosen, q->chosen_len);
    train_pack_add(p, q->prompt, q->prompt_len, q->rejected, q->rejected_len);
    r->len_c[k] = q->chosen_len;
    r->len_r[k] = q->rejected_len;
    if (r->ref_chosen) {
      r->rc[k] = r->ref_chosen[idx[k]];
      r->rr[k] = r->ref_rejected[idx[k]];
    }
  }
  srlm_batch b = train_pack_batch(p);
  SRLM_TRY(srlm_model_forward_train(r->m, &b, p->logp));
  sequence_sums(p, r->sums);
  for (int64_t k = 0; k < count; k++) {
    r->lc[k] = r->sums[2 * k];
    r->lr[k] = r->sums[2 * k + 1];
  }
  srlm_pref_options lo = *loss;
  lo.norm = norm;
  srlm_pref_batch pb = {.n = count, .logp_chosen = r->lc, .logp_rejected = r->lr,
                        .ref_chosen = r->ref_chosen ? r->rc : NULL, .ref_rejected = r->ref_chosen ? r->rr : NULL,
                        .len_chosen = r->len_c, .len_rejected = r->len_r};
  SRLM_TRY(srlm_loss_pref(&lo, &pb, r->cc, r->cr, pm));
  *finite = isfinite(pm->loss);
  if (!*finite) return SRLM_OK;
  memset(p->g, 0, (size_t)p->T * sizeof *p->g);
  for (int b = 0; b < p->B; b++) { /* sequence 2k is pair k's chosen answer, 2k + 1 its rejected one */
    const float coef = (float)(b % 2 == 0 ? r->cc[b / 2] : r->cr[b / 2]);
    for (int64_t t = p->first[b]; t < p->first[b] + p->n_resp[b]; t++) p->g[t] = coef;
  }
  return srlm_model_backward(r->m, p->g);
}

/* The replay part: the next replay_batch examples (cycling), mean-token NLL over the
 * whole replay batch times the weight; this learner forwards its dp slice of it.
 * *nll_part is this slice's share of the batch's mean NLL (the learners' parts sum to it). */
static srlm_status replay_step(pref_run *r, double *nll_part, int64_t *tokens, int *finite) {
  const srlm_pref_train_options *o = r->o;
  const srlm_sft_data *d = o->replay;
  int count = o->replay_batch < d->n ? o->replay_batch : (int)d->n;
  int64_t *idx = srlm_xmalloc((size_t)count * sizeof *idx);
  int64_t all_targets = 0;
  for (int k = 0; k < count; k++) {
    idx[k] = (r->replay_next + k) % d->n;
    all_targets += d->n_targets_of[idx[k]];
  }
  r->replay_next = (r->replay_next + count) % d->n;
  int64_t lo, hi;
  srlm_dp_slice(o->dp, count, &lo, &hi);
  *nll_part = 0;
  *tokens = 0;
  *finite = 1;
  if (hi == lo || all_targets == 0) {
    free(idx);
    return SRLM_OK;
  }
  srlm_sft_batch_fill(&r->replay, d, idx + lo, (int)(hi - lo));
  free(idx);
  const srlm_batch *b = &r->replay.b;
  if ((size_t)b->T > r->replay_cap) {
    r->replay_cap = (size_t)b->T;
    r->replay_logp = srlm_xrealloc(r->replay_logp, r->replay_cap * sizeof *r->replay_logp);
    r->replay_g = srlm_xrealloc(r->replay_g, r->replay_cap * sizeof *r->replay_g);
  }
  SRLM_TRY(srlm_model_forward_train(r->m, b, r->replay_logp));
  double s = 0;
  const double coef = -o->replay_weight / (double)all_targets;
  for (int64_t t = 0; t < b->T; t++) {
    r->replay_g[t] = b->targets[t] >= 0 ? (float)coef : 0.0f;
    if (b->targets[t] >= 0) s -= (double)r->replay_logp[t];
  }
  *nll_part = s / (double)all_targets;
  *tokens = b->T;
  *finite = isfinite(s);
  if (!*finite) return SRLM_OK;
  return srlm_model_backward(r->m, r->replay_g);
}

static srlm_status check_options(const srlm_pref_train_options *o, const double *ref_chosen) {
  if (o->batch_pairs < 1) return srlm_error(SRLM_ERR_CONFIG, "train.batch_size", "%d must be >= 1", o->batch_pairs);
  if (o->grad_accum < 0)
    return srlm_error(SRLM_ERR_CONFIG, "train.grad_accum", "%d must be >= 0 (0 or 1: one micro-batch)", o->grad_accum);
  if (o->dp && o->dp->size > 1 && (!o->dp->reduce || o->dp->rank < 0 || o->dp->rank >= o->dp->size))
    return srlm_error(SRLM_ERR_INTERNAL, "pref", "data parallel over %d learners needs a reduce function and a rank "
                      "in range (got %d)", o->dp->size, o->dp->rank);
  if (o->epochs < 1) return srlm_error(SRLM_ERR_CONFIG, "train.epochs", "%d must be >= 1", o->epochs);
  if (!ref_chosen && (o->loss.kind == SRLM_PREF_DPO || o->loss.kind == SRLM_PREF_IPO))
    return srlm_error(SRLM_ERR_INTERNAL, "pref", "DPO and IPO need reference log-probs");
  if (o->replay && o->replay->n > 0 && o->replay_batch < 1)
    return srlm_error(SRLM_ERR_CONFIG, "pref", "replay batch %d must be >= 1", o->replay_batch);
  return SRLM_OK;
}

srlm_status srlm_pref_train(srlm_model *m, const srlm_pref_pair *pairs, int64_t n, const double *ref_chosen,
                            const double *ref_rejected, const srlm_pref_train_options *o, srlm_pref_summary *out) {
  srlm_pref_summary local;
  if (!out) out = &local;
  memset(out, 0, sizeof *out);
  SRLM_TRY(check_options(o, ref_chosen));
  if (n == 0) return SRLM_OK;
  const int64_t accum = o->grad_accum > 1 ? o->grad_accum : 1;
  const int64_t per_step = (int64_t)o->batch_pairs * accum < n ? (int64_t)o->batch_pairs * accum : n;
  const int64_t steps_per_epoch = (n + per_step - 1) / per_step;
  srlm_lr_schedule sched = o->schedule;
  sched.total_steps = steps_per_epoch * o->epochs;
  SRLM_TRY(srlm_lr_schedule_check(&sched));
  SRLM_TRY(srlm_train_resume_check(o->resume, srlm_model_num_params(m), sched.total_steps));
  if (o->resume && o->resume->replay_next < 0)
    return srlm_error(SRLM_ERR_RANGE, "resume", "negative replay cursor %lld", (long long)o->resume->replay_next);
  srlm_optim *opt;
  SRLM_TRY(srlm_optim_create_for_model(m, &o->optim, &opt));
  const int64_t start = o->resume ? o->resume->start_step : 0;
  if (o->resume) {
    srlm_status rs = srlm_optim_set_state(opt, o->resume->m, o->resume->v, srlm_model_num_params(m),
                                          o->resume->optim_step, o->resume->optim_skipped);
    if (rs != SRLM_OK) {
      srlm_optim_free(opt);
      return rs;
    }
  }
  pref_run r = {.m = m, .pairs = pairs, .ref_chosen = ref_chosen, .ref_rejected = ref_rejected, .o = o,
                .replay_next = o->resume ? o->resume->replay_next : 0};
  run_alloc(&r, o->batch_pairs < per_step ? o->batch_pairs : per_step);
  int64_t *order = srlm_xmalloc((size_t)n * sizeof *order);
  const int use_replay = o->replay && o->replay->n > 0 && o->replay_weight > 0;
  const int multi = o->dp && o->dp->size > 1;
  float *params = srlm_model_params(m);
  float *grads = srlm_model_grads(m);
  const int64_t n_params = (int64_t)srlm_model_num_params(m);
  srlm_status st = srlm_model_zero_grad(m);
  srlm_timer total;
  srlm_timer_start(&total);
  int64_t step = 0;
  for (int epoch = 0; st == SRLM_OK && epoch < o->epochs; epoch++) {
    srlm_rng_permutation(n, o->seed, SRLM_PREF_RNG_PURPOSE, (uint32_t)epoch, order);
    for (int64_t s = 0; st == SRLM_OK && s < steps_per_epoch; s++) {
      if (step < start) { /* done before the checkpoint */
        step++;
        continue;
      }
      srlm_timer t;
      srlm_timer_start(&t);
      const int64_t first = s * per_step, count = n - first < per_step ? n - first : per_step;
      srlm_pref_step_info info = {.step = step + 1, .total_steps = sched.total_steps, .epoch = epoch + 1,
                                  .epochs = o->epochs, .lr = srlm_lr_at(&sched, step), .grad_norm = NAN,
                                  .clip_scale = 1.0, .replay_nll = NAN};
      /* this learner's slice of the step, in micro-batches of batch_pairs; every piece is
         normalized by the step's pair count, so the pieces' gradients add up to the step's */
      int64_t lo, hi;
      srlm_dp_slice(o->dp, count, &lo, &hi);
      int finite = 1;
      int64_t tokens = 0;
      for (int64_t mb = lo; st == SRLM_OK && finite && mb < hi; mb += o->batch_pairs) {
        int64_t mc = hi - mb < o->batch_pairs ? hi - mb : o->batch_pairs;
        srlm_pref_metrics pm = {0};
        st = pairs_step(&r, &o->loss, order + first + mb, mc, count, &pm, &finite);
        tokens += r.p.T;
        srlm_pref_metrics_merge(&info.pref, &pm);
      }
      double replay_part = 0;
      if (st == SRLM_OK && finite && use_replay) {
        int64_t rt = 0;
        st = replay_step(&r, &replay_part, &rt, &finite);
        tokens += rt;
      } else if (use_replay) {
        /* the replay batch of a step skipped before it: its cursor still moves, so every
           learner (the others may have run theirs) stays at the same example */
        int64_t cnt = o->replay_batch < o->replay->n ? o->replay_batch : o->replay->n;
        r.replay_next = (r.replay_next + cnt) % o->replay->n;
      }
      if (st != SRLM_OK) break;
      if (multi) {
        /* sum gradients and step statistics over the learners; any non-finite piece
           makes every learner skip the step */
        double stats[14] = {(double)info.pref.pairs, info.pref.loss, info.pref.nll_sum, info.pref.logp_chosen_sum,
                            info.pref.logp_rejected_sum, info.pref.reward_chosen_sum,
                            info.pref.reward_rejected_sum, info.pref.margin_sum, info.pref.accuracy_sum,
                            replay_part, finite ? 0.0 : 1.0, (double)tokens, info.pref.len_chosen_sum,
                            info.pref.len_rejected_sum};
        st = o->dp->reduce(o->dp->ctx, grads, n_params, stats, 14);
        if (st != SRLM_OK) break;
        info.pref = (srlm_pref_metrics){(int64_t)stats[0], stats[1], stats[2], stats[3], stats[4], stats[5], stats[6],
                                        stats[7], stats[8], stats[12], stats[13]};
        replay_part = stats[9];
        finite = stats[10] == 0.0;
        tokens = (int64_t)stats[11];
      }
      info.tokens = tokens;
      info.loss = info.pref.loss;
      if (use_replay) {
        info.replay_nll = replay_part;
        info.loss += o->replay_weight * replay_part;
      }
      if (finite) {
        srlm_optim_stats os;
        st = srlm_optim_step(opt, params, grads, info.lr, &os);
        if (st != SRLM_OK) break;
        info.grad_norm = os.grad_norm;
        info.clip_scale = os.clip_scale;
        info.skipped = os.skipped;
      } else {
        info.skipped = 1;
      }
      st = srlm_model_zero_grad(m);
      if (st != SRLM_OK) break;
      step++;
      out->skipped += info.skipped;
      out->tokens += info.tokens;
      if (!info.skipped) srlm_pref_metrics_merge(&out->pref, &info.pref);
      info.n_skipped = out->skipped;
      info.step_seconds = srlm_timer_elapsed(&t);
      info.elapsed_seconds = srlm_timer_elapsed(&total);
      if (step == start + 1) out->first_loss = info.loss;
      out->last_loss = info.loss;
      info.optim = opt;
      info.replay_next = r.replay_next;
      if (o->on_step) st = o->on_step(&info, o->user);
    }
  }
  out->steps = step;
  out->seconds = srlm_timer_elapsed(&total);
  free(order);
  run_free(&r);
  srlm_optim_free(opt);
  return st;
}

srlm_status srlm_pref_grad(srlm_model *m, const srlm_pref_pair *pairs, const int64_t *idx, int64_t count,
                           const double *ref_chosen, const double *ref_rejected, const srlm_pref_options *loss,
                           srlm_pref_metrics *metrics) {
  srlm_pref_metrics local;
  memset(&local, 0, sizeof local);
  if (count < 1) return srlm_error(SRLM_ERR_RANGE, "pref", "no pairs");
  pref_run r = {.m = m, .pairs = pairs, .ref_chosen = ref_chosen, .ref_rejected = ref_rejected};
  run_alloc(&r, count);
  int finite = 1;
  srlm_status st = pairs_step(&r, loss, idx, count, count, &local, &finite);
  if (st == SRLM_OK && !finite) st = srlm_error(SRLM_ERR_RANGE, "pref", "the pair loss is not finite");
  run_free(&r);
  if (metrics) *metrics = local;
  return st;
}
