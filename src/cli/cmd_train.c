/* srlm train -c CONFIG [--resume] [key.path=value ...]: the main job, on every rank.
 *
 * In the run's folder run.out_dir/run.name/:
 *   1. every rank resolves the config (file + overrides, strict checks) and takes its role
 *      (comm.h); a config or role error is the same everywhere: rank 0 prints it, all
 *      exit 2 before any work;
 *   2. the lead (world rank 0) prints the config, saves config.yaml, builds M0 when
 *      model.path is empty (Philox-seeded init, saved as iter_0/model/) and renders and
 *      tokenizes data.prompts into iter_0/prompts.h5; the others wait (srlm_comm_agree),
 *      then every rank opens M0 and the prompt set;
 *   3. the self-rewarding iterations of selfreward.h (from checkpoint.h5 with --resume);
 *   4. the lead prints the per-iteration table on stdout and writes summary.json.
 * After step 2 an error on any rank ends the job with srlm_comm_abort (shards may be in
 * flight: no clean collective stop is possible); in one process it is an ordinary error.
 */
#include <jansson.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "srlm/chat.h"
#include "srlm/checkpoint.h"
#include "srlm/comm.h"
#include "srlm/config.h"
#include "srlm/hfmodel.h"
#include "srlm/jsonl.h"
#include "srlm/llm_judge.h"
#include "srlm/prompts.h"
#include "srlm/memplan.h"
#include "srlm/rundir.h"
#include "srlm/selfreward.h"
#include "srlm/setup.h"
#include "srlm/stop.h"
#include "srlm/store.h"
#include "srlm/tokenizer.h"

#define PROMPTS_FORMAT "prompts"
#define PROMPTS_VERSION 1

static const char k_train_help[] =
    "usage: srlm train -c CONFIG [--resume | --overwrite] [--dry-run] [key.path=value ...]\n"
    "       mpirun -np N srlm train -c CONFIG [--resume | --overwrite] [key.path=value ...]\n"
    "\n"
    "Runs the self-rewarding iterations a config describes, in run.out_dir/run.name/:\n"
    "each iteration M_t -> M_t+1 generates answers to the prompts (a built-in task, or\n"
    "data.prompts), judges them with the model itself (or the task's verifier, or a mix),\n"
    "trains on best-vs-worst pairs (DPO, IPO, SFT) or groups (GRPO), saves iter_<t>/model/\n"
    "and iter_<t>/rollouts.h5, and evaluates (with a task). Any config key can be\n"
    "overridden as key.path=value (see 'srlm config --help').\n"
    "\n"
    "Under mpirun the ranks split into roles: roles.colocate true, every rank generates,\n"
    "judges and learns its shards; false, roles.learners + roles.generators + roles.judges\n"
    "must equal N. Rank 0 prints progress and the per-iteration table.\n"
    "\n"
    "  -c, --config FILE   the YAML config\n"
    "  --overwrite         start again in a run folder that holds a run: removes srlm's files\n"
    "                      there first (config.yaml, checkpoint.h5, metrics.jsonl, summary.json,\n"
    "                      iter_*/); without it (or --resume) such a folder is refused\n"
    "  --dry-run           resolve the config, check the model, tokenizer and prompt files,\n"
    "                      the rank layout, the run folder and each kind of rank's memory plan\n"
    "                      (refused when it does not fit the device), print the plan; run\n"
    "                      nothing and write nothing\n"
    "  --resume            continue from the run folder's checkpoint.h5 (after a kill or a\n"
    "                      time limit); without one, start from the beginning. Same config,\n"
    "                      same layout: the result is bit-identical to an uninterrupted run\n"
    "  --help              this text\n"
    "\n"
    "Files: config.yaml, iter_0/model/ (a fresh M0), iter_0/prompts.h5, iter_<t>/model/,\n"
    "iter_<t>/rollouts.h5 (read it with 'srlm rollouts'), metrics.jsonl, checkpoint.h5,\n"
    "summary.json, report.html (after every iteration; 'srlm report') and, with\n"
    "run.tensorboard (default), events.out.tfevents.* (tensorboard --logdir RUN_DIR); .lock\n"
    "(held by the running job: a second job on the folder is refused, naming its host and\n"
    "pid). Stale *.tmp.<pid> files of killed writers are removed at start.\n"    "\n"
    "Signals: SIGUSR1, SIGTERM or SIGINT (on any rank) finish the current optimizer step,\n"
    "write a checkpoint all ranks agree on and exit 75; a second signal stops at once.\n"
    "\n"
    "Exit status: 0 ok, 2 for a usage or config error, 75 stopped by a signal after a\n"
    "checkpoint (run again with --resume), 1 for other errors.\n";

typedef struct train_ctx {
  srlm_config cfg;
  char run_dir[4096];
  char model_dir[4096];
  srlm_tokenizer *tok;
  srlm_model_config mcfg;
  uint64_t n_params;
  int has_chat;
  srlm_chat_format chat;
  int resume; /* --resume */
  srlm_prompt_set eval_set; /* the lead: data.eval_prompts (n = 0 when none) */
  /* prompt statistics */
  int64_t n_prompts, n_skipped, n_too_long, n_tokens;
  int max_len;
} train_ctx;

static srlm_status run_dir_path(train_ctx *c) {
  const srlm_config *cfg = &c->cfg;
  int w = snprintf(c->run_dir, sizeof c->run_dir, "%s/%s", cfg->run.out_dir, cfg->run.name);
  if (w < 0 || (size_t)w >= sizeof c->run_dir) return srlm_error(SRLM_ERR_IO, cfg->run.out_dir, "path too long");
  if (cfg->model.path[0])
    snprintf(c->model_dir, sizeof c->model_dir, "%s", cfg->model.path);
  else
    SRLM_TRY(srlm_path_join(c->model_dir, sizeof c->model_dir, c->run_dir, "iter_0/model"));
  return SRLM_OK;
}

