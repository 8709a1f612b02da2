/* srlm config: one YAML file parsed strictly into typed structs, overridable by
 * `key.path=value` arguments, printed back as YAML that parses to the same values.
 *
 * Every option is declared once, in the table of src/io/config_options.c (key path,
 * type, default, range or choices, help, offset into srlm_config). The YAML keys
 * mirror the struct: `train.lr` is cfg.train.lr.
 *
 * Typing rules (the same for files and overrides):
 *  - int, int64: a plain decimal integer ("-3", "+7"); no fraction, exponent, hex or
 *    leading zeros ("010" means 8 in YAML 1.1 and 10 in YAML 1.2, so it is refused).
 *  - float: a plain decimal number ("0.1", "1e-6", "3"); no .inf/.nan, no hex.
 *  - bool: plain true/True/TRUE/false/False/FALSE only. YAML 1.1's yes/no/on/off/y/n
 *    are refused, as are quoted booleans.
 *  - quoted numbers and booleans ("5", 'true') are strings and are refused for those types.
 *  - string: any scalar, plain or quoted, taken as its text (`name: 2024` is "2024").
 *    Strings may not contain NUL.
 *  - enum: a scalar equal to one of the option's names (case-sensitive).
 *  - list of strings: a YAML sequence of scalars (block or flow: [a, "b c"]).
 *  - an empty value (`key:` or `key=`) is the empty string, the empty list or the
 *    empty section; for numbers, bools and enums it is an error. `~` and `null` are
 *    errors everywhere.
 *  - anchors, aliases, tags and more than one document are refused; keys are scalars
 *    without '.', each at most once per mapping (nested sections included).
 * Overrides: the text after the first '=' is parsed as a YAML document holding one
 * node, then checked as above; values containing ": " or " #" need YAML quotes
 * ('run.name="a: b"'). A key given twice on the command line: the last one wins.
 *
 * Errors are SRLM_ERR_CONFIG (exit 2) with messages
 *   "configs/x.yaml:12:5: train.lr: value 5 out of range [0, 1]"      (file, 1-based)
 *   "override 'train.lr=abc': train.lr: expected a float, got 'abc'"  (override)
 * Floats print as the shortest text that parses back to the same bits.
 */
#ifndef SRLM_CONFIG_H
#define SRLM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An owned list of owned NUL-terminated strings. */
typedef struct srlm_strlist {
  char **items; /* [n] */
  int n;
} srlm_strlist;

/* Enums of the config. Their names in YAML are listed, in this order, next to the
 * option table; srlm_config_enum_name() returns them. */
typedef enum srlm_cfg_family {
  SRLM_CFG_FAMILY_LLAMA = 0,
  SRLM_CFG_FAMILY_QWEN2,
  SRLM_CFG_FAMILY_QWEN3,
  SRLM_CFG_FAMILY_MISTRAL
} srlm_cfg_family;

typedef enum srlm_cfg_dtype { SRLM_CFG_DTYPE_FP32 = 0, SRLM_CFG_DTYPE_BF16 } srlm_cfg_dtype;

/* run.backend; srlm_cfg_backend_name gives the backend registry's name. */
typedef enum srlm_cfg_backend { SRLM_CFG_BACKEND_CPU = 0, SRLM_CFG_BACKEND_CUDA, SRLM_CFG_BACKEND_CUDA_SIM } srlm_cfg_backend;
const char *srlm_cfg_backend_name(srlm_cfg_backend b);

/* run.comm: the transport of weights and gradients between GPUs (comm.h, "Backends"). */
typedef enum srlm_cfg_comm { SRLM_CFG_COMM_AUTO = 0, SRLM_CFG_COMM_MPI, SRLM_CFG_COMM_NCCL } srlm_cfg_comm;

typedef enum srlm_cfg_chat_format {
  SRLM_CFG_CHAT_AUTO = 0, /* from tokenizer_config.json */
  SRLM_CFG_CHAT_LLAMA3,
  SRLM_CFG_CHAT_CHATML,
  SRLM_CFG_CHAT_QWEN3,
  SRLM_CFG_CHAT_NONE /* raw text, no chat template */
} srlm_cfg_chat_format;

typedef enum srlm_cfg_judge_mode {
  SRLM_CFG_JUDGE_REGEX = 0, /* score = first capture of judge.score_regex in the judgment */
  SRLM_CFG_JUDGE_EXPECTED   /* score = probability-weighted mean over the score tokens */
} srlm_cfg_judge_mode;

