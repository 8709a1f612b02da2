/* Chat format tests: every case of both chat_template_golden.json files rendered
 * exactly (format detected from tokenizer_config.json), content/target spans, the
 * assistant mask of srlm_chat_encode, Qwen3 think-block rules beyond the golden
 * (hand-derived from the template), and errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/chat.h"
#include "srlm/core.h"
#include "srlm/tokenizer.h"
#include "test.h"

static char *fixture_dir(const char *name) {
  static char dir[1024];
  char rel[256];
  snprintf(rel, sizeof rel, "fixtures/tokenizers/%s", name);
  return (char *)test_shared_path(dir, sizeof dir, rel);
}

/* Prints where two strings first differ. */
static void show_diff(const char *got, size_t gl, const char *want, size_t wl) {
  size_t i = 0;
  while (i < gl && i < wl && got[i] == want[i]) i++;
  fprintf(stderr, "  first difference at byte %zu\n  got:  \"%.*s\"\n  want: \"%.*s\"\n", i, (int)(gl - i > 60 ? 60 : gl - i),
          got + i, (int)(wl - i > 60 ? 60 : wl - i), want + i);
}

static void test_golden(const char *name, srlm_chat_kind want_kind) {
  srlm_chat_format fmt;
  srlm_status st = srlm_chat_format_detect(fixture_dir(name), &fmt);
  EXPECT(st == SRLM_OK, "%s detect: %s", name, srlm_error_message());
  if (st != SRLM_OK) return;
  EXPECT_EQ_INT(fmt.kind, want_kind);
  char path[1024];
  snprintf(path, sizeof path, "%s/chat_template_golden.json", fixture_dir(name));
  json_error_t jerr;
  json_t *cases = json_load_file(path, 0, &jerr);
  EXPECT(json_is_array(cases), "%s: %s", path, jerr.text);
  if (!cases) return;
  srlm_tokenizer *tok = NULL;
  st = srlm_tokenizer_load(fixture_dir(name), &tok);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  size_t ncase = json_array_size(cases);
  EXPECT(ncase >= 5, "%s: %zu golden cases", name, ncase);
  for (size_t c = 0; c < ncase; c++) {
    const json_t *cs = json_array_get(cases, c);
    char where[64];
    snprintf(where, sizeof where, "%s case %zu", name, c);
    srlm_chat_message *msgs;
    size_t n;
    st = srlm_chat_messages_from_json(json_object_get(cs, "messages"), where, &msgs, &n);
    EXPECT(st == SRLM_OK, "%s", srlm_error_message());
    if (st != SRLM_OK) continue;
    int gen = json_is_true(json_object_get(cs, "add_generation_prompt"));
    const char *want = json_string_value(json_object_get(cs, "rendered"));
    size_t wl = json_string_length(json_object_get(cs, "rendered"));
    char *text;
    size_t len;
    srlm_chat_span spans[16];
    st = srlm_chat_render(&fmt, msgs, n, gen, &text, &len, spans);
    EXPECT(st == SRLM_OK, "%s: %s", where, srlm_error_message());
    if (st != SRLM_OK) continue;
    int same = len == wl && memcmp(text, want, wl) == 0;
    EXPECT(same, "%s (generation prompt %d): rendered text differs from the golden", where, gen);
    if (!same) show_diff(text, len, want, wl);
    /* spans: in order, inside the text, content spans hold the (stripped) content */
    for (size_t i = 0; i < n; i++) {
      const srlm_chat_span *s = &spans[i];
      EXPECT(s->start <= s->content_start && s->content_start <= s->content_end && s->content_end <= s->end &&
                 s->end <= len,
             "%s message %zu: span [%zu %zu %zu %zu] out of order", where, i, s->start, s->content_start,
             s->content_end, s->end);
      EXPECT(i == 0 || spans[i - 1].end <= s->start, "%s message %zu: spans overlap", where, i);
      const char *cont = msgs[i].content;
      size_t cl = s->content_end - s->content_start;
      EXPECT(cl <= msgs[i].content_len && memmem(cont, msgs[i].content_len, text + s->content_start, cl) != NULL,
             "%s message %zu: content span is not part of the content", where, i);
      int is_asst = !strcmp(msgs[i].role, "assistant");
      EXPECT(is_asst == (s->target_end > s->target_start), "%s message %zu: target span only for assistant", where, i);
      if (is_asst) {
        const char *eot = fmt.kind == SRLM_CHAT_LLAMA3 ? "<|eot_id|>" : "<|im_end|>";
        size_t el = strlen(eot);
        EXPECT(s->target_end >= el && memcmp(text + s->target_end - el, eot, el) == 0,
               "%s message %zu: target does not end with %s", where, i, eot);
      }
    }
    /* ids: rendering then encoding equals encoding the golden text; mask marks assistant targets */
    srlm_chat_tokens ct;
    st = srlm_chat_encode(tok, &fmt, msgs, n, gen, &ct);
    EXPECT(st == SRLM_OK, "%s: %s", where, srlm_error_message());
    srlm_token_ids ref = {0};
    EXPECT(srlm_tokenizer_encode(tok, want, wl, &ref) == SRLM_OK, "%s", srlm_error_message());
    int ids_same = st == SRLM_OK && ct.ids.n == ref.n && memcmp(ct.ids.ids, ref.ids, ref.n * sizeof *ref.ids) == 0;
    EXPECT(ids_same, "%s: chat ids (%zu) differ from encoding the golden text (%zu)", where, ct.ids.n, ref.n);
    if (st == SRLM_OK) {
      /* decode the masked tokens: must be exactly the assistant targets, concatenated */
      char want_masked[4096] = "";
      size_t wm = 0;
      for (size_t i = 0; i < n; i++) {
        size_t tl = spans[i].target_end - spans[i].target_start;
        memcpy(want_masked + wm, text + spans[i].target_start, tl);
        wm += tl;
      }
      int32_t sel[1024];
      size_t ns = 0;
      for (size_t k = 0; k < ct.ids.n; k++)
        if (ct.mask[k]) sel[ns++] = ct.ids.ids[k];
      char *dec;
      size_t dl;
      EXPECT(srlm_tokenizer_decode(tok, sel, ns, &dec, &dl) == SRLM_OK, "%s", srlm_error_message());
      EXPECT(dl == wm && memcmp(dec, want_masked, wm) == 0, "%s: masked tokens decode to \"%.*s\", expected \"%.*s\"",
             where, (int)dl, dec, (int)wm, want_masked);
      free(dec);
    }
    srlm_chat_tokens_free(&ct);
    srlm_token_ids_free(&ref);
    free(text);
    free(msgs);
  }
  srlm_tokenizer_free(tok);
  json_decref(cases);
}

