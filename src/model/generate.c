/* srlm generate: prefill + batched decode over the KV cache slots, with continuous
 * batching. See include/srlm/generate.h for the stopping rules and what a result holds.
 *
 * The loop: each step, free slots take waiting prompts (in request order, within the
 * step's token budget), then ONE srlm_model_step_sample runs every active slot: a
 * prefill (the whole prompt) for a slot that just took a prompt, one token (the last
 * sampled) for the others, and the backend samples each slot's next token from logits
 * that never leave it (a row's token depends only on its logits and its (seq_id, step)
 * key). Here on the host: the stopping rules, checked on the returned tokens, and
 * finished slots emptied for the next prompt. The last sampled token of a finished
 * sequence is never run through the model.
 */
#include "srlm/generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_STEP_TOKENS 4096

const char *srlm_stop_reason_name(srlm_stop_reason r) {
  switch (r) {
    case SRLM_STOP_LENGTH: return "length";
    case SRLM_STOP_EOS: return "eos";
    case SRLM_STOP_STRING: return "stop";
  }
  return "?";
}

srlm_generate_params srlm_generate_params_default(void) {
  srlm_generate_params p;
  memset(&p, 0, sizeof p);
  p.sampler = srlm_sampler_params_default();
  p.max_new_tokens = 64;
  p.max_batch = 8;
  return p;
}

void srlm_gen_result_free(srlm_gen_result *r) {
  if (!r) return;
  free(r->ids);
  free(r->logprobs);
  free(r->sample_logprobs);
  free(r->score_logits);
  free(r->text);
  memset(r, 0, sizeof *r);
}

/* A sequence in a slot. */
typedef struct active_seq {
  int req;       /* request index */
  int slot;      /* KV-cache slot */
  int prefilled; /* 0 until its prompt has been run */
  int scoring;   /* finished: this step reads its score position (score_ids) */
  int64_t cap;   /* room in the result's id/log-prob arrays */
  size_t text_cap;
  srlm_tokenizer_stream *stream;
} active_seq;

typedef struct gen_ctx {
  srlm_model *m;
  const srlm_generate_params *p;
  const srlm_gen_request *req;
  srlm_gen_result *res;
  int64_t V;
  size_t max_stop_len;
  /* ARGS (p->args): host logits of a step (B, V) for the policy and the reference, the
     candidates and their rewards, and each request's implicit reward of its prefix */
  float *logits, *ref_logits;
  int32_t *cand;
  float *cand_logit;
  double *reward, *prefix_reward;
  srlm_kv_cache *ref_kv;
  float *id_logits; /* (max_batch, n_score): a step's logits of score_ids */
} gen_ctx;

/* ---- ARGS ------------------------------------------------------------------------------ */

void srlm_args_candidates(const float *logits, int64_t V, int k, int32_t *cand) {
  /* insertion into a sorted list of k: V x k, fine for the small k ARGS uses */
  int n = 0;
  for (int64_t v = 0; v < V; v++) {
    const float l = logits[v];
    if (n == k && !(l > logits[cand[k - 1]])) continue; /* ties keep the lower id already in */
    int at = n < k ? n++ : k - 1;
    while (at > 0 && l > logits[cand[at - 1]]) {
      cand[at] = cand[at - 1];
      at--;
    }
    cand[at] = (int32_t)v;
  }
}

srlm_status srlm_args_choose(int k, const float *logit, const double *reward, double weight, float temperature,
                             uint64_t seed, uint64_t seq_id, uint32_t step, int *pick, double *logprob) {
  double best = -INFINITY;
  int arg = -1;
  for (int i = 0; i < k; i++) {
    const double sc = (double)logit[i] + weight * reward[i];
    if (isnan(sc)) return srlm_error(SRLM_ERR_RANGE, "args", "candidate %d: score is NaN (logit %g, reward %g)", i,
                                     (double)logit[i], reward[i]);
    if (arg < 0 || sc > best) best = sc, arg = i;
  }
  if (!isfinite(best)) return srlm_error(SRLM_ERR_RANGE, "args", "no candidate has a finite score");
  *pick = arg;
  *logprob = 0;
  if (temperature == 0) return SRLM_OK;
  /* softmax(score / T) over the candidates, in candidate order; the inverse CDF of one draw */
  double z = 0, w[64], *ws = k <= 64 ? w : srlm_xmalloc((size_t)k * sizeof *ws);
  for (int i = 0; i < k; i++) z += ws[i] = exp(((double)logit[i] + weight * reward[i] - best) / temperature);
  srlm_philox_out r = srlm_rng_bits(seed, SRLM_RNG_PURPOSE_ARGS, (uint32_t)seq_id, step, (uint32_t)(seq_id >> 32));
  const double target = srlm_rng_u01d(r.v[0], r.v[1]) * z;
  double acc = 0;
  int chosen = -1;
  for (int i = 0; i < k && chosen < 0; i++) {
    acc += ws[i];
    if (acc > target && ws[i] > 0) chosen = i;
  }
  if (chosen < 0) chosen = arg; /* rounding at the very top of the range */
  *pick = chosen;
  *logprob = log(ws[chosen] / z);
  if (ws != w) free(ws);
  return SRLM_OK;
}

