/* srlm chat formats: conversations rendered to the exact text (and ids) that the
 * model's own Jinja chat_template produces, written in C for the known families:
 *
 *   llama3  <|begin_of_text|><|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>...
 *           (CONTENT trimmed as Python's str.strip(); generation prompt
 *           <|start_header_id|>assistant<|end_header_id|>\n\n)
 *   chatml  <|im_start|>ROLE\nCONTENT<|im_end|>\n...  (generation prompt <|im_start|>assistant\n)
 *   qwen3   ChatML with Qwen3's rules: a leading system message, <think> blocks split
 *           out of assistant content (or taken from "reasoning_content"), an empty
 *           think block on assistant turns after the last user query when they are the
 *           last message, tool messages grouped in one user turn, and with
 *           enable_thinking=false (the default here) "<think>\n\n</think>\n\n" after the
 *           generation prompt.
 *
 * Rendering also reports, per message, the byte spans of its turn, its content and
 * its target (what a model learns to produce for an assistant turn: the content, or
 * the think block when it has reasoning, through the end-of-turn token), so that
 * loss masks cover exactly the assistant tokens. Tool calls ("tool_calls") and the
 * "tools" list are not supported (an error, never a silent difference).
 */
#ifndef SRLM_CHAT_H
#define SRLM_CHAT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"
#include "srlm/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum srlm_chat_kind {
  SRLM_CHAT_LLAMA3 = 1,
  SRLM_CHAT_CHATML,
  SRLM_CHAT_QWEN3
} srlm_chat_kind;

typedef struct srlm_chat_format {
  srlm_chat_kind kind;
  /* llama3: the template ends every render with the assistant header, even without
     add_generation_prompt (the Llama 3 8B Instruct template as shipped in some copies) */
  int assistant_header_always;
  /* qwen3: 1 renders as enable_thinking=true (no empty think block after the
     generation prompt); 0, the default, as enable_thinking=false */
  int enable_thinking;
  char bos[64];             /* llama3: put before the first message */
  char default_system[256]; /* chatml: system turn added when the first message is not one ("" none) */
} srlm_chat_format;

/* "llama3", "chatml" or "qwen3" with the defaults above. */
srlm_status srlm_chat_format_from_name(const char *name, srlm_chat_format *fmt);
/* Detects the format from the chat_template of tokenizer_config.json (path: the file or
 * the model directory). An unknown template is SRLM_ERR_UNSUPPORTED naming the file. */
srlm_status srlm_chat_format_detect(const char *path, srlm_chat_format *fmt);
const char *srlm_chat_kind_name(srlm_chat_kind kind);

typedef struct srlm_chat_message {
  const char *role;    /* NUL-terminated */
  const char *content; /* (content_len) bytes */
  size_t content_len;
  const char *reasoning; /* qwen3 "reasoning_content", or NULL */
  size_t reasoning_len;
} srlm_chat_message;

/* Byte spans in the rendered text; end offsets are exclusive. */
typedef struct srlm_chat_span {
  size_t start, end;                 /* the whole turn (for grouped tool turns, this message's part) */
  size_t content_start, content_end; /* the content as rendered (trimmed or split as the format does) */
  size_t target_start, target_end;   /* assistant turns: what the model generates, through the
                                        end-of-turn token; empty (start == end) for other roles */
} srlm_chat_span;

/* Messages from a JSON array of {"role": ..., "content": ..., ["reasoning_content": ...]}.
 * Strings are borrowed from the JSON (keep it alive); *msgs is malloc'ed. Errors read
 * "WHERE: messages[i].content: expected a string". */
srlm_status srlm_chat_messages_from_json(const json_t *messages, const char *where, srlm_chat_message **msgs,
                                         size_t *n);

/* Renders msgs (n >= 1) to *text (malloc'ed, NUL-terminated, *len excludes the NUL).
 * spans, when not NULL, has room for n entries. */
srlm_status srlm_chat_render(const srlm_chat_format *fmt, const srlm_chat_message *msgs, size_t n,
                             int add_generation_prompt, char **text, size_t *len, srlm_chat_span *spans);

/* Rendered and encoded as one text (as HF's apply_chat_template(tokenize=True) does),
 * with mask[i] = 1 when token i starts inside an assistant message's target span. */
typedef struct srlm_chat_tokens {
  srlm_token_ids ids;
  uint8_t *mask; /* (ids.n) */
} srlm_chat_tokens;
srlm_status srlm_chat_encode(srlm_tokenizer *tok, const srlm_chat_format *fmt, const srlm_chat_message *msgs,
                             size_t n, int add_generation_prompt, srlm_chat_tokens *out);
void srlm_chat_tokens_free(srlm_chat_tokens *t);

#ifdef __cplusplus
}
#endif
#endif
