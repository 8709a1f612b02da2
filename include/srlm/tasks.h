/* srlm tasks: the built-in synthetic task of ../shared/RECIPES.md, the sign puzzle (a
 * tiny Countdown), with its seeded problem generator, programmatic checker, judge
 * format and data files, and model-based evaluation helpers; and the task interface
 * (srlm_task_ops, at the end) that every built-in task (this one, Countdown of
 * countdown.h) implements for the self-rewarding driver.
 *
 * The puzzle: four digits d1..d4 in 1..9 and a target T = d1 s1 d2 s2 d3 s3 d4 with
 * random signs, so every instance is solvable. Texts (character tokens, configs/tiny):
 *   prompt          Q d1d2d3d4 T sign two-digit|T| A      "Q6371T+15A"
 *   answer          d1 s1 d2 s2 d3 s3 d4, then EOS         "6+3+7-1"
 *   judge prompt    J digits T target A candidate S         "J6371T+15A6+3+7-1S"
 *   judgment        three running partial sums of the candidate (sign + 2 digits),
 *                   then the score token: 5 correct, 1 wrong  "+09+16+15" "5"
 *
 * Generator: instance i of a split is a function of (seed, split, i) alone, drawn from
 * srlm_rng_bits(seed, purpose of the split, i low 32 bits, i high 32 bits, attempt).
 * "Held out" is a partition of the puzzle space, not only a different draw: the space
 * is small (9^4 digit strings x at most 8 targets, about 52k prompts), so independent
 * draws would overlap (measured: 10% of a 1000-prompt draw also occurs among 4000
 * prompts of another draw, tests/unit/test_tasks.c). A fixed keyed hash of
 * (digits, target) puts about 1/8 of the probability mass in the held-out set; the
 * eval split draws only from it (rejection sampling), every other split only outside
 * it, so eval prompts never occur in training prompts, SFT data or judge data,
 * whatever the seeds.
 *
 * Checker: an answer is correct iff it is exactly the 7 characters d1 s1 d2 s2 d3 s3 d4
 * with the prompt's digits in order and a left-to-right value equal to T. The text is
 * the generated text without the stopping EOS (generate.h); one trailing
 * "<|endoftext|>" (the EOS written out as text) is also accepted. Anything else
 * (other lengths, bytes, NULs, a second EOS) is wrong; no input crashes it.
 *
 * Judge format for a candidate as written:
 * - The candidate shown in the judge prompt: one trailing "<|endoftext|>" removed, each
 *   run of bytes outside the vocabulary characters (0-9 + - Q T A J S) replaced by one
 *   'Q', then cut to SRLM_TASK_JUDGE_MAX_CAND characters. 'Q' never occurs in an
 *   answer and a cut candidate is longer than an answer, so the shown candidate passes
 *   the checker iff the candidate does: the judge sees what the checker judges.
 * - The reference rationale reads the shown candidate left to right as far as it has
 *   the form digit (sign digit)*: the running sum after each of up to 3 (sign, digit)
 *   steps; steps it lacks repeat the last sum (0 when it does not start with a digit).
 *   A well-formed candidate gets its true partial sums ("+09+16+15").
 * - The reference score is 5 when the checker accepts the candidate, else 1.
 * - A judgment parses when it starts with three (sign, digit, digit) groups followed
 *   by a score digit 1..5; whatever follows is ignored. The verdict is "correct" iff
 *   the score is >= 3.
 */
#ifndef SRLM_TASKS_H
#define SRLM_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"
#include "srlm/model.h"
#include "srlm/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SRLM_TASK_PROMPT_LEN 10    /* "Q6371T+15A" */
#define SRLM_TASK_ANSWER_LEN 7     /* "6+3+7-1" */
#define SRLM_TASK_RATIONALE_LEN 9  /* "+09+16+15" */
#define SRLM_TASK_JUDGMENT_LEN 10  /* rationale + score digit */
#define SRLM_TASK_JUDGE_MAX_CAND 9 /* longest candidate shown to the judge (an answer + 2):
                                      a judge sequence then fits in 31 tokens with its EOS */
