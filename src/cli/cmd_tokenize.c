/* srlm tokenize | detokenize | chat: the tokenizer and chat formats from the command
 * line. Results go to stdout (one JSON value a line, or raw text for detokenize),
 * errors to stderr as "srlm <cmd>: error: FILE:LINE: what". */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "srlm/chat.h"
#include "srlm/jsonl.h"
#include "srlm/tokenizer.h"

static const char k_tokenize_help[] =
    "usage: srlm tokenize --tokenizer DIR (--jsonl FILE | --text STRING)\n"
    "\n"
    "Encodes text with DIR/tokenizer.json (Hugging Face byte-level BPE: Llama 3,\n"
    "Qwen2/Qwen3) and prints one line per input, in order: {\"ids\":[1,2,3]}\n"
    "Special-token strings inside the text (e.g. <|im_start|>) become their ids, as\n"
    "in Hugging Face tokenizers; no BOS/EOS is ever added (add_special_tokens=False).\n"
    "\n"
    "  --tokenizer DIR  model directory with tokenizer.json (or the file itself)\n"
    "  --jsonl FILE     each line a JSON string or an object with a \"text\" string;\n"
    "                   blank lines are skipped; \"-\" reads stdin\n"
    "  --text STRING    encode one text\n"
    "  --help           this text\n"
    "\n"
    "Exit status: 0 ok, 1 bad input (unreadable tokenizer, bad JSON on a line,\n"
    "invalid UTF-8; the error names FILE:LINE), 2 usage error.\n";

static const char k_detokenize_help[] =
    "usage: srlm detokenize --tokenizer DIR --ids 1,2,3 [--newline]\n"
    "\n"
    "Decodes token ids and writes the text's exact bytes to stdout, with no newline\n"
    "added (the text may end inside a UTF-8 character if the ids do). Special tokens\n"
    "are written as their text (e.g. <|im_end|>).\n"
    "\n"
    "  --tokenizer DIR  model directory with tokenizer.json (or the file itself)\n"
    "  --ids LIST       comma-separated ids (spaces allowed); \"\" decodes nothing\n"
    "  --newline        write a newline after the text\n"
    "  --help           this text\n"
    "\n"
    "Exit status: 0 ok, 1 bad id (not an integer, or not in the vocabulary; the\n"
    "error names it), 2 usage error.\n";

static const char k_chat_help[] =
    "usage: srlm chat --tokenizer DIR --jsonl FILE [--generation-prompt] [--format NAME]\n"
    "                 [--thinking] [--ids [--mask]]\n"
    "\n"
    "Renders each line's {\"messages\":[{\"role\":...,\"content\":...},...]} with the\n"
    "model's chat format and prints one JSON string per line (the rendered text), or\n"
    "with --ids {\"ids\":[...]} (the rendered text encoded; no BOS is added beyond what\n"
    "the format itself writes).\n"
    "\n"
    "  --tokenizer DIR      model directory: the format is detected from the\n"
    "                       chat_template of DIR/tokenizer_config.json; tokenizer.json\n"
    "                       encodes for --ids\n"
    "  --jsonl FILE         conversations, one a line (\"-\" reads stdin)\n"
    "  --generation-prompt  end with the assistant header (add_generation_prompt)\n"
    "  --format NAME        llama3, chatml or qwen3 instead of detecting it (quirks of\n"
    "                       DIR's template of the same family are kept)\n"
    "  --thinking           qwen3: render as enable_thinking=true (default: false, which\n"
    "                       writes an empty <think> block after the generation prompt)\n"
    "  --ids                print token ids instead of text\n"
    "  --mask               with --ids, add \"mask\":[0,1,...]: 1 on tokens of assistant\n"
    "                       replies (what training learns), 0 elsewhere\n"
    "  --help               this text\n"
    "\n"
    "Exit status: 0 ok, 1 bad input (the error names FILE:LINE), 2 usage error.\n";

/* ---- output ------------------------------------------------------------------ */

typedef struct out_line {
  char *p;
  size_t n, cap;
} out_line;

static void out_put(out_line *o, const char *s, size_t n) {
  if (o->n + n > o->cap) {
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->n + n) cap *= 2;
    o->p = srlm_xrealloc(o->p, cap);
    o->cap = cap;
  }
  memcpy(o->p + o->n, s, n);
  o->n += n;
}

