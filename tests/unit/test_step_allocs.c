/* step_allocs: a training step in steady state makes no device allocation. On a GPU every
 * cudaFree (and cudaFreeHost) synchronizes the device, so an allocation inside a step would
 * serialize the gradient buckets the overlapped reduce starts during the backward (engine.h).
 * Two learners (threads, sim_dp.h) on cuda-sim, each with its own backend instance and a bf16
 * tiny model with WARP's EMA anchor, train 4 steps of the same shape with the overlapped
 * reduce armed (each step's last micro-batch runs its backward with the model's
 * final-gradient callback), without and with ZeRO-1 (a sharded bf16 master, the anchor's
 * shard updated by the ema op, the compute copies all-gathered). Each micro-batch forwards the
 * anchor for its reference log-probs, as the preference trainer does, then forwards and
 * backwards the model. The backend's allocation counts (alloc_counts: its alloc/free, pinned
 * host_alloc/host_free and workspace growth) after step 1 must equal those after steps 2, 3
 * and 4 on both learners; step 1 itself must have allocated (the counts work). The reduce
 * here is sim_dp's; the comm's own staging is checked by tests/mpi/mpi_comm.c.
 *
 * Generation likewise: a judge runs srlm_generate once per shard, and each call used to
 * allocate and free its KV cache. The model keeps the last cache's buffers (model.h), so a
 * second call of the same or a smaller size allocates and frees nothing; a larger one swaps
 * them once. */
#include <math.h>

#include "srlm/generate.h"

#include "srlm/engine.h"
#include "test.h"
#include "sim_dp.h"
#include "tiny_model.h"

#define VOCAB 19
#define SEQ 12      /* tokens of every example */
#define PER_STEP 4  /* examples a step: 2 a learner, micro-batches of 1 */
#define STEPS 4
#define NSTATS 1

typedef struct learner {
  sim_dp_rank sr; /* first: sim's functions read dp.ctx as this */
  srlm_dp dp;
  srlm_backend *be;
  srlm_model *m, *anchor;
  float *ov_grads;
  const int64_t *ov_bounds;
  int64_t ov_n;
  int64_t step;
  srlm_backend_alloc_counts before, after[STEPS + 1];
  srlm_status st;
  char err[256];
} learner;

static srlm_status ov_begin(void *ctx, float *grads, int64_t n, const int64_t *bounds) {
  learner *l = ctx;
  l->ov_grads = grads, l->ov_n = n, l->ov_bounds = bounds;
  return SRLM_OK;
}
static srlm_status ov_ready(void *ctx, int64_t from) {
  (void)ctx, (void)from;
  return SRLM_OK;
}
static srlm_status ov_end(void *ctx, double *stats, int n_stats) {
  learner *l = ctx;
  /* device memory of the simulator is host memory: sim_dp sums it in place */
  if (l->ov_bounds) return sim_reduce_scatter(ctx, l->ov_grads, l->ov_n, l->ov_bounds, stats, n_stats);
  return sim_reduce(ctx, l->ov_grads, l->ov_n, stats, n_stats);
}
static void ov_abandon(void *ctx) { (void)ctx; }

static srlm_status on_step(void *ctx, int64_t step, const int64_t *window, int64_t n, srlm_engine_plan *plan) {
  learner *l = ctx;
  l->step = step;
  plan->n_lists = 1;
  plan->list[0] = (srlm_engine_list){.idx = window, .count = n, .chunk = 1};
  return SRLM_OK;
}

