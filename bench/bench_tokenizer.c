/* bench_tokenizer: single-thread tokenizer throughput on the fixture texts.
 *
 *   bench_tokenizer --tokenizer DIR [--texts FILE] [--passes N] [--warmup N]
 *                   [--json FILE] [--ids-out FILE]
 *
 * Cases (one table, one driver): load (tokenizer.json parse + tables), encode (each
 * text on its own, as HF's Tokenizer.encode), encode_cold (the same with the piece
 * cache emptied before each pass), encode_concat (all texts joined into one string),
 * decode (each text's ids). Warm-up passes are excluded; MB/s uses the
 * median pass (input bytes for encode, output bytes for decode). Correctness is
 * checked outside the timed loops: ids must equal the "ids" of the texts file (when
 * present) and decode must give each text back; a mismatch exits 1.
 * --ids-out writes {"ids":[...]} per text (for comparing with HF, bench/tokenizer.sh).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/core.h"
#include "srlm/jsonl.h"
#include "srlm/tokenizer.h"

typedef struct bench_texts {
  char **text;     /* (n) */
  size_t *len;     /* (n) */
  json_t **golden; /* (n) golden ids array or NULL */
  size_t n, bytes;
} bench_texts;

typedef struct bench_result {
  const char *name;
  size_t items, bytes, tokens;
  int passes;
  double best_s, median_s;
} bench_result;

typedef struct bench_ctx {
  srlm_tokenizer *tok;
  const char *tok_path;
  bench_texts texts;
  char *concat;
  size_t concat_len;
  srlm_token_ids *ids; /* (texts.n) reference encodings */
  int passes, warmup;
} bench_ctx;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static srlm_status read_texts(const char *path, bench_texts *t) {
  srlm_jsonl *r;
  SRLM_TRY(srlm_jsonl_open(path, &r));
  size_t cap = 0;
  json_t *v;
  srlm_status st;
  while ((st = srlm_jsonl_next(r, &v)) == SRLM_OK && v) {
    const json_t *s = json_is_object(v) ? json_object_get(v, "text") : v;
    if (!json_is_string(s)) {
      st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "expected a string or an object with a \"text\" string");
      json_decref(v);
      break;
    }
    if (t->n == cap) {
      cap = cap ? 2 * cap : 256;
      t->text = srlm_xrealloc(t->text, cap * sizeof *t->text);
      t->len = srlm_xrealloc(t->len, cap * sizeof *t->len);
      t->golden = srlm_xrealloc(t->golden, cap * sizeof *t->golden);
    }
    t->len[t->n] = json_string_length(s);
    t->text[t->n] = srlm_xmalloc(t->len[t->n] + 1);
    memcpy(t->text[t->n], json_string_value(s), t->len[t->n] + 1);
    json_t *g = json_is_object(v) ? json_object_get(v, "ids") : NULL;
    t->golden[t->n] = json_is_array(g) ? json_incref(g) : NULL;
    t->bytes += t->len[t->n];
    t->n++;
    json_decref(v);
  }
  srlm_jsonl_close(r);
  return st;
}

/* ---- cases: each runs one pass and returns the tokens it produced ---------- */

static srlm_status pass_encode(bench_ctx *c, size_t *tokens) {
  static srlm_token_ids ids;
  *tokens = 0;
  for (size_t i = 0; i < c->texts.n; i++) {
    srlm_token_ids_clear(&ids);
    SRLM_TRY(srlm_tokenizer_encode(c->tok, c->texts.text[i], c->texts.len[i], &ids));
    *tokens += ids.n;
  }
  return SRLM_OK;
}

static srlm_status pass_encode_concat(bench_ctx *c, size_t *tokens) {
  static srlm_token_ids ids;
  srlm_token_ids_clear(&ids);
  SRLM_TRY(srlm_tokenizer_encode(c->tok, c->concat, c->concat_len, &ids));
  *tokens = ids.n;
  return SRLM_OK;
}