#define SRLM_TASK_JUDGE_PROMPT_MAX (11 + SRLM_TASK_JUDGE_MAX_CAND) /* J+4+T+3+A+cand+S */
#define SRLM_TASK_EOS_TEXT "<|endoftext|>" /* the answer's and judgment's end token */

/* The Philox counter word `a` of each split's draws, and of the held-out hash. */
#define SRLM_TASK_RNG_TRAIN 0x7a50u
#define SRLM_TASK_RNG_EVAL 0x7a51u
#define SRLM_TASK_RNG_SFT 0x7a52u
#define SRLM_TASK_RNG_JUDGE 0x7a53u
#define SRLM_TASK_RNG_HOLDOUT 0x7a5fu

typedef enum srlm_task_split {
  SRLM_TASK_SPLIT_TRAIN = 0, /* prompts of the self-rewarding iterations */
  SRLM_TASK_SPLIT_EVAL,      /* held-out evaluation prompts */
  SRLM_TASK_SPLIT_SFT,       /* solved instructions of the seed SFT */
  SRLM_TASK_SPLIT_JUDGE,     /* puzzles of the judge-training examples */
  SRLM_TASK_SPLIT_COUNT
} srlm_task_split;

/* "train", "eval", "sft", "judge" */
const char *srlm_task_split_name(srlm_task_split s);
/* The split named name; SRLM_ERR_USAGE listing the names when there is none. */
srlm_status srlm_task_split_parse(const char *name, srlm_task_split *out);

typedef struct srlm_task_puzzle {
  int d[4];    /* digits, 1..9 from the generator (0..9 from a parsed prompt) */
  int sign[3]; /* +1/-1: a sign pattern reaching the target (the drawn one) */
  int target;  /* -99..99 */
} srlm_task_puzzle;

/* ---- generator --------------------------------------------------------------- */

/* Instance `index` of `split`: a function of (seed, split, index) alone. */
void srlm_task_puzzle_make(uint64_t seed, srlm_task_split split, uint64_t index, srlm_task_puzzle *p);
/* 1 when (digits, target) is in the held-out set (the eval split's puzzles), else 0. */
int srlm_task_puzzle_held_out(const srlm_task_puzzle *p);

/* ---- texts and the checker ------------------------------------------------------ */

/* The prompt, NUL-terminated. */
void srlm_task_prompt(const srlm_task_puzzle *p, char out[SRLM_TASK_PROMPT_LEN + 1]);
/* The answer with the digits of p and the signs sign[3] (+1/-1), NUL-terminated. */
void srlm_task_answer(const srlm_task_puzzle *p, const int sign[3], char out[SRLM_TASK_ANSWER_LEN + 1]);
/* Parses a prompt (exactly the prompt format; digits 0..9, target -99..99); sign[] gets
 * the first pattern in the order +++, ++-, ..., --- that reaches the target, or +++
 * when none does. SRLM_ERR_FORMAT saying what is wrong. */
srlm_status srlm_task_prompt_parse(const char *text, size_t len, srlm_task_puzzle *p);
/* The checker: 1 when `answer` (len bytes, may hold anything) is a correct answer to p. */
int srlm_task_check(const srlm_task_puzzle *p, const char *answer, size_t len);
/* The number of sign patterns (0..8) that reach p's target. */
int srlm_task_count_solutions(const srlm_task_puzzle *p);
/* Every correct answer of p (the references of judge.source bleu and of `srlm task prompts
 * --reference`), in the sign order +++, ++-, ..., ---; returns how many (0..8). */
int srlm_task_solutions(const srlm_task_puzzle *p, char out[8][SRLM_TASK_ANSWER_LEN + 1]);

/* ---- judge format -------------------------------------------------------------- */

