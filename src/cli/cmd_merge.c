/* srlm merge: WARP's merges of Hugging Face model directories (merge.h): linear, SLERP
 * of task vectors, LITI toward the initialization. The summary goes to stdout as one
 * JSON line; errors to stderr. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "srlm/merge.h"

static const char k_merge_help[] =
    "usage: srlm merge --out DIR [--rule linear|slerp|liti] [--init DIR] [--lambda L]\n"
    "                  [--eta E] [--weights W1,W2,...] [--overwrite] MODEL_DIR...\n"
    "\n"
    "Merges Hugging Face model directories of one architecture (same tensor names and\n"
    "shapes; a mismatch is an error naming the directory and tensor), WARP's way\n"
    "(Rame et al. 2024). With --init, d_i = theta_i - theta_init are the task vectors.\n"
    "\n"
    "  --rule linear   theta = sum w_i theta_i (default w_i = 1/k); with --init and --eta,\n"
    "                  theta = init + eta sum w_i d_i\n"
    "  --rule slerp    per tensor, spherical interpolation of two task vectors:\n"
    "                  init + sin((1-l)W)/sin W d_1 + sin(lW)/sin W d_2, W = angle(d_1, d_2);\n"
    "                  k > 2 inputs fold: s = d_1, then s = slerp(s, d_i, 1/i) for i = 2..k.\n"
    "                  A zero task vector or (anti)parallel ones (sin W < 1e-6) fall back to\n"
    "                  the linear (1-l) d_1 + l d_2 (counted in the summary). Needs --init.\n"
    "  --rule liti     the linear merge (one input: itself), then init + eta (merged - init):\n"
    "                  from the initialization toward the merge. Needs --init.\n"
    "  --init DIR      the model the inputs were fine-tuned from\n"
    "  --lambda L      slerp's interpolation of two inputs (default 0.5)\n"
    "  --eta E         move from the init toward the merge by E (default 0.3 for liti,\n"
    "                  1 = none for linear and slerp; WARP: slerp then eta 0.3)\n"
    "  --weights W,..  linear/liti weights, one per input (default 1/k each)\n"
    "  --out DIR       the merged model: config.json and tokenizer files copied from the\n"
    "                  first input, model.safetensors in the first input's dtypes. Written\n"
    "                  to DIR.tmp.<pid> and renamed into place: nothing half-written.\n"
    "  --overwrite     replace DIR when it exists (only a model directory or an empty one)\n"
    "  --help          this text\n"
    "\n"
    "Prints one JSON line: rule, inputs, tensors, slerps done / zero / parallel, mean angle\n"
    "(degrees). Memory: the output in its dtype plus k + 2 fp32 copies of one tensor.\n"
    "Exit status: 0 ok, 1 unreadable or mismatched inputs, 2 usage error.\n";

static int parse_double(const char *s, double *out) {
  char *end;
  *out = strtod(s, &end);
  return end != s && *end == '\0' && isfinite(*out);
}

int srlm_cmd_merge(int argc, char **argv) {
  srlm_merge_options o = {.rule = SRLM_MERGE_LINEAR, .weights = NULL, .lambda = 0.5, .eta = 1.0};
  const char *out = NULL, *init = NULL, *weights = NULL;
  int overwrite = 0, have_eta = 0, have_lambda = 0, k = 0;
  const char **dirs = calloc((size_t)argc, sizeof *dirs);
  double *w = NULL;
  int rc = -1;
  for (int i = 1; i < argc && rc < 0; i++) {
    const char *a = argv[i];
    int has_val = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(k_merge_help, stdout);
      rc = 0;
    } else if (!strcmp(a, "--overwrite")) {
      overwrite = 1;
    } else if (!strcmp(a, "--out") || !strcmp(a, "--init") || !strcmp(a, "--rule") || !strcmp(a, "--lambda") ||
               !strcmp(a, "--eta") || !strcmp(a, "--weights")) {
      if (!has_val) {
        rc = srlm_cli_usage_error("merge", "%s needs a value", a);
        break;
      }
      const char *v = argv[++i];
      if (!strcmp(a, "--out")) out = v;
      else if (!strcmp(a, "--init")) init = v;
      else if (!strcmp(a, "--weights")) weights = v;
      else if (!strcmp(a, "--rule")) {
        if (!srlm_merge_rule_parse(v, &o.rule)) rc = srlm_cli_usage_error("merge", "--rule '%s': expected linear, slerp or liti", v);
      } else if (!strcmp(a, "--lambda")) {
        have_lambda = 1;
        if (!parse_double(v, &o.lambda) || o.lambda < 0 || o.lambda > 1)
          rc = srlm_cli_usage_error("merge", "--lambda '%s': expected a number in [0, 1]", v);
      } else {
        have_eta = 1;
        if (!parse_double(v, &o.eta)) rc = srlm_cli_usage_error("merge", "--eta '%s': expected a number", v);
      }
    } else if (a[0] == '-' && a[1] == '-') {
      rc = srlm_cli_usage_error("merge", "unknown option '%s'", a);
    } else {
      dirs[k++] = a;
    }
  }
  if (rc < 0 && !out) rc = srlm_cli_usage_error("merge", "--out DIR is required");
  if (rc < 0 && k < 1) rc = srlm_cli_usage_error("merge", "no model directory to merge");
  if (rc < 0 && o.rule != SRLM_MERGE_LINEAR && !init)
    rc = srlm_cli_usage_error("merge", "--rule %s needs --init DIR (the model the inputs were fine-tuned from)",
                              srlm_merge_rule_name(o.rule));
  if (rc < 0 && have_eta && !init) rc = srlm_cli_usage_error("merge", "--eta needs --init DIR");
  if (rc < 0 && have_lambda && o.rule != SRLM_MERGE_SLERP) rc = srlm_cli_usage_error("merge", "--lambda applies to --rule slerp");
  if (rc < 0 && o.rule == SRLM_MERGE_SLERP && k < 2)
    rc = srlm_cli_usage_error("merge", "--rule slerp merges two or more directories, got %d", k);
  if (rc < 0 && o.rule == SRLM_MERGE_SLERP && k > 2 && have_lambda)
    rc = srlm_cli_usage_error("merge", "--lambda applies to two inputs; %d inputs fold with weights 1/i", k);
  if (rc < 0 && weights) {
    if (o.rule == SRLM_MERGE_SLERP) rc = srlm_cli_usage_error("merge", "--weights applies to linear and liti");
    w = calloc((size_t)k, sizeof *w);
    int n = 0;
    char *copy = strdup(weights), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && rc < 0; t = strtok_r(NULL, ",", &save)) {
      if (n >= k || !parse_double(t, &w[n])) rc = srlm_cli_usage_error("merge", "--weights '%s': expected %d numbers", weights, k);
      n++;
    }
    free(copy);
    if (rc < 0 && n != k) rc = srlm_cli_usage_error("merge", "--weights '%s': expected %d numbers, got %d", weights, k, n);
    o.weights = w;
  }
  if (rc < 0 && o.rule == SRLM_MERGE_LITI && !have_eta) o.eta = 0.3;
  if (rc < 0) {
    srlm_merge_stats s;
    memset(&s, 0, sizeof s);
    srlm_status st = srlm_merge_dirs(&o, k, dirs, init, out, overwrite, &s);
    if (st != SRLM_OK) {
      rc = srlm_cli_fail("merge", st);
    } else {
      json_t *j = json_pack("{s:s, s:i, s:b, s:f, s:f, s:I, s:I, s:I, s:I, s:f, s:s}", "rule",
                            srlm_merge_rule_name(o.rule), "inputs", k, "init", init != NULL, "lambda", o.lambda, "eta",
                            o.eta, "tensors", (json_int_t)s.tensors, "slerp_done", (json_int_t)s.slerp_done,
                            "slerp_zero", (json_int_t)s.slerp_zero, "slerp_parallel", (json_int_t)s.slerp_parallel,
                            "mean_angle_deg", s.slerp_done ? s.angle_sum / (double)s.slerp_done * 180.0 / M_PI : 0.0,
                            "out", out);
      char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
      if (text) puts(text);
      free(text);
      json_decref(j);
      fprintf(stderr, "srlm merge: %s of %d models: %lld tensors -> %s\n", srlm_merge_rule_name(o.rule), k,
              (long long)s.tensors, out);
      rc = 0;
    }
  }
  free(w);
  free(dirs);
  return rc;
}