static void out_int_list(out_line *o, const char *key, const int32_t *v, const uint8_t *bytes, size_t n) {
  char num[16];
  out_put(o, "\"", 1);
  out_put(o, key, strlen(key));
  out_put(o, "\":[", 3);
  for (size_t i = 0; i < n; i++) {
    int k = snprintf(num, sizeof num, i ? ",%d" : "%d", v ? v[i] : (int)bytes[i]);
    out_put(o, num, (size_t)k);
  }
  out_put(o, "]", 1);
}

/* {"ids":[...]} (and "mask") + newline to stdout */
static srlm_status write_ids(out_line *o, const srlm_token_ids *ids, const uint8_t *mask) {
  o->n = 0;
  out_put(o, "{", 1);
  out_int_list(o, "ids", ids->ids, NULL, ids->n);
  if (mask) {
    out_put(o, ",", 1);
    out_int_list(o, "mask", NULL, mask, ids->n);
  }
  out_put(o, "}\n", 2);
  if (fwrite(o->p, 1, o->n, stdout) != o->n) return srlm_error(SRLM_ERR_IO, "stdout", "write failed: %s", strerror(errno));
  return SRLM_OK;
}

static srlm_status finish_stdout(void) {
  if (fflush(stdout) != 0 || ferror(stdout)) return srlm_error(SRLM_ERR_IO, "stdout", "write failed: %s", strerror(errno));
  return SRLM_OK;
}

/* Takes the value of option argv[*i]; NULL (after printing a usage error) when missing. */
static const char *opt_value(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) return NULL;
  return argv[++*i];
}

/* ---- tokenize ------------------------------------------------------------------ */

static srlm_status tokenize_jsonl(srlm_tokenizer *tok, const char *path) {
  srlm_jsonl *r;
  SRLM_TRY(srlm_jsonl_open(path, &r));
  srlm_token_ids ids = {0};
  out_line o = {0};
  json_t *v;
  srlm_status st;
  while ((st = srlm_jsonl_next(r, &v)) == SRLM_OK && v) {
    const json_t *t = json_is_object(v) ? json_object_get(v, "text") : v;
    if (!json_is_string(t)) {
      st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "expected a JSON string or an object with a \"text\" string");
    } else {
      srlm_token_ids_clear(&ids);
      st = srlm_tokenizer_encode(tok, json_string_value(t), json_string_length(t), &ids);
      if (st != SRLM_OK) st = srlm_error_context(st, "%s", srlm_jsonl_where(r));
      else st = write_ids(&o, &ids, NULL);
    }
    json_decref(v);
    if (st != SRLM_OK) break;
  }
  srlm_token_ids_free(&ids);
  free(o.p);
  srlm_jsonl_close(r);
  return st;
}

int srlm_cmd_tokenize(int argc, char **argv) {
  const char *cmd = argv[0];
  const char *dir = NULL, *jsonl = NULL, *text = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(k_tokenize_help, stdout);
      return 0;
    } else if (!strcmp(a, "--tokenizer")) {
      if (!(dir = opt_value(argc, argv, &i))) return srlm_cli_usage_error(cmd, "--tokenizer needs a directory");
    } else if (!strcmp(a, "--jsonl")) {
      if (!(jsonl = opt_value(argc, argv, &i))) return srlm_cli_usage_error(cmd, "--jsonl needs a file");
    } else if (!strcmp(a, "--text")) {
      if (!(text = opt_value(argc, argv, &i))) return srlm_cli_usage_error(cmd, "--text needs a string");
    } else {
      return srlm_cli_usage_error(cmd, "unknown option '%s'", a);
    }
  }
  if (!dir) return srlm_cli_usage_error(cmd, "--tokenizer DIR is required");
  if (!jsonl == !text) return srlm_cli_usage_error(cmd, "give exactly one of --jsonl FILE and --text STRING");
  srlm_tokenizer *tok;
  srlm_status st = srlm_tokenizer_load(dir, &tok);
  if (st != SRLM_OK) return srlm_cli_fail(cmd, st);
  if (jsonl) {
    st = tokenize_jsonl(tok, jsonl);
  } else {
    srlm_token_ids ids = {0};
    out_line o = {0};
    st = srlm_tokenizer_encode(tok, text, strlen(text), &ids);
    if (st != SRLM_OK) st = srlm_error_context(st, "--text");
    else st = write_ids(&o, &ids, NULL);
    srlm_token_ids_free(&ids);
    free(o.p);
  }
  srlm_tokenizer_free(tok);
  if (st == SRLM_OK) st = finish_stdout();
  return st == SRLM_OK ? 0 : srlm_cli_fail(cmd, st);
}

