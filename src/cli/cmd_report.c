/* srlm report RUN_DIR: writes RUN_DIR/report.html (src/roles/report.c), a self-contained
 * page with the run's charts, per-iteration table, config and sampled rollouts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "srlm/report.h"

static const char k_help[] =
    "usage: srlm report RUN_DIR\n"
    "\n"
    "Writes RUN_DIR/report.html: one self-contained file (HTML + CSS + inline SVG; no\n"
    "network, no scripts) with line charts per iteration (held-out accuracy, judge\n"
    "agreement, loss, mean judged score, throughput) and per learner step (loss, reward\n"
    "margin, reward accuracy, chosen/rejected lengths, throughput) from metrics.jsonl, the\n"
    "per-iteration table, the run's config.yaml, and a few prompts of the last\n"
    "iter_<t>/rollouts.h5 with their best and worst answers and judgments. `srlm train`\n"
    "writes it after every iteration. Prints the file's path on stdout.\n"
    "\n"
    "Exit status: 0 ok, 2 usage error, 1 other errors (a missing run folder or\n"
    "metrics.jsonl, a malformed metrics line: named with its file and line).\n";

int srlm_cmd_report(int argc, char **argv) {
  const char *dir = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(k_help, stdout);
      return 0;
    } else if (argv[i][0] == '-' || dir) {
      return srlm_cli_usage_error("report", "unexpected argument '%s'", argv[i]);
    } else {
      dir = argv[i];
    }
  }
  if (!dir) return srlm_cli_usage_error("report", "a run folder is required");
  char *path = NULL;
  srlm_status st = srlm_report_write(dir, &path);
  if (st != SRLM_OK) return srlm_cli_fail("report", st);
  puts(path);
  free(path);
  return 0;
}
