/* The tokenizer's encode and decode paths (tables are built by tokenizer_load.c).
 *
 * Encode: added tokens (raw text) -> per gap: NFC -> added tokens (normalized text)
 * -> Split regex pieces -> BPE per piece. A piece's ids are cached by its bytes.
 * BPE merges the lowest-ranked adjacent pair first, leftmost on ties (HF's order):
 * short pieces with a linear scan over an array of pair ranks, long ones with a
 * min-heap over a linked list of symbols, so no input is quadratic.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* Pieces up to this many bytes use the linear-scan merge loop, longer ones the heap.
 * Cold-cache encode of the golden texts (bench_tokenizer encode_cold, Mtok/s, llama3 /
 * qwen3): 8 -> 16.3 / 12.7, 24 -> 17.5 / 14.4, 48 -> 17.4 / 15.0, 128 -> 17.5 / 14.9. */
#define TOK_SMALL_PIECE 48

/* ---- UTF-8 ------------------------------------------------------------- */

uint32_t srlm_tok_utf8_decode(const uint8_t *s, size_t n, int *len) {
  uint8_t c = s[0];
  if (c < 0x80 || n < 2) {
    *len = 1;
    return c;
  }
  if (c < 0xE0) {
    *len = 2;
    return ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
  }
  if (c < 0xF0 || n < 4) {
    *len = 3;
    return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
  }
  *len = 4;
  return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
         (s[3] & 0x3F);
}

int srlm_tok_utf8_encode(uint32_t cp, uint8_t out[4]) {
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (uint8_t)(0xC0 | (cp >> 6));
    out[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (uint8_t)(0xE0 | (cp >> 12));
    out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (uint8_t)(0xF0 | (cp >> 18));
  out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}

/* Length of the UTF-8 sequence led by c (0: not a lead byte). */
static int utf8_seq_len(uint8_t c) {
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  if (c < 0xF5) return 4;
  return 0;
}

/* Whether s[1] may follow lead s[0] (excludes overlongs, surrogates, > U+10FFFF). */
static int utf8_second_ok(uint8_t lead, uint8_t c) {
  if ((c & 0xC0) != 0x80) return 0;
  if (lead == 0xE0) return c >= 0xA0;
  if (lead == 0xED) return c <= 0x9F;
  if (lead == 0xF0) return c >= 0x90;
  if (lead == 0xF4) return c <= 0x8F;
  return 1;
}

int srlm_tok_utf8_valid(const uint8_t *s, size_t n, size_t *bad) {
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      /* ASCII runs: 8 bytes at a time */
      while (i + 8 <= n) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        if (v & 0x8080808080808080ull) break;
        i += 8;
      }
      while (i < n && s[i] < 0x80) i++;
      continue;
    }
    int len = utf8_seq_len(s[i]);
    if (len == 0 || i + (size_t)len > n || !utf8_second_ok(s[i], s[i + 1])) {
      *bad = i;
      return 0;
    }
    for (int k = 2; k < len; k++)
      if ((s[i + (size_t)k] & 0xC0) != 0x80) {
        *bad = i;
        return 0;
      }
    i += (size_t)len;
  }
  return 1;
}

