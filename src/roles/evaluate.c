/* The evaluation of M_t (sr_evaluate_model, when eval.every asks): on a built-in task
 * held-out accuracy and judge agreement by the checker, on a prompt set the model's own
 * judged score of its greedy answers. One "eval" line in metrics.jsonl each. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sr_internal.h"
#include "srlm/generate.h"
#include "srlm/llm_judge.h"
#include "srlm/selfreward.h"
#include "srlm/tasks.h"


/* eval.best_of: N samples for each of the n eval prompts (prompt i's ids are
 * ids[off[i] .. off[i+1]); a task's eval prompt texts p, or the eval prompt set ep), scored by
 * judge.source through the judge role's own code (sr_judge_shard on one shard of them),
 * the best of each prompt (the highest score, the lowest sample among equals; unscored
 * never win unless all are) checked by the checker. *acc NaN without a checker. */
static srlm_status best_of_accuracy(sr_ctx *c, int t, int n, const int32_t *ids, const int64_t *off,
                                    const char *const *p, const srlm_prompt_set *ep, double *acc) {
  const srlm_config *cfg = c->cfg;
  const int N = cfg->eval.best_of;
  *acc = NAN;
  if (N <= 0 || n <= 0) return SRLM_OK;
  if (ep && cfg->data.checker == SRLM_CFG_CHECKER_NONE) return SRLM_OK;
  sr_rollout ev = c->ro; /* the judge's view of the eval prompts: one shard of n prompts x N */
  ev.prompts = ep;
  ev.split = SRLM_TASK_SPLIT_EVAL;
  ev.n = n;
  ev.K = N;
  ev.shards = 1;
  ev.refill_cap = 0;
  srlm_gen_request *req = srlm_xmalloc((size_t)n * (size_t)N * sizeof *req);
  srlm_gen_result *res = srlm_xcalloc((size_t)n * (size_t)N, sizeof *res);
  for (int i = 0; i < n; i++)
    for (int k = 0; k < N; k++)
      req[i * N + k] = (srlm_gen_request){ids + off[i], off[i + 1] - off[i],
                                          ((uint64_t)SRLM_SR_RNG_BEST_OF << 48) | ((uint64_t)t << 32) |
                                              (uint64_t)(i * N + k)};
  srlm_generate_params gp = sr_sample_params(&c->ro);
  srlm_status st = srlm_generate(c->ro.m, &gp, n * N, req, res, NULL);
  srlm_shard sh;
  srlm_shard_init(&sh, t, t, 0);
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    int64_t row, rrow;
    st = srlm_shard_add_prompt(&sh, i, ids + off[i], off[i + 1] - off[i], &row);
    for (int k = 0; k < N && st == SRLM_OK; k++) {
      const srlm_gen_result *g = &res[i * N + k];
      uint32_t flags = g->stop == SRLM_STOP_EOS      ? SRLM_SHARD_F_EOS
                       : g->stop == SRLM_STOP_STRING ? SRLM_SHARD_F_STOP
                                                     : SRLM_SHARD_F_TRUNCATED;
      st = srlm_shard_add_response(&sh, row, k, g->ids, g->sample_logprobs, g->n, flags, &rrow);
    }
  }
  sr_judge_counts jc = {0};
  if (st == SRLM_OK) st = sr_judge_shard(&ev, &sh, &jc);
  int64_t right = 0;
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    int best = 0;
    for (int k = 1; k < N; k++) {
      int64_t a = (int64_t)i * N + k, b = (int64_t)i * N + best;
      int sa = (sh.flags[a] & SRLM_SHARD_F_SCORED) != 0, sb = (sh.flags[b] & SRLM_SHARD_F_SCORED) != 0;
      if (sa && (!sb || sh.mean_score[a] > sh.mean_score[b])) best = k;
    }
    int64_t j = (int64_t)i * N + best;
    if (!(sh.flags[j] & SRLM_SHARD_F_EOS)) continue;
    char *text = NULL;
    size_t len = 0;
    int ok = 0;
    st = sr_response_text(&ev, &sh, j, &text, &len);
    if (st == SRLM_OK && p)
      ok = c->ro.task->check(p[i], text, len);
    else if (st == SRLM_OK)
      st = sr_prompt_check(cfg, ep->instruction[i], text, len, &ok);
    free(text);
    right += ok;
  }
  if (st == SRLM_OK) *acc = (double)right / (double)n;
  srlm_shard_free(&sh);
  for (int64_t j = 0; j < (int64_t)n * N; j++) srlm_gen_result_free(&res[j]);
  free(res);
  free(req);
  return st;
}

/* Held-out accuracy (greedy) and judge agreement on one sampled answer per eval prompt,
 * through the built-in task's interface (tasks.h). */
