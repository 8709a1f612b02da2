/* The learner's part of a self-rewarding iteration (sr_learn): pairs or GRPO groups from
 * the scored shards, the judge replay, iter_<t>/rollouts.h5, and training on them with
 * the learners' data-parallel reduction; the lead learner logs each step to
 * metrics.jsonl and writes LEARN checkpoints. Conventions in include/srlm/selfreward.h. */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consist.h"
#include "sr_internal.h"
#include "srlm/memplan.h"
#include "srlm/shard_store.h"
#include "srlm/checkpoint.h"
#include "srlm/comm.h"
#include "srlm/engine.h"
#include "srlm/grpo.h"
#include "srlm/pairs.h"
#include "srlm/pref.h"
#include "srlm/selfreward.h"
#include "srlm/tasks.h"

/* Growing NLL examples (the judge replay) in srlm_sft_data layout. */
typedef struct replay_buf {
  srlm_sft_data d;
  int64_t cap_ex, cap_tok;
} replay_buf;

/* The kill-and-resume tests' hook: with SRLM_STOP_AT_CHECKPOINT=ITER (or ITER:STEP, or
 * any) in the environment, the rank that wrote a matching learning checkpoint stops itself
 * (SIGSTOP) right after its "checkpoint after step" line, so a test that waits for that
 * line kills a run that cannot have moved on (SIGCONT lets it go on). Unset: nothing. */
static void stop_at_checkpoint(int iteration, int64_t step) {
  const char *e = getenv("SRLM_STOP_AT_CHECKPOINT");
  if (!e || !*e) return;
  long it = -1;
  long long st = -1;
  if (strcmp(e, "any") != 0 && sscanf(e, "%ld:%lld", &it, &st) < 1) return;
  if ((it >= 0 && it != iteration) || (st >= 0 && st != step)) return;
  raise(SIGSTOP);
}

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

typedef struct learn_log {
  FILE *metrics; /* the lead's; NULL on other learners (they only train) */
  sr_ctx *ctx;   /* where sr_metrics_line writes; the stop votes after each step (sr_stop_vote) */
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
  sr_ctx *c;         /* for the EMA anchor of LEARN checkpoints */
} learn_log;

srlm_status sr_anchor_host(sr_ctx *c, float **out) {
  *out = NULL;
  if (!c->anchor) return SRLM_OK;
  float *a = srlm_xmalloc((size_t)c->n_params * sizeof *a + 1);
  srlm_status st = SRLM_OK;
  if (c->anchor_host) /* a ZeRO-1 anchor's master, gathered at the end of the iteration's learning */
    memcpy(a, c->anchor_host, (size_t)c->n_params * sizeof *a);
  else
    st = srlm_model_get_params(c->anchor, a, 0, (size_t)c->n_params);
  if (st != SRLM_OK) {
    free(a);
    return st;
  }
  *out = a;
  return SRLM_OK;
}

srlm_status sr_master_host(sr_ctx *c, srlm_model *m, float **out) {
  *out = NULL;
  const size_t n = srlm_model_num_params(m);
  size_t lo, hi;
  const int sharded = srlm_model_master_range(m, &lo, &hi);
  if (!sharded && !c->lead) return SRLM_OK; /* nothing to send, nothing kept: NULL */
  /* a non-lead learner writes only its range of h (the rest stays untouched pages) */
  float *h = srlm_xmalloc(n * sizeof *h + 1);
  srlm_status st;
  if (!sharded) {
    st = srlm_model_get_params(m, h, 0, n);
  } else { /* this learner's shard, then the others' to the lead: every learner joins, whatever its own copy did */
    st = hi > lo ? srlm_model_get_params(m, h + lo, lo, hi - lo) : SRLM_OK;
    srlm_status gst = srlm_comm_gather_ranges_host(c->comm, h, (int64_t)n, (int64_t)lo, (int64_t)hi, 0);
    if (st == SRLM_OK) st = gst;
  }
  if (!c->lead) { /* its range went to the lead; it keeps nothing */
    free(h);
    return st;
  }
  if (st != SRLM_OK) {
    free(h);
    return st;
  }
  *out = h;
  return SRLM_OK;
}

/* |theta - theta_ema| / |theta| of the fp32 masters w and a (n each, host), summed in double in order. */
static double anchor_distance(const float *w, const float *a, size_t n) {
  double d2 = 0, w2 = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = (double)w[i] - a[i];
    d2 += d * d;
    w2 += (double)w[i] * w[i];
  }
  return w2 > 0 ? sqrt(d2 / w2) : 0;
}

/* The stop vote after `step` of `total` (every learner, and with separate roles every
 * generator and judge in wait_learners); none after the last step: the iteration then
 * ends and the next one's vote decides. */
static srlm_status step_stop_vote(learn_log *l, int64_t step, int64_t total, int *sig) {
  *sig = 0;
  if (step >= total) return SRLM_OK;
  return sr_stop_vote(l->ctx, 0, sig, NULL);
}

static srlm_status step_stopped(learn_log *l, int sig, int64_t step, int64_t total) {
  char where[96];
  snprintf(where, sizeof where, "in iteration %d after step %lld/%lld", l->iteration, (long long)step, (long long)total);
  return sr_stopped(l->ctx, sig, where);
}

/* A LEARN checkpoint after `step` of the iteration (checkpoint.h), written by the lead,
 * every `every` steps or when the learners agreed to stop (force: the same on all).
 * With ZeRO-1 every learner calls this at every step: the moments are gathered from all. */
static srlm_status learn_checkpoint(learn_log *l, int64_t step, int64_t total, double loss, srlm_optim *optim,
                                    int64_t replay_next, int force) {
  if (step == 1) l->first_loss = loss;
  if (step >= total) return SRLM_OK;
  if (!force && (l->every <= 0 || step % l->every != 0)) return SRLM_OK;
  const bool sharded = srlm_optim_shard_bounds(optim) != NULL;
  if (!l->metrics && !sharded) return SRLM_OK;
  srlm_optim_state os;
  srlm_optim_get_state(optim, &os);
  const size_t n = srlm_model_num_params(l->m);
  /* host copies of the moments and the fp32 masters (backend memory); the collectives first, on every learner of a
     ZeRO-1 run: the moments, and a bf16 model's master (and the anchor's), of which each learner holds its shard */
  float *host = srlm_xmalloc(2 * (n ? n : 1) * sizeof *host), *w = NULL, *anchor = NULL;
  srlm_status st = srlm_optim_read_moments(optim, host, host + n);
  if (st == SRLM_OK) st = sr_master_host(l->c, l->m, &w);
  if (st == SRLM_OK && l->c->anchor) st = sr_master_host(l->c, l->c->anchor, &anchor);
  if (!l->metrics) {
    free(host);
    free(w);
    free(anchor);
    return st;
  }
  long bytes = ftell(l->metrics);
  if (st == SRLM_OK && bytes < 0) st = srlm_error(SRLM_ERR_IO, "metrics.jsonl", "cannot tell its length");
  srlm_checkpoint ck = {.kind = SRLM_CKPT_LEARN, .n_anchor = anchor ? (int64_t)n : 0, .anchor = anchor, .iteration = l->iteration, .step = step,
                        .data_position = l->data_position, .metrics_bytes = bytes, .config_yaml = (char *)l->yaml,
                        .n_params = (int64_t)n, .params = w, .m = host, .v = host + n,
                        .optim_step = os.step, .optim_skipped = os.n_skipped, .replay_next = replay_next,
                        .first_loss = l->first_loss};
  if (st == SRLM_OK) st = srlm_checkpoint_save(l->run_dir, &ck);
  free(anchor);
  free(w);
  free(host);
  SRLM_TRY(st);
  SRLM_INFO("iteration %d learn: checkpoint after step %lld/%lld", l->iteration, (long long)step, (long long)total);
  stop_at_checkpoint(l->iteration, step);
  return SRLM_OK;
}

