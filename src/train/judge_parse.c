/* Judge text handling: template rendering and score parsing with PCRE2. The rules
 * (placeholders, last match, number syntax, clamping, invalid UTF-8) are documented
 * in include/srlm/judge.h. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "srlm/judge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- templates ---------------------------------------------------------------- */

typedef srlm_strbuf str_buf;

static void buf_add(str_buf *b, const char *s, size_t n) { srlm_strbuf_append(b, s, n); }

static int is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

srlm_status srlm_judge_render(const char *template_name, const char *tmpl, const char *prompt,
                              const char *response, char **out) {
  static const char *const names[] = {"prompt", "response"};
  const char *values[] = {prompt, response};
  return srlm_judge_render_vars(template_name, tmpl, 2, names, values, out);
}

srlm_status srlm_judge_render_vars(const char *template_name, const char *tmpl, int n, const char *const *names,
                                   const char *const *values, char **out) {
  *out = NULL;
  str_buf b = {0};
  buf_add(&b, "", 0);
  unsigned seen = 0;
  SRLM_CHECK(n >= 1 && n <= 8, "%d placeholders", n);
  const char *s = tmpl, *lit = tmpl;
  while (*s) {
    if (*s != '{') {
      s++;
      continue;
    }
    size_t k = 1;
    while (is_name_char(s[k])) k++;
    if (k == 1 || s[k] != '}') { /* not a placeholder: a literal brace */
      s++;
      continue;
    }
    buf_add(&b, lit, (size_t)(s - lit));
    const char *name = s + 1;
    size_t nlen = k - 1;
    int v = 0;
    while (v < n && !(strlen(names[v]) == nlen && memcmp(name, names[v], nlen) == 0)) v++;
    if (v == n) {
      char known[256] = "";
      for (int i = 0; i < n; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s{%s}", i ? ", " : "", names[i]);
      free(b.p);
      return srlm_error(SRLM_ERR_CONFIG, template_name, "unknown placeholder {%.*s} (known: %s)", (int)nlen, name,
                        known);
    }
    buf_add(&b, values[v], strlen(values[v]));
    seen |= 1u << v;
    s += k + 1;
    lit = s;
  }
  buf_add(&b, lit, (size_t)(s - lit));
  for (int v = 0; v < n; v++)
    if (!(seen & (1u << v))) {
      free(b.p);
      return srlm_error(SRLM_ERR_CONFIG, template_name, "no {%s} placeholder in the judge template", names[v]);
    }
  *out = b.p;
  return SRLM_OK;
}

srlm_status srlm_judge_template_load(const char *path, char **tmpl) {
  *tmpl = NULL;
  char *data;
  size_t size;
  SRLM_TRY(srlm_read_file(path, &data, &size));
  if (strlen(data) != size) {
    free(data);
    return srlm_error(SRLM_ERR_FORMAT, path, "NUL byte in the judge template");
  }
  char *probe;
  srlm_status st = srlm_judge_render(path, data, "", "", &probe);
  if (st != SRLM_OK) {
    free(data);
    return st;
  }
  free(probe);
  *tmpl = data;
  return SRLM_OK;
}

/* ---- scores -------------------------------------------------------------------- */

struct srlm_judge_parser {
  pcre2_code *re;
  pcre2_match_context *mctx; /* SRLM_JUDGE_MATCH_LIMIT, SRLM_JUDGE_DEPTH_LIMIT */
  double lo, hi;
};

srlm_status srlm_judge_parser_create(const char *regex, double score_min, double score_max,
                                     srlm_judge_parser **out) {
  const char *w = "judge.score_regex";
  *out = NULL;
  if (!isfinite(score_min) || !isfinite(score_max) || score_min > score_max)
    return srlm_error(SRLM_ERR_CONFIG, "judge.score_min", "score range [%g, %g] is empty or not finite",
                      score_min, score_max);
  int err;
  PCRE2_SIZE erroff;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)regex, PCRE2_ZERO_TERMINATED, PCRE2_UTF,
                                 &err, &erroff, NULL);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return srlm_error(SRLM_ERR_CONFIG, w, "\"%s\": %s at offset %zu", regex, (const char *)msg, (size_t)erroff);
  }
  uint32_t groups = 0;
  pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
  if (groups < 1) {
    pcre2_code_free(re);
    return srlm_error(SRLM_ERR_CONFIG, w, "\"%s\" has no capture group; group 1 must capture the score", regex);
  }
  srlm_judge_parser *p = srlm_xcalloc(1, sizeof *p);
  p->re = re;
  p->mctx = pcre2_match_context_create(NULL);
  SRLM_CHECK(p->mctx != NULL, "out of memory for a PCRE2 match context");
  pcre2_set_match_limit(p->mctx, SRLM_JUDGE_MATCH_LIMIT);
  pcre2_set_depth_limit(p->mctx, SRLM_JUDGE_DEPTH_LIMIT);
  p->lo = score_min;
  p->hi = score_max;
  *out = p;
  return SRLM_OK;
}

