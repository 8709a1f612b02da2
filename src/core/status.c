/* Status codes and the thread-local last error ("where: what"). */
#include <stdio.h>
#include <string.h>

#include "srlm/core.h"

#define SRLM_ERRMSG_CAP 2048

static _Thread_local char g_msg[SRLM_ERRMSG_CAP];
static _Thread_local srlm_status g_code = SRLM_OK;

static const char *const k_names[SRLM_STATUS_COUNT] = {
    [SRLM_OK] = "ok",
    [SRLM_ERR_USAGE] = "usage error",
    [SRLM_ERR_CONFIG] = "config error",
    [SRLM_ERR_IO] = "I/O error",
    [SRLM_ERR_FORMAT] = "format error",
    [SRLM_ERR_UNSUPPORTED] = "unsupported",
    [SRLM_ERR_NOMEM] = "out of memory",
    [SRLM_ERR_RANGE] = "out of range",
    [SRLM_ERR_LIB] = "library call failed",
    [SRLM_ERR_INTERNAL] = "internal error",
    [SRLM_ERR_STOPPED] = "stopped",
};

/* out = "head: tail" (or tail alone when head is empty), cut to the slot size. */
static void join(char out[SRLM_ERRMSG_CAP], const char *head, const char *tail) {
  size_t n = 0, cap = SRLM_ERRMSG_CAP - 1;
  for (const char *parts[3] = {head, (head && head[0]) ? ": " : "", tail}, **p = parts; p < parts + 3; p++)
    for (const char *c = *p; c && *c && n < cap; c++) out[n++] = *c;
  out[n] = '\0';
}

const char *srlm_status_name(srlm_status code) {
  if ((int)code < 0 || code >= SRLM_STATUS_COUNT) return "unknown status";
  return k_names[code];
}

int srlm_status_exit_code(srlm_status code) {
  switch (code) {
    case SRLM_OK: return 0;
    case SRLM_ERR_USAGE:
    case SRLM_ERR_CONFIG: return 2;
    case SRLM_ERR_STOPPED: return 75; /* EX_TEMPFAIL: checkpointed, run again with --resume */
    default: return 1;
  }
}

srlm_status srlm_verror(srlm_status code, const char *where, const char *fmt, va_list ap) {
  char what[SRLM_ERRMSG_CAP];
  vsnprintf(what, sizeof what, fmt, ap);
  join(g_msg, where, what);
  g_code = code;
  return code;
}

srlm_status srlm_error(srlm_status code, const char *where, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  srlm_verror(code, where, fmt, ap);
  va_end(ap);
  return code;
}

srlm_status srlm_error_context(srlm_status code, const char *fmt, ...) {
  char ctx[SRLM_ERRMSG_CAP], old[SRLM_ERRMSG_CAP];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx, sizeof ctx, fmt, ap);
  va_end(ap);
  memcpy(old, g_msg, sizeof old);
  join(g_msg, ctx, old);
  g_code = code;
  return code;
}

const char *srlm_error_message(void) { return g_msg; }
srlm_status srlm_error_code(void) { return g_code; }
void srlm_error_clear(void) {
  g_msg[0] = '\0';
  g_code = SRLM_OK;
}

srlm_status srlm_lib_error(const char *lib, const char *stmt, long long rc, const char *desc,
                           const char *file, int line) {
  char where[512];
  int rank = srlm_log_rank(), dev = srlm_log_device();
  char rankbuf[32] = "", devbuf[32] = "";
  if (rank >= 0) snprintf(rankbuf, sizeof rankbuf, " rank %d", rank);
  if (dev >= 0) snprintf(devbuf, sizeof devbuf, " device %d", dev);
  snprintf(where, sizeof where, "%s:%d%s%s", file, line, rankbuf, devbuf);
  return srlm_error(SRLM_ERR_LIB, where, "%s call '%s' failed with %lld (%s)", lib, stmt, rc,
                    desc ? desc : "no description");
}
