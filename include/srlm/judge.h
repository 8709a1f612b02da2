/* srlm judge: the text side of LLM-as-a-Judge (ALGORITHMS.md section 3): rendering
 * the judge prompt from a template file, and turning sampled judgments into scores.
 *
 * Templates (judge.template, default configs/judge/additive5.txt) are plain text that
 * the model sees verbatim, so they hold no comments. Two placeholders are substituted:
 *   {prompt}    the user's instruction (the prompt the candidate answered)
 *   {response}  the candidate answer being judged
 * Each must appear at least once (several times is fine). Any other {name} with name
 * made of [A-Za-z0-9_] is an error (a misspelt placeholder must not reach the model);
 * braces around anything else ("{ }", "{\"a\": 1}", a lone "{") are literal text.
 * Substituted values are copied verbatim and never expanded again (a response that
 * contains "{prompt}" stays as written). The rendered text is the user turn the
 * caller passes through the chat format.
 *
 * Scores (srlm_judge_parser): the judgment is bytes with an explicit length (NUL bytes
 * inside are ordinary bytes). The PCRE2 pattern judge.score_regex is compiled once, in
 * UTF mode. Ill-formed UTF-8 (srlm_judge_utf8_valid) never matches anything and acts as
 * a barrier: the judgment is split at ill-formed bytes and each well-formed fragment is
 * matched on its own (its edges are not line starts or ends), which is what
 * PCRE2_MATCH_INVALID_UTF does, but without re-validating the whole subject on every
 * match (quadratic in PCRE2 10.42's interpreter). So a well-formed "Score: 4" line still
 * parses in an otherwise broken judgment, while "Score: \xff4" does not. The LAST match
 * over all fragments wins (a judge that revises
 * itself ends with its final answer); its capture group 1 must be a plain decimal
 * number ([+-]digits[.digits][e[+-]digits], at most SRLM_JUDGE_MAX_NUMBER bytes) whose
 * value is finite; it is then clamped to [score_min, score_max]. Anything else makes
 * the judgment unparsable: no match, group 1 unset or not a number, NaN/inf text, an
 * absurdly long number, or a match that exceeds PCRE2's match limits.
 * With the default pattern "Score: *([0-9]+(\.[0-9]+)?)":
 *   "Score: 10" -> 5 (clamped), "Score: 4.5" -> 4.5, "Score: 5/5" -> 5,
 *   "Score: -3" -> unparsable (the pattern has no sign; a negative score is not a
 *   rubric score), "Score:" -> unparsable, "Score: 99999999999999999999" -> 5 (1e20
 *   clamped; 20 digits is within the length limit).
 * The score of a candidate is the mean over its parsable judgments; with none it is
 * unscored (NaN), which srlm_pairs_select skips.
 *
 * A parser holds only the compiled pattern; parsing allocates its match data per call,
 * so one parser may be used from several threads at once.
 */
#ifndef SRLM_JUDGE_H
#define SRLM_JUDGE_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- templates --------------------------------------------------------------- */

/* Renders tmpl with the two placeholders substituted into *out (heap, NUL-terminated,
 * free()). template_name (the file path) names the template in errors:
 * SRLM_ERR_CONFIG "TEMPLATE: unknown placeholder {name}" or "...: no {response}
 * placeholder". */
srlm_status srlm_judge_render(const char *template_name, const char *tmpl, const char *prompt,
                              const char *response, char **out);

/* The same with n named placeholders (names[i] -> values[i], 1 <= n <= 8): every one must
 * appear, any other {name} is an error naming the known ones. srlm_judge_render is this
 * with {prompt} and {response}; Meta-Rewarding's meta.template has {prompt}, {response},
 * {judgment_a}, {judgment_b}. */
srlm_status srlm_judge_render_vars(const char *template_name, const char *tmpl, int n, const char *const *names,
                                   const char *const *values, char **out);

/* Reads a template file and checks its placeholders (renders it once with empty values). */
srlm_status srlm_judge_template_load(const char *path, char **tmpl);

/* ---- scores ------------------------------------------------------------------ */

/* 1 when s (n bytes) is well-formed UTF-8 as PCRE2 requires (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), else 0. */
int srlm_judge_utf8_valid(const char *s, size_t n);

/* Longest number text accepted from capture group 1, in bytes. */
#define SRLM_JUDGE_MAX_NUMBER 32

typedef struct srlm_judge_parser srlm_judge_parser;

/* Compiles regex (judge.score_regex). Errors (SRLM_ERR_CONFIG, naming judge.score_regex):
 * a PCRE2 compile error with its message and offset, a pattern without a capture group,
 * score_min > score_max or non-finite bounds. */
srlm_status srlm_judge_parser_create(const char *regex, double score_min, double score_max,
                                     srlm_judge_parser **out);
void srlm_judge_parser_free(srlm_judge_parser *p);

/* PCRE2's limits for matching judge.score_regex against one judgment: a pattern that
 * backtracks badly (a quadratic or exponential pattern on a long judgment) stops at these
 * instead of taking minutes per judgment. */
#define SRLM_JUDGE_MATCH_LIMIT 1000000u
#define SRLM_JUDGE_DEPTH_LIMIT 10000u

/* Parses one judgment (text, len bytes): returns 1 and *score when parsable, else 0.
 * *clamped (may be NULL) is set to 1 when the value was outside the range. */
int srlm_judge_parse(const srlm_judge_parser *p, const char *text, size_t len, double *score,
                     int *clamped);

/* srlm_judge_parse, and *limit_hit = 1 when the judgment is not parsed because matching
 * hit SRLM_JUDGE_MATCH_LIMIT or SRLM_JUDGE_DEPTH_LIMIT (the pattern's cost, not the
 * judgment's form: counted apart from unparsable judgments). */
int srlm_judge_parse_ex(const srlm_judge_parser *p, const char *text, size_t len, double *score, int *clamped,
                        int *limit_hit);

/* Meta-Rewarding's winner (meta.winner_regex compiled with srlm_judge_parser_create): the
 * last match's capture 1 (the rules above) read as one character: "A" or "1" -> 1 (the
 * first judgment), "B" or "2" -> 2 (the second); anything else, or no match, -> 0. */
int srlm_judge_parse_winner(const srlm_judge_parser *p, const char *text, size_t len);

typedef struct srlm_judge_stats {
  int64_t judgments;   /* judgments seen */
  int64_t parsed;      /* judgments with a score */
  int64_t unparsable;  /* judgments dropped */
  int64_t limit_hits;  /* judgments not parsed because PCRE2 hit its match or depth limit (not in unparsable) */
  int64_t clamped;     /* parsed scores that were clamped into the range */
  int64_t candidates;  /* candidates seen */
  int64_t unscored;    /* candidates with no parsable judgment */
} srlm_judge_stats;

/* Score of one candidate from its j judgments (texts (j), lens (j); lens NULL: each
 * NUL-terminated): *mean = the mean of the parsable ones, NaN when none; *n_parsed
 * (may be NULL) their count. stats accumulates (may be NULL). */
void srlm_judge_score(const srlm_judge_parser *p, int j, const char *const *texts, const size_t *lens,
                      double *mean, int *n_parsed, srlm_judge_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
