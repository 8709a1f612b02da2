/* Loading a Hugging Face tokenizer.json (jansson) into the tokenizer's tables:
 * id -> bytes, bytes -> id (open addressing), (left, right) -> (rank, merged id),
 * the added-token tries and the Split regex (PCRE2, UTF + UCP, JIT).
 *
 * Every rejection names the file and the JSON key path, e.g.
 * "tokenizer.json: model.merges[12]: token 'Ġx' is not in model.vocab".
 * What is supported is what byte-level BPE tokenizers (GPT-2, Llama 3, Qwen2/3) use;
 * anything else is SRLM_ERR_UNSUPPORTED naming the key, never a silent difference.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "srlm/jsonl.h"
#include "tokenizer_internal.h"

/* GPT-2 ByteLevel pre-tokenizer regex, used when ByteLevel has use_regex: true. */
static const char k_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- small shared helpers ---------------------------------------------- */

void srlm_tok_bytes_reserve(tok_bytes *b, size_t extra) {
  if (b->n + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->n + extra) cap *= 2;
  b->p = srlm_xrealloc(b->p, cap);
  b->cap = cap;
}

void srlm_tok_bytes_append(tok_bytes *b, const void *data, size_t n) {
  if (!n) return;
  srlm_tok_bytes_reserve(b, n);
  memcpy(b->p + b->n, data, n);
  b->n += n;
}

uint64_t srlm_tok_hash(const void *p, size_t n) {
  const uint8_t *s = p;
  uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, s, 8);
    h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
    s += 8;
    n -= 8;
  }
  if (n) {
    uint64_t v = 0;
    memcpy(&v, s, n);
    h = (h ^ v) * 0x94d049bb133111ebull;
    h ^= h >> 29;
  }
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return h ? h : 1; /* 0 marks an empty cache slot */
}

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the other 68 to
 * U+0100.. in byte order. cp_byte is the inverse (-1 outside the alphabet). */
static void byte_level_tables(uint16_t byte_cp[256], int16_t cp_byte[324]) {
  for (int c = 0; c < 324; c++) cp_byte[c] = -1;
  int extra = 0;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    byte_cp[b] = (uint16_t)(printable ? b : 256 + extra++);
    cp_byte[byte_cp[b]] = (int16_t)b;
  }
}

/* ByteLevel-decodes a UTF-8 string (valid, from jansson) into out; 0 when some
 * character is outside the byte alphabet (out is then unchanged). */
static int byte_level_decode(const int16_t cp_byte[324], const char *s, size_t n, tok_bytes *out) {
  size_t n0 = out->n;
  srlm_tok_bytes_reserve(out, n);
  for (size_t i = 0; i < n;) {
    int len;
    uint32_t cp = srlm_tok_utf8_decode((const uint8_t *)s + i, n - i, &len);
    if (cp >= 324 || cp_byte[cp] < 0) {
      out->n = n0;
      return 0;
    }
    out->p[out->n++] = (char)cp_byte[cp];
    i += (size_t)len;
  }
  return 1;
}

/* ---- tries ------------------------------------------------------------- */

void srlm_tok_matcher_init(tok_matcher *m) {
  memset(m, 0, sizeof *m);
  m->cap = 64;
  m->nodes = srlm_xmalloc((size_t)m->cap * sizeof *m->nodes);
  m->nodes[0] = (tok_trie_node){-1, -1, -1, 0};
  m->n_nodes = 1;
}

void srlm_tok_matcher_free(tok_matcher *m) {
  free(m->nodes);
  memset(m, 0, sizeof *m);
}

void srlm_tok_matcher_add(tok_matcher *m, const uint8_t *s, size_t n, int32_t added_index) {
  int32_t node = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t c = m->nodes[node].child;
    while (c >= 0 && m->nodes[c].byte != s[i]) c = m->nodes[c].sibling;
    if (c < 0) {
      if (m->n_nodes == m->cap) {
        m->cap *= 2;
        m->nodes = srlm_xrealloc(m->nodes, (size_t)m->cap * sizeof *m->nodes);
      }
      c = m->n_nodes++;
      m->nodes[c] = (tok_trie_node){-1, m->nodes[node].child, -1, s[i]};
      m->nodes[node].child = c;
    }
    node = c;
  }
  /* HF keeps the last definition of a duplicated content */
  m->nodes[node].added = added_index;
  m->first[s[0]] = 1;
  m->n_tokens++;
}

/* ---- vocabulary and merge tables ---------------------------------------- */

static size_t pow2_at_least(size_t n) {
  size_t c = 16;
  while (c < n) c *= 2;
  return c;
}