/* log-sum-exp of a row (double, in id order) */
static double row_lse(const float *l, int64_t V) {
  double mx = -INFINITY, s = 0;
  for (int64_t v = 0; v < V; v++)
    if (l[v] > mx) mx = l[v];
  for (int64_t v = 0; v < V; v++) s += exp((double)l[v] - mx);
  return mx + log(s);
}

/* One ARGS step over n rows: the policy's logits (and the reference's) to the host, then
 * each row's candidates, rewards and choice. */
static srlm_status args_step(gen_ctx *g, srlm_kv_cache *kv, int n, const active_seq *act, const int *slots,
                             const int32_t *tokens, const int32_t *cu, const uint64_t *seq_ids, const uint32_t *steps,
                             srlm_sample *out) {
  const srlm_args_params *a = g->p->args;
  const int64_t V = g->V;
  SRLM_TRY(srlm_model_step(g->m, kv, n, slots, tokens, cu, g->logits));
  if (a->ref) SRLM_TRY(srlm_model_step(a->ref, g->ref_kv, n, slots, tokens, cu, g->ref_logits));
  const int k = a->top_k < V ? a->top_k : (int)V;
  for (int i = 0; i < n; i++) {
    const float *l = g->logits + (size_t)i * V;
    const int req = act[i].req;
    srlm_args_candidates(l, V, k, g->cand);
    for (int j = 0; j < k; j++) g->cand_logit[j] = l[g->cand[j]];
    const double lse = row_lse(l, V);
    double lse_ref = 0;
    if (a->ref) {
      const float *lr = g->ref_logits + (size_t)i * V;
      lse_ref = row_lse(lr, V);
      for (int j = 0; j < k; j++)
        g->reward[j] = g->prefix_reward[req] + (((double)l[g->cand[j]] - lse) - ((double)lr[g->cand[j]] - lse_ref));
    } else {
      const srlm_gen_result *r = &g->res[req];
      SRLM_TRY(a->reward(a->user, req, r->ids, r->n, g->cand, k, g->reward));
    }
    int pick;
    double lp;
    SRLM_TRY(srlm_args_choose(k, g->cand_logit, g->reward, a->weight, g->p->sampler.temperature, g->p->sampler.seed,
                              seq_ids[i], steps[i], &pick, &lp));
    const int32_t tok = g->cand[pick];
    out[i] = (srlm_sample){.token = tok, .logprob = (float)((double)l[tok] - lse), .sample_logprob = (float)lp};
    if (a->ref) g->prefix_reward[req] = g->reward[pick];
  }
  return SRLM_OK;
}

