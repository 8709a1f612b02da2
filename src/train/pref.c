/* Preference training over pairs: reference log-probs once, then steps of packed pairs
 * (+ a replay NLL batch) on the training-step engine (engine.h), which owns the loop,
 * the reduce, the skip and AdamW. Conventions in include/srlm/pref.h; the loss math is
 * losses.c. Nothing here prints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "srlm/engine.h"
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

/* The step's metric sums every learner contributes (the engine adds the non-finite flag). */
enum {
  PS_PAIRS,
  PS_LOSS,
  PS_NLL,
  PS_LOGP_CHOSEN,
  PS_LOGP_REJECTED,
  PS_REWARD_CHOSEN,
  PS_REWARD_REJECTED,
  PS_MARGIN,
  PS_ACCURACY,
  PS_LEN_CHOSEN,
  PS_LEN_REJECTED,
  PS_REPLAY,  /* this learner's share of the replay batch's mean-token NLL */
  PS_TOKENS,  /* tokens forwarded (pairs and replay) */
  PS_COUNT
};

static void stats_add(double *s, const srlm_pref_metrics *pm) {
  s[PS_PAIRS] += (double)pm->pairs;
  s[PS_LOSS] += pm->loss;
  s[PS_NLL] += pm->nll_sum;
  s[PS_LOGP_CHOSEN] += pm->logp_chosen_sum;
  s[PS_LOGP_REJECTED] += pm->logp_rejected_sum;
  s[PS_REWARD_CHOSEN] += pm->reward_chosen_sum;
  s[PS_REWARD_REJECTED] += pm->reward_rejected_sum;
  s[PS_MARGIN] += pm->margin_sum;
  s[PS_ACCURACY] += pm->accuracy_sum;
  s[PS_LEN_CHOSEN] += pm->len_chosen_sum;
  s[PS_LEN_REJECTED] += pm->len_rejected_sum;
}

static srlm_pref_metrics stats_metrics(const double *s) {
  return (srlm_pref_metrics){.pairs = (int64_t)s[PS_PAIRS], .loss = s[PS_LOSS], .nll_sum = s[PS_NLL],
                             .logp_chosen_sum = s[PS_LOGP_CHOSEN], .logp_rejected_sum = s[PS_LOGP_REJECTED],
                             .reward_chosen_sum = s[PS_REWARD_CHOSEN], .reward_rejected_sum = s[PS_REWARD_REJECTED],
                             .margin_sum = s[PS_MARGIN], .accuracy_sum = s[PS_ACCURACY],
                             .len_chosen_sum = s[PS_LEN_CHOSEN], .len_rejected_sum = s[PS_LEN_REJECTED]};
}

typedef struct pref_run {
  srlm_model *m;
  const srlm_pref_pair *pairs;
  const double *ref_chosen, *ref_rejected;
  const srlm_pref_train_options *o;
  srlm_model *anchor; /* the EMA anchor: the reference, forwarded per micro-batch (NULL: ref_* arrays) */
  train_pack p;
  double *lc, *lr, *rc, *rr, *cc, *cr, *sums; /* per pair of a micro-batch */
  double *w, *eps;                              /* per pair: weight and soft label (or unused) */
  const double *pair_weight, *pair_label;       /* (n) the options' arrays, or NULL */
  int64_t *len_c, *len_r;
  /* srlm_pref_train only */
  int64_t count; /* pairs in the step in progress */
  int use_replay;
  train_nll replay;
  int64_t replay_next;    /* the next replay example (cycling) */
  int64_t *replay_idx;    /* the step's replay examples */
  int64_t replay_targets; /* their target tokens (the replay NLL's normalizer) */
  int64_t steps_run;
  srlm_pref_summary *out;
} pref_run;

static void run_alloc(pref_run *r, int64_t per_micro) {
  const size_t k = (size_t)per_micro;
  r->lc = srlm_xmalloc(k * sizeof(double));
  r->lr = srlm_xmalloc(k * sizeof(double));
  r->rc = srlm_xmalloc(k * sizeof(double));
  r->rr = srlm_xmalloc(k * sizeof(double));
  r->cc = srlm_xmalloc(k * sizeof(double));
  r->cr = srlm_xmalloc(k * sizeof(double));
  r->sums = srlm_xmalloc(2 * k * sizeof(double));
  r->w = srlm_xmalloc(k * sizeof(double));
  r->eps = srlm_xmalloc(k * sizeof(double));
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
  free(r->w);
  free(r->eps);
  free(r->len_c);
  free(r->len_r);
  free(r->replay_idx);
  train_nll_free(&r->replay);
  train_pack_free(&r->p);
}