static srlm_status log_pref_step(const srlm_pref_step_info *s, learn_log *l);
static srlm_status on_pref_step(const srlm_pref_step_info *s, void *user) {
  learn_log *l = user;
  int sig;
  SRLM_TRY(step_stop_vote(l, s->step, s->total_steps, &sig));
  if (l->metrics) SRLM_TRY(log_pref_step(s, l)); /* learners other than the lead only train */
  SRLM_TRY(learn_checkpoint(l, s->step, s->total_steps, s->loss, s->optim, s->replay_next, sig != 0));
  return sig ? step_stopped(l, sig, s->step, s->total_steps) : SRLM_OK;
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
  json_object_set_new(o, "loss", sr_num(s->loss));
  json_object_set_new(o, "replay_nll", sr_num(s->replay_nll));
  json_object_set_new(o, "logp_chosen", sr_num(s->pref.logp_chosen_sum / np));
  json_object_set_new(o, "logp_rejected", sr_num(s->pref.logp_rejected_sum / np));
  json_object_set_new(o, "reward_chosen", sr_num(s->pref.reward_chosen_sum / np));
  json_object_set_new(o, "reward_rejected", sr_num(s->pref.reward_rejected_sum / np));
  json_object_set_new(o, "margin", sr_num(s->pref.margin_sum / np));
  json_object_set_new(o, "reward_accuracy", sr_num(s->pref.accuracy_sum / np));
  /* the sequences' log-ratio to the reference (a sampled KL proxy; rewards are beta x it) */
  json_object_set_new(o, "kl", sr_num(l->beta > 0 && l->has_ref ? (s->pref.reward_chosen_sum + s->pref.reward_rejected_sum) /
                                                                     (2 * l->beta * np)
                                                               : NAN));
  json_object_set_new(o, "len_chosen", sr_num(s->pref.len_chosen_sum / np));
  json_object_set_new(o, "len_rejected", sr_num(s->pref.len_rejected_sum / np));
  json_object_set_new(o, "grad_norm", sr_num(s->grad_norm));
  json_object_set_new(o, "lr", sr_num(s->lr));
  json_object_set_new(o, "skipped", json_boolean(s->skipped));
  json_object_set_new(o, "tokens", json_integer(s->tokens));
  json_object_set_new(o, "tokens_per_s", sr_num(s->step_seconds > 0 ? (double)s->tokens / s->step_seconds : NAN));
  return sr_metrics_line(l->ctx, o);
}


/* dp->ctx of the learners (dp.h): the communicator, and the overlapped reduce's bucket size. */
typedef struct learn_dp {
  srlm_comm *comm;
  size_t bucket_bytes;
} learn_dp;

/* Sums gradients (learner-rank order) and step statistics over the learners. */
static srlm_status dp_reduce(void *ctx, float *grads, int64_t n, double *stats, int n_stats) {
  srlm_comm *c = ((learn_dp *)ctx)->comm;
  SRLM_TRY(srlm_comm_allreduce_grads(c, grads, n, SRLM_COMM_SUM, SRLM_COMM_DETERMINISTIC));
  return srlm_comm_allreduce_f64(c, stats, n_stats);
}

/* ZeRO-1 (train.zero: 1): the same sums into this learner's shard only. */
static srlm_status dp_reduce_scatter(void *ctx, float *grads, int64_t n, const int64_t *bounds, double *stats,
                                     int n_stats) {
  srlm_comm *c = ((learn_dp *)ctx)->comm;
  SRLM_TRY(srlm_comm_reduce_scatter_grads(c, grads, n, bounds));
  return srlm_comm_allreduce_f64(c, stats, n_stats);
}

static srlm_status dp_allgather(void *ctx, void *x, int64_t n, srlm_dtype dt, const int64_t *bounds) {
  return srlm_comm_allgather_shards(((learn_dp *)ctx)->comm, x, n, dt, bounds);
}

static srlm_status dp_chain(void *ctx, double *x, int stage) {
  return srlm_comm_chain_f64(((learn_dp *)ctx)->comm, x, stage);
}

/* train.overlap_reduce: the same sums in buckets during the last backward (comm.h). */
static srlm_status dp_reduce_begin(void *ctx, float *grads, int64_t n, const int64_t *bounds) {
  const learn_dp *d = ctx;
  return srlm_comm_reduce_begin(d->comm, grads, n, bounds, d->bucket_bytes);
}
static srlm_status dp_reduce_ready(void *ctx, int64_t from) { return srlm_comm_reduce_ready(((learn_dp *)ctx)->comm, from); }
static srlm_status dp_reduce_end(void *ctx, double *stats, int n_stats) {
  srlm_comm *c = ((learn_dp *)ctx)->comm;
  SRLM_TRY(srlm_comm_reduce_end(c));
  return srlm_comm_allreduce_f64(c, stats, n_stats);
}
static void dp_reduce_abandon(void *ctx) { srlm_comm_reduce_abandon(((learn_dp *)ctx)->comm); }

/* The learners of this job as the training engine sees them (dp.h); ld: its context, which
 * must outlive the returned value. */
/* ZeRO-1: the moments' host copies gathered for a checkpoint (dp.h allgather_host). */
static srlm_status dp_allgather_host(void *ctx, float *x, int64_t n, const int64_t *bounds) {
  learn_dp *ld = ctx;
  const int me = srlm_comm_role_rank(ld->comm, SRLM_ROLE_LEARNER);
  return srlm_comm_gather_ranges_host(ld->comm, x, n, bounds[me], bounds[me + 1], 0); /* to the lead, who writes */
}

static srlm_dp learner_dp(const srlm_config *cfg, srlm_comm *comm, learn_dp *ld) {
  *ld = (learn_dp){.comm = comm, .bucket_bytes = (size_t)(cfg->train.reduce_bucket_mb * 1048576.0)};
  return (srlm_dp){.rank = srlm_comm_role_rank(comm, SRLM_ROLE_LEARNER), .size = srlm_comm_role_size(comm, SRLM_ROLE_LEARNER),
                   .reduce = dp_reduce, .ctx = ld, .zero = cfg->train.zero == 1, .reduce_scatter = dp_reduce_scatter,
                   .allgather = dp_allgather, .chain = dp_chain, .allgather_host = dp_allgather_host,
                   .overlap = cfg->train.overlap_reduce,
                   .reduce_begin = dp_reduce_begin, .reduce_ready = dp_reduce_ready, .reduce_end = dp_reduce_end,
                   .reduce_abandon = dp_reduce_abandon};
}

