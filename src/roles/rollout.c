/* Generator and judge work on one rollout shard (conventions in rollout.h and
 * include/srlm/selfreward.h). The checker is called here only for judge.source
 * verifier or mix, where the config asks for a programmatic reward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rollout.h"
#include "srlm/memplan.h"
#include "srlm/args.h"
#include "srlm/countdown.h"
#include "srlm/generate.h"
#include "srlm/grpo.h"
#include "srlm/rewards.h"
#include "srlm/selfreward.h"
#include "srlm/tasks.h"


void sr_shard_range(const sr_rollout *r, int64_t s, int64_t *lo, int64_t *hi) {
  int64_t per = r->cfg->roles.shard_prompts;
  if (s >= r->shards) { /* an extra shard of refill */
    int64_t end = r->n + r->refill_cap, a = r->n + (s - r->shards) * per;
    *lo = a < end ? a : end;
    *hi = a + per < end ? a + per : end;
    return;
  }
  *lo = s * per < r->n ? s * per : r->n;
  *hi = (s + 1) * per < r->n ? (s + 1) * per : r->n;
}

static uint64_t train_index(int t, int n, int64_t i) { return (uint64_t)(t - 1) * (uint64_t)n + (uint64_t)i; }

/* The shard prompt_index of local prompt i of iteration t (an extra one: the reserve). */
static int64_t prompt_index(const sr_rollout *r, int t, int64_t i) {
  uint64_t g = i < r->n ? train_index(t, r->n, i)
                        : (uint64_t)r->cfg->run.iterations * (uint64_t)r->n + (uint64_t)(t - 1) * (uint64_t)r->refill_cap +
                              (uint64_t)(i - r->n);
  return r->prompts ? (int64_t)(g % (uint64_t)r->prompts->n) : (int64_t)g;
}

/* The RNG key (generation request seq id) of sample k of local prompt i. */
static uint64_t sample_key(const sr_rollout *r, int t, int64_t i, int k) {
  return ((uint64_t)SRLM_SR_RNG_GENERATE << 48) | ((uint64_t)t << 32) | (uint64_t)(i * r->K + k);
}

size_t sr_task_prompt(const sr_rollout *r, const srlm_shard *s, int64_t prompt_row, char out[SRLM_TASK_TEXT_MAX + 1]) {
  return r->task->prompt((uint64_t)r->cfg->run.seed, r->split, (uint64_t)s->prompt_index[prompt_row], out);
}

srlm_generate_params sr_sample_params(const sr_rollout *r) {
  const srlm_config *cfg = r->cfg;
  srlm_generate_params gp = srlm_generate_params_default();
  gp.sampler.temperature = (float)cfg->generate.temperature;
  gp.sampler.top_p = (float)cfg->generate.top_p;
  gp.sampler.top_k = cfg->generate.top_k;
  gp.sampler.min_p = (float)cfg->generate.min_p;
  gp.sampler.seed = (uint64_t)cfg->run.seed;
  gp.max_new_tokens = cfg->generate.max_new_tokens;
  gp.max_batch = r->max_batch;
  gp.eos_ids = r->stops;
  gp.n_eos = r->n_stops;
  gp.tok = r->tok;
  return gp;
}

/* The shards of one sr_generate_shards call: where each one's requests start in the
 * call's request array, how many of them are still decoding, and their results. */
typedef struct gen_shards {
  const sr_rollout *r;
  int t;
  int64_t version;
  const int64_t *list;  /* (n) shard indices */
  int n;
  int64_t *first;       /* (n + 1) request offset of each shard's first prompt's sample 0 */
  int64_t *pending;     /* (n) requests not yet finished */
  const srlm_token_ids *ids;
  const int64_t *off;   /* (prompts + 1) prompt token offsets in ids, over all shards */
  int64_t *prompt0;     /* (n) the index into off of each shard's first prompt */
  srlm_gen_result *res;
  sr_shard_ready_fn ready;
  void *user;
} gen_shards;

