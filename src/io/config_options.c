/* The one table of srlm's config options: key path, type, default, range or choices,
 * help, and where the value lives in srlm_config. Everything else (parsing,
 * overrides, printing, --help, validation of ranges) is driven by this table.
 *
 * Conventions: a row's key is its field path stringized, so the YAML mirrors the
 * struct (one exception: judge.template is the field template_path, as `template`
 * is a C++ keyword). Rows of one section are contiguous and the order here is the
 * order of `srlm config` output. Each row checks at compile time that its field has
 * the C type its option type needs. Ranges are inclusive unless marked open.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "srlm/config.h"

/* Compile-time type check of a field: a negative array size when it has the wrong type. */
#define FIELD_IS(f, T) (0 * sizeof(char[_Generic(((srlm_config *)0)->f, T: 1, default: -1)]))
#define FIELD_INT_SIZED(f) (0 * sizeof(char[sizeof(((srlm_config *)0)->f) == sizeof(int) ? 1 : -1]))
#define AT(f) (offsetof(srlm_config, f))

#define OPT_INT(f, def, lo, hi, h) \
  {.key = #f, .type = SRLM_CONFIG_INT, .offset = AT(f) + FIELD_IS(f, int), .idef = (def), .imin = (lo), .imax = (hi), .help = (h)}
#define OPT_INT64(f, def, lo, hi, h) \
  {.key = #f, .type = SRLM_CONFIG_INT64, .offset = AT(f) + FIELD_IS(f, int64_t), .idef = (def), .imin = (lo), .imax = (hi), .help = (h)}
/* lo_open/hi_open: 1 excludes the bound. */
#define OPT_FLOAT(f, def, lo_open, lo, hi, hi_open, h)                                                 \
  {.key = #f, .type = SRLM_CONFIG_FLOAT, .offset = AT(f) + FIELD_IS(f, double), .fdef = (def),         \
   .fmin = (lo), .fmax = (hi), .fmin_open = (lo_open), .fmax_open = (hi_open), .help = (h)}
#define OPT_BOOL(f, def, h) \
  {.key = #f, .type = SRLM_CONFIG_BOOL, .offset = AT(f) + FIELD_IS(f, _Bool), .idef = (def), .help = (h)}
#define OPT_STRING_KEY(k, f, def, h) \
  {.key = (k), .type = SRLM_CONFIG_STRING, .offset = AT(f) + FIELD_IS(f, char *), .sdef = (def), .help = (h)}
#define OPT_STRING(f, def, h) OPT_STRING_KEY(#f, f, def, h)
#define OPT_ENUM(f, names, def, h) \
  {.key = #f, .type = SRLM_CONFIG_ENUM, .offset = AT(f) + FIELD_INT_SIZED(f), .choices = (names), .sdef = (def), .help = (h)}
#define OPT_STRLIST(f, def, most, h) \
  {.key = #f, .type = SRLM_CONFIG_STRLIST, .offset = AT(f) + FIELD_IS(f, srlm_strlist), .ldef = (def), .imin = 0, .imax = (most), .help = (h)}

#define BIG (1 << 30)
#define INF HUGE_VAL

/* Enum names, in the order of the C enums of config.h. */
static const char *const k_log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const k_families[] = {"llama", "qwen2", "qwen3", "mistral", NULL};
static const char *const k_dtypes[] = {"fp32", "bf16", NULL};
static const char *const k_backends[] = {"cpu", "cuda", "cuda-sim", NULL};
static const char *const k_comms[] = {"auto", "mpi", "nccl", NULL};
static const char *const k_chat_formats[] = {"auto", "llama3", "chatml", "qwen3", "none", NULL};
static const char *const k_judge_modes[] = {"regex", "expected", NULL};
static const char *const k_losses[] = {"dpo", "ipo", "grpo", "sft", NULL};
static const char *const k_tasks[] = {"none", "sign_puzzle", "countdown", NULL};
static const char *const k_overflows[] = {"truncate", "drop", NULL};
static const char *const k_judge_sources[] = {"model", "verifier", "mix", "sar", "bleu", "none", NULL};
static const char *const k_bleu_tokenizes[] = {"words", "chars", NULL};
static const char *const k_pair_sources[] = {"judge", "votes", "implicit", NULL};
static const char *const k_consistencies[] = {"none", "cream", "scir", NULL};
static const char *const k_grpo_aggs[] = {"seq_mean", "token_mean", "fixed_len", NULL};
static const char *const k_lr_schedules[] = {"constant", "linear", "cosine", NULL};
static const char *const k_grpo_ratios[] = {"token", "sequence", NULL};
static const char *const k_checkers[] = {"none", "countdown", NULL};
static const char *const k_pair_rules[] = {"best_worst", "length_controlled", NULL};
static const char *const k_grpo_std_scopes[] = {"group", "batch", NULL};
static const char *const k_grpo_equals[] = {"keep", "drop", "refill", NULL};
static const char *const k_references[] = {"iteration", "ema", NULL};
static const char *const k_args_rewards[] = {"none", "implicit", "judge", NULL};
_Static_assert(SRLM_CFG_ARGS_JUDGE == 2, "generate.args_reward's names follow the enum's order");
_Static_assert(SRLM_CFG_REFERENCE_EMA == 1, "train.reference's names follow the enum's order");
_Static_assert(SRLM_CFG_SOURCE_NONE == 5 && SRLM_CFG_PAIRS_IMPLICIT == 2 && SRLM_CFG_CONSIST_SCIR == 2,
               "the pair source and consistency names follow the enums' order");
_Static_assert(SRLM_CFG_PAIR_LENGTH_CONTROLLED == 1 && SRLM_CFG_CHECKER_COUNTDOWN == 1 && SRLM_CFG_GRPO_RATIO_SEQUENCE == 1 && SRLM_CFG_GRPO_STD_BATCH == 1 && SRLM_CFG_GRPO_EQUAL_DROP == 1 && SRLM_CFG_GRPO_EQUAL_REFILL == 2,
               "the GRPO option names follow the enums' order");
_Static_assert(SRLM_LOG_ERROR == 3 && SRLM_CFG_FAMILY_MISTRAL == 3 && SRLM_CFG_DTYPE_BF16 == 1 &&
                   SRLM_CFG_BACKEND_CUDA_SIM == 2 &&
                   SRLM_CFG_CHAT_NONE == 4 && SRLM_CFG_JUDGE_EXPECTED == 1 && SRLM_CFG_LOSS_SFT == 3 &&
                   SRLM_CFG_LR_COSINE == 2 && SRLM_CFG_SOURCE_BLEU == 4 && SRLM_CFG_BLEU_CHARS == 1 && SRLM_CFG_GRPO_FIXED_LEN == 2,
               "an enum of config.h changed: update its names here");

static const char *const k_no_strings[] = {NULL};

static const srlm_config_option k_options[] = {
    OPT_STRING(run.name, "srlm", "name of the run; its directory is run.out_dir/run.name"),
    OPT_STRING(run.out_dir, "runs", "folder that holds the run directories"),
    OPT_INT64(run.seed, 1234, 0, INT64_MAX, "seed of every random draw (Philox key)"),
    OPT_INT(run.iterations, 2, 0, 1000, "self-rewarding iterations M_t -> M_t+1"),
    OPT_ENUM(run.log_level, k_log_levels, "info", "least severe log level printed to stderr"),
    OPT_ENUM(run.backend, k_backends, "cpu",
             "where the model runs: cpu, cuda (a GPU per rank) or cuda-sim (the CUDA kernels simulated on the CPU, for tests)"),
    OPT_INT(run.device, -1, -1, 1023, "GPU index of this rank; -1 = the launcher's local rank (OMPI/Slurm, else 0) modulo the GPUs there are, so ranks may share one"),
    OPT_ENUM(run.comm, k_comms, "auto",
             "weights, gradients and rollout-shard bytes between GPUs: nccl where every rank of a group owns a GPU of its own, mpi (through host memory), auto = nccl where it can"),
    OPT_INT(run.rank_timeout, 600, 0, 604800,
            "seconds a rank may stop answering (SIGSTOP, a frozen node) before the job ends naming it; 0 = never"),
    OPT_BOOL(run.tensorboard, 1, "write the metrics also as a TensorBoard events file (events.out.tfevents.*) in the run folder"),

    OPT_STRING(model.path, "", "Hugging Face model directory; \"\" builds a fresh model from model.arch"),
    OPT_ENUM(model.arch.family, k_families, "llama", "architecture family of a model built from model.arch"),
    OPT_INT(model.arch.vocab_size, 0, 0, 1 << 24, "vocabulary size; 0 = the tokenizer's"),
    OPT_INT(model.arch.hidden_size, 256, 1, 1 << 16, "width of the residual stream (C)"),
    OPT_INT(model.arch.intermediate_size, 768, 1, 1 << 18, "width of the SwiGLU MLP"),
    OPT_INT(model.arch.num_layers, 4, 1, 1024, "transformer blocks (L)"),
    OPT_INT(model.arch.num_heads, 4, 1, 1024, "query heads (NH)"),
    OPT_INT(model.arch.num_kv_heads, 0, 0, 1024, "key/value heads (NKV); 0 = num_heads"),
    OPT_INT(model.arch.head_dim, 0, 0, 1024, "head size (HS); 0 = hidden_size / num_heads"),
    OPT_FLOAT(model.arch.rope_theta, 10000.0, 1, 0.0, INF, 0, "RoPE base frequency"),
    OPT_FLOAT(model.arch.rms_norm_eps, 1e-5, 1, 0.0, 1.0, 0, "epsilon of RMSNorm"),
    OPT_INT(model.arch.max_seq_len, 512, 1, 1 << 20, "longest sequence (prompt + answer) in tokens"),
    OPT_BOOL(model.arch.tie_embeddings, 1, "share the token embedding with the LM head"),
    OPT_ENUM(model.dtype, k_dtypes, "fp32", "weights and activations (bf16 keeps fp32 master weights; GPU)"),

    OPT_STRING(tokenizer.path, "", "folder with tokenizer.json; \"\" = model.path"),
    OPT_ENUM(tokenizer.chat_format, k_chat_formats, "auto", "chat template; auto = from tokenizer_config.json"),

    OPT_INT(roles.generators, 0, 0, 1 << 20, "generator ranks when not colocated"),
    OPT_INT(roles.judges, 0, 0, 1 << 20, "judge ranks when not colocated"),
    OPT_INT(roles.learners, 0, 0, 1 << 20, "learner ranks when not colocated"),
    OPT_BOOL(roles.colocate, 1, "every rank plays all three roles in turn"),
    OPT_INT(roles.shard_prompts, 32, 1, 1 << 20, "prompts per rollout shard (the unit of work sent from generators to judges to learners)"),
    OPT_INT(roles.threads, 0, 0, 4096, "OpenMP threads per rank; 0 = the OpenMP default (OMP_NUM_THREADS)"),

    OPT_ENUM(task.name, k_tasks, "none", "built-in task giving prompts, judge format and checker (sign_puzzle, countdown: fresh seeded puzzles each iteration, held-out eval split); none = data.prompts"),
    OPT_INT(task.prompts_per_iteration, 4000, 1, 1 << 24, "fresh task prompts generated and judged per iteration"),
    OPT_INT(task.eval_prompts, 1000, 0, 1 << 24, "held-out task prompts evaluated after every model; 0 = no evaluation"),

    OPT_STRING(data.prompts, "", "training prompts (JSONL)"),
    OPT_STRING(data.eval_prompts, "", "evaluation prompts (JSONL); \"\" = no evaluation"),
    OPT_STRING(data.sft, "", "supervised fine-tuning examples (JSONL) for srlm sft"),
    OPT_BOOL(data.skip_bad_lines, 0, "skip malformed prompt lines with a warning instead of failing"),
    OPT_INT(data.max_prompt_tokens, 512, 1, 1 << 20, "longer prompts are skipped"),
    OPT_INT(data.prompts_per_iteration, 0, 0, 1 << 24, "prompts of data.prompts used per iteration, continuing where the last stopped (wrapping); 0 = all"),
    OPT_ENUM(data.checker, k_checkers, "none", "programmatic checker of data.prompts (countdown: Countdown puzzles, srlm task --task countdown); enables judge.source verifier/mix and eval accuracy"),

    OPT_INT(generate.samples_per_prompt, 4, 1, 1024, "answers sampled per prompt (K)"),
    OPT_FLOAT(generate.temperature, 0.7, 0, 0.0, 10.0, 0, "sampling temperature; 0 = greedy"),
    OPT_FLOAT(generate.top_p, 0.9, 1, 0.0, 1.0, 0, "nucleus sampling mass; 1 = off"),
    OPT_INT(generate.top_k, 0, 0, 1 << 24, "keep the k most likely tokens; 0 = off"),
    OPT_FLOAT(generate.min_p, 0.0, 0, 0.0, 1.0, 0, "drop tokens below min_p x the top probability; 0 = off"),
    OPT_INT(generate.max_new_tokens, 256, 1, 1 << 20, "longest answer in tokens"),
    OPT_INT(generate.max_batch, 0, 0, 1 << 20, "sequences decoded at once (KV-cache slots) by generation, judging and evaluation; 0 = auto: on a device backend (cuda, cuda-sim) as many as generate.kv_memory_fraction holds, at most 1024; on the cpu backend 64. On a device a value > 0 is an upper bound"),
    OPT_FLOAT(generate.kv_memory_fraction, 0.9, 1, 0.0, 1.0, 0, "device backends: the fraction of the device memory left after the rest of the rank's memory plan (weights, master, gradients, moments, activations, inference buffers, workspace; and the plans of other ranks on the same GPU) that the KV cache may take; its slots are generate.max_batch's auto"),
    OPT_STRLIST(generate.stop, k_no_strings, 64, "extra stop strings (the EOS tokens always stop)"),
    OPT_ENUM(generate.args_reward, k_args_rewards, "none", "ARGS reward-guided decoding of the generators: none; implicit (log pi - log pi_ref of the answer so far: one more reference forward per token); judge (the model's own expected judge score of the answer so far in the built-in task's judge format (task.name): args_top_k judge prompts + rationales per token)"),
    OPT_FLOAT(generate.args_weight, 1.0, 0, -1e6, 1e6, 0, "ARGS: score(v) = logit(v) + args_weight x reward(prefix + v)"),
    OPT_INT(generate.args_top_k, 10, 1, 1 << 20, "ARGS: candidates per step (the most likely tokens); replaces top_k/top_p/min_p"),
    OPT_STRING(generate.args_reference, "", "ARGS implicit reward: the reference model directory; empty = the run's start model M0"),

    OPT_STRING_KEY("judge.template", judge.template_path, "configs/judge/additive5.txt",
                   "judge prompt template file"),
    OPT_INT(judge.samples, 3, 1, 64, "judgments sampled per answer (J) by the text judge; scores are averaged (a task judges once, greedily, unless meta.enabled)"),
    OPT_FLOAT(judge.temperature, 0.7, 0, 0.0, 10.0, 0, "sampling temperature of the judge"),
    OPT_INT(judge.max_new_tokens, 256, 1, 1 << 20, "longest judgment in tokens"),
    OPT_STRING(judge.score_regex, "Score: *([0-9]+(\\.[0-9]+)?)", "PCRE2 pattern; capture 1 is the score"),
    OPT_FLOAT(judge.score_min, 0.0, 0, -1e9, 1e9, 0, "lowest valid score"),
    OPT_FLOAT(judge.score_max, 5.0, 0, -1e9, 1e9, 0, "highest valid score"),
    OPT_ENUM(judge.mode, k_judge_modes, "regex", "regex: parse the text; expected: probability-weighted score"),
    OPT_INT(judge.replay_per_verdict, 2000, 0, 1 << 24, "own greedy judgments replayed per verdict (correct/wrong) each iteration; 0 = none"),
    OPT_ENUM(judge.source, k_judge_sources, "model", "reward: the model's own judgment, the task's verifier, a weighted mix, sar (verifier + self-aligned reward from the policy's relative perplexity) or bleu (BLEU-4 against the prompt's references); none: no judging (pairs.source votes or implicit)"),
    OPT_FLOAT(judge.verifier_weight, 0.5, 0, 0.0, 1.0, 0, "mix: weight of the verifier's score (the model's gets 1 - weight)"),
    OPT_FLOAT(judge.sar_weight, 0.2, 0, 0.0, 100.0, 0, "sar: reward = verifier + sar_weight x (score_max - score_min) x R_SA, R_SA = clip((ppl(a) - ppl(a|q)) / ppl(a), -1, 1) (SAR: 0.2)"),
    OPT_ENUM(judge.bleu_tokenize, k_bleu_tokenizes, "words", "bleu: n-grams of whitespace-separated words, or of characters (whitespace dropped; the character-level tiny tasks)"),

    OPT_FLOAT(pairs.min_margin, 0.0, 0, 0.0, INF, 0, "least score gap between chosen and rejected"),
    OPT_ENUM(pairs.rule, k_pair_rules, "best_worst", "DPO pair of each prompt's N = generate.samples_per_prompt samples: the best vs the worst (West-of-N), or length_controlled (Meta-Rewarding: the shortest within pairs.length_rho of the best vs the longest near the worst)"),
    OPT_FLOAT(pairs.length_rho, 0.0, 0, 0.0, 0.5, 1, "length_controlled: score window rho; 0 = the extreme scores only, shortest/longest among ties"),
    OPT_ENUM(pairs.source, k_pair_sources, "judge", "scores that pick each prompt's pair: judge (judge.source's mean scores), votes (ScPO: most- vs least-voted final answer, w = vote margin / K), implicit (DICE/CREAM: beta (log pi_{t-1} - log pi_{t-2}); iteration 1: M0's length-normalized log-likelihood)"),
    OPT_FLOAT(pairs.vote_threshold, 0.0, 0, 0.0, 1.0, 0, "votes: keep a prompt only when its top answer has at least this fraction of the K votes"),
    OPT_FLOAT(pairs.length_alpha, 0.0, 0, 0.0, INF, 0, "implicit: pairs from score - alpha x response length in characters (fixed alpha)"),
    OPT_BOOL(pairs.length_alpha_auto, 0, "implicit: alpha chosen each iteration so that the pairs' mean chosen and rejected lengths match (DICE); overrides pairs.length_alpha"),
    OPT_FLOAT(pairs.replay_fraction, 0.0, 0, 0.0, 1.0, 0, "gamma: this share of iteration t-1's pairs (from iter_<t-1>/rollouts.h5) is trained on again with the new pairs (DICE's experience replay)"),
    OPT_ENUM(pairs.consistency, k_consistencies, "none", "cream: soft label eps = 1 - C per pair, C = (Kendall tau-b of R_t and R_{t-1} over the prompt's samples + 1) / 2 (needs pairs.source implicit); scir: judge pairs the implicit reward orders the other way are dropped or down-weighted"),
    OPT_BOOL(pairs.consistency_per_iteration, 0, "cream: every pair gets the iteration's mean C instead of its prompt's"),
    OPT_BOOL(pairs.disagree_drop, 1, "scir: drop pairs the implicit reward disagrees with (false: keep them with weight pairs.disagree_weight)"),
    OPT_FLOAT(pairs.disagree_weight, 0.5, 0, 0.0, 1.0, 0, "scir with disagree_drop false: loss weight of a disagreeing pair"),

    OPT_BOOL(meta.enabled, 0, "Meta-Rewarding (ALGORITHMS.md section 4): judge.samples sampled judgments per answer (a task too), a meta-judge compares the judgments of each prompt's most-varying answer in both orders, Elo per judgment, best vs worst judgment as judge DPO pairs next to the actor pairs"),
    OPT_INT(meta.judge_iterations, 2, 0, BIG, "Meta-Rewarding: iterations 1..N train the judge pairs too, later ones the actor pairs only (the judge drifts toward always-5 otherwise)"),
    OPT_STRING_KEY("meta.template", meta.template_path, "", "Meta-Rewarding on a prompt set: meta-judge template file with {prompt} {response} {judgment_a} {judgment_b} (a built-in task uses its own meta-judge format)"),
    OPT_STRING(meta.winner_regex, "Winner: *([AB12])", "Meta-Rewarding on a prompt set: PCRE2 pattern on the meta-judgment; capture 1 A or 1 = the first judgment, B or 2 = the second (last match)"),
    OPT_INT(meta.max_new_tokens, 64, 1, 1 << 20, "Meta-Rewarding on a prompt set: longest meta-judgment in tokens (greedy)"),

    OPT_ENUM(train.loss, k_losses, "dpo", "training objective"),
    OPT_FLOAT(train.beta, 0.1, 1, 0.0, 1000.0, 0, "DPO/IPO/GRPO KL strength"),
    OPT_FLOAT(train.label_smoothing, 0.0, 0, 0.0, 0.5, 1, "conservative DPO label smoothing"),
    OPT_FLOAT(train.nll_weight, 0.0, 0, 0.0, 1000.0, 0, "weight of the chosen answer's NLL added to the loss"),
    OPT_FLOAT(train.lr, 1e-6, 0, 0.0, 1.0, 0, "peak learning rate"),
    OPT_ENUM(train.lr_schedule, k_lr_schedules, "constant", "decay after warm-up"),
    OPT_INT(train.warmup_steps, 0, 0, BIG, "linear warm-up optimizer steps"),
    OPT_FLOAT(train.min_lr, 0.0, 0, 0.0, 1.0, 0, "learning rate at the end of the decay"),
    OPT_FLOAT(train.weight_decay, 0.0, 0, 0.0, 10.0, 0, "AdamW decoupled weight decay"),
    OPT_FLOAT(train.adam_beta1, 0.9, 0, 0.0, 1.0, 1, "AdamW first-moment decay"),
    OPT_FLOAT(train.adam_beta2, 0.999, 0, 0.0, 1.0, 1, "AdamW second-moment decay"),
    OPT_FLOAT(train.adam_eps, 1e-8, 1, 0.0, 1.0, 0, "AdamW denominator epsilon"),
    OPT_FLOAT(train.grad_clip, 1.0, 0, 0.0, 1e9, 0, "clip the global gradient norm; 0 = off"),
    OPT_INT(train.batch_size, 8, 1, 1 << 20, "pairs (or groups) per optimizer micro-batch on each learner"),
    OPT_INT(train.grad_accum, 1, 1, 1 << 16, "micro-batches per optimizer step"),
    OPT_INT(train.epochs, 1, 1, 1000, "passes over each iteration's pairs"),
    OPT_INT(train.max_seq_len, 0, 0, 1 << 20, "longest training sequence in tokens; 0 = the model's max positions"),
    OPT_ENUM(train.overflow, k_overflows, "truncate", "longer training examples: keep the first tokens, or drop them"),
    OPT_BOOL(train.decay_1d, 0, "apply weight decay to 1-D tensors (norms, biases) too"),
    OPT_FLOAT(train.replay_weight, 1.0, 0, 0.0, 1000.0, 0, "weight of the judge-replay NLL term of each preference step"),
    OPT_INT(train.replay_batch, 64, 1, 1 << 20, "judge-replay examples per preference step"),
    OPT_INT(train.log_every, 10, 1, 1 << 30, "optimizer steps between progress lines and metrics"),
    OPT_FLOAT(train.clip_eps, 0.2, 1, 0.0, 1.0, 0, "GRPO: clip the probability ratio to [1 - eps, 1 + eps_high]"),
    OPT_FLOAT(train.clip_eps_high, 0.0, 0, 0.0, 10.0, 0, "GRPO: DAPO's upper clip eps_high (clip-higher; DAPO: 0.28); 0 = clip_eps"),
    OPT_ENUM(train.grpo_ratio, k_grpo_ratios, "token", "GRPO: importance ratio per token, or per sequence (GSPO: the geometric mean of its tokens' ratios)"),
    OPT_ENUM(train.grpo_aggregation, k_grpo_aggs, "seq_mean", "GRPO: how token terms are averaged (GRPO, DAPO, Dr.GRPO)"),
    OPT_BOOL(train.grpo_std, 1, "GRPO: divide group advantages by a reward std (false: Dr.GRPO)"),
    OPT_FLOAT(train.grpo_std_eps, 1e-6, 0, 0.0, 1.0, 0, "GRPO: A = (r - mean) / (std + eps); TRL uses 1e-4"),
    OPT_ENUM(train.grpo_std_scope, k_grpo_std_scopes, "group", "GRPO: the std of each group's rewards, or of all the iteration's group rewards (batch)"),
    OPT_ENUM(train.grpo_equal_groups, k_grpo_equals, "keep", "GRPO: groups whose rewards are all equal are trained on (advantage 0), dropped, or dropped and refilled (DAPO dynamic sampling: more prompts are generated until the iteration has as many informative groups as prompts, the first ones by prompt order), counted"),
    OPT_INT(train.grpo_refill_rounds, 3, 1, 1000, "GRPO refill: extra generation rounds per iteration at most"),
    OPT_INT(train.grpo_refill_prompts, 0, 0, 1 << 24, "GRPO refill: extra prompts per iteration at most (each round generates the missing groups over the informative rate so far, in whole shards); 0 = as many as the iteration's prompts"),
    OPT_FLOAT(train.is_cap, 0.0, 0, 0.0, 1e9, 0, "GRPO: cap of the generator/learner importance weight; 0 = off"),
    OPT_INT(train.checkpoint_every, 0, 0, 1 << 30, "optimizer steps between mid-iteration checkpoints; 0 = only at the end of each iteration"),
    OPT_BOOL(train.recompute, 0, "keep only each layer's input in the forward and recompute the layer before its backward (less activation memory for one more forward; the same bits)"),
    OPT_BOOL(train.overlap_reduce, 1, "with several learners, reduce the gradients in buckets while the last micro-batch's backward still runs (a bucket starts as soon as the backward has finished its gradients), instead of all at once after it; the same bits either way on MPI (on NCCL within float re-association, as any NCCL sum)"),
    OPT_FLOAT(train.reduce_bucket_mb, 64.0, 1, 0.0, 1024.0, 0, "MiB per bucket of the overlapped gradient reduce (fractions allowed)"),
    OPT_INT(train.zero, 0, 0, 1, "ZeRO stage over the learner ranks: 0 = every learner holds all AdamW moments; 1 = each holds 1/learners of them and, for a bf16 model, of the fp32 master weights (the same results, bit for bit; checkpoints gather them; with one learner it changes nothing)"),

    OPT_ENUM(train.reference, k_references, "iteration", "DPO family and GRPO reference: iteration = M_{t-1} (log-probs once per iteration); ema = WARP's EMA anchor of the policy (train.ema_mu), kept over the whole run, forwarded every step (one more forward per step)"),
    OPT_FLOAT(train.ema_mu, 0.01, 1, 0.0, 1.0, 0, "EMA anchor (train.reference: ema): theta_ema <- (1 - mu) theta_ema + mu theta after every optimizer step (WARP: 0.01)"),

    OPT_INT(eval.every, 1, 0, BIG, "evaluate every N iterations; 0 = never"),
    OPT_INT(eval.prompts, 0, 0, BIG, "eval prompts per evaluation; 0 = all"),
    OPT_INT(eval.best_of, 0, 0, 4096, "best-of-N accuracy in the eval line next to the greedy one: N samples per eval prompt (generate.* sampling), the best by the training reward (judge.source), checked by the checker; 0 = off"),
};

const srlm_config_option *srlm_config_options(size_t *n) {
  *n = sizeof k_options / sizeof k_options[0];
  return k_options;
}

const char *srlm_cfg_backend_name(srlm_cfg_backend b) {
  return (int)b >= 0 && (size_t)b < sizeof k_backends / sizeof k_backends[0] - 1 ? k_backends[b] : "?";
}
