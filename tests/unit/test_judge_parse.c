/* Judge text handling: score parsing with the default and custom patterns on hostile
 * judge outputs (last match, clamping, signs, fractions, huge and overlong numbers,
 * invalid UTF-8, NUL bytes, 1 MB of garbage), per-candidate means, regex errors, and
 * template rendering including the shipped configs/judge/additive5.txt. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <pcre2.h>
#include <stdint.h>

#include "srlm/config.h"
#include "srlm/core.h"
#include "srlm/judge.h"
#include "test.h"

/* the default of judge.score_regex, as written in the docs (checked against the option
 * table in test_config_default) */
static const char *const k_default_regex = "Score: *([0-9]+(\\.[0-9]+)?)";

static void test_config_default(void) {
  srlm_config cfg;
  srlm_config_init(&cfg);
  EXPECT_STR_EQ(cfg.judge.score_regex, k_default_regex);
  EXPECT(cfg.judge.score_min == 0 && cfg.judge.score_max == 5, "default range [%g, %g]", cfg.judge.score_min,
         cfg.judge.score_max);
  EXPECT_STR_EQ(cfg.judge.template_path, "configs/judge/additive5.txt");
  srlm_config_free(&cfg);
}

typedef struct parse_case {
  const char *text;
  size_t len; /* 0: strlen */
  int ok;
  double score;
  int clamped;
} parse_case;

#define L(s) s, sizeof(s) - 1 /* a literal with embedded NULs and its length */

static void run_cases(const char *regex, double lo, double hi, const parse_case *cases, size_t n) {
  srlm_judge_parser *p;
  srlm_status st = srlm_judge_parser_create(regex, lo, hi, &p);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  for (size_t c = 0; c < n; c++) {
    size_t len = cases[c].len ? cases[c].len : strlen(cases[c].text);
    double v = -999;
    int cl = -1;
    int ok = srlm_judge_parse(p, cases[c].text, len, &v, &cl);
    EXPECT(ok == cases[c].ok, "regex %s, case %zu \"%.*s\": parsable %d, expected %d (score %g)", regex, c,
           (int)(len < 60 ? len : 60), cases[c].text, ok, cases[c].ok, v);
    if (ok && cases[c].ok)
      EXPECT(v == cases[c].score && cl == cases[c].clamped, "regex %s, case %zu \"%s\": score %.17g clamped %d, expected %.17g %d",
             regex, c, cases[c].text, v, cl, cases[c].score, cases[c].clamped);
  }
  srlm_judge_parser_free(p);
}

static void test_default_regex(void) {
  static const parse_case cases[] = {
      {"The reply is relevant and complete.\nScore: 4", 0, 1, 4, 0},
      {"Score: 2\nOn reflection the answer is better.\nScore: 3", 0, 1, 3, 0}, /* last match wins */
      {"Score: 10", 0, 1, 5, 1},
      {"Score: -3", 0, 0, 0, 0}, /* the default pattern has no sign: not a rubric score */
      {"Score: 4.5", 0, 1, 4.5, 0},
      {"Score: 5/5", 0, 1, 5, 0},
      {"Score:", 0, 0, 0, 0},
      {"Score: ", 0, 0, 0, 0},
      {"Score: 99999999999999999999", 0, 1, 5, 1},
      {"Score: 1234567890123456789012345678901234567890", 0, 0, 0, 0}, /* 40 digits: overlong */
      {"", 0, 0, 0, 0},
      {"score: 4", 0, 0, 0, 0}, /* case matters */
      {"Score:4", 0, 1, 4, 0},
      {"Score:    0", 0, 1, 0, 0},
      {"Score: 3.7.2", 0, 1, 3.7, 0},
      {"Score: 3.\n", 0, 1, 3, 0},
      {"Score: 4 and later Score: none", 0, 1, 4, 0}, /* the last MATCH, not the last "Score:" */
      {"\xc3\x89valuation \xe2\x9c\x93 Score: 5", 0, 1, 5, 0},
      {"\xff\xfe garbage Score: 4 \xc3(", 0, 1, 4, 0}, /* invalid UTF-8 elsewhere: still parsed */
      {"\xc0\xafScore: 1\x80", 0, 1, 1, 0},
      {"Score: \xff" "4", 0, 0, 0, 0}, /* invalid byte inside the match: a barrier */
      {"Sco\xffre: 4", 0, 0, 0, 0},
      {L("abc\0Score: 2"), 1, 2, 0}, /* NUL bytes are ordinary bytes */
      {L("Score: 2\0Score: 4"), 1, 4, 0},
      {L("Score: 2\0"), 1, 2, 0},
      {L("Score: \0" "3"), 0, 0, 0},
  };
  run_cases(k_default_regex, 0, 5, cases, sizeof cases / sizeof cases[0]);
}

