/* Prompt sets (prompts.h) with the printable-ASCII ChatML tokenizer of
 * tests/fixtures/sft/chatml_tokenizer (one id per character, <|im_start|> = 1,
 * <|im_end|> = 2, '\n' = 3, ' ' = 4, 'A' = 37, 'a' = 69): both line shapes rendered with
 * the chat format and as raw text (exact text, ids, instruction, line), every kind of
 * bad line with its exact "FILE:LINE: what" message, skip mode and its counts (and the
 * first skipped message), too-long prompts, empty results, and the HDF5 store round trip
 * (plus a store that lacks a dataset or disagrees on n). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/prompts.h"
#include "srlm/store.h"
#include "test.h"

static const char *fixture_tok(void) {
  static char buf[1024];
  const char *src = getenv("SRLM_SOURCE_DIR");
  snprintf(buf, sizeof buf, "%s/tests/fixtures/sft/chatml_tokenizer", src ? src : ".");
  return buf;
}

static const char *write_tmp(const char *name, const char *text) {
  static char path[4][1024];
  static int k;
  char *p = path[k++ % 4];
  test_tmp_path(p, 1024, name);
  FILE *f = fopen(p, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
  return p;
}

/* ids of a printable-ASCII string under the fixture tokenizer */
static int32_t char_id(char c) {
  if (c == '\n') return 3;
  if (c == ' ') return 4;
  return (int32_t)(c - '!') + 5;
}

static void expect_ids_of(const srlm_prompt_set *p, int64_t i, const int32_t *want, int64_t n) {
  int64_t got = p->offsets[i + 1] - p->offsets[i];
  EXPECT(got == n, "prompt %lld: %lld ids, expected %lld", (long long)i, (long long)got, (long long)n);
  if (got != n) return;
  for (int64_t t = 0; t < n; t++)
    if (p->ids[p->offsets[i] + t] != want[t]) {
      EXPECT(0, "prompt %lld id %lld = %d, expected %d", (long long)i, (long long)t, p->ids[p->offsets[i] + t],
             want[t]);
      return;
    }
}

/* ids of "<|im_start|>user\nX<|im_end|>\n<|im_start|>assistant\n" pieces */
static int64_t chat_ids(const char *const *turns, const char *const *roles, int n, int32_t *out) {
  int64_t k = 0;
  for (int t = 0; t <= n; t++) {
    out[k++] = 1;
    const char *role = t < n ? roles[t] : "assistant";
    for (const char *c = role; *c; c++) out[k++] = char_id(*c);
    out[k++] = 3;
    if (t == n) break;
    for (const char *c = turns[t]; *c; c++) out[k++] = char_id(*c);
    out[k++] = 2;
    out[k++] = 3;
  }
  return k;
}

static const char k_good[] =
    "{\"prompt\": \"Hi there\"}\n"
    "\n"
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"1+1?\"},"
    " {\"role\": \"assistant\", \"content\": \"2.\"}, {\"role\": \"user\", \"content\": \"And 2+2?\"}], \"id\": 7}\n"
    "{\"prompt\": \"Last\", \"extra\": [1]}\r\n";

