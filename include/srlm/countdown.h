/* srlm countdown: the Countdown task (ALGORITHMS.md section 13, the standard small RL
 * benchmark and the self-judging setting of Simonds et al. 2025), as data, checker and
 * judge format: a seeded puzzle generator with held-out splits, the exact checker, a
 * brute-force solver, the judge format with a verifiable rationale and the seed SFT
 * data. Pure functions of their inputs (the data writer excepted).
 *
 * The puzzle: n = 3 or 4 numbers in 1..SRLM_CD_MAX_NUMBER and a target in
 * 1..SRLM_CD_MAX_TARGET. An answer is an arithmetic expression over + - * / and
 * parentheses that uses each given number at most once (a number given twice may be used
 * twice) and whose value is the target. Texts (character tokens):
 *   prompt        C numbers joined by ',' T target A        "C3,7,25,4T53A"
 *   answer        the expression, then EOS                  "(25-4)*3-7"
 *   judge prompt  the prompt, the candidate, S              "C3,7,25,4T53A(25-4)*3-7S"
 *   judgment      rationale ';' score digit (5 right, 1 wrong)
 *                 "25-4=21,21*3=63,63-7=56;1"
 *
 * Checker (srlm_cd_check), in this order, each with its verdict:
 *   1. MALFORMED: not exactly an expression of the grammar
 *        expr := term (('+' | '-') term)*      term := factor (('*' | '/') factor)*
 *        factor := number | '(' expr ')'       number := '0' | [1-9][0-9]{0,8}
 *      (no spaces, no unary minus, no leading zeros), or longer than SRLM_CD_ANSWER_MAX
 *      bytes. The text is the generated text without the stopping EOS (generate.h); one
 *      trailing "<|endoftext|>" written out is also accepted, as by the sign puzzle.
 *   2. UNKNOWN_NUMBER: a number that is not among the given ones;
 *      REUSED_NUMBER: a number used more often than it is given;
 *   3. evaluated exactly in 64-bit integers, operands before their operator (the parse
 *      tree in post-order, left before right), * and / before + and -, left to right:
 *      DIV_ZERO: a division by 0; INEXACT_DIV: a division with a remainder. Every
 *      division must be exact: Countdown's rule that every intermediate result is an
 *      integer (no rationals), which also keeps each rationale step an integer fact;
 *      negative intermediate results are allowed;
 *   4. WRONG_VALUE: the value is not the target; else OK (correct).
 * With at most 4 numbers below 1000 in use, no value can overflow.
 *
 * Generator: instance i of a split is a function of (seed, split, i) alone, drawn from
 * srlm_rng_bits(seed, purpose of the split, i low 32 bits, i high 32 bits, attempt << 8 |
 * word). It draws n and the numbers, then combines two random items of the list with a
 * random operator until one is left (a division that is not exact, or by 0, becomes a
 * multiplication), so the target has a solution using every number, kept as the puzzle's
 * `solution` (written with the fewest parentheses that keep its parse). Attempts whose
 * value falls outside 1..SRLM_CD_MAX_TARGET are redrawn. Held out: a fixed keyed hash of
 * (the numbers as a sorted multiset, target) puts 1 in 8 puzzles in the held-out set; the
 * eval split draws only from it, every other split only outside it, so evaluation
 * puzzles never occur in training prompts or SFT data, whatever the seeds.
 *
 * The judge prompt is the prompt followed by the candidate and 'S'. Self-rewarding runs
 * on Countdown either as the built-in task (task.name: countdown, srlm_cd_task_ops: the
 * model's greedy rationale up to ';', then the expected score over '1'..'5' or the greedy
 * score digit, as the sign puzzle's judge) or as a prompt set with data.checker
 * countdown through the text judge (llm_judge.h): a judge template file holding
 * "{prompt}{response}S" (configs/judge/countdown.txt) renders the same judge prompt, and
 * judge.score_regex ";([1-5])$" reads the score.
 *
 * Judge format for a candidate as written:
 * - The candidate shown to the judge: one trailing "<|endoftext|>" removed, each run of
 *   bytes outside the answer characters (0-9 + - * / ( )) replaced by one '?', then cut
 *   to SRLM_CD_ANSWER_MAX + 1 bytes. A replaced byte makes it malformed as it made the
 *   original malformed, and a cut candidate is longer than an answer may be, so the
 *   shown candidate passes the checker iff the candidate does.
 * - The reference rationale checks the shown candidate the checker's way: "X" when it is
 *   malformed, "N" when it uses a number not given or too often, else the steps of the
 *   evaluation "a op b=c" joined by ',' (a candidate that is one number: that number),
 *   where a failing division is written "a/b=X" and ends the rationale. The final
 *   step's result is the candidate's value, which the score compares with the target.
 * - The reference score is 5 when the checker accepts the candidate, else 1.
 * - A judgment parses when it ends with ';' and a score digit 1..5 after at least one
 *   rationale byte; the verdict is "correct" iff the score is >= 3.
 */