static char *render(const char *fmt_name, const char *json_msgs, int gen) {
  srlm_chat_format fmt;
  if (srlm_chat_format_from_name(fmt_name, &fmt) != SRLM_OK) return NULL;
  json_error_t jerr;
  json_t *j = json_loads(json_msgs, 0, &jerr);
  if (!j) {
    fprintf(stderr, "bad test JSON: %s\n", jerr.text);
    return NULL;
  }
  srlm_chat_message *msgs;
  size_t n;
  char *text = NULL;
  size_t len;
  if (srlm_chat_messages_from_json(j, "test", &msgs, &n) == SRLM_OK) {
    if (srlm_chat_render(&fmt, msgs, n, gen, &text, &len, NULL) != SRLM_OK) text = NULL;
    free(msgs);
  }
  json_decref(j);
  return text;
}

#define EXPECT_RENDER(fmt, msgs, gen, want)                 \
  do {                                                      \
    char *got_ = render(fmt, msgs, gen);                    \
    EXPECT(got_ != NULL, "render failed: %s", srlm_error_message()); \
    if (got_) EXPECT_STR_EQ(got_, want);                    \
    free(got_);                                             \
  } while (0)

/* Qwen3 template rules the golden does not reach; expected strings derived by hand
 * from the chat_template of qwen3/tokenizer_config.json. */