static void test_chat(srlm_tokenizer *tok, const srlm_chat_format *chat) {
  const char *path = write_tmp("good.jsonl", k_good);
  srlm_prompt_set p;
  srlm_prompts_stats s;
  srlm_status st = srlm_prompts_load(path, tok, chat, 0, 0, &p, &s);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  EXPECT_EQ_INT(p.n, 3);
  EXPECT_EQ_INT(s.lines, 3);
  EXPECT_EQ_INT(s.bad, 0);
  EXPECT_EQ_INT(s.too_long, 0);
  EXPECT_STR_EQ(s.first_bad, "");
  EXPECT_EQ_INT(p.line[0], 1);
  EXPECT_EQ_INT(p.line[1], 3);
  EXPECT_EQ_INT(p.line[2], 4);
  EXPECT_STR_EQ(p.text[0], "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_STR_EQ(p.text[1],
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n"
                "<|im_start|>assistant\n2.<|im_end|>\n<|im_start|>user\nAnd 2+2?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_STR_EQ(p.instruction[0], "Hi there");
  EXPECT_STR_EQ(p.instruction[1], "And 2+2?");
  EXPECT_STR_EQ(p.instruction[2], "Last");
  int32_t want[256];
  const char *t0[] = {"Hi there"}, *r0[] = {"user"};
  int64_t n0 = chat_ids(t0, r0, 1, want);
  expect_ids_of(&p, 0, want, n0);
  const char *t1[] = {"Be brief.", "1+1?", "2.", "And 2+2?"}, *r1[] = {"system", "user", "assistant", "user"};
  int64_t n1 = chat_ids(t1, r1, 4, want);
  expect_ids_of(&p, 1, want, n1);
  EXPECT_EQ_INT(s.tokens, p.offsets[3]);
  EXPECT_EQ_INT(s.max_len, n1);
  srlm_prompt_set_free(&p);
  EXPECT_EQ_INT(p.n, 0);

  /* too long: a chat prompt of L characters renders to 19 + L ids ("Last": 23) */
  int64_t n_last = 23;
  st = srlm_prompts_load(path, tok, chat, 0, (int)n_last, &p, &s);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    EXPECT_EQ_INT(p.n, 1);
    EXPECT_EQ_INT(s.too_long, 2);
    EXPECT_EQ_INT(p.line[0], 4);
    EXPECT_EQ_INT(p.offsets[1], n_last);
    EXPECT_EQ_INT(s.max_len, n_last);
    srlm_prompt_set_free(&p);
  }
  st = srlm_prompts_load(path, tok, chat, 0, (int)n_last - 1, &p, &s);
  EXPECT(st == SRLM_ERR_FORMAT, "every prompt too long accepted");
  char want_msg[2048];
  snprintf(want_msg, sizeof want_msg, "%s: no usable prompts (3 lines: 0 malformed, 3 longer than 22 tokens)", path);
  EXPECT_STR_EQ(srlm_error_message(), want_msg);
  EXPECT_EQ_INT(p.n, 0);
  EXPECT(p.ids == NULL && p.text == NULL, "a failed load left memory in the set");
}

static void test_raw(srlm_tokenizer *tok) {
  const char *path = write_tmp("raw.jsonl", "{\"prompt\": \"Hi there\"}\n\n\n{\"prompt\": \"A a\"}\n");
  srlm_prompt_set p;
  srlm_status st = srlm_prompts_load(path, tok, NULL, 0, 0, &p, NULL);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  EXPECT_EQ_INT(p.n, 2);
  EXPECT_STR_EQ(p.text[0], "Hi there");
  EXPECT_STR_EQ(p.instruction[1], "A a");
  EXPECT_EQ_INT(p.line[1], 4);
  const int32_t want[] = {37, 4, 69};
  expect_ids_of(&p, 1, want, 3);
  EXPECT_EQ_INT(p.offsets[1], 8);
  srlm_prompt_set_free(&p);
  /* the chat-only shape without a chat format */
  path = write_tmp("raw_messages.jsonl", k_good);
  st = srlm_prompts_load(path, tok, NULL, 0, 0, &p, NULL);
  EXPECT(st == SRLM_ERR_FORMAT, "messages without a chat format accepted");
  char want_msg[2048];
  snprintf(want_msg, sizeof want_msg,
           "%s:3: \"messages\" needs a chat format (tokenizer.chat_format is none); use {\"prompt\": ...}", path);
  EXPECT_STR_EQ(srlm_error_message(), want_msg);
}

typedef struct bad_case {
  const char *line;
  int raw;            /* load without the chat format */
  srlm_status code;
  const char *what;   /* the message after "FILE:2" */
} bad_case;