static srlm_status check_inputs(const gen_ctx *g, int n) {
  const srlm_generate_params *p = g->p;
  SRLM_TRY(srlm_sampler_params_check(&p->sampler));
  if (p->max_new_tokens < 0)
    return srlm_error(SRLM_ERR_CONFIG, "generate", "max_new_tokens %d: expected >= 0", p->max_new_tokens);
  if (p->max_batch < 1) return srlm_error(SRLM_ERR_CONFIG, "generate", "max_batch %d: expected >= 1", p->max_batch);
  if (p->max_step_tokens < 0)
    return srlm_error(SRLM_ERR_CONFIG, "generate", "max_step_tokens %lld: expected >= 0", (long long)p->max_step_tokens);
  if (p->n_eos < 0 || (p->n_eos > 0 && !p->eos_ids)) return srlm_error(SRLM_ERR_CONFIG, "generate", "bad eos_ids list");
  if (p->n_stop < 0 || (p->n_stop > 0 && !p->stop)) return srlm_error(SRLM_ERR_CONFIG, "generate", "bad stop list");
  if (p->n_stop > 0 && !p->tok)
    return srlm_error(SRLM_ERR_CONFIG, "generate", "stop strings need a tokenizer (to decode the text)");
  for (int k = 0; k < p->n_stop; k++)
    if (!p->stop[k] || !p->stop[k][0]) return srlm_error(SRLM_ERR_CONFIG, "generate", "stop string %d is empty", k);
  if (p->n_score < 0 || p->n_score > SRLM_GEN_MAX_SCORE_IDS || (p->n_score > 0 && !p->score_ids))
    return srlm_error(SRLM_ERR_CONFIG, "generate", "score_ids: %d ids (0..%d)", p->n_score, SRLM_GEN_MAX_SCORE_IDS);
  for (int k = 0; k < p->n_score; k++)
    if (p->score_ids[k] < 0 || p->score_ids[k] >= g->V)
      return srlm_error(SRLM_ERR_RANGE, "generate", "score id %d is out of range (vocabulary 0..%lld)",
                        (int)p->score_ids[k], (long long)g->V - 1);
  if (p->n_score > 0 && p->args)
    return srlm_error(SRLM_ERR_CONFIG, "generate", "a score position cannot be read with ARGS decoding");
  if (p->args) {
    const srlm_args_params *a = p->args;
    if (a->top_k < 1) return srlm_error(SRLM_ERR_CONFIG, "generate.args_top_k", "%d: expected >= 1", a->top_k);
    if (!isfinite(a->weight)) return srlm_error(SRLM_ERR_CONFIG, "generate.args_weight", "%g is not finite", a->weight);
    if (!a->ref == !a->reward)
      return srlm_error(SRLM_ERR_INTERNAL, "generate", "ARGS needs exactly one reward: a reference model or a callback");
    if (a->ref && srlm_model_get_config(a->ref)->vocab_size != g->V)
      return srlm_error(SRLM_ERR_CONFIG, "generate.args_reference", "vocabulary %lld, the model's is %lld",
                        (long long)srlm_model_get_config(a->ref)->vocab_size, (long long)g->V);
  }
  for (int i = 0; i < n; i++) {
    const srlm_gen_request *r = &g->req[i];
    if (r->n_prompt < 1 || !r->prompt) return srlm_error(SRLM_ERR_RANGE, "generate", "request %d: empty prompt", i);
    for (int64_t j = 0; j < r->n_prompt; j++)
      if (r->prompt[j] < 0 || r->prompt[j] >= g->V)
        return srlm_error(SRLM_ERR_RANGE, "generate", "request %d: prompt id %d at position %lld is out of range "
                          "(vocabulary 0..%lld)", i, r->prompt[j], (long long)j, (long long)g->V - 1);
  }
  return SRLM_OK;
}

/* ---- per-sequence results ------------------------------------------------------------ */

static void push_token(active_seq *a, srlm_gen_result *r, const srlm_sample *s) {
  if (r->n == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 16;
    r->ids = srlm_xrealloc(r->ids, (size_t)a->cap * sizeof *r->ids);
    r->logprobs = srlm_xrealloc(r->logprobs, (size_t)a->cap * sizeof *r->logprobs);
    r->sample_logprobs = srlm_xrealloc(r->sample_logprobs, (size_t)a->cap * sizeof *r->sample_logprobs);
  }
  r->ids[r->n] = s->token;
  r->logprobs[r->n] = s->logprob;
  r->sample_logprobs[r->n] = s->sample_logprob;
  r->n++;
}

static void push_text(active_seq *a, srlm_gen_result *r, const char *t, size_t n) {
  if (r->text_len + n + 1 > a->text_cap) {
    size_t cap = a->text_cap ? a->text_cap : 64;
    while (cap < r->text_len + n + 1) cap *= 2;
    r->text = srlm_xrealloc(r->text, cap);
    a->text_cap = cap;
  }
  memcpy(r->text + r->text_len, t, n);
  r->text_len += n;
  r->text[r->text_len] = '\0';
}

/* The stop string that completes first in text appended from byte `from` on: returns its
 * index and sets *end to the byte after it, or -1. */
