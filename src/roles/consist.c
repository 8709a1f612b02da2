/* The implicit reward of the iteration's samples and the replay of the previous
 * iteration's pairs (consist.h has the rules). */
#include "consist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/grpo.h"
#include "srlm/memplan.h"
#include "srlm/setup.h"
#include "srlm/shard_store.h"

/* Summed response log-probs under m of the samples g of [0, n) with g mod L == me (the
 * others stay 0). seq (n) describes every sample. */
static srlm_status share_logps(srlm_model *m, const srlm_grpo_seq *seq, int64_t n, int me, int L, double *out) {
  int64_t mine = 0, tokens = 0;
  for (int64_t g = me; g < n; g += L)
    if (seq[g].response_len > 0) mine++, tokens += seq[g].response_len;
  srlm_grpo_seq *s = srlm_xmalloc((size_t)(mine + 1) * sizeof *s);
  float *lp = srlm_xmalloc((size_t)(tokens + 1) * sizeof *lp);
  int64_t k = 0;
  for (int64_t g = me; g < n; g += L)
    if (seq[g].response_len > 0) s[k++] = seq[g];
  srlm_status st = srlm_grpo_logps(m, s, mine, SRLM_MEMPLAN_LOGPROB_TOKENS, lp);
  int64_t at = 0;
  for (int64_t g = me; g < n && st == SRLM_OK; g += L) {
    if (seq[g].response_len == 0) continue;
    double sum = 0;
    for (int64_t j = 0; j < seq[g].response_len; j++) sum += (double)lp[at + j];
    at += seq[g].response_len;
    out[g] = sum;
  }
  free(lp);
  free(s);
  return st;
}

/* M_u as the run saw it: M0 as the run set it up (model.path, or the fresh model of
 * model.arch and run.seed), else iter_<u>/model; for decoding only (it is scored, never
 * trained: a bf16 model keeps no fp32 master, the memory plan's scorer line). */
static srlm_status load_model(sr_ctx *c, int u, srlm_model **out) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/iter_%d/model", c->run_dir, u);
  srlm_backend *be = srlm_model_backend(c->ro.m);
  srlm_status st = u == 0 ? srlm_setup_model_for(c->cfg, c->ro.tok, be, SRLM_MODEL_DECODE, out)
                          : srlm_model_load_for(dir, be, srlm_model_dtype(c->ro.m), SRLM_MODEL_DECODE, out);
  return st == SRLM_OK ? SRLM_OK : srlm_error_context(st, "the implicit reward's M%d", u);
}

srlm_status sr_implicit_rewards(sr_ctx *c, int t, const srlm_shard *sh, int want_prev, sr_implicit *out) {
  memset(out, 0, sizeof *out);
  const int64_t S = c->ro.shards_max;
  out->first = srlm_xmalloc((size_t)(S + 1) * sizeof *out->first);
  out->first[0] = 0;
  for (int64_t i = 0; i < S; i++) out->first[i + 1] = out->first[i] + sh[i].n_responses;
  const int64_t n = out->first[S];
  out->n = n;
  srlm_grpo_seq *seq = srlm_xmalloc((size_t)(n + 1) * sizeof *seq);
  double *len = srlm_xmalloc((size_t)(n + 1) * sizeof *len);
  for (int64_t i = 0; i < S; i++)
    for (int64_t j = 0; j < sh[i].n_responses; j++) {
      const srlm_shard *s = &sh[i];
      const int64_t pr = s->response_prompt[j], g = out->first[i] + j;
      seq[g] = (srlm_grpo_seq){s->prompt_ids + s->prompt_offsets[pr], s->response_ids + s->response_offsets[j], NULL,
                               s->prompt_offsets[pr + 1] - s->prompt_offsets[pr],
                               s->response_offsets[j + 1] - s->response_offsets[j]};
      len[g] = (double)seq[g].response_len;
    }
  /* the models asked for: u = t-1 (the learner's own), t-2, and for prev t-3 */
  const int oldest = want_prev && t >= 2 ? t - 3 : t - 2;
  const int lo = oldest < 0 ? 0 : oldest, hi = t - 1, nm = hi - lo + 1;
  /* lp[(u - lo) n + g] and one error flag at the end, summed over the learners */
  double *lp = srlm_xcalloc((size_t)(nm * n + 1), sizeof *lp);
  const int me = srlm_comm_role_rank(c->comm, SRLM_ROLE_LEARNER), L = srlm_comm_role_size(c->comm, SRLM_ROLE_LEARNER);
  srlm_status st = SRLM_OK;
  for (int u = hi; u >= lo && st == SRLM_OK; u--) {
    srlm_model *m = c->ro.m, *own = NULL;
    if (u != hi) st = load_model(c, u, &own), m = own;
    if (st == SRLM_OK) st = share_logps(m, seq, n, me, L, lp + (int64_t)(u - lo) * n);
    srlm_model_free(own);
  }
  st = sr_learners_sum(c->comm, lp, nm * n, st, "the implicit reward's log-probs");
  /* R(M_u) from the log-probs of u and u - 1 */
  double *r[2] = {NULL, NULL};
  for (int w = 0; w < 2 && st == SRLM_OK; w++) {
    const int u = t - 1 - w;
    if (w == 1 && (!want_prev || u < 0)) break;
    r[w] = srlm_xmalloc((size_t)(n + 1) * sizeof *r[w]);
    const double *a = lp + (int64_t)(u - lo) * n, *b = u >= 1 ? lp + (int64_t)(u - 1 - lo) * n : NULL;
    for (int64_t g = 0; g < n; g++)
      r[w][g] = len[g] == 0 ? NAN : (b ? c->cfg->train.beta * (a[g] - b[g]) : a[g] / len[g]);
  }
  out->cur = r[0];
  out->prev = r[1];
  free(lp);
  free(len);
  free(seq);
  if (st != SRLM_OK) sr_implicit_free(out);
  return st;
}

