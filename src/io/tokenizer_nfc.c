/* NFC normalization for the tokenizer (Unicode Standard Annex #15): canonical
 * decomposition, canonical ordering, canonical composition. The tables are generated
 * from Python's unicodedata by tokenizer_nfc_gen.py into tokenizer_nfc_data.c;
 * Hangul syllables are handled algorithmically.
 *
 * Only chunks that may change are rewritten: text is cut at "safe" code points
 * (ccc 0 and NFC_Quick_Check Yes), which nothing before them can combine with, so
 * the common case (already NFC) costs one scan. Input is valid UTF-8.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

enum {
  HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7,
  HANGUL_LN = 19, HANGUL_VN = 21, HANGUL_TN = 28, HANGUL_NN = HANGUL_VN * HANGUL_TN,
  HANGUL_SN = HANGUL_LN * HANGUL_NN
};

static int cp_unsafe(uint32_t cp) {
  if (cp < 0x300) return 0;
  if (cp < 0x10000) return (int)((srlm_tok_nfc_unsafe_bmp[cp >> 6] >> (cp & 63)) & 1);
  size_t lo = 0, hi = srlm_tok_nfc_unsafe_supp_n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cp < srlm_tok_nfc_unsafe_supp[mid][0]) hi = mid;
    else if (cp > srlm_tok_nfc_unsafe_supp[mid][1]) lo = mid + 1;
    else return 1;
  }
  return 0;
}

static int cp_ccc(uint32_t cp) {
  if (cp < 0x300) return 0;
  size_t lo = 0, hi = srlm_tok_nfc_ccc_n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cp < srlm_tok_nfc_ccc[mid][0]) hi = mid;
    else if (cp > srlm_tok_nfc_ccc[mid][1]) lo = mid + 1;
    else return (int)srlm_tok_nfc_ccc[mid][2];
  }
  return 0;
}

/* Appends the full canonical decomposition of cp to buf[*n]; buf has room for 4 more. */
static void decompose(uint32_t cp, uint32_t *buf, size_t *n) {
  if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_SN) {
    uint32_t s = cp - HANGUL_S;
    buf[(*n)++] = HANGUL_L + s / HANGUL_NN;
    buf[(*n)++] = HANGUL_V + (s % HANGUL_NN) / HANGUL_TN;
    if (s % HANGUL_TN) buf[(*n)++] = HANGUL_T + s % HANGUL_TN;
    return;
  }
  size_t lo = 0, hi = srlm_tok_nfc_decomp_n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cp < srlm_tok_nfc_decomp[mid][0]) hi = mid;
    else if (cp > srlm_tok_nfc_decomp[mid][0]) lo = mid + 1;
    else {
      const uint32_t *d = srlm_tok_nfc_decomp_pool + srlm_tok_nfc_decomp[mid][1];
      for (uint32_t k = 0; k < srlm_tok_nfc_decomp[mid][2]; k++) buf[(*n)++] = d[k];
      return;
    }
  }
  buf[(*n)++] = cp;
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= HANGUL_L && a < HANGUL_L + HANGUL_LN && b >= HANGUL_V && b < HANGUL_V + HANGUL_VN)
    return HANGUL_S + ((a - HANGUL_L) * HANGUL_VN + (b - HANGUL_V)) * HANGUL_TN;
  if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SN && (a - HANGUL_S) % HANGUL_TN == 0 &&
      b > HANGUL_T && b < HANGUL_T + HANGUL_TN)
    return a + (b - HANGUL_T);
  uint64_t key = ((uint64_t)a << 21) | b;
  size_t lo = 0, hi = srlm_tok_nfc_compose_n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (key < srlm_tok_nfc_compose_key[mid]) hi = mid;
    else if (key > srlm_tok_nfc_compose_key[mid]) lo = mid + 1;
    else return srlm_tok_nfc_compose_val[mid];
  }
  return 0;
}

int srlm_tok_nfc_maybe(const uint8_t *s, size_t n) {
  /* Code points below U+0300 are stable; their UTF-8 lead bytes are all below 0xCC. */
  for (size_t i = 0; i < n;) {
    if (s[i] < 0xCC) {
      i++;
      continue;
    }
    int len;
    uint32_t cp = srlm_tok_utf8_decode(s + i, n - i, &len);
    if (cp_unsafe(cp)) return 1;
    i += (size_t)len;
  }
  return 0;
}