static srlm_status pass_decode(bench_ctx *c, size_t *tokens) {
  *tokens = 0;
  for (size_t i = 0; i < c->texts.n; i++) {
    char *text;
    size_t len;
    SRLM_TRY(srlm_tokenizer_decode(c->tok, c->ids[i].ids, c->ids[i].n, &text, &len));
    free(text);
    *tokens += c->ids[i].n;
  }
  return SRLM_OK;
}

static srlm_status pass_load(bench_ctx *c, size_t *tokens) {
  srlm_tokenizer *t;
  SRLM_TRY(srlm_tokenizer_load(c->tok_path, &t));
  *tokens = 0;
  srlm_tokenizer_free(t);
  return SRLM_OK;
}

static void cold_cache(bench_ctx *c) { srlm_tokenizer_clear_cache(c->tok); }

typedef struct bench_case {
  const char *name;
  srlm_status (*pass)(bench_ctx *, size_t *);
  int fixed_passes;              /* 0: the --passes value */
  void (*before)(bench_ctx *c); /* run before each pass, outside the timer */
} bench_case;

/* encode_cold empties the piece cache before each pass: every piece goes through BPE
 * once per pass (repeats inside the texts still hit). */
static const bench_case k_cases[] = {
    {"load", pass_load, 5, NULL},
    {"encode", pass_encode, 0, NULL},
    {"encode_cold", pass_encode, 0, cold_cache},
    {"encode_concat", pass_encode_concat, 0, NULL},
    {"decode", pass_decode, 0, NULL},
};
#define N_CASES (sizeof k_cases / sizeof k_cases[0])

static srlm_status run_case(bench_ctx *c, const bench_case *bc, bench_result *r) {
  int passes = bc->fixed_passes ? bc->fixed_passes : c->passes;
  double *t = srlm_xmalloc((size_t)passes * sizeof *t);
  size_t tokens = 0;
  srlm_status st = SRLM_OK;
  for (int i = 0; i < c->warmup && st == SRLM_OK; i++) st = bc->pass(c, &tokens);
  for (int i = 0; i < passes && st == SRLM_OK; i++) {
    if (bc->before) bc->before(c);
    srlm_timer tm;
    srlm_timer_start(&tm);
    st = bc->pass(c, &tokens);
    t[i] = srlm_timer_elapsed(&tm);
  }
  if (st == SRLM_OK) {
    qsort(t, (size_t)passes, sizeof *t, cmp_double);
    r->name = bc->name;
    r->passes = passes;
    r->tokens = tokens;
    r->best_s = t[0];
    r->median_s = passes % 2 ? t[passes / 2] : 0.5 * (t[passes / 2 - 1] + t[passes / 2]);
    r->items = !strcmp(bc->name, "encode_concat") || !strcmp(bc->name, "load") ? 1 : c->texts.n;
    r->bytes = !strcmp(bc->name, "encode_concat") ? c->concat_len : c->texts.bytes;
  }
  free(t);
  return st;
}

/* ---- correctness, outside the timed loops ------------------------------------ */

static int check_ids(bench_ctx *c, const char *ids_out) {
  int bad = 0;
  FILE *f = ids_out ? fopen(ids_out, "w") : NULL;
  if (ids_out && !f) {
    fprintf(stderr, "bench_tokenizer: cannot write %s\n", ids_out);
    return 1;
  }
  for (size_t i = 0; i < c->texts.n; i++) {
    srlm_token_ids *v = &c->ids[i];
    const json_t *g = c->texts.golden[i];
    if (g) {
      int same = json_array_size(g) == v->n;
      for (size_t k = 0; same && k < v->n; k++) same = json_integer_value(json_array_get(g, k)) == v->ids[k];
      if (!same) {
        if (bad < 5) fprintf(stderr, "bench_tokenizer: text %zu: ids differ from the texts file\n", i + 1);
        bad++;
      }
    }
    char *back;
    size_t bl;
    if (srlm_tokenizer_decode(c->tok, v->ids, v->n, &back, &bl) != SRLM_OK || bl != c->texts.len[i] ||
        memcmp(back, c->texts.text[i], bl) != 0) {
      if (bad < 5) fprintf(stderr, "bench_tokenizer: text %zu: decode does not give the text back\n", i + 1);
      bad++;
    }
    free(back);
    if (f) {
      fputs("{\"ids\":[", f);
      for (size_t k = 0; k < v->n; k++) fprintf(f, k ? ",%d" : "%d", v->ids[k]);
      fputs("]}\n", f);
    }
  }
  if (f && fclose(f) != 0) bad++;
  return bad;
}