static void test_custom_regex(void) {
  /* a pattern that captures anything: the number syntax check does the work */
  static const parse_case any[] = {
      {"Rating: [[4]]", 0, 1, 4, 0},     {"Rating: [[-2]]", 0, 1, -2, 0},   {"Rating: [[-7.5]]", 0, 1, -5, 1},
      {"Rating: [[4e-1]]", 0, 1, 0.4, 0}, {"Rating: [[+3]]", 0, 1, 3, 0},   {"Rating: [[nan]]", 0, 0, 0, 0},
      {"Rating: [[inf]]", 0, 0, 0, 0},   {"Rating: [[1e400]]", 0, 0, 0, 0}, {"Rating: [[ 4]]", 0, 0, 0, 0},
      {"Rating: [[0x10]]", 0, 0, 0, 0},  {"Rating: [[]]", 0, 0, 0, 0},      {"Rating: [[4.]]", 0, 0, 0, 0},
      {"Rating: [[.5]]", 0, 0, 0, 0},    {"Rating: [[1e]]", 0, 0, 0, 0},
      {"Rating: [[2]] Rating: [[oops]]", 0, 0, 0, 0}, /* the last match is not a number */
  };
  run_cases("Rating: \\[\\[(.*?)\\]\\]", -5, 5, any, sizeof any / sizeof any[0]);
  /* group 1 unset in the last match */
  static const parse_case opt[] = {{"S: 3x S: x", 0, 0, 0, 0}, {"S: x S: 3x", 0, 1, 3, 0}};
  run_cases("S: ([0-9])?x", 0, 5, opt, sizeof opt / sizeof opt[0]);
  /* empty matches step over whole characters (no hang, no error inside multibyte text) */
  static const parse_case empty[] = {{"\xc3\xa9\xc3\xa9\xe2\x9c\x93 ab", 0, 0, 0, 0}, {"\xc3\xa9" "7\xc3\xa9", 0, 0, 0, 0}};
  run_cases("([0-9]*)", 0, 9, empty, sizeof empty / sizeof empty[0]);
  /* the edge of a fragment after or before an ill-formed byte is not a line start or end */
  static const parse_case bol[] = {{"\xffScore: 3", 0, 0, 0, 0}, {"Score: 2\n\xffScore: 3", 0, 1, 2, 0}};
  run_cases("^Score: ([0-9])", 0, 5, bol, sizeof bol / sizeof bol[0]);
  static const parse_case eol[] = {{"4\xff", 0, 0, 0, 0}, {"3 4", 0, 1, 4, 0}};
  run_cases("([0-9])$", 0, 5, eol, sizeof eol / sizeof eol[0]);
  static const parse_case tail[] = {{"\xc3\xa9 7\xc3\xa9 8", 0, 1, 8, 0}};
  run_cases("([0-9]+)$", 0, 9, tail, 1);
}

/* srlm's UTF-8 check must agree with PCRE2's own validator: the parser matches
 * fragments with PCRE2_NO_UTF_CHECK, which is undefined behaviour on ill-formed input. */
