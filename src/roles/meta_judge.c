/* Meta-Rewarding's meta-judge over one iteration's scored shards (include/srlm/meta.h
 * for the rules; sr_meta_judge in sr_internal.h for the contract). The task's meta-judge
 * format is include/srlm/tasks.h's; a prompt set's is meta.template (llm_judge.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sr_internal.h"
#include "srlm/meta.h"
#include "srlm/tasks.h"

/* One meta-judged response: its shard row and its comparisons [first, first + n) of the
 * iteration's list (each asked twice: item 2c with A = a, B = b; item 2c + 1 swapped). */
typedef struct meta_group {
  int64_t shard, prompt_row, row;
  int64_t first, n;
} meta_group;

/* Growing lists of the iteration. */
typedef struct meta_list {
  meta_group *g;
  int64_t ng, cap_g;
  int *a, *b; /* (comparisons) judgment indices */
  int64_t nc, cap_c;
  char **instr, **resp, **ja, **jb; /* (2 nc) texts of each ordered item (prompt sets) */
  char **task_prompt;               /* (2 nc) meta prompts (task) */
} meta_list;

static void grow(void **p, int64_t *cap, int64_t need, size_t size) {
  if (need <= *cap) return;
  *cap = need > 2 * *cap ? need : 2 * *cap;
  *p = srlm_xrealloc(*p, (size_t)*cap * size);
}

static const char *judgment_text(const srlm_shard *s, int64_t row, int j) {
  return s->judgment_text + s->judgment_text_offsets[row * s->judgments_per_response + j];
}

/* The checker's view of a task judgment (reported only): 2 for the right verdict, +1 for
 * the reference rationale. */
static int judgment_quality(const srlm_task_ops *t, const char *prompt, const char *cand, const char *judgment) {
  int score = 0;
  if (!t->judgment_parse(judgment, strlen(judgment), &score)) return -1;
  char ref[SRLM_TASK_TEXT_MAX + 1];
  const size_t rl = t->reference_judgment(prompt, cand, strlen(cand), ref); /* rationale + score digit */
  const int right = (score >= 3) == t->check(prompt, cand, strlen(cand));
  return 2 * right + (rl > 0 && strlen(judgment) >= rl - 1 && !memcmp(judgment, ref, rl - 1));
}

/* Appends a judge pair's tokens to mj->store: the judge prompt and the two judgments. */
static srlm_status add_pair(const sr_rollout *ro, const srlm_shard *s, int64_t pr, int64_t row, const char *cand,
                            int c, int r, sr_meta *mj) {
  const int64_t J = s->judgments_per_response;
  int64_t span[6];
  span[0] = (int64_t)mj->store.n;
  if (ro->prompts) {
    const char *instr = ro->prompts->instruction[s->prompt_index[pr]];
    SRLM_TRY(srlm_llm_judge_encode(ro->llm, instr, cand, &mj->store, NULL));
  } else {
    char q[SRLM_TASK_TEXT_MAX + 1], jp[SRLM_TASK_TEXT_MAX + 1];
    sr_task_prompt(ro, s, pr, q);
    SRLM_TRY(srlm_tokenizer_encode(ro->tok, jp, ro->task->judge_prompt(q, cand, strlen(cand), jp), &mj->store));
  }
  span[1] = (int64_t)mj->store.n - span[0];
  const int which[2] = {c, r};
  for (int k = 0; k < 2; k++) {
    span[2 + 2 * k] = (int64_t)mj->store.n;
    if (ro->prompts) { /* the judge's own tokens, its EOS included */
      const int64_t i = row * J + which[k];
      for (int64_t q = s->judgment_id_offsets[i]; q < s->judgment_id_offsets[i + 1]; q++)
        srlm_token_ids_push(&mj->store, s->judgment_ids[q]);
    } else { /* the judgment (rationale and score digit: at most judgment_max_new - 1 bytes
                of the sampled text), then EOS */
      const char *jt = judgment_text(s, row, which[k]);
      SRLM_TRY(srlm_tokenizer_encode(ro->tok, jt, strnlen(jt, (size_t)ro->task->judgment_max_new - 1), &mj->store));
      srlm_token_ids_push(&mj->store, ro->eos);
    }
    span[3 + 2 * k] = (int64_t)mj->store.n - span[2 + 2 * k];
  }
  grow((void **)&mj->spans, &mj->cap, mj->n + 1, 6 * sizeof *mj->spans);
  grow((void **)&mj->rows, &mj->cap_rows, mj->n + 1, 4 * sizeof *mj->rows);
  memcpy(mj->spans + 6 * mj->n, span, sizeof span);
  const int64_t rw[4] = {s->prompt_index[pr], s->sample_index[row], c, r};
  memcpy(mj->rows + 4 * mj->n, rw, sizeof rw);
  mj->n++;
  return SRLM_OK;
}

