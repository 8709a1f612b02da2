/* srlm config engine: strict YAML (libyaml events) into srlm_config, `key=value`
 * overrides, validation, and printing back to YAML. The option table lives in
 * config_options.c; the typing rules are written down in include/srlm/config.h.
 *
 * The parser walks libyaml's event stream against the table: a key is an option,
 * a section (a prefix of option keys) or an error, so recursion depth is bounded by
 * the table, never by the input. Values are applied as they are read; nothing is
 * kept of the document. Overrides parse their value text as a one-node YAML
 * document and go through the same value code, so files and command lines follow
 * one set of rules and messages.
 *
 * Printing picks, for each float, the shortest %.Ng that strtod reads back to the
 * same bits, written with a '.' and a signed exponent so YAML 1.1 readers also see a
 * float. Strings are printed plain only when they are made of [A-Za-z0-9_./+-], do
 * not start like a number or an indicator and are not a YAML 1.1 null/bool word;
 * everything else is double-quoted with escapes for quotes, backslashes, control
 * characters and Unicode line breaks. Numbers go through strtod/snprintf, so they
 * assume the C numeric locale (srlm never calls setlocale).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "srlm/config.h"

#define KEY_CAP 128 /* longest key path of the table, with room */

/* ---- a growable string --------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t n, cap;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->n + n + 1 > cap) cap *= 2;
    b->p = srlm_xrealloc(b->p, cap);
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}
static void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof small) {
    sb_putn(b, small, (size_t)n);
    return;
  }
  char *big = srlm_xmalloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  sb_putn(b, big, (size_t)n);
  free(big);
}
static void sb_pad(sbuf *b, size_t line_start, size_t col) {
  while (b->n - line_start < col) sb_putn(b, " ", 1);
}
static char *sb_take(sbuf *b) {
  if (!b->p) sb_putn(b, "", 0);
  return b->p;
}

static char *xstrndup(const char *s, size_t n) {
  char *d = srlm_xmalloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

/* ---- fields --------------------------------------------------------------- */

static void *field(srlm_config *cfg, const srlm_config_option *o) { return (char *)cfg + o->offset; }
static const void *cfield(const srlm_config *cfg, const srlm_config_option *o) {
  return (const char *)cfg + o->offset;
}

static void strlist_free(srlm_strlist *l) {
  for (int i = 0; i < l->n; i++) free(l->items[i]);
  free(l->items);
  l->items = NULL;
  l->n = 0;
}
static void strlist_push(srlm_strlist *l, char *s) {
  l->items = srlm_xrealloc(l->items, (size_t)(l->n + 1) * sizeof *l->items);
  l->items[l->n++] = s;
}
static void strlist_copy(srlm_strlist *dst, const srlm_strlist *src) {
  dst->items = NULL;
  dst->n = 0;
  for (int i = 0; i < src->n; i++) strlist_push(dst, srlm_xstrdup(src->items[i]));
}

static int n_choices(const srlm_config_option *o) {
  int n = 0;
  while (o->choices[n]) n++;
  return n;
}

/* ---- the table ------------------------------------------------------------ */

const srlm_config_option *srlm_config_option_find(const char *key) {
  size_t n;
  const srlm_config_option *t = srlm_config_options(&n);
  for (size_t i = 0; i < n; i++)
    if (!strcmp(t[i].key, key)) return &t[i];
  return NULL;
}

/* The first option under section `path` ("train" -> train.loss), or NULL when path is
 * not a section. */
static const srlm_config_option *section_first(const char *path) {
  size_t n, len = strlen(path);
  const srlm_config_option *t = srlm_config_options(&n);
  for (size_t i = 0; i < n; i++)
    if (!strncmp(t[i].key, path, len) && t[i].key[len] == '.') return &t[i];
  return NULL;
}

const char *srlm_config_type_name(srlm_config_type type) {
  switch (type) {
    case SRLM_CONFIG_INT: return "int";
    case SRLM_CONFIG_INT64: return "int64";
    case SRLM_CONFIG_FLOAT: return "float";
    case SRLM_CONFIG_BOOL: return "bool";
    case SRLM_CONFIG_STRING: return "string";
    case SRLM_CONFIG_ENUM: return "enum";
    case SRLM_CONFIG_STRLIST: return "list";
  }
  return "?";
}

const char *srlm_config_enum_name(const char *key, int value) {
  const srlm_config_option *o = srlm_config_option_find(key);
  if (!o || o->type != SRLM_CONFIG_ENUM || value < 0 || value >= n_choices(o)) return NULL;
  return o->choices[value];
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return (size_t)-1;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (row[j] + 1 < best) best = row[j] + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* " (did you mean train.lr?)" for an unknown key path, or "" when nothing is close:
 * a key within edit distance 2, else the one key whose last part is the same. */
static void suggest(const char *path, char *out, size_t cap) {
  size_t n;
  const srlm_config_option *t = srlm_config_options(&n);
  const char *best = NULL, *same_leaf = NULL;
  size_t best_d = 3;
  int n_same_leaf = 0;
  const char *leaf = strrchr(path, '.');
  leaf = leaf ? leaf + 1 : path;
  for (size_t i = 0; i < n; i++) {
    size_t d = edit_distance(path, t[i].key);
    if (d < best_d) {
      best_d = d;
      best = t[i].key;
    }
    const char *tl = strrchr(t[i].key, '.');
    if (!strcmp(tl ? tl + 1 : t[i].key, leaf)) {
      same_leaf = t[i].key;
      n_same_leaf++;
    }
  }
  if (!best && n_same_leaf == 1) best = same_leaf;
  if (best)
    snprintf(out, cap, " (did you mean %s?)", best);
  else
    out[0] = '\0';
}

/* text[len] made safe for a message: at most max_chars characters, control characters
 * as '?', cut on a UTF-8 boundary, "..." when cut. */
static void show_n(const char *text, size_t len, char *out, size_t cap, size_t max_chars) {
  size_t o = 0, chars = 0, i = 0;
  while (i < len && chars < max_chars && o + 8 < cap) {
    unsigned char c = (unsigned char)text[i];
    size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (i + n > len) n = 1;
    if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xc0)) {
      out[o++] = '?';
    } else {
      memcpy(out + o, text + i, n);
      o += n;
    }
    i += n;
    chars++;
  }
  if (i < len && o + 4 <= cap) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
}
static void show(const char *text, size_t len, char *out, size_t cap) { show_n(text, len, out, cap, 40); }

/* ---- lifetime --------------------------------------------------------------- */

void srlm_config_init(srlm_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  size_t n;
  const srlm_config_option *t = srlm_config_options(&n);
  for (size_t i = 0; i < n; i++) {
    const srlm_config_option *o = &t[i];
    void *f = field(cfg, o);
    switch (o->type) {
      case SRLM_CONFIG_INT: *(int *)f = (int)o->idef; break;
      case SRLM_CONFIG_INT64: *(int64_t *)f = o->idef; break;
      case SRLM_CONFIG_FLOAT: *(double *)f = o->fdef; break;
      case SRLM_CONFIG_BOOL: *(bool *)f = o->idef != 0; break;
      case SRLM_CONFIG_STRING: *(char **)f = srlm_xstrdup(o->sdef); break;
      case SRLM_CONFIG_ENUM: {
        int k = 0;
        while (o->choices[k] && strcmp(o->choices[k], o->sdef)) k++;
        SRLM_CHECK(o->choices[k] != NULL, "default '%s' of %s is not one of its names", o->sdef, o->key);
        *(int *)f = k;
        break;
      }
      case SRLM_CONFIG_STRLIST: {
        srlm_strlist *l = f;
        for (int k = 0; o->ldef[k]; k++) strlist_push(l, srlm_xstrdup(o->ldef[k]));
        break;
      }
    }
  }
}