static int find_stop(const gen_ctx *g, const srlm_gen_result *r, size_t from, size_t *end) {
  const srlm_generate_params *p = g->p;
  int best = -1;
  size_t best_end = 0;
  for (int k = 0; k < p->n_stop; k++) {
    size_t len = strlen(p->stop[k]);
    size_t start = from + 1 >= len ? from + 1 - len : 0; /* a match may begin before `from` */
    if (r->text_len < start + len) continue;
    const char *hit = memmem(r->text + start, r->text_len - start, p->stop[k], len);
    if (!hit) continue;
    size_t e = (size_t)(hit - r->text) + len;
    if (best < 0 || e < best_end) best = k, best_end = e;
  }
  *end = best_end;
  return best;
}

/* Records a new token and applies the stopping rules; *done = 1 when the sequence is
 * finished (its text then complete). */
static srlm_status take_token(const gen_ctx *g, active_seq *a, const srlm_sample *s, int *done) {
  const srlm_generate_params *p = g->p;
  srlm_gen_result *r = &g->res[a->req];
  push_token(a, r, s);
  *done = 0;
  for (int k = 0; k < p->n_eos; k++)
    if (s->token == p->eos_ids[k]) {
      r->stop = SRLM_STOP_EOS;
      r->stop_index = k;
      *done = 1;
      break;
    }
  /* an id the model's vocabulary has but the tokenizer lacks (vocabularies padded past the
     tokenizer, as Qwen's are) is empty text, as transformers decodes it */
  const char *tb;
  size_t tl;
  const int known = a->stream && srlm_tokenizer_token_bytes(p->tok, s->token, &tb, &tl) == SRLM_OK;
  if (!*done && a->stream && known) {
    const char *t;
    size_t n;
    SRLM_TRY(srlm_tokenizer_stream_push(a->stream, s->token, &t, &n));
    size_t from = r->text_len;
    push_text(a, r, t, n);
    size_t end;
    int k = n ? find_stop(g, r, from, &end) : -1;
    if (k >= 0) {
      r->text_len = end;
      r->text[end] = '\0';
      r->stop = SRLM_STOP_STRING;
      r->stop_index = k;
      *done = 1;
      return SRLM_OK; /* what the stream holds back lies after the stop string */
    }
  }
  if (!*done && r->n >= p->max_new_tokens) {
    r->stop = SRLM_STOP_LENGTH;
    r->stop_index = -1;
    *done = 1;
  }
  if (*done && a->stream) {
    const char *t;
    size_t n;
    srlm_tokenizer_stream_flush(a->stream, &t, &n);
    push_text(a, r, t, n);
  }
  return SRLM_OK;
}

/* Records row i's score position from the step just run: the logits of score_ids and the
 * token drawn there. */
static void score_position(const gen_ctx *g, srlm_gen_result *r, int i, const srlm_sample *s) {
  const int k = g->p->n_score;
  r->score_logits = srlm_xmalloc((size_t)k * sizeof *r->score_logits);
  memcpy(r->score_logits, g->id_logits + (size_t)i * (size_t)k, (size_t)k * sizeof *r->score_logits);
  r->score_token = s->token;
}

/* ---- the loop ------------------------------------------------------------------------ */

/* Names the requests of a failed step, in its row order (the model's errors name rows
 * and slots). */
static void step_error(const active_seq *act, int n, srlm_status st) {
  char list[256];
  size_t len = 0;
  for (int i = 0; i < n && len + 16 < sizeof list; i++)
    len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", i ? ", " : "", act[i].req);
  if (len + 16 >= sizeof list) snprintf(list + len, sizeof list - len, ", ...");
  srlm_error_context(st, "generate: step over requests %s (rows in this order)", list);
}