static srlm_status evaluate(sr_ctx *c, const srlm_config *cfg, srlm_model *m, srlm_tokenizer *tok, int t, int32_t eos,
                            srlm_sr_iteration *row) {
  const srlm_task_ops *task = c->ro.task;
  const int n = task ? cfg->task.eval_prompts : 0;
  row->accuracy = row->sample_accuracy = row->judge_agreement = NAN;
  if (n == 0) return SRLM_OK; /* a prompt set has no checker: its iterations report judged scores */
  srlm_timer tm;
  srlm_timer_start(&tm);
  char(*q)[SRLM_TASK_TEXT_MAX + 1] = srlm_xmalloc((size_t)n * sizeof *q);
  const char **prompt = srlm_xmalloc((size_t)n * sizeof *prompt);
  for (int i = 0; i < n; i++) {
    task->prompt((uint64_t)cfg->run.seed, SRLM_TASK_SPLIT_EVAL, (uint64_t)i, q[i]);
    prompt[i] = q[i];
  }
  srlm_status st = srlm_task_accuracy(task, m, tok, c->ro.max_batch, n, prompt, NULL, NULL, &row->accuracy);
  /* one sample per prompt at temperature 1 for the judge */
  srlm_gen_request *req = srlm_xcalloc((size_t)n, sizeof *req);
  srlm_gen_result *res = srlm_xcalloc((size_t)n, sizeof *res);
  srlm_token_ids ids = {0};
  int64_t *off = srlm_xmalloc((size_t)(n + 1) * sizeof *off);
  off[0] = 0;
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    st = srlm_tokenizer_encode(tok, prompt[i], strlen(prompt[i]), &ids);
    off[i + 1] = (int64_t)ids.n;
  }
  for (int i = 0; i < n && st == SRLM_OK; i++)
    req[i] = (srlm_gen_request){ids.ids + off[i], off[i + 1] - off[i],
                                ((uint64_t)SRLM_SR_RNG_EVAL << 48) | ((uint64_t)t << 32) | (uint64_t)i};
  srlm_generate_params gp = srlm_generate_params_default();
  gp.sampler.temperature = 1.0f;
  gp.sampler.seed = (uint64_t)cfg->run.seed;
  gp.max_new_tokens = cfg->generate.max_new_tokens;
  gp.max_batch = c->ro.max_batch;
  gp.eos_ids = &eos;
  gp.n_eos = 1;
  gp.tok = tok;
  if (st == SRLM_OK) st = srlm_generate(m, &gp, n, req, res, NULL);
  const char **cand = srlm_xcalloc((size_t)n, sizeof *cand);
  int64_t sample_ok = 0;
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    cand[i] = res[i].text ? res[i].text : "";
    sample_ok += res[i].stop == SRLM_STOP_EOS && task->check(prompt[i], cand[i], strlen(cand[i]));
  }
  srlm_task_agreement ag;
  if (st == SRLM_OK) st = srlm_task_agreement_of(task, m, tok, c->ro.max_batch, n, prompt, cand, &ag);
  if (st == SRLM_OK) st = best_of_accuracy(c, t, n, ids.ids, off, prompt, NULL, &row->best_of_accuracy);
  if (st == SRLM_OK) {
    row->sample_accuracy = (double)sample_ok / n;
    row->judge_agreement = cfg->judge.mode == SRLM_CFG_JUDGE_EXPECTED ? ag.expected : ag.greedy;
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("eval"));
    json_object_set_new(o, "iteration", json_integer(t));
    json_object_set_new(o, "accuracy", sr_num(row->accuracy));
    if (cfg->eval.best_of > 0) {
      json_object_set_new(o, "best_of", json_integer(cfg->eval.best_of));
      json_object_set_new(o, "best_of_accuracy", sr_num(row->best_of_accuracy));
    }
    json_object_set_new(o, "judge_agreement", sr_num(row->judge_agreement));
    json_object_set_new(o, "sample_accuracy", sr_num(row->sample_accuracy));
    json_object_set_new(o, "judge_agreement_greedy", sr_num(ag.greedy));
    json_object_set_new(o, "judge_agreement_expected", sr_num(ag.expected));
    json_object_set_new(o, "judge_false_pos", json_integer(ag.false_pos));
    json_object_set_new(o, "judge_false_neg", json_integer(ag.false_neg));
    /* the greedy judgments of these samples that end without a score (judge format) */
    json_object_set_new(o, "judge_format_failures", json_integer(ag.unparsed));
    json_object_set_new(o, "prompts", json_integer(n));
    json_object_set_new(o, "seconds", json_real(srlm_timer_elapsed(&tm)));
    st = sr_metrics_line(c, o);
    SRLM_INFO("eval M%d: accuracy %.1f%% (greedy, %d held-out prompts), sample accuracy %.1f%%, judge agreement "
              "%.1f%% (%.1f s)", t, 100 * row->accuracy, n, 100 * row->sample_accuracy, 100 * row->judge_agreement,
              srlm_timer_elapsed(&tm));
    if (cfg->eval.best_of > 0)
      SRLM_INFO("eval M%d: best-of-%d accuracy %.1f%% (the best of %d samples by judge.source %s)", t, cfg->eval.best_of,
                100 * row->best_of_accuracy, cfg->eval.best_of,
                srlm_config_enum_name("judge.source", (int)cfg->judge.source));
  }
  for (int i = 0; i < n; i++) srlm_gen_result_free(&res[i]);
  free(cand);
  free(res);
  free(req);
  free(off);
  srlm_token_ids_free(&ids);
  free(prompt);
  free(q);
  return st;
}