/* One micro-batch of pairs: forward, loss normalized over norm pairs, per-token
 * coefficients, backward. */
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
    if (r->pair_weight) r->w[k] = r->pair_weight[idx[k]];
    if (r->pair_label) r->eps[k] = r->pair_label[idx[k]];
    if (r->ref_chosen) {
      r->rc[k] = r->ref_chosen[idx[k]];
      r->rr[k] = r->ref_rejected[idx[k]];
    }
  }
  srlm_batch b = train_pack_batch(p);
  if (r->anchor) { /* the anchor as it is now: its log-probs are the reference (p->logp is reused below) */
    SRLM_TRY(srlm_model_logprobs(r->anchor, &b, p->logp));
    sequence_sums(p, r->sums);
    for (int64_t k = 0; k < count; k++) {
      r->rc[k] = r->sums[2 * k];
      r->rr[k] = r->sums[2 * k + 1];
    }
  }
  SRLM_TRY(srlm_model_forward_train(r->m, &b, p->logp));
  sequence_sums(p, r->sums);
  for (int64_t k = 0; k < count; k++) {
    r->lc[k] = r->sums[2 * k];
    r->lr[k] = r->sums[2 * k + 1];
  }
  srlm_pref_options lo = *loss;
  lo.norm = norm;
  const int has_ref = r->ref_chosen || r->anchor;
  srlm_pref_batch pb = {.n = count, .logp_chosen = r->lc, .logp_rejected = r->lr,
                        .ref_chosen = has_ref ? r->rc : NULL, .ref_rejected = has_ref ? r->rr : NULL,
                        .len_chosen = r->len_c, .len_rejected = r->len_r, .weight = r->pair_weight ? r->w : NULL,
                        .label_smoothing = r->pair_label ? r->eps : NULL};
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

static srlm_status check_options(const srlm_pref_train_options *o, const double *ref_chosen) {
  if (o->batch_pairs < 1) return srlm_error(SRLM_ERR_CONFIG, "train.batch_size", "%d must be >= 1", o->batch_pairs);
  if (o->grad_accum < 0)
    return srlm_error(SRLM_ERR_CONFIG, "train.grad_accum", "%d must be >= 0 (0 or 1: one micro-batch)", o->grad_accum);
  SRLM_TRY(srlm_engine_check_dp(o->dp, "pref"));
  if (o->epochs < 1) return srlm_error(SRLM_ERR_CONFIG, "train.epochs", "%d must be >= 1", o->epochs);
  if (!ref_chosen && !o->anchor && (o->loss.kind == SRLM_PREF_DPO || o->loss.kind == SRLM_PREF_IPO))
    return srlm_error(SRLM_ERR_INTERNAL, "pref", "DPO and IPO need reference log-probs");
  if (o->replay && o->replay->n > 0 && o->replay_batch < 1)
    return srlm_error(SRLM_ERR_CONFIG, "pref", "replay batch %d must be >= 1", o->replay_batch);
  return SRLM_OK;
}

/* A step is its window of pairs in micro-batches of batch_pairs, then the next
 * replay_batch replay examples (cycling) as one micro-batch. The replay cursor moves here,
 * for every step that runs, so it also moves for a step skipped before its replay batch
 * and every learner stays at the same example. */
static srlm_status pref_step(void *ctx, int64_t step, const int64_t *pairs, int64_t n, srlm_engine_plan *plan) {
  pref_run *r = ctx;
  const srlm_pref_train_options *o = r->o;
  (void)step;
  r->count = n;
  plan->list[0] = (srlm_engine_list){.idx = pairs, .count = n, .chunk = o->batch_pairs};
  plan->n_lists = 1;
  if (!r->use_replay) return SRLM_OK;
  const srlm_sft_data *d = o->replay;
  const int64_t count = o->replay_batch < d->n ? o->replay_batch : d->n;
  r->replay_targets = 0;
  for (int64_t j = 0; j < count; j++) {
    r->replay_idx[j] = (r->replay_next + j) % d->n;
    r->replay_targets += d->n_targets_of[r->replay_idx[j]];
  }
  r->replay_next = (r->replay_next + count) % d->n;
  plan->list[1] = (srlm_engine_list){.idx = r->replay_idx, .count = count, .chunk = count};
  plan->n_lists = 2;
  return SRLM_OK;
}

/* List 0: pairs, normalized by the step's pair count. List 1: this learner's slice of the
 * replay batch, the mean-token NLL over the WHOLE batch times the weight (the learners'
 * PS_REPLAY parts sum to the batch's mean NLL). */
