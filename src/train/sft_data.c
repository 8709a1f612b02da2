/* SFT data: chat or prompt/response JSONL lines tokenized up front into one flat array
 * with per-token targets; the Philox shuffle of each epoch; packed micro-batches.
 * The rules (what gets a target, truncation, counting) are in include/srlm/sft.h. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/jsonl.h"
#include "srlm/sft.h"

typedef struct growable {
  int32_t *ids, *targets;
  size_t n, cap;
} growable;

static void grow_push(growable *g, int32_t id, int32_t target) {
  if (g->n == g->cap) {
    g->cap = g->cap ? 2 * g->cap : 4096;
    g->ids = srlm_xrealloc(g->ids, g->cap * sizeof *g->ids);
    g->targets = srlm_xrealloc(g->targets, g->cap * sizeof *g->targets);
  }
  g->ids[g->n] = id;
  g->targets[g->n] = target;
  g->n++;
}

/* One example as ids and a loss mask (mask[i] = 1: token i is learned). */
typedef struct example {
  srlm_token_ids ids;
  uint8_t *mask;
  size_t cap_mask;
} example;

static void mask_set(example *e, size_t from, uint8_t value) {
  if (e->ids.n > e->cap_mask) {
    e->cap_mask = e->ids.n * 2;
    e->mask = srlm_xrealloc(e->mask, e->cap_mask);
  }
  memset(e->mask + from, value, e->ids.n - from);
}

static srlm_status get_string(srlm_jsonl *r, json_t *v, const char *key, json_t **out) {
  *out = json_object_get(v, key);
  if (!json_is_string(*out)) return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "\"%s\" must be a string", key);
  return SRLM_OK;
}

static srlm_status encode_chat(srlm_jsonl *r, const srlm_sft_data_options *opt, const srlm_chat_message *msgs,
                               size_t n, example *e) {
  srlm_chat_tokens ct = {0};
  srlm_status st = srlm_chat_encode(opt->tok, opt->chat, msgs, n, 0, &ct);
  if (st != SRLM_OK) return srlm_error_context(st, "%s", srlm_jsonl_where(r));
  for (size_t i = 0; i < ct.ids.n; i++) srlm_token_ids_push(&e->ids, ct.ids.ids[i]);
  mask_set(e, 0, 0);
  memcpy(e->mask, ct.mask, ct.ids.n);
  srlm_chat_tokens_free(&ct);
  return SRLM_OK;
}

/* Tokenizes one JSON line into e (ids + mask). */
static srlm_status encode_line(srlm_jsonl *r, const srlm_sft_data_options *opt, json_t *v, example *e) {
  srlm_token_ids_clear(&e->ids);
  if (!json_is_object(v))
    return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "expected an object with \"messages\" or \"prompt\" and \"response\"");
  json_t *messages = json_object_get(v, "messages");
  json_t *prompt = json_object_get(v, "prompt");
  json_t *response = json_object_get(v, "response");
  if (messages) {
    if (!opt->chat)
      return srlm_jsonl_error(r, SRLM_ERR_FORMAT,
                              "\"messages\" needs a chat format (tokenizer.chat_format is none); use "
                              "{\"prompt\": ..., \"response\": ...} lines");
    srlm_chat_message *msgs;
    size_t n;
    SRLM_TRY(srlm_chat_messages_from_json(messages, srlm_jsonl_where(r), &msgs, &n));
    srlm_status st = encode_chat(r, opt, msgs, n, e);
    free(msgs);
    return st;
  }
  if (!prompt || !response)
    return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "expected \"messages\", or \"prompt\" and \"response\"");
  SRLM_TRY(get_string(r, v, "prompt", &prompt));
  SRLM_TRY(get_string(r, v, "response", &response));
  if (opt->chat) {
    srlm_chat_message msgs[2] = {
        {.role = "user", .content = json_string_value(prompt), .content_len = json_string_length(prompt)},
        {.role = "assistant", .content = json_string_value(response), .content_len = json_string_length(response)}};
    return encode_chat(r, opt, msgs, 2, e);
  }
  srlm_status st = srlm_tokenizer_encode(opt->tok, json_string_value(prompt), json_string_length(prompt), &e->ids);
  if (st != SRLM_OK) return srlm_error_context(st, "%s: \"prompt\"", srlm_jsonl_where(r));
  mask_set(e, 0, 0);
  size_t n_prompt = e->ids.n;
  st = srlm_tokenizer_encode(opt->tok, json_string_value(response), json_string_length(response), &e->ids);
  if (st != SRLM_OK) return srlm_error_context(st, "%s: \"response\"", srlm_jsonl_where(r));
  if (opt->eos_id >= 0) srlm_token_ids_push(&e->ids, opt->eos_id);
  mask_set(e, n_prompt, 1);
  return SRLM_OK;
}