/* Shard j's samples are all final: builds it and hands it to the caller. */
static srlm_status shard_done(gen_shards *q, int j) {
  const sr_rollout *r = q->r;
  int64_t lo, hi;
  sr_shard_range(r, q->list[j], &lo, &hi);
  srlm_shard sh;
  srlm_shard_init(&sh, q->version, q->t, q->list[j]);
  srlm_status st = SRLM_OK;
  for (int64_t i = lo; i < hi && st == SRLM_OK; i++) {
    const int64_t pi = q->prompt0[j] + (i - lo);
    int64_t row;
    st = srlm_shard_add_prompt(&sh, prompt_index(r, q->t, i), q->ids->ids + q->off[pi], q->off[pi + 1] - q->off[pi],
                               &row);
    for (int k = 0; k < r->K && st == SRLM_OK; k++) {
      const srlm_gen_result *g = &q->res[q->first[j] + (i - lo) * r->K + k];
      uint32_t flags = g->stop == SRLM_STOP_EOS      ? SRLM_SHARD_F_EOS
                       : g->stop == SRLM_STOP_STRING ? SRLM_SHARD_F_STOP
                                                     : SRLM_SHARD_F_TRUNCATED;
      int64_t rrow;
      st = srlm_shard_add_response(&sh, row, k, g->ids, g->sample_logprobs, g->n, flags, &rrow);
    }
  }
  for (int64_t x = q->first[j]; x < q->first[j + 1]; x++) srlm_gen_result_free(&q->res[x]);
  if (st != SRLM_OK) {
    srlm_shard_free(&sh);
    return st;
  }
  return q->ready(q->user, &sh);
}

/* srlm_generate's on_done: request req is final; its shard goes when it was the last. */
static srlm_status request_done(void *user, int req, srlm_gen_result *res) {
  gen_shards *q = user;
  (void)res;
  int j = 0; /* the shard of req: the last whose first request is <= req */
  for (int lo = 0, hi = q->n - 1; lo <= hi;) {
    const int mid = (lo + hi) / 2;
    if (q->first[mid] <= req) j = mid, lo = mid + 1;
    else hi = mid - 1;
  }
  return --q->pending[j] == 0 ? shard_done(q, j) : SRLM_OK;
}

