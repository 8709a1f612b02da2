/* The self-rewarding iterations on a built-in task, in every layout of ranks: the
 * driver moves rollout shards from generators to judges to learners and weights back
 * (rollout.c does the work on one shard). Conventions in include/srlm/selfreward.h.
 * With judge.source model the checker is called only by the evaluation (and for the
 * reported pair accuracy), never for data that reaches the learner. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rollout.h"
#include "srlm/checkpoint.h"
#include "srlm/comm.h"
#include "srlm/generate.h"
#include "srlm/grpo.h"
#include "srlm/pairs.h"
#include "srlm/pref.h"
#include "srlm/selfreward.h"
#include "srlm/setup.h"
#include "srlm/tasks.h"

#define SR_MAX_BATCH 64

/* Growing NLL examples (the judge replay) in srlm_sft_data layout. */
typedef struct replay_buf {
  srlm_sft_data d;
  int64_t cap_ex, cap_tok;
} replay_buf;

static void replay_add(replay_buf *r, const srlm_token_ids *prompt, const srlm_token_ids *target, int32_t eos) {
  srlm_sft_data *d = &r->d;
  int64_t L = (int64_t)(prompt->n + target->n) + 1;
  if (d->n + 1 >= r->cap_ex) {
    r->cap_ex = r->cap_ex ? 2 * r->cap_ex : 256;
    d->offsets = srlm_xrealloc(d->offsets, (size_t)(r->cap_ex + 1) * sizeof *d->offsets);
    d->n_targets_of = srlm_xrealloc(d->n_targets_of, (size_t)r->cap_ex * sizeof *d->n_targets_of);
  }
  if (d->n == 0) d->offsets[0] = 0;
  int64_t at = d->offsets[d->n];
  if (at + L > r->cap_tok) {
    r->cap_tok = 2 * (at + L) + 1024;
    d->ids = srlm_xrealloc(d->ids, (size_t)r->cap_tok * sizeof *d->ids);
    d->targets = srlm_xrealloc(d->targets, (size_t)r->cap_tok * sizeof *d->targets);
  }
  int32_t *ids = d->ids + at, *tg = d->targets + at;
  memcpy(ids, prompt->ids, prompt->n * sizeof *ids);
  memcpy(ids + prompt->n, target->ids, target->n * sizeof *ids);
  ids[L - 1] = eos;
  int32_t nt = 0;
  for (int64_t t = 0; t < L; t++) {
    tg[t] = t + 1 >= (int64_t)prompt->n && t + 1 < L ? ids[t + 1] : -1;
    nt += tg[t] >= 0;
  }
  d->n_targets_of[d->n] = nt;
  d->n++;
  d->offsets[d->n] = at + L;
  d->n_tokens += L;
  d->n_targets += nt;
  if (L > d->max_seq) d->max_seq = L;
}

static void replay_free(replay_buf *r) {
  free(r->d.offsets);
  free(r->d.ids);
  free(r->d.targets);
  free(r->d.n_targets_of);
  memset(r, 0, sizeof *r);
}

static srlm_status metrics_line(FILE *f, json_t *o) {
  char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  int ok = s && fprintf(f, "%s\n", s) >= 0 && fflush(f) == 0;
  free(s);
  return ok ? SRLM_OK : srlm_error(SRLM_ERR_IO, "metrics.jsonl", "write failed");
}

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* Held-out accuracy (greedy) and judge agreement on one sampled answer per eval prompt. */
static srlm_status evaluate(const srlm_config *cfg, srlm_model *m, srlm_tokenizer *tok, int t, int32_t eos,
                            srlm_sr_iteration *row, FILE *metrics) {
  const int n = cfg->task.name == SRLM_CFG_TASK_NONE ? 0 : cfg->task.eval_prompts;
  row->accuracy = row->sample_accuracy = row->judge_agreement = NAN;
  if (n == 0) return SRLM_OK; /* a prompt set has no checker: its iterations report judged scores */
  srlm_timer tm;
  srlm_timer_start(&tm);
  srlm_task_puzzle *p = srlm_xmalloc((size_t)n * sizeof *p);
  for (int i = 0; i < n; i++) srlm_task_puzzle_make((uint64_t)cfg->run.seed, SRLM_TASK_SPLIT_EVAL, (uint64_t)i, &p[i]);
  srlm_status st = srlm_task_eval_accuracy(m, tok, SR_MAX_BATCH, n, p, NULL, NULL, &row->accuracy);
  /* one sample per prompt at temperature 1 for the judge */
  srlm_gen_request *req = srlm_xcalloc((size_t)n, sizeof *req);
  srlm_gen_result *res = srlm_xcalloc((size_t)n, sizeof *res);
  srlm_token_ids ids = {0};
  int64_t *off = srlm_xmalloc((size_t)(n + 1) * sizeof *off);
  off[0] = 0;
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    char text[SRLM_TASK_PROMPT_LEN + 1];
    srlm_task_prompt(&p[i], text);
    st = srlm_tokenizer_encode(tok, text, strlen(text), &ids);
    off[i + 1] = (int64_t)ids.n;
  }
  for (int i = 0; i < n && st == SRLM_OK; i++)
    req[i] = (srlm_gen_request){ids.ids + off[i], off[i + 1] - off[i],
                                ((uint64_t)SRLM_SR_RNG_EVAL << 48) | ((uint64_t)t << 32) | (uint64_t)i};
  srlm_generate_params gp = srlm_generate_params_default();
  gp.sampler.temperature = 1.0f;
  gp.sampler.seed = (uint64_t)cfg->run.seed;
  gp.max_new_tokens = cfg->generate.max_new_tokens;
  gp.max_batch = SR_MAX_BATCH;
  gp.eos_ids = &eos;
  gp.n_eos = 1;
  gp.tok = tok;
  if (st == SRLM_OK) st = srlm_generate(m, &gp, n, req, res, NULL);
  const char **cand = srlm_xcalloc((size_t)n, sizeof *cand);
  int64_t sample_ok = 0;
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    cand[i] = res[i].text ? res[i].text : "";
    sample_ok += res[i].stop == SRLM_STOP_EOS && srlm_task_check(&p[i], cand[i], strlen(cand[i]));
  }
  srlm_task_agreement ag;
  if (st == SRLM_OK) st = srlm_task_judge_agreement(m, tok, SR_MAX_BATCH, n, p, cand, &ag);
  if (st == SRLM_OK) {
    row->sample_accuracy = (double)sample_ok / n;
    row->judge_agreement = cfg->judge.mode == SRLM_CFG_JUDGE_EXPECTED ? ag.expected : ag.greedy;
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("eval"));
    json_object_set_new(o, "iteration", json_integer(t));
    json_object_set_new(o, "accuracy", num(row->accuracy));
    json_object_set_new(o, "judge_agreement", num(row->judge_agreement));
    json_object_set_new(o, "sample_accuracy", num(row->sample_accuracy));
    json_object_set_new(o, "judge_agreement_greedy", num(ag.greedy));
    json_object_set_new(o, "judge_agreement_expected", num(ag.expected));
    json_object_set_new(o, "judge_false_pos", json_integer(ag.false_pos));
    json_object_set_new(o, "judge_false_neg", json_integer(ag.false_neg));
    json_object_set_new(o, "prompts", json_integer(n));
    json_object_set_new(o, "seconds", json_real(srlm_timer_elapsed(&tm)));
    st = metrics_line(metrics, o);
    SRLM_INFO("eval M%d: accuracy %.1f%% (greedy, %d held-out prompts), sample accuracy %.1f%%, judge agreement "
              "%.1f%% (%.1f s)", t, 100 * row->accuracy, n, 100 * row->sample_accuracy, 100 * row->judge_agreement,
              srlm_timer_elapsed(&tm));
  }
  for (int i = 0; i < n; i++) srlm_gen_result_free(&res[i]);
  free(cand);
  free(res);
  free(req);
  free(off);
  srlm_token_ids_free(&ids);
  free(p);
  return st;
}

typedef struct learn_log {
  FILE *metrics; /* the lead's; NULL on other learners (they only train) */
  int iteration;
  int log_every;
  /* LEARN checkpoints every `every` steps (0 = none), written by the lead */
  int every;
  srlm_model *m;
  const char *run_dir, *yaml;
  int64_t data_position;
  double first_loss; /* the iteration's first step's (kept in LEARN checkpoints) */
  double beta;       /* train.beta; has_ref: the loss has reference log-probs */
  int has_ref;
} learn_log;