int srlm_tok_is_white_space(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return 0;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* ---- id lists ------------------------------------------------------------ */

static void ids_reserve(srlm_token_ids *v, size_t extra, int with_start) {
  if (v->n + extra > v->cap) {
    size_t cap = v->cap ? v->cap : 64;
    while (cap < v->n + extra) cap *= 2;
    v->ids = srlm_xrealloc(v->ids, cap * sizeof *v->ids);
    if (v->start) v->start = srlm_xrealloc(v->start, cap * sizeof *v->start);
    v->cap = cap;
  }
  if (with_start && !v->start) {
    v->start = srlm_xcalloc(v->cap, sizeof *v->start);
  }
}

void srlm_token_ids_push(srlm_token_ids *v, int32_t id) {
  ids_reserve(v, 1, 0);
  v->ids[v->n++] = id;
}
void srlm_token_ids_clear(srlm_token_ids *v) { v->n = 0; }
void srlm_token_ids_free(srlm_token_ids *v) {
  free(v->ids);
  free(v->start);
  memset(v, 0, sizeof *v);
}

/* ---- BPE ------------------------------------------------------------------ */

static inline uint32_t pair_rank(const srlm_tokenizer *tok, int32_t a, int32_t b, int32_t *mid) {
  uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
  size_t i = tok_merge_slot_index(key, tok->merge_mask);
  for (;;) {
    const tok_merge_slot *sl = &tok->merges[i];
    if (sl->key == key) {
      *mid = sl->id;
      return sl->rank;
    }
    if (sl->key == UINT64_MAX) return UINT32_MAX;
    i = (i + 1) & tok->merge_mask;
  }
}

static void scratch_reserve(srlm_tokenizer *tok, size_t n) {
  if (n <= tok->sym_cap) return;
  size_t cap = tok->sym_cap ? tok->sym_cap : 256;
  while (cap < n) cap *= 2;
  tok->sym_id = srlm_xrealloc(tok->sym_id, cap * sizeof *tok->sym_id);
  tok->sym_rank = srlm_xrealloc(tok->sym_rank, cap * sizeof *tok->sym_rank);
  tok->sym_mid = srlm_xrealloc(tok->sym_mid, cap * sizeof *tok->sym_mid);
  tok->sym_prev = srlm_xrealloc(tok->sym_prev, cap * sizeof *tok->sym_prev);
  tok->sym_next = srlm_xrealloc(tok->sym_next, cap * sizeof *tok->sym_next);
  tok->sym_cap = cap;
  tok->heap_cap = 3 * cap;
  tok->heap = srlm_xrealloc(tok->heap, tok->heap_cap * sizeof *tok->heap);
}

/* Linear scan: m symbols in id[], rank[i]/mid[i] for the pair (i, i+1). Returns m. */
static size_t bpe_small(const srlm_tokenizer *tok, int32_t *id, uint32_t *rank, int32_t *mid, size_t m) {
  for (size_t i = 0; i + 1 < m; i++) rank[i] = pair_rank(tok, id[i], id[i + 1], &mid[i]);
  while (m > 1) {
    uint32_t best = UINT32_MAX;
    size_t bi = 0;
    for (size_t i = 0; i + 1 < m; i++)
      if (rank[i] < best) {
        best = rank[i];
        bi = i;
      }
    if (best == UINT32_MAX) break;
    id[bi] = mid[bi];
    if (m > bi + 2) memmove(id + bi + 1, id + bi + 2, (m - bi - 2) * sizeof *id);
    if (m > bi + 3) {
      memmove(rank + bi + 1, rank + bi + 2, (m - bi - 3) * sizeof *rank);
      memmove(mid + bi + 1, mid + bi + 2, (m - bi - 3) * sizeof *mid);
    }
    m--;
    if (bi > 0) rank[bi - 1] = pair_rank(tok, id[bi - 1], id[bi], &mid[bi - 1]);
    if (bi + 1 < m) rank[bi] = pair_rank(tok, id[bi], id[bi + 1], &mid[bi]);
  }
  return m;
}

/* Binary min-heap of rank << 32 | position: the lowest rank first, then the leftmost. */
static void heap_push(uint64_t *h, size_t *n, uint64_t it) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (h[p] <= it) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = it;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
  uint64_t top = h[0], last = h[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && h[c + 1] < h[c]) c++;
    if (h[c] >= last) break;
    h[i] = h[c];
    i = c;
  }
  if (*n > 0) h[i] = last;
  return top;
}

static void heap_push_pair(const srlm_tokenizer *tok, size_t *hn, int32_t l, int32_t r) {
  int32_t mid;
  uint32_t rank = pair_rank(tok, tok->sym_id[l], tok->sym_id[r], &mid);
  if (rank != UINT32_MAX) heap_push(tok->heap, hn, ((uint64_t)rank << 32) | (uint32_t)l);
}

