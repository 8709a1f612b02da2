/* srlm llm_judge: LLM-as-a-Judge on text (ALGORITHMS.md section 3): the model judges
 * responses with the judge template, J sampled judgments per response, each parsed into
 * a score; a response's score is the mean of its parsable judgments.
 *
 * Per response i (instruction = the prompt's instruction text, srlm_prompt_set):
 *   1. the template (judge.template) rendered with {prompt} = instructions[i] and
 *      {response} = responses[i] (srlm_judge_render); ill-formed UTF-8 in the response
 *      (a generation cut inside a character) is replaced by U+FFFD per bad byte, since
 *      the tokenizer only takes valid UTF-8;
 *   2. that text as one user turn through the chat format with the generation prompt
 *      (raw text when the judge has no chat format), tokenized;
 *   3. J judgments sampled with judge.temperature (no top-k/top-p/min-p) and
 *      judge.max_new_tokens, stopping at an EOS id: the tokenizer_config.json eos_token,
 *      the chat format's end-of-turn token (<|im_end|>, <|eot_id|>) when the tokenizer
 *      has it, and the model config's eos_token_ids;
 *   4. each judgment parsed with judge.score_regex (last match, clamped to
 *      [judge.score_min, judge.score_max]; judge.h); unparsable: score NaN, dropped;
 *   5. mean[i] = the mean of the parsable scores in judgment order, NaN when none.
 * All n*J judgments go through ONE srlm_generate call (continuous batching).
 *
 * Randomness (DESIGN.md invariant 3): judgment j of the response with key k draws from
 * the sampler with seed run.seed and sequence id srlm_llm_judge_seq_id(k, j), so its text
 * is a function of (run.seed, k, j) and the two texts: it does not depend on n, on the
 * order of the responses, on the batch, or on the rank. The key must identify the
 * response within the run; the generator's request seq id of the sample (which encodes
 * purpose, iteration, prompt index and sample index) is the natural choice. Seq ids are
 * Philox(key = k, counter = (SRLM_LLM_JUDGE_RNG_PURPOSE, j, 0, 0)), so they do not
 * collide with the generator's own ids in practice (a 64-bit hash).
 *
 * A judge holds the template, the compiled parser and the EOS list; it encodes with the
 * caller's tokenizer, so it is used by one thread at a time (like the tokenizer).
 */
#ifndef SRLM_LLM_JUDGE_H
#define SRLM_LLM_JUDGE_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/chat.h"
#include "srlm/config.h"
#include "srlm/core.h"
#include "srlm/generate.h"
#include "srlm/judge.h"
#include "srlm/meta.h"
#include "srlm/model.h"
#include "srlm/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The Philox counter word `a` of judge sequence ids. */
#define SRLM_LLM_JUDGE_RNG_PURPOSE 0x7d61u
/* Judgments decoded together unless srlm_llm_judge_set_max_batch says otherwise. */
#define SRLM_LLM_JUDGE_DEFAULT_BATCH 16

typedef struct srlm_llm_judge srlm_llm_judge;

/* From cfg: judge.template (loaded and checked: an unknown or missing placeholder is an
 * error naming the file), judge.score_regex/score_min/score_max (compiled),
 * judge.temperature, judge.max_new_tokens, run.seed, and the tokenizer folder's
 * eos_token (srlm_setup_tokenizer_dir). tok is borrowed and must outlive the judge; chat
 * (NULL = raw text) and the config are copied from, not kept. */
srlm_status srlm_llm_judge_create(const srlm_config *cfg, srlm_tokenizer *tok, const srlm_chat_format *chat,
                                  srlm_llm_judge **out);
void srlm_llm_judge_free(srlm_llm_judge *jd);

/* Sequences decoded together (KV-cache slots), >= 1; changes speed and memory only. */
void srlm_llm_judge_set_max_batch(srlm_llm_judge *jd, int max_batch);

/* The sampler sequence id of judgment j of the response with key `key`. */
uint64_t srlm_llm_judge_seq_id(uint64_t key, int j);

/* The judge prompt of one response: *text (malloc'ed, NUL-terminated) and its ids
 * appended to ids. Either out may be NULL. */
srlm_status srlm_llm_judge_encode(srlm_llm_judge *jd, const char *instruction, const char *response,
                                  srlm_token_ids *ids, char **text);