void srlm_config_free(srlm_config *cfg) {
  size_t n;
  const srlm_config_option *t = srlm_config_options(&n);
  for (size_t i = 0; i < n; i++) {
    if (t[i].type == SRLM_CONFIG_STRING) free(*(char **)field(cfg, &t[i]));
    if (t[i].type == SRLM_CONFIG_STRLIST) strlist_free(field(cfg, &t[i]));
  }
  memset(cfg, 0, sizeof *cfg);
}

void srlm_config_copy(srlm_config *dst, const srlm_config *src) {
  memcpy(dst, src, sizeof *dst);
  size_t n;
  const srlm_config_option *t = srlm_config_options(&n);
  for (size_t i = 0; i < n; i++) {
    if (t[i].type == SRLM_CONFIG_STRING)
      *(char **)field(dst, &t[i]) = srlm_xstrdup(*(char *const *)cfield(src, &t[i]));
    if (t[i].type == SRLM_CONFIG_STRLIST) strlist_copy(field(dst, &t[i]), cfield(src, &t[i]));
  }
}

static bool option_equal(const srlm_config *a, const srlm_config *b, const srlm_config_option *o) {
  const void *fa = cfield(a, o), *fb = cfield(b, o);
  switch (o->type) {
    case SRLM_CONFIG_INT:
    case SRLM_CONFIG_ENUM: return *(const int *)fa == *(const int *)fb;
    case SRLM_CONFIG_INT64: return *(const int64_t *)fa == *(const int64_t *)fb;
    case SRLM_CONFIG_FLOAT: return memcmp(fa, fb, sizeof(double)) == 0;
    case SRLM_CONFIG_BOOL: return *(const bool *)fa == *(const bool *)fb;
    case SRLM_CONFIG_STRING: return strcmp(*(char *const *)fa, *(char *const *)fb) == 0;
    case SRLM_CONFIG_STRLIST: {
      const srlm_strlist *la = fa, *lb = fb;
      if (la->n != lb->n) return false;
      for (int i = 0; i < la->n; i++)
        if (strcmp(la->items[i], lb->items[i])) return false;
      return true;
    }
  }
  return false;
}

bool srlm_config_equal(const srlm_config *a, const srlm_config *b, const char **first_diff) {
  size_t n;
  const srlm_config_option *t = srlm_config_options(&n);
  for (size_t i = 0; i < n; i++)
    if (!option_equal(a, b, &t[i])) {
      if (first_diff) *first_diff = t[i].key;
      return false;
    }
  if (first_diff) *first_diff = NULL;
  return true;
}

/* ---- value text: numbers and ranges ------------------------------------------- */

/* Shortest %.Ng that reads back to the same bits, with a '.' in the mantissa and a
 * signed exponent ("1.0e-06", "0.1", "3.0"). */
static void fmt_double(double v, char out[48]) {
  char tmp[40];
  if (!isfinite(v)) {
    snprintf(out, 48, "%s", isnan(v) ? ".nan" : v > 0 ? ".inf" : "-.inf");
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    double back = strtod(tmp, NULL);
    if (memcmp(&back, &v, sizeof v) == 0) break;
  }
  char *e = strchr(tmp, 'e');
  if (e) { /* %g went to exponent form for an integer-sized value: 10000.0 reads better than 1.0e+04 */
    int exp10 = atoi(e + 1);
    if (exp10 >= 0 && exp10 < 16) {
      snprintf(tmp, sizeof tmp, "%.*g", exp10 + 1, v);
      e = strchr(tmp, 'e');
    }
  }
  size_t mant = e ? (size_t)(e - tmp) : strlen(tmp);
  bool has_dot = memchr(tmp, '.', mant) != NULL;
  snprintf(out, 48, "%.*s%s%s", (int)mant, tmp, has_dot ? "" : ".0", e ? e : "");
}

/* A bound for messages and --help: %g, with inf for an open end. */
static void fmt_bound(double v, char out[32]) {
  if (isinf(v))
    snprintf(out, 32, "%sinf", v < 0 ? "-" : "");
  else
    snprintf(out, 32, "%.10g", v);
}

/* "[0, 1]", "(0, 1]", "[0, inf)", "one of dpo, ipo", "at most 64 items", "" */
static void range_text(const srlm_config_option *o, char *out, size_t cap, bool for_help) {
  char lo[32], hi[32];
  switch (o->type) {
    case SRLM_CONFIG_INT:
    case SRLM_CONFIG_INT64:
      snprintf(out, cap, "[%lld, %lld]", (long long)o->imin, (long long)o->imax);
      return;
    case SRLM_CONFIG_FLOAT:
      fmt_bound(o->fmin, lo);
      fmt_bound(o->fmax, hi);
      snprintf(out, cap, "%c%s, %s%c", o->fmin_open || isinf(o->fmin) ? '(' : '[', lo, hi,
               o->fmax_open || isinf(o->fmax) ? ')' : ']');
      return;
    case SRLM_CONFIG_BOOL: snprintf(out, cap, for_help ? "true|false" : "true or false"); return;
    case SRLM_CONFIG_ENUM: {
      size_t k = 0;
      out[0] = '\0';
      for (int i = 0; o->choices[i]; i++)
        k += (size_t)snprintf(out + k, k < cap ? cap - k : 0, "%s%s", i ? (for_help ? "|" : ", ") : "",
                              o->choices[i]);
      return;
    }
    case SRLM_CONFIG_STRLIST: snprintf(out, cap, "at most %lld items", (long long)o->imax); return;
    case SRLM_CONFIG_STRING: out[0] = '\0'; return;
  }
}

/* ---- strings as YAML ------------------------------------------------------------ */

static bool is_yaml11_word(const char *s) {
  static const char *const words[] = {"null", "~", "true", "false", "yes", "no", "on", "off", "y", "n", NULL};
  for (int i = 0; words[i]; i++)
    if (!strcasecmp(s, words[i])) return true;
  return false;
}

static bool needs_quotes(const char *s) {
  if (!s[0]) return true;
  if ((s[0] >= '0' && s[0] <= '9') || s[0] == '+' || s[0] == '-' || s[0] == '.') return true;
  for (const char *c = s; *c; c++) {
    bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '.' || *c == '/' || *c == '+' || *c == '-';
    if (!ok) return true;
  }
  return is_yaml11_word(s);
}

/* Decodes one UTF-8 character at s (n bytes left) into *cp; returns its length, or 0
 * when the bytes are not valid UTF-8 (overlong, surrogate, beyond U+10FFFF, cut). */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp) {
  unsigned c = s[0];
  size_t len;
  unsigned min;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if (c >= 0xc2 && c < 0xe0) {
    len = 2, min = 0x80, c &= 0x1f;
  } else if (c >= 0xe0 && c < 0xf0) {
    len = 3, min = 0x800, c &= 0x0f;
  } else if (c >= 0xf0 && c < 0xf5) {
    len = 4, min = 0x10000, c &= 0x07;
  } else {
    return 0;
  }
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    c = (c << 6) | (s[i] & 0x3f);
  }
  if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
  *cp = c;
  return len;
}