int32_t srlm_tok_vocab_lookup(const srlm_tokenizer *tok, const void *s, size_t n, uint64_t h) {
  size_t i = (size_t)h & tok->vocab_mask;
  uint32_t h32 = (uint32_t)(h >> 32);
  for (;;) {
    const tok_vocab_slot *sl = &tok->vocab[i];
    if (sl->id < 0) return -1;
    if (sl->hash == h32 && sl->len == n && memcmp(tok->pool.p + sl->off, s, n) == 0) return sl->id;
    i = (i + 1) & tok->vocab_mask;
  }
}

/* Inserts bytes pool[off..off+len) -> id; returns the id already there, or -1. */
static int32_t vocab_insert(srlm_tokenizer *tok, uint32_t off, uint32_t len, int32_t id) {
  uint64_t h = srlm_tok_hash(tok->pool.p + off, len);
  size_t i = (size_t)h & tok->vocab_mask;
  uint32_t h32 = (uint32_t)(h >> 32);
  for (;;) {
    tok_vocab_slot *sl = &tok->vocab[i];
    if (sl->id < 0) {
      *sl = (tok_vocab_slot){h32, id, off, len};
      return -1;
    }
    if (sl->hash == h32 && sl->len == len && memcmp(tok->pool.p + sl->off, tok->pool.p + off, len) == 0)
      return sl->id;
    i = (i + 1) & tok->vocab_mask;
  }
}

static void merge_insert(srlm_tokenizer *tok, int32_t a, int32_t b, uint32_t rank, int32_t id) {
  uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
  size_t i = tok_merge_slot_index(key, tok->merge_mask);
  for (;;) {
    tok_merge_slot *sl = &tok->merges[i];
    if (sl->key == UINT64_MAX || sl->key == key) {
      /* a repeated pair keeps its last rank, as HF's map insert does */
      *sl = (tok_merge_slot){key, rank, id};
      return;
    }
    i = (i + 1) & tok->merge_mask;
  }
}

void srlm_tok_free_tables(srlm_tokenizer *tok) {
  free(tok->path);
  free(tok->id_off);
  free(tok->id_len);
  free(tok->id_flags);
  free(tok->pool.p);
  free(tok->vocab);
  free(tok->merges);
  if (tok->md) pcre2_match_data_free(tok->md);
  if (tok->mctx) pcre2_match_context_free(tok->mctx);
  if (tok->jit_stack) pcre2_jit_stack_free(tok->jit_stack);
  if (tok->re) pcre2_code_free(tok->re);
  if (tok->word_md) pcre2_match_data_free(tok->word_md);
  if (tok->word_re) pcre2_code_free(tok->word_re);
  free(tok->added);
  srlm_tok_matcher_free(&tok->raw_m);
  srlm_tok_matcher_free(&tok->norm_m);
  free(tok->cache);
  free(tok->cache_pool);
  free(tok->norm_buf.p);
  free(tok->align.c);
  free(tok->sym_id);
  free(tok->sym_rank);
  free(tok->sym_mid);
  free(tok->sym_prev);
  free(tok->sym_next);
  free(tok->heap);
}

/* ---- JSON helpers -------------------------------------------------------- */

/* A short printable form of a JSON string for messages. */
static const char *clip(const char *s, char buf[64]) {
  size_t n = strlen(s);
  if (n < 48) return s;
  size_t cut = 44;
  while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
  snprintf(buf, 64, "%.*s...", (int)cut, s);
  return buf;
}


/* Optional boolean field: absent or null gives def. */
static srlm_status get_bool(const char *file, const json_t *obj, const char *key, const char *path,
                            int def, int *out) {
  const json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) {
    *out = def;
    return SRLM_OK;
  }
  if (!json_is_boolean(v))
    return srlm_error(SRLM_ERR_FORMAT, file, "%s.%s: expected a boolean, got %s", path, key,
                      srlm_json_type_name(v));
  *out = json_is_true(v);
  return SRLM_OK;
}

static srlm_status get_type(const char *file, const json_t *obj, const char *path, const char **type) {
  const json_t *t = json_object_get(obj, "type");
  if (!t) return srlm_error(SRLM_ERR_FORMAT, file, "%s.type: missing", path);
  if (!json_is_string(t))
    return srlm_error(SRLM_ERR_FORMAT, file, "%s.type: expected a string, got %s", path, srlm_json_type_name(t));
  *type = json_string_value(t);
  return SRLM_OK;
}

/* ---- sections ------------------------------------------------------------ */