srlm_status sr_meta_judge(const sr_rollout *ro, const srlm_shard *sh, sr_meta *mj) {
  memset(mj, 0, sizeof *mj);
  meta_list L = {0};
  srlm_status st = SRLM_OK;
  double *scores = NULL;
  int64_t cap_scores = 0;
  int pa[SRLM_META_MAX_J * (SRLM_META_MAX_J - 1) / 2], pb[SRLM_META_MAX_J * (SRLM_META_MAX_J - 1) / 2];
  /* 1. which responses, which comparisons; the meta prompts */
  for (int64_t i = 0; i < ro->shards_max && st == SRLM_OK; i++) {
    const srlm_shard *s = &sh[i];
    const int64_t J = s->judgments_per_response;
    if (J > SRLM_META_MAX_J) {
      st = srlm_error(SRLM_ERR_CONFIG, "judge.samples", "%lld judgments per response; the meta-judge compares at "
                      "most %d", (long long)J, SRLM_META_MAX_J);
      break;
    }
    if (J < 2) continue;
    for (int64_t pr = 0, j0 = 0; pr < s->n_prompts && st == SRLM_OK; pr++) {
      int64_t j1 = j0;
      while (j1 < s->n_responses && s->response_prompt[j1] == pr) j1++;
      const int k = (int)(j1 - j0);
      grow((void **)&scores, &cap_scores, (int64_t)k * J + 1, sizeof *scores);
      for (int64_t x = 0; x < k * J; x++) scores[x] = s->judgment_score[j0 * J + x];
      const int q = srlm_meta_pick_response(k, (int)J, scores, NULL);
      const int64_t row = j0 + q;
      j0 = j1;
      if (q < 0) continue;
      const int nc = srlm_meta_comparisons((int)J, scores + (int64_t)q * J, pa, pb);
      if (nc == 0) continue;
      char *cand = NULL;
      size_t cl = 0;
      st = sr_response_text(ro, s, row, &cand, &cl);
      if (st != SRLM_OK) break;
      grow((void **)&L.g, &L.cap_g, L.ng + 1, sizeof *L.g);
      L.g[L.ng++] = (meta_group){.shard = i, .prompt_row = pr, .row = row, .first = L.nc, .n = nc};
      if (L.nc + nc > L.cap_c) { /* the parallel arrays grow together */
        L.cap_c = 2 * (L.nc + nc);
        L.a = srlm_xrealloc(L.a, (size_t)L.cap_c * sizeof *L.a);
        L.b = srlm_xrealloc(L.b, (size_t)L.cap_c * sizeof *L.b);
        if (ro->prompts) {
          L.instr = srlm_xrealloc(L.instr, 2 * (size_t)L.cap_c * sizeof *L.instr);
          L.resp = srlm_xrealloc(L.resp, 2 * (size_t)L.cap_c * sizeof *L.resp);
          L.ja = srlm_xrealloc(L.ja, 2 * (size_t)L.cap_c * sizeof *L.ja);
          L.jb = srlm_xrealloc(L.jb, 2 * (size_t)L.cap_c * sizeof *L.jb);
        } else {
          L.task_prompt = srlm_xrealloc(L.task_prompt, 2 * (size_t)L.cap_c * sizeof *L.task_prompt);
        }
      }
      char qt[SRLM_TASK_TEXT_MAX + 1];
      if (!ro->prompts) sr_task_prompt(ro, s, pr, qt);
      for (int c = 0; c < nc; c++) {
        const int64_t at = L.nc + c;
        L.a[at] = pa[c];
        L.b[at] = pb[c];
        for (int o = 0; o < 2; o++) {
          const char *x = judgment_text(s, row, o ? pb[c] : pa[c]), *y = judgment_text(s, row, o ? pa[c] : pb[c]);
          if (ro->prompts) {
            L.instr[2 * at + o] = srlm_xstrdup(ro->prompts->instruction[s->prompt_index[pr]]);
            L.resp[2 * at + o] = srlm_xstrdup(cand);
            L.ja[2 * at + o] = srlm_xstrdup(x);
            L.jb[2 * at + o] = srlm_xstrdup(y);
          } else {
            char mp[SRLM_TASK_TEXT_MAX + 1];
            /* parsed scores differ, so both judgments parse */
            SRLM_CHECK(ro->task->meta_prompt(qt, cand, cl, x, strlen(x), y, strlen(y), mp) > 0,
                       "a scored judgment does not parse");
            L.task_prompt[2 * at + o] = srlm_xstrdup(mp);
          }
        }
      }
      L.nc += nc;
      free(cand);
    }
  }
  free(scores);
  /* 2. every ordered comparison of the iteration in one batched call */
  const int64_t n_items = 2 * L.nc;
  srlm_meta_verdict *v = srlm_xcalloc((size_t)n_items + 1, sizeof *v);
  int *fmt = srlm_xcalloc((size_t)n_items + 1, sizeof *fmt);
  if (st == SRLM_OK && n_items > INT32_MAX)
    st = srlm_error(SRLM_ERR_RANGE, "meta-judge", "%lld comparisons in one iteration", (long long)n_items);
  if (st == SRLM_OK && n_items > 0) {
    if (ro->prompts)
      st = srlm_llm_meta_run(ro->meta, ro->m, (int)n_items, (const char *const *)L.instr, (const char *const *)L.resp,
                             (const char *const *)L.ja, (const char *const *)L.jb, v, fmt, &mj->too_long);
    else
      st = ro->task->meta_judge(ro->m, ro->tok, ro->max_batch, (int)n_items, (const char *const *)L.task_prompt, v, fmt);
  }
  mj->responses = L.ng;
  mj->comparisons = n_items;
  for (int64_t x = 0; x < n_items; x++) mj->format_failures += !fmt[x];
  /* 3. per response: the win matrix, Elo, the judge pair */
  for (int64_t gi = 0; gi < L.ng && st == SRLM_OK; gi++) {
    const meta_group *g = &L.g[gi];
    const srlm_shard *s = &sh[g->shard];
    const int J = (int)s->judgments_per_response;
    double w[SRLM_META_MAX_J * SRLM_META_MAX_J] = {0}, elo[SRLM_META_MAX_J];
    for (int64_t c = g->first; c < g->first + g->n; c++) {
      const int o = srlm_meta_both_orders(v[2 * c], v[2 * c + 1]);
      mj->agreeing += o != 0;
      if (o > 0) w[L.a[c] * J + L.b[c]] += 1;
      if (o < 0) w[L.b[c] * J + L.a[c]] += 1;
    }
    st = srlm_meta_elo(J, w, elo);
    int c, r, made;
    if (st == SRLM_OK) srlm_meta_judge_pair(J, elo, &c, &r, &made);
    if (st != SRLM_OK || !made) continue;
    char *cand = NULL;
    size_t cl = 0;
    st = sr_response_text(ro, s, g->row, &cand, &cl);
    if (st == SRLM_OK) st = add_pair(ro, s, g->prompt_row, g->row, cand, c, r, mj);
    if (st == SRLM_OK) {
      mj->elo_spread_sum += elo[c] - elo[r];
      if (!ro->prompts) { /* reported only: is the chosen judgment the better one by the checker? */
        char q[SRLM_TASK_TEXT_MAX + 1];
        sr_task_prompt(ro, s, g->prompt_row, q);
        mj->pairs_better_by_checker += judgment_quality(ro->task, q, cand, judgment_text(s, g->row, c)) >
                                       judgment_quality(ro->task, q, cand, judgment_text(s, g->row, r));
      }
    }
    free(cand);
  }
  for (int64_t x = 0; x < n_items; x++) {
    if (L.instr) free(L.instr[x]), free(L.resp[x]), free(L.ja[x]), free(L.jb[x]);
    if (L.task_prompt) free(L.task_prompt[x]);
  }
  free(L.instr);
  free(L.resp);
  free(L.ja);
  free(L.jb);
  free(L.task_prompt);
  free(L.g);
  free(L.a);
  free(L.b);
  free(v);
  free(fmt);
  if (st != SRLM_OK) sr_meta_free(mj);
  return st;
}

void sr_meta_pairs(const sr_meta *mj, srlm_pref_pair *out) {
  for (int64_t i = 0; i < mj->n; i++) {
    const int64_t *sp = mj->spans + 6 * i;
    out[i] = (srlm_pref_pair){mj->store.ids + sp[0], mj->store.ids + sp[2], mj->store.ids + sp[4], sp[1], sp[3], sp[5]};
  }
}

void sr_meta_free(sr_meta *mj) {
  srlm_token_ids_free(&mj->store);
  free(mj->spans);
  free(mj->rows);
  memset(mj, 0, sizeof *mj);
}