static const bad_case k_bad[] = {
    {"[1, 2]", 0, SRLM_ERR_FORMAT, ": expected an object with \"prompt\" or \"messages\", got an array"},
    {"\"text\"", 0, SRLM_ERR_FORMAT, ": expected an object with \"prompt\" or \"messages\", got a string"},
    {"{\"text\": \"x\"}", 0, SRLM_ERR_FORMAT,
     ": expected an object with \"prompt\" or \"messages\", got an object with neither"},
    {"{\"prompt\": 5}", 0, SRLM_ERR_FORMAT, ": \"prompt\": expected a string, got an integer"},
    {"{\"prompt\": null}", 0, SRLM_ERR_FORMAT, ": \"prompt\": expected a string, got null"},
    {"{\"prompt\": \"a\", \"messages\": []}", 0, SRLM_ERR_FORMAT, ": has both \"prompt\" and \"messages\"; give one"},
    {"{\"messages\": \"x\"}", 0, SRLM_ERR_FORMAT, ": messages: expected an array"},
    {"{\"messages\": []}", 0, SRLM_ERR_FORMAT, ": messages: empty"},
    {"{\"messages\": [5]}", 0, SRLM_ERR_FORMAT, ": messages[0]: expected an object"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", 0, SRLM_ERR_FORMAT,
     ": messages[0].content: expected a string"},
    {"{\"messages\": [{\"role\": \"\", \"content\": \"x\"}]}", 0, SRLM_ERR_FORMAT,
     ": messages[0].role: expected a non-empty string"},
    {"{\"messages\": [{\"role\": \"system\", \"content\": \"x\"}]}", 0, SRLM_ERR_FORMAT,
     ": \"messages\" has no \"user\" message"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"tool_calls\": []}]}", 0, SRLM_ERR_UNSUPPORTED,
     ": messages[0].tool_calls: tool calls are not supported"},
    {"{\"prompt\": \"\"}", 1, SRLM_ERR_FORMAT, ": the prompt is empty (no tokens)"},
    {"{\"prompt\": \"a\", \"reference\": 5}", 0, SRLM_ERR_FORMAT,
     ": \"reference\": expected a string or a non-empty list of strings, got an integer"},
    {"{\"prompt\": \"a\", \"reference\": []}", 0, SRLM_ERR_FORMAT,
     ": \"reference\": expected a string or a non-empty list of strings, got an empty list"},
    {"{\"prompt\": \"a\", \"reference\": [\"x\", null]}", 0, SRLM_ERR_FORMAT,
     ": \"reference\"[1]: expected a string, got null"},
    {"{\"prompt\": \"a\", \"reference\": {\"x\": 1}}", 1, SRLM_ERR_FORMAT,
     ": \"reference\": expected a string or a non-empty list of strings, got an object"},
};