static srlm_status prepare_run_dir(train_ctx *c) {
  const srlm_config *cfg = &c->cfg;
  SRLM_TRY(run_dir_path(c));
  SRLM_TRY(srlm_mkdirs(c->run_dir));
  char path[4096];
  SRLM_TRY(srlm_path_join(path, sizeof path, c->run_dir, "config.yaml"));
  SRLM_TRY(srlm_config_save(cfg, path));
  SRLM_INFO("run folder %s (config saved as config.yaml)", c->run_dir);
  return SRLM_OK;
}

/* The lead, before anything touches the run folder: its lock (held until the job ends),
 * the refusal to start a new run over an existing one (unless --overwrite clears it), and
 * the stale temporary files of writers that were killed (rundir.h). */
static srlm_status take_run_dir(train_ctx *c, int overwrite, srlm_rundir_lock **lock) {
  SRLM_TRY(run_dir_path(c));
  SRLM_TRY(srlm_rundir_lock_take(c->run_dir, lock));
  if (!c->resume) {
    int found = 0;
    char first[256];
    SRLM_TRY(srlm_rundir_find_run(c->run_dir, &found, first, sizeof first));
    if (found && !overwrite)
      return srlm_error(SRLM_ERR_USAGE, c->run_dir, "already holds a run (%s%s): continue it with --resume, start it "
                        "again with --overwrite (removes srlm's files there: config.yaml, checkpoint.h5, "
                        "metrics.jsonl, summary.json, iter_*/), or choose another run.name", first,
                        found > 1 ? " and more" : "");
    if (found) {
      int removed = 0;
      SRLM_TRY(srlm_rundir_clear(c->run_dir, &removed));
      SRLM_INFO("--overwrite: removed %d of srlm's files and folders from %s", removed, c->run_dir);
    }
  }
  int64_t n_tmp = 0, tmp_bytes = 0;
  SRLM_TRY(srlm_rundir_clean_tmp(c->run_dir, &n_tmp, &tmp_bytes));
  if (n_tmp)
    SRLM_INFO("removed %lld stale temporary files (%.1f MB) of writers that were stopped in %s", (long long)n_tmp,
              (double)tmp_bytes / 1e6, c->run_dir);
  return SRLM_OK;
}

static srlm_status load_tokenizer(train_ctx *c, int report) {
  srlm_timer t;
  srlm_timer_start(&t);
  SRLM_TRY(srlm_setup_tokenizer(&c->cfg, &c->tok, &c->has_chat, &c->chat));
  if (report)
    SRLM_INFO("tokenizer %s: %d ids (%.2f s), chat format %s", srlm_tokenizer_path(c->tok),
            (int)srlm_tokenizer_n_ids(c->tok), srlm_timer_elapsed(&t),
            c->has_chat ? srlm_chat_kind_name(c->chat.kind) : "none (raw text)");
  return SRLM_OK;
}

static srlm_status open_model(train_ctx *c, int report);

static srlm_status prepare_model(train_ctx *c) {
  const srlm_config *cfg = &c->cfg;
  if (!cfg->model.path[0]) {
    srlm_model_config m;
    const char *tok_dir;
    SRLM_TRY(srlm_setup_model_config(cfg, c->tok, &m));
    SRLM_TRY(srlm_setup_tokenizer_dir(cfg, &tok_dir));
    SRLM_TRY(srlm_mkdirs(c->model_dir));
    srlm_st_dtype dt = cfg->model.dtype == SRLM_CFG_DTYPE_BF16 ? SRLM_ST_BF16 : SRLM_ST_F32;
    /* the same weights srlm_setup_model creates in memory for (config, run.seed) */
    SRLM_TRY(srlm_hf_model_write_random(c->model_dir, &m, (uint64_t)cfg->run.seed, dt));
    SRLM_TRY(srlm_setup_copy_tokenizer_files(tok_dir, c->model_dir));
  }
  return open_model(c, 1);
}

/* Opens M0 on disk (fresh or given): the same checks as `srlm info`. */
static srlm_status open_model(train_ctx *c, int report) {
  srlm_timer t;
  srlm_timer_start(&t);
  srlm_hf_model *hf;
  SRLM_TRY(srlm_hf_model_open(c->model_dir, &hf));
  c->mcfg = *srlm_hf_model_config(hf);
  c->n_params = srlm_model_param_count(&c->mcfg);
  srlm_hf_model_close(hf);
  if (c->mcfg.vocab_size < srlm_tokenizer_n_ids(c->tok))
    return srlm_error(SRLM_ERR_FORMAT, c->model_dir, "vocab_size %lld is smaller than the tokenizer's %d ids",
                      (long long)c->mcfg.vocab_size, (int)srlm_tokenizer_n_ids(c->tok));
  if (!report) return SRLM_OK;
  char count[32];
  srlm_format_count(c->n_params, count, sizeof count);
  SRLM_INFO("model M0 %s: %s, %lld layers, hidden %lld, heads %lld/%lld, vocab %lld, %s parameters (%.2f s)",
            c->model_dir, srlm_model_type_name(c->mcfg.model_type), (long long)c->mcfg.num_hidden_layers,
            (long long)c->mcfg.hidden_size, (long long)c->mcfg.num_attention_heads,
            (long long)c->mcfg.num_key_value_heads, (long long)c->mcfg.vocab_size, count, srlm_timer_elapsed(&t));
  return SRLM_OK;
}

/* data.prompts -> iter_0/prompts.h5 (the lead); every rank then reads that file, so all
 * hold the same prompt set. */