srlm_status sr_generate_shards(const sr_rollout *r, int t, const int64_t *list, int n, int64_t version,
                               sr_shard_ready_fn ready, void *user, int64_t *new_tokens) {
  const srlm_config *cfg = r->cfg;
  const int K = r->K;
  gen_shards q = {.r = r, .t = t, .version = version, .list = list, .n = n, .ready = ready, .user = user};
  q.first = srlm_xmalloc((size_t)(n + 1) * sizeof *q.first);
  q.pending = srlm_xmalloc((size_t)(n + 1) * sizeof *q.pending);
  q.prompt0 = srlm_xmalloc((size_t)(n + 1) * sizeof *q.prompt0);
  int64_t np = 0;
  for (int j = 0; j < n; j++) {
    int64_t lo, hi;
    sr_shard_range(r, list[j], &lo, &hi);
    q.prompt0[j] = np;
    q.first[j] = np * K;
    q.pending[j] = (hi - lo) * K;
    np += hi - lo;
  }
  q.first[n] = np * K;
  const int64_t N = np * K;
  srlm_token_ids ids = {0};
  int64_t *off = srlm_xmalloc((size_t)(np + 1) * sizeof *off);
  off[0] = 0;
  srlm_status st = N > INT32_MAX ? srlm_error(SRLM_ERR_RANGE, "generate", "%lld samples in one call", (long long)N)
                                 : SRLM_OK;
  /* every prompt of the shards, in order, and each one's K requests */
  srlm_gen_request *req = srlm_xmalloc((size_t)(N + 1) * sizeof *req);
  const char **preq = NULL; /* ARGS with the policy's judge: each request's task prompt */
  char(*ptext)[SRLM_TASK_TEXT_MAX + 1] = NULL;
  if (cfg->generate.args_reward == SRLM_CFG_ARGS_JUDGE) {
    ptext = srlm_xmalloc((size_t)(np + 1) * sizeof *ptext);
    preq = srlm_xmalloc((size_t)(N + 1) * sizeof *preq);
  }
  for (int j = 0; j < n && st == SRLM_OK; j++) {
    int64_t lo, hi;
    sr_shard_range(r, list[j], &lo, &hi);
    for (int64_t i = lo; i < hi && st == SRLM_OK; i++) {
      const int64_t pi = q.prompt0[j] + (i - lo);
      if (r->prompts) {
        const srlm_prompt_set *ps = r->prompts;
        int64_t g = prompt_index(r, t, i);
        for (int64_t x = ps->offsets[g]; x < ps->offsets[g + 1]; x++) srlm_token_ids_push(&ids, ps->ids[x]);
      } else {
        char text[SRLM_TASK_TEXT_MAX + 1];
        const size_t len =
            r->task->prompt((uint64_t)cfg->run.seed, SRLM_TASK_SPLIT_TRAIN, (uint64_t)prompt_index(r, t, i), text);
        st = srlm_tokenizer_encode(r->tok, text, len, &ids);
        if (ptext) memcpy(ptext[pi], text, len + 1);
      }
      off[pi + 1] = (int64_t)ids.n;
      for (int k = 0; k < K; k++) {
        req[pi * K + k] = (srlm_gen_request){.n_prompt = off[pi + 1] - off[pi], .seq_id = sample_key(r, t, i, k)};
        if (preq) preq[pi * K + k] = ptext[pi];
      }
    }
  }
  for (int64_t x = 0; x < N && st == SRLM_OK; x++) /* the pointers, now that ids holds every prompt */
    req[x].prompt = ids.ids + off[x / K];
  q.ids = &ids;
  q.off = off;
  q.res = srlm_xcalloc((size_t)N + 1, sizeof *q.res);
  srlm_generate_params gp = sr_sample_params(r);
  gp.on_done = request_done;
  gp.done_user = &q;
  /* ARGS decoding (generate.args_reward): the implicit reward's reference, or the policy's
     own judge of each request's task prompt */
  srlm_args_params ap = {.weight = cfg->generate.args_weight, .top_k = cfg->generate.args_top_k};
  srlm_args_judge aj = {.judge = r->m, .tok = r->tok, .task = r->task, .n_requests = (int)N, .prompts = preq};
  if (cfg->generate.args_reward == SRLM_CFG_ARGS_IMPLICIT) {
    ap.ref = r->args_ref;
    gp.args = &ap;
  } else if (cfg->generate.args_reward == SRLM_CFG_ARGS_JUDGE) {
    ap.reward = srlm_args_judge_reward;
    ap.user = &aj;
    gp.args = &ap;
  }
  srlm_generate_stats gs = {0};
  if (st == SRLM_OK && N > 0) st = srlm_generate(r->m, &gp, (int)N, req, q.res, &gs);
  for (int j = 0; j < n && st == SRLM_OK; j++) /* shards without prompts: nothing to wait for */
    if (q.first[j] == q.first[j + 1]) st = shard_done(&q, j);
  if (st != SRLM_OK) /* srlm_generate freed its results; a failed shard_done may have left some */
    for (int64_t x = 0; x < N; x++) srlm_gen_result_free(&q.res[x]);
  free(ptext);
  free(preq);
  free(q.res);
  free(req);
  free(off);
  free(q.first);
  free(q.pending);
  free(q.prompt0);
  srlm_token_ids_free(&ids);
  if (new_tokens) *new_tokens = gs.new_tokens;
  return st;
}

srlm_status sr_response_text(const sr_rollout *r, const srlm_shard *s, int64_t row, char **text, size_t *len) {
  int64_t a = s->response_offsets[row], b = s->response_offsets[row + 1];
  if (b > a && (s->flags[row] & SRLM_SHARD_F_EOS)) b--; /* the stop token */
  return srlm_tokenizer_decode(r->tok, s->response_ids + a, (size_t)(b - a), text, len);
}

