/* GRPO training over groups: old/reference log-probs once per iteration, then steps of
 * packed sequences on the training-step engine (engine.h), which owns the loop, the
 * data-parallel reduce, the skip and AdamW. Conventions in include/srlm/grpo.h; the
 * per-token loss math is losses.c. Nothing here prints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "srlm/engine.h"
#include "srlm/grpo.h"

/* The step's metric sums every learner contributes (the engine adds the non-finite flag). */
enum {
  ST_SEQS,
  ST_TOKENS,
  ST_LOSS,
  ST_KL,
  ST_RATIO,
  ST_CLIPPED,
  ST_TRUNCATED,
  ST_FORWARDED, /* tokens forwarded (prompt + response) */
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
  srlm_model *anchor; /* the EMA anchor: the reference, forwarded per micro-batch (then logp_ref is unused) */
  int use_behavior;
  train_pack p;
  /* one micro-batch, response tokens concatenated: (N_mb) and (n_mb [+ 1]) */
  float *lp, *old, *ref, *beh, *gtok;
  int64_t tok_cap;
  double *adv_mb;
  int64_t *off_mb;
  int64_t seq_cap;
  /* srlm_grpo_train */
  const srlm_grpo_train_options *o;
  int64_t G;
  int64_t *list;      /* (groups a step * G) the step's sequences */
  int64_t groups;     /* groups in the step in progress */
  srlm_grpo_options lo; /* the loss options with the step's normalizers */
  int64_t steps_run;
  srlm_grpo_summary *out;
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
  free(r->list);
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
  if (r->anchor) { /* the anchor's log-probs now are the reference (p->logp is reused below) */
    SRLM_TRY(srlm_model_logprobs(r->anchor, &b, p->logp));
    for (int64_t q = 0; q < k; q++)
      memcpy(r->ref + r->off_mb[q], p->logp + p->first[q], (size_t)(r->off_mb[q + 1] - r->off_mb[q]) * sizeof(float));
  }
  SRLM_TRY(srlm_model_forward_train(r->m, &b, p->logp));
  for (int64_t q = 0; q < k; q++)
    memcpy(r->lp + r->off_mb[q], p->logp + p->first[q], (size_t)(r->off_mb[q + 1] - r->off_mb[q]) * sizeof(float));
  srlm_grpo_batch gb = {.n = k, .offsets = r->off_mb, .logp = r->lp, .logp_old = r->logp_old ? r->old : NULL,
                        .logp_ref = r->logp_ref || r->anchor ? r->ref : NULL, .logp_behavior = r->use_behavior ? r->beh : NULL,
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
  if (o->loss.beta > 0 && !logp_ref && !o->anchor)
    return srlm_error(SRLM_ERR_CONFIG, w, "beta %g > 0 needs reference log-probs (logp_ref)", o->loss.beta);
  if (o->loss.agg == SRLM_GRPO_AGG_FIXED_LEN && o->loss.l_max < 1)
    return srlm_error(SRLM_ERR_CONFIG, w, "the fixed-length aggregation needs l_max >= 1 (got %lld)",
                      (long long)o->loss.l_max);
  /* the loss's own option checks (clip_eps, beta, is_cap, agg) on an empty batch */
  srlm_grpo_batch none = {.n = 0};
  SRLM_TRY(srlm_loss_grpo(&o->loss, &none, NULL, NULL));
  SRLM_TRY(srlm_engine_check_dp(o->dp, w));
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

/* A step is its window of groups: their sequences group by group, cut into grad_accum
 * pieces of each learner's slice; the normalizers count the whole step. */
static srlm_status grpo_step(void *ctx, int64_t step, const int64_t *groups, int64_t n, srlm_engine_plan *plan) {
  grpo_run *r = ctx;
  const int64_t G = r->G;
  r->groups = n;
  const int64_t count = n * G;
  int64_t step_resp = 0, step_tokens = 0;
  for (int64_t q = 0; q < n; q++)
    for (int64_t j = 0; j < G; j++) {
      const int64_t i = groups[q] * G + j;
      r->list[q * G + j] = i;
      step_resp += r->seqs[i].response_len;
      step_tokens += seq_tokens(&r->seqs[i]);
    }
  /* the micro-batches are pieces of this step, so they all fit when the step does;
     every learner sees the same step, so this error is everyone's */
  if (step_tokens > INT32_MAX)
    return srlm_error(SRLM_ERR_RANGE, "grpo", "step %lld: %lld tokens exceed a packed batch's limit; lower "
                      "batch_groups x grad_accum", (long long)step, (long long)step_tokens);
  r->lo = r->o->loss;
  r->lo.norm_seqs = count;
  r->lo.norm_tokens = step_resp;
  plan->list[0] = (srlm_engine_list){.idx = r->list, .count = count, .pieces = r->o->grad_accum};
  plan->n_lists = 1;
  return SRLM_OK;
}

static srlm_status grpo_micro(void *ctx, int list, const int64_t *idx, int64_t n, double *stats, int *finite) {
  grpo_run *r = ctx;
  (void)list;
  srlm_grpo_metrics mt;
  int64_t forwarded = 0;
  SRLM_TRY(micro_step(r, idx, n, &r->lo, &mt, &forwarded, finite));
  stats[ST_SEQS] += (double)mt.seqs;
  stats[ST_TOKENS] += (double)mt.tokens;
  stats[ST_LOSS] += mt.loss;
  stats[ST_KL] += mt.kl_sum;
  stats[ST_RATIO] += mt.ratio_sum;
  stats[ST_CLIPPED] += (double)mt.clipped;
  stats[ST_TRUNCATED] += (double)mt.is_truncated;
  stats[ST_FORWARDED] += (double)forwarded;
  return SRLM_OK;
}

static srlm_status grpo_done(void *ctx, const srlm_engine_info *e) {
  grpo_run *r = ctx;
  const double *stats = e->stats;
  srlm_grpo_step_info info = {.step = e->step, .total_steps = e->total_steps, .epoch = e->epoch, .epochs = e->epochs,
                              .lr = e->lr, .grad_norm = e->grad_norm, .clip_scale = e->clip_scale,
                              .skipped = e->skipped, .n_skipped = e->n_skipped, .groups = r->groups,
                              .step_seconds = e->step_seconds, .elapsed_seconds = e->elapsed_seconds,
                              .optim = e->optim};
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
  srlm_grpo_summary *out = r->out;
  out->tokens += info.tokens;
  if (!info.skipped) srlm_grpo_metrics_merge(&out->grpo, &info.grpo);
  if (r->steps_run++ == 0) out->first_loss = info.loss;
  out->last_loss = info.loss;
  return r->o->on_step ? r->o->on_step(&info, r->o->user) : SRLM_OK;
}

srlm_status srlm_grpo_train(srlm_model *m, const srlm_grpo_seq *seqs, int64_t n_groups, int group_size,
                            const double *advantages, const float *logp_old, const float *logp_ref,
                            const srlm_grpo_train_options *o, srlm_grpo_summary *out) {
  srlm_grpo_summary local;
  if (!out) out = &local;
  memset(out, 0, sizeof *out);
  SRLM_TRY(check_train(m, seqs, n_groups, group_size, advantages, logp_ref, o));
  if (n_groups == 0) return SRLM_OK;
  const int64_t G = group_size, n = n_groups * G, per_step = (int64_t)o->batch_groups * o->grad_accum;
  int64_t *off = srlm_xmalloc((size_t)(n + 1) * sizeof *off);
  srlm_grpo_offsets(seqs, n, off);
  grpo_run r = {.m = m, .seqs = seqs, .off = off, .adv = advantages, .logp_old = logp_old, .logp_ref = logp_ref,
                .anchor = o->anchor, .use_behavior = o->loss.is_cap > 0, .o = o, .G = G, .out = out};
  r.list = srlm_xmalloc((size_t)((per_step < n_groups ? per_step : n_groups) * G) * sizeof *r.list);
  srlm_engine_options eo = {.what = "grpo",
                            .order = {.units = n_groups, .per_step = per_step, .seed = o->seed,
                                      .purpose = SRLM_GRPO_RNG_PURPOSE},
                            .epochs = o->epochs, .n_stats = ST_COUNT, .optim = o->optim, .schedule = o->schedule, .dp = o->dp,
                            .resume = o->resume, .anchor = o->anchor, .anchor_mu = o->anchor_mu,
                            .hooks = {.step = grpo_step, .micro = grpo_micro, .done = grpo_done, .ctx = &r}};
  srlm_engine_summary es;
  srlm_status st = srlm_engine_run(m, &eo, &es);
  out->steps = es.steps;
  out->skipped = es.skipped;
  out->seconds = es.seconds;
  free(off);
  run_free(&r);
  return st;
}
