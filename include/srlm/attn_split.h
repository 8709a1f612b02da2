/* The split-KV rule of the CUDA tensor-core attention_kv (flash-decoding; cuda/attention_mma.cu,
 * attention_common.cuh "split-KV"), shared with the memory plan (memplan.c), which counts its
 * workspace. A sequence's keys are cut into pieces at 0, K, 2K, ..., K from the sequence's own
 * cache length only (never from the batch, so a sample's bits do not depend on the batch): the
 * smallest of 64, 128, 256, 512 that cuts it into at most 8 pieces, else 512 (a 1k context: 8
 * pieces of 128; 32k: 64 of 512). A cache of at most 64 positions is one piece.
 * The pieces' partial outputs (fp32, head_dim each) and base-2 lse (fp32) of every query row
 * of a step live in the backend's workspace until the combine step merges them. */
#ifndef SRLM_ATTN_SPLIT_H
#define SRLM_ATTN_SPLIT_H

#include <stddef.h>

#include "srlm/core.h" /* SRLM_HD */

#define SRLM_ATTN_SPLIT_MIN 64LL
#define SRLM_ATTN_SPLIT_MAX 512LL
#define SRLM_ATTN_SPLIT_TARGET 8LL

/* Keys per piece of a cache of len positions. */
SRLM_HD long long srlm_attn_split_keys(long long len) {
  long long k = SRLM_ATTN_SPLIT_MIN;
  while (k < SRLM_ATTN_SPLIT_MAX && len > SRLM_ATTN_SPLIT_TARGET * k) k *= 2;
  return k;
}

/* Pieces of a cache of len positions. */
SRLM_HD long long srlm_attn_split_pieces(long long len) {
  const long long k = srlm_attn_split_keys(len);
  return (len + k - 1) / k;
}

/* The most pieces of any length up to max_len (the split grid's z): within a piece size's
 * lengths the count grows with the length, so the longest of each size decides. */
SRLM_HD long long srlm_attn_split_pieces_max(long long max_len) {
  long long z = 0;
  for (long long k = SRLM_ATTN_SPLIT_MIN; k <= SRLM_ATTN_SPLIT_MAX; k *= 2) {
    long long top = max_len;
    if (k < SRLM_ATTN_SPLIT_MAX && SRLM_ATTN_SPLIT_TARGET * k < top) top = SRLM_ATTN_SPLIT_TARGET * k;
    if (top >= 1 && srlm_attn_split_keys(top) == k && srlm_attn_split_pieces(top) > z) z = srlm_attn_split_pieces(top);
  }
  return z;
}

/* Workspace bytes of the pieces of one step: rows query rows (new queries x query heads) of
 * head_dim hs against caches of at most max_len positions (the partial lse rounded up to 16
 * bytes, then the partial outputs); 0 for a cache of at most one piece's minimum. */
SRLM_HD size_t srlm_attn_split_bytes(long long max_len, long long rows, long long hs) {
  if (max_len <= SRLM_ATTN_SPLIT_MIN) return 0;
  const long long z = srlm_attn_split_pieces_max(max_len);
  return ((size_t)(z * rows) * sizeof(float) + 15) / 16 * 16 + (size_t)(z * rows * hs) * sizeof(float);
}

#endif