#ifndef SRLM_COUNTDOWN_H
#define SRLM_COUNTDOWN_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"
#include "srlm/model.h"
#include "srlm/tasks.h"
#include "srlm/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SRLM_CD_MIN_NUMS 3
#define SRLM_CD_MAX_NUMS 4
#define SRLM_CD_MAX_NUMBER 25  /* given numbers are 1..25 */
#define SRLM_CD_MAX_TARGET 999 /* targets are 1..999 */
#define SRLM_CD_PROMPT_MAX 20  /* "C25,25,25,25T999A" is 17 */
#define SRLM_CD_ANSWER_MAX 24  /* longest accepted answer in bytes */
#define SRLM_CD_JUDGE_PROMPT_MAX (SRLM_CD_PROMPT_MAX + SRLM_CD_ANSWER_MAX + 2)
#define SRLM_CD_RATIONALE_MAX 160 /* 3 steps of at most 41 bytes (parsed prompts allow numbers up to 999) */
#define SRLM_CD_JUDGMENT_MAX (SRLM_CD_RATIONALE_MAX + 2)

/* The Philox counter word `a` of each split's draws, and of the held-out hash. */
#define SRLM_CD_RNG_TRAIN 0xcd50u
#define SRLM_CD_RNG_EVAL 0xcd51u
#define SRLM_CD_RNG_SFT 0xcd52u
#define SRLM_CD_RNG_JUDGE 0xcd53u
#define SRLM_CD_RNG_HOLDOUT 0xcd5fu

typedef struct srlm_cd_puzzle {
  int n;                          /* 3 or 4 (any 1..4 from a parsed prompt) */
  int num[SRLM_CD_MAX_NUMS];      /* the numbers in prompt order */
  int target;
  char solution[SRLM_CD_ANSWER_MAX + 1]; /* the generator's expression ("" for a parsed prompt) */
} srlm_cd_puzzle;

typedef enum srlm_cd_verdict {
  SRLM_CD_OK = 0,
  SRLM_CD_MALFORMED,
  SRLM_CD_UNKNOWN_NUMBER,
  SRLM_CD_REUSED_NUMBER,
  SRLM_CD_DIV_ZERO,
  SRLM_CD_INEXACT_DIV,
  SRLM_CD_WRONG_VALUE,
  SRLM_CD_VERDICT_COUNT
} srlm_cd_verdict;

/* "ok", "malformed", "unknown number", "reused number", "division by zero", "inexact
 * division", "wrong value" */
const char *srlm_cd_verdict_name(srlm_cd_verdict v);

/* ---- generator and texts ---------------------------------------------------------- */

/* Instance `index` of `split` (tasks.h's splits): a function of (seed, split, index). */
void srlm_cd_puzzle_make(uint64_t seed, srlm_task_split split, uint64_t index, srlm_cd_puzzle *p);
/* 1 when (numbers as a multiset, target) is in the held-out set, else 0. */
int srlm_cd_puzzle_held_out(const srlm_cd_puzzle *p);
/* The prompt, NUL-terminated; returns its length. */
size_t srlm_cd_prompt(const srlm_cd_puzzle *p, char out[SRLM_CD_PROMPT_MAX + 1]);
/* Parses a prompt (exactly the prompt format: 1..4 numbers of 1..3 digits without leading
 * zeros, target 0..999); solution is "". SRLM_ERR_FORMAT saying what is wrong. */
srlm_status srlm_cd_prompt_parse(const char *text, size_t len, srlm_cd_puzzle *p);

/* ---- checker and solver ------------------------------------------------------------- */

/* The checker's verdict on `answer` (len bytes, may hold anything); *value (may be NULL)
 * gets the value when the verdict is OK or WRONG_VALUE. */
srlm_cd_verdict srlm_cd_check(const srlm_cd_puzzle *p, const char *answer, size_t len, int64_t *value);
/* Brute force over every way of combining a sub-multiset of the numbers with + - * /
 * (exact divisions only): 1 when some expression reaches the target, else 0. */
int srlm_cd_solvable(const srlm_cd_puzzle *p);

/* ---- judge format ----------------------------------------------------------------------- */

