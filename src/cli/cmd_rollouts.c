/* srlm rollouts FILE [--tokenizer DIR]: prints an iteration's rollouts.h5 as JSONL, one
 * line per response in shard order: shard, policy version, prompt index, sample index,
 * flags, mean score, the judgments' scores and texts, the response's token ids (and its
 * text with --tokenizer), then one line with the pairs' counts. For reading a run, and
 * for comparing runs: two runs' dumps are equal exactly when their rollouts are
 * (the HDF5 bytes themselves carry object times). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "srlm/shard.h"
#include "srlm/shard_store.h"
#include "srlm/store.h"
#include "srlm/tokenizer.h"

static const char k_help[] =
    "usage: srlm rollouts FILE [--tokenizer DIR]\n"
    "\n"
    "Prints iter_<t>/rollouts.h5 of a run as JSON lines: one per response (shard,\n"
    "policy_version, prompt_index, sample, flags, score, judgments, ids[, text]), then\n"
    "one line {\"pairs\": ...} with the pair counts. --tokenizer DIR adds the decoded text.\n"
    "\n"
    "Exit status: 0 ok, 2 usage error, 1 other errors.\n";

static int cmp_names(const void *a, const void *b) {
  const char *x = *(const char *const *)a, *y = *(const char *const *)b;
  long long i = strncmp(x, "shard_", 6) ? -1 : atoll(x + 6), j = strncmp(y, "shard_", 6) ? -1 : atoll(y + 6);
  return i < j ? -1 : i > j;
}

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static srlm_status dump_shard(srlm_store *st, const char *name, srlm_tokenizer *tok) {
  char group[512];
  snprintf(group, sizeof group, "/%s", name);
  srlm_shard s;
  SRLM_TRY(srlm_shard_read(st, group, &s));
  srlm_status rc = SRLM_OK;
  for (int64_t r = 0; r < s.n_responses && rc == SRLM_OK; r++) {
    json_t *o = json_object();
    json_object_set_new(o, "shard", json_integer(s.shard_index));
    json_object_set_new(o, "policy_version", json_integer(s.policy_version));
    json_object_set_new(o, "prompt_index", json_integer(s.prompt_index[s.response_prompt[r]]));
    json_object_set_new(o, "sample", json_integer(s.sample_index[r]));
    json_object_set_new(o, "flags", json_integer(s.flags[r]));
    json_object_set_new(o, "score", num(s.mean_score[r]));
    json_t *js = json_array(), *jt = json_array(), *ids = json_array();
    for (int64_t j = 0; j < s.judgments_per_response; j++) {
      int64_t k = r * s.judgments_per_response + j;
      json_array_append_new(js, num(s.judgment_score[k]));
      json_array_append_new(jt, json_string(s.judgment_text + s.judgment_text_offsets[k]));
    }
    for (int64_t t = s.response_offsets[r]; t < s.response_offsets[r + 1]; t++)
      json_array_append_new(ids, json_integer(s.response_ids[t]));
    json_object_set_new(o, "judgment_scores", js);
    json_object_set_new(o, "judgments", jt);
    json_object_set_new(o, "ids", ids);
    if (tok) {
      char *text = NULL;
      size_t len = 0;
      rc = srlm_tokenizer_decode(tok, s.response_ids + s.response_offsets[r],
                                 (size_t)(s.response_offsets[r + 1] - s.response_offsets[r]), &text, &len);
      if (rc == SRLM_OK) json_object_set_new(o, "text", json_stringn(text, len));
      free(text);
    }
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (line) puts(line);
    free(line);
  }
  srlm_shard_free(&s);
  return rc;
}

static srlm_status dump(const char *path, const char *tok_dir) {
  srlm_tokenizer *tok = NULL;
  if (tok_dir) SRLM_TRY(srlm_tokenizer_load(tok_dir, &tok));
  srlm_store *st;
  srlm_status rc = srlm_store_open(path, SRLM_SHARD_STORE_FORMAT, SRLM_SHARD_STORE_VERSION, &st);
  if (rc != SRLM_OK) {
    srlm_tokenizer_free(tok);
    return rc;
  }
  int64_t n = 0;
  char **names = NULL;
  rc = srlm_store_list(st, "/", &n, &names);
  if (rc == SRLM_OK) qsort(names, (size_t)n, sizeof *names, cmp_names);
  for (int64_t i = 0; i < n && rc == SRLM_OK; i++)
    if (!strncmp(names[i], "shard_", 6)) rc = dump_shard(st, names[i], tok);
  static const char *const k_counts[] = {"iteration", "shards", "stale_shards_dropped", "pairs", "groups", "prompts",
                                         "skipped_prompts", "dropped_tie", "dropped_margin", "dropped_equal_text",
                                         "replay_examples"};
  json_t *o = json_object();
  for (size_t k = 0; k < sizeof k_counts / sizeof *k_counts && rc == SRLM_OK; k++) {
    int64_t v;
    rc = srlm_store_get_attr_i64(st, "/pairs", k_counts[k], &v);
    if (rc == SRLM_OK) json_object_set_new(o, k_counts[k], json_integer(v));
  }
  if (rc == SRLM_OK) {
    json_t *w = json_object();
    json_object_set_new(w, "pairs", o);
    char *line = json_dumps(w, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(w);
    if (line) puts(line);
    free(line);
  } else {
    json_decref(o);
  }
  srlm_store_strings_free(names, n);
  srlm_store_close(st);
  srlm_tokenizer_free(tok);
  return rc;
}

int srlm_cmd_rollouts(int argc, char **argv) {
  const char *path = NULL, *tok = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(k_help, stdout);
      return 0;
    } else if (!strcmp(argv[i], "--tokenizer")) {
      if (i + 1 >= argc) return srlm_cli_usage_error("rollouts", "--tokenizer needs a folder");
      tok = argv[++i];
    } else if (argv[i][0] == '-' || path) {
      return srlm_cli_usage_error("rollouts", "unexpected argument '%s'", argv[i]);
    } else {
      path = argv[i];
    }
  }
  if (!path) return srlm_cli_usage_error("rollouts", "a rollouts.h5 file is required");
  srlm_status st = dump(path, tok);
  return st == SRLM_OK ? 0 : srlm_cli_fail("rollouts", st);
}