static void test_bad_lines(srlm_tokenizer *tok, const srlm_chat_format *chat) {
  char text[512], want[2048];
  srlm_prompt_set p;
  for (size_t k = 0; k < sizeof k_bad / sizeof *k_bad; k++) {
    snprintf(text, sizeof text, "{\"prompt\": \"ok\"}\n%s\n{\"prompt\": \"ok too\"}\n", k_bad[k].line);
    const char *path = write_tmp("bad_one.jsonl", text);
    const srlm_chat_format *fmt = k_bad[k].raw ? NULL : chat;
    srlm_status st = srlm_prompts_load(path, tok, fmt, 0, 0, &p, NULL);
    EXPECT(st == k_bad[k].code, "line %s: status %d, expected %d", k_bad[k].line, (int)st, (int)k_bad[k].code);
    snprintf(want, sizeof want, "%s:2%s", path, k_bad[k].what);
    EXPECT_STR_EQ(srlm_error_message(), want);
    EXPECT_EQ_INT(p.n, 0);
    srlm_prompts_stats s;
    st = srlm_prompts_load(path, tok, fmt, 1, 0, &p, &s);
    EXPECT(st == SRLM_OK, "skip mode, line %s: %s", k_bad[k].line, srlm_error_message());
    if (st != SRLM_OK) continue;
    EXPECT_EQ_INT(p.n, 2);
    EXPECT_EQ_INT(s.lines, 3);
    EXPECT_EQ_INT(s.bad, 1);
    EXPECT_STR_EQ(s.first_bad, want);
    EXPECT_EQ_INT(p.line[1], 3);
    EXPECT_STR_EQ(p.instruction[1], "ok too");
    /* the skipped line left no ids behind: prompt 1 starts where prompt 0 ends */
    EXPECT_EQ_INT(p.offsets[2] - p.offsets[1], (fmt ? 19 : 0) + 6);
    srlm_prompt_set_free(&p);
  }
  /* invalid JSON (jansson's wording after the column) and text the tokenizer rejects */
  const char *path = write_tmp("bad_json.jsonl", "{\"prompt\": \"ok\"}\n{\"prompt\": \"x\"\n");
  srlm_status st = srlm_prompts_load(path, tok, chat, 0, 0, &p, NULL);
  EXPECT(st == SRLM_ERR_FORMAT, "invalid JSON accepted");
  snprintf(want, sizeof want, "%s:2:", path);
  EXPECT(strncmp(srlm_error_message(), want, strlen(want)) == 0, "\"%s\" does not start with \"%s\"",
         srlm_error_message(), want);
  EXPECT_CONTAINS(srlm_error_message(), ": invalid JSON: ");
  path = write_tmp("bad_text.jsonl", "{\"prompt\": \"ok\"}\n{\"prompt\": \"caf\\u00e9\"}\n");
  st = srlm_prompts_load(path, tok, chat, 0, 0, &p, NULL);
  EXPECT(st != SRLM_OK, "text outside the tokenizer's alphabet accepted");
  snprintf(want, sizeof want, "%s:2: ", path);
  EXPECT(strncmp(srlm_error_message(), want, strlen(want)) == 0, "\"%s\" does not start with \"%s\"",
         srlm_error_message(), want);

  /* skip mode over a mix: counts, first message, and what is kept */
  path = write_tmp("mixed.jsonl",
                   "{\"prompt\": \"a\"}\n"
                   "{\"prompt\": 1}\n"
                   "oops\n"
                   "\n"
                   "{\"prompt\": \"caf\\u00e9\"}\n"
                   "{\"prompt\": \"a much longer prompt than the rest\"}\n"
                   "{\"messages\": [{\"role\": \"user\", \"content\": \"b\"}]}\n");
  srlm_prompts_stats s;
  st = srlm_prompts_load(path, tok, chat, 1, 30, &p, &s);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    EXPECT_EQ_INT(p.n, 2);
    EXPECT_EQ_INT(s.lines, 6);
    EXPECT_EQ_INT(s.bad, 3);
    EXPECT_EQ_INT(s.too_long, 1);
    EXPECT_EQ_INT(p.line[0], 1);
    EXPECT_EQ_INT(p.line[1], 7);
    EXPECT_EQ_INT(s.tokens, 20 + 20);
    snprintf(want, sizeof want, "%s:2: \"prompt\": expected a string, got an integer", path);
    EXPECT_STR_EQ(s.first_bad, want);
    srlm_prompt_set_free(&p);
  }
  /* only bad lines in skip mode, and an empty file */
  path = write_tmp("all_bad.jsonl", "oops\n[]\n");
  st = srlm_prompts_load(path, tok, chat, 1, 0, &p, &s);
  EXPECT(st == SRLM_ERR_FORMAT, "a file of bad lines accepted");
  snprintf(want, sizeof want, "%s: no usable prompts (2 lines: 2 malformed, 0 longer than 0 tokens)", path);
  EXPECT_STR_EQ(srlm_error_message(), want);
  path = write_tmp("empty.jsonl", "\n  \n");
  st = srlm_prompts_load(path, tok, chat, 0, 10, &p, &s);
  EXPECT(st == SRLM_ERR_FORMAT, "an empty file accepted");
  snprintf(want, sizeof want, "%s: no usable prompts (0 lines: 0 malformed, 0 longer than 10 tokens)", path);
  EXPECT_STR_EQ(srlm_error_message(), want);
  st = srlm_prompts_load("/nonexistent/p.jsonl", tok, chat, 1, 0, &p, &s);
  EXPECT(st == SRLM_ERR_IO, "a missing file: status %d", (int)st);
  EXPECT_CONTAINS(srlm_error_message(), "/nonexistent/p.jsonl");
}

