/* Logging to stderr with a "[srlm rank role]" prefix; fatal checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/core.h"

static int g_rank = -1;
static int g_device = -1;
static char g_role[32] = "";
static srlm_log_level g_level = SRLM_LOG_INFO;
static srlm_abort_hook g_abort_hook = NULL;

void srlm_log_set_context(int rank, const char *role) {
  g_rank = rank;
  snprintf(g_role, sizeof g_role, "%s", role ? role : "");
}
void srlm_log_set_level(srlm_log_level level) { g_level = level; }
int srlm_log_rank(void) { return g_rank; }
void srlm_log_set_device(int device) { g_device = device; }
int srlm_log_device(void) { return g_device; }

static void prefix(char *buf, size_t n) {
  if (g_rank >= 0 && g_role[0])
    snprintf(buf, n, "[srlm r%d %s] ", g_rank, g_role);
  else if (g_rank >= 0)
    snprintf(buf, n, "[srlm r%d] ", g_rank);
  else if (g_role[0])
    snprintf(buf, n, "[srlm %s] ", g_role);
  else
    snprintf(buf, n, "[srlm] ");
}

void srlm_log(srlm_log_level level, const char *fmt, ...) {
  static const char *const tags[] = {"debug: ", "", "warning: ", "error: "};
  if (level < g_level) return;
  char line[4096], pre[64];
  prefix(pre, sizeof pre);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  /* one fprintf per line so lines of concurrent ranks do not interleave mid-line */
  fprintf(stderr, "%s%s%s\n", pre, tags[level], line);
}

void srlm_set_abort_hook(srlm_abort_hook hook) { g_abort_hook = hook; }

SRLM_NORETURN void srlm_fatal(const char *file, int line, const char *fmt, ...) {
  char msg[2048], pre[64];
  prefix(pre, sizeof pre);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%sfatal: %s:%d: %s\n", pre, file, line, msg);
  fflush(stderr);
  if (g_abort_hook) g_abort_hook(70);
  abort();
}