srlm_status sr_learners_sum(srlm_comm *comm, double *x, int64_t n, srlm_status st, const char *what) {
  if (srlm_comm_role_size(comm, SRLM_ROLE_LEARNER) <= 1) return st;
  x[n] = st != SRLM_OK;
  char why[512] = "";
  if (st != SRLM_OK) snprintf(why, sizeof why, "%s", srlm_error_message());
  srlm_status rs = n + 1 <= INT32_MAX ? srlm_comm_allreduce_f64(comm, x, (int)(n + 1))
                                      : srlm_error(SRLM_ERR_RANGE, what, "%lld values exceed one all-reduce", (long long)n);
  if (st != SRLM_OK) return why[0] ? srlm_error(st, what, "%s", why) : st;
  if (rs != SRLM_OK) return rs;
  if (x[n] != 0) return srlm_error(SRLM_ERR_INTERNAL, what, "another learner failed to compute its share");
  return SRLM_OK;
}

/* Learner me's share [*lo, *hi) of n items split over L learners: contiguous, cut where the
 * running cost (cum: (n + 1) prefix sums of the items' tokens) crosses r / L of the whole,
 * so the shares cost about the same. A fixed function of the items: every learner computes
 * the same cut, and the shares tile [0, n) in learner order. */
static void learner_share(const int64_t *cum, int64_t n, int me, int L, int64_t *lo, int64_t *hi) {
  const int64_t total = cum[n];
  int64_t a = 0;
  while (a < n && cum[a] * L < (int64_t)me * total) a++;
  int64_t b = a;
  while (b < n && (me == L - 1 || cum[b] * L < (int64_t)(me + 1) * total)) b++;
  *lo = a;
  *hi = b;
}

/* Learner me's share [*lo, *hi) of n items cut only between the log-prob passes one learner
 * would run over all of them: srlm_pref_ref_logps and srlm_grpo_logps pack greedily from
 * their first item (whole items while they fit in max_tokens, at least one), so a share
 * that starts where such a pass starts is packed into exactly those passes. Every product
 * then has the shape it has in the one-learner run, and the bits are that run's on any
 * backend whose products are deterministic per shape (cuBLASLt picks its algorithm by the
 * row count, so cutting anywhere else could change them on a GPU). The passes are shared
 * out by learner_share over their tokens. cum: (n + 1) prefix sums of the items' tokens. */
static void pass_share(const int64_t *cum, int64_t n, int64_t max_tokens, int me, int L, int64_t *lo, int64_t *hi) {
  int64_t *start = srlm_xmalloc((size_t)(n + 1) * sizeof *start), *pcum = srlm_xmalloc((size_t)(n + 1) * sizeof *pcum);
  int64_t np = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i + 1; /* at least one item */
    while (j < n && cum[j + 1] - cum[i] <= max_tokens) j++;
    start[np] = i;
    pcum[np++] = cum[i];
    i = j;
  }
  start[np] = n;
  pcum[np] = cum[n];
  int64_t pa, pb;
  learner_share(pcum, np, me, L, &pa, &pb);
  *lo = start[pa];
  *hi = start[pb];
  free(start);
  free(pcum);
}

/* The reference log-probs of the pairs (ref: (2 np + 1), chosen sums then rejected sums;
 * the last slot is scratch), each learner computing its share (pass_share) under m and
 * the learners exchanging them (sr_learners_sum), so L learners do the work once, not L
 * times. The shares run the one-learner run's passes, so the values are the bits one
 * learner computing them all gets. */
static srlm_status pref_ref_shared(srlm_comm *comm, srlm_model *m, const srlm_pref_pair *pairs, int64_t np,
                                   double *ref) {
  const int L = srlm_comm_role_size(comm, SRLM_ROLE_LEARNER), me = srlm_comm_role_rank(comm, SRLM_ROLE_LEARNER);
  if (L <= 1) return srlm_pref_ref_logps(m, pairs, np, SRLM_MEMPLAN_LOGPROB_TOKENS, ref, ref + np);
  int64_t *cum = srlm_xmalloc((size_t)(np + 1) * sizeof *cum);
  cum[0] = 0;
  for (int64_t i = 0; i < np; i++)
    cum[i + 1] = cum[i] + 2 * pairs[i].prompt_len + pairs[i].chosen_len + pairs[i].rejected_len;
  int64_t lo, hi;
  pass_share(cum, np, SRLM_MEMPLAN_LOGPROB_TOKENS, me, L, &lo, &hi);
  free(cum);
  memset(ref, 0, (size_t)(2 * np + 1) * sizeof *ref);
  srlm_status st = srlm_pref_ref_logps(m, pairs + lo, hi - lo, SRLM_MEMPLAN_LOGPROB_TOKENS, ref + lo, ref + np + lo);
  if (st != SRLM_OK) st = srlm_error_context(st, "learner %d's pairs [%lld, %lld)", me, (long long)lo, (long long)hi);
  return sr_learners_sum(comm, ref, 2 * np, st, "the reference log-probs");
}

/* GRPO's M_t log-probs of every response token (ref: (N), srlm_grpo_offsets' order), each
 * learner computing the sequences of its share (pass_share) and the learners gathering
 * the shares' token ranges; bit for bit what one learner computing them all gets, as above. */
static srlm_status grpo_ref_shared(srlm_comm *comm, srlm_model *m, const srlm_grpo_seq *seqs, int64_t n, float *ref) {
  const int L = srlm_comm_role_size(comm, SRLM_ROLE_LEARNER), me = srlm_comm_role_rank(comm, SRLM_ROLE_LEARNER);
  if (L <= 1) return srlm_grpo_logps(m, seqs, n, SRLM_MEMPLAN_LOGPROB_TOKENS, ref);
  int64_t *off = srlm_xmalloc((size_t)(n + 1) * sizeof *off), *cum = srlm_xmalloc((size_t)(n + 1) * sizeof *cum);
  const int64_t N = srlm_grpo_offsets(seqs, n, off);
  cum[0] = 0;
  for (int64_t i = 0; i < n; i++) cum[i + 1] = cum[i] + seqs[i].prompt_len + seqs[i].response_len;
  int64_t lo, hi;
  pass_share(cum, n, SRLM_MEMPLAN_LOGPROB_TOKENS, me, L, &lo, &hi);
  srlm_status st = srlm_grpo_logps(m, seqs + lo, hi - lo, SRLM_MEMPLAN_LOGPROB_TOKENS, ref + off[lo]);
  if (st != SRLM_OK) st = srlm_error_context(st, "learner %d's sequences [%lld, %lld)", me, (long long)lo, (long long)hi);
  double flag[1];
  st = sr_learners_sum(comm, flag, 0, st, "GRPO's reference log-probs");
  if (st == SRLM_OK) st = srlm_comm_allgather_ranges_host(comm, ref, N, off[lo], off[hi]);
  free(cum);
  free(off);
  return st;
}

/* A LEARN checkpoint's weights into m (after the reference log-probs were taken from
 * M_{t-1}) and the trainer's resume point. */
