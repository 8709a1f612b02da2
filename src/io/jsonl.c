/* JSONL reader: getline + json_loadb per line; see include/srlm/jsonl.h. */
#include "srlm/jsonl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct srlm_jsonl {
  FILE *f;
  int is_stdin;
  char *name;
  char *line;
  size_t line_cap;
  long line_no;  /* of the last line read */
  long value_no; /* of the value last returned */
  char where[4200];
};

srlm_status srlm_jsonl_open(const char *path, srlm_jsonl **out) {
  *out = NULL;
  int is_stdin = !strcmp(path, "-");
  FILE *f = is_stdin ? stdin : fopen(path, "rb");
  if (!f) return srlm_error(SRLM_ERR_IO, path, "cannot open: %s", strerror(errno));
  srlm_jsonl *r = srlm_xcalloc(1, sizeof *r);
  r->f = f;
  r->is_stdin = is_stdin;
  r->name = srlm_xstrdup(is_stdin ? "<stdin>" : path);
  *out = r;
  return SRLM_OK;
}

static void update_where(srlm_jsonl *r) {
  snprintf(r->where, sizeof r->where, "%s:%ld", r->name, r->value_no);
}

srlm_status srlm_jsonl_next(srlm_jsonl *r, json_t **value) {
  *value = NULL;
  for (;;) {
    errno = 0;
    ssize_t n = getline(&r->line, &r->line_cap, r->f);
    if (n < 0) {
      if (ferror(r->f)) return srlm_error(SRLM_ERR_IO, r->name, "read error after line %ld: %s", r->line_no, strerror(errno));
      return SRLM_OK;
    }
    r->line_no++;
    size_t len = (size_t)n;
    while (len > 0 && (r->line[len - 1] == '\n' || r->line[len - 1] == '\r')) len--;
    if (r->line_no == 1 && len >= 3 && !memcmp(r->line, "\xEF\xBB\xBF", 3)) { /* a UTF-8 byte-order mark */
      memmove(r->line, r->line + 3, len - 3);
      len -= 3;
    }
    size_t i = 0;
    while (i < len && (r->line[i] == ' ' || r->line[i] == '\t' || r->line[i] == '\r')) i++;
    if (i == len) continue;
    r->value_no = r->line_no;
    update_where(r);
    json_error_t err;
    json_t *v = json_loadb(r->line, len, JSON_DECODE_ANY, &err);
    if (!v) {
      char where[4300];
      snprintf(where, sizeof where, "%s:%ld:%d", r->name, r->line_no, err.column);
      return srlm_error(SRLM_ERR_FORMAT, where, "invalid JSON: %s", err.text);
    }
    *value = v;
    return SRLM_OK;
  }
}

long srlm_jsonl_line(const srlm_jsonl *r) { return r->value_no; }

const char *srlm_jsonl_where(const srlm_jsonl *r) { return r->where; }

srlm_status srlm_jsonl_error(const srlm_jsonl *r, srlm_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  srlm_status st = srlm_verror(code, r->where, fmt, ap);
  va_end(ap);
  return st;
}

void srlm_jsonl_close(srlm_jsonl *r) {
  if (!r) return;
  if (!r->is_stdin) fclose(r->f);
  free(r->name);
  free(r->line);
  free(r);
}

const char *srlm_json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
  }
  return "?";
}

srlm_status srlm_json_save(json_t *o, const char *dir, const char *name) {
  char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (!text) return srlm_error(SRLM_ERR_INTERNAL, name, "cannot serialize JSON");
  size_t n = strlen(dir) + strlen(name) + 2;
  char *path = srlm_xmalloc(n);
  snprintf(path, n, "%s/%s", dir, name);
  srlm_status st = srlm_write_file_atomic(path, text, strlen(text));
  free(path);
  free(text);
  return st;
}