int sr_answer_key(const sr_rollout *r, const srlm_shard *s, int64_t row, const char *text, size_t len,
                  char key[SR_ANSWER_KEY_MAX]) {
  if (!(s->flags[row] & SRLM_SHARD_F_EOS)) return 0; /* cut off: no final answer */
  const int64_t pr = s->response_prompt[row];
  if (!r->prompts) { /* the built-in task's rule */
    char q[SRLM_TASK_TEXT_MAX + 1];
    sr_task_prompt(r, s, pr, q);
    return r->task->answer_key(q, text, len, key);
  }
  if (r->cfg->data.checker != SRLM_CFG_CHECKER_COUNTDOWN) return 0;
  /* Countdown prompt files: the built-in Countdown's rule on the prompt's text */
  return srlm_cd_task_ops.answer_key(r->prompts->instruction[s->prompt_index[pr]], text, len, key);
}

srlm_status sr_prompt_check(const srlm_config *cfg, const char *instruction, const char *answer, size_t len, int *ok) {
  *ok = 0;
  if (cfg->data.checker != SRLM_CFG_CHECKER_COUNTDOWN)
    return srlm_error(SRLM_ERR_CONFIG, "data.checker", "none: the prompt set has no checker");
  srlm_cd_puzzle p;
  srlm_status st = srlm_cd_prompt_parse(instruction, strlen(instruction), &p);
  if (st != SRLM_OK) return srlm_error_context(st, "data.checker countdown: prompt \"%.40s\"", instruction);
  *ok = srlm_cd_check(&p, answer, len, NULL) == SRLM_CD_OK;
  return SRLM_OK;
}

/* The answer tokens of response j: its ids without a final EOS token. */
static void answer_span(const srlm_shard *s, int64_t j, int64_t *a, int64_t *b) {
  *a = s->response_offsets[j];
  *b = s->response_offsets[j + 1];
  if (*b > *a && (s->flags[j] & SRLM_SHARD_F_EOS)) (*b)--;
}

/* SAR's R_SA of every response of s (rewards.h): two passes of the judge's copy of the
 * policy (the weights the samples came from), the answer after the prompt and after the
 * start token r->bos; nll (2 R, may be NULL) gets each response's two mean NLLs. */
static srlm_status sar_terms(const sr_rollout *r, const srlm_shard *s, double *rsa, double *nll) {
  const int64_t R = s->n_responses;
  srlm_grpo_seq *q = srlm_xmalloc((size_t)(2 * R + 1) * sizeof *q);
  int64_t n = 0, tokens = 0;
  for (int64_t j = 0; j < R; j++) {
    int64_t a, b, pr = s->response_prompt[j];
    answer_span(s, j, &a, &b);
    rsa[j] = 0;
    if (nll) nll[2 * j] = nll[2 * j + 1] = 0;
    if (b == a) continue; /* an empty answer: R_SA 0 */
    q[n++] = (srlm_grpo_seq){s->prompt_ids + s->prompt_offsets[pr], s->response_ids + a, NULL,
                             s->prompt_offsets[pr + 1] - s->prompt_offsets[pr], b - a};
    q[n++] = (srlm_grpo_seq){&r->bos, s->response_ids + a, NULL, 1, b - a};
    tokens += 2 * (b - a);
  }
  float *lp = srlm_xmalloc((size_t)(tokens + 1) * sizeof *lp);
  srlm_status st = n > 0 ? srlm_grpo_logps(r->m, q, n, SRLM_MEMPLAN_LOGPROB_TOKENS, lp) : SRLM_OK;
  for (int64_t j = 0, at = 0; j < R && st == SRLM_OK; j++) {
    int64_t a, b;
    answer_span(s, j, &a, &b);
    if (b == a) continue;
    double nq, na;
    rsa[j] = srlm_sar_reward(lp + at, lp + at + (b - a), b - a, &nq, &na);
    if (nll) {
      nll[2 * j] = nq;
      nll[2 * j + 1] = na;
    }
    at += 2 * (b - a);
  }
  free(lp);
  free(q);
  return st;
}

/* The judgments and the reward of a source without a model judgment (rollout.h): ok the
 * checker's verdict (verifier, sar), rsa and nll2 SAR's term and NLLs, bleu the BLEU. */