/* Min-heap over a linked list of the m symbols in sym_id; writes the result to
 * sym_id[0..return). An entry is stale when its left symbol died or its pair's rank
 * changed; every live pair also has a current entry, so the first entry whose pair
 * still has its rank is the lowest-ranked, leftmost pair. */
static size_t bpe_heap(srlm_tokenizer *tok, size_t m) {
  int32_t *id = tok->sym_id, *prev = tok->sym_prev, *next = tok->sym_next;
  for (size_t i = 0; i < m; i++) {
    prev[i] = (int32_t)i - 1;
    next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
  }
  size_t hn = 0;
  for (size_t i = 0; i + 1 < m; i++) heap_push_pair(tok, &hn, (int32_t)i, (int32_t)i + 1);
  while (hn > 0) {
    uint64_t it = heap_pop(tok->heap, &hn);
    int32_t pos = (int32_t)(uint32_t)it, r = next[pos];
    int32_t mid = -1;
    if (id[pos] < 0 || r < 0 || pair_rank(tok, id[pos], id[r], &mid) != (uint32_t)(it >> 32)) continue;
    id[pos] = mid;
    int32_t nx = next[r];
    next[pos] = nx;
    if (nx >= 0) prev[nx] = pos;
    id[r] = -1;
    /* each merge adds at most two entries: the heap holds at most 3m */
    if (prev[pos] >= 0) heap_push_pair(tok, &hn, prev[pos], pos);
    if (nx >= 0) heap_push_pair(tok, &hn, pos, nx);
  }
  size_t w = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) id[w++] = id[i];
  return w;
}

static void cache_clear(srlm_tokenizer *tok) {
  memset(tok->cache, 0, TOK_CACHE_SLOTS * sizeof *tok->cache);
  tok->cache_used = 0;
  tok->cache_count = 0;
}

void srlm_tokenizer_clear_cache(srlm_tokenizer *tok) { cache_clear(tok); }

static void cache_store(srlm_tokenizer *tok, uint64_t h, const uint8_t *p, size_t n, const int32_t *ids, size_t k) {
  size_t need = ((n + 3) & ~(size_t)3) + k * sizeof(int32_t);
  if (k > UINT16_MAX) return;
  if (tok->cache_used + need > TOK_CACHE_POOL || tok->cache_count >= TOK_CACHE_SLOTS / 2) cache_clear(tok);
  size_t i = (size_t)h & (TOK_CACHE_SLOTS - 1);
  while (tok->cache[i].hash != 0) i = (i + 1) & (TOK_CACHE_SLOTS - 1);
  tok_cache_slot *sl = &tok->cache[i];
  sl->hash = h;
  sl->key_off = tok->cache_used;
  sl->key_len = (uint16_t)n;
  memcpy(tok->cache_pool + tok->cache_used, p, n);
  tok->cache_used += (uint32_t)((n + 3) & ~(size_t)3);
  sl->ids_off = tok->cache_used;
  sl->n_ids = (uint16_t)k;
  memcpy(tok->cache_pool + tok->cache_used, ids, k * sizeof *ids);
  tok->cache_used += (uint32_t)(k * sizeof *ids);
  tok->cache_count++;
}