static srlm_status parse_normalizer(srlm_tokenizer *tok, const json_t *v, const char *path) {
  const char *file = tok->path;
  if (!v || json_is_null(v)) return SRLM_OK;
  if (!json_is_object(v))
    return srlm_error(SRLM_ERR_FORMAT, file, "%s: expected an object or null, got %s", path, srlm_json_type_name(v));
  const char *type = NULL;
  SRLM_TRY(get_type(file, v, path, &type));
  if (!strcmp(type, "NFC")) {
    tok->nfc = 1;
    return SRLM_OK;
  }
  if (!strcmp(type, "Sequence")) {
    const json_t *list = json_object_get(v, "normalizers");
    if (!json_is_array(list))
      return srlm_error(SRLM_ERR_FORMAT, file, "%s.normalizers: expected an array", path);
    for (size_t i = 0; i < json_array_size(list); i++) {
      char sub[256];
      snprintf(sub, sizeof sub, "%s.normalizers[%zu]", path, i);
      SRLM_TRY(parse_normalizer(tok, json_array_get(list, i), sub));
    }
    return SRLM_OK;
  }
  return srlm_error(SRLM_ERR_UNSUPPORTED, file, "%s.type: normalizer '%s' is not supported (supported: NFC, Sequence)",
                    path, type);
}

/* Rewrites \s and \S so that they match Unicode White_Space, as the Oniguruma regexes
 * of HF tokenizers do: PCRE2's UCP \s lacks U+0085 (NEL). Inside a class \s becomes
 * \s\x{85}; outside, \s becomes [\s\x{85}] and \S becomes [^\s\x{85}]. */
static char *widen_space_classes(const char *pat) {
  size_t n = strlen(pat);
  char *out = srlm_xmalloc(n * 12 + 1);
  size_t o = 0;
  int in_class = 0;
  for (size_t i = 0; i < n; i++) {
    char c = pat[i];
    if (c == '\\' && i + 1 < n) {
      char d = pat[i + 1];
      if (d == 's' || d == 'S') {
        const char *rep = in_class ? (d == 's' ? "\\s\\x{85}" : "\\S") /* \S in a class: rare, left as is */
                                   : (d == 's' ? "[\\s\\x{85}]" : "[^\\s\\x{85}]");
        size_t rl = strlen(rep);
        memcpy(out + o, rep, rl);
        o += rl;
      } else {
        out[o++] = c;
        out[o++] = d;
      }
      i++;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = 1;
      out[o++] = c;
      /* a leading ^ or ] belongs to the class */
      if (i + 1 < n && pat[i + 1] == '^') out[o++] = pat[++i];
      if (i + 1 < n && pat[i + 1] == ']') out[o++] = pat[++i];
      continue;
    }
    if (in_class && c == ']') in_class = 0;
    out[o++] = c;
  }
  out[o] = '\0';
  return out;
}

static srlm_status compile_regex(srlm_tokenizer *tok, const char *pattern, int literal, const char *path) {
  char *pat;
  if (literal) {
    /* a String pattern: quote it */
    size_t n = strlen(pattern);
    pat = srlm_xmalloc(n * 2 + 8);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
      unsigned char c = (unsigned char)pattern[i];
      if (c < 0x80 && strchr("\\^$.|?*+()[]{}-/#&~ ", c) && c != 0) pat[o++] = '\\';
      pat[o++] = (char)c;
    }
    pat[o] = '\0';
  } else {
    pat = widen_space_classes(pattern);
  }
  int err;
  PCRE2_SIZE erroff;
  tok->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &erroff, NULL);
  free(pat);
  if (!tok->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return srlm_error(SRLM_ERR_UNSUPPORTED, tok->path, "%s: regex does not compile with PCRE2 at offset %zu: %s",
                      path, (size_t)erroff, (const char *)msg);
  }
  tok->jit = pcre2_jit_compile(tok->re, PCRE2_JIT_COMPLETE) == 0;
  tok->md = pcre2_match_data_create_from_pattern(tok->re, NULL);
  tok->mctx = pcre2_match_context_create(NULL);
  if (!tok->md || !tok->mctx) return srlm_error(SRLM_ERR_NOMEM, tok->path, "PCRE2 match data");
  if (tok->jit) {
    /* long whitespace runs backtrack through (?!\S): give the JIT room */
    tok->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!tok->jit_stack) return srlm_error(SRLM_ERR_NOMEM, tok->path, "PCRE2 JIT stack");
    pcre2_jit_stack_assign(tok->mctx, NULL, tok->jit_stack);
  }
  return SRLM_OK;
}