static void put_string(sbuf *b, const char *s) {
  if (!needs_quotes(s)) {
    sb_puts(b, s);
    return;
  }
  sb_putn(b, "\"", 1);
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\t': sb_puts(b, "\\t"); break;
        case '\r': sb_puts(b, "\\r"); break;
        default:
          if (c < 0x20 || c == 0x7f)
            sb_printf(b, "\\x%02X", c);
          else
            sb_putn(b, (const char *)p + i, 1);
      }
      i++;
      continue;
    }
    unsigned cp;
    size_t len = utf8_decode(p + i, n - i, &cp);
    if (!len) { /* not UTF-8: cannot come from a parsed file; keep the byte visible */
      sb_printf(b, "\\x%02X", c);
      i++;
      continue;
    }
    if (cp == 0x85)
      sb_puts(b, "\\N");
    else if (cp == 0x2028)
      sb_puts(b, "\\L");
    else if (cp == 0x2029)
      sb_puts(b, "\\P");
    else if (cp < 0xa0)
      sb_printf(b, "\\x%02X", cp);
    else if (cp == 0xfeff || cp == 0xfffe || cp == 0xffff)
      sb_printf(b, "\\u%04X", cp);
    else
      sb_putn(b, (const char *)p + i, len);
    i += len;
  }
  sb_putn(b, "\"", 1);
}

static void put_value(sbuf *b, const srlm_config *cfg, const srlm_config_option *o) {
  const void *f = cfield(cfg, o);
  char num[48];
  switch (o->type) {
    case SRLM_CONFIG_INT: sb_printf(b, "%d", *(const int *)f); break;
    case SRLM_CONFIG_INT64: sb_printf(b, "%lld", (long long)*(const int64_t *)f); break;
    case SRLM_CONFIG_FLOAT:
      fmt_double(*(const double *)f, num);
      sb_puts(b, num);
      break;
    case SRLM_CONFIG_BOOL: sb_puts(b, *(const bool *)f ? "true" : "false"); break;
    case SRLM_CONFIG_STRING: put_string(b, *(char *const *)f); break;
    case SRLM_CONFIG_ENUM: {
      int v = *(const int *)f;
      if (v >= 0 && v < n_choices(o))
        sb_puts(b, o->choices[v]);
      else
        sb_printf(b, "%d", v); /* invalid: validation names it, parsing refuses it */
      break;
    }
    case SRLM_CONFIG_STRLIST: {
      const srlm_strlist *l = f;
      sb_putn(b, "[", 1);
      for (int i = 0; i < l->n; i++) {
        if (i) sb_puts(b, ", ");
        put_string(b, l->items[i]);
      }
      sb_putn(b, "]", 1);
      break;
    }
  }
}

char *srlm_config_value_text(const srlm_config *cfg, const srlm_config_option *opt) {
  sbuf b = {0};
  put_value(&b, cfg, opt);
  return sb_take(&b);
}

/* ---- the event source: a libyaml parser plus where messages point ------------- */

typedef struct cfg_src {
  yaml_parser_t yp;
  yaml_event_t ev;
  bool have_ev;
  const char *file;     /* file name; NULL for an override */
  char arg[256];        /* the override argument, shown safely */
  size_t value_col;     /* 0-based column of the override's value within its argument */
  const unsigned char *text;
  size_t len;
  char path[KEY_CAP + 256]; /* key path the next message names ("" = none) */
} cfg_src;

static srlm_status src_vfail(cfg_src *s, srlm_status code, yaml_mark_t m, const char *fmt, va_list ap) {
  char where[KEY_CAP + 640];
  const char *sep = s->path[0] ? ": " : "";
  if (s->file)
    snprintf(where, sizeof where, "%s:%zu:%zu%s%s", s->file, m.line + 1, m.column + 1, sep, s->path);
  else
    snprintf(where, sizeof where, "override '%s'%s%s", s->arg, sep, s->path);
  return srlm_verror(code, where, fmt, ap);
}