/* Example e: SEQ tokens of a fixed pattern shifted by e; every position but the last has a target. */
static srlm_status on_micro(void *ctx, int list, const int64_t *idx, int64_t n, double *stats, int *finite) {
  learner *l = ctx;
  (void)list;
  int32_t tok[SEQ], tgt[SEQ], cu[2] = {0, SEQ};
  float logp[SEQ], ref[SEQ], g[SEQ];
  for (int64_t k = 0; k < n; k++) {
    for (int t = 0; t < SEQ; t++) tok[t] = (int32_t)((idx[k] * 5 + t * 3) % VOCAB);
    for (int t = 0; t < SEQ; t++) tgt[t] = t + 1 < SEQ ? tok[t + 1] : -1;
    srlm_batch b = {.B = 1, .T = SEQ, .tokens = tok, .cu_seqlens = cu, .targets = tgt};
    SRLM_TRY(srlm_model_logprobs(l->anchor, &b, ref));
    SRLM_TRY(srlm_model_forward_train(l->m, &b, logp));
    double loss = 0;
    for (int t = 0; t < SEQ; t++) {
      g[t] = tgt[t] < 0 ? 0.0f : -1.0f / (float)(PER_STEP * (SEQ - 1));
      loss += tgt[t] < 0 ? 0.0 : -(double)logp[t] + 0.01 * ((double)logp[t] - ref[t]);
    }
    if (!isfinite(loss)) {
      *finite = 0;
      return SRLM_OK;
    }
    stats[0] += loss;
    SRLM_TRY(srlm_model_backward(l->m, g));
  }
  return SRLM_OK;
}

static srlm_status on_done(void *ctx, const srlm_engine_info *info) {
  learner *l = ctx;
  if (info->step >= 1 && info->step <= STEPS) srlm_backend_alloc_counts_get(l->be, &l->after[info->step]);
  return SRLM_OK;
}

static void *learner_main(void *arg) {
  learner *l = arg;
  srlm_engine_options o = {.what = "step_allocs", .order = {.units = PER_STEP * STEPS, .per_step = PER_STEP, .seed = 5,
                                                            .purpose = 0x5a11u},
                           .epochs = 1, .n_stats = NSTATS, .dp = &l->dp, .anchor = l->anchor, .anchor_mu = 0.1,
                           .hooks = {.step = on_step, .micro = on_micro, .done = on_done, .ctx = l}};
  o.optim = (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .grad_clip = 1.0};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_CONSTANT, .lr = 1e-3};
  srlm_backend_alloc_counts_get(l->be, &l->before);
  l->st = srlm_engine_run(l->m, &o, NULL);
  if (l->st != SRLM_OK) snprintf(l->err, sizeof l->err, "%s", srlm_error_message());
  return NULL;
}

static srlm_model *bf16_model(srlm_backend *be) { return tiny_model_on(VOCAB, be, SRLM_BF16); }

static int same(const srlm_backend_alloc_counts *a, const srlm_backend_alloc_counts *b) {
  return a->device_allocs == b->device_allocs && a->device_frees == b->device_frees &&
         a->host_allocs == b->host_allocs && a->host_frees == b->host_frees;
}

static void run(int zero) {
  const char *what = zero ? "2 learners, overlapped reduce, ZeRO-1" : "2 learners, overlapped reduce";
  enum { R = 2 };
  sim_dp sim = {.R = R};
  learner L[R];
  memset(L, 0, sizeof L);
  int ok = 1;
  for (int r = 0; r < R && ok; r++) {
    L[r].sr = (sim_dp_rank){&sim, r};
    L[r].dp = sim_dp_of(&L[r].sr, r, R, zero);
    L[r].dp.ctx = &L[r];
    L[r].dp.overlap = 1;
    L[r].dp.reduce_begin = ov_begin;
    L[r].dp.reduce_ready = ov_ready;
    L[r].dp.reduce_end = ov_end;
    L[r].dp.reduce_abandon = ov_abandon;
    srlm_status st = srlm_backend_open("cuda-sim", 0, &L[r].be);
    EXPECT(st == SRLM_OK, "open cuda-sim: %s", srlm_error_message());
    ok = st == SRLM_OK && (L[r].m = bf16_model(L[r].be)) != NULL;
    if (ok) EXPECT_EQ_INT(srlm_engine_anchor_create(L[r].m, &L[r].anchor), SRLM_OK);
    ok = ok && L[r].anchor;
    if (ok) {
      sim.n = (int64_t)srlm_model_num_params(L[r].m);
      sim.slot[r] = srlm_xmalloc((size_t)sim.n * sizeof(float));
    }
  }
  if (ok) {
    srlm_backend_alloc_counts c;
    EXPECT(srlm_backend_alloc_counts_get(L[0].be, &c) && c.device_allocs > 0,
           "cuda-sim does not count its allocations (%llu device allocations after creating two models)",
           (unsigned long long)c.device_allocs);
    sim_dp_run(&sim, R, learner_main, L, sizeof *L);
  }
  for (int r = 0; r < R && ok; r++) {
    EXPECT(L[r].st == SRLM_OK, "%s, learner %d: %s", what, r, L[r].err);
    if (L[r].st != SRLM_OK) continue;
    const srlm_backend_alloc_counts *a1 = &L[r].after[1];
    EXPECT(!same(&L[r].before, a1), "%s, learner %d: the first step allocated nothing: are allocations counted?", what, r);
    for (int s = 2; s <= STEPS; s++) {
      const srlm_backend_alloc_counts *a = &L[r].after[s];
      EXPECT(same(a1, a), "%s, learner %d, step %d: %llu device allocations, %llu device frees, %llu pinned "
             "allocations, %llu pinned frees since step 1 (want none)", what, r, s,
             (unsigned long long)(a->device_allocs - a1->device_allocs),
             (unsigned long long)(a->device_frees - a1->device_frees),
             (unsigned long long)(a->host_allocs - a1->host_allocs), (unsigned long long)(a->host_frees - a1->host_frees));
    }
  }
  for (int r = 0; r < R; r++) {
    srlm_model_free(L[r].anchor);
    srlm_model_free(L[r].m);
    if (L[r].be) EXPECT_EQ_INT(srlm_backend_close(L[r].be), SRLM_OK);
    free(sim.slot[r]);
  }
}