static srlm_status prepare_prompts(train_ctx *c) {
  const srlm_config *cfg = &c->cfg;
  if (cfg->data.eval_prompts[0] && cfg->task.name == SRLM_CFG_TASK_NONE) {
    srlm_prompts_stats es;
    SRLM_TRY(srlm_prompts_load(cfg->data.eval_prompts, c->tok, c->has_chat ? &c->chat : NULL, cfg->data.skip_bad_lines,
                               cfg->data.max_prompt_tokens, &c->eval_set, &es));
    SRLM_INFO("eval prompts %s: %lld prompts (%lld bad lines skipped, %lld too long)", cfg->data.eval_prompts,
              (long long)c->eval_set.n, (long long)es.bad, (long long)es.too_long);
  } else if (cfg->data.eval_prompts[0]) {
    SRLM_WARN("data.eval_prompts is not used with a built-in task (its held-out set: task.eval_prompts)");
  }
  if (!cfg->data.prompts[0]) {
    SRLM_INFO("data.prompts is empty: no prompts to prepare");
    return SRLM_OK;
  }
  srlm_timer t;
  srlm_timer_start(&t);
  srlm_prompts_stats ps;
  srlm_prompt_set set;
  SRLM_TRY(srlm_prompts_load(cfg->data.prompts, c->tok, c->has_chat ? &c->chat : NULL, cfg->data.skip_bad_lines,
                             cfg->data.max_prompt_tokens, &set, &ps));
  if (ps.bad) SRLM_WARN("skipped %lld bad prompt lines; the first: %s", (long long)ps.bad, ps.first_bad);
  c->n_prompts = set.n;
  c->n_skipped = ps.bad;
  c->n_too_long = ps.too_long;
  c->n_tokens = ps.tokens;
  char path[4096];
  srlm_status st = srlm_path_join(path, sizeof path, c->run_dir, "iter_0");
  if (st == SRLM_OK) st = srlm_mkdirs(path);
  if (st == SRLM_OK) st = srlm_path_join(path, sizeof path, c->run_dir, "iter_0/prompts.h5");
  if (st == SRLM_OK) st = srlm_prompts_save(&set, path);
  srlm_prompt_set_free(&set);
  SRLM_TRY(st);
  SRLM_INFO("prompts %s: %lld prompts, %lld tokens (mean %.1f, max %lld), %lld bad lines skipped, %lld too long "
            "(> %d tokens) dropped -> %s (%.2f s)",
            cfg->data.prompts, (long long)c->n_prompts, (long long)c->n_tokens,
            (double)c->n_tokens / (double)c->n_prompts, (long long)ps.max_len, (long long)c->n_skipped,
            (long long)c->n_too_long, cfg->data.max_prompt_tokens, path, srlm_timer_elapsed(&t));
  return SRLM_OK;
}

/* 1 when the evaluation decodes (eval.every, and eval prompts: a task's task.eval_prompts or
 * data.eval_prompts); it runs on the lead (world rank 0, a learner when the roles are apart). */
static int evaluates(const srlm_config *cfg) {
  if (cfg->eval.every <= 0) return 0;
  return cfg->task.name != SRLM_CFG_TASK_NONE ? cfg->task.eval_prompts > 0 : cfg->data.eval_prompts[0] != 0;
}

/* 1 when a learner decodes too (a KV cache in its plan): the lead when it evaluates, every
 * learner with meta.enabled (the meta-judge runs where the pairs are built, learn.c). */
static int learner_decodes(const srlm_config *cfg, int lead) { return cfg->meta.enabled || (lead && evaluates(cfg)); }

/* --dry-run: the memory plan of each kind of rank (memplan.h) against the free memory of the
 * lead's backend device (run.backend, run.device): the numbers a run logs per rank, and the
 * same refusal when a plan does not fit a device, before anything is written. Each kind is
 * planned as if alone on the device (a run divides a device among the ranks on it); on a
 * device the KV cache is sized from the free memory (generate.kv_memory_fraction). */
static srlm_status dry_run_memory(train_ctx *c, srlm_comm *comm) {
  const srlm_config *cfg = &c->cfg;
  srlm_backend *be = NULL;
  SRLM_TRY(srlm_setup_backend(cfg, &be));
  size_t free_b = 0, total_b = 0;
  srlm_status st = srlm_backend_mem_info(be, &free_b, &total_b);
  char dev[96];
  if (be->host_memory)
    snprintf(dev, sizeof dev, "%s (host memory)", be->name);
  else
    snprintf(dev, sizeof dev, "%s device %d", be->name, be->device);
  const int colocated = srlm_comm_colocated(comm), L = srlm_comm_role_size(comm, SRLM_ROLE_LEARNER);
  const int S = srlm_comm_role_size(comm, SRLM_ROLE_GENERATOR) + srlm_comm_role_size(comm, SRLM_ROLE_JUDGE);
  /* apart, the lead learner is its own kind when it decodes and the other learners do not */
  const int lead_apart = !colocated && learner_decodes(cfg, 1) && !learner_decodes(cfg, 0);
  struct { const char *what; int learner, sampler, ranks; } kinds[3] = {
      {colocated ? "each rank (every role)" : "each learner", 1, colocated || learner_decodes(cfg, 0),
       colocated ? srlm_comm_size(comm) : L - lead_apart},
      {"the lead learner (it evaluates)", 1, 1, lead_apart},
      {"each generator/judge", 0, 1, colocated ? 0 : S}};
  for (int k = 0; k < 3 && st == SRLM_OK; k++) {
    if (kinds[k].ranks == 0) continue;
    srlm_memplan plan;
    st = srlm_memplan_make(cfg, &c->mcfg, kinds[k].learner, kinds[k].sampler, colocated ? srlm_comm_size(comm) : L, &plan);
    if (st != SRLM_OK) break;
    if (!be->host_memory) srlm_memplan_size_kv(&plan, free_b, 0, 1);
    char line[1024];
    srlm_memplan_format(&plan, free_b, line, sizeof line);
    const char *body = strncmp(line, "memory plan: ", 13) ? line : line + 13;
    printf("memory       %s (%d rank%s), on %s: %s\n", kinds[k].what, kinds[k].ranks, kinds[k].ranks == 1 ? "" : "s", dev,
           body);
    if (!be->host_memory) st = srlm_memplan_check(&plan, free_b, dev);
  }
  srlm_status cst = srlm_backend_close(be);
  return st != SRLM_OK ? st : cst;
}

/* --dry-run on the lead: the checks a run would make before its first write, and the plan,
 * on stdout. Reads the model, tokenizer and prompt files; writes nothing, and the run folder
 * is only looked at (its lock is queried, not taken). */
