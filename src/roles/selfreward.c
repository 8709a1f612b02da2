/* The self-rewarding iterations on a built-in task, colocated: this process generates,
 * judges and learns in turn. Conventions in include/srlm/selfreward.h. The checker is
 * called only by the evaluation (and for the reported pair accuracy), never for data
 * that reaches the learner. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/generate.h"
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
  const int n = cfg->task.eval_prompts;
  row->accuracy = row->sample_accuracy = row->judge_agreement = NAN;
  if (n == 0) return SRLM_OK;
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

typedef struct iter_data {
  int n, K;
  srlm_task_puzzle *p;     /* (n) */
  srlm_token_ids prompt_ids;
  int64_t *prompt_off;     /* (n + 1) */
  srlm_gen_result *res;    /* (n * K) */
  srlm_task_judge_result *judged; /* (n * K) */
  double *score;           /* (n * K) NaN = unscored */
} iter_data;

static void iter_data_free(iter_data *d) {
  for (int64_t i = 0; d->res && i < (int64_t)d->n * d->K; i++) srlm_gen_result_free(&d->res[i]);
  free(d->res);
  free(d->judged);
  free(d->score);
  free(d->p);
  free(d->prompt_off);
  srlm_token_ids_free(&d->prompt_ids);
}

static srlm_status phase_generate(const srlm_config *cfg, srlm_model *m, srlm_tokenizer *tok, int t, int32_t eos,
                                  iter_data *d) {
  srlm_timer tm;
  srlm_timer_start(&tm);
  const int n = d->n, K = d->K;
  d->p = srlm_xmalloc((size_t)n * sizeof *d->p);
  d->prompt_off = srlm_xmalloc((size_t)(n + 1) * sizeof *d->prompt_off);
  d->prompt_off[0] = 0;
  for (int i = 0; i < n; i++) {
    srlm_task_puzzle_make((uint64_t)cfg->run.seed, SRLM_TASK_SPLIT_TRAIN, (uint64_t)(t - 1) * (uint64_t)n + (uint64_t)i,
                          &d->p[i]);
    char text[SRLM_TASK_PROMPT_LEN + 1];
    srlm_task_prompt(&d->p[i], text);
    SRLM_TRY(srlm_tokenizer_encode(tok, text, strlen(text), &d->prompt_ids));
    d->prompt_off[i + 1] = (int64_t)d->prompt_ids.n;
  }
  const int64_t N = (int64_t)n * K;
  srlm_gen_request *req = srlm_xmalloc((size_t)N * sizeof *req);
  for (int i = 0; i < n; i++)
    for (int k = 0; k < K; k++)
      req[(int64_t)i * K + k] =
          (srlm_gen_request){d->prompt_ids.ids + d->prompt_off[i], d->prompt_off[i + 1] - d->prompt_off[i],
                             ((uint64_t)SRLM_SR_RNG_GENERATE << 48) | ((uint64_t)t << 32) | (uint64_t)(i * K + k)};
  d->res = srlm_xcalloc((size_t)N, sizeof *d->res);
  srlm_generate_params gp = srlm_generate_params_default();
  gp.sampler.temperature = (float)cfg->generate.temperature;
  gp.sampler.top_p = (float)cfg->generate.top_p;
  gp.sampler.top_k = cfg->generate.top_k;
  gp.sampler.min_p = (float)cfg->generate.min_p;
  gp.sampler.seed = (uint64_t)cfg->run.seed;
  gp.max_new_tokens = cfg->generate.max_new_tokens;
  gp.max_batch = SR_MAX_BATCH;
  gp.eos_ids = &eos;
  gp.n_eos = 1;
  gp.tok = tok;
  srlm_generate_stats gs;
  srlm_status st = srlm_generate(m, &gp, (int)N, req, d->res, &gs);
  free(req);
  SRLM_TRY(st);
  SRLM_INFO("iteration %d generate: %d prompts x %d samples, %lld tokens, %.0f samples/s (%.1f s)", t, n, K,
            (long long)gs.new_tokens, (double)N / srlm_timer_elapsed(&tm), srlm_timer_elapsed(&tm));
  return SRLM_OK;
}