/* The candidate as the judge sees it (rules above), NUL-terminated; returns its length. */
size_t srlm_cd_judge_candidate(const char *cand, size_t len, char out[SRLM_CD_ANSWER_MAX + 2]);
/* The judge prompt for (p, candidate as written), NUL-terminated; returns its length. */
size_t srlm_cd_judge_prompt(const srlm_cd_puzzle *p, const char *cand, size_t len,
                            char out[SRLM_CD_JUDGE_PROMPT_MAX + 1]);
/* The reference judgment of the shown candidate: rationale ';' score digit. */
size_t srlm_cd_judgment(const srlm_cd_puzzle *p, const char *cand, size_t len, char out[SRLM_CD_JUDGMENT_MAX + 1]);
/* 1 and *score (1..5) when text parses as a judgment (rules above), else 0. */
int srlm_cd_judgment_parse(const char *text, size_t len, int *score);

/* ---- data files --------------------------------------------------------------------------- */

/* How a judge example's candidate was made: even indices the generator's solution;
 * odd ones a perturbation of it: 40% one operator replaced by another (labelled by the
 * checker: sometimes still right), 20% one number replaced by a number not given, 20% a
 * number used twice (+ that number appended: reused, or wrong), 20% a random expression
 * over the numbers (labelled by the checker). */
typedef enum srlm_cd_cand_kind {
  SRLM_CD_CAND_SOLUTION = 0,
  SRLM_CD_CAND_OP_SWAP,
  SRLM_CD_CAND_UNKNOWN,
  SRLM_CD_CAND_REUSE,
  SRLM_CD_CAND_RANDOM,
  SRLM_CD_CAND_KIND_COUNT
} srlm_cd_cand_kind;

/* Judge example `index`: its puzzle (split judge) and candidate. */
void srlm_cd_judge_example(uint64_t seed, uint64_t index, srlm_cd_puzzle *p, char cand[SRLM_CD_ANSWER_MAX + 1],
                           srlm_cd_cand_kind *kind);

typedef struct srlm_cd_sft_counts {
  int64_t instructions, judge, judge_correct; /* judge_correct: reference score 5 */
  int64_t kind[SRLM_CD_CAND_KIND_COUNT];
} srlm_cd_sft_counts;

/* Writes the seed SFT data as JSONL {"prompt", "response"} lines: n_instructions solved
 * instructions (split sft: prompt, solution), then n_judge judge examples (judge prompt,
 * reference judgment). Atomic. counts may be NULL. */
srlm_status srlm_cd_write_sft_data(const char *path, uint64_t seed, int64_t n_instructions, int64_t n_judge,
                                   srlm_cd_sft_counts *counts);
/* Writes n prompts of split as JSONL {"prompt"} lines. Atomic. */
srlm_status srlm_cd_write_prompts(const char *path, uint64_t seed, srlm_task_split split, int64_t n);

/* ---- evaluation with a model --------------------------------------------------------------- */

typedef struct srlm_cd_eval {
  int64_t n;
  int64_t correct;         /* greedy answers that stop at EOS and pass the checker */
  int64_t judge_agree;     /* greedy judgments of those answers whose verdict (score >= 3) is the checker's */
  int64_t judge_unparsed;  /* greedy judgments that end without a score (count as disagreeing) */
  int64_t false_pos, false_neg;
  double accuracy, judge_agreement;
} srlm_cd_eval;

/* Greedy answers (up to SRLM_CD_ANSWER_MAX + 2 new tokens, EOS = SRLM_TASK_EOS_TEXT of
 * tok) to the n puzzles, checked; then the model's greedy judgment of each of its own
 * answers (judge prompt as above, up to SRLM_CD_JUDGMENT_MAX new tokens), compared with
 * the checker. Batches of max_batch sequences (0 = 64). */
srlm_status srlm_cd_evaluate(srlm_model *m, srlm_tokenizer *tok, int max_batch, int n, const srlm_cd_puzzle *p,
                             srlm_cd_eval *out);

/* The model judges cand[i] (NUL-terminated) for p[i], i < n (tasks.h's srlm_task_verdict):
 * the rationale greedily, up to and including its ';' (at most SRLM_CD_RATIONALE_MAX + 1
 * new tokens; EOS ends it early), then the score distribution after it. The greedy
 * judgment parses when the rationale ends with ';' and the argmax there is a score
 * token. Batches of max_batch sequences (0 = 64). */
srlm_status srlm_cd_judge(srlm_model *m, srlm_tokenizer *tok, int max_batch, int n, const srlm_cd_puzzle *p,
                          const char *const *cand, srlm_task_verdict *out);

/* Countdown as a built-in task (tasks.h's interface; task.name: countdown). */
extern const srlm_task_ops srlm_cd_task_ops;

#ifdef __cplusplus
}
#endif
#endif