/* Normalizes the chunk s[0..n) into out. */
static void nfc_chunk(const uint8_t *s, size_t n, tok_bytes *out) {
  /* A code point decomposes into at most 4 (Hangul: 3). */
  uint32_t stack_buf[256];
  uint32_t *cps = n * 4 <= 256 ? stack_buf : srlm_xmalloc(n * 4 * sizeof *cps);
  size_t m = 0;
  for (size_t i = 0; i < n;) {
    int len;
    uint32_t cp = srlm_tok_utf8_decode(s + i, n - i, &len);
    decompose(cp, cps, &m);
    i += (size_t)len;
  }
  /* canonical ordering: stable sort of each run of non-starters by class */
  for (size_t i = 1; i < m; i++) {
    int cc = cp_ccc(cps[i]);
    if (cc == 0) continue;
    uint32_t c = cps[i];
    size_t j = i;
    while (j > 0) {
      int pc = cp_ccc(cps[j - 1]);
      if (pc == 0 || pc <= cc) break;
      cps[j] = cps[j - 1];
      j--;
    }
    cps[j] = c;
  }
  /* canonical composition */
  if (m > 0) {
    size_t w = 1;
    long starter = cp_ccc(cps[0]) == 0 ? 0 : -1;
    int last_cc = cp_ccc(cps[0]) == 0 ? 0 : 256; /* class of the last kept code point */
    for (size_t r = 1; r < m; r++) {
      uint32_t c = cps[r];
      int cc = cp_ccc(c);
      if (starter >= 0) {
        int adjacent = (size_t)starter == w - 1;
        int blocked = !adjacent && (last_cc == 0 || last_cc >= cc);
        if (!blocked) {
          uint32_t p = compose(cps[starter], c);
          if (p) {
            cps[starter] = p;
            continue;
          }
        }
      }
      if (cc == 0) starter = (long)w;
      last_cc = cc;
      cps[w++] = c;
    }
    m = w;
  }
  srlm_tok_bytes_reserve(out, m * 4);
  for (size_t i = 0; i < m; i++) out->n += (size_t)srlm_tok_utf8_encode(cps[i], (uint8_t *)out->p + out->n);
  if (cps != stack_buf) free(cps);
}

int srlm_tok_nfc(const uint8_t *s, size_t n, tok_bytes *out, tok_align *al) {
  size_t out0 = out->n;
  size_t copied = 0; /* s[0..copied) is already in out */
  size_t last_safe = 0; /* start of the last safe code point seen (chunk start) */
  int changed = 0;
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0xCC) { /* ASCII or a 2-byte character below U+0300 */
      last_safe = i;
      i += s[i] < 0x80 ? 1 : 2;
      continue;
    }
    int len;
    uint32_t cp = srlm_tok_utf8_decode(s + i, n - i, &len);
    if (!cp_unsafe(cp)) {
      last_safe = i;
      i += (size_t)len;
      continue;
    }
    /* chunk: from the last safe code point before i to the next safe one after */
    size_t a = last_safe < copied ? copied : last_safe;
    if (a > i) a = i;
    size_t b = i + (size_t)len;
    while (b < n) {
      if (s[b] < 0xCC) break;
      int l2;
      uint32_t c2 = srlm_tok_utf8_decode(s + b, n - b, &l2);
      if (!cp_unsafe(c2)) break;
      b += (size_t)l2;
    }
    srlm_tok_bytes_append(out, s + copied, a - copied);
    size_t before = out->n;
    nfc_chunk(s + a, b - a, out);
    size_t produced = out->n - before;
    if (produced != b - a || memcmp(out->p + before, s + a, produced) != 0) {
      changed = 1;
      if (al) {
        if (al->n == al->cap) {
          al->cap = al->cap ? 2 * al->cap : 16;
          al->c = srlm_xrealloc(al->c, al->cap * sizeof *al->c);
        }
        al->c[al->n++] = (tok_align_chunk){(uint32_t)(before - out0), (uint32_t)(out->n - out0),
                                           (uint32_t)a, (uint32_t)b};
      }
    }
    copied = b;
    last_safe = b;
    i = b;
  }
  srlm_tok_bytes_append(out, s + copied, n - copied);
  return changed;
}

uint32_t srlm_tok_align_map(const tok_align *al, uint32_t x) {
  /* last chunk with norm <= x */
  size_t lo = 0, hi = al->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (al->c[mid].norm <= x) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0) return x;
  const tok_align_chunk *c = &al->c[lo - 1];
  if (x < c->norm_end) return c->orig;
  return c->orig_end + (x - c->norm_end);
}