static srlm_status add_reward_judgments(const srlm_config *cfg, srlm_shard *s, int ok, double rsa, const double *nll2,
                                        double bleu, double *score) {
  const srlm_cfg_judge_source src = cfg->judge.source;
  const double lo = cfg->judge.score_min, hi = cfg->judge.score_max, verifier = ok ? hi : lo;
  char text[160];
  if (src == SRLM_CFG_SOURCE_BLEU) {
    snprintf(text, sizeof text, "bleu %.6f", bleu);
    *score = lo + (hi - lo) * bleu;
    return srlm_shard_add_judgment(s, text, NULL, 0, (float)bleu);
  }
  SRLM_TRY(srlm_shard_add_judgment(s, ok ? "checker: right" : "checker: wrong", NULL, 0, (float)verifier));
  *score = verifier;
  if (src != SRLM_CFG_SOURCE_SAR) return SRLM_OK;
  snprintf(text, sizeof text, "sar %+.6f (answer NLL %.6f after the prompt, %.6f alone)", rsa, nll2[0], nll2[1]);
  *score = verifier + cfg->judge.sar_weight * (hi - lo) * rsa;
  return srlm_shard_add_judgment(s, text, NULL, 0, (float)rsa);
}

/* A prompt set's responses: the text judge, judge.samples judgments each, keyed by the
 * sample's generation key (so a judgment does not depend on where it runs); with
 * judge.source verifier the checker alone (data.checker), with mix both. */
static srlm_status judge_text(const sr_rollout *r, srlm_shard *s, sr_judge_counts *jc) {
  const int64_t R = s->n_responses;
  const srlm_cfg_judge_source src = r->cfg->judge.source;
  const int model = sr_source_has_model(src);
  const int J = model ? r->cfg->judge.samples : src == SRLM_CFG_SOURCE_SAR ? 2 : 1;
  char **resp = srlm_xcalloc((size_t)R + 1, sizeof *resp);
  const char **instr = srlm_xcalloc((size_t)R + 1, sizeof *instr);
  uint64_t *keys = srlm_xmalloc((size_t)(R + 1) * sizeof *keys);
  srlm_status st = SRLM_OK;
  int64_t lo, hi;
  sr_shard_range(r, s->shard_index, &lo, &hi);
  for (int64_t j = 0; j < R && st == SRLM_OK; j++) {
    size_t len;
    int64_t pr = s->response_prompt[j];
    instr[j] = r->prompts->instruction[s->prompt_index[pr]];
    keys[j] = sample_key(r, (int)s->iteration, lo + pr, (int)s->sample_index[j]);
    st = sr_response_text(r, s, j, &resp[j], &len);
  }
  srlm_llm_judgment *out = srlm_xcalloc((size_t)(R * J + 1), sizeof *out);
  double *mean = srlm_xmalloc((size_t)(R + 1) * sizeof *mean);
  double *rsa = srlm_xcalloc((size_t)R + 1, sizeof *rsa), *nll = srlm_xcalloc((size_t)(2 * R + 1), sizeof *nll);
  srlm_judge_stats js = {0};
  if (st == SRLM_OK && R > 0 && model)
    st = srlm_llm_judge_run(r->llm, r->m, (int)R, instr, (const char *const *)resp, keys, J, out, mean, &js);
  if (st == SRLM_OK && src == SRLM_CFG_SOURCE_SAR) st = sar_terms(r, s, rsa, nll);
  if (st == SRLM_OK) st = srlm_shard_set_judgments_per_response(s, J);
  for (int64_t j = 0; j < R && st == SRLM_OK; j++) {
    double verifier = NAN;
    int ok = 0;
    if (src != SRLM_CFG_SOURCE_MODEL && src != SRLM_CFG_SOURCE_BLEU) {
      if (s->flags[j] & SRLM_SHARD_F_EOS) st = sr_prompt_check(r->cfg, instr[j], resp[j], strlen(resp[j]), &ok);
      verifier = ok ? r->cfg->judge.score_max : r->cfg->judge.score_min;
    }
    if (!model) {
      double bleu = 0;
      if (src == SRLM_CFG_SOURCE_BLEU) { /* srlm_selfreward_run checked that every prompt has references */
        const srlm_prompt_set *ps = r->prompts;
        const int64_t g = s->prompt_index[s->response_prompt[j]], r0 = ps->ref_offsets[g];
        bleu = srlm_bleu(resp[j], strlen(resp[j]), (const char *const *)ps->refs + r0, NULL,
                         (int)(ps->ref_offsets[g + 1] - r0), (srlm_bleu_tokens)r->cfg->judge.bleu_tokenize);
      }
      if (st == SRLM_OK) st = add_reward_judgments(r->cfg, s, ok, rsa[j], nll + 2 * j, bleu, &mean[j]);
    } else {
      for (int q = 0; q < J && st == SRLM_OK; q++) {
        const srlm_llm_judgment *o = &out[j * J + q];
        st = srlm_shard_add_judgment(s, o->text, o->ids, o->n_ids, (float)o->score);
      }
      if (src == SRLM_CFG_SOURCE_MIX) /* a judgment without a score leaves the checker's alone */
        mean[j] = isfinite(mean[j]) ? (1 - r->cfg->judge.verifier_weight) * mean[j] + r->cfg->judge.verifier_weight * verifier
                                    : verifier;
    }
    if (isfinite(mean[j])) {
      s->mean_score[j] = (float)mean[j];
      s->flags[j] |= SRLM_SHARD_F_SCORED;
      jc->score_sum += mean[j];
    } else {
      jc->unscored++;
    }
  }
  jc->responses += R;
  jc->judgments += js.judgments;
  jc->format_failures += js.unparsable;
  if (js.limit_hits) /* counted apart: the pattern's cost, not the judgments' form */
    SRLM_WARN("shard %lld: %lld judgments not parsed: judge.score_regex hit PCRE2's match or depth limit "
              "(%u steps, depth %u); simplify the pattern", (long long)s->shard_index, (long long)js.limit_hits,
              SRLM_JUDGE_MATCH_LIMIT, SRLM_JUDGE_DEPTH_LIMIT);
  srlm_llm_judgments_free(out, model ? R * J : 0);
  free(out);
  free(mean);
  free(rsa);
  free(nll);
  for (int64_t j = 0; j < R; j++) free(resp[j]);
  free(resp);
  free(instr);
  free(keys);
  return st;
}