static srlm_status resume_weights(srlm_model *m, const srlm_checkpoint *ck, srlm_train_resume *rs) {
  int64_t n = (int64_t)srlm_model_num_params(m);
  if (ck->n_params != n)
    return srlm_error(SRLM_ERR_FORMAT, SRLM_CKPT_FILE, "holds %lld parameters, the model has %lld",
                      (long long)ck->n_params, (long long)n);
  SRLM_TRY(srlm_model_set_params(m, ck->params, 0, (size_t)n));
  *rs = (srlm_train_resume){.start_step = ck->step, .m = ck->m, .v = ck->v, .n = (size_t)n, .optim_step = ck->optim_step,
                            .optim_skipped = ck->optim_skipped, .replay_next = ck->replay_next};
  return SRLM_OK;
}

static srlm_status log_grpo_step(const srlm_grpo_step_info *s, learn_log *l);
static srlm_status on_grpo_step(const srlm_grpo_step_info *s, void *user) {
  learn_log *l = user;
  int sig;
  SRLM_TRY(step_stop_vote(l, s->step, s->total_steps, &sig));
  if (l->metrics) SRLM_TRY(log_grpo_step(s, l));
  SRLM_TRY(learn_checkpoint(l, s->step, s->total_steps, s->loss, s->optim, 0, sig != 0));
  return sig ? step_stopped(l, sig, s->step, s->total_steps) : SRLM_OK;
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
  json_object_set_new(o, "loss", sr_num(s->loss));
  json_object_set_new(o, "kl", sr_num(s->kl_mean));
  json_object_set_new(o, "clip_fraction", sr_num(s->clip_frac));
  json_object_set_new(o, "ratio", sr_num(s->ratio_mean));
  json_object_set_new(o, "grad_norm", sr_num(s->grad_norm));
  json_object_set_new(o, "lr", sr_num(s->lr));
  json_object_set_new(o, "skipped", json_boolean(s->skipped));
  json_object_set_new(o, "groups", json_integer(s->groups));
  json_object_set_new(o, "len_mean", sr_num(s->grpo.seqs ? (double)s->grpo.tokens / (double)s->grpo.seqs : NAN));
  json_object_set_new(o, "tokens", json_integer(s->tokens));
  json_object_set_new(o, "tokens_per_s", sr_num(s->step_seconds > 0 ? (double)s->tokens / s->step_seconds : NAN));
  return sr_metrics_line(l->ctx, o);
}

/* GRPO on groups: every prompt whose K samples all arrived is a group (unscored samples
 * get advantage 0, srlm_group_advantages); reference = old policy = M_t, once. */
