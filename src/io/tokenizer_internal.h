/* Private to the tokenizer files of src/io (tokenizer.c, tokenizer_load.c,
 * tokenizer_nfc.c, tokenizer_nfc_data.c): the tokenizer's tables and scratch.
 * Nothing outside the tokenizer includes this; the API is include/srlm/tokenizer.h.
 *
 * Conventions: text is bytes with explicit lengths; ids are int32; "bytes" of a
 * vocabulary entry are its ByteLevel-decoded bytes (the JSON key "Ġthe" is " the").
 */
#ifndef SRLM_IO_TOKENIZER_INTERNAL_H
#define SRLM_IO_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "srlm/tokenizer.h"

/* ---- small growable buffers ------------------------------------------- */

typedef struct tok_bytes {
  char *p;
  size_t n, cap;
} tok_bytes;
void srlm_tok_bytes_reserve(tok_bytes *b, size_t extra);
void srlm_tok_bytes_append(tok_bytes *b, const void *data, size_t n);

/* Where NFC rewrote text: each chunk maps [norm, norm_end) of the normalized text
 * to [orig, orig_end) of the original; outside chunks the two advance together. */
typedef struct tok_align_chunk {
  uint32_t norm, norm_end, orig, orig_end;
} tok_align_chunk;
typedef struct tok_align {
  tok_align_chunk *c; /* (n) in increasing order */
  size_t n, cap;
} tok_align;
/* The original offset of normalized offset x. */
uint32_t srlm_tok_align_map(const tok_align *al, uint32_t x);

/* ---- hashing ----------------------------------------------------------- */

uint64_t srlm_tok_hash(const void *p, size_t n);

/* ---- UTF-8 -------------------------------------------------------------- */

/* Decodes one code point of valid UTF-8 at s (n > 0 bytes left); sets *len. */
uint32_t srlm_tok_utf8_decode(const uint8_t *s, size_t n, int *len);
int srlm_tok_utf8_encode(uint32_t cp, uint8_t out[4]);
/* 1 when s[0..n) is valid UTF-8 (no surrogates, no overlongs, <= U+10FFFF);
 * else 0 and *bad is the offset of the first bad byte. */
int srlm_tok_utf8_valid(const uint8_t *s, size_t n, size_t *bad);
/* Unicode White_Space (what Rust's str::trim strips). */
int srlm_tok_is_white_space(uint32_t cp);

/* ---- NFC ---------------------------------------------------------------- */

/* 1 when s[0..n) (valid UTF-8) might change under NFC. 0 means it is NFC already. */
int srlm_tok_nfc_maybe(const uint8_t *s, size_t n);
/* Appends NFC(s[0..n)) to out. When al is not NULL, records the rewritten chunks with
 * offsets relative to s and to out->n at entry. Returns 1 if the text changed. */
int srlm_tok_nfc(const uint8_t *s, size_t n, tok_bytes *out, tok_align *al);

extern const char srlm_tok_nfc_unicode_version[];
extern const uint64_t srlm_tok_nfc_unsafe_bmp[1024];
extern const uint32_t srlm_tok_nfc_unsafe_supp[][2];
extern const size_t srlm_tok_nfc_unsafe_supp_n;
extern const uint32_t srlm_tok_nfc_ccc[][3];
extern const size_t srlm_tok_nfc_ccc_n;
extern const uint32_t srlm_tok_nfc_decomp_pool[];
extern const uint32_t srlm_tok_nfc_decomp[][3];
extern const size_t srlm_tok_nfc_decomp_n;
extern const uint64_t srlm_tok_nfc_compose_key[];
extern const uint32_t srlm_tok_nfc_compose_val[];
extern const size_t srlm_tok_nfc_compose_n;

/* ---- the tokenizer -------------------------------------------------------- */

enum { TOK_FLAG_ADDED = 1, TOK_FLAG_SPECIAL = 2 };

typedef struct tok_added {
  int32_t id;
  uint32_t off, len; /* matched content in the pool (NFC'd when normalized) */
  uint8_t special, lstrip, rstrip, single_word, normalized;
} tok_added;