static srlm_status phase_judge(const srlm_config *cfg, srlm_model *m, srlm_tokenizer *tok, int t, iter_data *d,
                               double *mean_score) {
  srlm_timer tm;
  srlm_timer_start(&tm);
  const int64_t N = (int64_t)d->n * d->K;
  srlm_task_puzzle *pp = srlm_xmalloc((size_t)N * sizeof *pp);
  const char **cand = srlm_xmalloc((size_t)N * sizeof *cand);
  for (int64_t j = 0; j < N; j++) {
    pp[j] = d->p[j / d->K];
    cand[j] = d->res[j].text ? d->res[j].text : "";
  }
  d->judged = srlm_xcalloc((size_t)N, sizeof *d->judged);
  d->score = srlm_xmalloc((size_t)N * sizeof *d->score);
  srlm_status st = srlm_task_judge(m, tok, SR_MAX_BATCH, SRLM_TASK_RATIONALE_GREEDY, (int)N, pp, cand, d->judged);
  free(pp);
  free(cand);
  SRLM_TRY(st);
  int64_t unparsed = 0;
  double sum = 0;
  for (int64_t j = 0; j < N; j++) {
    const srlm_task_judge_result *r = &d->judged[j];
    if (cfg->judge.mode == SRLM_CFG_JUDGE_EXPECTED)
      d->score[j] = r->expected;
    else
      d->score[j] = r->greedy_score > 0 ? (double)r->greedy_score : NAN;
    unparsed += r->greedy_score == 0;
    if (isfinite(d->score[j])) sum += d->score[j];
  }
  *mean_score = sum / (double)N;
  SRLM_INFO("iteration %d judge: %lld samples judged (%s scores, mean %.2f), %lld greedy judgments unparsable, "
            "%.0f judgments/s (%.1f s)",
            t, (long long)N, cfg->judge.mode == SRLM_CFG_JUDGE_EXPECTED ? "expected" : "greedy", *mean_score,
            (long long)unparsed, (double)N / srlm_timer_elapsed(&tm), srlm_timer_elapsed(&tm));
  return SRLM_OK;
}

/* The model's own parsable greedy judgments, up to judge.replay_per_verdict per verdict. */
static srlm_status build_replay(const srlm_config *cfg, srlm_tokenizer *tok, const iter_data *d, int32_t eos,
                                replay_buf *rb) {
  const int64_t N = (int64_t)d->n * d->K, cap = cfg->judge.replay_per_verdict;
  int64_t taken[2] = {0, 0};
  srlm_token_ids prompt = {0}, target = {0};
  srlm_status st = SRLM_OK;
  for (int64_t j = 0; j < N && st == SRLM_OK && (taken[0] < cap || taken[1] < cap); j++) {
    const srlm_task_judge_result *r = &d->judged[j];
    if (r->greedy_score == 0) continue;
    int v = r->greedy_score >= 3;
    if (taken[v] >= cap) continue;
    const char *cand = d->res[j].text ? d->res[j].text : "";
    char jp[SRLM_TASK_JUDGE_PROMPT_MAX + 1], judgment[SRLM_TASK_JUDGMENT_LEN + 2];
    size_t jl = srlm_task_judge_prompt(&d->p[j / d->K], cand, strlen(cand), jp);
    snprintf(judgment, sizeof judgment, "%s%d", r->rationale, r->greedy_score);
    srlm_token_ids_clear(&prompt);
    srlm_token_ids_clear(&target);
    st = srlm_tokenizer_encode(tok, jp, jl, &prompt);
    if (st == SRLM_OK) st = srlm_tokenizer_encode(tok, judgment, strlen(judgment), &target);
    if (st == SRLM_OK) {
      replay_add(rb, &prompt, &target, eos);
      taken[v]++;
    }
  }
  srlm_token_ids_free(&prompt);
  srlm_token_ids_free(&target);
  return st;
}

typedef struct learn_log {
  FILE *metrics;
  int iteration;
  int log_every;
} learn_log;