/* "reference": a string or a list, per prompt; a prompt without one has none; the store
 * keeps them; a set without any has none at all (NULL arrays, no datasets). */
static void test_references(srlm_tokenizer *tok) {
  const char *path = write_tmp("refs.jsonl", "{\"prompt\": \"a\", \"reference\": \"x y\"}\n"
                                             "{\"prompt\": \"b\"}\n"
                                             "{\"prompt\": \"a much longer prompt\", \"reference\": [\"dropped\"]}\n"
                                             "{\"prompt\": \"c\", \"reference\": [\"1\", \"2 3\"]}\n");
  srlm_prompt_set p, q;
  srlm_prompts_stats st_;
  srlm_status st = srlm_prompts_load(path, tok, NULL, 0, 5, &p, &st_);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  EXPECT_EQ_INT(p.n, 3);
  EXPECT_EQ_INT(st_.too_long, 1);
  EXPECT(p.ref_offsets != NULL && p.refs != NULL, "no references kept");
  if (!p.ref_offsets) return;
  const int64_t want_off[] = {0, 1, 1, 3};
  for (int i = 0; i <= 3; i++) EXPECT_EQ_INT(p.ref_offsets[i], want_off[i]);
  EXPECT_STR_EQ(p.refs[0], "x y");
  EXPECT_STR_EQ(p.refs[1], "1");
  EXPECT_STR_EQ(p.refs[2], "2 3");
  char h5[1024];
  test_tmp_path(h5, sizeof h5, "refs.h5");
  st = srlm_prompts_save(&p, h5);
  if (st == SRLM_OK) st = srlm_prompts_read(h5, &q);
  EXPECT(st == SRLM_OK, "store round trip: %s", srlm_error_message());
  if (st == SRLM_OK) {
    EXPECT(q.ref_offsets && q.refs, "references lost in the store");
    for (int i = 0; q.ref_offsets && i <= 3; i++) EXPECT_EQ_INT(q.ref_offsets[i], want_off[i]);
    for (int i = 0; q.refs && i < 3; i++) EXPECT_STR_EQ(q.refs[i], p.refs[i]);
    srlm_prompt_set_free(&q);
  }
  srlm_prompt_set_free(&p);
  path = write_tmp("norefs.jsonl", "{\"prompt\": \"a\"}\n");
  st = srlm_prompts_load(path, tok, NULL, 0, 0, &p, NULL);
  EXPECT(st == SRLM_OK && !p.ref_offsets && !p.refs, "a set without references has reference arrays");
  test_tmp_path(h5, sizeof h5, "norefs.h5");
  if (st == SRLM_OK) st = srlm_prompts_save(&p, h5);
  if (st == SRLM_OK) st = srlm_prompts_read(h5, &q);
  EXPECT(st == SRLM_OK && !q.ref_offsets, "store without references: %s", srlm_error_message());
  if (st == SRLM_OK) srlm_prompt_set_free(&q);
  srlm_prompt_set_free(&p);
}