typedef struct srlm_llm_judgment {
  char *text;           /* (text_len) NUL-terminated; the EOS token is not in it */
  size_t text_len;
  int32_t *ids;         /* (n_ids) the sampled ids, a final EOS included */
  int64_t n_ids;
  srlm_stop_reason stop;
  double score;         /* parsed and clamped; NaN when unparsable */
  int clamped;          /* 1 when the parsed value was outside [score_min, score_max] */
} srlm_llm_judgment;

/* Judges n responses, J judgments each, with model m:
 *   instructions (n), responses (n): NUL-terminated UTF-8 (instructions must be valid);
 *   keys (n): one per response (see Randomness above); keys need not be distinct, but
 *            equal keys with equal texts give equal judgments;
 *   out (n * J): judgment j of response i at out[i * J + j] (free with
 *            srlm_llm_judgments_free(out, n * J));
 *   mean (n): the response's score, NaN when none of its judgments parsed;
 *   stats: accumulates (may be NULL): judgments, parsed, unparsable, clamped,
 *          candidates (+n), unscored.
 * On error nothing is left allocated in out and stats is unchanged. */
srlm_status srlm_llm_judge_run(srlm_llm_judge *jd, srlm_model *m, int n, const char *const *instructions,
                               const char *const *responses, const uint64_t *keys, int J,
                               srlm_llm_judgment *out, double *mean, srlm_judge_stats *stats);

/* Steps 4-5 alone, the code path srlm_llm_judge_run takes after generation: parses the
 * text of out[i * J + j] (n * J judgments) into its score and clamped flag, and fills
 * mean (n) and stats. For re-scoring stored judgments and for tests. */
void srlm_llm_judge_score(const srlm_llm_judge *jd, int n, int J, srlm_llm_judgment *out, double *mean,
                          srlm_judge_stats *stats);

/* Totals of the generation of every srlm_llm_judge_run so far (tokens, steps, seconds). */
const srlm_generate_stats *srlm_llm_judge_generate_stats(const srlm_llm_judge *jd);

/* The ids generation stops at with this tokenizer, chat format and model: the
 * tokenizer_config.json eos_token, the chat format's end of turn, the model config's
 * eos_token_ids (no duplicates). The generators of a prompt set stop at the same ids.
 * Returns how many were written to out. */
#define SRLM_LLM_JUDGE_MAX_STOPS 40
int srlm_llm_judge_stop_ids(const srlm_llm_judge *jd, const srlm_model *m, int32_t out[SRLM_LLM_JUDGE_MAX_STOPS]);

/* Frees the texts and ids of out[0 .. count) (the array itself is the caller's). */
void srlm_llm_judgments_free(srlm_llm_judgment *out, int64_t count);

/* ---- Meta-Rewarding's meta-judge on text (include/srlm/meta.h) ----------------------
 * Per comparison i: meta.template rendered with {prompt} = instructions[i], {response} =
 * responses[i], {judgment_a} = ja[i], {judgment_b} = jb[i] (every placeholder must
 * appear; ill-formed UTF-8 repaired as for the judge), as one user turn through the
 * judge's chat format, tokenized; decoded GREEDILY (the verdict is a function of the
 * texts alone) up to meta.max_new_tokens, stopping at the judge's stop ids; the verdict
 * is meta.winner_regex's last capture (srlm_judge_parse_winner): A/1 the first, B/2 the
 * second, else none. A meta prompt longer than the model's positions less
 * meta.max_new_tokens gets no verdict (counted in *too_long), rather than failing the
 * iteration: long judgments are the text judge's normal case. */
typedef struct srlm_llm_meta srlm_llm_meta;

/* From cfg (meta.template loaded and checked, meta.winner_regex compiled,
 * meta.max_new_tokens) and the judge jd (tokenizer, chat format, stop ids; borrowed). */
srlm_status srlm_llm_meta_create(const srlm_config *cfg, srlm_llm_judge *jd, srlm_llm_meta **out);
void srlm_llm_meta_free(srlm_llm_meta *mj);

/* Meta-judges n comparisons with model m: verdict (n); format_ok (n, may be NULL) 1 when
 * the winner regex gave a verdict; *too_long (may be NULL) accumulates skipped ones. */
srlm_status srlm_llm_meta_run(srlm_llm_meta *mj, srlm_model *m, int n, const char *const *instructions,
                              const char *const *responses, const char *const *ja, const char *const *jb,
                              srlm_meta_verdict *verdict, int *format_ok, int64_t *too_long);

#ifdef __cplusplus
}
#endif
#endif