static srlm_status dry_run(train_ctx *c, srlm_comm *comm) {
  const srlm_config *cfg = &c->cfg;
  SRLM_TRY(run_dir_path(c));
  int found = 0, held = 0;
  char first[256], holder[256];
  SRLM_TRY(srlm_rundir_find_run(c->run_dir, &found, first, sizeof first));
  SRLM_TRY(srlm_rundir_lock_holder(c->run_dir, &held, holder, sizeof holder));
  printf("srlm train --dry-run: the plan (nothing runs, nothing is written)\n");
  printf("run folder   %s: %s%s%s\n", c->run_dir,
         held ? "IN USE by another job (" : found ? "holds a run" : "new or empty",
         held ? holder : found && !c->resume ? " (needs --resume or --overwrite)" : "", held ? ")" : "");
  const int R = srlm_comm_size(comm);
  if (srlm_comm_colocated(comm)) {
    printf("ranks        %d, colocated: every rank generates, judges and learns its shards\n", R);
  } else {
    printf("ranks        %d: learners %d, generators %d, judges %d:", R, srlm_comm_role_size(comm, SRLM_ROLE_LEARNER),
           srlm_comm_role_size(comm, SRLM_ROLE_GENERATOR), srlm_comm_role_size(comm, SRLM_ROLE_JUDGE));
    for (int r = 0; r < R; r++) {
      srlm_role role = r < srlm_comm_role_size(comm, SRLM_ROLE_LEARNER) ? SRLM_ROLE_LEARNER
                       : r < srlm_comm_role_size(comm, SRLM_ROLE_LEARNER) + srlm_comm_role_size(comm, SRLM_ROLE_GENERATOR)
                           ? SRLM_ROLE_GENERATOR
                           : SRLM_ROLE_JUDGE;
      printf(" %d=%s", r, srlm_role_name(role));
    }
    printf("\n");
  }
  SRLM_TRY(load_tokenizer(c, 0));
  printf("tokenizer    %s: %d ids, chat format %s\n", srlm_tokenizer_path(c->tok), (int)srlm_tokenizer_n_ids(c->tok),
         c->has_chat ? srlm_chat_kind_name(c->chat.kind) : "none (raw text)");
  if (cfg->model.path[0]) {
    SRLM_TRY(open_model(c, 0));
  } else {
    SRLM_TRY(srlm_setup_model_config(cfg, c->tok, &c->mcfg));
    c->n_params = srlm_model_param_count(&c->mcfg);
  }
  char count[32];
  srlm_format_count(c->n_params, count, sizeof count);
  printf("model M0     %s: %s, %lld layers, hidden %lld, heads %lld/%lld, vocab %lld, context %lld, %s parameters\n",
         cfg->model.path[0] ? c->model_dir : "fresh from model.arch (seeded by run.seed)",
         srlm_model_type_name(c->mcfg.model_type), (long long)c->mcfg.num_hidden_layers,
         (long long)c->mcfg.hidden_size, (long long)c->mcfg.num_attention_heads,
         (long long)c->mcfg.num_key_value_heads, (long long)c->mcfg.vocab_size,
         (long long)c->mcfg.max_position_embeddings, count);
  SRLM_TRY(dry_run_memory(c, comm));
  int64_t per = cfg->task.prompts_per_iteration;
  if (cfg->task.name != SRLM_CFG_TASK_NONE) {
    printf("prompts      built-in task %s: %lld per iteration, %lld held out\n", srlm_config_enum_name("task.name", (int)cfg->task.name),
           (long long)cfg->task.prompts_per_iteration, (long long)cfg->task.eval_prompts);
  } else if (cfg->data.prompts[0]) {
    srlm_prompts_stats ps;
    srlm_prompt_set set;
    SRLM_TRY(srlm_prompts_load(cfg->data.prompts, c->tok, c->has_chat ? &c->chat : NULL, cfg->data.skip_bad_lines,
                               cfg->data.max_prompt_tokens, &set, &ps));
    per = cfg->data.prompts_per_iteration > 0 ? cfg->data.prompts_per_iteration : set.n;
    printf("prompts      %s: %lld prompts, %lld tokens, %lld bad lines skipped, %lld too long dropped; %lld per "
           "iteration\n", cfg->data.prompts, (long long)set.n, (long long)ps.tokens, (long long)ps.bad,
           (long long)ps.too_long, (long long)per);
    srlm_prompt_set_free(&set);
    srlm_llm_judge *llm = NULL;
    SRLM_TRY(srlm_llm_judge_create(cfg, c->tok, c->has_chat ? &c->chat : NULL, &llm)); /* template and score_regex */
    srlm_llm_meta *meta = NULL; /* Meta-Rewarding: meta.template and meta.winner_regex */
    srlm_status mst = cfg->meta.enabled ? srlm_llm_meta_create(cfg, llm, &meta) : SRLM_OK;
    srlm_llm_meta_free(meta);
    srlm_llm_judge_free(llm);
    SRLM_TRY(mst);
  } else {
    printf("prompts      none (data.prompts and task.name are empty): only M0 would be prepared\n");
  }
  int64_t shards = (per + cfg->roles.shard_prompts - 1) / cfg->roles.shard_prompts;
  printf("iterations   %d: each %lld prompts x %d samples in %lld shards of %d prompts, judged %d times each; "
         "loss %s, %d epoch(s), batch %d x %d\n", cfg->run.iterations, (long long)per,
         cfg->generate.samples_per_prompt, (long long)shards, cfg->roles.shard_prompts, cfg->judge.samples,
         srlm_config_enum_name("train.loss", (int)cfg->train.loss), cfg->train.epochs, cfg->train.batch_size, cfg->train.grad_accum);
  if (c->resume) {
    srlm_checkpoint ck = {0};
    int has = 0;
    srlm_status st = srlm_checkpoint_load(c->run_dir, &ck, &has);
    char *yaml = srlm_config_to_yaml(cfg, 0);
    if (st == SRLM_OK && has) st = srlm_checkpoint_check_config(&ck, yaml, c->run_dir);
    free(yaml);
    if (st == SRLM_OK)
      printf("resume       %s\n", !has ? "no checkpoint yet: from the beginning"
                                        : ck.kind == SRLM_CKPT_LEARN ? "inside an iteration's learning"
                                                                     : "after a complete iteration");
    if (st == SRLM_OK && has) printf("             checkpoint at iteration %lld\n", (long long)ck.iteration);
    srlm_checkpoint_free(&ck);
    SRLM_TRY(st);
  }
  if (held)
    return srlm_error(SRLM_ERR_IO, c->run_dir, "the run folder is in use by another srlm job (%s)", holder);
  if (found && !c->resume)
    return srlm_error(SRLM_ERR_USAGE, c->run_dir, "already holds a run (%s): a run needs --resume or --overwrite",
                      first);
  printf("ok: the run can start\n");
  return SRLM_OK;
}