/* A LEARN checkpoint after `step` of the iteration (checkpoint.h). */
static srlm_status learn_checkpoint(learn_log *l, int64_t step, int64_t total, double loss, srlm_optim *optim,
                                    int64_t replay_next) {
  if (step == 1) l->first_loss = loss;
  if (!l->metrics || l->every <= 0 || step % l->every != 0 || step >= total) return SRLM_OK;
  srlm_optim_state os;
  srlm_optim_get_state(optim, &os);
  long bytes = ftell(l->metrics);
  if (bytes < 0) return srlm_error(SRLM_ERR_IO, "metrics.jsonl", "cannot tell its length");
  srlm_checkpoint ck = {.kind = SRLM_CKPT_LEARN, .iteration = l->iteration, .step = step,
                        .data_position = l->data_position, .metrics_bytes = bytes, .config_yaml = (char *)l->yaml,
                        .n_params = (int64_t)os.n, .params = srlm_model_params(l->m), .m = os.m, .v = os.v,
                        .optim_step = os.step, .optim_skipped = os.n_skipped, .replay_next = replay_next,
                        .first_loss = l->first_loss};
  SRLM_TRY(srlm_checkpoint_save(l->run_dir, &ck));
  SRLM_INFO("iteration %d learn: checkpoint after step %lld/%lld", l->iteration, (long long)step, (long long)total);
  return SRLM_OK;
}

static srlm_status log_pref_step(const srlm_pref_step_info *s, learn_log *l);
static srlm_status on_pref_step(const srlm_pref_step_info *s, void *user) {
  learn_log *l = user;
  if (!l->metrics) return SRLM_OK; /* learners other than the lead only train */
  SRLM_TRY(log_pref_step(s, l));
  return learn_checkpoint(l, s->step, s->total_steps, s->loss, s->optim, s->replay_next);
}

static srlm_status log_pref_step(const srlm_pref_step_info *s, learn_log *l) {
  if (!(s->step == 1 || s->step == s->total_steps || s->step % l->log_every == 0)) return SRLM_OK;
  double np = s->pref.pairs ? (double)s->pref.pairs : 1;
  SRLM_INFO("iteration %d learn: step %lld/%lld loss %.4f (replay NLL %.4f) margin %.3f reward acc %.2f "
            "grad norm %.3f %.0f tok/s",
            l->iteration, (long long)s->step, (long long)s->total_steps, s->loss, s->replay_nll,
            s->pref.margin_sum / np, s->pref.accuracy_sum / np, s->grad_norm,
            s->step_seconds > 0 ? (double)s->tokens / s->step_seconds : 0);
  json_t *o = json_object();
  json_object_set_new(o, "event", json_string("learn"));
  json_object_set_new(o, "iteration", json_integer(l->iteration));
  json_object_set_new(o, "step", json_integer(s->step));
  json_object_set_new(o, "loss", num(s->loss));
  json_object_set_new(o, "replay_nll", num(s->replay_nll));
  json_object_set_new(o, "logp_chosen", num(s->pref.logp_chosen_sum / np));
  json_object_set_new(o, "logp_rejected", num(s->pref.logp_rejected_sum / np));
  json_object_set_new(o, "reward_chosen", num(s->pref.reward_chosen_sum / np));
  json_object_set_new(o, "reward_rejected", num(s->pref.reward_rejected_sum / np));
  json_object_set_new(o, "margin", num(s->pref.margin_sum / np));
  json_object_set_new(o, "reward_accuracy", num(s->pref.accuracy_sum / np));
  /* the sequences' log-ratio to the reference (a sampled KL proxy; rewards are beta x it) */
  json_object_set_new(o, "kl", num(l->beta > 0 && l->has_ref ? (s->pref.reward_chosen_sum + s->pref.reward_rejected_sum) /
                                                                     (2 * l->beta * np)
                                                               : NAN));
  json_object_set_new(o, "len_chosen", num(s->pref.len_chosen_sum / np));
  json_object_set_new(o, "len_rejected", num(s->pref.len_rejected_sum / np));
  json_object_set_new(o, "grad_norm", num(s->grad_norm));
  json_object_set_new(o, "lr", num(s->lr));
  json_object_set_new(o, "skipped", json_boolean(s->skipped));
  json_object_set_new(o, "tokens", json_integer(s->tokens));
  json_object_set_new(o, "tokens_per_s", num(s->step_seconds > 0 ? (double)s->tokens / s->step_seconds : NAN));
  return metrics_line(l->metrics, o);
}


/* ---- the driver's state ------------------------------------------------------------ */

typedef struct sr_ctx {
  const srlm_config *cfg;
  srlm_comm *comm;
  sr_rollout ro;
  const char *run_dir, *tok_dir;
  FILE *metrics; /* learner 0 */
  srlm_sr_iteration *rows;
  bool lead;     /* learner 0 = world rank 0: reports, writes files */
  int64_t n_params;
  char *yaml;                /* the resolved config, stored in checkpoints */
  const srlm_checkpoint *ck; /* resuming inside an iteration's learning (LEARN), else NULL */
  bool resumed;              /* started from a checkpoint (every rank knows) */
  bool resume_learn;         /* ... of kind LEARN: the start iteration's rollouts exist */
  int64_t resume_metrics_bytes; /* the lead: metrics.jsonl's length at the checkpoint */
  const srlm_prompt_set *eval;  /* the lead: data.eval_prompts (prompt sets), else NULL */
} sr_ctx;

/* Sums gradients (learner-rank order) and step statistics over the learners. */
static srlm_status dp_reduce(void *ctx, float *grads, int64_t n, double *stats, int n_stats) {
  srlm_comm *c = ctx;
  SRLM_TRY(srlm_comm_allreduce_grads(c, grads, n, SRLM_COMM_SUM, SRLM_COMM_DETERMINISTIC));
  return srlm_comm_allreduce_f64(c, stats, n_stats);
}

/* A LEARN checkpoint's weights into m (after the reference log-probs were taken from
 * M_{t-1}) and the trainer's resume point. */
static srlm_status resume_weights(srlm_model *m, const srlm_checkpoint *ck, srlm_train_resume *rs) {
  int64_t n = (int64_t)srlm_model_param_count(srlm_model_get_config(m));
  if (ck->n_params != n)
    return srlm_error(SRLM_ERR_FORMAT, SRLM_CKPT_FILE, "holds %lld parameters, the model has %lld",
                      (long long)ck->n_params, (long long)n);
  memcpy(srlm_model_params(m), ck->params, (size_t)n * sizeof(float));
  *rs = (srlm_train_resume){.start_step = ck->step, .m = ck->m, .v = ck->v, .n = (size_t)n, .optim_step = ck->optim_step,
                            .optim_skipped = ck->optim_skipped, .replay_next = ck->replay_next};
  return SRLM_OK;
}

static srlm_status log_grpo_step(const srlm_grpo_step_info *s, learn_log *l);
static srlm_status on_grpo_step(const srlm_grpo_step_info *s, void *user) {
  learn_log *l = user;
  if (!l->metrics) return SRLM_OK;
  SRLM_TRY(log_grpo_step(s, l));
  return learn_checkpoint(l, s->step, s->total_steps, s->loss, s->optim, 0);
}

static srlm_status log_grpo_step(const srlm_grpo_step_info *s, learn_log *l) {
  if (!(s->step == 1 || s->step == s->total_steps || s->step % l->log_every == 0)) return SRLM_OK;
  SRLM_INFO("iteration %d learn: step %lld/%lld loss %.4f KL %.4f clip %.3f ratio %.3f grad norm %.3f %.0f tok/s",
            l->iteration, (long long)s->step, (long long)s->total_steps, s->loss, s->kl_mean, s->clip_frac,
            s->ratio_mean, s->grad_norm, s->step_seconds > 0 ? (double)s->tokens / s->step_seconds : 0);
  json_t *o = json_object();
  json_object_set_new(o, "event", json_string("learn"));
  json_object_set_new(o, "iteration", json_integer(l->iteration));
  json_object_set_new(o, "step", json_integer(s->step));
  json_object_set_new(o, "loss", num(s->loss));
  json_object_set_new(o, "kl", num(s->kl_mean));
  json_object_set_new(o, "clip_fraction", num(s->clip_frac));
  json_object_set_new(o, "ratio", num(s->ratio_mean));
  json_object_set_new(o, "grad_norm", num(s->grad_norm));
  json_object_set_new(o, "lr", num(s->lr));
  json_object_set_new(o, "skipped", json_boolean(s->skipped));
  json_object_set_new(o, "groups", json_integer(s->groups));
  json_object_set_new(o, "len_mean", num(s->grpo.seqs ? (double)s->grpo.tokens / (double)s->grpo.seqs : NAN));
  json_object_set_new(o, "tokens", json_integer(s->tokens));
  json_object_set_new(o, "tokens_per_s", num(s->step_seconds > 0 ? (double)s->tokens / s->step_seconds : NAN));
  return metrics_line(l->metrics, o);
}

