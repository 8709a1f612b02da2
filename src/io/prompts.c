/* Prompt sets: JSONL -> rendered, tokenized prompts, and their HDF5 store
 * (see include/srlm/prompts.h). */
#include "srlm/prompts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/jsonl.h"
#include "srlm/store.h"

void srlm_prompt_set_free(srlm_prompt_set *p) {
  if (!p) return;
  for (int64_t i = 0; i < p->n; i++) {
    if (p->text) free(p->text[i]);
    if (p->instruction) free(p->instruction[i]);
  }
  free(p->text);
  free(p->instruction);
  free(p->offsets);
  free(p->ids);
  free(p->line);
  for (int64_t i = 0; p->ref_offsets && i < p->ref_offsets[p->n]; i++) free(p->refs[i]);
  free(p->refs);
  free(p->ref_offsets);
  memset(p, 0, sizeof *p);
}

/* ---- JSONL --------------------------------------------------------------------------- */

/* The line's "reference" (absent: *n = 0) checked: a string or a non-empty list of strings. */
static srlm_status line_refs(srlm_jsonl *r, json_t *v, json_t **ref, size_t *n) {
  *ref = json_is_object(v) ? json_object_get(v, "reference") : NULL;
  *n = 0;
  if (!*ref) return SRLM_OK;
  if (json_is_string(*ref)) {
    *n = 1;
    return SRLM_OK;
  }
  if (json_is_array(*ref) && json_array_size(*ref) > 0) {
    for (size_t i = 0; i < json_array_size(*ref); i++)
      if (!json_is_string(json_array_get(*ref, i)))
        return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "\"reference\"[%zu]: expected a string, got %s", i,
                                srlm_json_type_name(json_array_get(*ref, i)));
    *n = json_array_size(*ref);
    return SRLM_OK;
  }
  return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "\"reference\": expected a string or a non-empty list of strings, got %s",
                          json_is_array(*ref) ? "an empty list" : srlm_json_type_name(*ref));
}

/* One line's rendered text (*text), ids (appended to ids) and instruction (*instr);
 * on error nothing is left allocated. */
static srlm_status encode_line(srlm_jsonl *r, json_t *v, srlm_tokenizer *tok, const srlm_chat_format *chat,
                               srlm_token_ids *ids, char **text, char **instr) {
  *text = *instr = NULL;
  json_t *prompt = json_is_object(v) ? json_object_get(v, "prompt") : NULL;
  json_t *messages = json_is_object(v) ? json_object_get(v, "messages") : NULL;
  if (!prompt && !messages)
    return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "expected an object with \"prompt\" or \"messages\", got %s",
                            json_is_object(v) ? "an object with neither" : srlm_json_type_name(v));
  if (prompt && messages)
    return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "has both \"prompt\" and \"messages\"; give one");
  if (prompt && !json_is_string(prompt))
    return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "\"prompt\": expected a string, got %s", srlm_json_type_name(prompt));
  if (messages && !chat)
    return srlm_jsonl_error(r, SRLM_ERR_FORMAT,
                            "\"messages\" needs a chat format (tokenizer.chat_format is none); use {\"prompt\": ...}");
  srlm_chat_message one, *msgs = &one;
  size_t n = 1;
  if (prompt) {
    one = (srlm_chat_message){.role = "user", .content = json_string_value(prompt),
                              .content_len = json_string_length(prompt)};
  } else {
    SRLM_TRY(srlm_chat_messages_from_json(messages, srlm_jsonl_where(r), &msgs, &n));
  }
  /* the instruction the judge sees: the last user turn */
  const srlm_chat_message *user = NULL;
  for (size_t i = 0; i < n; i++)
    if (strcmp(msgs[i].role, "user") == 0) user = &msgs[i];
  srlm_status st = SRLM_OK;
  size_t len = 0;
  if (!user) {
    st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "\"messages\" has no \"user\" message");
  } else if (chat) {
    st = srlm_chat_render(chat, msgs, n, 1, text, &len, NULL);
    if (st != SRLM_OK) st = srlm_error_context(st, "%s", srlm_jsonl_where(r));
  } else {
    len = user->content_len;
    *text = srlm_xmalloc(len + 1);
    memcpy(*text, user->content, len);
    (*text)[len] = '\0';
  }
  if (st == SRLM_OK) {
    *instr = srlm_xmalloc(user->content_len + 1);
    memcpy(*instr, user->content, user->content_len);
    (*instr)[user->content_len] = '\0';
    size_t before = ids->n;
    st = srlm_tokenizer_encode(tok, *text, len, ids);
    if (st != SRLM_OK)
      st = srlm_error_context(st, "%s", srlm_jsonl_where(r));
    else if (ids->n == before)
      st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "the prompt is empty (no tokens)");
  }
  if (msgs != &one) free(msgs);
  if (st != SRLM_OK) {
    free(*text);
    free(*instr);
    *text = *instr = NULL;
  }
  return st;
}

