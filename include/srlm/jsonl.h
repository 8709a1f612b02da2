/* srlm JSONL reader: one JSON value per line (jansson), read line by line.
 *
 * Lines are numbered from 1; blank lines (only whitespace) are skipped but counted;
 * a trailing "\r" is dropped. Errors read "FILE:LINE: what" ("-" reads stdin and
 * is named "<stdin>"). Each value is the caller's to json_decref.
 *
 *   srlm_jsonl *r;
 *   SRLM_TRY(srlm_jsonl_open(path, &r));
 *   json_t *v;
 *   while ((st = srlm_jsonl_next(r, &v)) == SRLM_OK && v) { ...; json_decref(v); }
 *   srlm_jsonl_close(r);
 */
#ifndef SRLM_JSONL_H
#define SRLM_JSONL_H

#include <jansson.h>
#include <stddef.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srlm_jsonl srlm_jsonl;

/* Opens path for reading ("-" is stdin). */
srlm_status srlm_jsonl_open(const char *path, srlm_jsonl **out);
/* The next non-blank line's value in *value, or *value = NULL at the end of the file.
 * Bad JSON is SRLM_ERR_FORMAT "FILE:LINE:COL: invalid JSON: ...". */
srlm_status srlm_jsonl_next(srlm_jsonl *r, json_t **value);
/* Line number of the value last returned (0 before the first). */
long srlm_jsonl_line(const srlm_jsonl *r);
/* "FILE:LINE" of the value last returned, for the caller's own error messages. */
const char *srlm_jsonl_where(const srlm_jsonl *r);
/* Records an error about the value last returned: "FILE:LINE: what"; returns code. */
srlm_status srlm_jsonl_error(const srlm_jsonl *r, srlm_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void srlm_jsonl_close(srlm_jsonl *r);

/* "an object", "an array", "a string", "an integer", "a real number", "a boolean" or
 * "null": the JSON type of v, for error messages ("expected X, got <type>"). */
const char *srlm_json_type_name(const json_t *v);

/* Writes o as indented JSON (keys in insertion order) to dir/name atomically, then
 * releases o (json_decref) either way. */
srlm_status srlm_json_save(json_t *o, const char *dir, const char *name);

#ifdef __cplusplus
}
#endif
#endif