/* GRPO on groups: every prompt whose K samples all arrived is a group (unscored samples
 * get advantage 0, srlm_group_advantages); reference = old policy = M_t, once. */
static srlm_status learn_grpo(const srlm_config *cfg, srlm_model *m, srlm_comm *comm, int t, learn_log *ll,
                              const srlm_checkpoint *ck, const srlm_grpo_seq *seqs, int64_t n_groups, int K,
                              const double *rewards, srlm_group_stats *gs, srlm_sr_iteration *row) {
  FILE *metrics = ll->metrics;
  const int64_t n = n_groups * K;
  double *adv = srlm_xmalloc((size_t)(n + 1) * sizeof *adv);
  srlm_group_options go = {.use_std = cfg->train.grpo_std, .eps = SRLM_GROUP_STD_EPS};
  srlm_status st = srlm_group_advantages(&go, n_groups, K, rewards, adv, gs);
  int64_t *off = srlm_xmalloc((size_t)(n + 1) * sizeof *off);
  int64_t N = srlm_grpo_offsets(seqs, n, off);
  free(off);
  static const srlm_grpo_agg k_agg[] = {[SRLM_CFG_GRPO_SEQ_MEAN] = SRLM_GRPO_AGG_SEQ_MEAN,
                                        [SRLM_CFG_GRPO_TOKEN_MEAN] = SRLM_GRPO_AGG_TOKEN_MEAN,
                                        [SRLM_CFG_GRPO_FIXED_LEN] = SRLM_GRPO_AGG_FIXED_LEN};
  srlm_grpo_train_options o = {.loss = {.clip_eps = cfg->train.clip_eps, .beta = cfg->train.beta,
                                        .agg = k_agg[cfg->train.grpo_aggregation],
                                        .l_max = cfg->generate.max_new_tokens, .is_cap = cfg->train.is_cap},
                               .batch_groups = cfg->train.batch_size,
                               .grad_accum = cfg->train.grad_accum,
                               .epochs = cfg->train.epochs,
                               .seed = (uint64_t)cfg->run.seed + (uint64_t)t};
  srlm_dp dp = {.rank = srlm_comm_role_rank(comm, SRLM_ROLE_LEARNER), .size = srlm_comm_role_size(comm, SRLM_ROLE_LEARNER),
                .reduce = dp_reduce, .ctx = comm};
  o.dp = &dp;
  srlm_optim_config_from_config(cfg, &o.optim);
  srlm_lr_schedule_from_config(cfg, 1, &o.schedule);
  o.on_step = on_grpo_step;
  o.user = ll;
  /* M_t's log-probs: the KL anchor and the ratio's denominator for later steps */
  float *ref = srlm_xmalloc((size_t)(N + 1) * sizeof *ref);
  if (st == SRLM_OK) st = srlm_grpo_logps(m, seqs, n, 16384, ref);
  srlm_train_resume rs;
  if (st == SRLM_OK && ck) st = resume_weights(m, ck, &rs);
  o.resume = ck ? &rs : NULL;
  srlm_grpo_summary sum;
  if (st == SRLM_OK) st = srlm_grpo_train(m, seqs, n_groups, K, adv, ref, ref, &o, &sum);
  if (st == SRLM_OK) {
    row->loss_first = ck ? ck->first_loss : sum.first_loss;
    row->loss_last = sum.last_loss;
    if (metrics)
      SRLM_INFO("iteration %d learn: GRPO %lld groups (%lld with all rewards equal), %lld steps (%lld skipped), loss "
                "%.4f -> %.4f, %.0f tokens/s",
                t, (long long)n_groups, (long long)gs->zero_variance, (long long)sum.steps, (long long)sum.skipped,
                sum.first_loss, sum.last_loss, sum.seconds > 0 ? (double)sum.tokens / sum.seconds : 0);
  }
  free(ref);
  free(adv);
  return st;
}

/* ---- moving shards ------------------------------------------------------------------ */

static srlm_status serialize(const srlm_shard *s, void **buf, size_t *len) { return srlm_shard_serialize(s, buf, len); }

/* Progress of the scored shards as the lead learner receives them. */
typedef struct sr_progress {
  srlm_timer tm;
  int t;
  int64_t shards, prompts, samples, unparsable, unscored;
  double last;
} sr_progress;

static void progress_add(sr_ctx *c, sr_progress *p, const srlm_shard *s) {
  p->shards++;
  p->prompts += s->n_prompts;
  p->samples += s->n_responses;
  for (int64_t j = 0; j < s->n_responses * s->judgments_per_response; j++) p->unparsable += isnan(s->judgment_score[j]);
  for (int64_t j = 0; j < s->n_responses; j++) p->unscored += !(s->flags[j] & SRLM_SHARD_F_SCORED);
  double el = srlm_timer_elapsed(&p->tm);
  if (!c->lead || (p->shards < c->ro.shards && el - p->last < 10.0)) return;
  p->last = el;
  double rate = el > 0 ? (double)p->samples / el : 0;
  double eta = p->shards ? el * (double)(c->ro.shards - p->shards) / (double)p->shards : 0;
  SRLM_INFO("iteration %d rollouts: %lld/%lld prompts generated and judged (%lld/%lld shards), %.0f samples/s, "
            "%lld unparsable judgments, %lld unscored samples, ETA %.0f s",
            p->t, (long long)p->prompts, (long long)c->ro.n, (long long)p->shards, (long long)c->ro.shards, rate,
            (long long)p->unparsable, (long long)p->unscored, eta);
}

/* Colocated: every rank generates and judges shards s = rank (mod ranks), then all
 * ranks exchange their scored shards. out (shards) is filled by shard index. */
static srlm_status rollouts_colocated(sr_ctx *c, int t, int64_t version, srlm_shard *out, sr_progress *pg) {
  const int R = srlm_comm_size(c->comm), me = srlm_comm_rank(c->comm);
  srlm_strbuf mine = {0};
  srlm_status st = SRLM_OK;
  sr_judge_counts jc = {0};
  for (int64_t s = me; s < c->ro.shards && st == SRLM_OK; s += R) {
    srlm_shard sh;
    st = sr_generate_shard(&c->ro, t, s, version, &sh, NULL);
    if (st != SRLM_OK) break;
    st = sr_judge_shard(&c->ro, &sh, &jc);
    void *buf = NULL;
    size_t len = 0;
    if (st == SRLM_OK) st = serialize(&sh, &buf, &len);
    if (st == SRLM_OK) {
      uint64_t n = len;
      srlm_strbuf_append(&mine, (const char *)&n, sizeof n);
      srlm_strbuf_append(&mine, buf, len);
    }
    free(buf);
    if (R == 1 && st == SRLM_OK) progress_add(c, pg, &sh);
    srlm_shard_free(&sh);
  }
  void **all = NULL;
  size_t *lens = NULL;
  if (R == 1) { /* one rank: parse its own buffer back (the same bytes every layout sees) */
    all = srlm_xmalloc(sizeof *all);
    lens = srlm_xmalloc(sizeof *lens);
    all[0] = mine.p;
    lens[0] = mine.n;
    mine.p = NULL;
  } else {
    /* every rank takes part in the exchange even after a local error, so none waits */
    srlm_status ag = srlm_comm_agree(c->comm, st);
    if (ag != SRLM_OK) {
      free(mine.p);
      return ag;
    }
    st = srlm_comm_allgather_bytes(c->comm, mine.p, mine.n, &all, &lens);
  }
  free(mine.p);
  for (int r = 0; r < R && all && st == SRLM_OK; r++) {
    size_t at = 0;
    while (at < lens[r] && st == SRLM_OK) {
      uint64_t n;
      if (lens[r] - at < sizeof n) {
        st = srlm_error(SRLM_ERR_INTERNAL, "shard exchange", "truncated buffer from rank %d", r);
        break;
      }
      memcpy(&n, (char *)all[r] + at, sizeof n);
      at += sizeof n;
      if (n > lens[r] - at) {
        st = srlm_error(SRLM_ERR_INTERNAL, "shard exchange", "truncated shard from rank %d", r);
        break;
      }
      srlm_shard sh;
      st = srlm_shard_parse((char *)all[r] + at, n, &sh);
      at += n;
      if (st != SRLM_OK) break;
      if (sh.shard_index < 0 || sh.shard_index >= c->ro.shards || out[sh.shard_index].n_prompts) {
        st = srlm_error(SRLM_ERR_INTERNAL, "shard exchange", "rank %d sent shard %lld twice or out of range", r,
                        (long long)sh.shard_index);
        srlm_shard_free(&sh);
        break;
      }
      if (R > 1) progress_add(c, pg, &sh);
      out[sh.shard_index] = sh;
    }
  }
  for (int r = 0; r < R && all; r++) free(all[r]);
  free(all);
  free(lens);
  return st;
}