/* The candidate as the judge sees it (rules above), NUL-terminated; returns its length. */
size_t srlm_task_judge_candidate(const char *cand, size_t len, char out[SRLM_TASK_JUDGE_MAX_CAND + 1]);
/* The judge prompt for (p, candidate as written), NUL-terminated; returns its length. */
size_t srlm_task_judge_prompt(const srlm_task_puzzle *p, const char *cand, size_t len,
                              char out[SRLM_TASK_JUDGE_PROMPT_MAX + 1]);
/* The reference rationale (partial sums of the shown candidate), NUL-terminated. */
void srlm_task_rationale(const char *cand, size_t len, char out[SRLM_TASK_RATIONALE_LEN + 1]);
/* The reference judgment: rationale + score digit ('5' when srlm_task_check accepts the
 * candidate, else '1'), NUL-terminated. */
void srlm_task_judgment(const srlm_task_puzzle *p, const char *cand, size_t len,
                        char out[SRLM_TASK_JUDGMENT_LEN + 1]);
/* 1 and *score (1..5) when text parses as a judgment (rules above), else 0. */
int srlm_task_judgment_parse(const char *text, size_t len, int *score);

/* ---- data files ----------------------------------------------------------------- */

/* How a judge example's candidate was made: even indices get a correct candidate (a
 * correct sign pattern drawn uniformly among those reaching T); odd indices a perturbed
 * one: 60% a random sign pattern (labelled by the checker: sometimes correct), 20% one
 * sign of a correct answer flipped, 20% one digit of a correct answer replaced by
 * another digit 1..9 (both always wrong). */
typedef enum srlm_task_cand_kind {
  SRLM_TASK_CAND_CORRECT = 0,
  SRLM_TASK_CAND_RANDOM_SIGNS,
  SRLM_TASK_CAND_SIGN_FLIP,
  SRLM_TASK_CAND_DIGIT_SWAP,
  SRLM_TASK_CAND_KIND_COUNT
} srlm_task_cand_kind;

/* Judge example `index`: its puzzle (split judge) and candidate answer. */
void srlm_task_judge_example(uint64_t seed, uint64_t index, srlm_task_puzzle *p,
                             char cand[SRLM_TASK_ANSWER_LEN + 1], srlm_task_cand_kind *kind);

typedef struct srlm_task_sft_counts {
  int64_t instructions;
  int64_t judge;
  int64_t judge_correct; /* judge examples with score 5 */
  int64_t kind[SRLM_TASK_CAND_KIND_COUNT];
} srlm_task_sft_counts;

/* Writes the seed SFT data as JSONL {"prompt": "...", "response": "..."} lines (what
 * `srlm sft` reads with chat_format none; it appends the EOS): first n_instructions
 * solved instructions (split sft, the drawn answer), then n_judge judge examples
 * (judge prompt, reference judgment). Atomic. counts may be NULL. */
srlm_status srlm_task_write_sft_data(const char *path, uint64_t seed, int64_t n_instructions, int64_t n_judge,
                                     srlm_task_sft_counts *counts);
/* Writes n prompts of split as JSONL {"prompt": "..."} lines. Atomic. */
srlm_status srlm_task_write_prompts(const char *path, uint64_t seed, srlm_task_split split, int64_t n);

/* ---- evaluation with a model ---------------------------------------------------- */

/* All of these decode greedily (srlm_generate, batches of up to max_batch sequences;
 * 0 means 64) with the EOS of SRLM_TASK_EOS_TEXT in tok, encode texts with tok (one
 * thread per tokenizer) and never use the checker for anything but the comparison. */

/* Greedy answers (up to SRLM_TASK_ANSWER_LEN + 5 new tokens) to the n puzzles; an answer
 * counts when it stopped at EOS and the checker accepts its text. correct (n) and
 * answers (n, malloc'd texts, the caller frees each) may be NULL. */
srlm_status srlm_task_eval_accuracy(srlm_model *m, srlm_tokenizer *tok, int max_batch, int n,
                                    const srlm_task_puzzle *p, int *correct, char **answers, double *accuracy);

