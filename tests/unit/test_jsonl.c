/* JSONL reader tests: values in order with their 1-based line numbers, blank lines
 * (spaces, tabs, CRLF) skipped but counted, the last line without a newline, errors
 * as "FILE:LINE:COL: invalid JSON", srlm_jsonl_error's "FILE:LINE: what", a missing
 * file, and an empty file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/core.h"
#include "srlm/jsonl.h"
#include "test.h"

static void write_file(const char *path, const char *text) {
  srlm_status st = srlm_write_file_atomic(path, text, strlen(text));
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
}

static void test_values_and_lines(void) {
  char path[1024];
  test_tmp_path(path, sizeof path, "ok.jsonl");
  write_file(path, "{\"text\": \"a\"}\n\n   \t\n\"plain\"\r\n[1,2]\n\r\n42");
  srlm_jsonl *r;
  EXPECT(srlm_jsonl_open(path, &r) == SRLM_OK, "%s", srlm_error_message());
  if (!r) return;
  EXPECT_EQ_INT(srlm_jsonl_line(r), 0);
  const long want_lines[] = {1, 4, 5, 7};
  json_t *v;
  int k = 0;
  srlm_status st;
  while ((st = srlm_jsonl_next(r, &v)) == SRLM_OK && v) {
    if (k < 4) EXPECT_EQ_INT(srlm_jsonl_line(r), want_lines[k]);
    if (k == 0) EXPECT_STR_EQ(json_string_value(json_object_get(v, "text")), "a");
    if (k == 1) EXPECT_STR_EQ(json_string_value(v), "plain");
    if (k == 2) EXPECT_EQ_INT(json_array_size(v), 2);
    if (k == 3) EXPECT_EQ_INT(json_integer_value(v), 42);
    k++;
    json_decref(v);
  }
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(k, 4);
  /* where and error after the last value name its line */
  char want[1100];
  snprintf(want, sizeof want, "%s:7", path);
  EXPECT_STR_EQ(srlm_jsonl_where(r), want);
  EXPECT(srlm_jsonl_error(r, SRLM_ERR_FORMAT, "no \"text\" field") == SRLM_ERR_FORMAT, "error code");
  snprintf(want, sizeof want, "%s:7: no \"text\" field", path);
  EXPECT_STR_EQ(srlm_error_message(), want);
  /* reading past the end stays at the end */
  EXPECT(srlm_jsonl_next(r, &v) == SRLM_OK && v == NULL, "value after the end");
  srlm_jsonl_close(r);
}

static void test_bad_json(void) {
  char path[1024];
  test_tmp_path(path, sizeof path, "bad.jsonl");
  write_file(path, "\"ok\"\n\n{\"text\": \"a\",}\n\"never read\"\n");
  srlm_jsonl *r;
  EXPECT(srlm_jsonl_open(path, &r) == SRLM_OK, "%s", srlm_error_message());
  if (!r) return;
  json_t *v;
  EXPECT(srlm_jsonl_next(r, &v) == SRLM_OK && v, "first line");
  json_decref(v);
  EXPECT(srlm_jsonl_next(r, &v) == SRLM_ERR_FORMAT, "bad line accepted");
  EXPECT(v == NULL, "value returned with an error");
  char want[1100];
  snprintf(want, sizeof want, "%s:3:", path);
  EXPECT_CONTAINS(srlm_error_message(), want);
  EXPECT_CONTAINS(srlm_error_message(), "invalid JSON");
  srlm_jsonl_close(r);

  /* two values on one line are an error too */
  write_file(path, "{} {}\n");
  EXPECT(srlm_jsonl_open(path, &r) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_jsonl_next(r, &v) == SRLM_ERR_FORMAT, "two values on a line accepted");
  snprintf(want, sizeof want, "%s:1:", path);
  EXPECT_CONTAINS(srlm_error_message(), want);
  srlm_jsonl_close(r);
}

static void test_missing_and_empty(void) {
  srlm_jsonl *r = NULL;
  EXPECT(srlm_jsonl_open("/nonexistent/x.jsonl", &r) == SRLM_ERR_IO, "missing file opened");
  EXPECT_CONTAINS(srlm_error_message(), "/nonexistent/x.jsonl: cannot open");
  char path[1024];
  test_tmp_path(path, sizeof path, "empty.jsonl");
  write_file(path, "\n\n");
  EXPECT(srlm_jsonl_open(path, &r) == SRLM_OK, "%s", srlm_error_message());
  json_t *v = (json_t *)1;
  EXPECT(srlm_jsonl_next(r, &v) == SRLM_OK && v == NULL, "value from a blank file");
  srlm_jsonl_close(r);
}

/* A line longer than any fixed buffer. */
static void test_long_line(void) {
  char path[1024];
  test_tmp_path(path, sizeof path, "long.jsonl");
  size_t n = 1 << 20;
  char *text = malloc(n + 8);
  text[0] = '"';
  memset(text + 1, 'x', n);
  memcpy(text + 1 + n, "\"\n", 3);
  write_file(path, text);
  free(text);
  srlm_jsonl *r;
  EXPECT(srlm_jsonl_open(path, &r) == SRLM_OK, "%s", srlm_error_message());
  json_t *v;
  EXPECT(srlm_jsonl_next(r, &v) == SRLM_OK && v, "%s", srlm_error_message());
  EXPECT_EQ_INT(json_string_length(v), n);
  json_decref(v);
  srlm_jsonl_close(r);
}

int main(void) {
  test_values_and_lines();
  test_bad_json();
  test_missing_and_empty();
  test_long_line();
  TEST_MAIN_END();
}