static srlm_status parse_split(srlm_tokenizer *tok, const json_t *v, const char *path) {
  const char *file = tok->path;
  if (tok->re) return srlm_error(SRLM_ERR_UNSUPPORTED, file, "%s: only one Split pre-tokenizer is supported", path);
  const json_t *pat = json_object_get(v, "pattern");
  if (!json_is_object(pat))
    return srlm_error(SRLM_ERR_FORMAT, file, "%s.pattern: expected an object {\"Regex\": ...} or {\"String\": ...}", path);
  const json_t *re = json_object_get(pat, "Regex");
  const json_t *str = json_object_get(pat, "String");
  if (!(json_is_string(re) || json_is_string(str)))
    return srlm_error(SRLM_ERR_FORMAT, file, "%s.pattern: expected a \"Regex\" or \"String\" string", path);
  const json_t *beh = json_object_get(v, "behavior");
  if (!json_is_string(beh)) return srlm_error(SRLM_ERR_FORMAT, file, "%s.behavior: expected a string", path);
  const char *b = json_string_value(beh);
  if (!strcmp(b, "Removed")) tok->split_removed = 1;
  else if (strcmp(b, "Isolated") != 0)
    return srlm_error(SRLM_ERR_UNSUPPORTED, file, "%s.behavior: '%s' is not supported (supported: Isolated, Removed)", path, b);
  int invert = 0;
  SRLM_TRY(get_bool(file, v, "invert", path, 0, &invert));
  if (invert) return srlm_error(SRLM_ERR_UNSUPPORTED, file, "%s.invert: true is not supported", path);
  char sub[256];
  snprintf(sub, sizeof sub, "%s.pattern.%s", path, re ? "Regex" : "String");
  return compile_regex(tok, json_string_value(re ? re : str), re == NULL, sub);
}

static srlm_status parse_byte_level(srlm_tokenizer *tok, const json_t *v, const char *path, int *use_regex) {
  int aps = 0;
  SRLM_TRY(get_bool(tok->path, v, "add_prefix_space", path, 1, &aps));
  if (aps)
    return srlm_error(SRLM_ERR_UNSUPPORTED, tok->path, "%s.add_prefix_space: true is not supported", path);
  return get_bool(tok->path, v, "use_regex", path, 1, use_regex);
}

static srlm_status parse_pre_tokenizer(srlm_tokenizer *tok, const json_t *v) {
  const char *file = tok->path;
  if (!v || json_is_null(v))
    return srlm_error(SRLM_ERR_UNSUPPORTED, file, "pre_tokenizer: missing (a ByteLevel pre-tokenizer is required)");
  if (!json_is_object(v))
    return srlm_error(SRLM_ERR_FORMAT, file, "pre_tokenizer: expected an object, got %s", srlm_json_type_name(v));
  const char *type = NULL;
  SRLM_TRY(get_type(file, v, "pre_tokenizer", &type));
  int byte_level = 0, use_regex = 0;
  if (!strcmp(type, "ByteLevel")) {
    byte_level = 1;
    SRLM_TRY(parse_byte_level(tok, v, "pre_tokenizer", &use_regex));
  } else if (!strcmp(type, "Sequence")) {
    const json_t *list = json_object_get(v, "pretokenizers");
    if (!json_is_array(list))
      return srlm_error(SRLM_ERR_FORMAT, file, "pre_tokenizer.pretokenizers: expected an array");
    size_t n = json_array_size(list);
    for (size_t i = 0; i < n; i++) {
      char path[128];
      snprintf(path, sizeof path, "pre_tokenizer.pretokenizers[%zu]", i);
      const json_t *p = json_array_get(list, i);
      if (!json_is_object(p))
        return srlm_error(SRLM_ERR_FORMAT, file, "%s: expected an object, got %s", path, srlm_json_type_name(p));
      const char *pt = NULL;
      SRLM_TRY(get_type(file, p, path, &pt));
      if (!strcmp(pt, "Split")) {
        if (byte_level)
          return srlm_error(SRLM_ERR_UNSUPPORTED, file, "%s: a Split after ByteLevel is not supported", path);
        SRLM_TRY(parse_split(tok, p, path));
      } else if (!strcmp(pt, "ByteLevel")) {
        byte_level = 1;
        SRLM_TRY(parse_byte_level(tok, p, path, &use_regex));
        if (use_regex && tok->re)
          return srlm_error(SRLM_ERR_UNSUPPORTED, file, "%s.use_regex: true after a Split is not supported", path);
      } else {
        return srlm_error(SRLM_ERR_UNSUPPORTED, file,
                          "%s.type: pre-tokenizer '%s' is not supported (supported: Split, ByteLevel)", path, pt);
      }
    }
  } else {
    return srlm_error(SRLM_ERR_UNSUPPORTED, file,
                      "pre_tokenizer.type: '%s' is not supported (supported: Sequence, Split, ByteLevel)", type);
  }
  if (!byte_level)
    return srlm_error(SRLM_ERR_UNSUPPORTED, file, "pre_tokenizer: no ByteLevel step (only byte-level BPE is supported)");
  if (use_regex) SRLM_TRY(compile_regex(tok, k_gpt2_pattern, 0, "pre_tokenizer (ByteLevel regex)"));
  if (!tok->re)
    return srlm_error(SRLM_ERR_UNSUPPORTED, file, "pre_tokenizer: no Split regex and ByteLevel use_regex is false");
  return SRLM_OK;
}