/* Separate roles, generator: its shards s = g (mod G), each sent to judge s mod J. */
static srlm_status run_generator(sr_ctx *c, int t, int64_t version) {
  const int G = srlm_comm_role_size(c->comm, SRLM_ROLE_GENERATOR), g = srlm_comm_role_rank(c->comm, SRLM_ROLE_GENERATOR);
  const int J = srlm_comm_role_size(c->comm, SRLM_ROLE_JUDGE);
  srlm_timer tm;
  srlm_timer_start(&tm);
  int64_t samples = 0, tokens = 0;
  for (int64_t s = g; s < c->ro.shards; s += G) {
    srlm_shard sh;
    int64_t nt = 0;
    SRLM_TRY(sr_generate_shard(&c->ro, t, s, version, &sh, &nt));
    void *buf = NULL;
    size_t len = 0;
    srlm_status st = serialize(&sh, &buf, &len);
    samples += sh.n_responses;
    tokens += nt;
    srlm_shard_free(&sh);
    SRLM_TRY(st);
    SRLM_TRY(srlm_comm_send_async(c->comm, srlm_comm_world_rank_of(c->comm, SRLM_ROLE_JUDGE, (int)(s % J)), buf, len));
  }
  SRLM_TRY(srlm_comm_flush(c->comm));
  for (int j = 0; j < J; j++) SRLM_TRY(srlm_comm_send_end(c->comm, srlm_comm_world_rank_of(c->comm, SRLM_ROLE_JUDGE, j)));
  SRLM_INFO("iteration %d generator %d: %lld samples, %lld tokens, %.0f samples/s (%.1f s)", t, g, (long long)samples,
            (long long)tokens, samples / (srlm_timer_elapsed(&tm) + 1e-9), srlm_timer_elapsed(&tm));
  return SRLM_OK;
}

/* Separate roles, judge: shards from any generator until every generator has ended;
 * each scored shard goes to every learner. */
static srlm_status run_judge(sr_ctx *c, int t, int64_t version) {
  const int G = srlm_comm_role_size(c->comm, SRLM_ROLE_GENERATOR), L = srlm_comm_role_size(c->comm, SRLM_ROLE_LEARNER);
  srlm_timer tm;
  srlm_timer_start(&tm);
  sr_judge_counts jc = {0};
  int ended = 0;
  while (ended < G) {
    void *buf;
    size_t len;
    int from;
    bool end;
    SRLM_TRY(srlm_comm_recv(c->comm, SRLM_COMM_ANY_SOURCE, &buf, &len, &from, &end));
    if (end) {
      ended++;
      continue;
    }
    srlm_shard sh;
    srlm_status st = srlm_shard_parse(buf, len, &sh);
    free(buf);
    SRLM_TRY(st);
    bool fresh = false;
    st = srlm_shard_check_policy(&sh, version, 0, &fresh);
    if (st == SRLM_OK && !fresh) { /* shard.h's rule: dropped and counted, never judged or trained on */
      SRLM_WARN("dropped shard %lld from rank %d: sampled by policy version %lld, the judge holds %lld",
                (long long)sh.shard_index, from, (long long)sh.policy_version, (long long)version);
      jc.stale++;
      srlm_shard_free(&sh);
      continue;
    }
    if (st == SRLM_OK) st = sr_judge_shard(&c->ro, &sh, &jc);
    buf = NULL;
    if (st == SRLM_OK) st = serialize(&sh, &buf, &len);
    srlm_shard_free(&sh);
    SRLM_TRY(st);
    for (int l = 0; l < L; l++) {
      void *copy = srlm_xmalloc(len);
      memcpy(copy, buf, len);
      SRLM_TRY(srlm_comm_send_async(c->comm, srlm_comm_world_rank_of(c->comm, SRLM_ROLE_LEARNER, l), copy, len));
    }
    free(buf);
  }
  SRLM_TRY(srlm_comm_flush(c->comm));
  for (int l = 0; l < L; l++) SRLM_TRY(srlm_comm_send_end(c->comm, srlm_comm_world_rank_of(c->comm, SRLM_ROLE_LEARNER, l)));
  SRLM_INFO("iteration %d judge %d: %lld samples judged, %lld unparsable, %lld stale shards dropped, %.0f judgments/s "
            "(%.1f s)", t, srlm_comm_role_rank(c->comm, SRLM_ROLE_JUDGE), (long long)jc.responses, (long long)jc.unparsable,
            (long long)jc.stale,
            jc.judgments / (srlm_timer_elapsed(&tm) + 1e-9), srlm_timer_elapsed(&tm));
  return SRLM_OK;
}

/* Separate roles, learner: scored shards from any judge until every judge has ended.
 * A shard of another policy version is dropped and counted (shard.h). */
static srlm_status receive_scored(sr_ctx *c, int64_t version, srlm_shard *out, sr_progress *pg, int64_t *stale) {
  const int J = srlm_comm_role_size(c->comm, SRLM_ROLE_JUDGE);
  int ended = 0;
  while (ended < J) {
    void *buf;
    size_t len;
    int from;
    bool end;
    SRLM_TRY(srlm_comm_recv(c->comm, SRLM_COMM_ANY_SOURCE, &buf, &len, &from, &end));
    if (end) {
      ended++;
      continue;
    }
    srlm_shard sh;
    srlm_status st = srlm_shard_parse(buf, len, &sh);
    free(buf);
    SRLM_TRY(st);
    bool fresh = false;
    st = srlm_shard_check_policy(&sh, version, 0, &fresh);
    if (st == SRLM_OK && (sh.shard_index < 0 || sh.shard_index >= c->ro.shards || out[sh.shard_index].n_prompts))
      st = srlm_error(SRLM_ERR_INTERNAL, "learner", "rank %d sent shard %lld twice or out of range", from,
                      (long long)sh.shard_index);
    if (st != SRLM_OK || !fresh) {
      if (st == SRLM_OK) {
        (*stale)++;
        SRLM_WARN("dropped shard %lld from rank %d: policy version %lld, the learner is at %lld", (long long)sh.shard_index,
                  from, (long long)sh.policy_version, (long long)version);
      }
      srlm_shard_free(&sh);
      SRLM_TRY(st);
      continue;
    }
    progress_add(c, pg, &sh);
    out[sh.shard_index] = sh;
  }
  return SRLM_OK;
}

/* ---- the learner's iteration ------------------------------------------------------- */

/* iter_<t>/rollouts.h5: every shard (/shard_<s>), the pairs, the counts. */
static srlm_status write_rollouts(sr_ctx *c, int t, const srlm_shard *sh, const int64_t *pair_rows, int64_t np,
                                  int64_t groups, const srlm_pair_stats *ps, int64_t replay, int64_t stale) {
  char path[4200];
  snprintf(path, sizeof path, "%s/iter_%d", c->run_dir, t);
  SRLM_TRY(srlm_mkdirs(path));
  snprintf(path, sizeof path, "%s/iter_%d/rollouts.h5", c->run_dir, t);
  srlm_store *s;
  SRLM_TRY(srlm_store_create(path, SRLM_SHARD_STORE_FORMAT, SRLM_SHARD_STORE_VERSION, &s));
  srlm_status st = SRLM_OK;
  for (int64_t i = 0; i < c->ro.shards && st == SRLM_OK; i++) {
    if (!sh[i].n_prompts) continue; /* dropped */
    char g[64];
    snprintf(g, sizeof g, "/shard_%lld", (long long)i);
    st = srlm_shard_write(s, g, &sh[i]);
  }
  /* pairs: (np, 3) rows of (prompt_index, chosen sample, rejected sample) */
  if (st == SRLM_OK) st = srlm_store_group(s, "/pairs");
  if (st == SRLM_OK && np > 0)
    st = srlm_store_write_array(s, "/pairs/rows", SRLM_STORE_I64, 2, (const int64_t[]){np, 3}, pair_rows);
  const struct {
    const char *name;
    int64_t v;
  } counts[] = {{"iteration", t},
                {"shards", c->ro.shards},
                {"stale_shards_dropped", stale},
                {"pairs", np},
                {"groups", groups},
                {"prompts", ps->prompts},
                {"skipped_prompts", ps->skipped_prompts},
                {"dropped_tie", ps->dropped_tie},
                {"dropped_margin", ps->dropped_margin},
                {"dropped_equal_text", ps->dropped_equal_text},
                {"replay_examples", replay}};
  for (size_t k = 0; k < sizeof counts / sizeof counts[0] && st == SRLM_OK; k++)
    st = srlm_store_set_attr_i64(s, "/pairs", counts[k].name, counts[k].v);
  if (st == SRLM_OK) return srlm_store_commit(s);
  srlm_store_close(s);
  return st;
}

