/* libFuzzer target: bytes as a safetensors file, parsed from memory.
 * Beyond "no crash, no leak", every accepted input must satisfy the reader's
 * contract: each tensor lies inside the data area, the tensors cover it exactly
 * (their byte sizes add up to it), numel * dtype size == nbytes, and lookup by
 * name finds each tensor. Every data byte is read (ASan sees any stray pointer)
 * and float tensors go through the f32 conversion. A broken contract aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/safetensors.h"

static void broken(const char *what, const char *name) {
  fprintf(stderr, "accepted safetensors image breaks the contract: %s (tensor '%s')\n", what, name);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  srlm_st_file *f = NULL;
  if (srlm_st_parse_memory(data, size, "fuzz.safetensors", &f) != SRLM_OK) {
    if (f) broken("a failed parse returned a handle", "");
    return 0;
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | data[i];
  const uint8_t *area = data + 8 + hlen, *end = data + size;
  uint64_t covered = 0;
  unsigned sum = 0;
  for (size_t i = 0; i < srlm_st_count(f); i++) {
    const srlm_st_tensor *t = srlm_st_at(f, i);
    if (t->numel * srlm_st_dtype_size(t->dtype) != t->nbytes) broken("numel * dtype size != nbytes", t->name);
    const uint8_t *p = t->data;
    if (t->nbytes && (p < area || p > end || (uint64_t)(end - p) < t->nbytes))
      broken("data outside the data area", t->name);
    if (p != area + t->offset) broken("data pointer != data area + offset", t->name);
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d];
    if (numel != t->numel) broken("numel != product of shape", t->name);
    if (srlm_st_find(f, t->name) != t) broken("lookup by name finds another tensor", t->name);
    for (uint64_t b = 0; b < t->nbytes; b++) sum += p[b];
    if (srlm_st_dtype_is_float(t->dtype) && t->numel <= (1u << 16)) {
      float *out = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *out);
      if (srlm_st_tensor_to_f32(t, out, (size_t)t->numel) != SRLM_OK) broken("float tensor did not convert", t->name);
      free(out);
    }
    covered += t->nbytes;
  }
  if (covered != (uint64_t)(end - area)) broken("tensors do not cover the data area", "");
  for (size_t i = 0; i < srlm_st_metadata_count(f); i++) {
    const char *k, *v;
    srlm_st_metadata_at(f, i, &k, &v);
    if (!k || !v || srlm_st_metadata_get(f, k) == NULL) broken("metadata entry unreadable", k ? k : "");
  }
  srlm_st_close(f);
  /* keep the byte reads from being optimized away */
  if (sum == 0xdeadbeefu) fprintf(stderr, " ");
  return 0;
}