static srlm_status on_pref_step(const srlm_pref_step_info *s, void *user) {
  learn_log *l = user;
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
  json_object_set_new(o, "grad_norm", num(s->grad_norm));
  json_object_set_new(o, "lr", num(s->lr));
  json_object_set_new(o, "skipped", json_boolean(s->skipped));
  json_object_set_new(o, "tokens", json_integer(s->tokens));
  json_object_set_new(o, "tokens_per_s", num(s->step_seconds > 0 ? (double)s->tokens / s->step_seconds : NAN));
  return metrics_line(l->metrics, o);
}

static srlm_status phase_learn(const srlm_config *cfg, srlm_model *m, srlm_tokenizer *tok, int t, int32_t eos,
                               iter_data *d, FILE *metrics, srlm_sr_iteration *row) {
  srlm_timer tm;
  srlm_timer_start(&tm);
  const int K = d->K;
  srlm_pair_options po = {.min_margin = cfg->pairs.min_margin};
  srlm_pair_stats ps = {0};
  srlm_pref_pair *pairs = srlm_xmalloc((size_t)d->n * sizeof *pairs);
  int64_t np = 0, pair_ok = 0;
  const char **texts = srlm_xmalloc((size_t)K * sizeof *texts);
  srlm_status st = SRLM_OK;
  for (int i = 0; i < d->n && st == SRLM_OK; i++) {
    srlm_gen_result *r = d->res + (int64_t)i * K;
    for (int k = 0; k < K; k++) texts[k] = r[k].text ? r[k].text : "";
    srlm_pair pr;
    int made = 0;
    st = srlm_pairs_select(&po, K, d->score + (int64_t)i * K, texts, NULL, NULL, &pr, &made, &ps);
    if (st != SRLM_OK || !made) continue;
    pairs[np++] = (srlm_pref_pair){d->prompt_ids.ids + d->prompt_off[i], r[pr.chosen].ids, r[pr.rejected].ids,
                                   d->prompt_off[i + 1] - d->prompt_off[i], r[pr.chosen].n, r[pr.rejected].n};
    /* reported only: how often the judge's pair is right by the checker */
    pair_ok += srlm_task_check(&d->p[i], texts[pr.chosen], strlen(texts[pr.chosen])) &&
               !srlm_task_check(&d->p[i], texts[pr.rejected], strlen(texts[pr.rejected]));
  }
  free(texts);
  replay_buf rb = {0};
  if (st == SRLM_OK) st = build_replay(cfg, tok, d, eos, &rb);
  row->pairs = np;
  row->replay = rb.d.n;
  row->pair_accuracy = np ? (double)pair_ok / (double)np : NAN;
  if (st == SRLM_OK)
    SRLM_INFO("iteration %d pairs: %lld pairs from %lld prompts (%lld skipped with < 2 scores, %lld ties, %lld below "
              "min_margin, %lld equal texts); %lld replayed judgments",
              t, (long long)np, (long long)ps.prompts, (long long)ps.skipped_prompts, (long long)ps.dropped_tie,
              (long long)ps.dropped_margin, (long long)ps.dropped_equal_text, (long long)rb.d.n);
  double *ref = srlm_xmalloc((size_t)(2 * np + 1) * sizeof *ref);
  if (st == SRLM_OK && np > 0) st = srlm_pref_ref_logps(m, pairs, np, 16384, ref, ref + np);
  if (st == SRLM_OK && np > 0) {
    static const srlm_pref_loss k_kinds[] = {[SRLM_CFG_LOSS_DPO] = SRLM_PREF_DPO, [SRLM_CFG_LOSS_IPO] = SRLM_PREF_IPO,
                                             [SRLM_CFG_LOSS_SFT] = SRLM_PREF_SFT, [SRLM_CFG_LOSS_GRPO] = SRLM_PREF_DPO};
    if (cfg->train.loss == SRLM_CFG_LOSS_GRPO)
      st = srlm_error(SRLM_ERR_UNSUPPORTED, "train.loss", "grpo is not wired into the iterations yet (dpo, ipo, sft are)");
    srlm_pref_train_options o = {
        .loss = {.kind = k_kinds[cfg->train.loss], .beta = cfg->train.beta,
                 .label_smoothing = cfg->train.label_smoothing, .nll_weight = cfg->train.nll_weight},
        .batch_pairs = cfg->train.batch_size,
        .epochs = cfg->train.epochs,
        .seed = (uint64_t)cfg->run.seed + (uint64_t)t,
        .replay = rb.d.n ? &rb.d : NULL,
        .replay_batch = cfg->train.replay_batch,
        .replay_weight = cfg->train.replay_weight};
    srlm_optim_config_from_config(cfg, &o.optim);
    srlm_lr_schedule_from_config(cfg, 1, &o.schedule);
    learn_log ll = {metrics, t, cfg->train.log_every};
    o.on_step = on_pref_step;
    o.user = &ll;
    srlm_pref_summary sum;
    if (st == SRLM_OK) st = srlm_pref_train(m, pairs, np, ref, ref + np, &o, &sum);
    if (st == SRLM_OK) {
      row->loss_first = sum.first_loss;
      row->loss_last = sum.last_loss;
      SRLM_INFO("iteration %d learn: %lld steps (%lld skipped), loss %.4f -> %.4f, %.0f tokens/s (%.1f s)", t,
                (long long)sum.steps, (long long)sum.skipped, sum.first_loss, sum.last_loss,
                sum.seconds > 0 ? (double)sum.tokens / sum.seconds : 0, srlm_timer_elapsed(&tm));
    }
  } else if (st == SRLM_OK) {
    SRLM_WARN("iteration %d: no pairs: the model is left as it was", t);
  }
  free(ref);
  replay_free(&rb);
  free(pairs);
  return st;
}

