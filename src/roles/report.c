/* srlm report: RUN_DIR/report.html (include/srlm/report.h). Reads metrics.jsonl into
 * points (x = iteration for eval/iteration lines, the run's learner step for learn lines
 * as in the TensorBoard file, the step for SFT lines), draws each chart as inline SVG
 * (a polyline and a circle per point per series), and adds the table, the config and
 * sampled rollouts. No JavaScript: the page is static. */
#include "srlm/report.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "srlm/jsonl.h"
#include "srlm/shard.h"
#include "srlm/shard_store.h"
#include "srlm/store.h"
#include "srlm/tokenizer.h"

/* ---- HTML text ---------------------------------------------------------------------- */

static void put(srlm_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(srlm_strbuf *b, const char *fmt, ...) {
  char small[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof small) {
    srlm_strbuf_append(b, small, (size_t)n);
    return;
  }
  char *big = srlm_xmalloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  srlm_strbuf_append(b, big, (size_t)n);
  free(big);
}

/* n bytes of s as HTML text: & < > " ' escaped, control bytes other than tab and
 * newline shown as U+FFFD. */
static void esc(srlm_strbuf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *r = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&quot;" : c == '\'' ? "&#39;"
                    : (c < 0x20 && c != '\n' && c != '\t') || c == 0x7F ? "\xEF\xBF\xBD" : NULL;
    if (r)
      srlm_strbuf_append(b, r, strlen(r));
    else
      srlm_strbuf_append(b, s + i, 1);
  }
}
static void escs(srlm_strbuf *b, const char *s) { esc(b, s, strlen(s)); }

/* ---- metrics.jsonl ------------------------------------------------------------------ */

typedef struct mline {
  json_t *o;
  const char *event; /* "eval", "iteration", "learn", "sft" (a line without "event") */
  double x;
} mline;

typedef struct metrics {
  mline *l;
  int64_t n;
  int64_t *iters; /* the iterations of eval and iteration lines, ascending, each once */
  int64_t n_iters;
} metrics;

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static srlm_status load_metrics(const char *path, metrics *m) {
  memset(m, 0, sizeof *m);
  srlm_jsonl *r;
  SRLM_TRY(srlm_jsonl_open(path, &r));
  int64_t cap = 0, *learn_steps = NULL, n_it = 0; /* per iteration: its last learner step */
  srlm_status st;
  json_t *o;
  while ((st = srlm_jsonl_next(r, &o)) == SRLM_OK && o) {
    if (!json_is_object(o)) {
      st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "expected a JSON object, got %s", srlm_json_type_name(o));
      json_decref(o);
      break;
    }
    json_t *ev = json_object_get(o, "event");
    if (ev && !json_is_string(ev)) {
      json_decref(o);
      st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "\"event\" is not a string");
      break;
    }
    if (m->n == cap) {
      cap = 2 * cap + 64;
      m->l = srlm_xrealloc(m->l, (size_t)cap * sizeof *m->l);
    }
    mline *l = &m->l[m->n++];
    l->o = o;
    l->event = ev ? json_string_value(ev) : "sft";
    int64_t t = json_integer_value(json_object_get(o, "iteration")), step = json_integer_value(json_object_get(o, "step"));
    if (!strcmp(l->event, "eval") || !strcmp(l->event, "iteration")) {
      m->iters = srlm_xrealloc(m->iters, (size_t)(m->n_iters + 1) * sizeof *m->iters);
      m->iters[m->n_iters++] = t;
    }
    if (!strcmp(l->event, "learn") && t >= 0 && t < 1000000) {
      if (t >= n_it) {
        learn_steps = srlm_xrealloc(learn_steps, (size_t)(t + 1) * sizeof *learn_steps);
        memset(learn_steps + n_it, 0, (size_t)(t + 1 - n_it) * sizeof *learn_steps);
        n_it = t + 1;
      }
      if (step > learn_steps[t]) learn_steps[t] = step;
      for (int64_t u = 0; u < t; u++) step += learn_steps[u];
      l->x = (double)step;
    } else {
      l->x = (double)(strcmp(l->event, "sft") ? t : step);
    }
    if (!strcmp(l->event, "iteration")) { /* derived: the iteration's throughput */
      double s = json_number_value(json_object_get(o, "seconds"));
      json_t *smp = json_object_get(o, "samples");
      if (s > 0 && json_is_number(smp)) json_object_set_new(o, "samples_per_s", json_real(json_number_value(smp) / s));
    }
  }
  free(learn_steps);
  srlm_jsonl_close(r);
  if (m->n_iters) qsort(m->iters, (size_t)m->n_iters, sizeof *m->iters, cmp_i64);
  int64_t u = 0;
  for (int64_t i = 0; i < m->n_iters; i++)
    if (u == 0 || m->iters[i] != m->iters[u - 1]) m->iters[u++] = m->iters[i];
  m->n_iters = u;
  if (st == SRLM_OK && m->n == 0)
    st = srlm_error(SRLM_ERR_FORMAT, path, "no metrics yet (the run has not reported a step or an evaluation)");
  return st;
}