void srlm_judge_parser_free(srlm_judge_parser *p) {
  if (!p) return;
  pcre2_code_free(p->re);
  pcre2_match_context_free(p->mctx);
  free(p);
}

/* [+-]digits[.digits][(e|E)[+-]digits] and nothing else */
static int is_plain_number(const char *s, size_t n) {
  size_t i = 0, d;
  if (i < n && (s[i] == '+' || s[i] == '-')) i++;
  for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++) {}
  if (i == d) return 0;
  if (i < n && s[i] == '.') {
    i++;
    for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++) {}
    if (i == d) return 0;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++) {}
    if (i == d) return 0;
  }
  return i == n;
}

/* Length of the well-formed UTF-8 character at s (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), 0 when s starts an ill-formed sequence. */
static size_t utf8_char_len(const unsigned char *s, size_t n) {
  const unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c < 0xC2) return 0;
  else if (c < 0xE0) len = 2;
  else if (c < 0xF0) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c < 0xF5) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else return 0;
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  return len;
}

int srlm_judge_utf8_valid(const char *s, size_t n) {
  for (size_t i = 0, k; i < n; i += k)
    if ((k = utf8_char_len((const unsigned char *)s + i, n - i)) == 0) return 0;
  return 1;
}

/* The last match in one well-formed fragment [a, b) of the subject, matched as its own
 * subject (PCRE2 would re-validate the whole subject on every call otherwise, which is
 * quadratic in the number of matches). Updates *have (see srlm_judge_parse) and the
 * capture's offsets in text; returns 0 when PCRE2 fails (match limits). */
static int last_match_in(const pcre2_code *re, pcre2_match_context *mctx, pcre2_match_data *md, const char *text,
                         size_t len, size_t a, size_t b, int *have, size_t *cap0, size_t *cap1, int *limit_hit) {
  const PCRE2_SPTR subj = (PCRE2_SPTR)(text + a);
  const PCRE2_SIZE n = b - a;
  /* a fragment edge inside the text is not a line start or end (as PCRE2_MATCH_INVALID_UTF) */
  const uint32_t opts = PCRE2_NO_UTF_CHECK | (a > 0 ? PCRE2_NOTBOL : 0) | (b < len ? PCRE2_NOTEOL : 0);
  PCRE2_SIZE off = 0;
  while (off <= n) {
    int rc = pcre2_match(re, subj, n, off, opts, md, mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 1;
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT) *limit_hit = 1;
    if (rc < 0) return 0;
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    if (rc >= 2 && ov[2] != PCRE2_UNSET) {
      *have = 1;
      *cap0 = a + ov[2];
      *cap1 = a + ov[3];
    } else {
      *have = -1;
    }
    if (ov[1] < ov[0]) return 1; /* only \K tricks get here; stop rather than loop */
    if (ov[1] > ov[0]) {
      off = ov[1];
    } else { /* empty match: step over one whole character */
      off = ov[0] + 1;
      while (off < n && (subj[off] & 0xC0) == 0x80) off++;
    }
  }
  return 1;
}

