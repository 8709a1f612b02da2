/* engine: the training-step engine's contract (engine.h), with a stub trainer on the tiny
 * model. The stub's micro-batches add to the gradient values that are multiples of 1/8
 * (exact in float in any order), so every expectation is exact:
 * 1. one learner: the epoch hook once per epoch, the step hook once per step with its
 *    window of the epoch's Philox order, each list's micro-batches cut by its rule
 *    (chunk, pieces) in order, the step's gradient and
 *    metric sums in the model during done(), lr from the schedule, AdamW with clipping
 *    (a twin model stepped by hand with the same gradients has the same weights, bit for
 *    bit), the gradients cleared at the end;
 * 2. a non-finite micro-batch ends its step's forwarding and skips the step; a NaN
 *    gradient is skipped by AdamW; both counted, the weights untouched;
 * 3. a run resumed after step 2 or 3 (inside the first epoch, at its end) from the
 *    weights and AdamW state done() saw continues the uninterrupted run bit for bit: the
 *    same later steps, step reports, optimizer states and final weights;
 * 4. 2 and 3 learners (threads, a reduce that sums in rank order): each learner's
 *    micro-batches are its slice's, every learner reduces once per step (also one with
 *    nothing to forward), a non-finite loss on one learner skips the step everywhere,
 *    and the weights are the single learner's, bit for bit;
 *    The same with the overlapped reduce (dp.overlap, each micro-batch also running a real
 *    backward that adds zeros): begin and end once a step on every learner, the model's
 *    final-gradient stages announced during each step's last micro-batch of a learner only,
 *    all of them in backward order, the same weights; a failing last micro-batch abandons
 *    the open reduce and disarms the model;
 * 5. bad options, learner layouts, resume points and plans are errors that change
 *    nothing; a done() error stops the run with it. */
#include <math.h>

#include "srlm/engine.h"
#include "model_host.h"
#include "test.h"
#include "tiny_model.h"
#include "sim_dp.h"

#define VOCAB 19
#define NEX 10     /* examples (list 0) */
#define NREP 5     /* replay-like examples (list 1), cycled 3 a step */
#define PER_STEP 4 /* list 0 examples a step: 3 steps (4, 4, 2) an epoch */
#define SEED 17
#define PURPOSE 0x7e57u
#define EPOCHS 2
#define STEPS (EPOCHS * 3)
#define MAXCALLS 256

/* ---- the stub trainer ------------------------------------------------------------------ */

typedef struct call {
  int64_t step; /* 1-based */
  int list;
  int64_t b0, b1; /* [b0, b1) of the list */
} call;

typedef struct stub {
  srlm_model *m;
  size_t n;
  int two_lists;
  int64_t chunk; /* list 0's rule; list 1 is cut in 2 pieces */
  const int64_t *window; /* the step's list 0: its window of the order */
  int64_t replay[3];
  int64_t cursor; /* next list-1 example */
  int64_t step;   /* the step being planned or run (1-based) */
  int64_t count0; /* list 0 examples of that step */
  int64_t seen[STEPS + 1][PER_STEP]; /* each step's window */
  /* injections (1-based steps; 0: none) */
  int64_t nan_loss_step, nan_loss_example; /* the micro-batch holding that example reports NaN */
  int64_t nan_grad_step;
  int64_t fail_done_step;
  int fail_micro_call; /* the micro-batch of that call (1-based, all steps) fails after its backward */
  int zero_backward; /* each micro-batch also runs a real backward with g = 0 (adds zeros) */
  /* what the hooks saw */
  int epochs[8], n_epochs;
  int64_t planned[16];
  int n_planned;
  call calls[MAXCALLS];
  int n_calls;
  srlm_engine_info info[STEPS + 1]; /* by step */
  double stats[STEPS + 1][3];
  float *grad[STEPS + 1], *w[STEPS + 1], *om[STEPS + 1], *ov[STEPS + 1];
  int64_t ostep[STEPS + 1], oskip[STEPS + 1];
  int64_t first_done, n_done;
} stub;

/* Example e's gradient (list 1 examples are offset by 100): a multiple of 1/8 in [-1/2, 1/2]. */
static float contrib(int64_t e, size_t j) { return (float)((int)((e * 7 + (int64_t)j * 3) % 9) - 4) * 0.125f; }

static void stub_init(stub *s, srlm_model *m, int two_lists, int64_t chunk) {
  memset(s, 0, sizeof *s);
  s->m = m;
  s->n = srlm_model_num_params(m);
  s->two_lists = two_lists;
  s->chunk = chunk;
}

static void stub_free(stub *s) {
  for (int k = 0; k <= STEPS; k++) {
    free(s->grad[k]);
    free(s->w[k]);
    free(s->om[k]);
    free(s->ov[k]);
  }
}