static void cpu_name(char *buf, size_t n) {
  snprintf(buf, n, "unknown");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, "model name", 10)) {
      char *colon = strchr(line, ':');
      if (colon) {
        colon += 2;
        colon[strcspn(colon, "\n")] = 0;
        snprintf(buf, n, "%s", colon);
      }
      break;
    }
  }
  fclose(f);
}

static int usage(void) {
  fprintf(stderr, "usage: bench_tokenizer --tokenizer DIR [--texts FILE] [--passes N] [--warmup N] "
                  "[--json FILE] [--ids-out FILE]\n"
                  "  texts default to DIR/golden.jsonl; passes 20, warm-up 2\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *dir = NULL, *texts_path = NULL, *json_path = NULL, *ids_out = NULL;
  bench_ctx c = {0};
  c.passes = 20;
  c.warmup = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage();
      return 0;
    }
    if (!val) return usage();
    if (!strcmp(a, "--tokenizer")) dir = val;
    else if (!strcmp(a, "--texts")) texts_path = val;
    else if (!strcmp(a, "--passes")) c.passes = atoi(val);
    else if (!strcmp(a, "--warmup")) c.warmup = atoi(val);
    else if (!strcmp(a, "--json")) json_path = val;
    else if (!strcmp(a, "--ids-out")) ids_out = val;
    else return usage();
    i++;
  }
  if (!dir || c.passes < 1 || c.warmup < 0) return usage();
  char default_texts[4096];
  snprintf(default_texts, sizeof default_texts, "%s/golden.jsonl", dir);
  if (!texts_path) texts_path = default_texts;

  srlm_status st = srlm_tokenizer_load(dir, &c.tok);
  if (st == SRLM_OK) st = read_texts(texts_path, &c.texts);
  if (st != SRLM_OK) {
    fprintf(stderr, "bench_tokenizer: error: %s\n", srlm_error_message());
    return 1;
  }
  c.tok_path = dir;
  c.concat = srlm_xmalloc(c.texts.bytes + 1);
  for (size_t i = 0; i < c.texts.n; i++) {
    memcpy(c.concat + c.concat_len, c.texts.text[i], c.texts.len[i]);
    c.concat_len += c.texts.len[i];
  }
  c.ids = srlm_xcalloc(c.texts.n ? c.texts.n : 1, sizeof *c.ids);
  for (size_t i = 0; i < c.texts.n && st == SRLM_OK; i++)
    st = srlm_tokenizer_encode(c.tok, c.texts.text[i], c.texts.len[i], &c.ids[i]);
  if (st != SRLM_OK) {
    fprintf(stderr, "bench_tokenizer: error: %s\n", srlm_error_message());
    return 1;
  }
  int bad = check_ids(&c, ids_out);

  /* header */
  char pcre_version[64], cpu[256];
  pcre2_config(PCRE2_CONFIG_VERSION, pcre_version);
  cpu_name(cpu, sizeof cpu);
  srlm_tokenizer_info info;
  srlm_tokenizer_get_info(c.tok, &info);
  printf("# srlm bench_tokenizer: srlm %s (%s), PCRE2 %s (JIT %s), jansson %s, %s\n", SRLM_VERSION_STRING,
         SRLM_BUILD_TYPE, pcre_version, info.jit ? "on" : "off", JANSSON_VERSION, "gcc " __VERSION__);
  printf("# cpu: %s; 1 thread\n", cpu);
  printf("# tokenizer: %s (%d vocab, %d merges, %d added; NFC %s, ignore_merges %s)\n", srlm_tokenizer_path(c.tok),
         info.n_vocab, info.n_merges, info.n_added, info.nfc ? "yes" : "no", info.ignore_merges ? "yes" : "no");
  printf("# texts: %s: %zu texts, %zu bytes; passes %d (load 5), warm-up %d; MB/s = bytes / median pass\n", texts_path,
         c.texts.n, c.texts.bytes, c.passes, c.warmup);
  printf("# correctness: ids %s, decode round trip %s\n", bad ? "MISMATCH" : "match the texts file",
         bad ? "checked" : "exact");
  printf("#\n# %-14s %6s %10s %9s %6s %10s %10s %9s %9s\n", "case", "items", "bytes", "tokens", "passes", "best_s",
         "median_s", "MB/s", "Mtok/s");

  json_t *jres = json_array();
  for (size_t k = 0; k < N_CASES; k++) {
    bench_result r;
    st = run_case(&c, &k_cases[k], &r);
    if (st != SRLM_OK) {
      fprintf(stderr, "bench_tokenizer: error: %s\n", srlm_error_message());
      return 1;
    }
    int is_load = !strcmp(r.name, "load");
    double mbs = is_load ? 0 : (double)r.bytes / r.median_s / 1e6;
    double mtoks = is_load ? 0 : (double)r.tokens / r.median_s / 1e6;
    if (is_load)
      printf("  %-14s %6zu %10s %9s %6d %10.4f %10.4f %9s %9s\n", r.name, r.items, "-", "-", r.passes, r.best_s,
             r.median_s, "-", "-");
    else
      printf("  %-14s %6zu %10zu %9zu %6d %10.4f %10.4f %9.2f %9.3f\n", r.name, r.items, r.bytes, r.tokens, r.passes,
             r.best_s, r.median_s, mbs, mtoks);
    json_array_append_new(jres, json_pack("{s:s, s:I, s:I, s:I, s:i, s:f, s:f, s:f, s:f}", "case", r.name, "items",
                                          (json_int_t)r.items, "bytes", (json_int_t)r.bytes, "tokens",
                                          (json_int_t)r.tokens, "passes", r.passes, "best_s", r.best_s, "median_s",
                                          r.median_s, "mb_per_s", mbs, "mtokens_per_s", mtoks));
  }
  if (json_path) {
    json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:i, s:i, s:b, s:o}", "bench", "tokenizer",
                             "srlm_version", SRLM_VERSION_STRING, "pcre2", pcre_version, "cpu", cpu, "tokenizer",
                             srlm_tokenizer_path(c.tok), "texts_file", texts_path, "texts", (json_int_t)c.texts.n,
                             "bytes", (json_int_t)c.texts.bytes, "passes", c.passes, "warmup", c.warmup,
                             "ids_match", !bad, "results", jres);
    char *s = json_dumps(root, JSON_INDENT(1));
    st = srlm_write_file_atomic(json_path, s, strlen(s));
    free(s);
    json_decref(root);
    if (st != SRLM_OK) {
      fprintf(stderr, "bench_tokenizer: error: %s\n", srlm_error_message());
      return 1;
    }
  } else {
    json_decref(jres);
  }
  for (size_t i = 0; i < c.texts.n; i++) {
    free(c.texts.text[i]);
    json_decref(c.texts.golden[i]);
    srlm_token_ids_free(&c.ids[i]);
  }
  free(c.texts.text);
  free(c.texts.len);
  free(c.texts.golden);
  free(c.ids);
  free(c.concat);
  srlm_tokenizer_free(c.tok);
  if (bad) fprintf(stderr, "bench_tokenizer: %d texts wrong\n", bad);
  return bad ? 1 : 0;
}