static srlm_status parse_decoder(srlm_tokenizer *tok, const json_t *v) {
  const char *file = tok->path;
  if (!v || json_is_null(v))
    return srlm_error(SRLM_ERR_UNSUPPORTED, file, "decoder: missing (a ByteLevel decoder is required)");
  if (!json_is_object(v))
    return srlm_error(SRLM_ERR_FORMAT, file, "decoder: expected an object, got %s", srlm_json_type_name(v));
  const char *type = NULL;
  SRLM_TRY(get_type(file, v, "decoder", &type));
  if (strcmp(type, "ByteLevel") != 0)
    return srlm_error(SRLM_ERR_UNSUPPORTED, file, "decoder.type: '%s' is not supported (supported: ByteLevel)", type);
  return SRLM_OK;
}

static srlm_status parse_model(srlm_tokenizer *tok, const json_t *model, const int16_t cp_byte[324],
                               int32_t max_added_id) {
  const char *file = tok->path;
  if (!model) return srlm_error(SRLM_ERR_FORMAT, file, "model: missing");
  if (!json_is_object(model))
    return srlm_error(SRLM_ERR_FORMAT, file, "model: expected an object, got %s", srlm_json_type_name(model));
  const json_t *type = json_object_get(model, "type");
  if (type && !json_is_string(type))
    return srlm_error(SRLM_ERR_FORMAT, file, "model.type: expected a string, got %s", srlm_json_type_name(type));
  if (type && strcmp(json_string_value(type), "BPE") != 0)
    return srlm_error(SRLM_ERR_UNSUPPORTED, file, "model.type: '%s' is not supported (only BPE)",
                      json_string_value(type));
  const json_t *dropout = json_object_get(model, "dropout");
  if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
    return srlm_error(SRLM_ERR_UNSUPPORTED, file, "model.dropout: BPE dropout is not supported");
  static const char *const k_empty_keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
  for (int k = 0; k < 2; k++) {
    const json_t *s = json_object_get(model, k_empty_keys[k]);
    if (s && !json_is_null(s) && !(json_is_string(s) && json_string_length(s) == 0))
      return srlm_error(SRLM_ERR_UNSUPPORTED, file, "model.%s: only null or \"\" is supported", k_empty_keys[k]);
  }
  int byte_fallback = 0;
  SRLM_TRY(get_bool(file, model, "byte_fallback", "model", 0, &byte_fallback));
  if (byte_fallback) return srlm_error(SRLM_ERR_UNSUPPORTED, file, "model.byte_fallback: true is not supported");
  SRLM_TRY(get_bool(file, model, "ignore_merges", "model", 0, &tok->ignore_merges));

  const json_t *vocab = json_object_get(model, "vocab");
  if (!vocab) return srlm_error(SRLM_ERR_FORMAT, file, "model.vocab: missing");
  if (!json_is_object(vocab))
    return srlm_error(SRLM_ERR_FORMAT, file, "model.vocab: expected an object, got %s", srlm_json_type_name(vocab));
  const json_t *merges = json_object_get(model, "merges");
  if (!merges) return srlm_error(SRLM_ERR_FORMAT, file, "model.merges: missing");
  if (!json_is_array(merges))
    return srlm_error(SRLM_ERR_FORMAT, file, "model.merges: expected an array, got %s", srlm_json_type_name(merges));

  /* ids */
  size_t nv = json_object_size(vocab);
  if (nv > (size_t)INT32_MAX / 2) return srlm_error(SRLM_ERR_FORMAT, file, "model.vocab: too large");
  int32_t max_id = max_added_id;
  const char *key;
  const json_t *val;
  char cbuf[64];
  json_object_foreach((json_t *)vocab, key, val) {
    if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= INT32_MAX / 2)
      return srlm_error(SRLM_ERR_FORMAT, file, "model.vocab[\"%s\"]: expected an id (a non-negative integer), got %s",
                        clip(key, cbuf), srlm_json_type_name(val));
    if (json_integer_value(val) > max_id) max_id = (int32_t)json_integer_value(val);
  }
  tok->n_vocab = (int32_t)nv;
  tok->n_ids = max_id + 1;
  tok->id_off = srlm_xmalloc((size_t)tok->n_ids * sizeof *tok->id_off);
  tok->id_len = srlm_xmalloc((size_t)tok->n_ids * sizeof *tok->id_len);
  tok->id_flags = srlm_xcalloc((size_t)tok->n_ids, 1);
  for (int32_t i = 0; i < tok->n_ids; i++) tok->id_len[i] = UINT32_MAX;
  tok->vocab_mask = pow2_at_least(nv * 2 + 1) - 1;
  tok->vocab = srlm_xmalloc((tok->vocab_mask + 1) * sizeof *tok->vocab);
  for (size_t i = 0; i <= tok->vocab_mask; i++) tok->vocab[i].id = -1;

  json_object_foreach((json_t *)vocab, key, val) {
    int32_t id = (int32_t)json_integer_value(val);
    if (tok->id_len[id] != UINT32_MAX)
      return srlm_error(SRLM_ERR_FORMAT, file, "model.vocab[\"%s\"]: id %d is used twice", clip(key, cbuf), id);
    size_t klen = strlen(key);
    uint32_t off = (uint32_t)tok->pool.n;
    if (byte_level_decode(cp_byte, key, klen, &tok->pool)) {
      uint32_t len = (uint32_t)(tok->pool.n - off);
      int32_t prev = vocab_insert(tok, off, len, id);
      if (prev >= 0) return srlm_error(SRLM_ERR_INTERNAL, file, "model.vocab[\"%s\"]: duplicate bytes", clip(key, cbuf));
      tok->id_off[id] = off;
      tok->id_len[id] = len;
    } else {
      /* not byte-level: decodes to its own UTF-8 (as HF's ByteLevel decoder does); BPE never produces it */
      srlm_tok_bytes_append(&tok->pool, key, klen);
      tok->id_off[id] = off;
      tok->id_len[id] = (uint32_t)klen;
    }
  }
  for (int b = 0; b < 256; b++) {
    uint8_t byte = (uint8_t)b;
    tok->byte_id[b] = srlm_tok_vocab_lookup(tok, &byte, 1, srlm_tok_hash(&byte, 1));
    /* A task vocabulary (e.g. only digits and signs) may lack bytes; encoding text that
       uses one is then an error naming the byte (HF would drop it silently). */
    if (tok->byte_id[b] < 0) tok->missing_bytes++;
  }

  /* merges */
  size_t nm = json_array_size(merges);
  if (nm > (size_t)INT32_MAX / 4) return srlm_error(SRLM_ERR_FORMAT, file, "model.merges: too large");
  tok->n_merges = (int32_t)nm;
  tok->merge_mask = pow2_at_least(nm * 2 + 1) - 1;
  tok->merges = srlm_xmalloc((tok->merge_mask + 1) * sizeof *tok->merges);
  memset(tok->merges, 0xFF, (tok->merge_mask + 1) * sizeof *tok->merges);
  tok_bytes tmp = {0};
  srlm_status st = SRLM_OK;
  for (size_t i = 0; i < nm && st == SRLM_OK; i++) {
    const json_t *m = json_array_get(merges, i);
    const char *part[2];
    size_t plen[2];
    if (json_is_string(m)) {
      const char *s = json_string_value(m);
      const char *sp = strchr(s, ' ');
      if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) {
        st = srlm_error(SRLM_ERR_FORMAT, file, "model.merges[%zu]: expected \"left right\" (one space), got \"%s\"", i,
                        clip(s, cbuf));
        break;
      }
      part[0] = s;
      plen[0] = (size_t)(sp - s);
      part[1] = sp + 1;
      plen[1] = strlen(sp + 1);
    } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
               json_is_string(json_array_get(m, 1))) {
      for (int k = 0; k < 2; k++) {
        part[k] = json_string_value(json_array_get(m, k));
        plen[k] = json_string_length(json_array_get(m, k));
      }
    } else {
      st = srlm_error(SRLM_ERR_FORMAT, file, "model.merges[%zu]: expected a string \"left right\" or a pair [left, right], got %s",
                      i, srlm_json_type_name(m));
      break;
    }
    int32_t ids[2];
    tmp.n = 0;
    for (int k = 0; k < 2 && st == SRLM_OK; k++) {
      size_t at = tmp.n;
      if (!byte_level_decode(cp_byte, part[k], plen[k], &tmp)) {
        st = srlm_error(SRLM_ERR_FORMAT, file, "model.merges[%zu]: '%.*s' is not a byte-level token", i, (int)plen[k], part[k]);
        break;
      }
      ids[k] = srlm_tok_vocab_lookup(tok, tmp.p + at, tmp.n - at, srlm_tok_hash(tmp.p + at, tmp.n - at));
      if (ids[k] < 0)
        st = srlm_error(SRLM_ERR_FORMAT, file, "model.merges[%zu]: token '%.*s' is not in model.vocab", i, (int)plen[k], part[k]);
    }
    if (st != SRLM_OK) break;
    int32_t mid = srlm_tok_vocab_lookup(tok, tmp.p, tmp.n, srlm_tok_hash(tmp.p, tmp.n));
    if (mid < 0) {
      st = srlm_error(SRLM_ERR_FORMAT, file, "model.merges[%zu]: merged token '%.*s%.*s' is not in model.vocab", i,
                      (int)plen[0], part[0], (int)plen[1], part[1]);
      break;
    }
    merge_insert(tok, ids[0], ids[1], (uint32_t)i, mid);
  }
  free(tmp.p);
  return st;
}