static void test_utf8_agrees_with_pcre2(void) {
  static const unsigned char bytes[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1,
                                        0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF};
  int err;
  PCRE2_SIZE erroff;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR) "", 0, PCRE2_UTF, &err, &erroff, NULL);
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
  uint32_t s = 7;
  int disagree = 0, valid = 0;
  const int trials = 200000;
  for (int t = 0; t < trials; t++) {
    unsigned char str[6];
    s = s * 1664525u + 1013904223u;
    size_t n = 1 + (s >> 28) % 6;
    for (size_t i = 0; i < n; i++) {
      s = s * 1664525u + 1013904223u;
      str[i] = bytes[(s >> 16) % sizeof bytes];
    }
    int rc = pcre2_match(re, str, n, 0, 0, md, NULL);
    int pcre_ok = rc >= 0, ours = srlm_judge_utf8_valid((const char *)str, n);
    valid += ours;
    if (pcre_ok != ours && disagree++ < 5)
      fprintf(stderr, "FAIL utf8 of %zu bytes %02x %02x %02x %02x: srlm %d, PCRE2 %d (rc %d)\n", n, str[0],
              n > 1 ? str[1] : 0, n > 2 ? str[2] : 0, n > 3 ? str[3] : 0, ours, pcre_ok, rc);
  }
  EXPECT(disagree == 0, "%d of %d byte strings judged differently from PCRE2", disagree, trials);
  EXPECT(valid > trials / 100 && valid < trials - trials / 100, "only %d of %d valid: the test is not exercising both", valid, trials);
  fprintf(stderr, "utf-8 check: %d strings, %d valid, %d disagreements with PCRE2\n", trials, valid, disagree);
  pcre2_match_data_free(md);
  pcre2_code_free(re);
}

static void test_big_inputs(void) {
  srlm_judge_parser *p;
  EXPECT(srlm_judge_parser_create(k_default_regex, 0, 5, &p) == SRLM_OK, "%s", srlm_error_message());
  const size_t n = 1 << 20;
  char *buf = srlm_xmalloc(n + 16);
  uint32_t s = 12345;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    buf[i] = (char)(s >> 24);
  }
  double v = -1;
  srlm_timer t;
  srlm_timer_start(&t);
  int ok = srlm_judge_parse(p, buf, n, &v, NULL);
  EXPECT(ok == 0, "1 MB of random bytes parsed as %g", v);
  memcpy(buf + n - 8, "Score: 2", 8);
  ok = srlm_judge_parse(p, buf, n, &v, NULL);
  EXPECT(ok == 1 && v == 2, "1 MB of garbage then Score: 2: ok %d score %g", ok, v);
  memset(buf, 'x', n);
  for (size_t i = 0; i + 7 <= n; i += 7) memcpy(buf + i, "Score: ", 7); /* 150k near-misses */
  ok = srlm_judge_parse(p, buf, n, &v, NULL);
  EXPECT(ok == 0, "1 MB of 'Score: ' parsed as %g", v);
  memset(buf, 'x', n);
  for (size_t i = 0; i + 9 <= n; i += 9) memcpy(buf + i, "Score: 1\n", 9); /* 116k matches */
  buf[n - 1] = '\0';
  ok = srlm_judge_parse(p, buf, n, &v, NULL);
  EXPECT(ok == 1 && v == 1, "1 MB of 'Score: 1' lines: ok %d score %g", ok, v);
  double secs = srlm_timer_elapsed(&t);
  fprintf(stderr, "4 parses of 1 MB: %.3f s\n", secs);
  EXPECT(secs < 5, "1 MB inputs took %.2f s", secs);
  free(buf);
  srlm_judge_parser_free(p);
}

/* A pattern that backtracks exponentially ((?:a|aa)+ before a digit that never comes): PCRE2's
 * match limit ends each judgment in bounded time, and the miss is reported as a limit hit
 * (srlm_judge_parse_ex, srlm_judge_score's limit_hits), not as an unparsable judgment. */