static srlm_status pref_micro(void *ctx, int list, const int64_t *idx, int64_t n, double *stats, int *finite) {
  pref_run *r = ctx;
  if (list == 0) {
    srlm_pref_metrics pm = {0};
    SRLM_TRY(pairs_step(r, &r->o->loss, idx, n, r->count, &pm, finite));
    stats_add(stats, &pm);
    stats[PS_TOKENS] += (double)r->p.T;
    return SRLM_OK;
  }
  if (r->replay_targets == 0) return SRLM_OK;
  const double all = (double)r->replay_targets;
  double nll;
  int64_t tokens;
  SRLM_TRY(train_nll_step(&r->replay, r->m, r->o->replay, idx, (int)n, -r->o->replay_weight / all, &nll, &tokens,
                          finite));
  stats[PS_REPLAY] += nll / all;
  stats[PS_TOKENS] += (double)tokens;
  return SRLM_OK;
}

static srlm_status pref_done(void *ctx, const srlm_engine_info *e) {
  pref_run *r = ctx;
  const srlm_pref_train_options *o = r->o;
  srlm_pref_step_info info = {.step = e->step, .total_steps = e->total_steps, .epoch = e->epoch, .epochs = e->epochs,
                              .pref = stats_metrics(e->stats), .replay_nll = NAN, .lr = e->lr,
                              .grad_norm = e->grad_norm, .clip_scale = e->clip_scale, .skipped = e->skipped,
                              .n_skipped = e->n_skipped, .tokens = (int64_t)e->stats[PS_TOKENS],
                              .step_seconds = e->step_seconds, .elapsed_seconds = e->elapsed_seconds,
                              .optim = e->optim, .replay_next = r->replay_next};
  info.loss = info.pref.loss;
  if (r->use_replay) {
    info.replay_nll = e->stats[PS_REPLAY];
    info.loss += o->replay_weight * e->stats[PS_REPLAY];
  }
  srlm_pref_summary *out = r->out;
  out->tokens += info.tokens;
  if (!info.skipped) srlm_pref_metrics_merge(&out->pref, &info.pref);
  if (r->steps_run++ == 0) out->first_loss = info.loss;
  out->last_loss = info.loss;
  return o->on_step ? o->on_step(&info, o->user) : SRLM_OK;
}

srlm_status srlm_pref_train(srlm_model *m, const srlm_pref_pair *pairs, int64_t n, const double *ref_chosen,
                            const double *ref_rejected, const srlm_pref_train_options *o, srlm_pref_summary *out) {
  srlm_pref_summary local;
  if (!out) out = &local;
  memset(out, 0, sizeof *out);
  SRLM_TRY(check_options(o, ref_chosen));
  if (n == 0) return SRLM_OK;
  if (o->resume && o->resume->replay_next < 0)
    return srlm_error(SRLM_ERR_RANGE, "resume", "negative replay cursor %lld", (long long)o->resume->replay_next);
  const int64_t per_step = (int64_t)o->batch_pairs * (o->grad_accum > 1 ? o->grad_accum : 1);
  pref_run r = {.m = m, .pairs = pairs, .ref_chosen = o->anchor ? NULL : ref_chosen,
                .ref_rejected = o->anchor ? NULL : ref_rejected, .o = o, .anchor = o->anchor,
                .pair_weight = o->pair_weight, .pair_label = o->pair_label,
                .use_replay = o->replay && o->replay->n > 0 && o->replay_weight > 0,
                .replay_next = o->resume ? o->resume->replay_next : 0, .out = out};
  run_alloc(&r, o->batch_pairs < n ? o->batch_pairs : n);
  if (r.use_replay) r.replay_idx = srlm_xmalloc((size_t)o->replay_batch * sizeof *r.replay_idx);
  srlm_engine_options eo = {.what = "pref",
                            .order = {.units = n, .per_step = per_step, .seed = o->seed,
                                      .purpose = SRLM_PREF_RNG_PURPOSE},
                            .epochs = o->epochs, .n_stats = PS_COUNT, .optim = o->optim, .schedule = o->schedule, .dp = o->dp,
                            .resume = o->resume, .anchor = o->anchor, .anchor_mu = o->anchor_mu,
                            .hooks = {.step = pref_step, .micro = pref_micro, .done = pref_done, .ctx = &r}};
  srlm_engine_summary es;
  srlm_status st = srlm_engine_run(m, &eo, &es);
  out->steps = es.steps;
  out->skipped = es.skipped;
  out->seconds = es.seconds;
  run_free(&r);
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
