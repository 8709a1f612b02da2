/* Chat formats in C: llama3, chatml, qwen3 (see include/srlm/chat.h). Each renderer
 * follows its Jinja template statement by statement; comments name the template
 * expression a step reproduces. Spans are recorded while appending. */
#include "srlm/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- output buffer ------------------------------------------------------- */

typedef srlm_strbuf chat_buf;

static void put(chat_buf *b, const char *s, size_t n) { srlm_strbuf_append(b, s, n); }
static void puts_(chat_buf *b, const char *s) { put(b, s, strlen(s)); }

/* ---- string views and Python's strip family ------------------------------ */

typedef struct sv {
  const char *p;
  size_t n;
} sv;

/* Python str.isspace() for one code point at p (valid UTF-8); *len gets its length. */
static int py_space_at(const char *p, size_t n, int from_end, size_t *len) {
  const unsigned char *s = (const unsigned char *)p;
  size_t at = 0, l = 1;
  if (from_end) {
    at = n - 1;
    while (at > 0 && (s[at] & 0xC0) == 0x80) at--;
    l = n - at;
  } else {
    l = s[0] < 0x80 ? 1 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
    if (l > n) l = n;
  }
  uint32_t cp = s[at];
  if (l == 2) cp = ((cp & 0x1F) << 6) | (s[at + 1] & 0x3F);
  else if (l == 3) cp = ((cp & 0x0F) << 12) | ((uint32_t)(s[at + 1] & 0x3F) << 6) | (s[at + 2] & 0x3F);
  else if (l == 4) cp = 0x110000; /* nothing above the BMP is a space */
  *len = l;
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

/* Jinja's trim filter: str.strip() */
static sv py_strip(sv s) {
  size_t l;
  while (s.n > 0 && py_space_at(s.p, s.n, 0, &l)) {
    s.p += l;
    s.n -= l;
  }
  while (s.n > 0 && py_space_at(s.p, s.n, 1, &l)) s.n -= l;
  return s;
}
static sv lstrip_nl(sv s) {
  while (s.n > 0 && s.p[0] == '\n') {
    s.p++;
    s.n--;
  }
  return s;
}
static sv rstrip_nl(sv s) {
  while (s.n > 0 && s.p[s.n - 1] == '\n') s.n--;
  return s;
}

static const char *find(sv s, const char *needle) {
  size_t k = strlen(needle);
  if (k > s.n) return NULL;
  for (size_t i = 0; i + k <= s.n; i++)
    if (s.p[i] == needle[0] && memcmp(s.p + i, needle, k) == 0) return s.p + i;
  return NULL;
}
static const char *find_last(sv s, const char *needle) {
  size_t k = strlen(needle);
  if (k > s.n) return NULL;
  for (size_t i = s.n - k + 1; i-- > 0;)
    if (s.p[i] == needle[0] && memcmp(s.p + i, needle, k) == 0) return s.p + i;
  return NULL;
}
static int starts_with(sv s, const char *pre) {
  size_t k = strlen(pre);
  return s.n >= k && memcmp(s.p, pre, k) == 0;
}
static int ends_with(sv s, const char *suf) {
  size_t k = strlen(suf);
  return s.n >= k && memcmp(s.p + s.n - k, suf, k) == 0;
}

static sv msg_content(const srlm_chat_message *m) { return (sv){m->content, m->content_len}; }

/* ---- formats --------------------------------------------------------------- */

const char *srlm_chat_kind_name(srlm_chat_kind kind) {
  switch (kind) {
    case SRLM_CHAT_LLAMA3: return "llama3";
    case SRLM_CHAT_CHATML: return "chatml";
    case SRLM_CHAT_QWEN3: return "qwen3";
  }
  return "?";
}

srlm_status srlm_chat_format_from_name(const char *name, srlm_chat_format *fmt) {
  memset(fmt, 0, sizeof *fmt);
  if (!strcmp(name, "llama3")) {
    fmt->kind = SRLM_CHAT_LLAMA3;
    snprintf(fmt->bos, sizeof fmt->bos, "<|begin_of_text|>");
  } else if (!strcmp(name, "chatml")) {
    fmt->kind = SRLM_CHAT_CHATML;
  } else if (!strcmp(name, "qwen3")) {
    fmt->kind = SRLM_CHAT_QWEN3;
  } else {
    return srlm_error(SRLM_ERR_CONFIG, "chat format", "unknown format '%s' (known: llama3, chatml, qwen3)", name);
  }
  return SRLM_OK;
}

static const char k_qwen25_system[] = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

srlm_status srlm_chat_format_detect(const char *path, srlm_chat_format *fmt) {
  memset(fmt, 0, sizeof *fmt);
  char file[4096];
  size_t n = strlen(path);
  if (n >= 5 && !strcmp(path + n - 5, ".json")) snprintf(file, sizeof file, "%s", path);
  else snprintf(file, sizeof file, "%s%stokenizer_config.json", path, (n && path[n - 1] == '/') ? "" : "/");
  char *data;
  size_t size;
  SRLM_TRY(srlm_read_file(file, &data, &size));
  json_error_t jerr;
  /* model_max_length is often 1e30 written as an integer: read big integers as reals */
  json_t *root = json_loadb(data, size, JSON_DECODE_INT_AS_REAL, &jerr);
  free(data);
  if (!root) {
    char where[4200];
    snprintf(where, sizeof where, "%s:%d:%d", file, jerr.line, jerr.column);
    return srlm_error(SRLM_ERR_FORMAT, where, "invalid JSON: %s", jerr.text);
  }
  srlm_status st = SRLM_OK;
  const json_t *tpl = json_object_get(root, "chat_template");
  const char *t = NULL;
  if (json_is_string(tpl)) {
    t = json_string_value(tpl);
  } else if (json_is_array(tpl)) {
    /* [{"name": ..., "template": ...}]: the "default" one */
    for (size_t i = 0; i < json_array_size(tpl); i++) {
      const json_t *e = json_array_get(tpl, i);
      if (json_is_string(json_object_get(e, "name")) && !strcmp(json_string_value(json_object_get(e, "name")), "default"))
        t = json_string_value(json_object_get(e, "template"));
    }
    if (!t) st = srlm_error(SRLM_ERR_UNSUPPORTED, file, "chat_template: no template named \"default\"");
  } else {
    st = srlm_error(SRLM_ERR_UNSUPPORTED, file, "chat_template: missing (pass the format by name)");
  }
  if (st == SRLM_OK) {
    if (strstr(t, "<|start_header_id|>")) {
      if (strstr(t, "Cutting Knowledge Date"))
        st = srlm_error(SRLM_ERR_UNSUPPORTED, file,
                        "chat_template: the Llama 3.1+ template (date and tool system header) is not supported");
      fmt->kind = SRLM_CHAT_LLAMA3;
      fmt->assistant_header_always = strstr(t, "add_generation_prompt") == NULL;
      const json_t *bos = json_object_get(root, "bos_token");
      if (json_is_object(bos)) bos = json_object_get(bos, "content");
      snprintf(fmt->bos, sizeof fmt->bos, "%s", json_is_string(bos) ? json_string_value(bos) : "<|begin_of_text|>");
    } else if (strstr(t, "<|im_start|>")) {
      if (strstr(t, "enable_thinking") || strstr(t, "<think>")) {
        fmt->kind = SRLM_CHAT_QWEN3;
      } else {
        fmt->kind = SRLM_CHAT_CHATML;
        if (strstr(t, k_qwen25_system)) snprintf(fmt->default_system, sizeof fmt->default_system, "%s", k_qwen25_system);
      }
    } else {
      st = srlm_error(SRLM_ERR_UNSUPPORTED, file,
                      "chat_template: not a known format (llama3, chatml, qwen3); pass the format by name");
    }
  }
  json_decref(root);
  return st;
}

/* ---- messages -------------------------------------------------------------- */

srlm_status srlm_chat_messages_from_json(const json_t *messages, const char *where, srlm_chat_message **msgs,
                                         size_t *n) {
  *msgs = NULL;
  *n = 0;
  if (!json_is_array(messages)) return srlm_error(SRLM_ERR_FORMAT, where, "messages: expected an array");
  size_t k = json_array_size(messages);
  if (k == 0) return srlm_error(SRLM_ERR_FORMAT, where, "messages: empty");
  srlm_chat_message *m = srlm_xcalloc(k, sizeof *m);
  for (size_t i = 0; i < k; i++) {
    const json_t *e = json_array_get(messages, i);
    srlm_status st = SRLM_OK;
    if (!json_is_object(e)) {
      st = srlm_error(SRLM_ERR_FORMAT, where, "messages[%zu]: expected an object", i);
    } else {
      const json_t *role = json_object_get(e, "role"), *content = json_object_get(e, "content");
      const json_t *reasoning = json_object_get(e, "reasoning_content");
      if (!json_is_string(role) || json_string_length(role) == 0)
        st = srlm_error(SRLM_ERR_FORMAT, where, "messages[%zu].role: expected a non-empty string", i);
      else if (!json_is_string(content))
        st = srlm_error(SRLM_ERR_FORMAT, where, "messages[%zu].content: expected a string", i);
      else if (reasoning && !json_is_null(reasoning) && !json_is_string(reasoning))
        st = srlm_error(SRLM_ERR_FORMAT, where, "messages[%zu].reasoning_content: expected a string or null", i);
      else if (json_object_get(e, "tool_calls") && !json_is_null(json_object_get(e, "tool_calls")))
        st = srlm_error(SRLM_ERR_UNSUPPORTED, where, "messages[%zu].tool_calls: tool calls are not supported", i);
      if (st == SRLM_OK) {
        m[i].role = json_string_value(role);
        m[i].content = json_string_value(content);
        m[i].content_len = json_string_length(content);
        if (json_is_string(reasoning)) {
          m[i].reasoning = json_string_value(reasoning);
          m[i].reasoning_len = json_string_length(reasoning);
        }
      }
    }
    if (st != SRLM_OK) {
      free(m);
      return st;
    }
  }
  *msgs = m;
  *n = k;
  return SRLM_OK;
}

/* ---- renderers --------------------------------------------------------------- */

static void span_begin(srlm_chat_span *sp, const chat_buf *b) {
  if (sp) *sp = (srlm_chat_span){b->n, b->n, b->n, b->n, b->n, b->n};
}

static void put_content(chat_buf *b, sv c, srlm_chat_span *sp) {
  if (sp) sp->content_start = b->n;
  put(b, c.p, c.n);
  if (sp) sp->content_end = b->n;
}

static void render_llama3(const srlm_chat_format *fmt, const srlm_chat_message *msgs, size_t n, int gen, chat_buf *b,
                          srlm_chat_span *spans) {
  for (size_t i = 0; i < n; i++) {
    srlm_chat_span *sp = spans ? &spans[i] : NULL;
    /* {% if loop.index0 == 0 %}{% set content = bos_token + content %} */
    if (i == 0) puts_(b, fmt->bos);
    span_begin(sp, b);
    /* '<|start_header_id|>' + role + '<|end_header_id|>\n\n' + content | trim + '<|eot_id|>' */
    puts_(b, "<|start_header_id|>");
    puts_(b, msgs[i].role);
    puts_(b, "<|end_header_id|>\n\n");
    put_content(b, py_strip(msg_content(&msgs[i])), sp);
    puts_(b, "<|eot_id|>");
    if (sp) {
      sp->end = b->n;
      if (!strcmp(msgs[i].role, "assistant")) {
        sp->target_start = sp->content_start;
        sp->target_end = b->n;
      }
    }
  }
  if (gen || fmt->assistant_header_always) puts_(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_chatml(const srlm_chat_format *fmt, const srlm_chat_message *msgs, size_t n, int gen, chat_buf *b,
                          srlm_chat_span *spans) {
  if (fmt->default_system[0] && strcmp(msgs[0].role, "system") != 0) {
    puts_(b, "<|im_start|>system\n");
    puts_(b, fmt->default_system);
    puts_(b, "<|im_end|>\n");
  }
  for (size_t i = 0; i < n; i++) {
    srlm_chat_span *sp = spans ? &spans[i] : NULL;
    span_begin(sp, b);
    puts_(b, "<|im_start|>");
    puts_(b, msgs[i].role);
    puts_(b, "\n");
    put_content(b, msg_content(&msgs[i]), sp);
    puts_(b, "<|im_end|>");
    if (sp && !strcmp(msgs[i].role, "assistant")) {
      sp->target_start = sp->content_start;
      sp->target_end = b->n;
    }
    puts_(b, "\n");
    if (sp) sp->end = b->n;
  }
  if (gen) puts_(b, "<|im_start|>assistant\n");
}

static srlm_status render_qwen3(const srlm_chat_format *fmt, const srlm_chat_message *msgs, size_t n, int gen,
                                chat_buf *b, srlm_chat_span *spans) {
  for (size_t i = 0; i < n; i++) {
    const char *r = msgs[i].role;
    if (strcmp(r, "user") && strcmp(r, "system") && strcmp(r, "assistant") && strcmp(r, "tool"))
      return srlm_error(SRLM_ERR_UNSUPPORTED, "qwen3 chat format",
                        "messages[%zu].role: '%s' is not one of user, system, assistant, tool "
                        "(the template would drop it)", i, r);
  }
  /* {%- if messages[0].role == 'system' %} '<|im_start|>system\n' + content + '<|im_end|>\n' */
  if (!strcmp(msgs[0].role, "system")) {
    srlm_chat_span *sp = spans ? &spans[0] : NULL;
    span_begin(sp, b);
    puts_(b, "<|im_start|>system\n");
    put_content(b, msg_content(&msgs[0]), sp);
    puts_(b, "<|im_end|>\n");
    if (sp) sp->end = b->n;
  }
  /* last_query_index: the last user message that is not a wrapped tool response */
  size_t last_query = n - 1;
  for (size_t k = n; k-- > 0;) {
    sv c = msg_content(&msgs[k]);
    if (!strcmp(msgs[k].role, "user") && !(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
      last_query = k;
      break;
    }
  }
  for (size_t i = 0; i < n; i++) {
    const srlm_chat_message *m = &msgs[i];
    srlm_chat_span *sp = spans ? &spans[i] : NULL;
    sv content = msg_content(m);
    if (!strcmp(m->role, "user") || (!strcmp(m->role, "system") && i != 0)) {
      span_begin(sp, b);
      puts_(b, "<|im_start|>");
      puts_(b, m->role);
      puts_(b, "\n");
      put_content(b, content, sp);
      puts_(b, "<|im_end|>\n");
      if (sp) sp->end = b->n;
    } else if (!strcmp(m->role, "assistant")) {
      span_begin(sp, b);
      sv reasoning = {"", 0};
      if (m->reasoning) {
        reasoning = (sv){m->reasoning, m->reasoning_len};
      } else if (find(content, "</think>")) {
        /* content.split('</think>')[-1].lstrip('\n') */
        const char *last_end = find_last(content, "</think>");
        sv after = {last_end + 8, (size_t)(content.p + content.n - (last_end + 8))};
        /* content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
        const char *first_end = find(content, "</think>");
        sv before = rstrip_nl((sv){content.p, (size_t)(first_end - content.p)});
        const char *open = find_last(before, "<think>");
        if (open) before = (sv){open + 7, (size_t)(before.p + before.n - (open + 7))};
        reasoning = lstrip_nl(before);
        content = lstrip_nl(after);
      }
      puts_(b, "<|im_start|>assistant\n");
      size_t think_at = b->n;
      int think = i > last_query && (i == n - 1 || reasoning.n > 0);
      if (think) {
        /* '<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') */
        sv rs = rstrip_nl(lstrip_nl(reasoning));
        puts_(b, "<think>\n");
        put(b, rs.p, rs.n);
        puts_(b, "\n</think>\n\n");
        content = lstrip_nl(content);
        put_content(b, content, sp);
        if (sp) sp->target_start = rs.n > 0 ? think_at : sp->content_start;
      } else {
        put_content(b, content, sp);
        if (sp) sp->target_start = sp->content_start;
      }
      puts_(b, "<|im_end|>");
      if (sp) sp->target_end = b->n;
      puts_(b, "\n");
      if (sp) sp->end = b->n;
    } else if (!strcmp(m->role, "tool")) {
      span_begin(sp, b);
      if (i == 0 || strcmp(msgs[i - 1].role, "tool") != 0) puts_(b, "<|im_start|>user");
      puts_(b, "\n<tool_response>\n");
      put_content(b, content, sp);
      puts_(b, "\n</tool_response>");
      if (i == n - 1 || strcmp(msgs[i + 1].role, "tool") != 0) puts_(b, "<|im_end|>\n");
      if (sp) sp->end = b->n;
    }
  }
  if (gen) {
    puts_(b, "<|im_start|>assistant\n");
    if (!fmt->enable_thinking) puts_(b, "<think>\n\n</think>\n\n");
  }
  return SRLM_OK;
}

srlm_status srlm_chat_render(const srlm_chat_format *fmt, const srlm_chat_message *msgs, size_t n,
                             int add_generation_prompt, char **text, size_t *len, srlm_chat_span *spans) {
  *text = NULL;
  *len = 0;
  if (n == 0) return srlm_error(SRLM_ERR_FORMAT, "chat", "no messages to render");
  chat_buf b = {0};
  put(&b, "", 0);
  srlm_status st = SRLM_OK;
  switch (fmt->kind) {
    case SRLM_CHAT_LLAMA3: render_llama3(fmt, msgs, n, add_generation_prompt, &b, spans); break;
    case SRLM_CHAT_CHATML: render_chatml(fmt, msgs, n, add_generation_prompt, &b, spans); break;
    case SRLM_CHAT_QWEN3: st = render_qwen3(fmt, msgs, n, add_generation_prompt, &b, spans); break;
    default: st = srlm_error(SRLM_ERR_INTERNAL, "chat", "format kind %d is not set", (int)fmt->kind);
  }
  if (st != SRLM_OK) {
    free(b.p);
    return st;
  }
  *text = b.p;
  *len = b.n;
  return SRLM_OK;
}

srlm_status srlm_chat_encode(srlm_tokenizer *tok, const srlm_chat_format *fmt, const srlm_chat_message *msgs,
                             size_t n, int add_generation_prompt, srlm_chat_tokens *out) {
  memset(out, 0, sizeof *out);
  srlm_chat_span *spans = srlm_xcalloc(n ? n : 1, sizeof *spans);
  char *text;
  size_t len;
  srlm_status st = srlm_chat_render(fmt, msgs, n, add_generation_prompt, &text, &len, spans);
  if (st == SRLM_OK) st = srlm_tokenizer_encode_offsets(tok, text, len, &out->ids);
  if (st == SRLM_OK) {
    out->mask = srlm_xcalloc(out->ids.n ? out->ids.n : 1, 1);
    /* spans are in text order: walk tokens and spans together */
    size_t s = 0;
    for (size_t k = 0; k < out->ids.n; k++) {
      uint32_t at = out->ids.start[k];
      while (s < n && (spans[s].target_start == spans[s].target_end || spans[s].target_end <= at)) s++;
      out->mask[k] = s < n && at >= spans[s].target_start && at < spans[s].target_end;
    }
  }
  free(text);
  free(spans);
  if (st != SRLM_OK) srlm_chat_tokens_free(out);
  return st;
}

void srlm_chat_tokens_free(srlm_chat_tokens *t) {
  srlm_token_ids_free(&t->ids);
  free(t->mask);
  t->mask = NULL;
}