/* ---- detokenize ------------------------------------------------------------------ */

static srlm_status parse_ids(const char *list, srlm_token_ids *ids) {
  const char *p = list;
  size_t item = 0;
  while (*p == ' ' || *p == '\t') p++;
  if (!*p) return SRLM_OK;
  for (;;) {
    item++;
    while (*p == ' ' || *p == '\t') p++;
    const char *start = p;
    errno = 0;
    char *end;
    long long v = strtoll(p, &end, 10);
    const char *stop = end;
    while (*stop == ' ' || *stop == '\t') stop++;
    if (end == start || (*stop != ',' && *stop != '\0') || errno == ERANGE || v < INT32_MIN || v > INT32_MAX) {
      size_t len = strcspn(start, ",");
      while (len > 0 && (start[len - 1] == ' ' || start[len - 1] == '\t')) len--;
      return srlm_error(SRLM_ERR_FORMAT, "--ids", "item %zu '%.*s' is not an integer id", item, (int)len, start);
    }
    srlm_token_ids_push(ids, (int32_t)v);
    if (*stop == '\0') return SRLM_OK;
    p = stop + 1;
  }
}

int srlm_cmd_detokenize(int argc, char **argv) {
  const char *cmd = argv[0];
  const char *dir = NULL, *list = NULL;
  int newline = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(k_detokenize_help, stdout);
      return 0;
    } else if (!strcmp(a, "--tokenizer")) {
      if (!(dir = opt_value(argc, argv, &i))) return srlm_cli_usage_error(cmd, "--tokenizer needs a directory");
    } else if (!strcmp(a, "--ids")) {
      if (!(list = opt_value(argc, argv, &i))) return srlm_cli_usage_error(cmd, "--ids needs a list such as 1,2,3");
    } else if (!strcmp(a, "--newline")) {
      newline = 1;
    } else {
      return srlm_cli_usage_error(cmd, "unknown option '%s'", a);
    }
  }
  if (!dir) return srlm_cli_usage_error(cmd, "--tokenizer DIR is required");
  if (!list) return srlm_cli_usage_error(cmd, "--ids LIST is required");
  srlm_token_ids ids = {0};
  srlm_status st = parse_ids(list, &ids);
  srlm_tokenizer *tok = NULL;
  if (st == SRLM_OK) st = srlm_tokenizer_load(dir, &tok);
  char *text = NULL;
  size_t len = 0;
  if (st == SRLM_OK) st = srlm_tokenizer_decode(tok, ids.ids, ids.n, &text, &len);
  if (st == SRLM_OK) {
    if (fwrite(text, 1, len, stdout) != len || (newline && fputc('\n', stdout) == EOF))
      st = srlm_error(SRLM_ERR_IO, "stdout", "write failed: %s", strerror(errno));
  }
  free(text);
  srlm_tokenizer_free(tok);
  srlm_token_ids_free(&ids);
  if (st == SRLM_OK) st = finish_stdout();
  return st == SRLM_OK ? 0 : srlm_cli_fail(cmd, st);
}

/* ---- chat ------------------------------------------------------------------------- */

typedef struct chat_opts {
  const char *dir, *jsonl, *format;
  int gen, thinking, ids, mask;
} chat_opts;

static srlm_status chat_format(const chat_opts *o, srlm_chat_format *fmt) {
  if (!o->format) return srlm_chat_format_detect(o->dir, fmt);
  SRLM_TRY(srlm_chat_format_from_name(o->format, fmt));
  srlm_chat_format detected;
  if (o->dir && srlm_chat_format_detect(o->dir, &detected) == SRLM_OK && detected.kind == fmt->kind) *fmt = detected;
  srlm_error_clear();
  return SRLM_OK;
}