static void test_match_limits(void) {
  srlm_judge_parser *p;
  EXPECT(srlm_judge_parser_create("(?:a|aa)+([0-9])", 0, 9, &p) == SRLM_OK, "%s", srlm_error_message());
  char text[4096];
  memset(text, 'a', sizeof text - 1);
  text[sizeof text - 1] = '\0';
  double v = -1;
  int limit = 0;
  srlm_timer t;
  srlm_timer_start(&t);
  int ok = srlm_judge_parse_ex(p, text, strlen(text), &v, NULL, &limit);
  double secs = srlm_timer_elapsed(&t);
  EXPECT(ok == 0 && limit == 1, "4095 a characters against (?:a|aa)+[0-9]: ok %d, limit hit %d (want 0, 1)", ok, limit);
  EXPECT(secs < 5, "the limited match took %.2f s", secs);
  ok = srlm_judge_parse_ex(p, "aa7", 3, &v, NULL, &limit);
  EXPECT(ok == 1 && v == 7 && limit == 0, "aa7: ok %d score %g limit %d", ok, v, limit);
  const char *texts[3] = {text, "aa3", "no score"};
  srlm_judge_stats st = {0};
  double mean;
  int n;
  srlm_judge_score(p, 3, texts, NULL, &mean, &n, &st);
  EXPECT(st.limit_hits == 1 && st.unparsable == 1 && st.parsed == 1 && mean == 3,
         "stats: limit hits %lld unparsable %lld parsed %lld mean %g (want 1, 1, 1, 3)", (long long)st.limit_hits,
         (long long)st.unparsable, (long long)st.parsed, mean);
  fprintf(stderr, "a limited exponential match: %.3f s\n", secs);
  srlm_judge_parser_free(p);
}

static void test_errors_and_means(void) {
  srlm_judge_parser *p = (srlm_judge_parser *)&p;
  EXPECT(srlm_judge_parser_create("Score: ([0-9]+", 0, 5, &p) == SRLM_ERR_CONFIG, "unbalanced pattern accepted");
  EXPECT(p == NULL, "parser set on error");
  EXPECT_CONTAINS(srlm_error_message(), "judge.score_regex");
  EXPECT_CONTAINS(srlm_error_message(), "offset 14");
  EXPECT_CONTAINS(srlm_error_message(), "missing closing parenthesis");
  EXPECT(srlm_judge_parser_create("Score: [0-9]+", 0, 5, &p) == SRLM_ERR_CONFIG, "pattern without a group accepted");
  EXPECT_CONTAINS(srlm_error_message(), "capture group");
  EXPECT(srlm_judge_parser_create("Score: (\xff)", 0, 5, &p) == SRLM_ERR_CONFIG, "invalid UTF-8 pattern accepted");
  EXPECT_CONTAINS(srlm_error_message(), "judge.score_regex");
  EXPECT(srlm_judge_parser_create(k_default_regex, 5, 0, &p) == SRLM_ERR_CONFIG, "empty range accepted");
  EXPECT(srlm_judge_parser_create(k_default_regex, 0, NAN, &p) == SRLM_ERR_CONFIG, "NaN bound accepted");

  EXPECT(srlm_judge_parser_create(k_default_regex, 0, 5, &p) == SRLM_OK, "%s", srlm_error_message());
  srlm_judge_stats st = {0};
  const char *three[3] = {"fine. Score: 4", "I cannot decide.", "Score: 7"};
  double mean;
  int n;
  srlm_judge_score(p, 3, three, NULL, &mean, &n, &st);
  EXPECT(mean == 4.5 && n == 2, "mean %g over %d", mean, n);
  const char *none[2] = {"Score: x", ""};
  srlm_judge_score(p, 2, none, NULL, &mean, &n, &st);
  EXPECT(isnan(mean) && n == 0, "unscored candidate: mean %g over %d", mean, n);
  const char *nul[1] = {"Score: 1\0Score: 3"};
  size_t len = 17;
  srlm_judge_score(p, 1, nul, &len, &mean, NULL, &st);
  EXPECT(mean == 3, "explicit length: mean %g", mean);
  EXPECT(st.judgments == 6 && st.parsed == 3 && st.unparsable == 3 && st.clamped == 1 && st.candidates == 3 &&
             st.unscored == 1,
         "stats: judgments %lld parsed %lld unparsable %lld clamped %lld candidates %lld unscored %lld",
         (long long)st.judgments, (long long)st.parsed, (long long)st.unparsable, (long long)st.clamped,
         (long long)st.candidates, (long long)st.unscored);
  srlm_judge_parser_free(p);
  srlm_judge_parser_free(NULL);
}