static void free_metrics(metrics *m) {
  for (int64_t i = 0; i < m->n; i++) json_decref(m->l[i].o);
  free(m->l);
  free(m->iters);
}

/* ---- charts ------------------------------------------------------------------------- */

typedef struct series_spec {
  const char *event, *key, *label;
} series_spec;
typedef struct chart_spec {
  const char *id, *title, *x_label;
  series_spec s[3];
} chart_spec;

static const chart_spec k_iteration_charts[] = {
    {"heldout_accuracy", "Held-out accuracy", "iteration",
     {{"eval", "accuracy", "greedy accuracy"}, {"eval", "sample_accuracy", "sample accuracy"}}},
    {"judge_agreement", "Judge agreement with the checker", "iteration", {{"eval", "judge_agreement", "agreement"}}},
    {"iteration_loss", "Loss per iteration", "iteration",
     {{"iteration", "loss_first", "first step"}, {"iteration", "loss_last", "last step"}}},
    {"mean_score", "Mean judged score", "iteration",
     {{"iteration", "mean_score", "rollouts"}, {"eval", "mean_score", "evaluation"}}},
    {"iteration_throughput", "Throughput per iteration (samples/s)", "iteration",
     {{"iteration", "samples_per_s", "samples/s"}}},
};
static const chart_spec k_step_charts[] = {
    {"step_loss", "Loss per learner step", "learner step", {{"learn", "loss", "loss"}}},
    {"reward_margin", "Reward margin", "learner step", {{"learn", "margin", "margin"}}},
    {"reward_accuracy", "Reward accuracy", "learner step", {{"learn", "reward_accuracy", "accuracy"}}},
    {"lengths", "Chosen / rejected length (tokens)", "learner step",
     {{"learn", "len_chosen", "chosen"}, {"learn", "len_rejected", "rejected"}}},
    {"step_throughput", "Throughput per learner step (tokens/s)", "learner step", {{"learn", "tokens_per_s", "tokens/s"}}},
};
static const chart_spec k_sft_charts[] = {
    {"sft_loss", "SFT loss", "step", {{"sft", "loss", "loss"}}},
    {"sft_lr", "SFT learning rate", "step", {{"sft", "lr", "lr"}}},
    {"sft_throughput", "SFT throughput (tokens/s)", "step", {{"sft", "tokens_per_second", "tokens/s"}}},
};
static const char *const k_colors[] = {"#1f77b4", "#d62728", "#2ca02c"};

/* The points of one series: (x, y) pairs of the finite values. */
static int64_t series_points(const metrics *m, const series_spec *s, double *xy) {
  int64_t k = 0;
  for (int64_t i = 0; i < m->n; i++) {
    if (strcmp(m->l[i].event, s->event)) continue;
    json_t *v = json_object_get(m->l[i].o, s->key);
    if (!json_is_number(v) || !isfinite(json_number_value(v))) continue;
    xy[2 * k] = m->l[i].x;
    xy[2 * k + 1] = json_number_value(v);
    k++;
  }
  return k;
}

