/* The backend options of the commands that load a model (generate, logprobs, task eval):
 * --backend NAME, --device N, --dtype fp32|bf16, parsed one way and opened one way. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

int srlm_cli_backend_option(const char *cmd, int argc, char **argv, int *i, srlm_cli_backend *b) {
  const char *a = argv[*i];
  if (strcmp(a, "--backend") && strcmp(a, "--device") && strcmp(a, "--dtype")) return 0;
  if (*i + 1 >= argc) return -srlm_cli_usage_error(cmd, "%s needs a value", a);
  const char *v = argv[++*i];
  if (!strcmp(a, "--backend")) {
    const srlm_backend_ops *ops;
    if (srlm_backend_find(v, &ops) != SRLM_OK) return -srlm_cli_usage_error(cmd, "--backend: %s", srlm_error_message());
    b->name = v;
  } else if (!strcmp(a, "--device")) {
    char *end = NULL;
    errno = 0;
    long d = strtol(v, &end, 10);
    if (errno || !v[0] || *end || d < 0 || d > 1023)
      return -srlm_cli_usage_error(cmd, "--device '%s': expected a GPU index in [0, 1023]", v);
    b->device = (int)d;
  } else if (srlm_dtype_parse(v, "--dtype", &b->dtype) != SRLM_OK) {
    return -srlm_cli_usage_error(cmd, "%s", srlm_error_message());
  }
  return 1;
}

srlm_status srlm_cli_backend_open(const srlm_cli_backend *b, srlm_backend **be) {
  return srlm_backend_open(b->name ? b->name : "cpu", b->device, be);
}