/* fmt of x into out, or "-" when x is not a number (not measured). */
static void fmt_num(char *out, size_t n, double x, const char *fmt) {
  if (isfinite(x))
    snprintf(out, n, fmt, x);
  else
    snprintf(out, n, "-");
}

/* Where a rank runs and what its plan leaves to the others on the same device. */
typedef struct plan_msg {
  char host[64];
  char backend[16];
  int32_t device, decodes;
  unsigned char uuid[16];
  uint64_t rest; /* the plan's lines but the KV cache */
} plan_msg;

/* 1 when a backend's UUID is set (a GPU's; all zeros otherwise). */
static int has_uuid(const unsigned char u[16]) {
  static const unsigned char zero[16];
  return memcmp(u, zero, sizeof zero) != 0;
}

/* 1 when ranks a and b share one device: the same host and backend, and the same GPU
 * (its UUID where the backend has one, else its index). */
static int same_device(const plan_msg *a, const plan_msg *b) {
  if (strcmp(a->host, b->host) || strcmp(a->backend, b->backend)) return 0;
  if (has_uuid(a->uuid) || has_uuid(b->uuid)) return !memcmp(a->uuid, b->uuid, sizeof a->uuid);
  return a->device == b->device;
}

/* This rank's memory plan, logged; on a device the KV cache is sized from the memory left
 * (generate.kv_memory_fraction, divided among the decoding ranks on the device after every
 * rank's other lines there), and a plan that does not fit is an error before anything is
 * allocated (memplan.h). *kv_slots: the sequences this rank decodes at once (0 when it does
 * not decode); *kv_positions: on a device, the positions the plan's KV cache holds (slots x
 * their length), the model's KV budget (model.h; 0 on host memory: no bound). Collective. */
static srlm_status plan_memory(train_ctx *c, srlm_comm *comm, srlm_backend *be, int *kv_slots, int64_t *kv_positions) {
  const srlm_config *cfg = &c->cfg;
  *kv_slots = 0;
  *kv_positions = 0;
  const int learner = srlm_comm_has_role(comm, SRLM_ROLE_LEARNER);
  const int sampler = srlm_comm_has_role(comm, SRLM_ROLE_GENERATOR) || srlm_comm_has_role(comm, SRLM_ROLE_JUDGE) ||
                      (learner && learner_decodes(cfg, srlm_comm_rank(comm) == 0));
  srlm_memplan plan;
  srlm_status st = srlm_memplan_make(cfg, &c->mcfg, learner, sampler, srlm_comm_role_size(comm, SRLM_ROLE_LEARNER), &plan);
  size_t free_b = 0, total_b = 0;
  if (st == SRLM_OK) st = srlm_backend_mem_info(be, &free_b, &total_b);
  if (!be->host_memory) st = srlm_comm_agree(comm, st); /* every rank joins the gather, or none */
  SRLM_TRY(st);
  if (!be->host_memory) {
    plan_msg mine;
    memset(&mine, 0, sizeof mine);
    if (gethostname(mine.host, sizeof mine.host - 1) != 0) snprintf(mine.host, sizeof mine.host, "?");
    snprintf(mine.backend, sizeof mine.backend, "%s", be->name);
    mine.device = be->device;
    mine.decodes = sampler;
    memcpy(mine.uuid, be->uuid, sizeof mine.uuid);
    mine.rest = (uint64_t)(plan.total - plan.kv_cache);
    void **bufs;
    size_t *lens;
    SRLM_TRY(srlm_comm_allgather_bytes(comm, &mine, sizeof mine, &bufs, &lens));
    const int n = srlm_comm_size(comm), me = srlm_comm_rank(comm);
    size_t shared = 0;
    int sharers = 0;
    for (int r = 0; r < n; r++) {
      if (lens[r] == sizeof mine && same_device(&mine, (const plan_msg *)bufs[r])) {
        const plan_msg *o = bufs[r];
        if (r != me) shared += (size_t)o->rest;
        sharers += o->decodes != 0;
      }
      free(bufs[r]);
    }
    free(bufs);
    free(lens);
    srlm_memplan_size_kv(&plan, free_b, shared, sharers);
  }
  char line[1024];
  srlm_memplan_format(&plan, free_b, line, sizeof line);
  SRLM_INFO("%s", line);
  *kv_slots = (int)plan.kv_slots;
  if (be->host_memory) return SRLM_OK; /* host memory: the OS pages and swaps; no hard limit to check */
  *kv_positions = plan.kv_slots * plan.kv_len;
  char dev[96];
  snprintf(dev, sizeof dev, "%s device %d", be->name, be->device);
  return srlm_memplan_check(&plan, free_b, dev);
}

/* Every rank's role, host and device, printed by the lead. Collective. */
/* srlm_model_set_step_hook's function: a no-op unless shard bytes go by the handshake. */
static srlm_status comm_progress(void *comm) { return srlm_comm_progress(comm); }

