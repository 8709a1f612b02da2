/* srlm logprobs: per-token log-probs of token-id sequences under a Hugging Face model.
 * Each input line {"ids":[...]} gives one output line {"logprobs":[...]} with
 * len(ids) - 1 values, value t = log p(ids[t+1] | ids[0..t]), in input order. Every
 * line is read and checked before the model runs (a bad line is an error naming
 * FILE:LINE and nothing is written); the lines then go through the model packed
 * together, up to --batch-tokens tokens per forward. Values are printed with %.9g so
 * they read back as the same floats. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "srlm/backend.h"
#include "srlm/jsonl.h"
#include "srlm/model.h"

static const char k_help[] =
    "usage: srlm logprobs --model DIR --jsonl FILE [--batch-tokens N] [--backend NAME] [--device N] [--dtype T]\n"
    "\n"
    "Prints, for each input line {\"ids\":[...]}, one line {\"logprobs\":[...]} with\n"
    "len(ids) - 1 values: value t is log p(ids[t+1] | ids[0..t]) under the model of DIR\n"
    "(natural log, computed in fp32 on the CPU unless --backend/--dtype say otherwise; %.9g,\n"
    "so each reads back as the same float). A line with one id gives []. Output lines are in\n"
    "input order.\n"
    "\n"
    "  --model DIR        a Hugging Face directory (config.json + safetensors weights)\n"
    "  --jsonl FILE       the input (\"-\" reads stdin); blank lines are skipped\n"
    "  --batch-tokens N   tokens per forward pass: lines are packed together up to N\n"
    "                     (a longer line runs alone); default 4096\n"
    SRLM_CLI_BACKEND_HELP
    "  --help             this text\n"
    "\n"
    "Exit status: 0 on success, 1 when the model or input cannot be read (the message\n"
    "names FILE:LINE for a bad line and the id for an id outside the vocabulary), 2 for\n"
    "a usage error.\n";

typedef struct line_ids {
  int32_t *ids;
  int64_t n;
} line_ids;

/* Reads every line's ids, checking them against the vocabulary size V. */
/* C: the model's context (max_position_embeddings; 0 = unknown): longer lines are refused. */
static srlm_status read_lines(const char *path, int64_t V, int64_t C, line_ids **out, size_t *n_out) {
  *out = NULL;
  *n_out = 0;
  srlm_jsonl *r;
  SRLM_TRY(srlm_jsonl_open(path, &r));
  line_ids *lines = NULL;
  size_t n = 0, cap = 0;
  srlm_status st;
  json_t *v;
  while ((st = srlm_jsonl_next(r, &v)) == SRLM_OK && v) {
    json_t *ids = json_is_object(v) ? json_object_get(v, "ids") : NULL;
    if (!json_is_object(v))
      st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "expected an object {\"ids\":[...]}, got %s", srlm_json_type_name(v));
    else if (!ids)
      st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "missing key \"ids\"");
    else if (!json_is_array(ids))
      st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "\"ids\" must be an array, got %s", srlm_json_type_name(ids));
    else if (json_array_size(ids) == 0)
      st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "\"ids\" is empty");
    else if (json_array_size(ids) > INT32_MAX / 2)
      st = srlm_jsonl_error(r, SRLM_ERR_RANGE, "\"ids\" has %zu ids, too many", json_array_size(ids));
    else if (C > 0 && (int64_t)json_array_size(ids) > C)
      st = srlm_jsonl_error(r, SRLM_ERR_RANGE, "\"ids\" has %zu ids; the model's context is %lld positions "
                            "(config.json max_position_embeddings)", json_array_size(ids), (long long)C);
    line_ids li = {NULL, 0};
    if (st == SRLM_OK) {
      li.n = (int64_t)json_array_size(ids);
      li.ids = srlm_xmalloc((size_t)li.n * sizeof *li.ids);
      for (int64_t i = 0; i < li.n && st == SRLM_OK; i++) {
        json_t *x = json_array_get(ids, (size_t)i);
        if (!json_is_integer(x))
          st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "ids[%lld] must be an integer, got %s", (long long)i,
                                srlm_json_type_name(x));
        else if (json_integer_value(x) < 0 || json_integer_value(x) >= V)
          st = srlm_jsonl_error(r, SRLM_ERR_RANGE, "id %lld (ids[%lld]) out of range [0, %lld): the model's vocabulary",
                                (long long)json_integer_value(x), (long long)i, (long long)V);
        else
          li.ids[i] = (int32_t)json_integer_value(x);
      }
    }
    json_decref(v);
    if (st != SRLM_OK) {
      free(li.ids);
      break;
    }
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      lines = srlm_xrealloc(lines, cap * sizeof *lines);
    }
    lines[n++] = li;
  }
  srlm_jsonl_close(r);
  if (st != SRLM_OK) {
    for (size_t i = 0; i < n; i++) free(lines[i].ids);
    free(lines);
    return st;
  }
  *out = lines;
  *n_out = n;
  return SRLM_OK;
}