typedef enum srlm_task_rationale_mode {
  SRLM_TASK_RATIONALE_GREEDY = 0, /* the model writes it greedily (up to 9 tokens or EOS) */
  SRLM_TASK_RATIONALE_REFERENCE,  /* the reference rationale is given to it */
  SRLM_TASK_RATIONALE_NONE        /* the score is read right after the judge prompt */
} srlm_task_rationale_mode;

typedef struct srlm_task_judge_result {
  double expected;  /* sum_k k p_k, p = softmax of the logits of '1'..'5' at the score position */
  int greedy_score; /* 1..5: the greedy judgment (rationale, then the argmax token) parses
                       with this score; 0: it does not */
  char rationale[SRLM_TASK_RATIONALE_LEN + 1]; /* the rationale the score follows (text of
                       its tokens, cut to 9 bytes) */
} srlm_task_judge_result;

/* Judges candidate cand[i] (NUL-terminated) for puzzle p[i], i < n: the rationale as
 * mode says, then the next-token logits (srlm_model_logits) at the score position. */
srlm_status srlm_task_judge(srlm_model *m, srlm_tokenizer *tok, int max_batch, srlm_task_rationale_mode mode,
                            int n, const srlm_task_puzzle *p, const char *const *cand, srlm_task_judge_result *res);
/* The expected score (RECIPES' reward) of one candidate for a prompt text (a
 * SRLM_ERR_FORMAT error when prompt is not a puzzle prompt). */
srlm_status srlm_task_judge_expected(srlm_model *m, srlm_tokenizer *tok, const char *prompt, const char *cand,
                                     srlm_task_rationale_mode mode, double *score);

typedef struct srlm_task_agreement {
  int64_t n;
  int64_t checker_correct;   /* candidates the checker accepts */
  int64_t agree_greedy;      /* greedy judgment's verdict (score >= 3) = the checker's */
  int64_t agree_expected;    /* expected score >= 3 <=> the checker accepts */
  int64_t unparsed;          /* greedy judgments that do not parse (count as disagreeing) */
  int64_t false_pos;         /* expected mode: judged correct, checker says wrong */
  int64_t false_neg;         /* expected mode: judged wrong, checker says correct */
  double greedy, expected;   /* agreement fractions */
} srlm_task_agreement;

/* Judge agreement with the checker over n (puzzle, candidate) pairs, greedy rationale. */
srlm_status srlm_task_judge_agreement(srlm_model *m, srlm_tokenizer *tok, int max_batch, int n,
                                      const srlm_task_puzzle *p, const char *const *cand,
                                      srlm_task_agreement *out);

/* ---- the task interface ----------------------------------------------------------- */

/* What the self-rewarding driver (src/roles) needs of a built-in task, so that it names
 * no task: both built-in tasks (the sign puzzle here, Countdown of countdown.h)
 * implement it. It works on texts: a prompt text is its puzzle (each task parses it
 * back), so the driver keeps no task's puzzle type. A prompt that is not the task's is
 * wrong for check and gets an empty judge prompt. */
#define SRLM_TASK_TEXT_MAX 192 /* any built-in task's prompt, judge prompt or judgment, in bytes */
#define SRLM_TASK_MAX_REFS 8   /* reference answers of one instance, at most */
#define SRLM_TASK_ANSWER_KEY_MAX 32 /* an answer key (answer_key) with its NUL */

typedef struct srlm_task_verdict {
  double expected;  /* sum_k k p_k, p = softmax of the logits of '1'..'5' at the score position */
  int greedy_score; /* 1..5: the greedy judgment (rationale, then the argmax token) parses
                       with this score; 0: it does not (a judge format failure) */
  char judgment[SRLM_TASK_TEXT_MAX + 1]; /* the greedy judgment's text: rationale + score
                       digit when it parses, else the rationale alone (cut to fit) */
} srlm_task_verdict;