/* Appends the ids of one pre-tokenized piece. */
static void encode_piece(srlm_tokenizer *tok, const uint8_t *p, size_t n, srlm_token_ids *out) {
  uint64_t h = 0;
  if (n <= TOK_CACHE_MAX_KEY) {
    h = srlm_tok_hash(p, n);
    size_t i = (size_t)h & (TOK_CACHE_SLOTS - 1);
    for (;;) {
      const tok_cache_slot *sl = &tok->cache[i];
      if (sl->hash == 0) break;
      if (sl->hash == h && sl->key_len == n && memcmp(tok->cache_pool + sl->key_off, p, n) == 0) {
        ids_reserve(out, sl->n_ids, 0);
        memcpy(out->ids + out->n, tok->cache_pool + sl->ids_off, sl->n_ids * sizeof(int32_t));
        out->n += sl->n_ids;
        return;
      }
      i = (i + 1) & (TOK_CACHE_SLOTS - 1);
    }
  }
  if (n == 1) {
    srlm_token_ids_push(out, tok->byte_id[p[0]]);
    return;
  }
  if (tok->ignore_merges) {
    int32_t id = srlm_tok_vocab_lookup(tok, p, n, h ? h : srlm_tok_hash(p, n));
    if (id >= 0) {
      srlm_token_ids_push(out, id);
      return;
    }
  }
  scratch_reserve(tok, n);
  for (size_t i = 0; i < n; i++) tok->sym_id[i] = tok->byte_id[p[i]];
  size_t m = n <= TOK_SMALL_PIECE ? bpe_small(tok, tok->sym_id, tok->sym_rank, tok->sym_mid, n) : bpe_heap(tok, n);
  ids_reserve(out, m, 0);
  memcpy(out->ids + out->n, tok->sym_id, m * sizeof(int32_t));
  out->n += m;
  if (h) cache_store(tok, h, p, n, tok->sym_id, m);
}

/* ---- pre-tokenization and added tokens --------------------------------------- */

/* Where the encoded text of the current gap lives relative to the caller's text. */
typedef struct enc_ctx {
  srlm_token_ids *out;
  int want_start;
  uint32_t base;       /* offset of the gap in the caller's text */
  const tok_align *al; /* NULL when the gap was not rewritten by NFC */
} enc_ctx;

static inline uint32_t ctx_map(const enc_ctx *c, size_t x) {
  return c->base + (c->al ? srlm_tok_align_map(c->al, (uint32_t)x) : (uint32_t)x);
}

/* piece = t[a..b) of the (normalized) gap text t */
static srlm_status emit_piece(srlm_tokenizer *tok, const uint8_t *t, size_t a, size_t b, const enc_ctx *c) {
  if (tok->missing_bytes)
    for (size_t i = a; i < b; i++)
      if (tok->byte_id[t[i]] < 0)
        return srlm_error(SRLM_ERR_RANGE, "encode", "byte 0x%02X at offset %u has no token in %s's vocabulary",
                          t[i], (unsigned)ctx_map(c, i), tok->path);
  size_t n0 = c->out->n;
  encode_piece(tok, t + a, b - a, c->out);
  if (!c->want_start) return SRLM_OK;
  ids_reserve(c->out, 0, 1);
  size_t at = a;
  for (size_t k = n0; k < c->out->n; k++) {
    c->out->start[k] = ctx_map(c, at);
    at += tok->id_len[c->out->ids[k]];
  }
  return SRLM_OK;
}

static srlm_status pretokenize(srlm_tokenizer *tok, const uint8_t *t, size_t a, size_t b, const enc_ctx *c) {
  const uint8_t *subj = t + a;
  size_t len = b - a, pos = 0, last = 0;
  while (pos < len) {
    int rc = tok->jit ? pcre2_jit_match(tok->re, subj, len, pos, 0, tok->md, tok->mctx)
                      : pcre2_match(tok->re, subj, len, pos, PCRE2_NO_UTF_CHECK, tok->md, tok->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return srlm_error(SRLM_ERR_LIB, tok->path, "pre-tokenizer regex failed at byte %zu: %s", a + pos,
                        (const char *)msg);
    }
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tok->md);
    size_t ms = ov[0], me = ov[1];
    if (me <= ms) { /* empty match: no piece; step over one character */
      int l;
      srlm_tok_utf8_decode(subj + ms, len - ms, &l);
      pos = ms + (size_t)l;
      continue;
    }
    if (ms > last) SRLM_TRY(emit_piece(tok, t, a + last, a + ms, c));
    if (!tok->split_removed) SRLM_TRY(emit_piece(tok, t, a + ms, a + me, c));
    last = pos = me;
  }
  if (last < len) SRLM_TRY(emit_piece(tok, t, a + last, b, c));
  return SRLM_OK;
}