srlm_status srlm_prompts_load(const char *path, srlm_tokenizer *tok, const srlm_chat_format *chat,
                              int skip_bad_lines, int max_prompt_tokens, srlm_prompt_set *out,
                              srlm_prompts_stats *stats) {
  memset(out, 0, sizeof *out);
  srlm_prompts_stats none;
  if (!stats) stats = &none;
  memset(stats, 0, sizeof *stats);
  srlm_jsonl *r;
  SRLM_TRY(srlm_jsonl_open(path, &r));
  srlm_token_ids all = {0};
  int64_t cap = 64;
  out->offsets = srlm_xmalloc((size_t)(cap + 1) * sizeof *out->offsets);
  out->text = srlm_xmalloc((size_t)cap * sizeof *out->text);
  out->instruction = srlm_xmalloc((size_t)cap * sizeof *out->instruction);
  out->line = srlm_xmalloc((size_t)cap * sizeof *out->line);
  out->offsets[0] = 0;
  srlm_status st;
  /* references of the kept prompts, grown alongside (ref_off has out->n + 1 entries) */
  int64_t *ref_off = srlm_xmalloc((size_t)(cap + 1) * sizeof *ref_off), n_refs = 0, ref_cap = 0, with_refs = 0;
  char **refs = NULL;
  ref_off[0] = 0;
  for (;;) {
    json_t *v = NULL, *ref = NULL;
    size_t nref = 0;
    char *text = NULL, *instr = NULL;
    size_t before = all.n;
    st = srlm_jsonl_next(r, &v);
    if (st == SRLM_OK && !v) break;
    if (st == SRLM_OK) {
      stats->lines++;
      st = line_refs(r, v, &ref, &nref);
      if (st == SRLM_OK) st = encode_line(r, v, tok, chat, &all, &text, &instr);
      if (st == SRLM_OK && nref > 0) {
        /* kept even if the prompt is then too long: dropped again below */
        if (n_refs + (int64_t)nref > ref_cap) {
          ref_cap = 2 * (n_refs + (int64_t)nref) + 16;
          refs = srlm_xrealloc(refs, (size_t)ref_cap * sizeof *refs);
        }
        for (size_t i = 0; i < nref; i++)
          refs[n_refs + (int64_t)i] = srlm_xstrdup(json_string_value(json_is_string(ref) ? ref : json_array_get(ref, i)));
      }
      json_decref(v);
    } else if (st == SRLM_ERR_FORMAT) {
      stats->lines++; /* invalid JSON: the line is consumed */
    }
    if (st != SRLM_OK) {
      all.n = before;
      if (!skip_bad_lines || st == SRLM_ERR_IO || st == SRLM_ERR_NOMEM) break;
      if (stats->bad++ == 0) snprintf(stats->first_bad, sizeof stats->first_bad, "%s", srlm_error_message());
      srlm_error_clear();
      st = SRLM_OK;
      continue;
    }
    int64_t len = (int64_t)(all.n - before);
    if (max_prompt_tokens > 0 && len > max_prompt_tokens) {
      all.n = before;
      stats->too_long++;
      free(text);
      free(instr);
      for (size_t i = 0; i < nref; i++) free(refs[n_refs + (int64_t)i]);
      continue;
    }
    n_refs += (int64_t)nref;
    with_refs += nref > 0;
    if (out->n == cap) {
      cap *= 2;
      ref_off = srlm_xrealloc(ref_off, (size_t)(cap + 1) * sizeof *ref_off);
      out->offsets = srlm_xrealloc(out->offsets, (size_t)(cap + 1) * sizeof *out->offsets);
      out->text = srlm_xrealloc(out->text, (size_t)cap * sizeof *out->text);
      out->instruction = srlm_xrealloc(out->instruction, (size_t)cap * sizeof *out->instruction);
      out->line = srlm_xrealloc(out->line, (size_t)cap * sizeof *out->line);
    }
    out->text[out->n] = text;
    out->instruction[out->n] = instr;
    out->line[out->n] = srlm_jsonl_line(r);
    out->n++;
    out->offsets[out->n] = (int64_t)all.n;
    ref_off[out->n] = n_refs;
    stats->tokens += len;
    if (len > stats->max_len) stats->max_len = len;
  }
  srlm_jsonl_close(r);
  out->ids = all.ids; /* the set owns the tokens; all.start is never used here */
  free(all.start);
  if (with_refs) {
    out->ref_offsets = ref_off;
    out->refs = refs;
  } else {
    free(ref_off);
    free(refs);
  }
  if (st == SRLM_OK && out->n == 0)
    st = srlm_error(SRLM_ERR_FORMAT, path,
                    "no usable prompts (%lld lines: %lld malformed, %lld longer than %d tokens)",
                    (long long)stats->lines, (long long)stats->bad, (long long)stats->too_long, max_prompt_tokens);
  if (st != SRLM_OK) srlm_prompt_set_free(out);
  return st;
}