typedef struct srlm_task_ops {
  const char *name;   /* the config's task.name: "sign_puzzle", "countdown" */
  int answer_max_new; /* new tokens a greedy evaluation answer may take, its EOS included */
  /* The prompt of instance `index` of `split` (a function of seed, split, index);
   * returns its length. */
  size_t (*prompt)(uint64_t seed, srlm_task_split split, uint64_t index, char out[SRLM_TASK_TEXT_MAX + 1]);
  /* The reference answers of instance `index` of `split` (rewards against references: BLEU):
   * the sign puzzle every correct answer (srlm_task_solutions), Countdown the generator's
   * solution; returns how many (0..SRLM_TASK_MAX_REFS). */
  int (*references)(uint64_t seed, srlm_task_split split, uint64_t index,
                    char refs[SRLM_TASK_MAX_REFS][SRLM_TASK_TEXT_MAX + 1]);
  /* The checker: 1 when `answer` (len bytes, may hold anything) is right for `prompt`. */
  int (*check)(const char *prompt, const char *answer, size_t len);
  /* The judge prompt for (prompt, candidate as written); returns its length. */
  size_t (*judge_prompt)(const char *prompt, const char *cand, size_t len, char out[SRLM_TASK_TEXT_MAX + 1]);
  /* ScPO's vote: the final answer of `text` (an answer that stopped at EOS, len bytes) in
   * the task's canonical form, written to key (NUL-terminated); 0 when it has none. The
   * sign puzzle: the answer as the checker reads it (one trailing EOS text removed) when
   * it has the answer's form (4 digits with + or - between them; other digits than the
   * prompt's make a wrong answer, still an answer); Countdown: the exact value of an
   * expression the checker parses with allowed numbers (right or wrong value; malformed
   * expressions or misused numbers have none). */
  int (*answer_key)(const char *prompt, const char *text, size_t len, char key[SRLM_TASK_ANSWER_KEY_MAX]);
  /* 1 and *score (1..5) when text parses as a judgment of the task's format, else 0. */
  int (*judgment_parse)(const char *text, size_t len, int *score);
  /* 1 when text parses as a judgment (srlm_shard_judge_health_add's format_ok). */
  int (*judgment_ok)(const char *text, size_t len);
  /* The model judges cand[i] (NUL-terminated) for prompt[i], i < n: a greedy rationale,
   * then the score position. Batches of max_batch sequences (0 = 64). */
  srlm_status (*judge)(srlm_model *m, srlm_tokenizer *tok, int max_batch, int n, const char *const *prompt,
                       const char *const *cand, srlm_task_verdict *out);
} srlm_task_ops;

/* The sign puzzle as a built-in task (task.name: sign_puzzle). */
extern const srlm_task_ops srlm_task_sign_ops;

/* The built-in task named `name` ("sign_puzzle", "countdown"); NULL when there is none. */
const srlm_task_ops *srlm_task_find(const char *name);

/* Greedy answers (up to t->answer_max_new new tokens, EOS = SRLM_TASK_EOS_TEXT) to the n
 * prompts; an answer counts when it stopped at EOS and the checker accepts its text.
 * correct (n) and answers (n, malloc'd texts, the caller frees each) may be NULL. For the
 * sign puzzle the same numbers as srlm_task_eval_accuracy. */
srlm_status srlm_task_accuracy(const srlm_task_ops *t, srlm_model *m, srlm_tokenizer *tok, int max_batch, int n,
                               const char *const *prompt, int *correct, char **answers, double *accuracy);
/* The judge's agreement with the checker over n (prompt, candidate) pairs (t->judge);
 * for the sign puzzle the same numbers as srlm_task_judge_agreement. */
srlm_status srlm_task_agreement_of(const srlm_task_ops *t, srlm_model *m, srlm_tokenizer *tok, int max_batch, int n,
                                   const char *const *prompt, const char *const *cand, srlm_task_agreement *out);

#ifdef __cplusplus
}
#endif
#endif