void sr_judge_health(const sr_rollout *r, const srlm_shard *s, srlm_shard_judge_health *h) {
  if (!sr_source_has_model(r->cfg->judge.source)) return;
  srlm_shard_judge_health_add(s, r->prompts ? NULL : r->task->judgment_ok, h);
}

/* Meta-Rewarding on a task (meta.enabled): judge.samples judgments per response, each
 * sampled at judge.temperature in the task's judge format (rationale, then the score
 * digit; at most the task's judgment_max_new tokens, EOS included), keyed like the text judge's
 * (srlm_llm_judge_seq_id of the sample's key, so a judgment does not depend on where it
 * runs). A judgment's score is its parsed score digit (NaN when it does not parse); the
 * response's score the mean of its parsed ones. The checker is not used. */
static srlm_status judge_task_sampled(const sr_rollout *r, srlm_shard *s, sr_judge_counts *jc) {
  const srlm_config *cfg = r->cfg;
  const int64_t R = s->n_responses;
  const int J = cfg->judge.samples;
  srlm_token_ids ids = {0};
  int64_t *off = srlm_xmalloc((size_t)(R + 1) * sizeof *off);
  off[0] = 0;
  srlm_status st = SRLM_OK;
  for (int64_t j = 0; j < R && st == SRLM_OK; j++) {
    char *cand = NULL, q[SRLM_TASK_TEXT_MAX + 1], jp[SRLM_TASK_TEXT_MAX + 1];
    size_t len = 0;
    sr_task_prompt(r, s, s->response_prompt[j], q);
    st = sr_response_text(r, s, j, &cand, &len);
    if (st == SRLM_OK) st = srlm_tokenizer_encode(r->tok, jp, r->task->judge_prompt(q, cand, len, jp), &ids);
    free(cand);
    off[j + 1] = (int64_t)ids.n;
  }
  const int64_t N = R * J;
  srlm_gen_request *req = srlm_xmalloc((size_t)(N + 1) * sizeof *req);
  int64_t lo, hi;
  sr_shard_range(r, s->shard_index, &lo, &hi);
  for (int64_t j = 0; j < R && st == SRLM_OK; j++) {
    const uint64_t key = sample_key(r, (int)s->iteration, lo + s->response_prompt[j], (int)s->sample_index[j]);
    for (int q = 0; q < J; q++)
      req[j * J + q] = (srlm_gen_request){ids.ids + off[j], off[j + 1] - off[j], srlm_llm_judge_seq_id(key, q)};
  }
  srlm_gen_result *res = srlm_xcalloc((size_t)N + 1, sizeof *res);
  srlm_generate_params gp = srlm_generate_params_default();
  gp.sampler.temperature = (float)cfg->judge.temperature;
  gp.sampler.seed = (uint64_t)cfg->run.seed;
  gp.max_new_tokens = r->task->judgment_max_new;
  gp.max_batch = r->max_batch;
  gp.eos_ids = &r->eos;
  gp.n_eos = 1;
  gp.tok = r->tok;
  if (st == SRLM_OK && N > 0) st = srlm_generate(r->m, &gp, (int)N, req, res, NULL);
  if (st == SRLM_OK) st = srlm_shard_set_judgments_per_response(s, J);
  for (int64_t j = 0; j < R && st == SRLM_OK; j++) {
    double sum = 0;
    int parsed = 0;
    for (int q = 0; q < J && st == SRLM_OK; q++) {
      srlm_gen_result *g = &res[j * J + q];
      /* the text (the stopping EOS is not in it), cut at a NUL: the shard keeps C strings */
      const size_t tl = g->text ? strnlen(g->text, g->text_len) : 0;
      char *text = srlm_xmalloc(tl + 1);
      if (tl) memcpy(text, g->text, tl);
      text[tl] = '\0';
      int score = 0;
      const int ok = r->task->judgment_parse(text, tl, &score);
      st = srlm_shard_add_judgment(s, text, g->ids, g->n, ok ? (float)score : NAN);
      free(text);
      jc->format_failures += !ok;
      if (ok) {
        sum += score;
        parsed++;
      }
    }
    if (parsed) {
      s->mean_score[j] = (float)(sum / parsed);
      s->flags[j] |= SRLM_SHARD_F_SCORED;
      jc->score_sum += sum / parsed;
    } else {
      s->mean_score[j] = NAN;
      jc->unscored++;
    }
  }
  jc->responses += R;
  jc->judgments += N;
  for (int64_t j = 0; j < N; j++) srlm_gen_result_free(&res[j]);
  free(res);
  free(req);
  free(off);
  srlm_token_ids_free(&ids);
  return st;
}