typedef enum srlm_cfg_loss {
  SRLM_CFG_LOSS_DPO = 0,
  SRLM_CFG_LOSS_IPO,
  SRLM_CFG_LOSS_GRPO,
  SRLM_CFG_LOSS_SFT
} srlm_cfg_loss;

typedef enum srlm_cfg_task {
  SRLM_CFG_TASK_NONE = 0,   /* prompts from data.prompts */
  SRLM_CFG_TASK_SIGN_PUZZLE, /* the built-in sign puzzle (src/tasks): prompts, judge, checker */
  SRLM_CFG_TASK_COUNTDOWN    /* the built-in Countdown (countdown.h), the same way */
} srlm_cfg_task;

typedef enum srlm_cfg_overflow {
  SRLM_CFG_OVERFLOW_TRUNCATE = 0, /* keep the first train.max_seq_len tokens */
  SRLM_CFG_OVERFLOW_DROP          /* skip the example (counted) */
} srlm_cfg_overflow;

typedef enum srlm_cfg_judge_source {
  SRLM_CFG_SOURCE_MODEL = 0, /* the model's own judgment (the task's judge format, or judge.template) */
  SRLM_CFG_SOURCE_VERIFIER,  /* the task's programmatic checker: score_max if right, score_min if not */
  SRLM_CFG_SOURCE_MIX,       /* (1 - judge.verifier_weight) x model + judge.verifier_weight x verifier */
  SRLM_CFG_SOURCE_SAR,       /* verifier + judge.sar_weight x (score_max - score_min) x R_SA (rewards.h, SAR) */
  SRLM_CFG_SOURCE_BLEU,      /* score_min + (score_max - score_min) x BLEU-4 against the prompt's references */
  SRLM_CFG_SOURCE_NONE       /* no judging (pairs.source votes/implicit): shards pass with J = 0 */
} srlm_cfg_judge_source;

typedef enum srlm_cfg_bleu_tokenize {
  SRLM_CFG_BLEU_WORDS = 0, /* whitespace-separated words (rewards.h) */
  SRLM_CFG_BLEU_CHARS      /* every character but whitespace (the character-level tiny tasks) */
} srlm_cfg_bleu_tokenize;

typedef enum srlm_cfg_pair_source {
  SRLM_CFG_PAIRS_JUDGE = 0, /* the judge's mean scores (judge.source) */
  SRLM_CFG_PAIRS_VOTES,     /* ScPO: self-consistency votes over the samples' final answers */
  SRLM_CFG_PAIRS_IMPLICIT   /* DICE/CREAM: the implicit reward beta (log pi_{t-1} - log pi_{t-2}) */
} srlm_cfg_pair_source;

typedef enum srlm_cfg_consistency {
  SRLM_CFG_CONSIST_NONE = 0, /* plain pairs */
  SRLM_CFG_CONSIST_CREAM,    /* soft label eps = 1 - C from the Kendall tau of R_t and R_{t-1} */
  SRLM_CFG_CONSIST_SCIR      /* judge pairs the implicit reward orders the other way: dropped or down-weighted */
} srlm_cfg_consistency;

typedef enum srlm_cfg_grpo_agg {
  SRLM_CFG_GRPO_SEQ_MEAN = 0, /* per-sequence token mean, then mean over sequences (GRPO) */
  SRLM_CFG_GRPO_TOKEN_MEAN,   /* token mean over the step (DAPO) */
  SRLM_CFG_GRPO_FIXED_LEN     /* sum / (sequences x generate.max_new_tokens) (Dr.GRPO) */
} srlm_cfg_grpo_agg;

typedef enum srlm_cfg_pair_rule {
  SRLM_CFG_PAIR_BEST_WORST = 0,    /* the best vs the worst of the prompt's N = K samples (West-of-N) */
  SRLM_CFG_PAIR_LENGTH_CONTROLLED  /* the shortest near the best vs the longest near the worst (pairs.h) */
} srlm_cfg_pair_rule;

typedef enum srlm_cfg_checker {
  SRLM_CFG_CHECKER_NONE = 0,  /* a prompt set without a programmatic checker */
  SRLM_CFG_CHECKER_COUNTDOWN  /* data.prompts are Countdown puzzles (countdown.h): srlm_cd_check */
} srlm_cfg_checker;

typedef enum srlm_cfg_grpo_ratio {
  SRLM_CFG_GRPO_RATIO_TOKEN = 0, /* importance ratio per token (GRPO, DAPO) */
  SRLM_CFG_GRPO_RATIO_SEQUENCE   /* one ratio per sequence, the geometric mean of its tokens' (GSPO) */
} srlm_cfg_grpo_ratio;