static srlm_status src_fail(cfg_src *s, yaml_mark_t m, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static srlm_status src_fail(cfg_src *s, yaml_mark_t m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  src_vfail(s, SRLM_ERR_CONFIG, m, fmt, ap);
  va_end(ap);
  return SRLM_ERR_CONFIG;
}

static void set_path(cfg_src *s, const char *path) {
  size_t n = strlen(path);
  if (n >= sizeof s->path) n = sizeof s->path - 1;
  memcpy(s->path, path, n);
  s->path[n] = '\0';
}

/* The mark of a byte offset (reader errors carry only an offset). */
static yaml_mark_t mark_at(const cfg_src *s, size_t offset) {
  yaml_mark_t m = {0, 0, 0};
  if (offset > s->len) offset = s->len;
  for (size_t i = 0; i < offset; i++) {
    if (s->text[i] == '\n') {
      m.line++;
      m.column = 0;
    } else if ((s->text[i] & 0xc0) != 0x80) {
      m.column++;
    }
  }
  m.index = offset;
  return m;
}

static srlm_status src_syntax_error(cfg_src *s) {
  yaml_parser_t *p = &s->yp;
  if (p->error == YAML_MEMORY_ERROR)
    return srlm_error(SRLM_ERR_NOMEM, s->file ? s->file : "override", "out of memory while reading YAML");
  yaml_mark_t m = p->error == YAML_READER_ERROR ? mark_at(s, p->problem_offset) : p->problem_mark;
  char context[160] = "";
  if (p->context && p->error != YAML_READER_ERROR)
    snprintf(context, sizeof context, " (%s at %zu:%zu)", p->context, p->context_mark.line + 1,
             p->context_mark.column + 1);
  const char *problem = p->problem ? p->problem : "malformed YAML";
  if (s->file) return src_fail(s, m, "YAML syntax error: %s%s", problem, context);
  /* Point at the column within the whole argument; libyaml puts an error at the end of
   * a one-line value on the (virtual) next line. */
  bool one_line = !memchr(s->text, '\n', s->len);
  if (m.line > 0 && !one_line)
    return src_fail(s, m, "YAML syntax error at line %zu, column %zu of the value: %s", m.line + 1, m.column + 1,
                    problem);
  size_t col = m.column;
  if (m.line > 0) col = mark_at(s, s->len).column;
  return src_fail(s, m, "YAML syntax error at column %zu: %s", s->value_col + col + 1, problem);
}

static srlm_status src_open(cfg_src *s, const char *file, const char *arg, size_t value_col, const char *text,
                            size_t len) {
  memset(s, 0, sizeof *s);
  s->file = file;
  if (arg) show_n(arg, strlen(arg), s->arg, sizeof s->arg, 160);
  s->value_col = value_col;
  s->text = (const unsigned char *)text;
  s->len = len;
  if (!yaml_parser_initialize(&s->yp)) return srlm_error(SRLM_ERR_NOMEM, file, "cannot start the YAML parser");
  yaml_parser_set_input_string(&s->yp, s->text, len);
  return SRLM_OK;
}

static void src_close(cfg_src *s) {
  if (s->have_ev) yaml_event_delete(&s->ev);
  s->have_ev = false;
  yaml_parser_delete(&s->yp);
}

/* Moves to the next event; anchors, aliases and tags end the parse here. */
static srlm_status src_next(cfg_src *s) {
  if (s->have_ev) yaml_event_delete(&s->ev);
  s->have_ev = false;
  if (!yaml_parser_parse(&s->yp, &s->ev)) return src_syntax_error(s);
  s->have_ev = true;
  const yaml_event_t *e = &s->ev;
  const yaml_char_t *anchor = NULL, *tag = NULL;
  char shown[64];
  switch (e->type) {
    case YAML_ALIAS_EVENT:
      show((const char *)e->data.alias.anchor, strlen((const char *)e->data.alias.anchor), shown, sizeof shown);
      return src_fail(s, e->start_mark, "aliases (*%s) are not supported", shown);
    case YAML_SCALAR_EVENT:
      anchor = e->data.scalar.anchor;
      tag = e->data.scalar.tag;
      break;
    case YAML_SEQUENCE_START_EVENT:
      anchor = e->data.sequence_start.anchor;
      tag = e->data.sequence_start.tag;
      break;
    case YAML_MAPPING_START_EVENT:
      anchor = e->data.mapping_start.anchor;
      tag = e->data.mapping_start.tag;
      break;
    default: break;
  }
  if (anchor) {
    show((const char *)anchor, strlen((const char *)anchor), shown, sizeof shown);
    return src_fail(s, e->start_mark, "anchors (&%s) are not supported", shown);
  }
  if (tag) {
    show((const char *)tag, strlen((const char *)tag), shown, sizeof shown);
    return src_fail(s, e->start_mark, "tags ('%s') are not supported", shown);
  }
  return SRLM_OK;
}

static const char *node_kind(yaml_event_type_t t) {
  return t == YAML_MAPPING_START_EVENT ? "a mapping" : t == YAML_SEQUENCE_START_EVENT ? "a list" : "a scalar";
}

/* ---- scalars into values ---------------------------------------------------------- */

typedef struct scalar {
  const char *text; /* [len], may hold NUL */
  size_t len;
  bool plain;
  yaml_mark_t mark;
} scalar;

static bool scalar_is(const scalar *sc, const char *word) {
  return sc->plain && sc->len == strlen(word) && !memcmp(sc->text, word, sc->len);
}

static bool is_null(const scalar *sc) {
  return scalar_is(sc, "~") || scalar_is(sc, "null") || scalar_is(sc, "Null") || scalar_is(sc, "NULL");
}

/* "'abc'", "a quoted string \"5\"", "an empty value" */
static void describe(const scalar *sc, char *out, size_t cap) {
  char shown[200];
  show(sc->text, sc->len, shown, sizeof shown);
  if (sc->plain && sc->len == 0)
    snprintf(out, cap, "an empty value");
  else if (sc->plain)
    snprintf(out, cap, "'%s'", shown);
  else
    snprintf(out, cap, "a quoted string \"%s\"", shown);
}

static const char *expected_what(const srlm_config_option *o, char *buf, size_t cap) {
  switch (o->type) {
    case SRLM_CONFIG_INT:
    case SRLM_CONFIG_INT64: return "an integer";
    case SRLM_CONFIG_FLOAT: return "a float";
    case SRLM_CONFIG_BOOL: return "a bool (true or false)";
    case SRLM_CONFIG_STRING: return "a string";
    case SRLM_CONFIG_STRLIST: return "a list of strings such as [a, \"b c\"]";
    case SRLM_CONFIG_ENUM: {
      char names[256];
      range_text(o, names, sizeof names, false);
      snprintf(buf, cap, "one of %s", names);
      return buf;
    }
  }
  return "?";
}

static srlm_status expected_error(cfg_src *s, const srlm_config_option *o, const scalar *sc, const char *note) {
  char what[300], got[256];
  describe(sc, got, sizeof got);
  return src_fail(s, sc->mark, "expected %s, got %s%s", expected_what(o, what, sizeof what), got, note);
}

static srlm_status range_error(cfg_src *s, const srlm_config_option *o, const scalar *sc) {
  char range[256], shown[200];
  range_text(o, range, sizeof range, false);
  show(sc->text, sc->len, shown, sizeof shown);
  return src_fail(s, sc->mark, "value %s out of range %s", shown, range);
}

/* Plain decimal integer; *overflow when it does not fit int64. Leading zeros refused. */
static bool parse_int(const scalar *sc, int64_t *out, bool *overflow, bool *leading_zero) {
  const char *p = sc->text, *end = sc->text + sc->len;
  *overflow = *leading_zero = false;
  bool neg = false;
  if (p < end && (*p == '+' || *p == '-')) neg = *p++ == '-';
  if (p == end) return false;
  if (*p == '0' && p + 1 < end) *leading_zero = true;
  uint64_t mag = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; p < end; p++) {
    if (*p < '0' || *p > '9') return false;
    unsigned d = (unsigned)(*p - '0');
    if (mag > (limit - d) / 10)
      *overflow = true;
    else
      mag = mag * 10 + d;
  }
  if (*leading_zero) return false;
  *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
  return true;
}

/* Plain decimal float: [-+]? (digits [. digits*] | . digits) ([eE] [-+]? digits)? */
static bool float_syntax(const scalar *sc) {
  const char *p = sc->text, *end = sc->text + sc->len;
  if (p < end && (*p == '+' || *p == '-')) p++;
  size_t int_digits = 0, frac_digits = 0;
  while (p < end && *p >= '0' && *p <= '9') p++, int_digits++;
  if (p < end && *p == '.') {
    p++;
    while (p < end && *p >= '0' && *p <= '9') p++, frac_digits++;
  }
  if (int_digits + frac_digits == 0) return false;
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    size_t exp_digits = 0;
    while (p < end && *p >= '0' && *p <= '9') p++, exp_digits++;
    if (!exp_digits) return false;
  }
  return p == end;
}

static bool in_float_range(const srlm_config_option *o, double v) {
  if (!isfinite(v)) return false;
  if (o->fmin_open ? !(v > o->fmin) : !(v >= o->fmin)) return false;
  if (o->fmax_open ? !(v < o->fmax) : !(v <= o->fmax)) return false;
  return true;
}