/* First pass over added_tokens: validation and the largest id. */
static srlm_status check_added(const char *file, const json_t *added, int32_t *max_id) {
  *max_id = -1;
  if (!added || json_is_null(added)) return SRLM_OK;
  if (!json_is_array(added))
    return srlm_error(SRLM_ERR_FORMAT, file, "added_tokens: expected an array, got %s", srlm_json_type_name(added));
  for (size_t i = 0; i < json_array_size(added); i++) {
    const json_t *a = json_array_get(added, i);
    if (!json_is_object(a))
      return srlm_error(SRLM_ERR_FORMAT, file, "added_tokens[%zu]: expected an object, got %s", i, srlm_json_type_name(a));
    const json_t *id = json_object_get(a, "id");
    if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= INT32_MAX / 2)
      return srlm_error(SRLM_ERR_FORMAT, file, "added_tokens[%zu].id: expected a non-negative integer", i);
    const json_t *c = json_object_get(a, "content");
    if (!json_is_string(c) || json_string_length(c) == 0)
      return srlm_error(SRLM_ERR_FORMAT, file, "added_tokens[%zu].content: expected a non-empty string", i);
    if (json_integer_value(id) > *max_id) *max_id = (int32_t)json_integer_value(id);
  }
  return SRLM_OK;
}