typedef enum srlm_cfg_grpo_std_scope {
  SRLM_CFG_GRPO_STD_GROUP = 0, /* each group's own reward std */
  SRLM_CFG_GRPO_STD_BATCH      /* the std of every reward of the iteration's groups */
} srlm_cfg_grpo_std_scope;

typedef enum srlm_cfg_grpo_equal {
  SRLM_CFG_GRPO_EQUAL_KEEP = 0, /* groups with all rewards equal are trained on (advantage 0) */
  SRLM_CFG_GRPO_EQUAL_DROP,     /* dropped before training (DAPO's dynamic sampling filter), counted */
  SRLM_CFG_GRPO_EQUAL_REFILL    /* dropped, and more prompts generated until the iteration has its
                                   prompts' worth of informative groups (DAPO; rollout.h) */
} srlm_cfg_grpo_equal;

typedef enum srlm_cfg_args_reward {
  SRLM_CFG_ARGS_NONE = 0,  /* plain sampling */
  SRLM_CFG_ARGS_IMPLICIT,  /* ARGS with the log-ratio of the policy to generate.args_reference */
  SRLM_CFG_ARGS_JUDGE      /* ARGS with the model's own judge of the built-in task */
} srlm_cfg_args_reward;

typedef enum srlm_cfg_reference {
  SRLM_CFG_REFERENCE_ITERATION = 0, /* the KL reference is M_{t-1}, the iteration's start, taken once */
  SRLM_CFG_REFERENCE_EMA            /* WARP's EMA anchor of the policy, updated after every step, forwarded per step */
} srlm_cfg_reference;

typedef enum srlm_cfg_lr_schedule {
  SRLM_CFG_LR_CONSTANT = 0,
  SRLM_CFG_LR_LINEAR,
  SRLM_CFG_LR_COSINE
} srlm_cfg_lr_schedule;

/* The whole configuration. Strings are heap-owned and never NULL after
 * srlm_config_init; release everything with srlm_config_free. */