/* Checks one scalar against an option and stores it. The rules of config.h. */
static srlm_status apply_scalar(cfg_src *s, srlm_config *cfg, const srlm_config_option *o, const scalar *sc) {
  void *f = field(cfg, o);
  if (is_null(sc))
    return expected_error(s, o, sc,
                          o->type == SRLM_CONFIG_STRING || o->type == SRLM_CONFIG_STRLIST
                              ? " (null; write \"\" for the empty string)"
                              : " (null)");
  bool empty = sc->plain && sc->len == 0;
  switch (o->type) {
    case SRLM_CONFIG_INT:
    case SRLM_CONFIG_INT64: {
      int64_t v = 0;
      bool overflow, leading_zero;
      if (!sc->plain) return expected_error(s, o, sc, "");
      if (!parse_int(sc, &v, &overflow, &leading_zero)) {
        if (leading_zero) return expected_error(s, o, sc, " (leading zeros are ambiguous in YAML)");
        return expected_error(s, o, sc, "");
      }
      if (overflow || v < o->imin || v > o->imax) return range_error(s, o, sc);
      if (o->type == SRLM_CONFIG_INT)
        *(int *)f = (int)v;
      else
        *(int64_t *)f = v;
      return SRLM_OK;
    }
    case SRLM_CONFIG_FLOAT: {
      if (!sc->plain) return expected_error(s, o, sc, "");
      if (!float_syntax(sc)) {
        char lower[8] = "";
        if (sc->len < sizeof lower) {
          for (size_t i = 0; i < sc->len; i++) lower[i] = (char)(sc->text[i] | 0x20);
          lower[sc->len] = '\0';
        }
        bool special = strstr(lower, ".inf") || strstr(lower, ".nan");
        return expected_error(s, o, sc, special ? " (only finite floats)" : "");
      }
      char *copy = xstrndup(sc->text, sc->len);
      errno = 0;
      double v = strtod(copy, NULL);
      bool too_big = errno == ERANGE && isinf(v);
      /* 1e-400 reads as 0 with ERANGE: a value the double cannot hold, not 0 (subnormals, also
         ERANGE, are kept: they round-trip) */
      bool too_small = errno == ERANGE && v == 0;
      free(copy);
      if (too_small) {
        char shown[200];
        show(sc->text, sc->len, shown, sizeof shown);
        return src_fail(s, sc->mark, "value %s out of range: it underflows a double to 0; write 0 for zero", shown);
      }
      if (too_big || !in_float_range(o, v)) return range_error(s, o, sc);
      *(double *)f = v;
      return SRLM_OK;
    }
    case SRLM_CONFIG_BOOL: {
      bool t = scalar_is(sc, "true") || scalar_is(sc, "True") || scalar_is(sc, "TRUE");
      bool fl = scalar_is(sc, "false") || scalar_is(sc, "False") || scalar_is(sc, "FALSE");
      if (!t && !fl) return expected_error(s, o, sc, "");
      *(bool *)f = t;
      return SRLM_OK;
    }
    case SRLM_CONFIG_ENUM: {
      for (int i = 0; o->choices[i]; i++)
        if (sc->len == strlen(o->choices[i]) && !memcmp(sc->text, o->choices[i], sc->len)) {
          *(int *)f = i;
          return SRLM_OK;
        }
      return expected_error(s, o, sc, "");
    }
    case SRLM_CONFIG_STRING: {
      if (memchr(sc->text, '\0', sc->len)) return src_fail(s, sc->mark, "strings may not contain NUL (\\0)");
      char **sp = f;
      free(*sp);
      *sp = xstrndup(sc->text, sc->len);
      return SRLM_OK;
    }
    case SRLM_CONFIG_STRLIST:
      if (!empty) return expected_error(s, o, sc, "");
      strlist_free(f);
      return SRLM_OK;
  }
  return SRLM_OK;
}

static scalar event_scalar(const yaml_event_t *e) {
  scalar sc = {(const char *)e->data.scalar.value, e->data.scalar.length,
               e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, e->start_mark};
  return sc;
}

/* The value of option o; the current event is its first. */
static srlm_status parse_value(cfg_src *s, srlm_config *cfg, const srlm_config_option *o) {
  const yaml_event_t *e = &s->ev;
  char what[300];
  if (e->type == YAML_SCALAR_EVENT) {
    scalar sc = event_scalar(e);
    return apply_scalar(s, cfg, o, &sc);
  }
  if (o->type != SRLM_CONFIG_STRLIST || e->type != YAML_SEQUENCE_START_EVENT) {
    const char *hint = o->type == SRLM_CONFIG_STRING && e->type == YAML_MAPPING_START_EVENT
                           ? " (quote strings that contain ': ')"
                           : "";
    return src_fail(s, e->start_mark, "expected %s, got %s%s", expected_what(o, what, sizeof what),
                    node_kind(e->type), hint);
  }
  srlm_strlist list = {0};
  srlm_status st = SRLM_OK;
  for (;;) {
    set_path(s, o->key);
    if ((st = src_next(s)) != SRLM_OK) break;
    if (e->type == YAML_SEQUENCE_END_EVENT) break;
    snprintf(s->path, sizeof s->path, "%s[%d]", o->key, list.n);
    if (e->type != YAML_SCALAR_EVENT) {
      st = src_fail(s, e->start_mark, "expected a string, got %s", node_kind(e->type));
      break;
    }
    scalar sc = event_scalar(e);
    if (is_null(&sc)) {
      st = src_fail(s, sc.mark, "expected a string, got '%.*s' (null; write \"\" for the empty string)", (int)sc.len,
                    sc.text);
      break;
    }
    if (memchr(sc.text, '\0', sc.len)) {
      st = src_fail(s, sc.mark, "strings may not contain NUL (\\0)");
      break;
    }
    if (list.n >= o->imax) {
      st = src_fail(s, sc.mark, "too many items (at most %lld)", (long long)o->imax);
      break;
    }
    strlist_push(&list, xstrndup(sc.text, sc.len));
  }
  set_path(s, o->key);
  if (st != SRLM_OK) {
    strlist_free(&list);
    return st;
  }
  strlist_free(field(cfg, o));
  *(srlm_strlist *)field(cfg, o) = list;
  return SRLM_OK;
}

/* The mapping of section `prefix` ("" = the top level); the current event is its start. */
static srlm_status parse_mapping(cfg_src *s, srlm_config *cfg, const char *prefix) {
  struct seen {
    char path[KEY_CAP];
    yaml_mark_t mark;
  } seen[64];
  int n_seen = 0;
  const yaml_event_t *e = &s->ev;
  for (;;) {
    set_path(s, prefix);
    SRLM_TRY(src_next(s));
    if (e->type == YAML_MAPPING_END_EVENT) return SRLM_OK;
    if (e->type != YAML_SCALAR_EVENT)
      return src_fail(s, e->start_mark, "keys must be scalars, got %s", node_kind(e->type));
    scalar key = event_scalar(e);
    char shown[200], full[KEY_CAP + 200];
    show(key.text, key.len, shown, sizeof shown);
    snprintf(full, sizeof full, "%s%s%s", prefix, prefix[0] ? "." : "", shown);
    set_path(s, full);
    if (memchr(key.text, '.', key.len))
      return src_fail(s, key.mark, "keys may not contain '.'; nest them as mappings");
    bool clean = !memchr(key.text, '\0', key.len) && strlen(full) < KEY_CAP;
    const srlm_config_option *o = clean ? srlm_config_option_find(full) : NULL;
    bool section = !o && clean && section_first(full);
    if (!o && !section) {
      char hint[KEY_CAP + 32];
      suggest(full, hint, sizeof hint);
      return src_fail(s, key.mark, "unknown key%s", hint);
    }
    for (int i = 0; i < n_seen; i++)
      if (!strcmp(seen[i].path, full))
        return src_fail(s, key.mark, "duplicate key (first at %zu:%zu)", seen[i].mark.line + 1,
                        seen[i].mark.column + 1);
    SRLM_CHECK(n_seen < 64, "a config section has more than 64 keys");
    snprintf(seen[n_seen].path, KEY_CAP, "%.*s", KEY_CAP - 1, full); /* a known key or section: shorter than KEY_CAP */
    seen[n_seen++].mark = key.mark;

    SRLM_TRY(src_next(s));
    if (o) {
      SRLM_TRY(parse_value(s, cfg, o));
    } else if (e->type == YAML_MAPPING_START_EVENT) {
      SRLM_TRY(parse_mapping(s, cfg, full));
    } else {
      bool empty = e->type == YAML_SCALAR_EVENT && e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                   e->data.scalar.length == 0;
      if (!empty)
        return src_fail(s, e->start_mark, "expected a mapping (a section with keys such as %s), got %s",
                        section_first(full)->key, node_kind(e->type));
    }
  }
}

