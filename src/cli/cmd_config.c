/* srlm config: print the fully resolved configuration (defaults, then the file, then
 * the key.path=value overrides in order) as YAML, or list every option (--help).
 * The output parses back to the same config, so it can be saved and reused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "srlm/config.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: srlm config [-c FILE] [--comments] [key.path=value ...]\n"
          "       srlm config --help\n"
          "\n"
          "Prints the resolved config as YAML: defaults, then FILE, then each override in\n"
          "order (a key given twice: the last one wins). Without -c: the defaults.\n"
          "  -c, --config FILE  the YAML config file\n"
          "  --comments         add each option's help, type and range as comments\n"
          "\n"
          "Values follow strict typing: ints are plain decimals; floats plain decimals or\n"
          "exponents (no .inf/.nan); bools only true/false (not yes/no/on/off); quoted\n"
          "numbers and bools are strings and are refused; strings take any scalar; an empty\n"
          "value is \"\" / [] / an empty section and an error for other types; null, ~,\n"
          "anchors, aliases, tags, duplicate keys and unknown keys are errors (exit 2).\n"
          "An override's value is YAML: quote values with ': ' or ' #' ('run.name=\"a: b\"');\n"
          "lists are written [a, \"b c\"].\n"
          "\n"
          "options:\n");
}

int srlm_cmd_config(int argc, char **argv) {
  const char *cmd = argv[0];
  const char *path = NULL;
  unsigned flags = 0;
  const char **overrides = srlm_xcalloc((size_t)argc, sizeof *overrides);
  int n_overrides = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      free(overrides);
      usage(stdout);
      char *help = srlm_config_help();
      fputs(help, stdout);
      free(help);
      return 0;
    } else if (!strcmp(a, "-c") || !strcmp(a, "--config") || !strncmp(a, "--config=", 9)) {
      const char *v = a[1] == 'c' ? (i + 1 < argc ? argv[++i] : NULL) : a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v || !v[0] || path) {
        free(overrides);
        return srlm_cli_usage_error(cmd, path ? "-c given twice" : "%s needs a file name", a);
      }
      path = v;
    } else if (!strcmp(a, "--comments")) {
      flags |= SRLM_CONFIG_PRINT_COMMENTS;
    } else if (a[0] == '-') {
      free(overrides);
      return srlm_cli_usage_error(cmd, "unknown option '%s'", a);
    } else {
      overrides[n_overrides++] = a;
    }
  }
  srlm_config cfg;
  srlm_status st = srlm_config_load(&cfg, path, n_overrides, overrides);
  free(overrides);
  if (st != SRLM_OK) {
    srlm_config_free(&cfg);
    return srlm_cli_fail(cmd, st);
  }
  char *text = srlm_config_to_yaml(&cfg, flags);
  srlm_config_free(&cfg);
  fputs(text, stdout);
  free(text);
  if (fflush(stdout) != 0 || ferror(stdout))
    return srlm_cli_fail(cmd, srlm_error(SRLM_ERR_IO, "stdout", "write failed"));
  return 0;
}