/* A prompt set's evaluation (data.eval_prompts): one greedy answer per eval prompt (the
 * first eval.prompts, 0 = all), judged by the model's text judge; reports the mean judged
 * score, the model's own opinion of its answers. With a checker (data.checker) also the
 * accuracy of those answers (stopped at EOS and right by the checker) and the judge's
 * agreement with it (mean judged score >= the middle of [score_min, score_max] iff right;
 * an answer without a judged score counts as disagreeing). */
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
  gp.max_batch = c->ro.max_batch;
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
  /* best-of-N over the eval prompts' ids (ep->ids from ep->offsets[0] = 0 on) */
  if (st == SRLM_OK && n > 0)
    st = best_of_accuracy(c, t, (int)n, ep->ids, ep->offsets, NULL, ep, &row->best_of_accuracy);
  const double mid = 0.5 * (c->cfg->judge.score_min + c->cfg->judge.score_max);
  int64_t right = 0, agree = 0;
  const int checker = c->cfg->data.checker != SRLM_CFG_CHECKER_NONE;
  for (int64_t i = 0; i < n && st == SRLM_OK && checker; i++) {
    int ok = 0;
    if (res[i].stop == SRLM_STOP_EOS) st = sr_prompt_check(c->cfg, instr[i], resp[i], strlen(resp[i]), &ok);
    right += ok;
    agree += isfinite(mean[i]) && (mean[i] >= mid) == ok;
  }
  if (st == SRLM_OK) {
    double sum = 0;
    int64_t scored = 0;
    for (int64_t i = 0; i < n; i++)
      if (isfinite(mean[i])) {
        sum += mean[i];
        scored++;
      }
    row->eval_score = scored ? sum / (double)scored : NAN;
    if (checker && n > 0) {
      row->accuracy = (double)right / (double)n;
      row->judge_agreement = (double)agree / (double)n;
    }
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("eval"));
    json_object_set_new(o, "iteration", json_integer(t));
    json_object_set_new(o, "accuracy", sr_num(row->accuracy)); /* null without data.checker */
    if (c->cfg->eval.best_of > 0) {
      json_object_set_new(o, "best_of", json_integer(c->cfg->eval.best_of));
      json_object_set_new(o, "best_of_accuracy", sr_num(row->best_of_accuracy));
    }
    json_object_set_new(o, "judge_agreement", sr_num(row->judge_agreement));
    json_object_set_new(o, "mean_score", sr_num(row->eval_score));
    json_object_set_new(o, "scored", json_integer(scored));
    /* the text judge: no score found by judge.score_regex = the judgment is dropped */
    json_object_set_new(o, "judge_format_failures", json_integer(js.unparsable));
    json_object_set_new(o, "prompts", json_integer(n));
    json_object_set_new(o, "seconds", json_real(srlm_timer_elapsed(&tm)));
    st = sr_metrics_line(c, o);
    SRLM_INFO("eval M%d: mean self-judged score %.3f of the greedy answers to %lld eval prompts (%lld scored, %lld "
              "judgments without a score) (%.1f s)", t, row->eval_score, (long long)n, (long long)scored,
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
srlm_status sr_evaluate_model(sr_ctx *c, int t, srlm_sr_iteration *row) {
  const int every = c->cfg->eval.every;
  row->accuracy = row->sample_accuracy = row->judge_agreement = row->eval_score = row->best_of_accuracy = NAN;
  if (every <= 0 || (t % every != 0 && t != c->cfg->run.iterations)) return SRLM_OK;
  if (c->ro.prompts) return evaluate_prompts(c, t, row);
  return evaluate(c, c->cfg, c->ro.m, c->ro.tok, t, c->ro.eos, row);
}