srlm_status srlm_config_parse(srlm_config *cfg, const char *name, const char *text, size_t len) {
  cfg_src s;
  SRLM_TRY(src_open(&s, name ? name : "<config>", NULL, 0, text, len));
  const yaml_event_t *e = &s.ev;
  srlm_status st;
  if ((st = src_next(&s)) != SRLM_OK) goto done; /* stream start */
  if ((st = src_next(&s)) != SRLM_OK) goto done;
  if (e->type == YAML_STREAM_END_EVENT) goto done; /* empty file: all defaults */
  if ((st = src_next(&s)) != SRLM_OK) goto done; /* the document's root */
  if (e->type == YAML_MAPPING_START_EVENT) {
    if ((st = parse_mapping(&s, cfg, "")) != SRLM_OK) goto done;
  } else if (!(e->type == YAML_SCALAR_EVENT && e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
               e->data.scalar.length == 0)) {
    st = src_fail(&s, e->start_mark, "the top level must be a mapping of sections (run:, model:, ...), got %s",
                  node_kind(e->type));
    goto done;
  }
  set_path(&s, "");
  if ((st = src_next(&s)) != SRLM_OK) goto done; /* document end */
  if ((st = src_next(&s)) != SRLM_OK) goto done;
  if (e->type != YAML_STREAM_END_EVENT) st = src_fail(&s, e->start_mark, "only one YAML document is allowed");
done:
  src_close(&s);
  return st;
}

srlm_status srlm_config_parse_file(srlm_config *cfg, const char *path) {
  char *text;
  size_t len;
  srlm_status st = srlm_read_file(path, &text, &len);
  if (st == SRLM_ERR_IO) return srlm_error_context(SRLM_ERR_CONFIG, "config");
  SRLM_TRY(st);
  st = srlm_config_parse(cfg, path, text, len);
  free(text);
  return st;
}

srlm_status srlm_config_set(srlm_config *cfg, const char *arg) {
  char shown[256];
  show_n(arg, strlen(arg), shown, sizeof shown, 160);
  char where[300];
  snprintf(where, sizeof where, "override '%s'", shown);
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg) return srlm_error(SRLM_ERR_CONFIG, where, "expected key.path=value");
  size_t klen = (size_t)(eq - arg);
  char key[KEY_CAP];
  const srlm_config_option *o = NULL;
  if (klen < sizeof key) {
    memcpy(key, arg, klen);
    key[klen] = '\0';
    o = srlm_config_option_find(key);
  } else {
    show(arg, klen, key, sizeof key);
  }
  if (!o) {
    const srlm_config_option *first = klen < sizeof key ? section_first(key) : NULL;
    if (first)
      return srlm_error(SRLM_ERR_CONFIG, where, "%s: is a section, not an option; set one of its keys such as %s",
                        key, first->key);
    char hint[KEY_CAP + 32];
    suggest(key, hint, sizeof hint);
    return srlm_error(SRLM_ERR_CONFIG, where, "%s: unknown key%s", key, hint);
  }
  cfg_src s;
  const char *value = eq + 1;
  /* The column counts characters, as libyaml's marks do. */
  size_t col = 0;
  for (const char *c = arg; c <= eq; c++) col += ((unsigned char)*c & 0xc0) != 0x80;
  SRLM_TRY(src_open(&s, NULL, arg, col, value, strlen(value)));
  set_path(&s, o->key);
  const yaml_event_t *e = &s.ev;
  srlm_status st;
  if ((st = src_next(&s)) != SRLM_OK) goto done; /* stream start */
  if ((st = src_next(&s)) != SRLM_OK) goto done;
  if (e->type == YAML_STREAM_END_EVENT) { /* "key=" or only a comment: the empty value */
    scalar sc = {"", 0, true, e->start_mark};
    st = apply_scalar(&s, cfg, o, &sc);
    goto done;
  }
  if ((st = src_next(&s)) != SRLM_OK) goto done;
  if ((st = parse_value(&s, cfg, o)) != SRLM_OK) goto done;
  if ((st = src_next(&s)) != SRLM_OK) goto done; /* document end */
  if ((st = src_next(&s)) != SRLM_OK) goto done;
  if (e->type != YAML_STREAM_END_EVENT) st = src_fail(&s, e->start_mark, "expected one value, got several documents");
done:
  src_close(&s);
  return st;
}

/* ---- validation ------------------------------------------------------------------ */

static srlm_status check_range(const srlm_config *cfg, const srlm_config_option *o) {
  const void *f = cfield(cfg, o);
  char range[256];
  range_text(o, range, sizeof range, false);
  switch (o->type) {
    case SRLM_CONFIG_INT:
    case SRLM_CONFIG_INT64: {
      int64_t v = o->type == SRLM_CONFIG_INT ? *(const int *)f : *(const int64_t *)f;
      if (v < o->imin || v > o->imax)
        return srlm_error(SRLM_ERR_CONFIG, o->key, "value %lld out of range %s", (long long)v, range);
      return SRLM_OK;
    }
    case SRLM_CONFIG_FLOAT: {
      double v = *(const double *)f;
      char num[48];
      fmt_double(v, num);
      if (!in_float_range(o, v)) return srlm_error(SRLM_ERR_CONFIG, o->key, "value %s out of range %s", num, range);
      return SRLM_OK;
    }
    case SRLM_CONFIG_ENUM: {
      int v = *(const int *)f;
      if (v < 0 || v >= n_choices(o))
        return srlm_error(SRLM_ERR_CONFIG, o->key, "value %d is not one of %s", v, range);
      return SRLM_OK;
    }
    case SRLM_CONFIG_STRING:
      if (!*(char *const *)f) return srlm_error(SRLM_ERR_CONFIG, o->key, "string is NULL");
      return SRLM_OK;
    case SRLM_CONFIG_STRLIST: {
      const srlm_strlist *l = f;
      if (l->n < 0 || l->n > o->imax || (l->n && !l->items))
        return srlm_error(SRLM_ERR_CONFIG, o->key, "%d items, expected %s", l->n, range);
      for (int i = 0; i < l->n; i++)
        if (!l->items[i]) return srlm_error(SRLM_ERR_CONFIG, o->key, "item %d is NULL", i);
      return SRLM_OK;
    }
    case SRLM_CONFIG_BOOL: return SRLM_OK;
  }
  return SRLM_OK;
}