static srlm_status chat_run(const chat_opts *o) {
  srlm_chat_format fmt;
  SRLM_TRY(chat_format(o, &fmt));
  fmt.enable_thinking = o->thinking;
  srlm_tokenizer *tok = NULL;
  if (o->ids) SRLM_TRY(srlm_tokenizer_load(o->dir, &tok));
  srlm_jsonl *r;
  srlm_status st = srlm_jsonl_open(o->jsonl, &r);
  if (st != SRLM_OK) {
    srlm_tokenizer_free(tok);
    return st;
  }
  out_line line = {0};
  json_t *v;
  while ((st = srlm_jsonl_next(r, &v)) == SRLM_OK && v) {
    srlm_chat_message *msgs = NULL;
    size_t n = 0;
    if (!json_is_object(v)) st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "expected an object {\"messages\": [...]}");
    else st = srlm_chat_messages_from_json(json_object_get(v, "messages"), srlm_jsonl_where(r), &msgs, &n);
    if (st == SRLM_OK && o->ids) {
      srlm_chat_tokens ct;
      st = srlm_chat_encode(tok, &fmt, msgs, n, o->gen, &ct);
      if (st != SRLM_OK) st = srlm_error_context(st, "%s", srlm_jsonl_where(r));
      else st = write_ids(&line, &ct.ids, o->mask ? ct.mask : NULL);
      if (st == SRLM_OK) srlm_chat_tokens_free(&ct);
    } else if (st == SRLM_OK) {
      char *text;
      size_t len;
      st = srlm_chat_render(&fmt, msgs, n, o->gen, &text, &len, NULL);
      if (st != SRLM_OK) {
        st = srlm_error_context(st, "%s", srlm_jsonl_where(r));
      } else {
        json_t *s = json_stringn(text, len);
        if (!s || json_dumpf(s, stdout, JSON_ENCODE_ANY) != 0 || fputc('\n', stdout) == EOF)
          st = srlm_error(SRLM_ERR_IO, "stdout", "write failed");
        json_decref(s);
        free(text);
      }
    }
    free(msgs);
    json_decref(v);
    if (st != SRLM_OK) break;
  }
  free(line.p);
  srlm_jsonl_close(r);
  srlm_tokenizer_free(tok);
  return st;
}

int srlm_cmd_chat(int argc, char **argv) {
  const char *cmd = argv[0];
  chat_opts o = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(k_chat_help, stdout);
      return 0;
    } else if (!strcmp(a, "--tokenizer")) {
      if (!(o.dir = opt_value(argc, argv, &i))) return srlm_cli_usage_error(cmd, "--tokenizer needs a directory");
    } else if (!strcmp(a, "--jsonl")) {
      if (!(o.jsonl = opt_value(argc, argv, &i))) return srlm_cli_usage_error(cmd, "--jsonl needs a file");
    } else if (!strcmp(a, "--format")) {
      if (!(o.format = opt_value(argc, argv, &i))) return srlm_cli_usage_error(cmd, "--format needs a name");
    } else if (!strcmp(a, "--generation-prompt")) {
      o.gen = 1;
    } else if (!strcmp(a, "--thinking")) {
      o.thinking = 1;
    } else if (!strcmp(a, "--ids")) {
      o.ids = 1;
    } else if (!strcmp(a, "--mask")) {
      o.mask = 1;
    } else {
      return srlm_cli_usage_error(cmd, "unknown option '%s'", a);
    }
  }
  if (!o.jsonl) return srlm_cli_usage_error(cmd, "--jsonl FILE is required");
  if (!o.dir && (o.ids || !o.format)) return srlm_cli_usage_error(cmd, "--tokenizer DIR is required");
  if (o.mask && !o.ids) return srlm_cli_usage_error(cmd, "--mask needs --ids");
  if (o.format && strcmp(o.format, "llama3") && strcmp(o.format, "chatml") && strcmp(o.format, "qwen3"))
    return srlm_cli_usage_error(cmd, "unknown --format '%s' (known: llama3, chatml, qwen3)", o.format);
  srlm_status st = chat_run(&o);
  if (st == SRLM_OK) st = finish_stdout();
  return st == SRLM_OK ? 0 : srlm_cli_fail(cmd, st);
}