static srlm_status parse_added(srlm_tokenizer *tok, const json_t *added, const int16_t cp_byte[324]) {
  const char *file = tok->path;
  srlm_tok_matcher_init(&tok->raw_m);
  srlm_tok_matcher_init(&tok->norm_m);
  size_t n = (added && json_is_array(added)) ? json_array_size(added) : 0;
  tok->added = srlm_xcalloc(n ? n : 1, sizeof *tok->added);
  int any_single_word = 0;
  for (size_t i = 0; i < n; i++) {
    const json_t *a = json_array_get(added, i);
    char path[64];
    snprintf(path, sizeof path, "added_tokens[%zu]", i);
    tok_added *t = &tok->added[i];
    int special = 0, lstrip = 0, rstrip = 0, single_word = 0, normalized = 0;
    SRLM_TRY(get_bool(file, a, "special", path, 0, &special));
    SRLM_TRY(get_bool(file, a, "lstrip", path, 0, &lstrip));
    SRLM_TRY(get_bool(file, a, "rstrip", path, 0, &rstrip));
    SRLM_TRY(get_bool(file, a, "single_word", path, 0, &single_word));
    SRLM_TRY(get_bool(file, a, "normalized", path, !special, &normalized));
    t->id = (int32_t)json_integer_value(json_object_get(a, "id"));
    t->special = (uint8_t)special;
    t->lstrip = (uint8_t)lstrip;
    t->rstrip = (uint8_t)rstrip;
    t->single_word = (uint8_t)single_word;
    t->normalized = (uint8_t)(normalized && tok->nfc); /* with no normalizer both passes see the same text */
    any_single_word |= single_word;
    const json_t *c = json_object_get(a, "content");
    const char *content = json_string_value(c);
    size_t clen = json_string_length(c);
    if (memchr(content, 0, clen))
      return srlm_error(SRLM_ERR_FORMAT, file, "%s.content: contains a NUL character", path);

    /* decode bytes: HF's ByteLevel decoder maps the content when every character is in
       the byte alphabet, else passes it through */
    uint32_t off = (uint32_t)tok->pool.n;
    if (!byte_level_decode(cp_byte, content, clen, &tok->pool)) srlm_tok_bytes_append(&tok->pool, content, clen);
    tok->id_off[t->id] = off;
    tok->id_len[t->id] = (uint32_t)(tok->pool.n - off);
    tok->id_flags[t->id] = (uint8_t)(TOK_FLAG_ADDED | (special ? TOK_FLAG_SPECIAL : 0));

    /* match content: the normalized form for normalized tokens */
    t->off = (uint32_t)tok->pool.n;
    if (t->normalized) {
      tok_bytes nb = {0};
      srlm_tok_nfc((const uint8_t *)content, clen, &nb, NULL);
      srlm_tok_bytes_append(&tok->pool, nb.p, nb.n);
      free(nb.p);
    } else {
      srlm_tok_bytes_append(&tok->pool, content, clen);
    }
    t->len = (uint32_t)(tok->pool.n - t->off);
  }
  /* the pool may have moved: insert into the tries only now */
  for (size_t i = 0; i < n; i++) {
    tok_added *t = &tok->added[i];
    srlm_tok_matcher_add(t->normalized ? &tok->norm_m : &tok->raw_m, (const uint8_t *)tok->pool.p + t->off, t->len,
                    (int32_t)i);
  }
  tok->n_added = (int32_t)n;
  if (any_single_word) {
    int err;
    PCRE2_SIZE erroff;
    tok->word_re = pcre2_compile((PCRE2_SPTR) "\\w", PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &err,
                                 &erroff, NULL);
    if (!tok->word_re) return srlm_error(SRLM_ERR_INTERNAL, file, "cannot compile the word-character regex");
    tok->word_md = pcre2_match_data_create_from_pattern(tok->word_re, NULL);
  }
  return SRLM_OK;
}

