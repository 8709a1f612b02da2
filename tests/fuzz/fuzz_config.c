/* libFuzzer target: bytes as a config file, and as one key=value override.
 * Beyond "no crash, no leak", every accepted input must satisfy the printer's
 * contract: print -> parse gives an equal config and the same text again, and each
 * printed value given back as key=value reproduces it. A broken contract aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/config.h"

static void check_round_trip(const srlm_config *cfg) {
  char *a = srlm_config_to_yaml(cfg, 0);
  srlm_config back;
  srlm_config_init(&back);
  const char *diff = NULL;
  if (srlm_config_parse(&back, "printed.yaml", a, strlen(a)) != SRLM_OK) {
    fprintf(stderr, "printed config does not parse: %s\n%s\n", srlm_error_message(), a);
    abort();
  }
  if (!srlm_config_equal(cfg, &back, &diff)) {
    fprintf(stderr, "printed config parses to a different %s\n%s\n", diff, a);
    abort();
  }
  char *b = srlm_config_to_yaml(&back, 0);
  if (strcmp(a, b)) {
    fprintf(stderr, "second print differs\n%s\n---\n%s\n", a, b);
    abort();
  }
  srlm_config_free(&back);
  free(b);
  free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  srlm_config cfg;
  srlm_config_init(&cfg);
  if (srlm_config_parse(&cfg, "fuzz.yaml", (const char *)data, size) == SRLM_OK) {
    check_round_trip(&cfg);
    (void)srlm_config_validate(&cfg);
  }
  srlm_config_free(&cfg);

  /* The same bytes as an override argument (a C string: up to the first NUL). */
  if (size < 4096) {
    char *arg = malloc(size + 1);
    memcpy(arg, data, size);
    arg[size] = '\0';
    srlm_config_init(&cfg);
    if (srlm_config_set(&cfg, arg) == SRLM_OK) {
      check_round_trip(&cfg);
      size_t n;
      const srlm_config_option *t = srlm_config_options(&n);
      const char *eq = strchr(arg, '=');
      const srlm_config_option *o = NULL;
      for (size_t i = 0; i < n && eq; i++)
        if (strlen(t[i].key) == (size_t)(eq - arg) && !strncmp(t[i].key, arg, (size_t)(eq - arg))) o = &t[i];
      if (o) {
        char *v = srlm_config_value_text(&cfg, o);
        size_t len = strlen(o->key) + strlen(v) + 2;
        char *again = malloc(len);
        snprintf(again, len, "%s=%s", o->key, v);
        srlm_config cfg2;
        srlm_config_init(&cfg2);
        const char *diff = NULL;
        if (srlm_config_set(&cfg2, again) != SRLM_OK || !srlm_config_equal(&cfg, &cfg2, &diff)) {
          fprintf(stderr, "override '%s' printed as '%s' does not reproduce it: %s\n", arg, again,
                  diff ? diff : srlm_error_message());
          abort();
        }
        srlm_config_free(&cfg2);
        free(again);
        free(v);
      }
    }
    srlm_config_free(&cfg);
    free(arg);
  }
  return 0;
}