static srlm_status print_layout(srlm_comm *comm, srlm_backend *be) {
  char host[256] = "?", mine[512];
  if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "?");
  host[sizeof host - 1] = 0;
  /* a GPU's UUID as nvidia-smi -L prints it: under per-task CUDA_VISIBLE_DEVICES every rank's
     index is 0, the UUID still tells the GPUs apart */
  const unsigned char *u = be->uuid;
  char uuid[64] = "";
  if (has_uuid(u))
    snprintf(uuid, sizeof uuid, " (GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x)", u[0], u[1],
             u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  if (be->host_memory)
    snprintf(mine, sizeof mine, "%-9s on %s, %s", srlm_comm_role_label(comm), host, be->name);
  else
    snprintf(mine, sizeof mine, "%-9s on %s, %s device %d%s", srlm_comm_role_label(comm), host, be->name, be->device,
             uuid);
  void **bufs;
  size_t *lens;
  SRLM_TRY(srlm_comm_allgather_bytes(comm, mine, strlen(mine) + 1, &bufs, &lens));
  const int n = srlm_comm_size(comm);
  for (int r = 0; r < n; r++) {
    if (srlm_comm_rank(comm) == 0) SRLM_INFO("rank %d: %s", r, lens[r] ? (const char *)bufs[r] : "?");
    free(bufs[r]);
  }
  free(bufs);
  free(lens);
  return SRLM_OK;
}

/* The self-rewarding iterations from M0 (task.name set, run.iterations > 0), on every
 * rank; the lead (world rank 0) writes metrics.jsonl and prints the table. */
static srlm_status run_iterations(train_ctx *c, srlm_comm *comm, srlm_sr_iteration **rows_out) {
  const srlm_config *cfg = &c->cfg;
  const int lead = srlm_comm_rank(comm) == 0;
  *rows_out = NULL;
  const int task = cfg->task.name != SRLM_CFG_TASK_NONE;
  if (cfg->run.iterations == 0) return SRLM_OK;
  if (!task && !cfg->data.prompts[0])
    return srlm_error(SRLM_ERR_CONFIG, "data.prompts", "the iterations need prompts: set data.prompts (JSONL) or a "
                      "built-in task (task.name), or run.iterations: 0 to only prepare the run");
  const char *tok_dir;
  SRLM_TRY(srlm_setup_tokenizer_dir(cfg, &tok_dir));
  srlm_prompt_set set = {0};
  srlm_llm_judge *llm = NULL;
  char path[4096];
  if (!task) {
    SRLM_TRY(srlm_path_join(path, sizeof path, c->run_dir, "iter_0/prompts.h5"));
    SRLM_TRY(srlm_prompts_read(path, &set));
    srlm_status st = srlm_llm_judge_create(cfg, c->tok, c->has_chat ? &c->chat : NULL, &llm);
    if (st != SRLM_OK) {
      srlm_prompt_set_free(&set);
      return st;
    }
  }
  srlm_model *m = NULL;
  srlm_backend *be = NULL;
  srlm_status st = srlm_comm_agree(comm, srlm_setup_backend(cfg, &be)); /* plan_memory is collective */
  int max_batch = 0;
  int64_t kv_positions = 0;
  if (st == SRLM_OK) st = print_layout(comm, be); /* first: also shown when a plan does not fit */
  if (st == SRLM_OK) st = plan_memory(c, comm, be, &max_batch, &kv_positions);
  st = srlm_comm_agree(comm, st); /* every rank fits (or all stop, each with its message) */
  if (st == SRLM_OK) {
    srlm_comm_set_backend(comm, be);
    /* NCCL for the groups whose ranks each own a GPU (run.comm); collective over the world */
    const srlm_comm_transport tr = cfg->run.comm == SRLM_CFG_COMM_NCCL  ? SRLM_COMM_TRANSPORT_NCCL
                                   : cfg->run.comm == SRLM_CFG_COMM_MPI ? SRLM_COMM_TRANSPORT_MPI
                                                                        : SRLM_COMM_TRANSPORT_AUTO;
    st = srlm_comm_open_transport(comm, tr);
  }
  /* a generator or judge of separate roles only decodes: a bf16 model keeps no fp32 master there (the weight
     broadcast writes its compute copy; memplan.h counts it so) */
  const srlm_model_use use = srlm_comm_has_role(comm, SRLM_ROLE_LEARNER) ? SRLM_MODEL_LEARN : SRLM_MODEL_DECODE;
  if (st == SRLM_OK) st = srlm_model_load_for(c->model_dir, be, srlm_setup_dtype(cfg), use, &m);
  if (st == SRLM_OK && cfg->train.recompute) st = srlm_model_set_recompute(m, 1);
  /* shard bytes by the handshake (comm.h, "Point-to-point"): a decoding rank answers its receivers every step */
  if (st == SRLM_OK) srlm_model_set_step_hook(m, comm_progress, comm);
  srlm_sr_iteration *rows = srlm_xcalloc((size_t)cfg->run.iterations + 1, sizeof *rows);
  srlm_sr_inputs in = {.cfg = cfg, .comm = comm, .run_dir = c->run_dir, .tok_dir = tok_dir, .m = m, .tok = c->tok,
                       .prompts = task ? NULL : &set, .llm = llm, .resume = c->resume, .max_batch = max_batch,
                       .kv_positions = kv_positions,
                       .eval_prompts = lead && c->eval_set.n ? &c->eval_set : NULL};
  if (st == SRLM_OK) st = srlm_selfreward_run(&in, rows);
  srlm_comm_close_transport(comm, st); /* before the backend closes; an error aborts NCCL locally */
  srlm_model_free(m);
  srlm_comm_set_backend(comm, NULL);
  srlm_status cst = srlm_backend_close(be);
  if (st == SRLM_OK) st = cst;
  srlm_llm_judge_free(llm);
  srlm_prompt_set_free(&set);
  if (st != SRLM_OK || !lead) {
    free(rows);
    return st;
  }
  /* the per-iteration table (stdout: it is the result); "-" = not measured */
  const char *unit = cfg->train.loss == SRLM_CFG_LOSS_GRPO ? "groups" : "pairs";
  if (task)
    printf("%-9s %9s %10s %9s %8s %8s %9s %8s %9s %9s %9s %8s\n", "model", "accuracy", "sample_acc", "judge_agr",
           "samples", unit, "pair_ok", "replay", "judge_fmt", "no_score", "loss", "seconds");
  else
    printf("%-9s %10s %10s %9s %9s %8s %8s %9s %9s %9s %8s\n", "model", "eval_score", "mean_score", "accuracy",
           "judge_agr", "samples", unit, "judge_fmt", "no_score", "loss", "seconds");
  for (int t = 0; t <= cfg->run.iterations; t++) {
    const srlm_sr_iteration *r = &rows[t];
    char name[16], acc[16], sacc[16], agr[16], pair_ok[16], loss[16], es[16], ms[16], fmt[16], nos[16];
    if (t)
      snprintf(name, sizeof name, "iter %d", t);
    else
      snprintf(name, sizeof name, "start");
    fmt_num(acc, sizeof acc, 100 * r->accuracy, "%.1f%%");
    fmt_num(sacc, sizeof sacc, 100 * r->sample_accuracy, "%.1f%%");
    fmt_num(agr, sizeof agr, 100 * r->judge_agreement, "%.1f%%");
    fmt_num(pair_ok, sizeof pair_ok, t ? 100 * r->pair_accuracy : NAN, "%.1f%%");
    fmt_num(loss, sizeof loss, t && r->pairs ? r->loss_last : NAN, "%.4f");
    fmt_num(es, sizeof es, r->eval_score, "%.3f");
    fmt_num(ms, sizeof ms, t ? r->mean_score : NAN, "%.3f");
    /* judge format failures and judgments without a score, in % of the iteration's judgments */
    const double nj = t && r->judgments ? (double)r->judgments : NAN;
    fmt_num(fmt, sizeof fmt, 100 * (double)r->judge_format_failures / nj, "%.1f%%");
    fmt_num(nos, sizeof nos, 100 * (double)r->judgments_without_score / nj, "%.1f%%");
    if (task)
      printf("%-9s %9s %10s %9s %8lld %8lld %9s %8lld %9s %9s %9s %8.1f\n", name, acc, sacc, agr,
             (long long)r->samples, (long long)r->pairs, pair_ok, (long long)r->replay, fmt, nos, loss, r->seconds);
    else
      printf("%-9s %10s %10s %9s %9s %8lld %8lld %9s %9s %9s %8.1f\n", name, es, ms, acc, agr, (long long)r->samples,
             (long long)r->pairs, fmt, nos, loss, r->seconds);
  }
  if (cfg->meta.enabled) { /* Meta-Rewarding's counts (metrics.jsonl's iteration lines) */
    printf("%-9s %11s %11s %11s %11s %11s %10s %9s\n", "meta", "actor_pairs", "judge_pairs", "responses", "comparisons",
           "agreeing", "elo_spread", "jpair_ok");
    for (int t = 1; t <= cfg->run.iterations; t++) {
      const srlm_sr_iteration *r = &rows[t];
      char spread[16], jok[16];
      fmt_num(spread, sizeof spread, r->elo_spread, "%.0f");
      fmt_num(jok, sizeof jok, 100 * r->judge_pair_accuracy, "%.1f%%");
      printf("iter %-4d %11lld %11lld %11lld %11lld %11lld %10s %9s\n", t, (long long)r->actor_pairs,
             (long long)r->judge_pairs, (long long)r->meta_responses, (long long)r->meta_comparisons,
             (long long)r->meta_agreeing, spread, jok);
    }
  }
  fflush(stdout);
  *rows_out = rows;
  return SRLM_OK;
}