static srlm_status load_json(srlm_tokenizer *tok, const json_t *root) {
  const char *file = tok->path;
  if (!json_is_object(root))
    return srlm_error(SRLM_ERR_FORMAT, file, "top level: expected an object, got %s", srlm_json_type_name(root));
  uint16_t byte_cp[256];
  int16_t cp_byte[324];
  byte_level_tables(byte_cp, cp_byte);

  SRLM_TRY(parse_normalizer(tok, json_object_get(root, "normalizer"), "normalizer"));
  SRLM_TRY(parse_pre_tokenizer(tok, json_object_get(root, "pre_tokenizer")));
  SRLM_TRY(parse_decoder(tok, json_object_get(root, "decoder")));
  const json_t *added = json_object_get(root, "added_tokens");
  int32_t max_added;
  SRLM_TRY(check_added(file, added, &max_added));
  SRLM_TRY(parse_model(tok, json_object_get(root, "model"), cp_byte, max_added));
  SRLM_TRY(parse_added(tok, added, cp_byte));
  return SRLM_OK;
}

static srlm_status resolve_path(const char *path, char **file) {
  struct stat st;
  if (stat(path, &st) != 0) return srlm_error(SRLM_ERR_IO, path, "cannot open tokenizer: %s", strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    size_t n = strlen(path);
    *file = srlm_xmalloc(n + 32);
    snprintf(*file, n + 32, "%s%stokenizer.json", path, (n && path[n - 1] == '/') ? "" : "/");
    if (stat(*file, &st) != 0) {
      srlm_status e = srlm_error(SRLM_ERR_IO, path, "no tokenizer.json in this directory (%s)", strerror(errno));
      free(*file);
      *file = NULL;
      return e;
    }
  } else {
    *file = srlm_xstrdup(path);
  }
  return SRLM_OK;
}

srlm_status srlm_tokenizer_load(const char *path, srlm_tokenizer **out) {
  *out = NULL;
  double t0 = srlm_time_now();
  srlm_tokenizer *tok = srlm_xcalloc(1, sizeof *tok);
  srlm_status st = resolve_path(path, &tok->path);
  char *data = NULL;
  size_t size = 0;
  if (st == SRLM_OK) st = srlm_read_file(tok->path, &data, &size);
  if (st == SRLM_OK) {
    json_error_t jerr;
    json_t *root = json_loadb(data, size, 0, &jerr);
    free(data);
    if (!root) {
      char where[4096];
      snprintf(where, sizeof where, "%s:%d:%d", tok->path, jerr.line, jerr.column);
      st = srlm_error(SRLM_ERR_FORMAT, where, "invalid JSON: %s", jerr.text);
    } else {
      st = load_json(tok, root);
      json_decref(root);
    }
  }
  if (st != SRLM_OK) {
    srlm_tok_free_tables(tok);
    free(tok);
    return st;
  }
  tok->cache = srlm_xcalloc(TOK_CACHE_SLOTS, sizeof *tok->cache);
  tok->cache_pool = srlm_xmalloc(TOK_CACHE_POOL);
  tok->load_seconds = srlm_time_now() - t0;
  *out = tok;
  return SRLM_OK;
}

void srlm_tokenizer_free(srlm_tokenizer *tok) {
  if (!tok) return;
  srlm_tok_free_tables(tok);
  free(tok);
}

void srlm_tokenizer_get_info(const srlm_tokenizer *tok, srlm_tokenizer_info *info) {
  info->n_vocab = tok->n_vocab;
  info->n_merges = tok->n_merges;
  info->n_added = tok->n_added;
  info->ignore_merges = tok->ignore_merges;
  info->nfc = tok->nfc;
  info->jit = tok->jit;
  info->load_seconds = tok->load_seconds;
}
