/* srlm tokenizer: the Hugging Face `tokenizer.json` byte-level BPE tokenizer used by
 * Llama 3 and Qwen2/Qwen3, reproduced exactly (same ids as HF `tokenizers`).
 *
 * Encoding, in HF's order: added tokens (special or not) are matched inside the
 * text first (leftmost-longest; those with "normalized": false on the raw text,
 * the others after normalization); each remaining piece is normalized (none or NFC),
 * split by the `Split` regex (PCRE2, UTF + UCP, JIT), mapped to bytes, and merged by
 * BPE rank (`ignore_merges`: a piece that is itself in the vocabulary is one id).
 * Encoding never adds BOS/EOS or any template: add_special_tokens=False semantics.
 *
 * Text is raw UTF-8 bytes with an explicit length; encode rejects invalid UTF-8.
 * Decoding maps ids back to their exact bytes (the ByteLevel decoder), so a decoded
 * string may end inside a UTF-8 character; the stream decoder never splits one.
 *
 * A tokenizer handle is immutable for decode but encode uses per-handle scratch
 * (regex match data, a piece cache): one handle per thread for encoding.
 * Errors name the tokenizer.json path and, for malformed files, the JSON key path
 * ("tokenizer.json: model.merges[12]: ...").
 */
#ifndef SRLM_TOKENIZER_H
#define SRLM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srlm_tokenizer srlm_tokenizer;

/* A growable list of token ids; encode functions append to it. Zero-init is empty. */
typedef struct srlm_token_ids {
  int32_t *ids;    /* (n) */
  uint32_t *start; /* (n) byte offset in the encoded text where each token starts; NULL
                      until srlm_tokenizer_encode_offsets is used, and valid only for
                      the ids that function appended */
  size_t n, cap;
} srlm_token_ids;

void srlm_token_ids_clear(srlm_token_ids *v); /* n = 0, keeps memory */
void srlm_token_ids_free(srlm_token_ids *v);
void srlm_token_ids_push(srlm_token_ids *v, int32_t id);

/* Loads `path`: a model directory holding tokenizer.json, or the tokenizer.json file. */
srlm_status srlm_tokenizer_load(const char *path, srlm_tokenizer **out);
void srlm_tokenizer_free(srlm_tokenizer *tok);

/* The tokenizer.json path it was loaded from (for messages). */
const char *srlm_tokenizer_path(const srlm_tokenizer *tok);
/* One past the largest id (model vocabulary and added tokens). */
int32_t srlm_tokenizer_n_ids(const srlm_tokenizer *tok);
/* The id of a token given as its text (an added token's content, or a vocabulary
 * entry's decoded bytes); SRLM_ERR_RANGE naming the token when there is none. */
srlm_status srlm_tokenizer_token_id(const srlm_tokenizer *tok, const char *text, size_t len,
                                    int32_t *id);
/* The bytes an id decodes to (not NUL-terminated); SRLM_ERR_RANGE for an unknown id. */
srlm_status srlm_tokenizer_token_bytes(const srlm_tokenizer *tok, int32_t id, const char **bytes,
                                       size_t *len);
/* 1 for added tokens marked "special" (e.g. <|im_end|>), 0 otherwise or out of range. */
int srlm_tokenizer_is_special(const srlm_tokenizer *tok, int32_t id);

/* Appends the ids of text[0..len) to out. */
srlm_status srlm_tokenizer_encode(srlm_tokenizer *tok, const char *text, size_t len,
                                  srlm_token_ids *out);
/* Same, and fills out->start with each token's start byte in text. Tokens that
 * come from a span NFC rewrote all start at that span's start. */
srlm_status srlm_tokenizer_encode_offsets(srlm_tokenizer *tok, const char *text, size_t len,
                                          srlm_token_ids *out);

/* Empties the encode cache (piece bytes -> ids, at most 8 MiB, emptied by itself
 * when full); for benchmarks of cold encoding and to give memory back. */
void srlm_tokenizer_clear_cache(srlm_tokenizer *tok);

/* Applies the tokenizer's normalizer (none or NFC) to text: *out is malloc'ed and
 * NUL-terminated, *out_len excludes the NUL. */
srlm_status srlm_tokenizer_normalize(const srlm_tokenizer *tok, const char *text, size_t len,
                                     char **out, size_t *out_len);

/* Decodes ids (n) to bytes: *text is malloc'ed and NUL-terminated (*len excludes the NUL;
 * the bytes may contain NUL). An unknown id is SRLM_ERR_RANGE naming the id. */
srlm_status srlm_tokenizer_decode(const srlm_tokenizer *tok, const int32_t *ids, size_t n,
                                  char **text, size_t *len);

/* Streaming decoder for generation: push one id at a time and get the bytes that
 * complete UTF-8 characters; an incomplete trailing character is held back until a
 * later token completes it. Bytes that can never form a character (invalid UTF-8)
 * are passed through as they come. flush returns whatever is still held back.
 * The returned pointer stays valid until the next call on the stream. */
typedef struct srlm_tokenizer_stream srlm_tokenizer_stream;
srlm_tokenizer_stream *srlm_tokenizer_stream_init(const srlm_tokenizer *tok);
srlm_status srlm_tokenizer_stream_push(srlm_tokenizer_stream *s, int32_t id, const char **text,
                                       size_t *len);
void srlm_tokenizer_stream_flush(srlm_tokenizer_stream *s, const char **text, size_t *len);
void srlm_tokenizer_stream_free(srlm_tokenizer_stream *s);

/* Load-time facts for reports and benchmarks. */
typedef struct srlm_tokenizer_info {
  int32_t n_vocab;     /* entries of model.vocab */
  int32_t n_merges;    /* entries of model.merges */
  int32_t n_added;     /* added_tokens */
  int ignore_merges;   /* model.ignore_merges */
  int nfc;             /* normalizer is NFC */
  int jit;             /* the Split regex runs JIT-compiled */
  double load_seconds; /* wall time of srlm_tokenizer_load */
} srlm_tokenizer_info;
void srlm_tokenizer_get_info(const srlm_tokenizer *tok, srlm_tokenizer_info *info);

#ifdef __cplusplus
}
#endif
#endif