static srlm_status learn_grpo(const srlm_config *cfg, srlm_model *m, srlm_comm *comm, int t, learn_log *ll,
                              const srlm_checkpoint *ck, const srlm_grpo_seq *seqs, int64_t n_groups, int K,
                              const double *rewards, srlm_group_stats *gs, srlm_sr_iteration *row) {
  FILE *metrics = ll->metrics;
  const int64_t n = n_groups * K;
  double *adv = srlm_xmalloc((size_t)(n + 1) * sizeof *adv);
  srlm_group_options go = {.use_std = cfg->train.grpo_std, .eps = cfg->train.grpo_std_eps,
                           .batch_std = cfg->train.grpo_std_scope == SRLM_CFG_GRPO_STD_BATCH};
  srlm_status st = srlm_group_advantages(&go, n_groups, K, rewards, adv, gs);
  int64_t *off = srlm_xmalloc((size_t)(n + 1) * sizeof *off);
  int64_t N = srlm_grpo_offsets(seqs, n, off);
  free(off);
  static const srlm_grpo_agg k_agg[] = {[SRLM_CFG_GRPO_SEQ_MEAN] = SRLM_GRPO_AGG_SEQ_MEAN,
                                        [SRLM_CFG_GRPO_TOKEN_MEAN] = SRLM_GRPO_AGG_TOKEN_MEAN,
                                        [SRLM_CFG_GRPO_FIXED_LEN] = SRLM_GRPO_AGG_FIXED_LEN};
  static const srlm_grpo_ratio k_ratio[] = {[SRLM_CFG_GRPO_RATIO_TOKEN] = SRLM_GRPO_RATIO_TOKEN,
                                            [SRLM_CFG_GRPO_RATIO_SEQUENCE] = SRLM_GRPO_RATIO_SEQUENCE};
  srlm_grpo_train_options o = {.loss = {.clip_eps = cfg->train.clip_eps, .clip_eps_high = cfg->train.clip_eps_high,
                                        .ratio = k_ratio[cfg->train.grpo_ratio], .beta = cfg->train.beta,
                                        .agg = k_agg[cfg->train.grpo_aggregation],
                                        .l_max = cfg->generate.max_new_tokens, .is_cap = cfg->train.is_cap},
                               .batch_groups = cfg->train.batch_size,
                               .grad_accum = cfg->train.grad_accum,
                               .epochs = cfg->train.epochs,
                               .seed = (uint64_t)cfg->run.seed + (uint64_t)t};
  learn_dp ld;
  srlm_dp dp = learner_dp(cfg, comm, &ld);
  o.dp = &dp;
  srlm_optim_config_from_config(cfg, &o.optim);
  srlm_lr_schedule_from_config(cfg, 1, &o.schedule);
  o.on_step = on_grpo_step;
  o.user = ll;
  o.anchor = ll->c->anchor; /* WARP: the KL reference is the EMA anchor, forwarded every micro-batch */
  o.anchor_mu = cfg->train.ema_mu;
  /* M_t's log-probs: the KL anchor (unless the EMA anchor is) and the ratio's denominator for later steps */
  float *ref = srlm_xmalloc((size_t)(N + 1) * sizeof *ref);
  if (st == SRLM_OK) st = grpo_ref_shared(comm, m, seqs, n, ref);
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

/* iter_<t>/rollouts.h5: every shard (/shard_<s>), the pairs, the counts. */
static srlm_status write_rollouts(sr_ctx *c, int t, const srlm_shard *sh, const int64_t *pair_rows, int64_t np,
                                  int64_t groups, const srlm_pair_stats *ps, int64_t replay, int64_t stale,
                                  const double *pair_w, const double *pair_l, const srlm_sr_iteration *row,
                                  const sr_meta *mj) {
  char path[4200];
  snprintf(path, sizeof path, "%s/iter_%d", c->run_dir, t);
  SRLM_TRY(srlm_mkdirs(path));
  snprintf(path, sizeof path, "%s/iter_%d/rollouts.h5", c->run_dir, t);
  srlm_store *s;
  SRLM_TRY(srlm_store_create(path, SRLM_SHARD_STORE_FORMAT, SRLM_SHARD_STORE_VERSION, &s));
  srlm_status st = SRLM_OK;
  for (int64_t i = 0; i < c->ro.shards_max && st == SRLM_OK; i++) {
    if (!sh[i].n_prompts) continue; /* dropped, or an extra shard not generated */
    char g[64];
    snprintf(g, sizeof g, "/shard_%lld", (long long)i);
    st = srlm_shard_write(s, g, &sh[i]);
  }
  /* pairs: (np, 3) rows of (prompt_index, chosen sample, rejected sample) */
  if (st == SRLM_OK) st = srlm_store_group(s, "/pairs");
  if (st == SRLM_OK && np > 0)
    st = srlm_store_write_array(s, "/pairs/rows", SRLM_STORE_I64, 2, (const int64_t[]){np, 3}, pair_rows);
  /* the pairs' own loss weights and soft labels (pairs.source votes/implicit, consistency):
     a replay of these pairs (pairs.replay_fraction) reads them back */
  if (st == SRLM_OK && np > 0 && pair_w)
    st = srlm_store_write_array(s, "/pairs/weight", SRLM_STORE_F64, 1, (const int64_t[]){np}, pair_w);
  if (st == SRLM_OK && np > 0 && pair_l)
    st = srlm_store_write_array(s, "/pairs/label", SRLM_STORE_F64, 1, (const int64_t[]){np}, pair_l);
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
  if (mj) { /* Meta-Rewarding: judge pairs (n, 4) rows of (prompt_index, sample, chosen judgment, rejected judgment) */
    if (st == SRLM_OK && mj->n > 0)
      st = srlm_store_write_array(s, "/pairs/judge_rows", SRLM_STORE_I64, 2, (const int64_t[]){mj->n, 4}, mj->rows);
    const struct {
      const char *name;
      int64_t v;
    } meta[] = {{"judge_pairs", mj->n}, {"meta_responses", mj->responses}, {"meta_comparisons", mj->comparisons},
                {"meta_agreeing", mj->agreeing}, {"meta_format_failures", mj->format_failures},
                {"meta_too_long", mj->too_long}};
    for (size_t k = 0; k < sizeof meta / sizeof meta[0] && st == SRLM_OK; k++)
      st = srlm_store_set_attr_i64(s, "/pairs", meta[k].name, meta[k].v);
  }
  if (pair_w) { /* the consistency methods' counts (row's, as in the iteration line) */
    const struct {
      const char *name;
      int64_t v;
    } more[] = {{"votes_one_answer", row->votes_one_answer}, {"votes_tie", row->votes_tie},
                {"votes_below_threshold", row->votes_below_threshold}, {"votes_no_answer", row->votes_no_answer},
                {"pairs_disagree", row->pairs_disagree}, {"pairs_replayed", row->pairs_replayed}};
    for (size_t k = 0; k < sizeof more / sizeof more[0] && st == SRLM_OK; k++)
      st = srlm_store_set_attr_i64(s, "/pairs", more[k].name, more[k].v);
    if (st == SRLM_OK) st = srlm_store_set_attr_f64(s, "/pairs", "length_alpha", row->length_alpha);
  }
  if (st == SRLM_OK) return srlm_store_commit(s);
  srlm_store_close(s);
  return st;
}

/* The model's own parsable greedy judgments (the shards' judgment texts), up to
 * judge.replay_per_verdict per verdict, in shard order. */
static srlm_status build_replay(sr_ctx *c, const srlm_shard *sh, replay_buf *rb) {
  const int64_t cap = c->cfg->judge.replay_per_verdict;
  /* the task's judgment format only: a prompt set's judge has no verdict to balance */
  if (c->ro.prompts || !sr_source_has_model(c->cfg->judge.source) || cap == 0) return SRLM_OK;
  int64_t taken[2] = {0, 0};
  srlm_token_ids prompt = {0}, target = {0};
  srlm_status st = SRLM_OK;
  for (int64_t i = 0; i < c->ro.shards_max && st == SRLM_OK && (taken[0] < cap || taken[1] < cap); i++) {
    const srlm_shard *s = &sh[i];
    for (int64_t j = 0; j < s->n_responses && st == SRLM_OK && (taken[0] < cap || taken[1] < cap); j++) {
      const char *judgment = s->judgment_text + s->judgment_text_offsets[j * s->judgments_per_response];
      int score;
      if (!c->ro.task->judgment_parse(judgment, strlen(judgment), &score)) continue;
      int v = score >= 3;
      if (taken[v] >= cap) continue;
      char *cand = NULL;
      size_t cl = 0;
      st = sr_response_text(&c->ro, s, j, &cand, &cl);
      if (st != SRLM_OK) break;
      char q[SRLM_TASK_TEXT_MAX + 1], jp[SRLM_TASK_TEXT_MAX + 1];
      sr_task_prompt(&c->ro, s, s->response_prompt[j], q);
      size_t jl = c->ro.task->judge_prompt(q, cand, cl, jp);
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

/* The response lengths in characters (decoded text) of every sample, for the length
 * regularization of the implicit reward (DICE). */
static srlm_status sample_chars(sr_ctx *c, const srlm_shard *sh, const sr_implicit *im, int64_t *chars) {
  for (int64_t i = 0; i < c->ro.shards_max; i++)
    for (int64_t j = 0; j < sh[i].n_responses; j++) {
      char *text = NULL;
      size_t len = 0;
      SRLM_TRY(sr_response_text(&c->ro, &sh[i], j, &text, &len));
      free(text);
      chars[im->first[i] + j] = (int64_t)len;
    }
  return SRLM_OK;
}

/* DICE's alpha over the iteration's prompts that have all K samples (srlm_length_alpha). */
static double auto_alpha(const sr_ctx *c, const srlm_shard *sh, const sr_implicit *im, const int64_t *chars) {
  const int K = c->ro.K;
  double *s = srlm_xmalloc((size_t)(im->n + 1) * sizeof *s);
  int64_t *len = srlm_xmalloc((size_t)(im->n + 1) * sizeof *len), np = 0;
  for (int64_t i = 0; i < c->ro.shards_max; i++)
    for (int64_t j0 = 0, j1; j0 < sh[i].n_responses; j0 = j1) {
      for (j1 = j0; j1 < sh[i].n_responses && sh[i].response_prompt[j1] == sh[i].response_prompt[j0]; j1++) {}
      if (j1 - j0 != K) continue;
      memcpy(s + np * K, im->cur + im->first[i] + j0, (size_t)K * sizeof *s);
      memcpy(len + np * K, chars + im->first[i] + j0, (size_t)K * sizeof *len);
      np++;
    }
  const double a = srlm_length_alpha(np, K, s, len);
  free(s);
  free(len);
  return a;
}

void sr_consist_report(const srlm_config *cfg, const srlm_sr_iteration *row, json_t *o) {
  if (cfg->train.loss == SRLM_CFG_LOSS_GRPO) return;
  if (cfg->pairs.source == SRLM_CFG_PAIRS_VOTES) {
    json_object_set_new(o, "votes_kept", json_integer(row->pairs - row->pairs_replayed));
    json_object_set_new(o, "votes_dropped", json_integer(row->votes_one_answer + row->votes_tie +
                                                        row->votes_below_threshold));
    json_object_set_new(o, "votes_one_answer", json_integer(row->votes_one_answer));
    json_object_set_new(o, "votes_tie", json_integer(row->votes_tie));
    json_object_set_new(o, "votes_below_threshold", json_integer(row->votes_below_threshold));
    json_object_set_new(o, "samples_without_answer", json_integer(row->votes_no_answer));
  }
  if (cfg->pairs.source != SRLM_CFG_PAIRS_JUDGE || cfg->pairs.consistency != SRLM_CFG_CONSIST_NONE ||
      cfg->pairs.replay_fraction > 0)
    json_object_set_new(o, "pair_weight_mean", sr_num(row->pair_weight_mean));
  if (cfg->pairs.source == SRLM_CFG_PAIRS_IMPLICIT) json_object_set_new(o, "length_alpha", sr_num(row->length_alpha));
  if (cfg->pairs.consistency == SRLM_CFG_CONSIST_CREAM)
    json_object_set_new(o, "consistency_mean", sr_num(row->consistency_mean));
  if (cfg->pairs.consistency == SRLM_CFG_CONSIST_SCIR)
    json_object_set_new(o, "pairs_disagree", json_integer(row->pairs_disagree));
  if (cfg->pairs.replay_fraction > 0) json_object_set_new(o, "pairs_replayed", json_integer(row->pairs_replayed));
}

/* Sums of the reward records of judge.source sar (R_SA, checker right) and bleu (BLEU) over
 * a shard's responses (rollout.h): t[0] the term, t[1] the right answers, t[2] responses. */
static void reward_terms(const srlm_config *cfg, const srlm_shard *s, double t[3]) {
  const srlm_cfg_judge_source src = cfg->judge.source;
  if (src != SRLM_CFG_SOURCE_SAR && src != SRLM_CFG_SOURCE_BLEU) return;
  const int64_t J = s->judgments_per_response;
  for (int64_t j = 0; j < s->n_responses && J >= (src == SRLM_CFG_SOURCE_SAR ? 2 : 1); j++) {
    t[0] += s->judgment_score[j * J + (src == SRLM_CFG_SOURCE_SAR)];
    t[1] += src == SRLM_CFG_SOURCE_SAR && s->judgment_score[j * J] > cfg->judge.score_min;
    t[2] += 1;
  }
}

/* The rewards of one prompt's samples [j0, j0 + k) of s (NaN: unscored). */
static void group_scores(const srlm_shard *s, int64_t j0, int k, double *scores) {
  for (int q = 0; q < k; q++)
    scores[q] = s->flags[j0 + q] & SRLM_SHARD_F_SCORED ? (double)s->mean_score[j0 + q] : NAN;
}

int64_t sr_informative_groups(const sr_ctx *c, const srlm_shard *sh, int64_t n_shards) {
  double *scores = srlm_xmalloc((size_t)c->ro.K * sizeof *scores);
  int64_t n = 0;
  for (int64_t i = 0; i < n_shards; i++) {
    const srlm_shard *s = &sh[i];
    for (int64_t pr = 0, j0 = 0; pr < s->n_prompts; pr++) {
      int64_t j1 = j0;
      while (j1 < s->n_responses && s->response_prompt[j1] == pr) j1++;
      if (j1 - j0 == c->ro.K) {
        group_scores(s, j0, c->ro.K, scores);
        n += !srlm_group_all_equal(c->ro.K, scores);
      }
      j0 = j1;
    }
  }
  free(scores);
  return n;
}

srlm_status sr_learn(sr_ctx *c, int t, srlm_shard *sh, int64_t stale, srlm_sr_iteration *row) {
  const srlm_config *cfg = c->cfg;
  srlm_timer tm;
  srlm_timer_start(&tm);
  srlm_pair_options po = {.min_margin = cfg->pairs.min_margin,
                          .length_control = cfg->pairs.rule == SRLM_CFG_PAIR_LENGTH_CONTROLLED,
                          .length_rho = cfg->pairs.length_rho};
  int64_t *lengths = srlm_xmalloc((size_t)c->ro.K * sizeof *lengths); /* response tokens, for length control */
  srlm_pair_stats ps = {0};
  int64_t cap = (int64_t)c->ro.n + 1, np = 0, pair_ok = 0;
  srlm_pref_pair *pairs = srlm_xmalloc((size_t)cap * sizeof *pairs);
  const int grpo = cfg->train.loss == SRLM_CFG_LOSS_GRPO;
  int64_t n_groups = 0, short_groups = 0, equal_groups = 0, dropped_groups = 0, refilled = 0, surplus = 0, prompts = 0;
  const int refill = c->ro.refill_cap > 0; /* DAPO: the first n informative groups in prompt order */
  srlm_grpo_seq *gseq = grpo ? srlm_xmalloc((size_t)cap * (size_t)c->ro.K * sizeof *gseq) : NULL;
  double *grew = grpo ? srlm_xmalloc((size_t)cap * (size_t)c->ro.K * sizeof *grew) : NULL;
  int64_t *rows3 = srlm_xmalloc((size_t)cap * 3 * sizeof *rows3);
  double *scores = srlm_xmalloc((size_t)c->ro.K * sizeof *scores);
  char **texts = srlm_xcalloc((size_t)c->ro.K, sizeof *texts);
  srlm_status st = SRLM_OK;
  double score_sum = 0, terms[3] = {0, 0, 0}; /* reward_terms */
  int64_t scored = 0, samples = 0, response_tokens = 0;
  srlm_shard_judge_health health = {0};
  /* issue 11: where the pair scores come from and what each pair carries (consist.h) */
  const int votes = !grpo && cfg->pairs.source == SRLM_CFG_PAIRS_VOTES;
  const int implicit = !grpo && cfg->pairs.source == SRLM_CFG_PAIRS_IMPLICIT;
  const int cream = !grpo && cfg->pairs.consistency == SRLM_CFG_CONSIST_CREAM;
  const int scir = !grpo && cfg->pairs.consistency == SRLM_CFG_CONSIST_SCIR;
  const int soft = votes || implicit || cream || scir || (!grpo && cfg->pairs.replay_fraction > 0);
  double *pw = soft ? srlm_xmalloc((size_t)cap * sizeof *pw) : NULL; /* the pairs' loss weights */
  double *pl = soft ? srlm_xmalloc((size_t)cap * sizeof *pl) : NULL; /* their soft labels */
  double c_sum = 0;                                                   /* CREAM: sum of the pairs' C */
  sr_implicit im = {0};
  int64_t *chars = NULL;
  double alpha = implicit ? cfg->pairs.length_alpha : NAN;
  char(*keys)[SR_ANSWER_KEY_MAX] = votes ? srlm_xmalloc((size_t)c->ro.K * sizeof *keys) : NULL;
  const char **answers = votes ? srlm_xcalloc((size_t)c->ro.K, sizeof *answers) : NULL;
  srlm_vote_stats vs = {0};
  int64_t disagree = 0;
  if (implicit || cream || scir) st = sr_implicit_rewards(c, t, sh, cream, &im);
  if (st == SRLM_OK && implicit && (alpha > 0 || cfg->pairs.length_alpha_auto)) {
    chars = srlm_xmalloc((size_t)(im.n + 1) * sizeof *chars);
    st = sample_chars(c, sh, &im, chars);
    if (st == SRLM_OK && cfg->pairs.length_alpha_auto) alpha = auto_alpha(c, sh, &im, chars);
  }
  for (int64_t i = 0; i < c->ro.shards_max && st == SRLM_OK; i++) {
    const srlm_shard *s = &sh[i];
    samples += s->n_responses;
    if (s->n_responses) response_tokens += s->response_offsets[s->n_responses] - s->response_offsets[0];
    prompts += s->n_prompts;
    sr_judge_health(&c->ro, s, &health);
    reward_terms(cfg, s, terms);
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
        lengths[q] = s->response_offsets[j0 + q + 1] - s->response_offsets[j0 + q];
        if (implicit) { /* the judge's scores above stay the reported mean score */
          const int64_t g = im.first[i] + j0 + q;
          scores[q] = alpha > 0 ? im.cur[g] - alpha * (double)chars[g] : im.cur[g];
        }
        if (votes && st == SRLM_OK) answers[q] = sr_answer_key(&c->ro, s, j0 + q, texts[q], len, keys[q]) ? keys[q] : NULL;
      }
      const int all_equal = grpo && k == c->ro.K && srlm_group_all_equal(k, scores);
      equal_groups += all_equal;
      if (all_equal && cfg->train.grpo_equal_groups != SRLM_CFG_GRPO_EQUAL_KEEP) {
        dropped_groups++; /* DAPO's dynamic sampling: no signal, not trained on */
      } else if (grpo && k == c->ro.K && refill && n_groups >= c->ro.n) {
        surplus++; /* informative, but the iteration has its n groups already */
      } else if (grpo && k == c->ro.K) { /* a group needs all K samples (a dropped shard has none) */
        refilled += i >= c->ro.shards;
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
      double w = 1.0, eps = cfg->train.label_smoothing, cons = NAN;
      if (st == SRLM_OK && votes)
        st = srlm_pairs_votes(cfg->pairs.vote_threshold, k, answers, &p, &w, &made, &vs);
      else if (st == SRLM_OK && !grpo)
        st = srlm_pairs_select(&po, k, scores, (const char *const *)texts, NULL, po.length_control ? lengths : NULL, &p,
                               &made, &ps);
      if (st == SRLM_OK && made && scir) { /* SCIR: the implicit reward orders the judge's pair the other way */
        const int64_t g0 = im.first[i] + j0;
        if (im.cur[g0 + p.chosen] < im.cur[g0 + p.rejected]) {
          disagree++;
          if (cfg->pairs.disagree_drop) {
            made = 0;
            ps.pairs--;
          } else {
            w = cfg->pairs.disagree_weight;
          }
        }
      }
      if (st == SRLM_OK && made && cream) { /* CREAM: C of R_t's and R_{t-1}'s rankings; none at t = 1 */
        const int64_t g0 = im.first[i] + j0;
        cons = im.prev ? srlm_rank_consistency(k, im.cur + g0, im.prev + g0) : 1.0;
        eps = 1.0 - cons;
        c_sum += cons;
      }
      if (st == SRLM_OK && made && soft) {
        pw[np] = w;
        pl[np] = eps;
      }
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
          char q[SRLM_TASK_TEXT_MAX + 1];
          sr_task_prompt(&c->ro, s, pr, q);
          pair_ok += c->ro.task->check(q, texts[p.chosen], strlen(texts[p.chosen])) &&
                     !c->ro.task->check(q, texts[p.rejected], strlen(texts[p.rejected]));
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
  free(lengths);
  free(keys);
  free(answers);
  free(chars);
  sr_implicit_free(&im);
  const int64_t np_fresh = np;
  if (st == SRLM_OK && cream && cfg->pairs.consistency_per_iteration && np > 0)
    for (int64_t q = 0; q < np; q++) pl[q] = 1.0 - c_sum / (double)np; /* the iteration's mean C for every pair */
  row->pair_weight_mean = NAN;
  if (soft && np > 0) {
    double ws = 0;
    for (int64_t q = 0; q < np; q++) ws += pw[q];
    row->pair_weight_mean = ws / (double)np;
  }
  row->votes_one_answer = vs.one_answer;
  row->votes_tie = vs.tie;
  row->votes_below_threshold = vs.below_threshold;
  row->votes_no_answer = vs.no_answer;
  row->pairs_disagree = disagree;
  row->consistency_mean = cream && np > 0 ? c_sum / (double)np : NAN;
  row->length_alpha = alpha;
  row->pair_accuracy = np && !c->ro.prompts ? (double)pair_ok / (double)np : NAN;
  /* DICE's experience replay: some of iteration t-1's pairs again, after this iteration's */
  sr_pair_replay rp = {0};
  if (st == SRLM_OK && !grpo && cfg->pairs.replay_fraction > 0)
    st = sr_pair_replay_read(c, t, cfg->pairs.replay_fraction, cfg->train.label_smoothing, &rp);
  if (st == SRLM_OK && rp.n > 0) {
    pairs = srlm_xrealloc(pairs, (size_t)(np + rp.n) * sizeof *pairs);
    pw = srlm_xrealloc(pw, (size_t)(np + rp.n) * sizeof *pw);
    pl = srlm_xrealloc(pl, (size_t)(np + rp.n) * sizeof *pl);
    memcpy(pairs + np, rp.pairs, (size_t)rp.n * sizeof *pairs);
    memcpy(pw + np, rp.weight, (size_t)rp.n * sizeof *pw);
    memcpy(pl + np, rp.label, (size_t)rp.n * sizeof *pl);
    np += rp.n;
  }
  row->pairs_replayed = rp.n;
  /* Meta-Rewarding: judge pairs from the meta-judge, in iterations 1..meta.judge_iterations,
     after the actor pairs (weight 1 and train.label_smoothing where pairs carry their own) */
  sr_meta mj = {0};
  const int meta = cfg->meta.enabled && !grpo && t <= cfg->meta.judge_iterations;
  if (st == SRLM_OK && meta) st = sr_meta_judge(&c->ro, sh, &mj);
  const int64_t n_actor = np;
  if (st == SRLM_OK && mj.n > 0) {
    pairs = srlm_xrealloc(pairs, (size_t)(np + mj.n + 1) * sizeof *pairs);
    sr_meta_pairs(&mj, pairs + np);
    if (soft) {
      pw = srlm_xrealloc(pw, (size_t)(np + mj.n + 1) * sizeof *pw);
      pl = srlm_xrealloc(pl, (size_t)(np + mj.n + 1) * sizeof *pl);
      for (int64_t q = np; q < np + mj.n; q++) {
        pw[q] = 1.0;
        pl[q] = cfg->train.label_smoothing;
      }
    }
    np += mj.n;
  }
  replay_buf rb = {0};
  if (st == SRLM_OK && !grpo) st = build_replay(c, sh, &rb); /* the GRPO trainer has no replay term */
  row->samples = samples;
  row->mean_response_tokens = samples ? (double)response_tokens / (double)samples : NAN;
  row->groups_all_equal = equal_groups;
  row->groups_dropped = dropped_groups;
  row->groups_refilled = refilled;
  row->groups_surplus = surplus;
  row->prompts_generated = prompts;
  row->short_by = refill && n_groups < c->ro.n ? c->ro.n - n_groups : 0;
  row->judgments = health.judgments;
  row->judge_format_failures = health.format_failures;
  row->judgments_without_score = health.without_score;
  row->mean_score = scored ? score_sum / (double)scored : NAN;
  row->sar_mean = cfg->judge.source == SRLM_CFG_SOURCE_SAR && terms[2] > 0 ? terms[0] / terms[2] : NAN;
  row->verifier_right = cfg->judge.source == SRLM_CFG_SOURCE_SAR && terms[2] > 0 ? terms[1] / terms[2] : NAN;
  row->bleu_mean = cfg->judge.source == SRLM_CFG_SOURCE_BLEU && terms[2] > 0 ? terms[0] / terms[2] : NAN;
  row->pairs = np; /* replayed pairs and judge pairs included (pairs_replayed, judge_pairs of them) */
  row->replay = rb.d.n;
  row->actor_pairs = n_actor;
  row->judge_pairs = mj.n;
  row->meta_responses = mj.responses;
  row->meta_comparisons = mj.comparisons;
  row->meta_agreeing = mj.agreeing;
  row->meta_format_failures = mj.format_failures;
  row->elo_spread = mj.n ? mj.elo_spread_sum / (double)mj.n : NAN;
  row->judge_pair_accuracy = mj.n && !c->ro.prompts ? (double)mj.pairs_better_by_checker / (double)mj.n : NAN;
  if (st == SRLM_OK && c->lead && grpo) {
    SRLM_INFO("iteration %d groups: %lld groups of %d samples (%lld prompts short of samples, %lld groups with all "
              "rewards equal, %lld of them dropped); mean score %.2f", t, (long long)n_groups, c->ro.K,
              (long long)short_groups, (long long)equal_groups, (long long)dropped_groups, row->mean_score);
    if (refill)
      SRLM_INFO("iteration %d refill: %lld prompts generated (%d wanted), %lld groups from the extra prompts, %lld "
                "informative groups left over, short by %lld", t, (long long)prompts, c->ro.n, (long long)refilled,
                (long long)surplus, (long long)row->short_by);
    st = write_rollouts(c, t, sh, rows3, 0, n_groups, &ps, 0, stale, NULL, NULL, row, NULL);
  } else if (st == SRLM_OK && c->lead) {
    if (!votes) /* the votes have their own line below */
      SRLM_INFO("iteration %d pairs: %lld pairs from %lld prompts (%lld skipped with < 2 scores, %lld ties, %lld below "
                "min_margin, %lld equal texts); %lld replayed judgments; mean score %.2f",
                t, (long long)np, (long long)ps.prompts, (long long)ps.skipped_prompts, (long long)ps.dropped_tie,
                (long long)ps.dropped_margin, (long long)ps.dropped_equal_text, (long long)rb.d.n, row->mean_score);
    if (votes)
      SRLM_INFO("iteration %d votes: %lld pairs from %lld prompts (%lld with < 2 distinct answers, %lld ties, %lld below "
                "pairs.vote_threshold); %lld samples without an answer; mean weight %.3f",
                t, (long long)vs.pairs, (long long)vs.prompts, (long long)vs.one_answer, (long long)vs.tie,
                (long long)vs.below_threshold, (long long)vs.no_answer, row->pair_weight_mean);
    if (implicit || cream || scir || rp.n)
      SRLM_INFO("iteration %d consistency: length alpha %.4g, mean C %.3f, %lld pairs the implicit reward disagrees "
                "with, %lld pairs replayed from iteration %d, mean weight %.3f",
                t, row->length_alpha, row->consistency_mean, (long long)disagree, (long long)rp.n, t - 1,
                row->pair_weight_mean);
    if (meta)
      SRLM_INFO("iteration %d meta-judge: %lld responses, %lld ordered comparisons (%lld without a verdict), %lld "
                "pairs agreeing in both orders; %lld judge pairs (mean Elo spread %.0f) trained with the %lld actor pairs",
                t, (long long)mj.responses, (long long)mj.comparisons, (long long)mj.format_failures,
                (long long)mj.agreeing, (long long)mj.n, row->elo_spread, (long long)n_actor);
    st = write_rollouts(c, t, sh, rows3, np_fresh, 0, &ps, rb.d.n, stale, pw, soft ? pl : NULL, row,
                        cfg->meta.enabled ? &mj : NULL);
  }
  double *ref = srlm_xmalloc((size_t)(2 * np + 1) * sizeof *ref);
  learn_log ll = {.metrics = c->lead ? c->metrics : NULL, .ctx = c, .iteration = t, .log_every = cfg->train.log_every,
                  .every = cfg->train.checkpoint_every, .m = c->ro.m, .run_dir = c->run_dir, .yaml = c->yaml,
                  .data_position = (int64_t)t * c->ro.n, .beta = cfg->train.beta,
                  .has_ref = cfg->train.loss != SRLM_CFG_LOSS_SFT, .c = c};
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
    /* the iteration's reference M_{t-1}, once; with the EMA anchor the trainer forwards the anchor instead */
    if (!c->anchor) st = pref_ref_shared(c->comm, c->ro.m, pairs, np, ref);
    static const srlm_pref_loss k_kinds[] = {[SRLM_CFG_LOSS_DPO] = SRLM_PREF_DPO, [SRLM_CFG_LOSS_IPO] = SRLM_PREF_IPO,
                                             [SRLM_CFG_LOSS_SFT] = SRLM_PREF_SFT, [SRLM_CFG_LOSS_GRPO] = SRLM_PREF_DPO};
    learn_dp ld;
    srlm_dp dp = learner_dp(cfg, c->comm, &ld);
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
        .replay_weight = cfg->train.replay_weight,
        .pair_weight = pw,
        .pair_label = cfg->train.loss == SRLM_CFG_LOSS_DPO ? pl : NULL};
    srlm_optim_config_from_config(cfg, &o.optim);
    srlm_lr_schedule_from_config(cfg, 1, &o.schedule);
    o.on_step = on_pref_step;
    o.user = &ll;
    o.anchor = c->anchor;
    o.anchor_mu = cfg->train.ema_mu;
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
  /* the fp32 masters on the host where something needs them whole: the anchor's distance, and on a bf16 ZeRO-1
     learner (each holds its shard) the lead's saved model and ITERATION checkpoint (collective: every learner) */
  size_t mlo, mhi;
  const bool sharded = srlm_model_master_range(c->ro.m, &mlo, &mhi);
  float *w = NULL, *a = NULL;
  if (st == SRLM_OK && (sharded || c->anchor)) st = sr_master_host(c, c->ro.m, &w);
  if (st == SRLM_OK && c->anchor) st = sr_master_host(c, c->anchor, &a);
  if (st == SRLM_OK && c->anchor && c->lead) row->anchor_distance = anchor_distance(w, a, (size_t)c->n_params);
  if (st == SRLM_OK && sharded && c->lead) { /* kept until the next iteration's learning replaces them */
    free(c->master_host);
    free(c->anchor_host);
    c->master_host = w;
    c->anchor_host = a;
    w = a = NULL;
  }
  free(w);
  free(a);
  if (st == SRLM_OK && c->anchor) {
    if (c->lead)
      SRLM_INFO("iteration %d learn: EMA anchor (mu %g) at relative distance %.3g from the weights", t, cfg->train.ema_mu,
                row->anchor_distance);
  }
  free(ref);
  sr_meta_free(&mj);
  free(pw);
  free(pl);
  sr_pair_replay_free(&rp);
  replay_free(&rb);
  free(gseq);
  free(grew);
  free(pairs);
  free(rows3);
  return st;
}