/* ---- store --------------------------------------------------------------------------- */

srlm_status srlm_prompts_save(const srlm_prompt_set *p, const char *path) {
  srlm_store *s;
  SRLM_TRY(srlm_store_create(path, SRLM_PROMPTS_FORMAT, SRLM_PROMPTS_VERSION, &s));
  srlm_status st = srlm_store_write_seqs(s, "/prompts/ids", p->n, p->offsets, p->ids);
  if (st == SRLM_OK) st = srlm_store_write_strings(s, "/prompts/text", p->n, (const char *const *)p->text);
  if (st == SRLM_OK)
    st = srlm_store_write_strings(s, "/prompts/instruction", p->n, (const char *const *)p->instruction);
  if (st == SRLM_OK)
    st = srlm_store_write_array(s, "/prompts/line", SRLM_STORE_I64, 1, (const int64_t[]){p->n}, p->line);
  if (st == SRLM_OK && p->ref_offsets)
    st = srlm_store_write_strings(s, "/prompts/reference", p->ref_offsets[p->n], (const char *const *)p->refs);
  if (st == SRLM_OK && p->ref_offsets)
    st = srlm_store_write_array(s, "/prompts/reference_offsets", SRLM_STORE_I64, 1, (const int64_t[]){p->n + 1},
                                p->ref_offsets);
  if (st != SRLM_OK) {
    srlm_store_close(s); /* discards the temp file */
    return st;
  }
  return srlm_store_commit(s);
}

srlm_status srlm_prompts_read(const char *path, srlm_prompt_set *out) {
  memset(out, 0, sizeof *out);
  srlm_store *s;
  SRLM_TRY(srlm_store_open(path, SRLM_PROMPTS_FORMAT, SRLM_PROMPTS_VERSION, &s));
  srlm_seqs q = {0};
  char **text = NULL, **instr = NULL;
  int64_t n_text = 0, n_instr = 0, dims[1] = {0};
  void *line = NULL;
  srlm_status st = srlm_store_read_seqs(s, "/prompts/ids", &q);
  if (st == SRLM_OK) st = srlm_store_read_strings(s, "/prompts/text", &n_text, &text);
  if (st == SRLM_OK) st = srlm_store_read_strings(s, "/prompts/instruction", &n_instr, &instr);
  if (st == SRLM_OK) st = srlm_store_read_array(s, "/prompts/line", SRLM_STORE_I64, 1, dims, &line);
  if (st == SRLM_OK && (n_text != q.n || n_instr != q.n || dims[0] != q.n))
    st = srlm_error(SRLM_ERR_FORMAT, path,
                    "/prompts: %lld sequences in ids but %lld texts, %lld instructions and %lld lines",
                    (long long)q.n, (long long)n_text, (long long)n_instr, (long long)dims[0]);
  /* the references, when the set has them */
  char **refs = NULL;
  int64_t n_refs = 0, rdims[1] = {0};
  void *roff = NULL;
  if (st == SRLM_OK && srlm_store_has(s, "/prompts/reference_offsets")) {
    st = srlm_store_read_strings(s, "/prompts/reference", &n_refs, &refs);
    if (st == SRLM_OK) st = srlm_store_read_array(s, "/prompts/reference_offsets", SRLM_STORE_I64, 1, rdims, &roff);
    const int64_t *o = roff;
    int ok = st == SRLM_OK && rdims[0] == q.n + 1 && o[0] == 0 && o[q.n] == n_refs;
    for (int64_t i = 0; ok && i < q.n; i++) ok = o[i] <= o[i + 1];
    if (st == SRLM_OK && !ok)
      st = srlm_error(SRLM_ERR_FORMAT, path, "/prompts/reference_offsets does not index the %lld references of %lld "
                      "prompts", (long long)n_refs, (long long)q.n);
  }
  srlm_store_close(s);
  if (st != SRLM_OK) {
    srlm_seqs_free(&q);
    srlm_store_strings_free(text, n_text);
    srlm_store_strings_free(instr, n_instr);
    srlm_store_strings_free(refs, n_refs);
    free(roff);
    free(line);
    return st;
  }
  out->ref_offsets = roff;
  out->refs = refs;
  out->n = q.n;
  out->offsets = q.offsets;
  out->ids = q.ids;
  out->text = text;
  out->instruction = instr;
  out->line = line;
  return SRLM_OK;
}