static srlm_status write_summary(train_ctx *c, double seconds, const srlm_sr_iteration *rows) {
  json_t *o = json_object();
  json_object_set_new(o, "run", json_string(c->cfg.run.name));
  json_object_set_new(o, "model_dir", json_string(c->model_dir));
  json_object_set_new(o, "model_type", json_string(srlm_model_type_name(c->mcfg.model_type)));
  json_object_set_new(o, "parameters", json_integer((json_int_t)c->n_params));
  json_object_set_new(o, "prompts", json_integer(c->n_prompts));
  json_object_set_new(o, "prompt_tokens", json_integer(c->n_tokens));
  json_object_set_new(o, "prompts_skipped", json_integer(c->n_skipped));
  json_object_set_new(o, "prompts_too_long", json_integer(c->n_too_long));
  json_object_set_new(o, "iterations_done", json_integer(rows ? c->cfg.run.iterations : 0));
  if (rows) {
    json_t *a = json_array();
    for (int t = 0; t <= c->cfg.run.iterations; t++) {
      json_t *r = json_object();
      json_object_set_new(r, "iteration", json_integer(t));
      json_object_set_new(r, "accuracy", isfinite(rows[t].accuracy) ? json_real(rows[t].accuracy) : json_null());
      json_object_set_new(r, "judge_agreement",
                          isfinite(rows[t].judge_agreement) ? json_real(rows[t].judge_agreement) : json_null());
      json_object_set_new(r, "pairs", json_integer(rows[t].pairs));
      json_object_set_new(r, "mean_score", isfinite(rows[t].mean_score) ? json_real(rows[t].mean_score) : json_null());
      json_object_set_new(r, "eval_score", isfinite(rows[t].eval_score) ? json_real(rows[t].eval_score) : json_null());
      json_array_append_new(a, r);
    }
    json_object_set_new(o, "iterations", a);
  }
  json_object_set_new(o, "seconds", json_real(seconds));
  return srlm_json_save(o, c->run_dir, "summary.json");
}