/* The model's own parsable greedy judgments (the shards' judgment texts), up to
 * judge.replay_per_verdict per verdict, in shard order. */
static srlm_status build_replay(sr_ctx *c, const srlm_shard *sh, replay_buf *rb) {
  const int64_t cap = c->cfg->judge.replay_per_verdict;
  /* the task's judgment format only: a prompt set's judge has no verdict to balance */
  if (c->ro.prompts || c->cfg->judge.source == SRLM_CFG_SOURCE_VERIFIER || cap == 0) return SRLM_OK;
  int64_t taken[2] = {0, 0};
  srlm_token_ids prompt = {0}, target = {0};
  srlm_status st = SRLM_OK;
  for (int64_t i = 0; i < c->ro.shards && st == SRLM_OK && (taken[0] < cap || taken[1] < cap); i++) {
    const srlm_shard *s = &sh[i];
    for (int64_t j = 0; j < s->n_responses && st == SRLM_OK && (taken[0] < cap || taken[1] < cap); j++) {
      const char *judgment = s->judgment_text + s->judgment_text_offsets[j * s->judgments_per_response];
      int score;
      if (!srlm_task_judgment_parse(judgment, strlen(judgment), &score)) continue;
      int v = score >= 3;
      if (taken[v] >= cap) continue;
      char *cand = NULL;
      size_t cl = 0;
      st = sr_response_text(&c->ro, s, j, &cand, &cl);
      if (st != SRLM_OK) break;
      srlm_task_puzzle p;
      sr_puzzle_of(&c->ro, s, s->response_prompt[j], &p);
      char jp[SRLM_TASK_JUDGE_PROMPT_MAX + 1];
      size_t jl = srlm_task_judge_prompt(&p, cand, cl, jp);
      free(cand);
      srlm_token_ids_clear(&prompt);
      srlm_token_ids_clear(&target);
      st = srlm_tokenizer_encode(c->ro.tok, jp, jl, &prompt);
      if (st == SRLM_OK) st = srlm_tokenizer_encode(c->ro.tok, judgment, strlen(judgment), &target);
      if (st == SRLM_OK) {
        replay_add(rb, &prompt, &target, c->ro.eos);
        taken[v]++;
      }
    }
  }
  srlm_token_ids_free(&prompt);
  srlm_token_ids_free(&target);
  return st;
}

static srlm_status learn(sr_ctx *c, int t, srlm_shard *sh, int64_t stale, srlm_sr_iteration *row) {
  const srlm_config *cfg = c->cfg;
  srlm_timer tm;
  srlm_timer_start(&tm);
  srlm_pair_options po = {.min_margin = cfg->pairs.min_margin};
  srlm_pair_stats ps = {0};
  int64_t cap = (int64_t)c->ro.n + 1, np = 0, pair_ok = 0;
  srlm_pref_pair *pairs = srlm_xmalloc((size_t)cap * sizeof *pairs);
  const int grpo = cfg->train.loss == SRLM_CFG_LOSS_GRPO;
  int64_t n_groups = 0, short_groups = 0;
  srlm_grpo_seq *gseq = grpo ? srlm_xmalloc((size_t)cap * (size_t)c->ro.K * sizeof *gseq) : NULL;
  double *grew = grpo ? srlm_xmalloc((size_t)cap * (size_t)c->ro.K * sizeof *grew) : NULL;
  int64_t *rows3 = srlm_xmalloc((size_t)cap * 3 * sizeof *rows3);
  double *scores = srlm_xmalloc((size_t)c->ro.K * sizeof *scores);
  char **texts = srlm_xcalloc((size_t)c->ro.K, sizeof *texts);
  srlm_status st = SRLM_OK;
  double score_sum = 0;
  int64_t scored = 0, samples = 0;
  for (int64_t i = 0; i < c->ro.shards && st == SRLM_OK; i++) {
    const srlm_shard *s = &sh[i];
    samples += s->n_responses;
    for (int64_t pr = 0, j0 = 0; pr < s->n_prompts && st == SRLM_OK; pr++) {
      int64_t j1 = j0;
      while (j1 < s->n_responses && s->response_prompt[j1] == pr) j1++;
      int k = (int)(j1 - j0);
      if (k > c->ro.K) {
        st = srlm_error(SRLM_ERR_INTERNAL, "learner", "shard %lld prompt %lld has %d samples, more than K", (long long)i,
                        (long long)pr, k);
        break;
      }
      for (int q = 0; q < k && st == SRLM_OK; q++) {
        size_t len;
        scores[q] = s->flags[j0 + q] & SRLM_SHARD_F_SCORED ? (double)s->mean_score[j0 + q] : NAN;
        if (isfinite(scores[q])) {
          score_sum += scores[q];
          scored++;
        }
        st = sr_response_text(&c->ro, s, j0 + q, &texts[q], &len);
      }
      if (grpo && k == c->ro.K) { /* a group needs all K samples (a dropped shard has none) */
        for (int q = 0; q < k; q++) {
          int64_t a = j0 + q;
          gseq[n_groups * k + q] = (srlm_grpo_seq){s->prompt_ids + s->prompt_offsets[pr],
                                                   s->response_ids + s->response_offsets[a],
                                                   s->logprobs + s->response_offsets[a],
                                                   s->prompt_offsets[pr + 1] - s->prompt_offsets[pr],
                                                   s->response_offsets[a + 1] - s->response_offsets[a]};
          grew[n_groups * k + q] = scores[q];
        }
        n_groups++;
      } else if (grpo) {
        short_groups++;
      }
      srlm_pair p;
      int made = 0;
      if (st == SRLM_OK && !grpo)
        st = srlm_pairs_select(&po, k, scores, (const char *const *)texts, NULL, NULL, &p, &made, &ps);
      if (st == SRLM_OK && made) {
        int64_t a = j0 + p.chosen, b = j0 + p.rejected;
        pairs[np] = (srlm_pref_pair){s->prompt_ids + s->prompt_offsets[pr], s->response_ids + s->response_offsets[a],
                                     s->response_ids + s->response_offsets[b],
                                     s->prompt_offsets[pr + 1] - s->prompt_offsets[pr],
                                     s->response_offsets[a + 1] - s->response_offsets[a],
                                     s->response_offsets[b + 1] - s->response_offsets[b]};
        rows3[3 * np] = s->prompt_index[pr];
        rows3[3 * np + 1] = s->sample_index[a];
        rows3[3 * np + 2] = s->sample_index[b];
        np++;
        /* reported only: how often the judge's pair is right by the checker */
        if (!c->ro.prompts) {
          srlm_task_puzzle pz;
          sr_puzzle_of(&c->ro, s, pr, &pz);
          pair_ok += srlm_task_check(&pz, texts[p.chosen], strlen(texts[p.chosen])) &&
                     !srlm_task_check(&pz, texts[p.rejected], strlen(texts[p.rejected]));
        }
      }
      for (int q = 0; q < k; q++) {
        free(texts[q]);
        texts[q] = NULL;
      }
      j0 = j1;
    }
  }
  free(texts);
  free(scores);
  replay_buf rb = {0};
  if (st == SRLM_OK && !grpo) st = build_replay(c, sh, &rb); /* the GRPO trainer has no replay term */
  row->samples = samples;
  row->mean_score = scored ? score_sum / (double)scored : NAN;
  row->pairs = np;
  row->replay = rb.d.n;
  row->pair_accuracy = np && !c->ro.prompts ? (double)pair_ok / (double)np : NAN;
  if (st == SRLM_OK && c->lead && grpo) {
    SRLM_INFO("iteration %d groups: %lld groups of %d samples (%lld prompts short of samples); mean score %.2f", t,
              (long long)n_groups, c->ro.K, (long long)short_groups, row->mean_score);
    st = write_rollouts(c, t, sh, rows3, 0, n_groups, &ps, 0, stale);
  } else if (st == SRLM_OK && c->lead) {
    SRLM_INFO("iteration %d pairs: %lld pairs from %lld prompts (%lld skipped with < 2 scores, %lld ties, %lld below "
              "min_margin, %lld equal texts); %lld replayed judgments; mean score %.2f",
              t, (long long)np, (long long)ps.prompts, (long long)ps.skipped_prompts, (long long)ps.dropped_tie,
              (long long)ps.dropped_margin, (long long)ps.dropped_equal_text, (long long)rb.d.n, row->mean_score);
    st = write_rollouts(c, t, sh, rows3, np, 0, &ps, rb.d.n, stale);
  }
  double *ref = srlm_xmalloc((size_t)(2 * np + 1) * sizeof *ref);
  learn_log ll = {.metrics = c->lead ? c->metrics : NULL, .iteration = t, .log_every = cfg->train.log_every,
                  .every = cfg->train.checkpoint_every, .m = c->ro.m, .run_dir = c->run_dir, .yaml = c->yaml,
                  .data_position = (int64_t)t * c->ro.n, .beta = cfg->train.beta,
                  .has_ref = cfg->train.loss != SRLM_CFG_LOSS_SFT};
  const srlm_checkpoint *ck = c->ck && c->ck->iteration == t ? c->ck : NULL;
  if (ck) ll.first_loss = ck->first_loss;
  if (st == SRLM_OK && grpo) {
    srlm_group_stats gs = {0};
    row->pairs = n_groups;
    if (c->lead && short_groups)
      SRLM_WARN("iteration %d: %lld prompts without all %d samples are not GRPO groups", t, (long long)short_groups,
                c->ro.K);
    if (n_groups > 0)
      st = learn_grpo(cfg, c->ro.m, c->comm, t, &ll, ck, gseq, n_groups, c->ro.K, grew, &gs, row);
  } else if (st == SRLM_OK && np > 0) {
    st = srlm_pref_ref_logps(c->ro.m, pairs, np, 16384, ref, ref + np);
    static const srlm_pref_loss k_kinds[] = {[SRLM_CFG_LOSS_DPO] = SRLM_PREF_DPO, [SRLM_CFG_LOSS_IPO] = SRLM_PREF_IPO,
                                             [SRLM_CFG_LOSS_SFT] = SRLM_PREF_SFT, [SRLM_CFG_LOSS_GRPO] = SRLM_PREF_DPO};
    srlm_dp dp = {.rank = srlm_comm_role_rank(c->comm, SRLM_ROLE_LEARNER),
                  .size = srlm_comm_role_size(c->comm, SRLM_ROLE_LEARNER), .reduce = dp_reduce, .ctx = c->comm};
    srlm_pref_train_options o = {
        .loss = {.kind = k_kinds[cfg->train.loss], .beta = cfg->train.beta,
                 .label_smoothing = cfg->train.label_smoothing, .nll_weight = cfg->train.nll_weight},
        .batch_pairs = cfg->train.batch_size,
        .grad_accum = cfg->train.grad_accum,
        .dp = &dp,
        .epochs = cfg->train.epochs,
        .seed = (uint64_t)cfg->run.seed + (uint64_t)t,
        .replay = rb.d.n ? &rb.d : NULL,
        .replay_batch = cfg->train.replay_batch,
        .replay_weight = cfg->train.replay_weight};
    srlm_optim_config_from_config(cfg, &o.optim);
    srlm_lr_schedule_from_config(cfg, 1, &o.schedule);
    o.on_step = on_pref_step;
    o.user = &ll;
    srlm_train_resume rs;
    if (st == SRLM_OK && ck) st = resume_weights(c->ro.m, ck, &rs);
    o.resume = ck ? &rs : NULL;
    srlm_pref_summary sum;
    if (st == SRLM_OK) st = srlm_pref_train(c->ro.m, pairs, np, ref, ref + np, &o, &sum);
    if (st == SRLM_OK) {
      row->loss_first = ck ? ck->first_loss : sum.first_loss;
      row->loss_last = sum.last_loss;
      if (c->lead)
        SRLM_INFO("iteration %d learn: %lld steps (%lld skipped), loss %.4f -> %.4f, %.0f tokens/s (%.1f s)", t,
                  (long long)sum.steps, (long long)sum.skipped, sum.first_loss, sum.last_loss,
                  sum.seconds > 0 ? (double)sum.tokens / sum.seconds : 0, srlm_timer_elapsed(&tm));
    }
  } else if (st == SRLM_OK && ck) {
    st = srlm_error(SRLM_ERR_FORMAT, SRLM_CKPT_FILE, "a learning checkpoint of iteration %d, whose rollouts give no "
                    "pairs", t);
  } else if (st == SRLM_OK && c->lead) {
    SRLM_WARN("iteration %d: no pairs: the model is left as it was", t);
  }
  free(ref);
  replay_free(&rb);
  free(gseq);
  free(grew);
  free(pairs);
  free(rows3);
  return st;
}