typedef struct srlm_config {
  struct {
    char *name;
    char *out_dir;
    int64_t seed;
    int iterations;
    srlm_log_level log_level;
    srlm_cfg_backend backend;
    int device; /* -1 = the launcher's local rank */
    srlm_cfg_comm comm;
    int rank_timeout; /* seconds without a heartbeat before a rank counts as stopped; 0 = off */
    bool tensorboard; /* TensorBoard events file in the run folder (tfevents.h) */
  } run;
  struct {
    char *path; /* Hugging Face directory; "" = build a fresh model from model.arch */
    struct {
      srlm_cfg_family family;
      int vocab_size; /* 0 = the tokenizer's vocabulary size */
      int hidden_size;
      int intermediate_size;
      int num_layers;
      int num_heads;
      int num_kv_heads; /* 0 = num_heads */
      int head_dim;     /* 0 = hidden_size / num_heads */
      double rope_theta;
      double rms_norm_eps;
      int max_seq_len;
      bool tie_embeddings;
    } arch;
    srlm_cfg_dtype dtype;
  } model;
  struct {
    char *path; /* "" = model.path */
    srlm_cfg_chat_format chat_format;
  } tokenizer;
  struct {
    int generators;
    int judges;
    int learners;
    bool colocate;
    int shard_prompts; /* prompts per rollout shard */
    int threads;       /* OpenMP threads per rank; 0 = the OpenMP default (OMP_NUM_THREADS) */
  } roles;
  struct {
    srlm_cfg_task name;
    int prompts_per_iteration;
    int eval_prompts;
  } task;
  struct {
    char *prompts;
    char *eval_prompts;
    char *sft; /* SFT examples (JSONL) for `srlm sft` */
    bool skip_bad_lines;
    int max_prompt_tokens;
    int prompts_per_iteration; /* 0 = every prompt each iteration */
    srlm_cfg_checker checker;  /* the prompt set's checker: judge.source verifier/mix, eval accuracy */
  } data;
  struct {
    int samples_per_prompt; /* K */
    double temperature;
    double top_p;
    int top_k; /* 0 = off */
    double min_p;
    int max_new_tokens;
    int max_batch;             /* sequences decoded at once (KV-cache slots); 0 = auto (memplan.h) */
    double kv_memory_fraction; /* of the device memory the rest of the plan leaves, for the KV cache */
    srlm_strlist stop;
    srlm_cfg_args_reward args_reward; /* ARGS reward-guided decoding of the generators (generate.h) */
    double args_weight;
    int args_top_k;
    char *args_reference;             /* implicit: the reference model; "" = the run's start model M0 */
  } generate;
  struct {
    char *template_path; /* YAML key judge.template */
    int samples;         /* J */
    double temperature;
    int max_new_tokens;
    char *score_regex;
    double score_min;
    double score_max;
    srlm_cfg_judge_mode mode;
    int replay_per_verdict;
    srlm_cfg_judge_source source;
    double verifier_weight;
    double sar_weight;                   /* source sar: weight of R_SA (the paper's 0.2) */
    srlm_cfg_bleu_tokenize bleu_tokenize; /* source bleu: what an n-gram is made of */
  } judge;
  struct {
    double min_margin;
    srlm_cfg_pair_rule rule;
    double length_rho; /* length_controlled: the score window rho in [0, 0.5) */
    srlm_cfg_pair_source source;     /* where the scores that pick pairs come from */
    double vote_threshold;           /* votes: least top-vote fraction V+/K kept */
    double length_alpha;             /* implicit: score - alpha x length in characters */
    bool length_alpha_auto;          /* implicit: alpha equalizing mean chosen and rejected lengths (DICE) */
    double replay_fraction;          /* gamma: share of iteration t-1's pairs trained on again */
    srlm_cfg_consistency consistency;
    bool consistency_per_iteration;  /* cream: one C (the iteration's mean) for every pair */
    bool disagree_drop;              /* scir: drop disagreeing pairs (else weight disagree_weight) */
    double disagree_weight;          /* scir: w of a disagreeing pair when not dropped */
  } pairs;
  struct {
    bool enabled;          /* Meta-Rewarding (include/srlm/meta.h, src/roles/meta_judge.c) */
    int judge_iterations;  /* iterations 1..N train the judge pairs too (later: actor pairs only) */
    char *template_path;   /* YAML key meta.template: a prompt set's meta-judge template */
    char *winner_regex;    /* capture 1: A or 1 = the first judgment, B or 2 = the second */
    int max_new_tokens;    /* a prompt set's meta-judgment length */
  } meta;
  struct {
    srlm_cfg_loss loss;
    double beta;
    double label_smoothing;
    double nll_weight;
    double lr;
    srlm_cfg_lr_schedule lr_schedule;
    int warmup_steps;
    double min_lr;
    double weight_decay;
    double adam_beta1;
    double adam_beta2;
    double adam_eps;
    double grad_clip; /* 0 = off */
    int batch_size;
    int grad_accum;
    int epochs;
    int max_seq_len; /* 0 = the model's max_position_embeddings */
    srlm_cfg_overflow overflow;
    bool decay_1d;
    int log_every;
    double replay_weight;
    int replay_batch;
    double clip_eps;               /* GRPO ratio clip */
    double clip_eps_high;          /* DAPO's upper ratio clip; 0 = clip_eps */
    srlm_cfg_grpo_ratio grpo_ratio;
    srlm_cfg_grpo_agg grpo_aggregation;
    bool grpo_std;                 /* divide group advantages by their std (false: Dr.GRPO) */
    double grpo_std_eps;           /* A = (r - mean) / (std + eps) */
    srlm_cfg_grpo_std_scope grpo_std_scope;
    srlm_cfg_grpo_equal grpo_equal_groups;
    int grpo_refill_rounds;        /* refill: extra generation rounds per iteration at most */
    int grpo_refill_prompts;       /* refill: extra prompts per iteration at most; 0 = the iteration's prompts */
    double is_cap;                 /* GRPO truncated importance weight cap; 0 = off */
    int checkpoint_every;          /* optimizer steps between mid-iteration checkpoints; 0 = only at iteration ends */
    bool overlap_reduce;           /* several learners: the gradient reduce in buckets overlapped with the backward */
    double reduce_bucket_mb;       /* its bucket size, MiB */
    int zero;                      /* ZeRO stage over the learner ranks: 0, or 1 (AdamW moments sharded) */
    bool recompute;                /* activation recompute per layer in the learner's backward */
    srlm_cfg_reference reference;  /* the DPO/GRPO reference: iteration start, or the EMA anchor (WARP) */
    double ema_mu;                 /* EMA anchor: theta_ema <- (1 - mu) theta_ema + mu theta after each step */
  } train;
  struct {
    int every;   /* iterations between evaluations; 0 = never */
    int prompts; /* eval prompts per evaluation; 0 = all */
    int best_of; /* best-of-N accuracy: N samples per eval prompt, the best by judge.source; 0 = off */
  } eval;
} srlm_config;

/* ---- the option table ---------------------------------------------------- */