static void test_render(void) {
  char *out;
  EXPECT(srlm_judge_render("t.txt", "A {prompt} B {response} C {prompt}", "p", "r", &out) == SRLM_OK, "%s",
         srlm_error_message());
  EXPECT_STR_EQ(out, "A p B r C p");
  free(out);
  /* values are not expanded again; non-placeholder braces are literal */
  EXPECT(srlm_judge_render("t.txt", "{ } {\"a\": 1} {} {{prompt}} {response}{", "{response}", "x{prompt}y", &out) ==
             SRLM_OK,
         "%s", srlm_error_message());
  EXPECT_STR_EQ(out, "{ } {\"a\": 1} {} {{response}} x{prompt}y{");
  free(out);
  out = (char *)"sentinel";
  EXPECT(srlm_judge_render("judge/t.txt", "{prompt} {respnse}", "p", "r", &out) == SRLM_ERR_CONFIG,
         "misspelt placeholder accepted");
  EXPECT(out == NULL, "output set on error");
  EXPECT_CONTAINS(srlm_error_message(), "judge/t.txt");
  EXPECT_CONTAINS(srlm_error_message(), "{respnse}");
  EXPECT(srlm_judge_render("judge/t.txt", "only {prompt}", "p", "r", &out) == SRLM_ERR_CONFIG, "missing accepted");
  EXPECT_CONTAINS(srlm_error_message(), "judge/t.txt");
  EXPECT_CONTAINS(srlm_error_message(), "{response}");
  EXPECT(srlm_judge_render("judge/t.txt", "{response}", "p", "r", &out) == SRLM_ERR_CONFIG, "missing accepted");
  EXPECT_CONTAINS(srlm_error_message(), "{prompt}");

  char *tmpl;
  EXPECT(srlm_judge_template_load("/nonexistent/judge.txt", &tmpl) == SRLM_ERR_IO, "missing file accepted");
  EXPECT_CONTAINS(srlm_error_message(), "/nonexistent/judge.txt");
  char bad[512];
  test_tmp_path(bad, sizeof bad, "bad_template.txt");
  const char *text = "Judge {prompt} and {answer}.";
  EXPECT(srlm_write_file_atomic(bad, text, strlen(text)) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_judge_template_load(bad, &tmpl) == SRLM_ERR_CONFIG, "template with {answer} accepted");
  EXPECT_CONTAINS(srlm_error_message(), "bad_template.txt");
  EXPECT_CONTAINS(srlm_error_message(), "{answer}");
}

static void test_shipped_template(void) {
  char path[1024];
  const char *src = getenv("SRLM_SOURCE_DIR");
  snprintf(path, sizeof path, "%s/configs/judge/additive5.txt", src ? src : "..");
  char *tmpl = NULL, *out = NULL;
  srlm_status st = srlm_judge_template_load(path, &tmpl);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  EXPECT(srlm_judge_render(path, tmpl, "What is 2+2?", "It is 4.", &out) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_CONTAINS(out, "What is 2+2?");
  EXPECT_CONTAINS(out, "It is 4.");
  EXPECT(strchr(out, '{') == NULL && strchr(out, '}') == NULL, "braces left in the rendered template");
  /* five additive criteria, and the last line asks for the score line */
  int points = 0;
  for (const char *q = out; (q = strstr(q, "Add 1 point")) != NULL; q++) points++;
  EXPECT_EQ_INT(points, 5);
  size_t n = strlen(out);
  while (n > 0 && out[n - 1] == '\n') n--;
  const char *last = out + n;
  while (last > out && last[-1] != '\n') last--;
  EXPECT(strstr(last, "Score: <points>") != NULL, "last line \"%.*s\" does not ask for Score: <points>",
         (int)(out + n - last), last);
  /* a judge that merely echoes the template gets no score from it */
  srlm_judge_parser *p;
  EXPECT(srlm_judge_parser_create(k_default_regex, 0, 5, &p) == SRLM_OK, "%s", srlm_error_message());
  double v;
  EXPECT(!srlm_judge_parse(p, out, strlen(out), &v, NULL), "the template itself parses as score %g", v);
  srlm_judge_parser_free(p);
  free(out);
  free(tmpl);
}

int main(void) {
  test_config_default();
  test_default_regex();
  test_custom_regex();
  test_utf8_agrees_with_pcre2();
  test_big_inputs();
  test_match_limits();
  test_errors_and_means();
  test_render();
  test_shipped_template();
  TEST_MAIN_END();
}
