/* Packed prompt + response sequences (conventions in pack.h). */
#include <stdlib.h>
#include <string.h>

#include "pack.h"

void train_pack_begin(train_pack *p, int64_t tokens, int seqs) {
  if (tokens > p->cap) {
    p->cap = tokens;
    p->tokens = srlm_xrealloc(p->tokens, (size_t)tokens * sizeof *p->tokens);
    p->targets = srlm_xrealloc(p->targets, (size_t)tokens * sizeof *p->targets);
    p->logp = srlm_xrealloc(p->logp, (size_t)tokens * sizeof *p->logp);
    p->g = srlm_xrealloc(p->g, (size_t)tokens * sizeof *p->g);
  }
  if (seqs + 1 > p->cap_seqs) {
    p->cap_seqs = seqs + 1;
    p->cu = srlm_xrealloc(p->cu, (size_t)p->cap_seqs * sizeof *p->cu);
    p->first = srlm_xrealloc(p->first, (size_t)p->cap_seqs * sizeof *p->first);
    p->n_resp = srlm_xrealloc(p->n_resp, (size_t)p->cap_seqs * sizeof *p->n_resp);
  }
  p->T = 0;
  p->B = 0;
  p->cu[0] = 0;
}

void train_pack_add(train_pack *p, const int32_t *prompt, int64_t np, const int32_t *resp, int64_t nr) {
  const int64_t t0 = p->T;
  memcpy(p->tokens + t0, prompt, (size_t)np * sizeof *prompt);
  memcpy(p->tokens + t0 + np, resp, (size_t)nr * sizeof *resp);
  for (int64_t t = t0; t < t0 + np - 1; t++) p->targets[t] = -1;
  for (int64_t j = 0; j < nr; j++) p->targets[t0 + np - 1 + j] = resp[j];
  p->targets[t0 + np + nr - 1] = -1;
  p->first[p->B] = t0 + np - 1;
  p->n_resp[p->B] = nr;
  p->T += np + nr;
  p->B++;
  p->cu[p->B] = (int32_t)p->T;
}

srlm_batch train_pack_batch(const train_pack *p) {
  return (srlm_batch){.B = p->B, .T = p->T, .tokens = p->tokens, .cu_seqlens = p->cu, .targets = p->targets};
}

double train_pack_sum(const train_pack *p, int b) {
  double s = 0;
  for (int64_t t = p->first[b]; t < p->first[b] + p->n_resp[b]; t++) s += (double)p->logp[t];
  return s;
}

void train_pack_free(train_pack *p) {
  free(p->tokens);
  free(p->targets);
  free(p->cu);
  free(p->first);
  free(p->n_resp);
  free(p->logp);
  free(p->g);
  memset(p, 0, sizeof *p);
}