void sr_implicit_free(sr_implicit *im) {
  free(im->first);
  free(im->cur);
  free(im->prev);
  memset(im, 0, sizeof *im);
}

typedef struct prompt_at {
  int64_t prompt_index, shard, row;
} prompt_at;

static int prompt_at_cmp(const void *a, const void *b) {
  const prompt_at *x = a, *y = b;
  return x->prompt_index < y->prompt_index ? -1 : x->prompt_index > y->prompt_index;
}

static int i64_cmp(const void *a, const void *b) {
  const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* The response row of sample `sample` of prompt row pr of shard s, or -1. */
static int64_t sample_row(const srlm_shard *s, int64_t pr, int64_t sample) {
  for (int64_t j = 0; j < s->n_responses; j++)
    if (s->response_prompt[j] == pr && s->sample_index[j] == sample) return j;
  return -1;
}

srlm_status sr_pair_replay_read(sr_ctx *c, int t, double gamma, double label_smoothing, sr_pair_replay *out) {
  memset(out, 0, sizeof *out);
  if (t < 2 || gamma <= 0) return SRLM_OK;
  char path[4200];
  snprintf(path, sizeof path, "%s/iter_%d/rollouts.h5", c->run_dir, t - 1);
  srlm_store *s;
  SRLM_TRY(srlm_store_open(path, SRLM_SHARD_STORE_FORMAT, SRLM_SHARD_STORE_VERSION, &s));
  int64_t nn = 0, P = 0;
  char **names = NULL;
  int64_t *rows = NULL;
  double *w = NULL, *l = NULL;
  prompt_at *at = NULL;
  int64_t n_at = 0;
  srlm_status st = srlm_store_list(s, "/", &nn, &names);
  out->sh = srlm_xcalloc((size_t)nn + 1, sizeof *out->sh);
  for (int64_t i = 0; i < nn && st == SRLM_OK; i++) {
    if (strncmp(names[i], "shard_", 6)) continue;
    char g[300];
    snprintf(g, sizeof g, "/%s", names[i]);
    st = srlm_shard_read(s, g, &out->sh[out->n_shards]);
    if (st == SRLM_OK) out->n_shards++;
  }
  if (st == SRLM_OK) st = srlm_store_get_attr_i64(s, "/pairs", "pairs", &P);
  if (st == SRLM_OK && P > 0) {
    int64_t dims[2];
    st = srlm_store_read_array(s, "/pairs/rows", SRLM_STORE_I64, 2, dims, (void **)&rows);
    if (st == SRLM_OK && (dims[0] != P || dims[1] != 3))
      st = srlm_error(SRLM_ERR_FORMAT, path, "/pairs/rows is (%lld, %lld), expected (%lld, 3)", (long long)dims[0],
                      (long long)dims[1], (long long)P);
    if (st == SRLM_OK && srlm_store_has(s, "/pairs/weight"))
      st = srlm_store_read_array(s, "/pairs/weight", SRLM_STORE_F64, 1, dims, (void **)&w);
    if (st == SRLM_OK && w && dims[0] != P) st = srlm_error(SRLM_ERR_FORMAT, path, "/pairs/weight has %lld rows", (long long)dims[0]);
    if (st == SRLM_OK && srlm_store_has(s, "/pairs/label"))
      st = srlm_store_read_array(s, "/pairs/label", SRLM_STORE_F64, 1, dims, (void **)&l);
    if (st == SRLM_OK && l && dims[0] != P) st = srlm_error(SRLM_ERR_FORMAT, path, "/pairs/label has %lld rows", (long long)dims[0]);
  }
  srlm_store_strings_free(names, nn);
  srlm_store_close(s);
  const int64_t n = st == SRLM_OK ? (int64_t)floor(gamma * (double)P + 0.5) : 0;
  if (st == SRLM_OK && n > 0) {
    /* where each prompt of t-1 is */
    for (int64_t i = 0; i < out->n_shards; i++) n_at += out->sh[i].n_prompts;
    at = srlm_xmalloc((size_t)(n_at + 1) * sizeof *at);
    for (int64_t i = 0, k = 0; i < out->n_shards; i++)
      for (int64_t pr = 0; pr < out->sh[i].n_prompts; pr++) at[k++] = (prompt_at){out->sh[i].prompt_index[pr], i, pr};
    qsort(at, (size_t)n_at, sizeof *at, prompt_at_cmp);
    int64_t *order = srlm_xmalloc((size_t)P * sizeof *order);
    srlm_rng_permutation(P, (uint64_t)c->cfg->run.seed, SR_RNG_PAIR_REPLAY, (uint32_t)t, order);
    qsort(order, (size_t)n, sizeof *order, i64_cmp); /* the chosen pairs in their file order */
    out->pairs = srlm_xmalloc((size_t)n * sizeof *out->pairs);
    out->rows3 = srlm_xmalloc((size_t)n * 3 * sizeof *out->rows3);
    out->weight = srlm_xmalloc((size_t)n * sizeof *out->weight);
    out->label = srlm_xmalloc((size_t)n * sizeof *out->label);
    for (int64_t k = 0; k < n && st == SRLM_OK; k++) {
      const int64_t q = order[k], *rq = rows + 3 * q;
      const prompt_at key = {rq[0], 0, 0}, *f = bsearch(&key, at, (size_t)n_at, sizeof *at, prompt_at_cmp);
      const srlm_shard *sh = f ? &out->sh[f->shard] : NULL;
      const int64_t a = f ? sample_row(sh, f->row, rq[1]) : -1, b = f ? sample_row(sh, f->row, rq[2]) : -1;
      if (a < 0 || b < 0) {
        st = srlm_error(SRLM_ERR_FORMAT, path, "pair %lld: prompt %lld samples %lld/%lld are not in the file's shards",
                        (long long)q, (long long)rq[0], (long long)rq[1], (long long)rq[2]);
        break;
      }
      const int64_t pr = f->row;
      out->pairs[k] = (srlm_pref_pair){sh->prompt_ids + sh->prompt_offsets[pr], sh->response_ids + sh->response_offsets[a],
                                       sh->response_ids + sh->response_offsets[b],
                                       sh->prompt_offsets[pr + 1] - sh->prompt_offsets[pr],
                                       sh->response_offsets[a + 1] - sh->response_offsets[a],
                                       sh->response_offsets[b + 1] - sh->response_offsets[b]};
      memcpy(out->rows3 + 3 * k, rq, 3 * sizeof *rq);
      out->weight[k] = w ? w[q] : 1.0;
      out->label[k] = l ? l[q] : label_smoothing;
    }
    free(order);
    if (st == SRLM_OK) out->n = n;
  }
  free(at);
  free(rows);
  free(w);
  free(l);
  if (st != SRLM_OK) sr_pair_replay_free(out);
  return st;
}

void sr_pair_replay_free(sr_pair_replay *r) {
  for (int64_t i = 0; r->sh && i < r->n_shards; i++) srlm_shard_free(&r->sh[i]);
  free(r->sh);
  free(r->pairs);
  free(r->rows3);
  free(r->weight);
  free(r->label);
  memset(r, 0, sizeof *r);
}