srlm_status srlm_sft_data_load(const char *path, const srlm_sft_data_options *opt, srlm_sft_data *out) {
  memset(out, 0, sizeof *out);
  if (opt->max_len < 0) return srlm_error(SRLM_ERR_RANGE, path, "max_len %lld < 0", (long long)opt->max_len);
  srlm_jsonl *r;
  SRLM_TRY(srlm_jsonl_open(path, &r));
  growable all = {0};
  size_t cap = 64;
  out->offsets = srlm_xmalloc((cap + 1) * sizeof *out->offsets);
  out->n_targets_of = srlm_xmalloc(cap * sizeof *out->n_targets_of);
  out->lines = srlm_xmalloc(cap * sizeof *out->lines);
  out->offsets[0] = 0;
  example e = {0};
  srlm_status st;
  for (;;) {
    json_t *v = NULL;
    st = srlm_jsonl_next(r, &v);
    if (st == SRLM_OK && !v) break;
    if (st == SRLM_OK) {
      out->n_lines++;
      st = encode_line(r, opt, v, &e);
      json_decref(v);
      for (size_t i = 0; st == SRLM_OK && opt->vocab_size > 0 && i < e.ids.n; i++)
        if (e.ids.ids[i] < 0 || e.ids.ids[i] >= opt->vocab_size)
          st = srlm_jsonl_error(r, SRLM_ERR_RANGE, "token id %d is outside the model's vocabulary of %lld",
                                (int)e.ids.ids[i], (long long)opt->vocab_size);
    } else if (st == SRLM_ERR_FORMAT) {
      out->n_lines++; /* invalid JSON: the line is consumed */
    }
    if (st != SRLM_OK) {
      if (!opt->skip_bad_lines || st == SRLM_ERR_IO || st == SRLM_ERR_NOMEM) break;
      out->n_bad++;
      srlm_error_clear();
      st = SRLM_OK;
      continue;
    }
    size_t len = e.ids.n;
    if (opt->max_len > 0 && (int64_t)len > opt->max_len) {
      if (opt->overflow == SRLM_SFT_DROP) {
        out->n_too_long++;
        continue;
      }
      len = (size_t)opt->max_len;
      out->n_truncated++;
    }
    int32_t n_t = 0;
    for (size_t i = 0; i + 1 < len; i++) n_t += e.mask[i + 1] ? 1 : 0;
    if (n_t == 0) {
      out->n_no_target++;
      continue;
    }
    for (size_t i = 0; i < len; i++)
      grow_push(&all, e.ids.ids[i], i + 1 < len && e.mask[i + 1] ? e.ids.ids[i + 1] : -1);
    if ((size_t)out->n == cap) {
      cap *= 2;
      out->offsets = srlm_xrealloc(out->offsets, (cap + 1) * sizeof *out->offsets);
      out->n_targets_of = srlm_xrealloc(out->n_targets_of, cap * sizeof *out->n_targets_of);
      out->lines = srlm_xrealloc(out->lines, cap * sizeof *out->lines);
    }
    out->n_targets_of[out->n] = n_t;
    out->lines[out->n] = srlm_jsonl_line(r);
    out->n++;
    out->offsets[out->n] = (int64_t)all.n;
    out->n_targets += n_t;
    if ((int64_t)len > out->max_seq) out->max_seq = (int64_t)len;
  }
  srlm_jsonl_close(r);
  srlm_token_ids_free(&e.ids);
  free(e.mask);
  out->ids = all.ids;
  out->targets = all.targets;
  out->n_tokens = (int64_t)all.n;
  if (st == SRLM_OK && out->n == 0)
    st = srlm_error(SRLM_ERR_FORMAT, path,
                    "no usable examples (%lld lines: %lld malformed, %lld too long, %lld without a target token)",
                    (long long)out->n_lines, (long long)out->n_bad, (long long)out->n_too_long,
                    (long long)out->n_no_target);
  if (st != SRLM_OK) srlm_sft_data_free(out);
  return st;
}

void srlm_sft_data_free(srlm_sft_data *d) {
  free(d->offsets);
  free(d->ids);
  free(d->targets);
  free(d->n_targets_of);
  free(d->lines);
  memset(d, 0, sizeof *d);
}

void srlm_sft_order(int64_t n, uint64_t seed, int epoch, int64_t *order) {
  srlm_rng_permutation(n, seed, SRLM_SFT_RNG_PURPOSE, (uint32_t)epoch, order);
}

void srlm_sft_batch_fill(srlm_sft_batch *batch, const srlm_sft_data *d, const int64_t *idx, int count) {
  size_t T = 0;
  for (int k = 0; k < count; k++) T += (size_t)(d->offsets[idx[k] + 1] - d->offsets[idx[k]]);
  if (T > batch->cap_tokens) {
    batch->cap_tokens = T;
    batch->tokens = srlm_xrealloc(batch->tokens, T * sizeof *batch->tokens);
    batch->targets = srlm_xrealloc(batch->targets, T * sizeof *batch->targets);
  }
  if (count + 1 > batch->cap_seqs) {
    batch->cap_seqs = count + 1;
    batch->cu_seqlens = srlm_xrealloc(batch->cu_seqlens, (size_t)batch->cap_seqs * sizeof *batch->cu_seqlens);
  }
  size_t pos = 0;
  batch->n_targets = 0;
  batch->cu_seqlens[0] = 0;
  for (int k = 0; k < count; k++) {
    int64_t a = d->offsets[idx[k]], len = d->offsets[idx[k] + 1] - a;
    memcpy(batch->tokens + pos, d->ids + a, (size_t)len * sizeof *batch->tokens);
    memcpy(batch->targets + pos, d->targets + a, (size_t)len * sizeof *batch->targets);
    pos += (size_t)len;
    batch->cu_seqlens[k + 1] = (int32_t)pos;
    batch->n_targets += d->n_targets_of[idx[k]];
  }
  batch->b = (srlm_batch){.B = count, .T = (int64_t)T, .tokens = batch->tokens, .cu_seqlens = batch->cu_seqlens,
                          .targets = batch->targets};
}

void srlm_sft_batch_free(srlm_sft_batch *batch) {
  free(batch->tokens);
  free(batch->targets);
  free(batch->cu_seqlens);
  memset(batch, 0, sizeof *batch);
}

int64_t srlm_sft_steps_per_epoch(int64_t n, int batch_size, int grad_accum) {
  int64_t per = (int64_t)batch_size * grad_accum;
  return per > 0 ? (n + per - 1) / per : 0;
}