static void generation(void) {
  srlm_backend *be = NULL;
  EXPECT_EQ_INT(srlm_backend_open("cuda-sim", 0, &be), SRLM_OK);
  srlm_model *m = be ? bf16_model(be) : NULL;
  if (!m) {
    EXPECT(0, "generation: no model: %s", srlm_error_message());
    srlm_backend_close(be);
    return;
  }
  int32_t prompt[3][5] = {{1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}, {11, 12, 13, 14, 15}};
  srlm_gen_request req[3];
  for (int i = 0; i < 3; i++) req[i] = (srlm_gen_request){.prompt = prompt[i], .n_prompt = 5, .seq_id = (uint64_t)i};
  srlm_generate_params p = srlm_generate_params_default();
  p.max_new_tokens = 6;
  p.max_batch = 3;
  srlm_gen_result res[3];
  srlm_backend_alloc_counts c[4];
  int calls[4] = {3, 3, 2, 3}; /* requests per call: the same, fewer (a smaller cache), the same again */
  for (int k = 0; k < 4; k++) {
    EXPECT(srlm_generate(m, &p, calls[k], req, res, NULL) == SRLM_OK, "generate %d: %s", k, srlm_error_message());
    for (int i = 0; i < calls[k]; i++) srlm_gen_result_free(&res[i]);
    srlm_backend_alloc_counts_get(be, &c[k]);
  }
  for (int k = 1; k < 4; k++)
    EXPECT(same(&c[0], &c[k]), "generation call %d: %llu device allocations, %llu frees since the first (want none)",
           k + 1, (unsigned long long)(c[k].device_allocs - c[0].device_allocs),
           (unsigned long long)(c[k].device_frees - c[0].device_frees));
  p.max_new_tokens = 20; /* a larger cache: the spare goes, the new one comes */
  EXPECT(srlm_generate(m, &p, 3, req, res, NULL) == SRLM_OK, "generate, larger: %s", srlm_error_message());
  for (int i = 0; i < 3; i++) srlm_gen_result_free(&res[i]);
  srlm_backend_alloc_counts big;
  srlm_backend_alloc_counts_get(be, &big);
  EXPECT(big.device_allocs > c[3].device_allocs && big.device_frees > c[3].device_frees,
         "a larger cache allocated %llu and freed %llu buffers", (unsigned long long)(big.device_allocs - c[3].device_allocs),
         (unsigned long long)(big.device_frees - c[3].device_frees));
  srlm_model_free(m);
  EXPECT_EQ_INT(srlm_backend_close(be), SRLM_OK);
}

int main(void) {
  run(0);
  run(1);
  generation();
  TEST_MAIN_END();
}