srlm_status srlm_selfreward_run(const srlm_config *cfg, const char *run_dir, const char *tok_dir, srlm_model *m,
                                srlm_tokenizer *tok, FILE *metrics, srlm_sr_iteration *rows) {
  if (cfg->task.name != SRLM_CFG_TASK_SIGN_PUZZLE)
    return srlm_error(SRLM_ERR_UNSUPPORTED, "task.name", "the iterations run on a built-in task for now (sign_puzzle)");
  int32_t eos;
  SRLM_TRY(srlm_tokenizer_token_id(tok, SRLM_TASK_EOS_TEXT, strlen(SRLM_TASK_EOS_TEXT), &eos));
  memset(rows, 0, (size_t)(cfg->run.iterations + 1) * sizeof *rows);
  srlm_timer tm;
  srlm_timer_start(&tm);
  SRLM_TRY(evaluate(cfg, m, tok, 0, eos, &rows[0], metrics));
  rows[0].seconds = srlm_timer_elapsed(&tm);
  for (int t = 1; t <= cfg->run.iterations; t++) {
    srlm_timer_start(&tm);
    srlm_sr_iteration *row = &rows[t];
    row->iteration = t;
    iter_data d = {.n = cfg->task.prompts_per_iteration, .K = cfg->generate.samples_per_prompt};
    row->samples = (int64_t)d.n * d.K;
    srlm_status st = phase_generate(cfg, m, tok, t, eos, &d);
    if (st == SRLM_OK) st = phase_judge(cfg, m, tok, t, &d, &row->mean_score);
    if (st == SRLM_OK) st = phase_learn(cfg, m, tok, t, eos, &d, metrics, row);
    iter_data_free(&d);
    char dir[4200];
    if (st == SRLM_OK) {
      snprintf(dir, sizeof dir, "%s/iter_%d/model", run_dir, t);
      st = srlm_mkdirs(dir);
    }
    if (st == SRLM_OK) st = srlm_model_save(m, dir, SRLM_ST_F32);
    if (st == SRLM_OK) st = srlm_setup_copy_tokenizer_files(tok_dir, dir);
    if (st == SRLM_OK) st = evaluate(cfg, m, tok, t, eos, row, metrics);
    row->seconds = srlm_timer_elapsed(&tm);
    if (st == SRLM_OK) {
      double done = 0;
      for (int u = 1; u <= t; u++) done += rows[u].seconds;
      int left = cfg->run.iterations - t;
      SRLM_INFO("iteration %d/%d done in %.1f s%s; ETA %.0f s", t, cfg->run.iterations, row->seconds,
                left ? "" : " (last)", left * done / t);
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
      st = metrics_line(metrics, o);
    }
    SRLM_TRY(st);
  }
  return SRLM_OK;
}
