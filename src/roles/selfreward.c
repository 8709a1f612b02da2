/* The self-rewarding iterations on a built-in task, in every layout of ranks: the
 * driver moves rollout shards from generators to judges to learners and weights back
 * (rollout.c does the work on one shard). Conventions in include/srlm/selfreward.h.
 * With judge.source model the checker is called only by the evaluation (and for the
 * reported pair accuracy), never for data that reaches the learner.
 * This file moves the shards and runs the iterations (resume included); learn.c is the
 * learner's iteration, evaluate.c the evaluation, sr_internal.h what they share. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sr_internal.h"
#include "srlm/shard_store.h"
#include "srlm/checkpoint.h"
#include "srlm/comm.h"
#include "srlm/engine.h"
#include "srlm/jsonl.h"
#include "srlm/pairs.h"
#include "srlm/report.h"
#include "srlm/selfreward.h"
#include "srlm/setup.h"
#include "srlm/stop.h"
#include "srlm/tasks.h"

/* A learn line's iteration and step: the run's learner step for TensorBoard. */
static int64_t learn_step(sr_ctx *c, const json_t *o) {
  int64_t t = json_integer_value(json_object_get(o, "iteration")), s = json_integer_value(json_object_get(o, "step"));
  if (t < 0 || t > c->cfg->run.iterations) return s;
  if (s > c->learn_steps[t]) c->learn_steps[t] = s;
  for (int64_t u = 0; u < t; u++) s += c->learn_steps[u];
  return s;
}

/* Keys of a metrics line that are not TensorBoard scalars. */
static const char *const k_tb_skip[] = {"event", "iteration", "step", NULL};

/* A metrics line's scalars from its from-th on (srlm_tfevents_json). */
static srlm_status tb_line(sr_ctx *c, const json_t *o, int64_t from) {
  const char *ev = json_string_value(json_object_get(o, "event"));
  if (!ev) return SRLM_OK;
  int64_t step = strcmp(ev, "learn") ? json_integer_value(json_object_get(o, "iteration")) : learn_step(c, o);
  return srlm_tfevents_json(c->tb, ev, step, o, k_tb_skip, from);
}

srlm_status sr_metrics_line(sr_ctx *c, json_t *o) {
  char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  int ok = s && fprintf(c->metrics, "%s\n", s) >= 0 && fflush(c->metrics) == 0;
  free(s);
  srlm_status st = ok ? SRLM_OK : srlm_error(SRLM_ERR_IO, "metrics.jsonl", "write failed");
  if (st == SRLM_OK && c->tb) st = tb_line(c, o, 0);
  json_decref(o);
  return st;
}

/* The lead's TensorBoard file at the start (after metrics.jsonl is cut back for a
 * resume): the events files already in the run folder are cut back to the scalars of
 * metrics.jsonl's lines (all of them away for a fresh start), a new file is opened and
 * any scalars the old files lost are written again, so the files always hold exactly
 * metrics.jsonl's numbers. */
static srlm_status tb_open(sr_ctx *c, const char *metrics_path) {
  json_t **lines = NULL;
  int64_t n = 0, total = 0, kept = 0;
  srlm_status st = SRLM_OK;
  if (c->resumed) {
    srlm_jsonl *r;
    SRLM_TRY(srlm_jsonl_open(metrics_path, &r));
    json_t *o;
    while ((st = srlm_jsonl_next(r, &o)) == SRLM_OK && o) {
      lines = srlm_xrealloc(lines, (size_t)(n + 1) * sizeof *lines);
      lines[n++] = o;
      if (json_is_string(json_object_get(o, "event"))) total += srlm_tfevents_json_count(o, k_tb_skip);
    }
    srlm_jsonl_close(r);
  }
  if (st == SRLM_OK) st = srlm_tfevents_cut(c->run_dir, total, &kept);
  if (st == SRLM_OK) st = srlm_tfevents_open(c->run_dir, &c->tb);
  if (st == SRLM_OK)
    SRLM_INFO("TensorBoard: %s (tensorboard --logdir %s)%s", srlm_tfevents_path(c->tb), c->run_dir,
              c->resumed ? "; the earlier events files are cut back to the checkpoint" : "");
  for (int64_t i = 0, done = 0; i < n && st == SRLM_OK; i++) {
    if (!json_is_string(json_object_get(lines[i], "event"))) continue;
    int64_t k = srlm_tfevents_json_count(lines[i], k_tb_skip);
    if (done + k > kept) st = tb_line(c, lines[i], kept > done ? kept - done : 0);
    done += k;
  }
  for (int64_t i = 0; i < n; i++) json_decref(lines[i]);
  free(lines);
  return st;
}