static srlm_status stub_epoch(void *ctx, int epoch) {
  stub *s = ctx;
  if (s->n_epochs < 8) s->epochs[s->n_epochs++] = epoch;
  return SRLM_OK;
}

static srlm_status stub_step(void *ctx, int64_t step, const int64_t *window, int64_t n, srlm_engine_plan *plan) {
  stub *s = ctx;
  s->step = step;
  if (s->n_planned < 16) s->planned[s->n_planned++] = step;
  s->window = window;
  s->count0 = n;
  if (step >= 1 && step <= STEPS && n <= PER_STEP) memcpy(s->seen[step], window, (size_t)n * sizeof *window);
  plan->list[0] = (srlm_engine_list){.idx = window, .count = n, .chunk = s->chunk};
  plan->n_lists = 1;
  if (s->two_lists) {
    for (int j = 0; j < 3; j++) s->replay[j] = 100 + (s->cursor + j) % NREP;
    s->cursor = (s->cursor + 3) % NREP;
    plan->list[1] = (srlm_engine_list){.idx = s->replay, .count = 3, .pieces = 2};
    plan->n_lists = 2;
  }
  return SRLM_OK;
}

/* stats: [0] examples, [1] sum of their ids, [2] micro-batches */
static srlm_status stub_micro(void *ctx, int list, const int64_t *idx, int64_t n, double *stats, int *finite) {
  stub *s = ctx;
  const int64_t b0 = idx - (list == 0 ? s->window : s->replay);
  if (s->n_calls < MAXCALLS) s->calls[s->n_calls++] = (call){s->step, list, b0, b0 + n};
  stats[0] += (double)n;
  stats[2] += 1;
  for (int64_t q = 0; q < n; q++) {
    stats[1] += (double)idx[q];
    if (s->step == s->nan_loss_step && idx[q] == s->nan_loss_example) *finite = 0;
  }
  if (!*finite) return SRLM_OK; /* no backward, as a trainer does */
  float *g = test_g(s->m);
  for (int64_t q = 0; q < n; q++)
    for (size_t j = 0; j < s->n; j++) g[j] += contrib(idx[q], j);
  if (s->step == s->nan_grad_step) g[0] = NAN;
  if (s->zero_backward) { /* the model's backward (its final-gradient callback), adding zeros */
    int32_t tok[6] = {1, 2, 3, 4, 5, 6}, tgt[6] = {2, 3, 4, 5, 6, -1}, cu[2] = {0, 6};
    float logp[6], g0[6] = {0};
    srlm_batch b = {.B = 1, .T = 6, .tokens = tok, .cu_seqlens = cu, .targets = tgt};
    SRLM_TRY(srlm_model_forward_train(s->m, &b, logp));
    SRLM_TRY(srlm_model_backward(s->m, g0));
  }
  if (s->n_calls == s->fail_micro_call)
    return srlm_error(SRLM_ERR_IO, "stub", "micro-batch %d fails (step %lld)", s->n_calls, (long long)s->step);
  return SRLM_OK;
}

static float *copy_of(const float *x, size_t n) {
  float *c = srlm_xmalloc(n * sizeof *c);
  memcpy(c, x, n * sizeof *c);
  return c;
}

static srlm_status stub_done(void *ctx, const srlm_engine_info *info) {
  stub *s = ctx;
  const int64_t k = info->step;
  if (k < 1 || k > STEPS || k != s->step) return srlm_error(SRLM_ERR_INTERNAL, "stub", "done(%lld) in step %lld",
                                                             (long long)k, (long long)s->step);
  if (s->n_done++ == 0) s->first_done = k;
  s->info[k] = *info;
  memcpy(s->stats[k], info->stats, sizeof s->stats[k]);
  s->grad[k] = copy_of(test_g(s->m), s->n);
  s->w[k] = copy_of(test_w(s->m), s->n);
  srlm_optim_state os;
  srlm_optim_get_state(info->optim, &os);
  s->om[k] = malloc(s->n * sizeof(float));
  s->ov[k] = malloc(s->n * sizeof(float));
  /* all the moments (gathered from every learner under ZeRO-1: every learner is here) */
  SRLM_TRY(srlm_optim_read_moments(info->optim, s->om[k], s->ov[k]));
  s->ostep[k] = os.step;
  s->oskip[k] = os.n_skipped;
  if (k == s->fail_done_step) return srlm_error(SRLM_ERR_IO, "stub", "done fails at step %lld", (long long)k);
  return SRLM_OK;
}

static srlm_engine_options stub_options(stub *s) {
  srlm_engine_options o = {.what = "stub", .order = {.units = NEX, .per_step = PER_STEP, .seed = SEED, .purpose = PURPOSE},
                           .epochs = EPOCHS, .n_stats = 3,
                           .hooks = {.epoch = stub_epoch, .step = stub_step, .micro = stub_micro, .done = stub_done,
                                     .ctx = s}};
  o.optim = (srlm_optim_config){.beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1, .grad_clip = 1.0};
  o.schedule = (srlm_lr_schedule){.kind = SRLM_CFG_LR_COSINE, .lr = 1e-2, .min_lr = 1e-3, .warmup_steps = 1};
  return o;
}