int srlm_cmd_train(int argc, char **argv) {
  const char *config_path = NULL;
  int resume = 0, overwrite = 0, dry = 0;
  const char **overrides = srlm_xcalloc((size_t)argc, sizeof *overrides);
  int n_over = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(k_train_help, stdout);
      free(overrides);
      return 0;
    } else if (!strcmp(argv[i], "--resume")) {
      resume = 1;
    } else if (!strcmp(argv[i], "--overwrite")) {
      overwrite = 1;
    } else if (!strcmp(argv[i], "--dry-run")) {
      dry = 1;
    } else if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
      if (i + 1 >= argc) {
        free(overrides);
        return srlm_cli_usage_error("train", "%s needs a file", argv[i]);
      }
      config_path = argv[++i];
    } else if (strchr(argv[i], '=') && argv[i][0] != '-') {
      overrides[n_over++] = argv[i];
    } else {
      free(overrides);
      return srlm_cli_usage_error("train", "unknown argument '%s'", argv[i]);
    }
  }
  if (!config_path) {
    free(overrides);
    return srlm_cli_usage_error("train", "-c CONFIG is required");
  }
  if (resume && overwrite) {
    free(overrides);
    return srlm_cli_usage_error("train", "--resume continues a run, --overwrite removes it: give one of them");
  }
  /* Under mpirun every rank runs this; the lead (world rank 0) prepares the run folder
     and reports, every rank plays its role(s) in the iterations. */
  srlm_comm *comm = NULL;
  srlm_status st = srlm_comm_init(NULL, NULL, SRLM_COMM_MPI, &comm);
  if (st != SRLM_OK) {
    free(overrides);
    return srlm_cli_fail("train", st);
  }
  const int lead = srlm_comm_rank(comm) == 0, multi = srlm_comm_size(comm) > 1;
  srlm_rundir_lock *lock = NULL; /* the lead's, until the end (rundir.h) */
  train_ctx c;
  memset(&c, 0, sizeof c);
  c.resume = resume;
  srlm_timer t;
  srlm_timer_start(&t);
  st = srlm_config_load(&c.cfg, config_path, n_over, overrides);
  free(overrides);
  if (st == SRLM_OK) {
    srlm_comm_roles roles = {c.cfg.roles.learners, c.cfg.roles.generators, c.cfg.roles.judges, c.cfg.roles.colocate};
    st = srlm_comm_assign_roles(comm, &roles);
  }
  if (st != SRLM_OK) { /* config and role errors are the same on every rank: rank 0 says it */
    int rc = lead ? srlm_cli_fail("train", st) : srlm_status_exit_code(st);
    srlm_config_free(&c.cfg);
    srlm_comm_free(comm);
    return rc;
  }
  srlm_log_set_level(c.cfg.run.log_level);
  if (dry) { /* the lead checks and prints; the others only had their role assigned */
    srlm_status dst = lead ? dry_run(&c, comm) : SRLM_OK;
    int rc = dst == SRLM_OK ? 0 : srlm_cli_fail("train", dst);
    srlm_tokenizer_free(c.tok);
    srlm_config_free(&c.cfg);
    srlm_comm_free(comm);
    return rc;
  }
  srlm_stop_install(srlm_comm_rank(comm), srlm_comm_role_label(comm));
#ifdef _OPENMP
  if (c.cfg.roles.threads > 0) omp_set_num_threads(c.cfg.roles.threads);
#endif
  if (lead) {
    char *yaml = srlm_config_to_yaml(&c.cfg, 0);
    SRLM_INFO("resolved config (%s%s):\n%s", config_path, n_over ? " + overrides" : "", yaml);
    free(yaml);
    if (multi)
      SRLM_INFO("%d ranks: %s", srlm_comm_size(comm),
                srlm_comm_colocated(comm) ? "colocated (every rank generates, judges and learns its shards)"
                                          : "separate roles (learners, generators, judges: see roles.*)");
    st = take_run_dir(&c, overwrite, &lock);
    if (st == SRLM_OK) st = prepare_run_dir(&c);
  } else {
    st = run_dir_path(&c);
  }
  if (st == SRLM_OK) st = load_tokenizer(&c, lead);
  if (st == SRLM_OK && lead) st = prepare_model(&c);
  if (st == SRLM_OK && lead) st = prepare_prompts(&c);
  /* the others open M0 only once the lead has written it */
  if (multi) st = srlm_comm_agree(comm, st);
  /* from here on the folder is this job's (the lead holds its lock) */
  if (st == SRLM_OK && multi) st = srlm_comm_watchdog(comm, c.run_dir, c.cfg.run.rank_timeout);
  if (st == SRLM_OK && !lead) st = open_model(&c, 0);
  srlm_sr_iteration *rows = NULL;
  if (st == SRLM_OK) st = run_iterations(&c, comm, &rows);
  /* shards in flight: end every rank now; a stop (stop.h) is a point all ranks agreed on */
  if (st != SRLM_OK && st != SRLM_ERR_STOPPED && multi) srlm_comm_abort(comm, st);
  if (st == SRLM_OK && lead) st = write_summary(&c, srlm_timer_elapsed(&t), rows);
  if (st == SRLM_OK && lead && srlm_stop_signal())
    SRLM_WARN("got %s, but the run was already at its end: it is complete (exit 0)",
              srlm_stop_signal_name(srlm_stop_signal()));
  free(rows);
  int rc = 0;
  if (st == SRLM_ERR_STOPPED) {
    if (lead) fprintf(stderr, "srlm train: %s\n", srlm_error_message());
    rc = srlm_status_exit_code(st);
  } else if (st != SRLM_OK) {
    rc = srlm_cli_fail("train", st);
  } else if (lead) {
    SRLM_INFO("run %s done in %.2f s: config.yaml, model M0 (%s), %lld prompts tokenized, %d iterations, "
              "summary.json", c.run_dir, srlm_timer_elapsed(&t), c.model_dir, (long long)c.n_prompts,
              c.cfg.task.name == SRLM_CFG_TASK_NONE ? 0 : c.cfg.run.iterations);
  }
  srlm_tokenizer_free(c.tok);
  srlm_prompt_set_free(&c.eval_set);
  srlm_config_free(&c.cfg);
  srlm_comm_free(comm);
  srlm_rundir_lock_release(lock);
  return rc;
}