static void test_qwen3_rules(void) {
  /* reasoning inside content is split out; an earlier assistant turn (before the last
     user query) keeps only the answer, the last turn gets the think block */
  EXPECT_RENDER("qwen3",
                "[{\"role\":\"user\",\"content\":\"a\"},"
                "{\"role\":\"assistant\",\"content\":\"<think>\\nr1\\n</think>\\n\\nA1\"},"
                "{\"role\":\"user\",\"content\":\"b\"},"
                "{\"role\":\"assistant\",\"content\":\"<think>\\nr2\\n</think>\\n\\nA2\"}]",
                0,
                "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                "<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\n<think>\nr2\n</think>\n\nA2<|im_end|>\n");
  /* reasoning_content field; a system message that is not first is a normal turn */
  EXPECT_RENDER("qwen3",
                "[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"system\",\"content\":\"s\"},"
                "{\"role\":\"assistant\",\"content\":\"\\nans\",\"reasoning_content\":\"\\nwhy\\n\"}]",
                1,
                "<|im_start|>user\nq<|im_end|>\n<|im_start|>system\ns<|im_end|>\n"
                "<|im_start|>assistant\n<think>\nwhy\n</think>\n\nans<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  /* tool responses group into one user turn and do not count as the last query */
  EXPECT_RENDER("qwen3",
                "[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"x\"},"
                "{\"role\":\"tool\",\"content\":\"t1\"},{\"role\":\"tool\",\"content\":\"t2\"},"
                "{\"role\":\"assistant\",\"content\":\"done\"}]",
                0,
                "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nx<|im_end|>\n"
                "<|im_start|>user\n<tool_response>\nt1\n</tool_response>\n<tool_response>\nt2\n</tool_response><|im_end|>\n"
                "<|im_start|>assistant\n<think>\n\n</think>\n\ndone<|im_end|>\n");
  /* enable_thinking: no empty think block on the generation prompt */
  srlm_chat_format fmt;
  srlm_chat_format_from_name("qwen3", &fmt);
  fmt.enable_thinking = 1;
  srlm_chat_message m = {"user", "hi", 2, NULL, 0};
  char *text;
  size_t len;
  EXPECT(srlm_chat_render(&fmt, &m, 1, 1, &text, &len, NULL) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_STR_EQ(text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  free(text);
  /* a role the template would drop is an error */
  srlm_chat_format_from_name("qwen3", &fmt);
  srlm_chat_message bad = {"narrator", "x", 1, NULL, 0};
  EXPECT(srlm_chat_render(&fmt, &bad, 1, 0, &text, &len, NULL) == SRLM_ERR_UNSUPPORTED, "unknown role accepted");
  EXPECT_CONTAINS(srlm_error_message(), "messages[0].role: 'narrator'");
}

static void test_llama3_and_chatml(void) {
  /* llama3 by name: the header only on request; content trimmed like str.strip()
     (U+3000 and U+0085 are Python whitespace) */
  EXPECT_RENDER("llama3", "[{\"role\":\"user\",\"content\":\"\\u3000 hi\\u0085\\n\"}]", 0,
                "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
  EXPECT_RENDER("llama3", "[{\"role\":\"user\",\"content\":\"hi\"}]", 1,
                "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_RENDER("chatml", "[{\"role\":\"user\",\"content\":\" hi\\n\"},{\"role\":\"assistant\",\"content\":\"yo\"}]", 1,
                "<|im_start|>user\n hi\n<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>assistant\n");
}

static void test_errors(void) {
  srlm_chat_format fmt;
  EXPECT(srlm_chat_format_from_name("vicuna", &fmt) == SRLM_ERR_CONFIG, "unknown name accepted");
  EXPECT_CONTAINS(srlm_error_message(), "unknown format 'vicuna'");

  json_t *j = json_loads("[{\"role\":\"user\",\"content\":5}]", 0, NULL);
  srlm_chat_message *msgs;
  size_t n;
  EXPECT(srlm_chat_messages_from_json(j, "f.jsonl:3", &msgs, &n) == SRLM_ERR_FORMAT, "numeric content accepted");
  EXPECT_CONTAINS(srlm_error_message(), "f.jsonl:3: messages[0].content: expected a string");
  json_decref(j);
  j = json_loads("[]", 0, NULL);
  EXPECT(srlm_chat_messages_from_json(j, "f.jsonl:4", &msgs, &n) == SRLM_ERR_FORMAT, "empty messages accepted");
  EXPECT_CONTAINS(srlm_error_message(), "f.jsonl:4: messages: empty");
  json_decref(j);
  j = json_loads("[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{}]}]", 0, NULL);
  EXPECT(srlm_chat_messages_from_json(j, "f.jsonl:5", &msgs, &n) == SRLM_ERR_UNSUPPORTED, "tool_calls accepted");
  EXPECT_CONTAINS(srlm_error_message(), "messages[0].tool_calls");
  json_decref(j);

  /* detection: a template of no known family, a missing template */
  char path[1024];
  test_tmp_path(path, sizeof path, "unknown_config.json");
  const char *cfg = "{\"chat_template\": \"{% for m in messages %}### {{ m.content }}{% endfor %}\"}";
  EXPECT(srlm_write_file_atomic(path, cfg, strlen(cfg)) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_chat_format_detect(path, &fmt) == SRLM_ERR_UNSUPPORTED, "unknown template accepted");
  EXPECT_CONTAINS(srlm_error_message(), "unknown_config.json: chat_template: not a known format");
  cfg = "{\"bos_token\": \"<s>\"}";
  EXPECT(srlm_write_file_atomic(path, cfg, strlen(cfg)) == SRLM_OK, "%s", srlm_error_message());
  EXPECT(srlm_chat_format_detect(path, &fmt) == SRLM_ERR_UNSUPPORTED, "missing template accepted");
  EXPECT_CONTAINS(srlm_error_message(), "chat_template: missing");
}

int main(void) {
  test_golden("llama3", SRLM_CHAT_LLAMA3);
  test_golden("qwen3", SRLM_CHAT_QWEN3);
  test_qwen3_rules();
  test_llama3_and_chatml();
  test_errors();
  TEST_MAIN_END();
}