srlm_status srlm_config_validate(const srlm_config *cfg) {
  size_t n;
  const srlm_config_option *t = srlm_config_options(&n);
  for (size_t i = 0; i < n; i++) SRLM_TRY(check_range(cfg, &t[i]));

  if (!cfg->model.path[0]) { /* the architecture is ours to build */
    int nh = cfg->model.arch.num_heads;
    int nkv = cfg->model.arch.num_kv_heads ? cfg->model.arch.num_kv_heads : nh;
    if (nh % nkv)
      return srlm_error(SRLM_ERR_CONFIG, "model.arch.num_kv_heads",
                        "%d does not divide model.arch.num_heads (%d)", nkv, nh);
    int hs = cfg->model.arch.head_dim;
    if (!hs) {
      if (cfg->model.arch.hidden_size % nh)
        return srlm_error(SRLM_ERR_CONFIG, "model.arch.num_heads",
                          "%d does not divide model.arch.hidden_size (%d); set model.arch.head_dim", nh,
                          cfg->model.arch.hidden_size);
      hs = cfg->model.arch.hidden_size / nh;
    }
    if (hs % 2)
      return srlm_error(SRLM_ERR_CONFIG, "model.arch.head_dim", "head size %d must be even (RoPE rotates pairs)",
                        hs);
  }
  if (cfg->run.comm == SRLM_CFG_COMM_NCCL && cfg->run.backend != SRLM_CFG_BACKEND_CUDA)
    return srlm_error(SRLM_ERR_CONFIG, "run.comm",
                      "nccl moves GPU memory between GPUs, so it needs run.backend: cuda (not %s); set run.comm: "
                      "auto or mpi", srlm_cfg_backend_name(cfg->run.backend));
  if (!cfg->roles.colocate) {
    const char *names[3] = {"roles.generators", "roles.judges", "roles.learners"};
    int counts[3] = {cfg->roles.generators, cfg->roles.judges, cfg->roles.learners};
    for (int i = 0; i < 3; i++)
      if (counts[i] < 1)
        return srlm_error(SRLM_ERR_CONFIG, names[i], "must be at least 1 when roles.colocate is false");
  }
  if (!(cfg->judge.score_min < cfg->judge.score_max)) {
    char lo[48], hi[48];
    fmt_double(cfg->judge.score_min, lo);
    fmt_double(cfg->judge.score_max, hi);
    return srlm_error(SRLM_ERR_CONFIG, "judge.score_min", "%s must be below judge.score_max (%s)", lo, hi);
  }
  { /* judge.score_regex is compiled when a judge starts; checked here too, so `srlm config`,
       --dry-run and configs whose judge never parses with it (a built-in task) refuse a bad one */
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)cfg->judge.score_regex, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
    uint32_t groups = 0;
    if (re) pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
    pcre2_code_free(re);
    if (!re) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      return srlm_error(SRLM_ERR_CONFIG, "judge.score_regex", "\"%s\": %s at offset %zu", cfg->judge.score_regex,
                        (const char *)msg, (size_t)off);
    }
    if (groups < 1)
      return srlm_error(SRLM_ERR_CONFIG, "judge.score_regex", "\"%s\" has no capture group; group 1 must capture "
                        "the score", cfg->judge.score_regex);
  }
  if (cfg->meta.enabled && cfg->train.loss == SRLM_CFG_LOSS_GRPO)
    return srlm_error(SRLM_ERR_CONFIG, "meta.enabled", "Meta-Rewarding trains DPO-family pairs (actor and judge); "
                      "train.loss grpo has no pairs");
  if (cfg->meta.enabled && cfg->judge.source != SRLM_CFG_SOURCE_MODEL)
    return srlm_error(SRLM_ERR_CONFIG, "meta.enabled", "Meta-Rewarding compares the model's own judgments: "
                      "judge.source must be model");
  if (cfg->meta.enabled && cfg->task.name != SRLM_CFG_TASK_NONE && cfg->judge.mode == SRLM_CFG_JUDGE_EXPECTED)
    return srlm_error(SRLM_ERR_CONFIG, "judge.mode", "expected: Meta-Rewarding samples judge.samples judgments and "
                      "averages their score digits (judge.mode regex)");
  if (cfg->meta.enabled && cfg->task.name == SRLM_CFG_TASK_COUNTDOWN)
    return srlm_error(SRLM_ERR_CONFIG, "meta.enabled", "the built-in Countdown task has no meta-judge format of its "
                      "own; run Meta-Rewarding on Countdown as a prompt set with the text meta-judge "
                      "(configs/methods/countdown-meta-rewarding.yaml)");
  if (cfg->meta.enabled && cfg->judge.samples < 2)
    return srlm_error(SRLM_ERR_CONFIG, "judge.samples", "%d: the meta-judge compares judgments of one answer, at "
                      "least 2", cfg->judge.samples);
  { /* meta.winner_regex, like judge.score_regex: a capture group for the winner */
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)cfg->meta.winner_regex, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
    uint32_t groups = 0;
    if (re) pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
    pcre2_code_free(re);
    if (!re || groups < 1)
      return srlm_error(SRLM_ERR_CONFIG, "meta.winner_regex", "\"%s\": %s", cfg->meta.winner_regex,
                        re ? "no capture group; group 1 must capture A/B or 1/2" : "does not compile");
  }
  if (cfg->train.min_lr > cfg->train.lr) {
    char lo[48], hi[48];
    fmt_double(cfg->train.min_lr, lo);
    fmt_double(cfg->train.lr, hi);
    return srlm_error(SRLM_ERR_CONFIG, "train.min_lr", "%s is above train.lr (%s)", lo, hi);
  }
  if (cfg->judge.source == SRLM_CFG_SOURCE_NONE && cfg->pairs.source == SRLM_CFG_PAIRS_JUDGE)
    return srlm_error(SRLM_ERR_CONFIG, "judge.source", "none leaves pairs.source judge without scores (use "
                      "pairs.source votes or implicit)");
  if (cfg->judge.source == SRLM_CFG_SOURCE_NONE && cfg->eval.best_of > 0)
    return srlm_error(SRLM_ERR_CONFIG, "eval.best_of", "%d picks the best sample by judge.source, and none scores "
                      "nothing", cfg->eval.best_of);
  if (cfg->pairs.source != SRLM_CFG_PAIRS_JUDGE && cfg->train.loss == SRLM_CFG_LOSS_GRPO)
    return srlm_error(SRLM_ERR_CONFIG, "pairs.source", "%s makes DPO pairs; train.loss grpo takes the judge's "
                      "rewards", srlm_config_enum_name("pairs.source", (int)cfg->pairs.source));
  if (cfg->pairs.consistency == SRLM_CFG_CONSIST_CREAM && cfg->pairs.source != SRLM_CFG_PAIRS_IMPLICIT)
    return srlm_error(SRLM_ERR_CONFIG, "pairs.consistency", "cream ranks by the implicit reward: it needs "
                      "pairs.source implicit");
  if (cfg->pairs.consistency == SRLM_CFG_CONSIST_CREAM && cfg->train.loss != SRLM_CFG_LOSS_DPO)
    return srlm_error(SRLM_ERR_CONFIG, "pairs.consistency", "cream's soft labels are DPO's (train.loss dpo)");
  if (cfg->pairs.consistency == SRLM_CFG_CONSIST_SCIR &&
      (cfg->pairs.source != SRLM_CFG_PAIRS_JUDGE || cfg->judge.source == SRLM_CFG_SOURCE_NONE))
    return srlm_error(SRLM_ERR_CONFIG, "pairs.consistency", "scir compares the judge's pairs with the implicit "
                      "reward: it needs pairs.source judge and a judge.source other than none");
  if (cfg->train.loss != SRLM_CFG_LOSS_SFT && cfg->generate.samples_per_prompt < 2)
    return srlm_error(SRLM_ERR_CONFIG, "generate.samples_per_prompt",
                      "%d is too few for train.loss %s (it compares at least 2 answers per prompt)",
                      cfg->generate.samples_per_prompt,
                      srlm_config_enum_name("train.loss", (int)cfg->train.loss));
  if (cfg->generate.args_reward == SRLM_CFG_ARGS_JUDGE && cfg->task.name == SRLM_CFG_TASK_NONE)
    return srlm_error(SRLM_ERR_CONFIG, "generate.args_reward", "judge reads a built-in task's judge "
                      "(task.name: sign_puzzle or countdown); use implicit with a prompt set");
  if (cfg->generate.args_reference[0] && cfg->generate.args_reward != SRLM_CFG_ARGS_IMPLICIT)
    return srlm_error(SRLM_ERR_CONFIG, "generate.args_reference", "applies to generate.args_reward: implicit");
  if (cfg->train.reference == SRLM_CFG_REFERENCE_EMA &&
      (cfg->train.loss == SRLM_CFG_LOSS_SFT || (cfg->train.loss == SRLM_CFG_LOSS_GRPO && cfg->train.beta == 0)))
    return srlm_error(SRLM_ERR_CONFIG, "train.reference", "ema anchors a loss's reference, and train.loss %s%s has none "
                      "(use dpo, ipo, or grpo with train.beta > 0)", srlm_config_enum_name("train.loss", (int)cfg->train.loss),
                      cfg->train.loss == SRLM_CFG_LOSS_GRPO ? " with train.beta 0" : "");
  return SRLM_OK;
}