static void print_line(const float *logp, int64_t n) {
  fputs("{\"logprobs\":[", stdout);
  for (int64_t t = 0; t < n; t++) {
    if (t) putchar(',');
    if (isfinite(logp[t]))
      printf("%.9g", (double)logp[t]);
    else
      fputs("null", stdout); /* JSON has no infinities; a finite model never gives them */
  }
  fputs("]}\n", stdout);
}

/* Lines [first, last) packed into one forward; prints their results. */
static srlm_status run_batch(srlm_model *m, const line_ids *lines, size_t first, size_t last) {
  const int B = (int)(last - first);
  int64_t T = 0;
  for (size_t i = first; i < last; i++) T += lines[i].n;
  int32_t *tokens = srlm_xmalloc((size_t)T * sizeof *tokens), *targets = srlm_xmalloc((size_t)T * sizeof *targets);
  int32_t *cu = srlm_xmalloc((size_t)(B + 1) * sizeof *cu);
  float *logp = srlm_xmalloc((size_t)T * sizeof *logp);
  cu[0] = 0;
  for (int b = 0; b < B; b++) {
    const line_ids *li = &lines[first + (size_t)b];
    memcpy(tokens + cu[b], li->ids, (size_t)li->n * sizeof *tokens);
    for (int64_t t = 0; t < li->n; t++) targets[cu[b] + t] = t + 1 < li->n ? li->ids[t + 1] : -1;
    cu[b + 1] = cu[b] + (int32_t)li->n;
  }
  srlm_batch batch = {.B = B, .T = T, .tokens = tokens, .cu_seqlens = cu, .targets = targets};
  srlm_status st = srlm_model_logprobs(m, &batch, logp);
  if (st == SRLM_OK)
    for (int b = 0; b < B; b++) print_line(logp + cu[b], cu[b + 1] - cu[b] - 1);
  free(tokens), free(targets), free(cu), free(logp);
  return st;
}

int srlm_cmd_logprobs(int argc, char **argv) {
  const char *cmd = argv[0], *dir = NULL, *jsonl = NULL;
  long long batch_tokens = 4096;
  srlm_cli_backend bo = SRLM_CLI_BACKEND_INIT;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int got = srlm_cli_backend_option(cmd, argc, argv, &i, &bo);
    if (got < 0) return -got;
    if (got) continue;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(k_help, stdout);
      return 0;
    } else if (!strcmp(a, "--model") || !strcmp(a, "--jsonl") || !strcmp(a, "--batch-tokens")) {
      if (i + 1 >= argc) return srlm_cli_usage_error(cmd, "%s needs a value", a);
      const char *val = argv[++i];
      if (!strcmp(a, "--model")) {
        dir = val;
      } else if (!strcmp(a, "--jsonl")) {
        jsonl = val;
      } else {
        char *end;
        batch_tokens = strtoll(val, &end, 10);
        if (!val[0] || *end || batch_tokens < 1 || batch_tokens > INT32_MAX / 2)
          return srlm_cli_usage_error(cmd, "--batch-tokens must be an integer in [1, %d], got '%s'", INT32_MAX / 2, val);
      }
    } else {
      return srlm_cli_usage_error(cmd, "unknown argument '%s' (see --help)", a);
    }
  }
  if (!dir || !dir[0]) return srlm_cli_usage_error(cmd, "--model DIR is required");
  if (!jsonl || !jsonl[0]) return srlm_cli_usage_error(cmd, "--jsonl FILE is required");

  srlm_backend *be;
  srlm_status st = srlm_cli_backend_open(&bo, &be);
  if (st != SRLM_OK) return srlm_cli_fail(cmd, st);
  srlm_model *m;
  st = srlm_model_load_for(dir, be, bo.dtype, SRLM_MODEL_DECODE, &m);
  if (st != SRLM_OK) {
    srlm_backend_close(be);
    return srlm_cli_fail(cmd, st);
  }
  line_ids *lines;
  size_t n;
  st = read_lines(jsonl, srlm_model_get_config(m)->vocab_size, srlm_model_get_config(m)->max_position_embeddings,
                  &lines, &n);
  if (st != SRLM_OK) {
    srlm_model_free(m);
    srlm_backend_close(be);
    return srlm_cli_fail(cmd, st);
  }
  size_t first = 0;
  while (st == SRLM_OK && first < n) {
    size_t last = first + 1;
    int64_t tokens = lines[first].n;
    while (last < n && tokens + lines[last].n <= batch_tokens) tokens += lines[last++].n;
    st = run_batch(m, lines, first, last);
    first = last;
  }
  for (size_t i = 0; i < n; i++) free(lines[i].ids);
  free(lines);
  srlm_model_free(m);
  srlm_status cst = srlm_backend_close(be);
  if (st == SRLM_OK) st = cst;
  if (st != SRLM_OK) return srlm_cli_fail(cmd, st);
  if (fflush(stdout) != 0 || ferror(stdout))
    return srlm_cli_fail(cmd, srlm_error(SRLM_ERR_IO, "stdout", "write error"));
  return 0;
}