static int all_zero(const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (x[i] != 0.0f) return 0;
  return 1;
}

/* ---- 1 + 2: one learner ----------------------------------------------------------------- */

/* The micro-batches [b0, b1) one learner must see for (step, list), in order. */
static int expected_cuts(int64_t step, int list, int64_t chunk, int64_t cuts[][2]) {
  const int64_t count = list == 0 ? ((step - 1) % 3 == 2 ? 2 : 4) : 3;
  int n = 0;
  if (list == 1) { /* 3 examples in 2 pieces: [0, 1), [1, 3) */
    cuts[n][0] = 0, cuts[n][1] = 1, n++;
    cuts[n][0] = 1, cuts[n][1] = 3, n++;
    return n;
  }
  for (int64_t b = 0; b < count; b += chunk, n++) cuts[n][0] = b, cuts[n][1] = b + chunk < count ? b + chunk : count;
  return n;
}

/* Step `step`'s window of the engine's order: its examples into ex (PER_STEP); returns their count. */
static int64_t step_window(int64_t step, int64_t *ex) {
  int64_t order[NEX];
  srlm_rng_permutation(NEX, SEED, PURPOSE, (uint32_t)((step - 1) / 3), order);
  const int64_t first = (step - 1) % 3 * PER_STEP, count = NEX - first < PER_STEP ? NEX - first : PER_STEP;
  memcpy(ex, order + first, (size_t)count * sizeof *ex);
  return count;
}

/* The expected gradient of a step from the examples its hooks planned. */
static void step_gradient(int64_t step, size_t n, float *g) {
  int64_t ex[PER_STEP];
  const int64_t count = step_window(step, ex);
  memset(g, 0, n * sizeof *g);
  for (int64_t i = 0; i < count; i++)
    for (size_t j = 0; j < n; j++) g[j] += contrib(ex[i], j);
  const int64_t cursor = 3 * (step - 1) % NREP;
  for (int q = 0; q < 3; q++)
    for (size_t j = 0; j < n; j++) g[j] += contrib(100 + (cursor + q) % NREP, j);
}