static void chart(srlm_strbuf *b, const metrics *m, const chart_spec *c) {
  enum { W = 560, H = 220, L = 64, R = 14, T = 12, B = 34 };
  double *xy[3] = {NULL, NULL, NULL};
  int64_t np[3] = {0, 0, 0};
  int ns = 0;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (int s = 0; s < 3 && c->s[s].key; s++, ns++) {
    xy[s] = srlm_xmalloc((size_t)(2 * m->n + 2) * sizeof **xy);
    np[s] = series_points(m, &c->s[s], xy[s]);
    for (int64_t i = 0; i < np[s]; i++) {
      x0 = fmin(x0, xy[s][2 * i]), x1 = fmax(x1, xy[s][2 * i]);
      y0 = fmin(y0, xy[s][2 * i + 1]), y1 = fmax(y1, xy[s][2 * i + 1]);
    }
  }
  put(b, "<figure class=\"chart\" id=\"chart-%s\"><figcaption>", c->id);
  escs(b, c->title);
  put(b, "</figcaption>\n");
  if (isfinite(x0)) {
    if (x1 == x0) x0 -= 1, x1 += 1;
    if (y1 == y0) {
      double pad = y0 == 0 ? 1 : fabs(y0) * 0.1;
      y0 -= pad, y1 += pad;
    }
#define PX(x) (L + ((x) - x0) / (x1 - x0) * (W - L - R))
#define PY(y) (H - B - ((y) - y0) / (y1 - y0) * (H - T - B))
    put(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\">", W,
        H, W, H);
    put(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fff\" stroke=\"#999\"/>", L, T, W - L - R,
        H - T - B);
    /* y labels with enough digits to tell 5 ticks apart over a narrow range */
    double mag = fmax(fabs(y0), fabs(y1)), step = (y1 - y0) / 4.0;
    int digits = mag > 0 && step > 0 ? (int)ceil(log10(mag / step)) + 2 : 4;
    digits = digits < 4 ? 4 : digits > 10 ? 10 : digits;
    for (int g = 0; g <= 4; g++) {
      double y = y0 + step * g;
      put(b, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>", L, W - R, PY(y), PY(y));
      put(b, "<text x=\"%d\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%.*g</text>", L - 4, PY(y) + 4, digits, y);
    }
    /* x is an iteration or a step: whole numbers, every one when there are few */
    double x_step = x1 - x0 <= 10 ? 1 : ceil((x1 - x0) / 5.0);
    for (double x = ceil(x0); x <= x1; x += x_step)
      put(b, "<text x=\"%.1f\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">%.0f</text>", PX(x), H - B + 14, x);
    put(b, "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"middle\">", (L + W - R) / 2, H - 4);
    escs(b, c->x_label);
    put(b, "</text>");
    for (int s = 0; s < ns; s++) {
      if (np[s] == 0) continue;
      put(b, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", k_colors[s]);
      for (int64_t i = 0; i < np[s]; i++) put(b, "%s%.1f,%.1f", i ? " " : "", PX(xy[s][2 * i]), PY(xy[s][2 * i + 1]));
      put(b, "\"/>");
      for (int64_t i = 0; i < np[s]; i++)
        put(b, "<circle class=\"pt\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%.6g: %.6g</title></circle>",
            PX(xy[s][2 * i]), PY(xy[s][2 * i + 1]), k_colors[s], xy[s][2 * i], xy[s][2 * i + 1]);
    }
    put(b, "</svg>\n");
#undef PX
#undef PY
  }
  put(b, "<div class=\"legend\">");
  for (int s = 0; s < ns; s++) {
    if (np[s]) {
      put(b, "<span><i style=\"background:%s\"></i>", k_colors[s]);
      escs(b, c->s[s].label);
      put(b, " (%lld points)</span> ", (long long)np[s]);
    } else {
      put(b, "<span class=\"missing\">no data: metrics.jsonl has no %s.%s values</span> ", c->s[s].event, c->s[s].key);
    }
  }
  put(b, "</div></figure>\n");
  for (int s = 0; s < 3; s++) free(xy[s]);
}

/* ---- the per-iteration table -------------------------------------------------------- */

static void cell(srlm_strbuf *b, const json_t *o, const char *key, const char *fmt, double scale) {
  json_t *v = o ? json_object_get(o, key) : NULL;
  if (json_is_number(v) && isfinite(json_number_value(v)))
    put(b, fmt, scale * json_number_value(v));
  else
    put(b, "<td>-</td>");
}

static void table(srlm_strbuf *b, const metrics *m) {
  put(b, "<table id=\"iterations\"><thead><tr><th>model</th><th>accuracy</th><th>sample acc</th><th>judge agr</th>"
         "<th>samples</th><th>pairs</th><th>pair ok</th><th>replay</th><th>loss first</th><th>loss last</th>"
         "<th>mean score</th><th>seconds</th></tr></thead><tbody>\n");
  for (int64_t k = 0; k < m->n_iters; k++) {
    const int64_t t = m->iters[k];
    const json_t *ev = NULL, *it = NULL;
    for (int64_t i = 0; i < m->n; i++) {
      if (json_integer_value(json_object_get(m->l[i].o, "iteration")) != t) continue;
      if (!strcmp(m->l[i].event, "eval")) ev = m->l[i].o;
      if (!strcmp(m->l[i].event, "iteration")) it = m->l[i].o;
    }
    if (!ev && !it) continue;
    if (t == 0)
      put(b, "<tr class=\"start\"><td>start</td>");
    else
      put(b, "<tr class=\"iter\"><td>iter %lld</td>", (long long)t);
    cell(b, ev, "accuracy", "<td>%.1f%%</td>", 100);
    cell(b, ev, "sample_accuracy", "<td>%.1f%%</td>", 100);
    cell(b, ev, "judge_agreement", "<td>%.1f%%</td>", 100);
    cell(b, it, "samples", "<td>%.0f</td>", 1);
    cell(b, it, "pairs", "<td>%.0f</td>", 1);
    cell(b, it, "pair_accuracy_by_checker", "<td>%.1f%%</td>", 100);
    cell(b, it, "replay", "<td>%.0f</td>", 1);
    cell(b, it, "loss_first", "<td>%.4f</td>", 1);
    cell(b, it, "loss_last", "<td>%.4f</td>", 1);
    cell(b, it ? it : ev, "mean_score", "<td>%.3f</td>", 1);
    cell(b, it ? it : ev, "seconds", "<td>%.1f</td>", 1);
    put(b, "</tr>\n");
  }
  put(b, "</tbody></table>\n");
}

/* ---- sampled rollouts --------------------------------------------------------------- */

static void decoded(srlm_strbuf *b, const srlm_tokenizer *tok, const int32_t *ids, int64_t n) {
  char *text = NULL;
  size_t len = 0;
  if (tok && srlm_tokenizer_decode(tok, ids, (size_t)n, &text, &len) == SRLM_OK) {
    esc(b, text, len);
  } else {
    put(b, "ids:");
    for (int64_t i = 0; i < n; i++) put(b, " %d", ids[i]);
  }
  free(text);
}

static void answer(srlm_strbuf *b, const srlm_shard *s, int64_t r, const srlm_tokenizer *tok, const char *what) {
  put(b, "<div class=\"answer %s\"><h4>%s answer (sample %lld, mean score %.3g)</h4><pre>", what, what,
      (long long)s->sample_index[r], s->mean_score[r]);
  decoded(b, tok, s->response_ids + s->response_offsets[r], s->response_offsets[r + 1] - s->response_offsets[r]);
  put(b, "</pre>");
  for (int64_t j = 0; j < s->judgments_per_response; j++) {
    int64_t k = r * s->judgments_per_response + j;
    put(b, "<p class=\"judgment\">judgment %lld (score %.3g):</p><pre>", (long long)j + 1, s->judgment_score[k]);
    escs(b, s->judgment_text + s->judgment_text_offsets[k]);
    put(b, "</pre>");
  }
  put(b, "</div>");
}

/* Up to `want` prompts of shard s with their best and worst answers (by mean judged
 * score; a prompt without any parsed judgment shows its first and last answer). */
static int shard_samples(srlm_strbuf *b, const srlm_shard *s, const srlm_tokenizer *tok, int want) {
  int shown = 0;
  for (int64_t p = 0; p < s->n_prompts && shown < want; p++) {
    int64_t best = -1, worst = -1;
    for (int64_t r = 0; r < s->n_responses; r++) {
      if (s->response_prompt[r] != p || isnan(s->mean_score[r])) continue;
      if (best < 0 || s->mean_score[r] > s->mean_score[best]) best = r;
      if (worst < 0 || s->mean_score[r] < s->mean_score[worst]) worst = r;
    }
    int scored = best >= 0;
    for (int64_t r = 0; r < s->n_responses && !scored; r++) /* none scored: the first and the last answer */
      if (s->response_prompt[r] == p) worst = r, best = best < 0 ? r : best;
    if (best < 0) continue; /* no answer */
    put(b, "<div class=\"sample\"><h3>prompt %lld</h3><pre class=\"prompt\">", (long long)s->prompt_index[p]);
    decoded(b, tok, s->prompt_ids + s->prompt_offsets[p], s->prompt_offsets[p + 1] - s->prompt_offsets[p]);
    put(b, "</pre>");
    answer(b, s, best, tok, scored ? "best" : "unscored");
    if (worst != best) answer(b, s, worst, tok, scored ? "worst" : "unscored");
    put(b, "</div>\n");
    shown++;
  }
  return shown;
}

static int exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

static void samples(srlm_strbuf *b, const char *run_dir, const metrics *m) {
  char path[4400], dir[4400];
  int64_t t = 0; /* the last reported iteration with rollouts */
  for (int64_t k = m->n_iters - 1; k >= 0 && t == 0; k--) {
    snprintf(path, sizeof path, "%s/iter_%lld/rollouts.h5", run_dir, (long long)m->iters[k]);
    if (m->iters[k] >= 1 && exists(path)) t = m->iters[k];
  }
  put(b, "<section id=\"samples\"><h2>Sampled prompts</h2>\n");
  if (t < 1) {
    put(b, "<p class=\"missing\">no iter_&lt;t&gt;/rollouts.h5 in this run folder</p></section>\n");
    return;
  }
  srlm_tokenizer *tok = NULL;
  snprintf(dir, sizeof dir, "%s/iter_%lld/model", run_dir, (long long)t);
  if (srlm_tokenizer_load(dir, &tok) != SRLM_OK) {
    snprintf(dir, sizeof dir, "%s/iter_0/model", run_dir);
    if (srlm_tokenizer_load(dir, &tok) != SRLM_OK) tok = NULL;
  }
  put(b, "<p>iteration %lld (", (long long)t);
  escs(b, path);
  put(b, ")%s: the first prompts, each with its best and worst answer by mean judged score.</p>\n",
      tok ? "" : "; no tokenizer files found: token ids shown");
  srlm_store *st;
  srlm_status rc = srlm_store_open(path, SRLM_SHARD_STORE_FORMAT, SRLM_SHARD_STORE_VERSION, &st);
  int shown = 0;
  if (rc == SRLM_OK) {
    int64_t n = 0;
    char **names = NULL;
    rc = srlm_store_list(st, "/", &n, &names);
    /* shard_<i> in index order */
    for (int64_t idx = 0, found = 1; rc == SRLM_OK && found && shown < SRLM_REPORT_SAMPLES; idx++) {
      char want[64], group[80];
      snprintf(want, sizeof want, "shard_%lld", (long long)idx);
      found = 0;
      for (int64_t i = 0; i < n && !found; i++) found = !strcmp(names[i], want);
      if (!found) break;
      snprintf(group, sizeof group, "/%s", want);
      srlm_shard s;
      rc = srlm_shard_read(st, group, &s);
      if (rc == SRLM_OK) {
        shown += shard_samples(b, &s, tok, SRLM_REPORT_SAMPLES - shown);
        srlm_shard_free(&s);
      }
    }
    srlm_store_strings_free(names, n);
    srlm_store_close(st);
  }
  if (rc != SRLM_OK) {
    put(b, "<p class=\"missing\">cannot read the rollouts: ");
    escs(b, srlm_error_message());
    put(b, "</p>");
  } else if (shown == 0) {
    put(b, "<p class=\"missing\">no prompt with an answer</p>");
  }
  put(b, "</section>\n");
  srlm_tokenizer_free(tok);
}

/* ---- the page ----------------------------------------------------------------------- */

static const char k_css[] =
    "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;background:#fafafa}"
    "h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}"
    ".charts{display:flex;flex-wrap:wrap;gap:12px}"
    "figure.chart{margin:0;padding:8px;background:#fff;border:1px solid #ddd;border-radius:4px;width:560px}"
    "figcaption{font-weight:600;margin-bottom:4px}svg text.tick{font-size:10px;fill:#555}"
    "svg text.axis{font-size:11px;fill:#333}.legend span{margin-right:12px;font-size:12px}"
    ".legend i{display:inline-block;width:10px;height:10px;margin-right:4px}"
    ".missing{color:#a33;font-style:italic}"
    "table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}"
    "pre{background:#fff;border:1px solid #ddd;padding:6px;white-space:pre-wrap;word-break:break-all;max-height:320px;"
    "overflow:auto}.sample{margin-bottom:18px}.answer{margin-left:16px}h3,h4{margin:6px 0}"
    ".best h4{color:#2a7d2a}.worst h4{color:#a33}p.judgment{margin:4px 0;font-size:12px;color:#555}";

srlm_status srlm_report_write(const char *run_dir, char **out_path) {
  if (out_path) *out_path = NULL;
  struct stat sb;
  if (stat(run_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return srlm_error(SRLM_ERR_IO, run_dir, "no such run folder");
  char path[4400];
  SRLM_TRY(srlm_path_join(path, sizeof path, run_dir, "metrics.jsonl"));
  if (!exists(path))
    return srlm_error(SRLM_ERR_IO, path, "missing: not a run folder, or a run that has not started");
  metrics m;
  srlm_status st = load_metrics(path, &m);
  if (st != SRLM_OK) {
    free_metrics(&m);
    return st;
  }
  srlm_strbuf b = {0};
  const char *name = strrchr(run_dir, '/');
  name = name && name[1] ? name + 1 : run_dir;
  time_t now = time(NULL);
  char when[64];
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
  put(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>srlm report: ");
  escs(&b, name);
  put(&b, "</title><style>%s</style></head><body>\n<h1>srlm run ", k_css);
  escs(&b, name);
  put(&b, "</h1><p>");
  escs(&b, run_dir);
  put(&b, ": %lld metrics lines, written %s</p>\n", (long long)m.n, when);
  int sft = 0, sr = 0;
  for (int64_t i = 0; i < m.n; i++) {
    if (!strcmp(m.l[i].event, "sft"))
      sft = 1;
    else
      sr = 1;
  }
  if (sr) {
    put(&b, "<h2>Per iteration</h2><div class=\"charts\">\n");
    for (size_t i = 0; i < sizeof k_iteration_charts / sizeof *k_iteration_charts; i++) chart(&b, &m, &k_iteration_charts[i]);
    put(&b, "</div>\n<h2>Per learner step</h2><div class=\"charts\">\n");
    for (size_t i = 0; i < sizeof k_step_charts / sizeof *k_step_charts; i++) chart(&b, &m, &k_step_charts[i]);
    put(&b, "</div>\n<h2>Iterations</h2>\n");
    table(&b, &m);
  }
  if (sft) {
    put(&b, "<h2>SFT</h2><div class=\"charts\">\n");
    for (size_t i = 0; i < sizeof k_sft_charts / sizeof *k_sft_charts; i++) chart(&b, &m, &k_sft_charts[i]);
    put(&b, "</div>\n");
  }
  if (sr) samples(&b, run_dir, &m);
  put(&b, "<section id=\"config\"><h2>Config</h2>\n");
  char cfg_path[4400], *yaml = NULL;
  size_t yaml_n = 0;
  srlm_status cst = srlm_path_join(cfg_path, sizeof cfg_path, run_dir, "config.yaml");
  if (cst == SRLM_OK) cst = srlm_read_file(cfg_path, &yaml, &yaml_n);
  if (cst == SRLM_OK) {
    put(&b, "<p>config.yaml (the resolved config the run started with)</p><pre>");
    esc(&b, yaml, yaml_n);
    put(&b, "</pre>");
  } else {
    put(&b, "<p class=\"missing\">");
    escs(&b, srlm_error_message());
    put(&b, "</p>");
  }
  free(yaml);
  put(&b, "</section>\n</body></html>\n");
  free_metrics(&m);
  SRLM_TRY(srlm_path_join(path, sizeof path, run_dir, "report.html"));
  st = srlm_write_file_atomic(path, b.p, b.n);
  free(b.p);
  if (st == SRLM_OK && out_path) *out_path = srlm_xstrdup(path);
  return st;
}