static srlm_status run(gen_ctx *g, int n, srlm_generate_stats *stats) {
  const srlm_generate_params *p = g->p;
  int B = p->max_batch < n ? p->max_batch : n;
  const int64_t budget = p->max_step_tokens > 0 ? p->max_step_tokens : DEFAULT_STEP_TOKENS;
  int64_t max_len = 1;
  int longest = 0;
  for (int i = 0; i < n; i++)
    if (g->req[i].n_prompt + p->max_new_tokens > max_len) max_len = g->req[i].n_prompt + p->max_new_tokens, longest = i;
  /* the model's KV budget (model.h): fewer slots for longer sequences */
  const int64_t kv_budget = srlm_model_kv_budget(g->m);
  if (kv_budget > 0 && B > 0) {
    if (max_len > kv_budget)
      return srlm_error(SRLM_ERR_NOMEM, "generate",
                        "request %d needs %lld cached positions (a %lld-token prompt + max_new_tokens %d), more than the "
                        "KV-cache budget of %lld positions this rank's memory plan gave (generate.kv_memory_fraction, "
                        "generate.max_batch): shorter prompts or answers, or more memory for the cache",
                        longest, (long long)max_len, (long long)g->req[longest].n_prompt, p->max_new_tokens,
                        (long long)kv_budget);
    if ((int64_t)B * max_len > kv_budget) B = (int)(kv_budget / max_len);
  }

  srlm_kv_cache *kv = NULL;
  active_seq *act = srlm_xcalloc((size_t)B, sizeof *act);
  int *free_slots = srlm_xmalloc((size_t)B * sizeof *free_slots);
  int *slots = srlm_xmalloc((size_t)B * sizeof *slots);
  int32_t *cu = srlm_xmalloc((size_t)(B + 1) * sizeof *cu);
  uint64_t *seq_ids = srlm_xmalloc((size_t)B * sizeof *seq_ids);
  uint32_t *steps = srlm_xmalloc((size_t)B * sizeof *steps);
  srlm_sample *samples = srlm_xmalloc((size_t)B * sizeof *samples);
  int32_t *tokens = NULL;
  int64_t tokens_cap = 0;
  int n_act = 0, n_free = B, next = 0;
  for (int s = 0; s < B; s++) free_slots[s] = B - 1 - s;

  srlm_status st = B > 0 ? srlm_kv_cache_create(g->m, B, max_len, &kv) : SRLM_OK;
  if (p->n_score > 0 && B > 0) g->id_logits = srlm_xmalloc((size_t)B * (size_t)p->n_score * sizeof *g->id_logits);
  if (st == SRLM_OK && p->args && B > 0) {
    const int64_t V = g->V;
    const int k = p->args->top_k;
    g->logits = srlm_xmalloc((size_t)B * (size_t)V * sizeof *g->logits);
    g->cand = srlm_xmalloc((size_t)k * sizeof *g->cand);
    g->cand_logit = srlm_xmalloc((size_t)k * sizeof *g->cand_logit);
    g->reward = srlm_xmalloc((size_t)k * sizeof *g->reward);
    g->prefix_reward = srlm_xcalloc((size_t)n, sizeof *g->prefix_reward);
    if (p->args->ref) {
      g->ref_logits = srlm_xmalloc((size_t)B * (size_t)V * sizeof *g->ref_logits);
      st = srlm_kv_cache_create(p->args->ref, B, max_len, &g->ref_kv);
    }
  }

  while (st == SRLM_OK && (next < n || n_act > 0)) {
    /* admit waiting prompts into free slots */
    int64_t step_tokens = n_act;
    int admitted = 0;
    while (next < n && n_free > 0) {
      const srlm_gen_request *r = &g->req[next];
      if (p->max_new_tokens == 0) { /* nothing to generate: no model step but a score position's */
        g->res[next].stop = SRLM_STOP_LENGTH;
        g->res[next].stop_index = -1;
        if (p->tok) g->res[next].text = srlm_xstrdup("");
        if (p->n_score == 0) {
          next++;
          if (p->on_done) st = p->on_done(p->done_user, next - 1, &g->res[next - 1]);
          if (st != SRLM_OK) break;
          continue;
        }
      }
      if (admitted > 0 && step_tokens + r->n_prompt > budget) break;
      active_seq *a = &act[n_act++];
      memset(a, 0, sizeof *a);
      a->req = next++;
      a->slot = free_slots[--n_free];
      srlm_kv_cache_reset(kv, a->slot);
      if (g->ref_kv) srlm_kv_cache_reset(g->ref_kv, a->slot);
      a->scoring = p->max_new_tokens == 0; /* only its score position to read */
      if (p->tok && !a->scoring) {
        a->stream = srlm_tokenizer_stream_init(p->tok);
        push_text(a, &g->res[a->req], "", 0);
      }
      step_tokens += r->n_prompt;
      admitted++;
    }
    if (st != SRLM_OK || n_act == 0) break;

    /* one model step over every active slot */
    if (step_tokens > tokens_cap) {
      tokens_cap = step_tokens;
      tokens = srlm_xrealloc(tokens, (size_t)tokens_cap * sizeof *tokens);
    }
    int64_t pos = 0;
    cu[0] = 0;
    for (int i = 0; i < n_act; i++) {
      active_seq *a = &act[i];
      slots[i] = a->slot;
      seq_ids[i] = g->req[a->req].seq_id;
      steps[i] = (uint32_t)g->res[a->req].n; /* the index of the token being generated */
      if (!a->prefilled) {
        const srlm_gen_request *r = &g->req[a->req];
        memcpy(tokens + pos, r->prompt, (size_t)r->n_prompt * sizeof *tokens);
        pos += r->n_prompt;
        if (stats) stats->prefill_tokens += r->n_prompt;
        a->prefilled = 1;
      } else {
        const srlm_gen_result *res = &g->res[a->req];
        tokens[pos++] = res->ids[res->n - 1];
      }
      cu[i + 1] = (int32_t)pos;
    }
    st = p->args ? args_step(g, kv, n_act, act, slots, tokens, cu, seq_ids, steps, samples)
                 : srlm_model_step_sample_ids(g->m, kv, n_act, slots, tokens, cu, &p->sampler, seq_ids, steps, samples,
                                              p->score_ids, p->n_score, g->id_logits);
    if (st != SRLM_OK) {
      step_error(act, n_act, st);
      break;
    }
    if (stats) stats->steps++;

    /* stop, free finished slots (keeping the order of the others) */
    int kept = 0; /* after an error every slot not yet finished is kept (freed once, below) */
    for (int i = 0; i < n_act; i++) {
      int done = 0;
      if (st == SRLM_OK && act[i].scoring) {
        score_position(g, &g->res[act[i].req], i, &samples[i]);
        done = 1;
      } else if (st == SRLM_OK) {
        st = take_token(g, &act[i], &samples[i], &done);
        if (stats) stats->new_tokens++;
        /* EOS: this step's logits were the score position's; else one more step reads it */
        if (st == SRLM_OK && done && p->n_score > 0) {
          if (g->res[act[i].req].stop == SRLM_STOP_EOS)
            score_position(g, &g->res[act[i].req], i, &samples[i]);
          else
            act[i].scoring = 1, done = 0;
        }
      }
      if (st == SRLM_OK && act[i].scoring && !done) { /* stays for its score step: no more text */
        srlm_tokenizer_stream_free(act[i].stream);
        act[i].stream = NULL;
      }
      if (st == SRLM_OK && done) {
        srlm_tokenizer_stream_free(act[i].stream);
        act[i].stream = NULL;
        srlm_kv_cache_reset(kv, act[i].slot);
        if (g->ref_kv) srlm_kv_cache_reset(g->ref_kv, act[i].slot);
        free_slots[n_free++] = act[i].slot;
        if (p->on_done) st = p->on_done(p->done_user, act[i].req, &g->res[act[i].req]);
      } else {
        act[kept++] = act[i];
      }
    }
    n_act = kept;
  }

  for (int i = 0; i < n_act; i++) srlm_tokenizer_stream_free(act[i].stream);
  srlm_kv_cache_free(kv);
  srlm_kv_cache_free(g->ref_kv);
  free(g->logits);
  free(g->ref_logits);
  free(g->id_logits);
  free(g->cand);
  free(g->cand_logit);
  free(g->reward);
  free(g->prefix_reward);
  free(act);
  free(free_slots);
  free(slots);
  free(cu);
  free(seq_ids);
  free(steps);
  free(samples);
  free(tokens);
  return st;
}

srlm_status srlm_generate(srlm_model *m, const srlm_generate_params *p, int n, const srlm_gen_request *req,
                          srlm_gen_result *res, srlm_generate_stats *stats) {
  double t0 = srlm_time_now();
  if (stats) memset(stats, 0, sizeof *stats);
  if (n < 0) return srlm_error(SRLM_ERR_RANGE, "generate", "%d requests", n);
  memset(res, 0, (size_t)n * sizeof *res);
  gen_ctx g = {.m = m, .p = p, .req = req, .res = res, .V = srlm_model_get_config(m)->vocab_size};
  SRLM_TRY(check_inputs(&g, n));
  srlm_status st = run(&g, n, stats);
  if (st != SRLM_OK)
    for (int i = 0; i < n; i++) srlm_gen_result_free(&res[i]);
  if (stats) stats->seconds = srlm_time_now() - t0;
  return st;
}