srlm_status srlm_config_load(srlm_config *cfg, const char *path, int n_overrides,
                             const char *const *overrides) {
  srlm_config_init(cfg);
  if (path) SRLM_TRY(srlm_config_parse_file(cfg, path));
  for (int i = 0; i < n_overrides; i++) SRLM_TRY(srlm_config_set(cfg, overrides[i]));
  return srlm_config_validate(cfg);
}

/* ---- printing ------------------------------------------------------------------------ */

/* Number of '.'-separated parts of key and the length of each prefix up to part i. */
static int key_parts(const char *key, size_t ends[8]) {
  int n = 0;
  for (const char *c = key;; c++)
    if (*c == '.' || *c == '\0') {
      if (n < 8) ends[n] = (size_t)(c - key);
      n++;
      if (!*c) break;
    }
  return n < 8 ? n : 8;
}

static void put_comment(sbuf *b, size_t line_start, const srlm_config_option *o) {
  char range[256];
  range_text(o, range, sizeof range, false);
  sb_pad(b, line_start, 40);
  sb_putn(b, " ", 1);
  if (o->type == SRLM_CONFIG_BOOL) range[0] = '\0';
  sb_printf(b, "# %s (%s%s%s)", o->help, srlm_config_type_name(o->type),
            range[0] ? o->type == SRLM_CONFIG_ENUM ? ": " : ", " : "", range);
}

char *srlm_config_to_yaml(const srlm_config *cfg, unsigned flags) {
  sbuf b = {0};
  bool comments = flags & SRLM_CONFIG_PRINT_COMMENTS;
  if (comments)
    sb_puts(&b, "# srlm configuration: every option with its default value.\n"
                "# Generated by `srlm config --comments`. Types and rules: `srlm config --help`.\n"
                "# Each key may also be set on the command line as key.path=value.\n");
  size_t n;
  const srlm_config_option *t = srlm_config_options(&n);
  const char *prev = "";
  size_t prev_ends[8];
  int prev_parts = 0;
  for (size_t i = 0; i < n; i++) {
    const srlm_config_option *o = &t[i];
    size_t ends[8];
    int parts = key_parts(o->key, ends);
    /* sections shared with the previous key are already open */
    int common = 0;
    while (common < parts - 1 && common < prev_parts - 1 && ends[common] == prev_ends[common] &&
           !strncmp(o->key, prev, ends[common]))
      common++;
    for (int d = common; d < parts - 1; d++) {
      if (d == 0 && (i > 0 || comments)) sb_putn(&b, "\n", 1);
      size_t start = d ? ends[d - 1] + 1 : 0;
      sb_printf(&b, "%*s%.*s:\n", 2 * d, "", (int)(ends[d] - start), o->key + start);
    }
    size_t line_start = b.n;
    size_t leaf = parts > 1 ? ends[parts - 2] + 1 : 0;
    sb_printf(&b, "%*s%s: ", 2 * (parts - 1), "", o->key + leaf);
    put_value(&b, cfg, o);
    if (comments) put_comment(&b, line_start, o);
    sb_putn(&b, "\n", 1);
    prev = o->key;
    memcpy(prev_ends, ends, sizeof ends);
    prev_parts = parts;
  }
  return sb_take(&b);
}

srlm_status srlm_config_save(const srlm_config *cfg, const char *path) {
  char *text = srlm_config_to_yaml(cfg, 0);
  srlm_status st = srlm_write_file_atomic(path, text, strlen(text));
  free(text);
  return st;
}

char *srlm_config_help(void) {
  size_t n;
  const srlm_config_option *t = srlm_config_options(&n);
  srlm_config defaults;
  srlm_config_init(&defaults);
  enum { COLS = 4, DEF_CAP = 32 };
  size_t width[COLS] = {3, 4, 7, 14}; /* "key", "type", "default", "range/choices" */
  char **cells = srlm_xcalloc(n * COLS, sizeof *cells);
  for (size_t i = 0; i < n; i++) {
    char range[256];
    range_text(&t[i], range, sizeof range, true);
    cells[i * COLS + 0] = srlm_xstrdup(t[i].key);
    cells[i * COLS + 1] = srlm_xstrdup(srlm_config_type_name(t[i].type));
    cells[i * COLS + 2] = srlm_config_value_text(&defaults, &t[i]);
    cells[i * COLS + 3] = srlm_xstrdup(range[0] ? range : "-");
    for (int c = 0; c < COLS; c++) {
      size_t w = strlen(cells[i * COLS + c]);
      if (c == 2 && w > DEF_CAP) continue; /* a long default overflows its row only */
      if (w > width[c]) width[c] = w;
    }
  }
  sbuf b = {0};
  const char *head[COLS] = {"key", "type", "default", "range/choices"};
  size_t line = b.n, col = 0;
  for (int c = 0; c < COLS; c++) {
    sb_puts(&b, head[c]);
    col += width[c] + 2;
    sb_pad(&b, line, col);
  }
  sb_puts(&b, "help\n");
  for (size_t i = 0; i < n; i++) {
    line = b.n;
    size_t col = 0;
    for (int c = 0; c < COLS; c++) {
      sb_puts(&b, cells[i * COLS + c]);
      col += width[c] + 2;
      if (b.n - line + 2 > col) col = b.n - line + 2;
      sb_pad(&b, line, col);
    }
    sb_puts(&b, t[i].help);
    sb_putn(&b, "\n", 1);
  }
  for (size_t i = 0; i < n * COLS; i++) free(cells[i]);
  free(cells);
  srlm_config_free(&defaults);
  return sb_take(&b);
}
