/* Packed micro-batches of the trainers: prompt + response sequences, and NLL examples
 * (conventions in pack.h). */
#include <math.h>
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

srlm_status train_nll_step(train_nll *w, srlm_model *m, const srlm_sft_data *d, const int64_t *idx, int count,
                           double coef, double *nll, int64_t *tokens, int *finite) {
  srlm_sft_batch_fill(&w->batch, d, idx, count);
  const srlm_batch *b = &w->batch.b;
  if ((size_t)b->T > w->cap) {
    w->cap = (size_t)b->T;
    w->logp = srlm_xrealloc(w->logp, w->cap * sizeof *w->logp);
    w->g = srlm_xrealloc(w->g, w->cap * sizeof *w->g);
  }
  SRLM_TRY(srlm_model_forward_train(m, b, w->logp));
  double s = 0;
  for (int64_t t = 0; t < b->T; t++) {
    if (b->targets[t] >= 0) {
      s -= (double)w->logp[t];
      w->g[t] = (float)coef;
    } else {
      w->g[t] = 0.0f;
    }
  }
  *nll = s;
  *tokens = b->T;
  *finite = isfinite(s);
  if (!*finite) return SRLM_OK;
  return srlm_model_backward(m, w->g);
}

void train_nll_free(train_nll *w) {
  srlm_sft_batch_free(&w->batch);
  free(w->logp);
  free(w->g);
  memset(w, 0, sizeof *w);
}