static int is_word_at(const srlm_tokenizer *tok, const uint8_t *s, size_t n, size_t at) {
  return pcre2_match(tok->word_re, s, n, at, PCRE2_NO_UTF_CHECK, tok->word_md, NULL) > 0;
}

/* The next added-token match in s[from..n) (leftmost, then longest), after the
 * single_word filter; lstrip/rstrip widen it over White_Space, not before lo. */
static int next_added(const srlm_tokenizer *tok, const tok_matcher *m, const uint8_t *s, size_t n, size_t from,
                      size_t lo, size_t *ms, size_t *me, int32_t *id) {
  const tok_trie_node *nodes = m->nodes;
  for (size_t i = from; i < n; i++) {
    if (!m->first[s[i]]) continue;
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < n; j++) {
      int32_t ch = nodes[node].child;
      while (ch >= 0 && nodes[ch].byte != s[j]) ch = nodes[ch].sibling;
      if (ch < 0) break;
      node = ch;
      if (nodes[ch].added >= 0) {
        best = nodes[ch].added;
        best_end = j + 1;
      }
    }
    if (best < 0) continue;
    const tok_added *t = &tok->added[best];
    if (t->single_word) {
      size_t prev = i;
      while (prev > 0 && (s[prev - 1] & 0xC0) == 0x80) prev--;
      if (prev > 0) prev--;
      while (prev > 0 && (s[prev] & 0xC0) == 0x80) prev--;
      int word_before = i > 0 && is_word_at(tok, s, n, prev);
      int word_after = best_end < n && is_word_at(tok, s, n, best_end);
      if (word_before || word_after) {
        i = best_end - 1; /* a rejected match is consumed, as in HF's non-overlapping search */
        continue;
      }
    }
    size_t a = i, b = best_end;
    if (t->lstrip) {
      while (a > lo) {
        size_t p = a - 1;
        while (p > lo && (s[p] & 0xC0) == 0x80) p--;
        int l;
        if (!srlm_tok_is_white_space(srlm_tok_utf8_decode(s + p, n - p, &l))) break;
        a = p;
      }
    }
    if (t->rstrip) {
      while (b < n) {
        int l;
        if (!srlm_tok_is_white_space(srlm_tok_utf8_decode(s + b, n - b, &l))) break;
        b += (size_t)l;
      }
    }
    *ms = a;
    *me = b;
    *id = t->id;
    return 1;
  }
  return 0;
}

static void emit_added(srlm_token_ids *out, int32_t id, int want_start, uint32_t start) {
  ids_reserve(out, 1, want_start);
  if (want_start) out->start[out->n] = start;
  out->ids[out->n++] = id;
}

/* A gap between raw-matched added tokens: s[0..n) at offset base of the caller's text. */
static srlm_status encode_gap(srlm_tokenizer *tok, const uint8_t *s, size_t n, uint32_t base, srlm_token_ids *out,
                              int want_start) {
  enc_ctx c = {out, want_start, base, NULL};
  const uint8_t *t = s;
  size_t tn = n;
  if (tok->nfc && srlm_tok_nfc_maybe(s, n)) {
    tok->norm_buf.n = 0;
    tok->align.n = 0;
    if (srlm_tok_nfc(s, n, &tok->norm_buf, &tok->align)) {
      t = (const uint8_t *)tok->norm_buf.p;
      tn = tok->norm_buf.n;
      c.al = &tok->align;
    }
  }
  if (tok->norm_m.n_tokens == 0) return pretokenize(tok, t, 0, tn, &c);
  size_t pos = 0;
  while (pos < tn) {
    size_t ms, me;
    int32_t id;
    int found = next_added(tok, &tok->norm_m, t, tn, pos, pos, &ms, &me, &id);
    size_t end = found ? ms : tn;
    if (end > pos) SRLM_TRY(pretokenize(tok, t, pos, end, &c));
    if (!found) break;
    emit_added(out, id, want_start, ctx_map(&c, ms));
    pos = me;
  }
  return SRLM_OK;
}