srlm_status sr_judge_shard(const sr_rollout *r, srlm_shard *s, sr_judge_counts *jc) {
  if (r->cfg->judge.source == SRLM_CFG_SOURCE_NONE) { /* no judge: the pairs come from votes or the implicit reward */
    jc->responses += s->n_responses;
    jc->unscored += s->n_responses;
    return srlm_shard_set_judgments_per_response(s, 0);
  }
  if (r->prompts) return judge_text(r, s, jc);
  if (r->cfg->meta.enabled) return judge_task_sampled(r, s, jc);
  const srlm_config *cfg = r->cfg;
  const int64_t R = s->n_responses;
  const srlm_cfg_judge_source src = cfg->judge.source;
  const srlm_task_ops *task = r->task;
  char(*pt)[SRLM_TASK_TEXT_MAX + 1] = srlm_xmalloc((size_t)(s->n_prompts + 1) * sizeof *pt); /* prompt texts */
  for (int64_t q = 0; q < s->n_prompts; q++) sr_task_prompt(r, s, q, pt[q]);
  const char **prompt = srlm_xcalloc((size_t)R + 1, sizeof *prompt);
  char **cand = srlm_xcalloc((size_t)R + 1, sizeof *cand);
  srlm_status st = SRLM_OK;
  for (int64_t j = 0; j < R && st == SRLM_OK; j++) {
    size_t len;
    prompt[j] = pt[s->response_prompt[j]];
    st = sr_response_text(r, s, j, &cand[j], &len);
  }
  srlm_task_verdict *jr = srlm_xcalloc((size_t)R + 1, sizeof *jr);
  const int has_model = sr_source_has_model(src);
  if (st == SRLM_OK && has_model && R > 0)
    st = task->judge(r->m, r->tok, r->max_batch, (int)R, prompt, (const char *const *)cand, jr);
  double *rsa = srlm_xcalloc((size_t)R + 1, sizeof *rsa), *nll = srlm_xcalloc((size_t)(2 * R + 1), sizeof *nll);
  if (st == SRLM_OK && src == SRLM_CFG_SOURCE_SAR) st = sar_terms(r, s, rsa, nll);
  if (st == SRLM_OK) st = srlm_shard_set_judgments_per_response(s, src == SRLM_CFG_SOURCE_SAR ? 2 : 1);
  for (int64_t j = 0; j < R && st == SRLM_OK; j++) {
    double model = NAN, verifier = NAN, score;
    const char *text = "";
    if (src == SRLM_CFG_SOURCE_SAR || src == SRLM_CFG_SOURCE_BLEU) {
      int ok = (s->flags[j] & SRLM_SHARD_F_EOS) && task->check(prompt[j], cand[j], strlen(cand[j]));
      double bleu = 0;
      if (src == SRLM_CFG_SOURCE_BLEU) {
        char refs[SRLM_TASK_MAX_REFS][SRLM_TASK_TEXT_MAX + 1];
        const char *rp[SRLM_TASK_MAX_REFS];
        int nr = task->references((uint64_t)cfg->run.seed, r->split, (uint64_t)s->prompt_index[s->response_prompt[j]], refs);
        for (int q = 0; q < nr; q++) rp[q] = refs[q];
        bleu = nr ? srlm_bleu(cand[j], strlen(cand[j]), rp, NULL, nr, (srlm_bleu_tokens)cfg->judge.bleu_tokenize) : 0;
      }
      st = add_reward_judgments(cfg, s, ok, rsa[j], nll + 2 * j, bleu, &score);
      s->mean_score[j] = (float)score;
      s->flags[j] |= SRLM_SHARD_F_SCORED;
      jc->score_sum += score;
      continue;
    }
    if (src != SRLM_CFG_SOURCE_VERIFIER) {
      model = cfg->judge.mode == SRLM_CFG_JUDGE_EXPECTED ? jr[j].expected
              : jr[j].greedy_score > 0                   ? (double)jr[j].greedy_score
                                                         : NAN;
      /* the greedy judgment's text: rationale + score digit (nothing after an
         unparsable one), which the learner replays */
      text = jr[j].judgment;
      jc->format_failures += jr[j].greedy_score == 0;
    }
    if (src != SRLM_CFG_SOURCE_MODEL) {
      int ok = (s->flags[j] & SRLM_SHARD_F_EOS) && task->check(prompt[j], cand[j], strlen(cand[j]));
      verifier = ok ? cfg->judge.score_max : cfg->judge.score_min;
      if (src == SRLM_CFG_SOURCE_VERIFIER) text = ok ? "checker: right" : "checker: wrong";
    }
    if (src == SRLM_CFG_SOURCE_MODEL)
      score = model;
    else if (src == SRLM_CFG_SOURCE_VERIFIER)
      score = verifier;
    else /* mix; an unparsable model judgment leaves the verifier's score alone */
      score = isfinite(model) ? (1 - cfg->judge.verifier_weight) * model + cfg->judge.verifier_weight * verifier
                              : verifier;
    st = srlm_shard_add_judgment(s, text, NULL, 0, isfinite(model) || src != SRLM_CFG_SOURCE_MODEL ? (float)score : NAN);
    s->mean_score[j] = (float)score;
    if (isfinite(score)) {
      s->flags[j] |= SRLM_SHARD_F_SCORED;
      jc->score_sum += score;
    } else {
      s->mean_score[j] = NAN;
      jc->unscored++;
    }
  }
  jc->responses += R;
  jc->judgments += R;
  free(rsa);
  free(nll);
  for (int64_t j = 0; j < R; j++) free(cand[j]);
  free(cand);
  free(prompt);
  free(jr);
  free(pt);
  return st;
}