static srlm_status save_model(sr_ctx *c, int t) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/iter_%d/model", c->run_dir, t);
  SRLM_TRY(srlm_mkdirs(dir));
  SRLM_TRY(srlm_model_save(c->ro.m, dir, SRLM_ST_F32));
  return srlm_setup_copy_tokenizer_files(c->tok_dir, dir);
}

/* A prompt set's evaluation (data.eval_prompts): one greedy answer per eval prompt (the
 * first eval.prompts, 0 = all), judged by the model's text judge; reports the mean judged
 * score. There is no checker: it tracks the model's own opinion of its answers. */
static srlm_status evaluate_prompts(sr_ctx *c, int t, srlm_sr_iteration *row) {
  const srlm_prompt_set *ep = c->eval;
  row->eval_score = NAN;
  if (!ep || !c->ro.llm) return SRLM_OK;
  srlm_timer tm;
  srlm_timer_start(&tm);
  const int64_t n = c->cfg->eval.prompts > 0 && c->cfg->eval.prompts < ep->n ? c->cfg->eval.prompts : ep->n;
  const int J = c->cfg->judge.samples;
  srlm_gen_request *req = srlm_xcalloc((size_t)n + 1, sizeof *req);
  srlm_gen_result *res = srlm_xcalloc((size_t)n + 1, sizeof *res);
  uint64_t *keys = srlm_xmalloc((size_t)(n + 1) * sizeof *keys);
  for (int64_t i = 0; i < n; i++) {
    keys[i] = ((uint64_t)SRLM_SR_RNG_EVAL << 48) | ((uint64_t)t << 32) | (uint64_t)i;
    req[i] = (srlm_gen_request){ep->ids + ep->offsets[i], ep->offsets[i + 1] - ep->offsets[i], keys[i]};
  }
  srlm_generate_params gp = srlm_generate_params_default();
  gp.sampler.temperature = 0.0f;
  gp.sampler.seed = (uint64_t)c->cfg->run.seed;
  gp.max_new_tokens = c->cfg->generate.max_new_tokens;
  gp.max_batch = SR_MAX_BATCH;
  gp.eos_ids = c->ro.stops;
  gp.n_eos = c->ro.n_stops;
  gp.tok = c->ro.tok;
  srlm_status st = n > 0 ? srlm_generate(c->ro.m, &gp, (int)n, req, res, NULL) : SRLM_OK;
  const char **instr = srlm_xcalloc((size_t)n + 1, sizeof *instr), **resp = srlm_xcalloc((size_t)n + 1, sizeof *resp);
  for (int64_t i = 0; i < n; i++) {
    instr[i] = ep->instruction[i];
    resp[i] = res[i].text ? res[i].text : "";
  }
  srlm_llm_judgment *out = srlm_xcalloc((size_t)(n * J + 1), sizeof *out);
  double *mean = srlm_xmalloc((size_t)(n + 1) * sizeof *mean);
  srlm_judge_stats js = {0};
  if (st == SRLM_OK && n > 0) st = srlm_llm_judge_run(c->ro.llm, c->ro.m, (int)n, instr, resp, keys, J, out, mean, &js);
  if (st == SRLM_OK) {
    double sum = 0;
    int64_t scored = 0;
    for (int64_t i = 0; i < n; i++)
      if (isfinite(mean[i])) {
        sum += mean[i];
        scored++;
      }
    row->eval_score = scored ? sum / (double)scored : NAN;
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("eval"));
    json_object_set_new(o, "iteration", json_integer(t));
    json_object_set_new(o, "accuracy", json_null()); /* no checker for a prompt set */
    json_object_set_new(o, "judge_agreement", json_null());
    json_object_set_new(o, "mean_score", num(row->eval_score));
    json_object_set_new(o, "scored", json_integer(scored));
    json_object_set_new(o, "unparsable_judgments", json_integer(js.unparsable));
    json_object_set_new(o, "prompts", json_integer(n));
    json_object_set_new(o, "seconds", json_real(srlm_timer_elapsed(&tm)));
    st = metrics_line(c->metrics, o);
    SRLM_INFO("eval M%d: mean self-judged score %.3f of the greedy answers to %lld eval prompts (%lld scored, %lld "
              "unparsable judgments) (%.1f s)", t, row->eval_score, (long long)n, (long long)scored,
              (long long)js.unparsable, srlm_timer_elapsed(&tm));
  }
  srlm_llm_judgments_free(out, st == SRLM_OK ? n * J : 0);
  free(out);
  free(mean);
  for (int64_t i = 0; i < n; i++) srlm_gen_result_free(&res[i]);
  free(res);
  free(req);
  free(keys);
  free(instr);
  free(resp);
  return st;
}