static srlm_status encode(srlm_tokenizer *tok, const char *text, size_t len, srlm_token_ids *out, int want_start) {
  const uint8_t *s = (const uint8_t *)text;
  size_t bad;
  if (len > UINT32_MAX) return srlm_error(SRLM_ERR_RANGE, "encode", "text of %zu bytes is too long (max 4 GiB)", len);
  if (!srlm_tok_utf8_valid(s, len, &bad))
    return srlm_error(SRLM_ERR_FORMAT, "encode", "text is not valid UTF-8 (byte %zu: 0x%02X)", bad, s[bad]);
  if (want_start) ids_reserve(out, 0, 1);
  size_t pos = 0;
  while (pos < len) {
    size_t ms, me;
    int32_t id;
    int found = tok->raw_m.n_tokens > 0 && next_added(tok, &tok->raw_m, s, len, pos, pos, &ms, &me, &id);
    size_t end = found ? ms : len;
    if (end > pos) SRLM_TRY(encode_gap(tok, s + pos, end - pos, (uint32_t)pos, out, want_start));
    if (!found) break;
    emit_added(out, id, want_start, (uint32_t)ms);
    pos = me;
  }
  return SRLM_OK;
}

srlm_status srlm_tokenizer_encode(srlm_tokenizer *tok, const char *text, size_t len, srlm_token_ids *out) {
  return encode(tok, text, len, out, 0);
}

srlm_status srlm_tokenizer_encode_offsets(srlm_tokenizer *tok, const char *text, size_t len, srlm_token_ids *out) {
  return encode(tok, text, len, out, 1);
}

srlm_status srlm_tokenizer_normalize(const srlm_tokenizer *tok, const char *text, size_t len, char **out,
                                     size_t *out_len) {
  size_t bad;
  if (!srlm_tok_utf8_valid((const uint8_t *)text, len, &bad))
    return srlm_error(SRLM_ERR_FORMAT, "normalize", "text is not valid UTF-8 (byte %zu)", bad);
  tok_bytes b = {0};
  if (tok->nfc) srlm_tok_nfc((const uint8_t *)text, len, &b, NULL);
  else srlm_tok_bytes_append(&b, text, len);
  srlm_tok_bytes_append(&b, "", 1);
  *out = b.p;
  *out_len = b.n - 1;
  return SRLM_OK;
}

/* ---- ids and decoding -------------------------------------------------------- */

const char *srlm_tokenizer_path(const srlm_tokenizer *tok) { return tok->path; }
int32_t srlm_tokenizer_n_ids(const srlm_tokenizer *tok) { return tok->n_ids; }

int srlm_tokenizer_is_special(const srlm_tokenizer *tok, int32_t id) {
  return id >= 0 && id < tok->n_ids && (tok->id_flags[id] & TOK_FLAG_SPECIAL);
}

/* at: the id's position in a list, or -1 */
static srlm_status check_id_at(const srlm_tokenizer *tok, int32_t id, long at) {
  char pos[48] = "";
  if (at >= 0) snprintf(pos, sizeof pos, " (position %ld)", at);
  if (id < 0 || id >= tok->n_ids)
    return srlm_error(SRLM_ERR_RANGE, tok->path, "token id %d%s is out of range (ids are 0..%d)", id, pos,
                      tok->n_ids - 1);
  if (tok->id_len[id] == UINT32_MAX)
    return srlm_error(SRLM_ERR_RANGE, tok->path, "token id %d%s is not assigned to any token", id, pos);
  return SRLM_OK;
}
static srlm_status check_id(const srlm_tokenizer *tok, int32_t id) { return check_id_at(tok, id, -1); }

srlm_status srlm_tokenizer_token_bytes(const srlm_tokenizer *tok, int32_t id, const char **bytes, size_t *len) {
  SRLM_TRY(check_id(tok, id));
  *bytes = tok->pool.p + tok->id_off[id];
  *len = tok->id_len[id];
  return SRLM_OK;
}

