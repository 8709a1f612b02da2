/* Arena: a chain of blocks, bump allocation, zeroed memory, one free. */
#include <stdlib.h>
#include <string.h>

#include "srlm/core.h"

struct srlm_arena_block {
  srlm_arena_block *next;
  size_t cap, off;
  _Alignas(64) unsigned char data[];
};

static srlm_arena_block *block_new(size_t cap) {
  srlm_arena_block *b = srlm_xcalloc(1, sizeof *b + cap);
  b->cap = cap;
  return b;
}

void srlm_arena_init(srlm_arena *a, size_t block_size) {
  a->head = NULL;
  a->block_size = block_size ? block_size : (size_t)1 << 16;
  a->used = 0;
}

void *srlm_arena_alloc(srlm_arena *a, size_t size, size_t align) {
  if (align == 0) align = 16;
  SRLM_CHECK((align & (align - 1)) == 0 && align <= 64, "alignment %zu", align);
  srlm_arena_block *b = a->head;
  size_t off = b ? (b->off + align - 1) & ~(align - 1) : 0;
  if (!b || off > b->cap || b->cap - off < size) {
    size_t cap = size > a->block_size ? size : a->block_size;
    b = block_new(cap);
    b->next = a->head;
    a->head = b;
    off = 0;
  }
  b->off = off + size;
  a->used += size;
  return b->data + off;
}

char *srlm_arena_strndup(srlm_arena *a, const char *s, size_t n) {
  char *d = srlm_arena_alloc(a, n + 1, 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *srlm_arena_strdup(srlm_arena *a, const char *s) { return srlm_arena_strndup(a, s, strlen(s)); }

void srlm_arena_reset(srlm_arena *a) {
  if (!a->head) return;
  srlm_arena_block *keep = a->head;
  while (keep->next) {
    srlm_arena_block *last = keep;
    keep = keep->next;
    free(last);
  }
  memset(keep->data, 0, keep->off);
  keep->off = 0;
  a->head = keep;
  a->used = 0;
}

void srlm_arena_free(srlm_arena *a) {
  srlm_arena_block *b = a->head;
  while (b) {
    srlm_arena_block *n = b->next;
    free(b);
    b = n;
  }
  a->head = NULL;
  a->used = 0;
}