/* Evaluation of M_t when eval.every asks (every N iterations and the last; 0 = never). */
static srlm_status evaluate_model(sr_ctx *c, int t, srlm_sr_iteration *row) {
  const int every = c->cfg->eval.every;
  row->accuracy = row->sample_accuracy = row->judge_agreement = row->eval_score = NAN;
  if (every <= 0 || (t % every != 0 && t != c->cfg->run.iterations)) return SRLM_OK;
  if (c->ro.prompts) return evaluate_prompts(c, t, row);
  return evaluate(c->cfg, c->ro.m, c->ro.tok, t, c->ro.eos, row, c->metrics);
}

/* The lead learner's report after iteration t's model is saved: eval + metrics. */
static srlm_status finish_iteration(sr_ctx *c, int t, srlm_timer *iter_tm) {
  const srlm_config *cfg = c->cfg;
  srlm_sr_iteration *row = &c->rows[t];
  SRLM_TRY(evaluate_model(c, t, row));
  row->seconds = srlm_timer_elapsed(iter_tm);
  double done = 0;
  for (int u = 1; u <= t; u++) done += c->rows[u].seconds;
  int left = cfg->run.iterations - t;
  SRLM_INFO("iteration %d/%d done in %.1f s%s; ETA %.0f s", t, cfg->run.iterations, row->seconds, left ? "" : " (last)",
            left * done / t);
  json_t *o = json_object();
  json_object_set_new(o, "event", json_string("iteration"));
  json_object_set_new(o, "iteration", json_integer(t));
  json_object_set_new(o, "samples", json_integer(row->samples));
  json_object_set_new(o, "mean_score", num(row->mean_score));
  json_object_set_new(o, "pairs", json_integer(row->pairs));
  json_object_set_new(o, "pair_accuracy_by_checker", num(row->pair_accuracy));
  json_object_set_new(o, "replay", json_integer(row->replay));
  json_object_set_new(o, "loss_first", num(row->loss_first));
  json_object_set_new(o, "loss_last", num(row->loss_last));
  json_object_set_new(o, "seconds", json_real(row->seconds));
  SRLM_TRY(metrics_line(c->metrics, o));
  /* M_t is saved, evaluated and reported: iterations 1..t are done */
  long bytes = ftell(c->metrics);
  if (bytes < 0) return srlm_error(SRLM_ERR_IO, "metrics.jsonl", "cannot tell its length");
  srlm_checkpoint ck = {.kind = SRLM_CKPT_ITERATION, .iteration = t, .data_position = (int64_t)t * c->ro.n,
                        .metrics_bytes = bytes, .config_yaml = c->yaml};
  return srlm_checkpoint_save(c->run_dir, &ck);
}

/* The table rows of iterations before a resume point, from metrics.jsonl. */
static void rows_from_metrics(const char *path, srlm_sr_iteration *rows, int last) {
  FILE *f = fopen(path, "r");
  if (!f) return;
  char line[8192];
  while (fgets(line, sizeof line, f)) {
    json_t *o = json_loads(line, 0, NULL);
    const char *ev = json_string_value(json_object_get(o, "event"));
    int t = (int)json_integer_value(json_object_get(o, "iteration"));
    if (ev && t >= 0 && t <= last) {
      srlm_sr_iteration *r = &rows[t];
      r->iteration = t;
      if (!strcmp(ev, "eval")) {
        r->accuracy = json_number_value(json_object_get(o, "accuracy"));
        r->sample_accuracy = json_number_value(json_object_get(o, "sample_accuracy"));
        r->judge_agreement = json_number_value(json_object_get(o, "judge_agreement"));
        json_t *ms = json_object_get(o, "mean_score");
        r->eval_score = json_is_number(ms) ? json_number_value(ms) : NAN;
        if (t == 0) r->seconds = json_number_value(json_object_get(o, "seconds"));
      } else if (!strcmp(ev, "iteration")) {
        r->samples = json_integer_value(json_object_get(o, "samples"));
        r->mean_score = json_number_value(json_object_get(o, "mean_score"));
        r->pairs = json_integer_value(json_object_get(o, "pairs"));
        json_t *pa = json_object_get(o, "pair_accuracy_by_checker");
        r->pair_accuracy = json_is_number(pa) ? json_number_value(pa) : NAN;
        r->replay = json_integer_value(json_object_get(o, "replay"));
        r->loss_first = json_number_value(json_object_get(o, "loss_first"));
        r->loss_last = json_number_value(json_object_get(o, "loss_last"));
        r->seconds = json_number_value(json_object_get(o, "seconds"));
      }
    }
    json_decref(o);
  }
  fclose(f);
}

/* A LEARN resume: iteration t's scored shards from its rollouts.h5. */
static srlm_status read_rollouts(sr_ctx *c, int t, srlm_shard *out, int64_t *stale) {
  char path[4200];
  snprintf(path, sizeof path, "%s/iter_%d/rollouts.h5", c->run_dir, t);
  srlm_store *s;
  SRLM_TRY(srlm_store_open(path, SRLM_SHARD_STORE_FORMAT, SRLM_SHARD_STORE_VERSION, &s));
  int64_t n = 0;
  char **names = NULL;
  srlm_status st = srlm_store_list(s, "/", &n, &names);
  for (int64_t i = 0; i < n && st == SRLM_OK; i++) {
    if (strncmp(names[i], "shard_", 6)) continue;
    char g[300];
    snprintf(g, sizeof g, "/%s", names[i]);
    srlm_shard sh;
    st = srlm_shard_read(s, g, &sh);
    if (st != SRLM_OK) break;
    if (sh.shard_index < 0 || sh.shard_index >= c->ro.shards || out[sh.shard_index].n_prompts || sh.iteration != t) {
      st = srlm_error(SRLM_ERR_FORMAT, path, "%s: shard %lld of iteration %lld does not belong here", names[i],
                      (long long)sh.shard_index, (long long)sh.iteration);
      srlm_shard_free(&sh);
      break;
    }
    out[sh.shard_index] = sh;
  }
  if (st == SRLM_OK) st = srlm_store_get_attr_i64(s, "/pairs", "stale_shards_dropped", stale);
  srlm_store_strings_free(names, n);
  srlm_store_close(s);
  return st;
}

/* Where this run starts: *start_t, and for a LEARN resume the checkpoint (ck). The lead
 * decides; every rank learns it by broadcast; learners read a LEARN checkpoint's state. */
static srlm_status resume_point(sr_ctx *c, const srlm_sr_inputs *in, srlm_checkpoint *ck, int *start_t) {
  int64_t head[3] = {0, 0, 0}; /* found, kind, iteration */
  int found = 0;
  srlm_status st = SRLM_OK;
  *start_t = 1;
  if (in->resume && c->lead) {
    st = srlm_checkpoint_load(c->run_dir, ck, &found);
    if (st == SRLM_OK && found) st = srlm_checkpoint_check_config(ck, c->yaml, c->run_dir);
    if (st == SRLM_OK && found && ck->iteration > c->cfg->run.iterations)
      st = srlm_error(SRLM_ERR_CONFIG, "run.iterations", "%d, but the checkpoint is at iteration %lld",
                      c->cfg->run.iterations, (long long)ck->iteration);
    head[0] = found;
    head[1] = ck->kind;
    head[2] = ck->iteration;
  }
  if (srlm_comm_size(c->comm) > 1) {
    st = srlm_comm_agree(c->comm, st);
    if (st == SRLM_OK) st = srlm_comm_bcast_i64(c->comm, head, 3);
  }
  SRLM_TRY(st);
  if (!head[0]) {
    if (in->resume && c->lead) SRLM_INFO("--resume: no checkpoint in %s yet: starting from the beginning", c->run_dir);
    return SRLM_OK;
  }
  const int t = (int)head[2];
  const bool learner = srlm_comm_has_role(c->comm, SRLM_ROLE_LEARNER);
  c->resumed = true;
  c->resume_learn = head[1] == SRLM_CKPT_LEARN;
  if (c->lead) c->resume_metrics_bytes = ck->metrics_bytes;
  if (head[1] == SRLM_CKPT_LEARN) {
    if (learner && !c->lead) { /* the run folder is shared by the learners (checkpoint.h) */
      st = srlm_checkpoint_load(c->run_dir, ck, &found);
      if (st == SRLM_OK && (!found || ck->kind != SRLM_CKPT_LEARN || ck->iteration != t))
        st = srlm_error(SRLM_ERR_IO, c->run_dir, "the learner's view of %s differs from the lead's (a run folder "
                        "that is not shared?)", SRLM_CKPT_FILE);
      SRLM_TRY(st);
    }
    c->ck = learner ? ck : NULL;
    *start_t = t;
  } else {
    *start_t = t + 1;
  }
  /* learners start from M_{start-1}: iter_<start-1>/model (M0 is what they hold) */
  if (learner && *start_t > 1) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/iter_%d/model", c->run_dir, *start_t - 1);
    srlm_model *prev;
    SRLM_TRY(srlm_model_load(dir, srlm_backend_cpu(), &prev));
    int64_t n = (int64_t)srlm_model_param_count(srlm_model_get_config(prev));
    if (n == c->n_params) memcpy(srlm_model_params(c->ro.m), srlm_model_params(prev), (size_t)n * sizeof(float));
    srlm_model_free(prev);
    if (n != c->n_params)
      return srlm_error(SRLM_ERR_FORMAT, dir, "holds %lld parameters, the run's model %lld", (long long)n,
                        (long long)c->n_params);
  }
  if (c->lead)
    SRLM_INFO("resuming %s from its checkpoint: %s; iteration %d starts%s", c->run_dir,
              head[1] == SRLM_CKPT_LEARN ? "inside an iteration's learning" : "after a complete iteration", *start_t,
              c->ck ? " from its stored rollouts and optimizer state" : "");
  return SRLM_OK;
}