srlm_status sr_stop_vote(sr_ctx *c, int done, int *sig, bool *all_done) {
  int64_t x[2] = {srlm_stop_signal(), done};
  SRLM_TRY(srlm_comm_allreduce_max_i64(c->comm, x, 2));
  *sig = (int)x[0];
  if (all_done) *all_done = x[1] != 0;
  return SRLM_OK;
}

srlm_status sr_stopped(const sr_ctx *c, int sig, const char *where) {
  if (c->lead)
    SRLM_WARN("stopping %s (%s): all ranks agreed at this point; run again with --resume", where,
              srlm_stop_signal_name(sig));
  return srlm_error(SRLM_ERR_STOPPED, c->run_dir, "stopped by %s %s; the checkpoint is written: run again with "
                    "--resume", srlm_stop_signal_name(sig), where);
}

/* Separate roles, a generator or judge whose part of iteration t is over: it votes with
 * the learners' steps (sr_stop_vote) until they are done or all agree to stop. */
static srlm_status wait_learners(sr_ctx *c, int t) {
  for (;;) {
    int sig;
    bool done;
    SRLM_TRY(sr_stop_vote(c, 0, &sig, &done));
    if (done) return SRLM_OK;
    if (sig) {
      char where[64];
      snprintf(where, sizeof where, "inside iteration %d's learning", t);
      return sr_stopped(c, sig, where);
    }
  }
}

/* ---- moving shards ------------------------------------------------------------------ */

/* Progress of the scored shards as the lead learner receives them. */
typedef struct sr_progress {
  srlm_timer tm;
  int t;
  int64_t shards, prompts, samples, unscored;
  srlm_shard_judge_health health;
  double last;
} sr_progress;

static void progress_add(sr_ctx *c, sr_progress *p, const srlm_shard *s) {
  p->shards++;
  p->prompts += s->n_prompts;
  p->samples += s->n_responses;
  sr_judge_health(&c->ro, s, &p->health);
  for (int64_t j = 0; j < s->n_responses; j++) p->unscored += !(s->flags[j] & SRLM_SHARD_F_SCORED);
  double el = srlm_timer_elapsed(&p->tm);
  if (!c->lead || (p->shards < c->ro.shards && el - p->last < 10.0)) return;
  p->last = el;
  double rate = el > 0 ? (double)p->samples / el : 0;
  double eta = p->shards && p->shards < c->ro.shards ? el * (double)(c->ro.shards - p->shards) / (double)p->shards : 0;
  SRLM_INFO("iteration %d rollouts: %lld/%lld prompts generated and judged (%lld/%lld shards), %.0f samples/s, "
            "%lld judge format failures, %lld judgments without a score, %lld unscored samples, ETA %.0f s",
            p->t, (long long)p->prompts, (long long)c->ro.n, (long long)p->shards, (long long)c->ro.shards, rate,
            (long long)p->health.format_failures, (long long)p->health.without_score, (long long)p->unscored, eta);
}

/* Colocated, this rank's generated shards until it judges them. */
typedef struct gen_keep {
  sr_ctx *c;
  srlm_shard *sh; /* (n) filled as shards finish, in list order by index j */
  const int64_t *list;
  int n, done;
  srlm_timer tm;
  double last;
} gen_keep;

static srlm_status keep_shard(void *user, srlm_shard *sh) {
  gen_keep *k = user;
  int j = 0;
  while (j < k->n && k->list[j] != sh->shard_index) j++;
  if (j == k->n) { /* cannot happen: sr_generate_shards makes the list's shards */
    srlm_shard_free(sh);
    return srlm_error(SRLM_ERR_INTERNAL, "rollouts", "generated shard %lld is not this rank's", (long long)sh->shard_index);
  }
  k->sh[j] = *sh;
  k->done++;
  const double el = srlm_timer_elapsed(&k->tm);
  if (k->c->lead && k->done < k->n && el - k->last >= 10.0) { /* progress on long generation */
    k->last = el;
    SRLM_INFO("rollouts: %d/%d of this rank's shards generated (%.0f s)", k->done, k->n, el);
  }
  return SRLM_OK;
}

/* Colocated: every rank generates the shards s of [a, b) with s = rank (mod ranks) as one
 * continuous batch, then judges them in shard order; then all ranks exchange their scored
 * shards. out (shards_max) is filled by shard index. */