static void test_store(srlm_tokenizer *tok, const srlm_chat_format *chat) {
  const char *src = write_tmp("store.jsonl", k_good);
  srlm_prompt_set p, q;
  srlm_status st = srlm_prompts_load(src, tok, chat, 0, 0, &p, NULL);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) return;
  char path[1024];
  test_tmp_path(path, sizeof path, "prompts.h5");
  st = srlm_prompts_save(&p, path);
  EXPECT(st == SRLM_OK, "save: %s", srlm_error_message());
  st = srlm_prompts_read(path, &q);
  EXPECT(st == SRLM_OK, "read: %s", srlm_error_message());
  if (st == SRLM_OK) {
    EXPECT_EQ_INT(q.n, p.n);
    for (int64_t i = 0; i < p.n && q.n == p.n; i++) {
      EXPECT_STR_EQ(q.text[i], p.text[i]);
      EXPECT_STR_EQ(q.instruction[i], p.instruction[i]);
      EXPECT_EQ_INT(q.line[i], p.line[i]);
      EXPECT_EQ_INT(q.offsets[i + 1], p.offsets[i + 1]);
    }
    EXPECT(q.n == p.n && memcmp(q.ids, p.ids, (size_t)p.offsets[p.n] * sizeof *p.ids) == 0, "ids differ after the round trip");
    srlm_prompt_set_free(&q);
  }
  /* the datasets as other readers see them */
  srlm_store *s;
  st = srlm_store_open(path, SRLM_PROMPTS_FORMAT, SRLM_PROMPTS_VERSION, &s);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st == SRLM_OK) {
    EXPECT(srlm_store_has(s, "/prompts/ids/offsets") && srlm_store_has(s, "/prompts/text") &&
               srlm_store_has(s, "/prompts/instruction") && srlm_store_has(s, "/prompts/line"),
           "a dataset is missing");
    srlm_store_close(s);
  }
  /* a store with disagreeing counts and one without instructions */
  st = srlm_store_create(path, SRLM_PROMPTS_FORMAT, SRLM_PROMPTS_VERSION, &s);
  const char *one[] = {"x"};
  const int64_t off[] = {0, 1};
  const int32_t ids[] = {5};
  const int64_t line[] = {1, 2};
  if (st == SRLM_OK) st = srlm_store_write_seqs(s, "/prompts/ids", 1, off, ids);
  if (st == SRLM_OK) st = srlm_store_write_strings(s, "/prompts/text", 1, one);
  if (st == SRLM_OK) st = srlm_store_write_strings(s, "/prompts/instruction", 1, one);
  if (st == SRLM_OK) st = srlm_store_write_array(s, "/prompts/line", SRLM_STORE_I64, 1, (const int64_t[]){2}, line);
  if (st == SRLM_OK) st = srlm_store_commit(s);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  st = srlm_prompts_read(path, &q);
  EXPECT(st == SRLM_ERR_FORMAT, "disagreeing counts accepted");
  EXPECT_CONTAINS(srlm_error_message(), "1 sequences in ids but 1 texts, 1 instructions and 2 lines");
  st = srlm_store_create(path, SRLM_PROMPTS_FORMAT, SRLM_PROMPTS_VERSION, &s);
  if (st == SRLM_OK) st = srlm_store_write_seqs(s, "/prompts/ids", 1, off, ids);
  if (st == SRLM_OK) st = srlm_store_write_strings(s, "/prompts/text", 1, one);
  if (st == SRLM_OK) st = srlm_store_commit(s);
  st = srlm_prompts_read(path, &q);
  EXPECT(st != SRLM_OK, "a store without /prompts/instruction accepted");
  EXPECT_CONTAINS(srlm_error_message(), "instruction");
  EXPECT_EQ_INT(q.n, 0);
  /* a save into a folder that does not exist fails and leaves nothing */
  st = srlm_prompts_save(&p, "/nonexistent/dir/prompts.h5");
  EXPECT(st != SRLM_OK, "save into a missing folder succeeded");
  srlm_prompt_set_free(&p);
}

int main(void) {
  srlm_tokenizer *tok;
  srlm_status st = srlm_tokenizer_load(fixture_tok(), &tok);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  if (st != SRLM_OK) TEST_MAIN_END();
  srlm_chat_format chat;
  st = srlm_chat_format_from_name("chatml", &chat);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  test_chat(tok, &chat);
  test_raw(tok);
  test_bad_lines(tok, &chat);
  test_store(tok, &chat);
  test_references(tok);
  srlm_tokenizer_free(tok);
  TEST_MAIN_END();
}