/* The iterations from `start` on (after resume_point). */
static srlm_status run_from(sr_ctx *c, int start, bool colocated, bool learner) {
  const srlm_config *cfg = c->cfg;
  srlm_comm *comm = c->comm;
  srlm_model *m = c->ro.m;
  srlm_sr_iteration *rows = c->rows;
  /* generators and judges of a LEARN resume skip that iteration's rollouts */
  const bool in_learn_resume = c->resume_learn;
  if (c->lead) {
    char path[4200];
    SRLM_TRY(srlm_path_join(path, sizeof path, c->run_dir, "metrics.jsonl"));
    if (c->resumed) {
      /* cut what was written after the checkpoint: nothing is reported twice */
      if (truncate(path, (off_t)c->resume_metrics_bytes) != 0)
        return srlm_error(SRLM_ERR_IO, path, "cannot cut back to %lld bytes for the resume",
                          (long long)c->resume_metrics_bytes);
      rows_from_metrics(path, rows, start - 1);
    }
    c->metrics = fopen(path, c->resumed ? "a" : "w");
    if (!c->metrics) return srlm_error(SRLM_ERR_IO, path, "cannot open for writing");
  }
  srlm_timer tm;
  srlm_timer_start(&tm);
  if (c->lead && !c->resumed) {
    SRLM_TRY(evaluate_model(c, 0, &rows[0]));
    rows[0].seconds = srlm_timer_elapsed(&tm);
  }
  int pending_eval = 0; /* separate roles: M_t is evaluated while generators start t + 1 */
  srlm_timer iter_tm;
  for (int t = start; t <= cfg->run.iterations; t++) {
    const int64_t version = t - 1; /* M_{t-1} samples iteration t */
    int64_t got = version;
    if (!colocated) SRLM_TRY(srlm_comm_bcast_weights(comm, srlm_model_params(m), c->n_params, &got, 0));
    if (pending_eval) {
      SRLM_TRY(finish_iteration(c, pending_eval, &iter_tm));
      pending_eval = 0;
    }
    srlm_timer_start(&iter_tm);
    sr_progress pg = {.t = t};
    srlm_timer_start(&pg.tm);
    srlm_shard *sh = learner ? srlm_xcalloc((size_t)c->ro.shards, sizeof *sh) : NULL;
    int64_t stale = 0;
    srlm_status st = SRLM_OK;
    if (c->ck && c->ck->iteration == t)
      st = read_rollouts(c, t, sh, &stale); /* a LEARN resume: the rollouts are on disk */
    else if (c->ck == NULL && in_learn_resume && t == start)
      st = SRLM_OK; /* generators and judges: that iteration's rollouts are done */
    else if (colocated)
      st = rollouts_colocated(c, t, version, sh, &pg);
    else if (srlm_comm_has_role(comm, SRLM_ROLE_GENERATOR))
      st = run_generator(c, t, version);
    else if (srlm_comm_has_role(comm, SRLM_ROLE_JUDGE))
      st = run_judge(c, t, version);
    else
      st = receive_scored(c, version, sh, &pg, &stale);
    if (st == SRLM_OK && learner) st = learn(c, t, sh, stale, &rows[t]);
    for (int64_t i = 0; sh && i < c->ro.shards; i++) srlm_shard_free(&sh[i]);
    free(sh);
    SRLM_TRY(st);
    if (c->lead) {
      rows[t].iteration = t;
      SRLM_TRY(save_model(c, t));
      if (colocated || t == c->cfg->run.iterations)
        SRLM_TRY(finish_iteration(c, t, &iter_tm));
      else
        pending_eval = t;
    }
  }
  return SRLM_OK;
}

srlm_status srlm_selfreward_run(const srlm_sr_inputs *in, srlm_sr_iteration *rows) {
  const srlm_config *cfg = in->cfg;
  srlm_comm *comm = in->comm;
  srlm_model *m = in->m;
  srlm_tokenizer *tok = in->tok;
  const bool task = cfg->task.name != SRLM_CFG_TASK_NONE;
  if (!task && (!in->prompts || !in->llm))
    return srlm_error(SRLM_ERR_CONFIG, "data.prompts", "task.name is none: the iterations need a prompt set (data.prompts)");
  if (!task && cfg->judge.mode == SRLM_CFG_JUDGE_EXPECTED)
    return srlm_error(SRLM_ERR_CONFIG, "judge.mode", "expected needs a built-in task's judge format (its score "
                      "tokens); a prompt set's judgments are parsed with judge.score_regex (judge.mode: regex)");
  if (!task && cfg->judge.source != SRLM_CFG_SOURCE_MODEL)
    return srlm_error(SRLM_ERR_CONFIG, "judge.source", "%s needs a built-in task with a checker (task.name); a prompt "
                      "set is judged by the model", cfg->judge.source == SRLM_CFG_SOURCE_VERIFIER ? "verifier" : "mix");
  sr_ctx c = {.cfg = cfg, .comm = comm, .run_dir = in->run_dir, .tok_dir = in->tok_dir, .rows = rows,
              .lead = srlm_comm_rank(comm) == 0, .eval = task ? NULL : in->eval_prompts};
  c.ro = (sr_rollout){.cfg = cfg, .m = m, .tok = tok, .prompts = task ? NULL : in->prompts, .llm = in->llm,
                      .K = cfg->generate.samples_per_prompt};
  if (task) {
    c.ro.n = cfg->task.prompts_per_iteration;
    SRLM_TRY(srlm_tokenizer_token_id(tok, SRLM_TASK_EOS_TEXT, strlen(SRLM_TASK_EOS_TEXT), &c.ro.eos));
    c.ro.stops[0] = c.ro.eos;
    c.ro.n_stops = 1;
  } else {
    int64_t per = cfg->data.prompts_per_iteration;
    c.ro.n = (int)(per > 0 ? per : in->prompts->n);
    c.ro.eos = -1;
    c.ro.n_stops = srlm_llm_judge_stop_ids(in->llm, m, c.ro.stops);
    if (c.ro.n_stops == 0)
      return srlm_error(SRLM_ERR_CONFIG, "tokenizer", "no end-of-sequence id (tokenizer_config.json eos_token, the chat "
                        "format's end of turn or config.json eos_token_id): generation could not stop");
  }
  c.ro.shards = (c.ro.n + cfg->roles.shard_prompts - 1) / cfg->roles.shard_prompts;
  c.n_params = (int64_t)srlm_model_param_count(srlm_model_get_config(m));
  const bool colocated = srlm_comm_colocated(comm);
  const bool learner = srlm_comm_has_role(comm, SRLM_ROLE_LEARNER);
  memset(rows, 0, (size_t)(cfg->run.iterations + 1) * sizeof *rows);
  for (int t = 0; t <= cfg->run.iterations; t++) /* NaN: not evaluated (eval.every) or no checker */
    rows[t].accuracy = rows[t].sample_accuracy = rows[t].judge_agreement = rows[t].eval_score =
        rows[t].pair_accuracy = rows[t].mean_score = NAN;
  c.yaml = srlm_config_to_yaml(cfg, 0);
  srlm_checkpoint ck = {0};
  int start = 1;
  srlm_status st = resume_point(&c, in, &ck, &start);
  if (st == SRLM_OK) st = run_from(&c, start, colocated, learner);
  if (c.metrics) fclose(c.metrics);
  srlm_checkpoint_free(&ck);
  free(c.yaml);
  return st;
}