static srlm_status rollouts_colocated(sr_ctx *c, int t, int64_t version, srlm_shard *out, sr_progress *pg, int64_t a,
                                      int64_t b) {
  const int R = srlm_comm_size(c->comm), me = srlm_comm_rank(c->comm);
  srlm_strbuf mine = {0};
  sr_judge_counts jc = {0};
  gen_keep k = {.c = c};
  int64_t *list = srlm_xmalloc((size_t)((b - a) / R + 2) * sizeof *list);
  for (int64_t s = a + ((me - a) % R + R) % R; s < b; s += R) list[k.n++] = s;
  k.list = list;
  k.sh = srlm_xcalloc((size_t)k.n + 1, sizeof *k.sh);
  srlm_timer ph;
  srlm_timer_start(&ph);
  srlm_timer_start(&k.tm);
  srlm_status st = sr_generate_shards(&c->ro, t, list, k.n, version, keep_shard, &k, NULL);
  if (c->rows) c->rows[t].generate_seconds += srlm_timer_elapsed(&ph);
  for (int j = 0; j < k.n && st == SRLM_OK; j++) {
    srlm_shard *sh = &k.sh[j];
    srlm_timer_start(&ph);
    st = sr_judge_shard(&c->ro, sh, &jc);
    if (c->rows) c->rows[t].judge_seconds += srlm_timer_elapsed(&ph);
    void *buf = NULL;
    size_t len = 0;
    if (st == SRLM_OK) st = srlm_shard_serialize(sh, &buf, &len);
    if (st == SRLM_OK) {
      uint64_t n = len;
      srlm_strbuf_append(&mine, (const char *)&n, sizeof n);
      srlm_strbuf_append(&mine, buf, len);
    }
    free(buf);
    if (R == 1 && st == SRLM_OK) progress_add(c, pg, sh);
  }
  for (int j = 0; j < k.n; j++) srlm_shard_free(&k.sh[j]); /* an empty entry (after an error) too */
  free(k.sh);
  free(list);
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
      if (sh.shard_index < 0 || sh.shard_index >= c->ro.shards_max || out[sh.shard_index].n_prompts) {
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

/* Separate roles, generator: its shards s = g (mod G) of [a, b), generated in one call
 * (the batch stays full across shards) and each sent to judge s mod J as soon as it is
 * done. */
typedef struct gen_send {
  sr_ctx *c;
  int J;
  int64_t samples;
} gen_send;

static srlm_status send_shard(void *user, srlm_shard *sh) {
  gen_send *gs = user;
  void *buf = NULL;
  size_t len = 0;
  srlm_status st = srlm_shard_serialize(sh, &buf, &len);
  const int64_t s = sh->shard_index;
  gs->samples += sh->n_responses;
  srlm_shard_free(sh);
  SRLM_TRY(st);
  return srlm_comm_send_async(gs->c->comm, srlm_comm_world_rank_of(gs->c->comm, SRLM_ROLE_JUDGE, (int)(s % gs->J)),
                              buf, len);
}

static srlm_status run_generator(sr_ctx *c, int t, int64_t version, int64_t a, int64_t b) {
  const int G = srlm_comm_role_size(c->comm, SRLM_ROLE_GENERATOR), g = srlm_comm_role_rank(c->comm, SRLM_ROLE_GENERATOR);
  const int J = srlm_comm_role_size(c->comm, SRLM_ROLE_JUDGE);
  srlm_timer tm;
  srlm_timer_start(&tm);
  int64_t tokens = 0, *list = srlm_xmalloc((size_t)((b - a) / G + 2) * sizeof *list);
  int n = 0;
  for (int64_t s = a + ((g - a) % G + G) % G; s < b; s += G) list[n++] = s;
  gen_send gs = {.c = c, .J = J};
  srlm_status st = sr_generate_shards(&c->ro, t, list, n, version, send_shard, &gs, &tokens);
  free(list);
  SRLM_TRY(st);
  SRLM_TRY(srlm_comm_flush(c->comm));
  for (int j = 0; j < J; j++) SRLM_TRY(srlm_comm_send_end(c->comm, srlm_comm_world_rank_of(c->comm, SRLM_ROLE_JUDGE, j)));
  SRLM_INFO("iteration %d generator %d: %lld samples, %lld tokens, %.0f samples/s (%.1f s)", t, g,
            (long long)gs.samples, (long long)tokens, gs.samples / (srlm_timer_elapsed(&tm) + 1e-9),
            srlm_timer_elapsed(&tm));
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
    if (st == SRLM_OK) st = srlm_shard_serialize(&sh, &buf, &len);
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
  SRLM_INFO("iteration %d judge %d: %lld samples judged, %lld judge format failures, %lld stale shards dropped, "
            "%.0f judgments/s (%.1f s)", t, srlm_comm_role_rank(c->comm, SRLM_ROLE_JUDGE), (long long)jc.responses,
            (long long)jc.format_failures,
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
    if (st == SRLM_OK && (sh.shard_index < 0 || sh.shard_index >= c->ro.shards_max || out[sh.shard_index].n_prompts))
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


static srlm_status save_model(sr_ctx *c, int t) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/iter_%d/model", c->run_dir, t);
  SRLM_TRY(srlm_mkdirs(dir));
  /* a bf16 ZeRO-1 lead holds a shard of the fp32 master: the whole one was gathered after the learning */
  SRLM_TRY(srlm_model_save_with(c->ro.m, c->master_host, dir, SRLM_ST_F32));
  return srlm_setup_copy_tokenizer_files(c->tok_dir, dir);
}

/* The lead learner's report after iteration t's model is saved: eval + metrics. */
static srlm_status finish_iteration(sr_ctx *c, int t, srlm_timer *iter_tm) {
  const srlm_config *cfg = c->cfg;
  srlm_sr_iteration *row = &c->rows[t];
  SRLM_TRY(sr_evaluate_model(c, t, row));
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
  json_object_set_new(o, "mean_response_tokens", sr_num(row->mean_response_tokens));
  json_object_set_new(o, "mean_score", sr_num(row->mean_score));
  json_object_set_new(o, "pairs", json_integer(row->pairs));
  json_object_set_new(o, "pair_accuracy_by_checker", sr_num(row->pair_accuracy));
  json_object_set_new(o, "replay", json_integer(row->replay));
  json_object_set_new(o, "judgments", json_integer(row->judgments));
  json_object_set_new(o, "judge_format_failures", json_integer(row->judge_format_failures));
  json_object_set_new(o, "judgments_without_score", json_integer(row->judgments_without_score));
  if (cfg->judge.source == SRLM_CFG_SOURCE_SAR) json_object_set_new(o, "sar_mean", sr_num(row->sar_mean));
  if (cfg->judge.source == SRLM_CFG_SOURCE_BLEU) json_object_set_new(o, "bleu_mean", sr_num(row->bleu_mean));
  if (cfg->judge.source == SRLM_CFG_SOURCE_SAR) json_object_set_new(o, "verifier_right", sr_num(row->verifier_right));
  if (cfg->meta.enabled) {
    json_object_set_new(o, "actor_pairs", json_integer(row->actor_pairs));
    json_object_set_new(o, "judge_pairs", json_integer(row->judge_pairs));
    json_object_set_new(o, "meta_responses", json_integer(row->meta_responses));
    json_object_set_new(o, "meta_comparisons", json_integer(row->meta_comparisons));
    json_object_set_new(o, "meta_agreeing", json_integer(row->meta_agreeing));
    json_object_set_new(o, "meta_format_failures", json_integer(row->meta_format_failures));
    json_object_set_new(o, "elo_spread", sr_num(row->elo_spread));
    json_object_set_new(o, "judge_pair_accuracy_by_checker", sr_num(row->judge_pair_accuracy));
  }
  if (cfg->train.loss == SRLM_CFG_LOSS_GRPO) {
    json_object_set_new(o, "groups_all_equal", json_integer(row->groups_all_equal));
    json_object_set_new(o, "groups_dropped", json_integer(row->groups_dropped));
  }
  sr_consist_report(cfg, row, o);
  if (c->ro.refill_cap > 0) { /* DAPO's refill */
    json_object_set_new(o, "groups_refilled", json_integer(row->groups_refilled));
    json_object_set_new(o, "groups_surplus", json_integer(row->groups_surplus));
    json_object_set_new(o, "prompts_generated", json_integer(row->prompts_generated));
    json_object_set_new(o, "short_by", json_integer(row->short_by));
  }
  json_object_set_new(o, "loss_first", sr_num(row->loss_first));
  json_object_set_new(o, "loss_last", sr_num(row->loss_last));
  if (cfg->train.reference == SRLM_CFG_REFERENCE_EMA) json_object_set_new(o, "anchor_distance", sr_num(row->anchor_distance));
  json_object_set_new(o, "seconds", json_real(row->seconds));
  json_object_set_new(o, "rollout_seconds", sr_num(row->rollout_seconds));
  json_object_set_new(o, "generate_seconds", sr_num(row->generate_seconds));
  json_object_set_new(o, "judge_seconds", sr_num(row->judge_seconds));
  json_object_set_new(o, "learn_seconds", sr_num(row->learn_seconds));
  SRLM_TRY(sr_metrics_line(c, o));
  /* M_t is saved, evaluated and reported: iterations 1..t are done */
  long bytes = ftell(c->metrics);
  if (bytes < 0) return srlm_error(SRLM_ERR_IO, "metrics.jsonl", "cannot tell its length");
  srlm_checkpoint ck = {.kind = SRLM_CKPT_ITERATION, .iteration = t, .data_position = (int64_t)t * c->ro.n,
                        .metrics_bytes = bytes, .config_yaml = c->yaml};
  SRLM_TRY(sr_anchor_host(c, &ck.anchor));
  ck.n_anchor = ck.anchor ? c->n_params : 0;
  srlm_status cst = srlm_checkpoint_save(c->run_dir, &ck);
  free(ck.anchor);
  SRLM_TRY(cst);
  /* the report is for reading along: a failure to write it does not stop the run */
  char *report = NULL;
  if (srlm_report_write(c->run_dir, &report) == SRLM_OK)
    SRLM_INFO("report: %s", report);
  else
    SRLM_WARN("report.html not written: %s", srlm_error_message());
  free(report);
  return SRLM_OK;
}

/* o's number `key`; NaN where the line has none (a key written only for some configs). */
static double num_or_nan(const json_t *o, const char *key) {
  const json_t *x = json_object_get(o, key);
  return json_is_number(x) ? json_number_value(x) : NAN;
}

/* The table rows of iterations before a resume point, from metrics.jsonl. */
static void rows_from_metrics(const char *path, srlm_sr_iteration *rows, int last, int64_t *learn_steps, int iterations) {
  FILE *f = fopen(path, "r");
  if (!f) return;
  char line[8192];
  while (fgets(line, sizeof line, f)) {
    json_t *o = json_loads(line, 0, NULL);
    const char *ev = json_string_value(json_object_get(o, "event"));
    int t = (int)json_integer_value(json_object_get(o, "iteration"));
    int64_t step = json_integer_value(json_object_get(o, "step"));
    if (ev && !strcmp(ev, "learn") && t >= 0 && t <= iterations && step > learn_steps[t]) learn_steps[t] = step;
    if (ev && t >= 0 && t <= last) {
      srlm_sr_iteration *r = &rows[t];
      r->iteration = t;
      if (!strcmp(ev, "eval")) {
        r->accuracy = json_number_value(json_object_get(o, "accuracy"));
        r->sample_accuracy = json_number_value(json_object_get(o, "sample_accuracy"));
        r->judge_agreement = json_number_value(json_object_get(o, "judge_agreement"));
        r->eval_score = num_or_nan(o, "mean_score");
        if (t == 0) r->seconds = json_number_value(json_object_get(o, "seconds"));
      } else if (!strcmp(ev, "iteration")) {
        r->samples = json_integer_value(json_object_get(o, "samples"));
        r->mean_response_tokens = num_or_nan(o, "mean_response_tokens");
        r->mean_score = json_number_value(json_object_get(o, "mean_score"));
        r->pairs = json_integer_value(json_object_get(o, "pairs"));
        r->pair_accuracy = num_or_nan(o, "pair_accuracy_by_checker");
        r->replay = json_integer_value(json_object_get(o, "replay"));
        r->judgments = json_integer_value(json_object_get(o, "judgments"));
        r->judge_format_failures = json_integer_value(json_object_get(o, "judge_format_failures"));
        r->judgments_without_score = json_integer_value(json_object_get(o, "judgments_without_score"));
        r->groups_all_equal = json_integer_value(json_object_get(o, "groups_all_equal"));
        r->groups_dropped = json_integer_value(json_object_get(o, "groups_dropped"));
        r->groups_refilled = json_integer_value(json_object_get(o, "groups_refilled"));
        r->groups_surplus = json_integer_value(json_object_get(o, "groups_surplus"));
        r->prompts_generated = json_integer_value(json_object_get(o, "prompts_generated"));
        r->short_by = json_integer_value(json_object_get(o, "short_by"));
        r->sar_mean = num_or_nan(o, "sar_mean");
        r->bleu_mean = num_or_nan(o, "bleu_mean");
        r->verifier_right = num_or_nan(o, "verifier_right");
        r->actor_pairs = json_integer_value(json_object_get(o, "actor_pairs"));
        r->judge_pairs = json_integer_value(json_object_get(o, "judge_pairs"));
        r->meta_responses = json_integer_value(json_object_get(o, "meta_responses"));
        r->meta_comparisons = json_integer_value(json_object_get(o, "meta_comparisons"));
        r->meta_agreeing = json_integer_value(json_object_get(o, "meta_agreeing"));
        r->meta_format_failures = json_integer_value(json_object_get(o, "meta_format_failures"));
        r->elo_spread = num_or_nan(o, "elo_spread");
        r->judge_pair_accuracy = num_or_nan(o, "judge_pair_accuracy_by_checker");
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
    if (sh.shard_index < 0 || sh.shard_index >= c->ro.shards_max || out[sh.shard_index].n_prompts || sh.iteration != t) {
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
    SRLM_TRY(srlm_model_load(dir, srlm_backend_cpu(), SRLM_F32, &prev)); /* the file, read on the host */
    int64_t n = (int64_t)srlm_model_num_params(prev);
    float *w = n == c->n_params ? srlm_xmalloc((size_t)n * sizeof *w) : NULL;
    srlm_status st = w ? srlm_model_get_params(prev, w, 0, (size_t)n) : SRLM_OK;
    if (st == SRLM_OK && w) st = srlm_model_set_params(c->ro.m, w, 0, (size_t)n);
    free(w);
    srlm_model_free(prev);
    SRLM_TRY(st);
    if (n != c->n_params)
      return srlm_error(SRLM_ERR_FORMAT, dir, "holds %lld parameters, the run's model %lld", (long long)n,
                        (long long)c->n_params);
  }
  if (learner && c->anchor) { /* the EMA anchor as the checkpoint holds it (learners share the run folder) */
    srlm_checkpoint own = {0};
    const srlm_checkpoint *src = ck;
    if (!c->lead && head[1] != SRLM_CKPT_LEARN) {
      SRLM_TRY(srlm_checkpoint_load(c->run_dir, &own, &found));
      src = &own;
    }
    srlm_status ast = src->n_anchor == c->n_params
                          ? srlm_model_set_params(c->anchor, src->anchor, 0, (size_t)c->n_params)
                          : srlm_error(SRLM_ERR_FORMAT, SRLM_CKPT_FILE, "holds %s EMA anchor (%lld values) for a model of "
                                       "%lld parameters (train.reference: ema)", src->n_anchor ? "an" : "no",
                                       (long long)src->n_anchor, (long long)c->n_params);
    srlm_checkpoint_free(&own);
    SRLM_TRY(ast);
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
      rows_from_metrics(path, rows, start - 1, c->learn_steps, cfg->run.iterations);
    }
    c->metrics = fopen(path, c->resumed ? "a" : "w");
    if (!c->metrics) return srlm_error(SRLM_ERR_IO, path, "cannot open for writing");
    if (cfg->run.tensorboard) SRLM_TRY(tb_open(c, path)); /* a resume adds a file; steps continue */
  }
  srlm_timer tm;
  srlm_timer_start(&tm);
  if (c->lead && !c->resumed) {
    SRLM_TRY(sr_evaluate_model(c, 0, &rows[0]));
    rows[0].seconds = srlm_timer_elapsed(&tm);
  }
  int pending_eval = 0; /* separate roles: M_t is evaluated while generators start t + 1 */
  srlm_timer iter_tm;
  for (int t = start; t <= cfg->run.iterations; t++) {
    const int64_t version = t - 1; /* M_{t-1} samples iteration t */
    int64_t got = version;
    int sig;
    SRLM_TRY(sr_stop_vote(c, 0, &sig, NULL));
    if (sig) { /* the last ITERATION checkpoint (after M_{t-1}'s report) is where a resume starts */
      if (pending_eval) SRLM_TRY(finish_iteration(c, pending_eval, &iter_tm));
      char where[64];
      snprintf(where, sizeof where, "before iteration %d", t);
      return sr_stopped(c, sig, where);
    }
    if (!colocated) { /* M_{t-1} to the generators and judges: what they decode with, the compute copy (bf16:
                         learner 0's copy as its AdamW or refresh wrote it, straight into theirs, which have no master) */
      const srlm_dtype dt = srlm_model_dtype(m);
      void *w = dt == SRLM_F32 ? (void *)srlm_model_master(m) : srlm_model_compute_params(m);
      SRLM_TRY(srlm_comm_bcast_weights(comm, w, c->n_params, dt, &got, 0));
    }
    if (pending_eval) {
      SRLM_TRY(finish_iteration(c, pending_eval, &iter_tm));
      pending_eval = 0;
    }
    srlm_timer_start(&iter_tm);
    if (learner) { /* generate and judge seconds are the lead's own, counted only colocated */
      rows[t].generate_seconds = rows[t].judge_seconds = colocated ? 0 : NAN;
    }
    sr_progress pg = {.t = t};
    srlm_timer_start(&pg.tm);
    srlm_shard *sh = learner ? srlm_xcalloc((size_t)c->ro.shards_max, sizeof *sh) : NULL;
    int64_t stale = 0;
    srlm_status st = SRLM_OK;
    srlm_comm_phase(comm, "%s of iteration %d", colocated ? "rollouts" : srlm_comm_role_label(comm), t);
    if (c->ck && c->ck->iteration == t)
      st = read_rollouts(c, t, sh, &stale); /* a LEARN resume: the rollouts are on disk */
    else if (c->ck == NULL && in_learn_resume && t == start)
      st = SRLM_OK; /* generators and judges: that iteration's rollouts are done */
    else {
      /* the iteration's shards, then (refill) extra rounds while its groups are short */
      int64_t a = 0, b = c->ro.shards, extra = 0;
      for (int round = 0; st == SRLM_OK && b > a; round++) {
        if (colocated)
          st = rollouts_colocated(c, t, version, sh, &pg, a, b);
        else if (srlm_comm_has_role(comm, SRLM_ROLE_GENERATOR))
          st = run_generator(c, t, version, a, b);
        else if (srlm_comm_has_role(comm, SRLM_ROLE_JUDGE))
          st = run_judge(c, t, version);
        else
          st = receive_scored(c, version, sh, &pg, &stale);
        if (st != SRLM_OK || c->ro.refill_cap == 0) break;
        int64_t x = 0;
        if (c->lead)
          x = srlm_refill_next(c->ro.n, sr_informative_groups(c, sh, b), c->ro.n + extra, extra, c->ro.refill_cap, round,
                               cfg->train.grpo_refill_rounds, cfg->roles.shard_prompts);
        if (srlm_comm_size(comm) > 1) st = srlm_comm_bcast_i64(comm, &x, 1);
        if (c->lead && x > 0)
          SRLM_INFO("iteration %d refill round %d: %lld informative groups of %d wanted, %lld more prompts", t, round + 1,
                    (long long)sr_informative_groups(c, sh, b), c->ro.n, (long long)x);
        a = b;
        b = a + (x + cfg->roles.shard_prompts - 1) / cfg->roles.shard_prompts;
        extra += x;
      }
    }
    if (learner) rows[t].rollout_seconds = srlm_timer_elapsed(&iter_tm);
    if (st == SRLM_OK && learner) srlm_comm_phase(comm, "learning of iteration %d", t);
    srlm_timer learn_tm;
    srlm_timer_start(&learn_tm);
    if (st == SRLM_OK && learner) st = sr_learn(c, t, sh, stale, &rows[t]);
    if (learner) rows[t].learn_seconds = srlm_timer_elapsed(&learn_tm);
    if (learner && c->ck && c->ck->iteration == t) /* a LEARN resume: rollouts read from disk, a part of the learning */
      rows[t].rollout_seconds = rows[t].generate_seconds = rows[t].judge_seconds = rows[t].learn_seconds = NAN;
    for (int64_t i = 0; sh && i < c->ro.shards_max; i++) srlm_shard_free(&sh[i]);
    free(sh);
    SRLM_TRY(st);
    if (!colocated && learner) { /* the generators' and judges' last vote of this iteration */
      bool done;
      SRLM_TRY(sr_stop_vote(c, 1, &sig, &done));
    } else if (!colocated) {
      srlm_comm_phase(comm, "waiting for the learners of iteration %d", t);
      SRLM_TRY(wait_learners(c, t));
    }
    if (c->lead) {
      srlm_comm_phase(comm, "saving and evaluating M%d", t);
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
  const srlm_task_ops *task_ops = NULL;
  if (cfg->task.name != SRLM_CFG_TASK_NONE) {
    task_ops = srlm_task_find(srlm_config_enum_name("task.name", (int)cfg->task.name));
    if (!task_ops) return srlm_error(SRLM_ERR_INTERNAL, "task.name", "no built-in task behind this name");
  }
  const bool task = task_ops != NULL;
  if (!task && (!in->prompts || !in->llm))
    return srlm_error(SRLM_ERR_CONFIG, "data.prompts", "task.name is none: the iterations need a prompt set (data.prompts)");
  if (!task && cfg->judge.mode == SRLM_CFG_JUDGE_EXPECTED)
    return srlm_error(SRLM_ERR_CONFIG, "judge.mode", "expected needs a built-in task's judge format (its score "
                      "tokens); a prompt set's judgments are parsed with judge.score_regex (judge.mode: regex)");
  const char *src_name = srlm_config_enum_name("judge.source", (int)cfg->judge.source);
  if (!task && cfg->judge.source != SRLM_CFG_SOURCE_MODEL && cfg->judge.source != SRLM_CFG_SOURCE_BLEU &&
      cfg->judge.source != SRLM_CFG_SOURCE_NONE &&
      cfg->data.checker == SRLM_CFG_CHECKER_NONE)
    return srlm_error(SRLM_ERR_CONFIG, "judge.source", "%s needs a checker: a built-in task (task.name) or a prompt "
                      "set's data.checker", src_name);
  if (!task && cfg->judge.source == SRLM_CFG_SOURCE_BLEU) { /* every prompt needs its references */
    const srlm_prompt_set *ps = in->prompts;
    for (int64_t i = 0; i < ps->n; i++)
      if (!ps->ref_offsets || ps->ref_offsets[i + 1] == ps->ref_offsets[i])
        return srlm_error(SRLM_ERR_CONFIG, "judge.source", "bleu needs reference answers: %s line %lld has no "
                          "\"reference\" (a string or a list of strings; srlm task prompts --reference writes them)",
                          cfg->data.prompts, (long long)ps->line[i]);
  }
  if (!task && cfg->judge.source == SRLM_CFG_SOURCE_BLEU && cfg->eval.best_of > 0 && in->eval_prompts &&
      !in->eval_prompts->ref_offsets)
    return srlm_error(SRLM_ERR_CONFIG, "eval.best_of", "scores with judge.source bleu, and the eval prompts %s have no "
                      "\"reference\" (srlm task prompts --reference writes them)", cfg->data.eval_prompts);
  sr_ctx c = {.cfg = cfg, .comm = comm, .run_dir = in->run_dir, .tok_dir = in->tok_dir, .rows = rows,
              .lead = srlm_comm_rank(comm) == 0, .eval = task ? NULL : in->eval_prompts};
  c.ro = (sr_rollout){.cfg = cfg, .m = m, .tok = tok, .prompts = task ? NULL : in->prompts, .task = task_ops, .llm = in->llm,
                      .K = cfg->generate.samples_per_prompt, .max_batch = in->max_batch};
  /* the text judge decodes in the same slots (its own default is for callers without a plan) */
  if (in->llm && in->max_batch > 0) srlm_llm_judge_set_max_batch(in->llm, in->max_batch);
  /* a generation call's cache holds no more positions than the plan's: a judge prompt longer
     than the plan's bound gets fewer slots, not an out-of-memory error halfway (a judge reward
     of ARGS decoding nests a second call, which the plan does not count) */
  if (in->kv_positions > 0) srlm_model_set_kv_budget(m, in->kv_positions);
  const int64_t bos = srlm_model_get_config(m)->bos_token_id;
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
  /* SAR's answer-alone pass starts from BOS, or where the model has none the first end id */
  c.ro.bos = bos >= 0 ? (int32_t)bos : c.ro.stops[0];
  if (cfg->meta.enabled && !task) SRLM_TRY(srlm_llm_meta_create(cfg, in->llm, &c.ro.meta));
  c.ro.shards = (c.ro.n + cfg->roles.shard_prompts - 1) / cfg->roles.shard_prompts;
  if (cfg->train.loss == SRLM_CFG_LOSS_GRPO && cfg->train.grpo_equal_groups == SRLM_CFG_GRPO_EQUAL_REFILL)
    c.ro.refill_cap = cfg->train.grpo_refill_prompts > 0 ? cfg->train.grpo_refill_prompts : c.ro.n;
  c.ro.shards_max = c.ro.shards + (c.ro.refill_cap + cfg->roles.shard_prompts - 1) / cfg->roles.shard_prompts;
  c.n_params = (int64_t)srlm_model_num_params(m);
  const bool colocated = srlm_comm_colocated(comm);
  const bool learner = srlm_comm_has_role(comm, SRLM_ROLE_LEARNER);
  memset(rows, 0, (size_t)(cfg->run.iterations + 1) * sizeof *rows);
  for (int t = 0; t <= cfg->run.iterations; t++) { /* NaN: not evaluated (eval.every) or no checker */
    rows[t].accuracy = rows[t].sample_accuracy = rows[t].judge_agreement = rows[t].eval_score =
        rows[t].pair_accuracy = rows[t].mean_score = rows[t].sar_mean = rows[t].bleu_mean = rows[t].verifier_right =
            rows[t].anchor_distance = NAN;
    rows[t].pair_weight_mean = rows[t].consistency_mean = rows[t].length_alpha = rows[t].mean_response_tokens = NAN;
  }
  c.yaml = srlm_config_to_yaml(cfg, 0);
  c.learn_steps = srlm_xcalloc((size_t)cfg->run.iterations + 1, sizeof *c.learn_steps);
  srlm_checkpoint ck = {0};
  int start = 1;
  srlm_status st = SRLM_OK;
  if (learner && cfg->train.reference == SRLM_CFG_REFERENCE_EMA) st = srlm_engine_anchor_create(m, &c.anchor); /* at M0 */
  /* ARGS's implicit reward on the ranks that generate: the reference is generate.args_reference, or M0 (a copy of the
     weights every rank starts from, taken before any resume or broadcast changes them). It only scores: no fp32
     master (a bf16 copy of M0 is M0's compute copy, the weights M0 decodes with) */
  if (st == SRLM_OK && cfg->generate.args_reward == SRLM_CFG_ARGS_IMPLICIT &&
      (colocated || srlm_comm_has_role(comm, SRLM_ROLE_GENERATOR)))
    st = cfg->generate.args_reference[0]
             ? srlm_model_load_for(cfg->generate.args_reference, srlm_model_backend(m), srlm_model_dtype(m),
                                   SRLM_MODEL_DECODE, &c.ro.args_ref)
             : srlm_model_clone(m, SRLM_MODEL_DECODE, &c.ro.args_ref);
  if (st == SRLM_OK) st = resume_point(&c, in, &ck, &start);
  if (st == SRLM_OK) st = run_from(&c, start, colocated, learner);
  srlm_model_free(c.anchor);
  srlm_model_free(c.ro.args_ref);
  free(c.master_host);
  free(c.anchor_host);
  if (c.metrics) fclose(c.metrics);
  srlm_status tb_st = srlm_tfevents_close(c.tb);
  if (st == SRLM_OK) st = tb_st;
  free(c.learn_steps);
  srlm_llm_meta_free(c.ro.meta);
  srlm_checkpoint_free(&ck);
  free(c.yaml);
  return st;
}