typedef enum srlm_config_type {
  SRLM_CONFIG_INT = 0, /* int */
  SRLM_CONFIG_INT64,   /* int64_t */
  SRLM_CONFIG_FLOAT,   /* double */
  SRLM_CONFIG_BOOL,    /* bool */
  SRLM_CONFIG_STRING,  /* char * */
  SRLM_CONFIG_ENUM,    /* a C enum (int-sized); value = index into choices */
  SRLM_CONFIG_STRLIST  /* srlm_strlist */
} srlm_config_type;

typedef struct srlm_config_option {
  const char *key;   /* "train.lr" */
  srlm_config_type type;
  size_t offset;     /* of the field in srlm_config */
  int64_t imin, imax; /* INT, INT64: inclusive range; STRLIST: most items (imax) */
  double fmin, fmax;  /* FLOAT: range, +-HUGE_VAL for an open end */
  bool fmin_open, fmax_open; /* FLOAT: the bound itself is excluded */
  int64_t idef;       /* INT, INT64, BOOL default */
  double fdef;        /* FLOAT default */
  const char *sdef;   /* STRING default; ENUM default name */
  const char *const *ldef;    /* STRLIST default, NULL-terminated */
  const char *const *choices; /* ENUM names in enum order, NULL-terminated */
  const char *help;   /* one line */
} srlm_config_option;

/* The table (declaration order = print order) and its length. */
const srlm_config_option *srlm_config_options(size_t *n);
/* The option with this exact key, or NULL. */
const srlm_config_option *srlm_config_option_find(const char *key);
/* "int", "int64", "float", "bool", "string", "enum", "list". */
const char *srlm_config_type_name(srlm_config_type type);
/* The YAML name of an enum option's value ("dpo"), or NULL for a bad key or value. */
const char *srlm_config_enum_name(const char *key, int value);

/* ---- lifetime ------------------------------------------------------------- */

/* Sets every option to its default. */
void srlm_config_init(srlm_config *cfg);
/* Frees the strings and lists and zeroes cfg; safe to call twice. */
void srlm_config_free(srlm_config *cfg);
/* Deep copy; dst must not hold a config (free it first). */
void srlm_config_copy(srlm_config *dst, const srlm_config *src);
/* True when every option is equal (floats bit for bit). When not, *first_diff
 * (if given) is set to the first differing key. */
bool srlm_config_equal(const srlm_config *a, const srlm_config *b, const char **first_diff);

/* ---- parsing -------------------------------------------------------------- */

/* Applies a YAML document (text[len], need not be NUL-terminated) onto cfg: the keys
 * present replace the current values, the others are kept. name is the file name
 * used in messages. Does not run the cross-option checks (srlm_config_validate).
 * On error cfg stays a valid config (free it) holding a mix of old and new values. */
srlm_status srlm_config_parse(srlm_config *cfg, const char *name, const char *text, size_t len);
/* srlm_config_parse on a file's contents; the path names it in messages. */
srlm_status srlm_config_parse_file(srlm_config *cfg, const char *path);
/* Applies one override "key.path=value". */
srlm_status srlm_config_set(srlm_config *cfg, const char *arg);
/* Range checks of every option and the checks that involve several options
 * (heads divide the hidden size, score_min < score_max, ...). */
srlm_status srlm_config_validate(const srlm_config *cfg);
/* The whole sequence of a command: defaults, then the file (path may be NULL),
 * then the overrides in order, then srlm_config_validate. cfg is initialized here;
 * free it with srlm_config_free whatever the result. */
srlm_status srlm_config_load(srlm_config *cfg, const char *path, int n_overrides,
                             const char *const *overrides);

/* ---- printing ------------------------------------------------------------- */

enum {
  SRLM_CONFIG_PRINT_COMMENTS = 1 /* a header, and each key's type, range and help as a comment */
};

/* The config as YAML: every key in table order, nested mappings, strings quoted when
 * a YAML reader could take them for anything else. Parsing the text gives an equal
 * config. Returns a malloc'd NUL-terminated string (free()). */
char *srlm_config_to_yaml(const srlm_config *cfg, unsigned flags);
/* Writes srlm_config_to_yaml(cfg, 0) to path atomically. */
srlm_status srlm_config_save(const srlm_config *cfg, const char *path);
/* The option list for `srlm config --help`: one aligned line per option with its key,
 * type, default, range or choices and help. malloc'd. */
char *srlm_config_help(void);
/* One value as YAML text (the right-hand side printed for that key); malloc'd. */
char *srlm_config_value_text(const srlm_config *cfg, const srlm_config_option *opt);

#ifdef __cplusplus
}
#endif
#endif