static void test_one_learner(void) {
  srlm_model *m = tiny_model_with_vocab(VOCAB), *twin = tiny_model_with_vocab(VOCAB);
  if (!m || !twin) return;
  stub s;
  stub_init(&s, m, 1, 3);
  int64_t ex[PER_STEP];
  step_window(2, ex);
  s.nan_loss_step = 2;
  s.nan_loss_example = ex[0]; /* in step 2's first micro-batch */
  s.nan_grad_step = 4;
  srlm_engine_options o = stub_options(&s);
  srlm_engine_summary sum;
  srlm_status st = srlm_engine_run(m, &o, &sum);
  EXPECT(st == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(sum.steps, STEPS);
  EXPECT_EQ_INT(sum.skipped, 2);
  EXPECT(s.n_epochs == 2 && s.epochs[0] == 0 && s.epochs[1] == 1, "epoch hook: %d calls", s.n_epochs);
  EXPECT_EQ_INT(s.n_planned, STEPS);
  for (int k = 0; k < s.n_planned; k++) EXPECT_EQ_INT(s.planned[k], k + 1);
  for (int64_t k = 1; k <= STEPS; k++) {
    const int64_t count = step_window(k, ex);
    EXPECT(memcmp(s.seen[k], ex, (size_t)count * sizeof *ex) == 0, "step %lld: its window is not the Philox order's",
           (long long)k);
  }

  /* the micro-batches: each list's cuts in order; step 2 stops at its NaN micro-batch */
  int c = 0;
  for (int64_t step = 1; step <= STEPS; step++)
    for (int list = 0; list < 2; list++) {
      int64_t cuts[8][2];
      int nc = expected_cuts(step, list, 3, cuts);
      if (step == 2) nc = list == 0 ? 1 : 0;
      for (int q = 0; q < nc; q++, c++) {
        const call *k = c < s.n_calls ? &s.calls[c] : NULL;
        EXPECT(k && k->step == step && k->list == list && k->b0 == cuts[q][0] && k->b1 == cuts[q][1],
               "micro-batch %d: step %lld list %d [%lld, %lld), expected step %lld list %d [%lld, %lld)", c,
               k ? (long long)k->step : -1LL, k ? k->list : -1, k ? (long long)k->b0 : -1LL,
               k ? (long long)k->b1 : -1LL, (long long)step, list, (long long)cuts[q][0], (long long)cuts[q][1]);
      }
    }
  EXPECT_EQ_INT(s.n_calls, c);

  /* every step against a twin stepped by hand with the expected gradient */
  srlm_optim *opt = NULL;
  EXPECT(srlm_optim_create_for_model(twin, &o.optim, &opt) == SRLM_OK, "%s", srlm_error_message());
  srlm_lr_schedule sched = o.schedule;
  sched.total_steps = STEPS;
  float *g = srlm_xmalloc(s.n * sizeof *g);
  for (int64_t k = 1; k <= STEPS && opt && s.w[k]; k++) {
    const srlm_engine_info *in = &s.info[k];
    EXPECT(in->step == k && in->total_steps == STEPS && in->epoch == (k - 1) / 3 + 1 && in->epochs == EPOCHS,
           "step %lld: info step %lld/%lld epoch %d/%d", (long long)k, (long long)in->step, (long long)in->total_steps,
           in->epoch, in->epochs);
    EXPECT(in->lr == srlm_lr_at(&sched, k - 1), "step %lld: lr %.17g, schedule %.17g", (long long)k, in->lr,
           srlm_lr_at(&sched, k - 1));
    const int skipped = k == 2 || k == 4;
    EXPECT(in->skipped == skipped && in->n_skipped == (k >= 4 ? 2 : k >= 2 ? 1 : 0),
           "step %lld: skipped %d (%lld so far)", (long long)k, in->skipped, (long long)in->n_skipped);
    const double examples = k == 2 ? 3 : ((k - 1) % 3 == 2 ? 2 : 4) + 3, micro = k == 2 ? 1 : ((k - 1) % 3 == 2 ? 1 : 2) + 2;
    EXPECT(s.stats[k][0] == examples && s.stats[k][2] == micro, "step %lld: stats %g examples, %g micro-batches; "
           "expected %g, %g", (long long)k, s.stats[k][0], s.stats[k][2], examples, micro);
    if (k == 2) {
      EXPECT(isnan(in->grad_norm) && in->clip_scale == 1.0, "step 2: grad norm %g, clip %g", in->grad_norm,
             in->clip_scale);
      EXPECT(all_zero(s.grad[k], s.n), "step 2: a micro-batch that reported NaN left a gradient");
    } else if (k != 4) {
      step_gradient(k, s.n, g);
      EXPECT(memcmp(g, s.grad[k], s.n * sizeof *g) == 0, "step %lld: the gradient in done() is not the sum of the "
             "step's micro-batches alone", (long long)k);
      srlm_optim_stats os;
      EXPECT(srlm_optim_step(opt, test_w(twin), g, in->lr, &os) == SRLM_OK, "%s", srlm_error_message());
      EXPECT(memcmp(&os.grad_norm, &in->grad_norm, sizeof(double)) == 0 && os.clip_scale == in->clip_scale &&
                 in->clip_scale < 1,
             "step %lld: grad norm %.17g clip %g, by hand %.17g clip %g", (long long)k, in->grad_norm, in->clip_scale,
             os.grad_norm, os.clip_scale);
    } else {
      EXPECT(!isfinite(in->grad_norm), "step 4: grad norm %g with a NaN gradient", in->grad_norm);
    }
    EXPECT(memcmp(test_w(twin), s.w[k], s.n * sizeof(float)) == 0, "step %lld: weights differ from the "
           "twin's", (long long)k);
  }
  EXPECT(s.oskip[STEPS] == 1 && s.ostep[STEPS] == 4, "optimizer: %lld steps, %lld skipped (expected 4, 1: the "
         "NaN loss never reached it)", (long long)s.ostep[STEPS], (long long)s.oskip[STEPS]);
  EXPECT(all_zero(test_g(m), s.n), "gradients left after the run");
  free(g);
  srlm_optim_free(opt);
  stub_free(&s);
  srlm_model_free(m);
  srlm_model_free(twin);
}

/* ---- 3: resume ------------------------------------------------------------------------- */

static void test_resume(void) {
  srlm_model *m = tiny_model_with_vocab(VOCAB);
  if (!m) return;
  stub all;
  stub_init(&all, m, 1, 3);
  srlm_engine_options o = stub_options(&all);
  EXPECT(srlm_engine_run(m, &o, NULL) == SRLM_OK, "%s", srlm_error_message());
  EXPECT_EQ_INT(all.n_done, STEPS);
  for (int64_t start = 2; start <= 3 && all.n_done == STEPS; start++) {
    srlm_model *mr = tiny_model_with_vocab(VOCAB);
    if (!mr) break;
    memcpy(test_w(mr), all.w[start], all.n * sizeof(float));
    stub rs;
    stub_init(&rs, mr, 1, 3);
    rs.cursor = 3 * start % NREP; /* the trainer's own cursor, as a checkpoint would keep it */
    srlm_train_resume res = {.start_step = start, .m = all.om[start], .v = all.ov[start], .n = all.n,
                             .optim_step = all.ostep[start], .optim_skipped = all.oskip[start]};
    srlm_engine_options ro = stub_options(&rs);
    ro.resume = &res;
    srlm_engine_summary sum;
    EXPECT(srlm_engine_run(mr, &ro, &sum) == SRLM_OK, "resume after %lld: %s", (long long)start, srlm_error_message());
    EXPECT(sum.steps == STEPS && sum.skipped == 0, "resume after %lld: %lld steps, %lld skipped", (long long)start,
           (long long)sum.steps, (long long)sum.skipped);
    EXPECT(rs.n_epochs == EPOCHS, "resume after %lld: the epoch hook ran %d times (every epoch draws its order)",
           (long long)start, rs.n_epochs);
    EXPECT(rs.n_planned == STEPS - start && rs.planned[0] == start + 1, "resume after %lld: %d steps planned from "
           "%lld", (long long)start, rs.n_planned, (long long)rs.planned[0]);
    EXPECT(rs.first_done == start + 1 && rs.n_done == STEPS - start, "resume after %lld: done() from %lld, %lld times",
           (long long)start, (long long)rs.first_done, (long long)rs.n_done);
    for (int64_t k = start + 1; k <= STEPS && rs.n_done == STEPS - start; k++) {
      const srlm_engine_info *a = &all.info[k], *b = &rs.info[k];
      EXPECT(memcmp(&a->lr, &b->lr, sizeof(double)) == 0 && memcmp(&a->grad_norm, &b->grad_norm, sizeof(double)) == 0 &&
                 a->skipped == b->skipped && all.ostep[k] == rs.ostep[k],
             "resume after %lld, step %lld: lr %.17g vs %.17g, grad norm %.17g vs %.17g", (long long)start,
             (long long)k, b->lr, a->lr, b->grad_norm, a->grad_norm);
      EXPECT(memcmp(all.w[k], rs.w[k], all.n * sizeof(float)) == 0 && memcmp(all.om[k], rs.om[k], all.n * sizeof(float)) == 0 &&
                 memcmp(all.ov[k], rs.ov[k], all.n * sizeof(float)) == 0,
             "resume after %lld, step %lld: weights or AdamW moments differ", (long long)start, (long long)k);
    }
    fprintf(stderr, "resumed after step %lld of %d: the same %lld later steps, bit for bit\n", (long long)start, STEPS,
            (long long)rs.n_done);
    stub_free(&rs);
    srlm_model_free(mr);
  }
  stub_free(&all);
  srlm_model_free(m);
}

/* ---- 4: learners ------------------------------------------------------------------------ */

/* One call of the overlapped reduce's ready: in which step, after how many micro-batches of
 * the learner, and from where the gradients were final. */
typedef struct ready_call {
  int64_t step;
  int n_calls;
  size_t from;
} ready_call;

typedef struct learner {
  sim_dp_rank sr; /* first: dp.ctx is the learner, and sim's functions read it as this */
  srlm_dp dp;
  stub s;
  srlm_engine_summary sum;
  srlm_status st;
  char err[256];
  /* the overlapped reduce (dp.overlap) */
  float *ov_grads;
  const int64_t *ov_bounds;
  int64_t ov_n;
  int begins, ends, abandons, open;
  ready_call ready[MAXCALLS];
  int n_ready;
} learner;

static srlm_status sim_ov_begin(void *ctx, float *grads, int64_t n, const int64_t *bounds) {
  learner *l = ctx;
  if (l->open) return srlm_error(SRLM_ERR_INTERNAL, "sim_ov_begin", "already open");
  l->open = 1;
  l->begins++;
  l->ov_grads = grads;
  l->ov_n = n;
  l->ov_bounds = bounds;
  return SRLM_OK;
}

static srlm_status sim_ov_ready(void *ctx, int64_t from) {
  learner *l = ctx;
  if (!l->open) return srlm_error(SRLM_ERR_INTERNAL, "sim_ov_ready", "not open");
  if (l->n_ready < MAXCALLS) l->ready[l->n_ready++] = (ready_call){l->s.step, l->s.n_calls, (size_t)from};
  return SRLM_OK;
}

/* the same sums as the plain reduce, at the end */
static srlm_status sim_ov_end(void *ctx, double *stats, int n_stats) {
  learner *l = ctx;
  if (!l->open) return srlm_error(SRLM_ERR_INTERNAL, "sim_ov_end", "not open");
  l->open = 0;
  l->ends++;
  if (l->ov_bounds) return sim_reduce_scatter(ctx, l->ov_grads, l->ov_n, l->ov_bounds, stats, n_stats);
  return sim_reduce(ctx, l->ov_grads, l->ov_n, stats, n_stats);
}

static void sim_ov_abandon(void *ctx) {
  learner *l = ctx;
  l->open = 0;
  l->abandons++;
}

static void *learner_main(void *arg) {
  learner *l = arg;
  srlm_engine_options o = stub_options(&l->s);
  o.dp = &l->dp;
  l->st = srlm_engine_run(l->s.m, &o, &l->sum);
  if (l->st != SRLM_OK) snprintf(l->err, sizeof l->err, "%s", srlm_error_message());
  return NULL;
}

/* R learners on the stub (two_lists, list 0 in chunks of `chunk`; zero: ZeRO-1) against one. */
static void run_learners(const char *what, int R, int two_lists, int64_t chunk, int64_t nan_step, int64_t nan_example,
                         int zero, int overlap) {
  srlm_model *one = tiny_model_with_vocab(VOCAB);
  if (!one) return;
  stub s1;
  stub_init(&s1, one, two_lists, chunk);
  s1.nan_loss_step = nan_step;
  s1.nan_loss_example = nan_example;
  s1.zero_backward = overlap;
  srlm_engine_options o = stub_options(&s1);
  EXPECT(srlm_engine_run(one, &o, NULL) == SRLM_OK, "%s, one learner: %s", what, srlm_error_message());
  sim_dp sim = {.R = R};
  learner L[SIM_DP_MAX_RANKS];
  memset(L, 0, sizeof L);
  for (int r = 0; r < R; r++) {
    L[r].sr = (sim_dp_rank){&sim, r};
    L[r].dp = sim_dp_of(&L[r].sr, r, R, zero);
    if (overlap) {
      L[r].dp.ctx = &L[r];
      L[r].dp.overlap = 1;
      L[r].dp.reduce_begin = sim_ov_begin;
      L[r].dp.reduce_ready = sim_ov_ready;
      L[r].dp.reduce_end = sim_ov_end;
      L[r].dp.reduce_abandon = sim_ov_abandon;
    }
    stub_init(&L[r].s, tiny_model_with_vocab(VOCAB), two_lists, chunk);
    L[r].s.nan_loss_step = nan_step;
    L[r].s.nan_loss_example = nan_example;
    L[r].s.zero_backward = overlap;
    sim.n = (int64_t)L[r].s.n;
    sim.slot[r] = srlm_xmalloc(L[r].s.n * sizeof(float));
  }
  sim_dp_run(&sim, R, learner_main, L, sizeof *L);
  for (int r = 0; r < R; r++) {
    stub *s = &L[r].s;
    EXPECT(L[r].st == SRLM_OK, "%s, learner %d: %s", what, r, L[r].err);
    EXPECT(sim.reduces[r] == STEPS, "%s, learner %d: %d reduces for %d steps", what, r, sim.reduces[r], STEPS);
    EXPECT(L[r].sum.skipped == (nan_step ? 1 : 0), "%s, learner %d: %lld steps skipped", what, r,
           (long long)L[r].sum.skipped);
    /* its micro-batches lie in its slice of each list and cover it in order (unless a NaN
       ended the step) */
    for (int64_t step = 1; step <= STEPS; step++)
      for (int list = 0; list < 1 + two_lists; list++) {
        const int64_t count = list == 0 ? ((step - 1) % 3 == 2 ? 2 : 4) : 3;
        int64_t lo = count * r / R, hi = count * (r + 1) / R, at = lo;
        for (int c = 0; c < s->n_calls; c++) {
          const call *k = &s->calls[c];
          if (k->step != step || k->list != list) continue;
          EXPECT(k->b0 == at && k->b1 > k->b0 && k->b1 <= hi && (list == 1 || k->b1 - k->b0 <= chunk),
                 "%s, learner %d, step %lld, list %d: micro-batch [%lld, %lld) in slice [%lld, %lld) from %lld", what,
                 r, (long long)step, list, (long long)k->b0, (long long)k->b1, (long long)lo, (long long)hi,
                 (long long)at);
          at = k->b1;
        }
        EXPECT(at == hi || step == nan_step, "%s, learner %d, step %lld, list %d: forwarded [%lld, %lld) of its "
               "slice [%lld, %lld)", what, r, (long long)step, list, (long long)lo, (long long)at, (long long)lo,
               (long long)hi);
      }
    if (overlap) {
      /* begin and end once a step; the final-gradient stages announced only during each
         step's last micro-batch of this learner (none without one or after a NaN), all of
         them, in backward order */
      size_t from[16];
      const int k_stages = srlm_model_grad_stages(s->m, from);
      EXPECT(L[r].begins == STEPS && L[r].ends == STEPS && L[r].abandons == 0 && !L[r].open,
             "%s, learner %d: %d begins, %d ends, %d abandons for %d steps", what, r, L[r].begins, L[r].ends,
             L[r].abandons, STEPS);
      for (int64_t step = 1; step <= STEPS; step++) {
        int last = -1, got = 0, bad = 0;
        for (int c = 0; c < s->n_calls; c++)
          if (s->calls[c].step == step) last = c;
        for (int q = 0; q < L[r].n_ready; q++) {
          const ready_call *rc = &L[r].ready[q];
          if (rc->step != step) continue;
          bad += rc->n_calls != last + 1 || got >= k_stages || rc->from != from[got];
          got++;
        }
        const int want = last < 0 || step == nan_step ? 0 : k_stages;
        EXPECT((got == want || (step == nan_step && got <= k_stages)) && bad == 0,
               "%s, learner %d, step %lld: %d stages announced (want %d), %d out of place", what, r,
               (long long)step, got, want, bad);
      }
    }
    for (int64_t k = 1; k <= STEPS && s->w[k] && s1.w[k]; k++) {
      int micro = 0; /* every learner's micro-batches of step k */
      for (int q = 0; q < R; q++)
        for (int c = 0; c < L[q].s.n_calls; c++) micro += L[q].s.calls[c].step == k;
      EXPECT((s->stats[k][0] == s1.stats[k][0] && s->stats[k][1] == s1.stats[k][1] && s->stats[k][2] == micro) ||
                 k == nan_step,
             "%s, learner %d, step %lld: reduced stats %g examples (ids %g) in %g micro-batches; one learner's %g "
             "(%g), the learners' micro-batches %d", what, r, (long long)k, s->stats[k][0], s->stats[k][1],
             s->stats[k][2], s1.stats[k][0], s1.stats[k][1], micro);
      EXPECT(s->info[k].skipped == s1.info[k].skipped && memcmp(s->w[k], s1.w[k], s1.n * sizeof(float)) == 0,
             "%s, learner %d, step %lld: skipped %d (one learner %d), weights %s", what, r, (long long)k,
             s->info[k].skipped, s1.info[k].skipped,
             memcmp(s->w[k], s1.w[k], s1.n * sizeof(float)) ? "differ" : "equal");
      EXPECT(memcmp(s->om[k], s1.om[k], s1.n * sizeof(float)) == 0 && memcmp(s->ov[k], s1.ov[k], s1.n * sizeof(float)) == 0 &&
                 memcmp(&s->info[k].grad_norm, &s1.info[k].grad_norm, sizeof(double)) == 0,
             "%s, learner %d, step %lld: AdamW moments or gradient norm (%.17g vs %.17g) differ from one learner's", what,
             r, (long long)k, s->info[k].grad_norm, s1.info[k].grad_norm);
    }
    free(sim.slot[r]);
    stub_free(s);
    srlm_model_free(s->m);
  }
  stub_free(&s1);
  srlm_model_free(one);
}

static void test_learners(void) {
  for (int ov = 0; ov <= 1; ov++)
    for (int zero = 0; zero <= 1; zero++) {
      char z[48];
      snprintf(z, sizeof z, "%s%s", zero ? " (ZeRO-1)" : "", ov ? " (overlapped reduce)" : "");
      char what[96];
      snprintf(what, sizeof what, "2 learners, 2 lists%s", z);
      run_learners(what, 2, 1, 3, 0, 0, zero, ov);
      snprintf(what, sizeof what, "3 learners, 2 lists%s", z);
      run_learners(what, 3, 1, 1, 0, 0, zero, ov);
      /* step 3 has 2 examples: learner 0 of 3 forwards nothing at all and still reduces */
      snprintf(what, sizeof what, "3 learners, 1 list%s", z);
      run_learners(what, 3, 0, 2, 0, 0, zero, ov);
      snprintf(what, sizeof what, "4 learners, 2 lists%s", z);
      run_learners(what, 4, 1, 1, 0, 0, zero, ov);
      /* step 5's window position 2: in learner 1's half only (and one learner's first
         micro-batch) */
      int64_t ex[PER_STEP];
      step_window(5, ex);
      snprintf(what, sizeof what, "2 learners, NaN on learner 1%s", z);
      run_learners(what, 2, 1, 3, 5, ex[2], zero, ov);
    }
}

/* The step's last micro-batch fails on a learner of an overlapped reduce after its backward
 * announced the final gradients (one thread of a 2-learner layout, whose peer never comes):
 * the engine drops the open reduce (abandon) and returns the error at once instead of waiting
 * in end, and the model's final-gradient callback is disarmed (further backwards neither
 * call it nor count as a second backward of the arming). */
static void test_overlap_failure(void) {
  learner l;
  memset(&l, 0, sizeof l);
  sim_dp sim = {.R = 2};
  l.sr = (sim_dp_rank){&sim, 0};
  l.dp = sim_dp_of(&l.sr, 0, 2, 0);
  l.dp.ctx = &l;
  l.dp.overlap = 1;
  l.dp.reduce_begin = sim_ov_begin;
  l.dp.reduce_ready = sim_ov_ready;
  l.dp.reduce_end = sim_ov_end;
  l.dp.reduce_abandon = sim_ov_abandon;
  stub_init(&l.s, tiny_model_with_vocab(VOCAB), 0, 1);
  if (!l.s.m) return;
  l.s.zero_backward = 1;
  l.s.fail_micro_call = 2; /* learner 0 of 2, step 1: micro-batches [0, 1) and [1, 2); the last fails */
  srlm_engine_options o = stub_options(&l.s);
  o.dp = &l.dp;
  EXPECT_EQ_INT(srlm_engine_run(l.s.m, &o, NULL), SRLM_ERR_IO);
  EXPECT_CONTAINS(srlm_error_message(), "micro-batch 2 fails (step 1)");
  EXPECT(l.begins == 1 && l.abandons == 1 && l.ends == 0 && !l.open, "failed micro-batch: %d begins, %d abandons, %d ends",
         l.begins, l.abandons, l.ends);
  size_t from[16];
  const int k_stages = srlm_model_grad_stages(l.s.m, from);
  EXPECT_EQ_INT(l.n_ready, k_stages); /* the failing micro-batch's backward had announced them */
  srlm_error_clear();
  l.s.fail_micro_call = 0;
  for (int k = 0; k < 2; k++)
    EXPECT_EQ_INT(stub_micro(&l.s, 0, (const int64_t[]){0}, 1, (double[3]){0}, &(int){1}), SRLM_OK);
  EXPECT_EQ_INT(l.n_ready, k_stages);
  stub_free(&l.s);
  srlm_model_free(l.s.m);
}

/* ---- 5: errors -------------------------------------------------------------------------- */

static srlm_status bad_plan(void *ctx, int64_t step, const int64_t *window, int64_t n, srlm_engine_plan *plan) {
  SRLM_TRY(stub_step(ctx, step, window, n, plan));
  plan->list[0].pieces = 2; /* and chunk 3: two rules */
  return SRLM_OK;
}

static void expect_rejected(const char *what, srlm_model *m, const srlm_engine_options *o, const float *w0,
                            const char *want) {
  srlm_status st = srlm_engine_run(m, o, NULL);
  EXPECT(st != SRLM_OK, "%s: accepted", what);
  EXPECT_CONTAINS(srlm_error_message(), want);
  EXPECT(memcmp(test_w(m), w0, srlm_model_num_params(m) * sizeof(float)) == 0, "%s: weights changed", what);
}

static void test_errors(void) {
  srlm_model *m = tiny_model_with_vocab(VOCAB);
  if (!m) return;
  const size_t n = srlm_model_num_params(m);
  float *w0 = copy_of(test_w(m), n);
  stub s;
  stub_init(&s, m, 1, 3);
  srlm_engine_options o = stub_options(&s);
  o.order.per_step = 0;
  expect_rejected("steps of 0 examples", m, &o, w0, "stub: 10 units in steps of 0");
  o = stub_options(&s);
  srlm_dp dp = {.rank = 0, .size = 2};
  o.dp = &dp;
  expect_rejected("2 learners without a reduce", m, &o, w0, "stub: 2 learners but no reduce function");
  dp = (srlm_dp){.rank = 2, .size = 2, .reduce = sim_reduce};
  expect_rejected("learner 2 of 2", m, &o, w0, "learner rank 2 outside [0, 2)");
  o = stub_options(&s);
  float *zero = calloc(n, sizeof *zero);
  srlm_train_resume late = {.start_step = STEPS + 1, .m = zero, .v = zero, .n = n};
  o.resume = &late;
  expect_rejected("resume past the end", m, &o, w0, "start step 7 outside [0, 6]");
  srlm_train_resume small = {.start_step = 1, .m = zero, .v = zero, .n = n - 1};
  o.resume = &small;
  expect_rejected("resume of another model", m, &o, w0, "the saved AdamW state has");
  o = stub_options(&s);
  o.hooks.step = bad_plan;
  expect_rejected("a plan with two rules", m, &o, w0, "stub: step 1, list 0");
  stub_free(&s);

  /* a done() error stops the run with it after that step */
  stub_init(&s, m, 1, 3);
  s.fail_done_step = 2;
  o = stub_options(&s);
  srlm_engine_summary sum;
  srlm_status st = srlm_engine_run(m, &o, &sum);
  EXPECT(st == SRLM_ERR_IO, "done() error: status %d", (int)st);
  EXPECT_CONTAINS(srlm_error_message(), "done fails at step 2");
  EXPECT(sum.steps == 2 && s.n_planned == 2, "done() error: %lld steps, %d planned", (long long)sum.steps,
         s.n_planned);
  EXPECT(all_zero(test_g(m), n), "done() error: gradients left");
  stub_free(&s);
  free(zero);
  free(w0);
  srlm_model_free(m);
}

int main(void) {
  test_one_learner();
  test_resume();
  test_learners();
  test_overlap_failure();
  test_errors();
  TEST_MAIN_END();
}