/* A byte trie over added-token contents; first[] filters candidate start bytes. */
typedef struct tok_trie_node {
  int32_t child, sibling; /* node indexes, -1 for none */
  int32_t added;          /* index into tok->added of the token ending here, or -1 */
  uint8_t byte;
} tok_trie_node;
typedef struct tok_matcher {
  tok_trie_node *nodes; /* (n_nodes); node 0 is the root */
  int32_t n_nodes, cap;
  uint8_t first[256];
  int32_t n_tokens;
} tok_matcher;

/* (vocabulary bytes) -> id */
typedef struct tok_vocab_slot {
  uint32_t hash;
  int32_t id; /* -1: empty */
  uint32_t off, len;
} tok_vocab_slot;

/* (left id, right id) -> (rank, merged id) */
typedef struct tok_merge_slot {
  uint64_t key; /* UINT64_MAX: empty */
  uint32_t rank;
  int32_t id;
} tok_merge_slot;

/* Piece cache: piece bytes -> ids. Cleared wholesale when full. */
typedef struct tok_cache_slot {
  uint64_t hash; /* 0: empty */
  uint32_t key_off, ids_off;
  uint16_t key_len, n_ids;
} tok_cache_slot;
#define TOK_CACHE_SLOTS (1u << 16)
#define TOK_CACHE_MAX_KEY 128
#define TOK_CACHE_POOL (8u << 20)


struct srlm_tokenizer {
  char *path; /* tokenizer.json */

  /* id -> decoded bytes */
  int32_t n_ids;
  uint32_t *id_off, *id_len; /* (n_ids); id_len == UINT32_MAX: no such id */
  uint8_t *id_flags;         /* (n_ids) TOK_FLAG_* */
  tok_bytes pool;

  tok_vocab_slot *vocab; /* open addressing, (vocab_mask + 1) */
  size_t vocab_mask;
  int32_t byte_id[256]; /* -1: the vocabulary has no token for this byte */
  int missing_bytes;     /* count of bytes with byte_id -1 (small task vocabularies) */

  tok_merge_slot *merges; /* open addressing, (merge_mask + 1) */
  size_t merge_mask;

  int32_t n_vocab, n_merges;
  int ignore_merges;
  int nfc;

  /* pre-tokenizer: Split regex, behaviour Isolated (keep matches and gaps) or Removed */
  pcre2_code *re;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *jit_stack;
  int jit;
  int split_removed;
  pcre2_code *word_re; /* \w for single_word added tokens; NULL when none */
  pcre2_match_data *word_md;

  tok_added *added; /* (n_added) */
  int32_t n_added;
  tok_matcher raw_m, norm_m; /* normalized: false / true tokens */

  /* encode scratch */
  tok_cache_slot *cache; /* (TOK_CACHE_SLOTS) */
  char *cache_pool;      /* (TOK_CACHE_POOL) */
  uint32_t cache_used, cache_count;
  tok_bytes norm_buf;
  tok_align align;
  int32_t *sym_id;      /* (sym_cap) BPE symbols */
  uint32_t *sym_rank;   /* (sym_cap) */
  int32_t *sym_mid;     /* (sym_cap) */
  int32_t *sym_prev, *sym_next;
  uint64_t *heap;       /* (heap_cap) BPE candidates: rank << 32 | left symbol */
  size_t sym_cap, heap_cap;

  double load_seconds;
};

static inline size_t tok_merge_slot_index(uint64_t key, size_t mask) {
  uint64_t h = key * 0x9E3779B97F4A7C15ull;
  return (size_t)(h ^ (h >> 29)) & mask;
}

/* tokenizer_load.c */
void srlm_tok_matcher_init(tok_matcher *m);
void srlm_tok_matcher_free(tok_matcher *m);
void srlm_tok_matcher_add(tok_matcher *m, const uint8_t *s, size_t n, int32_t added_index);
int32_t srlm_tok_vocab_lookup(const srlm_tokenizer *tok, const void *s, size_t n, uint64_t h);
void srlm_tok_free_tables(srlm_tokenizer *tok);

#endif
