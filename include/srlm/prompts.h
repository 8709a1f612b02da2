/* srlm prompts: the prompt set of a run, read from JSONL (data.prompts) and kept in an
 * HDF5 store (iter_0/prompts.h5).
 *
 * JSONL lines (blank lines skipped, numbered from 1 as srlm_jsonl counts them):
 *   {"prompt": "..."}        one user turn
 *   {"messages": [...]}      a conversation (srlm_chat_messages_from_json) that has at
 *                            least one "user" message
 * Either may carry "reference": a string or a non-empty list of strings, the prompt's
 * reference answers (judge.source bleu, rewards.h); any other type is a bad line
 * ("FILE:LINE: \"reference\": expected a string or a list of strings, got ...").
 * Other keys are ignored. With a chat format the conversation is rendered with the
 * generation prompt (what the model continues); without one (tokenizer.chat_format none)
 * the "prompt" string is the text as is, and "messages" is an error.
 * Per prompt the set keeps the rendered text, its ids, the INSTRUCTION (what the judge
 * template's {prompt} receives: the "prompt" string, or the content of the LAST user
 * message) and the source line.
 *
 * Bad lines (invalid JSON, not an object, neither or both of "prompt" and "messages",
 * "prompt" not a string, malformed messages, no user message, text the tokenizer
 * rejects, a prompt that renders to no token) are an error "FILE:LINE: what", or with
 * skip_bad_lines skipped and counted (stats->bad; the first one's message is kept in
 * stats->first_bad for the caller's warning, since library code does not print).
 * Read errors (SRLM_ERR_IO) are never skipped. Prompts of more than max_prompt_tokens
 * tokens are dropped and counted (stats->too_long). A file with no prompt left is an
 * error naming the file and the counts.
 *
 * Store (format "prompts", version 1), n prompts in file order:
 *   /prompts/ids          seqs    the rendered ids
 *   /prompts/text         strings the rendered text
 *   /prompts/instruction  strings the judge's {prompt}
 *   /prompts/line         int64 (n) the 1-based JSONL line
 *   /prompts/reference          strings the references, prompt by prompt (only when
 *   /prompts/reference_offsets  int64 (n + 1)  some prompt has one; prompt i's are
 *                               reference[reference_offsets[i] .. reference_offsets[i+1]))
 * Written to a temporary name and renamed into place (srlm_store_commit).
 */
#ifndef SRLM_PROMPTS_H
#define SRLM_PROMPTS_H

#include <stdint.h>

#include "srlm/chat.h"
#include "srlm/core.h"
#include "srlm/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SRLM_PROMPTS_FORMAT "prompts"
#define SRLM_PROMPTS_VERSION 1

/* n prompts; prompt i is ids[offsets[i] .. offsets[i + 1]). Zero-init is empty. */
typedef struct srlm_prompt_set {
  int64_t n;
  int64_t *offsets;   /* (n + 1) offsets[0] = 0 */
  int32_t *ids;       /* (offsets[n]) rendered ids, back to back */
  char **text;        /* (n) rendered text (NUL-terminated) */
  char **instruction; /* (n) the judge's {prompt} */
  int64_t *line;      /* (n) 1-based JSONL line */
  /* reference answers: prompt i's are refs[ref_offsets[i] .. ref_offsets[i + 1]); both
     NULL when no prompt of the set has a "reference" */
  int64_t *ref_offsets; /* (n + 1) */
  char **refs;          /* (ref_offsets[n]) NUL-terminated */
} srlm_prompt_set;

typedef struct srlm_prompts_stats {
  int64_t lines;       /* non-blank lines read */
  int64_t bad;         /* malformed lines skipped (skip_bad_lines) */
  int64_t too_long;    /* dropped: more than max_prompt_tokens tokens */
  int64_t tokens;      /* tokens of the kept prompts */
  int64_t max_len;     /* longest kept prompt, in tokens */
  char first_bad[512]; /* the first skipped line's error ("" when none) */
} srlm_prompts_stats;

/* Reads, renders and tokenizes path into *out (free with srlm_prompt_set_free; on error
 * *out is empty). chat: the chat format, or NULL for raw text. max_prompt_tokens <= 0:
 * no limit. stats may be NULL. */
srlm_status srlm_prompts_load(const char *path, srlm_tokenizer *tok, const srlm_chat_format *chat,
                              int skip_bad_lines, int max_prompt_tokens, srlm_prompt_set *out,
                              srlm_prompts_stats *stats);

/* Writes the set to an HDF5 store at path (atomically). */
srlm_status srlm_prompts_save(const srlm_prompt_set *p, const char *path);
/* Reads a store written by srlm_prompts_save; checks that the four datasets agree on n. */
srlm_status srlm_prompts_read(const char *path, srlm_prompt_set *out);

void srlm_prompt_set_free(srlm_prompt_set *p);

#ifdef __cplusplus
}
#endif
#endif