srlm_status srlm_tokenizer_token_id(const srlm_tokenizer *tok, const char *text, size_t len, int32_t *id) {
  /* added tokens first (by content), as HF's token_to_id does */
  for (int32_t i = tok->n_added - 1; i >= 0; i--) {
    const tok_added *t = &tok->added[i];
    if (t->len == len && memcmp(tok->pool.p + t->off, text, len) == 0) {
      *id = t->id;
      return SRLM_OK;
    }
  }
  int32_t v = srlm_tok_vocab_lookup(tok, text, len, srlm_tok_hash(text, len));
  if (v < 0) return srlm_error(SRLM_ERR_RANGE, tok->path, "no token '%.*s'", (int)(len > 200 ? 200 : len), text);
  *id = v;
  return SRLM_OK;
}

srlm_status srlm_tokenizer_decode(const srlm_tokenizer *tok, const int32_t *ids, size_t n, char **text, size_t *len) {
  *text = NULL;
  *len = 0;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    SRLM_TRY(check_id_at(tok, ids[i], (long)i));
    total += tok->id_len[ids[i]];
  }
  char *buf = srlm_xmalloc(total + 1);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(buf + o, tok->pool.p + tok->id_off[ids[i]], tok->id_len[ids[i]]);
    o += tok->id_len[ids[i]];
  }
  buf[o] = '\0';
  *text = buf;
  *len = o;
  return SRLM_OK;
}

/* ---- streaming decoder --------------------------------------------------------- */

struct srlm_tokenizer_stream {
  const srlm_tokenizer *tok;
  tok_bytes buf;
  size_t emitted; /* buf[0..emitted) went out on the last call */
};

srlm_tokenizer_stream *srlm_tokenizer_stream_init(const srlm_tokenizer *tok) {
  srlm_tokenizer_stream *s = srlm_xcalloc(1, sizeof *s);
  s->tok = tok;
  return s;
}

void srlm_tokenizer_stream_free(srlm_tokenizer_stream *s) {
  if (!s) return;
  free(s->buf.p);
  free(s);
}

/* Bytes at the end of b[0..n) that begin a UTF-8 character a later byte may complete. */
static size_t incomplete_tail(const uint8_t *b, size_t n) {
  for (size_t k = 1; k <= 3 && k <= n; k++) {
    uint8_t c = b[n - k];
    if ((c & 0xC0) == 0x80) continue;
    int need = utf8_seq_len(c);
    if (need <= (int)k) return 0;
    if (k >= 2 && !utf8_second_ok(c, b[n - k + 1])) return 0;
    return k;
  }
  return 0;
}

static void stream_drop_emitted(srlm_tokenizer_stream *s) {
  if (s->emitted) {
    memmove(s->buf.p, s->buf.p + s->emitted, s->buf.n - s->emitted);
    s->buf.n -= s->emitted;
    s->emitted = 0;
  }
}

srlm_status srlm_tokenizer_stream_push(srlm_tokenizer_stream *s, int32_t id, const char **text, size_t *len) {
  stream_drop_emitted(s);
  *text = s->buf.p ? s->buf.p : "";
  *len = 0;
  SRLM_TRY(check_id(s->tok, id));
  srlm_tok_bytes_append(&s->buf, s->tok->pool.p + s->tok->id_off[id], s->tok->id_len[id]);
  size_t hold = incomplete_tail((const uint8_t *)s->buf.p, s->buf.n);
  s->emitted = s->buf.n - hold;
  *text = s->buf.p ? s->buf.p : "";
  *len = s->emitted;
  return SRLM_OK;
}

void srlm_tokenizer_stream_flush(srlm_tokenizer_stream *s, const char **text, size_t *len) {
  stream_drop_emitted(s);
  s->emitted = s->buf.n;
  *text = s->buf.p ? s->buf.p : "";
  *len = s->buf.n;
}