int srlm_judge_parse(const srlm_judge_parser *p, const char *text, size_t len, double *score, int *clamped) {
  int limit_hit;
  return srlm_judge_parse_ex(p, text, len, score, clamped, &limit_hit);
}

/* The last match's capture 1 [*cap0, *cap1) in text (the rules of srlm_judge_parse):
 * 1 when there is one, else 0. */
static int last_capture(const srlm_judge_parser *p, const char *text, size_t len, size_t *cap0_out, size_t *cap1_out,
                        int *limit_hit) {
  *limit_hit = 0;
  if (!text) {
    text = "";
    len = 0;
  }
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(p->re, NULL);
  SRLM_CHECK(md != NULL, "out of memory for PCRE2 match data");
  const unsigned char *u = (const unsigned char *)text;
  size_t cap0 = 0, cap1 = 0, a = 0;
  int have = 0; /* the last match so far: 0 none, 1 group 1 set, -1 group 1 unset */
  /* split at ill-formed bytes: they never match and no match crosses them */
  for (size_t i = 0;;) {
    size_t k = i < len ? utf8_char_len(u + i, len - i) : 0;
    if (k > 0) {
      i += k;
      continue;
    }
    if (i > a || len == 0) {
      if (!last_match_in(p->re, p->mctx, md, text, len, a, i, &have, &cap0, &cap1, limit_hit)) {
        have = 0; /* match limits and the like: a hostile judgment, not a broken program */
        break;
      }
    }
    if (i >= len) break;
    a = i = i + 1;
  }
  pcre2_match_data_free(md);
  if (have != 1) return 0;
  *cap0_out = cap0;
  *cap1_out = cap1;
  return 1;
}

int srlm_judge_parse_ex(const srlm_judge_parser *p, const char *text, size_t len, double *score, int *clamped,
                        int *limit_hit) {
  if (clamped) *clamped = 0;
  size_t cap0, cap1;
  if (!last_capture(p, text, len, &cap0, &cap1, limit_hit)) return 0;
  size_t n = cap1 - cap0;
  if (n == 0 || n > SRLM_JUDGE_MAX_NUMBER || !is_plain_number(text + cap0, n)) return 0;
  char buf[SRLM_JUDGE_MAX_NUMBER + 1];
  memcpy(buf, text + cap0, n);
  buf[n] = '\0';
  double v = strtod(buf, NULL);
  if (!isfinite(v)) return 0;
  if (v < p->lo || v > p->hi) {
    v = v < p->lo ? p->lo : p->hi;
    if (clamped) *clamped = 1;
  }
  *score = v;
  return 1;
}

void srlm_judge_score(const srlm_judge_parser *p, int j, const char *const *texts, const size_t *lens,
                      double *mean, int *n_parsed, srlm_judge_stats *stats) {
  srlm_judge_stats none;
  if (!stats) stats = &none;
  double sum = 0;
  int n = 0;
  for (int i = 0; i < j; i++) {
    double v;
    int cl;
    size_t len = lens ? lens[i] : (texts[i] ? strlen(texts[i]) : 0);
    stats->judgments++;
    int limit = 0;
    if (srlm_judge_parse_ex(p, texts[i], len, &v, &cl, &limit)) {
      sum += v;
      n++;
      stats->parsed++;
      stats->clamped += cl;
    } else if (limit) {
      stats->limit_hits++;
    } else {
      stats->unparsable++;
    }
  }
  stats->candidates++;
  if (n == 0) stats->unscored++;
  *mean = n > 0 ? sum / n : NAN;
  if (n_parsed) *n_parsed = n;
}

int srlm_judge_parse_winner(const srlm_judge_parser *p, const char *text, size_t len) {
  size_t a, b;
  int limit_hit;
  if (!last_capture(p, text, len, &a, &b, &limit_hit) || b != a + 1) return 0;
  return text[a] == 'A' || text[a] == '1' ? 1 : text[a] == 'B' || text[a] == '2' ? 2 : 0;
}
